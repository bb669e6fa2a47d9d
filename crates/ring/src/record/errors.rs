//! What claiming, committing, reading and unblocking report.

/// Why a claim failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClaimError {
    /// The payload is longer than the ring's maximum record.
    BadLength {
        /// Bytes asked for.
        len: usize,
        /// The ring's largest payload.
        max: usize,
    },
    /// Not enough free space now.
    Full,
    /// The ring's positions are impossible (corrupt or hostile ring).
    Corrupt,
}

impl core::fmt::Display for ClaimError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::BadLength { len, max } => write!(
                f,
                "record of {len} bytes: this ring takes records of 0 to {max} bytes (an eighth of its capacity less the 8-byte header, and never more than 4 GiB - 8); split the message, or use a ring of at least 8 times its length"
            ),
            Self::Full => f.write_str("record ring is full"),
            Self::Corrupt => f.write_str("record ring is corrupt: impossible positions"),
        }
    }
}

impl std::error::Error for ClaimError {}

/// Why a commit failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommitError {
    /// The consumer gave up on this record (the producer was seen dead or stalled past the
    /// timeout) and skipped it; the record was not delivered.
    Unblocked,
}

impl core::fmt::Display for CommitError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("the consumer skipped this record (the producer stalled past the unblock timeout); send it again")
    }
}

impl std::error::Error for CommitError {}

/// Why a read found no record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadError {
    /// Nothing claimed after the consumer's position.
    Empty,
    /// The next record is claimed but not committed yet (or its header is not written yet).
    Pending,
    /// What the ring holds is impossible (corrupt or hostile ring).
    Corrupt(&'static str),
}

impl core::fmt::Display for ReadError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Empty => f.write_str("record ring is empty"),
            Self::Pending => f.write_str("the next record is claimed but not committed yet"),
            Self::Corrupt(why) => write!(f, "record ring is corrupt ({why})"),
        }
    }
}

impl std::error::Error for ReadError {}

/// What [`RecordConsumer::unblock`](super::RecordConsumer::unblock) did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unblock {
    /// Nothing is pending at the consumer's position.
    NothingPending,
    /// The pending claim belongs to a live producer and `force` was not given.
    StillAlive,
    /// The pending claim was turned into padding; the next read goes on after it.
    Skipped,
}
