//! Byte channels (a record ring: messages of any length up to a maximum, any number of senders,
//! one receiver), on the same segment layout, events and liveness as the typed channels.

use std::time::{Duration, Instant};

use shmlane_ring::{ClaimError, ReadError, RecordConsumer, RecordProducer, RecordRing, Unblock};
use shmlane_wake::Deadline;

use crate::{
    Channel, SideStats,
    channel::{CHECKSUM_BYTES, Local, Owned, Peers, Side, checksum},
    error::{ByteRecvError, ByteSendError, OpenError, WaitPeerError},
};

/// How long a byte receiver waits for a live sender that has claimed room but not committed
/// before it skips that message (a dead sender's is skipped at once). Far above any stall a
/// live sender can have: a sender that resumes after it was skipped writes into space the
/// receiver has moved past (see `shmlane_ring::record`).
pub const DEFAULT_UNBLOCK_AFTER: Duration = Duration::from_secs(1);

/// A pending record is checked for a dead sender once it has been pending this long, then
/// every `PENDING_RECHECK` (a liveness check is a syscall).
const PENDING_CHECK: Duration = Duration::from_micros(20);
const PENDING_RECHECK: Duration = Duration::from_millis(20);

impl Channel<u8> {
    /// A sender on a byte channel (any number, in any process).
    pub fn byte_sender(&self) -> Result<ByteSender, OpenError> {
        self.check_kind(crate::Kind::Bytes, "byte_sender")?;
        self.check_here()?;
        let (ptr, len) = self.inner.ring;
        let tag = u32::try_from(self.token()).map_err(|_| {
            OpenError::Ring(shmlane_ring::AttachError::Corrupt(
                "attachment slot too large",
            ))
        })?;
        let seg = &self.inner.seg;
        // SAFETY: the ring region lives as long as the segment, which the endpoint keeps alive
        // through `Local::inner`.
        let ring = unsafe { RecordRing::producer(ptr, len, tag, &|t| seg.tag_alive(t))? };
        Ok(ByteSender {
            ring: Owned::new(ring),
            local: self.local(Side::Send),
        })
    }

    /// The receiver of a byte channel: one at a time, across processes and within one (a
    /// second, from any handle or thread, fails with [`OpenError::RoleTaken`] until the first
    /// is dropped); one left by a dead process is taken over.
    pub fn byte_receiver(&self) -> Result<ByteReceiver, OpenError> {
        self.check_kind(crate::Kind::Bytes, "byte_receiver")?;
        self.check_here()?;
        let (ptr, len) = self.inner.ring;
        let seg = &self.inner.seg;
        let alive = |t: u64| u32::try_from(t).is_ok_and(|t| seg.tag_alive(t));
        // SAFETY: as in `byte_sender`.
        let ring = unsafe { RecordRing::consumer(ptr, len, self.token(), &alive) }
            .map_err(|e| OpenError::for_role(e, &self.inner.name, "byte receiver", seg))?;
        // Reserved here, at open: `try_recv` resizes it within this capacity only (a record
        // is at most `max_record` bytes), so receiving never allocates (docs/realtime.md).
        let scratch = Vec::with_capacity(if self.inner.checksum {
            ring.max_record()
        } else {
            0
        });
        Ok(ByteReceiver {
            ring: Owned::new(ring),
            local: self.local(Side::Recv),
            unblock_after: DEFAULT_UNBLOCK_AFTER,
            pending_since: None,
            next_check: None,
            next_lift: None,
            scratch,
        })
    }
}

/// A sending end of a byte channel. `Send`, not `Sync`.
pub struct ByteSender {
    pub(crate) ring: Owned<RecordProducer>,
    pub(crate) local: Local,
}

/// The receiving end of a byte channel. `Send`, not `Sync`.
pub struct ByteReceiver {
    pub(crate) ring: Owned<RecordConsumer>,
    pub(crate) local: Local,
    unblock_after: Duration,
    /// Since when the record at the receiver's position has been pending, and when to ask
    /// again whether its sender lives.
    pending_since: Option<Instant>,
    next_check: Option<Instant>,
    /// With a fence (a sender skipped while it lived holds its space, see
    /// `RecordConsumer::has_fence`): when to ask again whether it let go or died.
    next_lift: Option<Instant>,
    /// Checksummed channels: a message and its checksum, when the caller's buffer has no
    /// room for the checksum too.
    scratch: Vec<u8>,
}

/// The checksum a checksummed message ends with, checked: the message's length without it.
pub(crate) fn verify(data: &[u8]) -> Result<usize, ByteRecvError> {
    let Some(n) = data.len().checked_sub(CHECKSUM_BYTES) else {
        return Err(ByteRecvError::Corrupt(
            "a message shorter than its checksum",
        ));
    };
    if checksum(&data[..n]) != data[n..] {
        return Err(ByteRecvError::Corrupt(CHECKSUM_MISMATCH));
    }
    Ok(n)
}

/// The largest message of a ring whose largest record is `max`, given the checksum setting.
pub(crate) fn payload_max(max: usize, checksummed: bool) -> usize {
    if checksummed {
        max.saturating_sub(CHECKSUM_BYTES)
    } else {
        max
    }
}

/// What a checksum mismatch is reported as.
pub(crate) const CHECKSUM_MISMATCH: &str = "a message's checksum does not match its bytes";

macro_rules! debug_endpoint {
    ($($t:ident),*) => {$(
        impl core::fmt::Debug for $t {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.debug_struct(stringify!($t))
                    .field("channel", &self.local.inner.name)
                    .finish_non_exhaustive()
            }
        }
    )*};
}
pub(crate) use debug_endpoint;
debug_endpoint!(ByteSender, ByteReceiver);

/// What a blocked endpoint has to report about its peers after a wait that ended without
/// progress (`Died`, `Left` in `Disconnect` mode, `Corrupt`); `None`: wait on.
/// `Peers::Corrupt` included: the callers report it before anything else.
pub(crate) fn peers_gone(local: &mut Local) -> Option<Peers> {
    match local.life.peers(&local.inner) {
        p @ (Peers::Died | Peers::Left | Peers::Corrupt(_)) => Some(p),
        Peers::Live | Peers::NotYet => None,
    }
}

/// The error a byte endpoint reports for the end `p` (`Died` or `Left`), recorded as reported.
pub(crate) fn report_end(local: &mut Local, p: Peers) -> bool {
    local.life.reported(p);
    p == Peers::Died
}

impl ByteSender {
    /// The largest message this channel takes: the `msg_size` it was created with (at most
    /// what the ring holds).
    pub fn max_message(&self) -> usize {
        let msg_max = usize::try_from(self.local.inner.msg_max).unwrap_or(usize::MAX);
        payload_max(self.ring.max_record(), self.local.inner.checksum).min(msg_max)
    }

    /// `TooLong` for a message over the channel's `msg_size`.
    fn check_len(&self, len: usize) -> Result<(), ByteSendError> {
        let max = self.max_message();
        if len > max {
            return Err(ByteSendError::TooLong { len, max });
        }
        Ok(())
    }

    /// A checksummed message: claimed with room for its checksum, written, committed.
    fn send_checksummed(&mut self, msg: &[u8]) -> Result<(), ClaimError> {
        let max = self.max_message();
        if msg.len() > max {
            return Err(ClaimError::BadLength {
                len: msg.len(),
                max,
            });
        }
        let mut c = self.ring.claim(msg.len() + CHECKSUM_BYTES)?;
        c.write(0, msg);
        c.write(msg.len(), &checksum(msg));
        // As in the ring's `send`: unblocked only after a stall past the receiver's timeout;
        // reported as a full ring, to retry.
        c.commit().map_err(|_| ClaimError::Full)
    }

    /// Sends `msg` if there is room; never blocks. Wakes a sleeping receiver (with no receiver
    /// asleep this is a fence and a load: no syscall).
    ///
    /// ```
    /// # let name = format!("doc-bytes-{}", std::process::id());
    /// let ch = shmlane::bytes(&name).capacity(4096).unlink(shmlane::UnlinkPolicy::LastDetach).create()?;
    /// let (mut tx, mut rx) = (ch.byte_sender()?, ch.byte_receiver()?);
    /// tx.try_send(b"order 42: buy 100 @ 17.5")?;
    /// let mut buf = [0u8; 512];
    /// let n = rx.try_recv(&mut buf)?;
    /// assert_eq!(&buf[..n], b"order 42: buy 100 @ 17.5");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// Real-time: never allocates; lock-free (a CAS retry only when another sender progressed); no
    /// system call but a futex wake when the receiver sleeps (none with `Wakes::Never`); no page
    /// fault after set-up (docs/realtime.md).
    pub fn try_send(&mut self, msg: &[u8]) -> Result<(), ByteSendError> {
        self.check_len(msg.len())?;
        let sent = if self.local.inner.checksum {
            self.send_checksummed(msg)
        } else {
            self.ring.send(msg)
        };
        match sent {
            Ok(()) => {
                self.local.done(1, msg.len() as u64);
                Ok(())
            }
            Err(ClaimError::Full) if self.local.life.gone(&self.local.inner) => {
                Err(ByteSendError::Disconnected)
            }
            Err(ClaimError::Full) => Err(ByteSendError::Full),
            Err(ClaimError::BadLength { len, max }) => Err(ByteSendError::TooLong { len, max }),
            Err(ClaimError::Corrupt) => Err(ByteSendError::Corrupt),
        }
    }

    /// Claims room for a message of `len` bytes, to be written in place (zero copy) and then
    /// committed; never blocks. Dropping the claim aborts it (the receiver skips it). If this
    /// process dies before the commit, the receiver skips the message as soon as it sees the
    /// process dead, and counts it.
    ///
    /// ```
    /// # let name = format!("doc-claim-{}", std::process::id());
    /// let ch = shmlane::bytes(&name).capacity(4096).unlink(shmlane::UnlinkPolicy::LastDetach).create()?;
    /// let (mut tx, mut rx) = (ch.byte_sender()?, ch.byte_receiver()?);
    /// let mut claim = tx.claim(11)?;
    /// claim.write(0, b"hello");
    /// claim.write(5, b" world");
    /// claim.commit()?;
    /// let mut buf = [0u8; 64];
    /// assert_eq!(rx.try_recv(&mut buf)?, 11);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// Real-time: never allocates; lock-free (a CAS retry only when another sender progressed); no
    /// system call; no page fault after set-up (docs/realtime.md).
    pub fn claim(&mut self, len: usize) -> Result<ByteClaim<'_>, ByteSendError> {
        if self.local.inner.checksum {
            return Err(ByteSendError::ChecksumClaim);
        }
        self.check_len(len)?;
        let disconnected = self.local.life.gone(&self.local.inner);
        match self.ring.claim(len) {
            Ok(claim) => Ok(ByteClaim {
                claim,
                local: &mut self.local,
            }),
            Err(ClaimError::Full) if disconnected => Err(ByteSendError::Disconnected),
            Err(ClaimError::Full) => Err(ByteSendError::Full),
            Err(ClaimError::BadLength { len, max }) => Err(ByteSendError::TooLong { len, max }),
            Err(ClaimError::Corrupt) => Err(ByteSendError::Corrupt),
        }
    }

    /// Sends `msg`, waiting for room until `deadline` (`None`: no limit). On a full ring:
    /// `PeerDied` once when the receiver died since this endpoint attached; `Disconnected`
    /// when it left, in [`PeersLeave::Disconnect`](crate::PeersLeave) mode only (`Wait`: waits
    /// for a receiver until the deadline). See the lifecycle in docs/design.md.
    ///
    /// Real-time: blocks (spin, yield, futex wait) until the deadline and reads the clock; after
    /// a fruitless wait checks peers' liveness (system calls; the attachment table is read into a
    /// `Vec`: allocates); for non-real-time threads (docs/realtime.md).
    pub fn send(&mut self, msg: &[u8], deadline: Option<Deadline>) -> Result<(), ByteSendError> {
        let mut woke = false;
        loop {
            match self.try_send(msg) {
                Err(ByteSendError::Full) => {}
                other => return other,
            }
            if woke {
                match peers_gone(&mut self.local) {
                    Some(Peers::Corrupt(_)) => return Err(ByteSendError::Corrupt),
                    Some(p) => {
                        return Err(if report_end(&mut self.local, p) {
                            ByteSendError::PeerDied
                        } else {
                            ByteSendError::Disconnected
                        });
                    }
                    None => {}
                }
            }
            let ring = &self.ring;
            let need = msg.len()
                + if self.local.inner.checksum {
                    CHECKSUM_BYTES
                } else {
                    0
                };
            if !self.local.block(deadline, || ring.has_room(need)) {
                return Err(ByteSendError::Timeout);
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

    /// The channel's sender-side statistics as stored now.
    pub fn stats(&mut self) -> SideStats {
        self.local.shared_stats()
    }

    /// Waits until a live receiver is attached, bounded by `deadline` (`None`: no limit).
    pub fn wait_for_peer(&mut self, deadline: Option<Deadline>) -> Result<(), WaitPeerError> {
        self.local.wait_for_peer(deadline)
    }
}

/// Room claimed in a byte channel for one message: write it, then [`commit`](Self::commit).
/// Dropped without a commit, the message is aborted (skipped by the receiver).
pub struct ByteClaim<'a> {
    claim: shmlane_ring::Claim<'a>,
    local: &'a mut Local,
}

impl core::fmt::Debug for ByteClaim<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ByteClaim")
            .field("len", &self.claim.len())
            .finish_non_exhaustive()
    }
}

impl ByteClaim<'_> {
    /// The message's length.
    pub fn len(&self) -> usize {
        self.claim.len()
    }

    /// Whether the message is empty.
    pub fn is_empty(&self) -> bool {
        self.claim.is_empty()
    }

    /// Copies `src` into the message at `offset`.
    ///
    /// # Panics
    /// If `offset + src.len()` exceeds the claimed length.
    ///
    /// Real-time: never allocates, blocks or makes a system call; no page fault after set-up
    /// (docs/realtime.md).
    pub fn write(&mut self, offset: usize, src: &[u8]) {
        self.claim.write(offset, src);
    }

    /// A pointer to the message's bytes, to fill in place (zero copy, e.g. by a decoder or a
    /// `read(2)`).
    ///
    /// # Safety
    /// Write at most [`len`](Self::len) bytes through it, before `commit` or `abort`, and
    /// never read through it. If this process stalls past the receiver's unblock timeout
    /// meanwhile, the message is skipped, but its room stays this claim's until the commit
    /// (which then reports `Timeout`) or the abort: late writes land nowhere else.
    ///
    /// Real-time: never allocates, blocks or makes a system call; no page fault after set-up
    /// (docs/realtime.md).
    pub unsafe fn as_mut_ptr(&mut self) -> *mut u8 {
        // SAFETY: forwarded contract.
        unsafe { self.claim.as_mut_ptr() }
    }

    /// Publishes the message and wakes a sleeping receiver. `Err(Timeout)` if the receiver
    /// gave up on it first (this process stalled past its unblock timeout): not delivered; the
    /// receiver is woken to give its room back.
    ///
    /// Real-time: never allocates or blocks; no system call but a futex wake when the receiver
    /// sleeps (none with `Wakes::Never`); no page fault after set-up (docs/realtime.md).
    pub fn commit(self) -> Result<(), ByteSendError> {
        let len = self.claim.len() as u64;
        match self.claim.commit() {
            Ok(()) => {
                self.local.done(1, len);
                Ok(())
            }
            Err(shmlane_ring::CommitError::Unblocked) => {
                self.local.done(0, 0);
                Err(ByteSendError::Timeout)
            }
        }
    }

    /// Gives the room back: the receiver skips it.
    ///
    /// Real-time: never allocates, blocks or makes a system call; no page fault after set-up
    /// (docs/realtime.md).
    pub fn abort(self) {
        self.claim.abort();
    }
}

impl ByteReceiver {
    /// The largest message this channel takes: a buffer of this size takes any message.
    pub fn max_message(&self) -> usize {
        payload_max(self.ring.max_record(), self.local.inner.checksum)
    }

    /// Messages skipped in this ring so far (dead or stalled senders' claims, and aborted
    /// claims), read from the ring: one load, for monitoring a skip as it happens.
    ///
    /// Real-time: never allocates, blocks or makes a system call; no page fault after set-up
    /// (docs/realtime.md).
    pub fn skipped(&self) -> u64 {
        self.ring.skipped()
    }

    /// How long a live sender may stay between claiming room and committing before its
    /// message is skipped (default [`DEFAULT_UNBLOCK_AFTER`]). A dead sender's is skipped as
    /// soon as it is seen dead.
    pub fn set_unblock_after(&mut self, after: Duration) {
        self.unblock_after = after;
    }

    /// Copies the next message into `buf` and returns its length; never blocks. A message
    /// whose sender died (or stalled past the unblock timeout) before committing it is skipped
    /// and counted in the statistics (`lost`).
    ///
    /// Real-time: never allocates or blocks; no system call but a futex wake when a sender sleeps
    /// (none with `Wakes::Never`) and a liveness check (fcntl) while the next record is claimed but
    /// not committed (20 µs after first seeing it, then every 20 ms); no page fault after set-up
    /// (docs/realtime.md).
    pub fn try_recv(&mut self, buf: &mut [u8]) -> Result<usize, ByteRecvError> {
        let r = self.poll(buf);
        if r == Err(ByteRecvError::Empty) && self.local.life.gone(&self.local.inner) {
            // Re-check: the last sender may have sent before leaving.
            return match self.poll(buf) {
                Err(ByteRecvError::Empty) => Err(ByteRecvError::Disconnected),
                other => other,
            };
        }
        r
    }

    /// Gives back the space a fence holds once its sender has let go or died (checked every
    /// `PENDING_RECHECK`: a liveness check is a syscall), and wakes senders waiting for room.
    fn lift_fence(&mut self) -> Result<(), ByteRecvError> {
        if !self.ring.has_fence() {
            self.next_lift = None;
            return Ok(());
        }
        let now = Instant::now();
        if self.next_lift.is_some_and(|t| now < t) {
            return Ok(());
        }
        let seg = &self.local.inner.seg;
        let alive = |t: u32| seg.tag_alive(t);
        match self.ring.release_fenced(&alive) {
            Ok(true) => self.local.done(0, 0),
            Err(ReadError::Corrupt(why)) => return Err(ByteRecvError::Corrupt(why)),
            Ok(false) | Err(_) => {}
        }
        self.next_lift = self.ring.has_fence().then(|| now + PENDING_RECHECK);
        Ok(())
    }

    fn poll(&mut self, buf: &mut [u8]) -> Result<usize, ByteRecvError> {
        self.lift_fence()?;
        loop {
            let err = match self.ring.read() {
                Ok(rec) if self.local.inner.checksum => {
                    (self.pending_since, self.next_check) = (None, None);
                    let total = rec.len();
                    let n = total.saturating_sub(CHECKSUM_BYTES);
                    if n > buf.len() {
                        rec.keep();
                        return Err(ByteRecvError::BufferTooSmall { needed: n });
                    }
                    // Straight into the caller's buffer when the checksum fits behind the
                    // message; through the scratch buffer otherwise.
                    let checked = if total <= buf.len() {
                        rec.copy_to(&mut buf[..total]);
                        verify(&buf[..total])
                    } else {
                        self.scratch.resize(total, 0);
                        rec.copy_to(&mut self.scratch);
                        let v = verify(&self.scratch);
                        buf[..n].copy_from_slice(&self.scratch[..n]);
                        v
                    };
                    drop(rec);
                    if let Err(e) = checked {
                        // Consumed: the next message is the sender's next one.
                        self.local.stats.lost += 1;
                        self.local.done(0, 0);
                        return Err(e);
                    }
                    self.local.done(1, n as u64);
                    return Ok(n);
                }
                Ok(rec) => {
                    (self.pending_since, self.next_check) = (None, None);
                    let n = rec.len();
                    if n > buf.len() {
                        rec.keep();
                        return Err(ByteRecvError::BufferTooSmall { needed: n });
                    }
                    rec.copy_to(&mut buf[..n]);
                    drop(rec);
                    self.local.done(1, n as u64);
                    return Ok(n);
                }
                Err(e) => e,
            };
            match err {
                ReadError::Empty => {
                    (self.pending_since, self.next_check) = (None, None);
                    return Err(ByteRecvError::Empty);
                }
                ReadError::Pending => {
                    let now = Instant::now();
                    let since = *self.pending_since.get_or_insert(now);
                    let check = *self.next_check.get_or_insert(since + PENDING_CHECK);
                    if now < check {
                        return Err(ByteRecvError::Empty);
                    }
                    let waited = now - since;
                    let seg = &self.local.inner.seg;
                    let alive = |t: u32| seg.tag_alive(t);
                    match self.ring.unblock(&alive, waited >= self.unblock_after) {
                        Unblock::Skipped => {
                            (self.pending_since, self.next_check) = (None, None);
                            self.local.stats.lost += 1;
                        }
                        Unblock::NothingPending => {
                            (self.pending_since, self.next_check) = (None, None);
                        }
                        Unblock::StillAlive => {
                            let force_at = since + self.unblock_after;
                            self.next_check = Some((now + PENDING_RECHECK).min(force_at));
                            return Err(ByteRecvError::Empty);
                        }
                    }
                }
                ReadError::Corrupt(why) => return Err(ByteRecvError::Corrupt(why)),
            }
        }
    }

    /// Receives the next message into `buf`, waiting until `deadline` (`None`: no limit).
    /// What senders sent is always delivered first. Then, with no live sender: `PeerDied` once
    /// if a sender process died since this endpoint attached; in
    /// [`PeersLeave::Disconnect`](crate::PeersLeave) mode `Disconnected` once every sender it
    /// has seen left, both final; in `Wait` mode the next call waits for a sender (until its
    /// deadline). See the lifecycle in docs/design.md.
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
                // Drain what the dead (or departed) senders completed first; a dead sender's
                // pending claim is skipped when its check is due (waited for below).
                match self.poll(buf) {
                    Err(ByteRecvError::Empty) if self.ring.is_empty() => {
                        return Err(if report_end(&mut self.local, p) {
                            ByteRecvError::PeerDied
                        } else {
                            ByteRecvError::Disconnected
                        });
                    }
                    Err(ByteRecvError::Empty) => {}
                    other => return other,
                }
            }
            if self.ring.has_fence() && self.next_lift.is_none() {
                // A fence made by this poll: its sender's first liveness check.
                self.next_lift = Some(Instant::now() + PENDING_RECHECK);
            }
            let (ring, next_check, next_lift) = (&self.ring, self.next_check, self.next_lift);
            // Ready: a record to read, or the next liveness check of a pending one (or of a
            // fence's sender) is due.
            let ready = || {
                ring.is_ready()
                    || next_check.is_some_and(|t| Instant::now() >= t)
                    || next_lift.is_some_and(|t| Instant::now() >= t)
            };
            if !self.local.block(deadline, ready) {
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

    /// The channel's receiver-side statistics as stored now.
    pub fn stats(&mut self) -> SideStats {
        self.local.shared_stats()
    }

    /// Waits until a live sender is attached, bounded by `deadline` (`None`: no limit).
    pub fn wait_for_peer(&mut self, deadline: Option<Deadline>) -> Result<(), WaitPeerError> {
        self.local.wait_for_peer(deadline)
    }
}
