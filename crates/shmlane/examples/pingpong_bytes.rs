//! Ping-back between two processes over two byte channels: round-trip percentiles. The Rust
//! twin of the C ABI's `examples/c/pingpong.c` (same channel options), so the two measure the
//! same channel with and without the C boundary (`examples/bench-pingpong.sh` runs both).
//!
//! `cargo run --release -p shmlane --example pingpong_bytes [-- ROUND_TRIPS]`

#![allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)] // example arithmetic

use std::time::{Duration, Instant};

use shmlane::{Deadline, UnlinkPolicy, WaitStrategy};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let n: u64 = args
        .get(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000)
        .max(1);
    let open = |name: String, create: bool| {
        let b = shmlane::bytes(&name)
            .capacity(4096)
            .wait(WaitStrategy::SpinThenPark {
                spins: 100_000,
                yields: 10,
            })
            .unlink(UnlinkPolicy::LastDetach);
        if create { b.create() } else { b.open() }
    };
    let mut buf = [0u8; 8];
    if args.get(2).map(String::as_str) == Some("echo") {
        let there = open(format!("ppr-there-{}", args[3]), false)?;
        let back = open(format!("ppr-back-{}", args[3]), false)?;
        let (mut rx, mut tx) = (there.byte_receiver()?, back.byte_sender()?);
        for _ in 0..n {
            let len = rx.recv(&mut buf, Some(Deadline::after(Duration::from_secs(10))))?;
            tx.send(&buf[..len], None)?;
        }
        return Ok(());
    }
    let tag = std::process::id();
    let (there, back) = (
        open(format!("ppr-there-{tag}"), true)?,
        open(format!("ppr-back-{tag}"), true)?,
    );
    let (mut tx, mut rx) = (there.byte_sender()?, back.byte_receiver()?);
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .args([n.to_string(), "echo".into(), tag.to_string()])
        .spawn()?;
    let mut rtt = Vec::with_capacity(n as usize);
    for i in 0..n {
        let t0 = Instant::now();
        tx.send(&i.to_ne_bytes(), None)?;
        let len = rx.recv(&mut buf, Some(Deadline::after(Duration::from_secs(10))))?;
        rtt.push(t0.elapsed().as_nanos() as u64);
        assert_eq!((len, u64::from_ne_bytes(buf)), (8, i));
    }
    if !child.wait()?.success() {
        return Err("the echo child failed".into());
    }
    rtt.sort_unstable();
    let q = |p: f64| rtt[((rtt.len() - 1) as f64 * p) as usize];
    println!(
        "{n} round trips between two processes (Rust, byte channel): p50 {} ns, p99 {} ns, p99.9 {} ns, max {} ns",
        q(0.5),
        q(0.99),
        q(0.999),
        rtt[rtt.len() - 1]
    );
    Ok(())
}
