//! Replays every input in `fuzz/regressions/ring_attach` and `fuzz/regressions/ring_ops` through
//! the fuzz targets' entry points: crashes once found stay fixed.
#![cfg(not(loom))]

fn replay(target: &str, f: fn(&[u8])) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/regressions")
        .join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        println!("replaying {}", path.display());
        f(&data);
        n += 1;
    }
    assert!(n > 0, "no inputs in {}", dir.display());
}

#[test]
fn ring_attach_regressions() {
    replay("ring_attach", shmlane_ring::fuzzing::attach_arbitrary);
}

#[test]
fn ring_ops_regressions() {
    replay("ring_ops", shmlane_ring::fuzzing::ops_against_model);
}
