//! Broadcast (SPMC fan-out): one producer, any number of readers that attach and detach at run
//! time, each with its cursor in its own memory. The producer never waits for anyone; a reader
//! that falls a whole ring behind is *lapped*: it learns it, is told exactly how many messages
//! it lost, and goes on from the newest one.
//!
//! ```text
//! CachePadded<Meta>        magic, kind = 5, elem = slot size in bytes (align 8), capacity in
//!                          slots, role claims (the producer's)
//! CachePadded<TailLine>   tail: the producer's position, published every 64 sends and on drop;
//!                          first: the ring's first position (set at init, never changed)
//! [Slot; capacity]         Slot = slot_bytes / 8 words:
//!                            word 0  stamp: (position << 1) | busy
//!                            word 1  length of the message in bytes
//!                            word 2… the message, little-endian words, zero-padded
//! ```
//!
//! Each slot is a sequence lock. To write message `p` into slot `p & mask` the producer stores
//! the stamp `p << 1 | 1` (busy), a Release fence, the length and the message words (Relaxed
//! atomic stores), then the stamp `p << 1` (Release). A reader at cursor `c` loads the stamp
//! (Acquire): `c << 1` → it copies the length and the words (Relaxed atomic loads), an Acquire
//! fence, loads the stamp again, and keeps the copy only if the stamp did not change; the fences
//! make sure that a copy that saw any word of a later message also sees the later stamp. So a
//! reader never returns a torn message, and no byte of a slot is ever read non-atomically while
//! the producer may write it.
//!
//! Stamps are compared modulo 2^63 (the shift drops the top bit of the position); rings hold at
//! most 2^40 slots, so "behind" (the slot still holds message `c - capacity`, or `c` is being
//! written: empty) and "ahead" (a later lap overwrote it: lapped) are never confused. On a lap
//! the reader takes the newest position it knows (the stamp it saw, or the published `tail`,
//! whichever is later) and moves its cursor to the message before it; the loss it reports is
//! exactly the distance it moved. A reader's delivered messages plus its reported losses equal
//! the messages the producer sent after the reader attached.
//!
//! Hostile or corrupt memory: stamps are compared, never used as indices (slots are indexed by
//! a private cursor masked by the capacity); a length beyond the slot in a message whose stamp
//! held still is `Corrupt`. A hostile producer can make a reader wait or skip, never read out of
//! bounds.

mod cursors;

use core::marker::PhantomData;
use core::ptr::NonNull;

use crossbeam_utils::CachePadded;

use crate::{
    KeepAlive,
    error::AttachError,
    header::{Kind, Meta, PaddedMeta, Role, align_up, check_capacity, check_region, open_ring_raw},
    sync::{
        AtomicU64, BCAST_DONE_STORE, BCAST_STAMP_LOAD, Ordering, bcast_reader_fence,
        bcast_writer_fence, fence,
    },
};

pub use cursors::{CursorEntry, CursorScan, CursorTable, DEFAULT_ENTRIES, MAX_ENTRIES};

/// The producer publishes its position in the header every this many sends (and on drop):
/// for readers that attach (they start there) and for lapped readers (who take the later of it
/// and the stamp they saw). A store per send to a line readers may read costs throughput.
const PUBLISH_EVERY: u64 = 64;

/// Words of a slot before the message: the stamp and the length.
const SLOT_HEADER_WORDS: usize = 2;
/// Smallest slot: the stamp, the length and one word of message.
pub const MIN_SLOT_BYTES: usize = 24;
/// Largest slot (1 MiB).
pub const MAX_SLOT_BYTES: usize = 1 << 20;

/// What [`RecvError::Corrupt`] says when a slot's stamp is past anything the producer can
/// have written (an overwritten stamp; a real lap never is).
pub const STAMP_AHEAD: &str = "a slot's stamp is ahead of the producer's position";

const BUSY: u64 = 1;
/// Stamps carry positions modulo 2^63.
const POS_MASK: u64 = u64::MAX >> 1;
/// Distances modulo 2^63 below this are "ahead", at or above it "behind".
const HALF: u64 = 1 << 62;

fn stamp(pos: u64, busy: u64) -> u64 {
    (pos << 1) | busy
}

#[repr(C)]
struct Header {
    meta: PaddedMeta,
    tail: CachePadded<TailLine>,
}

/// The header's second cache line: the producer's published position, and the ring's first
/// position (written once at init, never changed: where the oldest message a new ring can hold
/// is; older slots hold init's stand-ins, which are no messages).
#[repr(C)]
struct TailLine {
    pos: AtomicU64,
    first: AtomicU64,
}

fn slots_offset() -> usize {
    align_up(size_of::<Header>(), 128)
}

/// Namespace for laying out, initialising and attaching to broadcast rings.
#[derive(Debug)]
pub struct BroadcastRing(());

/// Why a send failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendError {
    /// The message is longer than a slot holds.
    TooLong {
        /// Bytes given.
        len: usize,
        /// The ring's largest message.
        max: usize,
    },
}

impl core::fmt::Display for SendError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let Self::TooLong { len, max } = self;
        write!(
            f,
            "message of {len} bytes: this broadcast ring's slots hold at most {max}; create it with larger slots"
        )
    }
}

impl std::error::Error for SendError {}

/// Why a read returned no message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecvError {
    /// Nothing new (or the next message is being written).
    Empty,
    /// The producer overwrote messages this reader had not read: `lost` of them are gone. The
    /// reader has moved on to the newest message; read again.
    Lapped {
        /// Messages this reader will never see, exactly.
        lost: u64,
    },
    /// The next message is longer than the buffer given; nothing was consumed.
    BufferTooSmall {
        /// The message's length.
        needed: usize,
    },
    /// A message held still but its length is impossible (corrupt or hostile ring).
    Corrupt(&'static str),
}

impl core::fmt::Display for RecvError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Empty => f.write_str("no new message"),
            Self::Lapped { lost } => write!(
                f,
                "this reader fell a whole ring behind and lost {lost} messages; it goes on from the newest (read faster, or make the ring larger)"
            ),
            Self::BufferTooSmall { needed } => {
                write!(
                    f,
                    "the next message has {needed} bytes: give a larger buffer"
                )
            }
            Self::Corrupt(why) => write!(f, "broadcast ring is corrupt ({why})"),
        }
    }
}

impl std::error::Error for RecvError {}

struct Raw {
    hdr: NonNull<Header>,
    slots: NonNull<AtomicU64>,
    cap: u64,
    mask: u64,
    /// Words per slot.
    words: usize,
    keep: Option<KeepAlive>,
}

impl Raw {
    fn hdr(&self) -> &Header {
        // SAFETY: valid for the handle's lifetime (constructor contract); atomics only.
        unsafe { self.hdr.as_ref() }
    }

    /// Word `i` (< words) of the slot for position `pos`.
    fn word(&self, pos: u64, i: usize) -> &AtomicU64 {
        debug_assert!(i < self.words);
        let idx = (pos & self.mask) as usize * self.words + i;
        // SAFETY: `pos & mask < cap` and `i < words`, so `idx < cap * words`, the number of
        // words in the slot area (checked at attach).
        unsafe { self.slots.add(idx).as_ref() }
    }

    fn max(&self) -> usize {
        (self.words - SLOT_HEADER_WORDS) * 8
    }

    /// The producer's position (the next message it writes), found from the published `tail`
    /// by the stamps: the slot of `pos` holds the newest message written to it, `q`; when `q`
    /// is complete and at or ahead of `pos`, every position up to `q` was written, so the
    /// search goes on from `q + 1`. It stops at a slot that holds an older lap (or a busy
    /// stamp: the message being written, or left half-written by a producer that died).
    ///
    /// Jumping by the stamp matters on rings of fewer than 64 slots: there the published
    /// `tail` (at most 63 behind) can name a slot already overwritten by a later lap, and a
    /// reader starting there was told it had lost messages sent before it attached (finding 12
    /// of issue 15), while a producer resuming there went back over messages it had sent.
    ///
    /// The producer publishes `tail` at least every `PUBLISH_EVERY` messages, so a live or dead
    /// producer is at most that far ahead: each step moves at least one position, and a stamp
    /// further ahead than that is not believed. Bounded whatever the stamps hold.
    fn producer_position(&self, tail: u64) -> u64 {
        let mut pos = tail;
        for _ in 0..=PUBLISH_EVERY {
            // ORDERING: Acquire (`BCAST_STAMP_LOAD`); pairs with the producer's Release stamp
            // store (`BCAST_DONE_STORE`): only the stamp is compared here.
            let s = self.word(pos, 0).load(BCAST_STAMP_LOAD);
            let ahead = (s >> 1).wrapping_sub(pos) & POS_MASK;
            if s & BUSY != 0 || ahead >= PUBLISH_EVERY {
                // Busy, an older lap (far "ahead" modulo 2^63), or not believable.
                break;
            }
            pos = pos.wrapping_add(ahead).wrapping_add(1);
        }
        pos
    }

    /// The oldest position the ring holds messages for, given the producer's position `newest`:
    /// a ring back, or the ring's first position if fewer were ever sent. `first` is checked:
    /// one more than a ring behind (or ahead of) `newest` is not believed.
    ///
    /// A ring back is the message in the slot of `newest` only while that slot still holds it:
    /// a producer writing `newest` (or one that died writing it, or a loan given up unpublished)
    /// has marked the slot busy, and then the oldest message is the one after (review revb: a
    /// reader started on the busy slot was "lapped" by the whole ring at its first read).
    fn oldest(&self, newest: u64) -> u64 {
        // ORDERING: Relaxed; written once at init, before the region was shared.
        let first = self.hdr().tail.first.load(Ordering::Relaxed);
        if newest.wrapping_sub(first) < self.cap {
            return first;
        }
        let back = newest.wrapping_sub(self.cap);
        // ORDERING: Acquire (`BCAST_STAMP_LOAD`), as in `producer_position`: only the stamp
        // is compared here (a reader starting at `back` checks it again before any copy).
        let s = self.word(newest, 0).load(BCAST_STAMP_LOAD);
        if s == stamp(back, 0) {
            back
        } else {
            back.wrapping_add(1)
        }
    }
}

// Clone by hand: `KeepAlive` is an Arc.
impl Clone for Raw {
    fn clone(&self) -> Self {
        Self {
            hdr: self.hdr,
            slots: self.slots,
            cap: self.cap,
            mask: self.mask,
            words: self.words,
            keep: self.keep.clone(),
        }
    }
}

impl BroadcastRing {
    /// Bytes a region needs for `capacity` slots of `slot_bytes` each; `usize::MAX` (which no
    /// region holds) if that does not fit in a `usize`.
    pub fn required_size(capacity: u64, slot_bytes: usize) -> usize {
        crate::header::required_size(slots_offset(), slot_bytes, capacity)
    }

    /// The largest message a slot of `slot_bytes` holds.
    pub fn max_message(slot_bytes: usize) -> usize {
        slot_bytes - SLOT_HEADER_WORDS * 8
    }

    fn check_slot(slot_bytes: u64) -> Result<(), AttachError> {
        if slot_bytes % 8 != 0
            || !(MIN_SLOT_BYTES as u64..=MAX_SLOT_BYTES as u64).contains(&slot_bytes)
        {
            return Err(AttachError::Corrupt(
                "broadcast slot size not a multiple of 8 in 24..=1 MiB",
            ));
        }
        Ok(())
    }

    /// Initialises an empty ring of `capacity` slots (a power of two, at least 2) of
    /// `slot_bytes` each (a multiple of 8 in [`MIN_SLOT_BYTES`]..=[`MAX_SLOT_BYTES`]), whose
    /// first position is `start` (0 normally; tests use values near `u64::MAX`).
    ///
    /// # Safety
    /// `ptr` must be valid for reads and writes of `len` bytes, and nobody may use the region
    /// while it is initialised.
    pub unsafe fn init(
        ptr: *mut u8,
        len: usize,
        capacity: u64,
        slot_bytes: usize,
        start: u64,
    ) -> Result<(), AttachError> {
        check_capacity(capacity, Kind::Broadcast)?;
        Self::check_slot(slot_bytes as u64)?;
        check_region(ptr, len, Self::required_size(capacity, slot_bytes))?;
        let hdr = Header {
            meta: CachePadded::new(Meta::with_elem(
                Kind::Broadcast,
                slot_bytes as u64 | (8 << 32),
                capacity,
            )),
            tail: CachePadded::new(TailLine {
                pos: AtomicU64::new(start),
                first: AtomicU64::new(start),
            }),
        };
        // SAFETY: in bounds and aligned (checked); exclusive during init (caller).
        unsafe { ptr.cast::<Header>().write(hdr) };
        let words = slot_bytes / 8;
        let slots = ptr.wrapping_add(slots_offset()).cast::<AtomicU64>();
        for k in 0..capacity {
            // Each slot holds "message pos - capacity, complete": behind every reader that
            // starts at `start`, and not a position the producer continues from.
            let pos = start.wrapping_add(k);
            let base = (pos & (capacity - 1)) as usize * words;
            for i in 0..words {
                let v = if i == 0 {
                    stamp(pos.wrapping_sub(capacity), 0)
                } else {
                    0
                };
                // SAFETY: `base + i < capacity * words`, inside the region (required_size),
                // 8-aligned; exclusive during init (caller).
                unsafe { slots.add(base + i).write(AtomicU64::new(v)) };
            }
        }
        Ok(())
    }

    /// # Safety
    /// As for [`producer`](Self::producer).
    unsafe fn attach(ptr: *mut u8, len: usize) -> Result<Raw, AttachError> {
        // SAFETY: forwarded contract; Header is repr(C) with the meta first.
        let (hdr, elem, cap) =
            unsafe { open_ring_raw::<Header>(ptr, len, Kind::Broadcast, slots_offset())? };
        let (slot_bytes, align) = (elem & 0xffff_ffff, elem >> 32);
        if align != 8 {
            return Err(AttachError::WrongElement {
                size: slot_bytes as u32,
                align: align as u32,
            });
        }
        Self::check_slot(slot_bytes)?;
        // cap <= 2^40 and slot_bytes <= 2^20: the product fits in 64 bits.
        let needed = (slots_offset() as u64).saturating_add(cap * slot_bytes);
        check_region(ptr, len, usize::try_from(needed).unwrap_or(usize::MAX))?;
        Ok(Raw {
            hdr,
            // SAFETY: the slot area lies inside the region (checked just now).
            slots: unsafe { NonNull::new_unchecked(ptr.add(slots_offset()).cast()) },
            cap,
            mask: cap - 1,
            words: slot_bytes as usize / 8,
            keep: None,
        })
    }

    /// Attaches the producer (one at a time: a role claim, taken over from a dead holder). It
    /// continues after the last message written, found from the published position and then
    /// the stamps (a producer that died published a position up to 64 behind).
    ///
    /// # Safety
    /// `ptr` must be valid for reads and writes of `len` bytes for as long as the returned
    /// handle lives, and accessed by others only through ring handles.
    pub unsafe fn producer(
        ptr: *mut u8,
        len: usize,
        owner: u64,
        is_alive: &dyn Fn(u64) -> bool,
    ) -> Result<BroadcastProducer, AttachError> {
        // SAFETY: forwarded contract.
        let raw = unsafe { Self::attach(ptr, len)? };
        raw.hdr().meta.claim(Role::Producer, owner, is_alive)?;
        // ORDERING: Acquire; pairs with the previous producer's Release store of `tail`.
        let tail = raw.hdr().tail.pos.load(Ordering::Acquire);
        // After the last complete message; a message half-written by a producer that died is
        // written again.
        let pos = raw.producer_position(tail);
        // Published at once, so that every message is at most `PUBLISH_EVERY - 1` ahead of
        // the published position (a predecessor that died between a message and its due
        // publication left `tail` further behind): readers rely on it to tell a real lap from
        // an overwritten stamp (`lapped`). ORDERING: Release; pairs with the Acquire loads of
        // `tail` (attach, lapped), ordered before our first stamp store.
        raw.hdr().tail.pos.store(pos, Ordering::Release);
        Ok(BroadcastProducer {
            raw,
            pos,
            owner,
            _not_sync: PhantomData,
        })
    }

    /// Attaches a reader, any number of them, at any time; it starts at the producer's
    /// position (found from the published one by the stamps), so it sees the messages sent from
    /// then on, and its deliveries plus its reported losses are what was sent after it
    /// attached (a message sent while it attaches may count on either side). The same as
    /// [`reader_from`](Self::reader_from)`(ptr, len, Start::Newest)`.
    ///
    /// # Safety
    /// As for [`producer`](Self::producer).
    pub unsafe fn reader(ptr: *mut u8, len: usize) -> Result<BroadcastReader, AttachError> {
        // SAFETY: forwarded contract.
        unsafe { Self::reader_from(ptr, len, Start::Newest) }
    }

    /// Attaches a reader that starts at `start` (see [`Start`]): the producer's position
    /// (`Newest`), the oldest message the ring still holds (`Oldest`), or a sequence number
    /// (`Seq`). A message's sequence number is its position: the first message of a ring is
    /// number 0 (or its `init` start), numbers go on across producer restarts, and a reader's
    /// reported losses are exactly the gaps in the numbers it reads
    /// ([`recv_seq`](BroadcastReader::recv_seq)).
    ///
    /// # Safety
    /// As for [`producer`](Self::producer).
    pub unsafe fn reader_from(
        ptr: *mut u8,
        len: usize,
        start: Start,
    ) -> Result<BroadcastReader, AttachError> {
        // SAFETY: forwarded contract.
        let raw = unsafe { Self::attach(ptr, len)? };
        // ORDERING: Acquire; pairs with the producer's Release store of `tail`.
        let tail = raw.hdr().tail.pos.load(Ordering::Acquire);
        let newest = raw.producer_position(tail);
        let (cursor, pending) = match start {
            Start::Newest => (newest, 0),
            Start::Oldest => (raw.oldest(newest), 0),
            Start::Seq(n) => {
                let oldest = raw.oldest(newest);
                let retained = newest.wrapping_sub(oldest);
                let behind = newest.wrapping_sub(n);
                if behind <= retained || behind.wrapping_neg() < HALF {
                    // Still in the ring (or the next one), or not sent yet: the reader waits
                    // for it (a slot holding an older message reads as empty).
                    (n, 0)
                } else {
                    // Overwritten (or more than 2^62 ahead, which positions modulo 2^63
                    // cannot tell from overwritten): from the oldest, the gap counted lost,
                    // at most the messages this ring ever overwrote (those before its first
                    // message, or a far-future number, never existed: not counted).
                    // ORDERING: Relaxed; written once at init, before the region was shared.
                    let first = raw.hdr().tail.first.load(Ordering::Relaxed);
                    let overwritten = oldest.wrapping_sub(first).min(HALF);
                    (oldest, oldest.wrapping_sub(n).min(overwritten))
                }
            }
        };
        Ok(BroadcastReader {
            raw,
            cursor,
            lost: 0,
            pending,
            _not_sync: PhantomData,
        })
    }
}

/// Where a new reader starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Start {
    /// At the producer's position: only messages sent from now on (the default).
    #[default]
    Newest,
    /// At the oldest message the ring still holds: up to a ring of earlier messages first
    /// (fewer if fewer were ever sent, or one fewer while the producer is writing the next
    /// message: its slot's older message is gone). The oldest message's slot is the next one
    /// the producer writes: if it overwrites it before the reader has read it, the reader is
    /// lapped like any other (it goes on from the newest message, the ring's worth it skipped
    /// reported lost), so on a busy ring read the backlog at once, or start from a `Seq` a
    /// few messages later.
    Oldest,
    /// At the message of this sequence number: one still in the ring is read first; one not
    /// sent yet is waited for (a slot holding an older message reads as empty); one already
    /// overwritten starts the reader at the oldest, and the first read reports the gap as
    /// lost (`Lapped`). Sequence numbers compare modulo 2^64 like positions: a number more
    /// than 2^62 ahead of the producer is taken as one overwritten long ago.
    Seq(u64),
}

/// The producing end of a broadcast ring. `Send`, not `Sync`.
pub struct BroadcastProducer {
    raw: Raw,
    pos: u64,
    owner: u64,
    _not_sync: PhantomData<core::cell::Cell<()>>,
}

/// A reading end of a broadcast ring. `Send` and `Clone` (a clone reads on independently from
/// the same cursor), not `Sync`.
pub struct BroadcastReader {
    raw: Raw,
    cursor: u64,
    lost: u64,
    /// Messages asked for at attach (`Start::Seq`) but already overwritten: reported by the
    /// first `recv` as a lap (or taken by `take_start_gap`).
    pending: u64,
    _not_sync: PhantomData<core::cell::Cell<()>>,
}

impl Clone for BroadcastReader {
    fn clone(&self) -> Self {
        Self {
            raw: self.raw.clone(),
            cursor: self.cursor,
            lost: self.lost,
            pending: self.pending,
            _not_sync: PhantomData,
        }
    }
}

// SAFETY: the pointers refer to memory that outlives the handle (constructor contract), shared
// only through the slot protocol; the producer role is exclusive (claim word).
unsafe impl Send for BroadcastProducer {}
// SAFETY: as above; readers only read.
unsafe impl Send for BroadcastReader {}

impl core::fmt::Debug for BroadcastProducer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("BroadcastProducer")
            .field("position", &self.pos)
            .field("capacity", &self.raw.cap)
            .finish_non_exhaustive()
    }
}

impl core::fmt::Debug for BroadcastReader {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("BroadcastReader")
            .field("cursor", &self.cursor)
            .field("lost", &self.lost)
            .field("capacity", &self.raw.cap)
            .finish_non_exhaustive()
    }
}

impl Drop for BroadcastProducer {
    fn drop(&mut self) {
        // ORDERING: Release; pairs with the Acquire loads of `tail` in `reader`, `producer`
        // and the lapped path of `recv`.
        self.raw.hdr().tail.pos.store(self.pos, Ordering::Release);
        self.raw.hdr().meta.release(Role::Producer, self.owner);
    }
}

impl BroadcastProducer {
    /// Keeps `owner` (the segment or heap region holding the ring) alive as long as this handle.
    #[must_use]
    pub fn keep_alive(mut self, owner: KeepAlive) -> Self {
        self.raw.keep = Some(owner);
        self
    }

    /// The largest message a slot holds.
    pub fn max_message(&self) -> usize {
        self.raw.max()
    }

    /// The ring's capacity in messages.
    pub fn capacity(&self) -> u64 {
        self.raw.cap
    }

    /// The position of the next message (messages sent so far, counting from the ring's start).
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Sends `msg` to every reader; never waits (a reader a whole ring behind loses the oldest
    /// message it had not read).
    ///
    /// ```
    /// let (mut tx, mut rx) = shmlane_ring::HeapRegion::broadcast(8, 64);
    /// tx.send(b"quote").unwrap();
    /// let mut buf = [0u8; 48];
    /// let n = rx.recv(&mut buf).unwrap();
    /// assert_eq!(&buf[..n], b"quote");
    /// ```
    pub fn send(&mut self, msg: &[u8]) -> Result<(), SendError> {
        if msg.len() > self.raw.max() {
            return Err(SendError::TooLong {
                len: msg.len(),
                max: self.raw.max(),
            });
        }
        let p = self.pos;
        let raw = &self.raw;
        // ORDERING: Relaxed; ordered before the message stores by the Release fence below, which
        // pairs with a reader's Acquire fence (`bcast_reader_fence`) after its copy.
        raw.word(p, 0).store(stamp(p, BUSY), Ordering::Relaxed);
        bcast_writer_fence();
        // ORDERING: Relaxed; published by the stamp store (Release) below.
        raw.word(p, 1).store(msg.len() as u64, Ordering::Relaxed);
        let mut chunks = msg.chunks_exact(8);
        let mut i = SLOT_HEADER_WORDS;
        for c in &mut chunks {
            let mut b = [0u8; 8];
            b.copy_from_slice(c);
            // ORDERING: Relaxed; as above.
            raw.word(p, i)
                .store(u64::from_le_bytes(b), Ordering::Relaxed);
            i += 1;
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut b = [0u8; 8];
            b[..rest.len()].copy_from_slice(rest);
            // ORDERING: Relaxed; as above.
            raw.word(p, i)
                .store(u64::from_le_bytes(b), Ordering::Relaxed);
        }
        // SYNC POINT: the message is complete. ORDERING: Release (`BCAST_DONE_STORE`); pairs
        // with a reader's Acquire load of the stamp (`BCAST_STAMP_LOAD`).
        raw.word(p, 0).store(stamp(p, 0), BCAST_DONE_STORE);
        self.pos = p.wrapping_add(1);
        if self.pos % PUBLISH_EVERY == 0 {
            // ORDERING: Release; pairs with the Acquire loads of `tail` (attach, lapped).
            raw.hdr().tail.pos.store(self.pos, Ordering::Release);
        }
        Ok(())
    }
}

impl BroadcastProducer {
    /// Lends the slot of the next message, to write it in place ([`Loan::write`]) and
    /// publish it ([`Loan::publish`]): no staging copy. The slot is marked busy at once (its
    /// older message is gone: a reader still on it is told it was lapped). A loan dropped
    /// without publishing leaves the slot busy and the position where it was: the next loan
    /// or send writes that message (readers wait for it meanwhile, as for a message being
    /// written).
    ///
    /// ```
    /// let (mut tx, mut rx) = shmlane_ring::HeapRegion::broadcast(8, 64);
    /// let mut loan = tx.loan();
    /// loan.write(0, b"EURUSD").unwrap();
    /// loan.write(6, b" 1.08").unwrap();
    /// assert_eq!(loan.publish(11), Ok(0));
    /// let mut buf = [0u8; 48];
    /// assert_eq!(rx.recv_seq(&mut buf), Ok((11, 0)));
    /// assert_eq!(&buf[..11], b"EURUSD 1.08");
    /// ```
    pub fn loan(&mut self) -> Loan<'_> {
        let p = self.pos;
        // ORDERING: Relaxed, then the Release fence, as in `send`: the busy stamp is ordered
        // before every write into the slot.
        self.raw.word(p, 0).store(stamp(p, BUSY), Ordering::Relaxed);
        bcast_writer_fence();
        Loan { prod: self, pos: p }
    }
}

/// A slot lent by [`BroadcastProducer::loan`]: write the message in place, then publish it.
/// The slot's words are written with atomic stores (other processes map them), never through
/// a reference.
pub struct Loan<'a> {
    prod: &'a mut BroadcastProducer,
    pos: u64,
}

impl core::fmt::Debug for Loan<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Loan")
            .field("position", &self.pos)
            .finish_non_exhaustive()
    }
}

impl Loan<'_> {
    /// The sequence number (position) the message will have.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// The largest message the slot holds.
    pub fn max_message(&self) -> usize {
        self.prod.raw.max()
    }

    /// Word `i` of the message area and the byte range `a..b` of it that `offset..end` covers.
    fn words(offset: usize, end: usize) -> impl Iterator<Item = (usize, usize, usize)> {
        (offset / 8..end.div_ceil(8)).map(move |w| {
            let a = offset.max(w * 8) - w * 8;
            let b = end.min(w * 8 + 8) - w * 8;
            (w, a, b)
        })
    }

    /// Writes `bytes` at byte `offset` of the message. Bytes never written keep what the slot
    /// held (an older message): write the whole message.
    ///
    /// # Errors
    /// [`SendError::TooLong`] if `offset + bytes.len()` is past the slot; nothing is written.
    pub fn write(&mut self, offset: usize, bytes: &[u8]) -> Result<(), SendError> {
        let max = self.prod.raw.max();
        let end = offset.saturating_add(bytes.len());
        if end > max {
            return Err(SendError::TooLong { len: end, max });
        }
        let raw = &self.prod.raw;
        for (w, a, b) in Self::words(offset, end) {
            let word = raw.word(self.pos, SLOT_HEADER_WORDS + w);
            let src = &bytes[w * 8 + a - offset..w * 8 + b - offset];
            let mut v = if b - a == 8 {
                [0u8; 8]
            } else {
                // ORDERING: Relaxed; our own slot (marked busy), published by `publish`.
                word.load(Ordering::Relaxed).to_le_bytes()
            };
            v[a..b].copy_from_slice(src);
            // ORDERING: Relaxed; published by the Release stamp store in `publish`.
            word.store(u64::from_le_bytes(v), Ordering::Relaxed);
        }
        Ok(())
    }

    /// The slot's message area as a raw pointer, for a writer that is not Rust (the C ABI's
    /// loans): [`max_message`](Self::max_message) bytes, 8-byte aligned, in the slot this loan
    /// marked busy. Valid while the producer lives and the message is unpublished (this loan,
    /// or a later `loan()` of the same position: an unpublished loan leaves the position
    /// where it was). Readers may load these words at any moment (a reader one lap behind
    /// copies the older message, then finds the busy stamp and drops the copy): a writer must
    /// expect its bytes to be read while it writes, and nothing it wrote is delivered before
    /// [`publish`](Self::publish). Rust code writes with [`write`](Self::write) instead.
    #[cfg(not(loom))]
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        let raw = &self.prod.raw;
        let idx = (self.pos & raw.mask) as usize * raw.words + SLOT_HEADER_WORDS;
        // SAFETY: `pos & mask < cap` and `SLOT_HEADER_WORDS < words`, so `idx` is inside the
        // slot area (checked at attach); the pointer keeps the area's provenance (from
        // `slots`, not from a reference to one word).
        unsafe { raw.slots.as_ptr().add(idx).cast::<u8>() }
    }

    /// Reads back bytes written at `offset` into `buf` (e.g. to checksum the message); bytes
    /// past the slot read as zero.
    pub fn read(&self, offset: usize, buf: &mut [u8]) {
        let max = self.prod.raw.max();
        let end = offset.saturating_add(buf.len()).min(max);
        buf.fill(0);
        if offset >= end {
            return;
        }
        for (w, a, b) in Self::words(offset, end) {
            // ORDERING: Relaxed; our own slot, written by this thread.
            let v = self
                .prod
                .raw
                .word(self.pos, SLOT_HEADER_WORDS + w)
                .load(Ordering::Relaxed)
                .to_le_bytes();
            buf[w * 8 + a - offset..w * 8 + b - offset].copy_from_slice(&v[a..b]);
        }
    }

    /// Publishes the first `len` bytes of the slot as the message; returns its sequence
    /// number.
    ///
    /// # Errors
    /// [`SendError::TooLong`] if `len` is past the slot; the loan is kept (the slot stays
    /// busy, as if dropped).
    pub fn publish(self, len: usize) -> Result<u64, SendError> {
        let max = self.prod.raw.max();
        if len > max {
            return Err(SendError::TooLong { len, max });
        }
        let (p, raw) = (self.pos, &self.prod.raw);
        // ORDERING: Relaxed; published by the stamp store (Release) below.
        raw.word(p, 1).store(len as u64, Ordering::Relaxed);
        // SYNC POINT: the message is complete. ORDERING: Release (`BCAST_DONE_STORE`), as in
        // `send`; pairs with a reader's Acquire stamp load (`BCAST_STAMP_LOAD`).
        raw.word(p, 0).store(stamp(p, 0), BCAST_DONE_STORE);
        self.prod.pos = p.wrapping_add(1);
        if self.prod.pos % PUBLISH_EVERY == 0 {
            // ORDERING: Release; pairs with the Acquire loads of `tail` (attach, lapped).
            raw.hdr().tail.pos.store(self.prod.pos, Ordering::Release);
        }
        Ok(p)
    }
}

impl BroadcastReader {
    /// Keeps `owner` (the segment or heap region holding the ring) alive as long as this handle
    /// and its clones made afterwards.
    #[must_use]
    pub fn keep_alive(mut self, owner: KeepAlive) -> Self {
        self.raw.keep = Some(owner);
        self
    }

    /// The largest message a slot holds: a buffer of this size takes any message.
    pub fn max_message(&self) -> usize {
        self.raw.max()
    }

    /// The ring's capacity in messages.
    pub fn capacity(&self) -> u64 {
        self.raw.cap
    }

    /// The position of the next message this reader will read.
    pub fn position(&self) -> u64 {
        self.cursor
    }

    /// Messages this reader lost to laps, in total (and to a start at an overwritten
    /// sequence number, once reported).
    pub fn lost(&self) -> u64 {
        self.lost
    }

    /// Messages asked for at attach ([`Start::Seq`]) that were already overwritten, which the
    /// next [`recv`](Self::recv) would report as a lap: taken (counted in [`lost`](Self::lost),
    /// not reported by `recv` any more) for a caller that reports them itself.
    pub fn take_start_gap(&mut self) -> u64 {
        let gap = core::mem::take(&mut self.pending);
        self.lost = self.lost.wrapping_add(gap);
        gap
    }

    /// As [`recv`](Self::recv), with the message's sequence number (its position): numbers
    /// increase by one from message to message, and a gap is exactly the loss reported by
    /// the `Lapped` in between.
    ///
    /// ```
    /// let (mut tx, mut rx) = shmlane_ring::HeapRegion::broadcast(4, 32);
    /// let mut buf = [0u8; 16];
    /// for i in 0..6u8 {
    ///     tx.send(&[i]).unwrap();
    /// }
    /// // Six messages through four slots: the reader at 0 was lapped and goes on from the
    /// // newest lap it saw (message 4).
    /// assert_eq!(rx.recv_seq(&mut buf), Err(shmlane_ring::RecvError::Lapped { lost: 4 }));
    /// assert_eq!(rx.recv_seq(&mut buf), Ok((1, 4)));
    /// assert_eq!(rx.recv_seq(&mut buf), Ok((1, 5)));
    /// assert_eq!(buf[0], 5);
    /// ```
    pub fn recv_seq(&mut self, buf: &mut [u8]) -> Result<(usize, u64), RecvError> {
        let seq = self.cursor;
        self.recv(buf).map(|n| (n, seq))
    }

    /// Messages published but not read yet, approximately (the producer publishes its position
    /// every 64 messages).
    pub fn backlog(&self) -> u64 {
        // ORDERING: Relaxed; informational.
        let tail = self.raw.hdr().tail.pos.load(Ordering::Relaxed);
        let d = tail.wrapping_sub(self.cursor);
        if d > (1 << 63) { 0 } else { d }
    }

    /// Whether [`recv`](Self::recv) would return something other than `Empty` now (a message,
    /// or the news of a lap): the condition a blocking wait polls.
    pub fn is_ready(&self) -> bool {
        if self.pending != 0 {
            return true;
        }
        let c = self.cursor;
        // ORDERING: Acquire (`BCAST_STAMP_LOAD`), as in `recv`.
        let s = self.raw.word(c, 0).load(BCAST_STAMP_LOAD);
        let ahead = (s >> 1).wrapping_sub(c) & POS_MASK;
        s == stamp(c, 0) || (ahead != 0 && ahead < HALF)
    }

    /// The reader was lapped: the slot at its cursor holds position `seen` (mod 2^63, ahead of
    /// the cursor). Moves to the newest message known and returns the loss, or `Corrupt` when
    /// the stamp cannot be a lap (then the cursor stays, and so does the error).
    ///
    /// A lap is believed only where it is possible, so a reported loss is bounded by what the
    /// producer can have sent (finding 14 of issue 15: a flipped stamp bit was reported as a loss
    /// of 4e18 messages):
    /// - the slot at `c & mask` only ever holds positions congruent to `c` modulo the capacity;
    /// - the producer stored `seen`'s stamp after publishing `tail` at most `PUBLISH_EVERY - 1`
    ///   positions before it (it publishes at every multiple of `PUBLISH_EVERY`, and a producer
    ///   taking over continues from the stamps, past its predecessor's last publication), and
    ///   our Acquire load of the stamp orders that publication before our load of `tail`: a
    ///   `seen` further than that ahead of the `tail` we read is not a lap;
    /// - the producer cannot be more than a ring past `seen` (it would have overwritten that
    ///   slot again), so the published `tail` moves the cursor on at most to `seen + capacity`;
    ///   if the producer really is further, the next read finds the next lap and reports it.
    fn lapped(&mut self, seen: u64) -> RecvError {
        let c = self.cursor;
        let cap = self.raw.mask + 1;
        let ahead = seen.wrapping_sub(c) & POS_MASK;
        if ahead % cap != 0 {
            return RecvError::Corrupt("a slot's stamp names a position the slot cannot hold");
        }
        // SYNC POINT: the stamp of `seen` reached us through a Relaxed load when the copy did not
        // hold still (`recv`'s second stamp load). ORDERING: Acquire fence; pairs with the
        // producer's Release stamp store (`BCAST_DONE_STORE`) that load read: the producer's
        // `tail` stores made before that stamp happen-before the load of `tail` below. Without
        // it Miri's weak-memory emulation read an older `tail` and took a real lap for an
        // overwritten stamp (`threads_never_see_a_torn_message`).
        fence(Ordering::Acquire);
        // ORDERING: Acquire; pairs with the producer's Release store of `tail`, made before the
        // stamp of `seen` (ordered before this load by the fence above).
        let tail = self.raw.hdr().tail.pos.load(Ordering::Acquire);
        let stamp_past_tail = seen.wrapping_sub(tail) & POS_MASK;
        if (PUBLISH_EVERY..HALF).contains(&stamp_past_tail) {
            // No producer wrote it: an overwritten stamp. Nothing is counted.
            return RecvError::Corrupt(STAMP_AHEAD);
        }
        let mut newest = c.wrapping_add(ahead).wrapping_add(1);
        let t = tail.wrapping_sub(c) & POS_MASK;
        let limit = ahead.saturating_add(1).saturating_add(cap);
        if t < HALF && t > newest.wrapping_sub(c) & POS_MASK {
            newest = c.wrapping_add(t.min(limit));
        }
        let to = newest.wrapping_sub(1);
        let lost = to.wrapping_sub(c);
        self.cursor = to;
        self.lost = self.lost.wrapping_add(lost);
        RecvError::Lapped { lost }
    }

    /// Copies the next message into `buf` and returns its length; never waits. A reader a whole
    /// ring behind gets [`RecvError::Lapped`] once with the exact loss, then the newest messages.
    pub fn recv(&mut self, buf: &mut [u8]) -> Result<usize, RecvError> {
        if self.pending != 0 {
            let lost = self.take_start_gap();
            return Err(RecvError::Lapped { lost });
        }
        let c = self.cursor;
        let raw = &self.raw;
        // SYNC POINT: is message `c` in its slot? ORDERING: Acquire (`BCAST_STAMP_LOAD`); pairs
        // with the producer's Release stamp store (`BCAST_DONE_STORE`).
        let s1 = raw.word(c, 0).load(BCAST_STAMP_LOAD);
        if s1 != stamp(c, 0) {
            let ahead = (s1 >> 1).wrapping_sub(c) & POS_MASK;
            if ahead == 0 || ahead >= HALF {
                // Being written, or still the previous lap's message.
                return Err(RecvError::Empty);
            }
            return Err(self.lapped(s1 >> 1));
        }
        // ORDERING: Relaxed; validated by the stamp check after the Acquire fence below.
        let len = raw.word(c, 1).load(Ordering::Relaxed);
        let n = (len as usize).min(raw.max()).min(buf.len());
        for (i, ch) in (SLOT_HEADER_WORDS..).zip(buf[..n].chunks_mut(8)) {
            // ORDERING: Relaxed; as above.
            let w = raw.word(c, i).load(Ordering::Relaxed);
            ch.copy_from_slice(&w.to_le_bytes()[..ch.len()]);
        }
        bcast_reader_fence();
        // SYNC POINT: did the copy hold still? ORDERING: Relaxed, after the Acquire fence that
        // pairs with the producer's Release fence (`bcast_writer_fence`): if the copy saw any
        // word of a later message, this load sees that message's busy stamp or a later one.
        let s2 = raw.word(c, 0).load(Ordering::Relaxed);
        if s2 != s1 {
            let ahead = (s2 >> 1).wrapping_sub(c) & POS_MASK;
            if ahead == 0 || ahead >= HALF {
                return Err(RecvError::Corrupt("a slot's stamp went backwards"));
            }
            return Err(self.lapped(s2 >> 1));
        }
        if len as usize > raw.max() {
            return Err(RecvError::Corrupt("message length beyond its slot"));
        }
        if len as usize > buf.len() {
            return Err(RecvError::BufferTooSmall {
                needed: len as usize,
            });
        }
        self.cursor = c.wrapping_add(1);
        Ok(len as usize)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::HeapRegion;

    /// Finding 14 of issue 15: a stamp overwritten in a live ring (a high bit flipped) was
    /// taken for a lap of billions of billions of messages. A stamp the slot cannot hold, or
    /// one past the published position, is `Corrupt`; a hostile `tail` moves a lapped reader at
    /// most a ring past the stamp it saw. Every reported loss is bounded by what was sent.
    #[test]
    fn a_lap_is_believed_only_where_it_is_possible() {
        let cap = 8u64;
        let (mut tx, mut rx) = HeapRegion::broadcast(cap, 64);
        let mut buf = [0u8; 64];
        // A real lap first: 3 rings of messages, the reader at 0.
        for i in 0..3 * cap {
            tx.send(&i.to_le_bytes()).unwrap();
        }
        assert_eq!(rx.recv(&mut buf), Err(RecvError::Lapped { lost: 2 * cap }));
        for _ in 0..cap {
            rx.recv(&mut buf).unwrap();
        }
        assert_eq!(rx.recv(&mut buf), Err(RecvError::Empty));
        let c = rx.position();
        // A high bit flipped in the stamp of the next slot: congruent, far past `tail`.
        let raw = rx.raw.clone();
        let w = raw.word(c, 0);
        // ORDERING: Relaxed; a test playing a hostile peer.
        w.store(stamp(c + (1 << 40), 0), Ordering::Relaxed);
        assert!(matches!(rx.recv(&mut buf), Err(RecvError::Corrupt(_))));
        assert_eq!(rx.position(), c, "the cursor stays at a corrupt stamp");
        // A low bit flipped: a position that slot cannot hold.
        // ORDERING: as above.
        w.store(stamp(c + cap + 1, 0), Ordering::Relaxed);
        assert!(matches!(rx.recv(&mut buf), Err(RecvError::Corrupt(_))));
        // A possible lap (one ring on) with a hostile `tail` far ahead: the cursor moves at
        // most a ring past the stamp.
        // ORDERING: as above.
        w.store(stamp(c + cap, 0), Ordering::Relaxed);
        // ORDERING: as above.
        raw.hdr().tail.pos.store(c + (1 << 41), Ordering::Relaxed);
        match rx.recv(&mut buf) {
            Err(RecvError::Lapped { lost }) => assert!(lost <= 2 * cap, "lost {lost}"),
            other => panic!("expected a bounded lap, got {other:?}"),
        }
        let lost_total = rx.lost();
        assert!(lost_total <= 4 * cap, "total {lost_total}");
    }

    /// A producer taking over publishes where it goes on from, so its messages are believed
    /// by lapped readers even when its predecessor died before publishing a multiple of 64.
    #[test]
    fn a_producer_taking_over_publishes_its_position() {
        let region = HeapRegion::new(BroadcastRing::required_size(8, 64));
        let (ptr, len) = (region.as_ptr(), region.len());
        // SAFETY: the region outlives every handle made here.
        unsafe {
            BroadcastRing::init(ptr, len, 8, 64, 0).unwrap();
            let mut tx = BroadcastRing::producer(ptr, len, 1, &|_| true).unwrap();
            let mut rx = BroadcastRing::reader(ptr, len).unwrap();
            // 64 messages: the predecessor "dies" after its last stamp, before publishing 64.
            for i in 0..64u64 {
                tx.send(&i.to_le_bytes()).unwrap();
            }
            rx.raw.hdr().tail.pos.store(0, Ordering::Relaxed);
            core::mem::forget(tx);
            let mut tx = BroadcastRing::producer(ptr, len, 2, &|t| t != 1).unwrap();
            assert_eq!(tx.position(), 64);
            for i in 64..80u64 {
                tx.send(&i.to_le_bytes()).unwrap();
            }
            let mut buf = [0u8; 64];
            // The reader, at 0, is lapped: stamp 72 in slot 0, published 64: believed.
            match rx.recv(&mut buf) {
                Err(RecvError::Lapped { lost }) => assert_eq!(lost, 72),
                other => panic!("expected a lap, got {other:?}"),
            }
        }
    }

    /// Message `seq`: its length varies with `seq`, every byte derives from it.
    fn msg(seq: u64, max: usize) -> Vec<u8> {
        let len = 8 + (seq as usize * 13) % (max - 7);
        let mut m: Vec<u8> = (0..len)
            .map(|i| (seq as u8).wrapping_add(i as u8))
            .collect();
        m[..8].copy_from_slice(&seq.to_le_bytes());
        m
    }

    fn check(buf: &[u8], max: usize) -> u64 {
        let seq = u64::from_le_bytes(buf[..8].try_into().unwrap());
        assert_eq!(buf, msg(seq, max), "message {seq} torn or corrupt");
        seq
    }

    /// Every position class: from 0, across the wrap of u64 and across 2^63 (where the stamp
    /// drops the position's top bit).
    const STARTS: [u64; 3] = [0, u64::MAX - 5, (1 << 63) - 5];

    /// Review rev2 (finding 14, loss bounded by what can have been lost): a stamp overwritten
    /// ahead of anything the producer can have written is `Corrupt`, not a lap of that size;
    /// a real lap after a producer died between a message and its due publication of `tail`
    /// (its successor publishes its position at attach) is still a lap.
    #[test]
    fn rev2_a_stamp_past_the_producers_position_is_corrupt_not_a_loss() {
        for start in STARTS {
            let (mut tx, mut rx) = HeapRegion::broadcast_at(8, 64, start);
            let mut buf = [0u8; 48];
            tx.send(&[1; 8]).unwrap();
            assert_eq!(rx.recv(&mut buf), Ok(8));
            // The next slot says "message 10^8 ahead, complete".
            let c = rx.position();
            rx.raw.word(c, 0).store(
                stamp(c.wrapping_add(100_000_000) & POS_MASK, 0),
                Ordering::Relaxed,
            );
            assert!(
                matches!(rx.recv(&mut buf), Err(RecvError::Corrupt(_))),
                "start {start}"
            );
            assert_eq!((rx.lost(), rx.position()), (0, c), "start {start}");

            // A producer that wrote message 63 past `start`'s publication point and died
            // before publishing `tail` for it; its successor continues and laps the reader.
            let (mut tx, mut rx) = HeapRegion::broadcast_at(8, 64, start);
            let first_pub = start.wrapping_add(PUBLISH_EVERY - start % PUBLISH_EVERY);
            while tx.position() != first_pub {
                tx.send(&[2; 8]).unwrap();
            }
            // Died just before its publication: `tail` still says `start`.
            tx.raw.hdr().tail.pos.store(start, Ordering::Relaxed);
            let raw = tx.raw.clone();
            // It dies: no drop (which would publish `tail` and free the role). Its share of
            // the region's keep-alive is let go first, so Miri's leak check sees nothing left.
            drop(tx.raw.keep.take());
            core::mem::forget(tx);
            let ptr = raw.hdr.as_ptr().cast::<u8>();
            let len = BroadcastRing::required_size(8, 64);
            // SAFETY: the heap region lives (kept by `rx`'s and `raw`'s KeepAlive).
            let mut tx2 = unsafe { BroadcastRing::producer(ptr, len, 2, &|_| false) }.unwrap();
            assert_eq!(tx2.position(), first_pub);
            for _ in 0..PUBLISH_EVERY - 1 {
                tx2.send(&[3; 8]).unwrap();
            }
            let r = rx.recv(&mut buf);
            assert!(
                matches!(r, Err(RecvError::Lapped { .. })),
                "start {start}: {r:?}"
            );
        }
    }

    /// A reader at `start` on `tx`'s ring.
    fn reader_at(tx: &BroadcastProducer, start: Start) -> BroadcastReader {
        let ptr = tx.raw.hdr.as_ptr().cast::<u8>();
        let len = BroadcastRing::required_size(tx.raw.cap, tx.raw.words * 8);
        // SAFETY: the heap region lives as long as `tx` (its keep-alive), which outlives the
        // reader in these tests.
        unsafe { BroadcastRing::reader_from(ptr, len, start) }.unwrap()
    }

    /// Reads everything there is: (seq, first byte) per message, laps as (u64::MAX, lost).
    fn drain(rx: &mut BroadcastReader) -> Vec<(u64, u64)> {
        let mut buf = [0u8; 16];
        let mut out = Vec::new();
        loop {
            match rx.recv_seq(&mut buf) {
                Ok((n, seq)) => {
                    assert_eq!(n, 8);
                    out.push((seq, u64::from_le_bytes(buf[..8].try_into().unwrap())));
                }
                Err(RecvError::Lapped { lost }) => out.push((u64::MAX, lost)),
                Err(RecvError::Empty) => return out,
                Err(e) => panic!("{e}"),
            }
        }
    }

    /// Issue 16: the start position chosen at attach. Newest sees nothing old; Oldest sees
    /// exactly what the ring holds (only real messages on a ring not yet full); Seq(n) starts
    /// at n, an overwritten n at the oldest with the gap reported, a future n waits for it.
    #[test]
    fn readers_start_where_asked() {
        for start in STARTS {
            let (mut tx, _) = HeapRegion::broadcast_at(8, 32, start);
            let at = |i: u64| start.wrapping_add(i);
            let send = |tx: &mut BroadcastProducer, n: u64| {
                for _ in 0..n {
                    let p = tx.position();
                    tx.send(&p.to_le_bytes()).unwrap();
                }
            };
            send(&mut tx, 5);
            // Not yet full: the oldest is the ring's first message, no stand-in before it.
            let want: Vec<_> = (0..5).map(|i| (at(i), at(i))).collect();
            assert_eq!(
                drain(&mut reader_at(&tx, Start::Oldest)),
                want,
                "start {start}"
            );
            send(&mut tx, 15);
            assert!(drain(&mut reader_at(&tx, Start::Newest)).is_empty());
            let want: Vec<_> = (12..20).map(|i| (at(i), at(i))).collect();
            assert_eq!(
                drain(&mut reader_at(&tx, Start::Oldest)),
                want,
                "start {start}"
            );
            let want: Vec<_> = (15..20).map(|i| (at(i), at(i))).collect();
            assert_eq!(drain(&mut reader_at(&tx, Start::Seq(at(15)))), want);
            // Overwritten: from the oldest, the gap (12 - 2) reported first and counted.
            let mut old = reader_at(&tx, Start::Seq(at(2)));
            let mut want = vec![(u64::MAX, 10)];
            want.extend((12..20).map(|i| (at(i), at(i))));
            assert_eq!(drain(&mut old), want, "start {start}");
            assert_eq!(old.lost(), 10);
            // The future: nothing until message 25, then from it.
            let mut future = reader_at(&tx, Start::Seq(at(25)));
            send(&mut tx, 5);
            assert!(drain(&mut future).is_empty());
            send(&mut tx, 2);
            assert_eq!(drain(&mut future), vec![(at(25), at(25)), (at(26), at(26))]);
            assert_eq!(future.lost(), 0);
        }
    }

    /// Issue 16: sequence numbers go up by one per message, and every gap is exactly the
    /// loss the `Lapped` in between reported, across the wrap of u64 and of 2^63.
    #[test]
    fn sequence_gaps_are_exactly_the_losses() {
        for start in STARTS {
            let (mut tx, mut rx) = HeapRegion::broadcast_at(4, 32, start);
            let mut buf = [0u8; 16];
            let (mut expect, mut lost, mut got) = (start, 0u64, 0u64);
            for burst in [1u64, 3, 9, 2, 17, 4, 70, 5] {
                for _ in 0..burst {
                    let p = tx.position();
                    tx.send(&p.to_le_bytes()).unwrap();
                }
                loop {
                    match rx.recv_seq(&mut buf) {
                        Ok((_, seq)) => {
                            assert_eq!(seq, expect, "start {start}");
                            assert_eq!(buf[..8], seq.to_le_bytes());
                            expect = seq.wrapping_add(1);
                            got += 1;
                        }
                        Err(RecvError::Lapped { lost: l }) => {
                            lost += l;
                            expect = expect.wrapping_add(l);
                        }
                        Err(RecvError::Empty) => break,
                        Err(e) => panic!("{e}"),
                    }
                }
            }
            assert!(lost > 0);
            assert_eq!(got + lost, tx.position().wrapping_sub(start));
            assert_eq!(rx.lost(), lost);
        }
    }

    /// Issue 16: a message written in place through a loan reads back whole; a loan dropped
    /// unpublished leaves the position for the next message, and readers wait meanwhile.
    #[test]
    fn loans_publish_in_place() {
        for start in STARTS {
            let (mut tx, mut rx) = HeapRegion::broadcast_at(4, 64, start);
            let mut buf = [0u8; 48];
            for round in 0..10u8 {
                let mut loan = tx.loan();
                assert_eq!(loan.position(), start.wrapping_add(u64::from(round)));
                let msg: Vec<u8> = (0..21).map(|i| round ^ i).collect();
                // Odd pieces: a word written in parts, one across a word boundary.
                loan.write(0, &msg[..3]).unwrap();
                loan.write(3, &msg[3..13]).unwrap();
                loan.write(13, &msg[13..]).unwrap();
                let mut back = [0u8; 21];
                loan.read(0, &mut back);
                assert_eq!(back[..], msg[..]);
                assert!(loan.write(40, &[0; 9]).is_err());
                let seq = loan.publish(21).unwrap();
                assert_eq!(rx.recv_seq(&mut buf), Ok((21, seq)));
                assert_eq!(buf[..21], msg[..]);
            }
            // A loan given up unpublished.
            let _ = tx.loan();
            assert_eq!(rx.recv(&mut buf), Err(RecvError::Empty));
            let p = tx.position();
            tx.send(b"after").unwrap();
            assert_eq!(rx.recv_seq(&mut buf), Ok((5, p)));
        }
    }

    /// Review revb: a loan given up unpublished (or a publisher killed mid-loan, or mid-send)
    /// leaves the slot of the producer's position busy: the message a ring back, which that
    /// slot held, is gone. `Oldest` started there and was told it was lapped by the whole ring
    /// (the reader jumped to the busy slot), losing the `capacity - 1` messages still intact.
    #[test]
    fn revb_oldest_after_a_loan_given_up_reads_what_the_ring_still_holds() {
        for start in STARTS {
            let (mut tx, _) = HeapRegion::broadcast_at(8, 32, start);
            let at = |i: u64| start.wrapping_add(i);
            for _ in 0..20 {
                let p = tx.position();
                tx.send(&p.to_le_bytes()).unwrap();
            }
            // Message 20's slot (message 12's) marked busy, never published.
            let _ = tx.loan();
            let want: Vec<_> = (13..20).map(|i| (at(i), at(i))).collect();
            assert_eq!(
                drain(&mut reader_at(&tx, Start::Oldest)),
                want,
                "start {start}"
            );
            // Message 12 is gone: asking for it is a gap of one.
            let mut want = vec![(u64::MAX, 1)];
            want.extend((13..20).map(|i| (at(i), at(i))));
            assert_eq!(
                drain(&mut reader_at(&tx, Start::Seq(at(12)))),
                want,
                "start {start}"
            );
            // Publishing 20 then: every reader goes on with it.
            let mut rx = reader_at(&tx, Start::Oldest);
            let p = tx.position();
            tx.send(&p.to_le_bytes()).unwrap();
            let want: Vec<_> = (13..21).map(|i| (at(i), at(i))).collect();
            assert_eq!(drain(&mut rx), want, "start {start}");
        }
    }

    /// A start gap counts only messages that existed: a far-future number (taken as
    /// overwritten) or one before the ring's first message is not reported as ~2^64 lost
    /// (review revb left this: a gap of 1.38e19 reached the channel's shared lost statistic).
    #[test]
    fn a_start_gap_is_at_most_what_the_ring_overwrote() {
        for start in STARTS {
            let (mut tx, _) = HeapRegion::broadcast_at(8, 32, start);
            for _ in 0..5 {
                let p = tx.position();
                tx.send(&p.to_le_bytes()).unwrap();
            }
            // Nothing overwritten yet: no gap whatever number is asked for.
            for d in [HALF + 1, 1 << 63, u64::MAX - 7] {
                let mut rx = reader_at(&tx, Start::Seq(tx.position().wrapping_add(d)));
                assert_eq!(rx.take_start_gap(), 0, "start {start} d {d:#x}");
            }
            for _ in 0..15 {
                let p = tx.position();
                tx.send(&p.to_le_bytes()).unwrap();
            }
            // 20 sent through 8 slots: at most 13 overwritten, whatever number is asked for.
            for n in [
                start.wrapping_sub(100),
                tx.position().wrapping_add(HALF + 1),
            ] {
                let mut rx = reader_at(&tx, Start::Seq(n));
                let gap = rx.take_start_gap();
                assert!(
                    (12..=13).contains(&gap),
                    "start {start} n {n:#x}: gap {gap}"
                );
            }
            // A number really overwritten: exactly the messages between it and the oldest.
            let mut rx = reader_at(&tx, Start::Seq(start.wrapping_add(3)));
            let gap = rx.take_start_gap();
            assert!((9..=10).contains(&gap), "start {start}: gap {gap}");
        }
    }

    /// Review revb (a guard: it held on the code as reviewed): a sequence number ahead of the
    /// producer by less than 2^62 is waited for (`Start::Seq`), one at least that far is taken
    /// as overwritten. At the edge (just under 2^62 ahead) the slot of the cursor holds a
    /// congruent older position at most 2^62 behind it, so it reads "behind" (empty), never a
    /// lap or `Corrupt` (which a subscriber keeps for good) for a number the caller chose.
    #[test]
    fn revb_a_far_sequence_number_is_waited_for_or_a_gap_never_corrupt() {
        for start in STARTS {
            for d in (0..=10u64).map(|k| HALF - k).chain([
                HALF + 1,
                HALF + 8,
                1 << 63,
                u64::MAX,
                u64::MAX - 7,
            ]) {
                let (mut tx, _) = HeapRegion::broadcast_at(8, 32, start);
                for _ in 0..5 {
                    let p = tx.position();
                    tx.send(&p.to_le_bytes()).unwrap();
                }
                let mut rx = reader_at(&tx, Start::Seq(tx.position().wrapping_add(d)));
                for _ in 0..3 {
                    for (seq, v) in drain(&mut rx) {
                        assert!(seq == u64::MAX || seq == v, "start {start} d {d:#x}");
                    }
                    for _ in 0..7 {
                        let p = tx.position();
                        tx.send(&p.to_le_bytes()).unwrap();
                    }
                }
            }
        }
    }

    #[test]
    fn every_reader_sees_every_message() {
        for start in STARTS {
            let (mut tx, mut r1) = HeapRegion::broadcast_at(8, 64, start);
            let mut r2 = r1.clone();
            let max = tx.max_message();
            assert_eq!(max, 48);
            let mut buf = [0u8; 48];
            for seq in 0..100u64 {
                tx.send(&msg(seq, max)).unwrap();
                for r in [&mut r1, &mut r2] {
                    let n = r.recv(&mut buf).unwrap();
                    assert_eq!(check(&buf[..n], max), seq);
                    assert_eq!(r.recv(&mut buf), Err(RecvError::Empty));
                }
            }
            assert_eq!(r1.lost() + r2.lost(), 0);
        }
    }

    #[test]
    fn a_lapped_reader_reports_exactly_what_it_lost() {
        for start in STARTS {
            let (mut tx, mut slow) = HeapRegion::broadcast_at(8, 32, start);
            let max = tx.max_message();
            let mut buf = vec![0u8; max];
            let (mut delivered, mut lost, mut next, mut sent) = (0u64, 0u64, 0u64, 0u64);
            for burst in [3u64, 20, 8, 9, 1, 64, 7, 200] {
                for _ in 0..burst {
                    tx.send(&msg(sent, max)).unwrap();
                    sent += 1;
                }
                // Read half of what is there, so the reader falls behind and is lapped.
                for _ in 0..=burst / 2 {
                    match slow.recv(&mut buf) {
                        Ok(n) => {
                            assert_eq!(check(&buf[..n], max), next, "gap without a report");
                            next += 1;
                            delivered += 1;
                        }
                        Err(RecvError::Lapped { lost: l }) => {
                            assert!(l > 0);
                            lost += l;
                            next += l;
                        }
                        Err(RecvError::Empty) => break,
                        Err(e) => panic!("{e}"),
                    }
                }
            }
            loop {
                match slow.recv(&mut buf) {
                    Ok(n) => {
                        assert_eq!(check(&buf[..n], max), next);
                        next += 1;
                        delivered += 1;
                    }
                    Err(RecvError::Lapped { lost: l }) => {
                        lost += l;
                        next += l;
                    }
                    Err(RecvError::Empty) => break,
                    Err(e) => panic!("{e}"),
                }
            }
            assert!(lost > 0, "the reader was never lapped");
            assert_eq!(delivered + lost, sent);
            assert_eq!(slow.lost(), lost);
        }
    }

    #[test]
    fn too_long_and_too_small_lose_nothing() {
        let (mut tx, mut rx) = HeapRegion::broadcast(4, 32);
        assert_eq!(
            tx.send(&[0; 17]),
            Err(SendError::TooLong { len: 17, max: 16 })
        );
        tx.send(&[7; 16]).unwrap();
        let mut small = [0u8; 4];
        assert_eq!(
            rx.recv(&mut small),
            Err(RecvError::BufferTooSmall { needed: 16 })
        );
        let mut buf = [0u8; 16];
        assert_eq!(rx.recv(&mut buf), Ok(16));
        assert_eq!(buf, [7; 16]);
        tx.send(&[]).unwrap();
        assert_eq!(rx.recv(&mut small), Ok(0));
    }

    #[test]
    fn a_late_reader_starts_at_the_producers_position() {
        let r = std::sync::Arc::new(HeapRegion::new(BroadcastRing::required_size(256, 32)));
        // SAFETY: the region outlives the handles (dropped at the end of the test).
        unsafe {
            BroadcastRing::init(r.as_ptr(), r.len(), 256, 32, 0).unwrap();
            let mut tx = BroadcastRing::producer(r.as_ptr(), r.len(), 1, &|_| true).unwrap();
            for i in 0..130u64 {
                tx.send(&i.to_le_bytes()).unwrap();
            }
            // Published at 128, found at 130 by the stamps: the late reader sees what comes.
            let mut late = BroadcastRing::reader(r.as_ptr(), r.len()).unwrap();
            assert_eq!(late.position(), 130);
            let mut buf = [0u8; 16];
            assert_eq!(late.recv(&mut buf), Err(RecvError::Empty));
            // A second producer is refused while the first lives.
            assert!(matches!(
                BroadcastRing::producer(r.as_ptr(), r.len(), 2, &|_| true),
                Err(AttachError::RoleTaken { holder: 1 })
            ));
            // The producer "dies" without publishing (no drop): its successor continues after
            // the last message, found by the stamps.
            core::mem::forget(tx);
            let mut tx2 = BroadcastRing::producer(r.as_ptr(), r.len(), 2, &|o| o != 1).unwrap();
            assert_eq!(tx2.position(), 130);
            tx2.send(&130u64.to_le_bytes()).unwrap();
            assert_eq!(late.recv(&mut buf), Ok(8));
            assert_eq!(u64::from_le_bytes(buf[..8].try_into().unwrap()), 130);
        }
    }

    /// Finding 12: on rings of fewer than 64 slots the published position (every 64 sends) can
    /// name a slot a later lap overwrote. A reader that attached there was told it had lost
    /// messages sent before it attached (32 here), and a producer taking over from a dead one
    /// went back to the published position and sent over its predecessor's messages.
    #[test]
    fn small_rings_join_at_the_producers_position() {
        for (cap, sent) in [(8u64, 100u64), (2, 3), (16, 127), (32, 96), (8, 64), (4, 1)] {
            for start in STARTS {
                let r = std::sync::Arc::new(HeapRegion::new(BroadcastRing::required_size(cap, 32)));
                // SAFETY: the region outlives the handles (dropped at the end of the test).
                unsafe {
                    BroadcastRing::init(r.as_ptr(), r.len(), cap, 32, start).unwrap();
                    let mut tx =
                        BroadcastRing::producer(r.as_ptr(), r.len(), 1, &|_| true).unwrap();
                    for i in 0..sent {
                        tx.send(&i.to_le_bytes()).unwrap();
                    }
                    let mut late = BroadcastRing::reader(r.as_ptr(), r.len()).unwrap();
                    let mut buf = [0u8; 16];
                    assert_eq!(late.recv(&mut buf), Err(RecvError::Empty), "cap {cap}");
                    assert_eq!(late.position(), start.wrapping_add(sent), "cap {cap}");
                    // The producer dies without publishing; its successor continues after it.
                    core::mem::forget(tx);
                    let mut tx =
                        BroadcastRing::producer(r.as_ptr(), r.len(), 2, &|o| o != 1).unwrap();
                    assert_eq!(tx.position(), start.wrapping_add(sent), "cap {cap}");
                    for i in sent..sent + 3 * cap {
                        tx.send(&i.to_le_bytes()).unwrap();
                        assert_eq!(late.recv(&mut buf), Ok(8));
                        assert_eq!(u64::from_le_bytes(buf[..8].try_into().unwrap()), i);
                    }
                    assert_eq!(late.lost(), 0);
                }
            }
        }
    }

    /// A producer that died in the middle of a message (busy stamp) is resumed at that
    /// message, which is written again; a reader attaching meanwhile waits for it.
    #[test]
    fn a_half_written_message_is_written_again() {
        let (mut tx, _) = HeapRegion::broadcast(4, 32);
        for i in 0..6u64 {
            tx.send(&i.to_le_bytes()).unwrap();
        }
        tx.raw.word(6, 0).store(stamp(6, BUSY), Ordering::Relaxed);
        assert_eq!(tx.raw.producer_position(0), 6);
        let mut late = BroadcastReader {
            raw: tx.raw.clone(),
            cursor: tx.raw.producer_position(0),
            lost: 0,
            pending: 0,
            _not_sync: PhantomData,
        };
        let mut buf = [0u8; 16];
        assert_eq!(late.recv(&mut buf), Err(RecvError::Empty));
        tx.send(&6u64.to_le_bytes()).unwrap();
        assert_eq!(late.recv(&mut buf), Ok(8));
        assert_eq!(buf[0], 6);
    }

    #[test]
    fn hostile_slots_give_errors_or_nothing_never_out_of_bounds() {
        let (mut tx, mut rx) = HeapRegion::broadcast(4, 32);
        tx.send(b"ok").unwrap();
        // Corrupt the length word of the slot the reader reads next (position 0, slot 0).
        tx.raw.word(0, 1).store(1 << 40, Ordering::Relaxed);
        let mut buf = [0u8; 16];
        assert!(matches!(rx.recv(&mut buf), Err(RecvError::Corrupt(_))));
        // Random stamps: the reader waits, skips or reports, never panics.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..if cfg!(miri) { 50 } else { 5000 } {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            tx.raw
                .word(x, (x >> 60) as usize % 2)
                .store(x, Ordering::Relaxed);
            let _ = rx.recv(&mut buf);
        }
    }

    #[test]
    fn attach_rejects_bad_geometry() {
        let r = HeapRegion::new(BroadcastRing::required_size(4, 32));
        // SAFETY: the region outlives the handles, which are dropped at once.
        unsafe {
            assert!(matches!(
                BroadcastRing::init(r.as_ptr(), r.len(), 4, 20, 0),
                Err(AttachError::Corrupt(_))
            ));
            assert!(matches!(
                BroadcastRing::init(r.as_ptr(), r.len(), 3, 32, 0),
                Err(AttachError::BadCapacity(3))
            ));
            assert!(matches!(
                BroadcastRing::init(r.as_ptr(), r.len() - 8, 4, 32, 0),
                Err(AttachError::RegionTooSmall { .. })
            ));
            BroadcastRing::init(r.as_ptr(), r.len(), 4, 32, 0).unwrap();
            // A hostile element word: a slot larger than the region holds.
            let elem = r.as_ptr().add(16).cast::<u64>();
            elem.write((1 << 20) | (8 << 32));
            assert!(matches!(
                BroadcastRing::reader(r.as_ptr(), r.len()),
                Err(AttachError::RegionTooSmall { .. })
            ));
            elem.write(32 | (4 << 32));
            assert!(matches!(
                BroadcastRing::reader(r.as_ptr(), r.len()),
                Err(AttachError::WrongElement { .. })
            ));
        }
    }

    /// One producer, three reader threads (one slow): no reader ever gets a torn message, the
    /// slow one's deliveries plus losses add up.
    #[test]
    fn threads_never_see_a_torn_message() {
        let n: u64 = if cfg!(miri) { 200 } else { 200_000 };
        let (mut tx, rx) = HeapRegion::broadcast(16, 64);
        let max = tx.max_message();
        let readers: Vec<_> = (0..3)
            .map(|k| {
                let mut rx = rx.clone();
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; max];
                    let (mut got, mut next) = (0u64, 0u64);
                    while next < n {
                        match rx.recv(&mut buf) {
                            Ok(len) => {
                                assert_eq!(check(&buf[..len], max), next);
                                next += 1;
                                got += 1;
                                if k == 2 && got % 64 == 0 {
                                    std::thread::yield_now();
                                }
                            }
                            Err(RecvError::Lapped { lost }) => next += lost,
                            Err(RecvError::Empty) => std::thread::yield_now(),
                            Err(e) => panic!("{e}"),
                        }
                    }
                    assert_eq!(next, n);
                    (got, rx.lost())
                })
            })
            .collect();
        drop(rx);
        for seq in 0..n {
            tx.send(&msg(seq, max)).unwrap();
        }
        drop(tx);
        for r in readers {
            let (got, lost) = r.join().unwrap();
            assert_eq!(got + lost, n);
        }
    }
}
