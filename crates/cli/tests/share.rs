//! Sharing a channel between users with the `shmlane` command, run as real processes under
//! two uids (root and 65534 through `setpriv`), and truncated segments (issue 17). The group
//! recipe is taken from docs/operations.md and run as written.

use std::{
    fs,
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use nix::sys::signal::Signal;
use shmlane_testkit::{Cleanup, is_root, unique};

const LIMIT: Duration = Duration::from_secs(30);
const OTHER_UID: u32 = 65534;

/// The binary, at a path uid 65534 can execute: the build's own if every directory above it
/// lets others through, else a copy (0755) in a temporary directory, removed on drop.
struct Bin {
    path: PathBuf,
    copy_dir: Option<PathBuf>,
}

impl Drop for Bin {
    fn drop(&mut self) {
        if let Some(d) = self.copy_dir.take() {
            let _ = fs::remove_dir_all(d);
        }
    }
}

fn others_can_run(path: &Path) -> bool {
    let file_ok = fs::metadata(path).is_ok_and(|m| m.mode() & 0o001 != 0);
    file_ok
        && path
            .ancestors()
            .skip(1)
            .filter(|p| !p.as_os_str().is_empty())
            .all(|d| fs::metadata(d).is_ok_and(|m| m.mode() & 0o001 != 0))
}

fn bin() -> Bin {
    static COPIES: AtomicU32 = AtomicU32::new(0);
    let built = PathBuf::from(env!("CARGO_BIN_EXE_shmlane"));
    if others_can_run(&built) {
        return Bin {
            path: built,
            copy_dir: None,
        };
    }
    // One copy per test (tests run on parallel threads, each removes its own).
    let n = COPIES.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(unique(&format!("share-bin-{n}")));
    fs::create_dir_all(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    let path = dir.join("shmlane");
    fs::copy(&built, &path).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    assert!(
        others_can_run(&path),
        "{} not runnable by others",
        path.display()
    );
    // A child another thread forked while the copy was open for writing holds it until it
    // execs: running the copy fails with ETXTBSY until then.
    let t0 = Instant::now();
    loop {
        match Command::new(&path).arg("--version").output() {
            Ok(o) if o.status.success() => break,
            Err(e) if e.raw_os_error() == Some(nix::libc::ETXTBSY) && t0.elapsed() < LIMIT => {
                std::thread::sleep(Duration::from_millis(10));
            }
            other => panic!("running the copy {}: {other:?}", path.display()),
        }
    }
    Bin {
        path,
        copy_dir: Some(dir),
    }
}

/// The gid of group `nogroup` (the recipe's group).
fn nogroup() -> u32 {
    nix::unistd::Group::from_name("nogroup")
        .unwrap()
        .expect("group nogroup exists")
        .gid
        .as_raw()
}

/// Who runs a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Who {
    /// Us (root).
    Owner,
    /// uid 65534 with group nogroup only.
    Member,
}

/// `sh -c script` as `who`, with SIGINT, SIGTERM and SIGHUP at their default disposition
/// (see lifecycle.rs).
fn sh(who: Who, script: &str) -> Command {
    use std::os::unix::process::CommandExt as _;
    let mut c = match who {
        Who::Owner => Command::new("sh"),
        Who::Member => {
            let mut c = Command::new("setpriv");
            c.args([
                format!("--reuid={OTHER_UID}"),
                format!("--regid={}", nogroup()),
                "--clear-groups".to_owned(),
                "sh".to_owned(),
            ]);
            c
        }
    };
    c.arg("-c").arg(script);
    // SAFETY: between fork and exec the closure only calls sigaction (async-signal-safe).
    unsafe {
        c.pre_exec(|| {
            for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
                nix::sys::signal::signal(sig, nix::sys::signal::SigHandler::SigDfl)
                    .map_err(std::io::Error::from)?;
            }
            Ok(())
        });
    }
    // Its own process group: a timeout kills the shell and every process it started.
    c.process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// `shmlane ARGS` as `who`.
fn shmlane(b: &Bin, who: Who, args: &[&str]) -> Command {
    let quoted: Vec<String> = args.iter().map(|a| format!("'{a}'")).collect();
    sh(
        who,
        &format!("exec '{}' {}", b.path.display(), quoted.join(" ")),
    )
}

/// Waits for `child` at most `limit`, then kills it (with its process group) and fails.
fn finish(mut child: Child, limit: Duration) -> Output {
    let t0 = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if t0.elapsed() > limit {
            let pgid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::killpg(pgid, Signal::SIGKILL);
            let out = child.wait_with_output().unwrap();
            panic!(
                "process still running after {limit:?}; killed: {}",
                text(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn run(mut c: Command) -> Output {
    finish(c.spawn().unwrap(), LIMIT)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn shm(name: &str) -> PathBuf {
    PathBuf::from(format!("/dev/shm/{name}"))
}

/// The recipe in docs/operations.md: (who, command) in order, `jobs` being the channel.
fn recipe() -> Vec<(Who, String)> {
    let doc = fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/operations.md"
    ))
    .unwrap();
    let section = doc
        .split("### Sharing a channel with a group")
        .nth(1)
        .expect("docs/operations.md has the group-sharing recipe");
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("the recipe is a sh block");
    let mut who = Who::Owner;
    let mut steps = Vec::new();
    for line in block.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(comment) = line.strip_prefix('#') {
            who = if comment.contains("member") {
                Who::Member
            } else {
                Who::Owner
            };
        } else {
            steps.push((who, line.to_owned()));
        }
    }
    steps
}

/// A recipe line for this machine: our binary for `shmlane`, our channel for `jobs`.
fn localise(line: &str, b: &Bin, name: &str) -> String {
    line.replace("shmlane ", &format!("'{}' ", b.path.display()))
        .replace(" jobs", &format!(" {name}"))
}

#[test]
fn the_group_sharing_recipe_works_as_written_with_a_second_uid() {
    if !is_root() {
        println!("skipped: needs root to run a command as uid {OTHER_UID}");
        return;
    }
    let steps = recipe();
    let commands: Vec<&str> = steps.iter().map(|(_, l)| l.as_str()).collect();
    assert_eq!(
        commands,
        [
            "shmlane create jobs --mode 0660 --group nogroup",
            "printf 'job 1\\njob 2\\n' | shmlane send jobs --trust-owner root",
            "shmlane recv jobs",
            "shmlane rm jobs",
        ],
        "the recipe this test runs"
    );
    let whos: Vec<Who> = steps.iter().map(|(w, _)| *w).collect();
    assert_eq!(whos, [Who::Owner, Who::Member, Who::Owner, Who::Owner]);
    let b = bin();
    let name = unique("recipe");
    let _c = Cleanup(name.clone());
    let line = |i: usize| localise(&steps[i].1, &b, &name);

    let create = run(sh(Who::Owner, &line(0)));
    assert!(create.status.success(), "create: {}", text(&create.stderr));
    let m = fs::metadata(shm(&name)).unwrap();
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (0, nogroup(), 0o660));
    // The member sends (waiting at the end for a receiver), the owner receives.
    let send = sh(Who::Member, &line(1)).spawn().unwrap();
    let recv = run(sh(Who::Owner, &line(2)));
    let send = finish(send, LIMIT);
    assert!(
        send.status.success(),
        "member's send: {}",
        text(&send.stderr)
    );
    assert!(
        recv.status.success(),
        "owner's recv: {}",
        text(&recv.stderr)
    );
    assert_eq!(text(&recv.stdout), "job 1\njob 2\n");
    let rm = run(sh(Who::Owner, &line(3)));
    assert!(rm.status.success(), "rm: {}", text(&rm.stderr));
    assert!(!shm(&name).exists());
}

#[test]
fn a_member_without_trust_owner_is_refused_with_the_flag_named() {
    if !is_root() {
        println!("skipped: needs root to run a command as uid {OTHER_UID}");
        return;
    }
    let b = bin();
    let name = unique("untrusted");
    let _c = Cleanup(name.clone());
    let gid = nogroup().to_string();
    let out = run(shmlane(
        &b,
        Who::Owner,
        &["create", &name, "--mode", "660", "--group", &gid],
    ));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let before = fs::read(shm(&name)).unwrap();
    for args in [
        vec!["send", name.as_str(), "--timeout", "2s"],
        vec!["recv", name.as_str(), "--timeout", "2s"],
        // Trusting somebody else is not trusting the owner.
        vec![
            "send",
            name.as_str(),
            "--timeout",
            "2s",
            "--trust-owner",
            "1234",
        ],
    ] {
        let mut c = shmlane(&b, Who::Member, &args);
        c.stdin(Stdio::piped());
        let mut child = c.spawn().unwrap();
        drop(child.stdin.take());
        let out = finish(child, LIMIT);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains("is owned by uid 0 (root), not by you (uid 65534)"),
            "{args:?}: {err}"
        );
        assert!(err.contains("pass --trust-owner root"), "{args:?}: {err}");
        assert!(err.contains("Builder::trust_owner(0)"), "{args:?}: {err}");
        assert!(!err.contains("trust_foreign"), "{err}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
    }
    assert_eq!(
        fs::read(shm(&name)).unwrap(),
        before,
        "refusals change nothing"
    );
    // The other direction, the owner trusted by uid: the owner sends, the member receives.
    let mut send = shmlane(&b, Who::Owner, &["send", &name, "--timeout", "20s"]);
    send.stdin(Stdio::piped());
    let mut send = send.spawn().unwrap();
    {
        use std::io::Write as _;
        let mut input = send.stdin.take().unwrap();
        input.write_all(b"to the member\n").unwrap();
    }
    let recv = run(shmlane(
        &b,
        Who::Member,
        &["recv", &name, "--trust-owner", "0", "--timeout", "20s"],
    ));
    let send = finish(send, LIMIT);
    assert!(send.status.success(), "{}", text(&send.stderr));
    assert!(recv.status.success(), "{}", text(&recv.stderr));
    assert_eq!(text(&recv.stdout), "to the member\n");
    // A member that is not the owner cannot remove it (/dev/shm is sticky).
    let rm = run(shmlane(&b, Who::Member, &["rm", &name]));
    assert_eq!(rm.status.code(), Some(1), "{}", text(&rm.stderr));
    assert!(shm(&name).exists());
    // A group the member is not in is refused at creation, and nothing is left behind.
    let other = unique("notmygroup");
    let _c2 = Cleanup(other.clone());
    let out = run(shmlane(
        &b,
        Who::Member,
        &["create", &other, "--mode", "0660", "--group", "root"],
    ));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("cannot give segment"),
        "{}",
        text(&out.stderr)
    );
    assert!(!shm(&other).exists());
}

#[test]
fn modes_other_users_could_write_are_refused_at_creation() {
    let b = bin();
    let name = unique("worldw");
    let _c = Cleanup(name.clone());
    for (mode, says) in [
        ("0666", "o+w"),
        ("0662", "o+w"),
        ("4660", "setuid"),
        ("1660", "sticky"),
        ("0", "could not read and write"),
        ("0060", "could not read and write"),
    ] {
        let out = run(shmlane(&b, Who::Owner, &["create", &name, "--mode", mode]));
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "--mode {mode}: {err}");
        assert!(err.contains(says), "--mode {mode}: {err}");
        assert!(err.contains("0660"), "says what to use: {err}");
        assert!(!shm(&name).exists(), "--mode {mode} left a segment");
    }
    // Not a mode, or no such group: usage errors (exit 2), before anything is created.
    for args in [
        ["--mode", "rw-rw----"],
        ["--mode", "0680"],
        ["--group", "no-such-group-shmlane"],
    ] {
        let mut all = vec!["create", name.as_str()];
        all.extend(args);
        let out = run(shmlane(&b, Who::Owner, &all));
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(!shm(&name).exists());
    }
    // A world-writable mode given later (chmod) is refused on open, trusted or not.
    let out = run(shmlane(&b, Who::Owner, &["create", &name]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(fs::metadata(shm(&name)).unwrap().mode() & 0o7777, 0o600);
    fs::set_permissions(shm(&name), fs::Permissions::from_mode(0o666)).unwrap();
    let me = nix::unistd::geteuid().as_raw().to_string();
    let out = run(shmlane(
        &b,
        Who::Owner,
        &["recv", &name, "--timeout", "2s", "--trust-owner", &me],
    ));
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("chmod o-w"), "{err}");
}

#[test]
fn a_truncated_segment_is_refused_by_send_and_recv() {
    let b = bin();
    let name = unique("shrunk");
    let _c = Cleanup(name.clone());
    let out = run(shmlane(
        &b,
        Who::Owner,
        &["create", &name, "--capacity", "64", "--msg-size", "32"],
    ));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let full = fs::metadata(shm(&name)).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(shm(&name))
        .unwrap()
        .set_len(8192)
        .unwrap();
    for cmd in ["send", "recv"] {
        let mut c = shmlane(&b, Who::Owner, &[cmd, &name, "--timeout", "2s"]);
        c.stdin(Stdio::piped());
        let mut child = c.spawn().unwrap();
        drop(child.stdin.take());
        let out = finish(child, LIMIT);
        let err = text(&out.stderr);
        // Refused, not killed by SIGBUS.
        assert_eq!(out.status.code(), Some(1), "{cmd}: {err}");
        assert!(
            err.contains(&format!(
                "segment {name} was truncated: its file has 8192 bytes but its header says {full}"
            )),
            "{cmd}: {err}"
        );
        assert!(err.contains(&format!("shmlane rm {name}")), "{cmd}: {err}");
        assert!(
            out.stdout.is_empty(),
            "{cmd} printed {:?}",
            text(&out.stdout)
        );
    }
    // And it can be removed.
    let out = run(shmlane(&b, Who::Owner, &["rm", &name]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!shm(&name).exists());
}
