//! Claim intents: what a producer publishes before its tail CAS, and how the consumer reads
//! them to skip a claim whose header was never written (module docs, "Unblocking").

use super::{
    AtomicU64, EMPTY, MAX_OWNER_TAG, Ordering, PADDING, RECORD_HEADER, RECORD_INTENT_CLEAR, Raw,
    RecordConsumer, RecordProducer, SKIP_BIT, Unblock, word,
};

/// Claim-intent entries in a ring: producers beyond this many attached at once still work, but
/// a claim one of them abandons before writing its header is skipped only at the timeout.
#[cfg(not(loom))]
pub const INTENTS: usize = 32;
/// Claim-intent entries in a ring (fewer under loom: every atomic is a modelled object).
#[cfg(loom)]
pub const INTENTS: usize = 3;
/// An intent word with no claim in progress.
pub(super) const IDLE: u64 = 0;
pub(super) const INTENT_VALID: u64 = 1 << 63;
pub(super) const INTENT_TO_END: u64 = 1 << 62;
pub(super) const INTENT_SIZE_SHIFT: u32 = 32;
/// Size field (in words) of an intent: 30 bits.
pub(super) const INTENT_SIZE_MAX: u64 = (1 << 30) - 1;
/// Intents name positions modulo 2^35 bytes (32 bits of words): rings of 2^34 bytes or more
/// leave header-less claims to the timeout.
pub(super) const INTENT_MAX_CAPACITY: u64 = 1 << 34;

/// How an intent word names a position: its word index modulo 2^32 (the word's low 32 bits).
pub(super) fn intent_pos(pos: u64) -> u64 {
    (pos / 8) & 0xffff_ffff
}

/// The intent word for a claim of `size` bytes at position `pos`: [`intent_pos`], and the size
/// in words, or "to the end of the buffer" (a padding claim).
pub(super) fn intent_word(pos: u64, size: u64, to_end: bool) -> u64 {
    let size_field = if to_end {
        INTENT_TO_END
    } else {
        (size / 8).min(INTENT_SIZE_MAX) << INTENT_SIZE_SHIFT
    };
    INTENT_VALID | size_field | intent_pos(pos)
}

pub(super) fn intent_names(w: u64, pos: u64) -> bool {
    w & INTENT_VALID != 0 && (w & 0xffff_ffff) == intent_pos(pos)
}

/// The size an intent word claims at buffer offset `off` (not validated).
pub(super) fn intent_size(w: u64, off: u64, cap: u64) -> u64 {
    if w & INTENT_TO_END != 0 {
        cap - off
    } else {
        ((w >> INTENT_SIZE_SHIFT) & INTENT_SIZE_MAX) * 8
    }
}

/// One producer's claim intent, on its own cache line.
#[repr(C)]
pub(super) struct Intent {
    /// 0 when free; otherwise the holder's owner tag + 1.
    pub(super) owner: AtomicU64,
    /// `IDLE`, or the claim the holder is making (`intent_word`).
    pub(super) claim: AtomicU64,
}

impl Raw {
    /// Takes a claim-intent entry for `owner`: a free one, or (given `is_alive`) one whose
    /// holder is dead and whose intent, if any, lies behind the consumer.
    pub(super) fn take_intent(
        &self,
        owner: u32,
        is_alive: Option<&dyn Fn(u32) -> bool>,
    ) -> Option<usize> {
        if self.cap >= INTENT_MAX_CAPACITY {
            return None;
        }
        let h = self.hdr();
        let mine = u64::from(owner) + 1;
        for pass in [false, true] {
            if pass && is_alive.is_none() {
                break;
            }
            for (i, e) in h.intents.iter().enumerate() {
                // ORDERING: Relaxed; a guess, the CAS below decides.
                let cur = e.owner.load(Ordering::Relaxed);
                let takeable = if pass {
                    cur != 0
                        && cur - 1 <= u64::from(MAX_OWNER_TAG)
                        && is_alive.is_some_and(|alive| !alive((cur - 1) as u32))
                        && !self.intent_pending(e)
                } else {
                    cur == 0
                };
                // ORDERING: Acquire on success; pairs with the Release store of a dropped
                // holder (its last intent store comes before ours). Relaxed on failure.
                if takeable
                    && e.owner
                        .compare_exchange(cur, mine, Ordering::Acquire, Ordering::Relaxed)
                        .is_ok()
                {
                    // ORDERING: RECORD_INTENT_CLEAR (Release), as every store that makes an
                    // intent idle: pairs with the consumer's Acquire intent loads, so one that
                    // reads this idle word also sees the headers the previous holders wrote
                    // (ordered before our Acquire owner CAS). Relaxed, a consumer could read it
                    // and still see a header of theirs empty (the loom model
                    // `record_forced_skip_sees_the_header_of_a_cleared_intent`).
                    e.claim.store(IDLE, RECORD_INTENT_CLEAR);
                    return Some(i);
                }
            }
        }
        None
    }

    /// Whether an entry's intent may name a claim the consumer has not passed yet.
    pub(super) fn intent_pending(&self, e: &Intent) -> bool {
        // ORDERING: Relaxed; the holder is dead, its last intent is what it is.
        let w = e.claim.load(Ordering::Relaxed);
        if w & INTENT_VALID == 0 {
            return false;
        }
        // ORDERING: Acquire; pairs with the consumer's Release store of `head`.
        let head = self.hdr().head.load(Ordering::Acquire);
        let ahead = (w & 0xffff_ffff).wrapping_sub(intent_pos(head)) & 0xffff_ffff;
        ahead * 8 < self.cap
    }
}

impl RecordProducer {
    /// Publishes this producer's intent (`intent_word`), before its CAS on the tail.
    pub(super) fn set_intent(&self, w: u64) {
        if let Some(i) = self.intent {
            // ORDERING: Release; pairs with the Acquire load of the intent in
            // `unblock_by_intent`: a consumer that reads this intent also sees that we hold
            // the entry (our owner CAS in `take_intent` came before). The intent itself
            // reaches the consumer through the tail CAS that follows (Release), which pairs
            // with the consumer's Acquire load of the tail in `unblock`.
            self.raw.hdr().intents[i].claim.store(w, Ordering::Release);
        }
    }

    /// Clears this producer's intent once the header of its claim is written (or the tail CAS
    /// was lost).
    pub(super) fn clear_intent(&self) {
        if let Some(i) = self.intent {
            // ORDERING: RECORD_INTENT_CLEAR (Release); pairs with the Acquire intent load in
            // `before_next_intent`: a consumer that reads the intent cleared also sees the
            // header we wrote before (or, after a lost CAS, the winner's own intent names the
            // position).
            self.raw.hdr().intents[i]
                .claim
                .store(IDLE, RECORD_INTENT_CLEAR);
        }
    }
}

impl RecordConsumer {
    /// Whether a claim intent of a producer that may be alive names `pos` (`is_alive`: `None`
    /// takes every holder as alive).
    pub(super) fn intent_live_at(&self, pos: u64, is_alive: Option<&dyn Fn(u32) -> bool>) -> bool {
        self.raw.hdr().intents.iter().any(|e| {
            // ORDERING: Acquire; pairs with `clear_intent` (RECORD_INTENT_CLEAR, Release): a
            // producer whose intent we find cleared has made its header CAS, which failed on
            // our padding, and will not write there.
            let claim = e.claim.load(Ordering::Acquire);
            if !intent_names(claim, pos) {
                return false;
            }
            // ORDERING: Relaxed; ordered after the holder's owner CAS by the Acquire above.
            let owner = e.owner.load(Ordering::Relaxed);
            owner == 0
                || owner - 1 > u64::from(MAX_OWNER_TAG)
                || is_alive.is_none_or(|alive| alive((owner - 1) as u32))
        })
    }

    /// A header-less claim at `off` (`ahead` bytes claimed after the consumer): padded, exactly
    /// its size, if every producer whose intent names it is dead and they agree on the size.
    pub(super) fn unblock_by_intent(
        &self,
        off: u64,
        ahead: u64,
        is_alive: &dyn Fn(u32) -> bool,
    ) -> Unblock {
        if self.raw.cap >= INTENT_MAX_CAPACITY {
            return Unblock::StillAlive;
        }
        let mut size = None;
        for e in &self.raw.hdr().intents {
            // ORDERING: Acquire; pairs with the Release intent store in `claim_at`, so the
            // owner read next is the one that published this intent, or a later one (0 when
            // it left: taken as alive). Which intent we read: what a claimer stored before its
            // tail CAS is visible through the Acquire tail load in `unblock`; a later value
            // comes after that claimer wrote its header (the CAS below then fails).
            let claim = e.claim.load(Ordering::Acquire);
            if !intent_names(claim, self.head) {
                continue;
            }
            // ORDERING: Relaxed; ordered after the holder's owner CAS by the Acquire above.
            let owner = e.owner.load(Ordering::Relaxed);
            if owner == 0 || owner - 1 > u64::from(MAX_OWNER_TAG) || is_alive((owner - 1) as u32) {
                return Unblock::StillAlive;
            }
            let s = intent_size(claim, off, self.raw.cap);
            if size.is_some_and(|x| x != s) {
                return Unblock::StillAlive;
            }
            size = Some(s);
        }
        let Some(size) = size else {
            return Unblock::StillAlive;
        };
        if size < RECORD_HEADER as u64
            || size % 8 != 0
            || size > ahead
            || size > self.raw.largest_claim()
            || off + size > self.raw.cap
        {
            return Unblock::StillAlive;
        }
        let pad = word(size - RECORD_HEADER as u64, PADDING, 0) | SKIP_BIT;
        // ORDERING: AcqRel; a producer writing its claimed header now (also a CAS from empty)
        // races with us: exactly one of the two wins.
        match self
            .raw
            .header(off)
            .compare_exchange(EMPTY, pad, Ordering::AcqRel, Ordering::Relaxed)
        {
            Ok(_) => Unblock::Skipped,
            Err(_) => Unblock::StillAlive,
        }
    }

    /// `limit` (bytes from the consumer's position), or less: the distance to the nearest
    /// position ahead that a producer's intent names (a claim whose header may not be written
    /// yet). A stale intent of a dead producer can only make a forced skip shorter (the rest
    /// is then skipped by the next one), never longer.
    pub(super) fn before_next_intent(&self, mut limit: u64) -> u64 {
        if self.raw.cap >= INTENT_MAX_CAPACITY {
            return limit;
        }
        let here = intent_pos(self.head);
        for e in &self.raw.hdr().intents {
            // ORDERING: Acquire; pairs with the Release stores of `set_intent` and
            // `clear_intent`. A producer that claimed a position before the tail we loaded
            // (Acquire) stored its intent before that, so we read the intent or its clearing,
            // and the clearing comes after its header CAS: either the intent stops the padding
            // or the scan of headers does.
            let w = e.claim.load(Ordering::Acquire);
            if w & INTENT_VALID == 0 {
                continue;
            }
            let d = ((w & 0xffff_ffff).wrapping_sub(here) & 0xffff_ffff) * 8;
            if d > 0 && d < limit {
                limit = d;
            }
        }
        limit
    }
}
