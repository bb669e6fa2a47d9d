//! `shmlane-torture`: fault injection with real processes.
//!
//! Every scenario runs real processes (this binary re-executed with the hidden `child`
//! subcommand) against real segments in `/dev/shm`, checks every message (sequence numbers and
//! checksums), and adds to one summary: faults injected, messages sent / received / lost /
//! corrupt, and dead-peer detection latency. It exits 1 if any check failed. Timings are
//! reported, never asserted.
//!
//! Scenarios (`--only` picks some):
//! - `kills`: byte-channel producers SIGKILLed at random moments by the parent, and killing
//!   themselves at fixed points of the protocol (after claim, mid-copy, after commit), next to a
//!   steady producer; the consumer must deliver every committed message once, in order per
//!   producer, and skip (and count) each dead claim.
//! - `consumers`: SPSC consumers SIGKILLed at random; each successor takes the role over; the
//!   consumers commit after processing (at-least-once), so nothing may be lost.
//! - `futex`: a producer killed while parked in a futex wait on a full ring, and a consumer
//!   killed while parked on an empty one; the survivor must get `PeerDied` (latency recorded).
//! - `stop`: a producer SIGSTOPped for `--stop-secs`: never declared dead, nothing lost.
//! - `race`: `--race` processes racing `open_or_create` on one name, ten times: one creates.
//! - `wrap`: futex sequence words started 100 below `u32::MAX`, ping-pong across the wrap.
//! - `flips`: random bytes of a live segment's header and of its ring's metadata flipped while a
//!   stamped ring whose positions start just below `u64::MAX` carries a million checked
//!   messages; fresh opens and attaches meanwhile must fail cleanly.
//! - `soak`: two producer processes and a consumer for `--soak-secs`.

// A test program: scenarios read top to bottom as one function each; figures are printed as
// floats.
#![allow(
    clippy::too_many_lines,
    clippy::similar_names,
    clippy::cast_precision_loss,
    clippy::single_match_else
)]

use std::{
    collections::HashMap,
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use clap::{Parser, Subcommand};
use hdrhistogram::Histogram;
use nix::{
    sys::signal::{Signal, kill},
    time::{ClockId, clock_gettime},
    unistd::Pid,
};
use shmlane::{
    ByteRecvError, ByteSendError, Deadline, RecvError, SendError, TryRecvError, WaitStrategy,
};
use shmlane_ring::{PopError, StampedRing};
use shmlane_segment::Segment;

#[derive(Parser)]
#[command(
    name = "shmlane-torture",
    about = "Fault injection with real processes: kills, frozen peers, creation races, counters at their wrap, byte flips, soak.",
    after_help = "CI runs the defaults (100 kills, about a minute). On demand: --kills 1000 --soak-secs 1800."
)]
struct Cli {
    #[command(subcommand)]
    child: Option<ChildCmd>,
    /// Processes to SIGKILL in total (split over kills, consumers and futex).
    #[arg(long, default_value_t = 100)]
    kills: u64,
    /// Seconds a producer stays SIGSTOPped.
    #[arg(long, default_value_t = 5)]
    stop_secs: u64,
    /// Processes racing `open_or_create`.
    #[arg(long, default_value_t = 8)]
    race: u64,
    /// Seconds of byte flips in a live segment.
    #[arg(long, default_value_t = 3)]
    flip_secs: u64,
    /// Seconds of soak.
    #[arg(long, default_value_t = 10)]
    soak_secs: u64,
    /// Run only these scenarios: kills, consumers, futex, stop, race, wrap, flips, soak.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Seed of the random timings (default: from the clock; printed).
    #[arg(long)]
    seed: Option<u64>,
}

#[derive(Subcommand)]
enum ChildCmd {
    /// Internal: a process of a scenario.
    #[command(hide = true)]
    Child { role: String, args: Vec<String> },
}

const SCENARIOS: [&str; 8] = [
    "kills",
    "consumers",
    "futex",
    "stop",
    "race",
    "wrap",
    "flips",
    "soak",
];

/// xorshift64*.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn fnv(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325, |h, &x| {
        (h ^ u64::from(x)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A checked message: producer id, sequence, 0–399 pattern bytes, FNV-1a of all that.
fn message(id: u64, seq: u64, rng: &mut Rng) -> Vec<u8> {
    let n = rng.below(400) as usize;
    let mut m = Vec::with_capacity(24 + n);
    m.extend_from_slice(&id.to_le_bytes());
    m.extend_from_slice(&seq.to_le_bytes());
    m.extend((0..n).map(|i| (seq as u8).wrapping_add(i as u8)));
    let h = fnv(&m);
    m.extend_from_slice(&h.to_le_bytes());
    m
}

/// `(id, seq)` of a whole message, `None` if it is torn or corrupt.
fn check(m: &[u8]) -> Option<(u64, u64)> {
    if m.len() < 24 {
        return None;
    }
    let (body, sum) = m.split_at(m.len() - 8);
    if fnv(body) != u64::from_le_bytes(sum.try_into().ok()?) {
        return None;
    }
    let w = |i: usize| u64::from_le_bytes(body[i..i + 8].try_into().unwrap());
    Some((w(0), w(8)))
}

/// CLOCK_MONOTONIC in nanoseconds: the same clock in every process.
fn mono_ns() -> u64 {
    let t = clock_gettime(ClockId::CLOCK_MONOTONIC).expect("clock_gettime");
    t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
}

/// The control segment every process of a run shares: per-producer committed counts, a
/// kill timestamp, a stop flag and a bitmap.
const CTL_WORDS: usize = 1 << 16;
const CTL_KILL_AT: usize = 0;
const CTL_STOP: usize = 1;
const CTL_FIRST_ID: usize = 16;
const SEEN_BITS: u64 = 1 << 22;

struct Ctl {
    seg: Segment,
}

impl Ctl {
    fn create(name: &str) -> Self {
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
    fn open(name: &str) -> Self {
        Self {
            seg: Segment::posix(name)
                .open()
                .expect("open the control segment"),
        }
    }
    fn words(&self, region: &str) -> &[AtomicU64] {
        let r = self.seg.find_region(region).expect("control region");
        // SAFETY: the region is 128-byte aligned, `len / 8` words long, lives as long as the
        // segment (borrowed from `self`), and every process accesses it only atomically.
        #[allow(clippy::cast_ptr_alignment)]
        unsafe {
            std::slice::from_raw_parts(r.as_ptr().cast::<AtomicU64>(), r.len() / 8)
        }
    }
    fn word(&self, i: usize) -> &AtomicU64 {
        &self.words("ctl")[i]
    }
    fn mark(&self, bit: u64) -> bool {
        let w = &self.words("seen")[(bit / 64) as usize];
        // ORDERING: Relaxed; read after the marking processes have exited.
        w.fetch_or(1 << (bit % 64), Ordering::Relaxed) & (1 << (bit % 64)) != 0
    }
    fn unmarked(&self, n: u64) -> u64 {
        let seen = self.words("seen");
        // ORDERING: Relaxed; the writers have exited (waited for).
        (0..n)
            .filter(|&b| seen[(b / 64) as usize].load(Ordering::Relaxed) & (1 << (b % 64)) == 0)
            .count() as u64
    }
}

#[derive(Default)]
struct Summary {
    kills_random: u64,
    kills_fixed: [u64; 3],
    kills_consumer: u64,
    kills_futex: u64,
    stops: u64,
    races: u64,
    flips: u64,
    attach_errors: u64,
    sent: u64,
    received: u64,
    lost: u64,
    corrupt: u64,
    duplicates: u64,
    skipped: u64,
    detect: Vec<u64>,
    failures: Vec<String>,
    lines: Vec<String>,
}

impl Summary {
    fn fail(&mut self, what: String) {
        eprintln!("FAIL: {what}");
        self.failures.push(what);
    }
}

fn me() -> Command {
    Command::new(std::env::current_exe().expect("current exe"))
}

fn spawn(role: &str, args: &[&str]) -> Child {
    me().arg("child")
        .arg(role)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn child")
}

fn sigkill(c: &mut Child) {
    let _ = c.kill();
    let _ = c.wait();
}

fn pid(c: &Child) -> Pid {
    Pid::from_raw(c.id() as i32)
}

/// Waits for a line from the child's stdout.
fn expect_line(c: &mut Child, want: &str) -> bool {
    let out = c.stdout.take().expect("piped stdout");
    let mut r = BufReader::new(out);
    let mut line = String::new();
    let ok = r.read_line(&mut line).is_ok() && line.trim() == want;
    c.stdout = Some(r.into_inner());
    ok
}

struct Remove(Vec<String>);
impl Drop for Remove {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = std::fs::remove_file(format!("/dev/shm/{n}"));
        }
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if let Some(ChildCmd::Child { role, args }) = cli.child {
        child(&role, &args);
        return std::process::ExitCode::SUCCESS;
    }
    for s in &cli.only {
        if !SCENARIOS.contains(&s.as_str()) {
            eprintln!(
                "shmlane-torture: unknown scenario {s}; the scenarios are {}",
                SCENARIOS.join(", ")
            );
            return std::process::ExitCode::from(2);
        }
    }
    let seed = cli.seed.unwrap_or_else(|| mono_ns() | 1);
    let run = |s: &str| cli.only.is_empty() || cli.only.iter().any(|o| o == s);
    let tag = format!("shmlane-torture-{}", std::process::id());
    let mut sum = Summary::default();
    let mut rng = Rng(seed);
    let t0 = Instant::now();
    println!("shmlane-torture: seed {seed}");
    // Kills split: 60 % producers (a quarter of them at fixed points), 20 % consumers, the
    // rest in futex waits.
    let k_prod = cli.kills * 6 / 10;
    let k_cons = cli.kills * 2 / 10;
    let k_futex = cli.kills - k_prod - k_cons;
    if run("kills") {
        kills(&tag, k_prod, &mut rng, &mut sum);
    }
    if run("consumers") {
        consumers(&tag, k_cons, &mut rng, &mut sum);
    }
    if run("futex") {
        futex(&tag, k_futex, &mut sum);
    }
    if run("stop") {
        stop(&tag, cli.stop_secs, &mut sum);
    }
    if run("race") {
        race(&tag, cli.race, &mut sum);
    }
    if run("wrap") {
        wrap(&tag, &mut sum);
    }
    if run("flips") {
        flips(&tag, cli.flip_secs, &mut rng, &mut sum);
    }
    if run("soak") {
        soak(&tag, cli.soak_secs, &mut sum);
    }
    report(&sum, t0.elapsed());
    if sum.failures.is_empty() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}

fn report(s: &Summary, took: Duration) {
    let kills =
        s.kills_random + s.kills_fixed.iter().sum::<u64>() + s.kills_consumer + s.kills_futex;
    println!("---- summary ({:.1} s)", took.as_secs_f64());
    for l in &s.lines {
        println!("{l}");
    }
    println!(
        "faults injected: {kills} SIGKILLs ({} producers at random moments; at fixed points {} after claim, {} mid-copy, {} after commit; {} consumers; {} in futex waits), {} SIGSTOPs, {} creation races, {} bits flipped in live segments ({} fresh opens/attaches refused meanwhile)",
        s.kills_random,
        s.kills_fixed[0],
        s.kills_fixed[1],
        s.kills_fixed[2],
        s.kills_consumer,
        s.kills_futex,
        s.stops,
        s.races,
        s.flips,
        s.attach_errors
    );
    println!(
        "messages: sent {}, received {}, lost {}, corrupt or torn {}, delivered twice {} (at-least-once consumers killed after processing, before committing), dead claims skipped {}",
        s.sent, s.received, s.lost, s.corrupt, s.duplicates, s.skipped
    );
    if !s.detect.is_empty() {
        let mut h = Histogram::<u64>::new(3).expect("histogram");
        for &v in &s.detect {
            let _ = h.record(v.max(1));
        }
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        println!(
            "dead-peer detection (kill to skip or PeerDied), {} samples: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            h.len(),
            ms(0.5),
            ms(0.99),
            h.max() as f64 / 1000.0
        );
    }
    if s.failures.is_empty() {
        println!("result: PASS");
    } else {
        println!("result: FAIL ({} checks failed)", s.failures.len());
        for f in &s.failures {
            println!("  {f}");
        }
    }
}

// ---------------------------------------------------------------- kills

/// Where a producer kills itself: 0 after claim, 1 mid-copy, 2 after commit, 3 never.
const FIXED: [&str; 3] = ["after-claim", "mid-copy", "after-commit"];

fn kills(tag: &str, n: u64, rng: &mut Rng, sum: &mut Summary) {
    let chan = format!("{tag}-kills");
    let ctl_name = format!("{tag}-kills-ctl");
    let _rm = Remove(vec![chan.clone(), ctl_name.clone()]);
    let ctl = Ctl::create(&ctl_name);
    let ch = shmlane::bytes(&chan)
        .capacity(1 << 20)
        .create()
        .expect("create the byte channel");
    let mut rx = ch.byte_receiver().expect("receiver");
    // A steady producer (id 1) runs throughout; killed generations are ids 2, 3, ...
    let mut steady = spawn("bytes-producer", &[&chan, &ctl_name, "1", "none", "0"]);
    let done = Arc::new(AtomicBool::new(false));
    let fixed_counts = Arc::new(Mutex::new([0u64; 3]));
    let killer = {
        let (chan, ctl_name, done, fixed_counts) = (
            chan.clone(),
            ctl_name.clone(),
            done.clone(),
            fixed_counts.clone(),
        );
        let mut rng = Rng(rng.next() | 1);
        std::thread::spawn(move || {
            let ctl = Ctl::open(&ctl_name);
            for g in 0..n {
                let id = (g + 2).to_string();
                // A quarter of the generations kill themselves at a fixed point.
                let fixed = if g % 4 == 3 {
                    Some(((g / 4) % 3) as usize)
                } else {
                    None
                };
                let at = fixed.map_or("none", |f| FIXED[f]);
                let after = rng.below(200).to_string();
                let mut c = spawn("bytes-producer", &[&chan, &ctl_name, &id, at, &after]);
                if let Some(f) = fixed {
                    let _ = c.wait();
                    fixed_counts.lock().unwrap()[f] += 1;
                } else {
                    std::thread::sleep(Duration::from_micros(500 + rng.below(15_000)));
                    // ORDERING: Relaxed; the consumer reads it to time the skip.
                    ctl.word(CTL_KILL_AT).store(mono_ns(), Ordering::Relaxed);
                    sigkill(&mut c);
                }
            }
            done.store(true, Ordering::Release);
        })
    };
    let mut next: HashMap<u64, u64> = HashMap::new();
    let mut buf = vec![0u8; rx.max_message()];
    let mut skipped = rx.skipped();
    let mut quiet = 0;
    let (mut received, mut corrupt, mut lost) = (0u64, 0u64, 0u64);
    loop {
        match rx.recv(&mut buf, Some(Deadline::after(Duration::from_millis(5)))) {
            Ok(len) => {
                quiet = 0;
                match check(&buf[..len]) {
                    Some((id, seq)) => {
                        let want = next.entry(id).or_insert(0);
                        if seq != *want {
                            if seq > *want {
                                lost += seq - *want;
                            } else {
                                corrupt += 1;
                            }
                            sum.fail(format!(
                                "kills: producer {id} message {seq} arrived when {want} was due"
                            ));
                        }
                        *want = seq + 1;
                        received += 1;
                    }
                    None => {
                        corrupt += 1;
                        sum.fail(format!("kills: a torn or corrupt message of {len} bytes"));
                    }
                }
            }
            Err(ByteRecvError::Timeout | ByteRecvError::Empty) => {
                if done.load(Ordering::Acquire) {
                    if quiet == 0 {
                        // Stop the steady producer once every generation is done.
                        // ORDERING: Relaxed; polled by the steady producer.
                        ctl.word(CTL_STOP).store(1, Ordering::Relaxed);
                    }
                    quiet += 1;
                    if quiet > 200 && steady.try_wait().ok().flatten().is_some() {
                        break;
                    }
                }
            }
            Err(e) => {
                sum.fail(format!("kills: receive failed: {e}"));
                break;
            }
        }
        let s = rx.skipped();
        if s > skipped {
            // ORDERING: Relaxed; written by the killer (or a self-killing producer) before the kill.
            let at = ctl.word(CTL_KILL_AT).load(Ordering::Relaxed);
            if at != 0 {
                sum.detect.push(mono_ns().saturating_sub(at) / 1000);
                ctl.word(CTL_KILL_AT).store(0, Ordering::Relaxed);
            }
            skipped = s;
        }
    }
    killer.join().expect("killer thread");
    let _ = steady.wait();
    // Every message a producer counted as committed was delivered (a kill between the commit
    // and the count can leave one more delivered than counted).
    let mut sent = 0;
    for id in 1..n + 2 {
        // ORDERING: Relaxed; the producers have exited.
        let committed = ctl.word(CTL_FIRST_ID + id as usize).load(Ordering::Relaxed);
        let delivered = next.get(&id).copied().unwrap_or(0);
        if delivered < committed || delivered > committed + 1 {
            lost += committed.saturating_sub(delivered);
            sum.fail(format!(
                "kills: producer {id} committed {committed} messages, {delivered} delivered"
            ));
        }
        sent += delivered.max(committed);
    }
    let fixed = *fixed_counts.lock().unwrap();
    sum.kills_random += n - fixed.iter().sum::<u64>();
    for (a, b) in sum.kills_fixed.iter_mut().zip(fixed) {
        *a += b;
    }
    sum.sent += sent;
    sum.received += received;
    sum.lost += lost;
    sum.corrupt += corrupt;
    let skips = rx.stats().lost;
    sum.skipped += skips;
    sum.lines.push(format!(
        "kills: {n} producer generations next to a steady one: {received} messages checked, {skips} dead claims skipped"
    ));
}

fn bytes_producer(args: &[String]) {
    let (chan, ctl_name, id, at, after) = (
        &args[0],
        &args[1],
        args[2].parse::<u64>().unwrap(),
        args[3].as_str(),
        args[4].parse::<u64>().unwrap(),
    );
    let ctl = Ctl::open(ctl_name);
    let ch = shmlane::bytes(chan).open().expect("open the byte channel");
    let mut tx = ch.byte_sender().expect("sender");
    let mut rng = Rng(id.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let counter = ctl.word(CTL_FIRST_ID + id as usize);
    for seq in 0.. {
        // ORDERING: Relaxed; a stop request.
        if id == 1 && ctl.word(CTL_STOP).load(Ordering::Relaxed) == 1 {
            return;
        }
        let m = message(id, seq, &mut rng);
        if at != "none" && seq == after {
            let mut claim = loop {
                match tx.claim(m.len()) {
                    Ok(c) => break c,
                    Err(ByteSendError::Full) => std::thread::sleep(Duration::from_micros(50)),
                    Err(e) => panic!("claim: {e}"),
                }
            };
            let die = || {
                // ORDERING: Relaxed; read by the consumer to time the skip.
                ctl.word(CTL_KILL_AT).store(mono_ns(), Ordering::Relaxed);
                let _ = kill(Pid::this(), Signal::SIGKILL);
            };
            match at {
                "after-claim" => die(),
                "mid-copy" => {
                    claim.write(0, &m[..m.len() / 2]);
                    die();
                }
                _ => {
                    claim.write(0, &m);
                    claim.commit().expect("commit");
                    let _ = kill(Pid::this(), Signal::SIGKILL);
                }
            }
            unreachable!("SIGKILL returned");
        }
        match tx.send(&m, Some(Deadline::after(Duration::from_secs(30)))) {
            Ok(()) => {}
            Err(ByteSendError::Disconnected | ByteSendError::PeerDied) => return,
            Err(e) => panic!("send: {e}"),
        }
        // ORDERING: Relaxed; read by the parent after this process ended.
        counter.store(seq + 1, Ordering::Relaxed);
        if id == 1 {
            std::thread::sleep(Duration::from_micros(20));
        }
    }
}

// ---------------------------------------------------------------- consumers

fn consumers(tag: &str, n: u64, rng: &mut Rng, sum: &mut Summary) {
    let chan = format!("{tag}-cons");
    let ctl_name = format!("{tag}-cons-ctl");
    let _rm = Remove(vec![chan.clone(), ctl_name.clone()]);
    let ctl = Ctl::create(&ctl_name);
    let total: u64 = 1_000_000;
    let ch = shmlane::spsc::<u64>(&chan)
        .capacity(1024)
        .create()
        .expect("create the SPSC channel");
    let mut tx = ch.producer().expect("producer");
    let producing = std::thread::spawn(move || {
        for v in 0..total {
            let mut v = v;
            loop {
                match tx.send(v, Some(Deadline::after(Duration::from_secs(60)))) {
                    Ok(()) => break,
                    // The consumer died: wait for its successor and send the value again.
                    Err(SendError::PeerDied(back) | SendError::Disconnected(back)) => {
                        v = back;
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err(e) => panic!("send: {e}"),
                }
            }
        }
    });
    for _ in 0..n {
        let mut c = spawn("spsc-consumer", &[&chan, &ctl_name, &total.to_string()]);
        std::thread::sleep(Duration::from_micros(2000 + rng.below(30_000)));
        sigkill(&mut c);
    }
    let mut last = spawn("spsc-consumer", &[&chan, &ctl_name, &total.to_string()]);
    let ok = last.wait().is_ok_and(|s| s.success());
    producing.join().expect("producer thread");
    if !ok {
        sum.fail("consumers: the last consumer failed".to_owned());
    }
    let missing = ctl.unmarked(total);
    // ORDERING: Relaxed; the consumers have exited.
    let dup = ctl.word(CTL_FIRST_ID).load(Ordering::Relaxed);
    if missing > 0 {
        sum.fail(format!(
            "consumers: {missing} of {total} values never processed"
        ));
    }
    sum.kills_consumer += n;
    sum.sent += total;
    sum.received += total - missing;
    sum.lost += missing;
    sum.duplicates += dup;
    sum.lines.push(format!(
        "consumers: {n} consumers killed, each successor took the role over: {total} values, {missing} missing, {dup} processed twice"
    ));
}

fn spsc_consumer(args: &[String]) {
    let ctl = Ctl::open(&args[1]);
    let total: u64 = args[2].parse().unwrap();
    let ch = shmlane::spsc::<u64>(&args[0]).open().expect("open");
    // The previous consumer may still be dying: its role is taken over once it is dead.
    let t0 = Instant::now();
    let mut rx = loop {
        match ch.consumer() {
            Ok(rx) => break rx,
            Err(e) if t0.elapsed() > Duration::from_secs(10) => panic!("consumer: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(1)),
        }
    };
    loop {
        let v = match rx.read_chunk(1) {
            Ok(chunk) => {
                let v = chunk.get(0);
                // Process (mark), then commit: a kill in between delivers it again.
                if ctl.mark(v) {
                    // ORDERING: Relaxed; a count read after every consumer exited.
                    ctl.word(CTL_FIRST_ID).fetch_add(1, Ordering::Relaxed);
                }
                chunk.commit_all();
                rx.notify(1);
                v
            }
            Err(_) => {
                // Empty. Once the producer has left and the ring is drained, stop (earlier
                // consumers may have processed the last values already).
                match rx.try_recv() {
                    Ok(v) => {
                        ctl.mark(v);
                        v
                    }
                    Err(TryRecvError::Disconnected) => return,
                    Err(_) => {
                        std::thread::sleep(Duration::from_micros(20));
                        continue;
                    }
                }
            }
        };
        if v == total - 1 {
            return;
        }
    }
}

// ---------------------------------------------------------------- futex

fn futex(tag: &str, n: u64, sum: &mut Summary) {
    let park = WaitStrategy::SpinThenPark {
        spins: 100,
        yields: 2,
    };
    for i in 0..n {
        let chan = format!("{tag}-futex-{i}");
        let _rm = Remove(vec![chan.clone()]);
        let ch = shmlane::spsc::<u64>(&chan)
            .capacity(64)
            .wait(park)
            .create()
            .expect("create");
        if i % 2 == 0 {
            // A producer parked on a full ring is killed; the consumer drains, then PeerDied.
            let mut rx = ch.consumer().expect("consumer");
            let mut c = spawn("spsc-fill", &[&chan]);
            let t0 = Instant::now();
            while rx.len() < 64 && t0.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(1));
            }
            std::thread::sleep(Duration::from_millis(20));
            let at = Instant::now();
            sigkill(&mut c);
            let mut got = 0u64;
            let end = loop {
                match rx.recv(Some(Deadline::after(Duration::from_secs(10)))) {
                    Ok(v) => {
                        if v != got {
                            sum.fail(format!("futex: value {v} where {got} was due"));
                        }
                        got += 1;
                    }
                    Err(e) => break e,
                }
            };
            if end == RecvError::PeerDied && got == 64 {
                sum.detect.push(at.elapsed().as_micros() as u64);
            } else {
                sum.fail(format!(
                    "futex: consumer ended with {end} after {got} of 64"
                ));
            }
            sum.sent += 64;
            sum.received += got;
        } else {
            // A consumer parked on an empty ring is killed; the producer, blocked on the full
            // ring, learns it.
            let mut tx = ch.producer().expect("producer");
            let mut c = spawn("spsc-wait", &[&chan]);
            if !expect_line(&mut c, "waiting") {
                sum.fail("futex: the waiting consumer did not start".to_owned());
            }
            std::thread::sleep(Duration::from_millis(20));
            let at = Instant::now();
            sigkill(&mut c);
            let mut end = None;
            for v in 0..1000u64 {
                if let Err(e) = tx.send(v, Some(Deadline::after(Duration::from_secs(10)))) {
                    end = Some(e);
                    break;
                }
            }
            if matches!(end, Some(SendError::PeerDied(_))) {
                sum.detect.push(at.elapsed().as_micros() as u64);
            } else {
                sum.fail(format!("futex: producer ended with {end:?}"));
            }
        }
        sum.kills_futex += 1;
    }
    sum.lines.push(format!(
        "futex: {n} processes killed inside a futex wait (producers on a full ring, consumers on an empty one); every survivor got PeerDied after the data"
    ));
}

// ---------------------------------------------------------------- stop

fn stop(tag: &str, secs: u64, sum: &mut Summary) {
    let chan = format!("{tag}-stop");
    let _rm = Remove(vec![chan.clone()]);
    let ch = shmlane::spsc::<u64>(&chan)
        .capacity(1024)
        .create()
        .expect("create");
    let mut rx = ch.consumer().expect("consumer");
    let n = 1000u64;
    let mut c = spawn("spsc-paced", &[&chan, &n.to_string()]);
    let mut stopped_for = Duration::ZERO;
    let mut want = 0u64;
    let mut stopped = false;
    while want < n {
        match rx.recv(Some(Deadline::after(Duration::from_secs(secs + 30)))) {
            Ok(v) if v == want => want += 1,
            other => {
                sum.fail(format!("stop: got {other:?} where {want} was due"));
                break;
            }
        }
        if want == 200 && !stopped {
            stopped = true;
            let _ = kill(pid(&c), Signal::SIGSTOP);
            // What was sent before the stop landed arrives; then nothing, and the frozen
            // producer must not look dead to a consumer waiting on the empty ring.
            std::thread::sleep(Duration::from_millis(50));
            loop {
                match rx.try_recv() {
                    Ok(v) if v == want => want += 1,
                    Err(TryRecvError::Empty) => break,
                    other => {
                        sum.fail(format!("stop: got {other:?} where {want} was due"));
                        break;
                    }
                }
            }
            let t = Instant::now();
            match rx.recv(Some(Deadline::after(Duration::from_secs(secs)))) {
                Err(RecvError::Timeout) => {}
                other => sum.fail(format!("stop: a frozen producer gave {other:?}")),
            }
            stopped_for = t.elapsed();
            let _ = kill(pid(&c), Signal::SIGCONT);
        }
    }
    let ok = c.wait().is_ok_and(|s| s.success());
    if !ok {
        sum.fail("stop: the producer failed".to_owned());
    }
    sum.stops += 1;
    sum.sent += n;
    sum.received += n;
    sum.lines.push(format!(
        "stop: a producer SIGSTOPped for {:.1} s was never declared dead; all {n} messages in order",
        stopped_for.as_secs_f64()
    ));
}

// ---------------------------------------------------------------- race

fn race(tag: &str, k: u64, sum: &mut Summary) {
    for round in 0..10 {
        let chan = format!("{tag}-race-{round}");
        let _rm = Remove(vec![chan.clone()]);
        let kids: Vec<Child> = (0..k).map(|_| spawn("race", &[&chan])).collect();
        let mut created = 0;
        for c in kids {
            let out = c.wait_with_output().expect("wait");
            let text = String::from_utf8_lossy(&out.stdout);
            if !out.status.success() {
                sum.fail(format!("race: a process failed: {text}"));
            }
            if text.contains("created") {
                created += 1;
            }
        }
        if created != 1 {
            sum.fail(format!(
                "race: {created} processes created the channel, not 1"
            ));
        }
        sum.races += 1;
    }
    sum.lines.push(format!(
        "race: 10 rounds of {k} processes racing open_or_create: one creator each time, every other opened it"
    ));
}

// ---------------------------------------------------------------- wrap

/// Sets the futex sequence words of a channel's two events just below `u32::MAX`.
fn near_wrap(chan: &str) {
    let seg = Segment::posix(chan).open().expect("open");
    for ev in ["ev-data", "ev-space"] {
        let r = seg.find_region(ev).expect("event region");
        // SAFETY: offset 4 of an event region is its u32 sequence word (shmlane-wake layout),
        // aligned, inside the region, accessed only atomically.
        #[allow(clippy::cast_ptr_alignment)]
        let seq = unsafe { &*r.as_ptr().add(4).cast::<std::sync::atomic::AtomicU32>() };
        // ORDERING: Relaxed; nobody waits on the channel yet.
        seq.store(u32::MAX - 100, Ordering::Relaxed);
    }
}

fn seq_word(chan: &str, ev: &str) -> u32 {
    let seg = Segment::posix(chan).open().expect("open");
    let r = seg.find_region(ev).expect("event region");
    // SAFETY: as in `near_wrap`.
    #[allow(clippy::cast_ptr_alignment)]
    let seq = unsafe { &*r.as_ptr().add(4).cast::<std::sync::atomic::AtomicU32>() };
    // ORDERING: Relaxed; informational.
    seq.load(Ordering::Relaxed)
}

fn wrap(tag: &str, sum: &mut Summary) {
    let (a, b) = (format!("{tag}-wrap-a"), format!("{tag}-wrap-b"));
    let _rm = Remove(vec![a.clone(), b.clone()]);
    let park = WaitStrategy::Park;
    let cha = shmlane::spsc::<u64>(&a).wait(park).create().expect("a");
    let chb = shmlane::spsc::<u64>(&b).wait(park).create().expect("b");
    near_wrap(&a);
    near_wrap(&b);
    let mut tx = cha.producer().expect("producer");
    let mut rx = chb.consumer().expect("consumer");
    let n = 400u64;
    let mut c = spawn("echo", &[&a, &b]);
    for v in 0..n {
        let d = || Some(Deadline::after(Duration::from_secs(10)));
        let back = tx.send(v, d()).ok().and_then(|()| rx.recv(d()).ok());
        if back != Some(v) {
            sum.fail(format!(
                "wrap: round trip {v} gave {back:?} (a lost wake-up?)"
            ));
            break;
        }
    }
    drop(tx);
    let _ = c.wait();
    let (sa, sb) = (seq_word(&a, "ev-data"), seq_word(&b, "ev-data"));
    if sa > 1_000_000 && sb > 1_000_000 {
        sum.fail(format!("wrap: the futex words did not wrap ({sa}, {sb})"));
    }
    sum.sent += 2 * n;
    sum.received += 2 * n;
    sum.lines.push(format!(
        "wrap: {n} parked round trips with the futex words started 100 below u32::MAX (now {sa} and {sb}): no lost wake-up"
    ));
}

// ---------------------------------------------------------------- flips

const FLIP_CAP: u64 = 4096;
const FLIP_START: u64 = u64::MAX - 100_000;

fn words4(seq: u64) -> [u64; 4] {
    [
        seq,
        !seq,
        seq.wrapping_mul(0x9e37_79b9_7f4a_7c15),
        seq ^ 0x5555,
    ]
}

fn flips(tag: &str, secs: u64, rng: &mut Rng, sum: &mut Summary) {
    let name = format!("{tag}-flips");
    let _rm = Remove(vec![name.clone()]);
    let size = StampedRing::<[u64; 4]>::required_size(FLIP_CAP) as u64;
    let seg = Segment::posix(&name)
        .size(size + 64 * 1024)
        .create_with(|s| {
            let r = s.region("ring", size, 1)?;
            // SAFETY: a fresh region nobody else can see yet.
            unsafe { StampedRing::<[u64; 4]>::init(r.as_ptr(), r.len(), FLIP_CAP, FLIP_START) }
                .expect("init");
            Ok::<_, shmlane_segment::RegionError>(())
        })
        .expect("create");
    let ring = seg.find_region("ring").expect("ring");
    let (rptr, rlen) = (ring.as_ptr(), ring.len());
    let token = u64::from(seg.slot()) + 1;
    // SAFETY: the region lives as long as `seg`, which outlives the consumer.
    let mut rx = unsafe {
        StampedRing::<[u64; 4]>::consumer(rptr, rlen, token, &|t| {
            t != 0 && seg.slot_alive((t - 1) as u32)
        })
    }
    .expect("consumer");
    // The producer sends for `secs` seconds (and at least past the u64 wrap), then an end
    // marker carrying its count.
    let mut c = spawn("stamped-producer", &[&name, &secs.to_string()]);
    // The flipper: the segment's first 4 KiB (header, control block, attachment slots,
    // directory) and the ring's metadata lines (identity, claims, published positions).
    let stop = Arc::new(AtomicBool::new(false));
    // The flipper waits for the first message: the producer process must have attached
    // (and checked the ring's identity) before its metadata is attacked; an attach that
    // reads a flipped header is refused, which the fresh attaches below already count.
    let started = Arc::new(AtomicBool::new(false));
    let seg_base = {
        let info = shmlane_segment::inspect(std::path::Path::new(&format!("/dev/shm/{name}")))
            .ok()
            .flatten()
            .expect("inspect");
        info.regions
            .iter()
            .find(|r| r.name == "ring")
            .expect("ring")
            .offset as usize
    };
    let flipper = {
        let (stop, started, name) = (stop.clone(), started.clone(), name.clone());
        let mut rng = Rng(rng.next() | 1);
        let rptr = rptr as usize;
        std::thread::spawn(move || {
            let map = rptr - seg_base;
            let (mut flipped, mut refused) = (0u64, 0u64);
            // ORDERING: Relaxed on both sides (the store below after the first message);
            // a flag between two threads of this process, no data rides on it.
            while !started.load(Ordering::Relaxed) && !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_micros(100));
            }
            let t0 = Instant::now();
            while !stop.load(Ordering::Relaxed) && t0.elapsed() < Duration::from_secs(secs) {
                let off = if rng.below(2) == 0 {
                    rng.below(4096) as usize
                } else {
                    seg_base + rng.below(384) as usize
                };
                let bit = 1u8 << rng.below(8);
                // SAFETY: `off` lies in the segment's header page or the ring's first 384
                // bytes, both mapped for as long as the segment lives (the scenario holds it).
                // An atomic byte XOR: other processes access these words atomically too.
                let b = unsafe { &*((map + off) as *const std::sync::atomic::AtomicU8) };
                // ORDERING: Relaxed; hostile writes need no ordering.
                b.fetch_xor(bit, Ordering::Relaxed);
                flipped += 1;
                if flipped % 64 == 0 {
                    // Fresh opens and attaches meanwhile: an error or a usable handle, never
                    // a crash.
                    match Segment::posix(&name).open() {
                        Ok(s) => match s.find_region("ring") {
                            Ok(r) => {
                                // SAFETY: the region lives as long as `s`, dropped at once.
                                let a = unsafe {
                                    StampedRing::<[u64; 4]>::consumer(
                                        r.as_ptr(),
                                        r.len(),
                                        99,
                                        &|_| true,
                                    )
                                };
                                if a.is_err() {
                                    refused += 1;
                                }
                            }
                            Err(_) => refused += 1,
                        },
                        Err(_) => refused += 1,
                    }
                }
                std::thread::sleep(Duration::from_micros(50));
            }
            (flipped, refused)
        })
    };
    let mut got = 0u64;
    let mut sent = None;
    let mut spins = 0u32;
    let t0 = Instant::now();
    while sent.is_none() {
        match rx.pop() {
            Ok(m) if m[0] == u64::MAX && m[3] == u64::MAX && m[2] == !m[1] => {
                sent = Some(m[1]);
                if m[1] != got {
                    sum.fail(format!(
                        "flips: the producer sent {} messages, {got} arrived",
                        m[1]
                    ));
                }
            }
            Ok(m) => {
                if m != words4(got) {
                    sum.corrupt += 1;
                    sum.fail(format!("flips: message {got} torn or corrupt"));
                    break;
                }
                got += 1;
                spins = 0;
                if got == 1 {
                    // ORDERING: Relaxed; pairs with the flipper's wait above.
                    started.store(true, Ordering::Relaxed);
                }
            }
            Err(PopError::Empty) => {
                spins += 1;
                if spins > 64 {
                    std::thread::yield_now();
                }
                if spins % 4096 == 0 {
                    if let Ok(Some(st)) = c.try_wait() {
                        if !st.success() {
                            sum.fail(format!(
                                "flips: the producer process failed ({st}) after {got} messages"
                            ));
                            break;
                        }
                    }
                }
                if t0.elapsed() > Duration::from_secs(secs + 60) {
                    sum.fail(format!("flips: stuck after {got} messages"));
                    break;
                }
            }
            Err(PopError::Corrupt) => {
                sum.fail(format!(
                    "flips: the consumer saw Corrupt after {got} messages"
                ));
                break;
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let (flipped, refused) = flipper.join().expect("flipper");
    let _ = c.wait();
    sum.flips += flipped;
    sum.attach_errors += refused;
    let sent = sent.unwrap_or(got);
    sum.sent += sent;
    sum.received += got;
    sum.lost += sent.saturating_sub(got);
    sum.lines.push(format!(
        "flips: {flipped} bits flipped in the segment header and the ring metadata while {got} messages crossed a stamped ring at positions wrapping past u64::MAX; {refused} fresh opens/attaches refused"
    ));
    drop(rx);
}

fn stamped_producer(args: &[String]) {
    let seg = Segment::posix(&args[0]).open().expect("open");
    let secs: u64 = args[1].parse().unwrap();
    let r = seg.find_region("ring").expect("ring");
    let token = u64::from(seg.slot()) + 1;
    // SAFETY: the region lives as long as `seg`, which outlives the producer.
    let mut tx = unsafe {
        StampedRing::<[u64; 4]>::producer(r.as_ptr(), r.len(), token, &|t| {
            t != 0 && seg.slot_alive((t - 1) as u32)
        })
    }
    .expect("producer");
    let t0 = Instant::now();
    let mut seq = 0u64;
    let end = |count: u64| [u64::MAX, count, !count, u64::MAX];
    loop {
        let last = seq >= 2 * (u64::MAX - FLIP_START)
            && seq % 1024 == 0
            && t0.elapsed() >= Duration::from_secs(secs);
        let mut v = if last { end(seq) } else { words4(seq) };
        loop {
            match tx.push(v) {
                Ok(()) => break,
                Err(e) => {
                    v = e.into_inner();
                    std::thread::yield_now();
                }
            }
        }
        if last {
            break;
        }
        seq += 1;
    }
}

// ---------------------------------------------------------------- soak

fn soak(tag: &str, secs: u64, sum: &mut Summary) {
    let chan = format!("{tag}-soak");
    let ctl_name = format!("{tag}-soak-ctl");
    let _rm = Remove(vec![chan.clone(), ctl_name.clone()]);
    let ctl = Ctl::create(&ctl_name);
    let ch = shmlane::bytes(&chan)
        .capacity(1 << 20)
        .create()
        .expect("create");
    let mut rx = ch.byte_receiver().expect("receiver");
    let producers: Vec<Child> = (1..=2u64)
        .map(|id| {
            spawn(
                "soak-producer",
                &[&chan, &ctl_name, &id.to_string(), &secs.to_string()],
            )
        })
        .collect();
    let mut next: HashMap<u64, u64> = HashMap::new();
    let mut buf = vec![0u8; rx.max_message()];
    let (mut received, mut bytes, mut corrupt, mut lost) = (0u64, 0u64, 0u64, 0u64);
    let t0 = Instant::now();
    loop {
        match rx.recv(&mut buf, Some(Deadline::after(Duration::from_secs(30)))) {
            Ok(len) => match check(&buf[..len]) {
                Some((id, seq)) => {
                    let want = next.entry(id).or_insert(0);
                    if seq != *want {
                        lost += seq.saturating_sub(*want);
                        corrupt += u64::from(seq < *want);
                        sum.fail(format!(
                            "soak: producer {id} message {seq} when {want} was due"
                        ));
                    }
                    *want = seq + 1;
                    received += 1;
                    bytes += len as u64;
                }
                None => {
                    corrupt += 1;
                    sum.fail("soak: a torn or corrupt message".to_owned());
                }
            },
            Err(ByteRecvError::Disconnected) => break,
            Err(e) => {
                sum.fail(format!("soak: receive ended with {e}"));
                break;
            }
        }
    }
    let took = t0.elapsed();
    let mut sent = 0;
    for mut p in producers {
        if !p.wait().is_ok_and(|s| s.success()) {
            sum.fail("soak: a producer failed".to_owned());
        }
        let _ = &mut p;
    }
    for id in 1..=2u64 {
        // ORDERING: Relaxed; the producers have exited.
        let s = ctl.word(CTL_FIRST_ID + id as usize).load(Ordering::Relaxed);
        sent += s;
        if next.get(&id).copied().unwrap_or(0) != s {
            sum.fail(format!(
                "soak: producer {id} sent {s}, {} delivered",
                next.get(&id).copied().unwrap_or(0)
            ));
            lost += s.saturating_sub(next.get(&id).copied().unwrap_or(0));
        }
    }
    sum.sent += sent;
    sum.received += received;
    sum.lost += lost;
    sum.corrupt += corrupt;
    sum.lines.push(format!(
        "soak: {:.0} s, 2 producer processes, {received} checksummed messages ({:.1} MB, {:.2} M msg/s), {lost} lost, {corrupt} corrupt",
        took.as_secs_f64(),
        bytes as f64 / 1e6,
        received as f64 / took.as_secs_f64() / 1e6
    ));
}

fn soak_producer(args: &[String]) {
    let ctl = Ctl::open(&args[1]);
    let id: u64 = args[2].parse().unwrap();
    let secs: u64 = args[3].parse().unwrap();
    let ch = shmlane::bytes(&args[0]).open().expect("open");
    let mut tx = ch.byte_sender().expect("sender");
    let mut rng = Rng(id.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let counter = ctl.word(CTL_FIRST_ID + id as usize);
    let t0 = Instant::now();
    let mut seq = 0;
    while t0.elapsed() < Duration::from_secs(secs) {
        for _ in 0..1000 {
            let m = message(id, seq, &mut rng);
            tx.send(&m, Some(Deadline::after(Duration::from_secs(60))))
                .expect("send");
            seq += 1;
        }
        // ORDERING: Relaxed; read after this process ended.
        counter.store(seq, Ordering::Relaxed);
    }
}

// ---------------------------------------------------------------- children

fn child(role: &str, args: &[String]) {
    match role {
        "bytes-producer" => bytes_producer(args),
        "spsc-consumer" => spsc_consumer(args),
        "soak-producer" => soak_producer(args),
        "stamped-producer" => stamped_producer(args),
        "spsc-fill" => {
            let ch = shmlane::spsc::<u64>(&args[0]).open().expect("open");
            let mut tx = ch.producer().expect("producer");
            for v in 0..1000u64 {
                // Blocks (parked in a futex wait) once the 64 slots are full, until killed.
                if tx.send(v, None).is_err() {
                    return;
                }
            }
        }
        "spsc-wait" => {
            let ch = shmlane::spsc::<u64>(&args[0]).open().expect("open");
            let mut rx = ch.consumer().expect("consumer");
            println!("waiting");
            // Parked in a futex wait on the empty ring until killed.
            let _ = rx.recv(None);
        }
        "spsc-paced" => {
            let ch = shmlane::spsc::<u64>(&args[0]).open().expect("open");
            let mut tx = ch.producer().expect("producer");
            let n: u64 = args[1].parse().unwrap();
            for v in 0..n {
                tx.send(v, None).expect("send");
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        "race" => {
            let ch = shmlane::spsc::<u64>(&args[0])
                .capacity(1024)
                .open_or_create()
                .expect("open_or_create");
            println!("{}", if ch.created() { "created" } else { "opened" });
            // Stay a moment, so that late racers open a live channel too.
            std::thread::sleep(Duration::from_millis(20));
        }
        "echo" => {
            let park = WaitStrategy::Park;
            let a = shmlane::spsc::<u64>(&args[0]).wait(park).open().expect("a");
            let b = shmlane::spsc::<u64>(&args[1]).wait(park).open().expect("b");
            let (mut rx, mut tx) = (
                a.consumer().expect("consumer"),
                b.producer().expect("producer"),
            );
            while let Ok(v) = rx.recv(None) {
                tx.send(v, None).expect("echo");
            }
        }
        other => panic!("unknown child role {other}"),
    }
}
