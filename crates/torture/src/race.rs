//! Processes racing `open_or_create`.

use std::process::Child;

use crate::{
    proc::{Remove, spawn},
    summary::Summary,
};

// ---------------------------------------------------------------- race

pub(crate) fn race(tag: &str, k: u64, sum: &mut Summary) {
    for round in 0..10 {
        let chan = format!("{tag}-race-{round}");
        let _rm = Remove(vec![chan.clone()]);
        let kids: Vec<Child> = (0..k).map(|_| spawn("race", &[&chan])).collect();
        let mut created = 0;
        for c in kids {
            let out = c.wait_with_output().expect("wait");
            let text = String::from_utf8_lossy(&out.stdout);
            if !out.status.success() {
                sum.fail(format!("race: a process failed: {text}"));
            }
            if text.contains("created") {
                created += 1;
            }
        }
        if created != 1 {
            sum.fail(format!(
                "race: {created} processes created the channel, not 1"
            ));
        }
        sum.races += 1;
    }
    sum.lines.push(format!(
        "race: 10 rounds of {k} processes racing open_or_create: one creator each time, every other opened it"
    ));
}
