//! Interleaved A/B comparison of the in-process workloads (`src/inproc.rs`).
//!
//! This 2-core VM drifts by up to 10x within seconds (placement of the vCPUs, neighbours), so
//! criterion's one-implementation-after-the-other runs cannot give a fair ratio. Here each
//! round runs every implementation of a group once, back to back, in an order that alternates
//! between rounds; the ratio is taken per round (both sides saw the same machine state) and
//! its median reported, with the median throughput of each side.
//!
//! `cargo bench -p shmlane-benches --bench ab [-- ROUNDS] [GROUP...]`; with `AB_ALL=1` in the
//! environment it also prints every round's figure (the machine's states show as runs of
//! rounds at a few times the speed of the others).

use std::time::Duration;

use shmlane_benches::inproc::CASES;

/// Items per throughput round, round trips per latency round.
const ITEMS: u64 = 4_000_000;
const ROUND_TRIPS: u64 = 200_000;

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        f64::midpoint(v[n / 2 - 1], v[n / 2])
    }
}

#[allow(clippy::cast_precision_loss)] // counts below 2^52
fn main() {
    // `cargo bench` passes `--bench`; a bare number is the round count.
    let rounds: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(15);
    // Any other bare word selects the groups whose name contains it.
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-') && a.parse::<usize>().is_err())
        .collect();
    let mut groups: Vec<&str> = CASES
        .iter()
        .map(|k| k.group)
        .filter(|g| only.is_empty() || only.iter().any(|o| g.contains(o.as_str())))
        .collect();
    groups.dedup();
    let all_rounds = std::env::var_os("AB_ALL").is_some();
    println!(
        "interleaved A/B, {rounds} rounds per group (median; ratio = shmlane / other, per round)"
    );
    for group in groups {
        let cases: Vec<_> = CASES.iter().filter(|k| k.group == group).collect();
        let latency = cases[0].round_trip;
        let n = if latency { ROUND_TRIPS } else { ITEMS };
        // Warm-up round, discarded.
        for c in &cases {
            (c.run)(n / 10);
        }
        let mut per: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
        for r in 0..rounds {
            let order: Vec<usize> = if r % 2 == 0 {
                (0..cases.len()).collect()
            } else {
                (0..cases.len()).rev().collect()
            };
            for i in order {
                let t: Duration = (cases[i].run)(n);
                per[i].push(if latency {
                    t.as_secs_f64() * 1e9 / n as f64
                } else {
                    n as f64 / t.as_secs_f64() / 1e6
                });
            }
        }
        // shmlane's case: the first one named "shmlane" (for latency, the SPSC one).
        let base = cases
            .iter()
            .position(|c| c.name.starts_with("shmlane"))
            .expect("a shmlane case");
        let unit = if latency { "ns RTT" } else { "M items/s" };
        println!("\n{group} ({unit})");
        for (i, c) in cases.iter().enumerate() {
            let mut ratios: Vec<f64> = per[base].iter().zip(&per[i]).map(|(a, b)| a / b).collect();
            let (lo, hi) = (
                ratios.iter().copied().fold(f64::INFINITY, f64::min),
                ratios.iter().copied().fold(0.0, f64::max),
            );
            let med_ratio = median(&mut ratios);
            let mut v = per[i].clone();
            if all_rounds {
                // Each round's figure, in order: shows which state the machine was in.
                let r: Vec<String> = v.iter().map(|x| format!("{x:.0}")).collect();
                println!("    rounds: {}", r.join(" "));
            }
            println!(
                "  {:<22} median {:>9.1}   shmlane/this {:>5.2} (min {:.2}, max {:.2})",
                c.name,
                median(&mut v),
                med_ratio,
                lo,
                hi
            );
        }
    }
}
