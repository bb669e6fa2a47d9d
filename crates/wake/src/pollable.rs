//! An eventfd bridge for event loops (feature `pollable`): a reactor (mio, tokio's
//! `AsyncFd`, plain `poll(2)`) waits on a file descriptor instead of a futex.
//!
//! The eventfd belongs to the waiting process; the notifying process gets it by `fork` or over
//! a Unix socket (`shmlane_segment::send_fd`). The notifier keeps the no-syscall fast path:
//! the eventfd is written only when a waiter registered with [`PollableEvent::arm`].

use std::{
    io,
    os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd},
};

use crate::Event;

/// An [`Event`] whose waiters can be an event loop polling an eventfd.
#[derive(Debug)]
pub struct PollableEvent {
    event: Event,
    fd: OwnedFd,
}

impl PollableEvent {
    /// A fresh non-blocking, close-on-exec eventfd for [`new`](Self::new).
    pub fn eventfd() -> io::Result<OwnedFd> {
        // SAFETY: plain syscall with constant flags; the result is checked below.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a new descriptor that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    /// Bridges `event` to `fd` (an eventfd shared by the notifier and the waiter).
    pub fn new(event: Event, fd: OwnedFd) -> Self {
        Self { event, fd }
    }

    /// The event itself (threads may still wait on it with the futex).
    pub fn event(&self) -> &Event {
        &self.event
    }

    /// Wakes futex waiters and, if any waiter is registered, makes the eventfd readable.
    pub fn notify(&self) -> io::Result<bool> {
        let mut res = Ok(());
        let woke = self.event.notify_then(|| {
            let one: u64 = 1;
            // SAFETY: writes 8 bytes from a valid u64 to an eventfd we own.
            let rc = unsafe {
                libc::write(
                    std::os::fd::AsRawFd::as_raw_fd(&self.fd),
                    (&raw const one).cast(),
                    8,
                )
            };
            // EAGAIN: the counter is saturated, the fd is readable anyway.
            if rc < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EAGAIN) {
                res = Err(io::Error::last_os_error());
            }
        });
        res.map(|()| woke)
    }

    /// Registers the caller as a waiter before it goes back to its event loop. Returns `true`
    /// if `cond` already holds (nothing to wait for; not registered). Otherwise the eventfd
    /// becomes readable after the next notify; call [`disarm`](Self::disarm) then.
    pub fn arm(&self, cond: impl FnMut() -> bool) -> bool {
        self.event.register(cond)
    }

    /// Withdraws the registration of [`arm`](Self::arm) and empties the eventfd.
    pub fn disarm(&self) {
        self.event.unregister();
        let mut buf = 0u64;
        // SAFETY: reads 8 bytes into a valid u64 from an eventfd we own (non-blocking).
        let _ = unsafe {
            libc::read(
                std::os::fd::AsRawFd::as_raw_fd(&self.fd),
                (&raw mut buf).cast(),
                8,
            )
        };
    }
}

impl AsFd for PollableEvent {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

// Not under Miri, which does not implement poll(2); the normal test run covers it.
#[cfg(all(test, not(miri)))]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;
    use crate::EVENT_SIZE;

    #[test]
    fn poll_sees_the_notify() {
        let mem = crate::event::tests::Mem::new();
        let ptr = mem.0;
        // SAFETY: `mem` outlives the handles.
        let (a, b) = unsafe {
            Event::init(ptr, EVENT_SIZE).unwrap();
            (
                Event::attach(ptr, EVENT_SIZE).unwrap(),
                Event::attach(ptr, EVENT_SIZE).unwrap(),
            )
        };
        let fd = PollableEvent::eventfd().unwrap();
        let waiter = PollableEvent::new(a, fd.try_clone().unwrap());
        let notifier = PollableEvent::new(b, fd);
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
