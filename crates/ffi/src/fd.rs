//! Pollable receivers: a file descriptor per receiver handle (typed receiver, byte receiver,
//! broadcast subscriber) that an event loop (`poll(2)`, epoll, libuv, ...) waits on, and the
//! re-arm call that clears and arms it (`shmlane::RecvPoll`).
//!
//! The loop, for every kind:
//! ```text
//! shmlane_receiver_fd(rx, &fd);               // once; the fd belongs to the handle
//! for (;;) {
//!     int r = shmlane_receiver_rearm(rx);     // 0: armed; SHMLANE_READY: already readable
//!     if (r < 0) { ...PEER_DIED / DISCONNECTED / CORRUPT... }
//!     poll({fd, POLLIN}, ...);                // readable: something to receive (or a peer change)
//!     while (shmlane_try_recv(rx, &e, sizeof e) == SHMLANE_OK) { ... }   // until EMPTY
//! }
//! ```
//! The descriptor is created on the first `_fd` call (one watcher thread in this process per
//! descriptor) and dropped before the receiver on `_close` (the thread is joined: at most
//! ~50 ms). Never read or close the descriptor yourself.

use crate::stats::need;
use crate::status::{
    Fail, Res, SHMLANE_E_CORRUPT, SHMLANE_E_DISCONNECTED, SHMLANE_E_INVALID, SHMLANE_E_IO,
    SHMLANE_E_PEER_DIED, SHMLANE_OK, guard,
};
use crate::tbcast::SubEnd;
use crate::typed::{RxEnd, shmlane_receiver};
use crate::{broadcast::shmlane_subscriber, bytes::shmlane_byte_receiver};
use core::ffi::c_int;
use shmlane::{Armed, PollSource, RearmError, RecvPoll};
use std::os::fd::AsRawFd;

/// `shmlane_*_rearm`: something is already receivable (the descriptor is readable again):
/// drain with `try_recv` until `SHMLANE_E_EMPTY`, then re-arm. A positive value, not an error.
pub const SHMLANE_READY: i32 = 1;

/// Runs `f` as an export whose success value is a non-negative status.
fn guard_value(what: &str, f: impl FnOnce() -> Res<i32>) -> i32 {
    let mut v = SHMLANE_OK;
    let s = guard(what, || {
        v = f()?;
        Ok(())
    });
    if s == SHMLANE_OK { v } else { s }
}

/// The descriptor of `rx`, made on the first call; written to `*fd`.
fn fd_of<R: PollSource>(poll: &mut Option<RecvPoll>, rx: &R, fd: *mut c_int) -> Res {
    need(fd, "fd")?;
    let p = match poll {
        Some(p) => p,
        None => poll.insert(RecvPoll::new(rx).map_err(|e| {
            Fail::new(
                SHMLANE_E_IO,
                format!("could not make the receiver's descriptor (eventfd, watcher thread): {e}"),
            )
        })?),
    };
    // SAFETY: checked non-NULL, valid for a write by the contract of the calling export.
    unsafe { fd.write(p.as_raw_fd()) };
    Ok(())
}

/// Re-arms the descriptor of `rx`: 0 (armed, waiting), `SHMLANE_READY`, or an error.
fn rearm_of<R: PollSource>(poll: &mut Option<RecvPoll>, rx: &mut R, fd_call: &str) -> Res<i32> {
    let Some(p) = poll else {
        return Err(Fail::new(
            SHMLANE_E_INVALID,
            format!("this receiver has no descriptor yet: call {fd_call} first"),
        ));
    };
    match p.rearm(rx) {
        Ok(Armed::Waiting) => Ok(SHMLANE_OK),
        Ok(Armed::Ready) => Ok(SHMLANE_READY),
        Err(e) => {
            let s = match e {
                RearmError::Disconnected => SHMLANE_E_DISCONNECTED,
                RearmError::PeerDied => SHMLANE_E_PEER_DIED,
                RearmError::Corrupt(_) => SHMLANE_E_CORRUPT,
                _ => SHMLANE_E_INVALID,
            };
            Err(Fail::new(s, e.to_string()))
        }
    }
}

/// The typed receiver's pollable descriptor: `*fd`. Made on the first call (an eventfd and a
/// watcher thread in this process), owned by `rx` and closed by `shmlane_receiver_close`;
/// the same descriptor on later calls. It starts NOT armed: call `shmlane_receiver_rearm`
/// before the first poll. It becomes readable (`POLLIN`) when something can be received, or a
/// sender died or left (within 50 ms). The loop: poll for `POLLIN` -> `shmlane_try_recv`
/// until `SHMLANE_E_EMPTY` -> `shmlane_receiver_rearm` -> poll again. Never read, write or
/// close the descriptor yourself. `SHMLANE_E_IO` if it cannot be made.
///
/// One thread at a time per handle; never blocks; allocates and makes system calls (eventfd,
/// thread creation) on the first call only.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_receiver_fd(rx: *mut shmlane_receiver, fd: *mut c_int) -> i32 {
    guard("shmlane_receiver_fd", || {
        let r = crate::typed::receiver(rx)?;
        match &r.end {
            RxEnd::Spsc(c) => fd_of(&mut r.poll, c, fd),
            RxEnd::Mpmc(c) => fd_of(&mut r.poll, c, fd),
        }
    })
}

/// Re-arms the typed receiver's descriptor after a drain: clears its readiness, then
/// - returns 0 (`SHMLANE_OK`): armed; the descriptor becomes readable when something arrives;
/// - returns `SHMLANE_READY` (1): something arrived meanwhile; the descriptor was made
///   readable again: drain again (or poll, which returns at once);
/// - returns `SHMLANE_E_PEER_DIED` (a sender died, none is left and everything it sent was
///   received: reported once per death; the next rearm arms again unless the channel is in
///   `SHMLANE_PEERS_DISCONNECT` mode), `SHMLANE_E_DISCONNECTED` (every sender left in
///   `SHMLANE_PEERS_DISCONNECT` mode: final), `SHMLANE_E_CORRUPT`: not armed.
///
/// `SHMLANE_E_INVALID` before the first `shmlane_receiver_fd`.
///
/// One thread at a time per handle; never blocks; system calls (eventfd read, a wake of the
/// watcher); allocates only when it checks the senders after a change.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_receiver_rearm(rx: *mut shmlane_receiver) -> i32 {
    guard_value("shmlane_receiver_rearm", || {
        let r = crate::typed::receiver(rx)?;
        match &mut r.end {
            RxEnd::Spsc(c) => rearm_of(&mut r.poll, c, "shmlane_receiver_fd"),
            RxEnd::Mpmc(c) => rearm_of(&mut r.poll, c, "shmlane_receiver_fd"),
        }
    })
}

/// The byte receiver's pollable descriptor: as `shmlane_receiver_fd` (drain with
/// `shmlane_bytes_try_recv`, re-arm with `shmlane_byte_receiver_rearm`; closed by
/// `shmlane_byte_receiver_close`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_byte_receiver_fd(
    rx: *mut shmlane_byte_receiver,
    fd: *mut c_int,
) -> i32 {
    guard("shmlane_byte_receiver_fd", || {
        let r = crate::bytes::receiver(rx)?;
        fd_of(&mut r.poll, &r.rx, fd)
    })
}

/// Re-arms the byte receiver's descriptor: results and costs as `shmlane_receiver_rearm`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_byte_receiver_rearm(rx: *mut shmlane_byte_receiver) -> i32 {
    guard_value("shmlane_byte_receiver_rearm", || {
        let r = crate::bytes::receiver(rx)?;
        rearm_of(&mut r.poll, &mut r.rx, "shmlane_byte_receiver_fd")
    })
}

/// The broadcast subscriber's pollable descriptor: as `shmlane_receiver_fd` (drain with
/// `shmlane_subscriber_try_recv`, laps included; re-arm with `shmlane_subscriber_rearm`;
/// closed by `shmlane_subscriber_close`). Readable when a message is published or the
/// publisher died or left.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_subscriber_fd(s: *mut shmlane_subscriber, fd: *mut c_int) -> i32 {
    guard("shmlane_subscriber_fd", || {
        let r = crate::broadcast::subscriber(s)?;
        match &r.s {
            SubEnd::Bytes(b) => fd_of(&mut r.poll, b, fd),
            SubEnd::Typed(t) => fd_of(&mut r.poll, t, fd),
        }
    })
}

/// Re-arms the subscriber's descriptor: results and costs as `shmlane_receiver_rearm`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_subscriber_rearm(s: *mut shmlane_subscriber) -> i32 {
    guard_value("shmlane_subscriber_rearm", || {
        let r = crate::broadcast::subscriber(s)?;
        match &mut r.s {
            SubEnd::Bytes(b) => rearm_of(&mut r.poll, b, "shmlane_subscriber_fd"),
            SubEnd::Typed(t) => rearm_of(&mut r.poll, t, "shmlane_subscriber_fd"),
        }
    })
}
