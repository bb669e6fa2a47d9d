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
    pub(crate) use core::sync::atomic::{AtomicU32, Ordering, fence};

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
}

#[cfg(loom)]
mod imp {
    pub(crate) use loom::sync::atomic::{AtomicU32, Ordering, fence};
    use loom::sync::{Condvar, Mutex};

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
}

pub(crate) use imp::*;

/// Whether the waiter's Dekker fence (between registering as a sleeper and re-checking the
/// condition) is compiled in. Removed only by `--cfg shmlane_weaken="wake_wait_fence"`.
pub(crate) const WAIT_FENCE: bool = !cfg!(shmlane_weaken = "wake_wait_fence");
/// Whether the notifier's Dekker fence (between publishing data and reading the sleeper
/// count) is compiled in. Removed only by `--cfg shmlane_weaken="wake_notify_fence"`.
pub(crate) const NOTIFY_FENCE: bool = !cfg!(shmlane_weaken = "wake_notify_fence");
