//! Instructions per message of the channel path against the rings under it, for
//! `valgrind --tool=callgrind` (immune to the machine's noise): one process, one thread,
//! bursts of `BURST` sends then `BURST` receives of `[u8; N]` messages.
//!
//! `cargo build --release -p shmlane-benches --example chan_cost`, then
//! `valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/examples/chan_cost PATH SIZE MESSAGES`
//! twice with two message counts: the difference of the instruction totals over the
//! difference of the counts is the cost per message (send and receive), start-up excluded.
//! PATH: `stamped` (the raw `shmlane-spsc-spin` row's ring), `spsc` (the shared-tail ring
//! the SPSC channel uses), `chan` (the SPSC channel's `try_send` / `try_recv`), `naive` (the
//! `naive-shm-ring` row's protocol), `chan-empty` / `spsc-empty` (polls of an empty ring).
//! BURST: 1 (a ping-pong's pattern) or 32 (streaming's).

use std::{
    hint::black_box,
    sync::atomic::{AtomicU64, Ordering},
};

use shmlane_ring::{SpscRing, StampedRing};
use shmlane_segment::Segment;

fn region() -> (Segment, *mut u8, usize) {
    let seg = Segment::anonymous()
        .size(8 << 20)
        .populate(true)
        .create_with(|s| {
            s.region("ring", 6 << 20, 1)?;
            Ok::<_, shmlane_segment::RegionError>(())
        })
        .expect("segment");
    let r = seg.find_region("ring").expect("region");
    let (p, l) = (r.as_ptr(), r.len());
    (seg, p, l)
}

fn run<const N: usize>(path: &str, n: u64, burst: u64)
where
    [u8; N]: bytemuck::Pod,
{
    let msg = [0x5au8; N];
    let mut out = [0u8; N];
    let (_seg, p, l) = region();
    let rounds = n / burst;
    match path {
        "stamped" => {
            // SAFETY: a fresh private region; one producer and one consumer, this thread.
            let (mut tx, mut rx) = unsafe {
                StampedRing::<[u8; N]>::init(p, l, 4096, 0).expect("init");
                (
                    StampedRing::<[u8; N]>::producer(p, l, 1, &|_| true).expect("producer"),
                    StampedRing::<[u8; N]>::consumer(p, l, 2, &|_| true).expect("consumer"),
                )
            };
            for _ in 0..rounds {
                for _ in 0..burst {
                    tx.push_ref(black_box(&msg)).expect("room");
                }
                for _ in 0..burst {
                    rx.pop_into(&mut out).expect("message");
                    black_box(&out);
                }
            }
        }
        "spsc" => {
            // SAFETY: as above.
            let (mut tx, mut rx) = unsafe {
                SpscRing::<[u8; N]>::init(p, l, 4096, 0).expect("init");
                (
                    SpscRing::<[u8; N]>::producer(p, l, 1, &|_| true).expect("producer"),
                    SpscRing::<[u8; N]>::consumer(p, l, 2, &|_| true).expect("consumer"),
                )
            };
            for _ in 0..rounds {
                for _ in 0..burst {
                    tx.push(black_box(msg)).expect("room");
                }
                for _ in 0..burst {
                    out = rx.pop().expect("message");
                    black_box(&out);
                }
            }
        }
        "chan" => {
            let name = format!("chan-cost-{}", std::process::id());
            let ch = shmlane::spsc::<[u8; N]>(&name)
                .capacity(4096)
                .wait(shmlane::WaitStrategy::BusySpin)
                .unlink(shmlane::UnlinkPolicy::LastDetach)
                .create()
                .expect("channel");
            let (mut tx, mut rx) = (
                ch.producer().expect("producer"),
                ch.consumer().expect("consumer"),
            );
            for _ in 0..rounds {
                for _ in 0..burst {
                    tx.try_send(black_box(msg)).expect("room");
                }
                for _ in 0..burst {
                    out = rx.try_recv().expect("message");
                    black_box(&out);
                }
            }
        }
        "naive" => {
            let head = AtomicU64::new(0);
            let tail = AtomicU64::new(0);
            let cap = 4096u64;
            let (mut t, mut h) = (0u64, 0u64);
            for _ in 0..rounds {
                for _ in 0..burst {
                    while t - head.load(Ordering::Acquire) >= cap {}
                    // SAFETY: slot `t % cap` of `N` bytes inside the region.
                    unsafe {
                        core::ptr::copy_nonoverlapping(
                            black_box(&msg).as_ptr(),
                            p.add((t % cap) as usize * N),
                            N,
                        );
                    }
                    t += 1;
                    tail.store(t, Ordering::Release);
                }
                for _ in 0..burst {
                    while tail.load(Ordering::Acquire) == h {}
                    // SAFETY: as above.
                    unsafe {
                        core::ptr::copy_nonoverlapping(
                            p.add((h % cap) as usize * N),
                            out.as_mut_ptr(),
                            N,
                        );
                    }
                    black_box(&out);
                    h += 1;
                    head.store(h, Ordering::Release);
                }
            }
        }
        other => panic!("unknown path {other}: stamped, spsc, chan or naive"),
    }
}

/// Looks at an empty ring (a spinning receiver's poll): the channel's `try_recv` (ring pop,
/// then the disconnection test) against the ring's `pop`.
fn run_empty<const N: usize>(path: &str, n: u64)
where
    [u8; N]: bytemuck::Pod,
{
    let (_seg, p, l) = region();
    match path {
        "chan-empty" => {
            let name = format!("chan-cost-{}", std::process::id());
            let ch = shmlane::spsc::<[u8; N]>(&name)
                .capacity(4096)
                .unlink(shmlane::UnlinkPolicy::LastDetach)
                .create()
                .expect("channel");
            let (_tx, mut rx) = (
                ch.producer().expect("producer"),
                ch.consumer().expect("consumer"),
            );
            for _ in 0..n {
                black_box(rx.try_recv().is_err());
            }
        }
        "spsc-empty" => {
            // SAFETY: a fresh private region; one producer and one consumer, this thread.
            let (_tx, mut rx) = unsafe {
                SpscRing::<[u8; N]>::init(p, l, 4096, 0).expect("init");
                (
                    SpscRing::<[u8; N]>::producer(p, l, 1, &|_| true).expect("producer"),
                    SpscRing::<[u8; N]>::consumer(p, l, 2, &|_| true).expect("consumer"),
                )
            };
            for _ in 0..n {
                black_box(rx.pop().is_err());
            }
        }
        other => panic!("unknown path {other}"),
    }
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let path = a.get(1).map_or("chan", String::as_str);
    let size: usize = a.get(2).and_then(|s| s.parse().ok()).unwrap_or(8);
    let n: u64 = a.get(3).and_then(|s| s.parse().ok()).unwrap_or(1_000_000);
    let burst: u64 = a.get(4).and_then(|s| s.parse().ok()).unwrap_or(1);
    if path.ends_with("-empty") {
        match size {
            8 => run_empty::<8>(path, n),
            _ => run_empty::<64>(path, n),
        }
        return;
    }
    match size {
        8 => run::<8>(path, n, burst),
        64 => run::<64>(path, n, burst),
        other => panic!("size {other}: 8 or 64"),
    }
}
