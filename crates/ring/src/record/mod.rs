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
//! (Release): free space is always zero, so an empty header means "not written yet". It zeroes
//! the header last, after turning it into padding over the record: a consumer killed part-way
//! leaves the record whole, padding of its size, or all zero, which one that takes over skips
//! exactly (`Raw::zero`).
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
        RECORD_HEAD_LOAD, RECORD_HEAD_STORE, RECORD_INTENT_CLEAR, RECORD_TAIL_CAS, compiler_fence,
        spin_hint,
    },
};

mod consumer;
mod errors;
mod fences;
mod intents;
mod layout;
mod producer;
#[cfg(all(test, not(loom)))]
mod tests;

pub use consumer::{Record, RecordConsumer};
pub use errors::{ClaimError, CommitError, ReadError, Unblock};
pub use intents::INTENTS;
pub use layout::{MAX_OWNER_TAG, MAX_RECORD, RECORD_HEADER};
pub use producer::{Claim, RecordProducer};

use intents::{IDLE, Intent, intent_word};
use layout::{
    CLAIMED, COMMITTED, EMPTY, FENCE_BIT, Header, LEN_MASK, NO_OWNER_BIT, OWNER_SHIFT, PADDING,
    RESERVED, Raw, SKIP_BIT, STATE_SHIFT, Word, align8, data_offset, word,
};

/// Namespace for laying out, initialising and attaching to record rings.
#[derive(Debug)]
pub struct RecordRing(());

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
