//! Broadcast channel scenarios: publishers SIGKILLed at random and right after a send (each
//! generation takes the role over and continues after the last complete message), subscriber
//! processes killed at random, and a subscriber SIGSTOPped until it is lapped.
//!
//! Accounting: a subscriber attached before the first message sees every message published,
//! or is told exactly how many it lost (`Lapped`); the total published is the publisher's
//! position in the ring header once the last one left cleanly. So received + reported losses
//! must equal that total, exactly.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use nix::sys::signal::{Signal, kill};
use shmlane::{ByteRecvError, ByteSendError, Deadline};

use crate::{
    msg::{check, message},
    proc::{
        CTL_BAD, CTL_FIRST_ID, CTL_KILL_AT, CTL_RECEIVED, CTL_STOP, Ctl, Remove, Rng, add, die,
        get, mono_ns, pid, set, sigkill, spawn, wait_or_kill,
    },
    summary::{K, Summary},
};

/// The largest message `message()` makes.
const MSG: u64 = 432;

fn published(chan: &str) -> Option<u64> {
    shmlane_segment::inspect(std::path::Path::new(&format!("/dev/shm/{chan}")))
        .ok()
        .flatten()
        .and_then(|info| shmlane::inspect(&info))
        .map(|s| s.positions.0)
}

/// What a subscriber saw: per publisher id the next sequence due, received, lost (reported),
/// corrupt or out of order, PeerDied reports.
#[derive(Default)]
struct Seen {
    next: HashMap<u64, u64>,
    received: u64,
    lost: u64,
    bad: u64,
    gaps: u64,
}

impl Seen {
    fn take(&mut self, m: &[u8]) -> bool {
        match check(m) {
            Some((id, seq)) => {
                let want = self.next.entry(id).or_insert(0);
                if seq < *want {
                    self.bad += 1;
                } else {
                    // Ahead: a lap took the ones between (checked against the total).
                    self.gaps += seq - *want;
                }
                *want = seq + 1;
                self.received += 1;
                true
            }
            None => {
                self.bad += 1;
                false
            }
        }
    }
}

/// Publishers killed at random and right after a send, one generation at a time; subscriber
/// processes killed at random meanwhile; this process subscribes before the first message and
/// must see `PeerDied` after each publisher's death.
pub(crate) fn kills(tag: &str, n: u64, rng: &mut Rng, sum: &mut Summary) {
    let chan = format!("{tag}-bcast-kills");
    let ctl_name = format!("{tag}-bcast-kills-ctl");
    let _rm = Remove(vec![chan.clone(), ctl_name.clone()]);
    let ctl = Ctl::create(&ctl_name);
    let ch = shmlane::broadcast(&chan)
        .capacity(1024)
        .msg_size(MSG)
        .create()
        .expect("create the broadcast channel");
    let mut sub = ch.subscriber().expect("subscriber");
    let mut buf = vec![0u8; sub.max_message()];
    let mut seen = Seen::default();
    let pubs = n * 2 / 3;
    let subs = n - pubs;
    let (mut random, mut fixed, mut sub_kills, mut no_death) = (0u64, 0u64, 0u64, Vec::new());
    let mut drain = |seen: &mut Seen, until: Instant, sum: &mut Summary, stop_at_death: bool| {
        loop {
            match sub.recv(&mut buf, Some(Deadline::after(Duration::from_millis(100)))) {
                Ok(len) => {
                    if !seen.take(&buf[..len]) {
                        sum.fail(format!(
                            "broadcast kills: a torn or corrupt message of {len} bytes"
                        ));
                    }
                }
                Err(ByteRecvError::Lapped { lost }) => seen.lost += lost,
                Err(ByteRecvError::PeerDied) => {
                    let at = get(&ctl, CTL_KILL_AT);
                    if at != 0 {
                        sum.k(K::Broadcast)
                            .detect
                            .push(mono_ns().saturating_sub(at) / 1000);
                        set(&ctl, CTL_KILL_AT, 0);
                        if stop_at_death {
                            return true;
                        }
                    }
                }
                Err(ByteRecvError::Timeout | ByteRecvError::Disconnected) => {}
                Err(e) => {
                    sum.fail(format!("broadcast kills: receive failed: {e}"));
                    return false;
                }
            }
            if Instant::now() >= until {
                return false;
            }
        }
    };
    for g in 0..pubs {
        let id = g + 1;
        let fixed_point = g % 4 == 3;
        let after = rng.below(2000).to_string();
        let at = if fixed_point { "after-send" } else { "none" };
        let mut p = spawn(
            "bcast-publisher",
            &[&chan, &ctl_name, &id.to_string(), at, &after],
        );
        // A subscriber process beside some generations, killed at random while it reads.
        let mut s = (g < subs).then(|| spawn("bcast-subscriber", &[&chan, &ctl_name]));
        if fixed_point {
            fixed += 1;
        } else {
            // Killed only once it holds the role (a process killed before it attached is no
            // publisher a subscriber can have seen die; on a loaded machine the spawn alone
            // can take longer than the random delay).
            if !crate::proc::expect_line(&mut p, "publishing") {
                sum.fail(format!(
                    "broadcast kills: publisher generation {id} never reported holding the role"
                ));
            }
            let until = Instant::now() + Duration::from_micros(2_000 + rng.below(15_000));
            drain(&mut seen, until, sum, false);
            if let Some(mut s) = s.take() {
                sigkill(&mut s);
                sub_kills += 1;
            }
            set(&ctl, CTL_KILL_AT, mono_ns());
            sigkill(&mut p);
            random += 1;
        }
        // Everything it published, then PeerDied.
        if !drain(
            &mut seen,
            Instant::now() + Duration::from_secs(5),
            sum,
            true,
        ) {
            no_death.push(id);
        }
        let _ = p.wait();
        if let Some(mut s) = s {
            sigkill(&mut s);
            sub_kills += 1;
        }
    }
    // A last publisher that leaves cleanly: its drop publishes the final position.
    let id = pubs + 1;
    let mut last = spawn(
        "bcast-publisher",
        &[&chan, &ctl_name, &id.to_string(), "count", "1000"],
    );
    let ok = wait_or_kill(&mut last, 30).unwrap_or(false);
    if !ok {
        sum.fail("broadcast kills: the last publisher failed".to_owned());
    }
    drain(
        &mut seen,
        Instant::now() + Duration::from_millis(300),
        sum,
        false,
    );
    if !no_death.is_empty() {
        sum.fail(format!(
            "broadcast kills: no PeerDied within 5 s of the death of publishers {no_death:?}"
        ));
    }
    let total = published(&chan).unwrap_or(0);
    if seen.received + seen.lost != total {
        sum.fail(format!(
            "broadcast kills: {total} published, {} received + {} reported lost",
            seen.received, seen.lost
        ));
    }
    // Skips seen inside a publisher's sequence are covered by reported laps (a lap across a
    // generation's end skips messages no later one of that publisher reveals, so only `<=`).
    if seen.gaps > seen.lost {
        sum.fail(format!(
            "broadcast kills: {} messages skipped in the sequences, {} reported lost",
            seen.gaps, seen.lost
        ));
    }
    // Per publisher: every counted message arrived (one more for a kill between send and
    // count), unless laps took some.
    let mut sent = 0;
    for id in 1..=pubs + 1 {
        let counted = get(&ctl, CTL_FIRST_ID + id as usize);
        let got = seen.next.get(&id).copied().unwrap_or(0);
        if got > counted + 1 || (seen.lost == 0 && got < counted) {
            sum.fail(format!(
                "broadcast kills: publisher {id} counted {counted} messages, the subscriber's sequence reached {got}"
            ));
        }
        sent += counted.max(got);
    }
    let sub_bad = get(&ctl, CTL_BAD);
    if sub_bad > 0 {
        sum.fail(format!(
            "broadcast kills: the killed subscriber processes saw {sub_bad} torn or corrupt messages"
        ));
    }
    sum.killed(K::Broadcast, "publishers at random", random);
    sum.killed(K::Broadcast, "publishers after-send", fixed);
    sum.killed(K::Broadcast, "subscribers at random", sub_kills);
    let t = sum.k(K::Broadcast);
    t.sent += total;
    t.received += seen.received;
    t.lost += seen.lost;
    t.corrupt += seen.bad + sub_bad;
    t.missing += total.saturating_sub(seen.received + seen.lost);
    sum.lines.push(format!(
        "broadcast kills: {pubs} publisher generations ({random} killed at random, {fixed} after a send), each continuing after the last whole message; {sub_kills} subscriber processes killed: {total} published (ring position; {sent} counted by the publishers), {} received, {} reported lost to laps, PeerDied after every death",
        seen.received, seen.lost
    ));
}

/// A publisher: sends checked messages until killed, until it kills itself after message
/// `after` ("after-send"), or ("count") after `after` messages, leaving cleanly.
pub(crate) fn publisher(args: &[String]) {
    let (chan, ctl_name, id, at, after) = (
        &args[0],
        &args[1],
        args[2].parse::<u64>().unwrap(),
        args[3].as_str(),
        args[4].parse::<u64>().unwrap(),
    );
    let ctl = Ctl::open(ctl_name);
    let ch = shmlane::broadcast(chan).open().expect("open");
    let t0 = Instant::now();
    let mut tx = loop {
        match ch.publisher() {
            Ok(tx) => break tx,
            Err(e) if t0.elapsed() > Duration::from_secs(10) => panic!("publisher: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(1)),
        }
    };
    println!("publishing");
    let _ = std::io::Write::flush(&mut std::io::stdout());
    let mut rng = Rng(id.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    for seq in 0.. {
        if at == "count" && seq == after {
            return;
        }
        if at == "secs" {
            // Soak: unpaced, for `after` seconds.
            if t0.elapsed() >= Duration::from_secs(after) {
                return;
            }
            tx.send(&message(id, seq, &mut rng)).expect("send");
            if seq % 1024 == 0 {
                set(&ctl, CTL_FIRST_ID + id as usize, seq + 1);
            }
            continue;
        }
        if get(&ctl, CTL_STOP) == 1 {
            return;
        }
        let m = message(id, seq, &mut rng);
        match tx.send(&m) {
            Ok(()) => {}
            Err(ByteSendError::TooLong { .. }) => panic!("message too long"),
            Err(e) => panic!("send: {e}"),
        }
        if at == "after-send" && seq == after {
            die(&ctl);
        }
        set(&ctl, CTL_FIRST_ID + id as usize, seq + 1);
        // Paced: the subscribers keep up (laps are the `stop` scenario's).
        std::thread::sleep(Duration::from_micros(20));
    }
}

/// A subscriber process: checks what it reads until killed (or stopped and continued).
pub(crate) fn subscriber(args: &[String]) {
    let ctl = Ctl::open(&args[1]);
    let ch = shmlane::broadcast(&args[0]).open().expect("open");
    let mut sub = ch.subscriber().expect("subscriber");
    let mut buf = vec![0u8; sub.max_message()];
    let mut seen = Seen::default();
    println!("subscribed");
    loop {
        match sub.recv(&mut buf, Some(Deadline::after(Duration::from_millis(100)))) {
            Ok(len) => {
                if seen.take(&buf[..len]) {
                    add(&ctl, CTL_RECEIVED, 1);
                } else {
                    add(&ctl, CTL_BAD, 1);
                }
            }
            Err(ByteRecvError::Lapped { lost }) => {
                add(&ctl, CTL_FIRST_ID - 1, lost);
            }
            Err(ByteRecvError::Disconnected) => return,
            Err(_) => {
                if get(&ctl, CTL_STOP) == 2 {
                    return;
                }
            }
        }
    }
}

/// A publisher SIGSTOPped for `secs` (subscribers wait, never told it died), then a subscriber
/// process SIGSTOPped until the publisher laps it: it must report the loss exactly.
pub(crate) fn stop(tag: &str, secs: u64, sum: &mut Summary) {
    let chan = format!("{tag}-bcast-stop");
    let ctl_name = format!("{tag}-bcast-stop-ctl");
    let _rm = Remove(vec![chan.clone(), ctl_name.clone()]);
    let ctl = Ctl::create(&ctl_name);
    let ch = shmlane::broadcast(&chan)
        .capacity(256)
        .msg_size(MSG)
        .create()
        .expect("create the broadcast channel");
    let mut sub = ch.subscriber().expect("subscriber");
    let mut buf = vec![0u8; sub.max_message()];
    let mut seen = Seen::default();
    let mut frozen = spawn("bcast-subscriber", &[&chan, &ctl_name]);
    let _ = crate::proc::expect_line(&mut frozen, "subscribed");
    let mut p = spawn("bcast-publisher", &[&chan, &ctl_name, "1", "none", "0"]);
    let mut read_for = |seen: &mut Seen, d: Duration, sum: &mut Summary| {
        let t0 = Instant::now();
        let mut wrong = None;
        while t0.elapsed() < d {
            match sub.recv(&mut buf, Some(Deadline::after(Duration::from_millis(50)))) {
                Ok(len) => {
                    if !seen.take(&buf[..len]) {
                        sum.fail("broadcast stop: a torn or corrupt message".to_owned());
                    }
                }
                Err(ByteRecvError::Lapped { lost }) => seen.lost += lost,
                Err(ByteRecvError::Timeout) => {}
                Err(e) => wrong = Some(e),
            }
        }
        wrong
    };
    read_for(&mut seen, Duration::from_millis(200), sum);
    // The subscriber process freezes; the publisher laps it many times over.
    let _ = kill(pid(&frozen), Signal::SIGSTOP);
    read_for(&mut seen, Duration::from_millis(500), sum);
    // The publisher freezes: the subscriber waits, is never told it died.
    let _ = kill(pid(&p), Signal::SIGSTOP);
    if let Some(e) = read_for(&mut seen, Duration::from_secs(secs), sum) {
        sum.fail(format!("broadcast stop: a frozen publisher gave {e}"));
    }
    let _ = kill(pid(&p), Signal::SIGCONT);
    let _ = kill(pid(&frozen), Signal::SIGCONT);
    read_for(&mut seen, Duration::from_millis(300), sum);
    set(&ctl, CTL_STOP, 1);
    let _ = wait_or_kill(&mut p, 10);
    read_for(&mut seen, Duration::from_millis(200), sum);
    set(&ctl, CTL_STOP, 2);
    if wait_or_kill(&mut frozen, 10).is_err() {
        sum.fail("broadcast stop: the lapped subscriber did not end".to_owned());
    }
    let total = published(&chan).unwrap_or(0);
    // The frozen subscriber attached at 0 too (before the publisher): its received and
    // reported losses must add up to the same total.
    let (f_got, f_lost) = (get(&ctl, CTL_RECEIVED), get(&ctl, CTL_FIRST_ID - 1));
    for (who, got, lost) in [
        ("the reading subscriber", seen.received, seen.lost),
        ("the frozen subscriber", f_got, f_lost),
    ] {
        if got + lost != total {
            sum.fail(format!(
                "broadcast stop: {who}: {got} received + {lost} reported lost, {total} published"
            ));
        }
    }
    if f_lost == 0 {
        sum.fail("broadcast stop: the frozen subscriber was never lapped".to_owned());
    }
    let t = sum.k(K::Broadcast);
    t.stops += 2;
    t.sent += 2 * total;
    t.received += seen.received + f_got;
    t.lost += seen.lost + f_lost;
    t.missing += (2 * total).saturating_sub(seen.received + f_got + seen.lost + f_lost);
    sum.lines.push(format!(
        "broadcast stop: a publisher SIGSTOPped for {secs} s was never declared dead; a subscriber SIGSTOPped meanwhile was lapped and told it lost {f_lost} of {total} exactly (received {f_got})"
    ));
}

/// A publisher process sending as fast as it can for `secs`, a subscriber process and this
/// process reading: every message checked; received + reported laps = published, for both.
pub(crate) fn soak(tag: &str, secs: u64, sum: &mut Summary) {
    let chan = format!("{tag}-bcast-soak");
    let ctl_name = format!("{tag}-bcast-soak-ctl");
    let _rm = Remove(vec![chan.clone(), ctl_name.clone()]);
    let ctl = Ctl::create(&ctl_name);
    let ch = shmlane::broadcast(&chan)
        .capacity(4096)
        .msg_size(MSG)
        .create()
        .expect("create the broadcast channel");
    let mut sub = ch.subscriber().expect("subscriber");
    let mut other = spawn("bcast-subscriber", &[&chan, &ctl_name]);
    let _ = crate::proc::expect_line(&mut other, "subscribed");
    let mut p = spawn(
        "bcast-publisher",
        &[&chan, &ctl_name, "1", "secs", &secs.to_string()],
    );
    let mut buf = vec![0u8; sub.max_message()];
    let mut seen = Seen::default();
    let t0 = Instant::now();
    let mut done_at = None;
    loop {
        match sub.recv(&mut buf, Some(Deadline::after(Duration::from_millis(100)))) {
            Ok(len) => {
                if !seen.take(&buf[..len]) {
                    sum.fail("broadcast soak: a torn or corrupt message".to_owned());
                }
            }
            Err(ByteRecvError::Lapped { lost }) => seen.lost += lost,
            Err(ByteRecvError::Timeout | ByteRecvError::Disconnected) => {}
            Err(e) => {
                sum.fail(format!("broadcast soak: receive failed: {e}"));
                break;
            }
        }
        if done_at.is_none() && p.try_wait().ok().flatten().is_some() {
            done_at = Some(Instant::now());
        }
        if done_at.is_some_and(|t| t.elapsed() > Duration::from_millis(300))
            || t0.elapsed() > Duration::from_secs(secs + 60)
        {
            break;
        }
    }
    let took = t0.elapsed().as_secs_f64();
    if !p.wait().is_ok_and(|s| s.success()) {
        sum.fail("broadcast soak: the publisher failed".to_owned());
    }
    set(&ctl, CTL_STOP, 2);
    if wait_or_kill(&mut other, 10).is_err() {
        sum.fail("broadcast soak: the subscriber process did not end".to_owned());
    }
    let total = published(&chan).unwrap_or(0);
    let (o_got, o_lost, o_bad) = (
        get(&ctl, CTL_RECEIVED),
        get(&ctl, CTL_FIRST_ID - 1),
        get(&ctl, CTL_BAD),
    );
    for (who, got, lost) in [
        ("this process", seen.received, seen.lost),
        ("the subscriber process", o_got, o_lost),
    ] {
        if got + lost != total {
            sum.fail(format!(
                "broadcast soak: {who}: {got} received + {lost} reported lost, {total} published"
            ));
        }
    }
    if seen.bad + o_bad > 0 {
        sum.fail(format!(
            "broadcast soak: {} torn or corrupt messages",
            seen.bad + o_bad
        ));
    }
    let t = sum.k(K::Broadcast);
    t.sent += 2 * total;
    t.received += seen.received + o_got;
    t.lost += seen.lost + o_lost;
    t.corrupt += seen.bad + o_bad;
    t.missing += (2 * total).saturating_sub(seen.received + o_got + seen.lost + o_lost);
    sum.lines.push(format!(
        "broadcast soak: {took:.0} s, a publisher and a subscriber process beside this one: {total} published ({:.2} M msg/s); received {} and {o_got}, lost to laps (reported exactly) {} and {o_lost}",
        total as f64 / took / 1e6,
        seen.received,
        seen.lost
    ));
}
