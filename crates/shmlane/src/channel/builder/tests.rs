//! The builder's checks at the edges of every setting.

use super::checks::{MAX_RING_BYTES, broadcast_slot};
use super::*;
use crate::channel::checksum;

const EDGES: [u64; 14] = [
    0,
    1,
    2,
    3,
    255,
    256,
    1 << 20,
    (1 << 40) - 1,
    1 << 40,
    (1 << 40) + 1,
    1 << 41,
    1 << 63,
    u64::MAX - 1,
    u64::MAX,
];

fn capacity_err(r: Result<Geometry, OpenError>) -> (u64, u64, u64) {
    match r {
        Err(OpenError::Config {
            error: ConfigError::Capacity {
                capacity, min, max, ..
            },
            ..
        }) => (capacity, min, max),
        other => panic!("expected a capacity error, got {other:?}"),
    }
}

/// Every kind, every edge capacity and message size: a geometry or a typed error, never
/// an overflow panic (debug) or a wrapped size (release).
#[test]
fn edge_settings_give_a_geometry_or_a_typed_error() {
    fn check<T: Pod + Send>(b: impl Fn() -> Builder<T>) {
        for cap in EDGES {
            for msg in EDGES.into_iter().map(Some).chain([None]) {
                let mut bld = b().capacity(cap);
                bld.msg_size = msg;
                match bld.geometry() {
                    Ok(g) => {
                        assert_eq!(g.cap, cap);
                        assert!(g.ring <= MAX_RING_BYTES && g.ring >= cap.min(MAX_RING_BYTES));
                        assert!(g.segment > g.ring && g.segment % 4096 == 0);
                    }
                    Err(OpenError::Config { .. }) => {}
                    Err(e) => panic!("capacity {cap}, msg {msg:?}: {e}"),
                }
            }
        }
    }
    check(|| spsc::<u64>("t"));
    check(|| spsc::<[u8; 3]>("t"));
    check(|| spsc::<[u64; 1 << 17]>("t"));
    check(|| spsc::<[u8; 1 << 32]>("t"));
    check(|| spsc::<[u8; (1 << 32) + 8]>("t"));
    check(|| mpmc::<u64>("t"));
    check(|| mpmc::<[u8; 1 << 20]>("t"));
    check(|| bytes("t"));
    check(|| broadcast("t"));
}

#[test]
fn capacity_u64_max_is_a_capacity_error_for_every_kind() {
    let max = shmlane_ring::MAX_CAPACITY;
    assert_eq!(
        capacity_err(spsc::<u64>("t").capacity(u64::MAX).geometry()),
        (u64::MAX, 1, max)
    );
    assert_eq!(
        capacity_err(mpmc::<u64>("t").capacity(u64::MAX).geometry()),
        (u64::MAX, 2, max)
    );
    assert_eq!(
        capacity_err(bytes("t").capacity(u64::MAX).geometry()),
        (u64::MAX, 256, max)
    );
    assert_eq!(
        capacity_err(broadcast("t").capacity(u64::MAX).geometry()),
        (u64::MAX, 2, max)
    );
    // Below the kind's minimum or not a power of two.
    assert_eq!(capacity_err(mpmc::<u64>("t").capacity(1).geometry()).0, 1);
    assert_eq!(capacity_err(bytes("t").capacity(8).geometry()).0, 8);
    assert_eq!(capacity_err(spsc::<u64>("t").capacity(0).geometry()).0, 0);
    assert_eq!(capacity_err(spsc::<u64>("t").capacity(3).geometry()).0, 3);
    assert_eq!(
        capacity_err(spsc::<u64>("t").capacity(1 << 41).geometry()).0,
        1 << 41
    );
    let e = spsc::<u64>("t").capacity(u64::MAX).geometry().unwrap_err();
    assert!(
        e.to_string()
            .contains("use a power of two from 1 to 1099511627776"),
        "{e}"
    );
}

#[test]
fn message_sizes_past_the_kind_limit_are_msg_size_errors() {
    let slot_max = shmlane_ring::broadcast::MAX_SLOT_BYTES as u64 - 16;
    for (b, max) in [
        (broadcast("t").msg_size(u64::MAX), slot_max),
        (broadcast("t").msg_size(slot_max + 1), slot_max),
        (bytes("t").capacity(256).msg_size(25), 24),
    ] {
        match b.geometry() {
            Err(OpenError::Config {
                error: ConfigError::MsgSize { max: m, .. },
                ..
            }) => assert_eq!(m, max),
            other => panic!("{other:?}"),
        }
    }
    // Typed channels: the element decides; anything else is refused (issue 16).
    for m in [0, 7, 9, u64::MAX] {
        match spsc::<u64>("t").msg_size(m).geometry() {
            Err(OpenError::Config {
                error: ConfigError::FixedMsgSize { elem: 8, .. },
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(spsc::<u64>("t").msg_size(8).geometry().unwrap().msg, 8);
    // At the limits: accepted.
    let g = broadcast("t").msg_size(slot_max).geometry().unwrap();
    assert_eq!(g.slot, shmlane_ring::broadcast::MAX_SLOT_BYTES);
    assert_eq!(
        bytes("t")
            .capacity(256)
            .msg_size(24)
            .geometry()
            .unwrap()
            .msg,
        24
    );
    assert_eq!(broadcast("t").msg_size(0).geometry().unwrap().slot, 24);
}

#[test]
fn rings_past_the_size_limit_are_too_large_errors() {
    // 2^40 slots of 1 MiB: 2^60 bytes.
    match broadcast("t")
        .capacity(1 << 40)
        .msg_size(slot_max())
        .geometry()
    {
        Err(OpenError::Config {
            error: ConfigError::TooLarge { capacity, slot, .. },
            ..
        }) => assert_eq!((capacity, slot), (1 << 40, 1 << 20)),
        other => panic!("{other:?}"),
    }
    // 2^40 slots of 4 GiB: 2^72 bytes, past u64 (the product is checked).
    assert!(matches!(
        spsc::<[u8; 1 << 32]>("t").capacity(1 << 40).geometry(),
        Err(OpenError::Config {
            error: ConfigError::TooLarge { .. },
            ..
        })
    ));
    assert!(matches!(
        spsc::<[u8; (1 << 32) + 8]>("t").capacity(1).geometry(),
        Err(OpenError::Config {
            error: ConfigError::TooLarge { .. },
            ..
        })
    ));
    assert!(matches!(
        mpmc::<[u8; 1 << 20]>("t").capacity(1 << 30).geometry(),
        Err(OpenError::Config {
            error: ConfigError::TooLarge { .. },
            ..
        })
    ));
    // Just at the limit: 2^40 slots of 64 bytes is 2^46 bytes plus the header: too large;
    // 2^39 of them fits, and the sizes are exact.
    assert!(spsc::<[u64; 8]>("t").capacity(1 << 40).geometry().is_err());
    let g = spsc::<[u64; 8]>("t").capacity(1 << 39).geometry().unwrap();
    assert_eq!(g.ring, SpscRing::<[u64; 8]>::required_size(1 << 39) as u64);
    let g = bytes("t").capacity(1 << 40).geometry().unwrap();
    assert_eq!(g.ring, RecordRing::required_size(1 << 40) as u64);
    let g = broadcast("t").capacity(1 << 20).geometry().unwrap();
    assert_eq!(
        g.ring,
        BroadcastRing::required_size(1 << 20, broadcast_slot(BROADCAST_MSG)) as u64
    );
}

/// The checksum's wire format: CRC32C (Castagnoli: 0xE3069283 for "123456789") of the
/// message's length as a little-endian u32, then its bytes, stored little-endian.
#[test]
fn the_checksum_is_crc32c_of_the_length_and_the_bytes() {
    assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
    assert_eq!(
        checksum(b"123456789"),
        crc32c::crc32c(b"\x09\x00\x00\x00123456789").to_le_bytes()
    );
    assert_eq!(checksum(b""), crc32c::crc32c(&[0; 4]).to_le_bytes());
    assert_ne!(checksum(b"ab"), checksum(b"ab\0"));
}

fn slot_max() -> u64 {
    shmlane_ring::broadcast::MAX_SLOT_BYTES as u64 - 16
}
