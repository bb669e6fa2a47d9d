//! The stamped slot shared by the MPMC ring and the stamped SPSC ring: a sequence stamp beside
//! each element. Slot `pos & mask` is free for position `pos` when `seq == pos` and holds the
//! value of position `pos` when `seq == pos + 1`.

use bytemuck::Pod;

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
