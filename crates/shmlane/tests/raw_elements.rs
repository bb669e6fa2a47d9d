//! Channels whose element layout is given at run time (issue 19, for the C ABI): interop with
//! the typed API both ways in real processes, the type check, wrap-around with odd sizes, a dead
//! peer, MPMC with several senders, and the length errors.

use std::time::Duration;

use bytemuck::{Pod, Zeroable};
use shmlane::{
    Deadline, ElemError, ElemLayout, Kind, OpenError, RecvError, TryRecvError, TrySendError,
    raw_mpmc, raw_spsc,
};
use shmlane_testkit::{Cleanup, child, child_role, finish, unique};

/// 24 bytes, alignment 8.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
struct Quote {
    seq: u64,
    px: f64,
    qty: u32,
    venue: u32,
}

fn quote(i: u64) -> Quote {
    Quote {
        seq: i,
        px: 100.0 + f64::from(i as u32) / 8.0,
        qty: (i % 1000) as u32,
        venue: (i % 7) as u32,
    }
}

const QUOTE: ElemLayout = ElemLayout::of::<Quote>();

#[allow(clippy::unnecessary_wraps)]
fn secs(n: u64) -> Option<Deadline> {
    Some(Deadline::after(Duration::from_secs(n)))
}

fn is_spsc(kind: &str) -> bool {
    match kind {
        "spsc" => true,
        "mpmc" => false,
        k => panic!("kind {k}"),
    }
}

#[test]
fn child_entry() {
    let Some((role, args)) = child_role() else {
        return;
    };
    let (name, kind) = (&args[0], args[1].as_str());
    let n: u64 = args[2].parse().unwrap();
    match role.as_str() {
        "typed-send" => {
            if is_spsc(kind) {
                let ch = shmlane::spsc::<Quote>(name)
                    .type_name("Quote")
                    .open()
                    .unwrap();
                let mut p = ch.producer().unwrap();
                for i in 0..n {
                    p.send(quote(i), secs(30)).unwrap();
                }
            } else {
                let ch = shmlane::mpmc::<Quote>(name)
                    .type_name("Quote")
                    .open()
                    .unwrap();
                let mut s = ch.sender().unwrap();
                for i in 0..n {
                    s.send(quote(i), secs(30)).unwrap();
                }
            }
            println!("OUT:sent");
        }
        "typed-recv" => {
            let got: Vec<Quote> = if is_spsc(kind) {
                let ch = shmlane::spsc::<Quote>(name)
                    .type_name("Quote")
                    .open()
                    .unwrap();
                let mut c = ch.consumer().unwrap();
                (0..n).map(|_| c.recv(secs(30)).unwrap()).collect()
            } else {
                let ch = shmlane::mpmc::<Quote>(name)
                    .type_name("Quote")
                    .open()
                    .unwrap();
                let mut r = ch.receiver().unwrap();
                (0..n).map(|_| r.recv(secs(30)).unwrap()).collect()
            };
            for (i, q) in got.iter().enumerate() {
                assert_eq!(*q, quote(i as u64), "message {i}");
            }
            println!("OUT:received {}", got.len());
        }
        "raw-send-then-die" => {
            // Sends n quotes through a run-time endpoint, then exits without dropping it.
            let ch = if is_spsc(kind) {
                raw_spsc(name, QUOTE)
            } else {
                raw_mpmc(name, QUOTE)
            }
            .type_name("Quote")
            .open()
            .unwrap();
            if is_spsc(kind) {
                let mut p = ch.producer().unwrap();
                for i in 0..n {
                    p.send(bytemuck::bytes_of(&quote(i)), secs(30)).unwrap();
                }
                std::process::exit(0);
            }
            let mut s = ch.sender().unwrap();
            for i in 0..n {
                s.send(bytemuck::bytes_of(&quote(i)), secs(30)).unwrap();
            }
            std::process::exit(0);
        }
        "raw-send-tagged" => {
            // MPMC: sends n quotes whose `venue` is args[3], through a run-time sender.
            let venue: u32 = args[3].parse().unwrap();
            let ch = raw_mpmc(name, QUOTE).type_name("Quote").open().unwrap();
            let mut s = ch.sender().unwrap();
            for i in 0..n {
                let mut q = quote(i);
                q.venue = venue;
                s.send(bytemuck::bytes_of(&q), secs(30)).unwrap();
            }
            println!("OUT:sent");
        }
        other => panic!("unknown role {other}"),
    }
}

const N: u64 = 20_000;

type RecvOne<'a> = dyn FnMut(&mut [u8]) -> Result<(), ElemError<RecvError>> + 'a;

/// A typed child sends to a run-time receiver here, and a run-time sender here sends to a
/// typed child, on SPSC and MPMC channels made by either side.
#[test]
fn typed_and_run_time_endpoints_talk_both_ways_across_processes() {
    for kind in ["spsc", "mpmc"] {
        // Run-time side creates; the typed child sends.
        let name = unique(&format!("raw-interop-{kind}"));
        let _c = Cleanup(name.clone());
        let b = if kind == "spsc" {
            raw_spsc(&name, QUOTE)
        } else {
            raw_mpmc(&name, QUOTE)
        };
        let ch = b.type_name("Quote").capacity(64).create().unwrap();
        assert_eq!(ch.elem_type().size(), 24);
        let sender = child("typed-send", &[&name, kind, &N.to_string()])
            .spawn()
            .unwrap();
        let mut buf = [0u8; 24];
        if kind == "spsc" {
            let mut c = ch.consumer().unwrap();
            for i in 0..N {
                c.recv(&mut buf, secs(30)).unwrap();
                assert_eq!(bytemuck::pod_read_unaligned::<Quote>(&buf), quote(i));
            }
        } else {
            let mut r = ch.receiver().unwrap();
            for i in 0..N {
                r.recv(&mut buf, secs(30)).unwrap();
                assert_eq!(bytemuck::pod_read_unaligned::<Quote>(&buf), quote(i));
            }
        }
        assert_eq!(
            finish(sender, Duration::from_secs(60)),
            (0, vec!["sent".into()])
        );
        drop(ch);

        // The typed API creates; the run-time side here sends to a typed child.
        let name = unique(&format!("raw-interop2-{kind}"));
        let _c2 = Cleanup(name.clone());
        let b = if kind == "spsc" {
            raw_spsc(&name, QUOTE)
        } else {
            raw_mpmc(&name, QUOTE)
        };
        let typed_made = if kind == "spsc" {
            shmlane::spsc::<Quote>(&name)
                .type_name("Quote")
                .capacity(32)
                .create()
                .map(|_| ())
        } else {
            shmlane::mpmc::<Quote>(&name)
                .type_name("Quote")
                .capacity(32)
                .create()
                .map(|_| ())
        };
        typed_made.unwrap();
        let ch = b.type_name("Quote").capacity(32).open().unwrap();
        let receiver = child("typed-recv", &[&name, kind, &N.to_string()])
            .spawn()
            .unwrap();
        if kind == "spsc" {
            let mut p = ch.producer().unwrap();
            for i in 0..N {
                p.send(bytemuck::bytes_of(&quote(i)), secs(30)).unwrap();
            }
        } else {
            let mut s = ch.sender().unwrap();
            for i in 0..N {
                s.send(bytemuck::bytes_of(&quote(i)), secs(30)).unwrap();
            }
        }
        assert_eq!(
            finish(receiver, Duration::from_secs(60)),
            (0, vec![format!("received {N}")])
        );
    }
}

#[test]
fn another_size_alignment_or_name_is_wrong_type_both_ways() {
    let name = unique("raw-wrongtype");
    let _c = Cleanup(name.clone());
    let _typed = shmlane::spsc::<Quote>(&name)
        .type_name("Quote")
        .create()
        .unwrap();
    for (size, align, tname) in [
        (16, 8, "Quote"),
        (24, 4, "Quote"),
        (24, 8, "Other"),
        (32, 8, "Quote"),
    ] {
        let e = raw_spsc(&name, ElemLayout::new(size, align).unwrap())
            .type_name(tname)
            .open()
            .unwrap_err();
        assert!(
            matches!(e, OpenError::WrongType { .. }),
            "{size}/{align}/{tname}: {e}"
        );
    }
    // The right layout and name opens it.
    raw_spsc(&name, QUOTE).type_name("Quote").open().unwrap();
    // A run-time MPMC builder on an SPSC channel: the kind differs.
    let e = raw_mpmc(&name, QUOTE)
        .type_name("Quote")
        .open()
        .unwrap_err();
    assert!(matches!(e, OpenError::Mismatch { .. }), "{e}");

    // The other way: a run-time channel refuses typed openers of another type.
    let name = unique("raw-wrongtype2");
    let _c2 = Cleanup(name.clone());
    let _raw = raw_mpmc(&name, QUOTE).type_name("Quote").create().unwrap();
    let e = shmlane::mpmc::<[u32; 6]>(&name)
        .type_name("Quote")
        .open()
        .unwrap_err();
    assert!(matches!(e, OpenError::WrongType { .. }), "{e}");
    let e = shmlane::mpmc::<Quote>(&name).open().unwrap_err();
    assert!(
        matches!(e, OpenError::WrongType { .. }),
        "default name: {e}"
    );
    shmlane::mpmc::<Quote>(&name)
        .type_name("Quote")
        .open()
        .unwrap();
    // Without a type name, the run-time default names the layout.
    let name = unique("raw-default-name");
    let _c3 = Cleanup(name.clone());
    let ch = raw_spsc(&name, ElemLayout::new(3, 1).unwrap())
        .create()
        .unwrap();
    assert_eq!(ch.elem_type().name(), "[u8; 3] align 1");
}

fn pattern(i: usize, size: usize) -> Vec<u8> {
    (0..size).map(|k| (i * 131 + k * 7 + 1) as u8).collect()
}

/// Odd sizes wrap around a small ring many times, one at a time, in batches and (SPSC) in
/// zero-copy chunks.
#[test]
fn odd_sizes_wrap_around_spsc_and_mpmc() {
    for (size, align) in [(3, 1), (24, 8), (4096, 8), (12, 4)] {
        let l = ElemLayout::new(size, align).unwrap();
        let name = unique(&format!("raw-wrap-{size}"));
        let _c = Cleanup(name.clone());
        let ch = raw_spsc(&name, l).capacity(4).create().unwrap();
        let (mut p, mut c) = (ch.producer().unwrap(), ch.consumer().unwrap());
        let mut out = vec![0u8; 3 * size];
        let mut next = 0;
        for _ in 0..10 {
            p.try_send(&pattern(next, size)).unwrap();
            let batch: Vec<u8> = (1..3).flat_map(|k| pattern(next + k, size)).collect();
            assert_eq!(p.try_send_slice(&batch), Ok(2));
            let mut w = p.write_chunk(1).unwrap();
            let [(a, n1), (b, n2)] = w.as_mut_ptrs();
            let src = pattern(next + 3, size);
            // SAFETY: one reserved slot of `size` bytes in one of the two runs.
            unsafe {
                let dst = if n1 == 1 { a } else { b };
                assert_eq!(n1 + n2, 1);
                core::ptr::copy_nonoverlapping(src.as_ptr(), dst, size);
            }
            w.commit_all();
            p.notify(1);
            assert!(matches!(
                p.try_send(&pattern(0, size)),
                Err(ElemError::Channel(TrySendError::Full(())))
            ));
            c.recv(&mut out[..size], secs(5)).unwrap();
            assert_eq!(out[..size], pattern(next, size)[..]);
            assert_eq!(c.try_recv_slice(&mut out), Ok(3));
            for k in 0..3 {
                assert_eq!(out[k * size..][..size], pattern(next + 1 + k, size)[..]);
            }
            assert!(matches!(
                c.try_recv(&mut out[..size]),
                Err(ElemError::Channel(TryRecvError::Empty))
            ));
            next += 4;
        }
        assert_eq!(p.stats().messages, 40);
        drop((p, c));

        let name = unique(&format!("raw-wrap-mpmc-{size}"));
        let _c = Cleanup(name.clone());
        let ch = raw_mpmc(&name, l).capacity(4).create().unwrap();
        let (mut s1, mut s2, mut r) = (
            ch.sender().unwrap(),
            ch.sender().unwrap(),
            ch.receiver().unwrap(),
        );
        for round in 0..10 {
            let base = round * 4;
            s1.send(&pattern(base, size), secs(5)).unwrap();
            let batch: Vec<u8> = (1..4).flat_map(|k| pattern(base + k, size)).collect();
            assert_eq!(s2.try_send_slice(&batch), Ok(3));
            r.recv(&mut out[..size], secs(5)).unwrap();
            assert_eq!(out[..size], pattern(base, size)[..]);
            assert_eq!(r.try_recv_slice(&mut out), Ok(3));
            assert_eq!(out[..3 * size], batch[..]);
        }
        assert_eq!(
            r.recv(
                &mut out[..size],
                Some(Deadline::after(Duration::from_millis(20)))
            ),
            Err(ElemError::Channel(RecvError::Timeout))
        );
    }
}

#[test]
fn slices_of_the_wrong_length_are_errors_not_panics() {
    let name = unique("raw-len");
    let _c = Cleanup(name.clone());
    let ch = raw_spsc(&name, QUOTE).create().unwrap();
    let (mut p, mut c) = (ch.producer().unwrap(), ch.consumer().unwrap());
    assert_eq!(
        p.try_send(&[0; 23]),
        Err(ElemError::Length { size: 24, got: 23 })
    );
    assert_eq!(
        p.send(&[0; 25], secs(1)),
        Err(ElemError::Length { size: 24, got: 25 })
    );
    assert_eq!(
        p.try_send_slice(&[0; 47]),
        Err(ElemError::Length { size: 24, got: 47 })
    );
    p.try_send(&[9; 24]).unwrap();
    let mut small = [0u8; 8];
    assert_eq!(
        c.try_recv(&mut small),
        Err(ElemError::Length { size: 24, got: 8 })
    );
    assert_eq!(
        c.recv(&mut [0; 0], secs(1)),
        Err(ElemError::Length { size: 24, got: 0 })
    );
    assert_eq!(
        c.try_recv_slice(&mut [0; 30]),
        Err(ElemError::Length { size: 24, got: 30 })
    );
    // Nothing was taken by the refused calls.
    let mut buf = [0u8; 24];
    c.try_recv(&mut buf).unwrap();
    assert_eq!(buf, [9; 24]);
    let e = ElemError::<TryRecvError>::Length { size: 24, got: 8 }.to_string();
    assert!(e.contains("8 bytes") && e.contains("24-byte"), "{e}");

    let name = unique("raw-len-mpmc");
    let _c = Cleanup(name.clone());
    let ch = raw_mpmc(&name, QUOTE).create().unwrap();
    let (mut s, mut r) = (ch.sender().unwrap(), ch.receiver().unwrap());
    assert_eq!(
        s.try_send(&[0; 1]),
        Err(ElemError::Length { size: 24, got: 1 })
    );
    assert_eq!(
        r.try_recv(&mut [0; 48]),
        Err(ElemError::Length { size: 24, got: 48 })
    );
    assert_eq!(ch.kind(), Kind::Mpmc);
}

/// A run-time sender process that dies is reported to the receiver as `PeerDied`, after what
/// it sent.
#[test]
fn a_dead_run_time_sender_is_peer_died() {
    for kind in ["spsc", "mpmc"] {
        let name = unique(&format!("raw-died-{kind}"));
        let _c = Cleanup(name.clone());
        let b = if kind == "spsc" {
            raw_spsc(&name, QUOTE)
        } else {
            raw_mpmc(&name, QUOTE)
        };
        let ch = b.type_name("Quote").capacity(16).create().unwrap();
        let mut buf = [0u8; 24];
        let mut recv = |c: &mut RecvOne<'_>| {
            let got: Vec<_> = (0..5)
                .map(|_| c(&mut buf).map(|()| bytemuck::pod_read_unaligned::<Quote>(&buf)))
                .collect();
            (got, c(&mut buf))
        };
        let kid = child("raw-send-then-die", &[&name, kind, "5"])
            .spawn()
            .unwrap();
        let (got, last) = if kind == "spsc" {
            let mut cons = ch.consumer().unwrap();
            recv(&mut |b| cons.recv(b, secs(20)))
        } else {
            let mut rx = ch.receiver().unwrap();
            recv(&mut |b| rx.recv(b, secs(20)))
        };
        assert_eq!(
            got,
            (0..5).map(|i| Ok(quote(i))).collect::<Vec<_>>(),
            "{kind}"
        );
        assert_eq!(last, Err(ElemError::Channel(RecvError::PeerDied)), "{kind}");
        finish(kid, Duration::from_secs(30));
    }
}

/// Several run-time sender processes and a typed one on one MPMC channel: everything arrives,
/// each sender's messages in order.
#[test]
fn mpmc_with_several_sender_processes() {
    let name = unique("raw-mpmc-many");
    let _c = Cleanup(name.clone());
    let ch = raw_mpmc(&name, QUOTE)
        .type_name("Quote")
        .capacity(64)
        .create()
        .unwrap();
    let mut r = ch.receiver().unwrap();
    let per = 5_000u64;
    let kids: Vec<_> = (1..=3)
        .map(|v| {
            child(
                "raw-send-tagged",
                &[&name, "mpmc", &per.to_string(), &(v + 9).to_string()],
            )
            .spawn()
            .unwrap()
        })
        .collect();
    let typed = child("typed-send", &[&name, "mpmc", &per.to_string()])
        .spawn()
        .unwrap();
    let mut next = [0u64; 8];
    let mut buf = [0u8; 24];
    for _ in 0..4 * per {
        r.recv(&mut buf, secs(30)).unwrap();
        let q: Quote = bytemuck::pod_read_unaligned(&buf);
        // Tagged senders use venues 10..=12; the typed child's are `seq % 7`.
        let v = if q.venue >= 10 {
            q.venue as usize - 9
        } else {
            0
        };
        assert_eq!(q.seq, next[v], "sender {v}");
        let mut want = quote(q.seq);
        if v != 0 {
            want.venue = q.venue;
        }
        assert_eq!(q, want);
        next[v] += 1;
    }
    assert_eq!(&next[..4], &[per; 4]);
    for k in kids {
        assert_eq!(finish(k, Duration::from_secs(30)).0, 0);
    }
    assert_eq!(finish(typed, Duration::from_secs(30)).0, 0);
    assert_eq!(r.stats().messages, 4 * per);
}

#[test]
fn count_payload_counts_bytes_per_message() {
    let name = unique("raw-payload");
    let _c = Cleanup(name.clone());
    let ch = raw_spsc(&name, ElemLayout::new(64, 8).unwrap())
        .create()
        .unwrap();
    let (mut p, mut c) = (ch.producer().unwrap(), ch.consumer().unwrap());
    let mut buf = [0u8; 64];
    for _ in 0..3 {
        p.try_send(&buf.clone()).unwrap();
        p.count_payload(10);
        c.try_recv(&mut buf).unwrap();
    }
    p.try_send(&[1; 64]).unwrap();
    assert_eq!(p.stats().bytes, 3 * 10 + 64);
    assert_eq!(p.stats().messages, 4);
}

/// The borrow-free zero-copy calls a C wrapper uses: reserve, write through the pointers,
/// commit in a later call; read through the pointers, release later. Wraps a 4-slot ring.
#[test]
fn borrow_free_chunks_wrap() {
    let name = unique("raw-ptrs");
    let _c = Cleanup(name.clone());
    let (size, cap) = (12, 4);
    let ch = raw_spsc(&name, ElemLayout::new(size, 4).unwrap())
        .capacity(cap)
        .create()
        .unwrap();
    let (mut p, mut c) = (ch.producer().unwrap(), ch.consumer().unwrap());
    let mut next = 0;
    for _ in 0..6 {
        let runs = p.write_ptrs(3).unwrap();
        assert_eq!(runs[0].1 + runs[1].1, 3);
        let src: Vec<u8> = (0..3).flat_map(|k| pattern(next + k, size)).collect();
        let mut off = 0;
        for (ptr, n) in runs {
            // SAFETY: `n` reserved slots of `size` bytes at `ptr`.
            unsafe { core::ptr::copy_nonoverlapping(src[off..].as_ptr(), ptr, n * size) };
            off += n * size;
        }
        assert!(matches!(
            c.read_ptrs(1),
            Err(shmlane_ring::ChunkError::TooFewSlots(0))
        ));
        p.commit(3).unwrap();
        assert!(matches!(
            p.commit(2),
            Err(shmlane_ring::ChunkError::TooFewSlots(1))
        ));
        let runs = c.read_ptrs(3).unwrap();
        let mut got = Vec::new();
        for (ptr, n) in runs {
            // SAFETY: `n` published slots of `size` bytes at `ptr`, held until the release.
            got.extend_from_slice(unsafe { core::slice::from_raw_parts(ptr, n * size) });
        }
        assert_eq!(got, src);
        c.release(3).unwrap();
        next += 3;
    }
    assert_eq!(p.stats().messages, 18);
}
