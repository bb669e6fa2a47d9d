//! Typed broadcast: broadcast channels whose every message is one fixed-size element (a C
//! struct), opened with the element's size, alignment and type name
//! (`shmlane::raw_broadcast`), so that a C or C++ subscriber reads a Rust
//! `broadcast_of::<Quote>` feed and a Rust `typed_subscriber` reads a C publisher's.
//!
//! The endpoints are the broadcast ones (`shmlane_publisher_open`, `shmlane_subscriber_open`,
//! `shmlane_publish`, `shmlane_subscriber_try_recv` / `_recv`, ...; their handle bodies hold
//! a [`PubEnd`] / [`SubEnd`]), with the element size checked, plus the zero-copy loan:
//! `shmlane_publisher_loan` (a pointer into the slot) -> write the element in place ->
//! `shmlane_publisher_loan_publish` (or `_loan_abandon`).

use crate::channel::{Chan, shmlane_channel};
use crate::stats::{need, put};
use crate::status::{Fail, Res, SHMLANE_E_CLAIM, SHMLANE_E_INVALID, SHMLANE_E_UNSUPPORTED, guard};
use core::ffi::{c_char, c_void};
use shmlane::{
    ByteRecvError, ElemError, LoanError, Publisher, RawPublisher, RawSubscriber, SideStats,
    Subscriber,
};

/// A publisher handle's endpoint: of a byte broadcast channel or a typed one.
#[derive(Debug)]
pub(crate) enum PubEnd {
    Bytes(Publisher),
    Typed(RawPublisher),
}

/// A subscriber handle's endpoint: of a byte broadcast channel or a typed one.
#[derive(Debug)]
pub(crate) enum SubEnd {
    Bytes(Subscriber),
    Typed(RawSubscriber),
}

fn loan_fail(e: LoanError) -> Fail {
    // Formatted in place: never allocates (`LoanError` has no source).
    Fail::fmt(SHMLANE_E_CLAIM, format_args!("{e}"))
}

fn no_loans() -> Fail {
    Fail::new(
        SHMLANE_E_UNSUPPORTED,
        "loans are for typed broadcast channels (shmlane_broadcast_typed_open); on a byte broadcast channel publish with shmlane_publish",
    )
}

impl PubEnd {
    /// The largest message (typed: the element size, the only length published).
    pub(crate) fn max_message(&self) -> usize {
        match self {
            Self::Bytes(p) => p.max_message(),
            Self::Typed(p) => p.elem_size(),
        }
    }

    pub(crate) fn next_seq(&self) -> u64 {
        match self {
            Self::Bytes(p) => p.next_seq(),
            Self::Typed(p) => p.next_seq(),
        }
    }

    pub(crate) fn subscribers(&self) -> u64 {
        match self {
            Self::Bytes(p) => p.subscribers(),
            Self::Typed(p) => p.subscribers(),
        }
    }

    pub(crate) fn stats(&mut self) -> SideStats {
        match self {
            Self::Bytes(p) => p.stats(),
            Self::Typed(p) => p.stats(),
        }
    }

    /// Typed: `len` must be exactly one element (checked before the caller's bytes are
    /// looked at).
    pub(crate) fn check_len(&self, len: usize) -> Res {
        match self {
            Self::Typed(p) if len != p.elem_size() => Err(Fail::new(
                SHMLANE_E_INVALID,
                format!(
                    "len {len} differs from the channel's element size {}: a typed broadcast message is exactly one element",
                    p.elem_size()
                ),
            )),
            _ => Ok(()),
        }
    }

    /// Publishes `m` (checked against `max_message` by the caller: typed, it must be exactly
    /// one element); its sequence number.
    pub(crate) fn publish(&mut self, m: &[u8]) -> Res<u64> {
        match self {
            Self::Bytes(p) => {
                let n = p.next_seq();
                p.send(m).map_err(|e| crate::errors::send_fail(&e))?;
                Ok(n)
            }
            Self::Typed(p) => p.publish(m).map_err(|e| match e {
                ElemError::Length { size, got } => Fail::new(
                    SHMLANE_E_INVALID,
                    format!(
                        "len {got} differs from the channel's element size {size}: a typed broadcast message is exactly one element"
                    ),
                ),
                ElemError::Channel(l) => loan_fail(l),
            }),
        }
    }
}

/// How a subscriber receive waits.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Wait {
    /// One attempt (`try_recv`).
    Try,
    /// Until the deadline (`None`: no limit).
    Until(Option<shmlane::Deadline>),
}

impl SubEnd {
    pub(crate) fn lost(&self) -> u64 {
        match self {
            Self::Bytes(s) => s.lost(),
            Self::Typed(s) => s.lost(),
        }
    }

    pub(crate) fn next_seq(&self) -> u64 {
        match self {
            Self::Bytes(s) => s.next_seq(),
            Self::Typed(s) => s.next_seq(),
        }
    }

    /// The largest message (typed: the element size, the length of every message).
    pub(crate) fn max_message(&self) -> usize {
        match self {
            Self::Bytes(s) => s.max_message(),
            Self::Typed(s) => s.elem_size(),
        }
    }

    pub(crate) fn stats(&mut self) -> SideStats {
        match self {
            Self::Bytes(s) => s.stats(),
            Self::Typed(s) => s.stats(),
        }
    }

    /// Receives into `b` (`min(cap, max_message)` bytes of the caller's buffer), once or
    /// waiting: the length and the sequence number. Typed: a buffer shorter than
    /// the element is `BufferTooSmall` (nothing consumed); the element goes to its first
    /// `elem_size` bytes.
    pub(crate) fn recv(&mut self, b: &mut [u8], wait: Wait) -> Result<(usize, u64), ByteRecvError> {
        match self {
            Self::Bytes(s) => match wait {
                Wait::Try => s.try_recv_seq(b),
                Wait::Until(d) => s.recv_seq(b, d),
            },
            Self::Typed(s) => {
                let size = s.elem_size();
                let Some(out) = b.get_mut(..size) else {
                    return Err(ByteRecvError::BufferTooSmall { needed: size });
                };
                let r = match wait {
                    Wait::Try => s.try_recv(out),
                    Wait::Until(d) => s.recv(out, d),
                };
                match r {
                    Ok(q) => Ok((size, q)),
                    Err(ElemError::Channel(e)) => Err(e),
                    // The slice is exactly the element (above).
                    Err(ElemError::Length { size, .. }) => {
                        Err(ByteRecvError::BufferTooSmall { needed: size })
                    }
                }
            }
        }
    }
}

/// Opens a typed broadcast channel: one publisher, any number of subscribers, every message
/// exactly one element of `elem_size` bytes (>= 1, a multiple of `elem_align`), aligned to
/// `elem_align` (a power of two, at most 128), recorded with `type_name` (NULL:
/// `"[u8; SIZE] align ALIGN"`). A Rust `shmlane::broadcast_of::<T>` opens the same channel
/// (and the other way round) when `T` has this size, alignment and type name
/// (`Builder::type_name`). `how`: `SHMLANE_CREATE`, `SHMLANE_OPEN` or
/// `SHMLANE_OPEN_OR_CREATE`; `opts` NULL: defaults (capacity in messages, default 1024;
/// `shmlane_options_msg_size`, if set, must be `elem_size`, or `elem_size + 4` with
/// `shmlane_options_checksum`). The endpoints are the broadcast ones: `shmlane_publisher_open`,
/// `shmlane_subscriber_open`, `shmlane_publish` (exactly `elem_size` bytes),
/// `shmlane_subscriber_try_recv` / `_recv` (a buffer of at least `elem_size` bytes; `*len` is
/// `elem_size`), and the zero-copy `shmlane_publisher_loan`; `shmlane_channel_kind` says
/// `SHMLANE_KIND_BROADCAST`. Errors: `SHMLANE_E_INVALID`
/// (zero size, bad alignment, size not a multiple of it, unknown `how`, non-UTF-8 type name),
/// `SHMLANE_E_WRONG_TYPE` (the channel exists with another size, alignment or type name, or
/// is a byte broadcast channel: the last error names both), `_WRONG_KIND`, `_NAME`,
/// `_EXISTS`, `_NOT_FOUND`, `_MISMATCH`, `_PERMISSION`, ... as `shmlane_bytes_open`.
///
/// Thread-safe; may block briefly (a racing creator); allocates; system calls.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_broadcast_typed_open(
    name: *const c_char,
    how: i32,
    elem_size: usize,
    elem_align: usize,
    type_name: *const c_char,
    opts: *const crate::options::shmlane_options,
    out: *mut *mut shmlane_channel,
) -> i32 {
    guard("shmlane_broadcast_typed_open", || {
        // SAFETY: the caller's contract, forwarded.
        unsafe {
            crate::typed::open_typed(
                name,
                how,
                elem_size,
                elem_align,
                type_name,
                opts,
                out,
                shmlane::raw_broadcast,
                Chan::TypedBroadcast,
            )
        }
    })
}

fn typed_publisher<'a>(p: *mut crate::broadcast::shmlane_publisher) -> Res<&'a mut RawPublisher> {
    match &mut crate::broadcast::publisher(p)?.p {
        PubEnd::Typed(t) => Ok(t),
        PubEnd::Bytes(_) => Err(no_loans()),
    }
}

/// Lends the slot of the next message of a typed broadcast channel: `*data` receives a
/// pointer to its `elem_size` bytes (8-byte aligned: cast it to the element type when that is
/// aligned to 8 or less, else copy into it with `memcpy`). Write the whole element there (bytes
/// not written keep an older message's), then `shmlane_publisher_loan_publish`. The pointer is
/// valid until `_loan_publish`, `_loan_abandon` or `shmlane_publisher_close`; writing past
/// `elem_size` bytes or after that is undefined behaviour. The slot is marked busy before the
/// pointer is handed out: subscribers wait for this message and never receive a half-written
/// one (a subscriber may read the bytes while they are written, and drops that copy). While
/// the loan is open, `shmlane_publish` and a second loan are `SHMLANE_E_CLAIM`; never pass
/// the pointer itself to `shmlane_publish`. Subscribers in other processes read the slot while
/// it is written (the sequence-lock pattern of shared memory); a subscriber in the *same*
/// process as a loan writer races those plain writes in the C and Rust memory models: there,
/// publish by copy (`shmlane_publish`).
/// Errors: `SHMLANE_E_CLAIM` (a loan is open), `SHMLANE_E_UNSUPPORTED` (a byte broadcast
/// publisher), `_NULL`, `_WRONG_HANDLE`, `_CLOSED`.
///
/// One thread at a time per handle; never blocks; no allocation; no system call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_publisher_loan(
    p: *mut crate::broadcast::shmlane_publisher,
    data: *mut *mut c_void,
) -> i32 {
    guard("shmlane_publisher_loan", || {
        let t = typed_publisher(p)?;
        need(data, "data")?;
        let ptr = t.loan_ptr().map_err(loan_fail)?;
        // SAFETY: checked non-NULL, valid for a write by the contract.
        unsafe { put(data, "data", ptr.cast::<c_void>()) }
    })
}

/// Publishes the open loan's element to every subscriber (never blocks: a slow subscriber is
/// lapped, not waited for); `*seq` (if `seq` is not NULL) receives its sequence number. On a
/// checksummed channel the checksum of the bytes as written is added. The loan's pointer is
/// invalid from here. `SHMLANE_E_CLAIM` if no loan is open.
///
/// One thread at a time per handle; never blocks; no allocation; a system call only to wake
/// sleeping subscribers.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_publisher_loan_publish(
    p: *mut crate::broadcast::shmlane_publisher,
    seq: *mut u64,
) -> i32 {
    guard("shmlane_publisher_loan_publish", || {
        let t = typed_publisher(p)?;
        let n = t.publish_loan().map_err(loan_fail)?;
        if !seq.is_null() {
            // SAFETY: non-NULL, valid for a write by the contract.
            unsafe { seq.write(n) };
        }
        Ok(())
    })
}

/// Gives up the open loan unpublished (as a Rust `TypedLoan` dropped unpublished): the slot
/// stays marked busy and becomes the next message's, so subscribers wait until the next
/// publish (a later loan hands out the same slot, still holding what was written: write the
/// whole element again). The loan's pointer is invalid from here. `SHMLANE_E_CLAIM` if no
/// loan is open. Closing the publisher with a loan open abandons it the same way.
///
/// One thread at a time per handle; never blocks; no allocation; no system call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_publisher_loan_abandon(
    p: *mut crate::broadcast::shmlane_publisher,
) -> i32 {
    guard("shmlane_publisher_loan_abandon", || {
        let t = typed_publisher(p)?;
        if t.abandon_loan() {
            Ok(())
        } else {
            Err(loan_fail(LoanError::NotOpen))
        }
    })
}
