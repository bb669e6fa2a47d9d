//! C and Rust processes on one byte channel (tests/c/peer.c): 1,000,000 numbered, checksummed
//! messages each way, intact and in order; a killed C sender is `PeerDied` to a Rust receiver,
//! a killed Rust sender is `SHMLANE_E_PEER_DIED` to a C receiver.

mod common;

use common::{Link, Name, compile, expect_line, have_valgrind, lines, spawn_c, wait_ok};
use shmlane::{ByteRecvError, Deadline};
use shmlane_testkit::{child, child_role};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const MESSAGES: u64 = 1_000_000;
const CAPACITY: u64 = 1 << 20;
const WAIT: Duration = Duration::from_secs(20);

fn fnv1a32(b: &[u8]) -> u32 {
    b.iter().fold(2_166_136_261u32, |h, &x| {
        (h ^ u32::from(x)).wrapping_mul(16_777_619)
    })
}

/// Message `i` as peer.c makes it.
fn make(i: u64, m: &mut [u8; 80]) -> usize {
    let len = 16 + (i % 49) as usize;
    m[..8].copy_from_slice(&i.to_le_bytes());
    for (j, b) in m.iter_mut().enumerate().take(len - 4).skip(8) {
        *b = (i.wrapping_mul(7).wrapping_add(j as u64) & 0xff) as u8;
    }
    let h = fnv1a32(&m[..len - 4]);
    m[len - 4..len].copy_from_slice(&h.to_le_bytes());
    len
}

fn check(i: u64, got: &[u8]) {
    let mut want = [0u8; 80];
    let n = make(i, &mut want);
    assert_eq!(got, &want[..n], "message {i} differs");
}

fn channel(name: &str) -> shmlane::Channel<u8> {
    shmlane::bytes(name)
        .capacity(CAPACITY)
        .open_or_create()
        .expect("open channel")
}

fn peer(mode: &str, name: &str, n: Option<u64>) -> Child {
    let n = n.map(|n| n.to_string());
    let mut args = vec![mode, name];
    args.extend(n.as_deref());
    spawn_c("peer", &args)
}

/// The child's stdout lines, as they come.
/// Waits for a line containing `what` (panics after `WAIT`, or on a "FAIL" line).
#[test]
fn child_entry() {
    let Some((role, args)) = child_role() else {
        return;
    };
    let ch = channel(&args[0]);
    let mut tx = ch.byte_sender().unwrap();
    let mut m = [0u8; 80];
    match role.as_str() {
        "send-forever" => {
            for i in 0.. {
                let n = make(i, &mut m);
                tx.send(&m[..n], Some(Deadline::after(WAIT))).unwrap();
                if i == 1000 {
                    println!("OUT:started");
                }
            }
        }
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn c_sends_a_million_rust_receives_them_in_order() {
    let name = Name::new("ffi-c2rust");
    let ch = channel(&name.0);
    let mut rx = ch.byte_receiver().unwrap();
    let c = peer("send", &name.0, Some(MESSAGES));
    let mut buf = [0u8; 128];
    for i in 0..MESSAGES {
        let n = rx.recv(&mut buf, Some(Deadline::after(WAIT))).unwrap();
        check(i, &buf[..n]);
    }
    assert_eq!(rx.try_recv(&mut buf), Err(ByteRecvError::Empty));
    wait_ok(c, "peer.c send");
}

#[test]
fn rust_sends_a_million_c_receives_them_in_order() {
    let name = Name::new("ffi-rust2c");
    let ch = channel(&name.0);
    let mut tx = ch.byte_sender().unwrap();
    let mut c = peer("recv", &name.0, Some(MESSAGES));
    let out = lines(c.stdout.take().unwrap());
    let mut m = [0u8; 80];
    for i in 0..MESSAGES {
        let n = make(i, &mut m);
        if let Err(e) = tx.send(&m[..n], Some(Deadline::after(WAIT))) {
            let said: Vec<String> = out.try_iter().collect();
            panic!("send {i}: {e}; the C receiver said: {said:?}");
        }
    }
    expect_line(&out, &format!("received {MESSAGES} ok"));
    wait_ok(c, "peer.c recv");
}

#[test]
fn c_sender_killed_is_a_dead_peer_to_the_rust_receiver() {
    let name = Name::new("ffi-ckill");
    let ch = channel(&name.0);
    let mut rx = ch.byte_receiver().unwrap();
    let mut c = peer("send-forever", &name.0, None);
    let out = lines(c.stdout.take().unwrap());
    expect_line(&out, "started");
    let mut buf = [0u8; 128];
    let mut i = 0;
    // Mid-stream: some received, the sender still sending.
    while i < 2000 {
        let n = rx.recv(&mut buf, Some(Deadline::after(WAIT))).unwrap();
        check(i, &buf[..n]);
        i += 1;
    }
    c.kill().unwrap();
    c.wait().unwrap();
    let end = loop {
        match rx.recv(&mut buf, Some(Deadline::after(WAIT))) {
            Ok(n) => {
                check(i, &buf[..n]);
                i += 1;
            }
            Err(e) => break e,
        }
    };
    assert_eq!(end, ByteRecvError::PeerDied, "after {i} messages");
}

#[test]
fn rust_sender_killed_is_peer_died_to_the_c_receiver() {
    let name = Name::new("ffi-rkill");
    let _ch = channel(&name.0);
    let mut c = peer("recv-until-end", &name.0, None);
    let out = lines(c.stdout.take().unwrap());
    expect_line(&out, "ready");
    let mut sender = child("send-forever", &[&name.0]).spawn().unwrap();
    let sender_out = lines(sender.stdout.take().unwrap());
    expect_line(&sender_out, "OUT:started");
    sender.kill().unwrap();
    sender.wait().unwrap();
    let end = expect_line(&out, "status ");
    assert!(
        end.starts_with("status -20 after "),
        "the C receiver should see SHMLANE_E_PEER_DIED (-20): {end}"
    );
    wait_ok(c, "peer.c recv-until-end");
}

#[test]
fn c_publisher_rust_subscriber_same_sequence() {
    let name = Name::new("ffi-bcast");
    let ch = shmlane::broadcast(&name.0)
        .capacity(1024)
        .msg_size(64)
        .open_or_create()
        .expect("open broadcast channel");
    let mut sub = ch.subscriber().unwrap();
    let mut c = peer("publish", &name.0, Some(1000));
    let out = lines(c.stdout.take().unwrap());
    let mut buf = [0u8; 64];
    for i in 0..1000 {
        let (n, seq) = sub
            .recv_seq(&mut buf, Some(Deadline::after(WAIT)))
            .unwrap_or_else(|e| {
                let said: Vec<String> = out.try_iter().collect();
                panic!("receive {i}: {e}; the C publisher said: {said:?}")
            });
        assert_eq!(seq, i, "sequence numbers across the ABI");
        check(i, &buf[..n]);
    }
    assert_eq!(sub.lost(), 0);
    wait_ok(c, "peer.c publish");
}

/// The C receive path with real traffic under valgrind: 20,000 messages from a Rust sender,
/// zero errors (valgrind exits 99 on one).
#[test]
fn c_receiver_under_valgrind() {
    const N: u64 = 20_000;
    if !have_valgrind() {
        eprintln!(
            "\n!!!!! VALGRIND IS NOT INSTALLED: c_receiver_under_valgrind checks nothing !!!!!\n"
        );
        return;
    }
    let name = Name::new("ffi-vg");
    let ch = channel(&name.0);
    let mut tx = ch.byte_sender().unwrap();
    let bin = compile("peer", "peer", Link::Shared);
    let mut c = Command::new("valgrind")
        .args([
            "-q",
            "--error-exitcode=99",
            "--leak-check=full",
            "--errors-for-leak-kinds=definite",
        ])
        .arg(bin)
        .args(["recv", &name.0, &N.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run valgrind");
    let out = lines(c.stdout.take().unwrap());
    let mut m = [0u8; 80];
    for i in 0..N {
        let n = make(i, &mut m);
        tx.send(&m[..n], Some(Deadline::after(WAIT))).unwrap();
    }
    expect_line(&out, &format!("received {N} ok"));
    wait_ok(c, "peer.c recv under valgrind");
}
