//! Never-waking endpoints (`Wakes::Never`): the real-time side makes no wake-up (no futex
//! call: its side's `wakeups` statistic stays 0) even while its peer sleeps in a blocking call,
//! and that peer still sees its progress within `NEVER_WAKE_POLL` plus scheduling, because
//! every blocking wait reads the header's count of never-waking peers and parks at most 1 ms
//! per slice while it is not 0. Without the count the peer would park for its liveness slice
//! (`PEER_CHECK`, 50 ms) and see the progress up to 50 ms late.
//!
//! The bound checked: over `ROUNDS` rounds in which the never-waking side frees a slot (or
//! sends a message) 110 ms after the peer blocked, the time from that operation to the peer's
//! blocked call returning is `NEVER_WAKE_POLL` plus the scheduler's delay: on a quiet machine
//! every round takes about 1 ms or less; with 50 ms slices every round would take about 40 ms
//! (110 ms is 10 ms past a slice boundary). Asserted: at least `FAST_ROUNDS` of the rounds within
//! `BOUND` (20 ms), which a machine loaded to the point of 10-50 ms scheduling delays still
//! passes (some rounds get the CPU at once) and 50 ms slices never do.

use std::{
    os::unix::fs::FileExt,
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use shmlane::{Deadline, NEVER_WAKE_POLL, RecvError, SendError, UnlinkPolicy, WaitStrategy, Wakes};
use shmlane_testkit::{Cleanup, unique};

const ROUNDS: usize = 9;
const GAP: Duration = Duration::from_millis(110);
const BOUND: Duration = Duration::from_millis(20);
const FAST_ROUNDS: usize = 2;

/// A deadline for calls that must succeed: far past any bound, so a hang fails the test.
#[allow(
    clippy::unnecessary_wraps,
    reason = "passed where the calls take an Option"
)]
fn long() -> Option<Deadline> {
    Some(Deadline::after(Duration::from_secs(5)))
}

/// Offset of the channel header in the segment file.
fn chan_at(name: &str) -> u64 {
    let info = shmlane_segment::inspect(std::path::Path::new(&format!("/dev/shm/{name}")))
        .unwrap()
        .unwrap();
    info.regions
        .iter()
        .find(|r| r.name == "chan")
        .unwrap()
        .offset
}

/// The header's never-waking count of a side (0 senders, 1 receivers): bytes 80 and 88.
fn never_word(name: &str, side: u64) -> u64 {
    let f = std::fs::File::open(format!("/dev/shm/{name}")).unwrap();
    let mut b = [0u8; 8];
    f.read_exact_at(&mut b, chan_at(name) + 80 + 8 * side)
        .unwrap();
    u64::from_ne_bytes(b)
}

fn set_never_word(name: &str, side: u64, v: u64) {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(format!("/dev/shm/{name}"))
        .unwrap();
    f.write_all_at(&v.to_ne_bytes(), chan_at(name) + 80 + 8 * side)
        .unwrap();
}

/// `ROUNDS` times: waits `GAP` (the peer blocks meanwhile), runs `op` (the never-waking side
/// frees a slot or sends), then waits for the peer's report that its blocked call returned.
/// Returns the delays, sorted.
fn delays(done: &mpsc::Receiver<Instant>, mut op: impl FnMut(usize)) -> Vec<Duration> {
    let mut out = Vec::new();
    for r in 0..ROUNDS {
        thread::sleep(GAP);
        let at = Instant::now();
        op(r);
        let back = done
            .recv_timeout(Duration::from_secs(10))
            .expect("the blocked peer never returned");
        out.push(back.saturating_duration_since(at));
    }
    out.sort();
    out
}

/// `d` sorted: at least `FAST_ROUNDS` delays within `BOUND`.
fn check_delays(what: &str, d: &[Duration]) {
    eprintln!("{what}: delays {d:?} (median {:?})", d[d.len() / 2]);
    assert!(
        d[FAST_ROUNDS - 1] < BOUND,
        "{what}: the blocked peer saw the never-waking side's progress late: fewer than \
         {FAST_ROUNDS} of {} rounds within {BOUND:?}: {d:?}",
        d.len()
    );
}

/// Runs the peer's blocking calls on a thread (`peer` reports each return on the sender it is
/// given), times `op` against them (`delays`), checks the bound and returns what `peer`
/// returned (its endpoint, for the statistics).
fn against_blocked_peer<P: Send + 'static>(
    what: &str,
    peer: impl FnOnce(mpsc::Sender<Instant>) -> P + Send + 'static,
    op: impl FnMut(usize),
) -> P {
    let (report, done) = mpsc::channel();
    let t = thread::spawn(move || peer(report));
    let d = delays(&done, op);
    let p = t.join().unwrap();
    check_delays(what, &d);
    p
}

#[test]
fn a_full_ring_sender_sees_a_never_waking_consumer_free_slots() {
    let name = unique("never-full");
    let _c = Cleanup(name.clone());
    let ch = shmlane::spsc::<u64>(&name)
        .capacity(4)
        .unlink(UnlinkPolicy::CreatorDrop)
        .create()
        .unwrap();
    let mut rx = ch.consumer().unwrap();
    rx.set_wakes(Wakes::Never);
    assert_eq!(never_word(&name, 1), 1);
    let mut tx = ch.producer().unwrap();
    for i in 0..4 {
        tx.try_send(i).unwrap();
    }
    let peer = move |report: mpsc::Sender<Instant>| {
        for i in 4..4 + ROUNDS as u64 {
            tx.send(i, long()).unwrap();
            report.send(Instant::now()).unwrap();
        }
        tx
    };
    let op = |r| assert_eq!(rx.try_recv().unwrap(), r as u64);
    let mut tx = against_blocked_peer("send on a full ring", peer, op);
    assert!(
        tx.stats().sleeps >= ROUNDS as u64,
        "the sender never blocked"
    );
    assert_eq!(
        rx.stats().wakeups,
        0,
        "the never-waking consumer woke its peer"
    );
}

#[test]
fn an_empty_ring_receiver_sees_a_never_waking_producer_send() {
    let name = unique("never-empty");
    let _c = Cleanup(name.clone());
    let ch = shmlane::spsc::<u64>(&name)
        .capacity(4)
        .unlink(UnlinkPolicy::CreatorDrop)
        .create()
        .unwrap();
    let mut rx = ch.consumer().unwrap();
    let mut tx = ch.producer().unwrap();
    tx.set_wakes(Wakes::Never);
    assert_eq!((never_word(&name, 0), never_word(&name, 1)), (1, 0));
    let peer = move |report: mpsc::Sender<Instant>| {
        for i in 0..ROUNDS as u64 {
            assert_eq!(rx.recv(long()).unwrap(), i);
            report.send(Instant::now()).unwrap();
        }
        rx
    };
    let op = |r| tx.try_send(r as u64).unwrap();
    let mut rx = against_blocked_peer("recv on an empty ring", peer, op);
    assert!(
        rx.stats().sleeps >= ROUNDS as u64,
        "the receiver never blocked"
    );
    assert_eq!(
        tx.stats().wakeups,
        0,
        "the never-waking producer woke its peer"
    );
}

#[test]
fn byte_channels_both_ways() {
    let name = unique("never-bytes");
    let _c = Cleanup(name.clone());
    let ch = shmlane::bytes(&name)
        .capacity(256)
        .unlink(UnlinkPolicy::CreatorDrop)
        .create()
        .unwrap();
    // A never-waking sender, a receiver blocked in recv.
    let mut rx = ch.byte_receiver().unwrap();
    let mut tx = ch.byte_sender().unwrap();
    tx.set_wakes(Wakes::Never);
    let peer = move |report: mpsc::Sender<Instant>| {
        let mut buf = [0u8; 64];
        for i in 0..ROUNDS {
            let n = rx.recv(&mut buf, long()).unwrap();
            assert_eq!(&buf[..n], format!("m{i}").as_bytes());
            report.send(Instant::now()).unwrap();
        }
        rx
    };
    let op = |r| tx.try_send(format!("m{r}").as_bytes()).unwrap();
    let mut rx = against_blocked_peer("byte recv", peer, op);
    assert_eq!(tx.stats().wakeups, 0);
    tx.set_wakes(Wakes::Peers);
    assert_eq!(never_word(&name, 0), 0);

    // A never-waking receiver, a sender blocked in send (its claim) on a full ring.
    rx.set_wakes(Wakes::Never);
    let msg = vec![7u8; tx.max_message()];
    let peer = move |report: mpsc::Sender<Instant>| {
        for _ in 0..ROUNDS {
            // Full (a record ring may free space in larger steps than one record), then
            // the measured send, which blocks.
            while tx.try_send(&msg).is_ok() {}
            tx.send(&msg, long()).unwrap();
            report.send(Instant::now()).unwrap();
        }
        tx
    };
    let mut buf = [0u8; 256];
    let op = |_| assert!(rx.try_recv(&mut buf).unwrap() > 0);
    let mut tx = against_blocked_peer("byte send on a full ring", peer, op);
    assert!(tx.stats().sleeps >= ROUNDS as u64);
    assert_eq!(rx.stats().wakeups, 0);
}

#[test]
fn a_subscriber_sees_a_never_waking_publisher() {
    let name = unique("never-bcast");
    let _c = Cleanup(name.clone());
    let ch = shmlane::broadcast(&name)
        .capacity(16)
        .msg_size(32)
        .unlink(UnlinkPolicy::CreatorDrop)
        .wakes(Wakes::Never)
        .create()
        .unwrap();
    let mut publisher = ch.publisher().unwrap();
    // The builder's default counted it; a subscriber is made by a handle that wakes.
    assert_eq!(never_word(&name, 0), 1);
    let sub_ch = shmlane::broadcast(&name).open().unwrap();
    let mut sub = sub_ch.subscriber().unwrap();
    let peer = move |report: mpsc::Sender<Instant>| {
        let mut buf = [0u8; 32];
        for i in 0..ROUNDS {
            let n = sub.recv(&mut buf, long()).unwrap();
            assert_eq!(&buf[..n], format!("b{i}").as_bytes());
            report.send(Instant::now()).unwrap();
        }
        sub
    };
    let op = |r| {
        publisher.send(format!("b{r}").as_bytes()).unwrap();
    };
    let mut sub = against_blocked_peer("subscriber recv", peer, op);
    assert!(sub.stats().sleeps >= ROUNDS as u64);
    assert_eq!(publisher.stats().wakeups, 0);
    drop(publisher);
    assert_eq!(
        never_word(&name, 0),
        0,
        "a dropped never-waking publisher stays counted"
    );
}

/// Deadlines hold beside a never-waking peer, and beside a hostile count: a count nobody
/// holds (`u64::MAX`, as a hostile process could write) only shortens the slices, a zeroed
/// count beside a never-waking peer only lengthens them to the liveness slice (50 ms).
#[test]
fn deadlines_hold_and_a_hostile_count_only_changes_the_slice() {
    let name = unique("never-deadline");
    let _c = Cleanup(name.clone());
    let ch = shmlane::spsc::<u64>(&name)
        .capacity(2)
        .unlink(UnlinkPolicy::CreatorDrop)
        .wakes(Wakes::Never)
        .create()
        .unwrap();
    let (mut tx, mut rx) = (ch.producer().unwrap(), ch.consumer().unwrap());
    assert_eq!((never_word(&name, 0), never_word(&name, 1)), (1, 1));
    let within = |what: &str, t: Instant, want: Duration| {
        let took = t.elapsed();
        assert!(
            took >= want && took < want + Duration::from_millis(150),
            "{what}: {took:?} for a {want:?} deadline"
        );
    };
    let d = Duration::from_millis(100);
    // Empty ring, a never-waking producer: recv times out by its deadline.
    let t = Instant::now();
    assert!(matches!(
        rx.recv(Some(Deadline::after(d))),
        Err(RecvError::Timeout)
    ));
    within("recv", t, d);
    tx.try_send(1).unwrap();
    tx.try_send(2).unwrap();
    let t = Instant::now();
    assert!(matches!(
        tx.send(3, Some(Deadline::after(d))),
        Err(SendError::Timeout(3))
    ));
    within("send", t, d);
    // Hostile: every count set to u64::MAX while both sides wake.
    tx.set_wakes(Wakes::Peers);
    rx.set_wakes(Wakes::Peers);
    set_never_word(&name, 0, u64::MAX);
    set_never_word(&name, 1, u64::MAX);
    let t = Instant::now();
    assert!(matches!(
        tx.send(3, Some(Deadline::after(d))),
        Err(SendError::Timeout(3))
    ));
    within("send beside a hostile count", t, d);
    let t2 = thread::spawn(move || {
        thread::sleep(Duration::from_millis(30));
        assert_eq!(rx.try_recv().unwrap(), 1);
        rx
    });
    tx.send(3, long()).unwrap();
    let mut rx = t2.join().unwrap();
    // Hostile the other way: the count zeroed under a never-waking consumer. The blocked
    // sender parks for its 50 ms liveness slices and still gets through.
    rx.set_wakes(Wakes::Never);
    set_never_word(&name, 1, 0);
    let t2 = thread::spawn(move || {
        thread::sleep(Duration::from_millis(30));
        assert_eq!(rx.try_recv().unwrap(), 2);
        rx
    });
    let t = Instant::now();
    tx.send(4, long()).unwrap();
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "{:?}",
        t.elapsed()
    );
    t2.join().unwrap();
}

/// Switching at run time: the count follows `set_wakes` and the endpoint's drop; back on
/// `Peers` the endpoint wakes its blocked peer again (its `wakeups` count moves).
#[test]
fn switching_back_and_dropping_update_the_count() {
    let name = unique("never-switch");
    let _c = Cleanup(name.clone());
    // `Park`: the blocked sender is a registered sleeper when the slot frees (a spinning or
    // yielding one needs no wake).
    let ch = shmlane::spsc::<u64>(&name)
        .wait(WaitStrategy::Park)
        .capacity(1)
        .unlink(UnlinkPolicy::CreatorDrop)
        .create()
        .unwrap();
    let mut rx = ch.consumer().unwrap();
    let mut tx = ch.producer().unwrap();
    assert_eq!(never_word(&name, 1), 0);
    rx.set_wakes(Wakes::Never);
    rx.set_wakes(Wakes::Never); // twice: counted once
    assert_eq!(never_word(&name, 1), 1);
    rx.set_wakes(Wakes::Peers);
    assert_eq!(never_word(&name, 1), 0);
    rx.set_wakes(Wakes::Peers);
    assert_eq!(
        never_word(&name, 1),
        0,
        "a second switch back took the count below"
    );
    // Back on `Peers`: freeing a slot while the sender sleeps issues a wake-up.
    tx.try_send(0).unwrap();
    let t = thread::spawn(move || {
        tx.send(1, long()).unwrap();
        tx
    });
    thread::sleep(Duration::from_millis(100));
    assert_eq!(rx.try_recv().unwrap(), 0);
    let tx = t.join().unwrap();
    assert_eq!(
        rx.stats().wakeups,
        1,
        "a waking consumer did not wake its sleeping peer"
    );
    // Dropped while never-waking: the count goes back to 0.
    rx.set_wakes(Wakes::Never);
    assert_eq!(never_word(&name, 1), 1);
    drop(rx);
    assert_eq!(never_word(&name, 1), 0);
    drop(tx);
    // A handle's default, then a switch to `Peers`, then a drop.
    let ch2 = shmlane::spsc::<u64>(&name)
        .wakes(Wakes::Never)
        .open()
        .unwrap();
    let mut tx = ch2.producer().unwrap();
    assert_eq!(never_word(&name, 0), 1);
    tx.set_wakes(Wakes::Peers);
    drop(tx);
    assert_eq!(never_word(&name, 0), 0);
    assert_eq!(NEVER_WAKE_POLL, Duration::from_millis(1));
}

/// poll(2) on `fd` for POLLIN, `ms` milliseconds: the number of ready descriptors (0 or 1).
fn poll_in(fd: &impl std::os::fd::AsRawFd, ms: i32) -> i32 {
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

/// The pollable receiver (`RecvPoll`): its watcher looks at the ring every `NEVER_WAKE_POLL`
/// while a never-waking sender is attached, so an armed descriptor turns readable within a few
/// milliseconds of a send that woke nobody (else at its 50 ms peer check).
#[test]
fn an_armed_poll_descriptor_sees_a_never_waking_sender() {
    let name = unique("never-poll");
    let _c = Cleanup(name.clone());
    let ch = shmlane::spsc::<u64>(&name)
        .capacity(8)
        .unlink(UnlinkPolicy::CreatorDrop)
        .create()
        .unwrap();
    let mut rx = ch.consumer().unwrap();
    let mut tx = ch.producer().unwrap();
    tx.set_wakes(Wakes::Never);
    let mut p = shmlane::RecvPoll::new(&rx).unwrap();
    let mut d = Vec::new();
    for i in 0..ROUNDS as u64 {
        assert_eq!(p.rearm(&mut rx).unwrap(), shmlane::Armed::Waiting);
        assert_eq!(poll_in(&p, 0), 0, "readable while empty");
        // 10 ms into the watcher's 50 ms peer-check slice: without the never-waking count
        // it would see the message about 40 ms late.
        thread::sleep(Duration::from_millis(10));
        let at = Instant::now();
        tx.try_send(i).unwrap();
        assert_eq!(poll_in(&p, 5000), 1, "never readable");
        d.push(at.elapsed());
        assert_eq!(rx.try_recv().unwrap(), i);
    }
    d.sort();
    check_delays("armed poll descriptor", &d);
    assert_eq!(tx.stats().wakeups, 0);
}

/// A peer already parked for its long slice (50 ms, no never-waking peer when it parked) when
/// the consumer switches to `Never`: the switch's one notify ends that park, so the freed slot
/// is still seen within `NEVER_WAKE_POLL`, not at the end of the 50 ms slice.
#[test]
fn switching_to_never_under_a_parked_peer_loses_no_wake_up() {
    let name = unique("never-switch-parked");
    let _c = Cleanup(name.clone());
    let ch = shmlane::spsc::<u64>(&name)
        .capacity(1)
        .unlink(UnlinkPolicy::CreatorDrop)
        .create()
        .unwrap();
    let mut rx = ch.consumer().unwrap();
    let mut tx = ch.producer().unwrap();
    tx.try_send(0).unwrap();
    let peer = move |report: mpsc::Sender<Instant>| {
        for i in 1..=ROUNDS as u64 {
            tx.send(i, long()).unwrap();
            report.send(Instant::now()).unwrap();
        }
    };
    let op = |r| {
        rx.set_wakes(Wakes::Never);
        assert_eq!(rx.try_recv().unwrap(), r as u64);
        rx.set_wakes(Wakes::Peers);
    };
    against_blocked_peer("send parked before the switch", peer, op);
}

/// A latest-value reader in `wait_changed` sees a never-waking writer's new value within the
/// short slice; the writer issued no wake-up (the senders' `wakeups` in the header, as
/// `shmlane stat` reads it, after the writer's drop published its statistics).
#[test]
fn a_latest_reader_sees_a_never_waking_writer() {
    #[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
    #[repr(C)]
    struct Params {
        step: u64,
        gain: f32,
        pan: f32,
    }
    let name = unique("never-latest");
    let _c = Cleanup(name.clone());
    let ch = shmlane::latest::<Params>(&name)
        .unlink(UnlinkPolicy::CreatorDrop)
        .create()
        .unwrap();
    let mut w = ch.writer().unwrap();
    w.set_wakes(Wakes::Never);
    assert_eq!(never_word(&name, 0), 1);
    let mut r = ch.reader().unwrap();
    let peer = move |report: mpsc::Sender<Instant>| {
        for i in 0..ROUNDS {
            let (v, _) = r.wait_changed(long()).unwrap();
            assert_eq!(v.step, i as u64);
            report.send(Instant::now()).unwrap();
        }
    };
    let op = |i| {
        w.write(&Params {
            step: i as u64,
            gain: 0.5,
            pan: 0.0,
        })
        .unwrap();
    };
    against_blocked_peer("latest wait_changed", peer, op);
    drop(w);
    assert_eq!(never_word(&name, 0), 0);
    let info = shmlane_segment::inspect(std::path::Path::new(&format!("/dev/shm/{name}")))
        .unwrap()
        .unwrap();
    let st = shmlane::inspect(&info).unwrap();
    assert_eq!(st.sent.messages, ROUNDS as u64);
    assert_eq!(
        st.sent.wakeups, 0,
        "the never-waking writer woke its reader"
    );
}

/// The audio example (examples/audio_blocks.rs) as a smoke test: 1 s with a busy host (asleep
/// in `send` on the full ring every period): its never-waking consumer made no futex wake and
/// its callbacks no allocation (the example's own guard, exit status 2 otherwise). `cargo test`
/// builds examples beside the tests; a run that built only this test skips it (said on stderr).
#[test]
fn the_audio_example_makes_no_wake_and_no_allocation() {
    let exe = std::env::current_exe().unwrap();
    let Some(example) = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|dir| dir.join("examples").join("audio_blocks"))
        .filter(|p| p.exists())
    else {
        eprintln!("examples/audio_blocks not built (cargo test without --test filters builds it)");
        return;
    };
    let child = std::process::Command::new(&example)
        .args(["1", "--busy"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let name = format!("audio-{}", child.id());
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the example failed: {}", out.status);
    assert!(
        text.contains("consumer futex wakes: 0;"),
        "the never-waking consumer woke its host"
    );
    assert!(text.contains("allocations inside callbacks: 0 "));
    assert!(text.contains("consumer Never"));
    // It cleans up after itself: both channels are gone (their rings held unread blocks).
    for seg in [name.clone(), format!("{name}-params")] {
        assert!(
            !std::path::Path::new(&format!("/dev/shm/{seg}")).exists(),
            "the example left /dev/shm/{seg} behind"
        );
    }
}
