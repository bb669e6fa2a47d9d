//! loom models of the event: no lost wake-up, with the futex modelled in `src/sync.rs`.
//! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 cargo test -p shmlane-wake --test loom --release`
//!
//! A lost wake-up shows as a deadlock (every thread blocked), which loom reports as a failure.
//! `.ci/loom-mutants` removes each Dekker fence in turn (`--cfg shmlane_weaken="wake_wait_fence"`,
//! `"wake_notify_fence"` or `"wake_register_fence"`) and requires these models to fail.
#![cfg(loom)]

use std::alloc::{Layout, alloc_zeroed, dealloc};

use loom::{
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    thread,
};
use shmlane_wake::{Event, PollableEvent, WaitOutcome, WaitSet, WaitStrategy};

/// Room for the event as loom lays it out (its atomics are larger than std's).
const LEN: usize = 4096;

struct Mem(*mut u8, Layout);

impl Mem {
    fn new() -> Self {
        let layout = Layout::from_size_align(LEN, 128).unwrap();
        // SAFETY: non-zero size.
        Self(unsafe { alloc_zeroed(layout) }, layout)
    }
}

impl Drop for Mem {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { dealloc(self.0, self.1) };
    }
}

// SAFETY: plain memory; the event synchronises access.
unsafe impl Send for Mem {}
// SAFETY: as above.
unsafe impl Sync for Mem {}

fn event(mem: &Mem) -> Event {
    // SAFETY: `mem` outlives every handle (threads are joined before it drops).
    unsafe {
        Event::init(mem.0, LEN).unwrap();
        Event::attach(mem.0, LEN).unwrap()
    }
}

fn attach(mem: &Mem) -> Event {
    // SAFETY: as in `event`.
    unsafe { Event::attach(mem.0, LEN).unwrap() }
}

/// One waiter parks until the data flag is set; one notifier sets it and notifies.
#[test]
fn one_waiter_is_never_lost() {
    loom::model(|| {
        let mem = Arc::new(Mem::new());
        let ev = event(&mem);
        let data = Arc::new(AtomicU32::new(0));
        let (m2, d2) = (mem.clone(), data.clone());
        let notifier = thread::spawn(move || {
            let ev = attach(&m2);
            // ORDERING: Relaxed is enough for the model: the flag is the whole message, and
            // the Dekker fences are what is under test.
            d2.store(1, Ordering::Relaxed);
            ev.notify();
        });
        let got = ev.wait(&WaitStrategy::Park, None, || {
            data.load(Ordering::Relaxed) == 1
        });
        assert_eq!(got, WaitOutcome::Ready);
        notifier.join().unwrap();
        drop(ev);
    });
}

/// Two waiters park on the same event; one notify must wake both.
#[test]
fn two_waiters_are_never_lost() {
    loom::model(|| {
        let mem = Arc::new(Mem::new());
        let ev = event(&mem);
        let data = Arc::new(AtomicU32::new(0));
        let (m2, d2) = (mem.clone(), data.clone());
        let other = thread::spawn(move || {
            let ev = attach(&m2);
            ev.wait(&WaitStrategy::Park, None, || {
                d2.load(Ordering::Relaxed) == 1
            })
        });
        let (m3, d3) = (mem.clone(), data.clone());
        let notifier = thread::spawn(move || {
            let ev = attach(&m3);
            d3.store(1, Ordering::Relaxed);
            ev.notify();
        });
        let got = ev.wait(&WaitStrategy::Park, None, || {
            data.load(Ordering::Relaxed) == 1
        });
        assert_eq!(got, WaitOutcome::Ready);
        assert_eq!(other.join().unwrap(), WaitOutcome::Ready);
        notifier.join().unwrap();
        drop(ev);
    });
}

/// An event-loop waiter on the eventfd bridge (`PollableEvent`, modelled eventfd and poll in
/// `src/sync.rs`) and a notifier: the waiter arms (registers, F_WAIT, re-checks), and if the
/// data is not there yet "polls" until the eventfd is readable, then disarms. A notify that
/// skips the eventfd write while the waiter is armed and has not seen the data leaves the
/// waiter polling forever: a deadlock. Fails without `F_WAIT` in `arm`
/// (`wake_register_fence`) and without `F_NOTIFY` (`wake_notify_fence`).
#[test]
fn an_armed_pollable_waiter_is_never_lost() {
    loom::model(|| {
        let mem = Arc::new(Mem::new());
        let fd = PollableEvent::eventfd().unwrap();
        let waiter = PollableEvent::new(event(&mem), fd.try_clone().unwrap());
        let data = Arc::new(AtomicU32::new(0));
        let (m2, d2) = (mem.clone(), data.clone());
        let notifier = thread::spawn(move || {
            let pe = PollableEvent::new(attach(&m2), fd);
            // ORDERING: Relaxed, as in `one_waiter_is_never_lost`: the fences are under test.
            d2.store(1, Ordering::Relaxed);
            pe.notify().unwrap();
        });
        // The event loop's turn: arm; unless the data is already there, poll, then disarm.
        if !waiter.arm(|| data.load(Ordering::Relaxed) == 1) {
            waiter.wait_readable();
            waiter.disarm();
        }
        assert!(!waiter.is_armed());
        notifier.join().unwrap();
        // Every registration was given back: later notifies stay syscall-free.
        assert_eq!(waiter.event().sleepers(), 0);
        drop(waiter);
    });
}

/// A wait-set waiter (`WaitSet::wait_any`, as `shmlane::Select` waits) registered on two
/// events, and a notifier of the second: the waiter registers on both, makes its one F_WAITV
/// fence, re-checks, and sleeps on both words. A notify that skips the wake while the waiter is
/// registered and has not seen the data leaves it asleep: a deadlock. Fails without F_WAITV
/// (`wake_waitv_fence`) and without F_NOTIFY (`wake_notify_fence`).
#[test]
fn a_wait_set_waiter_is_never_lost() {
    loom::model(|| {
        let (ma, mb) = (Arc::new(Mem::new()), Arc::new(Mem::new()));
        let evs = [event(&ma), event(&mb)];
        let data = Arc::new(AtomicU32::new(0));
        let (m2, d2) = (mb.clone(), data.clone());
        let notifier = thread::spawn(move || {
            let ev = attach(&m2);
            // ORDERING: Relaxed, as in `one_waiter_is_never_lost`: the fences are under test.
            d2.store(1, Ordering::Relaxed);
            ev.notify();
        });
        let mut ws = WaitSet::new();
        while data.load(Ordering::Relaxed) == 0 {
            ws.wait_any(&evs, |e| e, None, || data.load(Ordering::Relaxed) == 1);
        }
        notifier.join().unwrap();
        // Every registration was withdrawn: later notifies stay syscall-free.
        assert!(evs.iter().all(|e| e.sleepers() == 0));
    });
}

/// Two notifiers, one per event of the set: the waiter must see both messages, waiting
/// between them (the second wait registers again on both events).
#[test]
fn a_wait_set_waiter_sees_both_notifiers() {
    loom::model(|| {
        let (ma, mb) = (Arc::new(Mem::new()), Arc::new(Mem::new()));
        let evs = [event(&ma), event(&mb)];
        let (da, db) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
        let spawn = |m: &Arc<Mem>, d: &Arc<AtomicU32>| {
            let (m, d) = (m.clone(), d.clone());
            thread::spawn(move || {
                let ev = attach(&m);
                d.store(1, Ordering::Relaxed);
                ev.notify();
            })
        };
        let (ta, tb) = (spawn(&ma, &da), spawn(&mb, &db));
        let both = || da.load(Ordering::Relaxed) + db.load(Ordering::Relaxed);
        let mut ws = WaitSet::new();
        let mut seen = 0;
        while seen < 2 {
            ws.wait_any(&evs, |e| e, None, || both() > seen);
            seen = both();
        }
        ta.join().unwrap();
        tb.join().unwrap();
        assert!(evs.iter().all(|e| e.sleepers() == 0));
    });
}

/// The async waiter (`shmlane::asynch`): reads `seq`, registers (`Event::register`: increment,
/// F_WAIT, re-check), and unless the data is there queues a futex wait for the value read (an
/// io_uring `FUTEX_WAIT`, modelled by `wait_seq`: the kernel compares and queues atomically
/// with respect to the wake), then withdraws the registration and looks again. A notify that
/// skips the wake while the waiter is registered and has not seen the data leaves the wait
/// queued forever: a deadlock. Fails without F_WAIT in `register` (`wake_register_fence`) and
/// without F_NOTIFY (`wake_notify_fence`).
#[test]
fn an_async_waiter_is_never_lost() {
    loom::model(|| {
        let mem = Arc::new(Mem::new());
        let ev = event(&mem);
        let data = Arc::new(AtomicU32::new(0));
        let (m2, d2) = (mem.clone(), data.clone());
        let notifier = thread::spawn(move || {
            let ev = attach(&m2);
            // ORDERING: Relaxed, as in `one_waiter_is_never_lost`: the fences are under test.
            d2.store(1, Ordering::Relaxed);
            ev.notify();
        });
        let registered = shmlane_wake::RegisterFlag::new(false);
        let far = shmlane_wake::Deadline::after(std::time::Duration::from_secs(3600));
        while data.load(Ordering::Relaxed) == 0 {
            let seen = ev.seq();
            if ev.register(&registered, || data.load(Ordering::Relaxed) == 1) {
                break;
            }
            ev.wait_seq(seen, &far);
            ev.unregister(&registered);
        }
        notifier.join().unwrap();
        assert_eq!(ev.sleepers(), 0);
    });
}
