//! Processes and the control segment every process of a scenario shares.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU64, Ordering},
};

use nix::{
    time::{ClockId, clock_gettime},
    unistd::Pid,
};
use shmlane_segment::Segment;

/// xorshift64*.
pub(crate) struct Rng(pub(crate) u64);
impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// CLOCK_MONOTONIC in nanoseconds: the same clock in every process.
pub(crate) fn mono_ns() -> u64 {
    let t = clock_gettime(ClockId::CLOCK_MONOTONIC).expect("clock_gettime");
    t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
}

/// The control segment every process of a run shares: per-producer committed counts, a
/// kill timestamp, a stop flag and a bitmap.
pub(crate) const CTL_WORDS: usize = 1 << 16;
pub(crate) const CTL_KILL_AT: usize = 0;
pub(crate) const CTL_STOP: usize = 1;
pub(crate) const CTL_FIRST_ID: usize = 16;
pub(crate) const SEEN_BITS: u64 = 1 << 25;
/// Control words the scenarios of every kind use beside the per-producer counts.
pub(crate) const CTL_RECEIVED: usize = 2;
pub(crate) const CTL_BAD: usize = 3;
pub(crate) const CTL_DUP: usize = 4;
pub(crate) const CTL_ERRORS: usize = 5;
/// Sequence numbers per producer id in the `seen` bitmap (bit `id << ID_SHIFT | seq`).
pub(crate) const ID_SHIFT: u32 = 17;

pub(crate) struct Ctl {
    seg: Segment,
}

impl Ctl {
    pub(crate) fn create(name: &str) -> Self {
        let seg = Segment::posix(name)
            .size((CTL_WORDS * 8 + SEEN_BITS as usize / 8 + 64 * 1024) as u64)
            .create_with(|s| {
                s.region("ctl", (CTL_WORDS * 8) as u64, 1)?;
                s.region("seen", SEEN_BITS / 8, 2)?;
                Ok::<_, shmlane_segment::RegionError>(())
            })
            .expect("create the control segment");
        Self { seg }
    }
    pub(crate) fn open(name: &str) -> Self {
        Self {
            seg: Segment::posix(name)
                .open()
                .expect("open the control segment"),
        }
    }
    pub(crate) fn words(&self, region: &str) -> &[AtomicU64] {
        let r = self.seg.find_region(region).expect("control region");
        // SAFETY: the region is 128-byte aligned, `len / 8` words long, lives as long as the
        // segment (borrowed from `self`), and every process accesses it only atomically.
        #[allow(clippy::cast_ptr_alignment)]
        unsafe {
            std::slice::from_raw_parts(r.as_ptr().cast::<AtomicU64>(), r.len() / 8)
        }
    }
    pub(crate) fn word(&self, i: usize) -> &AtomicU64 {
        &self.words("ctl")[i]
    }
    pub(crate) fn mark(&self, bit: u64) -> bool {
        let w = &self.words("seen")[(bit / 64) as usize];
        // ORDERING: Relaxed; read after the marking processes have exited.
        w.fetch_or(1 << (bit % 64), Ordering::Relaxed) & (1 << (bit % 64)) != 0
    }
    pub(crate) fn is_marked(&self, bit: u64) -> bool {
        // ORDERING: Relaxed; the writers have exited (waited for).
        self.words("seen")[(bit / 64) as usize].load(Ordering::Relaxed) & (1 << (bit % 64)) != 0
    }
    /// Bits in `from..to` not marked.
    pub(crate) fn unmarked_in(&self, from: u64, to: u64) -> u64 {
        let seen = self.words("seen");
        // ORDERING: Relaxed; the writers have exited (waited for).
        (from..to)
            .filter(|&b| seen[(b / 64) as usize].load(Ordering::Relaxed) & (1 << (b % 64)) == 0)
            .count() as u64
    }
    pub(crate) fn unmarked(&self, n: u64) -> u64 {
        let seen = self.words("seen");
        // ORDERING: Relaxed; the writers have exited (waited for).
        (0..n)
            .filter(|&b| seen[(b / 64) as usize].load(Ordering::Relaxed) & (1 << (b % 64)) == 0)
            .count() as u64
    }
}

/// Loads a control word.
pub(crate) fn get(ctl: &Ctl, i: usize) -> u64 {
    // ORDERING: Relaxed; control words are flags and counts, read after the writers exited
    // or polled (a stop flag).
    ctl.word(i).load(Ordering::Relaxed)
}

/// Stores a control word.
pub(crate) fn set(ctl: &Ctl, i: usize, v: u64) {
    // ORDERING: Relaxed; as in `get`.
    ctl.word(i).store(v, Ordering::Relaxed);
}

/// Adds to a control word.
pub(crate) fn add(ctl: &Ctl, i: usize, v: u64) {
    // ORDERING: Relaxed; as in `get`.
    ctl.word(i).fetch_add(v, Ordering::Relaxed);
}

/// Waits up to `secs` for a child to exit; kills it if it has not. Whether it exited by itself
/// and successfully.
pub(crate) fn wait_or_kill(c: &mut Child, secs: u64) -> Result<bool, ()> {
    wait_status_or_kill(c, secs)
        .map(|st| st.success())
        .ok_or(())
}

/// Waits up to `secs` for a child to exit; kills it if it has not. Its exit status if it
/// exited (or was killed by someone else) within the bound.
pub(crate) fn wait_status_or_kill(c: &mut Child, secs: u64) -> Option<std::process::ExitStatus> {
    let t0 = std::time::Instant::now();
    while t0.elapsed() < std::time::Duration::from_secs(secs) {
        if let Ok(Some(st)) = c.try_wait() {
            return Some(st);
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    sigkill(c);
    None
}

/// This process kills itself (a fixed point of the protocol), noting the time for the
/// detection latency first.
pub(crate) fn die(ctl: &Ctl) -> ! {
    set(ctl, CTL_KILL_AT, mono_ns());
    let _ = nix::sys::signal::kill(Pid::this(), nix::sys::signal::Signal::SIGKILL);
    unreachable!("SIGKILL returned")
}

pub(crate) fn me() -> Command {
    Command::new(std::env::current_exe().expect("current exe"))
}

pub(crate) fn spawn(role: &str, args: &[&str]) -> Child {
    me().arg("child")
        .arg(role)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn child")
}

/// Waits (up to 20 s) until process `pid` is attached to channel `chan` with a role in `role`
/// (e.g. `shmlane::ROLE_RECEIVER`): a peer that leaves only after its successor attached is
/// one the successor has seen, so the successor reports `Disconnected` once the ring is
/// drained instead of waiting for a peer (the lifecycle's rule for an endpoint that never saw
/// one). Whether it attached.
pub(crate) fn wait_attached(chan: &str, pid: u32, role: u32) -> bool {
    let attached = || {
        shmlane_segment::inspect(std::path::Path::new(&format!("/dev/shm/{chan}")))
            .ok()
            .flatten()
            .is_some_and(|info| {
                info.attached
                    .iter()
                    .any(|a| a.pid == pid && a.alive && a.role & role != 0)
            })
    };
    let t0 = std::time::Instant::now();
    while t0.elapsed() < std::time::Duration::from_secs(20) {
        if attached() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    false
}

pub(crate) fn sigkill(c: &mut Child) {
    let _ = c.kill();
    let _ = c.wait();
}

pub(crate) fn pid(c: &Child) -> Pid {
    Pid::from_raw(c.id() as i32)
}

/// Waits for a line from the child's stdout.
pub(crate) fn expect_line(c: &mut Child, want: &str) -> bool {
    let out = c.stdout.take().expect("piped stdout");
    let mut r = BufReader::new(out);
    let mut line = String::new();
    let ok = r.read_line(&mut line).is_ok() && line.trim() == want;
    c.stdout = Some(r.into_inner());
    ok
}

pub(crate) struct Remove(pub(crate) Vec<String>);
impl Drop for Remove {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = std::fs::remove_file(format!("/dev/shm/{n}"));
        }
    }
}
