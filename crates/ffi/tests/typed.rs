//! C and Rust processes on typed channels (tests/c/typed_peer.c): a C struct Quote (24 bytes,
//! align 8, type name "Quote") and a Rust `spsc::<[u64; 3]>` / `mpmc` with that type name share
//! a channel; 1,000,000 checksummed Quotes each way (SPSC, zero-copy chunks across the wrap on
//! the C side), two C senders on MPMC; a pollable C receiver sees a Rust sender's messages and
//! its death (SIGKILL) as SHMLANE_E_PEER_DIED from rearm. tests/c/typed_abi.c (bad input, the
//! fd calls of every receiver kind, chunks across the wrap) runs under valgrind.

mod common;

use common::{Link, Name, compile, expect_line, lines, run_checked, spawn_c, wait_ok};
use shmlane::{Deadline, TryRecvError};
use shmlane_testkit::{child, child_role};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const QUOTES: u64 = 1_000_000;
const WAIT: Duration = Duration::from_secs(20);

/// The Rust twin of typed_peer.c's Quote: seq, id, check.
type Quote = [u64; 3];

fn quote_check(seq: u64, id: u64) -> u64 {
    seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (id << 56) ^ 0x5157
}

fn quote(seq: u64, id: u64) -> Quote {
    [seq, id, quote_check(seq, id)]
}

fn spsc(name: &str) -> shmlane::Channel<Quote> {
    shmlane::spsc::<Quote>(name)
        .type_name("Quote")
        .capacity(1024)
        .open_or_create()
        .expect("open spsc")
}

fn mpmc(name: &str) -> shmlane::Channel<Quote> {
    shmlane::mpmc::<Quote>(name)
        .type_name("Quote")
        .capacity(1024)
        .open_or_create()
        .expect("open mpmc")
}

fn peer(args: &[&str]) -> Child {
    spawn_c("typed_peer", args)
}

#[test]
fn child_entry() {
    let Some((role, args)) = child_role() else {
        return;
    };
    match role.as_str() {
        // Sends 10 Quotes when told (a line on stdin), then stays alive until killed.
        "send-then-hang" => {
            let mut send: Box<dyn FnMut(Quote)> = if args[1] == "spsc" {
                let mut tx = spsc(&args[0]).producer().unwrap();
                Box::new(move |q| tx.send(q, Some(Deadline::after(WAIT))).unwrap())
            } else {
                let mut tx = mpmc(&args[0]).sender().unwrap();
                Box::new(move |q| tx.send(q, Some(Deadline::after(WAIT))).unwrap())
            };
            println!("OUT:attached");
            let mut l = String::new();
            std::io::stdin().read_line(&mut l).unwrap();
            for i in 0..10 {
                send(quote(i, 0));
            }
            println!("OUT:sent");
            std::thread::sleep(Duration::from_secs(60));
        }
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn c_sends_a_million_quotes_to_a_rust_spsc_receiver() {
    let name = Name::new("ffi-typed-c2r");
    let ch = spsc(&name.0);
    let mut rx = ch.consumer().unwrap();
    let c = peer(&["send", "spsc", &name.0, &QUOTES.to_string(), "0"]);
    for i in 0..QUOTES {
        let q = rx.recv(Some(Deadline::after(WAIT))).unwrap();
        assert_eq!(q, quote(i, 0), "quote {i}");
    }
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    wait_ok(c, "typed_peer send");
}

#[test]
fn rust_spsc_sends_a_million_quotes_to_a_c_receiver() {
    let name = Name::new("ffi-typed-r2c");
    let ch = spsc(&name.0);
    let mut tx = ch.producer().unwrap();
    let mut c = peer(&["recv", "spsc", &name.0, &QUOTES.to_string()]);
    let out = lines(c.stdout.take().unwrap());
    for i in 0..QUOTES {
        if let Err(e) = tx.send(quote(i, 0), Some(Deadline::after(WAIT))) {
            let said: Vec<String> = out.try_iter().collect();
            panic!("send {i}: {e}; the C receiver said: {said:?}");
        }
    }
    expect_line(&out, &format!("received {QUOTES} ok"));
    wait_ok(c, "typed_peer recv");
}

#[test]
fn two_c_senders_on_mpmc_to_a_rust_receiver() {
    let name = Name::new("ffi-typed-mpmc");
    let ch = mpmc(&name.0);
    let mut rx = ch.receiver().unwrap();
    let each = QUOTES / 2;
    let a = peer(&["send", "mpmc", &name.0, &each.to_string(), "1"]);
    let b = peer(&["send", "mpmc", &name.0, &each.to_string(), "2"]);
    let mut next = [0u64; 3];
    for _ in 0..2 * each {
        let q = rx.recv(Some(Deadline::after(WAIT))).unwrap();
        let id = usize::try_from(q[1]).unwrap();
        assert!(id == 1 || id == 2, "quote from unknown sender: {q:?}");
        assert_eq!(q, quote(next[id], q[1]), "sender {id}'s quote {}", next[id]);
        next[id] += 1;
    }
    assert_eq!(next, [0, each, each]);
    wait_ok(a, "typed_peer send 1");
    wait_ok(b, "typed_peer send 2");
}

#[test]
fn pollable_c_receiver_sees_a_rust_sender_and_its_death() {
    pollable("spsc");
}

#[test]
fn pollable_c_mpmc_receiver_sees_a_rust_sender_and_its_death() {
    pollable("mpmc");
}

fn pollable(kind: &str) {
    let name = Name::new(&format!("ffi-typed-poll-{kind}"));
    let _ch = if kind == "spsc" {
        spsc(&name.0)
    } else {
        mpmc(&name.0)
    };
    let mut sender = child("send-then-hang", &[&name.0, kind])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let sender_out = lines(sender.stdout.take().unwrap());
    expect_line(&sender_out, "attached");
    let mut c = peer(&["poll", kind, &name.0]);
    let out = lines(c.stdout.take().unwrap());
    // The C side checked: empty and armed -> poll(fd, 0) returns 0.
    expect_line(&out, "armed");
    {
        use std::io::Write;
        let mut stdin = sender.stdin.take().unwrap();
        writeln!(stdin, "go").unwrap();
    }
    expect_line(&sender_out, "sent");
    // Readable after the Rust process sent: the C loop drained all 10.
    expect_line(&out, "got 10");
    sender.kill().unwrap();
    sender.wait().unwrap();
    let end = expect_line(&out, "status");
    assert_eq!(
        end, "status -20 after 10",
        "{kind}: the C receiver's rearm should say SHMLANE_E_PEER_DIED (-20) after the sender was killed"
    );
    wait_ok(c, &format!("typed_peer poll {kind}"));
}

#[test]
fn typed_abi_c_checks_under_valgrind_and_static() {
    let name = Name::new("ffi-typed-abi");
    let bin = compile("typed_abi", "typed_abi", Link::Shared);
    let o = run_checked(&bin, &[&name.0]);
    assert!(
        o.status.success(),
        "typed_abi.c (valgrind) failed: {}\n{}{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let name2 = Name::new("ffi-typed-abi-s");
    let bin = compile("typed_abi", "typed_abi_static", Link::Static);
    let o = Command::new(bin).arg(&name2.0).output().unwrap();
    assert!(
        o.status.success(),
        "typed_abi.c (static) failed: {}\n{}{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}
