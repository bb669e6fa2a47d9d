//! Unit tests of the MPMC ring (Miri runs them too).

use super::*;
use crate::HeapRegion;

#[test]
fn fifo_full_empty_and_wrap() {
    for start in [0, u64::MAX - 1] {
        let (tx, rx) = HeapRegion::mpmc_at::<u64>(2, start);
        for round in 0..4 {
            tx.push(round).unwrap();
            tx.push(round + 100).unwrap();
            assert!(matches!(tx.push(7), Err(PushError::Full(7))));
            assert_eq!(tx.len(), 2);
            assert_eq!(rx.pop(), Ok(round));
            assert_eq!(rx.pop(), Ok(round + 100));
            assert_eq!(rx.pop(), Err(PopError::Empty));
        }
    }
}

#[test]
fn push_ref_and_pop_into_copy_in_place_fifo_full_empty_and_skips() {
    for start in [0, u64::MAX - 1] {
        let (tx, rx) = HeapRegion::mpmc_at::<[u64; 512]>(2, start);
        let mut dst = [9u64; 512];
        for round in 0..4u64 {
            tx.push_ref(&[round; 512]).unwrap();
            tx.push([round + 100; 512]).unwrap();
            assert_eq!(tx.push_ref(&[7; 512]), Err(PushError::Full(())));
            rx.pop_into(&mut dst).unwrap();
            assert_eq!(dst, [round; 512]);
            assert_eq!(rx.pop().map(|v| v[511]), Ok(round + 100));
            // Empty: the destination is left alone.
            assert_eq!(rx.pop_into(&mut dst), Err(PopError::Empty));
            assert_eq!(dst, [round; 512]);
        }
    }
    // A skipped slot (a dead producer's hole) is passed over: `pop_into` copies the next
    // value, never the unwritten slot.
    let dead = std::cell::Cell::new(false);
    let alive = |o: u64| o != 7 || !dead.get();
    let (mut txs, rxs, region) = owned(4, 0, &[7, 1], &[2], &alive);
    let (tx, rx) = (txs.pop().unwrap(), &rxs[0]);
    txs.pop().unwrap().abandon_push_for_tests(true);
    tx.push_ref(&42).unwrap();
    dead.set(true);
    assert_eq!(rx.recover(&alive), Hole::Recovered);
    let mut v = 0;
    rx.pop_into(&mut v).unwrap();
    assert_eq!(v, 42);
    assert_eq!(rx.pop_into(&mut v), Err(PopError::Empty));
    // The handles before the memory they point into (Miri: a use after free otherwise,
    // locals being dropped in reverse order).
    drop((tx, txs, rxs));
    drop(region);
}

#[test]
fn capacity_one_is_refused() {
    // With one slot, "full at p" and "free for p + 1" are the same stamp.
    let region = HeapRegion::new(MpmcRing::<u64>::required_size(1));
    // SAFETY: the region outlives the call.
    let r = unsafe { MpmcRing::<u64>::init(region.as_ptr(), region.len(), 1, 0) };
    assert_eq!(r, Err(AttachError::BadCapacity(1)));
}

#[test]
fn hostile_stamp_ends_in_corrupt_not_livelock() {
    let region = HeapRegion::new(MpmcRing::<u64>::required_size(4));
    // SAFETY: the region outlives the handles.
    unsafe {
        MpmcRing::<u64>::init(region.as_ptr(), region.len(), 4, 0).unwrap();
        let tx = MpmcRing::<u64>::sender(region.as_ptr(), region.len()).unwrap();
        let rx = MpmcRing::<u64>::receiver(region.as_ptr(), region.len()).unwrap();
        // Stamp of slot 0 far ahead: neither side can ever take it.
        let slot0 = &*region
            .as_ptr()
            .add(slots_offset::<u64>())
            .cast::<Slot<u64>>();
        slot0.seq.store(1 << 40, Ordering::Release);
        assert!(matches!(tx.push(1), Err(PushError::Corrupt(1))));
        assert_eq!(rx.pop(), Err(PopError::Corrupt));
        // pop_into leaves its destination as it was (review rev18).
        let mut dst = 77u64;
        assert_eq!(rx.pop_into(&mut dst), Err(PopError::Corrupt));
        assert_eq!(dst, 77);
        assert_eq!(tx.push_ref(&1), Err(PushError::Corrupt(())));
    }
}

/// Review rev18: a hostile peer that marks every slot skipped (its stamps, at any moment)
/// gets `pop_into` to pass them over and end, its destination never written.
#[test]
fn forged_skip_stamps_leave_pop_into_destination_alone() {
    let region = HeapRegion::new(MpmcRing::<u64>::required_size(4));
    // SAFETY: the region outlives the handles.
    unsafe {
        MpmcRing::<u64>::init(region.as_ptr(), region.len(), 4, 0).unwrap();
        let tx = MpmcRing::<u64>::sender(region.as_ptr(), region.len()).unwrap();
        let rx = MpmcRing::<u64>::receiver(region.as_ptr(), region.len()).unwrap();
        tx.push(5).unwrap();
        let slots = region
            .as_ptr()
            .add(slots_offset::<u64>())
            .cast::<Slot<u64>>();
        for lap in 0..3u64 {
            for i in 0..4u64 {
                let pos = lap * 4 + i;
                (*slots.add(i as usize))
                    .seq
                    .store(skip_stamp(pos), Ordering::Release);
            }
            let mut dst = 77u64;
            let r = rx.pop_into(&mut dst);
            assert!(
                matches!(r, Err(PopError::Empty | PopError::Corrupt)),
                "{r:?}"
            );
            assert_eq!(dst, 77, "lap {lap}");
        }
    }
}

/// An owned ring of `cap` u64 slots: senders for `tx_owners`, receivers for `rx_owners`
/// (attached with `is_alive`). Keep the region alive while the handles live.
#[allow(clippy::type_complexity)]
fn owned(
    cap: u64,
    start: u64,
    tx_owners: &[u64],
    rx_owners: &[u64],
    is_alive: &dyn Fn(u64) -> bool,
) -> (Vec<Sender<u64>>, Vec<Receiver<u64>>, HeapRegion) {
    let region = HeapRegion::new(MpmcRing::<u64>::required_size(cap));
    let (ptr, len) = (region.as_ptr(), region.len());
    // SAFETY: the region is returned with the handles; callers drop it last.
    unsafe {
        MpmcRing::<u64>::init(ptr, len, cap, start).unwrap();
        let txs = tx_owners
            .iter()
            .map(|&o| MpmcRing::<u64>::sender_owned(ptr, len, o, is_alive).unwrap())
            .collect();
        let rxs = rx_owners
            .iter()
            .map(|&o| MpmcRing::<u64>::receiver_owned(ptr, len, o, is_alive).unwrap())
            .collect();
        (txs, rxs, region)
    }
}

#[test]
fn a_dead_producers_hole_is_skipped_and_a_live_ones_waits() {
    for start in [0, u64::MAX - 2] {
        let dead = std::cell::Cell::new(false);
        let alive = |o: u64| o != 7 || !dead.get();
        let (mut txs, rxs, region) = owned(4, start, &[7, 1], &[2], &alive);
        let (tx, rx) = (txs.pop().unwrap(), &rxs[0]);
        let victim = txs.pop().unwrap();
        assert!(victim.has_intent() && tx.has_intent());
        assert_eq!(victim.abandon_push_for_tests(true), start);
        tx.push(10).unwrap();
        tx.push(11).unwrap();
        // Owner 7 still lives: its hole is waited for, never skipped.
        assert_eq!(rx.pop(), Err(PopError::Empty));
        assert!(!rx.can_pop());
        assert_eq!(rx.recover(&alive), Hole::Waiting);
        dead.set(true);
        assert_eq!(rx.recover(&alive), Hole::Recovered);
        assert!(rx.can_pop());
        assert_eq!(rx.recover(&alive), Hole::None);
        assert_eq!(rx.pop(), Ok(10));
        assert_eq!(rx.pop(), Ok(11));
        assert_eq!(rx.pop(), Err(PopError::Empty));
        // The skipped slot was given back: a whole ring fits again, across the wrap.
        for i in 0..4 {
            tx.push(20 + i).unwrap();
        }
        assert!(matches!(tx.push(9), Err(PushError::Full(9))));
        for i in 0..4 {
            assert_eq!(rx.pop(), Ok(20 + i));
        }
        drop((tx, rxs));
        drop(region);
    }
}

/// A skip mark is a state a sound ring shows: at the dequeue position itself (between a
/// recovery and the pop that passes it), with the ring full behind it, and a lap behind
/// (a consumer between taking a skipped position and storing its stamp). Before the fix
/// only the second was accepted, and a channel sender blocked on the full ring reported
/// `Corrupt` in the first (crates/shmlane/tests/channels.rs
/// mpmc_sender_killed_mid_send_is_skipped_and_counted under ThreadSanitizer).
#[test]
fn skip_marks_are_consistent_positions() {
    for start in [0, u64::MAX - 2, (1 << 62) - 1] {
        let dead = std::cell::Cell::new(false);
        let alive = |o: u64| !(o == 7 || o == 8) || !dead.get();
        let (mut txs, mut rxs, region) = owned(4, start, &[7, 1], &[8, 2], &alive);
        let (tx, rx) = (txs.pop().unwrap(), rxs.pop().unwrap());
        let victim_rx = rxs.pop().unwrap();
        assert_eq!(txs.pop().unwrap().abandon_push_for_tests(true), start);
        for i in 1..4 {
            tx.push(i).unwrap();
        }
        assert!(matches!(tx.push(4), Err(PushError::Full(4))));
        assert!(tx.positions_consistent() && rx.positions_consistent());
        dead.set(true);
        assert_eq!(rx.recover(&alive), Hole::Recovered);
        // The hole at the dequeue position is marked skipped, the ring is full behind it.
        assert!(
            tx.positions_consistent(),
            "start {start}: own-lap skip mark"
        );
        assert!(
            rx.positions_consistent(),
            "start {start}: own-lap skip mark"
        );
        // A consumer takes the skipped position and dies before its stamp store; the next
        // consumer moves on: the stamp at `deq - cap`'s slot is still the skip mark.
        assert_eq!(victim_rx.abandon_pop_for_tests(true), start);
        for i in 1..4 {
            assert_eq!(rx.pop(), Ok(i));
        }
        assert!(
            tx.positions_consistent(),
            "start {start}: previous-lap skip mark"
        );
        assert_eq!(tx.recover(&alive), Hole::Released);
        assert!(tx.positions_consistent() && rx.positions_consistent());
        tx.push(5).unwrap();
        assert_eq!(rx.pop(), Ok(5));
        // Skip marks no endpoint could have left at the dequeue position's slot: another
        // slot's position, or a lap before `deq - cap`.
        let deq = start.wrapping_add(5);
        // SAFETY: the region outlives the handles; the stamp is an atomic.
        let slot = unsafe {
            &*region
                .as_ptr()
                .add(slots_offset::<u64>())
                .cast::<Slot<u64>>()
                .add((deq & 3) as usize)
        };
        // ORDERING: Relaxed for all three; single-threaded test.
        let was = slot.seq.load(Ordering::Relaxed);
        for bad in [deq.wrapping_add(1), deq.wrapping_sub(8)] {
            slot.seq.store(skip_stamp(bad), Ordering::Relaxed);
            assert!(
                !rx.positions_consistent(),
                "start {start}: skip mark of {bad}"
            );
        }
        slot.seq.store(was, Ordering::Relaxed);
        assert!(rx.positions_consistent());
        drop((tx, rx, rxs, txs));
        drop(region);
    }
}

#[test]
fn a_dead_consumers_slot_is_given_back_and_a_live_ones_waits() {
    let dead = std::cell::Cell::new(false);
    let alive = |o: u64| o != 8 || !dead.get();
    let (txs, mut rxs, region) = owned(4, u64::MAX - 1, &[1], &[8, 2], &alive);
    let (tx, rx) = (&txs[0], rxs.pop().unwrap());
    let victim = rxs.pop().unwrap();
    tx.push(1).unwrap();
    assert_eq!(victim.abandon_pop_for_tests(true), u64::MAX - 1);
    for i in 2..5 {
        tx.push(i).unwrap();
    }
    // The slot the dead-to-be consumer holds is next for producers: full.
    assert!(matches!(tx.push(5), Err(PushError::Full(5))));
    assert!(!tx.can_push());
    assert_eq!(tx.recover(&alive), Hole::Waiting);
    dead.set(true);
    assert_eq!(tx.recover(&alive), Hole::Recovered);
    assert!(tx.can_push());
    tx.push(5).unwrap();
    for i in 2..6 {
        assert_eq!(rx.pop(), Ok(i));
    }
    assert_eq!(rx.pop(), Err(PopError::Empty));
    drop((txs, rx));
    drop(region);
}

#[test]
fn a_dead_consumer_passing_a_skipped_slot_is_given_back_too() {
    let dead = std::cell::Cell::new(false);
    let alive = |o: u64| !(o == 7 || o == 8) || !dead.get();
    let (mut txs, mut rxs, region) = owned(2, 0, &[7, 1], &[8, 2], &alive);
    let (tx, rx) = (txs.pop().unwrap(), rxs.pop().unwrap());
    txs.pop().unwrap().abandon_push_for_tests(true);
    dead.set(true);
    assert_eq!(rx.recover(&alive), Hole::Recovered);
    // Consumer 8 takes the skipped position and dies there.
    assert_eq!(rxs.pop().unwrap().abandon_pop_for_tests(true), 0);
    tx.push(1).unwrap();
    assert!(matches!(tx.push(2), Err(PushError::Full(2))));
    // Given back, but no message was lost with it (the skip was counted already).
    assert_eq!(tx.recover(&alive), Hole::Released);
    tx.push(2).unwrap();
    assert_eq!(rx.pop(), Ok(1));
    assert_eq!(rx.pop(), Ok(2));
    drop((tx, rx));
    drop(region);
}

#[test]
fn a_dead_stale_intent_never_takes_a_live_claimers_hole() {
    let alive = |o: u64| o != 7 && o != 8;
    // Owner 7 announced position 0 and died before its CAS; owner 1 (live) took it.
    let (mut txs, rxs, region) = owned(2, 0, &[7, 1], &[2], &alive);
    txs.remove(0).abandon_push_for_tests(false);
    assert_eq!(txs.pop().unwrap().abandon_push_for_tests(true), 0);
    assert_eq!(rxs[0].recover(&alive), Hole::Waiting);
    drop(rxs);
    drop(region);
    // Same on the consumer side: owner 8 announced, owner 2 (live) took the value.
    let (txs, mut rxs, region) = owned(2, 0, &[1], &[8, 2], &alive);
    txs[0].push(1).unwrap();
    rxs.remove(0).abandon_pop_for_tests(false);
    assert_eq!(rxs.pop().unwrap().abandon_pop_for_tests(true), 0);
    txs[0].push(2).unwrap();
    assert!(matches!(txs[0].push(3), Err(PushError::Full(3))));
    assert_eq!(txs[0].recover(&alive), Hole::Waiting);
    drop(txs);
    drop(region);
}

#[test]
fn holes_of_handles_without_an_owner_or_an_entry_are_never_recovered() {
    // A handle attached without an owner holds an entry nobody judges dead.
    let (_, rxs, region) = owned(4, 0, &[], &[2], &|_| true);
    // SAFETY: the region outlives the handle.
    let no_owner = unsafe { MpmcRing::<u64>::sender(region.as_ptr(), region.len()).unwrap() };
    assert!(no_owner.has_intent());
    no_owner.abandon_push_for_tests(true);
    assert_eq!(rxs[0].recover(&|_| false), Hole::Waiting);
    drop(rxs);
    drop(region);
    // Beyond the entries a handle counts its operation in `anon`: one that died in flight
    // keeps recovery of its side off (here: of owner 7's hole before it).
    let dead = std::cell::Cell::new(false);
    let alive = |o: u64| o != 7 || !dead.get();
    let mut owners = [5; MPMC_INTENTS];
    owners[0] = 7;
    let (mut txs, rxs, region) = owned(4, 0, &owners, &[2], &alive);
    // SAFETY: the region outlives the handle.
    let anon = unsafe { MpmcRing::<u64>::sender(region.as_ptr(), region.len()).unwrap() };
    assert!(!anon.has_intent());
    txs.remove(0).abandon_push_for_tests(true);
    dead.set(true);
    anon.clone().abandon_push_for_tests(true);
    assert_eq!(rxs[0].recover(&alive), Hole::Waiting);
    drop((anon, txs, rxs));
    drop(region);
}

#[test]
fn intent_entries_are_per_handle_and_taken_over_from_the_dead_once_resolved() {
    let dead = std::cell::Cell::new(false);
    let alive = |o: u64| o != 7 || !dead.get();
    let mut owners = [5; MPMC_INTENTS];
    owners[MPMC_INTENTS - 1] = 7;
    let (mut txs, rxs, region) = owned(4, 0, &owners, &[2], &alive);
    assert!(txs.iter().all(Sender::has_intent));
    // Clones of a handle take entries of their own; none left: without one.
    assert!(!txs[0].clone().has_intent());
    let (ptr, len) = (region.as_ptr(), region.len());
    // SAFETY: the region outlives the handles.
    let attach = || unsafe { MpmcRing::<u64>::sender_owned(ptr, len, 3, &alive).unwrap() };
    assert!(!attach().has_intent());
    // Owner 7 dies with a hole pending: its entry is not taken while the hole is.
    txs.pop().unwrap().abandon_push_for_tests(true);
    dead.set(true);
    assert!(!attach().has_intent());
    assert_eq!(rxs[0].recover(&alive), Hole::Recovered);
    assert_eq!(rxs[0].pop(), Err(PopError::Empty));
    // Once the consumers passed the hole, a dead holder's entries are free to take.
    let t = attach();
    assert!(t.has_intent());
    t.push(4).unwrap();
    assert_eq!(rxs[0].pop(), Ok(4));
    drop((t, txs, rxs));
    drop(region);
}

/// Review (rev1): a dead consumer's entry is not taken over while the slot it held is
/// still held, including when the producers have just come round to it (`enq` exactly a
/// lap past its position, the ring full there). Taking it then would erase the only
/// intent naming the hole, and the slot would never be given back (a wedge). Before this
/// test nothing covered the consumers' side of `intent_pending`: an off-by-one there (`enq`
/// a lap past *or at* the position counting as resolved) passed every test.
#[test]
fn rev1_a_dead_consumers_entry_is_not_taken_while_its_slot_is_held() {
    let dead = std::cell::Cell::new(false);
    let alive = |o: u64| o != 8 || !dead.get();
    let mut owners = [2; MPMC_INTENTS];
    owners[0] = 8;
    for start in [0, u64::MAX - 1] {
        let (txs, mut rxs, region) = owned(4, start, &[1], &owners, &alive);
        let tx = &txs[0];
        tx.push(100).unwrap();
        assert_eq!(rxs.remove(0).abandon_pop_for_tests(true), start);
        for i in 1..4 {
            tx.push(100 + i).unwrap();
        }
        // `enq` is now exactly a lap past the held slot: full there.
        assert!(matches!(tx.push(9), Err(PushError::Full(9))));
        dead.set(true);
        let (ptr, len) = (region.as_ptr(), region.len());
        // SAFETY: the region outlives the handles (dropped below, region last).
        let attach = || unsafe { MpmcRing::<u64>::receiver_owned(ptr, len, 3, &alive).unwrap() };
        let early = attach();
        assert_eq!(
            tx.recover(&alive),
            Hole::Recovered,
            "the held slot must still be given back after a late attach (start {start})"
        );
        assert!(!early.has_intent(), "entry taken while its hole was held");
        tx.push(104).unwrap();
        // Now `enq` went a lap past the position: resolved, the entry may be taken.
        let late = attach();
        assert!(late.has_intent());
        for i in 1..5 {
            assert_eq!(late.pop(), Ok(100 + i));
        }
        drop((early, late, txs, rxs));
        drop(region);
    }
}
#[test]
fn two_by_two_threads_lose_and_duplicate_nothing() {
    let per: u64 = if cfg!(miri) { 100 } else { 50_000 };
    let (tx, rx) = HeapRegion::mpmc::<u64>(16);
    let producers: Vec<_> = (0..2u64)
        .map(|id| {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for i in 0..per {
                    let mut v = (id << 32) | i;
                    while let Err(e) = tx.push(v) {
                        v = e.into_inner();
                        std::thread::yield_now();
                    }
                }
            })
        })
        .collect();
    let total = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let consumers: Vec<_> = (0..2)
        .map(|_| {
            let rx = rx.clone();
            let total = total.clone();
            std::thread::spawn(move || {
                let mut got = Vec::new();
                let mut last = [None::<u64>; 2];
                while total.load(std::sync::atomic::Ordering::Relaxed) < 2 * per {
                    if let Ok(v) = rx.pop() {
                        let (id, i) = ((v >> 32) as usize, v & 0xffff_ffff);
                        // Per producer, each consumer sees increasing sequence numbers.
                        assert!(last[id].is_none_or(|l| l < i));
                        last[id] = Some(i);
                        got.push(v);
                        total.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    } else {
                        std::thread::yield_now();
                    }
                }
                got
            })
        })
        .collect();
    for p in producers {
        p.join().unwrap();
    }
    let mut all: Vec<u64> = consumers
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    all.sort_unstable();
    let mut want: Vec<u64> = (0..2u64)
        .flat_map(|id| (0..per).map(move |i| (id << 32) | i))
        .collect();
    want.sort_unstable();
    assert_eq!(all, want);
}
