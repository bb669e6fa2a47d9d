//! Latest-value channels (`shmlane::raw_latest`, the "blackboard"): `shmlane_latest_open`
//! gives a channel handle (`SHMLANE_KIND_LATEST`) from which any number of writer and reader
//! handles are opened, in any processes. A writer publishes a value of 0 to `value_size` bytes
//! and gets its version (larger than every one before); a reader copies the newest value and
//! its version, never a queue of them.
//!
//! The non-blocking calls (`shmlane_latest_write`, `_read`, `_read_if_changed`, `_version`)
//! never allocate, their error results included (messages formatted in place,
//! docs/realtime.md). A reader handle remembers the version it last returned, which tells
//! "never written" (`SHMLANE_E_EMPTY`) from "unchanged" (`SHMLANE_E_UNCHANGED`).

use crate::channel::{Chan, bad_how, channel_name, options, shmlane_channel};
use crate::errors::{latest_fail, open_fail};
use crate::handle::{self, Body, null};
use crate::stats::{buffer, deadline, need, put};
use crate::status::{Fail, Res, SHMLANE_E_EMPTY, SHMLANE_E_INVALID, SHMLANE_E_UNCHANGED, guard};
use core::ffi::{c_char, c_void};
use shmlane::{Deadline, LatestError, RawLatestReader, RawLatestWriter};

/// Opaque writer of a latest-value channel (any number per channel).
#[derive(Debug)]
pub struct shmlane_latest_writer {
    _opaque: [u8; 0],
}

/// Opaque reader of a latest-value channel (any number per channel).
#[derive(Debug)]
pub struct shmlane_latest_reader {
    _opaque: [u8; 0],
}

/// A latest writer handle's body.
pub(crate) struct Writer {
    w: RawLatestWriter,
    /// The channel's value size (read once at open).
    size: usize,
}

impl Body for Writer {
    const MAGIC: u64 = 0x5348_4c4e_4c57_5231; // "SHLNLWR1"
    const WHAT: &'static str = "latest writer";
}

/// A latest reader handle's body.
pub(crate) struct Reader {
    r: RawLatestReader,
    /// The channel's value size (read once at open).
    size: usize,
    /// The version this handle last returned (0: none yet). Versions start at 1, so 0 with
    /// nothing to read means never written; the ring reader keeps the same number (it
    /// advances exactly when a read returns a value).
    last: u64,
}

impl Body for Reader {
    const MAGIC: u64 = 0x5348_4c4e_4c52_4431; // "SHLNLRD1"
    const WHAT: &'static str = "latest reader";
}

/// Opens a latest-value channel: values of 0 to `value_size` bytes (1 to 1 MiB), any number
/// of writers and readers. `how`: `SHMLANE_CREATE`, `SHMLANE_OPEN` or
/// `SHMLANE_OPEN_OR_CREATE`; `opts` NULL: defaults. `shmlane_options_capacity` is the number
/// of slots (a power of two, 2 to 65536, default 4: more slots let more writers write at once
/// and survive more writers dying mid-write); `shmlane_options_wakes(SHMLANE_WAKES_NEVER)`
/// makes the writers' `shmlane_latest_write` never make a system call (readers waiting in
/// `shmlane_latest_wait_changed` then look again every 1 ms); backend, wait strategy, mode,
/// group, unlink, populate and mlock apply as for the other kinds. A Rust
/// `shmlane::raw_latest(name, value_size)` opens the same channel. `shmlane_channel_kind`
/// says `SHMLANE_KIND_LATEST`.
///
/// Errors: `SHMLANE_E_INVALID` (value size 0 or over 1 MiB, slots out of range, unknown `how`,
/// `shmlane_options_msg_size` other than `value_size`), `SHMLANE_E_UNSUPPORTED`
/// (`shmlane_options_checksum` or `_resume` on), `SHMLANE_E_MISMATCH` (the channel exists with
/// another value size or slot count), `_WRONG_KIND` (the name is another kind of channel),
/// `_WRONG_TYPE` (a typed Rust `latest::<T>` channel), `_NAME`, `_EXISTS`, `_NOT_FOUND`,
/// `_PERMISSION`, ... as `shmlane_bytes_open`.
///
/// Thread-safe; may block briefly (a racing creator); allocates; system calls.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_latest_open(
    name: *const c_char,
    how: i32,
    value_size: usize,
    opts: *const crate::options::shmlane_options,
    out: *mut *mut shmlane_channel,
) -> i32 {
    guard("shmlane_latest_open", || {
        need(out, "out")?;
        // SAFETY: the caller's contract (NUL-terminated name, NULL or live options).
        let (name, opts) = unsafe { (channel_name(name)?, options(opts)?) };
        if value_size == 0 {
            return Err(Fail::new(
                SHMLANE_E_INVALID,
                "value_size is 0: a latest-value channel holds values of 1 to 1048576 bytes",
            ));
        }
        let mut b = shmlane::raw_latest(name, value_size);
        if let Some(o) = opts {
            b = o.apply_latest(name, value_size, b)?;
        }
        let r = match how {
            crate::channel::SHMLANE_CREATE => b.create(),
            crate::channel::SHMLANE_OPEN => b.open(),
            crate::channel::SHMLANE_OPEN_OR_CREATE => b.open_or_create(),
            n => return Err(bad_how(n)),
        };
        let ch = r.map_err(|e| open_fail(&e))?;
        // SAFETY: `out` checked non-NULL, valid for a write by the contract.
        unsafe { handle::publish(out, Chan::Latest(ch)) }
    })
}

fn latest_channel<'a>(
    ch: *const shmlane_channel,
    wanted: &str,
) -> Res<&'a shmlane::RawLatestChannel> {
    // SAFETY: `ch` is NULL or a channel handle (the documented contract of the callers).
    match unsafe { handle::get::<Chan, _>(ch)? } {
        Chan::Latest(c) => Ok(c),
        other => Err(other.not_typed(wanted)),
    }
}

/// Opens a writer on the latest-value channel `ch` (any number, in any processes).
/// `SHMLANE_E_WRONG_KIND` if `ch` is not a latest-value channel.
///
/// Thread-safe (on `ch`); never blocks; allocates; system calls (an attachment slot lock).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_latest_writer_open(
    ch: *const shmlane_channel,
    out: *mut *mut shmlane_latest_writer,
) -> i32 {
    guard("shmlane_latest_writer_open", || {
        need(out, "out")?;
        let c = latest_channel(ch, "latest writer")?;
        let w = c.writer().map_err(|e| open_fail(&e))?;
        let size = w.value_size();
        // SAFETY: `out` checked non-NULL, valid for a write by the contract.
        unsafe { handle::publish(out, Writer { w, size }) }
    })
}

/// Opens a reader on the latest-value channel `ch` (any number, in any processes); it has
/// returned no version yet, so its first `shmlane_latest_read_if_changed` returns the current
/// value if the channel was written. `SHMLANE_E_WRONG_KIND` if `ch` is not a latest-value
/// channel.
///
/// Thread-safe (on `ch`); never blocks; allocates; system calls (an attachment slot lock).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_latest_reader_open(
    ch: *const shmlane_channel,
    out: *mut *mut shmlane_latest_reader,
) -> i32 {
    guard("shmlane_latest_reader_open", || {
        need(out, "out")?;
        let c = latest_channel(ch, "latest reader")?;
        let r = c.reader().map_err(|e| open_fail(&e))?;
        let size = r.value_size();
        // SAFETY: `out` checked non-NULL, valid for a write by the contract.
        unsafe { handle::publish(out, Reader { r, size, last: 0 }) }
    })
}

/// Closes a latest writer (NULL: `SHMLANE_OK`). Use after close: `SHMLANE_E_CLOSED` (see
/// `shmlane_channel_close` for the bound).
///
/// Not concurrent with other calls on this handle; never blocks; frees; system calls.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_latest_writer_close(w: *mut shmlane_latest_writer) -> i32 {
    // SAFETY: the caller's contract.
    guard("shmlane_latest_writer_close", || unsafe {
        handle::close::<Writer, _>(w)
    })
}

/// Closes a latest reader (NULL: `SHMLANE_OK`). Use after close: `SHMLANE_E_CLOSED`.
///
/// Not concurrent with other calls on this handle; never blocks; frees; system calls.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_latest_reader_close(r: *mut shmlane_latest_reader) -> i32 {
    // SAFETY: the caller's contract.
    guard("shmlane_latest_reader_close", || unsafe {
        handle::close::<Reader, _>(r)
    })
}

fn writer<'a>(w: *mut shmlane_latest_writer) -> Res<&'a mut Writer> {
    // SAFETY: `w` is NULL or a latest writer handle used by one thread at a time (the
    // documented contract of every call taking one).
    unsafe { handle::get_mut::<Writer, _>(w) }
}

fn reader<'a>(r: *mut shmlane_latest_reader) -> Res<&'a mut Reader> {
    // SAFETY: as `writer`.
    unsafe { handle::get_mut::<Reader, _>(r) }
}

/// Publishes the `len` bytes at `value` (0 to the channel's value size; `value` not NULL,
/// even with `len` 0) as the newest value; `*version` (if `version` is not NULL) receives its
/// version, larger than every version before it. Never waits for readers or other writers.
/// Errors: `SHMLANE_E_TOO_LONG` (over the value size; both lengths in the last error),
/// `SHMLANE_E_BUSY` (every slot but the newest value's held by writers mid-write or dead in
/// it: try again, or create the channel with more slots), `_CORRUPT`, `_NULL`.
///
/// One thread at a time per handle; never blocks; no allocation (errors included); a system
/// call only to wake a reader sleeping in `shmlane_latest_wait_changed` (none with
/// `SHMLANE_WAKES_NEVER`) and to check the liveness of another process's writer holding the
/// slot this write lands on.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_latest_write(
    w: *mut shmlane_latest_writer,
    value: *const c_void,
    len: usize,
    version: *mut u64,
) -> i32 {
    guard("shmlane_latest_write", || {
        let wr = writer(w)?;
        if len > wr.size {
            // Checked before the caller's bytes are looked at (a huge `len` never makes a slice).
            return Err(latest_fail(&LatestError::TooLong { len, max: wr.size }));
        }
        if value.is_null() {
            return Err(null("value"));
        }
        // SAFETY: non-NULL, `len` <= the value size (<= 1 MiB), valid for reads of `len`
        // bytes by the contract.
        let v = unsafe { core::slice::from_raw_parts(value.cast::<u8>(), len) };
        let ver = wr.w.write(v).map_err(|e| latest_fail(&e))?;
        if !version.is_null() {
            // SAFETY: non-NULL, valid for a write by the contract.
            unsafe { version.write(ver) };
        }
        Ok(())
    })
}

/// How a read goes.
#[derive(Clone, Copy)]
enum Read {
    /// The newest value, whatever its version.
    Any,
    /// The newest value if its version is not the one last returned.
    IfChanged,
    /// Until a version other than the one last returned, or the deadline.
    Wait(Option<Deadline>),
}

/// The common body of the reads: `*len`, `*version` written on success (and `*len` with
/// `SHMLANE_E_BUFFER_TOO_SMALL`).
fn read_into(
    r: *mut shmlane_latest_reader,
    buf: *mut c_void,
    cap: usize,
    len: *mut usize,
    version: *mut u64,
    how: Read,
) -> Res {
    let rd = reader(r)?;
    need(len, "len")?;
    // SAFETY: the caller's contract: `buf` valid for writes of `cap` bytes.
    let b = unsafe { buffer(buf, cap, rd.size)? };
    let res = match how {
        Read::Any => rd.r.read(b),
        Read::IfChanged => rd.r.read_if_changed(b),
        Read::Wait(d) => rd.r.wait_changed(b, d).map(Some),
    };
    match res {
        Ok(Some((n, v))) => {
            rd.last = v;
            if !version.is_null() {
                // SAFETY: non-NULL, valid for a write by the contract.
                unsafe { version.write(v) };
            }
            // SAFETY: checked non-NULL above.
            unsafe { put(len, "len", n) }
        }
        // Nothing returned yet and nothing to read: the version is 0 (a version this reader
        // returned is never followed by a smaller one: the ring checks it).
        Ok(None) if rd.last == 0 => Err(Fail::fmt(
            SHMLANE_E_EMPTY,
            format_args!("the latest value was never written (version 0)"),
        )),
        Ok(None) => Err(Fail::fmt(
            SHMLANE_E_UNCHANGED,
            format_args!(
                "the latest value is still version {}, which this reader last returned",
                rd.last
            ),
        )),
        Err(e) => {
            if let LatestError::BufferTooSmall { needed, .. } = e {
                // SAFETY: checked non-NULL above.
                unsafe { put(len, "len", needed)? };
            }
            Err(latest_fail(&e))
        }
    }
}

/// Copies the newest value into `buf` (room for `cap` bytes): `*len` receives its length and
/// `*version` (if `version` is not NULL) its version. The versions a reader returns never
/// decrease. `SHMLANE_E_EMPTY`: never written (nothing copied). `SHMLANE_E_BUFFER_TOO_SMALL`:
/// the value is longer than `cap`; `*len` receives its length, `buf`'s bytes are unspecified,
/// and the reader is unchanged (a `shmlane_latest_read_if_changed` with a larger buffer still
/// returns that version): read again with `*len` bytes (or the value size,
/// `shmlane_latest_reader_value_size`, always enough). `SHMLANE_E_BUSY`: 64 tries each raced
/// a write (try again). `_CORRUPT`, `_NULL` (`buf` or `len` NULL).
///
/// One thread at a time per handle; never blocks; no allocation (errors included); no system
/// call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_latest_read(
    r: *mut shmlane_latest_reader,
    buf: *mut c_void,
    cap: usize,
    len: *mut usize,
    version: *mut u64,
) -> i32 {
    guard("shmlane_latest_read", || {
        read_into(r, buf, cap, len, version, Read::Any)
    })
}

/// As `shmlane_latest_read`, but `SHMLANE_E_UNCHANGED` when the version is the one this
/// reader last returned (one load, nothing copied, `*len` and `*version` not written);
/// `SHMLANE_E_EMPTY` when never written.
///
/// One thread at a time per handle; never blocks; no allocation (errors included); no system
/// call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_latest_read_if_changed(
    r: *mut shmlane_latest_reader,
    buf: *mut c_void,
    cap: usize,
    len: *mut usize,
    version: *mut u64,
) -> i32 {
    guard("shmlane_latest_read_if_changed", || {
        read_into(r, buf, cap, len, version, Read::IfChanged)
    })
}

/// Waits until the version differs from the one this reader last returned (any version at
/// first, once the channel is written), then reads it as `shmlane_latest_read`. `timeout_ns`:
/// `< 0` no limit, `0` one attempt, `> 0` a relative deadline, tested on every turn:
/// `SHMLANE_E_TIMEOUT` when it passes with no new version. Other results as
/// `shmlane_latest_read` (never `SHMLANE_E_EMPTY`: it waits for the first write).
///
/// One thread at a time per handle; blocks up to the timeout (spins, yields, then sleeps on a
/// futex that writers wake, by the wait strategy); no allocation; system calls (futex, clock).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_latest_wait_changed(
    r: *mut shmlane_latest_reader,
    buf: *mut c_void,
    cap: usize,
    len: *mut usize,
    version: *mut u64,
    timeout_ns: i64,
) -> i32 {
    guard("shmlane_latest_wait_changed", || {
        read_into(r, buf, cap, len, version, Read::Wait(deadline(timeout_ns)))
    })
}

/// The newest published version: `*version` (0: never written). One atomic load; reads no
/// value and leaves the reader unchanged.
///
/// One thread at a time per handle; never blocks; no allocation; no system call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_latest_version(
    r: *const shmlane_latest_reader,
    version: *mut u64,
) -> i32 {
    guard("shmlane_latest_version", || {
        // SAFETY: the caller's contract.
        let rd = unsafe { handle::get::<Reader, _>(r)? };
        // SAFETY: the caller's contract.
        unsafe { put(version, "version", rd.r.version()) }
    })
}

/// The newest published version seen from a writer: `*version` (0: never written).
///
/// One thread at a time per handle; never blocks; no allocation; no system call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_latest_writer_version(
    w: *const shmlane_latest_writer,
    version: *mut u64,
) -> i32 {
    guard("shmlane_latest_writer_version", || {
        // SAFETY: the caller's contract.
        let wr = unsafe { handle::get::<Writer, _>(w)? };
        // SAFETY: the caller's contract.
        unsafe { put(version, "version", wr.w.version()) }
    })
}

/// The channel's value size (the longest value) seen from a writer: `*size`.
///
/// One thread at a time per handle; never blocks; no allocation; no system call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_latest_writer_value_size(
    w: *const shmlane_latest_writer,
    size: *mut usize,
) -> i32 {
    guard("shmlane_latest_writer_value_size", || {
        // SAFETY: the caller's contract.
        let wr = unsafe { handle::get::<Writer, _>(w)? };
        // SAFETY: the caller's contract.
        unsafe { put(size, "size", wr.size) }
    })
}

/// The channel's value size seen from a reader: `*size` (a buffer of this size is always
/// enough).
///
/// One thread at a time per handle; never blocks; no allocation; no system call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmlane_latest_reader_value_size(
    r: *const shmlane_latest_reader,
    size: *mut usize,
) -> i32 {
    guard("shmlane_latest_reader_value_size", || {
        // SAFETY: the caller's contract.
        let rd = unsafe { handle::get::<Reader, _>(r)? };
        // SAFETY: the caller's contract.
        unsafe { put(size, "size", rd.size) }
    })
}

#[cfg(test)]
mod tests {
    use crate::errors::latest_status;
    use crate::status::{
        SHMLANE_E_BUFFER_TOO_SMALL, SHMLANE_E_BUSY, SHMLANE_E_CORRUPT, SHMLANE_E_TIMEOUT,
        SHMLANE_E_TOO_LONG,
    };
    use shmlane::LatestError;

    /// Every Rust latest-value error has its status (`Busy` its own: no C status said "try
    /// again" before).
    #[test]
    fn every_latest_error_maps_to_its_status() {
        for (e, s) in [
            (LatestError::Busy, SHMLANE_E_BUSY),
            (LatestError::Timeout, SHMLANE_E_TIMEOUT),
            (LatestError::TooLong { len: 9, max: 8 }, SHMLANE_E_TOO_LONG),
            (
                LatestError::BufferTooSmall { needed: 8, got: 1 },
                SHMLANE_E_BUFFER_TOO_SMALL,
            ),
            (LatestError::Corrupt("test"), SHMLANE_E_CORRUPT),
        ] {
            assert_eq!(latest_status(&e), s, "{e:?}");
        }
    }
}
