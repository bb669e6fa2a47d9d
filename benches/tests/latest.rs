//! The latest-value rows of `shmlane bench` (`benches/src/latest.rs`): the round-trip row is
//! a transport of the harness, runs at every size and has no streaming figure; the call costs
//! give a figure for every call and ratio. Timings are never asserted. One test: the harness
//! forks, so nothing else runs beside it.

use shmlane_benches::{
    latest,
    suite::{Level, check_filters},
    xproc,
};

#[test]
fn latest_rows_run() {
    assert!(xproc::TRANSPORTS.contains(&latest::TRANSPORT));
    check_filters(&[latest::TRANSPORT.to_owned()], &[8, 64, 1024, 65536]).expect("accepted");
    assert!(!xproc::has_throughput(latest::TRANSPORT));
    for size in [8, 64, 1024, 65536] {
        assert!(xproc::has_rtt(latest::TRANSPORT, size));
        let times = latest::rtt(latest::TRANSPORT, size, 50, false);
        assert_eq!(times.len(), 50, "{size} B round trips");
        assert!(times.iter().all(|&ns| ns > 0), "{size} B: a zero time");
    }
    let ops = latest::ops(Level::Quick);
    assert_eq!(
        ops.iter().map(|o| o.name).collect::<Vec<_>>(),
        latest::OPS.to_vec()
    );
    for o in &ops {
        assert_eq!(o.per_round.len(), 1, "{}", o.name);
        assert!(
            o.per_round.iter().all(|v| v.is_finite() && *v > 0.0),
            "{o:?}"
        );
    }
    let ratios = latest::op_ratios(&ops);
    assert_eq!(ratios.len(), latest::OP_RATIOS.len());
    assert!(
        ratios.iter().all(|(_, r)| r.is_finite() && *r > 0.0),
        "{ratios:?}"
    );
    let table = latest::ops_table(&ops);
    for (name, _, _) in latest::OP_RATIOS {
        assert!(table.contains(name), "{table}");
    }
    // No segment left behind.
    let me = format!("shmlane-bench-latest-{}-", std::process::id());
    let ops_names = format!("shmlane-bench-ops-{}-", std::process::id());
    let left: Vec<String> = std::fs::read_dir("/dev/shm")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(&me) || n.starts_with(&ops_names))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
