//! Unit tests of the run-time element layouts (small: they run under Miri).

use crate::{
    AttachError, ChunkError, DynMpmcRing, DynSpscRing, ElemLayout, HeapRegion, MpmcRing, PopError,
    PushError, SpscRing,
    slot::{DynStamped, Slot},
};

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
struct Quote {
    px: f64,
    qty: u32,
    side: u32,
    ts: u64,
}

fn q(i: u64) -> Quote {
    Quote {
        px: f64::from(i as u32) + 0.5,
        qty: i as u32 * 3,
        side: 7,
        ts: i << 20,
    }
}

fn alive(_: u64) -> bool {
    true
}

#[test]
fn stamped_geometry_is_the_typed_slots() {
    #[repr(C, align(64))]
    #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
    struct Line([u8; 64]);
    fn check<T: bytemuck::Pod>() {
        let g = DynStamped::new(ElemLayout::of::<T>());
        assert_eq!(g.stride, size_of::<Slot<T>>(), "stride");
        assert_eq!(g.value_off, core::mem::offset_of!(Slot<T>, value), "value");
        assert_eq!(
            DynMpmcRing::required_size(ElemLayout::of::<T>(), 8),
            MpmcRing::<T>::required_size(8)
        );
    }
    check::<Quote>();
    check::<[u8; 3]>();
    check::<u16>();
    check::<[u64; 512]>();
    check::<[u8; 13]>();
    check::<Line>();
    assert_eq!(
        DynSpscRing::required_size(ElemLayout::of::<Quote>(), 8),
        SpscRing::<Quote>::required_size(8)
    );
}

#[test]
fn spsc_typed_and_run_time_handles_share_a_ring_both_ways() {
    let l = ElemLayout::new(24, 8).unwrap();
    for typed_creates in [true, false] {
        let r = HeapRegion::new(SpscRing::<Quote>::required_size(4));
        let (ptr, len) = (r.as_ptr(), r.len());
        // SAFETY: the region outlives the handles (dropped at the end of the loop body).
        unsafe {
            if typed_creates {
                SpscRing::<Quote>::init(ptr, len, 4, u64::MAX - 2).unwrap();
            } else {
                DynSpscRing::init(ptr, len, l, 4, u64::MAX - 2).unwrap();
            }
            let mut tp = SpscRing::<Quote>::producer(ptr, len, 1, &alive).unwrap();
            let mut dc = DynSpscRing::consumer(ptr, len, l, 2, &alive).unwrap();
            let mut buf = [0u8; 24];
            for i in 0..6 {
                tp.push(q(i)).unwrap();
                dc.pop(&mut buf).unwrap();
                assert_eq!(bytemuck::pod_read_unaligned::<Quote>(&buf), q(i));
            }
            drop((tp, dc));
            let mut dp = DynSpscRing::producer(ptr, len, l, 1, &alive).unwrap();
            let mut tc = SpscRing::<Quote>::consumer(ptr, len, 2, &alive).unwrap();
            for i in 0..6 {
                dp.push(bytemuck::bytes_of(&q(i))).unwrap();
                assert_eq!(tc.pop(), Ok(q(i)));
            }
        }
    }
}

#[test]
fn mpmc_typed_and_run_time_handles_share_a_ring_both_ways() {
    let l = ElemLayout::new(24, 8).unwrap();
    for typed_creates in [true, false] {
        let r = HeapRegion::new(MpmcRing::<Quote>::required_size(4));
        let (ptr, len) = (r.as_ptr(), r.len());
        // SAFETY: the region outlives the handles.
        unsafe {
            if typed_creates {
                MpmcRing::<Quote>::init(ptr, len, 4, u64::MAX - 2).unwrap();
            } else {
                DynMpmcRing::init(ptr, len, l, 4, u64::MAX - 2).unwrap();
            }
            let ts = MpmcRing::<Quote>::sender(ptr, len).unwrap();
            let tr = MpmcRing::<Quote>::receiver(ptr, len).unwrap();
            let ds = DynMpmcRing::sender(ptr, len, l).unwrap();
            let dr = DynMpmcRing::receiver(ptr, len, l).unwrap();
            let mut buf = [0u8; 24];
            for i in 0..6 {
                ts.push(q(i)).unwrap();
                dr.pop(&mut buf).unwrap();
                assert_eq!(bytemuck::pod_read_unaligned::<Quote>(&buf), q(i));
                ds.push(bytemuck::bytes_of(&q(i + 100))).unwrap();
                assert_eq!(tr.pop(), Ok(q(i + 100)));
            }
            drop((ts, tr, ds, dr));
        }
    }
}

#[test]
fn another_size_or_alignment_is_wrong_element() {
    let r = HeapRegion::new(MpmcRing::<Quote>::required_size(4) + 4096);
    let (ptr, len) = (r.as_ptr(), r.len());
    // SAFETY: the region outlives the handles.
    unsafe {
        MpmcRing::<Quote>::init(ptr, len, 4, 0).unwrap();
        for (s, a) in [(16, 8), (24, 4), (32, 8), (24, 1)] {
            let l = ElemLayout::new(s, a).unwrap();
            assert_eq!(
                DynMpmcRing::sender(ptr, len, l).err(),
                Some(AttachError::WrongElement { size: 24, align: 8 })
            );
        }
        SpscRing::<Quote>::init(ptr, len, 4, 0).unwrap();
        let l = ElemLayout::new(24, 4).unwrap();
        assert_eq!(
            DynSpscRing::producer(ptr, len, l, 1, &alive).err(),
            Some(AttachError::WrongElement { size: 24, align: 8 })
        );
        // A run-time ring refuses a typed handle of another type too.
        DynSpscRing::init(ptr, len, l, 4, 0).unwrap();
        assert_eq!(
            SpscRing::<Quote>::producer(ptr, len, 1, &alive).err(),
            Some(AttachError::WrongElement { size: 24, align: 4 })
        );
    }
}

fn pattern(i: usize, size: usize) -> Vec<u8> {
    (0..size).map(|k| (i * 31 + k * 7) as u8).collect()
}

#[test]
fn odd_sizes_wrap_in_spsc_with_single_batch_and_chunks() {
    let sizes: &[(usize, usize)] = if cfg!(miri) {
        &[(3, 1), (24, 8)]
    } else {
        &[(3, 1), (24, 8), (4096, 8)]
    };
    for &(size, align) in sizes {
        let l = ElemLayout::new(size, align).unwrap();
        let (mut p, mut c) = HeapRegion::dyn_spsc_at(l, 4, u64::MAX - 5);
        let mut next_in = 0;
        let mut next_out = 0;
        let mut out = vec![0u8; size * 3];
        for round in 0..6 {
            // one, a batch of two, a chunk of one written through the pointers
            p.push(&pattern(next_in, size)).unwrap();
            next_in += 1;
            let batch: Vec<u8> = (0..2).flat_map(|k| pattern(next_in + k, size)).collect();
            assert_eq!(p.push_slice(&batch), Ok(2));
            next_in += 2;
            assert!(matches!(
                p.push(&pattern(99, size)),
                Ok(()) | Err(PushError::Full(()))
            ));
            // the fourth slot: filled by the push above if it fit
            next_in += 1;
            assert_eq!(p.push(&pattern(0, size)), Err(PushError::Full(())));
            assert!(matches!(p.write_chunk(1), Err(ChunkError::TooFewSlots(0))));
            // read one, then three as a chunk (wrapping in some rounds)
            c.pop(&mut out[..size]).unwrap();
            assert_eq!(&out[..size], &pattern(next_out, size)[..], "round {round}");
            next_out += 1;
            let r = c.read_chunk(3).unwrap();
            r.copy_to_slice(&mut out);
            let [(_, a), (_, b)] = r.as_ptrs();
            assert_eq!(a + b, 3);
            r.commit_all();
            for k in 0..2 {
                assert_eq!(&out[k * size..][..size], &pattern(next_out + k, size)[..]);
            }
            assert_eq!(&out[2 * size..], &pattern(99, size)[..]);
            next_out += 3;
            assert_eq!(c.pop(&mut out[..size]), Err(PopError::Empty));
            // a chunk through the raw pointers, then a batch pop
            let mut w = p.write_chunk(2).unwrap();
            let [(a, n1), (b, n2)] = w.as_mut_ptrs();
            let src: Vec<u8> = (0..2).flat_map(|k| pattern(next_in + k, size)).collect();
            // SAFETY: n1 + n2 = 2 reserved slots of `size` bytes, heap ring.
            unsafe {
                core::ptr::copy_nonoverlapping(src.as_ptr(), a, n1 * size);
                core::ptr::copy_nonoverlapping(src.as_ptr().add(n1 * size), b, n2 * size);
            }
            w.commit_all();
            assert_eq!(c.pop_slice(&mut out), Ok(2));
            assert_eq!(&out[..2 * size], &src[..]);
            next_in += 2;
            next_out += 2;
            assert_eq!(next_in, next_out);
        }
    }
}

#[test]
fn odd_sizes_wrap_in_mpmc() {
    let sizes: &[(usize, usize)] = if cfg!(miri) {
        &[(3, 1), (24, 8)]
    } else {
        &[(3, 1), (24, 8), (4096, 8)]
    };
    for &(size, align) in sizes {
        let l = ElemLayout::new(size, align).unwrap();
        let (tx, rx) = HeapRegion::dyn_mpmc_at(l, 4, u64::MAX - 5);
        let tx2 = tx.clone();
        let mut out = vec![0u8; size * 4];
        let mut n = 0;
        for _ in 0..4 {
            tx.push(&pattern(n, size)).unwrap();
            let batch: Vec<u8> = (1..4).flat_map(|k| pattern(n + k, size)).collect();
            assert_eq!(tx2.push_slice(&batch), Ok(3));
            assert_eq!(tx.push(&pattern(0, size)), Err(PushError::Full(())));
            rx.pop(&mut out[..size]).unwrap();
            assert_eq!(&out[..size], &pattern(n, size)[..]);
            assert_eq!(rx.pop_slice(&mut out), Ok(3));
            assert_eq!(&out[..3 * size], &batch[..]);
            assert_eq!(rx.pop(&mut out[..size]), Err(PopError::Empty));
            n += 4;
        }
    }
}

#[test]
fn hostile_headers_give_errors_never_out_of_bounds() {
    let l = ElemLayout::new(3, 1).unwrap();
    let need = DynMpmcRing::required_size(l, 4);
    let r = HeapRegion::new(need);
    let (ptr, len) = (r.as_ptr(), r.len());
    let word = |i: usize| ptr.cast::<u64>().wrapping_add(i);
    // SAFETY: the region outlives the handles; the writes below are in bounds (the meta's
    // words: magic, kind, elem, capacity) and made while no handle is attached.
    unsafe {
        DynMpmcRing::init(ptr, len, l, 4, 0).unwrap();
        // A huge capacity: the region check refuses it.
        word(3).write(1 << 40);
        assert!(matches!(
            DynMpmcRing::sender(ptr, len, l),
            Err(AttachError::RegionTooSmall { .. })
        ));
        word(3).write(3);
        assert_eq!(
            DynMpmcRing::sender(ptr, len, l).err(),
            Some(AttachError::BadCapacity(3))
        );
        word(3).write(4);
        // An element word of another layout.
        word(2).write(3 | (2 << 32));
        assert!(matches!(
            DynMpmcRing::receiver(ptr, len, l),
            Err(AttachError::WrongElement { size: 3, align: 2 })
        ));
        word(2).write(3 | (1 << 32));
        // Positions far apart (enq, the word at offset 128).
        word(16).write(1 << 50);
        assert!(matches!(
            DynMpmcRing::sender(ptr, len, l),
            Err(AttachError::Corrupt(_))
        ));
        word(16).write(0);
        // A stamp garbled after attach: a push ends in Corrupt, never an access past the ring.
        let tx = DynMpmcRing::sender(ptr, len, l).unwrap();
        let off = need - 4 * DynStamped::new(l).stride;
        ptr.add(off).cast::<u64>().write(12345);
        assert_eq!(tx.push(&[1, 2, 3]), Err(PushError::Corrupt(())));
        drop(tx);

        // SPSC: positions more than a capacity apart; a region one byte short.
        let need = DynSpscRing::required_size(l, 4);
        DynSpscRing::init(ptr, need, l, 4, 0).unwrap();
        word(16).write(100);
        assert!(matches!(
            DynSpscRing::consumer(ptr, need, l, 2, &alive),
            Err(AttachError::Corrupt(_))
        ));
        word(16).write(0);
        assert!(matches!(
            DynSpscRing::consumer(ptr, need - 1, l, 2, &alive),
            Err(AttachError::RegionTooSmall { .. })
        ));
        // The producer's tail overwritten after attach: the consumer sees Corrupt.
        let mut c = DynSpscRing::consumer(ptr, need, l, 2, &alive).unwrap();
        word(16).write(1 << 33);
        let mut b = [0u8; 3];
        assert_eq!(c.pop(&mut b), Err(PopError::Corrupt));
        assert!(matches!(c.read_chunk(1), Err(ChunkError::Corrupt)));
    }
}
