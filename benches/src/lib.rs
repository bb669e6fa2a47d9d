//! The cross-process benchmark harness lands with issue 6; this crate reserves its place.
