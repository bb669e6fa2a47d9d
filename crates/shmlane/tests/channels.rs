//! Channels within one process (threads) and between real processes.

use std::{
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
    time::{Duration, Instant},
};

use shmlane::{ByteRecvError, ByteSendError, Deadline, RecvError, TryRecvError, UnlinkPolicy};
use shmlane_testkit::{Cleanup, child, child_role, finish, unique};

// One match arm per child role; each builder now names its `PeersLeave` explicitly.
#[allow(clippy::too_many_lines)]
#[test]
fn child_entry() {
    let Some((role, args)) = child_role() else {
        return;
    };
    match role.as_str() {
        "send-then-hang" => {
            let ch = shmlane::spsc::<u64>(&args[0])
                .when_peers_leave(shmlane::PeersLeave::Disconnect)
                .open()
                .unwrap();
            let mut tx = ch.producer().unwrap();
            for i in 0..1000 {
                tx.send(i, None).unwrap();
            }
            println!("OUT:sent");
            std::thread::sleep(Duration::from_secs(300));
        }
        "send-range" => {
            let ch = shmlane::spsc::<u64>(&args[0])
                .when_peers_leave(shmlane::PeersLeave::Disconnect)
                .open()
                .unwrap();
            let mut tx = ch.producer().unwrap();
            let (from, to): (u64, u64) = (args[1].parse().unwrap(), args[2].parse().unwrap());
            for i in from..to {
                tx.send(i, None).unwrap();
            }
            println!("OUT:sent");
            if args[3] == "hang" {
                std::thread::sleep(Duration::from_secs(300));
            }
        }
        "bytes-send" => {
            // Messages `from..to` of the byte channel: length and bytes derive from the number.
            let ch = shmlane::bytes(&args[0])
                .when_peers_leave(shmlane::PeersLeave::Disconnect)
                .open()
                .unwrap();
            let mut tx = ch.byte_sender().unwrap();
            let (from, to): (u64, u64) = (args[1].parse().unwrap(), args[2].parse().unwrap());
            for i in from..to {
                tx.send(&byte_msg(i), None).unwrap();
            }
            println!("OUT:sent");
        }
        "bytes-claim-hang" => {
            // Claims room for a message, writes half of it, and hangs there until killed.
            let ch = shmlane::bytes(&args[0])
                .when_peers_leave(shmlane::PeersLeave::Disconnect)
                .open()
                .unwrap();
            let mut tx = ch.byte_sender().unwrap();
            let mut claim = tx.claim(100).unwrap();
            claim.write(0, &[0xee; 50]);
            println!("claimed");
            std::thread::sleep(Duration::from_secs(300));
            claim.commit().unwrap();
        }
        "bytes-claim-stall" => claim_and_stall(&args[0], args[1].parse().unwrap()),
        "mpmc-abandon" => mpmc_abandon(&args[0], &args[1]),
        "mpmc-sender-hang" => mpmc_sender_hang(&args[0]),
        "publish" => {
            // Waits for `args[1]` subscribers (the receiver count), then publishes `args[2]`
            // messages and leaves.
            let ch = shmlane::broadcast(&args[0])
                .when_peers_leave(shmlane::PeersLeave::Disconnect)
                .open()
                .unwrap();
            let mut tx = ch.publisher().unwrap();
            let (subs, n): (u64, u64) = (args[1].parse().unwrap(), args[2].parse().unwrap());
            while shmlane::inspect(&info(&args[0])).unwrap().endpoints.1 < subs {
                std::thread::sleep(Duration::from_millis(1));
            }
            for i in 0..n {
                tx.send(&byte_msg(i)[..byte_msg(i).len().min(64)]).unwrap();
            }
            println!("OUT:published");
        }
        "subscribe" => {
            // Reads until the publisher leaves. args[1] = "slow": after its first message it
            // stalls until the publisher has published two rings' worth past it (of the
            // args[2] messages in all), so it is lapped on any machine, then sleeps 1 ms per
            // 100 messages.
            let ch = shmlane::broadcast(&args[0])
                .when_peers_leave(shmlane::PeersLeave::Disconnect)
                .open()
                .unwrap();
            let mut rx = ch.subscriber().unwrap();
            let slow = args[1] == "slow";
            let (mut next, mut got, mut lost) = (0u64, 0u64, 0u64);
            let mut buf = [0u8; 64];
            loop {
                match rx.recv(&mut buf, Some(Deadline::after(Duration::from_secs(60)))) {
                    Ok(n) => {
                        let want = byte_msg(next);
                        assert_eq!(&buf[..n], &want[..want.len().min(64)], "message {next}");
                        next += 1;
                        got += 1;
                        if slow && got == 1 {
                            let total: u64 = args[2].parse().unwrap();
                            let target = (next + 2 * BCAST_CAPACITY).min(total);
                            let t0 = std::time::Instant::now();
                            while shmlane::inspect(&info(&args[0])).unwrap().sent.messages < target
                            {
                                assert!(t0.elapsed() < Duration::from_secs(60), "publisher stuck");
                                std::thread::sleep(Duration::from_millis(1));
                            }
                        }
                        if slow && got % 100 == 0 {
                            std::thread::sleep(Duration::from_millis(1));
                        }
                    }
                    Err(ByteRecvError::Lapped { lost: l }) => {
                        next += l;
                        lost += l;
                    }
                    Err(ByteRecvError::Disconnected) => break,
                    Err(e) => panic!("{e}"),
                }
            }
            println!("OUT:{got} {lost}");
        }
        other => panic!("unknown role {other}"),
    }
    std::process::exit(0);
}

#[test]
fn spsc_in_order_then_disconnected() {
    let name = unique("chan-spsc");
    let _c = Cleanup(name.clone());
    let ch = shmlane::spsc::<u64>(&name)
        .when_peers_leave(shmlane::PeersLeave::Disconnect)
        .capacity(64)
        .create()
        .unwrap();
    let mut rx = ch.consumer().unwrap();
    let ch2 = ch.clone();
    let t = std::thread::spawn(move || {
        let mut tx = ch2.producer().unwrap();
        for i in 0..10_000u64 {
            tx.send(i, None).unwrap();
        }
    });
    for i in 0..10_000u64 {
        assert_eq!(
            rx.recv(Some(Deadline::after(Duration::from_secs(20)))),
            Ok(i)
        );
    }
    t.join().unwrap();
    assert_eq!(rx.recv(None), Err(RecvError::Disconnected));
    assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
    let st = rx.stats();
    assert_eq!(st.messages, 10_000);
}

#[test]
fn recv_times_out_on_empty_channel() {
    let name = unique("chan-timeout");
    let _c = Cleanup(name.clone());
    let ch = shmlane::spsc::<u64>(&name)
        .when_peers_leave(shmlane::PeersLeave::Disconnect)
        .create()
        .unwrap();
    let _tx = ch.producer().unwrap();
    let mut rx = ch.consumer().unwrap();
    let d = Deadline::after(Duration::from_millis(30));
    assert_eq!(rx.recv(Some(d)), Err(RecvError::Timeout));
    assert!(d.is_past());
}

#[test]
fn mismatched_open_is_a_clear_error() {
    let name = unique("chan-mismatch");
    let _c = Cleanup(name.clone());
    let _ch = shmlane::spsc::<u64>(&name)
        .when_peers_leave(shmlane::PeersLeave::Disconnect)
        .capacity(64)
        .create()
        .unwrap();
    let e = shmlane::mpmc::<u64>(&name)
        .when_peers_leave(shmlane::PeersLeave::Disconnect)
        .open()
        .unwrap_err();
    assert!(e.to_string().contains("exists as spsc"), "{e}");
    let e = shmlane::spsc::<u32>(&name)
        .when_peers_leave(shmlane::PeersLeave::Disconnect)
        .open()
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("holds u64 (8 bytes, align 8); opened as u32 (4 bytes, align 4)"),
        "{e}"
    );
}

#[test]
fn mpmc_two_senders_two_receivers_threads() {
    let name = unique("chan-mpmc");
    let ch = shmlane::mpmc::<u64>(&name)
        .when_peers_leave(shmlane::PeersLeave::Disconnect)
        .capacity(128)
        .unlink(UnlinkPolicy::LastDetach)
        .create()
        .unwrap();
    let per = 20_000u64;
    let mut got: Vec<u64> = std::thread::scope(|s| {
        for id in 0..2u64 {
            let mut tx = ch.sender().unwrap();
            s.spawn(move || {
                for i in 0..per {
                    tx.send((id << 32) | i, None).unwrap();
                }
            });
        }
        let rxs: Vec<_> = (0..2)
            .map(|_| {
                let mut rx = ch.receiver().unwrap();
                s.spawn(move || {
                    let mut v = Vec::new();
                    loop {
                        match rx.recv(Some(Deadline::after(Duration::from_secs(30)))) {
                            Ok(x) => v.push(x),
                            Err(RecvError::Disconnected) => return v,
                            Err(e) => panic!("{e}"),
                        }
                    }
                })
            })
            .collect();
        rxs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    got.sort_unstable();
    let mut want: Vec<u64> = (0..2u64)
        .flat_map(|id| (0..per).map(move |i| (id << 32) | i))
        .collect();
    want.sort_unstable();
    assert_eq!(got, want);
    drop(ch);
    assert!(
        !std::path::Path::new(&format!("/dev/shm/{name}")).exists(),
        "LastDetach left the name"
    );
}

/// A producer process dies (SIGKILL) while the consumer is parked: the consumer gets what was
/// sent, then `PeerDied`, without hanging.
#[test]
fn killed_producer_is_reported_to_a_parked_consumer() {
    let name = unique("chan-kill");
    let _c = Cleanup(name.clone());
    let ch = shmlane::spsc::<u64>(&name)
        .when_peers_leave(shmlane::PeersLeave::Disconnect)
        .capacity(4096)
        .create()
        .unwrap();
    let mut rx = ch.consumer().unwrap();
    let mut prod = child("send-then-hang", &[&name]).spawn().unwrap();
    for i in 0..1000 {
        assert_eq!(
            rx.recv(Some(Deadline::after(Duration::from_secs(30)))),
            Ok(i)
        );
    }
    // The consumer parks on the empty ring; kill the producer meanwhile.
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        prod.kill().unwrap();
        prod.wait().unwrap();
    });
    assert_eq!(
        rx.recv(Some(Deadline::after(Duration::from_secs(30)))),
        Err(RecvError::PeerDied)
    );
    killer.join().unwrap();
}

/// A consumer parked after its spin phase (the default `SpinThenPark`) notices its producer's
/// death within the peer-check period (50 ms), not after many parks: the peer timer is read
/// only every 64th look while spinning (`Local::block`), on every look once parked.
#[test]
fn parked_consumer_sees_a_death_within_the_peer_check() {
    let name = unique("chan-kill-soon");
    let _c = Cleanup(name.clone());
    let ch = shmlane::spsc::<u64>(&name)
        .when_peers_leave(shmlane::PeersLeave::Disconnect)
        .capacity(4096)
        .create()
        .unwrap();
    let mut rx = ch.consumer().unwrap();
    let mut prod = child("send-then-hang", &[&name]).spawn().unwrap();
    for i in 0..1000 {
        assert_eq!(
            rx.recv(Some(Deadline::after(Duration::from_secs(30)))),
            Ok(i)
        );
    }
    // Parked for a second (20 peer checks) before the kill.
    let reaper = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(1));
        prod.kill().unwrap();
        prod.wait().unwrap();
        std::time::Instant::now()
    });
    let r = rx.recv(Some(Deadline::after(Duration::from_secs(30))));
    let seen = std::time::Instant::now();
    let death = reaper.join().unwrap();
    assert_eq!(r, Err(RecvError::PeerDied));
    let late = seen.saturating_duration_since(death);
    // 50 ms nominal; generous for a loaded machine, far below 64 parks (3.2 s).
    assert!(
        late < Duration::from_millis(800),
        "death seen {late:?} after it"
    );
}

/// A producer process dies; a restarted producer process takes its role over (the dead
/// holder's claim) and the consumer, which saw `PeerDied` meanwhile, receives from it.
#[test]
fn restarted_producer_reattaches() {
    let name = unique("chan-restart");
    let _c = Cleanup(name.clone());
    // Persistent: the consumer waits for peers (`PeersLeave::Wait`), so after `PeerDied` it
    // waits for the restarted producer.
    let ch = shmlane::spsc::<u64>(&name).capacity(4096).create().unwrap();
    let mut rx = ch.consumer().unwrap();
    let mut first = child("send-range", &[&name, "0", "500", "hang"])
        .spawn()
        .unwrap();
    let d = || Some(Deadline::after(Duration::from_secs(30)));
    for i in 0..500 {
        assert_eq!(rx.recv(d()), Ok(i));
    }
    first.kill().unwrap();
    first.wait().unwrap();
    assert_eq!(rx.recv(d()), Err(RecvError::PeerDied));
    let second = child("send-range", &[&name, "500", "1000", "exit"])
        .spawn()
        .unwrap();
    for i in 500..1000 {
        assert_eq!(rx.recv(d()), Ok(i), "from the restarted producer");
    }
    let (code, out) = finish(second, Duration::from_secs(60));
    assert_eq!(code, 0);
    assert_eq!(out, ["sent"]);
}

/// Byte-channel message `i`: 8 to 299 bytes, `i` then bytes derived from it (empty
/// messages are covered by the unit tests; here each message must name its sender).
fn byte_msg(i: u64) -> Vec<u8> {
    let len = 8 + (i.wrapping_mul(0x9e37_79b9) % 292) as usize;
    let mut m: Vec<u8> = (0..len)
        .map(|k| (i as u8).wrapping_mul(31).wrapping_add(k as u8))
        .collect();
    m[..8].copy_from_slice(&i.to_le_bytes());
    m
}

fn info(name: &str) -> shmlane_segment::SegmentInfo {
    shmlane_segment::inspect(std::path::Path::new(&format!("/dev/shm/{name}")))
        .unwrap()
        .unwrap()
}

/// Byte channel: two sender processes, messages of 8 to 299 bytes, then a third sender process
/// that claims room and is SIGKILLed before committing: the receiver delivers every message of
/// the first two in order per sender, skips the dead claim (counted in `lost`), and goes on
/// with what comes after it.
#[test]
fn bytes_between_processes_and_a_killed_claim_is_skipped() {
    let name = unique("chan-bytes");
    let _c = Cleanup(name.clone());
    let ch = shmlane::bytes(&name)
        .when_peers_leave(shmlane::PeersLeave::Disconnect)
        .capacity(1 << 14)
        .create()
        .unwrap();
    let mut rx = ch.byte_receiver().unwrap();
    assert_eq!(rx.max_message(), 2040);
    let senders: Vec<_> = [("0", "20000"), ("1000000", "1020000")]
        .iter()
        .map(|(a, b)| child("bytes-send", &[&name, a, b]).spawn().unwrap())
        .collect();
    let d = || Some(Deadline::after(Duration::from_secs(60)));
    let mut next = [0u64, 1_000_000];
    let mut buf = vec![0u8; rx.max_message()];
    while next != [20_000, 1_020_000] {
        let n = rx.recv(&mut buf, d()).unwrap();
        // Which sender: the message must be the next of one of them.
        let k = (0..2)
            .find(|&k| byte_msg(next[k]) == buf[..n])
            .unwrap_or_else(|| panic!("message out of order or corrupt: {:?}", &buf[..n]));
        next[k] += 1;
    }
    for s in senders {
        assert_eq!(finish(s, Duration::from_secs(60)).0, 0);
    }
    // A sender that dies between claim and commit.
    let mut hang = child("bytes-claim-hang", &[&name])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The child's test harness prints its own lines first.
    let out = std::io::BufReader::new(hang.stdout.take().unwrap());
    let claimed = std::io::BufRead::lines(out).any(|l| l.is_ok_and(|l| l == "claimed"));
    assert!(claimed, "the claiming child ended before it claimed");
    // A live sender sends after the pending claim: the receiver waits for the claim...
    let mut tx = ch.byte_sender().unwrap();
    tx.send(b"after the claim", None).unwrap();
    assert_eq!(
        rx.recv(&mut buf, Some(Deadline::after(Duration::from_millis(100)))),
        Err(ByteRecvError::Timeout)
    );
    // ...until its process is seen dead: skipped, counted, and the next message delivered.
    hang.kill().unwrap();
    hang.wait().unwrap();
    let n = rx.recv(&mut buf, d()).unwrap();
    assert_eq!(&buf[..n], b"after the claim");
    assert_eq!(rx.stats().lost, 1);
    assert_eq!(rx.stats().messages, 40_001);
    assert_eq!(
        tx.try_send(&[0; 2041]),
        Err(ByteSendError::TooLong {
            len: 2041,
            max: 2040
        })
    );
    drop(tx);
    assert!(matches!(
        rx.recv(&mut buf, d()),
        Err(ByteRecvError::Disconnected | ByteRecvError::PeerDied)
    ));
}

/// Child role: claims room for a message, writes half of it, stalls for `ms` (past the
/// receiver's unblock timeout), then writes the rest in place and commits: too late.
fn claim_and_stall(name: &str, ms: u64) {
    let ch = shmlane::bytes(name)
        .when_peers_leave(shmlane::PeersLeave::Disconnect)
        .open()
        .unwrap();
    let mut tx = ch.byte_sender().unwrap();
    let mut claim = tx.claim(400).unwrap();
    claim.write(0, &[0xee; 200]);
    println!("claimed");
    std::thread::sleep(Duration::from_millis(ms));
    // SAFETY: 400 bytes claimed; written, never read. This is the write a producer resuming
    // mid-copy makes, without the header check `write` does first.
    unsafe { claim.as_mut_ptr().add(200).write_bytes(0xee, 200) };
    println!("OUT:commit {:?}", claim.commit());
}

/// A byte channel of 4 KiB whose receiver skips a pending message after 100 ms; a sender
/// process that claimed room and stalls for `ms` (`claim_and_stall`), and a sender thread that
/// sends messages `0..n` (many times the ring's capacity) meanwhile. Returns the receiver, the
/// stalling child, the rest of its output, and the sender thread.
fn stalled_and_sending(
    name: &str,
    ms: u64,
    n: u64,
) -> (
    shmlane::ByteReceiver,
    std::process::Child,
    std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
    std::thread::JoinHandle<()>,
) {
    let ch = shmlane::bytes(name)
        .when_peers_leave(shmlane::PeersLeave::Disconnect)
        .capacity(1 << 12)
        .create()
        .unwrap();
    let mut rx = ch.byte_receiver().unwrap();
    rx.set_unblock_after(Duration::from_millis(100));
    let mut stall = child("bytes-claim-stall", &[name, &ms.to_string()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufRead::lines(std::io::BufReader::new(stall.stdout.take().unwrap()));
    assert!(
        out.any(|l| l.is_ok_and(|l| l == "claimed")),
        "the stalling child ended before it claimed"
    );
    let mut tx = ch.byte_sender().unwrap();
    let sender = std::thread::spawn(move || {
        for i in 0..n {
            tx.send(&byte_msg(i), None).unwrap();
        }
    });
    (rx, stall, out, sender)
}

/// Receives the next message (waiting up to a minute) and checks that it is `byte_msg(i)`.
fn recv_message(rx: &mut shmlane::ByteReceiver, buf: &mut [u8], i: u64) {
    let got = rx
        .recv(buf, Some(Deadline::after(Duration::from_secs(60))))
        .unwrap();
    assert_eq!(
        buf[..got],
        byte_msg(i),
        "message {i} corrupt or out of order"
    );
}

/// Byte channel, a sender process that claims room and stalls past the receiver's unblock
/// timeout, then finishes its message in place and commits. The receiver skips the claim at the
/// timeout and delivers what comes after it, but the stalled claim's space (and what follows)
/// is not given back to the senders until the stalled sender lets go: its late writes land in
/// space nobody else has, every later message arrives intact, and its commit reports that it
/// was too late.
#[test]
fn a_sender_stalled_past_the_timeout_corrupts_nothing() {
    let name = unique("chan-stall");
    let _c = Cleanup(name.clone());
    let n = 3000u64;
    let (mut rx, mut stall, out, sender) = stalled_and_sending(&name, 1000, n);
    let mut buf = vec![0u8; rx.max_message()];
    // Until the stalled claim is skipped (at the timeout), and 20 messages after it.
    let mut i = 0;
    let mut after = 0;
    while after < 20 {
        recv_message(&mut rx, &mut buf, i);
        i += 1;
        if rx.stats().lost == 1 {
            after += 1;
        }
    }
    // Reading stops: the ring fills with unread messages while the stalled sender resumes,
    // writes the rest of its message in place and commits (space given back at the skip
    // would now hold some of those messages).
    let commit = out
        .map_while(Result::ok)
        .find(|l| l.starts_with("OUT:commit"));
    assert_eq!(commit.as_deref(), Some("OUT:commit Err(Timeout)"));
    assert!(stall.wait().unwrap().success());
    for i in i..n {
        recv_message(&mut rx, &mut buf, i);
    }
    sender.join().unwrap();
    assert_eq!(rx.stats().lost, 1);
}

/// Byte channel, a sender process skipped at the timeout while alive (its room held by a fence)
/// that then dies without letting go, while the receiver waits on a ring the fence has filled
/// and another sender waits for room: the receiver's liveness check of the fence's sender gives
/// the room back, and every message gets through.
#[test]
fn a_sender_dying_with_its_room_held_gives_it_back() {
    let name = unique("chan-stall-die");
    let _c = Cleanup(name.clone());
    let n = 3000u64;
    let (mut rx, mut stall, _out, sender) = stalled_and_sending(&name, 300_000, n);
    // Killed while the receiver waits on the held ring (about 25 messages fill it).
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        stall.kill().unwrap();
        stall.wait().unwrap();
    });
    let mut buf = vec![0u8; rx.max_message()];
    for i in 0..n {
        recv_message(&mut rx, &mut buf, i);
    }
    killer.join().unwrap();
    sender.join().unwrap();
    assert_eq!(rx.stats().lost, 1);
}

/// Slots of the broadcast channel in `broadcast_publisher_and_subscribers_between_processes`.
const BCAST_CAPACITY: u64 = 1 << 12;

/// Broadcast: a publisher process and three subscriber processes, one slow. The fast ones see
/// every message in order; the slow one is lapped and its deliveries plus reported losses are
/// exactly what was published; the losses are in the channel statistics.
#[test]
fn broadcast_publisher_and_subscribers_between_processes() {
    let name = unique("chan-bcast");
    let _c = Cleanup(name.clone());
    let _ch = shmlane::broadcast(&name)
        .when_peers_leave(shmlane::PeersLeave::Disconnect)
        .capacity(BCAST_CAPACITY)
        .msg_size(64)
        .create()
        .unwrap();
    let n = 200_000u64;
    let subs: Vec<_> = ["fast", "fast", "slow"]
        .iter()
        .map(|k| {
            child("subscribe", &[&name, k, &n.to_string()])
                .spawn()
                .unwrap()
        })
        .collect();
    let publisher = child("publish", &[&name, "3", &n.to_string()])
        .spawn()
        .unwrap();
    assert_eq!(finish(publisher, Duration::from_secs(120)).1, ["published"]);
    let mut lost_total = 0;
    for (i, s) in subs.into_iter().enumerate() {
        let (code, out) = finish(s, Duration::from_secs(120));
        assert_eq!(code, 0, "subscriber {i}");
        let v: Vec<u64> = out[0].split(' ').map(|x| x.parse().unwrap()).collect();
        assert_eq!(v[0] + v[1], n, "subscriber {i}: delivered + lost");
        lost_total += v[1];
        if i < 2 {
            // On a 2-core machine a fast subscriber can be descheduled for longer than a ring
            // of 4096 takes to fill; what matters is that it never misses silently.
            println!("fast subscriber {i}: {} delivered, {} lost", v[0], v[1]);
        } else {
            assert!(v[1] > 0, "the slow subscriber was never lapped");
        }
    }
    let st = shmlane::inspect(&info(&name)).unwrap();
    assert_eq!(st.kind, shmlane::Kind::Broadcast);
    assert_eq!(st.received.lost, lost_total);
    assert_eq!(st.sent.messages, n);
}

/// Runs `f` on a thread; fails if it has not returned within `limit` (a blocking call that
/// ignores its deadline spins on, so the test fails instead of hanging).
fn within<R: Send + 'static>(limit: Duration, f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("still running after {limit:?}"))
}

/// CPU time (user + system) the calling thread has used.
fn thread_cpu() -> Duration {
    // SAFETY: an all-zero rusage is a valid value; getrusage only writes it.
    let mut ru: libc::rusage = unsafe { core::mem::zeroed() };
    // SAFETY: `ru` is valid for writes.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &raw mut ru) };
    assert_eq!(rc, 0);
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Child role: takes the next position of the MPMC channel as a sender (`send`) or a receiver
/// (`recv`) and stops before publishing it, then hangs there until killed.
fn mpmc_abandon(name: &str, side: &str) {
    let ch = shmlane::mpmc::<u64>(name)
        .when_peers_leave(shmlane::PeersLeave::Disconnect)
        .open()
        .unwrap();
    if side == "send" {
        ch.sender().unwrap().abandon_send_for_tests();
    } else {
        ch.receiver().unwrap().abandon_recv_for_tests();
    }
    println!("abandoned");
    std::thread::sleep(Duration::from_secs(300));
}

/// Child role: attaches an MPMC sender, then hangs until killed.
fn mpmc_sender_hang(name: &str) {
    let ch = shmlane::mpmc::<u64>(name)
        .when_peers_leave(shmlane::PeersLeave::Disconnect)
        .open()
        .unwrap();
    let _tx = ch.sender().unwrap();
    println!("attached");
    std::thread::sleep(Duration::from_secs(300));
}

/// Spawns a child that takes the next MPMC position as `side` ("send" or "recv") and hangs
/// there; returns once it has taken it.
fn abandoning_child(name: &str, side: &str) -> std::process::Child {
    let mut c = child("mpmc-abandon", &[name, side])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = std::io::BufReader::new(c.stdout.take().unwrap());
    let done = std::io::BufRead::lines(out).any(|l| l.is_ok_and(|l| l == "abandoned"));
    assert!(done, "the child ended before it took its position");
    c
}

/// MPMC: a sender process SIGKILLed between taking its ring position and publishing its
/// message leaves a hole; a live sender then sends 1000 messages through a 16-slot ring. The
/// receiver gets all of them, in order, and counts the hole lost (before the fix it waited at
/// the hole forever, spinning past its deadline).
#[test]
fn mpmc_sender_killed_mid_send_is_skipped_and_counted() {
    let name = unique("mpmc-kill-send");
    let _c = Cleanup(name.clone());
    let ch = shmlane::mpmc::<u64>(&name)
        .when_peers_leave(shmlane::PeersLeave::Disconnect)
        .capacity(16)
        .create()
        .unwrap();
    let rx = ch.receiver().unwrap();
    let mut dead = abandoning_child(&name, "send");
    let mut tx = ch.sender().unwrap();
    // While the claimer lives its hole is waited for, never skipped.
    tx.send(1, None).unwrap();
    let (rx, r, took) = within(Duration::from_secs(3), move || {
        let mut rx = rx;
        let start = std::time::Instant::now();
        let r = rx.recv(Some(Deadline::after(Duration::from_millis(100))));
        (rx, r, start.elapsed())
    });
    assert_eq!(r, Err(RecvError::Timeout));
    assert!(took < Duration::from_millis(400), "{took:?}");
    dead.kill().unwrap();
    dead.wait().unwrap();
    let killed = std::time::Instant::now();
    let sender = std::thread::spawn(move || {
        for i in 2..=1000u64 {
            tx.send(i, Some(Deadline::after(Duration::from_secs(10))))
                .unwrap();
        }
        tx
    });
    let (mut rx, first) = within(Duration::from_secs(20), move || {
        let mut rx = rx;
        let first = rx.recv(Some(Deadline::after(Duration::from_secs(5))));
        let waited = killed.elapsed();
        for i in 2..=1000u64 {
            assert_eq!(
                rx.recv(Some(Deadline::after(Duration::from_secs(5)))),
                Ok(i)
            );
        }
        (rx, (first, waited))
    });
    assert_eq!(first.0, Ok(1));
    // Recovered within the dead-peer bound (a 10 ms hole check; generous for a loaded box).
    assert!(first.1 < Duration::from_millis(500), "took {:?}", first.1);
    drop(sender.join().unwrap());
    let st = rx.stats();
    assert_eq!((st.messages, st.lost), (1000, 1));
}

/// MPMC: a receiver process SIGKILLed between taking a message's position and releasing its
/// slot; a live sender then sends 1000 more through an 8-slot ring, a live receiver takes
/// them. The sender gives the slot back (the taken message counted lost on its side) and
/// nothing else is lost (before the fix the senders found the ring full there forever).
#[test]
fn mpmc_receiver_killed_mid_recv_gives_its_slot_back() {
    let name = unique("mpmc-kill-recv");
    let _c = Cleanup(name.clone());
    let ch = shmlane::mpmc::<u64>(&name)
        .when_peers_leave(shmlane::PeersLeave::Disconnect)
        .capacity(8)
        .create()
        .unwrap();
    let mut tx = ch.sender().unwrap();
    tx.send(0, None).unwrap();
    let mut dead = abandoning_child(&name, "recv");
    dead.kill().unwrap();
    dead.wait().unwrap();
    let mut rx = ch.receiver().unwrap();
    // Non-blocking callers recover by hand: nothing to give back yet (the held slot is not
    // next for senders until the ring has gone round).
    assert!(!tx.recover());
    let receiver = std::thread::spawn(move || {
        for i in 1..=1000u64 {
            assert_eq!(
                rx.recv(Some(Deadline::after(Duration::from_secs(10)))),
                Ok(i)
            );
        }
        rx
    });
    let mut tx = within(Duration::from_secs(20), move || {
        for i in 1..=1000u64 {
            tx.send(i, Some(Deadline::after(Duration::from_secs(5))))
                .unwrap();
        }
        tx
    });
    let mut rx = receiver.join().unwrap();
    let st = tx.stats();
    assert_eq!((st.messages, st.lost), (1001, 1));
    assert_eq!(rx.stats().messages, 1000);
}

/// A blocked MPMC `recv` on a ring with a hole (a live sender in this process holds the
/// position) returns `Timeout` at its 300 ms deadline, without spinning: before the fix it
/// ran on at full CPU (the wait condition used the approximate length, which counted the
/// hole as data). Same for a blocked `send` at a slot a live receiver holds.
#[test]
fn mpmc_blocked_calls_end_at_their_deadline_at_a_hole() {
    let name = unique("mpmc-deadline");
    let _c = Cleanup(name.clone());
    let ch = shmlane::mpmc::<u64>(&name)
        .when_peers_leave(shmlane::PeersLeave::Disconnect)
        .capacity(4)
        .create()
        .unwrap();
    ch.sender().unwrap().abandon_send_for_tests();
    let mut tx = ch.sender().unwrap();
    tx.send(1, None).unwrap();
    let mut rx = ch.receiver().unwrap();
    let (r, took, cpu) = within(Duration::from_secs(3), move || {
        let (t0, c0) = (std::time::Instant::now(), thread_cpu());
        let r = rx.recv(Some(Deadline::after(Duration::from_millis(300))));
        (r, t0.elapsed(), thread_cpu().saturating_sub(c0))
    });
    assert_eq!(r, Err(RecvError::Timeout));
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_millis(600),
        "{took:?}"
    );
    assert!(
        cpu < Duration::from_millis(100),
        "recv used {cpu:?} of CPU in {took:?}"
    );

    let name = unique("mpmc-deadline-send");
    let _c = Cleanup(name.clone());
    let ch = shmlane::mpmc::<u64>(&name)
        .when_peers_leave(shmlane::PeersLeave::Disconnect)
        .capacity(4)
        .create()
        .unwrap();
    let mut tx = ch.sender().unwrap();
    tx.send(0, None).unwrap();
    ch.receiver().unwrap().abandon_recv_for_tests();
    for i in 1..4 {
        tx.send(i, None).unwrap();
    }
    let (r, took, cpu) = within(Duration::from_secs(3), move || {
        let (t0, c0) = (std::time::Instant::now(), thread_cpu());
        let r = tx.send(4, Some(Deadline::after(Duration::from_millis(300))));
        (r, t0.elapsed(), thread_cpu().saturating_sub(c0))
    });
    assert!(matches!(r, Err(shmlane::SendError::Timeout(4))), "{r:?}");
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_millis(600),
        "{took:?}"
    );
    assert!(
        cpu < Duration::from_millis(100),
        "send used {cpu:?} of CPU in {took:?}"
    );
}

/// Review (rev1): a sender process is killed holding position 0 (a hole); the receiver skips
/// it (one message lost, counted on the receivers' side); then a receiver process is killed
/// right after taking that skipped position, before releasing its slot. The senders give the
/// slot back, but the dead receiver held no message: nothing more was lost, so the senders'
/// `lost` must stay 0 (before: 1, the one lost message counted twice).
#[test]
fn rev1_mpmc_receiver_killed_on_a_skipped_position_loses_no_second_message() {
    let name = unique("mpmc-kill-skip");
    let _c = Cleanup(name.clone());
    let ch = shmlane::mpmc::<u64>(&name)
        .when_peers_leave(shmlane::PeersLeave::Disconnect)
        .capacity(2)
        .create()
        .unwrap();
    let mut rx = ch.receiver().unwrap();
    let mut dead_tx = abandoning_child(&name, "send");
    dead_tx.kill().unwrap();
    dead_tx.wait().unwrap();
    assert!(rx.recover(), "the dead sender's hole is skipped");
    let mut dead_rx = abandoning_child(&name, "recv");
    dead_rx.kill().unwrap();
    dead_rx.wait().unwrap();
    let mut tx = ch.sender().unwrap();
    let mut tx = within(Duration::from_secs(10), move || {
        for i in 1..=2u64 {
            tx.send(i, Some(Deadline::after(Duration::from_secs(5))))
                .unwrap();
        }
        tx
    });
    for i in 1..=2u64 {
        assert_eq!(
            rx.recv(Some(Deadline::after(Duration::from_secs(5)))),
            Ok(i)
        );
    }
    assert_eq!(rx.stats().lost, 1, "the dead sender's message");
    let st = tx.stats();
    assert_eq!(
        (st.messages, st.lost),
        (2, 0),
        "the dead receiver held a skipped position, no message"
    );
}

/// Offsets in an MPMC ring region (docs/design.md, "MPMC byte layout").
const MPMC_ENQ: usize = 128;
const MPMC_DEQ: usize = 256;
/// `intents[0][i]` (producers): `owner` at `MPMC_INTENTS_AT + 128 i`, `pos` 8 bytes further.
const MPMC_INTENTS_AT: usize = 640;
const MPMC_INTENT_ENTRIES: u64 = 32;
/// An intent word naming a position (`1 << 63 | pos`).
const MPMC_INTENT_VALID: u64 = 1 << 63;
/// An owner tag naming attachment slot 4001, which no attachment has (the table holds 64):
/// judged dead.
const DEAD_OWNER: u64 = 4001;

/// The words of an MPMC ring a hostile peer forges holes with, seen through its own mapping.
struct MpmcWords<'a> {
    enq: &'a AtomicU64,
    deq: &'a AtomicU64,
    /// The producers' intent entries: (`owner`, `pos`).
    intents: Vec<(&'a AtomicU64, &'a AtomicU64)>,
}

impl<'a> MpmcWords<'a> {
    // Word pointers are made from the 128-byte aligned region plus multiples of 8 (asserted).
    #[allow(clippy::cast_ptr_alignment)]
    fn of(ring: &'a shmlane_segment::Region<'_>) -> Self {
        let end = MPMC_INTENTS_AT + 128 * MPMC_INTENT_ENTRIES as usize;
        assert!(ring.len() >= end, "ring region of {} bytes", ring.len());
        let word = |off: usize| -> &'a AtomicU64 {
            assert!(off % 8 == 0 && off + 8 <= end);
            // SAFETY: `off + 8` lies within the region (asserted), which is 128-byte aligned,
            // so the word is 8-aligned; the mapping lives as long as the segment `ring`
            // borrows ('a); every process (the ring code, this test) accesses these header
            // words only atomically.
            unsafe { AtomicU64::from_ptr(ring.as_ptr().add(off).cast::<u64>()) }
        };
        Self {
            enq: word(MPMC_ENQ),
            deq: word(MPMC_DEQ),
            intents: (0..MPMC_INTENT_ENTRIES as usize)
                .map(|i| {
                    let e = MPMC_INTENTS_AT + 128 * i;
                    (word(e), word(e + 8))
                })
                .collect(),
        }
    }
}

/// The hostile peer of review finding F5: until `stop`, keeps a ring's worth of dead holes
/// just ahead of the receivers. For every position `p` from `deq` to `deq + cap`: the slot's
/// stamp is already `p` (free for `p`: an empty ring, and a consumer passing a skipped `p - cap`
/// stamps its slot `p`), so it names `p` in the producer intent entry `p mod 32` under a dead
/// owner, then moves `enq` past them (never back). To a receiver each position is a hole a dead
/// sender took and never filled. Counts its laps in `laps`.
fn forge_dead_holes(w: &MpmcWords<'_>, cap: u64, stop: &AtomicBool, laps: &AtomicU64) {
    // ORDERING: Relaxed; a flag between two threads of this process.
    while !stop.load(Ordering::Relaxed) {
        // ORDERING: Acquire; which positions to forge (no pairing needed, a hostile peer).
        let d = w.deq.load(Ordering::Acquire);
        for p in d..d + cap {
            let (owner, pos) = w.intents[(p % MPMC_INTENT_ENTRIES) as usize];
            // ORDERING: Relaxed; published by the Release store of the intent below.
            owner.store(DEAD_OWNER, Ordering::Relaxed);
            // ORDERING: Release; pairs with the receiver's Acquire intent load: the dead owner
            // is read with it.
            pos.store(MPMC_INTENT_VALID | p, Ordering::Release);
        }
        // ORDERING: Release; pairs with the receiver's Acquire load of `enq` in `recover`: the
        // intents above are visible to whoever sees `enq` past them.
        w.enq.fetch_max(d + cap, Ordering::Release);
        // ORDERING: Relaxed; a counter between two threads of this process.
        laps.fetch_add(1, Ordering::Relaxed);
    }
}

/// Runs `recv` on a thread while [`forge_dead_holes`] keeps a ring's worth of dead holes
/// ahead of the receivers of MPMC channel `name` (`cap` slots; its first lap done before
/// `recv` starts). The forger stops when `recv` returns, or after 3 s: a recv that ignores its
/// deadline turns as long as the holes come, so it then ends and its caller's assertions
/// report it. Returns what `recv` returned and the forger's laps.
fn with_forged_holes<R: Send>(name: &str, cap: u64, recv: impl FnOnce() -> R + Send) -> (R, u64) {
    let seg = shmlane_segment::Segment::posix(name).open().unwrap();
    let ring = seg.find_region("ring").unwrap();
    let words = MpmcWords::of(&ring);
    let (stop, laps) = (AtomicBool::new(false), AtomicU64::new(0));
    let r = std::thread::scope(|s| {
        let forger = s.spawn(|| forge_dead_holes(&words, cap, &stop, &laps));
        let t = Instant::now();
        // ORDERING: Relaxed; a counter between two threads of this process.
        while laps.load(Ordering::Relaxed) == 0 {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "the forger never ran"
            );
            std::thread::yield_now();
        }
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let stop = &stop;
        let receiver = s.spawn(move || {
            let r = recv();
            // ORDERING: Relaxed; a flag between two threads of this process.
            stop.store(true, Ordering::Relaxed);
            let _ = done_tx.send(());
            r
        });
        let _ = done_rx.recv_timeout(Duration::from_secs(3));
        // ORDERING: Relaxed; as above.
        stop.store(true, Ordering::Relaxed);
        forger.join().unwrap();
        receiver.join().unwrap()
    });
    // ORDERING: Relaxed; the forger has been joined.
    (r, laps.load(Ordering::Relaxed))
}

/// The most holes an MPMC endpoint of a `cap`-slot ring may recover in a call that took
/// `took` (since its last successful operation): `cap + 1` back to back, then each at least
/// `HOLE_CHECK` (10 ms) after the one before.
fn hole_bound(cap: u64, took: Duration) -> u64 {
    cap + 1 + (took.as_millis() / 10) as u64
}

/// Review finding F5: a hostile peer keeps forging dead holes just ahead of a blocked MPMC
/// `recv` (8 slots, no sender at all). A `recv` whose deadline has passed returns `Timeout`
/// after one recovery (the deadline is tested after each). A `recv` with a 200 ms deadline
/// returns `Timeout` by it (+300 ms), having recovered at most a ring's worth of holes in a
/// row and then one per `HOLE_CHECK` (10 ms): its `lost` is at most `hole_bound` (+4 slack).
/// Before the fix every recovery went straight back to `try_recv`, without a deadline test or
/// a pause: the recv turned at full CPU, recovering (and counting lost) every forged hole for
/// as long as the forger kept ahead (tens of thousands in 200 ms; the expired recv at least
/// the first lap's 8).
#[test]
fn f5_forged_dead_holes_ahead_of_a_blocked_mpmc_recv_are_rate_limited() {
    const CAP: u64 = 8;
    let name = unique("mpmc-forged-holes");
    let _c = Cleanup(name.clone());
    let ch = shmlane::mpmc::<u64>(&name)
        .when_peers_leave(shmlane::PeersLeave::Disconnect)
        .capacity(CAP)
        .create()
        .unwrap();
    let mut rx = ch.receiver().unwrap();
    let (((expired, lost_expired), (r, took, lost)), laps) = with_forged_holes(&name, CAP, || {
        let r = rx.recv(Some(Deadline::after(Duration::ZERO)));
        let expired = (r, rx.stats().lost);
        let t0 = Instant::now();
        let r = rx.recv(Some(Deadline::after(Duration::from_millis(200))));
        let took = t0.elapsed();
        (expired, (r, took, rx.stats().lost - expired.1))
    });
    let bound = hole_bound(CAP, took) + 4;
    let what = format!(
        "expired recv gave {expired:?}, lost {lost_expired}; 200 ms recv gave {r:?} after \
         {took:?}, lost {lost} (bound {bound}); {laps} forger laps"
    );
    assert_eq!(expired, Err(RecvError::Timeout), "{what}");
    // Exactly one: the forger's first lap (done before the recvs) made the next position a
    // dead hole, and nothing else moves `deq`.
    assert_eq!(lost_expired, 1, "{what}");
    assert_eq!(r, Err(RecvError::Timeout), "{what}");
    assert!(
        took >= Duration::from_millis(200) && took < Duration::from_millis(500),
        "{what}"
    );
    // The next position was a forged hole too (the first lap made a ring's worth).
    assert!(lost >= 1, "{what}");
    assert!(lost <= bound, "{what}");
}

/// Review finding F5, the drain after the senders died: a sender process is killed (its
/// attachment dead), then a hostile peer keeps forging dead holes ahead of a blocked `recv`
/// (32 slots, a 2 s deadline). The recv reports `PeerDied` (a wake-up finds the dead sender;
/// the drain's forced hole checks stop after a ring's worth of holes in a row, and it finds
/// the ring empty) having recovered at most `hole_bound` (+4 slack). Before the fix the drain
/// recovered forged holes for as long as the forger kept ahead, and without a deadline test:
/// it fails there whenever the forger keeps ahead past one lap, which is not guaranteed (seen
/// 6 of 6 runs); the deterministic witness is the test above, which has no drain.
#[test]
fn f5_forged_dead_holes_do_not_hold_a_recv_in_the_drain_after_a_sender_died() {
    const CAP: u64 = 32;
    let name = unique("mpmc-forged-drain");
    let _c = Cleanup(name.clone());
    let ch = shmlane::mpmc::<u64>(&name)
        .when_peers_leave(shmlane::PeersLeave::Disconnect)
        .capacity(CAP)
        .create()
        .unwrap();
    let mut rx = ch.receiver().unwrap();
    let mut sender = child("mpmc-sender-hang", &[&name])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = std::io::BufReader::new(sender.stdout.take().unwrap());
    let attached = std::io::BufRead::lines(out).any(|l| l.is_ok_and(|l| l == "attached"));
    assert!(attached, "the child ended before it attached its sender");
    sender.kill().unwrap();
    sender.wait().unwrap();
    let ((r, took, lost), laps) = with_forged_holes(&name, CAP, || {
        let t0 = Instant::now();
        let r = rx.recv(Some(Deadline::after(Duration::from_secs(2))));
        (r, t0.elapsed(), rx.stats().lost)
    });
    let bound = hole_bound(CAP, took) + 4;
    let what =
        format!("recv gave {r:?} after {took:?}, lost {lost} (bound {bound}); {laps} forger laps");
    assert_eq!(r, Err(RecvError::PeerDied), "{what}");
    // The first position was a forged hole (the first lap made a ring's worth).
    assert!(lost >= 1, "{what}");
    assert!(lost <= bound, "{what}");
}
