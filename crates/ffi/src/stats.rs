//! `shmlane_stats` (plain data) and the shared helpers of the endpoint calls: timeouts and the
//! caller's buffers.

use crate::handle::null;
use crate::status::{Fail, Res, SHMLANE_E_INVALID};
use shmlane::{Deadline, SideStats};
use std::time::Duration;

/// One side's statistics of a channel (as stored in the channel header, shared by every
/// endpoint of that side): plain data, filled by the `*_stats` calls.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct shmlane_stats {
    /// Messages sent (or received).
    pub messages: u64,
    /// Payload bytes sent (or received).
    pub bytes: u64,
    /// Times an operation found the ring full (senders) or empty (receivers).
    pub stalls: u64,
    /// Times an endpoint went to wait.
    pub sleeps: u64,
    /// Notifies that found a sleeper and issued a futex wake.
    pub wakeups: u64,
    /// Byte receivers: records skipped (their sender died or stalled between claim and
    /// commit); broadcast subscribers: messages lost to laps.
    pub lost: u64,
}

impl From<SideStats> for shmlane_stats {
    fn from(s: SideStats) -> Self {
        Self {
            messages: s.messages,
            bytes: s.bytes,
            stalls: s.stalls,
            sleeps: s.sleeps,
            wakeups: s.wakeups,
            lost: s.lost,
        }
    }
}

/// Writes `v` to the out-pointer `p` named `what`.
///
/// # Safety
/// `p` is NULL or valid for a write.
pub(crate) unsafe fn put<T>(p: *mut T, what: &str, v: T) -> Res {
    if p.is_null() {
        return Err(null(what));
    }
    // SAFETY: non-NULL, valid for a write by the contract.
    unsafe { p.write(v) };
    Ok(())
}

/// Checks an out-pointer before any work is done (so a NULL out-pointer consumes nothing).
pub(crate) fn need<T>(p: *mut T, what: &str) -> Res {
    if p.is_null() {
        return Err(null(what));
    }
    Ok(())
}

/// `timeout_ns`: `< 0` no limit, `0` one attempt, `> 0` a relative deadline.
pub(crate) fn deadline(timeout_ns: i64) -> Option<Deadline> {
    u64::try_from(timeout_ns)
        .ok()
        .map(|ns| Deadline::after(Duration::from_nanos(ns)))
}

/// The caller's message: `len` bytes at `msg`, which must not be NULL. `max` is the
/// channel's largest message: a longer one is refused by the caller before this (so a huge
/// `len` never makes a slice).
///
/// # Safety
/// `msg` is NULL or valid for reads of `len` bytes.
pub(crate) unsafe fn message<'a>(msg: *const core::ffi::c_void, len: usize) -> Res<&'a [u8]> {
    if msg.is_null() {
        return Err(null("msg"));
    }
    if isize::try_from(len).is_err() {
        return Err(Fail::new(
            SHMLANE_E_INVALID,
            format!("length {len} is out of range"),
        ));
    }
    // SAFETY: non-NULL, `len` ≤ isize::MAX, valid for reads of `len` bytes by the contract.
    Ok(unsafe { core::slice::from_raw_parts(msg.cast::<u8>(), len) })
}

/// The caller's receive buffer: `cap` bytes at `buf`, of which at most `max` (the channel's
/// largest message) are used.
///
/// # Safety
/// `buf` is NULL or valid for writes of `cap` bytes.
pub(crate) unsafe fn buffer<'a>(
    buf: *mut core::ffi::c_void,
    cap: usize,
    max: usize,
) -> Res<&'a mut [u8]> {
    if buf.is_null() {
        return Err(null("buf"));
    }
    let n = cap.min(max).min(isize::MAX as usize);
    // SAFETY: non-NULL, `n` ≤ `cap` and ≤ isize::MAX, valid for writes of `cap` bytes by the
    // contract; the receive only writes bytes (any value is a valid u8).
    Ok(unsafe { core::slice::from_raw_parts_mut(buf.cast::<u8>(), n) })
}
