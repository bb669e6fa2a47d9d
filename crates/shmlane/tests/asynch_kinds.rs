//! Async endpoints of the other kinds: the byte and broadcast receivers' `Stream`s, the typed
//! subscriber's, and the latest-value reader's `changed().await`, with a writer in another
//! process; a dropped `changed` future leaves no registration.

use std::{future::Future, pin::Pin, task::Poll, time::Duration};

use futures_core::Stream;
use shmlane::{
    ByteRecvError, UnlinkPolicy,
    asynch::{AsyncLatest, AsyncReceiver},
};
use shmlane_testkit::{child, child_role, finish, unique};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The next item of a stream.
async fn next<S: Stream + Unpin>(s: &mut S) -> Option<S::Item> {
    std::future::poll_fn(|cx| Pin::new(&mut *s).poll_next(cx)).await
}

/// A byte channel's and a broadcast channel's streams: every message as sent, then `None`
/// when the senders left; a lapped subscriber's stream says how many it lost.
#[test]
fn byte_and_broadcast_streams_end_when_the_senders_leave() {
    let rt = rt();
    let b = shmlane::bytes(&unique("ak-bytes"))
        .capacity(4096)
        .unlink(UnlinkPolicy::CreatorDrop)
        .create()
        .unwrap();
    let c = shmlane::broadcast(&unique("ak-bcast"))
        .capacity(8)
        .msg_size(64)
        .unlink(UnlinkPolicy::CreatorDrop)
        .create()
        .unwrap();
    let mut tx = b.byte_sender().unwrap();
    let mut publ = c.publisher().unwrap();
    let sub = c.subscriber().unwrap();
    let rx = b.byte_receiver().unwrap();
    let sender = std::thread::spawn(move || {
        for k in 0..300u32 {
            let msg = format!("message {k}");
            tx.send(
                msg.as_bytes(),
                Some(shmlane::Deadline::after(Duration::from_secs(30))),
            )
            .unwrap();
        }
    });
    rt.block_on(async {
        let mut rx = AsyncReceiver::new(rx).unwrap();
        for k in 0..300u32 {
            let m = next(&mut rx).await.unwrap().unwrap();
            assert_eq!(m, format!("message {k}").into_bytes());
        }
        assert_eq!(
            next(&mut rx).await,
            None,
            "the sender left: the stream ends"
        );
        let mut sub = AsyncReceiver::new(sub).unwrap();
        // 20 into a ring of 8 before the subscriber looks: it is lapped.
        for k in 0..20u8 {
            publ.send(&[k; 3]).unwrap();
        }
        let first = next(&mut sub).await.unwrap();
        assert!(
            matches!(first, Err(ByteRecvError::Lapped { lost }) if lost > 0),
            "{first:?}"
        );
        let mut last = 0;
        while let Some(Ok(m)) = tokio::time::timeout(Duration::from_millis(50), next(&mut sub))
            .await
            .ok()
            .flatten()
        {
            assert_eq!(m.len(), 3);
            last = m[0];
        }
        assert_eq!(last, 19, "the newest message arrives after the lap");
        drop(publ);
        assert_eq!(next(&mut sub).await, None);
    });
    sender.join().unwrap();
}

/// A typed subscriber's stream.
#[test]
fn a_typed_subscriber_streams_values() {
    let rt = rt();
    let c = shmlane::broadcast_of::<u64>(&unique("ak-typed"))
        .capacity(64)
        .unlink(UnlinkPolicy::CreatorDrop)
        .create()
        .unwrap();
    let mut publ = c.typed_publisher().unwrap();
    let sub = c.typed_subscriber().unwrap();
    rt.block_on(async {
        let mut sub = AsyncReceiver::new(sub).unwrap();
        let feeder = std::thread::spawn(move || {
            for v in 0..50u64 {
                publ.publish(&v);
                std::thread::sleep(Duration::from_micros(300));
            }
        });
        for v in 0..50u64 {
            assert_eq!(next(&mut sub).await.unwrap(), Ok(v));
        }
        feeder.join().unwrap();
        assert_eq!(next(&mut sub).await, None);
    });
}

/// A writer process publishes 2,000 versions; the async reader sees increasing versions,
/// each value matching its version, never a torn one, and the last one.
#[test]
fn an_async_latest_reader_follows_a_writer_process() {
    let name = unique("ak-latest");
    let ch = shmlane::latest::<[u64; 4]>(&name)
        .unlink(UnlinkPolicy::CreatorDrop)
        .create()
        .unwrap();
    let rt = rt();
    let kid = child("writer", &[&name]).spawn().unwrap();
    let seen = rt.block_on(async {
        let mut r = AsyncLatest::new(ch.reader().unwrap()).unwrap();
        assert!(r.uses_io_uring());
        let mut last = 0u64;
        let mut seen = 0u64;
        loop {
            let (v, ver) = tokio::time::timeout(Duration::from_secs(30), r.changed())
                .await
                .expect("a change within 30 s")
                .unwrap();
            assert!(ver > last, "versions go up: {ver} after {last}");
            assert!(v.iter().all(|&w| w == v[0]), "torn value {v:?}");
            last = ver;
            seen += 1;
            if v[0] == 1999 {
                break seen;
            }
        }
    });
    assert_eq!(finish(kid, Duration::from_secs(30)).0, 0);
    assert!(seen >= 2, "{seen}");
}

/// A `changed` future polled once (registered) and dropped: the writer's next writes wake
/// nobody (its wake-up count stays).
#[test]
fn a_dropped_changed_future_withdraws_its_registration() {
    let ch = shmlane::latest::<u64>(&unique("ak-drop"))
        .unlink(UnlinkPolicy::CreatorDrop)
        .create()
        .unwrap();
    let mut w = ch.writer().unwrap();
    let rt = rt();
    rt.block_on(async {
        let mut r = AsyncLatest::new(ch.reader().unwrap()).unwrap();
        {
            let mut fut = std::pin::pin!(r.changed());
            let polled = std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await;
            assert!(polled.is_pending());
            w.write(&1).unwrap();
            assert_eq!(w.stats().wakeups, 1, "registered: the write woke it");
        }
        w.write(&2).unwrap();
        w.write(&3).unwrap();
        assert_eq!(
            w.stats().wakeups,
            1,
            "a dropped future left its registration"
        );
        assert_eq!(r.changed().await.unwrap().0, 3);
    });
}

#[test]
fn child_entry() {
    let Some((role, args)) = child_role() else {
        return;
    };
    assert_eq!(role, "writer");
    let ch = shmlane::latest::<[u64; 4]>(&args[0]).open().unwrap();
    let mut w = ch.writer().unwrap();
    for k in 0..2000u64 {
        w.write(&[k; 4]).unwrap();
        if k % 100 == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}
