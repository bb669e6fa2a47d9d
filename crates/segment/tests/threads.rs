//! One `Segment` shared by many threads of one process (it is `Sync`).

use std::sync::Barrier;

use shmlane_segment::Segment;

const THREADS: usize = 8;
const ROUNDS: usize = 200;

/// Threads of one process adding regions to one shared `Segment` at once are serialised by
/// the directory lock: every region gets its own bytes and its own directory entry. Before
/// the lock token named the attachment (issue 15, finding 3), a lock held under the caller's
/// own token counted as left by a dead process, so racing threads all "took" it and were
/// handed the same offset.
#[test]
fn threads_adding_regions_to_one_segment_never_overlap() {
    for round in 0..ROUNDS {
        let seg = Segment::memfd("threads")
            .size(64 * 1024)
            .max_regions(THREADS as u32)
            .create()
            .expect("create");
        let barrier = Barrier::new(THREADS);
        let mut got: Vec<(String, u64, u64)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..THREADS)
                .map(|t| {
                    let (seg, barrier) = (&seg, &barrier);
                    s.spawn(move || {
                        let name = format!("r{t}");
                        barrier.wait();
                        let r = seg.region(&name, 1000, 1).expect("region");
                        (name, r.offset(), r.len() as u64)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        got.sort_by_key(|g| g.1);
        for w in got.windows(2) {
            assert!(
                w[0].1 + w[0].2 <= w[1].1,
                "round {round}: regions overlap: {:?} and {:?}",
                w[0],
                w[1]
            );
        }
        // Every region is in the directory once, where its creator was told it is.
        let mut dir: Vec<(String, u64, u64)> = seg
            .regions()
            .expect("directory")
            .into_iter()
            .map(|r| (r.name, r.offset, r.size))
            .collect();
        dir.sort_by_key(|g| g.1);
        assert_eq!(dir, got, "round {round}: directory");
    }
}
