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
    sync::Ordering,
    sys::{self, LockKind},
};

/// Owner tags: the slot plus one in the low bits (slots are at most 4096), then the generation.
pub(crate) const TAG_SLOT_BITS: u32 = 13;
const TAG_GEN_MASK: u32 = (1 << 11) - 1;

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
    pub(crate) fn claim_slot(&self, role: u32) -> Result<u32, ()> {
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
                    // Fd-less backends: the state word itself is the claim.
                    let free_claim = state == SLOT_FREE
                        // ORDERING: AcqRel CAS; pairs with other claimers' CAS on the same
                        // word and with `release_slot`'s Release store.
                        && slot
                            .state
                            .compare_exchange(SLOT_FREE, SLOT_ATTACHED, Ordering::AcqRel, Ordering::Relaxed)
                            .is_ok();
                    let dead_claim = pass == 1
                        && state == SLOT_ATTACHED
                        && {
                            // ORDERING: Relaxed; the generation CAS below decides the winner.
                            let g = slot.generation.load(Ordering::Relaxed);
                            // ORDERING: Relaxed; ordered after the Acquire load of `state`.
                            let pid = slot.pid.load(Ordering::Relaxed);
                            // ORDERING: as above.
                            let st = slot.start_ticks.load(Ordering::Relaxed);
                            // ORDERING: as above.
                            let ident = slot.ident.load(Ordering::Relaxed);
                            holder_verdict(pid, st, ident) == sys::Verdict::Dead
                            // ORDERING: AcqRel; among racing takers of a dead slot only one
                            // moves the generation on.
                            && slot
                                .generation
                                .compare_exchange(g, g.wrapping_add(1), Ordering::AcqRel, Ordering::Relaxed)
                                .is_ok()
                        };
                    if !free_claim && !dead_claim {
                        continue;
                    }
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
                if self.fd.is_some() {
                    // ORDERING: Relaxed; only the lock holder writes it.
                    slot.generation.fetch_add(1, Ordering::Relaxed);
                }
                // ORDERING: Release; pairs with the Acquire loads of `state` by listers and
                // later claimers, publishing pid, start_ticks and role.
                slot.state.store(SLOT_ATTACHED, Ordering::Release);
                // ORDERING: Relaxed; a statistic.
                self.control().attach_count.fetch_add(1, Ordering::Relaxed);
                return Ok(i);
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
        self.slot = self.claim_slot(role).map_err(|()| {
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
        // ORDERING: Relaxed; our own slot's generation, written by our claim.
        let generation = self
            .slot_ref(self.slot)
            .map_or(0, |s| s.generation.load(Ordering::Relaxed));
        ((generation & TAG_GEN_MASK) << TAG_SLOT_BITS) | (self.slot + 1)
    }

    /// Whether the attachment that `tag` ([`owner_tag`](Self::owner_tag)) names is alive: its
    /// slot is held by a live process *and* still at the tag's generation. 0 is never alive.
    pub fn tag_alive(&self, tag: u32) -> bool {
        let slot = tag & ((1 << TAG_SLOT_BITS) - 1);
        if slot == 0 || tag >> (TAG_SLOT_BITS + 11) != 0 {
            return false;
        }
        let i = slot - 1;
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
            None => {
                // ORDERING: Acquire; pairs with the Release store in `claim_slot`.
                slot.state.load(Ordering::Acquire) == SLOT_ATTACHED && {
                    // ORDERING: Relaxed; ordered after the Acquire load above.
                    let pid = slot.pid.load(Ordering::Relaxed);
                    // ORDERING: as above.
                    let st = slot.start_ticks.load(Ordering::Relaxed);
                    // ORDERING: as above.
                    let ident = slot.ident.load(Ordering::Relaxed);
                    holder_verdict(pid, st, ident) != sys::Verdict::Dead
                }
            }
        }
    }

    /// The attachment table: every slot that is attached, or was left attached by a process
    /// that died.
    pub fn attachments(&self) -> Vec<Attachment> {
        (0..self.max_attach)
            .filter_map(|i| {
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
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Owner tags carry the slot's generation: when the slot is claimed again (a later
    /// process), a tag of the earlier holder is no longer alive.
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
        // The slot re-claimed by a later process: a new generation.
        let slot = seg.slot_ref(seg.slot()).unwrap();
        // ORDERING: Relaxed; a test simulating the next claim of the slot.
        slot.generation.fetch_add(1, Ordering::Relaxed);
        assert!(!seg.tag_alive(tag), "the earlier holder's tag");
        assert!(seg.tag_alive(seg.owner_tag()));
    }
}
