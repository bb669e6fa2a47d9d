//! Entry points for the fuzz targets (`fuzz/`) and their regression tests
//! (`tests/fuzz_regressions.rs`): each takes arbitrary bytes and must return normally — no
//! panic, no out-of-bounds access (the fuzzer runs them under AddressSanitizer), no hang.
//! Not part of the API.

use std::collections::VecDeque;

use crate::{
    BroadcastRing, ClaimError, HeapRegion, MpmcRing, PopError, PushError, RecordRing, RecvError,
    SpscRing, StampedRing, header::REGION_ALIGN,
};

/// Bounded reads and writes per attached handle.
const STEPS: usize = 64;

struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
    fn u64(&mut self) -> u64 {
        (0..8).fold(0, |v, i| v | u64::from(self.u8()) << (8 * i))
    }
}

/// Lays a ring of a kind chosen by the first byte into a region, then overwrites the region
/// from byte 16 or 32 on (keeping or not the magic and kind) with the rest of the input, and
/// attaches every endpoint to it and uses them: an attach error or `Corrupt`, never a crash.
pub fn attach_arbitrary(data: &[u8]) {
    let mut b = Bytes(data);
    let kind = kind_of(b.u8());
    let cap = 1u64 << (1 + b.u8() % 6);
    let keep = if b.u8() % 2 == 0 { 16 } else { 32 };
    let start = b.u64();
    let size = match kind {
        0 => SpscRing::<u64>::required_size(cap),
        1 => StampedRing::<u64>::required_size(cap),
        2 => MpmcRing::<u64>::required_size(cap),
        3 => RecordRing::required_size(cap * 128),
        4 => BroadcastRing::required_size(cap, 32),
        _ => crate::LatestRing::required_size(cap, 20),
    };
    // Sometimes a region shorter than the ring needs.
    let short = usize::from(b.u8() % 4 == 0) * (b.u8() as usize % 64 + 1) * 8;
    let region = HeapRegion::new(size.max(REGION_ALIGN));
    let (ptr, len) = (region.as_ptr(), region.len());
    // SAFETY: the region is ours, 128-byte aligned, `len` bytes; every handle below is dropped
    // before it.
    unsafe {
        let _ = match kind {
            0 => SpscRing::<u64>::init(ptr, len, cap, start),
            1 => StampedRing::<u64>::init(ptr, len, cap, start),
            2 => MpmcRing::<u64>::init(ptr, len, cap, start),
            3 => RecordRing::init(ptr, len, cap * 128, start & !7),
            4 => BroadcastRing::init(ptr, len, cap, 32, start),
            _ => crate::LatestRing::init(ptr, len, cap, 20),
        };
        let rest = b.0;
        let n = rest.len().min(len.saturating_sub(keep));
        core::ptr::copy_nonoverlapping(rest.as_ptr(), ptr.add(keep), n);
        exercise(kind, ptr, len.saturating_sub(short));
    }
}

/// # Safety
/// `ptr` valid for reads and writes of `len` bytes, used by nobody else meanwhile.
unsafe fn exercise(kind: u8, ptr: *mut u8, len: usize) {
    let dead = |_: u64| false;
    // SAFETY: forwarded contract (all the attaches below); every handle is dropped inside its
    // block, before the caller frees the region.
    unsafe {
        match kind {
            0 => {
                if let Ok(mut c) = SpscRing::<u64>::consumer(ptr, len, 7, &dead) {
                    for _ in 0..STEPS {
                        let _ = c.pop();
                        let _ = c.peek();
                    }
                    let mut out = [0u64; 8];
                    let _ = c.pop_slice(&mut out);
                    if let Ok(ch) = c.read_chunk(2) {
                        let mut out = [0u64; 2];
                        ch.copy_to_slice(&mut out);
                        ch.commit_all();
                    }
                }
                if let Ok(mut p) = SpscRing::<u64>::producer(ptr, len, 8, &dead) {
                    for i in 0..STEPS as u64 {
                        let _ = p.push(i);
                    }
                    let _ = p.push_slice(&[1, 2, 3]);
                }
            }
            1 => {
                if let Ok(mut c) = StampedRing::<u64>::consumer(ptr, len, 7, &dead) {
                    for _ in 0..STEPS {
                        let _ = c.pop();
                        let _ = c.peek();
                    }
                    let _ = c.len();
                }
                if let Ok(mut p) = StampedRing::<u64>::producer(ptr, len, 8, &dead) {
                    for i in 0..STEPS as u64 {
                        let _ = p.push(i);
                    }
                }
            }
            2 => {
                // A hostile stamp costs 2^16 retries before `Corrupt`: stop there.
                if let Ok(r) = MpmcRing::<u64>::receiver(ptr, len) {
                    for _ in 0..STEPS {
                        if r.pop() == Err(PopError::Corrupt) {
                            break;
                        }
                    }
                }
                if let Ok(s) = MpmcRing::<u64>::sender(ptr, len) {
                    for i in 0..STEPS as u64 {
                        if matches!(s.push(i), Err(PushError::Corrupt(_))) {
                            break;
                        }
                    }
                }
            }
            3 => {
                if let Ok(mut c) = RecordRing::consumer(ptr, len, 7, &dead) {
                    let mut buf = vec![0u8; c.max_record()];
                    for i in 0..STEPS {
                        if let Ok(r) = c.read() {
                            let n = r.len().min(buf.len());
                            r.copy_to(&mut buf[..n]);
                            let _ = r.owner();
                        }
                        let _ = c.unblock(&|_| false, i % 2 == 0);
                        let _ = c.is_ready();
                        let _ = c.len();
                    }
                }
                if let Ok(mut p) = RecordRing::producer(ptr, len, 3, &|t| t % 2 == 0) {
                    for i in 0..STEPS {
                        // An inconsistent ring costs 2^16 retries before `Corrupt`.
                        if p.send(&[i as u8; 13]) == Err(ClaimError::Corrupt) {
                            break;
                        }
                        let _ = p.has_room(40);
                    }
                }
            }
            5 => exercise_latest(ptr, len),
            _ => {
                if let Ok(mut r) = BroadcastRing::reader(ptr, len) {
                    let mut buf = [0u8; 16];
                    for _ in 0..STEPS {
                        let _ = r.recv(&mut buf);
                        let _ = r.is_ready();
                        let _ = r.backlog();
                    }
                }
                if let Ok(mut p) = BroadcastRing::producer(ptr, len, 8, &dead) {
                    for i in 0..STEPS {
                        let _ = p.send(&[i as u8; 9]);
                    }
                }
            }
        }
    }
}

/// # Safety
/// As [`exercise`].
unsafe fn exercise_latest(ptr: *mut u8, len: usize) {
    // SAFETY: forwarded contract; the handles are dropped inside this function.
    unsafe {
        if let Ok(mut r) = crate::LatestRing::reader(ptr, len) {
            let mut buf = [0u8; 24];
            for i in 0..STEPS {
                let _ = r.read(&mut buf[..i % 25]);
                let _ = r.read_if_changed(&mut buf);
                let _ = r.version();
            }
        }
        if let Ok(mut w) = crate::LatestRing::writer(ptr, len, 8) {
            for i in 0..STEPS {
                let _ = w.write_with(&[i as u8; 24][..i % 25], &|_| false);
            }
        }
    }
}

/// The kind a first byte chooses: `% 5` below 250 (as before the latest-value kind, so stored
/// inputs keep their meaning), 5 (latest value) from 250.
fn kind_of(first: u8) -> u8 {
    if first >= 250 { 5 } else { first % 5 }
}

/// Interprets the input as a sequence of operations on a ring of the kind the first byte
/// chooses (first position from the next eight bytes), checked against a model; panics on any
/// difference.
pub fn ops_against_model(data: &[u8]) {
    let mut b = Bytes(data);
    let kind = kind_of(b.u8());
    let cap = 1u64 << (1 + b.u8() % 5);
    let start = b.u64();
    match kind {
        0..=2 => fixed_size(kind, cap, start, &mut b),
        // Bit 2 of the start (positions are 8-aligned) picks the model with stalled claims.
        3 if start & 4 != 0 => records_stalled(start & !7, &mut b),
        3 => records(start & !7, &mut b),
        4 => broadcast(cap, start, &mut b),
        _ => latest(cap, &mut b),
    }
}

/// Latest value against a model: writes of any length up to the value size (or past it:
/// `TooLong`), reads with any buffer; a read returns the last value written and its version.
fn latest(slots: u64, b: &mut Bytes<'_>) {
    let (mut w, mut r) = HeapRegion::latest(slots, 20);
    let (mut last, mut version): (Vec<u8>, u64) = (Vec::new(), 0);
    let mut buf = [0u8; 24];
    while !b.0.is_empty() {
        let op = b.u8();
        let n = usize::from(op >> 3) % 25;
        if op & 1 == 0 {
            let val: Vec<u8> = (0..n).map(|i| op.wrapping_add(i as u8)).collect();
            match w.write(&val) {
                Ok(v) => {
                    assert!(n <= 20 && v == version + 1);
                    (last, version) = (val, v);
                }
                Err(crate::LatestError::TooLong { len, max }) => {
                    assert!(n > 20 && len == n && max == 20);
                }
                Err(e) => panic!("{e}"),
            }
        } else {
            let changed = op & 2 != 0;
            let got = if changed {
                r.read_if_changed(&mut buf[..n])
            } else {
                r.read(&mut buf[..n])
            };
            match got {
                Ok(None) => assert!(version == 0 || (changed && r.last_version() == version)),
                Ok(Some((len, v))) => {
                    assert_eq!((&buf[..len], v), (&last[..], version));
                }
                Err(crate::LatestError::BufferTooSmall { needed }) => {
                    assert!(needed == last.len() && needed > n);
                }
                Err(e) => panic!("{e}"),
            }
        }
    }
}

fn fixed_size(kind: u8, cap: u64, start: u64, b: &mut Bytes<'_>) {
    let mut model = VecDeque::new();
    let mut next = 0u64;
    macro_rules! run {
        ($tx:expr, $rx:expr, $cap:expr) => {{
            #[allow(unused_mut)] // MPMC ends take &self
            let (mut tx, mut rx) = ($tx, $rx);
            while !b.0.is_empty() {
                if b.u8() % 2 == 0 {
                    let ok = tx.push(next).is_ok();
                    assert_eq!(
                        ok,
                        model.len() < $cap as usize,
                        "push with {} queued",
                        model.len()
                    );
                    if ok {
                        model.push_back(next);
                    }
                    next += 1;
                } else {
                    assert_eq!(rx.pop().ok(), model.pop_front());
                }
            }
        }};
    }
    match kind {
        0 => {
            let (tx, rx) = HeapRegion::spsc_at::<u64>(cap, start);
            run!(tx, rx, cap);
        }
        1 => {
            let (tx, rx) = HeapRegion::stamped_at::<u64>(cap, start);
            run!(tx, rx, cap);
        }
        _ => {
            let (tx, rx) = HeapRegion::mpmc_at::<u64>(cap, start);
            run!(tx, rx, cap);
        }
    }
}

fn records(start: u64, b: &mut Bytes<'_>) {
    let (mut p, mut c) = HeapRegion::record_at(1024, start);
    let mut model = VecDeque::new();
    while !b.0.is_empty() {
        let op = b.u8();
        if op % 3 == 0 {
            if let Ok(r) = c.read() {
                assert_eq!(Some(r.to_vec()), model.pop_front());
            } else {
                assert!(model.is_empty());
            }
        } else {
            let len = b.u8() as usize % 121;
            let m: Vec<u8> = (0..len).map(|i| op.wrapping_add(i as u8)).collect();
            if op % 3 == 1 {
                if p.send(&m).is_ok() {
                    model.push_back(m);
                }
            } else if let Ok(mut claim) = p.claim(len) {
                claim.write(0, &m);
                claim.abort();
            }
        }
    }
    for m in model {
        assert_eq!(c.read().map(|r| r.to_vec()).ok(), Some(m));
    }
}

/// An entry of the stalled-claims model: a record sent, or a claim held by staller `k`.
enum Entry {
    Msg(Vec<u8>),
    Held(usize),
}

/// As `records`, with four more producers that each claim once and hold the claim across other
/// operations, a consumer that forces the skip of the claim it waits on (as at its timeout),
/// and stalled producers that resume: commit, abort, or write garbage in place (as a producer
/// resuming mid-copy) and then commit. Fences must keep every other record intact, deliver
/// what was committed in time, and give all space back once every claim is let go.
fn records_stalled(start: u64, b: &mut Bytes<'_>) {
    let (mut p, mut c) = HeapRegion::record_at(1024, start);
    let mut stallers: [crate::RecordProducer; 4] = core::array::from_fn(|_| p.clone());
    let [s0, s1, s2, s3] = &mut stallers;
    let mut unused = [Some(s0), Some(s1), Some(s2), Some(s3)];
    // (claim, its message, skipped by the consumer)
    let mut held: [Option<(crate::Claim<'_>, Vec<u8>, bool)>; 4] = [None, None, None, None];
    let mut model: VecDeque<Entry> = VecDeque::new();
    while !b.0.is_empty() {
        let op = b.u8();
        let k = usize::from(op >> 4) % 4;
        match op % 6 {
            0 => match c.read() {
                Ok(r) => match model.pop_front() {
                    Some(Entry::Msg(m)) => assert_eq!(r.to_vec(), m, "record torn or out of order"),
                    _ => panic!("a record read where none was due"),
                },
                Err(crate::ReadError::Pending) => {
                    assert!(matches!(model.front(), Some(Entry::Held(_))));
                }
                Err(crate::ReadError::Empty) => assert!(model.is_empty(), "records not delivered"),
                Err(e) => panic!("{e}"),
            },
            1 | 2 => {
                let len = b.u8() as usize % 121;
                let m: Vec<u8> = (0..len).map(|i| op.wrapping_add(i as u8)).collect();
                if op % 6 == 1 {
                    match p.send(&m) {
                        Ok(()) => model.push_back(Entry::Msg(m)),
                        Err(ClaimError::Full) => {}
                        Err(e) => panic!("{e}"),
                    }
                } else if let Some(s) = unused[k].take() {
                    if let Ok(claim) = s.claim(len) {
                        model.push_back(Entry::Held(k));
                        held[k] = Some((claim, m, false));
                    }
                }
            }
            3 => {
                if c.unblock(&|_| true, true) == crate::Unblock::Skipped {
                    let Some(Entry::Held(j)) = model.pop_front() else {
                        panic!("a skip where no claim was pending");
                    };
                    if let Some(h) = held[j].as_mut() {
                        h.2 = true;
                    }
                }
            }
            4 => {
                if let Some((mut claim, m, skipped)) = held[k].take() {
                    let at = model
                        .iter()
                        .position(|e| matches!(e, Entry::Held(j) if *j == k));
                    if skipped {
                        // Resumes mid-copy: writes in place, without the header check.
                        // SAFETY: the claim's own `len` bytes; written, never read.
                        unsafe { claim.as_mut_ptr().write_bytes(0xee, claim.len()) };
                        assert!(claim.commit().is_err(), "a skipped claim committed");
                        assert_eq!(at, None);
                    } else {
                        claim.write(0, &m);
                        assert_eq!(claim.commit(), Ok(()));
                        let at = at.expect("a held claim is in the model");
                        model[at] = Entry::Msg(m);
                    }
                }
            }
            _ => {
                if let Some((claim, _, _)) = held[k].take() {
                    drop(claim);
                    model.retain(|e| !matches!(e, Entry::Held(j) if *j == k));
                }
            }
        }
    }
    for h in &mut held {
        drop(h.take());
    }
    model.retain(|e| matches!(e, Entry::Msg(_)));
    for e in model {
        let Entry::Msg(m) = e else { continue };
        assert_eq!(c.read().map(|r| r.to_vec()).ok(), Some(m));
    }
    assert_eq!(c.read().err(), Some(crate::ReadError::Empty));
    assert!(
        !c.has_fence(),
        "space still held after every claim was let go"
    );
}

fn broadcast(cap: u64, start: u64, b: &mut Bytes<'_>) {
    let (mut tx, rx) = HeapRegion::broadcast_at(cap, 32, start);
    let mut readers = [rx.clone(), rx];
    let mut log: Vec<Vec<u8>> = Vec::new();
    let mut next = [0u64; 2];
    let mut buf = [0u8; 16];
    while !b.0.is_empty() {
        let op = b.u8();
        if op % 2 == 0 {
            let len = b.u8() as usize % 17;
            let m: Vec<u8> = (0..len).map(|i| op.wrapping_add(i as u8)).collect();
            tx.send(&m).expect("16 bytes fit a 32-byte slot");
            log.push(m);
        } else {
            let k = usize::from(op / 2 % 2);
            let sent = log.len() as u64;
            match readers[k].recv(&mut buf) {
                Ok(n) => {
                    assert!(sent - next[k] <= cap);
                    assert_eq!(&buf[..n], &log[next[k] as usize][..]);
                    next[k] += 1;
                }
                Err(RecvError::Empty) => assert_eq!(next[k], sent),
                Err(RecvError::Lapped { lost }) => {
                    assert!(sent - next[k] > cap && lost > 0);
                    next[k] += lost;
                    assert!(sent - next[k] <= cap);
                }
                Err(e) => panic!("{e}"),
            }
        }
    }
}
