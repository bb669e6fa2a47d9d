//! Property tests: random operation sequences on a ring against a `VecDeque` model, with
//! capacities from 1 to 64 and first positions anywhere in `u64`, biased towards the wrap at
//! `u64::MAX`.
#![cfg(not(loom))]

use std::collections::VecDeque;

use proptest::prelude::*;
use shmlane_ring::{ChunkError, HeapRegion, PopError, PushError};

#[derive(Clone, Debug)]
enum Op {
    Push(u32),
    PushSlice(Vec<u32>),
    Pop,
    Peek,
    PopSlice(usize),
    /// Reserve `n` slots, fill them through the slices, commit the first `k % (n + 1)`.
    WriteChunk(usize, usize, u32),
    /// Borrow `n` elements, check them through both accessors, release `k % (n + 1)`.
    ReadChunk(usize, usize),
    Len,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => any::<u32>().prop_map(Op::Push),
        1 => proptest::collection::vec(any::<u32>(), 0..12).prop_map(Op::PushSlice),
        3 => Just(Op::Pop),
        1 => Just(Op::Peek),
        1 => (0usize..12).prop_map(Op::PopSlice),
        1 => (0usize..12, any::<usize>(), any::<u32>()).prop_map(|(n, k, b)| Op::WriteChunk(n, k, b)),
        1 => (0usize..12, any::<usize>()).prop_map(|(n, k)| Op::ReadChunk(n, k)),
        1 => Just(Op::Len),
    ]
}

/// Longest operation sequence (short under Miri, which interprets every step).
const OPS: usize = if cfg!(miri) { 48 } else { 200 };

fn start() -> impl Strategy<Value = u64> {
    prop_oneof![
        any::<u64>(),
        (0u64..80).prop_map(|d| u64::MAX - d),
        (0u64..80),
    ]
}

fn capacity() -> impl Strategy<Value = u64> {
    (0u32..7).prop_map(|b| 1u64 << b)
}

proptest! {
    // Under Miri: a few cases, and no failure file (Miri isolates the file system).
    #![proptest_config(if cfg!(miri) {
        ProptestConfig { cases: 3, failure_persistence: None, ..ProptestConfig::default() }
    } else {
        ProptestConfig::with_cases(512)
    })]

    #[test]
    fn spsc_matches_vecdeque(cap in capacity(), start in start(),
                             ops in proptest::collection::vec(op(), 0..OPS)) {
        let (mut p, mut c) = HeapRegion::spsc_at::<u32>(cap, start);
        let cap = cap as usize;
        let mut model: VecDeque<u32> = VecDeque::new();
        for op in ops {
            match op {
                Op::Push(v) => {
                    let r = p.push(v);
                    if model.len() < cap {
                        prop_assert!(r.is_ok());
                        model.push_back(v);
                    } else {
                        prop_assert!(matches!(r, Err(PushError::Full(x)) if x == v));
                    }
                }
                Op::PushSlice(vs) => {
                    let n = p.push_slice(&vs).unwrap();
                    prop_assert_eq!(n, vs.len().min(cap - model.len()));
                    model.extend(&vs[..n]);
                }
                Op::Pop => prop_assert_eq!(c.pop().ok(), model.pop_front()),
                Op::Peek => prop_assert_eq!(c.peek().ok(), model.front().copied()),
                Op::PopSlice(n) => {
                    let mut buf = vec![0u32; n];
                    let got = c.pop_slice(&mut buf).unwrap();
                    prop_assert_eq!(got, n.min(model.len()));
                    let want: Vec<u32> = model.drain(..got).collect();
                    prop_assert_eq!(&buf[..got], &want[..]);
                }
                Op::WriteChunk(n, k, base) => match p.write_chunk(n) {
                    Ok(mut w) => {
                        prop_assert!(n <= cap - model.len());
                        if base % 2 == 0 {
                            let src: Vec<u32> = (0..n).map(|i| base.wrapping_add(i as u32)).collect();
                            w.copy_from_slice(&src);
                        } else {
                            // SAFETY: a heap ring: no other process writes its slots.
                            let (a, b) = unsafe { w.as_mut_slices() };
                            prop_assert_eq!(a.len() + b.len(), n);
                            for (i, x) in a.iter_mut().chain(b.iter_mut()).enumerate() {
                                *x = base.wrapping_add(i as u32);
                            }
                        }
                        let k = k % (n + 1);
                        w.commit(k);
                        model.extend((0..k).map(|i| base.wrapping_add(i as u32)));
                    }
                    Err(e) => {
                        prop_assert_eq!(e, ChunkError::TooFewSlots(cap - model.len()));
                        prop_assert!(n > cap - model.len());
                    }
                },
                Op::ReadChunk(n, k) => match c.read_chunk(n) {
                    Ok(r) => {
                        prop_assert!(n <= model.len());
                        // SAFETY: a heap ring: no other process writes its slots.
                        let (a, b) = unsafe { r.as_slices() };
                        let seen: Vec<u32> = a.iter().chain(b).copied().collect();
                        let want: Vec<u32> = model.iter().take(n).copied().collect();
                        prop_assert_eq!(&seen, &want);
                        let mut copied = vec![0u32; n];
                        r.copy_to_slice(&mut copied);
                        prop_assert_eq!(&copied, &want);
                        for (i, w) in want.iter().enumerate() {
                            prop_assert_eq!(r.get(i), *w);
                        }
                        let k = k % (n + 1);
                        r.commit(k);
                        model.drain(..k);
                    }
                    Err(e) => {
                        prop_assert_eq!(e, ChunkError::TooFewSlots(model.len()));
                        prop_assert!(n > model.len());
                    }
                },
                Op::Len => {
                    prop_assert_eq!(c.len(), model.len());
                    prop_assert_eq!(p.len(), model.len());
                    prop_assert_eq!(p.free(), cap - model.len());
                }
            }
            prop_assert_eq!(p.position().wrapping_sub(c.position()), model.len() as u64);
        }
        // Whatever is left comes out in order.
        while let Some(w) = model.pop_front() {
            prop_assert_eq!(c.pop(), Ok(w));
        }
        prop_assert_eq!(c.pop(), Err(PopError::Empty));
    }

    #[test]
    fn mpmc_matches_vecdeque(cap in capacity().prop_map(|c| c.max(2)), start in start(),
                             ops in proptest::collection::vec(op(), 0..OPS)) {
        let (tx, rx) = HeapRegion::mpmc_at::<u32>(cap, start);
        // A second handle of each kind: clones share the ring.
        let (tx2, rx2) = (tx.clone(), rx.clone());
        let cap = cap as usize;
        let mut model: VecDeque<u32> = VecDeque::new();
        for (i, op) in ops.into_iter().enumerate() {
            let (tx, rx) = if i % 2 == 0 { (&tx, &rx) } else { (&tx2, &rx2) };
            match op {
                Op::Push(v) | Op::WriteChunk(_, _, v) => {
                    let r = tx.push(v);
                    if model.len() < cap {
                        prop_assert!(r.is_ok());
                        model.push_back(v);
                    } else {
                        prop_assert!(matches!(r, Err(PushError::Full(x)) if x == v));
                    }
                }
                Op::PushSlice(vs) => {
                    for v in vs {
                        let r = tx.push(v);
                        prop_assert_eq!(r.is_ok(), model.len() < cap);
                        if r.is_ok() {
                            model.push_back(v);
                        }
                    }
                }
                Op::Pop | Op::Peek | Op::ReadChunk(..) => {
                    prop_assert_eq!(rx.pop().ok(), model.pop_front());
                }
                Op::PopSlice(n) => {
                    let mut buf = vec![0u32; n];
                    let got = rx.pop_slice(&mut buf).unwrap();
                    prop_assert_eq!(got, n.min(model.len()));
                    let want: Vec<u32> = model.drain(..got).collect();
                    prop_assert_eq!(&buf[..got], &want[..]);
                }
                Op::Len => {
                    prop_assert_eq!(tx.len(), model.len());
                    prop_assert_eq!(rx.is_empty(), model.is_empty());
                }
            }
        }
        while let Some(w) = model.pop_front() {
            prop_assert_eq!(rx.pop(), Ok(w));
        }
        prop_assert_eq!(rx.pop(), Err(PopError::Empty));
    }

    #[test]
    fn stamped_matches_vecdeque(cap in capacity().prop_map(|c| c.max(2)), start in start(),
                                ops in proptest::collection::vec(op(), 0..OPS)) {
        let (mut p, mut c) = HeapRegion::stamped_at::<u32>(cap, start);
        let cap = cap as usize;
        let mut model: VecDeque<u32> = VecDeque::new();
        for op in ops {
            match op {
                Op::Push(v) => {
                    prop_assert_eq!(p.is_full(), model.len() == cap);
                    let r = p.push(v);
                    if model.len() < cap {
                        prop_assert!(r.is_ok());
                        model.push_back(v);
                    } else {
                        prop_assert!(matches!(r, Err(PushError::Full(x)) if x == v));
                    }
                }
                Op::WriteChunk(_, _, v) => {
                    let r = p.push_ref(&v);
                    prop_assert_eq!(r.is_ok(), model.len() < cap);
                    if r.is_ok() {
                        model.push_back(v);
                    }
                }
                Op::PushSlice(vs) => {
                    let got = p.push_slice(&vs).unwrap();
                    prop_assert_eq!(got, vs.len().min(cap - model.len()));
                    model.extend(&vs[..got]);
                }
                Op::Pop => {
                    prop_assert_eq!(c.pop().ok(), model.pop_front());
                }
                Op::ReadChunk(..) => {
                    let mut v = 0;
                    let r = c.pop_into(&mut v);
                    prop_assert_eq!(r.ok().map(|()| v), model.pop_front());
                }
                Op::Peek => {
                    prop_assert_eq!(c.peek().ok(), model.front().copied());
                }
                Op::PopSlice(n) => {
                    let mut buf = vec![0u32; n];
                    let got = c.pop_slice(&mut buf).unwrap();
                    prop_assert_eq!(got, n.min(model.len()));
                    let want: Vec<u32> = model.drain(..got).collect();
                    prop_assert_eq!(&buf[..got], &want[..]);
                }
                Op::Len => {
                    // Positions are published every 64 operations: len is within 64.
                    prop_assert!(p.len().abs_diff(model.len()) <= 64);
                    prop_assert!(c.len().abs_diff(model.len()) <= 64);
                    prop_assert!(p.len() <= cap && c.len() <= cap);
                    prop_assert_eq!(c.is_empty(), model.is_empty());
                }
            }
        }
        while let Some(w) = model.pop_front() {
            prop_assert_eq!(c.pop(), Ok(w));
        }
        prop_assert_eq!(c.pop(), Err(PopError::Empty));
    }
}

mod record {
    use std::collections::VecDeque;

    use proptest::prelude::*;
    use shmlane_ring::{ClaimError, HeapRegion, ReadError};

    #[derive(Clone, Debug)]
    enum Op {
        Send(usize, u8),
        Abort(usize),
        Read,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0usize..=120, any::<u8>()).prop_map(|(l, b)| Op::Send(l, b)),
            1 => (1usize..=120).prop_map(Op::Abort),
            4 => Just(Op::Read),
        ]
    }

    const OPS: usize = if cfg!(miri) { 40 } else { 300 };

    fn size(len: usize) -> usize {
        (8 + len + 7) & !7
    }

    proptest! {
        // Under Miri: a few cases, and no failure file (as above).
        #![proptest_config(if cfg!(miri) {
            ProptestConfig { cases: 3, failure_persistence: None, ..ProptestConfig::default() }
        } else {
            ProptestConfig::with_cases(256)
        })]

        /// Random sends, aborts and reads on a 1 KiB record ring against a queue of payloads,
        /// first positions anywhere (8-aligned), biased to the u64 wrap.
        #[test]
        fn record_matches_queue(
            start in prop_oneof![any::<u64>(), (0u64..4096).prop_map(|d| u64::MAX - d)]
                .prop_map(|s| s & !7),
            ops in proptest::collection::vec(op(), 0..OPS),
        ) {
            let (mut p, mut c) = HeapRegion::record_at(1024, start);
            // Queued records in ring order: (bytes taken, payload), None for aborted ones, which
            // take their space until the reader passes them.
            let mut model: VecDeque<(usize, Option<Vec<u8>>)> = VecDeque::new();
            let mut aborted = 0u64;
            for op in ops {
                match op {
                    Op::Send(len, b) => {
                        let payload: Vec<u8> =
                            (0..len).map(|i| b.wrapping_add(i as u8)).collect();
                        match p.send(&payload) {
                            Ok(()) => model.push_back((size(len), Some(payload))),
                            Err(ClaimError::Full) => {
                                // Full only if the queued records, this one and at most one
                                // padding to the end do not fit.
                                let used: usize = model.iter().map(|m| m.0).sum();
                                prop_assert!(used + size(len) > 1024 - 128 - 8,
                                    "full with {used} bytes queued");
                            }
                            Err(e) => prop_assert!(false, "{e}"),
                        }
                    }
                    Op::Abort(len) => {
                        if let Ok(claim) = p.claim(len) {
                            claim.abort();
                            aborted += 1;
                            model.push_back((size(len), None));
                        }
                    }
                    Op::Read => {
                        let got = c.read().map(|r| r.to_vec());
                        // The reader passes aborted records on its way.
                        while model.front().is_some_and(|m| m.1.is_none()) {
                            model.pop_front();
                        }
                        match got {
                            Ok(v) => prop_assert_eq!(Some(v), model.pop_front().and_then(|m| m.1)),
                            Err(ReadError::Empty) => prop_assert!(model.is_empty()),
                            Err(e) => prop_assert!(false, "{e}"),
                        }
                    }
                }
            }
            for m in model.into_iter().filter_map(|m| m.1) {
                prop_assert_eq!(c.read().unwrap().to_vec(), m);
            }
            prop_assert_eq!(c.read().err(), Some(ReadError::Empty));
            prop_assert_eq!(c.skipped(), aborted);
        }
    }
}

mod broadcast {
    //! The broadcast ring against a log of every message sent: random sends of random length,
    //! reads by three readers, readers replaced by late ones, first positions anywhere
    //! (including across 2^63, where stamps drop the top bit, and u64::MAX).

    use proptest::prelude::*;
    use shmlane_ring::{HeapRegion, RecvError};

    #[derive(Clone, Debug)]
    enum Op {
        Send(usize, u8),
        Recv(usize),
        /// Reader `k` is replaced by a clone of reader `(k + 1) % 3` (same cursor).
        Clone(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            5 => (0usize..=40, any::<u8>()).prop_map(|(l, b)| Op::Send(l, b)),
            5 => (0usize..3).prop_map(Op::Recv),
            1 => (0usize..3).prop_map(Op::Clone),
        ]
    }

    const OPS: usize = if cfg!(miri) { 40 } else { 400 };

    proptest! {
        // Under Miri: a few cases, and no failure file (as above).
        #![proptest_config(if cfg!(miri) {
            ProptestConfig { cases: 3, failure_persistence: None, ..ProptestConfig::default() }
        } else {
            ProptestConfig::with_cases(256)
        })]

        #[test]
        fn broadcast_matches_log(
            start in prop_oneof![
                any::<u64>(),
                (0u64..200).prop_map(|d| u64::MAX - d),
                (0u64..200).prop_map(|d| (1u64 << 63) - 100 + d),
            ],
            cap in (1u32..6).prop_map(|b| 1u64 << b),
            ops in proptest::collection::vec(op(), 0..OPS),
        ) {
            let (mut tx, r0) = HeapRegion::broadcast_at(cap, 48, start);
            let mut readers = [r0.clone(), r0.clone(), r0];
            // Every message sent, by its index from the start; each reader's next index and
            // losses as the model sees them.
            let mut log: Vec<Vec<u8>> = Vec::new();
            let mut next = [0u64; 3];
            let mut lost = [0u64; 3];
            let mut buf = [0u8; 40];
            for op in ops {
                match op {
                    Op::Send(len, b) => {
                        let m: Vec<u8> = (0..len).map(|i| b.wrapping_add(i as u8)).collect();
                        if len > 32 {
                            prop_assert!(tx.send(&m).is_err(), "a slot of 48 holds 32 bytes");
                        } else {
                            tx.send(&m).unwrap();
                            log.push(m);
                        }
                    }
                    Op::Recv(k) => {
                        let sent = log.len() as u64;
                        match readers[k].recv(&mut buf) {
                            Ok(n) => {
                                prop_assert!(next[k] < sent);
                                prop_assert!(sent - next[k] <= cap, "delivered an overwritten message");
                                prop_assert_eq!(&buf[..n], &log[next[k] as usize][..]);
                                next[k] += 1;
                            }
                            Err(RecvError::Empty) => prop_assert_eq!(next[k], sent),
                            Err(RecvError::Lapped { lost: l }) => {
                                // Lapped only when the message was overwritten; the reader
                                // moves to a message still in the ring.
                                prop_assert!(sent - next[k] > cap);
                                prop_assert!(l > 0);
                                next[k] += l;
                                lost[k] += l;
                                prop_assert!(next[k] < sent && sent - next[k] <= cap);
                            }
                            Err(e) => prop_assert!(false, "{e}"),
                        }
                        prop_assert_eq!(readers[k].position(), start.wrapping_add(next[k]));
                        prop_assert_eq!(readers[k].lost(), lost[k]);
                    }
                    Op::Clone(k) => {
                        let j = (k + 1) % 3;
                        readers[k] = readers[j].clone();
                        next[k] = next[j];
                        lost[k] = lost[j];
                    }
                }
            }
        }
    }
}
