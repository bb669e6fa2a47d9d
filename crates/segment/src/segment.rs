//! [`Segment`]: a mapped, validated shared-memory segment, and [`SegmentBuilder`], the one way
//! to create or open one.
//!
//! This file holds the types, the mapping and its accessors, and what happens on drop; each
//! part of the protocol has its own module: `create` (build privately, publish), `open` (wait
//! for the creator, validate), `regions` (the directory and its lock), `slots` (attachment
//! slots, owner tags and liveness).

use std::{
    fs, io,
    marker::PhantomData,
    os::{
        fd::{AsFd, BorrowedFd, OwnedFd},
        unix::fs::MetadataExt,
    },
    path::{Path, PathBuf},
    ptr::NonNull,
    time::Duration,
};

use memmap2::MmapRaw;

use crate::{
    layout::{BackendKind, ControlBlock, GATE_LOCK, SegmentHeader},
    sync::{AtomicU32, Ordering},
    sys::{self, LockKind, sysv_rmid, sysv_stat},
};

/// Where POSIX shared memory objects live on Linux (glibc's `shm_open` uses this directory).
pub const SHM_DIR: &str = "/dev/shm";
/// Longest accepted segment name.
pub const NAME_MAX: usize = 200;
/// Prefix of the private file a creator builds before publishing it under its name.
pub const TMP_PREFIX: &str = ".shmlane-tmp.";

/// What a valid segment name is, as error messages say it (see [`validate_name`]).
pub const NAME_RULE: &str =
    "a name is 1 to 200 characters from A-Z a-z 0-9 . _ - (no '/', not starting with '.')";

/// Checks a segment name: 1 to 200 bytes of `A-Za-z0-9._-`, not starting with '.'.
pub fn validate_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("it is empty");
    }
    if name.len() > NAME_MAX {
        return Err("it is longer than 200 bytes");
    }
    if name.contains('/') {
        return Err("it contains '/'");
    }
    if name.starts_with('.') {
        return Err("it starts with '.'");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err("it has a character other than A-Z a-z 0-9 . _ -");
    }
    Ok(())
}

/// Which object backs a segment and how to find it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// `shm_open(name)`: the file `/dev/shm/<name>`.
    Posix(String),
    /// A file at a path (a custom tmpfs, or a hugetlbfs mount for huge pages).
    File(PathBuf),
    /// An anonymous sealed memfd; the name is only a label for /proc.
    Memfd(String),
    /// `MAP_SHARED | MAP_ANONYMOUS`, shared with children created by `fork` after it.
    Anonymous,
    /// System V shared memory with this key.
    SysV(i32),
}

impl Location {
    /// The backend kind.
    pub fn kind(&self) -> BackendKind {
        match self {
            Self::Posix(_) => BackendKind::Posix,
            Self::File(_) => BackendKind::File,
            Self::Memfd(_) => BackendKind::Memfd,
            Self::Anonymous => BackendKind::Anonymous,
            Self::SysV(_) => BackendKind::SysV,
        }
    }

    /// The path of the file behind a named segment.
    pub fn path(&self) -> Option<PathBuf> {
        match self {
            Self::Posix(n) => Some(Path::new(SHM_DIR).join(n)),
            Self::File(p) => Some(p.clone()),
            _ => None,
        }
    }

    /// A printable name for messages.
    pub fn display_name(&self) -> String {
        match self {
            Self::Posix(n) => n.clone(),
            Self::File(p) => p.display().to_string(),
            Self::Memfd(n) => format!("memfd:{n}"),
            Self::Anonymous => "anonymous".to_owned(),
            Self::SysV(k) => format!("sysv:{k:#x}"),
        }
    }

    pub(crate) fn check_name(&self) -> Result<(), &'static str> {
        match self {
            Self::Posix(n) => validate_name(n),
            Self::File(p) => match p.file_name().and_then(|f| f.to_str()) {
                Some(f) => validate_name(f),
                None => Err("the path has no valid file name"),
            },
            // memfd_create takes 249 bytes of name, and the label follows "shmlane:" (8).
            Self::Memfd(n) if n.len() > 241 || n.contains('\0') => {
                Err("a memfd label is at most 241 bytes without NUL")
            }
            _ => Ok(()),
        }
    }
}

/// When a segment's name is removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum UnlinkPolicy {
    /// Never: the segment persists until removed (`shmlane rm`, [`crate::remove`]).
    #[default]
    Never,
    /// The creating handle removes the name when it is dropped (openers never do).
    CreatorDrop,
    /// Whichever handle leaves last, cleanly, removes the name, unless a process died while
    /// attached (then the segment stays, stale, for inspection and `shmlane rm --stale`).
    LastDetach,
}

/// Configures and then creates or opens a [`Segment`].
///
/// ```no_run
/// use shmlane_segment::Segment;
/// let seg = Segment::posix("quotes").size(1 << 20).create()?;
/// let ring = seg.region("ring", 4096, 1)?;
/// assert_eq!(ring.len(), 4096);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct SegmentBuilder {
    pub(crate) loc: Location,
    pub(crate) size: Option<u64>,
    pub(crate) mode: u32,
    pub(crate) populate: bool,
    pub(crate) mlock: bool,
    pub(crate) unlink: UnlinkPolicy,
    pub(crate) open_timeout: Duration,
    pub(crate) role: u32,
    pub(crate) max_attach: u32,
    pub(crate) max_regions: u32,
    /// Group given to a created segment (`None`: the creator's).
    pub(crate) group: Option<u32>,
    /// Another user whose segments this opener accepts (`trust_owner`).
    pub(crate) trust_owner: Option<u32>,
}

/// The mapping, by how it was made.
pub(crate) enum Mapping {
    Raw(MmapRaw),
    Anon { ptr: NonNull<u8>, len: usize },
    SysV { ptr: NonNull<u8> },
}

/// A mapped shmlane segment. Dropping it releases this process's attachment slot, unmaps the
/// memory and applies the [`UnlinkPolicy`].
///
/// All access to the memory is through raw pointers and atomics: other processes write it.
pub struct Segment {
    pub(crate) map: Mapping,
    pub(crate) len: usize,
    pub(crate) fd: Option<OwnedFd>,
    pub(crate) loc: Location,
    pub(crate) kind: BackendKind,
    pub(crate) max_attach: u32,
    pub(crate) max_regions: u32,
    pub(crate) data_offset: u64,
    pub(crate) slot: u32,
    /// The generation our claim of `slot` published, kept here: the owner tag is built from
    /// this copy, never re-read from the slot, which other processes can write (a peer
    /// changing it must not change our tag nor make it look dead: review rev2).
    pub(crate) tag_gen: u32,
    pub(crate) owner_pid: u32,
    pub(crate) unlink: UnlinkPolicy,
    pub(crate) created: bool,
    pub(crate) published: bool,
    pub(crate) ident: Option<(u64, u64)>,
    pub(crate) sysv_id: Option<i32>,
    pub(crate) open_timeout: Duration,
    pub(crate) mlock: bool,
    /// Process-local: 1 while a thread of this handle holds, or is taking, the shared region
    /// directory lock (see `lock_directory`).
    pub(crate) dir_local: AtomicU32,
    /// With [`UnlinkPolicy::LastDetach`]: asked by the last handle to leave before it removes
    /// the name; `true` keeps it (see [`keep_name_if`](Segment::keep_name_if)).
    pub(crate) keep_name: Option<KeepName>,
}

/// The condition of [`Segment::keep_name_if`].
pub(crate) type KeepName = Box<dyn Fn() -> bool + Send + Sync>;

// SAFETY: the mapping is process-wide memory; every access goes through atomics or raw-pointer
// copies, so sharing the handle between threads adds no data race the type does not already
// handle. The fd and the other fields are ordinary owned data.
unsafe impl Send for Segment {}
// SAFETY: as above; no method takes `&self` and mutates non-atomic state.
unsafe impl Sync for Segment {}

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segment")
            .field("location", &self.loc)
            .field("len", &self.len)
            .field("slot", &self.slot)
            .field("created", &self.created)
            .finish_non_exhaustive()
    }
}

/// A named region inside a segment: a cache-line aligned byte range. The pointer stays valid
/// for the lifetime of the segment borrow; other processes write the memory, so use it only
/// through atomics and raw-pointer copies.
#[derive(Debug)]
pub struct Region<'a> {
    pub(crate) ptr: NonNull<u8>,
    pub(crate) len: usize,
    pub(crate) offset: u64,
    pub(crate) kind: u32,
    pub(crate) name: String,
    pub(crate) _segment: PhantomData<&'a Segment>,
}

impl Region<'_> {
    /// Start of the region (128-byte aligned).
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }
    /// Size in bytes.
    pub fn len(&self) -> usize {
        self.len
    }
    /// Whether the region is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Offset from the start of the segment.
    pub fn offset(&self) -> u64 {
        self.offset
    }
    /// The kind tag.
    pub fn kind(&self) -> u32 {
        self.kind
    }
    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// A region directory entry, copied out and validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegionInfo {
    /// The name.
    pub name: String,
    /// Offset from the start of the segment.
    pub offset: u64,
    /// Size in bytes.
    pub size: u64,
    /// Kind tag.
    pub kind: u32,
}

/// One attached (or dead-but-not-detached) process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    /// Slot index.
    pub slot: u32,
    /// Process id.
    pub pid: u32,
    /// Role tag.
    pub role: u32,
    /// Whether it is alive (kernel lock held, or pid and start time match).
    pub alive: bool,
}

pub(crate) fn io_err(e: nix::errno::Errno) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

pub(crate) fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 { p as u64 } else { 4096 }
}

/// Page size of the filesystem behind `fd`: the huge page size on hugetlbfs, else 4 KiB.
pub(crate) fn fs_page_size(fd: BorrowedFd<'_>) -> u64 {
    match nix::sys::statfs::fstatfs(fd) {
        Ok(s) if s.filesystem_type() == nix::sys::statfs::HUGETLBFS_MAGIC => {
            (s.block_size() as u64).max(page_size())
        }
        _ => page_size(),
    }
}

impl SegmentBuilder {
    fn new(loc: Location) -> Self {
        Self {
            loc,
            size: None,
            mode: 0o600,
            populate: false,
            mlock: false,
            unlink: UnlinkPolicy::Never,
            open_timeout: Duration::from_millis(500),
            role: 0,
            max_attach: 64,
            max_regions: 32,
            group: None,
            trust_owner: None,
        }
    }

    /// Usable bytes for regions (the header and tables come on top). Required to create; when
    /// opening, the segment must offer at least this much or [`OpenError::SizeMismatch`](crate::OpenError::SizeMismatch).
    pub fn size(mut self, bytes: u64) -> Self {
        self.size = Some(bytes);
        self
    }
    /// Permission bits of a created segment (default 0600), applied exactly (not masked by
    /// the umask) before anyone else can open the segment. Checked at creation
    /// ([`CreateError::InvalidMode`](crate::CreateError::InvalidMode)): the owner must be able
    /// to read and write it (so its creator can always reopen it; mode 0 is refused), other
    /// users may not write it (`o+w`: anyone could change it under its users), and the
    /// setuid, setgid and sticky bits are refused. To share with a group, use 0660 with
    /// [`group`](Self::group).
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode;
        self
    }
    /// Group of a created segment (a gid; default: the creator's group), set with `fchown`
    /// before anyone else can open it (named backends: before the name is published; SysV:
    /// before initialisation completes, which openers wait for; ignored for anonymous
    /// segments, which have no owner). The creator must belong to the group unless it is root.
    /// Openers in that group still have to trust the owner: see
    /// [`trust_owner`](Self::trust_owner).
    pub fn group(mut self, gid: u32) -> Self {
        self.group = Some(gid);
        self
    }
    /// Pre-fault every page at map time (`MAP_POPULATE` or a touch loop), so that nothing timed
    /// later pays for first touch.
    pub fn populate(mut self, yes: bool) -> Self {
        self.populate = yes;
        self
    }
    /// `mlock` the mapping so it is never paged out (needs `RLIMIT_MEMLOCK` or `CAP_IPC_LOCK`).
    pub fn mlock(mut self, yes: bool) -> Self {
        self.mlock = yes;
        self
    }
    /// When the name is removed (default [`UnlinkPolicy::Never`]).
    pub fn unlink(mut self, policy: UnlinkPolicy) -> Self {
        self.unlink = policy;
        self
    }
    /// How long an opener waits for the creator to finish (default 500 ms).
    pub fn open_timeout(mut self, t: Duration) -> Self {
        self.open_timeout = t;
        self
    }
    /// Role tag recorded in this process's attachment slot (shown by `shmlane ls`).
    pub fn role(mut self, role: u32) -> Self {
        self.role = role;
        self
    }
    /// Attachment slots of a created segment (default 64, at most 4096).
    pub fn max_attachments(mut self, n: u32) -> Self {
        self.max_attach = n;
        self
    }
    /// Region directory entries of a created segment (default 32, at most 4096).
    pub fn max_regions(mut self, n: u32) -> Self {
        self.max_regions = n;
        self
    }
    /// Accept a segment owned by user `uid` as well as this process's own (its effective uid).
    /// By default opening refuses a segment owned by another user
    /// ([`OpenError::UntrustedOwner`](crate::OpenError::UntrustedOwner)): its owner, and
    /// whoever the owner let write it (its group, with mode 0660), can change it under us or
    /// shrink it (SIGBUS). Trusting the owner trusts them. A segment writable by every user
    /// (`o+w`) is refused whatever is trusted: anyone could have written it; its owner should
    /// `chmod o-w` it. Calling it again replaces the trusted user.
    pub fn trust_owner(mut self, uid: u32) -> Self {
        self.trust_owner = Some(uid);
        self
    }

    pub(crate) fn name(&self) -> String {
        self.loc.display_name()
    }
}

impl Segment {
    /// A segment named by `shm_open` (a file under /dev/shm).
    pub fn posix(name: impl Into<String>) -> SegmentBuilder {
        SegmentBuilder::new(Location::Posix(name.into()))
    }
    /// A segment in a file at `path`: a custom tmpfs, or a hugetlbfs mount (sizes are rounded
    /// up to the huge page size).
    pub fn file(path: impl Into<PathBuf>) -> SegmentBuilder {
        SegmentBuilder::new(Location::File(path.into()))
    }
    /// A sealed memfd; hand it to another process with [`crate::send_fd`].
    pub fn memfd(label: impl Into<String>) -> SegmentBuilder {
        SegmentBuilder::new(Location::Memfd(label.into()))
    }
    /// An anonymous shared mapping, shared with children forked after creation (a child calls
    /// [`Segment::after_fork`] to attach in its own name).
    pub fn anonymous() -> SegmentBuilder {
        SegmentBuilder::new(Location::Anonymous)
    }
    /// A System V segment with this key.
    pub fn sysv(key: i32) -> SegmentBuilder {
        SegmentBuilder::new(Location::SysV(key))
    }
    /// Describes any location; for code that chooses the backend at run time.
    pub fn at(loc: Location) -> SegmentBuilder {
        SegmentBuilder::new(loc)
    }

    pub(crate) fn base(&self) -> *mut u8 {
        match &self.map {
            Mapping::Raw(m) => m.as_mut_ptr(),
            Mapping::Anon { ptr, .. } | Mapping::SysV { ptr } => ptr.as_ptr(),
        }
    }

    pub(crate) fn control(&self) -> &ControlBlock {
        // The mapping is at least HEADER_SIZE + CONTROL_SIZE bytes (checked at open, guaranteed
        // at create) and page-aligned.
        // SAFETY: so the control block is in bounds and aligned; it holds only atomics, so a
        // shared reference to memory other processes write is sound (every access is atomic).
        unsafe {
            &*self
                .base()
                .add(crate::layout::CONTROL_OFFSET)
                .cast::<ControlBlock>()
        }
    }

    /// A copy of the header, read once.
    pub fn header(&self) -> SegmentHeader {
        // SAFETY: the header is in bounds and aligned. Another process may write it, so it is
        // copied out with a volatile read and never referenced in place.
        unsafe { self.base().cast::<SegmentHeader>().read_volatile() }
    }

    pub(crate) fn lock_memory(&self) -> io::Result<()> {
        if !self.mlock {
            return Ok(());
        }
        // SAFETY: the range is our own live mapping; mlock only pins it.
        if unsafe { libc::mlock(self.base().cast(), self.len) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Maps every page of the segment into this process's page tables now, so that no
    /// page fault lands in timed or latency-critical code. `populate(true)` does this at map
    /// time; a child after `fork` starts with none of a shared mapping's pages mapped (the
    /// kernel does not copy those page-table entries), so call this in the child too.
    ///
    /// Uses `MADV_POPULATE_WRITE` (Linux 5.14+) and falls back to reading one byte per page.
    /// Never writes to the memory.
    pub fn prefault(&self) {
        // SAFETY: the range is exactly our own live mapping; MADV_POPULATE_WRITE faults the
        // pages in (writable) without changing their contents.
        let r = unsafe { libc::madvise(self.base().cast(), self.len, libc::MADV_POPULATE_WRITE) };
        // Only a kernel without MADV_POPULATE_WRITE (EINVAL) gets the touch loop: any other
        // failure (ENOMEM: no free huge page, say) would turn into SIGBUS on a touch.
        if r == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::EINVAL) {
            return;
        }
        let page = page_size() as usize;
        let mut off = 0;
        while off < self.len {
            // SAFETY: in bounds; a volatile read of one byte faults the page in without
            // writing anything another process could see.
            unsafe { self.base().add(off).read_volatile() };
            off += page;
        }
    }

    /// Total bytes mapped.
    pub fn len(&self) -> usize {
        self.len
    }
    /// Whether the mapping is empty (never, for a valid segment).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Start of the mapping. Memory other processes write: use atomics and raw copies only.
    pub fn as_ptr(&self) -> *mut u8 {
        self.base()
    }
    /// Where the segment lives.
    pub fn location(&self) -> &Location {
        &self.loc
    }
    /// The backend kind.
    pub fn backend(&self) -> BackendKind {
        self.kind
    }
    /// Whether this handle created the segment.
    pub fn created(&self) -> bool {
        self.created
    }
    /// The segment's file descriptor (fd backends), e.g. to pass a memfd with
    /// [`crate::send_fd`].
    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.fd.as_ref().map(AsFd::as_fd)
    }
    /// The open timeout this handle was built with.
    pub fn open_timeout(&self) -> Duration {
        self.open_timeout
    }
    /// Bytes available for regions in total.
    pub fn data_capacity(&self) -> u64 {
        self.len as u64 - self.data_offset
    }
    /// With [`UnlinkPolicy::LastDetach`]: the handle that leaves last asks `keep` (while it holds
    /// the segment's gate exclusively, so nobody attaches or leaves meanwhile, and the memory is
    /// still mapped) and keeps the name if it says `true`, e.g. a channel whose ring still holds
    /// unread messages. Each handle asks its own condition; set it before sharing the handle.
    pub fn keep_name_if(&mut self, keep: impl Fn() -> bool + Send + Sync + 'static) {
        self.keep_name = Some(Box::new(keep));
    }

    /// Times a slot left by a dead process was taken over.
    pub fn unclean_detaches(&self) -> u32 {
        // ORDERING: Relaxed; a statistic.
        self.control().unclean_detaches.load(Ordering::Relaxed)
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        let mine = self.owner_pid == sys::getpid();
        if mine && self.slot != u32::MAX {
            self.release_slot();
        }
        if mine && self.published {
            match self.unlink {
                UnlinkPolicy::CreatorDrop if self.created => self.remove_name(),
                UnlinkPolicy::Never | UnlinkPolicy::CreatorDrop => {}
                UnlinkPolicy::LastDetach => {
                    let last = match (&self.fd, self.sysv_id) {
                        // Drop our shared gate lock first, then try it exclusively: that
                        // succeeds only if no other attachment holds the gate. Two handles
                        // leaving at once cannot both fail (each would see the other's
                        // shared lock); at worst both succeed in turn, and the identity check
                        // in `remove_name` makes the second a no-op.
                        (Some(fd), _) => {
                            let _ = sys::unlock(fd.as_fd(), GATE_LOCK);
                            sys::try_lock(fd.as_fd(), GATE_LOCK, LockKind::Exclusive)
                                .unwrap_or(false)
                        }
                        (None, Some(id)) => sysv_stat(id).is_ok_and(|ds| ds.shm_nattch <= 1),
                        (None, None) => false,
                    };
                    // A process that died attached leaves its slot behind: keep the name
                    // then, so the segment shows as stale for inspection and
                    // `shmlane rm --stale`, instead of vanishing with the evidence.
                    // The user's condition last, asked only by the last handle (holding the gate
                    // exclusively: nobody attaches meanwhile), e.g. a channel whose ring still
                    // holds unread messages keeps its name.
                    if last
                        && self.attachments().is_empty()
                        && !self.keep_name.as_ref().is_some_and(|keep| keep())
                    {
                        self.remove_name();
                    }
                }
            }
        }
        match &self.map {
            Mapping::Raw(_) => {}
            Mapping::Anon { ptr, len } => {
                // SAFETY: our own mapping, unmapped once; no Region outlives the Segment.
                unsafe {
                    let _ = nix::sys::mman::munmap(ptr.cast(), *len);
                }
            }
            Mapping::SysV { ptr } => {
                // SAFETY: our own attachment, detached once.
                unsafe {
                    libc::shmdt(ptr.as_ptr().cast());
                }
            }
        }
    }
}

impl Segment {
    /// Removes the name if it still refers to this segment.
    fn remove_name(&self) {
        if let Some(id) = self.sysv_id {
            sysv_rmid(id);
            return;
        }
        let Some(path) = self.loc.path() else {
            return;
        };
        if let (Some((dev, ino)), Ok(m)) = (self.ident, fs::metadata(&path))
            && m.dev() == dev
            && m.ino() == ino
        {
            let _ = fs::remove_file(&path);
        }
    }
}
