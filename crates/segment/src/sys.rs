//! Thin wrappers over the system calls the segment needs and std does not offer: open file
//! description (OFD) byte-range locks, space reservation, and process identity.

use std::{
    fs, io,
    os::fd::{AsRawFd, BorrowedFd},
    ptr::NonNull,
    time::{SystemTime, UNIX_EPOCH},
};

use crate::sync::{AtomicU32, AtomicU64, Ordering};

/// Shared or exclusive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockKind {
    /// Many holders (`F_RDLCK`).
    Shared,
    /// One holder (`F_WRLCK`).
    Exclusive,
}

fn flock_for(kind: libc::c_short, byte: i64) -> libc::flock {
    // SAFETY: `flock` is plain old data; all-zero is a valid value (l_pid must be 0 for OFD
    // locks, which zeroing guarantees).
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = byte;
    fl.l_len = 1;
    fl
}

fn lock_type(kind: LockKind) -> libc::c_short {
    match kind {
        LockKind::Shared => libc::F_RDLCK as libc::c_short,
        LockKind::Exclusive => libc::F_WRLCK as libc::c_short,
    }
}

/// Tries to take an OFD lock on one byte without blocking. `Ok(false)` when another open file
/// description holds a conflicting lock.
///
/// OFD locks belong to the open file description, not the process: closing another descriptor
/// of the same file does not drop them (the classic POSIX-lock pitfall), and the kernel drops
/// them when the last descriptor of the description closes, which includes process death.
pub fn try_lock(fd: BorrowedFd<'_>, byte: i64, kind: LockKind) -> io::Result<bool> {
    let fl = flock_for(lock_type(kind), byte);
    // SAFETY: F_OFD_SETLK reads a valid `flock` through the pointer, which outlives the call.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_OFD_SETLK, &raw const fl) };
    if r == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EAGAIN | libc::EACCES) => Ok(false),
        _ => Err(e),
    }
}

/// Releases an OFD lock on one byte.
pub fn unlock(fd: BorrowedFd<'_>, byte: i64) -> io::Result<()> {
    let fl = flock_for(libc::F_UNLCK as libc::c_short, byte);
    // SAFETY: as in `try_lock`.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_OFD_SETLK, &raw const fl) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether some other open file description holds a lock that conflicts with `kind` on `byte`.
pub fn is_locked_by_other(fd: BorrowedFd<'_>, byte: i64, kind: LockKind) -> io::Result<bool> {
    let mut fl = flock_for(lock_type(kind), byte);
    // SAFETY: F_OFD_GETLK reads and writes a valid `flock` through the pointer.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_OFD_GETLK, &raw mut fl) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fl.l_type != libc::F_UNLCK as libc::c_short)
}

/// Reserves `len` bytes of backing store so that a full tmpfs or hugetlbfs fails here with
/// `ENOSPC` instead of raising SIGBUS at first touch.
pub fn reserve(fd: BorrowedFd<'_>, len: u64) -> io::Result<()> {
    // SAFETY: plain syscall on a valid descriptor.
    let r = unsafe { libc::fallocate(fd.as_raw_fd(), 0, 0, len as libc::off_t) };
    if r == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EOPNOTSUPP) {
        // SAFETY: as above; glibc emulates the reservation by writing.
        let r = unsafe { libc::posix_fallocate(fd.as_raw_fd(), 0, len as libc::off_t) };
        return if r == 0 {
            Ok(())
        } else {
            Err(io::Error::from_raw_os_error(r))
        };
    }
    Err(e)
}

/// Start time of `pid` in clock ticks since boot (/proc/PID/stat field 22), or `None` if it
/// does not exist.
pub fn process_start_ticks(pid: u32) -> Option<u64> {
    match probe(pid) {
        Probe::Found { start, .. } => Some(start),
        Probe::Missing | Probe::Unreadable => None,
    }
}

/// Whether process `pid` started at `start_ticks` is still running (a zombie counts as dead).
///
/// Only `false` when /proc can tell: where /proc cannot judge liveness (not mounted, mounted
/// for another pid namespace, or hiding other users' processes: [`proc_view`]), a process it
/// does not show may be alive, and is reported alive.
pub fn process_alive(pid: u32, start_ticks: u64) -> bool {
    judge(&proc_view(), geteuid(), start_ticks, None, probe(pid)) != Verdict::Dead
}

/// What reading /proc/PID/stat gave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probe {
    /// The process is listed: whether it is a zombie, and its start time.
    Found {
        /// State `Z` or `X`: it has exited.
        zombie: bool,
        /// Field 22, clock ticks since boot.
        start: u64,
    },
    /// No such entry.
    Missing,
    /// The entry exists but cannot be read (hidepid=1), or /proc failed otherwise.
    Unreadable,
}

/// Reads /proc/PID/stat.
pub fn probe(pid: u32) -> Probe {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => parse_stat(&stat).map_or(Probe::Unreadable, |(_, zombie, start)| {
            Probe::Found { zombie, start }
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Probe::Missing,
        Err(_) => Probe::Unreadable,
    }
}

/// Pid (field 1), zombie state (field 3) and start time (field 22) of a /proc/PID/stat line.
fn parse_stat(stat: &str) -> Option<(u32, bool, u64)> {
    let pid = stat.split_ascii_whitespace().next()?.parse().ok()?;
    // The command name (field 2) is in parentheses and may itself hold spaces or ')'.
    let close = stat.rfind(')')?;
    let mut fields = stat[close + 1..].split_ascii_whitespace();
    let zombie = matches!(fields.next()?, "Z" | "X");
    // The state was field 3; field 22 is 19 further on.
    let started = fields.nth(18)?.parse().ok()?;
    Some((pid, zombie, started))
}

/// What this process's /proc can tell about other processes. Liveness of the fd-less backends
/// (anonymous, SysV) rests on it; the fd backends use kernel locks and need none of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcView {
    /// /proc/self/stat is readable and names our own pid: /proc is mounted for our pid
    /// namespace. Otherwise (no /proc, or a /proc of another namespace, as in a container
    /// given the host's /proc, or after `unshare(CLONE_NEWPID)`) the pids it lists are not the
    /// ones processes of our namespace record.
    pub own: bool,
    /// /proc hides other users' processes (`hidepid=1`/`2`, `noaccess`, `invisible`): one
    /// missing from it may be alive.
    pub hides_others: bool,
    /// Inode of our pid namespace (/proc/self/ns/pid), 0 if unknown.
    pub pidns: u64,
}

impl ProcView {
    /// Why /proc cannot always judge liveness here, or `None` when it can.
    pub fn caveat(&self) -> Option<&'static str> {
        if !self.own {
            Some(
                "/proc is not mounted for this process's pid namespace: liveness of anonymous and SysV attachments cannot be judged, so none is ever declared dead (a dead holder's slot is not reused)",
            )
        } else if self.hides_others {
            Some(
                "/proc hides other users' processes (hidepid): another user's attachment to an anonymous or SysV segment is never declared dead",
            )
        } else {
            None
        }
    }
}

/// This process's [`ProcView`], read once per process: a child after `fork` (another pid)
/// reads its own, since it may live in another pid namespace or mount table than its parent.
pub fn proc_view() -> ProcView {
    // ORDERING: Acquire; pairs with the Release store of VIEW_PID below, so VIEW is the view
    // computed by this process.
    if VIEW_PID.load(Ordering::Acquire) == getpid() {
        // ORDERING: Relaxed; ordered by the Acquire load above.
        let packed = VIEW.load(Ordering::Relaxed);
        return ProcView {
            own: packed & 1 << 33 != 0,
            hides_others: packed & 1 << 32 != 0,
            pidns: packed & u64::from(u32::MAX),
        };
    }
    let stat = fs::read_to_string("/proc/self/stat").ok();
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").ok();
    let pidns =
        fs::metadata("/proc/self/ns/pid").map_or(0, |m| std::os::unix::fs::MetadataExt::ino(&m));
    // Namespace inodes are 32-bit proc inode numbers; anything else is unknown.
    let pidns = if pidns > u64::from(u32::MAX) {
        0
    } else {
        pidns
    };
    let view = read_view(stat.as_deref(), getpid(), mountinfo.as_deref(), pidns);
    let packed = u64::from(view.own) << 33 | u64::from(view.hides_others) << 32 | view.pidns;
    // ORDERING: Relaxed; published by the Release store of VIEW_PID. Racing threads of one
    // process store the same value.
    VIEW.store(packed, Ordering::Relaxed);
    // ORDERING: Release; pairs with the Acquire load above.
    VIEW_PID.store(getpid(), Ordering::Release);
    view
}

/// The pid whose [`ProcView`] `VIEW` holds (0: none yet).
static VIEW_PID: AtomicU32 = AtomicU32::new(0);
/// `own` (bit 33), `hides_others` (bit 32), `pidns` (low 32 bits).
static VIEW: AtomicU64 = AtomicU64::new(0);

/// Our own start time, as readers in our pid namespace will find it; 0 (unknown) when our
/// /proc is not our namespace's (its entry under our pid would be another process).
pub fn own_start_ticks() -> u64 {
    if proc_view().own {
        fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|s| parse_stat(&s))
            .map_or(0, |(_, _, start)| start)
    } else {
        0
    }
}

/// Builds a [`ProcView`] from what /proc gave: our stat line, our mount table, our pid
/// namespace inode (0 unknown). Anything unreadable counts against /proc.
pub fn read_view(
    self_stat: Option<&str>,
    my_pid: u32,
    mountinfo: Option<&str>,
    pidns: u64,
) -> ProcView {
    let own = self_stat
        .and_then(parse_stat)
        .is_some_and(|(pid, _, _)| pid == my_pid);
    let hides_others = mountinfo.is_none_or(proc_hides_others);
    ProcView {
        own,
        hides_others,
        pidns,
    }
}

/// Whether the proc filesystem mounted at /proc (the last such mount wins, as it covers the
/// others) has a `hidepid` other than 0/`off`.
fn proc_hides_others(mountinfo: &str) -> bool {
    let mut hides = None;
    for line in mountinfo.lines() {
        // `ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTS`
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mut r = right.split(' ');
        let (Some(fstype), _, Some(superopts)) = (r.next(), r.next(), r.next()) else {
            continue;
        };
        if fstype != "proc" || left.split(' ').nth(4) != Some("/proc") {
            continue;
        }
        hides = Some(superopts.split(',').any(|o| {
            o.strip_prefix("hidepid=")
                .is_some_and(|v| !matches!(v, "0" | "off"))
        }));
    }
    // No /proc mount found: nothing there can be trusted to list processes.
    hides.unwrap_or(true)
}

/// The identity a slot holder records beside its pid, so that a reader can tell whether its
/// /proc can judge the holder: the holder's pid namespace (low 32 bits of the inode, 0 if
/// unknown) in the high half, its effective uid in the low half.
pub fn holder_ident() -> u64 {
    (proc_view().pidns << 32) | u64::from(geteuid())
}

/// What /proc says about a holder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// It runs (it may be stopped).
    Alive,
    /// It has exited: its slot or claim may be taken over.
    Dead,
    /// /proc cannot tell. Treated as alive: a live holder is never declared dead.
    Unknown,
}

/// Judges a holder that recorded `start` (0 unknown) and, if known, `ident`
/// (`holder_ident`), from `view` (ours), `me` (our euid) and what /proc showed for its pid.
pub fn judge(view: &ProcView, me: u32, start: u64, ident: Option<u64>, probe: Probe) -> Verdict {
    if !view.own {
        return Verdict::Unknown;
    }
    if let Some(ident) = ident {
        let ns = ident >> 32;
        if ns == 0 || view.pidns == 0 || ns != view.pidns {
            // Another (or an unknown) pid namespace: its pid means nothing in ours.
            return Verdict::Unknown;
        }
    }
    match probe {
        Probe::Found { zombie: true, .. } => Verdict::Dead,
        // The holder could not read its own start time: a pid reuse cannot be told.
        Probe::Found { .. } if start == 0 => Verdict::Unknown,
        Probe::Found { start: found, .. } if found == start => Verdict::Alive,
        // Same pid, another start time: the pid was reused, the holder is gone.
        Probe::Found { .. } => Verdict::Dead,
        Probe::Missing => {
            let same_user = ident.is_some_and(|i| i as u32 == me);
            if view.hides_others && !same_user {
                Verdict::Unknown
            } else {
                Verdict::Dead
            }
        }
        Probe::Unreadable => Verdict::Unknown,
    }
}

/// Whether /proc shows that no process `pid` of user `uid` exists (`false` when it cannot tell).
pub fn pid_gone(pid: u32, uid: u32) -> bool {
    let view = proc_view();
    judge(
        &view,
        geteuid(),
        0,
        Some((view.pidns << 32) | u64::from(uid)),
        probe(pid),
    ) == Verdict::Dead
}

/// This process's pid.
pub fn getpid() -> u32 {
    std::process::id()
}

/// This process's effective uid.
pub fn geteuid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// The user name of `uid` in the user database, if it has one (for messages).
pub fn user_name(uid: u32) -> Option<String> {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name)
}

/// Nanoseconds since the Unix epoch (informational fields only).
pub fn now_unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// `fstat` on a descriptor.
pub fn fstat(fd: BorrowedFd<'_>) -> io::Result<libc::stat> {
    nix::sys::stat::fstat(fd).map_err(io::Error::from)
}

pub(crate) fn sysv_attach(id: i32) -> io::Result<NonNull<u8>> {
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

/// Gives a SysV segment its group (`gid`, or unchanged) and its mode, in one `IPC_SET`
/// (uid unchanged).
pub(crate) fn sysv_set_perm(id: i32, gid: Option<u32>, mode: u32) -> io::Result<()> {
    let mut ds = sysv_stat(id)?;
    if let Some(gid) = gid {
        ds.shm_perm.gid = gid;
    }
    ds.shm_perm.mode = (u32::from(ds.shm_perm.mode) & !0o777 | mode & 0o777) as _;
    // SAFETY: the pointer is valid for reads of one shmid_ds; IPC_SET takes uid, gid and mode
    // from it.
    if unsafe { libc::shmctl(id, libc::IPC_SET, &raw mut ds) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Marks a SysV segment for destruction once the last process detaches.
pub(crate) fn sysv_rmid(id: i32) -> bool {
    // SAFETY: IPC_RMID takes no buffer.
    unsafe { libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str =
        "4242 (a (weird) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 777 1000 10";
    const MOUNTS: &str = "22 27 0:21 / /proc rw,relatime - proc proc rw\n\
                          30 27 0:25 / /dev/shm rw - tmpfs tmpfs rw\n";
    const HIDDEN: &str = "22 27 0:21 / /proc rw,relatime - proc proc rw,hidepid=invisible\n";

    fn view() -> ProcView {
        read_view(Some(STAT), 4242, Some(MOUNTS), 77)
    }

    #[test]
    fn the_view_checks_pid_mount_and_namespace() {
        assert_eq!(parse_stat(STAT), Some((4242, false, 777)));
        assert_eq!(
            view(),
            ProcView {
                own: true,
                hides_others: false,
                pidns: 77
            }
        );
        assert_eq!(view().caveat(), None);
        // /proc of another pid namespace: /proc/self is not us.
        assert!(!read_view(Some(STAT), 1, Some(MOUNTS), 77).own);
        // No /proc at all.
        let none = read_view(None, 4242, None, 0);
        assert!(!none.own && none.hides_others);
        assert!(none.caveat().is_some());
        for opts in [
            "hidepid=1",
            "hidepid=2",
            "hidepid=invisible",
            "hidepid=noaccess",
        ] {
            let m = format!("22 27 0:21 / /proc rw - proc proc rw,{opts}\n");
            assert!(
                read_view(Some(STAT), 4242, Some(&m), 77).hides_others,
                "{opts}"
            );
        }
        for opts in ["hidepid=0", "hidepid=off", "subset=pid"] {
            let m = format!("22 27 0:21 / /proc rw - proc proc rw,{opts}\n");
            assert!(
                !read_view(Some(STAT), 4242, Some(&m), 77).hides_others,
                "{opts}"
            );
        }
        // A proc mounted elsewhere says nothing about /proc.
        let elsewhere = "22 27 0:21 / /mnt/p rw - proc proc rw,hidepid=2\n";
        assert!(read_view(Some(STAT), 4242, Some(elsewhere), 77).hides_others);
        let both = format!("{MOUNTS}{elsewhere}");
        assert!(!read_view(Some(STAT), 4242, Some(&both), 77).hides_others);
        assert!(read_view(Some(STAT), 4242, Some(HIDDEN), 77).hides_others);
    }

    #[test]
    fn only_what_proc_can_see_is_judged_dead() {
        let v = view();
        let me = 1000;
        let ident = |ns: u64, uid: u32| Some((ns << 32) | u64::from(uid));
        let found = |start| Probe::Found {
            zombie: false,
            start,
        };
        // Same namespace, same user: exact.
        assert_eq!(judge(&v, me, 5, ident(77, me), found(5)), Verdict::Alive);
        assert_eq!(judge(&v, me, 5, ident(77, me), found(6)), Verdict::Dead);
        assert_eq!(
            judge(&v, me, 5, ident(77, me), Probe::Missing),
            Verdict::Dead
        );
        let zombie = Probe::Found {
            zombie: true,
            start: 5,
        };
        assert_eq!(judge(&v, me, 5, ident(77, me), zombie), Verdict::Dead);
        // Unknown start time: a reused pid cannot be told from the holder.
        assert_eq!(judge(&v, me, 0, ident(77, me), found(6)), Verdict::Unknown);
        // Another pid namespace, or an unknown one: its pid means nothing here.
        for ns in [78, 0] {
            for p in [found(5), found(6), Probe::Missing] {
                assert_eq!(judge(&v, me, 5, ident(ns, me), p), Verdict::Unknown);
            }
        }
        let no_ns = ProcView { pidns: 0, ..v };
        assert_eq!(
            judge(&no_ns, me, 5, ident(77, me), Probe::Missing),
            Verdict::Unknown
        );
        // Our /proc is not our namespace's: nothing can be judged.
        let foreign = ProcView { own: false, ..v };
        assert_eq!(
            judge(&foreign, me, 5, ident(77, me), Probe::Missing),
            Verdict::Unknown
        );
        assert_eq!(judge(&foreign, me, 5, None, found(6)), Verdict::Unknown);
        // hidepid: another user's process may just be hidden; our own user's is not.
        let hidden = ProcView {
            hides_others: true,
            ..v
        };
        assert_eq!(
            judge(&hidden, me, 5, ident(77, 0), Probe::Missing),
            Verdict::Unknown
        );
        assert_eq!(
            judge(&hidden, me, 5, None, Probe::Missing),
            Verdict::Unknown
        );
        assert_eq!(
            judge(&hidden, me, 5, ident(77, me), Probe::Missing),
            Verdict::Dead
        );
        assert_eq!(
            judge(&v, me, 5, ident(77, 0), Probe::Missing),
            Verdict::Dead
        );
        // An entry we may not read (hidepid=1).
        assert_eq!(
            judge(&v, me, 5, ident(77, me), Probe::Unreadable),
            Verdict::Unknown
        );
    }

    #[test]
    fn this_process_is_alive_and_a_missing_pid_is_dead_here() {
        // The test machine's /proc is its own and shows every process.
        let v = proc_view();
        assert!(v.own, "{v:?}");
        assert_ne!(v.pidns, 0);
        assert!(process_alive(getpid(), own_start_ticks()));
        if !v.hides_others {
            assert!(!process_alive(1 << 23, 1), "a pid above pid_max");
        }
    }
}
