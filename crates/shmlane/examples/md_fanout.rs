//! Market-data fan-out: one feed process publishes quotes to several strategy processes, one
//! SPSC channel each (a slow strategy never holds up the others' channels). Each strategy
//! checks sequence numbers (nothing lost, nothing reordered) and reports feed-to-strategy
//! latency from a CLOCK_MONOTONIC stamp in the quote.
//!
//! `cargo run --release -p shmlane --example md_fanout [-- QUOTES STRATEGIES]`

#![allow(clippy::cast_precision_loss, clippy::single_match_else)] // example arithmetic on counts

use std::time::{Duration, Instant};

use bytemuck::{Pod, Zeroable};
use shmlane::{Deadline, RecvError, UnlinkPolicy, WaitStrategy};

#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
struct Quote {
    seq: u64,
    /// CLOCK_MONOTONIC nanoseconds when the feed sent it.
    sent_ns: u64,
    bid: i64,
    ask: i64,
    bid_qty: u32,
    ask_qty: u32,
    instrument: u32,
    _pad: u32,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let quotes: u64 = args
        .get(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let strategies: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(3);
    if args.get(3).map(String::as_str) == Some("strategy") {
        return strategy(&args[4], quotes);
    }
    let tag = std::process::id();
    let names: Vec<String> = (0..strategies).map(|i| format!("md-{tag}-{i}")).collect();
    let mut txs = Vec::new();
    for name in &names {
        let ch = shmlane::spsc::<Quote>(name)
            .capacity(1 << 14)
            .unlink(UnlinkPolicy::LastDetach)
            .create()?;
        txs.push(ch.producer()?);
    }
    let children: Vec<_> = names
        .iter()
        .map(|name| {
            std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    quotes.to_string(),
                    strategies.to_string(),
                    "strategy".into(),
                    name.clone(),
                ])
                .spawn()
                .unwrap()
        })
        .collect();
    let t0 = Instant::now();
    for seq in 0..quotes {
        let q = Quote {
            seq,
            sent_ns: 0,
            bid: 100_000 + (seq % 7) as i64,
            ask: 100_010 + (seq % 5) as i64,
            bid_qty: 100,
            ask_qty: 200,
            instrument: (seq % 16) as u32,
            _pad: 0,
        };
        for tx in &mut txs {
            let mut q = q;
            q.sent_ns = wall_ns();
            tx.send(q, None)?;
        }
    }
    drop(txs);
    for mut c in children {
        c.wait()?;
    }
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "feed: {quotes} quotes to {strategies} strategies in {secs:.2} s ({:.1} M quotes/s per strategy)",
        quotes as f64 / secs / 1e6
    );
    Ok(())
}

/// CLOCK_MONOTONIC in nanoseconds: the same clock in every process on the machine.
fn wall_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid out pointer; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn strategy(name: &str, quotes: u64) -> Result<(), Box<dyn std::error::Error>> {
    let ch = shmlane::spsc::<Quote>(name)
        .wait(WaitStrategy::SpinThenPark {
            spins: 20_000,
            yields: 10,
        })
        .unlink(UnlinkPolicy::LastDetach)
        .open()?;
    let mut rx = ch.consumer()?;
    let mut next = 0u64;
    let mut lat = Vec::with_capacity(quotes as usize);
    loop {
        match rx.recv(Some(Deadline::after(Duration::from_secs(30)))) {
            Ok(q) => {
                assert_eq!(q.seq, next, "{name}: lost or reordered quote");
                next += 1;
                lat.push(wall_ns().saturating_sub(q.sent_ns));
            }
            Err(RecvError::Disconnected) => break,
            Err(e) => return Err(e.into()),
        }
    }
    assert_eq!(next, quotes);
    lat.sort_unstable();
    let q = |p: f64| lat[((lat.len() - 1) as f64 * p) as usize];
    println!(
        "{name}: {next} quotes in order; feed-to-strategy latency p50 {} ns, p99 {} ns, p99.9 {} ns",
        q(0.5),
        q(0.99),
        q(0.999)
    );
    Ok(())
}
