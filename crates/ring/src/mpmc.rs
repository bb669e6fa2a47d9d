//! Multi-producer multi-consumer ring (Vyukov's bounded queue with per-slot sequence stamps,
//! 64-bit), usable as MPSC and SPMC.
//!
//! ```text
//! CachePadded<Meta>        magic, kind, element size/align, capacity
//! CachePadded<AtomicU64>   enqueue position (producers CAS it)
//! CachePadded<AtomicU64>   dequeue position (consumers CAS it)
//! [Slot<T>; capacity]      Slot = { seq: AtomicU64, value: T }, repr(C)
//! ```
//!
//! Slot `pos & mask` is free for position `pos` when `seq == pos`, and holds the value of
//! position `pos` when `seq == pos + 1`. A producer that wins the CAS on the enqueue position
//! writes the value, then stores `seq = pos + 1` (Release); a consumer that sees it (Acquire)
//! and wins the CAS on the dequeue position reads the value, then stores
//! `seq = pos + capacity` (Release), freeing the slot for the next lap. The value lies next
//! to its stamp, so a consumer polling an empty ring learns of new data with one cache-line
//! transfer. Stamps read from shared memory are only compared, never used as indices; a slot
//! whose stamp never becomes consistent (a corrupt or hostile ring) ends in `Corrupt` after
//! a bounded number of retries rather than a livelock.

use core::marker::PhantomData;
use core::ptr::NonNull;

use bytemuck::Pod;
use crossbeam_utils::{Backoff, CachePadded};

use crate::{
    KeepAlive,
    error::{AttachError, PopError, PushError},
    header::{Kind, Meta, PaddedMeta, align_up, check_capacity, check_region, open_ring},
    slot::{Slot, init_slots},
    sync::{AtomicU64, MPMC_SEQ_LOAD, MPMC_SEQ_STORE, Ordering, spin_hint},
};

#[repr(C)]
struct Header {
    meta: PaddedMeta,
    enq: CachePadded<AtomicU64>,
    deq: CachePadded<AtomicU64>,
}

/// Retries on a slot whose stamp is ahead while the position stays the same, before the ring
/// is declared corrupt. Legitimately this lasts only as long as another endpoint's CAS is in
/// flight.
const STUCK_LIMIT: u32 = 1 << 16;

/// Namespace for laying out, initialising and attaching to MPMC rings.
#[derive(Debug)]
pub struct MpmcRing<T>(PhantomData<T>);

fn slots_offset<T>() -> usize {
    align_up(size_of::<Header>(), align_of::<Slot<T>>().max(128))
}

struct Raw<T> {
    hdr: NonNull<Header>,
    slots: NonNull<Slot<T>>,
    cap: u64,
    mask: u64,
    keep: Option<KeepAlive>,
}

impl<T> Clone for Raw<T> {
    fn clone(&self) -> Self {
        Self {
            hdr: self.hdr,
            slots: self.slots,
            cap: self.cap,
            mask: self.mask,
            keep: self.keep.clone(),
        }
    }
}

impl<T: Pod> MpmcRing<T> {
    /// Bytes a region needs for `capacity` elements; `usize::MAX` (which no region holds) if
    /// that does not fit in a `usize`, so a hostile capacity fails the region check instead of
    /// wrapping around to a small size.
    pub fn required_size(capacity: u64) -> usize {
        crate::header::required_size(slots_offset::<T>(), size_of::<Slot<T>>(), capacity)
    }

    /// Initialises an empty ring whose first position is `start`.
    ///
    /// # Safety
    /// `ptr` must be valid for reads and writes of `len` bytes, and nobody may use the region
    /// while it is initialised.
    pub unsafe fn init(
        ptr: *mut u8,
        len: usize,
        capacity: u64,
        start: u64,
    ) -> Result<(), AttachError> {
        check_capacity(capacity, Kind::Mpmc)?;
        check_region(ptr, len, Self::required_size(capacity))?;
        let hdr = Header {
            meta: CachePadded::new(Meta::new::<T>(Kind::Mpmc, capacity)),
            enq: CachePadded::new(AtomicU64::new(start)),
            deq: CachePadded::new(AtomicU64::new(start)),
        };
        // SAFETY: in bounds and aligned (checked); exclusive during init (caller).
        unsafe { ptr.cast::<Header>().write(hdr) };
        let slots = ptr.wrapping_add(slots_offset::<T>()).cast::<Slot<T>>();
        // SAFETY: the slot array lies inside the region (required_size checked), aligned;
        // exclusive during init (caller).
        unsafe { init_slots(slots, capacity, start) };
        Ok(())
    }

    /// # Safety
    /// As for [`sender`](Self::sender).
    unsafe fn attach(ptr: *mut u8, len: usize) -> Result<Raw<T>, AttachError> {
        // SAFETY: forwarded contract; Header is repr(C) with the meta first.
        let (hdr, cap) = unsafe {
            open_ring::<Header, T>(
                ptr,
                len,
                Kind::Mpmc,
                slots_offset::<T>(),
                Self::required_size,
            )?
        };
        // SAFETY: a checked header in bounds; atomics only.
        let h = unsafe { hdr.as_ref() };
        // ORDERING: Relaxed; a sanity check only, the protocol re-reads both.
        let enq = h.enq.load(Ordering::Relaxed);
        // ORDERING: as above.
        let deq = h.deq.load(Ordering::Relaxed);
        if enq.wrapping_sub(deq) > cap && deq.wrapping_sub(enq) > cap {
            return Err(AttachError::Corrupt("positions more than a capacity apart"));
        }
        Ok(Raw {
            hdr,
            // SAFETY: the slot array lies inside the region (required_size checked).
            slots: unsafe { NonNull::new_unchecked(ptr.add(slots_offset::<T>()).cast()) },
            cap,
            mask: cap - 1,
            keep: None,
        })
    }

    /// Attaches a sending endpoint. Any number may be attached, in any process.
    ///
    /// # Safety
    /// `ptr` must be valid for reads and writes of `len` bytes for as long as the returned
    /// handle lives, and accessed by others only through ring handles.
    pub unsafe fn sender(ptr: *mut u8, len: usize) -> Result<Sender<T>, AttachError> {
        Ok(Sender {
            // SAFETY: forwarded contract.
            raw: unsafe { Self::attach(ptr, len)? },
            _not_sync: PhantomData,
        })
    }

    /// Attaches a receiving endpoint. Any number may be attached, in any process.
    ///
    /// # Safety
    /// As for [`sender`](Self::sender).
    pub unsafe fn receiver(ptr: *mut u8, len: usize) -> Result<Receiver<T>, AttachError> {
        Ok(Receiver {
            // SAFETY: forwarded contract.
            raw: unsafe { Self::attach(ptr, len)? },
            _not_sync: PhantomData,
        })
    }
}

impl<T> Raw<T> {
    fn hdr(&self) -> &Header {
        // SAFETY: valid for the handle's lifetime (constructor contract); atomics only.
        unsafe { self.hdr.as_ref() }
    }
    fn slot(&self, pos: u64) -> &Slot<T> {
        // SAFETY: `pos & mask < cap`; the slot array holds `cap` slots (checked at attach).
        unsafe { self.slots.add((pos & self.mask) as usize).as_ref() }
    }
}

/// A sending end of an MPMC ring. `Send` and `Clone`, not `Sync`.
pub struct Sender<T> {
    raw: Raw<T>,
    _not_sync: PhantomData<core::cell::Cell<()>>,
}

/// A receiving end of an MPMC ring. `Send` and `Clone`, not `Sync`.
pub struct Receiver<T> {
    raw: Raw<T>,
    _not_sync: PhantomData<core::cell::Cell<()>>,
}

// SAFETY: the pointers refer to memory that outlives the handle (constructor contract) and is
// shared only through the stamp protocol; T: Send because values cross threads.
unsafe impl<T: Send> Send for Sender<T> {}
// SAFETY: as for Sender.
unsafe impl<T: Send> Send for Receiver<T> {}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        Self {
            raw: self.raw.clone(),
            _not_sync: PhantomData,
        }
    }
}

impl<T> Clone for Receiver<T> {
    fn clone(&self) -> Self {
        Self {
            raw: self.raw.clone(),
            _not_sync: PhantomData,
        }
    }
}

impl<T> core::fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Sender")
            .field("capacity", &self.raw.cap)
            .finish_non_exhaustive()
    }
}

impl<T> core::fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Receiver")
            .field("capacity", &self.raw.cap)
            .finish_non_exhaustive()
    }
}

/// What one attempt on a slot found.
enum Step {
    /// The slot is ours to take at `pos` (CAS the position).
    Take,
    /// The ring is full (push) or empty (pop) at `pos`.
    Done,
    /// Another endpoint got there first: reload the position.
    Retry,
}

/// After a slot's stamp was ahead of `pos`: reloads the shared position. Returns `None` when
/// the position has stayed at `pos` for more than `STUCK_LIMIT` retries (a stamp that can never
/// become consistent: corrupt or hostile ring).
fn reload(shared: &AtomicU64, pos: u64, stuck: &mut u32) -> Option<u64> {
    // ORDERING: Relaxed; a new starting guess, validated against the slot's stamp like the
    // first load.
    let now = shared.load(Ordering::Relaxed);
    if now == pos {
        *stuck += 1;
        if *stuck > STUCK_LIMIT {
            return None;
        }
        spin_hint();
    } else {
        *stuck = 0;
    }
    Some(now)
}

fn classify(seq: u64, want: u64) -> Step {
    match seq.wrapping_sub(want) as i64 {
        0 => Step::Take,
        d if d < 0 => Step::Done,
        _ => Step::Retry,
    }
}

impl<T: Pod> Sender<T> {
    /// Keeps `owner` alive as long as this handle (and its clones made afterwards).
    #[must_use]
    pub fn keep_alive(mut self, owner: KeepAlive) -> Self {
        self.raw.keep = Some(owner);
        self
    }

    /// Pushes one value, or gives it back if the ring is full. Never blocks.
    ///
    /// ```
    /// use shmlane_ring::HeapRegion;
    /// let (tx, rx) = HeapRegion::mpmc::<u32>(4);
    /// let tx2 = tx.clone();
    /// tx.push(1).unwrap();
    /// tx2.push(2).unwrap();
    /// assert_eq!(rx.pop(), Ok(1));
    /// assert_eq!(rx.pop(), Ok(2));
    /// ```
    pub fn push(&self, value: T) -> Result<(), PushError<T>> {
        let h = self.raw.hdr();
        let backoff = Backoff::new();
        // ORDERING: Relaxed; only a starting guess, validated against the slot's stamp.
        let mut pos = h.enq.load(Ordering::Relaxed);
        let mut stuck = 0;
        loop {
            let slot = self.raw.slot(pos);
            // ORDERING: MPMC_SEQ_LOAD (Acquire); pairs with the consumer's MPMC_SEQ_STORE that
            // freed the slot, so its read of the old value happened before our write.
            let seq = slot.seq.load(MPMC_SEQ_LOAD);
            match classify(seq, pos) {
                Step::Take => {
                    // ORDERING: Relaxed; the CAS only elects the writer of this slot, the
                    // stamp carries the data ordering.
                    match h.enq.compare_exchange_weak(
                        pos,
                        pos.wrapping_add(1),
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    ) {
                        Ok(_) => {
                            // SAFETY: we won position `pos`; until we store the stamp nobody
                            // else reads or writes this slot.
                            slot.value.with_mut(|p| unsafe { p.write(value) });
                            // ORDERING: MPMC_SEQ_STORE (Release); pairs with the consumer's
                            // MPMC_SEQ_LOAD: our value write happens-before its read.
                            slot.seq.store(pos.wrapping_add(1), MPMC_SEQ_STORE);
                            return Ok(());
                        }
                        Err(now) => {
                            pos = now;
                            backoff.spin();
                        }
                    }
                }
                Step::Done => {
                    return Err(PushError::Full(value));
                }
                Step::Retry => match reload(&h.enq, pos, &mut stuck) {
                    Some(now) => pos = now,
                    None => return Err(PushError::Corrupt(value)),
                },
            }
        }
    }

    /// The capacity.
    pub fn capacity(&self) -> usize {
        self.raw.cap as usize
    }

    /// Elements in the ring, approximately (positions read one after the other).
    pub fn len(&self) -> usize {
        approx_len(&self.raw)
    }

    /// Whether the ring looks empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn approx_len<T>(raw: &Raw<T>) -> usize {
    // ORDERING: Relaxed; an estimate for statistics.
    let deq = raw.hdr().deq.load(Ordering::Relaxed);
    // ORDERING: Relaxed; as above.
    let enq = raw.hdr().enq.load(Ordering::Relaxed);
    enq.wrapping_sub(deq).min(raw.cap) as usize
}

impl<T: Pod> Receiver<T> {
    /// Keeps `owner` alive as long as this handle (and its clones made afterwards).
    #[must_use]
    pub fn keep_alive(mut self, owner: KeepAlive) -> Self {
        self.raw.keep = Some(owner);
        self
    }

    /// Pops one value. Never blocks.
    pub fn pop(&self) -> Result<T, PopError> {
        let h = self.raw.hdr();
        let backoff = Backoff::new();
        // ORDERING: Relaxed; a starting guess, validated against the stamp.
        let mut pos = h.deq.load(Ordering::Relaxed);
        let mut stuck = 0;
        loop {
            let slot = self.raw.slot(pos);
            // ORDERING: MPMC_SEQ_LOAD (Acquire); pairs with the producer's MPMC_SEQ_STORE, so
            // its value write is visible.
            let seq = slot.seq.load(MPMC_SEQ_LOAD);
            match classify(seq, pos.wrapping_add(1)) {
                Step::Take => {
                    // ORDERING: Relaxed; elects the reader, the stamps order the data.
                    match h.deq.compare_exchange_weak(
                        pos,
                        pos.wrapping_add(1),
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    ) {
                        Ok(_) => {
                            // SAFETY: we won position `pos`, whose value is published; no
                            // producer writes the slot before we store the stamp.
                            let v = slot.value.with(|p| unsafe { p.read() });
                            // ORDERING: MPMC_SEQ_STORE (Release); pairs with the next
                            // producer's MPMC_SEQ_LOAD: our read happens-before its write.
                            slot.seq
                                .store(pos.wrapping_add(self.raw.cap), MPMC_SEQ_STORE);
                            return Ok(v);
                        }
                        Err(now) => {
                            pos = now;
                            backoff.spin();
                        }
                    }
                }
                Step::Done => return Err(PopError::Empty),
                Step::Retry => match reload(&h.deq, pos, &mut stuck) {
                    Some(now) => pos = now,
                    None => return Err(PopError::Corrupt),
                },
            }
        }
    }

    /// Pops up to `dst.len()` values; returns how many.
    pub fn pop_slice(&self, dst: &mut [T]) -> Result<usize, PopError> {
        for (i, d) in dst.iter_mut().enumerate() {
            match self.pop() {
                Ok(v) => *d = v,
                Err(PopError::Empty) => return Ok(i),
                Err(e) => return Err(e),
            }
        }
        Ok(dst.len())
    }

    /// The capacity.
    pub fn capacity(&self) -> usize {
        self.raw.cap as usize
    }

    /// Elements in the ring, approximately.
    pub fn len(&self) -> usize {
        approx_len(&self.raw)
    }

    /// Whether the ring looks empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::HeapRegion;

    #[test]
    fn fifo_full_empty_and_wrap() {
        for start in [0, u64::MAX - 1] {
            let (tx, rx) = HeapRegion::mpmc_at::<u64>(2, start);
            for round in 0..4 {
                tx.push(round).unwrap();
                tx.push(round + 100).unwrap();
                assert!(matches!(tx.push(7), Err(PushError::Full(7))));
                assert_eq!(tx.len(), 2);
                assert_eq!(rx.pop(), Ok(round));
                assert_eq!(rx.pop(), Ok(round + 100));
                assert_eq!(rx.pop(), Err(PopError::Empty));
            }
        }
    }

    #[test]
    fn capacity_one_is_refused() {
        // With one slot, "full at p" and "free for p + 1" are the same stamp.
        let region = HeapRegion::new(MpmcRing::<u64>::required_size(1));
        // SAFETY: the region outlives the call.
        let r = unsafe { MpmcRing::<u64>::init(region.as_ptr(), region.len(), 1, 0) };
        assert_eq!(r, Err(AttachError::BadCapacity(1)));
    }

    #[test]
    fn hostile_stamp_ends_in_corrupt_not_livelock() {
        let region = HeapRegion::new(MpmcRing::<u64>::required_size(4));
        // SAFETY: the region outlives the handles.
        unsafe {
            MpmcRing::<u64>::init(region.as_ptr(), region.len(), 4, 0).unwrap();
            let tx = MpmcRing::<u64>::sender(region.as_ptr(), region.len()).unwrap();
            let rx = MpmcRing::<u64>::receiver(region.as_ptr(), region.len()).unwrap();
            // Stamp of slot 0 far ahead: neither side can ever take it.
            let slot0 = &*region
                .as_ptr()
                .add(slots_offset::<u64>())
                .cast::<Slot<u64>>();
            slot0.seq.store(1 << 40, Ordering::Release);
            assert!(matches!(tx.push(1), Err(PushError::Corrupt(1))));
            assert_eq!(rx.pop(), Err(PopError::Corrupt));
        }
    }

    #[test]
    fn two_by_two_threads_lose_and_duplicate_nothing() {
        let per: u64 = if cfg!(miri) { 100 } else { 50_000 };
        let (tx, rx) = HeapRegion::mpmc::<u64>(16);
        let producers: Vec<_> = (0..2u64)
            .map(|id| {
                let tx = tx.clone();
                std::thread::spawn(move || {
                    for i in 0..per {
                        let mut v = (id << 32) | i;
                        while let Err(e) = tx.push(v) {
                            v = e.into_inner();
                            std::thread::yield_now();
                        }
                    }
                })
            })
            .collect();
        let total = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let consumers: Vec<_> = (0..2)
            .map(|_| {
                let rx = rx.clone();
                let total = total.clone();
                std::thread::spawn(move || {
                    let mut got = Vec::new();
                    let mut last = [None::<u64>; 2];
                    while total.load(std::sync::atomic::Ordering::Relaxed) < 2 * per {
                        if let Ok(v) = rx.pop() {
                            let (id, i) = ((v >> 32) as usize, v & 0xffff_ffff);
                            // Per producer, each consumer sees increasing sequence numbers.
                            assert!(last[id].is_none_or(|l| l < i));
                            last[id] = Some(i);
                            got.push(v);
                            total.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        } else {
                            std::thread::yield_now();
                        }
                    }
                    got
                })
            })
            .collect();
        for p in producers {
            p.join().unwrap();
        }
        let mut all: Vec<u64> = consumers
            .into_iter()
            .flat_map(|c| c.join().unwrap())
            .collect();
        all.sort_unstable();
        let mut want: Vec<u64> = (0..2u64)
            .flat_map(|id| (0..per).map(move |i| (id << 32) | i))
            .collect();
        want.sort_unstable();
        assert_eq!(all, want);
    }
}
