//! The channel rows and the naive reference ring of `shmlane bench` (`benches/src/chan.rs`):
//! accepted by the filters, each yields records with samples, and the JSON holds them.
//! Timings are never asserted. One test: the harness forks, so nothing else runs beside it.

use shmlane_benches::{
    chan,
    suite::{Level, Options, check_filters, json, run},
    xproc,
};

#[test]
fn channel_rows_run_and_reach_the_json() {
    // 64 KiB messages are `[u8; 65536]` values: an unoptimised build keeps several copies of
    // one per frame, more than a test thread's stack.
    std::thread::Builder::new()
        .stack_size(256 << 20)
        .spawn(rows)
        .expect("thread")
        .join()
        .expect("the channel rows");
}

fn rows() {
    // Every new row is a transport of the harness, in its table order, and `--only` takes it.
    for t in chan::TRANSPORTS {
        assert!(
            xproc::TRANSPORTS.contains(t),
            "{t} missing from xproc::TRANSPORTS"
        );
    }
    let only: Vec<String> = chan::TRANSPORTS.iter().map(|t| (*t).to_owned()).collect();
    check_filters(&only, &[8, 64, 1024, 65536]).expect("the channel rows are accepted");
    assert!(check_filters(&["shmlane-chan-nope".to_owned()], &[]).is_err());

    // A few messages of each, straight through the module (round trips and, where the row
    // has one, streaming); 64 B through the suite below.
    for t in chan::TRANSPORTS {
        for size in [8, 1024, 65536] {
            let times = chan::rtt(t, size, 20, false);
            assert_eq!(times.len(), 20, "{t} {size} B round trips");
            assert!(times.iter().all(|&ns| ns > 0), "{t} {size} B: a zero time");
            if xproc::has_throughput(t) {
                let d = chan::throughput(t, size, 300, false);
                assert!(d.as_nanos() > 0, "{t} {size} B streaming time");
            } else {
                assert!(!chan::has_throughput(t));
            }
        }
    }

    // The steps from the raw ring to the channel (the `chan_parts` example): not rows of the
    // table, so `--only` refuses them, but each runs.
    for t in chan::PARTS {
        assert!(
            check_filters(&[(*t).to_owned()], &[]).is_err(),
            "{t} is not a row"
        );
        assert_eq!(chan::rtt(t, 8, 20, false).len(), 20, "{t}");
        assert!(chan::throughput(t, 8, 300, false).as_nanos() > 0, "{t}");
    }

    // The suite at 64 B, quick: a record with samples for each row and metric, and the JSON
    // document carries them.
    let mut opts = Options::new(Level::Quick);
    opts.only = only;
    opts.sizes = vec![64];
    let recs = run(&opts);
    for t in chan::TRANSPORTS {
        let rtt = recs
            .iter()
            .find(|r| r.transport == *t && r.metric == "rtt")
            .unwrap_or_else(|| panic!("no rtt record for {t}"));
        assert!(rtt.samples > 0 && rtt.rtt.is_some_and(|s| s.p50 > 0), "{t}");
        let tp = recs
            .iter()
            .find(|r| r.transport == *t && r.metric == "throughput");
        assert_eq!(
            tp.is_some(),
            chan::has_throughput(t),
            "{t} streaming record"
        );
        if let Some(tp) = tp {
            assert!(
                tp.samples > 0 && tp.msgs_per_s.is_some_and(|m| m > 0.0),
                "{t}"
            );
        }
    }
    let doc = json(&recs);
    let rows = doc["records"].as_array().expect("records");
    for t in chan::TRANSPORTS {
        let mine: Vec<_> = rows.iter().filter(|r| r["transport"] == *t).collect();
        assert!(!mine.is_empty(), "{t} not in the JSON");
        for r in mine {
            assert_eq!(r["msg_size"], 64);
            assert!(r["samples"].as_u64().is_some_and(|n| n > 0), "{t}: {r}");
            match r["metric"].as_str() {
                Some("rtt") => assert!(r["p50_ns"].as_u64().is_some(), "{t}: {r}"),
                Some("throughput") => assert!(r["msgs_per_s"].as_f64().is_some(), "{t}: {r}"),
                other => panic!("{t}: metric {other:?}"),
            }
        }
    }
    // No channel left behind in /dev/shm by the runs above.
    let pid = format!("shmlane-bench-{}-", std::process::id());
    let left: Vec<String> = std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.contains(&pid))
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "segments left behind: {left:?}");
}
