//! Every bad input gets its own typed error, and nothing is removed or overwritten.

use std::{
    fs,
    os::unix::fs::{FileExt, PermissionsExt},
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use shmlane_segment::{
    CreateError, Location, OpenError, RegionError, RemoveError, Segment, remove, remove_if_stale,
};
use shmlane_testkit::{Cleanup, is_root, unique};

fn shm_path(name: &str) -> PathBuf {
    PathBuf::from(format!("/dev/shm/{name}"))
}

/// Creates an idle segment and returns its bytes.
fn make_idle(name: &str) -> Vec<u8> {
    drop(Segment::posix(name).size(8192).create().unwrap());
    fs::read(shm_path(name)).unwrap()
}

fn patch(name: &str, offset: u64, bytes: &[u8]) {
    let f = fs::OpenOptions::new()
        .write(true)
        .open(shm_path(name))
        .unwrap();
    f.write_all_at(bytes, offset).unwrap();
}

fn open(name: &str) -> Result<Segment, OpenError> {
    Segment::posix(name)
        .open_timeout(Duration::from_millis(50))
        .open()
}

#[test]
fn bad_names_are_refused_on_create_and_open() {
    let long = "x".repeat(201);
    for bad in [
        "",
        "a/b",
        "/lead",
        ".hidden",
        "sp ace",
        "tab\t",
        long.as_str(),
    ] {
        let c = Segment::posix(bad).size(4096).create();
        assert!(
            matches!(c, Err(CreateError::InvalidName { .. })),
            "create {bad:?}: {c:?}"
        );
        let o = Segment::posix(bad).open();
        assert!(
            matches!(o, Err(OpenError::InvalidName { .. })),
            "open {bad:?}"
        );
        assert!(matches!(
            remove(&Location::Posix(bad.to_owned())),
            Err(RemoveError::InvalidName { .. })
        ));
    }
    // The longest valid name works.
    let name = format!("{}-{}", unique("n"), "y".repeat(150));
    let _c = Cleanup(name.clone());
    Segment::posix(&name).size(4096).create().unwrap();
}

#[test]
fn zero_missing_and_absurd_sizes_are_refused() {
    let name = unique("size");
    let _c = Cleanup(name.clone());
    for b in [
        Segment::posix(&name),
        Segment::posix(&name).size(0),
        Segment::posix(&name).size(1 << 50),
        Segment::posix(&name).size(4096).max_attachments(0),
        Segment::posix(&name).size(4096).max_regions(100_000),
    ] {
        let r = b.create();
        assert!(matches!(r, Err(CreateError::InvalidSize { .. })), "{r:?}");
    }
    assert!(!shm_path(&name).exists(), "nothing may be left behind");
}

#[test]
fn existing_name_is_refused_and_left_untouched() {
    let name = unique("exists");
    let _c = Cleanup(name.clone());
    let before = make_idle(&name);
    let r = Segment::posix(&name).size(1 << 20).create();
    let msg = r.as_ref().unwrap_err().to_string();
    assert!(matches!(r, Err(CreateError::AlreadyExists { .. })));
    assert!(msg.contains("shmlane rm"), "message says what to do: {msg}");
    assert_eq!(fs::read(shm_path(&name)).unwrap(), before);
}

#[test]
fn missing_segment_is_not_found() {
    let name = unique("missing");
    assert!(matches!(open(&name), Err(OpenError::NotFound { .. })));
    assert!(matches!(
        remove(&Location::Posix(name.clone())),
        Err(RemoveError::NotFound { .. })
    ));
    assert!(matches!(
        remove_if_stale(&Location::Posix(name)),
        Err(RemoveError::NotFound { .. })
    ));
}

fn assert_open_fails_untouched(name: &str, check: impl Fn(&OpenError) -> bool) {
    let before = fs::read(shm_path(name)).unwrap();
    let r = open(name);
    let e = r.expect_err("open must fail");
    assert!(check(&e), "unexpected error: {e:?}");
    assert!(!e.to_string().is_empty());
    assert_eq!(fs::read(shm_path(name)).unwrap(), before, "file changed");
}

#[test]
fn random_bytes_are_not_a_segment() {
    let name = unique("random");
    let _c = Cleanup(name.clone());
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let bytes: Vec<u8> = (0..8192)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    fs::write(shm_path(&name), &bytes).unwrap();
    fs::set_permissions(shm_path(&name), fs::Permissions::from_mode(0o600)).unwrap();
    assert_open_fails_untouched(&name, |e| matches!(e, OpenError::Corrupt { .. }));
}

#[test]
fn truncated_file_is_corrupt() {
    let name = unique("trunc");
    let _c = Cleanup(name.clone());
    fs::write(shm_path(&name), b"SHMLANE\0short").unwrap();
    fs::set_permissions(shm_path(&name), fs::Permissions::from_mode(0o600)).unwrap();
    assert_open_fails_untouched(&name, |e| matches!(e, OpenError::Corrupt { .. }));
}

#[test]
fn wrong_magic_is_corrupt() {
    let name = unique("magic");
    let _c = Cleanup(name.clone());
    make_idle(&name);
    patch(&name, 0, b"NOTSHMLN");
    assert_open_fails_untouched(&name, |e| matches!(e, OpenError::Corrupt { .. }));
}

#[test]
fn header_claiming_more_bytes_than_the_file_is_truncated() {
    let name = unique("claim");
    let _c = Cleanup(name.clone());
    let before = make_idle(&name);
    let real = before.len() as u64;
    patch(&name, 24, &(real * 16).to_ne_bytes());
    assert_open_fails_untouched(
        &name,
        |e| matches!(e, OpenError::Truncated { recorded, actual, .. } if *recorded == real * 16 && *actual == real),
    );
}

#[test]
fn header_claiming_fewer_bytes_than_the_file_is_a_size_mismatch() {
    let name = unique("claimless");
    let _c = Cleanup(name.clone());
    let before = make_idle(&name);
    let real = before.len() as u64;
    patch(&name, 24, &(real - 4096).to_ne_bytes());
    assert_open_fails_untouched(
        &name,
        |e| matches!(e, OpenError::SizeMismatch { expected, actual, .. } if *expected == real - 4096 && *actual == real),
    );
}

#[test]
fn other_layout_version_is_refused() {
    let name = unique("version");
    let _c = Cleanup(name.clone());
    make_idle(&name);
    patch(&name, 8, &99u32.to_ne_bytes());
    assert_open_fails_untouched(&name, |e| {
        matches!(e, OpenError::VersionMismatch { found: 99, .. })
    });
}

#[test]
fn other_layout_fingerprint_is_refused() {
    let name = unique("finger");
    let _c = Cleanup(name.clone());
    make_idle(&name);
    patch(&name, 16, &0x40_0020_0040u64.to_ne_bytes());
    assert_open_fails_untouched(&name, |e| matches!(e, OpenError::LayoutMismatch { .. }));
}

#[test]
fn hostile_table_counts_are_corrupt() {
    let name = unique("hostile");
    let _c = Cleanup(name.clone());
    make_idle(&name);
    // max_attach far beyond the limit: the slot table would run past the data area.
    patch(&name, 60, &u32::MAX.to_ne_bytes());
    assert_open_fails_untouched(&name, |e| matches!(e, OpenError::Corrupt { .. }));
}

#[test]
fn unfinished_creation_is_not_initialized() {
    let name = unique("uninit");
    let _c = Cleanup(name.clone());
    make_idle(&name);
    patch(&name, 128, &0u32.to_ne_bytes());
    assert_open_fails_untouched(
        &name,
        |e| matches!(e, OpenError::NotInitialized { waited_ms, .. } if *waited_ms >= 50),
    );
}

#[test]
fn too_small_for_the_caller_is_a_size_mismatch() {
    let name = unique("small");
    let _c = Cleanup(name.clone());
    make_idle(&name);
    let r = Segment::posix(&name).size(1 << 20).open();
    assert!(matches!(r, Err(OpenError::SizeMismatch { expected, .. }) if expected == 1 << 20));
}

#[test]
fn world_writable_segment_is_refused_even_when_its_owner_is_trusted() {
    let name = unique("worldw");
    let _c = Cleanup(name.clone());
    make_idle(&name);
    fs::set_permissions(shm_path(&name), fs::Permissions::from_mode(0o666)).unwrap();
    assert_open_fails_untouched(&name, |e| matches!(e, OpenError::PermissionDenied { .. }));
    let me = nix::unistd::geteuid().as_raw();
    let e = Segment::posix(&name).trust_owner(me).open().unwrap_err();
    assert!(
        matches!(&e, OpenError::PermissionDenied { reason, .. } if reason.contains("chmod o-w")),
        "{e}"
    );
    fs::set_permissions(shm_path(&name), fs::Permissions::from_mode(0o660)).unwrap();
    Segment::posix(&name).open().unwrap();
}

#[test]
fn segment_of_another_user_is_refused_unless_trusted() {
    if !is_root() {
        println!("skipped: needs root to chown a segment to another user");
        return;
    }
    let name = unique("foreign");
    let _c = Cleanup(name.clone());
    make_idle(&name);
    std::os::unix::fs::chown(shm_path(&name), Some(65534), Some(65534)).unwrap();
    assert_open_fails_untouched(&name, |e| {
        matches!(e, OpenError::UntrustedOwner { owner: 65534, .. })
    });
    Segment::posix(&name).trust_owner(65534).open().unwrap();
}

#[test]
fn mode_is_applied_exactly() {
    let name = unique("mode");
    let _c = Cleanup(name.clone());
    let _s = Segment::posix(&name).size(4096).create().unwrap();
    let m = fs::metadata(shm_path(&name)).unwrap().permissions().mode() & 0o777;
    assert_eq!(m, 0o600);
    let name2 = unique("mode2");
    let _c2 = Cleanup(name2.clone());
    let _s2 = Segment::posix(&name2)
        .size(4096)
        .mode(0o640)
        .create()
        .unwrap();
    let m = fs::metadata(shm_path(&name2)).unwrap().permissions().mode() & 0o777;
    assert_eq!(m, 0o640);
}

/// Mounts a small tmpfs for the duration of a test.
struct Mount(PathBuf);

impl Mount {
    fn new(label: &str, fstype: &str, opts: &str) -> Result<Self, String> {
        if !is_root() {
            return Err("needs root to mount".to_owned());
        }
        let dir = std::env::temp_dir().join(unique(label));
        fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", fstype, "-o", opts, fstype])
            .arg(&dir)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            let _ = fs::remove_dir(&dir);
            return Err(format!(
                "mount -t {fstype} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Self(dir))
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = fs::remove_dir(&self.0);
    }
}

#[test]
fn full_tmpfs_fails_at_creation_with_no_space_and_no_sigbus() {
    let m = match Mount::new("tmpfs", "tmpfs", "size=1m") {
        Ok(m) => m,
        Err(why) => {
            println!("skipped: {why}");
            return;
        }
    };
    let path = m.path().join("big");
    let r = Segment::file(&path).size(4 << 20).create();
    let e = r.expect_err("a 4 MiB segment cannot fit a 1 MiB tmpfs");
    assert!(matches!(e, CreateError::NoSpace { .. }), "{e:?}");
    assert!(
        e.to_string().contains("shm-size"),
        "message says what to do: {e}"
    );
    // How much was asked and how much is free (it said "the filesystem is full" of an
    // empty filesystem: issue 17).
    assert!(
        e.to_string()
            .contains("it needs 4.0 MiB and its filesystem has 1.0 MiB free (of 1.0 MiB)")
            && !e.to_string().contains("is full"),
        "{e}"
    );
    // Nothing left behind, not even the private file.
    assert_eq!(fs::read_dir(m.path()).unwrap().count(), 0);
    // What fits is created, and touching every byte raises no SIGBUS.
    let seg = Segment::file(m.path().join("fits"))
        .size(512 << 10)
        .create()
        .unwrap();
    let r = seg.region("all", 500 << 10, 1).unwrap();
    // SAFETY: the region is ours, in bounds, and no other process maps this segment.
    unsafe { std::ptr::write_bytes(r.as_ptr(), 0xab, r.len()) };
    // A second one no longer fits: the space was really reserved at creation.
    let e = Segment::file(m.path().join("second"))
        .size(700 << 10)
        .create()
        .unwrap_err();
    assert!(matches!(e, CreateError::NoSpace { .. }), "{e:?}");
}

#[test]
fn hugetlbfs_segment_is_rounded_to_the_huge_page_size() {
    const NR: &str = "/proc/sys/vm/nr_hugepages";
    if !is_root() {
        println!("skipped: needs root to mount hugetlbfs");
        return;
    }
    let old = fs::read_to_string(NR).unwrap_or_default();
    if old.trim() == "0" && fs::write(NR, "2").is_err() {
        println!("skipped: cannot reserve huge pages");
        return;
    }
    let restore = scopeguard(move || {
        if old.trim() == "0" {
            let _ = fs::write(NR, "0");
        }
    });
    let m = match Mount::new("huge", "hugetlbfs", "pagesize=2M") {
        Ok(m) => m,
        Err(why) => {
            println!("skipped: {why}");
            return;
        }
    };
    let free: u64 = fs::read_to_string("/proc/meminfo")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("HugePages_Free:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    if free == 0 {
        println!("skipped: no free huge pages");
        return;
    }
    let path = m.path().join("huge-seg");
    let seg = Segment::file(&path).size(100_000).create().unwrap();
    assert_eq!(seg.len() % (2 << 20), 0, "rounded to the huge page size");
    let peer = Segment::file(&path).open().unwrap();
    assert_eq!(peer.len(), seg.len());
    drop((peer, seg));
    fs::remove_file(&path).unwrap();
    drop(m);
    drop(restore);
}

struct Guard<F: FnOnce()>(Option<F>);
impl<F: FnOnce()> Drop for Guard<F> {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f();
        }
    }
}
fn scopeguard<F: FnOnce()>(f: F) -> Guard<F> {
    Guard(Some(f))
}

#[test]
fn regions_check_name_size_kind_space_and_directory() {
    let name = unique("regions");
    let _c = Cleanup(name.clone());
    let seg = Segment::posix(&name)
        .size(64 * 1024)
        .max_regions(3)
        .create()
        .unwrap();
    let a = seg.region("a", 100, 1).unwrap();
    assert_eq!(a.as_ptr() as usize % 128, 0);
    let b = seg.region("b", 100, 2).unwrap();
    assert_eq!(b.as_ptr() as usize % 128, 0);
    assert!(b.offset() >= a.offset() + 128);
    // The same name with the same size and kind is the same region.
    assert_eq!(seg.region("a", 100, 1).unwrap().offset(), a.offset());
    assert!(matches!(
        seg.region("a", 200, 1),
        Err(RegionError::SizeMismatch {
            existing: 100,
            requested: 200,
            ..
        })
    ));
    assert!(matches!(
        seg.region("a", 100, 9),
        Err(RegionError::KindMismatch {
            existing: 1,
            requested: 9,
            ..
        })
    ));
    assert!(matches!(
        seg.region("", 1, 1),
        Err(RegionError::InvalidName(_))
    ));
    assert!(matches!(
        seg.region(&"n".repeat(33), 1, 1),
        Err(RegionError::InvalidName(_))
    ));
    assert!(matches!(
        seg.region("huge", 1 << 30, 1),
        Err(RegionError::NoSpace { .. })
    ));
    seg.region("c", 8, 1).unwrap();
    assert!(matches!(
        seg.region("d", 8, 1),
        Err(RegionError::DirectoryFull { max: 3 })
    ));
    assert!(matches!(
        seg.find_region("zz"),
        Err(RegionError::NotFound(_))
    ));
    // Another process's view (a second handle) sees the same directory.
    let peer = Segment::posix(&name).open().unwrap();
    let names: Vec<_> = peer
        .regions()
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names, ["a", "b", "c"]);
}

#[test]
fn corrupt_region_directory_is_an_error_not_ub() {
    let name = unique("dircorrupt");
    let _c = Cleanup(name.clone());
    let seg = Segment::posix(&name).size(8192).create().unwrap();
    seg.region("a", 128, 1).unwrap();
    let h = seg.header();
    drop(seg);
    // Point the entry past the end of the segment.
    patch(
        &name,
        h.regions_offset + 8,
        &(h.total_size - 64).to_ne_bytes(),
    );
    let peer = open(&name).unwrap();
    assert!(matches!(
        peer.find_region("a"),
        Err(RegionError::Corrupt(_))
    ));
    drop(peer);
    // A region count beyond the directory.
    patch(&name, 136, &u32::MAX.to_ne_bytes());
    let peer = open(&name).unwrap();
    assert!(matches!(peer.regions(), Err(RegionError::Corrupt(_))));
    assert!(matches!(
        peer.region("b", 8, 1),
        Err(RegionError::Corrupt(_))
    ));
}
