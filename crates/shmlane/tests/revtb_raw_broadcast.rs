//! Review revtb of the run-time typed broadcast (`raw_broadcast`, `RawPublisher` loans):
//! a publisher closed with a loan open and a new publisher taking over, a subscriber that
//! attaches while a loan is open, the loan pointer's slot across laps, an element whose size
//! is not a multiple of 8 on a checksummed channel (the checksum after it in the same slot).

use shmlane::{ByteRecvError, ElemError, ElemLayout, Start, UnlinkPolicy, raw_broadcast};

fn name(label: &str) -> String {
    shmlane_testkit::unique(label)
}

fn elem(v: u8, size: usize) -> Vec<u8> {
    (0..size).map(|i| v.wrapping_add(i as u8)).collect()
}

/// Writes `bytes` through the loan's pointer (the documented C use).
fn write_loan(ptr: *mut u8, bytes: &[u8]) {
    // SAFETY: the loan is open and its slot holds `elem_size` >= bytes.len() bytes; single
    // thread, no subscriber reads concurrently in these tests.
    unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), ptr, bytes.len()) };
}

#[test]
fn a_publisher_closed_mid_loan_is_taken_over_and_the_half_element_never_delivered() {
    let n = name("revtb-takeover");
    let ch = raw_broadcast(&n, ElemLayout::new(32, 8).unwrap())
        .capacity(4)
        .unlink(UnlinkPolicy::LastDetach)
        .create()
        .unwrap();
    let mut sub = ch.subscriber_from(Start::Seq(0)).unwrap();
    let mut out = [0u8; 32];
    let mut a = ch.publisher().unwrap();
    assert_eq!(a.publish(&elem(1, 32)), Ok(0));
    let ptr = a.loan_ptr().unwrap();
    write_loan(ptr, &[0xAA; 16]); // half an element
    drop(a); // closed with the loan open: abandoned
    assert_eq!(sub.try_recv(&mut out), Ok(0));
    assert_eq!(out.to_vec(), elem(1, 32));
    assert!(
        sub.try_recv(&mut out).is_err(),
        "the half element is no message"
    );
    let mut b = ch.publisher().unwrap();
    assert_eq!(
        b.next_seq(),
        1,
        "the new publisher resumes at the abandoned position"
    );
    let p2 = b.loan_ptr().unwrap();
    assert_eq!(p2, ptr, "the same slot is lent again");
    write_loan(p2, &elem(2, 32));
    assert_eq!(b.publish_loan(), Ok(1));
    assert_eq!(b.publish(&elem(3, 32)), Ok(2));
    let got = sub.try_recv(&mut out);
    assert_eq!(got, Ok(1));
    assert_eq!(out.to_vec(), elem(2, 32));
    assert_eq!(sub.try_recv(&mut out), Ok(2));
    assert_eq!(out.to_vec(), elem(3, 32));
    assert_eq!(sub.lost(), 0);
}

#[test]
fn a_subscriber_attached_during_a_loan_receives_the_loaned_element() {
    let n = name("revtb-newest");
    let ch = raw_broadcast(&n, ElemLayout::new(24, 8).unwrap())
        .capacity(2)
        .unlink(UnlinkPolicy::LastDetach)
        .create()
        .unwrap();
    let mut p = ch.publisher().unwrap();
    for i in 0..5u8 {
        assert_eq!(p.publish(&elem(i, 24)), Ok(u64::from(i)));
    }
    let ptr = p.loan_ptr().unwrap();
    // Attached while slot 5 (message 3's) is busy: from now on, and the oldest is 4.
    let mut newest = ch.subscriber_from(Start::Newest).unwrap();
    let mut oldest = ch.subscriber_from(Start::Oldest).unwrap();
    let mut out = [0u8; 24];
    assert_eq!(
        newest.try_recv(&mut out),
        Err(ElemError::Channel(ByteRecvError::Empty))
    );
    write_loan(ptr, &elem(50, 24));
    assert_eq!(p.publish_loan(), Ok(5));
    assert_eq!(newest.try_recv(&mut out), Ok(5));
    assert_eq!(out.to_vec(), elem(50, 24));
    assert_eq!(oldest.try_recv(&mut out), Ok(4));
    assert_eq!(out.to_vec(), elem(4, 24));
    assert_eq!(oldest.try_recv(&mut out), Ok(5));
    assert_eq!(out.to_vec(), elem(50, 24));
    assert_eq!((newest.lost(), oldest.lost()), (0, 0));
}

#[test]
fn loan_pointers_follow_the_slots_around_the_ring() {
    let n = name("revtb-slots");
    let ch = raw_broadcast(&n, ElemLayout::new(16, 8).unwrap())
        .capacity(4)
        .unlink(UnlinkPolicy::LastDetach)
        .create()
        .unwrap();
    let mut sub = ch.subscriber_from(Start::Seq(0)).unwrap();
    let mut p = ch.publisher().unwrap();
    let mut ptrs = Vec::new();
    let mut out = [0u8; 16];
    for i in 0..12u8 {
        let ptr = p.loan_ptr().unwrap();
        assert_eq!(ptr as usize % 8, 0, "8-byte aligned");
        ptrs.push(ptr as usize);
        write_loan(ptr, &elem(i, 16));
        assert_eq!(p.publish_loan(), Ok(u64::from(i)));
        assert_eq!(sub.try_recv(&mut out), Ok(u64::from(i)));
        assert_eq!(out.to_vec(), elem(i, 16));
    }
    let stride = ptrs[1] - ptrs[0];
    assert!(stride >= 16 + 16, "slot header + element: {stride}");
    for (i, w) in ptrs.windows(2).enumerate() {
        if (i + 1) % 4 == 0 {
            assert_eq!(w[1], ptrs[0], "position {} is slot 0 again", i + 1);
        } else {
            assert_eq!(w[1] - w[0], stride, "position {}", i + 1);
        }
    }
}

#[test]
fn a_checksummed_element_of_12_bytes_published_by_loan_is_delivered_intact() {
    let n = name("revtb-ck12");
    let ch = raw_broadcast(&n, ElemLayout::new(12, 4).unwrap())
        .checksum(true)
        .msg_size(16)
        .capacity(4)
        .unlink(UnlinkPolicy::LastDetach)
        .create()
        .unwrap();
    let mut sub = ch.subscriber_from(Start::Seq(0)).unwrap();
    let mut p = ch.publisher().unwrap();
    let mut out = [0u8; 12];
    for i in 0..9u8 {
        if i % 2 == 0 {
            let ptr = p.loan_ptr().unwrap();
            write_loan(ptr, &elem(i, 12));
            assert_eq!(p.publish_loan(), Ok(u64::from(i)));
        } else {
            assert_eq!(p.publish(&elem(i, 12)), Ok(u64::from(i)));
        }
        assert_eq!(sub.try_recv(&mut out), Ok(u64::from(i)), "message {i}");
        assert_eq!(out.to_vec(), elem(i, 12));
    }
}
