//! The bridge against Zenoh itself, between the same two processes, in one run (docs/benchmarks.md,
//! "Bridge"): round trips of 8- and 64-byte messages (shm → bridge → Zenoh → bridge → shm and
//! back, beside a Zenoh publisher/subscriber ping-pong over another session of the same two
//! processes), then streaming 64-byte messages each way. Rounds interleave the two paths;
//! ratios are taken within a round.
//!
//! `cargo run --release -p shmlane-bridge --example bridge_bench [-- ROUNDS]`
//!
//! Process A (this one) runs a bridge exporting `ping` and importing `pong`, and a Zenoh
//! session publishing `zping` and subscribing `zpong`; process B (a child) the mirror image.
//! Like for like, each path's peer is an application thread: in B one thread answers pings (and
//! counts streams) on its local channels, another does the same on a Zenoh subscriber's queue
//! (`recv`, as a Zenoh application reads). A third path, Zenoh answering inside B's subscriber
//! callback (one thread hand-off fewer than any application thread can have), is measured as
//! well, as the fastest Zenoh round trip. Both bridges and the direct sessions use blocking
//! congestion control and Zenoh's default batching.

#![allow(
    clippy::similar_names,
    clippy::unnecessary_wraps,
    clippy::cast_precision_loss,
    clippy::too_many_lines,
    clippy::collapsible_match,
    reason = "a benchmark: ping/pong names, deadlines passed as the calls take them"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use shmlane::{ByteReceiver, ByteSender, Deadline, UnlinkPolicy};
use shmlane_bridge::{Bridge, Config, Policy, Route};
use zenoh::Wait;
use zenoh::qos::CongestionControl;

const RTT_N: u64 = 2000;
const STREAM_N: u64 = 200_000;
/// Bytes in each shm channel, and samples in each Zenoh subscriber queue: about as many
/// 64-byte messages as a channel of this size holds (each behind an 8-byte record header,
/// rounded to 8), so neither path's receiver has the deeper buffer.
const CHANNEL_BYTES: u64 = 1 << 20;
const QUEUE: usize = (CHANNEL_BYTES / 72) as usize;

/// Message tags (first byte).
const PING: u8 = b'P';
const STREAM: u8 = b'S';
const REVERSE: u8 = b'R';
const DONE: u8 = b'D';

/// SHMLANE_BRIDGE_EXPRESS=1: both paths publish in Zenoh's express mode (no batching).
fn express() -> bool {
    std::env::var_os("SHMLANE_BRIDGE_EXPRESS").is_some()
}

fn soon() -> Option<Deadline> {
    Some(Deadline::after(Duration::from_secs(30)))
}

fn bytes_chan(name: &str) -> shmlane::Channel<u8> {
    shmlane::bytes(name)
        .capacity(CHANNEL_BYTES)
        .unlink(UnlinkPolicy::Never)
        .open_or_create()
        .expect("channel")
}

/// A stream message: tag, index, total, padded to 64 bytes.
fn stream_msg(tag: u8, i: u64, total: u64) -> [u8; 64] {
    let mut m = [0u8; 64];
    m[0] = tag;
    m[8..16].copy_from_slice(&i.to_le_bytes());
    m[16..24].copy_from_slice(&total.to_le_bytes());
    m
}

fn total_of(m: &[u8]) -> u64 {
    u64::from_le_bytes(m[16..24].try_into().unwrap())
}

fn session(listen: Option<&str>, connect: Option<&str>) -> zenoh::Session {
    let mut c = zenoh::Config::default();
    c.insert_json5("scouting/multicast/enabled", "false")
        .unwrap();
    if let Some(l) = listen {
        c.insert_json5("listen/endpoints", &format!("[\"{l}\"]"))
            .unwrap();
    }
    if let Some(e) = connect {
        c.insert_json5("connect/endpoints", &format!("[\"{e}\"]"))
            .unwrap();
    }
    zenoh::open(c).wait().expect("zenoh session")
}

fn bridge(id: &str, listen: Option<&str>, connect: Option<&str>, routes: Vec<Route>) -> Bridge {
    let mut cfg = Config::new(id);
    cfg.listen.extend(listen.map(str::to_owned));
    cfg.connect.extend(connect.map(str::to_owned));
    cfg.routes = routes;
    // SHMLANE_BRIDGE_EXPRESS=1: the bridges publish in Zenoh's express mode (no batching).
    cfg.express = express();
    // SHMLANE_BRIDGE_SPINS: the export loop's spins before it parks (default 64).
    if let Some(n) = std::env::var("SHMLANE_BRIDGE_SPINS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        cfg.spins = n;
    }
    Bridge::open(cfg).expect("bridge")
}

/// Process B: answers pings, counts streams, streams back on request; on both paths.
fn peer(names: &[String], zport: u16, bport: u16) {
    let (bping, bpong) = (&names[2], &names[3]);
    let stop = Arc::new(AtomicBool::new(false));
    let z = session(None, Some(&format!("tcp/127.0.0.1:{zport}")));
    let zpong = z
        .declare_publisher("shmlane-bench/zpong")
        .congestion_control(CongestionControl::Block)
        .express(express())
        .wait()
        .unwrap();
    let zpong = Arc::new(zpong);
    let zp = zpong.clone();
    // The fastest Zenoh round trip: answered inside the subscriber callback.
    let zcb = z
        .declare_subscriber("shmlane-bench/zpingcb")
        .callback(move |s| zp.put(s.payload().to_bytes().into_owned()).wait().unwrap())
        .wait()
        .unwrap();
    // Like for like with the bridged path: an application thread reads the subscriber's queue.
    let zsub = z
        .declare_subscriber("shmlane-bench/zping")
        .with(zenoh::handlers::FifoChannel::new(QUEUE))
        .wait()
        .unwrap();
    let zp = zpong.clone();
    let zapp = std::thread::spawn(move || {
        let mut count = 0u64;
        while let Ok(s) = zsub.recv() {
            let m = s.payload().to_bytes();
            match m[0] {
                PING => zp.put(m.into_owned()).wait().unwrap(),
                STREAM => {
                    count += 1;
                    if count == total_of(&m) {
                        count = 0;
                        zp.put(vec![DONE]).wait().unwrap();
                    }
                }
                REVERSE => {
                    let total = total_of(&m);
                    for i in 0..total {
                        zp.put(stream_msg(STREAM, i, total).to_vec())
                            .wait()
                            .unwrap();
                    }
                }
                _ => {}
            }
        }
    });
    let mut b = bridge(
        "bench-b",
        None,
        Some(&format!("tcp/127.0.0.1:{bport}")),
        vec![
            Route::import("shmlane-bench/bping", bping, Policy::Block),
            Route::export(bpong, "shmlane-bench/bpong", Policy::Block),
        ],
    );
    let (cping, cpong) = (bytes_chan(bping), bytes_chan(bpong));
    let s2 = stop.clone();
    let app = std::thread::spawn(move || {
        let mut rx: ByteReceiver = cping.byte_receiver().unwrap();
        let mut tx: ByteSender = cpong.byte_sender().unwrap();
        let mut buf = [0u8; 256];
        let mut count = 0u64;
        // ORDERING: Relaxed; a flag only.
        while !s2.load(Ordering::Relaxed) {
            let Ok(n) = rx.recv(&mut buf, Some(Deadline::after(Duration::from_millis(100)))) else {
                continue;
            };
            match buf[0] {
                PING => tx.send(&buf[..n], soon()).unwrap(),
                STREAM => {
                    count += 1;
                    if count == total_of(&buf[..n]) {
                        count = 0;
                        tx.send(&[DONE], soon()).unwrap();
                    }
                }
                REVERSE => {
                    let total = total_of(&buf[..n]);
                    for i in 0..total {
                        tx.send(&stream_msg(STREAM, i, total), soon()).unwrap();
                    }
                }
                _ => {}
            }
        }
    });
    // Until the parent closes our stdin.
    let s3 = stop.clone();
    std::thread::spawn(move || {
        let mut sink = [0u8; 1];
        let _ = std::io::Read::read(&mut std::io::stdin(), &mut sink);
        s3.store(true, Ordering::Relaxed);
    });
    b.run(&stop).unwrap();
    app.join().unwrap();
    b.close().unwrap();
    // The subscriber's queue ends when the session closes.
    drop(zcb);
    z.close().wait().unwrap();
    zapp.join().unwrap();
}

/// The three round-trip paths.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Path {
    /// shm → bridge → Zenoh → bridge → shm, to an application thread and back.
    Bridge,
    /// Zenoh publisher → subscriber queue read by an application thread, and back.
    Zenoh,
    /// Zenoh publisher → B's subscriber callback, which answers.
    ZenohCallback,
}

struct Sides {
    zpub: zenoh::pubsub::Publisher<'static>,
    zpubcb: zenoh::pubsub::Publisher<'static>,
    zsub: zenoh::pubsub::Subscriber<zenoh::handlers::FifoChannelHandler<zenoh::sample::Sample>>,
    tx: ByteSender,
    rx: ByteReceiver,
}

fn rtt(s: &mut Sides, path: Path, size: usize) -> Histogram<u64> {
    let mut h = Histogram::<u64>::new(3).unwrap();
    let mut msg = vec![0u8; size];
    msg[0] = PING;
    let mut buf = [0u8; 256];
    for i in 0..RTT_N + 200 {
        msg[1..].iter_mut().for_each(|b| *b = i as u8);
        let t = Instant::now();
        if path == Path::Bridge {
            s.tx.send(&msg, soon()).unwrap();
            let n = s.rx.recv(&mut buf, soon()).unwrap();
            assert_eq!(&buf[..n], &msg[..]);
        } else {
            let p = if path == Path::Zenoh {
                &s.zpub
            } else {
                &s.zpubcb
            };
            p.put(msg.clone()).wait().unwrap();
            let r = s.zsub.recv().unwrap();
            assert_eq!(&*r.payload().to_bytes(), &msg[..]);
        }
        // The first 200: warm-up.
        if i >= 200 {
            h.record(t.elapsed().as_nanos() as u64).unwrap();
        }
    }
    h
}

/// Messages per second of a 64-byte stream, A to B (`reverse`: B to A).
fn stream(s: &mut Sides, bridged: bool, reverse: bool) -> f64 {
    let mut buf = [0u8; 256];
    let t = Instant::now();
    if reverse {
        let req = stream_msg(REVERSE, 0, STREAM_N);
        let mut got = 0;
        if bridged {
            s.tx.send(&req, soon()).unwrap();
            while got < STREAM_N {
                s.rx.recv(&mut buf, soon()).unwrap();
                got += 1;
            }
        } else {
            s.zpub.put(req.to_vec()).wait().unwrap();
            while got < STREAM_N {
                s.zsub.recv().unwrap();
                got += 1;
            }
        }
    } else {
        for i in 0..STREAM_N {
            let m = stream_msg(STREAM, i, STREAM_N);
            if bridged {
                s.tx.send(&m, soon()).unwrap();
            } else {
                s.zpub.put(m.to_vec()).wait().unwrap();
            }
        }
        if bridged {
            let n = s.rx.recv(&mut buf, soon()).unwrap();
            assert_eq!(&buf[..n], &[DONE]);
        } else {
            assert_eq!(&*s.zsub.recv().unwrap().payload().to_bytes(), &[DONE]);
        }
    }
    STREAM_N as f64 / t.elapsed().as_secs_f64()
}

/// The median (the mean of the two middle values of an even count).
fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        f64::midpoint(v[n / 2 - 1], v[n / 2])
    }
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("peer") {
        let names: Vec<String> = args[4..8].to_vec();
        peer(&names, args[2].parse().unwrap(), args[3].parse().unwrap());
        return;
    }
    let rounds: usize = args.get(1).and_then(|r| r.parse().ok()).unwrap_or(5);
    let pid = std::process::id();
    let names: Vec<String> = ["aping", "apong", "bping", "bpong"]
        .iter()
        .map(|n| format!("shmlane-bench-{pid}-{n}"))
        .collect();
    let chans: Vec<_> = names.iter().map(|n| bytes_chan(n)).collect();
    let port = |()| {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let (zport, bport) = (port(()), port(()));
    let z = session(Some(&format!("tcp/127.0.0.1:{zport}")), None);
    let zpub = z
        .declare_publisher("shmlane-bench/zping")
        .congestion_control(CongestionControl::Block)
        .express(express())
        .wait()
        .unwrap();
    let zpubcb = z
        .declare_publisher("shmlane-bench/zpingcb")
        .congestion_control(CongestionControl::Block)
        .express(express())
        .wait()
        .unwrap();
    let zsub = z
        .declare_subscriber("shmlane-bench/zpong")
        .with(zenoh::handlers::FifoChannel::new(QUEUE))
        .wait()
        .unwrap();
    let mut b = bridge(
        "bench-a",
        Some(&format!("tcp/127.0.0.1:{bport}")),
        None,
        vec![
            Route::export(&names[0], "shmlane-bench/bping", Policy::Block),
            Route::import("shmlane-bench/bpong", &names[1], Policy::Block),
        ],
    );
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["peer", &zport.to_string(), &bport.to_string()])
        .args(&names)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stop = AtomicBool::new(false);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    std::thread::scope(|sc| {
        sc.spawn(|| b.run(&stop).unwrap());
        let mut s = Sides {
            zpub,
            zpubcb,
            zsub,
            tx: chans[0].byte_sender().unwrap(),
            rx: chans[1].byte_receiver().unwrap(),
        };
        // Both paths answer before anything is measured.
        std::thread::sleep(Duration::from_secs(1));
        for p in [Path::Zenoh, Path::ZenohCallback, Path::Bridge] {
            let _ = rtt(&mut s, p, 8);
        }
        println!("CPU: {cpu}; {rounds} rounds of {RTT_N} round trips per path and size");
        println!(
            "| round | size | zenoh p50 | bridge p50 | bridge/zenoh p50 | zenoh-callback p50 | bridge/callback p50 | zenoh p99 | bridge p99 | zenoh p99.9 | bridge p99.9 |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|---|");
        let (mut ratios, mut cb_ratios) = (Vec::new(), Vec::new());
        for r in 0..rounds {
            for size in [8usize, 64] {
                // The order rotates with the round: none always runs first.
                let mut order = [Path::Zenoh, Path::ZenohCallback, Path::Bridge];
                order.rotate_left(r % 3);
                let mut hs: Vec<(Path, Histogram<u64>)> =
                    order.iter().map(|&p| (p, rtt(&mut s, p, size))).collect();
                hs.sort_by_key(|(p, _)| *p as u8);
                let [(_, hb), (_, hz), (_, hc)] = &hs[..] else {
                    unreachable!("three paths")
                };
                let p50 = |h: &Histogram<u64>| h.value_at_quantile(0.5) as f64;
                let ratio = p50(hb) / p50(hz);
                let cb_ratio = p50(hb) / p50(hc);
                ratios.push(ratio);
                cb_ratios.push(cb_ratio);
                println!(
                    "| {r} | {size} B | {:.1} µs | {:.1} µs | {ratio:.2} | {:.1} µs | {cb_ratio:.2} | {:.1} | {:.1} | {:.1} | {:.1} |",
                    us(hz.value_at_quantile(0.5)),
                    us(hb.value_at_quantile(0.5)),
                    us(hc.value_at_quantile(0.5)),
                    us(hz.value_at_quantile(0.99)),
                    us(hb.value_at_quantile(0.99)),
                    us(hz.value_at_quantile(0.999)),
                    us(hb.value_at_quantile(0.999)),
                );
            }
        }
        println!(
            "round trip (p50), median over rounds: bridge/zenoh {:.3}, bridge/zenoh-callback {:.3}",
            median(&mut ratios),
            median(&mut cb_ratios)
        );
        println!("| round | direction | zenoh msg/s | bridge msg/s | ratio |");
        println!("|---|---|---|---|---|");
        for r in 0..rounds.min(4) {
            for (reverse, dir) in [(false, "A→B"), (true, "B→A")] {
                // Which path goes first alternates with the round.
                let (z, br) = if r % 2 == 0 {
                    let z = stream(&mut s, false, reverse);
                    (z, stream(&mut s, true, reverse))
                } else {
                    let br = stream(&mut s, true, reverse);
                    (stream(&mut s, false, reverse), br)
                };
                println!(
                    "| {r} | {dir} 64 B | {:.0} | {:.0} | {:.2} |",
                    z,
                    br,
                    br / z
                );
            }
        }
        stop.store(true, Ordering::Relaxed);
    });
    drop(child.stdin.take());
    let _ = child.wait();
    b.close().unwrap();
    for n in &names {
        for n in [n.clone(), shmlane::bridge_stats::companion_name(n)] {
            let _ = std::fs::remove_file(format!("/dev/shm/{n}"));
        }
    }
}
