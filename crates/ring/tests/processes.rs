//! Rings between real processes, inside a real POSIX shared-memory segment: the test binary
//! re-executes itself for each child (see `shmlane-testkit`).
#![cfg(not(loom))]

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use shmlane_ring::{
    BroadcastRing, ClaimError, Hole, MpmcRing, PopError, PushError, ReadError, RecordRing,
    RecvError, SpscRing, StampedRing, Unblock,
};
use shmlane_segment::{Region, Segment};
use shmlane_testkit::{Cleanup, child, child_role, finish, pin_to, unique};

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
        "record-producer" => record_producer(&args[0], args[1].parse().unwrap()),
        "record-crasher" => record_crasher(&args[0], args[1].parse().unwrap()),
        "record-abandoner" => record_abandoner(&args[0]),
        "mpmc-producer" => mpmc_producer(&args[0], args[1].parse().unwrap()),
        "mpmc-consumer" => mpmc_consumer(&args[0]),
        "mpmc-abandon" => mpmc_abandon(&args[0], &args[1]),
        "bcast-reader" => bcast_reader(&args[0], &args[1]),
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

/// Record ring: bytes of data, and records per producer (`SHMLANE_RECORDS` overrides, e.g.
/// 1000000 in a release build for the figure).
const RECORD_CAP: u64 = 1 << 18;
fn records_per_producer() -> u64 {
    std::env::var("SHMLANE_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000)
}

/// xorshift64*: the record stream of each producer, regenerated by the consumer to check it.
struct Rng(u64);
impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// The next record: 1–4096 bytes of a deterministic pattern.
    fn record(&mut self, buf: &mut Vec<u8>) {
        let len = 1 + (self.next() % 4096) as usize;
        let mut x = self.next();
        buf.clear();
        buf.extend((0..len).map(|i| {
            if i % 8 == 0 {
                x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            }
            (x >> (8 * (i % 8))) as u8
        }));
    }
}

fn record_segment(name: &str) -> Segment {
    let size = RecordRing::required_size(RECORD_CAP) as u64;
    Segment::posix(name)
        .size(size + 64 * 1024)
        .role(1)
        .create_with(|s| {
            let r = s.region("ring", size, 1)?;
            // SAFETY: a fresh region nobody else can see before the segment is published.
            unsafe { RecordRing::init(r.as_ptr(), r.len(), RECORD_CAP, (u64::MAX - 300_000) & !7) }
                .expect("init ring");
            Ok::<_, shmlane_segment::RegionError>(())
        })
        .expect("create segment")
}

fn record_producer(name: &str, id: u32) -> i32 {
    let seg = Segment::posix(name).role(3).open().expect("open segment");
    let r = seg.find_region("ring").expect("ring region");
    // SAFETY: the region lives as long as `seg`, which outlives the producer.
    let mut p = unsafe { RecordRing::producer(r.as_ptr(), r.len(), id + 1, &|_| true) }
        .expect("attach producer");
    let mut rng = Rng::new(u64::from(id));
    let mut buf = Vec::new();
    let mut spins = 0;
    for _ in 0..records_per_producer() {
        rng.record(&mut buf);
        loop {
            match p.send(&buf) {
                Ok(()) => break,
                Err(ClaimError::Full) => pause(&mut spins),
                Err(e) => panic!("send: {e}"),
            }
        }
        spins = 0;
    }
    0
}

/// Three producer processes send records of random length 1–4096 bytes into one record ring;
/// the consumer (this process) regenerates each producer's stream and checks every record, in
/// order per producer.
#[test]
fn record_three_producers_between_processes() {
    let name = unique("ring-record");
    let _c = Cleanup(name.clone());
    let seg = record_segment(&name);
    let r = seg.find_region("ring").unwrap();
    let is_alive = alive(&seg);
    // SAFETY: the region lives as long as `seg`, which outlives the consumer.
    let mut c = unsafe { RecordRing::consumer(r.as_ptr(), r.len(), token(&seg), &is_alive) }
        .expect("attach consumer");
    let per = records_per_producer();
    let producers: Vec<_> = (0..3)
        .map(|id| {
            child("record-producer", &[&name, &id.to_string()])
                .spawn()
                .unwrap()
        })
        .collect();
    let t0 = Instant::now();
    let mut rngs: Vec<Rng> = (0..3).map(Rng::new).collect();
    let mut counts = [0u64; 3];
    let (mut want, mut got) = (Vec::new(), vec![0u8; 4096]);
    let mut bytes = 0u64;
    let mut spins = 0u32;
    let mut last = Instant::now();
    while counts.iter().sum::<u64>() < 3 * per {
        let err = match c.read() {
            Ok(rec) => {
                let id = rec.owner() as usize - 1;
                assert!(id < 3, "owner tag {}", rec.owner());
                rngs[id].record(&mut want);
                assert_eq!(
                    rec.len(),
                    want.len(),
                    "length of record {} of producer {id}",
                    counts[id]
                );
                rec.copy_to(&mut got);
                assert!(
                    got[..want.len()] == want[..],
                    "record {} of producer {id} differs",
                    counts[id]
                );
                counts[id] += 1;
                bytes += want.len() as u64;
                spins = 0;
                last = Instant::now();
                continue;
            }
            Err(e) => e,
        };
        match err {
            e @ (ReadError::Empty | ReadError::Pending) => {
                pause(&mut spins);
                if spins % 100_000 == 0 && last.elapsed() > Duration::from_secs(20) {
                    // Layout (docs/design.md): the data area starts 512 bytes in.
                    let off = 512 + (c.position() & (RECORD_CAP - 1)) as usize;
                    // SAFETY: inside the region; a read of the header word.
                    let w = unsafe {
                        AtomicU64::from_ptr(r.as_ptr().add(off).cast()).load(Ordering::Acquire)
                    };
                    panic!(
                        "no progress for 20 s: {e:?}, counts {counts:?}, position {}, len {}, \
                         header {w:#x}",
                        c.position(),
                        c.len()
                    );
                }
            }
            e @ ReadError::Corrupt(_) => panic!("read: {e}"),
        }
    }
    let took = t0.elapsed();
    for p in producers {
        let (code, out) = finish(p, LIMIT);
        assert_eq!(code, 0, "producer failed: {out:?}");
    }
    assert_eq!(c.read().err(), Some(ReadError::Empty));
    assert_eq!(c.skipped(), 0);
    println!(
        "record ring: 3 x {per} records ({} MB) across processes in {took:?}",
        bytes / 1_000_000
    );
}

/// A producer that claims a record, writes it in 64-byte pieces with pauses (so that a kill
/// lands between claim and commit most of the time), then commits; forever. Records carry
/// their own checksum: the last 8 bytes are an FNV-1a hash of the rest.
fn record_crasher(name: &str, generation: u32) -> i32 {
    let seg = Segment::posix(name).role(3).open().expect("open segment");
    let r = seg.find_region("ring").expect("ring region");
    // Owner tag: our attachment slot and its generation, which the consumer's liveness check
    // understands (a slot reused by a later producer does not make a dead one look alive).
    // SAFETY: the region lives as long as `seg`, which outlives the producer.
    let mut p = unsafe {
        RecordRing::producer(r.as_ptr(), r.len(), seg.owner_tag(), &|t| seg.tag_alive(t))
    }
    .expect("attach producer");
    let mut rng = Rng::new(u64::from(generation) + 1000);
    let mut buf = Vec::new();
    println!("OUT:ready");
    loop {
        rng.record(&mut buf);
        buf.resize(buf.len().max(16), 0);
        let n = buf.len();
        let h = fnv(&buf[..n - 8]);
        buf[n - 8..].copy_from_slice(&h.to_le_bytes());
        let mut claim = loop {
            match p.claim(n) {
                Ok(c) => break c,
                Err(ClaimError::Full) => std::thread::yield_now(),
                Err(e) => panic!("claim: {e}"),
            }
        };
        // About 5 µs per 64-byte piece: most of the time is spent between claim and commit.
        for (k, piece) in buf.chunks(64).enumerate() {
            claim.write(k * 64, piece);
            let t = std::time::Instant::now();
            while t.elapsed() < std::time::Duration::from_micros(5) {
                std::hint::spin_loop();
            }
        }
        let _ = claim.commit();
    }
}

/// Kills the child if the test fails before it does.
/// A producer process that takes its place on the tail and stops there, before writing the
/// record's header (what a kill between the two claim steps leaves), then waits to be killed.
fn record_abandoner(name: &str) -> i32 {
    let seg = Segment::posix(name).role(3).open().expect("open segment");
    let r = seg.find_region("ring").expect("ring region");
    // SAFETY: the region lives as long as `seg`, which outlives the producer.
    let p = unsafe {
        RecordRing::producer(r.as_ptr(), r.len(), seg.owner_tag(), &|t| seg.tag_alive(t))
    }
    .expect("attach producer");
    p.abandon_claim_for_tests(100, true);
    println!("OUT:ready");
    std::thread::sleep(LIMIT);
    1
}

/// 20 producer processes, each killed after taking its place on the tail but before writing
/// its record's header (the claim names no owner): the consumer sees each claim pending, keeps
/// waiting while the process lives, and skips it without the timeout once it is dead (its claim
/// intent names it); a record sent after each is delivered.
#[test]
fn record_producer_killed_before_its_header_is_skipped_without_the_timeout() {
    let name = unique("ring-record-intent");
    let _c = Cleanup(name.clone());
    let seg = record_segment(&name);
    let r = seg.find_region("ring").unwrap();
    let tag_alive = |t: u32| seg.tag_alive(t);
    // SAFETY: the region lives as long as `seg`, which outlives both handles.
    let (p, c) = unsafe {
        (
            RecordRing::producer(r.as_ptr(), r.len(), seg.owner_tag(), &tag_alive),
            RecordRing::consumer(r.as_ptr(), r.len(), token(&seg), &alive(&seg)),
        )
    };
    let (mut p, mut c) = (p.expect("producer"), c.expect("consumer"));
    let mut detect = Vec::new();
    for i in 0..20u32 {
        let mut child = KillOnDrop(child("record-abandoner", &[&name]).spawn().unwrap());
        let mut out = std::io::BufReader::new(child.0.stdout.take().unwrap());
        let mut line = String::new();
        while line.trim() != "OUT:ready" {
            line.clear();
            assert!(
                std::io::BufRead::read_line(&mut out, &mut line).unwrap() > 0,
                "abandoner exited before it was ready"
            );
        }
        p.send(&i.to_le_bytes()).unwrap();
        assert_eq!(c.read().err(), Some(ReadError::Pending));
        for _ in 0..100 {
            assert_eq!(c.unblock(&tag_alive, false), Unblock::StillAlive);
        }
        child.0.kill().unwrap();
        child.0.wait().unwrap();
        let killed = Instant::now();
        // The liveness lock is released by the kernel with the process: no timeout involved.
        while c.unblock(&tag_alive, false) != Unblock::Skipped {
            assert!(
                killed.elapsed() < LIMIT,
                "a dead header-less claim never skipped"
            );
            std::thread::yield_now();
        }
        detect.push(killed.elapsed());
        assert_eq!(c.read().unwrap().to_vec(), i.to_le_bytes());
        assert_eq!(c.read().err(), Some(ReadError::Empty));
    }
    assert_eq!(c.skipped(), 20);
    detect.sort();
    println!(
        "record ring: 20 header-less claims of killed producers skipped without the timeout; kill to skip: p50 {:?}, max {:?}",
        detect[10], detect[19]
    );
}

struct KillOnDrop(std::process::Child);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn fnv(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325, |h, &x| {
        (h ^ u64::from(x)).wrapping_mul(0x100_0000_01b3)
    })
}

/// 100 producer processes SIGKILLed at random moments, mostly between claim and commit: the
/// consumer delivers only whole records with good checksums, unblocks each dead claim (the
/// liveness check, or the timeout for a claim whose header was never written) and counts it.
#[test]
#[allow(clippy::too_many_lines)] // one scenario, read top to bottom
fn record_producers_killed_between_claim_and_commit() {
    const KILLS: u32 = 100;
    const TIMEOUT: Duration = Duration::from_millis(200);
    let name = unique("ring-record-kill");
    let _c = Cleanup(name.clone());
    let seg = record_segment(&name);
    let r = seg.find_region("ring").unwrap();
    let is_alive = alive(&seg);
    // SAFETY: the region lives as long as `seg`, which outlives the consumer.
    let mut c = unsafe { RecordRing::consumer(r.as_ptr(), r.len(), token(&seg), &is_alive) }
        .expect("attach consumer");
    let slot_alive = |tag: u32| seg.tag_alive(tag);
    let mut rng = Rng::new(77);
    let (mut delivered, mut unblocked, mut forced) = (0u64, 0u64, 0u64);
    // Time from each kill to the consumer skipping the dead claim (liveness check).
    let mut detect: Vec<Duration> = Vec::new();
    let mut killed_at = Instant::now();
    let mut got = vec![0u8; 4096];
    let mut drain = |c: &mut shmlane_ring::RecordConsumer,
                     until: Instant,
                     stuck: &mut Option<Instant>,
                     killed_at: Instant| {
        while Instant::now() < until {
            let err = match c.read() {
                Ok(rec) => {
                    let n = rec.len();
                    assert!(n >= 16, "short record");
                    rec.copy_to(&mut got);
                    let h = u64::from_le_bytes(got[n - 8..n].try_into().unwrap());
                    assert_eq!(h, fnv(&got[..n - 8]), "bad record delivered");
                    delivered += 1;
                    *stuck = None;
                    continue;
                }
                Err(e) => e,
            };
            match err {
                ReadError::Empty => {
                    *stuck = None;
                    std::thread::yield_now();
                }
                ReadError::Pending => {
                    let since = *stuck.get_or_insert_with(Instant::now);
                    let force = since.elapsed() > TIMEOUT;
                    if c.unblock(&slot_alive, force) == Unblock::Skipped {
                        unblocked += 1;
                        if force {
                            forced += 1;
                        } else {
                            detect.push(killed_at.elapsed());
                        }
                        *stuck = None;
                    } else {
                        std::thread::yield_now();
                    }
                }
                e @ ReadError::Corrupt(_) => panic!("read: {e}"),
            }
        }
    };
    let mut stuck = None;
    for generation in 0..KILLS {
        let mut p = KillOnDrop(
            child("record-crasher", &[&name, &generation.to_string()])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap(),
        );
        // Wait for it to attach (libtest prints a line or two first), then let it run 0–3 ms.
        let mut out = std::io::BufReader::new(p.0.stdout.take().unwrap());
        let mut line = String::new();
        while line.trim() != "OUT:ready" {
            line.clear();
            assert!(
                std::io::BufRead::read_line(&mut out, &mut line).unwrap() > 0,
                "crasher exited before it was ready"
            );
        }
        let run = Duration::from_micros(rng.next() % 3000);
        drain(&mut c, Instant::now() + run, &mut stuck, killed_at);
        // std's kill is SIGKILL on Unix.
        p.0.kill().unwrap();
        p.0.wait().unwrap();
        killed_at = Instant::now();
        drain(
            &mut c,
            Instant::now() + Duration::from_millis(5),
            &mut stuck,
            killed_at,
        );
    }
    // Everything left: drain until empty (past the timeout for a header-less claim).
    drain(&mut c, Instant::now() + TIMEOUT * 3, &mut stuck, killed_at);
    assert_eq!(c.read().err(), Some(ReadError::Empty));
    assert_eq!(c.skipped(), unblocked, "every unblocked claim counted");
    assert!(
        unblocked > u64::from(KILLS) / 2,
        "only {unblocked} kills landed between claim and commit"
    );
    detect.sort_unstable();
    // Printed, not asserted: tests never assert timings (the torture suite reports them).
    let p99 = detect[(detect.len() * 99 / 100).min(detect.len() - 1)];
    println!(
        "record ring: {KILLS} producers killed, {delivered} records delivered whole, \
         {unblocked} dead claims skipped ({forced} after the {TIMEOUT:?} timeout: header not \
         written yet), kill to skip: p50 {:?}, p99 {p99:?}, max {:?}",
        detect[detect.len() / 2],
        detect[detect.len() - 1]
    );
}

/// Broadcast: messages sent, slots (of 64 bytes), and the producer's bursts: it sends this many
/// as fast as it can, then sleeps `BCAST_GAP`, so that readers sharing one core keep up.
fn bcast_messages() -> u64 {
    std::env::var("SHMLANE_BCAST")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1 << 20)
}
const BCAST_CAP: u64 = 1 << 16;
const BCAST_BURST: u64 = 1 << 14;
const BCAST_GAP: Duration = Duration::from_millis(3);
/// Messages the slow reader reads between two stalls.
const BCAST_SLOW_RUN: u64 = 1000;

fn bcast_ring<'a>(seg: &'a Segment, name: &str) -> Region<'a> {
    seg.find_region(name).expect("ring region")
}

/// Waits (sleeping) until `word` reaches `target`; panics after a minute, naming `what`.
fn wait_for(word: &AtomicU64, target: u64, what: &str) {
    let t0 = Instant::now();
    // ORDERING: Acquire pairs with the Release store of the process that advances `word`
    // (test bookkeeping only; the ring's own synchronisation does not depend on it).
    while word.load(Ordering::Acquire) < target {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "{what}: stuck below {target}"
        );
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// A reader process (`kind` is `fast0`, `fast1` or `slow`): checks every message it gets
/// (sequence and content), follows each reported loss, and prints what it delivered and lost.
/// A fast reader publishes how far it has read (the test producer paces itself by it, so the
/// fast readers are never overrun however the machine schedules them; the ring itself never
/// waits). The slow one reads `BCAST_SLOW_RUN` messages, then stalls until the producer has
/// sent more than a ring's worth past it, so every stall ends in a lap, on any machine.
fn bcast_reader(name: &str, kind: &str) -> i32 {
    pin_to(1);
    let seg = Segment::posix(name).role(4).open().expect("open segment");
    let r = bcast_ring(&seg, "ring");
    let slow = kind == "slow";
    let progress = (!slow).then(|| counter(&seg, kind));
    let sent = counter(&seg, "sent");
    // SAFETY: the region lives as long as `seg`, which outlives the reader.
    let mut rx = unsafe { BroadcastRing::reader(r.as_ptr(), r.len()) }.expect("attach reader");
    counter(&seg, "ready").fetch_add(1, Ordering::AcqRel);
    let n = bcast_messages();
    let (mut next, mut delivered, mut laps) = (0u64, 0u64, 0u64);
    let mut buf = [0u8; 48];
    while next < n {
        match rx.recv(&mut buf) {
            Ok(len) => {
                assert_eq!(len, 32);
                let words: [u64; 4] = bytemuck_words(&buf[..32]);
                assert_eq!(
                    words,
                    message(next),
                    "message {next} torn, corrupt or out of order"
                );
                next += 1;
                delivered += 1;
                if let Some(p) = progress.filter(|_| next % 256 == 0) {
                    // ORDERING: Release pairs with the Acquire load in `wait_for` (producer).
                    p.store(next, Ordering::Release);
                }
                if slow && delivered % BCAST_SLOW_RUN == 0 {
                    wait_for(sent, (next + BCAST_CAP + 1).min(n), "slow reader's stall");
                }
            }
            Err(RecvError::Lapped { lost }) => {
                laps += 1;
                next += lost;
            }
            Err(RecvError::Empty) => {
                if let Some(p) = progress {
                    // ORDERING: Release pairs with the Acquire load in `wait_for` (producer).
                    p.store(next, Ordering::Release);
                }
                // Yield at once: a reader that polls the slot being written takes its cache
                // line away from the producer between the producer's stores, and the three
                // readers share one core.
                std::thread::yield_now();
            }
            Err(e) => panic!("recv: {e}"),
        }
    }
    assert_eq!(next, n, "read past the last message");
    println!("OUT:{delivered} {} {laps}", rx.lost());
    0
}

fn bytemuck_words(b: &[u8]) -> [u64; 4] {
    core::array::from_fn(|i| u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().unwrap()))
}

/// Sends `BCAST_BURST` messages from `*seq` on; returns the time the burst took.
fn bcast_burst(tx: &mut shmlane_ring::BroadcastProducer, seq: &mut u64) -> Duration {
    let t = Instant::now();
    for _ in 0..BCAST_BURST {
        let m = message(*seq);
        let mut b = [0u8; 32];
        for (i, w) in m.iter().enumerate() {
            b[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
        }
        tx.send(&b).unwrap();
        *seq += 1;
    }
    t.elapsed()
}

/// Broadcast fan-out: one producer (this process, pinned to core 0) and three reader processes
/// (pinned to core 1), one deliberately slow. The fast readers get every message in order; the
/// slow one is lapped and its deliveries plus reported losses are exactly the messages sent.
/// The producer alternates a burst into this ring with a burst into an identical ring nobody
/// reads and prints both rates: the ring never makes the producer wait for readers (between
/// bursts, outside the timed part, the test lets the fast readers catch up so that they are
/// never overrun, whatever the scheduler does).
#[test]
fn broadcast_one_producer_three_readers_between_processes() {
    let name = unique("ring-bcast");
    let _c = Cleanup(name.clone());
    let size = BroadcastRing::required_size(BCAST_CAP, 64) as u64;
    let seg = Segment::posix(&name)
        .size(2 * size + 64 * 1024)
        .role(1)
        .create_with(|s| {
            for ring in ["ring", "solo"] {
                let r = s.region(ring, size, 1)?;
                // SAFETY: a fresh region nobody else can see before the segment is published.
                unsafe { BroadcastRing::init(r.as_ptr(), r.len(), BCAST_CAP, 64, u64::MAX - 5000) }
                    .expect("init ring");
            }
            for word in ["ready", "sent", "fast0", "fast1"] {
                s.region(word, 8, 1)?;
            }
            Ok::<_, shmlane_segment::RegionError>(())
        })
        .expect("create segment");
    seg.prefault();
    let is_alive = alive(&seg);
    let (ring, solo) = (bcast_ring(&seg, "ring"), bcast_ring(&seg, "solo"));
    // SAFETY: the regions live as long as `seg`, which outlives the producers.
    let (mut tx, mut tx_solo) = unsafe {
        (
            BroadcastRing::producer(ring.as_ptr(), ring.len(), token(&seg), &is_alive),
            BroadcastRing::producer(solo.as_ptr(), solo.len(), token(&seg), &is_alive),
        )
    };
    let (tx, tx_solo) = (
        tx.as_mut().expect("producer"),
        tx_solo.as_mut().expect("producer"),
    );
    let readers: Vec<_> = ["fast0", "fast1", "slow"]
        .iter()
        .map(|kind| child("bcast-reader", &[&name, kind]).spawn().unwrap())
        .collect();
    let t0 = Instant::now();
    while counter(&seg, "ready").load(Ordering::Acquire) < 3 {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "readers did not attach"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let pinned = pin_to(0);
    let n = bcast_messages();
    let (mut seq, mut seq_solo) = (0u64, 0u64);
    let (mut with, mut without) = (Vec::new(), Vec::new());
    while seq < n {
        without.push(bcast_burst(tx_solo, &mut seq_solo));
        std::thread::sleep(BCAST_GAP);
        // Pace the test (not the ring): start a burst only when both fast readers have room
        // for it, with a margin, so a reader descheduled for long is not overrun.
        let room = (seq + BCAST_BURST + 1024).saturating_sub(BCAST_CAP);
        for fast in ["fast0", "fast1"] {
            wait_for(counter(&seg, fast), room, "a fast reader");
        }
        with.push(bcast_burst(tx, &mut seq));
        // ORDERING: Release pairs with the slow reader's Acquire load in `wait_for`.
        counter(&seg, "sent").store(seq, Ordering::Release);
        std::thread::sleep(BCAST_GAP);
    }
    let mut outs = Vec::new();
    for r in readers {
        let (code, out) = finish(r, LIMIT);
        assert_eq!(code, 0, "reader failed: {out:?}");
        let f: Vec<u64> = out[0].split(' ').map(|v| v.parse().unwrap()).collect();
        outs.push((f[0], f[1], f[2]));
    }
    for (i, &(delivered, lost, laps)) in outs.iter().enumerate() {
        assert_eq!(delivered + lost, n, "reader {i}: delivered + lost != sent");
        if i < 2 {
            assert_eq!((lost, laps), (0, 0), "fast reader {i} lost messages");
        }
    }
    let (delivered, lost, laps) = outs[2];
    assert!(laps > 0, "the slow reader was never lapped");
    let rate = |v: &mut Vec<Duration>| {
        v.sort();
        let m = |d: Duration| f64::from(BCAST_BURST as u32) / d.as_secs_f64() / 1e6;
        (m(v[v.len() / 2]), m(v[v.len() * 9 / 10]))
    };
    let ((w50, w90), (s50, s90)) = (rate(&mut with), rate(&mut without));
    println!(
        "broadcast: {n} messages of 32 B, {} slots; producer pinned: {pinned}\n\
         producer M msg/s per burst of {BCAST_BURST}, median (slowest 10 %): 3 readers {w50:.1} \
         ({w90:.1}), no reader {s50:.1} ({s90:.1}), ratio {:.2}\n\
         fast readers: {} and {} delivered, 0 lost; slow reader: {delivered} delivered, {lost} \
         lost in {laps} laps, exactly accounted",
        BCAST_CAP,
        w50 / s50,
        outs[0].0,
        outs[1].0,
    );
}

/// Child: attaches to the MPMC ring as a sender (`send`) or a receiver (`recv`) with an intent
/// entry, takes the next position and stops before publishing it (as a process killed right
/// after its CAS would), says so, and hangs until killed.
fn mpmc_abandon(name: &str, side: &str) -> i32 {
    let seg = Segment::posix(name).role(5).open().expect("open segment");
    let r = seg.find_region("ring").expect("ring region");
    let (t, alive) = (token(&seg), alive(&seg));
    // SAFETY: the region lives as long as `seg`, which outlives the handle (it is never
    // dropped: the process is killed).
    let pos = unsafe {
        if side == "send" {
            MpmcRing::<u64>::sender_owned(r.as_ptr(), r.len(), t, &alive)
                .expect("attach sender")
                .abandon_push_for_tests(true)
        } else {
            MpmcRing::<u64>::receiver_owned(r.as_ptr(), r.len(), t, &alive)
                .expect("attach receiver")
                .abandon_pop_for_tests(true)
        }
    };
    println!("abandoned {pos}");
    std::thread::sleep(Duration::from_secs(300));
    0
}

/// Spawns an `mpmc-abandon` child for `side`, waits until it has taken its position, then
/// SIGKILLs it and reaps it.
fn kill_in_the_window(name: &str, side: &str) {
    let mut c = child("mpmc-abandon", &[name, side])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = std::io::BufReader::new(c.stdout.take().unwrap());
    let taken = std::io::BufRead::lines(out).any(|l| l.is_ok_and(|l| l.starts_with("abandoned")));
    assert!(taken, "the child ended before it took its position");
    c.kill().unwrap();
    c.wait().unwrap();
}

/// MPMC: 10 sender processes and 10 receiver processes are SIGKILLed between their position
/// CAS and their stamp store (an 8-slot ring starting near `u64::MAX`), between messages of a
/// live sender and receiver in this process. Each sender's hole is skipped and each receiver's
/// slot given back, once its process is dead (a hole whose claimer lives is never taken), and
/// every other message is delivered once, in order (before the fix: the receiver stopped at
/// the first hole for good, or the sender found the ring full at the held slot for good).
#[test]
fn mpmc_endpoints_killed_mid_operation_are_recovered() {
    const ROUNDS: u64 = 10;
    const CAP: u64 = 8;
    let name = unique("ring-mpmc-kill");
    let _c = Cleanup(name.clone());
    let ring = MpmcRing::<u64>::required_size(CAP) as u64;
    let seg = Segment::posix(&name)
        .size(ring + 128 * 1024)
        .create_with(|s| {
            let r = s.region("ring", ring, 2)?;
            // SAFETY: a fresh region nobody else can see before the segment is published.
            unsafe { MpmcRing::<u64>::init(r.as_ptr(), r.len(), CAP, u64::MAX - 20) }
                .expect("init ring");
            Ok::<_, shmlane_segment::RegionError>(())
        })
        .expect("create segment");
    let r = seg.find_region("ring").unwrap();
    let alive = alive(&seg);
    // SAFETY: the region lives as long as `seg`, which outlives both handles.
    let (tx, rx) = unsafe {
        (
            MpmcRing::<u64>::sender_owned(r.as_ptr(), r.len(), token(&seg), &alive).unwrap(),
            MpmcRing::<u64>::receiver_owned(r.as_ptr(), r.len(), token(&seg), &alive).unwrap(),
        )
    };
    let (mut sent, mut want, mut skipped, mut given_back) = (0u64, 0u64, 0, 0);
    let t0 = Instant::now();
    let push = |v: u64, given_back: &mut u64| loop {
        match tx.push(v) {
            Ok(()) => break,
            Err(PushError::Full(_)) => match tx.recover(&alive) {
                Hole::Recovered => *given_back += 1,
                h => panic!("full with {h:?} after {:?}", t0.elapsed()),
            },
            Err(e) => panic!("{e}"),
        }
    };
    for round in 0..ROUNDS {
        // A sender dies in its window: a hole, then a live message behind it.
        kill_in_the_window(&name, "send");
        push(sent, &mut given_back);
        sent += 1;
        let got = loop {
            match rx.pop() {
                Ok(v) => break v,
                Err(PopError::Empty) => match rx.recover(&alive) {
                    Hole::Recovered => skipped += 1,
                    h => panic!("empty with {h:?} in round {round}"),
                },
                Err(e) => panic!("{e}"),
            }
        };
        assert_eq!(got, want);
        want += 1;
        // A receiver dies holding the next message (lost with it); the sender then fills the
        // ring until it reaches the held slot a lap later.
        push(sent, &mut given_back);
        sent += 1;
        kill_in_the_window(&name, "recv");
        want += 1;
        for _ in 0..CAP {
            push(sent, &mut given_back);
            sent += 1;
        }
        while want < sent {
            assert_eq!(rx.pop(), Ok(want));
            want += 1;
        }
        assert_eq!(rx.pop(), Err(PopError::Empty));
    }
    assert_eq!((skipped, given_back), (ROUNDS, ROUNDS));
    assert_eq!(rx.recover(&alive), Hole::None);
    assert_eq!(tx.recover(&alive), Hole::None);
}
