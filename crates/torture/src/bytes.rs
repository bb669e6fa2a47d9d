//! Byte channel scenarios: producers killed at random and at fixed protocol points, soak.

use std::{
    collections::HashMap,
    process::Child,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use shmlane::{ByteRecvError, ByteSendError, Deadline};

use crate::{
    msg::{check, message},
    proc::{
        CTL_BAD, CTL_DUP, CTL_ERRORS, CTL_FIRST_ID, CTL_KILL_AT, CTL_STOP, Ctl, Remove, Rng, get,
        mono_ns, pid, set, sigkill, spawn, wait_or_kill,
    },
    summary::{K, Summary},
};

// ---------------------------------------------------------------- kills

/// Where a producer kills itself: 0 after claim, 1 mid-copy, 2 after commit, 3 never.
pub(crate) const FIXED: [&str; 3] = ["after-claim", "mid-copy", "after-commit"];

pub(crate) fn kills(tag: &str, n: u64, rng: &mut Rng, sum: &mut Summary) {
    let chan = format!("{tag}-kills");
    let ctl_name = format!("{tag}-kills-ctl");
    let _rm = Remove(vec![chan.clone(), ctl_name.clone()]);
    let ctl = Ctl::create(&ctl_name);
    let ch = shmlane::bytes(&chan)
        .when_peers_leave(shmlane::PeersLeave::Disconnect)
        .capacity(1 << 20)
        .create()
        .expect("create the byte channel");
    let mut rx = ch.byte_receiver().expect("receiver");
    // A steady producer (id 1) runs throughout; killed generations are ids 2, 3, ...
    let mut steady = spawn("bytes-producer", &[&chan, &ctl_name, "1", "none", "0"]);
    let done = Arc::new(AtomicBool::new(false));
    let fixed_counts = Arc::new(Mutex::new([0u64; 3]));
    let killer = {
        let (chan, ctl_name, done, fixed_counts) = (
            chan.clone(),
            ctl_name.clone(),
            done.clone(),
            fixed_counts.clone(),
        );
        let mut rng = Rng(rng.next() | 1);
        std::thread::spawn(move || {
            let ctl = Ctl::open(&ctl_name);
            for g in 0..n {
                let id = (g + 2).to_string();
                // A quarter of the generations kill themselves at a fixed point.
                let fixed = if g % 4 == 3 {
                    Some(((g / 4) % 3) as usize)
                } else {
                    None
                };
                let at = fixed.map_or("none", |f| FIXED[f]);
                let after = rng.below(200).to_string();
                let mut c = spawn("bytes-producer", &[&chan, &ctl_name, &id, at, &after]);
                if let Some(f) = fixed {
                    let _ = c.wait();
                    fixed_counts.lock().unwrap()[f] += 1;
                } else {
                    std::thread::sleep(Duration::from_micros(500 + rng.below(15_000)));
                    // ORDERING: Relaxed; the consumer reads it to time the skip.
                    ctl.word(CTL_KILL_AT).store(mono_ns(), Ordering::Relaxed);
                    sigkill(&mut c);
                }
            }
            done.store(true, Ordering::Release);
        })
    };
    let mut next: HashMap<u64, u64> = HashMap::new();
    let mut buf = vec![0u8; rx.max_message()];
    let mut skipped = rx.skipped();
    let mut quiet = 0;
    let (mut received, mut corrupt, mut lost) = (0u64, 0u64, 0u64);
    loop {
        match rx.recv(&mut buf, Some(Deadline::after(Duration::from_millis(5)))) {
            Ok(len) => {
                quiet = 0;
                match check(&buf[..len]) {
                    Some((id, seq)) => {
                        let want = next.entry(id).or_insert(0);
                        if seq != *want {
                            if seq > *want {
                                lost += seq - *want;
                            } else {
                                corrupt += 1;
                            }
                            sum.fail(format!(
                                "kills: producer {id} message {seq} arrived when {want} was due"
                            ));
                        }
                        *want = seq + 1;
                        received += 1;
                    }
                    None => {
                        corrupt += 1;
                        sum.fail(format!("kills: a torn or corrupt message of {len} bytes"));
                    }
                }
            }
            Err(ByteRecvError::Timeout | ByteRecvError::Empty) => {
                if done.load(Ordering::Acquire) {
                    if quiet == 0 {
                        // Stop the steady producer once every generation is done.
                        // ORDERING: Relaxed; polled by the steady producer.
                        ctl.word(CTL_STOP).store(1, Ordering::Relaxed);
                    }
                    quiet += 1;
                    if quiet > 200 && steady.try_wait().ok().flatten().is_some() {
                        break;
                    }
                }
            }
            Err(e) => {
                sum.fail(format!("kills: receive failed: {e}"));
                break;
            }
        }
        let s = rx.skipped();
        if s > skipped {
            // ORDERING: Relaxed; written by the killer (or a self-killing producer) before the kill.
            let at = ctl.word(CTL_KILL_AT).load(Ordering::Relaxed);
            if at != 0 {
                sum.k(K::Bytes)
                    .detect
                    .push(mono_ns().saturating_sub(at) / 1000);
                ctl.word(CTL_KILL_AT).store(0, Ordering::Relaxed);
            }
            skipped = s;
        }
    }
    killer.join().expect("killer thread");
    let _ = steady.wait();
    // Every message a producer counted as committed was delivered (a kill between the commit
    // and the count can leave one more delivered than counted).
    let mut sent = 0;
    for id in 1..n + 2 {
        // ORDERING: Relaxed; the producers have exited.
        let committed = ctl.word(CTL_FIRST_ID + id as usize).load(Ordering::Relaxed);
        let delivered = next.get(&id).copied().unwrap_or(0);
        if delivered < committed || delivered > committed + 1 {
            lost += committed.saturating_sub(delivered);
            sum.fail(format!(
                "kills: producer {id} committed {committed} messages, {delivered} delivered"
            ));
        }
        sent += delivered.max(committed);
    }
    let fixed = *fixed_counts.lock().unwrap();
    sum.killed(
        K::Bytes,
        "producers at random",
        n - fixed.iter().sum::<u64>(),
    );
    for (f, k) in FIXED.iter().zip(fixed) {
        sum.killed(K::Bytes, &format!("producers {f}"), k);
    }
    let skips = rx.stats().lost;
    let t = sum.k(K::Bytes);
    // Dead claims skipped are counted by the channel but were never sent (not committed).
    t.sent += sent;
    t.received += received;
    t.corrupt += corrupt;
    t.missing += lost;
    t.skipped += skips;
    sum.lines.push(format!(
        "bytes kills: {n} producer generations next to a steady one: {received} messages checked, {skips} dead claims skipped"
    ));
}

pub(crate) fn bytes_producer(args: &[String]) {
    let (chan, ctl_name, id, at, after) = (
        &args[0],
        &args[1],
        args[2].parse::<u64>().unwrap(),
        args[3].as_str(),
        args[4].parse::<u64>().unwrap(),
    );
    let ctl = Ctl::open(ctl_name);
    let ch = shmlane::bytes(chan)
        .when_peers_leave(shmlane::PeersLeave::Disconnect)
        .open()
        .expect("open the byte channel");
    let mut tx = ch.byte_sender().expect("sender");
    let mut rng = Rng(id.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let counter = ctl.word(CTL_FIRST_ID + id as usize);
    for seq in 0.. {
        // ORDERING: Relaxed; a stop request.
        if id == 1 && ctl.word(CTL_STOP).load(Ordering::Relaxed) == 1 {
            return;
        }
        let m = message(id, seq, &mut rng);
        if at != "none" && seq == after {
            let mut claim = loop {
                match tx.claim(m.len()) {
                    Ok(c) => break c,
                    Err(ByteSendError::Full) => std::thread::sleep(Duration::from_micros(50)),
                    Err(e) => panic!("claim: {e}"),
                }
            };
            let die = || {
                // ORDERING: Relaxed; read by the consumer to time the skip.
                ctl.word(CTL_KILL_AT).store(mono_ns(), Ordering::Relaxed);
                let _ = kill(Pid::this(), Signal::SIGKILL);
            };
            match at {
                "after-claim" => die(),
                "mid-copy" => {
                    claim.write(0, &m[..m.len() / 2]);
                    die();
                }
                _ => {
                    claim.write(0, &m);
                    claim.commit().expect("commit");
                    let _ = kill(Pid::this(), Signal::SIGKILL);
                }
            }
            unreachable!("SIGKILL returned");
        }
        match tx.send(&m, Some(Deadline::after(Duration::from_secs(30)))) {
            Ok(()) => {}
            Err(ByteSendError::Disconnected | ByteSendError::PeerDied) => return,
            Err(e) => panic!("send: {e}"),
        }
        // ORDERING: Relaxed; read by the parent after this process ended.
        counter.store(seq + 1, Ordering::Relaxed);
        if id == 1 {
            std::thread::sleep(Duration::from_micros(20));
        }
    }
}
// ---------------------------------------------------------------- soak

pub(crate) fn soak(tag: &str, secs: u64, sum: &mut Summary) {
    let chan = format!("{tag}-soak");
    let ctl_name = format!("{tag}-soak-ctl");
    let _rm = Remove(vec![chan.clone(), ctl_name.clone()]);
    let ctl = Ctl::create(&ctl_name);
    let ch = shmlane::bytes(&chan)
        .when_peers_leave(shmlane::PeersLeave::Disconnect)
        .capacity(1 << 20)
        .create()
        .expect("create");
    let mut rx = ch.byte_receiver().expect("receiver");
    let producers: Vec<Child> = (1..=2u64)
        .map(|id| {
            spawn(
                "soak-producer",
                &[&chan, &ctl_name, &id.to_string(), &secs.to_string()],
            )
        })
        .collect();
    let mut next: HashMap<u64, u64> = HashMap::new();
    let mut buf = vec![0u8; rx.max_message()];
    let (mut received, mut bytes, mut corrupt, mut lost) = (0u64, 0u64, 0u64, 0u64);
    let t0 = Instant::now();
    loop {
        match rx.recv(&mut buf, Some(Deadline::after(Duration::from_secs(30)))) {
            Ok(len) => match check(&buf[..len]) {
                Some((id, seq)) => {
                    let want = next.entry(id).or_insert(0);
                    if seq != *want {
                        lost += seq.saturating_sub(*want);
                        corrupt += u64::from(seq < *want);
                        sum.fail(format!(
                            "soak: producer {id} message {seq} when {want} was due"
                        ));
                    }
                    *want = seq + 1;
                    received += 1;
                    bytes += len as u64;
                }
                None => {
                    corrupt += 1;
                    sum.fail("soak: a torn or corrupt message".to_owned());
                }
            },
            Err(ByteRecvError::Disconnected) => break,
            Err(e) => {
                sum.fail(format!("soak: receive ended with {e}"));
                break;
            }
        }
    }
    let took = t0.elapsed();
    let mut sent = 0;
    for mut p in producers {
        if !p.wait().is_ok_and(|s| s.success()) {
            sum.fail("soak: a producer failed".to_owned());
        }
        let _ = &mut p;
    }
    for id in 1..=2u64 {
        // ORDERING: Relaxed; the producers have exited.
        let s = ctl.word(CTL_FIRST_ID + id as usize).load(Ordering::Relaxed);
        sent += s;
        if next.get(&id).copied().unwrap_or(0) != s {
            sum.fail(format!(
                "soak: producer {id} sent {s}, {} delivered",
                next.get(&id).copied().unwrap_or(0)
            ));
            lost += s.saturating_sub(next.get(&id).copied().unwrap_or(0));
        }
    }
    let t = sum.k(K::Bytes);
    t.sent += sent;
    t.received += received;
    t.corrupt += corrupt;
    t.missing += lost;
    sum.lines.push(format!(
        "bytes soak: {:.0} s, 2 producer processes, {received} checksummed messages ({:.1} MB, {:.2} M msg/s), {lost} lost, {corrupt} corrupt",
        took.as_secs_f64(),
        bytes as f64 / 1e6,
        received as f64 / took.as_secs_f64() / 1e6
    ));
}

pub(crate) fn soak_producer(args: &[String]) {
    let ctl = Ctl::open(&args[1]);
    let id: u64 = args[2].parse().unwrap();
    let secs: u64 = args[3].parse().unwrap();
    let ch = shmlane::bytes(&args[0])
        .when_peers_leave(shmlane::PeersLeave::Disconnect)
        .open()
        .expect("open");
    let mut tx = ch.byte_sender().expect("sender");
    let mut rng = Rng(id.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let counter = ctl.word(CTL_FIRST_ID + id as usize);
    let t0 = Instant::now();
    let mut seq = 0;
    while t0.elapsed() < Duration::from_secs(secs) {
        for _ in 0..1000 {
            let m = message(id, seq, &mut rng);
            tx.send(&m, Some(Deadline::after(Duration::from_secs(60))))
                .expect("send");
            seq += 1;
        }
        // ORDERING: Relaxed; read after this process ended.
        counter.store(seq, Ordering::Relaxed);
    }
}

// ---------------------------------------------------------------- stop

/// A byte sender that stops itself (SIGSTOP) between claiming room and committing, frozen for
/// `secs` next to a steady sender: the receiver skips its message after the unblock timeout
/// (counted), goes on delivering the steady sender's, and the frozen sender's late commit is
/// told `Timeout` (it sends that message again). Nothing committed is lost.
pub(crate) fn stop(tag: &str, secs: u64, sum: &mut Summary) {
    let chan = format!("{tag}-bytes-stop");
    let ctl_name = format!("{tag}-bytes-stop-ctl");
    let _rm = Remove(vec![chan.clone(), ctl_name.clone()]);
    let ctl = Ctl::create(&ctl_name);
    let ch = shmlane::bytes(&chan)
        .when_peers_leave(shmlane::PeersLeave::Disconnect)
        .capacity(1 << 20)
        .create()
        .expect("create");
    let mut rx = ch.byte_receiver().expect("receiver");
    let mut steady = spawn("bytes-producer", &[&chan, &ctl_name, "1", "none", "0"]);
    let mut frozen = spawn("bytes-stopper", &[&chan, &ctl_name, "2"]);
    let mut next: HashMap<u64, u64> = HashMap::new();
    let mut buf = vec![0u8; rx.max_message()];
    let (mut received, mut corrupt, mut missing) = (0u64, 0u64, 0u64);
    let (mut stopped_at, mut resumed, mut during) = (None::<Instant>, false, 0u64);
    let t0 = Instant::now();
    loop {
        match rx.recv(&mut buf, Some(Deadline::after(Duration::from_millis(5)))) {
            Ok(len) => match check(&buf[..len]) {
                Some((id, seq)) => {
                    let want = next.entry(id).or_insert(0);
                    if seq != *want {
                        missing += seq.saturating_sub(*want);
                        corrupt += u64::from(seq < *want);
                        sum.fail(format!(
                            "bytes stop: producer {id} message {seq} when {want} was due"
                        ));
                    }
                    *want = seq + 1;
                    received += 1;
                    if stopped_at.is_some() && !resumed {
                        during += 1;
                    }
                }
                None => {
                    corrupt += 1;
                    sum.fail("bytes stop: a torn or corrupt message".to_owned());
                }
            },
            Err(ByteRecvError::Timeout | ByteRecvError::Empty) => {}
            // Both senders left cleanly (the steady one once asked to): drained.
            Err(ByteRecvError::Disconnected) if resumed => break,
            Err(e) => {
                sum.fail(format!("bytes stop: receive failed: {e}"));
                break;
            }
        }
        if stopped_at.is_none() && get(&ctl, CTL_KILL_AT) != 0 {
            stopped_at = Some(Instant::now());
        }
        if let Some(at) = stopped_at
            && !resumed
            && at.elapsed() >= Duration::from_secs(secs)
        {
            let _ = kill(pid(&frozen), Signal::SIGCONT);
            resumed = true;
        }
        if resumed && frozen.try_wait().ok().flatten().is_some() {
            set(&ctl, CTL_STOP, 1);
            if steady.try_wait().ok().flatten().is_some() {
                // Drain what is left.
                while let Ok(len) = rx.try_recv(&mut buf) {
                    if let Some((id, seq)) = check(&buf[..len]) {
                        let want = next.entry(id).or_insert(0);
                        missing += seq.saturating_sub(*want);
                        *want = seq + 1;
                        received += 1;
                    } else {
                        corrupt += 1;
                    }
                }
                break;
            }
        }
        if t0.elapsed() > Duration::from_secs(secs + 60) {
            sum.fail("bytes stop: stuck".to_owned());
            sigkill(&mut frozen);
            sigkill(&mut steady);
            break;
        }
    }
    let _ = steady.wait();
    let _ = frozen.wait();
    let commit = get(&ctl, CTL_ERRORS);
    if commit != 2 {
        sum.fail(format!(
            "bytes stop: the frozen sender's late commit gave {} (Timeout expected: its message was skipped)",
            ["nothing", "Ok", "Timeout"].get(commit as usize).unwrap_or(&"?")
        ));
    }
    let mut sent = 0;
    for id in 1..=2u64 {
        let counted = get(&ctl, CTL_FIRST_ID + id as usize);
        let got = next.get(&id).copied().unwrap_or(0);
        if got != counted {
            missing += counted.saturating_sub(got);
            sum.fail(format!(
                "bytes stop: producer {id} sent {counted}, {got} delivered"
            ));
        }
        sent += counted;
    }
    if during == 0 {
        sum.fail("bytes stop: nothing delivered while a sender was frozen mid-message".to_owned());
    }
    let skipped = rx.stats().lost;
    if skipped != 1 {
        sum.fail(format!(
            "bytes stop: {skipped} messages counted as skipped, 1 expected (the frozen sender's)"
        ));
    }
    let t = sum.k(K::Bytes);
    t.stops += 1;
    t.sent += sent;
    t.received += received;
    t.corrupt += corrupt;
    t.missing += missing;
    t.skipped += skipped;
    sum.lines.push(format!(
        "bytes stop: a sender SIGSTOPped between claim and commit for {secs} s next to a steady one: its message skipped and counted ({skipped}), {during} messages delivered meanwhile, its late commit told Timeout; {received} messages in order"
    ));
}

/// Sends 100 messages, stopping itself (SIGSTOP) between claiming and committing the 50th.
pub(crate) fn stopper(args: &[String]) {
    let ctl = Ctl::open(&args[1]);
    let id: u64 = args[2].parse().unwrap();
    let ch = shmlane::bytes(&args[0])
        .when_peers_leave(shmlane::PeersLeave::Disconnect)
        .open()
        .expect("open");
    let mut tx = ch.byte_sender().expect("sender");
    let mut rng = Rng(id.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut seq = 0;
    while seq < 100 {
        let m = message(id, seq, &mut rng);
        if seq == 50 && get(&ctl, CTL_ERRORS) == 0 {
            let mut claim = tx.claim(m.len()).expect("claim");
            claim.write(0, &m[..m.len() / 2]);
            set(&ctl, CTL_KILL_AT, mono_ns());
            let _ = kill(Pid::this(), Signal::SIGSTOP);
            claim.write(m.len() / 2, &m[m.len() / 2..]);
            match claim.commit() {
                Ok(()) => set(&ctl, CTL_ERRORS, 1),
                Err(_) => {
                    // Skipped while frozen: sent again below (same sequence number).
                    set(&ctl, CTL_ERRORS, 2);
                    continue;
                }
            }
        } else {
            tx.send(&m, Some(Deadline::after(Duration::from_secs(30))))
                .expect("send");
        }
        seq += 1;
        set(&ctl, CTL_FIRST_ID + id as usize, seq);
        std::thread::sleep(Duration::from_micros(100));
    }
}

// ---------------------------------------------------------------- receivers killed

/// Byte-channel receivers SIGKILLed at random, each successor taking the role over, while a
/// sender in this process sends `TOTAL` checked messages (sending again what `PeerDied` or
/// `Disconnected` refused). Receivers record each message once they have it: every message is
/// received once, but for at most one per receiver killed between receiving and recording.
pub(crate) fn receivers(tag: &str, n: u64, rng: &mut Rng, sum: &mut Summary) {
    const TOTAL: u64 = 200_000;
    let chan = format!("{tag}-bytes-rx");
    let ctl_name = format!("{tag}-bytes-rx-ctl");
    let _rm = Remove(vec![chan.clone(), ctl_name.clone()]);
    let ctl = Ctl::create(&ctl_name);
    let ch = shmlane::bytes(&chan)
        .when_peers_leave(shmlane::PeersLeave::Disconnect)
        .capacity(1 << 16)
        .create()
        .expect("create the byte channel");
    let mut tx = ch.byte_sender().expect("sender");
    let sending = std::thread::spawn(move || {
        let mut rng = Rng(0x5eed);
        'sending: for seq in 0..TOTAL {
            let m = message(1, seq, &mut rng);
            let mut no_receiver_since = None::<Instant>;
            loop {
                match tx.send(&m, Some(Deadline::after(Duration::from_secs(60)))) {
                    Ok(()) => break,
                    // The receiver died (or left): wait for its successor, send it again;
                    // bounded, so a successor that failed ends the scenario (reported as
                    // messages never received) instead of hanging the run.
                    Err(ByteSendError::PeerDied | ByteSendError::Disconnected) => {
                        let since = *no_receiver_since.get_or_insert_with(Instant::now);
                        if since.elapsed() > Duration::from_secs(30) {
                            break 'sending;
                        }
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err(e) => panic!("send: {e}"),
                }
            }
        }
        // Kept until the last receiver has seen it: a receiver that never saw a sender waits
        // for one (the lifecycle), so one attaching after the sender left would never end.
        tx
    });
    for _ in 0..n {
        let mut c = spawn("bytes-receiver", &[&chan, &ctl_name]);
        std::thread::sleep(Duration::from_micros(2_000 + rng.below(30_000)));
        sigkill(&mut c);
    }
    let mut last = spawn("bytes-receiver", &[&chan, &ctl_name]);
    let tx = sending.join().expect("sender thread");
    // The sender leaves only once the last receiver is attached (it has seen the sender).
    crate::proc::wait_attached(&chan, last.id(), shmlane::ROLE_RECEIVER);
    drop(tx);
    drop(ch);
    if wait_or_kill(&mut last, 60) != Ok(true) {
        sum.fail("bytes receivers: the last receiver failed or did not end".to_owned());
    }
    let missing = ctl.unmarked(TOTAL);
    let (dup, bad) = (get(&ctl, CTL_DUP), get(&ctl, CTL_BAD));
    let in_hands = if missing <= n { missing } else { 0 };
    if missing > n {
        sum.fail(format!(
            "bytes receivers: {missing} of {TOTAL} messages never received ({n} receivers killed could have taken at most {n})"
        ));
    }
    if dup + bad > 0 {
        sum.fail(format!(
            "bytes receivers: {bad} torn or corrupt, {dup} received twice"
        ));
    }
    sum.killed(K::Bytes, "receivers at random", n);
    let t = sum.k(K::Bytes);
    t.sent += TOTAL;
    t.received += TOTAL - missing;
    t.in_dead_hands += in_hands;
    t.missing += missing - in_hands;
    t.corrupt += bad;
    t.duplicates += dup;
    sum.lines.push(format!(
        "bytes receivers: {n} receivers killed, each successor took the role over: {TOTAL} messages, {missing} taken by a killed receiver before it recorded them, {dup} twice"
    ));
}

/// A byte receiver: records every message it receives (its bit) until killed, or until every
/// sender left and the ring is drained.
pub(crate) fn receiver(args: &[String]) {
    let ctl = Ctl::open(&args[1]);
    // A successor of a killed receiver: it resumes the dead one's unread messages on purpose
    // (else, once the sender has finished and dropped its endpoint, the channel is stale and
    // refused: CI's torture run failed "the last receiver failed" that way).
    let ch = shmlane::bytes(&args[0])
        .when_peers_leave(shmlane::PeersLeave::Disconnect)
        .resume(true)
        .open()
        .expect("open");
    let t0 = Instant::now();
    let mut rx = loop {
        match ch.byte_receiver() {
            Ok(rx) => break rx,
            Err(e) if t0.elapsed() > Duration::from_secs(10) => panic!("receiver: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(1)),
        }
    };
    let mut buf = vec![0u8; rx.max_message()];
    loop {
        match rx.recv(&mut buf, Some(Deadline::after(Duration::from_millis(100)))) {
            Ok(len) => match check(&buf[..len]) {
                Some((1, seq)) => {
                    if ctl.mark(seq) {
                        crate::proc::add(&ctl, CTL_DUP, 1);
                    }
                }
                _ => crate::proc::add(&ctl, CTL_BAD, 1),
            },
            Err(ByteRecvError::Disconnected) => return,
            Err(ByteRecvError::Timeout | ByteRecvError::PeerDied) => {}
            Err(e) => panic!("receive: {e}"),
        }
    }
}
