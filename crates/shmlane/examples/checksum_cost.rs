//! What the optional per-message checksum costs: one thread sends and receives messages of a
//! few sizes through a byte channel and a broadcast channel, with checksums off and on, and
//! prints nanoseconds per message (send + receive). Run with
//! `cargo run --release -p shmlane --example checksum_cost`.

// Timings printed as floating point: precision loss in the casts is irrelevant.
#![allow(clippy::cast_precision_loss)]

use std::time::Instant;

use shmlane::UnlinkPolicy;

fn bytes_round_trip(size: usize, checksum: bool, n: u64) -> f64 {
    let name = format!("cksum-cost-b-{}-{size}-{checksum}", std::process::id());
    let ch = shmlane::bytes(&name)
        .capacity(1 << 20)
        .checksum(checksum)
        .unlink(UnlinkPolicy::LastDetach)
        .create()
        .expect("create");
    let (mut tx, mut rx) = (ch.byte_sender().unwrap(), ch.byte_receiver().unwrap());
    let msg = vec![0xa5u8; size];
    let mut buf = vec![0u8; tx.max_message()];
    let t0 = Instant::now();
    for _ in 0..n {
        tx.try_send(&msg).unwrap();
        assert_eq!(rx.try_recv(&mut buf).unwrap(), size);
    }
    t0.elapsed().as_nanos() as f64 / n as f64
}

fn broadcast_round_trip(size: usize, checksum: bool, n: u64) -> f64 {
    let name = format!("cksum-cost-p-{}-{size}-{checksum}", std::process::id());
    let ch = shmlane::broadcast(&name)
        .capacity(1024)
        .msg_size(4096)
        .checksum(checksum)
        .unlink(UnlinkPolicy::LastDetach)
        .create()
        .expect("create");
    let (mut tx, mut rx) = (ch.publisher().unwrap(), ch.subscriber().unwrap());
    let msg = vec![0x5au8; size];
    let mut buf = vec![0u8; tx.max_message()];
    let t0 = Instant::now();
    for _ in 0..n {
        tx.send(&msg).unwrap();
        assert_eq!(rx.try_recv(&mut buf).unwrap(), size);
    }
    t0.elapsed().as_nanos() as f64 / n as f64
}

fn main() {
    let data = vec![1u8; 1 << 20];
    let t0 = Instant::now();
    let mut x = 0;
    for _ in 0..200 {
        x ^= crc32c::crc32c(std::hint::black_box(&data));
    }
    let gbs = 200.0 * data.len() as f64 / t0.elapsed().as_secs_f64() / 1e9;
    println!("crc32c alone, 1 MiB blocks: {gbs:.1} GB/s ({x:08x})");
    for size in [16usize, 64, 256, 1024, 4000] {
        let msg = vec![3u8; size];
        let n = 2_000_000u64;
        let t0 = Instant::now();
        for _ in 0..n {
            x ^= crc32c::crc32c(std::hint::black_box(&msg));
        }
        let ns = t0.elapsed().as_nanos() as f64 / n as f64;
        println!("crc32c alone, {size:>4} bytes: {ns:.1} ns ({x:08x})");
    }
    println!("kind       size   off ns/msg   on ns/msg   extra");
    for size in [16usize, 64, 256, 1024, 4000] {
        let n = if size > 1000 { 200_000 } else { 1_000_000 };
        for (kind, f) in [
            ("bytes", bytes_round_trip as fn(usize, bool, u64) -> f64),
            ("broadcast", broadcast_round_trip),
        ] {
            // Best of three: the machine is shared.
            let best = |on| (0..3).map(|_| f(size, on, n)).fold(f64::MAX, f64::min);
            let (off, on) = (best(false), best(true));
            println!(
                "{kind:<10} {size:>5} {off:>12.1} {on:>11.1} {:>6.1}%",
                (on / off - 1.0) * 100.0
            );
        }
    }
}
