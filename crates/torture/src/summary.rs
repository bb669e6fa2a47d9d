//! The summary every scenario adds to, printed at the end: one tally per channel kind (and one
//! for the bare stamped ring of the `flips` scenario), the faults injected, the failures.

use std::{collections::BTreeMap, time::Duration};

use hdrhistogram::Histogram;

/// What a tally is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum K {
    Spsc = 0,
    Mpmc = 1,
    Bytes = 2,
    Broadcast = 3,
    /// The bare stamped ring (`flips`) and the futex words (`wrap`): no channel kind.
    Other = 4,
}

impl K {
    pub(crate) const ALL: [K; 5] = [K::Spsc, K::Mpmc, K::Bytes, K::Broadcast, K::Other];
    pub(crate) fn name(self) -> &'static str {
        match self {
            K::Spsc => "spsc",
            K::Mpmc => "mpmc",
            K::Bytes => "bytes",
            K::Broadcast => "broadcast",
            K::Other => "other",
        }
    }
}

/// One kind's figures. The accounting every scenario keeps: `sent = received + lost`, where
/// `lost` is what the channel itself counted (a dead claim skipped, a lap reported) or what a
/// killed receiver took with it (`in_dead_hands`, at most one message per receiver killed);
/// `corrupt` (torn, bad checksum, out of order) and `duplicates` must stay 0 except where a
/// scenario says otherwise (at-least-once consumers).
#[derive(Default)]
pub(crate) struct Tally {
    pub(crate) sent: u64,
    pub(crate) received: u64,
    /// Counted by the channel: dead or stalled claims skipped (bytes), laps (broadcast),
    /// holes skipped (MPMC, once it recovers them).
    pub(crate) lost: u64,
    /// Taken by a receiver process killed between receiving and recording them.
    pub(crate) in_dead_hands: u64,
    /// Claims or slots a dead (or stalled) sender had taken but not committed, skipped and
    /// counted by the channel: never sent, so outside `sent`.
    pub(crate) skipped: u64,
    /// Sent, yet neither received nor counted: must stay 0.
    pub(crate) missing: u64,
    pub(crate) corrupt: u64,
    pub(crate) duplicates: u64,
    pub(crate) kills: u64,
    pub(crate) stops: u64,
    pub(crate) flips: u64,
    /// Fresh opens and attaches refused while bits were flipped.
    pub(crate) refused: u64,
    /// Errors the endpoints reported while bits were flipped (`Corrupt`, attach errors).
    pub(crate) errors: u64,
    /// Kill (or freeze) to detection (`PeerDied`, a skip), microseconds.
    pub(crate) detect: Vec<u64>,
}

#[derive(Default)]
pub(crate) struct Summary {
    pub(crate) kinds: [Tally; 5],
    /// SIGKILLs by kind and moment ("bytes producer at random", "spsc producer mid-chunk").
    pub(crate) kill_points: BTreeMap<String, u64>,
    pub(crate) races: u64,
    pub(crate) failures: Vec<String>,
    pub(crate) lines: Vec<String>,
}

impl Summary {
    pub(crate) fn fail(&mut self, what: String) {
        eprintln!("FAIL: {what}");
        self.failures.push(what);
    }
    pub(crate) fn k(&mut self, k: K) -> &mut Tally {
        &mut self.kinds[k as usize]
    }
    /// Counts `n` kills of one kind at one moment.
    pub(crate) fn killed(&mut self, k: K, what: &str, n: u64) {
        if n == 0 {
            return;
        }
        self.k(k).kills += n;
        *self
            .kill_points
            .entry(format!("{} {what}", k.name()))
            .or_default() += n;
    }
}

fn latency(detect: &[u64]) -> Option<String> {
    if detect.is_empty() {
        return None;
    }
    let mut h = Histogram::<u64>::new(3).expect("histogram");
    for &v in detect {
        let _ = h.record(v.max(1));
    }
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    Some(format!(
        "{} samples: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        h.len(),
        ms(0.5),
        ms(0.99),
        h.max() as f64 / 1000.0
    ))
}

pub(crate) fn report(s: &Summary, took: Duration) {
    println!("---- summary ({:.1} s)", took.as_secs_f64());
    for l in &s.lines {
        println!("{l}");
    }
    let kills: u64 = s.kinds.iter().map(|t| t.kills).sum();
    let stops: u64 = s.kinds.iter().map(|t| t.stops).sum();
    let flips: u64 = s.kinds.iter().map(|t| t.flips).sum();
    let points: Vec<String> = s
        .kill_points
        .iter()
        .map(|(what, n)| format!("{n} {what}"))
        .collect();
    println!(
        "faults injected: {kills} SIGKILLs ({}), {stops} SIGSTOPs, {} creation races, {flips} bits flipped in live segments",
        points.join("; "),
        s.races,
    );
    println!(
        "per kind (sent = received + lost counted by the channel + taken by killed receivers; missing and corrupt must be 0, twice too but for at-least-once SPSC consumers killed between processing and committing):"
    );
    for k in K::ALL {
        let t = &s.kinds[k as usize];
        if t.sent == 0 && t.kills == 0 && t.flips == 0 {
            continue;
        }
        let mut line = format!(
            "  {:<9} sent {}, received {}, lost {} (counted by the channel), {} in killed receivers' hands, missing {}, corrupt or torn {}, delivered twice {}, uncommitted claims skipped {}; {} kills, {} stops, {} bits flipped ({} opens refused, {} errors reported)",
            k.name(),
            t.sent,
            t.received,
            t.lost,
            t.in_dead_hands,
            t.missing,
            t.corrupt,
            t.duplicates,
            t.skipped,
            t.kills,
            t.stops,
            t.flips,
            t.refused,
            t.errors,
        );
        if let Some(l) = latency(&t.detect) {
            line.push_str("; detection ");
            line.push_str(&l);
        }
        println!("{line}");
    }
    let all: Vec<u64> = s.kinds.iter().flat_map(|t| t.detect.clone()).collect();
    if let Some(l) = latency(&all) {
        println!("dead-peer detection (kill to skip or PeerDied), all kinds, {l}");
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
