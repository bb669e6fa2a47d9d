//! Two hosts simulated on this machine: two bridge processes, each with its own Zenoh session,
//! on 127.0.0.1 ports; local senders and receivers in this test process.

mod common;

use std::time::{Duration, Instant};

use common::{BridgeProc, Chan, check, free_port, message, mixed_len};
use shmlane::{ByteRecvError, Deadline};

#[allow(
    clippy::unnecessary_wraps,
    reason = "passed where the calls take an Option"
)]
fn soon(s: u64) -> Option<Deadline> {
    Some(Deadline::after(Duration::from_secs(s)))
}

/// `block`: 1,000,000 checksummed messages of mixed sizes from a local sender on host A
/// arrive at a local receiver on host B complete, intact and in order; nothing counted lost,
/// duplicated or dropped.
#[test]
fn block_carries_a_million_messages_complete_and_in_order() {
    const N: u64 = 1_000_000;
    let (a, cha) = Chan::bytes("br-1m-a", 1 << 20);
    let (b, chb) = Chan::bytes("br-1m-b", 1 << 20);
    let port = free_port();
    let ep = format!("tcp/127.0.0.1:{port}");
    let key = format!("shmlane-test/{}/1m", std::process::id());
    let ba = BridgeProc::start(
        "A",
        &[
            "--id",
            "A",
            "--listen",
            &ep,
            "--export",
            &format!("{}={key}", a.0),
        ],
    );
    let bb = BridgeProc::start(
        "B",
        &[
            "--id",
            "B",
            "--connect",
            &ep,
            "--import",
            &format!("{key}={}", b.0),
        ],
    );
    let t0 = Instant::now();
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut tx = cha.byte_sender().unwrap();
            let mut m = Vec::new();
            for i in 0..N {
                message(i, mixed_len(i), &mut m);
                tx.send(&m, soon(60)).unwrap();
            }
        });
        let mut rx = chb.byte_receiver().unwrap();
        let mut buf = vec![0u8; rx.max_message()];
        for want in 0..N {
            let n = rx
                .recv(&mut buf, soon(60))
                .unwrap_or_else(|e| panic!("message {want}: {e}"));
            assert_eq!(n, mixed_len(want), "message {want}: length");
            assert_eq!(
                check(&buf[..n]),
                Some(want),
                "message {want}: lost, reordered or torn"
            );
        }
    });
    let took = t0.elapsed();
    let sb = b.wait_stats(Duration::from_secs(2), |s| s.imported == N);
    assert_eq!(
        (
            sb.imported,
            sb.lost,
            sb.duplicates,
            sb.dropped_full,
            sb.looped,
            sb.malformed
        ),
        (N, 0, 0, 0, 0, 0),
        "{sb:?}"
    );
    let (ca, ea) = ba.stop();
    let (cb, eb) = bb.stop();
    assert_eq!((ca, cb), (0, 0), "A: {ea}\nB: {eb}");
    assert!(ea.contains(&format!("exported {N}")), "{ea}");
    eprintln!("1M messages over the bridge in {took:?}");
}

/// `drop` with a slow receiver: the import drops what does not fit and counts it; delivered +
/// counted drops + counted losses = sent, exactly (the heartbeat counts a loss at the end).
#[test]
fn drop_counts_every_message_it_does_not_deliver() {
    const N: u64 = 200_000;
    let (a, cha) = Chan::bytes("br-drop-a", 1 << 20);
    // A small ring on B, read slowly: most of the stream cannot fit.
    let (b, chb) = Chan::bytes("br-drop-b", 8192);
    let port = free_port();
    let ep = format!("tcp/127.0.0.1:{port}");
    let key = format!("shmlane-test/{}/drop", std::process::id());
    let ba = BridgeProc::start(
        "A",
        &[
            "--id",
            "A",
            "--policy",
            "drop",
            "--listen",
            &ep,
            "--export",
            &format!("{}={key}", a.0),
        ],
    );
    let bb = BridgeProc::start(
        "B",
        &[
            "--id",
            "B",
            "--policy",
            "drop",
            "--connect",
            &ep,
            "--import",
            &format!("{key}={}", b.0),
        ],
    );
    // Sent only once B follows A's stream (a heartbeat arrived): what A sends before B
    // subscribes was never B's to count (a late joiner gets the stream from when it joined).
    let s0 = b.wait_stats(Duration::from_secs(20), |s| s.origin != 0);
    assert_ne!(s0.origin, 0, "B never heard A");
    let mut rx = chb.byte_receiver().unwrap();
    let mut got = 0u64;
    let mut last: Option<u64> = None;
    let mut buf = vec![0u8; rx.max_message()];
    let mut drain = |rx: &mut shmlane::ByteReceiver, slow: bool| {
        while let Ok(n) = rx.try_recv(&mut buf) {
            let i = check(&buf[..n]).expect("a torn message");
            assert!(last.is_none_or(|l| i > l), "reordered: {i} after {last:?}");
            last = Some(i);
            got += 1;
            if slow && got % 64 == 0 {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
    };
    std::thread::scope(|s| {
        let sender = s.spawn(|| {
            let mut tx = cha.byte_sender().unwrap();
            let mut m = Vec::new();
            for i in 0..N {
                message(i, 32, &mut m);
                tx.send(&m, soon(60)).unwrap();
            }
        });
        while !sender.is_finished() {
            drain(&mut rx, true);
        }
    });
    // Every message out of A's ring, and accounted for at B (its heartbeats carry A's next
    // number, so a loss at the very end is counted too).
    let sa = a.wait_stats(Duration::from_secs(20), |s| s.exported == N);
    assert_eq!(sa.exported, N, "{sa:?}");
    let t0 = Instant::now();
    let sb = loop {
        drain(&mut rx, false);
        let sb = b.stats().unwrap();
        if sb.imported + sb.dropped_full + sb.lost == N || t0.elapsed() > Duration::from_secs(20) {
            break sb;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    drain(&mut rx, false);
    assert_eq!(sb.imported + sb.dropped_full + sb.lost, N, "{sb:?}");
    assert_eq!(got, sb.imported, "delivered = received");
    assert!(
        sb.dropped_full > 0,
        "the slow receiver should have made drops: {sb:?}"
    );
    assert_eq!((sb.duplicates, sb.malformed), (0, 0));
    eprintln!(
        "drop: sent {N}, delivered {}, dropped {}, lost on the way {}",
        sb.imported, sb.dropped_full, sb.lost
    );
    let _ = (ba.stop(), bb.stop());
}

/// Two bridges exporting and importing the same key both ways: each side receives exactly the
/// other's 100,000 messages, once each; nothing echoes back or loops.
#[test]
fn both_ways_on_one_key_nothing_echoes_or_loops() {
    const N: u64 = 100_000;
    let (ao, cao) = Chan::bytes("br-echo-ao", 1 << 20);
    let (ai, cai) = Chan::bytes("br-echo-ai", 1 << 20);
    let (bo, cbo) = Chan::bytes("br-echo-bo", 1 << 20);
    let (bi, cbi) = Chan::bytes("br-echo-bi", 1 << 20);
    let port = free_port();
    let ep = format!("tcp/127.0.0.1:{port}");
    let key = format!("shmlane-test/{}/both", std::process::id());
    let ba = BridgeProc::start(
        "A",
        &[
            "--id",
            "A",
            "--listen",
            &ep,
            "--export",
            &format!("{}={key}", ao.0),
            "--import",
            &format!("{key}={}", ai.0),
        ],
    );
    let bb = BridgeProc::start(
        "B",
        &[
            "--id",
            "B",
            "--connect",
            &ep,
            "--export",
            &format!("{}={key}", bo.0),
            "--import",
            &format!("{key}={}", bi.0),
        ],
    );
    // Each side's messages carry a side tag in their first byte after the number.
    let send = |ch: &shmlane::Channel<u8>, tag: u8| {
        let mut tx = ch.byte_sender().unwrap();
        let mut m = Vec::new();
        for i in 0..N {
            message(i * 2 + u64::from(tag), 24, &mut m);
            tx.send(&m, soon(60)).unwrap();
        }
    };
    let recv = |ch: &shmlane::Channel<u8>, tag: u8| {
        let mut rx = ch.byte_receiver().unwrap();
        let mut buf = vec![0u8; 256];
        for k in 0..N {
            let n = rx
                .recv(&mut buf, soon(60))
                .unwrap_or_else(|e| panic!("{k}: {e}"));
            let i = check(&buf[..n]).expect("torn");
            assert_eq!(i, k * 2 + u64::from(tag), "side {tag}: message {k}");
        }
        // Then nothing more: no echo of this side's own, no second copy.
        assert_eq!(
            rx.recv(&mut buf, Some(Deadline::after(Duration::from_millis(500)))),
            Err(ByteRecvError::Timeout)
        );
    };
    std::thread::scope(|s| {
        s.spawn(|| send(&cao, 0));
        s.spawn(|| send(&cbo, 1));
        s.spawn(|| recv(&cai, 1));
        recv(&cbi, 0);
    });
    for c in [&ai, &bi] {
        let st = c.stats().unwrap();
        assert_eq!(
            (st.imported, st.duplicates, st.lost),
            (N, 0, 0),
            "{}: {st:?}",
            c.0
        );
    }
    let _ = (ba.stop(), bb.stop());
}

/// Bad input: each a clear error (exit 1, or 2 for a route that cannot be read) or a counted
/// drop, never a panic.
#[test]
fn bad_input_is_a_clear_error_or_a_counted_drop() {
    let run = |args: &[&str]| {
        let mut p = BridgeProc::start("bad", args);
        p.wait_out(Duration::from_secs(20))
    };
    // An unknown channel.
    let (code, err) = run(&["--id", "x", "--export", "shmlane-test-no-such-channel=k/x"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("no channel shmlane-test-no-such-channel: create it first"),
        "{err}"
    );
    // A key Zenoh rejects, and a wildcard on an export.
    let (c, _ch) = Chan::bytes("br-bad", 65536);
    for key in ["k//x", "k/x/"] {
        let (code, err) = run(&["--id", "x", "--export", &format!("{}={key}", c.0)]);
        assert_eq!(code, 1, "{err}");
        assert!(err.contains("key expression"), "{key}: {err}");
    }
    let (code, err) = run(&["--id", "x", "--export", &format!("{}=k/*", c.0)]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("without wildcards"), "{err}");
    // A route without '='.
    let (code, err) = run(&["--id", "x", "--export", &c.0]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("CHANNEL=KEY"), "{err}");
    // One channel in two routes (a loop).
    let (code, err) = run(&[
        "--id",
        "x",
        "--export",
        &format!("{}=k/a", c.0),
        "--import",
        &format!("k/b={}", c.0),
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("two routes"), "{err}");
    // A kind the bridge does not carry: a latest-value channel holds one value, not a stream.
    let l = Chan::new("br-bad-latest");
    let _latest = shmlane::latest::<u64>(&l.0)
        .unlink(shmlane::UnlinkPolicy::Never)
        .create()
        .unwrap();
    let (code, err) = run(&["--id", "x", "--export", &format!("{}=k/s", l.0)]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("holds one value, not a stream"), "{err}");
    // A peer that cannot be reached, with a connect timeout: an error within it.
    let port = free_port();
    let t0 = Instant::now();
    let (code, err) = run(&[
        "--id",
        "x",
        "--connect",
        &format!("tcp/127.0.0.1:{port}"),
        "--connect-timeout",
        "1",
        "--export",
        &format!("{}=k/x", c.0),
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("could not open the zenoh session"), "{err}");
    assert!(t0.elapsed() < Duration::from_secs(15), "{:?}", t0.elapsed());
    // An address that cannot be listened on.
    let (code, err) = run(&[
        "--id",
        "x",
        "--listen",
        "tcp/203.0.113.1:1",
        "--export",
        &format!("{}=k/x", c.0),
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("could not open the zenoh session"), "{err}");
}

/// A message larger than the importing channel takes is dropped and counted; the stream goes
/// on.
#[test]
fn a_message_too_large_for_the_importing_channel_is_a_counted_drop() {
    let (a, cha) = Chan::bytes("br-big-a", 1 << 20);
    let (b, chb) = Chan::broadcast("br-big-b", 64, 64);
    let port = free_port();
    let ep = format!("tcp/127.0.0.1:{port}");
    let key = format!("shmlane-test/{}/big", std::process::id());
    let ba = BridgeProc::start(
        "A",
        &[
            "--id",
            "A",
            "--listen",
            &ep,
            "--export",
            &format!("{}={key}", a.0),
        ],
    );
    let bb = BridgeProc::start(
        "B",
        &[
            "--id",
            "B",
            "--connect",
            &ep,
            "--import",
            &format!("{key}={}", b.0),
        ],
    );
    let mut sub = chb.subscriber().unwrap();
    let mut tx = cha.byte_sender().unwrap();
    tx.send(&[1u8; 64], soon(10)).unwrap();
    tx.send(&[2u8; 65], soon(10)).unwrap();
    tx.send(&[3u8; 10], soon(10)).unwrap();
    let mut buf = [0u8; 64];
    let n = sub.recv(&mut buf, soon(20)).unwrap();
    assert_eq!(&buf[..n], &[1u8; 64]);
    let n = sub.recv(&mut buf, soon(20)).unwrap();
    assert_eq!(&buf[..n], &[3u8; 10]);
    let st = b.stats().unwrap();
    assert_eq!(
        (st.imported, st.dropped_too_large, st.lost),
        (2, 1, 0),
        "{st:?}"
    );
    let _ = (ba.stop(), bb.stop());
}

/// The command: `shmlane bridge` runs the bridge, `shmlane ls` shows which channels a running
/// bridge serves, `shmlane stat` its counters (also once it stopped).
#[test]
fn the_shmlane_command_runs_shows_and_counts_the_bridge() {
    let shmlane = common::shmlane_cmd();
    let (a, cha) = Chan::bytes("br-cli-a", 1 << 16);
    let (b, chb) = Chan::bytes("br-cli-b", 1 << 16);
    let ep = format!("tcp/127.0.0.1:{}", free_port());
    let key = format!("shmlane-test/{}/cli", std::process::id());
    // Killed on drop (a failed assertion leaves no bridge running).
    let spawn = |args: &[&str]| BridgeProc {
        child: std::process::Command::new(&shmlane)
            .arg("bridge")
            .args(args)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
        name: "shmlane bridge",
    };
    let pa = spawn(&[
        "--id",
        "A",
        "--listen",
        &ep,
        "--export",
        &format!("{}={key}", a.0),
    ]);
    let pb = spawn(&[
        "--id",
        "B",
        "--connect",
        &ep,
        "--import",
        &format!("{key}={}", b.0),
    ]);
    let mut tx = cha.byte_sender().unwrap();
    let mut rx = chb.byte_receiver().unwrap();
    let mut buf = [0u8; 64];
    for i in 0..100u8 {
        tx.send(&[i; 8], soon(20)).unwrap();
    }
    for i in 0..100u8 {
        let n = rx.recv(&mut buf, soon(20)).unwrap();
        assert_eq!(&buf[..n], &[i; 8]);
    }
    b.wait_stats(Duration::from_secs(5), |s| s.imported == 100);
    let out = |args: &[&str]| {
        let o = std::process::Command::new(&shmlane)
            .args(args)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    };
    let ls = out(&["ls"]);
    for (c, p) in [(&a.0, &pa), (&b.0, &pb)] {
        let line = ls
            .lines()
            .find(|l| l.starts_with(&format!("{c} ")))
            .unwrap();
        assert!(line.contains(&format!("bridge:{}", p.child.id())), "{line}");
    }
    let js: serde_json::Value = serde_json::from_str(&out(&["ls", "--json"])).unwrap();
    let row = js
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == b.0.as_str())
        .unwrap();
    assert_eq!(row["bridged_by"], u64::from(pb.child.id()));
    let st = out(&["stat", &b.0]);
    assert!(st.contains("bridge    running"), "{st}");
    assert!(st.contains("imported 100, lost 0, duplicates 0"), "{st}");
    for mut p in [pa, pb] {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(p.child.id() as i32, libc::SIGINT) };
        assert!(p.child.wait().unwrap().success());
    }
    let st = out(&["stat", &a.0]);
    assert!(st.contains("bridge    not running"), "{st}");
    assert!(st.contains("exported 100, lapped 0"), "{st}");
}

/// Ctrl-C stops a bridge whose import waits for room in a full channel (`block`, nobody
/// reading): within a bounded time, exit 0, the message it held (and any Zenoh delivers while
/// it stops) counted as dropped, in the counters it prints.
#[test]
fn ctrl_c_stops_a_bridge_blocked_on_a_full_channel() {
    let (a, cha) = Chan::bytes("br-stop-a", 1 << 20);
    let (b, _chb) = Chan::bytes("br-stop-b", 4096);
    let ep = format!("tcp/127.0.0.1:{}", free_port());
    let key = format!("shmlane-test/{}/stop", std::process::id());
    let ba = BridgeProc::start(
        "A",
        &[
            "--id",
            "A",
            "--listen",
            &ep,
            "--export",
            &format!("{}={key}", a.0),
        ],
    );
    let bb = BridgeProc::start(
        "B",
        &[
            "--id",
            "B",
            "--connect",
            &ep,
            "--import",
            &format!("{key}={}", b.0),
        ],
    );
    let mut tx = cha.byte_sender().unwrap();
    for i in 0..1000u32 {
        tx.send(&[i as u8; 64], soon(20)).unwrap();
    }
    // B's channel is full and stays so: its import waits.
    let s = b.wait_stats(Duration::from_secs(20), |s| s.imported > 0);
    assert!(s.imported > 0 && s.imported < 1000, "{s:?}");
    std::thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    let (code, err) = bb.stop();
    let took = t0.elapsed();
    assert_eq!(code, 0, "{err}");
    assert!(took < Duration::from_secs(3), "B took {took:?} to stop");
    // The message it held, and whatever Zenoh still delivered while it stopped: dropped and
    // counted, never silently.
    let st = b.stats().unwrap();
    assert!(st.dropped_full >= 1, "{st:?}");
    assert!(st.imported + st.dropped_full <= 1000, "{st:?}");
    assert!(
        err.contains(&format!("dropped (full) {},", st.dropped_full)),
        "{err}"
    );
    let t0 = Instant::now();
    let (code, err) = ba.stop();
    assert_eq!(code, 0, "{err}");
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "A took {:?}",
        t0.elapsed()
    );
}

/// Fixed-size channels: an SPSC channel of a `#[repr(C)]` struct exported, an MPMC channel of
/// the same type imported (opened by the bridge with the element layout and type name its
/// segment records); every element intact and in order; a message of another size (from a
/// byte channel on the same key) is a counted drop, never a torn element.
#[test]
fn fixed_size_channels_carry_whole_elements() {
    #[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
    #[repr(C)]
    struct Quote {
        seq: u64,
        px: f64,
        qty: u32,
        side: u32,
    }
    const N: u64 = 100_000;
    let a = Chan::new("br-fix-a");
    let b = Chan::new("br-fix-b");
    let cha = shmlane::spsc::<Quote>(&a.0)
        .capacity(4096)
        .type_name("Quote")
        .unlink(shmlane::UnlinkPolicy::Never)
        .create()
        .unwrap();
    let chb = shmlane::mpmc::<Quote>(&b.0)
        .capacity(4096)
        .type_name("Quote")
        .unlink(shmlane::UnlinkPolicy::Never)
        .create()
        .unwrap();
    let (odd, cho) = Chan::bytes("br-fix-odd", 1 << 16);
    let ep = format!("tcp/127.0.0.1:{}", free_port());
    let key = format!("shmlane-test/{}/fixed", std::process::id());
    let ba = BridgeProc::start(
        "A",
        &[
            "--id",
            "A",
            "--listen",
            &ep,
            "--export",
            &format!("{}={key}", a.0),
            "--export",
            &format!("{}={key}", odd.0),
        ],
    );
    let bb = BridgeProc::start(
        "B",
        &[
            "--id",
            "B",
            "--connect",
            &ep,
            "--import",
            &format!("{key}={}", b.0),
        ],
    );
    let q = |i: u64| Quote {
        seq: i,
        px: f64::from(i as u32) * 0.25,
        qty: (i % 1000) as u32,
        side: (i % 2) as u32,
    };
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut tx = cha.producer().unwrap();
            for i in 0..N {
                tx.send(q(i), soon(60)).unwrap();
            }
            // A 10-byte message on the same key: not a Quote.
            cho.byte_sender()
                .unwrap()
                .send(&[7u8; 10], soon(10))
                .unwrap();
        });
        let mut rx = chb.receiver().unwrap();
        for i in 0..N {
            assert_eq!(rx.recv(soon(60)).unwrap(), q(i), "element {i}");
        }
    });
    let st = b.wait_stats(Duration::from_secs(10), |s| s.dropped_too_large == 1);
    assert_eq!(
        (st.imported, st.dropped_too_large, st.lost),
        (N, 1, 0),
        "{st:?}"
    );
    let _ = (ba.stop(), bb.stop());
}

/// `block`: the importing bridge dies; the exporting one takes nothing more from its byte
/// channel until a subscriber matches again (docs/bridge.md, "When a host or the network
/// fails"), so the messages sent meanwhile wait in the ring and arrive once the importer is
/// back: nothing lost.
#[test]
fn a_block_export_waits_again_when_its_importer_dies() {
    let (a, cha) = Chan::bytes("br-rematch-a", 1 << 16);
    let (b, chb) = Chan::bytes("br-rematch-b", 1 << 16);
    let ep = format!("tcp/127.0.0.1:{}", free_port());
    let key = format!("shmlane-test/{}/rematch", std::process::id());
    let export = format!("{}={key}", a.0);
    let import = format!("{key}={}", b.0);
    let b_args = ["--id", "B", "--connect", &ep, "--import", &import];
    let ba = BridgeProc::start("A", &["--id", "A", "--listen", &ep, "--export", &export]);
    let bb = BridgeProc::start("B", &b_args);
    let mut tx = cha.byte_sender().unwrap();
    let mut rx = chb.byte_receiver().unwrap();
    let mut m = Vec::new();
    let mut buf = [0u8; 64];
    let mut recv = |rx: &mut shmlane::ByteReceiver, want: u64| loop {
        match rx.recv(&mut buf, soon(20)) {
            Ok(n) => break assert_eq!(check(&buf[..n]), Some(want)),
            // The importing bridge (this channel's sender) was killed: it comes back.
            Err(ByteRecvError::PeerDied) => {}
            Err(e) => panic!("message {want}: {e}"),
        }
    };
    for i in 0..10 {
        message(i, 20, &mut m);
        tx.send(&m, soon(10)).unwrap();
    }
    for i in 0..10 {
        recv(&mut rx, i);
    }
    bb.kill();
    // A's session hears B's go (its TCP connection closed).
    std::thread::sleep(Duration::from_secs(1));
    for i in 10..20 {
        message(i, 20, &mut m);
        tx.send(&m, soon(10)).unwrap();
    }
    std::thread::sleep(Duration::from_secs(1));
    let sa = a.stats().unwrap();
    assert_eq!(
        sa.exported, 10,
        "A took messages while no one subscribed: {sa:?}"
    );
    let bb = BridgeProc::start("B", &b_args);
    for i in 10..20 {
        recv(&mut rx, i);
    }
    let sb = b.wait_stats(Duration::from_secs(5), |s| s.imported == 20);
    assert_eq!((sb.imported, sb.lost, sb.duplicates), (20, 0, 0), "{sb:?}");
    let (ca, ea) = ba.stop();
    let (cb, eb) = bb.stop();
    assert_eq!((ca, cb), (0, 0), "A: {ea}\nB: {eb}");
}

/// The counters read after `Bridge::stop` (what the command prints on Ctrl-C) are the final
/// ones: a peer still publishing while the bridge stops changes nothing after them.
#[test]
fn the_counters_read_after_stop_are_the_final_ones() {
    use shmlane_bridge::header::{self, Header};
    use std::sync::atomic::{AtomicBool, Ordering};
    use zenoh::Wait;
    let (b, _chb) = Chan::bytes("br-final-b", 4096);
    let ep = format!("tcp/127.0.0.1:{}", free_port());
    let key = format!("shmlane-test/{}/final", std::process::id());
    let mut cfg = shmlane_bridge::Config::new("B");
    cfg.listen.push(ep.clone());
    cfg.routes.push(shmlane_bridge::Route::import(
        &key,
        &b.0,
        shmlane_bridge::Policy::Block,
    ));
    let bridge = shmlane_bridge::Bridge::open(cfg).unwrap();
    // Another host's exporter, as a bare Zenoh peer publishing numbered messages.
    let mut zc = zenoh::Config::default();
    for (k, v) in [
        ("mode", "\"peer\"".to_owned()),
        ("connect/endpoints", format!("[{ep:?}]")),
        ("listen/endpoints", "[]".to_owned()),
        ("scouting/multicast/enabled", "false".to_owned()),
    ] {
        zc.insert_json5(k, &v).unwrap();
    }
    let peer = zenoh::open(zc).wait().unwrap();
    let publisher = peer.declare_publisher(key.clone()).wait().unwrap();
    let done = AtomicBool::new(false);
    let (s0, shown, last) = std::thread::scope(|s| {
        s.spawn(|| {
            let mut p = vec![7u8; header::LEN + 64];
            let mut seq = 0;
            while !done.load(Ordering::Relaxed) {
                Header {
                    origin: 42,
                    epoch: 1,
                    seq,
                    heartbeat: false,
                }
                .write(&mut p);
                publisher.put(p.clone()).wait().unwrap();
                seq += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        // B's channel fills (nobody reads it): its import waits.
        let s0 = b.wait_stats(Duration::from_secs(20), |s| s.imported > 0);
        std::thread::sleep(Duration::from_millis(300));
        bridge.stop();
        let shown = bridge.stats()[0].1;
        // The peer goes on publishing a while.
        std::thread::sleep(Duration::from_millis(500));
        let last = b.stats().unwrap_or_default();
        done.store(true, Ordering::Relaxed);
        (s0, shown, last)
    });
    assert!(s0.imported > 0, "{s0:?}");
    assert!(shown.dropped_full >= 1, "{shown:?}");
    assert_eq!(
        (
            last.imported,
            last.dropped_full,
            last.lost,
            last.import_next
        ),
        (
            shown.imported,
            shown.dropped_full,
            shown.lost,
            shown.import_next
        ),
        "counted after the stop: read {shown:?}, final {last:?}"
    );
    bridge.close().unwrap();
    peer.close().wait().unwrap();
}

/// A bridge dropped without `close` (the command returning on an error) while an import waits
/// for room in a full channel: the drop makes the import give up, and returns soon.
#[test]
fn a_bridge_dropped_while_an_import_waits_returns_soon() {
    use shmlane_bridge::header::{self, Header};
    use std::sync::atomic::{AtomicBool, Ordering};
    use zenoh::Wait;
    let (b, _chb) = Chan::bytes("br-scratch-b", 4096);
    let ep = format!("tcp/127.0.0.1:{}", free_port());
    let key = format!("shmlane-test/{}/scratch", std::process::id());
    let mut cfg = shmlane_bridge::Config::new("B");
    cfg.listen.push(ep.clone());
    cfg.routes.push(shmlane_bridge::Route::import(
        &key,
        &b.0,
        shmlane_bridge::Policy::Block,
    ));
    let bridge = shmlane_bridge::Bridge::open(cfg).unwrap();
    // Another host's exporter, as a bare Zenoh peer publishing numbered messages.
    let mut zc = zenoh::Config::default();
    for (k, v) in [
        ("mode", "\"peer\"".to_owned()),
        ("connect/endpoints", format!("[{ep:?}]")),
        ("listen/endpoints", "[]".to_owned()),
        ("scouting/multicast/enabled", "false".to_owned()),
    ] {
        zc.insert_json5(k, &v).unwrap();
    }
    let peer = zenoh::open(zc).wait().unwrap();
    let publisher = peer.declare_publisher(key.clone()).wait().unwrap();
    let done = AtomicBool::new(false);
    let (s0, dropped, took) = std::thread::scope(|s| {
        s.spawn(|| {
            let mut p = vec![7u8; header::LEN + 64];
            let mut seq = 0;
            while !done.load(Ordering::Relaxed) {
                Header {
                    origin: 42,
                    epoch: 1,
                    seq,
                    heartbeat: false,
                }
                .write(&mut p);
                publisher.put(p.clone()).wait().unwrap();
                seq += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        // B's channel fills (nobody reads it): its import waits.
        let s0 = b.wait_stats(Duration::from_secs(20), |s| s.imported > 0);
        std::thread::sleep(Duration::from_millis(300));
        let t0 = Instant::now();
        let (dtx, drx) = std::sync::mpsc::channel();
        let bridge = bridge;
        s.spawn(move || {
            drop(bridge);
            let _ = dtx.send(());
        });
        let r = drx.recv_timeout(Duration::from_secs(10));
        let took = t0.elapsed();
        done.store(true, Ordering::Relaxed);
        (s0, r, took)
    });
    assert!(s0.imported > 0, "{s0:?}");
    assert!(
        dropped.is_ok() && took < Duration::from_secs(3),
        "the drop took {took:?}"
    );
    peer.close().wait().unwrap();
}
