//! SPSC channel scenarios: consumers killed, processes killed in futex waits, a frozen
//! producer, futex words at their wrap.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use nix::sys::signal::{Signal, kill};
use shmlane::{Deadline, RecvError, SendError, TryRecvError, WaitStrategy};
use shmlane_segment::Segment;

use crate::{
    msg::{check_typed, typed},
    proc::{
        CTL_FIRST_ID, CTL_KILL_AT, Ctl, Remove, Rng, die, expect_line, get, mono_ns, pid, set,
        sigkill, spawn,
    },
    summary::{K, Summary},
};

// ---------------------------------------------------------------- consumers

pub(crate) fn consumers(tag: &str, n: u64, rng: &mut Rng, sum: &mut Summary) {
    let chan = format!("{tag}-cons");
    let ctl_name = format!("{tag}-cons-ctl");
    let _rm = Remove(vec![chan.clone(), ctl_name.clone()]);
    let ctl = Ctl::create(&ctl_name);
    let ch = shmlane::spsc::<u64>(&chan)
        .when_peers_leave(shmlane::PeersLeave::Disconnect)
        .capacity(1024)
        .create()
        .expect("create the SPSC channel");
    let mut tx = ch.producer().expect("producer");
    // The producer sends, paced, until every generation has run (so every one has values to
    // take), then its count is the total the last consumer drains to.
    let stop = Arc::new(AtomicBool::new(false));
    let producing = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut sent = 0u64;
            'values: for v in 0..crate::proc::SEEN_BITS {
                let mut v = v;
                loop {
                    // ORDERING: Acquire; pairs with the Release store after the last generation.
                    if stop.load(Ordering::Acquire) {
                        break 'values;
                    }
                    match tx.send(v, Some(Deadline::after(Duration::from_millis(100)))) {
                        Ok(()) => break,
                        // The consumer died: wait for its successor and send the value again.
                        Err(
                            SendError::PeerDied(back)
                            | SendError::Disconnected(back)
                            | SendError::Timeout(back),
                        ) => {
                            v = back;
                            std::thread::sleep(Duration::from_millis(1));
                        }
                        Err(e) => panic!("send: {e}"),
                    }
                }
                sent = v + 1;
                if sent % 1024 == 0 {
                    std::thread::sleep(Duration::from_micros(500));
                }
            }
            // Kept until the last consumer has seen it: a consumer that never saw a producer
            // waits for one (the lifecycle), so a last consumer that attached after the
            // producer left and found every value taken never ended (the run hung).
            (sent, tx)
        })
    };
    let unbounded = u64::MAX.to_string();
    let (mut fixed, mut idle) = (0u64, 0u64);
    for g in 0..n {
        if g % 4 == 3 {
            // Kills itself after processing a value, before committing it: its successor
            // processes that value again (exactly one more delivered twice).
            let after = rng.below(5_000).to_string();
            let mut c = spawn("spsc-consumer", &[&chan, &ctl_name, &unbounded, &after]);
            // Counted only if it got there (late generations may find every value taken:
            // then it ends cleanly without a kill).
            // Bounded: a generation that neither reaches its kill nor ends is a failure.
            match crate::proc::wait_status_or_kill(&mut c, 60) {
                Some(st) if std::os::unix::process::ExitStatusExt::signal(&st) == Some(9) => {
                    fixed += 1;
                }
                Some(_) => idle += 1,
                None => {
                    sum.fail(format!(
                        "consumers: generation {g} neither killed itself nor ended in 60 s"
                    ));
                }
            }
            continue;
        }
        let mut c = spawn("spsc-consumer", &[&chan, &ctl_name, &unbounded]);
        std::thread::sleep(Duration::from_micros(2000 + rng.below(30_000)));
        sigkill(&mut c);
    }
    // ORDERING: Release; pairs with the producer's Acquire load.
    stop.store(true, Ordering::Release);
    let (total, tx) = producing.join().expect("producer thread");
    let mut last = spawn("spsc-consumer", &[&chan, &ctl_name, &total.to_string()]);
    crate::proc::wait_attached(&chan, last.id(), shmlane::ROLE_RECEIVER);
    drop(tx);
    if crate::proc::wait_or_kill(&mut last, 60) != Ok(true) {
        sum.fail("consumers: the last consumer failed or did not end".to_owned());
    }
    let missing = ctl.unmarked(total);
    // ORDERING: Relaxed; the consumers have exited.
    let dup = ctl.word(CTL_FIRST_ID).load(Ordering::Relaxed);
    if missing > 0 {
        sum.fail(format!(
            "consumers: {missing} of {total} values never processed"
        ));
    }
    // Each consumer killed between processing and committing makes one value processed twice:
    // every self-killed one, and some killed at random.
    if dup < fixed || dup > n {
        sum.fail(format!(
            "consumers: {dup} values processed twice, with {fixed} consumers killed between processing and committing and {n} killed in all"
        ));
    }
    sum.killed(K::Spsc, "consumers at random", n - fixed - idle);
    sum.killed(K::Spsc, "consumers after-process", fixed);
    let t = sum.k(K::Spsc);
    t.sent += total;
    t.received += total - missing;
    t.missing += missing;
    t.duplicates += dup;
    sum.lines.push(format!(
        "consumers: {} SPSC consumers killed ({fixed} between processing and committing; {idle} more found every value taken), each successor took the role over: {total} values, {missing} missing, {dup} processed twice (at-least-once)",
        n - idle
    ));
}

pub(crate) fn spsc_consumer(args: &[String]) {
    let ctl = Ctl::open(&args[1]);
    let total: u64 = args[2].parse().unwrap();
    let die_after: Option<u64> = args.get(3).map(|a| a.parse().unwrap());
    let mut processed = 0u64;
    // A successor of a killed consumer: it resumes the dead one's unread values on purpose
    // (else, with the producer gone, the channel is stale and refused).
    let ch = shmlane::spsc::<u64>(&args[0])
        .when_peers_leave(shmlane::PeersLeave::Disconnect)
        .resume(true)
        .open()
        .expect("open");
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
                let v = chunk.get(0);
                // Process (mark), then commit: a kill in between delivers it again.
                if ctl.mark(v) {
                    // ORDERING: Relaxed; a count read after every consumer exited.
                    ctl.word(CTL_FIRST_ID).fetch_add(1, Ordering::Relaxed);
                }
                processed += 1;
                if die_after.is_some_and(|k| processed > k) {
                    die(&ctl);
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
        if v.checked_add(1) == Some(total) {
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
            .when_peers_leave(shmlane::PeersLeave::Disconnect)
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
                sum.k(K::Spsc).detect.push(at.elapsed().as_micros() as u64);
            } else {
                sum.fail(format!(
                    "futex: consumer ended with {end} after {got} of 64"
                ));
            }
            sum.k(K::Spsc).sent += 64;
            sum.k(K::Spsc).received += got;
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
                sum.k(K::Spsc).detect.push(at.elapsed().as_micros() as u64);
            } else {
                sum.fail(format!("futex: producer ended with {end:?}"));
            }
        }
        sum.killed(
            K::Spsc,
            if i % 2 == 0 {
                "producers in a futex wait"
            } else {
                "consumers in a futex wait"
            },
            1,
        );
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
        .when_peers_leave(shmlane::PeersLeave::Disconnect)
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
    let t = sum.k(K::Spsc);
    t.stops += 1;
    t.sent += n;
    t.received += n;
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
    let cha = shmlane::spsc::<u64>(&a)
        .when_peers_leave(shmlane::PeersLeave::Disconnect)
        .wait(park)
        .create()
        .expect("a");
    let chb = shmlane::spsc::<u64>(&b)
        .when_peers_leave(shmlane::PeersLeave::Disconnect)
        .wait(park)
        .create()
        .expect("b");
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
    sum.k(K::Other).sent += 2 * n;
    sum.k(K::Other).received += 2 * n;
    sum.lines.push(format!(
        "wrap: {n} parked round trips with the futex words started 100 below u32::MAX (now {sa} and {sb}): no lost wake-up"
    ));
}

// ---------------------------------------------------------------- producers killed

/// Where an SPSC producer kills itself: with a chunk of 4 slots reserved and 2 written, not
/// committed; or right after committing a chunk, before counting it.
const SPSC_FIXED: [&str; 2] = ["mid-chunk", "after-commit"];

/// SPSC producers SIGKILLed at random moments and at fixed points of the chunk protocol, one
/// generation at a time (each takes the role over from the dead one); the consumer (this
/// process) must get `PeerDied` after each death, and every committed message once, in order.
pub(crate) fn producers(tag: &str, n: u64, rng: &mut Rng, sum: &mut Summary) {
    let chan = format!("{tag}-spsc-kills");
    let ctl_name = format!("{tag}-spsc-kills-ctl");
    let _rm = Remove(vec![chan.clone(), ctl_name.clone()]);
    let ctl = Ctl::create(&ctl_name);
    let ch = shmlane::spsc::<[u64; 4]>(&chan)
        .when_peers_leave(shmlane::PeersLeave::Disconnect)
        .capacity(1024)
        .create()
        .expect("create the SPSC channel");
    let mut rx = ch.consumer().expect("consumer");
    let done = Arc::new(AtomicBool::new(false));
    let died = Arc::new(AtomicU64::new(0));
    let fixed_counts = Arc::new(Mutex::new([0u64; 2]));
    let killer = {
        let (chan, ctl_name, done, died, fixed_counts) = (
            chan.clone(),
            ctl_name.clone(),
            done.clone(),
            died.clone(),
            fixed_counts.clone(),
        );
        let mut rng = Rng(rng.next() | 1);
        std::thread::spawn(move || {
            let ctl = Ctl::open(&ctl_name);
            let (mut late, mut unattached) = (Vec::new(), Vec::new());
            for g in 0..n {
                let id = (g + 1).to_string();
                let fixed = (g % 4 == 3).then_some(((g / 4) % 2) as usize);
                let at = fixed.map_or("none", |f| SPSC_FIXED[f]);
                let after = rng.below(2000).to_string();
                let mut c = spawn("spsc-producer", &[&chan, &ctl_name, &id, at, &after]);
                if let Some(f) = fixed {
                    let _ = c.wait();
                    fixed_counts.lock().unwrap()[f] += 1;
                } else {
                    // Killed only once it holds the role: a process killed before it attached
                    // is no peer the consumer can have seen die (on a loaded machine a random
                    // kill 0.5-15 ms after the spawn could land before the attach, and CI
                    // reported "no PeerDied" for that generation).
                    if !expect_line(&mut c, "producing") {
                        unattached.push(g + 1);
                    }
                    std::thread::sleep(Duration::from_micros(500 + rng.below(15_000)));
                    set(&ctl, CTL_KILL_AT, mono_ns());
                    sigkill(&mut c);
                }
                // The consumer must learn of the death (PeerDied) before the next generation
                // takes the role over.
                let t0 = Instant::now();
                // ORDERING: Acquire; pairs with the consumer's Release increment.
                while died.load(Ordering::Acquire) <= g && t0.elapsed() < Duration::from_secs(5) {
                    std::thread::sleep(Duration::from_micros(200));
                }
                if died.load(Ordering::Acquire) <= g {
                    late.push(g + 1);
                    // ORDERING: Release; as above (the consumer's count stays in step).
                    died.store(g + 1, Ordering::Release);
                }
            }
            done.store(true, Ordering::Release);
            (late, unattached)
        })
    };
    let mut next: HashMap<u64, u64> = HashMap::new();
    let (mut received, mut corrupt, mut missing) = (0u64, 0u64, 0u64);
    loop {
        match rx.recv(Some(Deadline::after(Duration::from_millis(200)))) {
            Ok(v) => match check_typed(v) {
                Some((id, seq)) => {
                    let want = next.entry(id).or_insert(0);
                    if seq != *want {
                        if seq > *want {
                            missing += seq - *want;
                        } else {
                            corrupt += 1;
                        }
                        sum.fail(format!(
                            "spsc kills: producer {id} message {seq} arrived when {want} was due"
                        ));
                    }
                    *want = seq + 1;
                    received += 1;
                }
                None => {
                    corrupt += 1;
                    sum.fail(format!("spsc kills: a torn or corrupt message {v:x?}"));
                }
            },
            Err(RecvError::PeerDied) => {
                let at = get(&ctl, CTL_KILL_AT);
                if at != 0 {
                    sum.k(K::Spsc)
                        .detect
                        .push(mono_ns().saturating_sub(at) / 1000);
                    set(&ctl, CTL_KILL_AT, 0);
                    // ORDERING: Release; pairs with the killer's Acquire load.
                    died.fetch_add(1, Ordering::Release);
                }
                if done.load(Ordering::Acquire) {
                    break;
                }
            }
            Err(RecvError::Timeout) => {
                if done.load(Ordering::Acquire) {
                    break;
                }
            }
            Err(e) => {
                sum.fail(format!("spsc kills: receive failed: {e}"));
                break;
            }
        }
    }
    let (late, unattached) = killer.join().expect("killer thread");
    if !unattached.is_empty() {
        sum.fail(format!(
            "spsc kills: producer generations {unattached:?} never reported holding the role"
        ));
    }
    if !late.is_empty() {
        sum.fail(format!(
            "spsc kills: no PeerDied within 5 s of the death of producer generations {late:?}"
        ));
    }
    let fixed = *fixed_counts.lock().unwrap();
    let mut sent = 0;
    for g in 0..n {
        let id = g + 1;
        let committed = get(&ctl, CTL_FIRST_ID + id as usize);
        let delivered = next.get(&id).copied().unwrap_or(0);
        // A random kill between a commit and its count leaves one more delivered than counted;
        // a kill mid-chunk delivers none of the chunk; after the commit, all of it.
        let ok = match (g % 4 == 3).then_some((g / 4) % 2) {
            Some(0) => delivered == committed,
            Some(_) => delivered == committed + 1,
            None => delivered == committed || delivered == committed + 1,
        };
        if !ok {
            missing += committed.saturating_sub(delivered);
            sum.fail(format!(
                "spsc kills: producer {id} committed {committed} messages, {delivered} delivered"
            ));
        }
        sent += delivered.max(committed);
    }
    sum.killed(
        K::Spsc,
        "producers at random",
        n - fixed.iter().sum::<u64>(),
    );
    for (f, k) in SPSC_FIXED.iter().zip(fixed) {
        sum.killed(K::Spsc, &format!("producers {f}"), k);
    }
    let t = sum.k(K::Spsc);
    t.sent += sent;
    t.received += received;
    t.corrupt += corrupt;
    t.missing += missing;
    sum.lines.push(format!(
        "spsc kills: {n} producer generations, each taking the role over from the dead one: {received} messages checked, PeerDied after every death"
    ));
}

pub(crate) fn spsc_producer(args: &[String]) {
    let (chan, ctl_name, id, at, after) = (
        &args[0],
        &args[1],
        args[2].parse::<u64>().unwrap(),
        args[3].as_str(),
        args[4].parse::<u64>().unwrap(),
    );
    let ctl = Ctl::open(ctl_name);
    let ch = shmlane::spsc::<[u64; 4]>(chan)
        .when_peers_leave(shmlane::PeersLeave::Disconnect)
        .open()
        .expect("open");
    // The previous producer was killed: its role is taken over once it is seen dead.
    let t0 = Instant::now();
    let mut tx = loop {
        match ch.producer() {
            Ok(tx) => break tx,
            Err(e) if t0.elapsed() > Duration::from_secs(10) => panic!("producer: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(1)),
        }
    };
    println!("producing");
    let _ = std::io::Write::flush(&mut std::io::stdout());
    let counter = ctl.word(CTL_FIRST_ID + id as usize);
    for seq in 0.. {
        if at != "none" && seq == after {
            let mut chunk = loop {
                match tx.write_chunk(4) {
                    Ok(c) => break c,
                    Err(_) => std::thread::sleep(Duration::from_micros(50)),
                }
            };
            if at == "mid-chunk" {
                chunk.write(0, typed(id, seq));
                chunk.write(1, typed(id, seq + 1));
                die(&ctl);
            }
            for i in 0..4 {
                chunk.write(i, typed(id, seq + i as u64));
            }
            chunk.commit(1);
            tx.notify(1);
            die(&ctl);
        }
        match tx.send(
            typed(id, seq),
            Some(Deadline::after(Duration::from_secs(30))),
        ) {
            Ok(()) => {}
            Err(SendError::PeerDied(_) | SendError::Disconnected(_)) => return,
            Err(e) => panic!("send: {e}"),
        }
        // ORDERING: Relaxed; read by the parent after this process ended.
        counter.store(seq + 1, Ordering::Relaxed);
    }
}

// ---------------------------------------------------------------- soak

/// A producer process and this process as consumer for `secs`: every message checked, in order.
pub(crate) fn soak(tag: &str, secs: u64, sum: &mut Summary) {
    let chan = format!("{tag}-spsc-soak");
    let ctl_name = format!("{tag}-spsc-soak-ctl");
    let _rm = Remove(vec![chan.clone(), ctl_name.clone()]);
    let ctl = Ctl::create(&ctl_name);
    let ch = shmlane::spsc::<[u64; 4]>(&chan)
        .when_peers_leave(shmlane::PeersLeave::Disconnect)
        .capacity(4096)
        .create()
        .expect("create");
    let mut rx = ch.consumer().expect("consumer");
    let mut p = spawn("spsc-soak-producer", &[&chan, &ctl_name, &secs.to_string()]);
    let (mut want, mut corrupt, mut missing) = (0u64, 0u64, 0u64);
    let t0 = Instant::now();
    loop {
        match rx.recv(Some(Deadline::after(Duration::from_secs(30)))) {
            Ok(v) => match check_typed(v) {
                Some((1, seq)) if seq == want => want += 1,
                Some((_, seq)) => {
                    corrupt += u64::from(seq < want);
                    missing += seq.saturating_sub(want);
                    sum.fail(format!("spsc soak: message {seq} when {want} was due"));
                    want = seq + 1;
                }
                None => {
                    corrupt += 1;
                    sum.fail("spsc soak: a torn or corrupt message".to_owned());
                }
            },
            Err(RecvError::Disconnected) => break,
            Err(e) => {
                sum.fail(format!("spsc soak: receive ended with {e}"));
                break;
            }
        }
    }
    let took = t0.elapsed().as_secs_f64();
    if !p.wait().is_ok_and(|s| s.success()) {
        sum.fail("spsc soak: the producer failed".to_owned());
    }
    let sent = get(&ctl, CTL_FIRST_ID);
    if sent != want {
        sum.fail(format!("spsc soak: {sent} sent, {want} received"));
        missing += sent.saturating_sub(want);
    }
    let t = sum.k(K::Spsc);
    t.sent += sent;
    t.received += want;
    t.corrupt += corrupt;
    t.missing += missing;
    sum.lines.push(format!(
        "spsc soak: {took:.0} s, a producer process: {want} checked messages ({:.2} M msg/s), {missing} lost, {corrupt} corrupt",
        want as f64 / took / 1e6
    ));
}

pub(crate) fn soak_producer(args: &[String]) {
    let ctl = Ctl::open(&args[1]);
    let secs: u64 = args[2].parse().unwrap();
    let ch = shmlane::spsc::<[u64; 4]>(&args[0])
        .when_peers_leave(shmlane::PeersLeave::Disconnect)
        .open()
        .expect("open");
    let mut tx = ch.producer().expect("producer");
    let t0 = Instant::now();
    let mut seq = 0;
    while t0.elapsed() < Duration::from_secs(secs) {
        for _ in 0..1000 {
            tx.send(
                typed(1, seq),
                Some(Deadline::after(Duration::from_secs(60))),
            )
            .expect("send");
            seq += 1;
        }
        set(&ctl, CTL_FIRST_ID, seq);
    }
}
