//! # shmlane
//!
//! Named channels between processes on one machine, through lock-free rings in shared memory:
//! one line per process to get a channel, non-blocking and blocking operations, and
//! disconnection when the peer leaves or dies.
//!
//! ```no_run
//! // Process A
//! let ch = shmlane::spsc::<u64>("ticks").capacity(4096).open_or_create()?;
//! let mut tx = ch.producer()?;
//! tx.send(42, None)?;
//!
//! // Process B
//! let ch = shmlane::spsc::<u64>("ticks").capacity(4096).open_or_create()?;
//! let mut rx = ch.consumer()?;
//! assert_eq!(rx.recv(None)?, 42);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! A and B may start in either order (both ask for the same capacity; whichever comes first
//! creates the channel). The channel is persistent, so B waits for A to (re)appear
//! ([`PeersLeave::Wait`]); `.when_peers_leave(PeersLeave::Disconnect)` makes endpoints end like
//! a pipe when their peers leave (the default with `UnlinkPolicy::LastDetach`).
//!
//! # Lifecycle
//!
//! A channel is *created*, *live* (a live process holds an endpoint), *idle* (nobody holds
//! one; what its ring holds waits for the next receiver), *stale* (nobody holds one, a process
//! died holding one, and its ring holds unread messages: opening fails with
//! [`OpenError::Stale`] unless [`Builder::resume`]), or *corrupt* (its headers changed: every
//! call reports `Corrupt`). An endpoint is never told of a death that happened before it
//! attached; `PeerDied` is reported once per death after it (in `Wait` mode the next call
//! waits again; in `Disconnect` mode it is final). With `UnlinkPolicy::LastDetach` the last
//! endpoint to leave keeps the name while the ring holds unread messages. Details:
//! docs/design.md, "Channel lifecycle".
//!
//! A channel is a shared-memory segment (`shmlane-segment`) holding five regions: `chan` (the
//! channel header and statistics, see [`ChannelStats`]), `ring` (an SPSC or MPMC ring from
//! `shmlane-ring`), two events from `shmlane-wake`: `ev-data` (consumers sleep on it,
//! producers notify it) and `ev-space` (the reverse), and `type` (the element type's size,
//! alignment and name, see [`ElemType`]: opening with another type is
//! [`OpenError::WrongType`]). A producer's notify costs a fence and a load when no consumer
//! sleeps: no syscall. A real-time side that must make no syscall even while its peer sleeps
//! takes [`Wakes::Never`] ([`Builder::wakes`], or `set_wakes` on one endpoint): it never wakes
//! its peer, whose blocking calls then poll every [`NEVER_WAKE_POLL`] (1 ms) instead.
//!
//! A latest-value channel ([`latest`]) holds one value, not a queue: writers publish, readers
//! read the newest complete one (never torn, never waiting for a writer) and can tell whether
//! it changed (the README's quick start):
//!
//! ```no_run
//! #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
//! #[repr(C)]
//! struct Params { gain: f32, pan: f32 }
//!
//! // Process A (the host): publish a new value whenever it changes.
//! let ch = shmlane::latest::<Params>("params").open_or_create()?;
//! let mut w = ch.writer()?;
//! let version = w.write(&Params { gain: 0.5, pan: 0.0 })?;
//!
//! // Process B (the engine's callback): a few loads when unchanged, never a system call.
//! let ch = shmlane::latest::<Params>("params").open_or_create()?;
//! let mut r = ch.reader()?;
//! if let Some((p, v)) = r.read_if_changed()? { /* apply p (version v) */ }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Dead peers: every endpoint's process holds an attachment slot in the segment, tagged with
//! its role, whose liveness lock the kernel drops when the process dies. A blocking receive on
//! an empty ring re-checks the senders at least every 50 ms, so it ends with
//! [`RecvError::PeerDied`] within that time of a sender's death (after draining what the
//! sender completed). A clean drop of the last sender gives [`RecvError::Disconnected`] in
//! [`PeersLeave::Disconnect`] mode; in `Wait` mode the receiver waits for a sender.
#![deny(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]
// Header casts are from 128-byte aligned regions (the segment's region allocator).
#![allow(clippy::cast_ptr_alignment)]

#[cfg(feature = "tokio")]
pub mod asynch;
pub mod bridge_stats;
mod broadcast;
mod bytes;
mod channel;
mod error;
mod poll;
mod select;

pub use broadcast::{Publisher, Start, Subscriber, TypedLoan, TypedPublisher, TypedSubscriber};
pub use bytes::{ByteClaim, ByteReceiver, ByteSender, DEFAULT_UNBLOCK_AFTER};
pub use channel::{
    Builder, Channel, ChannelStats, ElemType, Kind, NEVER_WAKE_POLL, PeersLeave, ROLE_RECEIVER,
    ROLE_SENDER, SideStats, TYPE_NAME_STORED, Wakes, broadcast, broadcast_of, bytes, fnv1a64,
    inspect, latest, mpmc, spsc,
};
pub use channel::{
    LatestError, LatestReader, LatestWriter, RawLatestBuilder, RawLatestChannel, RawLatestReader,
    RawLatestWriter, raw_latest,
};
pub use error::{
    ByteRecvError, ByteSendError, ConfigError, OpenError, RecvError, SendError, TryRecvError,
    TrySendError, WaitPeerError,
};
pub use poll::{Armed, POLL_PEER_CHECK, PollSource, Pollable, RearmError, RecvPoll};
pub use select::{Select, SelectError};
pub use shmlane_segment::{Location, UnlinkPolicy};
pub use shmlane_wake::{Deadline, WaitStrategy};

/// SPSC endpoints.
pub mod spsc_endpoints {
    pub use crate::channel::{Consumer, Producer};
}
pub use broadcast::{LoanError, RawPublisher, RawSubscriber};
pub use channel::raw_broadcast;
pub use channel::{Consumer, Producer, Receiver, Sender};
pub use channel::{
    ElemError, RawBuilder, RawChannel, RawConsumer, RawProducer, RawReceiver, RawSender,
    default_type_name, raw_mpmc, raw_spsc,
};
pub use shmlane_ring::{ChunkError, DynReadChunk, DynWriteChunk, ElemLayout};
