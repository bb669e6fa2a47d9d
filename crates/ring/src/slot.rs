//! The stamped slot shared by the MPMC ring and the stamped SPSC ring: a sequence stamp beside
//! each element. Slot `pos & mask` is free for position `pos` when `seq == pos` and holds the
//! value of position `pos` when `seq == pos + 1`.

use core::marker::PhantomData;
use core::ptr::NonNull;

use bytemuck::Pod;

use crate::header::align_up;
use crate::sync::{AtomicU64, UnsafeCell};

#[repr(C)]
pub(crate) struct Slot<T> {
    pub(crate) seq: AtomicU64,
    pub(crate) value: UnsafeCell<T>,
}

/// Writes `capacity` empty slots at `slots`, each free for the first position that maps to it
/// counting from `start`.
///
/// # Safety
/// `slots` must be valid for writes of `capacity` slots, aligned, and unused by anyone else
/// (the creator, before the ring is published).
pub(crate) unsafe fn init_slots<T: Pod>(slots: *mut Slot<T>, capacity: u64, start: u64) {
    for k in 0..capacity {
        let pos = start.wrapping_add(k);
        let slot = Slot {
            seq: AtomicU64::new(pos),
            value: UnsafeCell::new(T::zeroed()),
        };
        // SAFETY: slot index < capacity lies inside the array (caller), aligned for Slot<T>.
        unsafe { slots.add((pos & (capacity - 1)) as usize).write(slot) };
    }
}

/// How a ring's slots are addressed and copied: the one thing the typed rings (`T` known at
/// compile time) and the rings whose element layout is chosen at run time
/// ([`ElemLayout`](crate::ElemLayout)) do differently. The protocols (positions, stamps, hole
/// recovery, liveness) are written once, over this trait.
pub(crate) trait StampedSlots: Clone {
    /// The stamp of slot `idx`.
    ///
    /// # Safety
    /// `slots` must point to the slot array of a ring this layout was checked against, and
    /// `idx` be below its capacity; the result lives as long as the ring's memory.
    unsafe fn seq<'a>(&self, slots: NonNull<u8>, idx: usize) -> &'a AtomicU64;
    /// Copies one element from `src` into slot `idx`'s value.
    ///
    /// # Safety
    /// As for [`seq`](Self::seq); `src` valid for reads of one element, not in the ring; the
    /// caller holds the slot (won its position).
    unsafe fn write(&self, slots: NonNull<u8>, idx: usize, src: *const u8);
    /// Copies slot `idx`'s value to `dst`.
    ///
    /// # Safety
    /// As for [`write`](Self::write), `dst` valid for writes of one element.
    unsafe fn read(&self, slots: NonNull<u8>, idx: usize, dst: *mut u8);
}

/// Slots of a `T` known at compile time: `Slot<T>`.
pub(crate) struct Typed<T>(PhantomData<T>);

impl<T> Typed<T> {
    pub(crate) const fn new() -> Self {
        Self(PhantomData)
    }
}

impl<T> Clone for Typed<T> {
    fn clone(&self) -> Self {
        Self::new()
    }
}

impl<T> StampedSlots for Typed<T> {
    #[inline]
    unsafe fn seq<'a>(&self, slots: NonNull<u8>, idx: usize) -> &'a AtomicU64 {
        // SAFETY: slot `idx` lies inside the array of `Slot<T>` (caller).
        unsafe { &(*slots.cast::<Slot<T>>().as_ptr().add(idx)).seq }
    }
    #[inline]
    unsafe fn write(&self, slots: NonNull<u8>, idx: usize, src: *const u8) {
        // SAFETY: slot `idx` in bounds; `src` a T nobody writes, the slot ours (caller).
        unsafe {
            (*slots.cast::<Slot<T>>().as_ptr().add(idx))
                .value
                .with_mut(|p| core::ptr::copy_nonoverlapping(src.cast::<T>(), p, 1));
        }
    }
    #[inline]
    unsafe fn read(&self, slots: NonNull<u8>, idx: usize, dst: *mut u8) {
        // SAFETY: slot `idx` in bounds and published to us; `dst` valid for a T (caller).
        unsafe {
            (*slots.cast::<Slot<T>>().as_ptr().add(idx))
                .value
                .with(|p| core::ptr::copy_nonoverlapping(p, dst.cast::<T>(), 1));
        }
    }
}

/// The start of a stamped slot whose element layout is chosen at run time: the stamp, then
/// (zero-sized outside loom) the cell loom tracks the value's accesses with. The value
/// follows at [`DynStamped::value_off`]; outside loom the whole slot is laid out exactly as
/// `Slot<T>` for a `T` of the same size and alignment.
#[repr(C)]
pub(crate) struct DynSlotHead {
    pub(crate) seq: AtomicU64,
    pub(crate) track: UnsafeCell<()>,
}

/// Stamped slots of a run-time element layout: geometry computed once from a checked
/// [`ElemLayout`](crate::ElemLayout).
#[derive(Clone, Copy, Debug)]
pub(crate) struct DynStamped {
    pub(crate) stride: usize,
    pub(crate) value_off: usize,
    pub(crate) size: usize,
}

impl DynStamped {
    pub(crate) fn new(e: crate::ElemLayout) -> Self {
        let value_off = align_up(size_of::<DynSlotHead>(), e.align());
        let slot_align = e.align().max(align_of::<DynSlotHead>());
        Self {
            stride: align_up(value_off + e.size(), slot_align),
            value_off,
            size: e.size(),
        }
    }
    /// The slot array's alignment.
    pub(crate) fn align(e: crate::ElemLayout) -> usize {
        e.align().max(align_of::<DynSlotHead>())
    }
    fn head<'a>(&self, slots: NonNull<u8>, idx: usize) -> &'a DynSlotHead {
        // SAFETY: (all callers) slot `idx` lies inside the array of `stride`-byte slots, each
        // starting with a DynSlotHead, aligned (slot_align divides stride and the offset).
        unsafe { &*slots.as_ptr().add(idx * self.stride).cast::<DynSlotHead>() }
    }
}

impl StampedSlots for DynStamped {
    unsafe fn seq<'a>(&self, slots: NonNull<u8>, idx: usize) -> &'a AtomicU64 {
        &self.head(slots, idx).seq
    }
    unsafe fn write(&self, slots: NonNull<u8>, idx: usize, src: *const u8) {
        let v = slots
            .as_ptr()
            .wrapping_add(idx * self.stride + self.value_off);
        // SAFETY: the value lies inside slot `idx` (stride >= value_off + size), which the
        // caller holds; raw copy, no reference into the slot.
        self.head(slots, idx)
            .track
            .with_mut(|_| unsafe { core::ptr::copy_nonoverlapping(src, v, self.size) });
    }
    unsafe fn read(&self, slots: NonNull<u8>, idx: usize, dst: *mut u8) {
        let v = slots
            .as_ptr()
            .wrapping_add(idx * self.stride + self.value_off);
        // SAFETY: as in `write`, the value published to us; `dst` valid for `size` bytes.
        self.head(slots, idx)
            .track
            .with(|_| unsafe { core::ptr::copy_nonoverlapping(v, dst, self.size) });
    }
}

/// Writes `capacity` empty run-time-layout slots at `slots` (zeroed values), each free for the
/// first position that maps to it counting from `start`.
///
/// # Safety
/// As for [`init_slots`], for `capacity` slots of `geom.stride` bytes.
pub(crate) unsafe fn init_dyn_slots(slots: *mut u8, geom: DynStamped, capacity: u64, start: u64) {
    for k in 0..capacity {
        let pos = start.wrapping_add(k);
        let p = slots.wrapping_add((pos & (capacity - 1)) as usize * geom.stride);
        // SAFETY: the slot lies inside the array (caller), aligned for DynSlotHead.
        unsafe {
            p.write_bytes(0, geom.stride);
            p.cast::<DynSlotHead>().write(DynSlotHead {
                seq: AtomicU64::new(pos),
                track: UnsafeCell::new(()),
            });
        }
    }
}
