//! The one place this crate names atomics, fences and the futex: std and the `SYS_futex`
//! syscall in normal builds, loom under `RUSTFLAGS="--cfg loom"`, where the futex is modelled
//! as one global mutex + condvar (the kernel's compare-and-block is atomic with respect to
//! wake, which the mutex reproduces; waking every waiter on every wake is a legal futex
//! behaviour, since callers must tolerate spurious wake-ups anyway).
//!
//! Fences a loom model must be able to catch being removed are named constants here, switched
//! by `--cfg shmlane_weaken="..."` (see `.ci/loom-mutants`).

#![allow(dead_code)]

#[cfg(not(loom))]
mod imp {
    pub(crate) use core::sync::atomic::{AtomicBool, AtomicU32, Ordering, fence};

    use crate::sys::{self, Deadline};

    /// Sleeps while `*word == expected`, until woken, `deadline` passes, or spuriously.
    pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, deadline: Option<&Deadline>) {
        // The outcome (woken, value changed, timed out, interrupted) does not matter: every
        // caller re-checks its condition and the deadline in a loop.
        let _ = sys::futex_wait(word, expected, deadline);
    }

    /// Wakes every waiter on `word`.
    pub(crate) fn futex_wake_all(word: &AtomicU32) {
        sys::futex_wake(word, i32::MAX);
    }

    pub(crate) fn spin_hint() {
        core::hint::spin_loop();
    }

    pub(crate) fn yield_now() {
        std::thread::yield_now();
    }

    /// The eventfd of the pollable bridge: a real file descriptor.
    #[cfg(feature = "pollable")]
    pub(crate) use std::os::fd::OwnedFd as EventFd;

    /// A fresh non-blocking, close-on-exec eventfd.
    #[cfg(feature = "pollable")]
    pub(crate) fn eventfd_new() -> std::io::Result<EventFd> {
        use std::os::fd::FromRawFd;
        // SAFETY: plain syscall with constant flags; the result is checked below.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` is a new descriptor that nothing else owns.
        Ok(unsafe { EventFd::from_raw_fd(fd) })
    }

    /// Adds one to the eventfd's counter: it becomes readable.
    #[cfg(feature = "pollable")]
    pub(crate) fn eventfd_write(fd: &EventFd) -> std::io::Result<()> {
        use std::os::fd::AsRawFd;
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a valid u64 to an eventfd the caller owns.
        let rc = unsafe { libc::write(fd.as_raw_fd(), (&raw const one).cast(), 8) };
        let err = std::io::Error::last_os_error();
        // EAGAIN: the counter is saturated, the fd is readable anyway.
        if rc < 0 && err.raw_os_error() != Some(libc::EAGAIN) {
            return Err(err);
        }
        Ok(())
    }

    /// Empties the eventfd's counter (non-blocking): it is no longer readable.
    #[cfg(feature = "pollable")]
    pub(crate) fn eventfd_drain(fd: &EventFd) {
        use std::os::fd::AsRawFd;
        let mut buf = 0u64;
        // SAFETY: reads 8 bytes into a valid u64 from an eventfd the caller owns; EAGAIN (already
        // empty) is the only expected failure and needs nothing done.
        let _ = unsafe { libc::read(fd.as_raw_fd(), (&raw mut buf).cast(), 8) };
    }
}

#[cfg(loom)]
mod imp {
    pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU32, Ordering, fence};
    use loom::sync::{Arc, Condvar, Mutex};

    use crate::sys::Deadline;

    loom::lazy_static! {
        static ref FUTEX: (Mutex<()>, Condvar) = (Mutex::new(()), Condvar::new());
    }

    /// The kernel checks the word and queues the waiter under its hash-bucket lock, with a
    /// full barrier before the check; the model does the same under one mutex. Deadlines are
    /// not modelled (the models wait without one).
    pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, _deadline: Option<&Deadline>) {
        let guard = FUTEX.0.lock().unwrap();
        fence(Ordering::SeqCst);
        if word.load(Ordering::Relaxed) != expected {
            return;
        }
        drop(FUTEX.1.wait(guard).unwrap());
    }

    /// `futex_waitv` modelled as `futex_wait` is: under the one mutex, sleep unless some word
    /// no longer holds its value.
    pub(crate) fn futex_waitv(words: &[(&AtomicU32, u32)]) {
        let guard = FUTEX.0.lock().unwrap();
        fence(Ordering::SeqCst);
        if words.iter().any(|(w, v)| w.load(Ordering::Relaxed) != *v) {
            return;
        }
        drop(FUTEX.1.wait(guard).unwrap());
    }

    pub(crate) fn futex_wake_all(_word: &AtomicU32) {
        let _guard = FUTEX.0.lock().unwrap();
        FUTEX.1.notify_all();
    }

    pub(crate) fn spin_hint() {
        loom::thread::yield_now();
    }

    pub(crate) fn yield_now() {
        loom::thread::yield_now();
    }

    /// The eventfd modelled for loom: its counter under a mutex, and a condvar standing for
    /// `poll(2)` readiness. The kernel's eventfd write and read are atomic with respect to each
    /// other and to poll, which the mutex reproduces.
    #[derive(Clone)]
    pub struct EventFd(Arc<(Mutex<u64>, Condvar)>);

    impl core::fmt::Debug for EventFd {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            f.write_str("EventFd(loom model)")
        }
    }

    impl EventFd {
        /// A second handle to the same eventfd (`OwnedFd::try_clone` in real builds).
        pub fn try_clone(&self) -> std::io::Result<Self> {
            Ok(self.clone())
        }

        /// `poll(2)` until readable: blocks while the counter is zero. A wake-up that never
        /// comes leaves every thread blocked, which loom reports as a deadlock.
        pub(crate) fn wait_readable(&self) {
            let mut count = self.0.0.lock().unwrap();
            while *count == 0 {
                count = self.0.1.wait(count).unwrap();
            }
        }
    }

    // Same signature as the real eventfd's, which can fail.
    #[allow(clippy::unnecessary_wraps)]
    pub(crate) fn eventfd_new() -> std::io::Result<EventFd> {
        Ok(EventFd(Arc::new((Mutex::new(0), Condvar::new()))))
    }

    // Same signature as the real eventfd's, which can fail.
    #[allow(clippy::unnecessary_wraps)]
    pub(crate) fn eventfd_write(fd: &EventFd) -> std::io::Result<()> {
        *fd.0.0.lock().unwrap() += 1;
        fd.0.1.notify_all();
        Ok(())
    }

    pub(crate) fn eventfd_drain(fd: &EventFd) {
        *fd.0.0.lock().unwrap() = 0;
    }
}

/// Public under loom: the models build a `PollableEvent` from it.
#[cfg(loom)]
pub use imp::EventFd;
pub(crate) use imp::*;

/// Whether the waiter's Dekker fence (between registering as a sleeper and re-checking the
/// condition) is compiled in. Removed only by `--cfg shmlane_weaken="wake_wait_fence"`.
pub(crate) const WAIT_FENCE: bool = !cfg!(shmlane_weaken = "wake_wait_fence");
/// Whether the notifier's Dekker fence (between publishing data and reading the sleeper
/// count) is compiled in. Removed only by `--cfg shmlane_weaken="wake_notify_fence"`.
pub(crate) const NOTIFY_FENCE: bool = !cfg!(shmlane_weaken = "wake_notify_fence");
/// Whether the pollable waiter's Dekker fence (between `PollableEvent::arm` registering and
/// re-checking the condition) is compiled in. Removed only by
/// `--cfg shmlane_weaken="wake_register_fence"`.
pub(crate) const REGISTER_FENCE: bool = !cfg!(shmlane_weaken = "wake_register_fence");
/// Whether the wait set's one Dekker fence (between registering on every event of the set and
/// re-checking the condition) is compiled in. Removed only by
/// `--cfg shmlane_weaken="wake_waitv_fence"`.
pub(crate) const WAITV_FENCE: bool = !cfg!(shmlane_weaken = "wake_waitv_fence");
