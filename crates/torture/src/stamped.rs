//! Byte flips in a live segment carrying a stamped ring.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use shmlane_ring::{PopError, StampedRing};
use shmlane_segment::Segment;

use crate::{
    msg::words4,
    proc::{Remove, Rng, spawn},
    summary::{K, Summary},
};

// ---------------------------------------------------------------- flips

pub(crate) const FLIP_CAP: u64 = 4096;
pub(crate) const FLIP_START: u64 = u64::MAX - 100_000;

pub(crate) fn flips(tag: &str, secs: u64, rng: &mut Rng, sum: &mut Summary) {
    let name = format!("{tag}-flips");
    let _rm = Remove(vec![name.clone()]);
    let size = StampedRing::<[u64; 4]>::required_size(FLIP_CAP) as u64;
    let seg = Segment::posix(&name)
        .size(size + 64 * 1024)
        .create_with(|s| {
            let r = s.region("ring", size, 1)?;
            // SAFETY: a fresh region nobody else can see yet.
            unsafe { StampedRing::<[u64; 4]>::init(r.as_ptr(), r.len(), FLIP_CAP, FLIP_START) }
                .expect("init");
            Ok::<_, shmlane_segment::RegionError>(())
        })
        .expect("create");
    let ring = seg.find_region("ring").expect("ring");
    let (rptr, rlen) = (ring.as_ptr(), ring.len());
    let token = u64::from(seg.slot()) + 1;
    // SAFETY: the region lives as long as `seg`, which outlives the consumer.
    let mut rx = unsafe {
        StampedRing::<[u64; 4]>::consumer(rptr, rlen, token, &|t| {
            t != 0 && seg.slot_alive((t - 1) as u32)
        })
    }
    .expect("consumer");
    // The producer sends for `secs` seconds (and at least past the u64 wrap), then an end
    // marker carrying its count.
    let mut c = spawn("stamped-producer", &[&name, &secs.to_string()]);
    // The flipper: the segment's first 4 KiB (header, control block, attachment slots,
    // directory) and the ring's metadata lines (identity, claims, published positions).
    let stop = Arc::new(AtomicBool::new(false));
    // The flipper waits for the first message: the producer process must have attached
    // (and checked the ring's identity) before its metadata is attacked; an attach that
    // reads a flipped header is refused, which the fresh attaches below already count.
    let started = Arc::new(AtomicBool::new(false));
    let seg_base = {
        let info = shmlane_segment::inspect(std::path::Path::new(&format!("/dev/shm/{name}")))
            .ok()
            .flatten()
            .expect("inspect");
        info.regions
            .iter()
            .find(|r| r.name == "ring")
            .expect("ring")
            .offset as usize
    };
    let flipper = {
        let (stop, started, name) = (stop.clone(), started.clone(), name.clone());
        let mut rng = Rng(rng.next() | 1);
        let rptr = rptr as usize;
        std::thread::spawn(move || {
            let map = rptr - seg_base;
            let (mut flipped, mut refused) = (0u64, 0u64);
            // ORDERING: Relaxed on both sides (the store below after the first message);
            // a flag between two threads of this process, no data rides on it.
            while !started.load(Ordering::Relaxed) && !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_micros(100));
            }
            let t0 = Instant::now();
            while !stop.load(Ordering::Relaxed) && t0.elapsed() < Duration::from_secs(secs) {
                let off = if rng.below(2) == 0 {
                    rng.below(4096) as usize
                } else {
                    seg_base + rng.below(384) as usize
                };
                let bit = 1u8 << rng.below(8);
                // SAFETY: `off` lies in the segment's header page or the ring's first 384
                // bytes, both mapped for as long as the segment lives (the scenario holds it).
                // An atomic byte XOR: other processes access these words atomically too.
                let b = unsafe { &*((map + off) as *const std::sync::atomic::AtomicU8) };
                // ORDERING: Relaxed; hostile writes need no ordering.
                b.fetch_xor(bit, Ordering::Relaxed);
                flipped += 1;
                if flipped % 64 == 0 {
                    // Fresh opens and attaches meanwhile: an error or a usable handle, never
                    // a crash.
                    match Segment::posix(&name).open() {
                        Ok(s) => match s.find_region("ring") {
                            Ok(r) => {
                                // SAFETY: the region lives as long as `s`, dropped at once.
                                let a = unsafe {
                                    StampedRing::<[u64; 4]>::consumer(
                                        r.as_ptr(),
                                        r.len(),
                                        99,
                                        &|_| true,
                                    )
                                };
                                if a.is_err() {
                                    refused += 1;
                                }
                            }
                            Err(_) => refused += 1,
                        },
                        Err(_) => refused += 1,
                    }
                }
                std::thread::sleep(Duration::from_micros(50));
            }
            (flipped, refused)
        })
    };
    let mut got = 0u64;
    let mut sent = None;
    let mut spins = 0u32;
    let t0 = Instant::now();
    while sent.is_none() {
        match rx.pop() {
            Ok(m) if m[0] == u64::MAX && m[3] == u64::MAX && m[2] == !m[1] => {
                sent = Some(m[1]);
                if m[1] != got {
                    sum.fail(format!(
                        "flips: the producer sent {} messages, {got} arrived",
                        m[1]
                    ));
                }
            }
            Ok(m) => {
                if m != words4(got) {
                    sum.k(K::Other).corrupt += 1;
                    sum.fail(format!("flips: message {got} torn or corrupt"));
                    break;
                }
                got += 1;
                spins = 0;
                if got == 1 {
                    // ORDERING: Relaxed; pairs with the flipper's wait above.
                    started.store(true, Ordering::Relaxed);
                }
            }
            Err(PopError::Empty) => {
                spins += 1;
                if spins > 64 {
                    std::thread::yield_now();
                }
                if spins % 4096 == 0 {
                    if let Ok(Some(st)) = c.try_wait() {
                        if !st.success() {
                            sum.fail(format!(
                                "flips: the producer process failed ({st}) after {got} messages"
                            ));
                            break;
                        }
                    }
                }
                if t0.elapsed() > Duration::from_secs(secs + 60) {
                    sum.fail(format!("flips: stuck after {got} messages"));
                    break;
                }
            }
            Err(PopError::Corrupt) => {
                sum.fail(format!(
                    "flips: the consumer saw Corrupt after {got} messages"
                ));
                break;
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let (flipped, refused) = flipper.join().expect("flipper");
    let _ = c.wait();
    let sent = sent.unwrap_or(got);
    let t = sum.k(K::Other);
    t.flips += flipped;
    t.refused += refused;
    t.sent += sent;
    t.received += got;
    t.missing += sent.saturating_sub(got);
    sum.lines.push(format!(
        "flips: {flipped} bits flipped in the segment header and the ring metadata while {got} messages crossed a stamped ring at positions wrapping past u64::MAX; {refused} fresh opens/attaches refused"
    ));
    drop(rx);
}

pub(crate) fn stamped_producer(args: &[String]) {
    let seg = Segment::posix(&args[0]).open().expect("open");
    let secs: u64 = args[1].parse().unwrap();
    let r = seg.find_region("ring").expect("ring");
    let token = u64::from(seg.slot()) + 1;
    // SAFETY: the region lives as long as `seg`, which outlives the producer.
    let mut tx = unsafe {
        StampedRing::<[u64; 4]>::producer(r.as_ptr(), r.len(), token, &|t| {
            t != 0 && seg.slot_alive((t - 1) as u32)
        })
    }
    .expect("producer");
    let t0 = Instant::now();
    let mut seq = 0u64;
    let end = |count: u64| [u64::MAX, count, !count, u64::MAX];
    loop {
        let last = seq >= 2 * (u64::MAX - FLIP_START)
            && seq % 1024 == 0
            && t0.elapsed() >= Duration::from_secs(secs);
        let mut v = if last { end(seq) } else { words4(seq) };
        loop {
            match tx.push(v) {
                Ok(()) => break,
                Err(e) => {
                    v = e.into_inner();
                    std::thread::yield_now();
                }
            }
        }
        if last {
            break;
        }
        seq += 1;
    }
}
