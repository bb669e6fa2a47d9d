//! The `shmlane` command across a channel's life, run as real processes: interrupts,
//! closed output pipes, waiting for senders, restarts and stale names (issue 16).

use std::{
    io::{BufRead, BufReader, Write},
    os::unix::process::ExitStatusExt,
    path::PathBuf,
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use nix::{sys::signal::Signal, unistd::Pid};
use shmlane_testkit::{Cleanup, unique};

/// The command, with SIGINT, SIGTERM and SIGHUP at their default disposition: `shmlane` keeps
/// signals it inherits as ignored (as `nohup` and `cmd &` in a script ask), and a test harness
/// started that way (CI under `nohup`) would otherwise pass that on to every child it spawns.
fn bin() -> Command {
    use std::os::unix::process::CommandExt as _;
    let mut c = Command::new(env!("CARGO_BIN_EXE_shmlane"));
    // SAFETY: between fork and exec the closure only calls sigaction (async-signal-safe) and
    // allocates nothing.
    unsafe {
        c.pre_exec(|| {
            for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
                nix::sys::signal::signal(sig, nix::sys::signal::SigHandler::SigDfl)
                    .map_err(std::io::Error::from)?;
            }
            Ok(())
        });
    }
    c
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

fn path(name: &str) -> PathBuf {
    PathBuf::from(format!("/dev/shm/{name}"))
}

fn gone(name: &str) -> bool {
    !path(name).exists()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `shmlane recv NAME ARGS`, output piped.
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

/// `shmlane send NAME ARGS`, its input piped and left open.
fn spawn_send(name: &str, args: &[&str]) -> Child {
    bin()
        .arg("send")
        .arg(name)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn send")
}

/// `shmlane send NAME ARGS` fed `input` (then its input closed), on a thread.
fn send_lines(name: &str, args: &[&str], input: String) -> std::thread::JoinHandle<Output> {
    let mut child = spawn_send(name, args);
    let mut stdin = child.stdin.take().unwrap();
    std::thread::spawn(move || {
        // The sender may leave early (that is what some tests check): ignore EPIPE.
        let _ = stdin.write_all(input.as_bytes());
        drop(stdin);
        child.wait_with_output().unwrap()
    })
}

/// Waits for `child` at most `limit`, then kills it: its output, and how long it took.
fn finish(mut child: Child, limit: Duration) -> (Output, Duration) {
    let t0 = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return (child.wait_with_output().unwrap(), t0.elapsed());
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "process still running after {limit:?}; killed: {}",
                stderr(&out)
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The segment as `inspect` sees it (None if it does not exist).
fn info(name: &str) -> Option<shmlane_segment::SegmentInfo> {
    shmlane_segment::inspect(&path(name)).ok().flatten()
}

/// Waits until process `pid` holds an endpoint of `role` on `name`, and `until` holds for
/// the channel (e.g. a number of queued messages).
fn wait_attached(name: &str, pid: u32, role: u32, until: impl Fn(&shmlane::ChannelStats) -> bool) {
    let t0 = Instant::now();
    loop {
        if let Some(i) = info(name) {
            let holds = i
                .attached
                .iter()
                .any(|a| a.pid == pid && a.alive && a.role & role != 0);
            if holds && shmlane::inspect(&i).is_some_and(|c| until(&c)) {
                return;
            }
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "process {pid} did not attach to {name} as role {role}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn kill(child: &Child, sig: Signal) {
    nix::sys::signal::kill(Pid::from_raw(child.id() as i32), sig).unwrap();
}

/// The exit code for `sig`, as shells report it.
fn code(sig: Signal) -> i32 {
    128 + sig as i32
}

/// The segment exists and no process, live or dead, is attached to it.
fn kept_clean(name: &str) {
    let i = info(name).unwrap_or_else(|| panic!("created channel {name} was removed"));
    assert!(
        i.attached.is_empty(),
        "{name} still has attachments: {:?}",
        i.attached
    );
    assert_eq!(i.state.to_string(), "idle", "{name}");
}

/// Gone, or kept only for unread messages with nothing attached (never stale); removed.
fn no_stale(name: &str) {
    if let Some(i) = info(name) {
        assert!(i.attached.is_empty(), "{name}: {:?}", i.attached);
        assert!(shmlane::inspect(&i).is_some_and(|c| c.len > 0), "{name}");
        assert!(run(&["rm", name]).status.success());
    }
}

/// A first run on `name`: `send` of ten lines and `recv` get every line, both exit 0 with
/// nothing on stderr (no blame for an earlier process).
fn first_run(name: &str) {
    let recv = spawn_recv(name, &["--timeout", "20s"]);
    let send = send_lines(name, &["--timeout", "10s"], lines(10, "n"));
    let (r, _) = finish(recv, Duration::from_secs(30));
    let s = send.join().unwrap();
    assert_eq!(s.status.code(), Some(0), "send: {}", stderr(&s));
    assert_eq!(r.status.code(), Some(0), "recv: {}", stderr(&r));
    assert_eq!(String::from_utf8_lossy(&r.stdout), lines(10, "n"));
    assert_eq!(stderr(&s), "", "send");
    assert_eq!(stderr(&r), "", "recv");
}

const SIGNALS: [Signal; 3] = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP];

/// SIGINT, SIGTERM and SIGHUP on a `recv` waiting for a sender: exit 128+signal, quietly,
/// within a second; an implicit channel is removed, a created one stays with nothing
/// attached; the next send/recv pair on the name behaves like a first run.
#[test]
fn signal_on_waiting_recv_leaves_nothing() {
    for created in [false, true] {
        for sig in SIGNALS {
            let name = unique(&format!("life-sigr-{created}-{}", sig as i32));
            let _c = Cleanup(name.clone());
            if created {
                assert!(run(&["create", &name]).status.success());
            }
            let recv = spawn_recv(&name, &[]);
            wait_attached(&name, recv.id(), shmlane::ROLE_RECEIVER, |_| true);
            kill(&recv, sig);
            let (out, took) = finish(recv, Duration::from_secs(10));
            assert_eq!(
                out.status.code(),
                Some(code(sig)),
                "{sig} on recv (created: {created}): {:?} {}",
                out.status.signal(),
                stderr(&out)
            );
            assert!(took < Duration::from_secs(1), "{sig}: took {took:?}");
            assert_eq!(stderr(&out), "", "{sig}: quiet");
            if created {
                kept_clean(&name);
            } else {
                assert!(gone(&name), "{sig}: implicit channel {name} left behind");
            }
            first_run(&name);
            if created {
                kept_clean(&name);
            } else {
                assert!(gone(&name));
            }
        }
    }
}

/// The same on a `send` waiting for input (its stdin open, no line yet): the blocked read is
/// interrupted, the command exits 128+signal within a second and leaves nothing.
#[test]
fn signal_on_send_waiting_for_input_leaves_nothing() {
    for created in [false, true] {
        for sig in SIGNALS {
            let name = unique(&format!("life-sigs-{created}-{}", sig as i32));
            let _c = Cleanup(name.clone());
            if created {
                assert!(run(&["create", &name]).status.success());
            }
            let send = spawn_send(&name, &[]);
            wait_attached(&name, send.id(), shmlane::ROLE_SENDER, |_| true);
            // Let it settle into its read of the input.
            std::thread::sleep(Duration::from_millis(100));
            kill(&send, sig);
            // `finish` keeps the input pipe open: only the signal can end the read.
            let (out, took) = finish(send, Duration::from_secs(10));
            assert_eq!(
                out.status.code(),
                Some(code(sig)),
                "{sig} on send (created: {created}): {:?} {}",
                out.status.signal(),
                stderr(&out)
            );
            assert!(took < Duration::from_secs(1), "{sig}: took {took:?}");
            assert_eq!(stderr(&out), "", "{sig}: quiet");
            if created {
                kept_clean(&name);
            } else {
                assert!(gone(&name), "{sig}: implicit channel {name} left behind");
            }
            first_run(&name);
        }
    }
}

/// A `send` whose input ended, waiting for a receiver to take its ten lines: a signal ends
/// it with 128+signal; it says that the ten lines were not delivered, and its implicit
/// channel goes with them (pipe-like), so the next pair on the name is a first run: no old
/// line replayed.
#[test]
fn signal_on_send_waiting_for_a_receiver() {
    for sig in SIGNALS {
        let name = unique(&format!("life-sigl-{}", sig as i32));
        let _c = Cleanup(name.clone());
        let mut send = spawn_send(&name, &[]);
        let mut stdin = send.stdin.take().unwrap();
        stdin.write_all(lines(10, "old").as_bytes()).unwrap();
        drop(stdin);
        wait_attached(&name, send.id(), shmlane::ROLE_SENDER, |c| c.len == 10);
        std::thread::sleep(Duration::from_millis(100));
        kill(&send, sig);
        let (out, took) = finish(send, Duration::from_secs(10));
        assert_eq!(
            out.status.code(),
            Some(code(sig)),
            "{sig}: {:?} {}",
            out.status.signal(),
            stderr(&out)
        );
        assert!(took < Duration::from_secs(1), "{sig}: took {took:?}");
        let err = stderr(&out);
        assert!(
            err.contains("10 messages were not delivered") && err.lines().count() == 1,
            "{sig}: {err}"
        );
        assert!(gone(&name), "{sig}: implicit channel {name} left behind");
        first_run(&name);
    }
}

/// A `recv` streaming into a pipe nobody reads (its writes blocked) still ends at once on a
/// signal, with 128+signal, and its implicit channel is removed once the sender is gone.
#[test]
fn signal_on_recv_blocked_writing_its_output() {
    for sig in SIGNALS {
        let name = unique(&format!("life-sigw-{}", sig as i32));
        let _c = Cleanup(name.clone());
        let send = send_lines(&name, &[], lines(200_000, ""));
        // Nobody reads its output: it fills the pipe and blocks in a write.
        let recv = spawn_recv(&name, &[]);
        wait_attached(&name, recv.id(), shmlane::ROLE_RECEIVER, |_| true);
        // 1.3 MB of lines against a 64 KiB pipe: blocked long before this.
        std::thread::sleep(Duration::from_millis(500));
        kill(&recv, sig);
        let t0 = Instant::now();
        // Not `finish`: reading its output would unblock it.
        let mut recv = recv;
        let status = loop {
            if let Some(st) = recv.try_wait().unwrap() {
                break st;
            }
            if t0.elapsed() > Duration::from_secs(5) {
                let _ = recv.kill();
                panic!("{sig}: recv blocked on its output did not stop");
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        assert_eq!(status.code(), Some(code(sig)), "{sig}: {status:?}");
        let s = send.join().unwrap();
        assert_ne!(
            s.status.code(),
            Some(0),
            "send cannot have delivered it all"
        );
        no_stale(&name);
    }
}

/// `recv | head -1`: once `head` has gone, `recv` ends quietly (no message, exit 141 as for
/// SIGPIPE), whether it is streaming or waiting for the next message.
#[test]
fn recv_into_a_closed_pipe_is_quiet() {
    // Streaming: a million lines, `head` takes one.
    let name = unique("life-pipe");
    let _c = Cleanup(name.clone());
    let send = send_lines(&name, &[], lines(1_000_000, ""));
    let mut recv = spawn_recv(&name, &[]);
    let head = Command::new("head")
        .arg("-1")
        .stdin(Stdio::from(recv.stdout.take().unwrap()))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&head.stdout), "1\n");
    let (out, _) = finish(recv, Duration::from_secs(20));
    assert_eq!(out.status.code(), Some(141), "{}", stderr(&out));
    assert_eq!(stderr(&out), "", "quiet");
    let s = send.join().unwrap();
    // The lines it sent that nobody read went with the implicit channel, and it says so.
    assert!(stderr(&s).contains("were not delivered"), "{}", stderr(&s));
    assert!(gone(&name), "implicit channel {name} left behind");
    no_stale(&name);

    // Waiting: one line arrives, `head` takes it and leaves; no further message comes.
    let name = unique("life-pipe-idle");
    let _c = Cleanup(name.clone());
    assert!(run(&["create", &name]).status.success());
    let mut recv = spawn_recv(&name, &["--timeout", "20s"]);
    let mut head = Command::new("head")
        .arg("-1")
        .stdin(Stdio::from(recv.stdout.take().unwrap()))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    wait_attached(&name, recv.id(), shmlane::ROLE_RECEIVER, |_| true);
    let mut sender = spawn_send(&name, &[]);
    let mut stdin = sender.stdin.take().unwrap();
    stdin.write_all(b"only\n").unwrap();
    let mut first = String::new();
    BufReader::new(head.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert_eq!(first, "only\n");
    head.wait().unwrap();
    let (out, took) = finish(recv, Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(141), "{}", stderr(&out));
    assert_eq!(stderr(&out), "", "quiet");
    assert!(took < Duration::from_secs(2), "took {took:?}");
    drop(stdin);
    let (s, _) = finish(sender, Duration::from_secs(10));
    assert_eq!(s.status.code(), Some(0), "{}", stderr(&s));
    kept_clean(&name);
}

const KINDS: [&str; 4] = ["spsc", "mpmc", "bytes", "broadcast"];

/// On a created channel whose earlier session has ended (a sender came, was read, left), a
/// new `recv --timeout 3s` waits the 3 s for a sender and exits 4; one whose sender starts
/// 1 s later receives its lines and exits 0 when it leaves. Every kind.
#[test]
fn recv_timeout_waits_for_a_sender() {
    for kind in KINDS {
        let name = unique(&format!("life-wait-{kind}"));
        let _c = Cleanup(name.clone());
        assert!(run(&["create", &name, "--kind", kind]).status.success());
        // An earlier session: one sender, read to the end.
        let recv = spawn_recv(&name, &["--timeout", "20s"]);
        wait_attached(&name, recv.id(), shmlane::ROLE_RECEIVER, |_| true);
        let s = send_lines(&name, &[], lines(3, "old")).join().unwrap();
        assert!(s.status.success(), "{kind}: {}", stderr(&s));
        let (r, _) = finish(recv, Duration::from_secs(30));
        assert_eq!(
            String::from_utf8_lossy(&r.stdout),
            lines(3, "old"),
            "{kind}"
        );

        // Nobody sends: waits ~3 s, exits 4.
        let (out, took) = finish(
            spawn_recv(&name, &["--timeout", "3s"]),
            Duration::from_secs(10),
        );
        assert_eq!(out.status.code(), Some(4), "{kind}: {}", stderr(&out));
        assert!(
            took >= Duration::from_millis(2500) && took <= Duration::from_secs(4),
            "{kind}: recv --timeout 3s returned after {took:?}"
        );
        assert!(out.stdout.is_empty(), "{kind}: replayed old lines");

        // A sender 1 s into the wait: its lines arrive.
        let recv = spawn_recv(&name, &["--timeout", "3s"]);
        wait_attached(&name, recv.id(), shmlane::ROLE_RECEIVER, |_| true);
        std::thread::sleep(Duration::from_secs(1));
        let s = send_lines(&name, &[], lines(10, "new"));
        let (out, _) = finish(recv, Duration::from_secs(10));
        let s = s.join().unwrap();
        assert_eq!(s.status.code(), Some(0), "{kind}: send {}", stderr(&s));
        assert_eq!(out.status.code(), Some(0), "{kind}: recv {}", stderr(&out));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            lines(10, "new"),
            "{kind}"
        );
        kept_clean(&name);
    }
}

/// The README's broadcast example, run twice: a late joiner on a created broadcast channel
/// whose publisher has left waits (--timeout) for a new publisher and gets all its lines,
/// none of the old ones.
#[test]
fn broadcast_late_joiner_waits_for_a_new_publisher() {
    let name = unique("life-bcast");
    let _c = Cleanup(name.clone());
    assert!(
        run(&["create", &name, "--kind", "broadcast", "--msg-size", "64"])
            .status
            .success()
    );
    let first = send_lines(&name, &[], lines(5, "old")).join().unwrap();
    assert!(first.status.success(), "{}", stderr(&first));
    let t0 = Instant::now();
    let recv = spawn_recv(&name, &["--timeout", "10s"]);
    wait_attached(&name, recv.id(), shmlane::ROLE_RECEIVER, |_| true);
    std::thread::sleep(Duration::from_millis(500));
    let second = send_lines(&name, &[], lines(20, "new")).join().unwrap();
    assert!(second.status.success(), "{}", stderr(&second));
    let (out, _) = finish(recv, Duration::from_secs(20));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        lines(20, "new"),
        "the late joiner's output ({:?} after it started): {}",
        t0.elapsed(),
        stderr(&out)
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

/// `kill -9` of a waiting `recv`, then a new `seq 10 | send` + `recv` pair on the name: all
/// ten lines, both exit 0, nothing on stderr (no blame for the earlier process).
#[test]
fn killed_recv_then_a_new_pair_is_not_blamed() {
    let name = unique("life-kill9-recv");
    let _c = Cleanup(name.clone());
    let recv = spawn_recv(&name, &[]);
    wait_attached(&name, recv.id(), shmlane::ROLE_RECEIVER, |_| true);
    kill(&recv, Signal::SIGKILL);
    let (out, _) = finish(recv, Duration::from_secs(10));
    assert_eq!(out.status.signal(), Some(9));
    let send = send_lines(&name, &["--timeout", "10s"], lines(10, ""));
    std::thread::sleep(Duration::from_millis(100));
    let (r, _) = finish(
        spawn_recv(&name, &["--timeout", "10s"]),
        Duration::from_secs(20),
    );
    let s = send.join().unwrap();
    assert_eq!(String::from_utf8_lossy(&r.stdout), lines(10, ""));
    assert_eq!(s.status.code(), Some(0), "send: {}", stderr(&s));
    assert_eq!(r.status.code(), Some(0), "recv: {}", stderr(&r));
    assert_eq!(stderr(&s), "");
    assert_eq!(stderr(&r), "");
}

/// `kill -9` of a `send` with ten lines queued: the next `recv` replays nothing, it exits 5
/// with one line naming the dead process and the fixes; `recv --resume` delivers the ten.
#[test]
fn killed_send_leaves_a_stale_channel_refused_or_resumed() {
    let name = unique("life-kill9-send");
    let _c = Cleanup(name.clone());
    let mut send = spawn_send(&name, &[]);
    let mut stdin = send.stdin.take().unwrap();
    stdin.write_all(lines(10, "old").as_bytes()).unwrap();
    wait_attached(&name, send.id(), shmlane::ROLE_SENDER, |c| c.len == 10);
    let pid = send.id();
    kill(&send, Signal::SIGKILL);
    drop(stdin);
    let _ = finish(send, Duration::from_secs(10));
    let (r, _) = finish(
        spawn_recv(&name, &["--timeout", "5s"]),
        Duration::from_secs(20),
    );
    let err = stderr(&r);
    assert_eq!(r.status.code(), Some(5), "{err}");
    assert!(r.stdout.is_empty(), "replayed: {:?}", r.stdout);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(&format!("process {pid}"))
            && err.contains(&format!("shmlane rm {name}"))
            && err.contains("--resume"),
        "{err}"
    );
    let (r, _) = finish(
        spawn_recv(&name, &["--resume", "--timeout", "5s"]),
        Duration::from_secs(20),
    );
    assert_eq!(
        String::from_utf8_lossy(&r.stdout),
        lines(10, "old"),
        "{}",
        stderr(&r)
    );
}

/// `recv --follow` on a created channel keeps receiving across two sender runs, one after the
/// other, and ends at its timeout (exit 4) with every line of both.
#[test]
fn recv_follow_spans_sender_restarts() {
    for kind in KINDS {
        let name = unique(&format!("life-follow-{kind}"));
        let _c = Cleanup(name.clone());
        assert!(run(&["create", &name, "--kind", kind]).status.success());
        let t0 = Instant::now();
        let recv = spawn_recv(&name, &["--follow", "--timeout", "4s"]);
        wait_attached(&name, recv.id(), shmlane::ROLE_RECEIVER, |_| true);
        for run_no in ["a", "b"] {
            let s = send_lines(&name, &["--timeout", "10s"], lines(100, run_no))
                .join()
                .unwrap();
            assert_eq!(s.status.code(), Some(0), "{kind}: {}", stderr(&s));
            std::thread::sleep(Duration::from_millis(300));
        }
        let (out, _) = finish(recv, Duration::from_secs(20));
        assert_eq!(out.status.code(), Some(4), "{kind}: {}", stderr(&out));
        assert!(t0.elapsed() >= Duration::from_millis(3500), "{kind}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            lines(100, "a") + &lines(100, "b"),
            "{kind}"
        );
    }
}

/// `shmlane ls | head -1` and `shmlane stat x | head -1`: a closed output ends them quietly, as
/// it does any Unix tool (killed by SIGPIPE), never with a panic ("failed printing to stdout").
#[test]
fn ls_and_stat_into_a_closed_pipe_are_quiet() {
    let name = unique("cli-life-lspipe");
    let _c = Cleanup(name.clone());
    let o = run(&["create", &name]);
    assert!(o.status.success(), "{}", stderr(&o));
    for args in [
        vec!["ls"],
        vec!["ls", "--json"],
        vec!["stat", name.as_str()],
    ] {
        // The reading end is closed before the command starts: its first write fails.
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let o = bin()
            .args(&args)
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .expect("run shmlane");
        assert_eq!(
            o.status.signal(),
            Some(Signal::SIGPIPE as i32),
            "{args:?}: {:?}, stderr: {}",
            o.status,
            stderr(&o)
        );
        assert!(o.stderr.is_empty(), "{args:?}: {}", stderr(&o));
    }
}
