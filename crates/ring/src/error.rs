//! One small error enum per operation. Hot-path errors are `Copy` (or carry back the value) and
//! never allocate, not even in `Display`.

use core::fmt;

/// Why [`init`](crate::spsc::SpscRing::init) or an attach failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AttachError {
    /// The region is too small for the header and `capacity` elements.
    RegionTooSmall {
        /// Bytes needed.
        needed: usize,
        /// Bytes given.
        given: usize,
    },
    /// The region is not aligned to the ring's alignment (128 bytes or the element's).
    Misaligned,
    /// The capacity is zero, not a power of two, or too large (MPMC: also 1).
    BadCapacity(u64),
    /// The region does not hold a ring (wrong magic).
    NotARing,
    /// It holds another kind of ring (SPSC vs MPMC).
    WrongKind,
    /// It holds elements of another size or alignment.
    WrongElement {
        /// Size recorded in the ring.
        size: u32,
        /// Alignment recorded in the ring.
        align: u32,
    },
    /// A run-time element layout is invalid: size 0 or not a multiple of the alignment, or
    /// the alignment not a power of two in 1..=128 (`ElemLayout::new`).
    BadElement {
        /// Size asked for.
        size: usize,
        /// Alignment asked for.
        align: usize,
    },
    /// Positions or other fields are out of range: a corrupt or hostile ring.
    Corrupt(&'static str),
    /// A live endpoint (of another process, or of this one) holds this single role (SPSC
    /// producer or consumer, record consumer, broadcast producer).
    RoleTaken {
        /// The holder's owner token.
        holder: u64,
    },
}

impl fmt::Display for AttachError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::RegionTooSmall { needed, given } => write!(
                f,
                "region of {given} bytes is too small for this ring ({needed} needed); make the region larger or the capacity smaller"
            ),
            Self::Misaligned => f.write_str(
                "region is not aligned for this ring (128 bytes, or the element type's alignment if larger); shared-memory regions are 128-byte aligned, so use an element type aligned to at most 128 bytes",
            ),
            // Each kind's rule: this error does not know which ring refused.
            Self::BadCapacity(c) => write!(
                f,
                "capacity {c} is out of range for this ring: a power of two up to 2^40 and at least 1 (SPSC), 2 (MPMC, stamped SPSC, broadcast) or 256 bytes (byte rings)"
            ),
            Self::NotARing => f.write_str("region does not hold a shmlane ring (bad magic)"),
            Self::WrongKind => f.write_str("region holds another kind of ring"),
            Self::WrongElement { size, align } => write!(
                f,
                "ring holds elements of size {size} and alignment {align}; both sides must use the same type"
            ),
            Self::BadElement { size, align } => write!(
                f,
                "element layout of size {size} and alignment {align} is invalid: the alignment must be a power of two up to 128 and the size a non-zero multiple of it (below 2^32)"
            ),
            Self::Corrupt(why) => write!(f, "ring is corrupt ({why})"),
            Self::RoleTaken { holder } => write!(
                f,
                "this ring role is held by a live endpoint (owner {holder:#x}, maybe in this very process or handle): a single role (SPSC producer or consumer, byte receiver, broadcast publisher) has one endpoint at a time; drop the other endpoint first, or use an MPMC channel for several"
            ),
        }
    }
}

impl std::error::Error for AttachError {}

/// Why a push failed; the value comes back.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum PushError<T> {
    /// The ring is full.
    Full(T),
    /// The peer published an impossible position (corrupt or hostile ring).
    Corrupt(T),
}

impl<T> PushError<T> {
    /// The value that was not pushed.
    pub fn into_inner(self) -> T {
        match self {
            Self::Full(v) | Self::Corrupt(v) => v,
        }
    }
}

impl<T> fmt::Debug for PushError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full(_) => f.write_str("Full(..)"),
            Self::Corrupt(_) => f.write_str("Corrupt(..)"),
        }
    }
}

impl<T> fmt::Display for PushError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full(_) => f.write_str("ring is full"),
            Self::Corrupt(_) => {
                f.write_str("ring is corrupt: the peer published an impossible position")
            }
        }
    }
}

impl<T> std::error::Error for PushError<T> {}

/// Why a pop failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PopError {
    /// The ring is empty.
    Empty,
    /// The peer published an impossible position (corrupt or hostile ring).
    Corrupt,
}

impl fmt::Display for PopError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("ring is empty"),
            Self::Corrupt => {
                f.write_str("ring is corrupt: the peer published an impossible position")
            }
        }
    }
}

impl std::error::Error for PopError {}

/// Why a chunk could not be had.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkError {
    /// Fewer slots (to write) or elements (to read) are available than asked for; the number
    /// available is given.
    TooFewSlots(usize),
    /// The peer published an impossible position.
    Corrupt,
}

impl fmt::Display for ChunkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooFewSlots(n) => write!(f, "only {n} slots available"),
            Self::Corrupt => {
                f.write_str("ring is corrupt: the peer published an impossible position")
            }
        }
    }
}

impl std::error::Error for ChunkError {}

#[cfg(test)]
mod tests {
    use super::AttachError;

    /// It said "a power of two in 1..=2^40" of a byte ring, whose minimum is 256 (issue 17).
    #[test]
    fn a_bad_capacity_states_each_kinds_rule() {
        let m = AttachError::BadCapacity(100).to_string();
        assert!(
            m.contains("256 bytes (byte rings)") && m.contains("2 (MPMC") && m.contains("1 (SPSC)"),
            "{m}"
        );
    }
}
