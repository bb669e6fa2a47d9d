//! Waiting on several events at once: one thread sleeps until any of N events is notified.
//!
//! The protocol is the single event's (see `event.rs`), registered on every event of the set
//! before the one fence:
//!
//! ```text
//! waiter                                       notifier of event k
//! for each event i: seen[i] = seq_i (Acquire)  (publish data: the caller's Release store)
//! for each event i: sleepers_i += 1            fence(SeqCst)               <-- F_NOTIFY
//! fence(SeqCst)                <-- F_WAITV     if sleepers_k != 0 { seq_k += 1; FUTEX_WAKE }
//! if cond() { unregister all; leave }
//! futex_waitv([(seq_i, seen[i]) ...], deadline)
//! unregister all (sleepers_i -= 1)
//! ```
//!
//! Why no wake-up is lost, for each event k of the set: F_WAITV and k's F_NOTIFY are both
//! SeqCst fences, so either the notifier's load of `sleepers_k` sees this waiter's increment
//! (then it bumps `seq_k` past `seen[k]`, read before the increment, and the kernel, which
//! compares every word of the vector and queues atomically with respect to FUTEX_WAKE, does not
//! let the waiter sleep through it), or the waiter's re-check sees k's data. One fence covers
//! every event because every increment is sequenced before it. `notify` does not change: a
//! notifier with nobody registered still pays one fence and one load, no syscall.
//!
//! `futex_waitv` (Linux 5.16+) takes at most [`FUTEX_WAITV_MAX`](crate::FUTEX_WAITV_MAX) (128) words. Beyond that, or
//! where the kernel lacks it (ENOSYS) or a seccomp filter refuses it, the waiter still registers
//! on every event (so every notify moves its `seq`), sleeps on the first event's word alone and
//! wakes at least every [`FALLBACK_SLICE`] (1 ms) to re-check: the first event (the caller puts
//! the one it expects first) is woken at once, the others within 1 ms. Every registration is
//! withdrawn before `wait_any` returns, also when `cond` panics.

use std::time::Duration;

#[cfg(not(loom))]
use crate::sync::futex_wait;
#[cfg(not(loom))]
use crate::sys::{FUTEX2_SIZE_U32, FutexWaitv, Waitv, futex_waitv};
use crate::{
    Deadline, Event,
    sync::{Ordering, WAITV_FENCE, fence},
};

/// How long the fallback (more than 128 events, or no `futex_waitv`) sleeps at most before it
/// looks at every event again.
pub const FALLBACK_SLICE: Duration = Duration::from_millis(1);

/// Whether `futex_waitv` failed as unsupported once in this process (then never tried again).
#[cfg(not(loom))]
static WAITV_UNSUPPORTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// How a [`WaitSet::wait_any`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetWait {
    /// The condition held when re-checked after registering: nothing slept.
    Ready,
    /// Slept, and woke: an event was notified, a word moved, the time limit passed, a signal
    /// came, or the fallback's slice ended. The caller looks at its sources and its deadline.
    Woke,
}

/// Scratch for waiting on many events from one thread: the values read and the kernel's wait
/// vector, kept between calls so a wait allocates nothing once it has seen its largest set.
#[derive(Debug)]
pub struct WaitSet {
    seen: Vec<u32>,
    #[cfg(not(loom))]
    waitv: Vec<FutexWaitv>,
    /// `false`: always the fallback (tests, comparisons).
    use_waitv: bool,
}

impl Default for WaitSet {
    fn default() -> Self {
        Self::new()
    }
}

/// Withdraws the registrations of a wait set's events when dropped (also on a panic in `cond`).
struct Registered<'a, E, F: Fn(&E) -> &Event> {
    events: &'a [E],
    event: &'a F,
}

impl<E, F: Fn(&E) -> &Event> Drop for Registered<'_, E, F> {
    fn drop(&mut self) {
        for e in self.events {
            (self.event)(e).remove_sleeper();
        }
    }
}

impl WaitSet {
    /// A wait set that uses `futex_waitv` where it can.
    pub fn new() -> Self {
        Self {
            seen: Vec::new(),
            #[cfg(not(loom))]
            waitv: Vec::with_capacity(crate::sys::FUTEX_WAITV_MAX),
            use_waitv: true,
        }
    }

    /// A wait set that never uses `futex_waitv` (always the 1 ms fallback): what a kernel
    /// before 5.16 gets, for tests and comparisons.
    pub fn without_waitv() -> Self {
        Self {
            use_waitv: false,
            ..Self::new()
        }
    }

    /// Whether waits on up to 128 events use `futex_waitv` (not disabled here, and not found
    /// unsupported by this kernel).
    pub fn uses_waitv(&self) -> bool {
        #[cfg(not(loom))]
        {
            // ORDERING: Relaxed; a process-wide flag, set once, read as a hint (a stale read
            // costs one more refused syscall). Miri has no `futex_waitv`: the fallback there.
            !cfg!(miri)
                && self.use_waitv
                && !WAITV_UNSUPPORTED.load(std::sync::atomic::Ordering::Relaxed)
        }
        #[cfg(loom)]
        {
            self.use_waitv
        }
    }

    /// Registers as a sleeper on every event of `events` (`event` maps an item to its event),
    /// makes one SeqCst fence, re-checks `cond`, and unless it holds sleeps until one of the
    /// events is notified or `until` passes (see the module docs for the protocol and the
    /// fallback). Every registration is withdrawn before it returns.
    ///
    /// `cond` must read what the notifiers publish (with Acquire) for every event of the set.
    /// A caller loops: look at its sources and its deadline, then `wait_any` again. With an
    /// empty set it only sleeps until `until` (at most [`FALLBACK_SLICE`] without one).
    pub fn wait_any<E, F: Fn(&E) -> &Event>(
        &mut self,
        events: &[E],
        event: F,
        until: Option<&Deadline>,
        mut cond: impl FnMut() -> bool,
    ) -> SetWait {
        // Each `seen` before its registration (as `Event::park`): a notify after the
        // registration moves the word past it.
        self.seen.clear();
        self.seen.extend(events.iter().map(|e| event(e).seq()));
        for e in events {
            event(e).add_sleeper();
        }
        let _registered = Registered {
            events,
            event: &event,
        };
        if WAITV_FENCE {
            // ORDERING: F_WAITV, SeqCst fence; pairs with every event's F_NOTIFY (module docs):
            // all the increments above are ordered before the re-check below.
            fence(Ordering::SeqCst);
        }
        if cond() {
            return SetWait::Ready;
        }
        // SYNC POINT: sleep unless some event's `seq` moved since `seen`.
        self.sleep(events, &event, until);
        SetWait::Woke
    }

    #[cfg(not(loom))]
    fn sleep<E, F: Fn(&E) -> &Event>(&mut self, events: &[E], event: &F, until: Option<&Deadline>) {
        if events.len() <= crate::sys::FUTEX_WAITV_MAX && self.uses_waitv() && !events.is_empty() {
            self.waitv.clear();
            self.waitv
                .extend(events.iter().zip(&self.seen).map(|(e, &seen)| FutexWaitv {
                    val: u64::from(seen),
                    uaddr: event(e).seq_word().as_ptr() as u64,
                    flags: FUTEX2_SIZE_U32,
                    reserved: 0,
                }));
            match futex_waitv(&self.waitv, until) {
                Waitv::Returned => return,
                Waitv::Unsupported => {
                    // ORDERING: Relaxed; see `uses_waitv`.
                    WAITV_UNSUPPORTED.store(true, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }
        let slice = Deadline::after(FALLBACK_SLICE);
        let until = until.map_or(slice, |d| (*d).min(slice));
        match events.first() {
            Some(first) => futex_wait(event(first).seq_word(), self.seen[0], Some(&until)),
            None => std::thread::sleep(until.remaining()),
        }
    }

    /// The loom model: `futex_waitv` over every word (there is no deadline and no fallback in
    /// the model).
    #[cfg(loom)]
    fn sleep<E, F: Fn(&E) -> &Event>(&mut self, events: &[E], event: &F, _: Option<&Deadline>) {
        let words: Vec<_> = events
            .iter()
            .zip(&self.seen)
            .map(|(e, &seen)| (event(e).seq_word(), seen))
            .collect();
        crate::sync::futex_waitv(&words);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::{
        sync::atomic::{AtomicU32, Ordering},
        time::Instant,
    };

    use super::*;
    use crate::{EVENT_SIZE, event::tests::Mem};

    fn events(n: usize) -> (Vec<Mem>, Vec<Event>) {
        let mems: Vec<Mem> = (0..n).map(|_| Mem::new()).collect();
        // SAFETY: the memory outlives the handles (returned together, dropped in order).
        let evs = mems
            .iter()
            .map(|m| unsafe {
                Event::init(m.0, EVENT_SIZE).unwrap();
                Event::attach(m.0, EVENT_SIZE).unwrap()
            })
            .collect();
        (mems, evs)
    }

    /// A notify of any one event of the set wakes the waiter, with futex_waitv and with the
    /// fallback, for sets within and beyond 128; every registration is withdrawn after.
    #[test]
    fn a_notify_of_any_event_wakes_the_set() {
        let sets: &[(usize, bool)] = if cfg!(miri) {
            &[(1, true), (3, false)]
        } else {
            &[(1, true), (5, true), (128, true), (5, false), (200, true)]
        };
        for &(n, waitv) in sets {
            let (_mems, evs) = events(n);
            for k in [0, n / 2, n - 1] {
                let data = AtomicU32::new(0);
                let mut ws = if waitv {
                    WaitSet::new()
                } else {
                    WaitSet::without_waitv()
                };
                std::thread::scope(|s| {
                    s.spawn(|| {
                        while evs[k].sleepers() == 0 {
                            std::thread::yield_now();
                        }
                        data.store(1, Ordering::Release);
                        evs[k].notify();
                    });
                    let t0 = Instant::now();
                    let deadline = Deadline::after(Duration::from_secs(10));
                    while data.load(Ordering::Acquire) == 0 {
                        ws.wait_any(
                            &evs,
                            |e| e,
                            Some(&deadline),
                            || data.load(Ordering::Acquire) != 0,
                        );
                        assert!(!deadline.is_past(), "n {n} k {k}: never woken");
                    }
                    assert!(t0.elapsed() < Duration::from_secs(5));
                });
                // Within 128 on a kernel that has it, the wait was futex_waitv's, not the
                // fallback's (which would still pass the rest of this test, 1 ms late).
                if waitv && n <= 128 && !cfg!(miri) && kernel_has_waitv() {
                    assert!(ws.uses_waitv(), "futex_waitv refused on this kernel");
                }
                assert!(
                    evs.iter().all(|e| e.sleepers() == 0),
                    "n {n}: registration left"
                );
            }
        }
    }

    /// Linux 5.16 or later (from `uname`).
    fn kernel_has_waitv() -> bool {
        // SAFETY: `uname` fills a zeroed utsname.
        let mut u: libc::utsname = unsafe { core::mem::zeroed() };
        // SAFETY: a valid, writable utsname.
        if unsafe { libc::uname(&raw mut u) } != 0 {
            return false;
        }
        // SAFETY: the kernel writes a NUL-terminated release string.
        let rel = unsafe { std::ffi::CStr::from_ptr(u.release.as_ptr()) }.to_string_lossy();
        let mut it = rel
            .split(|c: char| !c.is_ascii_digit())
            .map(|p| p.parse::<u32>().unwrap_or(0));
        let (major, minor) = (it.next().unwrap_or(0), it.next().unwrap_or(0));
        (major, minor) >= (5, 16)
    }

    /// The time limit ends a wait nobody notifies, and the condition holding skips the sleep.
    #[test]
    fn the_limit_ends_the_wait_and_a_true_condition_skips_it() {
        let (_mems, evs) = events(3);
        let mut ws = WaitSet::new();
        let d = Deadline::after(Duration::from_millis(30));
        let t0 = Instant::now();
        while !d.is_past() {
            assert_eq!(ws.wait_any(&evs, |e| e, Some(&d), || false), SetWait::Woke);
            assert!(t0.elapsed() < Duration::from_secs(2));
        }
        assert!(t0.elapsed() >= Duration::from_millis(30));
        assert_eq!(ws.wait_any(&evs, |e| e, None, || true), SetWait::Ready);
        assert!(evs.iter().all(|e| e.sleepers() == 0));
        // An empty set sleeps until the limit (a slice at most without one).
        let d = Deadline::after(Duration::from_millis(5));
        assert_eq!(
            ws.wait_any(&[] as &[Event], |e| e, Some(&d), || false),
            SetWait::Woke
        );
    }

    /// A condition that panics leaves no registration behind (notifiers would pay a syscall
    /// for a waiter that is gone).
    #[test]
    fn a_panicking_condition_withdraws_every_registration() {
        let (_mems, evs) = events(4);
        let mut ws = WaitSet::new();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            ws.wait_any(&evs, |e| e, None, || panic!("boom"))
        }));
        assert!(r.is_err());
        assert!(evs.iter().all(|e| e.sleepers() == 0));
        assert!(!evs[0].notify());
    }

    /// Once it has seen its largest set, a wait allocates nothing (the vectors are kept).
    #[test]
    fn waits_reuse_their_scratch() {
        let (_mems, evs) = events(if cfg!(miri) { 4 } else { 64 });
        let mut ws = WaitSet::new();
        ws.wait_any(&evs, |e| e, None, || true);
        let (p1, p2) = (ws.seen.as_ptr(), ws.waitv.capacity());
        let d = Deadline::after(Duration::from_millis(1));
        for _ in 0..10 {
            ws.wait_any(&evs, |e| e, Some(&d), || false);
        }
        assert_eq!((ws.seen.as_ptr(), ws.waitv.capacity()), (p1, p2));
    }
}
