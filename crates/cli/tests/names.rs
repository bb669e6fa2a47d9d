//! Names, every segment visible and removable, honest errors (issue 17): the `shmlane` command
//! against real segments.

use std::{
    ffi::{OsStr, OsString},
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
};

use shmlane_segment::{NAME_RULE, Segment};
use shmlane_testkit::{Cleanup, unique};

fn shmlane(args: &[&OsStr], stdin: &[u8]) -> Output {
    use std::io::Write;
    let mut c = Command::new(env!("CARGO_BIN_EXE_shmlane"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run shmlane");
    let _ = c.stdin.take().expect("stdin").write_all(stdin);
    c.wait_with_output().expect("wait for shmlane")
}

fn run(args: &[&str]) -> Output {
    let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    shmlane(&args, b"")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A directory of its own under /tmp, removed on drop.
struct TmpDir(PathBuf);

impl TmpDir {
    fn new(label: &str) -> Self {
        let p = std::env::temp_dir().join(unique(label));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("mkdir");
        Self(p)
    }
}

impl Drop for TmpDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `/dev/shm/<this>` is `path` (a name that climbs out of the shared-memory directory).
fn climbing(path: &Path) -> String {
    format!("../..{}", path.display())
}

/// Every subcommand that takes a NAME, with the arguments that would make it run at once.
fn commands(name: &OsStr) -> Vec<Vec<OsString>> {
    let with = |pre: &[&str], post: &[&str]| -> Vec<OsString> {
        pre.iter()
            .map(OsString::from)
            .chain(std::iter::once(name.to_owned()))
            .chain(post.iter().map(OsString::from))
            .collect()
    };
    vec![
        with(&["stat"], &[]),
        with(&["stat"], &["--json"]),
        with(&["stat", "--dir", "/tmp"], &[]),
        with(&["rm"], &[]),
        with(&["rm", "--force"], &[]),
        with(&["rm", "--dir", "/tmp"], &[]),
        with(&["create"], &[]),
        with(&["send"], &["--timeout", "1s"]),
        with(&["recv"], &["--timeout", "1s"]),
        with(&["recv"], &["--count", "1", "--timeout", "1s"]),
    ]
}

#[test]
fn every_subcommand_refuses_a_bad_name_with_exit_2_and_the_rule() {
    let dir = TmpDir::new("names-bad");
    let victim = dir.0.join("victim");
    std::fs::write(&victim, b"not yours\n").unwrap();
    let long = "n".repeat(300);
    let bad: Vec<OsString> = vec![
        "..".into(),
        ".".into(),
        "".into(),
        "../../x".into(),
        "a/b".into(),
        long.clone().into(),
        climbing(&victim).into(),
        OsStr::from_bytes(b"caf\xe9").to_owned(),
    ];
    for name in &bad {
        for args in commands(name) {
            let args: Vec<&OsStr> = args.iter().map(OsString::as_os_str).collect();
            let o = shmlane(&args, b"line\n");
            let err = text(&o.stderr);
            assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
            assert!(
                err.contains("invalid segment name") && err.contains(NAME_RULE),
                "{args:?}: {err}"
            );
            assert!(o.stdout.is_empty(), "{args:?}");
        }
    }
    // Nothing was created, opened for writing or removed anywhere.
    assert_eq!(std::fs::read(&victim).unwrap(), b"not yours\n");
    assert!(!Path::new("/dev/shm").join(&long).exists());
}

/// On main `stat ../../tmp/DIR/seg` printed a segment outside /dev/shm (exit 0).
#[test]
fn stat_does_not_read_a_segment_outside_the_directory() {
    let dir = TmpDir::new("names-outside");
    let path = dir.0.join("outside");
    let seg = Segment::file(&path).size(1 << 16).create().unwrap();
    let o = run(&["stat", &climbing(&path)]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(o.stdout.is_empty(), "{}", text(&o.stdout));
    // Named with --dir, it is found (the way to reach a segment elsewhere).
    let o = run(&["stat", "--dir", dir.0.to_str().unwrap(), "outside"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(
        text(&o.stdout).starts_with("segment   outside (file, "),
        "{}",
        text(&o.stdout)
    );
    drop(seg);
}

#[test]
fn stat_and_rm_take_dir() {
    let dir = TmpDir::new("names-dir");
    let d = dir.0.to_str().unwrap();
    let path = dir.0.join("seg");
    drop(Segment::file(&path).size(1 << 16).create().unwrap());
    let o = run(&["stat", "--json", "--dir", d, "seg"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["name"], "seg");
    assert_eq!(v["backend"], "file");
    // Not in /dev/shm: without --dir there is no such segment.
    let o = run(&["rm", "seg"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(path.exists());
    let o = run(&["rm", "--dir", d, "seg"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(!path.exists());
    // A POSIX segment of that name is untouched by `rm --dir`.
    let name = unique("names-dir-posix");
    let _c = Cleanup(name.clone());
    drop(Segment::posix(&name).size(1 << 16).create().unwrap());
    let o = run(&["rm", "--dir", d, &name]);
    assert_eq!(o.status.code(), Some(1));
    assert!(Path::new("/dev/shm").join(&name).exists());
}

/// Overwrites the first `header.len()` bytes of the file at `path`.
fn damage(path: &Path, header: &[u8]) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(header, 0).unwrap();
}

/// Pseudo-random bytes (no magic number by chance: the first byte is never 'S').
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v: Vec<u8> = (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    v[0] = b'!';
    v
}

fn ls_json(dir: Option<&str>) -> Vec<serde_json::Value> {
    let mut args = vec!["ls", "--json"];
    if let Some(d) = dir {
        args.extend(["--dir", d]);
    }
    let o = run(&args);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    serde_json::from_slice::<serde_json::Value>(&o.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn entry<'a>(list: &'a [serde_json::Value], name: &str) -> Option<&'a serde_json::Value> {
    list.iter().find(|v| v["name"] == name)
}

/// On main a segment whose header was zeroed or overwritten was not listed at all, and
/// `rm NAME` failed ("not a shmlane segment").
#[test]
fn a_damaged_header_is_listed_as_corrupt_and_rm_removes_it() {
    for (how, header) in [("zeroed", vec![0u8; 128]), ("random", noise(128, 17))] {
        for kind in ["spsc", "bytes", "broadcast"] {
            let name = unique(&format!("names-corrupt-{how}-{kind}"));
            let _c = Cleanup(name.clone());
            let o = run(&["create", &name, "--kind", kind, "--capacity", "1024"]);
            assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
            let path = Path::new("/dev/shm").join(&name);
            damage(&path, &header);

            let list = ls_json(None);
            let e = entry(&list, &name).unwrap_or_else(|| panic!("{how} {kind}: not listed"));
            assert_eq!(e["state"], "corrupt", "{how} {kind}: {e}");
            assert!(
                e["problem"]
                    .as_str()
                    .is_some_and(|p| p.contains("header overwritten")),
                "{how} {kind}: {e}"
            );
            let o = run(&["ls"]);
            let table = text(&o.stdout);
            let line = table
                .lines()
                .position(|l| l.starts_with(&format!("{name} ")))
                .unwrap_or_else(|| panic!("{how} {kind}: not in the table:\n{table}"));
            let lines: Vec<&str> = table.lines().collect();
            assert!(lines[line].contains(" corrupt "), "{}", lines[line]);
            assert!(
                lines[line + 1].contains("problem: header overwritten"),
                "{table}"
            );
            let o = run(&["stat", &name]);
            assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
            assert!(
                text(&o.stdout).contains("state     corrupt"),
                "{}",
                text(&o.stdout)
            );

            let o = run(&["rm", &name]);
            assert_eq!(
                o.status.code(),
                Some(0),
                "{how} {kind}: {}",
                text(&o.stderr)
            );
            assert!(!path.exists(), "{how} {kind}");
        }
    }
}

/// `rm --corrupt` (with or without --stale) removes the corrupt segments of a directory and
/// nothing else; `rm --stale` alone leaves them. A foreign file is neither listed nor removed.
#[test]
fn rm_stale_corrupt_removes_every_corrupt_segment() {
    let dir = TmpDir::new("names-rm-corrupt");
    let d = dir.0.to_str().unwrap();
    for n in ["bad1", "bad2", "fine"] {
        drop(Segment::file(dir.0.join(n)).size(1 << 16).create().unwrap());
    }
    damage(&dir.0.join("bad1"), &[0; 128]);
    damage(&dir.0.join("bad2"), &noise(128, 99));
    std::fs::write(dir.0.join("foreign"), vec![0u8; 8192]).unwrap();

    let list = ls_json(Some(d));
    let names: Vec<&str> = list.iter().map(|v| v["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["bad1", "bad2", "fine"]);
    assert_eq!(entry(&list, "fine").unwrap()["state"], "idle");

    let o = run(&["rm", "--dir", d, "--stale"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(dir.0.join("bad1").exists() && dir.0.join("bad2").exists());

    let o = run(&["rm", "--dir", d, "--stale", "--corrupt"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "removed bad1\nremoved bad2\n");
    assert!(!dir.0.join("bad1").exists() && !dir.0.join("bad2").exists());
    assert!(dir.0.join("fine").exists() && dir.0.join("foreign").exists());

    // A file that is not a segment: refused by name, with the way out.
    let o = run(&["rm", "--dir", d, "foreign"]);
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(
        err.contains("is not a shmlane segment") && err.contains("--force"),
        "{err}"
    );
    assert!(dir.0.join("foreign").exists());
}

/// A segment in use whose header is damaged is listed (live, with the problem), not hidden,
/// and `rm` leaves it to its users.
#[test]
fn a_live_segment_with_a_damaged_header_is_listed() {
    let dir = TmpDir::new("names-live-corrupt");
    let d = dir.0.to_str().unwrap();
    let path = dir.0.join("inuse");
    let seg = Segment::file(&path).size(1 << 16).create().unwrap();
    damage(&path, &[0; 128]);
    let list = ls_json(Some(d));
    let e = entry(&list, "inuse").expect("listed");
    assert_eq!(e["state"], "live", "{e}");
    assert!(
        e["problem"]
            .as_str()
            .is_some_and(|p| p.contains("header overwritten"))
    );
    let o = run(&["rm", "--dir", d, "inuse"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(path.exists());
    drop(seg);
}

/// On main `ls --dir` gave a segment made by `shm_open` and found in another directory the
/// backend `posix`; it is opened there as a file.
#[test]
fn ls_dir_reports_the_file_backend() {
    let dir = TmpDir::new("names-backend");
    let name = unique("names-backend");
    let _c = Cleanup(name.clone());
    let o = run(&["create", &name, "--capacity", "64"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    std::fs::copy(Path::new("/dev/shm").join(&name), dir.0.join("copy")).unwrap();
    let list = ls_json(Some(dir.0.to_str().unwrap()));
    assert_eq!(entry(&list, "copy").expect("listed")["backend"], "file");
    assert_eq!(
        entry(&ls_json(None), &name).expect("listed")["backend"],
        "posix"
    );
    let o = run(&["ls", "--dir", dir.0.to_str().unwrap()]);
    assert!(
        text(&o.stdout)
            .lines()
            .any(|l| l.starts_with("copy ") && l.contains(" file "))
    );
}

/// As another user, `ls` lists what it cannot read (it was hidden on main).
#[test]
fn ls_lists_segments_it_cannot_read() {
    if !shmlane_testkit::is_root() {
        eprintln!("skipped: needs root to run ls as another user");
        return;
    }
    let dir = TmpDir::new("names-unreadable");
    let d = dir.0.to_str().unwrap();
    drop(
        Segment::file(dir.0.join("private"))
            .size(1 << 16)
            .mode(0o600)
            .create()
            .unwrap(),
    );
    let o = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_shmlane"))
        .args(["ls", "--json", "--dir", d])
        .output()
        .expect("setpriv");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let list: Vec<serde_json::Value> = serde_json::from_slice::<serde_json::Value>(&o.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone();
    let e = entry(&list, "private").expect("listed");
    assert_eq!(e["state"], "unreadable", "{e}");
    assert_eq!(e["uid"], 0);
    assert!(
        e["problem"]
            .as_str()
            .is_some_and(|p| p.contains("cannot read it")),
        "{e}"
    );
}

/// On main `stat` counted a sender that was killed as attached ("1 senders"), and its JSON had
/// no `lost`.
#[test]
fn stat_counts_only_live_attachments_and_shows_lost() {
    let name = unique("names-stat-live");
    let _c = Cleanup(name.clone());
    let o = run(&["create", &name, "--capacity", "64"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    // A sender that attaches, sends one line, and waits for more input; then is killed.
    let mut tx = Command::new(env!("CARGO_BIN_EXE_shmlane"))
        .args(["send", &name])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        tx.stdin.as_mut().unwrap().write_all(b"one\n").unwrap();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let stat_json = || -> serde_json::Value {
        let o = run(&["stat", "--json", &name]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    while stat_json()["write_position"] != 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the sender did not send"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let v = stat_json();
    assert_eq!(
        (v["senders"].clone(), v["receivers"].clone()),
        (1.into(), 0.into())
    );
    tx.kill().unwrap();
    tx.wait().unwrap();
    let v = stat_json();
    assert_eq!(v["senders"], 0, "{v}");
    assert_eq!(v["dead_attachments"], 1, "{v}");
    assert_eq!(v["sent"]["lost"], 0, "{v}");
    assert_eq!(v["received"]["lost"], 0, "{v}");
    let o = run(&["stat", &name]);
    let out = text(&o.stdout);
    assert!(
        out.contains("0 senders, 0 receivers attached (1 attachments of processes that died)"),
        "{out}"
    );
}

fn create(args: &[&str]) {
    let mut a = vec!["create"];
    a.extend(args);
    let o = run(&a);
    assert_eq!(o.status.code(), Some(0), "{a:?}: {}", text(&o.stderr));
}

/// A second receiver on a byte channel: the message names the holding process, once (it said
/// "channel q: channel q: ..." and gave an owner tag).
#[test]
fn a_second_byte_receiver_names_the_holding_pid() {
    let name = unique("names-second-rx");
    let _c = Cleanup(name.clone());
    create(&[&name, "--kind", "bytes", "--capacity", "4096"]);
    let mut first = Command::new(env!("CARGO_BIN_EXE_shmlane"))
        .args(["recv", &name, "--timeout", "20s"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Until the first holds the role (attached as a receiver).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let v: serde_json::Value =
            serde_json::from_slice(&run(&["stat", "--json", &name]).stdout).unwrap();
        if v["receivers"] == 1 {
            // Attached; its claim of the role follows within microseconds.
            std::thread::sleep(std::time::Duration::from_millis(200));
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never attached: {v}");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let o = run(&["recv", &name, "--timeout", "1s"]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    first.kill().unwrap();
    first.wait().unwrap();
    assert!(
        err.contains(&format!(
            "its byte receiver is already held by process {}",
            first.id()
        )),
        "{err}"
    );
    assert_eq!(err.matches(&name).count(), 1, "{err}");
    assert!(!err.contains("SPSC"), "{err}");
}

/// `--kind`, `--capacity` or `--msg-size` that do not match an existing channel are an error
/// (they were silently ignored); matching ones are fine.
#[test]
fn conflicting_shape_flags_on_an_existing_channel_are_an_error() {
    let name = unique("names-conflict");
    let _c = Cleanup(name.clone());
    create(&[&name, "--msg-size", "60", "--capacity", "64"]);
    for (flags, named) in [
        (vec!["--kind", "mpmc"], "--kind mpmc"),
        (vec!["--capacity", "128"], "--capacity 128"),
        (vec!["--msg-size", "1000"], "--msg-size 1000"),
    ] {
        for cmd in ["send", "recv"] {
            let mut a = vec![cmd, name.as_str(), "--timeout", "1s"];
            a.extend(&flags);
            let o = run(&a);
            let err = text(&o.stderr);
            assert_eq!(o.status.code(), Some(1), "{a:?}: {err}");
            assert!(
                err.contains(&format!(
                    "channel {name} exists as spsc (capacity 64, messages up to 60 bytes), so {named} does not apply"
                )),
                "{a:?}: {err}"
            );
            // Said once, in the command's terms (not the ring's element size).
            assert_eq!(err.matches(name.as_str()).count(), 2, "{err}");
            assert!(!err.contains("-byte elements"), "{err}");
        }
    }
    let o = run(&[
        "send",
        &name,
        "--kind",
        "spsc",
        "--capacity",
        "64",
        "--msg-size",
        "60",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
}

/// Over 1 GiB only with --yes (it reserved whatever was asked); without it the error says how
/// much it would take. With --yes, a segment larger than the free space says how much is free.
#[test]
fn a_reservation_over_1_gib_asks_for_yes() {
    let name = unique("names-large");
    let _c = Cleanup(name.clone());
    let o = run(&[
        "create",
        &name,
        "--kind",
        "mpmc",
        "--capacity",
        "1048576",
        "--msg-size",
        "4000",
    ]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("would reserve 4.0 GiB of shared memory") && err.contains("--yes"),
        "{err}"
    );
    assert!(!Path::new("/dev/shm").join(&name).exists());
    // 256 GiB: more than a test machine's /dev/shm (the limit on a segment is 512 GiB).
    let o = run(&[
        "create",
        &name,
        "--kind",
        "spsc",
        "--capacity",
        "4194304",
        "--msg-size",
        "65000",
        "--yes",
    ]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("it needs 256.0 GiB and its filesystem has") && !err.contains("is full"),
        "{err}"
    );
    assert!(!Path::new("/dev/shm").join(&name).exists());
}

/// The implicit channel of `send` takes about 1 MiB of /dev/shm (32 MiB on main).
#[test]
fn the_implicit_channel_is_small() {
    let name = unique("names-implicit");
    let _c = Cleanup(name.clone());
    let mut tx = Command::new(env!("CARGO_BIN_EXE_shmlane"))
        .args(["send", &name, "--timeout", "20s"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        tx.stdin.as_mut().unwrap().write_all(b"x\n").unwrap();
    }
    let path = Path::new("/dev/shm").join(&name);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !path.exists() {
        assert!(std::time::Instant::now() < deadline, "no channel");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let v: serde_json::Value =
        serde_json::from_slice(&run(&["stat", "--json", &name]).stdout).unwrap();
    let size = v["size"].as_u64().unwrap();
    assert!(size <= 2 << 20, "the implicit channel takes {size} bytes");
    assert_eq!(v["msg_size"], 256);
    let o = run(&["recv", &name, "--count", "1", "--timeout", "20s"]);
    assert_eq!(text(&o.stdout), "x\n");
    drop(tx.stdin.take());
    assert_eq!(tx.wait().unwrap().code(), Some(0));
}

/// "line N and later were not delivered" counts what the receiver consumed (it counted what
/// was sent, the unread lines in the ring too).
#[test]
fn a_dead_receiver_is_reported_from_the_first_line_it_did_not_take() {
    let name = unique("names-undelivered");
    let _c = Cleanup(name.clone());
    create(&[&name, "--capacity", "64", "--msg-size", "60"]);
    // The receiver's output is not read past its first lines: it stops taking lines once its
    // output pipe and buffer are full, then it is killed.
    let mut rx = Command::new(env!("CARGO_BIN_EXE_shmlane"))
        .args(["recv", &name])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut tx = Command::new(env!("CARGO_BIN_EXE_shmlane"))
        .args(["send", &name])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = tx.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        use std::io::Write;
        for i in 0..400_000u32 {
            if writeln!(input, "{i:040}").is_err() {
                return;
            }
        }
    });
    // Wait until the ring is full (the receiver is stuck on its output).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let stat = || -> serde_json::Value {
        serde_json::from_slice(&run(&["stat", "--json", &name]).stdout).unwrap()
    };
    loop {
        let v = stat();
        if v["len"] == 64 {
            std::thread::sleep(std::time::Duration::from_millis(200));
            if stat()["len"] == 64 {
                break;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the ring never filled: {v}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    rx.kill().unwrap();
    rx.wait().unwrap();
    let out = tx.wait_with_output().unwrap();
    feeder.join().unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    let v = stat();
    let consumed = v["read_position"].as_u64().unwrap();
    assert_eq!(v["write_position"].as_u64().unwrap(), consumed + 64, "{v}");
    assert!(
        err.contains(&format!(
            "line {} and later were not delivered",
            consumed + 1
        )),
        "consumed {consumed}: {err}"
    );
}

/// The usage error's exit code is in --help with the others.
#[test]
fn help_documents_exit_code_2() {
    let o = run(&["--help"]);
    let help = text(&o.stdout);
    assert!(
        help.contains("0 ok, 1 error, 2 usage (a bad argument or name), 3 a peer process died"),
        "{help}"
    );
}

/// Capacity errors state the kind's real rule (bytes: a size in bytes, at least 256 once grown).
#[test]
fn capacity_errors_state_the_kinds_rule() {
    let name = unique("names-capacity");
    let _c = Cleanup(name.clone());
    let o = run(&[
        "create",
        &name,
        "--kind",
        "bytes",
        "--capacity",
        "2147483648",
    ]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("--capacity is the ring's size in bytes, at most 1073741824 (grown to a power of two of at least 256"),
        "{err}"
    );
    assert!(!err.contains("1..=2^40"), "{err}");
    let o = run(&["create", &name, "--kind", "mpmc", "--capacity", "100"]);
    let err = text(&o.stderr);
    assert!(
        err.contains("--capacity 100 must be a power of two between 2 and 16777216"),
        "{err}"
    );
}

/// `ls` columns stay aligned with long names (a name past 28 characters shifted its row).
#[test]
fn ls_columns_stay_aligned_with_long_names() {
    let dir = TmpDir::new("names-columns");
    let long = format!("orders-{}", "x".repeat(60));
    for n in ["q", long.as_str()] {
        drop(Segment::file(dir.0.join(n)).size(1 << 16).create().unwrap());
    }
    let o = run(&["ls", "--dir", dir.0.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    for col in ["BACKEND", "SIZE", "STATE"] {
        let at = lines[0].find(col).unwrap();
        let end = at + col.len();
        for l in &lines[1..] {
            let cell = match col {
                "BACKEND" => l.get(at..at + 4) == Some("file"),
                // Right-aligned: the number ends where the heading does.
                "SIZE" => l.as_bytes()[end - 1].is_ascii_digit() && l.as_bytes()[end] == b' ',
                _ => l.get(at..at + 4) == Some("idle"),
            };
            assert!(cell, "{col} misaligned:\n{out}");
        }
    }
}

/// A broadcast or bytes channel takes any message up to its largest: a smaller --msg-size
/// matches it, a larger one is an error.
#[test]
fn msg_size_up_to_the_largest_matches_a_byte_or_broadcast_channel() {
    for kind in ["broadcast", "bytes"] {
        let name = unique(&format!("names-upto-{kind}"));
        let _c = Cleanup(name.clone());
        create(&[&name, "--kind", kind, "--msg-size", "256"]);
        let o = run(&["send", &name, "--msg-size", "100"]);
        assert_eq!(o.status.code(), Some(0), "{kind}: {}", text(&o.stderr));
        let o = run(&["send", &name, "--msg-size", "1000000"]);
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{kind}: {err}");
        assert!(
            err.contains("so --msg-size 1000000 does not apply"),
            "{kind}: {err}"
        );
    }
}
