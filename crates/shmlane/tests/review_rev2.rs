//! Review rev2 (issue 15): a peer writing one word of our attachment slot must not make this
//! process hand out a second single-role endpoint (two producers of one SPSC ring writing the
//! same slots from two threads of this process: a data race in safe code).

use std::os::unix::fs::FileExt as _;

use shmlane::UnlinkPolicy;
use shmlane_segment::layout::SLOTS_OFFSET;
use shmlane_testkit::{Cleanup, unique};

/// Byte offset of `Slot::generation` (state, pid, role, generation: u32 each).
const GENERATION_AT: u64 = 12;

#[test]
fn a_peer_bumping_our_slot_generation_does_not_free_our_producer_role() {
    let name = unique("rev2-gen");
    let _c = Cleanup(name.clone());
    let ch = shmlane::spsc::<u64>(&name)
        .capacity(64)
        .unlink(UnlinkPolicy::Never)
        .create()
        .unwrap();
    let first = ch.producer().unwrap();
    // The creator holds slot 0. A peer (hostile or broken) adds 2 to its generation, as a
    // claim would; nothing else changes and this process is alive.
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(format!("/dev/shm/{name}"))
        .unwrap();
    let at = SLOTS_OFFSET as u64 + GENERATION_AT; // slot 0
    let mut g = [0u8; 4];
    f.read_exact_at(&mut g, at).unwrap();
    let g = u32::from_le_bytes(g).wrapping_add(2);
    f.write_all_at(&g.to_le_bytes(), at).unwrap();
    // A second producer in this process, while the first lives, must still be refused.
    let second = ch.producer();
    assert!(
        second.is_err(),
        "a second live producer was given out after a peer wrote our slot's generation"
    );
    drop(first);
}
