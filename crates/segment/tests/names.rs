//! Names are checked before anything is opened, in the segment layer itself (issue 17): a
//! library user gets the protection the `shmlane` command has.

use std::{io::ErrorKind, path::PathBuf};

use shmlane_segment::{
    Location, NAME_RULE, RemoveError, Segment, inspect_at, remove, remove_if_stale,
};

fn tmp(label: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("shmlane-test-{}-{label}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).unwrap();
    p
}

#[test]
fn a_name_that_climbs_out_is_refused_before_opening() {
    let dir = tmp("seg-names");
    let path = dir.join("outside");
    let seg = Segment::file(&path).size(1 << 16).create().unwrap();
    let climbing = format!("../..{}", path.display());
    let e = inspect_at(&Location::Posix(climbing.clone())).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.to_string().contains(NAME_RULE), "{e}");
    for loc in [
        Location::Posix(climbing),
        Location::Posix("..".into()),
        Location::File(dir.join("..")),
    ] {
        assert!(
            matches!(remove(&loc), Err(RemoveError::InvalidName { .. })),
            "{loc:?}"
        );
        let e = remove_if_stale(&loc).unwrap_err();
        assert!(e.to_string().contains(NAME_RULE), "{loc:?}: {e}");
    }
    assert!(path.exists());
    // The segment is reachable by its own location.
    let info = inspect_at(&Location::File(path.clone())).unwrap().unwrap();
    assert_eq!(info.name, "outside");
    drop(seg);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A segment whose header was overwritten is listed as corrupt (it was skipped as foreign) and
/// removed by `remove_if_state(.., [Corrupt])`, not by `remove_if_stale`.
#[test]
fn a_damaged_header_is_corrupt_and_removable() {
    use std::os::unix::fs::FileExt;

    use shmlane_segment::{RemoveOutcome, SegmentState, list_dir, remove_if_state};
    let dir = tmp("seg-corrupt");
    let path = dir.join("damaged");
    drop(Segment::file(&path).size(1 << 16).create().unwrap());
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.write_all_at(&[0u8; 128], 0).unwrap();
    std::fs::write(dir.join("foreign"), vec![0u8; 8192]).unwrap();
    let list = list_dir(&dir).unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0].name, "damaged");
    assert_eq!(list[0].state, SegmentState::Corrupt);
    assert_eq!(list[0].backend, shmlane_segment::BackendKind::File);
    assert!(
        list[0]
            .problem
            .as_deref()
            .unwrap()
            .contains("header overwritten")
    );
    let loc = Location::File(path.clone());
    assert_eq!(
        remove_if_stale(&loc).unwrap(),
        RemoveOutcome::NotStale(SegmentState::Corrupt)
    );
    assert!(matches!(
        remove_if_state(
            &Location::File(dir.join("foreign")),
            &[SegmentState::Corrupt]
        ),
        Err(RemoveError::NotASegment { .. })
    ));
    assert_eq!(
        remove_if_state(&loc, &[SegmentState::Corrupt]).unwrap(),
        RemoveOutcome::Removed
    );
    assert!(!path.exists());
    let _ = std::fs::remove_dir_all(&dir);
}
