//! `shmlane bench` with the channel rows and the naive reference ring (benches/src/chan.rs):
//! `--only` takes them, each prints its rows, and the JSON carries them. Timings are never
//! asserted.

use std::process::Command;

#[test]
fn bench_channel_rows_through_the_command() {
    let dir = std::env::temp_dir().join(format!("shmlane-bench-chan-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("bench.json");
    let rows = [
        "shmlane-chan-spsc-spin",
        "shmlane-chan-spsc-spinpark",
        "shmlane-chan-spsc-park",
        "shmlane-chan-mpmc",
        "shmlane-chan-bytes",
        "shmlane-chan-broadcast",
        "shmlane-chan-latest",
        "naive-shm-ring",
    ];
    let o = Command::new(env!("CARGO_BIN_EXE_shmlane"))
        .args(["bench", "--quick", "--size", "64", "--json"])
        .arg(&json)
        .args(["--only", &rows.join(",")])
        .output()
        .expect("run shmlane");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    // A round-trip row for each; a streaming row for the rows that stream.
    let streams =
        |t: &str| !t.ends_with("park") && !t.ends_with("broadcast") && !t.ends_with("latest");
    for t in rows {
        let n = text
            .lines()
            .filter(|l| l.split_whitespace().next() == Some(t))
            .count();
        assert_eq!(n, 1 + usize::from(streams(t)), "{t}:\n{text}");
    }
    // --size 64 leaves out the latest-value call costs (8-byte values).
    assert!(!text.contains("Single-thread call costs"), "{text}");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert!(v.get("latest_calls").is_none());
    let recs = v["records"].as_array().unwrap();
    for t in rows {
        let mine: Vec<_> = recs.iter().filter(|r| r["transport"] == t).collect();
        assert_eq!(mine.len(), 1 + usize::from(streams(t)), "{t}");
        for r in mine {
            assert_eq!(r["msg_size"], 64);
            assert!(r["samples"].as_u64().unwrap() > 0, "{r}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `shmlane bench --only shmlane-chan-latest --size 8`: the latest-value round trip beside the
/// ratio row, and the single-thread call costs in the table and the JSON.
#[test]
fn bench_latest_rows_through_the_command() {
    let dir = std::env::temp_dir().join(format!("shmlane-bench-latest-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("bench.json");
    let o = Command::new(env!("CARGO_BIN_EXE_shmlane"))
        .args(["bench", "--quick", "--size", "8", "--json"])
        .arg(&json)
        .args(["--only", "shmlane-chan-spsc-spin,shmlane-chan-latest"])
        .output()
        .expect("run shmlane");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    for needle in [
        "shmlane-chan-latest",
        "latest/chan rtt 8 B",
        "Single-thread call costs",
        "latest read_if_changed (unchanged)",
        "read_if_changed / try_recv (empty)",
    ] {
        assert!(text.contains(needle), "{needle}:\n{text}");
    }
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let calls = v["latest_calls"]["calls"].as_array().unwrap();
    assert_eq!(calls.len(), 6, "{v}");
    assert!(
        calls
            .iter()
            .all(|c| c["ns_per_call"].as_f64().unwrap() > 0.0)
    );
    assert_eq!(v["latest_calls"]["ratios"].as_array().unwrap().len(), 3);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `shmlane bench --only shmlane-chan-spsc-park,shmlane-chan-async,shmlane-chan-select16 --size
/// 8`: the async and select round trips beside the parked receiver, their ratio rows, and their
/// records in the JSON (round trips only, 8-byte messages only).
#[test]
fn bench_waiting_rows_through_the_command() {
    let dir = std::env::temp_dir().join(format!("shmlane-bench-wait-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("bench.json");
    let rows = [
        "shmlane-chan-spsc-park",
        "shmlane-chan-async",
        "shmlane-chan-select16",
    ];
    let o = Command::new(env!("CARGO_BIN_EXE_shmlane"))
        .args(["bench", "--quick", "--size", "8", "--json"])
        .arg(&json)
        .args(["--only", &rows.join(",")])
        .output()
        .expect("run shmlane");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    for needle in rows
        .iter()
        .copied()
        .chain(["async/park rtt 8 B", "select16/park rtt 8 B"])
    {
        assert!(text.contains(needle), "{needle}:\n{text}");
    }
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let recs = v["records"].as_array().unwrap();
    for t in &rows[1..] {
        let mine: Vec<_> = recs.iter().filter(|r| r["transport"] == *t).collect();
        assert_eq!(mine.len(), 1, "{t}: a round trip, no streaming figure");
        assert_eq!(mine[0]["metric"], "rtt");
        assert!(mine[0]["samples"].as_u64().unwrap() > 0, "{}", mine[0]);
    }
    // At another size alone: nothing to measure, said before anything runs.
    let o = Command::new(env!("CARGO_BIN_EXE_shmlane"))
        .args([
            "bench",
            "--quick",
            "--size",
            "64",
            "--only",
            "shmlane-chan-async",
        ])
        .output()
        .expect("run shmlane");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("nothing to measure") && err.contains("8 bytes only"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
