//! The event (doorbell): a sequence word and a sleeper count in shared memory.
//!
//! ```text
//! offset 0   u32 magic  b"SHWK"
//! offset 4   u32 seq    bumped by a notify that found a sleeper; the futex word
//! offset 8   u32 sleepers  waiters between registering and leaving the futex
//! offset 12  u32 reserved (0)
//! ...        padding to EVENT_SIZE (128 bytes: the event has its cache lines to itself)
//! ```
//!
//! The caller owns the condition (usually "the ring is not empty"); the event only makes
//! sure a waiter that parks is woken after the condition becomes true. It is the Dekker
//! pattern:
//!
//! ```text
//! waiter                                   notifier
//! sleepers += 1                            (publish data: the caller's Release store)
//! fence(SeqCst)            <-- F_WAIT      fence(SeqCst)             <-- F_NOTIFY
//! if cond() { leave }                      if sleepers != 0 { seq += 1; FUTEX_WAKE(seq) }
//! FUTEX_WAIT(seq, seen)
//! ```
//!
//! Why both fences: without `F_NOTIFY` the notifier's load of `sleepers` may be satisfied
//! before its data store is visible (store buffering): it reads 0 and skips the wake, while
//! the waiter, registered, re-checks and does not yet see the data — and sleeps with data
//! pending. Without `F_WAIT` the waiter's re-check may read the old data before its
//! `sleepers` increment is visible: same outcome from the other side. With both SeqCst
//! fences, one of the two must see the other's store: either the notifier sees the sleeper
//! and wakes (the waiter's FUTEX_WAIT on `seq` then returns at once if the bump came first,
//! because the kernel compares the word atomically with queueing), or the waiter's re-check
//! sees the data and never sleeps. `notify` with nobody asleep is the fence and one load:
//! no syscall.

use core::ptr::NonNull;
use std::time::Duration;

use crate::{
    Deadline,
    sync::{
        AtomicBool, AtomicU32, NOTIFY_FENCE, Ordering, REGISTER_FENCE, WAIT_FENCE, fence,
        futex_wait, futex_wake_all, spin_hint, yield_now,
    },
};

/// First word of every event: `b"SHWK"`.
pub const EVENT_MAGIC: u32 = u32::from_le_bytes(*b"SHWK");
/// Bytes an event occupies in a region (it keeps its cache lines to itself).
pub const EVENT_SIZE: usize = 128;

#[repr(C)]
struct RawEvent {
    magic: AtomicU32,
    seq: AtomicU32,
    sleepers: AtomicU32,
    reserved: AtomicU32,
}

/// Why an event could not be initialised or attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventError {
    /// The region is smaller than [`EVENT_SIZE`].
    RegionTooSmall {
        /// Bytes given.
        given: usize,
    },
    /// The region is not 4-byte aligned (a futex word must be).
    Misaligned,
    /// The region does not hold an event (bad magic): wrong region, or not initialised.
    NotAnEvent,
}

impl core::fmt::Display for EventError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::RegionTooSmall { given } => write!(
                f,
                "region of {given} bytes is too small for an event ({EVENT_SIZE} needed)"
            ),
            Self::Misaligned => f.write_str("event region is not 4-byte aligned"),
            Self::NotAnEvent => f.write_str(
                "region does not hold a shmlane event (bad magic); was it initialised with Event::init?",
            ),
        }
    }
}

impl std::error::Error for EventError {}

/// How a waiter waits: from never making a syscall to parking at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitStrategy {
    /// Poll the condition in a tight loop with a spin hint. Never a syscall, never sleeps: for
    /// the audio callback and a trading hot thread that owns its core.
    BusySpin,
    /// Spin with exponential backoff, then yield the CPU between polls (crossbeam
    /// `Backoff::snooze` semantics): the condition is polled after 1, 2, 4, ... 64 spin hints
    /// (7 polls, 127 hints, well under a microsecond), then after a `sched_yield` each time.
    /// Never parks.
    SpinYield,
    /// Spin `spins` times, yield `yields` times, then park on the futex. Parking costs ~33 µs
    /// to wake on this project's VM (see `docs/benchmarks.md`), so a short spin first pays.
    SpinThenPark {
        /// Polls with a spin hint before yielding.
        spins: u32,
        /// Polls with a `sched_yield` before parking.
        yields: u32,
    },
    /// Park on the futex at once.
    Park,
}

impl Default for WaitStrategy {
    /// `SpinThenPark { spins: 2000, yields: 10 }`: a few microseconds of polling, then sleep.
    fn default() -> Self {
        Self::SpinThenPark {
            spins: 2000,
            yields: 10,
        }
    }
}

/// How a wait ended (the deadline contract is in [`Event::wait`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitOutcome {
    /// The condition held, and the deadline (if any) had not passed when it was seen to hold.
    Ready,
    /// The deadline passed, whether or not the condition held at that moment: the caller
    /// stops retrying and reports its timeout.
    TimedOut,
}

/// What a waiter does between two looks at its condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pause {
    /// This many spin hints (`pause` on x86).
    Spin(u32),
    /// One `sched_yield`.
    Yield,
    /// Park on the futex from now on.
    Park,
}

/// Exponential spin steps of `SpinYield`: 2^0 .. 2^`SPIN_LIMIT` hints (crossbeam's value).
const SPIN_LIMIT: u32 = 6;
/// In a spin phase the deadline is read once per this many spin hints while the condition is
/// false (a vDSO clock read costs about as much as a poll); always when it is true.
const CLOCK_EVERY: u32 = 256;

/// The pauses a strategy makes, in order: its whole schedule in one place.
#[derive(Debug)]
struct Pauses {
    strategy: WaitStrategy,
    /// Pauses made so far (saturating).
    turn: u64,
}

impl Pauses {
    fn new(strategy: WaitStrategy) -> Self {
        Self { strategy, turn: 0 }
    }

    fn next(&mut self) -> Pause {
        let turn = self.turn;
        self.turn = self.turn.saturating_add(1);
        match self.strategy {
            WaitStrategy::BusySpin => Pause::Spin(1),
            WaitStrategy::SpinYield if turn <= u64::from(SPIN_LIMIT) => Pause::Spin(1 << turn),
            WaitStrategy::SpinYield => Pause::Yield,
            WaitStrategy::SpinThenPark { spins, .. } if turn < u64::from(spins) => Pause::Spin(1),
            WaitStrategy::SpinThenPark { spins, yields }
                if turn < u64::from(spins) + u64::from(yields) =>
            {
                Pause::Yield
            }
            WaitStrategy::SpinThenPark { .. } | WaitStrategy::Park => Pause::Park,
        }
    }
}

/// A handle to an event in a shared region. `Send` and `Sync`: any number of threads and
/// processes may notify and wait on the same event.
#[derive(Debug)]
pub struct Event {
    raw: NonNull<RawEvent>,
}

// SAFETY: the event is only accessed through atomics and the futex syscall; the memory outlives
// the handle (constructor contract).
unsafe impl Send for Event {}
// SAFETY: as above; every method takes `&self` and is safe to call concurrently.
unsafe impl Sync for Event {}

impl Event {
    /// Writes a fresh event into `ptr`.
    ///
    /// # Safety
    /// `ptr` must be valid for writes of `len` bytes, and nobody may use the event while it is
    /// initialised.
    pub unsafe fn init(ptr: *mut u8, len: usize) -> Result<(), EventError> {
        check(ptr, len)?;
        // SAFETY: in bounds and aligned (checked); exclusive during init (caller).
        unsafe {
            ptr.cast::<RawEvent>().write(RawEvent {
                magic: AtomicU32::new(EVENT_MAGIC),
                seq: AtomicU32::new(0),
                sleepers: AtomicU32::new(0),
                reserved: AtomicU32::new(0),
            });
        }
        Ok(())
    }

    /// Attaches to an event written by [`init`](Self::init).
    ///
    /// # Safety
    /// `ptr` must be valid for reads and writes of `len` bytes for as long as the handle
    /// lives, and the bytes accessed by others only through event handles.
    pub unsafe fn attach(ptr: *mut u8, len: usize) -> Result<Self, EventError> {
        check(ptr, len)?;
        let raw = NonNull::new(ptr.cast::<RawEvent>()).ok_or(EventError::Misaligned)?;
        // SAFETY: in bounds and aligned (checked); atomics only.
        let magic = unsafe { raw.as_ref() }.magic.load(Ordering::Relaxed);
        // ORDERING: the Relaxed load above: written once before the region was handed over
        // (the segment's init_state Release/Acquire orders it).
        if magic != EVENT_MAGIC {
            return Err(EventError::NotAnEvent);
        }
        Ok(Self { raw })
    }

    fn raw(&self) -> &RawEvent {
        // SAFETY: valid for the handle's lifetime (constructor contract); atomics only.
        unsafe { self.raw.as_ref() }
    }

    /// Wakes every parked waiter, after the caller made its condition true (e.g. published
    /// a message with a Release store). With nobody parked this is one fence and one load: no
    /// syscall. Returns whether it issued a wake.
    #[inline]
    pub fn notify(&self) -> bool {
        self.notify_then(|| {})
    }

    /// `notify`, running `also` after the futex wake when there was a sleeper (the pollable
    /// bridge writes its eventfd there).
    #[inline]
    pub(crate) fn notify_then(&self, also: impl FnOnce()) -> bool {
        let e = self.raw();
        if NOTIFY_FENCE {
            // ORDERING: F_NOTIFY, SeqCst fence; pairs with the waiter's F_WAIT (see the module
            // docs): the caller's data store is ordered before the sleeper load below.
            fence(Ordering::SeqCst);
        }
        // ORDERING: Relaxed; ordered by F_NOTIFY against the waiter's increment + F_WAIT.
        if e.sleepers.load(Ordering::Relaxed) == 0 {
            return false;
        }
        // ORDERING: Release; pairs with the waiter's Acquire load of `seq`; the futex compare
        // in the kernel sees the bump, so a waiter that read the old value does not sleep.
        e.seq.fetch_add(1, Ordering::Release);
        futex_wake_all(&e.seq);
        also();
        true
    }

    /// Registers as a sleeper that waits elsewhere (an event loop on an eventfd), unless
    /// `registered` says this registrant already is: the same increment and F_WAIT fence as a
    /// parking waiter, then the re-check. Returns whether `cond` already holds; then the
    /// registration is withdrawn again (`registered` is false on return).
    ///
    /// `registered` is the registrant's own (process-local) record of whether it holds one
    /// count in `sleepers`: set exactly when the count was incremented for it, cleared exactly
    /// when it was decremented, so the shared count can never be taken below the number of
    /// registrations really held (finding 11 of issue 15: an unmatched decrement wrapped it to
    /// `u32::MAX`, and every notify everywhere then made a syscall).
    ///
    /// Public for waiters that wait on the event's sequence word elsewhere (shmlane's receiver
    /// watcher thread: read [`seq`](Self::seq) first, then `register`, then
    /// [`wait_seq`](Self::wait_seq) on the value read, as [`wait`](Self::wait) parks).
    pub fn register(&self, registered: &AtomicBool, mut cond: impl FnMut() -> bool) -> bool {
        let e = self.raw();
        // ORDERING: Relaxed; the flag is local to one handle and only says whether this
        // handle holds a count; the count's own ordering is F_WAIT's.
        if !registered.swap(true, Ordering::Relaxed) {
            // ORDERING: Relaxed; ordered before the re-check by F_WAIT.
            e.sleepers.fetch_add(1, Ordering::Relaxed);
        }
        if REGISTER_FENCE {
            // ORDERING: F_WAIT, SeqCst fence; pairs with notify's F_NOTIFY (module docs).
            fence(Ordering::SeqCst);
        }
        if cond() {
            self.unregister(registered);
            return true;
        }
        false
    }

    /// Withdraws the registration `registered` records, if there is one; returns whether there
    /// was.
    pub fn unregister(&self, registered: &AtomicBool) -> bool {
        // ORDERING: Relaxed; as in `register`: each true -> false swap matches exactly one
        // false -> true swap, hence one increment.
        if !registered.swap(false, Ordering::Relaxed) {
            return false;
        }
        // ORDERING: Relaxed; as the decrement in `park`.
        self.raw().sleepers.fetch_sub(1, Ordering::Relaxed);
        true
    }

    /// Waits until `cond()` is true or `deadline` passes, as `strategy` says.
    ///
    /// `cond` is called repeatedly; it must read the data the notifier publishes (with
    /// Acquire) and have no side effects that matter.
    ///
    /// # The deadline contract
    /// - [`Ready`](WaitOutcome::Ready) only if `cond()` returned true *and* the deadline,
    ///   read after that, had not passed: a wait never reports `Ready` past its deadline.
    /// - [`TimedOut`](WaitOutcome::TimedOut) as soon as the deadline is seen to have passed,
    ///   whether or not `cond()` holds then (even on the first look, with a deadline already
    ///   past).
    /// - The deadline is read on every turn: before each look at the condition (in a spin
    ///   phase once per 256 spin hints, a few microseconds, because a clock read costs about
    ///   as much as a poll), and after every look that found it true. A park never outlasts
    ///   the deadline (the futex wait takes it as its absolute timeout).
    ///
    /// So a caller whose condition is only approximate (true while its operation still
    /// fails, e.g. because shared state is damaged) can loop "try the operation; on failure
    /// `wait`; on `TimedOut` return its timeout error" and is sure to leave by the deadline,
    /// plus at most one operation and one `cond()`:
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use shmlane_wake::{Deadline, Event, WaitOutcome, WaitStrategy, EVENT_SIZE};
    /// # #[repr(align(128))] struct Mem([u8; EVENT_SIZE]);
    /// # let mut mem = Box::new(Mem([0; EVENT_SIZE]));
    /// # let ptr = mem.0.as_mut_ptr();
    /// # // SAFETY: `mem` outlives the handle.
    /// # let ev = unsafe { Event::init(ptr, EVENT_SIZE).unwrap(); Event::attach(ptr, EVENT_SIZE).unwrap() };
    /// let try_op = || Err::<(), ()>(()); // an operation that keeps failing
    /// let deadline = Deadline::after(Duration::from_millis(20));
    /// let result = loop {
    ///     if let Ok(v) = try_op() {
    ///         break Ok(v);
    ///     }
    ///     // The condition claims readiness every time: the deadline still ends the loop.
    ///     if ev.wait(&WaitStrategy::default(), Some(deadline), || true) == WaitOutcome::TimedOut {
    ///         break Err("timed out");
    ///     }
    /// };
    /// assert_eq!(result, Err("timed out"));
    /// assert!(deadline.is_past());
    /// ```
    ///
    /// With no deadline (`None`) the wait only ends on `Ready`: such a loop spins as long as
    /// the condition is true and the operation fails, so a caller without a deadline needs a
    /// condition that is true only when its operation can make progress.
    pub fn wait(
        &self,
        strategy: &WaitStrategy,
        deadline: Option<Deadline>,
        cond: impl FnMut() -> bool,
    ) -> WaitOutcome {
        self.wait_inner(strategy, deadline, None, cond)
    }

    /// As [`wait`](Self::wait) (and under the same deadline contract), but a park lasts at
    /// most `every`, so `cond` is re-evaluated at least that often even if nobody notifies:
    /// the way to wait on "data ready or peer gone" at once, when the peer's death cannot
    /// notify (`cond` then also checks the peer's liveness).
    pub fn wait_checking(
        &self,
        strategy: &WaitStrategy,
        deadline: Option<Deadline>,
        every: Duration,
        cond: impl FnMut() -> bool,
    ) -> WaitOutcome {
        self.wait_inner(strategy, deadline, Some(every), cond)
    }

    fn wait_inner(
        &self,
        strategy: &WaitStrategy,
        deadline: Option<Deadline>,
        every: Option<Duration>,
        mut cond: impl FnMut() -> bool,
    ) -> WaitOutcome {
        let mut pauses = Pauses::new(*strategy);
        // Spin hints since the deadline was last read; starts full so the first turn reads it.
        let mut unchecked = CLOCK_EVERY;
        loop {
            // The deadline before the condition. The clock is read through the vDSO: no
            // syscall.
            if unchecked >= CLOCK_EVERY {
                unchecked = 0;
                if past(deadline.as_ref()) {
                    return WaitOutcome::TimedOut;
                }
            }
            if cond() {
                // And after it: a condition that holds does not outrun the deadline.
                return ready_unless_past(deadline.as_ref());
            }
            match pauses.next() {
                Pause::Spin(n) => {
                    for _ in 0..n {
                        spin_hint();
                    }
                    unchecked = unchecked.saturating_add(n);
                }
                Pause::Yield => {
                    yield_now();
                    unchecked = CLOCK_EVERY;
                }
                Pause::Park => return self.park(deadline, every, cond),
            }
        }
    }

    fn park(
        &self,
        deadline: Option<Deadline>,
        every: Option<Duration>,
        mut cond: impl FnMut() -> bool,
    ) -> WaitOutcome {
        let e = self.raw();
        loop {
            if past(deadline.as_ref()) {
                return WaitOutcome::TimedOut;
            }
            if cond() {
                return ready_unless_past(deadline.as_ref());
            }
            // ORDERING: Acquire; pairs with notify's Release bump: a bump we see happened
            // after the data it announces.
            let seen = e.seq.load(Ordering::Acquire);
            // ORDERING: Relaxed; ordered before the re-check by F_WAIT.
            e.sleepers.fetch_add(1, Ordering::Relaxed);
            if WAIT_FENCE {
                // ORDERING: F_WAIT, SeqCst fence; pairs with notify's F_NOTIFY (module docs).
                fence(Ordering::SeqCst);
            }
            let ready = cond();
            if !ready {
                // SYNC POINT: sleep unless `seq` moved since `seen` (the kernel compares
                // and queues atomically with respect to FUTEX_WAKE).
                let until = match (deadline, every) {
                    (Some(d), Some(ev)) => Some(d.min(Deadline::after(ev))),
                    (Some(d), None) => Some(d),
                    (None, Some(ev)) => Some(Deadline::after(ev)),
                    (None, None) => None,
                };
                futex_wait(&e.seq, seen, until.as_ref());
            }
            // ORDERING: Relaxed; only notify's skip decision reads it, a late decrement
            // costs at most one needless FUTEX_WAKE.
            e.sleepers.fetch_sub(1, Ordering::Relaxed);
            if ready {
                return ready_unless_past(deadline.as_ref());
            }
        }
    }

    /// The sequence word, which every notify that finds a registered sleeper bumps. A waiter
    /// reads it *before* it registers ([`register`](Self::register)): a notify after the
    /// registration then moves it past the value read, so [`wait_seq`](Self::wait_seq) on that
    /// value returns at once.
    pub fn seq(&self) -> u32 {
        // ORDERING: Acquire; pairs with notify's Release bump, as in `park`.
        self.raw().seq.load(Ordering::Acquire)
    }

    /// Sleeps while the sequence word still holds `seen`, at most until `deadline` (a bounded
    /// futex wait; also returns when woken spuriously or by a signal: the caller re-checks).
    pub fn wait_seq(&self, seen: u32, deadline: &Deadline) {
        // SYNC POINT: the kernel compares `seq` with `seen` and queues atomically with respect
        // to notify's FUTEX_WAKE, as in `park`.
        futex_wait(&self.raw().seq, seen, Some(deadline));
    }

    /// The sequence word itself, for a wait on several events at once (`WaitSet`).
    pub(crate) fn seq_word(&self) -> &AtomicU32 {
        &self.raw().seq
    }

    /// The sequence word's address, for a futex wait queued elsewhere (an io_uring
    /// `FUTEX_WAIT` of an async task): read [`seq`](Self::seq) first, then
    /// [`register`](Self::register), then queue the wait for the value read, as
    /// [`wait_seq`](Self::wait_seq) does. Valid as long as the event's memory.
    #[cfg(not(loom))]
    pub fn seq_word_ptr(&self) -> *const u32 {
        self.raw().seq.as_ptr().cast_const()
    }

    /// One more sleeper, without the fence: `WaitSet` registers on every event of a set, then
    /// makes one F_WAIT fence for all of them.
    pub(crate) fn add_sleeper(&self) {
        // ORDERING: Relaxed; ordered before the set's re-check by its F_WAITV fence, which pairs
        // with each notifier's F_NOTIFY as F_WAIT does.
        self.raw().sleepers.fetch_add(1, Ordering::Relaxed);
    }

    /// Withdraws a sleeper `add_sleeper` counted.
    pub(crate) fn remove_sleeper(&self) {
        // ORDERING: Relaxed; as the decrement in `park`.
        self.raw().sleepers.fetch_sub(1, Ordering::Relaxed);
    }

    /// Waiters currently registered (parked or about to park). A waiter that died while
    /// parked stays counted, which costs notifiers a needless FUTEX_WAKE, nothing else.
    pub fn sleepers(&self) -> u32 {
        // ORDERING: Relaxed; informational.
        self.raw().sleepers.load(Ordering::Relaxed)
    }
}

/// Whether `deadline` exists and has passed.
fn past(deadline: Option<&Deadline>) -> bool {
    deadline.is_some_and(Deadline::is_past)
}

/// The outcome of a look that found the condition true: `Ready` unless the deadline passed.
fn ready_unless_past(deadline: Option<&Deadline>) -> WaitOutcome {
    if past(deadline) {
        WaitOutcome::TimedOut
    } else {
        WaitOutcome::Ready
    }
}

fn check(ptr: *mut u8, len: usize) -> Result<(), EventError> {
    if (ptr as usize) % align_of::<RawEvent>() != 0 || ptr.is_null() {
        return Err(EventError::Misaligned);
    }
    if len < EVENT_SIZE.max(size_of::<RawEvent>()) {
        return Err(EventError::RegionTooSmall { given: len });
    }
    Ok(())
}

#[cfg(all(test, not(loom)))]
pub(crate) mod tests {
    use std::{
        sync::atomic::{AtomicBool, AtomicU64},
        time::Instant,
    };

    use super::*;

    /// Heap memory for an event, held as a raw pointer (a `Box` moved around would
    /// invalidate pointers derived from it under Stacked Borrows).
    pub(crate) struct Mem(pub(crate) *mut u8, std::alloc::Layout);

    impl Mem {
        pub(crate) fn new() -> Self {
            let layout = std::alloc::Layout::from_size_align(EVENT_SIZE, 128).unwrap();
            // SAFETY: non-zero size.
            Self(unsafe { std::alloc::alloc_zeroed(layout) }, layout)
        }
    }

    impl Drop for Mem {
        fn drop(&mut self) {
            // SAFETY: allocated in `new` with this layout.
            unsafe { std::alloc::dealloc(self.0, self.1) };
        }
    }

    fn event() -> (Mem, Event) {
        let mem = Mem::new();
        // SAFETY: the memory outlives the handle in every test (both live to the end).
        let ev = unsafe {
            Event::init(mem.0, EVENT_SIZE).unwrap();
            Event::attach(mem.0, EVENT_SIZE).unwrap()
        };
        (mem, ev)
    }

    #[test]
    fn attach_checks_size_alignment_and_magic() {
        let mem = Mem::new();
        let ptr = mem.0;
        // SAFETY: in-bounds pointers into `mem`, which outlives every handle.
        unsafe {
            assert_eq!(
                Event::attach(ptr, EVENT_SIZE).unwrap_err(),
                EventError::NotAnEvent
            );
            assert_eq!(
                Event::init(ptr, 64).unwrap_err(),
                EventError::RegionTooSmall { given: 64 }
            );
            assert_eq!(
                Event::init(ptr.add(1), EVENT_SIZE - 1).unwrap_err(),
                EventError::Misaligned
            );
        }
    }

    #[test]
    fn notify_without_sleepers_issues_no_wake() {
        let (_m, ev) = event();
        assert!(!ev.notify());
        assert_eq!(ev.sleepers(), 0);
    }

    #[test]
    fn parked_thread_is_woken() {
        let (_m, ev) = event();
        let flag = AtomicBool::new(false);
        std::thread::scope(|s| {
            let waiter =
                s.spawn(|| ev.wait(&WaitStrategy::Park, None, || flag.load(Ordering::Acquire)));
            // Wait until the waiter is registered, so the notify must wake it.
            while ev.sleepers() == 0 {
                std::thread::yield_now();
            }
            flag.store(true, Ordering::Release);
            assert!(ev.notify());
            assert_eq!(waiter.join().unwrap(), WaitOutcome::Ready);
        });
        assert_eq!(ev.sleepers(), 0);
    }

    #[test]
    fn deadline_returns_without_the_condition() {
        let (_m, ev) = event();
        for strategy in [
            WaitStrategy::Park,
            WaitStrategy::BusySpin,
            WaitStrategy::SpinYield,
            WaitStrategy::default(),
        ] {
            let d = Deadline::after(Duration::from_millis(20));
            assert_eq!(ev.wait(&strategy, Some(d), || false), WaitOutcome::TimedOut);
            assert!(d.is_past(), "{strategy:?} returned before its deadline");
        }
        assert_eq!(ev.sleepers(), 0);
    }

    const STRATEGIES: [WaitStrategy; 5] = [
        WaitStrategy::Park,
        WaitStrategy::BusySpin,
        WaitStrategy::SpinYield,
        WaitStrategy::SpinThenPark {
            spins: 2000,
            yields: 10,
        },
        WaitStrategy::SpinThenPark {
            spins: 3,
            yields: 0,
        },
    ];

    /// Part of finding 2 of issue 15: `wait` returned `Ready` before looking at the deadline
    /// whenever the condition held. A condition that is always true (an approximate length
    /// over damaged shared state) with a deadline already past must give `TimedOut`, with
    /// `wait` and with `wait_checking`, for every strategy.
    #[test]
    fn a_true_condition_past_the_deadline_times_out() {
        let (_m, ev) = event();
        for strategy in STRATEGIES {
            let d = Deadline::after(Duration::ZERO);
            assert_eq!(
                ev.wait(&strategy, Some(d), || true),
                WaitOutcome::TimedOut,
                "{strategy:?}: Ready past the deadline"
            );
            let every = Duration::from_millis(1);
            assert_eq!(
                ev.wait_checking(&strategy, Some(d), every, || true),
                WaitOutcome::TimedOut,
                "{strategy:?}: wait_checking Ready past the deadline"
            );
            // The deadline is read before the condition: past it, the condition is not even
            // looked at.
            let mut looks = 0;
            let outcome = ev.wait(&strategy, Some(d), || {
                looks += 1;
                true
            });
            assert_eq!((outcome, looks), (WaitOutcome::TimedOut, 0), "{strategy:?}");
            // Without a deadline, or with one ahead, a true condition is Ready at once.
            assert_eq!(ev.wait(&strategy, None, || true), WaitOutcome::Ready);
            let ahead = Deadline::after(Duration::from_secs(60));
            assert_eq!(ev.wait(&strategy, Some(ahead), || true), WaitOutcome::Ready);
        }
        assert_eq!(ev.sleepers(), 0);
    }

    /// The deadline is read again after a look that found the condition true: a condition
    /// that takes until past the deadline to say "true" gives `TimedOut`. It says false
    /// `k` times first, so that every place that looks (the spin/yield loop, the top of the
    /// park loop, the re-check after registering) is the one that sees it turn true.
    #[test]
    fn a_condition_that_turns_true_after_the_deadline_times_out() {
        let (_m, ev) = event();
        for strategy in STRATEGIES {
            for k in 0..4 {
                let d = Deadline::after(Duration::from_millis(5));
                let mut looks = 0;
                let slow_true = || {
                    looks += 1;
                    if looks <= k {
                        return false;
                    }
                    while !d.is_past() {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    true
                };
                assert_eq!(
                    ev.wait(&strategy, Some(d), slow_true),
                    WaitOutcome::TimedOut,
                    "{strategy:?}, true at look {}",
                    k + 1
                );
            }
        }
        assert_eq!(ev.sleepers(), 0);
    }

    /// The caller's side of the contract: "try the operation, on failure wait" with an
    /// operation that always fails and a condition that is always true returns by the
    /// deadline (the review saw a 300 ms deadline still spinning after 3 s). A loop still
    /// running 2 s after its 30 ms deadline fails the test instead of hanging it.
    #[test]
    fn a_retry_loop_with_an_always_true_condition_leaves_by_the_deadline() {
        let (_m, ev) = event();
        let timeout = Duration::from_millis(30);
        for strategy in STRATEGIES {
            for checking in [false, true] {
                let t0 = Instant::now();
                let d = Deadline::after(timeout);
                let mut tries = 0u64;
                loop {
                    tries += 1; // the operation: always fails
                    let outcome = if checking {
                        ev.wait_checking(&strategy, Some(d), Duration::from_millis(1), || true)
                    } else {
                        ev.wait(&strategy, Some(d), || true)
                    };
                    if outcome == WaitOutcome::TimedOut {
                        break;
                    }
                    assert!(
                        t0.elapsed() < timeout + Duration::from_secs(2),
                        "{strategy:?} (checking {checking}): still looping {:?} after a \
                         {timeout:?} deadline, {tries} tries",
                        t0.elapsed()
                    );
                }
                assert!(d.is_past());
                assert!(
                    t0.elapsed() < timeout + Duration::from_secs(1),
                    "{strategy:?}: left {:?} after a {timeout:?} deadline",
                    t0.elapsed()
                );
            }
        }
        assert_eq!(ev.sleepers(), 0);
    }

    /// Finding 16b: `SpinYield` is documented as exponential backoff (crossbeam's snooze):
    /// polls after 1, 2, 4 .. 64 spin hints, then a yield before each poll. It was 64 polls
    /// one spin apart, then yields. The other strategies' schedules, for completeness.
    #[test]
    fn each_strategy_pauses_as_documented() {
        use Pause::{Park, Spin, Yield};
        let schedule = |strategy, n| {
            let mut p = Pauses::new(strategy);
            (0..n).map(|_| p.next()).collect::<Vec<_>>()
        };
        assert_eq!(
            schedule(WaitStrategy::SpinYield, 10),
            [
                Spin(1),
                Spin(2),
                Spin(4),
                Spin(8),
                Spin(16),
                Spin(32),
                Spin(64),
                Yield,
                Yield,
                Yield
            ]
        );
        let mut p = Pauses::new(WaitStrategy::SpinYield);
        let after_spins = (0..100_000).map(|_| p.next()).skip(SPIN_LIMIT as usize + 1);
        assert!(after_spins.into_iter().all(|pause| pause == Yield));
        assert_eq!(
            schedule(
                WaitStrategy::SpinThenPark {
                    spins: 3,
                    yields: 2
                },
                7
            ),
            [Spin(1), Spin(1), Spin(1), Yield, Yield, Park, Park]
        );
        assert_eq!(schedule(WaitStrategy::BusySpin, 4), [Spin(1); 4]);
        assert_eq!(schedule(WaitStrategy::Park, 2), [Park; 2]);
        // BusySpin never runs out of spins, however long it waits.
        let mut p = Pauses {
            strategy: WaitStrategy::BusySpin,
            turn: u64::MAX - 1,
        };
        assert_eq!([p.next(), p.next(), p.next()], [Spin(1); 3]);
    }

    #[test]
    fn wait_checking_reevaluates_without_notify() {
        let (_m, ev) = event();
        let calls = AtomicU64::new(0);
        // Nobody notifies; the condition turns true on its own (a peer died, say).
        let got = ev.wait_checking(&WaitStrategy::Park, None, Duration::from_millis(5), || {
            calls.fetch_add(1, Ordering::Relaxed) >= 3
        });
        assert_eq!(got, WaitOutcome::Ready);
    }

    #[test]
    fn ping_pong_threads_lose_no_wakeup() {
        let rounds: u64 = if cfg!(miri) { 50 } else { 20_000 };
        let (_m1, a) = event();
        let (_m2, b) = event();
        let (sent, echoed) = (AtomicU64::new(0), AtomicU64::new(0));
        std::thread::scope(|s| {
            s.spawn(|| {
                for i in 1..=rounds {
                    let strategy = if i % 2 == 0 {
                        WaitStrategy::Park
                    } else {
                        WaitStrategy::default()
                    };
                    a.wait(&strategy, None, || sent.load(Ordering::Acquire) >= i);
                    echoed.store(i, Ordering::Release);
                    b.notify();
                }
            });
            for i in 1..=rounds {
                sent.store(i, Ordering::Release);
                a.notify();
                let strategy = if i % 3 == 0 {
                    WaitStrategy::Park
                } else {
                    WaitStrategy::SpinThenPark {
                        spins: 10,
                        yields: 1,
                    }
                };
                b.wait(&strategy, None, || echoed.load(Ordering::Acquire) >= i);
            }
        });
        assert_eq!(echoed.load(Ordering::Relaxed), rounds);
    }
}
