//! Byte-channel endpoints: senders (copying sends and the zero-copy claim / commit / abort
//! path) and the receiver.
//!
//! A claim borrows its sender (`ByteClaim<'_>` holds `&mut` parts of the `ByteSender`). The
//! handle keeps the sender in a heap block it owns through a raw pointer, and an open claim
//! next to it with its lifetime erased; while the claim is open nothing else touches the
//! sender (every call but commit, abort, max_message and close refuses with
//! `SHMLANE_E_CLAIM`), and the claim is dropped (aborted) before the sender is freed. So the
//! erased borrow never outlives, nor aliases with, another use of the sender.

use crate::channel::{Chan, as_bytes, shmlane_channel};
use crate::errors::{open_fail, recv_fail, send_fail};
use crate::handle::{self, Body, null};
use crate::stats::{buffer, deadline, message, need, put, shmlane_stats};
use crate::status::{Fail, Res, SHMLANE_E_BUFFER_TOO_SMALL, SHMLANE_E_CLAIM, guard};
use core::ffi::c_void;
use core::ptr::NonNull;
use shmlane::{ByteClaim, ByteReceiver, ByteRecvError, ByteSendError, ByteSender};

/// Opaque byte-channel sender (any number per channel).
#[derive(Debug)]
pub struct shmlane_byte_sender {
    _opaque: [u8; 0],
}

/// Opaque byte-channel receiver (one per channel).
#[derive(Debug)]
pub struct shmlane_byte_receiver {
    _opaque: [u8; 0],
}

/// A byte sender handle's body.
pub(crate) struct Tx {
    /// The sender, from `Box::leak`: owned by this body, freed in `drop` after the claim.
    /// A raw pointer rather than a `Box` so the claim's borrow of it stays valid while the
    /// body is moved or reached through the handle.
    sender: NonNull<ByteSender>,
    /// The sender's largest message (read once: the sender cannot be read during a claim).
    max: usize,
    /// The open claim, borrowing `*tx` (lifetime erased, see the module doc).
    claim: Option<ByteClaim<'static>>,
}

// SAFETY: `ByteSender` is `Send`; the claim borrows only that sender, and moves with it.
unsafe impl Send for Tx {}

impl Drop for Tx {
    fn drop(&mut self) {
        // The claim first (an open claim is aborted): it borrows the sender.
        drop(self.claim.take());
        // SAFETY: `sender` came from `Box::leak` in `shmlane_byte_sender_open` and is freed
        // only here; no claim borrows it any more.
        drop(unsafe { Box::from_raw(self.sender.as_ptr()) });
    }
}

impl Tx {
    /// The sender, if no claim is open.
    fn sender(&mut self, call: &str) -> Res<&mut ByteSender> {
        if self.claim.is_some() {
            return Err(Fail::new(
                SHMLANE_E_CLAIM,
                format!(
                    "a claim is open on this sender: commit or abort it before {call} (one claim at a time per sender)"
                ),
            ));
        }
        // SAFETY: owned by this body, live until drop; no claim borrows it (checked), and
        // the `&mut self` makes this the only reference.
        Ok(unsafe { self.sender.as_mut() })
    }

    fn check_len(&self, len: usize) -> Res {
        if len > self.max {
            return Err(send_fail(&ByteSendError::TooLong { len, max: self.max }));
        }
        Ok(())
    }
}

impl Body for Tx {
    const MAGIC: u64 = 0x5348_4c4e_4254_5831; // "SHLNBTX1"
    const WHAT: &'static str = "byte sender";
}

/// A byte receiver handle's body. `poll` first: fields drop in declaration order, so the
/// descriptor (its watcher thread and eventfd) goes before the receiver.
pub(crate) struct Rx {
    pub(crate) poll: Option<shmlane::RecvPoll>,
    pub(crate) rx: ByteReceiver,
}

impl Body for Rx {
    const MAGIC: u64 = 0x5348_4c4e_4252_5831; // "SHLNBRX1"
    const WHAT: &'static str = "byte receiver";
}

/// Opens a sender on the byte channel `ch` (any number of senders, in any processes).
/// `SHMLANE_E_WRONG_KIND` if `ch` is not a byte channel.
///
/// Thread-safe (on `ch`); never blocks; allocates; system calls (an attachment slot lock).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_byte_sender_open(
    ch: *const shmlane_channel,
    out: *mut *mut shmlane_byte_sender,
) -> i32 {
    guard("shmlane_byte_sender_open", || {
        need(out, "out")?;
        // SAFETY: the caller's contract (NULL or a channel handle).
        let c = unsafe { handle::get::<Chan, _>(ch)? };
        let tx = as_bytes(c, "byte sender")?
            .byte_sender()
            .map_err(|e| open_fail(&e))?;
        let max = tx.max_message();
        let body = Tx {
            sender: NonNull::from(Box::leak(Box::new(tx))),
            max,
            claim: None,
        };
        // SAFETY: `out` checked non-NULL, valid for a write by the contract.
        unsafe { handle::publish(out, body) }
    })
}

/// Opens the receiver of the byte channel `ch` (one per channel: `SHMLANE_E_ROLE_TAKEN` while
/// another live one exists). `SHMLANE_E_WRONG_KIND` if `ch` is not a byte channel.
///
/// Thread-safe (on `ch`); never blocks; allocates; system calls.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_byte_receiver_open(
    ch: *const shmlane_channel,
    out: *mut *mut shmlane_byte_receiver,
) -> i32 {
    guard("shmlane_byte_receiver_open", || {
        need(out, "out")?;
        // SAFETY: the caller's contract (NULL or a channel handle).
        let c = unsafe { handle::get::<Chan, _>(ch)? };
        let rx = as_bytes(c, "byte receiver")?
            .byte_receiver()
            .map_err(|e| open_fail(&e))?;
        // SAFETY: `out` checked non-NULL, valid for a write by the contract.
        unsafe { handle::publish(out, Rx { poll: None, rx }) }
    })
}

/// Closes a byte sender (NULL: `SHMLANE_OK`); an open claim is aborted. Use after close:
/// `SHMLANE_E_CLOSED` (see `shmlane_channel_close` for the bound).
///
/// Not concurrent with other calls on this handle; never blocks; frees; system calls.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_byte_sender_close(tx: *mut shmlane_byte_sender) -> i32 {
    // SAFETY: the caller's contract.
    guard("shmlane_byte_sender_close", || unsafe {
        handle::close::<Tx, _>(tx)
    })
}

/// Closes a byte receiver (NULL: `SHMLANE_OK`), giving up the receiver role.
///
/// Not concurrent with other calls on this handle; never blocks; frees; system calls.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_byte_receiver_close(rx: *mut shmlane_byte_receiver) -> i32 {
    // SAFETY: the caller's contract.
    guard("shmlane_byte_receiver_close", || unsafe {
        handle::close::<Rx, _>(rx)
    })
}

fn sender<'a>(tx: *mut shmlane_byte_sender) -> Res<&'a mut Tx> {
    // SAFETY: `tx` is NULL or a byte sender handle used by one thread at a time (the
    // documented contract of every call taking one).
    unsafe { handle::get_mut::<Tx, _>(tx) }
}

pub(crate) fn receiver<'a>(rx: *mut shmlane_byte_receiver) -> Res<&'a mut Rx> {
    // SAFETY: as `sender`.
    unsafe { handle::get_mut::<Rx, _>(rx) }
}

/// Sends the `len` bytes at `msg` if there is room now. `SHMLANE_E_FULL` (no room),
/// `_TOO_LONG` (over `shmlane_byte_sender_max_message`), `_DISCONNECTED`, `_CORRUPT`,
/// `_CLAIM` (a claim is open), `_NULL` (`msg` NULL, even with `len` 0).
///
/// One thread at a time per handle; never blocks; no allocation; a system call only to wake
/// a sleeping receiver (futex).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_bytes_try_send(
    tx: *mut shmlane_byte_sender,
    msg: *const c_void,
    len: usize,
) -> i32 {
    guard("shmlane_bytes_try_send", || {
        let t = sender(tx)?;
        t.check_len(len)?;
        // SAFETY: the caller's contract: `msg` valid for `len` bytes.
        let m = unsafe { message(msg, len)? };
        t.sender("try_send")?.try_send(m).map_err(|e| send_fail(&e))
    })
}

/// Sends the `len` bytes at `msg`, waiting for room up to `timeout_ns` (`< 0` no limit, `0`
/// one attempt). Errors as `shmlane_bytes_try_send`, plus `SHMLANE_E_TIMEOUT`, `_PEER_DIED`
/// (once per receiver death, on a full ring), `_DISCONNECTED`.
///
/// One thread at a time per handle; blocks up to the timeout (by the wait strategy); no
/// allocation; system calls when it sleeps or wakes (futex, clock).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_bytes_send(
    tx: *mut shmlane_byte_sender,
    msg: *const c_void,
    len: usize,
    timeout_ns: i64,
) -> i32 {
    guard("shmlane_bytes_send", || {
        let t = sender(tx)?;
        t.check_len(len)?;
        // SAFETY: the caller's contract: `msg` valid for `len` bytes.
        let m = unsafe { message(msg, len)? };
        t.sender("send")?
            .send(m, deadline(timeout_ns))
            .map_err(|e| send_fail(&e))
    })
}

/// Claims room for a message of `len` bytes (zero copy): `*data` receives a pointer to write
/// exactly `len` bytes through, before `shmlane_bytes_commit` (publishes) or
/// `shmlane_bytes_abort` (the receiver skips it). One claim at a time per sender:
/// `SHMLANE_E_CLAIM` if one is open, or on a channel with checksums. Also `_FULL`,
/// `_TOO_LONG`, `_DISCONNECTED`, `_CORRUPT`. Never read through `*data`, never write after
/// the commit or abort.
///
/// One thread at a time per handle; never blocks; no allocation; no system call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_bytes_claim(
    tx: *mut shmlane_byte_sender,
    len: usize,
    data: *mut *mut c_void,
) -> i32 {
    guard("shmlane_bytes_claim", || {
        let t = sender(tx)?;
        need(data, "data")?;
        t.check_len(len)?;
        let s: *mut ByteSender = t.sender("claim")?;
        // SAFETY: `s` is the body's sender, live until the body is dropped, which drops the
        // claim first; while the claim is open the sender is reached by nothing else (see
        // the module doc), so erasing the borrow's lifetime keeps it exclusive and live.
        let claim = unsafe { &mut *s }.claim(len).map_err(|e| send_fail(&e))?;
        // SAFETY: only the lifetime changes (same type otherwise); see above.
        let mut claim: ByteClaim<'static> = unsafe { core::mem::transmute(claim) };
        // SAFETY: handed to C with the documented contract of `ByteClaim::as_mut_ptr`: at
        // most `len` bytes written, before commit or abort, never read.
        let p = unsafe { claim.as_mut_ptr() };
        t.claim = Some(claim);
        // SAFETY: checked non-NULL, valid for a write by the contract.
        unsafe { put(data, "data", p.cast::<c_void>()) }
    })
}

/// Publishes the open claim and wakes a sleeping receiver. `SHMLANE_E_CLAIM` if none is open;
/// `SHMLANE_E_TIMEOUT` if the receiver gave up on it first (this process stalled past the
/// receiver's unblock time): not delivered. The claim is closed in every case.
///
/// One thread at a time per handle; never blocks; no allocation; a system call only to wake a
/// sleeping receiver.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_bytes_commit(tx: *mut shmlane_byte_sender) -> i32 {
    guard("shmlane_bytes_commit", || {
        let t = sender(tx)?;
        let claim = t.claim.take().ok_or_else(no_claim)?;
        claim.commit().map_err(|e| send_fail(&e))
    })
}

/// Aborts the open claim (the receiver skips it). `SHMLANE_E_CLAIM` if none is open.
///
/// One thread at a time per handle; never blocks; no allocation; no system call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_bytes_abort(tx: *mut shmlane_byte_sender) -> i32 {
    guard("shmlane_bytes_abort", || {
        let t = sender(tx)?;
        t.claim.take().ok_or_else(no_claim)?.abort();
        Ok(())
    })
}

fn no_claim() -> Fail {
    Fail::new(
        SHMLANE_E_CLAIM,
        "no claim is open on this sender (shmlane_bytes_claim first)",
    )
}

/// Receives one message if there is one: its bytes are copied to `buf` (room for `cap`) and
/// `*len` receives its length. `SHMLANE_E_BUFFER_TOO_SMALL`: the message is longer than
/// `cap`; `*len` receives its length and the message stays in the channel (nothing was
/// consumed): call again with a buffer of at least `*len` bytes. `_EMPTY`, `_DISCONNECTED`,
/// `_PEER_DIED`, `_CORRUPT`; `_NULL` for a NULL `buf` or `len`.
///
/// One thread at a time per handle; never blocks; no allocation (`SHMLANE_E_EMPTY` included);
/// system calls only to wake a sleeping sender and to check the liveness of a sender whose
/// record is claimed but not committed (at most every 20 ms) (docs/realtime.md).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_bytes_try_recv(
    rx: *mut shmlane_byte_receiver,
    buf: *mut c_void,
    cap: usize,
    len: *mut usize,
) -> i32 {
    guard("shmlane_bytes_try_recv", || {
        recv_into(rx, buf, cap, len, ByteReceiver::try_recv)
    })
}

/// Receives one message, waiting up to `timeout_ns` (`< 0` no limit, `0` one attempt).
/// Results as `shmlane_bytes_try_recv`, plus `SHMLANE_E_TIMEOUT`; a sender's death is
/// `SHMLANE_E_PEER_DIED` once what it completed was delivered (within ~50 ms).
///
/// One thread at a time per handle; blocks up to the timeout; no allocation on unchecksummed
/// channels; system calls when it sleeps, wakes or checks liveness.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_bytes_recv(
    rx: *mut shmlane_byte_receiver,
    buf: *mut c_void,
    cap: usize,
    len: *mut usize,
    timeout_ns: i64,
) -> i32 {
    guard("shmlane_bytes_recv", || {
        recv_into(rx, buf, cap, len, |r, b| r.recv(b, deadline(timeout_ns)))
    })
}

fn recv_into(
    rx: *mut shmlane_byte_receiver,
    buf: *mut c_void,
    cap: usize,
    len: *mut usize,
    f: impl FnOnce(&mut ByteReceiver, &mut [u8]) -> Result<usize, ByteRecvError>,
) -> Res {
    let r = receiver(rx)?;
    need(len, "len")?;
    let max = r.rx.max_message();
    // SAFETY: the caller's contract: `buf` valid for writes of `cap` bytes.
    let b = unsafe { buffer(buf, cap, max)? };
    match f(&mut r.rx, b) {
        // SAFETY: checked non-NULL, valid for a write by the contract.
        Ok(n) => unsafe { put(len, "len", n) },
        Err(e) => {
            if let ByteRecvError::BufferTooSmall { needed } = e {
                // SAFETY: as above.
                unsafe { put(len, "len", needed)? };
                debug_assert_eq!(crate::errors::recv_status(&e), SHMLANE_E_BUFFER_TOO_SMALL);
            }
            Err(recv_fail(&e))
        }
    }
}

/// The largest message this sender can send: `*max`.
///
/// One thread at a time per handle; never blocks; no allocation; no system call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_byte_sender_max_message(
    tx: *const shmlane_byte_sender,
    max: *mut usize,
) -> i32 {
    guard("shmlane_byte_sender_max_message", || {
        // SAFETY: the caller's contract.
        let t = unsafe { handle::get::<Tx, _>(tx)? };
        // SAFETY: the caller's contract.
        unsafe { put(max, "max", t.max) }
    })
}

/// The largest message this receiver can receive: `*max` (a buffer of this size is always
/// enough).
///
/// One thread at a time per handle; never blocks; no allocation; no system call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_byte_receiver_max_message(
    rx: *const shmlane_byte_receiver,
    max: *mut usize,
) -> i32 {
    guard("shmlane_byte_receiver_max_message", || {
        // SAFETY: the caller's contract.
        let r = unsafe { handle::get::<Rx, _>(rx)? };
        // SAFETY: the caller's contract.
        unsafe { put(max, "max", r.rx.max_message()) }
    })
}

/// The channel's sender-side statistics: `*out`. `SHMLANE_E_CLAIM` while a claim is open.
///
/// One thread at a time per handle; never blocks; no allocation; no system call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_byte_sender_stats(
    tx: *mut shmlane_byte_sender,
    out: *mut shmlane_stats,
) -> i32 {
    guard("shmlane_byte_sender_stats", || {
        let t = sender(tx)?;
        need(out, "out")?;
        let s = t.sender("stats")?.stats();
        // SAFETY: the caller's contract.
        unsafe { put(out, "out", s.into()) }
    })
}

/// The channel's receiver-side statistics: `*out` (`lost`: records skipped).
///
/// One thread at a time per handle; never blocks; no allocation; no system call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_byte_receiver_stats(
    rx: *mut shmlane_byte_receiver,
    out: *mut shmlane_stats,
) -> i32 {
    guard("shmlane_byte_receiver_stats", || {
        let r = receiver(rx)?;
        if out.is_null() {
            return Err(null("out"));
        }
        let s = r.rx.stats();
        // SAFETY: the caller's contract.
        unsafe { put(out, "out", s.into()) }
    })
}
