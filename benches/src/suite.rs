//! The `shmlane bench` suite: every transport and size of [`crate::xproc`], interleaved
//! rounds, a table with ratios to pipe and to the hardware limit, JSON records and SVG plots.

// Counts and nanosecond figures are far below 2^52; plotting needs floats.
#![allow(clippy::cast_precision_loss)]

use std::{fmt::Write as _, io::Write as _, path::Path, time::Instant};

use crate::{
    wakeup::{Summary, summarise},
    xproc::{Record, SIZES, TRANSPORTS, has_rtt, has_throughput, rtt, throughput},
};

/// How much to measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// Under 20 s: every transport, metric and size, fewer samples.
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
}

impl Options {
    /// Every transport and size at `level`, cores 0 and 1.
    pub fn new(level: Level) -> Self {
        Self {
            level,
            same_core: false,
            only: Vec::new(),
            sizes: Vec::new(),
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
    if let Some(t) = only.iter().find(|t| !TRANSPORTS.contains(&t.as_str())) {
        return Err(format!(
            "unknown transport {t:?}; choose from {}",
            TRANSPORTS.join(", ")
        ));
    }
    if let Some(s) = sizes.iter().find(|s| !SIZES.contains(s)) {
        return Err(format!(
            "unsupported message size {s}; choose from {SIZES:?}"
        ));
    }
    Ok(())
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

/// Runs the suite; progress goes to stderr.
pub fn run(opts: &Options) -> Vec<Record> {
    let mut work = Vec::new();
    for &size in SIZES {
        for &t in TRANSPORTS {
            if !opts.wants(t, size) {
                continue;
            }
            if has_rtt(t, size) {
                work.push(Work {
                    transport: t,
                    size,
                    rtt: true,
                });
            }
            if has_throughput(t) {
                work.push(Work {
                    transport: t,
                    size,
                    rtt: false,
                });
            }
        }
    }
    let r = rounds(opts.level);
    let total = work.len() * r;
    let mut rtts: Vec<Vec<u64>> = vec![Vec::new(); work.len()];
    let mut tps: Vec<(u64, f64)> = vec![(0, 0.0); work.len()];
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
            if w.rtt {
                let n = rtt_samples(opts.level, w.transport, w.size);
                let mut t = rtt(w.transport, w.size, n, opts.same_core);
                // The first round trips of a fresh pair pay for faults and cold caches.
                t.drain(..(t.len() / 100).max(1));
                rtts[i].extend(t);
            } else {
                let n = tp_samples(opts.level, w.transport, w.size);
                let d = throughput(w.transport, w.size, n, opts.same_core);
                tps[i].0 += n;
                tps[i].1 += d.as_secs_f64();
            }
        }
    }
    eprintln!(
        "\r{:<70}",
        format!("done in {:.1} s", t0.elapsed().as_secs_f64())
    );
    work.iter()
        .enumerate()
        .map(|(i, w)| {
            if w.rtt {
                Record {
                    transport: w.transport,
                    metric: "rtt",
                    msg_size: w.size,
                    samples: rtts[i].len() as u64,
                    rtt: Some(summarise(&rtts[i])),
                    msgs_per_s: None,
                }
            } else {
                Record {
                    transport: w.transport,
                    metric: "throughput",
                    msg_size: w.size,
                    samples: tps[i].0,
                    rtt: None,
                    msgs_per_s: Some(tps[i].0 as f64 / tps[i].1),
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

/// The tables: round trips (percentiles, ratio to pipe and to the hardware limit) and
/// streaming (messages and bytes per second, ratio to pipe and to memcpy).
pub fn table(recs: &[Record]) -> String {
    let mut out = String::new();
    let hw = find(recs, "hw-cacheline", "rtt", 8).and_then(|r| r.rtt);
    for &size in SIZES {
        let pipe = find(recs, "pipe", "rtt", size).and_then(|r| r.rtt);
        if !recs.iter().any(|r| r.metric == "rtt" && r.msg_size == size) {
            continue;
        }
        let _ = writeln!(out, "\nround trip, {} messages (ns)", size_name(size));
        let _ = writeln!(
            out,
            "{:<26} {:>9} {:>9} {:>9} {:>10} {:>10} {:>8} {:>10}",
            "transport", "p50", "p99", "p99.9", "max", "pipe/this", "this/hw", "p99.9/hw"
        );
        for r in recs
            .iter()
            .filter(|r| r.metric == "rtt" && r.msg_size == size)
        {
            let s: Summary = r.rtt.expect("rtt");
            let vs_pipe = pipe.map_or(String::new(), |p| {
                format!("{:.1}x", p.p50 as f64 / s.p50 as f64)
            });
            let vs_hw = hw.map_or(String::new(), |h| {
                format!("{:.2}x", s.p50 as f64 / h.p50 as f64)
            });
            let tail_vs_hw = hw.map_or(String::new(), |h| {
                format!("{:.2}x", s.p999 as f64 / h.p999 as f64)
            });
            let _ = writeln!(
                out,
                "{:<26} {:>9} {:>9} {:>9} {:>10} {:>10} {:>8} {:>10}",
                r.transport, s.p50, s.p99, s.p999, s.max, vs_pipe, vs_hw, tail_vs_hw
            );
        }
    }
    for &size in SIZES {
        let pipe = find(recs, "pipe", "throughput", size).and_then(|r| r.msgs_per_s);
        let mem = find(recs, "memcpy", "throughput", size).and_then(|r| r.msgs_per_s);
        if !recs
            .iter()
            .any(|r| r.metric == "throughput" && r.msg_size == size)
        {
            continue;
        }
        let _ = writeln!(out, "\nstreaming, {} messages", size_name(size));
        let _ = writeln!(
            out,
            "{:<26} {:>12} {:>12} {:>10} {:>12}",
            "transport", "M msg/s", "GB/s", "this/pipe", "this/memcpy"
        );
        for r in recs
            .iter()
            .filter(|r| r.metric == "throughput" && r.msg_size == size)
        {
            let m = r.msgs_per_s.expect("throughput");
            let _ = writeln!(
                out,
                "{:<26} {:>12.2} {:>12.3} {:>10} {:>12}",
                r.transport,
                m / 1e6,
                m * size as f64 / 1e9,
                pipe.map_or(String::new(), |p| format!("{:.1}x", m / p)),
                mem.map_or(String::new(), |p| format!("{:.2}x", m / p)),
            );
        }
    }
    out
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
            v
        })
        .collect();
    serde_json::json!({ "machine": machine(), "records": records })
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
    for &t in TRANSPORTS {
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
        let path: Vec<String> = pts.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
        let _ = writeln!(
            s,
            "<polyline points='{}' fill='none' stroke='{c}' stroke-width='2'/>",
            path.join(" ")
        );
        let _ = writeln!(
            s,
            "<text x='{}' y='{}' fill='{c}'>{t}</text>",
            w - 210.0,
            top + 14.0 * k as f64
        );
        k += 1;
    }
    s.push_str("</svg>\n");
    s
}
