//! Broadcast endpoints: the publisher (one per channel) and subscribers (any number), with
//! sequence numbers, the start position and the count lost to laps.

use crate::channel::{Chan, broadcast_publisher, broadcast_subscriber, shmlane_channel};
use crate::errors::{recv_fail, send_fail};
use crate::handle::{self, Body};
use crate::stats::{buffer, deadline, message, need, put, shmlane_stats};
use crate::status::{Fail, Res, SHMLANE_E_INVALID, guard};
use crate::tbcast::{PubEnd, SubEnd, Wait};
use core::ffi::c_void;
use shmlane::{ByteRecvError, ByteSendError, Start};

/// Opaque broadcast publisher (one per channel).
#[derive(Debug)]
pub struct shmlane_publisher {
    _opaque: [u8; 0],
}

/// Opaque broadcast subscriber (any number per channel).
#[derive(Debug)]
pub struct shmlane_subscriber {
    _opaque: [u8; 0],
}

/// Subscriber start: only messages published from now on.
pub const SHMLANE_START_NEWEST: i32 = 0;
/// Subscriber start: the oldest message the ring still holds.
pub const SHMLANE_START_OLDEST: i32 = 1;
/// Subscriber start: the message of sequence number `seq` (see `shmlane_subscriber_open`).
pub const SHMLANE_START_SEQ: i32 = 2;

/// A publisher handle's body.
pub(crate) struct Pub {
    pub(crate) p: PubEnd,
}

impl Body for Pub {
    const MAGIC: u64 = 0x5348_4c4e_5055_4231; // "SHLNPUB1"
    const WHAT: &'static str = "publisher";
}

/// A subscriber handle's body.
pub(crate) struct Sub {
    /// The descriptor, if made (first: dropped before the subscriber).
    pub(crate) poll: Option<shmlane::RecvPoll>,
    pub(crate) s: SubEnd,
}

impl Body for Sub {
    const MAGIC: u64 = 0x5348_4c4e_5355_4231; // "SHLNSUB1"
    const WHAT: &'static str = "subscriber";
}

pub(crate) fn publisher<'a>(p: *mut shmlane_publisher) -> Res<&'a mut Pub> {
    // SAFETY: `p` is NULL or a publisher handle used by one thread at a time (the documented
    // contract of every call taking one).
    unsafe { handle::get_mut::<Pub, _>(p) }
}

pub(crate) fn subscriber<'a>(s: *mut shmlane_subscriber) -> Res<&'a mut Sub> {
    // SAFETY: as `publisher`.
    unsafe { handle::get_mut::<Sub, _>(s) }
}

/// Opens the publisher of the broadcast channel `ch` (`SHMLANE_E_ROLE_TAKEN` while another
/// live one exists; `SHMLANE_E_WRONG_KIND` if `ch` is not a broadcast channel). Byte or typed
/// (`shmlane_broadcast_typed_open`: then also `SHMLANE_E_MISMATCH` if the channel's messages
/// cannot hold an element, e.g. checksummed without `msg_size` = element size + 4).
///
/// Thread-safe (on `ch`); never blocks; allocates; system calls.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_publisher_open(
    ch: *const shmlane_channel,
    out: *mut *mut shmlane_publisher,
) -> i32 {
    guard("shmlane_publisher_open", || {
        need(out, "out")?;
        // SAFETY: the caller's contract (NULL or a channel handle).
        let c = unsafe { handle::get::<Chan, _>(ch)? };
        let p = broadcast_publisher(c)?;
        // SAFETY: `out` checked non-NULL, valid for a write by the contract.
        unsafe { handle::publish(out, Pub { p }) }
    })
}

/// Opens a subscriber of the broadcast channel `ch`, starting at `start`:
/// `SHMLANE_START_NEWEST` (only what is published from now on), `SHMLANE_START_OLDEST` (the
/// oldest message still in the ring) or `SHMLANE_START_SEQ` (the message numbered `seq`: one
/// still in the ring is read first, one not published yet is waited for, one overwritten
/// starts at the oldest and the first receive reports the gap as `SHMLANE_E_LAPPED`). `seq`
/// is ignored for the other starts. Another `start`: `SHMLANE_E_INVALID`.
///
/// Thread-safe (on `ch`); never blocks; allocates; system calls.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_subscriber_open(
    ch: *const shmlane_channel,
    start: i32,
    seq: u64,
    out: *mut *mut shmlane_subscriber,
) -> i32 {
    guard("shmlane_subscriber_open", || {
        need(out, "out")?;
        // SAFETY: the caller's contract (NULL or a channel handle).
        let c = unsafe { handle::get::<Chan, _>(ch)? };
        let start = match start {
            SHMLANE_START_NEWEST => Start::Newest,
            SHMLANE_START_OLDEST => Start::Oldest,
            SHMLANE_START_SEQ => Start::Seq(seq),
            n => {
                return Err(Fail::new(
                    SHMLANE_E_INVALID,
                    format!(
                        "unknown start {n}: use SHMLANE_START_NEWEST (0), _OLDEST (1) or _SEQ (2)"
                    ),
                ));
            }
        };
        let s = broadcast_subscriber(c, start)?;
        // SAFETY: `out` checked non-NULL, valid for a write by the contract.
        unsafe { handle::publish(out, Sub { poll: None, s }) }
    })
}

/// Closes a publisher (NULL: `SHMLANE_OK`), giving up the publisher role.
///
/// Not concurrent with other calls on this handle; never blocks; frees; system calls.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_publisher_close(p: *mut shmlane_publisher) -> i32 {
    // SAFETY: the caller's contract.
    guard("shmlane_publisher_close", || unsafe {
        handle::close::<Pub, _>(p)
    })
}

/// Closes a subscriber (NULL: `SHMLANE_OK`).
///
/// Not concurrent with other calls on this handle; never blocks; frees; system calls.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_subscriber_close(s: *mut shmlane_subscriber) -> i32 {
    // SAFETY: the caller's contract.
    guard("shmlane_subscriber_close", || unsafe {
        handle::close::<Sub, _>(s)
    })
}

/// Publishes the `len` bytes at `msg` (never blocks: a slow subscriber is lapped, not waited
/// for); `*seq` (if `seq` is not NULL) receives the message's sequence number.
/// `SHMLANE_E_TOO_LONG` over `shmlane_publisher_max_message`; `_NULL` for a NULL `msg`.
/// Typed broadcast channels (`shmlane_broadcast_typed_open`): `len` must be the element size
/// (`SHMLANE_E_INVALID` otherwise, nothing published), and while a loan is open
/// (`shmlane_publisher_loan`) this is `SHMLANE_E_CLAIM`.
///
/// One thread at a time per handle; never blocks; no allocation (errors included: their
/// message is formatted in place); a system call only to wake sleeping subscribers
/// (docs/realtime.md).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_publish(
    p: *mut shmlane_publisher,
    msg: *const c_void,
    len: usize,
    seq: *mut u64,
) -> i32 {
    guard("shmlane_publish", || {
        let pb = publisher(p)?;
        pb.p.check_len(len)?;
        let max = pb.p.max_message();
        if len > max {
            return Err(send_fail(&ByteSendError::TooLong { len, max }));
        }
        // SAFETY: the caller's contract: `msg` valid for `len` bytes.
        let m = unsafe { message(msg, len)? };
        let n = pb.p.publish(m)?;
        if !seq.is_null() {
            // SAFETY: non-NULL, valid for a write by the contract.
            unsafe { seq.write(n) };
        }
        Ok(())
    })
}

/// Receives the next message if there is one: copied to `buf` (room for `cap`), `*len` its
/// length, `*seq` (if not NULL) its sequence number. `SHMLANE_E_LAPPED`: this subscriber fell
/// a ring behind; the count lost is in the last error and added to
/// `shmlane_subscriber_lost`; the next receive goes on with the newest.
/// `SHMLANE_E_BUFFER_TOO_SMALL`: `*len` receives the message's length, nothing consumed.
/// Also `_EMPTY`, `_DISCONNECTED`, `_PEER_DIED`, `_CORRUPT`. Typed broadcast channels
/// (`shmlane_broadcast_typed_open`): every message is one element; `cap` below the element
/// size is `SHMLANE_E_BUFFER_TOO_SMALL` (`*len` = the element size), and a message of another
/// size (a corrupt peer) is `SHMLANE_E_CORRUPT`, consumed.
///
/// One thread at a time per handle; never blocks; no allocation (`SHMLANE_E_EMPTY` and
/// `_LAPPED` included); no system call (docs/realtime.md).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_subscriber_try_recv(
    s: *mut shmlane_subscriber,
    buf: *mut c_void,
    cap: usize,
    len: *mut usize,
    seq: *mut u64,
) -> i32 {
    guard("shmlane_subscriber_try_recv", || {
        sub_recv(s, buf, cap, len, seq, |s, b| s.recv(b, Wait::Try))
    })
}

/// As `shmlane_subscriber_try_recv`, waiting up to `timeout_ns` (`< 0` no limit, `0` one
/// attempt): `SHMLANE_E_TIMEOUT` when nothing came.
///
/// One thread at a time per handle; blocks up to the timeout; no allocation on unchecksummed
/// channels; system calls when it sleeps, wakes or checks liveness.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_subscriber_recv(
    s: *mut shmlane_subscriber,
    buf: *mut c_void,
    cap: usize,
    len: *mut usize,
    seq: *mut u64,
    timeout_ns: i64,
) -> i32 {
    guard("shmlane_subscriber_recv", || {
        sub_recv(s, buf, cap, len, seq, |s, b| {
            s.recv(b, Wait::Until(deadline(timeout_ns)))
        })
    })
}

fn sub_recv(
    s: *mut shmlane_subscriber,
    buf: *mut c_void,
    cap: usize,
    len: *mut usize,
    seq: *mut u64,
    f: impl FnOnce(&mut SubEnd, &mut [u8]) -> Result<(usize, u64), ByteRecvError>,
) -> Res {
    let sb = subscriber(s)?;
    need(len, "len")?;
    let max = sb.s.max_message();
    // SAFETY: the caller's contract: `buf` valid for writes of `cap` bytes.
    let b = unsafe { buffer(buf, cap, max)? };
    match f(&mut sb.s, b) {
        Ok((n, q)) => {
            if !seq.is_null() {
                // SAFETY: non-NULL, valid for a write by the contract.
                unsafe { seq.write(q) };
            }
            // SAFETY: checked non-NULL above.
            unsafe { put(len, "len", n) }
        }
        Err(e) => {
            if let ByteRecvError::BufferTooSmall { needed } = e {
                // SAFETY: checked non-NULL above.
                unsafe { put(len, "len", needed)? };
            }
            Err(recv_fail(&e))
        }
    }
}

/// Messages this subscriber lost to laps so far: `*lost`.
///
/// One thread at a time per handle; never blocks; no allocation; no system call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_subscriber_lost(
    s: *const shmlane_subscriber,
    lost: *mut u64,
) -> i32 {
    guard("shmlane_subscriber_lost", || {
        // SAFETY: the caller's contract.
        let sb = unsafe { handle::get::<Sub, _>(s)? };
        // SAFETY: the caller's contract.
        unsafe { put(lost, "lost", sb.s.lost()) }
    })
}

/// The sequence number of the next message this subscriber will receive: `*seq`.
///
/// One thread at a time per handle; never blocks; no allocation; no system call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_subscriber_next_seq(
    s: *const shmlane_subscriber,
    seq: *mut u64,
) -> i32 {
    guard("shmlane_subscriber_next_seq", || {
        // SAFETY: the caller's contract.
        let sb = unsafe { handle::get::<Sub, _>(s)? };
        // SAFETY: the caller's contract.
        unsafe { put(seq, "seq", sb.s.next_seq()) }
    })
}

/// The largest message a subscriber receives: `*max`.
///
/// One thread at a time per handle; never blocks; no allocation; no system call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_subscriber_max_message(
    s: *const shmlane_subscriber,
    max: *mut usize,
) -> i32 {
    guard("shmlane_subscriber_max_message", || {
        // SAFETY: the caller's contract.
        let sb = unsafe { handle::get::<Sub, _>(s)? };
        // SAFETY: the caller's contract.
        unsafe { put(max, "max", sb.s.max_message()) }
    })
}

/// Live subscribers counted in the channel's cursor table: `*n` (at most 64 are counted).
///
/// One thread at a time per handle; never blocks; no allocation; system calls (one liveness
/// check per table entry).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_publisher_subscribers(
    p: *const shmlane_publisher,
    n: *mut u64,
) -> i32 {
    guard("shmlane_publisher_subscribers", || {
        // SAFETY: the caller's contract.
        let pb = unsafe { handle::get::<Pub, _>(p)? };
        // SAFETY: the caller's contract.
        unsafe { put(n, "n", pb.p.subscribers()) }
    })
}

/// The sequence number the next published message will get: `*seq`.
///
/// One thread at a time per handle; never blocks; no allocation; no system call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_publisher_next_seq(
    p: *const shmlane_publisher,
    seq: *mut u64,
) -> i32 {
    guard("shmlane_publisher_next_seq", || {
        // SAFETY: the caller's contract.
        let pb = unsafe { handle::get::<Pub, _>(p)? };
        // SAFETY: the caller's contract.
        unsafe { put(seq, "seq", pb.p.next_seq()) }
    })
}

/// The largest message the publisher takes: `*max`.
///
/// One thread at a time per handle; never blocks; no allocation; no system call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_publisher_max_message(
    p: *const shmlane_publisher,
    max: *mut usize,
) -> i32 {
    guard("shmlane_publisher_max_message", || {
        // SAFETY: the caller's contract.
        let pb = unsafe { handle::get::<Pub, _>(p)? };
        // SAFETY: the caller's contract.
        unsafe { put(max, "max", pb.p.max_message()) }
    })
}

/// The channel's publisher-side statistics: `*out`.
///
/// One thread at a time per handle; never blocks; no allocation; no system call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_publisher_stats(
    p: *mut shmlane_publisher,
    out: *mut shmlane_stats,
) -> i32 {
    guard("shmlane_publisher_stats", || {
        let pb = publisher(p)?;
        need(out, "out")?;
        let s = pb.p.stats();
        // SAFETY: the caller's contract.
        unsafe { put(out, "out", s.into()) }
    })
}

/// The channel's subscriber-side statistics: `*out` (`lost`: messages lost to laps by all
/// subscribers).
///
/// One thread at a time per handle; never blocks; no allocation; no system call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_subscriber_stats(
    s: *mut shmlane_subscriber,
    out: *mut shmlane_stats,
) -> i32 {
    guard("shmlane_subscriber_stats", || {
        let sb = subscriber(s)?;
        need(out, "out")?;
        let st = sb.s.stats();
        // SAFETY: the caller's contract.
        unsafe { put(out, "out", st.into()) }
    })
}
