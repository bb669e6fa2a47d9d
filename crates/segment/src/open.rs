//! Opening a segment: the object found and checked (owner, mode, type, size), the gate lock
//! taken, the name re-checked, the mapping made, `INIT_READY` awaited, the header validated
//! field by field, and a slot claimed.

use std::{
    fs::{self, File, OpenOptions},
    io,
    os::{
        fd::{AsFd, AsRawFd, OwnedFd},
        unix::fs::{MetadataExt, OpenOptionsExt},
    },
    thread,
    time::{Duration, Instant},
};

use memmap2::MmapOptions;
use nix::{fcntl::OFlag, sys::stat::Mode};

use crate::{
    error::{CreateError, OpenError, OpenOrCreateError},
    layout::{
        BackendKind, GATE_LOCK, HEADER_SIZE, HeaderProblem, INIT_READY, LAYOUT_VERSION, MAGIC,
        MAX_SEGMENT_SIZE, fingerprint,
    },
    segment::{Location, Mapping, Segment, SegmentBuilder, io_err},
    sync::Ordering,
    sys::{self, LockKind, sysv_attach, sysv_stat},
};

impl SegmentBuilder {
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

    /// Refuses a segment owned by a user other than us and the one trusted with
    /// [`trust_owner`](SegmentBuilder::trust_owner), and one that every user may write.
    fn check_owner(&self, uid: u32, mode: u32) -> Result<(), OpenError> {
        let me = sys::geteuid();
        if uid != me && self.trust_owner != Some(uid) {
            return Err(OpenError::UntrustedOwner {
                name: self.name(),
                owner: uid,
                owner_name: sys::user_name(uid),
                me,
            });
        }
        // Trusting the owner does not cover this: any user could have written it.
        if mode & 0o002 != 0 {
            return Err(OpenError::PermissionDenied {
                name: self.name(),
                reason: format!(
                    "its mode {mode:#o} lets every user write it, so anyone could have changed it (trusting its owner does not cover that); its owner should `chmod o-w` it"
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
        let mode = u32::from(ds.shm_perm.mode) & 0o777;
        self.check_owner(ds.shm_perm.uid, mode)?;
        // Its creator keeps the owner's rights (IPC_SET, IPC_RMID) and may give the segment
        // to any uid, keeping its own mapping: a segment another user created is that user's
        // even when it names us its owner (review revn).
        if ds.shm_perm.cuid != ds.shm_perm.uid {
            self.check_owner(ds.shm_perm.cuid, mode)?;
        }
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

impl Segment {
    /// Opens a memfd segment received from another process. The fd must be sealed against
    /// shrinking and growing; it is reopened through /proc so that this process's liveness
    /// lock is its own. A memfd owned by another user is refused
    /// ([`OpenError::UntrustedOwner`]); to accept one, use
    /// `Segment::memfd("label").role(role).trust_owner(uid).open_memfd(fd)`.
    pub fn from_memfd(fd: OwnedFd, role: u32) -> Result<Segment, OpenError> {
        Segment::memfd("received").role(role).open_memfd(fd)
    }
}

impl SegmentBuilder {
    /// Opens a memfd segment received from another process with this builder's role, open
    /// timeout and [`trust_owner`](Self::trust_owner) (see [`Segment::from_memfd`]).
    pub fn open_memfd(self, fd: OwnedFd) -> Result<Segment, OpenError> {
        let b = self;
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
            .map_err(|e| match e.raw_os_error() {
                // Reopening checks the memfd's mode against this user (review revn): a memfd
                // created 0600 by another user cannot be opened here, trusted or not.
                Some(libc::EACCES | libc::EPERM) => {
                    let (uid, mode) = sys::fstat(fd.as_fd())
                        .map_or((u32::MAX, 0), |st| (st.st_uid, st.st_mode & 0o7777));
                    OpenError::PermissionDenied {
                        name: "memfd".to_owned(),
                        reason: format!(
                            "it belongs to uid {uid} with mode {mode:o}, which does not let this user (uid {}) read and write it; its creator must give it a group of this user's and mode 0660 (Segment::memfd(..).mode(0o660).group(gid))",
                            sys::geteuid()
                        ),
                    }
                }
                _ => os("open(/proc/self/fd)", e),
            })?;
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
}

impl Segment {
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
            // Shrunk under its header: mapping the recorded size would SIGBUS.
            HeaderProblem::Size { header, actual } if actual < header => OpenError::Truncated {
                name: name.clone(),
                recorded: header,
                actual,
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
        (self.slot, self.tag_gen) =
            self.claim_slot(b.role)
                .map_err(|()| OpenError::TooManyAttachments {
                    name,
                    max: self.max_attach,
                })?;
        Ok(())
    }
}
