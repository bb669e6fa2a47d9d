//! Two hosts as two network namespaces joined by a veth pair, 1% of packets dropped in each
//! direction by an nftables rule (this kernel has no netem): with `block`, 1,000,000
//! checksummed messages arrive complete and in order.
//!
//! Needs root, `ip` (iproute2) and `nft` (nftables). Without them the test says so and passes
//! only when `SHMLANE_REQUIRE_NETNS` is unset; CI sets it (and installs nftables), so there it
//! always runs.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{BridgeProc, Chan, check, message, mixed_len};
use shmlane::Deadline;

/// Runs a command; its output on failure.
fn sh(args: &[&str]) -> Result<(), String> {
    let o = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{args:?}: {e}"))?;
    if o.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        ))
    }
}

/// Two namespaces and their veth pair; removed on drop.
struct Hosts {
    a: String,
    b: String,
}

impl Hosts {
    fn new() -> Result<Self, String> {
        let id = std::process::id();
        let h = Self {
            a: format!("shmlane-test-{id}-a"),
            b: format!("shmlane-test-{id}-b"),
        };
        let (va, vb) = (
            format!("shl{}a", id % 100_000),
            format!("shl{}b", id % 100_000),
        );
        sh(&["ip", "netns", "add", &h.a])?;
        sh(&["ip", "netns", "add", &h.b])?;
        sh(&[
            "ip", "link", "add", &va, "type", "veth", "peer", "name", &vb,
        ])?;
        sh(&["ip", "link", "set", &va, "netns", &h.a])?;
        sh(&["ip", "link", "set", &vb, "netns", &h.b])?;
        for (ns, dev, addr) in [(&h.a, &va, "10.231.7.1/24"), (&h.b, &vb, "10.231.7.2/24")] {
            sh(&["ip", "-n", ns, "addr", "add", addr, "dev", dev])?;
            sh(&["ip", "-n", ns, "link", "set", dev, "up"])?;
            sh(&["ip", "-n", ns, "link", "set", "lo", "up"])?;
            // 1% of the packets coming in, dropped at random.
            let nft = |args: &[&str]| {
                let mut v = vec!["ip", "netns", "exec", ns.as_str(), "nft"];
                v.extend_from_slice(args);
                sh(&v)
            };
            nft(&["add", "table", "inet", "shmlane_loss"])?;
            nft(&[
                "add",
                "chain",
                "inet",
                "shmlane_loss",
                "input",
                "{ type filter hook input priority 0; policy accept; }",
            ])?;
            nft(&[
                "add",
                "rule",
                "inet",
                "shmlane_loss",
                "input",
                "iifname",
                "!=",
                "lo",
                "numgen",
                "random",
                "mod",
                "100",
                "<",
                "1",
                "counter",
                "drop",
            ])?;
        }
        Ok(h)
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        // Deleting a namespace deletes its end of the veth pair, and with it the other end.
        let _ = sh(&["ip", "netns", "del", &self.a]);
        let _ = sh(&["ip", "netns", "del", &self.b]);
    }
}

#[test]
fn block_carries_a_million_messages_under_one_percent_loss_between_namespaces() {
    const N: u64 = 1_000_000;
    let required = std::env::var_os("SHMLANE_REQUIRE_NETNS").is_some();
    let hosts = match (shmlane_testkit::is_root(), Hosts::new()) {
        (true, Ok(h)) => h,
        (root, h) => {
            let why = if root {
                h.err().unwrap_or_default()
            } else {
                "not root".into()
            };
            assert!(!required, "SHMLANE_REQUIRE_NETNS is set, but: {why}");
            eprintln!("skipped (set SHMLANE_REQUIRE_NETNS to require it): {why}");
            return;
        }
    };
    let (a, cha) = Chan::bytes("br-ns-a", 1 << 20);
    let (b, chb) = Chan::bytes("br-ns-b", 1 << 20);
    let key = format!("shmlane-test/{}/ns", std::process::id());
    let ba = BridgeProc::start_in(
        "A",
        Some(&hosts.a),
        &[
            "--id",
            "A",
            "--listen",
            "tcp/10.231.7.1:7447",
            "--export",
            &format!("{}={key}", a.0),
        ],
    );
    let bb = BridgeProc::start_in(
        "B",
        Some(&hosts.b),
        &[
            "--id",
            "B",
            "--connect",
            "tcp/10.231.7.1:7447",
            "--import",
            &format!("{key}={}", b.0),
        ],
    );
    let t0 = Instant::now();
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut tx = cha.byte_sender().unwrap();
            let mut m = Vec::new();
            for i in 0..N {
                message(i, mixed_len(i), &mut m);
                tx.send(&m, Some(Deadline::after(Duration::from_secs(120))))
                    .unwrap();
            }
        });
        let mut rx = chb.byte_receiver().unwrap();
        let mut buf = vec![0u8; rx.max_message()];
        for want in 0..N {
            let n = rx
                .recv(&mut buf, Some(Deadline::after(Duration::from_secs(120))))
                .unwrap_or_else(|e| panic!("message {want}: {e}"));
            assert_eq!(check(&buf[..n]), Some(want), "message {want}");
        }
    });
    let took = t0.elapsed();
    let sb = b.wait_stats(Duration::from_secs(2), |s| s.imported == N);
    assert_eq!((sb.imported, sb.lost, sb.duplicates), (N, 0, 0), "{sb:?}");
    // The rule did drop packets, on both hosts.
    let mut dropped = Vec::new();
    for ns in [&hosts.a, &hosts.b] {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                ns,
                "nft",
                "list",
                "table",
                "inet",
                "shmlane_loss",
            ])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let packets: u64 = text
            .split("counter packets ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no counter in {text}"));
        assert!(packets > 0, "{ns}: no packet dropped: {text}");
        dropped.push(packets);
    }
    eprintln!(
        "1M messages between namespaces under 1% loss in {took:?}; packets dropped (A, B): {dropped:?}"
    );
    let _ = (ba.stop(), bb.stop());
}
