//! Market-data fan-out on a typed broadcast channel: one feed process publishes quotes, written
//! in place into their slots (loan, write, publish), to several strategy processes that
//! subscribe to the same channel. The feed never waits for anyone: a strategy that falls a
//! whole ring behind is told exactly how many quotes it lost, and its sequence numbers show the
//! gap. The last strategy is deliberately slow. While publishing, the feed reports how many
//! subscribers it has and how far behind the slowest is; each strategy reports what it
//! received, what it lost (gaps in the sequence numbers equal the reported losses) and its
//! feed-to-strategy latency from a CLOCK_MONOTONIC stamp in the quote.
//!
//! `cargo run --release -p shmlane --example md_fanout [-- QUOTES STRATEGIES]`

#![allow(clippy::cast_precision_loss, clippy::single_match_else)] // example arithmetic on counts

use std::time::{Duration, Instant};

use bytemuck::{Pod, Zeroable};
use shmlane::{ByteRecvError, Deadline, UnlinkPolicy, WaitStrategy};

#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
struct Quote {
    /// CLOCK_MONOTONIC nanoseconds when the feed published it.
    sent_ns: u64,
    bid: i64,
    ask: i64,
    bid_qty: u32,
    ask_qty: u32,
    instrument: u32,
    /// 1 on the feed's last message (end of the session).
    last: u32,
}

/// Slots in the ring: a strategy more than this many quotes behind is lapped.
const CAPACITY: u64 = 1 << 14;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let quotes: u64 = args
        .get(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let strategies: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(3);
    if args.get(3).map(String::as_str) == Some("strategy") {
        return strategy(&args[4], args[5] == "slow");
    }
    let name = format!("md-{}", std::process::id());
    let ch = shmlane::broadcast_of::<Quote>(&name)
        .capacity(CAPACITY)
        .unlink(UnlinkPolicy::LastDetach)
        .create()?;
    let mut feed = ch.typed_publisher()?;
    let children: Vec<_> = (0..strategies)
        .map(|i| {
            let pace = if i + 1 == strategies && strategies > 1 {
                "slow"
            } else {
                "fast"
            };
            std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    quotes.to_string(),
                    strategies.to_string(),
                    "strategy".into(),
                    name.clone(),
                    pace.into(),
                ])
                .spawn()
                .unwrap()
        })
        .collect();
    // Strategies start at the newest quote: wait until every one has subscribed.
    let deadline = Instant::now() + Duration::from_secs(10);
    while feed.subscribers() < strategies as u64 {
        if Instant::now() > deadline {
            return Err(format!(
                "only {} of {strategies} strategies subscribed within 10 s",
                feed.subscribers()
            )
            .into());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let t0 = Instant::now();
    let report_every = (quotes / 5).max(1);
    for i in 0..quotes {
        // In place: the quote's fields go straight into the shared slot.
        let mut loan = feed.loan();
        loan.write(&Quote {
            sent_ns: wall_ns(),
            bid: 100_000 + (i % 7) as i64,
            ask: 100_010 + (i % 5) as i64,
            bid_qty: 100,
            ask_qty: 200,
            instrument: (i % 16) as u32,
            last: 0,
        });
        loan.publish();
        if (i + 1) % report_every == 0 {
            println!(
                "feed: {} quotes published; {} subscribers, the slowest {} quotes behind",
                i + 1,
                feed.subscribers(),
                feed.slowest_lag().unwrap_or(0)
            );
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let end = Quote {
        last: 1,
        ..Quote::zeroed()
    };
    feed.publish(&end);
    for mut c in children {
        c.wait()?;
    }
    println!(
        "feed: {quotes} quotes to {strategies} strategies in {secs:.2} s ({:.1} M quotes/s)",
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

fn strategy(name: &str, slow: bool) -> Result<(), Box<dyn std::error::Error>> {
    let ch = shmlane::broadcast_of::<Quote>(name)
        .wait(WaitStrategy::SpinThenPark {
            spins: 20_000,
            yields: 10,
        })
        .unlink(UnlinkPolicy::LastDetach)
        .open()?;
    let mut sub = ch.typed_subscriber()?;
    let (mut got, mut lost, mut next) = (0u64, 0u64, None::<u64>);
    let mut lat = Vec::new();
    let mut work = 0u64;
    loop {
        match sub.recv_seq(Some(Deadline::after(Duration::from_secs(30)))) {
            Ok((q, seq)) => {
                // Every gap in the numbers is a loss that was reported.
                if let Some(n) = next {
                    assert_eq!(seq, n, "{name}: a gap without a reported loss");
                }
                next = Some(seq + 1);
                if q.last == 1 {
                    break;
                }
                got += 1;
                lat.push(wall_ns().saturating_sub(q.sent_ns));
                if slow {
                    // A strategy with real work to do per quote.
                    for k in 0..2_000u64 {
                        work = work.wrapping_mul(31).wrapping_add(k ^ q.bid as u64);
                    }
                }
            }
            Err(ByteRecvError::Lapped { lost: l }) => {
                lost += l;
                next = next.map(|n| n + l);
            }
            Err(ByteRecvError::Disconnected) => break,
            Err(e) => return Err(e.into()),
        }
    }
    std::hint::black_box(work);
    assert_eq!(lost, sub.lost());
    lat.sort_unstable();
    let q = |p: f64| {
        lat.get(((lat.len().max(1) - 1) as f64 * p) as usize)
            .copied()
    };
    println!(
        "{name} ({}): {got} quotes received, {lost} lost to laps; latency p50 {:?} ns, p99 {:?} ns, p99.9 {:?} ns",
        if slow { "slow" } else { "fast" },
        q(0.5).unwrap_or(0),
        q(0.99).unwrap_or(0),
        q(0.999).unwrap_or(0)
    );
    Ok(())
}
