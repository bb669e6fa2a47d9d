//! Latest-value channels through the C ABI: tests/c/latest_abi.c (bad input, round trip,
//! never written, unchanged, too long, buffer too small, wait_changed's deadline) under
//! valgrind and linked statically; and across processes with tests/c/latest_peer.c: a C
//! writer and a Rust `raw_latest` reader, a Rust writer and a C reader, a C writer and a C
//! reader: every value read is whole, values and versions strictly increase, and the reader
//! ends on the last value written. A typed Rust `latest::<T>` channel is `SHMLANE_E_WRONG_TYPE`
//! to the (byte) C calls.

mod common;

use common::{Link, Name, compile, expect_line, lines, run_checked, spawn_c, wait_ok};
use shmlane::{Deadline, RawLatestChannel};
use std::process::{Child, Command};
use std::time::Duration;

const VALUES: u64 = 200_000;
const WAIT: Duration = Duration::from_secs(30);

/// latest_peer.c's value `i`: `i`, its check, then a pattern, `16 + i % 49` bytes in all.
fn value(i: u64) -> Vec<u8> {
    let len = 16 + (i % 49) as usize;
    let mut v = Vec::with_capacity(len);
    v.extend_from_slice(&i.to_ne_bytes());
    v.extend_from_slice(&check(i).to_ne_bytes());
    v.extend((16..len).map(|j| (i.wrapping_mul(31).wrapping_add(j as u64) & 0xff) as u8));
    v
}

fn check(i: u64) -> u64 {
    i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x4C41
}

fn channel(name: &str) -> RawLatestChannel {
    shmlane::raw_latest(name, 64)
        .capacity(4)
        .open_or_create()
        .expect("open the latest-value channel")
}

fn peer(args: &[&str]) -> Child {
    spawn_c("latest_peer", args)
}

#[test]
fn latest_abi_c_checks_under_valgrind_and_static() {
    let name = Name::new("ffi-latest-abi");
    let bin = compile("latest_abi", "latest_abi", Link::Shared);
    let o = run_checked(&bin, &[&name.0]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && out.contains("ok latest abi"),
        "latest_abi.c (valgrind) failed: {}\n{out}{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    let name2 = Name::new("ffi-latest-abi-s");
    let bin = compile("latest_abi", "latest_abi_static", Link::Static);
    let o = Command::new(bin).arg(&name2.0).output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && out.contains("ok latest abi"),
        "latest_abi.c (static) failed: {}\n{out}{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    for n in [&name, &name2] {
        for s in ["-latest", "-bytes"] {
            let _ = std::fs::remove_file(format!("/dev/shm/{}{s}", n.0));
        }
    }
}

#[test]
fn c_writer_rust_reader_values_monotonic_and_intact() {
    let name = Name::new("ffi-latest-c2r");
    let ch = channel(&name.0);
    let mut r = ch.reader().unwrap();
    let c = peer(&["write", &name.0, &VALUES.to_string()]);
    let mut buf = [0u8; 64];
    let (mut prev_seq, mut prev_ver, mut reads) = (None, 0, 0u64);
    loop {
        let (n, ver) = r
            .wait_changed(&mut buf, Some(Deadline::after(WAIT)))
            .expect("wait for the C writer's next value");
        let seq = u64::from_ne_bytes(buf[..8].try_into().unwrap());
        assert!(seq < VALUES, "value number {seq} out of range");
        assert_eq!(&buf[..n], &value(seq)[..], "value {seq} torn or wrong");
        assert!(ver > prev_ver, "version {ver} after {prev_ver}");
        assert!(
            prev_seq.is_none_or(|p| seq > p),
            "value {seq} after {prev_seq:?}"
        );
        (prev_seq, prev_ver) = (Some(seq), ver);
        reads += 1;
        if seq == VALUES - 1 {
            break;
        }
    }
    // One writer: its value i has version i + 1.
    assert_eq!(prev_ver, VALUES);
    assert!(reads >= 2, "only {reads} reads");
    wait_ok(c, "latest_peer write");
}

#[test]
fn rust_writer_c_reader_values_monotonic_and_intact() {
    let name = Name::new("ffi-latest-r2c");
    let ch = channel(&name.0);
    let mut w = ch.writer().unwrap();
    let mut c = peer(&["read", &name.0, &VALUES.to_string()]);
    let out = lines(c.stdout.take().unwrap());
    expect_line(&out, "ready");
    for i in 0..VALUES {
        w.write(&value(i)).expect("write");
        if i % 4096 == 4095 {
            // Long enough for the C reader to park in wait_changed: the write wakes it.
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let l = expect_line(&out, "ok");
    assert!(l.ends_with(&format!("last {} ok", VALUES - 1)), "{l}");
    wait_ok(c, "latest_peer read");
}

#[test]
fn c_writer_c_reader_across_processes() {
    let name = Name::new("ffi-latest-c2c");
    let _ch = channel(&name.0);
    let mut rd = peer(&["read", &name.0, &VALUES.to_string()]);
    let out = lines(rd.stdout.take().unwrap());
    expect_line(&out, "ready");
    let wr = peer(&["write", &name.0, &VALUES.to_string()]);
    let l = expect_line(&out, "ok");
    assert!(l.ends_with(&format!("last {} ok", VALUES - 1)), "{l}");
    wait_ok(wr, "latest_peer write");
    wait_ok(rd, "latest_peer read");
}

#[test]
fn a_typed_rust_latest_channel_is_wrong_type_for_the_byte_c_api() {
    let name = Name::new("ffi-latest-typed");
    let typed = shmlane::latest::<[u64; 8]>(&name.0)
        .create()
        .expect("create a typed latest-value channel");
    let o = peer(&["open", &name.0, "0"]).wait_with_output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && out.starts_with("status -10: "),
        "a typed latest::<[u64; 8]> opened as bytes from C should be SHMLANE_E_WRONG_TYPE (-10): {out}"
    );
    // The byte channel of the same name, for contrast, opens.
    drop(typed);
    let _ = std::fs::remove_file(format!("/dev/shm/{}", name.0));
    let _bytes = channel(&name.0);
    let o = peer(&["open", &name.0, "0"]).wait_with_output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.starts_with("status 0: "), "{out}");
}
