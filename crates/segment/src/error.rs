//! One error enum per operation. Every message says what went wrong and what to do about it;
//! OS errors are kept as the `source()`.

use std::{io, path::PathBuf};

/// Why a segment could not be created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CreateError {
    /// The name is empty, too long, or has a character other than `A-Za-z0-9._-`.
    #[error(
        "invalid segment name {name:?}: {reason}; use 1 to 200 characters from A-Z a-z 0-9 . _ - (no '/', not starting with '.')"
    )]
    InvalidName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The requested size is zero or absurd.
    #[error("invalid segment size {size} bytes: {reason}")]
    InvalidSize {
        /// The size as given.
        size: u64,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The permission bits asked for are refused (see `SegmentBuilder::mode`); nothing was
    /// created.
    #[error("mode {mode:#o} refused for segment {name}: {reason}")]
    InvalidMode {
        /// The name or path.
        name: String,
        /// The mode as given.
        mode: u32,
        /// What is wrong with it and what to use instead.
        reason: &'static str,
    },
    /// The segment could not be given to the group asked for; nothing was left behind.
    #[error(
        "cannot give segment {name} to group {gid}: {source}; a process that is not root can only give it to a group it belongs to (see `id`)"
    )]
    Group {
        /// The name or path.
        name: String,
        /// The group asked for.
        gid: u32,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A segment of that name exists already; it was left untouched.
    #[error(
        "segment {name} already exists; open it instead, or remove it first (`shmlane rm {name}`, or `shmlane rm --stale` if its users died)"
    )]
    AlreadyExists {
        /// The name or path.
        name: String,
    },
    /// The directory (for example a hugetlbfs mount) does not exist.
    #[error("cannot create segment {name}: the directory does not exist")]
    NotFound {
        /// The name or path.
        name: String,
    },
    /// The OS refused: permissions of the directory or the object.
    #[error(
        "permission denied creating segment {name}; check the directory's permissions and owner"
    )]
    PermissionDenied {
        /// The name or path.
        name: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// There was not enough memory in the tmpfs, hugetlbfs or SysV pool. Nothing was left behind.
    #[error("no space for a {size}-byte segment {name}: {hint}")]
    NoSpace {
        /// The name or path.
        name: String,
        /// The size that was asked for.
        size: u64,
        /// How much that is against what is free, and what to do.
        hint: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The caller's initialisation closure failed; the half-built segment was removed.
    #[error("initialising segment {name} failed: {source}")]
    Init {
        /// The name or path.
        name: String,
        /// The closure's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Any other OS error, with the call that failed.
    #[error("creating segment {name}: {op} failed: {source}")]
    Os {
        /// The name or path.
        name: String,
        /// The system call.
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// Why a segment could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The name is empty, too long, or has a character other than `A-Za-z0-9._-`.
    #[error(
        "invalid segment name {name:?}: {reason}; use 1 to 200 characters from A-Z a-z 0-9 . _ - (no '/', not starting with '.')"
    )]
    InvalidName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// No segment of that name.
    #[error("no segment named {name}; create it first (`shmlane ls` lists existing ones)")]
    NotFound {
        /// The name or path.
        name: String,
    },
    /// The segment belongs to another user, and the opener did not say it trusts that user
    /// (`SegmentBuilder::trust_owner`, `shmlane ... --trust-owner USER`).
    #[error(
        "segment {name} is owned by uid {owner}{}, not by you (uid {me}): if you trust that user, pass --trust-owner {} (Builder::trust_owner({owner}))",
        .owner_name.as_ref().map(|n| format!(" ({n})")).unwrap_or_default(),
        .owner_name.clone().unwrap_or_else(|| owner.to_string())
    )]
    UntrustedOwner {
        /// The name or path.
        name: String,
        /// The segment's owner (uid).
        owner: u32,
        /// The owner's user name, if the user database knows it.
        owner_name: Option<String>,
        /// This process's effective uid.
        me: u32,
    },
    /// The file is smaller than its header says: another process shrank (truncated) it.
    /// Mapping it whole would crash with SIGBUS on the missing pages, so it is refused.
    #[error(
        "segment {name} was truncated: its file has {actual} bytes but its header says {recorded}; a process with write access shrank it, and touching the missing pages would crash (SIGBUS): remove it (`shmlane rm {name}`) and create it again"
    )]
    Truncated {
        /// The name or path.
        name: String,
        /// The size recorded in the header at creation.
        recorded: u64,
        /// The file's size now.
        actual: u64,
    },
    /// The OS refused, or the segment is writable by everyone.
    #[error("permission denied opening segment {name}: {reason}")]
    PermissionDenied {
        /// The name or path.
        name: String,
        /// What was refused and what to do.
        reason: String,
    },
    /// The creator did not finish within the open timeout (it may have died while creating).
    #[error(
        "segment {name} was not initialised within {waited_ms} ms; its creator may have died: check `shmlane ls` and remove it with `shmlane rm --stale`"
    )]
    NotInitialized {
        /// The name or path.
        name: String,
        /// How long we waited.
        waited_ms: u64,
    },
    /// Made by another layout version of shmlane.
    #[error(
        "segment {name} has layout version {found}, this build speaks {expected}; use matching shmlane versions on both sides or recreate the segment"
    )]
    VersionMismatch {
        /// The name or path.
        name: String,
        /// The segment's version.
        found: u32,
        /// Ours.
        expected: u32,
    },
    /// Made by a build with another cache-line size, pointer width or endianness.
    #[error(
        "segment {name} has layout fingerprint {found:#x}, this build has {expected:#x} (other architecture or build settings); open it with a matching build"
    )]
    LayoutMismatch {
        /// The name or path.
        name: String,
        /// The segment's fingerprint.
        found: u64,
        /// Ours.
        expected: u64,
    },
    /// The size is not what the header says, or smaller than the caller requires.
    #[error(
        "segment {name}: expected {expected} bytes, found {actual}; it was resized, is not a shmlane segment, or was created with another size: remove and recreate it"
    )]
    SizeMismatch {
        /// The name or path.
        name: String,
        /// What the header (or the caller) expects.
        expected: u64,
        /// What there is.
        actual: u64,
    },
    /// Not a shmlane segment, or a field is out of range.
    #[error(
        "segment {name} is corrupt or not a shmlane segment ({reason}); remove it if nothing uses it"
    )]
    Corrupt {
        /// The name or path.
        name: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A memfd passed to us is not sealed against shrinking and growing.
    #[error(
        "memfd segment is not sealed against shrink/grow; refusing it (a peer could truncate it and crash us with SIGBUS)"
    )]
    Unsealed,
    /// Every attachment slot is held by a live process.
    #[error(
        "segment {name} has all {max} attachment slots in use; detach a process or create the segment with more slots"
    )]
    TooManyAttachments {
        /// The name or path.
        name: String,
        /// The slot count.
        max: u32,
    },
    /// A cleaner held the segment for longer than the open timeout.
    #[error("segment {name} is being removed by another process; try again")]
    BeingRemoved {
        /// The name or path.
        name: String,
    },
    /// Any other OS error, with the call that failed.
    #[error("opening segment {name}: {op} failed: {source}")]
    Os {
        /// The name or path.
        name: String,
        /// The system call.
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// Why `open_or_create` failed: it failed to create, or it failed to open.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenOrCreateError {
    /// Creating failed (other than because it existed).
    #[error(transparent)]
    Create(#[from] CreateError),
    /// Opening failed (other than because it was missing).
    #[error(transparent)]
    Open(#[from] OpenError),
}

/// Why a region could not be created or found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegionError {
    /// The name is empty, longer than 32 bytes, or not printable ASCII.
    #[error("invalid region name {0:?}: use 1 to 32 printable ASCII bytes")]
    InvalidName(String),
    /// The region exists with another size.
    #[error(
        "region {name} exists with size {existing}, asked for {requested}; use the same size on every side"
    )]
    SizeMismatch {
        /// The region.
        name: String,
        /// Its size.
        existing: u64,
        /// The size asked for.
        requested: u64,
    },
    /// The region exists with another kind tag.
    #[error(
        "region {name} exists with kind {existing:#x}, asked for {requested:#x}; it holds another kind of structure"
    )]
    KindMismatch {
        /// The region.
        name: String,
        /// Its kind.
        existing: u32,
        /// The kind asked for.
        requested: u32,
    },
    /// The data area has no room left.
    #[error(
        "no room for region {name} ({requested} bytes, {available} free); create the segment larger"
    )]
    NoSpace {
        /// The region.
        name: String,
        /// The size asked for.
        requested: u64,
        /// What is left.
        available: u64,
    },
    /// The region directory is full.
    #[error("the region directory is full ({max} entries); create the segment with more regions")]
    DirectoryFull {
        /// Its capacity.
        max: u32,
    },
    /// A region of that name does not exist.
    #[error("no region named {0}")]
    NotFound(String),
    /// The directory lock stayed held by a live process past the timeout.
    #[error("the region directory stayed locked by a live process; try again")]
    Busy,
    /// This handle holds no attachment slot (its `after_fork` failed), so it cannot take the
    /// directory lock.
    #[error(
        "this segment handle holds no attachment slot (after_fork failed); open the segment again to create regions"
    )]
    NotAttached,
    /// A directory entry or the bump offset is out of range.
    #[error("the region directory is corrupt ({0}); recreate the segment")]
    Corrupt(&'static str),
}

/// Why a segment could not be removed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RemoveError {
    /// The name is invalid.
    #[error(
        "invalid segment name {name:?}: {reason}; {}",
        crate::segment::NAME_RULE
    )]
    InvalidName {
        /// The name as given.
        name: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// No segment of that name.
    #[error("no segment named {name}")]
    NotFound {
        /// The name or path.
        name: String,
    },
    /// The file is not a shmlane segment (nor one whose header was overwritten).
    #[error(
        "{name} is not a shmlane segment (neither its header nor its control block is shmlane's); if it is yours, remove the file itself, or `shmlane rm --force {name}`"
    )]
    NotASegment {
        /// The name or path.
        name: String,
    },
    /// The OS refused.
    #[error("permission denied removing segment {name}; only its owner (or root) can remove it")]
    PermissionDenied {
        /// The name or path.
        name: String,
    },
    /// Any other OS error.
    #[error("removing segment {name}: {op} failed: {source}")]
    Os {
        /// The name or path.
        name: String,
        /// The system call.
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// Why a directory could not be listed.
#[derive(Debug, thiserror::Error)]
#[error("cannot list segments in {}: {source}", dir.display())]
pub struct ListError {
    /// The directory.
    pub dir: PathBuf,
    /// The OS error.
    #[source]
    pub source: io::Error,
}
