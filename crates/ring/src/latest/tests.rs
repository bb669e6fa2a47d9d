//! Unit tests of the latest-value protocol (Miri-friendly: heap regions, small counts).

use super::*;
use crate::HeapRegion;

/// A value whose every byte is derived from its version, so a torn copy is detected.
fn value(v: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (v.wrapping_mul(31) as u8).wrapping_add(i as u8))
        .collect()
}

fn check(buf: &[u8], v: u64) {
    assert_eq!(
        buf,
        &value(v, buf.len())[..],
        "torn or foreign value for version {v}"
    );
}

#[test]
fn never_written_reads_none_then_the_newest_value() {
    let (mut w, mut r) = HeapRegion::latest(4, 20);
    let mut buf = [0u8; 20];
    assert_eq!(r.read(&mut buf), Ok(None));
    assert_eq!(r.version(), 0);
    for v in 1..=10u64 {
        assert_eq!(w.write(&value(v, 20)), Ok(v));
        assert_eq!(r.version(), v);
        assert_eq!(r.read(&mut buf), Ok(Some((20, v))));
        check(&buf, v);
    }
    // Unchanged: read_if_changed copies nothing.
    assert_eq!(r.read_if_changed(&mut buf), Ok(None));
    w.write(&value(11, 5)).unwrap();
    assert_eq!(r.read_if_changed(&mut buf), Ok(Some((5, 11))));
    check(&buf[..5], 11);
    assert_eq!(r.last_version(), 11);
}

#[test]
fn lengths_are_checked_both_ways() {
    let (mut w, mut r) = HeapRegion::latest(2, 16);
    assert_eq!(
        w.write(&[0; 17]),
        Err(LatestError::TooLong { len: 17, max: 16 })
    );
    w.write(&value(1, 16)).unwrap();
    let mut small = [0u8; 8];
    assert_eq!(
        r.read(&mut small),
        Err(LatestError::BufferTooSmall { needed: 16 })
    );
    // Nothing consumed: a larger buffer reads it.
    let mut buf = [0u8; 16];
    assert_eq!(r.read_if_changed(&mut buf), Ok(Some((16, 1))));
    assert_eq!(w.write(&[]), Ok(2));
    assert_eq!(r.read(&mut buf), Ok(Some((0, 2))));
}

/// A writer that dies mid-write (its slot stuck odd) leaves the previous value readable, and
/// later writers go on around its slot.
#[test]
fn a_writer_dying_mid_write_leaves_the_previous_value() {
    let (mut w, mut r) = HeapRegion::latest(4, 24);
    let mut buf = [0u8; 24];
    w.write(&value(1, 24)).unwrap();
    let mut dead = w.clone();
    dead.write_and_die(&value(99, 24), 2).unwrap();
    assert_eq!(r.read(&mut buf), Ok(Some((24, 1))));
    check(&buf, 1);
    // Many writes later (every slot reused, the dead one skipped), still never torn.
    for _ in 0..20 {
        let v = w.write(&value(7, 24)).unwrap();
        assert_eq!(r.read(&mut buf), Ok(Some((24, v))));
        check(&buf, 7);
    }
}

/// The slot of the newest value is never claimed: with two slots and one stuck odd, writers
/// report `Busy` rather than overwrite the only readable value.
#[test]
fn the_newest_value_is_never_overwritten_in_place() {
    let (mut w, mut r) = HeapRegion::latest(2, 8);
    let mut buf = [0u8; 8];
    w.write(&value(1, 8)).unwrap();
    w.clone().write_and_die(&value(2, 8), 1).unwrap();
    assert_eq!(w.write(&value(3, 8)), Err(LatestError::Busy));
    assert_eq!(r.read(&mut buf), Ok(Some((8, 1))));
    check(&buf, 1);
}

/// Hostile words: any value in the header or the slots gives a value, `None`, `Busy` or
/// `Corrupt`, never a panic or an access out of bounds; a length beyond the value size is
/// `Corrupt`; a version going backwards is `Corrupt`.
#[test]
fn hostile_words_give_errors_never_out_of_bounds() {
    let (slots, size) = (2u64, 16usize);
    let len = LatestRing::required_size(slots, size);
    let mem = HeapRegion::new(len);
    // SAFETY: `mem` outlives the handles (dropped at the end of the test); this test pokes
    // the words atomically through `word`.
    let (mut w, mut r) = unsafe {
        LatestRing::init(mem.as_ptr(), len, slots, size).unwrap();
        (
            LatestRing::writer(mem.as_ptr(), len, 1).unwrap(),
            LatestRing::reader(mem.as_ptr(), len).unwrap(),
        )
    };
    let words = len / 8;
    let word = |i: usize| {
        // SAFETY: `i < words`, inside the region, 8-aligned; accessed atomically only.
        unsafe { &*mem.as_ptr().cast::<AtomicU64>().add(i) }
    };
    let first_slot = slots_offset() / 8;
    w.write(&value(1, 16)).unwrap();
    let mut buf = [0u8; 16];
    // A length beyond the value size in a stable slot.
    word(first_slot + 1).store(1 << 40, Ordering::Relaxed);
    assert!(matches!(r.read(&mut buf), Err(LatestError::Corrupt(_))));
    // `latest` backwards.
    word(first_slot + 1).store(16, Ordering::Relaxed);
    assert_eq!(r.read(&mut buf), Ok(Some((16, 1))));
    word(256 / 8).store(0, Ordering::Relaxed);
    assert!(matches!(r.read(&mut buf), Err(LatestError::Corrupt(_))));
    let extremes = [
        0,
        1,
        2,
        3,
        u64::MAX,
        u64::MAX - 1,
        1 << 63,
        (1 << 63) + 1,
        16,
        17,
    ];
    for (k, &x) in extremes.iter().cycle().take(200).enumerate() {
        word((k * 7) % (first_slot + 2 * stride(size))).store(x, Ordering::Relaxed);
        // The identity words may be hit: the handles were attached before, they never re-read
        // them; every call must just return.
        let _ = w.write(&value(k as u64, k % 17));
        let mut r2 = r.clone();
        if let Ok(Some((n, _))) = r2.read(&mut buf) {
            assert!(n <= 16);
        }
    }
    let _ = words;
}

#[test]
fn geometry_is_checked() {
    for (slots, size) in [(0, 8), (1, 8), (3, 8), (MAX_SLOTS * 2, 8), (2, 0)] {
        let len = 4096;
        let mem = HeapRegion::new(len);
        // SAFETY: exclusive fresh memory of `len` bytes.
        let e = unsafe { LatestRing::init(mem.as_ptr(), len, slots, size) };
        assert!(e.is_err(), "{slots} slots of {size}");
    }
    assert_eq!(LatestRing::required_size(u64::MAX, 8), usize::MAX);
    // Region too small.
    let mem = HeapRegion::new(512);
    // SAFETY: as above.
    let e = unsafe { LatestRing::init(mem.as_ptr(), 512, 4, 64) };
    assert!(matches!(e, Err(AttachError::RegionTooSmall { .. })));
}

/// Threads: two writers, two readers; every value read is whole and each reader's versions
/// never decrease (small counts so Miri finishes).
#[test]
fn threads_never_see_a_torn_value() {
    let n: u64 = if cfg!(miri) { 40 } else { 20_000 };
    let (w, r) = HeapRegion::latest(4, 40);
    std::thread::scope(|s| {
        for _ in 0..2 {
            let mut w = w.clone();
            s.spawn(move || {
                let mut k = 0u64;
                while k < n {
                    // A value tagged by a private counter (the version is known after).
                    match w.write(&value(k, 40)) {
                        Ok(_) => k += 1,
                        Err(LatestError::Busy) => std::thread::yield_now(),
                        Err(e) => panic!("{e}"),
                    }
                }
            });
        }
        for _ in 0..2 {
            let mut r = r.clone();
            s.spawn(move || {
                let mut buf = [0u8; 40];
                let mut last = 0;
                for _ in 0..n {
                    match r.read(&mut buf) {
                        Ok(Some((40, v))) => {
                            assert!(v >= last, "version went from {last} to {v}");
                            last = v;
                            // Every byte agrees with the first: the same write's.
                            let k = (0..256u64).find(|&k| value(k, 1)[0] == buf[0]).unwrap();
                            check(&buf, k);
                        }
                        Ok(None) | Err(LatestError::Busy) => {}
                        other => panic!("{other:?}"),
                    }
                }
            });
        }
    });
}

/// Two slots, a writer of another process dies between its done store and its `fetch_max`:
/// its slot holds a complete value newer than `latest`, the other the newest published one,
/// so neither may be claimed. While it is alive (slow, not dead) writes report `Busy`; once
/// it is dead the next writer publishes its value for it and claims the other slot, and
/// writes go on (before the fix: `Busy` for good).
#[test]
fn a_writer_dead_before_publishing_is_helped_and_writes_go_on() {
    let (w, mut r) = HeapRegion::latest(2, 8);
    let mut w = w.with_owner(1);
    let mut buf = [0u8; 8];
    w.write(&value(1, 8)).unwrap(); // ticket 0, slot 0
    let mut other = w.clone().with_owner(7);
    assert_eq!(other.write_and_die_unpublished(&value(2, 8)), Ok(2)); // ticket 1, slot 1
    assert_eq!(r.read(&mut buf), Ok(Some((8, 1))));
    check(&buf, 1);
    assert_eq!(
        w.write_with(&value(3, 8), &|_| true),
        Err(LatestError::Busy)
    );
    assert_eq!(
        r.version(),
        1,
        "a live holder's value is not published for it"
    );
    let dead7 = |o: u64| o != 7;
    let v = w.write_with(&value(4, 8), &dead7).unwrap();
    assert!(v > 2, "version {v}");
    assert_eq!(r.read(&mut buf), Ok(Some((8, v))));
    check(&buf, 4);
    for _ in 0..10 {
        let v = w.write_with(&value(5, 8), &dead7).unwrap();
        assert_eq!(r.read(&mut buf), Ok(Some((8, v))));
        check(&buf, 5);
    }
}

/// Four slots, two held by a live (stalled) writer of another process: the dead writer's
/// complete value is published by the first writer whose ticket lands on its slot, which
/// then claims the newest value's former slot with the extra ticket the help earns it
/// (before the fix: `Busy` while the stalled writer lives).
#[test]
fn a_dead_writers_complete_value_is_published_for_it() {
    let (w, mut r) = HeapRegion::latest(4, 8);
    let mut w = w.with_owner(1);
    let mut buf = [0u8; 8];
    w.write(&value(1, 8)).unwrap(); // ticket 0, slot 0
    let mut other = w.clone().with_owner(7);
    assert_eq!(other.write_and_die_unpublished(&value(2, 8)), Ok(2)); // ticket 1, slot 1
    // Slots 2 and 3 held by live writers of another process (stopped mid-write).
    let mut slow = w.clone().with_owner(8);
    slow.write_and_die(&value(3, 8), 1).unwrap(); // ticket 2
    slow.write_and_die(&value(3, 8), 1).unwrap(); // ticket 3
    // Tickets 4 (slot 0: the newest), 5 (slot 1: 7 is dead, its value published, then
    // refused as the newest), 6 and 7 (held by 8, alive), 8 (slot 0: now claimable).
    let dead7 = |o: u64| o != 7;
    assert_eq!(w.write_with(&value(4, 8), &dead7), Ok(9));
    assert_eq!(r.read(&mut buf), Ok(Some((8, 9))));
    check(&buf, 4);
}

/// A slot a writer of another (dead) process stopped in is reclaimed by the next writer whose
/// ticket lands on it; one held by a live writer is not.
#[test]
fn a_dead_writers_slot_is_reclaimed_a_live_ones_is_not() {
    let (w, mut r) = HeapRegion::latest(2, 8);
    let mut w = w.with_owner(1);
    let mut buf = [0u8; 8];
    w.write(&value(1, 8)).unwrap(); // ticket 0, slot 0
    let mut other = w.clone().with_owner(7);
    other.write_and_die(&value(2, 8), 1).unwrap(); // ticket 1, slot 1 held by 7
    // 7 alive: its slot is not taken; the only other slot holds the newest value: Busy.
    assert_eq!(
        w.write_with(&value(3, 8), &|_| true),
        Err(LatestError::Busy)
    );
    assert_eq!(r.read(&mut buf), Ok(Some((8, 1))));
    // 7 dead: reclaimed, and the writes go on.
    let dead7 = |o: u64| o != 7;
    let v = w.write_with(&value(4, 8), &dead7).unwrap();
    assert_eq!(r.read(&mut buf), Ok(Some((8, v))));
    check(&buf, 4);
    for _ in 0..10 {
        let v = w.write_with(&value(5, 8), &dead7).unwrap();
        assert_eq!(r.read(&mut buf), Ok(Some((8, v))));
        check(&buf, 5);
    }
}

/// review2: values whose length is not a multiple of 8 (the tail word), buffers just too
/// small, just right and larger: `BufferTooSmall` names the value's length, loses nothing,
/// and a read never writes past the value's length into the caller's buffer.
#[test]
fn tails_and_buffer_sizes_review2() {
    let (mut w, mut r) = HeapRegion::latest(2, 13);
    let v: Vec<u8> = (1..=13).collect();
    assert_eq!(w.write(&v), Ok(1));
    let mut small = [0xaau8; 12];
    assert_eq!(
        r.read_if_changed(&mut small),
        Err(LatestError::BufferTooSmall { needed: 13 })
    );
    assert_eq!(r.last_version(), 0);
    let mut exact = [0u8; 13];
    assert_eq!(r.read_if_changed(&mut exact), Ok(Some((13, 1))));
    assert_eq!(&exact[..], &v[..]);
    // A shorter value later: bytes past it in a larger buffer are left as they were.
    assert_eq!(w.write(&v[..5]), Ok(2));
    let mut big = [0xeeu8; 32];
    assert_eq!(r.read_if_changed(&mut big), Ok(Some((5, 2))));
    assert_eq!(&big[..5], &v[..5]);
    assert!(big[5..].iter().all(|&b| b == 0xee));
    // Every length 0..=13 into every buffer size 0..=16.
    for n in 0..=13usize {
        let ver = w.write(&v[..n]).unwrap();
        for cap in 0..=16usize {
            let mut b = vec![0x55u8; cap];
            match r.read(&mut b) {
                Ok(Some((got, gv))) => {
                    assert!(cap >= n);
                    assert_eq!((got, gv), (n, ver));
                    assert_eq!(&b[..n], &v[..n]);
                    assert!(b[n..].iter().all(|&x| x == 0x55));
                }
                Err(LatestError::BufferTooSmall { needed }) => {
                    assert!(cap < n);
                    assert_eq!(needed, n);
                }
                other => panic!("len {n} cap {cap}: {other:?}"),
            }
        }
    }
}
