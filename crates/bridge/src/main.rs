//! `shmlane-bridge` (also run as `shmlane bridge`): carries channels between hosts over Zenoh.
//! See docs/bridge.md.

use std::ffi::c_int;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::Parser;
use shmlane_bridge::{Bridge, BridgeError, Config, Direction, Policy, Route};

/// Carry shmlane channels between hosts over Zenoh. Each exported channel is read (spsc, mpmc,
/// bytes: as its receiver; broadcast: as a subscriber from the newest message) and published on
/// a key; each imported key is written into a local channel (as a sender; broadcast: as its
/// publisher). Messages carry an origin and a number: the importing side counts gaps as lost,
/// drops duplicates and its own messages coming back. Counters: `shmlane stat CHANNEL`. Ctrl-C
/// (SIGINT, SIGTERM, SIGHUP) stops it cleanly and prints them.
#[derive(Parser, Debug)]
#[command(
    name = "shmlane-bridge",
    version,
    after_help = "Examples:
  host A: shmlane bridge --id a --listen tcp/0.0.0.0:7447 --export ticks=md/ticks
  host B: shmlane bridge --id b --connect tcp/hostA:7447 --import md/ticks=ticks
  both ways, no drops: --policy block --export out=k/a --import k/b=in
  from a file: shmlane bridge --config bridge.json   (see docs/bridge.md)"
)]
struct Args {
    /// This bridge's name: unique among bridges sharing keys (export origins derive from it).
    /// Default: the host name.
    #[arg(long)]
    id: Option<String>,
    /// A Zenoh endpoint to listen on (tcp/ADDR:PORT, udp/ADDR:PORT, unixsock-stream/PATH).
    #[arg(long)]
    listen: Vec<String>,
    /// A Zenoh endpoint to connect to: a peer bridge or a Zenoh router.
    #[arg(long)]
    connect: Vec<String>,
    /// Fail if a --connect endpoint cannot be reached within this many seconds (default: keep
    /// trying in the background).
    #[arg(long, value_name = "SECS")]
    connect_timeout: Option<f64>,
    /// Discover peers by multicast scouting on the LAN (off by default).
    #[arg(long)]
    scout: bool,
    /// Zenoh's express mode: no batching, lower latency, lower throughput.
    #[arg(long)]
    express: bool,
    /// What routes do when the far side cannot keep up: block (lose nothing; senders wait) or
    /// drop (never wait; drops counted exactly).
    #[arg(long, default_value = "block")]
    policy: Policy,
    /// Export a local channel: CHANNEL=KEY.
    #[arg(long, value_name = "CHANNEL=KEY")]
    export: Vec<String>,
    /// Import a key expression into a local channel: KEY=CHANNEL.
    #[arg(long, value_name = "KEY=CHANNEL")]
    import: Vec<String>,
    /// Routes and endpoints from a JSON file (added to the flags'): {"id", "listen": [..],
    /// "connect": [..], "routes": [{"export": "CH=KEY" | "import": "KEY=CH", "policy": ..}]}.
    #[arg(long, value_name = "FILE")]
    config: Option<std::path::PathBuf>,
    /// Heartbeat period of exports in milliseconds (importers count a loss at a stream's end
    /// by it).
    #[arg(long, default_value_t = 100)]
    heartbeat_ms: u64,
    /// How many times the export loop looks at every exported channel before it sleeps: more
    /// costs CPU while idle and saves a wake-up per message that follows soon after the last.
    #[arg(long, default_value_t = 64)]
    spins: u32,
    /// Print the counters every this many seconds (0: only at the end).
    #[arg(long, default_value_t = 0.0)]
    stats_every: f64,
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: c_int) {
    // ORDERING: Relaxed; a flag only, nothing published with it (pairs with the Relaxed loads
    // in `Bridge::run` and the main loop). A lock-free store is async-signal-safe.
    STOP.store(true, Ordering::Relaxed);
}

fn install_handlers() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: a zeroed sigaction is valid (no flags, empty mask); the handler only stores
        // to a static atomic, which is async-signal-safe.
        unsafe {
            let mut act: libc::sigaction = std::mem::zeroed();
            act.sa_sigaction = on_signal as extern "C" fn(c_int) as usize;
            libc::sigemptyset(&raw mut act.sa_mask);
            libc::sigaction(sig, &raw const act, std::ptr::null_mut());
        }
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "shmlane-bridge".into())
}

fn from_file(path: &std::path::Path, cfg: &mut Config) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let strings = |key: &str| -> Result<Vec<String>, String> {
        match v.get(key) {
            None => Ok(Vec::new()),
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .map(|x| {
                    x.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| format!("{}: {key}: strings only", path.display()))
                })
                .collect(),
            Some(_) => Err(format!("{}: {key}: a list of strings", path.display())),
        }
    };
    if let Some(id) = v.get("id").and_then(|x| x.as_str()) {
        cfg.id = id.into();
    }
    cfg.listen.extend(strings("listen")?);
    cfg.connect.extend(strings("connect")?);
    for r in v
        .get("routes")
        .and_then(|x| x.as_array())
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let policy = match r.get("policy").and_then(|p| p.as_str()) {
            Some(p) => p
                .parse::<Policy>()
                .map_err(|e| format!("{}: {e}", path.display()))?,
            None => Policy::Block,
        };
        let route = match (
            r.get("export").and_then(|x| x.as_str()),
            r.get("import").and_then(|x| x.as_str()),
        ) {
            (Some(e), None) => Route::parse(Direction::Export, e, policy),
            (None, Some(i)) => Route::parse(Direction::Import, i, policy),
            _ => {
                return Err(format!(
                    "{}: each route has one of \"export\": \"CHANNEL=KEY\" or \"import\": \"KEY=CHANNEL\"",
                    path.display()
                ));
            }
        };
        cfg.routes.push(route.map_err(|e| e.to_string())?);
    }
    Ok(())
}

fn config(args: &Args) -> Result<Config, String> {
    let mut cfg = Config::new(&args.id.clone().unwrap_or_else(host_name));
    if let Some(path) = &args.config {
        from_file(path, &mut cfg)?;
        if let Some(id) = &args.id {
            cfg.id.clone_from(id);
        }
    }
    cfg.listen.extend(args.listen.iter().cloned());
    cfg.connect.extend(args.connect.iter().cloned());
    cfg.scout = args.scout;
    cfg.express = args.express;
    cfg.heartbeat = Duration::from_millis(args.heartbeat_ms.max(1));
    cfg.spins = args.spins;
    if let Some(t) = args.connect_timeout {
        cfg.connect_timeout = Some(
            Duration::try_from_secs_f64(t).map_err(|e| format!("--connect-timeout {t}: {e}"))?,
        );
    }
    for e in &args.export {
        cfg.routes
            .push(Route::parse(Direction::Export, e, args.policy).map_err(|e| e.to_string())?);
    }
    for i in &args.import {
        cfg.routes
            .push(Route::parse(Direction::Import, i, args.policy).map_err(|e| e.to_string())?);
    }
    if cfg.routes.is_empty() {
        return Err("no routes: give --export CHANNEL=KEY or --import KEY=CHANNEL".into());
    }
    Ok(cfg)
}

fn print_stats(bridge: &Bridge) {
    for (ch, s) in bridge.stats() {
        eprintln!("{ch}: {s}");
    }
}

fn run(args: &Args) -> Result<(), BridgeError> {
    let cfg = config(args).map_err(BridgeError::Route)?;
    let routes: Vec<String> = cfg
        .routes
        .iter()
        .map(|r| match r.direction {
            Direction::Export => format!("export {} -> {}", r.channel, r.key),
            Direction::Import => format!("import {} -> {}", r.key, r.channel),
        })
        .collect();
    let id = cfg.id.clone();
    let mut bridge = Bridge::open(cfg)?;
    eprintln!("shmlane-bridge {id}: {}", routes.join(", "));
    let every = Duration::try_from_secs_f64(args.stats_every).unwrap_or_default();
    if every.is_zero() {
        bridge.run(&STOP)?;
    } else {
        // ORDERING: Relaxed; a flag only.
        while !STOP.load(Ordering::Relaxed) {
            bridge.run_until(&STOP, Some(std::time::Instant::now() + every))?;
            print_stats(&bridge);
        }
    }
    bridge.stop();
    print_stats(&bridge);
    bridge.close()
}

fn main() -> ExitCode {
    let args = Args::parse();
    install_handlers();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shmlane-bridge: {e}");
            if matches!(e, BridgeError::Route(_)) {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
