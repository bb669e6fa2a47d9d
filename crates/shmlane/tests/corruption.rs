//! A segment overwritten while endpoints wait on it: every kind reports `Corrupt` from its
//! blocking call (the periodic peer checks re-validate the segment, channel and ring
//! headers) instead of waiting on garbage until the deadline; a broadcast subscriber's loss
//! count stays bounded by what the publisher can have sent.

use std::{
    os::unix::fs::FileExt,
    time::{Duration, Instant},
};

use shmlane::{ByteRecvError, ByteSendError, Deadline, RecvError, SendError};
use shmlane_testkit::{Cleanup, unique};

/// Where to write garbage.
#[derive(Clone, Copy, Debug)]
enum Spot {
    /// The segment header's magic.
    SegmentMagic,
    /// A word of the channel header (0 magic, 1 kind, 2 element, 3 capacity, 4 msg_size).
    Chan(u64),
    /// A word of the ring header (0 magic, 1 kind, 2 element, 3 capacity).
    Ring(u64),
    /// Every byte of the segment's data area (headers, rings, events).
    Everything,
}

fn region(name: &str, which: &str) -> (u64, u64) {
    let info = shmlane_segment::inspect(std::path::Path::new(&format!("/dev/shm/{name}")))
        .unwrap()
        .unwrap();
    let r = info.regions.iter().find(|r| r.name == which).unwrap();
    (r.offset, r.size)
}

fn overwrite(name: &str, spot: Spot) {
    let (at, bytes) = match spot {
        Spot::SegmentMagic => (0, 8u64),
        Spot::Chan(w) => (region(name, "chan").0 + 8 * w, 8),
        Spot::Ring(w) => (region(name, "ring").0 + 8 * w, 8),
        Spot::Everything => {
            let (chan, _) = region(name, "chan");
            let len = std::fs::metadata(format!("/dev/shm/{name}")).unwrap().len();
            (chan, len - chan)
        }
    };
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/dev/shm/{name}"))
        .unwrap();
    f.write_all_at(&vec![0x5a; bytes as usize], at).unwrap();
}

/// Runs `blocked` (a blocking call with a 20 s deadline) on a thread, overwrites `spot` after
/// 100 ms, and checks that the call returned `Corrupt` well before its deadline.
fn corrupt_while_blocked<R: Send + core::fmt::Debug>(
    name: &str,
    spot: Spot,
    blocked: impl FnOnce(Option<Deadline>) -> R + Send,
    is_corrupt: impl Fn(&R) -> bool,
) {
    std::thread::scope(|s| {
        let t0 = Instant::now();
        let h = s.spawn(move || blocked(Some(Deadline::after(Duration::from_secs(20)))));
        std::thread::sleep(Duration::from_millis(100));
        overwrite(name, spot);
        let r = h.join().unwrap();
        let took = t0.elapsed();
        assert!(is_corrupt(&r), "{spot:?}: {r:?} after {took:?}");
        assert!(took < Duration::from_secs(5), "{spot:?}: took {took:?}");
    });
}

#[test]
fn spsc_recv_and_send_report_an_overwritten_header() {
    for spot in [
        Spot::SegmentMagic,
        Spot::Chan(0),
        Spot::Chan(3),
        Spot::Ring(0),
        Spot::Ring(3),
        Spot::Everything,
    ] {
        let name = unique("corrupt-spsc-recv");
        let _c = Cleanup(name.clone());
        let ch = shmlane::spsc::<u64>(&name)
            .when_peers_leave(shmlane::PeersLeave::Disconnect)
            .capacity(4)
            .create()
            .unwrap();
        let _tx = ch.producer().unwrap();
        let mut rx = ch.consumer().unwrap();
        corrupt_while_blocked(
            &name,
            spot,
            |d| rx.recv(d),
            |r| *r == Err(RecvError::Corrupt),
        );
    }
    for spot in [Spot::Chan(2), Spot::Ring(2), Spot::Everything] {
        let name = unique("corrupt-spsc-send");
        let _c = Cleanup(name.clone());
        let ch = shmlane::spsc::<u64>(&name)
            .when_peers_leave(shmlane::PeersLeave::Disconnect)
            .capacity(2)
            .create()
            .unwrap();
        let mut tx = ch.producer().unwrap();
        let _rx = ch.consumer().unwrap();
        tx.try_send(1).unwrap();
        tx.try_send(2).unwrap();
        corrupt_while_blocked(
            &name,
            spot,
            |d| tx.send(3, d),
            |r| matches!(r, Err(SendError::Corrupt(3))),
        );
    }
}

#[test]
fn mpmc_recv_reports_an_overwritten_header() {
    for spot in [Spot::Chan(1), Spot::Ring(1), Spot::Everything] {
        let name = unique("corrupt-mpmc");
        let _c = Cleanup(name.clone());
        let ch = shmlane::mpmc::<u64>(&name)
            .when_peers_leave(shmlane::PeersLeave::Disconnect)
            .capacity(8)
            .create()
            .unwrap();
        let _tx = ch.sender().unwrap();
        let mut rx = ch.receiver().unwrap();
        corrupt_while_blocked(
            &name,
            spot,
            |d| rx.recv(d),
            |r| *r == Err(RecvError::Corrupt),
        );
    }
}

#[test]
fn byte_and_broadcast_receivers_report_an_overwritten_header() {
    for spot in [Spot::SegmentMagic, Spot::Chan(4), Spot::Ring(3)] {
        let name = unique("corrupt-bytes");
        let _c = Cleanup(name.clone());
        let ch = shmlane::bytes(&name)
            .when_peers_leave(shmlane::PeersLeave::Disconnect)
            .capacity(4096)
            .create()
            .unwrap();
        let _tx = ch.byte_sender().unwrap();
        let mut rx = ch.byte_receiver().unwrap();
        let mut buf = [0u8; 512];
        corrupt_while_blocked(
            &name,
            spot,
            |d| rx.recv(&mut buf, d),
            |r| matches!(r, Err(ByteRecvError::Corrupt(_))),
        );
    }
    // A byte sender waiting for room.
    let name = unique("corrupt-bytes-send");
    let _c = Cleanup(name.clone());
    let ch = shmlane::bytes(&name)
        .when_peers_leave(shmlane::PeersLeave::Disconnect)
        .capacity(256)
        .create()
        .unwrap();
    let mut tx = ch.byte_sender().unwrap();
    let _rx = ch.byte_receiver().unwrap();
    while tx.try_send(&[1; 24]).is_ok() {}
    corrupt_while_blocked(
        &name,
        Spot::Chan(0),
        |d| tx.send(&[2; 24], d),
        |r| *r == Err(ByteSendError::Corrupt),
    );
    for spot in [Spot::Chan(0), Spot::Ring(0), Spot::Ring(2)] {
        let name = unique("corrupt-bcast");
        let _c = Cleanup(name.clone());
        let ch = shmlane::broadcast(&name)
            .when_peers_leave(shmlane::PeersLeave::Disconnect)
            .capacity(8)
            .create()
            .unwrap();
        let _tx = ch.publisher().unwrap();
        let mut rx = ch.subscriber().unwrap();
        let mut buf = [0u8; 256];
        corrupt_while_blocked(
            &name,
            spot,
            |d| rx.recv(&mut buf, d),
            |r| matches!(r, Err(ByteRecvError::Corrupt(_))),
        );
    }
}

/// The stamp word of broadcast slot `index` (default 240-byte messages: 256-byte slots, the
/// slots at the end of the ring region).
fn write_stamp(name: &str, cap: u64, index: u64, stamp: u64) {
    let (ring, size) = region(name, "ring");
    let slots = ring + size - cap * 256;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/dev/shm/{name}"))
        .unwrap();
    f.write_all_at(&stamp.to_ne_bytes(), slots + index * 256)
        .unwrap();
}

/// A slot's stamp overwritten with a position 2^62 ahead: before issue 15 the ring reported a
/// lap of about 4.6e18 messages; now the ring itself refuses it (no lap can put that stamp
/// there), and the subscriber reports `Corrupt` (for good), counts nothing.
#[test]
fn a_broadcast_lap_beyond_what_was_sent_is_corrupt_not_a_loss() {
    let name = unique("corrupt-bcast-lap");
    let _c = Cleanup(name.clone());
    let ch = shmlane::broadcast(&name)
        .when_peers_leave(shmlane::PeersLeave::Disconnect)
        .capacity(8)
        .create()
        .unwrap();
    let mut tx = ch.publisher().unwrap();
    let mut rx = ch.subscriber().unwrap();
    let mut buf = [0u8; 256];
    for i in 0..3u8 {
        tx.send(&[i; 10]).unwrap();
        assert_eq!(rx.try_recv(&mut buf), Ok(10));
    }
    // Slot 3, position 3 + 2^62 - 10 (not busy): "ahead" of the cursor by less than half.
    write_stamp(&name, 8, 3, (3 + (1u64 << 62) - 10) << 1);
    let r = rx.try_recv(&mut buf);
    assert!(matches!(r, Err(ByteRecvError::Corrupt(_))), "{r:?}");
    assert_eq!(rx.lost(), 0);
    assert_eq!(rx.stats().lost, 0, "an implausible loss was counted");
    // It stays corrupt, even once the publisher writes the slot again.
    tx.send(&[9; 10]).unwrap();
    assert!(matches!(
        rx.try_recv(&mut buf),
        Err(ByteRecvError::Corrupt(_))
    ));
    assert!(matches!(
        rx.recv(&mut buf, Some(Deadline::after(Duration::from_millis(50)))),
        Err(ByteRecvError::Corrupt(_))
    ));
}

/// A real lap is still reported exactly: delivered + lost = sent.
#[test]
fn a_real_broadcast_lap_is_reported_exactly() {
    let name = unique("corrupt-bcast-reallap");
    let _c = Cleanup(name.clone());
    let ch = shmlane::broadcast(&name)
        .when_peers_leave(shmlane::PeersLeave::Disconnect)
        .capacity(8)
        .create()
        .unwrap();
    let mut tx = ch.publisher().unwrap();
    let mut rx = ch.subscriber().unwrap();
    let mut buf = [0u8; 256];
    for i in 0..1000u64 {
        tx.send(&i.to_le_bytes()).unwrap();
    }
    let (mut got, mut lost) = (0u64, 0u64);
    loop {
        match rx.try_recv(&mut buf) {
            Ok(_) => got += 1,
            Err(ByteRecvError::Lapped { lost: l }) => lost += l,
            Err(ByteRecvError::Empty) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(got + lost, 1000);
    assert!(lost > 0 && lost < 1000);
    assert_eq!(rx.lost(), lost);
    assert_eq!(rx.stats().lost, lost);
}
