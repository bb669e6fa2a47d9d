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
mod tests;
