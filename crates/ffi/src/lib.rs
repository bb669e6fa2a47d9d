//! # shmlane-ffi: the C ABI of shmlane
//!
//! Builds `libshmlane.so` and `libshmlane.a`; the header `include/shmlane.h` is generated from
//! this crate by cbindgen (`cbindgen --config crates/ffi/cbindgen.toml --crate shmlane-ffi`)
//! and committed. The agreed surface and rules (status codes, handles, timeouts, threading)
//! are those of the header's preamble; in short:
//!
//! - every function returns an `int32_t` status: `SHMLANE_OK` (0) or a negative
//!   `SHMLANE_E_*` constant; `shmlane_strerror` describes a status, `shmlane_last_error` gives
//!   this thread's last error with the Rust error's detail;
//! - handles are opaque, checked (NULL, kind, closed: see [`handle`]); no panic crosses the
//!   boundary (`SHMLANE_E_PANIC`);
//! - caller-owned buffers with explicit lengths: a message longer than the buffer is
//!   `SHMLANE_E_BUFFER_TOO_SMALL` with the needed length, never a truncation.
//!
//! Files: [`status`] (codes, last error, the guard), `errors` (Rust errors to statuses),
//! [`handle`] (magic words, quarantine), `options`, `channel`, `bytes`, `broadcast`, `stats`,
//! `typed` (SPSC/MPMC channels of fixed-size elements), `tbcast` (typed broadcast channels and
//! loans), `latest` (latest-value channels), `fd` (pollable receivers).
#![allow(
    non_camel_case_types,
    reason = "the C names of the opaque handle types (shmlane_channel, ...)"
)]
#![allow(
    clippy::missing_safety_doc,
    reason = "the exported functions' contracts are documented for C callers in include/shmlane.h"
)]
#![allow(
    clippy::result_large_err,
    reason = "`Fail` carries a non-blocking call's message inline (256 bytes), so that its errors \
              (FULL, EMPTY, LAPPED, ...) never allocate (docs/realtime.md); returned once per call"
)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod broadcast;
pub mod bytes;
pub mod channel;
mod errors;
pub mod fd;
pub mod handle;
pub mod latest;
pub mod options;
pub mod stats;
pub mod status;
pub mod tbcast;
pub mod typed;
