//! Review "revl" of the channel lifecycle (issue 16): hostile words in the channel and ring
//! headers against the lifecycle (join counters, ring positions read by the stale check), the
//! stale refusal on SPSC channels, and what `wait_for_peer` costs while a peer forges joins.

use std::{
    io::{BufRead, BufReader},
    os::unix::fs::FileExt,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use shmlane::{Deadline, OpenError, PeersLeave, RecvError, UnlinkPolicy, WaitPeerError};
use shmlane_testkit::{Cleanup, child, child_role, unique};

#[allow(clippy::unnecessary_wraps)]
fn secs(n: u64) -> Option<Deadline> {
    Some(Deadline::after(Duration::from_secs(n)))
}

#[test]
fn child_entry() {
    let Some((role, args)) = child_role() else {
        return;
    };
    let name = args[0].as_str();
    match role.as_str() {
        // Sends `n` values on an SPSC channel, then hangs (holding the producer) until killed.
        "spsc-send-hang" => {
            let n: u64 = args[1].parse().unwrap();
            let ch = shmlane::spsc::<u64>(name).open().unwrap();
            let mut tx = ch.producer().unwrap();
            for i in 0..n {
                tx.send(i, secs(10)).unwrap();
            }
            println!("OUT:sent");
            std::thread::sleep(Duration::from_secs(300));
            drop((tx, ch));
        }
        // Sends `n` values on an MPMC channel removed with its last endpoint, then hangs.
        "last-detach-send-hang" => {
            let n: u64 = args[1].parse().unwrap();
            let ch = shmlane::mpmc::<u64>(name)
                .unlink(UnlinkPolicy::LastDetach)
                .open()
                .unwrap();
            let mut tx = ch.sender().unwrap();
            for i in 0..n {
                tx.send(i, secs(10)).unwrap();
            }
            println!("OUT:sent");
            std::thread::sleep(Duration::from_secs(300));
            drop((tx, ch));
        }
        // On a 256-byte byte channel: one 16-byte message sent and received (the head moves
        // to 24), then `n` 8-byte ones sent (16-byte records: the 15th does not fit before the
        // end, so padding precedes it), then hangs holding both ends until killed.
        "bytes-wrap-hang" => {
            let n: u64 = args[1].parse().unwrap();
            let ch = shmlane::bytes(name).open().unwrap();
            let (mut tx, mut rx) = (ch.byte_sender().unwrap(), ch.byte_receiver().unwrap());
            tx.send(&[7u8; 16], secs(10)).unwrap();
            let mut buf = [0u8; 64];
            assert_eq!(rx.recv(&mut buf, secs(10)), Ok(16));
            for i in 0..n {
                tx.send(&i.to_le_bytes(), secs(10)).unwrap();
            }
            println!("OUT:sent");
            std::thread::sleep(Duration::from_secs(300));
            drop((tx, rx, ch));
        }
        // Holds a receiver of `kind` (spsc, mpmc, bytes) until killed.
        "hold-receiver" => {
            let held: Box<dyn std::any::Any> = match args[1].as_str() {
                "spsc" => {
                    let ch = shmlane::spsc::<u64>(name).open().unwrap();
                    let rx = ch.consumer().unwrap();
                    Box::new((ch, rx))
                }
                "mpmc" => {
                    let ch = shmlane::mpmc::<u64>(name).open().unwrap();
                    let rx = ch.receiver().unwrap();
                    Box::new((ch, rx))
                }
                _ => {
                    let ch = shmlane::bytes(name).open().unwrap();
                    let rx = ch.byte_receiver().unwrap();
                    Box::new((ch, rx))
                }
            };
            println!("OUT:held");
            std::thread::sleep(Duration::from_secs(300));
            drop(held);
        }
        "hold-sender" => {
            let ch = shmlane::mpmc::<u64>(name).open().unwrap();
            let _tx = ch.sender().unwrap();
            println!("OUT:held");
            std::thread::sleep(Duration::from_secs(300));
        }
        other => panic!("unknown role {other}"),
    }
    std::process::exit(0);
}

fn wait_line(c: &mut std::process::Child, want: &str) {
    let out = c.stdout.take().expect("piped stdout");
    let want = format!("OUT:{want}");
    let seen = BufReader::new(out)
        .lines()
        .map_while(Result::ok)
        .any(|l| l == want);
    assert!(seen, "the child never printed {want}");
}

fn region(name: &str, which: &str) -> u64 {
    let info = shmlane_segment::inspect(std::path::Path::new(&format!("/dev/shm/{name}")))
        .unwrap()
        .unwrap();
    info.regions
        .iter()
        .find(|r| r.name == which)
        .unwrap()
        .offset
}

/// Writes `v` at byte `off` of region `which`, as a hostile peer would.
fn poke(name: &str, which: &str, off: u64, v: u64) {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/dev/shm/{name}"))
        .unwrap();
    f.write_all_at(&v.to_ne_bytes(), region(name, which) + off)
        .unwrap();
}

fn cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid out-pointer; the calling thread's CPU clock.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &raw mut ts) };
    assert_eq!(r, 0);
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// An SPSC producer killed with values queued and nobody attached: the next open is refused
/// (`Stale`, naming it), and `resume(true)` delivers them (not only MPMC and bytes).
#[test]
fn spsc_crashed_session_is_refused_until_resumed() {
    let name = unique("revl-spsc-stale");
    let _c = Cleanup(name.clone());
    drop(shmlane::spsc::<u64>(&name).capacity(64).create().unwrap());
    let mut c = child("spsc-send-hang", &[&name, "10"]).spawn().unwrap();
    wait_line(&mut c, "sent");
    let pid = c.id();
    c.kill().unwrap();
    c.wait().unwrap();
    match shmlane::spsc::<u64>(&name).open() {
        Err(OpenError::Stale {
            pid: p,
            role,
            unread,
            ..
        }) => assert_eq!((p, role, unread), (pid, "sender", 10)),
        other => panic!("spsc: a crashed session's values were not refused: {other:?}"),
    }
    let ch = shmlane::spsc::<u64>(&name).resume(true).open().unwrap();
    let mut rx = ch.consumer().unwrap();
    for i in 0..10 {
        assert_eq!(rx.recv(secs(5)), Ok(i));
    }
    assert_eq!(
        rx.recv(Some(Deadline::after(Duration::from_millis(100)))),
        Err(RecvError::Timeout)
    );
}

/// Forged ring positions behind a dead holder (head past the tail, both near `u64::MAX`): the
/// stale check never panics and reports at most the ring's capacity.
#[test]
fn stale_unread_from_forged_positions_is_clamped() {
    let name = unique("revl-forged");
    let _c = Cleanup(name.clone());
    drop(shmlane::spsc::<u64>(&name).capacity(64).create().unwrap());
    let mut c = child("spsc-send-hang", &[&name, "3"]).spawn().unwrap();
    wait_line(&mut c, "sent");
    c.kill().unwrap();
    c.wait().unwrap();
    for (tail, head) in [
        (3, u64::MAX),
        (u64::MAX, 0),
        (0, 1),
        (u64::MAX - 1, u64::MAX),
    ] {
        poke(&name, "ring", 128, tail);
        poke(&name, "ring", 256, head);
        match shmlane::spsc::<u64>(&name).open() {
            Err(OpenError::Stale { unread, .. }) => {
                assert!(unread <= 64, "tail {tail} head {head}: unread {unread}");
            }
            other => panic!("tail {tail} head {head}: {other:?}"),
        }
    }
}

/// A hostile peer bumping the receivers' join counter as fast as it can: a sender's
/// `wait_for_peer` still returns at its deadline, and parks instead of turning at full CPU
/// (every turn a scan of the attachment table, syscalls included).
#[test]
fn wait_for_peer_is_not_spun_by_forged_joins() {
    let name = unique("revl-joins");
    let _c = Cleanup(name.clone());
    let ch = shmlane::mpmc::<u64>(&name)
        .capacity(8)
        .when_peers_leave(PeersLeave::Wait)
        .create()
        .unwrap();
    let mut tx = ch.sender().unwrap();
    let stop = AtomicBool::new(false);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/dev/shm/{name}"))
        .unwrap();
    let at = region(&name, "chan") + 64;
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                f.write_all_at(&n.to_ne_bytes(), at).unwrap();
            }
        });
        let d = Duration::from_millis(600);
        let (t0, c0) = (Instant::now(), cpu_time());
        let r = tx.wait_for_peer(Some(Deadline::after(d)));
        let (waited, cpu) = (t0.elapsed(), cpu_time().saturating_sub(c0));
        stop.store(true, Ordering::Relaxed);
        assert_eq!(r, Err(WaitPeerError::Timeout));
        assert!(
            waited >= d.saturating_sub(Duration::from_millis(5))
                && waited < d + Duration::from_millis(500),
            "waited {waited:?} for {d:?}"
        );
        assert!(
            cpu < d / 4,
            "busy loop: {cpu:?} of CPU in a {waited:?} wait_for_peer"
        );
    });
}

/// The state table in docs/design.md ("Channel lifecycle"): a `LastDetach` channel whose
/// sender was killed is stale (refused); resumed and drained by a receiver it keeps its name,
/// and the segment lists as stale (the dead attachment) until `rm --stale`; reopening it is a
/// first run (empty ring), not a refusal.
#[test]
fn last_detach_after_a_crash_is_stale_then_listed_stale_when_drained() {
    let name = unique("revl-ld-crash");
    let _c = Cleanup(name.clone());
    let creator = shmlane::mpmc::<u64>(&name)
        .capacity(64)
        .unlink(UnlinkPolicy::LastDetach)
        .create()
        .unwrap();
    let mut c = child("last-detach-send-hang", &[&name, "5"])
        .spawn()
        .unwrap();
    wait_line(&mut c, "sent");
    c.kill().unwrap();
    c.wait().unwrap();
    drop(creator);
    let path = format!("/dev/shm/{name}");
    assert!(
        std::path::Path::new(&path).exists(),
        "a dead holder keeps the name"
    );
    assert!(matches!(
        shmlane::mpmc::<u64>(&name).open(),
        Err(OpenError::Stale { unread: 5, .. })
    ));
    let ch = shmlane::mpmc::<u64>(&name)
        .unlink(UnlinkPolicy::LastDetach)
        .resume(true)
        .open()
        .unwrap();
    let mut rx = ch.receiver().unwrap();
    for i in 0..5 {
        assert_eq!(rx.recv(secs(5)), Ok(i));
    }
    drop((rx, ch));
    assert!(
        std::path::Path::new(&path).exists(),
        "the dead attachment is still listed"
    );
    let info = shmlane_segment::inspect(std::path::Path::new(&path))
        .unwrap()
        .unwrap();
    assert_eq!(info.state, shmlane_segment::SegmentState::Stale);
    // Drained: opens like a first run.
    drop(shmlane::mpmc::<u64>(&name).open().unwrap());
}

/// A byte channel's `Stale.unread` counts messages, padding at the wrap not included (not the
/// bytes their records take); forged record headers give a bounded count, never a panic.
#[test]
fn byte_stale_unread_counts_messages_across_the_wrap() {
    let name = unique("revl-bytes-wrap");
    let _c = Cleanup(name.clone());
    drop(shmlane::bytes(&name).capacity(256).create().unwrap());
    let mut c = child("bytes-wrap-hang", &[&name, "15"]).spawn().unwrap();
    wait_line(&mut c, "sent");
    let pid = c.id();
    c.kill().unwrap();
    c.wait().unwrap();
    match shmlane::bytes(&name).open() {
        Err(OpenError::Stale { pid: p, unread, .. }) => assert_eq!((p, unread), (pid, 15)),
        other => panic!("{other:?}"),
    }
    // Forged headers at the head (data area after the ring header): each gives at least one.
    let ring_hdr = shmlane_ring_data_offset(&name);
    for forged in [
        u64::MAX,
        0,
        0xffff_ffff | 2 << 32,
        3 << 32 | 8,
        1 << 40 | 2 << 32,
    ] {
        poke(&name, "ring", ring_hdr + 24, forged);
        match shmlane::bytes(&name).open() {
            Err(OpenError::Stale { unread, .. }) => {
                assert!(
                    (1..=32).contains(&unread),
                    "header {forged:#x}: unread {unread}"
                );
            }
            other => panic!("header {forged:#x}: {other:?}"),
        }
    }
}

/// Where a 256-byte record ring's data area starts in its region: the region's size less the
/// data bytes (the events and other regions are separate).
fn shmlane_ring_data_offset(name: &str) -> u64 {
    let info = shmlane_segment::inspect(std::path::Path::new(&format!("/dev/shm/{name}")))
        .unwrap()
        .unwrap();
    info.regions.iter().find(|r| r.name == "ring").unwrap().size - 256
}

/// Runs `f` with a `d` deadline; checks it waited about `d` without a busy loop.
fn waits_out<R: std::fmt::Debug>(d: Duration, f: impl FnOnce(Option<Deadline>) -> R) -> R {
    let (t0, c0) = (Instant::now(), cpu_time());
    let r = f(Some(Deadline::after(d)));
    let (waited, cpu) = (t0.elapsed(), cpu_time().saturating_sub(c0));
    assert!(
        waited >= d.saturating_sub(Duration::from_millis(5))
            && waited < d + Duration::from_millis(500),
        "waited {waited:?} for a {d:?} deadline ({r:?})"
    );
    assert!(
        cpu < d / 4,
        "busy loop: {cpu:?} of CPU in {waited:?} ({r:?})"
    );
    r
}

/// Senders in `Wait` mode on a full ring whose receiver was killed after they attached: one
/// `PeerDied`, then every later send waits out its deadline, parked (SPSC, MPMC, bytes).
#[test]
fn wait_mode_senders_report_a_receiver_death_once_then_wait() {
    for kind in ["spsc", "mpmc", "bytes"] {
        let name = unique(&format!("revl-wsend-{kind}"));
        let _c = Cleanup(name.clone());
        let (ch_b, ch_t);
        let mut send: Box<dyn FnMut(Option<Deadline>) -> Result<(), String>> = match kind {
            "bytes" => {
                ch_b = shmlane::bytes(&name).capacity(256).create().unwrap();
                let mut tx = ch_b.byte_sender().unwrap();
                Box::new(move |d| tx.send(&[1u8; 8], d).map_err(|e| format!("{e:?}")))
            }
            "spsc" => {
                ch_t = shmlane::spsc::<u64>(&name).capacity(8).create().unwrap();
                let mut tx = ch_t.producer().unwrap();
                Box::new(move |d| tx.send(1, d).map_err(|e| format!("{e:?}")))
            }
            _ => {
                ch_t = shmlane::mpmc::<u64>(&name).capacity(8).create().unwrap();
                let mut tx = ch_t.sender().unwrap();
                Box::new(move |d| tx.send(1, d).map_err(|e| format!("{e:?}")))
            }
        };
        let mut c = child("hold-receiver", &[&name, kind]).spawn().unwrap();
        wait_line(&mut c, "held");
        while send(Some(Deadline::after(Duration::from_millis(1)))).is_ok() {}
        c.kill().unwrap();
        c.wait().unwrap();
        let r = send(secs(5));
        assert!(
            r.as_ref().is_err_and(|e| e.starts_with("PeerDied")),
            "{kind}: {r:?}"
        );
        for _ in 0..2 {
            let r = waits_out(Duration::from_millis(300), &mut send);
            assert!(
                r.as_ref().is_err_and(|e| e.starts_with("Timeout")),
                "{kind}: {r:?}"
            );
        }
    }
}

/// A sender killed between this handle's open and its receiver's creation (and a second
/// receiver made later from the same handle, after the first saw the death): neither is told
/// of a death before it attached; in `Disconnect` mode, never having seen a live sender, they
/// wait out their deadline.
#[test]
fn a_death_between_open_and_endpoint_is_not_blamed() {
    for mode in [PeersLeave::Wait, PeersLeave::Disconnect] {
        let name = unique(&format!("revl-between-{mode:?}"));
        let _c = Cleanup(name.clone());
        let ch = shmlane::mpmc::<u64>(&name)
            .capacity(8)
            .when_peers_leave(mode)
            .create()
            .unwrap();
        let mut c = child("hold-sender", &[&name]).spawn().unwrap();
        wait_line(&mut c, "held");
        c.kill().unwrap();
        c.wait().unwrap();
        let mut rx = ch.receiver().unwrap();
        assert_eq!(
            waits_out(Duration::from_millis(200), |d| rx.recv(d)),
            Err(RecvError::Timeout),
            "{mode:?}"
        );
        // A sender attaches and is killed while `rx` is there: reported to it, once.
        let mut c = child("hold-sender", &[&name]).spawn().unwrap();
        wait_line(&mut c, "held");
        c.kill().unwrap();
        c.wait().unwrap();
        assert_eq!(rx.recv(secs(5)), Err(RecvError::PeerDied), "{mode:?}");
        // A second receiver from the same handle, made after both deaths: neither is its.
        let mut rx2 = ch.receiver().unwrap();
        assert_eq!(
            waits_out(Duration::from_millis(200), |d| rx2.recv(d)),
            Err(RecvError::Timeout),
            "{mode:?}: second receiver"
        );
    }
}

/// A `LastDetach` channel kept idle with unread messages (its last sender left): an open that
/// fails (another element type, another capacity) by a `LastDetach` handle, alone on the
/// channel, must not remove the name with the messages; the right receiver still gets them.
#[test]
fn a_failed_open_does_not_remove_a_kept_channel() {
    let name = unique("revl-failed-open");
    let _c = Cleanup(name.clone());
    {
        let ch = shmlane::mpmc::<u64>(&name)
            .capacity(64)
            .unlink(UnlinkPolicy::LastDetach)
            .create()
            .unwrap();
        let mut tx = ch.sender().unwrap();
        for i in 0..5 {
            tx.send(i, secs(5)).unwrap();
        }
    }
    let path = format!("/dev/shm/{name}");
    assert!(std::path::Path::new(&path).exists(), "kept with 5 unread");
    let wrong_type = shmlane::mpmc::<u32>(&name)
        .unlink(UnlinkPolicy::LastDetach)
        .open();
    assert!(wrong_type.is_err());
    assert!(
        std::path::Path::new(&path).exists(),
        "an open that failed ({:?}) removed the channel and its 5 unread messages",
        wrong_type.err()
    );
    let wrong_cap = shmlane::mpmc::<u64>(&name)
        .capacity(128)
        .unlink(UnlinkPolicy::LastDetach)
        .open();
    assert!(wrong_cap.is_err());
    assert!(
        std::path::Path::new(&path).exists(),
        "an open that failed ({:?}) removed the channel and its 5 unread messages",
        wrong_cap.err()
    );
    let ch = shmlane::mpmc::<u64>(&name)
        .unlink(UnlinkPolicy::LastDetach)
        .open()
        .unwrap();
    let mut rx = ch.receiver().unwrap();
    for i in 0..5 {
        assert_eq!(rx.recv(secs(5)), Ok(i));
    }
    drop((rx, ch));
    assert!(!std::path::Path::new(&path).exists(), "drained: removed");
}
