//! Blocking wake-up latency between two processes, every transport in the same run
//! (interleaved rounds), as round-trip percentiles. See `src/wakeup.rs`.
//!
//! `cargo bench -p shmlane-benches --bench wakeup [-- ROUNDS]`

use shmlane_benches::wakeup::{TRANSPORTS, round_trips, summarise};

/// Round trips per transport per round.
const PER_ROUND: u64 = 2_000;

#[allow(clippy::cast_precision_loss)] // nanosecond figures far below 2^52
fn main() {
    let rounds: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(5);
    let mut all: Vec<Vec<u64>> = vec![Vec::new(); TRANSPORTS.len()];
    for r in 0..rounds {
        let order: Vec<usize> = if r % 2 == 0 {
            (0..TRANSPORTS.len()).collect()
        } else {
            (0..TRANSPORTS.len()).rev().collect()
        };
        for i in order {
            let mut t = round_trips(TRANSPORTS[i], PER_ROUND);
            // The first round trips of a fresh pair fault pages in; not part of the figure.
            t.drain(..10);
            all[i].extend(t);
        }
    }
    let pipe_p50 = summarise(&all[0]).p50 as f64;
    println!(
        "blocking 8-byte round trip between two processes, {rounds} interleaved rounds x {PER_ROUND}"
    );
    println!(
        "{:<22} {:>10} {:>10} {:>10} {:>10} {:>14}",
        "transport", "p50 ns", "p99 ns", "p99.9 ns", "max ns", "p50 vs pipe"
    );
    for (name, samples) in TRANSPORTS.iter().zip(&all) {
        let s = summarise(samples);
        println!(
            "{:<22} {:>10} {:>10} {:>10} {:>10} {:>13.2}x",
            name,
            s.p50,
            s.p99,
            s.p999,
            s.max,
            pipe_p50 / s.p50 as f64
        );
    }
}
