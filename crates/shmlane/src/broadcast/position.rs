//! Where a subscriber starts, the sequence numbers it sees, and the cursor table through which
//! the publisher sees its subscribers (issue 16).
//!
//! Every message of a broadcast channel has a sequence number: its position in the ring, 0 for
//! the channel's first message, going on across publisher restarts. A subscriber sees the
//! number of each message it receives ([`Subscriber::recv_seq`], [`Subscriber::last_seq`]);
//! numbers go up by one, and a gap is exactly the loss the `Lapped` in between reported (plus,
//! on a checksummed channel, a message dropped as `Corrupt` for its checksum).
//!
//! Each subscriber also mirrors its cursor into the channel's cursor table (a `cursors` region
//! of 64 entries, each on its own cache line, claimed with the same liveness as the roles),
//! with one Relaxed store per receive; the publisher reads it on demand
//! ([`Publisher::subscribers`], [`Publisher::slowest_lag`]). A subscriber that finds the table
//! full (64 live subscribers already) receives as well as any other, but is not counted.

use bytemuck::Pod;
use shmlane_ring::{BroadcastRing, CursorTable};
use shmlane_wake::Deadline;

pub use shmlane_ring::Start;

use super::{Publisher, Subscriber};
use crate::{
    Channel,
    channel::{Inner, Owned, Side},
    error::{ByteRecvError, OpenError},
};

/// The channel's cursor table, if it has a sound one (channels made before it existed, or
/// whose table header was overwritten, have none: their publisher counts nobody).
pub(super) fn cursor_table(inner: &Inner) -> Option<CursorTable> {
    let r = inner.seg.find_region("cursors").ok()?;
    // SAFETY: the region lives as long as the segment, which every endpoint keeps alive
    // through `Local::inner`; others touch it only atomically.
    unsafe { CursorTable::attach(r.as_ptr(), r.len()) }.ok()
}

/// Whether the process with attachment tag `tag` is alive (slow: reads its liveness lock).
fn alive(inner: &Inner) -> impl Fn(u64) -> bool + '_ {
    |t: u64| u32::try_from(t).is_ok_and(|t| inner.seg.tag_alive(t))
}

/// A subscriber of `ch` starting at `start` (byte and typed forms).
pub(super) fn open_subscriber<T: Pod + Send>(
    ch: &Channel<T>,
    start: Start,
) -> Result<Subscriber, OpenError> {
    ch.check_kind(crate::Kind::Broadcast, "subscriber")?;
    ch.check_here()?;
    let (ptr, len) = ch.inner.ring;
    // SAFETY: the ring region lives as long as the segment, which the endpoint keeps alive
    // through `Local::inner`.
    let mut ring = unsafe { BroadcastRing::reader_from(ptr, len, start)? };
    let start_gap = ring.take_start_gap();
    // An attachment without a tag (0) cannot hold an entry: not counted.
    let owner = ch.token();
    let cursor = cursor_table(&ch.inner)
        .filter(|_| owner != 0)
        .and_then(|t| t.claim(owner, ring.position(), &alive(&ch.inner)));
    // Reserved at open: `recv_checked` resizes it to `max_message` only, so receiving never
    // allocates (docs/realtime.md).
    let scratch = Vec::with_capacity(if ch.inner.checksum {
        ring.max_message()
    } else {
        0
    });
    Ok(Subscriber {
        ring,
        local: ch.local(Side::Recv),
        since: std::time::Instant::now(),
        lost: 0,
        corrupt: None,
        scratch,
        held: None,
        cursor,
        start_gap,
        last_seq: None,
    })
}

/// The publisher of `ch` (typed form; the byte form is [`Channel::publisher`]).
pub(super) fn open_publisher<T: Pod + Send>(ch: &Channel<T>) -> Result<Publisher, OpenError> {
    ch.check_kind(crate::Kind::Broadcast, "publisher")?;
    ch.check_here()?;
    let (ptr, len) = ch.inner.ring;
    // SAFETY: as in `open_subscriber`.
    let ring = unsafe { BroadcastRing::producer(ptr, len, ch.token(), &alive(&ch.inner)) }
        .map_err(|e| OpenError::for_role(e, &ch.inner.name, "publisher", &ch.inner.seg))?;
    // Reserved at open: `send` never allocates (docs/realtime.md).
    let scratch = Vec::with_capacity(if ch.inner.checksum {
        ring.max_message()
    } else {
        0
    });
    Ok(Publisher {
        ring: Owned::new(ring),
        local: ch.local(Side::Send),
        scratch,
        cursors: cursor_table(&ch.inner),
    })
}

impl Channel<u8> {
    /// A subscriber that starts at `start`: [`Start::Newest`] (only messages published from
    /// now on, as [`subscriber`](Self::subscriber)), [`Start::Oldest`] (first the messages
    /// the ring still holds: up to its capacity), or [`Start::Seq`]`(n)` (from message `n`:
    /// waited for if not published yet; if already overwritten, from the oldest, and the
    /// first receive reports the gap as `Lapped`).
    ///
    /// ```
    /// # let name = format!("doc-bcast-from-{}", std::process::id());
    /// use shmlane::Start;
    /// let ch = shmlane::broadcast(&name).capacity(4).unlink(shmlane::UnlinkPolicy::LastDetach).create()?;
    /// let mut feed = ch.publisher()?;
    /// for q in [&b"a"[..], b"b", b"c"] {
    ///     feed.send(q)?;
    /// }
    /// let mut buf = [0u8; 240];
    /// let mut late = ch.subscriber_from(Start::Newest)?;
    /// assert_eq!(late.try_recv(&mut buf), Err(shmlane::ByteRecvError::Empty));
    /// let mut all = ch.subscriber_from(Start::Oldest)?;
    /// assert_eq!(all.try_recv_seq(&mut buf)?, (1, 0));
    /// let mut from2 = ch.subscriber_from(Start::Seq(2))?;
    /// assert_eq!(from2.try_recv_seq(&mut buf)?, (1, 2));
    /// assert_eq!(&buf[..1], b"c");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn subscriber_from(&self, start: Start) -> Result<Subscriber, OpenError> {
        open_subscriber(self, start)
    }
}

impl Subscriber {
    /// The gap of a start at an overwritten sequence number, reported once as a lap.
    pub(super) fn report_start_gap(&mut self) -> Option<ByteRecvError> {
        if self.start_gap == 0 {
            return None;
        }
        let lost = core::mem::take(&mut self.start_gap);
        self.lost += lost;
        self.local.stats.lost += lost;
        self.publish_cursor();
        Some(ByteRecvError::Lapped { lost })
    }

    /// A message was delivered: note its number and publish the cursor.
    pub(super) fn delivered(&mut self) {
        self.last_seq = Some(self.ring.position().wrapping_sub(1));
        self.publish_cursor();
    }

    /// Mirrors the cursor into the cursor table (one Relaxed store).
    pub(super) fn publish_cursor(&self) {
        if let Some(e) = &self.cursor {
            e.publish(self.ring.position());
        }
    }

    /// The sequence number of the last message received (`None` before the first).
    ///
    /// Real-time: never allocates, blocks or makes a system call; no page fault after set-up
    /// (docs/realtime.md).
    pub fn last_seq(&self) -> Option<u64> {
        self.last_seq
    }

    /// The sequence number of the next message this subscriber will receive.
    ///
    /// Real-time: never allocates, blocks or makes a system call; no page fault after set-up
    /// (docs/realtime.md).
    pub fn next_seq(&self) -> u64 {
        // A message held for a larger buffer (checksummed channels) was taken from the ring
        // but not received: it is the next one.
        self.ring
            .position()
            .wrapping_sub(u64::from(self.held.is_some()))
    }

    /// Whether a message is waiting to be received without reading the ring (one a buffer
    /// was too small for, on a checksummed channel).
    pub(crate) fn holds_message(&self) -> bool {
        self.held.is_some()
    }

    /// Whether this subscriber holds an entry of the channel's cursor table, i.e. whether the
    /// publisher counts it (false when 64 live subscribers held them all).
    pub fn is_counted(&self) -> bool {
        self.cursor.is_some()
    }

    /// As [`try_recv`](Self::try_recv), with the message's sequence number.
    ///
    /// Real-time: never allocates, blocks or makes a system call (a lap reads the clock through the
    /// vDSO); no page fault after set-up (docs/realtime.md).
    pub fn try_recv_seq(&mut self, buf: &mut [u8]) -> Result<(usize, u64), ByteRecvError> {
        let n = self.try_recv(buf)?;
        Ok((n, self.last_seq.unwrap_or_default()))
    }

    /// As [`recv`](Self::recv), with the message's sequence number: numbers go up by one,
    /// and a gap is exactly the loss reported by the `Lapped` in between.
    pub fn recv_seq(
        &mut self,
        buf: &mut [u8],
        deadline: Option<Deadline>,
    ) -> Result<(usize, u64), ByteRecvError> {
        let n = self.recv(buf, deadline)?;
        // Set by every delivery (`delivered`), so `Some` here.
        Ok((n, self.last_seq.unwrap_or_default()))
    }
}

impl Publisher {
    /// The sequence number the next message will have (messages published on this channel so
    /// far, by every publisher it had).
    ///
    /// Real-time: never allocates, blocks or makes a system call; no page fault after set-up
    /// (docs/realtime.md).
    pub fn next_seq(&self) -> u64 {
        self.ring.position()
    }

    /// Live subscribers, counted from the channel's cursor table: each holds an entry until
    /// it is dropped; one whose process died is not counted (its entry is taken over by the
    /// next subscriber). A subscriber that found the table full (64 live ones already) is not
    /// counted. Slow path: reads the liveness of each entry's process (a syscall each).
    ///
    /// Real-time: never allocates, but checks counted subscribers' liveness (system calls): a
    /// monitoring call, not for the hot path (docs/realtime.md).
    pub fn subscribers(&self) -> u64 {
        self.scan().readers
    }

    /// How many messages the slowest counted subscriber has not received yet (the next
    /// sequence number minus its cursor: more than the capacity means it will be lapped);
    /// `None` without counted subscribers. A subscriber waiting for a future sequence number
    /// lags by 0. Slow path, as [`subscribers`](Self::subscribers). The table is memory every
    /// subscriber writes: a forged entry gives a wrong number, nothing worse.
    ///
    /// Real-time: never allocates, but checks counted subscribers' liveness (system calls): a
    /// monitoring call, not for the hot path (docs/realtime.md).
    pub fn slowest_lag(&self) -> Option<u64> {
        self.scan().slowest_lag
    }

    fn scan(&self) -> shmlane_ring::CursorScan {
        self.cursors.as_ref().map_or_else(Default::default, |t| {
            t.scan(self.ring.position(), &alive(&self.local.inner))
        })
    }
}
