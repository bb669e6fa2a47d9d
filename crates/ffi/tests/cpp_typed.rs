//! A C++ `Sender<Quote>` (tests/cpp/typed_send.cpp, through shmlane.hpp and the typed C ABI)
//! sends 200,000 checksummed Quotes to a Rust `spsc::<[u64; 3]>` with the type name "Quote";
//! then a C++ `Receiver<Quote>` waits on its descriptor (fd/rearm/poll) for a Quote a Rust
//! MPMC sender sends.

mod common;
#[path = "cpp/support.rs"]
mod support;

use common::Name;
use shmlane::Deadline;
use std::process::{Command, Stdio};
use std::time::Duration;

type Quote = [u64; 3];

fn quote_check(seq: u64, id: u64) -> u64 {
    seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (id << 56) ^ 0x5157
}

#[test]
fn cpp_sender_rust_spsc_receiver_and_cpp_pollable_receiver() {
    const N: u64 = 200_000;
    let wait = Some(Deadline::after(Duration::from_secs(20)));
    let name = Name::new("ffi-cpp-typed");
    let back_name = Name::new("ffi-cpp-typed-back");
    let ch = shmlane::spsc::<Quote>(&name.0)
        .type_name("Quote")
        .capacity(1024)
        .create()
        .unwrap();
    let back = shmlane::mpmc::<Quote>(&back_name.0)
        .type_name("Quote")
        .capacity(64)
        .create()
        .unwrap();
    let mut rx = ch.consumer().unwrap();
    let mut back_tx = back.sender().unwrap();
    let bin = support::cxx("typed_send.cpp", "cpp_typed_send", &[]);
    let mut c = Command::new(bin)
        .args([&name.0, &N.to_string(), &back_name.0])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    for i in 0..N {
        let q = rx.recv(wait).unwrap();
        assert_eq!(q, [i, 0, quote_check(i, 0)], "quote {i}");
    }
    std::thread::sleep(Duration::from_millis(100));
    back_tx.send([77, 0, quote_check(77, 0)], wait).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while c.try_wait().unwrap().is_none() {
        assert!(std::time::Instant::now() < deadline, "C++ peer hung");
        std::thread::sleep(Duration::from_millis(5));
    }
    let o = c.wait_with_output().unwrap();
    assert!(o.status.success(), "C++ peer failed: {}", o.status);
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "back 77");
}
