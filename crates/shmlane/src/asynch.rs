//! Async endpoints on tokio (feature `tokio`): [`AsyncReceiver`] for every receiver kind
//! (`recv().await`, [`futures_core::Stream`]), [`AsyncSender`] that awaits room in a full ring,
//! the byte channel's async `claim`, and [`AsyncLatest`] for latest-value readers
//! (`changed().await`).
//!
//! # How a sender in another process wakes the task
//! Nothing changes for senders: a send's notify is one fence and one load while nobody waits.
//! A task that finds nothing registers as a sleeper on the channel's event (the same Dekker
//! protocol as a parked thread), then queues a futex wait *in the kernel* with io_uring
//! (`IORING_OP_FUTEX_WAIT`, Linux 6.7+), whose completion makes an eventfd readable for
//! tokio's reactor. The sender's notify sees the registration and wakes the futex; the kernel
//! completes the queued wait; the task is woken. No thread of the receiving process spins or
//! blocks for it, and no descriptor crosses a process boundary (so there is no rendezvous to
//! fail and no descriptor a dead peer can hold). The protocol is in `uring.rs` and
//! docs/design.md ("Async waiters").
//!
//! Fallback: where io_uring is refused (a kernel before 6.7, `kernel.io_uring_disabled`, a
//! seccomp filter), a waiting task looks again every millisecond on a tokio timer
//! ([`FALLBACK_POLL`]): never a lost wake-up or a hang; up to 1 ms later and a thousand timer
//! wake-ups a second while it waits. [`AsyncReceiver::uses_io_uring`] says which.
//!
//! # Bounds
//! A waiting task looks at its channel's senders (receivers, for a sender) every
//! [`POLL_PEER_CHECK`](crate::POLL_PEER_CHECK) (50 ms): a dead peer is reported within that,
//! plus a scan of the attachment table. With a never-waking peer (`Wakes::Never`) it looks at
//! the ring every [`NEVER_WAKE_POLL`](crate::NEVER_WAKE_POLL). Deadlines are tokio's
//! (`tokio::time::timeout`): every future here may be dropped at any point.
//!
//! # Cancellation safety
//! | call | dropped before it completes |
//! |---|---|
//! | `AsyncReceiver::ready` | nothing taken; its registration is withdrawn by the drop |
//! | `AsyncReceiver::recv` (every kind) | cancel safe: a message is taken only in the poll that returns it, so a dropped future has taken none; registration withdrawn |
//! | `Stream::poll_next` | as `recv`; a stream that is dropped withdraws its registration |
//! | `AsyncSender::send` | the value is sent only in the poll that returns `Ok`: dropped before, it was not sent (and is dropped); registration withdrawn |
//! | `AsyncSender::<ByteSender>::claim` | no claim is made before the poll that returns it; registration withdrawn |
//! | `AsyncLatest::changed` | cancel safe: nothing is read before the poll that returns; registration withdrawn |
//!
//! Each endpoint holds one io_uring of 4 entries and one eventfd; make it inside a tokio
//! runtime with the `net` and `time` drivers enabled (`Builder::enable_all`).

// The sealed `room::Sealed` trait's methods name crate-private types; nothing outside the crate
// can name or call them (the trait lives in a private module).
#![allow(private_interfaces)]

mod latest;
mod send;
mod uring;

use std::{
    future::Future,
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use bytemuck::Pod;
pub use latest::{AsyncLatest, LatestSource};
pub use send::{AsyncSender, RoomSource};
pub use uring::FALLBACK_POLL;
use uring::UringWait;

use crate::{
    ByteReceiver, ByteRecvError, Consumer, PollSource, Receiver, RecvError, Subscriber,
    TryRecvError, TypedSubscriber,
    channel::{Inner, Local, PEER_CHECK, Peers, Side},
};

/// Turns of one poll before it yields to the runtime (a condition that holds while the
/// operation keeps failing, e.g. forged positions, cannot keep a worker thread busy).
const TURNS_PER_POLL: u32 = 64;

/// What a waiting endpoint saw of its peers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    Left,
    Died,
    Corrupt,
}

impl From<End> for RecvError {
    fn from(e: End) -> Self {
        match e {
            End::Left => Self::Disconnected,
            End::Died => Self::PeerDied,
            End::Corrupt => Self::Corrupt,
        }
    }
}

/// The waiting state shared by both sides: the kernel wait, the channel, the liveness timer.
struct Waiting {
    /// Declared first: fields drop in order, so the ring is closed before the channel handle.
    /// Not what memory safety rests on: closing an io_uring cancels its queued requests
    /// asynchronously (the kernel's ring-exit work), so the queued futex wait may outlive the
    /// mapping briefly; the kernel compared the word once when it queued the wait and from
    /// then on holds only the futex key (inode and page offset for a shared mapping), never
    /// the address (see `uring.rs`, `queue`).
    wait: UringWait,
    chan: Arc<Inner>,
    side: Side,
    /// When the peers are looked at next (`None`: after the first wait).
    next_check: Option<Instant>,
    waited: bool,
}

impl core::fmt::Debug for Waiting {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Waiting")
            .field("channel", &self.chan.name)
            .field("wait", &self.wait)
            .finish_non_exhaustive()
    }
}

impl Waiting {
    fn new(chan: Arc<Inner>, side: Side, io_uring: bool) -> io::Result<Self> {
        Ok(Self {
            wait: UringWait::new(io_uring)?,
            chan,
            side,
            next_check: None,
            waited: false,
        })
    }

    fn withdraw(&mut self) {
        let ev = match self.side {
            Side::Send => &self.chan.ev_space,
            Side::Recv => &self.chan.ev_data,
        };
        self.wait.withdraw(ev);
    }

    /// Whether the periodic look at the peers is due (only after a wait: the way into the
    /// first wait makes no syscall).
    fn check_due(&mut self, now: Instant) -> bool {
        if !self.waited || self.next_check.is_some_and(|t| now < t) {
            return false;
        }
        self.next_check = Some(now + PEER_CHECK);
        true
    }

    /// One wait for a notify, bounded by the next peer check and the never-waking poll.
    fn poll_wait(&mut self, cx: &mut Context<'_>, mut cond: impl FnMut() -> bool) -> Poll<()> {
        let now = Instant::now();
        let next = *self.next_check.get_or_insert(now + PEER_CHECK);
        let slice = next
            .saturating_duration_since(now)
            .min(self.chan.park_slice(self.side));
        let watch_never = slice > crate::NEVER_WAKE_POLL;
        let (chan, peer) = (&self.chan, self.side.peer());
        let ev = match self.side {
            Side::Send => &chan.ev_space,
            Side::Recv => &chan.ev_data,
        };
        let r = self
            .wait
            .poll_wait(cx, ev, slice.max(Duration::from_micros(100)), || {
                cond() || (watch_never && chan.never_wakers(peer) != 0)
            });
        if r.is_ready() {
            self.waited = true;
        }
        r
    }
}

/// An endpoint dropped while registered gives its registration back (a registration nobody
/// holds would cost every later notify a syscall).
impl Drop for Waiting {
    fn drop(&mut self) {
        self.withdraw();
    }
}

/// The liveness look of a waiting endpoint: what its blocking call would report now.
fn peers_end(local: &mut Local) -> Option<End> {
    match local.life.peers(&local.inner) {
        Peers::Corrupt(_) => Some(End::Corrupt),
        Peers::Died => Some(End::Died),
        Peers::Left => Some(End::Left),
        Peers::Live | Peers::NotYet => None,
    }
}

/// An async receiver of any kind: see the module docs.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use shmlane::{UnlinkPolicy, asynch::AsyncReceiver};
/// let name = format!("doc-async-{}", std::process::id());
/// let ch = shmlane::spsc::<u64>(&name).unlink(UnlinkPolicy::CreatorDrop).create()?;
/// let mut tx = ch.producer()?;
/// let mut rx = AsyncReceiver::new(ch.consumer()?)?;
/// tx.try_send(7)?; // any process
/// assert_eq!(rx.recv().await?, 7);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct AsyncReceiver<R: PollSource> {
    waiting: Waiting,
    rx: R,
    /// The byte receivers' `Stream` receives into this (sized to the largest message on its
    /// first item), then copies the message out.
    scratch: Vec<u8>,
}

impl<R: PollSource> AsyncReceiver<R> {
    /// Wraps `rx` (inside a tokio runtime with I/O and time enabled): an io_uring for its
    /// waits, or the 1 ms fallback where the kernel refuses it.
    pub fn new(rx: R) -> io::Result<Self> {
        Self::with_io_uring(rx, true)
    }

    /// As [`new`](Self::new); `io_uring: false` always takes the 1 ms timer fallback (for
    /// tests and comparisons).
    pub fn with_io_uring(rx: R, io_uring: bool) -> io::Result<Self> {
        let chan = rx.inner().clone();
        Ok(Self {
            waiting: Waiting::new(chan, Side::Recv, io_uring)?,
            rx,
            scratch: Vec::new(),
        })
    }

    /// Whether its waits go through io_uring (`false`: the 1 ms timer fallback).
    pub fn uses_io_uring(&self) -> bool {
        self.waiting.wait.uses_io_uring()
    }

    /// The receiver, for its non-blocking calls.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.rx
    }

    /// The receiver back (any registration withdrawn).
    pub fn into_inner(self) -> R {
        let Self { waiting, rx, .. } = self;
        drop(waiting);
        rx
    }

    /// Waits until the receiver has a message (`Ok`: its `try_recv` has one, unless another
    /// receiver of an MPMC channel took it first) or an end to report (`Err`: `Disconnected`,
    /// `PeerDied` once per death after what the dead sender completed, `Corrupt`). Takes
    /// nothing: cancel safe.
    pub fn ready(&mut self) -> ReadyFuture<'_, R> {
        ReadyFuture { rx: self }
    }

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), RecvError>> {
        for _ in 0..TURNS_PER_POLL {
            let rx = &mut self.rx;
            if rx.ready() {
                self.waiting.withdraw();
                return Poll::Ready(Ok(()));
            }
            let local = rx.local();
            if local.life.gone(&local.inner) {
                self.waiting.withdraw();
                if rx.ready() {
                    return Poll::Ready(Ok(()));
                }
                let end = if rx.local().life.ended() == Some(Peers::Died) {
                    RecvError::PeerDied
                } else {
                    RecvError::Disconnected
                };
                return Poll::Ready(Err(end));
            }
            if self.waiting.check_due(Instant::now()) {
                match peers_end(rx.local()) {
                    Some(End::Corrupt) => {
                        self.waiting.withdraw();
                        return Poll::Ready(Err(RecvError::Corrupt));
                    }
                    Some(end) => {
                        // The dead or departed senders' completed messages first.
                        if rx.recover() || rx.ready() {
                            self.waiting.withdraw();
                            return Poll::Ready(Ok(()));
                        }
                        let p = if end == End::Died {
                            Peers::Died
                        } else {
                            Peers::Left
                        };
                        rx.local().life.reported(p);
                        self.waiting.withdraw();
                        return Poll::Ready(Err(end.into()));
                    }
                    None => {
                        if rx.recover() {
                            continue;
                        }
                    }
                }
            }
            let rx = &mut self.rx;
            match self.waiting.poll_wait(cx, || rx.ready()) {
                Poll::Ready(()) => {}
                Poll::Pending => return Poll::Pending,
            }
        }
        // Many turns without progress: let the runtime run others, and come back.
        self.waiting.withdraw();
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// An endpoint that holds a wait registration.
trait Endpoint {
    fn waiting(&mut self) -> &mut Waiting;
}

impl<R: PollSource> Endpoint for AsyncReceiver<R> {
    fn waiting(&mut self) -> &mut Waiting {
        &mut self.waiting
    }
}

/// The future of every async call: polls `f` on the endpoint; dropped before it completed,
/// withdraws the endpoint's registration (so a cancelled call leaves none behind).
struct Op<'a, E: Endpoint, F> {
    ep: &'a mut E,
    f: F,
}

// No field is structurally pinned: `poll` only uses them through `&mut`.
impl<E: Endpoint, F> Unpin for Op<'_, E, F> {}

impl<E: Endpoint, T, F: FnMut(&mut E, &mut Context<'_>) -> Poll<T>> Future for Op<'_, E, F> {
    type Output = T;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let this = self.get_mut();
        (this.f)(this.ep, cx)
    }
}

impl<E: Endpoint, F> Drop for Op<'_, E, F> {
    fn drop(&mut self) {
        self.ep.waiting().withdraw();
    }
}

/// [`AsyncReceiver::ready`]'s future; dropping it withdraws the registration.
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct ReadyFuture<'a, R: PollSource> {
    rx: &'a mut AsyncReceiver<R>,
}

impl<R: PollSource> Future for ReadyFuture<'_, R> {
    type Output = Result<(), RecvError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.rx.poll_ready(cx)
    }
}

impl<R: PollSource> Drop for ReadyFuture<'_, R> {
    fn drop(&mut self) {
        self.rx.waiting.withdraw();
    }
}

// No field is structurally pinned: the futures here only ever take `&mut self`.
impl<R: PollSource> Unpin for AsyncReceiver<R> {}

/// The typed receivers' `recv` and `Stream`.
macro_rules! typed_recv {
    ($($t:ident),*) => {$(
        impl<T: Pod + Send> AsyncReceiver<$t<T>> {
            /// Receives the next message, waiting without a thread (see the module docs).
            /// `Err`: what the blocking `recv` reports (`Disconnected`, `PeerDied`, `Corrupt`).
            /// Cancel safe.
            pub async fn recv(&mut self) -> Result<T, RecvError> {
                Op { ep: self, f: |me: &mut Self, cx: &mut Context<'_>| me.poll_recv(cx) }.await
            }

            fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Result<T, RecvError>> {
                for _ in 0..TURNS_PER_POLL {
                    match self.rx.try_recv() {
                        Ok(v) => {
                            self.waiting.withdraw();
                            return Poll::Ready(Ok(v));
                        }
                        Err(TryRecvError::Empty) => {}
                        Err(TryRecvError::Disconnected) => {
                            self.waiting.withdraw();
                            return Poll::Ready(Err(RecvError::Disconnected));
                        }
                        Err(TryRecvError::Corrupt) => {
                            self.waiting.withdraw();
                            return Poll::Ready(Err(RecvError::Corrupt));
                        }
                    }
                    match self.poll_ready(cx) {
                        Poll::Ready(Ok(())) => {}
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        Poll::Pending => return Poll::Pending,
                    }
                }
                self.waiting.withdraw();
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        }

        /// Items: each message, or the end the blocking `recv` would report (`PeerDied`,
        /// `Corrupt`); `None` once the senders have left (`Disconnected`).
        impl<T: Pod + Send> futures_core::Stream for AsyncReceiver<$t<T>> {
            type Item = Result<T, RecvError>;
            fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
                // `AsyncReceiver` is `Unpin` (all its fields are).
                match self.get_mut().poll_recv(cx) {
                    Poll::Ready(Ok(v)) => Poll::Ready(Some(Ok(v))),
                    Poll::Ready(Err(RecvError::Disconnected)) => Poll::Ready(None),
                    Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    )*};
}

typed_recv!(Consumer, Receiver);

impl<T: Pod + Send> AsyncReceiver<TypedSubscriber<T>> {
    /// Receives the next value, waiting without a thread. `Err`: as the blocking `recv`
    /// (`Lapped` when it fell behind, `Disconnected`, `PeerDied`, `Corrupt`). Cancel safe.
    pub async fn recv(&mut self) -> Result<T, ByteRecvError> {
        Op {
            ep: self,
            f: |me: &mut Self, cx: &mut Context<'_>| me.poll_recv(cx),
        }
        .await
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Result<T, ByteRecvError>> {
        for _ in 0..TURNS_PER_POLL {
            match self.rx.try_recv() {
                Err(ByteRecvError::Empty) => {}
                other => {
                    self.waiting.withdraw();
                    return Poll::Ready(other);
                }
            }
            match self.poll_ready(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(byte_end(e))),
                Poll::Pending => return Poll::Pending,
            }
        }
        self.waiting.withdraw();
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// Items: each value, or what the blocking `recv` reports (`Lapped`, `PeerDied`, `Corrupt`);
/// `None` once the publisher has left (`Disconnected`).
impl<T: Pod + Send> futures_core::Stream for AsyncReceiver<TypedSubscriber<T>> {
    type Item = Result<T, ByteRecvError>;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.get_mut().poll_recv(cx) {
            Poll::Ready(Err(ByteRecvError::Disconnected)) => Poll::Ready(None),
            Poll::Ready(r) => Poll::Ready(Some(r)),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// A `ByteRecvError` for what `poll_ready` reported.
fn byte_end(e: RecvError) -> ByteRecvError {
    match e {
        RecvError::PeerDied => ByteRecvError::PeerDied,
        RecvError::Corrupt => ByteRecvError::Corrupt("the channel's headers or ring changed"),
        RecvError::Timeout => ByteRecvError::Timeout,
        RecvError::Disconnected => ByteRecvError::Disconnected,
    }
}

/// The byte receivers' `recv` into a buffer.
macro_rules! byte_recv {
    ($($t:ident),*) => {$(
        impl AsyncReceiver<$t> {
            /// Receives the next message into `buf` (its length), waiting without a thread.
            /// `Err`: as the blocking `recv` (`Lapped` on a broadcast subscriber that fell
            /// behind, `BufferTooSmall` losing nothing, `Disconnected`, `PeerDied`, `Corrupt`).
            /// Cancel safe.
            pub async fn recv(&mut self, buf: &mut [u8]) -> Result<usize, ByteRecvError> {
                let f = |me: &mut Self, cx: &mut Context<'_>| me.poll_recv_into(cx, buf);
                Op { ep: self, f }.await
            }

            fn poll_recv_into(
                &mut self,
                cx: &mut Context<'_>,
                buf: &mut [u8],
            ) -> Poll<Result<usize, ByteRecvError>> {
                let me = self;
                    for _ in 0..TURNS_PER_POLL {
                        match me.rx.try_recv(buf) {
                            Err(ByteRecvError::Empty) => {}
                            other => {
                                me.waiting.withdraw();
                                return Poll::Ready(other);
                            }
                        }
                        match me.poll_ready(cx) {
                            Poll::Ready(Ok(())) => {}
                            Poll::Ready(Err(e)) => return Poll::Ready(Err(byte_end(e))),
                            Poll::Pending => return Poll::Pending,
                        }
                    }
                    me.waiting.withdraw();
                    cx.waker().wake_by_ref();
                    Poll::Pending
            }
        }

        /// Items: each message as a `Vec` (one allocation per message: for a receive without
        /// one, use `recv` into your buffer), or what the blocking `recv` reports (`Lapped`,
        /// `PeerDied`, `Corrupt`); `None` once the senders have left (`Disconnected`).
        impl futures_core::Stream for AsyncReceiver<$t> {
            type Item = Result<Vec<u8>, ByteRecvError>;
            fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
                let me = self.get_mut();
                let mut scratch = core::mem::take(&mut me.scratch);
                if scratch.is_empty() {
                    scratch.resize(me.rx.max_message().max(1), 0);
                }
                let r = me.poll_recv_into(cx, &mut scratch);
                let out = match r {
                    Poll::Ready(Ok(n)) => Poll::Ready(Some(Ok(scratch[..n].to_vec()))),
                    Poll::Ready(Err(ByteRecvError::Disconnected)) => Poll::Ready(None),
                    Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
                    Poll::Pending => Poll::Pending,
                };
                me.scratch = scratch;
                out
            }
        }
    )*};
}

byte_recv!(ByteReceiver, Subscriber);
