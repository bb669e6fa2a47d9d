//! `Select`: one thread waits on many receivers of any kinds, across processes, fairly, by its
//! deadline, reporting dead senders within the channel's bound, and idles without CPU.

use std::time::{Duration, Instant};

use shmlane::{
    Deadline, PeersLeave, PollSource, RecvError, Select, SelectError, TryRecvError, UnlinkPolicy,
};
use shmlane_testkit::{child, child_role, finish, unique};

#[allow(
    clippy::unnecessary_wraps,
    reason = "passed where the calls take an Option"
)]
fn long() -> Option<Deadline> {
    Some(Deadline::after(Duration::from_secs(10)))
}

fn spsc(label: &str) -> shmlane::Channel<u64> {
    shmlane::spsc::<u64>(&unique(label))
        .capacity(64)
        .unlink(UnlinkPolicy::CreatorDrop)
        .create()
        .unwrap()
}

/// Every kind of receiver in one select: each is named when (and only when) it has a message.
#[test]
fn select_names_the_ready_receiver_of_every_kind() {
    let a = spsc("sel-kinds-a");
    let m = shmlane::mpmc::<u64>(&unique("sel-kinds-m"))
        .capacity(64)
        .unlink(UnlinkPolicy::CreatorDrop)
        .create()
        .unwrap();
    let b = shmlane::bytes(&unique("sel-kinds-b"))
        .unlink(UnlinkPolicy::CreatorDrop)
        .create()
        .unwrap();
    let c = shmlane::broadcast(&unique("sel-kinds-c"))
        .unlink(UnlinkPolicy::CreatorDrop)
        .create()
        .unwrap();
    let (mut ta, mut tm, mut tb, mut tc) = (
        a.producer().unwrap(),
        m.sender().unwrap(),
        b.byte_sender().unwrap(),
        c.publisher().unwrap(),
    );
    let (mut ra, mut rm, mut rb, mut rc) = (
        a.consumer().unwrap(),
        m.receiver().unwrap(),
        b.byte_receiver().unwrap(),
        c.subscriber().unwrap(),
    );
    let mut sel = Select::new();
    let quick = || Some(Deadline::after(Duration::from_millis(20)));
    assert_eq!(
        sel.wait(&mut [&mut ra, &mut rm, &mut rb, &mut rc], quick()),
        Err(SelectError::Timeout)
    );
    let mut buf = [0u8; 64];
    for round in 0..4u64 {
        // One message on one channel per round, from another thread after the select parks.
        std::thread::scope(|s| {
            let send = s.spawn(|| {
                std::thread::sleep(Duration::from_millis(5));
                match round {
                    0 => ta.try_send(10).unwrap(),
                    1 => tm.try_send(11).unwrap(),
                    2 => tb.try_send(b"twelve").unwrap(),
                    _ => tc.send(b"thirteen").unwrap(),
                }
            });
            let i = sel
                .wait(&mut [&mut ra, &mut rm, &mut rb, &mut rc], long())
                .unwrap();
            assert_eq!(i as u64, round);
            send.join().unwrap();
        });
        match round {
            0 => assert_eq!(ra.try_recv().unwrap(), 10),
            1 => assert_eq!(rm.try_recv().unwrap(), 11),
            2 => {
                let n = rb.try_recv(&mut buf).unwrap();
                assert_eq!(&buf[..n], b"twelve");
            }
            _ => {
                let n = rc.try_recv(&mut buf).unwrap();
                assert_eq!(&buf[..n], b"thirteen");
            }
        }
    }
    assert_eq!(
        sel.wait(&mut [&mut ra, &mut rm, &mut rb, &mut rc], quick()),
        Err(SelectError::Timeout)
    );
    assert_eq!(sel.wait(&mut [], long()), Err(SelectError::NoReceivers));
    // Every registration was withdrawn: the senders' notifies make no futex call now.
    let woke = (ta.stats().wakeups, tm.stats().wakeups);
    for v in 0..10 {
        ta.try_send(v).unwrap();
        tm.try_send(v).unwrap();
    }
    assert_eq!((ta.stats().wakeups, tm.stats().wakeups), woke);
}

/// Fairness: a channel that always has messages cannot starve a quiet one. Each call starts
/// after the receiver it returned last, so the quiet channel's message is named within two
/// calls, whichever it is, and over many rounds both are served in turn.
#[test]
fn a_busy_channel_does_not_starve_the_others() {
    let (busy, quiet) = (spsc("sel-fair-busy"), spsc("sel-fair-quiet"));
    let (mut tb, mut tq) = (busy.producer().unwrap(), quiet.producer().unwrap());
    let (mut rb, mut rq) = (busy.consumer().unwrap(), quiet.consumer().unwrap());
    let mut sel = Select::new();
    let (mut from_busy, mut from_quiet) = (0u64, 0u64);
    for round in 0..1000u64 {
        // The busy channel is never empty; the quiet one gets a message every 4th round.
        while tb.try_send(round).is_ok() {}
        if round % 4 == 0 {
            tq.try_send(round).unwrap();
        }
        let mut calls = 0;
        loop {
            calls += 1;
            if sel.wait(&mut [&mut rb, &mut rq], long()).unwrap() == 0 {
                rb.try_recv().unwrap();
                from_busy += 1;
            } else {
                assert_eq!(rq.try_recv().unwrap(), round);
                from_quiet += 1;
                break;
            }
            if round % 4 != 0 {
                break;
            }
            assert!(
                calls <= 2,
                "round {round}: the quiet channel waited {calls} calls"
            );
        }
    }
    assert_eq!(from_quiet, 250);
    assert!(from_busy >= 750, "{from_busy}");
}

/// The deadline ends a select nobody sends to, on time, for every spin setting and without
/// futex_waitv; and a receiver whose senders all left (`Disconnect` mode) is reported once its
/// messages are taken.
#[test]
fn the_deadline_and_the_end_are_reported() {
    let (a, b) = (spsc("sel-dl-a"), spsc("sel-dl-b"));
    let (_ta, tb) = (a.producer().unwrap(), b.producer().unwrap());
    let (mut ra, mut rb) = (a.consumer().unwrap(), b.consumer().unwrap());
    for mut sel in [
        Select::new(),
        Select::new().spins(0),
        Select::new().without_waitv(),
    ] {
        let t0 = Instant::now();
        let d = Deadline::after(Duration::from_millis(80));
        assert_eq!(
            sel.wait(&mut [&mut ra, &mut rb], Some(d)),
            Err(SelectError::Timeout)
        );
        assert!(d.is_past());
        assert!(
            t0.elapsed() < Duration::from_millis(80 + 500),
            "{:?}",
            t0.elapsed()
        );
    }
    let c = shmlane::spsc::<u64>(&unique("sel-dl-c"))
        .when_peers_leave(PeersLeave::Disconnect)
        .unlink(UnlinkPolicy::CreatorDrop)
        .create()
        .unwrap();
    let mut tc = c.producer().unwrap();
    let mut rc = c.consumer().unwrap();
    tc.try_send(5).unwrap();
    drop(tc);
    drop(tb);
    let mut sel = Select::new();
    assert_eq!(sel.wait(&mut [&mut ra, &mut rc], long()), Ok(1));
    assert_eq!(rc.try_recv().unwrap(), 5);
    assert_eq!(
        sel.wait(&mut [&mut ra, &mut rc], long()),
        Err(SelectError::Ended {
            index: 1,
            reason: RecvError::Disconnected
        })
    );
    assert_eq!(rc.try_recv(), Err(TryRecvError::Disconnected));
}

/// More receivers than one futex_waitv takes (200 > 128), and the fallback: every message of
/// every channel arrives, from sender threads that send while the select waits.
#[test]
fn more_than_128_receivers_and_the_fallback_lose_nothing() {
    for (n, sel) in [(200, Select::new()), (20, Select::new().without_waitv())] {
        let mut sel = sel.spins(0);
        let chans: Vec<_> = (0..n).map(|i| spsc(&format!("sel-many-{i}"))).collect();
        let mut rxs: Vec<_> = chans.iter().map(|c| c.consumer().unwrap()).collect();
        let txs: Vec<_> = chans.iter().map(|c| c.producer().unwrap()).collect();
        let per = 20u64;
        std::thread::scope(|s| {
            // The senders stay attached until the end (they return them): a channel whose
            // senders left would end (`Disconnected`).
            let sender = s.spawn(move || {
                // Round-robin over the channels, a little apart, so the select parks often.
                let mut txs = txs;
                for k in 0..per {
                    for (i, tx) in txs.iter_mut().enumerate() {
                        tx.send(k * 1000 + i as u64, long()).unwrap();
                        if i % 50 == 0 {
                            std::thread::sleep(Duration::from_micros(200));
                        }
                    }
                }
                txs
            });
            let mut next = vec![0u64; n];
            let mut left = per * n as u64;
            while left > 0 {
                let mut list: Vec<&mut dyn PollSource> =
                    rxs.iter_mut().map(|r| r as &mut dyn PollSource).collect();
                let i = sel.wait(&mut list, long()).unwrap();
                drop(list);
                while let Ok(v) = rxs[i].try_recv() {
                    assert_eq!(v, next[i] * 1000 + i as u64, "channel {i}");
                    next[i] += 1;
                    left -= 1;
                }
            }
            drop(sender.join().unwrap());
        });
    }
}

/// The CPU time this thread has used (from /proc, in clock ticks: utime + stime).
fn thread_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    // Fields 14 and 15 of stat(5), counted from the state (field 3) here.
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// An idle select over 16 channels with live senders uses near-zero CPU: over 2 s it parks
/// (futex_waitv, woken every 50 ms for the liveness checks) instead of spinning.
#[test]
fn an_idle_select_uses_near_zero_cpu() {
    let chans: Vec<_> = (0..16).map(|i| spsc(&format!("sel-idle-{i}"))).collect();
    let _txs: Vec<_> = chans.iter().map(|c| c.producer().unwrap()).collect();
    let mut rxs: Vec<_> = chans.iter().map(|c| c.consumer().unwrap()).collect();
    let mut list: Vec<&mut dyn PollSource> =
        rxs.iter_mut().map(|r| r as &mut dyn PollSource).collect();
    let mut sel = Select::new();
    let t0 = (thread_ticks(), Instant::now());
    let d = Deadline::after(Duration::from_secs(2));
    assert_eq!(sel.wait(&mut list, Some(d)), Err(SelectError::Timeout));
    let (ticks, wall) = (thread_ticks() - t0.0, t0.1.elapsed());
    // 100 ticks a second: 10 ticks is 5 % of one CPU over 2 s (a spinning select takes ~200).
    assert!(
        ticks <= 10,
        "{ticks} ticks of CPU in {wall:?} of idle select"
    );
}

/// 100 channels fed by 10 sender processes (10 channels each), received by one select thread:
/// every message arrives once, in order per channel; then a sender process killed while the
/// select waits is reported as `PeerDied` on its channels within the liveness bound.
#[test]
fn hundred_channels_from_ten_processes_and_a_killed_sender() {
    const PROCS: usize = 10;
    const PER_PROC: usize = 10;
    const MSGS: u64 = 5_000;
    let names: Vec<String> = (0..PROCS * PER_PROC)
        .map(|i| unique(&format!("sel-100-{i}")))
        .collect();
    let chans: Vec<_> = names
        .iter()
        .map(|n| {
            shmlane::spsc::<u64>(n)
                .capacity(256)
                .unlink(UnlinkPolicy::CreatorDrop)
                .create()
                .unwrap()
        })
        .collect();
    let mut rxs: Vec<_> = chans.iter().map(|c| c.consumer().unwrap()).collect();
    let kids: Vec<_> = names
        .chunks(PER_PROC)
        .map(|group| {
            let mut args: Vec<&str> = vec!["send"];
            args.extend(group.iter().map(String::as_str));
            child("sender", &args).spawn().unwrap()
        })
        .collect();
    let mut sel = Select::new();
    let mut next = vec![0u64; names.len()];
    let mut done = vec![false; names.len()];
    let mut left = MSGS * names.len() as u64;
    let t0 = Instant::now();
    // Until every channel ended: a sender process leaves when it has sent everything, and its
    // channels then report `Disconnected` once drained (the default `PeersLeave`), and are
    // taken out of the list.
    while done.iter().any(|d| !d) {
        let ids: Vec<usize> = (0..names.len()).filter(|&i| !done[i]).collect();
        let mut list: Vec<&mut dyn PollSource> = rxs
            .iter_mut()
            .zip(&done)
            .filter(|(_, d)| !**d)
            .map(|(r, _)| r as &mut dyn PollSource)
            .collect();
        let got = sel.wait(&mut list, long());
        drop(list);
        let i = match got {
            Ok(j) => ids[j],
            Err(SelectError::Ended {
                index,
                reason: RecvError::Disconnected,
            }) => {
                let i = ids[index];
                assert_eq!(next[i], MSGS, "channel {i} ended early");
                done[i] = true;
                continue;
            }
            Err(e) => panic!("{e} with {left} messages to come"),
        };
        while let Ok(v) = rxs[i].try_recv() {
            assert_eq!(v, next[i], "channel {i}: lost, duplicated or reordered");
            next[i] += 1;
            left -= 1;
        }
    }
    assert_eq!(left, 0);
    let took = t0.elapsed();
    for k in kids {
        assert_eq!(finish(k, Duration::from_secs(30)).0, 0);
    }
    eprintln!("100 channels x {MSGS} from 10 processes through one select: {took:?}");

    // A sender process that dies while the select waits (it attaches, sends 3, sleeps, is
    // killed): its 3 messages first, then PeerDied within the liveness bound (50 ms) plus
    // scheduling.
    let dead = shmlane::spsc::<u64>(&unique("sel-100-dead"))
        .unlink(UnlinkPolicy::CreatorDrop)
        .create()
        .unwrap();
    let mut rd = dead.consumer().unwrap();
    // Two idle channels beside it, their senders attached and silent.
    let (idle0, idle1) = (spsc("sel-100-idle0"), spsc("sel-100-idle1"));
    let _senders = (idle0.producer().unwrap(), idle1.producer().unwrap());
    let (mut i0, mut i1) = (idle0.consumer().unwrap(), idle1.consumer().unwrap());
    let kid = child("sender", &["die", &unique("sel-100-dead")])
        .spawn()
        .unwrap();
    let mut got = Vec::new();
    let died = loop {
        let mut list: [&mut dyn PollSource; 3] = [&mut i0, &mut rd, &mut i1];
        match sel.wait(&mut list, long()) {
            Ok(1) => got.extend(std::iter::from_fn(|| rd.try_recv().ok())),
            Ok(i) => panic!("receiver {i} has nothing to give"),
            Err(SelectError::Ended { index: 1, reason }) => {
                assert_eq!(reason, RecvError::PeerDied);
                break Instant::now();
            }
            Err(e) => panic!("{e}"),
        }
    };
    let (code, out) = finish(kid, Duration::from_secs(10));
    assert_eq!(got, [1, 2, 3]);
    assert_eq!(code, -1, "the sender was to be killed");
    let killed_at: u128 = out[0].parse().unwrap();
    let seen_after =
        Duration::from_nanos(u64::try_from(monotonic_ns(died).saturating_sub(killed_at)).unwrap());
    assert!(
        seen_after < Duration::from_millis(50 + 450),
        "death reported {seen_after:?} after the kill (bound 50 ms + scheduling)"
    );
}

/// A select that spins for ever before parking (`spins(u32::MAX)`) still looks at its
/// senders within the liveness bound: a killed sender is reported within 50 ms plus scheduling
/// (review 21: the spin phase made no liveness look at all).
#[test]
fn a_large_spin_count_still_reports_a_dead_sender_within_the_bound() {
    let name = unique("sel-spin-dead");
    let dead = shmlane::spsc::<u64>(&name)
        .unlink(UnlinkPolicy::CreatorDrop)
        .create()
        .unwrap();
    let mut rd = dead.consumer().unwrap();
    let kid = child("sender", &["die", &name]).spawn().unwrap();
    let mut sel = Select::new().spins(u32::MAX);
    let mut got = Vec::new();
    let died = loop {
        match sel.wait(&mut [&mut rd], long()) {
            Ok(_) => got.extend(std::iter::from_fn(|| rd.try_recv().ok())),
            Err(SelectError::Ended { reason, .. }) => {
                assert_eq!(reason, RecvError::PeerDied);
                break Instant::now();
            }
            Err(e) => panic!("{e}"),
        }
    };
    let (_, out) = finish(kid, Duration::from_secs(10));
    assert_eq!(got, [1, 2, 3]);
    let killed_at: u128 = out[0].parse().unwrap();
    let after =
        Duration::from_nanos(u64::try_from(monotonic_ns(died).saturating_sub(killed_at)).unwrap());
    assert!(
        after < Duration::from_millis(50 + 450),
        "death reported {after:?} after the kill"
    );
}

/// A sender process that dies holding an MPMC position (taken, never filled) while a live
/// sender's message waits behind it, and the live sender then leaves: the select skips the
/// dead sender's hole and offers the message behind it *before* it reports the death (in
/// `Disconnect` mode the report is final: reported first, the message would be lost).
#[test]
fn a_dead_senders_hole_is_skipped_before_its_death_is_reported() {
    let name = unique("sel-hole");
    let ch = shmlane::mpmc::<u64>(&name)
        .capacity(8)
        .unlink(UnlinkPolicy::CreatorDrop)
        .when_peers_leave(PeersLeave::Disconnect)
        .create()
        .unwrap();
    let mut rx = ch.receiver().unwrap();
    let mut live = ch.sender().unwrap();
    live.try_send(1).unwrap();
    let kid = child("sender", &["hole", &name]).spawn().unwrap();
    assert_eq!(
        finish(kid, Duration::from_secs(10)).0,
        -1,
        "the hole's sender is killed"
    );
    live.try_send(2).unwrap();
    drop(live);
    let mut sel = Select::new();
    let mut got = Vec::new();
    loop {
        match sel.wait(&mut [&mut rx], long()) {
            Ok(_) => got.extend(std::iter::from_fn(|| rx.try_recv().ok())),
            Err(SelectError::Ended { reason, .. }) => {
                assert_eq!(reason, RecvError::PeerDied);
                break;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(got, [1, 2], "the message behind the dead sender's hole");
}

/// CLOCK_MONOTONIC in ns at `t` (an Instant is CLOCK_MONOTONIC on Linux): comparable with a
/// child's clock reading.
fn monotonic_ns(t: Instant) -> u128 {
    let now_ns = u128::from(shmlane_wake::sys::monotonic_ns());
    now_ns - Instant::now().saturating_duration_since(t).as_nanos()
}

#[test]
fn child_entry() {
    let Some((role, args)) = child_role() else {
        return;
    };
    assert_eq!(role, "sender");
    match args[0].as_str() {
        "send" => {
            let chans: Vec<_> = args[1..]
                .iter()
                .map(|n| shmlane::spsc::<u64>(n).open().unwrap())
                .collect();
            let mut txs: Vec<_> = chans.iter().map(|c| c.producer().unwrap()).collect();
            // Interleaved over the channels, in bursts, so the receiver both drains and parks.
            for k in 0..5_000u64 {
                for tx in &mut txs {
                    tx.send(k, long()).unwrap();
                }
                if k % 500 == 0 {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        }
        "hole" => {
            let ch = shmlane::mpmc::<u64>(&args[1]).open().unwrap();
            ch.sender().unwrap().abandon_send_for_tests();
            // SAFETY: raising SIGKILL on this process.
            unsafe { libc::raise(libc::SIGKILL) };
            unreachable!();
        }
        "die" => {
            let ch = shmlane::spsc::<u64>(&args[1]).open().unwrap();
            let mut tx = ch.producer().unwrap();
            for v in 1..=3 {
                tx.try_send(v).unwrap();
            }
            // Long enough for the select to take the messages and park again.
            std::thread::sleep(Duration::from_millis(150));
            println!("OUT:{}", shmlane_wake::sys::monotonic_ns());
            // SAFETY: raising SIGKILL on this process.
            unsafe { libc::raise(libc::SIGKILL) };
            unreachable!();
        }
        other => panic!("unknown sender role {other}"),
    }
}

/// A message on any one of 16 channels wakes a parked select at once (its registration on
/// that channel's event made the send's notify a futex wake), not at the end of its 50 ms
/// park slice. Rounds send 20 ms into the park, on the first, a middle and the last channel;
/// 18 of 24 rounds must end within 5 ms (a lost registration makes a round on that channel
/// wait for the next 50 ms liveness slice: with the last channel unregistered, 16 of the 24
/// rounds then end within 5 ms only by the luck of a slice ending, about one in five), which
/// a loaded machine still passes.
#[test]
fn a_message_on_any_channel_wakes_the_parked_select_at_once() {
    let chans: Vec<_> = (0..16).map(|i| spsc(&format!("sel-wake-{i}"))).collect();
    let mut txs: Vec<_> = chans.iter().map(|c| c.producer().unwrap()).collect();
    let mut rxs: Vec<_> = chans.iter().map(|c| c.consumer().unwrap()).collect();
    for sel in [
        Select::new().spins(0),
        Select::new().spins(0).without_waitv(),
    ] {
        let mut sel = sel;
        let mut fast = 0;
        let mut slow = Vec::new();
        for round in 0..24 {
            let k = [0, 7, 15][round % 3];
            let sent = std::thread::scope(|s| {
                let tx = &mut txs[k];
                let sender = s.spawn(move || {
                    std::thread::sleep(Duration::from_millis(20));
                    let at = Instant::now();
                    tx.try_send(round as u64).unwrap();
                    at
                });
                let mut list: Vec<&mut dyn PollSource> =
                    rxs.iter_mut().map(|r| r as &mut dyn PollSource).collect();
                assert_eq!(sel.wait(&mut list, long()), Ok(k));
                let took = Instant::now();
                let at = sender.join().unwrap();
                took.saturating_duration_since(at)
            });
            assert_eq!(rxs[k].try_recv().unwrap(), round as u64);
            if sent < Duration::from_millis(5) {
                fast += 1;
            } else {
                slow.push((k, sent));
            }
        }
        assert!(
            fast >= 18,
            "{sel:?}: only {fast} of 24 wakes within 5 ms; slow: {slow:?}"
        );
    }
}
