//! Builds the C test programs against the library, built fresh for this test run.
//!
//! How the library is found: cargo does not build a cdylib/staticlib-only lib target for the
//! package's integration tests (nothing can link it into them), so on a clean checkout
//! `libshmlane.so` would not exist when these tests run, and after an edit it would be stale.
//! So the first test of each test binary that needs it runs `cargo build -p shmlane-ffi
//! --lib` itself, with the same cargo, target directory and profile as this test binary
//! (read from its path, `target/<profile>/deps/`), which rebuilds it if any source changed
//! and is a no-op otherwise. Cargo releases its build-directory lock before it runs tests,
//! so the nested build does not wait for the outer one; it is still bounded by a timeout (a
//! clear failure, never a hang). The C programs link that directory's library only (`-L`,
//! rpath), never an installed copy.
#![allow(dead_code, reason = "each test file uses a part")]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The directory holding this run's `libshmlane.so` and `libshmlane.a`, built now.
pub fn lib_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(build_library).clone()
}

fn build_library() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let deps = exe.parent().expect("deps dir");
    let profile_dir = deps.parent().expect("profile dir");
    let target = profile_dir.parent().expect("target dir");
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev".to_owned(),
        Some(p) => p.to_owned(),
        None => panic!("unexpected test binary path {}", exe.display()),
    };
    let mut child = Command::new(env!("CARGO"))
        .args([
            "build",
            "-q",
            "-p",
            "shmlane-ffi",
            "--lib",
            "--profile",
            &profile,
        ])
        .arg("--target-dir")
        .arg(target)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .spawn()
        .expect("run cargo build");
    let limit = Instant::now() + Duration::from_secs(600);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait for cargo") {
            break s;
        }
        if Instant::now() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("cargo build -p shmlane-ffi took over 10 minutes (a lock held?): killed");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        status.success(),
        "cargo build -p shmlane-ffi failed: {status}"
    );
    for f in ["libshmlane.so", "libshmlane.a"] {
        assert!(
            profile_dir.join(f).is_file(),
            "{f} not in {} after cargo build -p shmlane-ffi",
            profile_dir.display()
        );
    }
    profile_dir.to_path_buf()
}

/// The workspace's `include/` directory.
pub fn include_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../include")
}

/// Whether to link the static library instead of the shared one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    Shared,
    Static,
}

/// Compiles `tests/c/<src>.c` with `cc -std=c99 -Wall -Wextra -Werror -pedantic` into a binary
/// named `<out>` in cargo's per-test temporary directory, linked against this run's library;
/// once per test binary and `out` (tests running in parallel share it, never race on it).
pub fn compile(src: &str, out: &str, link: Link) -> PathBuf {
    static BUILT: Mutex<Vec<(String, PathBuf)>> = Mutex::new(Vec::new());
    let mut built = BUILT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((_, p)) = built.iter().find(|(o, _)| o == out) {
        return p.clone();
    }
    let p = cc(src, out, link);
    built.push((out.to_owned(), p.clone()));
    p
}

fn cc(src: &str, out: &str, link: Link) -> PathBuf {
    let lib = lib_dir();
    let c = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/c")
        .join(format!("{src}.c"));
    let bin = Path::new(env!("CARGO_TARGET_TMPDIR")).join(out);
    let mut cmd = Command::new("cc");
    cmd.args([
        "-std=c99",
        "-Wall",
        "-Wextra",
        "-Werror",
        "-pedantic",
        "-g",
        "-O1",
    ])
    .arg("-I")
    .arg(include_dir())
    .arg(&c)
    .arg("-o")
    .arg(&bin);
    match link {
        Link::Shared => {
            cmd.arg("-L").arg(&lib).arg("-lshmlane");
            cmd.arg(format!("-Wl,-rpath,{}", lib.display()));
        }
        Link::Static => {
            cmd.arg(lib.join("libshmlane.a"))
                .args(["-lpthread", "-ldl", "-lm", "-lrt"]);
        }
    }
    let o = cmd.output().expect("run cc");
    assert!(
        o.status.success(),
        "cc failed for {}:\n{}{}",
        c.display(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    bin
}

/// Whether valgrind is installed.
pub fn have_valgrind() -> bool {
    Command::new("valgrind")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs `bin args` under valgrind when it is installed (errors and definite leaks exit 99),
/// else plainly, saying so loudly.
pub fn run_checked(bin: &Path, args: &[&str]) -> Output {
    if have_valgrind() {
        Command::new("valgrind")
            .args([
                "-q",
                "--error-exitcode=99",
                "--leak-check=full",
                "--errors-for-leak-kinds=definite",
            ])
            .arg(bin)
            .args(args)
            .output()
            .expect("run valgrind")
    } else {
        eprintln!(
            "\n!!!!! VALGRIND IS NOT INSTALLED: running {} WITHOUT memory checking !!!!!\n",
            bin.display()
        );
        Command::new(bin).args(args).output().expect("run C test")
    }
}

/// A name unique to this process and label, removed at drop.
pub struct Name(pub String);

impl Name {
    pub fn new(label: &str) -> Self {
        Self(shmlane_testkit::unique(label))
    }
}

impl Drop for Name {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(format!("/dev/shm/{}", self.0));
    }
}

/// How long a test waits for a C peer's next line, or for it to exit.
pub const PEER_WAIT: Duration = Duration::from_secs(30);

/// Starts the C program `prog` (tests/c/`prog`.c, linked with the shared library) with
/// `args`; its stdout is piped (read it with [`lines`]), its stderr inherited.
pub fn spawn_c(prog: &str, args: &[&str]) -> Child {
    let bin = compile(prog, prog, Link::Shared);
    Command::new(bin)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("start {prog}.c: {e}"))
}

/// The lines a child writes to `out`, as they come (a thread reads them).
pub fn lines(out: ChildStdout) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines() {
            let Ok(l) = l else { break };
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    rx
}

/// The next line containing `what`, skipping others; fails on a line with `FAIL` or after
/// [`PEER_WAIT`] without a line.
pub fn expect_line(rx: &mpsc::Receiver<String>, what: &str) -> String {
    loop {
        let l = rx
            .recv_timeout(PEER_WAIT)
            .unwrap_or_else(|_| panic!("no line with {what:?}"));
        assert!(!l.contains("FAIL"), "peer failed: {l}");
        if l.contains(what) {
            return l;
        }
    }
}

/// Waits for `c` to exit successfully, at most [`PEER_WAIT`] (then kills it and fails).
pub fn wait_ok(mut c: Child, what: &str) {
    let deadline = Instant::now() + PEER_WAIT;
    loop {
        if let Some(s) = c.try_wait().expect("wait") {
            assert!(s.success(), "{what} exited with {s}");
            return;
        }
        if Instant::now() > deadline {
            let _ = c.kill();
            let _ = c.wait();
            panic!("{what} did not finish in {PEER_WAIT:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
