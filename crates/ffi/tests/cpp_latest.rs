//! The C++ latest-value wrappers (tests/cpp/latest.cpp, through shmlane.hpp and the C ABI):
//! their results and exceptions in one process, then a C++ `LatestReader` in its own process
//! waits for the values 1..=100 a Rust `raw_latest` writer writes (pausing so that the reader
//! parks and is woken): it ends on 100 and sees values and versions only grow.

mod common;
#[path = "cpp/support.rs"]
mod support;

use common::Name;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[test]
fn cpp_latest_wrappers_work_and_read_a_rust_writer() {
    let bin = support::cxx("latest.cpp", "cpp_latest", &[]);
    let prefix = Name::new("ffi-cpp-latest");
    let name = Name::new("ffi-cpp-latest-r");
    let ch = shmlane::raw_latest(&name.0, 8)
        .capacity(4)
        .create()
        .expect("create the latest-value channel");
    let mut w = ch.writer().unwrap();
    let mut c = Command::new(bin)
        .args([&prefix.0, &name.0])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run latest.cpp");
    // Lines through a thread, so that a wrapper that blocks past its timeout fails the test
    // (the program is killed) instead of hanging it.
    let stdout = c.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let first = lines.recv_timeout(Duration::from_secs(30));
    if first.as_deref() != Ok("waiting") {
        let _ = c.kill();
        let _ = c.wait();
        panic!("latest.cpp's in-process checks failed or hung: {first:?} (its stderr is above)");
    }
    for v in 1..=100u64 {
        w.write(&v.to_ne_bytes()).unwrap();
        if v % 10 == 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while c.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = c.kill();
            let _ = c.wait();
            panic!("latest.cpp did not finish in 30 s");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let status = c.wait().unwrap();
    let rest: Vec<String> = lines.iter().collect();
    assert!(
        status.success() && rest.iter().any(|l| l == "ok cpp latest"),
        "latest.cpp failed ({status}), printed {rest:?} (its stderr is above)"
    );
    let _ = std::fs::remove_file(format!("/dev/shm/{}-l", prefix.0));
}
