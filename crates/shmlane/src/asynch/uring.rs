//! The task-side wait: a futex wait queued in the kernel through io_uring, whose completion
//! makes an eventfd readable for tokio's reactor. No thread waits on the futex.
//!
//! ```text
//! task (process B), poll_wait                 sender (process A), after publishing
//!   seen = seq (Acquire)                         F_NOTIFY: fence(SeqCst)
//!   sleepers += 1; F_WAIT; cond()? -> Ready      sleepers != 0 -> seq += 1; FUTEX_WAKE(seq)
//!   IORING_OP_FUTEX_WAIT(seq, seen) queued          (the kernel completes the queued wait:
//!   Pending (AsyncFd on the eventfd)                 a CQE, and the ring's eventfd readable)
//!   eventfd readable -> reap, unregister, Ready
//! ```
//!
//! The registration and re-check are `Event::register`'s (the Dekker pair with F_NOTIFY, loom
//! model `an_async_waiter_is_never_lost`). The queued wait takes `seen`, read before the
//! registration: if a notify bumped `seq` before the kernel compared, the wait completes at
//! once (EAGAIN); after, the notify's FUTEX_WAKE completes it. A wait still queued from an
//! earlier turn is kept, not doubled: `seq` still equal to the value it was queued with means
//! it is as good as a new one; `seq` moved means it has completed already (every bump is
//! followed by a FUTEX_WAKE of the word), so its completion is waiting on the eventfd.
//!
//! Fallback (io_uring refused: before Linux 6.7 no `IORING_OP_FUTEX_WAIT`, or io_uring
//! disabled by sysctl or a seccomp filter): a tokio timer of 1 ms ([`FALLBACK_POLL`]) while
//! registered; the task looks again on each tick. Never a hang, at the cost of up to 1 ms and
//! a thousand wake-ups a second while it waits.

use std::{
    io,
    os::fd::{AsRawFd, OwnedFd},
    pin::Pin,
    sync::atomic::AtomicBool,
    task::{Context, Poll},
    time::Duration,
};

use io_uring::{IoUring, opcode};
use shmlane_wake::{Event, PollableEvent, eventfd_clear};
use tokio::{io::unix::AsyncFd, time::Sleep};

/// How often a task looks again while it waits without io_uring.
pub const FALLBACK_POLL: Duration = Duration::from_millis(1);

/// `FUTEX2_SIZE_U32`, without `FUTEX2_PRIVATE`: the word is in shared memory.
const FUTEX2_SIZE_U32: u32 = 0x02;
/// `FUTEX_BITSET_MATCH_ANY`.
const MATCH_ANY: u64 = 0xffff_ffff;

/// The kernel side of one waiting endpoint: an io_uring (or none: the fallback), the eventfd
/// its completions signal, the registration flag and the timer that bounds each wait.
pub(crate) struct UringWait {
    ring: Option<IoUring>,
    efd: AsyncFd<OwnedFd>,
    /// Whether this endpoint holds one count in the event's sleepers (process-local).
    registered: AtomicBool,
    /// A futex wait is queued in the ring (its completion not reaped yet).
    in_flight: bool,
    timer: Pin<Box<Sleep>>,
    /// The timer was set for the current registration.
    timed: bool,
}

impl core::fmt::Debug for UringWait {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("UringWait")
            .field("io_uring", &self.ring.is_some())
            .field("in_flight", &self.in_flight)
            .finish_non_exhaustive()
    }
}

impl UringWait {
    /// An io_uring of 4 entries with an eventfd registered, watched by the current tokio
    /// runtime's reactor (errors outside a runtime); `io_uring: false`, or a kernel that
    /// refuses it, gives the timer fallback.
    pub(crate) fn new(io_uring: bool) -> io::Result<Self> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(io::Error::other(
                "an async shmlane endpoint is made inside a tokio runtime (with I/O and time enabled: Builder::enable_all, or #[tokio::main])",
            ));
        }
        let fd = PollableEvent::eventfd()?;
        let ring = if io_uring { make_ring(&fd) } else { None };
        // tokio panics (rather than failing) when the runtime lacks its I/O or time driver:
        // turned into an error here, so a misbuilt runtime is a clear error, not a crash.
        let made = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            // SAFETY: the eventfd is owned by the `AsyncFd` from here on and stays open, the
            // same descriptor, until the `AsyncFd` drops it.
            let efd = unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
                .map_err(|e| e.into_parts().1)?;
            let timer = Box::pin(tokio::time::sleep(Duration::ZERO));
            Ok::<_, io::Error>((efd, timer))
        }));
        let (efd, timer) = made.map_err(|_| {
            io::Error::other(
                "the tokio runtime has no I/O or no time driver: build it with enable_all() (or #[tokio::main])",
            )
        })??;
        Ok(Self {
            ring,
            efd,
            registered: AtomicBool::new(false),
            in_flight: false,
            timer,
            timed: false,
        })
    }

    /// Whether the waits go through io_uring (not the timer fallback).
    pub(crate) fn uses_io_uring(&self) -> bool {
        self.ring.is_some()
    }

    /// Waits for a notify of `ev`, for at most `slice` (then `Ready` too): registers (unless
    /// registered), re-checks `cond` (`Ready` at once if it holds, unregistered), queues the
    /// futex wait, and returns `Pending` until the eventfd or the timer fires. Every `Ready`
    /// leaves the endpoint unregistered; `Pending` leaves it registered (see `withdraw`).
    pub(crate) fn poll_wait(
        &mut self,
        cx: &mut Context<'_>,
        ev: &Event,
        slice: Duration,
        cond: impl FnMut() -> bool,
    ) -> Poll<()> {
        // ORDERING: Relaxed; the endpoint's own flag (see `Event::register`).
        if !self.registered.load(core::sync::atomic::Ordering::Relaxed) {
            // Read before registering (as `Event::wait` parks): a notify after the
            // registration moves `seq` past it.
            let seen = ev.seq();
            if ev.register(&self.registered, cond) {
                return Poll::Ready(());
            }
            self.queue(ev, seen);
            self.timed = false;
        }
        if !self.timed {
            let slice = if self.ring.is_some() {
                slice
            } else {
                slice.min(FALLBACK_POLL)
            };
            self.timer
                .as_mut()
                .reset(tokio::time::Instant::now() + slice);
            self.timed = true;
        }
        let fired = match self.efd.poll_read_ready(cx) {
            Poll::Ready(Ok(mut guard)) => {
                eventfd_clear(guard.get_inner());
                guard.clear_ready();
                true
            }
            // An error of the reactor: look again now (the caller re-checks everything).
            Poll::Ready(Err(_)) => true,
            Poll::Pending => false,
        };
        if fired {
            self.reap();
        }
        if fired || self.timer.as_mut().poll(cx).is_ready() {
            self.withdraw(ev);
            return Poll::Ready(());
        }
        Poll::Pending
    }

    /// Gives back the registration, if held (a dropped future, a drained endpoint).
    pub(crate) fn withdraw(&mut self, ev: &Event) {
        ev.unregister(&self.registered);
        self.timed = false;
    }

    /// Queues a futex wait on `ev`'s sequence word for `seen`, unless one is queued already.
    fn queue(&mut self, ev: &Event, seen: u32) {
        if self.in_flight {
            return;
        }
        let Some(ring) = self.ring.as_mut() else {
            return;
        };
        let sqe = opcode::FutexWait::new(
            ev.seq_word_ptr(),
            u64::from(seen),
            MATCH_ANY,
            FUTEX2_SIZE_U32,
        )
        .build()
        .user_data(1);
        // SAFETY: the futex word is the event's, in the channel's mapping, valid and aligned
        // now (the caller holds the channel's `Arc`). The kernel only reads it, with a fault-safe
        // user access, to compare it when it takes the entry (compare and queue, or EAGAIN),
        // and never writes it; a queued wait holds only the futex key (inode and offset of the
        // shared page), so it stays harmless if it outlives the mapping (closing the ring
        // cancels it only asynchronously, in the kernel's ring-exit work).
        let pushed = unsafe { ring.submission().push(&sqe) }.is_ok();
        if pushed && ring.submit().is_ok() {
            self.in_flight = true;
        } else {
            // A ring that cannot take the wait: the timer from now on.
            self.ring = None;
        }
    }

    /// Takes the completions: the queued wait is done (woken, EAGAIN, or refused: then
    /// io_uring is given up for the timer).
    fn reap(&mut self) {
        let Some(ring) = self.ring.as_mut() else {
            return;
        };
        let mut refused = false;
        for cqe in ring.completion() {
            self.in_flight = false;
            let res = cqe.result();
            if res == -libc::EINVAL || res == -libc::EOPNOTSUPP || res == -libc::ENOSYS {
                refused = true;
            }
        }
        if refused {
            self.ring = None;
        }
    }
}

/// An io_uring that can queue futex waits and signals `fd` on completion, or `None`.
fn make_ring(fd: &OwnedFd) -> Option<IoUring> {
    let ring = IoUring::new(4).ok()?;
    let mut probe = io_uring::Probe::new();
    ring.submitter().register_probe(&mut probe).ok()?;
    if !probe.is_supported(opcode::FutexWait::CODE) {
        return None;
    }
    ring.submitter().register_eventfd(fd.as_raw_fd()).ok()?;
    Some(ring)
}
