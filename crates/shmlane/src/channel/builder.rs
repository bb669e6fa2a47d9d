//! Channel builders: settings, checked geometry, create / open / open_or_create.

use super::{
    Arc, AtomicU32, BroadcastRing, CHAN_MAGIC, CHAN_SIZE, Channel, ConfigError, EVENT_SIZE, Event,
    FLAG_CHECKSUM, FLAG_UNLINK, Header, Identity, Inner, Kind, Location, MpmcRing, NonNull,
    OpenError, Ordering, PeersLeave, PhantomData, Pod, REGION_CHAN, REGION_EVENT, REGION_RING,
    RING_IDENTITY_WORDS, ROLE_RECEIVER, ROLE_SENDER, RecordRing, Segment, SpscRing, UnlinkPolicy,
    WaitStrategy, chan_identity, ring_identity, ring_unread,
};

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
fn broadcast_slot(msg: u64) -> usize {
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
///
/// Lifecycle (docs/design.md, "Channel lifecycle"): a channel is *created*, *live* (a live
/// process holds an endpoint), *idle* (nobody does; its unread messages wait for the next
/// receiver), *stale* (nobody does, a process died holding one, and unread messages remain) or
/// *corrupt*. `create`, `open` and `open_or_create` open every state but stale, which fails with
/// [`OpenError::Stale`] naming the dead process unless [`resume`](Self::resume)`(true)`; a
/// dead holder with an empty ring opens like a first run. Endpoints are never told of a death
/// before they attached; what they report once their peers leave is set by
/// [`when_peers_leave`](Self::when_peers_leave) ([`PeersLeave`]).
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
    peers_leave: Option<PeersLeave>,
    resume: bool,
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
            peers_leave: None,
            resume: false,
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
    /// the last endpoint leaves cleanly, unless its ring still holds unread messages: then the
    /// channel stays, idle, for a later receiver, and `shmlane ls` shows it with its unread
    /// messages; a message accepted by `send` is never removed with the name).
    #[must_use]
    pub fn unlink(mut self, policy: UnlinkPolicy) -> Self {
        self.unlink = policy;
        self
    }

    /// What this handle's endpoints do once their peers have all left: wait for peers to
    /// (re)appear ([`PeersLeave::Wait`]) or end like a pipe ([`PeersLeave::Disconnect`]).
    /// Default: `Wait` for a persistent channel (`UnlinkPolicy::Never`, the default), and
    /// `Disconnect` when the name is removed with its endpoints (`UnlinkPolicy::LastDetach` or
    /// `CreatorDrop`). Per handle: endpoints on the same channel may differ.
    #[must_use]
    pub fn when_peers_leave(mut self, what: PeersLeave) -> Self {
        self.peers_leave = Some(what);
        self
    }

    /// Open a stale channel anyway: one with no live endpoint, a process that died holding an
    /// endpoint, and unread messages in its ring (messages of a session that crashed). Without
    /// it (the default) opening such a channel fails with [`OpenError::Stale`], so they are
    /// never replayed into a new session unasked. With it they are delivered, and the deaths
    /// before this handle's endpoints attached are not reported to them. Broadcast channels are
    /// never stale (subscribers start at the newest message).
    #[must_use]
    pub fn resume(mut self, yes: bool) -> Self {
        self.resume = yes;
        self
    }

    /// The `PeersLeave` this handle uses.
    fn peers_leave(&self) -> PeersLeave {
        self.peers_leave.unwrap_or(match self.unlink {
            UnlinkPolicy::Never => PeersLeave::Wait,
            UnlinkPolicy::LastDetach | UnlinkPolicy::CreatorDrop => PeersLeave::Disconnect,
        })
    }

    /// Refuses a stale channel (see [`resume`](Self::resume)): no live endpoint holder, a dead
    /// one, unread messages.
    fn check_stale(
        &self,
        seg: &Segment,
        ring: (*mut u8, usize),
        cap: u64,
    ) -> Result<(), OpenError> {
        if self.resume || self.kind == Kind::Broadcast {
            return Ok(());
        }
        let roles = ROLE_SENDER | ROLE_RECEIVER;
        let attached = seg.attachments();
        if attached.iter().any(|a| a.alive && a.role & roles != 0) {
            return Ok(());
        }
        // The dead sender first: it left the messages.
        let dead = |r: u32| attached.iter().find(|a| !a.alive && a.role & r != 0);
        let Some(dead) = dead(ROLE_SENDER).or_else(|| dead(ROLE_RECEIVER)) else {
            return Ok(());
        };
        // SAFETY: the ring region is 128-byte aligned, `ring.1` bytes long, and lives as long
        // as `seg`.
        let unread = unsafe { ring_unread(self.kind, ring.0, ring.1, cap) };
        if unread == 0 {
            return Ok(());
        }
        let role = match dead.role & roles {
            ROLE_SENDER => "sender",
            ROLE_RECEIVER => "receiver",
            _ => "sender and receiver",
        };
        Err(OpenError::Stale {
            name: self.name.clone(),
            pid: dead.pid,
            role,
            unread,
        })
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

    fn finish(self, mut seg: Segment) -> Result<Channel<T>, OpenError> {
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
        self.check_stale(&seg, (ring_ptr, ring_len), cap)?;
        if self.unlink == UnlinkPolicy::LastDetach {
            // The last endpoint to leave keeps the name while the ring holds unread messages:
            // sent is delivered (to a later receiver) or counted, never removed with the name.
            let (kind, addr) = (self.kind, ring_ptr as usize);
            seg.keep_name_if(move || {
                // SAFETY: asked by the segment's drop while the mapping (and so the ring
                // region, 128-byte aligned and `ring_len` bytes) is still mapped.
                unsafe { ring_unread(kind, addr as *const u8, ring_len, cap) > 0 }
            });
        }
        let mode = self.peers_leave();
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
                mode,
                seg,
            }),
            _t: PhantomData,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::checksum;

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
