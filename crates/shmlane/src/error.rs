//! One error enum per operation.

use shmlane_ring::AttachError;
use shmlane_wake::EventError;

/// Why a channel could not be created or opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The segment could not be created.
    #[error(transparent)]
    Create(#[from] shmlane_segment::CreateError),
    /// The segment could not be opened.
    #[error(transparent)]
    Open(#[from] shmlane_segment::OpenError),
    /// Creating or opening failed.
    #[error(transparent)]
    OpenOrCreate(#[from] shmlane_segment::OpenOrCreateError),
    /// A region is missing or malformed.
    #[error(transparent)]
    Region(#[from] shmlane_segment::RegionError),
    /// The segment exists but is not a shmlane channel.
    #[error("segment {0} is not a shmlane channel (no channel header); pick another name")]
    NotAChannel(String),
    /// The channel handle was opened by another process: this one was made from it by
    /// `fork`. Its attachment (and so its identity for role claims and liveness) is the
    /// parent's.
    #[error(
        "channel {0} was opened by another process (this process was forked from it); open the channel again in this process"
    )]
    Forked(String),
    /// The channel exists with another kind, element size or capacity.
    #[error(
        "channel {name} exists as {found}, asked for {wanted}; open it with the same kind, message type and capacity, or remove it (shmlane rm {name})"
    )]
    Mismatch {
        /// Channel name.
        name: String,
        /// What the segment holds.
        found: String,
        /// What was asked for.
        wanted: String,
    },
    /// The channel holds another element type than the one it was opened with: another size,
    /// alignment or name (the name is `core::any::type_name::<T>()` unless the builder's
    /// [`type_name`](crate::Builder::type_name) overrides it).
    #[error(
        "channel {name} holds {found}; opened as {wanted}: open it with the type it holds (or the same Builder::type_name), or remove it (shmlane rm {name})"
    )]
    WrongType {
        /// Channel name.
        name: String,
        /// The type the channel records (`name (size bytes, align n)`).
        found: String,
        /// The type asked for, in the same form.
        wanted: String,
    },
    /// An endpoint was asked of a channel of another kind (e.g. `byte_sender()` of an SPSC
    /// channel).
    #[error(
        "channel {name} is a {} channel, which has no {wanted}: its endpoints are {}", .kind.name(), .kind.endpoints()
    )]
    WrongKind {
        /// Channel name.
        name: String,
        /// The channel's kind.
        kind: crate::Kind,
        /// The endpoint asked for (`producer`, `consumer`, `sender`, `receiver`,
        /// `byte_sender`, `byte_receiver`, `publisher`, `subscriber`).
        wanted: &'static str,
    },
    /// The channel has no type record: it was made by a shmlane from before channels recorded
    /// their element type (the segment layout changed).
    #[error(
        "channel {0} has no element type record: it was made by an older shmlane (the layout changed); remove it (shmlane rm {0}) and create it again"
    )]
    NoTypeRecord(String),
    /// The channel's type record contradicts itself (its name's hash or length, its
    /// alignment): no shmlane writes such a record, so it was overwritten.
    #[error(
        "channel {name}: its element type record is damaged ({what}); no shmlane writes such a record, so something overwrote it: remove the channel (shmlane rm {name}) and create it again"
    )]
    DamagedTypeRecord {
        /// Channel name.
        name: String,
        /// What is wrong with the record.
        what: &'static str,
    },
    /// The ring inside is malformed or its role is taken.
    #[error("ring: {0}")]
    Ring(#[from] AttachError),
    /// An event inside is malformed.
    #[error("event: {0}")]
    Event(#[from] EventError),
    /// A builder setting is out of range; nothing was created or opened.
    #[error("channel {name}: {error}")]
    Config {
        /// Channel name.
        name: String,
        /// What is out of range, and the range.
        #[source]
        error: ConfigError,
    },
    /// The channel holds unread messages from a session in which a process died, and no live
    /// process holds an endpoint: opening it would replay them into a new session. Remove it
    /// (`shmlane rm`) or resume it ([`Builder::resume`](crate::Builder::resume)).
    #[error(
        "channel {name} holds {unread} unread messages from a session in which process {pid} ({role}) died: remove it with `shmlane rm {name}` to start afresh, or resume it (`--resume`, `Builder::resume(true)`) to deliver them"
    )]
    Stale {
        /// Channel name.
        name: String,
        /// The process that died holding an endpoint (a sender, if one did).
        pid: u32,
        /// What it held: `sender`, `receiver` or `sender and receiver`.
        role: &'static str,
        /// Messages in the ring (byte channels: its records, a claim a sender never
        /// committed counted as one).
        unread: u64,
    },
    /// A single role (SPSC producer or consumer, byte receiver, broadcast publisher) is held
    /// by a live endpoint: of another process, or of this one (the same or another handle,
    /// any thread). One left by a dead process is taken over instead.
    #[error(
        "channel {name}: its {role} is already held by {}; a channel has one {role} at a time: stop that process or drop that endpoint first, or use a kind with any number of them (mpmc: senders and receivers; bytes: senders; broadcast: subscribers)",
        held_by(*.pid, *.holder)
    )]
    RoleTaken {
        /// Channel name.
        name: String,
        /// The role asked for: `producer`, `consumer`, `byte receiver` or `publisher`.
        role: &'static str,
        /// The holder's owner tag (its attachment slot and generation).
        holder: u64,
        /// The holder's process id, as its attachment slot records it (0 if unknown).
        pid: u32,
    },
}

/// A [`Builder`](crate::Builder) setting out of range (found before anything is created, with
/// checked arithmetic: no setting overflows a size computation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The capacity is not a power of two in `min..=max`.
    #[error(
        "capacity {capacity} is out of range for a {kind} channel: use a power of two from {min} to {max}"
    )]
    Capacity {
        /// The channel kind's name.
        kind: &'static str,
        /// The capacity asked for.
        capacity: u64,
        /// The smallest capacity of this kind.
        min: u64,
        /// The largest capacity of this kind.
        max: u64,
    },
    /// The largest message is above what the channel can hold.
    #[error(
        "message size {msg_size} is out of range for a {kind} channel: at most {max} bytes{hint}"
    )]
    MsgSize {
        /// The channel kind's name.
        kind: &'static str,
        /// The message size asked for.
        msg_size: u64,
        /// The largest this channel (kind, element type, capacity) takes.
        max: u64,
        /// What to change.
        hint: &'static str,
    },
    /// `msg_size` on a typed (SPSC, MPMC) channel other than the element's size: the element
    /// type decides the message size there.
    #[error(
        "a {kind} channel's messages are its element type ({elem} bytes), so msg_size {msg_size} does not apply: leave msg_size unset, or use an element type of that size"
    )]
    FixedMsgSize {
        /// The channel kind's name.
        kind: &'static str,
        /// The message size asked for.
        msg_size: u64,
        /// `size_of::<T>()`.
        elem: u64,
    },
    /// `type_name("")`: a type needs a name.
    #[error("an empty type name: give the element type a name other peers can check")]
    EmptyTypeName,
    /// The setting is not available for this kind of channel.
    #[error("a {kind} channel has no {what}")]
    Unsupported {
        /// The channel kind's name.
        kind: &'static str,
        /// What was asked for, and what to do instead.
        what: &'static str,
    },
    /// The ring would be larger than any shared memory: `capacity` slots of `slot` bytes
    /// (plus headers) exceed `max` bytes.
    #[error(
        "a {kind} ring of {capacity} slots of {slot} bytes exceeds the {max}-byte limit on a ring; use a smaller capacity or message size"
    )]
    TooLarge {
        /// The channel kind's name.
        kind: &'static str,
        /// Slots asked for.
        capacity: u64,
        /// Bytes per slot.
        slot: u64,
        /// The limit on a ring's size.
        max: u64,
    },
}

/// Who holds a role, for [`OpenError::RoleTaken`]: the process, when its slot says.
fn held_by(pid: u32, holder: u64) -> String {
    if pid == 0 {
        format!("a live endpoint (owner {holder:#x})")
    } else if pid == std::process::id() {
        format!("this process (pid {pid}: another endpoint or handle of it)")
    } else {
        format!("process {pid}")
    }
}

impl OpenError {
    /// Names the channel, the role and the holding process in a refused role claim; other
    /// errors pass through.
    pub(crate) fn for_role(
        e: AttachError,
        name: &str,
        role: &'static str,
        seg: &shmlane_segment::Segment,
    ) -> Self {
        match e {
            AttachError::RoleTaken { holder } => Self::RoleTaken {
                name: name.to_owned(),
                role,
                holder,
                pid: u32::try_from(holder).map_or(0, |t| seg.tag_pid(t).unwrap_or(0)),
            },
            e => Self::Ring(e),
        }
    }
}

/// Why [`wait_for_peer`](crate::Receiver::wait_for_peer) returned without a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WaitPeerError {
    /// The deadline passed with no live peer attached.
    #[error("timed out: no peer attached")]
    Timeout,
    /// The channel's headers changed under it (corrupt or hostile segment).
    #[error("channel is corrupt ({0})")]
    Corrupt(&'static str),
}

/// Why a non-blocking send failed; the message comes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TrySendError<T> {
    /// The ring is full.
    #[error("channel full")]
    Full(T),
    /// Every receiver left cleanly.
    #[error("every receiver has left the channel")]
    Disconnected(T),
    /// The ring is corrupt (a hostile or crashed peer wrote nonsense).
    #[error("channel ring is corrupt")]
    Corrupt(T),
}

/// Why a blocking send failed; the message comes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendError<T> {
    /// The deadline passed with the ring still full.
    #[error("timed out: channel still full")]
    Timeout(T),
    /// Every receiver left cleanly.
    #[error("every receiver has left the channel")]
    Disconnected(T),
    /// A receiver process died and no live receiver remains.
    #[error("peer gone: a receiver process died")]
    PeerDied(T),
    /// The ring is corrupt.
    #[error("channel ring is corrupt")]
    Corrupt(T),
}

/// Why a non-blocking receive returned nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TryRecvError {
    /// Nothing to receive now.
    #[error("channel empty")]
    Empty,
    /// Every sender left cleanly and the ring is drained.
    #[error("every sender has left and the channel is drained")]
    Disconnected,
    /// The ring is corrupt.
    #[error("channel ring is corrupt")]
    Corrupt,
}

/// Why a blocking receive returned nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecvError {
    /// The deadline passed with the ring still empty.
    #[error("timed out: nothing received")]
    Timeout,
    /// Every sender left cleanly and the ring is drained.
    #[error("every sender has left and the channel is drained")]
    Disconnected,
    /// A sender process died, no live sender remains, and the ring is drained.
    #[error("peer gone: a sender process died")]
    PeerDied,
    /// The ring is corrupt.
    #[error("channel ring is corrupt")]
    Corrupt,
}

/// Why sending on a byte channel failed ([`ByteSender`](crate::ByteSender)) or publishing on a
/// broadcast channel failed ([`Publisher`](crate::Publisher): only `TooLong`). Nothing was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ByteSendError {
    /// The message is longer than the channel's largest.
    #[error(
        "message of {len} bytes, the channel takes at most {max}; create it with a larger capacity (byte channels: an eighth of it, less 8) or --msg-size (broadcast)"
    )]
    TooLong {
        /// Bytes given.
        len: usize,
        /// The channel's largest message.
        max: usize,
    },
    /// No room now (`try_send`).
    #[error("channel full")]
    Full,
    /// Still no room at the deadline (`send`).
    #[error("timed out: channel still full")]
    Timeout,
    /// Every receiver left the channel.
    #[error("every receiver has left the channel")]
    Disconnected,
    /// The receiver's process died (`send`).
    #[error("peer gone: the receiver process died")]
    PeerDied,
    /// The ring's positions are impossible.
    #[error("channel ring is corrupt")]
    Corrupt,
    /// `claim` on a channel with checksums: the checksum needs the message's bytes.
    #[error(
        "zero-copy claims are not available on a channel with checksums (the checksum needs the bytes): use send or try_send"
    )]
    ChecksumClaim,
}

/// Why receiving from a byte channel ([`ByteReceiver`](crate::ByteReceiver)) or a broadcast
/// channel ([`Subscriber`](crate::Subscriber)) returned no message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ByteRecvError {
    /// Nothing there now (`try_recv`).
    #[error("channel empty")]
    Empty,
    /// Still nothing at the deadline (`recv`).
    #[error("timed out: nothing received")]
    Timeout,
    /// Every sender left cleanly and everything they sent was delivered.
    #[error("every sender has left and the channel is drained")]
    Disconnected,
    /// A sender's process died and what it completed was delivered (`recv`).
    #[error("peer gone: a sender process died")]
    PeerDied,
    /// Subscribers only: this subscriber fell a whole ring behind and lost `lost` messages;
    /// it goes on with the newest. Counted in the channel statistics.
    #[error("fell behind and lost {lost} messages (read faster or make the channel larger)")]
    Lapped {
        /// Messages this subscriber will never see, exactly.
        lost: u64,
    },
    /// The next message has `needed` bytes, more than the buffer; nothing was consumed.
    #[error("the next message has {needed} bytes: give a larger buffer")]
    BufferTooSmall {
        /// The message's length.
        needed: usize,
    },
    /// What the ring holds is impossible (corrupt or hostile segment).
    #[error("channel ring is corrupt ({0})")]
    Corrupt(&'static str),
}
