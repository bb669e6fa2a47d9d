//! MPMC rings whose element layout is chosen at run time ([`ElemLayout`]): the same header,
//! slots and protocol as [`MpmcRing<T>`](super::MpmcRing) for a `T` of that size and alignment
//! (the element word in the header is the same, so either kind of handle opens a ring the other
//! made). Only the slot addressing and copy differ ([`DynStamped`]); every protocol step is
//! [`Endpoint`]'s, shared with the typed handles.

use super::{
    CONSUMERS, Endpoint, Header, Hole, NO_OWNER, PRODUCERS, Raw, approx_len, attach_checked,
    new_header, positions_consistent,
};
use crate::{
    KeepAlive,
    error::{AttachError, PopError, PushError},
    header::{Kind, align_up, check_capacity, check_region, open_ring_raw},
    layout::ElemLayout,
    slot::{DynStamped, init_dyn_slots},
    sync::Ordering,
};

/// Namespace for laying out, initialising and attaching to MPMC rings of a run-time element
/// layout.
#[derive(Debug)]
pub struct DynMpmcRing;

fn slots_offset(layout: ElemLayout) -> usize {
    align_up(size_of::<Header>(), DynStamped::align(layout).max(128))
}

impl DynMpmcRing {
    /// Bytes a region needs for `capacity` elements of `layout` (`usize::MAX` if that does not
    /// fit, as [`MpmcRing::required_size`](super::MpmcRing::required_size)).
    pub fn required_size(layout: ElemLayout, capacity: u64) -> usize {
        crate::header::required_size(
            slots_offset(layout),
            DynStamped::new(layout).stride,
            capacity,
        )
    }

    /// Initialises an empty ring of `layout` elements whose first position is `start`.
    ///
    /// # Safety
    /// As for [`MpmcRing::init`](super::MpmcRing::init).
    pub unsafe fn init(
        ptr: *mut u8,
        len: usize,
        layout: ElemLayout,
        capacity: u64,
        start: u64,
    ) -> Result<(), AttachError> {
        check_capacity(capacity, Kind::Mpmc)?;
        check_region(ptr, len, Self::required_size(layout, capacity))?;
        let hdr = new_header(layout.word(), capacity, start);
        // SAFETY: in bounds and aligned (checked); exclusive during init (caller).
        unsafe { ptr.cast::<Header>().write(hdr) };
        // SAFETY: the slot array lies inside the region (required_size checked), aligned
        // (the offset is a multiple of 128 and of the slot alignment); exclusive (caller).
        unsafe {
            init_dyn_slots(
                ptr.wrapping_add(slots_offset(layout)),
                DynStamped::new(layout),
                capacity,
                start,
            );
        }
        Ok(())
    }

    /// # Safety
    /// As for [`sender`](Self::sender).
    unsafe fn attach(
        ptr: *mut u8,
        len: usize,
        layout: ElemLayout,
    ) -> Result<Raw<DynStamped>, AttachError> {
        let off = slots_offset(layout);
        // SAFETY: forwarded contract; Header is repr(C) with the meta first.
        let (hdr, elem, cap) = unsafe { open_ring_raw::<Header>(ptr, len, Kind::Mpmc, off)? };
        if elem != layout.word() {
            return Err(AttachError::WrongElement {
                size: elem as u32,
                align: (elem >> 32) as u32,
            });
        }
        // The geometry, once, from the checked layout and capacity.
        check_region(ptr, len, Self::required_size(layout, cap))?;
        // SAFETY: the region holds the header and `cap` slots of this layout (checked).
        unsafe { attach_checked(hdr, ptr, off, DynStamped::new(layout), cap) }
    }

    /// Attaches a sending endpoint without an owner token (as
    /// [`MpmcRing::sender`](super::MpmcRing::sender)).
    ///
    /// # Safety
    /// As for [`MpmcRing::sender`](super::MpmcRing::sender).
    pub unsafe fn sender(
        ptr: *mut u8,
        len: usize,
        layout: ElemLayout,
    ) -> Result<DynSender, AttachError> {
        // SAFETY: forwarded contract.
        let raw = unsafe { Self::attach(ptr, len, layout)? };
        Ok(DynSender {
            ep: Endpoint::new(raw, PRODUCERS, NO_OWNER, None),
            layout,
        })
    }

    /// Attaches a sending endpoint with a producer intent entry (as
    /// [`MpmcRing::sender_owned`](super::MpmcRing::sender_owned)).
    ///
    /// # Safety
    /// As for [`MpmcRing::sender`](super::MpmcRing::sender).
    pub unsafe fn sender_owned(
        ptr: *mut u8,
        len: usize,
        layout: ElemLayout,
        owner: u64,
        is_alive: &dyn Fn(u64) -> bool,
    ) -> Result<DynSender, AttachError> {
        // SAFETY: forwarded contract.
        let raw = unsafe { Self::attach(ptr, len, layout)? };
        Ok(DynSender {
            ep: Endpoint::new(raw, PRODUCERS, owner, Some(is_alive)),
            layout,
        })
    }

    /// Attaches a receiving endpoint without an owner token.
    ///
    /// # Safety
    /// As for [`MpmcRing::sender`](super::MpmcRing::sender).
    pub unsafe fn receiver(
        ptr: *mut u8,
        len: usize,
        layout: ElemLayout,
    ) -> Result<DynReceiver, AttachError> {
        // SAFETY: forwarded contract.
        let raw = unsafe { Self::attach(ptr, len, layout)? };
        Ok(DynReceiver {
            ep: Endpoint::new(raw, CONSUMERS, NO_OWNER, None),
            layout,
        })
    }

    /// Attaches a receiving endpoint with a consumer intent entry.
    ///
    /// # Safety
    /// As for [`MpmcRing::sender`](super::MpmcRing::sender).
    pub unsafe fn receiver_owned(
        ptr: *mut u8,
        len: usize,
        layout: ElemLayout,
        owner: u64,
        is_alive: &dyn Fn(u64) -> bool,
    ) -> Result<DynReceiver, AttachError> {
        // SAFETY: forwarded contract.
        let raw = unsafe { Self::attach(ptr, len, layout)? };
        Ok(DynReceiver {
            ep: Endpoint::new(raw, CONSUMERS, owner, Some(is_alive)),
            layout,
        })
    }
}

/// A sending end of an MPMC ring of a run-time element layout. `Send`, not `Sync`; `Clone`.
pub struct DynSender {
    ep: Endpoint<DynStamped>,
    layout: ElemLayout,
}

/// A receiving end of an MPMC ring of a run-time element layout. `Send`, not `Sync`; `Clone`.
pub struct DynReceiver {
    ep: Endpoint<DynStamped>,
    layout: ElemLayout,
}

// SAFETY: as for `Sender<T>`: the pointers refer to memory that outlives the handle and is
// shared only through the stamp protocol; the elements are plain bytes.
unsafe impl Send for DynSender {}
// SAFETY: as for DynSender.
unsafe impl Send for DynReceiver {}

impl Clone for DynSender {
    fn clone(&self) -> Self {
        Self {
            ep: self.ep.duplicate(),
            layout: self.layout,
        }
    }
}

impl Clone for DynReceiver {
    fn clone(&self) -> Self {
        Self {
            ep: self.ep.duplicate(),
            layout: self.layout,
        }
    }
}

impl core::fmt::Debug for DynSender {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DynSender")
            .field("layout", &self.layout)
            .field("capacity", &self.ep.raw.cap)
            .field("intent", &self.ep.intent)
            .finish_non_exhaustive()
    }
}

impl core::fmt::Debug for DynReceiver {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DynReceiver")
            .field("layout", &self.layout)
            .field("capacity", &self.ep.raw.cap)
            .field("intent", &self.ep.intent)
            .finish_non_exhaustive()
    }
}

fn check_len(len: usize, size: usize) {
    assert!(
        len == size,
        "element of {len} bytes given to a ring of {size}-byte elements"
    );
}

impl DynSender {
    /// Keeps `owner` alive as long as this handle (and its clones made afterwards).
    #[must_use]
    pub fn keep_alive(mut self, owner: KeepAlive) -> Self {
        self.ep.raw.keep = Some(owner);
        self
    }

    /// The element layout.
    pub fn layout(&self) -> ElemLayout {
        self.layout
    }

    /// Pushes a copy of `elem` (exactly one element's bytes), or refuses if the ring is full.
    /// Never blocks.
    ///
    /// # Panics
    /// If `elem.len()` is not the element size (the channel layer checks it first).
    pub fn push(&self, elem: &[u8]) -> Result<(), PushError<()>> {
        check_len(elem.len(), self.layout.size());
        self.ep.begin();
        // SAFETY: `elem` holds one element's bytes (checked), our own memory, not the ring's
        // (no API hands out a reference into the ring).
        let r = unsafe { self.ep.push_inner(elem.as_ptr(), false) };
        self.ep.end();
        r.map(|_| ())
    }

    /// Pushes the elements of `elems` (a whole number of elements) in order, as many as fit;
    /// returns how many. `Err` only if none was pushed because the ring is corrupt.
    ///
    /// # Panics
    /// If `elems.len()` is not a multiple of the element size.
    pub fn push_slice(&self, elems: &[u8]) -> Result<usize, PushError<()>> {
        let size = self.layout.size();
        assert!(
            elems.len() % size == 0,
            "{} bytes are not a whole number of {size}-byte elements",
            elems.len()
        );
        for (i, e) in elems.chunks_exact(size).enumerate() {
            match self.push(e) {
                Ok(()) => {}
                Err(PushError::Full(())) => return Ok(i),
                Err(e) if i == 0 => return Err(e),
                Err(_) => return Ok(i),
            }
        }
        Ok(elems.len() / size)
    }

    /// As [`Sender::can_push`](super::Sender::can_push).
    pub fn can_push(&self) -> bool {
        self.ep.can_push()
    }

    /// As [`Sender::recover`](super::Sender::recover).
    pub fn recover(&self, is_alive: &dyn Fn(u64) -> bool) -> Hole {
        self.ep.recover_push(is_alive)
    }

    /// As [`Sender::positions_consistent`](super::Sender::positions_consistent).
    pub fn positions_consistent(&self) -> bool {
        positions_consistent(&self.ep.raw)
    }

    /// Whether this handle holds an intent entry.
    pub fn has_intent(&self) -> bool {
        self.ep.intent.is_some()
    }

    /// Test hook, not part of the API: as
    /// [`Sender::abandon_push_for_tests`](super::Sender::abandon_push_for_tests).
    #[doc(hidden)]
    pub fn abandon_push_for_tests(self, take: bool) -> u64 {
        self.ep.begin();
        let pos = if take {
            let zero = vec![0u8; self.layout.size()];
            // SAFETY: one element of our own (not even read in abandon mode).
            unsafe { self.ep.push_inner(zero.as_ptr(), true) }
                .unwrap_or_else(|_| panic!("abandon_push_for_tests on a full ring"))
        } else {
            // ORDERING: Relaxed; the position to name, nothing is taken.
            let pos = self.ep.raw.hdr().enq.load(Ordering::Relaxed);
            self.ep.announce(pos);
            pos
        };
        core::mem::forget(self);
        pos
    }

    /// The capacity.
    pub fn capacity(&self) -> usize {
        self.ep.raw.cap as usize
    }

    /// Elements in the ring, approximately.
    pub fn len(&self) -> usize {
        approx_len(&self.ep.raw)
    }

    /// Whether the ring looks empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl DynReceiver {
    /// Keeps `owner` alive as long as this handle (and its clones made afterwards).
    #[must_use]
    pub fn keep_alive(mut self, owner: KeepAlive) -> Self {
        self.ep.raw.keep = Some(owner);
        self
    }

    /// The element layout.
    pub fn layout(&self) -> ElemLayout {
        self.layout
    }

    /// Pops one element into `dst` (exactly one element's bytes; any alignment), or leaves it
    /// alone if the ring is empty. Never blocks. `dst` is written only with `Ok`.
    ///
    /// # Panics
    /// If `dst.len()` is not the element size.
    pub fn pop(&self, dst: &mut [u8]) -> Result<(), PopError> {
        check_len(dst.len(), self.layout.size());
        self.ep.begin();
        // SAFETY: `dst` is valid for one element's bytes (checked) and ours alone.
        let r = unsafe { self.ep.pop_inner(dst.as_mut_ptr(), false) };
        self.ep.end();
        r.map(|_| ())
    }

    /// Pops up to `dst.len() / size` elements into `dst` (a whole number of elements); returns
    /// how many.
    ///
    /// # Panics
    /// If `dst.len()` is not a multiple of the element size.
    pub fn pop_slice(&self, dst: &mut [u8]) -> Result<usize, PopError> {
        let size = self.layout.size();
        assert!(
            dst.len() % size == 0,
            "{} bytes are not a whole number of {size}-byte elements",
            dst.len()
        );
        for (i, d) in dst.chunks_exact_mut(size).enumerate() {
            match self.pop(d) {
                Ok(()) => {}
                Err(PopError::Empty) => return Ok(i),
                Err(e) if i == 0 => return Err(e),
                Err(_) => return Ok(i),
            }
        }
        Ok(dst.len() / size)
    }

    /// As [`Receiver::can_pop`](super::Receiver::can_pop).
    pub fn can_pop(&self) -> bool {
        self.ep.can_pop()
    }

    /// As [`Receiver::recover`](super::Receiver::recover).
    pub fn recover(&self, is_alive: &dyn Fn(u64) -> bool) -> Hole {
        self.ep.recover_pop(is_alive)
    }

    /// As [`Receiver::positions_consistent`](super::Receiver::positions_consistent).
    pub fn positions_consistent(&self) -> bool {
        positions_consistent(&self.ep.raw)
    }

    /// Whether this handle holds an intent entry.
    pub fn has_intent(&self) -> bool {
        self.ep.intent.is_some()
    }

    /// Test hook, not part of the API: as
    /// [`Receiver::abandon_pop_for_tests`](super::Receiver::abandon_pop_for_tests).
    #[doc(hidden)]
    pub fn abandon_pop_for_tests(self, take: bool) -> u64 {
        self.ep.begin();
        let pos = if take {
            let mut scratch = vec![0u8; self.layout.size()];
            // SAFETY: one element of our own (untouched in abandon mode anyway).
            unsafe { self.ep.pop_inner(scratch.as_mut_ptr(), true) }
                .unwrap_or_else(|e| panic!("abandon_pop_for_tests: {e}"))
        } else {
            // ORDERING: Relaxed; the position to name, nothing is taken.
            let pos = self.ep.raw.hdr().deq.load(Ordering::Relaxed);
            self.ep.announce(pos);
            pos
        };
        core::mem::forget(self);
        pos
    }

    /// The capacity.
    pub fn capacity(&self) -> usize {
        self.ep.raw.cap as usize
    }

    /// Elements in the ring, approximately.
    pub fn len(&self) -> usize {
        approx_len(&self.ep.raw)
    }

    /// Whether the ring looks empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
