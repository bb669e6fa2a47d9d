//! Broadcast channels (a broadcast ring: one publisher that never waits, any number of
//! subscribers), on the same segment layout, events and liveness as the other channels.

mod position;
mod raw;
mod typed;

use std::time::{Duration, Instant};

pub use position::Start;
pub use raw::{LoanError, RawPublisher, RawSubscriber};
use shmlane_ring::{
    BroadcastProducer, BroadcastReader, BroadcastRing, CursorEntry, CursorTable,
    RecvError as RingRecvError,
};
use shmlane_wake::Deadline;
pub use typed::{TypedLoan, TypedPublisher, TypedSubscriber};

use crate::{
    Channel, SideStats,
    bytes::{CHECKSUM_MISMATCH, payload_max, peers_gone, report_end, verify},
    channel::{Local, Owned, Peers, Side, checksum},
    error::{ByteRecvError, ByteSendError, OpenError, WaitPeerError},
};

impl Channel<u8> {
    /// The publisher of a broadcast channel: one at a time, within a process as across
    /// processes ([`OpenError::RoleTaken`] otherwise); one left by a dead process is taken
    /// over and continues after the last message.
    pub fn publisher(&self) -> Result<Publisher, OpenError> {
        self.check_kind(crate::Kind::Broadcast, "publisher")?;
        self.check_here()?;
        let (ptr, len) = self.inner.ring;
        let seg = &self.inner.seg;
        let alive = |t: u64| u32::try_from(t).is_ok_and(|t| seg.tag_alive(t));
        // SAFETY: as in `byte_sender`.
        let ring = unsafe { BroadcastRing::producer(ptr, len, self.token(), &alive) }
            .map_err(|e| OpenError::for_role(e, &self.inner.name, "publisher", seg))?;
        // Reserved at open (a message and its checksum fill at most a slot): `send` never
        // allocates (docs/realtime.md).
        let scratch = Vec::with_capacity(if self.inner.checksum {
            ring.max_message()
        } else {
            0
        });
        Ok(Publisher {
            ring: Owned::new(ring),
            local: self.local(Side::Send),
            scratch,
            cursors: position::cursor_table(&self.inner),
        })
    }

    /// A subscriber to a broadcast channel (any number, at any time): it sees the messages
    /// published from now on (it starts at the publisher's position, found from the published
    /// one by the slot stamps; no message published before it subscribed is delivered). The
    /// same as [`subscriber_from`](Self::subscriber_from)`(Start::Newest)`.
    pub fn subscriber(&self) -> Result<Subscriber, OpenError> {
        self.subscriber_from(Start::Newest)
    }
}

/// The publishing end of a broadcast channel. `Send`, not `Sync`.
pub struct Publisher {
    ring: Owned<BroadcastProducer>,
    /// The subscribers' cursor table (`None` in a channel made without one). Like every
    /// handle into the segment, declared before `local`, which may hold the segment's last
    /// reference (fields drop in order).
    cursors: Option<CursorTable>,
    local: Local,
    /// Checksummed channels: the message and its checksum, sent as one.
    scratch: Vec<u8>,
}

/// A subscribing end of a broadcast channel. `Send`, not `Sync`.
pub struct Subscriber {
    pub(crate) ring: BroadcastReader,
    /// This subscriber's entry in the cursor table (`None`: the table was full or missing).
    /// Declared before `local`: fields drop in order, and its drop writes the table, in the
    /// segment `local` may hold the last reference to (declared after it, the entry was freed
    /// in an unmapped segment when the subscriber outlived its `Channel`: a segfault).
    cursor: Option<CursorEntry>,
    pub(crate) local: Local,
    /// When the cursor was last known good (attach, or the last lap accepted): a lap cannot
    /// have lost more than the ring held then plus what a publisher can send since.
    since: Instant,
    /// Messages lost to laps that passed that bound.
    lost: u64,
    /// Set once a lap was implausible or the ring reported its words overwritten: the ring is
    /// corrupt, and every later call says so.
    corrupt: Option<&'static str>,
    /// Checksummed channels: a message and its checksum, when the caller's buffer has no
    /// room for the checksum too.
    scratch: Vec<u8>,
    /// Checksummed channels: the length of a verified message taken from the ring into
    /// `scratch` for a buffer too small for it. It is delivered next (a `BufferTooSmall`
    /// consumes nothing, as the error says), before anything else is read from the ring.
    held: Option<usize>,
    /// Messages asked for at subscribe (`Start::Seq`) but overwritten already: the first
    /// receive reports them as a lap.
    start_gap: u64,
    /// The sequence number of the last message delivered.
    last_seq: Option<u64>,
}

/// Faster than any publisher can send (about 2 messages a nanosecond: a send is several
/// atomic stores, a fence and a copy, on one thread); the plausibility bound of a lap.
const MAX_SEND_RATE_PER_US: u64 = 2048;

/// The most messages a subscriber can have lost in `elapsed` since its cursor was known good,
/// in a ring of `cap` slots: what the ring held then (the publisher is at most a ring and its
/// publication interval of 64 ahead of a cursor it did not lap), plus what a publisher could
/// send since (plus a millisecond of slack). Saturating: never overflows.
fn max_plausible_loss(cap: u64, elapsed: Duration) -> u64 {
    let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
    cap.saturating_mul(2).saturating_add(128).saturating_add(
        us.saturating_add(1_000)
            .saturating_mul(MAX_SEND_RATE_PER_US),
    )
}

crate::bytes::debug_endpoint!(Publisher, Subscriber);

impl Publisher {
    /// The largest message this channel takes: the `msg_size` it was created with (its slots,
    /// rounded up to 8 bytes, could hold a few more).
    pub fn max_message(&self) -> usize {
        let msg_max = usize::try_from(self.local.inner.msg_max).unwrap_or(usize::MAX);
        payload_max(self.ring.max_message(), self.local.inner.checksum).min(msg_max)
    }

    /// Publishes `msg` to every subscriber; never waits for them (one a whole ring behind
    /// loses its oldest unread message, and is told). Wakes parked subscribers (none parked:
    /// a fence and a load, no syscall).
    ///
    /// ```
    /// # let name = format!("doc-bcast-{}", std::process::id());
    /// let ch = shmlane::broadcast(&name).capacity(1024).unlink(shmlane::UnlinkPolicy::LastDetach).create()?;
    /// let mut feed = ch.publisher()?;
    /// let (mut a, mut b) = (ch.subscriber()?, ch.subscriber()?);
    /// feed.send(b"EURUSD 1.0842")?;
    /// let mut buf = [0u8; 240];
    /// for s in [&mut a, &mut b] {
    ///     let n = s.try_recv(&mut buf)?;
    ///     assert_eq!(&buf[..n], b"EURUSD 1.0842");
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// Real-time: never allocates and never waits for subscribers; no system call but a futex wake
    /// when a subscriber sleeps (none with `Wakes::Never`); no page fault after set-up
    /// (docs/realtime.md).
    pub fn send(&mut self, msg: &[u8]) -> Result<(), ByteSendError> {
        let max = self.max_message();
        if msg.len() > max {
            return Err(ByteSendError::TooLong {
                len: msg.len(),
                max,
            });
        }
        let sent = if self.local.inner.checksum {
            self.scratch.clear();
            self.scratch.extend_from_slice(msg);
            self.scratch.extend_from_slice(&checksum(msg));
            self.ring.send(&self.scratch)
        } else {
            self.ring.send(msg)
        };
        match sent {
            Ok(()) => {
                self.local.done(1, msg.len() as u64);
                Ok(())
            }
            Err(shmlane_ring::SendError::TooLong { len, max }) => {
                Err(ByteSendError::TooLong { len, max })
            }
        }
    }

    /// Whether this endpoint's operations wake a peer that sleeps for them (default: the
    /// channel handle's [`Builder::wakes`](crate::Builder::wakes)). [`Wakes::Never`](crate::Wakes::Never):
    /// no operation makes a system call; the endpoint is counted in the channel header until it
    /// switches back or is dropped, and its peers' blocking calls park at most
    /// [`NEVER_WAKE_POLL`](crate::NEVER_WAKE_POLL) at a time meanwhile. Set it up front, not on
    /// the hot path: switching to `Never` may wake a sleeping peer once.
    pub fn set_wakes(&mut self, wakes: crate::Wakes) {
        self.local.set_wakes(wakes);
    }

    /// The channel's publisher-side statistics as stored now.
    pub fn stats(&mut self) -> SideStats {
        self.local.shared_stats()
    }

    /// Waits until a live subscriber is attached, bounded by `deadline` (`None`: no limit).
    /// Publishing never waits for one.
    pub fn wait_for_peer(&mut self, deadline: Option<Deadline>) -> Result<(), WaitPeerError> {
        self.local.wait_for_peer(deadline)
    }
}

impl Subscriber {
    /// The largest message this channel takes: a buffer of this size takes any message.
    pub fn max_message(&self) -> usize {
        payload_max(self.ring.max_message(), self.local.inner.checksum)
    }

    /// The ring's next message into `buf`, its checksum checked on a checksummed channel.
    fn recv_checked(&mut self, buf: &mut [u8]) -> Result<usize, RingRecvError> {
        if !self.local.inner.checksum {
            return self.ring.recv(buf);
        }
        // The message and its checksum: into the caller's buffer if they fit, else through
        // the scratch buffer (sized for the largest).
        if self.held.is_none() && buf.len() >= self.ring.max_message() {
            let total = self.ring.recv(buf)?;
            return verify(&buf[..total]).map_err(|_| RingRecvError::Corrupt(CHECKSUM_MISMATCH));
        }
        let n = if let Some(n) = self.held {
            n
        } else {
            self.scratch.resize(self.ring.max_message(), 0);
            let total = self.ring.recv(&mut self.scratch)?;
            verify(&self.scratch[..total]).map_err(|_| RingRecvError::Corrupt(CHECKSUM_MISMATCH))?
        };
        if n > buf.len() {
            // Taken from the ring already (it moved on): held in the scratch buffer and
            // delivered by the next receive with room for it, so nothing is consumed.
            self.held = Some(n);
            return Err(RingRecvError::BufferTooSmall { needed: n });
        }
        self.held = None;
        buf[..n].copy_from_slice(&self.scratch[..n]);
        Ok(n)
    }

    /// Messages this subscriber lost to laps, in total.
    ///
    /// Real-time: never allocates, blocks or makes a system call; no page fault after set-up
    /// (docs/realtime.md).
    pub fn lost(&self) -> u64 {
        self.lost
    }

    /// Copies the next message into `buf`; never blocks. [`ByteRecvError::Lapped`] once when
    /// the subscriber fell a whole ring behind (with the exact loss, also counted in the
    /// channel statistics), then the newest messages. A lap claiming more than the publisher
    /// can have sent since this subscriber's cursor was last known good (a stamp or position
    /// overwritten: it would report billions of billions), or a slot whose words cannot be
    /// right, is `Corrupt` instead, counted nowhere, and so is every call after it.
    ///
    /// Real-time: never allocates, blocks or makes a system call (a lap reads the clock through the
    /// vDSO); no page fault after set-up (docs/realtime.md).
    pub fn try_recv(&mut self, buf: &mut [u8]) -> Result<usize, ByteRecvError> {
        match self.poll(buf) {
            Err(ByteRecvError::Empty) if self.local.life.gone(&self.local.inner) => {
                match self.poll(buf) {
                    Err(ByteRecvError::Empty) => Err(ByteRecvError::Disconnected),
                    other => other,
                }
            }
            other => other,
        }
    }

    fn poll(&mut self, buf: &mut [u8]) -> Result<usize, ByteRecvError> {
        if let Some(why) = self.corrupt {
            return Err(ByteRecvError::Corrupt(why));
        }
        if let Some(gap) = self.report_start_gap() {
            return Err(gap);
        }
        match self.recv_checked(buf) {
            Ok(n) => {
                self.delivered();
                self.local.done(1, n as u64);
                Ok(n)
            }
            Err(RingRecvError::Empty) => Err(ByteRecvError::Empty),
            Err(RingRecvError::Lapped { lost }) => {
                let now = Instant::now();
                if lost > max_plausible_loss(self.ring.capacity(), now - self.since) {
                    let why = "a lap beyond what the publisher can have sent";
                    self.corrupt = Some(why);
                    return Err(ByteRecvError::Corrupt(why));
                }
                self.since = now;
                self.lost += lost;
                self.local.stats.lost += lost;
                self.publish_cursor();
                Err(ByteRecvError::Lapped { lost })
            }
            Err(RingRecvError::BufferTooSmall { needed }) => {
                Err(ByteRecvError::BufferTooSmall { needed })
            }
            Err(RingRecvError::Corrupt(why)) => {
                if why == CHECKSUM_MISMATCH {
                    // This message only; the subscriber reads on.
                    self.local.stats.lost += 1;
                } else {
                    // The ring's own words were overwritten (a stamp that cannot be a lap, a
                    // length past its slot): nothing read from it can be trusted any more,
                    // even once the publisher writes the slot again.
                    self.corrupt = Some(why);
                }
                Err(ByteRecvError::Corrupt(why))
            }
        }
    }

    /// Receives the next message into `buf`, waiting until `deadline` (`None`: no limit).
    /// Once the publisher is gone and everything it published was read: `PeerDied` once if it
    /// died after this subscriber attached; in [`PeersLeave::Disconnect`](crate::PeersLeave)
    /// mode `Disconnected` once it left, both final; in `Wait` mode (the default for a
    /// persistent channel) the next call waits for a publisher to (re)start, and goes on with
    /// its messages: a restarted publisher continues after the last message, so a subscriber
    /// that waits through restarts receives every message of each.
    ///
    /// Real-time: blocks (spin, yield, futex wait) until the deadline and reads the clock; after
    /// a fruitless wait checks peers' liveness (system calls; the attachment table is read into a
    /// `Vec`: allocates); for non-real-time threads (docs/realtime.md).
    pub fn recv(
        &mut self,
        buf: &mut [u8],
        deadline: Option<Deadline>,
    ) -> Result<usize, ByteRecvError> {
        let mut woke = false;
        loop {
            match self.try_recv(buf) {
                Err(ByteRecvError::Empty) => {}
                Err(ByteRecvError::Disconnected)
                    if self.local.life.ended() == Some(Peers::Died) =>
                {
                    return Err(ByteRecvError::PeerDied);
                }
                other => return other,
            }
            if woke && let Some(p) = peers_gone(&mut self.local) {
                if let Peers::Corrupt(why) = p {
                    return Err(ByteRecvError::Corrupt(why));
                }
                return match self.poll(buf) {
                    Err(ByteRecvError::Empty) => Err(if report_end(&mut self.local, p) {
                        ByteRecvError::PeerDied
                    } else {
                        ByteRecvError::Disconnected
                    }),
                    other => other,
                };
            }
            let ring = &self.ring;
            if !self.local.block(deadline, || ring.is_ready()) {
                return Err(ByteRecvError::Timeout);
            }
            woke = true;
        }
    }

    /// Whether this endpoint's operations wake a peer that sleeps for them (default: the
    /// channel handle's [`Builder::wakes`](crate::Builder::wakes)). [`Wakes::Never`](crate::Wakes::Never):
    /// no operation makes a system call; the endpoint is counted in the channel header until it
    /// switches back or is dropped, and its peers' blocking calls park at most
    /// [`NEVER_WAKE_POLL`](crate::NEVER_WAKE_POLL) at a time meanwhile. Set it up front, not on
    /// the hot path: switching to `Never` may wake a sleeping peer once.
    pub fn set_wakes(&mut self, wakes: crate::Wakes) {
        self.local.set_wakes(wakes);
    }

    /// The channel's subscriber-side statistics as stored now (all subscribers together).
    pub fn stats(&mut self) -> SideStats {
        self.local.shared_stats()
    }

    /// Waits until a live publisher is attached, bounded by `deadline` (`None`: no limit).
    pub fn wait_for_peer(&mut self, deadline: Option<Deadline>) -> Result<(), WaitPeerError> {
        self.local.wait_for_peer(deadline)
    }
}
