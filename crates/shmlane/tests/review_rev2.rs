//! Review rev2 (issue 15): a peer writing one word of our attachment slot must not make this
//! process hand out a second single-role endpoint (two producers of one SPSC ring writing the
//! same slots from two threads of this process: a data race in safe code).

use std::os::unix::fs::FileExt as _;

use shmlane::UnlinkPolicy;
use shmlane_segment::layout::SLOTS_OFFSET;
use shmlane_testkit::{Cleanup, unique};

/// Byte offset of `Slot::generation` (state, pid, role, generation: u32 each).
const GENERATION_AT: u64 = 12;

#[test]
fn a_peer_bumping_our_slot_generation_does_not_free_our_producer_role() {
    let name = unique("rev2-gen");
    let _c = Cleanup(name.clone());
    let ch = shmlane::spsc::<u64>(&name)
        .when_peers_leave(shmlane::PeersLeave::Disconnect)
        .capacity(64)
        .unlink(UnlinkPolicy::Never)
        .create()
        .unwrap();
    let first = ch.producer().unwrap();
    // The creator holds slot 0. A peer (hostile or broken) adds 2 to its generation, as a
    // claim would; nothing else changes and this process is alive.
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(format!("/dev/shm/{name}"))
        .unwrap();
    let at = SLOTS_OFFSET as u64 + GENERATION_AT; // slot 0
    let mut g = [0u8; 4];
    f.read_exact_at(&mut g, at).unwrap();
    let g = u32::from_le_bytes(g).wrapping_add(2);
    f.write_all_at(&g.to_le_bytes(), at).unwrap();
    // A second producer in this process, while the first lives, must still be refused.
    let second = ch.producer();
    assert!(
        second.is_err(),
        "a second live producer was given out after a peer wrote our slot's generation"
    );
    drop(first);
}

/// The stamp word of broadcast slot `index` (default 240-byte messages: 256-byte slots at the
/// end of the ring region).
fn write_stamp(name: &str, cap: u64, index: u64, stamp: u64) {
    let info = shmlane_segment::inspect(std::path::Path::new(&format!("/dev/shm/{name}")))
        .unwrap()
        .unwrap();
    let r = info.regions.iter().find(|r| r.name == "ring").unwrap();
    let slots = r.offset + r.size - cap * 256;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/dev/shm/{name}"))
        .unwrap();
    f.write_all_at(&stamp.to_ne_bytes(), slots + index * 256)
        .unwrap();
}

/// Finding 14 (loss bounded by what can have been lost): a subscriber that has been reading
/// for a while, and just read a message, cannot have lost more than the ring held plus what a
/// publisher sends in the moment since. The bound counted from the subscriber's attach (or
/// last lap) instead, so it grew with the subscriber's age: after half a second of normal
/// reading a stamp overwritten 10^8 ahead was accepted as a loss of 10^8 messages.
#[test]
fn a_subscriber_that_just_read_cannot_have_lost_a_hundred_million_messages() {
    let name = unique("rev2-bcast-age");
    let _c = Cleanup(name.clone());
    let ch = shmlane::broadcast(&name)
        .when_peers_leave(shmlane::PeersLeave::Disconnect)
        .capacity(8)
        .create()
        .unwrap();
    let mut tx = ch.publisher().unwrap();
    let mut rx = ch.subscriber().unwrap();
    let mut buf = [0u8; 256];
    let start = std::time::Instant::now();
    let mut sent = 0u64;
    // Half a second of normal traffic, every message read.
    while start.elapsed() < std::time::Duration::from_millis(500) {
        tx.send(&[sent as u8; 10]).unwrap();
        assert_eq!(rx.try_recv(&mut buf), Ok(10));
        sent += 1;
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    // The next slot's stamp says a message 10^8 ahead (not busy).
    let next = sent;
    write_stamp(&name, 8, next % 8, (next + 100_000_000) << 1);
    let r = rx.try_recv(&mut buf);
    assert!(
        matches!(r, Err(shmlane::ByteRecvError::Corrupt(_))),
        "a lap of 10^8 right after a good read was believed: {r:?}"
    );
    assert_eq!(rx.lost(), 0);
}

/// Finding 1 (role exclusivity), across `fork`: a child inherits the parent's producer (the
/// memory is copied, the role claim and the segment slot are the parent's). The child dropping
/// its copy must not free the parent's live role, nor tell the consumer the sender left.
#[test]
fn a_forked_child_dropping_an_inherited_producer_leaves_the_parents_role() {
    let name = unique("rev2-fork");
    let _c = Cleanup(name.clone());
    let ch = shmlane::spsc::<u64>(&name)
        .when_peers_leave(shmlane::PeersLeave::Disconnect)
        .capacity(64)
        .unlink(UnlinkPolicy::Never)
        .create()
        .unwrap();
    let producer = ch.producer().unwrap();
    let mut consumer = ch.consumer().unwrap();
    // SAFETY: the child only drops the inherited handles and leaves with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        drop(producer);
        drop(ch);
        // SAFETY: ends the child without running the parent's test harness.
        unsafe { libc::_exit(0) };
    }
    let mut status = 0;
    // SAFETY: waits for our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &raw mut status, 0) }, pid);
    assert!(
        ch.producer().is_err(),
        "a second producer was given out: the forked child's drop freed the parent's role"
    );
    let r = consumer.try_recv();
    assert!(
        matches!(r, Err(shmlane::TryRecvError::Empty)),
        "the consumer was told the producer left: {r:?}"
    );
    drop(producer);
}

/// Finding 15 (builder edge values): a zero-sized element type with the largest capacity is a
/// ring of a header and no slot bytes; creating it must not spend 2^40 steps initialising
/// slots that take no memory (a hang of hours in a debug build).
#[test]
fn a_zero_sized_element_with_the_largest_capacity_is_created_at_once_or_refused() {
    let name = unique("rev2-zst");
    let (done, wait) = std::sync::mpsc::channel();
    let n = name.clone();
    std::thread::spawn(move || {
        let r = shmlane::spsc::<()>(&n)
            .capacity(1 << 40)
            .unlink(UnlinkPolicy::Never)
            .create()
            .map(drop);
        let _ = done.send(r.map_err(|e| e.to_string()));
    });
    let r = wait.recv_timeout(std::time::Duration::from_secs(10));
    let _c = Cleanup(name);
    assert!(
        r.is_ok(),
        "create of a 2^40-slot ring of () still running after 10 s"
    );
}

/// Writes `value` into word `word` of the ring region of channel `name`.
fn write_ring_word(name: &str, byte_offset: u64, value: u64) {
    let info = shmlane_segment::inspect(std::path::Path::new(&format!("/dev/shm/{name}")))
        .unwrap()
        .unwrap();
    let r = info.regions.iter().find(|r| r.name == "ring").unwrap();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/dev/shm/{name}"))
        .unwrap();
    f.write_all_at(&value.to_ne_bytes(), r.offset + byte_offset)
        .unwrap();
}

/// Finding 14 (positions): an SPSC consumer blocked in `recv` while the producer's position
/// (`tail`, ring bytes 128..136) is overwritten far ahead, and a producer blocked in `send` on a
/// full ring while the consumer's (`head`, bytes 256..264) is overwritten past the tail: both
/// must report `Corrupt`, not wait until their deadline (or forever without one). The
/// blocking condition read the position through `len()`/`free()`, which say 0 on a corrupt
/// ring, so the wait never ended; the headers the peer checks compare are intact.
#[test]
fn spsc_blocked_calls_report_an_overwritten_position() {
    use shmlane::{Deadline, RecvError, SendError};
    use std::time::{Duration, Instant};
    let name = unique("rev2-spsc-pos");
    let _c = Cleanup(name.clone());
    let ch = shmlane::spsc::<u64>(&name)
        .when_peers_leave(shmlane::PeersLeave::Disconnect)
        .capacity(4)
        .unlink(UnlinkPolicy::Never)
        .create()
        .unwrap();
    let mut tx = ch.producer().unwrap();
    let mut rx = ch.consumer().unwrap();
    std::thread::scope(|s| {
        let t0 = Instant::now();
        let h = s.spawn(|| rx.recv(Some(Deadline::after(Duration::from_secs(20)))));
        std::thread::sleep(Duration::from_millis(100));
        write_ring_word(&name, 128, 1 << 40);
        let r = h.join().unwrap();
        let took = t0.elapsed();
        assert!(
            matches!(r, Err(RecvError::Corrupt)),
            "recv: {r:?} after {took:?}"
        );
        assert!(took < Duration::from_secs(5), "recv took {took:?}");
    });
    write_ring_word(&name, 128, 0);
    for v in 0..4 {
        tx.try_send(v).unwrap();
    }
    std::thread::scope(|s| {
        let t0 = Instant::now();
        let h = s.spawn(|| tx.send(9, Some(Deadline::after(Duration::from_secs(20)))));
        std::thread::sleep(Duration::from_millis(100));
        write_ring_word(&name, 256, 1 << 40);
        let r = h.join().unwrap();
        let took = t0.elapsed();
        assert!(
            matches!(r, Err(SendError::Corrupt(_))),
            "send: {r:?} after {took:?}"
        );
        assert!(took < Duration::from_secs(5), "send took {took:?}");
    });
}

/// The same for MPMC (review rev2, finding 14 "positions"): a receiver blocked in `recv` while
/// `deq` (ring bytes 256..264) is overwritten far from `enq`. Whatever it says, the call must
/// end well before its deadline with an error other than `Timeout` — or report data.
#[test]
fn mpmc_blocked_recv_reports_an_overwritten_position() {
    use shmlane::{Deadline, RecvError};
    use std::time::{Duration, Instant};
    for (offset, value) in [(256u64, 1u64 << 40), (128, 1 << 40), (256, u64::MAX - 3)] {
        let name = unique("rev2-mpmc-pos");
        let _c = Cleanup(name.clone());
        let ch = shmlane::mpmc::<u64>(&name)
            .when_peers_leave(shmlane::PeersLeave::Disconnect)
            .capacity(4)
            .unlink(UnlinkPolicy::Never)
            .create()
            .unwrap();
        let _tx = ch.sender().unwrap();
        let mut rx = ch.receiver().unwrap();
        std::thread::scope(|s| {
            let t0 = Instant::now();
            let h = s.spawn(|| rx.recv(Some(Deadline::after(Duration::from_secs(10)))));
            std::thread::sleep(Duration::from_millis(100));
            write_ring_word(&name, offset, value);
            let r = h.join().unwrap();
            let took = t0.elapsed();
            assert!(
                !matches!(r, Err(RecvError::Timeout)) && took < Duration::from_secs(5),
                "word at {offset} = {value}: {r:?} after {took:?}"
            );
        });
    }
}
