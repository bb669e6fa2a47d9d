//! The `shmlane bench` suite: every transport and size of [`crate::xproc`], interleaved
//! rounds, a table with ratios to pipe and to the hardware limit, JSON records and SVG plots.

// Counts and nanosecond figures are far below 2^52; plotting needs floats.
#![allow(clippy::cast_precision_loss)]

use std::{fmt::Write as _, io::Write as _, path::Path, time::Instant};

use crate::{
    peers,
    wakeup::{Summary, summarise},
    xproc::{Record, RoundFigure, SIZES, TRANSPORTS, has_rtt, has_throughput, rtt, throughput},
};

/// How much to measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// Under 20 s: every transport, metric and size, fewer samples, one round: a smoke test
    /// (one round cannot show which state the VM was in; see [`QUICK_LABEL`]).
    Quick,
    /// About a minute.
    Default,
    /// Several minutes, more rounds.
    Full,
}

/// Options of a run.
#[derive(Clone, Debug)]
pub struct Options {
    /// How much to measure.
    pub level: Level,
    /// Both processes on core 0 instead of cores 0 and 1.
    pub same_core: bool,
    /// Only these transports (all when empty; names as in [`TRANSPORTS`]).
    pub only: Vec<String>,
    /// Only these message sizes (all of [`SIZES`] when empty).
    pub sizes: Vec<usize>,
    /// Also the peer rows ([`crate::peers`]; only in a build with the `peers` feature).
    pub peers: bool,
}

impl Options {
    /// Every transport and size at `level`, cores 0 and 1.
    pub fn new(level: Level) -> Self {
        Self {
            level,
            same_core: false,
            only: Vec::new(),
            sizes: Vec::new(),
            peers: false,
        }
    }

    fn wants(&self, transport: &str, size: usize) -> bool {
        (self.only.is_empty() || self.only.iter().any(|t| t == transport))
            && (self.sizes.is_empty() || self.sizes.contains(&size))
    }
}

/// Checks `--only` names and `--size` values against what the harness measures.
///
/// # Errors
/// A message naming the unknown transport or size and listing the valid ones.
pub fn check_filters(only: &[String], sizes: &[usize]) -> Result<(), String> {
    if let Some(t) = only
        .iter()
        .find(|t| !TRANSPORTS.contains(&t.as_str()) && !peers::is_peer(t))
    {
        return Err(format!(
            "unknown transport {t:?}; choose from {} (with --peers: {})",
            TRANSPORTS.join(", "),
            peers::TRANSPORTS.join(", ")
        ));
    }
    if let Some(s) = sizes.iter().find(|s| !SIZES.contains(s)) {
        return Err(format!(
            "unsupported message size {s}; choose from {SIZES:?}"
        ));
    }
    Ok(())
}

/// Printed above the tables (and in the JSON's `note`) of a `--quick` run.
pub const QUICK_LABEL: &str = "--quick is a smoke test only: one round with fewer samples, \
    figures not for comparison (run without --quick for figures)";

impl Level {
    /// The name in the JSON (`level`).
    pub fn name(self) -> &'static str {
        match self {
            Level::Quick => "quick",
            Level::Default => "default",
            Level::Full => "full",
        }
    }
}

/// Round trips of the per-round hardware ping-pong probe.
const PROBE_RTTS: u64 = 1000;

/// The `hw-cacheline` ping-pong p50 now, on cores 0 and 1 (whatever `--same-core` says: it
/// reads the machine's state, not a transport's); None on a one-core machine.
fn hw_probe() -> Option<u64> {
    if crate::cores() < 2 {
        return None;
    }
    let mut t = rtt("hw-cacheline", 8, PROBE_RTTS, false);
    t.drain(..(t.len() / 100).max(1));
    Some(summarise(&t).p50)
}

/// A ratio of two rows taken within each round, its median over the rounds, and the target
/// it must meet (a regression row: the issue-18 MPMC anomaly made the first one 3–10x).
#[derive(Clone, Copy, Debug)]
pub struct Check {
    /// Name in the table and the JSON.
    pub name: &'static str,
    /// Numerator transport.
    pub num: &'static str,
    /// Denominator transport.
    pub den: &'static str,
    /// `rtt` (ratio of p50s: lower is better) or `throughput` (ratio of rates).
    pub metric: &'static str,
    /// Message size.
    pub size: usize,
    /// The ratio must be at most this (rtt) or at least this (throughput).
    pub target: f64,
}

/// The same-round ratio rows. Each appears when both of its transports were measured.
pub const CHECKS: &[Check] = &[
    Check {
        name: "mpmc/spsc rtt 64 KiB",
        num: "shmlane-mpmc-spin",
        den: "shmlane-spsc-spin",
        metric: "rtt",
        size: 65536,
        target: 1.5,
    },
    // The channel path against the raw ring it runs on (issue 18).
    Check {
        name: "chan/ring rtt 8 B",
        num: "shmlane-chan-spsc-spin",
        den: "shmlane-spsc-spin",
        metric: "rtt",
        size: 8,
        target: 1.1,
    },
    Check {
        name: "chan/ring stream 8 B",
        num: "shmlane-chan-spsc-spin",
        den: "shmlane-spsc-spin",
        metric: "throughput",
        size: 8,
        target: 0.9,
    },
    Check {
        name: "chan/ring stream 64 B",
        num: "shmlane-chan-spsc-spin",
        den: "shmlane-spsc-spin",
        metric: "throughput",
        size: 64,
        target: 0.9,
    },
    // A latest value written and read back against the SPSC channel's round trip (issue 20):
    // per direction a write of four atomic read-modify-writes and a fence, and more cache
    // lines crossing (ticket and version, the slot's seq, the value) than a ring slot. A
    // regression ceiling, not a goal: 2.2-3.2x in the rounds of a noisy 2-core EPYC VM
    // (docs/benchmarks.md, "Latest-value channel").
    Check {
        name: "latest/chan rtt 8 B",
        num: "shmlane-chan-latest",
        den: "shmlane-chan-spsc-spin",
        metric: "rtt",
        size: 8,
        target: 4.0,
    },
    // Waiting from a tokio task, and on 16 channels at once, against a parked receiver (issue
    // 21): "no more than a parked receiver plus a few microseconds". Ceilings, not goals.
    Check {
        name: "async/park rtt 8 B",
        num: "shmlane-chan-async",
        den: "shmlane-chan-spsc-park",
        metric: "rtt",
        size: 8,
        target: 1.5,
    },
    Check {
        name: "select16/park rtt 8 B",
        num: "shmlane-chan-select16",
        den: "shmlane-chan-spsc-park",
        metric: "rtt",
        size: 8,
        target: 1.5,
    },
    // One message per step against the hand-written ring a user would write.
    Check {
        name: "ring/naive stream 64 B",
        num: "shmlane-spsc-spin",
        den: "naive-shm-ring",
        metric: "throughput",
        size: 64,
        target: 0.8,
    },
    // Against the peers (`--peers` runs only).
    Check {
        name: "chan/iceoryx2 rtt 8 B",
        num: "shmlane-chan-spsc-spin",
        den: "iceoryx2-pubsub",
        metric: "rtt",
        size: 8,
        target: 0.3,
    },
    Check {
        name: "chan park/ice event 8 B",
        num: "shmlane-chan-spsc-park",
        den: "iceoryx2-event",
        metric: "rtt",
        size: 8,
        target: 1.0,
    },
];

/// One [`Check`] evaluated on a run.
#[derive(Clone, Debug)]
pub struct Ratio {
    /// The check.
    pub check: Check,
    /// The ratio in each round.
    pub per_round: Vec<f64>,
    /// Their median.
    pub median: f64,
    /// Whether the median meets the target.
    pub met: bool,
}

/// The value a round's figure is compared by: p50 ns (rtt) or messages per second.
fn figure(r: &RoundFigure) -> f64 {
    r.rtt
        .map_or_else(|| r.msgs_per_s.unwrap_or(0.0), |s| s.p50 as f64)
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        f64::midpoint(v[n / 2 - 1], v[n / 2])
    })
}

/// `f(a_round, b_round)` in every round both records have, and the median of those.
fn same_round(a: &Record, b: &Record, f: impl Fn(f64, f64) -> f64) -> (Vec<f64>, Option<f64>) {
    let per: Vec<f64> = a
        .rounds
        .iter()
        .zip(&b.rounds)
        .map(|(x, y)| f(figure(x), figure(y)))
        .filter(|v| v.is_finite())
        .collect();
    let m = median(per.clone());
    (per, m)
}

/// Evaluates [`CHECKS`] on `recs`.
pub fn ratios(recs: &[Record]) -> Vec<Ratio> {
    CHECKS
        .iter()
        .filter_map(|c| {
            let a = find(recs, c.num, c.metric, c.size)?;
            let b = find(recs, c.den, c.metric, c.size)?;
            let (per_round, median) = same_round(a, b, |x, y| x / y);
            let median = median?;
            let met = if c.metric == "rtt" {
                median <= c.target
            } else {
                median >= c.target
            };
            Some(Ratio {
                check: *c,
                per_round,
                median,
                met,
            })
        })
        .collect()
}

fn rounds(level: Level) -> usize {
    match level {
        Level::Quick => 1,
        Level::Default => 6,
        Level::Full => 15,
    }
}

fn fast(transport: &str) -> bool {
    transport.starts_with("shmlane") && !transport.ends_with("park")
        || transport == "hw-cacheline"
        || transport == "memcpy"
        || crate::peers::in_process(transport)
        || transport == "naive-shm-ring"
}

/// Round trips per round.
fn rtt_samples(level: Level, transport: &str, size: usize) -> u64 {
    let base: u64 = if fast(transport)
        || transport == "shmlane-spsc-spinpark"
        || transport == "shmlane-chan-spsc-spinpark"
    {
        if size >= 65536 { 5_000 } else { 50_000 }
    } else if size >= 65536 {
        300
    } else {
        1_500
    };
    match level {
        Level::Quick => (base / 5).max(100),
        Level::Default => base,
        Level::Full => base * 2,
    }
}

/// Messages per streaming round.
fn tp_samples(level: Level, transport: &str, size: usize) -> u64 {
    let budget: u64 = if fast(transport) { 256 << 20 } else { 32 << 20 };
    let cap = if fast(transport) { 10_000_000 } else { 300_000 };
    let n = (budget / size as u64).clamp(1000, cap);
    match level {
        Level::Quick => (n / 6).max(500),
        Level::Default => n,
        Level::Full => n * 2,
    }
}

struct Work {
    transport: &'static str,
    size: usize,
    rtt: bool,
}

/// Whether `opts`'s filters leave anything to measure (`--only` rows with no figure at the
/// `--size` given select nothing: `hw-cacheline`, `iceoryx2-event` and the waiting rows carry 8
/// bytes only).
pub fn selects_anything(opts: &Options) -> bool {
    !work_list(opts).is_empty()
}

/// The measurements `opts` asks for, in the order the first round takes them.
fn work_list(opts: &Options) -> Vec<Work> {
    let mut work = Vec::new();
    for &size in SIZES {
        for &t in TRANSPORTS.iter().chain(peers::rows(opts.peers)) {
            if !opts.wants(t, size) {
                continue;
            }
            let peer = peers::is_peer(t);
            if peer && peers::has_rtt(t, size) || !peer && has_rtt(t, size) {
                work.push(Work {
                    transport: t,
                    size,
                    rtt: true,
                });
            }
            if peer && peers::has_throughput(t, size) || !peer && has_throughput(t) {
                work.push(Work {
                    transport: t,
                    size,
                    rtt: false,
                });
            }
        }
    }
    work
}

/// Runs `opts`'s measurements in interleaved rounds (the order reversed every other round),
/// each beside a hardware ping-pong taken just before it; progress goes to stderr.
pub fn run(opts: &Options) -> Vec<Record> {
    let work = work_list(opts);
    let r = rounds(opts.level);
    let total = work.len() * r;
    let mut rtts: Vec<Vec<u64>> = vec![Vec::new(); work.len()];
    let mut tps: Vec<u64> = vec![0; work.len()];
    let mut per_round: Vec<Vec<RoundFigure>> = vec![Vec::new(); work.len()];
    let t0 = Instant::now();
    let mut done = 0;
    for round in 0..r {
        let order: Vec<usize> = if round % 2 == 0 {
            (0..work.len()).collect()
        } else {
            (0..work.len()).rev().collect()
        };
        for i in order {
            let w = &work[i];
            done += 1;
            progress(done, total, w, t0);
            // The VM's state right before this figure (it switches within seconds).
            let hw_p50_ns = hw_probe();
            if w.rtt {
                let n = rtt_samples(opts.level, w.transport, w.size);
                let mut t = if peers::is_peer(w.transport) {
                    peers::rtt(w.transport, w.size, n, opts.same_core)
                } else {
                    rtt(w.transport, w.size, n, opts.same_core)
                };
                // The first round trips of a fresh pair pay for faults and cold caches.
                t.drain(..(t.len() / 100).max(1));
                per_round[i].push(RoundFigure {
                    rtt: Some(summarise(&t)),
                    msgs_per_s: None,
                    hw_p50_ns,
                });
                rtts[i].extend(t);
            } else {
                let n = tp_samples(opts.level, w.transport, w.size);
                let d = if peers::is_peer(w.transport) {
                    peers::throughput(w.transport, w.size, n, opts.same_core)
                } else {
                    throughput(w.transport, w.size, n, opts.same_core)
                };
                tps[i] += n;
                per_round[i].push(RoundFigure {
                    rtt: None,
                    msgs_per_s: Some(n as f64 / d.as_secs_f64().max(1e-9)),
                    hw_p50_ns,
                });
            }
        }
    }
    eprintln!(
        "\r{:<70}",
        format!("done in {:.1} s", t0.elapsed().as_secs_f64())
    );
    work.iter()
        .zip(per_round)
        .enumerate()
        .map(|(i, (w, rounds))| {
            if w.rtt {
                Record {
                    transport: w.transport,
                    metric: "rtt",
                    msg_size: w.size,
                    samples: rtts[i].len() as u64,
                    rtt: Some(summarise(&rtts[i])),
                    msgs_per_s: None,
                    rounds,
                }
            } else {
                Record {
                    transport: w.transport,
                    metric: "throughput",
                    msg_size: w.size,
                    samples: tps[i],
                    rtt: None,
                    msgs_per_s: median(rounds.iter().filter_map(|r| r.msgs_per_s).collect()),
                    rounds,
                }
            }
        })
        .collect()
}

fn progress(done: usize, total: usize, w: &Work, t0: Instant) {
    let width = 30;
    let filled = done * width / total;
    eprint!(
        "\r[{}{}] {done}/{total} {:<22} {:>6} B {:<10} {:>5.1} s ",
        "#".repeat(filled),
        " ".repeat(width - filled),
        w.transport,
        w.size,
        if w.rtt { "rtt" } else { "throughput" },
        t0.elapsed().as_secs_f64()
    );
    let _ = std::io::stderr().flush();
}

fn find<'a>(recs: &'a [Record], t: &str, metric: &str, size: usize) -> Option<&'a Record> {
    recs.iter()
        .find(|r| r.transport == t && r.metric == metric && r.msg_size == size)
}

fn size_name(s: usize) -> String {
    if s >= 1024 {
        format!("{} KiB", s / 1024)
    } else {
        format!("{s} B")
    }
}

/// `f` of the two records' figures within each round, as the median over the rounds
/// formatted with `fmt`; empty when either record is missing.
fn ratio_cell(
    a: Option<&Record>,
    b: Option<&Record>,
    f: impl Fn(f64, f64) -> f64,
    fmt: impl Fn(f64) -> String,
) -> String {
    match (a, b) {
        (Some(a), Some(b)) => same_round(a, b, f).1.map_or(String::new(), fmt),
        _ => String::new(),
    }
}

/// Each round's figure with the hardware ping-pong p50 (ns) beside it: `120[110] 450[430]`.
fn per_round_cell(r: &Record) -> String {
    r.rounds
        .iter()
        .map(|x| {
            let hw = x.hw_p50_ns.map_or("-".to_owned(), |h| h.to_string());
            match (x.rtt, x.msgs_per_s) {
                (Some(s), _) => format!("{}[{hw}]", s.p50),
                (None, Some(m)) => format!("{:.3}[{hw}]", m / 1e6),
                (None, None) => format!("-[{hw}]"),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The tables: round trips (percentiles, ratio to pipe and to the hardware limit) and
/// streaming (messages and bytes per second, ratio to pipe and to memcpy). Every ratio is the
/// median of ratios taken within a round; every row ends with each round's figure and the
/// hardware ping-pong p50 measured just before it (`figure[hw ns]`), so a switch of the VM
/// between its fast and slow state shows. Then the same-round ratio rows ([`CHECKS`]).
pub fn table(recs: &[Record]) -> String {
    let mut out = String::new();
    rtt_tables(recs, &mut out);
    tp_tables(recs, &mut out);
    checks_table(recs, &mut out);
    peers_footer(recs, &mut out);
    out
}

fn rtt_tables(recs: &[Record], out: &mut String) {
    let hw = find(recs, "hw-cacheline", "rtt", 8);
    for &size in SIZES {
        let pipe = find(recs, "pipe", "rtt", size);
        if !recs.iter().any(|r| r.metric == "rtt" && r.msg_size == size) {
            continue;
        }
        let _ = writeln!(*out, "\nround trip, {} messages (ns)", size_name(size));
        let _ = writeln!(
            *out,
            "{:<26} {:>9} {:>9} {:>9} {:>10} {:>10} {:>8} {:>10}  per round: p50[hw p50]",
            "transport", "p50", "p99", "p99.9", "max", "pipe/this", "this/hw", "p99.9/hw",
        );
        for r in recs
            .iter()
            .filter(|r| r.metric == "rtt" && r.msg_size == size)
        {
            let s: Summary = r.rtt.expect("rtt");
            let vs_pipe = ratio_cell(pipe, Some(r), |p, t| p / t, |v| format!("{v:.1}x"));
            // This figure against the ping-pong measured just before it.
            let per: Vec<f64> = r
                .rounds
                .iter()
                .filter_map(|x| Some(x.rtt?.p50 as f64 / x.hw_p50_ns? as f64))
                .collect();
            let vs_hw = median(per).map_or(String::new(), |v| format!("{v:.2}x"));
            let tail_vs_hw = hw.map_or(String::new(), |h| {
                let per: Vec<f64> = r
                    .rounds
                    .iter()
                    .zip(&h.rounds)
                    .filter_map(|(x, y)| Some(x.rtt?.p999 as f64 / y.rtt?.p999 as f64))
                    .collect();
                median(per).map_or(String::new(), |v| format!("{v:.2}x"))
            });
            let _ = writeln!(
                *out,
                "{:<26} {:>9} {:>9} {:>9} {:>10} {:>10} {:>8} {:>10}  {}",
                r.transport,
                s.p50,
                s.p99,
                s.p999,
                s.max,
                vs_pipe,
                vs_hw,
                tail_vs_hw,
                per_round_cell(r)
            );
        }
    }
}

fn tp_tables(recs: &[Record], out: &mut String) {
    for &size in SIZES {
        let pipe = find(recs, "pipe", "throughput", size);
        let mem = find(recs, "memcpy", "throughput", size);
        if !recs
            .iter()
            .any(|r| r.metric == "throughput" && r.msg_size == size)
        {
            continue;
        }
        let _ = writeln!(*out, "\nstreaming, {} messages", size_name(size));
        let _ = writeln!(
            *out,
            "{:<26} {:>12} {:>12} {:>10} {:>12}  per round: M msg/s[hw p50]",
            "transport", "M msg/s", "GB/s", "this/pipe", "this/memcpy",
        );
        for r in recs
            .iter()
            .filter(|r| r.metric == "throughput" && r.msg_size == size)
        {
            let m = r.msgs_per_s.expect("throughput");
            let _ = writeln!(
                *out,
                "{:<26} {:>12.2} {:>12.3} {:>10} {:>12}  {}",
                r.transport,
                m / 1e6,
                m * size as f64 / 1e9,
                ratio_cell(Some(r), pipe, |t, p| t / p, |v| format!("{v:.1}x")),
                ratio_cell(Some(r), mem, |t, p| t / p, |v| format!("{v:.2}x")),
                per_round_cell(r)
            );
        }
    }
}

fn checks_table(recs: &[Record], out: &mut String) {
    let checks = ratios(recs);
    if !checks.is_empty() {
        let _ = writeln!(
            *out,
            "\nsame-round ratios (regression rows: the median of the ratios taken in each round)"
        );
        let _ = writeln!(
            *out,
            "{:<24} {:>8} {:>9} {:>8}  per round",
            "check", "median", "target", "status"
        );
        for c in checks {
            let per: Vec<String> = c.per_round.iter().map(|v| format!("{v:.2}")).collect();
            let _ = writeln!(
                *out,
                "{:<24} {:>7.2}x {:>2}{:>6.2}x {:>8}  {}",
                c.check.name,
                c.median,
                if c.check.metric == "rtt" { "<=" } else { ">=" },
                c.check.target,
                if c.met { "met" } else { "NOT MET" },
                per.join(" ")
            );
        }
    }
}

/// The versions of the peer rows in `recs`, one line.
fn peers_footer(recs: &[Record], out: &mut String) {
    let mut seen: Vec<&str> = Vec::new();
    for v in recs.iter().filter_map(|r| peers::version(r.transport)) {
        if !seen.contains(&v) {
            seen.push(v);
        }
    }
    if !seen.is_empty() {
        let _ = writeln!(out, "\npeers: {}", seen.join(", "));
    }
}

fn machine() -> serde_json::Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|v| v.trim().to_owned())
        })
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    serde_json::json!({ "cpu": cpu, "cores": crate::cores(), "kernel": kernel })
}

/// [`json`] with the run's level (`level`, and for `--quick` the smoke-test `note`).
pub fn document(recs: &[Record], level: Level) -> serde_json::Value {
    let mut v = json(recs);
    let o = v.as_object_mut().expect("object");
    o.insert("level".into(), level.name().into());
    if level == Level::Quick {
        o.insert("note".into(), QUICK_LABEL.into());
    }
    v
}

/// The JSON document of the contract (`docs/benchmarks.md`).
pub fn json(recs: &[Record]) -> serde_json::Value {
    let records: Vec<serde_json::Value> = recs
        .iter()
        .map(|r| {
            let mut v = serde_json::json!({
                "transport": r.transport,
                "metric": r.metric,
                "msg_size": r.msg_size,
                "samples": r.samples,
            });
            let o = v.as_object_mut().expect("object");
            if let Some(version) = peers::version(r.transport) {
                o.insert("version".into(), version.into());
            }
            if let Some(s) = r.rtt {
                o.insert("p50_ns".into(), s.p50.into());
                o.insert("p99_ns".into(), s.p99.into());
                o.insert("p999_ns".into(), s.p999.into());
                o.insert("max_ns".into(), s.max.into());
            }
            if let Some(m) = r.msgs_per_s {
                o.insert("msgs_per_s".into(), m.into());
                o.insert("bytes_per_s".into(), (m * r.msg_size as f64).into());
            }
            let rounds: Vec<serde_json::Value> = r
                .rounds
                .iter()
                .map(|x| {
                    let mut v = serde_json::json!({ "hw_p50_ns": x.hw_p50_ns });
                    let o = v.as_object_mut().expect("object");
                    if let Some(s) = x.rtt {
                        o.insert("p50_ns".into(), s.p50.into());
                        o.insert("p999_ns".into(), s.p999.into());
                    }
                    if let Some(m) = x.msgs_per_s {
                        o.insert("msgs_per_s".into(), m.into());
                    }
                    v
                })
                .collect();
            o.insert("rounds".into(), rounds.into());
            v
        })
        .collect();
    let checks: Vec<serde_json::Value> = ratios(recs)
        .into_iter()
        .map(|c| {
            serde_json::json!({
                "name": c.check.name,
                "numerator": c.check.num,
                "denominator": c.check.den,
                "metric": c.check.metric,
                "msg_size": c.check.size,
                "per_round": c.per_round,
                "median": c.median,
                if c.check.metric == "rtt" { "max" } else { "min" }: c.check.target,
                "met": c.met,
            })
        })
        .collect();
    serde_json::json!({ "machine": machine(), "records": records, "ratios": checks })
}

/// Writes `rtt.svg` (8-byte round-trip percentiles per transport, log scale) and
/// `throughput.svg` (bytes per second against message size, log-log) into `dir`.
pub fn plots(recs: &[Record], dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("rtt.svg"), rtt_svg(recs))?;
    std::fs::write(dir.join("throughput.svg"), tp_svg(recs))?;
    Ok(())
}

const COLORS: &[&str] = &[
    "#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666",
    "#1f78b4", "#b2df8a", "#fb9a99",
];

fn log_y(v: f64, lo: f64, hi: f64, top: f64, h: f64) -> f64 {
    top + h - (v.max(lo).ln() - lo.ln()) / (hi.ln() - lo.ln()) * h
}

fn rtt_svg(recs: &[Record]) -> String {
    let rows: Vec<&Record> = recs
        .iter()
        .filter(|r| r.metric == "rtt" && r.msg_size == 8)
        .collect();
    let (w, h, left, top) = (900.0, 420.0, 190.0, 40.0);
    let (lo, hi) = (10.0f64, 1e7f64);
    let mut s = format!(
        "<svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{}' font-family='sans-serif' font-size='12'>\n<text x='10' y='20' font-size='15'>8-byte round trip between two processes: p50 / p99 / p99.9 (ns, log scale)</text>\n",
        h + 120.0
    );
    for e in 1..=7 {
        let y = log_y(10f64.powi(e), lo, hi, top, h);
        let _ = writeln!(
            s,
            "<line x1='{left}' x2='{}' y1='{y:.1}' y2='{y:.1}' stroke='#ddd'/><text x='{}' y='{:.1}' text-anchor='end'>1e{e}</text>",
            w - 10.0,
            left - 5.0,
            y + 4.0
        );
    }
    let bw = (w - left - 20.0) / rows.len().max(1) as f64;
    for (i, r) in rows.iter().enumerate() {
        let sm = r.rtt.expect("rtt");
        let x = left + i as f64 * bw;
        for (k, (v, op)) in [(sm.p999, 0.35), (sm.p99, 0.6), (sm.p50, 1.0)]
            .iter()
            .enumerate()
        {
            let y = log_y(*v as f64, lo, hi, top, h);
            let _ = writeln!(
                s,
                "<rect x='{:.1}' y='{y:.1}' width='{:.1}' height='{:.1}' fill='{}' fill-opacity='{op}'><title>{} p{}: {v} ns</title></rect>",
                x + 4.0 + k as f64 * 2.0,
                bw - 8.0 - k as f64 * 4.0,
                top + h - y,
                COLORS[i % COLORS.len()],
                r.transport,
                ["99.9", "99", "50"][k]
            );
        }
        let _ = writeln!(
            s,
            "<text transform='translate({:.1},{:.1}) rotate(40)'>{}</text>",
            x + bw / 2.0,
            top + h + 12.0,
            r.transport
        );
    }
    s.push_str("</svg>\n");
    s
}

fn tp_svg(recs: &[Record]) -> String {
    let (w, h, left, top) = (900.0, 420.0, 80.0, 40.0);
    let (lo, hi) = (1e5f64, 1e11f64);
    let mut s = format!(
        "<svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{}' font-family='sans-serif' font-size='12'>\n<text x='10' y='20' font-size='15'>streaming between two processes: bytes/s against message size (log-log)</text>\n",
        h + 60.0
    );
    for e in 5..=11 {
        let y = log_y(10f64.powi(e), lo, hi, top, h);
        let _ = writeln!(
            s,
            "<line x1='{left}' x2='{}' y1='{y:.1}' y2='{y:.1}' stroke='#ddd'/><text x='{}' y='{:.1}' text-anchor='end'>1e{e} B/s</text>",
            w - 220.0,
            left - 5.0,
            y + 4.0
        );
    }
    let xs = |size: usize| {
        let i = SIZES.iter().position(|&z| z == size).unwrap_or(0);
        left + 20.0 + i as f64 * (w - left - 260.0) / (SIZES.len() - 1) as f64
    };
    for &z in SIZES {
        let _ = writeln!(
            s,
            "<text x='{:.1}' y='{:.1}' text-anchor='middle'>{}</text>",
            xs(z),
            top + h + 20.0,
            size_name(z)
        );
    }
    let mut k = 0;
    for &t in TRANSPORTS.iter().chain(peers::TRANSPORTS) {
        let pts: Vec<(f64, f64)> = SIZES
            .iter()
            .filter_map(|&z| {
                find(recs, t, "throughput", z)
                    .and_then(|r| r.msgs_per_s)
                    .map(|m| (xs(z), log_y(m * z as f64, lo, hi, top, h)))
            })
            .collect();
        if pts.is_empty() {
            continue;
        }
        let c = COLORS[k % COLORS.len()];
        // More lines than colours: the later ones dashed, so no two lines look alike.
        let dash = ["none", "7 3", "2 3"][(k / COLORS.len()) % 3];
        let path: Vec<String> = pts.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
        let _ = writeln!(
            s,
            "<polyline points='{}' fill='none' stroke='{c}' stroke-width='2' stroke-dasharray='{dash}'/>",
            path.join(" ")
        );
        let ly = top + 14.0 * k as f64;
        let _ = writeln!(
            s,
            "<line x1='{}' x2='{}' y1='{:.1}' y2='{:.1}' stroke='{c}' stroke-width='2' stroke-dasharray='{dash}'/><text x='{}' y='{ly}' fill='{c}'>{t}</text>",
            w - 210.0,
            w - 184.0,
            ly - 4.0,
            ly - 4.0,
            w - 180.0
        );
        k += 1;
    }
    s.push_str("</svg>\n");
    s
}
