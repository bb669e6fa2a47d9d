//! Typed broadcast with a run-time element layout ([`raw_broadcast`](crate::raw_broadcast)):
//! the endpoints of a [`RawChannel`] that is a broadcast channel, for callers that know their
//! element only at run time (the C ABI). The channel is byte for byte the one
//! [`broadcast_of`](crate::broadcast_of)`::<T>` makes for a `T` of that layout and type name,
//! and the endpoints run the typed endpoints' code: [`RawPublisher`] publishes through the
//! same slot loans as [`TypedLoan`](crate::TypedLoan) (`typed::publish_loan`), and
//! [`RawSubscriber`] receives exactly one element per message as
//! [`TypedSubscriber`](crate::TypedSubscriber) does (`typed::exact`).
//!
//! The publisher's loan is borrow-free ([`RawPublisher::loan_ptr`] /
//! [`publish_loan`](RawPublisher::publish_loan) / [`abandon_loan`](RawPublisher::abandon_loan)),
//! so that a C caller can hold it across calls: taking it marks the slot busy (the ring's
//! sequence lock), and publishing takes the ring's loan of the same position again (an
//! unpublished loan leaves the position where it was) and publishes it as `TypedLoan` does.

use shmlane_wake::Deadline;

use super::{
    Publisher, Start, Subscriber,
    position::{open_publisher, open_subscriber},
    typed::{check_fits_size, exact, publish_loan},
};
use crate::{
    ElemError, RawChannel, SideStats,
    error::{ByteRecvError, OpenError},
};

/// Why a run-time publisher refused a loan call (or a copying publish while a loan is open).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LoanError {
    /// A loan is open: publish it ([`RawPublisher::publish_loan`]) or give it up
    /// ([`RawPublisher::abandon_loan`]) first.
    #[error("a loan is open on this publisher: publish it or abandon it first")]
    Open,
    /// No loan is open: take one ([`RawPublisher::loan_ptr`]) first.
    #[error("no loan is open on this publisher: take one first")]
    NotOpen,
}

/// The publisher of a typed broadcast channel with a run-time element layout: each message is
/// one element of exactly [`elem_size`](Self::elem_size) bytes. `Send`, not `Sync`.
#[derive(Debug)]
pub struct RawPublisher {
    inner: Publisher,
    size: usize,
    /// A loan is open: the slot of `inner`'s position is marked busy, the caller writes it.
    loaned: bool,
}

/// A subscriber of a typed broadcast channel with a run-time element layout: each message is
/// copied out into a buffer of exactly [`elem_size`](Self::elem_size) bytes (any alignment),
/// under the same checks as [`TypedSubscriber`](crate::TypedSubscriber). `Send`, not `Sync`.
#[derive(Debug)]
pub struct RawSubscriber {
    pub(crate) inner: Subscriber,
    /// A message of another size than the element is taken through this, to consume it.
    scratch: Vec<u8>,
    size: usize,
}

impl RawChannel {
    /// The publisher of a typed broadcast channel (from [`raw_broadcast`](crate::raw_broadcast)):
    /// one at a time, as [`Channel::typed_publisher`](crate::Channel::typed_publisher).
    /// `WrongKind` on another kind of channel; `Mismatch` if its messages cannot hold an
    /// element (a checksummed channel made without room for the checksum).
    pub fn publisher(&self) -> Result<RawPublisher, OpenError> {
        let inner = open_publisher(&self.ch)?;
        let size = self.elem.size();
        check_fits_size(self.ch.name(), inner.max_message(), size, &self.what())?;
        Ok(RawPublisher {
            inner,
            size,
            loaned: false,
        })
    }

    /// A subscriber of a typed broadcast channel starting at `start` (see
    /// [`Channel::subscriber_from`](crate::Channel::subscriber_from)).
    pub fn subscriber_from(&self, start: Start) -> Result<RawSubscriber, OpenError> {
        let inner = open_subscriber(&self.ch, start)?;
        let size = self.elem.size();
        check_fits_size(self.ch.name(), inner.max_message(), size, &self.what())?;
        // Reserved at open, as the typed subscriber's.
        let scratch = Vec::with_capacity(inner.max_message());
        Ok(RawSubscriber {
            inner,
            scratch,
            size,
        })
    }

    fn what(&self) -> String {
        self.ch.elem_type().to_string()
    }
}

impl RawPublisher {
    /// The element size: every message is exactly this many bytes.
    pub fn elem_size(&self) -> usize {
        self.size
    }

    /// Whether a loan is open.
    pub fn is_loaned(&self) -> bool {
        self.loaned
    }

    /// Publishes a copy of `elem` (exactly one element) to every subscriber; never waits.
    /// Returns its sequence number. `Length` for another length, `LoanError::Open` while a
    /// loan is open; nothing is published then.
    ///
    /// Real-time: never allocates and never waits for subscribers; no system call but a futex wake
    /// when a subscriber sleeps (none with `Wakes::Never`); no page fault after set-up
    /// (docs/realtime.md).
    pub fn publish(&mut self, elem: &[u8]) -> Result<u64, ElemError<LoanError>> {
        if elem.len() != self.size {
            return Err(ElemError::Length {
                size: self.size,
                got: elem.len(),
            });
        }
        if self.loaned {
            return Err(ElemError::Channel(LoanError::Open));
        }
        let checksum = self.inner.local.inner.checksum;
        let mut loan = self.inner.ring.loan();
        let fits = loan.write(0, elem);
        debug_assert!(fits.is_ok());
        Ok(publish_loan(
            loan,
            &mut self.inner.local,
            checksum,
            self.size,
        ))
    }

    /// Lends the next message's slot, to write the element in place: a pointer to
    /// [`elem_size`](Self::elem_size) bytes of the slot, 8-byte aligned (not more: an element
    /// aligned above 8 is written with byte copies), valid until
    /// [`publish_loan`](Self::publish_loan), [`abandon_loan`](Self::abandon_loan) or the
    /// publisher's drop. The slot is marked busy before the pointer is handed out (the ring's
    /// sequence lock, as for [`TypedLoan`](crate::TypedLoan)): subscribers wait for this
    /// message, and one still reading the slot's older message drops its copy as lapped; the
    /// words may be read while they are written, but nothing is delivered before
    /// `publish_loan`. Bytes never written keep what the slot held (an older message): write
    /// the whole element. `LoanError::Open` if a loan is open already.
    ///
    /// Writing through the pointer is `unsafe` for the caller: only `elem_size` bytes, only
    /// while the loan is open.
    ///
    /// Real-time: never allocates, blocks or makes a system call; no page fault after set-up
    /// (docs/realtime.md).
    pub fn loan_ptr(&mut self) -> Result<*mut u8, LoanError> {
        if self.loaned {
            return Err(LoanError::Open);
        }
        // The ring's loan ends with this block, unpublished: the slot stays busy and the
        // position where it was, so `publish_loan` takes the same slot again.
        let p = self.inner.ring.loan().as_mut_ptr();
        self.loaned = true;
        Ok(p)
    }

    /// Publishes the open loan's element (as [`TypedLoan::publish`](crate::TypedLoan::publish):
    /// with its checksum on a checksummed channel); returns its sequence number. Never waits.
    /// `LoanError::NotOpen` without a loan.
    ///
    /// Real-time: never allocates and never waits for subscribers; no system call but a futex wake
    /// when a subscriber sleeps (none with `Wakes::Never`); no page fault after set-up
    /// (docs/realtime.md).
    pub fn publish_loan(&mut self) -> Result<u64, LoanError> {
        if !self.loaned {
            return Err(LoanError::NotOpen);
        }
        self.loaned = false;
        let checksum = self.inner.local.inner.checksum;
        // The same position as `loan_ptr`'s (nothing was published since): marked busy again
        // (the same stamp), then published with what the caller wrote.
        let loan = self.inner.ring.loan();
        Ok(publish_loan(
            loan,
            &mut self.inner.local,
            checksum,
            self.size,
        ))
    }

    /// Gives up the open loan unpublished, as a dropped [`TypedLoan`](crate::TypedLoan): the
    /// slot stays busy and becomes the next message's (the next loan hands out the same
    /// slot, with what was written; the next `publish` overwrites it); subscribers wait for
    /// that message meanwhile. Returns whether a loan was open.
    ///
    /// Real-time: never allocates, blocks or makes a system call; no page fault after set-up
    /// (docs/realtime.md).
    pub fn abandon_loan(&mut self) -> bool {
        core::mem::replace(&mut self.loaned, false)
    }

    /// The sequence number the next message will have (the open loan's, if any).
    pub fn next_seq(&self) -> u64 {
        self.inner.next_seq()
    }

    /// Live subscribers counted in the cursor table (see [`Publisher::subscribers`]).
    ///
    /// Real-time: never allocates, but checks counted subscribers' liveness (system calls): a
    /// monitoring call, not for the hot path (docs/realtime.md).
    pub fn subscribers(&self) -> u64 {
        self.inner.subscribers()
    }

    /// The slowest counted subscriber's lag (see [`Publisher::slowest_lag`]).
    ///
    /// Real-time: never allocates, but checks counted subscribers' liveness (system calls): a
    /// monitoring call, not for the hot path (docs/realtime.md).
    pub fn slowest_lag(&self) -> Option<u64> {
        self.inner.slowest_lag()
    }

    /// Whether this endpoint's operations wake a peer that sleeps for them (default: the
    /// channel handle's [`Builder::wakes`](crate::Builder::wakes)). [`Wakes::Never`](crate::Wakes::Never):
    /// no operation makes a system call; the endpoint is counted in the channel header until it
    /// switches back or is dropped, and its peers' blocking calls park at most
    /// [`NEVER_WAKE_POLL`](crate::NEVER_WAKE_POLL) at a time meanwhile. Set it up front, not on
    /// the hot path: switching to `Never` may wake a sleeping peer once.
    pub fn set_wakes(&mut self, wakes: crate::Wakes) {
        self.inner.set_wakes(wakes);
    }

    /// The channel's publisher-side statistics as stored now.
    pub fn stats(&mut self) -> SideStats {
        self.inner.stats()
    }
}

impl RawSubscriber {
    /// The element size: every buffer passed is exactly this many bytes.
    pub fn elem_size(&self) -> usize {
        self.size
    }

    fn check(&self, out: &[u8]) -> Result<(), ElemError<ByteRecvError>> {
        if out.len() == self.size {
            Ok(())
        } else {
            Err(ElemError::Length {
                size: self.size,
                got: out.len(),
            })
        }
    }

    /// The next message copied into `out` (exactly one element); its sequence number. Never
    /// blocks; errors as [`TypedSubscriber::try_recv`](crate::TypedSubscriber::try_recv)
    /// (`Lapped` once with the exact loss, ...; a message of another size is `Corrupt` and
    /// consumed). After an error `out` may hold anything: use it only on success.
    ///
    /// Real-time: never allocates, blocks or makes a system call (a lap reads the clock through the
    /// vDSO); no page fault after set-up (docs/realtime.md).
    pub fn try_recv(&mut self, out: &mut [u8]) -> Result<u64, ElemError<ByteRecvError>> {
        self.check(out)?;
        let before = self.inner.next_seq();
        let r = self.inner.try_recv(out);
        exact(&mut self.inner, &mut self.scratch, r, out, before)?;
        Ok(self.inner.last_seq().unwrap_or_default())
    }

    /// As [`try_recv`](Self::try_recv), waiting until `deadline` (`None`: no limit).
    ///
    /// Real-time: blocks (spin, yield, futex wait) until the deadline and reads the clock; after
    /// a fruitless wait checks peers' liveness (system calls; the attachment table is read into a
    /// `Vec`: allocates); for non-real-time threads (docs/realtime.md).
    pub fn recv(
        &mut self,
        out: &mut [u8],
        deadline: Option<Deadline>,
    ) -> Result<u64, ElemError<ByteRecvError>> {
        self.check(out)?;
        let before = self.inner.next_seq();
        let r = self.inner.recv(out, deadline);
        exact(&mut self.inner, &mut self.scratch, r, out, before)?;
        Ok(self.inner.last_seq().unwrap_or_default())
    }

    /// Messages lost to laps (and to a start at an overwritten sequence number), in total.
    pub fn lost(&self) -> u64 {
        self.inner.lost()
    }

    /// The sequence number of the last message received (`None` before the first).
    pub fn last_seq(&self) -> Option<u64> {
        self.inner.last_seq()
    }

    /// The sequence number of the next message this subscriber will receive.
    pub fn next_seq(&self) -> u64 {
        self.inner.next_seq()
    }

    /// Whether this endpoint's operations wake a peer that sleeps for them (default: the
    /// channel handle's [`Builder::wakes`](crate::Builder::wakes)). [`Wakes::Never`](crate::Wakes::Never):
    /// no operation makes a system call; the endpoint is counted in the channel header until it
    /// switches back or is dropped, and its peers' blocking calls park at most
    /// [`NEVER_WAKE_POLL`](crate::NEVER_WAKE_POLL) at a time meanwhile. Set it up front, not on
    /// the hot path: switching to `Never` may wake a sleeping peer once.
    pub fn set_wakes(&mut self, wakes: crate::Wakes) {
        self.inner.set_wakes(wakes);
    }

    /// The channel's subscriber-side statistics as stored now.
    pub fn stats(&mut self) -> SideStats {
        self.inner.stats()
    }
}
