//! The `shmlane` command against real segments, run as real processes.

use std::{
    io::Write,
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use shmlane_testkit::{Cleanup, unique};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_shmlane"))
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("run shmlane")
}

fn lines(n: u64, prefix: &str) -> String {
    use std::fmt::Write as _;
    (1..=n).fold(String::new(), |mut s, i| {
        let _ = writeln!(s, "{prefix}{i}");
        s
    })
}

/// Spawns `shmlane send NAME ARGS` fed with `input` on a thread.
fn spawn_send(name: &str, args: &[&str], input: String) -> std::thread::JoinHandle<Output> {
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
    std::thread::spawn(move || {
        stdin.write_all(input.as_bytes()).expect("feed send");
        drop(stdin);
        child.wait_with_output().unwrap()
    })
}

fn spawn_recv(name: &str, args: &[&str]) -> std::thread::JoinHandle<Output> {
    let child = bin()
        .arg("recv")
        .arg(name)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn recv");
    std::thread::spawn(move || child.wait_with_output().unwrap())
}

fn gone(name: &str) -> bool {
    !std::path::Path::new(&format!("/dev/shm/{name}")).exists()
}

/// `seq 1000000 | shmlane send q` and `shmlane recv q > out`, started in either order: `out`
/// equals the input, both exit 0, and the implicitly created channel is removed.
#[test]
fn send_recv_million_lines_either_order() {
    let input = lines(1_000_000, "");
    for recv_first in [false, true] {
        let name = unique(&format!("cli-sr-{recv_first}"));
        let _c = Cleanup(name.clone());
        let (send, recv) = if recv_first {
            let r = spawn_recv(&name, &[]);
            std::thread::sleep(Duration::from_millis(100));
            (spawn_send(&name, &[], input.clone()), r)
        } else {
            let s = spawn_send(&name, &[], input.clone());
            std::thread::sleep(Duration::from_millis(100));
            (s, spawn_recv(&name, &[]))
        };
        let (s, r) = (send.join().unwrap(), recv.join().unwrap());
        assert!(
            s.status.success(),
            "send: {}",
            String::from_utf8_lossy(&s.stderr)
        );
        assert!(
            r.status.success(),
            "recv: {}",
            String::from_utf8_lossy(&r.stderr)
        );
        assert!(
            r.stdout == input.as_bytes(),
            "recv output differs from the input"
        );
        assert!(gone(&name), "implicit channel left behind");
    }
}

/// MPMC with two senders and two receivers: the union of the outputs is the union of the
/// inputs, nothing duplicated, and each receiver sees each sender's lines in order.
#[test]
fn mpmc_two_senders_two_receivers() {
    let name = unique("cli-mpmc");
    let _c = Cleanup(name.clone());
    let mpmc = ["--kind", "mpmc", "--capacity", "4096"];
    let created = run(&[&["create", &name][..], &mpmc[..]].concat());
    assert!(created.status.success());
    let n = 200_000;
    let senders: Vec<_> = ["a", "b"]
        .iter()
        .map(|p| spawn_send(&name, &mpmc, lines(n, p)))
        .collect();
    let receivers: Vec<_> = (0..2).map(|_| spawn_recv(&name, &[])).collect();
    for s in senders {
        let o = s.join().unwrap();
        assert!(
            o.status.success(),
            "send: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let mut all: Vec<String> = Vec::new();
    for r in receivers {
        let o = r.join().unwrap();
        assert!(
            o.status.success(),
            "recv: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let text = String::from_utf8(o.stdout).unwrap();
        let mut last = [0u64; 2];
        for l in text.lines() {
            let (who, i) = l.split_at(1);
            let i: u64 = i.parse().unwrap();
            let k = usize::from(who == "b");
            assert!(i > last[k], "{l} after {who}{}", last[k]);
            last[k] = i;
            all.push(l.to_owned());
        }
    }
    all.sort_unstable();
    let mut want: Vec<String> = ["a", "b"]
        .iter()
        .flat_map(|p| (1..=n).map(move |i| format!("{p}{i}")))
        .collect();
    want.sort_unstable();
    assert_eq!(all.len(), want.len(), "lost or duplicated lines");
    assert!(all == want, "outputs differ from inputs");
    // A channel made by `create` persists until removed.
    assert!(!gone(&name));
    assert!(run(&["rm", &name]).status.success());
    assert!(gone(&name));
}

/// SIGKILL of `shmlane send` mid-stream: `recv` prints only whole lines that were sent, in
/// order, then exits 3 (peer gone); `ls` shows the segment as stale; `rm --stale` removes it.
#[test]
fn killed_sender_gives_peer_gone_and_a_stale_segment() {
    let name = unique("cli-kill");
    let _c = Cleanup(name.clone());
    let mut send = bin()
        .args(["send", &name])
        .stdin(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = send.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        // Far more than the ring holds: the sender is mid-stream when killed.
        for i in 1..=10_000_000u64 {
            if writeln!(stdin, "{i:0>12}").is_err() {
                return;
            }
        }
    });
    let recv = spawn_recv(&name, &[]);
    std::thread::sleep(Duration::from_millis(300));
    send.kill().unwrap();
    let killed_at = Instant::now();
    send.wait().unwrap();
    let out = recv.join().unwrap();
    let took = killed_at.elapsed();
    feeder.join().unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("peer gone"), "{err}");
    assert_eq!(err.lines().count(), 1, "one line on stderr: {err}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "a partial line was printed"
    );
    for (k, l) in text.lines().enumerate() {
        assert_eq!(l, format!("{:0>12}", k + 1), "line {k} wrong");
    }
    println!(
        "recv got {} lines and exited 3 {took:?} after the kill",
        text.lines().count()
    );
    let ls = run(&["ls", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&ls.stdout).unwrap();
    let me = v
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name.as_str())
        .expect("segment listed");
    assert_eq!(me["state"], "stale");
    let rm = run(&["rm", "--stale"]);
    assert!(String::from_utf8_lossy(&rm.stdout).contains(&format!("removed {name}")));
    assert!(gone(&name));
}

/// `ls --json` objects have exactly the contract's keys; `stat` shows the ring; a live
/// segment is not removed without `--force`.
#[test]
fn ls_json_keys_stat_and_rm_refusal() {
    let name = unique("cli-ls");
    let _c = Cleanup(name.clone());
    let o = run(&[
        "create",
        &name,
        "--kind",
        "spsc",
        "--capacity",
        "1024",
        "--msg-size",
        "100",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut send = bin()
        .args(["send", &name])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = send.stdin.take().unwrap();
    writeln!(stdin, "hello").unwrap();
    writeln!(stdin, "world").unwrap();
    stdin.flush().unwrap();
    let t0 = Instant::now();
    let me = loop {
        let v: serde_json::Value = serde_json::from_slice(&run(&["ls", "--json"]).stdout).unwrap();
        let me = v
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name.as_str())
            .cloned()
            .unwrap();
        // `ls` reads the attachment table before the ring: one listing can show the ring
        // after the sender's two lines and the table from before it attached (idle).
        if me["len"] == 2 && me["state"] == "live" || t0.elapsed() > Duration::from_secs(20) {
            break me;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut keys: Vec<&str> = me.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "attached",
            "backend",
            "bridged_by",
            "capacity",
            "kind",
            "len",
            "mode",
            "msg_size",
            "name",
            "path",
            "problem",
            "size",
            "state",
            "uid",
            "version"
        ]
    );
    assert_eq!(me["kind"], "spsc");
    assert_eq!(me["capacity"], 1024);
    assert_eq!(me["msg_size"], 100);
    assert_eq!(me["len"], 2);
    assert_eq!(me["state"], "live");
    assert_eq!(me["attached"][0]["role"], "sender");
    assert_eq!(me["attached"][0]["alive"], true);
    let st = run(&["stat", &name]);
    let text = String::from_utf8_lossy(&st.stdout);
    assert!(
        text.contains("write position 2, read position 0, 2 queued"),
        "{text}"
    );
    let rm = run(&["rm", &name]);
    assert_eq!(rm.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&rm.stderr).contains("live"));
    // Receive the two, then let the sender finish.
    let r = run(&["recv", &name, "--count", "2"]);
    assert_eq!(String::from_utf8_lossy(&r.stdout), "hello\nworld\n");
    drop(stdin);
    assert!(send.wait().unwrap().success());
    assert!(run(&["rm", &name]).status.success());
}

/// Bad input: one clear line on stderr and the contract's exit codes, never a panic.
#[test]
fn errors_are_one_line_with_contract_exit_codes() {
    let name = unique("cli-err");
    let _c = Cleanup(name.clone());
    // A line longer than the message size names the limit.
    let s = spawn_send(
        &name,
        &["--msg-size", "8"],
        "short\nthis line is too long\n".into(),
    );
    // The same shape: whichever of the two starts first creates the channel (a receiver
    // creating it with the default 256-byte messages made the sender's --msg-size 8 a
    // conflicting flag, refused, when the receiver won that race).
    let r = spawn_recv(&name, &["--msg-size", "8", "--timeout", "5s"]);
    let so = s.join().unwrap();
    assert_eq!(so.status.code(), Some(1));
    let err = String::from_utf8_lossy(&so.stderr);
    assert!(err.contains("line 2") && err.contains("8 bytes"), "{err}");
    assert_eq!(err.lines().count(), 1);
    let ro = r.join().unwrap();
    assert_eq!(String::from_utf8_lossy(&ro.stdout), "short\n");
    // Timeout on an empty channel: exit 4.
    let t = run(&["recv", &name, "--timeout", "100ms"]);
    assert_eq!(
        t.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&t.stderr)
    );
    // Unknown segment, bad capacity, bad duration: exit 1 (clap's usage errors exit 2).
    for args in [
        &["stat", "no-such-segment-xyz"][..],
        &["create", &name, "--capacity", "1000"][..],
    ] {
        let o = run(args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        let e = String::from_utf8_lossy(&o.stderr);
        assert_eq!(e.lines().count(), 1, "{e}");
        assert!(!e.contains("panicked"), "{e}");
    }
}

/// CPU ticks (utime + stime) of a process, from /proc.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let f: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..]
        .split_whitespace()
        .collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// A `shmlane recv` waiting on an empty channel uses near-zero CPU, measured over 2 s.
#[test]
fn waiting_recv_idles() {
    let name = unique("cli-idle");
    let _c = Cleanup(name.clone());
    let mut recv = bin()
        .args(["recv", &name, "--timeout", "10s"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let before = cpu_ticks(recv.id());
    std::thread::sleep(Duration::from_secs(2));
    let used = cpu_ticks(recv.id()) - before;
    recv.kill().unwrap();
    recv.wait().unwrap();
    println!("recv used {used} ticks (1/100 s) in 2 s while waiting");
    assert!(used <= 10, "a waiting recv used {used} ticks in 2 s");
}

/// `shmlane bench --quick` prints every transport, and writes the JSON records and plots.
#[test]
fn bench_quick_prints_table_json_and_plots() {
    let dir = std::env::temp_dir().join(unique("bench"));
    let json = dir.join("bench.json");
    std::fs::create_dir_all(&dir).unwrap();
    let o = run(&[
        "bench",
        "--quick",
        "--json",
        json.to_str().unwrap(),
        "--plot",
        dir.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    // One round with fewer samples: labelled a smoke test (issue 18).
    assert!(
        text.lines()
            .any(|l| l.starts_with("--quick is a smoke test only")),
        "{text}"
    );
    // The MPMC large-message regression row, a ratio taken within the round.
    assert!(
        text.lines().any(|l| l.starts_with("mpmc/spsc rtt 64 KiB")),
        "{text}"
    );
    for t in [
        "hw-cacheline",
        "shmlane-spsc-spin",
        "shmlane-spsc-park",
        "shmlane-spsc-spinpark",
        "shmlane-spsc-chunk",
        "shmlane-mpmc-spin",
        "pipe",
        "uds-stream",
        "uds-seqpacket",
        "eventfd",
        "memcpy",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(t)),
            "no row for {t}:\n{text}"
        );
    }
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    // The machine's cores, not the pinned harness's affinity mask.
    let online = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    assert_eq!(v["machine"]["cores"].as_u64().unwrap(), online as u64);
    assert_eq!(v["level"], "quick");
    assert!(v["note"].as_str().unwrap().contains("smoke test"));
    let check = &v["ratios"].as_array().unwrap()[0];
    assert_eq!(check["msg_size"], 65536);
    assert!(check["median"].as_f64().unwrap() > 0.0);
    let recs = v["records"].as_array().unwrap();
    for r in recs {
        // Each round's figure with the hardware ping-pong measured just before it.
        let rounds = r["rounds"].as_array().unwrap();
        assert_eq!(rounds.len(), 1, "{r}");
        assert!(
            online < 2 || rounds[0]["hw_p50_ns"].as_u64().unwrap() > 0,
            "{r}"
        );
        match r["metric"].as_str().unwrap() {
            "rtt" => assert!(
                r["p50_ns"].as_u64().unwrap() > 0 && r["p999_ns"].as_u64() >= r["p50_ns"].as_u64()
            ),
            "throughput" => assert!(r["msgs_per_s"].as_f64().unwrap() > 0.0),
            m => panic!("metric {m}"),
        }
    }
    for size in [8, 64, 1024, 65536] {
        assert!(
            recs.iter()
                .any(|r| r["transport"] == "pipe" && r["metric"] == "rtt" && r["msg_size"] == size)
        );
    }
    assert!(
        std::fs::read_to_string(dir.join("rtt.svg"))
            .unwrap()
            .starts_with("<svg")
    );
    assert!(
        std::fs::read_to_string(dir.join("throughput.svg"))
            .unwrap()
            .starts_with("<svg")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bench_filters_select_and_reject() {
    let o = run(&[
        "bench",
        "--quick",
        "--only",
        "shmlane-spsc-spin,pipe",
        "--size",
        "64",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    let rows: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("shmlane-") || l.starts_with("pipe"))
        .collect();
    // One round-trip row and one streaming row for each of the two transports.
    assert_eq!(rows.len(), 4, "{text}");
    assert!(
        text.contains("64 B messages") && !text.contains("8 B messages"),
        "{text}"
    );

    let o = run(&["bench", "--only", "carrier-pigeon"]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("carrier-pigeon") && err.contains("shmlane-spsc-spin"),
        "{err}"
    );
    let o = run(&["bench", "--size", "100"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("65536"));
    // Filters that select nothing are an error, not an empty table (review rev18).
    let o = run(&["bench", "--only", "hw-cacheline", "--size", "64"]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("nothing to measure") && err.contains("hw-cacheline"),
        "{err}"
    );
    assert!(
        o.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
}

/// `--kind bytes`: lines of any length up to the largest record (empty ones too), from two
/// senders, in order per sender; a line too long is refused with a clear error after the
/// earlier lines were delivered.
#[test]
fn bytes_channel_lines_of_any_length() {
    let name = unique("cli-bytes");
    let _c = Cleanup(name.clone());
    let out = run(&["create", &name, "--kind", "bytes", "--capacity", "65536"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let long = "x".repeat(8000);
    let input_a = format!("a1\n\n{long}\na2\n");
    // Both senders attach first (they stay until their lines are taken): a receiver that
    // drained one sender's lines after it left, with the other not attached yet, would end.
    let a = spawn_send(&name, &[], input_a);
    let b = spawn_send(&name, &[], "b1\nb2\n".to_owned());
    let t0 = Instant::now();
    while !String::from_utf8_lossy(&run(&["stat", &name]).stdout).contains("2 senders") {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the senders did not attach"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let rx = spawn_recv(&name, &["--count", "6", "--timeout", "30s"]);
    assert!(a.join().unwrap().status.success());
    assert!(b.join().unwrap().status.success());
    let out = rx.join().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = String::from_utf8(out.stdout).unwrap();
    let got: Vec<&str> = got.lines().collect();
    assert_eq!(got.len(), 6);
    let from_a: Vec<&str> = got
        .iter()
        .copied()
        .filter(|l| !l.starts_with('b'))
        .collect();
    assert_eq!(from_a, ["a1", "", long.as_str(), "a2"]);
    let from_b: Vec<&str> = got.iter().copied().filter(|l| l.starts_with('b')).collect();
    assert_eq!(from_b, ["b1", "b2"]);
    // The largest record of a 64 KiB ring is 8184 bytes. (The sender goes first: a receiver
    // that finds every earlier sender gone and the ring empty ends at once, Disconnected.)
    let tx = spawn_send(&name, &[], format!("ok\n{}\n", "y".repeat(8185)));
    let t0 = Instant::now();
    // 6 lines, "ok", and the mark of the failure (the too-long line) for its receiver.
    while !String::from_utf8_lossy(&run(&["stat", &name]).stdout).contains("sent      8 messages") {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the sender did not send"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let rx = spawn_recv(&name, &["--count", "1", "--timeout", "30s"]);
    let out = tx.join().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    // The line is refused once 8185 of its bytes are read (never buffered whole: review revc).
    assert!(err.contains("line 2 has more than 8184 bytes"), "{err}");
    assert_eq!(rx.join().unwrap().stdout, b"ok\n");
    let stat = String::from_utf8(run(&["stat", &name]).stdout).unwrap();
    assert!(
        stat.contains("Bytes") && stat.contains("messages up to 8184 bytes"),
        "{stat}"
    );
    assert!(run(&["rm", &name]).status.success());
}

/// `--kind broadcast`: every receiver gets every line it does not fall behind on; one stopped
/// (SIGSTOP) while the ring laps reports its exact loss on stderr and goes on with the newest.
#[test]
fn broadcast_channel_fans_out_and_reports_loss() {
    let name = unique("cli-bcast");
    let _c = Cleanup(name.clone());
    let out = run(&[
        "create",
        &name,
        "--kind",
        "broadcast",
        "--capacity",
        "256",
        "--msg-size",
        "32",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r1 = spawn_recv(&name, &["--timeout", "60s"]);
    let r2 = spawn_recv(&name, &["--timeout", "60s"]);
    let stopped = bin()
        .args(["recv", &name, "--timeout", "60s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = nix::unistd::Pid::from_raw(i32::try_from(stopped.id()).unwrap());
    let t0 = Instant::now();
    while !String::from_utf8_lossy(&run(&["stat", &name]).stdout).contains("3 receivers") {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "receivers did not attach"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    let out = spawn_send(&name, &[], lines(1000, "m")).join().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).unwrap();
    // The running receivers: lines in order, and what they got plus what they were told they
    // lost is every line (on two cores they may be descheduled long enough to be lapped).
    for r in [r1, r2] {
        let r = r.join().unwrap();
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        let got: Vec<u64> = String::from_utf8(r.stdout)
            .unwrap()
            .lines()
            .map(|l| l[1..].parse().unwrap())
            .collect();
        assert!(got.windows(2).all(|w| w[0] < w[1]), "out of order");
        let lost: u64 = String::from_utf8_lossy(&r.stderr)
            .lines()
            .filter_map(|l| {
                l.split("lost ")
                    .nth(1)?
                    .split(' ')
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .sum();
        assert_eq!(got.len() as u64 + lost, 1000);
    }
    // The stopped one was lapped: it lost exactly the 999 it never saw, then got the newest.
    let out = stopped.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "m1000\n");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("lost 999 messages"), "{err}");
    let stat = String::from_utf8(run(&["stat", &name]).stdout).unwrap();
    assert!(stat.contains("sent      1000 messages"), "{stat}");
    assert!(run(&["rm", &name]).status.success());
}

/// `stat` shows the endpoints attached with `Wakes::Never` (text and JSON), which make their
/// peers' blocking calls poll every millisecond.
#[test]
fn stat_shows_never_waking_endpoints() {
    let name = shmlane_testkit::unique("cli-never");
    let _c = shmlane_testkit::Cleanup(name.clone());
    let ch = shmlane::spsc::<u64>(&name)
        .unlink(shmlane::UnlinkPolicy::CreatorDrop)
        .create()
        .unwrap();
    let mut rx = ch.consumer().unwrap();
    let text = String::from_utf8(run(&["stat", &name]).stdout).unwrap();
    assert!(
        text.contains("never     0 senders, 0 receivers never wake their peers (Wakes::Never)\n"),
        "{text}"
    );
    rx.set_wakes(shmlane::Wakes::Never);
    let text = String::from_utf8(run(&["stat", &name]).stdout).unwrap();
    assert!(
        text.contains(
            "never     0 senders, 1 receivers never wake their peers (Wakes::Never); blocked peers look again every 1 ms"
        ),
        "{text}"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&run(&["stat", &name, "--json"]).stdout).unwrap();
    assert_eq!(json["never_waking"]["senders"], 0);
    assert_eq!(json["never_waking"]["receivers"], 1);
    drop(rx);
}
