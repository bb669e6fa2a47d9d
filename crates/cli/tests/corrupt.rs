//! `shmlane recv` on a ring whose messages were overwritten: a length word beyond the
//! channel's message size is reported as corruption (exit 1), never printed as a line.

use std::process::Command;

use shmlane_testkit::{Cleanup, unique};

/// An element of a channel made with `--msg-size 60`: the length word, then the bytes.
fn element(len: u32, fill: &[u8]) -> [u8; 64] {
    let mut m = [0u8; 64];
    m[..4].copy_from_slice(&len.to_le_bytes());
    m[4..4 + fill.len()].copy_from_slice(fill);
    m
}

fn recv(name: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_shmlane"))
        .args(["recv", name, "--count", "3", "--timeout", "5s"])
        .output()
        .expect("run shmlane recv")
}

#[test]
fn a_length_word_past_the_message_size_is_corrupt() {
    for kind in ["spsc", "mpmc"] {
        let name = unique(&format!("cli-corrupt-{kind}"));
        let _c = Cleanup(name.clone());
        // What `shmlane create NAME --kind KIND --capacity 64 --msg-size 60` makes.
        let good = element(2, b"ok");
        // 124 bytes claimed in a 64-byte element (the overwritten ring of the review).
        let bad = element(124, &[b'x'; 60]);
        let after = element(5, b"after");
        let _keep: Box<dyn std::any::Any> = if kind == "spsc" {
            let ch = shmlane::spsc::<[u8; 64]>(&name)
                .capacity(64)
                .type_name(&shmlane_cli::line::line_type(60))
                .create()
                .unwrap();
            let mut tx = ch.producer().unwrap();
            for m in [good, bad, after] {
                tx.try_send(m).unwrap();
            }
            Box::new((tx, ch))
        } else {
            let ch = shmlane::mpmc::<[u8; 64]>(&name)
                .capacity(64)
                .type_name(&shmlane_cli::line::line_type(60))
                .create()
                .unwrap();
            let mut tx = ch.sender().unwrap();
            for m in [good, bad, after] {
                tx.try_send(m).unwrap();
            }
            Box::new((tx, ch))
        };
        let o = recv(&name);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{kind}: {err}");
        assert_eq!(String::from_utf8_lossy(&o.stdout), "ok\n", "{kind}");
        assert!(
            err.contains("corrupt") && err.contains("124 bytes") && err.contains("60"),
            "{kind}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}

/// A message at the message size exactly is delivered whole.
#[test]
fn a_message_of_the_message_size_is_delivered() {
    let name = unique("cli-corrupt-edge");
    let _c = Cleanup(name.clone());
    let ch = shmlane::spsc::<[u8; 64]>(&name)
        .capacity(64)
        .type_name(&shmlane_cli::line::line_type(60))
        .create()
        .unwrap();
    let mut tx = ch.producer().unwrap();
    for m in [element(60, &[b'y'; 60]), element(0, b""), element(1, b"z")] {
        tx.try_send(m).unwrap();
    }
    let o = recv(&name);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        format!("{}\n\nz\n", "y".repeat(60))
    );
    drop((tx, ch));
}
