//! Interrupts and closed pipes for `send` and `recv`.
//!
//! SIGINT, SIGTERM and SIGHUP do not kill the command: a handler only records the signal's
//! number, and every wait of the command (for a message, for room in the ring, for a line of
//! input, for the output to drain) lasts at most [`SLICE`] before it looks at that number.
//! The command then leaves the channel as on any clean exit (its endpoints are dropped, so
//! peers see a clean leave, and a channel it created implicitly is removed with its last user)
//! and exits with 128 + the signal's number. A closed output pipe (`recv | head -1`) is
//! treated as SIGPIPE: the same quiet clean exit, with 141.
//!
//! The handler is installed without `SA_RESTART`, so a blocking read or write returns EINTR
//! at once; the waits here never rely on that alone (a signal that lands just before a
//! blocking call would be missed), they poll in slices. A signal ignored when the command
//! starts (`nohup`, a background job of a non-interactive shell) stays ignored.

use std::{
    ffi::c_int,
    io::{self, Read, Write},
    os::fd::{AsFd, AsRawFd},
    sync::atomic::{AtomicI32, Ordering},
    time::Duration,
};

use nix::{
    errno::Errno,
    poll::{PollFd, PollFlags, PollTimeout, poll},
    sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction},
};
use shmlane::Deadline;

use crate::CliError;

/// The longest any wait goes without looking for a signal. Longer than the library's peer
/// check (every 50 ms within one blocking call, from its start): a slice of 50 ms or less
/// would end every call before it looks, and a dead sender would never be reported
/// (`killed_sender_gives_peer_gone_and_a_stale_segment` in tests/cli.rs caught that).
pub const SLICE: Duration = Duration::from_millis(100);

/// The signals that end `send` and `recv` cleanly.
const HANDLED: [Signal; 3] = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP];

/// The first signal caught (or SIGPIPE once the output is found closed); 0 while none.
static CAUGHT: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: c_int) {
    // ORDERING: Relaxed: the number is the only thing handed over, no other memory is
    // published with it; pairs with the Relaxed load in `caught`. A lock-free compare-exchange
    // is async-signal-safe. The first signal wins.
    let _ = CAUGHT.compare_exchange(0, sig, Ordering::Relaxed, Ordering::Relaxed);
}

/// Installs the handler for SIGINT, SIGTERM and SIGHUP (each one not ignored on entry).
pub fn install() -> Result<(), CliError> {
    let act = SigAction::new(
        SigHandler::Handler(on_signal),
        // No SA_RESTART: a blocked read or write returns EINTR instead of going on.
        SaFlags::empty(),
        SigSet::empty(),
    );
    for s in HANDLED {
        // SAFETY: the handler only does a lock-free atomic compare-exchange on a static,
        // which is async-signal-safe; it touches no lock, allocation or thread-local.
        let old = unsafe { sigaction(s, &act) }
            .map_err(|e| CliError(format!("installing a handler for {s}: {e}")))?;
        if matches!(old.handler(), SigHandler::SigIgn) {
            // Ignored by whoever started us (nohup, `cmd &` in a script): keep it so.
            // SAFETY: restores the disposition we found (SIG_IGN), no handler code involved.
            unsafe { sigaction(s, &old) }.map_err(|e| CliError(format!("restoring {s}: {e}")))?;
        }
    }
    Ok(())
}

/// The signal that asks the command to stop, if any.
pub fn caught() -> Option<i32> {
    // ORDERING: Relaxed: pairs with the Relaxed compare-exchanges in `on_signal` and
    // `note_pipe_closed`; only the number is read.
    match CAUGHT.load(Ordering::Relaxed) {
        0 => None,
        s => Some(s),
    }
}

/// Records that the output pipe was closed: ends the command like a SIGPIPE.
fn note_pipe_closed() {
    // ORDERING: Relaxed: see `on_signal`.
    let _ = CAUGHT.compare_exchange(
        0,
        Signal::SIGPIPE as i32,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
}

/// The error that a read or write stopped by a signal returns (never `Interrupted`: the
/// standard library's buffered readers and writers retry those).
fn stopped() -> io::Error {
    io::Error::other("stopped by a signal")
}

/// Why a wait ended without its result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// A signal (or SIGPIPE: the output was closed) asks the command to stop.
    Signal(i32),
    /// The user's deadline passed.
    Timeout,
}

/// Calls `attempt` with deadlines at most [`SLICE`] away (and never past `deadline`) until it
/// gives a result (`Some`); `None` means its slice ran out. Between slices: stops for a
/// signal, for the deadline, and, with `watch_stdout`, for a closed output pipe.
pub fn wait<R>(
    deadline: Option<Deadline>,
    watch_stdout: bool,
    mut attempt: impl FnMut(Deadline) -> Option<R>,
) -> Result<R, Stop> {
    loop {
        if let Some(s) = caught() {
            return Err(Stop::Signal(s));
        }
        let slice = Deadline::after(SLICE);
        if let Some(r) = attempt(deadline.map_or(slice, |d| d.min(slice))) {
            return Ok(r);
        }
        if deadline.is_some_and(|d| d.is_past()) {
            return Err(Stop::Timeout);
        }
        if watch_stdout && stdout_closed() {
            note_pipe_closed();
        }
    }
}

/// Sleeps for `pause`, at most a slice (a signal does not shorten a `thread::sleep`).
pub fn nap(pause: Duration) {
    std::thread::sleep(pause.min(SLICE));
}

/// Whether standard output is a pipe whose reader has gone (POLLERR on a pipe).
pub fn stdout_closed() -> bool {
    let out = io::stdout();
    let mut fds = [PollFd::new(out.as_fd(), PollFlags::empty())];
    match poll(&mut fds, PollTimeout::ZERO) {
        Ok(n) if n > 0 => fds[0]
            .revents()
            .is_some_and(|r| r.intersects(PollFlags::POLLERR)),
        _ => false,
    }
}

/// Waits until `fd` is ready for `events`, in slices: `Ok(true)` when ready (or in error or
/// hung up: the read or write itself reports that). Once a signal has been caught it only
/// looks (no wait): `Ok(false)` if not ready then. Past `deadline`: an error of kind
/// `TimedOut` if not ready within one more slice.
fn ready(
    fd: std::os::fd::BorrowedFd<'_>,
    events: PollFlags,
    deadline: Option<Deadline>,
) -> io::Result<bool> {
    loop {
        let signalled = caught().is_some();
        let wait = match deadline {
            _ if signalled => Duration::ZERO,
            Some(d) if d.is_past() => {
                // One last slice, then the user's timeout ends the wait: a reader that is
                // still reading takes what was already received (each write that goes on
                // gets another slice, and nothing new is received past the deadline); one
                // that stopped ends the command a slice after its deadline.
                let slice = PollTimeout::try_from(SLICE).unwrap_or(PollTimeout::MAX);
                let mut fds = [PollFd::new(fd, events)];
                return match poll(&mut fds, slice) {
                    Ok(n) if n > 0 => Ok(true),
                    _ => Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the output is not being read",
                    )),
                };
            }
            Some(d) => d.remaining().min(SLICE),
            None => SLICE,
        };
        let timeout = PollTimeout::try_from(wait).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(fd, events)];
        match poll(&mut fds, timeout) {
            Ok(n) if n > 0 => return Ok(true),
            Ok(_) | Err(Errno::EINTR) if signalled => return Ok(false),
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// At most this much is written once a signal has been caught: a pipe that polls writable
/// takes it without blocking (PIPE_BUF).
const PIPE_BUF: usize = 4096;

/// Standard input, read straight from the descriptor (no buffer that a poll could not see),
/// stopping for a signal.
#[derive(Debug)]
pub struct Stdin;

impl Read for Stdin {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let stdin = io::stdin();
        loop {
            // Once a signal has been caught no more input is wanted.
            if caught().is_some() || !ready(stdin.as_fd(), PollFlags::POLLIN, None)? {
                return Err(stopped());
            }
            match nix::unistd::read(stdin.as_fd(), buf) {
                Ok(n) => return Ok(n),
                Err(Errno::EINTR | Errno::EAGAIN) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl Stdin {
    /// As `read`, into memory given by a pointer (a slot of a ring another process maps: no
    /// reference to it is made): the bytes read, 0 at the end of the input.
    ///
    /// # Safety
    /// `ptr` must be valid for writes of `len` bytes for the duration of the call.
    #[allow(clippy::unused_self)] // Reads this handle's descriptor (as `read`).
    pub unsafe fn read_into(&mut self, ptr: *mut u8, len: usize) -> io::Result<usize> {
        let stdin = io::stdin();
        loop {
            if caught().is_some() || !ready(stdin.as_fd(), PollFlags::POLLIN, None)? {
                return Err(stopped());
            }
            // SAFETY: the caller vouches for `ptr..ptr + len`; the kernel writes it, no
            // reference to it exists here.
            let n = unsafe { libc::read(stdin.as_raw_fd(), ptr.cast(), len) };
            if let Ok(n) = usize::try_from(n) {
                return Ok(n);
            }
            match Errno::last() {
                Errno::EINTR | Errno::EAGAIN => {}
                e => return Err(e.into()),
            }
        }
    }
}

/// Standard output, written straight to the descriptor, in waits that stop for a signal: once
/// one has been caught, whatever can be written without blocking still is (so the messages
/// taken from the channel reach the reader if it keeps up), then the write fails. A closed
/// pipe (EPIPE) is recorded as SIGPIPE. With a deadline (`recv --timeout`), a write that
/// cannot go on by then fails with `TimedOut`: a reader that stops reading does not hold the
/// command past its timeout.
#[derive(Debug)]
pub struct Stdout {
    deadline: Option<Deadline>,
}

impl Stdout {
    /// Standard output, its writes waiting at most until `deadline`.
    pub fn until(deadline: Option<Deadline>) -> Self {
        Self { deadline }
    }
}

impl Stdout {
    /// As `write_all`, from memory given by a pointer (a slot of a ring another process maps:
    /// no reference to it is made).
    ///
    /// # Safety
    /// `ptr` must be valid for reads of `len` bytes for the duration of the call.
    pub unsafe fn write_all_from(&mut self, mut ptr: *const u8, mut len: usize) -> io::Result<()> {
        let stdout = io::stdout();
        while len > 0 {
            if !ready(stdout.as_fd(), PollFlags::POLLOUT, self.deadline)? {
                return Err(stopped());
            }
            let part = if caught().is_some() {
                len.min(PIPE_BUF)
            } else {
                len
            };
            // SAFETY: the caller vouches for `ptr..ptr + len` (`part <= len`); the kernel reads
            // it, no reference to it exists here.
            let n = unsafe { libc::write(stdout.as_raw_fd(), ptr.cast(), part) };
            if let Ok(n) = usize::try_from(n) {
                // SAFETY: `n <= part <= len`: still within (or one past) the caller's range.
                ptr = unsafe { ptr.add(n) };
                len -= n;
                continue;
            }
            match Errno::last() {
                Errno::EINTR | Errno::EAGAIN => {}
                Errno::EPIPE => {
                    note_pipe_closed();
                    return Err(stopped());
                }
                e => return Err(e.into()),
            }
        }
        Ok(())
    }
}

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let stdout = io::stdout();
        loop {
            if !ready(stdout.as_fd(), PollFlags::POLLOUT, self.deadline)? {
                return Err(stopped());
            }
            let part = if caught().is_some() {
                &buf[..buf.len().min(PIPE_BUF)]
            } else {
                buf
            };
            match nix::unistd::write(stdout.as_fd(), part) {
                Ok(n) => return Ok(n),
                Err(Errno::EINTR | Errno::EAGAIN) => {}
                Err(Errno::EPIPE) => {
                    note_pipe_closed();
                    return Err(stopped());
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
