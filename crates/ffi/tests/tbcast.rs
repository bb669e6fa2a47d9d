//! Typed broadcast between C and Rust processes (tests/c/tbcast_peer.c): a C struct Quote (32
//! bytes, align 8, type name "Quote") and a Rust `broadcast_of::<[u64; 4]>` with that type name
//! share a channel. A Rust `TypedPublisher` (copies and in-place loans) feeds a C subscriber
//! that checks every Quote whole with its sequence number; a C publisher (in-place loans,
//! copies, abandoned loans) feeds a Rust `typed_subscriber`; another layout or type name is
//! SHMLANE_E_WRONG_TYPE; a C++ `TypedSubscriber<Quote>` reads a Rust feed and its
//! `TypedPublisher<Quote>` (loans and copies) feeds a Rust subscriber. tests/c/tbcast_abi.c (bad input, loans, laps, checksums, the fd) runs
//! under valgrind and linked statically.

mod common;
#[path = "cpp/support.rs"]
mod support;

use common::{Link, Name, compile, run_checked};
use shmlane::{ByteRecvError, Deadline, Start};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const QUOTES: u64 = 100_000;
/// Slots: more than QUOTES, so a subscriber from sequence number 0 is never lapped.
const CAPACITY: u64 = 1 << 17;
const WAIT: Duration = Duration::from_secs(20);

/// The Rust twin of tbcast_peer.c's Quote: seq, bid bits, ask bits, instrument | check << 32.
type Quote = [u64; 4];

fn quote(seq: u64) -> Quote {
    let bid = 1.0 + f64::from(u32::try_from(seq).expect("small seq")) * 0.25;
    let instrument = seq % 97;
    // C: (uint32_t)(seq * 2654435761u) ^ instrument.
    let check = (seq.wrapping_mul(2_654_435_761) & 0xffff_ffff) ^ instrument;
    [
        seq,
        bid.to_bits(),
        (bid + 0.5).to_bits(),
        instrument | check << 32,
    ]
}

fn channel(name: &str) -> shmlane::Channel<Quote> {
    shmlane::broadcast_of::<Quote>(name)
        .type_name("Quote")
        .capacity(CAPACITY)
        .create()
        .expect("create broadcast_of::<Quote>")
}

fn peer(args: &[&str]) -> Child {
    let bin = compile("tbcast_peer", "tbcast_peer", Link::Shared);
    Command::new(bin)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start tbcast_peer.c")
}

/// Waits for `c` (bounded) and returns its output; it must have succeeded.
fn finish(c: Child, what: &str) -> String {
    let pid = c.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(c.wait_with_output());
    });
    let Ok(o) = rx.recv_timeout(WAIT) else {
        // SAFETY: kill(2) on the child's pid, which is not reaped yet (the waiting thread
        // still holds it).
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        panic!("{what} did not finish in {WAIT:?}");
    };
    let o = o.expect("wait");
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{what} failed ({}): {out}", o.status);
    out
}

#[test]
fn a_rust_typed_publisher_feeds_a_c_subscriber_every_quote_intact() {
    let name = Name::new("ffi-tbcast-r2c");
    let ch = channel(&name.0);
    let mut feed = ch.typed_publisher().unwrap();
    let c = peer(&["sub", &name.0, &QUOTES.to_string()]);
    for i in 0..QUOTES {
        let q = quote(i);
        let seq = if i % 2 == 0 {
            feed.publish(&q)
        } else {
            // In place, a field at a time (the C subscriber must never see a half).
            let mut loan = feed.loan();
            for (k, w) in q.iter().enumerate().rev() {
                loan.write_field(k * 8, w);
            }
            loan.publish()
        };
        assert_eq!(seq, i);
    }
    let out = finish(c, "tbcast_peer sub");
    assert!(
        out.contains(&format!("received {QUOTES} ok")),
        "the C subscriber said: {out}"
    );
}

#[test]
fn a_c_publisher_through_loans_feeds_a_rust_typed_subscriber() {
    let name = Name::new("ffi-tbcast-c2r");
    let ch = channel(&name.0);
    let mut sub = ch.typed_subscriber_from(Start::Seq(0)).unwrap();
    let c = peer(&["pub", &name.0, &QUOTES.to_string()]);
    for i in 0..QUOTES {
        match sub.recv_seq(Some(Deadline::after(WAIT))) {
            Ok((q, seq)) => {
                assert_eq!((seq, q), (i, quote(i)), "quote {i}");
            }
            Err(e) => panic!("receive {i}: {e}"),
        }
    }
    assert_eq!(sub.lost(), 0);
    let out = finish(c, "tbcast_peer pub");
    assert!(out.contains(&format!("published {QUOTES}")), "{out}");
    // Nothing more: the abandoned loans published nothing.
    assert_eq!(sub.try_recv(), Err(ByteRecvError::Empty));
    assert_eq!(sub.next_seq(), QUOTES);
}

#[test]
fn another_layout_or_type_name_is_wrong_type() {
    let name = Name::new("ffi-tbcast-type");
    let _ch = channel(&name.0);
    let open = |size: &str, align: &str, ty: &str| -> String {
        finish(
            peer(&["open", &name.0, size, align, ty]),
            "tbcast_peer open",
        )
    };
    assert!(open("32", "8", "Quote").starts_with("status 0:"));
    for (size, align, ty) in [
        ("24", "8", "Quote"),
        ("40", "8", "Quote"),
        ("32", "4", "Quote"),
        ("32", "16", "Quote"),
        ("32", "8", "Trade"),
        ("32", "8", "-"),
    ] {
        let out = open(size, align, ty);
        assert!(
            out.starts_with("status -10:"),
            "{size}/{align}/{ty}: want SHMLANE_E_WRONG_TYPE, the C peer said: {out}"
        );
        assert!(out.contains("Quote"), "the message names the type: {out}");
    }
    // And the other way: a Rust opener of another type on a channel the C side can open.
    let e = shmlane::broadcast_of::<[u32; 8]>(&name.0)
        .type_name("Quote")
        .open()
        .unwrap_err();
    assert!(
        matches!(e, shmlane::OpenError::WrongType { .. }),
        "align 4 vs 8: {e}"
    );
}

#[test]
fn tbcast_abi_c_checks_under_valgrind_and_static() {
    let name = Name::new("ffi-tbcast-abi");
    let bin = compile("tbcast_abi", "tbcast_abi", Link::Shared);
    let o = run_checked(&bin, &[&name.0]);
    assert!(
        o.status.success(),
        "tbcast_abi.c (valgrind) failed: {}\n{}{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let name2 = Name::new("ffi-tbcast-abi-s");
    let bin = compile("tbcast_abi", "tbcast_abi_static", Link::Static);
    let o = Command::new(bin).arg(&name2.0).output().unwrap();
    assert!(
        o.status.success(),
        "tbcast_abi.c (static) failed: {}\n{}{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn a_cpp_typed_subscriber_and_publisher_talk_to_rust() {
    const N: u64 = 20_000;
    let (a, b) = (
        Name::new("ffi-tbcast-cpp-in"),
        Name::new("ffi-tbcast-cpp-out"),
    );
    let (inbound, outbound) = (channel(&a.0), channel(&b.0));
    let mut feed = inbound.typed_publisher().unwrap();
    let mut sub = outbound.typed_subscriber_from(Start::Seq(0)).unwrap();
    let bin = support::cxx("tbcast_sub.cpp", "cpp_tbcast_sub", &[]);
    let c = Command::new(bin)
        .args([&a.0, &b.0, &N.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start tbcast_sub.cpp");
    for i in 0..N {
        if i % 2 == 0 {
            feed.publish(&quote(i));
        } else {
            let mut loan = feed.loan();
            loan.write(&quote(i));
            loan.publish();
        }
    }
    for i in 0..N {
        let got = sub.recv_seq(Some(Deadline::after(WAIT)));
        assert_eq!(got, Ok((quote(i), i)), "quote {i} from the C++ publisher");
    }
    assert_eq!(sub.try_recv(), Err(ByteRecvError::Empty));
    let out = finish(c, "tbcast_sub.cpp");
    assert!(out.contains("ok"), "the C++ side said: {out}");
}

#[test]
fn a_c_publisher_killed_mid_loan_is_a_dead_peer_and_its_half_element_is_never_delivered() {
    const K: u64 = 10;
    let name = Name::new("ffi-tbcast-kill");
    let ch = shmlane::broadcast_of::<Quote>(&name.0)
        .type_name("Quote")
        .capacity(64)
        .unlink(shmlane::UnlinkPolicy::LastDetach)
        .create()
        .unwrap();
    let mut sub = ch.typed_subscriber_from(Start::Seq(0)).unwrap();
    let mut c = peer(&["loan-hang", &name.0, &K.to_string()]);
    let mut out = std::io::BufReader::new(c.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    assert_eq!(line.trim(), "loaned", "the C publisher said: {line}");
    for i in 0..K {
        assert_eq!(sub.recv_seq(Some(Deadline::after(WAIT))), Ok((quote(i), i)));
    }
    // The half-written loan is not a message.
    assert_eq!(sub.try_recv(), Err(ByteRecvError::Empty));
    c.kill().unwrap();
    c.wait().unwrap();
    assert_eq!(
        sub.recv(Some(Deadline::after(WAIT))),
        Err(ByteRecvError::PeerDied),
        "a C publisher killed holding a loan is a dead peer"
    );
}
