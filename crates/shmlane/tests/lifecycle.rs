//! The channel lifecycle with real processes (issue 16): restarts, late joiners, stale names.
//! No false blame (a death before an endpoint attached is never reported to it), no silent
//! replay (a crashed session's unread messages are refused until resumed), waiting for peers
//! (`PeersLeave::Wait`), nothing sent removed with the name (`UnlinkPolicy::LastDetach`), and
//! the README quick start in both orders. See docs/design.md, "Channel lifecycle".

use std::{
    collections::HashSet,
    io::{BufRead, BufReader},
    process::Child,
    time::{Duration, Instant},
};

use shmlane::{ByteRecvError, Deadline, OpenError, PeersLeave, RecvError, SendError, UnlinkPolicy};
use shmlane_testkit::{Cleanup, child, child_role, finish, unique};

/// The README's library quick start, process A (kept identical to README.md and lib.rs but
/// for the name; `the_readme_quick_start_is_the_one_tested` checks the text).
fn quick_start_a(name: &str) -> Result<(), Box<dyn std::error::Error>> {
    let ch = shmlane::spsc::<u64>(name).capacity(4096).open_or_create()?;
    let mut tx = ch.producer()?;
    tx.send(42, None)?; // blocks only while the ring is full
    Ok(())
}

/// The quick start, process B.
fn quick_start_b(name: &str) -> Result<u64, Box<dyn std::error::Error>> {
    let ch = shmlane::spsc::<u64>(name).capacity(4096).open_or_create()?;
    let mut rx = ch.consumer()?;
    let got = rx.recv(None)?;
    Ok(got)
}

/// A deadline `n` seconds away, as the blocking calls take it.
#[allow(clippy::unnecessary_wraps)]
fn secs(n: u64) -> Option<Deadline> {
    Some(Deadline::after(Duration::from_secs(n)))
}

fn order(id: u64, i: u64) -> u64 {
    id * 1_000_000 + i
}

#[test]
fn child_entry() {
    let Some((role, args)) = child_role() else {
        return;
    };
    let name = args[0].as_str();
    match role.as_str() {
        // Holds an MPMC receiver (or sender) and hangs until killed.
        "hold-receiver" => {
            let ch = shmlane::mpmc::<u64>(name).open().unwrap();
            let _rx = ch.receiver().unwrap();
            println!("OUT:held");
            std::thread::sleep(Duration::from_secs(300));
        }
        "hold-sender" => {
            let ch = shmlane::mpmc::<u64>(name).open().unwrap();
            let _tx = ch.sender().unwrap();
            println!("OUT:held");
            std::thread::sleep(Duration::from_secs(300));
        }
        // Sends `n` messages (mpmc or bytes), then hangs until killed.
        "send-hang" => {
            let n: u64 = args[2].parse().unwrap();
            // Both endpoints stay held until the process is killed.
            let (_held_b, _held_m);
            if args[1] == "bytes" {
                let ch = shmlane::bytes(name).open().unwrap();
                let mut tx = ch.byte_sender().unwrap();
                for i in 0..n {
                    tx.send(&i.to_le_bytes(), secs(10)).unwrap();
                }
                _held_b = (ch, tx);
            } else {
                let ch = shmlane::mpmc::<u64>(name).open().unwrap();
                let mut tx = ch.sender().unwrap();
                for i in 0..n {
                    tx.send(i, secs(10)).unwrap();
                }
                _held_m = (ch, tx);
            }
            println!("OUT:sent");
            std::thread::sleep(Duration::from_secs(300));
        }
        // Sends `n` orders of sender `id` (mpmc or bytes) and leaves cleanly.
        "orders" => {
            let (id, n): (u64, u64) = (args[2].parse().unwrap(), args[3].parse().unwrap());
            if args[1] == "bytes" {
                let ch = shmlane::bytes(name).open().unwrap();
                let mut tx = ch.byte_sender().unwrap();
                for i in 0..n {
                    tx.send(&order(id, i).to_le_bytes(), secs(20)).unwrap();
                }
            } else {
                let ch = shmlane::mpmc::<u64>(name).open().unwrap();
                let mut tx = ch.sender().unwrap();
                for i in 0..n {
                    tx.send(order(id, i), secs(20)).unwrap();
                }
            }
            println!("OUT:sent");
        }
        // Sends `n` messages on a channel removed with its last endpoint, then leaves cleanly
        // (nobody has received them).
        "send-last-detach" => {
            let n: u64 = args[1].parse().unwrap();
            let ch = shmlane::mpmc::<u64>(name)
                .capacity(4096)
                .unlink(UnlinkPolicy::LastDetach)
                .open_or_create()
                .unwrap();
            let mut tx = ch.sender().unwrap();
            for i in 0..n {
                tx.send(i, secs(10)).unwrap();
            }
            println!("OUT:sent");
        }
        // Publisher generation `gen`: `n` messages "gen:i", then exits or hangs.
        "publish" => {
            let (generation, n): (u64, u64) = (args[1].parse().unwrap(), args[2].parse().unwrap());
            let ch = shmlane::broadcast(name).open().unwrap();
            let mut p = ch.publisher().unwrap();
            p.wait_for_peer(secs(10)).unwrap();
            for i in 0..n {
                p.send(format!("{generation}:{i}").as_bytes()).unwrap();
            }
            println!("OUT:published");
            if args[3] == "hang" {
                std::thread::sleep(Duration::from_secs(300));
            }
        }
        "quick-a" => {
            quick_start_a(name).unwrap();
            println!("OUT:sent");
        }
        "quick-b" => println!("OUT:got {}", quick_start_b(name).unwrap()),
        other => panic!("unknown role {other}"),
    }
    std::process::exit(0);
}

/// Reads the child's output until the line `OUT:<want>`.
fn wait_line(c: &mut Child, want: &str) {
    let out = c.stdout.take().expect("piped stdout");
    let want = format!("OUT:{want}");
    let seen = BufReader::new(out)
        .lines()
        .map_while(Result::ok)
        .any(|l| l == want);
    assert!(seen, "the child never printed {want}");
}

/// Spawns `role` and kills it (SIGKILL) once it printed `OUT:<line>`; returns its pid.
fn kill_after(role: &str, args: &[&str], line: &str) -> u32 {
    let mut c = child(role, args).spawn().unwrap();
    wait_line(&mut c, line);
    let pid = c.id();
    c.kill().unwrap();
    c.wait().unwrap();
    pid
}

fn cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid out-pointer; the calling thread's CPU clock.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &raw mut ts) };
    assert_eq!(r, 0);
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Runs `f` (a blocking call with a `d` deadline) and checks it waited about `d`, without a
/// busy loop (this thread's CPU time well below the wait).
fn waits_out<R: std::fmt::Debug>(d: Duration, f: impl FnOnce(Option<Deadline>) -> R) -> R {
    let (t0, c0) = (Instant::now(), cpu_time());
    let r = f(Some(Deadline::after(d)));
    let (waited, cpu) = (t0.elapsed(), cpu_time().saturating_sub(c0));
    assert!(
        waited >= d.saturating_sub(Duration::from_millis(5))
            && waited < d + Duration::from_millis(500),
        "waited {waited:?} for a {d:?} deadline ({r:?})"
    );
    assert!(
        cpu < d / 4,
        "busy loop: {cpu:?} of CPU in a {waited:?} wait ({r:?})"
    );
    r
}

/// After a receiver process was killed (kill -9), a new sender and receiver on the same name
/// work, and the receiver leaving cleanly is `Disconnected` for the sender, not a receiver's
/// death; likewise a killed sender is never blamed to the next pair's receiver.
#[test]
fn a_killed_peer_is_not_blamed_on_the_next_pair() {
    let name = unique("life-blame");
    let _c = Cleanup(name.clone());
    let ch = shmlane::mpmc::<u64>(&name).capacity(8).create().unwrap();
    kill_after("hold-receiver", &[&name], "held");

    let pair = shmlane::mpmc::<u64>(&name)
        .when_peers_leave(PeersLeave::Disconnect)
        .open()
        .unwrap();
    let (mut tx, mut rx) = (pair.sender().unwrap(), pair.receiver().unwrap());
    for i in 0..5 {
        tx.send(i, secs(5)).unwrap();
        assert_eq!(rx.recv(secs(5)), Ok(i));
    }
    drop(rx);
    for i in 0..8 {
        tx.send(i, secs(5)).unwrap();
    }
    assert_eq!(
        tx.send(99, secs(5)),
        Err(SendError::Disconnected(99)),
        "the new receiver left cleanly; the receiver killed before this sender attached is not its peer's death"
    );
    drop((tx, pair, ch));

    // The other way round: a sender killed, then a new pair.
    let name = unique("life-blame-tx");
    let _c = Cleanup(name.clone());
    let ch = shmlane::mpmc::<u64>(&name).capacity(64).create().unwrap();
    kill_after("hold-sender", &[&name], "held");
    let pair = shmlane::mpmc::<u64>(&name)
        .when_peers_leave(PeersLeave::Disconnect)
        .open()
        .unwrap();
    let (mut tx, mut rx) = (pair.sender().unwrap(), pair.receiver().unwrap());
    for i in 0..10 {
        tx.send(i, secs(5)).unwrap();
    }
    drop(tx);
    for i in 0..10 {
        assert_eq!(rx.recv(secs(5)), Ok(i));
    }
    assert_eq!(
        rx.recv(secs(5)),
        Err(RecvError::Disconnected),
        "the new sender left cleanly; the sender killed before this receiver attached is not reported"
    );
    drop(ch);
}

/// A sender process killed with messages queued and nobody attached: opening is refused
/// (`Stale`, naming the dead process), never a silent replay; `resume(true)` delivers them,
/// and the old death is not reported. MPMC and byte channels.
#[test]
fn a_crashed_sessions_messages_are_refused_until_resumed() {
    for kind in ["mpmc", "bytes"] {
        let name = unique(&format!("life-stale-{kind}"));
        let _c = Cleanup(name.clone());
        if kind == "bytes" {
            drop(shmlane::bytes(&name).capacity(4096).create().unwrap());
        } else {
            drop(shmlane::mpmc::<u64>(&name).capacity(64).create().unwrap());
        }
        let pid = kill_after("send-hang", &[&name, kind, "10"], "sent");
        let refused = |r: Result<(), OpenError>| match r {
            Err(e @ OpenError::Stale { .. }) => {
                let OpenError::Stale {
                    pid: p,
                    role,
                    unread,
                    ..
                } = &e
                else {
                    unreachable!()
                };
                assert_eq!((*p, *role), (pid, "sender"), "{kind}: {e}");
                // Messages, for byte channels too (not the 160 bytes their 10 records take:
                // the error says "holds 10 unread messages").
                assert_eq!(*unread, 10, "{kind}: {e}");
                let msg = e.to_string();
                assert!(
                    msg.contains(&format!("process {pid} (sender) died"))
                        && msg.contains(&format!("shmlane rm {name}"))
                        && msg.contains("resume"),
                    "{msg}"
                );
            }
            other => panic!("{kind}: a crashed session's messages were not refused: {other:?}"),
        };
        if kind == "bytes" {
            refused(shmlane::bytes(&name).open().map(drop));
            refused(shmlane::bytes(&name).open_or_create().map(drop));
            let ch = shmlane::bytes(&name).resume(true).open().unwrap();
            let mut rx = ch.byte_receiver().unwrap();
            let mut buf = [0u8; 64];
            for i in 0u64..10 {
                let n = rx.recv(&mut buf, secs(5)).unwrap();
                assert_eq!(&buf[..n], &i.to_le_bytes());
            }
            // The sender died before this receiver attached: not reported; Wait mode waits.
            assert_eq!(
                waits_out(Duration::from_millis(300), |d| rx.recv(&mut buf, d)),
                Err(ByteRecvError::Timeout)
            );
        } else {
            refused(shmlane::mpmc::<u64>(&name).open().map(drop));
            refused(shmlane::mpmc::<u64>(&name).open_or_create().map(drop));
            let ch = shmlane::mpmc::<u64>(&name).resume(true).open().unwrap();
            let mut rx = ch.receiver().unwrap();
            for i in 0..10 {
                assert_eq!(rx.recv(secs(5)), Ok(i));
            }
            assert_eq!(
                waits_out(Duration::from_millis(300), |d| rx.recv(d)),
                Err(RecvError::Timeout)
            );
            drop((rx, ch));
            // Drained: the name opens like a first run, without `resume`.
            shmlane::mpmc::<u64>(&name).open().unwrap();
        }
    }
}

/// A receiver serves three sender processes started 300 ms apart (each sends 1,000 orders
/// and leaves) and gets all 3,000: on a persistent channel it waits for senders
/// (`PeersLeave::Wait`) instead of ending when the first one leaves. MPMC and bytes.
#[test]
fn a_receiver_serves_three_staggered_sender_processes() {
    for kind in ["mpmc", "bytes"] {
        let name = unique(&format!("life-three-{kind}"));
        let _c = Cleanup(name.clone());
        let (bch, mch);
        let mut brx = None;
        let mut mrx = None;
        if kind == "bytes" {
            bch = shmlane::bytes(&name).capacity(4096).create().unwrap();
            brx = Some(bch.byte_receiver().unwrap());
        } else {
            mch = shmlane::mpmc::<u64>(&name).capacity(256).create().unwrap();
            mrx = Some(mch.receiver().unwrap());
        }
        let spawner = {
            let name = name.clone();
            std::thread::spawn(move || {
                let mut kids = Vec::new();
                for id in 1..=3 {
                    let id = id.to_string();
                    kids.push(
                        child("orders", &[&name, kind, &id, "1000"])
                            .spawn()
                            .unwrap(),
                    );
                    std::thread::sleep(Duration::from_millis(300));
                }
                for k in kids {
                    assert_eq!(finish(k, Duration::from_secs(60)), (0, vec!["sent".into()]));
                }
            })
        };
        let mut got = HashSet::new();
        let deadline = Deadline::after(Duration::from_secs(30));
        let d = || Some(deadline);
        let mut buf = [0u8; 64];
        while got.len() < 3000 {
            let v = if let Some(rx) = &mut brx {
                let n = rx
                    .recv(&mut buf, d())
                    .unwrap_or_else(|e| panic!("{kind}: after {} orders: {e:?}", got.len()));
                u64::from_le_bytes(buf[..n].try_into().unwrap())
            } else {
                mrx.as_mut()
                    .unwrap()
                    .recv(d())
                    .unwrap_or_else(|e| panic!("{kind}: after {} orders: {e:?}", got.len()))
            };
            assert!(got.insert(v), "{kind}: order {v} twice");
        }
        spawner.join().unwrap();
        let want: HashSet<u64> = (1..=3)
            .flat_map(|id| (0..1000).map(move |i| order(id, i)))
            .collect();
        assert_eq!(got, want, "{kind}");
    }
}

fn shm_path(name: &str) -> std::path::PathBuf {
    std::path::Path::new("/dev/shm").join(name)
}

/// With `UnlinkPolicy::LastDetach`, the last endpoint leaving does not remove a channel whose
/// ring holds unread messages: it stays, idle, and a later receiver gets every message; once
/// drained, the last one to leave removes the name.
#[test]
fn last_detach_keeps_a_channel_with_unread_messages() {
    let name = unique("life-keep");
    let _c = Cleanup(name.clone());
    let c = child("send-last-detach", &[&name, "2000"]).spawn().unwrap();
    assert_eq!(finish(c, Duration::from_secs(60)), (0, vec!["sent".into()]));
    assert!(
        shm_path(&name).exists(),
        "the last sender left with 2,000 unread messages and the channel vanished with them"
    );
    let info = shmlane_segment::inspect(&shm_path(&name)).unwrap().unwrap();
    let stats = shmlane::inspect(&info).unwrap();
    assert_eq!((stats.len, stats.endpoints), (2000, (0, 0)));

    let ch = shmlane::mpmc::<u64>(&name)
        .unlink(UnlinkPolicy::LastDetach)
        .open()
        .unwrap();
    let mut rx = ch.receiver().unwrap();
    for i in 0..2000 {
        assert_eq!(rx.recv(secs(5)), Ok(i));
    }
    // Disconnect (the LastDetach default): the senders it received from have left.
    assert_eq!(rx.recv(secs(5)), Err(RecvError::Disconnected));
    drop((rx, ch));
    assert!(
        !shm_path(&name).exists(),
        "drained: the last endpoint removes the name"
    );
}

/// `keep_unread(false)` (pipe-like, the `shmlane` command's implicit channels): the last to
/// leave removes the name with its unread messages, so the next open is a first run; without
/// it the name stays with them (the default above).
#[test]
fn keep_unread_false_is_pipe_like() {
    for keep in [false, true] {
        let name = unique(&format!("life-nokeep-{keep}"));
        let _c = Cleanup(name.clone());
        let open = || {
            shmlane::spsc::<u64>(&name)
                .capacity(64)
                .unlink(UnlinkPolicy::LastDetach)
                .keep_unread(keep)
                .open_or_create()
                .unwrap()
        };
        let ch = open();
        let mut tx = ch.producer().unwrap();
        for i in 0..10 {
            tx.try_send(i).unwrap();
        }
        drop((tx, ch));
        assert_eq!(shm_path(&name).exists(), keep, "keep_unread({keep})");
        let ch = open();
        assert_eq!(
            ch.created(),
            !keep,
            "keep_unread({keep}): a first run iff removed"
        );
        let mut rx = ch.consumer().unwrap();
        assert_eq!(rx.try_recv().is_ok(), keep, "keep_unread({keep})");
    }
}

/// `PeersLeave::Wait`: after the senders left (cleanly or killed), `recv` waits until its
/// deadline every time it is called (no busy loop), reporting a death once. `Disconnect`:
/// `Disconnected` is final and returned at once.
#[test]
fn recv_in_wait_mode_waits_out_its_deadline_after_senders_leave() {
    let name = unique("life-wait");
    let _c = Cleanup(name.clone());
    let ch = shmlane::mpmc::<u64>(&name).capacity(64).create().unwrap();
    let mut rx = ch.receiver().unwrap();
    let c = child("orders", &[&name, "mpmc", "1", "10"])
        .spawn()
        .unwrap();
    assert_eq!(finish(c, Duration::from_secs(60)).0, 0);
    for i in 0..10 {
        assert_eq!(rx.recv(secs(5)), Ok(order(1, i)));
    }
    let d = Duration::from_millis(400);
    for _ in 0..2 {
        assert_eq!(waits_out(d, |d| rx.recv(d)), Err(RecvError::Timeout));
    }
    // A sender killed: `PeerDied` once, then waiting again.
    kill_after("hold-sender", &[&name], "held");
    assert_eq!(rx.recv(secs(5)), Err(RecvError::PeerDied));
    for _ in 0..2 {
        assert_eq!(waits_out(d, |d| rx.recv(d)), Err(RecvError::Timeout));
    }
    // `wait_for_peer` waits too, and returns once a sender attaches.
    assert!(matches!(
        waits_out(Duration::from_millis(200), |d| rx.wait_for_peer(d)),
        Err(shmlane::WaitPeerError::Timeout)
    ));
    let mut c = child("hold-sender", &[&name]).spawn().unwrap();
    rx.wait_for_peer(secs(10)).unwrap();
    c.kill().unwrap();
    c.wait().unwrap();

    // Disconnect mode: final, at once, every time.
    let ch2 = shmlane::mpmc::<u64>(&name)
        .when_peers_leave(PeersLeave::Disconnect)
        .open()
        .unwrap();
    let mut rx2 = ch2.receiver().unwrap();
    let tx = ch2.sender().unwrap();
    drop(tx);
    for _ in 0..3 {
        let t0 = Instant::now();
        assert_eq!(rx2.recv(secs(5)), Err(RecvError::Disconnected));
        assert!(t0.elapsed() < Duration::from_secs(1));
    }
}

/// A subscriber on a persistent broadcast channel outlives three publisher generations (the
/// first killed, the others leaving cleanly) and receives every message of each, with the
/// first publisher's death reported exactly once.
#[test]
fn a_subscriber_survives_two_publisher_restarts() {
    let name = unique("life-bcast");
    let _c = Cleanup(name.clone());
    let ch = shmlane::broadcast(&name).capacity(1024).create().unwrap();
    let mut sub = ch.subscriber().unwrap();
    let (died_tx, died) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let (mut got, mut deaths) = (Vec::new(), 0);
        let mut buf = [0u8; 240];
        let deadline = Deadline::after(Duration::from_secs(60));
        while got.len() < 600 {
            match sub.recv(&mut buf, Some(deadline)) {
                Ok(n) => got.push(String::from_utf8(buf[..n].to_vec()).unwrap()),
                Err(ByteRecvError::PeerDied) => {
                    deaths += 1;
                    died_tx.send(got.len()).unwrap();
                }
                Err(e) => panic!("after {} messages: {e:?}", got.len()),
            }
        }
        (got, deaths)
    });
    kill_after("publish", &[&name, "1", "200", "hang"], "published");
    // Reported after the dead publisher's 200 messages, before the next one starts (else a
    // live publisher could hide it until it leaves).
    assert_eq!(died.recv_timeout(Duration::from_secs(10)), Ok(200));
    for generation in ["2", "3"] {
        let c = child("publish", &[&name, generation, "200", "exit"])
            .spawn()
            .unwrap();
        assert_eq!(finish(c, Duration::from_secs(60)).0, 0);
    }
    let (got, deaths) = reader.join().unwrap();
    let want: Vec<String> = (1..=3)
        .flat_map(|g| (0..200).map(move |i| format!("{g}:{i}")))
        .collect();
    assert_eq!(got, want);
    assert_eq!(deaths, 1, "the killed publisher's death, reported once");
}

/// The README's quick start works whichever process starts first.
#[test]
fn the_quick_start_works_in_both_orders() {
    // A first (and gone) then B.
    let name = unique("life-quick-ab");
    let _c = Cleanup(name.clone());
    let a = child("quick-a", &[&name]).spawn().unwrap();
    assert_eq!(finish(a, Duration::from_secs(30)), (0, vec!["sent".into()]));
    let b = child("quick-b", &[&name]).spawn().unwrap();
    assert_eq!(
        finish(b, Duration::from_secs(30)),
        (0, vec!["got 42".into()])
    );

    // B first (creates the channel and waits), then A.
    let name = unique("life-quick-ba");
    let _c = Cleanup(name.clone());
    let b = child("quick-b", &[&name]).spawn().unwrap();
    // Killed if the test fails before B is waited for (else it would wait for ever).
    let b = KillOnDrop(Some(b));
    let t0 = Instant::now();
    while !shm_path(&name).exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "B never created the channel"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(100));
    let a = child("quick-a", &[&name]).spawn().unwrap();
    assert_eq!(finish(a, Duration::from_secs(30)), (0, vec!["sent".into()]));
    let b = b.take();
    assert_eq!(
        finish(b, Duration::from_secs(30)),
        (0, vec!["got 42".into()])
    );
}

/// Kills the child when dropped (a failing test leaves no process behind).
struct KillOnDrop(Option<Child>);

impl KillOnDrop {
    fn take(mut self) -> Child {
        self.0.take().expect("taken once")
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The quick start tested above is the one README.md and the crate docs show.
#[test]
fn the_readme_quick_start_is_the_one_tested() {
    let readme = include_str!("../../../README.md");
    let lib = include_str!("../src/lib.rs");
    for line in [
        r#"let ch = shmlane::spsc::<u64>("ticks").capacity(4096).open_or_create()?;"#,
        "let mut tx = ch.producer()?;",
        "tx.send(42, None)?;",
        "let mut rx = ch.consumer()?;",
        "assert_eq!(rx.recv(None)?, 42);",
    ] {
        assert!(readme.contains(line), "README.md lacks {line}");
        assert!(lib.contains(line), "lib.rs lacks {line}");
    }
    // Both processes ask for the same capacity (else the second gets a mismatch).
    assert_eq!(
        readme
            .matches(r#"spsc::<u64>("ticks").capacity(4096).open_or_create()"#)
            .count(),
        2
    );
}

/// The latest-value quick start of README.md and the crate docs, run in one process: the
/// reader's first `read_if_changed` returns the written value and its version, the second
/// says unchanged.
#[test]
fn the_readme_latest_quick_start_works() {
    #[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
    #[repr(C)]
    struct Params {
        gain: f32,
        pan: f32,
    }
    let readme = include_str!("../../../README.md");
    let lib = include_str!("../src/lib.rs");
    for line in [
        "struct Params { gain: f32, pan: f32 }",
        r#"let ch = shmlane::latest::<Params>("params").open_or_create()?;"#,
        "let mut w = ch.writer()?;",
        "let version = w.write(&Params { gain: 0.5, pan: 0.0 })?;",
        "let mut r = ch.reader()?;",
        "if let Some((p, v)) = r.read_if_changed()? { /* apply p (version v) */ }",
    ] {
        assert!(readme.contains(line), "README.md lacks {line}");
        assert!(lib.contains(line), "lib.rs lacks {line}");
    }
    let name = format!("readme-latest-{}", std::process::id());
    let ch = shmlane::latest::<Params>(&name)
        .unlink(shmlane::UnlinkPolicy::LastDetach)
        .open_or_create()
        .unwrap();
    let mut w = ch.writer().unwrap();
    let version = w
        .write(&Params {
            gain: 0.5,
            pan: 0.0,
        })
        .unwrap();
    let other = shmlane::latest::<Params>(&name).open_or_create().unwrap();
    let mut r = other.reader().unwrap();
    let (p, v) = r.read_if_changed().unwrap().expect("a value was written");
    assert_eq!(
        (p, v),
        (
            Params {
                gain: 0.5,
                pan: 0.0
            },
            version
        )
    );
    assert_eq!(
        r.read_if_changed().unwrap(),
        None,
        "unchanged since the last read"
    );
}
