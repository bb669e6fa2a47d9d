//! Skipping a pending claim (`unblock`), and fences: space held behind a skipped live claim
//! until its producer lets go or dies (module docs, "Fences").

use super::{
    CLAIMED, COMMITTED, EMPTY, FENCE_BIT, NO_OWNER_BIT, Ordering, PADDING, RECORD_HDR_LOAD,
    RECORD_HEADER, ReadError, RecordConsumer, SKIP_BIT, Unblock, align8, word,
};

impl RecordConsumer {
    /// Whether a fence holds space back: records were read past a claim the consumer skipped
    /// while its producer lived, and their space is given back only when that producer lets
    /// its claim go (it does when it commits, aborts or drops it) or is dead. Producers see
    /// the ring fuller meanwhile; [`release_fenced`](Self::release_fenced) checks liveness.
    pub fn has_fence(&self) -> bool {
        self.released != self.head
    }

    /// Gives back the space held by fences whose producers have let go or (`is_alive(owner
    /// tag)` false) are dead; returns whether any space was given back. [`read`](Self::read)
    /// does the first part by itself; a consumer with a fence calls this now and then (the
    /// byte channel does every 20 ms).
    ///
    /// # Errors
    /// [`ReadError::Corrupt`] if a header between the two positions changed impossibly.
    pub fn release_fenced(&mut self, is_alive: &dyn Fn(u32) -> bool) -> Result<bool, ReadError> {
        self.lift(Some(is_alive))
    }

    /// Whether the read position is a whole ring ahead of the release position: everything
    /// was read, and the header at the read position is the (held) fence's, not a new one.
    pub(super) fn head_wrapped_onto_fence(&self) -> bool {
        self.head.wrapping_sub(self.released) >= self.raw.cap
    }

    /// Walks from the release position towards the read position over what was read, and
    /// gives it back up to the first fence still held; returns whether anything was.
    pub(super) fn lift(
        &mut self,
        is_alive: Option<&dyn Fn(u32) -> bool>,
    ) -> Result<bool, ReadError> {
        let start = self.released;
        while self.released != self.head {
            let off = self.released & self.raw.mask;
            // ORDERING: Acquire (RECORD_HDR_LOAD); pairs with the producer's
            // RECORD_FENCE_RELEASE: its last writes into the space happen-before our zeroing.
            let w = self.raw.header(off).load(RECORD_HDR_LOAD);
            if w == EMPTY {
                // Zeroed and not given back: a consumer killed while it gave this space back
                // (`Raw::zero` empties a header last, so the record is all zero). Its zeroes,
                // up to the next header, are what it read.
                let room = self
                    .head
                    .wrapping_sub(self.released)
                    .min(self.raw.cap - off);
                let mut end = RECORD_HEADER as u64;
                // ORDERING: Acquire (RECORD_HDR_LOAD); as above.
                while end < room && self.raw.header(off + end).load(RECORD_HDR_LOAD) == EMPTY {
                    end += 8;
                }
                self.released = self.released.wrapping_add(end);
                continue;
            }
            let (state, len, owner) = self.decode(off, w)?;
            let size = match state {
                COMMITTED => align8(RECORD_HEADER as u64 + len),
                PADDING => RECORD_HEADER as u64 + len,
                _ => return Err(ReadError::Corrupt("a header behind the consumer changed")),
            };
            if size > self.head.wrapping_sub(self.released) {
                return Err(ReadError::Corrupt(
                    "a record behind the consumer changed length",
                ));
            }
            if w & FENCE_BIT != 0 {
                let held = if w & NO_OWNER_BIT != 0 {
                    self.intent_live_at(self.released, is_alive)
                } else {
                    is_alive.is_none_or(|alive| alive(owner))
                };
                if held {
                    break;
                }
            }
            self.raw.zero(off, size);
            self.released = self.released.wrapping_add(size);
        }
        let moved = self.released != start;
        if moved && !self.batching {
            self.publish_head();
        }
        Ok(moved)
    }

    /// Turns the pending claim at the consumer's position into padding if its producer is dead
    /// (`is_alive(owner tag)` is false) or `force` is given (the caller's timeout expired). A
    /// claim whose header was never written (its producer died right after claiming) has no
    /// owner in its header: the claim intents name it (see the module docs); without `force`
    /// it is skipped when every producer whose intent names it is dead and they agree on its
    /// size. A claim of a producer that may be alive, skipped with `force`, becomes a fence:
    /// read past, its space held until the producer lets go or dies (module docs, "Fences").
    /// Also lifts the fences it can (as [`release_fenced`](Self::release_fenced)).
    pub fn unblock(&mut self, is_alive: &dyn Fn(u32) -> bool, force: bool) -> Unblock {
        // Corruption behind the consumer is reported by the next `read`.
        let _ = self.lift(Some(is_alive));
        if self.head_wrapped_onto_fence() {
            return Unblock::NothingPending;
        }
        let off = self.head & self.raw.mask;
        // ORDERING: Acquire; as in `read`.
        let w = self.raw.header(off).load(RECORD_HDR_LOAD);
        if w == EMPTY {
            // ORDERING: Acquire; pairs with the producers' tail CAS (RECORD_TAIL_CAS,
            // Release): the intent of whoever claimed our position is visible.
            let tail = self.raw.hdr().tail.load(Ordering::Acquire);
            let ahead = tail.wrapping_sub(self.head);
            if ahead == 0 || ahead > self.raw.cap {
                return Unblock::NothingPending;
            }
            if !force {
                return self.unblock_by_intent(off, ahead, is_alive);
            }
            // Free space is zero: the claim ends at the next written header, at the tail, or
            // at the end of the buffer, whichever comes first; and before any other claim in
            // flight (a producer between its tail CAS and its header CAS), which its intent
            // names: padding over it would swallow a record its producer is about to commit.
            // No claim is longer than `largest_claim` (nor may padding be: its length must fit
            // the header): a longer run of zeroes is skipped in several steps.
            let limit = self
                .before_next_intent(ahead.min(self.raw.cap - off).min(self.raw.largest_claim()));
            let mut end = RECORD_HEADER as u64;
            while end < limit {
                // ORDERING: Acquire; as in `read`.
                if self.raw.header(off + end).load(RECORD_HDR_LOAD) != EMPTY {
                    break;
                }
                end += 8;
            }
            // A claimer that may live keeps its space until its header CAS has failed on our
            // padding (its intent cleared) or it is dead: a fence (module docs, "Fences").
            let fence = if self.intent_live_at(self.head, Some(is_alive)) {
                FENCE_BIT | NO_OWNER_BIT
            } else {
                0
            };
            let pad = word(end - RECORD_HEADER as u64, PADDING, 0) | SKIP_BIT | fence;
            // ORDERING: AcqRel; a producer writing its claimed header now (also a CAS from
            // empty) races with us: exactly one of the two wins.
            return match self.raw.header(off).compare_exchange(
                EMPTY,
                pad,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => Unblock::Skipped,
                Err(_) => Unblock::StillAlive,
            };
        }
        let Ok((state, len, owner)) = self.decode(off, w) else {
            return Unblock::NothingPending;
        };
        if state != CLAIMED {
            return Unblock::NothingPending;
        }
        let live = is_alive(owner);
        if !force && live {
            return Unblock::StillAlive;
        }
        let size = align8(RECORD_HEADER as u64 + len);
        // A live producer may still write its payload: its space is held until it lets the
        // claim go (a fence, module docs).
        let fence = if live { FENCE_BIT } else { 0 };
        // ORDERING: AcqRel; races with the producer's commit CAS: exactly one wins.
        match self.raw.header(off).compare_exchange(
            w,
            word(size - RECORD_HEADER as u64, PADDING, owner) | SKIP_BIT | fence,
            Ordering::AcqRel,
            Ordering::Relaxed,
        ) {
            Ok(_) => Unblock::Skipped,
            Err(_) => Unblock::StillAlive,
        }
    }
}
