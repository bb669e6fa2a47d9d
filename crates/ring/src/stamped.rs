//! Single-producer single-consumer ring with a sequence stamp beside each element: the fast
//! path for fixed-size messages moved one at a time (quotes, orders, events).
//!
//! ```text
//! CachePadded<Meta>        magic, kind, element size/align, capacity, role claims
//! CachePadded<AtomicU64>   tail: the producer's position, refreshed every 64 pushes
//! CachePadded<AtomicU64>   head: the consumer's position, refreshed every 64 pops
//! [Slot<T>; capacity]      Slot = { seq: AtomicU64, value: T }, repr(C)
//! ```
//!
//! Slot `pos & mask` is free for position `pos` when `seq == pos`, and holds the value of
//! position `pos` when `seq == pos + 1`. The producer writes the value, then stores
//! `seq = pos + 1` (Release); the consumer polls the stamp of its next slot (Acquire), reads
//! the value, then stores `seq = pos + capacity` (Release), freeing the slot for the next lap.
//!
//! Why a second SPSC ring: in [`SpscRing`](crate::SpscRing) the consumer learns of new data
//! from the shared tail, one cache line that the producer writes on every push and the
//! consumer reads on every poll, so that line crosses between the cores once per message when
//! the consumer keeps up. Here the consumer polls the slot it will read, so the only shared
//! lines are the slots themselves, and one transfer carries the stamp and the value together
//! (FastForward, Vyukov and the Disruptor use the same idea). On this project's machine a
//! minimal ring of each kind, two processes, 8-byte messages: 410–520 M msg/s with stamps
//! against 120–140 M msg/s with a shared tail (`docs/benchmarks.md`). The price: values are
//! not contiguous, so there are no slice chunks; use [`SpscRing`](crate::SpscRing) for blocks.
//!
//! Each side stores its position in the header every 64 operations and when its handle is
//! dropped, for [`StampedConsumer::len`] and monitoring (so `len` is approximate, within 64)
//! and as the starting point of a later endpoint, which then skips forward by the stamps (a
//! producer that died leaves a position up to 64 behind). Nothing on the hot path reads the
//! other side's position.
//!
//! Hostile or corrupt memory: a slot's stamp, seen from either side, can only be one of two
//! values (free or full for the position that side expects); anything else is reported as
//! `Corrupt`. Stamps are compared, never used as indices; slots are indexed by private
//! positions masked by the capacity.

use core::marker::PhantomData;
use core::ptr::NonNull;

use bytemuck::Pod;
use crossbeam_utils::CachePadded;

use crate::{
    KeepAlive,
    error::{AttachError, PopError, PushError},
    header::{Kind, Meta, PaddedMeta, Role, align_up, check_capacity, check_region, open_ring},
    slot::{Slot, init_slots},
    sync::{AtomicU64, Ordering, STAMPED_SEQ_LOAD, STAMPED_SEQ_STORE},
};

#[repr(C)]
struct Header {
    meta: PaddedMeta,
    tail: CachePadded<AtomicU64>,
    head: CachePadded<AtomicU64>,
}

/// The positions in the header are refreshed every this many operations (and when a handle is
/// dropped). Storing them on every operation cost 3–4x the streaming throughput between two
/// processes on this project's machine, although no one reads them on the hot path.
const PUBLISH_EVERY: u64 = 64;

/// Namespace for laying out, initialising and attaching to stamped SPSC rings.
#[derive(Debug)]
pub struct StampedRing<T>(PhantomData<T>);

fn slots_offset<T>() -> usize {
    align_up(size_of::<Header>(), align_of::<Slot<T>>().max(128))
}

struct Raw<T> {
    hdr: NonNull<Header>,
    slots: NonNull<Slot<T>>,
    cap: u64,
    mask: u64,
    owner: u64,
    keep: Option<KeepAlive>,
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

impl<T: Pod> StampedRing<T> {
    /// Bytes a region needs for `capacity` elements; `usize::MAX` (which no region holds) if
    /// that does not fit in a `usize`, so a hostile capacity fails the region check instead of
    /// wrapping around to a small size.
    pub fn required_size(capacity: u64) -> usize {
        crate::header::required_size(slots_offset::<T>(), size_of::<Slot<T>>(), capacity)
    }

    /// Initialises an empty ring whose first position is `start` (0 normally; tests use values
    /// near `u64::MAX`). The capacity is a power of two of at least 2: with one slot, "full at
    /// `p`" and "free for `p + 1`" would be the same stamp.
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
        check_capacity(capacity, Kind::SpscStamped)?;
        check_region(ptr, len, Self::required_size(capacity))?;
        crate::header::check_elem_align::<T>(ptr)?;
        let hdr = Header {
            meta: CachePadded::new(Meta::new::<T>(Kind::SpscStamped, capacity)),
            tail: CachePadded::new(AtomicU64::new(start)),
            head: CachePadded::new(AtomicU64::new(start)),
        };
        // SAFETY: in bounds and aligned (checked); exclusive during init (caller).
        unsafe { ptr.cast::<Header>().write(hdr) };
        let slots = ptr.wrapping_add(slots_offset::<T>()).cast::<Slot<T>>();
        // SAFETY: the slot array lies inside the region (required_size checked), aligned;
        // exclusive during init (caller).
        unsafe { init_slots(slots, capacity, start) };
        Ok(())
    }

    /// Attaches for `role`; returns the geometry and the published positions `(tail, head)`,
    /// each read once and checked. The caller starts from these and does not read them again
    /// (a value re-read after its check is an unchecked value).
    ///
    /// # Safety
    /// As for [`producer`](Self::producer).
    unsafe fn attach(
        ptr: *mut u8,
        len: usize,
        role: Role,
        owner: u64,
        is_alive: &dyn Fn(u64) -> bool,
    ) -> Result<(Raw<T>, u64, u64), AttachError> {
        crate::header::check_elem_align::<T>(ptr)?;
        // SAFETY: forwarded contract; Header is repr(C) with the meta first.
        let (hdr, cap) = unsafe {
            open_ring::<Header, T>(
                ptr,
                len,
                Kind::SpscStamped,
                slots_offset::<T>(),
                Self::required_size,
            )?
        };
        // SAFETY: a checked header in bounds; atomics only.
        let h = unsafe { hdr.as_ref() };
        // The claim first, so the positions read below include what a previous holder of the
        // role published when it let go (read before, they could be a lap old, and the stamps
        // then said "corrupt": review rev2).
        h.meta.claim(role, owner, is_alive)?;
        // ORDERING: Acquire for both; a sanity check of the published positions, which are
        // only starting points (the stamps order the data). After the claim's AcqRel CAS,
        // which pairs with the previous holder's Release `release`.
        let tail = h.tail.load(Ordering::Acquire);
        // ORDERING: as above.
        let head = h.head.load(Ordering::Acquire);
        // Published lazily, either may lag its side's true position by up to PUBLISH_EVERY
        // (a dropped handle publishes exactly, so the head may even be ahead of the tail).
        let slack = cap + PUBLISH_EVERY;
        if tail.wrapping_sub(head) > slack && head.wrapping_sub(tail) > slack {
            h.meta.release(role, owner);
            return Err(AttachError::Corrupt(
                "tail and head more than a capacity apart",
            ));
        }
        let raw = Raw {
            hdr,
            // SAFETY: the slots lie inside the region (checked against required_size).
            slots: unsafe { NonNull::new_unchecked(ptr.add(slots_offset::<T>()).cast()) },
            cap,
            mask: cap - 1,
            owner,
            keep: None,
        };
        Ok((raw, tail, head))
    }

    /// Attaches the producer. `owner` is a non-zero token naming this endpoint; a claim held
    /// by an owner for which `is_alive` says false is taken over.
    ///
    /// # Safety
    /// `ptr` must be valid for reads and writes of `len` bytes for as long as the returned
    /// handle lives, and accessed by others only through ring handles (in this or another
    /// process).
    pub unsafe fn producer(
        ptr: *mut u8,
        len: usize,
        owner: u64,
        is_alive: &dyn Fn(u64) -> bool,
    ) -> Result<StampedProducer<T>, AttachError> {
        // SAFETY: forwarded contract. `tail` is the position attach checked: a starting point,
        // corrected by the stamps below.
        let (raw, mut tail, _) =
            unsafe { Self::attach(ptr, len, Role::Producer, owner, is_alive)? };
        // The published position may lag by up to PUBLISH_EVERY - 1 (or more, if the previous
        // producer died): skip the slots it wrote, which are full for their position or
        // already consumed, until a slot free for its position (or full from the previous
        // lap: the ring is full).
        for _ in 0..raw.cap {
            let cap = raw.cap;
            // ORDERING: Acquire; pairs with the stamp stores of both sides.
            let seq = raw.slot(tail).seq.load(STAMPED_SEQ_LOAD);
            if seq == tail.wrapping_add(1) || seq == tail.wrapping_add(cap) {
                tail = tail.wrapping_add(1);
            } else {
                break;
            }
        }
        Ok(StampedProducer {
            raw,
            tail,
            _not_sync: PhantomData,
        })
    }

    /// Attaches the consumer; see [`producer`](Self::producer).
    ///
    /// # Safety
    /// As for [`producer`](Self::producer).
    pub unsafe fn consumer(
        ptr: *mut u8,
        len: usize,
        owner: u64,
        is_alive: &dyn Fn(u64) -> bool,
    ) -> Result<StampedConsumer<T>, AttachError> {
        // SAFETY: forwarded contract. `head` is the position attach checked: a starting point,
        // corrected by the stamps below.
        let (raw, _, mut head) =
            unsafe { Self::attach(ptr, len, Role::Consumer, owner, is_alive)? };
        // Skip the slots a previous consumer already freed (stamp = position + capacity).
        for _ in 0..raw.cap {
            // ORDERING: Acquire; pairs with the consumer's stamp store.
            let seq = raw.slot(head).seq.load(STAMPED_SEQ_LOAD);
            if seq == head.wrapping_add(raw.cap) {
                head = head.wrapping_add(1);
            } else {
                break;
            }
        }
        Ok(StampedConsumer {
            raw,
            head,
            _not_sync: PhantomData,
        })
    }
}

/// The writing end of a stamped SPSC ring. `Send`, not `Sync`. Aligned to 128 bytes so that
/// it never shares a cache line with the consumer's handle (see [`crate::Producer`]).
#[repr(align(128))]
pub struct StampedProducer<T> {
    raw: Raw<T>,
    tail: u64,
    _not_sync: PhantomData<core::cell::Cell<()>>,
}

/// The reading end of a stamped SPSC ring. `Send`, not `Sync`. Aligned to 128 bytes.
#[repr(align(128))]
pub struct StampedConsumer<T> {
    raw: Raw<T>,
    head: u64,
    _not_sync: PhantomData<core::cell::Cell<()>>,
}

// SAFETY: the handle owns its role exclusively (claim word); the pointers refer to memory
// that outlives it (constructor contract) and is shared only through the stamp protocol.
unsafe impl<T: Send> Send for StampedProducer<T> {}
// SAFETY: as for StampedProducer.
unsafe impl<T: Send> Send for StampedConsumer<T> {}

impl<T> Drop for StampedProducer<T> {
    fn drop(&mut self) {
        self.publish(true);
        self.raw.hdr().meta.release(Role::Producer, self.raw.owner);
    }
}

impl<T> Drop for StampedConsumer<T> {
    fn drop(&mut self) {
        self.publish(true);
        self.raw.hdr().meta.release(Role::Consumer, self.raw.owner);
    }
}

impl<T> core::fmt::Debug for StampedProducer<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("StampedProducer")
            .field("tail", &self.tail)
            .field("capacity", &self.raw.cap)
            .finish_non_exhaustive()
    }
}

impl<T> core::fmt::Debug for StampedConsumer<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("StampedConsumer")
            .field("head", &self.head)
            .field("capacity", &self.raw.cap)
            .finish_non_exhaustive()
    }
}

/// What a slot's stamp says to the side at `pos`.
#[derive(PartialEq, Eq)]
enum State {
    /// Ready for this side (free for the producer, full for the consumer).
    Ready,
    /// Not yet (full for the producer, empty for the consumer).
    Wait,
    /// Neither: a corrupt or hostile ring.
    Corrupt,
}

impl<T> StampedProducer<T> {
    /// Publishes the position in the header every `PUBLISH_EVERY` pushes (and on drop).
    #[inline]
    fn publish(&self, now: bool) {
        if now || self.tail & (PUBLISH_EVERY - 1) == 0 {
            // ORDERING: Relaxed; the position is an estimate for `len` and a starting point
            // for a later producer's scan in `attach`, never a synchronisation point (the
            // stamps are).
            self.raw.hdr().tail.store(self.tail, Ordering::Relaxed);
        }
    }
}

impl<T: Pod> StampedProducer<T> {
    /// Keeps `owner` (the segment or heap region holding the ring) alive as long as this
    /// handle.
    #[must_use]
    pub fn keep_alive(mut self, owner: KeepAlive) -> Self {
        self.raw.keep = Some(owner);
        self
    }

    #[inline]
    fn state(&self, pos: u64) -> State {
        // ORDERING: STAMPED_SEQ_LOAD (Acquire); pairs with the consumer's STAMPED_SEQ_STORE
        // that freed the slot, so its read of the old value happens-before our write.
        let seq = self.raw.slot(pos).seq.load(STAMPED_SEQ_LOAD);
        if seq == pos {
            State::Ready
        } else if seq == pos.wrapping_sub(self.raw.cap).wrapping_add(1) {
            // Still holds the value of the previous lap.
            State::Wait
        } else {
            State::Corrupt
        }
    }

    /// Pushes one value, or gives it back if the ring is full. Never blocks.
    ///
    /// ```
    /// use shmlane_ring::{HeapRegion, PushError};
    /// let (mut p, mut c) = HeapRegion::stamped::<u64>(2);
    /// p.push(1).unwrap();
    /// p.push(2).unwrap();
    /// assert!(matches!(p.push(3), Err(PushError::Full(3))));
    /// assert_eq!(c.pop(), Ok(1));
    /// p.push(3).unwrap();
    /// ```
    #[inline]
    pub fn push(&mut self, value: T) -> Result<(), PushError<T>> {
        match self.state(self.tail) {
            State::Ready => {}
            State::Wait => return Err(PushError::Full(value)),
            State::Corrupt => return Err(PushError::Corrupt(value)),
        }
        let slot = self.raw.slot(self.tail);
        // SAFETY: the slot is free for our position (Acquire above) and only the producer
        // writes free slots; the consumer reads it only after the stamp store below.
        slot.value.with_mut(|p| unsafe { p.write(value) });
        // ORDERING: STAMPED_SEQ_STORE (Release); pairs with the consumer's STAMPED_SEQ_LOAD:
        // the value write happens-before its read.
        slot.seq.store(self.tail.wrapping_add(1), STAMPED_SEQ_STORE);
        self.tail = self.tail.wrapping_add(1);
        self.publish(false);
        Ok(())
    }

    /// Pushes a copy of `*value` (one copy, straight into the slot: for large `T`, where
    /// moving the value into [`push`](Self::push) would copy it twice).
    #[inline]
    pub fn push_ref(&mut self, value: &T) -> Result<(), PushError<()>> {
        match self.state(self.tail) {
            State::Ready => {}
            State::Wait => return Err(PushError::Full(())),
            State::Corrupt => return Err(PushError::Corrupt(())),
        }
        let slot = self.raw.slot(self.tail);
        // SAFETY: as in `push`; `value` is a valid T we only read.
        slot.value
            .with_mut(|p| unsafe { core::ptr::copy_nonoverlapping(value, p, 1) });
        // ORDERING: STAMPED_SEQ_STORE (Release); as in `push`.
        slot.seq.store(self.tail.wrapping_add(1), STAMPED_SEQ_STORE);
        self.tail = self.tail.wrapping_add(1);
        self.publish(false);
        Ok(())
    }

    /// Pushes as many values from `src` as fit; returns how many.
    pub fn push_slice(&mut self, src: &[T]) -> Result<usize, PushError<()>> {
        for (i, v) in src.iter().enumerate() {
            match self.push(*v) {
                Ok(()) => {}
                Err(PushError::Full(_)) => return Ok(i),
                Err(PushError::Corrupt(_)) => return Err(PushError::Corrupt(())),
            }
        }
        Ok(src.len())
    }

    /// Whether the next push would find the ring full (reads one stamp).
    pub fn is_full(&self) -> bool {
        self.state(self.tail) != State::Ready
    }

    /// The capacity.
    pub fn capacity(&self) -> usize {
        self.raw.cap as usize
    }

    /// This side's position (elements pushed since the ring's first position).
    pub fn position(&self) -> u64 {
        self.tail
    }

    /// Elements in the ring, approximately: both positions as last published (every 64
    /// operations), so within 64 of the truth.
    pub fn len(&self) -> usize {
        // ORDERING: Relaxed; an estimate.
        let head = self.raw.hdr().head.load(Ordering::Relaxed);
        self.tail.wrapping_sub(head).min(self.raw.cap) as usize
    }

    /// Whether the ring looks empty (see [`len`](Self::len)).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a live consumer holds the consumer role (its claim word is set).
    pub fn has_consumer(&self) -> bool {
        self.raw.hdr().meta.holder(Role::Consumer) != 0
    }
}

impl<T> StampedConsumer<T> {
    /// Publishes the position every `PUBLISH_EVERY` pops (and on drop).
    #[inline]
    fn publish(&self, now: bool) {
        if now || self.head & (PUBLISH_EVERY - 1) == 0 {
            // ORDERING: Relaxed; as in the producer's `publish`.
            self.raw.hdr().head.store(self.head, Ordering::Relaxed);
        }
    }
}

impl<T: Pod> StampedConsumer<T> {
    /// Keeps `owner` alive as long as this handle.
    #[must_use]
    pub fn keep_alive(mut self, owner: KeepAlive) -> Self {
        self.raw.keep = Some(owner);
        self
    }

    #[inline]
    fn state(&self) -> State {
        // ORDERING: STAMPED_SEQ_LOAD (Acquire); pairs with the producer's STAMPED_SEQ_STORE,
        // so its value write is visible.
        let seq = self.raw.slot(self.head).seq.load(STAMPED_SEQ_LOAD);
        if seq == self.head.wrapping_add(1) {
            State::Ready
        } else if seq == self.head {
            State::Wait
        } else {
            State::Corrupt
        }
    }

    #[inline]
    fn read(&self) -> T {
        // SAFETY: the slot holds the published value of our position (Acquire in `state`);
        // the producer does not write it again before we free it.
        self.raw.slot(self.head).value.with(|p| unsafe { p.read() })
    }

    /// Pops one value. Never blocks.
    #[inline]
    pub fn pop(&mut self) -> Result<T, PopError> {
        match self.state() {
            State::Ready => {}
            State::Wait => return Err(PopError::Empty),
            State::Corrupt => return Err(PopError::Corrupt),
        }
        let v = self.read();
        let slot = self.raw.slot(self.head);
        // ORDERING: STAMPED_SEQ_STORE (Release); pairs with the producer's STAMPED_SEQ_LOAD a
        // lap later: our read of the value happens-before its next write.
        slot.seq
            .store(self.head.wrapping_add(self.raw.cap), STAMPED_SEQ_STORE);
        self.head = self.head.wrapping_add(1);
        self.publish(false);
        Ok(v)
    }

    /// Pops one value into `*dst` (one copy, straight from the slot: for large `T`).
    #[inline]
    pub fn pop_into(&mut self, dst: &mut T) -> Result<(), PopError> {
        match self.state() {
            State::Ready => {}
            State::Wait => return Err(PopError::Empty),
            State::Corrupt => return Err(PopError::Corrupt),
        }
        let slot = self.raw.slot(self.head);
        // SAFETY: as in `read`; `dst` is a valid, exclusive T.
        slot.value
            .with(|p| unsafe { core::ptr::copy_nonoverlapping(p, dst, 1) });
        // ORDERING: STAMPED_SEQ_STORE (Release); as in `pop`.
        slot.seq
            .store(self.head.wrapping_add(self.raw.cap), STAMPED_SEQ_STORE);
        self.head = self.head.wrapping_add(1);
        self.publish(false);
        Ok(())
    }

    /// The next value, without removing it.
    pub fn peek(&self) -> Result<T, PopError> {
        match self.state() {
            State::Ready => Ok(self.read()),
            State::Wait => Err(PopError::Empty),
            State::Corrupt => Err(PopError::Corrupt),
        }
    }

    /// Pops up to `dst.len()` values into `dst`; returns how many.
    pub fn pop_slice(&mut self, dst: &mut [T]) -> Result<usize, PopError> {
        for (i, d) in dst.iter_mut().enumerate() {
            match self.pop() {
                Ok(v) => *d = v,
                Err(PopError::Empty) => return Ok(i),
                Err(e) => return Err(e),
            }
        }
        Ok(dst.len())
    }

    /// Whether there is nothing to pop now (reads one stamp: exact, unlike `len`).
    pub fn is_empty(&self) -> bool {
        self.state() != State::Ready
    }

    /// Elements in the ring, approximately: the producer's position as last published (every
    /// 64 pushes), so within 64 of the truth; [`is_empty`](Self::is_empty) is exact.
    pub fn len(&self) -> usize {
        // ORDERING: Relaxed; an estimate.
        let tail = self.raw.hdr().tail.load(Ordering::Relaxed);
        let len = tail.wrapping_sub(self.head);
        // The published tail may lag behind our own position: then at least 0.
        if len > self.raw.cap { 0 } else { len as usize }
    }

    /// The capacity.
    pub fn capacity(&self) -> usize {
        self.raw.cap as usize
    }

    /// This side's position (elements popped since the ring's first position).
    pub fn position(&self) -> u64 {
        self.head
    }

    /// Whether a live producer holds the producer role.
    pub fn has_producer(&self) -> bool {
        self.raw.hdr().meta.holder(Role::Producer) != 0
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::HeapRegion;

    #[test]
    fn fifo_full_empty_and_wrap_near_u64_max() {
        for start in [0, u64::MAX - 2, u64::MAX] {
            let (mut p, mut c) = HeapRegion::stamped_at::<u64>(4, start);
            for round in 0..10u64 {
                for k in 0..4 {
                    p.push(round * 10 + k).unwrap();
                }
                assert!(p.is_full());
                assert!(matches!(p.push(99), Err(PushError::Full(99))));
                assert!(!c.is_empty());
                assert_eq!(c.peek(), Ok(round * 10));
                for k in 0..4 {
                    assert_eq!(c.pop(), Ok(round * 10 + k));
                }
                assert_eq!(c.pop(), Err(PopError::Empty));
                assert!(c.is_empty());
            }
            assert_eq!(p.position(), start.wrapping_add(40));
        }
    }

    #[test]
    fn reattached_endpoints_resume_where_the_old_ones_stopped() {
        // Positions are published every 64 operations; a new endpoint finds the true one by
        // the stamps, also when the old one died without publishing (leaked here).
        for start in [0, u64::MAX - 100] {
            let region = HeapRegion::new(StampedRing::<u64>::required_size(128));
            let (ptr, len) = (region.as_ptr(), region.len());
            let alive = |_| true;
            // SAFETY: the region outlives every handle (the leaked ones never touch it again).
            unsafe {
                StampedRing::<u64>::init(ptr, len, 128, start).unwrap();
                let mut p = StampedRing::<u64>::producer(ptr, len, 1, &alive).unwrap();
                let mut c = StampedRing::<u64>::consumer(ptr, len, 2, &alive).unwrap();
                for i in 0..100 {
                    p.push(i).unwrap();
                }
                for i in 0..37 {
                    assert_eq!(c.pop(), Ok(i));
                }
                // Both "die": no drop, so nothing is published or released.
                core::mem::forget(p);
                core::mem::forget(c);
                let dead = |o| o != 1 && o != 2;
                let mut p = StampedRing::<u64>::producer(ptr, len, 3, &dead).unwrap();
                let mut c = StampedRing::<u64>::consumer(ptr, len, 4, &dead).unwrap();
                assert_eq!(p.position(), start.wrapping_add(100));
                assert_eq!(c.position(), start.wrapping_add(37));
                p.push(100).unwrap();
                for i in 37..=100 {
                    assert_eq!(c.pop(), Ok(i));
                }
                assert_eq!(c.pop(), Err(PopError::Empty));
                // A full ring: the new producer stops at the slot still full from the last lap.
                for i in 0..128 {
                    p.push(i).unwrap();
                }
                core::mem::forget(p);
                let p = StampedRing::<u64>::producer(ptr, len, 5, &|o| o != 3).unwrap();
                assert_eq!(p.position(), start.wrapping_add(101 + 128));
                assert!(p.is_full());
                // Dropped handles publish exactly.
                drop(c);
                drop(p);
                let c = StampedRing::<u64>::consumer(ptr, len, 6, &alive).unwrap();
                assert_eq!(c.len(), 128);
            }
        }
    }

    #[test]
    fn slices() {
        let (mut p, mut c) = HeapRegion::stamped::<u32>(8);
        assert_eq!(p.push_slice(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]), Ok(8));
        let mut out = [0u32; 5];
        assert_eq!(c.pop_slice(&mut out), Ok(5));
        assert_eq!(out, [1, 2, 3, 4, 5]);
        assert_eq!(c.pop_slice(&mut out), Ok(3));
        assert_eq!(out[..3], [6, 7, 8]);
    }

    #[test]
    fn by_reference() {
        let (mut p, mut c) = HeapRegion::stamped::<[u64; 512]>(2);
        let big = [7u64; 512];
        p.push_ref(&big).unwrap();
        p.push_ref(&[8u64; 512]).unwrap();
        assert_eq!(p.push_ref(&big), Err(PushError::Full(())));
        let mut out = [0u64; 512];
        c.pop_into(&mut out).unwrap();
        assert_eq!(out, big);
        c.pop_into(&mut out).unwrap();
        assert_eq!(out, [8u64; 512]);
        assert_eq!(c.pop_into(&mut out), Err(PopError::Empty));
    }

    #[test]
    fn capacity_one_is_refused() {
        let region = HeapRegion::new(StampedRing::<u64>::required_size(1));
        // SAFETY: the region outlives the call.
        let r = unsafe { StampedRing::<u64>::init(region.as_ptr(), region.len(), 1, 0) };
        assert_eq!(r, Err(AttachError::BadCapacity(1)));
    }

    /// Review rev2: a consumer attaching while the previous one pops and lets go (and the
    /// producer refills the freed slots) must start where that one left, not from a head read
    /// before its claim: from there the stamps say "a later lap" and the healthy ring was
    /// reported `Corrupt`. The claim's `is_alive` call is the window (as in the SPSC test).
    #[test]
    fn rev2_a_consumer_attaching_as_the_previous_one_leaves_starts_where_it_left() {
        let region = HeapRegion::new(StampedRing::<u64>::required_size(4));
        let (ptr, len) = (region.as_ptr(), region.len());
        // SAFETY: the region outlives every handle in this test.
        unsafe {
            StampedRing::<u64>::init(ptr, len, 4, 0).unwrap();
            let p = core::cell::RefCell::new(
                StampedRing::<u64>::producer(ptr, len, 1, &|_| true).unwrap(),
            );
            for v in [10, 11, 12, 13] {
                p.borrow_mut().push(v).unwrap();
            }
            let first = core::cell::RefCell::new(Some(
                StampedRing::<u64>::consumer(ptr, len, 2, &|_| true).unwrap(),
            ));
            let mut second = StampedRing::<u64>::consumer(ptr, len, 3, &|_| {
                if let Some(mut c) = first.borrow_mut().take() {
                    assert_eq!(c.pop(), Ok(10));
                    assert_eq!(c.pop(), Ok(11));
                    p.borrow_mut().push(14).unwrap();
                    p.borrow_mut().push(15).unwrap();
                }
                false
            })
            .unwrap();
            for v in [12, 13, 14, 15] {
                assert_eq!(second.pop(), Ok(v));
            }
            assert_eq!(second.pop(), Err(PopError::Empty));
        }
    }

    /// An attach refused for positions too far apart leaves the role free (review rev2).
    #[test]
    fn a_refused_attach_leaves_the_role_free() {
        let region = HeapRegion::new(StampedRing::<u64>::required_size(4));
        let (ptr, len) = (region.as_ptr(), region.len());
        // SAFETY: the region outlives the handles; the positions are atomics.
        unsafe {
            StampedRing::<u64>::init(ptr, len, 4, 0).unwrap();
            let h = &*ptr.cast::<Header>();
            h.tail.store(1 << 20, Ordering::Relaxed);
            for owner in [1, 2] {
                assert!(matches!(
                    StampedRing::<u64>::consumer(ptr, len, owner, &|_| true),
                    Err(AttachError::Corrupt(_))
                ));
                assert!(matches!(
                    StampedRing::<u64>::producer(ptr, len, owner, &|_| true),
                    Err(AttachError::Corrupt(_))
                ));
            }
            h.tail.store(0, Ordering::Relaxed);
            assert!(StampedRing::<u64>::consumer(ptr, len, 3, &|_| true).is_ok());
            assert!(StampedRing::<u64>::producer(ptr, len, 3, &|_| true).is_ok());
        }
    }

    #[test]
    fn one_producer_and_one_consumer_at_a_time() {
        let region = HeapRegion::new(StampedRing::<u64>::required_size(4));
        let (ptr, len) = (region.as_ptr(), region.len());
        let alive = |_| true;
        // SAFETY: the region outlives the handles.
        unsafe {
            StampedRing::<u64>::init(ptr, len, 4, 0).unwrap();
            let p = StampedRing::<u64>::producer(ptr, len, 1, &alive).unwrap();
            assert_eq!(
                StampedRing::<u64>::producer(ptr, len, 2, &alive).err(),
                Some(AttachError::RoleTaken { holder: 1 })
            );
            // A dead holder's claim is taken over.
            assert!(StampedRing::<u64>::producer(ptr, len, 3, &|o| o != 1).is_ok());
            drop(p);
            // The wrong kind of ring is refused.
            assert_eq!(
                crate::SpscRing::<u64>::producer(ptr, len, 4, &alive).err(),
                Some(AttachError::WrongKind)
            );
        }
    }

    #[test]
    fn hostile_stamps_are_corrupt() {
        let region = HeapRegion::new(StampedRing::<u64>::required_size(4));
        // SAFETY: the region outlives the handles; the stamp is changed through its atomic.
        unsafe {
            StampedRing::<u64>::init(region.as_ptr(), region.len(), 4, 0).unwrap();
            let mut p =
                StampedRing::<u64>::producer(region.as_ptr(), region.len(), 1, &|_| true).unwrap();
            let mut c =
                StampedRing::<u64>::consumer(region.as_ptr(), region.len(), 2, &|_| true).unwrap();
            let slot0 = &*region
                .as_ptr()
                .add(slots_offset::<u64>())
                .cast::<Slot<u64>>();
            slot0.seq.store(1 << 40, Ordering::Release);
            assert!(matches!(p.push(1), Err(PushError::Corrupt(1))));
            assert_eq!(c.pop(), Err(PopError::Corrupt));
            assert_eq!(c.peek(), Err(PopError::Corrupt));
        }
    }

    #[test]
    fn two_threads_in_order() {
        let n: u64 = if cfg!(miri) { 200 } else { 1_000_000 };
        let (mut p, mut c) = HeapRegion::stamped_at::<u64>(16, u64::MAX - 7);
        let t = std::thread::spawn(move || {
            for i in 0..n {
                while p.push(i).is_err() {
                    std::thread::yield_now();
                }
            }
        });
        for i in 0..n {
            loop {
                match c.pop() {
                    Ok(v) => {
                        assert_eq!(v, i);
                        break;
                    }
                    Err(PopError::Empty) => std::thread::yield_now(),
                    Err(e) => panic!("{e:?}"),
                }
            }
        }
        t.join().unwrap();
    }
}
