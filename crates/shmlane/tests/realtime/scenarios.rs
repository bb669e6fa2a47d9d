//! The hot-path calls of every channel kind, as scenarios the three proofs run.
//!
//! Each scenario sets up a channel (and its endpoints, in this process) and returns one
//! *round* of hot-path calls: a round fills a small ring until `Full`, drains it until `Empty`
//! (so every round wraps the ring and takes both error paths), and goes through the chunk,
//! claim, loan and slice forms; the broadcast rounds lap a subscriber. Both sides live in
//! this thread, so every notify finds no sleeper (the no-sleeper path; the sleeping peer with
//! `Wakes::Never` is `tests/realtime.rs`'s `sleeper` scenario). The round asserts what it
//! gets (a broken ring fails the proof instead of passing it vacuously); the assertions
//! format only when they fail.

use shmlane::{
    ByteRecvError, ByteSendError, ElemError, ElemLayout, PeersLeave, Start, TryRecvError,
    TrySendError, UnlinkPolicy,
};

/// Slots of the small rings: a round of `CAP + 1` sends wraps it and ends `Full`.
pub const CAP: u64 = 8;

/// One round of hot-path calls, with what keeps its channel alive.
pub type Round = Box<dyn FnMut()>;

/// How a scenario builds its channel: prefaulted (`populate`) and, for the page-fault proof,
/// locked (`mlock`).
#[derive(Clone, Copy, Debug)]
pub struct Setup {
    pub mlock: bool,
}

/// Every scenario: its name (also the child's argument) and its builder.
/// Builds a scenario's channel under a name.
pub type Build = fn(&str, Setup) -> Round;

pub const ALL: &[(&str, Build)] = &[
    ("spsc", spsc),
    ("mpmc", mpmc),
    ("raw_spsc", raw_spsc),
    ("raw_mpmc", raw_mpmc),
    ("bytes", |n, s| bytes(n, s, false)),
    ("bytes_checksum", |n, s| bytes(n, s, true)),
    ("broadcast", |n, s| broadcast(n, s, false)),
    ("broadcast_checksum", |n, s| broadcast(n, s, true)),
    ("typed_broadcast", typed_broadcast),
    ("raw_broadcast", raw_broadcast),
    ("latest", latest),
    ("raw_latest", raw_latest),
    ("select", select),
    ("after_async", after_async),
];

/// The scenario named `name`.
pub fn by_name(name: &str) -> Build {
    ALL.iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no scenario {name}"))
        .1
}

macro_rules! build {
    ($b:expr, $s:expr) => {
        $b.capacity(CAP)
            .unlink(UnlinkPolicy::LastDetach)
            .when_peers_leave(PeersLeave::Disconnect)
            .populate(true)
            .mlock($s.mlock)
            .create()
            .unwrap_or_else(|e| panic!("create (mlock {}): {e}", $s.mlock))
    };
}

/// Typed SPSC: try_send to `Full`, try_recv to `Empty`, the slice forms, write_chunk +
/// commit + notify, read_chunk + commit + notify, free / len / is_empty.
fn spsc(name: &str, s: Setup) -> Round {
    let ch = build!(shmlane::spsc::<u64>(name), s);
    let (mut tx, mut rx) = (ch.producer().unwrap(), ch.consumer().unwrap());
    let mut n = 0u64;
    let mut buf = [0u64; CAP as usize];
    Box::new(move || {
        let _keep = &ch;
        for i in 0..CAP {
            assert!(tx.try_send(n + i).is_ok());
        }
        assert!(matches!(tx.try_send(0), Err(TrySendError::Full(0))));
        assert_eq!(tx.free(), 0);
        assert_eq!(rx.len(), CAP as usize);
        for i in 0..CAP {
            assert_eq!(rx.try_recv(), Ok(n + i));
        }
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        assert!(rx.is_empty());
        n += CAP;
        assert_eq!(tx.try_send_slice(&[n; CAP as usize + 1]), Ok(CAP as usize));
        assert_eq!(rx.try_recv_slice(&mut buf), Ok(CAP as usize));
        assert_eq!(rx.try_recv_slice(&mut buf), Ok(0));
        let mut w = tx.write_chunk(3).unwrap();
        for i in 0..3 {
            w.write(i, n + i as u64);
        }
        w.commit_all();
        tx.notify(3);
        assert!(tx.write_chunk(CAP as usize).is_err());
        let r = rx.read_chunk(3).unwrap();
        assert_eq!(r.get(2), n + 2);
        r.commit_all();
        rx.notify(3);
        assert!(rx.read_chunk(1).is_err());
    })
}

/// `Select` over a channel whose receiver a select has parked on (set-up: a select that timed
/// out, and one woken by a send from another thread, so every registration was taken and
/// given back): the sender's notify still finds no sleeper, and a `Select::wait` that finds a
/// receiver ready makes no system call and allocates nothing.
fn select(name: &str, s: Setup) -> Round {
    use shmlane::{Deadline, Select, SelectError};
    use std::time::Duration;
    let ch = build!(shmlane::spsc::<u64>(name), s);
    let (mut tx, mut rx) = (ch.producer().unwrap(), ch.consumer().unwrap());
    let mut sel = Select::new().spins(0);
    let soon = Deadline::after(Duration::from_millis(20));
    assert_eq!(
        sel.wait(&mut [&mut rx], Some(soon)),
        Err(SelectError::Timeout)
    );
    std::thread::scope(|sc| {
        sc.spawn(|| {
            std::thread::sleep(Duration::from_millis(5));
            tx.try_send(u64::MAX).unwrap();
        });
        assert_eq!(sel.wait(&mut [&mut rx], None), Ok(0));
    });
    assert_eq!(rx.try_recv(), Ok(u64::MAX));
    let far = Deadline::after(Duration::from_secs(3600));
    let mut n = 0u64;
    Box::new(move || {
        let _keep = &ch;
        for i in 0..CAP {
            assert!(tx.try_send(n + i).is_ok());
        }
        for i in 0..CAP {
            assert_eq!(sel.wait(&mut [&mut rx], Some(far)), Ok(0));
            assert_eq!(rx.try_recv(), Ok(n + i));
        }
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        n += CAP;
    })
}

/// A channel whose receiver an async task has parked on (set-up: a task on a current-thread
/// runtime awaits `recv`, queued its io_uring futex wait, and was woken by a send from another
/// thread; the endpoint is kept, registration withdrawn): the sender's notify finds no sleeper,
/// and the receiver's `try_recv` (through the async wrapper) is as before.
fn after_async(name: &str, s: Setup) -> Round {
    use shmlane::asynch::AsyncReceiver;
    use std::time::Duration;
    let ch = build!(shmlane::spsc::<u64>(name), s);
    let (mut tx, rx) = (ch.producer().unwrap(), ch.consumer().unwrap());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let sender = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        tx.try_send(u64::MAX).unwrap();
        tx
    });
    let mut rx = rt.block_on(async {
        let mut rx = AsyncReceiver::new(rx).unwrap();
        assert_eq!(rx.recv().await, Ok(u64::MAX));
        rx
    });
    let mut tx = sender.join().unwrap();
    // The send found the task registered (it had parked): one wake.
    assert_eq!(
        tx.stats().wakeups,
        1,
        "the task never parked: nothing proven"
    );
    let mut n = 0u64;
    Box::new(move || {
        let _keep = (&ch, &rt);
        for i in 0..CAP {
            assert!(tx.try_send(n + i).is_ok());
        }
        for i in 0..CAP {
            assert_eq!(rx.get_mut().try_recv(), Ok(n + i));
        }
        assert_eq!(rx.get_mut().try_recv(), Err(TryRecvError::Empty));
        n += CAP;
    })
}

/// Typed MPMC, two senders and two receivers: try_send to `Full`, try_recv to `Empty`.
fn mpmc(name: &str, s: Setup) -> Round {
    let ch = build!(shmlane::mpmc::<u64>(name), s);
    let (mut a, mut b) = (ch.sender().unwrap(), ch.sender().unwrap());
    let (mut x, mut y) = (ch.receiver().unwrap(), ch.receiver().unwrap());
    let mut n = 0u64;
    Box::new(move || {
        let _keep = &ch;
        for i in 0..CAP {
            let tx = if i % 2 == 0 { &mut a } else { &mut b };
            assert!(tx.try_send(n + i).is_ok());
        }
        assert!(matches!(a.try_send(0), Err(TrySendError::Full(0))));
        assert!(matches!(b.try_send(0), Err(TrySendError::Full(0))));
        for i in 0..CAP {
            let rx = if i % 2 == 0 { &mut x } else { &mut y };
            assert_eq!(rx.try_recv(), Ok(n + i));
        }
        assert_eq!(x.try_recv(), Err(TryRecvError::Empty));
        assert_eq!(y.try_recv(), Err(TryRecvError::Empty));
        n += CAP;
    })
}

fn layout16() -> ElemLayout {
    ElemLayout::new(16, 8).unwrap()
}

/// Raw SPSC: try_send / try_recv with their errors, slices, write_ptrs + commit, read_ptrs +
/// release, write_chunk / read_chunk + notify.
fn raw_spsc(name: &str, s: Setup) -> Round {
    let ch = build!(shmlane::raw_spsc(name, layout16()), s);
    let (mut tx, mut rx) = (ch.producer().unwrap(), ch.consumer().unwrap());
    let mut out = [0u8; 16];
    let mut many = [0u8; 16 * CAP as usize];
    Box::new(move || {
        let _keep = &ch;
        for i in 0..CAP {
            assert!(tx.try_send(&[i as u8; 16]).is_ok());
        }
        assert!(matches!(
            tx.try_send(&[0; 16]),
            Err(ElemError::Channel(TrySendError::Full(())))
        ));
        for i in 0..CAP {
            assert!(rx.try_recv(&mut out).is_ok());
            assert_eq!(out[0], i as u8);
        }
        assert!(matches!(
            rx.try_recv(&mut out),
            Err(ElemError::Channel(TryRecvError::Empty))
        ));
        assert_eq!(tx.try_send_slice(&many), Ok(CAP as usize));
        assert_eq!(rx.try_recv_slice(&mut many), Ok(CAP as usize));
        let runs = tx.write_ptrs(2).unwrap();
        assert_eq!(runs[0].1 + runs[1].1, 2);
        tx.commit(2).unwrap();
        let runs = rx.read_ptrs(2).unwrap();
        assert_eq!(runs[0].1 + runs[1].1, 2);
        rx.release(2).unwrap();
        let w = tx.write_chunk(1).unwrap();
        w.commit_all();
        tx.notify(1);
        let r = rx.read_chunk(1).unwrap();
        r.commit_all();
        rx.notify(1);
        assert!(rx.read_chunk(1).is_err());
        assert_eq!(
            (tx.free(), rx.len(), rx.is_empty()),
            (CAP as usize, 0, true)
        );
    })
}

/// Raw MPMC: try_send to `Full`, try_recv to `Empty`, slices.
fn raw_mpmc(name: &str, s: Setup) -> Round {
    let ch = build!(shmlane::raw_mpmc(name, layout16()), s);
    let (mut tx, mut rx) = (ch.sender().unwrap(), ch.receiver().unwrap());
    let mut out = [0u8; 16];
    let mut many = [0u8; 16 * CAP as usize];
    Box::new(move || {
        let _keep = &ch;
        for i in 0..CAP {
            assert!(tx.try_send(&[i as u8; 16]).is_ok());
        }
        assert!(tx.try_send(&[0; 16]).is_err());
        for _ in 0..CAP {
            assert!(rx.try_recv(&mut out).is_ok());
        }
        assert!(rx.try_recv(&mut out).is_err());
        assert_eq!(tx.try_send_slice(&many), Ok(CAP as usize));
        assert_eq!(rx.try_recv_slice(&mut many), Ok(CAP as usize));
    })
}

/// Bytes (with and without checksums): try_send to `Full`, try_recv to `Empty`, a receive
/// into a buffer too small (`BufferTooSmall`, nothing consumed), then claim + write + commit
/// and claim + abort (unchecksummed only: a checksummed channel refuses claims).
fn bytes(name: &str, s: Setup, checksum: bool) -> Round {
    let ch = shmlane::bytes(name)
        .capacity(1024)
        .checksum(checksum)
        .unlink(UnlinkPolicy::LastDetach)
        .when_peers_leave(PeersLeave::Disconnect)
        .populate(true)
        .mlock(s.mlock)
        .create()
        .unwrap_or_else(|e| panic!("create (mlock {}): {e}", s.mlock));
    let (mut tx, mut rx) = (ch.byte_sender().unwrap(), ch.byte_receiver().unwrap());
    let msg = [7u8; 100];
    // 100 bytes: room for the message, not for its checksum behind it (the scratch path).
    let mut buf = [0u8; 100];
    let mut small = [0u8; 10];
    Box::new(move || {
        let _keep = &ch;
        let mut sent = 0;
        loop {
            match tx.try_send(&msg) {
                Ok(()) => sent += 1,
                Err(ByteSendError::Full) => break,
                Err(e) => panic!("try_send: {e}"),
            }
        }
        assert!(sent >= 4, "{sent}");
        assert_eq!(
            rx.try_recv(&mut small),
            Err(ByteRecvError::BufferTooSmall { needed: 100 })
        );
        for _ in 0..sent {
            assert_eq!(rx.try_recv(&mut buf), Ok(100));
        }
        assert_eq!(rx.try_recv(&mut buf), Err(ByteRecvError::Empty));
        if !checksum {
            let mut c = tx.claim(40).unwrap();
            c.write(0, &msg[..40]);
            c.commit().unwrap();
            tx.claim(30).unwrap().abort();
            assert_eq!(rx.try_recv(&mut buf), Ok(40));
            assert_eq!(rx.try_recv(&mut buf), Err(ByteRecvError::Empty));
        }
    })
}

/// Broadcast bytes (with and without checksums): send, a subscriber that keeps up
/// (try_recv to `Empty`) and one lapped every round (`Lapped`, then the newest).
fn broadcast(name: &str, s: Setup, checksum: bool) -> Round {
    let ch = shmlane::broadcast(name)
        .capacity(CAP)
        .msg_size(64)
        .checksum(checksum)
        .unlink(UnlinkPolicy::LastDetach)
        .when_peers_leave(PeersLeave::Disconnect)
        .populate(true)
        .mlock(s.mlock)
        .create()
        .unwrap_or_else(|e| panic!("create (mlock {}): {e}", s.mlock));
    let mut tx = ch.publisher().unwrap();
    let (mut fast, mut slow) = (ch.subscriber().unwrap(), ch.subscriber().unwrap());
    let mut buf = [0u8; 64];
    Box::new(move || {
        let _keep = &ch;
        // One more than the ring: `slow` is lapped.
        for i in 0..=CAP {
            tx.send(&[i as u8; 48]).unwrap();
            assert_eq!(fast.try_recv(&mut buf), Ok(48));
        }
        assert_eq!(fast.try_recv(&mut buf), Err(ByteRecvError::Empty));
        assert!(matches!(
            slow.try_recv(&mut buf),
            Err(ByteRecvError::Lapped { .. })
        ));
        while slow.try_recv(&mut buf).is_ok() {}
        assert_eq!(slow.try_recv(&mut buf), Err(ByteRecvError::Empty));
    })
}

/// Typed broadcast: publish, loan + write + write_field + publish, try_recv / try_recv_seq,
/// a lapped subscriber.
fn typed_broadcast(name: &str, s: Setup) -> Round {
    let ch = build!(shmlane::broadcast_of::<[u64; 4]>(name), s);
    let mut tx = ch.typed_publisher().unwrap();
    let (mut fast, mut slow) = (
        ch.typed_subscriber().unwrap(),
        ch.typed_subscriber().unwrap(),
    );
    let mut n = 0u64;
    Box::new(move || {
        let _keep = &ch;
        for _ in 0..=CAP {
            n += 1;
            if n % 2 == 0 {
                tx.publish(&[n; 4]);
            } else {
                let mut loan = tx.loan();
                loan.write(&[n; 4]);
                loan.write_field(8, &n);
                loan.publish();
            }
            assert_eq!(fast.try_recv(), Ok([n; 4]));
        }
        assert_eq!(fast.try_recv_seq(), Err(ByteRecvError::Empty));
        assert!(matches!(slow.try_recv(), Err(ByteRecvError::Lapped { .. })));
        while slow.try_recv_seq().is_ok() {}
    })
}

/// Run-time typed broadcast: publish, loan_ptr + publish_loan, try_recv, a lapped subscriber.
fn raw_broadcast(name: &str, s: Setup) -> Round {
    let ch = build!(shmlane::raw_broadcast(name, layout16()), s);
    let mut tx = ch.publisher().unwrap();
    let mut fast = ch.subscriber_from(Start::Newest).unwrap();
    let mut slow = ch.subscriber_from(Start::Newest).unwrap();
    let mut out = [0u8; 16];
    Box::new(move || {
        let _keep = &ch;
        for i in 0..=CAP {
            if i % 2 == 0 {
                tx.publish(&[i as u8; 16]).unwrap();
            } else {
                let p = tx.loan_ptr().unwrap();
                // SAFETY: the loan's 16 bytes, written while it is open.
                unsafe { p.write_bytes(i as u8, 16) };
                tx.publish_loan().unwrap();
            }
            assert!(fast.try_recv(&mut out).is_ok());
            assert_eq!(out[0], i as u8);
        }
        assert!(fast.try_recv(&mut out).is_err());
        assert!(matches!(
            slow.try_recv(&mut out),
            Err(ElemError::Channel(ByteRecvError::Lapped { .. }))
        ));
        while slow.try_recv(&mut out).is_ok() {}
    })
}

/// Latest value (typed): write, read, read_if_changed (changed, then unchanged), version.
fn latest(name: &str, s: Setup) -> Round {
    let ch = shmlane::latest::<[u64; 4]>(name)
        .capacity(4)
        .unlink(UnlinkPolicy::LastDetach)
        .populate(true)
        .mlock(s.mlock)
        .create()
        .unwrap_or_else(|e| panic!("create (mlock {}): {e}", s.mlock));
    let mut w = ch.writer().unwrap();
    let (mut r, mut idle) = (ch.reader().unwrap(), ch.reader().unwrap());
    let mut n = 0u64;
    Box::new(move || {
        let _keep = &ch;
        // More writes than slots: every slot is reused every round.
        for _ in 0..6 {
            n += 1;
            let ver = w.write(&[n; 4]).unwrap();
            assert_eq!(w.version(), ver);
            assert_eq!(r.read(), Ok(Some(([n; 4], ver))));
            assert_eq!(r.read_if_changed(), Ok(None));
            assert_eq!(r.version(), ver);
        }
        assert!(matches!(idle.read_if_changed(), Ok(Some(([x, ..], _))) if x == n));
        assert_eq!(idle.read_if_changed(), Ok(None));
    })
}

/// Latest value (run-time size): write, read, read_if_changed, version.
fn raw_latest(name: &str, s: Setup) -> Round {
    let ch = shmlane::raw_latest(name, 64)
        .capacity(4)
        .unlink(UnlinkPolicy::LastDetach)
        .populate(true)
        .mlock(s.mlock)
        .create()
        .unwrap_or_else(|e| panic!("create (mlock {}): {e}", s.mlock));
    let mut w = ch.writer().unwrap();
    let mut r = ch.reader().unwrap();
    let mut buf = [0u8; 64];
    let mut n = 0u8;
    Box::new(move || {
        let _keep = &ch;
        for len in [1usize, 17, 64, 8, 33, 64] {
            n = n.wrapping_add(1);
            let ver = w.write(&[n; 64][..len]).unwrap();
            assert_eq!(r.read(&mut buf), Ok(Some((len, ver))));
            assert_eq!(buf[len - 1], n);
            assert_eq!(r.read_if_changed(&mut buf), Ok(None));
            assert_eq!((w.version(), r.version()), (ver, ver));
        }
    })
}
