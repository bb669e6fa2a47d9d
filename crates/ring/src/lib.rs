//! # shmlane-ring
//!
//! Lock-free rings that live inside a raw region of memory: a region of a shared-memory
//! segment (`shmlane-segment`), or heap memory ([`HeapRegion`]) in tests and between threads.
//! No syscall, no allocation, no lock and no panic on the hot path.
//!
//! - [`SpscRing`]: one [`Producer`], one [`Consumer`] (enforced across processes by role
//!   claims), cached positions, batch push/pop, zero-copy chunks (rtrb style).
//! - [`StampedRing`]: one [`StampedProducer`], one [`StampedConsumer`], a sequence stamp beside
//!   each element: the consumer polls the slot it will read, so a message costs one cache-line
//!   transfer and no line is written on every message by one side and read by the other. The
//!   fastest ring for fixed-size messages moved one at a time; no slice chunks.
//! - [`MpmcRing`]: Vyukov's per-slot sequence stamps, 64-bit; [`Sender`]s and [`Receiver`]s in
//!   any number.
//! - [`RecordRing`]: variable-length records, any number of [`RecordProducer`]s and one
//!   [`RecordConsumer`]; zero-copy [`Claim`]s committed or aborted; a producer that dies or
//!   stalls between claim and commit is skipped ([`RecordConsumer::unblock`]).
//! - [`BroadcastRing`]: one [`BroadcastProducer`], any number of [`BroadcastReader`]s that
//!   attach at any time; the producer never waits, a reader a whole ring behind is told
//!   exactly how many messages it lost (seqlock slots: never a torn message).
//! - [`LatestRing`]: the newest value only ("blackboard"): any number of [`LatestWriter`]s
//!   that never wait, any number of [`LatestReader`]s that read the newest complete value
//!   (multi-slot seqlock, bounded retries, a version to tell whether it changed).
//!
//! Elements are `T: bytemuck::Pod`: every bit pattern is a valid value, so a corrupt or hostile
//! peer can change message contents but never create an invalid value. Every position read from
//! shared memory is checked before use; a corrupt ring yields `Corrupt` errors, never an
//! out-of-bounds access.
//!
//! ```
//! use shmlane_ring::HeapRegion;
//! let (mut tx, mut rx) = HeapRegion::spsc::<u64>(1024);
//! std::thread::spawn(move || for i in 0..100 { while tx.push(i).is_err() {} });
//! for i in 0..100 { loop { if let Ok(v) = rx.pop() { assert_eq!(v, i); break; } } }
//! ```
#![deny(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]
// Pointer casts go from a 128-byte aligned region plus offsets rounded to the target's
// alignment (`header::align_up`), checked by `check_region`.
#![allow(clippy::cast_ptr_alignment)]

pub mod broadcast;
#[cfg(all(test, not(loom)))]
mod dyn_tests;
mod error;
#[cfg(not(loom))]
#[doc(hidden)]
pub mod fuzzing;
mod header;
pub mod latest;
mod layout;
pub mod mpmc;
pub mod record;
#[cfg(not(loom))]
mod region;
mod slot;
pub mod spsc;
pub mod stamped;
mod sync;

pub use broadcast::{
    BroadcastProducer, BroadcastReader, BroadcastRing, CursorEntry, CursorScan, CursorTable, Loan,
    RecvError, SendError, Start,
};
pub use error::{AttachError, ChunkError, PopError, PushError};
pub use header::{MAX_CAPACITY, REGION_ALIGN, RING_MAGIC};
pub use latest::{LatestError, LatestReader, LatestRing, LatestWriter};
pub use layout::{ElemLayout, MAX_ELEM_SIZE};
pub use mpmc::{
    DynMpmcRing, DynReceiver, DynSender, Hole, MPMC_INTENTS, MpmcRing, Receiver, Sender,
};
pub use record::{
    Claim, ClaimError, CommitError, MAX_RECORD, ReadError, Record, RecordConsumer, RecordProducer,
    RecordRing, Unblock,
};
#[cfg(not(loom))]
pub use region::HeapRegion;
pub use spsc::{Consumer, Producer, ReadChunk, SpscRing, WriteChunk};
#[cfg(not(loom))]
pub use spsc::{DynConsumer, DynProducer, DynReadChunk, DynSpscRing, DynWriteChunk};
pub use stamped::{StampedConsumer, StampedProducer, StampedRing};

/// Whatever owns a ring's memory (an `Arc<Segment>`, an `Arc<HeapRegion>`), held by the
/// ring's handles so the memory outlives them.
pub type KeepAlive = std::sync::Arc<dyn core::any::Any + Send + Sync>;
