//! Binary streams through the `shmlane` command, run as real processes against real segments
//! (issue 17): `--raw` byte for byte, `--framed` messages, text that keeps its last line
//! without a newline, a failed sender reported by its receiver, and modes that must match.

use std::{
    io::{Read, Write},
    os::unix::process::CommandExt as _,
    process::{Child, Command, Stdio},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use nix::sys::signal::Signal;
use shmlane_testkit::{Cleanup, unique};

/// The command, with SIGINT, SIGTERM and SIGHUP at their default disposition (as in
/// tests/lifecycle.rs: a harness started under `nohup` would pass them on ignored).
fn bin() -> Command {
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

/// A running command: its input fed and its output collected on threads (a large output must
/// be read while it runs, or it blocks on a full pipe).
struct Proc {
    child: Child,
    feed: Option<JoinHandle<()>>,
    out: JoinHandle<Vec<u8>>,
    err: JoinHandle<Vec<u8>>,
}

/// How a command ended.
struct Done {
    code: Option<i32>,
    out: Vec<u8>,
    err: String,
}

fn collect(mut r: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = r.read_to_end(&mut v);
        v
    })
}

/// `shmlane ARGS` with `input` written to its stdin (then closed); `None`: stdin left open
/// (closed when the returned `Proc` is finished) or taken from `stdin`.
fn spawn(args: &[&str], input: Option<Vec<u8>>) -> Proc {
    spawn_with(args, input, Stdio::piped())
}

fn spawn_with(args: &[&str], input: Option<Vec<u8>>, stdin: Stdio) -> Proc {
    let mut child = bin()
        .args(args)
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn shmlane");
    let feed = input.map(|data| {
        let mut w = child.stdin.take().expect("stdin piped");
        std::thread::spawn(move || {
            // The command may leave early (some tests check that): ignore EPIPE.
            let _ = w.write_all(&data);
        })
    });
    let out = collect(child.stdout.take().unwrap());
    let err = collect(child.stderr.take().unwrap());
    Proc {
        child,
        feed,
        out,
        err,
    }
}

impl Proc {
    /// Waits at most `limit` for the command to end (killed and failed past it).
    fn finish(mut self, limit: Duration) -> Done {
        drop(self.child.stdin.take());
        let t0 = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if t0.elapsed() > limit {
                let _ = self.child.kill();
                let _ = self.child.wait();
                let err = String::from_utf8_lossy(&self.err.join().unwrap()).into_owned();
                panic!("process still running after {limit:?}; killed: {err}");
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        if let Some(f) = self.feed.take() {
            f.join().unwrap();
        }
        Done {
            code: status.code(),
            out: self.out.join().unwrap(),
            err: String::from_utf8_lossy(&self.err.join().unwrap()).into_owned(),
        }
    }
}

/// `recv NAME RECV_ARGS` and `send NAME SEND_ARGS` fed with `input`, both finished.
fn through(name: &str, send_args: &[&str], recv_args: &[&str], input: Vec<u8>) -> (Done, Done) {
    let recv: Vec<&str> = ["recv", name, "--timeout", "60s"]
        .into_iter()
        .chain(recv_args.iter().copied())
        .collect();
    let send: Vec<&str> = ["send", name, "--timeout", "60s"]
        .into_iter()
        .chain(send_args.iter().copied())
        .collect();
    let r = spawn(&recv, None);
    // (A sender that is done before its receiver attaches takes the channel it made with it,
    // and the receiver then waits for another.)
    wait_attached(name, shmlane::ROLE_RECEIVER);
    let s = spawn(&send, Some(input));
    let s = s.finish(Duration::from_secs(60));
    let r = r.finish(Duration::from_secs(60));
    (s, r)
}

/// Asserts two byte strings are equal without printing megabytes when they are not.
fn same(got: &[u8], want: &[u8], what: &str) {
    if got != want {
        let at = got.iter().zip(want).position(|(a, b)| a != b);
        panic!(
            "{what}: {} bytes came back for {} sent; first difference at {at:?}",
            got.len(),
            want.len()
        );
    }
}

/// A small deterministic generator (splitmix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n + 8);
        while v.len() < n {
            v.extend_from_slice(&self.next().to_le_bytes());
        }
        v.truncate(n);
        v
    }
}

fn ok(d: &Done, what: &str) {
    assert_eq!(d.code, Some(0), "{what}: {}", d.err);
}

/// 100 MB of random bytes (not a multiple of the chunk: the last partial chunk counts).
#[test]
fn raw_round_trip_of_random_bytes() {
    let name = unique("raw-random");
    let _c = Cleanup(name.clone());
    let input = Rng(17).bytes(100_000_000 + 12_345);
    let (s, r) = through(&name, &["--raw"], &["--raw"], input.clone());
    ok(&s, "send");
    ok(&r, "recv");
    same(&r.out, &input, "100 MB through --raw");
}

/// A binary executable (the command itself: NULs, newlines, every byte value).
#[test]
fn raw_round_trip_of_an_executable() {
    let name = unique("raw-exe");
    let _c = Cleanup(name.clone());
    let input = std::fs::read(env!("CARGO_BIN_EXE_shmlane")).unwrap();
    assert!(input.contains(&0) && input.contains(&b'\n'));
    let (s, r) = through(&name, &["--raw"], &["--raw"], input.clone());
    ok(&s, "send");
    ok(&r, "recv");
    same(&r.out, &input, "the shmlane binary through --raw");
    // An empty input is an empty stream.
    let (s, r) = through(&name, &["--raw"], &["--raw"], Vec::new());
    ok(&s, "send");
    ok(&r, "recv");
    assert!(r.out.is_empty());
}

/// 100,000 frames of random lengths, empty ones included, come back frame for frame.
#[test]
fn framed_round_trip_of_random_messages() {
    let name = unique("raw-framed");
    let _c = Cleanup(name.clone());
    let mut rng = Rng(4);
    let mut input = Vec::new();
    let mut empties = 0;
    for i in 0..100_000u32 {
        // Every length 0..=300, empty ones more often than the rest.
        let len = if i % 50 == 0 {
            0
        } else {
            (rng.next() % 301) as usize
        };
        empties += usize::from(len == 0);
        input.extend_from_slice(&(len as u32).to_le_bytes());
        input.extend_from_slice(&rng.bytes(len));
    }
    assert!(empties >= 2000);
    let shape = ["--framed", "--msg-size", "300", "--capacity", "4096"];
    let (s, r) = through(&name, &shape, &shape, input.clone());
    ok(&s, "send");
    ok(&r, "recv");
    same(&r.out, &input, "100,000 frames");
}

/// Text mode gives back exactly what it was given: a last line without a newline comes back
/// without one, for the typed kinds and a bytes channel, with newlines and with `-0`.
#[test]
fn text_without_final_newline_comes_back_identical() {
    let cases: [(&str, &[&str], &[u8]); 7] = [
        ("spsc", &[], b"one\n\nthree\nno newline at the end"),
        ("mpmc", &["--kind", "mpmc"], b"a\nb\nlast"),
        ("bytes", &["--kind", "bytes"], b"one\n\nthree\nno newline"),
        ("bytes-nl", &["--kind", "bytes"], b"ends\nwith one\n"),
        ("null", &["-0"], b"a\0b c\nd\0last"),
        ("bytes-null", &["--kind", "bytes", "-0"], b"x\0y\ny\0z"),
        ("single", &[], b"x"),
    ];
    for (label, args, input) in cases {
        let name = unique(&format!("raw-text-{label}"));
        let _c = Cleanup(name.clone());
        let (s, r) = through(&name, args, args, input.to_vec());
        ok(&s, label);
        ok(&r, label);
        assert_eq!(
            String::from_utf8_lossy(&r.out),
            String::from_utf8_lossy(input),
            "{label}"
        );
    }
}

/// A sender that fails part way (a frame cut short, a line too long, input that cannot be
/// read) tells its receiver, which delivers what came before, says so and exits 6; the
/// sender exits 1 with its reason.
#[test]
fn failed_sender_makes_the_receiver_fail() {
    // A frame cut short after two good ones.
    let name = unique("raw-trunc");
    let _c = Cleanup(name.clone());
    let mut input = Vec::new();
    for m in [&b"abc"[..], b""] {
        input.extend_from_slice(&(m.len() as u32).to_le_bytes());
        input.extend_from_slice(m);
    }
    let good = input.clone();
    input.extend_from_slice(&5u32.to_le_bytes());
    input.extend_from_slice(b"xy");
    let (s, r) = through(&name, &["--framed"], &["--framed"], input);
    assert_eq!(s.code, Some(1), "{}", s.err);
    assert!(s.err.contains("the input ends inside frame 3"), "{}", s.err);
    assert_eq!(r.code, Some(6), "{}", r.err);
    assert!(
        r.err.contains("the sender of") && r.err.contains("failed: the input ends inside frame 3"),
        "{}",
        r.err
    );
    assert_eq!(r.out, good, "the frames before the cut one");

    // A line too long, on a typed and on a bytes channel (the receiver exited 0 with the
    // output cut short).
    for (label, args) in [
        ("typed", &["--msg-size", "8"][..]),
        (
            "bytes",
            &["--kind", "bytes", "--msg-size", "8", "--capacity", "256"][..],
        ),
    ] {
        let name = unique(&format!("raw-long-{label}"));
        let _c = Cleanup(name.clone());
        let input = format!("ok\nfine\n{}\nnever\n", "z".repeat(5000)).into_bytes();
        let (s, r) = through(&name, args, args, input);
        assert_eq!(s.code, Some(1), "{label}: {}", s.err);
        assert!(s.err.contains("line 3 has more than"), "{label}: {}", s.err);
        assert_eq!(r.code, Some(6), "{label}: {}", r.err);
        assert!(
            r.err.contains("failed: line 3 has more than"),
            "{label}: {}",
            r.err
        );
        assert_eq!(r.out, b"ok\nfine\n", "{label}");
    }

    // Input that cannot be read (a directory): the raw receiver fails too.
    let name = unique("raw-eisdir");
    let _c = Cleanup(name.clone());
    let r = spawn(&["recv", &name, "--raw", "--timeout", "30s"], None);
    let dir = std::fs::File::open("/").unwrap();
    let s = spawn_with(
        &["send", &name, "--raw", "--timeout", "30s"],
        None,
        Stdio::from(dir),
    )
    .finish(Duration::from_secs(30));
    let r = r.finish(Duration::from_secs(30));
    assert_eq!(s.code, Some(1), "{}", s.err);
    assert!(s.err.contains("reading stdin"), "{}", s.err);
    assert_eq!(r.code, Some(6), "{}", r.err);
    assert!(r.err.contains("failed: reading stdin"), "{}", r.err);
}

/// Waits until a live process holds an endpoint of `name` in `role`.
fn wait_attached(name: &str, role: u32) {
    let t0 = Instant::now();
    loop {
        let path = std::path::PathBuf::from(format!("/dev/shm/{name}"));
        if let Ok(Some(i)) = shmlane_segment::inspect(&path)
            && i.attached.iter().any(|a| a.alive && a.role & role != 0)
        {
            return;
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "nobody attached");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A raw sender killed with SIGKILL mid-stream: its receiver reports the death (exit 3), it
/// does not end as if the stream were complete.
#[test]
fn killed_raw_sender_is_reported() {
    let name = unique("raw-killed");
    let _c = Cleanup(name.clone());
    let mut s = spawn(&["send", &name, "--raw"], None);
    s.child
        .stdin
        .as_mut()
        .unwrap()
        .write_all(b"some bytes")
        .unwrap();
    wait_attached(&name, shmlane::ROLE_SENDER);
    let r = spawn(
        &["recv", &name, "--raw", "--resume", "--timeout", "30s"],
        None,
    );
    wait_attached(&name, shmlane::ROLE_RECEIVER);
    s.child.kill().unwrap();
    let _ = s.finish(Duration::from_secs(10));
    let r = r.finish(Duration::from_secs(30));
    assert_eq!(r.code, Some(3), "{}", r.err);
    assert!(r.err.contains("died"), "{}", r.err);
    assert_eq!(r.out, b"some bytes");
}

/// A channel's mode is its type: `recv --raw` on a channel of lines (and the other ways round)
/// is refused, naming both modes.
#[test]
fn mode_mismatch_is_refused() {
    let name = unique("raw-mismatch");
    let _c = Cleanup(name.clone());
    let c = spawn(&["create", &name], None).finish(Duration::from_secs(10));
    ok(&c, "create");
    for (args, asked) in [
        (&["--raw"][..], "a raw byte stream (--raw)"),
        (&["--framed"][..], "length-prefixed messages (--framed)"),
    ] {
        for cmd in ["recv", "send"] {
            let a: Vec<&str> = [cmd, &name, "--timeout", "2s"]
                .into_iter()
                .chain(args.iter().copied())
                .collect();
            let d = spawn(&a, Some(b"x\n".to_vec())).finish(Duration::from_secs(10));
            assert_eq!(d.code, Some(1), "{cmd} {args:?}: {}", d.err);
            assert!(
                d.err.contains("carries lines (text mode)") && d.err.contains(asked),
                "{cmd} {args:?}: {}",
                d.err
            );
        }
    }
    // A raw stream read as lines.
    let raw = unique("raw-mismatch-raw");
    let _c2 = Cleanup(raw.clone());
    let s = spawn(&["send", &raw, "--raw", "--timeout", "20s"], None);
    wait_attached(&raw, shmlane::ROLE_SENDER);
    let d = spawn(&["recv", &raw, "--timeout", "2s"], None).finish(Duration::from_secs(10));
    assert_eq!(d.code, Some(1), "{}", d.err);
    assert!(
        d.err.contains("carries a raw byte stream (--raw)")
            && d.err.contains("asked for lines (text mode)"),
        "{}",
        d.err
    );
    let r = spawn(&["recv", &raw, "--raw", "--timeout", "20s"], None);
    // (A sender that ends before its receiver attaches takes the channel it made with it.)
    wait_attached(&raw, shmlane::ROLE_RECEIVER);
    let s = s.finish(Duration::from_secs(20));
    ok(&s, "send --raw");
    let r = r.finish(Duration::from_secs(20));
    ok(&r, "recv --raw");
    // --raw refuses the shape options it sets itself.
    let d = spawn(&["send", &raw, "--raw", "--kind", "mpmc"], Some(Vec::new()))
        .finish(Duration::from_secs(10));
    assert_eq!(d.code, Some(2), "{}", d.err);
}

/// The frame reader on its own: every input splits into the frames it holds, and a cut or
/// oversized frame is reported, never a panic.
#[test]
fn frame_reader_on_edge_inputs() {
    let mut rng = Rng(9);
    for n in 0..2000usize {
        let mut data = vec![(n % 7) as u8, 0];
        data.extend(rng.bytes(n % 40));
        shmlane_cli::input::fuzz_frames(&data);
        shmlane_cli::input::fuzz_lines(&data);
    }
}

/// A chunk whose length word was overwritten (a hostile or broken peer) is refused as corrupt,
/// never written past its element.
#[test]
fn overwritten_chunk_length_is_corrupt() {
    use std::os::unix::fs::FileExt as _;
    let name = unique("raw-corrupt");
    let _c = Cleanup(name.clone());
    let mut s = spawn(&["send", &name, "--raw"], None);
    let mark = b"raw-corrupt-test-mark-0123456789";
    s.child.stdin.as_mut().unwrap().write_all(mark).unwrap();
    s.child.stdin.as_mut().unwrap().flush().unwrap();
    let path = format!("/dev/shm/{name}");
    let t0 = Instant::now();
    let at = loop {
        if let Ok(bytes) = std::fs::read(&path)
            && let Some(i) = bytes.windows(mark.len()).position(|w| w == mark)
        {
            break i;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the chunk never came"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    // The length word before the bytes: one more than a chunk holds.
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.write_all_at(&65533u32.to_le_bytes(), (at - 4) as u64)
        .unwrap();
    let r =
        spawn(&["recv", &name, "--raw", "--timeout", "10s"], None).finish(Duration::from_secs(20));
    assert_eq!(r.code, Some(1), "{}", r.err);
    assert!(
        r.err.contains("ring is corrupt") && r.err.contains("65533 bytes, more than 65532"),
        "{}",
        r.err
    );
    assert!(r.out.is_empty());
    s.child.kill().unwrap();
    let _ = s.finish(Duration::from_secs(10));
}

/// revr: a sender that cannot mark its last line as unterminated (a broadcast channel whose
/// largest message is the line's length: the mark takes one byte more) fails, and its
/// receiver must say so (exit 6) instead of ending as if the stream were complete.
#[test]
fn unmarkable_last_line_makes_the_receiver_fail() {
    let name = unique("revr-unmarkable");
    let _c = Cleanup(name.clone());
    let mut input = vec![b'a'; 16];
    input.push(b'\n');
    input.extend([b'b'; 16]);
    let shape = ["--kind", "broadcast", "--msg-size", "16"];
    let (s, r) = through(&name, &shape, &shape, input);
    assert_eq!(s.code, Some(1), "{}", s.err);
    assert!(s.err.contains("no delimiter after it"), "{}", s.err);
    assert_eq!(r.code, Some(6), "{}", r.err);
    assert!(r.err.contains("failed: the last lin"), "{}", r.err);
    assert_eq!(r.out, [[b'a'; 16].as_slice(), b"\n"].concat());
}

/// revr: `shmlane create NAME --raw` / `--framed` make the channel a later `send --raw` /
/// `--framed` uses (the senders' messages advise `shmlane create NAME` first to keep a stream
/// for a later receiver; a channel created without the mode carries lines and is refused).
#[test]
fn create_makes_raw_and_framed_channels() {
    for (mode, input) in [
        ("--raw", Rng(5).bytes(300_000)),
        ("--framed", b"\x03\0\0\0abc\0\0\0\0".to_vec()),
    ] {
        let name = unique("revr-create-mode");
        let _c = Cleanup(name.clone());
        let c = spawn(&["create", &name, mode], None).finish(Duration::from_secs(10));
        ok(&c, "create");
        // The sender fills the channel and waits for a receiver, which comes later.
        let s = spawn(
            &["send", &name, mode, "--timeout", "30s"],
            Some(input.clone()),
        );
        wait_attached(&name, shmlane::ROLE_SENDER);
        std::thread::sleep(Duration::from_millis(200));
        let r = spawn(&["recv", &name, mode, "--timeout", "30s"], None);
        let s = s.finish(Duration::from_secs(30));
        ok(&s, mode);
        let r = r.finish(Duration::from_secs(30));
        ok(&r, mode);
        same(&r.out, &input, mode);
        // -0 is how send and recv split lines, not a channel's mode.
        let d = spawn(&["create", &unique("revr-create-0"), "-0"], None)
            .finish(Duration::from_secs(10));
        assert_ne!(d.code, Some(0), "{}", d.err);
    }
}

/// revr: a raw sender stopped by a signal before the end of its input (`timeout 60 shmlane
/// send x --raw < big`) leaves cleanly (exit 128 + the signal), and its receiver must not end
/// with exit 0 as if the stream were complete: it says the sender was interrupted (exit 6).
#[test]
fn interrupted_raw_sender_makes_the_receiver_fail() {
    for sig in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        let name = unique("revr-raw-int");
        let _c = Cleanup(name.clone());
        let r = spawn(&["recv", &name, "--raw", "--timeout", "30s"], None);
        wait_attached(&name, shmlane::ROLE_RECEIVER);
        let mut s = spawn(&["send", &name, "--raw", "--timeout", "30s"], None);
        // Its input stays open (more is to come) until it has ended.
        let mut w = s.child.stdin.take().unwrap();
        w.write_all(b"the first part").unwrap();
        w.flush().unwrap();
        wait_attached(&name, shmlane::ROLE_SENDER);
        std::thread::sleep(Duration::from_millis(200));
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(s.child.id() as i32), sig).unwrap();
        let s = s.finish(Duration::from_secs(10));
        drop(w);
        assert_eq!(s.code, Some(128 + sig as i32), "{sig}: {}", s.err);
        let r = r.finish(Duration::from_secs(30));
        assert_eq!(r.code, Some(6), "{sig}: {}", r.err);
        assert!(
            r.err.contains("failed: interrupted by") && r.err.contains("incomplete"),
            "{sig}: {}",
            r.err
        );
        assert_eq!(r.out, b"the first part", "{sig}");
    }
}

/// revr: two senders on one channel, the first without a final newline: its line must not be
/// glued to the next sender's (`foo` + `bar\n` came out as `foobar\n`). A last line without a
/// delimiter gets none only when nothing follows it.
#[test]
fn unterminated_line_is_not_glued_to_the_next_senders() {
    for kind in ["mpmc", "bytes"] {
        for (delim, extra) in [(b'\n', &[][..]), (0u8, &["-0"][..])] {
            let name = unique("revr-glue");
            let _c = Cleanup(name.clone());
            let mut create = vec!["create", &name, "--kind", kind];
            if kind == "bytes" {
                create.extend(["--capacity", "4096"]);
            }
            ok(
                &spawn(&create, None).finish(Duration::from_secs(10)),
                "create",
            );
            for input in [&b"foo"[..], b"bar\x01"] {
                let input: Vec<u8> = input
                    .iter()
                    .map(|&b| if b == 1 { delim } else { b })
                    .collect();
                let args: Vec<&str> = ["send", &name, "--kind", kind, "--timeout", "1s"]
                    .into_iter()
                    .chain(extra.iter().copied())
                    .collect();
                // No receiver yet: each ends at its timeout, its line queued (exit 4).
                let s = spawn(&args, Some(input)).finish(Duration::from_secs(10));
                assert_eq!(s.code, Some(4), "{kind}: {}", s.err);
            }
            let args: Vec<&str> = ["recv", &name, "--kind", kind, "--count", "2"]
                .into_iter()
                .chain(extra.iter().copied())
                .collect();
            let r = spawn(&args, None).finish(Duration::from_secs(10));
            ok(&r, kind);
            assert_eq!(
                r.out,
                [b"foo", &[delim][..], b"bar", &[delim]].concat(),
                "{kind} {extra:?}"
            );
        }
    }
}

/// left17: a raw sender interrupted while its ring is full and its receiver stopped (SIGSTOP:
/// not reading, as one blocked on its own output) still tells that receiver: once continued, it
/// writes every byte the sender put in the ring, then exits 6 saying the sender was interrupted
/// (the mark waited 0.5 s for room, found none, was dropped, and the receiver ended with exit 0
/// and a cut stream). The data never takes the last free slot, which the mark then finds.
#[test]
fn interrupted_raw_sender_reaches_a_stopped_receiver_with_a_full_ring() {
    use nix::{sys::signal::kill, unistd::Pid};
    for sig in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        let name = unique("left17-raw-full");
        let _c = Cleanup(name.clone());
        let r = spawn(&["recv", &name, "--raw", "--timeout", "60s"], None);
        wait_attached(&name, shmlane::ROLE_RECEIVER);
        let rpid = Pid::from_raw(r.child.id() as i32);
        kill(rpid, Signal::SIGSTOP).unwrap();
        // More than the ring (4 MiB) and the stdin pipe (1 MiB) hold: the sender blocks.
        let input = Rng(u64::from(sig as i32 as u32)).bytes(12 << 20);
        let s = spawn(&["send", &name, "--raw"], Some(input.clone()));
        wait_attached(&name, shmlane::ROLE_SENDER);
        let path = std::path::PathBuf::from(format!("/dev/shm/{name}"));
        let queued = || {
            shmlane_segment::inspect(&path)
                .ok()
                .flatten()
                .and_then(|i| shmlane::inspect(&i))
                .map_or(0, |c| c.len)
        };
        let t0 = Instant::now();
        // As full as the sender fills it (all 64 chunks before, 63 now).
        while queued() < 63 {
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "the ring never filled"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        // The sender is waiting for room now.
        std::thread::sleep(Duration::from_millis(300));
        kill(Pid::from_raw(s.child.id() as i32), sig).unwrap();
        let s = s.finish(Duration::from_secs(10));
        assert_eq!(s.code, Some(128 + sig as i32), "{sig}: {}", s.err);
        kill(rpid, Signal::SIGCONT).unwrap();
        let r = r.finish(Duration::from_secs(30));
        assert_eq!(r.code, Some(6), "{sig}: receiver: {}", r.err);
        assert!(
            r.err.contains("failed: interrupted by") && r.err.contains("incomplete"),
            "{sig}: {}",
            r.err
        );
        // Every byte the sender sent, as it says, and nothing else.
        let n: usize = r
            .err
            .split("after ")
            .nth(1)
            .and_then(|t| t.split(' ').next())
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(|| panic!("{sig}: no byte count: {}", r.err));
        assert!(n >= 63 * 4096, "{sig}: only {n} bytes sent");
        same(&r.out, &input[..n], &format!("{sig}"));
    }
}

/// left17: `stat`'s payload bytes of a raw stream are the stream's bytes on both sides, also
/// when the chunks go through a full ring (the sender's waiting put, the receiver taking a
/// batch of chunks at once), not 64 KiB a chunk.
#[test]
fn raw_stream_through_a_full_ring_counts_its_bytes() {
    use nix::{sys::signal::kill, unistd::Pid};
    let name = unique("left17-raw-count");
    let _c = Cleanup(name.clone());
    ok(
        &spawn(&["create", &name, "--raw"], None).finish(Duration::from_secs(10)),
        "create",
    );
    let r = spawn(&["recv", &name, "--raw", "--timeout", "60s"], None);
    wait_attached(&name, shmlane::ROLE_RECEIVER);
    let rpid = Pid::from_raw(r.child.id() as i32);
    kill(rpid, Signal::SIGSTOP).unwrap();
    let input = Rng(71).bytes((6 << 20) + 4321);
    let s = spawn(
        &["send", &name, "--raw", "--timeout", "60s"],
        Some(input.clone()),
    );
    let path = std::path::PathBuf::from(format!("/dev/shm/{name}"));
    let chan = || {
        shmlane_segment::inspect(&path)
            .ok()
            .flatten()
            .and_then(|i| shmlane::inspect(&i))
    };
    let t0 = Instant::now();
    while chan().map_or(0, |c| c.len) < 63 {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the ring never filled"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(100));
    kill(rpid, Signal::SIGCONT).unwrap();
    let s = s.finish(Duration::from_secs(60));
    let r = r.finish(Duration::from_secs(60));
    ok(&s, "send");
    ok(&r, "recv");
    same(&r.out, &input, "raw through a full ring");
    let c = chan().expect("the created channel stays");
    assert_eq!(c.sent.bytes, input.len() as u64, "sent: {:?}", c.sent);
    assert_eq!(
        c.received.bytes,
        input.len() as u64,
        "received: {:?}",
        c.received
    );
    assert_eq!(c.sent.messages, c.received.messages);
    assert!(c.sent.messages > 64, "{:?}", c.sent);
}

/// rev17: a `send --raw` whose `--timeout` ends its wait for room (its receiver stopped, the
/// ring full) exits 4 and stops mid-stream; its receiver, once continued, must not take the
/// cut stream for a whole one: it writes every byte sent, then exits 6 naming the timeout.
/// (The sender left without a mark: the receiver drained the ring and exited 0, 4 MiB of 12.)
#[test]
fn timed_out_raw_sender_marks_its_stream_incomplete() {
    use nix::{sys::signal::kill, unistd::Pid};
    let name = unique("rev17-raw-timeout");
    let _c = Cleanup(name.clone());
    let r = spawn(&["recv", &name, "--raw", "--timeout", "60s"], None);
    wait_attached(&name, shmlane::ROLE_RECEIVER);
    let rpid = Pid::from_raw(r.child.id() as i32);
    kill(rpid, Signal::SIGSTOP).unwrap();
    let input = Rng(1717).bytes(12 << 20);
    let s = spawn(
        &["send", &name, "--raw", "--timeout", "1s"],
        Some(input.clone()),
    );
    let s = s.finish(Duration::from_secs(20));
    assert_eq!(s.code, Some(4), "sender: {}", s.err);
    assert!(s.err.contains("timed out"), "{}", s.err);
    kill(rpid, Signal::SIGCONT).unwrap();
    let r = r.finish(Duration::from_secs(30));
    assert_eq!(r.code, Some(6), "receiver: {}", r.err);
    assert!(
        r.err.contains("failed: timed out") && r.err.contains("incomplete"),
        "{}",
        r.err
    );
    let n: usize = r
        .err
        .split("after ")
        .nth(2)
        .and_then(|t| t.split(' ').next())
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no byte count: {}", r.err));
    assert!(n >= 63 * 4096 && n < input.len(), "{n} bytes sent");
    same(&r.out, &input[..n], "timed out raw sender");
}

/// rev17: a raw channel with a tiny ring (made by a program, capacity 2 or 4: `--raw` takes no
/// `--capacity`): the sender, keeping one slot free, still makes progress (capacity 2: one
/// chunk at a time) and the stream comes through byte for byte.
#[test]
fn raw_stream_through_a_tiny_ring() {
    for cap in [2u64, 4] {
        let name = unique(&format!("rev17-raw-tiny{cap}"));
        let _c = Cleanup(name.clone());
        let _ch = shmlane::spsc::<[u8; 65536]>(&name)
            .capacity(cap)
            .type_name(&shmlane_cli::line::mode_type(
                shmlane_cli::line::Mode::Raw,
                65532,
            ))
            .mode(0o600)
            .create()
            .unwrap();
        let input = Rng(cap).bytes((3 << 20) + 77);
        let (s, r) = through(&name, &["--raw"], &["--raw"], input.clone());
        ok(&s, "send");
        ok(&r, "recv");
        same(&r.out, &input, &format!("capacity {cap}"));
        let c = shmlane_segment::inspect(&std::path::PathBuf::from(format!("/dev/shm/{name}")))
            .unwrap()
            .and_then(|i| shmlane::inspect(&i))
            .expect("the channel stays");
        assert_eq!(c.capacity, cap);
        assert_eq!(c.sent.bytes, input.len() as u64, "{:?}", c.sent);
        assert!(c.sent.messages >= 48, "{:?}", c.sent);
    }
}

/// rev17: the kept slot on a tiny raw ring (made by a program). Capacity 2: an interrupted
/// sender's mark still reaches a stopped receiver (exit 6). Capacity 1 has no slot to keep, so
/// the mark could not be promised (it waited 0.5 s, was dropped, and the receiver exited 0
/// with a cut stream): `send --raw` refuses such a channel, saying why.
#[test]
fn interrupted_raw_sender_on_a_tiny_ring() {
    use nix::{sys::signal::kill, unistd::Pid};
    for cap in [2u64, 1] {
        let name = unique(&format!("rev17-raw-tiny-int{cap}"));
        let _c = Cleanup(name.clone());
        let _ch = shmlane::spsc::<[u8; 65536]>(&name)
            .capacity(cap)
            .type_name(&shmlane_cli::line::mode_type(
                shmlane_cli::line::Mode::Raw,
                65532,
            ))
            .mode(0o600)
            .create()
            .unwrap();
        let r = spawn(&["recv", &name, "--raw", "--timeout", "60s"], None);
        wait_attached(&name, shmlane::ROLE_RECEIVER);
        let rpid = Pid::from_raw(r.child.id() as i32);
        kill(rpid, Signal::SIGSTOP).unwrap();
        let input = Rng(cap + 40).bytes(4 << 20);
        let mut s = spawn(&["send", &name, "--raw"], Some(input.clone()));
        // Refused at once (capacity 1), or sending: then held to the mark below.
        let t0 = Instant::now();
        while cap == 1 && t0.elapsed() < Duration::from_secs(2) {
            if s.child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if s.child.try_wait().unwrap().is_some() {
            assert_eq!(cap, 1, "the sender ended early");
            let s = s.finish(Duration::from_secs(10));
            assert_eq!(s.code, Some(1), "{}", s.err);
            assert!(
                s.err.contains("1 chunk") && s.err.contains(&format!("shmlane rm {name}")),
                "{}",
                s.err
            );
            kill(rpid, Signal::SIGCONT).unwrap();
            kill(rpid, Signal::SIGTERM).unwrap();
            let _ = r.finish(Duration::from_secs(10));
            continue;
        }
        let path = std::path::PathBuf::from(format!("/dev/shm/{name}"));
        let queued = || {
            shmlane_segment::inspect(&path)
                .ok()
                .flatten()
                .and_then(|i| shmlane::inspect(&i))
                .map_or(0, |c| c.len)
        };
        let t0 = Instant::now();
        while queued() < 1 {
            assert!(t0.elapsed() < Duration::from_secs(20), "nothing sent");
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(300));
        kill(Pid::from_raw(s.child.id() as i32), Signal::SIGTERM).unwrap();
        let s = s.finish(Duration::from_secs(10));
        assert_eq!(s.code, Some(128 + 15), "{}", s.err);
        kill(rpid, Signal::SIGCONT).unwrap();
        let r = r.finish(Duration::from_secs(30));
        assert_eq!(r.code, Some(6), "capacity {cap}: receiver: {}", r.err);
        assert!(r.err.contains("interrupted by"), "{}", r.err);
    }
}
