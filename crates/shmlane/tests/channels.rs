//! Channels within one process (threads) and between real processes.

use std::time::Duration;

use shmlane::{Deadline, RecvError, TryRecvError, UnlinkPolicy};
use shmlane_testkit::{Cleanup, child, child_role, finish, unique};

#[test]
fn child_entry() {
    let Some((role, args)) = child_role() else {
        return;
    };
    match role.as_str() {
        "send-then-hang" => {
            let ch = shmlane::spsc::<u64>(&args[0]).open().unwrap();
            let mut tx = ch.producer().unwrap();
            for i in 0..1000 {
                tx.send(i, None).unwrap();
            }
            println!("OUT:sent");
            std::thread::sleep(Duration::from_secs(300));
        }
        "send-range" => {
            let ch = shmlane::spsc::<u64>(&args[0]).open().unwrap();
            let mut tx = ch.producer().unwrap();
            let (from, to): (u64, u64) = (args[1].parse().unwrap(), args[2].parse().unwrap());
            for i in from..to {
                tx.send(i, None).unwrap();
            }
            println!("OUT:sent");
            if args[3] == "hang" {
                std::thread::sleep(Duration::from_secs(300));
            }
        }
        other => panic!("unknown role {other}"),
    }
    std::process::exit(0);
}

#[test]
fn spsc_in_order_then_disconnected() {
    let name = unique("chan-spsc");
    let _c = Cleanup(name.clone());
    let ch = shmlane::spsc::<u64>(&name).capacity(64).create().unwrap();
    let mut rx = ch.consumer().unwrap();
    let ch2 = ch.clone();
    let t = std::thread::spawn(move || {
        let mut tx = ch2.producer().unwrap();
        for i in 0..10_000u64 {
            tx.send(i, None).unwrap();
        }
    });
    for i in 0..10_000u64 {
        assert_eq!(
            rx.recv(Some(Deadline::after(Duration::from_secs(20)))),
            Ok(i)
        );
    }
    t.join().unwrap();
    assert_eq!(rx.recv(None), Err(RecvError::Disconnected));
    assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
    let st = rx.stats();
    assert_eq!(st.messages, 10_000);
}

#[test]
fn recv_times_out_on_empty_channel() {
    let name = unique("chan-timeout");
    let _c = Cleanup(name.clone());
    let ch = shmlane::spsc::<u64>(&name).create().unwrap();
    let _tx = ch.producer().unwrap();
    let mut rx = ch.consumer().unwrap();
    let d = Deadline::after(Duration::from_millis(30));
    assert_eq!(rx.recv(Some(d)), Err(RecvError::Timeout));
    assert!(d.is_past());
}

#[test]
fn mismatched_open_is_a_clear_error() {
    let name = unique("chan-mismatch");
    let _c = Cleanup(name.clone());
    let _ch = shmlane::spsc::<u64>(&name).capacity(64).create().unwrap();
    let e = shmlane::mpmc::<u64>(&name).open().unwrap_err();
    assert!(e.to_string().contains("exists as spsc"), "{e}");
    let e = shmlane::spsc::<u32>(&name).open().unwrap_err();
    assert!(e.to_string().contains("8-byte messages"), "{e}");
}

#[test]
fn mpmc_two_senders_two_receivers_threads() {
    let name = unique("chan-mpmc");
    let ch = shmlane::mpmc::<u64>(&name)
        .capacity(128)
        .unlink(UnlinkPolicy::LastDetach)
        .create()
        .unwrap();
    let per = 20_000u64;
    let mut got: Vec<u64> = std::thread::scope(|s| {
        for id in 0..2u64 {
            let mut tx = ch.sender().unwrap();
            s.spawn(move || {
                for i in 0..per {
                    tx.send((id << 32) | i, None).unwrap();
                }
            });
        }
        let rxs: Vec<_> = (0..2)
            .map(|_| {
                let mut rx = ch.receiver().unwrap();
                s.spawn(move || {
                    let mut v = Vec::new();
                    loop {
                        match rx.recv(Some(Deadline::after(Duration::from_secs(30)))) {
                            Ok(x) => v.push(x),
                            Err(RecvError::Disconnected) => return v,
                            Err(e) => panic!("{e}"),
                        }
                    }
                })
            })
            .collect();
        rxs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    got.sort_unstable();
    let mut want: Vec<u64> = (0..2u64)
        .flat_map(|id| (0..per).map(move |i| (id << 32) | i))
        .collect();
    want.sort_unstable();
    assert_eq!(got, want);
    drop(ch);
    assert!(
        !std::path::Path::new(&format!("/dev/shm/{name}")).exists(),
        "LastDetach left the name"
    );
}

/// A producer process dies (SIGKILL) while the consumer is parked: the consumer gets what was
/// sent, then `PeerDied`, without hanging.
#[test]
fn killed_producer_is_reported_to_a_parked_consumer() {
    let name = unique("chan-kill");
    let _c = Cleanup(name.clone());
    let ch = shmlane::spsc::<u64>(&name).capacity(4096).create().unwrap();
    let mut rx = ch.consumer().unwrap();
    let mut prod = child("send-then-hang", &[&name]).spawn().unwrap();
    for i in 0..1000 {
        assert_eq!(
            rx.recv(Some(Deadline::after(Duration::from_secs(30)))),
            Ok(i)
        );
    }
    // The consumer parks on the empty ring; kill the producer meanwhile.
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        prod.kill().unwrap();
        prod.wait().unwrap();
    });
    assert_eq!(
        rx.recv(Some(Deadline::after(Duration::from_secs(30)))),
        Err(RecvError::PeerDied)
    );
    killer.join().unwrap();
}

/// A producer process dies; a restarted producer process takes its role over (the dead
/// holder's claim) and the consumer, which saw `PeerDied` meanwhile, receives from it.
#[test]
fn restarted_producer_reattaches() {
    let name = unique("chan-restart");
    let _c = Cleanup(name.clone());
    let ch = shmlane::spsc::<u64>(&name).capacity(4096).create().unwrap();
    let mut rx = ch.consumer().unwrap();
    let mut first = child("send-range", &[&name, "0", "500", "hang"])
        .spawn()
        .unwrap();
    let d = || Some(Deadline::after(Duration::from_secs(30)));
    for i in 0..500 {
        assert_eq!(rx.recv(d()), Ok(i));
    }
    first.kill().unwrap();
    first.wait().unwrap();
    assert_eq!(rx.recv(d()), Err(RecvError::PeerDied));
    let second = child("send-range", &[&name, "500", "1000", "exit"])
        .spawn()
        .unwrap();
    for i in 500..1000 {
        assert_eq!(rx.recv(d()), Ok(i), "from the restarted producer");
    }
    let (code, out) = finish(second, Duration::from_secs(60));
    assert_eq!(code, 0);
    assert_eq!(out, ["sent"]);
}
