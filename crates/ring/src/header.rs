//! What every ring keeps at the start of its region: identity, geometry and role claims.
//! All fields are atomics, because the region is shared with other processes; they are written
//! once by `init` with Relaxed stores and published by whatever hands the region over (the
//! segment's `init_state` Release/Acquire, or thread spawn in tests).

use crossbeam_utils::CachePadded;

use crate::{
    error::AttachError,
    sync::{AtomicU64, Ordering},
};

/// First word of every ring: `b"SHMLRING"`.
pub const RING_MAGIC: u64 = u64::from_le_bytes(*b"SHMLRING");
/// Largest capacity accepted (2^40 elements).
pub const MAX_CAPACITY: u64 = 1 << 40;
/// Alignment every ring region must have.
pub const REGION_ALIGN: usize = 128;

/// Ring kinds, stored in the header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum Kind {
    /// Single producer, single consumer.
    Spsc = 1,
    /// Multi producer, multi consumer.
    Mpmc = 2,
    /// Single producer, single consumer, a sequence stamp beside each element.
    SpscStamped = 3,
    /// Variable-length records, any number of producers, one consumer.
    Record = 4,
    /// Fixed-size slots of byte messages, one producer, any number of readers (fan-out).
    Broadcast = 5,
    /// A latest-value region (multi-slot seqlock): any number of writers and readers.
    Latest = 6,
}

/// Identity and geometry, on its own cache lines.
#[repr(C)]
#[derive(Debug)]
pub struct Meta {
    magic: AtomicU64,
    kind: AtomicU64,
    /// Element size in the low 32 bits, alignment in the high 32.
    elem: AtomicU64,
    capacity: AtomicU64,
    /// Owner tokens of the producer and consumer roles (SPSC); 0 when free.
    claims: [AtomicU64; 2],
}

/// Which SPSC role a claim is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    Producer = 0,
    Consumer = 1,
}

pub(crate) type PaddedMeta = CachePadded<Meta>;

pub(crate) fn elem_word<T>() -> u64 {
    size_of::<T>() as u64 | ((align_of::<T>() as u64) << 32)
}

impl Meta {
    pub(crate) fn new<T>(kind: Kind, capacity: u64) -> Self {
        Self::with_elem(kind, elem_word::<T>(), capacity)
    }

    /// A meta whose element word is given (rings whose element size is chosen at run time).
    pub(crate) fn with_elem(kind: Kind, elem: u64, capacity: u64) -> Self {
        Self {
            magic: AtomicU64::new(RING_MAGIC),
            kind: AtomicU64::new(kind as u64),
            elem: AtomicU64::new(elem),
            capacity: AtomicU64::new(capacity),
            claims: [AtomicU64::new(0), AtomicU64::new(0)],
        }
    }

    /// Checks identity and geometry; returns the capacity.
    pub(crate) fn validate<T>(&self, kind: Kind) -> Result<u64, AttachError> {
        let (elem, cap) = self.validate_kind(kind)?;
        if elem != elem_word::<T>() {
            return Err(AttachError::WrongElement {
                size: elem as u32,
                align: (elem >> 32) as u32,
            });
        }
        Ok(cap)
    }

    /// Checks the magic, the kind and the capacity; returns the element word (not checked)
    /// and the capacity.
    pub(crate) fn validate_kind(&self, kind: Kind) -> Result<(u64, u64), AttachError> {
        // ORDERING: Relaxed for all four: written once before the region was handed over; the
        // hand-over (segment init_state Acquire, or thread spawn) orders them.
        if self.magic.load(Ordering::Relaxed) != RING_MAGIC {
            return Err(AttachError::NotARing);
        }
        // ORDERING: as above.
        if self.kind.load(Ordering::Relaxed) != kind as u64 {
            return Err(AttachError::WrongKind);
        }
        // ORDERING: as above.
        let elem = self.elem.load(Ordering::Relaxed);
        // ORDERING: as above.
        let cap = self.capacity.load(Ordering::Relaxed);
        check_capacity(cap, kind)?;
        Ok((elem, cap))
    }

    /// Claims a single role (SPSC producer or consumer, record consumer, broadcast producer)
    /// for `owner` (non-zero): free, or taken over if its holder is dead.
    ///
    /// A role held by a live owner is refused whoever asks, `owner` itself included: the token
    /// names an attachment (a process's handle on the segment), not an endpoint, so a second
    /// endpoint of the same process, thread or handle must not pass for the first (two
    /// producers would write the same slots). The holder frees the role when its endpoint is
    /// dropped (`release`); a holder that died is taken over, since its token fails
    /// `is_alive` (the segment's owner tags carry the slot generation, so a later process
    /// in the dead one's slot does not keep it alive).
    pub(crate) fn claim(
        &self,
        role: Role,
        owner: u64,
        is_alive: &dyn Fn(u64) -> bool,
    ) -> Result<(), AttachError> {
        debug_assert_ne!(owner, 0, "owner tokens are non-zero");
        let word = &self.claims[role as usize];
        // ORDERING: Relaxed; the claim word only excludes a second endpoint. The data the
        // previous holder published is ordered by the tail/head Release/Acquire pairs.
        let mut cur = word.load(Ordering::Relaxed);
        loop {
            if cur != 0 && is_alive(cur) {
                return Err(AttachError::RoleTaken { holder: cur });
            }
            // ORDERING: AcqRel; pairs with `release`'s Release CAS and other claimers' CAS:
            // exactly one of several racing claimers wins.
            match word.compare_exchange(cur, owner, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return Ok(()),
                Err(now) => cur = now,
            }
        }
    }

    /// Releases a role claimed by `owner` (a no-op if someone took it over).
    pub(crate) fn release(&self, role: Role, owner: u64) {
        // ORDERING: Release; pairs with the AcqRel CAS in `claim`.
        let _ = self.claims[role as usize].compare_exchange(
            owner,
            0,
            Ordering::Release,
            Ordering::Relaxed,
        );
    }

    /// The owner token holding `role`, 0 if free.
    pub(crate) fn holder(&self, role: Role) -> u64 {
        // ORDERING: Relaxed; informational.
        self.claims[role as usize].load(Ordering::Relaxed)
    }
}

/// A capacity must be a power of two in 1..=2^40; the stamped rings (MPMC, stamped SPSC) need
/// at least 2 slots, because with one slot the stamp "full at position p" (`p + 1`) equals
/// "free for position p + 1" and a second push would overwrite the first (found by the
/// proptest model).
pub(crate) fn check_capacity(cap: u64, kind: Kind) -> Result<(), AttachError> {
    let min = if kind == Kind::Spsc { 1 } else { 2 };
    if cap < min || !cap.is_power_of_two() || cap > MAX_CAPACITY {
        return Err(AttachError::BadCapacity(cap));
    }
    Ok(())
}

/// Bytes a ring needs: `offset` (header) plus `capacity` elements of `elem` bytes, or
/// `usize::MAX` if that does not fit in a `usize` (no region is that large, so the region check
/// fails). Computed without overflow: the capacity can come from a hostile header, and 2^40
/// elements of 16 MiB wrap a `u64` to 0 (finding 5 of issue 15).
pub(crate) fn required_size(offset: usize, elem: usize, capacity: u64) -> usize {
    usize::try_from(capacity)
        .ok()
        .and_then(|cap| cap.checked_mul(elem))
        .and_then(|slots| slots.checked_add(offset))
        .unwrap_or(usize::MAX)
}

/// Rounds `v` up to `align` (a power of two).
pub(crate) const fn align_up(v: usize, align: usize) -> usize {
    (v + align - 1) & !(align - 1)
}

/// The first steps of every attach: the region holds `header_end` bytes at the ring alignment,
/// starts with a ring of `kind` holding `T`s, and is large enough for that ring's capacity
/// (`required(capacity)`). Returns the header, of type `H`, and the capacity.
///
/// # Safety
/// `ptr` must be valid for reads of `len` bytes, and `H` must be `repr(C)` with a
/// [`PaddedMeta`] as its first field and only atomics after it.
pub(crate) unsafe fn open_ring<H, T>(
    ptr: *mut u8,
    len: usize,
    kind: Kind,
    header_end: usize,
    required: impl Fn(u64) -> usize,
) -> Result<(core::ptr::NonNull<H>, u64), AttachError> {
    // SAFETY: forwarded contract.
    let (hdr, _, cap) = unsafe { open_ring_raw::<H>(ptr, len, kind, header_end)? };
    // SAFETY: as above; the meta was read in bounds just now.
    let meta = unsafe { &*ptr.cast::<PaddedMeta>() };
    meta.validate::<T>(kind)?;
    check_region(ptr, len, required(cap))?;
    Ok((hdr, cap))
}

/// The first steps of an attach to a ring whose element word is checked by the caller:
/// returns the header, the element word and the capacity (the region is checked to hold
/// `header_end` bytes only).
///
/// # Safety
/// As for [`open_ring`].
pub(crate) unsafe fn open_ring_raw<H>(
    ptr: *mut u8,
    len: usize,
    kind: Kind,
    header_end: usize,
) -> Result<(core::ptr::NonNull<H>, u64, u64), AttachError> {
    // The identity first (a ring of another kind, whose header may be shorter than ours, is
    // `WrongKind`), then the room for our header.
    check_region(ptr, len, size_of::<PaddedMeta>())?;
    let hdr = core::ptr::NonNull::new(ptr.cast::<H>()).ok_or(AttachError::Misaligned)?;
    // SAFETY: in bounds and aligned (checked); the meta is H's first field (caller) and holds
    // only atomics.
    let meta = unsafe { &*ptr.cast::<PaddedMeta>() };
    let (elem, cap) = meta.validate_kind(kind)?;
    check_region(ptr, len, header_end)?;
    Ok((hdr, elem, cap))
}

/// Checks that `ptr` is aligned for elements of `T` too: the slots start at a multiple of
/// `align_of::<T>().max(128)` from `ptr`, so a `T` aligned above [`REGION_ALIGN`] is placed
/// correctly only in a region aligned to it (review rev19: a 128-aligned region, which
/// [`check_region`] accepts, put 256-aligned elements at misaligned addresses).
pub(crate) fn check_elem_align<T>(ptr: *mut u8) -> Result<(), AttachError> {
    if (ptr as usize) % align_of::<T>() != 0 {
        return Err(AttachError::Misaligned);
    }
    Ok(())
}

/// Checks that `[ptr, ptr + len)` can hold `needed` bytes at `align`.
pub(crate) fn check_region(ptr: *mut u8, len: usize, needed: usize) -> Result<(), AttachError> {
    if (ptr as usize) % REGION_ALIGN != 0 {
        return Err(AttachError::Misaligned);
    }
    if len < needed {
        return Err(AttachError::RegionTooSmall { needed, given: len });
    }
    Ok(())
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn meta() -> Meta {
        Meta::new::<u64>(Kind::Spsc, 8)
    }

    #[test]
    fn a_role_held_by_a_live_owner_is_refused_to_that_owner_too() {
        let m = meta();
        let alive = |_| true;
        m.claim(Role::Producer, 7, &alive).unwrap();
        // A second endpoint under the same token (same process or handle) is refused.
        assert_eq!(
            m.claim(Role::Producer, 7, &alive),
            Err(AttachError::RoleTaken { holder: 7 })
        );
        assert_eq!(
            m.claim(Role::Producer, 8, &alive),
            Err(AttachError::RoleTaken { holder: 7 })
        );
        assert_eq!(m.holder(Role::Producer), 7);
        // The other role is a separate claim.
        m.claim(Role::Consumer, 7, &alive).unwrap();
        assert_eq!(
            m.claim(Role::Consumer, 7, &alive),
            Err(AttachError::RoleTaken { holder: 7 })
        );
    }

    #[test]
    fn a_released_role_is_claimed_again_and_a_dead_one_taken_over() {
        let m = meta();
        let alive = |_| true;
        m.claim(Role::Producer, 7, &alive).unwrap();
        m.release(Role::Producer, 7);
        assert_eq!(m.holder(Role::Producer), 0);
        m.claim(Role::Producer, 7, &alive).unwrap();
        // Its holder dead (another generation of the slot): taken over by anyone.
        m.claim(Role::Producer, 9, &|t| t != 7).unwrap();
        assert_eq!(m.holder(Role::Producer), 9);
        // The dead holder's release does not free its successor's claim.
        m.release(Role::Producer, 7);
        assert_eq!(m.holder(Role::Producer), 9);
        // A dead claim under the asker's own token (nothing alive holds it) is taken too.
        m.claim(Role::Consumer, 5, &alive).unwrap();
        m.claim(Role::Consumer, 5, &|_| false).unwrap();
        assert_eq!(m.holder(Role::Consumer), 5);
    }
}
