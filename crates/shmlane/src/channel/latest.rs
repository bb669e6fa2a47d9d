//! Latest-value channels ("blackboard"): a latest-value region (`shmlane_ring::latest`, a
//! multi-slot seqlock) in the usual segment, with the channel header, type record, liveness
//! and the `ev-data` event: writers notify it after each write, readers sleep on it in
//! [`LatestReader::wait_changed`]. Writers count as senders (`ROLE_SENDER`), readers as
//! receivers (`ROLE_RECEIVER`), so `shmlane ls` and `stat` show them like any channel.
//!
//! Typed (`latest::<T>`): the value is a `T: Pod`, its bytes. Bytes (`raw_latest`): a value is
//! 0 to `value_size` bytes. The typed channel records `T`'s type, the byte one `bytes`, so
//! one is not opened as the other ([`OpenError::WrongType`]).

use bytemuck::Pod;
use shmlane_ring::LatestError as RingError;
use shmlane_segment::{Location, UnlinkPolicy};
use shmlane_wake::{Deadline, WaitStrategy};

use super::{Builder, Channel, Kind, Local, PeersLeave, STATS_EVERY, Side};
use crate::error::OpenError;

/// Why a latest-value call failed. Hot-path errors: `Copy`, never allocate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LatestError {
    /// Writes kept racing this read (64 tries), or a writer found no slot to claim (writers
    /// that died mid-write hold all but the newest value's): try again; if writers keep
    /// getting it, create the channel with more slots (`capacity`).
    #[error(
        "latest value busy: writes kept racing this call, or dead or stalled writers hold every free slot; try again, or create the channel with more slots (capacity)"
    )]
    Busy,
    /// `wait_changed`'s deadline passed with no new version.
    #[error("timed out: the value did not change before the deadline")]
    Timeout,
    /// A byte value longer than the channel's value size.
    #[error(
        "value of {len} bytes is longer than the channel's value size ({max}); create the channel with a larger value size"
    )]
    TooLong {
        /// Bytes given.
        len: usize,
        /// The value size.
        max: usize,
    },
    /// The buffer is smaller than the value (nothing consumed: read again with a larger one).
    #[error(
        "buffer of {got} bytes is too small for the value ({needed} bytes); read again with a buffer of value_size() bytes"
    )]
    BufferTooSmall {
        /// Bytes the value has.
        needed: usize,
        /// Bytes the buffer has.
        got: usize,
    },
    /// The channel's shared words make no sense (a corrupt or hostile segment): what is wrong.
    #[error("latest-value channel is corrupt ({0}); remove it and create it again")]
    Corrupt(&'static str),
}

impl LatestError {
    fn from_ring(e: RingError, got: usize) -> Self {
        match e {
            RingError::Busy => Self::Busy,
            RingError::TooLong { len, max } => Self::TooLong { len, max },
            RingError::BufferTooSmall { needed } => Self::BufferTooSmall { needed, got },
            RingError::Corrupt(why) => Self::Corrupt(why),
            _ => Self::Corrupt("an unknown ring error"),
        }
    }
}

/// A builder for a byte latest-value channel: values of 0 to `value_size` bytes (1..=1 MiB).
/// Endpoints: [`RawLatestChannel::writer`] and [`RawLatestChannel::reader`].
pub fn raw_latest(name: &str, value_size: usize) -> RawLatestBuilder {
    RawLatestBuilder {
        b: super::builder::latest_bytes(name, value_size as u64),
    }
}

/// Builder of a byte latest-value channel: the options of [`Builder`] that apply to it.
#[derive(Debug)]
pub struct RawLatestBuilder {
    b: Builder<u8>,
}

macro_rules! delegate {
    ($($(#[$m:meta])* $f:ident($($a:ident: $t:ty),*);)*) => {$(
        $(#[$m])*
        #[must_use]
        pub fn $f(self, $($a: $t),*) -> Self {
            Self { b: self.b.$f($($a),*) }
        }
    )*};
}

impl RawLatestBuilder {
    delegate! {
        /// Slots (a power of two in 2..=65536, default 4), as [`Builder::capacity`].
        capacity(n: u64);
        /// As [`Builder::location`].
        location(loc: Location);
        /// As [`Builder::wait`] (how `wait_changed` waits).
        wait(strategy: WaitStrategy);
        /// As [`Builder::wakes`] (whether writers wake readers sleeping in `wait_changed`).
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
    }

    /// As [`Builder::segment_size`].
    pub fn segment_size(&self) -> Result<u64, OpenError> {
        self.b.segment_size()
    }

    /// Creates the channel; fails if the name exists.
    pub fn create(self) -> Result<RawLatestChannel, OpenError> {
        Ok(RawLatestChannel {
            ch: self.b.create()?,
        })
    }

    /// Opens an existing byte latest-value channel of this value size.
    pub fn open(self) -> Result<RawLatestChannel, OpenError> {
        Ok(RawLatestChannel { ch: self.b.open()? })
    }

    /// Opens the channel, creating it if it does not exist.
    pub fn open_or_create(self) -> Result<RawLatestChannel, OpenError> {
        Ok(RawLatestChannel {
            ch: self.b.open_or_create()?,
        })
    }
}

/// An open byte latest-value channel; take endpoints from it. Cheap to clone.
#[derive(Clone, Debug)]
pub struct RawLatestChannel {
    ch: Channel<u8>,
}

impl RawLatestChannel {
    /// The channel's name.
    pub fn name(&self) -> &str {
        self.ch.name()
    }

    /// Whether this handle created the segment.
    pub fn created(&self) -> bool {
        self.ch.created()
    }

    /// The largest value in bytes.
    pub fn value_size(&self) -> usize {
        // Checked at open against the ring (<= 1 MiB).
        self.ch.inner.msg_max as usize
    }

    /// A writer (any number).
    pub fn writer(&self) -> Result<RawLatestWriter, OpenError> {
        writer(&self.ch)
    }

    /// A reader (any number).
    pub fn reader(&self) -> Result<RawLatestReader, OpenError> {
        reader(&self.ch)
    }
}

fn writer<T: Pod + Send>(ch: &Channel<T>) -> Result<RawLatestWriter, OpenError> {
    ch.check_kind(Kind::Latest, "writer")?;
    ch.check_here()?;
    let (ptr, len) = ch.inner.ring;
    // SAFETY: the ring region lives as long as the segment, which the endpoint keeps alive
    // through `Local::inner`.
    let ring = unsafe { shmlane_ring::LatestRing::writer(ptr, len, ch.token())? };
    Ok(RawLatestWriter {
        ring,
        local: ch.local(Side::Send),
    })
}

fn reader<T: Pod + Send>(ch: &Channel<T>) -> Result<RawLatestReader, OpenError> {
    ch.check_kind(Kind::Latest, "reader")?;
    ch.check_here()?;
    let (ptr, len) = ch.inner.ring;
    // SAFETY: as in `writer`.
    let ring = unsafe { shmlane_ring::LatestRing::reader(ptr, len)? };
    Ok(RawLatestReader {
        ring,
        local: ch.local(Side::Recv),
    })
}

/// A writer of a byte latest-value channel. `Send`, not `Sync`.
pub struct RawLatestWriter {
    ring: shmlane_ring::LatestWriter,
    local: Local,
}

/// A reader of a byte latest-value channel. `Send`, not `Sync`.
pub struct RawLatestReader {
    pub(crate) ring: shmlane_ring::LatestReader,
    pub(crate) local: Local,
}

/// What the byte endpoints have alike: `Debug`, and the accessors read from the ring handle.
macro_rules! raw_endpoint {
    ($($t:ident),*) => {$(
        impl core::fmt::Debug for $t {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.debug_struct(stringify!($t))
                    .field("channel", &self.local.inner.name)
                    .field("ring", &self.ring)
                    .finish_non_exhaustive()
            }
        }

        impl $t {
            /// The largest value in bytes.
            pub fn value_size(&self) -> usize {
                self.ring.value_size()
            }

            /// The newest published version, one atomic load (0: never written).
            ///
            /// Real-time: no allocation, no system call.
            pub fn version(&self) -> u64 {
                self.ring.version()
            }
        }
    )*};
}
raw_endpoint!(RawLatestWriter, RawLatestReader);

impl RawLatestWriter {
    /// Publishes `bytes` (at most [`value_size`](Self::value_size)) as the newest value and
    /// returns its version (larger than every version before it). Never waits for readers or
    /// other writers; [`LatestError::Busy`] if no slot could be claimed (see there).
    ///
    /// A writer that died mid-write leaves its slot to the next writer whose ticket lands on
    /// it (reclaimed once the segment's liveness lock says the process is gone).
    ///
    /// Real-time: no allocation, no lock; one futex wake (a system call) only when a reader
    /// sleeps in `wait_changed`; a liveness check (a system call) only when the slot its
    /// ticket lands on is held by another process's writer (racing it, or dead in it).
    pub fn write(&mut self, bytes: &[u8]) -> Result<u64, LatestError> {
        let seg = &self.local.inner.seg;
        // Asked only for a slot another process's writer holds (see `write_with`).
        let alive = |t: u64| u32::try_from(t).is_ok_and(|t| seg.tag_alive(t));
        let v = self
            .ring
            .write_with(bytes, &alive)
            .map_err(|e| LatestError::from_ring(e, 0))?;
        // Statistics, and a notify of `ev-data` (a fence and a load when nobody sleeps).
        self.local.done(1, bytes.len() as u64);
        Ok(v)
    }

    /// Whether `write` wakes readers sleeping in `wait_changed` (default: the channel handle's
    /// [`Builder::wakes`]). [`Wakes::Never`](crate::Wakes::Never): `write` never makes a system
    /// call; the writer is counted in the channel header until it switches back or is dropped,
    /// and readers' `wait_changed` parks at most [`NEVER_WAKE_POLL`](crate::NEVER_WAKE_POLL)
    /// at a time meanwhile. Set it up front: switching to `Never` may wake a reader once.
    pub fn set_wakes(&mut self, wakes: crate::Wakes) {
        self.local.set_wakes(wakes);
    }

    /// The writers' side statistics (values written, wake-ups issued), this writer's
    /// published first.
    ///
    /// Real-time: reads a few words and publishes this writer's counts; no system call.
    pub fn stats(&mut self) -> crate::SideStats {
        self.local.shared_stats()
    }

    /// A writer that dies mid-write, for crash tests: claims a slot, stores part of `bytes`,
    /// and leaves the slot stuck as a dead writer would.
    #[doc(hidden)]
    pub fn write_and_die(&mut self, bytes: &[u8], words: usize) -> Result<(), LatestError> {
        self.ring
            .write_and_die(bytes, words)
            .map_err(|e| LatestError::from_ring(e, 0))
    }

    /// A writer that dies between completing its value and publishing it, for crash tests:
    /// returns the version the value would have had; the slot stays held, complete and
    /// unpublished, until a writer finds this process dead and publishes it.
    #[doc(hidden)]
    pub fn write_and_die_unpublished(&mut self, bytes: &[u8]) -> Result<u64, LatestError> {
        self.ring
            .write_and_die_unpublished(bytes)
            .map_err(|e| LatestError::from_ring(e, 0))
    }
}

impl RawLatestReader {
    fn counted(&mut self, r: Option<(usize, u64)>) -> Option<(usize, u64)> {
        if let Some((n, _)) = r {
            let st = &mut self.local.stats;
            st.messages += 1;
            st.bytes += n as u64;
            if st.messages >= STATS_EVERY {
                self.local.flush();
            }
        }
        r
    }

    /// Copies the newest value into `buf`: `(length, version)`, or `None` if never written.
    /// Never waits: [`LatestError::Busy`] after 64 tries that each raced a write. The versions
    /// a reader returns never decrease.
    ///
    /// Real-time: no allocation, no system call, at most 64 copies of the value.
    pub fn read(&mut self, buf: &mut [u8]) -> Result<Option<(usize, u64)>, LatestError> {
        let r = self
            .ring
            .read(buf)
            .map_err(|e| LatestError::from_ring(e, buf.len()))?;
        Ok(self.counted(r))
    }

    /// As [`read`](Self::read), but `None` also when the version is the one this reader last
    /// returned (one load, nothing copied).
    ///
    /// Real-time: as `read`.
    pub fn read_if_changed(&mut self, buf: &mut [u8]) -> Result<Option<(usize, u64)>, LatestError> {
        let r = self
            .ring
            .read_if_changed(buf)
            .map_err(|e| LatestError::from_ring(e, buf.len()))?;
        Ok(self.counted(r))
    }

    /// Waits until the version differs from the one this reader last returned (any version
    /// at first, if the channel was written), then reads it. `None` waits without a deadline;
    /// the deadline is tested on every turn ([`LatestError::Timeout`]). Sleeps on the futex
    /// of `ev-data` (writers wake it), re-checking at least every 50 ms.
    ///
    /// Real-time: may block and make system calls (futex wait); not for a real-time thread.
    pub fn wait_changed(
        &mut self,
        buf: &mut [u8],
        deadline: Option<Deadline>,
    ) -> Result<(usize, u64), LatestError> {
        loop {
            if let Some(r) = self.read_if_changed(buf)? {
                return Ok(r);
            }
            if deadline.as_ref().is_some_and(Deadline::is_past) {
                return Err(LatestError::Timeout);
            }
            let inner = &self.local.inner;
            let (ring, last) = (&self.ring, self.ring.last_version());
            self.local.stats.sleeps += 1;
            // As `Local::block`: parks of at most `NEVER_WAKE_POLL` while a never-waking
            // writer is attached (read on every wait; a wait parked for longer ends when
            // one appears).
            let slice = inner.park_slice(Side::Recv);
            let long = slice > super::NEVER_WAKE_POLL;
            let outcome = inner
                .ev_data
                .wait_checking(&inner.strategy, deadline, slice, || {
                    ring.version() != last || (long && inner.never_wakers(Side::Send) != 0)
                });
            if outcome == shmlane_wake::WaitOutcome::TimedOut {
                // One last look: a write may have landed as the deadline passed.
                return match self.read_if_changed(buf)? {
                    Some(r) => Ok(r),
                    None => Err(LatestError::Timeout),
                };
            }
        }
    }
}

/// A writer of a typed latest-value channel (`latest::<T>`). `Send`, not `Sync`. A
/// [`RawLatestWriter`] that writes whole `T`s: every method forwards to it.
pub struct LatestWriter<T> {
    raw: RawLatestWriter,
    _t: core::marker::PhantomData<fn(T)>,
}

/// A reader of a typed latest-value channel (`latest::<T>`). `Send`, not `Sync`. A
/// [`RawLatestReader`] that reads whole `T`s: every method forwards to it.
pub struct LatestReader<T> {
    pub(crate) raw: RawLatestReader,
    _t: core::marker::PhantomData<fn() -> T>,
}

/// What a byte read returns: `(length, version)`, `None` if there is nothing (new) to read.
type ReadResult = Result<Option<(usize, u64)>, LatestError>;

/// The typed endpoints' methods that are the byte endpoint's as they are: each defined once
/// (on the byte endpoint, `self.raw`), forwarded here with its doc line. Inlined: no cost.
macro_rules! forward {
    () => {};
    ($(#[$m:meta])* fn $f:ident(&self $(, $a:ident: $t:ty)*) $(-> $r:ty)?; $($rest:tt)*) => {
        $(#[$m])*
        #[inline]
        pub fn $f(&self $(, $a: $t)*) $(-> $r)? {
            self.raw.$f($($a),*)
        }
        forward! { $($rest)* }
    };
    ($(#[$m:meta])* fn $f:ident(&mut self $(, $a:ident: $t:ty)*) $(-> $r:ty)?; $($rest:tt)*) => {
        $(#[$m])*
        #[inline]
        pub fn $f(&mut self $(, $a: $t)*) $(-> $r)? {
            self.raw.$f($($a),*)
        }
        forward! { $($rest)* }
    };
}

macro_rules! debug_as_raw {
    ($($t:ident),*) => {$(
        impl<T> core::fmt::Debug for $t<T> {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                self.raw.fmt(f)
            }
        }
    )*};
}
debug_as_raw!(LatestWriter, LatestReader);

impl<T: Pod + Send> Channel<T> {
    /// A writer of a latest-value channel (any number, in any process).
    pub fn writer(&self) -> Result<LatestWriter<T>, OpenError> {
        Ok(LatestWriter {
            raw: writer(self)?,
            _t: core::marker::PhantomData,
        })
    }

    /// A reader of a latest-value channel (any number, in any process).
    pub fn reader(&self) -> Result<LatestReader<T>, OpenError> {
        Ok(LatestReader {
            raw: reader(self)?,
            _t: core::marker::PhantomData,
        })
    }
}

impl<T: Pod> LatestWriter<T> {
    /// Publishes `v` as the newest value; returns its version (see
    /// [`RawLatestWriter::write`]). Never waits.
    ///
    /// Real-time: no allocation, no lock; a futex wake only when a reader sleeps.
    pub fn write(&mut self, v: &T) -> Result<u64, LatestError> {
        self.raw.write(bytemuck::bytes_of(v))
    }

    forward! {
        /// As [`RawLatestWriter::version`].
        fn version(&self) -> u64;
        /// As [`RawLatestWriter::set_wakes`].
        fn set_wakes(&mut self, wakes: crate::Wakes);
        /// As [`RawLatestWriter::stats`].
        fn stats(&mut self) -> crate::SideStats;
    }

    /// A writer that dies mid-write, for crash tests (see [`RawLatestWriter`]).
    #[doc(hidden)]
    pub fn write_and_die(&mut self, v: &T, words: usize) -> Result<(), LatestError> {
        self.raw.write_and_die(bytemuck::bytes_of(v), words)
    }

    /// A writer that dies between completing `v` and publishing it, for crash tests (see
    /// [`RawLatestWriter`]).
    #[doc(hidden)]
    pub fn write_and_die_unpublished(&mut self, v: &T) -> Result<u64, LatestError> {
        self.raw.write_and_die_unpublished(bytemuck::bytes_of(v))
    }
}

impl<T: Pod> LatestReader<T> {
    /// `Corrupt` unless a value of `n` bytes is a whole `T` (a typed channel's values are).
    fn whole(n: usize) -> Result<(), LatestError> {
        if n == size_of::<T>() {
            Ok(())
        } else {
            Err(LatestError::Corrupt(
                "a value of another size than the channel's type",
            ))
        }
    }

    /// Runs a read of the byte reader into a zeroed `T`'s bytes: the value if it is whole.
    fn typed(
        &mut self,
        read: impl FnOnce(&mut RawLatestReader, &mut [u8]) -> ReadResult,
    ) -> Result<Option<(T, u64)>, LatestError> {
        let mut v = T::zeroed();
        match read(&mut self.raw, bytemuck::bytes_of_mut(&mut v))? {
            Some((n, ver)) => Self::whole(n).map(|()| Some((v, ver))),
            None => Ok(None),
        }
    }

    /// The newest value and its version; `None` if never written. Never waits
    /// ([`LatestError::Busy`] after 64 tries that each raced a write). Versions never decrease.
    ///
    /// Real-time: no allocation, no system call.
    pub fn read(&mut self) -> Result<Option<(T, u64)>, LatestError> {
        self.typed(RawLatestReader::read)
    }

    /// As [`read`](Self::read), `None` also when the version is the one last returned.
    ///
    /// Real-time: as `read`.
    pub fn read_if_changed(&mut self) -> Result<Option<(T, u64)>, LatestError> {
        self.typed(RawLatestReader::read_if_changed)
    }

    forward! {
        /// As [`RawLatestReader::version`] (one load, no system call).
        fn version(&self) -> u64;
    }

    /// Waits for a version other than the last returned, then reads it (see
    /// [`RawLatestReader::wait_changed`]); [`LatestError::Timeout`] at the deadline.
    ///
    /// Real-time: may block (futex wait); not for a real-time thread.
    pub fn wait_changed(&mut self, deadline: Option<Deadline>) -> Result<(T, u64), LatestError> {
        let mut v = T::zeroed();
        let (n, ver) = self
            .raw
            .wait_changed(bytemuck::bytes_of_mut(&mut v), deadline)?;
        Self::whole(n).map(|()| (v, ver))
    }
}
