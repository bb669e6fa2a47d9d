//! Single-producer single-consumer ring of `T: Pod` inside a raw region.
//!
//! Layout (`docs/design.md` has the byte offsets):
//!
//! ```text
//! CachePadded<Meta>          magic, kind, element size/align, capacity, role claims
//! CachePadded<AtomicU64>     tail: next position the producer writes (producer-owned line)
//! CachePadded<AtomicU64>     head: next position the consumer reads (consumer-owned line)
//! [T; capacity]              slots, contiguous (so chunks are plain slices)
//! ```
//!
//! Positions are 64-bit and only ever increase (wrapping at 2^64, which a ring never reaches
//! in practice; tests start near `u64::MAX` to prove the arithmetic anyway). Each side keeps
//! its own position in private memory and a cached copy of the other's, so the shared lines
//! are touched only when the cache says full or empty. A position read from shared memory is
//! read once, checked (`tail - head <= capacity`) and only the checked copy is used: attach
//! hands the positions it checked to the endpoint instead of reading them again (a peer could
//! change them in between). Each side keeps `own - cached <= capacity` as an invariant and
//! checks it again where it computes free space or available elements, so not even a broken
//! invariant can produce a chunk longer than the ring. Slots are always indexed by a private
//! position masked by the capacity, so a hostile peer can make us return an error or stale
//! data, never access out of bounds.
//!
//! Trust: the slots of a chunk are, by the protocol, the caller's alone until it commits, but
//! a hostile process with the segment mapped can write them anyway. The safe chunk API
//! therefore copies ([`ReadChunk::copy_to_slice`], [`WriteChunk::copy_from_slice`],
//! [`ReadChunk::get`], [`WriteChunk::write`]) through raw pointers and never makes a `&T` or
//! `&mut T` into a slot; the zero-copy slices ([`ReadChunk::as_slices`],
//! [`WriteChunk::as_mut_slices`]) are `unsafe`, for callers who vouch that no other process
//! writes the ring (`docs/reliability.md`, "Hostile or corrupt memory").

#[cfg(not(loom))]
mod dynamic;
#[cfg(not(loom))]
pub use dynamic::{DynConsumer, DynProducer, DynReadChunk, DynSpscRing, DynWriteChunk};

use core::marker::PhantomData;
use core::ptr::NonNull;

use bytemuck::Pod;
use crossbeam_utils::CachePadded;

use crate::{
    KeepAlive,
    error::{AttachError, ChunkError, PopError, PushError},
    header::{Kind, Meta, PaddedMeta, Role, align_up, check_capacity, check_region, open_ring_raw},
    sync::{
        AtomicU64, Ordering, SPSC_HEAD_LOAD, SPSC_HEAD_STORE, SPSC_TAIL_LOAD, SPSC_TAIL_STORE,
        UnsafeCell,
    },
};

#[repr(C)]
struct Header {
    meta: PaddedMeta,
    tail: CachePadded<AtomicU64>,
    head: CachePadded<AtomicU64>,
}

type Cell<T> = UnsafeCell<T>;

/// Namespace for laying out, initialising and attaching to SPSC rings.
#[derive(Debug)]
pub struct SpscRing<T>(PhantomData<T>);

fn slots_offset<T>() -> usize {
    align_up(size_of::<Header>(), align_of::<Cell<T>>().max(128))
}

struct Raw<T> {
    hdr: NonNull<Header>,
    slots: NonNull<Cell<T>>,
    cap: u64,
    mask: u64,
    owner: u64,
    /// Whatever owns the memory (a segment, a heap region), kept alive with the handle.
    keep: Option<KeepAlive>,
}

impl<T: Pod> SpscRing<T> {
    /// Bytes a region needs for `capacity` elements; `usize::MAX` (which no region holds) if
    /// that does not fit in a `usize`, so a hostile capacity fails the region check instead of
    /// wrapping around to a small size.
    pub fn required_size(capacity: u64) -> usize {
        crate::header::required_size(slots_offset::<T>(), size_of::<Cell<T>>(), capacity)
    }

    /// Initialises an empty ring whose first position is `start` (0 normally; tests use values
    /// near `u64::MAX`).
    ///
    /// # Safety
    /// `ptr` must be valid for reads and writes of `len` bytes, and nobody may use the region
    /// while it is initialised (the creator does this before publishing the segment).
    pub unsafe fn init(
        ptr: *mut u8,
        len: usize,
        capacity: u64,
        start: u64,
    ) -> Result<(), AttachError> {
        check_capacity(capacity, Kind::Spsc)?;
        check_region(ptr, len, Self::required_size(capacity))?;
        crate::header::check_elem_align::<T>(ptr)?;
        let hdr = Header {
            meta: CachePadded::new(Meta::new::<T>(Kind::Spsc, capacity)),
            tail: CachePadded::new(AtomicU64::new(start)),
            head: CachePadded::new(AtomicU64::new(start)),
        };
        // SAFETY: in bounds and aligned (checked above); exclusive during init (caller).
        unsafe { ptr.cast::<Header>().write(hdr) };
        let slots = ptr.wrapping_add(slots_offset::<T>()).cast::<Cell<T>>();
        // Slots of a zero-sized `T` take no memory: nothing to zero (and up to 2^40 of them,
        // a loop of hours in a debug build: review rev2).
        let fill = if size_of::<Cell<T>>() == 0 {
            0
        } else {
            capacity as usize
        };
        for i in 0..fill {
            // SAFETY: slot i lies inside the region (required_size) and is aligned for Cell<T>.
            unsafe { slots.add(i).write(Cell::new(T::zeroed())) };
        }
        Ok(())
    }

    /// Attaches for `role`; returns the handle's geometry and the positions `(tail, head)`,
    /// each read once and checked (`tail - head <= capacity`). The caller starts from these
    /// values and never reads the positions again to start with: a peer may change them after
    /// the check (finding 4 of issue 15).
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
        // SAFETY: forwarded contract.
        unsafe {
            attach_with(
                ptr,
                len,
                role,
                owner,
                is_alive,
                crate::header::elem_word::<T>(),
                slots_offset::<T>(),
                &Self::required_size,
            )
        }
    }
}

/// Attach for any element layout: the ring's element word must be `elem`, its slots start at
/// `slots_off`, and `required(capacity)` bytes must be there. Returns the handle's geometry
/// and the positions `(tail, head)`, each read once and checked. Shared by the typed handles
/// and the run-time ones ([`DynSpscRing`](crate::DynSpscRing)).
///
/// # Safety
/// As for [`SpscRing::producer`]; `T` is the slot type the handle addresses (a marker for the
/// run-time handles, which address bytes).
#[allow(clippy::too_many_arguments)]
unsafe fn attach_with<T>(
    ptr: *mut u8,
    len: usize,
    role: Role,
    owner: u64,
    is_alive: &dyn Fn(u64) -> bool,
    elem: u64,
    slots_off: usize,
    required: &dyn Fn(u64) -> usize,
) -> Result<(Raw<T>, u64, u64), AttachError> {
    // SAFETY: forwarded contract; Header is repr(C) with the meta first.
    let (hdr, found, cap) = unsafe { open_ring_raw::<Header>(ptr, len, Kind::Spsc, slots_off)? };
    if found != elem {
        return Err(AttachError::WrongElement {
            size: found as u32,
            align: (found >> 32) as u32,
        });
    }
    check_region(ptr, len, required(cap))?;
    // SAFETY: a checked header in bounds; it holds only atomics.
    let h = unsafe { hdr.as_ref() };
    // The claim first: the positions are read once we hold the role, so they include
    // everything a previous holder of it published before letting go (read before the
    // claim, a holder leaving in between was overwritten or read again: review rev2).
    h.meta.claim(role, owner, is_alive)?;
    // These two loads are the endpoint's starting positions (never read again to start
    // with). ORDERING: Acquire; pairs with the producer's SPSC_TAIL_STORE (Release): a
    // consumer that starts from this tail sees the slot writes before it (the cached tail
    // it reads from); also with the hand-over after init, and (after the claim's AcqRel
    // CAS, which pairs with `release`) our own role's previous holder's last store.
    let tail = h.tail.load(Ordering::Acquire);
    // ORDERING: Acquire; pairs with the consumer's SPSC_HEAD_STORE (Release): a producer
    // that starts from this head reuses only slots whose reads happened before it.
    let head = h.head.load(Ordering::Acquire);
    if tail.wrapping_sub(head) > cap {
        h.meta.release(role, owner);
        return Err(AttachError::Corrupt(
            "tail and head more than a capacity apart",
        ));
    }
    #[cfg(all(test, not(loom)))]
    tests::after_attach_check(ptr);
    let raw = Raw {
        hdr,
        // SAFETY: the slots lie inside the region (checked against required_size).
        slots: unsafe { NonNull::new_unchecked(ptr.add(slots_off).cast()) },
        cap,
        mask: cap - 1,
        owner,
        keep: None,
    };
    Ok((raw, tail, head))
}

impl<T: Pod> SpscRing<T> {
    /// Attaches the producer. `owner` is a non-zero token naming this endpoint (the channel
    /// layer uses the segment slot); a producer claim held by an owner for which `is_alive`
    /// says false is taken over.
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
    ) -> Result<Producer<T>, AttachError> {
        // SAFETY: forwarded contract. The positions are the ones attach checked; they are not
        // read again here.
        let (raw, tail, head) = unsafe { Self::attach(ptr, len, Role::Producer, owner, is_alive)? };
        Ok(Producer {
            raw,
            tail,
            cached_head: head,
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
    ) -> Result<Consumer<T>, AttachError> {
        // SAFETY: forwarded contract. The positions are the ones attach checked; they are not
        // read again here.
        let (raw, tail, head) = unsafe { Self::attach(ptr, len, Role::Consumer, owner, is_alive)? };
        Ok(Consumer {
            raw,
            head,
            cached_tail: tail,
            _not_sync: PhantomData,
        })
    }
}

impl<T> Raw<T> {
    fn hdr(&self) -> &Header {
        // SAFETY: valid for the handle's lifetime (constructor contract); atomics only.
        unsafe { self.hdr.as_ref() }
    }
    fn cell(&self, pos: u64) -> &Cell<T> {
        // SAFETY: `pos & mask < cap`, and the slot array holds `cap` cells (checked at attach).
        unsafe { self.slots.add((pos & self.mask) as usize).as_ref() }
    }
    /// The two runs of a chunk of `n` slots from `pos`: `(first, second)`, the slots from
    /// `pos & mask` to the end of the array and those from slot 0. Both lie inside the array
    /// because `n <= cap` (checked by `free_for` / `avail_for`; asserted here, so a broken
    /// invariant panics instead of reaching past the slots).
    #[cfg(not(loom))]
    fn runs(&self, pos: u64, n: usize) -> (usize, usize) {
        assert!(n as u64 <= self.cap, "chunk longer than the ring");
        let start = (pos & self.mask) as usize;
        let first = n.min(self.cap as usize - start);
        (first, n - first)
    }

    /// Pointer to the first of `n` contiguous slots starting at `pos` (no wrap).
    #[cfg(not(loom))]
    fn slot_ptr(&self, pos: u64) -> *mut T {
        // SAFETY: in bounds as in `cell`; Cell<T> is repr(transparent) over T.
        unsafe { self.slots.add((pos & self.mask) as usize).as_ptr().cast() }
    }
}

/// The writing end of an SPSC ring. `Send`, not `Sync`.
///
/// Aligned to 128 bytes: the handle's own position changes on every push, and a consumer
/// handle that happened to share its cache line (two handles made together and kept side by
/// side, as in most benchmarks) would make every push and pop a cache-line transfer. Measured:
/// 2.5x the throughput of the unaligned handle in the interleaved A/B bench.
#[repr(align(128))]
pub struct Producer<T> {
    raw: Raw<T>,
    tail: u64,
    cached_head: u64,
    _not_sync: PhantomData<core::cell::Cell<()>>,
}

/// The reading end of an SPSC ring. `Send`, not `Sync`. Aligned to 128 bytes, see
/// [`Producer`].
#[repr(align(128))]
pub struct Consumer<T> {
    raw: Raw<T>,
    head: u64,
    cached_tail: u64,
    _not_sync: PhantomData<core::cell::Cell<()>>,
}

// SAFETY: the handle owns its role exclusively (claim word); the raw pointers refer to memory
// that outlives it (constructor contract) and is shared only through atomics. T: Send because
// values cross to whoever pops them.
unsafe impl<T: Send> Send for Producer<T> {}
// SAFETY: as for Producer.
unsafe impl<T: Send> Send for Consumer<T> {}

impl<T> core::fmt::Debug for Producer<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Producer")
            .field("tail", &self.tail)
            .field("capacity", &self.raw.cap)
            .finish_non_exhaustive()
    }
}

impl<T> core::fmt::Debug for Consumer<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Consumer")
            .field("head", &self.head)
            .field("capacity", &self.raw.cap)
            .finish_non_exhaustive()
    }
}

impl<T> Producer<T> {
    /// Keeps `owner` (the segment or heap region holding the ring) alive as long as this
    /// handle.
    #[must_use]
    pub fn keep_alive(mut self, owner: KeepAlive) -> Self {
        self.raw.keep = Some(owner);
        self
    }
}

impl<T> Drop for Producer<T> {
    fn drop(&mut self) {
        self.raw.hdr().meta.release(Role::Producer, self.raw.owner);
    }
}

impl<T> Consumer<T> {
    /// Keeps `owner` (the segment or heap region holding the ring) alive as long as this
    /// handle.
    #[must_use]
    pub fn keep_alive(mut self, owner: KeepAlive) -> Self {
        self.raw.keep = Some(owner);
        self
    }
}

impl<T> Drop for Consumer<T> {
    fn drop(&mut self) {
        self.raw.hdr().meta.release(Role::Consumer, self.raw.owner);
    }
}

impl<T> Producer<T> {
    /// Free slots, refreshing the cached head only if the cache says fewer than `want`.
    #[inline]
    fn free_for(&mut self, want: u64) -> Result<u64, ()> {
        // `tail - cached_head <= cap` holds (checked when the head was cached, and `publish`
        // advances by at most the free count); checked again rather than trusted, so even a
        // broken invariant gives `Corrupt`, never a free count above the capacity.
        let Some(free) = self
            .raw
            .cap
            .checked_sub(self.tail.wrapping_sub(self.cached_head))
        else {
            return Err(());
        };
        if free >= want {
            return Ok(free);
        }
        // ORDERING: SPSC_HEAD_LOAD (Acquire); pairs with the consumer's SPSC_HEAD_STORE
        // (Release), so its reads of the slots we are about to overwrite happened before.
        let head = self.raw.hdr().head.load(SPSC_HEAD_LOAD);
        let used = self.tail.wrapping_sub(head);
        if used > self.raw.cap {
            return Err(());
        }
        self.cached_head = head;
        Ok(self.raw.cap - used)
    }

    #[inline]
    fn publish(&mut self, n: u64) {
        self.tail = self.tail.wrapping_add(n);
        // ORDERING: SPSC_TAIL_STORE (Release); pairs with the consumer's SPSC_TAIL_LOAD
        // (Acquire): the slot writes above happen-before the consumer reads them.
        self.raw.hdr().tail.store(self.tail, SPSC_TAIL_STORE);
    }
}

impl<T: Pod> Producer<T> {
    /// Pushes one value, or gives it back if the ring is full. Never blocks.
    ///
    /// ```
    /// use shmlane_ring::{HeapRegion, SpscRing, PushError};
    /// let (mut p, mut c) = HeapRegion::spsc::<u64>(2);
    /// p.push(1).unwrap();
    /// p.push(2).unwrap();
    /// assert!(matches!(p.push(3), Err(PushError::Full(3))));
    /// assert_eq!(c.pop(), Ok(1));
    /// ```
    #[inline]
    pub fn push(&mut self, value: T) -> Result<(), PushError<T>> {
        match self.free_for(1) {
            Ok(0) => return Err(PushError::Full(value)),
            Ok(_) => {}
            Err(()) => return Err(PushError::Corrupt(value)),
        }
        let cell = self.raw.cell(self.tail);
        // SAFETY: the slot at `tail` is free (the consumer released it, Acquire above) and
        // only the producer writes free slots.
        cell.with_mut(|p| unsafe { p.write(value) });
        self.publish(1);
        Ok(())
    }

    /// Pushes as many values from `src` as fit; returns how many.
    pub fn push_slice(&mut self, src: &[T]) -> Result<usize, ChunkError> {
        let free = self
            .free_for(src.len() as u64)
            .map_err(|()| ChunkError::Corrupt)?;
        let n = src.len().min(free as usize);
        for (i, v) in src[..n].iter().enumerate() {
            // SAFETY: as in `push`, for each of the `n` free slots.
            self.raw
                .cell(self.tail.wrapping_add(i as u64))
                .with_mut(|p| unsafe { p.write(*v) });
        }
        if n > 0 {
            self.publish(n as u64);
        }
        Ok(n)
    }

    /// Reserves `n` slots to write in place (zero copy). Fails with the number available if
    /// fewer than `n` are free. The slots become visible to the consumer only on
    /// [`WriteChunk::commit`].
    ///
    /// The slots hold initialised `T` values (whatever was there before: ring memory is
    /// zeroed at `init` and only ever holds `T: Pod`), so committing slots left unwritten is
    /// safe. Fill them with [`WriteChunk::copy_from_slice`] or [`WriteChunk::write`] (safe
    /// against any peer), or in place through the `unsafe` [`WriteChunk::as_mut_slices`]
    /// when every process mapping the ring is trusted (a ring in private memory here).
    ///
    /// ```
    /// use shmlane_ring::HeapRegion;
    /// let (mut p, mut c) = HeapRegion::spsc::<f32>(8);
    /// let mut chunk = p.write_chunk(4).unwrap();
    /// // SAFETY: a heap ring; no other process can write its slots.
    /// let (a, b) = unsafe { chunk.as_mut_slices() };
    /// for (i, x) in a.iter_mut().chain(b.iter_mut()).enumerate() {
    ///     *x = i as f32;
    /// }
    /// chunk.commit_all();
    /// let chunk = c.read_chunk(4).unwrap();
    /// let mut out = [0.0; 4];
    /// chunk.copy_to_slice(&mut out);
    /// assert_eq!(out, [0.0, 1.0, 2.0, 3.0]);
    /// chunk.commit_all();
    /// ```
    pub fn write_chunk(&mut self, n: usize) -> Result<WriteChunk<'_, T>, ChunkError> {
        let free = self.free_for(n as u64).map_err(|()| ChunkError::Corrupt)?;
        if (free as usize) < n {
            return Err(ChunkError::TooFewSlots(free as usize));
        }
        Ok(WriteChunk { p: self, n })
    }
}

impl<T> Producer<T> {
    /// Free slots now (reads the consumer's position).
    pub fn free(&mut self) -> usize {
        self.free_for(u64::MAX).unwrap_or(0) as usize
    }

    /// Elements in the ring now, as seen by the producer.
    pub fn len(&mut self) -> usize {
        self.raw.cap as usize - self.free()
    }

    /// Whether the ring is empty, as seen by the producer.
    pub fn is_empty(&mut self) -> bool {
        self.len() == 0
    }

    /// The capacity.
    pub fn capacity(&self) -> usize {
        self.raw.cap as usize
    }

    /// The next position this producer writes.
    pub fn position(&self) -> u64 {
        self.tail
    }

    /// Whether a consumer is attached (its role claim is held).
    pub fn has_consumer(&self) -> bool {
        self.raw.hdr().meta.holder(Role::Consumer) != 0
    }
}

/// Slots reserved by [`Producer::write_chunk`].
#[derive(Debug)]
pub struct WriteChunk<'a, T: Pod> {
    p: &'a mut Producer<T>,
    n: usize,
}

impl<T: Pod> WriteChunk<'_, T> {
    /// Number of reserved slots.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Whether no slot was reserved.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Writes element `i` of the chunk.
    ///
    /// # Panics
    /// If `i >= len()`.
    pub fn write(&mut self, i: usize, value: T) {
        assert!(i < self.n, "chunk index out of range");
        let cell = self.p.raw.cell(self.p.tail.wrapping_add(i as u64));
        // SAFETY: slot `tail + i` is one of the reserved free slots; only we write it.
        cell.with_mut(|p| unsafe { p.write(value) });
    }

    /// Copies `src` into the reserved slots, in order (one copy, straight into the ring, in at
    /// most two runs when the chunk wraps). Safe against a hostile peer: it writes through raw
    /// pointers and makes no reference into the slots.
    ///
    /// # Panics
    /// If `src.len() != len()`.
    ///
    /// ```
    /// use shmlane_ring::HeapRegion;
    /// let (mut p, mut c) = HeapRegion::spsc::<u32>(4);
    /// let mut w = p.write_chunk(3).unwrap();
    /// w.copy_from_slice(&[7, 8, 9]);
    /// w.commit_all();
    /// let r = c.read_chunk(3).unwrap();
    /// let mut out = [0; 3];
    /// r.copy_to_slice(&mut out);
    /// r.commit_all();
    /// assert_eq!(out, [7, 8, 9]);
    /// ```
    pub fn copy_from_slice(&mut self, src: &[T]) {
        assert_eq!(src.len(), self.n, "source length differs from the chunk's");
        #[cfg(not(loom))]
        {
            let (first, second) = self.p.raw.runs(self.p.tail, self.n);
            // SAFETY: `runs` gives two ranges inside the slot array ([start, start + first)
            // and [0, second), first + second = n <= cap), which are reserved for us by the
            // protocol; `src` is our own memory, so the ranges do not overlap it. Raw copies:
            // no reference into the slots is made, so a peer writing them anyway (hostile)
            // changes the data only.
            unsafe {
                core::ptr::copy_nonoverlapping(
                    src.as_ptr(),
                    self.p.raw.slot_ptr(self.p.tail),
                    first,
                );
                core::ptr::copy_nonoverlapping(
                    src.as_ptr().add(first),
                    self.p.raw.slot_ptr(0),
                    second,
                );
            }
        }
        #[cfg(loom)]
        for (i, v) in src.iter().enumerate() {
            self.write(i, *v);
        }
    }

    /// The reserved slots as two slices (the second is non-empty when the chunk wraps): zero
    /// copy, for callers who vouch for every process that maps the ring.
    ///
    /// # Safety
    /// No one but this chunk may read or write the reserved slots while the slices live. The
    /// ring protocol gives the producer exclusive use of free slots, so this holds when every
    /// other process that maps the ring is a cooperating shmlane endpoint (and always for a
    /// ring in private memory, such as a [`HeapRegion`](crate::HeapRegion)). It does not hold
    /// against a hostile process that writes the slots anyway: a `&mut [T]` to memory that
    /// someone else writes at the same time is undefined behaviour even though every bit
    /// pattern is a valid `T`. Against a peer you do not trust, use
    /// [`copy_from_slice`](Self::copy_from_slice) or [`write`](Self::write).
    ///
    /// Safe code cannot make the slices (before issue 15, finding 8, it could):
    ///
    /// ```compile_fail,E0133
    /// let (mut p, _c) = shmlane_ring::HeapRegion::spsc::<u8>(4);
    /// let mut chunk = p.write_chunk(2).unwrap();
    /// let (_a, _b) = chunk.as_mut_slices();
    /// ```
    #[cfg(not(loom))]
    pub unsafe fn as_mut_slices(&mut self) -> (&mut [T], &mut [T]) {
        let (first, second) = self.p.raw.runs(self.p.tail, self.n);
        let a = self.p.raw.slot_ptr(self.p.tail);
        let b = self.p.raw.slot_ptr(0);
        // SAFETY: [start, start + first) and [0, second) are disjoint ranges of reserved,
        // initialised slots inside the slot array (`runs`); the &mut self borrow makes them
        // exclusive within this process and the protocol plus the caller's promise exclude
        // everyone else.
        unsafe {
            (
                core::slice::from_raw_parts_mut(a, first),
                core::slice::from_raw_parts_mut(b, second),
            )
        }
    }

    /// The reserved slots as raw pointers, each with its number of slots (the second run is
    /// non-empty when the chunk wraps): to fill them in place without a reference, e.g. by a
    /// `read(2)` straight into the ring. Safe to call; writing through the pointers is the
    /// caller's `unsafe`: at most the given number of slots from each, before the commit. Safe
    /// against a hostile peer as [`copy_from_slice`](Self::copy_from_slice) is, as long as no
    /// reference into the slots is made.
    #[cfg(not(loom))]
    pub fn as_mut_ptrs(&mut self) -> [(*mut T, usize); 2] {
        let (first, second) = self.p.raw.runs(self.p.tail, self.n);
        [
            (self.p.raw.slot_ptr(self.p.tail), first),
            (self.p.raw.slot_ptr(0), second),
        ]
    }

    /// Makes the first `k` reserved slots visible to the consumer.
    ///
    /// # Panics
    /// If `k > len()`.
    pub fn commit(self, k: usize) {
        assert!(k <= self.n, "cannot commit more than reserved");
        if k > 0 {
            self.p.publish(k as u64);
        }
    }

    /// Makes all reserved slots visible to the consumer.
    pub fn commit_all(self) {
        let n = self.n;
        self.commit(n);
    }
}

impl<T> Consumer<T> {
    /// Elements available, refreshing the cached tail only if the cache says fewer than
    /// `want`.
    #[inline]
    fn avail_for(&mut self, want: u64) -> Result<u64, ()> {
        // `cached_tail - head <= cap` holds (as in `free_for`); checked again rather than
        // trusted, so a chunk is never longer than the ring.
        let avail = self.cached_tail.wrapping_sub(self.head);
        if avail > self.raw.cap {
            return Err(());
        }
        if avail >= want {
            return Ok(avail);
        }
        // ORDERING: SPSC_TAIL_LOAD (Acquire); pairs with the producer's SPSC_TAIL_STORE
        // (Release), so the slot writes before it are visible.
        let tail = self.raw.hdr().tail.load(SPSC_TAIL_LOAD);
        let avail = tail.wrapping_sub(self.head);
        if avail > self.raw.cap {
            return Err(());
        }
        self.cached_tail = tail;
        Ok(avail)
    }

    #[inline]
    fn release(&mut self, n: u64) {
        self.head = self.head.wrapping_add(n);
        // ORDERING: SPSC_HEAD_STORE (Release); pairs with the producer's Acquire load of head
        // in `free_for`: our reads of the slots happen-before it overwrites them.
        self.raw.hdr().head.store(self.head, SPSC_HEAD_STORE);
    }
}

impl<T: Pod> Consumer<T> {
    #[inline]
    fn read_at(&self, pos: u64) -> T {
        // SAFETY: the slot at `pos` was published (Acquire in avail_for) and the producer
        // does not overwrite it before we release it.
        self.raw.cell(pos).with(|p| unsafe { p.read() })
    }

    /// Pops one value. Never blocks.
    #[inline]
    pub fn pop(&mut self) -> Result<T, PopError> {
        match self.avail_for(1) {
            Ok(0) => Err(PopError::Empty),
            Ok(_) => {
                let v = self.read_at(self.head);
                self.release(1);
                Ok(v)
            }
            Err(()) => Err(PopError::Corrupt),
        }
    }

    /// The next value, without removing it.
    pub fn peek(&mut self) -> Result<T, PopError> {
        match self.avail_for(1) {
            Ok(0) => Err(PopError::Empty),
            Ok(_) => Ok(self.read_at(self.head)),
            Err(()) => Err(PopError::Corrupt),
        }
    }

    /// Pops up to `dst.len()` values into `dst`; returns how many.
    pub fn pop_slice(&mut self, dst: &mut [T]) -> Result<usize, PopError> {
        let avail = self
            .avail_for(dst.len() as u64)
            .map_err(|()| PopError::Corrupt)?;
        let n = dst.len().min(avail as usize);
        for (i, d) in dst[..n].iter_mut().enumerate() {
            *d = self.read_at(self.head.wrapping_add(i as u64));
        }
        if n > 0 {
            self.release(n as u64);
        }
        Ok(n)
    }

    /// Borrows `n` elements in place (zero copy); fails with the number available if fewer.
    /// They are released to the producer on [`ReadChunk::commit`].
    pub fn read_chunk(&mut self, n: usize) -> Result<ReadChunk<'_, T>, ChunkError> {
        let avail = self.avail_for(n as u64).map_err(|()| ChunkError::Corrupt)?;
        if (avail as usize) < n {
            return Err(ChunkError::TooFewSlots(avail as usize));
        }
        Ok(ReadChunk { c: self, n })
    }
}

impl<T> Consumer<T> {
    /// Elements available now (reads the producer's position).
    pub fn len(&mut self) -> usize {
        self.avail_for(u64::MAX).unwrap_or(0) as usize
    }

    /// Whether the ring is empty now.
    pub fn is_empty(&mut self) -> bool {
        self.len() == 0
    }

    /// The capacity.
    pub fn capacity(&self) -> usize {
        self.raw.cap as usize
    }

    /// The next position this consumer reads.
    pub fn position(&self) -> u64 {
        self.head
    }

    /// Whether a producer is attached (its role claim is held).
    pub fn has_producer(&self) -> bool {
        self.raw.hdr().meta.holder(Role::Producer) != 0
    }
}

/// Elements borrowed by [`Consumer::read_chunk`].
#[derive(Debug)]
pub struct ReadChunk<'a, T: Pod> {
    c: &'a mut Consumer<T>,
    n: usize,
}

impl<T: Pod> ReadChunk<'_, T> {
    /// Number of borrowed elements.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Whether nothing was borrowed.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Copies out element `i`.
    ///
    /// # Panics
    /// If `i >= len()`.
    pub fn get(&self, i: usize) -> T {
        assert!(i < self.n, "chunk index out of range");
        self.c.read_at(self.c.head.wrapping_add(i as u64))
    }

    /// Copies the borrowed elements into `dst`, in order (one copy, straight from the ring, in
    /// at most two runs when the chunk wraps). Safe against a hostile peer: it reads through
    /// raw pointers and makes no reference into the slots.
    ///
    /// # Panics
    /// If `dst.len() != len()`.
    pub fn copy_to_slice(&self, dst: &mut [T]) {
        assert_eq!(
            dst.len(),
            self.n,
            "destination length differs from the chunk's"
        );
        #[cfg(not(loom))]
        {
            let (first, second) = self.c.raw.runs(self.c.head, self.n);
            // SAFETY: `runs` gives two ranges inside the slot array, published and not yet
            // released (Acquire in `avail_for`); `dst` is our own exclusive memory. Raw
            // copies: no reference into the slots is made, so a peer writing them anyway
            // (hostile) changes the data only.
            unsafe {
                core::ptr::copy_nonoverlapping(
                    self.c.raw.slot_ptr(self.c.head),
                    dst.as_mut_ptr(),
                    first,
                );
                core::ptr::copy_nonoverlapping(
                    self.c.raw.slot_ptr(0),
                    dst.as_mut_ptr().add(first),
                    second,
                );
            }
        }
        #[cfg(loom)]
        for (i, d) in dst.iter_mut().enumerate() {
            *d = self.get(i);
        }
    }

    /// The borrowed elements as raw pointers, each with its number of elements (the second
    /// run is non-empty when the chunk wraps): to hand them to the kernel in place without a
    /// reference, e.g. a `write(2)` straight from the ring. Safe to call; reading through the
    /// pointers is the caller's `unsafe`: at most the given number of elements from each,
    /// before the commit. A hostile peer writing them meanwhile changes the data only, as for
    /// [`copy_to_slice`](Self::copy_to_slice), as long as no reference into them is made.
    #[cfg(not(loom))]
    pub fn as_ptrs(&self) -> [(*const T, usize); 2] {
        let (first, second) = self.c.raw.runs(self.c.head, self.n);
        [
            (self.c.raw.slot_ptr(self.c.head).cast_const(), first),
            (self.c.raw.slot_ptr(0).cast_const(), second),
        ]
    }

    /// The borrowed elements as two slices (the second is non-empty when the chunk wraps):
    /// zero copy, for callers who vouch for every process that maps the ring.
    ///
    /// # Safety
    /// No one may write the borrowed slots while the slices live. The ring protocol keeps the
    /// producer off published slots until the consumer releases them, so this holds when every
    /// other process that maps the ring is a cooperating shmlane endpoint (and always for a
    /// ring in private memory, such as a [`HeapRegion`](crate::HeapRegion)). It does not hold
    /// against a hostile process: a `&[T]` to memory someone writes at the same time is
    /// undefined behaviour even though every bit pattern is a valid `T`. Against a peer you do
    /// not trust, use [`copy_to_slice`](Self::copy_to_slice) or [`get`](Self::get).
    ///
    /// Safe code cannot make the slices (before issue 15, finding 8, it could):
    ///
    /// ```compile_fail,E0133
    /// let (mut p, mut c) = shmlane_ring::HeapRegion::spsc::<u8>(4);
    /// p.push(1).unwrap();
    /// let chunk = c.read_chunk(1).unwrap();
    /// let (_a, _b) = chunk.as_slices();
    /// ```
    #[cfg(not(loom))]
    pub unsafe fn as_slices(&self) -> (&[T], &[T]) {
        let (first, second) = self.c.raw.runs(self.c.head, self.n);
        let a = self.c.raw.slot_ptr(self.c.head);
        let b = self.c.raw.slot_ptr(0);
        // SAFETY: published, unreleased slots inside the slot array (`runs`); the caller
        // promises no one writes them while the slices live.
        unsafe {
            (
                core::slice::from_raw_parts(a, first),
                core::slice::from_raw_parts(b, second),
            )
        }
    }

    /// Releases the first `k` elements to the producer.
    ///
    /// # Panics
    /// If `k > len()`.
    pub fn commit(self, k: usize) {
        assert!(k <= self.n, "cannot commit more than borrowed");
        if k > 0 {
            self.c.release(k as u64);
        }
    }

    /// Releases all borrowed elements.
    pub fn commit_all(self) {
        let n = self.n;
        self.commit(n);
    }
}

#[cfg(all(test, not(loom)))]
mod tests;
