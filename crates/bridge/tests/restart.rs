//! Bridges killed (SIGKILL) and restarted mid-stream: every gap is reported as a number of lost
//! messages, never hidden; a bridge that joins late gets the stream from when it joined.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{BridgeProc, Chan, check, free_port, message};
use shmlane::{ByteRecvError, Deadline};

/// Receives from `ch` until `done` and the channel is quiet: the numbers received, in order.
fn collect(ch: &shmlane::Channel<u8>, done: &AtomicBool) -> Vec<u64> {
    let mut rx = ch.byte_receiver().unwrap();
    let mut buf = vec![0u8; 256];
    let mut got = Vec::new();
    loop {
        match rx.recv(&mut buf, Some(Deadline::after(Duration::from_millis(500)))) {
            Ok(n) => got.push(check(&buf[..n]).expect("torn message")),
            Err(ByteRecvError::Timeout) if done.load(Ordering::Relaxed) => return got,
            // The importing bridge (this channel's sender) crashed: it comes back.
            Err(ByteRecvError::Timeout | ByteRecvError::PeerDied) => {}
            Err(e) => panic!("{e}"),
        }
    }
}

/// Messages missing from `got` (in order, no duplicates) between its first and `last`.
fn missing(got: &[u64], last: u64) -> u64 {
    assert!(
        got.windows(2).all(|w| w[0] < w[1]),
        "duplicated or reordered"
    );
    (last + 1 - got[0]) - got.len() as u64
}

#[test]
fn killed_bridges_report_their_gaps_and_late_joiners_start_where_they_join() {
    let (src, chs) = Chan::broadcast("br-rs-src", 1 << 14, 64);
    let (dst, chd) = Chan::bytes("br-rs-dst", 1 << 20);
    let (late, chl) = Chan::bytes("br-rs-late", 1 << 20);
    let ep = format!("tcp/127.0.0.1:{}", free_port());
    let key = format!("shmlane-test/{}/restart", std::process::id());
    let export = format!("{}={key}", src.0);
    let import = format!("{key}={}", dst.0);
    let a_args = ["--id", "A", "--listen", &ep, "--export", &export];
    let b_args = ["--id", "B", "--connect", &ep, "--import", &import];
    let mut a = Some(BridgeProc::start("A", &a_args));
    let mut b = Some(BridgeProc::start("B", &b_args));
    // B follows A's stream before anything is published (a heartbeat arrived).
    assert_ne!(
        dst.wait_stats(Duration::from_secs(20), |s| s.origin != 0)
            .origin,
        0
    );
    let published = AtomicU64::new(0);
    let (stop, done) = (AtomicBool::new(false), AtomicBool::new(false));
    let (got, got_late, late_proc) = std::thread::scope(|s| {
        // The publisher: message i is the channel's message i, about 20,000 a second.
        s.spawn(|| {
            let mut p = chs.publisher().unwrap();
            let mut m = Vec::new();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                message(i, 40, &mut m);
                p.send(&m).unwrap();
                i += 1;
                published.store(i, Ordering::Relaxed);
                let t = Instant::now();
                while t.elapsed() < Duration::from_micros(50) {
                    std::hint::spin_loop();
                }
            }
        });
        let rx = s.spawn(|| collect(&chd, &done));
        let rx_late = s.spawn(|| collect(&chl, &done));
        let pause = |ms| std::thread::sleep(Duration::from_millis(ms));
        pause(400);
        // The exporting host's bridge crashes; the stream goes on without it for a while.
        a.take().unwrap().kill();
        pause(300);
        a = Some(BridgeProc::start("A", &a_args));
        pause(600);
        // A bridge joins late, into another channel.
        let late_import = format!("{key}={}", late.0);
        let late_proc = BridgeProc::start(
            "C",
            &["--id", "C", "--connect", &ep, "--import", &late_import],
        );
        pause(400);
        // The importing host's bridge crashes; it resumes from its companion.
        b.take().unwrap().kill();
        pause(300);
        b = Some(BridgeProc::start("B", &b_args));
        pause(600);
        stop.store(true, Ordering::Relaxed);
        // The last heartbeats carry the end of the stream.
        pause(500);
        done.store(true, Ordering::Relaxed);
        (rx.join().unwrap(), rx_late.join().unwrap(), late_proc)
    });
    let last = published.load(Ordering::Relaxed) - 1;
    let st = dst.wait_stats(Duration::from_secs(5), |s| s.import_next == last + 1);
    let miss = missing(&got, last);
    eprintln!(
        "published {} ; B received {} from {}, missing {miss}, counted lost {}; {st:?}",
        last + 1,
        got.len(),
        got[0],
        st.lost
    );
    assert_eq!(got[0], 0, "B was there from the start");
    assert_eq!(
        st.import_next,
        last + 1,
        "B saw the end of the stream: {st:?}"
    );
    // Two crashes, each with messages published meanwhile: a real gap each.
    assert!(miss > 1000, "{miss} missing: the crashes lost nothing?");
    // Never hidden; a bridge killed between delivering a message and recording it counts that
    // one as lost too (at most one per crash of the importing bridge).
    assert!(
        st.lost >= miss && st.lost <= miss + 1,
        "counted {} lost, {miss} missing",
        st.lost
    );
    assert_eq!((st.duplicates, st.malformed, st.dropped_full), (0, 0, 0));
    // The late joiner: from when it joined, its own gaps only (A's crash was before it).
    let sl = late.stats().unwrap();
    assert!(got_late[0] > 1000, "late joiner started at {}", got_late[0]);
    assert_eq!(sl.lost, missing(&got_late, last), "{sl:?}");
    for p in [a, b, Some(late_proc)].into_iter().flatten() {
        let (code, err) = p.stop();
        assert_eq!(code, 0, "{err}");
    }
}

/// A byte channel's exporting bridge takes each message out of the ring: killed between taking
/// one and publishing it, that message is gone. Its restart numbers on from the companion (one
/// further when it was taking), so the importer counts the loss: never hidden, over by at most
/// one per crash.
#[test]
fn a_killed_byte_exporter_never_hides_the_message_it_held() {
    let (src, chs) = Chan::bytes("br-rb-src", 1 << 20);
    let (dst, chd) = Chan::bytes("br-rb-dst", 1 << 20);
    let ep = format!("tcp/127.0.0.1:{}", free_port());
    let key = format!("shmlane-test/{}/restart-bytes", std::process::id());
    let export = format!("{}={key}", src.0);
    let import = format!("{key}={}", dst.0);
    let a_args = ["--id", "A", "--listen", &ep, "--export", &export];
    let mut a = Some(BridgeProc::start("A", &a_args));
    let b = BridgeProc::start("B", &["--id", "B", "--connect", &ep, "--import", &import]);
    assert_ne!(
        dst.wait_stats(Duration::from_secs(20), |s| s.origin != 0)
            .origin,
        0
    );
    let sent = AtomicU64::new(0);
    let (stop, done) = (AtomicBool::new(false), AtomicBool::new(false));
    let got = std::thread::scope(|s| {
        s.spawn(|| {
            let mut tx = chs.byte_sender().unwrap();
            let mut m = Vec::new();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                message(i, 40, &mut m);
                tx.send(&m, Some(Deadline::after(Duration::from_secs(30))))
                    .unwrap();
                i += 1;
                sent.store(i, Ordering::Relaxed);
                let t = Instant::now();
                while t.elapsed() < Duration::from_micros(50) {
                    std::hint::spin_loop();
                }
            }
        });
        let rx = s.spawn(|| collect(&chd, &done));
        for _ in 0..3 {
            std::thread::sleep(Duration::from_millis(300));
            a.take().unwrap().kill();
            std::thread::sleep(Duration::from_millis(100));
            a = Some(BridgeProc::start("A", &a_args));
        }
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(500));
        done.store(true, Ordering::Relaxed);
        rx.join().unwrap()
    });
    let last = sent.load(Ordering::Relaxed) - 1;
    let st = dst.wait_stats(Duration::from_secs(5), |s| s.import_next > 0);
    // The ring kept what the dead bridge had not taken: everything but what it held.
    let miss = missing(&got, last);
    eprintln!(
        "sent {}, received {}, missing {miss}, counted lost {}",
        last + 1,
        got.len(),
        st.lost
    );
    assert_eq!(got[0], 0);
    assert_eq!(*got.last().unwrap(), last, "the end arrived");
    assert!(
        st.lost >= miss && st.lost <= miss + 3,
        "counted {} lost, {miss} missing (3 crashes)",
        st.lost
    );
    assert_eq!(st.duplicates, 0);
    let _ = (a.map(BridgeProc::stop), b.stop());
}

/// A byte channel's exporting bridge stuck publishing (`block`: the importer's channel is full,
/// so Zenoh's link is full and the put waits) holds a message it took: killed there, the
/// message is gone, and the restart's numbers go on past it, so the importer counts it (and
/// whatever Zenoh's queue held) as lost: never hidden.
#[test]
fn an_exporter_killed_while_its_publish_waits_has_its_message_counted_lost() {
    let (src, chs) = Chan::bytes("br-rh-src", 1 << 20);
    let (dst, chd) = Chan::bytes("br-rh-dst", 4096);
    let ep = format!("tcp/127.0.0.1:{}", free_port());
    let key = format!("shmlane-test/{}/restart-held", std::process::id());
    let export = format!("{}={key}", src.0);
    let import = format!("{key}={}", dst.0);
    let a_args = ["--id", "A", "--listen", &ep, "--export", &export];
    let a = BridgeProc::start("A", &a_args);
    let b = BridgeProc::start("B", &["--id", "B", "--connect", &ep, "--import", &import]);
    assert_ne!(
        dst.wait_stats(Duration::from_secs(20), |s| s.origin != 0)
            .origin,
        0
    );
    // Sent until everything is full: nobody reads B's channel, so it fills, B's import waits,
    // the link fills, A's put waits with a message in hand, A's ring fills.
    let mut tx = chs.byte_sender().unwrap();
    let mut m = Vec::new();
    let mut n = 0u64;
    loop {
        message(n, 200, &mut m);
        match tx.send(&m, Some(Deadline::after(Duration::from_secs(2)))) {
            Ok(()) => n += 1,
            Err(shmlane::ByteSendError::Timeout) => break,
            Err(e) => panic!("{e}"),
        }
    }
    let before = src.stats().unwrap();
    assert!(before.exported < n, "A published everything: {before:?}");
    a.kill();
    let a = BridgeProc::start("A", &a_args);
    let done = AtomicBool::new(false);
    let got = std::thread::scope(|s| {
        let rx = s.spawn(|| collect(&chd, &done));
        // Until the restarted A sent the rest.
        src.wait_stats(Duration::from_secs(20), |s| s.export_next >= n);
        std::thread::sleep(Duration::from_secs(1));
        done.store(true, Ordering::Relaxed);
        rx.join().unwrap()
    });
    let st = dst.wait_stats(Duration::from_secs(5), |s| s.import_next > 0);
    let miss = missing(&got, n - 1);
    eprintln!(
        "sent {n}, received {}, missing {miss}, counted lost {}; {st:?}",
        got.len(),
        st.lost
    );
    assert_eq!(got[0], 0);
    assert_eq!(*got.last().unwrap(), n - 1, "the end arrived");
    assert!(miss >= 1, "the message A held arrived?");
    assert!(
        st.lost >= miss && st.lost <= miss + 1,
        "counted {} lost, {miss} missing",
        st.lost
    );
    assert_eq!((st.duplicates, st.dropped_full), (0, 0));
    let _ = (a.stop(), b.stop());
}
