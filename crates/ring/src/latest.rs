//! Latest value ("blackboard", multi-slot seqlock): any number of writers publish a value of
//! up to `value_size` bytes, any number of readers read the newest complete one. Writers never
//! wait for readers (nor for each other); a reader that races writes retries a bounded number
//! of times ([`READ_TRIES`]) and then reports [`LatestError::Busy`]; a writer that dies while
//! writing leaves the previous value readable.
//!
//! ```text
//! CachePadded<Meta>        magic, kind = 6, elem = value_size | 8 << 32, capacity = slots
//! CachePadded<AtomicU64>   ticket: the next write's ticket (fetch_add by writers)
//! CachePadded<AtomicU64>   latest: newest published ticket + 1 (0: never written), fetch_max
//! [Slot; slots]            Slot = stride words (a multiple of 8: whole cache lines):
//!                            word 0  seq: 2t + 1 while ticket t writes, 2t + 2 when done,
//!                                    0 never written
//!                            word 1  len: the value's length in bytes (<= value_size)
//!                            word 2  holder: the owner token of the writer writing the slot
//!                                    (0: none)
//!                            word 3… the value, little-endian words, ceil(value_size / 8)
//! ```
//!
//! A writer takes a ticket `t` (`ticket.fetch_add(1)`) and the slot `t % slots`. It takes the
//! slot's holder word with a CAS from 0, or from the token of a writer that died holding it
//! (`is_alive` says so: the slot is reclaimed), to its own token; a live holder (writing now,
//! or slow) makes it take a new ticket. Holding the slot, it claims it with a CAS of its seq
//! from `s` to `2t + 1`, but only if the slot holds nothing a reader may be sent to: `s == 0`;
//! or odd (a dead holder's half-written value, never published) of an older ticket; or a value
//! (ticket `s / 2 - 1`) older than `t` and older than the newest published one
//! (`s / 2 < latest`). Otherwise (the slot holds the newest value, or a newer ticket's) it
//! gives the holder word back and takes a new ticket, at most `slots` times in all (plus
//! one per help, below), then [`LatestError::Busy`]. Claimed: a Release fence, the length and the words (Relaxed atomic
//! stores), `seq = 2t + 2` (Relaxed), `latest.fetch_max(t + 1)` (Release), holder = 0
//! (Release). Abandoned tickets leave no trace: nothing waits for a ticket.
//!
//! Helping: a writer that died between its done store and its `fetch_max` leaves a complete
//! value newer than `latest` in a slot it still holds; the claim rule refuses that slot (not
//! older than `latest`), and with two slots the other one holds the newest published value,
//! so every write would report `Busy` for good. So a claimer that takes a dead holder's slot
//! (`is_alive` said so) and finds it complete (`s` even, not 0) with `s / 2 > latest`
//! publishes it first (`latest.fetch_max(s / 2)`, Release): the dead writer's value becomes
//! the newest, as if it had lived to publish it; the rule then refuses its slot (the newest)
//! and the newest value's former slot becomes claimable. Each such help earns the claim one
//! more ticket (at most `slots` more), so the write that helps goes on to write.
//!
//! A reader loads `latest` = `l` (Acquire); 0 is "never written". Else the value is ticket
//! `t = l - 1` in slot `t % slots`: it loads the seq (Relaxed), which must be `2t + 2`, copies
//! the length and the words (Relaxed atomic loads), an Acquire fence, and loads the seq again:
//! unchanged, the copy is the value of version `l` (the fences make a copy that saw any word of
//! a later write also see that write's odd seq). A changed or unexpected seq: try again from
//! `latest`, at most [`READ_TRIES`] times.
//!
//! Orderings: `latest`'s Release `fetch_max` / Acquire load is what orders a value's words
//! and done store before a reader's copy (the reader reaches a slot only through `latest`, and
//! a later `fetch_max` is a read-modify-write that continues the release sequence), so the
//! done store and the reader's first seq load need no pair of their own and are Relaxed. The
//! next claimer of a slot is ordered after its previous writer by the holder word (Release
//! give-back, Acquire CAS) or, for a dead holder, by `is_alive` (the kernel frees the liveness
//! lock after the process's last store); a helper's `fetch_max` comes after that, so the
//! dead writer's value is ordered before the readers it sends there.
//!
//! Why the previous value survives a writer's death: the slot of the newest published value is
//! never claimed. A claimer saw `latest > s / 2`, and `latest` only grows, so the value it
//! overwrites can never become the newest again; the writer of that value (or a helper, which holds
//! the slot while it helps) published it (`fetch_max`) before or never. So a writer dying anywhere
//! leaves `latest` on a complete value in a slot nobody may claim. A dead writer's slot is
//! reclaimed by the next writer whose ticket lands on it: the holder word is taken before anything
//! else is written, so every slot a writer stopped in names it, and `is_alive` (the segment's
//! liveness locks) says the process is gone. A writer needs a slot besides the newest value's that
//! no live writer holds: with `w` writers racing, `slots >= w + 1` keeps writes from reporting
//! `Busy` (default 4). Writers of one process share a token (they are alive together), so a slot
//! held by this process's own writer is never reclaimed by it.
//!
//! Hostile or corrupt memory: the ticket and `latest` are masked to index slots, never used as
//! offsets; seqs are compared only (a forged seq under a forged dead holder token can make a writer
//! raise `latest`, as writing `latest` directly could); a length beyond `value_size` in a copy
//! whose seq held still is [`LatestError::Corrupt`]; every loop is bounded. A hostile process can
//! make readers see `Busy`, `Corrupt` or a value it wrote, and writers see `Busy`; never an access
//! out of bounds, a data race or an endless loop.

use core::ptr::NonNull;

use crossbeam_utils::CachePadded;

use crate::{
    KeepAlive,
    error::AttachError,
    header::{Kind, Meta, PaddedMeta, check_capacity, check_region, open_ring_raw},
    sync::{
        AtomicU64, LATEST_LOAD, LATEST_PUBLISH, Ordering, latest_reader_fence, latest_writer_fence,
        spin_hint,
    },
};

/// Words of a slot before the value: the seq, the length and the holder.
const SLOT_HEADER_WORDS: usize = 3;
/// Largest value (1 MiB).
pub const MAX_VALUE_BYTES: usize = 1 << 20;
/// Most slots a latest-value region holds.
pub const MAX_SLOTS: u64 = 1 << 16;
/// Slots a channel has unless asked otherwise.
pub const DEFAULT_SLOTS: u64 = 4;
/// Tries a read makes before [`LatestError::Busy`]: each try is one `latest` load and one
/// slot copy, so a read costs at most 64 copies whatever the writers do. (3 under loom, to keep
/// the models small.)
pub const READ_TRIES: u32 = if cfg!(loom) { 3 } else { 64 };

/// What went wrong on a latest-value call. Copy, never allocates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LatestError {
    /// Writes kept racing this read ([`READ_TRIES`] tries), or (writers) no slot could be
    /// claimed: dead or stalled writers hold all but the newest value's slot. Try again;
    /// writers: create the channel with more slots.
    Busy,
    /// The value is longer than the channel's value size.
    TooLong {
        /// Bytes given.
        len: usize,
        /// The value size.
        max: usize,
    },
    /// The buffer is smaller than the value (nothing was consumed; read again with a larger one).
    BufferTooSmall {
        /// Bytes the value has.
        needed: usize,
    },
    /// The shared words make no sense: a corrupt or hostile region.
    Corrupt(&'static str),
}

impl core::fmt::Display for LatestError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Busy => f.write_str(
                "latest value busy: writes kept racing this call (or every free slot is held by a dead or stalled writer); try again, or create the channel with more slots",
            ),
            Self::TooLong { len, max } => write!(
                f,
                "value of {len} bytes is longer than the channel's value size ({max}); create the channel with a larger value size"
            ),
            Self::BufferTooSmall { needed } => write!(
                f,
                "buffer too small for the value ({needed} bytes); read again with a larger buffer"
            ),
            Self::Corrupt(why) => write!(f, "latest-value region is corrupt ({why})"),
        }
    }
}

impl std::error::Error for LatestError {}

#[repr(C)]
struct Header {
    meta: PaddedMeta,
    ticket: CachePadded<AtomicU64>,
    latest: CachePadded<AtomicU64>,
}

fn slots_offset() -> usize {
    size_of::<Header>().next_multiple_of(128)
}

/// Words per slot for values of `value_size` bytes: header, value, rounded to a cache line.
fn stride(value_size: usize) -> usize {
    (SLOT_HEADER_WORDS + value_size.div_ceil(8)).next_multiple_of(8)
}

/// Namespace for laying out, initialising and attaching to latest-value regions.
#[derive(Debug)]
pub struct LatestRing(());

struct Raw {
    hdr: NonNull<Header>,
    slots: NonNull<AtomicU64>,
    mask: u64,
    nslots: u64,
    stride: usize,
    value_size: usize,
    keep: Option<KeepAlive>,
}

impl Raw {
    fn hdr(&self) -> &Header {
        // SAFETY: valid for the handle's lifetime (constructor contract); atomics only.
        unsafe { self.hdr.as_ref() }
    }

    /// Word `i` (< stride) of the slot of ticket `t`.
    fn word(&self, t: u64, i: usize) -> &AtomicU64 {
        debug_assert!(i < self.stride);
        let idx = (t & self.mask) as usize * self.stride + i;
        // SAFETY: `t & mask < nslots` and `i < stride`, so `idx < nslots * stride`, the words
        // of the slot area (checked at attach).
        unsafe { self.slots.add(idx).as_ref() }
    }

    fn clone_raw(&self) -> Self {
        Self {
            hdr: self.hdr,
            slots: self.slots,
            mask: self.mask,
            nslots: self.nslots,
            stride: self.stride,
            value_size: self.value_size,
            keep: self.keep.clone(),
        }
    }
}

impl LatestRing {
    /// Bytes a region needs for `slots` slots of values up to `value_size` bytes;
    /// `usize::MAX` (which no region holds) if out of range.
    pub fn required_size(slots: u64, value_size: usize) -> usize {
        usize::try_from(slots)
            .ok()
            .and_then(|n| n.checked_mul(stride(value_size.min(MAX_VALUE_BYTES)) * 8))
            .and_then(|b| b.checked_add(slots_offset()))
            .unwrap_or(usize::MAX)
    }

    fn check_geometry(slots: u64, value_size: u64) -> Result<(), AttachError> {
        check_capacity(slots, Kind::Latest)?;
        if slots > MAX_SLOTS {
            return Err(AttachError::BadCapacity(slots));
        }
        if value_size == 0 || value_size > MAX_VALUE_BYTES as u64 {
            return Err(AttachError::Corrupt("latest value size not in 1..=1 MiB"));
        }
        Ok(())
    }

    /// Initialises a never-written region of `slots` slots (a power of two in 2..=2^16) for
    /// values of up to `value_size` bytes (1..=[`MAX_VALUE_BYTES`]).
    ///
    /// # Safety
    /// `ptr` must be valid for reads and writes of `len` bytes, and nobody may use the region
    /// while it is initialised.
    pub unsafe fn init(
        ptr: *mut u8,
        len: usize,
        slots: u64,
        value_size: usize,
    ) -> Result<(), AttachError> {
        Self::check_geometry(slots, value_size as u64)?;
        check_region(ptr, len, Self::required_size(slots, value_size))?;
        let hdr = Header {
            meta: CachePadded::new(Meta::with_elem(
                Kind::Latest,
                value_size as u64 | (8 << 32),
                slots,
            )),
            ticket: CachePadded::new(AtomicU64::new(0)),
            latest: CachePadded::new(AtomicU64::new(0)),
        };
        // SAFETY: in bounds and aligned (checked); exclusive during init (caller).
        unsafe { ptr.cast::<Header>().write(hdr) };
        let words = slots as usize * stride(value_size);
        let base = ptr.wrapping_add(slots_offset()).cast::<AtomicU64>();
        for i in 0..words {
            // SAFETY: `i < slots * stride`, inside the region (required_size), 8-aligned;
            // exclusive during init (caller).
            unsafe { base.add(i).write(AtomicU64::new(0)) };
        }
        Ok(())
    }

    /// # Safety
    /// As for [`writer`](Self::writer).
    unsafe fn attach(ptr: *mut u8, len: usize) -> Result<Raw, AttachError> {
        // SAFETY: forwarded contract; Header is repr(C) with the meta first.
        let (hdr, elem, slots) =
            unsafe { open_ring_raw::<Header>(ptr, len, Kind::Latest, slots_offset())? };
        let (value_size, align) = (elem & 0xffff_ffff, elem >> 32);
        if align != 8 {
            return Err(AttachError::WrongElement {
                size: value_size as u32,
                align: align as u32,
            });
        }
        Self::check_geometry(slots, value_size)?;
        let value_size = value_size as usize;
        check_region(ptr, len, Self::required_size(slots, value_size))?;
        Ok(Raw {
            hdr,
            // SAFETY: the slot area lies inside the region (checked just now).
            slots: unsafe { NonNull::new_unchecked(ptr.add(slots_offset()).cast()) },
            mask: slots - 1,
            nslots: slots,
            stride: stride(value_size),
            value_size,
            keep: None,
        })
    }

    /// Attaches a writer (any number). `owner` is a non-zero token naming this writer's
    /// process: a slot a writer died in is reclaimed when `is_alive` (given to
    /// [`write_with`](LatestWriter::write_with)) says its token's process is gone.
    ///
    /// # Safety
    /// `ptr` must be valid for reads and writes of `len` bytes for as long as the returned
    /// handle lives, and accessed by others only through latest-value handles (or atomically).
    pub unsafe fn writer(
        ptr: *mut u8,
        len: usize,
        owner: u64,
    ) -> Result<LatestWriter, AttachError> {
        if owner == 0 {
            return Err(AttachError::Corrupt(
                "a writer's owner token must be non-zero",
            ));
        }
        // SAFETY: forwarded contract.
        let raw = unsafe { Self::attach(ptr, len)? };
        Ok(LatestWriter { raw, owner })
    }

    /// Attaches a reader (any number). It has seen no version yet.
    ///
    /// # Safety
    /// As for [`writer`](Self::writer).
    pub unsafe fn reader(ptr: *mut u8, len: usize) -> Result<LatestReader, AttachError> {
        // SAFETY: forwarded contract.
        let raw = unsafe { Self::attach(ptr, len)? };
        Ok(LatestReader { raw, last: 0 })
    }
}

/// A writer of a latest-value region. `Send`; clone it for more writers.
pub struct LatestWriter {
    raw: Raw,
    owner: u64,
}

/// A reader of a latest-value region. `Send`; clone it for more readers.
pub struct LatestReader {
    raw: Raw,
    /// The version this reader last returned (0: none).
    last: u64,
}

// SAFETY: the pointers refer to memory that outlives the handle (constructor contract),
// shared only through atomics.
unsafe impl Send for LatestWriter {}
// SAFETY: as for LatestWriter.
unsafe impl Send for LatestReader {}

impl Clone for LatestWriter {
    fn clone(&self) -> Self {
        Self {
            raw: self.raw.clone_raw(),
            owner: self.owner,
        }
    }
}

impl Clone for LatestReader {
    fn clone(&self) -> Self {
        Self {
            raw: self.raw.clone_raw(),
            last: self.last,
        }
    }
}

impl core::fmt::Debug for LatestWriter {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("LatestWriter")
            .field("slots", &self.raw.nslots)
            .field("value_size", &self.raw.value_size)
            .finish_non_exhaustive()
    }
}

impl core::fmt::Debug for LatestReader {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("LatestReader")
            .field("slots", &self.raw.nslots)
            .field("value_size", &self.raw.value_size)
            .field("last", &self.last)
            .finish_non_exhaustive()
    }
}

/// The newest published version (`latest`): 0 if never written.
fn load_latest(raw: &Raw) -> u64 {
    // SYNC POINT: ORDERING: Acquire (`LATEST_LOAD`); pairs with the writers' Release
    // `fetch_max` (`LATEST_PUBLISH`, a read-modify-write, so a later one that leaves the value
    // continues the release sequence): the publishing writer's words and done store
    // happen-before the copy that follows, so it sees them (or a later claim's, which the
    // seq check discards) and does not fail on a stale seq.
    raw.hdr().latest.load(LATEST_LOAD)
}

impl LatestWriter {
    /// Keeps `owner` alive as long as this handle (and its clones made after).
    #[must_use]
    pub fn keep_alive(mut self, owner: KeepAlive) -> Self {
        self.raw.keep = Some(owner);
        self
    }

    /// The largest value in bytes.
    pub fn value_size(&self) -> usize {
        self.raw.value_size
    }

    /// Slots in the region.
    pub fn slots(&self) -> u64 {
        self.raw.nslots
    }

    /// The newest published version (0: never written).
    pub fn version(&self) -> u64 {
        load_latest(&self.raw)
    }

    /// The same writer under another owner token (tests: a writer of another process).
    #[must_use]
    pub fn with_owner(mut self, owner: u64) -> Self {
        if owner != 0 {
            self.owner = owner;
        }
        self
    }

    /// Claims a slot: returns the ticket whose slot this writer now holds (holder word ours,
    /// seq odd).
    fn claim(&self, is_alive: &dyn Fn(u64) -> bool) -> Result<u64, LatestError> {
        let h = self.raw.hdr();
        // Tickets this claim may still take: `slots`, plus one for each dead writer's complete
        // value it publishes for it (at most `slots` more, so hostile seqs cannot loop it).
        let (mut left, mut helps) = (self.raw.nslots, self.raw.nslots);
        while left > 0 {
            left -= 1;
            // ORDERING: Relaxed; the ticket only hands out distinct numbers, the slot's holder
            // word and seq order the data.
            let t = h.ticket.fetch_add(1, Ordering::Relaxed);
            let holder = self.raw.word(t, 2);
            // ORDERING: Relaxed; the expected value of the CAS below.
            let o = holder.load(Ordering::Relaxed);
            if o != 0 && (o == self.owner || is_alive(o)) {
                continue; // a live writer holds it
            }
            // ORDERING: Acquire on success; pairs with the previous holder's Release give-back
            // (`release`), so its stores to the slot happen-before ours. A dead holder (`o`
            // not 0) gave nothing back: `is_alive` (its liveness lock, freed by the kernel
            // after its last store) ordered its stores before ours.
            if holder
                .compare_exchange(o, self.owner, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
            {
                continue;
            }
            let seq = self.raw.word(t, 0);
            // ORDERING: Relaxed; the expected value of the CAS below, which checks it again.
            let s = seq.load(Ordering::Relaxed);
            // ORDERING: Relaxed; only the value matters: `latest` only grows, so a value it
            // had is a lower bound of every later one (see the module docs).
            let mut l = h.latest.load(Ordering::Relaxed);
            let held = s / 2; // the slot's ticket + 1 if even; its ticket if odd
            if o != 0 && s != 0 && s & 1 == 0 && held > l {
                // A dead writer's complete value it did not live to publish (it died between
                // its done store and its `fetch_max`): publish it for it, or (two slots) its
                // slot and the newest value's would both stay unclaimable for good. Its value
                // is now the newest (or older than it): the rule below refuses the slot, and
                // the newest value's former slot becomes claimable.
                // SYNC POINT: ORDERING: Release (`LATEST_PUBLISH`); pairs with the readers'
                // Acquire load of `latest`: the dead writer's words and done store
                // happen-before this (through `is_alive` above), so a reader sent to the slot
                // finds them.
                l = h.latest.fetch_max(held, LATEST_PUBLISH).max(held);
                if helps > 0 {
                    helps -= 1;
                    left += 1;
                }
            }
            let claimable = if s & 1 == 1 {
                // A dead holder's half-written value (never published), of an older ticket.
                held < t
            } else {
                held <= t && (s == 0 || held < l)
            };
            // ORDERING: Relaxed; the slot's previous writers' stores already happen-before
            // ours through the holder CAS above (Acquire, paired with their Release give-back,
            // or `is_alive` for a dead one's). The Release fence after (`latest_writer_fence`)
            // orders this odd seq before our data stores for readers.
            if claimable
                && seq
                    .compare_exchange(
                        s,
                        t.wrapping_mul(2).wrapping_add(1),
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    )
                    .is_ok()
            {
                return Ok(t);
            }
            self.release(t);
        }
        Err(LatestError::Busy)
    }

    /// Gives the slot of ticket `t` back (holder word 0).
    fn release(&self, t: u64) {
        // ORDERING: Release; pairs with the next holder's Acquire CAS: our stores to the slot
        // happen-before its stores.
        let _ = self.raw.word(t, 2).compare_exchange(
            self.owner,
            0,
            Ordering::Release,
            Ordering::Relaxed,
        );
    }

    /// Stores `bytes` into the slot of ticket `t`: length and the first `words` value words.
    fn fill(&self, t: u64, bytes: &[u8], words: usize) {
        let raw = &self.raw;
        latest_writer_fence();
        // ORDERING: Relaxed; published by the `fetch_max` (Release) after the done store.
        raw.word(t, 1).store(bytes.len() as u64, Ordering::Relaxed);
        // Whole words first (fixed-size conversions: one 8-byte move each, no call per word),
        // then the tail, zero-padded.
        let whole = bytes.chunks_exact(8);
        let tail = whole.remainder();
        let mut k = 0;
        for c in whole.take(words) {
            let mut b = [0u8; 8];
            b.copy_from_slice(c);
            // ORDERING: Relaxed; as above.
            raw.word(t, SLOT_HEADER_WORDS + k)
                .store(u64::from_le_bytes(b), Ordering::Relaxed);
            k += 1;
        }
        if !tail.is_empty() && k < words {
            let mut b = [0u8; 8];
            b[..tail.len()].copy_from_slice(tail);
            // ORDERING: Relaxed; as above.
            raw.word(t, SLOT_HEADER_WORDS + k)
                .store(u64::from_le_bytes(b), Ordering::Relaxed);
        }
    }

    /// Publishes `bytes` as the newest value and returns its version (its ticket + 1, larger
    /// than every version published before it). Never waits: a claim that fails takes another
    /// ticket, at most `slots` times, then [`LatestError::Busy`].
    ///
    /// ```
    /// let (mut w, mut r) = shmlane_ring::HeapRegion::latest(4, 16);
    /// let v = w.write(b"limit=42").unwrap();
    /// let mut buf = [0u8; 16];
    /// assert_eq!(r.read(&mut buf), Ok(Some((8, v))));
    /// assert_eq!(&buf[..8], b"limit=42");
    /// ```
    pub fn write(&mut self, bytes: &[u8]) -> Result<u64, LatestError> {
        self.write_with(bytes, &|_| true)
    }

    /// As [`write`](Self::write), reclaiming a slot whose holder (a writer that stopped
    /// mid-write) `is_alive` says is dead; a dead holder's complete value that it did not live
    /// to publish is published first (it becomes the newest if nothing newer was). `is_alive`
    /// is called only for a slot another process's writer holds (it is writing there, or
    /// died there).
    pub fn write_with(
        &mut self,
        bytes: &[u8],
        is_alive: &dyn Fn(u64) -> bool,
    ) -> Result<u64, LatestError> {
        if bytes.len() > self.raw.value_size {
            return Err(LatestError::TooLong {
                len: bytes.len(),
                max: self.raw.value_size,
            });
        }
        let t = self.claim(is_alive)?;
        self.fill(t, bytes, usize::MAX);
        self.done(t);
        let v = t.wrapping_add(1);
        // SYNC POINT: ORDERING: Release (`LATEST_PUBLISH`); pairs with the readers' Acquire
        // load of `latest` (`LATEST_LOAD`).
        self.raw.hdr().latest.fetch_max(v, LATEST_PUBLISH);
        self.release(t);
        Ok(v)
    }

    /// Marks the slot of ticket `t` done (`seq = 2t + 2`): its value is complete.
    fn done(&self, t: u64) {
        let done = t.wrapping_mul(2).wrapping_add(2);
        // The value is complete. ORDERING: Relaxed; it needs no pair of its own. A reader
        // reaches this slot only through a `latest` it loaded with Acquire that synchronises
        // with the Release `fetch_max` after this (or a helper's, which synchronised with us
        // through `is_alive`), so this store and the words happen-before its loads. The next
        // claimer of the slot synchronises with us through the holder word (our Release
        // give-back, its Acquire CAS) or, if we die holding it, through `is_alive`.
        self.raw.word(t, 0).store(done, Ordering::Relaxed);
    }

    /// What a writer that dies mid-write leaves: claims a slot, stores the length and the
    /// first `words` words of `bytes`, and stops (the slot stays odd for good). For crash
    /// tests and models only.
    #[doc(hidden)]
    pub fn write_and_die(&mut self, bytes: &[u8], words: usize) -> Result<(), LatestError> {
        if bytes.len() > self.raw.value_size {
            return Err(LatestError::TooLong {
                len: bytes.len(),
                max: self.raw.value_size,
            });
        }
        let t = self.claim(&|_| true)?;
        self.fill(t, bytes, words);
        Ok(())
    }

    /// What a writer that dies between its done store and its `fetch_max` leaves: a complete
    /// value of its version (returned), never published, in a slot it still holds. For crash
    /// tests and models only.
    #[doc(hidden)]
    pub fn write_and_die_unpublished(&mut self, bytes: &[u8]) -> Result<u64, LatestError> {
        if bytes.len() > self.raw.value_size {
            return Err(LatestError::TooLong {
                len: bytes.len(),
                max: self.raw.value_size,
            });
        }
        let t = self.claim(&|_| true)?;
        self.fill(t, bytes, usize::MAX);
        self.done(t);
        Ok(t.wrapping_add(1))
    }
}

impl LatestReader {
    /// Keeps `owner` alive as long as this handle (and its clones made after).
    #[must_use]
    pub fn keep_alive(mut self, owner: KeepAlive) -> Self {
        self.raw.keep = Some(owner);
        self
    }

    /// The largest value in bytes.
    pub fn value_size(&self) -> usize {
        self.raw.value_size
    }

    /// Slots in the region.
    pub fn slots(&self) -> u64 {
        self.raw.nslots
    }

    /// The newest published version, one load (0: never written).
    pub fn version(&self) -> u64 {
        load_latest(&self.raw)
    }

    /// The version this reader last returned (0: none yet).
    pub fn last_version(&self) -> u64 {
        self.last
    }

    /// Copies the newest value into `buf` and returns `(length, version)`; `None` if never
    /// written. Never waits: [`LatestError::Busy`] after [`READ_TRIES`] tries that raced
    /// writes. Versions this reader returns never decrease (a `latest` that went backwards is
    /// `Corrupt`).
    pub fn read(&mut self, buf: &mut [u8]) -> Result<Option<(usize, u64)>, LatestError> {
        self.read_inner(buf, false)
    }

    /// As [`read`](Self::read), but `None` also when the version is the one this reader last
    /// returned (nothing is copied then).
    pub fn read_if_changed(&mut self, buf: &mut [u8]) -> Result<Option<(usize, u64)>, LatestError> {
        self.read_inner(buf, true)
    }

    fn read_inner(
        &mut self,
        buf: &mut [u8],
        if_changed: bool,
    ) -> Result<Option<(usize, u64)>, LatestError> {
        for _ in 0..READ_TRIES {
            let l = load_latest(&self.raw);
            if l < self.last {
                return Err(LatestError::Corrupt("the latest version went backwards"));
            }
            if l == 0 || (if_changed && l == self.last) {
                return Ok(None);
            }
            if let Some(len) = self.copy(l - 1, buf)? {
                self.last = l;
                return Ok(Some((len, l)));
            }
            spin_hint();
        }
        Err(LatestError::Busy)
    }

    /// One try at copying the value of ticket `t`: `None` if the slot does not hold it, or it
    /// changed during the copy.
    fn copy(&self, t: u64, buf: &mut [u8]) -> Result<Option<usize>, LatestError> {
        let raw = &self.raw;
        let want = t.wrapping_mul(2).wrapping_add(2);
        // Does the slot hold ticket t, complete? ORDERING: Relaxed; the Acquire load of
        // `latest` that named ticket t (`load_latest`) synchronises with the Release
        // `fetch_max` that published it, which follows the writer's done store and words: this
        // load sees that done store or a later claim's odd seq, never an older seq.
        let s1 = raw.word(t, 0).load(Ordering::Relaxed);
        if s1 != want {
            return Ok(None);
        }
        // ORDERING: Relaxed; validated by the seq check after the Acquire fence below.
        let len = raw.word(t, 1).load(Ordering::Relaxed);
        let n = usize::try_from(len)
            .unwrap_or(usize::MAX)
            .min(raw.value_size)
            .min(buf.len());
        // Whole words (fixed-size: one 8-byte move each), then the tail.
        let mut whole = buf[..n].chunks_exact_mut(8);
        let mut k = 0;
        for ch in &mut whole {
            // ORDERING: Relaxed; as above.
            let w = raw.word(t, SLOT_HEADER_WORDS + k).load(Ordering::Relaxed);
            ch.copy_from_slice(&w.to_le_bytes());
            k += 1;
        }
        let tail = whole.into_remainder();
        if !tail.is_empty() {
            // ORDERING: Relaxed; as above.
            let w = raw.word(t, SLOT_HEADER_WORDS + k).load(Ordering::Relaxed);
            tail.copy_from_slice(&w.to_le_bytes()[..tail.len()]);
        }
        latest_reader_fence();
        // SYNC POINT: did the copy hold still? ORDERING: Relaxed, after the Acquire fence that
        // pairs with the writer's Release fence (`latest_writer_fence`): a copy that saw any
        // word of a later write sees that write's odd seq (or a later one) here.
        let s2 = raw.word(t, 0).load(Ordering::Relaxed);
        if s2 != s1 {
            return Ok(None);
        }
        // The length as copied, checked where used (never re-read).
        if len > raw.value_size as u64 {
            return Err(LatestError::Corrupt("value length beyond the value size"));
        }
        let len = len as usize;
        if len > buf.len() {
            return Err(LatestError::BufferTooSmall { needed: len });
        }
        Ok(Some(len))
    }
}

#[cfg(all(test, not(loom)))]
mod tests;
