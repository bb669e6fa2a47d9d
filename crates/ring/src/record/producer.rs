//! The producing side: claim (tail CAS, header CAS from empty), write in place, commit or
//! abort.

use super::{
    CLAIMED, COMMITTED, ClaimError, CommitError, EMPTY, FENCE_BIT, IDLE, KeepAlive, Ordering,
    PADDING, PhantomData, RECORD_COMMIT, RECORD_FENCE_RELEASE, RECORD_HEAD_LOAD, RECORD_HEADER,
    RECORD_INTENT_CLEAR, RECORD_TAIL_CAS, Raw, SKIP_BIT, align8, intent_word, spin_hint, word,
};

/// Consecutive inconsistent position readings (tail more than a capacity past head) a producer
/// retries before it calls the ring corrupt: a stale tail read by a descheduled producer looks
/// the same for a moment, a hostile ring looks the same forever.
pub(super) const INCONSISTENT_LIMIT: u32 = 1 << 16;

/// A producing end of a record ring. `Send` and `Clone` (a clone takes a free intent entry of
/// its own, if any), not `Sync`.
pub struct RecordProducer {
    pub(super) raw: Raw,
    pub(super) owner: u32,
    /// This producer's claim-intent entry, if it got one.
    pub(super) intent: Option<usize>,
    pub(super) cached_head: u64,
    /// Consecutive claims that found `tail - head` above the capacity.
    pub(super) inconsistent: u32,
    pub(super) _not_sync: PhantomData<core::cell::Cell<()>>,
}

impl Clone for RecordProducer {
    fn clone(&self) -> Self {
        Self {
            raw: self.raw.clone(),
            owner: self.owner,
            intent: self.raw.take_intent(self.owner, None),
            cached_head: self.cached_head,
            inconsistent: 0,
            _not_sync: PhantomData,
        }
    }
}

// SAFETY: the pointers refer to memory that outlives the handle (constructor contract), shared
// only through the header protocol; the handle holds no thread-bound state.
unsafe impl Send for RecordProducer {}

impl core::fmt::Debug for RecordProducer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RecordProducer")
            .field("owner", &self.owner)
            .field("capacity", &self.raw.cap)
            .finish_non_exhaustive()
    }
}

impl Drop for RecordProducer {
    fn drop(&mut self) {
        if let Some(i) = self.intent {
            let e = &self.raw.hdr().intents[i];
            // ORDERING: RECORD_INTENT_CLEAR (Release); no claim is in progress (a `Claim`
            // borrows the producer), but a consumer that reads this idle word must also see
            // the headers we wrote: pairs with its Acquire intent loads (`before_next_intent`).
            // Relaxed, a forced skip could read it, find our last header still empty and pad
            // over a record we committed (loom model
            // `record_forced_skip_sees_the_header_of_a_cleared_intent`).
            e.claim.store(IDLE, RECORD_INTENT_CLEAR);
            // ORDERING: Release; pairs with the Acquire CAS in `take_intent`: the next holder
            // starts after our last intent store.
            e.owner.store(0, Ordering::Release);
        }
    }
}

impl RecordProducer {
    /// Keeps `owner` (the segment or heap region holding the ring) alive as long as this handle
    /// and its clones made afterwards.
    #[must_use]
    pub fn keep_alive(mut self, owner: KeepAlive) -> Self {
        self.raw.keep = Some(owner);
        self
    }

    /// The largest payload this ring takes.
    pub fn max_record(&self) -> usize {
        self.raw.max as usize
    }

    /// Whether a record of `len` bytes would find room now, ignoring the padding a wrap may
    /// need (the condition a blocked sender polls; `claim` has the last word).
    pub fn has_room(&self, len: usize) -> bool {
        let h = self.raw.hdr();
        // ORDERING: Acquire; pairs with the consumer's Release store of `head` (as in `claim`).
        let head = h.head.load(Ordering::Acquire);
        // ORDERING: Relaxed; an estimate, `claim` re-reads it.
        let tail = h.tail.load(Ordering::Relaxed);
        let used = tail.wrapping_sub(head);
        used <= self.raw.cap && used + align8(RECORD_HEADER as u64 + len as u64) <= self.raw.cap
    }

    /// Claims `size` bytes at position `tail` (as read by the caller; `to_end`: padding up to
    /// the end of the buffer): `Ok(true)` if this producer got them (its intent then names
    /// them until the header is written), `Ok(false)` if the tail moved meanwhile (read it
    /// again).
    pub(super) fn claim_at(
        &mut self,
        tail: u64,
        size: u64,
        to_end: bool,
    ) -> Result<bool, ClaimError> {
        let h = self.raw.hdr();
        if tail % 8 != 0 {
            return Err(ClaimError::Corrupt);
        }
        if tail.wrapping_add(size).wrapping_sub(self.cached_head) > self.raw.cap {
            // ORDERING: RECORD_HEAD_LOAD (Acquire); pairs with the consumer's RECORD_HEAD_STORE
            // (Release) of `head` after it read and zeroed the space it gives back, so our
            // writes come after its reads and zeroing (loom model
            // `record_producer_reuses_space_the_consumer_gave_back`).
            self.cached_head = h.head.load(RECORD_HEAD_LOAD);
            let used = tail.wrapping_sub(self.cached_head);
            if used > self.raw.cap {
                // Either our tail is stale (we were descheduled while the others claimed and
                // the consumer followed: head passed it), or the ring is corrupt. Read the
                // tail again; only a ring that stays inconsistent is called corrupt.
                self.inconsistent += 1;
                if self.inconsistent > INCONSISTENT_LIMIT {
                    return Err(ClaimError::Corrupt);
                }
                return Ok(false);
            }
            self.inconsistent = 0;
            if used + size > self.raw.cap {
                return Err(ClaimError::Full);
            }
        }
        self.set_intent(intent_word(tail, size, to_end));
        // ORDERING: RECORD_TAIL_CAS (Release); pairs with the Acquire tail load in `unblock`
        // (our intent is visible to a consumer that sees the tail past `tail`; later CASes by
        // others continue the release sequence). The CAS also divides the space among
        // producers; what the consumer may read is published by each record's header. Failure:
        // Relaxed, we read the tail again.
        let won = h
            .tail
            .compare_exchange(
                tail,
                tail.wrapping_add(size),
                RECORD_TAIL_CAS,
                Ordering::Relaxed,
            )
            .is_ok();
        if !won {
            // A claim we did not get: no consumer decision depends on the intent.
            self.clear_intent();
        }
        Ok(won)
    }

    /// Claims room for a record of `len` bytes (0 ..= [`max_record`](Self::max_record)), to be
    /// filled in place and then committed; never blocks.
    ///
    /// ```
    /// use shmlane_ring::HeapRegion;
    /// let (mut p, mut c) = HeapRegion::record(4096);
    /// let mut claim = p.claim(5).unwrap();
    /// claim.write(0, b"hello");
    /// claim.commit().unwrap();
    /// let rec = c.read().unwrap();
    /// assert_eq!(rec.to_vec(), b"hello");
    /// ```
    pub fn claim(&mut self, len: usize) -> Result<Claim<'_>, ClaimError> {
        if len as u64 > self.raw.max {
            return Err(ClaimError::BadLength {
                len,
                max: self.raw.max as usize,
            });
        }
        let size = align8(RECORD_HEADER as u64 + len as u64);
        loop {
            // ORDERING: Relaxed; a guess, validated by the CAS in claim_at.
            let tail = self.raw.hdr().tail.load(Ordering::Relaxed);
            let off = tail & self.raw.mask;
            let rest = self.raw.cap - off;
            if rest >= size {
                if self.claim_at(tail, size, false)? {
                    // ORDERING: Release; pairs with the consumer's RECORD_HDR_LOAD. Nothing
                    // to publish yet but the length and owner, which unblocking needs. A CAS
                    // from empty: if it fails, a consumer that timed out on this claim has
                    // already skipped it; claim again.
                    if self
                        .raw
                        .header(off)
                        .compare_exchange(
                            EMPTY,
                            word(len as u64, CLAIMED, self.owner),
                            Ordering::Release,
                            Ordering::Relaxed,
                        )
                        .is_err()
                    {
                        // Our intent cleared after the failed CAS: the consumer's fence over
                        // this claim waits for it (we will not write here).
                        self.clear_intent();
                        continue;
                    }
                    self.clear_intent();
                    return Ok(Claim {
                        p: self,
                        off,
                        len: len as u64,
                        done: false,
                    });
                }
            } else if self.claim_at(tail, rest, true)? {
                // The record does not fit before the end: pad to the end (a claim of its own),
                // then claim again at the start of the buffer.
                // ORDERING: Release; pairs with RECORD_HDR_LOAD: the consumer skips it. From
                // empty, as for a record (a timed-out consumer may have padded it already).
                let _ = self.raw.header(off).compare_exchange(
                    EMPTY,
                    word(rest - RECORD_HEADER as u64, PADDING, self.owner),
                    Ordering::Release,
                    Ordering::Relaxed,
                );
                self.clear_intent();
                continue;
            }
            // Another producer claimed first, or our tail read was stale: a spin loop (under
            // loom, a yield, so the model lets the other producers' claims reach us).
            spin_hint();
        }
    }

    /// Test hook, not part of the API: what a producer that dies in the middle of a claim
    /// leaves behind. Publishes its intent for a record of `len` bytes at the current tail
    /// and, with `take_tail`, wins the tail CAS; then stops, as a killed process would
    /// (no header written, intent entry kept).
    #[doc(hidden)]
    pub fn abandon_claim_for_tests(mut self, len: usize, take_tail: bool) {
        let size = align8(RECORD_HEADER as u64 + len as u64);
        loop {
            // ORDERING: Relaxed; a guess, validated by the CAS.
            let tail = self.raw.hdr().tail.load(Ordering::Relaxed);
            if !take_tail {
                // No CAS follows: a producer that died before its CAS, or lost it and died.
                self.set_intent(intent_word(tail, size, false));
                break;
            }
            if self.claim_at(tail, size, false) == Ok(true) {
                break;
            }
        }
        core::mem::forget(self);
    }

    /// Claims, copies `payload` in and commits: one record.
    pub fn send(&mut self, payload: &[u8]) -> Result<(), ClaimError> {
        let mut c = self.claim(payload.len())?;
        c.write(0, payload);
        // A fresh claim can only be unblocked if we stalled past the consumer's timeout; the
        // record is then lost, as `commit` reports; `send` reports it as a full ring to retry.
        c.commit().map_err(|_| ClaimError::Full)
    }
}

/// Room claimed in a record ring: write the payload, then [`commit`](Self::commit) (or
/// [`abort`](Self::abort); dropping it aborts).
pub struct Claim<'a> {
    pub(super) p: &'a mut RecordProducer,
    pub(super) off: u64,
    pub(super) len: u64,
    pub(super) done: bool,
}

impl core::fmt::Debug for Claim<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Claim")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl Claim<'_> {
    /// Payload bytes claimed.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether the claim is for an empty record.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(super) fn claimed_word(&self) -> u64 {
        word(self.len, CLAIMED, self.p.owner)
    }

    /// Copies `src` into the payload at `offset`.
    ///
    /// # Panics
    /// If `offset + src.len()` is beyond the claimed length.
    pub fn write(&mut self, offset: usize, src: &[u8]) {
        assert!(
            offset as u64 + src.len() as u64 <= self.len,
            "write past the claimed length"
        );
        // A consumer that unblocked this claim may already have given the space back: do not
        // write into it then (this narrows the window, see the module docs).
        // ORDERING: Acquire; pairs with the consumer's unblocking CAS.
        if self.p.raw.header(self.off).load(Ordering::Acquire) != self.claimed_word() {
            return;
        }
        self.p
            .raw
            .write(self.off + RECORD_HEADER as u64 + offset as u64, src);
    }

    /// A pointer to the claimed payload, to fill in place (zero copy).
    ///
    /// # Safety
    /// Write at most [`len`](Self::len) bytes through it, before `commit` or `abort`, and
    /// never read it (another process may write the same memory if the ring is hostile).
    #[cfg(not(loom))]
    pub unsafe fn as_mut_ptr(&mut self) -> *mut u8 {
        // SAFETY: the payload lies inside the data area (checked when claimed).
        unsafe {
            self.p
                .raw
                .data
                .as_ptr()
                .cast::<u8>()
                .add((self.off + RECORD_HEADER as u64) as usize)
        }
    }

    /// Publishes the record.
    ///
    /// # Errors
    /// [`CommitError::Unblocked`] if the consumer skipped it meanwhile (this producer was seen
    /// dead or stalled past the timeout): the record is not delivered.
    pub fn commit(mut self) -> Result<(), CommitError> {
        self.done = true;
        let claimed = self.claimed_word();
        // ORDERING: RECORD_COMMIT (Release); pairs with the consumer's RECORD_HDR_LOAD
        // (Acquire): the payload writes happen-before its reads. Failure: Relaxed, we only
        // learn that the consumer unblocked us.
        self.p
            .raw
            .header(self.off)
            .compare_exchange(
                claimed,
                word(self.len, COMMITTED, self.p.owner),
                RECORD_COMMIT,
                Ordering::Relaxed,
            )
            .map(|_| ())
            .map_err(|_| {
                self.release_fence();
                CommitError::Unblocked
            })
    }

    /// After the consumer skipped this claim while we lived (a fence): lets the space go. We
    /// write into it no more.
    pub(super) fn release_fence(&self) {
        let size = align8(RECORD_HEADER as u64 + self.len);
        let fenced =
            word(size - RECORD_HEADER as u64, PADDING, self.p.owner) | SKIP_BIT | FENCE_BIT;
        // ORDERING: RECORD_FENCE_RELEASE (Release); pairs with the consumer's Acquire header
        // load in `lift`: our payload writes happen-before it zeroes and gives the space back.
        // Fails if the consumer did not fence the claim (it saw us dead): nothing to release.
        let _ = self.p.raw.header(self.off).compare_exchange(
            fenced,
            fenced & !FENCE_BIT,
            RECORD_FENCE_RELEASE,
            Ordering::Relaxed,
        );
    }

    /// Gives the room up: the consumer skips it (counted as skipped).
    pub fn abort(mut self) {
        self.abort_inner();
    }

    pub(super) fn abort_inner(&mut self) {
        if self.done {
            return;
        }
        self.done = true;
        let size = align8(RECORD_HEADER as u64 + self.len);
        // ORDERING: Release; pairs with RECORD_HDR_LOAD. Fails only if the consumer already
        // turned it into padding (then the space may be fenced for us: let it go).
        if self
            .p
            .raw
            .header(self.off)
            .compare_exchange(
                self.claimed_word(),
                word(size - RECORD_HEADER as u64, PADDING, self.p.owner) | SKIP_BIT,
                Ordering::Release,
                Ordering::Relaxed,
            )
            .is_err()
        {
            self.release_fence();
        }
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.abort_inner();
    }
}
