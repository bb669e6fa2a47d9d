//! The futex syscall (never with `FUTEX_PRIVATE_FLAG`: the word lives in shared memory and
//! the waker is usually another process) and absolute CLOCK_MONOTONIC deadlines.

use std::time::Duration;

/// A point in time on CLOCK_MONOTONIC (never the wall clock: a clock jump must not change
/// how long anyone waits).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Deadline {
    /// (seconds, nanoseconds) on CLOCK_MONOTONIC.
    at: (i64, i64),
}

fn monotonic_now() -> libc::timespec {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts) };
    debug_assert_eq!(rc, 0);
    ts
}

/// CLOCK_MONOTONIC now, in nanoseconds: the same clock in every process on the machine
/// (through the vDSO: no syscall).
pub fn monotonic_ns() -> u64 {
    let now = monotonic_now();
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

impl Deadline {
    /// `timeout` from now.
    pub fn after(timeout: Duration) -> Self {
        let now = monotonic_now();
        let nanos = now.tv_nsec as u64 + u64::from(timeout.subsec_nanos());
        let secs = (now.tv_sec as u64)
            .saturating_add(timeout.as_secs())
            .saturating_add(nanos / 1_000_000_000)
            .min(i64::MAX as u64 / 2);
        Self {
            at: (secs as i64, (nanos % 1_000_000_000) as i64),
        }
    }

    /// Whether the deadline has passed.
    pub fn is_past(&self) -> bool {
        let now = monotonic_now();
        (now.tv_sec, now.tv_nsec) >= self.at
    }

    /// Time left, zero once past.
    pub fn remaining(&self) -> Duration {
        let now = monotonic_now();
        let left = (i128::from(self.at.0) - i128::from(now.tv_sec)) * 1_000_000_000
            + i128::from(self.at.1)
            - i128::from(now.tv_nsec);
        Duration::from_nanos(left.clamp(0, i128::from(u64::MAX)) as u64)
    }

    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn timespec(self) -> libc::timespec {
        libc::timespec {
            tv_sec: self.at.0 as libc::time_t,
            tv_nsec: self.at.1 as libc::c_long,
        }
    }
}

/// What one `FUTEX_WAIT_BITSET` call returned. Callers re-check their condition whatever it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FutexWait {
    /// Woken by a `FUTEX_WAKE` (or spuriously: the kernel does not tell them apart).
    Woken,
    /// The word did not hold the expected value (EAGAIN).
    ValueChanged,
    /// The deadline passed (ETIMEDOUT).
    TimedOut,
    /// A signal interrupted the wait (EINTR).
    Interrupted,
}

/// Sleeps while `*word == expected`, at most until `deadline` (absolute, CLOCK_MONOTONIC).
/// Shared futex: works across processes mapping the same memory.
#[cfg(not(loom))]
pub fn futex_wait(
    word: &core::sync::atomic::AtomicU32,
    expected: u32,
    deadline: Option<&Deadline>,
) -> FutexWait {
    let ts_value = deadline.map(|d| d.timespec());
    let ts = ts_value
        .as_ref()
        .map_or(core::ptr::null(), core::ptr::from_ref);
    // SAFETY: `word` is a valid, aligned 32-bit atomic for the duration of the call; `ts` is
    // null or points to a valid timespec. FUTEX_WAIT_BITSET without FUTEX_CLOCK_REALTIME
    // takes an absolute CLOCK_MONOTONIC deadline; no FUTEX_PRIVATE_FLAG (shared memory).
    let rc = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT_BITSET,
            expected,
            ts,
            core::ptr::null::<u32>(),
            libc::FUTEX_BITSET_MATCH_ANY,
        )
    };
    if rc == 0 {
        return FutexWait::Woken;
    }
    match std::io::Error::last_os_error().raw_os_error() {
        Some(libc::EAGAIN) => FutexWait::ValueChanged,
        Some(libc::ETIMEDOUT) => FutexWait::TimedOut,
        // EINTR, and anything unexpected: report an interruption; the caller loops and
        // re-checks, which is correct for every outcome.
        _ => FutexWait::Interrupted,
    }
}

/// Wakes up to `n` waiters on `word`; returns how many were woken.
#[cfg(not(loom))]
pub fn futex_wake(word: &core::sync::atomic::AtomicU32, n: i32) -> usize {
    // SAFETY: `word` is a valid, aligned 32-bit atomic; FUTEX_WAKE only reads its address.
    // No FUTEX_PRIVATE_FLAG: the waiters may be in other processes.
    let rc = unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, n) };
    usize::try_from(rc).unwrap_or(0)
}

/// One entry of a `futex_waitv` call (the kernel's `struct futex_waitv`, 24 bytes).
#[cfg(not(loom))]
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct FutexWaitv {
    /// The value the word must still hold for the call to sleep.
    pub(crate) val: u64,
    /// The word's address.
    pub(crate) uaddr: u64,
    /// `FUTEX2_SIZE_U32`, never `FUTEX2_PRIVATE` (the word is in shared memory).
    pub(crate) flags: u32,
    pub(crate) reserved: u32,
}

/// `FUTEX2_SIZE_U32`: the words are 32-bit.
#[cfg(not(loom))]
pub(crate) const FUTEX2_SIZE_U32: u32 = 0x02;
/// The most entries one `futex_waitv` call takes (the kernel's `FUTEX_WAITV_MAX`).
pub const FUTEX_WAITV_MAX: usize = 128;

/// What one `futex_waitv` call returned.
#[cfg(not(loom))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Waitv {
    /// Woken (the index of a word that was woken), a word no longer held its value, the
    /// deadline passed, or a signal: the caller re-checks in every case.
    Returned,
    /// The kernel has no `futex_waitv` (before 5.16: ENOSYS), or refuses it (a seccomp filter:
    /// EPERM; EINVAL): the caller falls back and does not try again.
    Unsupported,
}

/// Sleeps until one of `waiters` is woken or no longer holds its value, at most until
/// `deadline` (absolute, CLOCK_MONOTONIC). Shared futexes: works across processes.
#[cfg(not(loom))]
pub(crate) fn futex_waitv(waiters: &[FutexWaitv], deadline: Option<&Deadline>) -> Waitv {
    debug_assert!(!waiters.is_empty() && waiters.len() <= FUTEX_WAITV_MAX);
    let ts_value = deadline.map(|d| d.timespec());
    let ts = ts_value
        .as_ref()
        .map_or(core::ptr::null(), core::ptr::from_ref);
    // SAFETY: `waiters` is a valid array of `len` kernel `futex_waitv` entries, each naming a
    // valid, aligned 32-bit word the caller keeps alive for the call; `ts` is null or a valid
    // timespec; flags 0; the clock is CLOCK_MONOTONIC, so the deadline is absolute on it.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_futex_waitv,
            waiters.as_ptr(),
            waiters.len() as libc::c_uint,
            0 as libc::c_uint,
            ts,
            libc::CLOCK_MONOTONIC,
        )
    };
    if rc >= 0 {
        return Waitv::Returned;
    }
    match std::io::Error::last_os_error().raw_os_error() {
        Some(libc::ENOSYS | libc::EPERM | libc::EINVAL | libc::EFAULT) => Waitv::Unsupported,
        // EAGAIN (a value changed), ETIMEDOUT, EINTR: the caller re-checks.
        _ => Waitv::Returned,
    }
}
