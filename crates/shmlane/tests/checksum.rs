//! Optional per-message checksums (CRC32C) on byte and broadcast channels: off by default,
//! stored in the channel header so both sides agree; a payload bit flipped in the ring is
//! reported as `Corrupt` (counted as lost), and the messages after it still arrive.

use std::os::unix::fs::FileExt;

use shmlane::{ByteRecvError, ByteSendError, ConfigError, OpenError};
use shmlane_testkit::{Cleanup, unique};

fn region(name: &str, which: &str) -> (u64, u64) {
    let info = shmlane_segment::inspect(std::path::Path::new(&format!("/dev/shm/{name}")))
        .unwrap()
        .unwrap();
    let r = info.regions.iter().find(|r| r.name == which).unwrap();
    (r.offset, r.size)
}

/// Flips bit `bit` of the byte at `at` in the segment file.
fn flip(name: &str, at: u64, bit: u8) {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(format!("/dev/shm/{name}"))
        .unwrap();
    let mut b = [0u8];
    f.read_exact_at(&mut b, at).unwrap();
    b[0] ^= 1 << bit;
    f.write_all_at(&b, at).unwrap();
}

#[test]
fn a_flipped_payload_bit_in_a_byte_channel_is_corrupt() {
    for bit in [0u8, 7] {
        for byte in [0u64, 5, 9] {
            let name = unique("cksum-bytes");
            let _c = Cleanup(name.clone());
            let ch = shmlane::bytes(&name)
                .when_peers_leave(shmlane::PeersLeave::Disconnect)
                .capacity(4096)
                .checksum(true)
                .create()
                .unwrap();
            let mut tx = ch.byte_sender().unwrap();
            let mut rx = ch.byte_receiver().unwrap();
            assert_eq!(tx.max_message(), 4096 / 8 - 8 - 4);
            tx.try_send(b"0123456789").unwrap();
            tx.try_send(b"next").unwrap();
            // The first record: its 8-byte header at the start of the data area (the ring's
            // last `capacity` bytes), then the payload. `byte` 9 is the last payload byte.
            let (ring, size) = region(&name, "ring");
            flip(&name, ring + size - 4096 + 8 + byte, bit);
            let mut buf = [0u8; 64];
            let r = rx.try_recv(&mut buf);
            assert!(
                matches!(r, Err(ByteRecvError::Corrupt(why)) if why.contains("checksum")),
                "bit {bit} of byte {byte}: {r:?}"
            );
            assert_eq!(rx.try_recv(&mut buf), Ok(4));
            assert_eq!(&buf[..4], b"next");
            assert_eq!(rx.stats().lost, 1);
            // A buffer of the message's size exactly (the checksum does not fit behind it).
            tx.try_send(b"abcdefghij").unwrap();
            let mut exact = [0u8; 10];
            assert_eq!(rx.try_recv(&mut exact), Ok(10));
            assert_eq!(&exact, b"abcdefghij");
            assert_eq!(
                rx.try_recv(&mut exact[..3]),
                Err(ByteRecvError::Empty),
                "nothing more"
            );
        }
    }
}

#[test]
fn a_flipped_payload_bit_in_a_broadcast_channel_is_corrupt() {
    let name = unique("cksum-bcast");
    let _c = Cleanup(name.clone());
    let ch = shmlane::broadcast(&name)
        .when_peers_leave(shmlane::PeersLeave::Disconnect)
        .capacity(8)
        .msg_size(60)
        .checksum(true)
        .create()
        .unwrap();
    let mut tx = ch.publisher().unwrap();
    let mut rx = ch.subscriber().unwrap();
    // Slots of 80 bytes (16 + 60 + 4 rounded up to 8) at the end of the ring region.
    assert_eq!(tx.max_message(), 60);
    tx.send(b"hello broadcast").unwrap();
    tx.send(b"after").unwrap();
    let (ring, size) = region(&name, "ring");
    flip(&name, ring + size - 8 * 80 + 16 + 3, 2);
    let mut buf = [0u8; 60];
    let r = rx.try_recv(&mut buf);
    assert!(
        matches!(r, Err(ByteRecvError::Corrupt(why)) if why.contains("checksum")),
        "{r:?}"
    );
    assert_eq!(rx.try_recv(&mut buf), Ok(5));
    assert_eq!(&buf[..5], b"after");
    assert_eq!(rx.stats().lost, 1);
    // The largest message goes through a buffer of exactly max_message bytes.
    tx.send(&[7; 60]).unwrap();
    assert_eq!(rx.try_recv(&mut buf), Ok(60));
    assert_eq!(buf, [7; 60]);
    assert!(matches!(
        tx.send(&[7; 61]),
        Err(ByteSendError::TooLong { len: 61, max: 60 })
    ));
}

#[test]
fn both_sides_agree_through_the_header() {
    let name = unique("cksum-agree");
    let _c = Cleanup(name.clone());
    let ch = shmlane::bytes(&name)
        .when_peers_leave(shmlane::PeersLeave::Disconnect)
        .capacity(4096)
        .checksum(true)
        .create()
        .unwrap();
    // Unset: takes the channel's setting; set the other way: a mismatch.
    let other = shmlane::bytes(&name)
        .when_peers_leave(shmlane::PeersLeave::Disconnect)
        .open()
        .unwrap();
    let mut tx = other.byte_sender().unwrap();
    let mut rx = ch.byte_receiver().unwrap();
    tx.try_send(b"agreed").unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(rx.try_recv(&mut buf), Ok(6));
    let e = shmlane::bytes(&name)
        .when_peers_leave(shmlane::PeersLeave::Disconnect)
        .checksum(false)
        .open()
        .unwrap_err();
    assert!(e.to_string().contains("checksums on"), "{e}");
    // Zero-copy claims need the bytes: refused, with what to do.
    let e = tx.claim(4).unwrap_err();
    assert_eq!(e, ByteSendError::ChecksumClaim);
    assert!(e.to_string().contains("use send"), "{e}");
    // Off by default, and not for typed channels.
    let plain = unique("cksum-plain");
    let _p = Cleanup(plain.clone());
    let ch = shmlane::bytes(&plain)
        .when_peers_leave(shmlane::PeersLeave::Disconnect)
        .capacity(4096)
        .create()
        .unwrap();
    assert_eq!(ch.byte_sender().unwrap().max_message(), 4096 / 8 - 8);
    assert!(matches!(
        shmlane::spsc::<u64>(&plain)
            .when_peers_leave(shmlane::PeersLeave::Disconnect)
            .checksum(true)
            .create(),
        Err(OpenError::Config {
            error: ConfigError::Unsupported { .. },
            ..
        })
    ));
    let info = shmlane_segment::inspect(std::path::Path::new(&format!("/dev/shm/{name}")))
        .unwrap()
        .unwrap();
    assert!(shmlane::inspect(&info).unwrap().checksum);
}

/// Without checksums the same flip goes unnoticed: the reason for the option.
#[test]
fn without_checksums_a_flipped_bit_is_delivered() {
    let name = unique("cksum-off");
    let _c = Cleanup(name.clone());
    let ch = shmlane::bytes(&name)
        .when_peers_leave(shmlane::PeersLeave::Disconnect)
        .capacity(4096)
        .create()
        .unwrap();
    let mut tx = ch.byte_sender().unwrap();
    let mut rx = ch.byte_receiver().unwrap();
    tx.try_send(b"0123456789").unwrap();
    let (ring, size) = region(&name, "ring");
    flip(&name, ring + size - 4096 + 8, 0);
    let mut buf = [0u8; 64];
    assert_eq!(rx.try_recv(&mut buf), Ok(10));
    assert_eq!(&buf[..10], b"1123456789");
}
