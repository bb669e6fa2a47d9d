//! Rings between real processes, inside a real POSIX shared-memory segment: the test binary
//! re-executes itself for each child (see `shmlane-testkit`).
#![cfg(not(loom))]

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use shmlane_ring::{MpmcRing, PopError, SpscRing, StampedRing};
use shmlane_segment::{Region, Segment};
use shmlane_testkit::{Cleanup, child, child_role, finish, unique};

const LIMIT: Duration = Duration::from_secs(300);

/// SPSC: messages sent, capacity, and the first position (so the run wraps past `u64::MAX`).
const SPSC_MESSAGES: u64 = 10_000_000;
const SPSC_CAP: u64 = 4096;
const SPSC_START: u64 = u64::MAX - 100_000;

/// MPMC: values per producer, capacity, first position.
const MPMC_PER_PRODUCER: u64 = 500_000;
const MPMC_CAP: u64 = 1024;
const MPMC_START: u64 = u64::MAX - 10_000;
const PRODUCERS: u64 = 2;

/// A 32-byte message whose four words all derive from the sequence number, so a torn or
/// corrupted message is detected, not only a lost one.
fn message(seq: u64) -> [u64; 4] {
    [
        seq,
        !seq,
        seq.wrapping_mul(0x9e37_79b9_7f4a_7c15),
        seq ^ 0x5555_5555_5555_5555,
    ]
}

/// Owner token for ring role claims: the segment attachment slot, plus one (0 means "free").
fn token(seg: &Segment) -> u64 {
    u64::from(seg.slot()) + 1
}

fn alive(seg: &Segment) -> impl Fn(u64) -> bool + '_ {
    move |t| t != 0 && seg.slot_alive((t - 1) as u32)
}

fn counter<'a>(seg: &'a Segment, name: &str) -> &'a AtomicU64 {
    let r = seg.find_region(name).expect("region");
    // SAFETY: the region is in bounds, 128-byte aligned, lives as long as `seg`, and is only
    // accessed atomically by every process.
    unsafe { AtomicU64::from_ptr(r.as_ptr().cast()) }
}

/// Word `w` of the "seen" bitmap region.
fn seen_word<'a>(seen: &'a Region<'_>, w: u64) -> &'a AtomicU64 {
    assert!((w as usize + 1) * 8 <= seen.len(), "bit outside the bitmap");
    // The region start is 128-byte aligned, so every 8-byte word in it is aligned.
    #[allow(clippy::cast_ptr_alignment)]
    let ptr = seen.as_ptr().cast::<u64>();
    // SAFETY: word `w` lies inside the region (asserted), is aligned, lives as long as the
    // segment, and every process accesses it only atomically.
    unsafe { AtomicU64::from_ptr(ptr.add(w as usize)) }
}

/// Waits politely: this machine has two cores and other tests run at the same time.
fn pause(spins: &mut u32) {
    *spins += 1;
    if *spins < 64 {
        std::hint::spin_loop();
    } else {
        std::thread::yield_now();
    }
}

#[test]
fn child_entry() {
    let Some((role, args)) = child_role() else {
        return;
    };
    let code = match role.as_str() {
        "spsc-consumer" => spsc_consumer(&args[0]),
        "stamped-consumer" => stamped_consumer(&args[0]),
        "mpmc-producer" => mpmc_producer(&args[0], args[1].parse().unwrap()),
        "mpmc-consumer" => mpmc_consumer(&args[0]),
        other => panic!("unknown child role {other}"),
    };
    std::process::exit(code);
}

fn spsc_consumer(name: &str) -> i32 {
    let seg = Segment::posix(name).role(2).open().expect("open segment");
    let r = seg.find_region("ring").expect("ring region");
    let is_alive = alive(&seg);
    // SAFETY: the region lives as long as `seg`, which outlives the consumer.
    let mut c =
        unsafe { SpscRing::<[u64; 4]>::consumer(r.as_ptr(), r.len(), token(&seg), &is_alive) }
            .expect("attach consumer");
    let mut next = 0u64;
    let mut buf = vec![[0u64; 4]; 64];
    let mut spins = 0;
    while next < SPSC_MESSAGES {
        // Three ways of reading, in turn: pop, pop_slice, and zero-copy chunks.
        let got = match next % 3 {
            0 => match c.pop() {
                Ok(m) => {
                    buf[0] = m;
                    1
                }
                Err(PopError::Empty) => 0,
                Err(e) => panic!("pop: {e}"),
            },
            1 => c.pop_slice(&mut buf).expect("pop_slice"),
            _ => {
                let n = c.len().min(buf.len());
                if n > 0 {
                    let chunk = c.read_chunk(n).expect("read_chunk");
                    let (a, b) = chunk.as_slices();
                    buf[..a.len()].copy_from_slice(a);
                    buf[a.len()..n].copy_from_slice(b);
                    chunk.commit_all();
                }
                n
            }
        };
        if got == 0 {
            pause(&mut spins);
            continue;
        }
        spins = 0;
        for m in &buf[..got] {
            if *m != message(next) {
                println!("OUT:mismatch at {next}: {m:?}");
                return 2;
            }
            next += 1;
        }
    }
    // Nothing more may arrive.
    assert_eq!(c.pop(), Err(PopError::Empty));
    println!("OUT:received {next}");
    0
}

/// Ten million sequence-numbered 32-byte messages from this process to a child, across the
/// wrap of the 64-bit positions, written by push, push_slice and zero-copy chunks and read by
/// pop, pop_slice and chunks: none lost, duplicated, reordered or torn.
#[test]
fn spsc_ten_million_between_processes() {
    let name = unique("ring-spsc");
    let _c = Cleanup(name.clone());
    let size = SpscRing::<[u64; 4]>::required_size(SPSC_CAP) as u64;
    let seg = Segment::posix(&name)
        .size(size + 64 * 1024)
        .role(1)
        .create_with(|s| {
            let r = s.region("ring", size, 1)?;
            // SAFETY: a fresh region nobody else can see before the segment is published.
            unsafe { SpscRing::<[u64; 4]>::init(r.as_ptr(), r.len(), SPSC_CAP, SPSC_START) }
                .expect("init ring");
            Ok::<_, shmlane_segment::RegionError>(())
        })
        .expect("create segment");
    let r = seg.find_region("ring").unwrap();
    let is_alive = alive(&seg);
    // SAFETY: the region lives as long as `seg`, which outlives the producer.
    let mut p =
        unsafe { SpscRing::<[u64; 4]>::producer(r.as_ptr(), r.len(), token(&seg), &is_alive) }
            .expect("attach producer");
    let consumer = child("spsc-consumer", &[&name]).spawn().unwrap();
    let t0 = Instant::now();
    let mut next = 0u64;
    let mut spins = 0;
    let mut batch = vec![[0u64; 4]; 48];
    while next < SPSC_MESSAGES {
        let left = SPSC_MESSAGES - next;
        let sent = match next % 3 {
            0 => u64::from(p.push(message(next)).is_ok()),
            1 => {
                let n = left.min(batch.len() as u64) as usize;
                for (i, m) in batch[..n].iter_mut().enumerate() {
                    *m = message(next + i as u64);
                }
                p.push_slice(&batch[..n]).expect("push_slice") as u64
            }
            _ => {
                let n = (p.free() as u64).min(left).min(32) as usize;
                if n > 0 {
                    let mut w = p.write_chunk(n).expect("write_chunk");
                    let (a, b) = w.as_mut_slices();
                    for (i, m) in a.iter_mut().chain(b.iter_mut()).enumerate() {
                        *m = message(next + i as u64);
                    }
                    w.commit_all();
                }
                n as u64
            }
        };
        if sent == 0 {
            pause(&mut spins);
        } else {
            spins = 0;
            next += sent;
        }
    }
    let (code, out) = finish(consumer, LIMIT);
    assert_eq!(code, 0, "consumer failed: {out:?}");
    assert_eq!(out, [format!("received {SPSC_MESSAGES}")]);
    assert_eq!(p.position(), SPSC_START.wrapping_add(SPSC_MESSAGES));
    println!("10M SPSC messages across processes in {:?}", t0.elapsed());
}

fn mpmc_producer(name: &str, id: u64) -> i32 {
    let seg = Segment::posix(name).role(3).open().expect("open segment");
    let r = seg.find_region("ring").expect("ring region");
    // SAFETY: the region lives as long as `seg`, which outlives the sender.
    let tx = unsafe { MpmcRing::<u64>::sender(r.as_ptr(), r.len()) }.expect("attach sender");
    let mut spins = 0;
    for i in 0..MPMC_PER_PRODUCER {
        let mut v = (id << 32) | i;
        loop {
            match tx.push(v) {
                Ok(()) => break,
                Err(shmlane_ring::PushError::Full(back)) => {
                    v = back;
                    pause(&mut spins);
                }
                Err(e) => panic!("push: {e}"),
            }
        }
        spins = 0;
    }
    0
}

fn mpmc_consumer(name: &str) -> i32 {
    let seg = Segment::posix(name).role(4).open().expect("open segment");
    let r = seg.find_region("ring").expect("ring region");
    // SAFETY: the region lives as long as `seg`, which outlives the receiver.
    let rx = unsafe { MpmcRing::<u64>::receiver(r.as_ptr(), r.len()) }.expect("attach receiver");
    let seen = seg.find_region("seen").expect("seen region");
    let done = counter(&seg, "done");
    let total = PRODUCERS * MPMC_PER_PRODUCER;
    let mut last = [None::<u64>; PRODUCERS as usize];
    let mut mine = 0u64;
    let mut buf = [0u64; 16];
    let mut spins = 0;
    // ORDERING: Relaxed; only a stop condition, the values come through the ring.
    while done.load(Ordering::Relaxed) < total {
        let n = if mine % 2 == 0 {
            match rx.pop() {
                Ok(v) => {
                    buf[0] = v;
                    1
                }
                Err(PopError::Empty) => 0,
                Err(e) => panic!("pop: {e}"),
            }
        } else {
            rx.pop_slice(&mut buf).expect("pop_slice")
        };
        if n == 0 {
            pause(&mut spins);
            continue;
        }
        spins = 0;
        for &v in &buf[..n] {
            let (id, i) = (v >> 32, v & 0xffff_ffff);
            if id >= PRODUCERS || i >= MPMC_PER_PRODUCER {
                println!("OUT:foreign value {v:#x}");
                return 2;
            }
            // Per producer, one consumer sees increasing sequence numbers (FIFO).
            if last[id as usize].is_some_and(|l| l >= i) {
                println!("OUT:reordered {id}:{i} after {:?}", last[id as usize]);
                return 3;
            }
            last[id as usize] = Some(i);
            let bit = id * MPMC_PER_PRODUCER + i;
            let word = seen_word(&seen, bit / 64);
            // ORDERING: Relaxed; the parent reads the bitmap after every child exited.
            if word.fetch_or(1 << (bit % 64), Ordering::Relaxed) & (1 << (bit % 64)) != 0 {
                println!("OUT:duplicate {id}:{i}");
                return 4;
            }
            mine += 1;
        }
        // ORDERING: Relaxed; a counter for the stop condition.
        done.fetch_add(n as u64, Ordering::Relaxed);
    }
    println!("OUT:received {mine}");
    0
}

/// Two producer processes and two consumer processes through one MPMC ring: every value
/// arrives exactly once, and each consumer sees each producer's values in order.
#[test]
fn mpmc_two_producers_two_consumers_between_processes() {
    let name = unique("ring-mpmc");
    let _c = Cleanup(name.clone());
    let ring = MpmcRing::<u64>::required_size(MPMC_CAP) as u64;
    let bits = PRODUCERS * MPMC_PER_PRODUCER;
    let seen_bytes = bits.div_ceil(64) * 8;
    let seg = Segment::posix(&name)
        .size(ring + seen_bytes + 128 * 1024)
        .create_with(|s| {
            let r = s.region("ring", ring, 2)?;
            // SAFETY: a fresh region nobody else can see before the segment is published.
            unsafe { MpmcRing::<u64>::init(r.as_ptr(), r.len(), MPMC_CAP, MPMC_START) }
                .expect("init ring");
            s.region("seen", seen_bytes, 3)?;
            s.region("done", 128, 4)?;
            Ok::<_, shmlane_segment::RegionError>(())
        })
        .expect("create segment");
    let consumers: Vec<_> = (0..2)
        .map(|_| child("mpmc-consumer", &[&name]).spawn().unwrap())
        .collect();
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|id| {
            child("mpmc-producer", &[&name, &id.to_string()])
                .spawn()
                .unwrap()
        })
        .collect();
    for p in producers {
        let (code, out) = finish(p, LIMIT);
        assert_eq!(code, 0, "producer failed: {out:?}");
    }
    let mut received = 0;
    for c in consumers {
        let (code, out) = finish(c, LIMIT);
        assert_eq!(code, 0, "consumer failed: {out:?}");
        received += out[0]
            .strip_prefix("received ")
            .unwrap()
            .parse::<u64>()
            .unwrap();
    }
    assert_eq!(received, bits);
    let seen = seg.find_region("seen").unwrap();
    for w in 0..bits / 64 {
        // ORDERING: Relaxed; every writer has exited (waited for above).
        let word = seen_word(&seen, w).load(Ordering::Relaxed);
        assert_eq!(word, u64::MAX, "values missing in word {w}");
    }
}

fn stamped_consumer(name: &str) -> i32 {
    let seg = Segment::posix(name).role(2).open().expect("open segment");
    let r = seg.find_region("ring").expect("ring region");
    let is_alive = alive(&seg);
    // SAFETY: the region lives as long as `seg`, which outlives the consumer.
    let mut c =
        unsafe { StampedRing::<[u64; 4]>::consumer(r.as_ptr(), r.len(), token(&seg), &is_alive) }
            .expect("attach consumer");
    let mut next = 0u64;
    let mut buf = vec![[0u64; 4]; 64];
    let mut spins = 0;
    while next < SPSC_MESSAGES {
        // Pop, peek-then-pop and pop_slice in turn.
        let got = match next % 3 {
            0 => match c.pop() {
                Ok(m) => {
                    buf[0] = m;
                    1
                }
                Err(PopError::Empty) => 0,
                Err(e) => panic!("pop: {e}"),
            },
            1 => match c.peek() {
                Ok(m) => {
                    assert_eq!(c.pop(), Ok(m), "peek and pop disagree");
                    buf[0] = m;
                    1
                }
                Err(PopError::Empty) => 0,
                Err(e) => panic!("peek: {e}"),
            },
            _ => c.pop_slice(&mut buf).expect("pop_slice"),
        };
        if got == 0 {
            pause(&mut spins);
            continue;
        }
        spins = 0;
        for m in &buf[..got] {
            if *m != message(next) {
                println!("OUT:mismatch at {next}: {m:?}");
                return 2;
            }
            next += 1;
        }
    }
    assert_eq!(c.pop(), Err(PopError::Empty));
    println!("OUT:received {next}");
    0
}

/// The stamped SPSC ring: ten million sequence-numbered 32-byte messages from this process
/// to a child across the 64-bit wrap, by push and push_slice: none lost, duplicated,
/// reordered or torn.
#[test]
fn stamped_ten_million_between_processes() {
    let name = unique("ring-stamped");
    let _c = Cleanup(name.clone());
    let size = StampedRing::<[u64; 4]>::required_size(SPSC_CAP) as u64;
    let seg = Segment::posix(&name)
        .size(size + 64 * 1024)
        .role(1)
        .create_with(|s| {
            let r = s.region("ring", size, 1)?;
            // SAFETY: a fresh region nobody else can see before the segment is published.
            unsafe { StampedRing::<[u64; 4]>::init(r.as_ptr(), r.len(), SPSC_CAP, SPSC_START) }
                .expect("init ring");
            Ok::<_, shmlane_segment::RegionError>(())
        })
        .expect("create segment");
    let r = seg.find_region("ring").unwrap();
    let is_alive = alive(&seg);
    // SAFETY: the region lives as long as `seg`, which outlives the producer.
    let mut p =
        unsafe { StampedRing::<[u64; 4]>::producer(r.as_ptr(), r.len(), token(&seg), &is_alive) }
            .expect("attach producer");
    let consumer = child("stamped-consumer", &[&name]).spawn().unwrap();
    let t0 = Instant::now();
    let mut next = 0u64;
    let mut spins = 0;
    let mut batch = vec![[0u64; 4]; 48];
    while next < SPSC_MESSAGES {
        let left = SPSC_MESSAGES - next;
        let sent = if next % 2 == 0 {
            u64::from(p.push(message(next)).is_ok())
        } else {
            let n = left.min(batch.len() as u64) as usize;
            for (i, m) in batch[..n].iter_mut().enumerate() {
                *m = message(next + i as u64);
            }
            p.push_slice(&batch[..n]).expect("push_slice") as u64
        };
        if sent == 0 {
            pause(&mut spins);
        } else {
            spins = 0;
            next += sent;
        }
    }
    let (code, out) = finish(consumer, LIMIT);
    assert_eq!(code, 0, "consumer failed: {out:?}");
    assert_eq!(out, [format!("received {SPSC_MESSAGES}")]);
    assert_eq!(p.position(), SPSC_START.wrapping_add(SPSC_MESSAGES));
    println!(
        "10M stamped SPSC messages across processes in {:?}",
        t0.elapsed()
    );
}
