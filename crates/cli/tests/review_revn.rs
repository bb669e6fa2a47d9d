//! Review "revn" of issue 17 ("names" and "share"): the advice in the command's messages
//! works as written, and nothing the command reads can make it wait forever.

use std::{
    path::PathBuf,
    process::{Command, Output},
    sync::mpsc,
    time::Duration,
};

use shmlane_testkit::unique;

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shmlane"))
        .args(args)
        .output()
        .expect("run shmlane")
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

#[test]
fn rm_dir_of_a_foreign_file_suggests_a_command_that_works() {
    let dir = TmpDir::new("revn-foreign");
    let d = dir.0.to_str().expect("utf-8 temp dir");
    let file = dir.0.join("foreign");
    std::fs::write(&file, vec![0u8; 8192]).unwrap();
    let out = run(&["rm", "--dir", d, "foreign"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(file.exists(), "a file that is not a segment is left alone");
    // The message ends with the command to run: it must be one that the command accepts.
    let cmd = err
        .split('`')
        .nth(1)
        .unwrap_or_else(|| panic!("no command in the message: {err}"));
    let words: Vec<&str> = cmd.split_whitespace().collect();
    assert_eq!(words[0], "shmlane", "{err}");
    let again = run(&words[1..]);
    assert_eq!(
        again.status.code(),
        Some(0),
        "the suggested `{cmd}` failed: {}",
        text(&again.stderr)
    );
    assert!(!file.exists(), "the suggested command removes it");
}

#[test]
fn the_truncation_check_does_not_wait_for_a_fifo_writer() {
    // `send`/`recv` inspect the segment (O_NONBLOCK, a regular file) and then read its header
    // again by path to refuse a truncated one: a FIFO put there in between must not block.
    let dir = TmpDir::new("revn-fifo");
    let fifo = dir.0.join("swapped");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let (tx, rx) = mpsc::channel();
    let p = fifo.clone();
    std::thread::spawn(move || {
        let _ = tx.send(shmlane_cli::share::truncated("swapped", &p));
    });
    let r = rx.recv_timeout(Duration::from_secs(5));
    assert!(
        matches!(r, Ok(None)),
        "truncated() on a FIFO: {r:?} (Err: still blocked in open after 5 s)"
    );
    // Nor follows a symbolic link to another file.
    let target = dir.0.join("target");
    std::os::unix::fs::symlink(&target, dir.0.join("link")).unwrap();
    let mut header = vec![0u8; 128];
    header[..8].copy_from_slice(b"SHMLANE\0");
    // total_size (offset 24): larger than the file, so a followed link would say "truncated".
    header[24..32].copy_from_slice(&(1u64 << 20).to_ne_bytes());
    std::fs::write(&target, &header).unwrap();
    assert_eq!(
        shmlane_cli::share::truncated("link", &dir.0.join("link")),
        None
    );
}

/// Runs the command as uid 65534 (groups cleared); `None` when this is not root or the
/// binary is not reachable by that user.
fn run_as_nobody(args: &[&str], stdin: &[u8]) -> Option<Output> {
    use std::io::Write;
    if !shmlane_testkit::is_root() {
        return None;
    }
    let spawn = |args: &[&str]| {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_shmlane"))
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("setpriv")
    };
    if !spawn(&["--version"])
        .wait_with_output()
        .ok()?
        .status
        .success()
    {
        return None;
    }
    let mut c = spawn(args);
    let _ = c.stdin.take().expect("stdin").write_all(stdin);
    Some(c.wait_with_output().expect("wait"))
}

#[test]
fn another_users_private_channel_is_refused_with_what_to_do() {
    let name = unique("revn-private");
    let _c = shmlane_testkit::Cleanup(name.clone());
    if !shmlane_testkit::is_root() {
        println!("skipped: needs root to run a second user");
        return;
    }
    let out = run(&["create", &name]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for args in [
        vec!["stat", name.as_str()],
        vec!["send", name.as_str(), "--timeout", "1s"],
        vec!["recv", name.as_str(), "--timeout", "1s"],
    ] {
        let Some(out) = run_as_nobody(&args, b"x\n") else {
            println!("skipped: the binary is not executable by uid 65534");
            return;
        };
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        // Who owns it, its mode, and how its owner can share it: not a bare errno.
        assert!(
            err.contains("belongs to uid 0")
                && err.contains("mode 0600")
                && err.contains("--group"),
            "{args:?}: {err}"
        );
        assert!(!err.contains("os error"), "{args:?}: {err}");
    }
}

/// The names of the files in `dir` opened while `f` ran (inotify `IN_OPEN`).
fn opened_in(dir: &std::path::Path, f: impl FnOnce()) -> Vec<String> {
    use nix::libc;
    use std::os::unix::ffi::OsStrExt;
    let cdir = std::ffi::CString::new(dir.as_os_str().as_bytes()).unwrap();
    // SAFETY: plain syscalls on a descriptor we own; the buffer outlives the reads.
    unsafe {
        let fd = libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC);
        assert!(fd >= 0, "inotify_init1");
        assert!(libc::inotify_add_watch(fd, cdir.as_ptr(), libc::IN_OPEN) >= 0);
        f();
        let mut names = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
            if n <= 0 {
                break;
            }
            let mut off = 0;
            while off < n as usize {
                let ev = buf
                    .as_ptr()
                    .add(off)
                    .cast::<libc::inotify_event>()
                    .read_unaligned();
                let start = off + size_of::<libc::inotify_event>();
                let raw = &buf[start..start + ev.len as usize];
                let name = raw.split(|&b| b == 0).next().unwrap_or_default();
                if !name.is_empty() {
                    names.push(String::from_utf8_lossy(name).into_owned());
                }
                off = start + ev.len as usize;
            }
        }
        libc::close(fd);
        names
    }
}

#[test]
fn ls_stat_and_rm_open_no_fifo_nor_device() {
    // `ls --dir /dev` must not open every device (a watchdog, a tape, a terminal); a FIFO
    // stands in for them here: its opens are seen by inotify.
    let dir = TmpDir::new("revn-nodes");
    let d = dir.0.to_str().expect("utf-8 temp dir");
    nix::unistd::mkfifo(
        &dir.0.join("shmlane-x"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    let opened = opened_in(&dir.0, || {
        assert!(run(&["ls", "--dir", d]).status.success());
        assert!(run(&["ls", "--dir", d, "--json"]).status.success());
        assert_eq!(
            run(&["stat", "--dir", d, "shmlane-x"]).status.code(),
            Some(1)
        );
        assert_eq!(run(&["rm", "--dir", d, "shmlane-x"]).status.code(), Some(1));
        assert!(
            run(&["rm", "--dir", d, "--stale", "--corrupt"])
                .status
                .success()
        );
    });
    assert!(opened.is_empty(), "opened: {opened:?}");
    assert!(dir.0.join("shmlane-x").exists());
}
