//! loom models of the rings. Run with
//! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 cargo test -p shmlane-ring --test loom --release`.
//!
//! Each model can fail: `.ci/loom-mutants` rebuilds with one ordering weakened at a time
//! (`--cfg shmlane_weaken="..."`, see `src/sync.rs`) and requires the matching model to fail.
#![cfg(loom)]

use std::alloc::{Layout, alloc_zeroed, dealloc};

use loom::thread;
use shmlane_ring::{MpmcRing, PopError, SpscRing};

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

/// Two producers and two consumers, one value each, through a 2-slot MPMC ring: every value
/// is received exactly once, and loom checks the slot accesses.
/// Not yet run in CI: at `LOOM_MAX_PREEMPTIONS=3` it did not finish within 15 minutes on
/// this machine. Set `SHMLANE_LOOM_MPMC=1` to run it.
#[test]
fn mpmc_two_by_two() {
    if std::env::var_os("SHMLANE_LOOM_MPMC").is_none() {
        println!("skipped: set SHMLANE_LOOM_MPMC=1 (takes > 15 min at 3 preemptions)");
        return;
    }
    let mut b = loom::model::Builder::new();
    // Consumers poll an empty ring (yielding) until the producers get there: more branches
    // per execution than loom's default budget allows.
    b.max_branches = 100_000;
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(3);
    }
    b.check(|| {
        let mem = std::sync::Arc::new(Mem::new(MpmcRing::<u64>::required_size(2)));
        let (ptr, len) = (mem.0, mem.1.size());
        // SAFETY: `mem` outlives every handle (all threads joined before it drops).
        let (tx, rx) = unsafe {
            MpmcRing::<u64>::init(ptr, len, 2, u64::MAX).unwrap();
            (
                MpmcRing::<u64>::sender(ptr, len).unwrap(),
                MpmcRing::<u64>::receiver(ptr, len).unwrap(),
            )
        };
        let producers: Vec<_> = (0..2u64)
            .map(|id| {
                let tx = tx.clone();
                thread::spawn(move || {
                    let mut v = 100 + id;
                    while let Err(e) = tx.push(v) {
                        v = e.into_inner();
                        thread::yield_now();
                    }
                })
            })
            .collect();
        let rx2 = rx.clone();
        let other = thread::spawn(move || {
            loop {
                match rx2.pop() {
                    Ok(v) => return v,
                    Err(PopError::Empty) => thread::yield_now(),
                    Err(e) => panic!("{e}"),
                }
            }
        });
        let mine = loop {
            match rx.pop() {
                Ok(v) => break v,
                Err(PopError::Empty) => thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        };
        let theirs = other.join().unwrap();
        for p in producers {
            p.join().unwrap();
        }
        let mut got = [mine, theirs];
        got.sort_unstable();
        assert_eq!(got, [100, 101]);
        drop((tx, rx));
        drop(mem);
    });
}
