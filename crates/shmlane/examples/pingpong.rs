//! Ping-back between two processes over two SPSC channels: round-trip percentiles.
//!
//! `cargo run --release -p shmlane --example pingpong [-- ROUND_TRIPS]`

#![allow(clippy::cast_precision_loss, clippy::single_match_else)] // example arithmetic on counts

use std::time::{Duration, Instant};

use shmlane::{Deadline, UnlinkPolicy, WaitStrategy};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let n: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let tag = std::process::id();
    if args.get(2).map(String::as_str) == Some("echo") {
        let there = shmlane::spsc::<u64>(&format!("pp-there-{}", args[3])).open()?;
        let back = shmlane::spsc::<u64>(&format!("pp-back-{}", args[3])).open()?;
        let (mut rx, mut tx) = (there.consumer()?, back.producer()?);
        for _ in 0..n {
            let v = rx.recv(Some(Deadline::after(Duration::from_secs(10))))?;
            tx.send(v, None)?;
        }
        return Ok(());
    }
    let open = |name: String| {
        shmlane::spsc::<u64>(&name)
            .capacity(64)
            .wait(WaitStrategy::SpinThenPark {
                spins: 100_000,
                yields: 10,
            })
            .unlink(UnlinkPolicy::LastDetach)
            .create()
    };
    let (there, back) = (
        open(format!("pp-there-{tag}"))?,
        open(format!("pp-back-{tag}"))?,
    );
    let (mut tx, mut rx) = (there.producer()?, back.consumer()?);
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .args([n.to_string(), "echo".into(), tag.to_string()])
        .spawn()?;
    let mut rtt = Vec::with_capacity(n as usize);
    for i in 0..n {
        let t0 = Instant::now();
        tx.send(i, None)?;
        let v = rx.recv(Some(Deadline::after(Duration::from_secs(10))))?;
        rtt.push(t0.elapsed().as_nanos() as u64);
        assert_eq!(v, i);
    }
    child.wait()?;
    rtt.sort_unstable();
    let q = |p: f64| rtt[((rtt.len() - 1) as f64 * p) as usize];
    println!(
        "{n} round trips between two processes: p50 {} ns, p99 {} ns, p99.9 {} ns, max {} ns",
        q(0.5),
        q(0.99),
        q(0.999),
        rtt[rtt.len() - 1]
    );
    Ok(())
}
