//! MPMC channel scenarios: senders and receivers SIGKILLed at random next to steady ones,
//! every endpoint a process of its own (a wedged ring or a receive that spins past its
//! deadline must not hang this program: the parent kills what does not end), a frozen sender,
//! soak.
//!
//! Receivers mark each message's bit (`id << ID_SHIFT | seq`) in the control segment's bitmap;
//! the parent then checks, per sender, that every message it counted as sent was received
//! exactly once. A receiver killed between taking a message and marking it takes that message
//! with it (at most one per receiver killed, reported as such).

use std::time::{Duration, Instant};

use shmlane::{Deadline, RecvError, SendError};

use crate::{
    msg::{check_typed, typed},
    proc::{
        CTL_BAD, CTL_DUP, CTL_ERRORS, CTL_FIRST_ID, CTL_RECEIVED, CTL_STOP, Ctl, ID_SHIFT, Remove,
        Rng, add, die, get, set, sigkill, spawn, wait_or_kill,
    },
    summary::{K, Summary},
};

/// Messages a sender sends at most (its bitmap range).
const PER_ID: u64 = (1 << ID_SHIFT) - 1;

struct Run {
    chan: String,
    ctl_name: String,
    ctl: Ctl,
    _rm: Remove,
}

fn setup(tag: &str, what: &str) -> (Run, shmlane::Channel<[u64; 4]>) {
    let chan = format!("{tag}-mpmc-{what}");
    let ctl_name = format!("{tag}-mpmc-{what}-ctl");
    let rm = Remove(vec![chan.clone(), ctl_name.clone()]);
    let ctl = Ctl::create(&ctl_name);
    let ch = shmlane::mpmc::<[u64; 4]>(&chan)
        .when_peers_leave(shmlane::PeersLeave::Disconnect)
        .capacity(1024)
        .create()
        .expect("create the MPMC channel");
    (
        Run {
            chan,
            ctl_name,
            ctl,
            _rm: rm,
        },
        ch,
    )
}

/// Ends a run: stops the senders (waits for them), then the receivers once they have drained
/// the ring; checks every sender's messages. Returns the failures' count.
#[allow(clippy::too_many_arguments)]
fn finish(
    what: &str,
    run: &Run,
    ch: &shmlane::Channel<[u64; 4]>,
    mut senders: Vec<std::process::Child>,
    mut receivers: Vec<std::process::Child>,
    ids: &[u64],
    receivers_killed: u64,
    sum: &mut Summary,
) -> (u64, u64) {
    set(&run.ctl, CTL_STOP, 1);
    for s in &mut senders {
        if wait_or_kill(s, 20).is_err() {
            sum.fail(format!(
                "mpmc {what}: a sender did not stop within 20 s of being asked (blocked past its 100 ms deadline?); killed"
            ));
        }
    }
    // Senders gone: the receivers drain, then stop at their first empty wait.
    set(&run.ctl, CTL_STOP, 2);
    for r in &mut receivers {
        match wait_or_kill(r, 20) {
            Ok(true) => {}
            Ok(false) => sum.fail(format!("mpmc {what}: a receiver failed")),
            Err(()) => sum.fail(format!(
                "mpmc {what}: a receiver did not stop within 20 s (a receive blocked past its 100 ms deadline, spinning on a ring it cannot drain); killed"
            )),
        }
    }
    let ctl = &run.ctl;
    let (mut sent, mut missing) = (0u64, 0u64);
    let mut holes = Vec::new();
    for &id in ids {
        let counted = get(ctl, CTL_FIRST_ID + id as usize).min(PER_ID);
        let base = id << ID_SHIFT;
        let unmarked = ctl.unmarked_in(base, base + counted);
        // A kill between a send and its count: one more received than counted.
        let extra = u64::from(ctl.is_marked(base + counted));
        sent += counted + extra;
        if unmarked > 0 {
            missing += unmarked;
            holes.push(format!("sender {id}: {unmarked} of {counted}"));
        }
    }
    let received = get(ctl, CTL_RECEIVED);
    let (bad, dup, errors) = (get(ctl, CTL_BAD), get(ctl, CTL_DUP), get(ctl, CTL_ERRORS));
    // What the channel itself counted: slots given back after a receiver died holding a
    // message (senders' `lost`: those messages are lost, counted), and positions skipped
    // after a sender died between taking one and publishing (receivers' `lost`: never sent).
    let (counted_lost, skipped) = channel_lost(&run.chan);
    // Beyond the counted losses, within what the killed receivers can have taken between
    // receiving and recording, a shortfall is theirs; beyond that, all of it is unexplained.
    let uncounted = missing.saturating_sub(counted_lost);
    let in_dead_hands = if uncounted <= receivers_killed {
        uncounted
    } else {
        0
    };
    if uncounted > receivers_killed {
        sum.fail(format!(
            "mpmc {what}: {missing} messages counted as sent were never received, {counted_lost} counted lost by the channel, {receivers_killed} receivers killed could have taken at most that many more: {}",
            holes.join(", ")
        ));
    }
    if bad > 0 || dup > 0 {
        sum.fail(format!(
            "mpmc {what}: {bad} torn or corrupt messages, {dup} received twice"
        ));
    }
    if errors > 0 {
        sum.fail(format!("mpmc {what}: {errors} receive errors"));
    }
    let t = sum.k(K::Mpmc);
    t.sent += sent;
    t.received += received - dup;
    t.in_dead_hands += in_dead_hands;
    t.missing += uncounted - in_dead_hands;
    t.corrupt += bad;
    t.duplicates += dup;
    t.lost += missing - uncounted;
    t.skipped += skipped;
    let _ = ch;
    (received, missing)
}

/// The senders' and the receivers' `lost` statistics as the channel header holds them.
fn channel_lost(chan: &str) -> (u64, u64) {
    shmlane_segment::inspect(std::path::Path::new(&format!("/dev/shm/{chan}")))
        .ok()
        .flatten()
        .and_then(|info| shmlane::inspect(&info))
        .map_or((0, 0), |s| (s.sent.lost, s.received.lost))
}

/// MPMC senders and receivers SIGKILLed at random (and senders right after a send, before
/// counting it), one generation of each at a time, next to a steady sender and a steady
/// receiver.
pub(crate) fn kills(tag: &str, n: u64, rng: &mut Rng, sum: &mut Summary) {
    let (run, ch) = setup(tag, "kills");
    let steady_rx = spawn("mpmc-receiver", &[&run.chan, &run.ctl_name]);
    let steady_tx = spawn("mpmc-sender", &[&run.chan, &run.ctl_name, "1", "none", "0"]);
    let (mut ids, mut kills_log) = (vec![1u64], Vec::new());
    let (mut random_tx, mut random_rx, mut fixed_rx, mut missed) = (0u64, 0u64, 0u64, 0u64);
    let mut fixed_tx = std::collections::BTreeMap::<&str, u64>::new();
    for g in 0..n {
        let before = get(&run.ctl, CTL_RECEIVED);
        if g % 2 == 0 {
            let id = 2 + g / 2;
            ids.push(id);
            // Every fourth sender kills itself at a fixed point: right after a send (before
            // counting it), or between winning its position and publishing (test hook).
            let fixed = (g % 8 == 6).then_some(if g % 16 == 6 {
                "after-send"
            } else {
                "mid-push"
            });
            let after = rng.below(2000).to_string();
            let at = fixed.unwrap_or("none");
            let mut c = spawn(
                "mpmc-sender",
                &[&run.chan, &run.ctl_name, &id.to_string(), at, &after],
            );
            if let Some(at) = fixed {
                match landed(&mut c) {
                    Some(true) => *fixed_tx.entry(at).or_default() += 1,
                    Some(false) => missed += 1,
                    None => sum.fail(format!(
                        "mpmc kills: sender {id} did not reach its fixed point ({at}) within 20 s"
                    )),
                }
            } else {
                // Killed while it sends: after its first message is counted.
                let t0 = Instant::now();
                while get(&run.ctl, CTL_FIRST_ID + id as usize) == 0
                    && t0.elapsed() < Duration::from_secs(2)
                {
                    std::thread::sleep(Duration::from_micros(100));
                }
                std::thread::sleep(Duration::from_micros(rng.below(5_000)));
                sigkill(&mut c);
                random_tx += 1;
            }
            kills_log.push((g, "sender", before));
        } else if g % 8 == 5 {
            // A receiver that kills itself between winning its position and releasing the
            // slot (test hook): the message it took is lost, and counted.
            let after = rng.below(200).to_string();
            let mut c = spawn(
                "mpmc-receiver",
                &[&run.chan, &run.ctl_name, "mid-pop", &after],
            );
            match landed(&mut c) {
                Some(true) => fixed_rx += 1,
                // Another receiver emptied the ring under it (the hook needs a message): it
                // left without a hole.
                Some(false) => missed += 1,
                None => sum.fail(
                    "mpmc kills: a receiver did not reach its fixed point (mid-pop) within 20 s"
                        .to_owned(),
                ),
            }
            kills_log.push((g, "receiver mid-pop", before));
        } else {
            let mut c = spawn("mpmc-receiver", &[&run.chan, &run.ctl_name]);
            std::thread::sleep(Duration::from_micros(500 + rng.below(15_000)));
            sigkill(&mut c);
            random_rx += 1;
            kills_log.push((g, "receiver", before));
        }
    }
    // The steady pair must still make progress after the last kill (while the steady sender
    // has messages left to send): a wedged ring shows as none.
    let (before, steady_sent) = (get(&run.ctl, CTL_RECEIVED), get(&run.ctl, CTL_FIRST_ID + 1));
    std::thread::sleep(Duration::from_millis(500));
    let stalled = get(&run.ctl, CTL_RECEIVED) == before && steady_sent < PER_ID;
    let (received, missing) = finish(
        "kills",
        &run,
        &ch,
        vec![steady_tx],
        vec![steady_rx],
        &ids,
        random_rx,
        sum,
    );
    sum.killed(K::Mpmc, "senders at random", random_tx);
    for (at, k) in &fixed_tx {
        sum.killed(K::Mpmc, &format!("senders {at}"), *k);
    }
    sum.killed(K::Mpmc, "receivers at random", random_rx);
    sum.killed(K::Mpmc, "receivers mid-pop", fixed_rx);
    let fixed_tx: u64 = fixed_tx.values().sum();
    // The kill after which nothing more was received, if the ring wedged.
    let wedge = if missing > random_rx || stalled {
        kills_log
            .iter()
            .position(|&(_, _, before)| before == received)
            .and_then(|i| i.checked_sub(1))
            .map(|i| {
                let (g, what, _) = kills_log[i];
                format!("; nothing received after kill {} of {n} (a {what})", g + 1)
            })
    } else {
        None
    }
    .unwrap_or_default();
    if stalled {
        sum.fail(format!(
            "mpmc kills: the ring wedged: nothing received in 500 ms after the last kill while the steady sender still sends{wedge}"
        ));
    }
    sum.lines.push(format!(
        "mpmc kills: {random_tx} senders and {random_rx} receivers killed at random, {fixed_tx} senders after a send or mid-push, {fixed_rx} receivers mid-pop ({missed} more fixed points refused by the hook: ring full or empty), next to a steady sender and receiver: {received} messages received, {missing} sent but never received{wedge}"
    ));
}

/// Ids the bitmap has room for.
const IDS: u64 = 1 << (25 - ID_SHIFT);

/// A sender: sends checked messages until killed, until it kills itself at its fixed point, or
/// (the steady one, id 1, and soak senders) until asked to stop. With a stride (soak), it goes
/// on under id + stride once an id's range is used up.
pub(crate) fn sender(args: &[String]) {
    let (chan, ctl_name, first, at, after) = (
        &args[0],
        &args[1],
        args[2].parse::<u64>().unwrap(),
        args[3].as_str(),
        args[4].parse::<u64>().unwrap(),
    );
    let stride: u64 = args.get(5).map_or(0, |s| s.parse().unwrap());
    let ctl = &Ctl::open(ctl_name);
    let ch = shmlane::mpmc::<[u64; 4]>(chan)
        .when_peers_leave(shmlane::PeersLeave::Disconnect)
        .open()
        .expect("open");
    let mut tx = ch.sender().expect("sender");
    let mut id = first;
    while id < IDS {
        if send_range(ctl, &mut tx, id, at, after) {
            abandon_push(ctl, chan, tx);
            return;
        }
        if stride == 0 || get(ctl, CTL_STOP) >= 1 {
            break;
        }
        id += stride;
    }
    while get(ctl, CTL_STOP) == 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Whether a child that kills itself at a fixed point did (ended by SIGKILL within 20 s).
fn landed(c: &mut std::process::Child) -> Option<bool> {
    use std::os::unix::process::ExitStatusExt;
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(20) {
        if let Ok(Some(st)) = c.try_wait() {
            // Another exit: the test hook refused (a full ring for a push, an empty one for a
            // pop, when other endpoints got there first) and the endpoint left cleanly.
            return Some(st.signal() == Some(9));
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    sigkill(c);
    None
}

/// Wins the next position and dies before publishing (the MPMC crash window; test hook). The
/// hook needs a free slot: waits (a few seconds at most) until the ring, as its header says, has
/// some room.
fn abandon_push(ctl: &Ctl, chan: &str, tx: shmlane::Sender<[u64; 4]>) {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(5) {
        let room = shmlane_segment::inspect(std::path::Path::new(&format!("/dev/shm/{chan}")))
            .ok()
            .flatten()
            .and_then(|info| shmlane::inspect(&info))
            .is_some_and(|st| st.len + 16 < st.capacity);
        if room {
            break;
        }
        std::thread::sleep(Duration::from_micros(100));
    }
    tx.abandon_send_for_tests();
    die(ctl);
}

/// Sends `id`'s messages; true when it reached its mid-push point (the caller then abandons).
fn send_range(
    ctl: &Ctl,
    tx: &mut shmlane::Sender<[u64; 4]>,
    id: u64,
    at: &str,
    after: u64,
) -> bool {
    for seq in 0..PER_ID {
        if get(ctl, CTL_STOP) >= 1 {
            return false;
        }
        let mut v = typed(id, seq);
        loop {
            match tx.send(v, Some(Deadline::after(Duration::from_millis(100)))) {
                Ok(()) => break,
                Err(SendError::Timeout(back)) => {
                    if get(ctl, CTL_STOP) >= 1 {
                        return false;
                    }
                    v = back;
                }
                Err(SendError::PeerDied(back) | SendError::Disconnected(back)) => {
                    // A receiver died; the steady one lives on.
                    std::thread::sleep(Duration::from_millis(1));
                    v = back;
                }
                Err(SendError::Corrupt(_)) => {
                    add(ctl, CTL_ERRORS, 1);
                    return false;
                }
            }
        }
        if at == "after-send" && seq == after {
            die(ctl);
        }
        if at == "mid-push" && seq + 1 == after {
            set(ctl, CTL_FIRST_ID + id as usize, seq + 1);
            return true;
        }
        set(ctl, CTL_FIRST_ID + id as usize, seq + 1);
        if id == 1 {
            std::thread::sleep(Duration::from_micros(50));
        }
    }
    false
}

/// A receiver: marks every message it receives until killed, or, once the senders are gone
/// (stop flag 2), at its first empty wait.
pub(crate) fn receiver(args: &[String]) {
    let ctl = &Ctl::open(&args[1]);
    let ch = shmlane::mpmc::<[u64; 4]>(&args[0])
        .when_peers_leave(shmlane::PeersLeave::Disconnect)
        .open()
        .expect("open");
    let mut rx = ch.receiver().expect("receiver");
    println!("receiving");
    let _ = std::io::Write::flush(&mut std::io::stdout());
    let seen = ctl.words("seen");
    let mid_pop: Option<u64> =
        (args.get(2).map(String::as_str) == Some("mid-pop")).then(|| args[3].parse().unwrap());
    let mut got = 0u64;
    loop {
        if mid_pop.is_some_and(|after| got >= after) {
            let t0 = Instant::now();
            while rx.is_empty() && t0.elapsed() < Duration::from_secs(5) {
                std::hint::spin_loop();
            }
            rx.abandon_recv_for_tests();
            die(ctl);
        }
        got += 1;
        match rx.recv(Some(Deadline::after(Duration::from_millis(100)))) {
            Ok(v) => match check_typed(v) {
                Some((id, seq)) if seq < PER_ID && id < IDS => {
                    let bit = (id << ID_SHIFT) | seq;
                    let w = &seen[(bit / 64) as usize];
                    // ORDERING: Relaxed; read after every receiver exited.
                    let old = w.fetch_or(1 << (bit % 64), std::sync::atomic::Ordering::Relaxed);
                    if old & (1 << (bit % 64)) != 0 {
                        add(ctl, CTL_DUP, 1);
                    }
                    add(ctl, CTL_RECEIVED, 1);
                }
                _ => add(ctl, CTL_BAD, 1),
            },
            Err(RecvError::Timeout | RecvError::PeerDied | RecvError::Disconnected) => {
                if get(ctl, CTL_STOP) == 2 {
                    return;
                }
            }
            Err(RecvError::Corrupt) => {
                add(ctl, CTL_ERRORS, 1);
                return;
            }
        }
    }
}

/// A sender SIGSTOPped for `secs` next to a steady one: never declared dead, nothing lost.
pub(crate) fn stop(tag: &str, secs: u64, sum: &mut Summary) {
    let (run, ch) = setup(tag, "stop");
    let rx = spawn("mpmc-receiver", &[&run.chan, &run.ctl_name]);
    let steady = spawn("mpmc-sender", &[&run.chan, &run.ctl_name, "1", "none", "0"]);
    let frozen = spawn("mpmc-sender", &[&run.chan, &run.ctl_name, "2", "none", "0"]);
    std::thread::sleep(Duration::from_millis(100));
    let pid = crate::proc::pid(&frozen);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP);
    let before = get(&run.ctl, CTL_RECEIVED);
    std::thread::sleep(Duration::from_secs(secs));
    let during = get(&run.ctl, CTL_RECEIVED) - before;
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT);
    std::thread::sleep(Duration::from_millis(100));
    sum.k(K::Mpmc).stops += 1;
    let (received, missing) = finish(
        "stop",
        &run,
        &ch,
        vec![steady, frozen],
        vec![rx],
        &[1, 2],
        0,
        sum,
    );
    sum.lines.push(format!(
        "mpmc stop: a sender SIGSTOPped for {secs} s next to a steady one ({during} messages received meanwhile): {received} received, {missing} never received"
    ));
}

/// Two senders and two receivers for `secs`.
pub(crate) fn soak(tag: &str, secs: u64, sum: &mut Summary) {
    let (run, ch) = setup(tag, "soak");
    let receivers = (0..2)
        .map(|_| spawn("mpmc-receiver", &[&run.chan, &run.ctl_name]))
        .collect();
    let senders = (2..4u64)
        .map(|id| {
            spawn(
                "mpmc-sender",
                &[&run.chan, &run.ctl_name, &id.to_string(), "none", "0", "2"],
            )
        })
        .collect();
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(secs));
    let ids: Vec<u64> = (2..IDS).collect();
    let (received, missing) = finish("soak", &run, &ch, senders, receivers, &ids, 0, sum);
    let took = t0.elapsed().as_secs_f64();
    sum.lines.push(format!(
        "mpmc soak: {took:.0} s, 2 sender and 2 receiver processes: {received} checked messages ({:.2} M msg/s), {missing} never received",
        received as f64 / took / 1e6
    ));
}

/// The last sender (or the last receiver) of an MPMC channel SIGKILLed while this process
/// receives (or sends, on a full ring): `PeerDied` after what was sent is drained, latency
/// recorded. Alternates; `n` rounds, a fresh channel each.
pub(crate) fn deaths(tag: &str, n: u64, rng: &mut Rng, sum: &mut Summary) {
    let mut late = Vec::new();
    for i in 0..n {
        let (run, ch) = setup(tag, &format!("death-{i}"));
        let deadline = || Some(Deadline::after(Duration::from_secs(5)));
        if i % 2 == 0 {
            let mut rx = ch.receiver().expect("receiver");
            let mut c = spawn("mpmc-sender", &[&run.chan, &run.ctl_name, "1", "none", "0"]);
            let t0 = Instant::now();
            while get(&run.ctl, CTL_FIRST_ID + 1) == 0 && t0.elapsed() < Duration::from_secs(5) {
                let _ = rx.try_recv();
                std::thread::sleep(Duration::from_micros(100));
            }
            std::thread::sleep(Duration::from_micros(rng.below(5_000)));
            let at = Instant::now();
            sigkill(&mut c);
            let end = loop {
                match rx.recv(deadline()) {
                    Ok(v) if check_typed(v).is_some() => {}
                    Ok(_) => break Err("a torn or corrupt message".to_owned()),
                    Err(e) => break Ok(e),
                }
            };
            match end {
                Ok(RecvError::PeerDied) => {
                    sum.k(K::Mpmc).detect.push(at.elapsed().as_micros() as u64);
                }
                other => late.push(format!("receiver after its last sender died: {other:?}")),
            }
            sum.killed(K::Mpmc, "last senders (receiver waiting)", 1);
        } else {
            let mut tx = ch.sender().expect("sender");
            let mut c = spawn("mpmc-receiver", &[&run.chan, &run.ctl_name]);
            // Killed only once attached: a receiver killed before it attached is no peer the
            // sender can have seen die (the spawn alone can outlast the delay under load).
            if !crate::proc::expect_line(&mut c, "receiving") {
                late.push("a last receiver never attached".to_owned());
            }
            std::thread::sleep(Duration::from_millis(5 + rng.below(20)));
            let at = Instant::now();
            sigkill(&mut c);
            let mut end = None;
            for seq in 0..100_000 {
                if let Err(e) = tx.send(typed(2, seq), deadline()) {
                    end = Some(e);
                    break;
                }
            }
            if matches!(end, Some(SendError::PeerDied(_))) {
                sum.k(K::Mpmc).detect.push(at.elapsed().as_micros() as u64);
            } else {
                late.push(format!(
                    "sender on a full ring after its last receiver died: {end:?}"
                ));
            }
            sum.killed(K::Mpmc, "last receivers (sender waiting)", 1);
        }
    }
    if !late.is_empty() {
        sum.fail(format!(
            "mpmc deaths: no PeerDied within 5 s: {}",
            late.join("; ")
        ));
    }
    sum.lines.push(format!(
        "mpmc deaths: {n} channels whose last sender (or receiver) was killed while this process waited on it: PeerDied every time"
    ));
}
