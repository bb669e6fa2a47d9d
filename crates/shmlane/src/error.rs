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
    /// The ring inside is malformed or its role is taken.
    #[error("ring: {0}")]
    Ring(#[from] AttachError),
    /// An event inside is malformed.
    #[error("event: {0}")]
    Event(#[from] EventError),
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
