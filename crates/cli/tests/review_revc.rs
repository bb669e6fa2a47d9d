//! Review of issue 16's command lifecycle (reviewer "revc"), with real processes: `recv
//! --follow` goes on past a sender killed with SIGKILL; `send` stops reading a line as soon as
//! it is longer than the channel takes (no unbounded buffering of an input without newlines);
//! what `send` says stays queued in a bytes channel counts messages, not bytes.

use std::{
    io::Write,
    os::unix::process::ExitStatusExt,
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use shmlane_testkit::{Cleanup, unique};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_shmlane"))
}

fn spawn(args: &[&str]) -> Child {
    bin()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn shmlane")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Waits for `child` at most `limit` (then kills it and fails).
fn finish(mut child: Child, limit: Duration) -> Output {
    let t0 = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t0.elapsed() > limit {
            let _ = child.kill();
            let o = child.wait_with_output().unwrap();
            panic!(
                "process still running after {limit:?}; killed: {}",
                stderr(&o)
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.wait_with_output().unwrap()
}

/// Waits until `name`'s ring holds `n` messages (`ls` LEN) and `pid` is attached alive.
fn wait_len(name: &str, pid: u32, n: u64) {
    let t0 = Instant::now();
    loop {
        let path = std::path::PathBuf::from(format!("/dev/shm/{name}"));
        if let Ok(Some(i)) = shmlane_segment::inspect(&path) {
            let attached = i.attached.iter().any(|a| a.pid == pid && a.alive);
            if attached && shmlane::inspect(&i).is_some_and(|c| c.len == n) {
                return;
            }
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "{name}: {pid} never queued {n}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Messages queued in `name` (`ls` LEN).
fn queued(name: &str) -> u64 {
    let path = std::path::PathBuf::from(format!("/dev/shm/{name}"));
    let info = shmlane_segment::inspect(&path).unwrap().unwrap();
    shmlane::inspect(&info).unwrap().len
}

/// `recv --follow` on a created channel, every kind: the first sender is killed (SIGKILL)
/// after its two lines were read; the command says so on stderr and goes on: the next
/// sender's lines arrive too, and it ends at its timeout (exit 4), not at the death (exit 3).
#[test]
fn follow_goes_on_past_a_killed_sender() {
    for kind in ["spsc", "mpmc", "bytes", "broadcast"] {
        let name = unique(&format!("revc-follow9-{kind}"));
        let _c = Cleanup(name.clone());
        let o = bin()
            .args(["create", &name, "--kind", kind])
            .output()
            .unwrap();
        assert!(o.status.success(), "{kind}: {}", stderr(&o));
        let recv = spawn(&["recv", &name, "--follow", "--timeout", "5s"]);
        std::thread::sleep(Duration::from_millis(300));
        let mut a = spawn(&["send", &name]);
        let mut stdin = a.stdin.take().unwrap();
        stdin.write_all(b"a1\na2\n").unwrap();
        stdin.flush().unwrap();
        // Read by recv (the ring is empty again), then the sender dies.
        std::thread::sleep(Duration::from_millis(500));
        a.kill().unwrap();
        assert_eq!(a.wait().unwrap().signal(), Some(9));
        drop(stdin);
        std::thread::sleep(Duration::from_millis(300));
        let mut b = spawn(&["send", &name, "--timeout", "10s"]);
        b.stdin.take().unwrap().write_all(b"b1\nb2\n").unwrap();
        let b = finish(b, Duration::from_secs(20));
        assert_eq!(b.status.code(), Some(0), "{kind}: send b: {}", stderr(&b));
        let r = finish(recv, Duration::from_secs(20));
        assert_eq!(
            String::from_utf8_lossy(&r.stdout),
            "a1\na2\nb1\nb2\n",
            "{kind}: {}",
            stderr(&r)
        );
        assert_eq!(r.status.code(), Some(4), "{kind}: {}", stderr(&r));
        assert!(
            stderr(&r).contains("a sender of") && stderr(&r).contains("died"),
            "{kind}: {}",
            stderr(&r)
        );
    }
}

/// A line longer than the channel takes, with no newline after it and the input left open
/// (`cat /dev/zero`, a producer that hangs): `send` refuses it as soon as it has read more
/// than the largest message, instead of buffering the line whole (its memory grew with the
/// input) or waiting for a newline; the two lines before it stay queued, the error says so,
/// and a later `recv` gets them.
#[test]
fn an_overlong_line_is_refused_before_its_end() {
    let name = unique("revc-longline");
    let _c = Cleanup(name.clone());
    // A created channel keeps what its sender queued for a later receiver.
    let c = finish(
        spawn(&["create", &name, "--msg-size", "64"]),
        Duration::from_secs(10),
    );
    assert_eq!(c.status.code(), Some(0), "{}", stderr(&c));
    let mut send = spawn(&["send", &name, "--timeout", "1s"]);
    let mut stdin = send.stdin.take().unwrap();
    stdin.write_all(b"a\nb\n").unwrap();
    stdin.write_all(&[b'x'; 1000]).unwrap();
    stdin.flush().unwrap();
    // `stdin` stays open: only the length can end the line.
    let o = finish(send, Duration::from_secs(10));
    drop(stdin);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("line 3 has more than 64 bytes") && err.contains("2 messages stay queued"),
        "{err}"
    );
    let r = finish(
        spawn(&["recv", &name, "--timeout", "5s"]),
        Duration::from_secs(10),
    );
    assert_eq!(
        String::from_utf8_lossy(&r.stdout),
        "a\nb\n",
        "{}",
        stderr(&r)
    );
    // The sender failed: its receiver says so (it exited 0, as if the input were whole).
    assert_eq!(r.status.code(), Some(6), "{}", stderr(&r));
    assert!(
        stderr(&r).contains("failed: line 3 has more than 64 bytes"),
        "{}",
        stderr(&r)
    );
}

/// A `send` of ten short lines into a bytes channel, interrupted while it waits for a
/// receiver: what it says stays queued is not a byte count passed off as messages (it said
/// "160 messages stay queued" for 10 lines).
#[test]
fn bytes_channel_queued_is_not_bytes_called_messages() {
    let name = unique("revc-bytes-left");
    let _c = Cleanup(name.clone());
    // A created channel keeps what its sender queued for a later receiver.
    let c = finish(
        spawn(&["create", &name, "--kind", "bytes"]),
        Duration::from_secs(10),
    );
    assert_eq!(c.status.code(), Some(0), "{}", stderr(&c));
    let mut send = spawn(&["send", &name]);
    let mut stdin = send.stdin.take().unwrap();
    for i in 1..=10 {
        writeln!(stdin, "{i}").unwrap();
    }
    drop(stdin);
    // The ten records (8-byte header, padded to 8) take 160 bytes.
    wait_len(&name, send.id(), 160);
    std::thread::sleep(Duration::from_millis(100));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(send.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let o = finish(send, Duration::from_secs(10));
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(143), "{err}");
    assert!(!err.contains("160 messages"), "{err}");
    assert!(err.contains("taking 160 bytes stay queued"), "{err}");
    let r = finish(
        spawn(&["recv", &name, "--timeout", "5s"]),
        Duration::from_secs(10),
    );
    assert_eq!(
        String::from_utf8_lossy(&r.stdout),
        "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n"
    );
}

/// `recv --timeout` bounds the whole command: writing into a pipe whose reader stopped
/// reading (it stays open) ends at the timeout with exit 4 and says why, instead of waiting
/// for the reader forever; and a timeout that passes while messages are still coming ends it
/// too (it drained a full ring past a 1 µs timeout and exited 0).
#[test]
fn recv_timeout_bounds_writing_and_streaming() {
    let name = unique("revc-outwait");
    let _c = Cleanup(name.clone());
    // Room for the 60,000 lines below (the default ring holds 2048).
    let o = bin()
        .args(["create", &name, "--capacity", "65536"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let mut send = spawn(&["send", &name, "--timeout", "10s"]);
    let mut stdin = send.stdin.take().unwrap();
    let input = (1..=60_000).fold(String::new(), |mut s, i| {
        use std::fmt::Write as _;
        let _ = writeln!(s, "{i}");
        s
    });
    stdin.write_all(input.as_bytes()).unwrap();
    drop(stdin);
    wait_len(&name, send.id(), 60_000);

    // Its output a pipe nobody reads: ends at the 1 s timeout, not when the reader reads.
    let (reader, writer) = std::io::pipe().unwrap();
    let t0 = Instant::now();
    let r = finish(
        bin()
            .args(["recv", &name, "--timeout", "1s"])
            .stdout(writer)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
        Duration::from_secs(10),
    );
    let took = t0.elapsed();
    drop(reader);
    let err = stderr(&r);
    assert_eq!(r.status.code(), Some(4), "{err}");
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert!(err.contains("not being read"), "{err}");
    // Past the deadline with thousands of messages queued: ends at once, having taken next
    // to nothing.
    let before = queued(&name);
    let r = finish(
        bin()
            .args(["recv", &name, "--timeout", "1us"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
        Duration::from_secs(10),
    );
    assert_eq!(r.status.code(), Some(4), "{}", stderr(&r));
    let left = queued(&name);
    assert!(
        before > 20_000 && left + 1000 > before,
        "recv --timeout 1us drained {} of {before} messages",
        before - left
    );

    let _ = send.kill();
    let _ = send.wait();
}

/// `recv --timeout 1s` into a slow reader that keeps reading: at the timeout it stops
/// receiving, but every message it took reaches the reader (a stalled reader ends it, a slow
/// one does not lose the buffered lines), and it says how many it received.
#[test]
fn recv_timeout_delivers_what_it_took_to_a_slow_reader() {
    use std::io::Read;
    let name = unique("revc-slowread");
    let _c = Cleanup(name.clone());
    // Room for the 60,000 lines below (the default ring holds 2048).
    let o = bin()
        .args(["create", &name, "--capacity", "65536"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let mut send = spawn(&["send", &name, "--timeout", "20s"]);
    let mut stdin = send.stdin.take().unwrap();
    let input = (1..=60_000).fold(String::new(), |mut s, i| {
        use std::fmt::Write as _;
        let _ = writeln!(s, "{i}");
        s
    });
    stdin.write_all(input.as_bytes()).unwrap();
    drop(stdin);
    wait_len(&name, send.id(), 60_000);
    let (mut reader, writer) = std::io::pipe().unwrap();
    let recv = bin()
        .args(["recv", &name, "--timeout", "1s"])
        .stdout(writer)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // 4 KiB every 20 ms: about 200 KB/s, so still reading well past the 1 s timeout.
    let slow = std::thread::spawn(move || {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match reader.read(&mut buf) {
                Ok(0) | Err(_) => return got,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let r = finish(recv, Duration::from_secs(20));
    let got = slow.join().unwrap();
    let err = stderr(&r);
    assert_eq!(r.status.code(), Some(4), "{err}");
    let text = String::from_utf8(got).unwrap();
    let n = text.lines().count();
    assert!(
        err.contains(&format!("with {n} messages received")),
        "the reader got {n} lines: {err}"
    );
    assert!(
        text.lines()
            .enumerate()
            .all(|(i, l)| l == (i + 1).to_string())
    );
    let _ = send.kill();
    let _ = send.wait();
}
