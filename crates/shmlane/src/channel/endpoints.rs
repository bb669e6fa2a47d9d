//! The typed endpoints: SPSC producer and consumer, MPMC senders and receivers.

use super::{
    Deadline, Hole, Instant, Local, Owned, Peers, Pod, PopError, PushError, RecvError, SendError,
    SideStats, TryRecvError, TrySendError,
};
use crate::error::WaitPeerError;

/// The sending end of an SPSC channel. `PeerDied` and `Disconnected` follow the channel lifecycle: a
/// death before it attached is never reported to it; once its peers leave it waits for new
/// ones ([`PeersLeave::Wait`](crate::PeersLeave)) or ends ([`PeersLeave::Disconnect`](crate::PeersLeave)).
pub struct Producer<T> {
    pub(crate) ring: Owned<shmlane_ring::Producer<T>>,
    pub(crate) local: Local,
}

/// The receiving end of an SPSC channel. `PeerDied` and `Disconnected` follow the channel lifecycle: a
/// death before it attached is never reported to it; once its peers leave it waits for new
/// ones ([`PeersLeave::Wait`](crate::PeersLeave)) or ends ([`PeersLeave::Disconnect`](crate::PeersLeave)).
pub struct Consumer<T> {
    pub(crate) ring: Owned<shmlane_ring::Consumer<T>>,
    pub(crate) local: Local,
}

/// A sending end of an MPMC channel. `PeerDied` and `Disconnected` follow the channel lifecycle: a
/// death before it attached is never reported to it; once its peers leave it waits for new
/// ones ([`PeersLeave::Wait`](crate::PeersLeave)) or ends ([`PeersLeave::Disconnect`](crate::PeersLeave)).
pub struct Sender<T> {
    pub(crate) ring: Owned<shmlane_ring::Sender<T>>,
    pub(crate) local: Local,
}

/// A receiving end of an MPMC channel. `PeerDied` and `Disconnected` follow the channel lifecycle: a
/// death before it attached is never reported to it; once its peers leave it waits for new
/// ones ([`PeersLeave::Wait`](crate::PeersLeave)) or ends ([`PeersLeave::Disconnect`](crate::PeersLeave)).
pub struct Receiver<T> {
    pub(crate) ring: Owned<shmlane_ring::Receiver<T>>,
    pub(crate) local: Local,
}

macro_rules! debug_endpoint {
    ($($t:ident),*) => {$(
        impl<T> core::fmt::Debug for $t<T> {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.debug_struct(stringify!($t))
                    .field("channel", &self.local.inner.name)
                    .finish_non_exhaustive()
            }
        }
    )*};
}
debug_endpoint!(Producer, Consumer, Sender, Receiver);

fn push_err<T>(e: PushError<T>) -> Result<(), TrySendError<T>> {
    match e {
        PushError::Full(v) => Err(TrySendError::Full(v)),
        PushError::Corrupt(v) => Err(TrySendError::Corrupt(v)),
    }
}

/// `try_send` of every sending endpoint, typed or run-time: one push, the statistics and the
/// wake-up, or `Disconnected` on a full ring whose receivers all left.
#[inline]
pub(super) fn try_send_with<R: Push<V>, V>(
    ring: &mut R,
    local: &mut Local,
    value: V,
    bytes: u64,
) -> Result<(), TrySendError<V>> {
    match ring.push_v(value) {
        Ok(()) => {
            local.done(1, bytes);
            Ok(())
        }
        Err(PushError::Full(v)) if local.life.gone(&local.inner) => {
            Err(TrySendError::Disconnected(v))
        }
        Err(e) => push_err(e),
    }
}

/// The blocking send loop of every sending endpoint, typed or run-time (`send`, sending only
/// while more than `keep` slots are free; `keep` 0: `send`).
pub(super) fn send_blocking<R: HasRoom + Holes, V>(
    ring: &mut R,
    local: &mut Local,
    value: V,
    keep: usize,
    deadline: Option<Deadline>,
    mut try_send: impl FnMut(&mut R, &mut Local, V) -> Result<(), TrySendError<V>>,
) -> Result<(), SendError<V>> {
    let mut v = value;
    let mut woke = false;
    loop {
        let tried = if keep == 0 || ring_has_room(ring, keep + 1) {
            try_send(ring, local, v)
        } else if local.life.gone(&local.inner) {
            Err(TrySendError::Disconnected(v))
        } else {
            Err(TrySendError::Full(v))
        };
        match tried {
            Ok(()) => return Ok(()),
            Err(TrySendError::Full(back)) => v = back,
            Err(TrySendError::Disconnected(back)) => {
                return Err(SendError::Disconnected(back));
            }
            Err(TrySendError::Corrupt(back)) => return Err(SendError::Corrupt(back)),
        }
        // A slot a dead receiver held (MPMC): given back, try again (by the deadline).
        if local.check_hole(&*ring, false) {
            if deadline.as_ref().is_some_and(Deadline::is_past) {
                return Err(SendError::Timeout(v));
            }
            continue;
        }
        if local.positions_corrupt {
            return Err(SendError::Corrupt(v));
        }
        // Peers are checked (syscalls) only after a wait that ended without room,
        // never on the way into the first wait: the fast path stays syscall-free.
        if woke {
            match local.life.peers(&local.inner) {
                p @ Peers::Died => {
                    local.life.reported(p);
                    return Err(SendError::PeerDied(v));
                }
                p @ Peers::Left => {
                    local.life.reported(p);
                    return Err(SendError::Disconnected(v));
                }
                Peers::Corrupt(_) => return Err(SendError::Corrupt(v)),
                Peers::Live | Peers::NotYet => {}
            }
        }
        let next = local.next_hole_check;
        let ring = &mut *ring;
        let ready = || ring_has_room(ring, keep + 1) || hole_check_due(ring, next);
        if !local.block(deadline, ready) {
            return Err(SendError::Timeout(v));
        }
        woke = true;
    }
}

/// `try_recv` of every receiving endpoint, typed or run-time: `pop` takes one message.
#[inline]
pub(super) fn try_recv_with<R, V>(
    ring: &mut R,
    local: &mut Local,
    bytes: u64,
    mut pop: impl FnMut(&mut R) -> Result<V, PopError>,
) -> Result<V, TryRecvError> {
    match pop(ring) {
        Ok(v) => {
            local.done(1, bytes);
            Ok(v)
        }
        Err(PopError::Empty) => {
            if local.life.gone(&local.inner) {
                // Re-check: the last sender may have pushed before leaving.
                match pop(ring) {
                    Ok(v) => {
                        local.done(1, bytes);
                        Ok(v)
                    }
                    Err(PopError::Empty) => Err(TryRecvError::Disconnected),
                    Err(PopError::Corrupt) => Err(TryRecvError::Corrupt),
                }
            } else {
                Err(TryRecvError::Empty)
            }
        }
        Err(PopError::Corrupt) => Err(TryRecvError::Corrupt),
    }
}

/// The blocking receive loop of every receiving endpoint, typed or run-time.
pub(super) fn recv_blocking<R: HasData + Holes, V>(
    ring: &mut R,
    local: &mut Local,
    deadline: Option<Deadline>,
    bytes: u64,
    mut pop: impl FnMut(&mut R) -> Result<V, PopError>,
) -> Result<V, RecvError> {
    let mut woke = false;
    loop {
        match try_recv_with(ring, local, bytes, &mut pop) {
            Ok(v) => return Ok(v),
            Err(TryRecvError::Empty) => {}
            Err(TryRecvError::Disconnected) => {
                return Err(if local.life.ended() == Some(Peers::Died) {
                    RecvError::PeerDied
                } else {
                    RecvError::Disconnected
                });
            }
            Err(TryRecvError::Corrupt) => return Err(RecvError::Corrupt),
        }
        // A position a dead sender took and never filled (MPMC): skipped, try again (by
        // the deadline).
        if local.check_hole(&*ring, false) {
            if deadline.as_ref().is_some_and(Deadline::is_past) {
                return Err(RecvError::Timeout);
            }
            continue;
        }
        if local.positions_corrupt {
            return Err(RecvError::Corrupt);
        }
        // Peers are checked (syscalls) only after a wait that ended without data.
        let peers = if woke {
            local.life.peers(&local.inner)
        } else {
            Peers::NotYet
        };
        match peers {
            Peers::Corrupt(_) => return Err(RecvError::Corrupt),
            Peers::Died | Peers::Left => {
                // Drain what the dead (or departed) senders completed first, past any
                // hole a dead one left.
                loop {
                    match pop(ring) {
                        Ok(v) => {
                            local.done(1, bytes);
                            return Ok(v);
                        }
                        Err(PopError::Empty) => {
                            // At most a ring's worth of holes in a row (then checked
                            // every `HOLE_CHECK` only, see `holes_in_a_row`).
                            if local.check_hole(&*ring, true) {
                                if deadline.as_ref().is_some_and(Deadline::is_past) {
                                    return Err(RecvError::Timeout);
                                }
                                continue;
                            }
                            if local.positions_corrupt {
                                return Err(RecvError::Corrupt);
                            }
                            local.life.reported(peers);
                            return if peers == Peers::Left {
                                Err(RecvError::Disconnected)
                            } else {
                                Err(RecvError::PeerDied)
                            };
                        }
                        Err(PopError::Corrupt) => return Err(RecvError::Corrupt),
                    }
                }
            }
            Peers::Live | Peers::NotYet => {}
        }
        let next = local.next_hole_check;
        let ring = &mut *ring;
        let ready = || ring_has_data(ring) || hole_check_due(ring, next);
        if !local.block(deadline, ready) {
            return Err(RecvError::Timeout);
        }
        woke = true;
    }
}

/// One push into a ring, giving the value back on failure.
pub(super) trait Push<V> {
    fn push_v(&mut self, v: V) -> Result<(), PushError<V>>;
}
impl<T: Pod> Push<T> for shmlane_ring::Producer<T> {
    #[inline]
    fn push_v(&mut self, v: T) -> Result<(), PushError<T>> {
        self.push(v)
    }
}
impl<T: Pod> Push<T> for shmlane_ring::Sender<T> {
    #[inline]
    fn push_v(&mut self, v: T) -> Result<(), PushError<T>> {
        self.push(v)
    }
}

/// The blocking send loop shared by `Producer` and `Sender`.
macro_rules! send_impl {
    () => {
        /// Sends `value` if there is room; never blocks. Wakes a sleeping receiver (with no
        /// receiver asleep this is a fence and a load: no syscall). `Disconnected` only in
        /// [`PeersLeave::Disconnect`](crate::PeersLeave) mode, on a full ring whose receivers
        /// all left.
        ///
        /// Real-time: never allocates or blocks; no system call but a futex wake when a receiver
        /// sleeps (MPMC: lock-free, a CAS retry only when another sender progressed) (none with
        /// `Wakes::Never`); no page fault after set-up (docs/realtime.md).
        #[inline]
        pub fn try_send(&mut self, value: T) -> Result<(), TrySendError<T>> {
            try_send_with(
                &mut *self.ring,
                &mut self.local,
                value,
                size_of::<T>() as u64,
            )
        }

        /// Sends `value`, waiting for room until `deadline` (`None`: no limit) with the
        /// channel's wait strategy. While there is room it sends whether or not a receiver is
        /// attached. On a full ring: `PeerDied` once when a receiver died since this endpoint
        /// attached and none is left; `Disconnected` when every receiver left, in
        /// [`PeersLeave::Disconnect`](crate::PeersLeave) mode only (in `Wait` mode it waits
        /// for a receiver until the deadline). See the lifecycle in docs/design.md.
        ///
        /// Real-time: blocks (spin, yield, futex wait) until the deadline and reads the clock;
        /// after a fruitless wait checks peers' liveness (system calls; the attachment table is
        /// read into a `Vec`: allocates); for non-real-time threads (docs/realtime.md).
        pub fn send(&mut self, value: T, deadline: Option<Deadline>) -> Result<(), SendError<T>> {
            self.send_inner(value, 0, deadline)
        }

        /// `send`, sending only while more than `keep` slots are free (`keep` 0: `send`).
        #[inline]
        fn send_inner(
            &mut self,
            value: T,
            keep: usize,
            deadline: Option<Deadline>,
        ) -> Result<(), SendError<T>> {
            let ring = &mut *self.ring;
            send_blocking(ring, &mut self.local, value, keep, deadline, |r, l, v| {
                try_send_with(r, l, v, size_of::<T>() as u64)
            })
        }

        /// Statistics hook: the message just sent carried `bytes` bytes of payload in its
        /// element (its own length, for messages of varying length inside a fixed element).
        /// The side's byte count (`SideStats::bytes`, `shmlane stat`'s `payload_bytes`) then
        /// counts those bytes for it instead of the whole element; messages nobody calls this
        /// for count `size_of::<T>()` each. Call it once per message, after the send; `bytes`
        /// past the element counts as the whole element; a call beyond the messages this
        /// endpoint sent is ignored (it cannot lower the side's count). Costs no atomic operation: published
        /// with the endpoint's other statistics (every 64 messages, before a wait, on drop).
        pub fn count_payload(&mut self, bytes: usize) {
            self.local.count_payload(size_of::<T>(), bytes);
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

        /// The channel's statistics as stored now (plus this endpoint's unpublished ones).
        pub fn stats(&mut self) -> SideStats {
            self.local.shared_stats()
        }

        /// Waits until a live receiver is attached, bounded by `deadline` (`None`: no limit).
        pub fn wait_for_peer(&mut self, deadline: Option<Deadline>) -> Result<(), WaitPeerError> {
            self.local.wait_for_peer(deadline)
        }
    };
}

/// The blocking receive loop shared by `Consumer` and `Receiver`.
macro_rules! recv_impl {
    () => {
        /// Receives a message if one is there; never blocks, never makes a syscall unless it
        /// wakes a blocked sender. `Disconnected` ([`PeersLeave::Disconnect`](crate::PeersLeave)
        /// mode only) once every sender this endpoint has seen left cleanly and the ring is
        /// drained; a sender's death is reported by [`recv`](Self::recv).
        ///
        /// Real-time: never allocates or blocks; no system call but a futex wake when a sender
        /// sleeps (MPMC: lock-free, a CAS retry only when another receiver progressed) (none with
        /// `Wakes::Never`); no page fault after set-up (docs/realtime.md).
        #[inline]
        pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
            try_recv_with(
                &mut *self.ring,
                &mut self.local,
                size_of::<T>() as u64,
                |r| r.pop(),
            )
        }

        /// Receives a message, waiting until `deadline` (`None`: no limit) with the channel's
        /// wait strategy. What senders sent is always delivered first. Then, with no live
        /// sender: `PeerDied` once if a sender process died since this endpoint attached
        /// (within 50 ms of the death even while parked; deaths before it attached are never
        /// reported to it); in [`PeersLeave::Disconnect`](crate::PeersLeave) mode
        /// `Disconnected` once every sender it has seen left cleanly, and both are final; in
        /// `Wait` mode the next call waits for a sender (until its deadline, without a busy
        /// loop). See the lifecycle in docs/design.md.
        ///
        /// Real-time: blocks (spin, yield, futex wait) until the deadline and reads the clock;
        /// after a fruitless wait checks peers' liveness (system calls; the attachment table is
        /// read into a `Vec`: allocates); for non-real-time threads (docs/realtime.md).
        pub fn recv(&mut self, deadline: Option<Deadline>) -> Result<T, RecvError> {
            let ring = &mut *self.ring;
            recv_blocking(
                ring,
                &mut self.local,
                deadline,
                size_of::<T>() as u64,
                |r| r.pop(),
            )
        }

        /// Statistics hook: the message just received carried `bytes` bytes of payload in its
        /// element; as [`Producer::count_payload`](crate::Producer::count_payload) on the
        /// receiving side (messages nobody calls it for count `size_of::<T>()` each).
        pub fn count_payload(&mut self, bytes: usize) {
            self.local.count_payload(size_of::<T>(), bytes);
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
    };
}

pub(super) trait HasData {
    fn has_data(&mut self) -> bool;
}
pub(crate) trait HasRoom {
    /// Room for `n` messages (MPMC: for one, whatever `n`; only SPSC asks for more).
    fn has_room(&mut self, n: usize) -> bool;
}
impl<T: Pod> HasData for shmlane_ring::Consumer<T> {
    fn has_data(&mut self) -> bool {
        // Data, or positions that are corrupt (the caller's next try reports it): only
        // "nothing yet" waits. `is_empty()` said empty on a corrupt ring, and a blocked `recv`
        // waited on an overwritten tail until its deadline, or forever (review rev2).
        !matches!(
            self.read_chunk(1),
            Err(shmlane_ring::ChunkError::TooFewSlots(_))
        )
    }
}
impl<T: Pod> HasData for shmlane_ring::Receiver<T> {
    fn has_data(&mut self) -> bool {
        // The stamp at the position, not the approximate length: a position taken and not
        // yet published (a hole) is not data.
        self.can_pop()
    }
}
impl<T: Pod> HasRoom for shmlane_ring::Producer<T> {
    fn has_room(&mut self, n: usize) -> bool {
        // Room, or corrupt positions (the next try reports it); see `HasData` above.
        !matches!(
            self.write_chunk(n),
            Err(shmlane_ring::ChunkError::TooFewSlots(_))
        )
    }
}
impl<T: Pod> HasRoom for shmlane_ring::Sender<T> {
    fn has_room(&mut self, _: usize) -> bool {
        // The stamp at the position: a slot a receiver still holds is not room.
        self.can_push()
    }
}

/// Rings whose endpoints can leave holes when they die mid-operation (MPMC).
pub(super) trait Holes {
    const HOLES: bool;
    fn recover(&self, is_alive: &dyn Fn(u64) -> bool) -> Hole;
    /// The ring's capacity: the most holes it can hold at once.
    fn slots(&self) -> u64;
    /// Whether the shared positions are ones a sound ring can show (slow path).
    fn positions_consistent(&self) -> bool {
        true
    }
}
impl<T: Pod> Holes for shmlane_ring::Producer<T> {
    const HOLES: bool = false;
    fn recover(&self, _: &dyn Fn(u64) -> bool) -> Hole {
        Hole::None
    }
    fn slots(&self) -> u64 {
        self.capacity() as u64
    }
}
impl<T: Pod> Holes for shmlane_ring::Consumer<T> {
    const HOLES: bool = false;
    fn recover(&self, _: &dyn Fn(u64) -> bool) -> Hole {
        Hole::None
    }
    fn slots(&self) -> u64 {
        self.capacity() as u64
    }
}
impl<T: Pod> Holes for shmlane_ring::Sender<T> {
    const HOLES: bool = true;
    fn positions_consistent(&self) -> bool {
        shmlane_ring::Sender::positions_consistent(self)
    }
    fn recover(&self, is_alive: &dyn Fn(u64) -> bool) -> Hole {
        shmlane_ring::Sender::recover(self, is_alive)
    }
    fn slots(&self) -> u64 {
        self.capacity() as u64
    }
}
impl<T: Pod> Holes for shmlane_ring::Receiver<T> {
    const HOLES: bool = true;
    fn positions_consistent(&self) -> bool {
        shmlane_ring::Receiver::positions_consistent(self)
    }
    fn recover(&self, is_alive: &dyn Fn(u64) -> bool) -> Hole {
        shmlane_ring::Receiver::recover(self, is_alive)
    }
    fn slots(&self) -> u64 {
        self.capacity() as u64
    }
}

/// For a blocked endpoint's wait condition: the next hole check is due.
fn hole_check_due<R: Holes>(_: &R, next: Option<Instant>) -> bool {
    R::HOLES && next.is_some_and(|t| Instant::now() >= t)
}
fn ring_has_data(r: &mut impl HasData) -> bool {
    r.has_data()
}
fn ring_has_room(r: &mut impl HasRoom, n: usize) -> bool {
    r.has_room(n)
}

impl<T: Pod + Send> Producer<T> {
    send_impl!();

    /// Zero-copy: reserves `n` slots to fill in place; see [`shmlane_ring::WriteChunk`].
    /// Call [`notify`](Self::notify) after committing so a sleeping consumer wakes.
    ///
    /// Real-time: never allocates, blocks or makes a system call; no page fault after set-up
    /// (docs/realtime.md).
    pub fn write_chunk(
        &mut self,
        n: usize,
    ) -> Result<shmlane_ring::WriteChunk<'_, T>, shmlane_ring::ChunkError> {
        self.ring.write_chunk(n)
    }

    /// Sends as many of `values` as fit; returns how many. Never blocks.
    ///
    /// Real-time: never allocates or blocks; no system call but a futex wake when a receiver sleeps
    /// (none with `Wakes::Never`); no page fault after set-up (docs/realtime.md).
    pub fn try_send_slice(&mut self, values: &[T]) -> Result<usize, TrySendError<()>> {
        let n = self
            .ring
            .push_slice(values)
            .map_err(|_| TrySendError::Corrupt(()))?;
        if n > 0 {
            self.local.done(n as u64, (n * size_of::<T>()) as u64);
        } else if self.local.life.gone(&self.local.inner) {
            return Err(TrySendError::Disconnected(()));
        }
        Ok(n)
    }

    /// Records `n` messages committed through a chunk and wakes a sleeping consumer.
    ///
    /// Real-time: never allocates or blocks; no system call but a futex wake when the consumer
    /// sleeps (none with `Wakes::Never`) (docs/realtime.md).
    pub fn notify(&mut self, n: usize) {
        self.local.done(n as u64, (n * size_of::<T>()) as u64);
    }

    /// Free slots now.
    ///
    /// Real-time: never allocates, blocks or makes a system call; no page fault after set-up
    /// (docs/realtime.md).
    pub fn free(&mut self) -> usize {
        self.ring.free()
    }

    /// [`send`](Self::send), but leaving `keep` slots free: it sends only while more than
    /// `keep` slots are free, and otherwise waits (as `send` does, until `deadline`) for the
    /// consumer to free them. As the only producer, the caller then always finds `keep` slots
    /// for a last message that must not wait (a stream's end or failure mark, sent with
    /// [`try_send`](Self::try_send) or `write_chunk`) whatever the consumer does. `keep` is at
    /// most `capacity - 1` (larger is taken as that).
    pub fn send_keeping(
        &mut self,
        value: T,
        keep: usize,
        deadline: Option<Deadline>,
    ) -> Result<(), SendError<T>> {
        let keep = keep.min(self.ring.capacity().saturating_sub(1));
        self.send_inner(value, keep, deadline)
    }
}

impl<T: Pod + Send> Consumer<T> {
    recv_impl!();

    /// Zero-copy: borrows `n` messages in place; call [`notify`](Self::notify) after
    /// committing so a sleeping producer wakes.
    ///
    /// Real-time: never allocates, blocks or makes a system call; no page fault after set-up
    /// (docs/realtime.md).
    pub fn read_chunk(
        &mut self,
        n: usize,
    ) -> Result<shmlane_ring::ReadChunk<'_, T>, shmlane_ring::ChunkError> {
        self.ring.read_chunk(n)
    }

    /// Receives up to `out.len()` messages; returns how many. Never blocks.
    ///
    /// Real-time: never allocates or blocks; no system call but a futex wake when a sender sleeps
    /// (none with `Wakes::Never`); no page fault after set-up (docs/realtime.md).
    pub fn try_recv_slice(&mut self, out: &mut [T]) -> Result<usize, TryRecvError> {
        let n = self
            .ring
            .pop_slice(out)
            .map_err(|_| TryRecvError::Corrupt)?;
        if n > 0 {
            self.local.done(n as u64, (n * size_of::<T>()) as u64);
        } else if self.ring.is_empty() && self.local.life.gone(&self.local.inner) {
            return Err(TryRecvError::Disconnected);
        }
        Ok(n)
    }

    /// Records `n` messages released through a chunk and wakes a sleeping producer.
    ///
    /// Real-time: never allocates or blocks; no system call but a futex wake when the producer
    /// sleeps (none with `Wakes::Never`) (docs/realtime.md).
    pub fn notify(&mut self, n: usize) {
        self.local.done(n as u64, (n * size_of::<T>()) as u64);
    }

    /// Messages in the ring now.
    ///
    /// Real-time: never allocates, blocks or makes a system call; no page fault after set-up
    /// (docs/realtime.md).
    pub fn len(&mut self) -> usize {
        self.ring.len()
    }

    /// Whether the ring is empty now.
    ///
    /// Real-time: never allocates, blocks or makes a system call; no page fault after set-up
    /// (docs/realtime.md).
    pub fn is_empty(&mut self) -> bool {
        self.ring.is_empty()
    }
}

impl<T: Pod + Send> Sender<T> {
    send_impl!();

    /// Gives back a slot that a receiver which died between taking a message and releasing
    /// the slot still holds at the ring position senders need next (otherwise the ring stays
    /// full there). [`send`](Self::send) does this by itself while it waits, at most every
    /// 10 ms; callers of [`try_send`](Self::try_send) that keep finding the ring full call it.
    /// Returns whether a slot was given back (counted in `lost`: the dead receiver's message;
    /// not counted when that receiver had taken a skipped position, which held none).
    ///
    /// Real-time: never allocates or blocks, but makes system calls (a liveness check, at most
    /// every 10 ms unless a hole was recovered): call it off the real-time thread's every turn
    /// (docs/realtime.md).
    pub fn recover(&mut self) -> bool {
        self.local.check_hole(&*self.ring, true)
    }

    /// Test hook, not part of the API: what a sender process killed between taking its ring
    /// position and publishing its message leaves behind (the position taken, nothing
    /// written; the endpoint never leaves). The caller then hangs or is killed.
    #[doc(hidden)]
    pub fn abandon_send_for_tests(self) {
        let Self { ring, local } = self;
        ring.into_inner().abandon_push_for_tests(true);
        core::mem::forget(local);
    }
}

impl<T: Pod + Send> Receiver<T> {
    recv_impl!();

    /// Skips a position that a sender which died between taking it and publishing its message
    /// left at the head of the ring (otherwise nothing behind it is ever received).
    /// [`recv`](Self::recv) does this by itself while it waits, at most every 10 ms; callers of
    /// [`try_recv`](Self::try_recv) that keep finding the ring empty call it. Returns whether a
    /// position was skipped (counted in `lost`).
    ///
    /// Real-time: never allocates or blocks, but makes system calls (a liveness check, at most
    /// every 10 ms unless a hole was recovered): call it off the real-time thread's every turn
    /// (docs/realtime.md).
    pub fn recover(&mut self) -> bool {
        self.local.check_hole(&*self.ring, true)
    }

    /// Test hook, not part of the API: what a receiver process killed between taking its ring
    /// position and releasing the slot leaves behind (the message taken, the slot held; the
    /// endpoint never leaves). The caller then hangs or is killed.
    #[doc(hidden)]
    pub fn abandon_recv_for_tests(self) {
        let Self { ring, local } = self;
        ring.into_inner().abandon_pop_for_tests(true);
        core::mem::forget(local);
    }

    /// Messages in the ring now, approximately.
    ///
    /// Real-time: never allocates, blocks or makes a system call; no page fault after set-up
    /// (docs/realtime.md).
    pub fn len(&self) -> usize {
        self.ring.len()
    }

    /// Whether the ring looks empty.
    ///
    /// Real-time: never allocates, blocks or makes a system call; no page fault after set-up
    /// (docs/realtime.md).
    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }
}
