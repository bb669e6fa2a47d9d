//! Where the SPSC channel's extra nanoseconds go, between two processes pinned to cores 0 and
//! 1, timed as `shmlane bench` times its rows: the raw stamped ring (the `shmlane-spsc-spin`
//! row), the same with the producer's notify, the shared-tail ring under the channel with and
//! without it, the channel itself, and the naive hand-written ring. Each round measures every
//! step back to back in alternating order; the figures are medians over the rounds of each
//! step's ratio to the raw stamped ring within its round (the VM's state switches survive
//! only in ratios taken inside one round).
//!
//! `cargo run --release -p shmlane-benches --example chan_parts [-- ROUNDS]`

#![allow(clippy::cast_precision_loss)]

use shmlane_benches::chan;

const STEPS: &[&str] = &[
    "part-stamped",
    "part-stamped-notify",
    "part-stamped-nofence",
    "part-tail",
    "part-tail-notify",
    "part-tail-nofence",
    "shmlane-chan-spsc-spin",
    "naive-shm-ring",
];

fn p50(mut t: Vec<u64>) -> f64 {
    t.drain(..t.len() / 100);
    t.sort_unstable();
    t[t.len() / 2] as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(5);
    // (figure name, per step: per round value)
    let figs = [
        "rtt 8 B p50 ns",
        "stream 8 B M msg/s",
        "stream 64 B M msg/s",
    ];
    let mut vals = vec![vec![Vec::new(); STEPS.len()]; figs.len()];
    for round in 0..rounds {
        let order: Vec<usize> = if round % 2 == 0 {
            (0..STEPS.len()).collect()
        } else {
            (0..STEPS.len()).rev().collect()
        };
        for &i in &order {
            let t = STEPS[i];
            vals[0][i].push(p50(chan::rtt(t, 8, 50_000, false)));
            for (f, size) in [(1, 8usize), (2, 64)] {
                let n = 4_000_000;
                let d = chan::throughput(t, size, n, false);
                vals[f][i].push(n as f64 / d.as_secs_f64() / 1e6);
            }
        }
        eprint!(".");
    }
    eprintln!();
    for (f, name) in figs.iter().enumerate() {
        println!(
            "\n{name}: median over {rounds} rounds (median ratio to part-stamped within a round; per-round values)"
        );
        for (i, step) in STEPS.iter().enumerate() {
            let ratios: Vec<f64> = (0..rounds).map(|r| vals[f][i][r] / vals[f][0][r]).collect();
            let per: Vec<String> = vals[f][i].iter().map(|v| format!("{v:.1}")).collect();
            println!(
                "{step:<24} {:>9.1} {:>7.2}x   [{}]",
                median(vals[f][i].clone()),
                median(ratios),
                per.join(" ")
            );
        }
    }
}
