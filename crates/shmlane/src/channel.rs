//! Channels: a segment with a channel header, a ring and two events.
//!
//! ```text
//! region "chan" (CHAN_SIZE = 384 bytes, three cache-line pairs, all u64 atomics)
//!   0   magic b"SHMLCHAN"     8  kind (1 spsc, 2 mpmc, 3 bytes, 4 broadcast, 5 latest)
//!   16  element size (1 for bytes and broadcast)          24 capacity (bytes: ring bytes)
//!   32  msg_size (the largest message in bytes, for byte channels; element size otherwise)
//!   40  senders attached      48 receivers attached
//!   56  senders joined        64 receivers joined (endpoints ever made, counting up)
//!   72  flags: bit 0 = remove the name when the last endpoint leaves cleanly,
//!             bit 1 = every message carries a CRC32C (byte and broadcast channels)
//!   80  senders that never wake   88 receivers that never wake (`Wakes::Never` endpoints
//!       attached now: their peers' blocking waits park at most `NEVER_WAKE_POLL` per slice)
//!   128 sender statistics:    messages, bytes, full events, sleeps, wake-ups issued
//!   256 receiver statistics:  messages, bytes, empty events, sleeps, wake-ups issued,
//!                             lost (bytes: dead or stalled senders' records skipped;
//!                             broadcast: messages subscribers lost to laps)
//! region "ring"     the SPSC, MPMC, record or broadcast ring (shmlane-ring)
//! region "ev-data"  event: receivers sleep on it, senders notify it
//! region "ev-space" event: senders sleep on it (ring full), receivers notify it
//! region "type"     the element type: size, alignment, name hash and length, the name's
//!                   first 112 bytes (see `channel/elem.rs`)
//! ```

use core::{marker::PhantomData, ptr::NonNull};
use std::{
    os::unix::fs::FileExt,
    sync::{
        Arc,
        atomic::{AtomicU32, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use bytemuck::Pod;
use shmlane_ring::{BroadcastRing, Hole, MpmcRing, PopError, PushError, RecordRing, SpscRing};
use shmlane_segment::{Location, Segment, SegmentInfo, UnlinkPolicy};
use shmlane_wake::{Deadline, EVENT_SIZE, Event, WaitStrategy};

use crate::error::{ConfigError, OpenError, RecvError, SendError, TryRecvError, TrySendError};

const CHAN_MAGIC: u64 = u64::from_le_bytes(*b"SHMLCHAN");
const CHAN_SIZE: u64 = 384;
/// Region kind tags in the segment directory.
const REGION_CHAN: u32 = 0x4348;
const REGION_RING: u32 = 0x5249;
const REGION_EVENT: u32 = 0x4556;
/// Channel header flag: remove the name when the last endpoint leaves cleanly.
const FLAG_UNLINK: u64 = 1;
/// Channel header flag: every message carries a CRC32C of its length and bytes.
const FLAG_CHECKSUM: u64 = 2;
/// Bytes of the checksum after each message of a checksummed channel.
pub(crate) const CHECKSUM_BYTES: usize = 4;

/// The checksum of a message on a checksummed channel: CRC32C (Castagnoli) of its length (a
/// little-endian u32) and its bytes.
pub(crate) fn checksum(msg: &[u8]) -> [u8; CHECKSUM_BYTES] {
    let len = u32::try_from(msg.len()).unwrap_or(u32::MAX);
    crc32c::crc32c_append(crc32c::crc32c(&len.to_le_bytes()), msg).to_le_bytes()
}

/// A blocked endpoint re-checks its peers' liveness at least this often.
pub(crate) const PEER_CHECK: Duration = Duration::from_millis(50);
/// A blocked MPMC endpoint looks for a hole a dead peer left at its position (and recovers
/// it) at most this often (module docs of `shmlane_ring::mpmc`).
const HOLE_CHECK: Duration = Duration::from_millis(10);
/// Local statistics are added to the shared ones every this many operations.
const STATS_EVERY: u64 = 64;

/// Attachment role tag of a process holding a sending endpoint.
pub const ROLE_SENDER: u32 = 1;
/// Attachment role tag of a process holding a receiving endpoint.
pub const ROLE_RECEIVER: u32 = 2;

/// Channel kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// One producer, one consumer.
    Spsc = 1,
    /// Any number of senders and receivers.
    Mpmc = 2,
    /// Byte messages of any length up to a maximum, any number of senders, one receiver
    /// (a record ring).
    Bytes = 3,
    /// Byte messages fanned out to any number of subscribers, one publisher that never waits
    /// (a broadcast ring).
    Broadcast = 4,
    /// The newest value only ("blackboard"): any number of writers that never wait, any number
    /// of readers that read the newest complete value (a latest-value region).
    Latest = 5,
}

impl Kind {
    /// The kind's name: `spsc`, `mpmc`, `bytes`, `broadcast` or `latest`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Spsc => "spsc",
            Self::Mpmc => "mpmc",
            Self::Bytes => "bytes",
            Self::Broadcast => "broadcast",
            Self::Latest => "latest",
        }
    }
    /// The endpoints a channel of this kind has (for [`OpenError::WrongKind`]).
    pub fn endpoints(self) -> &'static str {
        match self {
            Self::Spsc => "producer() and consumer()",
            Self::Mpmc => "sender() and receiver()",
            Self::Bytes => "byte_sender() and byte_receiver()",
            Self::Broadcast => {
                "publisher() and subscriber() (typed: typed_publisher() and typed_subscriber())"
            }
            Self::Latest => "writer() and reader()",
        }
    }
    fn from_word(w: u64) -> Option<Self> {
        match w {
            1 => Some(Self::Spsc),
            2 => Some(Self::Mpmc),
            3 => Some(Self::Bytes),
            4 => Some(Self::Broadcast),
            5 => Some(Self::Latest),
            _ => None,
        }
    }
}

#[repr(C)]
pub(crate) struct Header {
    magic: AtomicU64,
    kind: AtomicU64,
    elem: AtomicU64,
    capacity: AtomicU64,
    msg_size: AtomicU64,
    counts: [AtomicU64; 2],
    /// Endpoints of each side ever made (counting up): an endpoint that sees its peer side's
    /// count move knows a peer attached after it, however briefly.
    joins: [AtomicU64; 2],
    /// Bit 0: created to be removed when its last endpoint leaves cleanly (so openers should
    /// open it with `UnlinkPolicy::LastDetach` too).
    flags: AtomicU64,
    /// `Wakes::Never` endpoints of each side attached now (0 in channels made before them):
    /// a blocked peer parks at most `NEVER_WAKE_POLL` per slice while its peer side's count is
    /// not 0. Only a hint for the slice: any value (a dead process's count left behind, a
    /// hostile one) changes how often a blocked call looks, nothing else.
    pub(crate) never: [AtomicU64; 2],
    _pad0: [u64; 4],
    pub(crate) stats: [[AtomicU64; 16]; 2],
}

const _: () = assert!(size_of::<Header>() as u64 == CHAN_SIZE);

/// What an endpoint does once its peers have all left ([`Builder::when_peers_leave`]).
///
/// Default: `Wait` for a persistent channel (`UnlinkPolicy::Never`), `Disconnect` for one
/// removed when its last endpoint leaves (`UnlinkPolicy::LastDetach` or `CreatorDrop`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeersLeave {
    /// Never `Disconnected`: a receiver whose senders all left waits (until its deadline) for
    /// one to appear again, a sender whose receivers left keeps filling the ring and then
    /// waits, a subscriber waits for a restarted publisher. A peer's death is reported once
    /// (`PeerDied`, after what it sent was delivered); the next call waits again.
    Wait,
    /// Pipe-like: `Disconnected` once every peer this endpoint has seen (observed attached, or
    /// received a message from) has left cleanly and the ring is drained; an endpoint that has
    /// never seen a peer waits for one (until its deadline). `Disconnected` and `PeerDied` are
    /// final: later calls return them at once (after delivering anything still in the ring).
    Disconnect,
}

/// Whether an endpoint's operations wake a peer that sleeps waiting for them
/// ([`Builder::wakes`] for every endpoint of a handle, `set_wakes` on one endpoint).
///
/// Real-time: a `Never` endpoint's operations make no system call, even while its peer sleeps
/// (a `Peers` endpoint's notify is a fence and a load, plus a futex wake when a peer sleeps).
/// Its peers pay instead: while a `Never` endpoint is attached, their blocking calls (`send`
/// on a full ring, `recv` on an empty one, a byte claim, a subscriber's `recv`) park at most
/// [`NEVER_WAKE_POLL`] at a time and look again, so they see the never-waking side's progress
/// within that slice (plus scheduling), and still leave by their deadlines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Wakes {
    /// Default: an operation that makes room or data wakes a peer that sleeps for it (a futex
    /// wake, only when one sleeps).
    #[default]
    Peers,
    /// Never a system call: the endpoint skips the wake-up and records itself in the channel
    /// header (a count per side), so its peers poll every [`NEVER_WAKE_POLL`] while they wait.
    /// For the real-time side (an audio callback, a trading loop) whose peer may block.
    /// Creating and dropping the endpoint, and `set_wakes` itself, may still wake a peer once.
    Never,
}

/// The longest a blocked endpoint parks at a time while a never-waking endpoint
/// ([`Wakes::Never`]) of its peer side is attached: 1 ms. A peer's progress is seen within
/// it (plus the scheduler's delay), without a wake-up.
pub const NEVER_WAKE_POLL: Duration = Duration::from_millis(1);

/// Which side an endpoint is on; indexes `counts`, `joins` and `stats`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    Send = 0,
    Recv = 1,
}

impl Side {
    fn role(self) -> u32 {
        match self {
            Self::Send => ROLE_SENDER,
            Self::Recv => ROLE_RECEIVER,
        }
    }
    pub(crate) fn peer(self) -> Self {
        match self {
            Self::Send => Self::Recv,
            Self::Recv => Self::Send,
        }
    }
}

/// One side's counters, as stored in the channel header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SideStats {
    /// Messages sent (or received).
    pub messages: u64,
    /// Payload bytes sent (or received). Byte and broadcast channels: the messages' lengths
    /// (without record headers or padding; a typed broadcast's messages are one element each).
    /// Typed channels (SPSC, MPMC): each message counts the payload its endpoint said it carried
    /// ([`Producer::count_payload`] and the same on `Consumer`, `Sender`, `Receiver`; the
    /// `shmlane` command says it for every line, frame and chunk), and `size_of::<T>()`, its
    /// whole element, when nobody said (so messages × element size for a user who never calls
    /// it). `shmlane stat` shows it as `payload_bytes` for every kind.
    pub bytes: u64,
    /// Times an operation found the ring full (senders) or empty (receivers).
    pub stalls: u64,
    /// Times an endpoint went to wait (spin, then maybe park).
    pub sleeps: u64,
    /// Notifies that found a sleeper and issued a futex wake.
    pub wakeups: u64,
    /// Receivers of byte channels: records skipped because their sender died or stalled
    /// between claim and commit. Broadcast subscribers: messages lost to laps. MPMC receivers:
    /// positions skipped because their sender died between taking the position and
    /// publishing the message; MPMC senders: slots given back because the receiver that had
    /// taken their message died before releasing it (that message may not have been processed).
    pub lost: u64,
}

/// What a channel header and its ring say, for `shmlane stat` and `shmlane ls`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelStats {
    /// SPSC or MPMC.
    pub kind: Kind,
    /// Slots in the ring.
    pub capacity: u64,
    /// Bytes per element.
    pub elem_size: u64,
    /// Largest message in bytes.
    pub msg_size: u64,
    /// Messages in the ring now (SPSC, MPMC); byte channels: the bytes their unread records
    /// take (headers and padding included); broadcast: 0 (each subscriber has its own
    /// position); latest: 1 once written, else 0.
    pub len: u64,
    /// Ring positions: next write, next read.
    pub positions: (u64, u64),
    /// Senders and receivers attached now (left cleanly are not counted).
    pub endpoints: (u64, u64),
    /// Whether the channel's name is removed when its last endpoint leaves cleanly (open it
    /// with `UnlinkPolicy::LastDetach` too).
    pub remove_on_last_leave: bool,
    /// Whether every message carries a CRC32C (byte and broadcast channels).
    pub checksum: bool,
    /// The element type recorded at creation (`None`: no type record, a channel made before
    /// shmlane recorded types, opening it fails with [`OpenError::NoTypeRecord`]; or a region
    /// too small for the record, [`OpenError::DamagedTypeRecord`]).
    pub elem_type: Option<ElemType>,
    /// Sender-side statistics.
    pub sent: SideStats,
    /// Receiver-side statistics.
    pub received: SideStats,
    /// Senders and receivers attached with [`Wakes::Never`] (they never wake their peers,
    /// whose blocking calls park at most [`NEVER_WAKE_POLL`] at a time while the count is not
    /// 0). As the header says: a hostile process can write any value here.
    pub never_waking: (u64, u64),
}

/// Reads a channel's header and ring positions from a segment file without attaching to it
/// (so listing never changes what it lists). `None` if it is not a readable channel.
pub fn inspect(info: &SegmentInfo) -> Option<ChannelStats> {
    let chan = info.regions.iter().find(|r| r.name == "chan")?;
    let ring = info.regions.iter().find(|r| r.name == "ring")?;
    if chan.size < CHAN_SIZE || ring.size < 384 {
        return None;
    }
    let file = std::fs::File::open(&info.path).ok()?;
    let mut buf = [0u8; CHAN_SIZE as usize];
    file.read_exact_at(&mut buf, chan.offset).ok()?;
    let word = |i: usize| u64::from_ne_bytes(buf[i * 8..i * 8 + 8].try_into().unwrap());
    if word(0) != CHAN_MAGIC {
        return None;
    }
    let kind = Kind::from_word(word(1))?;
    let side = |base: usize| SideStats {
        messages: word(base),
        // As `Local::shared_stats`: word 6 holds the element bytes typed messages left unused.
        bytes: word(base + 1).saturating_sub(word(base + 6)),
        stalls: word(base + 2),
        sleeps: word(base + 3),
        wakeups: word(base + 4),
        lost: word(base + 5),
    };
    let mut pos = [0u8; 8];
    file.read_exact_at(&mut pos, ring.offset + 128).ok()?;
    let first = u64::from_ne_bytes(pos);
    file.read_exact_at(&mut pos, ring.offset + 256).ok()?;
    let second = u64::from_ne_bytes(pos);
    // SPSC and record: tail at 128, head at 256; MPMC: enqueue at 128, dequeue at 256;
    // broadcast: the publisher's position at 128 (subscribers' cursors are private); latest:
    // the writers' ticket at 128, the newest version at 256 (one value, or none yet).
    let second = if kind == Kind::Broadcast {
        first
    } else {
        second
    };
    let len = if kind == Kind::Latest {
        u64::from(second != 0)
    } else {
        first.wrapping_sub(second)
    };
    let capacity = word(3);
    let elem_type = info
        .regions
        .iter()
        // As `open` reads it: the record's words, whatever the region's size beyond them.
        .find(|r| r.name == "type" && r.size >= (TYPE_WORDS * 8) as u64)
        .and_then(|r| {
            let mut buf = [0u8; TYPE_WORDS * 8];
            file.read_exact_at(&mut buf, r.offset).ok()?;
            let words = core::array::from_fn(|i| {
                u64::from_ne_bytes(buf[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]))
            });
            Some(ElemType::from_words(&words))
        });
    Some(ChannelStats {
        kind,
        capacity,
        elem_size: word(2),
        msg_size: word(4),
        len: len.min(capacity),
        positions: (first, second),
        endpoints: (word(5), word(6)),
        remove_on_last_leave: word(9) & FLAG_UNLINK != 0,
        checksum: word(9) & FLAG_CHECKSUM != 0,
        elem_type,
        sent: side(16),
        received: side(32),
        // Bytes 80 and 88 (module docs).
        never_waking: (word(10), word(11)),
    })
}

/// Messages in a ring (byte rings: bytes its records take), from its positions, without
/// taking a role: SPSC and record rings keep their tail at byte 128 and head at 256, MPMC rings
/// their enqueue and dequeue positions there. Broadcast rings: 0 (subscribers start at the
/// newest message, nothing is replayed). Hostile values are clamped to `cap`.
///
/// # Safety
/// `ring` must be 8-byte aligned and valid for reads of `len` bytes, whose words others access
/// only atomically.
pub(crate) unsafe fn ring_unread(kind: Kind, ring: *const u8, len: usize, cap: u64) -> u64 {
    if matches!(kind, Kind::Broadcast | Kind::Latest) || len < 384 {
        return 0;
    }
    let word = |off: usize| {
        // SAFETY: in bounds (len >= 384) and aligned (caller); a shared word, read atomically.
        let w = unsafe { &*ring.add(off).cast::<AtomicU64>() };
        // ORDERING: Acquire; pairs with the Release stores of the positions by the ring's
        // endpoints: a position read here includes what its endpoint did before moving it.
        w.load(Ordering::Acquire)
    };
    // The head first: it never passes the tail, so a tail read after it is at least as far.
    let head = word(256);
    let tail = word(128);
    tail.wrapping_sub(head).min(cap)
}

/// Messages a byte ring holds: the records between its head and tail (committed, or claimed by
/// a sender that may yet commit: one message each; padding: none), by a walk of their headers
/// from the head, without taking a role. Each step moves at least 8 bytes and never past the
/// tail, so the walk ends within `cap / 8` steps whatever the shared words say; a header that
/// makes no sense (or none written yet) counts as one message and ends it. `ring_unread` gives
/// the bytes instead, which is what the stale check and the name keeping decide on.
///
/// # Safety
/// As [`ring_unread`].
pub(crate) unsafe fn record_messages(ring: *const u8, len: usize, cap: u64) -> u64 {
    let word = |off: usize| {
        // SAFETY: every caller passes `off + 8 <= len` (checked below), 8-aligned (the region
        // is, the offsets are multiples of 8); a shared word, read atomically.
        let w = unsafe { &*ring.add(off).cast::<AtomicU64>() };
        // ORDERING: Acquire; pairs with the Release stores of the positions and the senders'
        // commit CAS (Release) on the headers, as the receiver's own reads.
        w.load(Ordering::Acquire)
    };
    let data = RecordRing::required_size(0);
    let geometry_ok = len >= 384
        && cap.is_power_of_two()
        && cap >= 8
        && usize::try_from(cap)
            .ok()
            .and_then(|c| c.checked_add(data))
            .is_some_and(|end| end <= len);
    if !geometry_ok {
        return 0;
    }
    let head = word(256);
    let tail = word(128);
    let ahead = tail.wrapping_sub(head);
    if ahead == 0 {
        return 0;
    }
    if ahead > cap || head % 8 != 0 {
        return 1;
    }
    let (mut pos, mut n) = (head, 0u64);
    while pos != tail {
        let off = pos & (cap - 1);
        // `off + 8 <= cap` (a multiple of 8 below a power of two of at least 8), so in bounds.
        let w = word(data + off as usize);
        let (state, payload) = ((w >> 32) & 3, w & 0xffff_ffff);
        let size = (8 + payload + 7) & !7;
        let fits = off + size <= cap && size <= tail.wrapping_sub(pos);
        if w == 0 || !fits {
            // No header yet (a claim in progress, or a dead sender's), or nonsense: one more.
            return n + 1;
        }
        // 3: padding; 0: an empty state with a length is nonsense, counted as above.
        match state {
            3 => {}
            0 => return n + 1,
            _ => n += 1,
        }
        pos = pos.wrapping_add(size);
    }
    n
}

mod builder;
mod elem;
mod endpoints;
mod latest;
mod local;
mod raw;

use elem::TYPE_WORDS;
pub use elem::{ElemType, TYPE_NAME_STORED, fnv1a64};

pub use builder::{Builder, broadcast, broadcast_of, bytes, latest, mpmc, spsc};
#[cfg(feature = "tokio")]
pub(crate) use endpoints::HasRoom;
pub use endpoints::{Consumer, Producer, Receiver, Sender};
pub use latest::{
    LatestError, LatestReader, LatestWriter, RawLatestBuilder, RawLatestChannel, RawLatestReader,
    RawLatestWriter, raw_latest,
};
pub(crate) use local::{Life, Local, Owned};
pub use raw::{
    ElemError, RawBuilder, RawChannel, RawConsumer, RawProducer, RawReceiver, RawSender,
    default_type_name, raw_broadcast, raw_mpmc, raw_spsc,
};

/// Words at the start of every ring that never change once it is created: magic, kind,
/// element word, capacity (`shmlane_ring`'s `Meta`, see docs/design.md).
const RING_IDENTITY_WORDS: usize = 4;

/// What the segment, channel and ring headers said when this handle opened the channel: fixed
/// for the channel's life, so any change is corruption (a hostile or broken process writing
/// over the segment). Re-checked by the periodic peer checks ([`Inner::peer_state`]).
#[derive(Clone, Copy, Debug)]
struct Identity {
    seg: shmlane_segment::SegmentHeader,
    /// Channel header: magic, kind, element size, capacity, largest message, flags.
    chan: [u64; 6],
    ring: [u64; RING_IDENTITY_WORDS],
    /// The type record (region `type`).
    ty: [u64; TYPE_WORDS],
}

fn chan_identity(h: &Header) -> [u64; 6] {
    // ORDERING: Relaxed for all: written once before the segment was published (the
    // segment's open Acquire-loads init_state); compared, never used for anything else.
    [
        h.magic.load(Ordering::Relaxed),
        h.kind.load(Ordering::Relaxed),
        h.elem.load(Ordering::Relaxed),
        h.capacity.load(Ordering::Relaxed),
        h.msg_size.load(Ordering::Relaxed),
        h.flags.load(Ordering::Relaxed),
    ]
}

/// The ring's identity words.
///
/// # Safety
/// `ring` must be 8-byte aligned and valid for reads of `RING_IDENTITY_WORDS` words, which
/// others access only atomically.
unsafe fn ring_identity(ring: *mut u8) -> [u64; RING_IDENTITY_WORDS] {
    core::array::from_fn(|i| {
        // SAFETY: in bounds and aligned (caller); a shared word, so read atomically.
        let w = unsafe { &*ring.cast::<AtomicU64>().add(i) };
        // ORDERING: Relaxed; written once at creation, compared only.
        w.load(Ordering::Relaxed)
    })
}

pub(crate) struct Inner {
    hdr: NonNull<Header>,
    pub(crate) ev_data: Event,
    pub(crate) ev_space: Event,
    /// The headers as opened, re-checked by the peer checks.
    ident: Identity,
    /// Every message carries a checksum (header flag, read once at open).
    pub(crate) checksum: bool,
    /// The largest message (header `msg_size`, read once at open; byte channels refuse
    /// longer ones, whatever the ring could hold).
    pub(crate) msg_max: u64,
    /// The element type recorded in the channel (read once at open, checked against `T`).
    elem_type: ElemType,
    /// Where the type record lives (in `seg`), for the identity re-check.
    ty_at: *mut u8,
    pub(crate) ring: (*mut u8, usize),
    /// Endpoints of each side this process holds through this channel handle.
    roles: [AtomicU32; 2],
    pub(crate) name: String,
    pub(crate) kind: Kind,
    strategy: WaitStrategy,
    /// What this handle's endpoints do once their peers left.
    pub(crate) mode: PeersLeave,
    /// Whether this handle's endpoints wake their peers (each may change its own).
    pub(crate) wakes: Wakes,
    /// Declared last: dropped after the events and pointers into it.
    pub(crate) seg: Segment,
}

// SAFETY: the raw pointers point into the segment owned by `Inner` itself; everything shared
// is accessed through atomics or the ring and event handles.
unsafe impl Send for Inner {}
// SAFETY: as above; `&Inner` only exposes atomics.
unsafe impl Sync for Inner {}

impl Inner {
    pub(crate) fn hdr(&self) -> &Header {
        // SAFETY: points into the segment this struct owns; atomics only.
        unsafe { self.hdr.as_ref() }
    }

    fn update_role(&self) {
        // ORDERING: Relaxed; process-local bookkeeping, the tag is informational for others.
        let mut role = 0;
        if self.roles[0].load(Ordering::Relaxed) > 0 {
            role |= ROLE_SENDER;
        }
        // ORDERING: as above.
        if self.roles[1].load(Ordering::Relaxed) > 0 {
            role |= ROLE_RECEIVER;
        }
        self.seg.set_role(role);
    }

    fn join(&self, side: Side) {
        // ORDERING: Relaxed; local bookkeeping.
        self.roles[side as usize].fetch_add(1, Ordering::Relaxed);
        self.update_role();
        let h = self.hdr();
        // ORDERING: Relaxed; the counters decide only disconnection, read after the ring's
        // own Acquire loads.
        h.counts[side as usize].fetch_add(1, Ordering::Relaxed);
        // ORDERING: Release, after the count and the role above; pairs with the Acquire load
        // in `joins`: a peer that sees this join also sees the count it added (else its fast
        // path, `Life::gone`, could read "seen, none attached" and report `Disconnected` for a
        // peer still there) and this attachment's role (`wait_for_peer` finds it at once).
        h.joins[side as usize].fetch_add(1, Ordering::Release);
        // Wake peers waiting for an endpoint of this side (`wait_for_peer`, a blocked call of an
        // endpoint that has not seen a peer yet).
        self.ev_data.notify();
        self.ev_space.notify();
    }

    /// Endpoints of `side` attached now by the shared count (a process that died attached
    /// stays counted: a hint for the fast path only, never a reason to report anything).
    pub(crate) fn count(&self, side: Side) -> u64 {
        // ORDERING: Acquire; pairs with the Release decrement in `leave`: everything a peer
        // published before leaving is visible once its leave is.
        self.hdr().counts[side as usize].load(Ordering::Acquire)
    }

    /// Endpoints of `side` ever made.
    pub(crate) fn joins(&self, side: Side) -> u64 {
        // ORDERING: Acquire; pairs with the Release increment in `join` (see there).
        self.hdr().joins[side as usize].load(Ordering::Acquire)
    }

    fn leave(&self, side: Side) {
        // ORDERING: Release; pairs with the Acquire load in `count`: everything this
        // endpoint published happens-before a peer sees it gone.
        self.hdr().counts[side as usize].fetch_sub(1, Ordering::Release);
        // ORDERING: Relaxed; local bookkeeping.
        self.roles[side as usize].fetch_sub(1, Ordering::Relaxed);
        self.update_role();
        // Wake the other side so a blocked peer notices at once.
        self.ev_data.notify();
        self.ev_space.notify();
    }

    /// Never-waking endpoints of `side` attached now, by the header's count (any value a
    /// process left there: only ever used to choose a wait's park slice).
    pub(crate) fn never_wakers(&self, side: Side) -> u64 {
        // ORDERING: Relaxed; a hint for the park slice. The switch to `Never` is ordered against
        // a waiter's sleep by the event's fences (`Local::set_wakes` notifies after the
        // increment; the waiter's condition reads the count after registering as a sleeper).
        self.hdr().never[side as usize].load(Ordering::Relaxed)
    }

    /// The longest a blocked endpoint of `side` parks at a time: `NEVER_WAKE_POLL` while a
    /// never-waking peer is attached, `PEER_CHECK` (its liveness checks) otherwise.
    pub(crate) fn park_slice(&self, side: Side) -> Duration {
        if self.never_wakers(side.peer()) == 0 {
            PEER_CHECK
        } else {
            NEVER_WAKE_POLL
        }
    }

    /// Counts one never-waking endpoint of `side` in (`true`) or out.
    pub(crate) fn count_never(&self, side: Side, add: bool) {
        let w = &self.hdr().never[side as usize];
        // ORDERING: Relaxed; a hint (see `never_wakers`); the notify after an increment
        // carries the SeqCst fence that orders it before the peer's sleeper check.
        if add {
            w.fetch_add(1, Ordering::Relaxed);
        } else {
            w.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Whether the segment, channel and ring headers still say what they said at open (they
    /// never change in a sound channel). Slow path only: part of the peer checks.
    pub(crate) fn intact(&self) -> Result<(), &'static str> {
        if self.seg.header() != self.ident.seg {
            return Err("the segment header changed");
        }
        if chan_identity(self.hdr()) != self.ident.chan {
            return Err("the channel header changed");
        }
        // SAFETY: checked at open: the ring region is aligned and holds the words; it lives as
        // long as `seg`.
        if unsafe { ring_identity(self.ring.0) } != self.ident.ring {
            return Err("the ring header changed");
        }
        // SAFETY: checked at open: the type region is aligned and holds the words; it lives
        // as long as `seg`.
        if unsafe { elem::read_words(self.ty_at) } != self.ident.ty {
            return Err("the type record changed");
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Peers {
    /// A live peer is attached.
    Live,
    /// No live peer, and a peer died since this endpoint attached (or since the last death it
    /// reported): report `PeerDied` once what the ring holds is delivered.
    Died,
    /// `PeersLeave::Disconnect` only: every peer this endpoint has seen left cleanly.
    Left,
    /// Nothing to report: no peer yet, or (`Wait`) peers left; keep waiting.
    NotYet,
    /// The headers changed under the channel: corrupt (what changed).
    Corrupt(&'static str),
}

/// An open channel; take endpoints from it. Cheap to clone (an `Arc`).
pub struct Channel<T> {
    pub(crate) inner: Arc<Inner>,
    _t: PhantomData<T>,
}

impl<T> Clone for Channel<T> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            _t: PhantomData,
        }
    }
}

impl<T> core::fmt::Debug for Channel<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Channel")
            .field("name", &self.inner.name)
            .field("kind", &self.inner.kind)
            .finish_non_exhaustive()
    }
}

impl<T: Pod + Send> Channel<T> {
    /// The channel's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Whether this handle created the segment.
    pub fn created(&self) -> bool {
        self.inner.seg.created()
    }

    /// The channel's kind.
    pub fn kind(&self) -> Kind {
        self.inner.kind
    }

    /// The element type the channel records (checked against `T` and the builder's
    /// [`type_name`](crate::Builder::type_name) when it was opened).
    pub fn elem_type(&self) -> ElemType {
        self.inner.elem_type
    }

    /// Endpoint constructors first check that the channel is of the kind that has them:
    /// `wanted` names the endpoint asked for.
    pub(crate) fn check_kind(&self, kind: Kind, wanted: &'static str) -> Result<(), OpenError> {
        if self.inner.kind == kind {
            return Ok(());
        }
        Err(OpenError::WrongKind {
            name: self.inner.name.clone(),
            kind: self.inner.kind,
            wanted,
        })
    }

    /// Owner token for ring role claims: this attachment's slot and generation (a later
    /// holder of a dead process's slot is not taken for it).
    pub(crate) fn token(&self) -> u64 {
        u64::from(self.inner.seg.owner_tag())
    }

    /// Endpoints are made only by the process that opened the handle: in a child made by
    /// `fork`, the attachment is the parent's, and the parent would look dead to it (its lock
    /// is held through the very file description the child shares), so the child would take
    /// over the parent's roles and skip its messages in flight.
    pub(crate) fn check_here(&self) -> Result<(), OpenError> {
        if self.inner.seg.attached_here() {
            Ok(())
        } else {
            Err(OpenError::Forked(self.inner.name.clone()))
        }
    }

    pub(crate) fn local(&self, side: Side) -> Local {
        // The baseline before joining: deaths already in the table are never this endpoint's.
        let life = Box::new(Life::new(&self.inner, side.peer()));
        let wakes = self.inner.wakes;
        if wakes == Wakes::Never {
            // Before the join: its notify then wakes a peer parked on the long slice, which
            // looks again and finds the count.
            self.inner.count_never(side, true);
        }
        self.inner.join(side);
        Local {
            wakes,
            life,
            inner: self.inner.clone(),
            side,
            stats: SideStats::default(),
            last_flush: Instant::now(),
            misses: 0,
            next_hole_check: None,
            holes_in_a_row: 0,
            positions_corrupt: false,
            pid: std::process::id(),
        }
    }

    /// The SPSC producer: at most one per channel, across processes and within one (a second
    /// call, from any handle or thread, fails with [`OpenError::RoleTaken`] until the first
    /// is dropped); one left by a dead process is taken over.
    pub fn producer(&self) -> Result<Producer<T>, OpenError> {
        self.check_kind(Kind::Spsc, "producer")?;
        self.check_here()?;
        let (ptr, len) = self.inner.ring;
        let seg = &self.inner.seg;
        let alive = |t: u64| u32::try_from(t).is_ok_and(|t| seg.tag_alive(t));
        // SAFETY: the ring region lives as long as the segment, which the endpoint keeps
        // alive through `Local::inner`.
        let ring = unsafe { SpscRing::<T>::producer(ptr, len, self.token(), &alive) }
            .map_err(|e| OpenError::for_role(e, &self.inner.name, "producer", seg))?;
        Ok(Producer {
            ring: Owned::new(ring),
            local: self.local(Side::Send),
        })
    }

    /// The SPSC consumer: at most one per channel, as for [`producer`](Self::producer).
    pub fn consumer(&self) -> Result<Consumer<T>, OpenError> {
        self.check_kind(Kind::Spsc, "consumer")?;
        self.check_here()?;
        let (ptr, len) = self.inner.ring;
        let seg = &self.inner.seg;
        let alive = |t: u64| u32::try_from(t).is_ok_and(|t| seg.tag_alive(t));
        // SAFETY: as in `producer`.
        let ring = unsafe { SpscRing::<T>::consumer(ptr, len, self.token(), &alive) }
            .map_err(|e| OpenError::for_role(e, &self.inner.name, "consumer", seg))?;
        Ok(Consumer {
            ring: Owned::new(ring),
            local: self.local(Side::Recv),
        })
    }

    /// An MPMC sender (any number).
    pub fn sender(&self) -> Result<Sender<T>, OpenError> {
        self.check_kind(Kind::Mpmc, "sender")?;
        self.check_here()?;
        let (ptr, len) = self.inner.ring;
        let seg = &self.inner.seg;
        let alive = |t: u64| u32::try_from(t).is_ok_and(|t| seg.tag_alive(t));
        // SAFETY: as in `producer`.
        let ring = unsafe { MpmcRing::<T>::sender_owned(ptr, len, self.token(), &alive)? };
        Ok(Sender {
            ring: Owned::new(ring),
            local: self.local(Side::Send),
        })
    }

    /// An MPMC receiver (any number).
    pub fn receiver(&self) -> Result<Receiver<T>, OpenError> {
        self.check_kind(Kind::Mpmc, "receiver")?;
        self.check_here()?;
        let (ptr, len) = self.inner.ring;
        let seg = &self.inner.seg;
        let alive = |t: u64| u32::try_from(t).is_ok_and(|t| seg.tag_alive(t));
        // SAFETY: as in `producer`.
        let ring = unsafe { MpmcRing::<T>::receiver_owned(ptr, len, self.token(), &alive)? };
        Ok(Receiver {
            ring: Owned::new(ring),
            local: self.local(Side::Recv),
        })
    }
}
