//! The real-time contract of docs/realtime.md, proven: every hot-path call the table marks
//! "never allocates", "no system call" and "no page fault after set-up" runs here under
//!
//! - (a) a counting global allocator that records every allocation a thread makes while its
//!   `forbid` flag is set ([`no_alloc`]);
//! - (b) a seccomp filter installed on the measuring thread of a child process (re-executed
//!   test binary): any system call raises SIGSYS, whose handler writes the call's number to a
//!   shared file and ends the child with a distinctive code ([`seccomp`]);
//! - (c) `getrusage(RUSAGE_THREAD)` minor and major fault counts across a long window on a
//!   channel built with `.populate(true).mlock(true)`.
//!
//! The scenarios (one per channel kind, [`scenarios`]) wrap small rings every round, take the
//! `Full` and `Empty` paths, lap broadcast subscribers and go through every zero-copy form.

#[path = "realtime/scenarios.rs"]
mod scenarios;
#[path = "realtime/seccomp.rs"]
mod seccomp;

use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::Cell,
    sync::atomic::{AtomicU64, AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use scenarios::{ALL, Setup};
use shmlane::{ByteRecvError, PeersLeave, UnlinkPolicy, Wakes};
use shmlane_testkit::{Cleanup, child, child_role, finish, unique};

/// Wraps `System`, counting the allocations of threads whose `FORBID` flag is set.
struct Counting;

thread_local! {
    static FORBID: Cell<bool> = const { Cell::new(false) };
}

/// Allocations (alloc, alloc_zeroed, realloc) made while forbidden, by any thread.
static FORBIDDEN: AtomicUsize = AtomicUsize::new(0);

fn note() {
    // `try_with`: a thread being torn down has no flag (and allocates nothing forbidden).
    if FORBID.try_with(Cell::get).unwrap_or(false) {
        // ORDERING: Relaxed; read by the same thread after the closure.
        FORBIDDEN.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: forwards every call to `System` unchanged; the bookkeeping allocates nothing.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        note();
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        note();
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        note();
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.realloc(p, l, n) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Runs `f` with allocation forbidden on this thread; returns how many allocations it made.
/// (Tests run on several threads: only this thread's are counted; the count is global, so
/// the proofs that read it run one at a time, under `SERIAL`.)
fn no_alloc(f: impl FnOnce()) -> usize {
    // ORDERING: Relaxed; one thread writes while forbidden (the proofs are serialized).
    let before = FORBIDDEN.load(Ordering::Relaxed);
    FORBID.with(|c| c.set(true));
    f();
    FORBID.with(|c| c.set(false));
    // ORDERING: Relaxed; as above.
    FORBIDDEN.load(Ordering::Relaxed) - before
}

static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Rounds per scenario in the allocation and system-call proofs (each round is 20-40 calls
/// and wraps its ring at least once).
const ROUNDS: usize = 2_000;

/// (a) No allocation: every scenario's calls from the very first (no warm-up: the first call
/// of an endpoint must not allocate either, e.g. a checksummed receiver's scratch buffer).
#[test]
fn hot_paths_never_allocate() {
    let _s = serial();
    // The guard itself works: an allocation under it is counted.
    assert_eq!(no_alloc(|| drop(std::hint::black_box(vec![1u8; 10]))), 1);
    let mut failed = Vec::new();
    for (name, build) in ALL {
        let seg = unique(&format!("rt-a-{name}"));
        let _c = Cleanup(seg.clone());
        let mut round = build(&seg, Setup { mlock: false });
        let n = no_alloc(|| {
            for _ in 0..ROUNDS {
                round();
            }
        });
        if n != 0 {
            failed.push(format!("{name}: {n} allocations in {ROUNDS} rounds"));
        }
    }
    assert!(failed.is_empty(), "hot-path calls allocated: {failed:?}");
}

/// (b) No system call: each scenario in a child whose measuring thread is under seccomp.
#[test]
fn hot_paths_make_no_system_call() {
    // The filter works: a `getpid` under it is trapped and reported by number.
    let (code, nr, _) = run_filtered("getpid");
    assert_eq!((code, nr), (seccomp::TRAPPED, libc::SYS_getpid as i32));
    let mut failed = Vec::new();
    for (name, _) in ALL {
        let (code, nr, _) = run_filtered(name);
        if code != 0 {
            failed.push(format!("{name}: exit {code}, system call number {nr}"));
        }
    }
    assert!(
        failed.is_empty(),
        "hot-path calls made system calls: {failed:?}"
    );
}

/// Runs scenario `name` in a filtered child: its exit code, the trapped call's number and the
/// word it reported (`u64::MAX`: none).
fn run_filtered(name: &str) -> (i32, i32, u64) {
    let report = format!("/dev/shm/{}", unique(&format!("rt-b-{name}")));
    std::fs::write(&report, vec![0xffu8; 4096]).unwrap();
    let c = child("filtered", &[name, &report]).spawn().unwrap();
    let (code, _) = finish(c, Duration::from_secs(60));
    let bytes = std::fs::read(&report).unwrap();
    let _ = std::fs::remove_file(&report);
    (
        code,
        i32::from_le_bytes(bytes[..4].try_into().unwrap()),
        u64::from_ne_bytes(bytes[8..16].try_into().unwrap()),
    )
}

/// The child: set up, warm up (the first statistics flush, the first notify), then filter
/// this thread and run the rounds; `_exit(0)` without unwinding or flushing anything.
fn filtered_child(name: &str, report: &str) -> ! {
    seccomp::map_report(report);
    let seg = unique(&format!("rt-b-{name}"));
    let (mut round, warm, rounds): (Box<dyn FnMut()>, usize, usize) = match name {
        "getpid" => (
            Box::new(|| {
                // SAFETY: getpid has no preconditions.
                std::hint::black_box(unsafe { libc::getpid() });
            }),
            100,
            ROUNDS,
        ),
        "sleeper_never" => (sleeper(&seg, Wakes::Never), 3, 100),
        "sleeper_peers" => (sleeper(&seg, Wakes::Peers), 3, 100),
        _ => (
            scenarios::by_name(name)(&seg, Setup { mlock: false }),
            100,
            ROUNDS,
        ),
    };
    for _ in 0..warm {
        round();
    }
    let _ = std::fs::remove_file(format!("/dev/shm/{seg}"));
    seccomp::forbid_syscalls();
    for _ in 0..rounds {
        round();
    }
    if name.starts_with("sleeper") {
        // ORDERING: Relaxed; the producer's last store of its count, any recent one will do
        // (it only grows, and the rounds above made it sleep or not).
        seccomp::report_extra(PRODUCER_SLEEPS.load(Ordering::Relaxed));
    }
    // SAFETY: `_exit` (exit_group, allowed) ends the process at once.
    unsafe { libc::_exit(0) }
}

/// The peer-sleeping case (issue 20): a producer thread (not filtered) blocks in `send` on a
/// full ring of 8 slots while the consumer, with `wakes`, receives with `try_recv` on the
/// measuring thread. A round takes 16 messages, then pauses 2 ms (reading the clock only) so
/// that the producer parks on the futex. With `Wakes::Peers` the consumer's `try_recv` then
/// wakes it (a `futex` system call: the proof sees a peer really sleeps); with `Wakes::Never`
/// it never does (the producer parks at most `NEVER_WAKE_POLL` and looks again).
fn sleeper(seg: &str, wakes: Wakes) -> Box<dyn FnMut()> {
    // `Park`: the producer parks as soon as the ring is full (the default strategy's yields
    // can outlast the 2 ms pause on a loaded machine, and then no round finds it asleep).
    let ch = shmlane::spsc::<u64>(seg)
        .capacity(8)
        .unlink(UnlinkPolicy::CreatorDrop)
        .wait(shmlane::WaitStrategy::Park)
        .create()
        .unwrap();
    let mut tx = ch.producer().unwrap();
    let mut rx = ch.consumer().unwrap();
    rx.set_wakes(wakes);
    std::thread::spawn(move || {
        for i in 0u64.. {
            if tx
                .send(i, Some(shmlane::Deadline::after(Duration::from_secs(20))))
                .is_err()
            {
                return;
            }
            // Unfiltered thread: `stats()` may make system calls here. The parent checks the
            // producer did sleep, in the `Never` run too (else that run proves nothing).
            // ORDERING: Relaxed; read by the measuring thread after its rounds.
            PRODUCER_SLEEPS.store(tx.stats().sleeps, Ordering::Relaxed);
        }
    });
    let mut next = 0u64;
    Box::new(move || {
        let _keep = &ch;
        let end = Instant::now() + Duration::from_secs(10);
        let mut got = 0;
        while got < 16 && Instant::now() < end {
            match rx.try_recv() {
                Ok(v) => {
                    assert_eq!(v, next);
                    next += 1;
                    got += 1;
                }
                Err(shmlane::TryRecvError::Empty) => std::hint::spin_loop(),
                Err(e) => panic!("{e:?}"),
            }
        }
        assert_eq!(got, 16, "the producer stalled");
        let pause = Instant::now() + Duration::from_millis(2);
        while Instant::now() < pause {
            std::hint::spin_loop();
        }
    })
}

/// The sleeper's producer's `sleeps` statistic, as it last saw it.
static PRODUCER_SLEEPS: AtomicU64 = AtomicU64::new(0);

/// (b) with a sleeping peer: a `Wakes::Never` consumer makes no system call while its
/// producer sleeps in `send` (the producer's own count says it slept, and every message
/// arrived in order); the same with `Wakes::Peers` makes the futex wake, so the filter does
/// see what it must.
#[test]
fn a_never_waking_consumer_makes_no_system_call_while_its_producer_sleeps() {
    let (code, nr, _) = run_filtered("sleeper_peers");
    assert_eq!(
        (code, nr),
        (seccomp::TRAPPED, libc::SYS_futex as i32),
        "Wakes::Peers: the consumer wakes the sleeping producer"
    );
    let (code, nr, sleeps) = run_filtered("sleeper_never");
    assert_eq!(code, 0, "Wakes::Never: system call number {nr}");
    assert!(
        sleeps > 0 && sleeps != u64::MAX,
        "Wakes::Never: the producer never slept ({sleeps}): nothing proven"
    );
}

/// Hot-path calls per scenario in the page-fault window.
const FAULT_CALLS: usize = 1_000_000;

fn faults() -> (i64, i64) {
    // SAFETY: all-zero is a valid rusage (plain integers).
    let mut u: libc::rusage = unsafe { core::mem::zeroed() };
    // SAFETY: a valid pointer to a rusage, filled by the call.
    let r = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &raw mut u) };
    assert_eq!(r, 0);
    (u.ru_minflt, u.ru_majflt)
}

/// (c) No page fault after set-up: a channel built with `populate(true)` and `mlock(true)`,
/// warmed up, then about a million hot-path calls per scenario on this thread.
#[test]
fn hot_paths_take_no_page_fault_after_set_up() {
    let _s = serial();
    let mut failed = Vec::new();
    for (name, build) in ALL {
        let seg = unique(&format!("rt-c-{name}"));
        let _c = Cleanup(seg.clone());
        let s = Setup { mlock: true };
        let Ok(mut round) = std::panic::catch_unwind(|| build(&seg, s)) else {
            assert!(
                !shmlane_testkit::is_root(),
                "{name}: mlock refused although this runs as root"
            );
            eprintln!(
                "SKIPPED page-fault proof of {name}: mlock refused (not root; raise \
                 RLIMIT_MEMLOCK with `ulimit -l` to run it)"
            );
            continue;
        };
        for _ in 0..1000 {
            round();
        }
        // Rounds are 20-40 calls: about a million calls.
        let rounds = FAULT_CALLS / 25;
        let before = faults();
        for _ in 0..rounds {
            round();
        }
        let after = faults();
        if after != before {
            failed.push(format!(
                "{name}: (minor, major) faults {before:?} -> {after:?} in {rounds} rounds"
            ));
        }
    }
    assert!(failed.is_empty(), "page faults after set-up: {failed:?}");
}

/// (a) for the dead-peer path of a byte channel: a child process claims room and is killed
/// (SIGKILL, by itself) before committing; the receiver's `try_recv` then skips its record
/// (a liveness check: system calls, see docs/realtime.md) and receives what follows, without
/// allocating.
#[test]
fn a_dead_senders_record_is_skipped_without_allocating() {
    let _s = serial();
    let seg = unique("rt-dead-claim");
    let _c = Cleanup(seg.clone());
    let ch = shmlane::bytes(&seg)
        .capacity(4096)
        .unlink(UnlinkPolicy::CreatorDrop)
        .when_peers_leave(PeersLeave::Wait)
        .create()
        .unwrap();
    let mut rx = ch.byte_receiver().unwrap();
    let c = child("claim_and_die", &[&seg]).spawn().unwrap();
    let (code, _) = finish(c, Duration::from_secs(30));
    assert_eq!(code, -1, "the child dies by SIGKILL");
    let mut tx = ch.byte_sender().unwrap();
    let mut buf = [0u8; 64];
    let mut got = 0;
    let n = no_alloc(|| {
        let end = Instant::now() + Duration::from_secs(10);
        for i in 0..200u8 {
            tx.try_send(&[i; 32]).unwrap();
            while Instant::now() < end {
                match rx.try_recv(&mut buf) {
                    Ok(32) => {
                        assert_eq!(buf[0], i);
                        got += 1;
                        break;
                    }
                    Err(ByteRecvError::Empty) => {}
                    other => panic!("{other:?}"),
                }
            }
        }
    });
    assert_eq!((got, rx.skipped()), (200, 1));
    assert_eq!(
        n, 0,
        "{n} allocations receiving past a dead sender's record"
    );
}

/// (a) for a dead MPMC sender's hole: a child takes a ring position and is killed before it
/// publishes; `try_recv` finds `Empty` there (it never checks liveness), `recover` skips the
/// hole (a liveness check: system calls) and what follows is received, without allocating.
#[test]
fn a_dead_senders_mpmc_hole_is_recovered_without_allocating() {
    let _s = serial();
    let seg = unique("rt-dead-hole");
    let _c = Cleanup(seg.clone());
    let ch = shmlane::mpmc::<u64>(&seg)
        .capacity(64)
        .unlink(UnlinkPolicy::CreatorDrop)
        .when_peers_leave(PeersLeave::Wait)
        .create()
        .unwrap();
    let mut rx = ch.receiver().unwrap();
    let c = child("hole_and_die", &[&seg]).spawn().unwrap();
    let (code, _) = finish(c, Duration::from_secs(30));
    assert_eq!(code, -1, "the child dies by SIGKILL");
    let mut tx = ch.sender().unwrap();
    let mut got = Vec::with_capacity(50);
    let n = no_alloc(|| {
        for i in 0..50u64 {
            tx.try_send(i).unwrap();
        }
        let end = Instant::now() + Duration::from_secs(10);
        let mut recovered = 0;
        while got.len() < 50 && Instant::now() < end {
            match rx.try_recv() {
                Ok(v) => got.push(v),
                Err(shmlane::TryRecvError::Empty) => recovered += u32::from(rx.recover()),
                Err(e) => panic!("{e:?}"),
            }
        }
        assert_eq!(recovered, 1);
    });
    assert_eq!(got, (0..50).collect::<Vec<_>>());
    assert_eq!(n, 0, "{n} allocations receiving past a dead sender's hole");
}

/// Blocking calls are not real-time, but they make no allocation either: a `recv` that waits
/// 160 ms on an empty ring checks its peers' liveness three times (every 50 ms: the attachment
/// table read into a list the endpoint keeps), then times out; the same against a sender that
/// died ends with `PeerDied` (its death noted in lists with room for every slot).
#[test]
fn blocked_calls_check_their_peers_without_allocating() {
    let _s = serial();
    let name = unique("rt-blocked");
    let _c = Cleanup(name.clone());
    let ch = shmlane::spsc::<u64>(&name)
        .capacity(8)
        .unlink(UnlinkPolicy::CreatorDrop)
        .create()
        .unwrap();
    let _tx = ch.producer().unwrap();
    let mut rx = ch.consumer().unwrap();
    let mut got = None;
    let n = no_alloc(|| {
        got = Some(rx.recv(Some(shmlane::Deadline::after(Duration::from_millis(160)))));
    });
    assert!(
        matches!(got, Some(Err(shmlane::RecvError::Timeout))),
        "{got:?}"
    );
    assert_eq!(n, 0, "{n} allocations in a blocked recv's liveness checks");

    // A sender in a child process that dies while the receiver waits.
    let name = unique("rt-blocked-dead");
    let _c2 = Cleanup(name.clone());
    let ch = shmlane::spsc::<u64>(&name)
        .capacity(8)
        .unlink(UnlinkPolicy::CreatorDrop)
        .create()
        .unwrap();
    let mut rx = ch.consumer().unwrap();
    let c = child("sender_then_die", &[&name]).spawn().unwrap();
    assert_eq!(
        rx.recv(Some(shmlane::Deadline::after(Duration::from_secs(20))))
            .unwrap(),
        7
    );
    let mut got = None;
    let n = no_alloc(|| {
        got = Some(rx.recv(Some(shmlane::Deadline::after(Duration::from_secs(20)))));
    });
    let _ = finish(c, Duration::from_secs(20));
    assert!(
        matches!(got, Some(Err(shmlane::RecvError::PeerDied))),
        "{got:?}"
    );
    assert_eq!(n, 0, "{n} allocations finding a dead sender");
}

/// The child processes' entry (re-executed test binary).
#[test]
fn child_entry() {
    let Some((role, args)) = child_role() else {
        return;
    };
    match role.as_str() {
        "filtered" => filtered_child(&args[0], &args[1]),
        "claim_and_die" => {
            let ch = shmlane::bytes(&args[0]).open().unwrap();
            let mut tx = ch.byte_sender().unwrap();
            let mut c = tx.claim(32).unwrap();
            c.write(0, &[0xee; 8]);
            // SAFETY: raising SIGKILL on this process.
            unsafe { libc::raise(libc::SIGKILL) };
            unreachable!();
        }
        "sender_then_die" => {
            let ch = shmlane::spsc::<u64>(&args[0]).open().unwrap();
            let mut tx = ch.producer().unwrap();
            tx.try_send(7).unwrap();
            // Long enough for the receiver to take the message and block again.
            std::thread::sleep(Duration::from_millis(200));
            // SAFETY: raising SIGKILL on this process.
            unsafe { libc::raise(libc::SIGKILL) };
            unreachable!();
        }
        "hole_and_die" => {
            let ch = shmlane::mpmc::<u64>(&args[0]).open().unwrap();
            ch.sender().unwrap().abandon_send_for_tests();
            // SAFETY: raising SIGKILL on this process.
            unsafe { libc::raise(libc::SIGKILL) };
            unreachable!();
        }
        other => panic!("unknown role {other}"),
    }
}
