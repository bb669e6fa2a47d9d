//! Creating a segment: the parameters checked, the object made and sized under a private name
//! (or anonymous, or SysV), the header and tables written, the creator's slot claimed, the
//! caller's initialiser run, `INIT_READY` stored last, and the name published with `link(2)`.

use std::{
    ffi::CString,
    fs::{self, File, OpenOptions},
    io,
    num::NonZeroUsize,
    os::{
        fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd},
        unix::fs::OpenOptionsExt,
    },
    path::{Path, PathBuf},
    sync::atomic::AtomicU64 as StdAtomicU64,
};

use memmap2::MmapOptions;
use nix::{
    fcntl::OFlag,
    sys::{
        mman::{MapFlags, ProtFlags},
        stat::Mode,
    },
};

use crate::{
    error::CreateError,
    layout::{
        GATE_LOCK, HEADER_SIZE, INIT_READY, LAYOUT_VERSION, MAGIC, MAX_ATTACH_LIMIT,
        MAX_REGIONS_LIMIT, MAX_SEGMENT_SIZE, Offsets, REGION_ALIGN, SegmentHeader, align_up,
        fingerprint,
    },
    segment::{
        Location, Mapping, Segment, SegmentBuilder, TMP_PREFIX, UnlinkPolicy, fs_page_size, io_err,
        page_size,
    },
    sync::{AtomicU32, Ordering},
    sys::{self, LockKind, sysv_attach, sysv_rmid},
};

static TMP_COUNTER: StdAtomicU64 = StdAtomicU64::new(0);

impl SegmentBuilder {
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
        self.check_mode()?;
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

    /// The mode rules of [`SegmentBuilder::mode`].
    fn check_mode(&self) -> Result<(), CreateError> {
        let mode = self.mode;
        let reason = if mode & !0o7777 != 0 {
            Some("it has bits beyond the permission bits (0o7777); use 0600, or 0660 with a group")
        } else if mode & 0o7000 != 0 {
            Some(
                "the setuid, setgid and sticky bits are refused (they mean nothing for a segment); use 0600, or 0660 with a group",
            )
        } else if mode & 0o002 != 0 {
            Some(
                "it lets every user write the segment (o+w), so anyone could change it under its users, and openers refuse such a segment; share it with a group instead (0660 and --group / SegmentBuilder::group)",
            )
        } else if mode & 0o600 != 0o600 {
            Some(
                "its owner could not read and write it, so its creator could not open it again; the owner needs rw (0600, or 0660 with a group)",
            )
        } else {
            None
        };
        match reason {
            Some(reason) => Err(CreateError::InvalidMode {
                name: self.name(),
                mode,
                reason,
            }),
            None => Ok(()),
        }
    }

    /// Gives a new segment's descriptor its group and then its mode, before anyone else can
    /// open it (the private file is 0600 until here).
    fn apply_owner_mode(&self, fd: BorrowedFd<'_>) -> Result<(), CreateError> {
        if let Some(gid) = self.group {
            nix::unistd::fchown(fd, None, Some(nix::unistd::Gid::from_raw(gid))).map_err(|e| {
                CreateError::Group {
                    name: self.name(),
                    gid,
                    source: io_err(e),
                }
            })?;
        }
        // After fchown: a chown by a process that is not root may clear mode bits.
        nix::sys::stat::fchmod(fd, Mode::from_bits_truncate(self.mode)).map_err(|e| {
            CreateError::Os {
                name: self.name(),
                op: "fchmod",
                source: io_err(e),
            }
        })
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
                // Private until `apply_owner_mode`: group and mode come before the name.
                Mode::from_bits_truncate(0o600),
            )
            .map_err(io_err),
            _ => OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o600)
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
                hint: "the filesystem has no free inodes or space".to_owned(),
                source: e,
            },
            _ => os("open(O_CREAT|O_EXCL)", e),
        })?;
        // From here on the private file is removed on every error path.
        let tmp_guard = TmpFile(Some(tmp_path.clone()));
        // SYNC POINT (permissions): the group and mode are set on the descriptor while only
        // the private name exists, so the published name never carries other permissions.
        self.apply_owner_mode(fd.as_fd())?;
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
        self.apply_owner_mode(fd.as_fd())?;
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
                hint: "the system is out of memory".to_owned(),
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
                // Private until the group and mode are set below (review revn: with the final
                // mode here, members of the creator's own group could attach in between and
                // keep their mapping).
                libc::IPC_CREAT | libc::IPC_EXCL | 0o600,
            )
        };
        if id < 0 {
            let e = io::Error::last_os_error();
            return Err(match e.raw_os_error() {
                Some(libc::EEXIST) => CreateError::AlreadyExists { name: self.name() },
                Some(libc::ENOSPC | libc::ENOMEM) => CreateError::NoSpace {
                    name: self.name(),
                    size,
                    hint: "raise kernel.shmall / kernel.shmmni or remove unused SysV segments (ipcs -m)"
                        .to_owned(),
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
        // SYNC POINT (permissions): the key is visible from `shmget` on, with mode 0600 (only
        // its creator may attach) until its group and mode are set together here; openers
        // also wait for INIT_READY, which comes after.
        if self.group.is_some() || self.mode & 0o777 != 0o600 {
            sys::sysv_set_perm(id, self.group, self.mode).map_err(|source| match self.group {
                Some(gid) => CreateError::Group {
                    name: self.name(),
                    gid,
                    source,
                },
                None => self.os_create("shmctl(IPC_SET)", source),
            })?;
        }
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

    pub(crate) fn segment(&self, map: Mapping, len: usize, fd: Option<OwnedFd>) -> Segment {
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
            tag_gen: 0,
            owner_pid: sys::getpid(),
            unlink: self.unlink,
            created: true,
            published: false,
            ident: None,
            sysv_id: None,
            open_timeout: self.open_timeout,
            mlock: self.mlock,
            dir_local: AtomicU32::new(0),
            keep_name: None,
        }
    }

    /// Sizes, reserves and maps a freshly created descriptor.
    fn map_new_fd(&self, fd: OwnedFd, total: u64, _size: u64) -> Result<Segment, CreateError> {
        let file = File::from(fd);
        file.set_len(total)
            .map_err(|e| self.space_or_os("ftruncate", total, &file, e))?;
        sys::reserve(file.as_fd(), total)
            .map_err(|e| self.space_or_os("fallocate", total, &file, e))?;
        let mut opts = MmapOptions::new();
        opts.len(total as usize);
        if self.populate {
            opts.populate();
        }
        let map = opts
            .map_raw(&file)
            .map_err(|e| self.space_or_os("mmap", total, &file, e))?;
        let seg = self.segment(Mapping::Raw(map), total as usize, Some(OwnedFd::from(file)));
        seg.lock_memory().map_err(|e| self.os_create("mlock", e))?;
        Ok(seg)
    }

    /// `total` bytes did not fit in `file`'s filesystem: the error says how much was asked
    /// and how much is free (a segment larger than the free space is not "a full
    /// filesystem").
    fn space_or_os(&self, op: &'static str, total: u64, file: &File, e: io::Error) -> CreateError {
        const FIX: &str = "enlarge the filesystem (Docker: --shm-size; tmpfs: mount -o remount,size=...; hugetlbfs: raise vm.nr_hugepages) or remove unused segments (`shmlane rm --stale`)";
        let Some(libc::ENOSPC | libc::ENOMEM | libc::EFBIG) = e.raw_os_error() else {
            return self.os_create(op, e);
        };
        let hint = match nix::sys::statvfs::fstatvfs(file) {
            Ok(st) => {
                let unit = st.fragment_size();
                let free = st.blocks_available().saturating_mul(unit);
                let size = st.blocks().saturating_mul(unit);
                if free < total {
                    format!(
                        "it needs {} and its filesystem has {} free (of {}): ask for a smaller capacity or message size, or {FIX}",
                        human(total),
                        human(free),
                        human(size)
                    )
                } else {
                    format!(
                        "it needs {}; its filesystem has {} free, but the kernel refused ({e}): a memory limit (cgroup, huge pages) may be lower than the filesystem's size",
                        human(total),
                        human(free)
                    )
                }
            }
            Err(_) => format!("the filesystem has no room for it: {FIX}"),
        };
        CreateError::NoSpace {
            name: self.name(),
            size: total,
            hint,
            source: e,
        }
    }
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

impl Segment {
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
        (self.slot, self.tag_gen) = self.claim_slot(role).map_err(|()| CreateError::Os {
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
}

/// `n` bytes for people: "64.0 GiB", or "4096 bytes".
fn human(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    // A display value: one decimal is all it keeps.
    #[allow(clippy::cast_precision_loss)]
    let mut v = n as f64;
    let mut unit = None;
    for u in UNITS {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = Some(u);
    }
    match unit {
        Some(u) => format!("{v:.1} {u}"),
        None => format!("{n} bytes"),
    }
}
