//! Element layouts chosen at run time (a C program knows its element's size and alignment only
//! then): [`ElemLayout`], checked once, from which the run-time rings ([`DynSpscRing`](crate::DynSpscRing),
//! [`DynMpmcRing`](crate::DynMpmcRing)) compute their geometry. The bytes in shared memory are
//! those of the typed ring of a `T` with the same size and alignment: the element word in the
//! ring's header is `size | align << 32` either way, so either side may create the ring and
//! either side may open it.

use crate::{error::AttachError, header::REGION_ALIGN};

/// A checked element layout: `size` bytes (at least 1, a multiple of `align`, below 2^32) at
/// `align` (a power of two, at most 128, the ring region's alignment).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ElemLayout {
    size: usize,
    align: usize,
}

/// Largest element size a run-time layout accepts (the ring header keeps it in 32 bits).
pub const MAX_ELEM_SIZE: usize = u32::MAX as usize;

impl ElemLayout {
    /// Checks `size` and `align`; [`AttachError::BadElement`] says what is wrong.
    pub const fn new(size: usize, align: usize) -> Result<Self, AttachError> {
        if align == 0
            || !align.is_power_of_two()
            || align > REGION_ALIGN
            || size == 0
            || size > MAX_ELEM_SIZE
            || size % align != 0
        {
            return Err(AttachError::BadElement { size, align });
        }
        Ok(Self { size, align })
    }

    /// The layout of `T` (for comparing with a typed ring).
    ///
    /// # Panics
    /// If `T` is zero-sized or aligned above 128 (no run-time ring holds it).
    pub const fn of<T>() -> Self {
        match Self::new(size_of::<T>(), align_of::<T>()) {
            Ok(l) => l,
            Err(_) => panic!("no run-time layout for this type"),
        }
    }

    /// Element size in bytes.
    pub const fn size(self) -> usize {
        self.size
    }

    /// Element alignment in bytes.
    pub const fn align(self) -> usize {
        self.align
    }

    /// The element word a ring header stores (`Meta`): as the typed rings compute it.
    pub(crate) const fn word(self) -> u64 {
        self.size as u64 | ((self.align as u64) << 32)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn layouts_are_checked() {
        #[repr(C)]
        #[derive(Clone, Copy)]
        struct Quote {
            a: u64,
            b: u32,
            c: u64,
        }
        assert!(ElemLayout::new(24, 8).is_ok());
        assert!(ElemLayout::new(3, 1).is_ok());
        for (s, a) in [(0, 1), (3, 2), (8, 3), (8, 0), (256, 256), (12, 8)] {
            assert_eq!(
                ElemLayout::new(s, a),
                Err(AttachError::BadElement { size: s, align: a }),
                "{s}/{a}"
            );
        }
        assert_eq!(ElemLayout::of::<Quote>(), ElemLayout::new(24, 8).unwrap());
    }
}
