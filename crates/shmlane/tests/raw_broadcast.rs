//! Typed broadcast with a run-time element layout (`raw_broadcast`, `RawPublisher`,
//! `RawSubscriber`): the channel is `broadcast_of::<T>`'s for a `T` of that layout and type name
//! (both ways); the borrow-free loan (`loan_ptr` / `publish_loan` / `abandon_loan`) publishes
//! through the ring's sequence lock, so a subscriber reading while the slot is written never
//! receives a torn element; lengths and loan misuse are errors, not panics; checksums.

use shmlane::{
    ByteRecvError, ElemError, ElemLayout, LoanError, OpenError, Start, UnlinkPolicy, raw_broadcast,
};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

type Quote = [u64; 4];

fn name(label: &str) -> String {
    shmlane_testkit::unique(label)
}

fn layout() -> ElemLayout {
    ElemLayout::new(32, 8).unwrap()
}

fn bytes_of(q: &Quote) -> Vec<u8> {
    q.iter().flat_map(|w| w.to_le_bytes()).collect()
}

#[test]
fn typed_and_run_time_endpoints_share_a_channel_both_ways() {
    // Run-time creates, typed opens.
    let n = name("rawb-both");
    let raw = raw_broadcast(&n, layout())
        .type_name("Quote")
        .capacity(16)
        .unlink(UnlinkPolicy::LastDetach)
        .create()
        .unwrap();
    let typed = shmlane::broadcast_of::<Quote>(&n)
        .type_name("Quote")
        .open()
        .unwrap();
    let mut sub = typed.typed_subscriber().unwrap();
    let mut p = raw.publisher().unwrap();
    assert_eq!(p.publish(&bytes_of(&[1, 2, 3, 4])), Ok(0));
    let ptr = p.loan_ptr().unwrap();
    let q = bytes_of(&[5, 6, 7, 8]);
    // SAFETY: the loan's 32 bytes, open until publish_loan.
    unsafe { core::ptr::copy_nonoverlapping(q.as_ptr(), ptr, q.len()) };
    assert_eq!(p.publish_loan(), Ok(1));
    assert_eq!(sub.try_recv_seq(), Ok(([1, 2, 3, 4], 0)));
    assert_eq!(sub.try_recv_seq(), Ok(([5, 6, 7, 8], 1)));
    drop((p, sub));

    // Typed creates, run-time opens.
    let n2 = name("rawb-both2");
    let typed = shmlane::broadcast_of::<Quote>(&n2)
        .type_name("Quote")
        .capacity(16)
        .unlink(UnlinkPolicy::LastDetach)
        .create()
        .unwrap();
    let raw = raw_broadcast(&n2, layout())
        .type_name("Quote")
        .open()
        .unwrap();
    let mut rsub = raw.subscriber_from(Start::Oldest).unwrap();
    let mut tp = typed.typed_publisher().unwrap();
    tp.publish(&[9, 10, 11, 12]);
    let mut out = [0u8; 32];
    assert_eq!(rsub.try_recv(&mut out), Ok(0));
    assert_eq!(out[..], bytes_of(&[9, 10, 11, 12])[..]);
    assert_eq!(
        rsub.try_recv(&mut out),
        Err(ElemError::Channel(ByteRecvError::Empty))
    );

    // Another layout or name: WrongType either way.
    for (size, align, ty) in [(24, 8, "Quote"), (32, 16, "Quote"), (32, 8, "Trade")] {
        let e = raw_broadcast(&n2, ElemLayout::new(size, align).unwrap())
            .type_name(ty)
            .open()
            .unwrap_err();
        assert!(
            matches!(e, OpenError::WrongType { .. }),
            "{size}/{align}/{ty}: {e}"
        );
    }
    let e = raw_broadcast(&n2, layout()).open().unwrap_err();
    assert!(
        matches!(e, OpenError::WrongType { .. }),
        "default name: {e}"
    );
    let e = shmlane::broadcast(&n2).open().unwrap_err();
    assert!(matches!(e, OpenError::WrongType { .. }), "byte form: {e}");
    // Not an SPSC channel.
    assert!(matches!(raw.producer(), Err(OpenError::WrongKind { .. })));
}

#[test]
fn lengths_and_loan_misuse_are_errors() {
    let n = name("rawb-misuse");
    let ch = raw_broadcast(&n, layout())
        .capacity(8)
        .unlink(UnlinkPolicy::LastDetach)
        .create()
        .unwrap();
    let mut p = ch.publisher().unwrap();
    let mut s = ch.subscriber_from(Start::Newest).unwrap();
    assert_eq!(
        p.publish(&[0; 31]),
        Err(ElemError::Length { size: 32, got: 31 })
    );
    assert_eq!(p.publish_loan(), Err(LoanError::NotOpen));
    assert!(!p.abandon_loan());
    let a = p.loan_ptr().unwrap();
    assert_eq!(p.loan_ptr(), Err(LoanError::Open));
    assert_eq!(
        p.publish(&[0; 32]),
        Err(ElemError::Channel(LoanError::Open))
    );
    // Abandoned: nothing delivered; the next loan is the same slot.
    assert!(p.abandon_loan());
    let mut out = [0u8; 32];
    assert_eq!(
        s.try_recv(&mut out),
        Err(ElemError::Channel(ByteRecvError::Empty))
    );
    assert_eq!(p.loan_ptr(), Ok(a));
    // SAFETY: the loan's 32 bytes, open.
    unsafe { core::ptr::write_bytes(a, 7, 32) };
    assert_eq!(p.publish_loan(), Ok(0));
    assert_eq!(
        s.try_recv(&mut [0u8; 33]),
        Err(ElemError::Length { size: 32, got: 33 })
    );
    assert_eq!(s.try_recv(&mut out), Ok(0));
    assert_eq!(out, [7; 32]);
    assert_eq!(p.stats().messages, 1);
}

#[test]
fn a_checksummed_channel_publishes_loans_with_their_checksum() {
    let n = name("rawb-ck");
    let ch = raw_broadcast(&n, layout())
        .checksum(true)
        .msg_size(36)
        .unlink(UnlinkPolicy::LastDetach)
        .create()
        .unwrap();
    let typed = shmlane::broadcast_of::<Quote>(&n)
        .type_name(&shmlane::default_type_name(layout()))
        .msg_size(36)
        .open()
        .unwrap();
    let mut tsub = typed.typed_subscriber().unwrap();
    let mut p = ch.publisher().unwrap();
    for k in 0..5u64 {
        let ptr = p.loan_ptr().unwrap();
        let q = bytes_of(&[k, k + 1, k + 2, k + 3]);
        // SAFETY: the loan's 32 bytes, open.
        unsafe { core::ptr::copy_nonoverlapping(q.as_ptr(), ptr, 32) };
        assert_eq!(p.publish_loan(), Ok(k));
        assert_eq!(tsub.try_recv_seq(), Ok(([k, k + 1, k + 2, k + 3], k)));
    }
    // Without room for the checksum the endpoints refuse.
    let n2 = name("rawb-ck2");
    let ch2 = raw_broadcast(&n2, layout())
        .checksum(true)
        .unlink(UnlinkPolicy::LastDetach)
        .create()
        .unwrap();
    assert!(matches!(ch2.publisher(), Err(OpenError::Mismatch { .. })));
}

/// A loan written slowly, a word at a time, while a subscriber spins on the slot: the
/// subscriber receives only whole elements (every byte of element k is k), in order.
#[test]
fn a_subscriber_never_receives_a_half_written_loan() {
    const ROUNDS: u64 = 3000;
    let n = name("rawb-torn");
    let ch = raw_broadcast(&n, ElemLayout::new(64, 8).unwrap())
        .capacity(2)
        .unlink(UnlinkPolicy::LastDetach)
        .create()
        .unwrap();
    let mut p = ch.publisher().unwrap();
    let mut s = ch.subscriber_from(Start::Newest).unwrap();
    let done = AtomicBool::new(false);
    std::thread::scope(|sc| {
        let reader = sc.spawn(|| {
            let mut out = [0u8; 64];
            let (mut got, mut last) = (0u64, None);
            while !done.load(Ordering::Acquire) || got < 1 {
                match s.try_recv(&mut out) {
                    Ok(seq) => {
                        let k = (seq % 251) as u8;
                        assert!(out.iter().all(|&b| b == k), "torn element {seq}: {out:?}");
                        assert!(last.is_none_or(|l| seq > l), "out of order");
                        last = Some(seq);
                        got += 1;
                    }
                    Err(ElemError::Channel(
                        ByteRecvError::Empty | ByteRecvError::Lapped { .. },
                    )) => {}
                    Err(e) => panic!("{e}"),
                }
            }
            got
        });
        for seq in 0..ROUNDS {
            let ptr = p.loan_ptr().unwrap();
            let k = (seq % 251) as u8;
            for w in 0..8 {
                #[allow(
                    clippy::cast_ptr_alignment,
                    reason = "the loan's pointer is 8-byte aligned (RawPublisher::loan_ptr)"
                )]
                let at = ptr.wrapping_add(w * 8).cast::<u64>();
                // SAFETY: the loan's 64 bytes are 8 words, 8-byte aligned, open; subscribers
                // load them atomically (same-size atomic stores here: no data race).
                let word = unsafe { AtomicU64::from_ptr(at) };
                word.store(u64::from_le_bytes([k; 8]), Ordering::Relaxed);
                for _ in 0..20 {
                    std::hint::spin_loop();
                }
            }
            assert_eq!(p.publish_loan(), Ok(seq));
        }
        done.store(true, Ordering::Release);
        let got = reader.join().unwrap();
        assert!(got > 0);
    });
}
