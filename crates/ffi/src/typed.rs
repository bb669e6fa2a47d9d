//! Typed channels: SPSC and MPMC channels of fixed-size elements whose size, alignment and
//! type name the C caller gives at open (`shmlane::raw_spsc` / `raw_mpmc`), so a C struct and
//! a Rust `spsc::<Quote>` with the same layout and type name share one channel.
//!
//! One sender and one receiver handle type serve both kinds (an internal enum). Every element
//! call checks the caller's `elem_size` against the channel's (`SHMLANE_E_INVALID`, nothing
//! copied); the caller's buffers may be unaligned (bytes are copied). The SPSC zero-copy calls
//! hand out pointers into the ring; on MPMC they are `SHMLANE_E_UNSUPPORTED`.

use crate::channel::{Chan, channel_name, options, shmlane_channel};
use crate::errors::{full_text, open_fail};
use crate::handle::{self, Body, null};
use crate::stats::{deadline, need, put, shmlane_stats};
use crate::status::{
    Fail, Res, SHMLANE_E_CLAIM, SHMLANE_E_CORRUPT, SHMLANE_E_DISCONNECTED, SHMLANE_E_EMPTY,
    SHMLANE_E_FULL, SHMLANE_E_INVALID, SHMLANE_E_PEER_DIED, SHMLANE_E_TIMEOUT,
    SHMLANE_E_UNSUPPORTED, guard,
};
use core::ffi::{c_char, c_void};
use shmlane::{
    ChunkError, ElemError, ElemLayout, RawBuilder, RawChannel, RawConsumer, RawProducer,
    RawReceiver, RawSender, RecvError, RecvPoll, SendError, SideStats, TryRecvError, TrySendError,
};
use std::ffi::CStr;

/// Opaque sender of a typed (SPSC or MPMC) channel.
#[derive(Debug)]
pub struct shmlane_sender {
    _opaque: [u8; 0],
}

/// Opaque receiver of a typed (SPSC or MPMC) channel.
#[derive(Debug)]
pub struct shmlane_receiver {
    _opaque: [u8; 0],
}

#[allow(
    clippy::large_enum_variant,
    reason = "the handle body is one heap block; boxing the SPSC end would add a pointer chase per call"
)]
enum TxEnd {
    Spsc(RawProducer),
    Mpmc(RawSender),
}

/// A typed sender handle's body.
pub(crate) struct Tx {
    end: TxEnd,
    size: usize,
}

impl Body for Tx {
    const MAGIC: u64 = 0x5348_4c4e_5454_5831; // "SHLNTTX1"
    const WHAT: &'static str = "sender";
}

#[allow(
    clippy::large_enum_variant,
    reason = "the handle body is one heap block; boxing the SPSC end would add a pointer chase per call"
)]
pub(crate) enum RxEnd {
    Spsc(RawConsumer),
    Mpmc(RawReceiver),
}

/// A typed receiver handle's body. `poll` is declared first: fields drop in declaration
/// order, so the poll handle (its watcher thread and eventfd) goes before the receiver.
pub(crate) struct Rx {
    pub(crate) poll: Option<RecvPoll>,
    pub(crate) end: RxEnd,
    size: usize,
}

impl Body for Rx {
    const MAGIC: u64 = 0x5348_4c4e_5452_5831; // "SHLNTRX1"
    const WHAT: &'static str = "receiver";
}

fn layout(size: usize, align: usize) -> Res<ElemLayout> {
    if size == 0 {
        return Err(Fail::new(
            SHMLANE_E_INVALID,
            "elem_size is 0: an element has at least one byte",
        ));
    }
    ElemLayout::new(size, align).map_err(|e| {
        Fail::new(
            SHMLANE_E_INVALID,
            format!(
                "element size {size}, alignment {align}: {}; the alignment must be a power of two up to 128 and the size a multiple of it",
                full_text(&e)
            ),
        )
    })
}

/// Opens a typed channel of `kind` (`shmlane::raw_spsc` / `raw_mpmc`).
///
/// # Safety
/// `name` and `type_name` NULL or NUL-terminated; `opts` NULL or an options handle; `out`
/// NULL or valid for a write.
#[allow(clippy::too_many_arguments, reason = "mirrors the C signature")]
pub(crate) unsafe fn open_typed(
    name: *const c_char,
    how: i32,
    elem_size: usize,
    elem_align: usize,
    type_name: *const c_char,
    opts: *const crate::options::shmlane_options,
    out: *mut *mut shmlane_channel,
    make: fn(&str, ElemLayout) -> RawBuilder,
    wrap: fn(RawChannel) -> Chan,
) -> Res {
    need(out, "out")?;
    // SAFETY: the caller's contract (NUL-terminated name, NULL or live options).
    let (name, opts) = unsafe { (channel_name(name)?, options(opts)?) };
    let l = layout(elem_size, elem_align)?;
    let mut b = make(name, l);
    if !type_name.is_null() {
        // SAFETY: non-NULL and NUL-terminated by the contract.
        let t = unsafe { CStr::from_ptr(type_name) };
        let t = t
            .to_str()
            .map_err(|_| Fail::new(SHMLANE_E_INVALID, format!("type_name {t:?} is not UTF-8")))?;
        b = b.type_name(t);
    }
    if let Some(o) = opts {
        b = o.apply_raw(name, b);
    }
    let r = match how {
        crate::channel::SHMLANE_CREATE => b.create(),
        crate::channel::SHMLANE_OPEN => b.open(),
        crate::channel::SHMLANE_OPEN_OR_CREATE => b.open_or_create(),
        n => {
            return Err(Fail::new(
                SHMLANE_E_INVALID,
                format!(
                    "unknown how {n}: use SHMLANE_CREATE (0), SHMLANE_OPEN (1) or SHMLANE_OPEN_OR_CREATE (2)"
                ),
            ));
        }
    };
    let ch = r.map_err(|e| open_fail(&e))?;
    // SAFETY: `out` checked non-NULL, valid for a write by the contract.
    unsafe { handle::publish(out, wrap(ch)) }
}

/// Opens an SPSC channel of fixed-size elements: `elem_size` bytes (>= 1, a multiple of
/// `elem_align`), aligned to `elem_align` (a power of two, at most 128), recorded with
/// `type_name` (NULL: `"[u8; SIZE] align ALIGN"`). A Rust `shmlane::spsc::<T>` opens the same
/// channel when `T` has this size, alignment and type name (`Builder::type_name`). `how`:
/// `SHMLANE_CREATE`, `SHMLANE_OPEN` or `SHMLANE_OPEN_OR_CREATE`; `opts` NULL: defaults
/// (capacity in elements). Errors: `SHMLANE_E_INVALID` (zero size, alignment not a power of
/// two or over 128, size not a multiple of it, unknown `how`, a non-UTF-8 type name),
/// `SHMLANE_E_WRONG_TYPE` (the channel exists with another size, alignment or type name: the
/// last error names both), `_WRONG_KIND`, `_NAME`, `_EXISTS`, `_NOT_FOUND`, `_MISMATCH`,
/// `_STALE`, `_PERMISSION`, ... as `shmlane_bytes_open`.
///
/// Thread-safe; may block briefly (a racing creator); allocates; system calls.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_spsc_open(
    name: *const c_char,
    how: i32,
    elem_size: usize,
    elem_align: usize,
    type_name: *const c_char,
    opts: *const crate::options::shmlane_options,
    out: *mut *mut shmlane_channel,
) -> i32 {
    guard("shmlane_spsc_open", || {
        // SAFETY: the caller's contract, forwarded.
        unsafe {
            open_typed(
                name,
                how,
                elem_size,
                elem_align,
                type_name,
                opts,
                out,
                shmlane::raw_spsc,
                Chan::Spsc,
            )
        }
    })
}

/// Opens an MPMC channel of fixed-size elements (any number of senders and receivers).
/// Arguments, errors and costs as `shmlane_spsc_open` (a Rust `shmlane::mpmc::<T>` opens it).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_mpmc_open(
    name: *const c_char,
    how: i32,
    elem_size: usize,
    elem_align: usize,
    type_name: *const c_char,
    opts: *const crate::options::shmlane_options,
    out: *mut *mut shmlane_channel,
) -> i32 {
    guard("shmlane_mpmc_open", || {
        // SAFETY: the caller's contract, forwarded.
        unsafe {
            open_typed(
                name,
                how,
                elem_size,
                elem_align,
                type_name,
                opts,
                out,
                shmlane::raw_mpmc,
                Chan::Mpmc,
            )
        }
    })
}

/// Opens a sender on the typed channel `ch`: SPSC, the producer role
/// (`SHMLANE_E_ROLE_TAKEN` while another live one exists); MPMC, one of many.
/// `SHMLANE_E_WRONG_KIND` on a byte or broadcast channel.
///
/// Thread-safe (on `ch`); never blocks; allocates; system calls (an attachment slot lock).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_sender_open(
    ch: *const shmlane_channel,
    out: *mut *mut shmlane_sender,
) -> i32 {
    guard("shmlane_sender_open", || {
        need(out, "out")?;
        // SAFETY: the caller's contract (NULL or a channel handle).
        let c = unsafe { handle::get::<Chan, _>(ch)? };
        let (end, size) = match c {
            Chan::Spsc(r) => (
                TxEnd::Spsc(r.producer().map_err(|e| open_fail(&e))?),
                r.layout().size(),
            ),
            Chan::Mpmc(r) => (
                TxEnd::Mpmc(r.sender().map_err(|e| open_fail(&e))?),
                r.layout().size(),
            ),
            other => return Err(other.not_typed("typed sender")),
        };
        // SAFETY: `out` checked non-NULL, valid for a write by the contract.
        unsafe { handle::publish(out, Tx { end, size }) }
    })
}

/// Opens a receiver on the typed channel `ch`: SPSC, the consumer role
/// (`SHMLANE_E_ROLE_TAKEN` while another live one exists); MPMC, one of many.
/// `SHMLANE_E_WRONG_KIND` on a byte or broadcast channel.
///
/// Thread-safe (on `ch`); never blocks; allocates; system calls.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_receiver_open(
    ch: *const shmlane_channel,
    out: *mut *mut shmlane_receiver,
) -> i32 {
    guard("shmlane_receiver_open", || {
        need(out, "out")?;
        // SAFETY: the caller's contract (NULL or a channel handle).
        let c = unsafe { handle::get::<Chan, _>(ch)? };
        let (end, size) = match c {
            Chan::Spsc(r) => (
                RxEnd::Spsc(r.consumer().map_err(|e| open_fail(&e))?),
                r.layout().size(),
            ),
            Chan::Mpmc(r) => (
                RxEnd::Mpmc(r.receiver().map_err(|e| open_fail(&e))?),
                r.layout().size(),
            ),
            other => return Err(other.not_typed("typed receiver")),
        };
        // SAFETY: `out` checked non-NULL, valid for a write by the contract.
        unsafe {
            handle::publish(
                out,
                Rx {
                    poll: None,
                    end,
                    size,
                },
            )
        }
    })
}

/// Closes a typed sender (NULL: `SHMLANE_OK`). Use after close: `SHMLANE_E_CLOSED` (see
/// `shmlane_channel_close` for the bound).
///
/// Not concurrent with other calls on this handle; never blocks; frees; system calls.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_sender_close(tx: *mut shmlane_sender) -> i32 {
    // SAFETY: the caller's contract.
    guard("shmlane_sender_close", || unsafe {
        handle::close::<Tx, _>(tx)
    })
}

/// Closes a typed receiver (NULL: `SHMLANE_OK`), giving up the SPSC consumer role. Its
/// descriptor (`shmlane_receiver_fd`), if one was made, is closed first (joins its watcher
/// thread: at most ~50 ms).
///
/// Not concurrent with other calls on this handle; blocks < 50 ms with a descriptor; frees;
/// system calls.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_receiver_close(rx: *mut shmlane_receiver) -> i32 {
    // SAFETY: the caller's contract.
    guard("shmlane_receiver_close", || unsafe {
        handle::close::<Rx, _>(rx)
    })
}

fn sender<'a>(tx: *mut shmlane_sender) -> Res<&'a mut Tx> {
    // SAFETY: `tx` is NULL or a typed sender handle used by one thread at a time (the
    // documented contract of every call taking one).
    unsafe { handle::get_mut::<Tx, _>(tx) }
}

pub(crate) fn receiver<'a>(rx: *mut shmlane_receiver) -> Res<&'a mut Rx> {
    // SAFETY: as `sender`.
    unsafe { handle::get_mut::<Rx, _>(rx) }
}

/// `elem_size` must be the channel's element size.
fn check_size(size: usize, given: usize) -> Res {
    if given != size {
        return Err(Fail::new(
            SHMLANE_E_INVALID,
            format!(
                "elem_size {given} differs from the channel's element size {size}: pass the size of the channel's element type"
            ),
        ));
    }
    Ok(())
}

/// `count` elements of `size` bytes at `p` (non-NULL), as a byte length.
fn span(p: *const c_void, what: &str, count: usize, size: usize) -> Res<usize> {
    if p.is_null() {
        return Err(null(what));
    }
    count
        .checked_mul(size)
        .filter(|n| isize::try_from(*n).is_ok())
        .ok_or_else(|| {
            Fail::new(
                SHMLANE_E_INVALID,
                format!("{count} elements of {size} bytes are out of range"),
            )
        })
}

fn elem_fail<E: std::error::Error + Copy>(e: &ElemError<E>, status: impl Fn(E) -> i32) -> Fail {
    let s = match e {
        ElemError::Channel(c) => status(*c),
        // Checked before the call; kept for completeness.
        ElemError::Length { .. } => SHMLANE_E_INVALID,
    };
    // Formatted in place: never allocates (`FULL` and `EMPTY` are the hot paths'). The
    // channel errors have no source: their text is the whole chain.
    Fail::fmt(s, format_args!("{e}"))
}

fn try_send_status(e: TrySendError<()>) -> i32 {
    match e {
        TrySendError::Full(()) => SHMLANE_E_FULL,
        TrySendError::Disconnected(()) => SHMLANE_E_DISCONNECTED,
        TrySendError::Corrupt(()) => SHMLANE_E_CORRUPT,
    }
}

fn send_status(e: SendError<()>) -> i32 {
    match e {
        SendError::Timeout(()) => SHMLANE_E_TIMEOUT,
        SendError::Disconnected(()) => SHMLANE_E_DISCONNECTED,
        SendError::PeerDied(()) => SHMLANE_E_PEER_DIED,
        SendError::Corrupt(()) => SHMLANE_E_CORRUPT,
    }
}

fn try_recv_status(e: TryRecvError) -> i32 {
    match e {
        TryRecvError::Empty => SHMLANE_E_EMPTY,
        TryRecvError::Disconnected => SHMLANE_E_DISCONNECTED,
        TryRecvError::Corrupt => SHMLANE_E_CORRUPT,
    }
}

fn recv_status(e: RecvError) -> i32 {
    match e {
        RecvError::Timeout => SHMLANE_E_TIMEOUT,
        RecvError::Disconnected => SHMLANE_E_DISCONNECTED,
        RecvError::PeerDied => SHMLANE_E_PEER_DIED,
        RecvError::Corrupt => SHMLANE_E_CORRUPT,
    }
}

/// The caller's element: `size` bytes at `elem`.
///
/// # Safety
/// `elem` NULL or valid for reads of `size` bytes.
unsafe fn elem_in<'a>(elem: *const c_void, size: usize) -> Res<&'a [u8]> {
    span(elem, "elem", 1, size)?;
    // SAFETY: non-NULL; `size` bytes readable by the contract; size < 2^32.
    Ok(unsafe { core::slice::from_raw_parts(elem.cast::<u8>(), size) })
}

/// The caller's element buffer: `size` bytes at `elem`, written only.
///
/// # Safety
/// `elem` NULL or valid for writes of `size` bytes.
unsafe fn elem_out<'a>(elem: *mut c_void, size: usize) -> Res<&'a mut [u8]> {
    span(elem, "elem", 1, size)?;
    // SAFETY: non-NULL; `size` bytes writable by the contract; only written (any byte is a
    // valid u8).
    Ok(unsafe { core::slice::from_raw_parts_mut(elem.cast::<u8>(), size) })
}

/// Sends the element at `elem` (`elem_size` bytes, which must equal the channel's element
/// size: else `SHMLANE_E_INVALID`; any alignment) if there is room now. `SHMLANE_E_FULL`,
/// `_DISCONNECTED` (every receiver left, `SHMLANE_PEERS_DISCONNECT`), `_CORRUPT`, `_NULL`.
///
/// One thread at a time per handle; never blocks; no allocation; a system call only to wake
/// a sleeping receiver (futex).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_try_send(
    tx: *mut shmlane_sender,
    elem: *const c_void,
    elem_size: usize,
) -> i32 {
    guard("shmlane_try_send", || {
        let t = sender(tx)?;
        check_size(t.size, elem_size)?;
        // SAFETY: the caller's contract: `elem` valid for `elem_size` bytes.
        let e = unsafe { elem_in(elem, elem_size)? };
        let r = match &mut t.end {
            TxEnd::Spsc(p) => p.try_send(e),
            TxEnd::Mpmc(s) => s.try_send(e),
        };
        r.map_err(|e| elem_fail(&e, try_send_status))
    })
}

/// Sends the element at `elem`, waiting for room up to `timeout_ns` (`< 0` no limit, `0` one
/// attempt). Errors as `shmlane_try_send` (no `_FULL`), plus `SHMLANE_E_TIMEOUT` and
/// `_PEER_DIED` (a receiver died and none is left: once per death).
///
/// One thread at a time per handle; blocks up to the timeout; no allocation; system calls
/// when it sleeps or wakes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_send(
    tx: *mut shmlane_sender,
    elem: *const c_void,
    elem_size: usize,
    timeout_ns: i64,
) -> i32 {
    guard("shmlane_send", || {
        let t = sender(tx)?;
        check_size(t.size, elem_size)?;
        // SAFETY: the caller's contract: `elem` valid for `elem_size` bytes.
        let e = unsafe { elem_in(elem, elem_size)? };
        let d = deadline(timeout_ns);
        let r = match &mut t.end {
            TxEnd::Spsc(p) => p.send(e, d),
            TxEnd::Mpmc(s) => s.send(e, d),
        };
        r.map_err(|e| elem_fail(&e, send_status))
    })
}

/// Receives one element into `elem` (`elem_size` bytes, the channel's element size; any
/// alignment) if there is one. `SHMLANE_E_EMPTY`, `_DISCONNECTED` (every sender left and the
/// ring is drained), `_CORRUPT`, `_INVALID` (size), `_NULL`. A sender's death is reported by
/// `shmlane_recv` (and `shmlane_receiver_rearm`), not here.
///
/// One thread at a time per handle; never blocks; no allocation; a system call only to wake a
/// sleeping sender.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_try_recv(
    rx: *mut shmlane_receiver,
    elem: *mut c_void,
    elem_size: usize,
) -> i32 {
    guard("shmlane_try_recv", || {
        let r = receiver(rx)?;
        check_size(r.size, elem_size)?;
        // SAFETY: the caller's contract: `elem` writable for `elem_size` bytes.
        let e = unsafe { elem_out(elem, elem_size)? };
        let res = match &mut r.end {
            RxEnd::Spsc(c) => c.try_recv(e),
            RxEnd::Mpmc(c) => c.try_recv(e),
        };
        res.map_err(|e| elem_fail(&e, try_recv_status))
    })
}

/// Receives one element, waiting up to `timeout_ns` (`< 0` no limit, `0` one attempt).
/// Results as `shmlane_try_recv`, plus `SHMLANE_E_TIMEOUT` and `_PEER_DIED` (a sender died,
/// none is left, and what it sent was delivered).
///
/// One thread at a time per handle; blocks up to the timeout; no allocation; system calls
/// when it sleeps, wakes or checks liveness.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_recv(
    rx: *mut shmlane_receiver,
    elem: *mut c_void,
    elem_size: usize,
    timeout_ns: i64,
) -> i32 {
    guard("shmlane_recv", || {
        let r = receiver(rx)?;
        check_size(r.size, elem_size)?;
        // SAFETY: the caller's contract: `elem` writable for `elem_size` bytes.
        let e = unsafe { elem_out(elem, elem_size)? };
        let d = deadline(timeout_ns);
        let res = match &mut r.end {
            RxEnd::Spsc(c) => c.recv(e, d),
            RxEnd::Mpmc(c) => c.recv(e, d),
        };
        res.map_err(|e| elem_fail(&e, recv_status))
    })
}

/// Sends as many of the `count` elements at `elems` (packed, `elem_size` bytes each) as there
/// is room for now, in order: `*sent` receives how many (0 with `SHMLANE_E_FULL` if none).
/// `count` 0 is `SHMLANE_OK` with `*sent` 0. Other errors as `shmlane_try_send`.
///
/// One thread at a time per handle; never blocks; no allocation; a system call only to wake.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_try_send_many(
    tx: *mut shmlane_sender,
    elems: *const c_void,
    count: usize,
    elem_size: usize,
    sent: *mut usize,
) -> i32 {
    guard("shmlane_try_send_many", || {
        let t = sender(tx)?;
        need(sent, "sent")?;
        check_size(t.size, elem_size)?;
        let n = span(elems, "elems", count, elem_size)?;
        if count == 0 {
            // SAFETY: checked non-NULL, valid for a write by the contract.
            return unsafe { put(sent, "sent", 0) };
        }
        // SAFETY: non-NULL, `n` bytes readable by the contract, n <= isize::MAX.
        let b = unsafe { core::slice::from_raw_parts(elems.cast::<u8>(), n) };
        let r = match &mut t.end {
            TxEnd::Spsc(p) => p.try_send_slice(b),
            TxEnd::Mpmc(s) => s.try_send_slice(b),
        };
        let k = r.map_err(|e| elem_fail(&e, try_send_status))?;
        // SAFETY: as above.
        unsafe { put(sent, "sent", k) }
    })
}

/// Receives up to `count` elements into `elems` (room for `count * elem_size` bytes), in
/// order: `*received` receives how many (0 with `SHMLANE_E_EMPTY` if none). `count` 0 is
/// `SHMLANE_OK` with `*received` 0. Other errors as `shmlane_try_recv`.
///
/// One thread at a time per handle; never blocks; no allocation; a system call only to wake.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_try_recv_many(
    rx: *mut shmlane_receiver,
    elems: *mut c_void,
    count: usize,
    elem_size: usize,
    received: *mut usize,
) -> i32 {
    guard("shmlane_try_recv_many", || {
        let r = receiver(rx)?;
        need(received, "received")?;
        check_size(r.size, elem_size)?;
        let n = span(elems, "elems", count, elem_size)?;
        if count == 0 {
            // SAFETY: checked non-NULL, valid for a write by the contract.
            return unsafe { put(received, "received", 0) };
        }
        // SAFETY: non-NULL, `n` bytes writable by the contract, only written.
        let b = unsafe { core::slice::from_raw_parts_mut(elems.cast::<u8>(), n) };
        let res = match &mut r.end {
            RxEnd::Spsc(c) => c.try_recv_slice(b),
            RxEnd::Mpmc(c) => c.try_recv_slice(b),
        };
        let k = res.map_err(|e| elem_fail(&e, try_recv_status))?;
        // SAFETY: as above.
        unsafe { put(received, "received", k) }
    })
}

fn chunk_fail(e: ChunkError, free: bool) -> Fail {
    match e {
        // Formatted in place: never allocates (docs/realtime.md).
        ChunkError::TooFewSlots(n) => Fail::fmt(
            if free {
                SHMLANE_E_FULL
            } else {
                SHMLANE_E_EMPTY
            },
            format_args!(
                "only {n} {} available",
                if free { "free slots" } else { "elements" }
            ),
        ),
        ChunkError::Corrupt => Fail::fmt(SHMLANE_E_CORRUPT, format_args!("{e}")),
    }
}

fn no_chunks(call: &str) -> Fail {
    Fail::new(
        SHMLANE_E_UNSUPPORTED,
        format!(
            "{call}: zero-copy chunks exist on SPSC channels only; use shmlane_try_send_many / shmlane_try_recv_many on MPMC"
        ),
    )
}

/// SPSC zero copy, sending: reserves up to `want` element slots (at least 1 available, else
/// `SHMLANE_E_FULL`) as two runs (the second for the wrap, `*n2` 0 if none): `*ptr1` with
/// `*n1` elements then `*ptr2` with `*n2`, `*n1 + *n2 <= want`, counts in ELEMENTS. Write the
/// elements (aligned as the channel's element), then `shmlane_sender_commit(tx, n)` publishes
/// the first `n` (`n <= *n1 + *n2`). Reserving changes nothing shared: a reservation never
/// committed is harmless; the pointers are valid until the next call on `tx`. Never read
/// through them. MPMC: `SHMLANE_E_UNSUPPORTED`. `want` 0: `SHMLANE_E_INVALID`.
///
/// One thread at a time per handle; never blocks; no allocation; no system call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_sender_write_chunk(
    tx: *mut shmlane_sender,
    want: usize,
    ptr1: *mut *mut c_void,
    n1: *mut usize,
    ptr2: *mut *mut c_void,
    n2: *mut usize,
) -> i32 {
    guard("shmlane_sender_write_chunk", || {
        let t = sender(tx)?;
        need(ptr1, "ptr1")?;
        need(n1, "n1")?;
        need(ptr2, "ptr2")?;
        need(n2, "n2")?;
        if want == 0 {
            return Err(Fail::new(SHMLANE_E_INVALID, "want is 0"));
        }
        let TxEnd::Spsc(p) = &mut t.end else {
            return Err(no_chunks("shmlane_sender_write_chunk"));
        };
        let k = want.min(p.free());
        if k == 0 {
            return Err(chunk_fail(ChunkError::TooFewSlots(0), true));
        }
        let [(a, x), (b, y)] = p.write_ptrs(k).map_err(|e| chunk_fail(e, true))?;
        // SAFETY: all four checked non-NULL, valid for writes by the contract.
        unsafe {
            ptr1.write(a.cast());
            n1.write(x);
            ptr2.write(b.cast());
            n2.write(y);
        }
        Ok(())
    })
}

/// Publishes the first `n` elements written through `shmlane_sender_write_chunk`'s pointers
/// and wakes a sleeping receiver. `n` more than the slots free: `SHMLANE_E_CLAIM`; MPMC:
/// `SHMLANE_E_UNSUPPORTED`. `n` 0 is a no-op.
///
/// One thread at a time per handle; never blocks; no allocation; a system call only to wake.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_sender_commit(tx: *mut shmlane_sender, n: usize) -> i32 {
    guard("shmlane_sender_commit", || {
        let t = sender(tx)?;
        let TxEnd::Spsc(p) = &mut t.end else {
            return Err(no_chunks("shmlane_sender_commit"));
        };
        if n == 0 {
            return Ok(());
        }
        p.commit(n).map_err(|e| match e {
            ChunkError::TooFewSlots(k) => Fail::fmt(
                SHMLANE_E_CLAIM,
                format_args!("commit of {n} elements, only {k} slots are free (write_chunk reserves what may be committed)"),
            ),
            ChunkError::Corrupt => Fail::fmt(SHMLANE_E_CORRUPT, format_args!("{e}")),
        })
    })
}

/// SPSC zero copy, receiving: up to `want` received elements in place as two runs (`*p1`,
/// `*n1` then `*p2`, `*n2` for the wrap; counts in ELEMENTS; `SHMLANE_E_EMPTY` if none). Read
/// them, then `shmlane_receiver_release(rx, n)` frees the first `n`. The pointers are valid
/// until the next call on `rx`; never write through them. MPMC: `SHMLANE_E_UNSUPPORTED`.
/// `want` 0: `SHMLANE_E_INVALID`.
///
/// One thread at a time per handle; never blocks; no allocation; no system call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_receiver_read_chunk(
    rx: *mut shmlane_receiver,
    want: usize,
    p1: *mut *const c_void,
    n1: *mut usize,
    p2: *mut *const c_void,
    n2: *mut usize,
) -> i32 {
    guard("shmlane_receiver_read_chunk", || {
        let r = receiver(rx)?;
        need(p1, "p1")?;
        need(n1, "n1")?;
        need(p2, "p2")?;
        need(n2, "n2")?;
        if want == 0 {
            return Err(Fail::new(SHMLANE_E_INVALID, "want is 0"));
        }
        let RxEnd::Spsc(c) = &mut r.end else {
            return Err(no_chunks("shmlane_receiver_read_chunk"));
        };
        let k = want.min(c.len());
        if k == 0 {
            // `len` may be 0 on corrupt positions too: let read_ptrs tell which.
            c.read_ptrs(1).map_err(|e| chunk_fail(e, false))?;
            return Err(chunk_fail(ChunkError::TooFewSlots(0), false));
        }
        let [(a, x), (b, y)] = c.read_ptrs(k).map_err(|e| chunk_fail(e, false))?;
        // SAFETY: all four checked non-NULL, valid for writes by the contract.
        unsafe {
            p1.write(a.cast());
            n1.write(x);
            p2.write(b.cast());
            n2.write(y);
        }
        Ok(())
    })
}

/// Frees the first `n` elements read through `shmlane_receiver_read_chunk` (wakes a sleeping
/// sender). `n` more than are available: `SHMLANE_E_CLAIM`; MPMC: `SHMLANE_E_UNSUPPORTED`.
/// `n` 0 is a no-op.
///
/// One thread at a time per handle; never blocks; no allocation; a system call only to wake.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_receiver_release(rx: *mut shmlane_receiver, n: usize) -> i32 {
    guard("shmlane_receiver_release", || {
        let r = receiver(rx)?;
        let RxEnd::Spsc(c) = &mut r.end else {
            return Err(no_chunks("shmlane_receiver_release"));
        };
        if n == 0 {
            return Ok(());
        }
        c.release(n).map_err(|e| match e {
            ChunkError::TooFewSlots(k) => Fail::fmt(
                SHMLANE_E_CLAIM,
                format_args!("release of {n} elements, only {k} are available"),
            ),
            ChunkError::Corrupt => Fail::fmt(SHMLANE_E_CORRUPT, format_args!("{e}")),
        })
    })
}

fn put_stats(out: *mut shmlane_stats, s: SideStats) -> Res {
    // SAFETY: NULL or valid for a write by the contract of the calling export.
    unsafe { put(out, "out", s.into()) }
}

/// The channel's sender-side statistics: `*out`.
///
/// One thread at a time per handle; never blocks; no allocation; no system call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_sender_stats(
    tx: *mut shmlane_sender,
    out: *mut shmlane_stats,
) -> i32 {
    guard("shmlane_sender_stats", || {
        let t = sender(tx)?;
        need(out, "out")?;
        let s = match &mut t.end {
            TxEnd::Spsc(p) => p.stats(),
            TxEnd::Mpmc(s) => s.stats(),
        };
        put_stats(out, s)
    })
}

/// The channel's receiver-side statistics: `*out` (`lost`: MPMC positions a dead sender
/// left unfilled).
///
/// One thread at a time per handle; never blocks; no allocation; no system call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_receiver_stats(
    rx: *mut shmlane_receiver,
    out: *mut shmlane_stats,
) -> i32 {
    guard("shmlane_receiver_stats", || {
        let r = receiver(rx)?;
        need(out, "out")?;
        let s = match &mut r.end {
            RxEnd::Spsc(c) => c.stats(),
            RxEnd::Mpmc(c) => c.stats(),
        };
        put_stats(out, s)
    })
}
