use super::*;
use crate::HeapRegion;

#[test]
fn records_of_many_lengths_across_many_wraps() {
    for start in [0u64, (u64::MAX - 1024) & !7] {
        let (mut p, mut c) = HeapRegion::record_at(1024, start);
        let max = p.max_record();
        assert_eq!(max, 120);
        let rounds = if cfg!(miri) { 40 } else { 2000 };
        for round in 0..rounds {
            let len = 1 + round * 7 % max;
            let payload: Vec<u8> = (0..len).map(|i| (i + round) as u8).collect();
            p.send(&payload).unwrap();
            let rec = c.read().unwrap();
            assert_eq!(rec.to_vec(), payload);
            drop(rec);
            assert_eq!(c.read().err(), Some(ReadError::Empty));
        }
        assert_eq!(c.skipped(), 0);
    }
}

#[test]
fn full_then_room_again() {
    let (mut p, mut c) = HeapRegion::record(256);
    // 256 bytes: records of 24 (16 + 8 header) fit ten times.
    let mut n = 0;
    while p.send(&[n as u8; 16]).is_ok() {
        n += 1;
    }
    assert_eq!(n, 10);
    assert_eq!(p.send(&[0; 16]), Err(ClaimError::Full));
    assert_eq!(c.read().unwrap().to_vec(), [0u8; 16]);
    p.send(&[99; 16]).unwrap();
    for i in 1..10 {
        assert_eq!(c.read().unwrap().to_vec(), [i as u8; 16]);
    }
    assert_eq!(c.read().unwrap().to_vec(), [99u8; 16]);
}

#[test]
fn a_batch_reads_in_place_and_gives_the_space_back_once() {
    let (mut p, mut c) = HeapRegion::record(1024);
    let h = c.raw.hdr().head.load(Ordering::Relaxed);
    for i in 0..10u8 {
        p.send(&[i; 20]).unwrap();
    }
    let mut seen = Vec::new();
    assert_eq!(c.read_batch(4, |r| seen.push(r.to_vec())).unwrap(), 4);
    assert_eq!(seen, (0..4u8).map(|i| vec![i; 20]).collect::<Vec<_>>());
    // One position store for the batch: the space of all four is free now.
    assert_eq!(c.raw.hdr().head.load(Ordering::Relaxed), h + 4 * 32);
    // A pending claim ends a batch early.
    let claim = p.claim(8).unwrap();
    assert_eq!(c.read_batch(100, |_| {}).unwrap(), 6);
    assert_eq!(c.read_batch(100, |_| {}).unwrap(), 0);
    claim.commit().unwrap();
    assert_eq!(c.read_batch(100, |r| assert_eq!(r.len(), 8)).unwrap(), 1);
}

/// A ring of `cap` bytes as its handles see it, on the memory of a 256-byte ring: for
/// records whose headers lie in the first 256 bytes and whose payload nobody touches
/// (claim, commit, read the header, keep), the only accesses the tests below make.
fn sparse_ring(cap: u64) -> (RecordProducer, RecordConsumer) {
    let (mut p, mut c) = HeapRegion::record(256);
    for raw in [&mut p.raw, &mut c.raw] {
        raw.cap = cap;
        raw.mask = cap - 1;
        raw.max = RecordRing::max_record(cap) as u64;
    }
    (p, c)
}

#[test]
fn records_of_4_gib_or_more_are_refused_on_rings_of_2_pow_36_bytes_or_more() {
    for shift in [36, 37, 40] {
        let (mut p, mut c) = sparse_ring(1 << shift);
        let max = (1usize << 32) - 8;
        assert_eq!(p.max_record(), max, "ring of 2^{shift}");
        assert_eq!(c.max_record(), max);
        // 4 GiB: its length would spill into the state bits (a claim read as committed).
        for len in [1usize << 32, (1 << 33) - 8, max + 1] {
            assert_eq!(
                p.claim(len).err(),
                Some(ClaimError::BadLength { len, max }),
                "ring of 2^{shift}"
            );
        }
        assert_eq!(c.read().err(), Some(ReadError::Empty));
        // The largest record: claimed is claimed (pending), committed is its full length.
        let claim = p.claim(max).unwrap();
        assert_eq!(c.read().err(), Some(ReadError::Pending));
        claim.commit().unwrap();
        let rec = c.read().unwrap();
        assert_eq!(rec.len(), max);
        // Not consumed: consuming zeroes its 4 GiB, which this ring does not have.
        rec.keep();
    }
}

#[test]
fn a_panic_in_a_batch_consumes_what_it_read_and_leaves_the_ring_usable() {
    let (mut p, mut c) = HeapRegion::record(256);
    // Records of 24 bytes: ten fill the ring.
    for i in 0..10u8 {
        p.send(&[i; 16]).unwrap();
    }
    assert_eq!(p.send(&[0; 16]), Err(ClaimError::Full));
    let mut seen = Vec::new();
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        c.read_batch(10, |r| {
            let v = r.to_vec();
            seen.push(v[0]);
            assert_ne!(v[0], 3, "the callback fails on record 3");
        })
    }));
    assert!(panicked.is_err());
    assert_eq!(seen, [0, 1, 2, 3]);
    // Records 0..=3 (the one the callback panicked on included) are consumed and their
    // space is given back: four records fit again, a fifth does not.
    for i in 10..14u8 {
        p.send(&[i; 16]).unwrap();
    }
    assert_eq!(p.send(&[0; 16]), Err(ClaimError::Full));
    // The batch closed: a plain read gives its space back at once again.
    assert_eq!(c.read().unwrap().to_vec(), [4; 16]);
    p.send(&[14; 16]).unwrap();
    let mut rest = Vec::new();
    assert_eq!(c.read_batch(100, |r| rest.push(r.to_vec()[0])).unwrap(), 10);
    assert_eq!(rest, (5..15).collect::<Vec<u8>>());
    assert_eq!(c.read().err(), Some(ReadError::Empty));
}

#[test]
fn lengths_are_checked_at_claim() {
    let (mut p, mut c) = HeapRegion::record(1024);
    // An empty record is a message (a blank line, a heartbeat).
    p.claim(0).unwrap().commit().unwrap();
    assert_eq!(c.read().unwrap().len(), 0);
    assert_eq!(
        p.claim(121).err(),
        Some(ClaimError::BadLength { len: 121, max: 120 })
    );
    assert!(p.claim(120).is_ok());
}

#[test]
fn pending_until_committed_and_aborts_are_skipped() {
    let (mut p, mut c) = HeapRegion::record(1024);
    let mut p2 = p.clone();
    let mut first = p.claim(10).unwrap();
    p2.send(b"second").unwrap();
    // The first record is claimed, not committed: the second waits behind it.
    assert_eq!(c.read().err(), Some(ReadError::Pending));
    first.write(0, b"first-rec!");
    first.commit().unwrap();
    assert_eq!(c.read().unwrap().to_vec(), b"first-rec!");
    assert_eq!(c.read().unwrap().to_vec(), b"second");
    p.claim(5).unwrap().abort();
    drop(p.claim(7).unwrap()); // dropping aborts too
    p2.send(b"third").unwrap();
    assert_eq!(c.read().unwrap().to_vec(), b"third");
    assert_eq!(c.skipped(), 2);
}

#[test]
fn dead_or_stalled_claims_are_unblocked() {
    let (mut p, mut c) = HeapRegion::record(1024);
    let mut p2 = p.clone();
    let claim = p.claim(30).unwrap();
    core::mem::forget(claim); // the producer "dies" between claim and commit
    p2.send(b"after").unwrap();
    assert_eq!(c.read().err(), Some(ReadError::Pending));
    // Owner 0 (the heap ring's producers) alive: nothing happens without force.
    assert_eq!(c.unblock(&|_| true, false), Unblock::StillAlive);
    assert_eq!(c.unblock(&|_| false, false), Unblock::Skipped);
    assert_eq!(c.read().unwrap().to_vec(), b"after");
    assert_eq!(c.skipped(), 1);

    // A stalled (live) producer is skipped with force; its late commit fails.
    let mut claim = p.claim(8).unwrap();
    assert_eq!(c.unblock(&|_| true, true), Unblock::Skipped);
    claim.write(0, b"too late"); // checked: does not write into skipped space
    assert_eq!(claim.commit(), Err(CommitError::Unblocked));
    assert_eq!(c.read().err(), Some(ReadError::Empty));
    assert_eq!(c.skipped(), 2);
}

#[test]
fn claim_without_a_header_is_padded_up_to_the_next_record() {
    let (mut p, mut c) = HeapRegion::record(1024);
    // Simulate a producer that died right after its CAS on the tail: 48 bytes claimed,
    // no header written.
    let raw = p.raw.clone();
    let h = raw.hdr();
    let t = h.tail.load(Ordering::Relaxed);
    h.tail.store(t + 48, Ordering::Relaxed);
    p.send(b"next").unwrap();
    assert_eq!(c.read().err(), Some(ReadError::Pending));
    assert_eq!(c.unblock(&|_| false, false), Unblock::StillAlive);
    assert_eq!(c.unblock(&|_| false, true), Unblock::Skipped);
    assert_eq!(c.read().unwrap().to_vec(), b"next");
    // And at the very tail (nothing after it).
    let t = h.tail.load(Ordering::Relaxed);
    h.tail.store(t + 64, Ordering::Relaxed);
    assert_eq!(c.read().err(), Some(ReadError::Pending));
    assert_eq!(c.unblock(&|_| false, true), Unblock::Skipped);
    assert_eq!(c.read().err(), Some(ReadError::Empty));
    p.send(b"still fine").unwrap();
    assert_eq!(c.read().unwrap().to_vec(), b"still fine");
}

/// Space claimed without headers longer than any one claim (several producers that died after
/// their tail CAS): each forced skip covers at most the largest claim (a record of the maximum
/// and its header), so every padding length fits what a header may say; the reads that follow
/// never find a padding they must call corrupt.
#[test]
fn a_forced_skip_covers_at_most_the_largest_claim() {
    let (mut p, mut c) = HeapRegion::record(1024);
    let largest = (p.max_record() + RECORD_HEADER) as u64;
    let raw = p.raw.clone();
    let h = raw.hdr();
    let t = h.tail.load(Ordering::Relaxed);
    h.tail.store(t + 400, Ordering::Relaxed);
    let mut skips = 0;
    loop {
        let e = match c.read() {
            Ok(r) => panic!("a record of {} bytes where none was sent", r.len()),
            Err(e) => e,
        };
        match e {
            ReadError::Pending => {
                let before = c.position();
                assert_eq!(c.unblock(&|_| false, true), Unblock::Skipped);
                // The padding is read on the next call: one skip, at most `largest` bytes.
                assert!(matches!(
                    c.read().err(),
                    Some(ReadError::Pending | ReadError::Empty)
                ));
                assert!(
                    c.position() - before <= largest,
                    "{}",
                    c.position() - before
                );
                skips += 1;
            }
            ReadError::Empty => break,
            e @ ReadError::Corrupt(_) => panic!("{e}"),
        }
    }
    assert_eq!(c.position(), t + 400);
    assert_eq!(skips, 4);
    assert_eq!(c.skipped(), 4);
    p.send(b"after").unwrap();
    assert_eq!(c.read().unwrap().to_vec(), b"after");
}

#[test]
fn hostile_headers_are_corrupt() {
    let (mut p, mut c) = HeapRegion::record(1024);
    p.send(b"x").unwrap();
    let off = c.head & c.raw.mask;
    for bad in [
        word(5000, COMMITTED, 0),                      // longer than the maximum
        word(5, PADDING, 0),                           // misaligned padding
        word(2000, PADDING, 0),                        // padding past the end
        word(5, COMMITTED, 0) | 1 << 37,               // reserved bit
        word(5, COMMITTED, 0) | FENCE_BIT,             // a fence on a record
        word(8, PADDING, 0) | FENCE_BIT,               // a fence on padding that is no skip
        word(8, PADDING, 0) | SKIP_BIT | NO_OWNER_BIT, // no-owner without the fence
    ] {
        c.raw.header(off).store(bad, Ordering::Relaxed);
        assert!(
            matches!(c.read().err(), Some(ReadError::Corrupt(_))),
            "{bad:#x}"
        );
    }
}

/// A hostile length at a position that is not a multiple of 8 (a consumer position taken
/// from a `head` a hostile peer changed under the attach; set directly here): the record's
/// rounded size runs past the end of the buffer. Corrupt, never a write past the data area
/// (which ends the heap allocation: it corrupted the heap).
#[test]
fn a_hostile_length_at_a_misaligned_position_is_corrupt_not_out_of_bounds() {
    let (_p, mut c) = HeapRegion::record(1024);
    for (pos, len) in [(1013u64, 3u64), (1009, 7), (1017 - 8, 1), (5, 100)] {
        c.head = pos;
        c.released = pos;
        // The header word the consumer reads there: the word holding `pos`.
        c.raw
            .header(pos & !7)
            .store(word(len, COMMITTED, 0), Ordering::Relaxed);
        assert!(
            matches!(c.read().err(), Some(ReadError::Corrupt(_))),
            "a record of {len} bytes at {pos}"
        );
        // Nothing given back.
        assert_eq!(c.raw.hdr().head.load(Ordering::Relaxed), 0);
        // And the header check on its own refuses it too.
        assert!(matches!(
            c.decode(pos, word(len, COMMITTED, 0)),
            Err(ReadError::Corrupt(_))
        ));
    }
}

#[test]
fn a_head_running_away_ends_in_corrupt_not_a_livelock() {
    let (mut p, c) = HeapRegion::record(1024);
    // ORDERING: Relaxed; test setup.
    c.raw.hdr().head.store(1 << 40, Ordering::Relaxed);
    // The producer looks at the head once its cached view of the free space runs out.
    let mut last = Ok(());
    for _ in 0..20 {
        last = p.send(&[1; 100]);
        if last.is_err() {
            break;
        }
    }
    assert_eq!(last, Err(ClaimError::Corrupt));
}

#[test]
fn hostile_positions_are_refused_at_attach() {
    let region = HeapRegion::new(RecordRing::required_size(1024));
    // SAFETY: the region outlives the handles.
    unsafe {
        RecordRing::init(region.as_ptr(), region.len(), 1024, 0).unwrap();
        let h = &*region.as_ptr().cast::<Header>();
        h.tail.store(5000, Ordering::Relaxed);
        assert!(matches!(
            RecordRing::producer(region.as_ptr(), region.len(), 1, &|_| true),
            Err(AttachError::Corrupt(_))
        ));
        h.tail.store(12, Ordering::Relaxed);
        assert!(RecordRing::producer(region.as_ptr(), region.len(), 1, &|_| true).is_err());
    }
}

/// A ring on the heap and handles with chosen owner tags.
fn owned_ring(
    region: &HeapRegion,
    owners: &[u32],
    is_alive: &dyn Fn(u32) -> bool,
) -> (Vec<RecordProducer>, RecordConsumer) {
    // SAFETY: the caller keeps the region alive longer than the handles.
    unsafe {
        RecordRing::init(region.as_ptr(), region.len(), 1024, 0).unwrap();
        let ps = owners
            .iter()
            .map(|&o| RecordRing::producer(region.as_ptr(), region.len(), o, is_alive))
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let c = RecordRing::consumer(region.as_ptr(), region.len(), 99, &|_| true).unwrap();
        (ps, c)
    }
}

#[test]
fn a_claim_abandoned_before_its_header_is_skipped_without_the_timeout() {
    let region = HeapRegion::new(RecordRing::required_size(1024));
    let alive = |t: u32| t != 7 && t != 8;
    let (mut ps, mut c) = owned_ring(&region, &[7, 1, 8], &alive);
    let dead2 = ps.pop().unwrap();
    let mut live = ps.pop().unwrap();
    let dead = ps.pop().unwrap();
    // Owner 7 dies after its CAS on the tail, before writing the header.
    dead.abandon_claim_for_tests(30, true);
    live.send(b"after").unwrap();
    assert_eq!(c.read().err(), Some(ReadError::Pending));
    assert_eq!(c.unblock(&|_| true, false), Unblock::StillAlive);
    assert_eq!(c.unblock(&alive, false), Unblock::Skipped);
    assert_eq!(c.read().unwrap().to_vec(), b"after");
    assert_eq!(c.skipped(), 1);

    // Owner 8 dies after publishing its intent, before its CAS; a live producer then
    // claims that very position and has not written its header yet: its own intent keeps
    // the consumer waiting (it is padded only with force, and loses nothing: it claims
    // again).
    dead2.abandon_claim_for_tests(30, false);
    let live2 = live.clone();
    live2.abandon_claim_for_tests(30, true);
    assert_eq!(c.read().err(), Some(ReadError::Pending));
    assert_eq!(c.unblock(&alive, false), Unblock::StillAlive);
    assert_eq!(c.unblock(&alive, true), Unblock::Skipped);
    assert_eq!(c.read().err(), Some(ReadError::Empty));
    live.send(b"on").unwrap();
    assert_eq!(c.read().unwrap().to_vec(), b"on");
}

#[test]
fn a_forced_skip_stops_at_the_next_claim_in_flight() {
    let region = HeapRegion::new(RecordRing::required_size(1024));
    let (mut ps, mut c) = owned_ring(&region, &[1, 2, 3], &|_| true);
    let mut third = ps.pop().unwrap();
    let second = ps.pop().unwrap();
    let stalled = ps.pop().unwrap();
    // A live producer took 24 bytes at 0 and stalls before its header; a second one took
    // the next 16 bytes and has not written its header yet either; a third committed after.
    stalled.abandon_claim_for_tests(10, true);
    second.abandon_claim_for_tests(8, true);
    third.send(b"third").unwrap();
    assert_eq!(c.read().err(), Some(ReadError::Pending));
    // The timeout passes for the first claim: only its 24 bytes become padding (scanning
    // for the next written header would have swallowed the second claim too, and its
    // producer, resuming, would write into space given back).
    assert_eq!(c.unblock(&|_| true, true), Unblock::Skipped);
    assert_eq!(c.read().err(), Some(ReadError::Pending));
    assert_eq!(c.position(), 24);
    assert_eq!(c.unblock(&|_| true, true), Unblock::Skipped);
    assert_eq!(c.read().unwrap().to_vec(), b"third");
    assert_eq!(c.skipped(), 2);
}

#[test]
fn intent_entries_of_dead_producers_are_taken_over() {
    let region = HeapRegion::new(RecordRing::required_size(1024));
    let owners: Vec<u32> = (1..=INTENTS as u32).collect();
    let (ps, mut c) = owned_ring(&region, &owners, &|_| true);
    assert!(ps.iter().all(|p| p.intent.is_some()));
    // Every entry held by a live producer: one more works, without an entry.
    // SAFETY: the region outlives the handles.
    let mut extra =
        unsafe { RecordRing::producer(region.as_ptr(), region.len(), 500, &|_| true) }.unwrap();
    assert_eq!(extra.intent, None);
    extra.send(b"x").unwrap();
    assert_eq!(c.read().unwrap().to_vec(), b"x");
    // The holders die (no drop runs); owner 1 died mid-claim, before its header.
    let mut ps = ps.into_iter();
    ps.next().unwrap().abandon_claim_for_tests(8, true);
    ps.for_each(core::mem::forget);
    let alive2 = |t: u32| t == 500 || t > 1000;
    // SAFETY: as above.
    let p = unsafe { RecordRing::producer(region.as_ptr(), region.len(), 1001, &alive2) }.unwrap();
    // Entry 0 still names a claim ahead of the consumer: kept as evidence.
    assert!(p.intent.is_some_and(|i| i != 0));
    assert_eq!(c.unblock(&alive2, false), Unblock::Skipped);
    assert_eq!(c.read().err(), Some(ReadError::Empty));
    drop(p);
    // Now that the consumer passed it, entry 0 can be reused too.
    let ps: Vec<_> = (0..INTENTS as u32)
        .map(|i| {
            // SAFETY: as above.
            unsafe { RecordRing::producer(region.as_ptr(), region.len(), 1002 + i, &alive2) }
                .unwrap()
        })
        .collect();
    assert!(ps.iter().all(|p| p.intent.is_some()));
    assert!(ps.iter().any(|p| p.intent == Some(0)));
}

#[test]
fn three_threads_deliver_everything_in_order_per_producer() {
    let per: u32 = if cfg!(miri) { 10 } else { 20_000 };
    let (p, mut c) = HeapRegion::record(4096);
    let handles: Vec<_> = (0..3u32)
        .map(|id| {
            let mut p = p.clone();
            std::thread::spawn(move || {
                for i in 0..per {
                    let len = 4 + (i as usize * 13 + id as usize) % 200;
                    let mut payload = vec![0u8; len];
                    payload[..4].copy_from_slice(&(id << 24 | i).to_le_bytes());
                    for (k, b) in payload[4..].iter_mut().enumerate() {
                        *b = (i as usize + k) as u8;
                    }
                    loop {
                        match p.send(&payload) {
                            Ok(()) => break,
                            Err(ClaimError::Full) => std::thread::yield_now(),
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
            })
        })
        .collect();
    drop(p);
    let mut next = [0u32; 3];
    let mut got = 0;
    while got < 3 * per {
        match c.read() {
            Ok(r) => {
                let v = r.to_vec();
                let tag = u32::from_le_bytes(v[..4].try_into().unwrap());
                let (id, i) = ((tag >> 24) as usize, tag & 0xff_ffff);
                assert_eq!(i, next[id], "order of producer {id}");
                assert_eq!(v.len(), 4 + (i as usize * 13 + id) % 200);
                for (k, b) in v[4..].iter().enumerate() {
                    assert_eq!(*b, (i as usize + k) as u8);
                }
                next[id] += 1;
                got += 1;
            }
            Err(ReadError::Empty | ReadError::Pending) => std::thread::yield_now(),
            Err(e) => panic!("{e}"),
        }
    }
    for h in handles {
        h.join().unwrap();
    }
}

/// A record of 120 bytes (the largest a 1024-byte ring takes) whose bytes all say `tag`.
fn full_record(tag: u8) -> Vec<u8> {
    vec![tag; 120]
}

/// The fence scenario: a claim of 120 bytes at 0 stalls past the timeout (the consumer
/// skips it while its producer lives), `other` fills the rest of the ring with 7 records
/// the consumer reads, and the space stays held.
fn stall_past_the_timeout(other: &mut RecordProducer, c: &mut RecordConsumer) {
    assert_eq!(c.read().err(), Some(ReadError::Pending));
    assert_eq!(c.unblock(&|_| true, true), Unblock::Skipped);
    for k in 0..7 {
        other.send(&full_record(k)).unwrap();
        assert_eq!(c.read().unwrap().to_vec(), full_record(k));
    }
    assert!(c.has_fence());
    // Everything was read, but the stalled claim's space, and all after it, is held.
    assert_eq!(c.read().err(), Some(ReadError::Empty));
    assert_eq!(other.send(b"x"), Err(ClaimError::Full));
}

#[test]
fn a_skipped_live_claim_keeps_its_space_until_its_producer_lets_go() {
    let region = HeapRegion::new(RecordRing::required_size(1024));
    let (mut ps, mut c) = owned_ring(&region, &[1, 2], &|_| true);
    let mut other = ps.pop().unwrap();
    let mut slow = ps.pop().unwrap();
    let mut claim = slow.claim(120).unwrap();
    stall_past_the_timeout(&mut other, &mut c);
    // SAFETY: the claim's payload lies in the ring; written, never read.
    let late = unsafe { claim.as_mut_ptr() };
    // The stalled producer resumes mid-copy and writes its payload: into space nobody
    // else has (before fences, `other`'s next records were there).
    // SAFETY: 120 bytes of the claim's payload.
    unsafe { late.write_bytes(0xee, 120) };
    assert_eq!(c.release_fenced(&|_| true), Ok(false));
    // It commits: too late, and that lets the space go.
    assert_eq!(claim.commit(), Err(CommitError::Unblocked));
    assert_eq!(c.read().err(), Some(ReadError::Empty));
    assert!(!c.has_fence());
    // The space is reused, and nothing written late shows.
    for k in 10..30 {
        other.send(&full_record(k)).unwrap();
        assert_eq!(c.read().unwrap().to_vec(), full_record(k));
    }
    assert_eq!(c.skipped(), 1);
}

#[test]
fn a_fence_of_a_producer_that_dies_is_lifted_by_the_liveness_check() {
    let region = HeapRegion::new(RecordRing::required_size(1024));
    let (mut ps, mut c) = owned_ring(&region, &[1, 2], &|_| true);
    let mut other = ps.pop().unwrap();
    let mut slow = ps.pop().unwrap();
    let claim = slow.claim(120).unwrap();
    stall_past_the_timeout(&mut other, &mut c);
    // It dies holding the claim (no drop runs in a killed process).
    core::mem::forget(claim);
    core::mem::forget(slow);
    assert_eq!(c.release_fenced(&|_| true), Ok(false));
    assert_eq!(c.release_fenced(&|t| t != 1), Ok(true));
    assert!(!c.has_fence());
    other.send(b"after").unwrap();
    assert_eq!(c.read().unwrap().to_vec(), b"after");
}

#[test]
fn a_fence_over_a_claim_without_header_waits_for_its_intent() {
    let region = HeapRegion::new(RecordRing::required_size(1024));
    let (mut ps, mut c) = owned_ring(&region, &[1, 2], &|_| true);
    let mut other = ps.pop().unwrap();
    // Stalled between its two claim steps (tail taken, header not written), alive.
    ps.pop().unwrap().abandon_claim_for_tests(120, true);
    stall_past_the_timeout(&mut other, &mut c);
    // Its intent still names the claim: held while it may live, lifted once it is dead.
    assert_eq!(c.release_fenced(&|_| true), Ok(false));
    assert_eq!(c.release_fenced(&|t| t != 1), Ok(true));
    other.send(b"after").unwrap();
    assert_eq!(c.read().unwrap().to_vec(), b"after");
}

#[test]
fn a_consumer_taking_over_behind_a_fence_delivers_nothing_twice() {
    let region = HeapRegion::new(RecordRing::required_size(1024));
    let (mut ps, mut c) = owned_ring(&region, &[1, 2], &|_| true);
    let mut other = ps.pop().unwrap();
    let mut slow = ps.pop().unwrap();
    let claim = slow.claim(120).unwrap();
    stall_past_the_timeout(&mut other, &mut c);
    drop(c);
    // SAFETY: the region outlives the handle.
    let mut c2 =
        unsafe { RecordRing::consumer(region.as_ptr(), region.len(), 100, &|_| true) }.unwrap();
    assert!(c2.has_fence());
    assert_eq!(c2.read().err(), Some(ReadError::Empty));
    drop(claim);
    assert_eq!(c2.read().err(), Some(ReadError::Empty));
    assert!(!c2.has_fence());
    other.send(b"after").unwrap();
    assert_eq!(c2.read().unwrap().to_vec(), b"after");
}

/// What a consumer that took over delivers until the ring is empty, forcing every pending
/// claim's skip (as it does once its timeout has passed).
fn drain_forcing(c: &mut RecordConsumer, what: &str) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    for _ in 0..100 {
        let read = c.read().map(|r| r.to_vec());
        match read {
            Ok(r) => got.push(r),
            Err(ReadError::Pending) => {
                assert_eq!(c.unblock(&|_| true, true), Unblock::Skipped, "{what}");
            }
            Err(ReadError::Empty) => return got,
            Err(e) => panic!("{what}: {e:?}"),
        }
    }
    panic!("{what}: the ring never ran empty");
}

/// A consumer taking over from one that was killed at the given point of giving back the
/// space of the record it had just read (CI's torture killed byte receivers at random).
fn take_over(region: &HeapRegion) -> RecordConsumer {
    // SAFETY: the region outlives the handle.
    unsafe { RecordRing::consumer(region.as_ptr(), region.len(), 100, &|o| o != 99) }.unwrap()
}

#[test]
fn a_consumer_killed_while_giving_a_record_back_leaves_a_readable_ring() {
    // No zero byte in the payload: a forced skip scanning for the next header stops at any
    // payload word left unzeroed.
    let first: Vec<u8> = (0..100u8).map(|i| 0x80 | i).collect();
    let rest = [vec![0xbb; 40], vec![0xdd; 7]];
    let size = align8(RECORD_HEADER as u64 + first.len() as u64);
    for stores in 0..=size / 8 + 1 {
        let what = format!("consumer killed after {stores} stores of its give-back");
        let region = HeapRegion::new(RecordRing::required_size(1024));
        let (mut ps, mut c) = owned_ring(&region, &[1], &|_| true);
        for m in [&first, &rest[0], &rest[1]] {
            ps[0].send(m).unwrap();
        }
        let rec = c.read().unwrap();
        assert_eq!(rec.to_vec(), first);
        let off = rec.off;
        rec.keep();
        // Killed part-way through consuming it: no `head` published, no drop.
        c.raw.zero_until(off, size, stores);
        core::mem::forget(c);
        let mut c2 = take_over(&region);
        let got = drain_forcing(&mut c2, &what);
        // Delivered again only if untouched; otherwise gone with its consumer, never torn,
        // and what follows comes whole.
        let want = if stores == 0 {
            vec![first.clone(), rest[0].clone(), rest[1].clone()]
        } else {
            rest.to_vec()
        };
        assert_eq!(got, want, "{what}");
        ps[0].send(b"on").unwrap();
        assert_eq!(c2.read().unwrap().to_vec(), b"on", "{what}");
    }
}

#[test]
fn a_consumer_killed_while_lifting_a_fence_leaves_a_readable_ring() {
    // The fence scenario (a claim at 0 skipped while its producer lived, seven records read
    // past it), the producer lets go, and the consumer dies while it gives the space back:
    // `records` of the eight records and padding zeroed whole, the next one after `stores`
    // stores, nothing published.
    let records: &[u64] = if cfg!(miri) {
        &[0, 3, 7]
    } else {
        &[0, 1, 2, 3, 4, 5, 6, 7]
    };
    for &records in records {
        for stores in 0..=128 / 8 + 1 {
            let what = format!(
                "killed lifting a fence: {records} records given back, {stores} stores into the next"
            );
            let region = HeapRegion::new(RecordRing::required_size(1024));
            let (mut ps, mut c) = owned_ring(&region, &[1, 2], &|_| true);
            let mut other = ps.pop().unwrap();
            let mut slow = ps.pop().unwrap();
            let claim = slow.claim(120).unwrap();
            stall_past_the_timeout(&mut other, &mut c);
            drop(claim);
            for k in 0..records {
                c.raw.zero(k * 128, 128);
            }
            c.raw.zero_until(records * 128, 128, stores);
            core::mem::forget(c);
            let mut c2 = take_over(&region);
            // Nothing is delivered again, the space comes back, the ring goes on.
            assert_eq!(
                drain_forcing(&mut c2, &what),
                Vec::<Vec<u8>>::new(),
                "{what}"
            );
            assert!(!c2.has_fence(), "{what}");
            for k in 0..8 {
                other.send(&full_record(k)).unwrap();
                assert_eq!(c2.read().unwrap().to_vec(), full_record(k), "{what}");
            }
        }
    }
}

#[test]
fn a_successor_lifting_what_a_killed_consumer_zeroed_stops_at_its_read_position() {
    // As above, with three records read past the fence, not seven: the free space after the
    // read position is zero too, and the zeroes the dead consumer left end there, not at the
    // next header (a lift running past the read position would never find it again: run in a
    // thread, so that shows as a failure, not a hang).
    let (done, finished) = std::sync::mpsc::channel();
    let successor = std::thread::spawn(move || {
        let region = HeapRegion::new(RecordRing::required_size(1024));
        let (mut ps, mut c) = owned_ring(&region, &[1, 2], &|_| true);
        let mut other = ps.pop().unwrap();
        let mut slow = ps.pop().unwrap();
        let claim = slow.claim(120).unwrap();
        assert_eq!(c.read().err(), Some(ReadError::Pending));
        assert_eq!(c.unblock(&|_| true, true), Unblock::Skipped);
        for k in 0..3 {
            other.send(&full_record(k)).unwrap();
            assert_eq!(c.read().unwrap().to_vec(), full_record(k));
        }
        drop(claim);
        // Killed once it had given all four back, before its `head` store.
        for k in 0..4 {
            c.raw.zero(k * 128, 128);
        }
        core::mem::forget(c);
        let mut c2 = take_over(&region);
        assert_eq!(c2.read().err(), Some(ReadError::Empty));
        assert!(!c2.has_fence());
        assert_eq!(c2.raw.hdr().head.load(Ordering::Relaxed), 512);
        other.send(b"after").unwrap();
        assert_eq!(c2.read().unwrap().to_vec(), b"after");
        done.send(()).unwrap();
    });
    finished
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("the successor's lift ended and the ring went on");
    successor.join().unwrap();
}

/// A ring of 1024 bytes whose first position is `start`, a producer (owner 1) and the
/// consumer (owner 99), on `region`.
fn ring_at(region: &HeapRegion, start: u64) -> (RecordProducer, RecordConsumer) {
    // SAFETY: the caller keeps the region alive longer than the handles.
    unsafe {
        RecordRing::init(region.as_ptr(), region.len(), 1024, start).unwrap();
        let p = RecordRing::producer(region.as_ptr(), region.len(), 1, &|_| true).unwrap();
        let c = RecordRing::consumer(region.as_ptr(), region.len(), 99, &|_| true).unwrap();
        (p, c)
    }
}

/// One record or padding a consumer gives back: where, how many bytes, and the payload of a
/// committed record (what a successor delivers again if its give-back had not begun).
struct GiveBack {
    off: u64,
    size: u64,
    payload: Option<Vec<u8>>,
}

/// The records and paddings from position `from` on, in ring order, up to and including the
/// `records`-th committed record (`usize::MAX`: up to position `to`).
fn give_backs(c: &RecordConsumer, from: u64, to: u64, records: usize) -> Vec<GiveBack> {
    let mut out = Vec::new();
    let (mut pos, mut seen) = (from, 0);
    while pos != to && seen < records {
        let off = pos & c.raw.mask;
        let w = c.raw.header(off).load(Ordering::Relaxed);
        let (state, len, _) = c.decode(off, w).unwrap();
        let (size, payload) = match state {
            COMMITTED => {
                let mut v = vec![0u8; len as usize];
                c.raw.read(off + RECORD_HEADER as u64, &mut v);
                seen += 1;
                (align8(RECORD_HEADER as u64 + len), Some(v))
            }
            PADDING => (RECORD_HEADER as u64 + len, None),
            s => panic!("state {s} at {off}"),
        };
        out.push(GiveBack { off, size, payload });
        pos = pos.wrapping_add(size);
    }
    out
}

/// Gives `spans` back in order as `Raw::zero` does, killed after `stores` of its stores (each
/// span takes `size / 8 + 1`); `publish`: `head` is stored after each span given back whole
/// (one record at a time; a batch or a lift publishes only at its end, which a kill prevents).
/// Returns the payloads of the records whose give-back had not begun.
fn give_back_until(
    c: &RecordConsumer,
    spans: &[GiveBack],
    mut head: u64,
    mut stores: u64,
    publish: bool,
) -> Vec<Vec<u8>> {
    let mut untouched = Vec::new();
    for s in spans {
        let n = s.size / 8 + 1;
        if stores == 0 {
            untouched.extend(s.payload.clone());
        } else if stores >= n {
            c.raw.zero(s.off, s.size);
            stores -= n;
            head = head.wrapping_add(s.size);
            if publish {
                c.raw.hdr().head.store(head, Ordering::Release);
            }
        } else {
            c.raw.zero_until(s.off, s.size, stores);
            stores = 0;
        }
    }
    untouched
}

/// A successor's drain (`drain_forcing`) after a kill, then the checks that nothing of the
/// ring was lost or overrun: it stands at the tail, holds no fence, and a producer fills and
/// a consumer empties the whole ring twice over, record by record.
fn successor_goes_on(region: &HeapRegion, p: &mut RecordProducer, want: &[Vec<u8>], what: &str) {
    let mut c2 = take_over(region);
    assert_eq!(drain_forcing(&mut c2, what), want, "{what}");
    assert!(!c2.has_fence(), "{what}");
    let tail = c2.raw.hdr().tail.load(Ordering::Relaxed);
    assert_eq!(
        c2.position(),
        tail,
        "{what}: the successor is not at the tail"
    );
    assert_eq!(
        c2.raw.hdr().head.load(Ordering::Relaxed),
        tail,
        "{what}: space not given back"
    );
    for k in 0..24u8 {
        let m = vec![k; 1 + usize::from(k) * 5 % 120];
        p.send(&m)
            .unwrap_or_else(|e| panic!("{what}: send {k}: {e:?}"));
        assert_eq!(c2.read().map(|r| r.to_vec()), Ok(m), "{what}: record {k}");
    }
    assert_eq!(c2.read().err(), Some(ReadError::Empty), "{what}");
}

/// Runs `f` on a thread and fails if it has not ended within 60 s: a successor's lift or
/// drain that runs away fails the test instead of hanging it.
fn within_a_minute(f: impl FnOnce() + Send + 'static) {
    if cfg!(miri) {
        // Miri's clock is not the wall clock, and mutations are tried natively.
        return f();
    }
    let (done, finished) = std::sync::mpsc::channel();
    let t = std::thread::spawn(move || {
        f();
        done.send(()).unwrap();
    });
    match finished.recv_timeout(std::time::Duration::from_secs(60)) {
        Ok(()) => t.join().unwrap(),
        // Panicked: its message is the failure.
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            if let Err(e) = t.join() {
                std::panic::resume_unwind(e);
            }
        }
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("a successor ran away: not done within 60 s")
        }
    }
}

#[test]
fn a_consumer_killed_at_any_store_of_any_give_back_leaves_a_readable_ring() {
    within_a_minute(kill_sweep_give_back);
}

fn kill_sweep_give_back() {
    // Payloads without a zero byte (a forced skip stops at any word left unzeroed). `None`:
    // a claim of that many bytes aborted (padding with the skip bit).
    let msg = |len: usize, tag: u8| Some(vec![0x80 | tag; len]);
    let at_end = [120usize; 7]; // seven records of 128 bytes: the next one starts at 896
    let before_wrap = [120, 120, 120, 120, 120, 120, 120, 96]; // the next starts at 1000
    #[allow(clippy::type_complexity)]
    let scenarios: [(&str, &[usize], Vec<Option<Vec<u8>>>, usize); 7] = [
        (
            "a zero-length record",
            &[],
            vec![msg(0, 1), msg(40, 2), msg(7, 3)],
            1,
        ),
        (
            "a record of the largest size",
            &[],
            vec![msg(120, 1), msg(40, 2), msg(0, 3)],
            1,
        ),
        (
            "a record of exactly the space left before the end",
            &at_end,
            vec![msg(120, 1), msg(40, 2), msg(9, 3)],
            1,
        ),
        (
            "the padding at the end and the record after it",
            &before_wrap,
            vec![msg(100, 1), msg(40, 2), msg(0, 3)],
            1,
        ),
        (
            "an aborted record",
            &[],
            vec![None, msg(33, 2), msg(0, 3)],
            1,
        ),
        (
            "records across the end",
            &at_end,
            vec![
                msg(0, 1),
                msg(110, 2),
                msg(0, 3),
                msg(120, 4),
                msg(5, 5),
                msg(6, 6),
            ],
            4,
        ),
        (
            "records and padding across the end",
            &before_wrap,
            vec![
                msg(0, 1),
                msg(100, 2),
                None,
                msg(120, 4),
                msg(1, 5),
                msg(8, 6),
            ],
            4,
        ),
    ];
    let starts = [0u64, (u64::MAX - 1023) & !7];
    for (name, prefill, msgs, records) in &scenarios {
        for &start in &starts {
            for publish in [true, false] {
                let total = {
                    let region = HeapRegion::new(RecordRing::required_size(1024));
                    let (p, c) = setup_give_back(&region, start, prefill, msgs);
                    let spans = give_backs(&c, c.head, u64::MAX, *records);
                    drop(p);
                    spans.iter().map(|s| s.size / 8 + 1).sum::<u64>()
                };
                let step = if cfg!(miri) { 7 } else { 1 };
                for stores in (0..=total).step_by(step) {
                    let what = format!(
                        "{name} (start {start:#x}, {}): consumer killed after {stores} of {total} stores",
                        if publish { "one by one" } else { "in a batch" }
                    );
                    let region = HeapRegion::new(RecordRing::required_size(1024));
                    let (mut p, c) = setup_give_back(&region, start, prefill, msgs);
                    let spans = give_backs(&c, c.head, u64::MAX, *records);
                    let read = spans.iter().filter(|s| s.payload.is_some()).count();
                    let mut want = give_back_until(&c, &spans, c.head, stores, publish);
                    want.extend(msgs.iter().flatten().skip(read).cloned());
                    core::mem::forget(c);
                    successor_goes_on(&region, &mut p, &want, &what);
                }
            }
        }
    }
}

/// A ring at `start` whose consumer has read and given back records of the `prefill`
/// lengths, with `msgs` sent after them (`None`: a claim aborted).
fn setup_give_back(
    region: &HeapRegion,
    start: u64,
    prefill: &[usize],
    msgs: &[Option<Vec<u8>>],
) -> (RecordProducer, RecordConsumer) {
    let (mut p, mut c) = ring_at(region, start);
    for &len in prefill {
        p.send(&vec![0x11; len]).unwrap();
        assert_eq!(c.read().unwrap().len(), len);
    }
    for m in msgs {
        match m {
            Some(m) => p.send(m).unwrap(),
            None => p.claim(30).unwrap().abort(),
        }
    }
    (p, c)
}

#[test]
fn a_consumer_killed_lifting_a_fence_in_the_middle_of_the_ring_leaves_a_readable_ring() {
    within_a_minute(kill_sweep_lift_mid_ring);
}

fn kill_sweep_lift_mid_ring() {
    // A claim at 512 skipped while its producer lived; the consumer reads on past it to the
    // end of the buffer and round to 512 again (zero-length and largest records, padding at
    // the end), the producer lets go, and the consumer dies giving all that back: the zeroes
    // it leaves run to the end of the buffer and on from its start.
    let starts = [0u64, (u64::MAX - 1023) & !7];
    for &start in &starts {
        let setup = |region: &HeapRegion| {
            let (mut p, mut c) = ring_at(region, start);
            for _ in 0..4 {
                p.send(&[0x11; 120]).unwrap();
                assert_eq!(c.read().unwrap().len(), 120);
            }
            // SAFETY: the region outlives the handle.
            let mut slow =
                unsafe { RecordRing::producer(region.as_ptr(), region.len(), 2, &|_| true) }
                    .unwrap();
            let claim = slow.claim(120).unwrap();
            assert_eq!(c.read().err(), Some(ReadError::Pending));
            assert_eq!(c.unblock(&|_| true, true), Unblock::Skipped);
            // From 640: records of 0, 120, 100, 0 and 100 bytes, padding at 1008 (the next
            // does not fit), then on the next lap 120, 120, 120, 96, 0 and 8: the ring is full
            // up to the fence (a whole capacity read past it).
            let msgs: [&[u8]; 11] = [
                &[],
                &[0x82; 120],
                &[0x83; 100],
                &[],
                &[0x85; 100],
                &[0x86; 120],
                &[0x87; 120],
                &[0x88; 120],
                &[0x89; 96],
                &[],
                &[0x8b; 8],
            ];
            for m in msgs {
                p.send(m).unwrap();
                assert_eq!(c.read().unwrap().to_vec(), m);
            }
            assert!(c.has_fence());
            drop(claim);
            (p, c)
        };
        let total = {
            let region = HeapRegion::new(RecordRing::required_size(1024));
            let (_p, c) = setup(&region);
            let spans = give_backs(&c, c.released, c.head, usize::MAX);
            // The fence, eleven records and the padding at the end.
            assert_eq!(spans.len(), 13);
            assert!(spans.iter().any(|s| s.payload.is_none() && s.off == 1008));
            assert!(c.head_wrapped_onto_fence());
            spans.iter().map(|s| s.size / 8 + 1).sum::<u64>()
        };
        let step = if cfg!(miri) { 11 } else { 1 };
        for stores in (0..=total).step_by(step) {
            let what = format!(
                "start {start:#x}: killed lifting a fence after {stores} of {total} stores"
            );
            let region = HeapRegion::new(RecordRing::required_size(1024));
            let (mut p, c) = setup(&region);
            let spans = give_backs(&c, c.released, c.head, usize::MAX);
            give_back_until(&c, &spans, c.released, stores, false);
            core::mem::forget(c);
            successor_goes_on(&region, &mut p, &[], &what);
        }
    }
}

#[test]
fn a_record_half_given_back_is_skipped_at_once_and_not_counted() {
    // Killed after its header became padding over the record (and any part of the payload
    // was zeroed): the successor skips it without a timeout, and does not count it skipped
    // (it was delivered; design.md, "padding of its exact size (skipped, not counted)").
    let first = vec![0x81u8; 120];
    let size = align8(RECORD_HEADER as u64 + first.len() as u64);
    for stores in 1..=size / 8 {
        let what = format!("consumer killed after {stores} stores of its give-back");
        let region = HeapRegion::new(RecordRing::required_size(1024));
        let (mut p, mut c) = ring_at(&region, 0);
        p.send(&first).unwrap();
        p.send(b"next").unwrap();
        let rec = c.read().unwrap();
        let off = rec.off;
        rec.keep();
        c.raw.zero_until(off, size, stores);
        core::mem::forget(c);
        let mut c2 = take_over(&region);
        let skipped = c2.skipped();
        assert_eq!(
            c2.read().map(|r| r.to_vec()),
            Ok(b"next".to_vec()),
            "{what}"
        );
        assert_eq!(c2.skipped(), skipped, "{what}");
        assert_eq!(c2.read().err(), Some(ReadError::Empty), "{what}");
    }
}

#[test]
fn a_lift_over_zeroes_from_any_offset_stays_in_the_buffer_and_stops_at_the_read_position() {
    within_a_minute(lift_over_zeroes_from_any_offset);
}

fn lift_over_zeroes_from_any_offset() {
    // A consumer killed once it had zeroed everything between its release position (at any
    // offset) and its read position (any distance up to a whole ring ahead): its successor's
    // lift wraps at the end of the buffer, never reads past it, and ends exactly at the read
    // position.
    let step = if cfg!(miri) { 136 } else { 8 };
    for off in (0..1024u64).step_by(step) {
        for ahead in [8, 16, 1024 - off, 1024 - off + 8, 1016, 1024] {
            if !(8..=1024).contains(&ahead) {
                continue;
            }
            let what = format!("released at {off}, read {ahead} bytes ahead");
            let region = HeapRegion::new(RecordRing::required_size(1024));
            let (p, c) = ring_at(&region, 0);
            drop(p);
            let released = 2048 + off;
            let h = c.raw.hdr();
            h.head.store(released, Ordering::Relaxed);
            h.tail.store(released + ahead, Ordering::Relaxed);
            h.read.store(released + ahead, Ordering::Relaxed);
            core::mem::forget(c);
            let mut c2 = take_over(&region);
            assert!(c2.has_fence(), "{what}");
            assert_eq!(c2.read().err(), Some(ReadError::Empty), "{what}");
            assert!(!c2.has_fence(), "{what}");
            assert_eq!(c2.position(), released + ahead, "{what}");
            assert_eq!(
                c2.raw.hdr().head.load(Ordering::Relaxed),
                released + ahead,
                "{what}"
            );
            // SAFETY: the region outlives the handle.
            let mut p =
                unsafe { RecordRing::producer(region.as_ptr(), region.len(), 1, &|_| true) }
                    .unwrap();
            for k in 0..10u8 {
                p.send(&[k; 100]).unwrap();
                assert_eq!(c2.read().unwrap().to_vec(), [k; 100], "{what}");
            }
        }
    }
}
