//! `shmlane`: see, use and clean up shared-memory channels, and compare transports.
//!
//! Exit codes: 0 success; 1 an error (one line on stderr); 2 a usage error (a bad argument or
//! segment name, reported by clap); 3 a peer process died (`send`,
//! `recv`); 4 the timeout passed (`send`, `recv`); 5 the channel is stale (unread messages of
//! a session in which a process died: `shmlane rm` or `--resume`); 6 the sender failed (`recv`:
//! its input could not be read, ended inside a frame or held a line too long; what was received
//! is incomplete); 128 + the signal when SIGINT, SIGTERM or
//! SIGHUP stopped `send` or `recv` (after a clean leave), 141 (SIGPIPE) when `recv`'s output
//! was closed.

mod bridged;
mod capture;
mod chan;
mod latest;
mod metrics;
mod shape;
mod sig;
mod stream;

use shmlane_cli::args::{Cli, Cmd};

use std::{path::Path, process::ExitCode};

use clap::Parser;
use shmlane_segment::{
    Location, RemoveOutcome, SegmentInfo, SegmentState, inspect_at, list_dir, list_posix, remove,
    remove_if_state,
};

/// An error for the user: printed as one line, exit code 1.
#[derive(Debug)]
pub struct CliError(pub String);

impl From<String> for CliError {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl From<&str> for CliError {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

/// The shape `send` and `recv` ask for with `stream`'s mode (`--raw` sets its own).
fn stream_shape(
    shape: shmlane_cli::args::ShapeArgs,
    stream: shmlane_cli::args::StreamArgs,
) -> chan::Shape {
    use shmlane_cli::line::Mode;
    let shape = chan::Shape {
        delim: if stream.null { 0 } else { b'\n' },
        ..shape.into()
    };
    if stream.raw {
        chan::Shape {
            kind: shmlane_cli::args::KindArg::Spsc,
            capacity: stream::CHUNKS,
            msg_size: stream::DATA as u64,
            mode: Mode::Raw,
            ..shape
        }
    } else if stream.framed {
        chan::Shape {
            mode: Mode::Framed,
            ..shape
        }
    } else {
        shape
    }
}

/// `create`, with the mode `--raw` or `--framed` asks for (the channel's, as `send` makes it).
fn create(
    name: &str,
    shape: shmlane_cli::args::ShapeArgs,
    perms: shmlane_cli::share::PermArgs,
    raw: bool,
    framed: bool,
) -> Result<(), CliError> {
    let stream = shmlane_cli::args::StreamArgs {
        raw,
        framed,
        null: false,
    };
    let shape = stream_shape(shape, stream);
    if shape.kind == shmlane_cli::args::KindArg::Latest {
        return latest::create(name, &shape, perms);
    }
    chan::create(name, shape, perms)
}

fn state_str(s: SegmentState) -> String {
    s.to_string()
}

fn role_str(role: u32) -> &'static str {
    match role {
        shmlane::ROLE_SENDER => "sender",
        shmlane::ROLE_RECEIVER => "receiver",
        3 => "sender+receiver",
        _ => "other",
    }
}

fn ls_json(list: &[SegmentInfo]) -> serde_json::Value {
    serde_json::Value::Array(
        list.iter()
            .map(|s| {
                let ch = shmlane::inspect(s);
                serde_json::json!({
                    "name": s.name,
                    "backend": s.backend.as_str(),
                    "path": s.path,
                    "size": s.size,
                    "kind": ch.map(|c| c.kind.name()),
                    "capacity": ch.map(|c| c.capacity),
                    "msg_size": ch.as_ref().map(shmlane_cli::line::shown_msg_size),
                    "len": ch.map(|c| c.len),
                    // A latest-value channel's current version (0: never written).
                    "version": ch.filter(|c| c.kind == shmlane::Kind::Latest).map(|c| latest::version(&c)),
                    "uid": s.uid,
                    "mode": format!("{:o}", s.mode),
                    "state": state_str(s.state),
                    "problem": s.problem,
                    "attached": s.attached.iter().map(|a| serde_json::json!({
                        "pid": a.pid,
                        "role": role_str(a.role),
                        "alive": a.alive,
                    })).collect::<Vec<_>>(),
                    // The process of a running bridge serving this channel (docs/bridge.md).
                    "bridged_by": bridged::served_by(list, &s.name),
                })
            })
            .collect(),
    )
}

fn print_table(list: &[SegmentInfo]) {
    // Columns as wide as their longest value (a long name shifted every column after it).
    let nw = list.iter().map(|s| s.name.len()).fold(28, usize::max);
    let sw = list
        .iter()
        .map(|s| s.state.as_str().len())
        .fold(6, usize::max);
    println!(
        "{:<nw$} {:<7} {:>10} {:<9} {:>8} {:>6} {:>8} {:>6} {:>5} {:<sw$} ATTACHED",
        "NAME", "BACKEND", "SIZE", "KIND", "CAPACITY", "MSG", "LEN", "UID", "MODE", "STATE"
    );
    for s in list {
        let attached: Vec<String> = s
            .attached
            .iter()
            .map(|a| {
                format!(
                    "{}({}, {})",
                    a.pid,
                    role_str(a.role),
                    if a.alive { "alive" } else { "dead" }
                )
            })
            .collect();
        let mut attached = attached;
        if let Some(pid) = bridged::served_by(list, &s.name) {
            attached.push(format!("bridge:{pid}"));
        }
        let ch = shmlane::inspect(s);
        let dash = || "-".to_owned();
        println!(
            "{:<nw$} {:<7} {:>10} {:<9} {:>8} {:>6} {:>8} {:>6} {:>5o} {:<sw$} {}",
            s.name,
            s.backend.as_str(),
            s.size,
            ch.map_or("-", |c| c.kind.name()),
            ch.map_or_else(dash, |c| c.capacity.to_string()),
            ch.map_or_else(dash, |c| shmlane_cli::line::shown_msg_size(&c).to_string()),
            ch.map_or_else(dash, |c| latest::shown_len(&c)),
            s.uid,
            s.mode,
            s.state,
            attached.join(" ")
        );
        if let Some(p) = &s.problem {
            println!("    problem: {p}");
        }
    }
}

/// Senders and receivers attached now (live processes in the attachment table: the channel
/// header's endpoint counts still include those of processes that died), and the attachments
/// of dead processes.
fn attached_now(info: &SegmentInfo) -> (usize, usize, usize) {
    let live = |role: u32| {
        info.attached
            .iter()
            .filter(|a| a.alive && a.role & role != 0)
            .count()
    };
    let dead = info.attached.iter().filter(|a| !a.alive).count();
    (
        live(shmlane::ROLE_SENDER),
        live(shmlane::ROLE_RECEIVER),
        dead,
    )
}

/// The segment `stat` shows.
fn find(name: &str, dir: Option<&Path>) -> Result<SegmentInfo, CliError> {
    match inspect_at(&shmlane_cli::names::location(name, dir)) {
        Ok(Some(info)) => Ok(info),
        Ok(None) => Err(CliError(format!(
            "{name} is not a shmlane segment; `shmlane ls` lists the ones that exist"
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(CliError(format!(
            "no segment named {name}; `shmlane ls` lists the ones that exist"
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Err(CliError(
            shmlane_cli::errs::denied(name, &shmlane_cli::names::path(name, dir), &e),
        )),
        Err(e) => Err(CliError(format!("reading segment {name}: {e}"))),
    }
}

/// The version of `stat --json`'s schema (docs/operations.md): raised when a field changes
/// meaning or goes; new fields may appear within one version.
const STAT_SCHEMA: u64 = 1;

/// `stat --json` of one segment: the fields of `ls --json`, the regions, positions, statistics
/// and bridge.
fn stat_json(info: &SegmentInfo, dir: Option<&Path>) -> serde_json::Value {
    let name = info.name.as_str();
    let ch = shmlane::inspect(info);
    let ch = ch.as_ref();
    let (senders, receivers, dead) = attached_now(info);
    let mut v = ls_json(std::slice::from_ref(info));
    let obj = v[0].as_object_mut().expect("object");
    obj.insert("schema".into(), STAT_SCHEMA.into());
    obj.insert(
        "regions".into(),
        info.regions
            .iter()
            .map(|r| serde_json::json!({"name": r.name, "offset": r.offset, "size": r.size, "kind": r.kind}))
            .collect(),
    );
    if let Some(c) = ch {
        // The messages' own payload for every kind (see `stat --help`).
        let side = |s: shmlane::SideStats| serde_json::json!({"messages": s.messages, "payload_bytes": s.bytes, "stalls": s.stalls, "sleeps": s.sleeps, "wakeups": s.wakeups, "lost": s.lost});
        obj.insert("write_position".into(), c.positions.0.into());
        obj.insert("read_position".into(), c.positions.1.into());
        obj.insert("senders".into(), senders.into());
        obj.insert("receivers".into(), receivers.into());
        obj.insert("dead_attachments".into(), dead.into());
        obj.insert("sent".into(), side(c.sent));
        obj.insert("received".into(), side(c.received));
        obj.insert(
            "never_waking".into(),
            serde_json::json!({"senders": c.never_waking.0, "receivers": c.never_waking.1}),
        );
    }
    obj.insert("bridge".into(), bridged::stat_json(name, dir));
    v[0].take()
}

/// Every segment in /dev/shm (or `dir`).
fn list(dir: Option<&Path>) -> Result<Vec<SegmentInfo>, CliError> {
    match dir {
        Some(d) => list_dir(d),
        None => list_posix(),
    }
    .map_err(|e| CliError(e.to_string()))
}

/// `stat --json` of every segment `ls` lists, as an array.
fn stat_all_json(dir: Option<&Path>) -> Result<serde_json::Value, CliError> {
    Ok(serde_json::Value::Array(
        list(dir)?.iter().map(|s| stat_json(s, dir)).collect(),
    ))
}

fn stat(name: Option<&str>, dir: Option<&Path>, json: bool) -> Result<(), CliError> {
    let Some(name) = name else {
        // clap requires a name without --json.
        let all = stat_all_json(dir)?;
        println!("{}", serde_json::to_string_pretty(&all).expect("json"));
        return Ok(());
    };
    let info = find(name, dir)?;
    if json {
        let v = stat_json(&info, dir);
        println!("{}", serde_json::to_string_pretty(&v).expect("json"));
        return Ok(());
    }
    let ch = shmlane::inspect(&info);
    let (senders, receivers, dead) = attached_now(&info);
    println!(
        "segment   {} ({}, {} bytes, uid {}, mode {:o})",
        info.name,
        info.backend.as_str(),
        info.size,
        info.uid,
        info.mode
    );
    println!("state     {}", info.state);
    if let Some(h) = &info.header {
        println!(
            "header    layout v{}, {} attachment slots, {} region slots",
            h.layout_version, h.max_attach, h.max_regions
        );
    }
    if let Some(p) = &info.problem {
        println!("problem   {p}");
    }
    for a in &info.attached {
        println!(
            "attached  pid {} slot {} {} ({})",
            a.pid,
            a.slot,
            role_str(a.role),
            if a.alive { "alive" } else { "dead" }
        );
    }
    for r in &info.regions {
        println!(
            "region    {:<10} offset {:>8} size {:>10}",
            r.name, r.offset, r.size
        );
    }
    if let Some(c) = ch.filter(|c| c.kind == shmlane::Kind::Latest) {
        latest::print_stat(&c, senders, receivers, dead);
    } else if let Some(c) = ch {
        println!(
            "channel   {:?}, capacity {}, {}-byte elements, messages up to {} bytes",
            c.kind,
            c.capacity,
            c.elem_size,
            shmlane_cli::line::shown_msg_size(&c)
        );
        match c.elem_type {
            Some(t) => println!("type      {t}"),
            None => println!(
                "type      none recorded (made by an older shmlane: remove it and create it again)"
            ),
        }
        println!(
            "ring      write position {}, read position {}, {} queued; {senders} senders, {receivers} receivers attached{}",
            c.positions.0,
            c.positions.1,
            c.len,
            if dead > 0 {
                format!(" ({dead} attachments of processes that died)")
            } else {
                String::new()
            }
        );
        for (what, s) in [("sent", c.sent), ("received", c.received)] {
            println!(
                "{what:<9} {} messages, {} payload bytes, {} stalls, {} sleeps, {} wake-ups issued, {} lost",
                s.messages, s.bytes, s.stalls, s.sleeps, s.wakeups, s.lost
            );
        }
        print_never_waking(&c);
    }
    bridged::print_stat(name, dir);
    Ok(())
}

/// The `never` line of `stat`: endpoints attached with `Wakes::Never`, which make their
/// peers' blocking calls poll.
pub(crate) fn print_never_waking(c: &shmlane::ChannelStats) {
    let (s, r) = c.never_waking;
    println!(
        "never     {s} senders, {r} receivers never wake their peers (Wakes::Never){}",
        if s > 0 || r > 0 {
            format!(
                "; blocked peers look again every {} ms",
                shmlane::NEVER_WAKE_POLL.as_millis()
            )
        } else {
            String::new()
        }
    );
}

fn rm(
    name: Option<String>,
    dir: Option<&Path>,
    stale: bool,
    corrupt: bool,
    force: bool,
) -> Result<(), CliError> {
    if stale || corrupt {
        let wanted = [
            Some(SegmentState::Stale).filter(|_| stale),
            Some(SegmentState::Corrupt).filter(|_| corrupt),
        ];
        let list = match dir {
            Some(d) => list_dir(d),
            None => list_posix(),
        };
        for s in list.map_err(|e| CliError(e.to_string()))? {
            if !wanted.contains(&Some(s.state)) {
                continue;
            }
            let states: Vec<SegmentState> = wanted.into_iter().flatten().collect();
            if let Ok(RemoveOutcome::Removed) =
                remove_if_state(&Location::File(s.path.clone()), &states)
            {
                println!("removed {}", s.name);
            }
        }
        return Ok(());
    }
    let name = name.ok_or("give a segment name, or --stale, or --corrupt")?;
    let loc = shmlane_cli::names::location(&name, dir);
    if force {
        return remove(&loc).map_err(|e| CliError(e.to_string()));
    }
    // Idle, stale or corrupt (a damaged header): nobody uses it, so it goes.
    let unused = [
        SegmentState::Idle,
        SegmentState::Stale,
        SegmentState::Corrupt,
    ];
    let outcome = remove_if_state(&loc, &unused).map_err(|e| match (e, dir) {
        // The library names the path, which is not a NAME: say the command that works.
        (shmlane_segment::RemoveError::NotASegment { name: path }, Some(d)) => CliError(format!(
            "{path} is not a shmlane segment (neither its header nor its control block is shmlane's); if it is yours, remove the file itself, or `shmlane rm --dir {} --force {name}`",
            d.display()
        )),
        (e, _) => CliError(e.to_string()),
    })?;
    match outcome {
        RemoveOutcome::Removed => Ok(()),
        RemoveOutcome::NotStale(now) => Err(CliError(format!(
            "segment {name} is {now}: a live process has it attached; stop it first, or use --force"
        ))),
    }
}

/// `ls` and `stat` only read (they attach to nothing): a closed output ends them as it ends
/// any Unix tool, killed by SIGPIPE (Rust ignores it, so `println!` would panic instead).
fn die_on_sigpipe() {
    // SAFETY: installs the default action, no handler code runs; called before any output.
    unsafe {
        let _ = nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGPIPE,
            nix::sys::signal::SigHandler::SigDfl,
        );
    }
}

/// `shmlane recv`: one channel, or several through one select.
fn recv(cmd: Cmd) -> Result<chan::Ended, CliError> {
    let Cmd::Recv {
        names,
        prefix,
        count,
        timeout,
        follow,
        resume,
        shape,
        trust,
        stream,
    } = cmd
    else {
        unreachable!("called for recv only")
    };
    if stream.raw && count.is_some() {
        return Err(CliError(
            "--count counts messages, which a --raw stream does not keep; use head -c on its output".to_owned(),
        ));
    }
    sig::install()?;
    let join = chan::Join {
        follow,
        resume,
        trust_owner: trust.trust_owner,
    };
    if names.len() > 1 || prefix {
        return chan::recv_many(
            &names,
            stream_shape(shape, stream),
            join,
            count,
            timeout,
            prefix,
        );
    }
    chan::recv(&names[0], stream_shape(shape, stream), join, count, timeout)
}

fn run(cli: Cli) -> Result<chan::Ended, CliError> {
    if matches!(
        cli.cmd,
        Cmd::Ls { .. } | Cmd::Stat { .. } | Cmd::Metrics { listen: None, .. }
    ) {
        die_on_sigpipe();
    }
    match cli.cmd {
        Cmd::Ls { dir, json } => {
            let list = list(dir.as_deref())?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&ls_json(&list)).expect("json")
                );
            } else {
                print_table(&list);
            }
        }
        Cmd::Stat {
            name, dir, json, ..
        } => stat(name.as_deref(), dir.as_deref(), json)?,
        Cmd::Record {
            name,
            out,
            take,
            count,
            duration,
        } => {
            // Stopped by a signal, the recorder ends its file and leaves the channel cleanly.
            sig::install()?;
            return capture::record(&name, &out, take, count, duration);
        }
        Cmd::Replay { file, into, speed } => {
            sig::install()?;
            return capture::replay(&file, &into, speed);
        }
        Cmd::Metrics { dir, listen } => match listen {
            None => print!("{}", metrics::render(&stat_all_json(dir.as_deref())?)),
            Some(addr) => metrics::serve(addr, || stat_all_json(dir.as_deref()))?,
        },
        Cmd::Create {
            name,
            shape,
            perms,
            raw,
            framed,
        } => create(&name, shape, perms, raw, framed)?,
        Cmd::Send {
            name,
            timeout,
            resume,
            shape,
            trust,
            stream,
        } => {
            sig::install()?;
            let join = chan::Join {
                follow: false,
                resume,
                trust_owner: trust.trust_owner,
            };
            return chan::send(&name, stream_shape(shape, stream), join, timeout);
        }
        cmd @ Cmd::Recv { .. } => return recv(cmd),
        Cmd::Rm {
            name,
            dir,
            stale,
            corrupt,
            force,
        } => rm(name, dir.as_deref(), stale, corrupt, force)?,
        Cmd::Bridge { args } => bridged::exec(&args)?,
        Cmd::Bench {
            quick,
            full,
            same_core,
            json,
            plot,
            only,
            sizes,
            peers,
        } => {
            shmlane_benches::suite::check_filters(&only, &sizes).map_err(CliError)?;
            let mut opts = shmlane_benches::suite::Options::new(if quick {
                shmlane_benches::suite::Level::Quick
            } else if full {
                shmlane_benches::suite::Level::Full
            } else {
                shmlane_benches::suite::Level::Default
            });
            opts.same_core = same_core;
            opts.only = only;
            opts.sizes = sizes;
            bench(&opts, peers, json.as_deref(), plot.as_deref())?;
        }
    }
    Ok(chan::Ended::Ok)
}

/// The side-by-side comparison (see `docs/benchmarks.md`).
fn bench(
    opts: &shmlane_benches::suite::Options,
    peers: bool,
    json: Option<&std::path::Path>,
    plot: Option<&std::path::Path>,
) -> Result<(), CliError> {
    use shmlane_benches::suite::{Level, QUICK_LABEL, document, plots, run, table};
    let opts = &shmlane_benches::suite::Options {
        peers,
        ..opts.clone()
    };
    if peers && !shmlane_benches::peers::ENABLED {
        // A usage error (exit 2, as clap's), before anything is measured.
        use clap::CommandFactory;
        Cli::command()
            .error(
                clap::error::ErrorKind::ArgumentConflict,
                shmlane_benches::peers::NOT_BUILT,
            )
            .exit();
    }
    shmlane_benches::peers::check_only(&opts.only, peers).map_err(CliError)?;
    if !shmlane_benches::suite::selects_anything(opts) {
        return Err(CliError(format!(
            "nothing to measure: no row of --only {} has a figure at --size {} \
             (hw-cacheline, iceoryx2-event, shmlane-chan-async and shmlane-chan-select16 carry 8 bytes only); widen --only or --size",
            opts.only.join(","),
            opts.sizes
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        )));
    }
    let same_core = opts.same_core;
    let recs = run(opts);
    // The latest-value call costs (8-byte values), with the latest row or the whole suite.
    let latest_row = opts.only.is_empty()
        || opts
            .only
            .iter()
            .any(|t| t == shmlane_benches::latest::TRANSPORT);
    let calls = (latest_row && (opts.sizes.is_empty() || opts.sizes.contains(&8)))
        .then(|| shmlane_benches::latest::ops(opts.level));
    println!(
        "shmlane against pipes, Unix sockets, eventfd and the hardware limit: two processes, {}",
        if same_core {
            "both on core 0"
        } else {
            "cores 0 and 1"
        }
    );
    if opts.level == Level::Quick {
        println!("{QUICK_LABEL}");
    }
    print!("{}", table(&recs));
    if let Some(calls) = &calls {
        print!("{}", shmlane_benches::latest::ops_table(calls));
    }
    if let Some(path) = json {
        let mut doc = document(&recs, opts.level);
        if let Some(calls) = &calls {
            doc["latest_calls"] = shmlane_benches::latest::ops_json(calls);
        }
        let text = serde_json::to_string_pretty(&doc).expect("json");
        std::fs::write(path, text)
            .map_err(|e| CliError(format!("writing {}: {e}", path.display())))?;
    }
    if let Some(dir) = plot {
        plots(&recs, dir)
            .map_err(|e| CliError(format!("writing plots to {}: {e}", dir.display())))?;
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(chan::Ended::Ok) => ExitCode::SUCCESS,
        Ok(chan::Ended::PeerGone(msg)) => {
            eprintln!("shmlane: {msg}");
            ExitCode::from(3)
        }
        Ok(chan::Ended::Timeout(msg)) => {
            eprintln!("shmlane: {msg}");
            ExitCode::from(4)
        }
        Ok(chan::Ended::PeerFailed(msg)) => {
            eprintln!("shmlane: {msg}");
            ExitCode::from(6)
        }
        Ok(chan::Ended::Signal(s)) => ExitCode::from(128u8.saturating_add(s as u8)),
        Err(CliError(e)) => {
            if let Some(stale) = e.strip_prefix(chan::STALE) {
                eprintln!("shmlane: {stale}");
                return ExitCode::from(5);
            }
            eprintln!("shmlane: {e}");
            ExitCode::from(1)
        }
    }
}
