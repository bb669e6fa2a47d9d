//! Waiting on many receivers from one thread: [`Select`].
//!
//! # Mechanism
//! Senders do not change: each send's notify of its channel's `ev-data` event is one fence and
//! one load while nobody is registered. A select that finds nothing ready registers as a
//! sleeper on the `ev-data` event of every receiver's channel, makes one SeqCst fence, looks
//! at every receiver again, and sleeps in one `futex_waitv` on all the events' sequence words
//! (`shmlane_wake::WaitSet`; the protocol and why no wake-up is lost are in its docs and in
//! `docs/design.md`, "Waiting on many channels"). Every registration is withdrawn before the
//! call returns, so senders make no system call while the selecting thread drains.
//!
//! Beyond 128 receivers (`futex_waitv`'s limit), or on a kernel without it (before 5.16), the
//! wait sleeps on the first receiver's event (the one the rotation puts first) and looks at the
//! others every millisecond ([`FALLBACK_SLICE`](shmlane_wake::FALLBACK_SLICE)).
//!
//! Bounds: a park lasts at most [`POLL_PEER_CHECK`](crate::POLL_PEER_CHECK) (50 ms), after
//! which every receiver's senders are checked (a death is reported within 50 ms plus a scan of
//! the attachment tables), and at most `NEVER_WAKE_POLL` while a receiver has a never-waking
//! sender; the deadline bounds the whole call.
//!
//! Fairness: each call starts looking at the receiver after the one it returned last, so a
//! channel that always has data cannot starve the others: between two returns of a busy
//! receiver every other ready receiver is returned once.

use std::{sync::Arc, time::Instant};

use shmlane_wake::{Deadline, WaitSet};

use crate::{
    PollSource, RecvError,
    channel::{Inner, PEER_CHECK, Peers, Side},
};

/// How a [`Select::wait`] failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SelectError {
    /// The deadline passed with no receiver ready.
    #[error("timed out: no receiver had a message before the deadline")]
    Timeout,
    /// Receiver `index` reports what its blocking `recv` would: every sender left
    /// (`Disconnected`, final in `PeersLeave::Disconnect` mode: take it out of the list), a
    /// sender died (`PeerDied`, reported once per death, after what it sent was delivered) or
    /// the channel is corrupt. Its messages, if any, were all offered before this.
    #[error("receiver {index} ended: {reason}")]
    Ended {
        /// The receiver's position in the list passed.
        index: usize,
        /// What its `recv` would have returned.
        reason: RecvError,
    },
    /// The list of receivers is empty: nothing could ever become ready.
    #[error("nothing to select on: the list of receivers is empty")]
    NoReceivers,
}

/// Waits on any number of receivers of any kinds ([`Consumer`](crate::Consumer),
/// [`Receiver`](crate::Receiver), [`ByteReceiver`](crate::ByteReceiver),
/// [`Subscriber`](crate::Subscriber), [`TypedSubscriber`](crate::TypedSubscriber) and the
/// run-time ones) from one thread, with a deadline, and says which one is ready (see the
/// module docs for the mechanism and the bounds).
///
/// ```
/// use shmlane::{Deadline, Select, UnlinkPolicy};
/// use std::time::Duration;
///
/// let id = std::process::id();
/// let a = shmlane::spsc::<u64>(&format!("doc-sel-a-{id}")).unlink(UnlinkPolicy::CreatorDrop).create()?;
/// let b = shmlane::spsc::<u64>(&format!("doc-sel-b-{id}")).unlink(UnlinkPolicy::CreatorDrop).create()?;
/// let (mut ta, mut tb) = (a.producer()?, b.producer()?);
/// let (mut ra, mut rb) = (a.consumer()?, b.consumer()?);
/// tb.try_send(7)?; // any process
/// let mut sel = Select::new();
/// let deadline = Deadline::after(Duration::from_secs(1));
/// let i = sel.wait(&mut [&mut ra, &mut rb], Some(deadline))?;
/// assert_eq!(i, 1);
/// assert_eq!(rb.try_recv()?, 7);
/// # drop(ta);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// Real-time: a call that finds a receiver ready makes no system call and allocates nothing
/// beyond its first calls (it keeps its scratch); a call that waits makes the futex calls and,
/// at most every 50 ms, the liveness checks of every receiver's senders.
pub struct Select {
    /// Where the next call starts looking (rotated past the last receiver returned).
    next: usize,
    /// Looks at every receiver before the first park of a call.
    spins: u32,
    /// The receivers' channels while a call waits (kept for its capacity; emptied after).
    chans: Vec<Arc<Inner>>,
    waits: WaitSet,
    /// When the receivers' senders are checked next (`None`: at the first park).
    next_check: Option<Instant>,
}

impl core::fmt::Debug for Select {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Select")
            .field("next", &self.next)
            .field("spins", &self.spins)
            .field("futex_waitv", &self.waits.uses_waitv())
            .finish_non_exhaustive()
    }
}

impl Default for Select {
    fn default() -> Self {
        Self::new()
    }
}

/// Looks at every receiver before parking, by default: a few microseconds over a handful of
/// channels, so a message that is about to arrive costs no futex round trip.
const DEFAULT_SPINS: u32 = 64;

impl Select {
    /// A select that looks 64 times at every receiver before it parks, with `futex_waitv`
    /// where the kernel has it.
    pub fn new() -> Self {
        Self {
            next: 0,
            spins: DEFAULT_SPINS,
            chans: Vec::new(),
            waits: WaitSet::new(),
            next_check: None,
        }
    }

    /// How many times a call looks at every receiver before it parks (0: park at once).
    #[must_use]
    pub fn spins(mut self, spins: u32) -> Self {
        self.spins = spins;
        self
    }

    /// Never uses `futex_waitv`: parks on the first receiver's event and looks at the others
    /// every millisecond, as on a kernel before 5.16 (for tests and comparisons).
    #[must_use]
    pub fn without_waitv(mut self) -> Self {
        self.waits = WaitSet::without_waitv();
        self
    }

    /// Waits until one of `receivers` has a message (`Ok(index)`: its `try_recv` has one,
    /// unless another receiver of an MPMC channel took it first: then call `wait` again), or
    /// has an end to report (`Err(Ended)`), or `deadline` passes (`Err(Timeout)`; `None`: no
    /// deadline). Never past the deadline by more than one look at every receiver.
    ///
    /// Cancellation: a `wait` that returns, however it returns, holds no registration and
    /// has taken no message; nothing is lost by not receiving from the receiver it named.
    pub fn wait(
        &mut self,
        receivers: &mut [&mut dyn PollSource],
        deadline: Option<Deadline>,
    ) -> Result<usize, SelectError> {
        let n = receivers.len();
        if n == 0 {
            return Err(SelectError::NoReceivers);
        }
        let past = || deadline.as_ref().is_some_and(Deadline::is_past);
        let mut looks = 0u32;
        let mut spin_start: Option<Instant> = None;
        loop {
            if past() {
                return Err(SelectError::Timeout);
            }
            if let Some(r) = self.scan(receivers) {
                return r;
            }
            // The spin phase, cut short after `PEER_CHECK` (looked at every 64 looks), so a
            // large `spins` still sees a dead sender within the liveness bound.
            if looks < self.spins {
                looks += 1;
                if looks % 64 == 0
                    && spin_start.get_or_insert_with(Instant::now).elapsed() >= PEER_CHECK
                {
                    looks = self.spins;
                }
                core::hint::spin_loop();
                continue;
            }
            let now = Instant::now();
            if self.next_check.is_none_or(|t| now >= t) {
                self.next_check = Some(now + PEER_CHECK);
                if let Some(r) = self.check_peers(receivers) {
                    return r;
                }
            }
            // The longest this park may last: the next peer check, the shortest park slice
            // (a never-waking sender is polled for), the deadline.
            let mut slice = self
                .next_check
                .map_or(PEER_CHECK, |t| t.saturating_duration_since(now));
            for r in receivers.iter() {
                slice = slice.min(r.inner().park_slice(Side::Recv));
            }
            let watch_never = slice > crate::NEVER_WAKE_POLL;
            let mut until = Deadline::after(slice);
            if let Some(d) = deadline {
                until = until.min(d);
            }
            let start = self.next % n;
            self.chans.clear();
            self.chans
                .extend((0..n).map(|k| receivers[(start + k) % n].inner().clone()));
            let chans = &self.chans;
            self.waits.wait_any(
                chans,
                |c| &c.ev_data,
                Some(&until),
                || {
                    any_ready(receivers)
                    // A sender that switched to never waking after the slice was chosen:
                    // its switch notifies, or this re-read sees its count.
                    || (watch_never
                        && chans.iter().any(|c| c.never_wakers(Side::Send) != 0))
                },
            );
            self.chans.clear();
        }
    }

    /// One look at every receiver, from `next` on: the first ready one, or the first with an
    /// end it can report without a syscall (`Disconnect` mode's clean end).
    fn scan(
        &mut self,
        receivers: &mut [&mut dyn PollSource],
    ) -> Option<Result<usize, SelectError>> {
        let n = receivers.len();
        let start = self.next % n;
        for k in 0..n {
            let i = (start + k) % n;
            let r = &mut *receivers[i];
            if r.ready() {
                self.next = i + 1;
                return Some(Ok(i));
            }
            let local = r.local();
            if local.life.gone(&local.inner) {
                // Re-check: the last sender may have sent before leaving.
                if r.ready() {
                    self.next = i + 1;
                    return Some(Ok(i));
                }
                self.next = i + 1;
                let reason = if r.local().life.ended() == Some(Peers::Died) {
                    RecvError::PeerDied
                } else {
                    RecvError::Disconnected
                };
                return Some(Err(SelectError::Ended { index: i, reason }));
            }
        }
        None
    }

    /// The slow look (syscalls: attachment liveness, header checks), from `next` on: a dead or
    /// departed sender's last messages are offered first (a hole a dead MPMC sender left is
    /// skipped), then its end reported once, as a blocked `recv` reports it.
    fn check_peers(
        &mut self,
        receivers: &mut [&mut dyn PollSource],
    ) -> Option<Result<usize, SelectError>> {
        let n = receivers.len();
        let start = self.next % n;
        for k in 0..n {
            let i = (start + k) % n;
            let r = &mut *receivers[i];
            let local = r.local();
            let peers = local.life.peers(&local.inner);
            let ended = |reason| Some(Err(SelectError::Ended { index: i, reason }));
            match peers {
                Peers::Corrupt(_) => {
                    self.next = i + 1;
                    return ended(RecvError::Corrupt);
                }
                Peers::Died | Peers::Left => {
                    self.next = i + 1;
                    if r.recover() || r.ready() {
                        return Some(Ok(i));
                    }
                    r.local().life.reported(peers);
                    return ended(if peers == Peers::Died {
                        RecvError::PeerDied
                    } else {
                        RecvError::Disconnected
                    });
                }
                Peers::Live | Peers::NotYet => {
                    // A position a dead MPMC sender took and never filled.
                    if r.recover() {
                        self.next = i + 1;
                        return Some(Ok(i));
                    }
                }
            }
        }
        None
    }
}

/// Whether any receiver has a message, or an end to report without a syscall.
fn any_ready(receivers: &mut [&mut dyn PollSource]) -> bool {
    receivers.iter_mut().any(|r| {
        r.ready() || {
            let local = r.local();
            local.life.gone(&local.inner)
        }
    })
}
