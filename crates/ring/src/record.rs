//! Variable-length records in a byte ring: any number of producers (MPSC, usable as SPSC), one
//! consumer, zero-copy claim/commit, and a crashed producer that blocks nobody (a stalled one
//! blocks no reader; it holds its space, see "Fences").
//!
//! ```text
//! CachePadded<Meta>        magic, kind = 4, elem = u64 words, capacity in bytes, role claims
//! CachePadded<AtomicU64>   tail: next byte position to claim (producers CAS it)
//! CachePadded<AtomicU64>   head: the space before it is given back (consumer; producers read it)
//! CachePadded<AtomicU64>   skipped: records the consumer turned into padding (unblocked)
//! CachePadded<AtomicU64>   read: the consumer's read position while a fence holds `head` back
//! [CachePadded<Intent>; 32] claim intents: per attached producer, owner + the claim it is making
//! [u64; capacity / 8]      data: records, each an 8-byte header and the payload, 8-aligned
//! ```
//!
//! A record's header word: payload length in bits 0..32 (at most [`MAX_RECORD`], whatever the
//! capacity: a longer length would run into the state bits), state in bits 32..34 (0 empty, 1
//! claimed, 2 committed, 3 padding), bit 34 set on padding that replaced a record (aborted or
//! unblocked, counted in `skipped`), bit 35 on padding that is a fence, bit 36 on a fence over a
//! claim without header, bits 40..64 the producer's owner tag (for the liveness check). A record
//! takes `8 + len` bytes rounded up to 8 and never wraps: a producer whose record does not fit
//! before the end first claims the rest of the buffer as padding, then claims again.
//!
//! Protocol. A producer claims space with a CAS on `tail` (after checking it against its cached
//! `head`), writes the claimed header with a CAS from empty (state 1, the length and its owner
//! tag; the CAS fails only if a timed-out consumer already skipped the space), writes the
//! payload, then commits with a CAS of the header from claimed to committed (Release). The
//! consumer reads the header at `head` (Acquire): committed → the record is delivered; padding
//! → skipped; claimed, or empty while `tail` is ahead → pending (a producer is between its claim
//! and its commit). After reading, the consumer zeroes the record's bytes and advances `head`
//! (Release): free space is always zero, so an empty header means "not written yet".
//!
//! Unblocking (Agrona's idea): if the producer at `head` is dead (its owner tag fails the
//! liveness check) or has been pending longer than the caller's timeout, the consumer replaces
//! the claimed header with padding (a CAS, so a commit racing with it either wins or fails with
//! [`CommitError::Unblocked`]). A claim whose header was never written (the producer died right
//! after its CAS on `tail`) has no owner in its header; the claim intents name it instead. Each
//! producer holds one intent entry (taken at attach: a free one, or one whose owner is dead and
//! whose intent the consumer has passed) and, before its CAS on `tail`, stores there the
//! position and size it is about to claim; it clears the intent once the header is written or
//! the CAS lost. The tail CAS is a Release and `unblock` loads the tail with Acquire, so a
//! consumer that sees the tail past its position sees the intent of whoever claimed it. If every
//! producer whose intent names the position is dead and they agree on the size, the claim is
//! padded at once, exactly that size; otherwise it waits for the timeout, after which it is
//! padded up to the next non-zero header, `tail`, the end of the buffer, or the next position
//! another producer's intent names (a claim whose header is about to be written), whichever
//! comes first. Only a dead claimer may be skipped early: a live one descheduled before its
//! header CAS would see the header empty again once the consumer has zeroed the padding, and
//! write into space given back. Its own intent, visible as said, keeps the consumer waiting
//! (loom model `record_live_claim_is_not_taken_for_a_dead_intent`).
//!
//! Fences. A forced skip is of a producer that may be alive and resume, mid-copy or filling in
//! place, writing into the claim's space. So the padding the consumer puts over a live
//! producer's claim is a fence: the consumer reads on past it, but gives no space back from there
//! on (`head`, the release position the producers see, stays; the read position moves on, and is
//! published in `read` for a consumer that takes over) until the fence lifts: the producer lets
//! go (a failed `commit`, an abort or a drop clears the fence bit with a Release CAS after its
//! last write), or it is dead ([`RecordConsumer::release_fenced`]), or, over a claim without
//! header, no live intent names it any more (the claimer's header CAS failed on the padding).
//! Until then the producers see the ring fuller: a stalled producer costs back-pressure, never a
//! torn record.
//!
//! Everything read from shared memory is validated: a header with reserved bits set, an
//! impossible state, a length beyond the maximum or running past the end of the buffer, a
//! misaligned or out-of-range position: [`ReadError::Corrupt`], never an out-of-bounds access.

use core::marker::PhantomData;
use core::ptr::NonNull;

use crossbeam_utils::CachePadded;

use crate::{
    KeepAlive,
    error::AttachError,
    header::{Kind, Meta, PaddedMeta, Role, check_region, open_ring},
    sync::{
        AtomicU64, Ordering, RECORD_COMMIT, RECORD_FENCE_RELEASE, RECORD_HDR_LOAD,
        RECORD_HEAD_LOAD, RECORD_HEAD_STORE, RECORD_INTENT_CLEAR, RECORD_TAIL_CAS, spin_hint,
    },
};

/// Consecutive inconsistent position readings (tail more than a capacity past head) a producer
/// retries before it calls the ring corrupt: a stale tail read by a descheduled producer looks
/// the same for a moment, a hostile ring looks the same forever.
const INCONSISTENT_LIMIT: u32 = 1 << 16;

/// Bytes of a record header.
pub const RECORD_HEADER: usize = 8;

/// The largest payload of any record ring, 4 GiB less 8 bytes: a header holds the length in 32
/// bits, and the padding a record leaves when it is skipped (its length rounded up to 8) must fit
/// there too. A ring's own maximum ([`RecordRing::max_record`]) is an eighth of its capacity less
/// the header, capped at this, so rings of 2^36 bytes and more take records up to this size.
pub const MAX_RECORD: usize = (1 << 32) - 8;

/// The length field of a header word.
const LEN_MASK: u64 = 0xffff_ffff;
const _: () = assert!(MAX_RECORD as u64 <= LEN_MASK && MAX_RECORD % 8 == 0);

const STATE_SHIFT: u32 = 32;
const EMPTY: u64 = 0;
const CLAIMED: u64 = 1;
const COMMITTED: u64 = 2;
const PADDING: u64 = 3;
const SKIP_BIT: u64 = 1 << 34;
/// On padding the consumer put over a claim whose producer may still write into it (a forced
/// skip): the space is not given back until the producer lets it go (clears this bit) or is
/// dead. See "Fences" in the module docs.
const FENCE_BIT: u64 = 1 << 35;
/// On a fence over a claim whose header was never written: no owner in the header, the claim
/// intents say whether its producer may still write.
const NO_OWNER_BIT: u64 = 1 << 36;
const RESERVED: u64 = 0x3f << 34 & !SKIP_BIT & !FENCE_BIT & !NO_OWNER_BIT;
const OWNER_SHIFT: u32 = 40;
/// Largest owner tag a header can carry.
pub const MAX_OWNER_TAG: u32 = (1 << 24) - 1;

fn word(len: u64, state: u64, owner: u32) -> u64 {
    debug_assert!(
        len <= MAX_RECORD as u64,
        "record length {len} beyond the header's field"
    );
    len | (state << STATE_SHIFT) | (u64::from(owner) << OWNER_SHIFT)
}

fn align8(v: u64) -> u64 {
    (v + 7) & !7
}

/// Claim-intent entries in a ring: producers beyond this many attached at once still work, but
/// a claim one of them abandons before writing its header is skipped only at the timeout.
#[cfg(not(loom))]
pub const INTENTS: usize = 32;
/// Claim-intent entries in a ring (fewer under loom: every atomic is a modelled object).
#[cfg(loom)]
pub const INTENTS: usize = 3;
/// An intent word with no claim in progress.
const IDLE: u64 = 0;
const INTENT_VALID: u64 = 1 << 63;
const INTENT_TO_END: u64 = 1 << 62;
const INTENT_SIZE_SHIFT: u32 = 32;
/// Size field (in words) of an intent: 30 bits.
const INTENT_SIZE_MAX: u64 = (1 << 30) - 1;
/// Intents name positions modulo 2^35 bytes (32 bits of words): rings of 2^34 bytes or more
/// leave header-less claims to the timeout.
const INTENT_MAX_CAPACITY: u64 = 1 << 34;

/// How an intent word names a position: its word index modulo 2^32 (the word's low 32 bits).
fn intent_pos(pos: u64) -> u64 {
    (pos / 8) & 0xffff_ffff
}

/// The intent word for a claim of `size` bytes at position `pos`: [`intent_pos`], and the size
/// in words, or "to the end of the buffer" (a padding claim).
fn intent_word(pos: u64, size: u64, to_end: bool) -> u64 {
    let size_field = if to_end {
        INTENT_TO_END
    } else {
        (size / 8).min(INTENT_SIZE_MAX) << INTENT_SIZE_SHIFT
    };
    INTENT_VALID | size_field | intent_pos(pos)
}

fn intent_names(w: u64, pos: u64) -> bool {
    w & INTENT_VALID != 0 && (w & 0xffff_ffff) == intent_pos(pos)
}

/// The size an intent word claims at buffer offset `off` (not validated).
fn intent_size(w: u64, off: u64, cap: u64) -> u64 {
    if w & INTENT_TO_END != 0 {
        cap - off
    } else {
        ((w >> INTENT_SIZE_SHIFT) & INTENT_SIZE_MAX) * 8
    }
}

/// One producer's claim intent, on its own cache line.
#[repr(C)]
struct Intent {
    /// 0 when free; otherwise the holder's owner tag + 1.
    owner: AtomicU64,
    /// `IDLE`, or the claim the holder is making (`intent_word`).
    claim: AtomicU64,
}

#[repr(C)]
struct Header {
    meta: PaddedMeta,
    tail: CachePadded<AtomicU64>,
    head: CachePadded<AtomicU64>,
    skipped: CachePadded<AtomicU64>,
    /// The consumer's read position when it is ahead of `head` (records read past a fence;
    /// see "Fences"), for a consumer that takes over.
    read: CachePadded<AtomicU64>,
    intents: [CachePadded<Intent>; INTENTS],
}

/// One 8-byte word of the data area. Normally a plain `AtomicU64` (headers are accessed
/// atomically, payload bytes with plain copies, ordered by the header protocol). Under loom the
/// payload half is a separate `UnsafeCell`, so loom checks payload accesses for races.
#[cfg(not(loom))]
type Word = AtomicU64;

#[cfg(loom)]
struct Word {
    hdr: AtomicU64,
    val: crate::sync::UnsafeCell<u64>,
}

#[cfg(loom)]
impl Word {
    fn new() -> Self {
        Self {
            hdr: AtomicU64::new(0),
            val: crate::sync::UnsafeCell::new(0),
        }
    }
}

fn data_offset() -> usize {
    size_of::<Header>()
}

/// Namespace for laying out, initialising and attaching to record rings.
#[derive(Debug)]
pub struct RecordRing(());

/// Why a claim failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClaimError {
    /// The payload is longer than the ring's maximum record.
    BadLength {
        /// Bytes asked for.
        len: usize,
        /// The ring's largest payload.
        max: usize,
    },
    /// Not enough free space now.
    Full,
    /// The ring's positions are impossible (corrupt or hostile ring).
    Corrupt,
}

impl core::fmt::Display for ClaimError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::BadLength { len, max } => write!(
                f,
                "record of {len} bytes: this ring takes records of 0 to {max} bytes (an eighth of its capacity less the 8-byte header, and never more than 4 GiB - 8); split the message, or use a ring of at least 8 times its length"
            ),
            Self::Full => f.write_str("record ring is full"),
            Self::Corrupt => f.write_str("record ring is corrupt: impossible positions"),
        }
    }
}

impl std::error::Error for ClaimError {}

/// Why a commit failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommitError {
    /// The consumer gave up on this record (the producer was seen dead or stalled past the
    /// timeout) and skipped it; the record was not delivered.
    Unblocked,
}

impl core::fmt::Display for CommitError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("the consumer skipped this record (the producer stalled past the unblock timeout); send it again")
    }
}

impl std::error::Error for CommitError {}

/// Why a read found no record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadError {
    /// Nothing claimed after the consumer's position.
    Empty,
    /// The next record is claimed but not committed yet (or its header is not written yet).
    Pending,
    /// What the ring holds is impossible (corrupt or hostile ring).
    Corrupt(&'static str),
}

impl core::fmt::Display for ReadError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Empty => f.write_str("record ring is empty"),
            Self::Pending => f.write_str("the next record is claimed but not committed yet"),
            Self::Corrupt(why) => write!(f, "record ring is corrupt ({why})"),
        }
    }
}

impl std::error::Error for ReadError {}

struct Raw {
    hdr: NonNull<Header>,
    data: NonNull<Word>,
    cap: u64,
    mask: u64,
    max: u64,
    keep: Option<KeepAlive>,
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
    fn hdr(&self) -> &Header {
        // SAFETY: valid for the handle's lifetime (constructor contract); atomics only.
        unsafe { self.hdr.as_ref() }
    }

    /// Takes a claim-intent entry for `owner`: a free one, or (given `is_alive`) one whose
    /// holder is dead and whose intent, if any, lies behind the consumer.
    fn take_intent(&self, owner: u32, is_alive: Option<&dyn Fn(u32) -> bool>) -> Option<usize> {
        if self.cap >= INTENT_MAX_CAPACITY {
            return None;
        }
        let h = self.hdr();
        let mine = u64::from(owner) + 1;
        for pass in [false, true] {
            if pass && is_alive.is_none() {
                break;
            }
            for (i, e) in h.intents.iter().enumerate() {
                // ORDERING: Relaxed; a guess, the CAS below decides.
                let cur = e.owner.load(Ordering::Relaxed);
                let takeable = if pass {
                    cur != 0
                        && cur - 1 <= u64::from(MAX_OWNER_TAG)
                        && is_alive.is_some_and(|alive| !alive((cur - 1) as u32))
                        && !self.intent_pending(e)
                } else {
                    cur == 0
                };
                // ORDERING: Acquire on success; pairs with the Release store of a dropped
                // holder (its last intent store comes before ours). Relaxed on failure.
                if takeable
                    && e.owner
                        .compare_exchange(cur, mine, Ordering::Acquire, Ordering::Relaxed)
                        .is_ok()
                {
                    // ORDERING: Relaxed; published by our first tail CAS (Release).
                    e.claim.store(IDLE, Ordering::Relaxed);
                    return Some(i);
                }
            }
        }
        None
    }

    /// Whether an entry's intent may name a claim the consumer has not passed yet.
    fn intent_pending(&self, e: &Intent) -> bool {
        // ORDERING: Relaxed; the holder is dead, its last intent is what it is.
        let w = e.claim.load(Ordering::Relaxed);
        if w & INTENT_VALID == 0 {
            return false;
        }
        // ORDERING: Acquire; pairs with the consumer's Release store of `head`.
        let head = self.hdr().head.load(Ordering::Acquire);
        let ahead = (w & 0xffff_ffff).wrapping_sub(intent_pos(head)) & 0xffff_ffff;
        ahead * 8 < self.cap
    }

    /// The most bytes one claim takes (a record of the ring's maximum and its header; padding
    /// claims are shorter): what a skip may cover at once, so a padding length always fits
    /// the header's length field.
    fn largest_claim(&self) -> u64 {
        self.max + RECORD_HEADER as u64
    }

    fn word(&self, off: u64) -> &Word {
        debug_assert!(off % 8 == 0 && off < self.cap);
        // SAFETY: `off < cap` (callers pass masked, 8-aligned offsets); the data area holds
        // cap / 8 words (checked at attach).
        unsafe { self.data.add((off / 8) as usize).as_ref() }
    }

    /// The header word at byte offset `off` (8-aligned, `< cap`).
    fn header(&self, off: u64) -> &AtomicU64 {
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
    fn write(&self, off: u64, src: &[u8]) {
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
    fn read(&self, off: u64, dst: &mut [u8]) {
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

    /// Zeroes `[off, off + len)` (8-aligned, inside the buffer): the consumer, before it gives
    /// the space back.
    fn zero(&self, off: u64, len: u64) {
        #[cfg(not(loom))]
        // SAFETY: in bounds (validated); the space is the consumer's until it advances `head`
        // (Release), which orders these writes before any producer's next claim of it.
        unsafe {
            core::ptr::write_bytes(
                self.data.as_ptr().cast::<u8>().add(off as usize),
                0,
                len as usize,
            );
        }
        #[cfg(loom)]
        for i in (0..len).step_by(8) {
            let w = self.word(off + i);
            // ORDERING: Relaxed; ordered by the consumer's Release store of `head`.
            w.hdr.store(0, Ordering::Relaxed);
            // SAFETY: as above.
            w.val.with_mut(|p| unsafe { *p = 0 });
        }
    }
}

impl RecordRing {
    /// Bytes a region needs for a ring of `capacity` data bytes.
    pub fn required_size(capacity: u64) -> usize {
        data_offset() + capacity as usize / 8 * size_of::<Word>()
    }

    /// The largest payload a ring of `capacity` bytes takes: an eighth of it, less the header,
    /// and at most [`MAX_RECORD`] (rings of 2^36 bytes or more); 0 for capacities too small
    /// for any ring.
    pub fn max_record(capacity: u64) -> usize {
        usize::try_from(capacity / 8)
            .unwrap_or(usize::MAX)
            .saturating_sub(RECORD_HEADER)
            .min(MAX_RECORD)
    }

    fn check_capacity(cap: u64) -> Result<(), AttachError> {
        if !(256..=crate::MAX_CAPACITY).contains(&cap) || !cap.is_power_of_two() {
            return Err(AttachError::BadCapacity(cap));
        }
        Ok(())
    }

    /// Initialises an empty ring of `capacity` data bytes (a power of two, at least 256) whose
    /// first position is `start` (a multiple of 8; tests use values near `u64::MAX`).
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
        Self::check_capacity(capacity)?;
        if start % 8 != 0 {
            return Err(AttachError::Corrupt("start position not a multiple of 8"));
        }
        check_region(ptr, len, Self::required_size(capacity))?;
        let hdr = Header {
            meta: CachePadded::new(Meta::new::<u64>(Kind::Record, capacity)),
            tail: CachePadded::new(AtomicU64::new(start)),
            head: CachePadded::new(AtomicU64::new(start)),
            skipped: CachePadded::new(AtomicU64::new(0)),
            read: CachePadded::new(AtomicU64::new(start)),
            intents: core::array::from_fn(|_| {
                CachePadded::new(Intent {
                    owner: AtomicU64::new(0),
                    claim: AtomicU64::new(IDLE),
                })
            }),
        };
        // SAFETY: in bounds and aligned (checked); exclusive during init (caller).
        unsafe { ptr.cast::<Header>().write(hdr) };
        let data = ptr.wrapping_add(data_offset()).cast::<Word>();
        for i in 0..(capacity / 8) as usize {
            // SAFETY: word i lies inside the region (required_size), aligned for Word.
            #[cfg(not(loom))]
            unsafe {
                data.add(i).write(AtomicU64::new(0));
            }
            // SAFETY: as above.
            #[cfg(loom)]
            unsafe {
                data.add(i).write(Word::new());
            }
        }
        Ok(())
    }

    /// Returns the ring and the `head` it checked: the handles start from that value, never
    /// from a second read (a hostile peer may change it in between).
    ///
    /// # Safety
    /// As for [`producer`](Self::producer).
    unsafe fn attach(ptr: *mut u8, len: usize) -> Result<(Raw, u64), AttachError> {
        // SAFETY: forwarded contract; Header is repr(C) with the meta first.
        let (hdr, cap) = unsafe {
            open_ring::<Header, u64>(ptr, len, Kind::Record, data_offset(), Self::required_size)?
        };
        Self::check_capacity(cap)?;
        // SAFETY: a checked header in bounds; atomics only.
        let h = unsafe { hdr.as_ref() };
        // ORDERING: Acquire; pairs with the consumer's Release store of `head`.
        let head = h.head.load(Ordering::Acquire);
        // ORDERING: Relaxed; a sanity check, the protocol re-reads it.
        let tail = h.tail.load(Ordering::Relaxed);
        if head % 8 != 0 || tail % 8 != 0 || tail.wrapping_sub(head) > cap {
            return Err(AttachError::Corrupt("record ring positions impossible"));
        }
        let raw = Raw {
            hdr,
            // SAFETY: the data area lies inside the region (required_size checked).
            data: unsafe { NonNull::new_unchecked(ptr.add(data_offset()).cast()) },
            cap,
            mask: cap - 1,
            max: Self::max_record(cap) as u64,
            keep: None,
        };
        Ok((raw, head))
    }

    /// Attaches a producer; any number may be attached, in any process. `owner` (at most
    /// [`MAX_OWNER_TAG`]) goes into the header of every record it claims, so the consumer can
    /// ask whether the claimer still lives. The producer also takes a claim-intent entry (see
    /// the module docs): a free one, or one whose holder `is_alive` reports dead and whose last
    /// intent the consumer has passed; with all [`INTENTS`] entries held by live producers it
    /// works without one.
    ///
    /// # Safety
    /// `ptr` must be valid for reads and writes of `len` bytes for as long as the returned
    /// handle lives, and accessed by others only through ring handles.
    pub unsafe fn producer(
        ptr: *mut u8,
        len: usize,
        owner: u32,
        is_alive: &dyn Fn(u32) -> bool,
    ) -> Result<RecordProducer, AttachError> {
        if owner > MAX_OWNER_TAG {
            return Err(AttachError::Corrupt("owner tag above MAX_OWNER_TAG"));
        }
        // SAFETY: forwarded contract.
        let (raw, cached_head) = unsafe { Self::attach(ptr, len)? };
        let intent = raw.take_intent(owner, Some(is_alive));
        Ok(RecordProducer {
            raw,
            owner,
            intent,
            cached_head,
            inconsistent: 0,
            _not_sync: PhantomData,
        })
    }

    /// Attaches the consumer (one at a time: a role claim, taken over from a dead holder).
    ///
    /// # Safety
    /// As for [`producer`](Self::producer).
    pub unsafe fn consumer(
        ptr: *mut u8,
        len: usize,
        owner: u64,
        is_alive: &dyn Fn(u64) -> bool,
    ) -> Result<RecordConsumer, AttachError> {
        // SAFETY: forwarded contract.
        let (raw, released) = unsafe { Self::attach(ptr, len)? };
        raw.hdr().meta.claim(Role::Consumer, owner, is_alive)?;
        // ORDERING: Acquire; pairs with the previous consumer's Release store of its read
        // position (`publish_read`): it read the records before it.
        let read = raw.hdr().read.load(Ordering::Acquire);
        // Records between `head` and `read` were read by the previous consumer (past a fence):
        // not delivered again. A `read` not ahead of `head` is stale.
        let ahead = read.wrapping_sub(released);
        let head = if read % 8 == 0 && ahead > 0 && ahead <= raw.cap {
            read
        } else {
            released
        };
        Ok(RecordConsumer {
            raw,
            head,
            released,
            owner,
            batching: false,
            _not_sync: PhantomData,
        })
    }
}

/// A producing end of a record ring. `Send` and `Clone` (a clone takes a free intent entry of
/// its own, if any), not `Sync`.
pub struct RecordProducer {
    raw: Raw,
    owner: u32,
    /// This producer's claim-intent entry, if it got one.
    intent: Option<usize>,
    cached_head: u64,
    /// Consecutive claims that found `tail - head` above the capacity.
    inconsistent: u32,
    _not_sync: PhantomData<core::cell::Cell<()>>,
}

impl Clone for RecordProducer {
    fn clone(&self) -> Self {
        Self {
            raw: self.raw.clone(),
            owner: self.owner,
            intent: self.raw.take_intent(self.owner, None),
            cached_head: self.cached_head,
            inconsistent: 0,
            _not_sync: PhantomData,
        }
    }
}

/// The consuming end of a record ring. `Send`, not `Sync`.
pub struct RecordConsumer {
    raw: Raw,
    /// Read position: the next record to read.
    head: u64,
    /// Release position (published as `head`): the space before it is given back. Equal to
    /// `head` unless a fence holds space back.
    released: u64,
    owner: u64,
    /// Inside `read_batch`: `head` is published once at the end.
    batching: bool,
    _not_sync: PhantomData<core::cell::Cell<()>>,
}

// SAFETY: the pointers refer to memory that outlives the handle (constructor contract), shared
// only through the header protocol; the handle holds no thread-bound state.
unsafe impl Send for RecordProducer {}
// SAFETY: as above; the consumer role is exclusive (claim word).
unsafe impl Send for RecordConsumer {}

impl core::fmt::Debug for RecordProducer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RecordProducer")
            .field("owner", &self.owner)
            .field("capacity", &self.raw.cap)
            .finish_non_exhaustive()
    }
}

impl core::fmt::Debug for RecordConsumer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RecordConsumer")
            .field("head", &self.head)
            .field("capacity", &self.raw.cap)
            .finish_non_exhaustive()
    }
}

impl Drop for RecordProducer {
    fn drop(&mut self) {
        if let Some(i) = self.intent {
            let e = &self.raw.hdr().intents[i];
            // ORDERING: Relaxed; no claim is in progress (a `Claim` borrows the producer).
            e.claim.store(IDLE, Ordering::Relaxed);
            // ORDERING: Release; pairs with the Acquire CAS in `take_intent`: the next holder
            // starts after our last intent store.
            e.owner.store(0, Ordering::Release);
        }
    }
}

impl Drop for RecordConsumer {
    fn drop(&mut self) {
        self.raw.hdr().meta.release(Role::Consumer, self.owner);
    }
}

impl RecordProducer {
    /// Keeps `owner` (the segment or heap region holding the ring) alive as long as this handle
    /// and its clones made afterwards.
    #[must_use]
    pub fn keep_alive(mut self, owner: KeepAlive) -> Self {
        self.raw.keep = Some(owner);
        self
    }

    /// The largest payload this ring takes.
    pub fn max_record(&self) -> usize {
        self.raw.max as usize
    }

    /// Whether a record of `len` bytes would find room now, ignoring the padding a wrap may
    /// need (the condition a blocked sender polls; `claim` has the last word).
    pub fn has_room(&self, len: usize) -> bool {
        let h = self.raw.hdr();
        // ORDERING: Acquire; pairs with the consumer's Release store of `head` (as in `claim`).
        let head = h.head.load(Ordering::Acquire);
        // ORDERING: Relaxed; an estimate, `claim` re-reads it.
        let tail = h.tail.load(Ordering::Relaxed);
        let used = tail.wrapping_sub(head);
        used <= self.raw.cap && used + align8(RECORD_HEADER as u64 + len as u64) <= self.raw.cap
    }

    /// Claims `size` bytes at position `tail` (as read by the caller; `to_end`: padding up to
    /// the end of the buffer): `Ok(true)` if this producer got them (its intent then names
    /// them until the header is written), `Ok(false)` if the tail moved meanwhile (read it
    /// again).
    fn claim_at(&mut self, tail: u64, size: u64, to_end: bool) -> Result<bool, ClaimError> {
        let h = self.raw.hdr();
        if tail % 8 != 0 {
            return Err(ClaimError::Corrupt);
        }
        if tail.wrapping_add(size).wrapping_sub(self.cached_head) > self.raw.cap {
            // ORDERING: RECORD_HEAD_LOAD (Acquire); pairs with the consumer's RECORD_HEAD_STORE
            // (Release) of `head` after it read and zeroed the space it gives back, so our
            // writes come after its reads and zeroing (loom model
            // `record_producer_reuses_space_the_consumer_gave_back`).
            self.cached_head = h.head.load(RECORD_HEAD_LOAD);
            let used = tail.wrapping_sub(self.cached_head);
            if used > self.raw.cap {
                // Either our tail is stale (we were descheduled while the others claimed and
                // the consumer followed: head passed it), or the ring is corrupt. Read the
                // tail again; only a ring that stays inconsistent is called corrupt.
                self.inconsistent += 1;
                if self.inconsistent > INCONSISTENT_LIMIT {
                    return Err(ClaimError::Corrupt);
                }
                return Ok(false);
            }
            self.inconsistent = 0;
            if used + size > self.raw.cap {
                return Err(ClaimError::Full);
            }
        }
        self.set_intent(intent_word(tail, size, to_end));
        // ORDERING: RECORD_TAIL_CAS (Release); pairs with the Acquire tail load in `unblock`
        // (our intent is visible to a consumer that sees the tail past `tail`; later CASes by
        // others continue the release sequence). The CAS also divides the space among
        // producers; what the consumer may read is published by each record's header. Failure:
        // Relaxed, we read the tail again.
        let won = h
            .tail
            .compare_exchange(
                tail,
                tail.wrapping_add(size),
                RECORD_TAIL_CAS,
                Ordering::Relaxed,
            )
            .is_ok();
        if !won {
            // A claim we did not get: no consumer decision depends on the intent.
            self.clear_intent();
        }
        Ok(won)
    }

    /// Publishes this producer's intent (`intent_word`), before its CAS on the tail.
    fn set_intent(&self, w: u64) {
        if let Some(i) = self.intent {
            // ORDERING: Release; pairs with the Acquire load of the intent in
            // `unblock_by_intent`: a consumer that reads this intent also sees that we hold
            // the entry (our owner CAS in `take_intent` came before). The intent itself
            // reaches the consumer through the tail CAS that follows (Release), which pairs
            // with the consumer's Acquire load of the tail in `unblock`.
            self.raw.hdr().intents[i].claim.store(w, Ordering::Release);
        }
    }

    /// Clears this producer's intent once the header of its claim is written (or the tail CAS
    /// was lost).
    fn clear_intent(&self) {
        if let Some(i) = self.intent {
            // ORDERING: RECORD_INTENT_CLEAR (Release); pairs with the Acquire intent load in
            // `before_next_intent`: a consumer that reads the intent cleared also sees the
            // header we wrote before (or, after a lost CAS, the winner's own intent names the
            // position).
            self.raw.hdr().intents[i]
                .claim
                .store(IDLE, RECORD_INTENT_CLEAR);
        }
    }

    /// Claims room for a record of `len` bytes (0 ..= [`max_record`](Self::max_record)), to be
    /// filled in place and then committed; never blocks.
    ///
    /// ```
    /// use shmlane_ring::HeapRegion;
    /// let (mut p, mut c) = HeapRegion::record(4096);
    /// let mut claim = p.claim(5).unwrap();
    /// claim.write(0, b"hello");
    /// claim.commit().unwrap();
    /// let rec = c.read().unwrap();
    /// assert_eq!(rec.to_vec(), b"hello");
    /// ```
    pub fn claim(&mut self, len: usize) -> Result<Claim<'_>, ClaimError> {
        if len as u64 > self.raw.max {
            return Err(ClaimError::BadLength {
                len,
                max: self.raw.max as usize,
            });
        }
        let size = align8(RECORD_HEADER as u64 + len as u64);
        loop {
            // ORDERING: Relaxed; a guess, validated by the CAS in claim_at.
            let tail = self.raw.hdr().tail.load(Ordering::Relaxed);
            let off = tail & self.raw.mask;
            let rest = self.raw.cap - off;
            if rest >= size {
                if self.claim_at(tail, size, false)? {
                    // ORDERING: Release; pairs with the consumer's RECORD_HDR_LOAD. Nothing
                    // to publish yet but the length and owner, which unblocking needs. A CAS
                    // from empty: if it fails, a consumer that timed out on this claim has
                    // already skipped it; claim again.
                    if self
                        .raw
                        .header(off)
                        .compare_exchange(
                            EMPTY,
                            word(len as u64, CLAIMED, self.owner),
                            Ordering::Release,
                            Ordering::Relaxed,
                        )
                        .is_err()
                    {
                        // Our intent cleared after the failed CAS: the consumer's fence over
                        // this claim waits for it (we will not write here).
                        self.clear_intent();
                        continue;
                    }
                    self.clear_intent();
                    return Ok(Claim {
                        p: self,
                        off,
                        len: len as u64,
                        done: false,
                    });
                }
            } else if self.claim_at(tail, rest, true)? {
                // The record does not fit before the end: pad to the end (a claim of its own),
                // then claim again at the start of the buffer.
                // ORDERING: Release; pairs with RECORD_HDR_LOAD: the consumer skips it. From
                // empty, as for a record (a timed-out consumer may have padded it already).
                let _ = self.raw.header(off).compare_exchange(
                    EMPTY,
                    word(rest - RECORD_HEADER as u64, PADDING, self.owner),
                    Ordering::Release,
                    Ordering::Relaxed,
                );
                self.clear_intent();
                continue;
            }
            // Another producer claimed first, or our tail read was stale: a spin loop (under
            // loom, a yield, so the model lets the other producers' claims reach us).
            spin_hint();
        }
    }

    /// Test hook, not part of the API: what a producer that dies in the middle of a claim
    /// leaves behind. Publishes its intent for a record of `len` bytes at the current tail
    /// and, with `take_tail`, wins the tail CAS; then stops, as a killed process would
    /// (no header written, intent entry kept).
    #[doc(hidden)]
    pub fn abandon_claim_for_tests(mut self, len: usize, take_tail: bool) {
        let size = align8(RECORD_HEADER as u64 + len as u64);
        loop {
            // ORDERING: Relaxed; a guess, validated by the CAS.
            let tail = self.raw.hdr().tail.load(Ordering::Relaxed);
            if !take_tail {
                // No CAS follows: a producer that died before its CAS, or lost it and died.
                self.set_intent(intent_word(tail, size, false));
                break;
            }
            if self.claim_at(tail, size, false) == Ok(true) {
                break;
            }
        }
        core::mem::forget(self);
    }

    /// Claims, copies `payload` in and commits: one record.
    pub fn send(&mut self, payload: &[u8]) -> Result<(), ClaimError> {
        let mut c = self.claim(payload.len())?;
        c.write(0, payload);
        // A fresh claim can only be unblocked if we stalled past the consumer's timeout; the
        // record is then lost, as `commit` reports; `send` reports it as a full ring to retry.
        c.commit().map_err(|_| ClaimError::Full)
    }
}

/// Room claimed in a record ring: write the payload, then [`commit`](Self::commit) (or
/// [`abort`](Self::abort); dropping it aborts).
pub struct Claim<'a> {
    p: &'a mut RecordProducer,
    off: u64,
    len: u64,
    done: bool,
}

impl core::fmt::Debug for Claim<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Claim")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl Claim<'_> {
    /// Payload bytes claimed.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether the claim is for an empty record.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn claimed_word(&self) -> u64 {
        word(self.len, CLAIMED, self.p.owner)
    }

    /// Copies `src` into the payload at `offset`.
    ///
    /// # Panics
    /// If `offset + src.len()` is beyond the claimed length.
    pub fn write(&mut self, offset: usize, src: &[u8]) {
        assert!(
            offset as u64 + src.len() as u64 <= self.len,
            "write past the claimed length"
        );
        // A consumer that unblocked this claim may already have given the space back: do not
        // write into it then (this narrows the window, see the module docs).
        // ORDERING: Acquire; pairs with the consumer's unblocking CAS.
        if self.p.raw.header(self.off).load(Ordering::Acquire) != self.claimed_word() {
            return;
        }
        self.p
            .raw
            .write(self.off + RECORD_HEADER as u64 + offset as u64, src);
    }

    /// A pointer to the claimed payload, to fill in place (zero copy).
    ///
    /// # Safety
    /// Write at most [`len`](Self::len) bytes through it, before `commit` or `abort`, and
    /// never read it (another process may write the same memory if the ring is hostile).
    #[cfg(not(loom))]
    pub unsafe fn as_mut_ptr(&mut self) -> *mut u8 {
        // SAFETY: the payload lies inside the data area (checked when claimed).
        unsafe {
            self.p
                .raw
                .data
                .as_ptr()
                .cast::<u8>()
                .add((self.off + RECORD_HEADER as u64) as usize)
        }
    }

    /// Publishes the record.
    ///
    /// # Errors
    /// [`CommitError::Unblocked`] if the consumer skipped it meanwhile (this producer was seen
    /// dead or stalled past the timeout): the record is not delivered.
    pub fn commit(mut self) -> Result<(), CommitError> {
        self.done = true;
        let claimed = self.claimed_word();
        // ORDERING: RECORD_COMMIT (Release); pairs with the consumer's RECORD_HDR_LOAD
        // (Acquire): the payload writes happen-before its reads. Failure: Relaxed, we only
        // learn that the consumer unblocked us.
        self.p
            .raw
            .header(self.off)
            .compare_exchange(
                claimed,
                word(self.len, COMMITTED, self.p.owner),
                RECORD_COMMIT,
                Ordering::Relaxed,
            )
            .map(|_| ())
            .map_err(|_| {
                self.release_fence();
                CommitError::Unblocked
            })
    }

    /// After the consumer skipped this claim while we lived (a fence): lets the space go. We
    /// write into it no more.
    fn release_fence(&self) {
        let size = align8(RECORD_HEADER as u64 + self.len);
        let fenced =
            word(size - RECORD_HEADER as u64, PADDING, self.p.owner) | SKIP_BIT | FENCE_BIT;
        // ORDERING: RECORD_FENCE_RELEASE (Release); pairs with the consumer's Acquire header
        // load in `lift`: our payload writes happen-before it zeroes and gives the space back.
        // Fails if the consumer did not fence the claim (it saw us dead): nothing to release.
        let _ = self.p.raw.header(self.off).compare_exchange(
            fenced,
            fenced & !FENCE_BIT,
            RECORD_FENCE_RELEASE,
            Ordering::Relaxed,
        );
    }

    /// Gives the room up: the consumer skips it (counted as skipped).
    pub fn abort(mut self) {
        self.abort_inner();
    }

    fn abort_inner(&mut self) {
        if self.done {
            return;
        }
        self.done = true;
        let size = align8(RECORD_HEADER as u64 + self.len);
        // ORDERING: Release; pairs with RECORD_HDR_LOAD. Fails only if the consumer already
        // turned it into padding (then the space may be fenced for us: let it go).
        if self
            .p
            .raw
            .header(self.off)
            .compare_exchange(
                self.claimed_word(),
                word(size - RECORD_HEADER as u64, PADDING, self.p.owner) | SKIP_BIT,
                Ordering::Release,
                Ordering::Relaxed,
            )
            .is_err()
        {
            self.release_fence();
        }
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.abort_inner();
    }
}

/// What [`RecordConsumer::unblock`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unblock {
    /// Nothing is pending at the consumer's position.
    NothingPending,
    /// The pending claim belongs to a live producer and `force` was not given.
    StillAlive,
    /// The pending claim was turned into padding; the next read goes on after it.
    Skipped,
}

impl RecordConsumer {
    /// Keeps `owner` alive as long as this handle.
    #[must_use]
    pub fn keep_alive(mut self, owner: KeepAlive) -> Self {
        self.raw.keep = Some(owner);
        self
    }

    /// The largest payload this ring takes.
    pub fn max_record(&self) -> usize {
        self.raw.max as usize
    }

    /// Records skipped so far (aborted by their producer, or unblocked by a consumer).
    pub fn skipped(&self) -> u64 {
        // ORDERING: Relaxed; a statistic.
        self.raw.hdr().skipped.load(Ordering::Relaxed)
    }

    /// This side's position (bytes consumed since the ring's first position).
    pub fn position(&self) -> u64 {
        self.head
    }

    /// Bytes between the consumer and the producers' tail (claimed, committed or padding).
    pub fn len(&self) -> usize {
        // ORDERING: Relaxed; an estimate.
        let tail = self.raw.hdr().tail.load(Ordering::Relaxed);
        tail.wrapping_sub(self.head).min(self.raw.cap) as usize
    }

    /// Whether nothing is claimed after the consumer's position.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether [`read`](Self::read) would make progress now: the header at the consumer's
    /// position is committed or padding (the condition a blocked receiver polls; a pending
    /// claim is not progress).
    pub fn is_ready(&self) -> bool {
        if self.released != self.head {
            // The release position is at a fence: once its producer lets go, reading lifts it.
            // ORDERING: Acquire (`RECORD_HDR_LOAD`); as in `lift`.
            let w = self
                .raw
                .header(self.released & self.raw.mask)
                .load(RECORD_HDR_LOAD);
            if w & FENCE_BIT == 0 {
                return true;
            }
            if self.head_wrapped_onto_fence() {
                return false;
            }
        }
        let off = self.head & self.raw.mask;
        // ORDERING: Acquire (`RECORD_HDR_LOAD`), as in `read`.
        let w = self.raw.header(off).load(RECORD_HDR_LOAD);
        matches!((w >> STATE_SHIFT) & 3, COMMITTED | PADDING)
    }

    /// Moves past the record or padding `[off, off + size)` just read, and gives its space
    /// back to the producers, unless a fence holds space back before it (`fence`: this is
    /// padding over a claim whose producer may still write into it, which starts one).
    fn advance(&mut self, off: u64, size: u64, fence: bool) {
        if self.released == self.head && !fence {
            self.raw.zero(off, size);
            self.head = self.head.wrapping_add(size);
            self.released = self.head;
            if !self.batching {
                self.publish_head();
            }
        } else {
            // Read, not given back: `lift` zeroes and releases it once the fence before it
            // is lifted.
            self.head = self.head.wrapping_add(size);
            self.publish_read();
        }
    }

    fn publish_head(&self) {
        // ORDERING: RECORD_HEAD_STORE (Release); pairs with the producers' RECORD_HEAD_LOAD
        // (Acquire) of `head` in claim_at: our zeroing and our reads of the records
        // happen-before they reuse the space.
        self.raw.hdr().head.store(self.released, RECORD_HEAD_STORE);
    }

    fn publish_read(&self) {
        // ORDERING: Release; pairs with the Acquire load of a consumer that takes over
        // (`RecordRing::consumer`): the records before it were read.
        self.raw.hdr().read.store(self.head, Ordering::Release);
    }

    /// Whether a fence holds space back: records were read past a claim the consumer skipped
    /// while its producer lived, and their space is given back only when that producer lets
    /// its claim go (it does when it commits, aborts or drops it) or is dead. Producers see
    /// the ring fuller meanwhile; [`release_fenced`](Self::release_fenced) checks liveness.
    pub fn has_fence(&self) -> bool {
        self.released != self.head
    }

    /// Gives back the space held by fences whose producers have let go or (`is_alive(owner
    /// tag)` false) are dead; returns whether any space was given back. [`read`](Self::read)
    /// does the first part by itself; a consumer with a fence calls this now and then (the
    /// byte channel does every 20 ms).
    ///
    /// # Errors
    /// [`ReadError::Corrupt`] if a header between the two positions changed impossibly.
    pub fn release_fenced(&mut self, is_alive: &dyn Fn(u32) -> bool) -> Result<bool, ReadError> {
        self.lift(Some(is_alive))
    }

    /// Whether the read position is a whole ring ahead of the release position: everything
    /// was read, and the header at the read position is the (held) fence's, not a new one.
    fn head_wrapped_onto_fence(&self) -> bool {
        self.head.wrapping_sub(self.released) >= self.raw.cap
    }

    /// Whether a claim intent of a producer that may be alive names `pos` (`is_alive`: `None`
    /// takes every holder as alive).
    fn intent_live_at(&self, pos: u64, is_alive: Option<&dyn Fn(u32) -> bool>) -> bool {
        self.raw.hdr().intents.iter().any(|e| {
            // ORDERING: Acquire; pairs with `clear_intent` (RECORD_INTENT_CLEAR, Release): a
            // producer whose intent we find cleared has made its header CAS, which failed on
            // our padding, and will not write there.
            let claim = e.claim.load(Ordering::Acquire);
            if !intent_names(claim, pos) {
                return false;
            }
            // ORDERING: Relaxed; ordered after the holder's owner CAS by the Acquire above.
            let owner = e.owner.load(Ordering::Relaxed);
            owner == 0
                || owner - 1 > u64::from(MAX_OWNER_TAG)
                || is_alive.is_none_or(|alive| alive((owner - 1) as u32))
        })
    }

    /// Walks from the release position towards the read position over what was read, and
    /// gives it back up to the first fence still held; returns whether anything was.
    fn lift(&mut self, is_alive: Option<&dyn Fn(u32) -> bool>) -> Result<bool, ReadError> {
        let start = self.released;
        while self.released != self.head {
            let off = self.released & self.raw.mask;
            // ORDERING: Acquire (RECORD_HDR_LOAD); pairs with the producer's
            // RECORD_FENCE_RELEASE: its last writes into the space happen-before our zeroing.
            let w = self.raw.header(off).load(RECORD_HDR_LOAD);
            let (state, len, owner) = self.decode(off, w)?;
            let size = match state {
                COMMITTED => align8(RECORD_HEADER as u64 + len),
                PADDING => RECORD_HEADER as u64 + len,
                _ => return Err(ReadError::Corrupt("a header behind the consumer changed")),
            };
            if size > self.head.wrapping_sub(self.released) {
                return Err(ReadError::Corrupt(
                    "a record behind the consumer changed length",
                ));
            }
            if w & FENCE_BIT != 0 {
                let held = if w & NO_OWNER_BIT != 0 {
                    self.intent_live_at(self.released, is_alive)
                } else {
                    is_alive.is_none_or(|alive| alive(owner))
                };
                if held {
                    break;
                }
            }
            self.raw.zero(off, size);
            self.released = self.released.wrapping_add(size);
        }
        let moved = self.released != start;
        if moved && !self.batching {
            self.publish_head();
        }
        Ok(moved)
    }

    /// Reads up to `max` committed records in place, handing each to `f`, and gives their
    /// space back to the producers with one store at the end (reading one by one stores the
    /// position after each record: a cache-line transfer to the producers each time). Stops
    /// early at an empty ring or a pending record; returns how many records `f` saw. A
    /// corrupt record after some good ones ends the batch; the next call reports it.
    ///
    /// If `f` panics, the panic goes on after the batch is closed as if it had ended there: the
    /// records read so far, and the one `f` panicked on, are consumed (not delivered again: a
    /// record that makes `f` panic would otherwise do so on every later call) and their space
    /// is given back; the consumer stays usable.
    ///
    /// ```
    /// let (mut tx, mut rx) = shmlane_ring::HeapRegion::record(4096);
    /// for m in [&b"bid 17.5"[..], b"ask 17.6", b""] {
    ///     tx.send(m).unwrap();
    /// }
    /// let mut total = 0;
    /// assert_eq!(rx.read_batch(16, |r| total += r.len()).unwrap(), 3);
    /// assert_eq!(total, 16);
    /// ```
    pub fn read_batch(
        &mut self,
        max: usize,
        mut f: impl FnMut(&Record<'_>),
    ) -> Result<usize, ReadError> {
        let batch = Batch::open(self);
        let mut n = 0;
        loop {
            if n == max {
                return Ok(n);
            }
            match batch.0.read() {
                Ok(rec) => {
                    // A panic in `f` drops `rec` (consumed) and then `batch` (published).
                    f(&rec);
                    drop(rec);
                    n += 1;
                }
                Err(ReadError::Empty | ReadError::Pending) => return Ok(n),
                Err(e) if n == 0 => return Err(e),
                Err(_) => return Ok(n),
            }
        }
    }

    /// Validates a header word read at `off`; returns (state, payload length, owner).
    fn decode(&self, off: u64, w: u64) -> Result<(u64, u64, u32), ReadError> {
        if w & RESERVED != 0 {
            return Err(ReadError::Corrupt("reserved header bits set"));
        }
        let state = (w >> STATE_SHIFT) & 3;
        let len = w & LEN_MASK;
        let owner = (w >> OWNER_SHIFT) as u32;
        if w & (FENCE_BIT | NO_OWNER_BIT) != 0
            && (state != PADDING
                || w & SKIP_BIT == 0
                || w & NO_OWNER_BIT != 0 && w & FENCE_BIT == 0)
        {
            return Err(ReadError::Corrupt(
                "fence bits on a header that is not a skip",
            ));
        }
        // Every claim, padding included, is at most `largest_claim` bytes.
        if len > self.raw.max {
            return Err(ReadError::Corrupt("record length out of range"));
        }
        if state == PADDING && len % 8 != 0 {
            return Err(ReadError::Corrupt("padding length not a multiple of 8"));
        }
        // The whole record, rounded up to 8 as it is zeroed and given back, lies in the buffer
        // (`off` comes from the consumer's own positions; checked all the same, it is what
        // bounds every access to the record).
        if off % 8 != 0 {
            return Err(ReadError::Corrupt("record position not a multiple of 8"));
        }
        if off + align8(RECORD_HEADER as u64 + len) > self.raw.cap {
            return Err(ReadError::Corrupt("record runs past the end of the buffer"));
        }
        Ok((state, len, owner))
    }

    /// The next committed record, read in place; it is consumed when the returned handle is
    /// dropped. Padding is skipped on the way.
    ///
    /// # Errors
    /// `Empty`, `Pending` (the next record is claimed but not committed: wait, or
    /// [`unblock`](Self::unblock) it), `Corrupt`.
    pub fn read(&mut self) -> Result<Record<'_>, ReadError> {
        if (self.head | self.released) % 8 != 0 {
            // Checked at attach; a record at a misaligned position would run past the buffer.
            return Err(ReadError::Corrupt("consumer position not a multiple of 8"));
        }
        if self.released != self.head {
            self.lift(None)?;
        }
        loop {
            if self.head_wrapped_onto_fence() {
                return Err(ReadError::Empty);
            }
            let off = self.head & self.raw.mask;
            // ORDERING: RECORD_HDR_LOAD (Acquire); pairs with the producer's commit CAS
            // (Release) and padding stores, so the payload written before is visible.
            let w = self.raw.header(off).load(RECORD_HDR_LOAD);
            if w == EMPTY {
                // ORDERING: Relaxed; only tells "nothing claimed" from "claimed, header not
                // written yet"; the header itself is re-read with Acquire.
                let tail = self.raw.hdr().tail.load(Ordering::Relaxed);
                let ahead = tail.wrapping_sub(self.head);
                if ahead > self.raw.cap {
                    return Err(ReadError::Corrupt("tail more than a capacity ahead"));
                }
                return Err(if ahead == 0 {
                    ReadError::Empty
                } else {
                    ReadError::Pending
                });
            }
            let (state, len, owner) = self.decode(off, w)?;
            match state {
                COMMITTED => {
                    return Ok(Record {
                        c: self,
                        off,
                        len,
                        owner,
                    });
                }
                PADDING => {
                    if w & SKIP_BIT != 0 {
                        // ORDERING: Relaxed; a statistic, written only by the consumer.
                        let h = self.raw.hdr();
                        h.skipped.store(
                            h.skipped.load(Ordering::Relaxed).wrapping_add(1),
                            Ordering::Relaxed,
                        );
                    }
                    self.advance(off, RECORD_HEADER as u64 + len, w & FENCE_BIT != 0);
                }
                _ => return Err(ReadError::Pending),
            }
        }
    }

    /// A header-less claim at `off` (`ahead` bytes claimed after the consumer): padded, exactly
    /// its size, if every producer whose intent names it is dead and they agree on the size.
    fn unblock_by_intent(&self, off: u64, ahead: u64, is_alive: &dyn Fn(u32) -> bool) -> Unblock {
        if self.raw.cap >= INTENT_MAX_CAPACITY {
            return Unblock::StillAlive;
        }
        let mut size = None;
        for e in &self.raw.hdr().intents {
            // ORDERING: Acquire; pairs with the Release intent store in `claim_at`, so the
            // owner read next is the one that published this intent, or a later one (0 when
            // it left: taken as alive). Which intent we read: what a claimer stored before its
            // tail CAS is visible through the Acquire tail load in `unblock`; a later value
            // comes after that claimer wrote its header (the CAS below then fails).
            let claim = e.claim.load(Ordering::Acquire);
            if !intent_names(claim, self.head) {
                continue;
            }
            // ORDERING: Relaxed; ordered after the holder's owner CAS by the Acquire above.
            let owner = e.owner.load(Ordering::Relaxed);
            if owner == 0 || owner - 1 > u64::from(MAX_OWNER_TAG) || is_alive((owner - 1) as u32) {
                return Unblock::StillAlive;
            }
            let s = intent_size(claim, off, self.raw.cap);
            if size.is_some_and(|x| x != s) {
                return Unblock::StillAlive;
            }
            size = Some(s);
        }
        let Some(size) = size else {
            return Unblock::StillAlive;
        };
        if size < RECORD_HEADER as u64
            || size % 8 != 0
            || size > ahead
            || size > self.raw.largest_claim()
            || off + size > self.raw.cap
        {
            return Unblock::StillAlive;
        }
        let pad = word(size - RECORD_HEADER as u64, PADDING, 0) | SKIP_BIT;
        // ORDERING: AcqRel; a producer writing its claimed header now (also a CAS from empty)
        // races with us: exactly one of the two wins.
        match self
            .raw
            .header(off)
            .compare_exchange(EMPTY, pad, Ordering::AcqRel, Ordering::Relaxed)
        {
            Ok(_) => Unblock::Skipped,
            Err(_) => Unblock::StillAlive,
        }
    }

    /// `limit` (bytes from the consumer's position), or less: the distance to the nearest
    /// position ahead that a producer's intent names (a claim whose header may not be written
    /// yet). A stale intent of a dead producer can only make a forced skip shorter (the rest
    /// is then skipped by the next one), never longer.
    fn before_next_intent(&self, mut limit: u64) -> u64 {
        if self.raw.cap >= INTENT_MAX_CAPACITY {
            return limit;
        }
        let here = intent_pos(self.head);
        for e in &self.raw.hdr().intents {
            // ORDERING: Acquire; pairs with the Release stores of `set_intent` and
            // `clear_intent`. A producer that claimed a position before the tail we loaded
            // (Acquire) stored its intent before that, so we read the intent or its clearing,
            // and the clearing comes after its header CAS: either the intent stops the padding
            // or the scan of headers does.
            let w = e.claim.load(Ordering::Acquire);
            if w & INTENT_VALID == 0 {
                continue;
            }
            let d = ((w & 0xffff_ffff).wrapping_sub(here) & 0xffff_ffff) * 8;
            if d > 0 && d < limit {
                limit = d;
            }
        }
        limit
    }

    /// Turns the pending claim at the consumer's position into padding if its producer is dead
    /// (`is_alive(owner tag)` is false) or `force` is given (the caller's timeout expired). A
    /// claim whose header was never written (its producer died right after claiming) has no
    /// owner in its header: the claim intents name it (see the module docs); without `force`
    /// it is skipped when every producer whose intent names it is dead and they agree on its
    /// size. A claim of a producer that may be alive, skipped with `force`, becomes a fence:
    /// read past, its space held until the producer lets go or dies (module docs, "Fences").
    /// Also lifts the fences it can (as [`release_fenced`](Self::release_fenced)).
    pub fn unblock(&mut self, is_alive: &dyn Fn(u32) -> bool, force: bool) -> Unblock {
        // Corruption behind the consumer is reported by the next `read`.
        let _ = self.lift(Some(is_alive));
        if self.head_wrapped_onto_fence() {
            return Unblock::NothingPending;
        }
        let off = self.head & self.raw.mask;
        // ORDERING: Acquire; as in `read`.
        let w = self.raw.header(off).load(RECORD_HDR_LOAD);
        if w == EMPTY {
            // ORDERING: Acquire; pairs with the producers' tail CAS (RECORD_TAIL_CAS,
            // Release): the intent of whoever claimed our position is visible.
            let tail = self.raw.hdr().tail.load(Ordering::Acquire);
            let ahead = tail.wrapping_sub(self.head);
            if ahead == 0 || ahead > self.raw.cap {
                return Unblock::NothingPending;
            }
            if !force {
                return self.unblock_by_intent(off, ahead, is_alive);
            }
            // Free space is zero: the claim ends at the next written header, at the tail, or
            // at the end of the buffer, whichever comes first; and before any other claim in
            // flight (a producer between its tail CAS and its header CAS), which its intent
            // names: padding over it would swallow a record its producer is about to commit.
            // No claim is longer than `largest_claim` (nor may padding be: its length must fit
            // the header): a longer run of zeroes is skipped in several steps.
            let limit = self
                .before_next_intent(ahead.min(self.raw.cap - off).min(self.raw.largest_claim()));
            let mut end = RECORD_HEADER as u64;
            while end < limit {
                // ORDERING: Acquire; as in `read`.
                if self.raw.header(off + end).load(RECORD_HDR_LOAD) != EMPTY {
                    break;
                }
                end += 8;
            }
            // A claimer that may live keeps its space until its header CAS has failed on our
            // padding (its intent cleared) or it is dead: a fence (module docs, "Fences").
            let fence = if self.intent_live_at(self.head, Some(is_alive)) {
                FENCE_BIT | NO_OWNER_BIT
            } else {
                0
            };
            let pad = word(end - RECORD_HEADER as u64, PADDING, 0) | SKIP_BIT | fence;
            // ORDERING: AcqRel; a producer writing its claimed header now (also a CAS from
            // empty) races with us: exactly one of the two wins.
            return match self.raw.header(off).compare_exchange(
                EMPTY,
                pad,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => Unblock::Skipped,
                Err(_) => Unblock::StillAlive,
            };
        }
        let Ok((state, len, owner)) = self.decode(off, w) else {
            return Unblock::NothingPending;
        };
        if state != CLAIMED {
            return Unblock::NothingPending;
        }
        let live = is_alive(owner);
        if !force && live {
            return Unblock::StillAlive;
        }
        let size = align8(RECORD_HEADER as u64 + len);
        // A live producer may still write its payload: its space is held until it lets the
        // claim go (a fence, module docs).
        let fence = if live { FENCE_BIT } else { 0 };
        // ORDERING: AcqRel; races with the producer's commit CAS: exactly one wins.
        match self.raw.header(off).compare_exchange(
            w,
            word(size - RECORD_HEADER as u64, PADDING, owner) | SKIP_BIT | fence,
            Ordering::AcqRel,
            Ordering::Relaxed,
        ) {
            Ok(_) => Unblock::Skipped,
            Err(_) => Unblock::StillAlive,
        }
    }
}

/// A batch in progress (`read_batch`): the position is published once, when it closes, also
/// when the caller's closure panics (a batch left open would never give space back again).
struct Batch<'a>(&'a mut RecordConsumer);

impl<'a> Batch<'a> {
    fn open(c: &'a mut RecordConsumer) -> Self {
        c.batching = true;
        Self(c)
    }
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        self.0.batching = false;
        self.0.publish_head();
    }
}

/// A committed record, borrowed in place; consumed (and its space given back) on drop.
pub struct Record<'a> {
    c: &'a mut RecordConsumer,
    off: u64,
    len: u64,
    owner: u32,
}

impl core::fmt::Debug for Record<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Record")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl Record<'_> {
    /// Payload bytes.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether the payload is empty (an empty record is a message too).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The owner tag of the producer that wrote it (as given to
    /// [`RecordRing::producer`]; written by that producer, so only as trustworthy as it).
    pub fn owner(&self) -> u32 {
        self.owner
    }

    /// Copies the payload into the start of `dst` (which must hold [`len`](Self::len) bytes).
    ///
    /// # Panics
    /// If `dst` is shorter than the record.
    pub fn copy_to(&self, dst: &mut [u8]) {
        let n = self.len as usize;
        self.c
            .raw
            .read(self.off + RECORD_HEADER as u64, &mut dst[..n]);
    }

    /// Leaves the record in the ring, unconsumed: the next read returns it again (for a
    /// caller whose buffer turned out too small).
    pub fn keep(self) {
        core::mem::forget(self);
    }

    /// The payload, copied.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = vec![0u8; self.len as usize];
        self.copy_to(&mut v);
        v
    }

    /// The payload in place (zero copy).
    ///
    /// # Safety
    /// No other process may write the record while the slice lives: true of cooperating
    /// producers (a committed record is never written again), not of a hostile one.
    #[cfg(not(loom))]
    pub unsafe fn as_slice(&self) -> &[u8] {
        // SAFETY: in bounds (validated in `read`); the caller vouches for the writers.
        unsafe {
            core::slice::from_raw_parts(
                self.c
                    .raw
                    .data
                    .as_ptr()
                    .cast::<u8>()
                    .add((self.off + RECORD_HEADER as u64) as usize),
                self.len as usize,
            )
        }
    }
}

impl Drop for Record<'_> {
    fn drop(&mut self) {
        let size = align8(RECORD_HEADER as u64 + self.len);
        self.c.advance(self.off, size, false);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::HeapRegion;

    #[test]
    fn records_of_many_lengths_across_many_wraps() {
        for start in [0u64, (u64::MAX - 1024) & !7] {
            let (mut p, mut c) = HeapRegion::record_at(1024, start);
            let max = p.max_record();
            assert_eq!(max, 120);
            let rounds = if cfg!(miri) { 40 } else { 2000 };
            for round in 0..rounds {
                let len = 1 + round * 7 % max;
                let payload: Vec<u8> = (0..len).map(|i| (i + round) as u8).collect();
                p.send(&payload).unwrap();
                let rec = c.read().unwrap();
                assert_eq!(rec.to_vec(), payload);
                drop(rec);
                assert_eq!(c.read().err(), Some(ReadError::Empty));
            }
            assert_eq!(c.skipped(), 0);
        }
    }

    #[test]
    fn full_then_room_again() {
        let (mut p, mut c) = HeapRegion::record(256);
        // 256 bytes: records of 24 (16 + 8 header) fit ten times.
        let mut n = 0;
        while p.send(&[n as u8; 16]).is_ok() {
            n += 1;
        }
        assert_eq!(n, 10);
        assert_eq!(p.send(&[0; 16]), Err(ClaimError::Full));
        assert_eq!(c.read().unwrap().to_vec(), [0u8; 16]);
        p.send(&[99; 16]).unwrap();
        for i in 1..10 {
            assert_eq!(c.read().unwrap().to_vec(), [i as u8; 16]);
        }
        assert_eq!(c.read().unwrap().to_vec(), [99u8; 16]);
    }

    #[test]
    fn a_batch_reads_in_place_and_gives_the_space_back_once() {
        let (mut p, mut c) = HeapRegion::record(1024);
        let h = c.raw.hdr().head.load(Ordering::Relaxed);
        for i in 0..10u8 {
            p.send(&[i; 20]).unwrap();
        }
        let mut seen = Vec::new();
        assert_eq!(c.read_batch(4, |r| seen.push(r.to_vec())).unwrap(), 4);
        assert_eq!(seen, (0..4u8).map(|i| vec![i; 20]).collect::<Vec<_>>());
        // One position store for the batch: the space of all four is free now.
        assert_eq!(c.raw.hdr().head.load(Ordering::Relaxed), h + 4 * 32);
        // A pending claim ends a batch early.
        let claim = p.claim(8).unwrap();
        assert_eq!(c.read_batch(100, |_| {}).unwrap(), 6);
        assert_eq!(c.read_batch(100, |_| {}).unwrap(), 0);
        claim.commit().unwrap();
        assert_eq!(c.read_batch(100, |r| assert_eq!(r.len(), 8)).unwrap(), 1);
    }

    /// A ring of `cap` bytes as its handles see it, on the memory of a 256-byte ring: for
    /// records whose headers lie in the first 256 bytes and whose payload nobody touches
    /// (claim, commit, read the header, keep), the only accesses the tests below make.
    fn sparse_ring(cap: u64) -> (RecordProducer, RecordConsumer) {
        let (mut p, mut c) = HeapRegion::record(256);
        for raw in [&mut p.raw, &mut c.raw] {
            raw.cap = cap;
            raw.mask = cap - 1;
            raw.max = RecordRing::max_record(cap) as u64;
        }
        (p, c)
    }

    #[test]
    fn records_of_4_gib_or_more_are_refused_on_rings_of_2_pow_36_bytes_or_more() {
        for shift in [36, 37, 40] {
            let (mut p, mut c) = sparse_ring(1 << shift);
            let max = (1usize << 32) - 8;
            assert_eq!(p.max_record(), max, "ring of 2^{shift}");
            assert_eq!(c.max_record(), max);
            // 4 GiB: its length would spill into the state bits (a claim read as committed).
            for len in [1usize << 32, (1 << 33) - 8, max + 1] {
                assert_eq!(
                    p.claim(len).err(),
                    Some(ClaimError::BadLength { len, max }),
                    "ring of 2^{shift}"
                );
            }
            assert_eq!(c.read().err(), Some(ReadError::Empty));
            // The largest record: claimed is claimed (pending), committed is its full length.
            let claim = p.claim(max).unwrap();
            assert_eq!(c.read().err(), Some(ReadError::Pending));
            claim.commit().unwrap();
            let rec = c.read().unwrap();
            assert_eq!(rec.len(), max);
            // Not consumed: consuming zeroes its 4 GiB, which this ring does not have.
            rec.keep();
        }
    }

    #[test]
    fn a_panic_in_a_batch_consumes_what_it_read_and_leaves_the_ring_usable() {
        let (mut p, mut c) = HeapRegion::record(256);
        // Records of 24 bytes: ten fill the ring.
        for i in 0..10u8 {
            p.send(&[i; 16]).unwrap();
        }
        assert_eq!(p.send(&[0; 16]), Err(ClaimError::Full));
        let mut seen = Vec::new();
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            c.read_batch(10, |r| {
                let v = r.to_vec();
                seen.push(v[0]);
                assert_ne!(v[0], 3, "the callback fails on record 3");
            })
        }));
        assert!(panicked.is_err());
        assert_eq!(seen, [0, 1, 2, 3]);
        // Records 0..=3 (the one the callback panicked on included) are consumed and their
        // space is given back: four records fit again, a fifth does not.
        for i in 10..14u8 {
            p.send(&[i; 16]).unwrap();
        }
        assert_eq!(p.send(&[0; 16]), Err(ClaimError::Full));
        // The batch closed: a plain read gives its space back at once again.
        assert_eq!(c.read().unwrap().to_vec(), [4; 16]);
        p.send(&[14; 16]).unwrap();
        let mut rest = Vec::new();
        assert_eq!(c.read_batch(100, |r| rest.push(r.to_vec()[0])).unwrap(), 10);
        assert_eq!(rest, (5..15).collect::<Vec<u8>>());
        assert_eq!(c.read().err(), Some(ReadError::Empty));
    }

    #[test]
    fn lengths_are_checked_at_claim() {
        let (mut p, mut c) = HeapRegion::record(1024);
        // An empty record is a message (a blank line, a heartbeat).
        p.claim(0).unwrap().commit().unwrap();
        assert_eq!(c.read().unwrap().len(), 0);
        assert_eq!(
            p.claim(121).err(),
            Some(ClaimError::BadLength { len: 121, max: 120 })
        );
        assert!(p.claim(120).is_ok());
    }

    #[test]
    fn pending_until_committed_and_aborts_are_skipped() {
        let (mut p, mut c) = HeapRegion::record(1024);
        let mut p2 = p.clone();
        let mut first = p.claim(10).unwrap();
        p2.send(b"second").unwrap();
        // The first record is claimed, not committed: the second waits behind it.
        assert_eq!(c.read().err(), Some(ReadError::Pending));
        first.write(0, b"first-rec!");
        first.commit().unwrap();
        assert_eq!(c.read().unwrap().to_vec(), b"first-rec!");
        assert_eq!(c.read().unwrap().to_vec(), b"second");
        p.claim(5).unwrap().abort();
        drop(p.claim(7).unwrap()); // dropping aborts too
        p2.send(b"third").unwrap();
        assert_eq!(c.read().unwrap().to_vec(), b"third");
        assert_eq!(c.skipped(), 2);
    }

    #[test]
    fn dead_or_stalled_claims_are_unblocked() {
        let (mut p, mut c) = HeapRegion::record(1024);
        let mut p2 = p.clone();
        let claim = p.claim(30).unwrap();
        core::mem::forget(claim); // the producer "dies" between claim and commit
        p2.send(b"after").unwrap();
        assert_eq!(c.read().err(), Some(ReadError::Pending));
        // Owner 0 (the heap ring's producers) alive: nothing happens without force.
        assert_eq!(c.unblock(&|_| true, false), Unblock::StillAlive);
        assert_eq!(c.unblock(&|_| false, false), Unblock::Skipped);
        assert_eq!(c.read().unwrap().to_vec(), b"after");
        assert_eq!(c.skipped(), 1);

        // A stalled (live) producer is skipped with force; its late commit fails.
        let mut claim = p.claim(8).unwrap();
        assert_eq!(c.unblock(&|_| true, true), Unblock::Skipped);
        claim.write(0, b"too late"); // checked: does not write into skipped space
        assert_eq!(claim.commit(), Err(CommitError::Unblocked));
        assert_eq!(c.read().err(), Some(ReadError::Empty));
        assert_eq!(c.skipped(), 2);
    }

    #[test]
    fn claim_without_a_header_is_padded_up_to_the_next_record() {
        let (mut p, mut c) = HeapRegion::record(1024);
        // Simulate a producer that died right after its CAS on the tail: 48 bytes claimed,
        // no header written.
        let raw = p.raw.clone();
        let h = raw.hdr();
        let t = h.tail.load(Ordering::Relaxed);
        h.tail.store(t + 48, Ordering::Relaxed);
        p.send(b"next").unwrap();
        assert_eq!(c.read().err(), Some(ReadError::Pending));
        assert_eq!(c.unblock(&|_| false, false), Unblock::StillAlive);
        assert_eq!(c.unblock(&|_| false, true), Unblock::Skipped);
        assert_eq!(c.read().unwrap().to_vec(), b"next");
        // And at the very tail (nothing after it).
        let t = h.tail.load(Ordering::Relaxed);
        h.tail.store(t + 64, Ordering::Relaxed);
        assert_eq!(c.read().err(), Some(ReadError::Pending));
        assert_eq!(c.unblock(&|_| false, true), Unblock::Skipped);
        assert_eq!(c.read().err(), Some(ReadError::Empty));
        p.send(b"still fine").unwrap();
        assert_eq!(c.read().unwrap().to_vec(), b"still fine");
    }

    #[test]
    fn hostile_headers_are_corrupt() {
        let (mut p, mut c) = HeapRegion::record(1024);
        p.send(b"x").unwrap();
        let off = c.head & c.raw.mask;
        for bad in [
            word(5000, COMMITTED, 0),                      // longer than the maximum
            word(5, PADDING, 0),                           // misaligned padding
            word(2000, PADDING, 0),                        // padding past the end
            word(5, COMMITTED, 0) | 1 << 37,               // reserved bit
            word(5, COMMITTED, 0) | FENCE_BIT,             // a fence on a record
            word(8, PADDING, 0) | FENCE_BIT,               // a fence on padding that is no skip
            word(8, PADDING, 0) | SKIP_BIT | NO_OWNER_BIT, // no-owner without the fence
        ] {
            c.raw.header(off).store(bad, Ordering::Relaxed);
            assert!(
                matches!(c.read().err(), Some(ReadError::Corrupt(_))),
                "{bad:#x}"
            );
        }
    }

    /// A hostile length at a position that is not a multiple of 8 (a consumer position taken
    /// from a `head` a hostile peer changed under the attach; set directly here): the record's
    /// rounded size runs past the end of the buffer. Corrupt, never a write past the data area
    /// (which ends the heap allocation: it corrupted the heap).
    #[test]
    fn a_hostile_length_at_a_misaligned_position_is_corrupt_not_out_of_bounds() {
        let (_p, mut c) = HeapRegion::record(1024);
        for (pos, len) in [(1013u64, 3u64), (1009, 7), (1017 - 8, 1), (5, 100)] {
            c.head = pos;
            c.released = pos;
            // The header word the consumer reads there: the word holding `pos`.
            c.raw
                .header(pos & !7)
                .store(word(len, COMMITTED, 0), Ordering::Relaxed);
            assert!(
                matches!(c.read().err(), Some(ReadError::Corrupt(_))),
                "a record of {len} bytes at {pos}"
            );
            // Nothing given back.
            assert_eq!(c.raw.hdr().head.load(Ordering::Relaxed), 0);
            // And the header check on its own refuses it too.
            assert!(matches!(
                c.decode(pos, word(len, COMMITTED, 0)),
                Err(ReadError::Corrupt(_))
            ));
        }
    }

    #[test]
    fn a_head_running_away_ends_in_corrupt_not_a_livelock() {
        let (mut p, c) = HeapRegion::record(1024);
        // ORDERING: Relaxed; test setup.
        c.raw.hdr().head.store(1 << 40, Ordering::Relaxed);
        // The producer looks at the head once its cached view of the free space runs out.
        let mut last = Ok(());
        for _ in 0..20 {
            last = p.send(&[1; 100]);
            if last.is_err() {
                break;
            }
        }
        assert_eq!(last, Err(ClaimError::Corrupt));
    }

    #[test]
    fn hostile_positions_are_refused_at_attach() {
        let region = HeapRegion::new(RecordRing::required_size(1024));
        // SAFETY: the region outlives the handles.
        unsafe {
            RecordRing::init(region.as_ptr(), region.len(), 1024, 0).unwrap();
            let h = &*region.as_ptr().cast::<Header>();
            h.tail.store(5000, Ordering::Relaxed);
            assert!(matches!(
                RecordRing::producer(region.as_ptr(), region.len(), 1, &|_| true),
                Err(AttachError::Corrupt(_))
            ));
            h.tail.store(12, Ordering::Relaxed);
            assert!(RecordRing::producer(region.as_ptr(), region.len(), 1, &|_| true).is_err());
        }
    }

    /// A ring on the heap and handles with chosen owner tags.
    fn owned_ring(
        region: &HeapRegion,
        owners: &[u32],
        is_alive: &dyn Fn(u32) -> bool,
    ) -> (Vec<RecordProducer>, RecordConsumer) {
        // SAFETY: the caller keeps the region alive longer than the handles.
        unsafe {
            RecordRing::init(region.as_ptr(), region.len(), 1024, 0).unwrap();
            let ps = owners
                .iter()
                .map(|&o| RecordRing::producer(region.as_ptr(), region.len(), o, is_alive))
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let c = RecordRing::consumer(region.as_ptr(), region.len(), 99, &|_| true).unwrap();
            (ps, c)
        }
    }

    #[test]
    fn a_claim_abandoned_before_its_header_is_skipped_without_the_timeout() {
        let region = HeapRegion::new(RecordRing::required_size(1024));
        let alive = |t: u32| t != 7 && t != 8;
        let (mut ps, mut c) = owned_ring(&region, &[7, 1, 8], &alive);
        let dead2 = ps.pop().unwrap();
        let mut live = ps.pop().unwrap();
        let dead = ps.pop().unwrap();
        // Owner 7 dies after its CAS on the tail, before writing the header.
        dead.abandon_claim_for_tests(30, true);
        live.send(b"after").unwrap();
        assert_eq!(c.read().err(), Some(ReadError::Pending));
        assert_eq!(c.unblock(&|_| true, false), Unblock::StillAlive);
        assert_eq!(c.unblock(&alive, false), Unblock::Skipped);
        assert_eq!(c.read().unwrap().to_vec(), b"after");
        assert_eq!(c.skipped(), 1);

        // Owner 8 dies after publishing its intent, before its CAS; a live producer then
        // claims that very position and has not written its header yet: its own intent keeps
        // the consumer waiting (it is padded only with force, and loses nothing: it claims
        // again).
        dead2.abandon_claim_for_tests(30, false);
        let live2 = live.clone();
        live2.abandon_claim_for_tests(30, true);
        assert_eq!(c.read().err(), Some(ReadError::Pending));
        assert_eq!(c.unblock(&alive, false), Unblock::StillAlive);
        assert_eq!(c.unblock(&alive, true), Unblock::Skipped);
        assert_eq!(c.read().err(), Some(ReadError::Empty));
        live.send(b"on").unwrap();
        assert_eq!(c.read().unwrap().to_vec(), b"on");
    }

    #[test]
    fn a_forced_skip_stops_at_the_next_claim_in_flight() {
        let region = HeapRegion::new(RecordRing::required_size(1024));
        let (mut ps, mut c) = owned_ring(&region, &[1, 2, 3], &|_| true);
        let mut third = ps.pop().unwrap();
        let second = ps.pop().unwrap();
        let stalled = ps.pop().unwrap();
        // A live producer took 24 bytes at 0 and stalls before its header; a second one took
        // the next 16 bytes and has not written its header yet either; a third committed after.
        stalled.abandon_claim_for_tests(10, true);
        second.abandon_claim_for_tests(8, true);
        third.send(b"third").unwrap();
        assert_eq!(c.read().err(), Some(ReadError::Pending));
        // The timeout passes for the first claim: only its 24 bytes become padding (scanning
        // for the next written header would have swallowed the second claim too, and its
        // producer, resuming, would write into space given back).
        assert_eq!(c.unblock(&|_| true, true), Unblock::Skipped);
        assert_eq!(c.read().err(), Some(ReadError::Pending));
        assert_eq!(c.position(), 24);
        assert_eq!(c.unblock(&|_| true, true), Unblock::Skipped);
        assert_eq!(c.read().unwrap().to_vec(), b"third");
        assert_eq!(c.skipped(), 2);
    }

    #[test]
    fn intent_entries_of_dead_producers_are_taken_over() {
        let region = HeapRegion::new(RecordRing::required_size(1024));
        let owners: Vec<u32> = (1..=INTENTS as u32).collect();
        let (ps, mut c) = owned_ring(&region, &owners, &|_| true);
        assert!(ps.iter().all(|p| p.intent.is_some()));
        // Every entry held by a live producer: one more works, without an entry.
        // SAFETY: the region outlives the handles.
        let mut extra =
            unsafe { RecordRing::producer(region.as_ptr(), region.len(), 500, &|_| true) }.unwrap();
        assert_eq!(extra.intent, None);
        extra.send(b"x").unwrap();
        assert_eq!(c.read().unwrap().to_vec(), b"x");
        // The holders die (no drop runs); owner 1 died mid-claim, before its header.
        let mut ps = ps.into_iter();
        ps.next().unwrap().abandon_claim_for_tests(8, true);
        ps.for_each(core::mem::forget);
        let alive2 = |t: u32| t == 500 || t > 1000;
        // SAFETY: as above.
        let p =
            unsafe { RecordRing::producer(region.as_ptr(), region.len(), 1001, &alive2) }.unwrap();
        // Entry 0 still names a claim ahead of the consumer: kept as evidence.
        assert!(p.intent.is_some_and(|i| i != 0));
        assert_eq!(c.unblock(&alive2, false), Unblock::Skipped);
        assert_eq!(c.read().err(), Some(ReadError::Empty));
        drop(p);
        // Now that the consumer passed it, entry 0 can be reused too.
        let ps: Vec<_> = (0..INTENTS as u32)
            .map(|i| {
                // SAFETY: as above.
                unsafe { RecordRing::producer(region.as_ptr(), region.len(), 1002 + i, &alive2) }
                    .unwrap()
            })
            .collect();
        assert!(ps.iter().all(|p| p.intent.is_some()));
        assert!(ps.iter().any(|p| p.intent == Some(0)));
    }

    #[test]
    fn three_threads_deliver_everything_in_order_per_producer() {
        let per: u32 = if cfg!(miri) { 10 } else { 20_000 };
        let (p, mut c) = HeapRegion::record(4096);
        let handles: Vec<_> = (0..3u32)
            .map(|id| {
                let mut p = p.clone();
                std::thread::spawn(move || {
                    for i in 0..per {
                        let len = 4 + (i as usize * 13 + id as usize) % 200;
                        let mut payload = vec![0u8; len];
                        payload[..4].copy_from_slice(&(id << 24 | i).to_le_bytes());
                        for (k, b) in payload[4..].iter_mut().enumerate() {
                            *b = (i as usize + k) as u8;
                        }
                        loop {
                            match p.send(&payload) {
                                Ok(()) => break,
                                Err(ClaimError::Full) => std::thread::yield_now(),
                                Err(e) => panic!("{e}"),
                            }
                        }
                    }
                })
            })
            .collect();
        drop(p);
        let mut next = [0u32; 3];
        let mut got = 0;
        while got < 3 * per {
            match c.read() {
                Ok(r) => {
                    let v = r.to_vec();
                    let tag = u32::from_le_bytes(v[..4].try_into().unwrap());
                    let (id, i) = ((tag >> 24) as usize, tag & 0xff_ffff);
                    assert_eq!(i, next[id], "order of producer {id}");
                    assert_eq!(v.len(), 4 + (i as usize * 13 + id) % 200);
                    for (k, b) in v[4..].iter().enumerate() {
                        assert_eq!(*b, (i as usize + k) as u8);
                    }
                    next[id] += 1;
                    got += 1;
                }
                Err(ReadError::Empty | ReadError::Pending) => std::thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        }
        for h in handles {
            h.join().unwrap();
        }
    }

    /// A record of 120 bytes (the largest a 1024-byte ring takes) whose bytes all say `tag`.
    fn full_record(tag: u8) -> Vec<u8> {
        vec![tag; 120]
    }

    /// The fence scenario: a claim of 120 bytes at 0 stalls past the timeout (the consumer
    /// skips it while its producer lives), `other` fills the rest of the ring with 7 records
    /// the consumer reads, and the space stays held.
    fn stall_past_the_timeout(other: &mut RecordProducer, c: &mut RecordConsumer) {
        assert_eq!(c.read().err(), Some(ReadError::Pending));
        assert_eq!(c.unblock(&|_| true, true), Unblock::Skipped);
        for k in 0..7 {
            other.send(&full_record(k)).unwrap();
            assert_eq!(c.read().unwrap().to_vec(), full_record(k));
        }
        assert!(c.has_fence());
        // Everything was read, but the stalled claim's space, and all after it, is held.
        assert_eq!(c.read().err(), Some(ReadError::Empty));
        assert_eq!(other.send(b"x"), Err(ClaimError::Full));
    }

    #[test]
    fn a_skipped_live_claim_keeps_its_space_until_its_producer_lets_go() {
        let region = HeapRegion::new(RecordRing::required_size(1024));
        let (mut ps, mut c) = owned_ring(&region, &[1, 2], &|_| true);
        let mut other = ps.pop().unwrap();
        let mut slow = ps.pop().unwrap();
        let mut claim = slow.claim(120).unwrap();
        stall_past_the_timeout(&mut other, &mut c);
        // SAFETY: the claim's payload lies in the ring; written, never read.
        let late = unsafe { claim.as_mut_ptr() };
        // The stalled producer resumes mid-copy and writes its payload: into space nobody
        // else has (before fences, `other`'s next records were there).
        // SAFETY: 120 bytes of the claim's payload.
        unsafe { late.write_bytes(0xee, 120) };
        assert_eq!(c.release_fenced(&|_| true), Ok(false));
        // It commits: too late, and that lets the space go.
        assert_eq!(claim.commit(), Err(CommitError::Unblocked));
        assert_eq!(c.read().err(), Some(ReadError::Empty));
        assert!(!c.has_fence());
        // The space is reused, and nothing written late shows.
        for k in 10..30 {
            other.send(&full_record(k)).unwrap();
            assert_eq!(c.read().unwrap().to_vec(), full_record(k));
        }
        assert_eq!(c.skipped(), 1);
    }

    #[test]
    fn a_fence_of_a_producer_that_dies_is_lifted_by_the_liveness_check() {
        let region = HeapRegion::new(RecordRing::required_size(1024));
        let (mut ps, mut c) = owned_ring(&region, &[1, 2], &|_| true);
        let mut other = ps.pop().unwrap();
        let mut slow = ps.pop().unwrap();
        let claim = slow.claim(120).unwrap();
        stall_past_the_timeout(&mut other, &mut c);
        // It dies holding the claim (no drop runs in a killed process).
        core::mem::forget(claim);
        core::mem::forget(slow);
        assert_eq!(c.release_fenced(&|_| true), Ok(false));
        assert_eq!(c.release_fenced(&|t| t != 1), Ok(true));
        assert!(!c.has_fence());
        other.send(b"after").unwrap();
        assert_eq!(c.read().unwrap().to_vec(), b"after");
    }

    #[test]
    fn a_fence_over_a_claim_without_header_waits_for_its_intent() {
        let region = HeapRegion::new(RecordRing::required_size(1024));
        let (mut ps, mut c) = owned_ring(&region, &[1, 2], &|_| true);
        let mut other = ps.pop().unwrap();
        // Stalled between its two claim steps (tail taken, header not written), alive.
        ps.pop().unwrap().abandon_claim_for_tests(120, true);
        stall_past_the_timeout(&mut other, &mut c);
        // Its intent still names the claim: held while it may live, lifted once it is dead.
        assert_eq!(c.release_fenced(&|_| true), Ok(false));
        assert_eq!(c.release_fenced(&|t| t != 1), Ok(true));
        other.send(b"after").unwrap();
        assert_eq!(c.read().unwrap().to_vec(), b"after");
    }

    #[test]
    fn a_consumer_taking_over_behind_a_fence_delivers_nothing_twice() {
        let region = HeapRegion::new(RecordRing::required_size(1024));
        let (mut ps, mut c) = owned_ring(&region, &[1, 2], &|_| true);
        let mut other = ps.pop().unwrap();
        let mut slow = ps.pop().unwrap();
        let claim = slow.claim(120).unwrap();
        stall_past_the_timeout(&mut other, &mut c);
        drop(c);
        // SAFETY: the region outlives the handle.
        let mut c2 =
            unsafe { RecordRing::consumer(region.as_ptr(), region.len(), 100, &|_| true) }.unwrap();
        assert!(c2.has_fence());
        assert_eq!(c2.read().err(), Some(ReadError::Empty));
        drop(claim);
        assert_eq!(c2.read().err(), Some(ReadError::Empty));
        assert!(!c2.has_fence());
        other.send(b"after").unwrap();
        assert_eq!(c2.read().unwrap().to_vec(), b"after");
    }
}
