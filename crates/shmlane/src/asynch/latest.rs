//! The async latest-value reader: [`AsyncLatest::changed`] awaits a version other than the one
//! last returned, as `wait_changed` does with a thread, through the same io_uring futex wait.
//! Writers wake `ev-data` after each write (none with `Wakes::Never`: then the reader looks
//! every `NEVER_WAKE_POLL`); a writer leaving or dying leaves the value, so there is no end to
//! report and no liveness check.

use std::{
    io,
    task::{Context, Poll},
};

use bytemuck::Pod;

use super::{Endpoint, Op, TURNS_PER_POLL, Waiting};
use crate::{LatestError, LatestReader, RawLatestReader, channel::Side};

/// A latest-value reader [`AsyncLatest`] can wait on (sealed: `RawLatestReader` and
/// `LatestReader<T>`).
pub trait LatestSource: sealed::Sealed {}

mod sealed {
    pub trait Sealed {
        fn raw(&mut self) -> &mut crate::RawLatestReader;
    }
}

impl sealed::Sealed for RawLatestReader {
    fn raw(&mut self) -> &mut RawLatestReader {
        self
    }
}
impl LatestSource for RawLatestReader {}

impl<T: Pod> sealed::Sealed for LatestReader<T> {
    fn raw(&mut self) -> &mut RawLatestReader {
        &mut self.raw
    }
}
impl<T: Pod> LatestSource for LatestReader<T> {}

/// An async latest-value reader (feature `tokio`).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use shmlane::{UnlinkPolicy, asynch::AsyncLatest};
/// let name = format!("doc-async-latest-{}", std::process::id());
/// let ch = shmlane::latest::<f64>(&name).unlink(UnlinkPolicy::CreatorDrop).create()?;
/// let mut w = ch.writer()?;
/// let mut r = AsyncLatest::new(ch.reader()?)?;
/// w.write(&101.5)?; // any process
/// assert_eq!(r.changed().await?.0, 101.5);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct AsyncLatest<L: LatestSource> {
    waiting: Waiting,
    reader: L,
}

impl<L: LatestSource> Endpoint for AsyncLatest<L> {
    fn waiting(&mut self) -> &mut Waiting {
        &mut self.waiting
    }
}

impl<L: LatestSource> AsyncLatest<L> {
    /// Wraps `reader` (inside a tokio runtime with I/O and time enabled).
    pub fn new(reader: L) -> io::Result<Self> {
        Self::with_io_uring(reader, true)
    }

    /// As [`new`](Self::new); `io_uring: false` always takes the 1 ms timer fallback.
    pub fn with_io_uring(mut reader: L, io_uring: bool) -> io::Result<Self> {
        let chan = sealed::Sealed::raw(&mut reader).local.inner.clone();
        Ok(Self {
            waiting: Waiting::new(chan, Side::Recv, io_uring)?,
            reader,
        })
    }

    /// Whether its waits go through io_uring.
    pub fn uses_io_uring(&self) -> bool {
        self.waiting.wait.uses_io_uring()
    }

    /// The reader, for its non-blocking calls.
    pub fn get_mut(&mut self) -> &mut L {
        &mut self.reader
    }

    /// The reader back (any registration withdrawn).
    pub fn into_inner(self) -> L {
        let Self { waiting, reader } = self;
        drop(waiting);
        reader
    }

    /// One turn of `changed`: a new version into `buf`, or a wait for one.
    fn poll_changed(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<Result<(usize, u64), LatestError>> {
        for _ in 0..TURNS_PER_POLL {
            let raw = sealed::Sealed::raw(&mut self.reader);
            match raw.read_if_changed(buf) {
                Ok(Some(r)) => {
                    self.waiting.withdraw();
                    return Poll::Ready(Ok(r));
                }
                Ok(None) => {}
                // Writes raced every try: look again on the next turn of the runtime.
                Err(LatestError::Busy) => break,
                Err(e) => {
                    self.waiting.withdraw();
                    return Poll::Ready(Err(e));
                }
            }
            let ring = &raw.ring;
            let last = ring.last_version();
            match self.waiting.poll_wait(cx, || ring.version() != last) {
                Poll::Ready(()) => {}
                Poll::Pending => return Poll::Pending,
            }
        }
        self.waiting.withdraw();
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl AsyncLatest<RawLatestReader> {
    /// Waits for a version other than the one last returned (any, at first, if the channel was
    /// written), then copies it into `buf`: `(length, version)`. Errors as `read`'s
    /// (`BufferTooSmall`, `Corrupt`). Takes nothing before the poll that returns: cancel safe.
    pub async fn changed(&mut self, buf: &mut [u8]) -> Result<(usize, u64), LatestError> {
        let f = |me: &mut Self, cx: &mut Context<'_>| me.poll_changed(cx, buf);
        Op { ep: self, f }.await
    }
}

impl<T: Pod> AsyncLatest<LatestReader<T>> {
    /// Waits for a version other than the one last returned, then reads it: `(value,
    /// version)`. Cancel safe.
    pub async fn changed(&mut self) -> Result<(T, u64), LatestError> {
        let mut v = T::zeroed();
        let f = |me: &mut Self, cx: &mut Context<'_>| {
            me.poll_changed(cx, bytemuck::bytes_of_mut(&mut v))
        };
        let (n, ver) = Op { ep: self, f }.await?;
        if n != size_of::<T>() {
            return Err(LatestError::Corrupt(
                "a value of another size than the channel's type",
            ));
        }
        Ok((v, ver))
    }
}
