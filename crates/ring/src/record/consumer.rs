//! The consuming side: read (validating every header), give space back, batches.

use super::{
    COMMITTED, EMPTY, FENCE_BIT, KeepAlive, LEN_MASK, NO_OWNER_BIT, OWNER_SHIFT, Ordering, PADDING,
    PhantomData, RECORD_HDR_LOAD, RECORD_HEAD_STORE, RECORD_HEADER, RESERVED, Raw, ReadError, Role,
    SKIP_BIT, STATE_SHIFT, align8,
};

/// The consuming end of a record ring. `Send`, not `Sync`.
pub struct RecordConsumer {
    pub(super) raw: Raw,
    /// Read position: the next record to read.
    pub(super) head: u64,
    /// Release position (published as `head`): the space before it is given back. Equal to
    /// `head` unless a fence holds space back.
    pub(super) released: u64,
    pub(super) owner: u64,
    /// Inside `read_batch`: `head` is published once at the end.
    pub(super) batching: bool,
    pub(super) _not_sync: PhantomData<core::cell::Cell<()>>,
}

// SAFETY: as above; the consumer role is exclusive (claim word).
unsafe impl Send for RecordConsumer {}

impl core::fmt::Debug for RecordConsumer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RecordConsumer")
            .field("head", &self.head)
            .field("capacity", &self.raw.cap)
            .finish_non_exhaustive()
    }
}

impl Drop for RecordConsumer {
    fn drop(&mut self) {
        self.raw.hdr().meta.release(Role::Consumer, self.owner);
    }
}

impl RecordConsumer {
    /// Keeps `owner` alive as long as this handle.
    #[must_use]
    pub fn keep_alive(mut self, owner: KeepAlive) -> Self {
        self.raw.keep = Some(owner);
        self
    }

    /// The largest payload this ring takes.
    pub fn max_record(&self) -> usize {
        self.raw.max as usize
    }

    /// Records skipped so far (aborted by their producer, or unblocked by a consumer).
    pub fn skipped(&self) -> u64 {
        // ORDERING: Relaxed; a statistic.
        self.raw.hdr().skipped.load(Ordering::Relaxed)
    }

    /// This side's position (bytes consumed since the ring's first position).
    pub fn position(&self) -> u64 {
        self.head
    }

    /// Bytes between the consumer and the producers' tail (claimed, committed or padding).
    pub fn len(&self) -> usize {
        // ORDERING: Relaxed; an estimate.
        let tail = self.raw.hdr().tail.load(Ordering::Relaxed);
        tail.wrapping_sub(self.head).min(self.raw.cap) as usize
    }

    /// Whether nothing is claimed after the consumer's position.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether [`read`](Self::read) would make progress now: the header at the consumer's
    /// position is committed or padding (the condition a blocked receiver polls; a pending
    /// claim is not progress).
    pub fn is_ready(&self) -> bool {
        if self.released != self.head {
            // The release position is at a fence: once its producer lets go, reading lifts it.
            // ORDERING: Acquire (`RECORD_HDR_LOAD`); as in `lift`.
            let w = self
                .raw
                .header(self.released & self.raw.mask)
                .load(RECORD_HDR_LOAD);
            if w & FENCE_BIT == 0 {
                return true;
            }
            if self.head_wrapped_onto_fence() {
                return false;
            }
        }
        let off = self.head & self.raw.mask;
        // ORDERING: Acquire (`RECORD_HDR_LOAD`), as in `read`.
        let w = self.raw.header(off).load(RECORD_HDR_LOAD);
        matches!((w >> STATE_SHIFT) & 3, COMMITTED | PADDING)
    }

    /// Moves past the record or padding `[off, off + size)` just read, and gives its space
    /// back to the producers, unless a fence holds space back before it (`fence`: this is
    /// padding over a claim whose producer may still write into it, which starts one).
    pub(super) fn advance(&mut self, off: u64, size: u64, fence: bool) {
        if self.released == self.head && !fence {
            self.raw.zero(off, size);
            self.head = self.head.wrapping_add(size);
            self.released = self.head;
            if !self.batching {
                self.publish_head();
            }
        } else {
            // Read, not given back: `lift` zeroes and releases it once the fence before it
            // is lifted.
            self.head = self.head.wrapping_add(size);
            self.publish_read();
        }
    }

    pub(super) fn publish_head(&self) {
        // ORDERING: RECORD_HEAD_STORE (Release); pairs with the producers' RECORD_HEAD_LOAD
        // (Acquire) of `head` in claim_at: our zeroing and our reads of the records
        // happen-before they reuse the space.
        self.raw.hdr().head.store(self.released, RECORD_HEAD_STORE);
    }

    pub(super) fn publish_read(&self) {
        // ORDERING: Release; pairs with the Acquire load of a consumer that takes over
        // (`RecordRing::consumer`): the records before it were read.
        self.raw.hdr().read.store(self.head, Ordering::Release);
    }

    /// Reads up to `max` committed records in place, handing each to `f`, and gives their
    /// space back to the producers with one store at the end (reading one by one stores the
    /// position after each record: a cache-line transfer to the producers each time). Stops
    /// early at an empty ring or a pending record; returns how many records `f` saw. A
    /// corrupt record after some good ones ends the batch; the next call reports it.
    ///
    /// If `f` panics, the panic goes on after the batch is closed as if it had ended there: the
    /// records read so far, and the one `f` panicked on, are consumed (not delivered again: a
    /// record that makes `f` panic would otherwise do so on every later call) and their space
    /// is given back; the consumer stays usable.
    ///
    /// ```
    /// let (mut tx, mut rx) = shmlane_ring::HeapRegion::record(4096);
    /// for m in [&b"bid 17.5"[..], b"ask 17.6", b""] {
    ///     tx.send(m).unwrap();
    /// }
    /// let mut total = 0;
    /// assert_eq!(rx.read_batch(16, |r| total += r.len()).unwrap(), 3);
    /// assert_eq!(total, 16);
    /// ```
    pub fn read_batch(
        &mut self,
        max: usize,
        mut f: impl FnMut(&Record<'_>),
    ) -> Result<usize, ReadError> {
        let batch = Batch::open(self);
        let mut n = 0;
        loop {
            if n == max {
                return Ok(n);
            }
            match batch.0.read() {
                Ok(rec) => {
                    // A panic in `f` drops `rec` (consumed) and then `batch` (published).
                    f(&rec);
                    drop(rec);
                    n += 1;
                }
                Err(ReadError::Empty | ReadError::Pending) => return Ok(n),
                Err(e) if n == 0 => return Err(e),
                Err(_) => return Ok(n),
            }
        }
    }

    /// Validates a header word read at `off`; returns (state, payload length, owner).
    pub(super) fn decode(&self, off: u64, w: u64) -> Result<(u64, u64, u32), ReadError> {
        if w & RESERVED != 0 {
            return Err(ReadError::Corrupt("reserved header bits set"));
        }
        let state = (w >> STATE_SHIFT) & 3;
        let len = w & LEN_MASK;
        let owner = (w >> OWNER_SHIFT) as u32;
        if w & (FENCE_BIT | NO_OWNER_BIT) != 0
            && (state != PADDING
                || w & SKIP_BIT == 0
                || w & NO_OWNER_BIT != 0 && w & FENCE_BIT == 0)
        {
            return Err(ReadError::Corrupt(
                "fence bits on a header that is not a skip",
            ));
        }
        // Every claim, padding included, is at most `largest_claim` bytes.
        if len > self.raw.max {
            return Err(ReadError::Corrupt("record length out of range"));
        }
        if state == PADDING && len % 8 != 0 {
            return Err(ReadError::Corrupt("padding length not a multiple of 8"));
        }
        // The whole record, rounded up to 8 as it is zeroed and given back, lies in the buffer
        // (`off` comes from the consumer's own positions; checked all the same, it is what
        // bounds every access to the record).
        if off % 8 != 0 {
            return Err(ReadError::Corrupt("record position not a multiple of 8"));
        }
        if off + align8(RECORD_HEADER as u64 + len) > self.raw.cap {
            return Err(ReadError::Corrupt("record runs past the end of the buffer"));
        }
        Ok((state, len, owner))
    }

    /// The next committed record, read in place; it is consumed when the returned handle is
    /// dropped. Padding is skipped on the way.
    ///
    /// # Errors
    /// `Empty`, `Pending` (the next record is claimed but not committed: wait, or
    /// [`unblock`](Self::unblock) it), `Corrupt`.
    pub fn read(&mut self) -> Result<Record<'_>, ReadError> {
        if (self.head | self.released) % 8 != 0 {
            // Checked at attach; a record at a misaligned position would run past the buffer.
            return Err(ReadError::Corrupt("consumer position not a multiple of 8"));
        }
        if self.released != self.head {
            self.lift(None)?;
        }
        loop {
            if self.head_wrapped_onto_fence() {
                return Err(ReadError::Empty);
            }
            let off = self.head & self.raw.mask;
            // ORDERING: RECORD_HDR_LOAD (Acquire); pairs with the producer's commit CAS
            // (Release) and padding stores, so the payload written before is visible.
            let w = self.raw.header(off).load(RECORD_HDR_LOAD);
            if w == EMPTY {
                // ORDERING: Relaxed; only tells "nothing claimed" from "claimed, header not
                // written yet"; the header itself is re-read with Acquire.
                let tail = self.raw.hdr().tail.load(Ordering::Relaxed);
                let ahead = tail.wrapping_sub(self.head);
                if ahead > self.raw.cap {
                    return Err(ReadError::Corrupt("tail more than a capacity ahead"));
                }
                return Err(if ahead == 0 {
                    ReadError::Empty
                } else {
                    ReadError::Pending
                });
            }
            let (state, len, owner) = self.decode(off, w)?;
            match state {
                COMMITTED => {
                    return Ok(Record {
                        c: self,
                        off,
                        len,
                        owner,
                    });
                }
                PADDING => {
                    if w & SKIP_BIT != 0 {
                        // ORDERING: Relaxed; a statistic, written only by the consumer.
                        let h = self.raw.hdr();
                        h.skipped.store(
                            h.skipped.load(Ordering::Relaxed).wrapping_add(1),
                            Ordering::Relaxed,
                        );
                    }
                    self.advance(off, RECORD_HEADER as u64 + len, w & FENCE_BIT != 0);
                }
                _ => return Err(ReadError::Pending),
            }
        }
    }
}

/// A batch in progress (`read_batch`): the position is published once, when it closes, also
/// when the caller's closure panics (a batch left open would never give space back again).
pub(super) struct Batch<'a>(&'a mut RecordConsumer);

impl<'a> Batch<'a> {
    pub(super) fn open(c: &'a mut RecordConsumer) -> Self {
        c.batching = true;
        Self(c)
    }
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        self.0.batching = false;
        self.0.publish_head();
    }
}

/// A committed record, borrowed in place; consumed (and its space given back) on drop.
pub struct Record<'a> {
    pub(super) c: &'a mut RecordConsumer,
    pub(super) off: u64,
    pub(super) len: u64,
    pub(super) owner: u32,
}

impl core::fmt::Debug for Record<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Record")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl Record<'_> {
    /// Payload bytes.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether the payload is empty (an empty record is a message too).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The owner tag of the producer that wrote it (as given to
    /// [`RecordRing::producer`](super::RecordRing::producer); written by that producer, so only as trustworthy as it).
    pub fn owner(&self) -> u32 {
        self.owner
    }

    /// Copies the payload into the start of `dst` (which must hold [`len`](Self::len) bytes).
    ///
    /// # Panics
    /// If `dst` is shorter than the record.
    pub fn copy_to(&self, dst: &mut [u8]) {
        let n = self.len as usize;
        self.c
            .raw
            .read(self.off + RECORD_HEADER as u64, &mut dst[..n]);
    }

    /// Leaves the record in the ring, unconsumed: the next read returns it again (for a
    /// caller whose buffer turned out too small).
    pub fn keep(self) {
        core::mem::forget(self);
    }

    /// The payload, copied.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = vec![0u8; self.len as usize];
        self.copy_to(&mut v);
        v
    }

    /// The payload in place (zero copy).
    ///
    /// # Safety
    /// No other process may write the record while the slice lives: true of cooperating
    /// producers (a committed record is never written again), not of a hostile one.
    #[cfg(not(loom))]
    pub unsafe fn as_slice(&self) -> &[u8] {
        // SAFETY: in bounds (validated in `read`); the caller vouches for the writers.
        unsafe {
            core::slice::from_raw_parts(
                self.c
                    .raw
                    .data
                    .as_ptr()
                    .cast::<u8>()
                    .add((self.off + RECORD_HEADER as u64) as usize),
                self.len as usize,
            )
        }
    }
}

impl Drop for Record<'_> {
    fn drop(&mut self) {
        let size = align8(RECORD_HEADER as u64 + self.len);
        self.c.advance(self.off, size, false);
    }
}
