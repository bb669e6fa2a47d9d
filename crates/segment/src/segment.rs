//! [`Segment`]: a mapped, validated shared-memory segment, and [`SegmentBuilder`], the one way
//! to create or open one.

use std::{
    ffi::CString,
    fs::{self, File, OpenOptions},
    io,
    marker::PhantomData,
    num::NonZeroUsize,
    os::{
        fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd},
        unix::fs::{MetadataExt, OpenOptionsExt},
    },
    path::{Path, PathBuf},
    ptr::NonNull,
    sync::atomic::AtomicU64 as StdAtomicU64,
    thread,
    time::{Duration, Instant},
};

use memmap2::{MmapOptions, MmapRaw};
use nix::{
    fcntl::OFlag,
    sys::{
        mman::{MapFlags, ProtFlags},
        stat::Mode,
    },
};

use crate::{
    error::{CreateError, OpenError, OpenOrCreateError, RegionError},
    layout::{
        BackendKind, ControlBlock, GATE_LOCK, HEADER_SIZE, HeaderProblem, INIT_READY,
        LAYOUT_VERSION, MAGIC, MAX_ATTACH_LIMIT, MAX_REGIONS_LIMIT, MAX_SEGMENT_SIZE, Offsets,
        REGION_ALIGN, REGION_ENTRY_SIZE, REGION_NAME_MAX, RegionEntry, SLOT_ATTACHED, SLOT_FREE,
        SLOT_LOCK_BASE, SLOT_SIZE, SegmentHeader, Slot, align_up, fingerprint,
    },
    sync::{AtomicU32, Ordering},
    sys::{self, LockKind},
};

/// Where POSIX shared memory objects live on Linux (glibc's `shm_open` uses this directory).
pub const SHM_DIR: &str = "/dev/shm";
/// Longest accepted segment name.
pub const NAME_MAX: usize = 200;
/// Prefix of the private file a creator builds before publishing it under its name.
pub const TMP_PREFIX: &str = ".shmlane-tmp.";

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

    fn check_name(&self) -> Result<(), &'static str> {
        match self {
            Self::Posix(n) => validate_name(n),
            Self::File(p) => match p.file_name().and_then(|f| f.to_str()) {
                Some(f) => validate_name(f),
                None => Err("the path has no valid file name"),
            },
            Self::Memfd(n) if n.len() > 249 || n.contains('\0') => {
                Err("a memfd label is at most 249 bytes without NUL")
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
    loc: Location,
    size: Option<u64>,
    mode: u32,
    populate: bool,
    mlock: bool,
    unlink: UnlinkPolicy,
    open_timeout: Duration,
    role: u32,
    max_attach: u32,
    max_regions: u32,
    trust_foreign: bool,
}

/// The mapping, by how it was made.
enum Mapping {
    Raw(MmapRaw),
    Anon { ptr: NonNull<u8>, len: usize },
    SysV { ptr: NonNull<u8> },
}

/// A mapped shmlane segment. Dropping it releases this process's attachment slot, unmaps the
/// memory and applies the [`UnlinkPolicy`].
///
/// All access to the memory is through raw pointers and atomics: other processes write it.
pub struct Segment {
    map: Mapping,
    len: usize,
    fd: Option<OwnedFd>,
    loc: Location,
    kind: BackendKind,
    max_attach: u32,
    max_regions: u32,
    data_offset: u64,
    slot: u32,
    owner_pid: u32,
    unlink: UnlinkPolicy,
    created: bool,
    published: bool,
    ident: Option<(u64, u64)>,
    sysv_id: Option<i32>,
    open_timeout: Duration,
    mlock: bool,
    /// Process-local: 1 while a thread of this handle holds, or is taking, the shared region
    /// directory lock (see `lock_directory`).
    dir_local: AtomicU32,
}

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
    ptr: NonNull<u8>,
    len: usize,
    offset: u64,
    kind: u32,
    name: String,
    _segment: PhantomData<&'a Segment>,
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

/// Validates a region entry copied out of shared memory.
pub(crate) fn check_entry(
    e: &RegionEntry,
    data_offset: u64,
    total: u64,
) -> Result<RegionInfo, RegionError> {
    let n = e.name_len as usize;
    if n == 0 || n > REGION_NAME_MAX {
        return Err(RegionError::Corrupt("region name length out of range"));
    }
    let name = std::str::from_utf8(&e.name[..n])
        .map_err(|_| RegionError::Corrupt("region name is not UTF-8"))?;
    if e.offset < data_offset || e.offset % REGION_ALIGN as u64 != 0 {
        return Err(RegionError::Corrupt("region offset misplaced"));
    }
    match e.offset.checked_add(e.size) {
        Some(end) if end <= total => {}
        _ => return Err(RegionError::Corrupt("region extends past the segment")),
    }
    Ok(RegionInfo {
        name: name.to_owned(),
        offset: e.offset,
        size: e.size,
        kind: e.kind,
    })
}

fn io_err(e: nix::errno::Errno) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 { p as u64 } else { 4096 }
}

/// Page size of the filesystem behind `fd`: the huge page size on hugetlbfs, else 4 KiB.
fn fs_page_size(fd: BorrowedFd<'_>) -> u64 {
    match nix::sys::statfs::fstatfs(fd) {
        Ok(s) if s.filesystem_type() == nix::sys::statfs::HUGETLBFS_MAGIC => {
            (s.block_size() as u64).max(page_size())
        }
        _ => page_size(),
    }
}

static TMP_COUNTER: StdAtomicU64 = StdAtomicU64::new(0);

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
            trust_foreign: false,
        }
    }

    /// Usable bytes for regions (the header and tables come on top). Required to create; when
    /// opening, the segment must offer at least this much or [`OpenError::SizeMismatch`].
    pub fn size(mut self, bytes: u64) -> Self {
        self.size = Some(bytes);
        self
    }
    /// Permission bits of a created segment (default 0600), applied exactly (not masked by
    /// the umask).
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode & 0o777;
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
    /// Accept a segment owned by another user or writable by everyone. Off by default: such a
    /// segment can be changed under us by someone we may not trust.
    pub fn trust_foreign(mut self, yes: bool) -> Self {
        self.trust_foreign = yes;
        self
    }

    fn name(&self) -> String {
        self.loc.display_name()
    }

    /// Creates the segment; fails with [`CreateError::AlreadyExists`] if the name is taken.
    pub fn create(self) -> Result<Segment, CreateError> {
        self.create_with(|_| Ok::<(), std::convert::Infallible>(()))
    }

    /// Creates the segment and runs `init` on it before anyone else can open it: the place to
    /// create regions and initialise the structures inside them.
    ///
    /// SYNC POINT: for named backends the creator builds the segment under a private name and
    /// publishes it with `link(2)` only after `init_state` is `INIT_READY`, so no opener ever
    /// sees a half-built segment; `link` fails if the name exists, which makes creation
    /// exclusive.
    pub fn create_with<F, E>(self, init: F) -> Result<Segment, CreateError>
    where
        F: FnOnce(&Segment) -> Result<(), E>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        if let Err(reason) = self.loc.check_name() {
            return Err(CreateError::InvalidName {
                name: self.name(),
                reason,
            });
        }
        let size = self.check_create_params()?;
        match self.loc.clone() {
            Location::Posix(_) | Location::File(_) => self.create_named(size, init),
            Location::Memfd(label) => self.create_memfd(&label, size, init),
            Location::Anonymous => self.create_anonymous(size, init),
            Location::SysV(key) => self.create_sysv(key, size, init),
        }
    }

    fn check_create_params(&self) -> Result<u64, CreateError> {
        let invalid = |size, reason| CreateError::InvalidSize { size, reason };
        let size = self
            .size
            .ok_or(invalid(0, "no size given: call .size(bytes)"))?;
        if size == 0 {
            return Err(invalid(0, "it is zero"));
        }
        if size > MAX_SEGMENT_SIZE / 2 {
            return Err(invalid(size, "it is larger than 512 GiB"));
        }
        if self.max_attach == 0 || self.max_attach > MAX_ATTACH_LIMIT {
            return Err(invalid(size, "max_attachments must be 1..=4096"));
        }
        if self.max_regions == 0 || self.max_regions > MAX_REGIONS_LIMIT {
            return Err(invalid(size, "max_regions must be 1..=4096"));
        }
        Ok(size)
    }

    fn total_size(&self, size: u64, page: u64) -> u64 {
        let o = Offsets::new(self.max_attach, self.max_regions);
        // Cannot overflow: size <= 512 GiB and the tables are a few hundred KiB at most.
        let want = o.data + align_up(size, REGION_ALIGN as u64).unwrap_or(size);
        align_up(want, page).unwrap_or(want)
    }

    fn create_named<F, E>(self, size: u64, init: F) -> Result<Segment, CreateError>
    where
        F: FnOnce(&Segment) -> Result<(), E>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let name = self.name();
        let final_path = self.loc.path().expect("named backend has a path");
        let dir = final_path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        if final_path.exists() {
            return Err(CreateError::AlreadyExists { name });
        }
        let base = final_path
            .file_name()
            .and_then(|f| f.to_str())
            .unwrap_or("seg");
        let tmp_name = format!(
            "{TMP_PREFIX}{base}.{}.{}",
            sys::getpid(),
            TMP_COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let tmp_path = dir.join(&tmp_name);
        let os = |op, source| CreateError::Os {
            name: self.name(),
            op,
            source,
        };
        let fd: OwnedFd = match &self.loc {
            Location::Posix(_) => nix::sys::mman::shm_open(
                format!("/{tmp_name}").as_str(),
                OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_RDWR | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(self.mode),
            )
            .map_err(io_err),
            _ => OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(self.mode)
                .custom_flags(libc::O_CLOEXEC)
                .open(&tmp_path)
                .map(OwnedFd::from),
        }
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ENOENT) => CreateError::NotFound { name: self.name() },
            Some(libc::EACCES | libc::EPERM) => CreateError::PermissionDenied {
                name: self.name(),
                source: e,
            },
            Some(libc::ENOSPC) => CreateError::NoSpace {
                name: self.name(),
                size,
                hint: "the filesystem has no free inodes or space",
                source: e,
            },
            _ => os("open(O_CREAT|O_EXCL)", e),
        })?;
        // From here on the private file is removed on every error path.
        let tmp_guard = TmpFile(Some(tmp_path.clone()));
        nix::sys::stat::fchmod(&fd, Mode::from_bits_truncate(self.mode))
            .map_err(|e| os("fchmod", io_err(e)))?;
        // The gate lock marks the file live (initialising) to `shmlane ls` and cleaners.
        sys::try_lock(fd.as_fd(), GATE_LOCK, LockKind::Shared)
            .map_err(|e| os("fcntl(F_OFD_SETLK)", e))?;
        let page = fs_page_size(fd.as_fd());
        let total = self.total_size(size, page);
        let mut seg = self.map_new_fd(fd, total, size)?;
        seg.initialise(self.role, init)?;
        // SYNC POINT: publish. Only a fully initialised segment ever carries the name.
        match fs::hard_link(&tmp_path, &final_path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(CreateError::AlreadyExists { name: self.name() });
            }
            Err(e) => return Err(os("link", e)),
        }
        drop(tmp_guard);
        let st =
            sys::fstat(seg.fd.as_ref().expect("fd backend").as_fd()).map_err(|e| os("fstat", e))?;
        seg.ident = Some((st.st_dev, st.st_ino));
        seg.published = true;
        seg.unlink = self.unlink;
        Ok(seg)
    }

    fn create_memfd<F, E>(self, label: &str, size: u64, init: F) -> Result<Segment, CreateError>
    where
        F: FnOnce(&Segment) -> Result<(), E>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let os = |op, source| CreateError::Os {
            name: self.name(),
            op,
            source,
        };
        let cname =
            CString::new(format!("shmlane:{label}")).map_err(|_| CreateError::InvalidName {
                name: label.to_owned(),
                reason: "it contains NUL",
            })?;
        let fd = nix::sys::memfd::memfd_create(
            cname.as_c_str(),
            nix::sys::memfd::MFdFlags::MFD_CLOEXEC | nix::sys::memfd::MFdFlags::MFD_ALLOW_SEALING,
        )
        .map_err(|e| os("memfd_create", io_err(e)))?;
        nix::sys::stat::fchmod(&fd, Mode::from_bits_truncate(self.mode))
            .map_err(|e| os("fchmod", io_err(e)))?;
        sys::try_lock(fd.as_fd(), GATE_LOCK, LockKind::Shared)
            .map_err(|e| os("fcntl(F_OFD_SETLK)", e))?;
        let total = self.total_size(size, page_size());
        let mut seg = self.map_new_fd(fd, total, size)?;
        // Seal before anyone else can see the fd: nobody can shrink it (SIGBUS) or grow it.
        let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
        let raw = seg.fd.as_ref().expect("memfd").as_raw_fd();
        // SAFETY: plain fcntl on a valid descriptor.
        if unsafe { libc::fcntl(raw, libc::F_ADD_SEALS, seals) } != 0 {
            return Err(os("fcntl(F_ADD_SEALS)", io::Error::last_os_error()));
        }
        seg.initialise(self.role, init)?;
        seg.published = true;
        Ok(seg)
    }

    fn create_anonymous<F, E>(self, size: u64, init: F) -> Result<Segment, CreateError>
    where
        F: FnOnce(&Segment) -> Result<(), E>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let total = self.total_size(size, page_size());
        let len = NonZeroUsize::new(total as usize).expect("total is non-zero");
        let mut flags = MapFlags::MAP_SHARED;
        if self.populate {
            flags |= MapFlags::MAP_POPULATE;
        }
        // SAFETY: a fresh anonymous mapping aliases nothing; we own it until `munmap` in Drop.
        let ptr = unsafe {
            nix::sys::mman::mmap_anonymous(
                None,
                len,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                flags,
            )
        }
        .map_err(|e| match e {
            nix::errno::Errno::ENOMEM => CreateError::NoSpace {
                name: self.name(),
                size,
                hint: "the system is out of memory",
                source: io_err(e),
            },
            e => CreateError::Os {
                name: self.name(),
                op: "mmap",
                source: io_err(e),
            },
        })?;
        let mut seg = self.segment(
            Mapping::Anon {
                ptr: ptr.cast(),
                len: total as usize,
            },
            total as usize,
            None,
        );
        seg.lock_memory().map_err(|e| self.os_create("mlock", e))?;
        seg.initialise(self.role, init)?;
        seg.published = true;
        Ok(seg)
    }

    fn create_sysv<F, E>(self, key: i32, size: u64, init: F) -> Result<Segment, CreateError>
    where
        F: FnOnce(&Segment) -> Result<(), E>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let total = self.total_size(size, page_size());
        // SAFETY: plain syscall.
        let id = unsafe {
            libc::shmget(
                key,
                total as usize,
                libc::IPC_CREAT | libc::IPC_EXCL | self.mode as libc::c_int,
            )
        };
        if id < 0 {
            let e = io::Error::last_os_error();
            return Err(match e.raw_os_error() {
                Some(libc::EEXIST) => CreateError::AlreadyExists { name: self.name() },
                Some(libc::ENOSPC | libc::ENOMEM) => CreateError::NoSpace {
                    name: self.name(),
                    size,
                    hint: "raise kernel.shmall / kernel.shmmni or remove unused SysV segments (ipcs -m)",
                    source: e,
                },
                Some(libc::EINVAL) => CreateError::InvalidSize {
                    size,
                    reason: "it exceeds kernel.shmmax",
                },
                Some(libc::EACCES | libc::EPERM) => CreateError::PermissionDenied {
                    name: self.name(),
                    source: e,
                },
                _ => self.os_create("shmget", e),
            });
        }
        let ptr = match sysv_attach(id) {
            Ok(p) => p,
            Err(e) => {
                sysv_rmid(id);
                return Err(self.os_create("shmat", e));
            }
        };
        let mut seg = self.segment(Mapping::SysV { ptr }, total as usize, None);
        seg.sysv_id = Some(id);
        // Until initialisation succeeds, a failure removes the half-built segment.
        seg.unlink = UnlinkPolicy::CreatorDrop;
        seg.published = true;
        seg.prefault();
        seg.lock_memory().map_err(|e| self.os_create("mlock", e))?;
        seg.initialise(self.role, init)?;
        seg.unlink = self.unlink;
        Ok(seg)
    }

    fn os_create(&self, op: &'static str, source: io::Error) -> CreateError {
        CreateError::Os {
            name: self.name(),
            op,
            source,
        }
    }

    fn segment(&self, map: Mapping, len: usize, fd: Option<OwnedFd>) -> Segment {
        let o = Offsets::new(self.max_attach, self.max_regions);
        Segment {
            map,
            len,
            fd,
            loc: self.loc.clone(),
            kind: self.loc.kind(),
            max_attach: self.max_attach,
            max_regions: self.max_regions,
            data_offset: o.data,
            slot: u32::MAX,
            owner_pid: sys::getpid(),
            unlink: self.unlink,
            created: true,
            published: false,
            ident: None,
            sysv_id: None,
            open_timeout: self.open_timeout,
            mlock: self.mlock,
            dir_local: AtomicU32::new(0),
        }
    }

    /// Sizes, reserves and maps a freshly created descriptor.
    fn map_new_fd(&self, fd: OwnedFd, total: u64, size: u64) -> Result<Segment, CreateError> {
        let file = File::from(fd);
        file.set_len(total)
            .map_err(|e| self.space_or_os("ftruncate", size, e))?;
        sys::reserve(file.as_fd(), total).map_err(|e| self.space_or_os("fallocate", size, e))?;
        let mut opts = MmapOptions::new();
        opts.len(total as usize);
        if self.populate {
            opts.populate();
        }
        let map = opts
            .map_raw(&file)
            .map_err(|e| self.space_or_os("mmap", size, e))?;
        let seg = self.segment(Mapping::Raw(map), total as usize, Some(OwnedFd::from(file)));
        seg.lock_memory().map_err(|e| self.os_create("mlock", e))?;
        Ok(seg)
    }

    fn space_or_os(&self, op: &'static str, size: u64, e: io::Error) -> CreateError {
        match e.raw_os_error() {
            Some(libc::ENOSPC | libc::ENOMEM | libc::EFBIG) => CreateError::NoSpace {
                name: self.name(),
                size,
                hint: "the filesystem is full: enlarge it (Docker: --shm-size; tmpfs: mount -o remount,size=...; hugetlbfs: raise vm.nr_hugepages) or remove unused segments (`shmlane rm --stale`)",
                source: e,
            },
            _ => self.os_create(op, e),
        }
    }

    /// Opens an existing segment, waiting up to the open timeout for its creator to finish.
    pub fn open(self) -> Result<Segment, OpenError> {
        if let Err(reason) = self.loc.check_name() {
            return Err(OpenError::InvalidName {
                name: self.name(),
                reason,
            });
        }
        match self.loc.clone() {
            Location::Posix(_) | Location::File(_) => self.open_named(),
            Location::SysV(key) => self.open_sysv(key),
            Location::Memfd(_) | Location::Anonymous => Err(OpenError::NotFound {
                name: format!(
                    "{} (memfd and anonymous segments have no name: use Segment::from_memfd or fork)",
                    self.name()
                ),
            }),
        }
    }

    /// Opens the segment, or creates it if it does not exist. Exactly one of any number of
    /// racing processes creates it; the others open the finished segment.
    pub fn open_or_create(self) -> Result<Segment, OpenOrCreateError> {
        self.open_or_create_with(|_| Ok::<(), std::convert::Infallible>(()))
    }

    /// [`open_or_create`](Self::open_or_create) with an initialiser that runs only if this
    /// process creates the segment. [`Segment::created`] tells which happened.
    pub fn open_or_create_with<F, E>(self, init: F) -> Result<Segment, OpenOrCreateError>
    where
        F: FnOnce(&Segment) -> Result<(), E>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let mut init = Some(init);
        loop {
            let not_found = match self.clone().open() {
                Ok(s) => return Ok(s),
                Err(e @ OpenError::NotFound { .. }) => e,
                Err(e) => return Err(e.into()),
            };
            // The initialiser is gone only if we built a segment and lost the publishing race
            // to a winner that has since been removed again: report what we saw.
            let Some(f) = init.take() else {
                return Err(not_found.into());
            };
            let mut cell = Some(f);
            match self
                .clone()
                .create_with(|s| (cell.take().expect("create_with runs init once"))(s))
            {
                Ok(s) => return Ok(s),
                // Lost the race: open the winner's segment (keeping the initialiser if it
                // did not run).
                Err(CreateError::AlreadyExists { .. }) => init = cell,
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn check_owner(&self, uid: u32, mode: u32) -> Result<(), OpenError> {
        if self.trust_foreign {
            return Ok(());
        }
        let me = sys::geteuid();
        if uid != me {
            return Err(OpenError::PermissionDenied {
                name: self.name(),
                reason: format!(
                    "it is owned by uid {uid}, not by you (uid {me}); if you trust that user, open it with trust_foreign(true)"
                ),
            });
        }
        if mode & 0o002 != 0 {
            return Err(OpenError::PermissionDenied {
                name: self.name(),
                reason: format!(
                    "its mode {mode:#o} lets every user write it; chmod o-w it, or open it with trust_foreign(true)"
                ),
            });
        }
        Ok(())
    }

    fn open_named(self) -> Result<Segment, OpenError> {
        let path = self.loc.path().expect("named backend has a path");
        let deadline = Instant::now() + self.open_timeout;
        let os = |op, source| OpenError::Os {
            name: self.name(),
            op,
            source,
        };
        loop {
            let file = match &self.loc {
                Location::Posix(n) => nix::sys::mman::shm_open(
                    format!("/{n}").as_str(),
                    OFlag::O_RDWR | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
                    Mode::empty(),
                )
                .map(File::from)
                .map_err(io_err),
                _ => OpenOptions::new()
                    .read(true)
                    .write(true)
                    .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
                    .open(&path),
            };
            let file = file.map_err(|e| match e.raw_os_error() {
                Some(libc::ENOENT) => OpenError::NotFound { name: self.name() },
                Some(libc::EACCES | libc::EPERM) => OpenError::PermissionDenied {
                    name: self.name(),
                    reason: "the OS refused read-write access; ask its owner, or check the mode with `shmlane ls`".to_owned(),
                },
                Some(libc::ELOOP) => OpenError::Corrupt {
                    name: self.name(),
                    reason: "it is a symbolic link",
                },
                _ => os("open", e),
            })?;
            let st = sys::fstat(file.as_fd()).map_err(|e| os("fstat", e))?;
            if st.st_mode & libc::S_IFMT != libc::S_IFREG {
                return Err(OpenError::Corrupt {
                    name: self.name(),
                    reason: "it is not a regular file",
                });
            }
            self.check_owner(st.st_uid, st.st_mode & 0o7777)?;
            if !sys::try_lock(file.as_fd(), GATE_LOCK, LockKind::Shared)
                .map_err(|e| os("fcntl(F_OFD_SETLK)", e))?
            {
                // A cleaner holds the gate: it is deciding whether to remove the segment.
                if Instant::now() >= deadline {
                    return Err(OpenError::BeingRemoved { name: self.name() });
                }
                thread::sleep(Duration::from_millis(1));
                continue;
            }
            // The name may have been removed or replaced between open and lock: then this fd
            // is an orphan, and we start again.
            match fs::metadata(&path) {
                Ok(m) if m.dev() == st.st_dev && m.ino() == st.st_ino => {}
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(OpenError::NotFound { name: self.name() });
                }
                Err(e) => return Err(os("stat", e)),
            }
            let actual = st.st_size as u64;
            let min = (HEADER_SIZE + crate::layout::CONTROL_SIZE) as u64;
            if actual < min {
                return Err(OpenError::Corrupt {
                    name: self.name(),
                    reason: "it is smaller than a shmlane header",
                });
            }
            if actual > MAX_SEGMENT_SIZE {
                return Err(OpenError::Corrupt {
                    name: self.name(),
                    reason: "it is larger than 1 TiB",
                });
            }
            let mut opts = MmapOptions::new();
            opts.len(actual as usize);
            if self.populate {
                opts.populate();
            }
            let map = opts.map_raw(&file).map_err(|e| os("mmap", e))?;
            let mut seg = self.segment(Mapping::Raw(map), actual as usize, Some(file.into()));
            seg.created = false;
            seg.published = true;
            seg.ident = Some((st.st_dev, st.st_ino));
            seg.finish_open(&self, deadline)?;
            return Ok(seg);
        }
    }

    fn open_sysv(self, key: i32) -> Result<Segment, OpenError> {
        let deadline = Instant::now() + self.open_timeout;
        // SAFETY: plain syscall.
        let id = unsafe { libc::shmget(key, 0, 0) };
        if id < 0 {
            let e = io::Error::last_os_error();
            return Err(match e.raw_os_error() {
                Some(libc::ENOENT) => OpenError::NotFound { name: self.name() },
                Some(libc::EACCES) => OpenError::PermissionDenied {
                    name: self.name(),
                    reason: "the OS refused access; check `ipcs -m`".to_owned(),
                },
                _ => OpenError::Os {
                    name: self.name(),
                    op: "shmget",
                    source: e,
                },
            });
        }
        let ds = sysv_stat(id).map_err(|e| OpenError::Os {
            name: self.name(),
            op: "shmctl(IPC_STAT)",
            source: e,
        })?;
        self.check_owner(ds.shm_perm.uid, u32::from(ds.shm_perm.mode) & 0o777)?;
        let actual = ds.shm_segsz as u64;
        if actual < (HEADER_SIZE + crate::layout::CONTROL_SIZE) as u64 {
            return Err(OpenError::Corrupt {
                name: self.name(),
                reason: "it is smaller than a shmlane header",
            });
        }
        let ptr = sysv_attach(id).map_err(|e| OpenError::Os {
            name: self.name(),
            op: "shmat",
            source: e,
        })?;
        let mut seg = self.segment(Mapping::SysV { ptr }, actual as usize, None);
        seg.created = false;
        seg.published = true;
        seg.sysv_id = Some(id);
        seg.finish_open(&self, deadline)?;
        Ok(seg)
    }
}

/// What our /proc says about a slot holder that recorded `pid`, `start` and `ident`.
fn holder_verdict(pid: u32, start: u64, ident: u64) -> sys::Verdict {
    sys::judge(
        &sys::proc_view(),
        sys::geteuid(),
        start,
        Some(ident),
        sys::probe(pid),
    )
}

/// Removes a private file on drop unless disarmed.
struct TmpFile(Option<PathBuf>);

impl Drop for TmpFile {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = fs::remove_file(p);
        }
    }
}

fn sysv_attach(id: i32) -> io::Result<NonNull<u8>> {
    // SAFETY: shmat with a null address lets the kernel choose; the result is checked.
    let p = unsafe { libc::shmat(id, std::ptr::null(), 0) };
    if p as isize == -1 {
        return Err(io::Error::last_os_error());
    }
    NonNull::new(p.cast()).ok_or_else(|| io::Error::other("shmat returned null"))
}

pub(crate) fn sysv_stat(id: i32) -> io::Result<libc::shmid_ds> {
    // SAFETY: shmid_ds is plain data; zeroed is valid and IPC_STAT fills it.
    let mut ds: libc::shmid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: the pointer is valid for writes of one shmid_ds.
    if unsafe { libc::shmctl(id, libc::IPC_STAT, &raw mut ds) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ds)
}

/// Marks a SysV segment for destruction once the last process detaches.
pub(crate) fn sysv_rmid(id: i32) -> bool {
    // SAFETY: IPC_RMID takes no buffer.
    unsafe { libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()) == 0 }
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

    /// Opens a memfd segment received from another process. The fd must be sealed against
    /// shrinking and growing; it is reopened through /proc so that this process's liveness
    /// lock is its own.
    pub fn from_memfd(fd: OwnedFd, role: u32) -> Result<Segment, OpenError> {
        let b = Segment::memfd("received").role(role);
        let os = |op, source| OpenError::Os {
            name: "memfd".to_owned(),
            op,
            source,
        };
        // SAFETY: plain fcntl on a valid descriptor.
        let seals = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
        if seals < 0 {
            return Err(OpenError::Unsealed);
        }
        if seals & (libc::F_SEAL_SHRINK | libc::F_SEAL_GROW)
            != libc::F_SEAL_SHRINK | libc::F_SEAL_GROW
        {
            return Err(OpenError::Unsealed);
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(format!("/proc/self/fd/{}", fd.as_raw_fd()))
            .map_err(|e| os("open(/proc/self/fd)", e))?;
        drop(fd);
        let st = sys::fstat(file.as_fd()).map_err(|e| os("fstat", e))?;
        // Only the owner matters: a memfd has no name, so its mode grants nothing to anyone
        // who was not handed the descriptor.
        b.check_owner(st.st_uid, 0)?;
        sys::try_lock(file.as_fd(), GATE_LOCK, LockKind::Shared)
            .map_err(|e| os("fcntl(F_OFD_SETLK)", e))?;
        let actual = st.st_size as u64;
        if actual < (HEADER_SIZE + crate::layout::CONTROL_SIZE) as u64 || actual > MAX_SEGMENT_SIZE
        {
            return Err(OpenError::Corrupt {
                name: "memfd".to_owned(),
                reason: "its size is not that of a shmlane segment",
            });
        }
        let map = MmapOptions::new()
            .len(actual as usize)
            .map_raw(&file)
            .map_err(|e| os("mmap", e))?;
        let mut seg = b.segment(Mapping::Raw(map), actual as usize, Some(file.into()));
        seg.created = false;
        seg.published = true;
        let deadline = Instant::now() + b.open_timeout;
        seg.finish_open(&b, deadline)?;
        Ok(seg)
    }

    fn base(&self) -> *mut u8 {
        match &self.map {
            Mapping::Raw(m) => m.as_mut_ptr(),
            Mapping::Anon { ptr, .. } | Mapping::SysV { ptr } => ptr.as_ptr(),
        }
    }

    fn control(&self) -> &ControlBlock {
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

    fn slot_ref(&self, i: u32) -> Option<&Slot> {
        if i >= self.max_attach {
            return None;
        }
        let off = crate::layout::SLOTS_OFFSET + i as usize * SLOT_SIZE;
        // SAFETY: `i < max_attach`, and the validated header guarantees the slot table lies
        // below `data_offset <= len`; slots are 32-byte aligned atomics (see `control`).
        Some(unsafe { &*self.base().add(off).cast::<Slot>() })
    }

    fn entry_ptr(&self, i: u32) -> *mut RegionEntry {
        let o = Offsets::new(self.max_attach, self.max_regions);
        // SAFETY: callers pass `i < max_regions`; the directory lies below data_offset <= len.
        unsafe {
            self.base()
                .add(o.regions as usize + i as usize * REGION_ENTRY_SIZE)
                .cast()
        }
    }

    /// A copy of the header, read once.
    pub fn header(&self) -> SegmentHeader {
        // SAFETY: the header is in bounds and aligned. Another process may write it, so it is
        // copied out with a volatile read and never referenced in place.
        unsafe { self.base().cast::<SegmentHeader>().read_volatile() }
    }

    fn write_header(&self) {
        let o = Offsets::new(self.max_attach, self.max_regions);
        let h = SegmentHeader {
            magic: MAGIC,
            layout_version: LAYOUT_VERSION,
            header_size: HEADER_SIZE as u32,
            fingerprint: fingerprint(),
            total_size: self.len as u64,
            creator_pid: sys::getpid(),
            creator_uid: sys::geteuid(),
            creator_start_ticks: sys::own_start_ticks(),
            created_unix_ns: sys::now_unix_ns(),
            backend: self.kind as u32,
            max_attach: self.max_attach,
            max_regions: self.max_regions,
            flags: 0,
            slots_offset: o.slots,
            regions_offset: o.regions,
            data_offset: o.data,
            reserved: [0; 4],
        };
        // SAFETY: in bounds and aligned; nobody else can see the segment yet (private name,
        // or SysV/anonymous openers wait for INIT_READY before reading the header).
        unsafe { self.base().cast::<SegmentHeader>().write_volatile(h) };
    }

    /// Builds the header and tables, claims the creator's slot, runs `init`, then publishes
    /// `INIT_READY`.
    fn initialise<F, E>(&mut self, role: u32, init: F) -> Result<(), CreateError>
    where
        F: FnOnce(&Segment) -> Result<(), E>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        self.write_header();
        let c = self.control();
        // ORDERING: Relaxed; all of these are published by the Release store of init_state
        // below, which openers pair with their Acquire load.
        c.dir_lock.store(0, Ordering::Relaxed);
        c.region_count.store(0, Ordering::Relaxed);
        c.unclean_detaches.store(0, Ordering::Relaxed);
        c.bump.store(self.data_offset, Ordering::Relaxed);
        c.attach_count.store(0, Ordering::Relaxed);
        self.slot = self.claim_slot(role).map_err(|()| CreateError::Os {
            name: self.loc.display_name(),
            op: "claim attachment slot",
            source: io::Error::other("no attachment slot could be locked"),
        })?;
        if let Err(e) = init(self) {
            return Err(CreateError::Init {
                name: self.loc.display_name(),
                source: e.into(),
            });
        }
        // ORDERING: Release, last store of creation. SYNC POINT: pairs with the Acquire load
        // in `finish_open` (and `list::inspect`); everything written above happens-before any
        // opener's use of the segment.
        self.control()
            .init_state
            .store(INIT_READY, Ordering::Release);
        Ok(())
    }

    /// Waits for `INIT_READY`, validates the header, claims a slot.
    fn finish_open(&mut self, b: &SegmentBuilder, deadline: Instant) -> Result<(), OpenError> {
        let name = b.name();
        // The wait began when the caller set the deadline (before opening and mapping), so the
        // reported wait covers the whole timeout.
        let start = deadline
            .checked_sub(b.open_timeout)
            .unwrap_or_else(Instant::now);
        loop {
            // ORDERING: Acquire; pairs with the creator's Release store of INIT_READY in
            // `initialise`, so the header and tables read below are complete.
            let ready = self.control().init_state.load(Ordering::Acquire) == INIT_READY;
            let magic = self.header().magic;
            if magic != MAGIC && magic != [0; 8] {
                return Err(OpenError::Corrupt {
                    name,
                    reason: "wrong magic: not a shmlane segment",
                });
            }
            if ready {
                break;
            }
            if Instant::now() >= deadline {
                return Err(OpenError::NotInitialized {
                    name,
                    waited_ms: start.elapsed().as_millis() as u64,
                });
            }
            thread::sleep(Duration::from_micros(200));
        }
        let h = self.header();
        h.validate(self.len as u64).map_err(|p| match p {
            HeaderProblem::BadMagic => OpenError::Corrupt {
                name: name.clone(),
                reason: "wrong magic: not a shmlane segment",
            },
            HeaderProblem::Version(found) => OpenError::VersionMismatch {
                name: name.clone(),
                found,
                expected: LAYOUT_VERSION,
            },
            HeaderProblem::Layout(found) => OpenError::LayoutMismatch {
                name: name.clone(),
                found,
                expected: fingerprint(),
            },
            HeaderProblem::Size { header, actual } => OpenError::SizeMismatch {
                name: name.clone(),
                expected: header,
                actual,
            },
            HeaderProblem::Corrupt(reason) => OpenError::Corrupt {
                name: name.clone(),
                reason,
            },
        })?;
        // A POSIX object is a file under /dev/shm, so either name reaches it.
        let is_file = |k| matches!(k, BackendKind::Posix | BackendKind::File);
        let compatible = h.backend == self.kind as u32
            || (is_file(self.kind) && BackendKind::from_u32(h.backend).is_some_and(is_file));
        if !compatible {
            return Err(OpenError::Corrupt {
                name,
                reason: "the header names another backend",
            });
        }
        self.max_attach = h.max_attach;
        self.max_regions = h.max_regions;
        self.data_offset = h.data_offset;
        if let Some(want) = b.size {
            let have = h.total_size - h.data_offset;
            if have < want {
                return Err(OpenError::SizeMismatch {
                    name,
                    expected: want,
                    actual: have,
                });
            }
        }
        self.lock_memory().map_err(|e| OpenError::Os {
            name: name.clone(),
            op: "mlock",
            source: e,
        })?;
        if b.populate && matches!(self.map, Mapping::SysV { .. }) {
            self.prefault();
        }
        self.slot = self
            .claim_slot(b.role)
            .map_err(|()| OpenError::TooManyAttachments {
                name,
                max: self.max_attach,
            })?;
        Ok(())
    }

    fn lock_memory(&self) -> io::Result<()> {
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

    /// Claims an attachment slot: free ones first, then ones left by dead processes.
    fn claim_slot(&self, role: u32) -> Result<u32, ()> {
        let me = sys::getpid();
        let start = sys::own_start_ticks();
        for pass in 0..2 {
            for i in 0..self.max_attach {
                let slot = self.slot_ref(i).ok_or(())?;
                // ORDERING: Acquire; pairs with the Release stores of `state` in `claim_slot`
                // and `release_slot`, so pid/start_ticks read after it are the holder's.
                let state = slot.state.load(Ordering::Acquire);
                if pass == 0 && state != SLOT_FREE {
                    continue;
                }
                if let Some(fd) = &self.fd {
                    if !sys::try_lock(
                        fd.as_fd(),
                        SLOT_LOCK_BASE + i64::from(i),
                        LockKind::Exclusive,
                    )
                    .unwrap_or(false)
                    {
                        continue;
                    }
                } else {
                    // Fd-less backends: the state word itself is the claim.
                    let free_claim = state == SLOT_FREE
                        // ORDERING: AcqRel CAS; pairs with other claimers' CAS on the same
                        // word and with `release_slot`'s Release store.
                        && slot
                            .state
                            .compare_exchange(SLOT_FREE, SLOT_ATTACHED, Ordering::AcqRel, Ordering::Relaxed)
                            .is_ok();
                    let dead_claim = pass == 1
                        && state == SLOT_ATTACHED
                        && {
                            // ORDERING: Relaxed; the generation CAS below decides the winner.
                            let g = slot.generation.load(Ordering::Relaxed);
                            // ORDERING: Relaxed; ordered after the Acquire load of `state`.
                            let pid = slot.pid.load(Ordering::Relaxed);
                            // ORDERING: as above.
                            let st = slot.start_ticks.load(Ordering::Relaxed);
                            // ORDERING: as above.
                            let ident = slot.ident.load(Ordering::Relaxed);
                            holder_verdict(pid, st, ident) == sys::Verdict::Dead
                            // ORDERING: AcqRel; among racing takers of a dead slot only one
                            // moves the generation on.
                            && slot
                                .generation
                                .compare_exchange(g, g.wrapping_add(1), Ordering::AcqRel, Ordering::Relaxed)
                                .is_ok()
                        };
                    if !free_claim && !dead_claim {
                        continue;
                    }
                }
                // ORDERING: Acquire re-read now that we hold the slot; pairs as above.
                if slot.state.load(Ordering::Acquire) == SLOT_ATTACHED
                    && (self.fd.is_some() || pass == 1)
                {
                    // Its last holder died without detaching.
                    // ORDERING: Relaxed; a statistic.
                    self.control()
                        .unclean_detaches
                        .fetch_add(1, Ordering::Relaxed);
                }
                // ORDERING: Relaxed; published by the Release store of `state` below.
                slot.pid.store(me, Ordering::Relaxed);
                // ORDERING: as above.
                slot.start_ticks.store(start, Ordering::Relaxed);
                // ORDERING: as above.
                slot.ident.store(sys::holder_ident(), Ordering::Relaxed);
                // ORDERING: as above.
                slot.role.store(role, Ordering::Relaxed);
                if self.fd.is_some() {
                    // ORDERING: Relaxed; only the lock holder writes it.
                    slot.generation.fetch_add(1, Ordering::Relaxed);
                }
                // ORDERING: Release; pairs with the Acquire loads of `state` by listers and
                // later claimers, publishing pid, start_ticks and role.
                slot.state.store(SLOT_ATTACHED, Ordering::Release);
                // ORDERING: Relaxed; a statistic.
                self.control().attach_count.fetch_add(1, Ordering::Relaxed);
                return Ok(i);
            }
        }
        Err(())
    }

    fn release_slot(&self) {
        if let Some(slot) = self.slot_ref(self.slot) {
            // ORDERING: Release; pairs with the Acquire loads of `state` in `claim_slot` and
            // the listers: a FREE slot was left cleanly.
            slot.state.store(SLOT_FREE, Ordering::Release);
            if let Some(fd) = &self.fd {
                let _ = sys::unlock(fd.as_fd(), SLOT_LOCK_BASE + i64::from(self.slot));
            }
        }
    }

    /// Call in a child after `fork`: claims an attachment slot for the child, so that the
    /// parent's slot is not released by the child's drop and the child's death is seen.
    /// For fd backends the file is reopened, so the child's locks are its own.
    ///
    /// On failure (no free slot, or the file cannot be reopened) the handle holds no slot: its
    /// drop then leaves the parent's slot alone, [`slot`](Self::slot) is `u32::MAX`,
    /// [`owner_tag`](Self::owner_tag) is 0 and [`region`](Self::region) cannot create regions
    /// (`NotAttached`); the mapping stays usable.
    pub fn after_fork(&mut self, role: u32) -> io::Result<()> {
        // The inherited slot is the parent's: never ours to use, release or name, whatever
        // happens below.
        self.slot = u32::MAX;
        // ORDERING: Relaxed; `&mut self`, and the child's only thread: no other thread of this
        // process can be taking the directory lock (a parent thread inside `region()` at the
        // fork left the flag set in the child's copy).
        self.dir_local.store(0, Ordering::Relaxed);
        if let Some(fd) = &self.fd {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_CLOEXEC)
                .open(format!("/proc/self/fd/{}", fd.as_raw_fd()))?;
            sys::try_lock(file.as_fd(), GATE_LOCK, LockKind::Shared)?;
            // Dropping the inherited descriptor does not release the parent's OFD locks: the
            // parent still holds the description open.
            self.fd = Some(file.into());
        }
        self.owner_pid = sys::getpid();
        self.created = false;
        self.unlink = UnlinkPolicy::Never;
        self.slot = self.claim_slot(role).map_err(|()| {
            io::Error::other(format!(
                "segment {} has all {} attachment slots in use by live processes; detach a process or create the segment with more slots",
                self.loc.display_name(),
                self.max_attach
            ))
        })?;
        Ok(())
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
    /// This process's attachment slot.
    pub fn slot(&self) -> u32 {
        self.slot
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
    /// Times a slot left by a dead process was taken over.
    pub fn unclean_detaches(&self) -> u32 {
        // ORDERING: Relaxed; a statistic.
        self.control().unclean_detaches.load(Ordering::Relaxed)
    }

    /// Changes the role tag of this handle's attachment slot (shown by `shmlane ls`; channels
    /// use it to find their peers).
    pub fn set_role(&self, role: u32) {
        if let Some(slot) = self.slot_ref(self.slot) {
            // ORDERING: Relaxed; an informational tag, read by listers after their Acquire
            // load of the slot state.
            slot.role.store(role, Ordering::Relaxed);
        }
    }

    /// This attachment's owner tag, for role claims and record headers: the slot (plus one, in
    /// the low 13 bits) and the low 11 bits of the generation the slot was claimed at. A later
    /// process given the same slot has another generation, so a tag left by a dead process is
    /// never taken for the new holder's (the slot number alone was: a dead producer's claim
    /// looked alive until a timeout once its slot had been reused). Fits in 24 bits.
    /// A handle that holds no slot (its `after_fork` failed) has tag 0, which is never alive.
    pub fn owner_tag(&self) -> u32 {
        if self.slot >= self.max_attach {
            return 0;
        }
        // ORDERING: Relaxed; our own slot's generation, written by our claim.
        let generation = self
            .slot_ref(self.slot)
            .map_or(0, |s| s.generation.load(Ordering::Relaxed));
        ((generation & TAG_GEN_MASK) << TAG_SLOT_BITS) | (self.slot + 1)
    }

    /// Whether the attachment that `tag` ([`owner_tag`](Self::owner_tag)) names is alive: its
    /// slot is held by a live process *and* still at the tag's generation. 0 is never alive.
    pub fn tag_alive(&self, tag: u32) -> bool {
        let slot = tag & ((1 << TAG_SLOT_BITS) - 1);
        if slot == 0 || tag >> (TAG_SLOT_BITS + 11) != 0 {
            return false;
        }
        let i = slot - 1;
        // Liveness first, then the generation: a slot re-claimed in between shows the new
        // generation, so the old holder is (rightly) reported dead.
        if !self.slot_alive(i) {
            return false;
        }
        let Some(s) = self.slot_ref(i) else {
            return false;
        };
        // ORDERING: Acquire; pairs with the claimer's Release store of `state`, after which
        // the generation it bumped is visible.
        let _ = s.state.load(Ordering::Acquire);
        // ORDERING: Relaxed; ordered by the Acquire load above.
        (s.generation.load(Ordering::Relaxed) & TAG_GEN_MASK) == tag >> TAG_SLOT_BITS
    }

    /// Whether the process in attachment slot `i` is alive. For fd backends this asks the
    /// kernel whether the slot's lock is held (exact, no pid reuse problem); otherwise it
    /// compares the stored pid and start time with /proc. A stopped (SIGSTOP) process is alive,
    /// and so is one /proc cannot judge (another pid namespace, a hidden /proc: see
    /// [`crate::process::proc_view`]).
    pub fn slot_alive(&self, i: u32) -> bool {
        let Some(slot) = self.slot_ref(i) else {
            return false;
        };
        if i == self.slot && self.owner_pid == sys::getpid() {
            return true;
        }
        match &self.fd {
            Some(fd) => sys::is_locked_by_other(
                fd.as_fd(),
                SLOT_LOCK_BASE + i64::from(i),
                LockKind::Exclusive,
            )
            .unwrap_or(true),
            None => {
                // ORDERING: Acquire; pairs with the Release store in `claim_slot`.
                slot.state.load(Ordering::Acquire) == SLOT_ATTACHED && {
                    // ORDERING: Relaxed; ordered after the Acquire load above.
                    let pid = slot.pid.load(Ordering::Relaxed);
                    // ORDERING: as above.
                    let st = slot.start_ticks.load(Ordering::Relaxed);
                    // ORDERING: as above.
                    let ident = slot.ident.load(Ordering::Relaxed);
                    holder_verdict(pid, st, ident) != sys::Verdict::Dead
                }
            }
        }
    }

    /// The attachment table: every slot that is attached, or was left attached by a process
    /// that died.
    pub fn attachments(&self) -> Vec<Attachment> {
        (0..self.max_attach)
            .filter_map(|i| {
                let s = self.slot_ref(i)?;
                // ORDERING: Acquire; pairs with the Release store in `claim_slot`.
                if s.state.load(Ordering::Acquire) != SLOT_ATTACHED {
                    return None;
                }
                Some(Attachment {
                    slot: i,
                    // ORDERING: Relaxed; ordered after the Acquire load above.
                    pid: s.pid.load(Ordering::Relaxed),
                    // ORDERING: as above.
                    role: s.role.load(Ordering::Relaxed),
                    alive: self.slot_alive(i),
                })
            })
            .collect()
    }

    fn read_entry(&self, i: u32) -> RegionEntry {
        // SAFETY: `i < max_regions` (callers check against the validated count); copied out
        // with a volatile read because other processes may write the directory.
        unsafe { self.entry_ptr(i).read_volatile() }
    }

    fn region_count(&self) -> Result<u32, RegionError> {
        // ORDERING: Acquire; pairs with the Release store in `region` that publishes each
        // entry, so entries below the count are complete.
        let n = self.control().region_count.load(Ordering::Acquire);
        if n > self.max_regions {
            return Err(RegionError::Corrupt("region count beyond the directory"));
        }
        Ok(n)
    }

    /// Every region in the directory, validated.
    pub fn regions(&self) -> Result<Vec<RegionInfo>, RegionError> {
        let n = self.region_count()?;
        (0..n)
            .map(|i| check_entry(&self.read_entry(i), self.data_offset, self.len as u64))
            .collect()
    }

    fn to_region(&self, info: RegionInfo) -> Region<'_> {
        Region {
            // SAFETY: `check_entry` proved offset + size <= len, so the pointer is in bounds
            // (and non-null, being inside a mapping).
            ptr: unsafe { NonNull::new_unchecked(self.base().add(info.offset as usize)) },
            len: info.size as usize,
            offset: info.offset,
            kind: info.kind,
            name: info.name,
            _segment: PhantomData,
        }
    }

    /// Finds an existing region.
    pub fn find_region(&self, name: &str) -> Result<Region<'_>, RegionError> {
        self.regions()?
            .into_iter()
            .find(|r| r.name == name)
            .map(|r| self.to_region(r))
            .ok_or_else(|| RegionError::NotFound(name.to_owned()))
    }

    /// Gets the region `name`, creating it (zeroed, 128-byte aligned) if it does not exist.
    /// An existing region with another size or kind is an error.
    pub fn region(&self, name: &str, size: u64, kind: u32) -> Result<Region<'_>, RegionError> {
        if name.is_empty()
            || name.len() > REGION_NAME_MAX
            || !name.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(RegionError::InvalidName(name.to_owned()));
        }
        let check = |r: RegionInfo| {
            if r.size != size {
                return Err(RegionError::SizeMismatch {
                    name: name.to_owned(),
                    existing: r.size,
                    requested: size,
                });
            }
            if r.kind != kind {
                return Err(RegionError::KindMismatch {
                    name: name.to_owned(),
                    existing: r.kind,
                    requested: kind,
                });
            }
            Ok(self.to_region(r))
        };
        if let Some(r) = self.regions()?.into_iter().find(|r| r.name == name) {
            return check(r);
        }
        let _guard = self.lock_directory()?;
        // Someone may have created it while we waited for the lock.
        if let Some(r) = self.regions()?.into_iter().find(|r| r.name == name) {
            return check(r);
        }
        let count = self.region_count()?;
        if count >= self.max_regions {
            return Err(RegionError::DirectoryFull {
                max: self.max_regions,
            });
        }
        let total = self.len as u64;
        // ORDERING: Relaxed; `bump` is only written under the directory lock, whose Acquire
        // in `lock_directory` pairs with the previous holder's Release unlock.
        let bump = self.control().bump.load(Ordering::Relaxed);
        if bump < self.data_offset || bump > total {
            return Err(RegionError::Corrupt("bump offset out of range"));
        }
        let offset = align_up(bump, REGION_ALIGN as u64).unwrap_or(u64::MAX);
        let available = total.saturating_sub(offset);
        if size > available {
            return Err(RegionError::NoSpace {
                name: name.to_owned(),
                requested: size,
                available,
            });
        }
        let mut entry = RegionEntry {
            kind,
            name_len: name.len() as u32,
            offset,
            size,
            reserved: 0,
            name: [0; REGION_NAME_MAX],
        };
        entry.name[..name.len()].copy_from_slice(name.as_bytes());
        // SAFETY: the new region [offset, offset + size) is in bounds (checked above) and
        // unused: nobody has been handed it. Zero it so every region starts zeroed even when
        // a dead holder left bytes behind.
        unsafe { std::ptr::write_bytes(self.base().add(offset as usize), 0, size as usize) };
        // SAFETY: `count < max_regions`; the entry at `count` is not yet published, and only
        // the directory-lock holder writes it.
        unsafe { self.entry_ptr(count).write_volatile(entry) };
        // ORDERING: Relaxed; published by the Release store of region_count below.
        self.control().bump.store(offset + size, Ordering::Relaxed);
        // ORDERING: Release; pairs with the Acquire load in `region_count`: the entry and the
        // zeroed region happen-before any reader that sees the new count.
        self.control()
            .region_count
            .store(count + 1, Ordering::Release);
        Ok(self.to_region(RegionInfo {
            name: name.to_owned(),
            offset,
            size,
            kind,
        }))
    }

    /// Takes the region directory lock, stealing it from a holder that is dead.
    ///
    /// The token in the shared word is this attachment's [`owner_tag`](Self::owner_tag): the
    /// slot *and* the generation it was claimed at. Threads of this handle first take turns on
    /// the handle's own `dir_local` flag, so while one holds it no other thread of this
    /// attachment holds (or is taking) the shared lock: the shared word showing our own token
    /// then can only have been left by a dead holder (an earlier holder of our slot whose
    /// generation matches ours modulo 2^11, or a hostile write), and is taken over. Any other
    /// token is waited for while [`tag_alive`](Self::tag_alive) says its attachment lives; a
    /// dead predecessor in our slot has another generation, so it is dead.
    fn lock_directory(&self) -> Result<DirGuard<'_>, RegionError> {
        let deadline = Instant::now() + DIR_LOCK_TIMEOUT;
        let me = self.owner_tag();
        if me == 0 {
            return Err(RegionError::NotAttached);
        }
        // ORDERING: Acquire on success; pairs with the Release store in `LocalTurn::drop`,
        // so the previous thread's region writes are visible (they are also published through
        // the shared lock below).
        while self
            .dir_local
            .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            if Instant::now() >= deadline {
                return Err(RegionError::Busy);
            }
            thread::sleep(Duration::from_micros(100));
        }
        let local = LocalTurn {
            flag: &self.dir_local,
        };
        let lock = &self.control().dir_lock;
        loop {
            // ORDERING: Acquire on success; pairs with the Release store in DirGuard::drop,
            // so the previous holder's entry and bump writes are visible.
            match lock.compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => {
                    return Ok(DirGuard {
                        lock,
                        _local: local,
                    });
                }
                Err(holder) => {
                    let dead = if holder == me {
                        // No thread of this handle holds it (we hold `dir_local`), unless
                        // this is a child after `fork` that has not called `after_fork`: the
                        // token is then the parent's, which may be inside `region()`.
                        self.owner_pid == sys::getpid()
                    } else {
                        !self.tag_alive(holder)
                    };
                    // ORDERING: Acquire; as above, when taking over from a dead holder.
                    if dead
                        && lock
                            .compare_exchange(holder, me, Ordering::Acquire, Ordering::Relaxed)
                            .is_ok()
                    {
                        return Ok(DirGuard {
                            lock,
                            _local: local,
                        });
                    }
                }
            }
            if Instant::now() >= deadline {
                return Err(RegionError::Busy);
            }
            thread::sleep(Duration::from_micros(100));
        }
    }
}

/// How long `region()` waits for the directory lock before `Busy`.
const DIR_LOCK_TIMEOUT: Duration = Duration::from_secs(2);

/// This handle's turn at the directory lock (the `dir_local` flag), released on drop.
struct LocalTurn<'a> {
    flag: &'a AtomicU32,
}

impl Drop for LocalTurn<'_> {
    fn drop(&mut self) {
        // ORDERING: Release; pairs with the Acquire CAS in `lock_directory`.
        self.flag.store(0, Ordering::Release);
    }
}

struct DirGuard<'a> {
    lock: &'a AtomicU32,
    // Dropped after `lock` is released (fields drop after `Drop::drop`), so another thread of
    // this handle never finds the shared word holding our token while it has the turn.
    _local: LocalTurn<'a>,
}

/// Owner tags: the slot plus one in the low bits (slots are at most 4096), then the generation.
const TAG_SLOT_BITS: u32 = 13;
const TAG_GEN_MASK: u32 = (1 << 11) - 1;

impl Drop for DirGuard<'_> {
    fn drop(&mut self) {
        // ORDERING: Release; pairs with the Acquire CAS in `lock_directory`.
        self.lock.store(0, Ordering::Release);
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
                    if last && self.attachments().is_empty() {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Owner tags carry the slot's generation: when the slot is claimed again (a later
    /// process), a tag of the earlier holder is no longer alive.
    #[test]
    fn an_owner_tag_dies_with_its_generation() {
        let name = format!("shmlane-test-{}-tags", std::process::id());
        let seg = Segment::posix(&name)
            .size(64 * 1024)
            .unlink(UnlinkPolicy::LastDetach)
            .create()
            .expect("create");
        let tag = seg.owner_tag();
        assert_eq!(tag & 0x1fff, seg.slot() + 1);
        assert!(seg.tag_alive(tag));
        assert!(!seg.tag_alive(0));
        assert!(!seg.tag_alive(tag | 1 << 30), "bits above the tag");
        // The slot re-claimed by a later process: a new generation.
        let slot = seg.slot_ref(seg.slot()).unwrap();
        // ORDERING: Relaxed; a test simulating the next claim of the slot.
        slot.generation.fetch_add(1, Ordering::Relaxed);
        assert!(!seg.tag_alive(tag), "the earlier holder's tag");
        assert!(seg.tag_alive(seg.owner_tag()));
    }

    fn dirlock_segment(label: &str) -> Segment {
        Segment::posix(format!("shmlane-test-{}-{label}", std::process::id()))
            .size(64 * 1024)
            .unlink(UnlinkPolicy::LastDetach)
            .create()
            .expect("create")
    }

    fn set_dir_lock(seg: &Segment, v: u32) {
        // ORDERING: Relaxed; a test setting up the lock word before anyone uses it.
        seg.control().dir_lock.store(v, Ordering::Relaxed);
    }

    /// A process that died holding the region directory lock, whose slot this process was then
    /// given: the lock word holds our slot at the dead holder's generation, which is not ours.
    /// It is stale, so adding a region succeeds at once instead of waiting 2 s for `Busy`
    /// (found by the segment_open fuzz target: such inputs took 4 s each).
    #[test]
    fn a_directory_lock_left_by_a_dead_predecessor_of_our_slot_is_taken_over() {
        let seg = dirlock_segment("dirlock-pred");
        let tag = seg.owner_tag();
        let predecessor = tag.wrapping_sub(1 << TAG_SLOT_BITS) & ((1 << 24) - 1);
        assert_eq!(predecessor & 0x1fff, seg.slot() + 1, "same slot");
        assert_ne!(predecessor, tag, "another generation");
        set_dir_lock(&seg, predecessor);
        let t0 = Instant::now();
        assert!(seg.region("after", 64, 1).is_ok());
        assert!(
            t0.elapsed() < Duration::from_secs(1),
            "waited for a dead holder"
        );
        // ORDERING: Relaxed; single-threaded test.
        assert_eq!(
            seg.control().dir_lock.load(Ordering::Relaxed),
            0,
            "released"
        );
    }

    /// The lock word holding our exact token while no thread of this handle is in `region()`:
    /// left by an earlier holder of our slot whose generation matched ours (modulo 2^11), or
    /// written by a hostile peer. Nobody of ours holds it (threads take turns before taking the
    /// shared lock), so it is taken over at once.
    #[test]
    fn a_directory_lock_left_under_our_own_token_is_taken_over() {
        let seg = dirlock_segment("dirlock-own");
        set_dir_lock(&seg, seg.owner_tag());
        let t0 = Instant::now();
        assert!(seg.region("after", 64, 1).is_ok());
        assert!(
            t0.elapsed() < Duration::from_secs(1),
            "waited for ourselves"
        );
        // ORDERING: Relaxed; single-threaded test.
        assert_eq!(
            seg.control().dir_lock.load(Ordering::Relaxed),
            0,
            "released"
        );
    }

    /// A lock held by another live attachment (a second handle of this same process) is waited
    /// for, not taken: `region()` returns only once the holder lets go.
    #[test]
    fn a_directory_lock_held_by_another_live_attachment_is_waited_for() {
        let seg = dirlock_segment("dirlock-live");
        let other = Segment::at(seg.location().clone()).open().expect("open");
        assert_ne!(other.slot(), seg.slot());
        set_dir_lock(&seg, other.owner_tag());
        let hold = Duration::from_millis(300);
        let t0 = Instant::now();
        std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(hold);
                // ORDERING: Release; as `DirGuard::drop`.
                other.control().dir_lock.store(0, Ordering::Release);
            });
            assert!(seg.region("after", 64, 1).is_ok());
            assert!(t0.elapsed() >= hold, "took a live holder's lock");
        });
    }
}
