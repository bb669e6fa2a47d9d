//! In-process ring throughput and round trips against the best queues of the field, in one
//! criterion run: shmlane's SPSC ring against rtrb, its MPMC ring against crossbeam's
//! `ArrayQueue`, and round trips against the raw cache-line ping-pong. The workloads live in
//! `src/inproc.rs`; `benches/ab.rs` runs the same ones interleaved, which this noisy 2-core
//! machine needs for a fair same-run ratio.
//!
//! `cargo bench -p shmlane-benches --bench rings`

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use shmlane_benches::inproc::CASES;

fn all(c: &mut Criterion) {
    let mut groups: Vec<&str> = CASES.iter().map(|k| k.group).collect();
    groups.dedup();
    for group in groups {
        let mut g = c.benchmark_group(group);
        for case in CASES.iter().filter(|k| k.group == group) {
            if !case.round_trip {
                g.throughput(Throughput::Elements(1));
            }
            g.bench_function(case.name, |b| b.iter_custom(case.run));
        }
        g.finish();
    }
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
}

criterion_group! {
    name = rings;
    config = config();
    targets = all
}
criterion_main!(rings);
