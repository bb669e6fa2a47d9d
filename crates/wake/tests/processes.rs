//! Wake-ups between real processes, through events in a real POSIX shared-memory segment
//! (the test binary re-executes itself for each child, see `shmlane-testkit`).
#![cfg(not(loom))]

use std::{
    process::Command,
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use shmlane_segment::Segment;
use shmlane_testkit::{ARGS_VAR, Cleanup, ROLE_VAR, child, child_role, finish, unique};
use shmlane_wake::{Deadline, EVENT_SIZE, Event, PollableEvent, WaitOutcome, WaitStrategy};

const LIMIT: Duration = Duration::from_secs(300);
/// A single wait in these tests never legitimately takes this long: hitting it means a lost
/// wake-up, and the test fails instead of hanging.
const WAIT_LIMIT: Duration = Duration::from_secs(20);
const ROUND_TRIPS: u64 = 1_000_000;

fn create(name: &str) -> Segment {
    Segment::posix(name)
        .size(64 * 1024)
        .create_with(|s| {
            for ev in ["ev-a", "ev-b"] {
                let r = s.region(ev, EVENT_SIZE as u64, 10)?;
                // SAFETY: a fresh region nobody else can see before the segment is published.
                unsafe { Event::init(r.as_ptr(), r.len()) }.expect("init event");
            }
            s.region("counters", 256, 11)?;
            Ok::<_, shmlane_segment::RegionError>(())
        })
        .expect("create segment")
}

fn event(seg: &Segment, name: &str) -> Event {
    let r = seg.find_region(name).expect("event region");
    // SAFETY: the region lives as long as `seg`, which outlives the handle in every use here.
    unsafe { Event::attach(r.as_ptr(), r.len()) }.expect("attach event")
}

/// Counter `i` (0 or 1), each on its own 128-byte line of the "counters" region.
fn counter(seg: &Segment, i: usize) -> &AtomicU64 {
    let r = seg.find_region("counters").expect("counters region");
    assert!(i < 2);
    // SAFETY: offset i*128 (+8) lies inside the 256-byte region, aligned (region start is
    // 128-byte aligned); accessed only atomically by every process; lives as long as `seg`.
    unsafe { AtomicU64::from_ptr(r.as_ptr().add(i * 128).cast()) }
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        assert!(t0.elapsed() < WAIT_LIMIT, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn child_entry() {
    let Some((role, args)) = child_role() else {
        return;
    };
    let seg = Segment::posix(&args[0])
        .role(2)
        .open()
        .expect("open segment");
    let code = match role.as_str() {
        "park-until-set" => {
            let ev = event(&seg, "ev-a");
            let flag = counter(&seg, 0);
            let got = ev.wait(
                &WaitStrategy::Park,
                Some(Deadline::after(WAIT_LIMIT)),
                // ORDERING: Acquire; pairs with the parent's Release store before notify.
                || flag.load(Ordering::Acquire) == 1,
            );
            println!("OUT:{got:?}");
            0
        }
        "echo" => echo(&seg),
        "park-forever" => {
            let ev = event(&seg, "ev-a");
            let strategy = if args[1] == "busy" {
                WaitStrategy::BusySpin
            } else {
                WaitStrategy::Park
            };
            let got = ev.wait(
                &strategy,
                Some(Deadline::after(Duration::from_secs(4))),
                || false,
            );
            println!("OUT:{got:?}");
            0
        }
        "notify-n" => {
            let ev = event(&seg, "ev-a");
            let n: u64 = args[1].parse().unwrap();
            let with_sleeper = args[2] == "sleeper";
            let stop = AtomicU64::new(0);
            std::thread::scope(|s| {
                if with_sleeper {
                    let (sleeper_ev, stop) = (event(&seg, "ev-a"), &stop);
                    s.spawn(move || {
                        sleeper_ev.wait(&WaitStrategy::Park, None, || {
                            stop.load(Ordering::Acquire) == 1
                        })
                    });
                    wait_for("the sleeper", || ev.sleepers() == 1);
                }
                let mut woke = 0;
                for _ in 0..n {
                    woke += u64::from(ev.notify());
                }
                stop.store(1, Ordering::Release);
                ev.notify();
                println!("OUT:woke {woke}");
            });
            0
        }
        "arm-found-then-disarm" => {
            // An event loop whose condition already holds: arm registers nothing; the disarm
            // it then calls must withdraw nothing.
            let pe = PollableEvent::new(
                event(&seg, "ev-a"),
                PollableEvent::eventfd().expect("eventfd"),
            );
            let armed = pe.arm(|| true);
            pe.disarm();
            println!("OUT:arm {armed}");
            0
        }
        other => panic!("unknown child role {other}"),
    };
    std::process::exit(code);
}

/// The child side of the round trips: waits for ping `i`, answers with answer `i`.
fn echo(seg: &Segment) -> i32 {
    let (ping_ev, answer_ev) = (event(seg, "ev-a"), event(seg, "ev-b"));
    let (ping, answer) = (counter(seg, 0), counter(seg, 1));
    for i in 1..=ROUND_TRIPS {
        let got = ping_ev.wait(
            &strategy_for(i),
            Some(Deadline::after(WAIT_LIMIT)),
            // ORDERING: Acquire; pairs with the parent's Release store of the ping.
            || ping.load(Ordering::Acquire) >= i,
        );
        if got != WaitOutcome::Ready {
            println!("OUT:lost wake-up: child waited for ping {i}");
            return 1;
        }
        // ORDERING: Release; pairs with the parent's Acquire load of the answer.
        answer.store(i, Ordering::Release);
        answer_ev.notify();
    }
    println!("OUT:echoed {ROUND_TRIPS}");
    0
}

/// Mixes strategies so that both the spinning path and the parking path are exercised a
/// great many times: every 50th wait parks at once, the rest spin briefly, then park.
fn strategy_for(i: u64) -> WaitStrategy {
    if i % 50 == 0 {
        WaitStrategy::Park
    } else {
        WaitStrategy::SpinThenPark {
            spins: 100,
            yields: 2,
        }
    }
}

/// A consumer process parked on the event is woken by this (producer) process.
#[test]
fn parked_process_is_woken_by_another_process() {
    let name = unique("wake-park");
    let _c = Cleanup(name.clone());
    let seg = create(&name);
    let ev = event(&seg, "ev-a");
    let waiter = child("park-until-set", &[&name]).spawn().unwrap();
    // Only notify once the child is registered: the notify must wake a real sleeper.
    wait_for("the child to park", || ev.sleepers() == 1);
    // ORDERING: Release; pairs with the child's Acquire load in its condition.
    counter(&seg, 0).store(1, Ordering::Release);
    assert!(ev.notify(), "notify saw no sleeper");
    let (code, out) = finish(waiter, LIMIT);
    assert_eq!(code, 0);
    assert_eq!(out, ["Ready"]);
    assert_eq!(ev.sleepers(), 0);
}

/// Finding 11 of issue 15, across processes: a process whose `arm` found its condition true
/// and that then called `disarm` took the shared sleeper count below zero, and every notify in
/// every other process made a futex syscall from then on. After the fix the count is still 0
/// and this process's notify skips the wake.
#[test]
fn disarm_in_another_process_leaves_notify_syscall_free() {
    let name = unique("wake-disarm");
    let _c = Cleanup(name.clone());
    let seg = create(&name);
    let ev = event(&seg, "ev-a");
    let (code, out) = finish(
        child("arm-found-then-disarm", &[&name]).spawn().unwrap(),
        LIMIT,
    );
    assert_eq!(code, 0);
    assert_eq!(out, ["arm true"]);
    assert_eq!(
        ev.sleepers(),
        0,
        "the other process's disarm underflowed the count"
    );
    for _ in 0..1000 {
        assert!(
            !ev.notify(),
            "notify found a sleeper that does not exist (a syscall)"
        );
    }
}

/// A wait with a deadline and a condition that never holds returns `TimedOut`, not before the
/// deadline, for every strategy.
#[test]
fn wait_with_deadline_returns_at_the_deadline() {
    let name = unique("wake-deadline");
    let _c = Cleanup(name.clone());
    let seg = create(&name);
    let ev = event(&seg, "ev-b");
    for strategy in [
        WaitStrategy::Park,
        WaitStrategy::SpinThenPark {
            spins: 1000,
            yields: 5,
        },
        WaitStrategy::SpinYield,
        WaitStrategy::BusySpin,
    ] {
        let d = Deadline::after(Duration::from_millis(50));
        assert_eq!(ev.wait(&strategy, Some(d), || false), WaitOutcome::TimedOut);
        assert!(d.is_past(), "{strategy:?} returned before its deadline");
    }
    assert_eq!(ev.sleepers(), 0);
}

/// One million notify/wait round trips between two processes, both sides mixing parking and
/// spinning: no wake-up is lost (every wait has a deadline, so a lost one fails the test).
#[test]
fn million_round_trips_between_processes() {
    let name = unique("wake-rt");
    let _c = Cleanup(name.clone());
    let seg = create(&name);
    let (ping_ev, answer_ev) = (event(&seg, "ev-a"), event(&seg, "ev-b"));
    let (ping, answer) = (counter(&seg, 0), counter(&seg, 1));
    let echo = child("echo", &[&name]).spawn().unwrap();
    let t0 = Instant::now();
    let mut woke = 0u64;
    for i in 1..=ROUND_TRIPS {
        if i % 1000 == 0 {
            // Every 1000th time, let the child really fall asleep first, so the futex path
            // (not only the spinning one) carries a thousand round trips.
            wait_for("the child to park", || ping_ev.sleepers() == 1);
        }
        // ORDERING: Release; pairs with the child's Acquire load of the ping.
        ping.store(i, Ordering::Release);
        woke += u64::from(ping_ev.notify());
        let got = answer_ev.wait(
            &strategy_for(i + 25),
            Some(Deadline::after(WAIT_LIMIT)),
            // ORDERING: Acquire; pairs with the child's Release store of the answer.
            || answer.load(Ordering::Acquire) >= i,
        );
        assert_eq!(
            got,
            WaitOutcome::Ready,
            "lost wake-up: parent waited for answer {i}"
        );
    }
    let (code, out) = finish(echo, LIMIT);
    assert_eq!(code, 0, "{out:?}");
    assert_eq!(out, [format!("echoed {ROUND_TRIPS}")]);
    assert!(
        woke >= ROUND_TRIPS / 1000,
        "only {woke} notifies found the child asleep"
    );
    println!(
        "{ROUND_TRIPS} round trips in {:?}; {woke} notifies woke a parked child",
        t0.elapsed()
    );
}

/// Runs the "notify-n" child under `strace -f -c -e trace=futex`; returns its futex calls.
fn futex_calls(name: &str, n: u64, mode: &str) -> u64 {
    let out_file = std::env::temp_dir().join(format!("{name}-{n}-{mode}.strace"));
    let status = Command::new("strace")
        .args(["-f", "-qq", "-c", "-e", "trace=futex", "-o"])
        .arg(&out_file)
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_entry",
            "--nocapture",
            "--test-threads=1",
            "-q",
        ])
        .env(ROLE_VAR, "notify-n")
        .env(ARGS_VAR, [name, &n.to_string(), mode].join("\u{1f}"))
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run strace");
    assert!(status.success(), "child under strace failed");
    let report = std::fs::read_to_string(&out_file).expect("strace report");
    let _ = std::fs::remove_file(&out_file);
    report
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.last() == Some(&"futex")).then(|| f[3].parse::<u64>().expect("calls column"))
        })
        .sum()
}

/// `notify` with nobody asleep makes no futex call: 100 000 notifies cost the same number of
/// futex calls as none (those come from the test harness's own threads). The control: with a
/// sleeper registered, 1 000 notifies make at least 1 000 futex calls, so the count sees them.
#[test]
fn notify_without_sleeper_makes_no_syscall() {
    if Command::new("strace").arg("-V").output().is_err() {
        println!("skipped: strace is not installed (.ci/run installs it)");
        return;
    }
    let name = unique("wake-strace");
    let _c = Cleanup(name.clone());
    let _seg = create(&name);
    let none = futex_calls(&name, 0, "alone");
    let many = futex_calls(&name, 100_000, "alone");
    let control = futex_calls(&name, 1_000, "sleeper");
    println!(
        "futex calls: 0 notifies {none}, 100000 notifies {many}, 1000 with a sleeper {control}"
    );
    assert!(
        many <= none + 10,
        "100000 notifies without a sleeper made {many} futex calls (baseline {none})"
    );
    assert!(
        control >= 1_000,
        "the control made only {control} futex calls"
    );
}

/// CPU ticks (utime + stime, in clock ticks) a process has used, from /proc.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc stat");
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// A parked waiter idles at (near) zero CPU: measured from /proc over 2 s, next to a
/// busy-spinning waiter measured the same way in the same run.
#[test]
fn parked_waiter_idles() {
    let name = unique("wake-idle");
    let _c = Cleanup(name.clone());
    let seg = create(&name);
    let ev = event(&seg, "ev-a");
    let mut used = Vec::new();
    for mode in ["park", "busy"] {
        let waiter = child("park-forever", &[&name, mode]).spawn().unwrap();
        if mode == "park" {
            wait_for("the child to park", || ev.sleepers() == 1);
        } else {
            std::thread::sleep(Duration::from_millis(300));
        }
        let before = cpu_ticks(waiter.id());
        std::thread::sleep(Duration::from_secs(2));
        let after = cpu_ticks(waiter.id());
        used.push(after - before);
        let (code, out) = finish(waiter, LIMIT);
        assert_eq!(code, 0);
        assert_eq!(out, ["TimedOut"]);
    }
    println!(
        "CPU ticks over 2 s: parked {}, busy-spinning {}",
        used[0], used[1]
    );
    assert!(
        used[0] * 10 < used[1].max(10),
        "a parked waiter used {} ticks in 2 s (a busy one {})",
        used[0],
        used[1]
    );
}
