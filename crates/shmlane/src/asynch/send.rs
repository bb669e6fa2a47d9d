//! The async senders: [`AsyncSender`] awaits room in a full ring (typed `send`, byte `send`
//! and `claim`). See the parent module for the mechanism, bounds and cancellation.

use std::{
    io,
    task::{Context, Poll},
    time::Instant,
};

use bytemuck::Pod;

use super::{End, Endpoint, Op, TURNS_PER_POLL, Waiting, peers_end};
use crate::{
    ByteClaim, ByteSendError, ByteSender, Producer, SendError, Sender, TrySendError,
    channel::{HasRoom, Local, Peers, Side},
};

impl<S: RoomSource> Endpoint for AsyncSender<S> {
    fn waiting(&mut self) -> &mut Waiting {
        &mut self.waiting
    }
}

/// A sender that can wait for room (sealed: shmlane's senders only).
pub trait RoomSource: room::Sealed {}

mod room {
    pub trait Sealed {
        fn local(&mut self) -> &mut super::Local;
        /// Room for a message of `need` bytes (typed channels: one element), or corrupt
        /// positions the next try reports.
        fn has_room(&mut self, need: usize) -> bool;
    }
}

impl<T: Pod + Send> room::Sealed for Producer<T> {
    fn local(&mut self) -> &mut Local {
        &mut self.local
    }
    fn has_room(&mut self, _: usize) -> bool {
        HasRoom::has_room(&mut *self.ring, 1)
    }
}
impl<T: Pod + Send> RoomSource for Producer<T> {}

impl<T: Pod + Send> room::Sealed for Sender<T> {
    fn local(&mut self) -> &mut Local {
        &mut self.local
    }
    fn has_room(&mut self, _: usize) -> bool {
        HasRoom::has_room(&mut *self.ring, 1)
    }
}
impl<T: Pod + Send> RoomSource for Sender<T> {}

impl room::Sealed for ByteSender {
    fn local(&mut self) -> &mut Local {
        &mut self.local
    }
    fn has_room(&mut self, need: usize) -> bool {
        let extra = if self.local.inner.checksum {
            crate::channel::CHECKSUM_BYTES
        } else {
            0
        };
        self.ring.has_room(need + extra)
    }
}
impl RoomSource for ByteSender {}

/// An async sender: awaits room in a full ring without a thread (see the module docs).
#[derive(Debug)]
pub struct AsyncSender<S: RoomSource> {
    waiting: Waiting,
    tx: S,
}

impl<S: RoomSource> AsyncSender<S> {
    /// Wraps `tx` (inside a tokio runtime with I/O and time enabled).
    pub fn new(tx: S) -> io::Result<Self> {
        Self::with_io_uring(tx, true)
    }

    /// As [`new`](Self::new); `io_uring: false` always takes the 1 ms timer fallback.
    pub fn with_io_uring(mut tx: S, io_uring: bool) -> io::Result<Self> {
        let chan = room::Sealed::local(&mut tx).inner.clone();
        Ok(Self {
            waiting: Waiting::new(chan, Side::Send, io_uring)?,
            tx,
        })
    }

    /// Whether its waits go through io_uring.
    pub fn uses_io_uring(&self) -> bool {
        self.waiting.wait.uses_io_uring()
    }

    /// The sender, for its non-blocking calls.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.tx
    }

    /// The sender back (any registration withdrawn).
    pub fn into_inner(self) -> S {
        let Self { waiting, tx } = self;
        drop(waiting);
        tx
    }

    /// Waits for room for `need` bytes, or the end the blocking `send` would report. `after`:
    /// the operation just failed although there looked to be room (a wrap's padding, another
    /// sender first): wait for the next notify (or the slice) before looking again.
    fn poll_room(
        &mut self,
        cx: &mut Context<'_>,
        need: usize,
        after: &mut bool,
    ) -> Poll<Result<(), End>> {
        for _ in 0..TURNS_PER_POLL {
            let tx = &mut self.tx;
            if !*after && tx.has_room(need) {
                self.waiting.withdraw();
                return Poll::Ready(Ok(()));
            }
            if self.waiting.check_due(Instant::now()) {
                let local = room::Sealed::local(tx);
                if let Some(end) = peers_end(local) {
                    self.waiting.withdraw();
                    if end != End::Corrupt {
                        let p = if end == End::Died {
                            Peers::Died
                        } else {
                            Peers::Left
                        };
                        local.life.reported(p);
                    }
                    return Poll::Ready(Err(end));
                }
            }
            let tx = &mut self.tx;
            let first = !*after;
            match self.waiting.poll_wait(cx, || first && tx.has_room(need)) {
                Poll::Ready(()) => *after = false,
                Poll::Pending => return Poll::Pending,
            }
        }
        self.waiting.withdraw();
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// A `SendError` for what `poll_room` reported.
fn send_end<T>(e: End, v: T) -> SendError<T> {
    match e {
        End::Left => SendError::Disconnected(v),
        End::Died => SendError::PeerDied(v),
        End::Corrupt => SendError::Corrupt(v),
    }
}

macro_rules! typed_send {
    ($($t:ident),*) => {$(
        impl<T: Pod + Send> AsyncSender<$t<T>> {
            /// Sends `value`, awaiting room while the ring is full. `Err` gives the value back
            /// (`Disconnected`, `PeerDied`, `Corrupt`, as the blocking `send`). Dropped before it
            /// completes, the value was not sent.
            pub async fn send(&mut self, value: T) -> Result<(), SendError<T>> {
                let mut v = Some(value);
                let f = move |me: &mut Self, cx: &mut Context<'_>| {
                    for _ in 0..TURNS_PER_POLL {
                        let value = v.take().expect("polled after completion");
                        match me.tx.try_send(value) {
                            Ok(()) => {
                                me.waiting.withdraw();
                                return Poll::Ready(Ok(()));
                            }
                            Err(TrySendError::Full(back)) => v = Some(back),
                            Err(TrySendError::Disconnected(back)) => {
                                me.waiting.withdraw();
                                return Poll::Ready(Err(SendError::Disconnected(back)));
                            }
                            Err(TrySendError::Corrupt(back)) => {
                                me.waiting.withdraw();
                                return Poll::Ready(Err(SendError::Corrupt(back)));
                            }
                        }
                        match me.poll_room(cx, 1, &mut false) {
                            Poll::Ready(Ok(())) => {}
                            Poll::Ready(Err(e)) => {
                                let back = v.take().expect("kept while waiting");
                                return Poll::Ready(Err(send_end(e, back)));
                            }
                            Poll::Pending => return Poll::Pending,
                        }
                    }
                    me.waiting.withdraw();
                    cx.waker().wake_by_ref();
                    Poll::Pending
                };
                Op { ep: self, f }.await
            }
        }
    )*};
}

typed_send!(Producer, Sender);

/// A `ByteSendError` for what `poll_room` reported.
fn byte_send_end(e: End) -> ByteSendError {
    match e {
        End::Left => ByteSendError::Disconnected,
        End::Died => ByteSendError::PeerDied,
        End::Corrupt => ByteSendError::Corrupt,
    }
}

impl AsyncSender<ByteSender> {
    /// Sends `msg`, awaiting room while the ring is full (`Err`: as the blocking `send`).
    /// Dropped before it completes, nothing was sent.
    pub async fn send(&mut self, msg: &[u8]) -> Result<(), ByteSendError> {
        let f = |me: &mut Self, cx: &mut Context<'_>| {
            for _ in 0..TURNS_PER_POLL {
                match me.tx.try_send(msg) {
                    Err(ByteSendError::Full) => {}
                    other => {
                        me.waiting.withdraw();
                        return Poll::Ready(other);
                    }
                }
                match me.poll_room(cx, msg.len(), &mut false) {
                    Poll::Ready(Ok(())) => {}
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(byte_send_end(e))),
                    Poll::Pending => return Poll::Pending,
                }
            }
            me.waiting.withdraw();
            cx.waker().wake_by_ref();
            Poll::Pending
        };
        Op { ep: self, f }.await
    }

    /// Claims room for a record of `len` bytes, awaiting room while the ring is full; write it
    /// in place, then `commit` (or `abort`). `Err`: as `ByteSender::claim` (`TooLong`,
    /// `ChecksumClaim`) and the blocking `send` (`Disconnected`, `PeerDied`, `Corrupt`). No
    /// claim is made before the poll that returns it: cancel safe.
    pub async fn claim(&mut self, len: usize) -> Result<ByteClaim<'_>, ByteSendError> {
        let mut after = false;
        loop {
            let f = |me: &mut Self, cx: &mut Context<'_>| me.poll_room(cx, len, &mut after);
            Op { ep: &mut *self, f }.await.map_err(byte_send_end)?;
            let tx: *mut ByteSender = &raw mut self.tx;
            // SAFETY: `tx` points to `self.tx`, borrowed mutably through `self` for this whole
            // call; the claim's borrow is either returned (ending the loop) or, on `Full`,
            // dropped before the next use of `self` (the borrow checker's "conditional return
            // of a borrow in a loop" limitation, nothing more).
            match unsafe { &mut *tx }.claim(len) {
                // Room looked free but was not (a wrap's padding, another sender first):
                // wait for the next notify before trying again.
                Err(ByteSendError::Full) => after = true,
                r => return r,
            }
        }
    }
}
