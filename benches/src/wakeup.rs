//! Blocking wake-up between two processes: an 8-byte round trip where each side sleeps until
//! the other wakes it, for pipes, eventfd, Unix sockets and shmlane's event with each wait
//! strategy. The round trip contains two wake-ups (one per direction), so one wake-up is
//! about half of it. The processes are forked (parent pinned to core 0, child to core 1);
//! transports run in interleaved rounds so each sees the same machine state.

use std::{
    io::{Read, Write},
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd},
        unix::net::UnixStream,
    },
    sync::atomic::{AtomicU64, Ordering},
    time::Instant,
};

use hdrhistogram::Histogram;
use shmlane_segment::Segment;
use shmlane_wake::{EVENT_SIZE, Event, WaitStrategy};

use crate::pin;

/// The transports compared, in table order.
pub const TRANSPORTS: &[&str] = &[
    "pipe",
    "unix-socket",
    "eventfd",
    "shmlane Park",
    "shmlane SpinThenPark",
    "shmlane BusySpin",
];

/// One transport's channel pair, created before the fork.
enum Pair {
    Pipe {
        there: (OwnedFd, OwnedFd),
        back: (OwnedFd, OwnedFd),
    },
    Unix(UnixStream, UnixStream),
    EventFd {
        there: OwnedFd,
        back: OwnedFd,
    },
    Shm {
        seg: Segment,
        strategy: WaitStrategy,
    },
}

fn pipe() -> (OwnedFd, OwnedFd) {
    nix::unistd::pipe().expect("pipe")
}

fn eventfd() -> OwnedFd {
    // SAFETY: plain syscall; checked below.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    assert!(fd >= 0, "eventfd failed");
    // SAFETY: a fresh descriptor nothing else owns.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

fn shm_pair(strategy: WaitStrategy) -> Pair {
    let seg = Segment::anonymous()
        .size(64 * 1024)
        .create_with(|s| {
            for ev in ["there", "back"] {
                let r = s.region(ev, EVENT_SIZE as u64, 10)?;
                // SAFETY: a fresh region, not yet shared.
                unsafe { Event::init(r.as_ptr(), r.len()) }.expect("init event");
            }
            s.region("words", 256, 11)?;
            Ok::<_, shmlane_segment::RegionError>(())
        })
        .expect("anonymous segment");
    Pair::Shm { seg, strategy }
}

fn make(transport: &str) -> Pair {
    match transport {
        "pipe" => Pair::Pipe {
            there: pipe(),
            back: pipe(),
        },
        "unix-socket" => {
            let (a, b) = UnixStream::pair().expect("socketpair");
            Pair::Unix(a, b)
        }
        "eventfd" => Pair::EventFd {
            there: eventfd(),
            back: eventfd(),
        },
        "shmlane Park" => shm_pair(WaitStrategy::Park),
        "shmlane SpinThenPark" => shm_pair(WaitStrategy::default()),
        "shmlane BusySpin" => shm_pair(WaitStrategy::BusySpin),
        other => panic!("unknown transport {other}"),
    }
}

fn event(seg: &Segment, name: &str) -> Event {
    let r = seg.find_region(name).expect("event region");
    // SAFETY: the region lives as long as `seg`, which outlives the handle.
    unsafe { Event::attach(r.as_ptr(), r.len()) }.expect("attach event")
}

fn word(seg: &Segment, i: usize) -> &AtomicU64 {
    let r = seg.find_region("words").expect("words region");
    // SAFETY: offset i*128 inside the 256-byte region (i < 2), aligned, atomics only.
    unsafe { AtomicU64::from_ptr(r.as_ptr().add(i * 128).cast()) }
}

fn read8(fd: &OwnedFd) -> u64 {
    let mut b = [0u8; 8];
    // SAFETY: borrows a descriptor we own for the duration of the read.
    let mut f = std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(fd.as_raw_fd()) });
    f.read_exact(&mut b).expect("read");
    u64::from_ne_bytes(b)
}

fn write8(fd: &OwnedFd, v: u64) {
    // SAFETY: as in `read8`.
    let mut f = std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(fd.as_raw_fd()) });
    f.write_all(&v.to_ne_bytes()).expect("write");
}

type Send<'a> = Box<dyn FnMut(u64) + 'a>;
type Recv<'a> = Box<dyn FnMut() -> u64 + 'a>;

/// The sending side's send and blocking receive, or the echo side's.
fn sides(pair: &Pair, echo: bool) -> (Send<'_>, Recv<'_>) {
    match pair {
        Pair::Pipe { there, back } => {
            let (rx, tx) = if echo {
                (&there.0, &back.1)
            } else {
                (&back.0, &there.1)
            };
            (
                Box::new(move |v| write8(tx, v)),
                Box::new(move || read8(rx)),
            )
        }
        Pair::Unix(a, b) => {
            let s = if echo { b } else { a };
            let (mut w, mut r) = (s, s);
            (
                Box::new(move |v| w.write_all(&v.to_ne_bytes()).expect("send")),
                Box::new(move || {
                    let mut buf = [0u8; 8];
                    r.read_exact(&mut buf).expect("recv");
                    u64::from_ne_bytes(buf)
                }),
            )
        }
        Pair::EventFd { there, back } => {
            let (rx, tx) = if echo { (there, back) } else { (back, there) };
            // eventfd adds the written value to its counter; values start at 1.
            (
                Box::new(move |v| write8(tx, v)),
                Box::new(move || read8(rx)),
            )
        }
        Pair::Shm { seg, strategy } => {
            let (rx_name, tx_name, rx_i, tx_i) = if echo {
                ("there", "back", 0, 1)
            } else {
                ("back", "there", 1, 0)
            };
            let (rx_ev, tx_ev) = (event(seg, rx_name), event(seg, tx_name));
            let (rx_w, tx_w) = (word(seg, rx_i), word(seg, tx_i));
            let strategy = *strategy;
            let mut last = 0u64;
            (
                Box::new(move |v| {
                    // ORDERING: Release; pairs with the other side's Acquire load below.
                    tx_w.store(v, Ordering::Release);
                    tx_ev.notify();
                }),
                Box::new(move || {
                    // ORDERING: Acquire; pairs with the other side's Release store above.
                    rx_ev.wait(&strategy, None, || rx_w.load(Ordering::Acquire) != last);
                    // ORDERING: as above.
                    last = rx_w.load(Ordering::Acquire);
                    last
                }),
            )
        }
    }
}

/// Runs `n` round trips over a fresh `transport` pair with a forked echo process; returns
/// the round-trip times in nanoseconds.
///
/// # Panics
/// If the fork or the transport fails, or the echo answers wrongly.
pub fn round_trips(transport: &str, n: u64) -> Vec<u64> {
    let mut pair = make(transport);
    // SAFETY: the benchmark process is single-threaded here; the child only runs the echo
    // loop on memory and descriptors inherited from the parent, then `_exit`s.
    match unsafe { nix::unistd::fork() }.expect("fork") {
        nix::unistd::ForkResult::Child => {
            pin(1);
            if let Pair::Shm { seg, .. } = &mut pair {
                seg.after_fork(2).expect("attach after fork");
            }
            let (mut send, mut recv) = sides(&pair, true);
            for _ in 0..n {
                let v = recv();
                send(v);
            }
            // SAFETY: always safe; skips the parent's atexit handlers and destructors.
            unsafe { libc::_exit(0) };
        }
        nix::unistd::ForkResult::Parent { child } => {
            pin(0);
            let mut times = Vec::with_capacity(n as usize);
            {
                let (mut send, mut recv) = sides(&pair, false);
                for i in 1..=n {
                    let t0 = Instant::now();
                    send(i);
                    let v = recv();
                    times.push(t0.elapsed().as_nanos() as u64);
                    assert_eq!(v, i, "{transport}: wrong echo");
                }
            }
            nix::sys::wait::waitpid(child, None).expect("waitpid");
            times
        }
    }
}

/// Percentiles of a set of nanosecond samples.
#[derive(Clone, Copy, Debug)]
pub struct Summary {
    /// Median.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest sample.
    pub max: u64,
}

/// Summarises samples with an HDR histogram (3 significant digits).
pub fn summarise(samples: &[u64]) -> Summary {
    let mut h = Histogram::<u64>::new(3).expect("histogram");
    for &s in samples {
        h.record(s.max(1)).expect("record");
    }
    Summary {
        p50: h.value_at_quantile(0.5),
        p99: h.value_at_quantile(0.99),
        p999: h.value_at_quantile(0.999),
        max: h.max(),
    }
}
