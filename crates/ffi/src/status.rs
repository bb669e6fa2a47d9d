//! Status codes, `shmlane_strerror`, the per-thread last error, and the guard every export
//! runs its body in (no panic crosses the boundary).

use core::ffi::c_char;
use std::cell::RefCell;
use std::panic::{AssertUnwindSafe, catch_unwind};

/// Success.
pub const SHMLANE_OK: i32 = 0;
/// A NULL handle or pointer argument.
pub const SHMLANE_E_NULL: i32 = -1;
/// An argument out of range (a length of 0 where not allowed, an unknown option value, ...).
pub const SHMLANE_E_INVALID: i32 = -2;
/// The handle was closed (detected while it is in the quarantine, see `shmlane_channel_close`).
pub const SHMLANE_E_CLOSED: i32 = -3;
/// A handle of another kind (e.g. a publisher passed to a byte-sender call).
pub const SHMLANE_E_WRONG_HANDLE: i32 = -4;
/// A Rust panic was caught (a bug in shmlane): the message is in `shmlane_last_error`.
pub const SHMLANE_E_PANIC: i32 = -5;
/// A bad channel name: empty, longer than 200 bytes, a '/', a character outside
/// `A-Z a-z 0-9 . _ -`, a leading '.', or not UTF-8.
pub const SHMLANE_E_NAME: i32 = -6;
/// Create: the channel already exists.
pub const SHMLANE_E_EXISTS: i32 = -7;
/// Open: no such channel.
pub const SHMLANE_E_NOT_FOUND: i32 = -8;
/// Open: the channel is of another kind (e.g. a broadcast channel opened as bytes).
pub const SHMLANE_E_WRONG_KIND: i32 = -9;
/// Open: the element size, alignment or type name differ.
pub const SHMLANE_E_WRONG_TYPE: i32 = -10;
/// Open: capacity, message size, checksum setting or layout differ.
pub const SHMLANE_E_MISMATCH: i32 = -11;
/// The single role (byte receiver, publisher, producer, consumer) is held by a live endpoint.
pub const SHMLANE_E_ROLE_TAKEN: i32 = -12;
/// The channel is stale: unread messages of a session in which a process died (remove it,
/// or open it with `shmlane_options_resume`).
pub const SHMLANE_E_STALE: i32 = -13;
/// Permission denied, or a segment owned by an untrusted user.
pub const SHMLANE_E_PERMISSION: i32 = -14;
/// Any other open or create failure (the last error says which).
pub const SHMLANE_E_OPEN: i32 = -15;
/// A non-blocking send found no room.
pub const SHMLANE_E_FULL: i32 = -16;
/// A non-blocking receive found nothing.
pub const SHMLANE_E_EMPTY: i32 = -17;
/// The deadline passed (also: a claim committed after the receiver gave up on it).
pub const SHMLANE_E_TIMEOUT: i32 = -18;
/// Every peer left cleanly (`SHMLANE_PEERS_DISCONNECT` mode) and the ring is drained.
pub const SHMLANE_E_DISCONNECTED: i32 = -19;
/// A peer process died (reported once per death, after what it completed was delivered).
pub const SHMLANE_E_PEER_DIED: i32 = -20;
/// The shared memory is inconsistent (a corrupt or hostile peer, a checksum mismatch).
pub const SHMLANE_E_CORRUPT: i32 = -21;
/// A message longer than the channel's largest (both lengths in the last error).
pub const SHMLANE_E_TOO_LONG: i32 = -22;
/// The receive buffer is too small: `*len` is set to the message's length, and the message
/// stays in the channel (nothing was consumed): call again with a larger buffer.
pub const SHMLANE_E_BUFFER_TOO_SMALL: i32 = -23;
/// A broadcast subscriber was lapped: messages were lost (count in the last error and in
/// `shmlane_subscriber_lost`); it goes on with the newest.
pub const SHMLANE_E_LAPPED: i32 = -24;
/// Claim misuse: a claim already open, none open, a send while one is open, or a channel
/// with checksums (which refuses claims).
pub const SHMLANE_E_CLAIM: i32 = -25;
/// A system call failed (the errno text is in the last error).
pub const SHMLANE_E_IO: i32 = -26;
/// An option not available here (backend, kernel, channel kind).
pub const SHMLANE_E_UNSUPPORTED: i32 = -27;
/// A latest-value call could not complete now: a read raced writes 64 times in a row, or a
/// write found every slot but the newest value's held by writers mid-write (or dead in it).
/// Try again; if writes keep getting it, create the channel with more slots
/// (`shmlane_options_capacity`).
pub const SHMLANE_E_BUSY: i32 = -28;
/// `shmlane_latest_read_if_changed`: the value's version is the one this reader last
/// returned; nothing was copied and `*len`, `*version` were not written.
pub const SHMLANE_E_UNCHANGED: i32 = -29;

/// An error on its way out: a status and the message for `shmlane_last_error`.
#[derive(Debug)]
pub(crate) struct Fail {
    pub(crate) status: i32,
    pub(crate) msg: Msg,
}

/// Longest message a [`Fail`] holds without allocating, and longest last error recorded
/// (longer ones end in "..."): the non-blocking calls' errors (`FULL`, `EMPTY`, `LAPPED`, a
/// chunk's count) are under 200 bytes.
pub(crate) const TEXT_MAX: usize = 1024;

/// An error's text: on the heap (set-up calls), or formatted in place (the non-blocking calls:
/// they never allocate, docs/realtime.md).
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "inline on purpose: boxing it would allocate (see `Fail`)"
)]
pub(crate) enum Msg {
    Heap(String),
    Inline(Text<256>),
}

impl core::fmt::Display for Msg {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Heap(s) => f.write_str(s),
            Self::Inline(t) => f.write_str(t.as_str()),
        }
    }
}

/// Text of at most `N` bytes (fewer if `limit` says so) formatted in place, cut at a
/// character boundary with "..." when longer; never allocates.
#[derive(Clone, Copy)]
pub(crate) struct Text<const N: usize> {
    buf: [u8; N],
    len: usize,
    limit: usize,
    cut: bool,
}

impl<const N: usize> core::fmt::Debug for Text<N> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl<const N: usize> Text<N> {
    /// Empty, holding at most `limit` bytes (at most `N`).
    pub(crate) const fn new(limit: usize) -> Self {
        Self {
            buf: [0; N],
            len: 0,
            limit: if limit < N { limit } else { N },
            cut: false,
        }
    }

    pub(crate) fn clear(&mut self) {
        self.len = 0;
        self.cut = false;
    }

    pub(crate) fn as_str(&self) -> &str {
        // Only whole characters are ever copied in (`write_str`), so this never fails.
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

impl<const N: usize> core::fmt::Write for Text<N> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        if self.cut {
            return Ok(());
        }
        let room = self.limit - self.len;
        if s.len() <= room {
            self.buf[self.len..self.len + s.len()].copy_from_slice(s.as_bytes());
            self.len += s.len();
            return Ok(());
        }
        // Cut, with room kept for "...".
        self.cut = true;
        let mut k = room.saturating_sub(3);
        while k > 0 && !s.is_char_boundary(k) {
            k -= 1;
        }
        self.buf[self.len..self.len + k].copy_from_slice(&s.as_bytes()[..k]);
        self.len += k;
        let dots = (self.limit - self.len).min(3);
        self.buf[self.len..self.len + dots].copy_from_slice(&b"..."[..dots]);
        self.len += dots;
        Ok(())
    }
}

impl Fail {
    /// A set-up call's error (the message may be long: paths, errno texts).
    pub(crate) fn new(status: i32, msg: impl Into<String>) -> Self {
        Self {
            status,
            msg: Msg::Heap(msg.into()),
        }
    }

    /// A non-blocking call's error: the message formatted in place, never allocated.
    pub(crate) fn fmt(status: i32, args: core::fmt::Arguments<'_>) -> Self {
        let mut t = Text::new(256);
        let _ = core::fmt::Write::write_fmt(&mut t, args);
        Self {
            status,
            msg: Msg::Inline(t),
        }
    }
}

/// What an export's body returns.
pub(crate) type Res<T = ()> = Result<T, Fail>;

thread_local! {
    /// This thread's last error message, NUL-terminated (at most `TEXT_MAX` bytes and the
    /// NUL). A plain array, without a destructor: recording an error never allocates
    /// (docs/realtime.md).
    static LAST: RefCell<Text<{ TEXT_MAX + 1 }>> = const { RefCell::new(Text::new(TEXT_MAX)) };
}

/// Writes text with interior NULs as spaces.
struct NoNul<'a, const N: usize>(&'a mut Text<N>);

impl<const N: usize> core::fmt::Write for NoNul<'_, N> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for part in s.split_inclusive('\0') {
            match part.strip_suffix('\0') {
                Some(p) => {
                    self.0.write_str(p)?;
                    self.0.write_str(" ")?;
                }
                None => self.0.write_str(part)?,
            }
        }
        Ok(())
    }
}

/// Records `args` as this thread's last error (interior NULs become spaces; longer than
/// `TEXT_MAX` bytes: cut, ending in "..."). Never allocates.
pub(crate) fn set_last_error_fmt(args: core::fmt::Arguments<'_>) {
    // A thread being torn down has no last error any more: nothing to record then.
    let _ = LAST.try_with(|l| {
        let mut t = l.borrow_mut();
        t.clear();
        let _ = core::fmt::Write::write_fmt(&mut NoNul(&mut *t), args);
        // `limit` is `TEXT_MAX`, one less than the buffer: the NUL always fits.
        let end = t.len;
        t.buf[end] = 0;
    });
}

/// Runs an export's body: `Ok` is `SHMLANE_OK`; an error records its message; a panic is
/// caught and becomes `SHMLANE_E_PANIC` with the panic's message.
pub(crate) fn guard(what: &str, f: impl FnOnce() -> Res) -> i32 {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => SHMLANE_OK,
        Ok(Err(e)) => {
            set_last_error_fmt(format_args!("{what}: {}", e.msg));
            e.status
        }
        Err(payload) => {
            let text = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".to_owned());
            // Dropping the payload could panic in its own drop: forget it instead.
            core::mem::forget(payload);
            set_last_error_fmt(format_args!(
                "{what}: internal error (a Rust panic, please report it): {text}"
            ));
            SHMLANE_E_PANIC
        }
    }
}

/// The static description of a status code.
///
/// Thread-safe; never blocks, allocates or makes a system call. Unknown codes give
/// "unknown shmlane status". The string is static: never free it.
#[unsafe(no_mangle)]
pub extern "C" fn shmlane_strerror(status: i32) -> *const c_char {
    let s: &'static core::ffi::CStr = match status {
        SHMLANE_OK => c"success",
        SHMLANE_E_NULL => c"a NULL handle or pointer argument",
        SHMLANE_E_INVALID => c"an argument out of range",
        SHMLANE_E_CLOSED => c"the handle was already closed",
        SHMLANE_E_WRONG_HANDLE => c"a handle of another kind",
        SHMLANE_E_PANIC => c"internal error (a Rust panic was caught)",
        SHMLANE_E_NAME => c"bad channel name",
        SHMLANE_E_EXISTS => c"the channel already exists",
        SHMLANE_E_NOT_FOUND => c"no such channel",
        SHMLANE_E_WRONG_KIND => c"the channel is of another kind",
        SHMLANE_E_WRONG_TYPE => c"the channel holds another element type",
        SHMLANE_E_MISMATCH => c"the channel exists with other settings",
        SHMLANE_E_ROLE_TAKEN => c"the single role is held by a live endpoint",
        SHMLANE_E_STALE => c"stale channel: unread messages from a session in which a process died",
        SHMLANE_E_PERMISSION => c"permission denied",
        SHMLANE_E_OPEN => c"opening or creating the channel failed",
        SHMLANE_E_FULL => c"channel full",
        SHMLANE_E_EMPTY => c"channel empty",
        SHMLANE_E_TIMEOUT => c"timed out",
        SHMLANE_E_DISCONNECTED => c"every peer has left",
        SHMLANE_E_PEER_DIED => c"a peer process died",
        SHMLANE_E_CORRUPT => c"the channel's shared memory is corrupt",
        SHMLANE_E_TOO_LONG => c"message longer than the channel's largest",
        SHMLANE_E_BUFFER_TOO_SMALL => {
            c"buffer too small for the next message (its length is in *len; it was not consumed)"
        }
        SHMLANE_E_LAPPED => c"subscriber fell a ring behind and lost messages",
        SHMLANE_E_CLAIM => c"claim misuse",
        SHMLANE_E_IO => c"a system call failed",
        SHMLANE_E_UNSUPPORTED => c"not supported here",
        SHMLANE_E_BUSY => c"latest value busy: racing writes or no free slot now (try again)",
        SHMLANE_E_UNCHANGED => c"the latest value has not changed since this reader last read it",
        _ => c"unknown shmlane status",
    };
    s.as_ptr()
}

/// This thread's last error message: what failed, with the detail of the Rust error (the
/// channel's name, the expected and found kind, type or size, what to do).
///
/// Meaningful only right after a call that returned an error; valid until this thread's next
/// shmlane call; never NULL; never free it; at most 1024 bytes (a longer message is cut and
/// ends in "..."). Thread-safe (per thread); never blocks, allocates or makes a system call
/// (a library loaded with `dlopen`: glibc allocates its thread-local storage on a thread's
/// first call).
#[unsafe(no_mangle)]
pub extern "C" fn shmlane_last_error() -> *const c_char {
    // The text ends in a NUL (`set_last_error_fmt`), or is empty (all zeros).
    LAST.try_with(|l| l.borrow().buf.as_ptr().cast::<c_char>())
        .unwrap_or(c"".as_ptr())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn last() -> String {
        // SAFETY: `shmlane_last_error` returns a NUL-terminated string valid until the next call.
        unsafe { std::ffi::CStr::from_ptr(shmlane_last_error()) }
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn a_panic_becomes_a_status_and_a_message() {
        let r = guard("shmlane_test_call", || panic!("boom {}", 42));
        assert_eq!(r, SHMLANE_E_PANIC);
        let msg = last();
        assert!(
            msg.contains("shmlane_test_call") && msg.contains("boom 42"),
            "{msg}"
        );
        let r = guard("shmlane_test_call", || {
            Err(Fail::new(SHMLANE_E_INVALID, "bad\0value"))
        });
        assert_eq!(r, SHMLANE_E_INVALID);
        assert_eq!(last(), "shmlane_test_call: bad value");
        assert_eq!(guard("x", || Ok(())), SHMLANE_OK);
    }

    #[test]
    fn the_last_error_is_per_thread() {
        let _ = guard("main_thread_call", || {
            Err(Fail::new(SHMLANE_E_EMPTY, "here"))
        });
        std::thread::spawn(|| {
            let _ = guard("other_thread_call", || {
                Err(Fail::new(SHMLANE_E_FULL, "there"))
            });
            assert_eq!(last(), "other_thread_call: there");
        })
        .join()
        .unwrap();
        assert_eq!(last(), "main_thread_call: here");
    }

    /// The in-place texts: a last error longer than `TEXT_MAX` is cut at a character boundary
    /// and ends in "..."; an inline `Fail` longer than its 256 bytes likewise.
    #[test]
    fn long_messages_are_cut_not_allocated() {
        let long = "é".repeat(TEXT_MAX);
        let _ = guard("long", || Err(Fail::new(SHMLANE_E_INVALID, long.clone())));
        let got = last();
        assert!(
            got.len() <= TEXT_MAX && got.ends_with("..."),
            "{}",
            got.len()
        );
        assert!(got.starts_with("long: éé"));
        let f = Fail::fmt(SHMLANE_E_FULL, format_args!("{long}"));
        let shown = f.msg.to_string();
        assert!(
            shown.len() <= 256 && shown.ends_with("..."),
            "{}",
            shown.len()
        );
        let _ = guard("short", || {
            Err(Fail::fmt(SHMLANE_E_EMPTY, format_args!("a{}b", '\0')))
        });
        assert_eq!(last(), "short: a b");
    }

    #[test]
    fn every_status_has_its_own_description() {
        let mut seen = std::collections::HashSet::new();
        for s in -29..=0 {
            // SAFETY: static NUL-terminated strings.
            let d = unsafe { std::ffi::CStr::from_ptr(shmlane_strerror(s)) };
            assert!(seen.insert(d.to_owned()), "status {s} repeats {d:?}");
            assert!(!d.to_string_lossy().contains("unknown"), "status {s}");
        }
    }
}
