//! Opaque handles: a magic word per handle kind, NULL checks, and use-after-close detection.
//!
//! Every handle is a heap block `Handle<B>` whose first word is a magic number naming its kind
//! (`B::MAGIC`). Closing a handle drops its body (the endpoint, the channel) at once, writes
//! [`CLOSED`] over the magic and keeps the block in a per-process quarantine of
//! [`SHMLANE_QUARANTINE`] blocks, so a later call with the closed handle reads the poisoned magic and
//! returns `SHMLANE_E_CLOSED` instead of reading freed memory. The quarantine frees its oldest
//! block when it is full: a handle used after more than `SHMLANE_QUARANTINE` later closes is undefined
//! behaviour (its block may be freed and reused), as is a pointer that never was a handle.
//!
//! A handle of another kind is found by its magic: `SHMLANE_E_WRONG_HANDLE`. New handle kinds
//! (e.g. the typed SPSC/MPMC endpoints of a later `typed.rs`) implement [`Body`] with a new
//! magic and use the same functions.

use crate::status::{Fail, Res, SHMLANE_E_CLOSED, SHMLANE_E_NULL, SHMLANE_E_WRONG_HANDLE};
use std::collections::VecDeque;
use std::sync::Mutex;

/// The magic of a closed handle.
pub(crate) const CLOSED: u64 = 0xdead_c105_ed5a_1a9e;

/// Closed handles kept before their memory is freed (the use-after-close detection bound).
pub const SHMLANE_QUARANTINE: usize = 1024;

/// What a handle holds; `MAGIC` tells its kind apart from every other's.
pub(crate) trait Body: Send + 'static {
    /// This kind's magic word (never [`CLOSED`], distinct from the other kinds').
    const MAGIC: u64;
    /// The kind's name in messages (`byte sender`, `channel`, ...).
    const WHAT: &'static str;
}

/// A handle's heap block: the magic first (`repr(C)`: at offset 0 in every kind), then the body
/// (`None` once closed).
#[repr(C)]
pub(crate) struct Handle<B> {
    magic: u64,
    body: Option<B>,
}

/// Every handle kind's magic and name, to say which kind a wrong handle is.
const KINDS: &[(u64, &str)] = &[
    (
        crate::options::Options::MAGIC,
        crate::options::Options::WHAT,
    ),
    (crate::channel::Chan::MAGIC, crate::channel::Chan::WHAT),
    (crate::bytes::Tx::MAGIC, crate::bytes::Tx::WHAT),
    (crate::bytes::Rx::MAGIC, crate::bytes::Rx::WHAT),
    (crate::broadcast::Pub::MAGIC, crate::broadcast::Pub::WHAT),
    (crate::broadcast::Sub::MAGIC, crate::broadcast::Sub::WHAT),
    (crate::typed::Tx::MAGIC, crate::typed::Tx::WHAT),
    (crate::typed::Rx::MAGIC, crate::typed::Rx::WHAT),
    (crate::latest::Writer::MAGIC, crate::latest::Writer::WHAT),
    (crate::latest::Reader::MAGIC, crate::latest::Reader::WHAT),
];

/// Boxes `body` as a new handle and writes it to `*out`.
///
/// # Safety
/// `out` is NULL or valid for a pointer write.
pub(crate) unsafe fn publish<B: Body, H>(out: *mut *mut H, body: B) -> Res {
    if out.is_null() {
        return Err(null("out"));
    }
    let p = Box::into_raw(Box::new(Handle {
        magic: B::MAGIC,
        body: Some(body),
    }));
    // SAFETY: `out` is non-NULL and, by the caller's contract, valid for a write.
    unsafe { out.write(p.cast::<H>()) };
    Ok(())
}

/// A NULL-argument failure naming the argument.
pub(crate) fn null(arg: &str) -> Fail {
    Fail::new(SHMLANE_E_NULL, format!("{arg} is NULL"))
}

/// Checks the magic of the handle at `p` (NULL, closed, another kind).
///
/// # Safety
/// `p` is NULL, a live handle, or a handle closed less than [`SHMLANE_QUARANTINE`] closes ago.
unsafe fn check<B: Body>(p: *const Handle<B>) -> Res {
    if p.is_null() {
        return Err(null(B::WHAT));
    }
    // SAFETY: by the contract the block is allocated, and every kind's block starts with the
    // magic (`repr(C)`), so reading it through another kind's pointer reads the same word.
    let magic = unsafe { core::ptr::addr_of!((*p).magic).read() };
    if magic == B::MAGIC {
        return Ok(());
    }
    if magic == CLOSED {
        return Err(Fail::new(
            SHMLANE_E_CLOSED,
            format!("this {} handle was already closed", B::WHAT),
        ));
    }
    let found = KINDS
        .iter()
        .find(|(m, _)| *m == magic)
        .map_or("not a shmlane handle (or one freed long ago)", |(_, w)| w);
    Err(Fail::new(
        SHMLANE_E_WRONG_HANDLE,
        format!(
            "expected {} {} handle, got: {found}",
            article(B::WHAT),
            B::WHAT
        ),
    ))
}

/// "a" or "an" before `word`.
fn article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

/// The body of the live handle `p`, shared.
///
/// # Safety
/// As [`check`]; no `&mut` to the body exists meanwhile (the documented threading rules).
pub(crate) unsafe fn get<'a, B: Body, H>(p: *const H) -> Res<&'a B> {
    let p = p.cast::<Handle<B>>();
    // SAFETY: forwarded contract.
    unsafe { check(p)? };
    // SAFETY: checked live (magic), so the block holds a `Handle<B>` whose body is `Some`.
    let body = unsafe { &*core::ptr::addr_of!((*p).body) };
    body.as_ref().ok_or_else(|| {
        Fail::new(
            SHMLANE_E_CLOSED,
            format!("this {} handle was closed", B::WHAT),
        )
    })
}

/// The body of the live handle `p`, exclusive.
///
/// # Safety
/// As [`check`]; the handle is used by one thread at a time (the documented rule).
pub(crate) unsafe fn get_mut<'a, B: Body, H>(p: *mut H) -> Res<&'a mut B> {
    let p = p.cast::<Handle<B>>();
    // SAFETY: forwarded contract.
    unsafe { check(p)? };
    // SAFETY: checked live; exclusive by the threading rule.
    let body = unsafe { &mut *core::ptr::addr_of_mut!((*p).body) };
    body.as_mut().ok_or_else(|| {
        Fail::new(
            SHMLANE_E_CLOSED,
            format!("this {} handle was closed", B::WHAT),
        )
    })
}

/// The quarantine of closed handles' blocks (oldest first).
static QUARANTINED: Mutex<VecDeque<Box<dyn Send>>> = Mutex::new(VecDeque::new());

/// Closes the handle `p`: NULL is fine; a closed one is `SHMLANE_E_CLOSED`. Drops the body,
/// poisons the magic and quarantines the block.
///
/// # Safety
/// As [`check`], and no other reference to the handle is in use.
pub(crate) unsafe fn close<B: Body, H>(p: *mut H) -> Res {
    if p.is_null() {
        return Ok(());
    }
    let p = p.cast::<Handle<B>>();
    // SAFETY: forwarded contract.
    unsafe { check(p)? };
    // SAFETY: checked live; exclusive by the contract.
    let h = unsafe { &mut *p };
    // Poison first: if dropping the body panics, the handle still reads as closed.
    h.magic = CLOSED;
    drop(h.body.take());
    // SAFETY: the block came from `Box::into_raw` in `publish` and is owned by the handle,
    // which is now closed: the quarantine owns it from here.
    let block: Box<dyn Send> = unsafe { Box::from_raw(p) };
    let evicted = {
        let mut q = QUARANTINED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        q.push_back(block);
        if q.len() > SHMLANE_QUARANTINE {
            q.pop_front()
        } else {
            None
        }
    };
    // Freed outside the lock.
    drop(evicted);
    Ok(())
}
