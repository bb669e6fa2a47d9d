//! `shmlane bench --peers`: refused, with how to build it, without the `peers` feature;
//! accepted with it, the peer rows in the table and the JSON with their versions.

use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shmlane"))
        .args(args)
        .output()
        .expect("run shmlane")
}

/// Without the feature: a usage error (exit 2) that says how to build with it, before any
/// measurement.
#[cfg(not(feature = "peers"))]
#[test]
fn peers_refused_without_the_feature() {
    let o = run(&["bench", "--peers", "--quick"]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--features peers") && err.contains("bench --peers"),
        "{err}"
    );
    assert!(o.stdout.is_empty());
}

/// A peer row named in `--only` without `--peers` is an error (exit 1, as an unknown
/// transport), with or without the feature.
#[test]
fn peer_row_without_peers_is_refused() {
    let o = run(&["bench", "--only", "rtrb-inproc"]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("rtrb-inproc") && err.contains("--peers"),
        "{err}"
    );
}

/// With the feature: the in-process anchors and iceoryx2 at 8 bytes, in the table and in the
/// JSON with their versions.
#[cfg(feature = "peers")]
#[test]
fn peers_rows_with_versions() {
    use shmlane_testkit::unique;
    let json = std::env::temp_dir()
        .join(unique("bench-peers"))
        .with_extension("json");
    let o = run(&[
        "bench",
        "--quick",
        "--peers",
        "--only",
        "rtrb-inproc,arrayqueue-inproc,iceoryx2-pubsub,iceoryx2-event,shmlane-spsc-spin",
        "--size",
        "8",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    for t in [
        "rtrb-inproc",
        "arrayqueue-inproc",
        "iceoryx2-pubsub",
        "iceoryx2-event",
        "shmlane-spsc-spin",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(t)),
            "no row {t}:\n{text}"
        );
    }
    assert!(text.contains("peers: iceoryx2 "), "{text}");
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    std::fs::remove_file(&json).unwrap();
    let recs = doc["records"].as_array().unwrap();
    for r in recs {
        let t = r["transport"].as_str().unwrap();
        let v = r.get("version").and_then(|v| v.as_str());
        match t {
            "iceoryx2-pubsub" | "iceoryx2-event" => {
                assert!(v.unwrap().starts_with("iceoryx2 0."), "{r}");
            }
            "rtrb-inproc" => assert!(v.unwrap().starts_with("rtrb "), "{r}"),
            "arrayqueue-inproc" => {
                assert!(v.unwrap().starts_with("crossbeam-queue "), "{r}");
            }
            _ => assert_eq!(v, None, "{r}"),
        }
        assert!(r["samples"].as_u64().unwrap() > 0, "{r}");
    }
    // rtt for all five; streaming for all but the event row.
    assert_eq!(recs.len(), 9, "{doc}");
}
