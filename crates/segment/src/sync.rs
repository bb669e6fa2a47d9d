//! The one place this crate names atomics.
//!
//! The segment protocol runs between processes and the kernel (file locks, `link`), which loom
//! cannot model, so the segment crate is checked with real processes instead; under `cfg(loom)`
//! it still uses std atomics. The ring and wake crates, whose protocols are pure memory, swap in
//! loom's types in their own shims.

pub use core::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};
