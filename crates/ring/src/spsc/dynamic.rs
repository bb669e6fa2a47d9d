//! SPSC rings whose element layout is chosen at run time ([`ElemLayout`]): the same header and
//! slots as [`SpscRing<T>`](super::SpscRing) for a `T` of that size and alignment (slot `i` at
//! `slots + i * size`; the element word in the header is the same, so either kind of handle
//! opens a ring the other made). The protocol steps (cached positions, `free_for`,
//! `publish`, `avail_for`, `release`, the role claims and the attach checks) are the typed
//! handles' own: a [`DynProducer`] is a [`Producer`] over an opaque slot type plus the element
//! size; only the addressing and the copies are here.

use super::{Consumer, Producer, Raw, attach_with, slots_offset};
use crate::{
    KeepAlive,
    error::{AttachError, ChunkError, PopError, PushError},
    header::{Kind, Meta, Role, check_capacity, check_region},
    layout::ElemLayout,
};

/// The slot type of the run-time handles: never read or written as a value (they address
/// bytes), only its alignment matters, and it has none of its own.
#[derive(Clone, Copy)]
pub(crate) struct Opaque;

/// Namespace for laying out, initialising and attaching to SPSC rings of a run-time element
/// layout.
#[derive(Debug)]
pub struct DynSpscRing;

fn offset(layout: ElemLayout) -> usize {
    // As `slots_offset::<T>()` for a T of this alignment (at most 128, so always 128-aligned).
    debug_assert!(layout.align() <= 128);
    slots_offset::<Opaque>()
}

impl DynSpscRing {
    /// Bytes a region needs for `capacity` elements of `layout` (`usize::MAX` if that does not
    /// fit).
    pub fn required_size(layout: ElemLayout, capacity: u64) -> usize {
        crate::header::required_size(offset(layout), layout.size(), capacity)
    }

    /// Initialises an empty ring of `layout` elements whose first position is `start`.
    ///
    /// # Safety
    /// As for [`SpscRing::init`](super::SpscRing::init).
    pub unsafe fn init(
        ptr: *mut u8,
        len: usize,
        layout: ElemLayout,
        capacity: u64,
        start: u64,
    ) -> Result<(), AttachError> {
        check_capacity(capacity, Kind::Spsc)?;
        let need = Self::required_size(layout, capacity);
        check_region(ptr, len, need)?;
        let hdr = super::Header {
            meta: crossbeam_utils::CachePadded::new(Meta::with_elem(
                Kind::Spsc,
                layout.word(),
                capacity,
            )),
            tail: crossbeam_utils::CachePadded::new(crate::sync::AtomicU64::new(start)),
            head: crossbeam_utils::CachePadded::new(crate::sync::AtomicU64::new(start)),
        };
        // SAFETY: in bounds and aligned (checked above); exclusive during init (caller).
        unsafe { ptr.cast::<super::Header>().write(hdr) };
        let off = offset(layout);
        // SAFETY: the slots [off, need) lie inside the region (checked); exclusive (caller).
        unsafe { ptr.add(off).write_bytes(0, need - off) };
        Ok(())
    }

    /// # Safety
    /// As for [`producer`](Self::producer).
    unsafe fn attach(
        ptr: *mut u8,
        len: usize,
        layout: ElemLayout,
        role: Role,
        owner: u64,
        is_alive: &dyn Fn(u64) -> bool,
    ) -> Result<(Raw<Opaque>, u64, u64), AttachError> {
        // SAFETY: forwarded contract. The geometry comes from the checked layout and the
        // capacity the shared attach checked.
        unsafe {
            attach_with(
                ptr,
                len,
                role,
                owner,
                is_alive,
                layout.word(),
                offset(layout),
                &|cap| Self::required_size(layout, cap),
            )
        }
    }

    /// Attaches the producer (as [`SpscRing::producer`](super::SpscRing::producer)).
    ///
    /// # Safety
    /// As for [`SpscRing::producer`](super::SpscRing::producer).
    pub unsafe fn producer(
        ptr: *mut u8,
        len: usize,
        layout: ElemLayout,
        owner: u64,
        is_alive: &dyn Fn(u64) -> bool,
    ) -> Result<DynProducer, AttachError> {
        // SAFETY: forwarded contract.
        let (raw, tail, head) =
            unsafe { Self::attach(ptr, len, layout, Role::Producer, owner, is_alive)? };
        Ok(DynProducer {
            p: Producer {
                raw,
                tail,
                cached_head: head,
                _not_sync: core::marker::PhantomData,
            },
            size: layout.size(),
            layout,
        })
    }

    /// Attaches the consumer (as [`SpscRing::consumer`](super::SpscRing::consumer)).
    ///
    /// # Safety
    /// As for [`SpscRing::producer`](super::SpscRing::producer).
    pub unsafe fn consumer(
        ptr: *mut u8,
        len: usize,
        layout: ElemLayout,
        owner: u64,
        is_alive: &dyn Fn(u64) -> bool,
    ) -> Result<DynConsumer, AttachError> {
        // SAFETY: forwarded contract.
        let (raw, tail, head) =
            unsafe { Self::attach(ptr, len, layout, Role::Consumer, owner, is_alive)? };
        Ok(DynConsumer {
            c: Consumer {
                raw,
                head,
                cached_tail: tail,
                _not_sync: core::marker::PhantomData,
            },
            size: layout.size(),
            layout,
        })
    }
}

impl Raw<Opaque> {
    /// Byte address of slot `pos & mask` (a private position, masked: inside the array).
    fn byte_slot(&self, pos: u64, size: usize) -> *mut u8 {
        // `(pos & mask) * size < cap * size`, inside the slot array (required size checked).
        self.slots
            .as_ptr()
            .cast::<u8>()
            .wrapping_add((pos & self.mask) as usize * size)
    }
}

/// The writing end of a run-time-layout SPSC ring. `Send`, not `Sync`.
#[derive(Debug)]
pub struct DynProducer {
    p: Producer<Opaque>,
    size: usize,
    layout: ElemLayout,
}

/// The reading end of a run-time-layout SPSC ring. `Send`, not `Sync`.
#[derive(Debug)]
pub struct DynConsumer {
    c: Consumer<Opaque>,
    size: usize,
    layout: ElemLayout,
}

fn check_whole(len: usize, size: usize) {
    assert!(
        len % size == 0,
        "{len} bytes are not a whole number of {size}-byte elements"
    );
}

impl DynProducer {
    /// Keeps `owner` alive as long as this handle.
    #[must_use]
    pub fn keep_alive(mut self, owner: KeepAlive) -> Self {
        self.p.raw.keep = Some(owner);
        self
    }

    /// The element layout.
    pub fn layout(&self) -> ElemLayout {
        self.layout
    }

    /// Pushes a copy of `elem` (exactly one element's bytes), or refuses if the ring is full.
    ///
    /// # Panics
    /// If `elem.len()` is not the element size (the channel layer checks it first).
    pub fn push(&mut self, elem: &[u8]) -> Result<(), PushError<()>> {
        assert_eq!(
            elem.len(),
            self.size,
            "element length differs from the ring's"
        );
        match self.p.free_for(1) {
            Ok(0) => return Err(PushError::Full(())),
            Ok(_) => {}
            Err(()) => return Err(PushError::Corrupt(())),
        }
        let dst = self.p.raw.byte_slot(self.p.tail, self.size);
        // SAFETY: the slot at `tail` is free (the consumer released it, Acquire in free_for)
        // and only the producer writes free slots; `elem` is our own memory. Raw copy, no
        // reference into the slot.
        unsafe { core::ptr::copy_nonoverlapping(elem.as_ptr(), dst, self.size) };
        self.p.publish(1);
        Ok(())
    }

    /// Pushes as many whole elements from `elems` as fit; returns how many.
    ///
    /// # Panics
    /// If `elems.len()` is not a multiple of the element size.
    pub fn push_slice(&mut self, elems: &[u8]) -> Result<usize, ChunkError> {
        check_whole(elems.len(), self.size);
        let want = elems.len() / self.size;
        let free = self
            .p
            .free_for(want as u64)
            .map_err(|()| ChunkError::Corrupt)?;
        let n = want.min(free as usize);
        let mut w = DynWriteChunk { p: self, n };
        w.copy_from_slice(&elems[..n * w.p.size]);
        w.commit_all();
        Ok(n)
    }

    /// Reserves `n` slots to write in place (zero copy), as
    /// [`Producer::write_chunk`](super::Producer::write_chunk).
    pub fn write_chunk(&mut self, n: usize) -> Result<DynWriteChunk<'_>, ChunkError> {
        let free = self
            .p
            .free_for(n as u64)
            .map_err(|()| ChunkError::Corrupt)?;
        if (free as usize) < n {
            return Err(ChunkError::TooFewSlots(free as usize));
        }
        Ok(DynWriteChunk { p: self, n })
    }

    /// Free slots now.
    pub fn free(&mut self) -> usize {
        self.p.free()
    }

    /// Elements in the ring now, as seen by the producer.
    pub fn len(&mut self) -> usize {
        self.p.len()
    }

    /// Whether the ring is empty, as seen by the producer.
    pub fn is_empty(&mut self) -> bool {
        self.p.is_empty()
    }

    /// The capacity.
    pub fn capacity(&self) -> usize {
        self.p.capacity()
    }

    /// The next position this producer writes.
    pub fn position(&self) -> u64 {
        self.p.position()
    }

    /// Whether a consumer is attached.
    pub fn has_consumer(&self) -> bool {
        self.p.has_consumer()
    }
}

/// Slots reserved by [`DynProducer::write_chunk`].
#[derive(Debug)]
pub struct DynWriteChunk<'a> {
    p: &'a mut DynProducer,
    n: usize,
}

impl DynWriteChunk<'_> {
    /// Number of reserved slots.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Whether no slot was reserved.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Copies `src` (exactly `len()` elements) into the reserved slots, in at most two runs.
    ///
    /// # Panics
    /// If `src.len()` is not `len()` elements.
    pub fn copy_from_slice(&mut self, src: &[u8]) {
        assert_eq!(
            src.len(),
            self.n * self.p.size,
            "source length differs from the chunk's"
        );
        let [(a, first), (b, second)] = self.as_mut_ptrs();
        let size = self.p.size;
        // SAFETY: the runs are reserved slots inside the array (`runs`), `src` is our own
        // memory; raw copies, no reference into the slots.
        unsafe {
            core::ptr::copy_nonoverlapping(src.as_ptr(), a, first * size);
            core::ptr::copy_nonoverlapping(src.as_ptr().add(first * size), b, second * size);
        }
    }

    /// The reserved slots as raw pointers, each with its number of *elements* (the second run
    /// is non-empty when the chunk wraps): to fill them in place (a C caller writes through
    /// them). Writing through them is the caller's `unsafe`: at most the given number of
    /// elements from each, before the commit, without making references into the slots when
    /// another process may write them.
    pub fn as_mut_ptrs(&mut self) -> [(*mut u8, usize); 2] {
        let (first, second) = self.p.p.raw.runs(self.p.p.tail, self.n);
        [
            (self.p.p.raw.byte_slot(self.p.p.tail, self.p.size), first),
            (self.p.p.raw.byte_slot(0, self.p.size), second),
        ]
    }

    /// Makes the first `k` reserved slots visible to the consumer.
    ///
    /// # Panics
    /// If `k > len()`.
    pub fn commit(self, k: usize) {
        assert!(k <= self.n, "cannot commit more than reserved");
        if k > 0 {
            self.p.p.publish(k as u64);
        }
    }

    /// Makes all reserved slots visible to the consumer.
    pub fn commit_all(self) {
        let n = self.n;
        self.commit(n);
    }
}

impl DynConsumer {
    /// Keeps `owner` alive as long as this handle.
    #[must_use]
    pub fn keep_alive(mut self, owner: KeepAlive) -> Self {
        self.c.raw.keep = Some(owner);
        self
    }

    /// The element layout.
    pub fn layout(&self) -> ElemLayout {
        self.layout
    }

    fn read_at(&self, pos: u64, dst: &mut [u8]) {
        let src = self.c.raw.byte_slot(pos, self.size);
        // SAFETY: the slot at `pos` was published (Acquire in avail_for) and the producer does
        // not overwrite it before we release it; `dst` is ours, `size` bytes (callers).
        unsafe { core::ptr::copy_nonoverlapping(src, dst.as_mut_ptr(), self.size) };
    }

    /// Pops one element into `dst` (exactly one element's bytes). `dst` is written only with
    /// `Ok`.
    ///
    /// # Panics
    /// If `dst.len()` is not the element size.
    pub fn pop(&mut self, dst: &mut [u8]) -> Result<(), PopError> {
        assert_eq!(
            dst.len(),
            self.size,
            "element length differs from the ring's"
        );
        match self.c.avail_for(1) {
            Ok(0) => Err(PopError::Empty),
            Ok(_) => {
                self.read_at(self.c.head, dst);
                self.c.release(1);
                Ok(())
            }
            Err(()) => Err(PopError::Corrupt),
        }
    }

    /// Copies the next element into `dst` without removing it.
    ///
    /// # Panics
    /// As [`pop`](Self::pop).
    pub fn peek(&mut self, dst: &mut [u8]) -> Result<(), PopError> {
        assert_eq!(
            dst.len(),
            self.size,
            "element length differs from the ring's"
        );
        match self.c.avail_for(1) {
            Ok(0) => Err(PopError::Empty),
            Ok(_) => {
                self.read_at(self.c.head, dst);
                Ok(())
            }
            Err(()) => Err(PopError::Corrupt),
        }
    }

    /// Pops up to `dst.len() / size` whole elements into `dst`; returns how many.
    ///
    /// # Panics
    /// If `dst.len()` is not a multiple of the element size.
    pub fn pop_slice(&mut self, dst: &mut [u8]) -> Result<usize, PopError> {
        check_whole(dst.len(), self.size);
        let want = dst.len() / self.size;
        let avail = self
            .c
            .avail_for(want as u64)
            .map_err(|()| PopError::Corrupt)?;
        let n = want.min(avail as usize);
        let r = DynReadChunk { c: self, n };
        let size = r.c.size;
        r.copy_to_slice(&mut dst[..n * size]);
        r.commit_all();
        Ok(n)
    }

    /// Takes `n` published slots to read in place (zero copy), as
    /// [`Consumer::read_chunk`](super::Consumer::read_chunk).
    pub fn read_chunk(&mut self, n: usize) -> Result<DynReadChunk<'_>, ChunkError> {
        let avail = self
            .c
            .avail_for(n as u64)
            .map_err(|()| ChunkError::Corrupt)?;
        if (avail as usize) < n {
            return Err(ChunkError::TooFewSlots(avail as usize));
        }
        Ok(DynReadChunk { c: self, n })
    }

    /// Elements available now.
    pub fn len(&mut self) -> usize {
        self.c.len()
    }

    /// Whether the ring is empty now.
    pub fn is_empty(&mut self) -> bool {
        self.c.is_empty()
    }

    /// The capacity.
    pub fn capacity(&self) -> usize {
        self.c.capacity()
    }

    /// The next position this consumer reads.
    pub fn position(&self) -> u64 {
        self.c.position()
    }

    /// Whether a producer is attached.
    pub fn has_producer(&self) -> bool {
        self.c.has_producer()
    }
}

/// Published slots taken by [`DynConsumer::read_chunk`].
#[derive(Debug)]
pub struct DynReadChunk<'a> {
    c: &'a mut DynConsumer,
    n: usize,
}

impl DynReadChunk<'_> {
    /// Number of slots.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Whether the chunk is empty.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Copies the chunk's elements to `dst` (exactly `len()` elements), in order.
    ///
    /// # Panics
    /// If `dst.len()` is not `len()` elements.
    pub fn copy_to_slice(&self, dst: &mut [u8]) {
        let size = self.c.size;
        assert_eq!(
            dst.len(),
            self.n * size,
            "destination length differs from the chunk's"
        );
        let [(a, first), (b, second)] = self.as_ptrs();
        // SAFETY: the runs are published slots inside the array (`runs`); `dst` is ours. Raw
        // copies, no reference into the slots.
        unsafe {
            core::ptr::copy_nonoverlapping(a, dst.as_mut_ptr(), first * size);
            core::ptr::copy_nonoverlapping(b, dst.as_mut_ptr().add(first * size), second * size);
        }
    }

    /// The chunk's slots as raw pointers, each with its number of elements (zero copy for a
    /// C caller). Reading through them is the caller's `unsafe`: at most the given number of
    /// elements from each, before the commit.
    pub fn as_ptrs(&self) -> [(*const u8, usize); 2] {
        let (first, second) = self.c.c.raw.runs(self.c.c.head, self.n);
        [
            (
                self.c
                    .c
                    .raw
                    .byte_slot(self.c.c.head, self.c.size)
                    .cast_const(),
                first,
            ),
            (self.c.c.raw.byte_slot(0, self.c.size).cast_const(), second),
        ]
    }

    /// Releases the first `k` slots to the producer.
    ///
    /// # Panics
    /// If `k > len()`.
    pub fn commit(self, k: usize) {
        assert!(k <= self.n, "cannot release more than taken");
        if k > 0 {
            self.c.c.release(k as u64);
        }
    }

    /// Releases all slots of the chunk.
    pub fn commit_all(self) {
        let n = self.n;
        self.commit(n);
    }
}
