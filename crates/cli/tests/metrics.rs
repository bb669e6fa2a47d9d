//! `shmlane metrics` (printed and served over HTTP) and `shmlane stat --json` of every segment:
//! the Prometheus text parses with a real parser (the `prometheus-parse` crate) and its values
//! are the channels' real counts, for every kind.

#![allow(
    clippy::float_cmp,
    reason = "Prometheus values are f64; these hold small integers, exact in f64"
)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use shmlane::{Deadline, UnlinkPolicy};
use shmlane_testkit::{Cleanup, unique};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_shmlane"))
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().unwrap()
}

/// Parsed samples: (metric, channel, the other labels sorted) → value.
type Samples = HashMap<(String, String, String), f64>;

/// Parses the text with `prometheus-parse` (panicking on text it rejects) and checks every
/// family has HELP and TYPE.
fn parse(text: &str) -> Samples {
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("the Prometheus text parses");
    let mut out = HashMap::new();
    for s in &scrape.samples {
        assert!(
            scrape.docs.contains_key(&s.metric),
            "{} has no HELP line",
            s.metric
        );
        let value = match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            ref other => panic!("{}: unexpected value {other:?}", s.metric),
        };
        let channel = s.labels.get("channel").expect("a channel label").to_owned();
        let mut rest: Vec<String> = s
            .labels
            .iter()
            .filter(|(k, _)| *k != "channel")
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        rest.sort();
        let key = (s.metric.clone(), channel, rest.join(","));
        assert!(out.insert(key.clone(), value).is_none(), "{key:?} twice");
    }
    // The types the text declared are the ones parsed (counters end in _total, or are the
    // latest version).
    for (name, kind) in text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ").and_then(|r| r.split_once(' ')))
    {
        assert!(
            kind == "gauge"
                || (kind == "counter"
                    && (name.ends_with("_total") || name == "shmlane_latest_version")),
            "{name} {kind}"
        );
    }
    out
}

fn get(s: &Samples, metric: &str, channel: &str, labels: &str) -> f64 {
    *s.get(&(metric.to_owned(), channel.to_owned(), labels.to_owned()))
        .unwrap_or_else(|| panic!("no sample {metric}{{channel={channel},{labels}}}"))
}

/// Channels of every kind with known counts: (names, the endpoints keeping them attached).
struct Fixture {
    spsc: String,
    mpmc: String,
    bytes: String,
    bcast: String,
    latest: String,
    keep: Vec<Box<dyn std::any::Any>>,
    _clean: Vec<Cleanup>,
}

/// Channels named after `tag` (one fixture per test). Counts are multiples of 64: an endpoint
/// adds its counts to the channel's every 64 messages (and when it leaves).
fn fixture(tag: &str) -> Fixture {
    let names: Vec<String> = ["spsc", "mpmc", "bytes", "bcast", "latest"]
        .iter()
        .map(|k| unique(&format!("metrics-{tag}-{k}")))
        .collect();
    let mut keep: Vec<Box<dyn std::any::Any>> = Vec::new();
    // spsc: 640 sent, 256 received, 384 queued.
    let ch = shmlane::spsc::<u64>(&names[0])
        .capacity(1024)
        .unlink(UnlinkPolicy::CreatorDrop)
        .create()
        .unwrap();
    let (mut tx, mut rx) = (ch.producer().unwrap(), ch.consumer().unwrap());
    for i in 0..640 {
        tx.try_send(i).unwrap();
    }
    for i in 0..256 {
        assert_eq!(rx.try_recv().unwrap(), i);
    }
    keep.extend([
        Box::new(ch) as Box<dyn std::any::Any>,
        Box::new(tx),
        Box::new(rx),
    ]);
    // mpmc: 128 sent, all received; two receivers.
    let ch = shmlane::mpmc::<[u8; 32]>(&names[1])
        .capacity(128)
        .unlink(UnlinkPolicy::CreatorDrop)
        .create()
        .unwrap();
    let (mut tx, mut rx, rx2) = (
        ch.sender().unwrap(),
        ch.receiver().unwrap(),
        ch.receiver().unwrap(),
    );
    for _ in 0..128 {
        tx.try_send([1; 32]).unwrap();
    }
    for _ in 0..128 {
        rx.try_recv().unwrap();
    }
    keep.extend([
        Box::new(ch) as Box<dyn std::any::Any>,
        Box::new(tx),
        Box::new(rx),
        Box::new(rx2),
    ]);
    // bytes: 64 messages of 5 bytes, none received.
    let ch = shmlane::bytes(&names[2])
        .capacity(65536)
        .unlink(UnlinkPolicy::CreatorDrop)
        .create()
        .unwrap();
    let mut tx = ch.byte_sender().unwrap();
    for _ in 0..64 {
        tx.send(b"hello", Some(Deadline::after(Duration::from_secs(5))))
            .unwrap();
    }
    keep.extend([Box::new(ch) as Box<dyn std::any::Any>, Box::new(tx)]);
    // broadcast: 256 published into 8 slots: a subscriber from the start is lapped; it leaves
    // (its counts added) after reading.
    let ch = shmlane::broadcast(&names[3])
        .capacity(8)
        .msg_size(64)
        .unlink(UnlinkPolicy::CreatorDrop)
        .create()
        .unwrap();
    let mut sub = ch.subscriber().unwrap();
    let mut publ = ch.publisher().unwrap();
    for i in 0..256u32 {
        publ.send(&[i as u8; 10]).unwrap();
    }
    let mut buf = [0u8; 64];
    let mut lapped = false;
    loop {
        match sub.try_recv(&mut buf) {
            Ok(_) => {}
            Err(shmlane::ByteRecvError::Lapped { .. }) => lapped = true,
            Err(shmlane::ByteRecvError::Empty) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(lapped);
    drop(sub);
    keep.extend([Box::new(ch) as Box<dyn std::any::Any>, Box::new(publ)]);
    // latest: written 5 times.
    let ch = shmlane::latest::<u64>(&names[4])
        .unlink(UnlinkPolicy::CreatorDrop)
        .create()
        .unwrap();
    let mut w = ch.writer().unwrap();
    for v in 0..5u64 {
        w.write(&v).unwrap();
    }
    keep.extend([Box::new(ch) as Box<dyn std::any::Any>, Box::new(w)]);
    Fixture {
        _clean: names.iter().cloned().map(Cleanup).collect(),
        spsc: names[0].clone(),
        mpmc: names[1].clone(),
        bytes: names[2].clone(),
        bcast: names[3].clone(),
        latest: names[4].clone(),
        keep,
    }
}

/// The fixture's figures, as `metrics` must give them.
fn check(s: &Samples, f: &Fixture) {
    let sent = "side=sent";
    let recv = "side=received";
    // spsc
    assert_eq!(get(s, "shmlane_messages_total", &f.spsc, sent), 640.0);
    assert_eq!(get(s, "shmlane_messages_total", &f.spsc, recv), 256.0);
    assert_eq!(get(s, "shmlane_channel_queued", &f.spsc, ""), 384.0);
    assert_eq!(get(s, "shmlane_channel_capacity", &f.spsc, ""), 1024.0);
    assert_eq!(get(s, "shmlane_channel_senders", &f.spsc, ""), 1.0);
    assert_eq!(get(s, "shmlane_channel_receivers", &f.spsc, ""), 1.0);
    assert_eq!(get(s, "shmlane_dead_attachments", &f.spsc, ""), 0.0);
    assert_eq!(
        get(
            s,
            "shmlane_segment_info",
            &f.spsc,
            "backend=posix,kind=spsc,state=live"
        ),
        1.0
    );
    // mpmc
    assert_eq!(get(s, "shmlane_messages_total", &f.mpmc, sent), 128.0);
    assert_eq!(get(s, "shmlane_messages_total", &f.mpmc, recv), 128.0);
    assert_eq!(get(s, "shmlane_channel_queued", &f.mpmc, ""), 0.0);
    // Processes, not endpoints: this one holds both receivers.
    assert_eq!(get(s, "shmlane_channel_receivers", &f.mpmc, ""), 1.0);
    assert_eq!(
        get(s, "shmlane_channel_max_message_bytes", &f.mpmc, ""),
        32.0
    );
    // bytes: 64 × 5 payload bytes, none read.
    assert_eq!(get(s, "shmlane_messages_total", &f.bytes, sent), 64.0);
    assert_eq!(get(s, "shmlane_payload_bytes_total", &f.bytes, sent), 320.0);
    assert_eq!(get(s, "shmlane_messages_total", &f.bytes, recv), 0.0);
    // Each 5-byte message takes a 16-byte record (an 8-byte header, padded to 8).
    assert_eq!(
        get(s, "shmlane_channel_queued_bytes", &f.bytes, ""),
        64.0 * 16.0
    );
    assert!(!s.contains_key(&(
        "shmlane_channel_queued".to_owned(),
        f.bytes.clone(),
        String::new()
    )));
    // broadcast: 256 published; what the subscriber missed is counted lost on its side.
    assert_eq!(get(s, "shmlane_messages_total", &f.bcast, sent), 256.0);
    let got = get(s, "shmlane_messages_total", &f.bcast, recv);
    let lost = get(s, "shmlane_lost_total", &f.bcast, recv);
    assert!(lost > 0.0, "the lapped subscriber's loss is counted");
    assert_eq!(got + lost, 256.0, "received + lost = published");
    // latest: 5 writes; no queue.
    assert_eq!(get(s, "shmlane_latest_version", &f.latest, ""), 5.0);
    assert!(
        !s.contains_key(&(
            "shmlane_channel_queued".to_owned(),
            f.latest.clone(),
            String::new()
        )),
        "a latest-value channel has no queue"
    );
    // No bridge served these channels.
    assert!(
        !s.keys()
            .any(|(m, c, _)| m.starts_with("shmlane_bridge") && c == &f.spsc)
    );
}

#[test]
fn metrics_printed_parse_and_match_the_channels() {
    let f = fixture("print");
    let out = run(&["metrics"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    check(&parse(&text), &f);
}

#[test]
fn stat_json_of_every_segment_matches_stat_of_each() {
    let f = fixture("stat");
    let out = run(&["stat", "--json"]);
    assert!(out.status.success(), "{out:?}");
    let all: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let all = all.as_array().expect("an array");
    for name in [&f.spsc, &f.mpmc, &f.bytes, &f.bcast, &f.latest] {
        let one = all
            .iter()
            .find(|v| v["name"] == **name)
            .unwrap_or_else(|| panic!("{name} is in stat --json"));
        assert_eq!(one["schema"], 1);
        let single: serde_json::Value =
            serde_json::from_slice(&run(&["stat", name, "--json"]).stdout).unwrap();
        assert_eq!(one, &single, "stat --json and stat {name} --json agree");
    }
    // Without --json a name is required: a usage error naming it.
    let out = run(&["stat"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("<NAME>"));
}

/// Kills the server if the test fails before it stops it.
struct Kill(std::process::Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One HTTP GET: (status line, body).
fn http_get(addr: &str, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/plain\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").expect("a head and a body");
    (head.lines().next().unwrap().to_owned(), body.to_owned())
}

#[test]
fn metrics_served_over_http_until_ctrl_c() {
    let mut f = fixture("http");
    let mut child = Kill(
        bin()
            .args(["metrics", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let child = &mut child.0;
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let addr = first
        .split("http://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap_or_else(|| panic!("no address in {first:?}"))
        .to_owned();
    let (status, body) = http_get(&addr, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK");
    check(&parse(&body), &f);
    // Each scrape reads anew: one more message is seen.
    f.keep[1]
        .downcast_mut::<shmlane::Producer<u64>>()
        .expect("the fixture keeps the spsc producer second")
        .try_send_slice(&[7; 64])
        .unwrap();
    let (_, body2) = http_get(&addr, "/metrics?x=1");
    assert_eq!(
        get(
            &parse(&body2),
            "shmlane_messages_total",
            &f.spsc,
            "side=sent"
        ),
        704.0
    );
    assert_eq!(http_get(&addr, "/").0, "HTTP/1.1 404 Not Found");
    // A client that connects and says nothing does not stop the server for long.
    let silent = TcpStream::connect(&addr).unwrap();
    let t = Instant::now();
    assert_eq!(http_get(&addr, "/metrics").0, "HTTP/1.1 200 OK");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    drop(silent);
    // A client trickling its request a byte at a time gets 408 once 2 s have passed in all,
    // and a scrape behind it waits no longer than that.
    let mut slow = TcpStream::connect(&addr).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let trickle = std::thread::spawn(move || {
        let t = Instant::now();
        for b in b"GET /metrics HTTP/1.1\r\nHost: x\r\n" {
            if slow.write_all(&[*b]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        let mut resp = String::new();
        let _ = slow.read_to_string(&mut resp);
        (t.elapsed(), resp)
    });
    std::thread::sleep(Duration::from_millis(100));
    let t = Instant::now();
    assert_eq!(http_get(&addr, "/metrics").0, "HTTP/1.1 200 OK");
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
    let (took, resp) = trickle.join().unwrap();
    assert!(resp.starts_with("HTTP/1.1 408"), "{resp:?}");
    assert!(took < Duration::from_secs(4), "{took:?}");
    // Bare LF line ends are a request too.
    let mut lf = TcpStream::connect(&addr).unwrap();
    lf.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    lf.write_all(b"GET /metrics HTTP/1.0\n\n").unwrap();
    let mut resp = String::new();
    lf.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200 OK"), "{resp:?}");
    // Ctrl-C: exits 0 within a second.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let t = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            assert_eq!(st.code(), Some(0));
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "still serving after SIGINT"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn metrics_on_a_taken_port_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = run(&["metrics", "--listen", &addr]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("cannot listen on {addr}")), "{err}");
    assert!(err.contains("port 0"), "{err}");
    let out = run(&["metrics", "--listen", "not-an-address"]);
    assert_eq!(out.status.code(), Some(2));
}
