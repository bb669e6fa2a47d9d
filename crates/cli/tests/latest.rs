//! `shmlane` on latest-value channels (`--kind latest`), run as real processes: create, send,
//! recv, ls, stat, rm, and the errors of each.

use std::{
    io::Write,
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use shmlane_testkit::{Cleanup, unique};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_shmlane"))
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("run shmlane")
}

/// `shmlane send NAME ARGS` with `input` on its stdin, to the end.
fn send(name: &str, args: &[&str], input: &str) -> Output {
    let mut child = bin()
        .arg("send")
        .arg(name)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn send");
    let mut stdin = child.stdin.take().unwrap();
    // A send that refuses the input may exit before reading all of it.
    let _ = stdin.write_all(input.as_bytes());
    drop(stdin);
    child.wait_with_output().unwrap()
}

fn spawn_recv(name: &str, args: &[&str]) -> Child {
    bin()
        .arg("recv")
        .arg(name)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn recv")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn ok(o: &Output) {
    assert!(
        o.status.success(),
        "exit {:?}, stdout {:?}, stderr {:?}",
        o.status.code(),
        text(&o.stdout),
        text(&o.stderr)
    );
}

fn create(name: &str, extra: &[&str]) {
    let mut args = vec!["create", name, "--kind", "latest"];
    args.extend_from_slice(extra);
    ok(&run(&args));
}

/// Until a live receiver is attached to `name` (at most 5 s).
fn wait_reader(name: &str) {
    let end = Instant::now() + Duration::from_secs(5);
    while Instant::now() < end {
        let o = run(&["stat", name]);
        if text(&o.stdout).contains(" 1 readers attached") {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("no reader attached to {name}");
}

/// The brief's round trip: `create p --kind latest --msg-size 64`, `echo x | send p`,
/// `recv p --count 1` prints `x`; the value stays for a second reader too.
#[test]
fn create_send_recv_round_trip() {
    let name = unique("lat-rt");
    let _c = Cleanup(name.clone());
    create(&name, &["--msg-size", "64"]);
    let s = send(&name, &[], "x\n");
    ok(&s);
    assert!(s.stderr.is_empty(), "{}", text(&s.stderr));
    for _ in 0..2 {
        let r = run(&["recv", &name, "--count", "1", "--timeout", "5s"]);
        ok(&r);
        assert_eq!(text(&r.stdout), "x\n");
    }
    // Several lines: the value is the last one.
    ok(&send(&name, &[], "a\nb\nc\n"));
    let r = run(&["recv", &name, "--count", "1", "--timeout", "5s"]);
    ok(&r);
    assert_eq!(text(&r.stdout), "c\n");
    // Frames in and out, on the same channel.
    let mut frame = 3u32.to_le_bytes().to_vec();
    frame.extend_from_slice(b"f\0g");
    let mut child = bin()
        .args(["send", &name, "--framed"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&frame).unwrap();
    assert!(child.wait().unwrap().success());
    let r = run(&["recv", &name, "--count", "1", "--framed", "--timeout", "5s"]);
    ok(&r);
    assert_eq!(r.stdout, frame);
}

/// A waiting `recv` prints the current value, then the next one when it is sent; one on a
/// never-written channel waits for the first value.
#[test]
fn recv_waits_for_a_change() {
    let name = unique("lat-wait");
    let _c = Cleanup(name.clone());
    create(&name, &["--msg-size", "32"]);
    // Never written: waits.
    let mut first = spawn_recv(&name, &["--count", "1", "--timeout", "20s"]);
    wait_reader(&name);
    std::thread::sleep(Duration::from_millis(200));
    assert!(first.try_wait().unwrap().is_none(), "recv did not wait");
    ok(&send(&name, &[], "one\n"));
    let o = first.wait_with_output().unwrap();
    ok(&o);
    assert_eq!(text(&o.stdout), "one\n");
    // Written: the current value at once, then the change.
    let mut r = spawn_recv(&name, &["--count", "2", "--timeout", "20s"]);
    wait_reader(&name);
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        r.try_wait().unwrap().is_none(),
        "recv ended before the change"
    );
    ok(&send(&name, &[], "two\n"));
    let o = r.wait_with_output().unwrap();
    ok(&o);
    assert_eq!(text(&o.stdout), "one\ntwo\n");
}

/// `--timeout` on a channel that does not change: exit 4 after the current value.
#[test]
fn recv_timeout() {
    let name = unique("lat-to");
    let _c = Cleanup(name.clone());
    create(&name, &[]);
    let t = Instant::now();
    let o = run(&["recv", &name, "--timeout", "300ms"]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o.stderr));
    assert!(o.stdout.is_empty());
    assert!(t.elapsed() < Duration::from_secs(5));
    assert!(
        text(&o.stderr).contains("0 values received"),
        "{}",
        text(&o.stderr)
    );
    ok(&send(&name, &[], "v\n"));
    let o = run(&["recv", &name, "--count", "2", "--timeout", "300ms"]);
    assert_eq!(o.status.code(), Some(4));
    assert_eq!(text(&o.stdout), "v\n");
}

/// A line longer than the value size: an error naming the size (exit 1); the lines before it
/// were published and the value stays the last of them; opening needs no --msg-size.
#[test]
fn too_long_value_is_refused_and_nothing_else_lost() {
    let name = unique("lat-long");
    let _c = Cleanup(name.clone());
    create(&name, &["--msg-size", "4"]);
    let s = send(&name, &[], "ok\nabcd\ntoolong\nlater\n");
    assert_eq!(s.status.code(), Some(1));
    let err = text(&s.stderr);
    assert!(
        err.contains("line 3 has more than 4 bytes")
            && err.contains("value size")
            && err.contains("version 2"),
        "{err}"
    );
    let r = run(&["recv", &name, "--count", "1", "--timeout", "5s"]);
    ok(&r);
    assert_eq!(text(&r.stdout), "abcd\n");
    // Exactly the size is a value.
    ok(&send(&name, &[], "wxyz"));
    let r = run(&["recv", &name, "--count", "1", "--timeout", "5s"]);
    assert_eq!(text(&r.stdout), "wxyz\n");
}

/// Kinds and modes that do not fit: one line each, exit 1; bad shapes for create too.
#[test]
fn wrong_kind_and_shape_errors() {
    let name = unique("lat-kind");
    let _c = Cleanup(name.clone());
    create(&name, &["--msg-size", "64"]);
    for (cmd, kind) in [("send", "spsc"), ("recv", "mpmc"), ("send", "broadcast")] {
        let o = if cmd == "send" {
            send(&name, &["--kind", kind], "x\n")
        } else {
            run(&["recv", &name, "--kind", kind, "--timeout", "1s"])
        };
        assert_eq!(o.status.code(), Some(1), "{cmd} --kind {kind}");
        let err = text(&o.stderr);
        assert!(
            err.contains("exists as latest (4 slots, values up to 64 bytes)")
                && err.contains(&format!("--kind {kind} does not apply")),
            "{err}"
        );
    }
    let o = run(&["recv", &name, "--raw", "--timeout", "1s"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("--raw does not apply"),
        "{}",
        text(&o.stderr)
    );
    // A larger --msg-size or other slots than the channel's.
    let o = send(&name, &["--msg-size", "65"], "x\n");
    assert!(text(&o.stderr).contains("--msg-size 65 does not apply"));
    let o = send(&name, &["--capacity", "8"], "x\n");
    assert!(text(&o.stderr).contains("--capacity 8 does not apply"));
    // The other way: --kind latest on an spsc channel.
    let spsc = unique("lat-spsc");
    let _c2 = Cleanup(spsc.clone());
    ok(&run(&["create", &spsc]));
    let o = send(&spsc, &["--kind", "latest"], "x\n");
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("exists as spsc")
            && text(&o.stderr).contains("--kind latest does not apply")
    );
    // Slots and sizes out of range.
    let bad = unique("lat-bad");
    let _c3 = Cleanup(bad.clone());
    for (args, says) in [
        (&["--capacity", "3"][..], "power of two from 2 to 65536"),
        (
            &["--capacity", "131072"][..],
            "power of two from 2 to 65536",
        ),
        (&["--msg-size", "0"][..], "1 to 1048576 bytes"),
        (&["--msg-size", "1048577"][..], "1 to 1048576 bytes"),
    ] {
        let mut a = vec!["create", bad.as_str(), "--kind", "latest"];
        a.extend_from_slice(args);
        let o = run(&a);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        assert!(
            text(&o.stderr).contains(says),
            "{args:?}: {}",
            text(&o.stderr)
        );
        assert!(!std::path::Path::new(&format!("/dev/shm/{bad}")).exists());
    }
}

/// `ls` and `stat` show the kind, value size, slots and current version; `rm` removes it.
#[test]
fn ls_stat_rm_rows() {
    let name = unique("lat-ls");
    let _c = Cleanup(name.clone());
    create(&name, &["--msg-size", "48", "--capacity", "8"]);
    let row = |name: &str| {
        let o = run(&["ls"]);
        ok(&o);
        let t = text(&o.stdout);
        let line = t
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no row for {name} in {t}"));
        line.split_whitespace()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    // NAME BACKEND SIZE KIND CAPACITY MSG LEN ...
    let r = row(&name);
    assert_eq!(&r[3..7], ["latest", "8", "48", "v0"], "{r:?}");
    let st = text(&run(&["stat", &name]).stdout);
    assert!(
        st.contains("channel   Latest, 8 slots, values up to 48 bytes"),
        "{st}"
    );
    assert!(st.contains("value     never written (version 0)"), "{st}");
    ok(&send(&name, &[], "a\nb\n"));
    assert_eq!(&row(&name)[3..7], ["latest", "8", "48", "v2"]);
    let st = text(&run(&["stat", &name]).stdout);
    assert!(st.contains("value     version 2;"), "{st}");
    assert!(st.contains("written   2 values, 2 payload bytes"), "{st}");
    let j: serde_json::Value =
        serde_json::from_slice(&run(&["stat", &name, "--json"]).stdout).unwrap();
    assert_eq!(j["kind"], "latest");
    assert_eq!(j["version"], 2);
    assert_eq!(j["capacity"], 8);
    assert_eq!(j["msg_size"], 48);
    ok(&run(&["rm", &name]));
    assert!(!std::path::Path::new(&format!("/dev/shm/{name}")).exists());
}

/// A segment whose newest value stays mid-write (its slot's seq overwritten odd, as a hostile
/// or broken writer would leave it): every read races "a write", and `recv` gives up with one
/// line after about a second instead of spinning until its timeout.
#[test]
fn recv_gives_up_on_a_value_that_stays_mid_write() {
    use std::os::unix::fs::FileExt;
    let name = unique("lat-busy");
    let _c = Cleanup(name.clone());
    create(&name, &["--msg-size", "8"]);
    ok(&send(&name, &[], "x\n"));
    let j: serde_json::Value =
        serde_json::from_slice(&run(&["stat", &name, "--json"]).stdout).unwrap();
    let ring = j["regions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "ring")
        .unwrap()["offset"]
        .as_u64()
        .unwrap();
    // Slot 0 (ticket 0, the only write): its seq word at ring + 384, 2 when done; 1 is
    // "ticket 0 writing".
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(format!("/dev/shm/{name}"))
        .unwrap();
    let mut w = [0u8; 8];
    f.read_exact_at(&mut w, ring + 384).unwrap();
    assert_eq!(u64::from_ne_bytes(w), 2, "the layout of docs/design.md");
    f.write_all_at(&1u64.to_ne_bytes(), ring + 384).unwrap();
    let t = Instant::now();
    let o = run(&["recv", &name, "--count", "1", "--timeout", "20s"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("busy"), "{}", text(&o.stderr));
    assert!(o.stdout.is_empty());
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
}
