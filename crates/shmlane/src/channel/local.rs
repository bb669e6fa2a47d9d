//! Per-endpoint state and the blocking loop every endpoint waits in.

use super::endpoints::Holes;
use super::{
    Arc, Deadline, Duration, HOLE_CHECK, Hole, Inner, Instant, Ordering, PEER_CHECK, Peers,
    PeersLeave, STATS_EVERY, Side, SideStats, Wakes,
};
use crate::error::WaitPeerError;
use shmlane_segment::Attachment;
use shmlane_wake::WaitStrategy;

/// An attachment in the segment's table: its slot and process. A dead one in an endpoint's
/// baseline is never reported to it (a later holder of the slot has another pid).
type Attached = (u32, u32);

/// What an endpoint knows about its peers' comings and goings (the lifecycle in
/// docs/design.md, "Channel lifecycle").
pub(crate) struct Life {
    pub(crate) mode: PeersLeave,
    peer: Side,
    /// Dead attachments of the peer side that are not this endpoint's to report: those in the
    /// table when it attached, and (`Wait`) deaths it has reported already.
    baseline: Vec<Attached>,
    /// Dead attachments of the peer side found by the last check and not in the baseline.
    unreported: Vec<Attached>,
    /// The attachment table as the last check read it: kept, with room for every slot, so a
    /// check (a blocked call's every 50 ms) allocates nothing.
    table: Vec<Attachment>,
    /// The peer side's join count when this endpoint attached.
    joins0: u64,
    /// A peer was seen: attached when this endpoint attached or later, or a message received.
    seen: bool,
    /// `Disconnect` only: the end already reported (`Left` or `Died`), final.
    ended: Option<Peers>,
    /// Bytes of elements that their messages did not use, as the caller said
    /// ([`count_payload`](crate::Producer::count_payload)), not yet published to the side's
    /// stats word 6 (its payload bytes are word 1 less word 6). Typed channels only; a caller
    /// who never says keeps it 0, and `flush` then never writes the word. Here, behind the
    /// box, not among the endpoint's hot fields: a `Local` stays within 128 bytes (a
    /// `Producer` 384), and only callers of the hook touch it per message.
    unused: u64,
    /// Messages this endpoint completed and published (`flush`): with the unpublished ones
    /// (`Local::stats.messages`), the most `count_payload` calls that count (review rev17: a
    /// call for no message, before any, twice for one, after a failed send, lowered the side's
    /// count, other endpoints' messages included, down to 0).
    published: u64,
    /// `count_payload` calls counted so far (at most the messages completed).
    said: u64,
}

impl Life {
    /// Called before the endpoint joins: records the peer side's dead attachments as the
    /// baseline and whether a live peer is attached now.
    pub(crate) fn new(inner: &Inner, peer: Side) -> Self {
        // The join count before the table: a peer that joins while the table is read (its role
        // not yet in it) moves the count past this value, so it is seen; read after the table,
        // the count would already include it and a peer that then left without sending would
        // never be seen (a `Disconnect` endpoint would wait for one instead of ending).
        let joins0 = inner.joins(peer);
        // Room for every slot in each list a check fills: no allocation after this.
        let slots = inner.seg.attachment_slots() as usize;
        let mut table = Vec::with_capacity(slots);
        inner.seg.attachments_into(&mut table);
        let mut baseline = Vec::with_capacity(slots);
        let mut seen = false;
        for a in &table {
            if a.role & peer.role() != 0 {
                if a.alive {
                    seen = true;
                } else {
                    baseline.push((a.slot, a.pid));
                }
            }
        }
        Self {
            mode: inner.mode,
            peer,
            baseline,
            unreported: Vec::with_capacity(slots),
            table,
            joins0,
            seen,
            ended: None,
            unused: 0,
            published: 0,
            said: 0,
        }
    }

    /// A message arrived: its sender is a peer this endpoint has seen.
    pub(crate) fn got_message(&mut self) {
        self.seen = true;
    }

    fn update_seen(&mut self, inner: &Inner) {
        if !self.seen && inner.joins(self.peer) != self.joins0 {
            self.seen = true;
        }
    }

    /// Fast path (no syscall): whether a non-blocking call reports `Disconnected` when it finds
    /// nothing to do. `Disconnect` mode only: the end was reported already, or every peer seen
    /// has left cleanly by the shared count (a count a dead process left behind never reaches
    /// 0 here; the slow check [`peers`](Self::peers) finds that end).
    pub(crate) fn gone(&mut self, inner: &Inner) -> bool {
        if self.mode == PeersLeave::Wait {
            return false;
        }
        if self.ended.is_some() {
            return true;
        }
        self.update_seen(inner);
        let gone = self.seen && inner.count(self.peer) == 0;
        if gone {
            self.ended = Some(Peers::Left);
        }
        gone
    }

    /// The ended state, if final (`Disconnect` mode after a report).
    pub(crate) fn ended(&self) -> Option<Peers> {
        self.ended
    }

    /// Slow path (reads attachment liveness: syscalls): what there is to report about the
    /// peers, after re-validating the headers (`Corrupt` if the segment was overwritten, so a
    /// blocked call reports it instead of waiting on garbage).
    pub(crate) fn peers(&mut self, inner: &Inner) -> Peers {
        if let Err(why) = inner.intact() {
            return Peers::Corrupt(why);
        }
        if let Some(end) = self.ended {
            return end;
        }
        // The join count before the table (as in `new`): a join counted here set its role
        // before it counted (`Inner::join`, Release; `joins`, Acquire), so the table read next
        // shows that peer, live or dead. Read after the table, a peer joining between the two
        // reads was "seen" but absent, and a `Disconnect` endpoint reported `Left` before its
        // first message (review of CI, `a_sender_joining_during_a_peer_check_...`).
        self.update_seen(inner);
        let mut table = core::mem::take(&mut self.table);
        inner.seg.attachments_into(&mut table);
        let live = self.scan(&table);
        self.table = table;
        if live {
            self.seen = true;
            Peers::Live
        } else if !self.unreported.is_empty() {
            Peers::Died
        } else if self.mode == PeersLeave::Disconnect && self.seen {
            Peers::Left
        } else {
            Peers::NotYet
        }
    }

    /// Reads the attachment table: whether a live peer is attached; the peer side's dead
    /// attachments outside the baseline go to `unreported`. The baseline keeps only entries
    /// still in the table: a slot taken over never shows its old holder again, so without
    /// this a `Wait` endpoint whose peers keep dying would grow it (and the cost of every
    /// check) without bound.
    fn scan(&mut self, table: &[Attachment]) -> bool {
        let mut live = false;
        self.unreported.clear();
        for a in table {
            if a.role & self.peer.role() != 0 {
                if a.alive {
                    live = true;
                } else if !self.baseline.contains(&(a.slot, a.pid)) {
                    self.unreported.push((a.slot, a.pid));
                }
            }
        }
        self.baseline.retain(|&(slot, pid)| {
            table
                .iter()
                .any(|a| !a.alive && a.slot == slot && a.pid == pid)
        });
        live
    }

    /// The caller reports `p` (`PeerDied` for `Died`, `Disconnected` for `Left`): in `Wait` mode
    /// the deaths found are never reported again; in `Disconnect` mode the end is final.
    pub(crate) fn reported(&mut self, p: Peers) {
        match (self.mode, p) {
            (PeersLeave::Wait, Peers::Died) => self.baseline.append(&mut self.unreported),
            (PeersLeave::Disconnect, Peers::Died | Peers::Left) => self.ended = Some(p),
            _ => {}
        }
    }

    /// Whether a blocked call should wake to report `p`.
    fn reportable(p: Peers) -> bool {
        matches!(p, Peers::Died | Peers::Left | Peers::Corrupt(_))
    }

    /// Whether a live peer is attached now (slow path).
    fn live_peer(&mut self, inner: &Inner) -> bool {
        inner.seg.attachments_into(&mut self.table);
        let live = self
            .table
            .iter()
            .any(|a| a.alive && a.role & self.peer.role() != 0);
        self.seen |= live;
        live
    }
}

/// Per-endpoint state: the channel, the side, and statistics not yet published.
pub(crate) struct Local {
    /// Peers seen, deaths reported, the end (`PeersLeave`). Boxed: used on the slow path
    /// only, kept out of the endpoint's hot fields.
    pub(crate) life: Box<Life>,
    pub(crate) inner: Arc<Inner>,
    pub(super) side: Side,
    /// Counts not yet added to the shared statistics (`stats.messages` doubles as the count
    /// of messages since the last flush: only `done` adds to it, and `flush` takes it).
    pub(crate) stats: SideStats,
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
    /// `Never`: `done` skips the wake-up, and the endpoint is counted in the header's `never`
    /// word of its side (so its peers poll) until it switches back or is dropped.
    pub(super) wakes: Wakes,
}

/// Wakes of `wait_for_peer` by a moved join count that found no live peer, after which the
/// count is ignored until the next timed check (see there).
const MAX_FRUITLESS_JOINS: u32 = 4;

/// In a wait's spin phase, `block` reads the peer-check timer on every this many looks.
const PEER_CLOCK_EVERY: u32 = 64;

/// Longest pause `block` takes after repeated ready-but-failed waits.
const MISS_SLEEP_MAX: Duration = Duration::from_millis(1);

impl Local {
    #[inline]
    pub(crate) fn done(&mut self, n: u64, bytes: u64) {
        self.misses = 0;
        self.holes_in_a_row = 0;
        if self.side == Side::Recv && n > 0 {
            self.life.got_message();
        }
        self.stats.messages += n;
        self.stats.bytes += bytes;
        if self.stats.messages >= STATS_EVERY {
            self.flush();
        }
        if self.wakes == Wakes::Never {
            // No syscall: the peers poll (`park_slice`) while this endpoint is counted.
            return;
        }
        let ev = match self.side {
            Side::Send => &self.inner.ev_data,
            Side::Recv => &self.inner.ev_space,
        };
        if ev.notify() {
            self.stats.wakeups += 1;
        }
    }

    /// `set_wakes` of every endpoint: counts this endpoint in or out of its side's never-waking
    /// endpoints. Switching to `Never` then notifies once (the peer may have parked for the
    /// long slice before the count moved: the wake, or its condition's re-read of the count
    /// after registering, ends that park), so even the switch loses no wake-up.
    pub(crate) fn set_wakes(&mut self, w: Wakes) {
        if w == self.wakes {
            return;
        }
        self.wakes = w;
        match w {
            Wakes::Never => {
                self.inner.count_never(self.side, true);
                let ev = match self.side {
                    Side::Send => &self.inner.ev_data,
                    Side::Recv => &self.inner.ev_space,
                };
                if ev.notify() {
                    self.stats.wakeups += 1;
                }
            }
            // From now on `done` notifies; peers parked on the short slice look again within it.
            Wakes::Peers => self.inner.count_never(self.side, false),
        }
    }

    /// `count_payload` of a typed endpoint (elements of `elem` bytes): the last message not
    /// said yet carried `bytes` of payload. A call with no such message is ignored.
    pub(crate) fn count_payload(&mut self, elem: usize, bytes: usize) {
        let life = &mut self.life;
        if life.said < life.published + self.stats.messages {
            life.said += 1;
            let unused = (elem - bytes.min(elem)) as u64;
            if life.said <= life.published && unused != 0 {
                // The message was published already (its send made the 64th and flushed
                // before this call): its unused bytes go out now, or the stored count would
                // show its whole element until the next flush (review rev18: 64 messages of 3
                // payload bytes in `u64`s read as 197 bytes). Once per 64 messages at most.
                // ORDERING: Relaxed; statistics, as `flush`.
                self.inner.hdr().stats[self.side as usize][6].fetch_add(unused, Ordering::Relaxed);
            } else {
                life.unused += unused;
            }
        }
    }

    pub(crate) fn flush(&mut self) {
        let s = &self.inner.hdr().stats[self.side as usize];
        let st = core::mem::take(&mut self.stats);
        self.life.published += st.messages;
        for (i, v) in [
            st.messages,
            st.bytes,
            st.stalls,
            st.sleeps,
            st.wakeups,
            st.lost,
            core::mem::take(&mut self.life.unused),
        ]
        .into_iter()
        .enumerate()
        {
            if v != 0 {
                // ORDERING: Relaxed; statistics, read by `shmlane stat` as estimates.
                s[i].fetch_add(v, Ordering::Relaxed);
            }
        }
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
            // Payload: the elements' bytes less those their callers said went unused.
            bytes: w(1).saturating_sub(w(6)),
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
        // The deadline is read by the wait below before it looks at `ready` (its first turn)
        // and again when `ready` holds; only the pause before it needs it here. One clock
        // read fewer per wait: a ping-pong waits once per message.
        if self.misses >= 4 {
            if deadline.as_ref().is_some_and(Deadline::is_past) {
                return false;
            }
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
        // (a ping-pong waits once per message): at most every 10 ms. The same clock read
        // starts the peer-check timer below.
        let now = Instant::now();
        if now.saturating_duration_since(self.last_flush) >= Duration::from_millis(10) {
            self.flush();
        }
        let (inner, life) = (&self.inner, &mut self.life);
        let ev = match self.side {
            Side::Send => &inner.ev_space,
            Side::Recv => &inner.ev_data,
        };
        let mut last = now;
        // The looks the wait takes back to back, a spin hint apart: the spin phase of the
        // strategy's schedule (`shmlane_wake`'s `Pauses`: `SpinThenPark` looks `spins` times
        // before it yields or parks, `BusySpin` never stops, `SpinYield` yields after 7 looks
        // and `Park` parks at once). Among those the peer timer is read on every
        // `PEER_CLOCK_EVERY`th look only (a clock read on each made a spinning endpoint notice
        // a message tens of nanoseconds later); on every look after them (each after a yield
        // or a park) as before, so a death is still seen within `PEER_CHECK` while parked.
        let quick = match inner.strategy {
            WaitStrategy::BusySpin => u32::MAX,
            WaitStrategy::SpinThenPark { spins, .. } => spins,
            WaitStrategy::SpinYield | WaitStrategy::Park => 0,
        };
        let mut looks = 0u32;
        // Read on every wait: a never-waking peer (`Wakes::Never`) makes each park at most
        // `NEVER_WAKE_POLL`. Parked for longer, the condition below ends the wait as soon as
        // such a peer appears (a peer switching to `Never` counts itself, then notifies: either
        // its notify sees this wait registered and wakes it, or this re-read sees the count).
        let peer = self.side.peer();
        let slice = inner.park_slice(self.side);
        let long = slice > super::NEVER_WAKE_POLL;
        // Wakes for what the endpoint reports (a death not reported yet, `Disconnect`'s end,
        // corruption), never for peers that left in `Wait` mode: that waits, without a turn.
        let outcome = ev.wait_checking(&inner.strategy, deadline, slice, || {
            let look = looks;
            looks = looks.saturating_add(1);
            ready()
                || (long && inner.never_wakers(peer) != 0)
                || life.gone(inner)
                || ((look >= quick || look % PEER_CLOCK_EVERY == 0)
                    && last.elapsed() >= PEER_CHECK
                    && {
                        last = Instant::now();
                        Life::reportable(life.peers(inner))
                    })
        });
        let ready = outcome == shmlane_wake::WaitOutcome::Ready;
        // Counted as a miss until the operation succeeds (`done` resets it).
        self.misses = self.misses.saturating_add(u32::from(ready));
        ready
    }
}

impl Local {
    /// Waits until a live peer is attached (receivers: a sender; senders: a receiver;
    /// subscribers: a publisher; the publisher: a subscriber), bounded by `deadline`.
    pub(crate) fn wait_for_peer(
        &mut self,
        deadline: Option<Deadline>,
    ) -> Result<(), WaitPeerError> {
        let inner = &self.inner;
        let ev = match self.side {
            Side::Send => &inner.ev_space,
            Side::Recv => &inner.ev_data,
        };
        // Wakes by a moved join count that then found no live peer, since the last timed check.
        // A real join sets the attachment's role before it counts, so the first wake finds it;
        // a count that keeps moving without a peer is forged: past `MAX_FRUITLESS_JOINS` such
        // wakes the count is ignored until the next timed check (no full-CPU turns, each a scan
        // of the attachment table, at a hostile peer's pace).
        let mut fruitless = 0u32;
        loop {
            inner.intact().map_err(WaitPeerError::Corrupt)?;
            if self.life.live_peer(inner) {
                return Ok(());
            }
            if deadline.as_ref().is_some_and(Deadline::is_past) {
                return Err(WaitPeerError::Timeout);
            }
            // A joining peer notifies both events; a peer's process is checked every
            // `PEER_CHECK` regardless (a join is seen by the count moving).
            let (peer, joins, since) = (
                self.side.peer(),
                inner.joins(self.side.peer()),
                Instant::now(),
            );
            let watch_joins = fruitless < MAX_FRUITLESS_JOINS;
            let mut timed = false;
            ev.wait_checking(&inner.strategy, deadline, PEER_CHECK, || {
                timed = since.elapsed() >= PEER_CHECK;
                timed || (watch_joins && inner.joins(peer) != joins)
            });
            fruitless = if timed { 0 } else { fruitless + 1 };
        }
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        if std::process::id() != self.pid {
            return;
        }
        self.flush();
        if self.wakes == Wakes::Never {
            self.inner.count_never(self.side, false);
        }
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

#[cfg(test)]
mod tests {
    use super::{Attachment, Life, Peers, PeersLeave, Side};

    /// The endpoint's own state stays within two cache lines' worth: the payload hook's count
    /// went into `Local` at first and grew every `Producer` from 384 to 512 bytes.
    #[cfg(all(target_os = "linux", target_pointer_width = "64"))]
    #[test]
    fn endpoint_state_stays_small() {
        assert!(
            size_of::<super::Local>() <= 128,
            "{}",
            size_of::<super::Local>()
        );
        assert_eq!(size_of::<crate::Producer<u64>>(), 384);
    }

    /// `count_payload` (the statistics hook of typed endpoints): messages it is called for count
    /// their payload, the others their whole element, on both sides, as read by the endpoint
    /// (`stats`) and from the file (`inspect`, what `shmlane stat` shows); the count survives
    /// more than one flush (over 64 messages) and the endpoint's drop.
    #[test]
    fn count_payload_counts_what_the_caller_says() {
        let name = format!("left17-payload-{}", std::process::id());
        let ch = crate::spsc::<[u8; 16]>(&name)
            .capacity(256)
            .unlink(shmlane_segment::UnlinkPolicy::CreatorDrop)
            .create()
            .unwrap();
        let (mut tx, mut rx) = (ch.producer().unwrap(), ch.consumer().unwrap());
        // 100 messages of 0..=9 payload bytes said, then 3 said nothing about (16 each).
        let said: u64 = (0..100u64).map(|i| i % 10).sum();
        for i in 0..100usize {
            tx.send([0; 16], None).unwrap();
            tx.count_payload(i % 10);
            rx.recv(None).unwrap();
            rx.count_payload(i % 10);
        }
        for _ in 0..3 {
            tx.send([0; 16], None).unwrap();
            rx.recv(None).unwrap();
        }
        // Past the element: the whole element.
        tx.send([0; 16], None).unwrap();
        tx.count_payload(1000);
        rx.recv(None).unwrap();
        rx.count_payload(1000);
        let want = said + 4 * 16;
        assert_eq!((tx.stats().messages, tx.stats().bytes), (104, want));
        assert_eq!((rx.stats().messages, rx.stats().bytes), (104, want));
        drop((tx, rx));
        let info = shmlane_segment::inspect(&std::path::PathBuf::from(format!("/dev/shm/{name}")))
            .unwrap()
            .unwrap();
        let c = crate::inspect(&info).unwrap();
        assert_eq!((c.sent.messages, c.sent.bytes), (104, want));
        assert_eq!((c.received.messages, c.received.bytes), (104, want));
    }

    /// `Producer::send_keeping`: it never takes the last `keep` slots (a full-but-`keep` ring
    /// makes it wait, and time out by its deadline), so a `try_send` always finds them; a
    /// consumer that frees one more slot wakes a blocked one.
    #[test]
    fn send_keeping_leaves_room_for_a_last_message() {
        use crate::{Deadline, SendError};
        use std::time::Duration;
        let name = format!("left17-keep-{}", std::process::id());
        let ch = crate::spsc::<u64>(&name)
            .capacity(4)
            .unlink(shmlane_segment::UnlinkPolicy::CreatorDrop)
            .create()
            .unwrap();
        let (mut tx, mut rx) = (ch.producer().unwrap(), ch.consumer().unwrap());
        let soon = || Some(Deadline::after(Duration::from_millis(30)));
        for i in 0..3 {
            tx.send_keeping(i, 1, soon()).unwrap();
        }
        assert!(matches!(
            tx.send_keeping(3, 1, soon()),
            Err(SendError::Timeout(3))
        ));
        assert_eq!(tx.free(), 1);
        // It waited parked, not turning: a wait that woke whenever one slot was free (the
        // kept one, free all along) would turn about every millisecond.
        let before = tx.stats().sleeps;
        assert!(matches!(
            tx.send_keeping(3, 1, Some(Deadline::after(Duration::from_millis(200)))),
            Err(SendError::Timeout(3))
        ));
        let turns = tx.stats().sleeps - before;
        assert!(turns < 20, "{turns} waits in 200 ms");
        // The slot kept: the mark fits at once.
        tx.try_send(99).unwrap();
        assert_eq!(tx.free(), 0);
        // Two freed: one for the data, one kept.
        assert_eq!(rx.recv(None).unwrap(), 0);
        assert!(matches!(
            tx.send_keeping(3, 1, soon()),
            Err(SendError::Timeout(3))
        ));
        assert_eq!(rx.recv(None).unwrap(), 1);
        tx.send_keeping(3, 1, soon()).unwrap();
        assert_eq!(tx.free(), 1);
        // A blocked one wakes when the consumer frees a slot.
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            for want in [2, 99, 3] {
                assert_eq!(rx.recv(None).unwrap(), want);
            }
            rx
        });
        tx.send_keeping(4, 1, Some(Deadline::after(Duration::from_secs(10))))
            .unwrap();
        let mut rx = t.join().unwrap();
        assert_eq!(rx.recv(None).unwrap(), 4);
        // `keep` past the capacity: capacity - 1.
        tx.send_keeping(5, 100, soon()).unwrap();
        assert!(matches!(
            tx.send_keeping(6, 100, soon()),
            Err(SendError::Timeout(6))
        ));
    }

    /// A sender that joins while a receiver looks at its peers is seen as live or not yet
    /// come, never as gone: the slow check read the attachment table (no sender's role in it
    /// yet) and then the join count (moved), and reported `Left`, so a `Select` or blocked
    /// `recv` ended a channel with `Disconnected` before its sender's first message (seen in
    /// CI: one channel in 100 of `hundred_channels_from_ten_processes_and_a_killed_sender`).
    #[test]
    fn a_sender_joining_during_a_peer_check_is_never_taken_for_gone() {
        let name = format!("left22-join-{}", std::process::id());
        for round in 0..300u32 {
            let ch = crate::spsc::<u64>(&format!("{name}-{round}"))
                .capacity(4)
                .unlink(shmlane_segment::UnlinkPolicy::CreatorDrop)
                .create()
                .unwrap();
            let mut rx = ch.consumer().unwrap();
            let local = &mut rx.local;
            std::thread::scope(|s| {
                let joiner = s.spawn(|| {
                    // A few microseconds in, so the join lands among the checks.
                    std::thread::sleep(std::time::Duration::from_micros(u64::from(round % 50)));
                    ch.producer().unwrap()
                });
                loop {
                    match local.life.peers(&local.inner) {
                        Peers::Live => break,
                        Peers::NotYet => {}
                        other => panic!("round {round}: {other:?} while the sender joins"),
                    }
                }
                drop(joiner.join().unwrap());
            });
        }
    }

    fn dead(slot: u32, pid: u32) -> Attachment {
        Attachment {
            slot,
            pid,
            role: Side::Send.role(),
            alive: false,
        }
    }

    /// A `Wait` receiver whose senders keep dying (each death in a slot, the slots taken over
    /// in turn as a full table makes them): every death is reported once, and the baseline
    /// stays bounded by the table instead of growing by one per death.
    #[test]
    fn baseline_stays_bounded_while_peers_keep_dying() {
        let mut life = Life {
            mode: PeersLeave::Wait,
            peer: Side::Send,
            baseline: Vec::new(),
            unreported: Vec::new(),
            table: Vec::new(),
            joins0: 0,
            seen: false,
            ended: None,
            unused: 0,
            published: 0,
            said: 0,
        };
        let slots = 8u32;
        let mut table: Vec<Attachment> = Vec::new();
        for death in 0..1000u32 {
            let slot = death % slots;
            table.retain(|a| a.slot != slot);
            table.push(dead(slot, 10_000 + death));
            assert!(!life.scan(&table), "no live peer");
            assert_eq!(
                life.unreported,
                vec![(slot, 10_000 + death)],
                "death {death}"
            );
            life.reported(Peers::Died);
            assert!(
                !life.scan(&table) && life.unreported.is_empty(),
                "reported twice"
            );
            assert!(
                life.baseline.len() <= slots as usize,
                "baseline of {} entries after {death} deaths in {slots} slots",
                life.baseline.len()
            );
        }
    }
}
