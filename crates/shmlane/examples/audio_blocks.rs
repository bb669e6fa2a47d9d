//! Audio-style block transfer: a host process renders 256-frame stereo blocks and writes them
//! into an SPSC channel with zero-copy chunks; the engine's real-time callback reads a block
//! per period with `read_chunk` only: it never blocks, allocates or makes a syscall (with the
//! host not asleep, the consumer-side notify is a fence and a load). An empty ring at callback
//! time is an underrun: the callback outputs silence and carries on.
//!
//! `cargo run --release -p shmlane --example audio_blocks [-- PERIODS]`

#![allow(clippy::cast_precision_loss, clippy::single_match_else)] // example arithmetic on counts

use std::time::{Duration, Instant};

use shmlane::{UnlinkPolicy, WaitStrategy};

const FRAMES: usize = 256;
const CHANNELS: usize = 2;
const BLOCK: usize = FRAMES * CHANNELS;
/// 256 frames at 48 kHz.
const PERIOD: Duration = Duration::from_micros(5333);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let periods: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(400);
    if args.get(2).map(String::as_str) == Some("host") {
        return host(&args[3], periods);
    }
    let name = format!("audio-{}", std::process::id());
    let ch = shmlane::spsc::<f32>(&name)
        .capacity((BLOCK * 8) as u64)
        .unlink(UnlinkPolicy::LastDetach)
        .create()?;
    let mut rx = ch.consumer()?;
    let mut host = std::process::Command::new(std::env::current_exe()?)
        .args([periods.to_string(), "host".into(), name.clone()])
        .spawn()?;
    // Let the host pre-fill a few blocks, as a real host primes its buffers.
    std::thread::sleep(PERIOD * 4);
    let mut out = vec![0.0f32; BLOCK]; // the device buffer, allocated before the callbacks
    let (mut underruns, mut checksum) = (0usize, 0.0f64);
    let mut next = Instant::now();
    for _ in 0..periods {
        // --- the real-time callback: no blocking, no allocation, no syscall ---
        match rx.read_chunk(BLOCK) {
            Ok(chunk) => {
                // A copy (safe whatever the host does to the segment; `as_slices` reads in
                // place but is `unsafe`: it is sound only if the host cooperates).
                chunk.copy_to_slice(&mut out);
                chunk.commit_all();
                rx.notify(BLOCK);
            }
            Err(_) => {
                underruns += 1;
                out.fill(0.0);
            }
        }
        checksum += f64::from(out[0]);
        // --- end of callback ---
        next += PERIOD;
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    host.wait()?;
    println!(
        "engine: {periods} callbacks of {FRAMES} frames, {underruns} underruns (checksum {checksum:.1})"
    );
    Ok(())
}

fn host(name: &str, periods: usize) -> Result<(), Box<dyn std::error::Error>> {
    let ch = shmlane::spsc::<f32>(name)
        .wait(WaitStrategy::Park)
        .unlink(UnlinkPolicy::LastDetach)
        .open()?;
    let mut tx = ch.producer()?;
    let mut phase = 0.0f32;
    let mut block = vec![0.0f32; BLOCK];
    for _ in 0..periods {
        // Wait (off the real-time thread) until a whole block fits, then render and copy it in.
        loop {
            if tx.free() >= BLOCK {
                break;
            }
            std::thread::sleep(Duration::from_micros(500));
        }
        for s in &mut block {
            *s = phase.sin() * 0.25;
            phase += 0.0287;
        }
        let mut chunk = tx.write_chunk(BLOCK)?;
        chunk.copy_from_slice(&block);
        chunk.commit_all();
        tx.notify(BLOCK);
    }
    Ok(())
}
