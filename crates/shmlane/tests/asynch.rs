//! Async endpoints (feature `tokio`): a task woken by a sender in another process through an
//! io_uring futex wait (no thread waits for it), streams, many channels in one task, dropped
//! futures at random points, a killed sender, an idle task's CPU, async senders and byte
//! claims, and the timer fallback.

use std::{
    future::Future,
    pin::Pin,
    task::Poll,
    time::{Duration, Instant},
};

use futures_core::Stream;
use shmlane::{
    ByteRecvError, RecvError, UnlinkPolicy,
    asynch::{AsyncReceiver, AsyncSender},
};
use shmlane_testkit::{child, child_role, finish, unique};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn spsc(name: &str, cap: u64) -> shmlane::Channel<u64> {
    shmlane::spsc::<u64>(name)
        .capacity(cap)
        .unlink(UnlinkPolicy::CreatorDrop)
        .create()
        .unwrap()
}

/// Threads of this process now that have not exited (see `shmlane_testkit::live_threads`).
fn threads() -> usize {
    shmlane_testkit::live_threads()
}

/// 1,000,000 messages from a sender process to a task on a current-thread runtime in a
/// receiver process: nothing lost, duplicated or reordered; the waits go through io_uring and
/// the receiver process starts no thread for them (its thread count, from /proc, stays the
/// same from before the runtime to the end).
#[test]
fn a_task_is_woken_by_a_sender_process_a_million_times() {
    const N: u64 = 1_000_000;
    let name = unique("async-1m");
    let _ch = spsc(&name, 1024);
    let rx = child("receiver", &["count", &name, &N.to_string()])
        .spawn()
        .unwrap();
    let tx = child("sender", &["spsc", &name, &N.to_string()])
        .spawn()
        .unwrap();
    assert_eq!(finish(tx, Duration::from_secs(120)).0, 0);
    let (code, out) = finish(rx, Duration::from_secs(120));
    assert_eq!(code, 0, "{out:?}");
    let parked: u64 = out[0].parse().unwrap();
    assert!(parked > 0, "the task never had to wait: nothing proven");
}

/// The receiver process of the million-message test: prints how many receives found the ring
/// empty (so the task waited).
fn receive_counting(name: &str, n: u64) {
    let ch = shmlane::spsc::<u64>(name).open().unwrap();
    let before = threads();
    let rt = rt();
    let parked = rt.block_on(async {
        let mut rx = AsyncReceiver::new(ch.consumer().unwrap()).unwrap();
        assert!(
            rx.uses_io_uring(),
            "io_uring futex waits refused on this kernel"
        );
        let mut parked = 0u64;
        for next in 0..n {
            if rx.get_mut().is_empty() {
                parked += 1;
            }
            assert_eq!(rx.recv().await, Ok(next), "lost, duplicated or reordered");
        }
        assert_eq!(threads(), before, "a thread was started for the waits");
        parked
    });
    println!("OUT:{parked}");
}

/// A future dropped at random points (each `recv` polled 1 to 4 times, then dropped unless it
/// completed; 100,000 messages):
/// nothing is lost or duplicated, and no registration is left behind (the sender's notifies
/// make no futex call once the task stopped waiting).
#[test]
fn dropped_futures_lose_nothing_and_leave_no_registration() {
    const N: u64 = 100_000;
    let name = unique("async-drop");
    let ch = spsc(&name, 64);
    let mut tx = ch.producer().unwrap();
    let rt = rt();
    let sender = std::thread::spawn(move || {
        for v in 0..N {
            tx.send(v, Some(shmlane::Deadline::after(Duration::from_secs(60))))
                .unwrap();
            if v % 8 == 0 {
                std::thread::sleep(Duration::from_micros(20));
            }
        }
        tx
    });
    let (dropped, mut rx) = rt.block_on(async {
        let mut rx = AsyncReceiver::new(ch.consumer().unwrap()).unwrap();
        let mut next = 0u64;
        let mut dropped = 0u64;
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        while next < N {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            // Polled 1 to 4 times, a yield or a short spin apart, then dropped if not done.
            let polls = 1 + seed % 4;
            let mut fut = std::pin::pin!(rx.recv());
            let mut done = None;
            for k in 0..polls {
                let polled = std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await;
                if let Poll::Ready(v) = polled {
                    done = Some(v);
                    break;
                }
                if (seed >> k) & 1 == 0 {
                    tokio::task::yield_now().await;
                } else {
                    let t = Instant::now();
                    while t.elapsed() < Duration::from_micros(seed % 20) {
                        std::hint::spin_loop();
                    }
                }
            }
            match done {
                Some(v) => {
                    assert_eq!(v.unwrap(), next, "lost or duplicated after a drop");
                    next += 1;
                }
                None => dropped += 1,
            }
        }
        (dropped, rx)
    });
    let mut tx = sender.join().unwrap();
    assert!(
        dropped > 100,
        "only {dropped} futures dropped: nothing proven"
    );
    // Nothing registered now: sends wake nobody.
    let woke = tx.stats().wakeups;
    for v in 0..10 {
        tx.try_send(v).unwrap();
    }
    assert_eq!(
        tx.stats().wakeups,
        woke,
        "a dropped future left its registration"
    );
    assert_eq!(rx.get_mut().len(), 10);
}

/// 100 channels fed by 10 sender processes, received by one task polling 100 streams: every
/// message once and in order per channel, each stream ending (`None`) when its sender left.
#[test]
fn one_task_receives_100_channels_from_10_processes() {
    const PER: u64 = 2_000;
    let names: Vec<String> = (0..100)
        .map(|i| unique(&format!("async-100-{i}")))
        .collect();
    let chans: Vec<_> = names
        .iter()
        .map(|n| {
            shmlane::spsc::<u64>(n)
                .capacity(256)
                .unlink(UnlinkPolicy::CreatorDrop)
                .when_peers_leave(shmlane::PeersLeave::Disconnect)
                .create()
                .unwrap()
        })
        .collect();
    let rt = rt();
    let counts = rt.block_on(async {
        let mut rxs: Vec<_> = chans
            .iter()
            .map(|c| AsyncReceiver::new(c.consumer().unwrap()).unwrap())
            .collect();
        let kids: Vec<_> = names
            .chunks(10)
            .map(|group| {
                let mut args = vec!["many".to_owned(), PER.to_string()];
                args.extend(group.iter().cloned());
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                child("sender", &args).spawn().unwrap()
            })
            .collect();
        let mut next = vec![0u64; rxs.len()];
        let mut open = vec![true; rxs.len()];
        std::future::poll_fn(|cx| {
            let mut progress = true;
            while progress {
                progress = false;
                for (i, rx) in rxs.iter_mut().enumerate() {
                    while open[i] {
                        match Pin::new(&mut *rx).poll_next(cx) {
                            Poll::Ready(Some(v)) => {
                                assert_eq!(v.unwrap(), next[i], "channel {i}");
                                next[i] += 1;
                                progress = true;
                            }
                            Poll::Ready(None) => open[i] = false,
                            Poll::Pending => break,
                        }
                    }
                }
            }
            if open.iter().any(|o| *o) {
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        })
        .await;
        for k in kids {
            assert_eq!(finish(k, Duration::from_secs(60)).0, 0);
        }
        next
    });
    assert!(counts.iter().all(|&c| c == PER), "{counts:?}");
}

/// A sender process killed while the task awaits: its messages first, then `PeerDied` within
/// the liveness bound (50 ms) plus scheduling.
#[test]
fn a_killed_sender_gives_the_task_peer_died_within_the_bound() {
    let name = unique("async-kill");
    let ch = spsc(&name, 64);
    let rt = rt();
    let kid = child("sender", &["die", &name]).spawn().unwrap();
    let (got, err, at) = rt.block_on(async {
        let mut rx = AsyncReceiver::new(ch.consumer().unwrap()).unwrap();
        let mut got = Vec::new();
        loop {
            match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
                Ok(Ok(v)) => got.push(v),
                Ok(Err(e)) => break (got, e, Instant::now()),
                Err(elapsed) => panic!("no PeerDied within 10 s ({elapsed})"),
            }
        }
    });
    let (code, out) = finish(kid, Duration::from_secs(10));
    assert_eq!(code, -1);
    assert_eq!((got, err), (vec![1, 2, 3], RecvError::PeerDied));
    let killed: u64 = out[0].parse().unwrap();
    let seen = shmlane_wake::sys::monotonic_ns()
        - u64::try_from(Instant::now().saturating_duration_since(at).as_nanos()).unwrap();
    let after = Duration::from_nanos(seen.saturating_sub(killed));
    assert!(
        after < Duration::from_millis(50 + 450),
        "PeerDied {after:?} after the kill"
    );
}

/// CPU time of this thread (utime + stime, clock ticks).
fn thread_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// An idle task awaiting a channel whose sender is attached and silent uses near-zero CPU
/// over 2 s (io_uring wait, woken every 50 ms for the liveness checks).
#[test]
fn an_idle_task_uses_near_zero_cpu() {
    let name = unique("async-idle");
    let ch = spsc(&name, 64);
    let _tx = ch.producer().unwrap();
    let rt = rt();
    let t0 = thread_ticks();
    rt.block_on(async {
        let mut rx = AsyncReceiver::new(ch.consumer().unwrap()).unwrap();
        let r = tokio::time::timeout(Duration::from_secs(2), rx.recv()).await;
        assert!(r.is_err(), "nothing was sent: {r:?}");
    });
    let ticks = thread_ticks() - t0;
    assert!(ticks <= 10, "{ticks} ticks of CPU in 2 s of an idle task");
}

/// An async sender awaits room in a full ring (a slow receiver thread), an async byte sender
/// claims and commits in place, a byte receiver and a broadcast subscriber receive: all of it
/// arrives, in order.
#[test]
fn async_senders_wait_for_room_and_byte_claims_commit() {
    let rt = rt();
    let name = unique("async-room");
    let ch = spsc(&name, 8);
    let mut rx = ch.consumer().unwrap();
    let slow = std::thread::spawn(move || {
        for v in 0..2_000u64 {
            assert_eq!(
                rx.recv(Some(shmlane::Deadline::after(Duration::from_secs(30)))),
                Ok(v)
            );
            if v % 100 == 0 {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    });
    let bname = unique("async-bytes");
    let bch = shmlane::bytes(&bname)
        .capacity(4096)
        .unlink(UnlinkPolicy::CreatorDrop)
        .create()
        .unwrap();
    let cname = unique("async-bcast");
    let cch = shmlane::broadcast(&cname)
        .unlink(UnlinkPolicy::CreatorDrop)
        .create()
        .unwrap();
    rt.block_on(async {
        let mut tx = AsyncSender::new(ch.producer().unwrap()).unwrap();
        for v in 0..2_000u64 {
            tx.send(v).await.unwrap();
        }
        let mut btx = AsyncSender::new(bch.byte_sender().unwrap()).unwrap();
        let mut brx = AsyncReceiver::new(bch.byte_receiver().unwrap()).unwrap();
        let mut sub = AsyncReceiver::new(cch.subscriber().unwrap()).unwrap();
        let mut publ = cch.publisher().unwrap();
        let recv = async {
            let mut buf = [0u8; 256];
            for k in 0..500u32 {
                let n = brx.recv(&mut buf).await.unwrap();
                assert_eq!(&buf[..n], format!("record {k}").as_bytes());
            }
        };
        let send = async {
            for k in 0..500u32 {
                let msg = format!("record {k}");
                let mut c = btx.claim(msg.len()).await.unwrap();
                c.write(0, msg.as_bytes());
                c.commit().unwrap();
            }
        };
        tokio::join!(recv, send);
        publ.send(b"fan-out").unwrap();
        let mut buf = [0u8; 64];
        let n = sub.recv(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"fan-out");
        drop(publ);
        assert_eq!(sub.recv(&mut buf).await, Err(ByteRecvError::Disconnected));
    });
    slow.join().unwrap();
}

/// Without io_uring (the fallback a kernel before 6.7 gets): a 1 ms timer, nothing lost.
#[test]
fn the_timer_fallback_loses_nothing() {
    let name = unique("async-fallback");
    let ch = spsc(&name, 64);
    let mut tx = ch.producer().unwrap();
    let rt = rt();
    let sender = std::thread::spawn(move || {
        for v in 0..20_000u64 {
            tx.send(v, Some(shmlane::Deadline::after(Duration::from_secs(30))))
                .unwrap();
            if v % 1000 == 0 {
                std::thread::sleep(Duration::from_millis(3));
            }
        }
    });
    rt.block_on(async {
        let mut rx = AsyncReceiver::with_io_uring(ch.consumer().unwrap(), false).unwrap();
        assert!(!rx.uses_io_uring());
        for v in 0..20_000u64 {
            assert_eq!(rx.recv().await, Ok(v));
        }
    });
    sender.join().unwrap();
}

/// Made outside a runtime: a clear error, not a panic.
#[test]
fn outside_a_runtime_is_a_clear_error() {
    let name = unique("async-nort");
    let ch = spsc(&name, 64);
    let e = AsyncReceiver::new(ch.consumer().unwrap()).unwrap_err();
    assert!(e.to_string().contains("tokio runtime"), "{e}");
}

/// A future that is polled once (it registers) and then dropped: the drop withdraws the
/// registration at once.
#[test]
fn a_future_dropped_after_one_poll_withdraws_its_registration() {
    let name = unique("async-poll1");
    let ch = spsc(&name, 64);
    let mut tx = ch.producer().unwrap();
    let rt = rt();
    rt.block_on(async {
        let mut rx = AsyncReceiver::new(ch.consumer().unwrap()).unwrap();
        {
            let mut fut = std::pin::pin!(rx.recv());
            let polled = std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await;
            assert!(polled.is_pending());
            // Registered now: a send wakes it (a futex call).
            tx.try_send(1).unwrap();
            assert_eq!(tx.stats().wakeups, 1);
        }
        // Dropped: the next sends wake nobody.
        tx.try_send(2).unwrap();
        tx.try_send(3).unwrap();
        assert_eq!(tx.stats().wakeups, 1);
        assert_eq!(rx.recv().await, Ok(1));
    });
}

#[test]
fn child_entry() {
    let Some((role, args)) = child_role() else {
        return;
    };
    if role == "receiver" {
        receive_counting(&args[1], args[2].parse().unwrap());
        return;
    }
    assert_eq!(role, "sender");
    let long = || Some(shmlane::Deadline::after(Duration::from_secs(60)));
    match args[0].as_str() {
        "spsc" => {
            let ch = shmlane::spsc::<u64>(&args[1]).open().unwrap();
            let mut tx = ch.producer().unwrap();
            let n: u64 = args[2].parse().unwrap();
            for v in 0..n {
                tx.send(v, long()).unwrap();
                // Now and then a pause, so the task drains the ring and waits.
                if v % 4096 == 0 {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
        }
        "many" => {
            let per: u64 = args[1].parse().unwrap();
            let chans: Vec<_> = args[2..]
                .iter()
                .map(|n| shmlane::spsc::<u64>(n).open().unwrap())
                .collect();
            let mut txs: Vec<_> = chans.iter().map(|c| c.producer().unwrap()).collect();
            for v in 0..per {
                for tx in &mut txs {
                    tx.send(v, long()).unwrap();
                }
                if v % 256 == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
        "die" => {
            let ch = shmlane::spsc::<u64>(&args[1]).open().unwrap();
            let mut tx = ch.producer().unwrap();
            for v in 1..=3 {
                tx.try_send(v).unwrap();
            }
            std::thread::sleep(Duration::from_millis(150));
            println!("OUT:{}", shmlane_wake::sys::monotonic_ns());
            // SAFETY: raising SIGKILL on this process.
            unsafe { libc::raise(libc::SIGKILL) };
            unreachable!();
        }
        other => panic!("unknown sender role {other}"),
    }
}

/// A parked task is woken at once by a send (its io_uring futex wait completes), not at the
/// end of its 50 ms liveness slice: 18 of 24 rounds, each sending 20 ms into the wait, must
/// end within 5 ms (a wait that never reaches the kernel makes a round take up to 50 ms).
#[test]
fn a_parked_task_is_woken_at_once() {
    let name = unique("async-wake");
    let ch = spsc(&name, 64);
    let mut tx = ch.producer().unwrap();
    let (times, sent) = std::sync::mpsc::channel();
    let sender = std::thread::spawn(move || {
        for round in 0..24u64 {
            std::thread::sleep(Duration::from_millis(20));
            let at = Instant::now();
            tx.try_send(round).unwrap();
            times.send(at).unwrap();
        }
    });
    let rt = rt();
    let slow = rt.block_on(async {
        let mut rx = AsyncReceiver::new(ch.consumer().unwrap()).unwrap();
        let mut slow = Vec::new();
        for round in 0..24u64 {
            assert_eq!(rx.recv().await, Ok(round));
            let took = Instant::now().saturating_duration_since(sent.recv().unwrap());
            if took >= Duration::from_millis(5) {
                slow.push(took);
            }
        }
        slow
    });
    sender.join().unwrap();
    assert!(
        slow.len() <= 6,
        "{} of 24 wakes took 5 ms or more: {slow:?}",
        slow.len()
    );
}

/// A runtime without the time driver (or the I/O one): a clear error, not a panic.
#[test]
fn a_runtime_without_its_drivers_is_a_clear_error() {
    let name = unique("async-nodrv");
    let ch = spsc(&name, 64);
    for rt in [
        tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .unwrap(),
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap(),
    ] {
        let e = rt.block_on(async { AsyncReceiver::new(ch.consumer().unwrap()).unwrap_err() });
        assert!(e.to_string().contains("enable_all"), "{e}");
    }
}
