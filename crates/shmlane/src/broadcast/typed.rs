//! Typed broadcast: every message is one `T: Pod`, published in place through a loan.

use core::marker::PhantomData;

use bytemuck::Pod;
use shmlane_wake::Deadline;

use super::{
    Publisher, Start, Subscriber,
    position::{open_publisher, open_subscriber},
};
use crate::{
    Channel, SideStats,
    channel::CHECKSUM_BYTES,
    error::{ByteRecvError, OpenError},
};

/// The publishing end of a typed broadcast channel ([`broadcast_of`](crate::broadcast_of)):
/// each message is one `T`, written in place into its slot ([`loan`](Self::loan)) or copied
/// there ([`publish`](Self::publish)). `Send`, not `Sync`.
///
/// Why `typed_publisher` and not `publisher`: the byte form, `Channel<u8>::publisher`, is an
/// inherent method of `Channel<u8>`, and Rust cannot also give `Channel<T>` a `publisher` for
/// every `T` (that includes `u8`). Rather than break the byte API, the typed endpoints carry a
/// `typed_` prefix, which also makes the one-byte-per-message `Channel<u8>::typed_publisher`
/// unmistakable.
///
/// ```
/// # let name = format!("doc-typed-bcast-{}", std::process::id());
/// #[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
/// #[repr(C)]
/// struct Quote { bid: f64, ask: f64, instrument: u32, _pad: u32 }
///
/// let ch = shmlane::broadcast_of::<Quote>(&name).capacity(1024).unlink(shmlane::UnlinkPolicy::LastDetach).create()?;
/// let mut feed = ch.typed_publisher()?;
/// let mut sub = ch.typed_subscriber()?;
/// let mut loan = feed.loan();
/// loan.write(&Quote { bid: 1.0841, ask: 1.0843, instrument: 7, _pad: 0 });
/// let seq = loan.publish();
/// let (q, n) = sub.try_recv_seq()?;
/// assert_eq!((q.instrument, n), (7, seq));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct TypedPublisher<T> {
    inner: Publisher,
    _t: PhantomData<fn(T)>,
}

/// A receiving end of a typed broadcast channel: each message is copied out of its slot into a
/// `T` (never a reference into shared memory), under the same stamp check as the byte form.
/// `Send`, not `Sync`.
pub struct TypedSubscriber<T> {
    pub(crate) inner: Subscriber,
    /// A message of another size than `T` is taken through this (sized for the largest), so
    /// that it is consumed rather than left in place.
    scratch: Vec<u8>,
    _t: PhantomData<fn() -> T>,
}

/// A slot lent by [`TypedPublisher::loan`]: write the value in place, then
/// [`publish`](Self::publish) it. Dropped unpublished, the slot stays the next message's.
pub struct TypedLoan<'a, T> {
    loan: shmlane_ring::Loan<'a>,
    local: &'a mut crate::channel::Local,
    checksum: bool,
    _t: PhantomData<fn(T)>,
}

impl<T> core::fmt::Debug for TypedPublisher<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TypedPublisher")
            .field("channel", &self.inner.local.inner.name)
            .field("type", &core::any::type_name::<T>())
            .finish_non_exhaustive()
    }
}

impl<T> core::fmt::Debug for TypedSubscriber<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TypedSubscriber")
            .field("channel", &self.inner.local.inner.name)
            .field("type", &core::any::type_name::<T>())
            .finish_non_exhaustive()
    }
}

impl<T> core::fmt::Debug for TypedLoan<'_, T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TypedLoan")
            .field("seq", &self.loan.position())
            .finish_non_exhaustive()
    }
}

/// `Mismatch` unless a slot of the channel holds one `T` (and its checksum, if any).
fn check_fits<T>(ch_name: &str, max: usize) -> Result<(), OpenError> {
    check_fits_size(ch_name, max, size_of::<T>(), core::any::type_name::<T>())
}

/// `Mismatch` unless a slot of the channel holds one element of `size` bytes (and its
/// checksum, if any); `what` names the element type.
pub(super) fn check_fits_size(
    ch_name: &str,
    max: usize,
    size: usize,
    what: &str,
) -> Result<(), OpenError> {
    if max >= size {
        return Ok(());
    }
    Err(OpenError::Mismatch {
        name: ch_name.to_owned(),
        found: format!("broadcast with messages of up to {max} bytes"),
        wanted: format!(
            "broadcast of {what} ({size} bytes; on a checksummed channel create it with msg_size({}))",
            size + CHECKSUM_BYTES
        ),
    })
}

impl<T: Pod + Send> Channel<T> {
    /// The publisher of a typed broadcast channel: one at a time, as for the byte form
    /// ([`Channel::publisher`]). Fails with `Mismatch` if the channel's messages cannot hold
    /// a `T`.
    pub fn typed_publisher(&self) -> Result<TypedPublisher<T>, OpenError> {
        let inner = open_publisher(self)?;
        check_fits::<T>(&self.inner.name, inner.max_message())?;
        Ok(TypedPublisher {
            inner,
            _t: PhantomData,
        })
    }

    /// A subscriber of a typed broadcast channel starting at the newest message (it receives
    /// only what is published from now on).
    pub fn typed_subscriber(&self) -> Result<TypedSubscriber<T>, OpenError> {
        self.typed_subscriber_from(Start::Newest)
    }

    /// A subscriber of a typed broadcast channel starting at `start` (see
    /// [`Channel::subscriber_from`]).
    pub fn typed_subscriber_from(&self, start: Start) -> Result<TypedSubscriber<T>, OpenError> {
        let inner = open_subscriber(self, start)?;
        check_fits::<T>(&self.inner.name, inner.max_message())?;
        // Reserved at open: a message of another size is taken through it without
        // allocating (docs/realtime.md).
        let scratch = Vec::with_capacity(inner.max_message());
        Ok(TypedSubscriber {
            inner,
            scratch,
            _t: PhantomData,
        })
    }
}

impl<T: Pod> TypedPublisher<T> {
    /// Lends the next message's slot, to write the value in place: no staging copy (the
    /// value's bytes go straight into the shared slot, with atomic stores). The slot's older
    /// message is gone from the moment of the loan.
    ///
    /// Real-time: never allocates, blocks or makes a system call; no page fault after set-up
    /// (docs/realtime.md).
    pub fn loan(&mut self) -> TypedLoan<'_, T> {
        let checksum = self.inner.local.inner.checksum;
        TypedLoan {
            loan: self.inner.ring.loan(),
            local: &mut self.inner.local,
            checksum,
            _t: PhantomData,
        }
    }

    /// Publishes `value` to every subscriber (a loan, written and published); never waits.
    /// Returns its sequence number.
    ///
    /// Real-time: never allocates and never waits for subscribers; no system call but a futex wake
    /// when a subscriber sleeps (none with `Wakes::Never`); no page fault after set-up
    /// (docs/realtime.md).
    pub fn publish(&mut self, value: &T) -> u64 {
        let mut loan = self.loan();
        loan.write(value);
        loan.publish()
    }

    /// The sequence number the next message will have.
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

impl<T: Pod> TypedLoan<'_, T> {
    /// The sequence number the message will have.
    pub fn seq(&self) -> u64 {
        self.loan.position()
    }

    /// Writes the whole value into the slot.
    ///
    /// Real-time: never allocates, blocks or makes a system call; no page fault after set-up
    /// (docs/realtime.md).
    pub fn write(&mut self, value: &T) {
        // The slot holds a `T` (checked when the publisher was made): in bounds.
        let fits = self.loan.write(0, bytemuck::bytes_of(value));
        debug_assert!(fits.is_ok());
    }

    /// Writes `field` at byte `offset` of the value (e.g. `core::mem::offset_of!(Quote, bid)`),
    /// to build a large value in place a field at a time. Bytes never written keep what the
    /// slot held (an older message): write every field.
    ///
    /// # Panics
    /// If the field does not lie inside `T`.
    ///
    /// Real-time: never allocates (a panic message aside), blocks or makes a system call; no page
    /// fault after set-up (docs/realtime.md).
    pub fn write_field<F: Pod>(&mut self, offset: usize, field: &F) {
        assert!(
            offset
                .checked_add(size_of::<F>())
                .is_some_and(|end| end <= size_of::<T>()),
            "field at {offset}..+{} outside {} ({} bytes)",
            size_of::<F>(),
            core::any::type_name::<T>(),
            size_of::<T>()
        );
        let fits = self.loan.write(offset, bytemuck::bytes_of(field));
        debug_assert!(fits.is_ok());
    }

    /// Publishes the value; returns its sequence number. Never waits.
    ///
    /// Real-time: never allocates and never waits for subscribers; no system call but a futex wake
    /// when a subscriber sleeps (none with `Wakes::Never`); no page fault after set-up
    /// (docs/realtime.md).
    pub fn publish(self) -> u64 {
        publish_loan(self.loan, self.local, self.checksum, size_of::<T>())
    }
}

/// Publishes the first `n` bytes of `loan`'s slot (the whole element, written), with their
/// checksum on a checksummed channel, and counts it; returns its sequence number. The one
/// publishing step of every typed loan ([`TypedLoan`], the run-time publisher's).
pub(super) fn publish_loan(
    mut loan: shmlane_ring::Loan<'_>,
    local: &mut crate::channel::Local,
    checksum: bool,
    n: usize,
) -> u64 {
    {
        let len = if checksum {
            // The checksum of the bytes as written, read back from the slot a chunk at a time
            // (the same CRC32C of the length and the bytes as `channel::checksum`).
            let len = u32::try_from(n).unwrap_or(u32::MAX);
            let mut crc = crc32c::crc32c(&len.to_le_bytes());
            let mut chunk = [0u8; 64];
            for at in (0..n).step_by(chunk.len()) {
                let part = &mut chunk[..(n - at).min(64)];
                loan.read(at, part);
                crc = crc32c::crc32c_append(crc, part);
            }
            let fits = loan.write(n, &crc.to_le_bytes());
            debug_assert!(fits.is_ok());
            n + CHECKSUM_BYTES
        } else {
            n
        };
        let seq = loan.position();
        // The slot holds `len` (checked when the publisher was made): never `TooLong`.
        let published = loan.publish(len);
        debug_assert_eq!(published, Ok(seq));
        local.done(1, n as u64);
        seq
    }
}

/// What a typed subscriber says of a message that is not exactly one `T`.
const WRONG_SIZE: &str = "a message of another size than the channel's type";

/// The outcome `r` of a receive into `out` (one element's bytes) as a whole element: anything
/// but exactly `out.len()` bytes is corrupt, and consumed (see [`TypedSubscriber::value`]'s
/// notes). The one check of every typed subscriber ([`TypedSubscriber`], the run-time one).
pub(super) fn exact(
    inner: &mut Subscriber,
    scratch: &mut Vec<u8>,
    r: Result<usize, ByteRecvError>,
    out: &mut [u8],
    before: u64,
) -> Result<(), ByteRecvError> {
    match r {
        Ok(n) if n == out.len() => Ok(()),
        Ok(_) => Err(ByteRecvError::Corrupt(WRONG_SIZE)),
        Err(ByteRecvError::BufferTooSmall { .. }) if inner.next_seq() != before => {
            Err(ByteRecvError::Corrupt(WRONG_SIZE))
        }
        Err(ByteRecvError::BufferTooSmall { .. }) => {
            scratch.resize(inner.max_message(), 0);
            match inner.try_recv(scratch) {
                Ok(n) if n == out.len() => {
                    out.copy_from_slice(&scratch[..n]);
                    Ok(())
                }
                Ok(_) | Err(ByteRecvError::BufferTooSmall { .. }) => {
                    Err(ByteRecvError::Corrupt(WRONG_SIZE))
                }
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

impl<T: Pod> TypedSubscriber<T> {
    /// A received message as a `T`: anything but exactly one `T` is corrupt, and consumed.
    ///
    /// A message longer than `T` did not fit the value. On a channel without checksums it is
    /// still in its slot (the ring consumes nothing on `BufferTooSmall`; a checksummed one
    /// consumed it, through its scratch buffer: `before`, the position before the read, tells
    /// which): it is taken again through a buffer that holds any message, so that it is
    /// consumed (review revb: it was left in place, and every later call returned the same
    /// `Corrupt` for ever). If the message changed meanwhile (a lap), what that read returns
    /// is the answer: a `T` is still delivered whole.
    fn value(
        &mut self,
        r: Result<usize, ByteRecvError>,
        mut v: T,
        before: u64,
    ) -> Result<T, ByteRecvError> {
        exact(
            &mut self.inner,
            &mut self.scratch,
            r,
            bytemuck::bytes_of_mut(&mut v),
            before,
        )?;
        Ok(v)
    }

    /// The next message, copied out; never blocks (`Empty`, `Lapped` once with the exact
    /// loss, `Disconnected`, `PeerDied`, `Corrupt` as for [`Subscriber::try_recv`]; a message
    /// of another size than `T` is `Corrupt` and consumed).
    ///
    /// Real-time: never allocates, blocks or makes a system call (a lap reads the clock through the
    /// vDSO); no page fault after set-up (docs/realtime.md).
    pub fn try_recv(&mut self) -> Result<T, ByteRecvError> {
        let mut v = T::zeroed();
        let before = self.inner.next_seq();
        let r = self.inner.try_recv(bytemuck::bytes_of_mut(&mut v));
        self.value(r, v, before)
    }

    /// The next message, waiting until `deadline` (`None`: no limit).
    ///
    /// Real-time: blocks (spin, yield, futex wait) until the deadline and reads the clock; after
    /// a fruitless wait checks peers' liveness (system calls; the attachment table is read into a
    /// `Vec`: allocates); for non-real-time threads (docs/realtime.md).
    pub fn recv(&mut self, deadline: Option<Deadline>) -> Result<T, ByteRecvError> {
        let mut v = T::zeroed();
        let before = self.inner.next_seq();
        let r = self.inner.recv(bytemuck::bytes_of_mut(&mut v), deadline);
        self.value(r, v, before)
    }

    /// As [`try_recv`](Self::try_recv), with the message's sequence number.
    ///
    /// Real-time: never allocates, blocks or makes a system call (a lap reads the clock through the
    /// vDSO); no page fault after set-up (docs/realtime.md).
    pub fn try_recv_seq(&mut self) -> Result<(T, u64), ByteRecvError> {
        let v = self.try_recv()?;
        Ok((v, self.inner.last_seq().unwrap_or_default()))
    }

    /// As [`recv`](Self::recv), with the message's sequence number: numbers go up by one, and
    /// a gap is exactly the loss reported by the `Lapped` in between.
    pub fn recv_seq(&mut self, deadline: Option<Deadline>) -> Result<(T, u64), ByteRecvError> {
        let v = self.recv(deadline)?;
        Ok((v, self.inner.last_seq().unwrap_or_default()))
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

    /// Whether the publisher counts this subscriber (see [`Subscriber::is_counted`]).
    pub fn is_counted(&self) -> bool {
        self.inner.is_counted()
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
