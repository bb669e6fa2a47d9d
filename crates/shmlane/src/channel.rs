//! Channels: a segment with a channel header, a ring and two events.
//!
//! ```text
//! region "chan" (CHAN_SIZE = 384 bytes, three cache-line pairs, all u64 atomics)
//!   0   magic b"SHMLCHAN"     8  kind (1 spsc, 2 mpmc, 3 bytes, 4 broadcast)
//!   16  element size (1 for bytes and broadcast)          24 capacity (bytes: ring bytes)
//!   32  msg_size (the largest message in bytes, for byte channels; element size otherwise)
//!   40  senders attached      48 receivers attached
//!   56  senders ever (0/1)    64 receivers ever (0/1)
//!   72  flags: bit 0 = remove the name when the last endpoint leaves cleanly,
//!             bit 1 = every message carries a CRC32C (byte and broadcast channels)
//!   128 sender statistics:    messages, bytes, full events, sleeps, wake-ups issued
//!   256 receiver statistics:  messages, bytes, empty events, sleeps, wake-ups issued,
//!                             lost (bytes: dead or stalled senders' records skipped;
//!                             broadcast: messages subscribers lost to laps)
//! region "ring"     the SPSC, MPMC, record or broadcast ring (shmlane-ring)
//! region "ev-data"  event: receivers sleep on it, senders notify it
//! region "ev-space" event: senders sleep on it (ring full), receivers notify it
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
const PEER_CHECK: Duration = Duration::from_millis(50);
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
}

impl Kind {
    /// The kind's name: `spsc`, `mpmc`, `bytes` or `broadcast`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Spsc => "spsc",
            Self::Mpmc => "mpmc",
            Self::Bytes => "bytes",
            Self::Broadcast => "broadcast",
        }
    }
    fn from_word(w: u64) -> Option<Self> {
        match w {
            1 => Some(Self::Spsc),
            2 => Some(Self::Mpmc),
            3 => Some(Self::Bytes),
            4 => Some(Self::Broadcast),
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
    ever: [AtomicU64; 2],
    /// Bit 0: created to be removed when its last endpoint leaves cleanly (so openers should
    /// open it with `UnlinkPolicy::LastDetach` too).
    flags: AtomicU64,
    _pad0: [u64; 6],
    pub(crate) stats: [[AtomicU64; 16]; 2],
}

const _: () = assert!(size_of::<Header>() as u64 == CHAN_SIZE);

/// Which side an endpoint is on; indexes `counts`, `ever` and `stats`.
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
    fn peer(self) -> Self {
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
    /// Bytes sent (or received): messages × element size.
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
    /// Messages in the ring now.
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
    /// Sender-side statistics.
    pub sent: SideStats,
    /// Receiver-side statistics.
    pub received: SideStats,
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
        bytes: word(base + 1),
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
    // broadcast: the publisher's position at 128 (subscribers' cursors are private).
    let second = if kind == Kind::Broadcast {
        first
    } else {
        second
    };
    let capacity = word(3);
    Some(ChannelStats {
        kind,
        capacity,
        elem_size: word(2),
        msg_size: word(4),
        len: first.wrapping_sub(second).min(capacity),
        positions: (first, second),
        endpoints: (word(5), word(6)),
        remove_on_last_leave: word(9) & FLAG_UNLINK != 0,
        checksum: word(9) & FLAG_CHECKSUM != 0,
        sent: side(16),
        received: side(32),
    })
}

/// Starts building an SPSC channel of `T` named `name` (a POSIX shared-memory name).
pub fn spsc<T: Pod + Send>(name: &str) -> Builder<T> {
    Builder::new(name, Kind::Spsc)
}

/// Starts building an MPMC channel of `T` named `name`.
pub fn mpmc<T: Pod + Send>(name: &str) -> Builder<T> {
    Builder::new(name, Kind::Mpmc)
}

/// Starts building a byte channel named `name`: messages of 0 to `max` bytes (an eighth of
/// the capacity, which is in bytes here: default 1 MiB), any number of
/// [`ByteSender`](crate::ByteSender)s, one [`ByteReceiver`](crate::ByteReceiver). A sender
/// that dies between claiming room and committing its message is skipped and counted.
pub fn bytes(name: &str) -> Builder<u8> {
    Builder::new(name, Kind::Bytes)
}

/// Starts building a broadcast channel named `name`: one [`Publisher`](crate::Publisher) that
/// never waits, any number of [`Subscriber`](crate::Subscriber)s that come and go, each seeing
/// every message unless it falls a whole ring behind (then it is told exactly how many it
/// lost). Capacity in messages (default 1024), `msg_size` the largest message (default 240).
pub fn broadcast(name: &str) -> Builder<u8> {
    Builder::new(name, Kind::Broadcast)
}

/// Default largest broadcast message: slots of 256 bytes.
const BROADCAST_MSG: u64 = 240;

/// Largest ring a builder creates: 64 TiB, beyond any machine's shared memory, and far enough
/// below 2^64 that no size sum near it can overflow.
const MAX_RING_BYTES: u64 = 1 << 46;

/// Largest element a typed channel takes: 4 GiB (so per-slot sizes never overflow).
const MAX_ELEM: u64 = 1 << 32;

/// The broadcast slot holding messages of up to `msg` bytes (at most
/// `max_message(MAX_SLOT_BYTES)`, checked by the builder): the stamp and length words, the
/// message rounded up to 8, and at least `MIN_SLOT_BYTES`.
pub(crate) fn broadcast_slot(msg: u64) -> usize {
    (16 + msg as usize)
        .next_multiple_of(8)
        .max(shmlane_ring::broadcast::MIN_SLOT_BYTES)
}

/// What a builder creates, computed once from checked settings: capacity, largest message,
/// broadcast slot size, ring and segment sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Geometry {
    cap: u64,
    msg: u64,
    /// Broadcast slot bytes (0 for the other kinds).
    slot: usize,
    ring: u64,
    segment: u64,
}

/// Configures a channel, then creates or opens it.
#[derive(Debug)]
pub struct Builder<T> {
    name: String,
    kind: Kind,
    capacity: Option<u64>,
    msg_size: Option<u64>,
    location: Location,
    strategy: WaitStrategy,
    mode: u32,
    populate: bool,
    mlock: bool,
    unlink: UnlinkPolicy,
    checksum: Option<bool>,
    _t: PhantomData<T>,
}

impl<T: Pod + Send> Builder<T> {
    fn new(name: &str, kind: Kind) -> Self {
        Self {
            name: name.to_owned(),
            kind,
            capacity: None,
            msg_size: None,
            location: Location::Posix(name.to_owned()),
            strategy: WaitStrategy::default(),
            mode: 0o600,
            populate: true,
            mlock: false,
            unlink: UnlinkPolicy::Never,
            checksum: None,
            _t: PhantomData,
        }
    }

    /// Ring capacity in messages (a power of two; default 1024). When opening, a capacity set
    /// here must match the existing one; unset, any is accepted.
    #[must_use]
    pub fn capacity(mut self, n: u64) -> Self {
        self.capacity = Some(n);
        self
    }

    /// The largest message in bytes, recorded for byte channels (default: `size_of::<T>()`).
    #[must_use]
    pub fn msg_size(mut self, bytes: u64) -> Self {
        self.msg_size = Some(bytes);
        self
    }

    /// Where the segment lives (default: POSIX shared memory under the channel's name).
    #[must_use]
    pub fn location(mut self, loc: Location) -> Self {
        self.location = loc;
        self
    }

    /// How blocking operations wait (default: spin briefly, then park).
    #[must_use]
    pub fn wait(mut self, strategy: WaitStrategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// Permission bits of a created segment (default 0600).
    #[must_use]
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode;
        self
    }

    /// Pre-fault the pages at creation and open (default on).
    #[must_use]
    pub fn populate(mut self, yes: bool) -> Self {
        self.populate = yes;
        self
    }

    /// `mlock` the mapping (default off).
    #[must_use]
    pub fn mlock(mut self, yes: bool) -> Self {
        self.mlock = yes;
        self
    }

    /// When the name is removed (default: never; `UnlinkPolicy::LastDetach` removes it when
    /// the last endpoint leaves cleanly).
    #[must_use]
    pub fn unlink(mut self, policy: UnlinkPolicy) -> Self {
        self.unlink = policy;
        self
    }

    /// Byte and broadcast channels: every message carries a CRC32C of its length and bytes,
    /// checked by the receiver (`Corrupt` on a mismatch, the message counted as lost). Off by
    /// default; stored in the channel header, so every endpoint agrees: when opening, unset
    /// takes the channel's setting, set must match it. The largest message is 4 bytes
    /// smaller, zero-copy claims ([`ByteSender::claim`](crate::ByteSender::claim)) are refused
    /// (the checksum needs the bytes), and each message costs a CRC pass on both sides
    /// (hardware CRC32C where the CPU has it). A broadcast subscriber should pass buffers of
    /// `max_message()` bytes: a message longer than a smaller buffer is consumed to check it
    /// (`BufferTooSmall` still tells its size). Typed (SPSC, MPMC) channels carry fixed `Pod`
    /// elements: put a checksum in `T` there.
    #[must_use]
    pub fn checksum(mut self, yes: bool) -> Self {
        self.checksum = Some(yes);
        self
    }

    fn config_err(&self, error: ConfigError) -> OpenError {
        OpenError::Config {
            name: self.name.clone(),
            error,
        }
    }

    /// The smallest and largest capacity of this kind.
    fn capacity_range(&self) -> (u64, u64) {
        let min = match self.kind {
            Kind::Spsc => 1,
            Kind::Mpmc | Kind::Broadcast => 2,
            Kind::Bytes => 256,
        };
        (min, shmlane_ring::MAX_CAPACITY)
    }

    /// The capacity set (or the default), checked against the kind's range.
    fn checked_capacity(&self) -> Result<u64, OpenError> {
        let cap = self.capacity.unwrap_or(match self.kind {
            Kind::Bytes => 1 << 20,
            _ => 1024,
        });
        let (min, max) = self.capacity_range();
        if !cap.is_power_of_two() || !(min..=max).contains(&cap) {
            return Err(self.config_err(ConfigError::Capacity {
                kind: self.kind.name(),
                capacity: cap,
                min,
                max,
            }));
        }
        Ok(cap)
    }

    /// The largest message of a channel of `cap` (checked), and the error if `msg_size` asks
    /// for more.
    fn checked_msg(&self, cap: u64) -> Result<u64, OpenError> {
        let (max, default, hint) = match self.kind {
            // An eighth of the ring, less the record header: cap >= 256 (checked).
            Kind::Bytes => {
                let max = cap / 8 - shmlane_ring::record::RECORD_HEADER as u64;
                (
                    max,
                    max,
                    "; a byte channel's capacity (in bytes) must be at least 8 x (message size + 8)",
                )
            }
            Kind::Broadcast => (
                BroadcastRing::max_message(shmlane_ring::broadcast::MAX_SLOT_BYTES) as u64,
                BROADCAST_MSG,
                "",
            ),
            Kind::Spsc | Kind::Mpmc => (
                size_of::<T>() as u64,
                size_of::<T>() as u64,
                " (the element size); use a larger element type",
            ),
        };
        let msg = self.msg_size.unwrap_or(default);
        if msg > max {
            return Err(self.config_err(ConfigError::MsgSize {
                kind: self.kind.name(),
                msg_size: msg,
                max,
                hint,
            }));
        }
        // A byte channel records its largest message, whatever smaller one was asked for.
        Ok(if self.kind == Kind::Bytes { max } else { msg })
    }

    /// Checks the settings and computes what `create` makes, with checked arithmetic
    /// throughout (no setting can overflow a size; finding 15 of issue 15).
    fn geometry(&self) -> Result<Geometry, OpenError> {
        let cap = self.checked_capacity()?;
        let msg = self.checked_msg(cap)?;
        self.check_checksum()?;
        let elem = size_of::<T>() as u64;
        let too_large = |slot: u64| {
            self.config_err(ConfigError::TooLarge {
                kind: self.kind.name(),
                capacity: cap,
                slot,
                max: MAX_RING_BYTES,
            })
        };
        if elem > MAX_ELEM {
            return Err(too_large(elem));
        }
        // Every ring is a header plus `cap` slots; ask the ring for sizes of one and two slots
        // (small, no overflow: elem <= 4 GiB, slot <= 1 MiB), so the layout stays the ring's.
        let slot = if self.kind == Kind::Broadcast {
            broadcast_slot(msg)
        } else {
            0
        };
        let sized = |n: u64| -> u64 {
            (match self.kind {
                Kind::Spsc => SpscRing::<T>::required_size(n),
                Kind::Mpmc => MpmcRing::<T>::required_size(n),
                // Record rings are sized in bytes, a multiple of 8: 256 and 512 bytes.
                Kind::Bytes => RecordRing::required_size(n * 256),
                Kind::Broadcast => BroadcastRing::required_size(n, slot),
            }) as u64
        };
        let (one, two) = (sized(1), sized(2));
        let (per, header) = (two - one, 2 * one - two);
        let (units, per_unit) = if self.kind == Kind::Bytes {
            (cap / 256, per)
        } else {
            (cap, per)
        };
        let ring = units
            .checked_mul(per_unit)
            .and_then(|b| b.checked_add(header))
            .filter(|&b| b <= MAX_RING_BYTES)
            .ok_or_else(|| too_large(if self.kind == Kind::Bytes { 1 } else { per }))?;
        // <= 2^46 plus a few KiB: no overflow below.
        let data = CHAN_SIZE + ring + 2 * EVENT_SIZE as u64 + 4 * 128;
        let segment = (data + 64 * 1024).next_multiple_of(4096);
        Ok(Geometry {
            cap,
            msg,
            slot,
            ring,
            segment,
        })
    }

    /// Checksums are for byte and broadcast channels.
    fn check_checksum(&self) -> Result<(), OpenError> {
        if self.checksum == Some(true) && matches!(self.kind, Kind::Spsc | Kind::Mpmc) {
            return Err(self.config_err(ConfigError::Unsupported {
                kind: self.kind.name(),
                what: "per-message checksums (byte and broadcast channels only; put a checksum field in the element type instead)",
            }));
        }
        Ok(())
    }

    /// The settings `open` uses, checked the same way as for `create` (a capacity out of range
    /// is reported as such, not as a mismatch).
    fn check_for_open(&self) -> Result<(), OpenError> {
        self.check_checksum()?;
        if self.capacity.is_some() {
            let cap = self.checked_capacity()?;
            if self.msg_size.is_some() && self.kind != Kind::Bytes {
                self.checked_msg(cap)?;
            }
        }
        Ok(())
    }

    /// The segment builder; sized (`Some`) for creating (opening accepts the existing size,
    /// which the channel header then validates).
    fn segment(&self, size: Option<u64>) -> shmlane_segment::SegmentBuilder {
        let b = Segment::at(self.location.clone());
        let b = match size {
            Some(bytes) => b.size(bytes),
            None => b,
        };
        b.mode(self.mode)
            .populate(self.populate)
            .mlock(self.mlock)
            .unlink(self.unlink)
            .role(0)
    }

    fn init(&self, s: &Segment, g: &Geometry) -> Result<(), OpenError> {
        let cap = g.cap;
        let chan = s.region("chan", CHAN_SIZE, REGION_CHAN)?;
        let ring = s.region("ring", g.ring, REGION_RING)?;
        // SAFETY: fresh regions of the right sizes, nobody else sees the segment before it is
        // published.
        unsafe {
            match self.kind {
                Kind::Spsc => SpscRing::<T>::init(ring.as_ptr(), ring.len(), cap, 0)?,
                Kind::Mpmc => MpmcRing::<T>::init(ring.as_ptr(), ring.len(), cap, 0)?,
                Kind::Bytes => RecordRing::init(ring.as_ptr(), ring.len(), cap, 0)?,
                Kind::Broadcast => {
                    BroadcastRing::init(ring.as_ptr(), ring.len(), cap, g.slot, 0)?;
                }
            }
            for ev in ["ev-data", "ev-space"] {
                let r = s.region(ev, EVENT_SIZE as u64, REGION_EVENT)?;
                Event::init(r.as_ptr(), r.len())?;
            }
            let h = &*chan.as_ptr().cast::<Header>();
            // ORDERING: Relaxed for all: published by the segment's init_state Release.
            h.kind.store(self.kind as u64, Ordering::Relaxed);
            // ORDERING: as above.
            h.elem.store(size_of::<T>() as u64, Ordering::Relaxed);
            // ORDERING: as above.
            h.capacity.store(cap, Ordering::Relaxed);
            // ORDERING: as above.
            h.msg_size.store(g.msg, Ordering::Relaxed);
            // ORDERING: as above.
            let mut flags = 0;
            if self.unlink == UnlinkPolicy::LastDetach {
                flags |= FLAG_UNLINK;
            }
            if self.checksum == Some(true) {
                flags |= FLAG_CHECKSUM;
            }
            h.flags.store(flags, Ordering::Relaxed);
            // ORDERING: as above; the magic last, for readers that inspect without attaching.
            h.magic.store(CHAN_MAGIC, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Creates the channel; fails if the name exists.
    pub fn create(self) -> Result<Channel<T>, OpenError> {
        let g = self.geometry()?;
        let seg = self
            .segment(Some(g.segment))
            .create_with(|s| self.init(s, &g))?;
        self.finish(seg)
    }

    /// Opens an existing channel.
    pub fn open(self) -> Result<Channel<T>, OpenError> {
        self.check_for_open()?;
        let seg = self.segment(None).open()?;
        self.finish(seg)
    }

    /// Opens the channel, creating it if it does not exist (racing creators are fine: one
    /// creates, the others open what it published).
    pub fn open_or_create(self) -> Result<Channel<T>, OpenError> {
        let g = self.geometry()?;
        loop {
            match self.segment(None).open() {
                Ok(seg) => return self.finish(seg),
                Err(shmlane_segment::OpenError::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            match self
                .segment(Some(g.segment))
                .create_with(|s| self.init(s, &g))
            {
                Ok(seg) => return self.finish(seg),
                // Another process created it between our open and our create: open again.
                Err(shmlane_segment::CreateError::AlreadyExists { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn finish(self, seg: Segment) -> Result<Channel<T>, OpenError> {
        let chan = seg.find_region("chan")?;
        if chan.len() < CHAN_SIZE as usize {
            return Err(OpenError::NotAChannel(self.name));
        }
        let hdr = NonNull::new(chan.as_ptr().cast::<Header>())
            .ok_or_else(|| OpenError::NotAChannel(self.name.clone()))?;
        // SAFETY: in bounds (checked), 128-byte aligned (region), atomics only.
        let h = unsafe { hdr.as_ref() };
        // ORDERING: Relaxed for the identity fields: written before the segment was published
        // (the segment's open Acquire-loads init_state).
        if h.magic.load(Ordering::Relaxed) != CHAN_MAGIC {
            return Err(OpenError::NotAChannel(self.name));
        }
        // ORDERING: as above.
        let (kind, elem, cap) = (
            h.kind.load(Ordering::Relaxed),
            h.elem.load(Ordering::Relaxed),
            h.capacity.load(Ordering::Relaxed),
        );
        let wanted_cap = self.capacity.unwrap_or(cap);
        if kind != self.kind as u64 || elem != size_of::<T>() as u64 || cap != wanted_cap {
            let found_kind = Kind::from_word(kind).map_or("unknown", Kind::name);
            return Err(OpenError::Mismatch {
                name: self.name,
                found: format!("{found_kind}, {elem}-byte messages, capacity {cap}"),
                wanted: format!(
                    "{}, {}-byte messages, capacity {wanted_cap}",
                    self.kind.name(),
                    size_of::<T>()
                ),
            });
        }
        // ORDERING: Relaxed; written before the segment was published, as above.
        let checksum = h.flags.load(Ordering::Relaxed) & FLAG_CHECKSUM != 0;
        if self.checksum.is_some_and(|want| want != checksum) {
            let on_off = |b: bool| if b { "on" } else { "off" };
            return Err(OpenError::Mismatch {
                found: format!("{} with checksums {}", self.kind.name(), on_off(checksum)),
                wanted: format!("{} with checksums {}", self.kind.name(), on_off(!checksum)),
                name: self.name,
            });
        }
        let event = |name: &str| -> Result<Event, OpenError> {
            let r = seg.find_region(name)?;
            // SAFETY: the region lives as long as the segment, which every handle keeps alive
            // through the Arc.
            Ok(unsafe { Event::attach(r.as_ptr(), r.len())? })
        };
        let (ev_data, ev_space) = (event("ev-data")?, event("ev-space")?);
        let ring = seg.find_region("ring")?;
        let (ring_ptr, ring_len) = (ring.as_ptr(), ring.len());
        if ring_len < RING_IDENTITY_WORDS * 8 {
            return Err(OpenError::NotAChannel(self.name));
        }
        let ident = Identity {
            seg: seg.header(),
            chan: chan_identity(h),
            // SAFETY: the ring region is 128-byte aligned and holds the words (checked).
            ring: unsafe { ring_identity(ring_ptr) },
        };
        if ident.ring[0] != shmlane_ring::RING_MAGIC {
            return Err(OpenError::Ring(shmlane_ring::AttachError::NotARing));
        }
        Ok(Channel {
            inner: Arc::new(Inner {
                hdr,
                ev_data,
                ev_space,
                ident,
                checksum,
                ring: (ring_ptr, ring_len),
                roles: [AtomicU32::new(0), AtomicU32::new(0)],
                name: self.name,
                kind: self.kind,
                strategy: self.strategy,
                seg,
            }),
            _t: PhantomData,
        })
    }
}

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
    ev_data: Event,
    ev_space: Event,
    /// The headers as opened, re-checked by the peer checks.
    ident: Identity,
    /// Every message carries a checksum (header flag, read once at open).
    pub(crate) checksum: bool,
    pub(crate) ring: (*mut u8, usize),
    /// Endpoints of each side this process holds through this channel handle.
    roles: [AtomicU32; 2],
    pub(crate) name: String,
    kind: Kind,
    strategy: WaitStrategy,
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
        // ORDERING: as above.
        h.ever[side as usize].store(1, Ordering::Relaxed);
    }

    fn leave(&self, side: Side) {
        // ORDERING: Release; pairs with the Acquire load in `peer_left`: everything this
        // endpoint published happens-before a peer sees it gone.
        self.hdr().counts[side as usize].fetch_sub(1, Ordering::Release);
        // ORDERING: Relaxed; local bookkeeping.
        self.roles[side as usize].fetch_sub(1, Ordering::Relaxed);
        self.update_role();
        // Wake the other side so a blocked peer notices at once.
        self.ev_data.notify();
        self.ev_space.notify();
    }

    /// Whether every endpoint of `side` left cleanly (and at least one existed). Cheap.
    pub(crate) fn side_left(&self, side: Side) -> bool {
        let h = self.hdr();
        // ORDERING: Relaxed; set once, long before it matters.
        h.ever[side as usize].load(Ordering::Relaxed) == 1
            // ORDERING: Acquire; pairs with the Release decrement in `leave`.
            && h.counts[side as usize].load(Ordering::Acquire) == 0
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
        Ok(())
    }

    /// The state of `side`'s endpoints across processes (reads attachment liveness:
    /// syscalls, slow path only), after re-validating the headers: `Corrupt` if the segment
    /// was overwritten, so a blocked call reports it instead of waiting on garbage.
    pub(crate) fn peer_state(&self, side: Side) -> Peers {
        if let Err(why) = self.intact() {
            return Peers::Corrupt(why);
        }
        let (mut live, mut dead) = (0, 0);
        for a in self.seg.attachments() {
            if a.role & side.role() != 0 {
                if a.alive {
                    live += 1;
                } else {
                    dead += 1;
                }
            }
        }
        if live > 0 {
            Peers::Live
        } else if dead > 0 {
            Peers::Died
        } else if self.side_left(side) {
            Peers::Left
        } else {
            Peers::NotYet
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Peers {
    Live,
    Died,
    Left,
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
        self.inner.join(side);
        Local {
            inner: self.inner.clone(),
            side,
            stats: SideStats::default(),
            pending: 0,
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
        self.check_here()?;
        let (ptr, len) = self.inner.ring;
        let seg = &self.inner.seg;
        let alive = |t: u64| u32::try_from(t).is_ok_and(|t| seg.tag_alive(t));
        // SAFETY: the ring region lives as long as the segment, which the endpoint keeps
        // alive through `Local::inner`.
        let ring = unsafe { SpscRing::<T>::producer(ptr, len, self.token(), &alive) }
            .map_err(|e| OpenError::for_role(e, &self.inner.name, "producer"))?;
        Ok(Producer {
            ring: Owned::new(ring),
            local: self.local(Side::Send),
        })
    }

    /// The SPSC consumer: at most one per channel, as for [`producer`](Self::producer).
    pub fn consumer(&self) -> Result<Consumer<T>, OpenError> {
        self.check_here()?;
        let (ptr, len) = self.inner.ring;
        let seg = &self.inner.seg;
        let alive = |t: u64| u32::try_from(t).is_ok_and(|t| seg.tag_alive(t));
        // SAFETY: as in `producer`.
        let ring = unsafe { SpscRing::<T>::consumer(ptr, len, self.token(), &alive) }
            .map_err(|e| OpenError::for_role(e, &self.inner.name, "consumer"))?;
        Ok(Consumer {
            ring: Owned::new(ring),
            local: self.local(Side::Recv),
        })
    }

    /// An MPMC sender (any number).
    pub fn sender(&self) -> Result<Sender<T>, OpenError> {
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

/// Per-endpoint state: the channel, the side, and statistics not yet published.
pub(crate) struct Local {
    pub(crate) inner: Arc<Inner>,
    side: Side,
    pub(crate) stats: SideStats,
    pending: u64,
    last_flush: Instant,
    /// Waits in a row that ended ready without the operation then succeeding (reset by
    /// [`done`](Self::done)): from the fourth on, `block` sleeps a little first, so a condition
    /// that holds while the operation keeps failing costs no busy loop.
    misses: u32,
    /// When a blocked MPMC endpoint next looks for a dead peer's hole (`None`: at once).
    next_hole_check: Option<Instant>,
    /// Holes recovered since this endpoint's last successful operation. Past a ring's worth
    /// (more than the ring can hold at once) the positions are being forged: the checks fall
    /// back to one per `HOLE_CHECK`, so a hostile peer faking holes cannot keep a blocked call
    /// turning at full CPU.
    holes_in_a_row: u64,
    /// Set by a hole check that found the ring's positions impossible (overwritten): the
    /// blocked call reports `Corrupt` instead of waiting out its deadline.
    positions_corrupt: bool,
    /// The process that made the endpoint: a copy in a child after `fork` leaves the shared
    /// counters alone when dropped (it would tell peers the parent's endpoint left).
    pid: u32,
}

/// Longest pause `block` takes after repeated ready-but-failed waits.
const MISS_SLEEP_MAX: Duration = Duration::from_millis(1);

impl Local {
    #[inline]
    pub(crate) fn done(&mut self, n: u64, bytes: u64) {
        self.misses = 0;
        self.holes_in_a_row = 0;
        self.stats.messages += n;
        self.stats.bytes += bytes;
        self.pending += n;
        if self.pending >= STATS_EVERY {
            self.flush();
        }
        let ev = match self.side {
            Side::Send => &self.inner.ev_data,
            Side::Recv => &self.inner.ev_space,
        };
        if ev.notify() {
            self.stats.wakeups += 1;
        }
    }

    pub(crate) fn flush(&mut self) {
        let s = &self.inner.hdr().stats[self.side as usize];
        let st = core::mem::take(&mut self.stats);
        for (i, v) in [
            st.messages,
            st.bytes,
            st.stalls,
            st.sleeps,
            st.wakeups,
            st.lost,
        ]
        .into_iter()
        .enumerate()
        {
            if v != 0 {
                // ORDERING: Relaxed; statistics, read by `shmlane stat` as estimates.
                s[i].fetch_add(v, Ordering::Relaxed);
            }
        }
        self.pending = 0;
        self.last_flush = Instant::now();
    }

    /// On a blocked turn of an MPMC endpoint: if the hole check is due (at most every
    /// `HOLE_CHECK`), recovers a hole a dead peer left at the ring position. Returns whether
    /// one was recovered (counted lost; the caller tries its operation again at once).
    fn check_hole<R: Holes>(&mut self, ring: &R, force: bool) -> bool {
        if !R::HOLES {
            return false;
        }
        let now = Instant::now();
        let cap = ring.slots();
        let budget_left = self.holes_in_a_row <= cap;
        if !(force && budget_left) && self.next_hole_check.is_some_and(|t| now < t) {
            return false;
        }
        if !ring.positions_consistent() {
            self.positions_corrupt = true;
            self.next_hole_check = Some(now + HOLE_CHECK);
            return false;
        }
        let seg = &self.inner.seg;
        let alive = |t: u64| u32::try_from(t).is_ok_and(|t| seg.tag_alive(t));
        match ring.recover(&alive) {
            Hole::Recovered => {
                self.stats.lost += 1;
                self.recovered(now, cap);
                true
            }
            // A slot given back that held no message (its loss was counted when skipped).
            Hole::Released => {
                self.recovered(now, cap);
                true
            }
            Hole::None | Hole::Waiting => {
                self.next_hole_check = Some(now + HOLE_CHECK);
                false
            }
        }
    }

    /// After a hole was recovered: the next check at once, unless more holes than the ring can
    /// hold were recovered since the last successful operation (then in `HOLE_CHECK`).
    fn recovered(&mut self, now: Instant, cap: u64) {
        self.holes_in_a_row += 1;
        self.next_hole_check = if self.holes_in_a_row <= cap {
            None
        } else {
            Some(now + HOLE_CHECK)
        };
    }

    /// Publishes this endpoint's statistics, then reads its side's as stored now.
    pub(crate) fn shared_stats(&mut self) -> SideStats {
        self.flush();
        let s = &self.inner.hdr().stats[self.side as usize];
        // ORDERING: Relaxed; statistics.
        let w = |i: usize| s[i].load(Ordering::Relaxed);
        SideStats {
            messages: w(0),
            bytes: w(1),
            stalls: w(2),
            sleeps: w(3),
            wakeups: w(4),
            lost: w(5),
        }
    }

    /// Waits until `ready()` or a peer change, bounded by `deadline`. Returns false on timeout.
    ///
    /// Every blocking loop (`try_op`, then `block`) comes through here on every turn, so the
    /// deadline is tested on every turn whatever `ready` says: a condition that holds while the
    /// operation still fails (another endpoint took the message first, a slot a dead peer left
    /// half done) cannot keep a caller past its deadline. Such turns back off (yield, then
    /// sleep up to `MISS_SLEEP_MAX`, never past the deadline) instead of spinning.
    pub(crate) fn block(
        &mut self,
        deadline: Option<Deadline>,
        mut ready: impl FnMut() -> bool,
    ) -> bool {
        if deadline.as_ref().is_some_and(Deadline::is_past) {
            return false;
        }
        if self.misses >= 4 {
            let mut pause =
                Duration::from_micros(50 << (self.misses - 4).min(5)).min(MISS_SLEEP_MAX);
            if let Some(d) = &deadline {
                pause = pause.min(d.remaining());
            }
            std::thread::sleep(pause);
            if deadline.as_ref().is_some_and(Deadline::is_past) {
                return false;
            }
        } else if self.misses > 0 {
            std::thread::yield_now();
        }
        self.stats.stalls += 1;
        self.stats.sleeps += 1;
        // Publish statistics before a wait that may be long, but not on every short one
        // (a ping-pong waits once per message): at most every 10 ms.
        if self.last_flush.elapsed() >= Duration::from_millis(10) {
            self.flush();
        }
        let inner = &self.inner;
        let ev = match self.side {
            Side::Send => &inner.ev_space,
            Side::Recv => &inner.ev_data,
        };
        let peer = self.side.peer();
        let mut last = Instant::now();
        let outcome = ev.wait_checking(&inner.strategy, deadline, PEER_CHECK, || {
            ready()
                || inner.side_left(peer)
                || (last.elapsed() >= PEER_CHECK && {
                    last = Instant::now();
                    !matches!(inner.peer_state(peer), Peers::Live | Peers::NotYet)
                })
        });
        let ready = outcome == shmlane_wake::WaitOutcome::Ready;
        // Counted as a miss until the operation succeeds (`done` resets it).
        self.misses = self.misses.saturating_add(u32::from(ready));
        ready
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        if std::process::id() != self.pid {
            return;
        }
        self.flush();
        self.inner.leave(self.side);
    }
}

/// A ring handle holding a single role, dropped only by the process that made it. A child
/// after `fork` holds a copy that names the parent's role claim (and attachment); dropping that
/// copy released the parent's live role, so another endpoint could take it (review rev2). In
/// another process the copy is leaked instead (the parent's drop releases the role).
pub(crate) struct Owned<R> {
    ring: core::mem::ManuallyDrop<R>,
    pid: u32,
}

impl<R> Owned<R> {
    pub(crate) fn new(ring: R) -> Self {
        Self {
            ring: core::mem::ManuallyDrop::new(ring),
            pid: std::process::id(),
        }
    }

    /// The ring handle itself (test hooks that consume it).
    pub(crate) fn into_inner(self) -> R {
        let mut me = core::mem::ManuallyDrop::new(self);
        // SAFETY: `me` is never dropped, so the handle is taken out exactly once.
        unsafe { core::mem::ManuallyDrop::take(&mut me.ring) }
    }
}

impl<R> core::ops::Deref for Owned<R> {
    type Target = R;
    fn deref(&self) -> &R {
        &self.ring
    }
}

impl<R> core::ops::DerefMut for Owned<R> {
    fn deref_mut(&mut self) -> &mut R {
        &mut self.ring
    }
}

impl<R> Drop for Owned<R> {
    fn drop(&mut self) {
        if std::process::id() == self.pid {
            // SAFETY: dropped once, here; the field is never used again.
            unsafe { core::mem::ManuallyDrop::drop(&mut self.ring) };
        }
    }
}

/// The sending end of an SPSC channel.
pub struct Producer<T> {
    ring: Owned<shmlane_ring::Producer<T>>,
    local: Local,
}

/// The receiving end of an SPSC channel.
pub struct Consumer<T> {
    ring: Owned<shmlane_ring::Consumer<T>>,
    local: Local,
}

/// A sending end of an MPMC channel.
pub struct Sender<T> {
    ring: Owned<shmlane_ring::Sender<T>>,
    local: Local,
}

/// A receiving end of an MPMC channel.
pub struct Receiver<T> {
    ring: Owned<shmlane_ring::Receiver<T>>,
    local: Local,
}

macro_rules! debug_endpoint {
    ($($t:ident),*) => {$(
        impl<T> core::fmt::Debug for $t<T> {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.debug_struct(stringify!($t))
                    .field("channel", &self.local.inner.name)
                    .finish_non_exhaustive()
            }
        }
    )*};
}
debug_endpoint!(Producer, Consumer, Sender, Receiver);

fn push_err<T>(e: PushError<T>) -> Result<(), TrySendError<T>> {
    match e {
        PushError::Full(v) => Err(TrySendError::Full(v)),
        PushError::Corrupt(v) => Err(TrySendError::Corrupt(v)),
    }
}

/// The blocking send loop shared by `Producer` and `Sender`.
macro_rules! send_impl {
    () => {
        /// Sends `value` if there is room; never blocks. Wakes a sleeping receiver (with no
        /// receiver asleep this is a fence and a load: no syscall).
        pub fn try_send(&mut self, value: T) -> Result<(), TrySendError<T>> {
            match self.ring.push(value) {
                Ok(()) => {
                    self.local.done(1, size_of::<T>() as u64);
                    Ok(())
                }
                Err(PushError::Full(v)) if self.local.inner.side_left(Side::Recv) => {
                    Err(TrySendError::Disconnected(v))
                }
                Err(e) => push_err(e),
            }
        }

        /// Sends `value`, waiting for room until `deadline` (`None`: no limit) with the
        /// channel's wait strategy. Fails if every receiver left or died.
        pub fn send(&mut self, value: T, deadline: Option<Deadline>) -> Result<(), SendError<T>> {
            let mut v = value;
            let mut woke = false;
            loop {
                match self.try_send(v) {
                    Ok(()) => return Ok(()),
                    Err(TrySendError::Full(back)) => v = back,
                    Err(TrySendError::Disconnected(back)) => {
                        return Err(SendError::Disconnected(back));
                    }
                    Err(TrySendError::Corrupt(back)) => return Err(SendError::Corrupt(back)),
                }
                // A slot a dead receiver held (MPMC): given back, try again (by the deadline).
                if self.local.check_hole(&*self.ring, false) {
                    if deadline.as_ref().is_some_and(Deadline::is_past) {
                        return Err(SendError::Timeout(v));
                    }
                    continue;
                }
                if self.local.positions_corrupt {
                    return Err(SendError::Corrupt(v));
                }
                // Peers are checked (syscalls) only after a wait that ended without room,
                // never on the way into the first wait: the fast path stays syscall-free.
                if woke {
                    match self.local.inner.peer_state(Side::Recv) {
                        Peers::Died => return Err(SendError::PeerDied(v)),
                        Peers::Corrupt(_) => return Err(SendError::Corrupt(v)),
                        _ => {}
                    }
                }
                let (ring, next) = (&mut *self.ring, self.local.next_hole_check);
                let ready = || ring_has_room(ring) || hole_check_due(ring, next);
                if !self.local.block(deadline, ready) {
                    return Err(SendError::Timeout(v));
                }
                woke = true;
            }
        }

        /// The channel's statistics as stored now (plus this endpoint's unpublished ones).
        pub fn stats(&mut self) -> SideStats {
            self.local.shared_stats()
        }
    };
}

/// The blocking receive loop shared by `Consumer` and `Receiver`.
macro_rules! recv_impl {
    () => {
        /// Receives a message if one is there; never blocks, never makes a syscall unless it
        /// wakes a blocked sender. `Disconnected` once every sender left cleanly and the ring
        /// is drained; a sender's death is reported by [`recv`](Self::recv).
        pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
            match self.ring.pop() {
                Ok(v) => {
                    self.local.done(1, size_of::<T>() as u64);
                    Ok(v)
                }
                Err(PopError::Empty) => {
                    if self.local.inner.side_left(Side::Send) {
                        // Re-check: the last sender may have pushed before leaving.
                        match self.ring.pop() {
                            Ok(v) => {
                                self.local.done(1, size_of::<T>() as u64);
                                Ok(v)
                            }
                            Err(PopError::Empty) => Err(TryRecvError::Disconnected),
                            Err(PopError::Corrupt) => Err(TryRecvError::Corrupt),
                        }
                    } else {
                        Err(TryRecvError::Empty)
                    }
                }
                Err(PopError::Corrupt) => Err(TryRecvError::Corrupt),
            }
        }

        /// Receives a message, waiting until `deadline` (`None`: no limit) with the channel's
        /// wait strategy. After every sender left, what they sent is still delivered; then
        /// `Disconnected` (clean) or `PeerDied` (a sender process died), within 50 ms of the
        /// death even while parked.
        pub fn recv(&mut self, deadline: Option<Deadline>) -> Result<T, RecvError> {
            let mut woke = false;
            loop {
                match self.try_recv() {
                    Ok(v) => return Ok(v),
                    Err(TryRecvError::Empty) => {}
                    Err(TryRecvError::Disconnected) => return Err(RecvError::Disconnected),
                    Err(TryRecvError::Corrupt) => return Err(RecvError::Corrupt),
                }
                // A position a dead sender took and never filled (MPMC): skipped, try again (by
                // the deadline).
                if self.local.check_hole(&*self.ring, false) {
                    if deadline.as_ref().is_some_and(Deadline::is_past) {
                        return Err(RecvError::Timeout);
                    }
                    continue;
                }
                if self.local.positions_corrupt {
                    return Err(RecvError::Corrupt);
                }
                // Peers are checked (syscalls) only after a wait that ended without data.
                let peers = if woke {
                    self.local.inner.peer_state(Side::Send)
                } else {
                    Peers::NotYet
                };
                match peers {
                    Peers::Corrupt(_) => return Err(RecvError::Corrupt),
                    Peers::Died | Peers::Left => {
                        // Drain what the dead (or departed) senders completed first, past any
                        // hole a dead one left.
                        loop {
                            match self.ring.pop() {
                                Ok(v) => {
                                    self.local.done(1, size_of::<T>() as u64);
                                    return Ok(v);
                                }
                                Err(PopError::Empty) => {
                                    // At most a ring's worth of holes in a row (then checked
                                    // every `HOLE_CHECK` only, see `holes_in_a_row`).
                                    if self.local.check_hole(&*self.ring, true) {
                                        if deadline.as_ref().is_some_and(Deadline::is_past) {
                                            return Err(RecvError::Timeout);
                                        }
                                        continue;
                                    }
                                    if self.local.positions_corrupt {
                                        return Err(RecvError::Corrupt);
                                    }
                                    return if self.local.inner.peer_state(Side::Send) == Peers::Left
                                    {
                                        Err(RecvError::Disconnected)
                                    } else {
                                        Err(RecvError::PeerDied)
                                    };
                                }
                                Err(PopError::Corrupt) => return Err(RecvError::Corrupt),
                            }
                        }
                    }
                    Peers::Live | Peers::NotYet => {}
                }
                let (ring, next) = (&mut *self.ring, self.local.next_hole_check);
                let ready = || ring_has_data(ring) || hole_check_due(ring, next);
                if !self.local.block(deadline, ready) {
                    return Err(RecvError::Timeout);
                }
                woke = true;
            }
        }

        /// The channel's receiver-side statistics as stored now.
        pub fn stats(&mut self) -> SideStats {
            self.local.shared_stats()
        }
    };
}

trait HasData {
    fn has_data(&mut self) -> bool;
}
trait HasRoom {
    fn has_room(&mut self) -> bool;
}
impl<T: Pod> HasData for shmlane_ring::Consumer<T> {
    fn has_data(&mut self) -> bool {
        // Data, or positions that are corrupt (the caller's next try reports it): only
        // "nothing yet" waits. `is_empty()` said empty on a corrupt ring, and a blocked `recv`
        // waited on an overwritten tail until its deadline, or forever (review rev2).
        !matches!(
            self.read_chunk(1),
            Err(shmlane_ring::ChunkError::TooFewSlots(_))
        )
    }
}
impl<T: Pod> HasData for shmlane_ring::Receiver<T> {
    fn has_data(&mut self) -> bool {
        // The stamp at the position, not the approximate length: a position taken and not
        // yet published (a hole) is not data.
        self.can_pop()
    }
}
impl<T: Pod> HasRoom for shmlane_ring::Producer<T> {
    fn has_room(&mut self) -> bool {
        // Room, or corrupt positions (the next try reports it); see `HasData` above.
        !matches!(
            self.write_chunk(1),
            Err(shmlane_ring::ChunkError::TooFewSlots(_))
        )
    }
}
impl<T: Pod> HasRoom for shmlane_ring::Sender<T> {
    fn has_room(&mut self) -> bool {
        // The stamp at the position: a slot a receiver still holds is not room.
        self.can_push()
    }
}

/// Rings whose endpoints can leave holes when they die mid-operation (MPMC).
trait Holes {
    const HOLES: bool;
    fn recover(&self, is_alive: &dyn Fn(u64) -> bool) -> Hole;
    /// The ring's capacity: the most holes it can hold at once.
    fn slots(&self) -> u64;
    /// Whether the shared positions are ones a sound ring can show (slow path).
    fn positions_consistent(&self) -> bool {
        true
    }
}
impl<T: Pod> Holes for shmlane_ring::Producer<T> {
    const HOLES: bool = false;
    fn recover(&self, _: &dyn Fn(u64) -> bool) -> Hole {
        Hole::None
    }
    fn slots(&self) -> u64 {
        self.capacity() as u64
    }
}
impl<T: Pod> Holes for shmlane_ring::Consumer<T> {
    const HOLES: bool = false;
    fn recover(&self, _: &dyn Fn(u64) -> bool) -> Hole {
        Hole::None
    }
    fn slots(&self) -> u64 {
        self.capacity() as u64
    }
}
impl<T: Pod> Holes for shmlane_ring::Sender<T> {
    const HOLES: bool = true;
    fn positions_consistent(&self) -> bool {
        shmlane_ring::Sender::positions_consistent(self)
    }
    fn recover(&self, is_alive: &dyn Fn(u64) -> bool) -> Hole {
        shmlane_ring::Sender::recover(self, is_alive)
    }
    fn slots(&self) -> u64 {
        self.capacity() as u64
    }
}
impl<T: Pod> Holes for shmlane_ring::Receiver<T> {
    const HOLES: bool = true;
    fn positions_consistent(&self) -> bool {
        shmlane_ring::Receiver::positions_consistent(self)
    }
    fn recover(&self, is_alive: &dyn Fn(u64) -> bool) -> Hole {
        shmlane_ring::Receiver::recover(self, is_alive)
    }
    fn slots(&self) -> u64 {
        self.capacity() as u64
    }
}

/// For a blocked endpoint's wait condition: the next hole check is due.
fn hole_check_due<R: Holes>(_: &R, next: Option<Instant>) -> bool {
    R::HOLES && next.is_some_and(|t| Instant::now() >= t)
}
fn ring_has_data(r: &mut impl HasData) -> bool {
    r.has_data()
}
fn ring_has_room(r: &mut impl HasRoom) -> bool {
    r.has_room()
}

impl<T: Pod + Send> Producer<T> {
    send_impl!();

    /// Zero-copy: reserves `n` slots to fill in place; see [`shmlane_ring::WriteChunk`].
    /// Call [`notify`](Self::notify) after committing so a sleeping consumer wakes.
    pub fn write_chunk(
        &mut self,
        n: usize,
    ) -> Result<shmlane_ring::WriteChunk<'_, T>, shmlane_ring::ChunkError> {
        self.ring.write_chunk(n)
    }

    /// Sends as many of `values` as fit; returns how many. Never blocks.
    pub fn try_send_slice(&mut self, values: &[T]) -> Result<usize, TrySendError<()>> {
        let n = self
            .ring
            .push_slice(values)
            .map_err(|_| TrySendError::Corrupt(()))?;
        if n > 0 {
            self.local.done(n as u64, (n * size_of::<T>()) as u64);
        } else if self.local.inner.side_left(Side::Recv) {
            return Err(TrySendError::Disconnected(()));
        }
        Ok(n)
    }

    /// Records `n` messages committed through a chunk and wakes a sleeping consumer.
    pub fn notify(&mut self, n: usize) {
        self.local.done(n as u64, (n * size_of::<T>()) as u64);
    }

    /// Free slots now.
    pub fn free(&mut self) -> usize {
        self.ring.free()
    }
}

impl<T: Pod + Send> Consumer<T> {
    recv_impl!();

    /// Zero-copy: borrows `n` messages in place; call [`notify`](Self::notify) after
    /// committing so a sleeping producer wakes.
    pub fn read_chunk(
        &mut self,
        n: usize,
    ) -> Result<shmlane_ring::ReadChunk<'_, T>, shmlane_ring::ChunkError> {
        self.ring.read_chunk(n)
    }

    /// Receives up to `out.len()` messages; returns how many. Never blocks.
    pub fn try_recv_slice(&mut self, out: &mut [T]) -> Result<usize, TryRecvError> {
        let n = self
            .ring
            .pop_slice(out)
            .map_err(|_| TryRecvError::Corrupt)?;
        if n > 0 {
            self.local.done(n as u64, (n * size_of::<T>()) as u64);
        } else if self.local.inner.side_left(Side::Send) && self.ring.is_empty() {
            return Err(TryRecvError::Disconnected);
        }
        Ok(n)
    }

    /// Records `n` messages released through a chunk and wakes a sleeping producer.
    pub fn notify(&mut self, n: usize) {
        self.local.done(n as u64, (n * size_of::<T>()) as u64);
    }

    /// Messages in the ring now.
    pub fn len(&mut self) -> usize {
        self.ring.len()
    }

    /// Whether the ring is empty now.
    pub fn is_empty(&mut self) -> bool {
        self.ring.is_empty()
    }
}

impl<T: Pod + Send> Sender<T> {
    send_impl!();

    /// Gives back a slot that a receiver which died between taking a message and releasing
    /// the slot still holds at the ring position senders need next (otherwise the ring stays
    /// full there). [`send`](Self::send) does this by itself while it waits, at most every
    /// 10 ms; callers of [`try_send`](Self::try_send) that keep finding the ring full call it.
    /// Returns whether a slot was given back (counted in `lost`: the dead receiver's message;
    /// not counted when that receiver had taken a skipped position, which held none).
    pub fn recover(&mut self) -> bool {
        self.local.check_hole(&*self.ring, true)
    }

    /// Test hook, not part of the API: what a sender process killed between taking its ring
    /// position and publishing its message leaves behind (the position taken, nothing
    /// written; the endpoint never leaves). The caller then hangs or is killed.
    #[doc(hidden)]
    pub fn abandon_send_for_tests(self) {
        let Self { ring, local } = self;
        ring.into_inner().abandon_push_for_tests(true);
        core::mem::forget(local);
    }
}

impl<T: Pod + Send> Receiver<T> {
    recv_impl!();

    /// Skips a position that a sender which died between taking it and publishing its message
    /// left at the head of the ring (otherwise nothing behind it is ever received).
    /// [`recv`](Self::recv) does this by itself while it waits, at most every 10 ms; callers of
    /// [`try_recv`](Self::try_recv) that keep finding the ring empty call it. Returns whether a
    /// position was skipped (counted in `lost`).
    pub fn recover(&mut self) -> bool {
        self.local.check_hole(&*self.ring, true)
    }

    /// Test hook, not part of the API: what a receiver process killed between taking its ring
    /// position and releasing the slot leaves behind (the message taken, the slot held; the
    /// endpoint never leaves). The caller then hangs or is killed.
    #[doc(hidden)]
    pub fn abandon_recv_for_tests(self) {
        let Self { ring, local } = self;
        ring.into_inner().abandon_pop_for_tests(true);
        core::mem::forget(local);
    }

    /// Messages in the ring now, approximately.
    pub fn len(&self) -> usize {
        self.ring.len()
    }

    /// Whether the ring looks empty.
    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EDGES: [u64; 14] = [
        0,
        1,
        2,
        3,
        255,
        256,
        1 << 20,
        (1 << 40) - 1,
        1 << 40,
        (1 << 40) + 1,
        1 << 41,
        1 << 63,
        u64::MAX - 1,
        u64::MAX,
    ];

    fn capacity_err(r: Result<Geometry, OpenError>) -> (u64, u64, u64) {
        match r {
            Err(OpenError::Config {
                error:
                    ConfigError::Capacity {
                        capacity, min, max, ..
                    },
                ..
            }) => (capacity, min, max),
            other => panic!("expected a capacity error, got {other:?}"),
        }
    }

    /// Every kind, every edge capacity and message size: a geometry or a typed error, never
    /// an overflow panic (debug) or a wrapped size (release).
    #[test]
    fn edge_settings_give_a_geometry_or_a_typed_error() {
        fn check<T: Pod + Send>(b: impl Fn() -> Builder<T>) {
            for cap in EDGES {
                for msg in EDGES.into_iter().map(Some).chain([None]) {
                    let mut bld = b().capacity(cap);
                    bld.msg_size = msg;
                    match bld.geometry() {
                        Ok(g) => {
                            assert_eq!(g.cap, cap);
                            assert!(g.ring <= MAX_RING_BYTES && g.ring >= cap.min(MAX_RING_BYTES));
                            assert!(g.segment > g.ring && g.segment % 4096 == 0);
                        }
                        Err(OpenError::Config { .. }) => {}
                        Err(e) => panic!("capacity {cap}, msg {msg:?}: {e}"),
                    }
                }
            }
        }
        check(|| spsc::<u64>("t"));
        check(|| spsc::<[u8; 3]>("t"));
        check(|| spsc::<[u64; 1 << 17]>("t"));
        check(|| spsc::<[u8; 1 << 32]>("t"));
        check(|| spsc::<[u8; (1 << 32) + 8]>("t"));
        check(|| mpmc::<u64>("t"));
        check(|| mpmc::<[u8; 1 << 20]>("t"));
        check(|| bytes("t"));
        check(|| broadcast("t"));
    }

    #[test]
    fn capacity_u64_max_is_a_capacity_error_for_every_kind() {
        let max = shmlane_ring::MAX_CAPACITY;
        assert_eq!(
            capacity_err(spsc::<u64>("t").capacity(u64::MAX).geometry()),
            (u64::MAX, 1, max)
        );
        assert_eq!(
            capacity_err(mpmc::<u64>("t").capacity(u64::MAX).geometry()),
            (u64::MAX, 2, max)
        );
        assert_eq!(
            capacity_err(bytes("t").capacity(u64::MAX).geometry()),
            (u64::MAX, 256, max)
        );
        assert_eq!(
            capacity_err(broadcast("t").capacity(u64::MAX).geometry()),
            (u64::MAX, 2, max)
        );
        // Below the kind's minimum or not a power of two.
        assert_eq!(capacity_err(mpmc::<u64>("t").capacity(1).geometry()).0, 1);
        assert_eq!(capacity_err(bytes("t").capacity(8).geometry()).0, 8);
        assert_eq!(capacity_err(spsc::<u64>("t").capacity(0).geometry()).0, 0);
        assert_eq!(capacity_err(spsc::<u64>("t").capacity(3).geometry()).0, 3);
        assert_eq!(
            capacity_err(spsc::<u64>("t").capacity(1 << 41).geometry()).0,
            1 << 41
        );
        let e = spsc::<u64>("t").capacity(u64::MAX).geometry().unwrap_err();
        assert!(
            e.to_string()
                .contains("use a power of two from 1 to 1099511627776"),
            "{e}"
        );
    }

    #[test]
    fn message_sizes_past_the_kind_limit_are_msg_size_errors() {
        let slot_max = shmlane_ring::broadcast::MAX_SLOT_BYTES as u64 - 16;
        for (b, max) in [
            (broadcast("t").msg_size(u64::MAX), slot_max),
            (broadcast("t").msg_size(slot_max + 1), slot_max),
            (bytes("t").capacity(256).msg_size(25), 24),
        ] {
            match b.geometry() {
                Err(OpenError::Config {
                    error: ConfigError::MsgSize { max: m, .. },
                    ..
                }) => assert_eq!(m, max),
                other => panic!("{other:?}"),
            }
        }
        match spsc::<u64>("t").msg_size(9).geometry() {
            Err(OpenError::Config {
                error: ConfigError::MsgSize { max: 8, .. },
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
        // At the limits: accepted.
        let g = broadcast("t").msg_size(slot_max).geometry().unwrap();
        assert_eq!(g.slot, shmlane_ring::broadcast::MAX_SLOT_BYTES);
        assert_eq!(
            bytes("t")
                .capacity(256)
                .msg_size(24)
                .geometry()
                .unwrap()
                .msg,
            24
        );
        assert_eq!(broadcast("t").msg_size(0).geometry().unwrap().slot, 24);
    }

    #[test]
    fn rings_past_the_size_limit_are_too_large_errors() {
        // 2^40 slots of 1 MiB: 2^60 bytes.
        match broadcast("t")
            .capacity(1 << 40)
            .msg_size(slot_max())
            .geometry()
        {
            Err(OpenError::Config {
                error: ConfigError::TooLarge { capacity, slot, .. },
                ..
            }) => assert_eq!((capacity, slot), (1 << 40, 1 << 20)),
            other => panic!("{other:?}"),
        }
        // 2^40 slots of 4 GiB: 2^72 bytes, past u64 (the product is checked).
        assert!(matches!(
            spsc::<[u8; 1 << 32]>("t").capacity(1 << 40).geometry(),
            Err(OpenError::Config {
                error: ConfigError::TooLarge { .. },
                ..
            })
        ));
        assert!(matches!(
            spsc::<[u8; (1 << 32) + 8]>("t").capacity(1).geometry(),
            Err(OpenError::Config {
                error: ConfigError::TooLarge { .. },
                ..
            })
        ));
        assert!(matches!(
            mpmc::<[u8; 1 << 20]>("t").capacity(1 << 30).geometry(),
            Err(OpenError::Config {
                error: ConfigError::TooLarge { .. },
                ..
            })
        ));
        // Just at the limit: 2^40 slots of 64 bytes is 2^46 bytes plus the header: too large;
        // 2^39 of them fits, and the sizes are exact.
        assert!(spsc::<[u64; 8]>("t").capacity(1 << 40).geometry().is_err());
        let g = spsc::<[u64; 8]>("t").capacity(1 << 39).geometry().unwrap();
        assert_eq!(g.ring, SpscRing::<[u64; 8]>::required_size(1 << 39) as u64);
        let g = bytes("t").capacity(1 << 40).geometry().unwrap();
        assert_eq!(g.ring, RecordRing::required_size(1 << 40) as u64);
        let g = broadcast("t").capacity(1 << 20).geometry().unwrap();
        assert_eq!(
            g.ring,
            BroadcastRing::required_size(1 << 20, broadcast_slot(BROADCAST_MSG)) as u64
        );
    }

    /// The checksum's wire format: CRC32C (Castagnoli: 0xE3069283 for "123456789") of the
    /// message's length as a little-endian u32, then its bytes, stored little-endian.
    #[test]
    fn the_checksum_is_crc32c_of_the_length_and_the_bytes() {
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(
            checksum(b"123456789"),
            crc32c::crc32c(b"\x09\x00\x00\x00123456789").to_le_bytes()
        );
        assert_eq!(checksum(b""), crc32c::crc32c(&[0; 4]).to_le_bytes());
        assert_ne!(checksum(b"ab"), checksum(b"ab\0"));
    }

    fn slot_max() -> u64 {
        shmlane_ring::broadcast::MAX_SLOT_BYTES as u64 - 16
    }
}
