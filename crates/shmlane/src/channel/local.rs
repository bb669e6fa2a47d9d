//! Per-endpoint state and the blocking loop every endpoint waits in.

use super::endpoints::Holes;
use super::{
    Arc, Deadline, Duration, HOLE_CHECK, Hole, Inner, Instant, Ordering, PEER_CHECK, Peers,
    STATS_EVERY, Side, SideStats,
};

/// Per-endpoint state: the channel, the side, and statistics not yet published.
pub(crate) struct Local {
    pub(crate) inner: Arc<Inner>,
    pub(super) side: Side,
    pub(crate) stats: SideStats,
    pub(super) pending: u64,
    pub(super) last_flush: Instant,
    /// Waits in a row that ended ready without the operation then succeeding (reset by
    /// [`done`](Self::done)): from the fourth on, `block` sleeps a little first, so a condition
    /// that holds while the operation keeps failing costs no busy loop.
    pub(super) misses: u32,
    /// When a blocked MPMC endpoint next looks for a dead peer's hole (`None`: at once).
    pub(super) next_hole_check: Option<Instant>,
    /// Holes recovered since this endpoint's last successful operation. Past a ring's worth
    /// (more than the ring can hold at once) the positions are being forged: the checks fall
    /// back to one per `HOLE_CHECK`, so a hostile peer faking holes cannot keep a blocked call
    /// turning at full CPU.
    pub(super) holes_in_a_row: u64,
    /// Set by a hole check that found the ring's positions impossible (overwritten): the
    /// blocked call reports `Corrupt` instead of waiting out its deadline.
    pub(super) positions_corrupt: bool,
    /// The process that made the endpoint: a copy in a child after `fork` leaves the shared
    /// counters alone when dropped (it would tell peers the parent's endpoint left).
    pub(super) pid: u32,
}

/// Longest pause `block` takes after repeated ready-but-failed waits.
const MISS_SLEEP_MAX: Duration = Duration::from_millis(1);

impl Local {
    #[inline]
    pub(crate) fn done(&mut self, n: u64, bytes: u64) {
        self.misses = 0;
        self.holes_in_a_row = 0;
        self.stats.messages += n;
        self.stats.bytes += bytes;
        self.pending += n;
        if self.pending >= STATS_EVERY {
            self.flush();
        }
        let ev = match self.side {
            Side::Send => &self.inner.ev_data,
            Side::Recv => &self.inner.ev_space,
        };
        if ev.notify() {
            self.stats.wakeups += 1;
        }
    }

    pub(crate) fn flush(&mut self) {
        let s = &self.inner.hdr().stats[self.side as usize];
        let st = core::mem::take(&mut self.stats);
        for (i, v) in [
            st.messages,
            st.bytes,
            st.stalls,
            st.sleeps,
            st.wakeups,
            st.lost,
        ]
        .into_iter()
        .enumerate()
        {
            if v != 0 {
                // ORDERING: Relaxed; statistics, read by `shmlane stat` as estimates.
                s[i].fetch_add(v, Ordering::Relaxed);
            }
        }
        self.pending = 0;
        self.last_flush = Instant::now();
    }

    /// On a blocked turn of an MPMC endpoint: if the hole check is due (at most every
    /// `HOLE_CHECK`), recovers a hole a dead peer left at the ring position. Returns whether
    /// one was recovered (counted lost; the caller tries its operation again at once).
    pub(super) fn check_hole<R: Holes>(&mut self, ring: &R, force: bool) -> bool {
        if !R::HOLES {
            return false;
        }
        let now = Instant::now();
        let cap = ring.slots();
        let budget_left = self.holes_in_a_row <= cap;
        if !(force && budget_left) && self.next_hole_check.is_some_and(|t| now < t) {
            return false;
        }
        if !ring.positions_consistent() {
            self.positions_corrupt = true;
            self.next_hole_check = Some(now + HOLE_CHECK);
            return false;
        }
        let seg = &self.inner.seg;
        let alive = |t: u64| u32::try_from(t).is_ok_and(|t| seg.tag_alive(t));
        match ring.recover(&alive) {
            Hole::Recovered => {
                self.stats.lost += 1;
                self.recovered(now, cap);
                true
            }
            // A slot given back that held no message (its loss was counted when skipped).
            Hole::Released => {
                self.recovered(now, cap);
                true
            }
            Hole::None | Hole::Waiting => {
                self.next_hole_check = Some(now + HOLE_CHECK);
                false
            }
        }
    }

    /// After a hole was recovered: the next check at once, unless more holes than the ring can
    /// hold were recovered since the last successful operation (then in `HOLE_CHECK`).
    fn recovered(&mut self, now: Instant, cap: u64) {
        self.holes_in_a_row += 1;
        self.next_hole_check = if self.holes_in_a_row <= cap {
            None
        } else {
            Some(now + HOLE_CHECK)
        };
    }

    /// Publishes this endpoint's statistics, then reads its side's as stored now.
    pub(crate) fn shared_stats(&mut self) -> SideStats {
        self.flush();
        let s = &self.inner.hdr().stats[self.side as usize];
        // ORDERING: Relaxed; statistics.
        let w = |i: usize| s[i].load(Ordering::Relaxed);
        SideStats {
            messages: w(0),
            bytes: w(1),
            stalls: w(2),
            sleeps: w(3),
            wakeups: w(4),
            lost: w(5),
        }
    }

    /// Waits until `ready()` or a peer change, bounded by `deadline`. Returns false on timeout.
    ///
    /// Every blocking loop (`try_op`, then `block`) comes through here on every turn, so the
    /// deadline is tested on every turn whatever `ready` says: a condition that holds while the
    /// operation still fails (another endpoint took the message first, a slot a dead peer left
    /// half done) cannot keep a caller past its deadline. Such turns back off (yield, then
    /// sleep up to `MISS_SLEEP_MAX`, never past the deadline) instead of spinning.
    pub(crate) fn block(
        &mut self,
        deadline: Option<Deadline>,
        mut ready: impl FnMut() -> bool,
    ) -> bool {
        if deadline.as_ref().is_some_and(Deadline::is_past) {
            return false;
        }
        if self.misses >= 4 {
            let mut pause =
                Duration::from_micros(50 << (self.misses - 4).min(5)).min(MISS_SLEEP_MAX);
            if let Some(d) = &deadline {
                pause = pause.min(d.remaining());
            }
            std::thread::sleep(pause);
            if deadline.as_ref().is_some_and(Deadline::is_past) {
                return false;
            }
        } else if self.misses > 0 {
            std::thread::yield_now();
        }
        self.stats.stalls += 1;
        self.stats.sleeps += 1;
        // Publish statistics before a wait that may be long, but not on every short one
        // (a ping-pong waits once per message): at most every 10 ms.
        if self.last_flush.elapsed() >= Duration::from_millis(10) {
            self.flush();
        }
        let inner = &self.inner;
        let ev = match self.side {
            Side::Send => &inner.ev_space,
            Side::Recv => &inner.ev_data,
        };
        let peer = self.side.peer();
        let mut last = Instant::now();
        let outcome = ev.wait_checking(&inner.strategy, deadline, PEER_CHECK, || {
            ready()
                || inner.side_left(peer)
                || (last.elapsed() >= PEER_CHECK && {
                    last = Instant::now();
                    !matches!(inner.peer_state(peer), Peers::Live | Peers::NotYet)
                })
        });
        let ready = outcome == shmlane_wake::WaitOutcome::Ready;
        // Counted as a miss until the operation succeeds (`done` resets it).
        self.misses = self.misses.saturating_add(u32::from(ready));
        ready
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        if std::process::id() != self.pid {
            return;
        }
        self.flush();
        self.inner.leave(self.side);
    }
}

/// A ring handle holding a single role, dropped only by the process that made it. A child
/// after `fork` holds a copy that names the parent's role claim (and attachment); dropping that
/// copy released the parent's live role, so another endpoint could take it (review rev2). In
/// another process the copy is leaked instead (the parent's drop releases the role).
pub(crate) struct Owned<R> {
    ring: core::mem::ManuallyDrop<R>,
    pub(super) pid: u32,
}

impl<R> Owned<R> {
    pub(crate) fn new(ring: R) -> Self {
        Self {
            ring: core::mem::ManuallyDrop::new(ring),
            pid: std::process::id(),
        }
    }

    /// The ring handle itself (test hooks that consume it).
    pub(crate) fn into_inner(self) -> R {
        let mut me = core::mem::ManuallyDrop::new(self);
        // SAFETY: `me` is never dropped, so the handle is taken out exactly once.
        unsafe { core::mem::ManuallyDrop::take(&mut me.ring) }
    }
}

impl<R> core::ops::Deref for Owned<R> {
    type Target = R;
    fn deref(&self) -> &R {
        &self.ring
    }
}

impl<R> core::ops::DerefMut for Owned<R> {
    fn deref_mut(&mut self) -> &mut R {
        &mut self.ring
    }
}

impl<R> Drop for Owned<R> {
    fn drop(&mut self) {
        if std::process::id() == self.pid {
            // SAFETY: dropped once, here; the field is never used again.
            unsafe { core::mem::ManuallyDrop::drop(&mut self.ring) };
        }
    }
}
