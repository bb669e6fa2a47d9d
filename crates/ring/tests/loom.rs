//! loom models of the rings. Run with
//! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 cargo test -p shmlane-ring --test loom --release`.
//!
//! Each model can fail: `.ci/loom-mutants` rebuilds with one ordering weakened at a time
//! (`--cfg shmlane_weaken="..."`, see `src/sync.rs`) and requires the matching model to fail.
#![cfg(loom)]

use std::alloc::{Layout, alloc_zeroed, dealloc};

use loom::thread;
use shmlane_ring::{
    BroadcastRing, CursorTable, Hole, LatestError, LatestReader, LatestRing, LatestWriter,
    MpmcRing, PopError, PushError, ReadError, Receiver, RecordConsumer, RecordProducer, RecordRing,
    RecvError, Sender, SpscRing, StampedRing, Start, Unblock,
};

/// Zeroed, 128-byte aligned memory for one model iteration.
struct Mem(*mut u8, Layout);

impl Mem {
    fn new(len: usize) -> Self {
        let layout = Layout::from_size_align(len, 128).unwrap();
        // SAFETY: non-zero size.
        Self(unsafe { alloc_zeroed(layout) }, layout)
    }
}

impl Drop for Mem {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { dealloc(self.0, self.1) };
    }
}

// SAFETY: plain memory; the rings synchronise access to it.
unsafe impl Send for Mem {}
// SAFETY: as above.
unsafe impl Sync for Mem {}

fn alive(_: u64) -> bool {
    true
}

/// A 256-byte record ring in fresh memory whose first position is `start`: a producer per owner
/// tag (attached with `is_alive`), and the consumer. Drop the handles before the memory.
fn record_ring(
    start: u64,
    owners: &[u32],
    is_alive: &dyn Fn(u32) -> bool,
) -> (Vec<RecordProducer>, RecordConsumer, std::sync::Arc<Mem>) {
    let len = RecordRing::required_size(256);
    let mem = std::sync::Arc::new(Mem::new(len));
    let ptr = mem.0;
    // SAFETY: the memory is returned with the handles; the callers drop it last.
    unsafe {
        RecordRing::init(ptr, len, 256, start).unwrap();
        let ps = owners
            .iter()
            .map(|&o| RecordRing::producer(ptr, len, o, is_alive).unwrap())
            .collect();
        (ps, RecordRing::consumer(ptr, len, 9, &alive).unwrap(), mem)
    }
}

/// Producer pushes 3 values through a 2-slot ring whose positions wrap past u64::MAX; the
/// consumer must get them in order, and loom checks every slot access for races.
#[test]
fn spsc_push_pop_wrap() {
    loom::model(|| {
        let mem = std::sync::Arc::new(Mem::new(SpscRing::<u64>::required_size(2)));
        let (ptr, len) = (mem.0, mem.1.size());
        // SAFETY: `mem` outlives both handles (joined below, dropped last).
        let (mut p, mut c) = unsafe {
            SpscRing::<u64>::init(ptr, len, 2, u64::MAX - 1).unwrap();
            (
                SpscRing::<u64>::producer(ptr, len, 1, &alive).unwrap(),
                SpscRing::<u64>::consumer(ptr, len, 2, &alive).unwrap(),
            )
        };
        let t = thread::spawn(move || {
            for i in 0..3u64 {
                let mut v = i + 10;
                while let Err(e) = p.push(v) {
                    v = e.into_inner();
                    thread::yield_now();
                }
            }
        });
        for i in 0..3u64 {
            loop {
                match c.pop() {
                    Ok(v) => {
                        assert_eq!(v, i + 10);
                        break;
                    }
                    Err(PopError::Empty) => thread::yield_now(),
                    Err(e) => panic!("{e}"),
                }
            }
        }
        t.join().unwrap();
        drop(c);
        drop(mem);
    });
}

/// Zero-copy chunks: the producer fills a 2-slot chunk in place and commits, then pushes
/// one more across the wrap; the consumer reads chunks in place.
#[test]
fn spsc_chunks() {
    loom::model(|| {
        let mem = std::sync::Arc::new(Mem::new(SpscRing::<u32>::required_size(2)));
        let (ptr, len) = (mem.0, mem.1.size());
        // SAFETY: as in `spsc_push_pop_wrap`.
        let (mut p, mut c) = unsafe {
            SpscRing::<u32>::init(ptr, len, 2, 1).unwrap();
            (
                SpscRing::<u32>::producer(ptr, len, 1, &alive).unwrap(),
                SpscRing::<u32>::consumer(ptr, len, 2, &alive).unwrap(),
            )
        };
        let t = thread::spawn(move || {
            let mut w = p.write_chunk(2).unwrap();
            w.write(0, 7);
            w.write(1, 8);
            w.commit_all();
            loop {
                match p.write_chunk(1) {
                    Ok(mut w) => {
                        w.write(0, 9);
                        w.commit_all();
                        break;
                    }
                    Err(_) => thread::yield_now(),
                }
            }
        });
        let mut got = Vec::new();
        while got.len() < 3 {
            match c.read_chunk(1) {
                Ok(r) => {
                    got.push(r.get(0));
                    r.commit_all();
                }
                Err(_) => thread::yield_now(),
            }
        }
        assert_eq!(got, [7, 8, 9]);
        t.join().unwrap();
        drop(c);
        drop(mem);
    });
}

/// An MPMC ring of `cap` u64 slots on fresh memory, first position `start`.
fn mpmc(cap: u64, start: u64) -> (Sender<u64>, Receiver<u64>, std::sync::Arc<Mem>) {
    let mem = std::sync::Arc::new(Mem::new(MpmcRing::<u64>::required_size(cap)));
    let (ptr, len) = (mem.0, mem.1.size());
    // SAFETY: the caller keeps `mem` alive until every handle is dropped.
    unsafe {
        MpmcRing::<u64>::init(ptr, len, cap, start).unwrap();
        (
            MpmcRing::<u64>::sender(ptr, len).unwrap(),
            MpmcRing::<u64>::receiver(ptr, len).unwrap(),
            mem,
        )
    }
}

/// Two producers and two consumers (loom's thread limit) through a 2-slot MPMC ring whose
/// positions wrap past `u64::MAX`. Each producer pushes one value; each consumer makes one
/// non-blocking attempt, racing the producers; the main thread then drains the rest. Every
/// value arrives exactly once, and loom checks each slot access for races. Nobody spins on an
/// empty ring, which keeps the model to a few minutes at 3 preemptions.
#[test]
fn mpmc_two_by_two() {
    loom::model(|| {
        let (tx, rx, mem) = mpmc(2, u64::MAX);
        let producers: Vec<_> = (0..2u64)
            .map(|id| {
                let tx = tx.clone();
                // Two values, two slots: a push can never find the ring full.
                thread::spawn(move || tx.push(100 + id).unwrap())
            })
            .collect();
        let rx2 = rx.clone();
        let other = thread::spawn(move || match rx2.pop() {
            Ok(v) => Some(v),
            Err(PopError::Empty) => None,
            Err(e) => panic!("{e}"),
        });
        let mut got: Vec<u64> = match rx.pop() {
            Ok(v) => vec![v],
            Err(PopError::Empty) => vec![],
            Err(e) => panic!("{e}"),
        };
        got.extend(other.join().unwrap());
        for p in producers {
            p.join().unwrap();
        }
        while got.len() < 2 {
            got.push(
                rx.pop()
                    .expect("both pushes finished, values must be there"),
            );
        }
        assert_eq!(rx.pop(), Err(PopError::Empty));
        got.sort_unstable();
        assert_eq!(got, [100, 101]);
        drop((tx, rx));
        drop(mem);
    });
}

/// Slot reuse across laps: one producer pushes four values through a 2-slot MPMC ring while a
/// consumer pops them, so every slot is freed by the consumer's stamp and rewritten by the
/// producer. FIFO order holds and no read races the next lap's write.
#[test]
fn mpmc_lap_reuse() {
    loom::model(|| {
        let (tx, rx, mem) = mpmc(2, u64::MAX - 1);
        let t = thread::spawn(move || {
            for i in 0..4u64 {
                let mut v = i + 10;
                while let Err(e) = tx.push(v) {
                    v = e.into_inner();
                    thread::yield_now();
                }
            }
        });
        for i in 0..4u64 {
            loop {
                match rx.pop() {
                    Ok(v) => {
                        assert_eq!(v, i + 10);
                        break;
                    }
                    Err(PopError::Empty) => thread::yield_now(),
                    Err(e) => panic!("{e}"),
                }
            }
        }
        t.join().unwrap();
        drop(rx);
        drop(mem);
    });
}

/// A 2-slot MPMC ring from `start` with senders and receivers attached with owner tokens
/// (intent entries). Owners 7 and 8 are dead (`dead_owner`).
#[allow(clippy::type_complexity)]
fn mpmc_owned(
    start: u64,
    tx_owners: &[u64],
    rx_owners: &[u64],
) -> (Vec<Sender<u64>>, Vec<Receiver<u64>>, std::sync::Arc<Mem>) {
    let mem = std::sync::Arc::new(Mem::new(MpmcRing::<u64>::required_size(2)));
    let (ptr, len) = (mem.0, mem.1.size());
    // SAFETY: the caller keeps `mem` alive until every handle is dropped.
    unsafe {
        MpmcRing::<u64>::init(ptr, len, 2, start).unwrap();
        let txs = tx_owners
            .iter()
            .map(|&o| MpmcRing::<u64>::sender_owned(ptr, len, o, &dead_owner).unwrap())
            .collect();
        let rxs = rx_owners
            .iter()
            .map(|&o| MpmcRing::<u64>::receiver_owned(ptr, len, o, &dead_owner).unwrap())
            .collect();
        (txs, rxs, mem)
    }
}

/// Liveness in the MPMC crash models: owners 7 and 8 are dead, every other one lives.
fn dead_owner(o: u64) -> bool {
    o != 7 && o != 8
}

/// A producer (owner 7) died between its CAS on `enq` and its stamp store: the first position
/// is a hole. A live producer sends one value from a thread while the consumer pops, and
/// recovers whenever the ring looks empty. The value arrives exactly once, after the hole was
/// skipped (loom checks the value accesses for races), and nothing else arrives; the producer,
/// after its push, never finds the positions inconsistent (the skip mark at `deq`).
#[test]
fn mpmc_dead_producer_hole_is_skipped() {
    loom::model(|| {
        let (mut txs, rxs, mem) = mpmc_owned(u64::MAX, &[7, 1], &[2]);
        let tx = txs.pop().unwrap();
        txs.pop().unwrap().abandon_push_for_tests(true);
        let t = thread::spawn(move || {
            tx.push(5).unwrap();
            // What a blocked channel sender checks with its hole checks: the skip mark the
            // consumer may just have stored at the dequeue position is a sound state.
            assert!(tx.positions_consistent(), "skip mark taken for corruption");
        });
        let rx = &rxs[0];
        let mut skipped = 0;
        loop {
            match rx.pop() {
                Ok(v) => {
                    assert_eq!(v, 5);
                    break;
                }
                Err(PopError::Empty) => {
                    if rx.recover(&dead_owner) == Hole::Recovered {
                        skipped += 1;
                    }
                    thread::yield_now();
                }
                Err(e) => panic!("{e}"),
            }
        }
        t.join().unwrap();
        assert_eq!(skipped, 1);
        assert_eq!(rx.pop(), Err(PopError::Empty));
        drop(rxs);
        drop(mem);
    });
}

/// A producer (owner 7) announced the first position and died before its CAS; a live producer
/// then takes that very position and sends. A consumer thread, racing it, yields once and tries
/// to recover the position, and must not skip it: whenever it sees `enq` past the position it
/// also sees the live producer's intent (`MPMC_ENQ_CAS` Release, `enq` loaded with Acquire in
/// `recover`). The value then arrives. (The recovering consumer is a fresh thread that has read
/// no intent before its yield: loom does not give a thread back a stale value it saw before
/// yielding, which would hide the race.) Fails with `mpmc_enq_cas` weakened.
#[test]
fn mpmc_dead_intent_never_skips_a_live_producer() {
    loom::model(|| {
        let (mut txs, mut rxs, mem) = mpmc_owned(u64::MAX, &[7, 1], &[2]);
        let tx = txs.pop().unwrap();
        txs.pop().unwrap().abandon_push_for_tests(false);
        let rx = rxs.pop().unwrap();
        let t = thread::spawn(move || tx.push(5).unwrap());
        let r = thread::spawn(move || {
            thread::yield_now();
            assert_ne!(
                rx.recover(&dead_owner),
                Hole::Recovered,
                "live claim skipped"
            );
            rx
        });
        t.join().unwrap();
        let rx = r.join().unwrap();
        assert_eq!(rx.pop(), Ok(5));
        assert_eq!(rx.pop(), Err(PopError::Empty));
        drop(rx);
        drop(mem);
    });
}

/// A consumer (owner 8) died between its CAS on `deq` and its stamp store, holding the first
/// slot. The producer pushes two more values (the second one lands in that slot a lap later,
/// so it recovers whenever the ring is full) while a live consumer pops them from a thread.
/// Both arrive exactly once and in order; the held slot is given back exactly once.
#[test]
fn mpmc_dead_consumer_slot_is_given_back() {
    loom::model(|| {
        let (txs, mut rxs, mem) = mpmc_owned(u64::MAX, &[1], &[8, 2]);
        let rx = rxs.pop().unwrap();
        let tx = &txs[0];
        tx.push(1).unwrap();
        rxs.pop().unwrap().abandon_pop_for_tests(true);
        let t = thread::spawn(move || {
            for want in [2, 3] {
                loop {
                    match rx.pop() {
                        Ok(v) => {
                            assert_eq!(v, want);
                            break;
                        }
                        Err(PopError::Empty) => thread::yield_now(),
                        Err(e) => panic!("{e}"),
                    }
                }
            }
        });
        let mut given_back = 0;
        for v in [2, 3] {
            let mut v = v;
            loop {
                match tx.push(v) {
                    Ok(()) => break,
                    Err(PushError::Full(back)) => {
                        v = back;
                        if tx.recover(&dead_owner) == Hole::Recovered {
                            given_back += 1;
                        }
                        thread::yield_now();
                    }
                    Err(e) => panic!("{e}"),
                }
            }
        }
        t.join().unwrap();
        assert_eq!(given_back, 1);
        drop(txs);
        drop(mem);
    });
}

/// A consumer (owner 8) announced the first position and died before its CAS; a live consumer
/// then takes that very position (the value there) from a thread. The producer fills the ring
/// and, whenever it finds the slot still held, recovers: it must never give back the live
/// consumer's slot while that consumer may still read it (`MPMC_DEQ_CAS` Release, `deq`
/// loaded with Acquire in `recover`). Fails with `mpmc_deq_cas` weakened.
#[test]
fn mpmc_dead_intent_never_frees_a_live_consumers_slot() {
    loom::model(|| {
        let (txs, mut rxs, mem) = mpmc_owned(u64::MAX, &[1], &[8, 2]);
        let rx = rxs.pop().unwrap();
        let tx = &txs[0];
        tx.push(1).unwrap();
        rxs.pop().unwrap().abandon_pop_for_tests(false);
        let t = thread::spawn(move || {
            for want in [1, 2] {
                loop {
                    match rx.pop() {
                        Ok(v) => {
                            assert_eq!(v, want);
                            break;
                        }
                        Err(PopError::Empty) => thread::yield_now(),
                        Err(e) => panic!("{e}"),
                    }
                }
            }
        });
        tx.push(2).unwrap();
        let mut v = 3;
        loop {
            match tx.push(v) {
                Ok(()) => break,
                Err(PushError::Full(back)) => {
                    v = back;
                    assert_ne!(
                        tx.recover(&dead_owner),
                        Hole::Recovered,
                        "live claim skipped"
                    );
                    thread::yield_now();
                }
                Err(e) => panic!("{e}"),
            }
        }
        t.join().unwrap();
        drop(txs);
        drop(mem);
    });
}

/// Review (rev1): entry take-over racing a death. Producer 7 takes the first position and
/// dies there (its death published with Release, as the kernel's release of its slot lock
/// orders its last stores before any later liveness check); every entry is held, so a sender
/// attaching meanwhile (owner 3) may take only the dead holder's, and only once its hole is
/// resolved. It must not take it while the hole pends (that would erase the only intent
/// naming it: the hole would never be recovered, a wedge). `take_intent` reads the dead
/// holder's intent Relaxed: this is sound because the liveness check that judged the holder
/// dead happens-after its last intent store. (With the death flag read Relaxed instead, loom
/// finds exactly that wedge: the take-over reads a stale intent.)
#[test]
fn mpmc_take_over_never_erases_a_dead_claimers_pending_hole() {
    loom::model(|| {
        let dead = std::sync::Arc::new(loom::sync::atomic::AtomicBool::new(false));
        let alive_now = {
            let dead = dead.clone();
            move |o: u64| o != 7 || !dead.load(loom::sync::atomic::Ordering::Acquire)
        };
        let mut owners = vec![1; shmlane_ring::MPMC_INTENTS];
        owners[0] = 7;
        let (mut txs, rxs, mem) = mpmc_owned(u64::MAX, &owners, &[2]);
        let victim = txs.remove(0);
        let d = {
            let dead = dead.clone();
            thread::spawn(move || {
                victim.abandon_push_for_tests(true);
                dead.store(true, loom::sync::atomic::Ordering::Release);
            })
        };
        let a = {
            let (mem, alive_now) = (mem.clone(), alive_now.clone());
            thread::spawn(move || {
                let (ptr, len) = (mem.0, mem.1.size());
                // SAFETY: `mem` outlives the handle (dropped before it below).
                unsafe { MpmcRing::<u64>::sender_owned(ptr, len, 3, &alive_now).unwrap() }
            })
        };
        d.join().unwrap();
        let late = a.join().unwrap();
        let rx = &rxs[0];
        assert_eq!(
            rx.recover(&alive_now),
            Hole::Recovered,
            "the dead claimer's hole must stay named (late sender has entry: {})",
            late.has_intent()
        );
        late.push(5).unwrap();
        assert_eq!(rx.pop(), Ok(5));
        drop((late, txs, rxs));
        drop(mem);
    });
}

/// Review (rev1): an endpoint without an intent entry (all entries held) racing a dead stale
/// intent. Producer 7 announced the first position and died before its CAS; a live sender
/// that got no entry (it counts its operation in `anon`) takes that very position while a
/// fresh consumer thread tries to recover it. The recoverer sees `enq` past the position
/// (Acquire), so it sees the `anon` count taken before the CAS and waits: it must never skip
/// the live claim. No other model runs the entry-less path.
#[test]
fn mpmc_dead_intent_never_skips_a_live_producer_without_an_entry() {
    loom::model(|| {
        let mut owners = vec![1; shmlane_ring::MPMC_INTENTS];
        owners[0] = 7;
        let (mut txs, mut rxs, mem) = mpmc_owned(u64::MAX, &owners, &[2]);
        txs.remove(0).abandon_push_for_tests(false);
        let (ptr, len) = (mem.0, mem.1.size());
        // SAFETY: `mem` outlives the handle (joined and dropped below, before `mem`).
        let tx = unsafe { MpmcRing::<u64>::sender_owned(ptr, len, 1, &dead_owner).unwrap() };
        assert!(!tx.has_intent());
        let rx = rxs.pop().unwrap();
        let t = thread::spawn(move || tx.push(5).unwrap());
        let r = thread::spawn(move || {
            thread::yield_now();
            assert_ne!(
                rx.recover(&dead_owner),
                Hole::Recovered,
                "live claim skipped"
            );
            rx
        });
        t.join().unwrap();
        let rx = r.join().unwrap();
        assert_eq!(rx.pop(), Ok(5));
        assert_eq!(rx.pop(), Err(PopError::Empty));
        drop((rx, txs));
        drop(mem);
    });
}

/// Stamped SPSC: 3 values through a 2-slot ring whose positions wrap past u64::MAX, so the
/// producer reuses a slot the consumer freed; the consumer peeks before each pop. loom checks
/// each value access against the stamp that should order it.
#[test]
fn stamped_push_pop_wrap() {
    loom::model(|| {
        let mem = std::sync::Arc::new(Mem::new(StampedRing::<u64>::required_size(2)));
        let (ptr, len) = (mem.0, mem.1.size());
        // SAFETY: `mem` outlives both handles (joined below, dropped last).
        let (mut p, mut c) = unsafe {
            StampedRing::<u64>::init(ptr, len, 2, u64::MAX - 1).unwrap();
            (
                StampedRing::<u64>::producer(ptr, len, 1, &alive).unwrap(),
                StampedRing::<u64>::consumer(ptr, len, 2, &alive).unwrap(),
            )
        };
        let t = thread::spawn(move || {
            for i in 0..3u64 {
                let mut v = i + 10;
                while let Err(e) = p.push(v) {
                    v = e.into_inner();
                    thread::yield_now();
                }
            }
        });
        for i in 0..3u64 {
            loop {
                match c.peek() {
                    Ok(v) => {
                        assert_eq!(v, i + 10);
                        assert_eq!(c.pop(), Ok(i + 10));
                        break;
                    }
                    Err(PopError::Empty) => thread::yield_now(),
                    Err(e) => panic!("{e}"),
                }
            }
        }
        t.join().unwrap();
        drop(c);
        drop(mem);
    });
}

/// Record ring of 256 bytes whose first position is 16 bytes before the end: two producers send
/// one 10-byte record each, so whichever claims first pads the end and claims again at the start
/// (the wrap), while the consumer reads. loom checks every payload word against the header that
/// should order it.
#[test]
fn record_two_producers_wrap_with_padding() {
    loom::model(|| {
        let (mut ps, mut c, mem) = record_ring(240, &[1], &|_| true);
        let p1 = ps.pop().unwrap();
        let p2 = p1.clone();
        let threads: Vec<_> = [(p1, 1u8), (p2, 2u8)]
            .into_iter()
            .map(|(mut p, id)| {
                thread::spawn(move || {
                    while p.send(&[id; 10]).is_err() {
                        thread::yield_now();
                    }
                })
            })
            .collect();
        let mut seen = Vec::new();
        while seen.len() < 2 {
            match c.read() {
                Ok(r) => {
                    let v = r.to_vec();
                    assert!(v == [1; 10] || v == [2; 10], "torn record {v:?}");
                    seen.push(v[0]);
                }
                Err(ReadError::Empty | ReadError::Pending) => thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        }
        seen.sort_unstable();
        assert_eq!(seen, [1, 2]);
        for t in threads {
            t.join().unwrap();
        }
        drop(c);
        drop(mem);
    });
}

/// One producer aborts its claim while another sends: the consumer gets only the sent record
/// and counts one skip.
#[test]
fn record_abort_is_skipped() {
    loom::model(|| {
        let (mut ps, mut c, mem) = record_ring(0, &[1], &|_| true);
        let mut p1 = ps.pop().unwrap();
        let mut p2 = p1.clone();
        let t = thread::spawn(move || {
            let mut claim = p1.claim(12).unwrap();
            claim.write(0, &[7; 12]);
            claim.abort();
        });
        let t2 = thread::spawn(move || p2.send(&[5; 9]).unwrap());
        loop {
            match c.read() {
                Ok(r) => {
                    assert_eq!(r.to_vec(), [5; 9]);
                    break;
                }
                Err(ReadError::Empty | ReadError::Pending) => thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        }
        t.join().unwrap();
        t2.join().unwrap();
        // The aborted record (if it came first) was skipped on the way, or is still ahead.
        loop {
            match c.read() {
                Ok(r) => panic!("aborted record delivered: {:?}", r.to_vec()),
                Err(ReadError::Empty) => break,
                Err(ReadError::Pending) => thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(c.skipped(), 1);
        drop(c);
        drop(mem);
    });
}

/// Claim intents: a producer (owner 7) died after publishing its intent for the ring's first
/// position, before its CAS on the tail; a live producer then claims that very position (same
/// size) and sends. The consumer calls `unblock` without force whenever the record is pending
/// and must never skip the live producer's claim: whenever it sees the tail past the position
/// it also sees the live producer's intent (tail CAS Release, tail load Acquire in `unblock`).
#[test]
fn record_live_claim_is_not_taken_for_a_dead_intent() {
    loom::model(|| {
        let owner_alive = |t: u32| t != 7;
        let (mut ps, mut c, mem) = record_ring(0, &[7, 1], &owner_alive);
        let mut p = ps.pop().unwrap();
        let dead = ps.pop().unwrap();
        dead.abandon_claim_for_tests(10, false);
        let t = thread::spawn(move || p.send(&[3; 10]).unwrap());
        loop {
            let err = match c.read() {
                Ok(r) => {
                    assert_eq!(r.to_vec(), [3; 10]);
                    break;
                }
                Err(e) => e,
            };
            match err {
                ReadError::Pending => {
                    assert_ne!(
                        c.unblock(&owner_alive, false),
                        Unblock::Skipped,
                        "live producer skipped"
                    );
                    thread::yield_now();
                }
                ReadError::Empty => thread::yield_now(),
                e @ ReadError::Corrupt(_) => panic!("{e}"),
            }
        }
        t.join().unwrap();
        drop(c);
        drop(mem);
    });
}

/// Record ring, a forced skip next to a claim in flight: a producer took the first 24 bytes and
/// stalled before writing its header (alive, so only the timeout skips it); a second producer
/// claims the next record and sends it. The consumer forces the skip whenever it is pending. The
/// padding must stop where the second claim begins, even before that producer has written its
/// header (its intent names it): a record whose commit succeeded must be delivered.
#[test]
fn record_forced_skip_spares_a_claim_in_flight() {
    loom::model(|| {
        let (mut ps, mut c, mem) = record_ring(0, &[7, 1], &|_| true);
        let p = ps.pop().unwrap();
        let stalled = ps.pop().unwrap();
        stalled.abandon_claim_for_tests(10, true);
        send_while_forcing_the_first(p, &mut c, &[3; 10], 24);
        drop(c);
        drop(mem);
    });
}

/// Record ring, a forced skip that finds the next claim's intent idle: as
/// `record_forced_skip_spares_a_claim_in_flight` (a stalled header-less claim first, a second
/// producer sending the next record, the consumer forcing the skip of the first), with the
/// consumer on a thread of its own (loom lets a thread read an older value only of a store it
/// has not seen itself, and the thread that laid out the ring has seen every header's first
/// zero). A consumer that reads the second producer's intent idle, cleared after its header CAS
/// or stored idle when the producer was dropped, must also see that header (Release stores,
/// Acquire loads), so its padding stops there; else it pads over the claim (a committed record
/// never delivered, or a consumer reading on from the middle of it).
/// Caught mutant: `record_intent_clear`; before 2026-11-27 it failed as written (the idle word a
/// producer stores when dropped was Relaxed).
#[test]
fn record_forced_skip_sees_the_header_of_a_cleared_intent() {
    loom::model(|| {
        let (mut ps, c, mem) = record_ring(0, &[7, 1], &|_| true);
        let p = ps.pop().unwrap();
        ps.pop().unwrap().abandon_claim_for_tests(10, true);
        thread::spawn(move || {
            let mut c = c;
            send_while_forcing_the_first(p, &mut c, &[3; 10], 24);
        })
        .join()
        .unwrap();
        drop(mem);
    });
}

/// `p` sends `payload` from a thread while the consumer reads on, forcing the skip of whatever
/// is pending at the ring's first position (the timeout has passed there only: forcing a later
/// claim while its producer writes is what the fence models cover). A record whose send
/// succeeded must be delivered; one its producer was told was skipped must not be.
///
/// `first` is the size of the claim at the ring's first position: the forced skip covers that
/// claim and never the next one (the consumer never reads past it before the record arrives).
fn send_while_forcing_the_first(
    mut p: RecordProducer,
    c: &mut RecordConsumer,
    payload: &[u8],
    first: u64,
) {
    use loom::sync::atomic::{AtomicU32, Ordering};
    // 0: sending; 1: committed; 2: skipped, and told so.
    let outcome = std::sync::Arc::new(AtomicU32::new(0));
    let t = thread::spawn({
        let (outcome, payload) = (outcome.clone(), payload.to_vec());
        move || {
            let r = if p.send(&payload).is_ok() { 1 } else { 2 };
            outcome.store(r, Ordering::Release);
        }
    });
    loop {
        // Let the producer run first too (loom does not preempt us before our first look).
        thread::yield_now();
        let err = match c.read() {
            Ok(r) => {
                assert_eq!(r.to_vec(), payload);
                break;
            }
            Err(e) => e,
        };
        assert!(
            c.position() <= first,
            "the forced skip covered the claim after the first (read on to {})",
            c.position()
        );
        match err {
            ReadError::Pending => {
                c.unblock(&|_| true, c.position() == 0);
                thread::yield_now();
            }
            ReadError::Empty => match outcome.load(Ordering::Acquire) {
                0 => thread::yield_now(),
                // Committed (and its commit now visible to us): it must be there.
                1 => match c.read() {
                    Ok(r) => {
                        assert_eq!(r.to_vec(), payload);
                        break;
                    }
                    Err(e) => panic!("a committed record was never delivered: {e}"),
                },
                _ => break,
            },
            e @ ReadError::Corrupt(_) => panic!("{e}"),
        }
    }
    t.join().unwrap();
}

/// Record ring, a fence: a live producer claims a record (header written) and writes its
/// payload, while the consumer, finding it pending, forces the skip at once (a timeout shorter
/// than the producer's stall). The producer may be past its header check, writing into the
/// skipped space: the consumer must not zero that space (nor give it back) before the producer
/// lets it go, when its commit fails. loom checks the zeroing against the producer's writes.
/// Caught mutant: `record_fence_release` (the producer's letting go, Relaxed).
#[test]
fn record_fence_holds_a_skipped_live_claim() {
    use loom::sync::atomic::{AtomicU32, Ordering};
    loom::model(|| {
        let everyone_alive = |_: u32| true;
        let (mut ps, mut c, mem) = record_ring(0, &[1], &everyone_alive);
        let mut p = ps.pop().unwrap();
        // 0: sending; 1: committed; 2: skipped, and told so.
        let outcome = std::sync::Arc::new(AtomicU32::new(0));
        let t = thread::spawn({
            let outcome = outcome.clone();
            move || {
                let mut claim = p.claim(16).unwrap();
                claim.write(0, &[4; 16]);
                let r = if claim.commit().is_ok() { 1 } else { 2 };
                outcome.store(r, Ordering::Release);
            }
        });
        loop {
            thread::yield_now();
            let err = match c.read() {
                Ok(r) => {
                    assert_eq!(r.to_vec(), [4; 16]);
                    break;
                }
                Err(e) => e,
            };
            match err {
                ReadError::Pending => {
                    c.unblock(&everyone_alive, true);
                }
                ReadError::Empty => {
                    if outcome.load(Ordering::Acquire) == 2 && !c.has_fence() {
                        break;
                    }
                }
                e @ ReadError::Corrupt(_) => panic!("{e}"),
            }
        }
        t.join().unwrap();
        drop(c);
        drop(mem);
    });
}

/// Record ring, a fence over a claim without header: a live producer sends while the consumer
/// forces the skip of its claim as soon as it is pending, possibly between the producer's
/// CAS on the tail and its header CAS. The skipped space must stay padding until the producer's
/// header CAS has failed on it (its intent cleared): zeroed earlier, the producer's header CAS
/// from empty would succeed there, behind the consumer, and a record it was told was
/// committed would never be delivered. (A second claim, the producer claiming again after
/// losing the first, is left to commit.)
#[test]
fn record_fence_holds_a_skipped_claim_without_header() {
    loom::model(|| {
        let (mut ps, mut c, mem) = record_ring(0, &[1], &|_| true);
        send_while_forcing_the_first(ps.pop().unwrap(), &mut c, &[6; 8], 16);
        drop(c);
        drop(mem);
    });
}

/// A full 256-byte record ring: 7 records of 24 bytes and one of 16 leave 8 bytes before the
/// end. Drop the handles before the memory.
fn full_record_ring(owners: &[u32]) -> (Vec<RecordProducer>, RecordConsumer, std::sync::Arc<Mem>) {
    let (mut ps, c, mem) = record_ring(0, owners, &|_| true);
    let p = ps.last_mut().unwrap();
    for k in 0..7u8 {
        p.send(&[k; 24]).unwrap();
    }
    p.send(&[7; 16]).unwrap();
    (ps, c, mem)
}

/// The consumer reads the first `n` records of the full ring (24 bytes each), racing the
/// producers, which wait for that space; then, the producers done, the rest of the lap in
/// order. Returns what the producer threads returned.
fn read_the_lap<T>(c: &mut RecordConsumer, n: u8, producers: Vec<thread::JoinHandle<T>>) -> Vec<T> {
    for k in 0..n {
        loop {
            match c.read() {
                Ok(r) => {
                    assert_eq!(r.to_vec(), [k; 24]);
                    break;
                }
                Err(ReadError::Empty | ReadError::Pending) => thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        }
    }
    let out = producers.into_iter().map(|t| t.join().unwrap()).collect();
    for k in n..7 {
        assert_eq!(c.read().unwrap().to_vec(), [k; 24]);
    }
    assert_eq!(c.read().unwrap().to_vec(), [7; 16]);
    out
}

/// Reads what is left: the records written into space given back, in any order.
fn read_the_rest(c: &mut RecordConsumer, sent: &[Vec<u8>]) {
    let mut got = Vec::new();
    loop {
        match c.read() {
            Ok(r) => got.push(r.to_vec()),
            Err(ReadError::Empty) => break,
            Err(e) => panic!("{e}"),
        }
    }
    got.sort_unstable();
    assert_eq!(got, sent, "the records written into space given back");
}

/// Record ring, space reuse across the wrap: the ring is full (8 bytes left before the end),
/// and a producer sends a 24-byte record: it pads the end, wraps, and waits until the consumer
/// has read the first record and given its space back, then writes its record there. loom
/// checks the producer's writes against the consumer's reads and zeroing of that space: the
/// consumer's Release store of `head` must reach the producer's Acquire reload of it.
/// Caught mutants: `record_head_store`, `record_head_load`.
#[test]
fn record_producer_reuses_space_the_consumer_gave_back() {
    loom::model(|| {
        let (mut ps, mut c, mem) = full_record_ring(&[1]);
        let mut p = ps.pop().unwrap();
        let t = thread::spawn(move || {
            while p.send(&[8; 24]).is_err() {
                thread::yield_now();
            }
        });
        read_the_lap(&mut c, 1, vec![t]);
        read_the_rest(&mut c, &[vec![8; 24]]);
        drop(c);
        drop(mem);
    });
}

/// As `record_producer_reuses_space_the_consumer_gave_back`, with two producers racing for the
/// end of the buffer and the space of the first two records while the consumer gives it back.
/// Each tries once (two threads spinning on a full ring make loom explore their spinning
/// without end); one that found the ring full sends again after the race. Every record
/// arrives whole.
/// Caught mutants: `record_head_store`, `record_head_load`.
#[test]
fn record_two_producers_reuse_space_the_consumer_gave_back() {
    loom::model(|| {
        let (mut ps, mut c, mem) = full_record_ring(&[1]);
        let p1 = ps.pop().unwrap();
        let p2 = p1.clone();
        let threads = [(p1, 8u8), (p2, 9u8)]
            .into_iter()
            .map(|(mut p, id)| {
                thread::spawn(move || {
                    let sent = p.send(&[id; 24]).is_ok();
                    (p, id, sent)
                })
            })
            .collect();
        // Whatever found the ring full goes now; the space is there.
        for (mut p, id, sent) in read_the_lap(&mut c, 2, threads) {
            if !sent {
                p.send(&[id; 24]).unwrap();
            }
        }
        read_the_rest(&mut c, &[vec![8; 24], vec![9; 24]]);
        drop(c);
        drop(mem);
    });
}

/// Broadcast, a reader being lapped: the producer sends 3 messages of two words each through 2
/// slots (positions wrapping past u64::MAX) while the reader reads. Every message the reader
/// returns must be whole (both words of the message at its position: a torn copy mixes two
/// laps), and what it reads plus what it is told it lost must be exactly 3.
#[test]
fn broadcast_reader_lapped_never_torn() {
    loom::model(|| {
        let len = BroadcastRing::required_size(2, 32);
        let mem = std::sync::Arc::new(Mem::new(len));
        let ptr = mem.0;
        let start = u64::MAX - 1;
        // SAFETY: as above.
        let (mut tx, mut rx) = unsafe {
            BroadcastRing::init(ptr, len, 2, 32, start).unwrap();
            (
                BroadcastRing::producer(ptr, len, 1, &alive).unwrap(),
                BroadcastRing::reader(ptr, len).unwrap(),
            )
        };
        let msg = |k: u64| {
            let mut m = [0u8; 16];
            m[..8].copy_from_slice(&(k + 10).to_le_bytes());
            m[8..].copy_from_slice(&(k + 20).to_le_bytes());
            m
        };
        let t = thread::spawn(move || {
            for k in 0..3u64 {
                tx.send(&msg(k)).unwrap();
            }
        });
        let (mut next, mut delivered, mut lost) = (0u64, 0u64, 0u64);
        let mut buf = [0u8; 16];
        while next < 3 {
            match rx.recv(&mut buf) {
                Ok(n) => {
                    assert_eq!(n, 16);
                    assert_eq!(buf, msg(next), "torn or misplaced message at {next}");
                    next += 1;
                    delivered += 1;
                }
                Err(RecvError::Lapped { lost: l }) => {
                    assert!(l > 0);
                    lost += l;
                    next += l;
                }
                Err(RecvError::Empty) => thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(delivered + lost, 3);
        assert_eq!(rx.lost(), lost);
        t.join().unwrap();
        drop(rx);
        drop(mem);
    });
}

/// Broadcast, in-place publish (issue 16, review revb): the producer writes each message into
/// its slot through a loan, a word in two pieces (a read-modify-write of the slot word) and a
/// whole word, after a loan it gave up unpublished, while a reader is lapped (3 messages
/// through 2 slots, positions wrapping past u64::MAX). The stamp check must cover the loaned
/// writes: the reader never returns a torn or half-written message, and its deliveries plus
/// its losses are the 3 messages.
#[test]
fn broadcast_loan_lapped_never_torn() {
    loom::model(|| {
        let len = BroadcastRing::required_size(2, 32);
        let mem = std::sync::Arc::new(Mem::new(len));
        let ptr = mem.0;
        let start = u64::MAX - 1;
        // SAFETY: the memory outlives the handles (dropped before it).
        let (mut tx, mut rx) = unsafe {
            BroadcastRing::init(ptr, len, 2, 32, start).unwrap();
            (
                BroadcastRing::producer(ptr, len, 1, &alive).unwrap(),
                BroadcastRing::reader(ptr, len).unwrap(),
            )
        };
        let msg = |k: u64| {
            let mut m = [0u8; 16];
            m[..8].copy_from_slice(&(k + 10).to_le_bytes());
            m[8..].copy_from_slice(&(k + 20).to_le_bytes());
            m
        };
        let t = thread::spawn(move || {
            for k in 0..3u64 {
                let m = msg(k);
                if k == 1 {
                    // Given up half-written: the next loan writes this position again.
                    let mut gone = tx.loan();
                    gone.write(0, &[0xee; 5]).unwrap();
                }
                let mut loan = tx.loan();
                loan.write(0, &m[..3]).unwrap();
                loan.write(3, &m[3..8]).unwrap();
                loan.write(8, &m[8..]).unwrap();
                loan.publish(16).unwrap();
            }
        });
        let (mut next, mut delivered, mut lost) = (0u64, 0u64, 0u64);
        let mut buf = [0u8; 16];
        while next < 3 {
            match rx.recv(&mut buf) {
                Ok(n) => {
                    assert_eq!(n, 16);
                    assert_eq!(buf, msg(next), "torn or misplaced message at {next}");
                    next += 1;
                    delivered += 1;
                }
                Err(RecvError::Lapped { lost: l }) => {
                    assert!(l > 0);
                    lost += l;
                    next += l;
                }
                Err(RecvError::Empty) => thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(delivered + lost, 3);
        t.join().unwrap();
        drop(rx);
        drop(mem);
    });
}

/// Broadcast, the start position chosen at attach (issue 16): a reader attaches from `Oldest`
/// (or a future `Seq`) while the producer sends 3 two-word messages through 2 slots, positions
/// wrapping past u64::MAX. It must start at a real message (never one of init's stand-ins
/// before the ring's first position, never before the number asked for), read every message
/// whole and at its own number, and its sequence gaps must be exactly the losses reported.
#[test]
fn broadcast_start_oldest_and_seq() {
    let start = u64::MAX - 1;
    for from in [Start::Oldest, Start::Seq(start.wrapping_add(2))] {
        loom::model(move || {
            let len = BroadcastRing::required_size(2, 32);
            let mem = std::sync::Arc::new(Mem::new(len));
            let ptr = mem.0;
            // SAFETY: the memory outlives the handles (dropped before it).
            let mut tx = unsafe {
                BroadcastRing::init(ptr, len, 2, 32, start).unwrap();
                BroadcastRing::producer(ptr, len, 1, &alive).unwrap()
            };
            let msg = |seq: u64| {
                let mut m = [0u8; 16];
                m[..8].copy_from_slice(&seq.to_le_bytes());
                m[8..].copy_from_slice(&(!seq).to_le_bytes());
                m
            };
            let t = thread::spawn(move || {
                for _ in 0..3u64 {
                    let p = tx.position();
                    tx.send(&msg(p)).unwrap();
                }
            });
            // SAFETY: as above.
            let mut rx = unsafe { BroadcastRing::reader_from(ptr, len, from).unwrap() };
            let end = start.wrapping_add(3);
            let mut expect = rx.position();
            let first = expect.wrapping_sub(start);
            assert!(
                first <= 3,
                "started before the ring's first message: {first}"
            );
            if let Start::Seq(n) = from {
                assert_eq!(expect, n, "a future number is waited for");
            }
            let mut buf = [0u8; 16];
            while expect != end {
                match rx.recv_seq(&mut buf) {
                    Ok((n, seq)) => {
                        assert_eq!(n, 16, "a stand-in or torn message at {seq}");
                        assert_eq!(seq, expect, "a gap without a reported loss");
                        assert_eq!(buf, msg(seq), "torn or misplaced message at {seq}");
                        expect = seq.wrapping_add(1);
                    }
                    Err(RecvError::Lapped { lost }) => {
                        assert!(lost > 0 && lost <= 3);
                        expect = expect.wrapping_add(lost);
                    }
                    Err(RecvError::Empty) => thread::yield_now(),
                    Err(e) => panic!("{e}"),
                }
            }
            t.join().unwrap();
            drop(rx);
            drop(mem);
        });
    }
}

/// Broadcast cursor table (issue 16): a reader takes over the entry of a dead one (whose stale
/// cursor is 0) while the producer scans; then a second reader tries to claim the entry.
/// A scan that counts the new holder must see its cursor (100, or 101 after its first read),
/// never the dead holder's; a second claimer is refused while the holder lives.
#[test]
fn broadcast_cursor_table_claim_and_scan() {
    loom::model(|| {
        let len = CursorTable::required_size(1);
        let mem = std::sync::Arc::new(Mem::new(len));
        let ptr = mem.0;
        let live = |o: u64| o != 7;
        // SAFETY: the memory outlives the table and its entries (dropped before it).
        let table = unsafe {
            CursorTable::init(ptr, len, 1).unwrap();
            CursorTable::attach(ptr, len).unwrap()
        };
        // A reader that died holding the entry, its cursor at 0.
        core::mem::forget(table.claim(7, 0, &live).unwrap());
        let t2 = table.clone();
        let t = thread::spawn(move || {
            let e = t2.claim(1, 100, &|o| o != 7);
            if let Some(e) = &e {
                e.publish(101);
            }
            // Held until the scan and the other claim are done.
            e
        });
        // The producer scans until it sees the new holder (as a real one does, now and then).
        let lag = loop {
            let scan = table.scan(110, &live);
            if let Some(lag) = scan.slowest_lag {
                assert_eq!(scan.readers, 1);
                break lag;
            }
            assert_eq!(scan.readers, 0);
            thread::yield_now();
        };
        assert!(lag == 10 || lag == 9, "stale cursor: lag {lag}");
        // The entry is held by a live reader: a second claimer is refused.
        let mine = table.claim(2, 105, &live);
        assert!(mine.is_none(), "a live reader's entry was taken over");
        let theirs = t.join().unwrap();
        assert!(theirs.is_some());
        drop((mine, theirs));
        drop(table);
        drop(mem);
    });
}

/// The run-time slot path (`DynMpmcRing`, 3-byte elements at alignment 1): one producer pushes
/// four elements through a 2-slot ring while a consumer pops them, so every slot is freed by
/// the consumer's stamp and rewritten by the producer through the run-time slot addressing
/// and byte copies. FIFO order holds and loom checks each value access (the slot's tracking
/// cell) against the stamps: the protocol is the typed ring's, so `mpmc_seq_store` and
/// `mpmc_seq_load` weakened make this model fail too (`.ci/loom-mutants`).
#[test]
fn dyn_mpmc_lap_reuse() {
    use shmlane_ring::{DynMpmcRing, ElemLayout};
    loom::model(|| {
        let l = ElemLayout::new(3, 1).unwrap();
        let mem = std::sync::Arc::new(Mem::new(DynMpmcRing::required_size(l, 2)));
        let (ptr, len) = (mem.0, mem.1.size());
        // SAFETY: `mem` outlives both handles (dropped after them below).
        let (tx, rx) = unsafe {
            DynMpmcRing::init(ptr, len, l, 2, u64::MAX - 1).unwrap();
            (
                DynMpmcRing::sender(ptr, len, l).unwrap(),
                DynMpmcRing::receiver(ptr, len, l).unwrap(),
            )
        };
        let t = thread::spawn(move || {
            for i in 0..4u8 {
                let v = [i, i + 10, i + 20];
                while let Err(e) = tx.push(&v) {
                    assert_eq!(e, PushError::Full(()));
                    thread::yield_now();
                }
            }
        });
        let mut out = [0u8; 3];
        for i in 0..4u8 {
            loop {
                match rx.pop(&mut out) {
                    Ok(()) => {
                        assert_eq!(out, [i, i + 10, i + 20]);
                        break;
                    }
                    Err(PopError::Empty) => thread::yield_now(),
                    Err(e) => panic!("{e}"),
                }
            }
        }
        t.join().unwrap();
        drop(rx);
        drop(mem);
    });
}

/// A latest-value region of `slots` slots for 16-byte values in fresh memory: a writer and a
/// reader (clone them for more). Drop the handles before the memory.
fn latest(slots: u64) -> (LatestWriter, LatestReader, std::sync::Arc<Mem>) {
    let len = LatestRing::required_size(slots, 16);
    let mem = std::sync::Arc::new(Mem::new(len));
    // SAFETY: the memory is returned with the handles; the callers drop it last.
    unsafe {
        LatestRing::init(mem.0, len, slots, 16).unwrap();
        (
            LatestRing::writer(mem.0, len, 1).unwrap(),
            LatestRing::reader(mem.0, len).unwrap(),
            mem,
        )
    }
}

/// Value `k`: two words, `k` and `!k`, so a copy mixing two writes is seen.
fn lv(k: u64) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&k.to_le_bytes());
    b[8..].copy_from_slice(&(!k).to_le_bytes());
    b
}

/// The `k` of a whole value; panics on a torn one.
fn lk(b: &[u8; 16]) -> u64 {
    let k = u64::from_le_bytes(b[..8].try_into().unwrap());
    let nk = u64::from_le_bytes(b[8..].try_into().unwrap());
    assert_eq!(
        nk, !k,
        "torn latest value: words of two writes ({k}, {nk:#x})"
    );
    k
}

/// One read: `None`, `Busy`, or a whole value `(k, version)`. It yields first: loom's
/// exploration misses the schedules where a writer runs between a reader's loads of `latest`
/// and its own `fetch_max` (the writer's Relaxed load of `latest` in its claim hides the
/// dependency: a model without this yield runs one schedule only), so each read is a point
/// where every other thread may run.
fn lread(r: &mut LatestReader) -> Result<Option<(u64, u64)>, LatestError> {
    thread::yield_now();
    let mut buf = [0u8; 16];
    match r.read(&mut buf)? {
        None => Ok(None),
        Some((n, v)) => {
            assert_eq!(n, 16);
            Ok(Some((lk(&buf), v)))
        }
    }
}

/// Latest value, liveness: one writer makes 3 writes into 4 slots (no slot is written twice,
/// so no write ever races a read of the slot `latest` names) while a reader reads: it reads
/// nothing yet or a whole value of its version, never `Busy`. `Busy` is for reads that raced
/// writes to their slot; here every try's `latest` load (Acquire) synchronises with the
/// `fetch_max` (Release) that published it, so the slot's seq is done and stays done.
/// Three writes because loom lets a thread read a given stale store only until it yields
/// (every try ends with one): a weakened pair shows as one stale seq per try, and the read
/// reports `Busy` only if each of its 3 tries ([`READ_TRIES`] under loom) lands on a
/// different slot's stale seq.
/// Caught mutants: `latest_load`, `latest_publish` ("busy though nothing raced the read").
///
/// [`READ_TRIES`]: shmlane_ring::latest::READ_TRIES
#[test]
fn latest_unraced_read_never_busy() {
    loom::model(|| {
        let (mut w, mut r, mem) = latest(4);
        let t = thread::spawn(move || {
            for k in 1..=3 {
                assert_eq!(w.write(&lv(k)), Ok(k));
            }
        });
        match lread(&mut r) {
            Ok(None) => {}
            Ok(Some((k, v))) => assert_eq!(k, v, "torn or misplaced: value {k} as version {v}"),
            other => panic!("busy though nothing raced the read: {other:?}"),
        }
        t.join().unwrap();
        assert_eq!(lread(&mut r), Ok(Some((3, 3))));
        drop(r);
        drop(mem);
    });
}

/// Latest value, slot reuse: one writer makes 3 writes into 2 slots (the third reuses the
/// first's slot) while a reader reads twice: every value read is whole and is the one of its
/// version, versions never decrease, and after the writer the newest is read.
/// Caught mutants: `latest_writer_fence`, `latest_reader_fence` (torn or misplaced).
#[test]
fn latest_wrap_never_torn() {
    loom::model(|| {
        let (mut w, mut r, mem) = latest(2);
        let t = thread::spawn(move || {
            for k in 1..=3 {
                assert_eq!(w.write(&lv(k)), Ok(k));
            }
        });
        let mut last = 0;
        for _ in 0..2 {
            match lread(&mut r) {
                Ok(Some((k, v))) => {
                    assert_eq!(k, v, "torn or misplaced: value {k} read as version {v}");
                    assert!(v >= last, "version went back from {last} to {v}");
                    last = v;
                }
                Ok(None) | Err(LatestError::Busy) => {}
                Err(e) => panic!("{e}"),
            }
        }
        t.join().unwrap();
        assert_eq!(lread(&mut r), Ok(Some((3, 3))));
        drop(r);
        drop(mem);
    });
}

/// Latest value, two writers and a reader: distinct versions 1 and 2, whole values, and after
/// both the newest is the one that got version 2.
#[test]
fn latest_two_writers() {
    loom::model(|| {
        let (w, mut r, mem) = latest(2);
        let mut w2 = w.clone();
        let mut w1 = w;
        let a = thread::spawn(move || w1.write(&lv(10)).unwrap());
        let b = thread::spawn(move || w2.write(&lv(20)).unwrap());
        match lread(&mut r) {
            Ok(Some((k, _))) => assert!(k == 10 || k == 20, "foreign value {k}"),
            Ok(None) | Err(LatestError::Busy) => {}
            Err(e) => panic!("{e}"),
        }
        let (va, vb) = (a.join().unwrap(), b.join().unwrap());
        let mut vs = [va, vb];
        vs.sort_unstable();
        assert_eq!(vs, [1, 2]);
        let newest = if va == 2 { 10 } else { 20 };
        assert_eq!(lread(&mut r), Ok(Some((newest, 2))));
        drop(r);
        drop(mem);
    });
}

/// Latest value, crash path: a writer stops mid-write (its slot stays odd, as at a SIGKILL)
/// while a reader reads: the reader gets the previous value, whole, never `Busy` or `None`.
#[test]
fn latest_writer_dying_mid_write_leaves_the_previous_value() {
    loom::model(|| {
        let (mut w, mut r, mem) = latest(2);
        w.write(&lv(1)).unwrap();
        let mut dying = w.clone();
        let t = thread::spawn(move || dying.write_and_die(&lv(2), 1).unwrap());
        assert_eq!(lread(&mut r), Ok(Some((1, 1))));
        t.join().unwrap();
        assert_eq!(lread(&mut r), Ok(Some((1, 1))));
        drop((w, r));
        drop(mem);
    });
}

/// Latest value, crash racing a publish: writer A writes twice (tickets 0 and 1), writer B
/// writes once and dies mid-write on the ticket after: whatever the interleaving, once both
/// stop the newest published version is readable (B never claimed the newest value's slot).
/// Caught hand mutation: a claim that ignores `latest` (see docs/design.md).
#[test]
fn latest_a_death_never_takes_the_newest_slot() {
    loom::model(|| {
        let (w, mut r, mem) = latest(2);
        let (mut a, mut b) = (w.clone(), w);
        let ta = thread::spawn(move || {
            for k in 1..=2 {
                let _ = a.write(&lv(k));
            }
        });
        let tb = thread::spawn(move || {
            let _ = b.write_and_die(&lv(9), 1);
        });
        ta.join().unwrap();
        tb.join().unwrap();
        match lread(&mut r) {
            Ok(Some((k, v))) => assert!(k == 1 || k == 2, "value {k} of version {v}"),
            other => panic!("the newest value is unreadable after a death: {other:?}"),
        }
        drop(r);
        drop(mem);
    });
}

/// Latest value, reclaim: a writer of another process dies mid-write while this process's
/// writer writes (reclaiming the dead one's slot when its ticket lands there) and a reader
/// reads: values whole, and once both stop the newest is readable.
#[test]
fn latest_a_dead_writers_slot_is_reclaimed() {
    loom::model(|| {
        let (w, mut r, mem) = latest(2);
        let mut w = w.with_owner(1);
        w.write(&lv(1)).unwrap();
        let mut dying = w.clone().with_owner(2);
        // The process of owner 2 is dead once its thread stopped: the kernel drops its
        // liveness lock after the last of its stores, and the check that finds the lock free
        // synchronises with that (Release here, Acquire in `is_alive`).
        let dead = std::sync::Arc::new(loom::sync::atomic::AtomicBool::new(false));
        let td = thread::spawn({
            let dead = dead.clone();
            move || {
                let _ = dying.write_and_die(&lv(9), 1);
                dead.store(true, loom::sync::atomic::Ordering::Release);
            }
        });
        let tw = thread::spawn(move || {
            let is_alive = |o: u64| o != 2 || !dead.load(loom::sync::atomic::Ordering::Acquire);
            for _ in 0..2 {
                let _ = w.write_with(&lv(5), &is_alive);
            }
        });
        match lread(&mut r) {
            Ok(Some((k, _))) => assert!(k == 1 || k == 5, "value {k}"),
            Ok(None) => panic!("the first value vanished"),
            Err(_) => {}
        }
        td.join().unwrap();
        tw.join().unwrap();
        match lread(&mut r) {
            Ok(Some((k, _))) => assert!(k == 1 || k == 5, "value {k}"),
            other => panic!("the newest value is unreadable: {other:?}"),
        }
        drop(r);
        drop(mem);
    });
}

/// Latest value, crash between the done store and the `fetch_max`: a writer of another
/// process completes its value (9) and dies before publishing it, while this process's writer
/// writes (5) and a reader reads. With two slots the dead one's slot (a value newer than
/// `latest`) and the newest value's were both unclaimable: every later write `Busy` for good.
/// Now the writer that finds the dead holder publishes its value for it, then claims the
/// other slot. The reader gets the previous value (1), the dead writer's (9) or the new one
/// (5), each whole; once the death is seen a write succeeds and is read back.
/// Caught hand mutation: the claim without the help (see docs/design.md).
#[test]
fn latest_a_writer_dead_before_publishing_is_helped() {
    loom::model(|| {
        let (w, mut r, mem) = latest(2);
        let mut w = w.with_owner(1);
        w.write(&lv(1)).unwrap();
        let mut dying = w.clone().with_owner(2);
        // As in `latest_a_dead_writers_slot_is_reclaimed`: the stand-in for the liveness lock.
        let dead = std::sync::Arc::new(loom::sync::atomic::AtomicBool::new(false));
        let td = thread::spawn({
            let dead = dead.clone();
            move || {
                let _ = dying.write_and_die_unpublished(&lv(9));
                dead.store(true, loom::sync::atomic::Ordering::Release);
            }
        });
        let is_alive = move |o: u64| o != 2 || !dead.load(loom::sync::atomic::Ordering::Acquire);
        let mut w2 = w.clone();
        let tw = thread::spawn({
            let is_alive = is_alive.clone();
            move || {
                let _ = w2.write_with(&lv(5), &is_alive);
            }
        });
        match lread(&mut r) {
            Ok(Some((1, 1) | (9 | 5, 2..))) | Err(LatestError::Busy) => {}
            other => panic!("torn or misplaced: {other:?}"),
        }
        td.join().unwrap();
        tw.join().unwrap();
        let v = w
            .write_with(&lv(5), &is_alive)
            .unwrap_or_else(|e| panic!("a write after the death: {e}"));
        assert_eq!(lread(&mut r), Ok(Some((5, v))));
        drop((w, r));
        drop(mem);
    });
}
