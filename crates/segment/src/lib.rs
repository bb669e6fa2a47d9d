//! # shmlane-segment
//!
//! Creates, opens, validates and removes the shared-memory segments that shmlane's rings live
//! in. It is the only shmlane crate that maps memory.
//!
//! - **Backends**: POSIX shm ([`Segment::posix`]), sealed memfd passed over a Unix socket
//!   ([`Segment::memfd`], [`send_fd`], [`recv_fd`]), a file at any path, including hugetlbfs
//!   ([`Segment::file`]), an anonymous shared mapping inherited across `fork`
//!   ([`Segment::anonymous`]) and System V ([`Segment::sysv`]).
//! - **A self-describing header** ([`SegmentHeader`]): magic, layout version, a layout
//!   fingerprint, sizes, creator identity, and an init state stored last with Release. A
//!   segment is validated field by field before use; a hostile or corrupt one is an error.
//! - **Exclusive creation without half-built segments**: named segments are built under a
//!   private name and published with `link(2)`.
//! - **Named regions** ([`Segment::region`]): a small directory of cache-line aligned,
//!   bump-allocated byte ranges.
//! - **Liveness without a daemon**: each attached process holds kernel locks on the segment's
//!   file that die with it, so a segment is [`SegmentState::Live`], `Idle` or `Stale`, and
//!   [`remove_if_stale`] cleans up after crashes.
//!
//! ```no_run
//! use shmlane_segment::{Segment, UnlinkPolicy};
//!
//! // Process A
//! let seg = Segment::posix("md-feed")
//!     .size(1 << 20)
//!     .unlink(UnlinkPolicy::LastDetach)
//!     .create_with(|s| s.region("ring", 1 << 16, 7).map(drop))?;
//!
//! // Process B
//! let peer = Segment::posix("md-feed").open()?;
//! let ring = peer.find_region("ring")?;
//! assert_eq!(ring.len(), 1 << 16);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]
// Every pointer cast is from a page-aligned mapping plus an offset that `layout.rs` makes a
// multiple of the target type's alignment (asserted there by the structure sizes).
#![allow(clippy::cast_ptr_alignment)]

mod create;
mod error;
mod fdpass;
#[doc(hidden)]
pub mod fuzzing;
pub mod layout;
mod list;
mod open;
mod regions;
mod segment;
mod slots;
mod sync;
mod sys;

pub use error::{CreateError, ListError, OpenError, OpenOrCreateError, RegionError, RemoveError};
pub use fdpass::{recv_fd, send_fd};
pub use layout::{BackendKind, SegmentHeader};
pub use list::{
    RemoveOutcome, SegmentInfo, SegmentState, inspect, inspect_at, list_dir, list_posix, remove,
    remove_if_stale, remove_if_state,
};
pub use segment::{
    Attachment, Location, NAME_MAX, NAME_RULE, Region, RegionInfo, SHM_DIR, Segment,
    SegmentBuilder, UnlinkPolicy, validate_name,
};

/// Liveness helpers shared with the layers above (the rings use them to take over a role
/// claimed by a dead process).
pub mod process {
    pub use crate::sys::{
        Probe, ProcView, Verdict, judge, proc_view, process_alive, process_start_ticks, read_view,
    };
}
