//! The pollable receiver descriptor (issue 19, `RecvPoll` / `Pollable`), with a second real
//! process sending: poll(2) and epoll see it readable after a send and when the sender dies,
//! not while empty and armed; every receiver kind; no lost wake-up over many arm/drain cycles;
//! no futex wake for senders while the receiver drains; no fd or thread left behind.

use std::{
    os::fd::AsRawFd,
    time::{Duration, Instant},
};

use shmlane::{Armed, Deadline, Pollable, RearmError, Start, UnlinkPolicy};
use shmlane_testkit::{Cleanup, child, child_role, finish, unique};

/// poll(2) on `fd` for POLLIN, `ms` milliseconds: the number of ready descriptors (0 or 1).
fn poll_in(fd: &impl AsRawFd, ms: i32) -> i32 {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let n = unsafe { libc::poll(&raw mut p, 1, ms) };
    assert!(n >= 0, "poll: {}", std::io::Error::last_os_error());
    n
}

const KINDS: [&str; 5] = ["spsc", "mpmc", "bytes", "broadcast", "typed-broadcast"];

/// The sending side of `kind` on channel `name`, as the child process holds it.
enum Tx {
    Spsc(shmlane::Producer<u64>),
    Mpmc(shmlane::Sender<u64>),
    Bytes(shmlane::ByteSender),
    Bcast(shmlane::Publisher),
    Typed(shmlane::TypedPublisher<u64>),
}

impl Tx {
    fn open(kind: &str, name: &str) -> Self {
        match kind {
            "spsc" => Self::Spsc(
                shmlane::spsc::<u64>(name)
                    .open()
                    .unwrap()
                    .producer()
                    .unwrap(),
            ),
            "mpmc" => Self::Mpmc(shmlane::mpmc::<u64>(name).open().unwrap().sender().unwrap()),
            "bytes" => Self::Bytes(shmlane::bytes(name).open().unwrap().byte_sender().unwrap()),
            "broadcast" => Self::Bcast(
                shmlane::broadcast(name)
                    .open()
                    .unwrap()
                    .publisher()
                    .unwrap(),
            ),
            "typed-broadcast" => Self::Typed(
                shmlane::broadcast_of::<u64>(name)
                    .open()
                    .unwrap()
                    .typed_publisher()
                    .unwrap(),
            ),
            k => panic!("kind {k}"),
        }
    }
    fn send(&mut self, v: u64) {
        let soon = Some(Deadline::after(Duration::from_secs(10)));
        match self {
            Self::Spsc(t) => t.send(v, soon).unwrap(),
            Self::Mpmc(t) => t.send(v, soon).unwrap(),
            Self::Bytes(t) => t.send(&v.to_le_bytes(), soon).unwrap(),
            Self::Bcast(t) => t.send(&v.to_le_bytes()).unwrap(),
            Self::Typed(t) => {
                t.publish(&v);
            }
        }
    }
    fn wakeups(&mut self) -> u64 {
        match self {
            Self::Spsc(t) => t.stats().wakeups,
            Self::Mpmc(t) => t.stats().wakeups,
            Self::Bytes(t) => t.stats().wakeups,
            Self::Bcast(t) => t.stats().wakeups,
            Self::Typed(_) => 0,
        }
    }
}

#[test]
fn child_entry() {
    let Some((role, args)) = child_role() else {
        return;
    };
    let (kind, name) = (args[0].as_str(), args[1].as_str());
    match role.as_str() {
        "send-then-hold" => {
            // Sends args[2] messages 1.., args[3] ms apart, prints "sent", then sleeps
            // (until killed).
            let mut tx = Tx::open(kind, name);
            let gap = Duration::from_millis(args[3].parse().unwrap());
            for i in 1..=args[2].parse::<u64>().unwrap() {
                std::thread::sleep(gap);
                tx.send(i);
            }
            println!("OUT:sent");
            std::thread::sleep(Duration::from_secs(60));
        }
        "rounds" => {
            // SPSC: args[2] rounds; each sends a burst of 1..=3 messages (numbered from 1),
            // then waits until the receiver took all of them: the last message of every burst
            // is followed by silence, so a lost wake-up for it is never masked by a later send.
            let ch = shmlane::spsc::<u64>(name).open().unwrap();
            let mut tx = ch.producer().unwrap();
            let cap = tx.free();
            let mut next = 1u64;
            for r in 0..args[2].parse::<u64>().unwrap() {
                for _ in 0..=(r % 3) {
                    tx.send(next, Some(Deadline::after(Duration::from_secs(10))))
                        .unwrap();
                    next += 1;
                }
                let t0 = Instant::now();
                while tx.free() != cap {
                    assert!(
                        t0.elapsed() < Duration::from_secs(10),
                        "round {r} not drained"
                    );
                    if r % 2 == 0 {
                        std::hint::spin_loop();
                    } else {
                        std::thread::yield_now();
                    }
                }
                // Then a varying pause (0 to some microseconds): the next burst lands at every
                // point of the receiver's drain-and-rearm, the gap before the arm included.
                for _ in 0..(r * 7919) % 3000 {
                    std::hint::spin_loop();
                }
            }
            println!("OUT:{}", next - 1);
        }
        "burst-wakeups" => {
            // Sends one message (it wakes the armed watcher), gives the watcher 200 ms to fire,
            // then sends args[2] - 1 more as fast as it can, and prints how many of its notifies
            // found a sleeper (a futex wake each).
            let mut tx = Tx::open(kind, name);
            tx.send(1);
            std::thread::sleep(Duration::from_millis(200));
            for i in 2..=args[2].parse::<u64>().unwrap() {
                tx.send(i);
            }
            println!("OUT:{}", tx.wakeups());
        }
        "leaks" => {
            // In a process of its own (the test harness runs other tests' threads in the parent):
            // fds and threads before and after 16 poll handles, armed and not, dropped.
            let count = |p: &str| {
                if p == "/proc/self/task" {
                    shmlane_testkit::live_threads()
                } else {
                    std::fs::read_dir(p).unwrap().count()
                }
            };
            let ch = shmlane::spsc::<u64>(name).open().unwrap();
            let mut rx = ch.consumer().unwrap();
            let (fds, tasks) = (count("/proc/self/fd"), count("/proc/self/task"));
            for i in 0..16 {
                let mut p = shmlane::RecvPoll::new(&rx).unwrap();
                assert_eq!(count("/proc/self/task"), tasks + 1, "one watcher thread");
                if i % 2 == 0 {
                    assert_eq!(p.rearm(&mut rx).unwrap(), Armed::Waiting);
                    std::thread::sleep(Duration::from_millis(5));
                }
                let t0 = Instant::now();
                drop(p);
                // Documented: within POLL_PEER_CHECK plus a scan; in practice at once.
                let took = t0.elapsed();
                assert!(took < Duration::from_millis(500), "drop took {took:?}");
                println!("OUT:drop {}", took.as_micros());
            }
            // The thread is joined, not detached: no longer live at once.
            assert_eq!(count("/proc/self/task"), tasks, "watcher threads left");
            assert_eq!(count("/proc/self/fd"), fds, "descriptors left");
            let p = Pollable::new(rx).unwrap();
            drop(p);
            assert_eq!(
                count("/proc/self/task"),
                tasks,
                "Pollable drop left its watcher"
            );
            assert_eq!(
                count("/proc/self/fd"),
                fds,
                "Pollable drop left its eventfd"
            );
            println!("OUT:ok");
        }
        other => panic!("unknown role {other}"),
    }
}

/// A receiver of any kind behind one interface for the tests.
enum Rx {
    Spsc(Pollable<shmlane::Consumer<u64>>),
    Mpmc(Pollable<shmlane::Receiver<u64>>),
    Bytes(Pollable<shmlane::ByteReceiver>),
    Bcast(Pollable<shmlane::Subscriber>),
    Typed(Pollable<shmlane::TypedSubscriber<u64>>),
}

/// What a `try_recv` gave: a value, `Empty`, or another end (its text).
#[derive(Debug, PartialEq)]
enum Got {
    V(u64),
    Empty,
    End(String),
}

impl Rx {
    fn create(kind: &str, name: &str) -> (Self, Box<dyn std::any::Any>) {
        // Wait mode: a sender's death is reported once, then the receiver waits again.
        let un = UnlinkPolicy::Never;
        match kind {
            "spsc" => {
                let ch = shmlane::spsc::<u64>(name)
                    .capacity(64)
                    .unlink(un)
                    .create()
                    .unwrap();
                let rx = ch.consumer().unwrap();
                (Self::Spsc(Pollable::new(rx).unwrap()), Box::new(ch))
            }
            "mpmc" => {
                let ch = shmlane::mpmc::<u64>(name)
                    .capacity(64)
                    .unlink(un)
                    .create()
                    .unwrap();
                let rx = ch.receiver().unwrap();
                (Self::Mpmc(Pollable::new(rx).unwrap()), Box::new(ch))
            }
            "bytes" => {
                let ch = shmlane::bytes(name)
                    .capacity(4096)
                    .unlink(un)
                    .create()
                    .unwrap();
                let rx = ch.byte_receiver().unwrap();
                (Self::Bytes(Pollable::new(rx).unwrap()), Box::new(ch))
            }
            "broadcast" => {
                let ch = shmlane::broadcast(name)
                    .capacity(64)
                    .unlink(un)
                    .create()
                    .unwrap();
                let rx = ch.subscriber_from(Start::Oldest).unwrap();
                (Self::Bcast(Pollable::new(rx).unwrap()), Box::new(ch))
            }
            "typed-broadcast" => {
                let ch = shmlane::broadcast_of::<u64>(name)
                    .capacity(64)
                    .unlink(un)
                    .create()
                    .unwrap();
                let rx = ch.typed_subscriber_from(Start::Oldest).unwrap();
                (Self::Typed(Pollable::new(rx).unwrap()), Box::new(ch))
            }
            k => panic!("kind {k}"),
        }
    }
    fn fd(&self) -> i32 {
        match self {
            Self::Spsc(p) => p.as_raw_fd(),
            Self::Mpmc(p) => p.as_raw_fd(),
            Self::Bytes(p) => p.as_raw_fd(),
            Self::Bcast(p) => p.as_raw_fd(),
            Self::Typed(p) => p.as_raw_fd(),
        }
    }
    fn rearm(&mut self) -> Result<Armed, RearmError> {
        match self {
            Self::Spsc(p) => p.rearm(),
            Self::Mpmc(p) => p.rearm(),
            Self::Bytes(p) => p.rearm(),
            Self::Bcast(p) => p.rearm(),
            Self::Typed(p) => p.rearm(),
        }
    }
    fn try_recv(&mut self) -> Got {
        let mut buf = [0u8; 64];
        let bytes = |r: Result<usize, shmlane::ByteRecvError>, buf: &[u8]| match r {
            Ok(8) => Got::V(u64::from_le_bytes(buf[..8].try_into().unwrap())),
            Ok(n) => Got::End(format!("{n} bytes")),
            Err(shmlane::ByteRecvError::Empty) => Got::Empty,
            Err(e) => Got::End(e.to_string()),
        };
        match self {
            Self::Spsc(p) => match p.try_recv() {
                Ok(v) => Got::V(v),
                Err(shmlane::TryRecvError::Empty) => Got::Empty,
                Err(e) => Got::End(e.to_string()),
            },
            Self::Mpmc(p) => match p.try_recv() {
                Ok(v) => Got::V(v),
                Err(shmlane::TryRecvError::Empty) => Got::Empty,
                Err(e) => Got::End(e.to_string()),
            },
            Self::Bytes(p) => {
                let r = p.try_recv(&mut buf);
                bytes(r, &buf)
            }
            Self::Bcast(p) => {
                let r = p.try_recv(&mut buf);
                bytes(r, &buf)
            }
            Self::Typed(p) => match p.try_recv() {
                Ok(v) => Got::V(v),
                Err(shmlane::ByteRecvError::Empty) => Got::Empty,
                Err(e) => Got::End(e.to_string()),
            },
        }
    }
    /// try_recv until Empty: the values.
    fn drain(&mut self) -> Vec<u64> {
        let mut out = Vec::new();
        loop {
            match self.try_recv() {
                Got::V(v) => out.push(v),
                Got::Empty => return out,
                Got::End(e) => panic!("drain: {e}"),
            }
        }
    }
}

struct FdWrap(i32);
impl AsRawFd for FdWrap {
    fn as_raw_fd(&self) -> i32 {
        self.0
    }
}

/// Every receiver kind, a sender in another process: not readable while empty and armed,
/// readable after each send (three, 100 ms apart, each seen through its own poll), then readable
/// again when the sender is killed, and the rearm after the drain reports `PeerDied` (once: the
/// next rearm arms again, Wait mode).
#[test]
fn readable_after_a_send_and_when_the_sender_dies_every_kind() {
    for kind in KINDS {
        let name = unique(&format!("poll-{kind}"));
        let _c = Cleanup(name.clone());
        let (mut rx, _ch) = Rx::create(kind, &name);
        let fd = FdWrap(rx.fd());
        assert_eq!(poll_in(&fd, 0), 0, "{kind}: readable before anything");
        assert_eq!(rx.rearm(), Ok(Armed::Waiting), "{kind}");
        assert_eq!(
            poll_in(&fd, 100),
            0,
            "{kind}: readable while empty and armed"
        );
        let mut sender = child("send-then-hold", &[kind, &name, "3", "100"])
            .spawn()
            .unwrap();
        let mut got = Vec::new();
        let t0 = Instant::now();
        while got.len() < 3 {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "{kind}: got {got:?}"
            );
            assert_eq!(
                poll_in(&fd, 5_000),
                1,
                "{kind}: not readable after a send ({got:?})"
            );
            got.extend(rx.drain());
            // Drained: the descriptor is still readable until the rearm clears it.
            match rx.rearm() {
                Ok(_) => {}
                Err(e) => panic!("{kind}: rearm: {e}"),
            }
        }
        assert_eq!(got, [1, 2, 3], "{kind}");
        assert_eq!(poll_in(&fd, 150), 0, "{kind}: readable with nothing sent");
        // SIGKILL: no destructor, no notify; the watcher's peer check sees it.
        sender.kill().unwrap();
        sender.wait().unwrap();
        let t1 = Instant::now();
        assert_eq!(
            poll_in(&fd, 5_000),
            1,
            "{kind}: not readable after the sender died"
        );
        let seen = t1.elapsed();
        assert!(
            seen < Duration::from_secs(2),
            "{kind}: death seen after {seen:?}"
        );
        assert_eq!(rx.drain(), Vec::<u64>::new(), "{kind}");
        assert_eq!(rx.rearm(), Err(RearmError::PeerDied), "{kind}");
        // Reported once (Wait mode): armed again, quiet.
        assert_eq!(rx.rearm(), Ok(Armed::Waiting), "{kind}");
        assert_eq!(
            poll_in(&fd, 150),
            0,
            "{kind}: readable again after the report"
        );
    }
}

/// epoll (edge of the C event loops): the descriptor registered once, waits through
/// `epoll_wait`, many cycles.
#[test]
fn epoll_sees_each_message() {
    let name = unique("poll-epoll");
    let _c = Cleanup(name.clone());
    let (mut rx, _ch) = Rx::create("spsc", &name);
    // SAFETY: plain syscalls on descriptors this test owns; results checked.
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    assert!(ep >= 0);
    let mut ev = libc::epoll_event {
        events: libc::EPOLLIN as u32,
        u64: 7,
    };
    // SAFETY: as above; `ev` is a valid event.
    let rc = unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, rx.fd(), &raw mut ev) };
    assert_eq!(rc, 0);
    assert_eq!(rx.rearm(), Ok(Armed::Waiting));
    let sender = child("send-then-hold", &["spsc", &name, "20", "5"])
        .spawn()
        .unwrap();
    let mut got = Vec::new();
    while got.len() < 20 {
        let mut out = [libc::epoll_event { events: 0, u64: 0 }; 4];
        // SAFETY: as above; `out` has room for 4 events.
        let n = unsafe { libc::epoll_wait(ep, out.as_mut_ptr(), 4, 5_000) };
        assert_eq!(n, 1, "epoll_wait: nothing within 5 s, got {got:?}");
        assert_eq!({ out[0].u64 }, 7);
        got.extend(rx.drain());
        rx.rearm().unwrap();
    }
    assert_eq!(got, (1..=20).collect::<Vec<_>>());
    let mut sender = sender;
    sender.kill().unwrap();
    sender.wait().unwrap();
    // SAFETY: closes the epoll descriptor made above.
    unsafe { libc::close(ep) };
}

/// No lost wake-up: thousands of rounds, each ending with a message the sender follows with
/// silence until it is received; a message that arrives between the last `Empty` and the rearm
/// must still make the descriptor readable (else the poll below times out, since nothing else
/// would come).
#[test]
fn no_lost_wakeup_across_many_arm_drain_cycles() {
    let name = unique("poll-rounds");
    let _c = Cleanup(name.clone());
    let (mut rx, _ch) = Rx::create("spsc", &name);
    let fd = FdWrap(rx.fd());
    let rounds = 20_000u64;
    let sender = child("rounds", &["spsc", &name, &rounds.to_string()])
        .spawn()
        .unwrap();
    let total: u64 = (0..rounds).map(|r| r % 3 + 1).sum();
    let (mut next, mut ready, mut cycles) = (1u64, 0u64, 0u64);
    assert_eq!(rx.rearm(), Ok(Armed::Waiting));
    while next <= total {
        assert_eq!(
            poll_in(&fd, 3_000),
            1,
            "lost wake-up: not readable for 3 s waiting for message {next} of {total}"
        );
        for v in rx.drain() {
            assert_eq!(v, next);
            next += 1;
        }
        cycles += 1;
        if rx.rearm().unwrap() == Armed::Ready {
            ready += 1;
        }
    }
    let (code, out) = finish(sender, Duration::from_secs(30));
    assert_eq!((code, out), (0, vec![total.to_string()]));
    eprintln!("{cycles} poll/drain/rearm cycles, {ready} rearms found a message already");
}

/// The sender makes no futex wake while the receiver is not armed: the first send fires the
/// descriptor (one wake); after the watcher ran, a burst of sends (the receiver drains only
/// after it) finds no sleeper. (Between the first notify and the watcher's withdrawal, a thread
/// wake-up, sends still find the registration: the sender waits 200 ms to leave that window.)
#[test]
fn senders_make_no_futex_wake_while_the_receiver_is_not_armed() {
    for kind in ["spsc", "mpmc", "bytes", "broadcast"] {
        let name = unique(&format!("poll-wakes-{kind}"));
        let _c = Cleanup(name.clone());
        let (mut rx, _ch) = Rx::create(kind, &name);
        let fd = FdWrap(rx.fd());
        assert_eq!(rx.rearm(), Ok(Armed::Waiting));
        let n = 60;
        let sender = child("burst-wakeups", &[kind, &name, &n.to_string()])
            .spawn()
            .unwrap();
        // Not drained until the sender is done: the ring holds the burst (60 < capacity).
        let (code, out) = finish(sender, Duration::from_secs(30));
        assert_eq!(code, 0);
        let wakeups: u64 = out[0].parse().unwrap();
        assert!(
            wakeups <= 1,
            "{kind}: {wakeups} of {n} sends made a futex wake while the receiver was not armed"
        );
        assert_eq!(poll_in(&fd, 1_000), 1, "{kind}");
        assert!(!rx.drain().is_empty(), "{kind}");
    }
}

/// No descriptor or thread is left behind, and dropping an armed handle joins its watcher at
/// once (checked in a child process: the harness runs other tests' threads in this one).
#[test]
fn dropping_the_poll_handle_joins_the_watcher_and_closes_the_fd() {
    let name = unique("poll-leaks");
    let _c = Cleanup(name.clone());
    let _ch = shmlane::spsc::<u64>(&name)
        .capacity(64)
        .unlink(UnlinkPolicy::Never)
        .create()
        .unwrap();
    let (code, out) = finish(
        child("leaks", &["spsc", &name]).spawn().unwrap(),
        Duration::from_secs(30),
    );
    assert_eq!(code, 0, "{out:?}");
    assert_eq!(out.last().map(String::as_str), Some("ok"), "{out:?}");
}

/// A hostile peer writing random words over the `ev-data` event (sequence word, sleeper count,
/// magic) while messages flow: at worst spurious readables or a wake-up late by the watcher's
/// periodic check (its positions look), never a hang; every message arrives in order.
#[test]
fn a_hostile_event_gives_spurious_or_late_readables_at_worst() {
    use std::{
        os::unix::fs::FileExt,
        sync::atomic::{AtomicBool, Ordering},
    };
    let name = unique("poll-hostile");
    let _c = Cleanup(name.clone());
    let ch = shmlane::spsc::<u64>(&name)
        .capacity(64)
        .unlink(UnlinkPolicy::Never)
        .create()
        .unwrap();
    let path = format!("/dev/shm/{name}");
    let info = shmlane_segment::inspect(std::path::Path::new(&path))
        .unwrap()
        .unwrap();
    let region = info.regions.iter().find(|r| r.name == "ev-data").unwrap();
    let offset = region.offset;
    let mut tx = ch.producer().unwrap();
    let mut rx = Pollable::new(ch.consumer().unwrap()).unwrap();
    let fd = FdWrap(rx.as_raw_fd());
    let stop = AtomicBool::new(false);
    let n = 300u64;
    std::thread::scope(|s| {
        s.spawn(|| {
            let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
            let mut x = 0x9e37_79b9_7f4a_7c15u64;
            while !stop.load(Ordering::Relaxed) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // One of the first four words: magic, seq, sleepers, reserved.
                let at = offset + (x % 4) * 4;
                file.write_all_at(&(x as u32).to_ne_bytes(), at).unwrap();
                std::thread::sleep(Duration::from_micros(200));
            }
        });
        s.spawn(|| {
            for i in 1..=n {
                tx.send(i, Some(Deadline::after(Duration::from_secs(10))))
                    .unwrap();
                std::thread::sleep(Duration::from_micros(500));
            }
        });
        let t0 = Instant::now();
        let (mut next, mut cycles) = (1u64, 0u64);
        rx.rearm().unwrap();
        while next <= n {
            assert!(t0.elapsed() < Duration::from_secs(20), "stuck at {next}");
            // Late by at most the watcher's periodic check (50 ms): 2 s is ample.
            assert_eq!(poll_in(&fd, 2_000), 1, "not readable for 2 s, at {next}");
            loop {
                match rx.try_recv() {
                    Ok(v) => {
                        assert_eq!(v, next);
                        next += 1;
                    }
                    Err(shmlane::TryRecvError::Empty) => break,
                    Err(e) => panic!("{e}"),
                }
            }
            match rx.rearm() {
                Ok(Armed::Waiting | Armed::Ready) => {}
                Err(e) => panic!("rearm: {e}"),
            }
            cycles += 1;
        }
        stop.store(true, Ordering::Relaxed);
        eprintln!("{cycles} poll cycles for {n} messages");
    });
}
