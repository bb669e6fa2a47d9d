//! Unit tests of the SPSC ring (Miri runs them too).

use super::*;
use crate::HeapRegion;

#[test]
fn push_pop_in_order_across_wrap() {
    for start in [0, u64::MAX - 2, u64::MAX] {
        let (mut p, mut c) = HeapRegion::spsc_at::<u32>(4, start);
        for round in 0..5u32 {
            for i in 0..3 {
                p.push(round * 10 + i).unwrap();
            }
            for i in 0..3 {
                assert_eq!(c.pop(), Ok(round * 10 + i));
            }
            assert_eq!(c.pop(), Err(PopError::Empty));
        }
    }
}

#[test]
fn full_and_empty() {
    let (mut p, mut c) = HeapRegion::spsc::<u8>(2);
    assert_eq!(c.pop(), Err(PopError::Empty));
    p.push(1).unwrap();
    p.push(2).unwrap();
    assert!(matches!(p.push(3), Err(PushError::Full(3))));
    assert_eq!(p.len(), 2);
    assert_eq!(c.peek(), Ok(1));
    assert_eq!(c.len(), 2);
    assert_eq!(c.pop(), Ok(1));
    p.push(3).unwrap();
    let mut out = [0u8; 4];
    assert_eq!(c.pop_slice(&mut out), Ok(2));
    assert_eq!(&out[..2], &[2, 3]);
}

#[test]
fn chunks_wrap_into_two_slices() {
    let (mut p, mut c) = HeapRegion::spsc_at::<u16>(4, 2);
    assert_eq!(p.push_slice(&[1, 2, 3]), Ok(3));
    let mut tmp = [0; 3];
    assert_eq!(c.pop_slice(&mut tmp), Ok(3));
    // Head and tail are at 5 = slot 1: a chunk of 4 wraps after 3 slots.
    let mut w = p.write_chunk(4).unwrap();
    // SAFETY: a heap ring: no other process writes its slots.
    let (a, b) = unsafe { w.as_mut_slices() };
    assert_eq!((a.len(), b.len()), (3, 1));
    a.copy_from_slice(&[10, 11, 12]);
    b[0] = 13;
    w.commit(3);
    assert_eq!(p.write_chunk(2).unwrap_err(), ChunkError::TooFewSlots(1));
    let r = c.read_chunk(3).unwrap();
    // SAFETY: as above.
    assert_eq!(unsafe { r.as_slices() }, (&[10, 11, 12][..], &[][..]));
    r.commit(2);
    assert_eq!(c.pop(), Ok(12));
    assert_eq!(c.read_chunk(1).unwrap_err(), ChunkError::TooFewSlots(0));
}

#[test]
fn copying_chunks_wrap() {
    for start in [0, 2, u64::MAX - 1] {
        let (mut p, mut c) = HeapRegion::spsc_at::<u32>(4, start);
        assert_eq!(p.push_slice(&[1, 2, 3]), Ok(3));
        let mut tmp = [0; 3];
        assert_eq!(c.pop_slice(&mut tmp), Ok(3));
        // A chunk of 4 from slot 3 (start 0), 1 (start 2) or 1 (start u64::MAX - 1).
        let mut w = p.write_chunk(4).unwrap();
        w.copy_from_slice(&[10, 11, 12, 13]);
        w.commit_all();
        let r = c.read_chunk(4).unwrap();
        let mut out = [0; 4];
        r.copy_to_slice(&mut out);
        assert_eq!(out, [10, 11, 12, 13]);
        assert_eq!(r.get(3), 13);
        r.commit(1);
        let r = c.read_chunk(3).unwrap();
        let mut out = [0; 3];
        r.copy_to_slice(&mut out);
        assert_eq!(out, [11, 12, 13]);
    }
}

#[test]
#[should_panic(expected = "differs from the chunk's")]
fn copying_a_slice_of_another_length_panics() {
    let (mut p, _c) = HeapRegion::spsc::<u32>(4);
    p.write_chunk(2).unwrap().copy_from_slice(&[1, 2, 3]);
}

std::thread_local! {
    /// Test hook: run by `attach` after it checked the positions (finding 4 of issue 15).
    static AFTER_CHECK: core::cell::Cell<Option<fn(*mut u8)>> =
        const { core::cell::Cell::new(None) };
}

/// Called by `attach` between its check of the positions and its return: a hostile peer
/// writing then must not reach the endpoint's starting positions.
pub(super) fn after_attach_check(ptr: *mut u8) {
    if let Some(f) = AFTER_CHECK.with(core::cell::Cell::get) {
        f(ptr);
    }
}

fn with_hook<R>(f: fn(*mut u8), body: impl FnOnce() -> R) -> R {
    AFTER_CHECK.with(|h| h.set(Some(f)));
    let r = body();
    AFTER_CHECK.with(|h| h.set(None));
    r
}

/// Finding 4: the consumer attached while a hostile peer moved `tail` far ahead right after
/// attach's check. Before the fix the consumer re-read `tail`, cached it unchecked, and a
/// chunk of twice the capacity came back (its slices reached past the slot array).
#[test]
fn a_tail_changed_after_the_attach_check_never_gives_a_chunk_past_the_ring() {
    let region = HeapRegion::new(SpscRing::<u64>::required_size(4));
    let (ptr, len) = (region.as_ptr(), region.len());
    // SAFETY: the region outlives every handle; the hook writes through the atomic.
    unsafe {
        SpscRing::<u64>::init(ptr, len, 4, 0).unwrap();
        let mut c = with_hook(
            |ptr| {
                let h = &*ptr.cast::<Header>();
                h.tail.store(8, Ordering::Relaxed);
                h.head.store(1, Ordering::Relaxed);
            },
            || SpscRing::<u64>::consumer(ptr, len, 2, &|_| true).unwrap(),
        );
        // It starts from the head attach checked, not from one written after the check.
        assert_eq!(
            c.position(),
            0,
            "the consumer read the head again after the check"
        );
        assert_eq!(c.len(), 0, "the consumer started from an unchecked tail");
        assert!(matches!(c.read_chunk(8), Err(ChunkError::Corrupt)));
        assert_eq!(c.pop(), Err(PopError::Corrupt));
        // Once the tail is sane again the ring works.
        (*ptr.cast::<Header>()).tail.store(0, Ordering::Relaxed);
        (*ptr.cast::<Header>()).head.store(0, Ordering::Relaxed);
        assert_eq!(c.pop(), Err(PopError::Empty));
    }
}

/// Finding 4, producer side: the head moved past the tail right after attach's check.
/// Before the fix the producer cached it unchecked, the free count `cap - (tail - head)`
/// overflowed (a panic in debug builds, a free count above the capacity in release) and a
/// write chunk longer than the ring came back.
#[test]
fn a_head_changed_after_the_attach_check_never_gives_a_chunk_past_the_ring() {
    let region = HeapRegion::new(SpscRing::<u64>::required_size(4));
    let (ptr, len) = (region.as_ptr(), region.len());
    // SAFETY: the region outlives every handle; the hook writes through the atomic.
    unsafe {
        SpscRing::<u64>::init(ptr, len, 4, 0).unwrap();
        let mut p = with_hook(
            |ptr| {
                let h = &*ptr.cast::<Header>();
                h.head.store(5, Ordering::Relaxed);
                h.tail.store(3, Ordering::Relaxed);
            },
            || SpscRing::<u64>::producer(ptr, len, 1, &|_| true).unwrap(),
        );
        assert_eq!(
            p.position(),
            0,
            "the producer read the tail again after the check"
        );
        // Asking for more than the (checked) cached free count reads the hostile head:
        // an error, never a chunk longer than the ring.
        assert!(matches!(p.write_chunk(9), Err(ChunkError::Corrupt)));
        assert_eq!(p.push_slice(&[0; 5]), Err(ChunkError::Corrupt));
        assert_eq!(p.free(), 0);
        assert_eq!(p.len(), 4);
    }
}

/// Attach's check at its boundary: a full ring (`tail - head = capacity`) is fine, one more
/// is corrupt, and so is a head past the tail.
#[test]
fn attach_checks_the_positions_to_the_element() {
    for start in [0, u64::MAX - 1] {
        let region = HeapRegion::new(SpscRing::<u64>::required_size(4));
        let (ptr, len) = (region.as_ptr(), region.len());
        // SAFETY: the region outlives every handle; the positions are atomics.
        unsafe {
            SpscRing::<u64>::init(ptr, len, 4, start).unwrap();
            let h = &*ptr.cast::<Header>();
            h.tail.store(start.wrapping_add(4), Ordering::Relaxed);
            let mut c = SpscRing::<u64>::consumer(ptr, len, 2, &|_| true).unwrap();
            assert_eq!(c.len(), 4);
            drop(c);
            for (tail, head) in [
                (start.wrapping_add(5), start),
                (start, start.wrapping_add(1)),
            ] {
                h.tail.store(tail, Ordering::Relaxed);
                h.head.store(head, Ordering::Relaxed);
                assert!(matches!(
                    SpscRing::<u64>::consumer(ptr, len, 2, &|_| true),
                    Err(AttachError::Corrupt(_))
                ));
                assert!(matches!(
                    SpscRing::<u64>::producer(ptr, len, 1, &|_| true),
                    Err(AttachError::Corrupt(_))
                ));
            }
        }
    }
}

/// The checks of the cached positions in `free_for` and `avail_for` stand on their own: a
/// cached position that broke the invariant (as the unchecked re-read at attach could make
/// it) is `Corrupt`, never a free or available count above the capacity.
#[test]
fn broken_cached_positions_are_corrupt() {
    let (mut p, mut c) = HeapRegion::spsc::<u64>(4);
    p.cached_head = 5;
    assert!(matches!(p.write_chunk(1), Err(ChunkError::Corrupt)));
    assert!(matches!(p.push(1), Err(PushError::Corrupt(1))));
    c.cached_tail = 9;
    assert!(matches!(c.read_chunk(1), Err(ChunkError::Corrupt)));
    assert_eq!(c.pop(), Err(PopError::Corrupt));
}

/// Finding 5: a hostile capacity of 2^40 elements of 16 MiB (2^64 bytes: 0 after a
/// wrapping multiplication) in a 4 KiB region is refused, in debug and release builds.
#[test]
fn a_capacity_whose_size_overflows_is_refused() {
    type Big = [u8; 1 << 24];
    assert_eq!(SpscRing::<Big>::required_size(1 << 40), usize::MAX);
    let region = HeapRegion::new(4096);
    let (ptr, len) = (region.as_ptr(), region.len());
    // SAFETY: the region outlives every handle; the header words are atomics.
    unsafe {
        SpscRing::<u64>::init(ptr, len, 1, 0).unwrap();
        let meta = &*ptr.cast::<[AtomicU64; 4]>();
        meta[2].store(size_of::<Big>() as u64 | (1 << 32), Ordering::Relaxed);
        meta[3].store(1 << 40, Ordering::Relaxed);
        assert!(matches!(
            SpscRing::<Big>::consumer(ptr, len, 1, &|_| true),
            Err(AttachError::RegionTooSmall { .. })
        ));
        assert!(matches!(
            SpscRing::<Big>::producer(ptr, len, 2, &|_| true),
            Err(AttachError::RegionTooSmall { .. })
        ));
    }
}

#[test]
fn attach_validates_the_header() {
    let region = HeapRegion::new(SpscRing::<u64>::required_size(8));
    let (ptr, len) = (region.as_ptr(), region.len());
    let alive = |_| true;
    // SAFETY: the region outlives every handle in this test.
    unsafe {
        assert_eq!(
            SpscRing::<u64>::producer(ptr, len, 1, &alive).unwrap_err(),
            AttachError::NotARing
        );
        assert_eq!(
            SpscRing::<u64>::init(ptr, len, 6, 0).unwrap_err(),
            AttachError::BadCapacity(6)
        );
        assert!(matches!(
            SpscRing::<u64>::init(ptr, len, 16, 0).unwrap_err(),
            AttachError::RegionTooSmall { .. }
        ));
        assert!(matches!(
            SpscRing::<u64>::init(ptr.add(8), len - 8, 4, 0).unwrap_err(),
            AttachError::Misaligned
        ));
        SpscRing::<u64>::init(ptr, len, 8, 0).unwrap();
        assert!(matches!(
            SpscRing::<u32>::producer(ptr, len, 1, &alive).unwrap_err(),
            AttachError::WrongElement { size: 8, align: 8 }
        ));
        assert!(matches!(
            crate::MpmcRing::<u64>::sender(ptr, len).unwrap_err(),
            AttachError::WrongKind
        ));
        assert!(matches!(
            SpscRing::<u64>::producer(ptr, 200, 1, &alive).unwrap_err(),
            AttachError::RegionTooSmall { .. }
        ));
    }
}

/// Review rev2 (regression of the finding-4 fix): a producer attaching while the previous
/// one pushes its last values and lets go must start where that one left, not from a tail
/// read before its own claim. The claim's `is_alive` call is the window: the previous
/// producer pushes and is dropped there (the claim word is then free, so the claim
/// succeeds whatever the answer, exactly as when the claim load comes after the release).
/// With the positions read before the claim, the new producer wrote over the values the
/// consumer had not read and moved the tail backwards.
#[test]
fn rev2_a_producer_attaching_as_the_previous_one_leaves_starts_where_it_left() {
    let region = HeapRegion::new(SpscRing::<u64>::required_size(4));
    let (ptr, len) = (region.as_ptr(), region.len());
    // SAFETY: the region outlives every handle in this test.
    unsafe {
        SpscRing::<u64>::init(ptr, len, 4, 0).unwrap();
        let mut c = SpscRing::<u64>::consumer(ptr, len, 2, &|_| true).unwrap();
        let first = core::cell::RefCell::new(Some(
            SpscRing::<u64>::producer(ptr, len, 1, &|_| true).unwrap(),
        ));
        let mut second = SpscRing::<u64>::producer(ptr, len, 3, &|_| {
            if let Some(mut p) = first.borrow_mut().take() {
                p.push(10).unwrap();
                p.push(11).unwrap();
            }
            false
        })
        .unwrap();
        assert_eq!(
            second.position(),
            2,
            "started from a tail read before the claim"
        );
        second.push(12).unwrap();
        assert_eq!(c.pop(), Ok(10));
        assert_eq!(c.pop(), Ok(11));
        assert_eq!(c.pop(), Ok(12));
        assert_eq!(c.pop(), Err(PopError::Empty));
    }
}

/// Review rev2, consumer side: a consumer attaching while the previous one pops and lets
/// go must not deliver again what that one read (from a head read before its claim), nor
/// move the head backwards under the producer.
#[test]
fn rev2_a_consumer_attaching_as_the_previous_one_leaves_starts_where_it_left() {
    let region = HeapRegion::new(SpscRing::<u64>::required_size(4));
    let (ptr, len) = (region.as_ptr(), region.len());
    // SAFETY: the region outlives every handle in this test.
    unsafe {
        SpscRing::<u64>::init(ptr, len, 4, 0).unwrap();
        let mut p = SpscRing::<u64>::producer(ptr, len, 1, &|_| true).unwrap();
        for v in [10, 11, 12] {
            p.push(v).unwrap();
        }
        let first = core::cell::RefCell::new(Some(
            SpscRing::<u64>::consumer(ptr, len, 2, &|_| true).unwrap(),
        ));
        let mut second = SpscRing::<u64>::consumer(ptr, len, 3, &|_| {
            if let Some(mut c) = first.borrow_mut().take() {
                assert_eq!(c.pop(), Ok(10));
                assert_eq!(c.pop(), Ok(11));
            }
            false
        })
        .unwrap();
        assert_eq!(
            second.position(),
            2,
            "started from a head read before the claim"
        );
        assert_eq!(second.pop(), Ok(12));
        assert_eq!(second.pop(), Err(PopError::Empty));
        // The producer sees the space the first consumer freed, and no more.
        assert_eq!(p.free(), 4);
    }
}

#[test]
fn one_producer_and_one_consumer_at_a_time() {
    let region = HeapRegion::new(SpscRing::<u64>::required_size(8));
    let (ptr, len) = (region.as_ptr(), region.len());
    let alive = |_| true;
    let dead = |_| false;
    // SAFETY: the region outlives every handle in this test.
    unsafe {
        SpscRing::<u64>::init(ptr, len, 8, 0).unwrap();
        let p = SpscRing::<u64>::producer(ptr, len, 11, &alive).unwrap();
        assert_eq!(
            SpscRing::<u64>::producer(ptr, len, 12, &alive).unwrap_err(),
            AttachError::RoleTaken { holder: 11 }
        );
        let c = SpscRing::<u64>::consumer(ptr, len, 13, &alive).unwrap();
        assert!(p.has_consumer() && c.has_producer());
        // A claim whose holder is dead is taken over.
        let mut p2 = SpscRing::<u64>::producer(ptr, len, 12, &dead).unwrap();
        drop(p); // releasing a claim taken over is a no-op
        p2.push(5).unwrap();
        drop(p2);
        assert!(!c.has_producer());
        let _p3 = SpscRing::<u64>::producer(ptr, len, 14, &alive).unwrap();
    }
}

#[test]
fn hostile_positions_are_errors() {
    let region = HeapRegion::new(SpscRing::<u64>::required_size(4));
    let (ptr, len) = (region.as_ptr(), region.len());
    let alive = |_| true;
    // SAFETY: the region outlives every handle in this test.
    unsafe {
        SpscRing::<u64>::init(ptr, len, 4, 0).unwrap();
        let mut p = SpscRing::<u64>::producer(ptr, len, 1, &alive).unwrap();
        let mut c = SpscRing::<u64>::consumer(ptr, len, 2, &alive).unwrap();
        let hdr = &*ptr.cast::<Header>();
        // A tail far ahead of the head: the consumer refuses it.
        hdr.tail.store(1000, Ordering::Release);
        assert_eq!(c.pop(), Err(PopError::Corrupt));
        assert_eq!(c.read_chunk(1).unwrap_err(), ChunkError::Corrupt);
        let mut buf = [0u64; 2];
        assert_eq!(c.pop_slice(&mut buf), Err(PopError::Corrupt));
        // A head beyond the tail: the producer refuses it once its cache runs out.
        hdr.head.store(u64::MAX - 5, Ordering::Release);
        for i in 0..4 {
            p.push(i).unwrap();
        }
        assert!(matches!(p.push(9), Err(PushError::Corrupt(9))));
        // Re-attaching to such a ring is refused.
        drop(c);
        assert!(matches!(
            SpscRing::<u64>::consumer(ptr, len, 2, &alive).unwrap_err(),
            AttachError::Corrupt(_)
        ));
    }
}

#[test]
fn two_threads_keep_order() {
    let n: u64 = if cfg!(miri) { 500 } else { 200_000 };
    let (mut p, mut c) = HeapRegion::spsc::<u64>(64);
    let t = std::thread::spawn(move || {
        for i in 0..n {
            let mut v = i;
            loop {
                match p.push(v) {
                    Ok(()) => break,
                    Err(e) => v = e.into_inner(),
                }
                std::hint::spin_loop();
            }
        }
    });
    let mut next = 0;
    while next < n {
        if let Ok(v) = c.pop() {
            assert_eq!(v, next);
            next += 1;
        }
    }
    t.join().unwrap();
}
