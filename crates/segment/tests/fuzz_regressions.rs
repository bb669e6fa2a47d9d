//! Replays every input in `fuzz/regressions/segment_open` through the fuzz target's entry
//! point: crashes once found stay fixed.

#[test]
fn segment_open_regressions() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/regressions/segment_open");
    let name = format!("shmlane-test-{}-fuzz-replay", std::process::id());
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        shmlane_segment::fuzzing::open_arbitrary(&name, &data);
        n += 1;
    }
    assert!(n > 0, "no inputs in {}", dir.display());
}
