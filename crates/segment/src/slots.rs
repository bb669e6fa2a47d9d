//! Attachment slots, the one place for the identity of an attachment: claiming a slot (free
//! ones first, then ones whose holder is dead), releasing it, re-claiming after `fork`,
//! liveness of a slot's holder (kernel locks for fd backends, /proc for the others), and
//! owner tags (slot and generation), which the region directory lock and the rings' role
//! claims use as tokens.

use std::{
    fs::OpenOptions,
    io,
    os::{
        fd::{AsFd, AsRawFd},
        unix::fs::OpenOptionsExt,
    },
};

use crate::{
    layout::{GATE_LOCK, SLOT_ATTACHED, SLOT_FREE, SLOT_LOCK_BASE, SLOT_SIZE, Slot},
    segment::{Attachment, Segment, UnlinkPolicy},
    sync::{Ordering, fence},
    sys::{self, LockKind},
};

/// Owner tags: the slot plus one in the low bits (slots are at most 4096), then the generation.
pub(crate) const TAG_SLOT_BITS: u32 = 13;
const TAG_GEN_MASK: u32 = (1 << 11) - 1;

/// The fields of an fd-less slot that decide whether its holder lives, read consistently.
struct SlotSnapshot {
    generation: u32,
    state: u32,
    pid: u32,
    start: u64,
    ident: u64,
}

/// A consistent copy of an fd-less slot, or `None` while a claim is in progress (odd
/// generation) or when one changed the slot while we read it.
fn snapshot(slot: &Slot) -> Option<SlotSnapshot> {
    // ORDERING: Acquire; pairs with the Release store of the even generation that ends a
    // claim, so the fields it wrote are visible below.
    let generation = slot.generation.load(Ordering::Acquire);
    if generation % 2 == 1 {
        return None;
    }
    let snap = SlotSnapshot {
        generation,
        // ORDERING: Acquire; pairs with the Release stores of `state` (a release by the
        // holder needs no generation change).
        state: slot.state.load(Ordering::Acquire),
        // ORDERING: Relaxed; validated by the generation re-read after the fence below.
        pid: slot.pid.load(Ordering::Relaxed),
        // ORDERING: as above.
        start: slot.start_ticks.load(Ordering::Relaxed),
        // ORDERING: as above.
        ident: slot.ident.load(Ordering::Relaxed),
    };
    #[cfg(test)]
    tests::snapshot_point();
    // ORDERING: Acquire fence; pairs with the claimer's Release fence after its CAS: if a
    // load above saw a field store of a claim, the re-read below sees its odd generation
    // (or a later value).
    fence(Ordering::Acquire);
    // ORDERING: Relaxed; ordered by the fence above.
    (slot.generation.load(Ordering::Relaxed) == generation).then_some(snap)
}

/// What our /proc says about a slot holder that recorded `pid`, `start` and `ident`.
fn holder_verdict(pid: u32, start: u64, ident: u64) -> sys::Verdict {
    sys::judge(
        &sys::proc_view(),
        sys::geteuid(),
        start,
        Some(ident),
        sys::probe(pid),
    )
}

impl Segment {
    fn slot_ref(&self, i: u32) -> Option<&Slot> {
        if i >= self.max_attach {
            return None;
        }
        let off = crate::layout::SLOTS_OFFSET + i as usize * SLOT_SIZE;
        // SAFETY: `i < max_attach`, and the validated header guarantees the slot table lies
        // below `data_offset <= len`; slots are 32-byte aligned atomics (see `control`).
        Some(unsafe { &*self.base().add(off).cast::<Slot>() })
    }

    /// Claims an attachment slot: free ones first, then ones left by dead processes.
    ///
    /// Fd backends own a slot by its kernel lock. Fd-less backends own it by moving its
    /// generation from an even value to the next, odd one (a CAS, so one claimer wins); the
    /// generation stays odd while the winner writes its pid, start time and identity, and
    /// becomes even again (Release) once they are complete. A reader ((`snapshot`))
    /// trusts the fields only between two equal, even readings of the generation, so a slot
    /// being claimed is never judged by the previous holder's pid (which is how two claimers
    /// once both took one slot: the second saw the first's slot attached with the previous,
    /// dead, holder's pid). A claimer that dies in those few instructions leaves the slot odd
    /// and so never reusable (counted alive): a lost slot, never a shared one.
    ///
    /// Returns the slot and the generation this claim published (the owner tag's).
    pub(crate) fn claim_slot(&self, role: u32) -> Result<(u32, u32), ()> {
        let me = sys::getpid();
        let start = sys::own_start_ticks();
        for pass in 0..2 {
            for i in 0..self.max_attach {
                let slot = self.slot_ref(i).ok_or(())?;
                // ORDERING: Acquire; pairs with the Release stores of `state` in `claim_slot`
                // and `release_slot`, so pid/start_ticks read after it are the holder's.
                let state = slot.state.load(Ordering::Acquire);
                if pass == 0 && state != SLOT_FREE {
                    continue;
                }
                let mut generation = None;
                if let Some(fd) = &self.fd {
                    if !sys::try_lock(
                        fd.as_fd(),
                        SLOT_LOCK_BASE + i64::from(i),
                        LockKind::Exclusive,
                    )
                    .unwrap_or(false)
                    {
                        continue;
                    }
                } else {
                    let Some(snap) = snapshot(slot) else {
                        // A claim in progress, or one that changed the slot while we read it.
                        continue;
                    };
                    let free = snap.state == SLOT_FREE;
                    let dead = pass == 1
                        && snap.state == SLOT_ATTACHED
                        && holder_verdict(snap.pid, snap.start, snap.ident) == sys::Verdict::Dead;
                    if !free && !dead {
                        continue;
                    }
                    // ORDERING: AcqRel; among racing claimers of this slot only one moves the
                    // generation from the even value they read (pairs with the winner's CAS and
                    // its Release store of the next even value below).
                    if slot
                        .generation
                        .compare_exchange(
                            snap.generation,
                            snap.generation.wrapping_add(1),
                            Ordering::AcqRel,
                            Ordering::Relaxed,
                        )
                        .is_err()
                    {
                        continue;
                    }
                    // ORDERING: Release fence; the odd generation stored by the CAS above is
                    // ordered before the field stores below, for a reader whose Acquire fence
                    // follows its loads of them (`snapshot`).
                    fence(Ordering::Release);
                    generation = Some(snap.generation);
                    #[cfg(test)]
                    tests::pause_point();
                }
                // ORDERING: Acquire re-read now that we hold the slot; pairs as above.
                if slot.state.load(Ordering::Acquire) == SLOT_ATTACHED
                    && (self.fd.is_some() || pass == 1)
                {
                    // Its last holder died without detaching.
                    // ORDERING: Relaxed; a statistic.
                    self.control()
                        .unclean_detaches
                        .fetch_add(1, Ordering::Relaxed);
                }
                // ORDERING: Relaxed; published by the Release store of `state` below.
                slot.pid.store(me, Ordering::Relaxed);
                // ORDERING: as above.
                slot.start_ticks.store(start, Ordering::Relaxed);
                // ORDERING: as above.
                slot.ident.store(sys::holder_ident(), Ordering::Relaxed);
                // ORDERING: as above.
                slot.role.store(role, Ordering::Relaxed);
                let published = match generation {
                    Some(g) => g.wrapping_add(2),
                    // ORDERING: Relaxed; only the lock holder writes it.
                    None => slot
                        .generation
                        .fetch_add(1, Ordering::Relaxed)
                        .wrapping_add(1),
                };
                // ORDERING: Release; pairs with the Acquire loads of `state` by listers and
                // later claimers, publishing pid, start_ticks and role.
                slot.state.store(SLOT_ATTACHED, Ordering::Release);
                if generation.is_some() {
                    // ORDERING: Release; the claim is complete: pairs with the Acquire load of
                    // the generation in `snapshot`, publishing every field written above.
                    slot.generation.store(published, Ordering::Release);
                }
                // ORDERING: Relaxed; a statistic.
                self.control().attach_count.fetch_add(1, Ordering::Relaxed);
                return Ok((i, published));
            }
        }
        Err(())
    }

    pub(crate) fn release_slot(&self) {
        if let Some(slot) = self.slot_ref(self.slot) {
            // ORDERING: Release; pairs with the Acquire loads of `state` in `claim_slot` and
            // the listers: a FREE slot was left cleanly.
            slot.state.store(SLOT_FREE, Ordering::Release);
            if let Some(fd) = &self.fd {
                let _ = sys::unlock(fd.as_fd(), SLOT_LOCK_BASE + i64::from(self.slot));
            }
        }
    }

    /// Call in a child after `fork`: claims an attachment slot for the child, so that the
    /// parent's slot is not released by the child's drop and the child's death is seen.
    /// For fd backends the file is reopened, so the child's locks are its own.
    ///
    /// On failure (no free slot, or the file cannot be reopened) the handle holds no slot: its
    /// drop then leaves the parent's slot alone, [`slot`](Self::slot) is `u32::MAX`,
    /// [`owner_tag`](Self::owner_tag) is 0 and [`region`](Self::region) cannot create regions
    /// (`NotAttached`); the mapping stays usable.
    pub fn after_fork(&mut self, role: u32) -> io::Result<()> {
        // The inherited slot is the parent's: never ours to use, release or name, whatever
        // happens below.
        self.slot = u32::MAX;
        // ORDERING: Relaxed; `&mut self`, and the child's only thread: no other thread of this
        // process can be taking the directory lock (a parent thread inside `region()` at the
        // fork left the flag set in the child's copy).
        self.dir_local.store(0, Ordering::Relaxed);
        if let Some(fd) = &self.fd {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_CLOEXEC)
                .open(format!("/proc/self/fd/{}", fd.as_raw_fd()))?;
            sys::try_lock(file.as_fd(), GATE_LOCK, LockKind::Shared)?;
            // Dropping the inherited descriptor does not release the parent's OFD locks: the
            // parent still holds the description open.
            self.fd = Some(file.into());
        }
        self.owner_pid = sys::getpid();
        self.created = false;
        self.unlink = UnlinkPolicy::Never;
        (self.slot, self.tag_gen) = self.claim_slot(role).map_err(|()| {
            io::Error::other(format!(
                "segment {} has all {} attachment slots in use by live processes; detach a process or create the segment with more slots",
                self.loc.display_name(),
                self.max_attach
            ))
        })?;
        Ok(())
    }

    /// This process's attachment slot.
    pub fn slot(&self) -> u32 {
        self.slot
    }

    /// Whether this handle is attached for the calling process: false in a child made by
    /// `fork` (until [`after_fork`](Self::after_fork)), where the slot, its lock and its owner
    /// tag are still the parent's. Liveness answers given to such a child are wrong about the
    /// parent (the parent's lock, held through the shared file description, reads as free), so
    /// layers that take over roles or skip a peer's work refuse to act for it.
    pub fn attached_here(&self) -> bool {
        self.slot != u32::MAX && self.owner_pid == sys::getpid()
    }

    /// Changes the role tag of this handle's attachment slot (shown by `shmlane ls`; channels
    /// use it to find their peers).
    pub fn set_role(&self, role: u32) {
        if let Some(slot) = self.slot_ref(self.slot) {
            // ORDERING: Relaxed; an informational tag, read by listers after their Acquire
            // load of the slot state.
            slot.role.store(role, Ordering::Relaxed);
        }
    }

    /// This attachment's owner tag, for role claims and record headers: the slot (plus one, in
    /// the low 13 bits) and the low 11 bits of the generation the slot was claimed at. A later
    /// process given the same slot has another generation, so a tag left by a dead process is
    /// never taken for the new holder's (the slot number alone was: a dead producer's claim
    /// looked alive until a timeout once its slot had been reused). Fits in 24 bits.
    /// A handle that holds no slot (its `after_fork` failed) has tag 0, which is never alive.
    pub fn owner_tag(&self) -> u32 {
        if self.slot >= self.max_attach {
            return 0;
        }
        // Our claim's generation as we published it, not as the slot says now (a peer can
        // write the slot; our tag must not change under our endpoints' claims).
        ((self.tag_gen & TAG_GEN_MASK) << TAG_SLOT_BITS) | (self.slot + 1)
    }

    /// The process id recorded in the slot of the live attachment that `tag` names (`None`
    /// if it is not alive). Informational (error messages): the pid is a word peers can write.
    pub fn tag_pid(&self, tag: u32) -> Option<u32> {
        if !self.tag_alive(tag) {
            return None;
        }
        let slot = (tag & ((1 << TAG_SLOT_BITS) - 1)) - 1;
        self.attachments()
            .into_iter()
            .find(|a| a.slot == slot)
            .map(|a| a.pid)
    }

    /// Whether the attachment that `tag` ([`owner_tag`](Self::owner_tag)) names is alive: its
    /// slot is held by a live process *and* still at the tag's generation. 0 is never alive.
    pub fn tag_alive(&self, tag: u32) -> bool {
        let slot = tag & ((1 << TAG_SLOT_BITS) - 1);
        if slot == 0 || tag >> (TAG_SLOT_BITS + 11) != 0 {
            return false;
        }
        let i = slot - 1;
        if i == self.slot && self.owner_pid == sys::getpid() {
            // Our own attachment: alive, at the generation we claimed it at (kept locally,
            // so a peer writing our slot's generation cannot make our tags look dead).
            return tag >> TAG_SLOT_BITS == self.tag_gen & TAG_GEN_MASK;
        }
        // Liveness first, then the generation: a slot re-claimed in between shows the new
        // generation, so the old holder is (rightly) reported dead.
        if !self.slot_alive(i) {
            return false;
        }
        let Some(s) = self.slot_ref(i) else {
            return false;
        };
        // ORDERING: Acquire; pairs with the claimer's Release store of `state`, after which
        // the generation it bumped is visible.
        let _ = s.state.load(Ordering::Acquire);
        // ORDERING: Relaxed; ordered by the Acquire load above.
        (s.generation.load(Ordering::Relaxed) & TAG_GEN_MASK) == tag >> TAG_SLOT_BITS
    }

    /// Whether the process in attachment slot `i` is alive. For fd backends this asks the
    /// kernel whether the slot's lock is held (exact, no pid reuse problem); otherwise it
    /// compares the stored pid and start time with /proc. A stopped (SIGSTOP) process is alive,
    /// and so is one /proc cannot judge (another pid namespace, a hidden /proc: see
    /// [`crate::process::proc_view`]).
    pub fn slot_alive(&self, i: u32) -> bool {
        let Some(slot) = self.slot_ref(i) else {
            return false;
        };
        if i == self.slot && self.owner_pid == sys::getpid() {
            return true;
        }
        match &self.fd {
            Some(fd) => sys::is_locked_by_other(
                fd.as_fd(),
                SLOT_LOCK_BASE + i64::from(i),
                LockKind::Exclusive,
            )
            .unwrap_or(true),
            // A claim in progress, or one that changed the slot while we read it: its claimer
            // was alive a moment ago (or died mid-claim: then the slot is lost, never shared).
            None => snapshot(slot).is_none_or(|snap| {
                snap.state == SLOT_ATTACHED
                    && holder_verdict(snap.pid, snap.start, snap.ident) != sys::Verdict::Dead
            }),
        }
    }

    /// Slots in the attachment table (the most attachments [`attachments`](Self::attachments)
    /// can list).
    pub fn attachment_slots(&self) -> u32 {
        self.max_attach
    }

    /// The attachment table: every slot that is attached, or was left attached by a process
    /// that died.
    pub fn attachments(&self) -> Vec<Attachment> {
        let mut out = Vec::new();
        self.attachments_into(&mut out);
        out
    }

    /// As [`attachments`](Self::attachments), into `out` (cleared first): no allocation once
    /// `out` has capacity for [`attachment_slots`](Self::attachment_slots) entries, for callers
    /// that check liveness repeatedly (a blocked receive every 50 ms).
    pub fn attachments_into(&self, out: &mut Vec<Attachment>) {
        out.clear();
        out.extend((0..self.max_attach).filter_map(|i| {
            let s = self.slot_ref(i)?;
            // ORDERING: Acquire; pairs with the Release store in `claim_slot`.
            if s.state.load(Ordering::Acquire) != SLOT_ATTACHED {
                return None;
            }
            Some(Attachment {
                slot: i,
                // ORDERING: Relaxed; ordered after the Acquire load above.
                pid: s.pid.load(Ordering::Relaxed),
                // ORDERING: as above.
                role: s.role.load(Ordering::Relaxed),
                alive: self.slot_alive(i),
            })
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Owner tags carry the slot's generation: when the slot is claimed again (a later
    /// attachment), a tag of the earlier holder is no longer alive.
    #[test]
    fn an_owner_tag_dies_with_its_generation() {
        let name = format!("shmlane-test-{}-tags", std::process::id());
        let seg = Segment::posix(&name)
            .size(64 * 1024)
            .unlink(UnlinkPolicy::LastDetach)
            .create()
            .expect("create");
        let tag = seg.owner_tag();
        assert_eq!(tag & 0x1fff, seg.slot() + 1);
        assert!(seg.tag_alive(tag));
        assert!(!seg.tag_alive(0));
        assert!(!seg.tag_alive(tag | 1 << 30), "bits above the tag");
        // A second attachment, detached, then its slot claimed again: a new generation.
        let other = Segment::posix(&name).open().expect("open");
        let (slot, earlier) = (other.slot(), other.owner_tag());
        assert!(seg.tag_alive(earlier));
        drop(other);
        let later = Segment::posix(&name).open().expect("open again");
        assert_eq!(later.slot(), slot, "the freed slot is claimed again");
        assert!(!seg.tag_alive(earlier), "the earlier holder's tag");
        assert!(seg.tag_alive(later.owner_tag()));
        assert!(later.tag_alive(later.owner_tag()));
    }

    /// Review rev2: our own tag is built from the generation our claim published, so a peer
    /// writing our slot's generation changes neither the tag nor its liveness (it used to do
    /// both: our role claims then looked dead, and a second endpoint was handed out in this
    /// very process).
    #[test]
    fn a_peer_writing_our_slot_generation_leaves_our_tag_alone() {
        for anonymous in [false, true] {
            let name = format!("shmlane-test-{}-taggen", std::process::id());
            let seg = if anonymous {
                Segment::anonymous().size(64 * 1024).create()
            } else {
                Segment::posix(&name)
                    .size(64 * 1024)
                    .unlink(UnlinkPolicy::LastDetach)
                    .create()
            }
            .expect("create");
            let tag = seg.owner_tag();
            let slot = seg.slot_ref(seg.slot()).unwrap();
            // ORDERING: Relaxed; a test playing a hostile peer.
            slot.generation.fetch_add(2, Ordering::Relaxed);
            assert_eq!(seg.owner_tag(), tag, "anonymous {anonymous}");
            assert!(seg.tag_alive(tag), "anonymous {anonymous}");
        }
    }

    /// Review rev2: a parent thread inside `region()` at the moment of `fork` leaves the
    /// handle's directory turn taken in the child's copy; `after_fork` must clear it, or every
    /// `region()` of the child fails with `Busy` after 2 s. (In-process stand-in for the fork:
    /// the turn set by hand, then `after_fork`, which claims a second slot.)
    #[test]
    fn after_fork_clears_a_directory_turn_inherited_from_the_parent() {
        for anonymous in [false, true] {
            let name = format!("shmlane-test-{}-fork-turn", std::process::id());
            let mut seg = if anonymous {
                Segment::anonymous().size(64 * 1024).create()
            } else {
                Segment::posix(&name)
                    .size(64 * 1024)
                    .unlink(UnlinkPolicy::LastDetach)
                    .create()
            }
            .expect("create");
            // ORDERING: Relaxed; a test setting the turn as a parent thread in `region()` does.
            seg.dir_local.store(1, Ordering::Relaxed);
            seg.after_fork(0).expect("after_fork");
            let t0 = std::time::Instant::now();
            seg.region("r", 128, 1).expect("region after after_fork");
            assert!(
                t0.elapsed() < std::time::Duration::from_millis(500),
                "anonymous {anonymous}: region() waited {:?} on the inherited turn",
                t0.elapsed()
            );
            // The stand-in keeps the "parent's" slot held beside the child's, so this handle
            // is not the last to leave and would keep the name: remove it.
            drop(seg);
            let _ = std::fs::remove_file(format!("/dev/shm/{name}"));
        }
    }

    std::thread_local! {
        /// Run by `claim_slot` on this thread once it owns an fd-less slot, before it writes
        /// its identity: lets a test hold a claim in progress.
        static PAUSE: std::cell::RefCell<Option<Box<dyn FnMut()>>> =
            const { std::cell::RefCell::new(None) };
    }

    pub(super) fn pause_point() {
        PAUSE.with(|p| {
            if let Some(f) = p.borrow_mut().as_mut() {
                f();
            }
        });
    }

    std::thread_local! {
        /// Run once by `snapshot` on this thread between its field loads and its re-read of
        /// the generation: lets a test complete a claim there.
        static SNAPSHOT: std::cell::RefCell<Option<Box<dyn FnOnce()>>> =
            const { std::cell::RefCell::new(None) };
    }

    pub(super) fn snapshot_point() {
        let f = SNAPSHOT.with(|p| p.borrow_mut().take());
        if let Some(f) = f {
            f();
        }
    }

    /// Sets slot `i` as left by `pid` (alive or not) in state `state`.
    fn set_slot(seg: &Segment, i: u32, state: u32, pid: u32, start: u64) {
        let slot = seg.slot_ref(i).unwrap();
        // ORDERING: Relaxed, then Release on `state`; a test setting up the table between
        // rounds, while no claim runs.
        slot.pid.store(pid, Ordering::Relaxed);
        // ORDERING: as above.
        slot.start_ticks.store(start, Ordering::Relaxed);
        // ORDERING: as above.
        slot.ident.store(sys::holder_ident(), Ordering::Relaxed);
        // ORDERING: as above.
        slot.state.store(state, Ordering::Release);
    }

    /// Review rev2: a reader of a slot whose dead holder is replaced by a live claimer while
    /// it reads (the whole claim between its field loads and its re-read of the generation)
    /// must not judge the slot by the dead holder's pid it loaded: the re-read sees the new
    /// generation and the verdict is "a claim happened: alive". Without the re-read the new,
    /// live holder was reported dead (and its tags with it).
    #[test]
    fn a_slot_claimed_while_it_is_read_is_not_judged_by_the_previous_holder() {
        let seg = Segment::anonymous()
            .size(4096)
            .max_attachments(2)
            .create()
            .unwrap();
        assert_eq!(seg.slot(), 0);
        // Slot 1 left attached by a process now gone.
        set_slot(&seg, 1, SLOT_ATTACHED, 1 << 23, 1);
        assert!(!seg.slot_alive(1), "the dead holder is dead");
        let claimed = std::rc::Rc::new(std::cell::Cell::new(None));
        let c = claimed.clone();
        let seg_ref: &'static Segment = Box::leak(Box::new(seg));
        SNAPSHOT.with(|p| {
            *p.borrow_mut() = Some(Box::new(move || c.set(Some(seg_ref.claim_slot(8)))));
        });
        let alive = seg_ref.slot_alive(1);
        let (slot, _) = claimed
            .get()
            .expect("the claim ran inside the read")
            .unwrap();
        assert_eq!(slot, 1, "the dead holder's slot was taken over");
        assert!(
            alive,
            "a slot claimed by a live process during the read was judged dead"
        );
        assert!(seg_ref.slot_alive(1));
    }

    /// Two claimers of the one free slot of an fd-less segment whose previous holder left it
    /// cleanly and has since exited (the other slot held by this live process). The first has
    /// won the slot and not yet written its pid; the second, finding no free slot, looks for
    /// dead holders: it must not take the first's slot for the previous holder's, nor may
    /// anyone judge the slot's holder dead meanwhile. Before a claim in progress was marked
    /// (an odd generation), the second got the same slot (a stress test of the race hit it
    /// in 7 of 20 000 rounds).
    #[test]
    fn a_slot_being_claimed_is_not_taken_for_its_dead_previous_holders() {
        let seg = Segment::anonymous()
            .size(4096)
            .max_attachments(2)
            .create()
            .unwrap();
        // Slot 0 is ours (the creator's); slot 1 was left cleanly by a process now gone.
        assert_eq!(seg.slot(), 0);
        set_slot(&seg, 1, SLOT_FREE, 1 << 23, 1);
        let (claimed, wait_claimed) = std::sync::mpsc::channel();
        let (go_on, wait_go_on) = std::sync::mpsc::channel::<()>();
        std::thread::scope(|s| {
            let first = s.spawn(|| {
                PAUSE.with(|p| {
                    *p.borrow_mut() = Some(Box::new(move || {
                        claimed.send(()).unwrap();
                        wait_go_on.recv().unwrap();
                    }));
                });
                seg.claim_slot(7).map(|(i, _)| i)
            });
            wait_claimed.recv().unwrap();
            // The first holds slot 1, its identity not yet written.
            let alive = seg.slot_alive(1);
            let second = seg.claim_slot(8);
            go_on.send(()).unwrap();
            assert!(alive, "a slot being claimed was judged dead");
            assert_eq!(second, Err(()), "a second claimer took slot {second:?}");
            assert_eq!(first.join().unwrap(), Ok(1));
        });
        assert!(seg.slot_alive(1));
        assert_eq!(seg.attachments().len(), 2);
        assert_eq!(seg.claim_slot(9), Err(()), "the table is full");
        assert_eq!(seg.unclean_detaches(), 0);
    }
}
