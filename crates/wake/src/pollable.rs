//! An eventfd bridge for event loops (feature `pollable`): a reactor (mio, tokio's
//! `AsyncFd`, plain `poll(2)`) waits on a file descriptor instead of a futex.
//!
//! The eventfd belongs to the waiting process; the notifying process gets it by `fork` or over
//! a Unix socket (`shmlane_segment::send_fd`). The notifier keeps the no-syscall fast path:
//! the eventfd is written only when a waiter registered with [`PollableEvent::arm`].
//!
//! Under loom the eventfd is modelled in `src/sync.rs` (a counter under a mutex, a condvar for
//! poll readiness), so `tests/loom.rs` can check that an armed waiter is never lost.

use std::io;
#[cfg(not(loom))]
use std::os::fd::{AsFd, BorrowedFd, OwnedFd as Fd};

#[cfg(loom)]
use crate::sync::EventFd as Fd;
use crate::{
    Event,
    sync::{AtomicBool, eventfd_drain, eventfd_new, eventfd_write},
};

/// An [`Event`] whose waiters can be an event loop polling an eventfd.
///
/// Each handle holds at most one registration as a sleeper: [`arm`](Self::arm) takes it
/// (once, however often it is called), [`disarm`](Self::disarm) or dropping the handle gives
/// it back, and a `disarm` with nothing held withdraws nothing. So any sequence of calls keeps
/// the event's shared sleeper count exact: it never goes below zero (which would make every
/// notify in every process a syscall) and never keeps a registration nobody holds.
#[derive(Debug)]
pub struct PollableEvent {
    event: Event,
    fd: Fd,
    /// Whether this handle holds one count in the event's sleeper count (local to the handle,
    /// never in shared memory).
    armed: AtomicBool,
}

impl PollableEvent {
    /// A fresh non-blocking, close-on-exec eventfd for [`new`](Self::new).
    pub fn eventfd() -> io::Result<Fd> {
        eventfd_new()
    }

    /// Bridges `event` to `fd` (an eventfd shared by the notifier and the waiter).
    pub fn new(event: Event, fd: Fd) -> Self {
        Self {
            event,
            fd,
            armed: AtomicBool::new(false),
        }
    }

    /// The event itself (threads may still wait on it with the futex).
    pub fn event(&self) -> &Event {
        &self.event
    }

    /// Wakes futex waiters and, if any waiter is registered, makes the eventfd readable.
    pub fn notify(&self) -> io::Result<bool> {
        let mut res = Ok(());
        let woke = self.event.notify_then(|| res = eventfd_write(&self.fd));
        res.map(|()| woke)
    }

    /// Registers the caller as a waiter before it goes back to its event loop, then re-checks
    /// `cond`.
    ///
    /// Returns `true` if `cond` already holds: nothing to wait for, and the handle is not
    /// registered (a registration it held from an earlier `arm` is withdrawn too). Returns
    /// `false` when the handle is registered: the eventfd becomes readable after the next
    /// notify; call [`disarm`](Self::disarm) then. Arming an armed handle registers nothing
    /// more. Calling `disarm` after an `arm` that returned `true` is allowed and does nothing
    /// to the count.
    pub fn arm(&self, cond: impl FnMut() -> bool) -> bool {
        self.event.register(&self.armed, cond)
    }

    /// Withdraws this handle's registration, if it holds one, and empties the eventfd.
    pub fn disarm(&self) {
        self.event.unregister(&self.armed);
        eventfd_drain(&self.fd);
    }

    /// Whether this handle holds a registration (armed and not yet disarmed).
    pub fn is_armed(&self) -> bool {
        // ORDERING: Relaxed; the handle's own flag, informational.
        self.armed.load(crate::sync::Ordering::Relaxed)
    }

    /// The loom model of `poll(2)` on the eventfd: blocks until it is readable.
    #[cfg(loom)]
    pub fn wait_readable(&self) {
        self.fd.wait_readable();
    }
}

/// Makes an eventfd from [`PollableEvent::eventfd`] readable (adds one to its counter; a
/// saturated counter is readable already and is not an error).
#[cfg(not(loom))]
pub fn eventfd_signal(fd: &Fd) -> io::Result<()> {
    eventfd_write(fd)
}

/// Empties an eventfd from [`PollableEvent::eventfd`] (non-blocking): no longer readable.
#[cfg(not(loom))]
pub fn eventfd_clear(fd: &Fd) {
    eventfd_drain(fd);
}

impl Drop for PollableEvent {
    /// A handle dropped while armed gives its registration back (a registration nobody holds
    /// would cost every later notify a syscall).
    fn drop(&mut self) {
        self.event.unregister(&self.armed);
    }
}

#[cfg(not(loom))]
impl AsFd for PollableEvent {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

// Not under Miri, which does not implement poll(2); the normal test run covers it.
#[cfg(all(test, not(miri), not(loom)))]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;
    use crate::EVENT_SIZE;

    /// A waiter and a notifier bridged to one eventfd, on an event in `mem`.
    fn pair(mem: &crate::event::tests::Mem) -> (PollableEvent, PollableEvent) {
        let ptr = mem.0;
        // SAFETY: `mem` outlives the handles (every test keeps it to the end).
        let (a, b) = unsafe {
            Event::init(ptr, EVENT_SIZE).unwrap();
            (
                Event::attach(ptr, EVENT_SIZE).unwrap(),
                Event::attach(ptr, EVENT_SIZE).unwrap(),
            )
        };
        let fd = PollableEvent::eventfd().unwrap();
        (
            PollableEvent::new(a, fd.try_clone().unwrap()),
            PollableEvent::new(b, fd),
        )
    }

    /// Finding 11: `disarm` after an `arm` that returned true (nothing registered) took the
    /// shared sleeper count below zero (to `u32::MAX`), after which every notify in every
    /// process made a futex syscall. `disarm` now withdraws only a registration this handle
    /// holds: the count stays exact whatever order arm and disarm come in.
    #[test]
    fn disarm_never_takes_the_sleeper_count_below_zero() {
        let mem = crate::event::tests::Mem::new();
        let (waiter, notifier) = pair(&mem);
        let sleepers = || waiter.event().sleepers();
        // The condition already holds: arm registers nothing, and the disarm that a caller
        // naturally writes after it must not unregister anyone.
        assert!(waiter.arm(|| true));
        assert!(!waiter.is_armed());
        waiter.disarm();
        assert_eq!(
            sleepers(),
            0,
            "disarm after a true arm underflowed the count"
        );
        assert!(
            !notifier.notify().unwrap(),
            "notify saw a sleeper that does not exist: it made a futex syscall"
        );
        // disarm without any arm, twice: nothing to withdraw.
        waiter.disarm();
        waiter.disarm();
        assert_eq!(sleepers(), 0);
        // arm twice: registered once; one disarm withdraws it.
        assert!(!waiter.arm(|| false));
        assert!(!waiter.arm(|| false));
        assert!(waiter.is_armed());
        assert_eq!(sleepers(), 1);
        waiter.disarm();
        waiter.disarm();
        assert_eq!(sleepers(), 0);
        // armed, then an arm that finds the condition: the registration is withdrawn once.
        assert!(!waiter.arm(|| false));
        assert!(waiter.arm(|| true));
        assert_eq!(sleepers(), 0);
        waiter.disarm();
        assert_eq!(sleepers(), 0);
        assert!(!notifier.notify().unwrap());
    }

    /// A handle dropped while armed withdraws its registration (otherwise every later notify
    /// would make a syscall for a waiter that is gone).
    #[test]
    fn dropping_an_armed_handle_withdraws_its_registration() {
        let mem = crate::event::tests::Mem::new();
        let (waiter, notifier) = pair(&mem);
        assert!(!waiter.arm(|| false));
        assert_eq!(notifier.event().sleepers(), 1);
        drop(waiter);
        assert_eq!(notifier.event().sleepers(), 0);
        assert!(!notifier.notify().unwrap());
    }

    #[test]
    fn poll_sees_the_notify() {
        let mem = crate::event::tests::Mem::new();
        let (waiter, notifier) = pair(&mem);
        let flag = AtomicBool::new(false);
        // Nothing registered: notify makes no syscall and the fd stays quiet.
        assert!(!notifier.notify().unwrap());
        assert!(!waiter.arm(|| flag.load(Ordering::Acquire)));
        flag.store(true, Ordering::Release);
        assert!(notifier.notify().unwrap());
        let mut pfd = libc::pollfd {
            fd: std::os::fd::AsRawFd::as_raw_fd(&waiter.as_fd()),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&raw mut pfd, 1, 5_000) };
        assert_eq!(n, 1, "eventfd not readable after notify");
        waiter.disarm();
        assert_eq!(waiter.event().sleepers(), 0);
        // SAFETY: as above; the eventfd was drained, so it is quiet again.
        let n = unsafe { libc::poll(&raw mut pfd, 1, 0) };
        assert_eq!(n, 0);
    }
}
