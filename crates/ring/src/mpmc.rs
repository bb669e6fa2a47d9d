//! Multi-producer multi-consumer ring (Vyukov's bounded queue with per-slot sequence stamps,
//! 64-bit), usable as MPSC and SPMC.
//!
//! ```text
//! CachePadded<Meta>            magic, kind, element size/align, capacity
//! CachePadded<AtomicU64>       enqueue position (producers CAS it)
//! CachePadded<AtomicU64>       dequeue position (consumers CAS it)
//! [CachePadded<AtomicU64>; 2]  anonymous operations in flight: producers, consumers
//! [[CachePadded<Intent>; 32]; 2] intent entries: producers', consumers' (owner, position)
//! [Slot<T>; capacity]          Slot = { seq: AtomicU64, value: T }, repr(C)
//! ```
//!
//! Slot `pos & mask` is free for position `pos` when `seq == pos`, and holds the value of
//! position `pos` when `seq == pos + 1`. A producer that wins the CAS on the enqueue position
//! writes the value, then stores `seq = pos + 1` (Release); a consumer that sees it (Acquire)
//! and wins the CAS on the dequeue position reads the value, then stores
//! `seq = pos + capacity` (Release), freeing the slot for the next lap. The value lies next
//! to its stamp, so a consumer polling an empty ring learns of new data with one cache-line
//! transfer. Stamps read from shared memory are only compared, never used as indices; a slot
//! whose stamp never becomes consistent (a corrupt or hostile ring) ends in `Corrupt` after
//! a bounded number of retries rather than a livelock.
//!
//! Crash recovery. An endpoint that dies between its position CAS and its stamp store leaves a
//! *hole*: a producer's leaves slot `p` at `seq == p` with `enq` past `p` (consumers stop
//! there), a consumer's leaves it at `seq == p + 1` with `deq` past `p` (producers find the
//! ring full there a lap later). As in the record ring, every endpoint attached with an owner
//! token holds an *intent entry* of its side (taken at attach: a free one, or one whose holder
//! is dead and whose last intent is behind the other side's position); before each position
//! CAS it stores there the position it is about to take (`VALID | p mod 2^63`), and clears it
//! after its stamp store (Release). The position CASes are Release and [`recover`] loads the
//! position with Acquire, so whoever sees the position past `p` also sees the intent of the
//! endpoint that took `p` (or that endpoint's later intent stores, which come after its stamp
//! store: the stamp CAS below then fails). [`Receiver::recover`] marks a producer's hole
//! *skipped* (`seq` CAS from `p` to `skip(p) = p + 1 - 2^62`, which consumers pass over
//! without reading), [`Sender::recover`] gives a consumer's hole back (CAS from `p + 1` or
//! `skip(p)` to `p + capacity`), each only if an intent of a dead owner names `p` and no intent
//! of a live one does. Handles attached without an owner ([`MpmcRing::sender`] /
//! [`MpmcRing::receiver`]) hold entries under `NO_OWNER`, never judged dead: their holes are
//! waited for, never recovered, and their entries are never taken over. Handles without an
//! entry (beyond the 32 of a side) count their operation in flight in the side's `anon` word;
//! while it is non-zero nothing on that side is recovered (so a hole left by such a handle is
//! never recovered, and its death turns recovery off for that side: [`Hole::Waiting`], and
//! blocking channel calls still end at their deadline). A live claimer's hole is never taken
//! (loom models `mpmc_dead_*`).
//!
//! [`recover`]: Receiver::recover

mod dynamic;
pub use dynamic::{DynMpmcRing, DynReceiver, DynSender};

use core::marker::PhantomData;
use core::ptr::NonNull;

use bytemuck::Pod;
use crossbeam_utils::{Backoff, CachePadded};

use crate::{
    KeepAlive,
    error::{AttachError, PopError, PushError},
    header::{Kind, Meta, PaddedMeta, align_up, check_capacity, check_region, open_ring},
    slot::{Slot, StampedSlots, Typed, init_slots},
    sync::{
        AtomicU64, MPMC_DEQ_CAS, MPMC_ENQ_CAS, MPMC_SEQ_LOAD, MPMC_SEQ_STORE, Ordering, spin_hint,
    },
};

/// Intent entries per side (producers, consumers): endpoints beyond this many attached at once
/// work, but count their operations in the side's `anon` word, and while one is in flight (or
/// after one died in its window) nothing on that side is recovered.
#[cfg(not(loom))]
pub const MPMC_INTENTS: usize = 32;
/// Intent entries per side (fewer under loom: every atomic is a modelled object).
#[cfg(loom)]
pub const MPMC_INTENTS: usize = 3;

/// The owner of an entry taken by a handle attached without an owner token: never judged
/// dead (its holes are waited for, its entry is not taken over).
const NO_OWNER: u64 = u64::MAX;

/// An intent word naming no position.
const IDLE: u64 = 0;
const VALID: u64 = 1 << 63;
const POS_MASK: u64 = VALID - 1;

fn intent_word(pos: u64) -> u64 {
    VALID | (pos & POS_MASK)
}

fn intent_names(w: u64, pos: u64) -> bool {
    w & VALID != 0 && (w ^ pos) & POS_MASK == 0
}

/// The stamp of a slot whose position `pos` a producer claimed and never filled, marked
/// skipped by [`Receiver::recover`]: consumers pass over it. Never a stamp of the normal
/// protocol (those stay within a few capacities of the position; this one is 2^62 behind),
/// and behind what producers of the next lap want (they find the ring full there until a
/// consumer has passed it).
fn skip_stamp(pos: u64) -> u64 {
    pos.wrapping_add(1).wrapping_sub(1 << 62)
}

/// One endpoint's intent entry, on its own cache line.
#[repr(C)]
struct Intent {
    /// The holder's owner token; 0 when free.
    owner: AtomicU64,
    /// `IDLE`, or the position the holder is taking (`intent_word`).
    pos: AtomicU64,
}

#[repr(C)]
struct Header {
    meta: PaddedMeta,
    enq: CachePadded<AtomicU64>,
    deq: CachePadded<AtomicU64>,
    /// Operations in flight by handles without an intent entry: producers, consumers.
    anon: [CachePadded<AtomicU64>; 2],
    intents: [[CachePadded<Intent>; MPMC_INTENTS]; 2],
}

// The layout docs/design.md gives (offsets 384 for `anon`, 640 for `intents`, 8832 the end).
#[cfg(all(not(loom), target_pointer_width = "64"))]
const _: () = assert!(size_of::<Header>() == 8832 && size_of::<CachePadded<Intent>>() == 128);

/// Index of a side in `anon` and `intents`.
const PRODUCERS: usize = 0;
const CONSUMERS: usize = 1;

/// What [`Receiver::recover`] or [`Sender::recover`] found at the position it looked at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hole {
    /// No hole: the position is free, filled, or in normal use.
    None,
    /// A hole whose claimer lives or may live (an intent of a live owner names it, no intent
    /// names it, or a handle without an entry has an operation in flight): wait.
    Waiting,
    /// A dead claimer's hole was recovered: skipped (consumers; its message never existed) or
    /// given back (producers; the message the dead consumer had taken is lost).
    Recovered,
    /// A dead consumer's slot was given back that held no message: the consumer had taken a
    /// position already marked skipped (whose loss was counted when it was skipped). Nothing
    /// more is lost.
    Released,
}

/// Retries on a slot whose stamp is ahead while the position stays the same, before the ring
/// is declared corrupt. Legitimately this lasts only as long as another endpoint's CAS is in
/// flight.
const STUCK_LIMIT: u32 = 1 << 16;

/// Namespace for laying out, initialising and attaching to MPMC rings.
#[derive(Debug)]
pub struct MpmcRing<T>(PhantomData<T>);

fn slots_offset<T>() -> usize {
    align_up(size_of::<Header>(), align_of::<Slot<T>>().max(128))
}

/// A handle's view of the ring: geometry computed once at attach from checked values.
struct Raw<L> {
    hdr: NonNull<Header>,
    slots: NonNull<u8>,
    layout: L,
    cap: u64,
    mask: u64,
    keep: Option<KeepAlive>,
}

impl<L: Clone> Clone for Raw<L> {
    fn clone(&self) -> Self {
        Self {
            hdr: self.hdr,
            slots: self.slots,
            layout: self.layout.clone(),
            cap: self.cap,
            mask: self.mask,
            keep: self.keep.clone(),
        }
    }
}

/// The attach steps after the header checks, for any slot layout: the positions' sanity check
/// and the handle's geometry.
///
/// # Safety
/// `hdr` a checked header of a region holding `slots_off` plus `cap` slots of `layout`.
unsafe fn attach_checked<L>(
    hdr: NonNull<Header>,
    ptr: *mut u8,
    slots_off: usize,
    layout: L,
    cap: u64,
) -> Result<Raw<L>, AttachError> {
    // SAFETY: a checked header in bounds; atomics only.
    let h = unsafe { hdr.as_ref() };
    // ORDERING: Relaxed; a sanity check only, the protocol re-reads both.
    let enq = h.enq.load(Ordering::Relaxed);
    // ORDERING: as above.
    let deq = h.deq.load(Ordering::Relaxed);
    if enq.wrapping_sub(deq) > cap && deq.wrapping_sub(enq) > cap {
        return Err(AttachError::Corrupt("positions more than a capacity apart"));
    }
    Ok(Raw {
        hdr,
        // SAFETY: the slot array lies inside the region (required size checked by the caller).
        slots: unsafe { NonNull::new_unchecked(ptr.add(slots_off)) },
        layout,
        cap,
        mask: cap - 1,
        keep: None,
    })
}

/// A fresh header (positions at `start`, no intents) for a ring of `elem` words.
fn new_header(elem: u64, capacity: u64, start: u64) -> Header {
    Header {
        meta: CachePadded::new(Meta::with_elem(Kind::Mpmc, elem, capacity)),
        enq: CachePadded::new(AtomicU64::new(start)),
        deq: CachePadded::new(AtomicU64::new(start)),
        anon: core::array::from_fn(|_| CachePadded::new(AtomicU64::new(0))),
        intents: core::array::from_fn(|_| {
            core::array::from_fn(|_| {
                CachePadded::new(Intent {
                    owner: AtomicU64::new(0),
                    pos: AtomicU64::new(IDLE),
                })
            })
        }),
    }
}

impl<T: Pod> MpmcRing<T> {
    /// Bytes a region needs for `capacity` elements; `usize::MAX` (which no region holds) if
    /// that does not fit in a `usize`, so a hostile capacity fails the region check instead of
    /// wrapping around to a small size.
    pub fn required_size(capacity: u64) -> usize {
        crate::header::required_size(slots_offset::<T>(), size_of::<Slot<T>>(), capacity)
    }

    /// Initialises an empty ring whose first position is `start`.
    ///
    /// # Safety
    /// `ptr` must be valid for reads and writes of `len` bytes, and nobody may use the region
    /// while it is initialised.
    pub unsafe fn init(
        ptr: *mut u8,
        len: usize,
        capacity: u64,
        start: u64,
    ) -> Result<(), AttachError> {
        check_capacity(capacity, Kind::Mpmc)?;
        check_region(ptr, len, Self::required_size(capacity))?;
        crate::header::check_elem_align::<T>(ptr)?;
        let hdr = new_header(crate::header::elem_word::<T>(), capacity, start);
        // SAFETY: in bounds and aligned (checked); exclusive during init (caller).
        unsafe { ptr.cast::<Header>().write(hdr) };
        let slots = ptr.wrapping_add(slots_offset::<T>()).cast::<Slot<T>>();
        // SAFETY: the slot array lies inside the region (required_size checked), aligned;
        // exclusive during init (caller).
        unsafe { init_slots(slots, capacity, start) };
        Ok(())
    }

    /// # Safety
    /// As for [`sender`](Self::sender).
    unsafe fn attach(ptr: *mut u8, len: usize) -> Result<Raw<Typed<T>>, AttachError> {
        crate::header::check_elem_align::<T>(ptr)?;
        // SAFETY: forwarded contract; Header is repr(C) with the meta first.
        let (hdr, cap) = unsafe {
            open_ring::<Header, T>(
                ptr,
                len,
                Kind::Mpmc,
                slots_offset::<T>(),
                Self::required_size,
            )?
        };
        // SAFETY: the region holds the header and `cap` slots of T (checked above).
        unsafe { attach_checked(hdr, ptr, slots_offset::<T>(), Typed::new(), cap) }
    }

    /// Attaches a sending endpoint without an owner token. Any number may be attached, in any
    /// process; a hole such a handle leaves when it dies mid-push is never recovered (see the
    /// module docs, and [`sender_owned`](Self::sender_owned)).
    ///
    /// # Safety
    /// `ptr` must be valid for reads and writes of `len` bytes for as long as the returned
    /// handle lives, and accessed by others only through ring handles.
    pub unsafe fn sender(ptr: *mut u8, len: usize) -> Result<Sender<T>, AttachError> {
        Ok(Sender {
            // SAFETY: forwarded contract.
            ep: Endpoint::new(
                unsafe { Self::attach(ptr, len)? },
                PRODUCERS,
                NO_OWNER,
                None,
            ),
        })
    }

    /// Attaches a sending endpoint whose crash between claiming a position and publishing it
    /// can be recovered: it takes a producer intent entry for `owner` (a non-zero token, the
    /// same for every endpoint of a process) — a free one, or one whose holder `is_alive`
    /// reports dead and whose last intent the consumers have passed. With all entries held by
    /// live endpoints it works without one, as [`sender`](Self::sender).
    ///
    /// # Safety
    /// As for [`sender`](Self::sender).
    pub unsafe fn sender_owned(
        ptr: *mut u8,
        len: usize,
        owner: u64,
        is_alive: &dyn Fn(u64) -> bool,
    ) -> Result<Sender<T>, AttachError> {
        // SAFETY: forwarded contract.
        let raw = unsafe { Self::attach(ptr, len)? };
        Ok(Sender {
            ep: Endpoint::new(raw, PRODUCERS, owner, Some(is_alive)),
        })
    }

    /// Attaches a receiving endpoint without an owner token (as [`sender`](Self::sender)).
    ///
    /// # Safety
    /// As for [`sender`](Self::sender).
    pub unsafe fn receiver(ptr: *mut u8, len: usize) -> Result<Receiver<T>, AttachError> {
        Ok(Receiver {
            // SAFETY: forwarded contract.
            ep: Endpoint::new(
                unsafe { Self::attach(ptr, len)? },
                CONSUMERS,
                NO_OWNER,
                None,
            ),
        })
    }

    /// Attaches a receiving endpoint with a consumer intent entry (as
    /// [`sender_owned`](Self::sender_owned)).
    ///
    /// # Safety
    /// As for [`sender`](Self::sender).
    pub unsafe fn receiver_owned(
        ptr: *mut u8,
        len: usize,
        owner: u64,
        is_alive: &dyn Fn(u64) -> bool,
    ) -> Result<Receiver<T>, AttachError> {
        // SAFETY: forwarded contract.
        let raw = unsafe { Self::attach(ptr, len)? };
        Ok(Receiver {
            ep: Endpoint::new(raw, CONSUMERS, owner, Some(is_alive)),
        })
    }
}

/// Slot `idx` of a ring: its stamp, and the copies in and out of its value.
struct SlotRef<'a, L> {
    seq: &'a AtomicU64,
    raw: &'a Raw<L>,
    idx: usize,
}

impl<L: StampedSlots> SlotRef<'_, L> {
    /// # Safety
    /// As for [`StampedSlots::write`] (the slot is the caller's, `src` one element).
    #[inline]
    unsafe fn write(&self, src: *const u8) {
        // SAFETY: `idx < cap` (masked private position); the rest is the caller's.
        unsafe { self.raw.layout.write(self.raw.slots, self.idx, src) }
    }
    /// # Safety
    /// As for [`StampedSlots::read`].
    #[inline]
    unsafe fn read(&self, dst: *mut u8) {
        // SAFETY: as in `write`.
        unsafe { self.raw.layout.read(self.raw.slots, self.idx, dst) }
    }
}

impl<L> Raw<L> {
    fn hdr(&self) -> &Header {
        // SAFETY: valid for the handle's lifetime (constructor contract); atomics only.
        unsafe { self.hdr.as_ref() }
    }
}

impl<L: StampedSlots> Raw<L> {
    /// Slot `pos & mask`: indexed only by a masked position, so never out of bounds.
    #[inline]
    fn slot(&self, pos: u64) -> SlotRef<'_, L> {
        let idx = (pos & self.mask) as usize;
        SlotRef {
            // SAFETY: `idx < cap`; the slot array holds `cap` slots of this layout (checked
            // at attach) and lives as long as the handle.
            seq: unsafe { self.layout.seq(self.slots, idx) },
            raw: self,
            idx,
        }
    }
}

impl<L> Raw<L> {
    /// Takes an intent entry of `side` for `owner`: a free one, or (given `is_alive`) one whose
    /// holder is dead and whose last intent is behind the other side's position.
    fn take_intent(
        &self,
        side: usize,
        owner: u64,
        is_alive: Option<&dyn Fn(u64) -> bool>,
    ) -> Option<usize> {
        if owner == 0 {
            return None;
        }
        let h = self.hdr();
        for pass in [false, true] {
            if pass && is_alive.is_none() {
                break;
            }
            for (i, e) in h.intents[side].iter().enumerate() {
                // ORDERING: Relaxed; a guess, the CAS below decides.
                let cur = e.owner.load(Ordering::Relaxed);
                let takeable = if pass {
                    cur != 0
                        && cur != NO_OWNER
                        && is_alive.is_some_and(|alive| !alive(cur))
                        && !self.intent_pending(side, e)
                } else {
                    cur == 0
                };
                // ORDERING: Acquire on success; pairs with the Release store of a dropped
                // holder (its last intent store comes before ours). Relaxed on failure.
                if takeable
                    && e.owner
                        .compare_exchange(cur, owner, Ordering::Acquire, Ordering::Relaxed)
                        .is_ok()
                {
                    // ORDERING: Relaxed; published by our first position CAS (Release).
                    e.pos.store(IDLE, Ordering::Relaxed);
                    return Some(i);
                }
            }
        }
        None
    }

    /// Whether a dead holder's intent may still name a hole: a position the other side has
    /// not passed yet (producers': `deq` not past it; consumers': their slot not given back).
    fn intent_pending(&self, side: usize, e: &Intent) -> bool {
        // ORDERING: Relaxed; the holder is dead, its last intent is what it is.
        let w = e.pos.load(Ordering::Relaxed);
        if w & VALID == 0 {
            return false;
        }
        let h = self.hdr();
        let other = if side == PRODUCERS { &h.deq } else { &h.enq };
        // ORDERING: Relaxed; positions only grow, a stale one only keeps the entry longer.
        let now = other.load(Ordering::Relaxed);
        // Producers' intents are resolved once `deq` passed them; consumers' once `enq` went
        // a lap past them (the slot was given back and refilled).
        let passed = if side == PRODUCERS {
            now
        } else {
            now.wrapping_sub(self.cap)
        };
        let behind = passed.wrapping_sub(w) & POS_MASK;
        !(behind > 0 && behind < 1 << 62)
    }
}

/// What every handle holds: the ring, its side, its owner token and intent entry.
pub(crate) struct Endpoint<L> {
    raw: Raw<L>,
    side: usize,
    owner: u64,
    /// This handle's intent entry, if it got one.
    intent: Option<usize>,
    _not_sync: PhantomData<core::cell::Cell<()>>,
}

impl<L: Clone> Endpoint<L> {
    fn new(raw: Raw<L>, side: usize, owner: u64, is_alive: Option<&dyn Fn(u64) -> bool>) -> Self {
        let intent = raw.take_intent(side, owner, is_alive);
        Self {
            raw,
            side,
            owner,
            intent,
            _not_sync: PhantomData,
        }
    }

    /// Before an operation's first position CAS: for a handle without an entry, counts the
    /// operation in flight (`anon`).
    fn begin(&self) {
        if self.intent.is_none() {
            // ORDERING: Relaxed; reaches a recoverer through our position CAS (Release), like
            // an intent.
            self.raw.hdr().anon[self.side].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// After the operation: the stamp is stored (or no position was taken).
    fn end(&self) {
        if self.intent.is_none() {
            // ORDERING: Release; pairs with the Acquire load of `anon` in `recover`: a
            // recoverer that finds no operation in flight also sees our stamp store.
            self.raw.hdr().anon[self.side].fetch_sub(1, Ordering::Release);
        }
    }

    /// Publishes the position this handle is about to take, before its CAS.
    fn announce(&self, pos: u64) {
        if let Some(i) = self.intent {
            // ORDERING: Release; pairs with the Acquire intent load in `recover`, so the owner
            // read there is ours (our entry CAS came first). The intent itself reaches a
            // recoverer through our position CAS (MPMC_ENQ_CAS / MPMC_DEQ_CAS, Release).
            self.raw.hdr().intents[self.side][i]
                .pos
                .store(intent_word(pos), Ordering::Release);
        }
    }

    /// Clears the intent after the stamp store (or a lost CAS).
    fn clear(&self) {
        if let Some(i) = self.intent {
            // ORDERING: Release; pairs with the Acquire intent load in `recover`: a recoverer
            // that reads the intent cleared also sees our stamp store, so its stamp CAS fails.
            self.raw.hdr().intents[self.side][i]
                .pos
                .store(IDLE, Ordering::Release);
        }
    }

    fn duplicate(&self) -> Self {
        let raw = self.raw.clone();
        let intent = raw.take_intent(self.side, self.owner, None);
        Self {
            raw,
            side: self.side,
            owner: self.owner,
            intent,
            _not_sync: PhantomData,
        }
    }

    /// Whether the endpoints of `side` whose intents name `pos` are all dead and there is at
    /// least one (the caller loaded the position past `pos` with Acquire before).
    fn claimer_dead(&self, side: usize, pos: u64, is_alive: &dyn Fn(u64) -> bool) -> bool {
        let h = self.raw.hdr();
        // ORDERING: Acquire; pairs with `end` (Release): with no operation in flight found, an
        // entry-less endpoint that took `pos` has stored its stamp, visible to our CAS.
        if h.anon[side].load(Ordering::Acquire) != 0 {
            return false;
        }
        let mut dead = false;
        for e in &h.intents[side] {
            // ORDERING: Acquire; pairs with `announce` and `clear` (Release): the owner read
            // next is the one that published this intent or a later one; a cleared or later
            // intent comes after its holder's stamp store.
            let w = e.pos.load(Ordering::Acquire);
            if !intent_names(w, pos) {
                continue;
            }
            // ORDERING: Relaxed; ordered after the holder's entry CAS by the Acquire above.
            let owner = e.owner.load(Ordering::Relaxed);
            if owner == 0 || owner == NO_OWNER || is_alive(owner) {
                return false;
            }
            dead = true;
        }
        dead
    }
}

impl<L> Drop for Endpoint<L> {
    fn drop(&mut self) {
        if let Some(i) = self.intent {
            let e = &self.raw.hdr().intents[self.side][i];
            // ORDERING: Relaxed; no operation is in progress (`&self` methods finish first).
            e.pos.store(IDLE, Ordering::Relaxed);
            // ORDERING: Release; pairs with the Acquire CAS in `take_intent`.
            e.owner.store(0, Ordering::Release);
        }
    }
}

/// A sending end of an MPMC ring. `Send`, not `Sync`; `Clone` (a clone takes an intent entry
/// of its own if one is free).
pub struct Sender<T> {
    ep: Endpoint<Typed<T>>,
}

/// A receiving end of an MPMC ring. `Send`, not `Sync`; `Clone` as [`Sender`].
pub struct Receiver<T> {
    ep: Endpoint<Typed<T>>,
}

// SAFETY: the pointers refer to memory that outlives the handle (constructor contract) and is
// shared only through the stamp protocol; T: Send because values cross threads.
unsafe impl<T: Send> Send for Sender<T> {}
// SAFETY: as for Sender.
unsafe impl<T: Send> Send for Receiver<T> {}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        Self {
            ep: self.ep.duplicate(),
        }
    }
}

impl<T> Clone for Receiver<T> {
    fn clone(&self) -> Self {
        Self {
            ep: self.ep.duplicate(),
        }
    }
}

impl<T> core::fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Sender")
            .field("capacity", &self.ep.raw.cap)
            .field("intent", &self.ep.intent)
            .finish_non_exhaustive()
    }
}

impl<T> core::fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Receiver")
            .field("capacity", &self.ep.raw.cap)
            .field("intent", &self.ep.intent)
            .finish_non_exhaustive()
    }
}

/// What one attempt on a slot found.
enum Step {
    /// The slot is ours to take at `pos` (CAS the position).
    Take,
    /// The ring is full (push) or empty (pop) at `pos`.
    Done,
    /// Another endpoint got there first: reload the position.
    Retry,
}

/// After a slot's stamp was ahead of `pos`: reloads the shared position. Returns `None` when
/// the position has stayed at `pos` for more than `STUCK_LIMIT` retries (a stamp that can never
/// become consistent: corrupt or hostile ring).
fn reload(shared: &AtomicU64, pos: u64, stuck: &mut u32) -> Option<u64> {
    // ORDERING: Relaxed; a new starting guess, validated against the slot's stamp like the
    // first load.
    let now = shared.load(Ordering::Relaxed);
    if now == pos {
        *stuck += 1;
        if *stuck > STUCK_LIMIT {
            return None;
        }
        spin_hint();
    } else {
        *stuck = 0;
    }
    Some(now)
}

/// Whether the shared positions and the stamp at the dequeue position are ones a sound ring can
/// show (slow path: three Acquire loads). `enq` is loaded first: every producer that moved it
/// to `E` found its slot freed for lap `E - 1`, so `deq` had passed `E - 1 - cap` before, and
/// `deq` (loaded after, Acquire) is at least `E - cap`. And the consumer that moved `deq` past
/// `q - cap` found `q - cap`'s message published there first, so the stamp at `q` is at least
/// `q - cap + 1`, or the skip mark of a position of that slot from `q - cap` on (`q - cap`'s
/// while its consumer is between its CAS and its stamp store; `q`'s own between a recovery and
/// the pop that passes it; a later lap's when `deq` moved on before the stamp was loaded).
/// Anything else was written by no endpoint: an overwritten position or stamp (review rev2, R8:
/// a blocked receiver waited out its deadline at an overwritten `deq`). Accepting only
/// `q - cap`'s skip mark made a sender blocked on a full ring report `Corrupt` while a receiver
/// had just marked a dead producer's hole at `q` skipped (seen once under ThreadSanitizer).
fn positions_consistent<L: StampedSlots>(raw: &Raw<L>) -> bool {
    let h = raw.hdr();
    // ORDERING: Acquire; pairs with the producers' MPMC_ENQ_CAS (Release), see above.
    let enq = h.enq.load(Ordering::Acquire);
    // ORDERING: Acquire; pairs with the consumers' MPMC_DEQ_CAS (Release), see above.
    let deq = h.deq.load(Ordering::Acquire);
    if (enq.wrapping_sub(deq) as i64) > raw.cap as i64 {
        return false;
    }
    // ORDERING: Acquire (MPMC_SEQ_LOAD); pairs with the stamp stores, see above.
    let seq = raw.slot(deq).seq.load(MPMC_SEQ_LOAD);
    let first = deq.wrapping_sub(raw.cap);
    if (seq.wrapping_sub(first.wrapping_add(1)) as i64) >= 0 {
        return true;
    }
    // The position whose skip mark `seq` would be (the inverse of `skip_stamp`).
    let skipped = seq.wrapping_sub(1).wrapping_add(1 << 62);
    skipped & raw.mask == deq & raw.mask && (skipped.wrapping_sub(first) as i64) >= 0
}

fn classify(seq: u64, want: u64) -> Step {
    match seq.wrapping_sub(want) as i64 {
        0 => Step::Take,
        d if d < 0 => Step::Done,
        _ => Step::Retry,
    }
}

impl<L: StampedSlots> Endpoint<L> {
    /// The push, copying one element from `src` into the slot once; with `abandon`, stops
    /// right after winning the position (test hook) and returns it. Shared by the typed
    /// [`Sender`] and the run-time [`DynSender`](crate::DynSender): only the slot's copy
    /// differs ([`StampedSlots`]).
    ///
    /// # Safety
    /// `src` must be valid for reads of one element (the layout's size) and not in the ring.
    pub(crate) unsafe fn push_inner(
        &self,
        src: *const u8,
        abandon: bool,
    ) -> Result<u64, PushError<()>> {
        let raw = &self.raw;
        let h = raw.hdr();
        let backoff = Backoff::new();
        // ORDERING: Relaxed; only a starting guess, validated against the slot's stamp.
        let mut pos = h.enq.load(Ordering::Relaxed);
        let mut stuck = 0;
        loop {
            let slot = raw.slot(pos);
            // ORDERING: MPMC_SEQ_LOAD (Acquire); pairs with the consumer's MPMC_SEQ_STORE that
            // freed the slot (or the recoverer's CAS that gave it back), so its read of the
            // old value happened before our write.
            let seq = slot.seq.load(MPMC_SEQ_LOAD);
            match classify(seq, pos) {
                Step::Take => {
                    self.announce(pos);
                    // ORDERING: MPMC_ENQ_CAS (Release); pairs with the Acquire load of `enq`
                    // in `Receiver::recover`: our intent is visible to whoever sees `enq` past
                    // `pos`. The stamp carries the data ordering. Failure: Relaxed, a new guess.
                    match h.enq.compare_exchange_weak(
                        pos,
                        pos.wrapping_add(1),
                        MPMC_ENQ_CAS,
                        Ordering::Relaxed,
                    ) {
                        Ok(_) => {
                            if abandon {
                                return Ok(pos);
                            }
                            // SAFETY: we won position `pos`; until we store the stamp nobody
                            // else reads or writes this slot (a recoverer takes it only from a
                            // dead claimer). `src` holds one element we only read, not in the
                            // ring (caller).
                            unsafe { slot.write(src) };
                            // ORDERING: MPMC_SEQ_STORE (Release); pairs with the consumer's
                            // MPMC_SEQ_LOAD: our value write happens-before its read.
                            slot.seq.store(pos.wrapping_add(1), MPMC_SEQ_STORE);
                            self.clear();
                            return Ok(pos);
                        }
                        Err(now) => {
                            pos = now;
                            backoff.spin();
                        }
                    }
                }
                Step::Done => {
                    self.clear();
                    return Err(PushError::Full(()));
                }
                Step::Retry => {
                    let Some(now) = reload(&h.enq, pos, &mut stuck) else {
                        self.clear();
                        return Err(PushError::Corrupt(()));
                    };
                    pos = now;
                }
            }
        }
    }

    /// Whether a push would find its slot free now (the stamp at the enqueue position; also
    /// true while another producer moves the position on). False when the ring is full there,
    /// including at a slot a dead consumer holds (see [`recover`](Self::recover)).
    pub(crate) fn can_push(&self) -> bool {
        let raw = &self.raw;
        // ORDERING: Relaxed for both; a hint for a blocked sender, `push` decides.
        let pos = raw.hdr().enq.load(Ordering::Relaxed);
        // ORDERING: as above.
        let seq = raw.slot(pos).seq.load(Ordering::Relaxed);
        !matches!(classify(seq, pos), Step::Done)
    }

    /// Recovers the slot at the enqueue position if a consumer that died between its CAS on
    /// `deq` and its stamp store holds it (the ring looks full there forever otherwise): gives
    /// it back ([`Hole::Recovered`]; the message that consumer had taken is lost;
    /// [`Hole::Released`] if it had taken a skipped position, no message) if an intent
    /// of a dead consumer names it and none of a live one does (`is_alive` on owner tokens).
    /// Slow path: a few loads, and `is_alive` for each intent naming the position.
    pub(crate) fn recover_push(&self, is_alive: &dyn Fn(u64) -> bool) -> Hole {
        let raw = &self.raw;
        let h = raw.hdr();
        // ORDERING: Relaxed; which slot to look at, validated against `deq` and the stamp.
        let p = h.enq.load(Ordering::Relaxed);
        let q = p.wrapping_sub(raw.cap);
        // ORDERING: Acquire; pairs with the consumers' MPMC_DEQ_CAS (Release): the intent of
        // the consumer that took `q` is visible (module docs).
        let deq = h.deq.load(Ordering::Acquire);
        let taken = deq.wrapping_sub(q);
        if taken == 0 || taken > raw.cap {
            return Hole::None;
        }
        let slot = raw.slot(q);
        // ORDERING: Relaxed; compared only, the CAS below decides.
        let seq = slot.seq.load(Ordering::Relaxed);
        if seq != q.wrapping_add(1) && seq != skip_stamp(q) {
            return Hole::None;
        }
        if !self.claimer_dead(CONSUMERS, q, is_alive) {
            return Hole::Waiting;
        }
        // ORDERING: AcqRel; success publishes the free slot to the next producer's Acquire
        // stamp load (nobody read or writes the slot: its consumer is dead). A live consumer's
        // own stamp store wins over this CAS or makes it fail.
        match slot.seq.compare_exchange(
            seq,
            q.wrapping_add(raw.cap),
            Ordering::AcqRel,
            Ordering::Relaxed,
        ) {
            // A skipped position held no message: counting it again would count one loss
            // twice (it was counted when it was skipped).
            Ok(_) if seq == skip_stamp(q) => Hole::Released,
            Ok(_) => Hole::Recovered,
            Err(_) => Hole::None,
        }
    }

    /// The pop, copying the value once to `dst`; `Ok` only once it was written. With
    /// `abandon`, stops right after winning the position (test hook, `dst` untouched) and
    /// returns it.
    ///
    /// # Safety
    /// `dst` must be valid for a write of one `T`, and nobody else may use it meanwhile.
    pub(crate) unsafe fn pop_inner(&self, dst: *mut u8, abandon: bool) -> Result<u64, PopError> {
        let raw = &self.raw;
        let h = raw.hdr();
        let backoff = Backoff::new();
        // ORDERING: Relaxed; a starting guess, validated against the stamp.
        let mut pos = h.deq.load(Ordering::Relaxed);
        let mut stuck = 0;
        // Skipped slots passed in this call: bounded, so a ring whose stamps a hostile peer
        // keeps marking skipped still returns.
        let mut passed = 0;
        loop {
            let slot = raw.slot(pos);
            // ORDERING: MPMC_SEQ_LOAD (Acquire); pairs with the producer's MPMC_SEQ_STORE, so
            // its value write is visible.
            let seq = slot.seq.load(MPMC_SEQ_LOAD);
            let skipped = seq == skip_stamp(pos);
            let step = if skipped {
                Step::Take
            } else {
                classify(seq, pos.wrapping_add(1))
            };
            match step {
                Step::Take => {
                    self.announce(pos);
                    // ORDERING: MPMC_DEQ_CAS (Release); pairs with the Acquire load of `deq`
                    // in `Sender::recover`: our intent is visible to whoever sees `deq` past
                    // `pos`. The stamps order the data. Failure: Relaxed, a new guess.
                    match h.deq.compare_exchange_weak(
                        pos,
                        pos.wrapping_add(1),
                        MPMC_DEQ_CAS,
                        Ordering::Relaxed,
                    ) {
                        Ok(_) => {
                            if abandon {
                                return Ok(pos);
                            }
                            if !skipped {
                                // SAFETY: we won position `pos`, whose value is published; no
                                // producer writes the slot before we store the stamp, and
                                // `dst` is valid for a write of one element nobody else uses
                                // (caller; not in the ring). A skipped slot is not read (its
                                // producer never wrote it).
                                unsafe { slot.read(dst) };
                            }
                            // ORDERING: MPMC_SEQ_STORE (Release); pairs with the next
                            // producer's MPMC_SEQ_LOAD: our read happens-before its write.
                            slot.seq.store(pos.wrapping_add(raw.cap), MPMC_SEQ_STORE);
                            self.clear();
                            if !skipped {
                                return Ok(pos);
                            }
                            passed += 1;
                            if passed > raw.cap {
                                return Err(PopError::Empty);
                            }
                            pos = pos.wrapping_add(1);
                        }
                        Err(now) => {
                            pos = now;
                            backoff.spin();
                        }
                    }
                }
                Step::Done => {
                    self.clear();
                    return Err(PopError::Empty);
                }
                Step::Retry => {
                    let Some(now) = reload(&h.deq, pos, &mut stuck) else {
                        self.clear();
                        return Err(PopError::Corrupt);
                    };
                    pos = now;
                }
            }
        }
    }

    /// Whether a pop would find a value (or a skipped slot) at the dequeue position now; also
    /// true while another consumer moves the position on. False on an empty ring, and at a
    /// hole (a position taken by a producer that has not stored its stamp, see
    /// [`recover`](Self::recover)).
    pub(crate) fn can_pop(&self) -> bool {
        let raw = &self.raw;
        // ORDERING: Relaxed for both; a hint for a blocked receiver, `pop` decides.
        let pos = raw.hdr().deq.load(Ordering::Relaxed);
        // ORDERING: as above.
        let seq = raw.slot(pos).seq.load(Ordering::Relaxed);
        seq == skip_stamp(pos) || !matches!(classify(seq, pos.wrapping_add(1)), Step::Done)
    }

    /// Recovers a hole at the dequeue position: a position a producer took (`enq` is past it)
    /// and never published. If an intent of a dead producer names it and none of a live one
    /// does (`is_alive` on owner tokens), marks it skipped ([`Hole::Recovered`]; consumers
    /// pass over it, count it lost). Slow path: a few loads, and `is_alive` for each intent
    /// naming the position.
    pub(crate) fn recover_pop(&self, is_alive: &dyn Fn(u64) -> bool) -> Hole {
        let raw = &self.raw;
        let h = raw.hdr();
        // ORDERING: Relaxed; which slot to look at, validated against `enq` and the stamp.
        let q = h.deq.load(Ordering::Relaxed);
        // ORDERING: Acquire; pairs with the producers' MPMC_ENQ_CAS (Release): the intent of
        // the producer that took `q` is visible (module docs).
        let enq = h.enq.load(Ordering::Acquire);
        let taken = enq.wrapping_sub(q);
        if taken == 0 || taken > raw.cap {
            return Hole::None;
        }
        let slot = raw.slot(q);
        // ORDERING: Relaxed; compared only, the CAS below decides.
        if slot.seq.load(Ordering::Relaxed) != q {
            return Hole::None;
        }
        if !self.claimer_dead(PRODUCERS, q, is_alive) {
            return Hole::Waiting;
        }
        // ORDERING: AcqRel; success publishes the mark to the consumers' Acquire stamp load.
        // A live producer's own stamp store wins over this CAS or makes it fail.
        match slot
            .seq
            .compare_exchange(q, skip_stamp(q), Ordering::AcqRel, Ordering::Relaxed)
        {
            Ok(_) => Hole::Recovered,
            Err(_) => Hole::None,
        }
    }
}

impl<T: Pod> Sender<T> {
    /// Keeps `owner` alive as long as this handle (and its clones made afterwards).
    #[must_use]
    pub fn keep_alive(mut self, owner: KeepAlive) -> Self {
        self.ep.raw.keep = Some(owner);
        self
    }

    /// Pushes one value, or gives it back if the ring is full. Never blocks.
    ///
    /// ```
    /// use shmlane_ring::HeapRegion;
    /// let (tx, rx) = HeapRegion::mpmc::<u32>(4);
    /// let tx2 = tx.clone();
    /// tx.push(1).unwrap();
    /// tx2.push(2).unwrap();
    /// assert_eq!(rx.pop(), Ok(1));
    /// assert_eq!(rx.pop(), Ok(2));
    /// ```
    pub fn push(&self, value: T) -> Result<(), PushError<T>> {
        self.ep.begin();
        // SAFETY: `value` is one T of ours, not in the ring.
        let r = unsafe { self.ep.push_inner((&raw const value).cast(), false) };
        self.ep.end();
        match r {
            Ok(_) => Ok(()),
            Err(PushError::Full(())) => Err(PushError::Full(value)),
            Err(PushError::Corrupt(())) => Err(PushError::Corrupt(value)),
        }
    }

    /// Pushes a copy of `*value`, or refuses if the ring is full. Never blocks. One copy,
    /// straight into the slot: for large `T` (a 64 KiB message), where moving the value into
    /// [`push`](Self::push) costs a copy more in the caller (and building it on the stack
    /// another).
    ///
    /// ```
    /// use shmlane_ring::HeapRegion;
    /// let (tx, rx) = HeapRegion::mpmc::<[u8; 4096]>(2);
    /// let msg = Box::new([7u8; 4096]);
    /// tx.push_ref(&msg).unwrap();
    /// let mut out = Box::new([0u8; 4096]);
    /// rx.pop_into(&mut out).unwrap();
    /// assert_eq!(out, msg);
    /// ```
    pub fn push_ref(&self, value: &T) -> Result<(), PushError<()>> {
        self.ep.begin();
        // SAFETY: `*value` is one T we borrow, not in the ring (a `&T` into the ring cannot
        // be made: no API hands one out).
        let r = unsafe { self.ep.push_inner(core::ptr::from_ref(value).cast(), false) };
        self.ep.end();
        r.map(|_| ())
    }

    /// Whether a push would find its slot free now (the stamp at the enqueue position; also
    /// true while another producer moves the position on). False when the ring is full there,
    /// including at a slot a dead consumer holds (see [`recover`](Self::recover)).
    pub fn can_push(&self) -> bool {
        self.ep.can_push()
    }

    /// Recovers the slot at the enqueue position if a consumer that died between its CAS on
    /// `deq` and its stamp store holds it (the ring looks full there forever otherwise): gives
    /// it back ([`Hole::Recovered`]; the message that consumer had taken is lost;
    /// [`Hole::Released`] if it had taken a skipped position, no message) if an intent
    /// of a dead consumer names it and none of a live one does (`is_alive` on owner tokens).
    /// Slow path: a few loads, and `is_alive` for each intent naming the position.
    pub fn recover(&self, is_alive: &dyn Fn(u64) -> bool) -> Hole {
        self.ep.recover_push(is_alive)
    }

    /// Whether the shared positions, and the stamp where receivers read next, are ones a sound
    /// ring can show; false only when shared memory was overwritten (the ring is corrupt).
    /// Slow path (three loads on lines the other side writes): blocked channel senders check
    /// it with their hole checks.
    pub fn positions_consistent(&self) -> bool {
        positions_consistent(&self.ep.raw)
    }

    /// Whether this handle holds an intent entry (its crash mid-push can be recovered).
    pub fn has_intent(&self) -> bool {
        self.ep.intent.is_some()
    }

    /// Test hook, not part of the API: what a producer that dies between its CAS on `enq` and
    /// its stamp store leaves behind. Announces and, with `take`, wins the next position, then
    /// stops, as a killed process would (no value, no stamp, intent entry kept). Without
    /// `take` it dies before its CAS (or after losing it): a stale intent. Returns the
    /// position.
    #[doc(hidden)]
    pub fn abandon_push_for_tests(self, take: bool) -> u64 {
        self.ep.begin();
        let pos = if take {
            // SAFETY: a T of our own (not even read in abandon mode).
            unsafe {
                self.ep
                    .push_inner(core::ptr::from_ref(&T::zeroed()).cast(), true)
            }
            .unwrap_or_else(|_| panic!("abandon_push_for_tests on a full ring"))
        } else {
            // ORDERING: Relaxed; the position to name, nothing is taken.
            let pos = self.ep.raw.hdr().enq.load(Ordering::Relaxed);
            self.ep.announce(pos);
            pos
        };
        core::mem::forget(self);
        pos
    }

    /// The capacity.
    pub fn capacity(&self) -> usize {
        self.ep.raw.cap as usize
    }

    /// Elements in the ring, approximately (positions read one after the other).
    pub fn len(&self) -> usize {
        approx_len(&self.ep.raw)
    }

    /// Whether the ring looks empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn approx_len<L>(raw: &Raw<L>) -> usize {
    // ORDERING: Relaxed; an estimate for statistics.
    let deq = raw.hdr().deq.load(Ordering::Relaxed);
    // ORDERING: Relaxed; as above.
    let enq = raw.hdr().enq.load(Ordering::Relaxed);
    enq.wrapping_sub(deq).min(raw.cap) as usize
}

impl<T: Pod> Receiver<T> {
    /// Keeps `owner` alive as long as this handle (and its clones made afterwards).
    #[must_use]
    pub fn keep_alive(mut self, owner: KeepAlive) -> Self {
        self.ep.raw.keep = Some(owner);
        self
    }

    /// Pops one value. Never blocks. Passes over slots marked skipped (see
    /// [`recover`](Self::recover)).
    pub fn pop(&self) -> Result<T, PopError> {
        let mut v = core::mem::MaybeUninit::<T>::uninit();
        self.ep.begin();
        // SAFETY: `v` is ours, room for one T.
        let r = unsafe { self.ep.pop_inner(v.as_mut_ptr().cast(), false) };
        self.ep.end();
        // SAFETY: `pop_inner` returns `Ok` only after copying a whole T into `v` (not in
        // abandon mode).
        r.map(|_| unsafe { v.assume_init() })
    }

    /// Pops one value into `*dst`, or leaves it alone if the ring is empty. Never blocks. One
    /// copy, straight from the slot: for large `T`, where [`pop`](Self::pop) returns the
    /// value through the caller's stack. `*dst` is written only with `Ok`; on any error, and
    /// for the skipped slots it passes over, it is left as it was.
    pub fn pop_into(&self, dst: &mut T) -> Result<(), PopError> {
        self.ep.begin();
        // SAFETY: `dst` is a T we borrow exclusively.
        let r = unsafe { self.ep.pop_inner(core::ptr::from_mut(dst).cast(), false) };
        self.ep.end();
        r.map(|_| ())
    }

    /// Whether a pop would find a value (or a skipped slot) at the dequeue position now; also
    /// true while another consumer moves the position on. False on an empty ring, and at a
    /// hole (a position taken by a producer that has not stored its stamp, see
    /// [`recover`](Self::recover)).
    pub fn can_pop(&self) -> bool {
        self.ep.can_pop()
    }

    /// Recovers a hole at the dequeue position: a position a producer took (`enq` is past it)
    /// and never published. If an intent of a dead producer names it and none of a live one
    /// does (`is_alive` on owner tokens), marks it skipped ([`Hole::Recovered`]; consumers
    /// pass over it, count it lost). Slow path: a few loads, and `is_alive` for each intent
    /// naming the position.
    pub fn recover(&self, is_alive: &dyn Fn(u64) -> bool) -> Hole {
        self.ep.recover_pop(is_alive)
    }

    /// Whether the shared positions, and the stamp where receivers read next, are ones a sound
    /// ring can show; false only when shared memory was overwritten (the ring is corrupt).
    /// Slow path (three loads on lines the other side writes): blocked channel receivers check
    /// it with their hole checks.
    pub fn positions_consistent(&self) -> bool {
        positions_consistent(&self.ep.raw)
    }

    /// Whether this handle holds an intent entry (its crash mid-pop can be recovered).
    pub fn has_intent(&self) -> bool {
        self.ep.intent.is_some()
    }

    /// Test hook, not part of the API: what a consumer that dies between its CAS on `deq` and
    /// its stamp store leaves behind. Announces and, with `take`, wins the next position
    /// (which must hold a value), then stops, as a killed process would. Without `take` it
    /// dies before its CAS: a stale intent. Returns the position.
    #[doc(hidden)]
    pub fn abandon_pop_for_tests(self, take: bool) -> u64 {
        self.ep.begin();
        let pos = if take {
            // SAFETY: a T of our own (untouched in abandon mode anyway).
            unsafe {
                self.ep
                    .pop_inner(core::ptr::from_mut(&mut T::zeroed()).cast(), true)
            }
            .unwrap_or_else(|e| panic!("abandon_pop_for_tests: {e}"))
        } else {
            // ORDERING: Relaxed; the position to name, nothing is taken.
            let pos = self.ep.raw.hdr().deq.load(Ordering::Relaxed);
            self.ep.announce(pos);
            pos
        };
        core::mem::forget(self);
        pos
    }

    /// Pops up to `dst.len()` values; returns how many.
    pub fn pop_slice(&self, dst: &mut [T]) -> Result<usize, PopError> {
        for (i, d) in dst.iter_mut().enumerate() {
            match self.pop_into(d) {
                Ok(()) => {}
                Err(PopError::Empty) => return Ok(i),
                Err(e) => return Err(e),
            }
        }
        Ok(dst.len())
    }

    /// The capacity.
    pub fn capacity(&self) -> usize {
        self.ep.raw.cap as usize
    }

    /// Elements in the ring, approximately.
    pub fn len(&self) -> usize {
        approx_len(&self.ep.raw)
    }

    /// Whether the ring looks empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(all(test, not(loom)))]
mod tests;
