//! Status codes, `shmlane_strerror`, the per-thread last error, and the guard every export
//! runs its body in (no panic crosses the boundary).

use core::ffi::c_char;
use std::cell::RefCell;
use std::ffi::CString;
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

/// An error on its way out: a status and the message for `shmlane_last_error`.
#[derive(Debug)]
pub(crate) struct Fail {
    pub(crate) status: i32,
    pub(crate) msg: String,
}

impl Fail {
    pub(crate) fn new(status: i32, msg: impl Into<String>) -> Self {
        Self {
            status,
            msg: msg.into(),
        }
    }
}

/// What an export's body returns.
pub(crate) type Res<T = ()> = Result<T, Fail>;

thread_local! {
    /// This thread's last error message (NUL-terminated).
    static LAST: RefCell<CString> = RefCell::new(CString::default());
}

/// Records `msg` as this thread's last error (interior NULs become spaces).
pub(crate) fn set_last_error(msg: &str) {
    let c = CString::new(msg.replace('\0', " ")).unwrap_or_default();
    // A thread being torn down has no last error any more: nothing to record then.
    let _ = LAST.try_with(|l| *l.borrow_mut() = c);
}

/// Runs an export's body: `Ok` is `SHMLANE_OK`; an error records its message; a panic is
/// caught and becomes `SHMLANE_E_PANIC` with the panic's message.
pub(crate) fn guard(what: &str, f: impl FnOnce() -> Res) -> i32 {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => SHMLANE_OK,
        Ok(Err(e)) => {
            set_last_error(&format!("{what}: {}", e.msg));
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
            set_last_error(&format!(
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
        _ => c"unknown shmlane status",
    };
    s.as_ptr()
}

/// This thread's last error message: what failed, with the detail of the Rust error (the
/// channel's name, the expected and found kind, type or size, what to do).
///
/// Meaningful only right after a call that returned an error; valid until this thread's next
/// shmlane call; never NULL; never free it. Thread-safe (per thread); never blocks or makes a
/// system call; allocates only on the first call of a thread.
#[unsafe(no_mangle)]
pub extern "C" fn shmlane_last_error() -> *const c_char {
    LAST.try_with(|l| l.borrow().as_ptr())
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

    #[test]
    fn every_status_has_its_own_description() {
        let mut seen = std::collections::HashSet::new();
        for s in -27..=0 {
            // SAFETY: static NUL-terminated strings.
            let d = unsafe { std::ffi::CStr::from_ptr(shmlane_strerror(s)) };
            assert!(seen.insert(d.to_owned()), "status {s} repeats {d:?}");
            assert!(!d.to_string_lossy().contains("unknown"), "status {s}");
        }
    }
}
