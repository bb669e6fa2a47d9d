//! Finding segments, classifying them (live, idle, stale) and removing them: the data behind
//! `shmlane ls` and `shmlane rm`.
//!
//! Inspection never maps anything: it reads the header and tables with `pread` (a snapshot) and
//! asks the kernel which liveness locks are held. A file whose first bytes are not a shmlane
//! header is skipped, so listing /dev/shm shows only shmlane's segments (and its own private
//! files left by a creator that died while building one).

use std::{
    fs::{self, File, OpenOptions},
    io,
    os::{
        fd::AsFd,
        unix::fs::{FileExt, MetadataExt, OpenOptionsExt},
    },
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use crate::{
    error::{ListError, RemoveError},
    layout::{
        BackendKind, CONTROL_OFFSET, GATE_LOCK, HEADER_SIZE, HeaderProblem, INIT_READY,
        REGION_ENTRY_SIZE, RegionEntry, SLOT_ATTACHED, SLOT_LOCK_BASE, SLOT_SIZE, SegmentHeader,
    },
    regions::check_entry,
    segment::{Attachment, Location, RegionInfo, SHM_DIR, TMP_PREFIX},
    sys::{self, LockKind, sysv_rmid, sysv_stat},
};

/// A private file younger than this is a creation in progress, never stale.
const TMP_GRACE: Duration = Duration::from_secs(10);

/// How a segment stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SegmentState {
    /// A live process has it attached (or is creating it).
    Live,
    /// Nobody has it attached and everybody left cleanly: a persistent segment at rest.
    Idle,
    /// Nobody has it attached and someone died holding it, or its creator died before
    /// finishing. Safe to remove.
    Stale,
    /// Nobody has it attached and its header or tables are unusable (overwritten, another
    /// layout version): [`SegmentInfo::problem`] says why. Nothing can open it; removing it
    /// loses nothing that could be read.
    Corrupt,
    /// The file could not be read (permission denied): it may be another user's segment, or
    /// not a segment at all. Listed so that nothing in the directory is hidden.
    Unreadable,
}

impl SegmentState {
    /// `live`, `idle`, `stale`, `corrupt` or `unreadable`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Live => "live",
            Self::Idle => "idle",
            Self::Stale => "stale",
            Self::Corrupt => "corrupt",
            Self::Unreadable => "unreadable",
        }
    }
}

impl std::fmt::Display for SegmentState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What `inspect` found out about one segment file.
#[derive(Clone, Debug)]
pub struct SegmentInfo {
    /// The file name (the segment name for POSIX segments).
    pub name: String,
    /// Full path.
    pub path: PathBuf,
    /// `Posix` for a file directly under /dev/shm, `File` elsewhere (whatever the header
    /// recorded: that is how it was made, not how it is reached).
    pub backend: BackendKind,
    /// File size in bytes.
    pub size: u64,
    /// Owner uid.
    pub uid: u32,
    /// Permission bits.
    pub mode: u32,
    /// Live, idle, stale, corrupt or unreadable.
    pub state: SegmentState,
    /// The header, if it was valid.
    pub header: Option<SegmentHeader>,
    /// Why the header is unusable, if it is.
    pub problem: Option<String>,
    /// Whether the creator finished (`INIT_READY`).
    pub ready: bool,
    /// Whether this is a creator's private, unpublished file.
    pub in_progress: bool,
    /// Slots taken over from dead processes so far.
    pub unclean_detaches: u32,
    /// Attachment slots in use (alive or left by dead processes).
    pub attached: Vec<Attachment>,
    /// The region directory.
    pub regions: Vec<RegionInfo>,
}

fn read_u32(buf: &[u8], off: usize) -> u32 {
    u32::from_ne_bytes(buf[off..off + 4].try_into().expect("4 bytes"))
}

fn describe(p: HeaderProblem) -> String {
    match p {
        HeaderProblem::BadMagic => {
            "header overwritten: its first bytes are not shmlane's magic number".to_owned()
        }
        HeaderProblem::Version(v) => format!("layout version {v}"),
        HeaderProblem::Layout(f) => format!("layout fingerprint {f:#x}"),
        HeaderProblem::Size { header, actual } => {
            format!("header says {header} bytes, file has {actual}")
        }
        HeaderProblem::Corrupt(r) => r.to_owned(),
    }
}

/// Inspects one file. `Ok(None)` when it is not a shmlane segment. With `skip_gate`, the
/// caller holds the gate lock itself (a cleaner), so the gate is not counted as a live user.
fn inspect_file(path: &Path, file: &File, skip_gate: bool) -> io::Result<Option<SegmentInfo>> {
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        return Ok(None);
    }
    let name = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let in_progress = name.starts_with(TMP_PREFIX);
    let size = meta.len();
    let mut head = vec![0u8; HEADER_SIZE + crate::layout::CONTROL_SIZE];
    let got = read_full(file, &mut head, 0)?;
    let magic_ok = got >= HEADER_SIZE && head[..8] == crate::layout::MAGIC;
    let fd = file.as_fd();
    let gate_held =
        !skip_gate && sys::is_locked_by_other(fd, GATE_LOCK, LockKind::Exclusive).unwrap_or(false);
    // A header that was overwritten (zeroed, random bytes) still leaves a shmlane segment
    // recognisable by its control block (a finished creation) or by its users' gate locks: it
    // is listed as corrupt, so that it can be seen and removed (it was skipped as foreign).
    let damaged = !magic_ok
        && (gate_held
            || got >= CONTROL_OFFSET + 4 && read_u32(&head, CONTROL_OFFSET) == INIT_READY);
    if !magic_ok && !in_progress && !damaged {
        return Ok(None);
    }
    let mut info = SegmentInfo {
        name,
        path: path.to_path_buf(),
        backend: if path.parent() == Some(Path::new(SHM_DIR)) {
            BackendKind::Posix
        } else {
            BackendKind::File
        },
        size,
        uid: meta.uid(),
        mode: meta.mode() & 0o7777,
        state: SegmentState::Stale,
        header: None,
        problem: None,
        ready: false,
        in_progress,
        unclean_detaches: 0,
        attached: Vec::new(),
        regions: Vec::new(),
    };
    if got == head.len() && magic_ok {
        let h: SegmentHeader = bytemuck::pod_read_unaligned(&head[..HEADER_SIZE]);
        info.ready = read_u32(&head, CONTROL_OFFSET) == INIT_READY;
        info.unclean_detaches = read_u32(&head, CONTROL_OFFSET + 12);
        match h.validate(size) {
            Ok(()) => {
                // The backend is where the file is (a segment made by `shm_open` and found
                // with `ls --dir` is opened as a file there), not what its header recorded.
                info.header = Some(h);
                let region_count = read_u32(&head, CONTROL_OFFSET + 8);
                read_tables(file, &h, region_count, &mut info)?;
            }
            Err(p) => info.problem = Some(describe(p)),
        }
    } else if damaged {
        info.problem = Some(describe(HeaderProblem::BadMagic));
    } else if !in_progress {
        info.problem = Some("file shorter than a shmlane header".to_owned());
    }
    let any_alive = info.attached.iter().any(|a| a.alive);
    info.state = if gate_held || any_alive {
        SegmentState::Live
    } else if in_progress {
        // A creator may be between O_EXCL and taking its lock: give it a grace period.
        let age = meta
            .modified()
            .ok()
            .and_then(|m| SystemTime::now().duration_since(m).ok())
            .unwrap_or_default();
        if age < TMP_GRACE {
            SegmentState::Live
        } else {
            SegmentState::Stale
        }
    } else if info.problem.is_some() {
        SegmentState::Corrupt
    } else if !info.ready || !info.attached.is_empty() {
        SegmentState::Stale
    } else {
        SegmentState::Idle
    };
    Ok(Some(info))
}

fn read_full(file: &File, buf: &mut [u8], off: u64) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], off + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

fn read_tables(
    file: &File,
    h: &SegmentHeader,
    region_count: u32,
    info: &mut SegmentInfo,
) -> io::Result<()> {
    // The header was validated: the counts are within limits and the tables lie below
    // data_offset <= size, so these reads are bounded.
    let mut slots = vec![0u8; h.max_attach as usize * SLOT_SIZE];
    if read_full(file, &mut slots, h.slots_offset)? != slots.len() {
        info.problem = Some("slot table truncated".to_owned());
        return Ok(());
    }
    for i in 0..h.max_attach {
        let s = &slots[i as usize * SLOT_SIZE..(i as usize + 1) * SLOT_SIZE];
        if read_u32(s, 0) != SLOT_ATTACHED {
            continue;
        }
        let alive = sys::is_locked_by_other(
            file.as_fd(),
            SLOT_LOCK_BASE + i64::from(i),
            LockKind::Exclusive,
        )
        .unwrap_or(false);
        info.attached.push(Attachment {
            slot: i,
            pid: read_u32(s, 4),
            role: read_u32(s, 8),
            alive,
        });
    }
    let count = region_count.min(h.max_regions);
    let mut dir = vec![0u8; count as usize * REGION_ENTRY_SIZE];
    read_full(file, &mut dir, h.regions_offset)?;
    for i in 0..count as usize {
        let e: RegionEntry =
            bytemuck::pod_read_unaligned(&dir[i * REGION_ENTRY_SIZE..(i + 1) * REGION_ENTRY_SIZE]);
        match check_entry(&e, h.data_offset, h.total_size) {
            Ok(r) => info.regions.push(r),
            Err(e) => {
                info.problem = Some(e.to_string());
                break;
            }
        }
    }
    Ok(())
}

fn open_for_inspect(path: &Path, write: bool) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
}

/// Whether `path` is a regular file (not followed if a link), asked before opening it:
/// opening a device can act (a watchdog, a tape, a terminal), and a FIFO or device in a
/// listed directory is never a segment (review revn). Its `fstat` is checked again after.
fn is_regular(path: &Path) -> io::Result<bool> {
    Ok(fs::symlink_metadata(path)?.file_type().is_file())
}

/// Inspects the segment at `path`; `Ok(None)` if it is not a shmlane segment.
pub fn inspect(path: &Path) -> io::Result<Option<SegmentInfo>> {
    if !is_regular(path)? {
        return Ok(None);
    }
    let file = open_for_inspect(path, false)?;
    inspect_file(path, &file, false)
}

/// Inspects the named segment at `loc` (a POSIX name, or a file in a directory): the name is
/// checked first, so a name such as `../../etc/passwd` is refused (`InvalidInput`, the message
/// says what a valid name is) before any file is opened. `Ok(None)` if it is not a shmlane
/// segment.
pub fn inspect_at(loc: &Location) -> io::Result<Option<SegmentInfo>> {
    let invalid = |m: String| io::Error::new(io::ErrorKind::InvalidInput, m);
    loc.check_name().map_err(|reason| {
        invalid(format!(
            "invalid segment name {:?}: {reason}; {}",
            loc.display_name(),
            crate::segment::NAME_RULE
        ))
    })?;
    let path = loc
        .path()
        .ok_or_else(|| invalid(format!("{} has no file to inspect", loc.display_name())))?;
    inspect(&path)
}

/// A file that we may not read: what its metadata says.
fn unreadable(path: &Path, meta: &fs::Metadata, e: &io::Error) -> SegmentInfo {
    SegmentInfo {
        name: path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default(),
        path: path.to_path_buf(),
        backend: if path.parent() == Some(Path::new(SHM_DIR)) {
            BackendKind::Posix
        } else {
            BackendKind::File
        },
        size: meta.len(),
        uid: meta.uid(),
        mode: meta.mode() & 0o7777,
        state: SegmentState::Unreadable,
        header: None,
        problem: Some(format!(
            "cannot read it ({e}): owned by uid {}, mode {:o}; it may not be a shmlane segment",
            meta.uid(),
            meta.mode() & 0o7777
        )),
        ready: false,
        in_progress: false,
        unclean_detaches: 0,
        attached: Vec::new(),
        regions: Vec::new(),
    }
}

/// Lists the shmlane segments in `dir` (files whose header is shmlane's, segments whose header
/// was overwritten, and creators' private files), sorted by name. Regular files we may not
/// read are listed as [`SegmentState::Unreadable`] (they may be another user's segments).
pub fn list_dir(dir: &Path) -> Result<Vec<SegmentInfo>, ListError> {
    let err = |source| ListError {
        dir: dir.to_path_buf(),
        source,
    };
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(err)? {
        let entry = entry.map_err(err)?;
        let path = entry.path();
        if !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let file = match open_for_inspect(&path, false) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                if let Ok(meta) = fs::symlink_metadata(&path)
                    && meta.file_type().is_file()
                {
                    out.push(unreadable(&path, &meta, &e));
                }
                continue;
            }
            Err(_) => continue,
        };
        if let Ok(Some(info)) = inspect_file(&path, &file, false) {
            out.push(info);
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Lists the POSIX shared-memory segments (under /dev/shm).
pub fn list_posix() -> Result<Vec<SegmentInfo>, ListError> {
    list_dir(Path::new(SHM_DIR))
}

/// What [`remove_if_stale`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RemoveOutcome {
    /// It was stale and is gone.
    Removed,
    /// It was left alone because it is live or idle.
    NotStale(SegmentState),
}

fn remove_error(name: String, op: &'static str, e: io::Error) -> RemoveError {
    match e.raw_os_error() {
        Some(libc::ENOENT) => RemoveError::NotFound { name },
        Some(libc::EACCES | libc::EPERM) => RemoveError::PermissionDenied { name },
        _ => RemoveError::Os {
            name,
            op,
            source: e,
        },
    }
}

/// A creator's private file (`.shmlane-tmp.` and a valid name after it): `ls` lists it, stale
/// once its creator is gone, so a cleaner must be able to name it (review revn).
fn is_private_file(loc: &Location) -> bool {
    matches!(loc, Location::File(p) if p
        .file_name()
        .and_then(|f| f.to_str())
        .and_then(|f| f.strip_prefix(TMP_PREFIX))
        .is_some_and(|rest| crate::segment::validate_name(rest).is_ok()))
}

fn named_path(loc: &Location) -> Result<PathBuf, RemoveError> {
    // A file's name is checked as a POSIX name is: `rm` of `dir/..` never unlinks elsewhere.
    if let Err(reason) = loc.check_name()
        && !is_private_file(loc)
    {
        return Err(RemoveError::InvalidName {
            name: loc.display_name(),
            reason,
        });
    }
    loc.path().ok_or_else(|| RemoveError::NotFound {
        name: loc.display_name(),
    })
}

/// Removes a segment's name unconditionally. Processes that have it mapped keep using it; it
/// is freed when the last one unmaps it.
pub fn remove(loc: &Location) -> Result<(), RemoveError> {
    let name = loc.display_name();
    if let Location::SysV(key) = loc {
        // SAFETY: plain syscall.
        let id = unsafe { libc::shmget(*key, 0, 0) };
        if id < 0 || !sysv_rmid(id) {
            return Err(remove_error(
                name,
                "shmctl(IPC_RMID)",
                io::Error::last_os_error(),
            ));
        }
        return Ok(());
    }
    let path = named_path(loc)?;
    fs::remove_file(&path).map_err(|e| remove_error(name, "unlink", e))
}

/// Removes the segment only if it is stale. While deciding, it holds the segment's gate lock
/// exclusively, so no process can attach in between (an opener that raced us notices that the
/// name is gone and reports `NotFound`). A live or idle segment is left untouched.
///
/// A System V segment has no lock to hold: one the kernel counts as attached (`shm_nattch`),
/// including one its creator is still initialising, is live; an unfinished one nobody has
/// attached is left while its creator's pid exists (it may be between `shmget` and `shmat`).
/// The attachment count is read again just before the removal, so only a process attaching in
/// between those two system calls can lose the key (it keeps its mapping).
pub fn remove_if_stale(loc: &Location) -> Result<RemoveOutcome, RemoveError> {
    if let Location::SysV(key) = loc {
        return remove_sysv_if_stale(*key, loc.display_name());
    }
    remove_if_state(loc, &[SegmentState::Stale])
}

/// Removes a named segment if its state is one of `states` (e.g. stale or corrupt), deciding
/// under the gate lock as [`remove_if_stale`] does. A file that is not a shmlane segment
/// (neither header nor control block nor users' locks are shmlane's) is refused with
/// [`RemoveError::NotASegment`]. Not for System V segments (they have no state to lock).
pub fn remove_if_state(
    loc: &Location,
    states: &[SegmentState],
) -> Result<RemoveOutcome, RemoveError> {
    let name = loc.display_name();
    let path = named_path(loc)?;
    if !is_regular(&path).map_err(|e| remove_error(name.clone(), "stat", e))? {
        return Err(RemoveError::NotASegment { name });
    }
    let file = open_for_inspect(&path, true).map_err(|e| remove_error(name.clone(), "open", e))?;
    if !sys::try_lock(file.as_fd(), GATE_LOCK, LockKind::Exclusive)
        .map_err(|e| remove_error(name.clone(), "fcntl(F_OFD_SETLK)", e))?
    {
        return Ok(RemoveOutcome::NotStale(SegmentState::Live));
    }
    let info = inspect_file(&path, &file, true)
        .map_err(|e| remove_error(name.clone(), "read", e))?
        .ok_or_else(|| RemoveError::NotASegment { name: name.clone() })?;
    if !states.contains(&info.state) {
        return Ok(RemoveOutcome::NotStale(info.state));
    }
    // Remove the name only if it still refers to the file we inspected.
    let st = file
        .metadata()
        .map_err(|e| remove_error(name.clone(), "fstat", e))?;
    match fs::symlink_metadata(&path) {
        Ok(m) if m.dev() == st.dev() && m.ino() == st.ino() => {
            fs::remove_file(&path).map_err(|e| remove_error(name, "unlink", e))?;
            Ok(RemoveOutcome::Removed)
        }
        _ => Err(RemoveError::NotFound { name }),
    }
}

fn remove_sysv_if_stale(key: i32, name: String) -> Result<RemoveOutcome, RemoveError> {
    // A SysV segment has no locks. The kernel counts its attachments (`shm_nattch`) and detaches
    // a process that dies, so an attached segment is live, whatever its slot table says: this
    // also covers a creator still initialising it (it attaches right after `shmget`). Nobody
    // attached: it is stale when its slot table shows a process that did not detach, or its
    // creator never finished and is gone (a creator between `shmget` and `shmat` is alive, so
    // the segment is left for it).
    // SAFETY: plain syscall.
    let id = unsafe { libc::shmget(key, 0, 0) };
    if id < 0 {
        return Err(remove_error(name, "shmget", io::Error::last_os_error()));
    }
    let ds = sysv_stat(id).map_err(|e| remove_error(name.clone(), "shmctl(IPC_STAT)", e))?;
    if ds.shm_nattch > 0 {
        return Ok(RemoveOutcome::NotStale(SegmentState::Live));
    }
    let seg = match crate::Segment::sysv(key)
        .open_timeout(Duration::ZERO)
        .open()
    {
        Ok(s) => s,
        Err(crate::OpenError::NotFound { .. }) => return Err(RemoveError::NotFound { name }),
        Err(crate::OpenError::NotInitialized { .. }) => {
            // The creator's pid as the kernel recorded it, in our pid namespace (0 when it is
            // not visible from here: then we cannot tell, and leave it; likewise when /proc
            // cannot tell, see `sys::judge`).
            let creator = u32::try_from(ds.shm_cpid).unwrap_or(0);
            if creator == 0 || !sys::pid_gone(creator, ds.shm_perm.cuid) {
                return Ok(RemoveOutcome::NotStale(SegmentState::Live));
            }
            return remove_sysv_if_unattached(id, name);
        }
        Err(e) => {
            return Err(RemoveError::Os {
                name,
                op: "open",
                source: io::Error::other(e.to_string()),
            });
        }
    };
    let others_alive = seg
        .attachments()
        .iter()
        .any(|a| a.alive && a.slot != seg.slot());
    let dead_left = seg
        .attachments()
        .iter()
        .any(|a| !a.alive && a.slot != seg.slot());
    drop(seg);
    if others_alive {
        return Ok(RemoveOutcome::NotStale(SegmentState::Live));
    }
    if !dead_left {
        return Ok(RemoveOutcome::NotStale(SegmentState::Idle));
    }
    remove_sysv_if_unattached(id, name)
}

/// Marks the segment for removal unless somebody attached it while we looked (SysV offers no
/// lock to hold across the check; this narrows the window to the two system calls).
fn remove_sysv_if_unattached(id: i32, name: String) -> Result<RemoveOutcome, RemoveError> {
    let ds = sysv_stat(id).map_err(|e| remove_error(name.clone(), "shmctl(IPC_STAT)", e))?;
    if ds.shm_nattch > 0 {
        return Ok(RemoveOutcome::NotStale(SegmentState::Live));
    }
    if !sysv_rmid(id) {
        return Err(remove_error(
            name,
            "shmctl(IPC_RMID)",
            io::Error::last_os_error(),
        ));
    }
    Ok(RemoveOutcome::Removed)
}
