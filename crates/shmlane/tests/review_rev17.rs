//! Review rev17 of issue 17's library hooks: `count_payload` (stats word 6) against a hostile
//! peer and a buggy caller, and `Producer::send_keeping` against a dead consumer, the wrap and
//! tiny rings.

use std::{
    io::{BufRead, BufReader},
    os::unix::fs::FileExt,
    time::{Duration, Instant},
};

use shmlane::{Deadline, SendError, UnlinkPolicy};
use shmlane_testkit::{Cleanup, child, child_role, unique};

#[test]
fn child_entry() {
    let Some((role, args)) = child_role() else {
        return;
    };
    if role == "hold-consumer" {
        let ch = shmlane::spsc::<u64>(&args[0]).open().unwrap();
        let _rx = ch.consumer().unwrap();
        println!("OUT:held");
        std::thread::sleep(Duration::from_secs(300));
    }
}

/// The byte offset in the segment file of stats word `i` of `side` (0 senders, 1 receivers).
fn stats_word_at(name: &str, side: u64, i: u64) -> u64 {
    let info = shmlane_segment::inspect(&std::path::PathBuf::from(format!("/dev/shm/{name}")))
        .unwrap()
        .unwrap();
    let chan = info.regions.iter().find(|r| r.name == "chan").unwrap();
    // The channel header: 16 words, then 16 statistics words per side.
    chan.offset + 128 + side * 128 + i * 8
}

fn poke(name: &str, side: u64, i: u64, v: u64) {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/dev/shm/{name}"))
        .unwrap();
    f.write_all_at(&v.to_ne_bytes(), stats_word_at(name, side, i))
        .unwrap();
}

fn inspected(name: &str) -> shmlane::ChannelStats {
    let info = shmlane_segment::inspect(&std::path::PathBuf::from(format!("/dev/shm/{name}")))
        .unwrap()
        .unwrap();
    shmlane::inspect(&info).unwrap()
}

/// A peer writes the statistics words (word 6 past word 1, `u64::MAX`, word 1 at `u64::MAX`):
/// `stats()` and `inspect` neither panic (debug overflow checks) nor wrap to a huge count, and
/// the endpoints keep working and counting.
#[test]
fn hostile_stats_words_neither_panic_nor_wrap() {
    let name = unique("rev17-hostile");
    let _c = Cleanup(name.clone());
    let ch = shmlane::spsc::<[u8; 16]>(&name)
        .capacity(8)
        .create()
        .unwrap();
    let (mut tx, mut rx) = (ch.producer().unwrap(), ch.consumer().unwrap());
    for _ in 0..3 {
        tx.send([1; 16], None).unwrap();
        tx.count_payload(5);
        rx.recv(None).unwrap();
        rx.count_payload(5);
    }
    // Both published before the words are overwritten.
    assert_eq!((tx.stats().bytes, rx.stats().bytes), (15, 15));
    for (w1, w6, want) in [
        (48, 49, 0),
        (48, u64::MAX, 0),
        (u64::MAX, 0, u64::MAX),
        (u64::MAX, 33, u64::MAX - 33),
        (0, u64::MAX, 0),
    ] {
        for side in [0, 1] {
            poke(&name, side, 1, w1);
            poke(&name, side, 6, w6);
        }
        assert_eq!(tx.stats().bytes, want, "{w1} {w6}");
        assert_eq!(rx.stats().bytes, want, "{w1} {w6}");
        let c = inspected(&name);
        assert_eq!((c.sent.bytes, c.received.bytes), (want, want), "{w1} {w6}");
        // Counting on (fetch_add wraps in shared memory, never panics).
        tx.send([1; 16], None).unwrap();
        tx.count_payload(3);
        rx.recv(None).unwrap();
        rx.count_payload(3);
        let _ = (tx.stats(), rx.stats());
    }
}

/// A buggy caller says `count_payload` more often than it sends (no message, or twice for one):
/// the extra calls are ignored; they neither lower this endpoint's count below what it sent
/// nor take from the other endpoints' messages on the same side (MPMC).
#[test]
fn count_payload_without_a_message_changes_nothing() {
    let name = unique("rev17-stray");
    let _c = Cleanup(name.clone());
    let ch = shmlane::spsc::<[u8; 16]>(&name)
        .capacity(8)
        .unlink(UnlinkPolicy::CreatorDrop)
        .create()
        .unwrap();
    let (mut tx, mut rx) = (ch.producer().unwrap(), ch.consumer().unwrap());
    // Before any message.
    tx.count_payload(0);
    rx.count_payload(0);
    for _ in 0..2 {
        tx.send([1; 16], None).unwrap();
        tx.count_payload(4);
        tx.count_payload(4);
        rx.recv(None).unwrap();
        rx.count_payload(4);
        rx.count_payload(0);
    }
    // A failed send is no message either.
    for _ in 0..8 {
        tx.send([1; 16], None).unwrap();
        tx.count_payload(16);
    }
    assert!(tx.try_send([1; 16]).is_err());
    tx.count_payload(0);
    assert_eq!((tx.stats().messages, tx.stats().bytes), (10, 8 + 8 * 16));
    assert_eq!((rx.stats().messages, rx.stats().bytes), (2, 8));

    // MPMC: another sender's stray calls do not take from this one's messages.
    let name = unique("rev17-stray-mpmc");
    let _c = Cleanup(name.clone());
    let ch = shmlane::mpmc::<[u8; 16]>(&name)
        .capacity(8)
        .unlink(UnlinkPolicy::CreatorDrop)
        .create()
        .unwrap();
    let (mut a, mut b) = (ch.sender().unwrap(), ch.sender().unwrap());
    for _ in 0..5 {
        a.send([1; 16], None).unwrap();
    }
    for _ in 0..100 {
        b.count_payload(0);
    }
    drop(b);
    assert_eq!((a.stats().messages, a.stats().bytes), (5, 80));
    let c = inspected(&name);
    assert_eq!((c.sent.messages, c.sent.bytes), (5, 80));
}

/// `send_keeping` on a ring full but for the kept slot whose consumer is killed: `PeerDied`
/// within the peer-check bound, not at the deadline, and without turning.
#[test]
fn send_keeping_reports_a_dead_consumer_soon() {
    let name = unique("rev17-keep-dead");
    let _c = Cleanup(name.clone());
    let ch = shmlane::spsc::<u64>(&name).capacity(4).create().unwrap();
    let mut c = child("hold-consumer", &[&name])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(c.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("held") {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "child ended");
    }
    let mut tx = ch.producer().unwrap();
    for i in 0..3 {
        tx.send_keeping(i, 1, Some(Deadline::after(Duration::from_secs(1))))
            .unwrap();
    }
    assert_eq!(tx.free(), 1);
    c.kill().unwrap();
    c.wait().unwrap();
    let t0 = Instant::now();
    let r = tx.send_keeping(7, 1, Some(Deadline::after(Duration::from_secs(10))));
    assert!(matches!(r, Err(SendError::PeerDied(7))), "{r:?}");
    assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
    // The kept slot is still there for the last message.
    tx.try_send(8).unwrap();
}

/// `send_keeping` across many laps of tiny rings (capacity 1, 2, 4) with a consumer thread
/// that takes one message at a time: every message arrives in order and each wait is woken by
/// the consumer (it finishes long before the deadlines), and the kept slots are never taken.
#[test]
fn send_keeping_laps_tiny_rings() {
    for cap in [1u64, 2, 4] {
        for keep in [1usize, 2, 5] {
            let name = unique("rev17-keep-lap");
            let _c = Cleanup(name.clone());
            let ch = shmlane::spsc::<u64>(&name).capacity(cap).create().unwrap();
            let (mut tx, mut rx) = (ch.producer().unwrap(), ch.consumer().unwrap());
            let n = 3000u64;
            let t = std::thread::spawn(move || {
                for want in 0..n {
                    let got = rx.recv(Some(Deadline::after(Duration::from_secs(10))));
                    assert_eq!(got, Ok(want));
                }
                rx
            });
            let kept = keep.min(cap as usize - 1);
            let t0 = Instant::now();
            for i in 0..n {
                tx.send_keeping(i, keep, Some(Deadline::after(Duration::from_secs(10))))
                    .unwrap();
                assert!(tx.free() >= kept, "cap {cap} keep {keep}: {}", tx.free());
            }
            let _rx = t.join().unwrap();
            assert!(
                t0.elapsed() < Duration::from_secs(8),
                "cap {cap} keep {keep}: {:?}",
                t0.elapsed()
            );
        }
    }
}
