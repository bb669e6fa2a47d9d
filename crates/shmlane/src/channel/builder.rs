//! Channel builders: settings, checked geometry, create / open / open_or_create.

mod checks;

use super::{
    Arc, AtomicU32, BroadcastRing, CHAN_MAGIC, CHAN_SIZE, Channel, ConfigError, EVENT_SIZE, Event,
    FLAG_CHECKSUM, FLAG_UNLINK, Header, Identity, Inner, Kind, Location, MpmcRing, NonNull,
    OpenError, Ordering, PeersLeave, PhantomData, Pod, REGION_CHAN, REGION_EVENT, REGION_RING,
    RING_IDENTITY_WORDS, ROLE_RECEIVER, ROLE_SENDER, RecordRing, Segment, SpscRing, UnlinkPolicy,
    WaitStrategy, Wakes, chan_identity,
    elem::{self, BYTES_TYPE, ElemType, REGION_TYPE, TYPE_SIZE, TYPE_WORDS},
    record_messages, ring_identity, ring_unread,
};
use checks::{Geometry, cursors_size};

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
    let mut b = Builder::new(name, Kind::Broadcast);
    b.byte_form = true;
    b
}

/// Starts building a typed broadcast channel of `T` named `name`: every message is one `T`
/// (the largest message is `size_of::<T>()`); the endpoints are
/// [`Channel::typed_publisher`] and [`Channel::typed_subscriber`] (see
/// [`TypedPublisher`](crate::TypedPublisher) for why they are named apart from the byte
/// form's). Capacity in messages (default 1024).
pub fn broadcast_of<T: Pod + Send>(name: &str) -> Builder<T> {
    Builder::new(name, Kind::Broadcast).msg_size(size_of::<T>() as u64)
}

/// Starts building a latest-value channel of `T` named `name` (a "blackboard"): any number
/// of [`LatestWriter`](crate::LatestWriter)s publish a `T`, any number of
/// [`LatestReader`](crate::LatestReader)s read the newest complete one, never a torn one.
/// Endpoints: [`Channel::writer`] and [`Channel::reader`]. Capacity in slots (a power of two
/// in 2..=65536, default 4): each writer racing others and each writer that died mid-write
/// needs one besides the newest value's (see `shmlane_ring::latest`).
pub fn latest<T: Pod + Send>(name: &str) -> Builder<T> {
    Builder::new(name, Kind::Latest)
}

/// A byte latest-value channel of values up to `value_size` bytes (`raw_latest`).
pub(crate) fn latest_bytes(name: &str, value_size: u64) -> Builder<u8> {
    let mut b = Builder::new(name, Kind::Latest).msg_size(value_size);
    b.byte_form = true;
    b
}

/// Segment region of a broadcast channel's cursor table (`shmlane_ring::CursorTable`).
pub(crate) const REGION_CURSORS: u32 = 0x4355;

/// Default value size of a byte latest-value channel (`raw_latest` takes it explicitly; the
/// command line's default).
const LATEST_VALUE: u64 = 64;

/// Default largest broadcast message: slots of 256 bytes.
const BROADCAST_MSG: u64 = 240;

/// Configures a channel, then creates or opens it.
///
/// Every option is applied or refused for the channel's kind, never ignored. On `open`, the
/// options that describe the channel are checked against the one that exists (a difference is
/// an error: [`OpenError::Mismatch`], [`OpenError::WrongType`]); the others are creation-only
/// or apply to this handle only, as listed:
///
/// | option | spsc, mpmc | bytes, broadcast | on open |
/// | --- | --- | --- | --- |
/// | [`capacity`](Self::capacity) | slots | bytes / slots | checked if set |
/// | [`msg_size`](Self::msg_size) | refused unless `size_of::<T>()` | applied: the largest message | checked if set |
/// | [`type_name`](Self::type_name) | applied (default `type_name::<T>()`) | refused (records `bytes`) | checked (with size and alignment) |
/// | [`checksum`](Self::checksum) | refused if `true` | applied | checked if set |
/// | [`mode`](Self::mode) | applied | applied | creation-only (ignored by design: the segment exists) |
/// | [`unlink`](Self::unlink) | applied | applied | this handle (the channel's creator also records `LastDetach` for every opener) |
/// | [`keep_unread`](Self::keep_unread) | applied (with `LastDetach`) | applied (with `LastDetach`) | this handle |
/// | [`populate`](Self::populate), [`mlock`](Self::mlock) | applied | applied | this handle's mapping |
/// | [`location`](Self::location) | applied | applied | where to look |
/// | [`wait`](Self::wait) | applied | applied | this handle's endpoints |
/// | [`wakes`](Self::wakes) | applied | applied | this handle's endpoints |
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
#[allow(
    clippy::struct_excessive_bools,
    reason = "independent options of a builder, each set by its own method"
)]
pub struct Builder<T> {
    name: String,
    kind: Kind,
    capacity: Option<u64>,
    msg_size: Option<u64>,
    location: Location,
    strategy: WaitStrategy,
    wakes: Wakes,
    mode: u32,
    group: Option<u32>,
    trust_owner: Option<u32>,
    populate: bool,
    mlock: bool,
    unlink: UnlinkPolicy,
    checksum: Option<bool>,
    /// `type_name` override.
    type_name: Option<String>,
    /// A byte or broadcast-byte channel: its element type is `bytes`.
    byte_form: bool,
    peers_leave: Option<PeersLeave>,
    resume: bool,
    keep_unread: bool,
    /// A run-time element layout replacing `T`'s (run-time channels only).
    elem: Option<shmlane_ring::ElemLayout>,
    _t: PhantomData<T>,
}

impl<T: Pod + Send> Builder<T> {
    /// A builder whose element layout is `elem` (run-time channels, `channel/raw.rs`), not
    /// `T`'s.
    pub(crate) fn with_elem(name: &str, kind: Kind, elem: shmlane_ring::ElemLayout) -> Self {
        let mut b = Self::new(name, kind);
        b.elem = Some(elem);
        b
    }

    /// The element's size: the run-time layout's if there is one, else `T`'s.
    fn elem_size(&self) -> u64 {
        self.elem
            .map_or(size_of::<T>(), shmlane_ring::ElemLayout::size) as u64
    }

    /// The element's alignment, as [`elem_size`](Self::elem_size).
    fn elem_align(&self) -> u64 {
        self.elem
            .map_or(align_of::<T>(), shmlane_ring::ElemLayout::align) as u64
    }

    fn new(name: &str, kind: Kind) -> Self {
        Self {
            name: name.to_owned(),
            kind,
            capacity: None,
            msg_size: None,
            location: Location::Posix(name.to_owned()),
            strategy: WaitStrategy::default(),
            wakes: Wakes::Peers,
            mode: 0o600,
            group: None,
            trust_owner: None,
            populate: true,
            mlock: false,
            unlink: UnlinkPolicy::Never,
            checksum: None,
            type_name: None,
            byte_form: kind == Kind::Bytes,
            peers_leave: None,
            resume: false,
            keep_unread: true,
            elem: None,
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

    /// The largest message in bytes. Byte channels: applied, recorded in the channel, and
    /// senders refuse longer messages ([`ByteSendError::TooLong`](crate::ByteSendError));
    /// default and most an eighth of the capacity less 8 (less 4 more with checksums).
    /// Broadcast: the largest message the publisher takes (default 240; the slot is 16 bytes
    /// more, rounded up to 8). SPSC and MPMC: the element type decides, so
    /// anything but `size_of::<T>()` is refused ([`ConfigError::FixedMsgSize`]). When opening,
    /// a size set here must match the channel's.
    #[must_use]
    pub fn msg_size(mut self, bytes: u64) -> Self {
        self.msg_size = Some(bytes);
        self
    }

    /// The element type's name, recorded in the channel with its size and alignment and
    /// checked by every opener (default: `core::any::type_name::<T>()`, which names the type
    /// as this compiler spells it, module path included: the same struct compiled into two
    /// crates has two names, so programs built separately should agree on a name here). Set
    /// it to share a channel with peers whose type has the
    /// same layout under another name: another Rust type, or C or Python code (the record's
    /// layout is in docs/design.md). Opening a channel recorded under another name, size or
    /// alignment fails with [`OpenError::WrongType`]. Typed channels only: byte and broadcast
    /// byte channels record `bytes` and refuse this option.
    #[must_use]
    pub fn type_name(mut self, name: &str) -> Self {
        self.type_name = Some(name.to_owned());
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

    /// Whether this handle's endpoints wake peers that sleep for them (default
    /// [`Wakes::Peers`]); each endpoint can change its own with `set_wakes`. [`Wakes::Never`]
    /// for a real-time side: its operations never make a system call, and its peers' blocking
    /// calls park at most [`NEVER_WAKE_POLL`](crate::NEVER_WAKE_POLL) at a time instead.
    #[must_use]
    pub fn wakes(mut self, wakes: Wakes) -> Self {
        self.wakes = wakes;
        self
    }

    /// Permission bits of a created segment (default 0600); creation-only: opening an
    /// existing channel leaves its permissions as they are. Refused at creation
    /// (`CreateError::InvalidMode`): modes other users may write (`o+w`), the setuid, setgid
    /// and sticky bits, and modes without read and write for the owner (mode 0). To share with
    /// a group: `.mode(0o660).group(gid)`, and openers of other users pass
    /// [`trust_owner`](Self::trust_owner).
    #[must_use]
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode;
        self
    }

    /// Group of a created segment (a gid; default the creator's), set before anyone else can
    /// open it; creation-only. The creator must belong to it unless it is root.
    #[must_use]
    pub fn group(mut self, gid: u32) -> Self {
        self.group = Some(gid);
        self
    }

    /// Accept a channel owned by user `uid` as well as this process's own. Opening a channel
    /// another user owns fails without it ([`OpenError::Open`] holding
    /// `shmlane_segment::OpenError::UntrustedOwner`): its owner, and whoever the owner let
    /// write it, can change it under this handle. A channel every user may write (`o+w`) is
    /// refused whatever is trusted.
    #[must_use]
    pub fn trust_owner(mut self, uid: u32) -> Self {
        self.trust_owner = Some(uid);
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
    /// `UnlinkPolicy::CreatorDrop` is the explicit exception: the creating handle removes the
    /// name when it is dropped, whatever the ring holds (for a channel whose creator is its
    /// receiver and decides when what is left no longer matters); senders still attached then
    /// write into a segment nobody can open again, and their messages are lost with it.
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

    /// With `UnlinkPolicy::LastDetach`: whether this handle, leaving last, keeps the name while
    /// the ring holds unread messages (default `true`: they wait for a later receiver). `false`
    /// is pipe-like: the last to leave removes the name and the unread messages with it, as a
    /// pipe drops what its reader never read; a caller that asks for it must report that loss
    /// itself (the `shmlane` command's implicit channels do: `send` says how many lines were
    /// not delivered, and the next run on the name is a first run). No effect with other
    /// policies.
    #[must_use]
    pub fn keep_unread(mut self, yes: bool) -> Self {
        self.keep_unread = yes;
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
        if self.resume || matches!(self.kind, Kind::Broadcast | Kind::Latest) {
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
        // Byte rings: the positions count bytes; the error says how many messages.
        let unread = if self.kind == Kind::Bytes {
            // SAFETY: as above.
            unsafe { record_messages(ring.0, ring.1, cap) }.max(1)
        } else {
            unread
        };
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
    /// `max_message()` bytes: a message longer than a smaller buffer is read whole to check
    /// it, then kept for the next receive with room (`BufferTooSmall` tells its size; nothing
    /// is lost). Typed SPSC and MPMC channels carry fixed `Pod` elements and refuse it: put a
    /// checksum in `T` there (typed broadcast channels accept it).
    #[must_use]
    pub fn checksum(mut self, yes: bool) -> Self {
        self.checksum = Some(yes);
        self
    }

    /// The segment builder; sized (`Some`) for creating (opening accepts the existing size,
    /// which the channel header then validates).
    fn segment(&self, size: Option<u64>) -> shmlane_segment::SegmentBuilder {
        let b = Segment::at(self.location.clone());
        let b = match size {
            Some(bytes) => b.size(bytes),
            None => b,
        };
        let b = match self.group {
            Some(gid) => b.group(gid),
            None => b,
        };
        let b = match self.trust_owner {
            Some(uid) => b.trust_owner(uid),
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
                Kind::Spsc => match self.elem {
                    Some(l) => {
                        shmlane_ring::DynSpscRing::init(ring.as_ptr(), ring.len(), l, cap, 0)?;
                    }
                    None => SpscRing::<T>::init(ring.as_ptr(), ring.len(), cap, 0)?,
                },
                Kind::Mpmc => match self.elem {
                    Some(l) => {
                        shmlane_ring::DynMpmcRing::init(ring.as_ptr(), ring.len(), l, cap, 0)?;
                    }
                    None => MpmcRing::<T>::init(ring.as_ptr(), ring.len(), cap, 0)?,
                },
                Kind::Bytes => RecordRing::init(ring.as_ptr(), ring.len(), cap, 0)?,
                // msg <= 1 MiB (checked by `geometry`).
                Kind::Latest => {
                    shmlane_ring::LatestRing::init(ring.as_ptr(), ring.len(), cap, g.msg as usize)?;
                }
                Kind::Broadcast => {
                    BroadcastRing::init(ring.as_ptr(), ring.len(), cap, g.slot, 0)?;
                    let c = s.region("cursors", cursors_size(self.kind), REGION_CURSORS)?;
                    shmlane_ring::CursorTable::init(
                        c.as_ptr(),
                        c.len(),
                        shmlane_ring::broadcast::DEFAULT_ENTRIES,
                    )?;
                }
            }
            for ev in ["ev-data", "ev-space"] {
                let r = s.region(ev, EVENT_SIZE as u64, REGION_EVENT)?;
                Event::init(r.as_ptr(), r.len())?;
            }
            let ty = s.region("type", TYPE_SIZE, REGION_TYPE)?;
            elem::write_words(ty.as_ptr(), &self.elem_type()?);
            let h = &*chan.as_ptr().cast::<Header>();
            // ORDERING: Relaxed for all: published by the segment's init_state Release.
            h.kind.store(self.kind as u64, Ordering::Relaxed);
            // ORDERING: as above.
            h.elem.store(self.elem_size(), Ordering::Relaxed);
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

    /// The bytes of shared memory `create` would reserve with these settings (checked as
    /// `create` checks them): for asking before a large reservation (`shmlane create --yes`).
    pub fn segment_size(&self) -> Result<u64, OpenError> {
        Ok(self.geometry()?.segment)
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

    /// The channel's type record (where it is, its words, what they say), checked against
    /// the type this builder expects: size, alignment and name.
    fn check_type(
        &self,
        seg: &Segment,
    ) -> Result<(*mut u8, [u64; TYPE_WORDS], ElemType), OpenError> {
        let ty_region = match seg.find_region("type") {
            Ok(r) => r,
            Err(shmlane_segment::RegionError::NotFound(_)) => {
                return Err(OpenError::NoTypeRecord(self.name.clone()));
            }
            Err(e) => return Err(e.into()),
        };
        if ty_region.len() < TYPE_WORDS * 8 {
            return Err(OpenError::DamagedTypeRecord {
                name: self.name.clone(),
                what: "its region is too small",
            });
        }
        let ty_at = ty_region.as_ptr();
        // SAFETY: the region is 128-byte aligned and holds the words (checked); its words are
        // accessed only atomically.
        let ty_words = unsafe { elem::read_words(ty_at) };
        let found = ElemType::from_words(&ty_words);
        if let Some(what) = found.damage() {
            return Err(OpenError::DamagedTypeRecord {
                name: self.name.clone(),
                what,
            });
        }
        let wanted = self.elem_type()?;
        if found != wanted {
            let (mut found_s, mut wanted_s) = (found.to_string(), wanted.to_string());
            // Names longer than the stored prefix and equal in it show the same: say what
            // differs.
            if found_s == wanted_s {
                (found_s, wanted_s) = (found.detailed(), wanted.detailed());
            }
            return Err(OpenError::WrongType {
                name: self.name.clone(),
                found: found_s,
                wanted: wanted_s,
            });
        }
        Ok((ty_at, ty_words, found))
    }

    /// The channel's checksum flag, checked against what this builder asked for.
    fn check_checksum_flag(&self, h: &Header) -> Result<bool, OpenError> {
        // ORDERING: Relaxed; written before the segment was published (the segment's open
        // Acquire-loads init_state).
        let checksum = h.flags.load(Ordering::Relaxed) & FLAG_CHECKSUM != 0;
        if self.checksum.is_some_and(|want| want != checksum) {
            let on_off = |b: bool| if b { "on" } else { "off" };
            return Err(OpenError::Mismatch {
                found: format!("{} with checksums {}", self.kind.name(), on_off(checksum)),
                wanted: format!("{} with checksums {}", self.kind.name(), on_off(!checksum)),
                name: self.name.clone(),
            });
        }
        Ok(checksum)
    }

    fn finish(self, mut seg: Segment) -> Result<Channel<T>, OpenError> {
        // Until this open succeeds the handle keeps the name: an open that fails (another
        // type, capacity, kind, a stale channel) drops it, and with `LastDetach`, alone on an
        // idle channel, it would remove the name and the unread messages with it. Replaced
        // below by the real condition.
        if self.unlink == UnlinkPolicy::LastDetach {
            seg.keep_name_if(|| true);
        }
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
        let (kind, elem, cap, msg) = (
            h.kind.load(Ordering::Relaxed),
            h.elem.load(Ordering::Relaxed),
            h.capacity.load(Ordering::Relaxed),
            h.msg_size.load(Ordering::Relaxed),
        );
        if kind != self.kind as u64 {
            let found = Kind::from_word(kind).map_or_else(
                || format!("an unknown kind ({kind})"),
                |k| format!("{} (endpoints {})", k.name(), k.endpoints()),
            );
            return Err(OpenError::Mismatch {
                name: self.name,
                found,
                wanted: format!("{} (endpoints {})", self.kind.name(), self.kind.endpoints()),
            });
        }
        let (ty_at, ty_words, found_ty) = self.check_type(&seg)?;
        let wanted_cap = self.capacity.unwrap_or(cap);
        let wanted_msg = self.msg_size.unwrap_or(msg);
        // The header's element size and largest message agree with the type record (typed
        // channels: a message is an element); a difference is an overwritten header.
        let typed_msg_ok = matches!(self.kind, Kind::Bytes | Kind::Broadcast)
            || (self.kind == Kind::Latest && self.byte_form)
            || msg == elem;
        if elem != found_ty.size() || !typed_msg_ok || cap != wanted_cap || msg != wanted_msg {
            return Err(OpenError::Mismatch {
                name: self.name,
                found: format!(
                    "{}, {elem}-byte elements, messages up to {msg} bytes, capacity {cap}",
                    self.kind.name()
                ),
                wanted: format!(
                    "{}, {}-byte elements, messages up to {wanted_msg} bytes, capacity {wanted_cap}",
                    self.kind.name(),
                    found_ty.size(),
                ),
            });
        }
        let checksum = self.check_checksum_flag(h)?;
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
            ty: ty_words,
        };
        if ident.ring[0] != shmlane_ring::RING_MAGIC {
            return Err(OpenError::Ring(shmlane_ring::AttachError::NotARing));
        }
        self.check_stale(&seg, (ring_ptr, ring_len), cap)?;
        if self.unlink == UnlinkPolicy::LastDetach && !self.keep_unread {
            // Pipe-like (`keep_unread(false)`): the last to leave removes the name whatever the
            // ring holds; the caller reports the loss.
            seg.keep_name_if(|| false);
        } else if self.unlink == UnlinkPolicy::LastDetach {
            // The last endpoint to leave keeps the name while the ring holds unread messages:
            // sent is delivered (to a later receiver) or counted, never removed with the name.
            let (kind, addr) = (self.kind, ring_ptr as usize);
            seg.keep_name_if(move || {
                // SAFETY: asked by the segment's drop while the mapping (and so the ring
                // region, 128-byte aligned and `ring_len` bytes) is still mapped.
                unsafe { ring_unread(kind, addr as *const u8, ring_len, cap) > 0 }
            });
        }
        Ok(Channel {
            inner: Arc::new(Inner {
                // Before `name` moves out of `self`.
                mode: self.peers_leave(),
                hdr,
                ev_data,
                ev_space,
                ident,
                checksum,
                msg_max: msg,
                elem_type: found_ty,
                ty_at,
                ring: (ring_ptr, ring_len),
                roles: [AtomicU32::new(0), AtomicU32::new(0)],
                name: self.name,
                kind: self.kind,
                strategy: self.strategy,
                wakes: self.wakes,
                seg,
            }),
            _t: PhantomData,
        })
    }
}

#[cfg(test)]
mod tests;
