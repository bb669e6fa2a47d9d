//! SPSC channel scenarios: consumers killed, processes killed in futex waits, a frozen
//! producer, futex words at their wrap.

use std::{
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use nix::sys::signal::{Signal, kill};
use shmlane::{Deadline, RecvError, SendError, TryRecvError, WaitStrategy};
use shmlane_segment::Segment;

use crate::{
    proc::{CTL_FIRST_ID, Ctl, Remove, Rng, expect_line, pid, sigkill, spawn},
    summary::Summary,
};

// ---------------------------------------------------------------- consumers

pub(crate) fn consumers(tag: &str, n: u64, rng: &mut Rng, sum: &mut Summary) {
    let chan = format!("{tag}-cons");
    let ctl_name = format!("{tag}-cons-ctl");
    let _rm = Remove(vec![chan.clone(), ctl_name.clone()]);
    let ctl = Ctl::create(&ctl_name);
    let total: u64 = 1_000_000;
    let ch = shmlane::spsc::<u64>(&chan)
        .capacity(1024)
        .create()
        .expect("create the SPSC channel");
    let mut tx = ch.producer().expect("producer");
    let producing = std::thread::spawn(move || {
        for v in 0..total {
            let mut v = v;
            loop {
                match tx.send(v, Some(Deadline::after(Duration::from_secs(60)))) {
                    Ok(()) => break,
                    // The consumer died: wait for its successor and send the value again.
                    Err(SendError::PeerDied(back) | SendError::Disconnected(back)) => {
                        v = back;
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err(e) => panic!("send: {e}"),
                }
            }
        }
    });
    for _ in 0..n {
        let mut c = spawn("spsc-consumer", &[&chan, &ctl_name, &total.to_string()]);
        std::thread::sleep(Duration::from_micros(2000 + rng.below(30_000)));
        sigkill(&mut c);
    }
    let mut last = spawn("spsc-consumer", &[&chan, &ctl_name, &total.to_string()]);
    let ok = last.wait().is_ok_and(|s| s.success());
    producing.join().expect("producer thread");
    if !ok {
        sum.fail("consumers: the last consumer failed".to_owned());
    }
    let missing = ctl.unmarked(total);
    // ORDERING: Relaxed; the consumers have exited.
    let dup = ctl.word(CTL_FIRST_ID).load(Ordering::Relaxed);
    if missing > 0 {
        sum.fail(format!(
            "consumers: {missing} of {total} values never processed"
        ));
    }
    sum.kills_consumer += n;
    sum.sent += total;
    sum.received += total - missing;
    sum.lost += missing;
    sum.duplicates += dup;
    sum.lines.push(format!(
        "consumers: {n} consumers killed, each successor took the role over: {total} values, {missing} missing, {dup} processed twice"
    ));
}

pub(crate) fn spsc_consumer(args: &[String]) {
    let ctl = Ctl::open(&args[1]);
    let total: u64 = args[2].parse().unwrap();
    let ch = shmlane::spsc::<u64>(&args[0]).open().expect("open");
    // The previous consumer may still be dying: its role is taken over once it is dead.
    let t0 = Instant::now();
    let mut rx = loop {
        match ch.consumer() {
            Ok(rx) => break rx,
            Err(e) if t0.elapsed() > Duration::from_secs(10) => panic!("consumer: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(1)),
        }
    };
    loop {
        let v = match rx.read_chunk(1) {
            Ok(chunk) => {
                let v = chunk.as_slices().0[0];
                // Process (mark), then commit: a kill in between delivers it again.
                if ctl.mark(v) {
                    // ORDERING: Relaxed; a count read after every consumer exited.
                    ctl.word(CTL_FIRST_ID).fetch_add(1, Ordering::Relaxed);
                }
                chunk.commit_all();
                rx.notify(1);
                v
            }
            Err(_) => {
                // Empty. Once the producer has left and the ring is drained, stop (earlier
                // consumers may have processed the last values already).
                match rx.try_recv() {
                    Ok(v) => {
                        ctl.mark(v);
                        v
                    }
                    Err(TryRecvError::Disconnected) => return,
                    Err(_) => {
                        std::thread::sleep(Duration::from_micros(20));
                        continue;
                    }
                }
            }
        };
        if v == total - 1 {
            return;
        }
    }
}

// ---------------------------------------------------------------- futex

pub(crate) fn futex(tag: &str, n: u64, sum: &mut Summary) {
    let park = WaitStrategy::SpinThenPark {
        spins: 100,
        yields: 2,
    };
    for i in 0..n {
        let chan = format!("{tag}-futex-{i}");
        let _rm = Remove(vec![chan.clone()]);
        let ch = shmlane::spsc::<u64>(&chan)
            .capacity(64)
            .wait(park)
            .create()
            .expect("create");
        if i % 2 == 0 {
            // A producer parked on a full ring is killed; the consumer drains, then PeerDied.
            let mut rx = ch.consumer().expect("consumer");
            let mut c = spawn("spsc-fill", &[&chan]);
            let t0 = Instant::now();
            while rx.len() < 64 && t0.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(1));
            }
            std::thread::sleep(Duration::from_millis(20));
            let at = Instant::now();
            sigkill(&mut c);
            let mut got = 0u64;
            let end = loop {
                match rx.recv(Some(Deadline::after(Duration::from_secs(10)))) {
                    Ok(v) => {
                        if v != got {
                            sum.fail(format!("futex: value {v} where {got} was due"));
                        }
                        got += 1;
                    }
                    Err(e) => break e,
                }
            };
            if end == RecvError::PeerDied && got == 64 {
                sum.detect.push(at.elapsed().as_micros() as u64);
            } else {
                sum.fail(format!(
                    "futex: consumer ended with {end} after {got} of 64"
                ));
            }
            sum.sent += 64;
            sum.received += got;
        } else {
            // A consumer parked on an empty ring is killed; the producer, blocked on the full
            // ring, learns it.
            let mut tx = ch.producer().expect("producer");
            let mut c = spawn("spsc-wait", &[&chan]);
            if !expect_line(&mut c, "waiting") {
                sum.fail("futex: the waiting consumer did not start".to_owned());
            }
            std::thread::sleep(Duration::from_millis(20));
            let at = Instant::now();
            sigkill(&mut c);
            let mut end = None;
            for v in 0..1000u64 {
                if let Err(e) = tx.send(v, Some(Deadline::after(Duration::from_secs(10)))) {
                    end = Some(e);
                    break;
                }
            }
            if matches!(end, Some(SendError::PeerDied(_))) {
                sum.detect.push(at.elapsed().as_micros() as u64);
            } else {
                sum.fail(format!("futex: producer ended with {end:?}"));
            }
        }
        sum.kills_futex += 1;
    }
    sum.lines.push(format!(
        "futex: {n} processes killed inside a futex wait (producers on a full ring, consumers on an empty one); every survivor got PeerDied after the data"
    ));
}

// ---------------------------------------------------------------- stop

pub(crate) fn stop(tag: &str, secs: u64, sum: &mut Summary) {
    let chan = format!("{tag}-stop");
    let _rm = Remove(vec![chan.clone()]);
    let ch = shmlane::spsc::<u64>(&chan)
        .capacity(1024)
        .create()
        .expect("create");
    let mut rx = ch.consumer().expect("consumer");
    let n = 1000u64;
    let mut c = spawn("spsc-paced", &[&chan, &n.to_string()]);
    let mut stopped_for = Duration::ZERO;
    let mut want = 0u64;
    let mut stopped = false;
    while want < n {
        match rx.recv(Some(Deadline::after(Duration::from_secs(secs + 30)))) {
            Ok(v) if v == want => want += 1,
            other => {
                sum.fail(format!("stop: got {other:?} where {want} was due"));
                break;
            }
        }
        if want == 200 && !stopped {
            stopped = true;
            let _ = kill(pid(&c), Signal::SIGSTOP);
            // What was sent before the stop landed arrives; then nothing, and the frozen
            // producer must not look dead to a consumer waiting on the empty ring.
            std::thread::sleep(Duration::from_millis(50));
            loop {
                match rx.try_recv() {
                    Ok(v) if v == want => want += 1,
                    Err(TryRecvError::Empty) => break,
                    other => {
                        sum.fail(format!("stop: got {other:?} where {want} was due"));
                        break;
                    }
                }
            }
            let t = Instant::now();
            match rx.recv(Some(Deadline::after(Duration::from_secs(secs)))) {
                Err(RecvError::Timeout) => {}
                other => sum.fail(format!("stop: a frozen producer gave {other:?}")),
            }
            stopped_for = t.elapsed();
            let _ = kill(pid(&c), Signal::SIGCONT);
        }
    }
    let ok = c.wait().is_ok_and(|s| s.success());
    if !ok {
        sum.fail("stop: the producer failed".to_owned());
    }
    sum.stops += 1;
    sum.sent += n;
    sum.received += n;
    sum.lines.push(format!(
        "stop: a producer SIGSTOPped for {:.1} s was never declared dead; all {n} messages in order",
        stopped_for.as_secs_f64()
    ));
}
// ---------------------------------------------------------------- wrap

/// Sets the futex sequence words of a channel's two events just below `u32::MAX`.
pub(crate) fn near_wrap(chan: &str) {
    let seg = Segment::posix(chan).open().expect("open");
    for ev in ["ev-data", "ev-space"] {
        let r = seg.find_region(ev).expect("event region");
        // SAFETY: offset 4 of an event region is its u32 sequence word (shmlane-wake layout),
        // aligned, inside the region, accessed only atomically.
        #[allow(clippy::cast_ptr_alignment)]
        let seq = unsafe { &*r.as_ptr().add(4).cast::<std::sync::atomic::AtomicU32>() };
        // ORDERING: Relaxed; nobody waits on the channel yet.
        seq.store(u32::MAX - 100, Ordering::Relaxed);
    }
}

pub(crate) fn seq_word(chan: &str, ev: &str) -> u32 {
    let seg = Segment::posix(chan).open().expect("open");
    let r = seg.find_region(ev).expect("event region");
    // SAFETY: as in `near_wrap`.
    #[allow(clippy::cast_ptr_alignment)]
    let seq = unsafe { &*r.as_ptr().add(4).cast::<std::sync::atomic::AtomicU32>() };
    // ORDERING: Relaxed; informational.
    seq.load(Ordering::Relaxed)
}

pub(crate) fn wrap(tag: &str, sum: &mut Summary) {
    let (a, b) = (format!("{tag}-wrap-a"), format!("{tag}-wrap-b"));
    let _rm = Remove(vec![a.clone(), b.clone()]);
    let park = WaitStrategy::Park;
    let cha = shmlane::spsc::<u64>(&a).wait(park).create().expect("a");
    let chb = shmlane::spsc::<u64>(&b).wait(park).create().expect("b");
    near_wrap(&a);
    near_wrap(&b);
    let mut tx = cha.producer().expect("producer");
    let mut rx = chb.consumer().expect("consumer");
    let n = 400u64;
    let mut c = spawn("echo", &[&a, &b]);
    for v in 0..n {
        let d = || Some(Deadline::after(Duration::from_secs(10)));
        let back = tx.send(v, d()).ok().and_then(|()| rx.recv(d()).ok());
        if back != Some(v) {
            sum.fail(format!(
                "wrap: round trip {v} gave {back:?} (a lost wake-up?)"
            ));
            break;
        }
    }
    drop(tx);
    let _ = c.wait();
    let (sa, sb) = (seq_word(&a, "ev-data"), seq_word(&b, "ev-data"));
    if sa > 1_000_000 && sb > 1_000_000 {
        sum.fail(format!("wrap: the futex words did not wrap ({sa}, {sb})"));
    }
    sum.sent += 2 * n;
    sum.received += 2 * n;
    sum.lines.push(format!(
        "wrap: {n} parked round trips with the futex words started 100 below u32::MAX (now {sa} and {sb}): no lost wake-up"
    ));
}
