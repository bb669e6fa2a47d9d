//! The summary every scenario adds to, printed at the end.

use std::time::Duration;

use hdrhistogram::Histogram;

#[derive(Default)]
pub(crate) struct Summary {
    pub(crate) kills_random: u64,
    pub(crate) kills_fixed: [u64; 3],
    pub(crate) kills_consumer: u64,
    pub(crate) kills_futex: u64,
    pub(crate) stops: u64,
    pub(crate) races: u64,
    pub(crate) flips: u64,
    pub(crate) attach_errors: u64,
    pub(crate) sent: u64,
    pub(crate) received: u64,
    pub(crate) lost: u64,
    pub(crate) corrupt: u64,
    pub(crate) duplicates: u64,
    pub(crate) skipped: u64,
    pub(crate) detect: Vec<u64>,
    pub(crate) failures: Vec<String>,
    pub(crate) lines: Vec<String>,
}

impl Summary {
    pub(crate) fn fail(&mut self, what: String) {
        eprintln!("FAIL: {what}");
        self.failures.push(what);
    }
}
pub(crate) fn report(s: &Summary, took: Duration) {
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
