//! Review "revn" of issue 17's sharing rules (System V segments): a segment whose creator
//! is another user is that user's (the kernel lets its creator change its owner, mode and
//! group at any time), and the mode and group a creator asks for are the only ones the key
//! ever carries.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use shmlane_segment::{OpenError, Segment, UnlinkPolicy};
use shmlane_testkit::is_root;

fn stat(id: i32) -> Option<libc::shmid_ds> {
    // SAFETY: shmid_ds is plain data; IPC_STAT fills it.
    let mut ds: libc::shmid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to one shmid_ds.
    (unsafe { libc::shmctl(id, libc::IPC_STAT, &raw mut ds) } == 0).then_some(ds)
}

fn rmid(key: i32) {
    // SAFETY: plain syscalls.
    unsafe {
        let id = libc::shmget(key, 0, 0);
        if id >= 0 {
            libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut());
        }
    }
}

/// Removes the key when the test ends, passed or not.
struct RmKey(i32);

impl Drop for RmKey {
    fn drop(&mut self) {
        rmid(self.0);
    }
}

/// A private directory, removed when the test ends.
struct TmpDir(std::path::PathBuf);

impl TmpDir {
    fn new(label: &str) -> Self {
        let p = std::env::temp_dir().join(format!("shmlane-test-{}-{label}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir(&p).unwrap();
        Self(p)
    }

    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TmpDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const HELPER: &str = "REVN_SYSV_GIVEAWAY_KEY";

/// As the helper (uid 65534): creates a shmlane SysV segment under `key`, then gives its
/// ownership to root with `IPC_SET` (allowed to its creator, unlike `chown` of a file), as a
/// user preparing a segment that root will take for its own would.
fn give_away(key: i32) {
    let s = Segment::sysv(key).size(4096).mode(0o600).create().unwrap();
    // SAFETY: plain syscall.
    let id = unsafe { libc::shmget(key, 0, 0) };
    let mut ds = stat(id).unwrap();
    ds.shm_perm.uid = 0;
    // SAFETY: valid pointer to one shmid_ds.
    let r = unsafe { libc::shmctl(id, libc::IPC_SET, &raw mut ds) };
    assert_eq!(
        r,
        0,
        "IPC_SET uid 0 by the creator: {}",
        std::io::Error::last_os_error()
    );
    drop(s);
}

#[test]
fn a_sysv_segment_created_by_another_user_is_untrusted_even_when_it_names_me_its_owner() {
    if let Ok(k) = std::env::var(HELPER) {
        give_away(k.parse().unwrap());
        return;
    }
    if !is_root() {
        println!("skipped: needs root to run the other user");
        return;
    }
    let key = 0x5256_0000 | (std::process::id() as i32 & 0xffff);
    rmid(key);
    let _k = RmKey(key);
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_sysv_segment_created_by_another_user_is_untrusted_even_when_it_names_me_its_owner",
            "--nocapture",
            "-q",
        ])
        .env(HELPER, key.to_string())
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    if !out.status.success() && text.contains("failed to execute") {
        println!("skipped: the test binary is not executable by uid 65534: {text}");
        return;
    }
    assert!(out.status.success(), "helper as uid 65534: {text}");
    // SAFETY: plain syscall.
    let id = unsafe { libc::shmget(key, 0, 0) };
    let ds = stat(id).expect("the helper's segment exists");
    assert_eq!((ds.shm_perm.uid, ds.shm_perm.cuid), (0, 65534));
    // Its creator can still change it (IPC_SET, IPC_RMID) and may have kept a mapping: it is
    // as much that user's as a file owned by it, so it needs trust_owner(65534).
    let r = Segment::sysv(key)
        .open_timeout(Duration::from_millis(50))
        .open();
    assert!(
        matches!(&r, Err(OpenError::UntrustedOwner { owner: 65534, .. })),
        "a segment created by uid 65534 opened without trusting it: {:?}",
        r.as_ref().map(|_| "opened")
    );
    Segment::sysv(key)
        .trust_owner(65534)
        .open_timeout(Duration::from_millis(50))
        .open()
        .unwrap();
}

#[test]
fn a_sysv_segment_never_carries_its_creators_group_with_group_access() {
    if !is_root() {
        println!("skipped: needs root to give a segment group 65534");
        return;
    }
    // The creator's group is 0 here; the segment is meant for group 65534 only. A member of
    // group 0 that attached while the key carried 0660 and group 0 would keep its mapping.
    let key = 0x5257_0000 | (std::process::id() as i32 & 0xffff);
    rmid(key);
    let _k = RmKey(key);
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                // SAFETY: plain syscall.
                let id = unsafe { libc::shmget(key, 0, 0) };
                if id < 0 {
                    continue;
                }
                if let Some(ds) = stat(id) {
                    let mode = u32::from(ds.shm_perm.mode) & 0o777;
                    if ds.shm_perm.gid != 65534 && mode & 0o070 != 0 {
                        seen.push((ds.shm_perm.gid, mode));
                    }
                }
            }
            seen
        })
    };
    for _ in 0..300 {
        let s = Segment::sysv(key)
            .size(4096)
            .mode(0o660)
            .group(65534)
            .unlink(UnlinkPolicy::CreatorDrop)
            .create()
            .unwrap();
        drop(s);
        rmid(key);
    }
    stop.store(true, Ordering::Relaxed);
    let seen = watcher.join().unwrap();
    // The mode asked for is the mode it ends with, with or without a group.
    let s = Segment::sysv(key)
        .size(4096)
        .mode(0o640)
        .unlink(UnlinkPolicy::CreatorDrop)
        .create()
        .unwrap();
    // SAFETY: plain syscall.
    let ds = stat(unsafe { libc::shmget(key, 0, 0) }).unwrap();
    assert_eq!(u32::from(ds.shm_perm.mode) & 0o777, 0o640);
    drop(s);
    assert!(
        seen.is_empty(),
        "the key carried group access for the creator's group before its own group was set: {} times, e.g. (gid, mode) {:?}",
        seen.len(),
        seen.first().map(|&(g, m)| (g, format!("{m:o}")))
    );
}

#[test]
fn a_stale_private_file_of_a_dead_creator_is_removed_by_remove_if_stale() {
    // A creator that died before publishing leaves `.shmlane-tmp.NAME.PID.N`; `ls` lists it as
    // stale once it is older than the grace period, and `rm --stale` must be able to remove
    // it (the name check refused every name starting with '.').
    let dir = TmpDir::new("revn-private");
    let path = dir.path().join(".shmlane-tmp.job.99999.0");
    let f = std::fs::File::create(&path).unwrap();
    f.set_len(4096).unwrap();
    f.set_modified(std::time::SystemTime::now() - Duration::from_secs(60))
        .unwrap();
    drop(f);
    let list = shmlane_segment::list_dir(dir.path()).unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0].state, shmlane_segment::SegmentState::Stale);
    assert!(list[0].in_progress);
    let r = shmlane_segment::remove_if_stale(&shmlane_segment::Location::File(path.clone()));
    assert!(
        matches!(r, Ok(shmlane_segment::RemoveOutcome::Removed)),
        "a stale private file must be removable: {r:?}"
    );
    assert!(!path.exists());
    // The exception is for shmlane's private names only.
    for bad in [
        ".x",
        "..",
        ".shmlane-tmp.",
        ".shmlane-tmp..x",
        ".shmlane-tmp.a b",
    ] {
        let r = shmlane_segment::remove_if_stale(&shmlane_segment::Location::File(
            dir.path().join(bad),
        ));
        assert!(
            matches!(r, Err(shmlane_segment::RemoveError::InvalidName { .. })),
            "{bad:?}: {r:?}"
        );
    }
}

const MEMFD_HELPER: &str = "REVN_MEMFD_FD";

#[test]
fn a_memfd_given_to_another_user_opens_there_when_its_owner_is_trusted() {
    use std::os::fd::{FromRawFd, OwnedFd};
    if let Ok(n) = std::env::var(MEMFD_HELPER) {
        // As uid 65534, with the descriptor inherited: trust the owner (root) as
        // docs/operations.md says.
        let (n, shared) = n.split_once(',').unwrap();
        // SAFETY: the parent left this descriptor open for us; nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(n.parse().unwrap()) };
        let r = Segment::memfd("given")
            .role(2)
            .trust_owner(0)
            .open_memfd(fd);
        if shared == "1" {
            assert!(
                r.is_ok(),
                "open_memfd as uid 65534 trusting root: {:?}",
                r.err()
            );
        } else {
            // Mode 0600: refused, typed, and the message says what its creator must do.
            let Err(e) = r else {
                panic!("a 0600 memfd of root cannot be reopened by uid 65534");
            };
            assert!(
                matches!(&e, OpenError::PermissionDenied { .. }) && e.to_string().contains("0660"),
                "{e}"
            );
        }
        return;
    }
    if !is_root() {
        println!("skipped: needs root to run the other user");
        return;
    }
    // Shared as docs/operations.md says (a group of the receiver's, 0660), and private.
    for shared in [true, false] {
        let b = Segment::memfd("given").size(64 * 1024);
        let seg = if shared {
            b.mode(0o660).group(65534)
        } else {
            b
        }
        .create()
        .unwrap();
        // SAFETY: plain syscall; dup's copy is not close-on-exec, so the child inherits it.
        let n = unsafe { libc::dup(std::os::fd::AsRawFd::as_raw_fd(&seg.fd().unwrap())) };
        assert!(n >= 0);
        let out = std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "a_memfd_given_to_another_user_opens_there_when_its_owner_is_trusted",
                "--nocapture",
                "-q",
            ])
            .env(MEMFD_HELPER, format!("{n},{}", u8::from(shared)))
            .output()
            .unwrap();
        // SAFETY: our copy, no longer needed.
        unsafe { libc::close(n) };
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        if !out.status.success() && text.contains("failed to execute") {
            println!("skipped: the test binary is not executable by uid 65534: {text}");
            return;
        }
        assert!(
            out.status.success(),
            "as uid 65534 (shared {shared}): {text}"
        );
    }
}

#[test]
fn an_overlong_memfd_label_is_an_invalid_name_not_an_os_error() {
    // memfd_create takes at most 249 bytes of name; the segment adds "shmlane:" to the label.
    for len in [241, 242, 245, 249, 250] {
        let label = "a".repeat(len);
        let r = Segment::memfd(&label).size(4096).create();
        match r {
            Ok(_) => assert!(len <= 241, "{len}-byte label accepted"),
            Err(shmlane_segment::CreateError::InvalidName { reason, .. }) => {
                assert!(len > 241, "{len}-byte label refused: {reason}");
                assert!(reason.contains("241"), "{reason}");
            }
            Err(e) => panic!("{len}-byte label: {e:?}"),
        }
    }
}
