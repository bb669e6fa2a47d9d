//! A C++ subscriber (tests/cpp/bcast_sub.cpp, through shmlane.hpp and the C ABI) and a Rust
//! subscriber, each its own process, on one broadcast channel fed by a Rust publisher: both
//! see the same sequence (every message, same numbers, lengths and bytes, nothing lost). The
//! ring is small (1024 slots) so the sequence wraps it ~100 times; the publisher keeps the
//! slowest subscriber under half a ring behind, so a loss would be a bug, not a lap.

mod common;
#[path = "cpp/support.rs"]
mod support;

use common::Name;
use shmlane::{ByteRecvError, Deadline, Start, UnlinkPolicy};
use shmlane_testkit::{child, child_role};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const MESSAGES: u64 = 100_000;
const SLOTS: u64 = 1024;
const MSG_SIZE: u64 = 96;

fn fnv(h: u64, b: &[u8]) -> u64 {
    b.iter()
        .fold(h, |h, &x| (h ^ u64::from(x)).wrapping_mul(0x0100_0000_01b3))
}

/// Message `i`: 1 to 96 bytes, a pattern of `i`.
fn message(i: u64, m: &mut [u8; 96]) -> usize {
    let len = 1 + (i.wrapping_mul(7) % MSG_SIZE) as usize;
    for (j, b) in m.iter_mut().enumerate().take(len) {
        *b = (i.wrapping_mul(31).wrapping_add(j as u64 * 17) & 0xff) as u8;
    }
    len
}

/// The line a subscriber prints for a run of `(seq, bytes)`.
struct Summary {
    count: u64,
    first: u64,
    last: u64,
    lost: u64,
    contiguous: bool,
    hash: u64,
}

impl Summary {
    fn new() -> Self {
        Self {
            count: 0,
            first: 0,
            last: 0,
            lost: 0,
            contiguous: true,
            hash: 0xcbf2_9ce4_8422_2325,
        }
    }
    fn add(&mut self, seq: u64, msg: &[u8]) {
        if self.count == 0 {
            self.first = seq;
        } else if seq != self.last + 1 {
            self.contiguous = false;
        }
        self.last = seq;
        self.count += 1;
        self.hash = fnv(self.hash, &seq.to_le_bytes());
        self.hash = fnv(self.hash, &(msg.len() as u64).to_le_bytes());
        self.hash = fnv(self.hash, msg);
    }
    fn line(&self) -> String {
        format!(
            "count={} first={} last={} lost={} contiguous={} hash={:016x}",
            self.count,
            self.first,
            self.last,
            self.lost,
            u8::from(self.contiguous),
            self.hash
        )
    }
}

/// The Rust subscriber (a child process of this test binary).
fn rust_subscriber(name: &str) {
    let ch = shmlane::broadcast(name).open().expect("open");
    let mut sub = ch.subscriber_from(Start::Newest).expect("subscribe");
    println!("OUT:subscribed");
    let mut s = Summary::new();
    let mut buf = [0u8; 256];
    loop {
        match sub.recv_seq(&mut buf, Some(Deadline::after(Duration::from_secs(20)))) {
            Ok((3, _)) if &buf[..3] == b"END" => break,
            Ok((len, seq)) => s.add(seq, &buf[..len]),
            Err(ByteRecvError::Lapped { lost }) => s.lost += lost,
            Err(e) => panic!("rust subscriber: {e}"),
        }
    }
    println!("OUT:{}", s.line());
}

#[test]
fn child_entry() {
    if let Some((role, args)) = child_role() {
        match role.as_str() {
            "rust-sub" => rust_subscriber(&args[0]),
            other => panic!("unknown role {other}"),
        }
    }
}

#[test]
fn cpp_and_rust_subscribers_see_the_same_sequence() {
    let bin = support::cxx("bcast_sub.cpp", "cpp-bcast-sub", &[]);
    let name = Name::new("cpp-bcast");
    let ch = shmlane::broadcast(&name.0)
        .capacity(SLOTS)
        .msg_size(MSG_SIZE)
        .unlink(UnlinkPolicy::LastDetach)
        .create()
        .expect("create");
    let mut publisher = ch.publisher().expect("publisher");
    let mut cpp = Command::new(&bin)
        .arg(&name.0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start bcast_sub");
    let mut rust = child("rust-sub", &[&name.0]).spawn().expect("start child");
    // Both print "subscribed" once their subscriber exists (it starts at the newest message).
    let mut cpp_out = BufReader::new(cpp.stdout.take().expect("stdout"));
    let mut rust_out = BufReader::new(rust.stdout.take().expect("stdout"));
    for out in [&mut cpp_out as &mut dyn BufRead, &mut rust_out] {
        let mut l = String::new();
        while !l.contains("OUT:subscribed") {
            l.clear();
            assert!(
                out.read_line(&mut l).expect("read") > 0,
                "a subscriber ended early"
            );
        }
    }
    assert_eq!(publisher.subscribers(), 2);
    let mut want = Summary::new();
    let mut m = [0u8; 96];
    let deadline = Instant::now() + Duration::from_secs(60);
    for i in 0..MESSAGES {
        // Never lap anyone: a loss seen below is then a bug.
        while publisher.slowest_lag().unwrap_or(0) >= SLOTS / 2 {
            assert!(Instant::now() < deadline, "a subscriber stopped reading");
            std::thread::yield_now();
        }
        let len = message(i, &mut m);
        assert_eq!(publisher.next_seq(), i);
        publisher.send(&m[..len]).expect("publish");
        want.add(i, &m[..len]);
    }
    publisher.send(b"END").expect("publish END");
    let summary = |out: &mut dyn BufRead| {
        let mut all = String::new();
        out.read_to_string(&mut all).expect("read");
        all.lines()
            .filter_map(|l| l.strip_prefix("OUT:"))
            .filter(|l| l.starts_with("count="))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let (cpp_lines, rust_lines) = (summary(&mut cpp_out), summary(&mut rust_out));
    // (Reading to the end returned: both closed their output; each gives up after 20 s idle.)
    let cpp_status = cpp.wait().expect("wait");
    let rust_status = rust.wait().expect("wait");
    assert!(cpp_status.success(), "bcast_sub failed: {cpp_status}");
    assert!(
        rust_status.success(),
        "the Rust subscriber failed: {rust_status}"
    );
    let want = vec![want.line()];
    assert_eq!(cpp_lines, want, "the C++ subscriber saw another sequence");
    assert_eq!(rust_lines, want, "the Rust subscriber saw another sequence");
}
