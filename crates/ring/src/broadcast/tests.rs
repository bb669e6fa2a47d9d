//! Unit tests of the broadcast ring (Miri runs them too).

use super::*;
use crate::HeapRegion;

/// Finding 14 of issue 15: a stamp overwritten in a live ring (a high bit flipped) was
/// taken for a lap of billions of billions of messages. A stamp the slot cannot hold, or
/// one past the published position, is `Corrupt`; a hostile `tail` moves a lapped reader at
/// most a ring past the stamp it saw. Every reported loss is bounded by what was sent.
#[test]
fn a_lap_is_believed_only_where_it_is_possible() {
    let cap = 8u64;
    let (mut tx, mut rx) = HeapRegion::broadcast(cap, 64);
    let mut buf = [0u8; 64];
    // A real lap first: 3 rings of messages, the reader at 0.
    for i in 0..3 * cap {
        tx.send(&i.to_le_bytes()).unwrap();
    }
    assert_eq!(rx.recv(&mut buf), Err(RecvError::Lapped { lost: 2 * cap }));
    for _ in 0..cap {
        rx.recv(&mut buf).unwrap();
    }
    assert_eq!(rx.recv(&mut buf), Err(RecvError::Empty));
    let c = rx.position();
    // A high bit flipped in the stamp of the next slot: congruent, far past `tail`.
    let raw = rx.raw.clone();
    let w = raw.word(c, 0);
    // ORDERING: Relaxed; a test playing a hostile peer.
    w.store(stamp(c + (1 << 40), 0), Ordering::Relaxed);
    assert!(matches!(rx.recv(&mut buf), Err(RecvError::Corrupt(_))));
    assert_eq!(rx.position(), c, "the cursor stays at a corrupt stamp");
    // A low bit flipped: a position that slot cannot hold.
    // ORDERING: as above.
    w.store(stamp(c + cap + 1, 0), Ordering::Relaxed);
    assert!(matches!(rx.recv(&mut buf), Err(RecvError::Corrupt(_))));
    // A possible lap (one ring on) with a hostile `tail` far ahead: the cursor moves at
    // most a ring past the stamp.
    // ORDERING: as above.
    w.store(stamp(c + cap, 0), Ordering::Relaxed);
    // ORDERING: as above.
    raw.hdr().tail.pos.store(c + (1 << 41), Ordering::Relaxed);
    match rx.recv(&mut buf) {
        Err(RecvError::Lapped { lost }) => assert!(lost <= 2 * cap, "lost {lost}"),
        other => panic!("expected a bounded lap, got {other:?}"),
    }
    let lost_total = rx.lost();
    assert!(lost_total <= 4 * cap, "total {lost_total}");
}

/// A producer taking over publishes where it goes on from, so its messages are believed
/// by lapped readers even when its predecessor died before publishing a multiple of 64.
#[test]
fn a_producer_taking_over_publishes_its_position() {
    let region = HeapRegion::new(BroadcastRing::required_size(8, 64));
    let (ptr, len) = (region.as_ptr(), region.len());
    // SAFETY: the region outlives every handle made here.
    unsafe {
        BroadcastRing::init(ptr, len, 8, 64, 0).unwrap();
        let mut tx = BroadcastRing::producer(ptr, len, 1, &|_| true).unwrap();
        let mut rx = BroadcastRing::reader(ptr, len).unwrap();
        // 64 messages: the predecessor "dies" after its last stamp, before publishing 64.
        for i in 0..64u64 {
            tx.send(&i.to_le_bytes()).unwrap();
        }
        rx.raw.hdr().tail.pos.store(0, Ordering::Relaxed);
        core::mem::forget(tx);
        let mut tx = BroadcastRing::producer(ptr, len, 2, &|t| t != 1).unwrap();
        assert_eq!(tx.position(), 64);
        for i in 64..80u64 {
            tx.send(&i.to_le_bytes()).unwrap();
        }
        let mut buf = [0u8; 64];
        // The reader, at 0, is lapped: stamp 72 in slot 0, published 64: believed.
        match rx.recv(&mut buf) {
            Err(RecvError::Lapped { lost }) => assert_eq!(lost, 72),
            other => panic!("expected a lap, got {other:?}"),
        }
    }
}

/// Message `seq`: its length varies with `seq`, every byte derives from it.
fn msg(seq: u64, max: usize) -> Vec<u8> {
    let len = 8 + (seq as usize * 13) % (max - 7);
    let mut m: Vec<u8> = (0..len)
        .map(|i| (seq as u8).wrapping_add(i as u8))
        .collect();
    m[..8].copy_from_slice(&seq.to_le_bytes());
    m
}

fn check(buf: &[u8], max: usize) -> u64 {
    let seq = u64::from_le_bytes(buf[..8].try_into().unwrap());
    assert_eq!(buf, msg(seq, max), "message {seq} torn or corrupt");
    seq
}

/// Every position class: from 0, across the wrap of u64 and across 2^63 (where the stamp
/// drops the position's top bit).
const STARTS: [u64; 3] = [0, u64::MAX - 5, (1 << 63) - 5];

/// Review rev2 (finding 14, loss bounded by what can have been lost): a stamp overwritten
/// ahead of anything the producer can have written is `Corrupt`, not a lap of that size;
/// a real lap after a producer died between a message and its due publication of `tail`
/// (its successor publishes its position at attach) is still a lap.
#[test]
fn rev2_a_stamp_past_the_producers_position_is_corrupt_not_a_loss() {
    for start in STARTS {
        let (mut tx, mut rx) = HeapRegion::broadcast_at(8, 64, start);
        let mut buf = [0u8; 48];
        tx.send(&[1; 8]).unwrap();
        assert_eq!(rx.recv(&mut buf), Ok(8));
        // The next slot says "message 10^8 ahead, complete".
        let c = rx.position();
        rx.raw.word(c, 0).store(
            stamp(c.wrapping_add(100_000_000) & POS_MASK, 0),
            Ordering::Relaxed,
        );
        assert!(
            matches!(rx.recv(&mut buf), Err(RecvError::Corrupt(_))),
            "start {start}"
        );
        assert_eq!((rx.lost(), rx.position()), (0, c), "start {start}");

        // A producer that wrote message 63 past `start`'s publication point and died
        // before publishing `tail` for it; its successor continues and laps the reader.
        let (mut tx, mut rx) = HeapRegion::broadcast_at(8, 64, start);
        let first_pub = start.wrapping_add(PUBLISH_EVERY - start % PUBLISH_EVERY);
        while tx.position() != first_pub {
            tx.send(&[2; 8]).unwrap();
        }
        // Died just before its publication: `tail` still says `start`.
        tx.raw.hdr().tail.pos.store(start, Ordering::Relaxed);
        let raw = tx.raw.clone();
        // It dies: no drop (which would publish `tail` and free the role). Its share of
        // the region's keep-alive is let go first, so Miri's leak check sees nothing left.
        drop(tx.raw.keep.take());
        core::mem::forget(tx);
        let ptr = raw.hdr.as_ptr().cast::<u8>();
        let len = BroadcastRing::required_size(8, 64);
        // SAFETY: the heap region lives (kept by `rx`'s and `raw`'s KeepAlive).
        let mut tx2 = unsafe { BroadcastRing::producer(ptr, len, 2, &|_| false) }.unwrap();
        assert_eq!(tx2.position(), first_pub);
        for _ in 0..PUBLISH_EVERY - 1 {
            tx2.send(&[3; 8]).unwrap();
        }
        let r = rx.recv(&mut buf);
        assert!(
            matches!(r, Err(RecvError::Lapped { .. })),
            "start {start}: {r:?}"
        );
    }
}

/// A reader at `start` on `tx`'s ring.
fn reader_at(tx: &BroadcastProducer, start: Start) -> BroadcastReader {
    let ptr = tx.raw.hdr.as_ptr().cast::<u8>();
    let len = BroadcastRing::required_size(tx.raw.cap, tx.raw.words * 8);
    // SAFETY: the heap region lives as long as `tx` (its keep-alive), which outlives the
    // reader in these tests.
    unsafe { BroadcastRing::reader_from(ptr, len, start) }.unwrap()
}

/// Reads everything there is: (seq, first byte) per message, laps as (u64::MAX, lost).
fn drain(rx: &mut BroadcastReader) -> Vec<(u64, u64)> {
    let mut buf = [0u8; 16];
    let mut out = Vec::new();
    loop {
        match rx.recv_seq(&mut buf) {
            Ok((n, seq)) => {
                assert_eq!(n, 8);
                out.push((seq, u64::from_le_bytes(buf[..8].try_into().unwrap())));
            }
            Err(RecvError::Lapped { lost }) => out.push((u64::MAX, lost)),
            Err(RecvError::Empty) => return out,
            Err(e) => panic!("{e}"),
        }
    }
}

/// Issue 16: the start position chosen at attach. Newest sees nothing old; Oldest sees
/// exactly what the ring holds (only real messages on a ring not yet full); Seq(n) starts
/// at n, an overwritten n at the oldest with the gap reported, a future n waits for it.
#[test]
fn readers_start_where_asked() {
    for start in STARTS {
        let (mut tx, _) = HeapRegion::broadcast_at(8, 32, start);
        let at = |i: u64| start.wrapping_add(i);
        let send = |tx: &mut BroadcastProducer, n: u64| {
            for _ in 0..n {
                let p = tx.position();
                tx.send(&p.to_le_bytes()).unwrap();
            }
        };
        send(&mut tx, 5);
        // Not yet full: the oldest is the ring's first message, no stand-in before it.
        let want: Vec<_> = (0..5).map(|i| (at(i), at(i))).collect();
        assert_eq!(
            drain(&mut reader_at(&tx, Start::Oldest)),
            want,
            "start {start}"
        );
        send(&mut tx, 15);
        assert!(drain(&mut reader_at(&tx, Start::Newest)).is_empty());
        let want: Vec<_> = (12..20).map(|i| (at(i), at(i))).collect();
        assert_eq!(
            drain(&mut reader_at(&tx, Start::Oldest)),
            want,
            "start {start}"
        );
        let want: Vec<_> = (15..20).map(|i| (at(i), at(i))).collect();
        assert_eq!(drain(&mut reader_at(&tx, Start::Seq(at(15)))), want);
        // Overwritten: from the oldest, the gap (12 - 2) reported first and counted.
        let mut old = reader_at(&tx, Start::Seq(at(2)));
        let mut want = vec![(u64::MAX, 10)];
        want.extend((12..20).map(|i| (at(i), at(i))));
        assert_eq!(drain(&mut old), want, "start {start}");
        assert_eq!(old.lost(), 10);
        // The future: nothing until message 25, then from it.
        let mut future = reader_at(&tx, Start::Seq(at(25)));
        send(&mut tx, 5);
        assert!(drain(&mut future).is_empty());
        send(&mut tx, 2);
        assert_eq!(drain(&mut future), vec![(at(25), at(25)), (at(26), at(26))]);
        assert_eq!(future.lost(), 0);
    }
}

/// Issue 16: sequence numbers go up by one per message, and every gap is exactly the
/// loss the `Lapped` in between reported, across the wrap of u64 and of 2^63.
#[test]
fn sequence_gaps_are_exactly_the_losses() {
    for start in STARTS {
        let (mut tx, mut rx) = HeapRegion::broadcast_at(4, 32, start);
        let mut buf = [0u8; 16];
        let (mut expect, mut lost, mut got) = (start, 0u64, 0u64);
        for burst in [1u64, 3, 9, 2, 17, 4, 70, 5] {
            for _ in 0..burst {
                let p = tx.position();
                tx.send(&p.to_le_bytes()).unwrap();
            }
            loop {
                match rx.recv_seq(&mut buf) {
                    Ok((_, seq)) => {
                        assert_eq!(seq, expect, "start {start}");
                        assert_eq!(buf[..8], seq.to_le_bytes());
                        expect = seq.wrapping_add(1);
                        got += 1;
                    }
                    Err(RecvError::Lapped { lost: l }) => {
                        lost += l;
                        expect = expect.wrapping_add(l);
                    }
                    Err(RecvError::Empty) => break,
                    Err(e) => panic!("{e}"),
                }
            }
        }
        assert!(lost > 0);
        assert_eq!(got + lost, tx.position().wrapping_sub(start));
        assert_eq!(rx.lost(), lost);
    }
}

/// Issue 16: a message written in place through a loan reads back whole; a loan dropped
/// unpublished leaves the position for the next message, and readers wait meanwhile.
#[test]
fn loans_publish_in_place() {
    for start in STARTS {
        let (mut tx, mut rx) = HeapRegion::broadcast_at(4, 64, start);
        let mut buf = [0u8; 48];
        for round in 0..10u8 {
            let mut loan = tx.loan();
            assert_eq!(loan.position(), start.wrapping_add(u64::from(round)));
            let msg: Vec<u8> = (0..21).map(|i| round ^ i).collect();
            // Odd pieces: a word written in parts, one across a word boundary.
            loan.write(0, &msg[..3]).unwrap();
            loan.write(3, &msg[3..13]).unwrap();
            loan.write(13, &msg[13..]).unwrap();
            let mut back = [0u8; 21];
            loan.read(0, &mut back);
            assert_eq!(back[..], msg[..]);
            assert!(loan.write(40, &[0; 9]).is_err());
            let seq = loan.publish(21).unwrap();
            assert_eq!(rx.recv_seq(&mut buf), Ok((21, seq)));
            assert_eq!(buf[..21], msg[..]);
        }
        // A loan given up unpublished.
        let _ = tx.loan();
        assert_eq!(rx.recv(&mut buf), Err(RecvError::Empty));
        let p = tx.position();
        tx.send(b"after").unwrap();
        assert_eq!(rx.recv_seq(&mut buf), Ok((5, p)));
    }
}

/// Review revb: a loan given up unpublished (or a publisher killed mid-loan, or mid-send)
/// leaves the slot of the producer's position busy: the message a ring back, which that
/// slot held, is gone. `Oldest` started there and was told it was lapped by the whole ring
/// (the reader jumped to the busy slot), losing the `capacity - 1` messages still intact.
#[test]
fn revb_oldest_after_a_loan_given_up_reads_what_the_ring_still_holds() {
    for start in STARTS {
        let (mut tx, _) = HeapRegion::broadcast_at(8, 32, start);
        let at = |i: u64| start.wrapping_add(i);
        for _ in 0..20 {
            let p = tx.position();
            tx.send(&p.to_le_bytes()).unwrap();
        }
        // Message 20's slot (message 12's) marked busy, never published.
        let _ = tx.loan();
        let want: Vec<_> = (13..20).map(|i| (at(i), at(i))).collect();
        assert_eq!(
            drain(&mut reader_at(&tx, Start::Oldest)),
            want,
            "start {start}"
        );
        // Message 12 is gone: asking for it is a gap of one.
        let mut want = vec![(u64::MAX, 1)];
        want.extend((13..20).map(|i| (at(i), at(i))));
        assert_eq!(
            drain(&mut reader_at(&tx, Start::Seq(at(12)))),
            want,
            "start {start}"
        );
        // Publishing 20 then: every reader goes on with it.
        let mut rx = reader_at(&tx, Start::Oldest);
        let p = tx.position();
        tx.send(&p.to_le_bytes()).unwrap();
        let want: Vec<_> = (13..21).map(|i| (at(i), at(i))).collect();
        assert_eq!(drain(&mut rx), want, "start {start}");
    }
}

/// A start gap counts only messages that existed: a far-future number (taken as
/// overwritten) or one before the ring's first message is not reported as ~2^64 lost
/// (review revb left this: a gap of 1.38e19 reached the channel's shared lost statistic).
#[test]
fn a_start_gap_is_at_most_what_the_ring_overwrote() {
    for start in STARTS {
        let (mut tx, _) = HeapRegion::broadcast_at(8, 32, start);
        for _ in 0..5 {
            let p = tx.position();
            tx.send(&p.to_le_bytes()).unwrap();
        }
        // Nothing overwritten yet: no gap whatever number is asked for.
        for d in [HALF + 1, 1 << 63, u64::MAX - 7] {
            let mut rx = reader_at(&tx, Start::Seq(tx.position().wrapping_add(d)));
            assert_eq!(rx.take_start_gap(), 0, "start {start} d {d:#x}");
        }
        for _ in 0..15 {
            let p = tx.position();
            tx.send(&p.to_le_bytes()).unwrap();
        }
        // 20 sent through 8 slots: at most 13 overwritten, whatever number is asked for.
        for n in [
            start.wrapping_sub(100),
            tx.position().wrapping_add(HALF + 1),
        ] {
            let mut rx = reader_at(&tx, Start::Seq(n));
            let gap = rx.take_start_gap();
            assert!(
                (12..=13).contains(&gap),
                "start {start} n {n:#x}: gap {gap}"
            );
        }
        // A number really overwritten: exactly the messages between it and the oldest.
        let mut rx = reader_at(&tx, Start::Seq(start.wrapping_add(3)));
        let gap = rx.take_start_gap();
        assert!((9..=10).contains(&gap), "start {start}: gap {gap}");
    }
}

/// Review revb (a guard: it held on the code as reviewed): a sequence number ahead of the
/// producer by less than 2^62 is waited for (`Start::Seq`), one at least that far is taken
/// as overwritten. At the edge (just under 2^62 ahead) the slot of the cursor holds a
/// congruent older position at most 2^62 behind it, so it reads "behind" (empty), never a
/// lap or `Corrupt` (which a subscriber keeps for good) for a number the caller chose.
#[test]
fn revb_a_far_sequence_number_is_waited_for_or_a_gap_never_corrupt() {
    for start in STARTS {
        for d in (0..=10u64).map(|k| HALF - k).chain([
            HALF + 1,
            HALF + 8,
            1 << 63,
            u64::MAX,
            u64::MAX - 7,
        ]) {
            let (mut tx, _) = HeapRegion::broadcast_at(8, 32, start);
            for _ in 0..5 {
                let p = tx.position();
                tx.send(&p.to_le_bytes()).unwrap();
            }
            let mut rx = reader_at(&tx, Start::Seq(tx.position().wrapping_add(d)));
            for _ in 0..3 {
                for (seq, v) in drain(&mut rx) {
                    assert!(seq == u64::MAX || seq == v, "start {start} d {d:#x}");
                }
                for _ in 0..7 {
                    let p = tx.position();
                    tx.send(&p.to_le_bytes()).unwrap();
                }
            }
        }
    }
}

#[test]
fn every_reader_sees_every_message() {
    for start in STARTS {
        let (mut tx, mut r1) = HeapRegion::broadcast_at(8, 64, start);
        let mut r2 = r1.clone();
        let max = tx.max_message();
        assert_eq!(max, 48);
        let mut buf = [0u8; 48];
        for seq in 0..100u64 {
            tx.send(&msg(seq, max)).unwrap();
            for r in [&mut r1, &mut r2] {
                let n = r.recv(&mut buf).unwrap();
                assert_eq!(check(&buf[..n], max), seq);
                assert_eq!(r.recv(&mut buf), Err(RecvError::Empty));
            }
        }
        assert_eq!(r1.lost() + r2.lost(), 0);
    }
}

#[test]
fn a_lapped_reader_reports_exactly_what_it_lost() {
    for start in STARTS {
        let (mut tx, mut slow) = HeapRegion::broadcast_at(8, 32, start);
        let max = tx.max_message();
        let mut buf = vec![0u8; max];
        let (mut delivered, mut lost, mut next, mut sent) = (0u64, 0u64, 0u64, 0u64);
        for burst in [3u64, 20, 8, 9, 1, 64, 7, 200] {
            for _ in 0..burst {
                tx.send(&msg(sent, max)).unwrap();
                sent += 1;
            }
            // Read half of what is there, so the reader falls behind and is lapped.
            for _ in 0..=burst / 2 {
                match slow.recv(&mut buf) {
                    Ok(n) => {
                        assert_eq!(check(&buf[..n], max), next, "gap without a report");
                        next += 1;
                        delivered += 1;
                    }
                    Err(RecvError::Lapped { lost: l }) => {
                        assert!(l > 0);
                        lost += l;
                        next += l;
                    }
                    Err(RecvError::Empty) => break,
                    Err(e) => panic!("{e}"),
                }
            }
        }
        loop {
            match slow.recv(&mut buf) {
                Ok(n) => {
                    assert_eq!(check(&buf[..n], max), next);
                    next += 1;
                    delivered += 1;
                }
                Err(RecvError::Lapped { lost: l }) => {
                    lost += l;
                    next += l;
                }
                Err(RecvError::Empty) => break,
                Err(e) => panic!("{e}"),
            }
        }
        assert!(lost > 0, "the reader was never lapped");
        assert_eq!(delivered + lost, sent);
        assert_eq!(slow.lost(), lost);
    }
}

#[test]
fn too_long_and_too_small_lose_nothing() {
    let (mut tx, mut rx) = HeapRegion::broadcast(4, 32);
    assert_eq!(
        tx.send(&[0; 17]),
        Err(SendError::TooLong { len: 17, max: 16 })
    );
    tx.send(&[7; 16]).unwrap();
    let mut small = [0u8; 4];
    assert_eq!(
        rx.recv(&mut small),
        Err(RecvError::BufferTooSmall { needed: 16 })
    );
    let mut buf = [0u8; 16];
    assert_eq!(rx.recv(&mut buf), Ok(16));
    assert_eq!(buf, [7; 16]);
    tx.send(&[]).unwrap();
    assert_eq!(rx.recv(&mut small), Ok(0));
}

#[test]
fn a_late_reader_starts_at_the_producers_position() {
    let r = std::sync::Arc::new(HeapRegion::new(BroadcastRing::required_size(256, 32)));
    // SAFETY: the region outlives the handles (dropped at the end of the test).
    unsafe {
        BroadcastRing::init(r.as_ptr(), r.len(), 256, 32, 0).unwrap();
        let mut tx = BroadcastRing::producer(r.as_ptr(), r.len(), 1, &|_| true).unwrap();
        for i in 0..130u64 {
            tx.send(&i.to_le_bytes()).unwrap();
        }
        // Published at 128, found at 130 by the stamps: the late reader sees what comes.
        let mut late = BroadcastRing::reader(r.as_ptr(), r.len()).unwrap();
        assert_eq!(late.position(), 130);
        let mut buf = [0u8; 16];
        assert_eq!(late.recv(&mut buf), Err(RecvError::Empty));
        // A second producer is refused while the first lives.
        assert!(matches!(
            BroadcastRing::producer(r.as_ptr(), r.len(), 2, &|_| true),
            Err(AttachError::RoleTaken { holder: 1 })
        ));
        // The producer "dies" without publishing (no drop): its successor continues after
        // the last message, found by the stamps.
        core::mem::forget(tx);
        let mut tx2 = BroadcastRing::producer(r.as_ptr(), r.len(), 2, &|o| o != 1).unwrap();
        assert_eq!(tx2.position(), 130);
        tx2.send(&130u64.to_le_bytes()).unwrap();
        assert_eq!(late.recv(&mut buf), Ok(8));
        assert_eq!(u64::from_le_bytes(buf[..8].try_into().unwrap()), 130);
    }
}

/// Finding 12: on rings of fewer than 64 slots the published position (every 64 sends) can
/// name a slot a later lap overwrote. A reader that attached there was told it had lost
/// messages sent before it attached (32 here), and a producer taking over from a dead one
/// went back to the published position and sent over its predecessor's messages.
#[test]
fn small_rings_join_at_the_producers_position() {
    for (cap, sent) in [(8u64, 100u64), (2, 3), (16, 127), (32, 96), (8, 64), (4, 1)] {
        for start in STARTS {
            let r = std::sync::Arc::new(HeapRegion::new(BroadcastRing::required_size(cap, 32)));
            // SAFETY: the region outlives the handles (dropped at the end of the test).
            unsafe {
                BroadcastRing::init(r.as_ptr(), r.len(), cap, 32, start).unwrap();
                let mut tx = BroadcastRing::producer(r.as_ptr(), r.len(), 1, &|_| true).unwrap();
                for i in 0..sent {
                    tx.send(&i.to_le_bytes()).unwrap();
                }
                let mut late = BroadcastRing::reader(r.as_ptr(), r.len()).unwrap();
                let mut buf = [0u8; 16];
                assert_eq!(late.recv(&mut buf), Err(RecvError::Empty), "cap {cap}");
                assert_eq!(late.position(), start.wrapping_add(sent), "cap {cap}");
                // The producer dies without publishing; its successor continues after it.
                core::mem::forget(tx);
                let mut tx = BroadcastRing::producer(r.as_ptr(), r.len(), 2, &|o| o != 1).unwrap();
                assert_eq!(tx.position(), start.wrapping_add(sent), "cap {cap}");
                for i in sent..sent + 3 * cap {
                    tx.send(&i.to_le_bytes()).unwrap();
                    assert_eq!(late.recv(&mut buf), Ok(8));
                    assert_eq!(u64::from_le_bytes(buf[..8].try_into().unwrap()), i);
                }
                assert_eq!(late.lost(), 0);
            }
        }
    }
}

/// A producer that died in the middle of a message (busy stamp) is resumed at that
/// message, which is written again; a reader attaching meanwhile waits for it.
#[test]
fn a_half_written_message_is_written_again() {
    let (mut tx, _) = HeapRegion::broadcast(4, 32);
    for i in 0..6u64 {
        tx.send(&i.to_le_bytes()).unwrap();
    }
    tx.raw.word(6, 0).store(stamp(6, BUSY), Ordering::Relaxed);
    assert_eq!(tx.raw.producer_position(0), 6);
    let mut late = BroadcastReader {
        raw: tx.raw.clone(),
        cursor: tx.raw.producer_position(0),
        lost: 0,
        pending: 0,
        _not_sync: PhantomData,
    };
    let mut buf = [0u8; 16];
    assert_eq!(late.recv(&mut buf), Err(RecvError::Empty));
    tx.send(&6u64.to_le_bytes()).unwrap();
    assert_eq!(late.recv(&mut buf), Ok(8));
    assert_eq!(buf[0], 6);
}

#[test]
fn hostile_slots_give_errors_or_nothing_never_out_of_bounds() {
    let (mut tx, mut rx) = HeapRegion::broadcast(4, 32);
    tx.send(b"ok").unwrap();
    // Corrupt the length word of the slot the reader reads next (position 0, slot 0).
    tx.raw.word(0, 1).store(1 << 40, Ordering::Relaxed);
    let mut buf = [0u8; 16];
    assert!(matches!(rx.recv(&mut buf), Err(RecvError::Corrupt(_))));
    // Random stamps: the reader waits, skips or reports, never panics.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..if cfg!(miri) { 50 } else { 5000 } {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        tx.raw
            .word(x, (x >> 60) as usize % 2)
            .store(x, Ordering::Relaxed);
        let _ = rx.recv(&mut buf);
    }
}

#[test]
fn attach_rejects_bad_geometry() {
    let r = HeapRegion::new(BroadcastRing::required_size(4, 32));
    // SAFETY: the region outlives the handles, which are dropped at once.
    unsafe {
        assert!(matches!(
            BroadcastRing::init(r.as_ptr(), r.len(), 4, 20, 0),
            Err(AttachError::Corrupt(_))
        ));
        assert!(matches!(
            BroadcastRing::init(r.as_ptr(), r.len(), 3, 32, 0),
            Err(AttachError::BadCapacity(3))
        ));
        assert!(matches!(
            BroadcastRing::init(r.as_ptr(), r.len() - 8, 4, 32, 0),
            Err(AttachError::RegionTooSmall { .. })
        ));
        BroadcastRing::init(r.as_ptr(), r.len(), 4, 32, 0).unwrap();
        // A hostile element word: a slot larger than the region holds.
        let elem = r.as_ptr().add(16).cast::<u64>();
        elem.write((1 << 20) | (8 << 32));
        assert!(matches!(
            BroadcastRing::reader(r.as_ptr(), r.len()),
            Err(AttachError::RegionTooSmall { .. })
        ));
        elem.write(32 | (4 << 32));
        assert!(matches!(
            BroadcastRing::reader(r.as_ptr(), r.len()),
            Err(AttachError::WrongElement { .. })
        ));
    }
}

/// One producer, three reader threads (one slow): no reader ever gets a torn message, the
/// slow one's deliveries plus losses add up.
#[test]
fn threads_never_see_a_torn_message() {
    let n: u64 = if cfg!(miri) { 200 } else { 200_000 };
    let (mut tx, rx) = HeapRegion::broadcast(16, 64);
    let max = tx.max_message();
    let readers: Vec<_> = (0..3)
        .map(|k| {
            let mut rx = rx.clone();
            std::thread::spawn(move || {
                let mut buf = vec![0u8; max];
                let (mut got, mut next) = (0u64, 0u64);
                while next < n {
                    match rx.recv(&mut buf) {
                        Ok(len) => {
                            assert_eq!(check(&buf[..len], max), next);
                            next += 1;
                            got += 1;
                            if k == 2 && got % 64 == 0 {
                                std::thread::yield_now();
                            }
                        }
                        Err(RecvError::Lapped { lost }) => next += lost,
                        Err(RecvError::Empty) => std::thread::yield_now(),
                        Err(e) => panic!("{e}"),
                    }
                }
                assert_eq!(next, n);
                (got, rx.lost())
            })
        })
        .collect();
    drop(rx);
    for seq in 0..n {
        tx.send(&msg(seq, max)).unwrap();
    }
    drop(tx);
    for r in readers {
        let (got, lost) = r.join().unwrap();
        assert_eq!(got + lost, n);
    }
}
