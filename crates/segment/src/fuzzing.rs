//! Entry point for the `segment_open` fuzz target and its regression tests: a segment file
//! whose bytes are arbitrary must be refused with an error (or opened as a usable segment),
//! never crash, hang or read out of bounds. Not part of the API.

use std::{io::Write, os::unix::fs::PermissionsExt, time::Duration};

use crate::{Segment, SegmentHeader, inspect};

/// Validates `data` as a header, writes it as the POSIX segment `name` (in `/dev/shm`), lists,
/// inspects and opens it, uses what opened, and removes it.
pub fn open_arbitrary(name: &str, data: &[u8]) {
    // The header validator alone.
    if data.len() >= size_of::<SegmentHeader>() {
        let h: SegmentHeader = crate::layout::read_header(data);
        let _ = h.validate(data.len() as u64);
    }
    let path = format!("/dev/shm/{name}");
    let _ = std::fs::remove_file(&path);
    let mut f = std::fs::File::create(&path).expect("create the segment file");
    f.write_all(data).expect("write the segment file");
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
        .expect("chmod");
    drop(f);
    let _ = inspect(std::path::Path::new(&path));
    if let Ok(seg) = Segment::posix(name).open_timeout(Duration::ZERO).open() {
        // A segment that validated must be fully usable.
        let _ = seg.regions();
        let _ = seg.attachments();
        let _ = seg.region("fuzz", 64, 1);
    }
    let _ = std::fs::remove_file(&path);
}
