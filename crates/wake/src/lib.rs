//! Futex-based wake-ups in shared memory, and the wait strategies from busy-spin to park.
//!
//! An [`Event`] lives in a region of a shared segment (or heap memory in tests): a sequence
//! word and a sleeper count. A producer calls [`Event::notify`] after publishing data: with
//! nobody asleep that is one fence and one load, no syscall. A consumer calls
//! [`Event::wait`] with its condition ("the ring is not empty") and a [`WaitStrategy`];
//! it parks on a shared futex (never `FUTEX_PRIVATE_FLAG`, which would silently never wake
//! another process) only after registering as a sleeper and re-checking the condition, so no
//! wake-up is lost. See `docs/design.md` for the protocol and why each fence is there.
//!
//! ```
//! use std::sync::atomic::{AtomicBool, Ordering};
//! use shmlane_wake::{Event, WaitOutcome, WaitStrategy, EVENT_SIZE};
//!
//! #[repr(align(128))]
//! struct Mem([u8; EVENT_SIZE]);
//! let mut mem = Box::new(Mem([0; EVENT_SIZE]));
//! let ptr = mem.0.as_mut_ptr();
//! // SAFETY: `mem` outlives the handle and is only used through it.
//! let ev = unsafe {
//!     Event::init(ptr, EVENT_SIZE).unwrap();
//!     Event::attach(ptr, EVENT_SIZE).unwrap()
//! };
//! let ready = AtomicBool::new(false);
//! std::thread::scope(|s| {
//!     s.spawn(|| {
//!         ready.store(true, Ordering::Release);
//!         ev.notify();
//!     });
//!     let got = ev.wait(&WaitStrategy::Park, None, || ready.load(Ordering::Acquire));
//!     assert_eq!(got, WaitOutcome::Ready);
//! });
//! ```

#![deny(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]
// Casts from a region pointer to the event are preceded by an alignment check (`check`).
#![allow(clippy::cast_ptr_alignment)]

mod event;
#[cfg(feature = "pollable")]
mod pollable;
mod sync;
pub mod sys;
mod waitset;

/// The atomic flag type [`Event::register`] takes (std's, or loom's in loom builds).
#[cfg(not(loom))]
pub use core::sync::atomic::AtomicBool as RegisterFlag;
pub use event::{EVENT_MAGIC, EVENT_SIZE, Event, EventError, WaitOutcome, WaitStrategy};
/// The atomic flag type [`Event::register`] takes (loom's in loom builds).
#[cfg(loom)]
pub use loom::sync::atomic::AtomicBool as RegisterFlag;
#[cfg(feature = "pollable")]
pub use pollable::PollableEvent;
#[cfg(all(feature = "pollable", not(loom)))]
pub use pollable::{eventfd_clear, eventfd_signal};
/// The loom model of an eventfd (what [`PollableEvent::eventfd`] returns under loom).
#[cfg(all(feature = "pollable", loom))]
pub use sync::EventFd;
pub use sys::{Deadline, FUTEX_WAITV_MAX};
pub use waitset::{FALLBACK_SLICE, SetWait, WaitSet};
