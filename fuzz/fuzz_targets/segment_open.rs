//! Opens a segment whose bytes are arbitrary: validation must return an error (or a usable
//! segment), never crash, hang or read out of bounds. Also lists and inspects it.
#![no_main]

use std::{io::Write, os::unix::fs::PermissionsExt, sync::OnceLock, time::Duration};

use libfuzzer_sys::fuzz_target;
use shmlane_segment::{Segment, SegmentHeader, inspect};

fn name() -> &'static str {
    static N: OnceLock<String> = OnceLock::new();
    N.get_or_init(|| format!("shmlane-fuzz-{}", std::process::id()))
}

fuzz_target!(|data: &[u8]| {
    // The header validator alone, on every prefix length.
    if data.len() >= size_of::<SegmentHeader>() {
        let h: SegmentHeader = shmlane_segment::layout::read_header(data);
        let _ = h.validate(data.len() as u64);
    }
    let path = format!("/dev/shm/{}", name());
    let _ = std::fs::remove_file(&path);
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(data).unwrap();
    f.set_permissions(std::fs::Permissions::from_mode(0o600)).unwrap();
    drop(f);
    let _ = inspect(std::path::Path::new(&path));
    if let Ok(seg) = Segment::posix(name()).open_timeout(Duration::ZERO).open() {
        // A segment that validated must be fully usable.
        let _ = seg.regions();
        let _ = seg.attachments();
        let _ = seg.region("fuzz", 64, 1);
    }
    let _ = std::fs::remove_file(&path);
});
