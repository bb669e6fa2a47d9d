//! Thin wrappers over the system calls the segment needs and std does not offer: open file
//! description (OFD) byte-range locks, space reservation, and process identity.

use std::{
    fs, io,
    os::fd::{AsRawFd, BorrowedFd},
    time::{SystemTime, UNIX_EPOCH},
};

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
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may itself hold spaces or ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    // Fields after the name start at field 3; field 22 is the 20th of them.
    rest.split_ascii_whitespace().nth(19)?.parse().ok()
}

/// Whether process `pid` started at `start_ticks` is still running (a zombie counts as dead).
pub fn process_alive(pid: u32, start_ticks: u64) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let Some(close) = stat.rfind(')') else {
        return false;
    };
    let mut fields = stat[close + 1..].split_ascii_whitespace();
    let state = fields.next();
    if matches!(state, Some("Z" | "X")) {
        return false;
    }
    // `state` was field 3; field 22 is 19 further on.
    fields.nth(18).and_then(|s| s.parse::<u64>().ok()) == Some(start_ticks)
}

/// Whether a process with this pid exists in our /proc: `Some(false)` only when /proc says
/// there is none, `None` when /proc cannot be read.
pub fn pid_exists(pid: u32) -> Option<bool> {
    match fs::metadata(format!("/proc/{pid}")) {
        Ok(_) => Some(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Some(false),
        Err(_) => None,
    }
}

/// This process's pid.
pub fn getpid() -> u32 {
    std::process::id()
}

/// This process's effective uid.
pub fn geteuid() -> u32 {
    nix::unistd::geteuid().as_raw()
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
