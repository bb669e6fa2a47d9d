//! Helpers of the bridge tests: bridge processes standing for hosts, channels that clean up
//! after themselves (and their companions), checksummed messages.

#![allow(dead_code, reason = "each test file uses a part")]

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use shmlane::UnlinkPolicy;
use shmlane::bridge_stats::{BridgeStats, companion_name};
use shmlane_testkit::unique;

/// A bridge process; killed (SIGKILL) on drop if still running.
pub struct BridgeProc {
    pub child: Child,
    pub name: &'static str,
}

impl BridgeProc {
    /// `shmlane-bridge` with `args`, its stderr piped (read by `stop`).
    pub fn start(name: &'static str, args: &[&str]) -> Self {
        Self::start_in(name, None, args)
    }

    /// As `start`, inside network namespace `netns` if given.
    pub fn start_in(name: &'static str, netns: Option<&str>, args: &[&str]) -> Self {
        let exe = env!("CARGO_BIN_EXE_shmlane-bridge");
        let mut c = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, exe]);
                c
            }
            None => Command::new(exe),
        };
        c.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        Self {
            child: c.spawn().expect("spawn shmlane-bridge"),
            name,
        }
    }

    /// SIGINT, then waits (10 s at most): the exit code and what it printed.
    pub fn stop(mut self) -> (i32, String) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        self.wait_out(Duration::from_secs(10))
    }

    /// Waits for the process to exit by itself (`limit` at most, then kills it).
    pub fn wait_out(&mut self, limit: Duration) -> (i32, String) {
        let t0 = Instant::now();
        let code = loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                break st.code().unwrap_or(-1);
            }
            if t0.elapsed() > limit {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break -9;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        (code, err)
    }

    /// SIGKILL, no clean-up: a crashed host's bridge.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for BridgeProc {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A channel name unique to this test process, removed on drop with its bridge companion.
pub struct Chan(pub String);

impl Chan {
    pub fn new(label: &str) -> Self {
        let c = Self(unique(label));
        c.remove();
        c
    }

    fn remove(&self) {
        for n in [self.0.clone(), companion_name(&self.0)] {
            let _ = std::fs::remove_file(format!("/dev/shm/{n}"));
        }
    }

    /// A persistent byte channel of `capacity` bytes.
    pub fn bytes(label: &str, capacity: u64) -> (Self, shmlane::Channel<u8>) {
        let c = Self::new(label);
        let ch = shmlane::bytes(&c.0)
            .capacity(capacity)
            .unlink(UnlinkPolicy::Never)
            .create()
            .unwrap();
        (c, ch)
    }

    /// A persistent broadcast channel.
    pub fn broadcast(label: &str, capacity: u64, msg_size: u64) -> (Self, shmlane::Channel<u8>) {
        let c = Self::new(label);
        let ch = shmlane::broadcast(&c.0)
            .capacity(capacity)
            .msg_size(msg_size)
            .unlink(UnlinkPolicy::Never)
            .create()
            .unwrap();
        (c, ch)
    }

    /// The bridge counters of this channel (its companion), if a bridge wrote them.
    pub fn stats(&self) -> Option<BridgeStats> {
        let ch = shmlane::latest::<BridgeStats>(&companion_name(&self.0))
            .open()
            .ok()?;
        let mut r = ch.reader().ok()?;
        r.read()
            .ok()
            .flatten()
            .map(|(v, _)| v)
            .filter(BridgeStats::is_valid)
    }

    /// Waits until `f` holds of the counters (`limit` at most); the last counters read.
    pub fn wait_stats(&self, limit: Duration, f: impl Fn(&BridgeStats) -> bool) -> BridgeStats {
        let t0 = Instant::now();
        loop {
            let s = self.stats().unwrap_or_default();
            if f(&s) || t0.elapsed() > limit {
                return s;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Chan {
    fn drop(&mut self) {
        self.remove();
    }
}

/// A free TCP port on 127.0.0.1 (bound then released: the bridge binds it right after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Message `i` of a stream: its number, `len` bytes in all (at least 12), ending in a CRC-32C
/// of everything before it.
pub fn message(i: u64, len: usize, out: &mut Vec<u8>) {
    let len = len.max(12);
    out.clear();
    out.extend_from_slice(&i.to_le_bytes());
    out.extend((8..len - 4).map(|k| (i as usize).wrapping_mul(31).wrapping_add(k) as u8));
    let crc = crc32c::crc32c(out);
    out.extend_from_slice(&crc.to_le_bytes());
}

/// The number of a message made by `message`, if its checksum holds.
pub fn check(msg: &[u8]) -> Option<u64> {
    if msg.len() < 12 {
        return None;
    }
    let (body, crc) = msg.split_at(msg.len() - 4);
    if crc32c::crc32c(body).to_le_bytes() != crc {
        return None;
    }
    Some(u64::from_le_bytes(body[..8].try_into().unwrap()))
}

/// The length of message `i` in the mixed-size streams: 12 to 76 bytes.
pub fn mixed_len(i: u64) -> usize {
    12 + (i.wrapping_mul(0x9e37_79b9) % 65) as usize
}

/// The `shmlane` command beside `shmlane-bridge` (built here if `cargo test` of this package
/// alone did not build it).
pub fn shmlane_cmd() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_BIN_EXE_shmlane-bridge"))
        .parent()
        .unwrap()
        .to_owned();
    let st = Command::new(env!("CARGO"))
        .args(["build", "-q", "-p", "shmlane-cli", "--bin", "shmlane"])
        .status()
        .expect("cargo build -p shmlane-cli");
    assert!(st.success(), "building the shmlane command failed");
    dir.join("shmlane")
}
