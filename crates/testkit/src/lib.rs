//! Runs parts of a test in real separate processes: the test binary re-executes itself with
//! `--exact child_entry` and an environment variable naming the role to play. Every test file
//! that uses [`child`] defines a `#[test] fn child_entry()` that dispatches on [`child_role`].

use std::{
    io::Read,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// Environment variable holding the child's role.
pub const ROLE_VAR: &str = "SHMLANE_TEST_CHILD";
/// Environment variable holding the child's arguments, separated by 0x1f.
pub const ARGS_VAR: &str = "SHMLANE_TEST_ARGS";

/// A command that runs this test binary as a child playing `role`.
pub fn child(role: &str, args: &[&str]) -> Command {
    let mut c = Command::new(std::env::current_exe().expect("current exe"));
    c.args([
        "--exact",
        "child_entry",
        "--nocapture",
        "--test-threads=1",
        "-q",
    ])
    .env(ROLE_VAR, role)
    .env(ARGS_VAR, args.join("\u{1f}"))
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    c
}

/// The role and arguments, if this process is a child.
pub fn child_role() -> Option<(String, Vec<String>)> {
    let role = std::env::var(ROLE_VAR).ok()?;
    let args = std::env::var(ARGS_VAR)
        .unwrap_or_default()
        .split('\u{1f}')
        .map(str::to_owned)
        .collect();
    Some((role, args))
}

/// Waits for `child` to exit, killing it and failing after `limit`; returns its exit code and
/// the lines it printed with the `OUT:` prefix.
///
/// # Panics
/// If the child outlives `limit` or its output cannot be read.
pub fn finish(mut child: Child, limit: Duration) -> (i32, Vec<String>) {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            let mut out = String::new();
            child
                .stdout
                .take()
                .expect("piped stdout")
                .read_to_string(&mut out)
                .expect("read child output");
            let lines = out
                .lines()
                .filter_map(|l| l.strip_prefix("OUT:").map(str::to_owned))
                .collect();
            return (status.code().unwrap_or(-1), lines);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("child process did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A segment name unique to this test process and label.
pub fn unique(label: &str) -> String {
    format!("shmlane-test-{}-{label}", std::process::id())
}

/// Removes a POSIX segment on drop, whatever happened.
#[derive(Debug)]
pub struct Cleanup(pub String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(format!("/dev/shm/{}", self.0));
    }
}

/// This process's threads that have not exited (from /proc). A thread just joined can still
/// be listed for a moment: `pthread_join` returns when the exiting thread's tid word is cleared
/// (`mm_release`, early in `do_exit`), and the task leaves `/proc/self/task` only when it is
/// released, later (seen in CI: 4 tasks listed where 3 lived). Such a task is in state `Z` or
/// `X` by then (or already gone: skipped); a thread still running is not.
pub fn live_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .filter_map(|e| {
            let stat = std::fs::read_to_string(e.ok()?.path().join("stat")).ok()?;
            let state = stat[stat.rfind(')')? + 2..].chars().next()?;
            (!matches!(state, 'Z' | 'X')).then_some(())
        })
        .count()
}

/// Whether we run as root (some tests need to mount a tmpfs or chown).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Pins the calling thread to `core`; false if the machine does not have it.
pub fn pin_to(core: usize) -> bool {
    let mut set = nix::sched::CpuSet::new();
    set.set(core).is_ok()
        && nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).is_ok()
}
