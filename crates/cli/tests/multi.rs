//! `shmlane recv A B C`: several channels received by one process through `Select`, their
//! lines interleaved as they come, each prefixed with its channel with --prefix; real `send`
//! processes on every kind; a killed sender; the refusals.

use std::{
    fmt::Write as _,
    io::Write,
    process::{Command, Output, Stdio},
    time::Duration,
};

use shmlane_testkit::unique;

fn shmlane() -> Command {
    Command::new(env!("CARGO_BIN_EXE_shmlane"))
}

/// Live processes attached to `name` as senders (`stat --json`).
fn senders_of(name: &str) -> u64 {
    let o = run(&["stat", name, "--json"]);
    serde_json::from_slice::<serde_json::Value>(&o.stdout)
        .ok()
        .and_then(|v| v["senders"].as_u64())
        .unwrap_or(0)
}

fn run(args: &[&str]) -> Output {
    shmlane().args(args).output().expect("run shmlane")
}

/// Removes the channels at the end, whatever happened.
struct Rm(Vec<String>);

impl Drop for Rm {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = std::fs::remove_file(format!("/dev/shm/{n}"));
        }
    }
}

/// Three channels of three kinds (spsc, bytes, mpmc with two senders), 3,000 lines each from
/// four `shmlane send` processes that run at once, into one `shmlane recv --prefix`: every
/// line once, in order per sender, under its channel's name; exit 0 once every channel's
/// senders have left.
#[test]
fn one_recv_takes_every_line_of_three_channels_from_four_senders() {
    let names = [
        unique("multi-spsc"),
        unique("multi-bytes"),
        unique("multi-mpmc"),
    ];
    let _rm = Rm(names.to_vec());
    for (n, kind) in names.iter().zip(["spsc", "bytes", "mpmc"]) {
        let o = run(&["create", n, "--kind", kind, "--msg-size", "64"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let recv = shmlane()
        .args(["recv", "--prefix", "--timeout", "60s"])
        .args(&names)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Its output is read while the senders run (a full pipe would stop it).
    let recv = std::thread::spawn(move || recv.wait_with_output().unwrap());
    // Let the receiver attach first (a sender that finds no receiver waits for one anyway).
    std::thread::sleep(Duration::from_millis(200));
    let plan = [(0, "s"), (1, "b"), (2, "m"), (2, "n")];
    let mut senders: Vec<_> = plan
        .iter()
        .map(|&(i, _)| {
            shmlane()
                .args(["send", &names[i], "--timeout", "60s"])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    // Every sender attached before any sends: the receiver ends a channel once the senders
    // it saw have left, so an MPMC sender that finished before the other joined would end
    // the channel for it (CI saw that once: "every receiver ... has left").
    let t = std::time::Instant::now();
    while [1, 1, 2]
        .iter()
        .zip(&names)
        .any(|(&want, n)| senders_of(n) < want)
    {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the senders never attached"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    for (c, &(_, tag)) in senders.iter_mut().zip(&plan) {
        let mut lines = String::new();
        for k in 0..3000 {
            writeln!(lines, "{tag}{k}").unwrap();
        }
        c.stdin.take().unwrap().write_all(lines.as_bytes()).unwrap();
    }
    for mut s in senders {
        assert!(s.wait().unwrap().success());
    }
    let o = recv.join().unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let out = String::from_utf8(o.stdout).unwrap();
    let mut next = std::collections::HashMap::new();
    for line in out.lines() {
        let (chan, msg) = line.split_once(": ").expect("prefixed line");
        let tag = &msg[..1];
        let k: u32 = msg[1..].parse().unwrap();
        let i = names
            .iter()
            .position(|n| n == chan)
            .expect("a known channel");
        assert!(
            ["s", "b", "m"][i] == tag || (i == 2 && tag == "n"),
            "{line} under the wrong channel"
        );
        let want = next.entry(tag.to_owned()).or_insert(0);
        assert_eq!(k, *want, "{tag}: lost, duplicated or reordered at {line}");
        *want += 1;
    }
    for tag in ["s", "b", "m", "n"] {
        assert_eq!(next.get(tag), Some(&3000), "{tag}");
    }
}

/// A sender killed while `recv A B` waits: exit 3 naming the channel, after what it sent.
#[test]
fn a_killed_sender_of_one_channel_ends_recv_with_exit_3() {
    let names = [unique("multi-kill-a"), unique("multi-kill-b")];
    let _rm = Rm(names.to_vec());
    for n in &names {
        assert!(run(&["create", n, "--kind", "spsc"]).status.success());
    }
    let recv = shmlane()
        .args(["recv", "--timeout", "30s"])
        .args(&names)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut sender = shmlane()
        .args(["send", &names[1]])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = sender.stdin.take().unwrap();
    stdin.write_all(b"before\n").unwrap();
    stdin.flush().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    sender.kill().unwrap();
    sender.wait().unwrap();
    let o = recv.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert_eq!(String::from_utf8_lossy(&o.stdout), "before\n");
    assert!(err.contains(&names[1]) && err.contains("died"), "{err}");
}

/// What several channels cannot be: a latest-value channel, a --raw stream, --prefix with
/// --framed. Each a clear error, before anything is received.
#[test]
fn several_channels_refuse_what_does_not_interleave() {
    let names = [unique("multi-no-a"), unique("multi-no-l")];
    let _rm = Rm(names.to_vec());
    assert!(
        run(&["create", &names[0], "--kind", "spsc"])
            .status
            .success()
    );
    assert!(
        run(&["create", &names[1], "--kind", "latest", "--msg-size", "64"])
            .status
            .success()
    );
    let o = run(&["recv", &names[0], &names[1], "--timeout", "1s"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&names[1]) && err.contains("latest-value") && err.contains("alone"),
        "{err}"
    );
    let o = run(&["recv", &names[0], &names[0], "--raw"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--raw"));
    let o = run(&["recv", &names[0], "--prefix", "--framed"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--prefix"));
}
