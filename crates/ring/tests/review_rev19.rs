//! Review rev19: a ring region is only required to be 128-byte aligned (`REGION_ALIGN`), so
//! the typed rings of an element type aligned above that must refuse a region not aligned to
//! the type (on 82ca542 they placed the slots at misaligned addresses: `ptr::write` of a
//! `T` there is undefined behaviour, from a call whose documented contract was met).

use shmlane_ring::{AttachError, HeapRegion, MpmcRing, REGION_ALIGN, SpscRing, StampedRing};

#[repr(C, align(256))]
#[derive(Clone, Copy, Debug, PartialEq)]
struct Big([u64; 32]);
// SAFETY: plain data, no padding (256 bytes of u64s at alignment 256).
unsafe impl bytemuck::Zeroable for Big {}
// SAFETY: as above.
unsafe impl bytemuck::Pod for Big {}

/// A region aligned to 128 but not to 256 (a valid ring region), `len` bytes long.
fn odd_region(len: usize) -> (HeapRegion, *mut u8) {
    let r = HeapRegion::new(len + REGION_ALIGN);
    let p = r.as_ptr();
    let p = if (p as usize) % 256 == 0 {
        p.wrapping_add(REGION_ALIGN)
    } else {
        p
    };
    assert_eq!((p as usize) % 256, REGION_ALIGN);
    (r, p)
}

#[test]
fn an_element_aligned_above_the_region_is_refused_not_misplaced() {
    let alive = |_| true;
    let need = SpscRing::<Big>::required_size(4);
    let (_r, p) = odd_region(need);
    // SAFETY: `p` is valid for `need` bytes, aligned to 128, used by nobody else.
    let init = unsafe { SpscRing::<Big>::init(p, need, 4, 0) };
    assert_eq!(init, Err(AttachError::Misaligned), "spsc init");
    // SAFETY: `p` is valid for `need` bytes, aligned to 128, used by nobody else.
    let attach = unsafe { SpscRing::<Big>::producer(p, need, 1, &alive) };
    assert_eq!(attach.err(), Some(AttachError::Misaligned), "spsc attach");

    let need = MpmcRing::<Big>::required_size(4);
    let (_r, p) = odd_region(need);
    // SAFETY: `p` is valid for `need` bytes, aligned to 128, used by nobody else.
    let init = unsafe { MpmcRing::<Big>::init(p, need, 4, 0) };
    assert_eq!(init, Err(AttachError::Misaligned), "mpmc init");
    // SAFETY: `p` is valid for `need` bytes, aligned to 128, used by nobody else.
    let attach = unsafe { MpmcRing::<Big>::sender(p, need) };
    assert_eq!(attach.err(), Some(AttachError::Misaligned), "mpmc attach");

    let need = StampedRing::<Big>::required_size(4);
    let (_r, p) = odd_region(need);
    // SAFETY: `p` is valid for `need` bytes, aligned to 128, used by nobody else.
    let init = unsafe { StampedRing::<Big>::init(p, need, 4, 0) };
    assert_eq!(init, Err(AttachError::Misaligned), "stamped init");
    // SAFETY: `p` is valid for `need` bytes, aligned to 128, used by nobody else.
    let attach = unsafe { StampedRing::<Big>::producer(p, need, 1, &alive) };
    assert_eq!(
        attach.err(),
        Some(AttachError::Misaligned),
        "stamped attach"
    );

    // A region aligned to the type still works.
    let need = SpscRing::<Big>::required_size(4);
    let r = HeapRegion::new(need + 256);
    let p = r.as_ptr().wrapping_add(r.as_ptr().align_offset(256));
    // SAFETY: `p` is valid for `need` bytes, aligned to 128, used by nobody else.
    unsafe { SpscRing::<Big>::init(p, need, 4, 0) }.unwrap();
    // SAFETY: `p` is valid for `need` bytes, aligned to 128, used by nobody else.
    let mut tx = unsafe { SpscRing::<Big>::producer(p, need, 1, &alive) }.unwrap();
    // SAFETY: `p` is valid for `need` bytes, aligned to 128, used by nobody else.
    let mut rx = unsafe { SpscRing::<Big>::consumer(p, need, 2, &alive) }.unwrap();
    tx.push(Big([7; 32])).unwrap();
    assert_eq!(rx.pop(), Ok(Big([7; 32])));
}
