//! Gives the peer rows of `shmlane bench --peers` the versions of the crates they measure, read
//! from the workspace's `Cargo.lock` at build time (the versions actually built, typed nowhere
//! by hand): `SHMLANE_PEER_VERSION_<CRATE>` (upper case, `-` as `_`), `unknown` when the lock
//! file is missing or lists the crate more than once.

use std::path::PathBuf;

const PEERS: &[&str] = &["iceoryx2", "rtrb", "crossbeam-queue"];

fn main() {
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let lock = dir.join("..").join("Cargo.lock");
    println!("cargo:rerun-if-changed={}", lock.display());
    println!("cargo:rerun-if-changed=build.rs");
    let text = std::fs::read_to_string(&lock).unwrap_or_default();
    for name in PEERS {
        let found = versions(&text, name);
        let v = match found.as_slice() {
            [one] => one.as_str(),
            _ => "unknown",
        };
        let key = name.to_uppercase().replace('-', "_");
        println!("cargo:rustc-env=SHMLANE_PEER_VERSION_{key}={v}");
    }
}

/// Every version of package `name` in a `Cargo.lock` (`[[package]]` blocks of `name = ".."`
/// then `version = ".."`).
fn versions(lock: &str, name: &str) -> Vec<String> {
    let want = format!("name = \"{name}\"");
    let mut out = Vec::new();
    let mut lines = lock.lines();
    while let Some(l) = lines.next() {
        if l.trim() != want {
            continue;
        }
        let version = lines.next().and_then(|v| {
            v.trim()
                .strip_prefix("version = \"")
                .and_then(|v| v.strip_suffix('"'))
        });
        out.extend(version.map(str::to_owned));
    }
    out
}
