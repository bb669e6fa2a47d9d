//! Broadcast for market data (issue 16), between real processes: the start position chosen at
//! subscribe, sequence numbers, the publisher's view of its subscribers, typed in-place
//! publishing, and a hostile cursor table.

use std::{
    os::unix::fs::FileExt,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use bytemuck::{Pod, Zeroable};
use shmlane::{ByteRecvError, Deadline, Start};
use shmlane_testkit::{Cleanup, child, child_role, finish, unique};

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
struct Quote {
    seq: u64,
    bid: f64,
    ask: f64,
    bid_qty: u32,
    ask_qty: u32,
    instrument: u32,
    venue: u32,
}

fn quote(i: u64) -> Quote {
    Quote {
        seq: i,
        bid: 1.0 + f64::from(i as u32) / 1e4,
        ask: 1.0002 + f64::from(i as u32) / 1e4,
        bid_qty: (i % 1000) as u32,
        ask_qty: (i % 777) as u32,
        instrument: (i % 17) as u32,
        venue: (i % 3) as u32,
    }
}

fn parse_start(s: &str) -> Start {
    match s {
        "newest" => Start::Newest,
        "oldest" => Start::Oldest,
        n => Start::Seq(n.strip_prefix("seq:").unwrap().parse().unwrap()),
    }
}

#[test]
fn child_entry() {
    let Some((role, args)) = child_role() else {
        return;
    };
    let name = &args[0];
    match role.as_str() {
        "sub-from" => {
            // Subscribes at args[1]; prints "seq payload" per message, "lapped n" per lap, until
            // a message "end" or args[2] ms without a message.
            let ch = shmlane::broadcast(name).open().unwrap();
            let mut sub = ch.subscriber_from(parse_start(&args[1])).unwrap();
            let idle = Duration::from_millis(args[2].parse().unwrap());
            let mut buf = [0u8; 240];
            loop {
                match sub.recv_seq(&mut buf, Some(Deadline::after(idle))) {
                    Ok((n, seq)) => {
                        let text = std::str::from_utf8(&buf[..n]).unwrap();
                        println!("OUT:{seq} {text}");
                        if text == "end" {
                            break;
                        }
                    }
                    Err(ByteRecvError::Lapped { lost }) => println!("OUT:lapped {lost}"),
                    Err(ByteRecvError::Timeout) => break,
                    Err(e) => panic!("{e}"),
                }
            }
        }
        "stall-after" => {
            // Subscribes, reads args[1] messages, then stops reading (until killed).
            let ch = shmlane::broadcast(name).open().unwrap();
            let mut sub = ch.subscriber().unwrap();
            let mut buf = [0u8; 240];
            for _ in 0..args[1].parse::<u64>().unwrap() {
                sub.recv(&mut buf, Some(Deadline::after(Duration::from_secs(30))))
                    .unwrap();
            }
            std::thread::sleep(Duration::from_secs(300));
        }
        "publish-n" => {
            // Publishes args[1] messages whose 8 bytes are their number, as fast as it can.
            let ch = shmlane::broadcast(name).open().unwrap();
            let mut p = ch.publisher().unwrap();
            let start = p.next_seq();
            for i in 0..args[1].parse::<u64>().unwrap() {
                p.send(&(start + i).to_le_bytes()).unwrap();
            }
            println!("OUT:published");
        }
        "typed-publish" => {
            // Publishes args[1] quotes through loans: even ones whole, odd ones field by field.
            let ch = shmlane::broadcast_of::<Quote>(name).open().unwrap();
            let mut p = ch.typed_publisher().unwrap();
            for i in 0..args[1].parse::<u64>().unwrap() {
                let q = quote(i);
                let mut loan = p.loan();
                assert_eq!(loan.seq(), i);
                if i % 2 == 0 {
                    loan.write(&q);
                } else {
                    use core::mem::offset_of;
                    loan.write_field(offset_of!(Quote, seq), &q.seq);
                    loan.write_field(offset_of!(Quote, bid), &q.bid);
                    loan.write_field(offset_of!(Quote, ask), &q.ask);
                    loan.write_field(offset_of!(Quote, bid_qty), &q.bid_qty);
                    loan.write_field(offset_of!(Quote, ask_qty), &q.ask_qty);
                    loan.write_field(offset_of!(Quote, instrument), &q.instrument);
                    loan.write_field(offset_of!(Quote, venue), &q.venue);
                }
                assert_eq!(loan.publish(), i);
            }
            println!("OUT:published");
        }
        "typed-loan-die" => {
            // Publishes args[1] quotes, then dies holding a loan of the next one, half
            // written (no destructor runs: the slot stays busy, the role claimed).
            let ch = shmlane::broadcast_of::<Quote>(name).open().unwrap();
            let mut p = ch.typed_publisher().unwrap();
            for i in 0..args[1].parse::<u64>().unwrap() {
                p.publish(&quote(i));
            }
            let mut loan = p.loan();
            loan.write_field(core::mem::offset_of!(Quote, bid), &-1.0f64);
            std::process::exit(0);
        }
        other => panic!("unknown role {other}"),
    }
}

/// A broadcast channel of `cap` slots removed at the end of the test.
fn channel(label: &str, cap: u64) -> (shmlane::Channel<u8>, Cleanup) {
    let name = unique(label);
    let c = Cleanup(name.clone());
    let ch = shmlane::broadcast(&name).capacity(cap).create().unwrap();
    (ch, c)
}

/// Waits (up to 20 s) until `cond` holds.
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn run_sub(name: &str, start: &str) -> Vec<String> {
    let (code, out) = finish(
        child("sub-from", &[name, start, "500"]).spawn().unwrap(),
        Duration::from_secs(30),
    );
    assert_eq!(code, 0, "subscriber from {start}");
    out
}

fn lines(from: u64, to: u64, label: &str) -> Vec<String> {
    (from..to).map(|i| format!("{i} {label}-{i}")).collect()
}

/// Issue 16: a late subscriber starting from "newest" (the default) sees no old message: 100
/// messages are published before it subscribes, 10 after (once the publisher counts it), and
/// it receives exactly those 10, numbered 100 on.
#[test]
fn a_late_subscriber_from_newest_sees_no_old_message() {
    let (ch, _c) = channel("md-newest", 1024);
    let mut p = ch.publisher().unwrap();
    for i in 0..100 {
        p.send(format!("old-{i}").as_bytes()).unwrap();
    }
    let sub = child("sub-from", &[ch.name(), "newest", "10000"])
        .spawn()
        .unwrap();
    wait_until("the subscriber", || p.subscribers() == 1);
    for i in 100..110 {
        p.send(format!("fresh-{i}").as_bytes()).unwrap();
    }
    p.send(b"end").unwrap();
    let (code, out) = finish(sub, Duration::from_secs(30));
    assert_eq!(code, 0);
    let mut want = lines(100, 110, "fresh");
    want.push("110 end".into());
    assert_eq!(out, want);
}

/// Issue 16: "oldest" starts at the oldest message the ring still holds (the last `capacity`
/// of 20, or all of them while fewer were sent); `Seq(n)` starts at n; an overwritten n starts
/// at the oldest with the gap reported as a lap; a future n waits for it.
#[test]
fn oldest_and_seq_start_where_asked() {
    let (ch, _c) = channel("md-oldest", 8);
    let name = ch.name().to_owned();
    let mut p = ch.publisher().unwrap();
    for i in 0..5 {
        p.send(format!("m-{i}").as_bytes()).unwrap();
    }
    assert_eq!(run_sub(&name, "oldest"), lines(0, 5, "m"));
    for i in 5..20 {
        p.send(format!("m-{i}").as_bytes()).unwrap();
    }
    assert_eq!(run_sub(&name, "newest"), Vec::<String>::new());
    assert_eq!(run_sub(&name, "oldest"), lines(12, 20, "m"));
    assert_eq!(run_sub(&name, "seq:15"), lines(15, 20, "m"));
    let mut want = vec!["lapped 10".to_owned()];
    want.extend(lines(12, 20, "m"));
    assert_eq!(run_sub(&name, "seq:2"), want);
    // The future: message 25 and on, nothing before it.
    let sub = child("sub-from", &[&name, "seq:25", "10000"])
        .spawn()
        .unwrap();
    wait_until("the subscriber", || p.subscribers() == 1);
    for i in 20..27 {
        p.send(format!("m-{i}").as_bytes()).unwrap();
    }
    p.send(b"end").unwrap();
    let (code, out) = finish(sub, Duration::from_secs(30));
    assert_eq!(code, 0);
    assert_eq!(out, ["25 m-25", "26 m-26", "27 end"]);
}

/// Issue 16: sequence numbers are each message's number, and under laps (a publisher process
/// sending 200,000 messages through 64 slots to a slow subscriber) every gap is exactly the
/// loss reported in between; deliveries plus losses are what was published.
#[test]
fn sequence_gaps_are_exactly_the_reported_losses() {
    let (ch, _c) = channel("md-seq", 64);
    let n = 200_000u64;
    let mut sub = ch.subscriber_from(Start::Seq(0)).unwrap();
    let publisher = child("publish-n", &[ch.name(), &n.to_string()])
        .spawn()
        .unwrap();
    let mut buf = [0u8; 240];
    let (mut next, mut got, mut lost) = (0u64, 0u64, 0u64);
    while next < n {
        match sub.recv_seq(&mut buf, Some(Deadline::after(Duration::from_secs(30)))) {
            Ok((len, seq)) => {
                assert_eq!(len, 8);
                assert_eq!(seq, next, "a gap without a reported loss");
                assert_eq!(u64::from_le_bytes(buf[..8].try_into().unwrap()), seq);
                assert_eq!(sub.last_seq(), Some(seq));
                next = seq + 1;
                got += 1;
                if got % 512 == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            Err(ByteRecvError::Lapped { lost: l }) => {
                lost += l;
                next += l;
            }
            Err(e) => panic!("{e} at {next}"),
        }
    }
    assert_eq!(finish(publisher, Duration::from_secs(60)).1, ["published"]);
    assert!(lost > 0, "the subscriber was never lapped");
    assert_eq!(got + lost, n);
    assert_eq!(sub.lost(), lost);
    assert_eq!(sub.next_seq(), n);
}

/// Issue 16: the publisher sees how many subscribers are attached and how far behind the
/// slowest is: two subscriber processes, one that stops reading after 10 messages; then that
/// one is killed (kill -9) and is no longer counted.
#[test]
fn the_publisher_sees_its_subscribers_and_the_slowest_lag() {
    let (ch, _c) = channel("md-lag", 1024);
    let mut p = ch.publisher().unwrap();
    assert_eq!((p.subscribers(), p.slowest_lag()), (0, None));
    let fast = child("sub-from", &[ch.name(), "newest", "10000"])
        .spawn()
        .unwrap();
    let mut slow = child("stall-after", &[ch.name(), "10"]).spawn().unwrap();
    wait_until("two subscribers", || p.subscribers() == 2);
    for i in 0..10 {
        p.send(format!("x-{i}").as_bytes()).unwrap();
    }
    wait_until("both to read 10", || p.slowest_lag() == Some(0));
    for i in 10..60 {
        p.send(format!("x-{i}").as_bytes()).unwrap();
    }
    // The fast one reads on; the slow one stays 50 behind.
    wait_until("a lag of 50", || p.slowest_lag() == Some(50));
    assert_eq!(p.subscribers(), 2);
    slow.kill().unwrap();
    slow.wait().unwrap();
    wait_until("the killed subscriber to go", || p.subscribers() == 1);
    // The fast one may still be catching up on the 50 (it was only known to be within 50 of
    // the head when the slow one reached 50): wait for it. Were the killed one still counted,
    // the lag would stay at 50 and this would time out.
    wait_until("the lag of the live one alone", || {
        p.slowest_lag() == Some(0)
    });
    p.send(b"end").unwrap();
    let (code, out) = finish(fast, Duration::from_secs(30));
    assert_eq!(code, 0);
    assert_eq!(out.len(), 61);
    wait_until("no subscriber", || p.subscribers() == 0);
    assert_eq!(p.slowest_lag(), None);
}

/// Issue 16: typed broadcast with in-place publishing between processes: a publisher process
/// writes 1,000 quotes into their slots through loans (whole values and field by field); a
/// subscriber started before it (at sequence 0) receives each, whole, with its number.
#[test]
fn typed_loans_round_trip_between_processes() {
    let name = unique("md-typed");
    let _c = Cleanup(name.clone());
    let ch = shmlane::broadcast_of::<Quote>(&name)
        .capacity(1024)
        .create()
        .unwrap();
    let mut sub = ch.typed_subscriber_from(Start::Seq(0)).unwrap();
    let n = 1000u64;
    let publisher = child("typed-publish", &[&name, &n.to_string()])
        .spawn()
        .unwrap();
    for i in 0..n {
        let (q, seq) = sub
            .recv_seq(Some(Deadline::after(Duration::from_secs(30))))
            .unwrap();
        assert_eq!((q, seq), (quote(i), i));
    }
    assert_eq!(finish(publisher, Duration::from_secs(30)).1, ["published"]);
    assert_eq!(sub.lost(), 0);
    // The byte form of another type's channel is refused (element size).
    assert!(shmlane::broadcast(&name).open().is_err());
}

/// Issue 16: the cursor table is memory every subscriber writes. A hostile process writing
/// random words over it (header and entries) while subscribers come, read and go and the
/// publisher asks for its statistics gives at worst wrong numbers: no panic, and every message
/// is still delivered.
#[test]
fn a_hostile_cursor_table_gives_wrong_numbers_at_worst() {
    let (ch, _c) = channel("md-hostile", 64);
    let path = format!("/dev/shm/{}", ch.name());
    let info = shmlane_segment::inspect(std::path::Path::new(&path))
        .unwrap()
        .unwrap();
    let region = info.regions.iter().find(|r| r.name == "cursors").unwrap();
    let (offset, size) = (region.offset, region.size);
    let mut p = ch.publisher().unwrap();
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
            let mut x = 0x9e37_79b9_7f4a_7c15u64;
            while !stop.load(Ordering::Relaxed) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let at = offset + (x % (size / 8)) * 8;
                file.write_all_at(&x.rotate_left(11).to_ne_bytes(), at)
                    .unwrap();
            }
        });
        let mut buf = [0u8; 240];
        for round in 0..200u64 {
            let mut subs: Vec<_> = (0..3).map(|_| ch.subscriber().unwrap()).collect();
            for i in 0..10u64 {
                p.send(&(round * 10 + i).to_le_bytes()).unwrap();
            }
            for sub in &mut subs {
                for i in 0..10u64 {
                    let (n, _) = sub.try_recv_seq(&mut buf).unwrap();
                    assert_eq!(buf[..n], (round * 10 + i).to_le_bytes());
                }
            }
            assert!(p.subscribers() <= 64);
            let _ = p.slowest_lag();
        }
        stop.store(true, Ordering::Relaxed);
    });
    // A publisher attached to the overwritten table counts what it can, without panicking.
    drop(p);
    let p = ch.publisher().unwrap();
    assert!(p.subscribers() <= 64);
}

/// Issue 16: a checksummed typed broadcast: the loan checksums the value as written in place and
/// the subscriber checks it; without room for the checksum the typed endpoints are refused
/// with a message that says what to create instead.
#[test]
fn typed_loans_on_a_checksummed_channel() {
    let name = unique("md-typed-crc");
    let _c = Cleanup(name.clone());
    let ch = shmlane::broadcast_of::<Quote>(&name)
        .capacity(64)
        .msg_size(size_of::<Quote>() as u64 + 4)
        .checksum(true)
        .create()
        .unwrap();
    let mut p = ch.typed_publisher().unwrap();
    let mut sub = ch.typed_subscriber().unwrap();
    for i in 0..100 {
        let mut loan = p.loan();
        loan.write(&quote(i));
        assert_eq!(loan.publish(), i);
        assert_eq!(sub.try_recv_seq().unwrap(), (quote(i), i));
    }
    let name2 = unique("md-typed-crc-small");
    let _c2 = Cleanup(name2.clone());
    let small = shmlane::broadcast_of::<Quote>(&name2)
        .checksum(true)
        .create()
        .unwrap();
    let e = small.typed_publisher().unwrap_err().to_string();
    assert!(e.contains("msg_size(44)"), "{e}");
    assert!(small.typed_subscriber().is_err());
}

/// Review revb: a publisher process killed while it held a loan leaves the slot of its next
/// message busy; that slot's older message (a ring back) is gone, the `capacity - 1` after it
/// are intact. A late subscriber from `Oldest` receives those 7 (it was reported lapped by the
/// whole ring, 8, and received nothing), and the next publisher takes over at the message the
/// dead one was writing.
#[test]
fn revb_oldest_after_a_publisher_killed_mid_loan() {
    let name = unique("md-loan-die");
    let _c = Cleanup(name.clone());
    let ch = shmlane::broadcast_of::<Quote>(&name)
        .capacity(8)
        .create()
        .unwrap();
    let (code, _) = finish(
        child("typed-loan-die", &[&name, "20"]).spawn().unwrap(),
        Duration::from_secs(30),
    );
    assert_eq!(code, 0);
    let mut sub = ch.typed_subscriber_from(Start::Oldest).unwrap();
    let mut got = Vec::new();
    let end = loop {
        match sub.try_recv_seq() {
            Ok((q, seq)) => got.push((q, seq)),
            Err(ByteRecvError::Lapped { lost }) => panic!("lapped {lost} after {got:?}"),
            Err(e) => break e,
        }
    };
    let want: Vec<_> = (13..20).map(|i| (quote(i), i)).collect();
    assert_eq!(got, want);
    assert!(
        matches!(end, ByteRecvError::Empty | ByteRecvError::Disconnected),
        "{end:?}"
    );
    assert_eq!(sub.lost(), 0);
    // The next publisher writes message 20 again, whole.
    let mut p = ch.typed_publisher().unwrap();
    assert_eq!(p.next_seq(), 20);
    assert_eq!(p.publish(&quote(20)), 20);
    assert_eq!(sub.try_recv_seq(), Ok((quote(20), 20)));
}

/// Review revb (a guard: held on the code as reviewed): `write_field` at the edges of the
/// value (the last bytes, a zero-sized field at the end, the whole value as one field) writes
/// exactly there; a field reaching past the value (by one byte, or at an offset near
/// `usize::MAX`) panics before writing anything, and the loan given up by the unwinding leaves
/// the position to the next loan, whose message every subscriber gets whole.
#[test]
fn revb_write_field_at_the_edges() {
    use core::mem::offset_of;
    let name = unique("md-edges");
    let _c = Cleanup(name.clone());
    let ch = shmlane::broadcast_of::<Quote>(&name)
        .capacity(8)
        .create()
        .unwrap();
    let mut p = ch.typed_publisher().unwrap();
    let mut sub = ch.typed_subscriber().unwrap();
    let size = size_of::<Quote>();
    let q = quote(7);
    let mut loan = p.loan();
    loan.write(&quote(1));
    loan.write_field(0, &q);
    loan.write_field(size - 4, &q.venue);
    loan.write_field(size, &());
    loan.write_field(size - 8, &[q.instrument, q.venue]);
    assert_eq!(loan.publish(), 0);
    assert_eq!(sub.try_recv_seq(), Ok((q, 0)));
    for (offset, what) in [
        (size - 3, "one byte past"),
        (usize::MAX - 1, "near usize::MAX"),
    ] {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut loan = p.loan();
            loan.write_field(offset_of!(Quote, bid), &-1.0f64);
            loan.write_field(offset, &0u32);
            loan.publish()
        }));
        assert!(r.is_err(), "{what}: no panic");
        assert_eq!(sub.try_recv(), Err(ByteRecvError::Empty), "{what}");
    }
    assert_eq!(p.next_seq(), 1);
    assert_eq!(p.publish(&quote(8)), 1);
    assert_eq!(sub.try_recv_seq(), Ok((quote(8), 1)));
}

/// Review revb: a typed subscriber given a message of another size than its type (here a
/// `Channel<u8>`'s one-byte typed subscriber and the byte publisher's 5-byte message; on a
/// typed channel, a forged length) reported `Corrupt` but left the message in place (the ring
/// consumes nothing on `BufferTooSmall`): every later call, blocking or not, returned the same
/// `Corrupt` at once, for ever. The message is consumed (dropped as corrupt, counted in the
/// sequence numbers) and the subscriber reads on, as on a checksummed channel.
#[test]
fn revb_a_typed_subscriber_reads_on_past_a_message_of_another_size() {
    let (ch, _c) = channel("md-typed-size", 8);
    let mut p = ch.publisher().unwrap();
    let mut sub = ch.typed_subscriber().unwrap();
    p.send(b"hello").unwrap();
    p.send(b"x").unwrap();
    p.send(b"long one").unwrap();
    p.send(b"y").unwrap();
    assert!(matches!(sub.try_recv(), Err(ByteRecvError::Corrupt(_))));
    assert_eq!(sub.try_recv_seq(), Ok((b'x', 1)));
    let wait = Some(Deadline::after(Duration::from_secs(5)));
    assert!(matches!(sub.recv(wait), Err(ByteRecvError::Corrupt(_))));
    assert_eq!(sub.recv_seq(wait), Ok((b'y', 3)));
    assert_eq!(sub.try_recv(), Err(ByteRecvError::Empty));
}

/// Review revb (a guard: held on the code as reviewed): subscribers of one process share its
/// owner tag, from one channel handle or two; each holds an entry of its own and lets go of
/// its own only. A full table counts 64 and refuses the 65th, which is then not counted even
/// when an entry frees up; the entries freed are claimed again.
#[test]
fn revb_subscribers_of_one_process_count_and_let_go_of_their_own() {
    let (ch, _c) = channel("md-one-proc", 64);
    let other = shmlane::broadcast(ch.name()).open().unwrap();
    let mut p = ch.publisher().unwrap();
    let mut a = ch.subscriber().unwrap();
    let b = ch.subscriber().unwrap();
    let c = other.subscriber().unwrap();
    assert!(a.is_counted() && b.is_counted() && c.is_counted());
    assert_eq!((p.subscribers(), p.slowest_lag()), (3, Some(0)));
    for i in 0..5u8 {
        p.send(&[i]).unwrap();
    }
    let mut buf = [0u8; 8];
    for _ in 0..5 {
        a.try_recv(&mut buf).unwrap();
    }
    assert_eq!(p.slowest_lag(), Some(5));
    drop(b);
    assert_eq!((p.subscribers(), p.slowest_lag()), (2, Some(5)));
    drop(c);
    assert_eq!((p.subscribers(), p.slowest_lag()), (1, Some(0)));
    let mut many: Vec<_> = (0..64).map(|_| ch.subscriber().unwrap()).collect();
    assert_eq!(many.iter().filter(|s| s.is_counted()).count(), 63);
    assert!(!many.last().unwrap().is_counted());
    assert_eq!(p.subscribers(), 64);
    many.truncate(10);
    assert_eq!(p.subscribers(), 11);
    let again = other.subscriber().unwrap();
    assert!(again.is_counted());
    assert_eq!(p.subscribers(), 12);
    drop((a, many, again));
    assert_eq!((p.subscribers(), p.slowest_lag()), (0, None));
}

/// Review revb: the same on a checksummed channel, where the subscriber consumes a message
/// before it finds it too long for the value: the message of another size is `Corrupt`, once
/// (not skipped silently, nor taken for the next one).
#[test]
fn revb_a_typed_subscriber_on_a_checksummed_channel_reports_another_size_once() {
    let name = unique("md-typed-size-crc");
    let _c = Cleanup(name.clone());
    let ch = shmlane::broadcast(&name)
        .capacity(8)
        .checksum(true)
        .create()
        .unwrap();
    let mut p = ch.publisher().unwrap();
    let mut sub = ch.typed_subscriber().unwrap();
    p.send(b"hello").unwrap();
    assert!(matches!(sub.try_recv(), Err(ByteRecvError::Corrupt(_))));
    assert_eq!(sub.try_recv(), Err(ByteRecvError::Empty));
    p.send(b"long one").unwrap();
    p.send(b"x").unwrap();
    assert!(matches!(sub.try_recv(), Err(ByteRecvError::Corrupt(_))));
    assert_eq!(sub.try_recv_seq(), Ok((b'x', 2)));
}

/// Endpoints outlive the `Channel` they came from: the last one dropped unmaps the segment.
/// A subscriber freed its cursor-table entry after its `Local` (the last reference to the
/// segment) was dropped, writing into an unmapped segment: the torture run in CI died with
/// SIGSEGV in `CursorEntry::drop` (flips scenario). Run here in a child process, so a crash
/// is this test's failure, not the harness's.
#[test]
fn endpoints_outliving_their_channel_drop_cleanly() {
    if std::env::var_os("BCAST_OUTLIVE_CHILD").is_some() {
        let (ch, _c) = channel("outlive", 64);
        let mut publisher = ch.publisher().unwrap();
        let sub = ch.subscriber().unwrap();
        let typed_name = unique("outlive-typed");
        let _ct = Cleanup(typed_name.clone());
        let typed = shmlane::broadcast_of::<Quote>(&typed_name)
            .capacity(64)
            .create()
            .unwrap();
        let typed_subscriber = typed.typed_subscriber().unwrap();
        let typed_publisher = typed.typed_publisher().unwrap();
        drop((ch, typed));
        publisher.send(b"x").unwrap();
        // The subscribers hold the last references: their drops unmap the segments.
        drop(sub);
        drop(publisher);
        drop(typed_publisher);
        drop(typed_subscriber);
        println!("dropped");
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "endpoints_outliving_their_channel_drop_cleanly",
            "--nocapture",
        ])
        .env("BCAST_OUTLIVE_CHILD", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("dropped"),
        "{:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}
