//! The suite's rounds, the per-round hardware ping-pong, the same-round ratio rows and the
//! JSON schema (docs/benchmarks.md). Timings are never asserted: only that the figures exist
//! and are sane.

use shmlane_benches::{
    suite::{self, CHECKS, Level, Options, QUICK_LABEL},
    wakeup::Summary,
    xproc::{Record, RoundFigure},
};

/// The harness forks: the tests of this file run one at a time, so no other test thread is
/// running when it does (the fork's single-thread assumption).
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn rtt_record(t: &'static str, size: usize, p50s: &[(u64, u64)]) -> Record {
    let sum = |p50: u64| Summary {
        p50,
        p99: p50 * 2,
        p999: p50 * 3,
        max: p50 * 4,
    };
    Record {
        transport: t,
        metric: "rtt",
        msg_size: size,
        samples: 100 * p50s.len() as u64,
        rtt: Some(sum(p50s[0].0)),
        msgs_per_s: None,
        rounds: p50s
            .iter()
            .map(|&(p50, hw)| RoundFigure {
                rtt: Some(sum(p50)),
                msgs_per_s: None,
                hw_p50_ns: Some(hw),
            })
            .collect(),
    }
}

/// The MPMC/SPSC 64 KiB row takes its ratio within each round: a VM state switch between
/// rounds (ping-pong 110 vs 480 ns) moves both figures and leaves the ratio alone, and an
/// anomaly like issue 18's (MPMC 3-10x SPSC) reads NOT MET.
#[test]
fn the_mpmc_large_message_row_is_a_same_round_ratio() {
    let _one = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let spsc = rtt_record(
        "shmlane-spsc-spin",
        65536,
        &[(3000, 110), (7500, 480), (3100, 110)],
    );
    let fixed = rtt_record(
        "shmlane-mpmc-spin",
        65536,
        &[(3060, 110), (7400, 480), (3200, 110)],
    );
    let r = suite::ratios(&[spsc.clone(), fixed.clone()]);
    assert_eq!(r.len(), 1);
    let c = &r[0];
    assert_eq!(c.check.name, CHECKS[0].name);
    assert_eq!(c.per_round.len(), 3);
    assert!((c.per_round[1] - 7400.0 / 7500.0).abs() < 1e-9);
    assert!((c.median - 3060.0 / 3000.0).abs() < 1e-9, "{c:?}");
    assert!(c.met);
    let text = suite::table(&[spsc.clone(), fixed]);
    let row = text
        .lines()
        .find(|l| l.starts_with("mpmc/spsc rtt 64 KiB"))
        .unwrap_or_else(|| panic!("no regression row:\n{text}"));
    assert!(row.contains("1.02x") && row.contains(" met "), "{row}");
    // Each round's figure beside the ping-pong measured before it.
    assert!(text.contains("3000[110] 7500[480] 3100[110]"), "{text}");

    let anomaly = rtt_record(
        "shmlane-mpmc-spin",
        65536,
        &[(9500, 110), (80000, 480), (9700, 110)],
    );
    let r = suite::ratios(&[spsc.clone(), anomaly.clone()]);
    assert!(!r[0].met && r[0].median > 3.0, "{r:?}");
    assert!(suite::table(&[spsc, anomaly]).contains("NOT MET"));
    // Without its denominator the row is left out, not made up.
    assert!(suite::ratios(&[rtt_record("shmlane-mpmc-spin", 65536, &[(1, 1)])]).is_empty());
}

/// A real quick run of the two rows: every record carries one round with the hardware
/// ping-pong beside it, the JSON has `rounds[].hw_p50_ns` for every record, the `ratios`
/// regression row, the level and the smoke-test note.
#[test]
fn a_run_records_the_ping_pong_beside_every_figure_and_the_json_carries_it() {
    let _one = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut opts = Options::new(Level::Quick);
    opts.only = vec!["shmlane-mpmc-spin".into(), "shmlane-spsc-spin".into()];
    opts.sizes = vec![65536];
    let recs = suite::run(&opts);
    assert_eq!(recs.len(), 4, "{recs:?}");
    let two_cores = shmlane_benches::cores() >= 2;
    for r in &recs {
        assert!(r.samples > 0, "{r:?}");
        assert_eq!(r.rounds.len(), 1, "{r:?}");
        let x = &r.rounds[0];
        assert_eq!(x.hw_p50_ns.is_some_and(|h| h > 0), two_cores, "{r:?}");
        match r.metric {
            "rtt" => assert!(x.rtt.is_some_and(|s| s.p50 > 0 && s.p999 >= s.p50)),
            _ => assert!(x.msgs_per_s.is_some_and(|m| m > 0.0) && r.msgs_per_s.is_some()),
        }
    }
    let v = suite::document(&recs, Level::Quick);
    assert_eq!(v["level"], "quick");
    assert_eq!(v["note"], QUICK_LABEL);
    for r in v["records"].as_array().unwrap() {
        let rounds = r["rounds"].as_array().unwrap();
        assert_eq!(rounds.len(), 1, "{r}");
        assert!(
            rounds[0].as_object().unwrap().contains_key("hw_p50_ns"),
            "{r}"
        );
        if two_cores {
            assert!(rounds[0]["hw_p50_ns"].as_u64().unwrap() > 0, "{r}");
        }
        let key = if r["metric"] == "rtt" {
            "p50_ns"
        } else {
            "msgs_per_s"
        };
        assert!(rounds[0][key].as_f64().unwrap() > 0.0, "{r}");
    }
    let ratios = v["ratios"].as_array().unwrap();
    assert_eq!(ratios.len(), 1, "{v}");
    let c = &ratios[0];
    assert_eq!(c["numerator"], "shmlane-mpmc-spin");
    assert_eq!(c["denominator"], "shmlane-spsc-spin");
    assert_eq!(c["metric"], "rtt");
    assert_eq!(c["msg_size"], 65536);
    assert_eq!(c["max"], 1.5);
    assert_eq!(c["per_round"].as_array().unwrap().len(), 1);
    assert!(c["median"].as_f64().unwrap() > 0.0 && c["met"].is_boolean());
    // The default level names itself and carries no smoke-test note.
    let d = suite::document(&recs, Level::Default);
    assert_eq!(d["level"], "default");
    assert!(d.get("note").is_none());
}
