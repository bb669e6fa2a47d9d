//! Every Rust error of the channels mapped to a status; the message keeps the Rust error's
//! text (its `Display` and its sources), which names the channel and what to do.

use crate::status::{
    Fail, SHMLANE_E_BUFFER_TOO_SMALL, SHMLANE_E_BUSY, SHMLANE_E_CLAIM, SHMLANE_E_CORRUPT,
    SHMLANE_E_DISCONNECTED, SHMLANE_E_EMPTY, SHMLANE_E_EXISTS, SHMLANE_E_FULL, SHMLANE_E_INVALID,
    SHMLANE_E_IO, SHMLANE_E_LAPPED, SHMLANE_E_MISMATCH, SHMLANE_E_NAME, SHMLANE_E_NOT_FOUND,
    SHMLANE_E_OPEN, SHMLANE_E_PEER_DIED, SHMLANE_E_PERMISSION, SHMLANE_E_ROLE_TAKEN,
    SHMLANE_E_STALE, SHMLANE_E_TIMEOUT, SHMLANE_E_TOO_LONG, SHMLANE_E_UNSUPPORTED,
    SHMLANE_E_WRONG_KIND, SHMLANE_E_WRONG_TYPE,
};
use shmlane::{ByteRecvError, ByteSendError, ConfigError, OpenError};
use shmlane_segment as seg;

/// The error's text followed by its sources' (`a: b: c`), so an OS error's errno text stays.
pub(crate) fn full_text(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        src = s.source();
    }
    text
}

fn create_status(e: &seg::CreateError) -> i32 {
    use seg::CreateError as C;
    match e {
        C::InvalidName { .. } => SHMLANE_E_NAME,
        C::InvalidSize { .. } | C::InvalidMode { .. } => SHMLANE_E_INVALID,
        C::Group { .. } | C::PermissionDenied { .. } => SHMLANE_E_PERMISSION,
        C::AlreadyExists { .. } => SHMLANE_E_EXISTS,
        C::Os { .. } => SHMLANE_E_IO,
        _ => SHMLANE_E_OPEN,
    }
}

fn seg_open_status(e: &seg::OpenError) -> i32 {
    use seg::OpenError as O;
    match e {
        O::InvalidName { .. } => SHMLANE_E_NAME,
        O::NotFound { .. } => SHMLANE_E_NOT_FOUND,
        O::UntrustedOwner { .. } | O::PermissionDenied { .. } => SHMLANE_E_PERMISSION,
        O::Truncated { .. } | O::Corrupt { .. } | O::Unsealed => SHMLANE_E_CORRUPT,
        O::VersionMismatch { .. } | O::LayoutMismatch { .. } | O::SizeMismatch { .. } => {
            SHMLANE_E_MISMATCH
        }
        O::Os { .. } => SHMLANE_E_IO,
        _ => SHMLANE_E_OPEN,
    }
}

/// The status of a failed create/open/open_or_create or endpoint open.
pub(crate) fn open_status(e: &OpenError) -> i32 {
    use shmlane_ring::AttachError as A;
    match e {
        OpenError::Create(c) | OpenError::OpenOrCreate(seg::OpenOrCreateError::Create(c)) => {
            create_status(c)
        }
        OpenError::Open(o) | OpenError::OpenOrCreate(seg::OpenOrCreateError::Open(o)) => {
            seg_open_status(o)
        }
        OpenError::Region(_)
        | OpenError::DamagedTypeRecord { .. }
        | OpenError::Event(_)
        | OpenError::Ring(A::Corrupt(_) | A::NotARing | A::Misaligned | A::RegionTooSmall { .. }) => {
            SHMLANE_E_CORRUPT
        }
        // The builder reports a channel of another kind as a `Mismatch` whose `wanted` names
        // the kind and its endpoints ("bytes (endpoints ...)"); other mismatches (capacity,
        // message size, checksums) name settings.
        OpenError::Mismatch { wanted, .. } if wanted.contains("(endpoints ") => {
            SHMLANE_E_WRONG_KIND
        }
        OpenError::Mismatch { .. } | OpenError::Ring(A::BadCapacity(_)) => SHMLANE_E_MISMATCH,
        OpenError::WrongKind { .. } | OpenError::Ring(A::WrongKind) => SHMLANE_E_WRONG_KIND,
        OpenError::WrongType { .. }
        | OpenError::NoTypeRecord(_)
        | OpenError::Ring(A::WrongElement { .. }) => SHMLANE_E_WRONG_TYPE,
        OpenError::RoleTaken { .. } | OpenError::Ring(A::RoleTaken { .. }) => SHMLANE_E_ROLE_TAKEN,
        OpenError::Config {
            error: ConfigError::Unsupported { .. },
            ..
        } => SHMLANE_E_UNSUPPORTED,
        OpenError::Config { .. } => SHMLANE_E_INVALID,
        OpenError::Stale { .. } => SHMLANE_E_STALE,
        _ => SHMLANE_E_OPEN,
    }
}

pub(crate) fn open_fail(e: &OpenError) -> Fail {
    Fail::new(open_status(e), full_text(e))
}

pub(crate) fn remove_fail(e: &seg::RemoveError) -> Fail {
    use seg::RemoveError as R;
    let status = match e {
        R::InvalidName { .. } => SHMLANE_E_NAME,
        R::NotFound { .. } => SHMLANE_E_NOT_FOUND,
        R::PermissionDenied { .. } => SHMLANE_E_PERMISSION,
        R::NotASegment { .. } => SHMLANE_E_WRONG_KIND,
        _ => SHMLANE_E_IO,
    };
    Fail::new(status, full_text(e))
}

pub(crate) fn send_status(e: &ByteSendError) -> i32 {
    match e {
        ByteSendError::TooLong { .. } => SHMLANE_E_TOO_LONG,
        ByteSendError::Full => SHMLANE_E_FULL,
        ByteSendError::Timeout => SHMLANE_E_TIMEOUT,
        ByteSendError::Disconnected => SHMLANE_E_DISCONNECTED,
        ByteSendError::PeerDied => SHMLANE_E_PEER_DIED,
        ByteSendError::ChecksumClaim => SHMLANE_E_CLAIM,
        // `Corrupt` and any variant a later shmlane adds.
        _ => SHMLANE_E_CORRUPT,
    }
}

/// Formatted in place: never allocates (the non-blocking calls' errors, docs/realtime.md).
pub(crate) fn send_fail(e: &ByteSendError) -> Fail {
    Fail::fmt(send_status(e), format_args!("{e}"))
}

pub(crate) fn recv_status(e: &ByteRecvError) -> i32 {
    match e {
        ByteRecvError::Empty => SHMLANE_E_EMPTY,
        ByteRecvError::Timeout => SHMLANE_E_TIMEOUT,
        ByteRecvError::Disconnected => SHMLANE_E_DISCONNECTED,
        ByteRecvError::PeerDied => SHMLANE_E_PEER_DIED,
        ByteRecvError::Lapped { .. } => SHMLANE_E_LAPPED,
        ByteRecvError::BufferTooSmall { .. } => SHMLANE_E_BUFFER_TOO_SMALL,
        _ => SHMLANE_E_CORRUPT,
    }
}

/// Formatted in place: never allocates (the non-blocking calls' errors, docs/realtime.md).
pub(crate) fn recv_fail(e: &ByteRecvError) -> Fail {
    Fail::fmt(recv_status(e), format_args!("{e}"))
}

pub(crate) fn latest_status(e: &shmlane::LatestError) -> i32 {
    use shmlane::LatestError as L;
    match e {
        L::Busy => SHMLANE_E_BUSY,
        L::Timeout => SHMLANE_E_TIMEOUT,
        L::TooLong { .. } => SHMLANE_E_TOO_LONG,
        L::BufferTooSmall { .. } => SHMLANE_E_BUFFER_TOO_SMALL,
        // `Corrupt` and any variant a later shmlane adds.
        _ => SHMLANE_E_CORRUPT,
    }
}

/// Formatted in place: never allocates (the latest-value calls' errors, docs/realtime.md).
pub(crate) fn latest_fail(e: &shmlane::LatestError) -> Fail {
    Fail::fmt(latest_status(e), format_args!("{e}"))
}
