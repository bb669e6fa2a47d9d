//! Review of issue 21 (waiting on many channels, async endpoints): a hostile peer scribbling
//! the events and rings while a `Select` or an async task waits, deadlines already past, many
//! receivers, two handles of one channel in one select and two async receivers in one process,
//! `tokio::time::timeout` on a multi-thread runtime, and an endpoint dropped while its io_uring
//! wait is queued.

use std::{
    future::Future,
    os::unix::fs::FileExt,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use shmlane::{
    Deadline, PollSource, Select, SelectError, UnlinkPolicy,
    asynch::{AsyncReceiver, AsyncSender},
};
use shmlane_testkit::unique;

fn spsc(name: &str) -> shmlane::Channel<u64> {
    shmlane::spsc::<u64>(name)
        .capacity(64)
        .unlink(UnlinkPolicy::CreatorDrop)
        .create()
        .unwrap()
}

fn mpmc(name: &str) -> shmlane::Channel<u64> {
    shmlane::mpmc::<u64>(name)
        .capacity(64)
        .unlink(UnlinkPolicy::CreatorDrop)
        .create()
        .unwrap()
}

/// (offset, size) of region `which` of segment `name`.
fn region(name: &str, which: &str) -> (u64, u64) {
    let info = shmlane_segment::inspect(std::path::Path::new(&format!("/dev/shm/{name}")))
        .unwrap()
        .unwrap();
    let r = info.regions.iter().find(|r| r.name == which).unwrap();
    (r.offset, r.size)
}

/// A hostile peer: until `stop`, writes pseudo-random words over the `ev-data` event's
/// sequence and sleeper words and (with `ring`) over the first 64 bytes of the ring (its
/// positions), a few microseconds apart.
fn scribble(name: &str, ring: bool, stop: &AtomicBool) -> u64 {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/dev/shm/{name}"))
        .unwrap();
    let (ev, _) = region(name, "ev-data");
    let (rg, _) = region(name, "ring");
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut writes = 0u64;
    while !stop.load(Ordering::Relaxed) {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        // seq (offset 4) and sleepers (offset 8).
        f.write_all_at(&seed.to_le_bytes(), ev + 4).unwrap();
        if ring {
            let word = (seed >> 3) % 8;
            f.write_all_at(&seed.rotate_left(17).to_le_bytes(), rg + 8 * word)
                .unwrap();
        }
        writes += 1;
        std::thread::sleep(Duration::from_micros(50));
    }
    writes
}

/// A `Select` waiting while a hostile peer scribbles the event words (and the ring positions)
/// of one of its channels returns by its deadline, never panics, and never reports a
/// receiver ready that is not one of its list.
#[test]
fn select_returns_by_its_deadline_while_a_peer_scribbles_events_and_rings() {
    for ring in [false, true] {
        let (na, nb) = (unique("r21-scr-a"), unique("r21-scr-b"));
        let (a, b) = (spsc(&na), spsc(&nb));
        let (_ta, _tb) = (a.producer().unwrap(), b.producer().unwrap());
        let (mut ra, mut rb) = (a.consumer().unwrap(), b.consumer().unwrap());
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            let h = s.spawn(|| scribble(&na, ring, &stop));
            let mut sel = Select::new();
            let t0 = Instant::now();
            let deadline = Deadline::after(Duration::from_millis(300));
            let mut calls = 0u32;
            loop {
                calls += 1;
                let r = sel.wait(&mut [&mut ra, &mut rb], Some(deadline));
                match r {
                    Err(SelectError::Timeout) => break,
                    Ok(i) => assert!(i < 2),
                    Err(SelectError::Ended { index, .. }) => assert!(index < 2),
                    Err(e) => panic!("{e}"),
                }
                if deadline.is_past() {
                    break;
                }
                // A scribbled ring may look ready forever: do not spin on it.
                std::thread::sleep(Duration::from_millis(1));
            }
            let took = t0.elapsed();
            stop.store(true, Ordering::Relaxed);
            assert!(h.join().unwrap() > 10);
            assert!(
                took < Duration::from_millis(300) + Duration::from_secs(1),
                "ring {ring}: took {took:?} over {calls} calls"
            );
        });
    }
}

/// A deadline already past: `Timeout` at once (the wait contract: even if a receiver is
/// ready), with no registration made.
#[test]
fn a_past_deadline_times_out_at_once_and_registers_nothing() {
    let n = unique("r21-past");
    let a = spsc(&n);
    let mut tx = a.producer().unwrap();
    let mut rx = a.consumer().unwrap();
    let past = Deadline::after(Duration::ZERO);
    std::thread::sleep(Duration::from_millis(1));
    let mut sel = Select::new().spins(0);
    let t0 = Instant::now();
    assert_eq!(
        sel.wait(&mut [&mut rx], Some(past)),
        Err(SelectError::Timeout)
    );
    assert!(t0.elapsed() < Duration::from_millis(50));
    tx.try_send(1).unwrap();
    assert_eq!(tx.stats().wakeups, 0, "a registration was left");
}

/// Two handles of one MPMC channel (and a third channel) in one select: the event is
/// registered twice and sits twice in the futex_waitv vector; a send wakes the parked select
/// at once (well before the 50 ms slice) and both registrations are withdrawn after.
#[test]
fn two_handles_of_one_channel_in_one_select_wake_and_withdraw() {
    let (nm, ns) = (unique("r21-dup-m"), unique("r21-dup-s"));
    let (m, s) = (mpmc(&nm), spsc(&ns));
    let mut tx = m.sender().unwrap();
    let _ts = s.producer().unwrap();
    let (mut r1, mut r2) = (m.receiver().unwrap(), m.receiver().unwrap());
    let mut rs = s.consumer().unwrap();
    for round in 0..20u64 {
        let sent = AtomicBool::new(false);
        std::thread::scope(|sc| {
            let h = sc.spawn(|| {
                std::thread::sleep(Duration::from_millis(20));
                let t = Instant::now();
                sent.store(true, Ordering::Release);
                tx.try_send(round).unwrap();
                t
            });
            let mut sel = Select::new().spins(0);
            let i = sel
                .wait(
                    &mut [&mut rs, &mut r1, &mut r2],
                    Some(Deadline::after(Duration::from_secs(5))),
                )
                .unwrap();
            let woke = Instant::now();
            let t = h.join().unwrap();
            assert!(sent.load(Ordering::Acquire));
            assert!(i == 1 || i == 2, "{i}");
            let late = woke.saturating_duration_since(t);
            assert!(late < Duration::from_millis(25), "round {round}: {late:?}");
        });
        assert_eq!(r1.try_recv().or_else(|_| r2.try_recv()), Ok(round));
    }
    let w = tx.stats().wakeups;
    tx.try_send(99).unwrap();
    assert_eq!(tx.stats().wakeups, w, "a registration was left");
}

/// 1000 receivers in one select (beyond futex_waitv's 128: the fallback): the deadline ends
/// an idle wait on time, and a message on the last receiver is found.
#[test]
fn a_thousand_receivers_keep_the_deadline_and_find_the_last() {
    let chans: Vec<_> = (0..1000)
        .map(|i| {
            shmlane::spsc::<u64>(&unique(&format!("r21-k{i}")))
                .capacity(2)
                .unlink(UnlinkPolicy::CreatorDrop)
                .create()
                .unwrap()
        })
        .collect();
    let mut txs: Vec<_> = chans.iter().map(|c| c.producer().unwrap()).collect();
    let mut rxs: Vec<_> = chans.iter().map(|c| c.consumer().unwrap()).collect();
    let mut sel = Select::new().spins(0);
    let t0 = Instant::now();
    {
        let mut list: Vec<&mut dyn PollSource> =
            rxs.iter_mut().map(|r| r as &mut dyn PollSource).collect();
        assert_eq!(
            sel.wait(&mut list, Some(Deadline::after(Duration::from_millis(100)))),
            Err(SelectError::Timeout)
        );
    }
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(100) && took < Duration::from_millis(600),
        "{took:?}"
    );
    txs[999].try_send(7).unwrap();
    let mut list: Vec<&mut dyn PollSource> =
        rxs.iter_mut().map(|r| r as &mut dyn PollSource).collect();
    assert_eq!(
        sel.wait(&mut list, Some(Deadline::after(Duration::from_secs(2)))),
        Ok(999)
    );
    drop(list);
    assert!(txs.iter_mut().all(|t| t.stats().wakeups == 0));
}

fn mt_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// `tokio::time::timeout` around `recv` on a multi-thread runtime, 200 times with nothing
/// sent: each ends by its deadline (plus a scheduling margin), and none leaves its
/// registration (the sender's next notify makes no futex call); then messages still arrive.
#[test]
fn async_recv_under_timeout_on_a_multi_thread_runtime() {
    let n = unique("r21-tmo");
    let ch = spsc(&n);
    let mut tx = ch.producer().unwrap();
    let rt = mt_rt();
    let mut rx = rt.block_on(async {
        let mut rx = AsyncReceiver::new(ch.consumer().unwrap()).unwrap();
        for k in 0..200u64 {
            let t0 = Instant::now();
            let r = tokio::time::timeout(Duration::from_millis(1 + k % 3), rx.recv()).await;
            assert!(r.is_err(), "nothing was sent");
            assert!(t0.elapsed() < Duration::from_millis(200), "{:?}", t0.elapsed());
        }
        rx
    });
    tx.try_send(1).unwrap();
    assert_eq!(tx.stats().wakeups, 0, "a timed-out recv left its registration");
    rt.block_on(async {
        assert_eq!(rx.recv().await, Ok(1));
        let h = tokio::spawn(async move {
            let v = rx.recv().await;
            (v, rx)
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        tx.try_send(2).unwrap();
        let (v, _rx) = tokio::time::timeout(Duration::from_secs(5), h)
            .await
            .expect("a queued wait was not woken")
            .unwrap();
        assert_eq!(v, Ok(2));
    });
}

/// An async receiver dropped while its io_uring futex wait is queued, then its channel closed
/// and unmapped: nothing breaks (the kernel holds no reference to the word), later sends on a
/// second channel still wake a new receiver, and the old registration is gone.
#[test]
fn an_async_receiver_dropped_with_its_wait_queued() {
    let rt = mt_rt();
    for _ in 0..20 {
        let n = unique("r21-dropq");
        let ch = mpmc(&n);
        let mut tx = ch.sender().unwrap();
        rt.block_on(async {
            let mut rx = AsyncReceiver::new(ch.receiver().unwrap()).unwrap();
            let r = tokio::time::timeout(Duration::from_millis(2), rx.recv()).await;
            assert!(r.is_err());
            // Poll once more and leave the future pending with its wait queued.
            let mut fut = Box::pin(rx.recv());
            let polled =
                std::future::poll_fn(|cx| std::task::Poll::Ready(fut.as_mut().poll(cx))).await;
            assert!(polled.is_pending());
            drop(fut);
            drop(rx);
        });
        tx.try_send(1).unwrap();
        assert_eq!(tx.stats().wakeups, 0);
        drop(tx);
        drop(ch);
    }
    // A new channel in the same process still works.
    let n = unique("r21-dropq-after");
    let ch = spsc(&n);
    let mut tx = ch.producer().unwrap();
    rt.block_on(async {
        let mut rx = AsyncReceiver::new(ch.consumer().unwrap()).unwrap();
        let h = tokio::spawn(async move { rx.recv().await });
        tokio::time::sleep(Duration::from_millis(10)).await;
        tx.try_send(5).unwrap();
        assert_eq!(
            tokio::time::timeout(Duration::from_secs(5), h)
                .await
                .unwrap()
                .unwrap(),
            Ok(5)
        );
    });
}

/// Two async receivers of one MPMC channel in one process (and an async sender): every message
/// is received exactly once, both tasks are woken, neither hangs.
#[test]
fn two_async_receivers_of_one_channel_in_one_process() {
    const N: u64 = 20_000;
    let n = unique("r21-two");
    let ch = mpmc(&n);
    let rt = mt_rt();
    let (mut a, mut b) = (ch.receiver().unwrap(), ch.receiver().unwrap());
    let got = rt.block_on(async {
        let mut tx = AsyncSender::new(ch.sender().unwrap()).unwrap();
        let ra = AsyncReceiver::new(std::mem::replace(&mut a, ch.receiver().unwrap())).unwrap();
        let rb = AsyncReceiver::new(std::mem::replace(&mut b, ch.receiver().unwrap())).unwrap();
        let take = |mut r: AsyncReceiver<shmlane::Receiver<u64>>| {
            tokio::spawn(async move {
                let mut v = Vec::new();
                loop {
                    match tokio::time::timeout(Duration::from_millis(300), r.recv()).await {
                        Ok(Ok(x)) => v.push(x),
                        Ok(Err(e)) => panic!("{e}"),
                        Err(_) => break v,
                    }
                }
            })
        };
        let (ha, hb) = (take(ra), take(rb));
        for v in 0..N {
            tx.send(v).await.unwrap();
            if v % 1000 == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        let (mut x, y) = (ha.await.unwrap(), hb.await.unwrap());
        x.extend(y);
        x
    });
    let mut got = got;
    // The spare receivers took nothing (they were never polled): nothing lost there.
    assert!(a.try_recv().is_err() && b.try_recv().is_err());
    got.sort_unstable();
    assert_eq!(got.len() as u64, N, "lost or duplicated");
    assert!(got.iter().enumerate().all(|(i, &v)| v == i as u64));
}

/// An async task waiting (under a timeout) while a hostile peer scribbles the event words and
/// the ring positions: it returns by the timeout or with a result, never panics or hangs.
#[test]
fn an_async_task_survives_a_scribbling_peer() {
    for ring in [false, true] {
        let n = unique("r21-ascr");
        let ch = spsc(&n);
        let _tx = ch.producer().unwrap();
        let stop = AtomicBool::new(false);
        let rt = mt_rt();
        std::thread::scope(|s| {
            let h = s.spawn(|| scribble(&n, ring, &stop));
            rt.block_on(async {
                let mut rx = AsyncReceiver::new(ch.consumer().unwrap()).unwrap();
                let t0 = Instant::now();
                while t0.elapsed() < Duration::from_millis(300) {
                    let t = Instant::now();
                    let _ = tokio::time::timeout(Duration::from_millis(20), rx.recv()).await;
                    assert!(t.elapsed() < Duration::from_millis(500), "{:?}", t.elapsed());
                }
            });
            stop.store(true, Ordering::Relaxed);
            assert!(h.join().unwrap() > 10);
        });
    }
}
