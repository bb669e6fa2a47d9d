//! SPSC and MPMC channels whose element layout (size, alignment) and type name are given at
//! run time, for callers that know their element only then (the C ABI). The segment, the
//! channel header, the type record and the ring are byte for byte those of a typed channel
//! of a `T` with that size and alignment: a channel made by `spsc::<Quote>(name)
//! .type_name("Quote")` is opened by [`raw_spsc`]`(name, ElemLayout::new(24, 8)?)
//! .type_name("Quote")` and the other way round, and another size, alignment or name is
//! [`OpenError::WrongType`] either way. The builder is the typed one with the layout
//! replacing `T`'s; the endpoints share the typed endpoints' send and receive loops
//! (`endpoints::send_blocking` / `recv_blocking`), liveness, wake-ups and statistics.
//!
//! Messages are byte slices of exactly the element size, in any alignment (the ring copies
//! them into its aligned slots). A slice of another length is [`ElemError::Length`], never a
//! panic.

use shmlane_ring::{
    ChunkError, DynConsumer, DynMpmcRing, DynProducer, DynReadChunk, DynReceiver, DynSender,
    DynSpscRing, DynWriteChunk, ElemLayout, Hole, PushError,
};
use shmlane_segment::{Location, UnlinkPolicy};
use shmlane_wake::{Deadline, WaitStrategy};

use super::{
    Builder, Channel, ElemType, Kind, Local, Owned, PeersLeave, Side, SideStats,
    endpoints::{
        HasData, HasRoom, Holes, Push, recv_blocking, send_blocking, try_recv_with, try_send_with,
    },
};
use crate::error::{OpenError, RecvError, SendError, TryRecvError, TrySendError, WaitPeerError};

/// The type name a run-time channel records when none is given: `[u8; SIZE] align ALIGN`.
/// A typed channel opened by a run-time one (or the reverse) needs the same name on both
/// sides: give it with [`RawBuilder::type_name`] (and `Builder::type_name` on the typed side).
pub fn default_type_name(l: ElemLayout) -> String {
    format!("[u8; {}] align {}", l.size(), l.align())
}

/// A builder for an SPSC channel of `elem` elements (see the module docs).
pub fn raw_spsc(name: &str, elem: ElemLayout) -> RawBuilder {
    RawBuilder {
        b: Builder::with_elem(name, Kind::Spsc, elem),
        elem,
    }
}

/// A builder for an MPMC channel of `elem` elements (see the module docs).
pub fn raw_mpmc(name: &str, elem: ElemLayout) -> RawBuilder {
    RawBuilder {
        b: Builder::with_elem(name, Kind::Mpmc, elem),
        elem,
    }
}

/// A builder for a typed broadcast channel of `elem` elements: the channel
/// [`broadcast_of`](crate::broadcast_of)`::<T>` makes for a `T` of this size and alignment
/// (the same largest message, `elem.size()`, and type record: give the type name both sides
/// use). Its endpoints are [`RawChannel::publisher`] and [`RawChannel::subscriber_from`]
/// (`broadcast/raw.rs`).
pub fn raw_broadcast(name: &str, elem: ElemLayout) -> RawBuilder {
    RawBuilder {
        b: Builder::with_elem(name, Kind::Broadcast, elem).msg_size(elem.size() as u64),
        elem,
    }
}

/// Why a run-time endpoint refused or failed a call: the slice was not a whole element (or a
/// whole number of them for the batch calls), or the channel's own error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ElemError<E> {
    /// The slice's length is not what the channel's elements need: nothing was sent or
    /// received.
    #[error(
        "a slice of {got} bytes given to a channel of {size}-byte elements: pass exactly one element (a whole number of them for the batch calls)"
    )]
    Length {
        /// The element size.
        size: usize,
        /// The slice's length.
        got: usize,
    },
    /// The channel's error.
    #[error(transparent)]
    Channel(E),
}

impl<E> From<E> for ElemError<E> {
    fn from(e: E) -> Self {
        Self::Channel(e)
    }
}

/// Builder of a run-time channel: every option of [`Builder`], the element layout given.
#[derive(Debug)]
pub struct RawBuilder {
    b: Builder<u8>,
    elem: ElemLayout,
}

macro_rules! delegate {
    ($($(#[$m:meta])* $f:ident($($a:ident: $t:ty),*);)*) => {$(
        $(#[$m])*
        #[must_use]
        pub fn $f(self, $($a: $t),*) -> Self {
            Self { b: self.b.$f($($a),*), elem: self.elem }
        }
    )*};
}

impl RawBuilder {
    delegate! {
        /// As [`Builder::capacity`].
        capacity(n: u64);
        /// As [`Builder::msg_size`] (refused unless the element size).
        msg_size(bytes: u64);
        /// As [`Builder::type_name`]: recorded with the size and alignment, checked by every
        /// opener, typed or run-time (default [`default_type_name`]).
        type_name(name: &str);
        /// As [`Builder::location`].
        location(loc: Location);
        /// As [`Builder::wait`].
        wait(strategy: WaitStrategy);
        /// As [`Builder::wakes`].
        wakes(wakes: crate::Wakes);
        /// As [`Builder::mode`].
        mode(mode: u32);
        /// As [`Builder::group`].
        group(gid: u32);
        /// As [`Builder::trust_owner`].
        trust_owner(uid: u32);
        /// As [`Builder::populate`].
        populate(yes: bool);
        /// As [`Builder::mlock`].
        mlock(yes: bool);
        /// As [`Builder::unlink`].
        unlink(policy: UnlinkPolicy);
        /// As [`Builder::when_peers_leave`].
        when_peers_leave(what: PeersLeave);
        /// As [`Builder::resume`].
        resume(yes: bool);
        /// As [`Builder::keep_unread`].
        keep_unread(yes: bool);
        /// As [`Builder::checksum`] (refused: typed channels carry no per-message checksum).
        checksum(yes: bool);
    }

    /// As [`Builder::segment_size`].
    pub fn segment_size(&self) -> Result<u64, OpenError> {
        self.b.segment_size()
    }

    /// Creates the channel; fails if the name exists.
    pub fn create(self) -> Result<RawChannel, OpenError> {
        Ok(RawChannel {
            ch: self.b.create()?,
            elem: self.elem,
        })
    }

    /// Opens an existing channel (typed or run-time) of this element layout and type name.
    pub fn open(self) -> Result<RawChannel, OpenError> {
        Ok(RawChannel {
            ch: self.b.open()?,
            elem: self.elem,
        })
    }

    /// Opens the channel, creating it if it does not exist.
    pub fn open_or_create(self) -> Result<RawChannel, OpenError> {
        Ok(RawChannel {
            ch: self.b.open_or_create()?,
            elem: self.elem,
        })
    }
}

/// An open run-time channel; take endpoints from it. Cheap to clone.
#[derive(Clone, Debug)]
pub struct RawChannel {
    pub(crate) ch: Channel<u8>,
    pub(crate) elem: ElemLayout,
}

fn alive_fn(seg: &shmlane_segment::Segment) -> impl Fn(u64) -> bool + '_ {
    |t: u64| u32::try_from(t).is_ok_and(|t| seg.tag_alive(t))
}

impl RawChannel {
    /// The channel's name.
    pub fn name(&self) -> &str {
        self.ch.name()
    }

    /// Whether this handle created the segment.
    pub fn created(&self) -> bool {
        self.ch.created()
    }

    /// The channel's kind (SPSC or MPMC).
    pub fn kind(&self) -> Kind {
        self.ch.kind()
    }

    /// The element type the channel records.
    pub fn elem_type(&self) -> ElemType {
        self.ch.elem_type()
    }

    /// The element layout.
    pub fn layout(&self) -> ElemLayout {
        self.elem
    }

    /// The SPSC producer (one per channel, as [`Channel::producer`]).
    pub fn producer(&self) -> Result<RawProducer, OpenError> {
        let ch = &self.ch;
        ch.check_kind(Kind::Spsc, "producer")?;
        ch.check_here()?;
        let (ptr, len) = ch.inner.ring;
        let seg = &ch.inner.seg;
        // SAFETY: the ring region lives as long as the segment, which the endpoint keeps alive
        // through `Local::inner`.
        let ring =
            unsafe { DynSpscRing::producer(ptr, len, self.elem, ch.token(), &alive_fn(seg)) }
                .map_err(|e| OpenError::for_role(e, &ch.inner.name, "producer", seg))?;
        Ok(RawProducer {
            size: self.elem.size(),
            ring: Owned::new(ring),
            local: ch.local(Side::Send),
        })
    }

    /// The SPSC consumer (one per channel).
    pub fn consumer(&self) -> Result<RawConsumer, OpenError> {
        let ch = &self.ch;
        ch.check_kind(Kind::Spsc, "consumer")?;
        ch.check_here()?;
        let (ptr, len) = ch.inner.ring;
        let seg = &ch.inner.seg;
        // SAFETY: as in `producer`.
        let ring =
            unsafe { DynSpscRing::consumer(ptr, len, self.elem, ch.token(), &alive_fn(seg)) }
                .map_err(|e| OpenError::for_role(e, &ch.inner.name, "consumer", seg))?;
        Ok(RawConsumer {
            size: self.elem.size(),
            ring: Owned::new(ring),
            local: ch.local(Side::Recv),
        })
    }

    /// An MPMC sender (any number).
    pub fn sender(&self) -> Result<RawSender, OpenError> {
        let ch = &self.ch;
        ch.check_kind(Kind::Mpmc, "sender")?;
        ch.check_here()?;
        let (ptr, len) = ch.inner.ring;
        let seg = &ch.inner.seg;
        // SAFETY: as in `producer`.
        let ring =
            unsafe { DynMpmcRing::sender_owned(ptr, len, self.elem, ch.token(), &alive_fn(seg))? };
        Ok(RawSender {
            size: self.elem.size(),
            ring: Owned::new(ring),
            local: ch.local(Side::Send),
        })
    }

    /// An MPMC receiver (any number).
    pub fn receiver(&self) -> Result<RawReceiver, OpenError> {
        let ch = &self.ch;
        ch.check_kind(Kind::Mpmc, "receiver")?;
        ch.check_here()?;
        let (ptr, len) = ch.inner.ring;
        let seg = &ch.inner.seg;
        // SAFETY: as in `producer`.
        let ring = unsafe {
            DynMpmcRing::receiver_owned(ptr, len, self.elem, ch.token(), &alive_fn(seg))?
        };
        Ok(RawReceiver {
            size: self.elem.size(),
            ring: Owned::new(ring),
            local: ch.local(Side::Recv),
        })
    }
}

/// The sending end of a run-time SPSC channel (as [`Producer`](crate::Producer)).
pub struct RawProducer {
    ring: Owned<DynProducer>,
    local: Local,
    size: usize,
}

/// The receiving end of a run-time SPSC channel (as [`Consumer`](crate::Consumer)).
pub struct RawConsumer {
    pub(crate) ring: Owned<DynConsumer>,
    pub(crate) local: Local,
    size: usize,
}

/// A sending end of a run-time MPMC channel (as [`Sender`](crate::Sender)).
pub struct RawSender {
    ring: Owned<DynSender>,
    local: Local,
    size: usize,
}

/// A receiving end of a run-time MPMC channel (as [`Receiver`](crate::Receiver)).
pub struct RawReceiver {
    pub(crate) ring: Owned<DynReceiver>,
    pub(crate) local: Local,
    size: usize,
}

macro_rules! debug_raw {
    ($($t:ident),*) => {$(
        impl core::fmt::Debug for $t {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.debug_struct(stringify!($t))
                    .field("channel", &self.local.inner.name)
                    .field("elem_size", &self.size)
                    .finish_non_exhaustive()
            }
        }
    )*};
}
debug_raw!(RawProducer, RawConsumer, RawSender, RawReceiver);

impl<'a> Push<&'a [u8]> for DynProducer {
    #[inline]
    fn push_v(&mut self, v: &'a [u8]) -> Result<(), PushError<&'a [u8]>> {
        self.push(v).map_err(|e| back(e, v))
    }
}
impl<'a> Push<&'a [u8]> for DynSender {
    #[inline]
    fn push_v(&mut self, v: &'a [u8]) -> Result<(), PushError<&'a [u8]>> {
        self.push(v).map_err(|e| back(e, v))
    }
}
fn back(e: PushError<()>, v: &[u8]) -> PushError<&[u8]> {
    match e {
        PushError::Full(()) => PushError::Full(v),
        PushError::Corrupt(()) => PushError::Corrupt(v),
    }
}

impl HasData for DynConsumer {
    fn has_data(&mut self) -> bool {
        // As the typed consumer: data, or corrupt positions (the next try reports them).
        !matches!(self.read_chunk(1), Err(ChunkError::TooFewSlots(_)))
    }
}
impl HasData for DynReceiver {
    fn has_data(&mut self) -> bool {
        self.can_pop()
    }
}
impl HasRoom for DynProducer {
    fn has_room(&mut self, n: usize) -> bool {
        !matches!(self.write_chunk(n), Err(ChunkError::TooFewSlots(_)))
    }
}
impl HasRoom for DynSender {
    fn has_room(&mut self, _: usize) -> bool {
        self.can_push()
    }
}
impl Holes for DynProducer {
    const HOLES: bool = false;
    fn recover(&self, _: &dyn Fn(u64) -> bool) -> Hole {
        Hole::None
    }
    fn slots(&self) -> u64 {
        self.capacity() as u64
    }
}
impl Holes for DynConsumer {
    const HOLES: bool = false;
    fn recover(&self, _: &dyn Fn(u64) -> bool) -> Hole {
        Hole::None
    }
    fn slots(&self) -> u64 {
        self.capacity() as u64
    }
}
impl Holes for DynSender {
    const HOLES: bool = true;
    fn positions_consistent(&self) -> bool {
        DynSender::positions_consistent(self)
    }
    fn recover(&self, is_alive: &dyn Fn(u64) -> bool) -> Hole {
        DynSender::recover(self, is_alive)
    }
    fn slots(&self) -> u64 {
        self.capacity() as u64
    }
}
impl Holes for DynReceiver {
    const HOLES: bool = true;
    fn positions_consistent(&self) -> bool {
        DynReceiver::positions_consistent(self)
    }
    fn recover(&self, is_alive: &dyn Fn(u64) -> bool) -> Hole {
        DynReceiver::recover(self, is_alive)
    }
    fn slots(&self) -> u64 {
        self.capacity() as u64
    }
}

fn one(size: usize, got: usize) -> Result<(), (usize, usize)> {
    if got == size {
        Ok(())
    } else {
        Err((size, got))
    }
}

fn len_err<E>((size, got): (usize, usize)) -> ElemError<E> {
    ElemError::Length { size, got }
}

fn unit_try(e: TrySendError<&[u8]>) -> TrySendError<()> {
    match e {
        TrySendError::Full(_) => TrySendError::Full(()),
        TrySendError::Disconnected(_) => TrySendError::Disconnected(()),
        TrySendError::Corrupt(_) => TrySendError::Corrupt(()),
    }
}

fn unit_send(e: SendError<&[u8]>) -> SendError<()> {
    match e {
        SendError::Timeout(_) => SendError::Timeout(()),
        SendError::Disconnected(_) => SendError::Disconnected(()),
        SendError::PeerDied(_) => SendError::PeerDied(()),
        SendError::Corrupt(_) => SendError::Corrupt(()),
    }
}

/// The calls every run-time sending endpoint has.
macro_rules! raw_send_impl {
    () => {
        /// Sends a copy of `elem` (exactly one element) if there is room; never blocks. As the
        /// typed `try_send`.
        ///
        /// Real-time: never allocates or blocks; no system call but a futex wake when a receiver
        /// sleeps (MPMC: lock-free, a CAS retry only when another sender progressed) (none with
        /// `Wakes::Never`); no page fault after set-up (docs/realtime.md).
        #[inline]
        pub fn try_send(&mut self, elem: &[u8]) -> Result<(), ElemError<TrySendError<()>>> {
            one(self.size, elem.len()).map_err(len_err)?;
            try_send_with(&mut *self.ring, &mut self.local, elem, self.size as u64)
                .map_err(|e| ElemError::Channel(unit_try(e)))
        }

        /// Sends a copy of `elem`, waiting for room until `deadline` (`None`: no limit). As the
        /// typed `send` (the same loop: wake-ups, peer checks, hole recovery, deadline).
        ///
        /// Real-time: blocks (spin, yield, futex wait) until the deadline and reads the clock;
        /// after a fruitless wait checks peers' liveness (system calls; the attachment table is
        /// read into a `Vec`: allocates); for non-real-time threads (docs/realtime.md).
        pub fn send(
            &mut self,
            elem: &[u8],
            deadline: Option<Deadline>,
        ) -> Result<(), ElemError<SendError<()>>> {
            one(self.size, elem.len()).map_err(len_err)?;
            let size = self.size as u64;
            send_blocking(
                &mut *self.ring,
                &mut self.local,
                elem,
                0,
                deadline,
                |r, l, v| try_send_with(r, l, v, size),
            )
            .map_err(|e| ElemError::Channel(unit_send(e)))
        }

        /// As the typed `count_payload`: the message just sent carried `bytes` of payload.
        pub fn count_payload(&mut self, bytes: usize) {
            self.local.count_payload(self.size, bytes);
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

        /// The channel's sender-side statistics as stored now (plus this endpoint's).
        pub fn stats(&mut self) -> SideStats {
            self.local.shared_stats()
        }

        /// Waits until a live receiver is attached, bounded by `deadline`.
        pub fn wait_for_peer(&mut self, deadline: Option<Deadline>) -> Result<(), WaitPeerError> {
            self.local.wait_for_peer(deadline)
        }

        /// The element size in bytes.
        pub fn elem_size(&self) -> usize {
            self.size
        }
    };
}

/// The calls every run-time receiving endpoint has.
macro_rules! raw_recv_impl {
    () => {
        /// Receives one element into `out` (exactly one element's bytes, any alignment) if one
        /// is there; never blocks. `out` is written only with `Ok`. As the typed `try_recv`.
        ///
        /// Real-time: never allocates or blocks; no system call but a futex wake when a sender
        /// sleeps (MPMC: lock-free, a CAS retry only when another receiver progressed) (none with
        /// `Wakes::Never`); no page fault after set-up (docs/realtime.md).
        #[inline]
        pub fn try_recv(&mut self, out: &mut [u8]) -> Result<(), ElemError<TryRecvError>> {
            one(self.size, out.len()).map_err(len_err)?;
            try_recv_with(&mut *self.ring, &mut self.local, self.size as u64, |r| {
                r.pop(out)
            })
            .map_err(ElemError::Channel)
        }

        /// Receives one element into `out`, waiting until `deadline` (`None`: no limit). As the
        /// typed `recv` (the same loop).
        ///
        /// Real-time: blocks (spin, yield, futex wait) until the deadline and reads the clock;
        /// after a fruitless wait checks peers' liveness (system calls; the attachment table is
        /// read into a `Vec`: allocates); for non-real-time threads (docs/realtime.md).
        pub fn recv(
            &mut self,
            out: &mut [u8],
            deadline: Option<Deadline>,
        ) -> Result<(), ElemError<RecvError>> {
            one(self.size, out.len()).map_err(len_err)?;
            let size = self.size as u64;
            recv_blocking(&mut *self.ring, &mut self.local, deadline, size, |r| {
                r.pop(out)
            })
            .map_err(ElemError::Channel)
        }

        /// As the typed `count_payload`, on the receiving side.
        pub fn count_payload(&mut self, bytes: usize) {
            self.local.count_payload(self.size, bytes);
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

        /// Waits until a live sender is attached, bounded by `deadline`.
        pub fn wait_for_peer(&mut self, deadline: Option<Deadline>) -> Result<(), WaitPeerError> {
            self.local.wait_for_peer(deadline)
        }

        /// The element size in bytes.
        pub fn elem_size(&self) -> usize {
            self.size
        }
    };
}

fn whole(size: usize, len: usize) -> Result<usize, (usize, usize)> {
    if len % size == 0 {
        Ok(len / size)
    } else {
        Err((size, len))
    }
}

impl RawProducer {
    raw_send_impl!();

    /// Sends as many whole elements of `elems` as fit (its length a multiple of the element
    /// size); returns how many. Never blocks.
    ///
    /// Real-time: never allocates or blocks; no system call but a futex wake when a receiver sleeps
    /// (none with `Wakes::Never`); no page fault after set-up (docs/realtime.md).
    pub fn try_send_slice(&mut self, elems: &[u8]) -> Result<usize, ElemError<TrySendError<()>>> {
        whole(self.size, elems.len()).map_err(len_err)?;
        let n = self
            .ring
            .push_slice(elems)
            .map_err(|_| ElemError::Channel(TrySendError::Corrupt(())))?;
        if n > 0 {
            self.local.done(n as u64, (n * self.size) as u64);
        } else if !elems.is_empty() && self.local.life.gone(&self.local.inner) {
            return Err(ElemError::Channel(TrySendError::Disconnected(())));
        }
        Ok(n)
    }

    /// Zero copy: reserves `n` slots to fill in place ([`DynWriteChunk::as_mut_ptrs`] gives
    /// the two runs as raw pointers). Commit the chunk, then call [`notify`](Self::notify).
    ///
    /// Real-time: never allocates, blocks or makes a system call; no page fault after set-up
    /// (docs/realtime.md).
    pub fn write_chunk(&mut self, n: usize) -> Result<DynWriteChunk<'_>, ChunkError> {
        self.ring.write_chunk(n)
    }

    /// Records `n` messages committed through a chunk and wakes a sleeping consumer.
    ///
    /// Real-time: never allocates or blocks; no system call but a futex wake when the consumer
    /// sleeps (none with `Wakes::Never`) (docs/realtime.md).
    pub fn notify(&mut self, n: usize) {
        self.local.done(n as u64, (n * self.size) as u64);
    }

    /// Zero copy without a borrow (for a C caller that writes between two calls): reserves
    /// `n` slots and returns their two runs as raw pointers with their element counts, to
    /// fill before [`commit`](Self::commit). Reserving changes nothing shared (only this
    /// producer moves the tail), so the pointers stay valid until a commit or another send.
    ///
    /// Real-time: never allocates, blocks or makes a system call; no page fault after set-up
    /// (docs/realtime.md).
    pub fn write_ptrs(&mut self, n: usize) -> Result<[(*mut u8, usize); 2], ChunkError> {
        Ok(self.ring.write_chunk(n)?.as_mut_ptrs())
    }

    /// Publishes the first `n` slots reserved by [`write_ptrs`](Self::write_ptrs) and wakes a
    /// sleeping consumer (`TooFewSlots` if `n` is more than are free: nothing is published).
    ///
    /// Real-time: never allocates or blocks; no system call but a futex wake when the consumer
    /// sleeps (none with `Wakes::Never`) (docs/realtime.md).
    pub fn commit(&mut self, n: usize) -> Result<(), ChunkError> {
        self.ring.write_chunk(n)?.commit_all();
        self.notify(n);
        Ok(())
    }

    /// Free slots now.
    ///
    /// Real-time: never allocates, blocks or makes a system call; no page fault after set-up
    /// (docs/realtime.md).
    pub fn free(&mut self) -> usize {
        self.ring.free()
    }
}

impl RawConsumer {
    raw_recv_impl!();

    /// Receives up to `out.len() / size` elements (its length a multiple of the element size);
    /// returns how many. Never blocks.
    ///
    /// Real-time: never allocates or blocks; no system call but a futex wake when a sender sleeps
    /// (none with `Wakes::Never`); no page fault after set-up (docs/realtime.md).
    pub fn try_recv_slice(&mut self, out: &mut [u8]) -> Result<usize, ElemError<TryRecvError>> {
        whole(self.size, out.len()).map_err(len_err)?;
        let n = self
            .ring
            .pop_slice(out)
            .map_err(|_| ElemError::Channel(TryRecvError::Corrupt))?;
        if n > 0 {
            self.local.done(n as u64, (n * self.size) as u64);
        } else if !out.is_empty() && self.ring.is_empty() && self.local.life.gone(&self.local.inner)
        {
            return Err(ElemError::Channel(TryRecvError::Disconnected));
        }
        Ok(n)
    }

    /// Zero copy: borrows `n` messages in place ([`DynReadChunk::as_ptrs`]). Commit the chunk,
    /// then call [`notify`](Self::notify).
    ///
    /// Real-time: never allocates, blocks or makes a system call; no page fault after set-up
    /// (docs/realtime.md).
    pub fn read_chunk(&mut self, n: usize) -> Result<DynReadChunk<'_>, ChunkError> {
        self.ring.read_chunk(n)
    }

    /// Records `n` messages released through a chunk and wakes a sleeping producer.
    ///
    /// Real-time: never allocates or blocks; no system call but a futex wake when the producer
    /// sleeps (none with `Wakes::Never`) (docs/realtime.md).
    pub fn notify(&mut self, n: usize) {
        self.local.done(n as u64, (n * self.size) as u64);
    }

    /// Zero copy without a borrow (for a C caller): the next `n` messages as two runs of raw
    /// pointers with their element counts, valid until [`release`](Self::release) or another
    /// receive (only this consumer moves the head).
    ///
    /// Real-time: never allocates, blocks or makes a system call; no page fault after set-up
    /// (docs/realtime.md).
    pub fn read_ptrs(&mut self, n: usize) -> Result<[(*const u8, usize); 2], ChunkError> {
        Ok(self.ring.read_chunk(n)?.as_ptrs())
    }

    /// Releases the first `n` messages read through [`read_ptrs`](Self::read_ptrs) to the
    /// producer and wakes it (`TooFewSlots` if fewer are there: nothing is released).
    ///
    /// Real-time: never allocates or blocks; no system call but a futex wake when the producer
    /// sleeps (none with `Wakes::Never`) (docs/realtime.md).
    pub fn release(&mut self, n: usize) -> Result<(), ChunkError> {
        self.ring.read_chunk(n)?.commit_all();
        self.notify(n);
        Ok(())
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

impl RawSender {
    raw_send_impl!();

    /// Sends whole elements of `elems` one by one while there is room; returns how many.
    /// Never blocks.
    ///
    /// Real-time: never allocates; lock-free (a CAS retry only when another sender progressed); no
    /// system call but a futex wake when a receiver sleeps (none with `Wakes::Never`); no page
    /// fault after set-up (docs/realtime.md).
    pub fn try_send_slice(&mut self, elems: &[u8]) -> Result<usize, ElemError<TrySendError<()>>> {
        whole(self.size, elems.len()).map_err(len_err)?;
        let mut n = 0;
        for e in elems.chunks_exact(self.size) {
            match self.try_send(e) {
                Ok(()) => n += 1,
                Err(ElemError::Channel(TrySendError::Full(()))) => break,
                Err(e) if n == 0 => return Err(e),
                Err(_) => break,
            }
        }
        Ok(n)
    }

    /// As [`Sender::recover`](crate::Sender::recover).
    ///
    /// Real-time: never allocates or blocks, but makes system calls (a liveness check, at most
    /// every 10 ms unless a hole was recovered): call it off the real-time thread's every turn
    /// (docs/realtime.md).
    pub fn recover(&mut self) -> bool {
        self.local.check_hole(&*self.ring, true)
    }

    /// Test hook, not part of the API: as
    /// [`Sender::abandon_send_for_tests`](crate::Sender::abandon_send_for_tests).
    #[doc(hidden)]
    pub fn abandon_send_for_tests(self) {
        let Self { ring, local, .. } = self;
        ring.into_inner().abandon_push_for_tests(true);
        core::mem::forget(local);
    }
}

impl RawReceiver {
    raw_recv_impl!();

    /// Receives whole elements into `out` one by one while there are any; returns how many.
    /// Never blocks.
    ///
    /// Real-time: never allocates; lock-free (a CAS retry only when another receiver progressed);
    /// no system call but a futex wake when a sender sleeps (none with `Wakes::Never`); no page
    /// fault after set-up (docs/realtime.md).
    pub fn try_recv_slice(&mut self, out: &mut [u8]) -> Result<usize, ElemError<TryRecvError>> {
        whole(self.size, out.len()).map_err(len_err)?;
        let mut n = 0;
        let size = self.size;
        for o in out.chunks_exact_mut(size) {
            match self.try_recv(o) {
                Ok(()) => n += 1,
                Err(ElemError::Channel(TryRecvError::Empty)) => break,
                Err(e) if n == 0 => return Err(e),
                Err(_) => break,
            }
        }
        Ok(n)
    }

    /// As [`Receiver::recover`](crate::Receiver::recover).
    ///
    /// Real-time: never allocates or blocks, but makes system calls (a liveness check, at most
    /// every 10 ms unless a hole was recovered): call it off the real-time thread's every turn
    /// (docs/realtime.md).
    pub fn recover(&mut self) -> bool {
        self.local.check_hole(&*self.ring, true)
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
