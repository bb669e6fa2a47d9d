//! The real-time proofs (docs/realtime.md) for the C ABI's non-blocking calls: a C program
//! (tests/c/rt_abi.c) runs every try / chunk / claim / loan / publish call of every channel
//! kind, and the latest-value calls (write, read, read_if_changed, version), first with
//! allocation forbidden (it interposes malloc and counts), then between two
//! `getrusage(RUSAGE_THREAD)` calls on populated and mlocked channels (no page fault), then
//! under a seccomp filter that traps any system call (the number is reported), linked both
//! shared and static. Each proof is also shown to fail on a deliberate allocation and system call.

mod common;

use common::{Link, Name, compile};
use std::process::Command;

fn run(bin: &std::path::Path, label: &str, mode: &str) -> (bool, String) {
    let name = Name::new(&format!("rt-abi-{label}"));
    let o = Command::new(bin)
        .args([name.0.as_str(), mode])
        .output()
        .expect("run rt_abi");
    // The child ends with `_exit`: its segments stay behind.
    for kind in [
        "spsc", "mpmc", "bytes", "bcast", "tbcast", "latest", "latest0",
    ] {
        let _ = std::fs::remove_file(format!("/dev/shm/{}-{kind}", name.0));
    }
    let text =
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    (o.status.success(), text)
}

#[test]
fn c_abi_non_blocking_calls_neither_allocate_nor_fault_nor_make_system_calls() {
    for (link, out) in [(Link::Shared, "rt_abi"), (Link::Static, "rt_abi_static")] {
        let bin = compile("rt_abi", out, link);
        let (ok, text) = run(&bin, out, "");
        assert!(ok, "{link:?}: {text}");
        assert!(text.contains("ALLOCATIONS 0"), "{link:?}: {text}");
        assert!(text.contains("FAULTS 0"), "{link:?}: {text}");
    }
}

#[test]
fn the_c_proofs_fail_on_an_allocation_or_a_system_call() {
    let bin = compile("rt_abi", "rt_abi", Link::Shared);
    let (ok, text) = run(&bin, "m1", "mutate-alloc");
    assert!(!ok && text.contains("ALLOCATIONS 1"), "{text}");
    let (ok, text) = run(&bin, "m2", "mutate-syscall");
    assert!(
        !ok && text.contains(&format!("SYSCALL {}", libc::SYS_getpid)),
        "{text}"
    );
}
