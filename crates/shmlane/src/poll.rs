//! A pollable file descriptor for receivers: an event loop (`poll(2)`, epoll, libuv, mio, an
//! audio host's loop) waits on it instead of blocking in `recv`.
//!
//! # Mechanism
//! Senders in other processes keep notifying the channel's `ev-data` futex event as always;
//! nothing about them changes and no descriptor crosses a process boundary. In the receiver's
//! process a watcher thread (one per [`RecvPoll`]) turns that event into an eventfd:
//!
//! ```text
//! receiver thread: rearm()                     watcher thread (only while armed)
//!   clear the eventfd                            wait_seq(seen, <= PEER_CHECK)  (futex)
//!   data?  -> signal the eventfd, Ready          seq != seen           -> fire
//!   peers reportable? -> Err(PeerDied | ...)     every PEER_CHECK: the senders' attachments
//!   seen = ev.seq()                                changed (one died, left, joined), the headers
//!   ev.register(flag) + SeqCst fence             changed, or positions say "not empty" -> fire
//!   data? -> unregister, signal, Ready         fire: unregister, disarm, signal the eventfd
//!   hand `seen` to the watcher, Waiting
//! ```
//!
//! No lost wake-up: `seen` is read before the registration, and the registration and re-check
//! are `Event::register`'s Dekker pair with the sender's notify (`F_WAIT` / `F_NOTIFY`, the
//! `wake_register_fence` loom model). A message published after the re-check is announced by a
//! notify that sees the registration, so it moves `seq` past `seen`: the watcher's futex wait on
//! `seen` returns at once (the kernel compares and queues atomically with the wake), or the
//! watcher, not yet waiting, sees `seq != seen` first. A message published before the re-check
//! is seen by it. So either `rearm` says `Ready` (and the eventfd is readable) or the watcher
//! fires.
//!
//! No cost for senders while the receiver drains: the watcher holds its registration as a
//! sleeper only between `rearm` (Waiting) and its firing; it withdraws it before it signals the
//! eventfd, so while the loop drains, a send's notify is a fence and a load (no futex syscall).
//!
//! Bounds: every wait of the watcher is bounded (`PEER_CHECK`, 50 ms, armed; `IDLE_WAIT`, 1 s,
//! idle on a process-local condvar). Dropping a [`RecvPoll`] (or a [`Pollable`]) wakes the
//! watcher (a notify of the event, which its registration makes a futex wake, and the condvar)
//! and joins it: it returns after at most one attachment-table scan, and in any case within
//! `PEER_CHECK` plus a scan. The eventfd is closed with it.
//!
//! Hostile peers: the watcher reads shared memory only through atomics (the event's words, the
//! attachment table, the ring's position words) and only compares what it reads: a forged value
//! makes the descriptor readable when nothing is there (the following `try_recv` says `Empty`
//! or `Corrupt`), at most once per `PEER_CHECK` for forged tables and positions.

// The sealed `Source` trait's methods name crate-private types; nothing outside the crate can
// name or call them (the trait lives in a private module).
#![allow(private_interfaces)]

use std::{
    io,
    os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd},
    sync::{
        Arc, Condvar, Mutex, MutexGuard,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use bytemuck::Pod;
use shmlane_wake::{Deadline, PollableEvent, eventfd_clear, eventfd_signal};

use crate::{
    ByteReceiver, Consumer, ROLE_SENDER, Receiver, Subscriber, TypedSubscriber,
    channel::{Inner, Local, Peers, ring_unread},
};

/// While armed, the watcher re-checks the senders' attachments (and wakes) at least this often:
/// a sender's death makes the descriptor readable within this time.
pub const POLL_PEER_CHECK: Duration = Duration::from_millis(50);
/// While disarmed, the watcher's bounded wait on its process-local condvar.
const IDLE_WAIT: Duration = Duration::from_secs(1);

/// What [`RecvPoll::rearm`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Armed {
    /// Nothing to receive: armed. The descriptor becomes readable when a message arrives or the
    /// senders change (one died or left).
    Waiting,
    /// Something arrived since the last `Empty`: the descriptor was made readable again at
    /// once (drain again; the loop may also just go back to its poll, which returns at once).
    Ready,
}

/// Why [`RecvPoll::rearm`] did not arm: what a blocking `recv` would report now (the ring is
/// drained). Nothing is armed and the descriptor is not readable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RearmError {
    /// Every sender left cleanly (`PeersLeave::Disconnect` mode): final.
    #[error("every sender has left and the channel is drained")]
    Disconnected,
    /// A sender process died and no live sender remains (reported once per death; in `Wait`
    /// mode the next `rearm` arms again, in `Disconnect` mode it is final).
    #[error("peer gone: a sender process died")]
    PeerDied,
    /// The channel's headers changed under it: corrupt.
    #[error("channel is corrupt: {0}")]
    Corrupt(&'static str),
    /// The receiver passed is not on the channel this poll handle was made for.
    #[error("this receiver is not on the channel the poll handle was made for")]
    WrongReceiver,
}

pub(crate) mod sealed {
    use super::{Inner, Local};
    use std::sync::Arc;

    /// What the poll handle needs from a receiver (sealed: implemented for shmlane's
    /// receivers only).
    pub trait Source {
        /// The receiver's channel.
        fn inner(&self) -> &Arc<Inner>;
        /// The receiver's endpoint state (peers seen, deaths reported).
        fn local(&mut self) -> &mut Local;
        /// Whether a `try_recv` would make progress now (data, or a state it reports): the
        /// condition a blocked `recv` waits for.
        fn ready(&mut self) -> bool;
        /// MPMC: skips a position a dead sender left unfilled at the head (counted lost);
        /// whether one was skipped.
        fn recover(&mut self) -> bool {
            false
        }
    }
}

/// A receiver a [`RecvPoll`] can watch: [`Consumer`], [`Receiver`], [`ByteReceiver`],
/// [`Subscriber`], [`TypedSubscriber`], and the run-time [`RawConsumer`](crate::RawConsumer),
/// [`RawReceiver`](crate::RawReceiver).
pub trait PollSource: sealed::Source {}

impl<T: Pod + Send> sealed::Source for Consumer<T> {
    fn inner(&self) -> &Arc<Inner> {
        &self.local.inner
    }
    fn local(&mut self) -> &mut Local {
        &mut self.local
    }
    fn ready(&mut self) -> bool {
        // As the blocked `recv`'s condition: data, or corrupt positions (try_recv reports them).
        !matches!(
            self.ring.read_chunk(1),
            Err(shmlane_ring::ChunkError::TooFewSlots(_))
        )
    }
}
impl<T: Pod + Send> PollSource for Consumer<T> {}

impl<T: Pod + Send> sealed::Source for Receiver<T> {
    fn inner(&self) -> &Arc<Inner> {
        &self.local.inner
    }
    fn local(&mut self) -> &mut Local {
        &mut self.local
    }
    fn ready(&mut self) -> bool {
        // The stamp at the head, not the positions: a position taken and not yet published
        // is not data.
        self.ring.can_pop()
    }
    fn recover(&mut self) -> bool {
        Receiver::recover(self)
    }
}
impl<T: Pod + Send> PollSource for Receiver<T> {}

impl sealed::Source for ByteReceiver {
    fn inner(&self) -> &Arc<Inner> {
        &self.local.inner
    }
    fn local(&mut self) -> &mut Local {
        &mut self.local
    }
    fn ready(&mut self) -> bool {
        // Committed or padding at the head; a pending claim is not (the watcher's periodic
        // "positions not empty" check fires for it, so `try_recv` can skip a stalled one).
        self.ring.is_ready()
    }
}
impl PollSource for ByteReceiver {}

impl sealed::Source for Subscriber {
    fn inner(&self) -> &Arc<Inner> {
        &self.local.inner
    }
    fn local(&mut self) -> &mut Local {
        &mut self.local
    }
    fn ready(&mut self) -> bool {
        // A message held for a larger buffer (checksummed channel) is ready too.
        self.holds_message() || self.ring.is_ready()
    }
}
impl PollSource for Subscriber {}

impl<T: Pod + Send> sealed::Source for TypedSubscriber<T> {
    fn inner(&self) -> &Arc<Inner> {
        sealed::Source::inner(&self.inner)
    }
    fn local(&mut self) -> &mut Local {
        sealed::Source::local(&mut self.inner)
    }
    fn ready(&mut self) -> bool {
        sealed::Source::ready(&mut self.inner)
    }
}
impl<T: Pod + Send> PollSource for TypedSubscriber<T> {}

impl sealed::Source for crate::RawSubscriber {
    fn inner(&self) -> &Arc<Inner> {
        sealed::Source::inner(&self.inner)
    }
    fn local(&mut self) -> &mut Local {
        sealed::Source::local(&mut self.inner)
    }
    fn ready(&mut self) -> bool {
        sealed::Source::ready(&mut self.inner)
    }
}
impl PollSource for crate::RawSubscriber {}

impl sealed::Source for crate::RawConsumer {
    fn inner(&self) -> &Arc<Inner> {
        &self.local.inner
    }
    fn local(&mut self) -> &mut Local {
        &mut self.local
    }
    fn ready(&mut self) -> bool {
        // As `Consumer`'s: data, or corrupt positions (try_recv reports them).
        !matches!(
            self.ring.read_chunk(1),
            Err(shmlane_ring::ChunkError::TooFewSlots(_))
        )
    }
}
impl PollSource for crate::RawConsumer {}

impl sealed::Source for crate::RawReceiver {
    fn inner(&self) -> &Arc<Inner> {
        &self.local.inner
    }
    fn local(&mut self) -> &mut Local {
        &mut self.local
    }
    fn ready(&mut self) -> bool {
        // As `Receiver`'s: the stamp at the head.
        self.ring.can_pop()
    }
    fn recover(&mut self) -> bool {
        crate::RawReceiver::recover(self)
    }
}
impl PollSource for crate::RawReceiver {}

/// The senders' attachments (slot, pid, alive) and whether the headers are intact: the
/// watcher fires when this differs from what it was when the receiver last checked its peers.
type Sig = (Vec<(u32, u32, bool)>, bool);

fn peer_sig(inner: &Inner) -> Sig {
    let table = inner
        .seg
        .attachments()
        .into_iter()
        .filter(|a| a.role & ROLE_SENDER != 0)
        .map(|a| (a.slot, a.pid, a.alive))
        .collect();
    (table, inner.intact().is_ok())
}

/// Whether the ring's positions say something is there (committed or not).
fn positions_unread(inner: &Inner) -> bool {
    let (ptr, len) = inner.ring;
    // SAFETY: the ring region was checked at open (aligned, `len` bytes) and lives as long as
    // `inner`'s segment; its words are read atomically.
    unsafe { ring_unread(inner.kind, ptr, len, u64::MAX) != 0 }
}

struct State {
    /// `Some(seen)`: armed, waiting for the event's `seq` to move past `seen`.
    armed: Option<u32>,
    /// The senders' signature when the receiver last checked its peers.
    sig: Sig,
    stop: bool,
}

struct Shared {
    inner: Arc<Inner>,
    fd: OwnedFd,
    /// Whether this poll handle holds one count in `ev-data`'s sleepers (process-local).
    registered: AtomicBool,
    /// Set by the watcher when the senders' signature changed: the next `rearm` checks its
    /// peers (syscalls) and may report.
    peers_moved: AtomicBool,
    stop: AtomicBool,
    state: Mutex<State>,
    cv: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state inconsistent (plain fields).
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn signal(&self) {
        // An eventfd write fails only on a saturated counter (readable anyway, not an error
        // for `eventfd_signal`) or a bad descriptor (ours, open until drop).
        let _ = eventfd_signal(&self.fd);
    }
}

/// The watcher thread: idle on the condvar while disarmed; armed, a bounded futex wait on the
/// event's sequence word, then fire.
fn watch(sh: &Shared) {
    let ev = &sh.inner.ev_data;
    loop {
        let (seen, sig) = {
            let mut st = sh.lock();
            loop {
                if st.stop {
                    return;
                }
                if let Some(seen) = st.armed {
                    break (seen, st.sig.clone());
                }
                st = sh
                    .cv
                    .wait_timeout(st, IDLE_WAIT)
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .0;
            }
        };
        let mut next = Instant::now() + POLL_PEER_CHECK;
        let fire = loop {
            // ORDERING: Acquire; pairs with the Release store in `RecvPoll::drop`.
            if sh.stop.load(Ordering::Acquire) {
                break false;
            }
            if ev.seq() != seen {
                break true;
            }
            let now = Instant::now();
            if now >= next {
                if peer_sig(&sh.inner) != sig {
                    // ORDERING: Release; pairs with the Acquire swap in `rearm` (a flag only).
                    sh.peers_moved.store(true, Ordering::Release);
                    break true;
                }
                if positions_unread(&sh.inner) {
                    break true;
                }
                next = now + POLL_PEER_CHECK;
            }
            // A never-waking sender (`Wakes::Never`) sends without a notify: look at the ring
            // every `NEVER_WAKE_POLL` while one is attached.
            let mut until = next.saturating_duration_since(now);
            if sh.inner.never_wakers(crate::channel::Side::Send) != 0 {
                if positions_unread(&sh.inner) {
                    break true;
                }
                until = until.min(crate::NEVER_WAKE_POLL);
            }
            ev.wait_seq(seen, &Deadline::after(until));
        };
        // Withdraw the registration first: while the loop drains, sends make no syscall.
        ev.unregister(&sh.registered);
        // Disarm before signalling, so a `rearm` after the loop sees the descriptor arms again.
        sh.lock().armed = None;
        if !fire {
            return;
        }
        sh.signal();
    }
}

/// A pollable descriptor for one receiver (see the module docs for the mechanism): readable
/// when the receiver has something to receive, or its senders changed (a `try_recv` or
/// [`rearm`](Self::rearm) then reports it).
///
/// Usage: `poll` readable -> `try_recv` until `Empty` -> [`rearm`](Self::rearm) (explicit:
/// it clears the descriptor, then arms it, or says `Ready` and leaves it readable if something
/// arrived meanwhile). A new handle starts disarmed: call `rearm` once before the first poll.
/// Holds one watcher thread and one eventfd, both released by drop.
///
/// ```
/// use std::os::fd::AsRawFd;
/// use shmlane::{Armed, Pollable, UnlinkPolicy};
///
/// let name = format!("doc-poll-{}", std::process::id());
/// let ch = shmlane::spsc::<u64>(&name).unlink(UnlinkPolicy::CreatorDrop).create()?;
/// let mut tx = ch.producer()?;
/// let mut rx = Pollable::new(ch.consumer()?)?;
/// assert_eq!(rx.rearm()?, Armed::Waiting); // nothing there: armed
/// tx.try_send(7)?; // any process
/// let mut pfd = libc::pollfd { fd: rx.as_raw_fd(), events: libc::POLLIN, revents: 0 };
/// // SAFETY: one valid pollfd.
/// assert_eq!(unsafe { libc::poll(&raw mut pfd, 1, 5_000) }, 1);
/// while let Ok(v) = rx.try_recv() {
///     assert_eq!(v, 7);
/// }
/// rx.rearm()?; // drained: clear and arm again
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct RecvPoll {
    shared: Arc<Shared>,
    watcher: Option<JoinHandle<()>>,
    /// The next `rearm` checks the receiver's peers (first time; after a watcher saw them
    /// change; after a report was held back for data).
    check_peers: bool,
}

impl core::fmt::Debug for RecvPoll {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RecvPoll")
            .field("channel", &self.shared.inner.name)
            .field("fd", &self.shared.fd.as_raw_fd())
            .finish_non_exhaustive()
    }
}

impl RecvPoll {
    /// A poll handle for `rx` (disarmed): a non-blocking close-on-exec eventfd and a watcher
    /// thread. Errors: the eventfd or the thread could not be made.
    pub fn new<R: PollSource>(rx: &R) -> io::Result<Self> {
        let fd = PollableEvent::eventfd()?;
        let shared = Arc::new(Shared {
            inner: rx.inner().clone(),
            fd,
            registered: AtomicBool::new(false),
            peers_moved: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            state: Mutex::new(State {
                armed: None,
                sig: (Vec::new(), true),
                stop: false,
            }),
            cv: Condvar::new(),
        });
        let sh = shared.clone();
        let watcher = std::thread::Builder::new()
            .name("shmlane-poll".into())
            .spawn(move || watch(&sh))?;
        Ok(Self {
            shared,
            watcher: Some(watcher),
            check_peers: true,
        })
    }

    /// Whether the watcher is armed (waiting for a message or a peer change).
    pub fn is_armed(&self) -> bool {
        self.shared.lock().armed.is_some()
    }

    /// Clears the descriptor and arms it, after the loop drained `rx` (`try_recv` said
    /// `Empty`). `Ok(Waiting)`: armed, poll again. `Ok(Ready)`: something arrived since (or
    /// `rx` was not drained): the descriptor is readable already, drain again. `Err`: the end
    /// or a death a blocking `recv` would report now (reported here once, as `recv` does;
    /// nothing armed). Already armed: `Ok(Waiting)`, nothing changes. Never blocks; makes a few
    /// syscalls (the eventfd read, a condvar wake, and after a peer change the attachment scan).
    pub fn rearm<R: PollSource>(&mut self, rx: &mut R) -> Result<Armed, RearmError> {
        let sh = &*self.shared;
        if !Arc::ptr_eq(rx.inner(), &sh.inner) {
            return Err(RearmError::WrongReceiver);
        }
        let mut st = sh.lock();
        if st.armed.is_some() {
            return Ok(Armed::Waiting);
        }
        eventfd_clear(&sh.fd);
        if rx.ready() {
            sh.signal();
            return Ok(Armed::Ready);
        }
        let inner = &sh.inner;
        // Disconnect mode's end (clean leaves, by the shared count; or reported already).
        if rx.local().life.gone(inner) {
            return Err(match rx.local().life.ended() {
                Some(Peers::Died) => RearmError::PeerDied,
                _ => RearmError::Disconnected,
            });
        }
        // ORDERING: Acquire; pairs with the watcher's Release store (a flag only).
        if sh.peers_moved.swap(false, Ordering::Acquire) || self.check_peers {
            // The signature first: a change after it is the watcher's to see.
            let sig = peer_sig(inner);
            let peers = rx.local().life.peers(inner);
            match peers {
                Peers::Corrupt(why) => return Err(RearmError::Corrupt(why)),
                Peers::Died | Peers::Left => {
                    // What the dead or departed senders completed is delivered first (a dead
                    // MPMC sender's hole skipped), then the report.
                    if rx.recover() || rx.ready() {
                        self.check_peers = true;
                        sh.signal();
                        return Ok(Armed::Ready);
                    }
                    rx.local().life.reported(peers);
                    // The death is reported: the watcher compares with the table as it is now.
                    st.sig = sig;
                    self.check_peers = false;
                    return Err(if peers == Peers::Died {
                        RearmError::PeerDied
                    } else {
                        RearmError::Disconnected
                    });
                }
                Peers::Live | Peers::NotYet => {}
            }
            st.sig = sig;
            self.check_peers = false;
        }
        // Read before registering (as `Event::wait` parks): a notify after the registration
        // moves `seq` past it.
        let ev = &inner.ev_data;
        let seen = ev.seq();
        #[cfg(test)]
        tests::between_check_and_register();
        if ev.register(&sh.registered, || rx.ready()) {
            sh.signal();
            return Ok(Armed::Ready);
        }
        #[cfg(test)]
        tests::after_register();
        st.armed = Some(seen);
        drop(st);
        sh.cv.notify_one();
        Ok(Armed::Waiting)
    }
}

impl AsFd for RecvPoll {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.shared.fd.as_fd()
    }
}

impl AsRawFd for RecvPoll {
    fn as_raw_fd(&self) -> RawFd {
        self.shared.fd.as_raw_fd()
    }
}

impl Drop for RecvPoll {
    /// Stops and joins the watcher (see the module docs for the bound); the eventfd closes.
    fn drop(&mut self) {
        let sh = &*self.shared;
        // ORDERING: Release; pairs with the watcher's Acquire load.
        sh.stop.store(true, Ordering::Release);
        sh.lock().stop = true;
        sh.cv.notify_all();
        // An armed watcher waits on the event's futex: its registration makes this notify a
        // bump and a FUTEX_WAKE (spurious for any other sleeper, which re-checks).
        sh.inner.ev_data.notify();
        if let Some(w) = self.watcher.take() {
            let _ = w.join();
        }
        sh.inner.ev_data.unregister(&sh.registered);
    }
}

/// A receiver together with its [`RecvPoll`]: dropping it stops the watcher and drops the
/// receiver. Derefs to the receiver (`try_recv` and the rest).
pub struct Pollable<R: PollSource> {
    // Declared first: the watcher stops before the receiver leaves the channel.
    poll: RecvPoll,
    rx: R,
}

impl<R: PollSource> core::fmt::Debug for Pollable<R> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Pollable")
            .field("poll", &self.poll)
            .finish_non_exhaustive()
    }
}

impl<R: PollSource> Pollable<R> {
    /// Wraps `rx` with a new poll handle (disarmed: call [`rearm`](Self::rearm) first).
    pub fn new(rx: R) -> io::Result<Self> {
        Ok(Self {
            poll: RecvPoll::new(&rx)?,
            rx,
        })
    }

    /// [`RecvPoll::rearm`] for the wrapped receiver.
    pub fn rearm(&mut self) -> Result<Armed, RearmError> {
        self.poll.rearm(&mut self.rx)
    }

    /// The poll handle.
    pub fn poll(&self) -> &RecvPoll {
        &self.poll
    }

    /// Stops the watcher and gives the receiver back.
    pub fn into_inner(self) -> R {
        let Self { poll, rx } = self;
        drop(poll);
        rx
    }
}

impl<R: PollSource> core::ops::Deref for Pollable<R> {
    type Target = R;
    fn deref(&self) -> &R {
        &self.rx
    }
}

impl<R: PollSource> core::ops::DerefMut for Pollable<R> {
    fn deref_mut(&mut self) -> &mut R {
        &mut self.rx
    }
}

impl<R: PollSource> AsFd for Pollable<R> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.poll.as_fd()
    }
}

impl<R: PollSource> AsRawFd for Pollable<R> {
    fn as_raw_fd(&self) -> RawFd {
        self.poll.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use std::{cell::RefCell, os::fd::AsRawFd};

    use super::{Armed, Pollable};
    use crate::UnlinkPolicy;

    thread_local! {
        /// Run by `rearm` between its first look at the ring and its registration.
        static BETWEEN: RefCell<Option<Box<dyn FnMut()>>> = RefCell::new(None);
    }

    thread_local! {
        /// Run by `rearm` after its registration and re-check, before it hands `seen` over.
        static AFTER: RefCell<Option<Box<dyn FnMut()>>> = RefCell::new(None);
    }

    pub(super) fn between_check_and_register() {
        BETWEEN.with(|b| {
            if let Some(f) = b.borrow_mut().as_mut() {
                f();
            }
        });
    }

    pub(super) fn after_register() {
        AFTER.with(|b| {
            if let Some(f) = b.borrow_mut().as_mut() {
                f();
            }
        });
    }

    /// A message sent after `rearm`'s registration and re-check (before the watcher even got
    /// `seen`): its notify finds the registration and moves `seq`; the watcher must fire at
    /// once from the `seen` read *before* the registration (read after it, `seen` would already
    /// include the bump and only the 50 ms periodic check would fire).
    #[test]
    fn a_message_sent_just_after_the_registration_fires_at_once() {
        let name = format!("poll-unit-after-{}", std::process::id());
        let ch = crate::spsc::<u64>(&name)
            .capacity(8)
            .unlink(UnlinkPolicy::CreatorDrop)
            .create()
            .unwrap();
        let mut tx = ch.producer().unwrap();
        let mut rx = Pollable::new(ch.consumer().unwrap()).unwrap();
        let fd = rx.as_raw_fd();
        for round in 0..3u64 {
            let mut once = Some(());
            let tx_ptr: *mut crate::Producer<u64> = &raw mut tx;
            AFTER.with(|b| {
                *b.borrow_mut() = Some(Box::new(move || {
                    if once.take().is_some() {
                        // SAFETY: as in the test above.
                        let tx = unsafe { &mut *tx_ptr };
                        tx.try_send(round).unwrap();
                    }
                }));
            });
            let armed = rx.rearm().unwrap();
            AFTER.with(|b| *b.borrow_mut() = None);
            assert_eq!(armed, Armed::Waiting, "round {round}");
            // Well under the watcher's 50 ms periodic check.
            assert_eq!(
                poll_in(fd, 25),
                1,
                "round {round}: the notify after arming was missed"
            );
            assert_eq!(rx.try_recv().unwrap(), round);
        }
    }

    fn poll_in(fd: i32, ms: i32) -> i32 {
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&raw mut p, 1, ms) }
    }

    /// The lost wake-up window, made deterministic: a message sent after `rearm` found the ring
    /// empty and before it registered. Its notify finds no sleeper (no `seq` bump, no wake), so
    /// only the re-check after the registration sees it: `rearm` must say `Ready` and leave the
    /// descriptor readable.
    #[test]
    fn a_message_sent_just_before_the_registration_is_not_lost() {
        let name = format!("poll-unit-gap-{}", std::process::id());
        let ch = crate::spsc::<u64>(&name)
            .capacity(8)
            .unlink(UnlinkPolicy::CreatorDrop)
            .create()
            .unwrap();
        let mut tx = ch.producer().unwrap();
        let mut rx = Pollable::new(ch.consumer().unwrap()).unwrap();
        let fd = rx.as_raw_fd();
        for round in 0..3u64 {
            let v = round;
            let mut once = Some(());
            let tx_ptr: *mut crate::Producer<u64> = &raw mut tx;
            BETWEEN.with(|b| {
                *b.borrow_mut() = Some(Box::new(move || {
                    if once.take().is_some() {
                        // SAFETY: `tx` outlives the hook (cleared below before `tx` is used
                        // again or dropped), and nothing else uses it meanwhile.
                        let tx = unsafe { &mut *tx_ptr };
                        tx.try_send(v).unwrap();
                    }
                }));
            });
            let armed = rx.rearm().unwrap();
            BETWEEN.with(|b| *b.borrow_mut() = None);
            assert_eq!(
                armed,
                Armed::Ready,
                "round {round}: the message in the gap was missed"
            );
            assert_eq!(poll_in(fd, 500), 1, "round {round}: not readable");
            assert_eq!(rx.try_recv().unwrap(), v);
        }
    }
}
