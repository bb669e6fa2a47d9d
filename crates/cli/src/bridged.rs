//! `shmlane bridge` (runs `shmlane-bridge`), and what `ls` and `stat` show of a bridge serving a
//! channel: its companion channel (`NAME.bridge`, `shmlane::bridge_stats`), whose writer is the
//! running bridge's process and whose value holds its counters (docs/bridge.md).

use std::path::{Path, PathBuf};

use shmlane::bridge_stats::{BridgeStats, companion_name};
use shmlane_segment::SegmentInfo;

use crate::CliError;

/// The program `shmlane bridge` runs: next to this one (as cargo and installs place it), else
/// on the PATH.
fn program() -> Option<PathBuf> {
    const NAME: &str = "shmlane-bridge";
    let beside = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join(NAME)))
        .filter(|p| p.is_file());
    beside.or_else(|| {
        std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .map(|d| d.join(NAME))
                .find(|p| p.is_file())
        })
    })
}

/// Replaces this process with `shmlane-bridge ARGS` (its signals, output and exit code are
/// the bridge's own); returns only on failure.
pub(crate) fn exec(args: &[String]) -> Result<(), CliError> {
    use std::os::unix::process::CommandExt;
    let Some(p) = program() else {
        return Err(CliError(
            "shmlane bridge runs the shmlane-bridge program, which is neither next to shmlane nor on the PATH: build it (cargo build --release -p shmlane-bridge) and put it beside shmlane".into(),
        ));
    };
    let e = std::process::Command::new(&p).args(args).exec();
    Err(CliError(format!("running {}: {e}", p.display())))
}

/// The process of a running bridge serving channel `name`: the live writer of its companion
/// in `list`.
pub(crate) fn served_by(list: &[SegmentInfo], name: &str) -> Option<u32> {
    let companion = companion_name(name);
    list.iter()
        .find(|s| s.name == companion)?
        .attached
        .iter()
        .find(|a| a.alive && a.role & shmlane::ROLE_SENDER != 0)
        .map(|a| a.pid)
}

/// The counters a bridge left for channel `name` (POSIX segments only: a bridge opens its
/// channels by name), whether or not it still runs.
fn read(name: &str, dir: Option<&Path>) -> Option<BridgeStats> {
    if dir.is_some() || name.ends_with(".bridge") {
        return None;
    }
    let ch = shmlane::latest::<BridgeStats>(&companion_name(name))
        // A bridge that was killed left its companion stale: it is read all the same.
        .resume(true)
        .open()
        .ok()?;
    let mut r = ch.reader().ok()?;
    r.read()
        .ok()
        .flatten()
        .map(|(v, _)| v)
        .filter(BridgeStats::is_valid)
}

/// `stat`'s bridge lines, if a bridge served the channel.
pub(crate) fn print_stat(name: &str, dir: Option<&Path>) {
    let Some(s) = read(name, dir) else { return };
    let running = crate::list_posix()
        .ok()
        .and_then(|list| served_by(&list, name));
    println!(
        "bridge    {} (pid {}); counts since the companion {} was made:",
        if running.is_some() {
            "running"
        } else {
            "not running"
        },
        s.pid,
        companion_name(name)
    );
    println!("bridge    {s}");
}

/// `stat --json`'s `bridge` object (`null` if no bridge served the channel).
pub(crate) fn stat_json(name: &str, dir: Option<&Path>) -> serde_json::Value {
    let Some(s) = read(name, dir) else {
        return serde_json::Value::Null;
    };
    let running = crate::list_posix()
        .ok()
        .and_then(|list| served_by(&list, name));
    serde_json::json!({
        "pid": s.pid,
        "running": running.is_some(),
        "exported": s.exported,
        "lapped": s.lapped,
        "imported": s.imported,
        "lost": s.lost,
        "duplicates": s.duplicates,
        "dropped_full": s.dropped_full,
        "dropped_too_large": s.dropped_too_large,
        "looped": s.looped,
        "malformed": s.malformed,
    })
}
