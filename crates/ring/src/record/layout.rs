//! The record ring's memory: the header words of a record, the ring header, the data words,
//! and `Raw`, a handle's checked geometry with the accesses to the data area.

use super::{
    AtomicU64, CachePadded, INTENTS, Intent, KeepAlive, NonNull, Ordering, PaddedMeta,
    compiler_fence,
};

/// Bytes of a record header.
pub const RECORD_HEADER: usize = 8;

/// The largest payload of any record ring, 4 GiB less 8 bytes: a header holds the length in 32
/// bits, and the padding a record leaves when it is skipped (its length rounded up to 8) must fit
/// there too. A ring's own maximum ([`RecordRing::max_record`](super::RecordRing::max_record)) is an eighth of its capacity less
/// the header, capped at this, so rings of 2^36 bytes and more take records up to this size.
pub const MAX_RECORD: usize = (1 << 32) - 8;

/// The length field of a header word.
pub(super) const LEN_MASK: u64 = 0xffff_ffff;
const _: () = assert!(MAX_RECORD as u64 <= LEN_MASK && MAX_RECORD % 8 == 0);

pub(super) const STATE_SHIFT: u32 = 32;
pub(super) const EMPTY: u64 = 0;
pub(super) const CLAIMED: u64 = 1;
pub(super) const COMMITTED: u64 = 2;
pub(super) const PADDING: u64 = 3;
pub(super) const SKIP_BIT: u64 = 1 << 34;
/// On padding the consumer put over a claim whose producer may still write into it (a forced
/// skip): the space is not given back until the producer lets it go (clears this bit) or is
/// dead. See "Fences" in the module docs.
pub(super) const FENCE_BIT: u64 = 1 << 35;
/// On a fence over a claim whose header was never written: no owner in the header, the claim
/// intents say whether its producer may still write.
pub(super) const NO_OWNER_BIT: u64 = 1 << 36;
pub(super) const RESERVED: u64 = 0x3f << 34 & !SKIP_BIT & !FENCE_BIT & !NO_OWNER_BIT;
pub(super) const OWNER_SHIFT: u32 = 40;
/// Largest owner tag a header can carry.
pub const MAX_OWNER_TAG: u32 = (1 << 24) - 1;

pub(super) fn word(len: u64, state: u64, owner: u32) -> u64 {
    debug_assert!(
        len <= MAX_RECORD as u64,
        "record length {len} beyond the header's field"
    );
    len | (state << STATE_SHIFT) | (u64::from(owner) << OWNER_SHIFT)
}

pub(super) fn align8(v: u64) -> u64 {
    (v + 7) & !7
}

#[repr(C)]
pub(super) struct Header {
    pub(super) meta: PaddedMeta,
    pub(super) tail: CachePadded<AtomicU64>,
    pub(super) head: CachePadded<AtomicU64>,
    pub(super) skipped: CachePadded<AtomicU64>,
    /// The consumer's read position when it is ahead of `head` (records read past a fence;
    /// see "Fences"), for a consumer that takes over.
    pub(super) read: CachePadded<AtomicU64>,
    pub(super) intents: [CachePadded<Intent>; INTENTS],
}

/// One 8-byte word of the data area. Normally a plain `AtomicU64` (headers are accessed
/// atomically, payload bytes with plain copies, ordered by the header protocol). Under loom the
/// payload half is a separate `UnsafeCell`, so loom checks payload accesses for races.
#[cfg(not(loom))]
pub(super) type Word = AtomicU64;

#[cfg(loom)]
pub(super) struct Word {
    pub(super) hdr: AtomicU64,
    pub(super) val: crate::sync::UnsafeCell<u64>,
}

#[cfg(loom)]
impl Word {
    pub(super) fn new() -> Self {
        Self {
            hdr: AtomicU64::new(0),
            val: crate::sync::UnsafeCell::new(0),
        }
    }
}

pub(super) fn data_offset() -> usize {
    size_of::<Header>()
}

pub(super) struct Raw {
    pub(super) hdr: NonNull<Header>,
    pub(super) data: NonNull<Word>,
    pub(super) cap: u64,
    pub(super) mask: u64,
    pub(super) max: u64,
    pub(super) keep: Option<KeepAlive>,
}

impl Clone for Raw {
    fn clone(&self) -> Self {
        Self {
            hdr: self.hdr,
            data: self.data,
            cap: self.cap,
            mask: self.mask,
            max: self.max,
            keep: self.keep.clone(),
        }
    }
}

impl Raw {
    pub(super) fn hdr(&self) -> &Header {
        // SAFETY: valid for the handle's lifetime (constructor contract); atomics only.
        unsafe { self.hdr.as_ref() }
    }

    /// The most bytes one claim takes (a record of the ring's maximum and its header; padding
    /// claims are shorter): what a skip may cover at once, so a padding length always fits
    /// the header's length field.
    pub(super) fn largest_claim(&self) -> u64 {
        self.max + RECORD_HEADER as u64
    }

    pub(super) fn word(&self, off: u64) -> &Word {
        debug_assert!(off % 8 == 0 && off < self.cap);
        // SAFETY: `off < cap` (callers pass masked, 8-aligned offsets); the data area holds
        // cap / 8 words (checked at attach).
        unsafe { self.data.add((off / 8) as usize).as_ref() }
    }

    /// The header word at byte offset `off` (8-aligned, `< cap`).
    pub(super) fn header(&self, off: u64) -> &AtomicU64 {
        #[cfg(not(loom))]
        {
            self.word(off)
        }
        #[cfg(loom)]
        {
            &self.word(off).hdr
        }
    }

    /// Copies `src` into the data area at byte offset `off`; `off + src.len()` stays inside
    /// one record (checked by the callers).
    pub(super) fn write(&self, off: u64, src: &[u8]) {
        debug_assert!(off + src.len() as u64 <= self.cap);
        #[cfg(not(loom))]
        // SAFETY: in bounds (callers); the bytes belong to a claim only its producer writes,
        // and the consumer reads them only after the commit (Release/Acquire on the header).
        unsafe {
            core::ptr::copy_nonoverlapping(
                src.as_ptr(),
                self.data.as_ptr().cast::<u8>().add(off as usize),
                src.len(),
            );
        }
        #[cfg(loom)]
        for (i, chunk) in src.chunks(8).enumerate() {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            let w = self.word(off + i as u64 * 8);
            // SAFETY: as above; loom checks it.
            w.val.with_mut(|p| unsafe { *p = u64::from_le_bytes(b) });
        }
    }

    /// Copies from the data area at byte offset `off` into `dst`.
    pub(super) fn read(&self, off: u64, dst: &mut [u8]) {
        debug_assert!(off + dst.len() as u64 <= self.cap);
        #[cfg(not(loom))]
        // SAFETY: in bounds (validated by the consumer); the record is committed (Acquire).
        unsafe {
            core::ptr::copy_nonoverlapping(
                self.data.as_ptr().cast::<u8>().add(off as usize),
                dst.as_mut_ptr(),
                dst.len(),
            );
        }
        #[cfg(loom)]
        for (i, chunk) in dst.chunks_mut(8).enumerate() {
            let w = self.word(off + i as u64 * 8);
            // SAFETY: as above; loom checks it.
            let v = w.val.with(|p| unsafe { *p });
            chunk.copy_from_slice(&v.to_le_bytes()[..chunk.len()]);
        }
    }

    /// Zeroes the record or padding `[off, off + len)` (8-aligned, inside the buffer, `len` at
    /// most [`largest_claim`](Self::largest_claim)): the consumer, before it gives the space
    /// back.
    ///
    /// In an order a consumer that takes over from one killed part-way through can follow
    /// (nothing is published until `head` moves): first the header becomes padding over the
    /// whole record, then the payload is zeroed, then the header. Wherever the kill falls, the
    /// record is whole, or padding of its exact size (skipped: a record being given back is
    /// never delivered torn), or all zero (a forced skip scans zeroes up to the next header:
    /// exactly this record). Zeroed from the header on, a kill part-way left an empty header
    /// over a partly zeroed payload, and the successor's forced skip ended in the middle of
    /// the payload (CI's torture: "channel ring is corrupt (reserved header bits set)").
    pub(super) fn zero(&self, off: u64, len: u64) {
        self.zero_until(off, len, u64::MAX);
    }

    /// [`zero`](Self::zero), stopped after `stores` of its 8-byte stores (the header, each
    /// payload word in order, the header again), as by a kill; `u64::MAX`: all of them.
    pub(super) fn zero_until(&self, off: u64, len: u64, stores: u64) {
        debug_assert!(len >= RECORD_HEADER as u64 && len % 8 == 0);
        if stores == 0 {
            return;
        }
        let hdr = self.header(off);
        // ORDERING: Relaxed; no other live process reads the space before `head` moves (the
        // consumer's Release store of it orders all of this before the producers' reuse). The
        // order of these stores matters only to a consumer that takes over after we were
        // killed, which reads them after our death: the compiler fences keep program order.
        hdr.store(
            word(len - RECORD_HEADER as u64, PADDING, 0),
            Ordering::Relaxed,
        );
        compiler_fence(Ordering::SeqCst);
        let body = (len - RECORD_HEADER as u64).min((stores - 1).saturating_mul(8));
        let payload = off + RECORD_HEADER as u64;
        #[cfg(not(loom))]
        // SAFETY: in bounds (validated); the space is the consumer's until it advances `head`
        // (Release), which orders these writes before any producer's next claim of it.
        unsafe {
            core::ptr::write_bytes(
                self.data.as_ptr().cast::<u8>().add(payload as usize),
                0,
                body as usize,
            );
        }
        #[cfg(loom)]
        for i in (0..body).step_by(8) {
            let w = self.word(payload + i);
            // ORDERING: Relaxed; ordered by the consumer's Release store of `head`.
            w.hdr.store(0, Ordering::Relaxed);
            // SAFETY: as above.
            w.val.with_mut(|p| unsafe { *p = 0 });
        }
        compiler_fence(Ordering::SeqCst);
        if stores - 1 > (len - RECORD_HEADER as u64) / 8 {
            // ORDERING: Relaxed; as the first store (and under loom the header word's payload
            // half is never written: zero already).
            hdr.store(0, Ordering::Relaxed);
        }
    }
}
