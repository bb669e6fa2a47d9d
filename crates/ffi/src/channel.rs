//! Channels: `shmlane_bytes_open`, `shmlane_broadcast_open`, kind, created, close, remove
//! (`shmlane_broadcast_typed_open` is in `tbcast.rs`, `shmlane_latest_open` in `latest.rs`).
//!
//! A channel handle (`shmlane_channel`) holds a Rust `Channel`; endpoints opened from it keep
//! the segment mapped on their own, so the channel may be closed before them. The handle's
//! body is an enum of channel kinds: the typed SPSC/MPMC channels (a later `typed.rs`) add
//! their variants here, and every endpoint-open function matches the variant it serves
//! (`SHMLANE_E_WRONG_KIND` for the others).

use crate::errors::{open_fail, remove_fail};
use crate::handle::{self, Body, null};
use crate::options::{Options, shmlane_options};
use crate::status::{Fail, Res, SHMLANE_E_INVALID, SHMLANE_E_NAME, guard};
use core::ffi::c_char;
use shmlane::Channel;
use std::ffi::CStr;

/// Opaque channel handle: from `shmlane_bytes_open` or `shmlane_broadcast_open`, freed by
/// `shmlane_channel_close`.
#[derive(Debug)]
pub struct shmlane_channel {
    _opaque: [u8; 0],
}

/// `how`: create the channel; `SHMLANE_E_EXISTS` if the name exists.
pub const SHMLANE_CREATE: i32 = 0;
/// `how`: open an existing channel; `SHMLANE_E_NOT_FOUND` if there is none.
pub const SHMLANE_OPEN: i32 = 1;
/// `how`: open the channel, creating it if it does not exist (racing creators are fine).
pub const SHMLANE_OPEN_OR_CREATE: i32 = 2;

/// Channel kind: SPSC of fixed-size elements.
pub const SHMLANE_KIND_SPSC: i32 = 0;
/// Channel kind: MPMC of fixed-size elements.
pub const SHMLANE_KIND_MPMC: i32 = 1;
/// Channel kind: byte channel (variable-length messages, any number of senders).
pub const SHMLANE_KIND_BYTES: i32 = 2;
/// Channel kind: broadcast (one publisher, any number of subscribers).
pub const SHMLANE_KIND_BROADCAST: i32 = 3;
/// Channel kind: latest value (any number of writers and readers; readers see the newest
/// value, never a queue).
pub const SHMLANE_KIND_LATEST: i32 = 4;

/// What a channel handle holds.
#[derive(Debug)]
pub(crate) enum Chan {
    /// A byte channel.
    Bytes(Channel<u8>),
    /// A broadcast channel of byte messages.
    Broadcast(Channel<u8>),
    /// An SPSC channel of fixed-size elements (`typed.rs`).
    Spsc(shmlane::RawChannel),
    /// An MPMC channel of fixed-size elements (`typed.rs`).
    Mpmc(shmlane::RawChannel),
    /// A broadcast channel of fixed-size elements (`tbcast.rs`).
    TypedBroadcast(shmlane::RawChannel),
    /// A latest-value channel of byte values (`latest.rs`).
    Latest(shmlane::RawLatestChannel),
}

// A channel handle is documented as usable from any thread at once: its body must be `Sync`.
const _: () = {
    const fn is_sync<T: Sync>() {}
    is_sync::<Chan>();
};

impl Body for Chan {
    const MAGIC: u64 = 0x5348_4c4e_4348_4e31; // "SHLNCHN1"
    const WHAT: &'static str = "channel";
}

impl Chan {
    fn kind(&self) -> i32 {
        match self {
            Self::Bytes(_) => SHMLANE_KIND_BYTES,
            Self::Broadcast(_) | Self::TypedBroadcast(_) => SHMLANE_KIND_BROADCAST,
            Self::Spsc(_) => SHMLANE_KIND_SPSC,
            Self::Mpmc(_) => SHMLANE_KIND_MPMC,
            Self::Latest(_) => SHMLANE_KIND_LATEST,
        }
    }

    fn created(&self) -> bool {
        match self {
            Self::Bytes(c) | Self::Broadcast(c) => c.created(),
            Self::Spsc(c) | Self::Mpmc(c) | Self::TypedBroadcast(c) => c.created(),
            Self::Latest(c) => c.created(),
        }
    }

    fn name(&self) -> &str {
        match self {
            Self::Bytes(c) | Self::Broadcast(c) => c.name(),
            Self::Spsc(c) | Self::Mpmc(c) | Self::TypedBroadcast(c) => c.name(),
            Self::Latest(c) => c.name(),
        }
    }

    fn what(&self) -> &'static str {
        match self {
            Self::Bytes(_) => "byte",
            Self::Broadcast(_) => "broadcast",
            Self::Spsc(_) => "SPSC",
            Self::Mpmc(_) => "MPMC",
            Self::TypedBroadcast(_) => "typed broadcast",
            Self::Latest(_) => "latest-value",
        }
    }

    /// `SHMLANE_E_WRONG_KIND`: this channel has no `wanted` endpoint.
    pub(crate) fn not_typed(&self, wanted: &str) -> Fail {
        wrong_kind(self.name(), self.what(), wanted)
    }
}

/// The channel name at `name`: non-NULL, UTF-8, and a valid segment name.
///
/// # Safety
/// `name` is NULL or NUL-terminated.
pub(crate) unsafe fn channel_name<'a>(name: *const c_char) -> Res<&'a str> {
    if name.is_null() {
        return Err(null("name"));
    }
    // SAFETY: non-NULL and NUL-terminated by the contract.
    let bytes = unsafe { CStr::from_ptr(name) };
    let s = bytes.to_str().map_err(|_| {
        Fail::new(
            SHMLANE_E_NAME,
            format!(
                "channel name {bytes:?} is not UTF-8; {}",
                shmlane_segment::NAME_RULE
            ),
        )
    })?;
    shmlane_segment::validate_name(s).map_err(|why| {
        Fail::new(
            SHMLANE_E_NAME,
            format!(
                "invalid channel name {:?}: {why}; {}",
                truncate(s, 64),
                shmlane_segment::NAME_RULE
            ),
        )
    })?;
    Ok(s)
}

/// At most `n` characters of `s` for a message (`...` when cut).
fn truncate(s: &str, n: usize) -> String {
    match s.char_indices().nth(n) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_owned(),
    }
}

/// The options at `opts` (NULL: defaults).
///
/// # Safety
/// `opts` is NULL or an options handle.
pub(crate) unsafe fn options<'a>(opts: *const shmlane_options) -> Res<Option<&'a Options>> {
    if opts.is_null() {
        return Ok(None);
    }
    // SAFETY: forwarded contract.
    unsafe { handle::get::<Options, _>(opts).map(Some) }
}

/// `SHMLANE_E_INVALID` for an unknown `how`.
pub(crate) fn bad_how(n: i32) -> Fail {
    Fail::new(
        SHMLANE_E_INVALID,
        format!(
            "unknown how {n}: use SHMLANE_CREATE (0), SHMLANE_OPEN (1) or SHMLANE_OPEN_OR_CREATE (2)"
        ),
    )
}

/// Opens a byte channel (`bytes`) or broadcast channel according to `how`.
fn open_u8(
    name: &str,
    how: i32,
    opts: Option<&Options>,
    make: fn(&str) -> shmlane::Builder<u8>,
) -> Res<Channel<u8>> {
    let mut b = make(name);
    if let Some(o) = opts {
        b = o.apply(name, b);
    }
    let r = match how {
        SHMLANE_CREATE => b.create(),
        SHMLANE_OPEN => b.open(),
        SHMLANE_OPEN_OR_CREATE => b.open_or_create(),
        n => {
            return Err(Fail::new(
                SHMLANE_E_INVALID,
                format!(
                    "unknown how {n}: use SHMLANE_CREATE (0), SHMLANE_OPEN (1) or SHMLANE_OPEN_OR_CREATE (2)"
                ),
            ));
        }
    };
    r.map_err(|e| open_fail(&e))
}

/// Opens a byte channel: variable-length messages, any number of senders, one receiver.
/// `how`: `SHMLANE_CREATE`, `SHMLANE_OPEN` or `SHMLANE_OPEN_OR_CREATE`; `opts` NULL: defaults;
/// `*out` receives the channel handle. Errors: `SHMLANE_E_NAME`, `_EXISTS`, `_NOT_FOUND`,
/// `_WRONG_KIND` (the name is another kind of channel), `_MISMATCH` (other capacity or
/// checksum setting), `_STALE`, `_PERMISSION`, `_INVALID` (an option out of range), ...
///
/// Thread-safe; may block briefly (waits up to a few seconds for a racing creator to
/// initialise the segment); allocates; system calls (open, mmap, flock, ...).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_bytes_open(
    name: *const c_char,
    how: i32,
    opts: *const shmlane_options,
    out: *mut *mut shmlane_channel,
) -> i32 {
    guard("shmlane_bytes_open", || {
        if out.is_null() {
            return Err(null("out"));
        }
        // SAFETY: the caller's contract (NUL-terminated name, NULL or live options).
        let (name, opts) = unsafe { (channel_name(name)?, options(opts)?) };
        let ch = open_u8(name, how, opts, shmlane::bytes)?;
        // SAFETY: `out` checked non-NULL, valid for a write by the contract.
        unsafe { handle::publish(out, Chan::Bytes(ch)) }
    })
}

/// Opens a broadcast channel of byte messages: one publisher, any number of subscribers,
/// each seeing every message (or the count it lost to laps). Arguments, errors and costs as
/// `shmlane_bytes_open`; capacity is in slots, `shmlane_options_msg_size` the largest message.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_broadcast_open(
    name: *const c_char,
    how: i32,
    opts: *const shmlane_options,
    out: *mut *mut shmlane_channel,
) -> i32 {
    guard("shmlane_broadcast_open", || {
        if out.is_null() {
            return Err(null("out"));
        }
        // SAFETY: the caller's contract (NUL-terminated name, NULL or live options).
        let (name, opts) = unsafe { (channel_name(name)?, options(opts)?) };
        let ch = open_u8(name, how, opts, shmlane::broadcast)?;
        // SAFETY: `out` checked non-NULL, valid for a write by the contract.
        unsafe { handle::publish(out, Chan::Broadcast(ch)) }
    })
}

/// Closes a channel handle (NULL: `SHMLANE_OK`). Endpoints opened from it stay usable: they
/// keep the segment mapped. A closed handle passed again gives `SHMLANE_E_CLOSED` (detected
/// for the 1024 most recent closes of this process; beyond that, use after close is
/// undefined behaviour).
///
/// Not concurrent with other calls on this handle; never blocks; frees; system calls (munmap,
/// and unlink with `SHMLANE_UNLINK_*` policies that remove the name).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_channel_close(ch: *mut shmlane_channel) -> i32 {
    // SAFETY: the caller's contract (NULL or a channel handle not in use elsewhere).
    guard("shmlane_channel_close", || unsafe {
        handle::close::<Chan, _>(ch)
    })
}

/// The channel's kind: `*kind` receives `SHMLANE_KIND_BYTES`, `_BROADCAST`, ...
///
/// Thread-safe; never blocks; no allocation; no system call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_channel_kind(ch: *const shmlane_channel, kind: *mut i32) -> i32 {
    guard("shmlane_channel_kind", || {
        // SAFETY: the caller's contract (NULL or a channel handle).
        let c = unsafe { handle::get::<Chan, _>(ch)? };
        if kind.is_null() {
            return Err(null("kind"));
        }
        // SAFETY: non-NULL, valid for a write by the contract.
        unsafe { kind.write(c.kind()) };
        Ok(())
    })
}

/// Whether this handle created the channel: `*created` receives 1 or 0.
///
/// Thread-safe; never blocks; no allocation; no system call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_channel_created(
    ch: *const shmlane_channel,
    created: *mut i32,
) -> i32 {
    guard("shmlane_channel_created", || {
        // SAFETY: the caller's contract (NULL or a channel handle).
        let c = unsafe { handle::get::<Chan, _>(ch)? };
        if created.is_null() {
            return Err(null("created"));
        }
        // SAFETY: non-NULL, valid for a write by the contract.
        unsafe { created.write(i32::from(c.created())) };
        Ok(())
    })
}

/// Removes the POSIX channel `name` (as `shmlane rm`): the name goes, processes attached keep
/// their mapping. Errors: `SHMLANE_E_NAME`, `_NOT_FOUND`, `_PERMISSION`, `_WRONG_KIND` (not a
/// shmlane segment), `_IO`.
///
/// Thread-safe; may block briefly (takes the segment's lock); allocates; system calls.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_remove(name: *const c_char) -> i32 {
    guard("shmlane_remove", || {
        // SAFETY: the caller's contract (NUL-terminated).
        let name = unsafe { channel_name(name)? };
        shmlane_segment::remove(&shmlane::Location::Posix(name.to_owned()))
            .map_err(|e| remove_fail(&e))
    })
}

/// The channel of `ch` if it is a byte channel.
pub(crate) fn as_bytes<'a>(c: &'a Chan, wanted: &str) -> Res<&'a Channel<u8>> {
    match c {
        Chan::Bytes(ch) => Ok(ch),
        other => Err(other.not_typed(wanted)),
    }
}

/// The publisher of `c` if it is a broadcast channel (byte or typed).
pub(crate) fn broadcast_publisher(c: &Chan) -> Res<crate::tbcast::PubEnd> {
    use crate::tbcast::PubEnd;
    match c {
        Chan::Broadcast(ch) => ch.publisher().map(PubEnd::Bytes),
        Chan::TypedBroadcast(ch) => ch.publisher().map(PubEnd::Typed),
        other => return Err(other.not_typed("publisher")),
    }
    .map_err(|e| open_fail(&e))
}

/// A subscriber of `c` from `start` if it is a broadcast channel (byte or typed).
pub(crate) fn broadcast_subscriber(c: &Chan, start: shmlane::Start) -> Res<crate::tbcast::SubEnd> {
    use crate::tbcast::SubEnd;
    match c {
        Chan::Broadcast(ch) => ch.subscriber_from(start).map(SubEnd::Bytes),
        Chan::TypedBroadcast(ch) => ch.subscriber_from(start).map(SubEnd::Typed),
        other => return Err(other.not_typed("subscriber")),
    }
    .map_err(|e| open_fail(&e))
}

fn wrong_kind(name: &str, is: &str, wanted: &str) -> Fail {
    Fail::new(
        crate::status::SHMLANE_E_WRONG_KIND,
        format!(
            "channel {name} is {} {is} channel, which has no {wanted}",
            if is.starts_with(['M', 'S']) {
                "an"
            } else {
                "a"
            }
        ),
    )
}
