//! Byte flips in a live channel of every kind: random bits of the segment's header page, the
//! channel header and the ring's first 384 bytes flipped while a producer process sends
//! checked messages and this process receives them. Those 384 bytes are the ring's metadata
//! (identity, role claims, positions) for SPSC, MPMC and record rings; a broadcast ring's
//! header is 256 bytes (identity, the publisher's position), so there they also cover slot 0's
//! stamp, length and first words.
//!
//! Hostile metadata is outside what the rings can keep correct (docs/reliability.md, trust
//! model): a flipped position can make a receiver deliver a stale or never-written slot, or
//! skip some. What is promised, and checked here: no process crashes or panics, every
//! blocking call returns by its deadline (the parent kills a child that does not end), errors
//! are typed, and a reported loss is bounded by what was sent. Deliveries that fail their
//! checksum, and errors, are counted and printed per kind.

use std::{
    os::unix::process::ExitStatusExt,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU8, Ordering},
    },
    time::{Duration, Instant},
};

use shmlane::{ByteRecvError, Deadline, RecvError};
use shmlane_segment::Segment;

use crate::{
    msg::{check, check_typed, message, typed},
    proc::{CTL_ERRORS, CTL_FIRST_ID, Ctl, Remove, Rng, add, get, set, spawn, wait_or_kill},
    summary::{K, Summary},
};

const DEADLINE: Duration = Duration::from_millis(50);
/// A blocking call returning this much past its deadline is a failure.
const LATE: Duration = Duration::from_secs(1);

/// Offsets in the segment of the regions the flipper attacks: (offset, bytes).
fn targets(name: &str) -> Vec<(usize, usize)> {
    let info = shmlane_segment::inspect(std::path::Path::new(&format!("/dev/shm/{name}")))
        .ok()
        .flatten()
        .expect("inspect");
    let mut t = vec![(0, 4096)];
    for r in &info.regions {
        if r.name == "chan" || r.name == "ring" {
            t.push((r.offset as usize, 384));
        }
    }
    t
}

/// This process's receive: one call, its outcome counted.
type Receive = Box<dyn FnMut(&mut Got)>;
/// The producer's send of message `seq`: whether it was sent.
type Step = Box<dyn FnMut(u64, &mut Rng) -> bool>;

#[derive(Default)]
struct Got {
    ok: u64,
    garbage: u64,
    errors: u64,
    lost: u64,
    late: u64,
    max_over: Duration,
}

impl Got {
    fn timed(&mut self, t: Instant) {
        let over = t.elapsed().saturating_sub(DEADLINE);
        self.max_over = self.max_over.max(over);
        if over > LATE {
            self.late += 1;
        }
    }
}

pub(crate) fn flips(tag: &str, k: K, secs: u64, rng: &mut Rng, sum: &mut Summary) {
    let name = format!("{tag}-flips-{}", k.name());
    let ctl_name = format!("{tag}-flips-{}-ctl", k.name());
    let _rm = Remove(vec![name.clone(), ctl_name.clone()]);
    let ctl = Ctl::create(&ctl_name);
    let kind = k.name();
    // The channel, and this process's receiving end.
    let secs_s = secs.to_string();
    let producer;
    let mut recv: Receive = match k {
        K::Spsc | K::Mpmc => {
            let b = if k == K::Spsc {
                shmlane::spsc::<[u64; 4]>(&name).when_peers_leave(shmlane::PeersLeave::Disconnect)
            } else {
                shmlane::mpmc::<[u64; 4]>(&name).when_peers_leave(shmlane::PeersLeave::Disconnect)
            };
            let ch = b.capacity(1024).create().expect("create");
            producer = Some(spawn("flip-producer", &[kind, &name, &ctl_name, &secs_s]));
            if k == K::Spsc {
                let mut rx = ch.consumer().expect("consumer");
                Box::new(move |g: &mut Got| {
                    let t = Instant::now();
                    let r = rx.recv(Some(Deadline::after(DEADLINE)));
                    g.timed(t);
                    typed_result(g, r);
                })
            } else {
                let mut rx = ch.receiver().expect("receiver");
                Box::new(move |g: &mut Got| {
                    let t = Instant::now();
                    let r = rx.recv(Some(Deadline::after(DEADLINE)));
                    g.timed(t);
                    typed_result(g, r);
                })
            }
        }
        K::Bytes => {
            let ch = shmlane::bytes(&name)
                .when_peers_leave(shmlane::PeersLeave::Disconnect)
                .capacity(1 << 16)
                .create()
                .expect("create");
            let mut rx = ch.byte_receiver().expect("receiver");
            producer = Some(spawn("flip-producer", &[kind, &name, &ctl_name, &secs_s]));
            let mut buf = vec![0u8; rx.max_message()];
            Box::new(move |g: &mut Got| {
                let t = Instant::now();
                let r = rx.recv(&mut buf, Some(Deadline::after(DEADLINE)));
                g.timed(t);
                byte_result(g, r, &buf);
            })
        }
        K::Broadcast | K::Other => {
            let ch = shmlane::broadcast(&name)
                .when_peers_leave(shmlane::PeersLeave::Disconnect)
                .capacity(1024)
                .msg_size(432)
                .create()
                .expect("create");
            let mut rx = ch.subscriber().expect("subscriber");
            producer = Some(spawn("flip-producer", &[kind, &name, &ctl_name, &secs_s]));
            let mut buf = vec![0u8; rx.max_message()];
            Box::new(move |g: &mut Got| {
                let t = Instant::now();
                let r = rx.recv(&mut buf, Some(Deadline::after(DEADLINE)));
                g.timed(t);
                byte_result(g, r, &buf);
            })
        }
    };
    let mut producer = producer.expect("producer");
    // The flipper: its own mapping of the segment (the same memory).
    let stop = Arc::new(AtomicBool::new(false));
    let flipper = {
        let (stop, name) = (stop.clone(), name.clone());
        let mut rng = Rng(rng.next() | 1);
        std::thread::spawn(move || {
            let seg = Segment::posix(&name).open().expect("open for flipping");
            let ring = seg.find_region("ring").expect("ring");
            let targets = targets(&name);
            let ring_off = targets.last().expect("ring").0;
            let base = ring.as_ptr() as usize - ring_off;
            // Let the producer attach first (its attach checks what is flipped below).
            std::thread::sleep(Duration::from_millis(50));
            let t0 = Instant::now();
            let mut flipped = 0u64;
            // ORDERING: Relaxed; a flag between two threads of this process.
            while !stop.load(Ordering::Relaxed) && t0.elapsed() < Duration::from_secs(secs) {
                let (off, len) = targets[rng.below(targets.len() as u64) as usize];
                let at = off + rng.below(len as u64) as usize;
                // SAFETY: `at` lies in the segment's header page, the channel header or the
                // ring's first 384 bytes, all mapped while `seg` lives; other processes access
                // these bytes atomically too.
                let b = unsafe { &*((base + at) as *const AtomicU8) };
                // ORDERING: Relaxed; hostile writes need no ordering.
                b.fetch_xor(1 << rng.below(8), Ordering::Relaxed);
                flipped += 1;
                std::thread::sleep(Duration::from_micros(500));
            }
            flipped
        })
    };
    let mut got = Got::default();
    let t0 = Instant::now();
    let mut ended = None;
    while t0.elapsed() < Duration::from_secs(secs + 30) {
        recv(&mut got);
        if ended.is_none()
            && let Ok(Some(st)) = producer.try_wait()
        {
            ended = Some((st, Instant::now()));
        }
        if ended.is_some_and(|(_, at)| at.elapsed() > Duration::from_millis(300)) {
            break;
        }
    }
    // ORDERING: Relaxed; as above.
    stop.store(true, Ordering::Relaxed);
    let flipped = flipper.join().expect("flipper");
    let status = match ended {
        Some((st, _)) => Some(st),
        None => wait_or_kill(&mut producer, 10)
            .ok()
            .and_then(|_| producer.try_wait().ok().flatten()),
    };
    match status {
        Some(st) if st.success() => {}
        Some(st) => sum.fail(format!(
            "{kind} flips: the producer process ended with {st}{}",
            if st.signal().is_some() {
                " (a crash)"
            } else {
                " (a panic)"
            }
        )),
        None => sum.fail(format!(
            "{kind} flips: the producer process did not end within {} s (a blocking call past its deadline); killed",
            secs + 30
        )),
    }
    if got.late > 0 {
        sum.fail(format!(
            "{kind} flips: {} receives returned more than {LATE:?} past their {DEADLINE:?} deadline (worst {:?} over)",
            got.late, got.max_over
        ));
    }
    let sent = get(&ctl, CTL_FIRST_ID);
    let sender_errors = get(&ctl, CTL_ERRORS);
    if got.lost > sent + 1024 {
        sum.fail(format!(
            "{kind} flips: {} messages reported lost, {sent} sent",
            got.lost
        ));
    }
    let t = sum.k(k);
    t.flips += flipped;
    t.errors += got.errors + sender_errors;
    sum.lines.push(format!(
        "{kind} flips: {flipped} bits flipped in the segment header, the channel header and the ring metadata while {sent} messages were sent: {} received whole, {} failed their checksum (hostile metadata, not detected), {} reported lost, {} receive and {sender_errors} send errors; slowest receive {:?} past its deadline",
        got.ok, got.garbage, got.lost, got.errors, got.max_over
    ));
}

fn typed_result(g: &mut Got, r: Result<[u64; 4], RecvError>) {
    match r {
        Ok(v) => {
            if check_typed(v).is_some() {
                g.ok += 1;
            } else {
                g.garbage += 1;
            }
        }
        Err(RecvError::Timeout) => {}
        Err(_) => {
            g.errors += 1;
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

fn byte_result(g: &mut Got, r: Result<usize, ByteRecvError>, buf: &[u8]) {
    match r {
        Ok(n) => {
            if check(&buf[..n]).is_some() {
                g.ok += 1;
            } else {
                g.garbage += 1;
            }
        }
        Err(ByteRecvError::Lapped { lost }) => g.lost = g.lost.saturating_add(lost),
        Err(ByteRecvError::Timeout) => {}
        Err(_) => {
            g.errors += 1;
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// The producer of a flips run: sends checked messages for `secs` seconds; errors are counted
/// (and the send tried again a millisecond later), never fatal.
pub(crate) fn producer(args: &[String]) {
    let (kind, name, ctl_name) = (args[0].as_str(), &args[1], &args[2]);
    let secs: u64 = args[3].parse().unwrap();
    let ctl = Ctl::open(ctl_name);
    let t0 = Instant::now();
    let end = Duration::from_secs(secs);
    let mut rng = Rng(7);
    let mut sent = 0u64;
    let d = || Some(Deadline::after(DEADLINE));
    let mut step: Step = match kind {
        "spsc" => {
            let ch = shmlane::spsc::<[u64; 4]>(name)
                .when_peers_leave(shmlane::PeersLeave::Disconnect)
                .open()
                .expect("open");
            let mut tx = ch.producer().expect("producer");
            Box::new(move |seq, _| tx.send(typed(1, seq), d()).is_ok())
        }
        "mpmc" => {
            let ch = shmlane::mpmc::<[u64; 4]>(name)
                .when_peers_leave(shmlane::PeersLeave::Disconnect)
                .open()
                .expect("open");
            let mut tx = ch.sender().expect("sender");
            Box::new(move |seq, _| tx.send(typed(1, seq), d()).is_ok())
        }
        "bytes" => {
            let ch = shmlane::bytes(name)
                .when_peers_leave(shmlane::PeersLeave::Disconnect)
                .open()
                .expect("open");
            let mut tx = ch.byte_sender().expect("sender");
            Box::new(move |seq, rng| tx.send(&message(1, seq, rng), d()).is_ok())
        }
        _ => {
            let ch = shmlane::broadcast(name)
                .when_peers_leave(shmlane::PeersLeave::Disconnect)
                .open()
                .expect("open");
            let mut tx = ch.publisher().expect("publisher");
            Box::new(move |seq, rng| {
                let ok = tx.send(&message(1, seq, rng)).is_ok();
                std::thread::sleep(Duration::from_micros(20));
                ok
            })
        }
    };
    while t0.elapsed() < end {
        if step(sent, &mut rng) {
            sent += 1;
            set(&ctl, CTL_FIRST_ID, sent);
        } else {
            add(&ctl, CTL_ERRORS, 1);
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}
