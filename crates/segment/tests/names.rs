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
