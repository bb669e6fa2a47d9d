//! Type and kind checks (issue 16): a channel records its element type's size, alignment and a
//! name the user controls, and every opener is checked against it; every endpoint constructor
//! checks the channel's kind first; every builder option is applied or refused for the kind.

use std::{
    os::unix::fs::FileExt,
    time::{Duration, Instant},
};

use bytemuck::{Pod, Zeroable};
use shmlane::{
    ByteSendError, Channel, ConfigError, Deadline, Kind, OpenError, RecvError, UnlinkPolicy,
};
use shmlane_testkit::{Cleanup, child, child_role, finish, unique};

/// A quote as one program names it.
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
#[repr(C)]
struct Quote {
    bid: f64,
    ask: f64,
}

/// Eight bytes aligned to 8: the size of `[u8; 8]`, another alignment.
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
#[repr(C, align(8))]
struct Aligned8([u8; 8]);

fn wrong_type(r: Result<impl core::fmt::Debug, OpenError>) -> (String, String, String) {
    match r {
        Err(e @ OpenError::WrongType { .. }) => {
            let text = e.to_string();
            let OpenError::WrongType { found, wanted, .. } = e else {
                unreachable!()
            };
            (found, wanted, text)
        }
        other => panic!("expected OpenError::WrongType, got {other:?}"),
    }
}

fn wrong_kind<E: core::fmt::Debug>(r: Result<E, OpenError>) -> (Kind, &'static str, String) {
    match r {
        Err(e @ OpenError::WrongKind { .. }) => {
            let text = e.to_string();
            let OpenError::WrongKind { kind, wanted, .. } = e else {
                unreachable!()
            };
            (kind, wanted, text)
        }
        other => panic!("expected OpenError::WrongKind, got {other:?}"),
    }
}

#[test]
fn child_entry() {
    let Some((role, args)) = child_role() else {
        return;
    };
    match role.as_str() {
        // Opens `args[0]` as a channel of f64 and prints the error.
        "open-f64" => match shmlane::spsc::<f64>(&args[0]).open() {
            Ok(_) => println!("OUT:opened"),
            Err(e) => println!("OUT:{e}"),
        },
        other => panic!("unknown role {other}"),
    }
}

/// The case: a channel made for `u64` opened as `f64` (same size and alignment) fails
/// in another process, and the error names both types.
#[test]
fn a_u64_channel_opened_as_f64_fails_naming_both_types() {
    let name = unique("types-ticks");
    let _c = Cleanup(name.clone());
    let ch = shmlane::spsc::<u64>(&name).capacity(64).create().unwrap();
    let (code, out) = finish(
        child("open-f64", &[&name]).spawn().unwrap(),
        Duration::from_secs(30),
    );
    assert_eq!(code, 0);
    assert_eq!(out.len(), 1, "{out:?}");
    let msg = &out[0];
    assert!(
        msg.contains(&format!(
            "channel {name} holds u64 (8 bytes, align 8); opened as f64 (8 bytes, align 8)"
        )),
        "{msg}"
    );
    // In this process too, for both typed kinds, and the right type still opens.
    let (found, wanted, _) = wrong_type(shmlane::spsc::<f64>(&name).open());
    assert_eq!(
        (found.as_str(), wanted.as_str()),
        ("u64 (8 bytes, align 8)", "f64 (8 bytes, align 8)")
    );
    assert_eq!(
        shmlane::spsc::<u64>(&name)
            .open()
            .unwrap()
            .elem_type()
            .name(),
        "u64"
    );
    assert!(matches!(
        shmlane::spsc::<i64>(&name).open_or_create(),
        Err(OpenError::WrongType { .. })
    ));
    drop(ch);
    let name = unique("types-mpmc");
    let _c = Cleanup(name.clone());
    let _ch = shmlane::mpmc::<u64>(&name).capacity(64).create().unwrap();
    let (found, wanted, _) = wrong_type(shmlane::mpmc::<f64>(&name).open());
    assert_eq!(
        (found.as_str(), wanted.as_str()),
        ("u64 (8 bytes, align 8)", "f64 (8 bytes, align 8)")
    );
}

/// Same name, same size, another alignment: refused, the message shows both alignments.
#[test]
fn same_size_and_name_but_another_alignment_fails() {
    let name = unique("types-align");
    let _c = Cleanup(name.clone());
    let _ch = shmlane::spsc::<Aligned8>(&name)
        .type_name("tick")
        .capacity(64)
        .create()
        .unwrap();
    let (found, wanted, text) =
        wrong_type(shmlane::spsc::<[u8; 8]>(&name).type_name("tick").open());
    assert_eq!(found, "tick (8 bytes, align 8)");
    assert_eq!(wanted, "tick (8 bytes, align 1)");
    assert!(
        text.contains("holds tick (8 bytes, align 8); opened as tick (8 bytes, align 1)"),
        "{text}"
    );
    // Default names differ too, and an open with the same alignment works.
    assert!(matches!(
        shmlane::spsc::<[u8; 8]>(&name).open(),
        Err(OpenError::WrongType { .. })
    ));
    shmlane::spsc::<Aligned8>(&name)
        .type_name("tick")
        .open()
        .unwrap();
}

/// Same name, another size: refused.
#[test]
fn same_name_but_another_size_fails() {
    let name = unique("types-size");
    let _c = Cleanup(name.clone());
    let _ch = shmlane::mpmc::<u64>(&name)
        .type_name("tick")
        .capacity(64)
        .create()
        .unwrap();
    let (found, wanted, _) = wrong_type(shmlane::mpmc::<u32>(&name).type_name("tick").open());
    assert_eq!(
        (found.as_str(), wanted.as_str()),
        ("tick (8 bytes, align 8)", "tick (4 bytes, align 4)")
    );
}

/// Cross-language use: two differently named Rust types with one layout share a channel under
/// one `type_name`; another name is refused, naming both.
#[test]
fn a_type_name_override_lets_two_rust_types_share_a_channel() {
    let name = unique("types-override");
    let _c = Cleanup(name.clone());
    let a: Channel<Quote> = shmlane::spsc::<Quote>(&name)
        .type_name("md.Quote/v1")
        .capacity(64)
        .unlink(UnlinkPolicy::LastDetach)
        .create()
        .unwrap();
    let b: Channel<[f64; 2]> = shmlane::spsc::<[f64; 2]>(&name)
        .type_name("md.Quote/v1")
        .open()
        .unwrap();
    assert_eq!(b.elem_type().to_string(), "md.Quote/v1 (16 bytes, align 8)");
    let mut tx = a.producer().unwrap();
    let mut rx = b.consumer().unwrap();
    tx.try_send(Quote {
        bid: 1.0842,
        ask: 1.0844,
    })
    .unwrap();
    let got = rx.try_recv().unwrap();
    assert_eq!(
        got.map(f64::to_bits),
        [1.0842f64.to_bits(), 1.0844f64.to_bits()]
    );
    let (found, wanted, text) = wrong_type(
        shmlane::spsc::<[f64; 2]>(&name)
            .type_name("md.Quote/v2")
            .open(),
    );
    assert_eq!(found, "md.Quote/v1 (16 bytes, align 8)");
    assert_eq!(wanted, "md.Quote/v2 (16 bytes, align 8)");
    assert!(text.contains("Builder::type_name"), "{text}");
    // Without the override, the Rust name is checked: refused.
    let (_, wanted, _) = wrong_type(shmlane::spsc::<[f64; 2]>(&name).open());
    assert_eq!(wanted, "[f64; 2] (16 bytes, align 8)");
    // The record is visible without attaching.
    let info = shmlane_segment::inspect(std::path::Path::new(&format!("/dev/shm/{name}")))
        .unwrap()
        .unwrap();
    let st = shmlane::inspect(&info).unwrap();
    let t = st.elem_type.unwrap();
    assert_eq!(
        (t.name().as_ref(), t.size(), t.align()),
        ("md.Quote/v1", 16, 8)
    );
    assert_eq!(t.name_hash(), shmlane::fnv1a64(b"md.Quote/v1"));
}

/// Names longer than the stored 112 bytes are told apart by their length and the hash of the
/// whole name: a difference past the stored prefix is refused.
#[test]
fn long_type_names_differing_past_the_stored_prefix_are_refused() {
    let name = unique("types-long");
    let _c = Cleanup(name.clone());
    let stem = "org.example.marketdata.".repeat(8);
    assert!(stem.len() > shmlane::TYPE_NAME_STORED + 50);
    let (a, b) = (format!("{stem}QuoteA"), format!("{stem}QuoteB"));
    let _ch = shmlane::spsc::<u64>(&name)
        .type_name(&a)
        .capacity(64)
        .create()
        .unwrap();
    shmlane::spsc::<u64>(&name).type_name(&a).open().unwrap();
    let (found, wanted, _) = wrong_type(shmlane::spsc::<u64>(&name).type_name(&b).open());
    // Both shown as their stored prefix, marked as cut, with the length and hash that tell
    // them apart (review revt).
    assert!(found.contains("… (8 bytes, align 8; name of "), "{found}");
    assert!(wanted.contains("… (8 bytes, align 8; name of "), "{wanted}");
    assert_ne!(found, wanted);
    // A longer name with the same stored prefix: refused too.
    let (_, _, _) = wrong_type(
        shmlane::spsc::<u64>(&name)
            .type_name(&format!("{a}2"))
            .open(),
    );
    // An empty name is a setting error.
    assert!(matches!(
        shmlane::spsc::<u64>(&name).type_name("").open(),
        Err(OpenError::Config {
            error: ConfigError::EmptyTypeName,
            ..
        })
    ));
}

/// Byte and broadcast-byte channels record `bytes` and refuse a type name.
#[test]
fn byte_channels_record_bytes_and_refuse_a_type_name() {
    for (b, kind) in [
        (shmlane::bytes as fn(&str) -> shmlane::Builder<u8>, "bytes"),
        (shmlane::broadcast, "broadcast"),
    ] {
        let name = unique("types-bytes");
        let _c = Cleanup(name.clone());
        let ch = b(&name).capacity(4096).create().unwrap();
        assert_eq!(ch.elem_type().to_string(), "bytes (1 bytes, align 1)");
        match b(&name).type_name("order").open() {
            Err(OpenError::Config {
                error: ConfigError::Unsupported { kind: k, .. },
                ..
            }) => assert_eq!(k, kind),
            other => panic!("{other:?}"),
        }
        // A typed u8 channel of the same name is another kind: both kinds named.
        match shmlane::spsc::<u8>(&name).open() {
            Err(e @ OpenError::Mismatch { .. }) => assert!(
                e.to_string().contains(&format!(
                    "exists as {kind} (endpoints {}), asked for spsc (endpoints producer() and consumer())",
                    if kind == "bytes" {
                        "byte_sender() and byte_receiver()"
                    } else {
                        "publisher() and subscriber() (typed: typed_publisher() and typed_subscriber())"
                    }
                )),
                "{e}"
            ),
            other => panic!("{other:?}"),
        }
    }
}

/// The case: `byte_sender()` of an SPSC channel of `u8` is a wrong kind, named.
#[test]
fn byte_sender_of_an_spsc_channel_is_a_wrong_kind() {
    let name = unique("types-kind");
    let _c = Cleanup(name.clone());
    let ch = shmlane::spsc::<u8>(&name).capacity(64).create().unwrap();
    let (kind, wanted, text) = wrong_kind(ch.byte_sender());
    assert_eq!((kind, wanted), (Kind::Spsc, "byte_sender"));
    assert_eq!(
        text,
        format!(
            "channel {name} is a spsc channel, which has no byte_sender: its endpoints are producer() and consumer()"
        )
    );
}

/// Every endpoint constructor on every kind: the kind's own endpoints open, every other one is
/// `WrongKind` naming the channel's kind and the endpoint asked for.
#[test]
fn every_endpoint_constructor_checks_the_kind() {
    type Make = fn(&Channel<u8>) -> Result<(), OpenError>;
    let endpoints: [(&str, Kind, Make); 8] = [
        ("producer", Kind::Spsc, |c| c.producer().map(drop)),
        ("consumer", Kind::Spsc, |c| c.consumer().map(drop)),
        ("sender", Kind::Mpmc, |c| c.sender().map(drop)),
        ("receiver", Kind::Mpmc, |c| c.receiver().map(drop)),
        ("byte_sender", Kind::Bytes, |c| c.byte_sender().map(drop)),
        ("byte_receiver", Kind::Bytes, |c| {
            c.byte_receiver().map(drop)
        }),
        ("publisher", Kind::Broadcast, |c| c.publisher().map(drop)),
        ("subscriber", Kind::Broadcast, |c| c.subscriber().map(drop)),
    ];
    for kind in [Kind::Spsc, Kind::Mpmc, Kind::Bytes, Kind::Broadcast] {
        let name = unique("types-every");
        let _c = Cleanup(name.clone());
        let b = match kind {
            Kind::Spsc => shmlane::spsc::<u8>(&name).capacity(64),
            Kind::Mpmc => shmlane::mpmc::<u8>(&name).capacity(64),
            Kind::Bytes => shmlane::bytes(&name).capacity(4096),
            Kind::Broadcast => shmlane::broadcast(&name).capacity(64),
            // Kind::Latest (issue 20) has its own endpoints: not in this loop.
            Kind::Latest => unreachable!("only the kinds of the loop"),
        };
        let ch = b.create().unwrap();
        for (wanted, has, make) in endpoints {
            let r = make(&ch);
            if has == kind {
                r.unwrap_or_else(|e| panic!("{wanted} of a {kind:?} channel: {e}"));
            } else {
                let (k, w, text) = wrong_kind(r);
                assert_eq!((k, w), (kind, wanted));
                assert!(
                    text.contains(kind.name()) && text.contains(kind.endpoints()),
                    "{text}"
                );
            }
        }
    }
}

fn config(r: Result<impl core::fmt::Debug, OpenError>) -> ConfigError {
    match r {
        Err(OpenError::Config { error, .. }) => error,
        other => panic!("expected a ConfigError, got {other:?}"),
    }
}

/// SPSC and MPMC: the element type decides the message size; any other `msg_size` is refused,
/// at create and at open; the element's own size is accepted.
#[test]
fn msg_size_is_refused_on_typed_channels_unless_the_element_size() {
    for kind in [Kind::Spsc, Kind::Mpmc] {
        let name = unique("types-msg");
        let _c = Cleanup(name.clone());
        let b = || match kind {
            Kind::Spsc => shmlane::spsc::<u64>(&name).capacity(64),
            _ => shmlane::mpmc::<u64>(&name).capacity(64),
        };
        for m in [0, 4, 7, 9, 64] {
            let e = config(b().msg_size(m).create());
            assert_eq!(
                e,
                ConfigError::FixedMsgSize {
                    kind: kind.name(),
                    msg_size: m,
                    elem: 8
                }
            );
            assert!(e.to_string().contains("element type (8 bytes)"), "{e}");
        }
        let _ch = b().msg_size(8).create().unwrap();
        assert!(matches!(
            config(b().msg_size(4).open()),
            ConfigError::FixedMsgSize { msg_size: 4, .. }
        ));
        b().msg_size(8).open().unwrap();
    }
}

/// Bytes: `msg_size` is applied: recorded, a longer message is refused with `TooLong` (send,
/// try_send, claim, also through a handle that did not set it), one at the limit delivered;
/// an open asking for another size is refused.
#[test]
fn msg_size_is_applied_on_byte_channels() {
    let name = unique("types-bytes-msg");
    let _c = Cleanup(name.clone());
    let ch = shmlane::bytes(&name)
        .capacity(4096)
        .msg_size(100)
        .create()
        .unwrap();
    let other = shmlane::bytes(&name).open().unwrap();
    let mut tx = other.byte_sender().unwrap();
    let mut rx = ch.byte_receiver().unwrap();
    assert_eq!(tx.max_message(), 100);
    assert_eq!(
        tx.try_send(&[7; 101]),
        Err(ByteSendError::TooLong { len: 101, max: 100 })
    );
    assert_eq!(
        tx.send(&[7; 101], Some(Deadline::after(Duration::from_secs(1)))),
        Err(ByteSendError::TooLong { len: 101, max: 100 })
    );
    assert!(matches!(
        tx.claim(101),
        Err(ByteSendError::TooLong { len: 101, max: 100 })
    ));
    tx.try_send(&[8; 100]).unwrap();
    let mut buf = [0u8; 512];
    assert_eq!(rx.try_recv(&mut buf), Ok(100));
    assert_eq!(buf[..100], [8; 100]);
    // Nothing else was delivered.
    assert!(rx.try_recv(&mut buf).is_err());
    // Open: the same size is accepted, another refused; the record shows it.
    shmlane::bytes(&name).msg_size(100).open().unwrap();
    assert!(matches!(
        shmlane::bytes(&name).msg_size(200).open(),
        Err(OpenError::Mismatch { .. })
    ));
    let info = shmlane_segment::inspect(std::path::Path::new(&format!("/dev/shm/{name}")))
        .unwrap()
        .unwrap();
    assert_eq!(shmlane::inspect(&info).unwrap().msg_size, 100);
    // Past what the ring holds: a setting error, as before.
    assert!(matches!(
        config(shmlane::bytes("x").capacity(4096).msg_size(505).create()),
        ConfigError::MsgSize { max: 504, .. }
    ));
    // With checksums, the 4 checksum bytes come out of the ring's largest record.
    assert!(matches!(
        config(
            shmlane::bytes("x")
                .capacity(4096)
                .checksum(true)
                .msg_size(504)
                .create()
        ),
        ConfigError::MsgSize { max: 500, .. }
    ));
}

/// Broadcast: an open asking for another message size than the channel's is refused (it was
/// silently ignored).
#[test]
fn broadcast_msg_size_is_checked_on_open() {
    let name = unique("types-bcast-msg");
    let _c = Cleanup(name.clone());
    let _ch = shmlane::broadcast(&name)
        .capacity(64)
        .msg_size(64)
        .create()
        .unwrap();
    shmlane::broadcast(&name).msg_size(64).open().unwrap();
    assert!(matches!(
        shmlane::broadcast(&name).msg_size(128).open(),
        Err(OpenError::Mismatch { .. })
    ));
}

/// The type record never changes: overwriting it makes a blocked receive report `Corrupt`
/// (the peer checks re-validate it with the headers) long before its deadline.
#[test]
fn an_overwritten_type_record_is_corrupt() {
    for word in [0u64, 1, 2, 3, 4] {
        let name = unique("types-corrupt");
        let _c = Cleanup(name.clone());
        let ch = shmlane::spsc::<u64>(&name).capacity(4).create().unwrap();
        let _tx = ch.producer().unwrap();
        let mut rx = ch.consumer().unwrap();
        let info = shmlane_segment::inspect(std::path::Path::new(&format!("/dev/shm/{name}")))
            .unwrap()
            .unwrap();
        let ty = info
            .regions
            .iter()
            .find(|r| r.name == "type")
            .unwrap()
            .offset;
        std::thread::scope(|s| {
            let t0 = Instant::now();
            let h = s.spawn(|| rx.recv(Some(Deadline::after(Duration::from_secs(20)))));
            std::thread::sleep(Duration::from_millis(100));
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(format!("/dev/shm/{name}"))
                .unwrap();
            f.write_all_at(&[0x5a; 8], ty + 8 * word).unwrap();
            assert_eq!(h.join().unwrap(), Err(RecvError::Corrupt), "word {word}");
            assert!(t0.elapsed() < Duration::from_secs(5));
        });
    }
}

/// A channel without a type record (made before channels recorded one: simulated by renaming
/// the region in the segment's directory) is refused with a clear error.
#[test]
fn a_channel_without_a_type_record_is_refused_clearly() {
    let name = unique("types-old");
    let _c = Cleanup(name.clone());
    drop(shmlane::spsc::<u64>(&name).capacity(64).create().unwrap());
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
    f.write_all_at(b"tyqe", at as u64).unwrap();
    match shmlane::spsc::<u64>(&name).open() {
        Err(e @ OpenError::NoTypeRecord(_)) => {
            assert!(e.to_string().contains(&format!("shmlane rm {name}")), "{e}");
        }
        other => panic!("{other:?}"),
    }
}
