//! Review rev19 (issue 19, the C ABI's guarantees as the Rust channels give them): a receive
//! into a buffer too small for the next message reports its length and consumes nothing, on
//! every channel kind, checksummed or not (the C ABI's `SHMLANE_E_BUFFER_TOO_SMALL` promises
//! "it was not consumed").

use shmlane::{ByteRecvError, PeersLeave};
use shmlane_testkit::{Cleanup, unique};

/// A checksummed broadcast subscriber whose buffer is too small for the next message: the
/// message was taken from the ring into the scratch buffer and dropped (82ca542), so the
/// retry with a large enough buffer got the message after it.
#[test]
fn a_too_small_buffer_on_a_checksummed_broadcast_loses_nothing() {
    let name = unique("rev19-bcast-small");
    let _c = Cleanup(name.clone());
    let ch = shmlane::broadcast(&name)
        .when_peers_leave(PeersLeave::Disconnect)
        .capacity(8)
        .msg_size(60)
        .checksum(true)
        .create()
        .unwrap();
    let mut tx = ch.publisher().unwrap();
    let mut rx = ch.subscriber().unwrap();
    tx.send(b"sixteen bytes!!!").unwrap();
    let mut small = [0u8; 4];
    for _ in 0..2 {
        assert_eq!(
            rx.try_recv(&mut small),
            Err(ByteRecvError::BufferTooSmall { needed: 16 })
        );
        assert_eq!(rx.next_seq(), 0, "the message was not consumed");
    }
    // The held message makes a pollable descriptor ready at once (not only the next publish).
    let mut poll = shmlane::RecvPoll::new(&rx).unwrap();
    assert_eq!(poll.rearm(&mut rx), Ok(shmlane::Armed::Ready));
    drop(poll);
    tx.send(b"after").unwrap();
    // A buffer that fits the message but not its checksum (the scratch path), then one that
    // fits both.
    let mut buf = [0u8; 20];
    assert_eq!(
        rx.try_recv_seq(&mut buf[..16]),
        Ok((16, 0)),
        "the message a too-small buffer was refused for comes next"
    );
    assert_eq!(&buf[..16], b"sixteen bytes!!!");
    assert_eq!(
        rx.recv(
            &mut small,
            Some(shmlane::Deadline::after(std::time::Duration::ZERO))
        ),
        Err(ByteRecvError::BufferTooSmall { needed: 5 })
    );
    assert_eq!(rx.recv_seq(&mut buf, None), Ok((5, 1)));
    assert_eq!(&buf[..5], b"after");
    assert_eq!(rx.try_recv(&mut buf), Err(ByteRecvError::Empty));
    assert_eq!(rx.stats().lost, 0);
}

/// Run-time (C ABI) element channels: a slice receive reports `Disconnected` once the sender
/// left and everything it sent was received (a hand mutation dropping that check in
/// `RawConsumer::try_recv_slice` survived every existing test on 82ca542).
#[test]
fn a_run_time_slice_receive_reports_the_sender_gone() {
    use shmlane::{ElemError, ElemLayout, TryRecvError};
    let layout = ElemLayout::new(12, 4).unwrap();
    for kind in ["spsc", "mpmc"] {
        let name = unique(&format!("rev19-raw-slice-{kind}"));
        let _c = Cleanup(name.clone());
        let b = if kind == "spsc" {
            shmlane::raw_spsc(&name, layout)
        } else {
            shmlane::raw_mpmc(&name, layout)
        };
        let ch = b
            .capacity(8)
            .when_peers_leave(PeersLeave::Disconnect)
            .create()
            .unwrap();
        let elems: Vec<u8> = (0..24).collect();
        let mut out = [0u8; 48];
        let got: Vec<Result<usize, ElemError<TryRecvError>>> = if kind == "spsc" {
            let mut rx = ch.consumer().unwrap();
            let mut tx = ch.producer().unwrap();
            assert_eq!(tx.try_send_slice(&elems), Ok(2));
            drop(tx);
            vec![rx.try_recv_slice(&mut out), rx.try_recv_slice(&mut out)]
        } else {
            let mut rx = ch.receiver().unwrap();
            let mut tx = ch.sender().unwrap();
            assert_eq!(tx.try_send_slice(&elems), Ok(2));
            drop(tx);
            vec![rx.try_recv_slice(&mut out), rx.try_recv_slice(&mut out)]
        };
        assert_eq!(&out[..24], &elems[..], "{kind}");
        assert_eq!(
            got,
            vec![Ok(2), Err(ElemError::Channel(TryRecvError::Disconnected))],
            "{kind}"
        );
    }
}

/// A poll handle rearmed with a receiver of another channel is refused (it would register on
/// one channel's event and check the other's ring: a wake-up never delivered). A hand mutation
/// removing the check survived every existing test on 82ca542.
#[test]
fn a_poll_handle_refuses_a_receiver_of_another_channel() {
    let (a, b) = (unique("rev19-poll-a"), unique("rev19-poll-b"));
    let (_ca, _cb) = (Cleanup(a.clone()), Cleanup(b.clone()));
    let cha = shmlane::spsc::<u64>(&a).capacity(4).create().unwrap();
    let chb = shmlane::spsc::<u64>(&b).capacity(4).create().unwrap();
    let mut rxa = cha.consumer().unwrap();
    let mut rxb = chb.consumer().unwrap();
    let mut poll = shmlane::RecvPoll::new(&rxa).unwrap();
    assert_eq!(
        poll.rearm(&mut rxb),
        Err(shmlane::RearmError::WrongReceiver)
    );
    assert!(!poll.is_armed());
    assert_eq!(poll.rearm(&mut rxa), Ok(shmlane::Armed::Waiting));
}

#[repr(C, align(4096))]
#[derive(Clone, Copy, Debug, PartialEq)]
struct Page([u64; 512]);
// SAFETY: plain data, no padding.
unsafe impl bytemuck::Zeroable for Page {}
// SAFETY: as above.
unsafe impl bytemuck::Pod for Page {}

/// A typed channel of an element aligned above 128 (the ring region's alignment, and the
/// ring region in a segment is not page-aligned): refused. On 82ca542 it was created, its
/// slots at addresses misaligned for the type (undefined behaviour from safe code, silent).
#[test]
fn a_channel_of_a_page_aligned_type_is_refused() {
    let name = unique("rev19-page");
    let _c = Cleanup(name.clone());
    let r = shmlane::spsc::<Page>(&name).capacity(2).create();
    assert!(
        matches!(
            &r,
            Err(shmlane::OpenError::Create(shmlane_segment::CreateError::Init { source, .. }))
                if format!("{source:?}").contains("Misaligned")
        ),
        "{:?}",
        r.as_ref().err()
    );
}

/// An armed poll handle becomes readable for a message whose send made no futex wake (a
/// hostile peer zeroed the event's sleeper count after the registration, so the sender saw
/// no sleeper): the watcher's periodic look at the ring's positions finds it. A hand mutation
/// removing that look survived every existing test on 82ca542 (the hostile-event test's
/// random words also bump the sequence word, which hides it).
#[test]
fn an_armed_poll_handle_sees_a_message_sent_without_a_wake() {
    use std::os::{fd::AsRawFd, unix::fs::FileExt};
    let name = unique("rev19-poll-nowake");
    let _c = Cleanup(name.clone());
    let ch = shmlane::spsc::<u64>(&name)
        .capacity(8)
        .unlink(shmlane::UnlinkPolicy::Never)
        .create()
        .unwrap();
    let path = format!("/dev/shm/{name}");
    let info = shmlane_segment::inspect(std::path::Path::new(&path))
        .unwrap()
        .unwrap();
    let ev = info
        .regions
        .iter()
        .find(|r| r.name == "ev-data")
        .unwrap()
        .offset;
    let mut tx = ch.producer().unwrap();
    let mut rx = ch.consumer().unwrap();
    let mut poll = shmlane::RecvPoll::new(&rx).unwrap();
    assert_eq!(poll.rearm(&mut rx), Ok(shmlane::Armed::Waiting));
    // The event's words: magic, seq, sleepers, reserved (u32 each).
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.write_all_at(&0u32.to_ne_bytes(), ev + 8).unwrap();
    tx.try_send(7).unwrap();
    assert_eq!(tx.stats().wakeups, 0, "the send made no futex wake");
    let mut p = libc::pollfd {
        fd: poll.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let n = unsafe { libc::poll(&raw mut p, 1, 2_000) };
    assert_eq!(n, 1, "not readable 2 s after a send");
    assert_eq!(rx.try_recv(), Ok(7));
}
