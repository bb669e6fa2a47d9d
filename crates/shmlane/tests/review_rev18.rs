//! Review rev18 (issue 18's channel fast path): the statistics folded into `stats.messages`,
//! the peer timer read on every 64th look while a wait spins, the deadline left to the wait's
//! own first look. What these check held on b50a81c; they stay as regression tests.

use std::time::{Duration, Instant};

use shmlane::{Deadline, PeersLeave, RecvError, SendError, WaitStrategy};
use shmlane_testkit::{Cleanup, child, child_role, unique};

const STRATEGIES: [WaitStrategy; 5] = [
    WaitStrategy::BusySpin,
    WaitStrategy::SpinYield,
    WaitStrategy::SpinThenPark {
        spins: 2000,
        yields: 10,
    },
    // A spin phase that never ends (every look throttled to one clock read in 64).
    WaitStrategy::SpinThenPark {
        spins: u32::MAX,
        yields: 0,
    },
    WaitStrategy::Park,
];

#[test]
fn child_entry() {
    let Some((role, args)) = child_role() else {
        return;
    };
    let ch = shmlane::spsc::<u64>(&args[0])
        .when_peers_leave(PeersLeave::Disconnect)
        .open()
        .unwrap();
    match role.as_str() {
        // Sends 10 messages, then hangs until killed.
        "send-hang" => {
            let mut tx = ch.producer().unwrap();
            for i in 0..10 {
                tx.send(i, None).unwrap();
            }
            println!("OUT:sent");
            std::thread::sleep(Duration::from_secs(120));
        }
        // Attaches as the consumer and hangs until killed, receiving nothing.
        "attach-hang" => {
            let _rx = ch.consumer().unwrap();
            println!("OUT:attached");
            std::thread::sleep(Duration::from_secs(120));
        }
        // Sends `args[1]` messages, each counted as 3 payload bytes, and leaves (drop).
        "send-count-leave" => {
            let mut tx = ch.producer().unwrap();
            for i in 0..args[1].parse::<u64>().unwrap() {
                tx.send(i, None).unwrap();
                tx.count_payload(3);
            }
            drop(tx);
            std::process::exit(0);
        }
        other => panic!("unknown role {other}"),
    }
    std::process::exit(0);
}

/// Reads the child's stdout until a line `OUT:<what>`.
fn wait_line(c: &mut std::process::Child, what: &str) {
    use std::io::BufRead;
    let out = c.stdout.as_mut().unwrap();
    let mut r = std::io::BufReader::new(out);
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            r.read_line(&mut line).unwrap() > 0,
            "child ended before {what}"
        );
        if line.trim() == format!("OUT:{what}") {
            return;
        }
    }
}

fn kill_after(mut c: std::process::Child, after: Duration) -> std::thread::JoinHandle<Instant> {
    std::thread::spawn(move || {
        std::thread::sleep(after);
        c.kill().unwrap();
        c.wait().unwrap();
        Instant::now()
    })
}

/// A blocked receiver of every wait strategy sees its producer's SIGKILL within the peer
/// check (50 ms nominal; 800 ms allowed on a loaded machine), the spinning ones included.
#[test]
fn a_receiver_of_every_strategy_sees_a_killed_producer_soon() {
    for s in STRATEGIES {
        let name = unique("rev18-rx-kill");
        let _c = Cleanup(name.clone());
        let ch = shmlane::spsc::<u64>(&name)
            .when_peers_leave(PeersLeave::Disconnect)
            .capacity(64)
            .wait(s)
            .create()
            .unwrap();
        let mut rx = ch.consumer().unwrap();
        let mut p = child("send-hang", &[&name])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        wait_line(&mut p, "sent");
        for i in 0..10 {
            assert_eq!(
                rx.recv(Some(Deadline::after(Duration::from_secs(30)))),
                Ok(i)
            );
        }
        let killer = kill_after(p, Duration::from_millis(300));
        let r = rx.recv(Some(Deadline::after(Duration::from_secs(30))));
        let seen = Instant::now();
        let death = killer.join().unwrap();
        assert_eq!(r, Err(RecvError::PeerDied), "{s:?}");
        let late = seen.saturating_duration_since(death);
        assert!(
            late < Duration::from_millis(800),
            "{s:?}: death seen {late:?} after it"
        );
    }
}

/// The same for a sender blocked on a full ring whose consumer is killed.
#[test]
fn a_sender_of_every_strategy_sees_a_killed_consumer_soon() {
    for s in STRATEGIES {
        let name = unique("rev18-tx-kill");
        let _c = Cleanup(name.clone());
        let ch = shmlane::spsc::<u64>(&name)
            .when_peers_leave(PeersLeave::Disconnect)
            .capacity(4)
            .wait(s)
            .create()
            .unwrap();
        let mut tx = ch.producer().unwrap();
        let mut c = child("attach-hang", &[&name])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        wait_line(&mut c, "attached");
        for i in 0..4 {
            tx.send(i, Some(Deadline::after(Duration::from_secs(5))))
                .unwrap();
        }
        let killer = kill_after(c, Duration::from_millis(300));
        let r = tx.send(9, Some(Deadline::after(Duration::from_secs(30))));
        let seen = Instant::now();
        let death = killer.join().unwrap();
        assert!(matches!(r, Err(SendError::PeerDied(9))), "{s:?}: {r:?}");
        let late = seen.saturating_duration_since(death);
        assert!(
            late < Duration::from_millis(800),
            "{s:?}: death seen {late:?} after it"
        );
    }
}

/// Deadlines with every strategy: one already past returns at once; one reached while the
/// wait spins (the deadline and the peer timer read on some looks only) within a bound.
#[test]
fn blocked_calls_of_every_strategy_end_at_their_deadline() {
    for s in STRATEGIES {
        let name = unique("rev18-deadline");
        let _c = Cleanup(name.clone());
        let ch = shmlane::spsc::<u64>(&name)
            .capacity(2)
            .wait(s)
            .create()
            .unwrap();
        let (mut tx, mut rx) = (ch.producer().unwrap(), ch.consumer().unwrap());
        for _ in 0..3 {
            let t0 = Instant::now();
            assert_eq!(
                rx.recv(Some(Deadline::after(Duration::ZERO))),
                Err(RecvError::Timeout),
                "{s:?}"
            );
            assert!(t0.elapsed() < Duration::from_millis(100), "{s:?}");
            let t0 = Instant::now();
            assert_eq!(
                rx.recv(Some(Deadline::after(Duration::from_millis(30)))),
                Err(RecvError::Timeout),
                "{s:?}"
            );
            let took = t0.elapsed();
            assert!(
                took >= Duration::from_millis(30) && took < Duration::from_millis(500),
                "{s:?}: {took:?}"
            );
        }
        tx.send(1, None).unwrap();
        tx.send(2, None).unwrap();
        for _ in 0..3 {
            let t0 = Instant::now();
            assert!(matches!(
                tx.send(3, Some(Deadline::after(Duration::ZERO))),
                Err(SendError::Timeout(3))
            ));
            assert!(t0.elapsed() < Duration::from_millis(100), "{s:?}");
            let t0 = Instant::now();
            assert!(matches!(
                tx.send(3, Some(Deadline::after(Duration::from_millis(30)))),
                Err(SendError::Timeout(3))
            ));
            let took = t0.elapsed();
            assert!(
                took >= Duration::from_millis(30) && took < Duration::from_millis(500),
                "{s:?}: {took:?}"
            );
        }
        assert_eq!(rx.recv(None), Ok(1));
    }
}

fn stats_of(name: &str) -> shmlane::ChannelStats {
    let info = shmlane_segment::inspect(&std::path::PathBuf::from(format!("/dev/shm/{name}")))
        .unwrap()
        .unwrap();
    shmlane::inspect(&info).unwrap()
}

/// Statistics with `stats.messages` doubling as the unpublished count: published at every
/// 64th message (63: none yet, 64: 64, 65: still 64), all on drop, with `count_payload`'s
/// bytes; and from a process that sent 63, 64 or 65 and left.
#[test]
fn statistics_flush_at_64_and_on_drop_with_count_payload() {
    for n in [63u64, 64, 65, 127, 128, 129] {
        let name = unique("rev18-stats");
        let _c = Cleanup(name.clone());
        let ch = shmlane::spsc::<u64>(&name).capacity(256).create().unwrap();
        let (mut tx, mut rx) = (ch.producer().unwrap(), ch.consumer().unwrap());
        for i in 0..n {
            tx.send(i, None).unwrap();
            tx.count_payload(3);
            assert_eq!(rx.recv(None), Ok(i));
        }
        let s = stats_of(&name);
        let flushed = n / 64 * 64;
        assert_eq!(
            (s.sent.messages, s.sent.bytes),
            (flushed, flushed * 3),
            "{n}"
        );
        assert_eq!(
            (s.received.messages, s.received.bytes),
            (flushed, flushed * 8),
            "{n}"
        );
        drop((tx, rx));
        let s = stats_of(&name);
        assert_eq!((s.sent.messages, s.sent.bytes), (n, n * 3), "{n}");
        assert_eq!((s.received.messages, s.received.bytes), (n, n * 8), "{n}");
        drop(ch);
    }
    for n in [63u64, 64, 65] {
        let name = unique("rev18-stats-proc");
        let _c = Cleanup(name.clone());
        let ch = shmlane::spsc::<u64>(&name)
            .when_peers_leave(PeersLeave::Disconnect)
            .capacity(256)
            .create()
            .unwrap();
        let mut p = child("send-count-leave", &[&name, &n.to_string()])
            .spawn()
            .unwrap();
        assert!(p.wait().unwrap().success());
        let s = stats_of(&name);
        assert_eq!(
            (s.sent.messages, s.sent.bytes),
            (n, n * 3),
            "{n} from a process"
        );
        drop(ch);
    }
}

/// A parked receiver is woken by its sender every time (the inlined notify): 20 000
/// one-at-a-time messages between two threads, each receive bounded by a deadline.
#[test]
fn a_parked_receiver_is_woken_every_time() {
    let name = unique("rev18-wake");
    let _c = Cleanup(name.clone());
    for s in [
        WaitStrategy::Park,
        WaitStrategy::SpinThenPark {
            spins: 3,
            yields: 1,
        },
    ] {
        let a = shmlane::spsc::<u64>(&format!("{name}-a"))
            .capacity(4)
            .wait(s)
            .create()
            .unwrap();
        let b = shmlane::spsc::<u64>(&format!("{name}-b"))
            .capacity(4)
            .wait(s)
            .create()
            .unwrap();
        let (mut atx, mut arx) = (a.producer().unwrap(), a.consumer().unwrap());
        let (mut btx, mut brx) = (b.producer().unwrap(), b.consumer().unwrap());
        let d = || Some(Deadline::after(Duration::from_secs(10)));
        let echo = std::thread::spawn(move || {
            for i in 0..20_000u64 {
                assert_eq!(arx.recv(d()), Ok(i));
                btx.send(i, d()).unwrap();
            }
        });
        for i in 0..20_000u64 {
            atx.send(i, d()).unwrap();
            assert_eq!(brx.recv(d()), Ok(i), "{s:?}");
        }
        echo.join().unwrap();
        let _ = std::fs::remove_file(format!("/dev/shm/{name}-a"));
        let _ = std::fs::remove_file(format!("/dev/shm/{name}-b"));
    }
}
