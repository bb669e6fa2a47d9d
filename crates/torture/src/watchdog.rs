//! The run's watchdog: a scenario that hangs fails the run, with the stacks of every process of
//! the run, instead of hanging it.
//!
//! Many waits of the harness are on its child processes (`wait`, a line on their stdout), and a
//! child that wedges would otherwise hold the run until CI's own time limit ends it with nothing
//! to read (it happened once). Each scenario announces itself on stderr with the time it starts;
//! if one runs past its budget, the watchdog prints which, the backtraces of this process and of
//! every descendant (`gdb -batch`, when gdb is installed; each process's kernel wait channel
//! otherwise), SIGKILLs the descendants and exits 1.

use std::{
    fmt::Write as _,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

/// What the watchdog sees: the scenario running and when it started.
pub(crate) struct Watchdog {
    now: Arc<Mutex<(String, Instant)>>,
    t0: Instant,
}

impl Watchdog {
    /// Starts the watchdog thread; a scenario may run for `budget` at most.
    pub(crate) fn start(budget: Duration) -> Self {
        let now = Arc::new(Mutex::new((String::from("start"), Instant::now())));
        let seen = now.clone();
        std::thread::spawn(move || {
            loop {
                std::thread::sleep(Duration::from_secs(1));
                let (name, since) = seen
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clone();
                if since.elapsed() > budget {
                    hung(&name, since.elapsed());
                }
            }
        });
        Self {
            now,
            t0: Instant::now(),
        }
    }

    /// Notes that `name` starts now (and says so on stderr, so a CI log shows how far it got).
    pub(crate) fn enter(&self, name: &str) {
        eprintln!(
            "shmlane-torture: {name} (at {:.1} s)",
            self.t0.elapsed().as_secs_f64()
        );
        let mut g = self
            .now
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *g = (name.to_owned(), Instant::now());
    }
}

/// Reports the hang, kills every descendant, exits 1.
fn hung(name: &str, ran: Duration) -> ! {
    let me = std::process::id();
    let kids = descendants(me);
    let mut out = format!(
        "shmlane-torture: FAIL: scenario {name} has run for {:.0} s, past its budget: a hang. Processes of the run:\n",
        ran.as_secs_f64()
    );
    for pid in std::iter::once(me).chain(kids.iter().copied()) {
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
            .unwrap_or_default();
        let wchan = std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
        let _ = writeln!(out, "--- pid {pid} (wchan {wchan}): {cmd}");
        let bt = std::process::Command::new("timeout")
            .args(["20", "gdb", "-p", &pid.to_string(), "-batch", "-nx", "-q"])
            .args(["-ex", "set pagination off", "-ex", "thread apply all bt 30"])
            .stdin(std::process::Stdio::null())
            .output();
        match bt {
            Ok(o) if o.status.success() => {
                for l in String::from_utf8_lossy(&o.stdout).lines() {
                    // The threads, their innermost frame and the project's own frames.
                    if l.starts_with("Thread") || l.starts_with("#0 ") || l.contains("crates/") {
                        let _ = writeln!(out, "    {l}");
                    }
                }
            }
            _ => {
                let _ = writeln!(out, "    (no backtrace: gdb is not installed or failed)");
            }
        }
    }
    eprintln!("{out}");
    for pid in kids {
        #[allow(clippy::cast_possible_wrap)]
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    std::process::exit(1);
}

/// Every live descendant of `root` (read from /proc; parents before children).
fn descendants(root: u32) -> Vec<u32> {
    let mut parent_of: Vec<(u32, u32)> = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            // The parent is the 2nd field after the parenthesised command name.
            if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                && let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r)
                && let Some(ppid) = rest.split_whitespace().nth(1).and_then(|s| s.parse().ok())
            {
                parent_of.push((pid, ppid));
            }
        }
    }
    let mut out = vec![];
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for &(c, pp) in &parent_of {
            if pp == p && !out.contains(&c) {
                out.push(c);
                frontier.push(c);
            }
        }
    }
    out
}
