//! Hostile-peer stress tests, one per ring kind: a thread writes arbitrary values (random
//! words, 0, `u64::MAX`, values a capacity or one away from the current one, capacities) into
//! every shared word a peer could use to mislead us (the header: identity, geometry,
//! positions, role claims; slot stamps and lengths), flipping some back and forth quickly,
//! while a producer and a consumer attach again and again and run every public operation.
//!
//! Allowed: errors of every kind, wrong or missing data. Not allowed: a crash, a panic, an
//! access outside the region (the region is allocated at exactly the ring's size, so
//! AddressSanitizer, `.ci/asan`, reports any access past it), a chunk, record or message
//! longer than the ring or buffer can hold, or a hang: every loop is bounded and the test
//! fails if the workers do not finish within `DEADLINE`.
//!
//! The hostile thread lives in this process, so its writes to words the ring reads with plain
//! copies (record payload words) are data races in Rust's model; that is what a hostile process
//! does, and this test checks bounds (AddressSanitizer), not races (do not run it under
//! ThreadSanitizer). Words that are atomics in the ring are written with atomic stores.
//!
//! Also here: finding 5 of issue 15 for every ring with a `T` (a hostile capacity whose size
//! overflows is refused), in debug and release builds.

// Word pointers are made from the 128-byte aligned region plus multiples of 8.
#![allow(clippy::cast_ptr_alignment)]

use std::{
    sync::{
        Arc, OnceLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc,
    },
    thread,
    time::{Duration, Instant},
};

use shmlane_ring::{
    AttachError, BroadcastRing, ChunkError, HeapRegion, MpmcRing, RecordRing, SpscRing,
    StampedRing, broadcast::RecvError,
};

/// How long each worker attaches and operates (`HOSTILE_MS` overrides, for longer runs).
fn run_time() -> Duration {
    Duration::from_millis(
        std::env::var("HOSTILE_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1500),
    )
}
/// At most this many attach rounds per worker, whatever the time.
const MAX_ROUNDS: usize = 1 << 20;

/// Whether a worker goes on with another attach round: until `run_time` has passed since the
/// hostile thread started writing (bounded by `MAX_ROUNDS`).
#[derive(Clone)]
struct Budget {
    start: Arc<OnceLock<Instant>>,
}

impl Budget {
    fn rounds(&self) -> impl Iterator<Item = usize> + use<> {
        // Wait (bounded) for the hostile thread's first write, so the workers run under it.
        let t0 = Instant::now();
        while self.start.get().is_none() && t0.elapsed() < Duration::from_secs(5) {
            thread::yield_now();
        }
        let start = *self.start.get().unwrap_or(&t0);
        (0..MAX_ROUNDS).take_while(move |_| start.elapsed() < run_time())
    }
}
/// Operations per attach.
const OPS: usize = 24;
/// The workers must be done by then (bounded loops; this is the hang check).
const DEADLINE: Duration = Duration::from_secs(120);
/// `is_alive` for role claims: every holder counts as dead, so a claim word the hostile
/// thread wrote is taken over instead of blocking the test.
fn dead(_: u64) -> bool {
    false
}

/// xorshift64: deterministic per seed, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// A hostile value for a word now holding `cur`, in a ring of `cap` slots (or bytes).
fn hostile_value(rng: &mut Rng, cur: u64, cap: u64) -> u64 {
    match rng.below(12) {
        0 | 1 => rng.next(),
        2 => 0,
        3 => u64::MAX,
        4 => cur.wrapping_add(cap),
        5 => cur.wrapping_add(cap + 1),
        6 => cur.wrapping_sub(1),
        7 => cur.wrapping_add(1),
        8 => cur.wrapping_sub(cap + 1),
        9 => cap.wrapping_add(rng.next() % 3).wrapping_sub(1),
        10 => 1 << 40,
        _ => cur ^ (1 << rng.below(64)),
    }
}

/// A broken promise (a count above the capacity, a chunk longer than the ring) is recorded
/// and the worker goes on, so that what it would lead to still happens where AddressSanitizer
/// sees it; the worker fails at its end.
macro_rules! check {
    ($v:expr, $cond:expr) => {
        if !$cond {
            $v.fail(stringify!($cond));
        }
    };
}

#[derive(Default)]
struct Violations {
    count: u64,
    first: Option<&'static str>,
}

impl Violations {
    fn fail(&mut self, what: &'static str) {
        self.count += 1;
        self.first.get_or_insert(what);
    }
    fn finish(&self) {
        assert!(
            self.count == 0,
            "{} broken promises under hostile writes, the first: {}",
            self.count,
            self.first.unwrap_or("")
        );
    }
}

/// The words the hostile thread writes: byte offsets (8-aligned) into the region, split into
/// identity words (restored at once after each write, so that attaches mostly get through
/// and the operations behind them run) and live words (positions, claims, stamps, lengths).
struct Targets {
    identity: Vec<usize>,
    live: Vec<usize>,
}

/// Writes hostile values into `targets` of the region until `stop`; returns the writes made.
fn scribble(
    region: &HeapRegion,
    t: &Targets,
    cap: u64,
    seed: u64,
    stop: &AtomicBool,
    started: &OnceLock<Instant>,
) -> u64 {
    let mut rng = Rng(seed | 1);
    let word = |off: usize| {
        assert!(off % 8 == 0 && off + 8 <= region.len());
        // SAFETY: in bounds and 8-aligned (the region is 128-aligned); every word written
        // here is an atomic in the ring or a payload word (see the module docs), and the
        // region outlives this call.
        unsafe { &*region.as_ptr().add(off).cast::<AtomicU64>() }
    };
    // The words as `init` left them: now and then the hostile thread writes them all back,
    // a consistent (if stale) state from which attaches get through again.
    let snapshot: Vec<u64> = t
        .live
        .iter()
        .map(|&o| word(o).load(Ordering::Relaxed))
        .collect();
    let mut writes = 0u64;
    while !stop.load(Ordering::Relaxed) {
        if rng.below(1 << 14) == 0 {
            for (&o, &v) in t.live.iter().zip(&snapshot) {
                word(o).store(v, Ordering::Relaxed);
            }
            writes += t.live.len() as u64;
        } else if !t.identity.is_empty() && rng.below(8) == 0 {
            let w = word(t.identity[rng.below(t.identity.len())]);
            let orig = w.load(Ordering::Relaxed);
            w.store(hostile_value(&mut rng, orig, cap), Ordering::Relaxed);
            for _ in 0..rng.below(64) {
                std::hint::spin_loop();
            }
            w.store(orig, Ordering::Relaxed);
            writes += 1;
        } else if rng.below(4) == 0 {
            // Flip one live word between a hostile value and its own, quickly: the attack on
            // a value re-read after its check (finding 4).
            let w = word(t.live[rng.below(t.live.len())]);
            let orig = w.load(Ordering::Relaxed);
            let bad = hostile_value(&mut rng, orig, cap);
            for _ in 0..64 {
                w.store(bad, Ordering::Relaxed);
                w.store(orig, Ordering::Relaxed);
            }
            writes += 128;
        } else {
            let w = word(t.live[rng.below(t.live.len())]);
            let cur = w.load(Ordering::Relaxed);
            w.store(hostile_value(&mut rng, cur, cap), Ordering::Relaxed);
            writes += 1;
        }
        let _ = started.set(Instant::now());
        if rng.below(1024) == 0 {
            thread::yield_now();
        }
    }
    writes
}

/// Runs `producer` and `consumer` (each given its worker seed) on their own threads while a
/// hostile thread scribbles; fails on a panic in any of them or if they are not done by
/// `DEADLINE`. Returns the attaches that succeeded (producer, consumer) and the writes made.
fn run(
    name: &str,
    region: &Arc<HeapRegion>,
    targets: Targets,
    cap: u64,
    producer: impl FnOnce(u64, Budget) -> usize + Send + 'static,
    consumer: impl FnOnce(u64, Budget) -> usize + Send + 'static,
) {
    let t0 = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let budget = Budget {
        start: Arc::new(OnceLock::new()),
    };
    let hostile = {
        let (region, stop) = (Arc::clone(region), Arc::clone(&stop));
        let started = Arc::clone(&budget.start);
        thread::spawn(move || {
            scribble(
                &region,
                &targets,
                cap,
                0x9e37_79b9_7f4a_7c15,
                &stop,
                &started,
            )
        })
    };
    let (tx, rx) = mpsc::channel();
    let workers: Vec<_> = [
        (
            Box::new(producer) as Box<dyn FnOnce(u64, Budget) -> usize + Send>,
            "producer",
            0x1234_5678,
        ),
        (Box::new(consumer), "consumer", 0x8765_4321),
    ]
    .into_iter()
    .map(|(f, role, seed)| {
        let (tx, budget) = (tx.clone(), budget.clone());
        thread::spawn(move || {
            let attached = f(seed, budget);
            tx.send((role, attached)).unwrap();
        })
    })
    .collect();
    drop(tx);
    let mut attached = Vec::new();
    for _ in 0..2 {
        let left = DEADLINE.saturating_sub(t0.elapsed());
        match rx.recv_timeout(left) {
            Ok(r) => attached.push(r),
            // A worker panicked (its sender dropped): reported by the join below.
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!("{name}: the workers hung under hostile writes ({DEADLINE:?})")
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().expect("a worker panicked");
    }
    let writes = hostile.join().expect("the hostile thread panicked");
    eprintln!(
        "{name}: {attached:?} attaches got through, {writes} hostile writes, {:?}",
        t0.elapsed()
    );
    // The test must have exercised something: most attaches get through (identity words are
    // restored at once).
    assert!(
        attached.iter().all(|&(_, n)| n > 0),
        "{name}: nothing attached"
    );
}

fn words(from: usize, to: usize, step: usize) -> Vec<usize> {
    (from..to).step_by(step).collect()
}

const IDENTITY: [usize; 4] = [0, 8, 16, 24];

// One test per ring kind, each a producer and a consumer written out in full: long but flat.
#[allow(clippy::too_many_lines)]
#[test]
fn spsc_under_hostile_writes() {
    const CAP: u64 = 8;
    let size = SpscRing::<u64>::required_size(CAP);
    let hdr = size - CAP as usize * 8;
    let region = Arc::new(HeapRegion::new(size));
    // SAFETY: fresh region of the right size, used only through ring handles (and the
    // hostile thread's atomic stores).
    unsafe { SpscRing::<u64>::init(region.as_ptr(), size, CAP, u64::MAX - 100).unwrap() };
    // The header after the identity words: claims, tail, head (and their padding).
    let targets = Targets {
        identity: IDENTITY.to_vec(),
        live: words(32, hdr, 8),
    };
    let (rp, rc) = (Arc::clone(&region), Arc::clone(&region));
    run(
        "spsc",
        &region,
        targets,
        CAP,
        move |seed, budget| {
            let mut rng = Rng(seed);
            let mut v = Violations::default();
            let mut attached = 0;
            let mut src = [0u64; 2 * CAP as usize];
            for _ in budget.rounds() {
                // SAFETY: the region outlives the handle (dropped in this iteration).
                let Ok(mut p) = (unsafe { SpscRing::<u64>::producer(rp.as_ptr(), size, 1, &dead) })
                else {
                    continue;
                };
                attached += 1;
                for _ in 0..OPS {
                    check!(v, p.free() <= p.capacity());
                    check!(v, p.len() <= p.capacity());
                    let n = rng.below(2 * CAP as usize + 1);
                    match rng.below(3) {
                        0 => {
                            let _ = p.push(rng.next());
                        }
                        1 => {
                            if let Ok(k) = p.push_slice(&src[..n]) {
                                check!(v, k <= n.min(p.capacity()));
                            }
                        }
                        _ => match p.write_chunk(n) {
                            Ok(mut w) => {
                                // Copy first, check after: a chunk past the ring shows as an
                                // out-of-bounds write under AddressSanitizer.
                                src.fill(rng.next());
                                w.copy_from_slice(&src[..n]);
                                check!(v, n <= CAP as usize);
                                let k = rng.below(n + 1);
                                w.commit(k);
                            }
                            Err(ChunkError::TooFewSlots(k)) => {
                                check!(v, k < n && k <= CAP as usize);
                            }
                            Err(ChunkError::Corrupt) => {}
                        },
                    }
                }
            }
            v.finish();
            attached
        },
        move |seed, budget| {
            let mut rng = Rng(seed);
            let mut v = Violations::default();
            let mut attached = 0;
            let mut dst = [0u64; 2 * CAP as usize];
            for _ in budget.rounds() {
                // SAFETY: the region outlives the handle (dropped in this iteration).
                let Ok(mut c) = (unsafe { SpscRing::<u64>::consumer(rc.as_ptr(), size, 2, &dead) })
                else {
                    continue;
                };
                attached += 1;
                for _ in 0..OPS {
                    check!(v, c.len() <= c.capacity());
                    let n = rng.below(2 * CAP as usize + 1);
                    match rng.below(4) {
                        0 => {
                            let _ = c.pop();
                        }
                        1 => {
                            let _ = c.peek();
                        }
                        2 => {
                            if let Ok(k) = c.pop_slice(&mut dst[..n]) {
                                check!(v, k <= n.min(c.capacity()));
                            }
                        }
                        _ => match c.read_chunk(n) {
                            Ok(r) => {
                                // Copy first, check after (see the producer).
                                r.copy_to_slice(&mut dst[..n]);
                                check!(v, n <= CAP as usize);
                                let k = rng.below(n + 1);
                                r.commit(k);
                            }
                            Err(ChunkError::TooFewSlots(k)) => {
                                check!(v, k < n && k <= CAP as usize);
                            }
                            Err(ChunkError::Corrupt) => {}
                        },
                    }
                }
            }
            v.finish();
            attached
        },
    );
}

/// Header words after the identity, and the stamp word of every slot (`Slot<u64>` is 16
/// bytes: the stamp, then the value), for the stamped SPSC and MPMC rings.
fn stamped_targets(size: usize, cap: u64) -> Targets {
    let hdr = size - cap as usize * 16;
    let mut live = words(32, hdr, 8);
    live.extend(words(hdr, size, 16));
    Targets {
        identity: IDENTITY.to_vec(),
        live,
    }
}

#[test]
fn stamped_under_hostile_writes() {
    const CAP: u64 = 8;
    let size = StampedRing::<u64>::required_size(CAP);
    let region = Arc::new(HeapRegion::new(size));
    // SAFETY: as in `spsc_under_hostile_writes`.
    unsafe { StampedRing::<u64>::init(region.as_ptr(), size, CAP, u64::MAX - 100).unwrap() };
    let (rp, rc) = (Arc::clone(&region), Arc::clone(&region));
    run(
        "stamped",
        &region,
        stamped_targets(size, CAP),
        CAP,
        move |seed, budget| {
            let mut rng = Rng(seed);
            let mut v = Violations::default();
            let mut attached = 0;
            let src = [7u64; 2 * CAP as usize];
            for _ in budget.rounds() {
                // SAFETY: the region outlives the handle (dropped in this iteration).
                let Ok(mut p) =
                    (unsafe { StampedRing::<u64>::producer(rp.as_ptr(), size, 1, &dead) })
                else {
                    continue;
                };
                attached += 1;
                for _ in 0..OPS {
                    check!(v, p.len() <= p.capacity());
                    let _ = p.is_full();
                    match rng.below(3) {
                        0 => {
                            let _ = p.push(rng.next());
                        }
                        1 => {
                            let _ = p.push_ref(&rng.next());
                        }
                        _ => {
                            let n = rng.below(src.len() + 1);
                            if let Ok(k) = p.push_slice(&src[..n]) {
                                check!(v, k <= n);
                            }
                        }
                    }
                }
            }
            v.finish();
            attached
        },
        move |seed, budget| {
            let mut rng = Rng(seed);
            let mut v = Violations::default();
            let mut attached = 0;
            let mut dst = [0u64; 2 * CAP as usize];
            for _ in budget.rounds() {
                // SAFETY: the region outlives the handle (dropped in this iteration).
                let Ok(mut c) =
                    (unsafe { StampedRing::<u64>::consumer(rc.as_ptr(), size, 2, &dead) })
                else {
                    continue;
                };
                attached += 1;
                for _ in 0..OPS {
                    check!(v, c.len() <= c.capacity());
                    let _ = c.is_empty();
                    match rng.below(4) {
                        0 => {
                            let _ = c.pop();
                        }
                        1 => {
                            let _ = c.peek();
                        }
                        2 => {
                            let _ = c.pop_into(&mut dst[0]);
                        }
                        _ => {
                            let n = rng.below(dst.len() + 1);
                            if let Ok(k) = c.pop_slice(&mut dst[..n]) {
                                check!(v, k <= n);
                            }
                        }
                    }
                }
            }
            v.finish();
            attached
        },
    );
}

#[test]
fn mpmc_under_hostile_writes() {
    const CAP: u64 = 8;
    let size = MpmcRing::<u64>::required_size(CAP);
    let region = Arc::new(HeapRegion::new(size));
    // SAFETY: as in `spsc_under_hostile_writes`.
    unsafe { MpmcRing::<u64>::init(region.as_ptr(), size, CAP, u64::MAX - 100).unwrap() };
    let (rp, rc) = (Arc::clone(&region), Arc::clone(&region));
    run(
        "mpmc",
        &region,
        stamped_targets(size, CAP),
        CAP,
        move |seed, budget| {
            let mut rng = Rng(seed);
            let mut v = Violations::default();
            let mut attached = 0;
            for _ in budget.rounds() {
                // SAFETY: the region outlives the handle (dropped in this iteration).
                let Ok(tx) = (unsafe { MpmcRing::<u64>::sender(rp.as_ptr(), size) }) else {
                    continue;
                };
                attached += 1;
                for _ in 0..OPS {
                    check!(v, tx.len() <= tx.capacity());
                    let _ = tx.is_empty();
                    let _ = tx.push(rng.next());
                }
            }
            v.finish();
            attached
        },
        move |seed, budget| {
            let mut rng = Rng(seed);
            let mut v = Violations::default();
            let mut attached = 0;
            let mut dst = [0u64; 2 * CAP as usize];
            for _ in budget.rounds() {
                // SAFETY: the region outlives the handle (dropped in this iteration).
                let Ok(rx) = (unsafe { MpmcRing::<u64>::receiver(rc.as_ptr(), size) }) else {
                    continue;
                };
                attached += 1;
                for _ in 0..OPS {
                    check!(v, rx.len() <= rx.capacity());
                    if rng.below(2) == 0 {
                        let _ = rx.pop();
                    } else {
                        let n = rng.below(dst.len() + 1);
                        if let Ok(k) = rx.pop_slice(&mut dst[..n]) {
                            check!(v, k <= n);
                        }
                    }
                }
            }
            v.finish();
            attached
        },
    );
}

#[test]
fn broadcast_under_hostile_writes() {
    const CAP: u64 = 8;
    const SLOT: usize = 64;
    let size = BroadcastRing::required_size(CAP, SLOT);
    let hdr = size - CAP as usize * SLOT;
    let region = Arc::new(HeapRegion::new(size));
    // SAFETY: as in `spsc_under_hostile_writes`.
    unsafe { BroadcastRing::init(region.as_ptr(), size, CAP, SLOT, u64::MAX - 100).unwrap() };
    // Every slot word is an atomic (stamps, lengths and message words).
    let mut live = words(32, hdr, 8);
    live.extend(words(hdr, size, 8));
    let targets = Targets {
        identity: IDENTITY.to_vec(),
        live,
    };
    let (rp, rc) = (Arc::clone(&region), Arc::clone(&region));
    run(
        "broadcast",
        &region,
        targets,
        CAP,
        move |seed, budget| {
            let mut rng = Rng(seed);
            let mut v = Violations::default();
            let mut attached = 0;
            let msg = [0x5au8; SLOT];
            for _ in budget.rounds() {
                // SAFETY: the region outlives the handle (dropped in this iteration).
                let Ok(mut tx) = (unsafe { BroadcastRing::producer(rp.as_ptr(), size, 1, &dead) })
                else {
                    continue;
                };
                attached += 1;
                let max = tx.max_message();
                check!(v, max == SLOT - 16);
                for _ in 0..OPS {
                    let n = rng.below(SLOT + 1);
                    check!(v, tx.send(&msg[..n]).is_ok() == (n <= max));
                }
            }
            v.finish();
            attached
        },
        move |seed, budget| {
            let mut rng = Rng(seed);
            let mut v = Violations::default();
            let mut attached = 0;
            let mut buf = [0u8; SLOT];
            for _ in budget.rounds() {
                // SAFETY: the region outlives the handle (dropped in this iteration).
                let Ok(mut rx) = (unsafe { BroadcastRing::reader(rc.as_ptr(), size) }) else {
                    continue;
                };
                attached += 1;
                for _ in 0..OPS {
                    let _ = rx.is_ready();
                    let _ = rx.backlog();
                    let n = rng.below(SLOT + 1);
                    match rx.recv(&mut buf[..n]) {
                        Ok(len) => check!(v, len <= n && len <= SLOT - 16),
                        Err(RecvError::BufferTooSmall { needed }) => check!(v, needed > n),
                        Err(_) => {}
                    }
                }
            }
            v.finish();
            attached
        },
    );
}

#[test]
fn record_under_hostile_writes() {
    const CAP: u64 = 512;
    let size = RecordRing::required_size(CAP);
    let data = size - CAP as usize;
    let region = Arc::new(HeapRegion::new(size));
    // SAFETY: as in `spsc_under_hostile_writes`.
    unsafe { RecordRing::init(region.as_ptr(), size, CAP, u64::MAX - 1023).unwrap() };
    // The header (positions, counters, claim intents) and every word of the data area (record
    // headers can be at any of them; payload words are hit too, see the module docs).
    let mut live = words(32, data, 8);
    live.extend(words(data, size, 8));
    let targets = Targets {
        identity: IDENTITY.to_vec(),
        live,
    };
    let (rp, rc) = (Arc::clone(&region), Arc::clone(&region));
    run(
        "record",
        &region,
        targets,
        CAP,
        move |seed, budget| {
            let mut rng = Rng(seed);
            let mut v = Violations::default();
            let mut attached = 0;
            let payload = [0xa5u8; CAP as usize];
            for _ in budget.rounds() {
                // SAFETY: the region outlives the handle (dropped in this iteration).
                let Ok(mut p) = (unsafe { RecordRing::producer(rp.as_ptr(), size, 1, &|_| false) })
                else {
                    continue;
                };
                attached += 1;
                let max = p.max_record();
                for _ in 0..OPS {
                    let _ = p.has_room(rng.below(max + 1));
                    let n = rng.below(max + 2);
                    match rng.below(3) {
                        0 => {
                            let _ = p.send(&payload[..n]);
                        }
                        1 => {
                            if let Ok(mut claim) = p.claim(n) {
                                check!(v, claim.len() == n);
                                claim.write(0, &payload[..n]);
                                let _ = claim.commit();
                            }
                        }
                        _ => {
                            if let Ok(claim) = p.claim(n) {
                                claim.abort();
                            }
                        }
                    }
                }
            }
            v.finish();
            attached
        },
        move |seed, budget| {
            let mut rng = Rng(seed);
            let mut v = Violations::default();
            let mut attached = 0;
            let mut buf = vec![0u8; CAP as usize];
            for _ in budget.rounds() {
                // SAFETY: the region outlives the handle (dropped in this iteration).
                let Ok(mut c) = (unsafe { RecordRing::consumer(rc.as_ptr(), size, 2, &dead) })
                else {
                    continue;
                };
                attached += 1;
                let max = c.max_record();
                for _ in 0..OPS {
                    let _ = c.len();
                    let _ = c.is_ready();
                    match rng.below(4) {
                        0 | 1 => {
                            if let Ok(r) = c.read() {
                                // Copy first, check after (see the SPSC producer).
                                let n = r.len().min(buf.len());
                                r.copy_to(&mut buf[..n]);
                                check!(v, r.len() <= max);
                            }
                        }
                        2 => {
                            let mut total = 0usize;
                            if let Ok(k) = c.read_batch(4, |r| total += r.len()) {
                                check!(v, k <= 4 && total <= 4 * max);
                            }
                        }
                        _ => {
                            let _ = c.unblock(&|_| false, rng.below(2) == 0);
                            let _ = c.release_fenced(&|_| false);
                        }
                    }
                }
            }
            v.finish();
            attached
        },
    );
}

/// Finding 5: 2^40 elements of 16 MiB (2^64 bytes, 0 after a wrapping multiplication) in a
/// 16 KiB region (room for the largest header, MPMC's with its intent entries, and two `u64`s):
/// refused by every ring with a `T`, in debug and release builds.
#[test]
fn a_capacity_whose_size_overflows_is_refused_by_every_ring() {
    type Big = [u8; 1 << 24];
    assert_eq!(SpscRing::<Big>::required_size(1 << 40), usize::MAX);
    assert_eq!(StampedRing::<Big>::required_size(1 << 40), usize::MAX);
    assert_eq!(MpmcRing::<Big>::required_size(1 << 40), usize::MAX);
    assert_eq!(MpmcRing::<u64>::required_size(u64::MAX), usize::MAX);
    let region = HeapRegion::new(16 * 1024);
    let (ptr, len) = (region.as_ptr(), region.len());
    // The element word (size | align << 32) and the capacity, at offsets 16 and 24 of every
    // ring (docs/design.md), made hostile after a valid init of a small ring of `u64`s.
    let hostile_geometry = || {
        // SAFETY: in bounds, aligned; the words are atomics in the ring.
        let meta = unsafe { &*ptr.cast::<[AtomicU64; 4]>() };
        meta[2].store(size_of::<Big>() as u64 | (1 << 32), Ordering::Relaxed);
        meta[3].store(1 << 40, Ordering::Relaxed);
    };
    let too_small = |r: Result<(), AttachError>| {
        assert!(
            matches!(r, Err(AttachError::RegionTooSmall { .. })),
            "attached to 2^40 elements of 16 MiB in 16 KiB: {r:?}"
        );
    };
    // SAFETY: the region outlives every handle (none is kept).
    unsafe {
        SpscRing::<u64>::init(ptr, len, 2, 0).unwrap();
        hostile_geometry();
        too_small(SpscRing::<Big>::producer(ptr, len, 1, &dead).map(drop));
        too_small(SpscRing::<Big>::consumer(ptr, len, 2, &dead).map(drop));
        StampedRing::<u64>::init(ptr, len, 2, 0).unwrap();
        hostile_geometry();
        too_small(StampedRing::<Big>::producer(ptr, len, 1, &dead).map(drop));
        too_small(StampedRing::<Big>::consumer(ptr, len, 2, &dead).map(drop));
        MpmcRing::<u64>::init(ptr, len, 2, 0).unwrap();
        hostile_geometry();
        too_small(MpmcRing::<Big>::sender(ptr, len).map(drop));
        too_small(MpmcRing::<Big>::receiver(ptr, len).map(drop));
    }
}

/// The run-time element rings (issue 19: what the C ABI uses), with an odd layout (24 bytes,
/// align 8: a slot stride that is not a power of two): the same producer/consumer churn under
/// hostile writes. The MPMC stride is 32 (stamp, then the 24-byte value).
#[allow(clippy::too_many_lines)]
#[test]
fn dyn_spsc_under_hostile_writes() {
    use shmlane_ring::{DynSpscRing, ElemLayout};
    const CAP: u64 = 8;
    let layout = ElemLayout::new(24, 8).unwrap();
    let size = DynSpscRing::required_size(layout, CAP);
    let hdr = size - CAP as usize * 24;
    let region = Arc::new(HeapRegion::new(size));
    // SAFETY: as in `spsc_under_hostile_writes`.
    unsafe { DynSpscRing::init(region.as_ptr(), size, layout, CAP, u64::MAX - 100).unwrap() };
    let targets = Targets {
        identity: IDENTITY.to_vec(),
        live: words(32, hdr, 8),
    };
    let (rp, rc) = (Arc::clone(&region), Arc::clone(&region));
    run(
        "dyn-spsc",
        &region,
        targets,
        CAP,
        move |seed, budget| {
            let mut rng = Rng(seed);
            let mut v = Violations::default();
            let mut attached = 0;
            let mut src = [0u8; 2 * CAP as usize * 24];
            for _ in budget.rounds() {
                // SAFETY: the region outlives the handle (dropped in this iteration).
                let Ok(mut p) =
                    (unsafe { DynSpscRing::producer(rp.as_ptr(), size, layout, 1, &dead) })
                else {
                    continue;
                };
                attached += 1;
                for _ in 0..OPS {
                    check!(v, p.free() <= p.capacity());
                    let n = rng.below(2 * CAP as usize + 1);
                    src.fill(rng.next() as u8);
                    match rng.below(3) {
                        0 => {
                            let _ = p.push(&src[..24]);
                        }
                        1 => {
                            if let Ok(k) = p.push_slice(&src[..n * 24]) {
                                check!(v, k <= n.min(p.capacity()));
                            }
                        }
                        _ => match p.write_chunk(n) {
                            Ok(mut w) => {
                                // Copy first, check after: a chunk past the ring shows under
                                // AddressSanitizer.
                                w.copy_from_slice(&src[..n * 24]);
                                check!(v, n <= CAP as usize);
                                let k = rng.below(n + 1);
                                w.commit(k);
                            }
                            Err(ChunkError::TooFewSlots(k)) => {
                                check!(v, k < n && k <= CAP as usize);
                            }
                            Err(ChunkError::Corrupt) => {}
                        },
                    }
                }
            }
            v.finish();
            attached
        },
        move |seed, budget| {
            let mut rng = Rng(seed);
            let mut v = Violations::default();
            let mut attached = 0;
            let mut dst = [0u8; 2 * CAP as usize * 24];
            for _ in budget.rounds() {
                // SAFETY: the region outlives the handle (dropped in this iteration).
                let Ok(mut c) =
                    (unsafe { DynSpscRing::consumer(rc.as_ptr(), size, layout, 2, &dead) })
                else {
                    continue;
                };
                attached += 1;
                for _ in 0..OPS {
                    check!(v, c.len() <= c.capacity());
                    let n = rng.below(2 * CAP as usize + 1);
                    match rng.below(4) {
                        0 => {
                            let _ = c.pop(&mut dst[..24]);
                        }
                        1 => {
                            let _ = c.peek(&mut dst[..24]);
                        }
                        2 => {
                            if let Ok(k) = c.pop_slice(&mut dst[..n * 24]) {
                                check!(v, k <= n.min(c.capacity()));
                            }
                        }
                        _ => match c.read_chunk(n) {
                            Ok(r) => {
                                r.copy_to_slice(&mut dst[..n * 24]);
                                check!(v, n <= CAP as usize);
                                let k = rng.below(n + 1);
                                r.commit(k);
                            }
                            Err(ChunkError::TooFewSlots(k)) => {
                                check!(v, k < n && k <= CAP as usize);
                            }
                            Err(ChunkError::Corrupt) => {}
                        },
                    }
                }
            }
            v.finish();
            attached
        },
    );
}

#[test]
fn dyn_mpmc_under_hostile_writes() {
    use shmlane_ring::{DynMpmcRing, ElemLayout};
    const CAP: u64 = 8;
    let layout = ElemLayout::new(24, 8).unwrap();
    let size = DynMpmcRing::required_size(layout, CAP);
    let hdr = size - CAP as usize * 32;
    let region = Arc::new(HeapRegion::new(size));
    // SAFETY: as in `spsc_under_hostile_writes`.
    unsafe { DynMpmcRing::init(region.as_ptr(), size, layout, CAP, u64::MAX - 100).unwrap() };
    // The header after the identity, and every slot's stamp word (stride 32).
    let mut live = words(32, hdr, 8);
    live.extend(words(hdr, size, 32));
    let targets = Targets {
        identity: IDENTITY.to_vec(),
        live,
    };
    let (rp, rc) = (Arc::clone(&region), Arc::clone(&region));
    run(
        "dyn-mpmc",
        &region,
        targets,
        CAP,
        move |seed, budget| {
            let mut rng = Rng(seed);
            let mut v = Violations::default();
            let mut attached = 0;
            let mut src = [0u8; 2 * CAP as usize * 24];
            for _ in budget.rounds() {
                // SAFETY: the region outlives the handle (dropped in this iteration).
                let Ok(tx) = (unsafe { DynMpmcRing::sender(rp.as_ptr(), size, layout) }) else {
                    continue;
                };
                attached += 1;
                for _ in 0..OPS {
                    check!(v, tx.len() <= tx.capacity());
                    src.fill(rng.next() as u8);
                    if rng.below(2) == 0 {
                        let _ = tx.push(&src[..24]);
                    } else {
                        let n = rng.below(2 * CAP as usize + 1);
                        if let Ok(k) = tx.push_slice(&src[..n * 24]) {
                            check!(v, k <= n);
                        }
                    }
                }
            }
            v.finish();
            attached
        },
        move |seed, budget| {
            let mut rng = Rng(seed);
            let mut v = Violations::default();
            let mut attached = 0;
            let mut dst = [0u8; 2 * CAP as usize * 24];
            for _ in budget.rounds() {
                // SAFETY: the region outlives the handle (dropped in this iteration).
                let Ok(rx) = (unsafe { DynMpmcRing::receiver(rc.as_ptr(), size, layout) }) else {
                    continue;
                };
                attached += 1;
                for _ in 0..OPS {
                    check!(v, rx.len() <= rx.capacity());
                    if rng.below(2) == 0 {
                        let _ = rx.pop(&mut dst[..24]);
                    } else {
                        let n = rng.below(2 * CAP as usize + 1);
                        if let Ok(k) = rx.pop_slice(&mut dst[..n * 24]) {
                            check!(v, k <= n);
                        }
                    }
                }
            }
            v.finish();
            attached
        },
    );
}

#[test]
fn latest_under_hostile_writes() {
    use shmlane_ring::{LatestError, LatestRing};
    const SLOTS: u64 = 4;
    const SIZE: usize = 40;
    let size = LatestRing::required_size(SLOTS, SIZE);
    let region = Arc::new(HeapRegion::new(size));
    // SAFETY: as in `spsc_under_hostile_writes`.
    unsafe { LatestRing::init(region.as_ptr(), size, SLOTS, SIZE).unwrap() };
    // The claims (unused by this kind), the ticket, `latest`, and every slot word (seq,
    // length, holder and value words: all atomics).
    let mut live = words(32, 48, 8);
    live.extend([128, 256]);
    live.extend(words(384, size, 8));
    let targets = Targets {
        identity: IDENTITY.to_vec(),
        live,
    };
    let (rp, rc) = (Arc::clone(&region), Arc::clone(&region));
    run(
        "latest",
        &region,
        targets,
        SLOTS,
        move |seed, budget| {
            let mut rng = Rng(seed);
            let mut v = Violations::default();
            let mut attached = 0;
            let val = [0x5au8; 128];
            for _ in budget.rounds() {
                // SAFETY: the region outlives the handle (dropped in this iteration).
                let Ok(mut w) = (unsafe { LatestRing::writer(rp.as_ptr(), size, 1) }) else {
                    continue;
                };
                attached += 1;
                // A hostile geometry may be believed, but only one the region holds.
                let vs = w.value_size();
                check!(v, LatestRing::required_size(w.slots(), vs) <= size);
                for _ in 0..OPS {
                    let n = rng.below(vs.min(119) + 9);
                    // Every holder a hostile value names is "dead": reclaims run too.
                    match w.write_with(&val[..n], &dead) {
                        Ok(_) | Err(LatestError::Busy) => check!(v, n <= vs),
                        Err(LatestError::TooLong { len, max }) => {
                            check!(v, n > vs && len == n && max == vs);
                        }
                        Err(_) => check!(v, false),
                    }
                }
            }
            v.finish();
            attached
        },
        move |seed, budget| {
            let mut rng = Rng(seed);
            let mut v = Violations::default();
            let mut attached = 0;
            let mut buf = [0u8; 128];
            for _ in budget.rounds() {
                // SAFETY: the region outlives the handle (dropped in this iteration).
                let Ok(mut r) = (unsafe { LatestRing::reader(rc.as_ptr(), size) }) else {
                    continue;
                };
                attached += 1;
                let vs = r.value_size();
                check!(v, LatestRing::required_size(r.slots(), vs) <= size);
                for _ in 0..OPS {
                    let _ = r.version();
                    let n = rng.below(vs.min(119) + 9);
                    let got = if rng.below(2) == 0 {
                        r.read(&mut buf[..n])
                    } else {
                        r.read_if_changed(&mut buf[..n])
                    };
                    match got {
                        Ok(Some((len, _))) => check!(v, len <= n && len <= vs),
                        Err(LatestError::BufferTooSmall { needed }) => {
                            check!(v, needed > n && needed <= vs);
                        }
                        Ok(None) | Err(LatestError::Busy | LatestError::Corrupt(_)) => {}
                        Err(_) => check!(v, false),
                    }
                }
            }
            v.finish();
            attached
        },
    );
}
