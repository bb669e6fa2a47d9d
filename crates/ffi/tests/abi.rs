//! Bad input through the C ABI (tests/c/abi.c): NULL handles and buffers, zero and oversized
//! lengths, wrong kinds, bad names, use after close, a buffer too small, claim misuse; each
//! gets its documented status and message. Under valgrind (zero errors) when installed.

mod common;

use common::{Link, Name, compile, run_checked};
use std::process::Command;

fn assert_ok(out: &std::process::Output, what: &str) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("ok "),
        "{what} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    println!("{what}: {}", stdout.trim());
}

#[test]
fn c_abi_bad_input_under_valgrind() {
    let bin = compile("abi", "abi-shared", Link::Shared);
    let prefix = Name::new("ffi-abi");
    let out = run_checked(&bin, &[&prefix.0]);
    assert_ok(&out, "abi.c (shared library, valgrind)");
    for i in 0..5 {
        let _ = std::fs::remove_file(format!("/dev/shm/{}-{i}", prefix.0));
    }
}

#[test]
fn c_abi_bad_input_static_library() {
    let bin = compile("abi", "abi-static", Link::Static);
    let prefix = Name::new("ffi-abi-static");
    let out = Command::new(&bin).arg(&prefix.0).output().expect("run");
    assert_ok(&out, "abi.c (static library)");
    for i in 0..5 {
        let _ = std::fs::remove_file(format!("/dev/shm/{}-{i}", prefix.0));
    }
}
