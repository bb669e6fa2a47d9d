//! Review of issue 16's type and kind checks (reviewer "revt"): a forged or damaged type record,
//! long type names told apart in the error, the broadcast `msg_size` applied to the publisher,
//! and a type record rewritten while processes open the channel.

use std::{
    os::unix::fs::FileExt,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use shmlane::{ByteSendError, OpenError};
use shmlane_testkit::{Cleanup, unique};

/// Where the `type` region of channel `name` lives in its file.
fn type_offset(name: &str) -> u64 {
    let info = shmlane_segment::inspect(std::path::Path::new(&format!("/dev/shm/{name}")))
        .unwrap()
        .unwrap();
    info.regions
        .iter()
        .find(|r| r.name == "type")
        .unwrap()
        .offset
}

/// Damages a copy of a sound type record.
type Damage<'a> = &'a dyn Fn(&mut Vec<u8>);

fn writer(name: &str) -> std::fs::File {
    std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/dev/shm/{name}"))
        .unwrap()
}

/// Two generic types whose names differ only past the stored 112 bytes (long module paths are
/// common in generic types): the error must show a difference, not the same text twice.
#[test]
fn long_type_names_differing_past_the_prefix_are_told_apart_in_the_error() {
    let name = unique("revt-long");
    let _c = Cleanup(name.clone());
    let stem = "org_example::marketdata::feeds::normalised::".repeat(3);
    assert!(stem.len() > shmlane::TYPE_NAME_STORED);
    let (a, b) = (format!("{stem}Tick<u64>"), format!("{stem}Tick<i64>"));
    let _ch = shmlane::spsc::<u64>(&name)
        .type_name(&a)
        .capacity(64)
        .create()
        .unwrap();
    match shmlane::spsc::<u64>(&name).type_name(&b).open() {
        Err(e @ OpenError::WrongType { .. }) => {
            let text = e.to_string();
            let OpenError::WrongType { found, wanted, .. } = e else {
                unreachable!()
            };
            assert_ne!(found, wanted, "the error shows the same type twice: {text}");
            assert!(found.contains(&format!("{} bytes", a.len())), "{found}");
            assert!(
                found.contains(&format!("{:#018x}", shmlane::fnv1a64(a.as_bytes()))),
                "{found}"
            );
            assert!(
                wanted.contains(&format!("{:#018x}", shmlane::fnv1a64(b.as_bytes()))),
                "{wanted}"
            );
        }
        other => panic!("expected WrongType, got {other:?}"),
    }
}

/// A long name cut at the stored 112 bytes inside a character is a sound record (not damaged):
/// a channel under it opens, under a name that differs in the cut character does not.
#[test]
fn a_long_name_cut_inside_a_character_opens() {
    let name = unique("revt-cut");
    let _c = Cleanup(name.clone());
    let a = format!("{}é::Tick", "x".repeat(shmlane::TYPE_NAME_STORED - 1));
    let b = format!("{}è::Tick", "x".repeat(shmlane::TYPE_NAME_STORED - 1));
    let _ch = shmlane::spsc::<u64>(&name)
        .type_name(&a)
        .capacity(4)
        .create()
        .unwrap();
    let ch = shmlane::spsc::<u64>(&name).type_name(&a).open().unwrap();
    assert!(ch.elem_type().name().ends_with('…'));
    assert!(matches!(
        shmlane::spsc::<u64>(&name).type_name(&b).open(),
        Err(OpenError::WrongType { .. })
    ));
}

/// A record whose words contradict each other (a hash not of its name, bytes past the name,
/// an impossible alignment, a name that is not UTF-8, an empty name) was not written by any
/// shmlane: the opener is told the record is damaged and what to do, not that the channel
/// "holds u64; opened as u64".
#[test]
fn a_self_contradicting_type_record_is_reported_as_damaged() {
    let name = unique("revt-damaged");
    let _c = Cleanup(name.clone());
    let _ch = shmlane::spsc::<u64>(&name).capacity(4).create().unwrap();
    let f = writer(&name);
    let off = type_offset(&name);
    let good: Vec<u8> = {
        let mut v = vec![0u8; 144];
        v[0..8].copy_from_slice(&8u64.to_ne_bytes());
        v[8..16].copy_from_slice(&8u64.to_ne_bytes());
        v[16..24].copy_from_slice(&shmlane::fnv1a64(b"u64").to_ne_bytes());
        v[24..32].copy_from_slice(&3u64.to_ne_bytes());
        v[32..35].copy_from_slice(b"u64");
        v
    };
    // The untouched record opens.
    f.write_all_at(&good, off).unwrap();
    shmlane::spsc::<u64>(&name).open().unwrap();
    let cases: [(&str, Damage); 6] = [
        ("hash", &|v| v[16..24].copy_from_slice(&1u64.to_ne_bytes())),
        ("past the name", &|v| v[40] = b'Z'),
        ("alignment", &|v| {
            v[8..16].copy_from_slice(&3u64.to_ne_bytes());
        }),
        ("multiple", &|v| {
            v[0..8].copy_from_slice(&12u64.to_ne_bytes());
        }),
        ("empty", &|v| {
            v[24..32].copy_from_slice(&0u64.to_ne_bytes());
            v[32..35].copy_from_slice(&[0; 3]);
            v[16..24].copy_from_slice(&shmlane::fnv1a64(b"").to_ne_bytes());
        }),
        ("UTF-8", &|v| {
            v[32..35].copy_from_slice(&[0xff, 0xfe, 0xfd]);
            v[16..24].copy_from_slice(&shmlane::fnv1a64(&[0xff, 0xfe, 0xfd]).to_ne_bytes());
        }),
    ];
    for (what, damage) in cases {
        let mut v = good.clone();
        damage(&mut v);
        f.write_all_at(&v, off).unwrap();
        match shmlane::spsc::<u64>(&name).open() {
            Err(e @ OpenError::DamagedTypeRecord { .. }) => {
                let text = e.to_string();
                assert!(
                    text.contains(&format!("shmlane rm {name}")),
                    "{what}: {text}"
                );
            }
            other => panic!("{what}: expected DamagedTypeRecord, got {other:?}"),
        }
        // Read without attaching: no panic, the record is shown as it is.
        let info = shmlane_segment::inspect(std::path::Path::new(&format!("/dev/shm/{name}")))
            .unwrap()
            .unwrap();
        let st = shmlane::inspect(&info).unwrap();
        let _ = st.elem_type.unwrap().to_string();
    }
    // Every word hostile at once: still a clear error, and inspect prints it.
    f.write_all_at(&[0xff; 256], off).unwrap();
    assert!(matches!(
        shmlane::spsc::<u64>(&name).open(),
        Err(OpenError::DamagedTypeRecord { .. })
    ));
    f.write_all_at(&good, off).unwrap();
    shmlane::spsc::<u64>(&name).open().unwrap();
}

/// Broadcast: the `msg_size` the channel records is the largest message the publisher takes
/// (the slot, rounded up to 8, held up to 7 bytes more), also through a handle that did not
/// set it.
#[test]
fn the_broadcast_publisher_refuses_messages_over_msg_size() {
    for checksum in [false, true] {
        let name = unique("revt-bcast");
        let _c = Cleanup(name.clone());
        let _ch = shmlane::broadcast(&name)
            .capacity(64)
            .msg_size(100)
            .checksum(checksum)
            .create()
            .unwrap();
        let other = shmlane::broadcast(&name).open().unwrap();
        let mut publ = other.publisher().unwrap();
        let mut sub = other.subscriber().unwrap();
        assert_eq!(publ.max_message(), 100, "checksum {checksum}");
        assert_eq!(
            publ.send(&[1; 101]),
            Err(ByteSendError::TooLong { len: 101, max: 100 }),
            "checksum {checksum}"
        );
        publ.send(&[2; 100]).unwrap();
        let mut buf = vec![0u8; sub.max_message()];
        assert_eq!(sub.try_recv(&mut buf), Ok(100));
        assert!(sub.try_recv(&mut buf).is_err());
    }
}

/// A peer rewrites the type record with arbitrary words while this process opens the channel
/// over and over: every open gives a clean result (opened, the wrong type, or a damaged
/// record), never a panic; once the record is restored, opens succeed again.
#[test]
fn a_type_record_rewritten_during_opens_gives_clean_errors() {
    let name = unique("revt-race");
    let _c = Cleanup(name.clone());
    let _ch = shmlane::mpmc::<u64>(&name).capacity(4).create().unwrap();
    let off = type_offset(&name);
    let f = writer(&name);
    let mut saved = vec![0u8; 256];
    std::fs::File::open(format!("/dev/shm/{name}"))
        .unwrap()
        .read_exact_at(&mut saved, off)
        .unwrap();
    let stop = AtomicBool::new(false);
    let (mut ok, mut wrong, mut damaged) = (0u32, 0u32, 0u32);
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
            while !stop.load(Ordering::Relaxed) {
                // xorshift: any word at any place, sometimes the saved one back.
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let word = (x % 18) * 8;
                let bytes = if x.trailing_zeros() >= 2 {
                    saved[word as usize..word as usize + 8].to_vec()
                } else {
                    (x.rotate_left(17) & if x & 4 == 0 { 0xff } else { u64::MAX })
                        .to_ne_bytes()
                        .to_vec()
                };
                f.write_all_at(&bytes, off + word).unwrap();
            }
        });
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_millis(1500) {
            match shmlane::mpmc::<u64>(&name).open() {
                Ok(ch) => {
                    ok += 1;
                    let _ = ch.elem_type().to_string();
                }
                Err(OpenError::WrongType { .. }) => wrong += 1,
                Err(OpenError::DamagedTypeRecord { .. }) => damaged += 1,
                Err(other) => panic!("unexpected: {other:?}"),
            }
            if let Ok(Some(info)) =
                shmlane_segment::inspect(std::path::Path::new(&format!("/dev/shm/{name}")))
                && let Some(st) = shmlane::inspect(&info)
            {
                let _ = st.elem_type.map(|t| t.to_string());
            }
        }
        stop.store(true, Ordering::Relaxed);
    });
    assert!(wrong + damaged > 0, "the rewrites were never seen");
    f.write_all_at(&saved, off).unwrap();
    shmlane::mpmc::<u64>(&name).open().unwrap();
    eprintln!("opens: {ok} ok, {wrong} wrong type, {damaged} damaged");
}

/// A forged directory entry gives the `type` region another size: below the record's 144
/// bytes the opener is told the record is damaged; from 144 bytes on the record is whole, and
/// `inspect` (reading the file without attaching) shows what `open` checks, as `open` does.
#[test]
fn a_type_region_of_another_size_is_read_alike_by_open_and_inspect() {
    let name = unique("revt-tysize");
    let _c = Cleanup(name.clone());
    drop(shmlane::spsc::<u64>(&name).capacity(4).create().unwrap());
    let path = format!("/dev/shm/{name}");
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let mut head = vec![0u8; 64 * 1024];
    let n = f.read_at(&mut head, 0).unwrap();
    let at = head[..n]
        .windows(5)
        .position(|w| w == b"type\0")
        .expect("the region directory names the type region");
    // The entry: kind u32, name_len u32, offset u64, size u64, reserved u64, name.
    let size_at = at as u64 - 16;
    let stats = || {
        let info = shmlane_segment::inspect(std::path::Path::new(&path))
            .unwrap()
            .unwrap();
        shmlane::inspect(&info).unwrap()
    };
    f.write_all_at(&144u64.to_ne_bytes(), size_at).unwrap();
    let ch = shmlane::spsc::<u64>(&name).open().unwrap();
    assert_eq!(stats().elem_type, Some(ch.elem_type()));
    drop(ch);
    f.write_all_at(&64u64.to_ne_bytes(), size_at).unwrap();
    assert!(matches!(
        shmlane::spsc::<u64>(&name).open(),
        Err(OpenError::DamagedTypeRecord { .. })
    ));
    assert_eq!(stats().elem_type, None);
}
