//! The in-process workloads, shared by the criterion bench (`benches/rings.rs`) and the
//! interleaved A/B comparison (`benches/ab.rs`): shmlane's rings against rtrb and crossbeam's
//! `ArrayQueue`, 8-byte items, capacity 4096, the two sides pinned to cores 0 and 1.

use std::{
    hint::black_box,
    sync::{
        Barrier,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use crossbeam_utils::CachePadded;
use shmlane_ring::HeapRegion;

use crate::pin;

const CAP: usize = 4096;
const BATCH: usize = 64;

/// One workload: its group (what is compared), the implementation, and the runner.
#[derive(Debug)]
pub struct Case {
    /// What is compared, e.g. `spsc_u64`.
    pub group: &'static str,
    /// Whose queue, e.g. `shmlane` or `rtrb`.
    pub name: &'static str,
    /// Runs `n` items (or round trips) and returns the elapsed time.
    pub run: fn(u64) -> Duration,
    /// Whether `run` measures round trips (latency) rather than items (throughput).
    pub round_trip: bool,
}

/// Every workload, grouped; within a group the first case is shmlane's.
pub const CASES: &[Case] = &[
    Case {
        group: "spsc_u64",
        name: "shmlane",
        run: spsc_u64_shmlane,
        round_trip: false,
    },
    Case {
        group: "spsc_u64",
        name: "rtrb",
        run: spsc_u64_rtrb,
        round_trip: false,
    },
    Case {
        group: "spsc_u64",
        name: "shmlane_stamped",
        run: spsc_u64_stamped,
        round_trip: false,
    },
    Case {
        group: "spsc_u64_nopause",
        name: "shmlane",
        run: spsc_u64_nopause_shmlane,
        round_trip: false,
    },
    Case {
        group: "spsc_u64_nopause",
        name: "rtrb",
        run: spsc_u64_nopause_rtrb,
        round_trip: false,
    },
    Case {
        group: "spsc_u64_chunk64",
        name: "shmlane",
        run: spsc_u64_chunk64_shmlane,
        round_trip: false,
    },
    Case {
        group: "spsc_u64_chunk64",
        name: "rtrb",
        run: spsc_u64_chunk64_rtrb,
        round_trip: false,
    },
    Case {
        group: "mpmc_u64_1p1c",
        name: "shmlane",
        run: mpmc_u64_1p1c_shmlane,
        round_trip: false,
    },
    Case {
        group: "mpmc_u64_1p1c",
        name: "crossbeam_ArrayQueue",
        run: mpmc_u64_1p1c_crossbeam_arrayqueue,
        round_trip: false,
    },
    Case {
        group: "mpmc_u64_2p2c",
        name: "shmlane",
        run: mpmc_u64_2p2c_shmlane,
        round_trip: false,
    },
    Case {
        group: "mpmc_u64_2p2c",
        name: "crossbeam_ArrayQueue",
        run: mpmc_u64_2p2c_crossbeam_arrayqueue,
        round_trip: false,
    },
    Case {
        group: "pingpong_rtt_u64",
        name: "raw_cache_line",
        run: pingpong_rtt_u64_raw_cache_line,
        round_trip: true,
    },
    Case {
        group: "pingpong_rtt_u64",
        name: "shmlane_spsc",
        run: pingpong_rtt_u64_shmlane_spsc,
        round_trip: true,
    },
    Case {
        group: "pingpong_rtt_u64",
        name: "shmlane_stamped",
        run: pingpong_rtt_u64_shmlane_stamped,
        round_trip: true,
    },
    Case {
        group: "pingpong_rtt_u64",
        name: "shmlane_mpmc",
        run: pingpong_rtt_u64_shmlane_mpmc,
        round_trip: true,
    },
    Case {
        group: "pingpong_rtt_u64",
        name: "rtrb",
        run: pingpong_rtt_u64_rtrb,
        round_trip: true,
    },
];

/// Moves `n` items from a producer (this thread, core 0) to a consumer (core 1); times from
/// the moment both are ready until the consumer has the last item.
fn two_threads<P, C>(n: u64, push: P, pop: C) -> Duration
where
    P: FnMut(u64) -> u64 + Send,
    C: FnMut(&mut u64) -> u64 + Send,
{
    two_threads_paced(n, true, push, pop)
}

/// As [`two_threads`]; `pause` says whether a side that found the ring empty or full executes
/// a spin-loop hint before it looks again (what busy-polling code does) or retries at once.
fn two_threads_paced<P, C>(n: u64, pause: bool, mut push: P, mut pop: C) -> Duration
where
    P: FnMut(u64) -> u64 + Send,
    C: FnMut(&mut u64) -> u64 + Send,
{
    let ready = Barrier::new(2);
    std::thread::scope(|s| {
        let ready = &ready;
        // `move`: the consumer owns its handle, loop bound and flag, as a real consumer
        // thread does. Borrowed, they were read on every call through pointers into the
        // producer's stack frame, and the MPMC 1p1c case ran at a steady ~26 M items/s
        // where the same ring ran 45-65 in a harness whose consumer owned them (Intel host,
        // 2026-11-23). Which effect (sharing with the producer's frame, code generation) was
        // not pinned down; owning is what a real consumer does, so the harness does it.
        let consumer = s.spawn(move || {
            pin(1);
            ready.wait();
            let mut got = 0;
            let mut sum = 0u64;
            while got < n {
                let k = pop(&mut sum);
                if k == 0 && pause {
                    // What a busy-polling user writes: pause, then look again.
                    core::hint::spin_loop();
                }
                got += k;
            }
            black_box(sum);
            Instant::now()
        });
        pin(0);
        ready.wait();
        let t0 = Instant::now();
        let mut sent = 0;
        while sent < n {
            let k = push(sent);
            if k == 0 && pause {
                core::hint::spin_loop();
            }
            sent += k;
        }
        consumer.join().unwrap() - t0
    })
}

/// Two producers (core 0) and two consumers (core 1) move `n` items in total.
fn four_threads<MP, P, MC, C>(n: u64, make_push: MP, make_pop: MC) -> Duration
where
    MP: Fn() -> P,
    P: FnMut(u64) -> u64 + Send,
    MC: Fn() -> C,
    C: FnMut() -> Option<u64> + Send,
{
    let ready = Barrier::new(5);
    let received = AtomicU64::new(0);
    std::thread::scope(|s| {
        let half = n / 2;
        let mut handles = Vec::new();
        for k in 0..2u64 {
            let mut push = make_push();
            let (ready, count) = (&ready, if k == 0 { half } else { n - half });
            handles.push(s.spawn(move || {
                pin(0);
                ready.wait();
                let mut sent = 0;
                while sent < count {
                    let ok = push(sent);
                    if ok == 0 {
                        std::thread::yield_now();
                    }
                    sent += ok;
                }
            }));
        }
        for _ in 0..2 {
            let mut pop = make_pop();
            let (ready, received) = (&ready, &received);
            handles.push(s.spawn(move || {
                pin(1);
                ready.wait();
                let mut sum = 0u64;
                while received.load(Ordering::Relaxed) < n {
                    match pop() {
                        Some(v) => {
                            sum = sum.wrapping_add(v);
                            received.fetch_add(1, Ordering::Relaxed);
                        }
                        None => std::thread::yield_now(),
                    }
                }
                black_box(sum);
            }));
        }
        ready.wait();
        let t0 = Instant::now();
        for h in handles {
            h.join().unwrap();
        }
        t0.elapsed()
    })
}

/// Round trips: this thread sends `i`, an echo thread (core 1) sends it back; `n` round trips.
fn ping_pong<S, R>(n: u64, there: (S, R), back: (S, R)) -> Duration
where
    S: FnMut(u64) -> bool + Send,
    R: FnMut() -> Option<u64> + Send,
{
    let ready = Barrier::new(2);
    let ((mut send, mut recv), (mut echo_send, mut echo_recv)) = (there, back);
    std::thread::scope(|s| {
        let ready = &ready;
        // `move`, as in `two_threads_paced`.
        s.spawn(move || {
            pin(1);
            ready.wait();
            for _ in 0..n {
                let v = loop {
                    if let Some(v) = echo_recv() {
                        break v;
                    }
                    core::hint::spin_loop();
                };
                while !echo_send(v) {}
            }
        });
        pin(0);
        ready.wait();
        let t0 = Instant::now();
        for i in 0..n {
            while !send(i) {}
            let v = loop {
                if let Some(v) = recv() {
                    break v;
                }
                core::hint::spin_loop();
            };
            assert_eq!(v, i);
        }
        t0.elapsed()
    })
}

/// `spsc_u64` / `shmlane`: `n` items (or round trips); the elapsed time.
pub fn spsc_u64_shmlane(n: u64) -> Duration {
    spsc_single_shmlane(n, true)
}

/// `spsc_u64` / `rtrb`: `n` items (or round trips); the elapsed time.
pub fn spsc_u64_rtrb(n: u64) -> Duration {
    spsc_single_rtrb(n, true)
}

/// `spsc_u64_chunk64` / `shmlane`: `n` items (or round trips); the elapsed time.
pub fn spsc_u64_chunk64_shmlane(n: u64) -> Duration {
    let (mut p, mut c) = HeapRegion::spsc::<u64>(CAP as u64);
    two_threads(
        n,
        move |i| {
            let k = (n - i).min(BATCH as u64).min(p.free() as u64) as usize;
            match p.write_chunk(k) {
                Ok(mut w) => {
                    // SAFETY: a heap ring; no other process writes its slots.
                    let (a, b) = unsafe { w.as_mut_slices() };
                    // One plain loop per slice, as rtrb's fill_from_iter does.
                    let first = a.len() as u64;
                    for (j, x) in a.iter_mut().enumerate() {
                        *x = i + j as u64;
                    }
                    for (j, x) in b.iter_mut().enumerate() {
                        *x = i + first + j as u64;
                    }
                    w.commit_all();
                    k as u64
                }
                Err(_) => 0,
            }
        },
        move |sum| {
            let k = c.len().min(BATCH);
            match c.read_chunk(k) {
                Ok(r) => {
                    // SAFETY: a heap ring; no other process writes its slots.
                    let (a, b) = unsafe { r.as_slices() };
                    for v in a.iter().chain(b) {
                        *sum = sum.wrapping_add(*v);
                    }
                    r.commit_all();
                    k as u64
                }
                Err(_) => 0,
            }
        },
    )
}

/// `spsc_u64_chunk64` / `rtrb`: `n` items (or round trips); the elapsed time.
pub fn spsc_u64_chunk64_rtrb(n: u64) -> Duration {
    let (p, c) = rtrb::RingBuffer::<u64>::new(CAP);
    // Each handle on its own cache lines, as shmlane's are: the handles are written on every
    // push and pop, and two of them side by side on one line would slow both sides.
    let (mut p, mut c) = (CachePadded::new(p), CachePadded::new(c));
    two_threads(
        n,
        move |i| {
            let k = (n - i).min(BATCH as u64).min(p.slots() as u64) as usize;
            match p.write_chunk_uninit(k) {
                Ok(w) => w.fill_from_iter(i..) as u64,
                Err(_) => 0,
            }
        },
        move |sum| {
            let k = c.slots().min(BATCH);
            match c.read_chunk(k) {
                Ok(r) => {
                    let (a, b) = r.as_slices();
                    for v in a.iter().chain(b) {
                        *sum = sum.wrapping_add(*v);
                    }
                    r.commit_all();
                    k as u64
                }
                Err(_) => 0,
            }
        },
    )
}

/// `mpmc_u64_1p1c` / `shmlane`: `n` items (or round trips); the elapsed time.
pub fn mpmc_u64_1p1c_shmlane(n: u64) -> Duration {
    let (tx, rx) = HeapRegion::mpmc::<u64>(CAP as u64);
    two_threads(
        n,
        move |i| u64::from(tx.push(i).is_ok()),
        move |sum| match rx.pop() {
            Ok(v) => {
                *sum = sum.wrapping_add(v);
                1
            }
            Err(_) => 0,
        },
    )
}

/// `mpmc_u64_1p1c` / `crossbeam_ArrayQueue`: `n` items (or round trips); the elapsed time.
pub fn mpmc_u64_1p1c_crossbeam_arrayqueue(n: u64) -> Duration {
    // Shared through an `Arc`, each thread owning a clone, as `ArrayQueue` is used.
    let q = std::sync::Arc::new(crossbeam_queue::ArrayQueue::<u64>::new(CAP));
    let q2 = q.clone();
    two_threads(
        n,
        move |i| u64::from(q.push(i).is_ok()),
        move |sum| match q2.pop() {
            Some(v) => {
                *sum = sum.wrapping_add(v);
                1
            }
            None => 0,
        },
    )
}

/// `mpmc_u64_2p2c` / `shmlane`: `n` items (or round trips); the elapsed time.
pub fn mpmc_u64_2p2c_shmlane(n: u64) -> Duration {
    let (tx, rx) = HeapRegion::mpmc::<u64>(CAP as u64);
    four_threads(
        n,
        || {
            let tx = tx.clone();
            move |i| u64::from(tx.push(i).is_ok())
        },
        || {
            let rx = rx.clone();
            move || rx.pop().ok()
        },
    )
}

/// `mpmc_u64_2p2c` / `crossbeam_ArrayQueue`: `n` items (or round trips); the elapsed time.
pub fn mpmc_u64_2p2c_crossbeam_arrayqueue(n: u64) -> Duration {
    let q = std::sync::Arc::new(crossbeam_queue::ArrayQueue::<u64>::new(CAP));
    four_threads(
        n,
        || {
            let q = q.clone();
            move |i| u64::from(q.push(i).is_ok())
        },
        || {
            let q = q.clone();
            move || q.pop()
        },
    )
}

/// `pingpong_rtt_u64` / `raw_cache_line`: `n` items (or round trips); the elapsed time.
pub fn pingpong_rtt_u64_raw_cache_line(n: u64) -> Duration {
    let lines = [
        crossbeam_utils::CachePadded::new(AtomicU64::new(u64::MAX)),
        crossbeam_utils::CachePadded::new(AtomicU64::new(u64::MAX)),
    ];
    let (a, z) = (&lines[0], &lines[1]);
    let mut last_a = u64::MAX;
    let mut last_z = u64::MAX;
    ping_pong(
        n,
        (
            Box::new(|v| {
                a.store(v, Ordering::Release);
                true
            }) as Box<dyn FnMut(u64) -> bool + Send>,
            Box::new(move || {
                let v = z.load(Ordering::Acquire);
                (v != last_z).then(|| {
                    last_z = v;
                    v
                })
            }) as Box<dyn FnMut() -> Option<u64> + Send>,
        ),
        (
            Box::new(|v| {
                z.store(v, Ordering::Release);
                true
            }),
            Box::new(move || {
                let v = a.load(Ordering::Acquire);
                (v != last_a).then(|| {
                    last_a = v;
                    v
                })
            }),
        ),
    )
}

/// `pingpong_rtt_u64` / `shmlane_spsc`: `n` items (or round trips); the elapsed time.
pub fn pingpong_rtt_u64_shmlane_spsc(n: u64) -> Duration {
    let (mut p1, mut c1) = HeapRegion::spsc::<u64>(CAP as u64);
    let (mut p2, mut c2) = HeapRegion::spsc::<u64>(CAP as u64);
    ping_pong(
        n,
        (
            Box::new(move |v| p1.push(v).is_ok()) as Box<dyn FnMut(u64) -> bool + Send>,
            Box::new(move || c2.pop().ok()) as Box<dyn FnMut() -> Option<u64> + Send>,
        ),
        (
            Box::new(move |v| p2.push(v).is_ok()),
            Box::new(move || c1.pop().ok()),
        ),
    )
}

/// `pingpong_rtt_u64` / `shmlane_mpmc`: `n` items (or round trips); the elapsed time.
pub fn pingpong_rtt_u64_shmlane_mpmc(n: u64) -> Duration {
    let (t1, r1) = HeapRegion::mpmc::<u64>(CAP as u64);
    let (t2, r2) = HeapRegion::mpmc::<u64>(CAP as u64);
    ping_pong(
        n,
        (
            Box::new(move |v| t1.push(v).is_ok()) as Box<dyn FnMut(u64) -> bool + Send>,
            Box::new(move || r2.pop().ok()) as Box<dyn FnMut() -> Option<u64> + Send>,
        ),
        (
            Box::new(move |v| t2.push(v).is_ok()),
            Box::new(move || r1.pop().ok()),
        ),
    )
}

/// `pingpong_rtt_u64` / `shmlane_stamped`: round trips through two stamped SPSC rings.
pub fn pingpong_rtt_u64_shmlane_stamped(n: u64) -> Duration {
    let (mut p1, mut c1) = HeapRegion::stamped::<u64>(CAP as u64);
    let (mut p2, mut c2) = HeapRegion::stamped::<u64>(CAP as u64);
    ping_pong(
        n,
        (
            Box::new(move |v| p1.push(v).is_ok()) as Box<dyn FnMut(u64) -> bool + Send>,
            Box::new(move || c2.pop().ok()) as Box<dyn FnMut() -> Option<u64> + Send>,
        ),
        (
            Box::new(move |v| p2.push(v).is_ok()),
            Box::new(move || c1.pop().ok()),
        ),
    )
}

/// `pingpong_rtt_u64` / `rtrb`: `n` items (or round trips); the elapsed time.
pub fn pingpong_rtt_u64_rtrb(n: u64) -> Duration {
    let (p1, c1) = rtrb::RingBuffer::<u64>::new(CAP);
    let (p2, c2) = rtrb::RingBuffer::<u64>::new(CAP);
    // As in `spsc_u64_chunk64_rtrb`: no false sharing between the handles.
    let (mut p1, mut c1) = (CachePadded::new(p1), CachePadded::new(c1));
    let (mut p2, mut c2) = (CachePadded::new(p2), CachePadded::new(c2));
    ping_pong(
        n,
        (
            Box::new(move |v| p1.push(v).is_ok()) as Box<dyn FnMut(u64) -> bool + Send>,
            Box::new(move || c2.pop().ok()) as Box<dyn FnMut() -> Option<u64> + Send>,
        ),
        (
            Box::new(move |v| p2.push(v).is_ok()),
            Box::new(move || c1.pop().ok()),
        ),
    )
}

/// `spsc_u64_nopause` / `shmlane`: as `spsc_u64`, but both sides retry at once, without a
/// spin-loop hint (the regime where the two sides hammer the same lines hardest).
pub fn spsc_u64_nopause_shmlane(n: u64) -> Duration {
    spsc_single_shmlane(n, false)
}

/// `spsc_u64_nopause` / `rtrb`.
pub fn spsc_u64_nopause_rtrb(n: u64) -> Duration {
    spsc_single_rtrb(n, false)
}

/// One push / one pop per call through shmlane's SPSC ring; `pause` as in `two_threads_paced`.
fn spsc_single_shmlane(n: u64, pause: bool) -> Duration {
    let (mut p, mut c) = HeapRegion::spsc::<u64>(CAP as u64);
    two_threads_paced(
        n,
        pause,
        move |i| u64::from(p.push(i).is_ok()),
        move |sum| match c.pop() {
            Ok(v) => {
                *sum = sum.wrapping_add(v);
                1
            }
            Err(_) => 0,
        },
    )
}

/// `spsc_u64` / `shmlane_stamped`: the stamped SPSC ring, one push / one pop per call.
pub fn spsc_u64_stamped(n: u64) -> Duration {
    let (mut p, mut c) = HeapRegion::stamped::<u64>(CAP as u64);
    two_threads_paced(
        n,
        true,
        move |i| u64::from(p.push(i).is_ok()),
        move |sum| match c.pop() {
            Ok(v) => {
                *sum = sum.wrapping_add(v);
                1
            }
            Err(_) => 0,
        },
    )
}

/// As [`spsc_single_shmlane`], through rtrb.
fn spsc_single_rtrb(n: u64, pause: bool) -> Duration {
    let (p, c) = rtrb::RingBuffer::<u64>::new(CAP);
    // Each handle on its own cache lines, as shmlane's are: the handles are written on every
    // push and pop, and two of them side by side on one line would slow both sides.
    let (mut p, mut c) = (CachePadded::new(p), CachePadded::new(c));
    two_threads_paced(
        n,
        pause,
        move |i| u64::from(p.push(i).is_ok()),
        move |sum| match c.pop() {
            Ok(v) => {
                *sum = sum.wrapping_add(v);
                1
            }
            Err(_) => 0,
        },
    )
}
