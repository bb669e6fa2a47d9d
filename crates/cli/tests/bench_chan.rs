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
    let streams = |t: &str| !t.ends_with("park") && !t.ends_with("broadcast");
    for t in rows {
        let n = text
            .lines()
            .filter(|l| l.split_whitespace().next() == Some(t))
            .count();
        assert_eq!(n, 1 + usize::from(streams(t)), "{t}:\n{text}");
    }
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
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
