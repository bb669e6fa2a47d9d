//! The cursor table of a broadcast channel: where each reader is, for the producer's
//! statistics (how many readers, how far behind the slowest is). Readers keep their cursors in
//! their own memory; each also mirrors it into an entry of this table, on a cache line of its
//! own, with one Relaxed store per read (no line the producer writes is touched). The producer
//! reads the table only when asked (a slow path that may check liveness).
//!
//! ```text
//! line 0        magic b"SHMLCURS", entries (n)
//! line 1 + i    entry i: owner word, cursor (the position of the reader's next message)
//!                 owner word: 0 free; tag << 1 | 1 being claimed; tag << 1 held by `tag`
//! ```
//!
//! A reader claims a free entry (or one whose holder is dead, by the liveness test it is
//! given) with a CAS to "being claimed", stores its cursor, then stores "held" (Release,
//! `BCAST_CURSOR_CLAIM`): a scan that Acquire-loads "held" sees that cursor or a later one,
//! never the previous holder's. It lets go with a CAS back to 0. A full table just means the
//! reader is not counted (it reads as well as any other).
//!
//! Hostile memory: the entry count is read once at attach and checked against the region;
//! every owner word and cursor is a plain number compared or subtracted (wrapping), never an
//! index or a size, so a forged entry gives a wrong statistic, nothing else.

use core::ptr::NonNull;

use crate::{
    KeepAlive,
    error::AttachError,
    header::check_region,
    sync::{AtomicU64, BCAST_CURSOR_CLAIM, Ordering},
};

const MAGIC: u64 = u64::from_le_bytes(*b"SHMLCURS");
/// Bytes per entry (and of the table's header): a cache-line pair, as `CachePadded`.
const LINE: usize = 128;
const WORDS_PER_LINE: usize = LINE / 8;
/// The owner word's "being claimed" bit.
const CLAIMING: u64 = 1;
/// Largest table: far more readers than any broadcast has.
pub const MAX_ENTRIES: usize = 1 << 16;
/// Entries of the tables channels create.
pub const DEFAULT_ENTRIES: usize = 64;

/// A broadcast ring's cursor table (see the module docs). `Send`, `Sync` (atomics only) and
/// cheap to clone.
pub struct CursorTable {
    base: NonNull<AtomicU64>,
    entries: usize,
    keep: Option<KeepAlive>,
}

impl Clone for CursorTable {
    fn clone(&self) -> Self {
        Self {
            base: self.base,
            entries: self.entries,
            keep: self.keep.clone(),
        }
    }
}

// SAFETY: points to memory that outlives the handle (constructor contract), accessed only
// through atomics.
unsafe impl Send for CursorTable {}
// SAFETY: as above; `&CursorTable` only performs atomic operations.
unsafe impl Sync for CursorTable {}

impl core::fmt::Debug for CursorTable {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("CursorTable")
            .field("entries", &self.entries)
            .finish_non_exhaustive()
    }
}

/// What a scan of the table found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CursorScan {
    /// Entries held by live readers.
    pub readers: u64,
    /// How many messages the slowest of them has not read yet (the producer's position minus
    /// its cursor; 0 for a cursor at or ahead of the producer); `None` without readers.
    pub slowest_lag: Option<u64>,
}

impl CursorTable {
    /// Bytes a table of `entries` entries needs.
    pub fn required_size(entries: usize) -> usize {
        LINE * (entries.min(MAX_ENTRIES) + 1)
    }

    /// Initialises an empty table of `entries` (1..=[`MAX_ENTRIES`]).
    ///
    /// # Safety
    /// `ptr` must be valid for reads and writes of `len` bytes, and nobody may use the region
    /// while it is initialised.
    pub unsafe fn init(ptr: *mut u8, len: usize, entries: usize) -> Result<(), AttachError> {
        if !(1..=MAX_ENTRIES).contains(&entries) {
            return Err(AttachError::Corrupt(
                "cursor table entries not in 1..=65536",
            ));
        }
        check_region(ptr, len, Self::required_size(entries))?;
        let words = ptr.cast::<AtomicU64>();
        for i in 0..(entries + 1) * WORDS_PER_LINE {
            let v = match i {
                0 => MAGIC,
                1 => entries as u64,
                _ => 0,
            };
            // SAFETY: in bounds (checked: required_size) and 8-aligned (check_region checks
            // 128); exclusive during init (caller).
            unsafe { words.add(i).write(AtomicU64::new(v)) };
        }
        Ok(())
    }

    /// Attaches to a table made by [`init`](Self::init).
    ///
    /// # Safety
    /// `ptr` must be valid for reads and writes of `len` bytes for as long as the handle and
    /// the entries it hands out live, and accessed by others only atomically.
    pub unsafe fn attach(ptr: *mut u8, len: usize) -> Result<Self, AttachError> {
        check_region(ptr, len, LINE)?;
        let base = NonNull::new(ptr.cast::<AtomicU64>()).ok_or(AttachError::Misaligned)?;
        // SAFETY: the first line is in the region (checked), aligned; atomics only.
        let (magic, entries) = unsafe { (base.as_ref(), base.add(1).as_ref()) };
        // ORDERING: Relaxed; written once at init, before the region was shared.
        if magic.load(Ordering::Relaxed) != MAGIC {
            return Err(AttachError::NotARing);
        }
        // ORDERING: as above. Read once: the geometry of this handle.
        let n = entries.load(Ordering::Relaxed);
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        if !(1..=MAX_ENTRIES).contains(&n) {
            return Err(AttachError::Corrupt(
                "cursor table entries not in 1..=65536",
            ));
        }
        check_region(ptr, len, Self::required_size(n))?;
        Ok(Self {
            base,
            entries: n,
            keep: None,
        })
    }

    /// Keeps `owner` (the segment or heap region holding the table) alive as long as this
    /// handle and the entries it hands out.
    #[must_use]
    pub fn keep_alive(mut self, owner: KeepAlive) -> Self {
        self.keep = Some(owner);
        self
    }

    /// The number of entries.
    pub fn entries(&self) -> usize {
        self.entries
    }

    /// Word `w` (0: owner, 1: cursor) of entry `i` (< entries).
    fn word(&self, i: usize, w: usize) -> &AtomicU64 {
        debug_assert!(i < self.entries && w < 2);
        // SAFETY: `i < entries` (callers iterate below it), so the entry's line lies in the
        // region (checked at attach); atomics only.
        unsafe { self.base.add((i + 1) * WORDS_PER_LINE + w).as_ref() }
    }

    /// Claims an entry for a reader of process tag `owner` (non-zero, below 2^63) whose
    /// cursor is `cursor`: a free one, else one whose holder `is_alive` says is dead. `None`
    /// if every entry is held by a live reader (the reader is then not counted).
    pub fn claim(
        &self,
        owner: u64,
        cursor: u64,
        is_alive: &dyn Fn(u64) -> bool,
    ) -> Option<CursorEntry> {
        debug_assert!(
            owner != 0 && owner < 1 << 63,
            "owner tags are non-zero, below 2^63"
        );
        let held = owner << 1;
        // Free entries first (no liveness test: syscalls), then dead holders' entries.
        for takeover in [false, true] {
            for i in 0..self.entries {
                let word = self.word(i, 0);
                // ORDERING: Acquire on success; pairs with the previous holder's Release CAS
                // in `drop` (its last cursor store happens-before ours). Exactly one of
                // several racing claimers wins. Relaxed on failure: only a candidate.
                let mut won =
                    word.compare_exchange(0, held | CLAIMING, Ordering::Acquire, Ordering::Relaxed);
                if let Err(cur) = won
                    && takeover
                    && !is_alive(cur >> 1)
                {
                    // ORDERING: as above (a dead holder let go of nothing: there is no
                    // Release to pair with, and its stale cursor is overwritten below).
                    won = word.compare_exchange(
                        cur,
                        held | CLAIMING,
                        Ordering::Acquire,
                        Ordering::Relaxed,
                    );
                }
                if won.is_ok() {
                    // ORDERING: Relaxed; published by the Release store of the owner below.
                    self.word(i, 1).store(cursor, Ordering::Relaxed);
                    // SYNC POINT: the entry is held, with our cursor. ORDERING: Release
                    // (`BCAST_CURSOR_CLAIM`); pairs with the Acquire owner load in `scan`: a
                    // scan that sees us as holder sees our cursor (or a later one), never the
                    // previous holder's.
                    word.store(held, BCAST_CURSOR_CLAIM);
                    return Some(CursorEntry {
                        table: self.clone(),
                        index: i,
                        held,
                    });
                }
            }
        }
        None
    }

    /// Counts the entries held by live readers and finds the slowest one's lag behind
    /// `position` (the producer's). Slow path: calls `is_alive` for each held entry.
    pub fn scan(&self, position: u64, is_alive: &dyn Fn(u64) -> bool) -> CursorScan {
        let mut out = CursorScan::default();
        for i in 0..self.entries {
            // ORDERING: Acquire; pairs with the Release owner store in `claim`
            // (`BCAST_CURSOR_CLAIM`).
            let w = self.word(i, 0).load(Ordering::Acquire);
            if w == 0 || w & CLAIMING != 0 || !is_alive(w >> 1) {
                continue;
            }
            // ORDERING: Relaxed; at least the cursor stored before the claim completed (the
            // Acquire above), or a later one (coherence). A statistic.
            let c = self.word(i, 1).load(Ordering::Relaxed);
            let d = position.wrapping_sub(c);
            // A cursor ahead of the producer (a reader waiting for a future number, or a
            // forged one) lags by nothing.
            let lag = if d >= 1 << 63 { 0 } else { d };
            out.readers += 1;
            out.slowest_lag = Some(out.slowest_lag.map_or(lag, |s| s.max(lag)));
        }
        out
    }
}

/// A reader's entry in the cursor table; let go on drop. `Send`, not `Sync`.
pub struct CursorEntry {
    table: CursorTable,
    index: usize,
    held: u64,
}

impl core::fmt::Debug for CursorEntry {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("CursorEntry")
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

impl CursorEntry {
    /// Publishes the reader's cursor (the position of its next message). One Relaxed store to
    /// a line only this reader writes.
    pub fn publish(&self, cursor: u64) {
        // ORDERING: Relaxed; a statistic the producer reads on its slow path (coherence
        // gives it this value or a later one once it sees it).
        self.table
            .word(self.index, 1)
            .store(cursor, Ordering::Relaxed);
    }

    /// The entry's index in the table.
    pub fn index(&self) -> usize {
        self.index
    }
}

impl Drop for CursorEntry {
    fn drop(&mut self) {
        // ORDERING: Release; pairs with the Acquire CAS of the next claimer. A CAS: an entry
        // someone overwrote is not ours to free.
        let _ = self.table.word(self.index, 0).compare_exchange(
            self.held,
            0,
            Ordering::Release,
            Ordering::Relaxed,
        );
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::HeapRegion;

    fn table(entries: usize) -> (CursorTable, std::sync::Arc<HeapRegion>) {
        let r = std::sync::Arc::new(HeapRegion::new(CursorTable::required_size(entries)));
        // SAFETY: the region outlives the table (kept alive by it).
        let t = unsafe {
            CursorTable::init(r.as_ptr(), r.len(), entries).unwrap();
            CursorTable::attach(r.as_ptr(), r.len()).unwrap()
        };
        (t.keep_alive(r.clone()), r)
    }

    #[test]
    fn claims_scans_and_takeovers() {
        let (t, _r) = table(2);
        let live = |o: u64| o != 9;
        let a = t.claim(1, 10, &live).unwrap();
        let b = t.claim(2, 40, &live).unwrap();
        assert!(t.claim(3, 0, &live).is_none(), "a full table refuses");
        assert_eq!(
            t.scan(50, &live),
            CursorScan {
                readers: 2,
                slowest_lag: Some(40)
            }
        );
        a.publish(45);
        assert_eq!(t.scan(50, &live).slowest_lag, Some(10));
        drop(a);
        assert_eq!(t.scan(50, &live).readers, 1);
        // A holder that dies: not counted, and its entry is taken over.
        let dead = t.claim(9, 0, &live).unwrap();
        assert_eq!(t.scan(50, &live).readers, 1);
        // (`dead` is kept, not forgotten: forgetting it leaked the table's keep-alive, which
        // Miri's leak check reports; its late drop frees nothing, as the entry is c's then.)
        let c = t.claim(4, 50, &live).unwrap();
        assert_eq!(
            t.scan(50, &live),
            CursorScan {
                readers: 2,
                slowest_lag: Some(10)
            }
        );
        drop((b, c));
        assert_eq!(t.scan(50, &live), CursorScan::default());
        drop(dead);
        assert_eq!(t.scan(50, &live), CursorScan::default());
    }

    #[test]
    fn hostile_words_give_wrong_numbers_never_a_panic() {
        let (t, r) = table(4);
        let _e = t.claim(1, 5, &|_| true).unwrap();
        let words = r.as_ptr().cast::<AtomicU64>();
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..2000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let i = (x % (5 * WORDS_PER_LINE as u64)) as usize;
            if i < 2 {
                continue; // the header is read at attach only
            }
            // SAFETY: in the region; a test playing a hostile peer, atomically.
            // ORDERING: Relaxed; a hostile peer's store, paired with nothing.
            unsafe { (*words.add(i)).store(x.rotate_left(7), Ordering::Relaxed) };
            let s = t.scan(x, &|o| o % 3 != 0);
            assert!(s.readers <= 4);
            let _ = t.claim(7, x, &|o| o % 2 == 0);
        }
        // A forged entry count is refused at attach.
        // SAFETY: as above. ORDERING: as above.
        unsafe { (*words.add(1)).store(1 << 40, Ordering::Relaxed) };
        // SAFETY: the region lives.
        assert!(unsafe { CursorTable::attach(r.as_ptr(), r.len()) }.is_err());
    }
}
