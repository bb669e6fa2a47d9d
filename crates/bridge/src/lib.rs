//! # shmlane-bridge
//!
//! Carries shmlane channels between hosts over [Zenoh](https://zenoh.io): an *export* reads a
//! local channel and publishes each message on a key expression; an *import* subscribes to a
//! key expression and writes each message into a local channel. Every message carries a
//! 32-byte header ([`header`]): the exporting bridge's origin id for the channel and the
//! message's number in that origin's stream, so the importing side counts gaps (lost),
//! drops duplicates, and drops this bridge's own messages if they come back (loops). The
//! counts are kept in a companion channel beside each local channel
//! ([`shmlane::bridge_stats`]), which `shmlane stat` prints and a restarted bridge goes on from.
//!
//! The bridge starts no thread of its own: [`Bridge::run`] forwards the exports on the
//! caller's thread (one [`shmlane::Select`] over every exported channel), and imports run in
//! the Zenoh session's subscriber callbacks. Zenoh does discovery, reliability (TCP),
//! routing and congestion control; the bridge adds nothing of a network layer.
//!
//! ```no_run
//! use shmlane_bridge::{Bridge, Config, Route, Policy};
//! let mut cfg = Config::new("host-a");
//! cfg.listen.push("tcp/0.0.0.0:7447".into());
//! cfg.routes.push(Route::export("ticks", "md/ticks", Policy::Drop));
//! cfg.routes.push(Route::import("orders/in", "orders", Policy::Block));
//! let mut bridge = Bridge::open(cfg)?;
//! let stop = std::sync::atomic::AtomicBool::new(false);
//! bridge.run(&stop)?; // until `stop` is set (the command sets it on Ctrl-C)
//! # Ok::<(), shmlane_bridge::BridgeError>(())
//! ```
//!
//! Kinds: byte channels (`shmlane::bytes`), broadcast channels (`shmlane::broadcast`), and SPSC
//! and MPMC channels of any element type (opened with the layout and type name their segment
//! records), both ways. Details, topologies and the guarantees of each policy: docs/bridge.md.

pub mod header;

mod export;
mod import;
mod stats;

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shmlane::bridge_stats::BridgeStats;
use shmlane::{Deadline, Kind, OpenError, PeersLeave, Select, SelectError, Start};
use zenoh::Wait;
use zenoh::key_expr::KeyExpr;
use zenoh::qos::CongestionControl;
use zenoh::sample::Locality;

use export::{Export, Source};
use import::{Import, Sink};
use stats::Companion;

/// What a route does when the far side cannot keep up (docs/bridge.md, "Back-pressure").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// Nothing is dropped: Zenoh's blocking congestion control on exports (a full link makes
    /// the export wait, then the local senders), a blocking write on imports into byte
    /// channels (which holds up the Zenoh session's receive path while the channel is full).
    Block,
    /// Never wait: Zenoh drops on a full link (importers count the gap), an import into a full
    /// channel drops the message and counts it (`dropped_full`). Exactly: delivered + lost +
    /// dropped = sent.
    Drop,
}

impl std::str::FromStr for Policy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "block" => Ok(Self::Block),
            "drop" => Ok(Self::Drop),
            other => Err(format!("policy {other:?}: block or drop")),
        }
    }
}

/// Which way a route goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// A local channel published on a key expression.
    Export,
    /// A key expression written into a local channel.
    Import,
}

/// One route between a local channel and a key expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// Export or import.
    pub direction: Direction,
    /// The local channel's name.
    pub channel: String,
    /// The Zenoh key expression.
    pub key: String,
    /// What happens when the far side cannot keep up.
    pub policy: Policy,
}

impl Route {
    /// An export of `channel` to `key`.
    pub fn export(channel: &str, key: &str, policy: Policy) -> Self {
        Self {
            direction: Direction::Export,
            channel: channel.into(),
            key: key.into(),
            policy,
        }
    }

    /// An import of `key` into `channel`.
    pub fn import(key: &str, channel: &str, policy: Policy) -> Self {
        Self {
            direction: Direction::Import,
            channel: channel.into(),
            key: key.into(),
            policy,
        }
    }

    /// `CHANNEL=KEY` (export) or `KEY=CHANNEL` (import), as the command takes them.
    pub fn parse(direction: Direction, s: &str, policy: Policy) -> Result<Self, BridgeError> {
        let Some((a, b)) = s.split_once('=') else {
            return Err(BridgeError::Route(format!(
                "{s:?}: give {} (one '=')",
                match direction {
                    Direction::Export => "CHANNEL=KEY",
                    Direction::Import => "KEY=CHANNEL",
                }
            )));
        };
        let (channel, key) = match direction {
            Direction::Export => (a, b),
            Direction::Import => (b, a),
        };
        if channel.is_empty() || key.is_empty() {
            return Err(BridgeError::Route(format!(
                "{s:?}: the channel and the key must not be empty"
            )));
        }
        Ok(Self {
            direction,
            channel: channel.into(),
            key: key.into(),
            policy,
        })
    }
}

/// A bridge's configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// This bridge's name, unique among the bridges that share keys: export origins are
    /// derived from it and the channel name (stable across restarts). Default in the command:
    /// the host name.
    pub id: String,
    /// Zenoh endpoints to listen on (`tcp/127.0.0.1:7447`, `unixsock-stream/path`).
    pub listen: Vec<String>,
    /// Zenoh endpoints to connect to (a peer bridge, or a Zenoh router).
    pub connect: Vec<String>,
    /// Give up opening when a `connect` endpoint cannot be reached within this time (`None`:
    /// keep trying in the background, Zenoh's default for peers).
    pub connect_timeout: Option<Duration>,
    /// Multicast scouting (discovering peers on the LAN); off unless asked for.
    pub scout: bool,
    /// Zenoh's express mode (no batching): lower latency, lower throughput.
    pub express: bool,
    /// How often an export publishes a heartbeat (its next number), so importers count a loss
    /// at the end of a stream.
    pub heartbeat: Duration,
    /// How many times the export loop looks at every exported channel before it parks
    /// (`shmlane::Select::spins`): more costs CPU while idle, saves a wake-up per message
    /// that arrives soon after the last.
    pub spins: u32,
    /// The routes.
    pub routes: Vec<Route>,
}

impl Config {
    /// A configuration named `id`, with no endpoints or routes, scouting off, a heartbeat every
    /// 100 ms.
    pub fn new(id: &str) -> Self {
        Self {
            id: id.into(),
            listen: Vec::new(),
            connect: Vec::new(),
            connect_timeout: None,
            scout: false,
            express: false,
            heartbeat: Duration::from_millis(100),
            spins: 64,
            routes: Vec::new(),
        }
    }

    fn zenoh(&self) -> Result<zenoh::Config, BridgeError> {
        let mut c = zenoh::Config::default();
        let set = |c: &mut zenoh::Config, key: &str, value: String| {
            c.insert_json5(key, &value)
                .map_err(|e| BridgeError::Config(format!("{key} = {value}: {e}")))
        };
        let list = |v: &[String]| {
            let quoted: Vec<String> = v.iter().map(|e| format!("{e:?}")).collect();
            format!("[{}]", quoted.join(","))
        };
        set(&mut c, "mode", "\"peer\"".into())?;
        set(&mut c, "listen/endpoints", list(&self.listen))?;
        set(&mut c, "connect/endpoints", list(&self.connect))?;
        set(&mut c, "scouting/multicast/enabled", self.scout.to_string())?;
        if let Some(t) = self.connect_timeout {
            set(&mut c, "connect/timeout_ms", t.as_millis().to_string())?;
            set(&mut c, "connect/exit_on_failure", "true".into())?;
        }
        Ok(c)
    }
}

/// Why a bridge could not start or stopped. Every variant says what to do.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    /// A route as given cannot be used.
    #[error("route {0}")]
    Route(String),
    /// A local channel could not be opened.
    #[error("channel {name}: {source}")]
    Channel {
        /// The channel.
        name: String,
        /// Why.
        source: OpenError,
    },
    /// No such local channel.
    #[error(
        "no channel {0}: create it first (shmlane create {0} --kind bytes, or another kind), then start the bridge"
    )]
    NoChannel(String),
    /// A kind the bridge does not carry.
    #[error(
        "channel {name} is a {kind} channel, which holds one value, not a stream: the bridge carries spsc, mpmc, bytes and broadcast channels"
    )]
    Kind {
        /// The channel.
        name: String,
        /// Its kind.
        kind: &'static str,
    },
    /// A channel in two routes of one bridge.
    #[error(
        "channel {0} is in two routes of this bridge: an export and an import of one channel would send its imported messages out again (a loop), two imports would share its one writer; use one route per channel"
    )]
    TwoRoutes(String),
    /// Zenoh refused the configuration (an endpoint, a key expression).
    #[error("zenoh configuration: {0}")]
    Config(String),
    /// A key expression Zenoh does not accept.
    #[error(
        "key expression {key:?}: {why} (keys are '/'-separated chunks such as md/ticks; '*' and '**' are wildcards, allowed on imports)"
    )]
    Key {
        /// The key.
        key: String,
        /// Zenoh's reason.
        why: String,
    },
    /// The Zenoh session could not be opened (an endpoint that cannot be listened on, a peer
    /// that cannot be reached within `connect_timeout`).
    #[error(
        "could not open the zenoh session: {0} (check --listen and --connect addresses, and that the peer runs)"
    )]
    Open(String),
    /// Zenoh failed while running.
    #[error("zenoh: {0}")]
    Zenoh(String),
    /// A local channel failed (its ring is corrupt).
    #[error("channel {channel}: {what}")]
    Local {
        /// The channel.
        channel: String,
        /// What happened.
        what: String,
    },
}

/// The origin id of `channel` exported by bridge `id`: stable across restarts.
pub fn origin_of(id: &str, channel: &str) -> u64 {
    // 0 is "no origin" in the companion's resume state.
    shmlane::fnv1a64(format!("{id}/{channel}").as_bytes()).max(1)
}

/// An import as the bridge holds it: the channel, the state its callback locks, and the copy of
/// the counters that [`Bridge::stats`] reads (never the callback's lock, which a `block`
/// import holds while it waits for room).
type ImportRoute = (String, Arc<Mutex<Import>>, Arc<Mutex<BridgeStats>>);

/// A running bridge: the Zenoh session, its routes.
pub struct Bridge {
    /// Set when the bridge is dropped (first: before the session's close, which would wait
    /// for an import's callback blocked on a full channel, 10 s in Zenoh, then abandon it).
    stop: StopOnDrop,
    exports: Vec<Export>,
    /// Each import: its channel, its state (its callback's), its counters' copy.
    imports: Vec<ImportRoute>,
    /// The imports' subscribers: undeclared when dropped.
    subscribers: Vec<zenoh::pubsub::Subscriber<()>>,
    heartbeat: Duration,
    spins: u32,
    session: zenoh::Session,
}

/// The imports' stop flag, set when dropped.
struct StopOnDrop(Arc<AtomicBool>);

impl std::ops::Deref for StopOnDrop {
    type Target = Arc<AtomicBool>;
    fn deref(&self) -> &Arc<AtomicBool> {
        &self.0
    }
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        // ORDERING: Relaxed; a flag, read by the imports' waits every 100 ms.
        self.0.store(true, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for Bridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bridge")
            .field("exports", &self.exports.len())
            .field("imports", &self.imports.len())
            .finish_non_exhaustive()
    }
}

/// What a route needs to know of its local channel before opening it.
#[derive(Clone, Debug)]
struct Local {
    kind: Kind,
    /// SPSC and MPMC: the element's layout and type name, as the channel records them (a
    /// run-time endpoint opens the channel with exactly these).
    elem: Option<(shmlane::ElemLayout, String)>,
}

/// Reads the channel `name`'s kind (and element type) from its segment, without attaching.
fn local_of(name: &str) -> Result<Local, BridgeError> {
    let loc = shmlane::Location::Posix(name.into());
    let info = match shmlane_segment::inspect_at(&loc) {
        Ok(Some(info)) => info,
        Ok(None) => {
            return Err(BridgeError::Local {
                channel: name.into(),
                what: "not a shmlane segment".into(),
            });
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(BridgeError::NoChannel(name.into()));
        }
        Err(e) => {
            return Err(BridgeError::Local {
                channel: name.into(),
                what: format!("reading its segment: {e}"),
            });
        }
    };
    let Some(ch) = shmlane::inspect(&info) else {
        return Err(BridgeError::Local {
            channel: name.into(),
            what: "not a shmlane channel (no channel header)".into(),
        });
    };
    let elem = match ch.kind {
        Kind::Bytes | Kind::Broadcast => None,
        Kind::Spsc | Kind::Mpmc => {
            let t = ch.elem_type.ok_or_else(|| BridgeError::Local {
                channel: name.into(),
                what: "no element type record (made by an older shmlane): create it again".into(),
            })?;
            // The record keeps a name's first 112 bytes: a longer one cannot be given back.
            if t.name_len() > shmlane::TYPE_NAME_STORED as u64 {
                return Err(BridgeError::Local {
                    channel: name.into(),
                    what: format!(
                        "its element type's name is longer than {} bytes: the bridge cannot name it; give the type a shorter name (Builder::type_name)",
                        shmlane::TYPE_NAME_STORED
                    ),
                });
            }
            let layout = usize::try_from(t.size())
                .ok()
                .zip(usize::try_from(t.align()).ok())
                .and_then(|(s, a)| shmlane::ElemLayout::new(s, a).ok())
                .ok_or_else(|| BridgeError::Local {
                    channel: name.into(),
                    what: format!("an element layout it cannot have ({t})"),
                })?;
            Some((layout, t.name().into_owned()))
        }
        other @ Kind::Latest => {
            return Err(BridgeError::Kind {
                name: name.into(),
                kind: other.name(),
            });
        }
    };
    Ok(Local {
        kind: ch.kind,
        elem,
    })
}

fn open_bytes(r: &Route) -> Result<shmlane::Channel<u8>, BridgeError> {
    shmlane::bytes(&r.channel)
        .when_peers_leave(PeersLeave::Wait)
        .open()
        .map_err(|source| BridgeError::Channel {
            name: r.channel.clone(),
            source,
        })
}

fn open_broadcast(r: &Route) -> Result<shmlane::Channel<u8>, BridgeError> {
    shmlane::broadcast(&r.channel)
        .when_peers_leave(PeersLeave::Wait)
        .open()
        .map_err(|source| BridgeError::Channel {
            name: r.channel.clone(),
            source,
        })
}

/// An SPSC or MPMC channel opened with the element layout and type name it records.
fn open_fixed(
    r: &Route,
    kind: Kind,
    (layout, type_name): &(shmlane::ElemLayout, String),
) -> Result<shmlane::RawChannel, BridgeError> {
    let b = if kind == Kind::Spsc {
        shmlane::raw_spsc(&r.channel, *layout)
    } else {
        shmlane::raw_mpmc(&r.channel, *layout)
    };
    b.type_name(type_name)
        .when_peers_leave(PeersLeave::Wait)
        .open()
        .map_err(|source| BridgeError::Channel {
            name: r.channel.clone(),
            source,
        })
}

fn checked_key(key: &str) -> Result<KeyExpr<'static>, BridgeError> {
    KeyExpr::try_from(key.to_owned()).map_err(|e| BridgeError::Key {
        key: key.into(),
        why: e.to_string(),
    })
}

/// A random epoch for this run's exports (numbers restart only with a new epoch).
fn fresh_epoch() -> u64 {
    let h = RandomState::new().hash_one((std::process::id(), Instant::now()));
    h.max(1)
}

impl Bridge {
    /// Checks the routes, opens the local channels and the Zenoh session, declares the
    /// publishers and subscribers. Nothing is forwarded until [`run`](Self::run) (exports);
    /// imports start at once.
    #[allow(
        clippy::needless_pass_by_value,
        reason = "the bridge is made from its configuration"
    )]
    pub fn open(config: Config) -> Result<Self, BridgeError> {
        // Every check that needs no network first: a bad route fails before a session opens.
        let mut seen = std::collections::HashSet::new();
        let mut keys = Vec::new();
        for r in &config.routes {
            if !seen.insert(r.channel.clone()) {
                return Err(BridgeError::TwoRoutes(r.channel.clone()));
            }
            let k = checked_key(&r.key)?;
            if r.direction == Direction::Export && k.as_str().contains('*') {
                return Err(BridgeError::Key {
                    key: r.key.clone(),
                    why: "an export publishes on one key, without wildcards".into(),
                });
            }
            keys.push(k);
        }
        let kinds = config
            .routes
            .iter()
            .map(|r| local_of(&r.channel))
            .collect::<Result<Vec<_>, _>>()?;
        let session = zenoh::open(config.zenoh()?)
            .wait()
            .map_err(|e| BridgeError::Open(e.to_string()))?;
        let mut bridge = Self {
            exports: Vec::new(),
            imports: Vec::new(),
            subscribers: Vec::new(),
            heartbeat: config.heartbeat,
            spins: config.spins,
            stop: StopOnDrop(Arc::new(AtomicBool::new(false))),
            session,
        };
        let epoch = fresh_epoch();
        for ((r, local), key) in config.routes.iter().zip(kinds).zip(keys) {
            match r.direction {
                Direction::Export => bridge.add_export(&config, r, &local, key, epoch)?,
                Direction::Import => bridge.add_import(&config, r, &local, key)?,
            }
        }
        Ok(bridge)
    }

    fn add_export(
        &mut self,
        config: &Config,
        r: &Route,
        local: &Local,
        key: KeyExpr<'static>,
        epoch: u64,
    ) -> Result<(), BridgeError> {
        let chan_err = |source| BridgeError::Channel {
            name: r.channel.clone(),
            source,
        };
        let stats = Companion::open(&r.channel)?;
        let (source, max) = match (local.kind, &local.elem) {
            (Kind::Bytes, _) => {
                let rx = open_bytes(r)?.byte_receiver().map_err(chan_err)?;
                let max = rx.max_message();
                (Source::Bytes(rx), max)
            }
            (Kind::Spsc | Kind::Mpmc, Some(elem)) => {
                let ch = open_fixed(r, local.kind, elem)?;
                let src = if local.kind == Kind::Spsc {
                    Source::Spsc(ch.consumer().map_err(chan_err)?)
                } else {
                    Source::Mpmc(ch.receiver().map_err(chan_err)?)
                };
                (src, elem.0.size())
            }
            _ => {
                let sub = open_broadcast(r)?
                    .subscriber_from(Start::Newest)
                    .map_err(chan_err)?;
                let max = sub.max_message();
                (Source::Broadcast(sub), max)
            }
        };
        let publisher = self
            .session
            .declare_publisher(key)
            .congestion_control(match r.policy {
                Policy::Block => CongestionControl::Block,
                Policy::Drop => CongestionControl::Drop,
            })
            .express(config.express)
            // Only other sessions: this bridge's own imports of the key never get its
            // exports, and a `block` export waits for a remote match.
            .allowed_destination(Locality::Remote)
            .wait()
            .map_err(|e| BridgeError::Zenoh(e.to_string()))?;
        let next = stats.now.export_next;
        self.exports.push(Export {
            channel: r.channel.clone(),
            source,
            publisher,
            policy: r.policy,
            origin: origin_of(&config.id, &r.channel),
            epoch,
            next,
            buf: vec![0u8; header::LEN + max],
            stats,
            last_beat: Instant::now(),
            matched: false,
            last_match_check: Instant::now()
                .checked_sub(Duration::from_secs(1))
                .unwrap_or_else(Instant::now),
        });
        Ok(())
    }

    fn add_import(
        &mut self,
        config: &Config,
        r: &Route,
        local: &Local,
        key: KeyExpr<'static>,
    ) -> Result<(), BridgeError> {
        let chan_err = |source| BridgeError::Channel {
            name: r.channel.clone(),
            source,
        };
        let stats = Companion::open(&r.channel)?;
        let (sink, max) = match (local.kind, &local.elem) {
            (Kind::Bytes, _) => {
                let tx = open_bytes(r)?.byte_sender().map_err(chan_err)?;
                let max = tx.max_message();
                (Sink::Bytes(tx), max)
            }
            (Kind::Spsc | Kind::Mpmc, Some(elem)) => {
                let ch = open_fixed(r, local.kind, elem)?;
                let sink = if local.kind == Kind::Spsc {
                    Sink::Spsc(ch.producer().map_err(chan_err)?)
                } else {
                    Sink::Mpmc(ch.sender().map_err(chan_err)?)
                };
                (sink, elem.0.size())
            }
            _ => {
                let p = open_broadcast(r)?.publisher().map_err(chan_err)?;
                let max = p.max_message();
                (Sink::Broadcast(p), max)
            }
        };
        // This bridge's export origins: one of its own messages coming back is a loop.
        let own: Vec<u64> = config
            .routes
            .iter()
            .filter(|r| r.direction == Direction::Export)
            .map(|r| origin_of(&config.id, &r.channel))
            .collect();
        let imp = Arc::new(Mutex::new(Import::new(
            sink,
            r.policy,
            max,
            own,
            stats,
            Arc::clone(&self.stop),
        )));
        let cb = imp.clone();
        let sub = self
            .session
            .declare_subscriber(key)
            // This session's own publications never come back to it.
            .allowed_origin(Locality::Remote)
            .callback(move |sample| {
                let payload = sample.payload().to_bytes();
                // A callback that panicked poisoned the lock: go on with the state it left
                // (counters only).
                let mut imp = cb.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                imp.on_payload(&payload);
            })
            .wait()
            .map_err(|e| BridgeError::Zenoh(e.to_string()))?;
        self.subscribers.push(sub);
        let shown = imp
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .shown
            .clone();
        self.imports.push((r.channel.clone(), imp, shown));
        Ok(())
    }

    /// Forwards the exports on this thread until `stop` is set (checked at least every 100 ms),
    /// publishing heartbeats. Imports run meanwhile in Zenoh's callbacks (and also before and
    /// after this call, until the bridge is dropped).
    pub fn run(&mut self, stop: &AtomicBool) -> Result<(), BridgeError> {
        self.run_until(stop, None)
    }

    /// As [`run`](Self::run), returning also at `until` (if given).
    pub fn run_until(
        &mut self,
        stop: &AtomicBool,
        until: Option<Instant>,
    ) -> Result<(), BridgeError> {
        let mut select = Select::new().spins(self.spins);
        let mut ready: Vec<usize> = Vec::with_capacity(self.exports.len());
        // ORDERING: Relaxed; a flag, nothing published with it.
        while !stop.load(Ordering::Relaxed) && until.is_none_or(|u| Instant::now() < u) {
            for e in &mut self.exports {
                e.beat(self.heartbeat)?;
            }
            ready.clear();
            for (i, e) in self.exports.iter_mut().enumerate() {
                if e.may_take()? {
                    ready.push(i);
                }
            }
            if ready.is_empty() {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            let slice = self.heartbeat.min(Duration::from_millis(100));
            let picked = {
                let mut list: Vec<&mut dyn shmlane::PollSource> = Vec::with_capacity(ready.len());
                for (i, e) in self.exports.iter_mut().enumerate() {
                    if ready.contains(&i) {
                        list.push(e.poll_source());
                    }
                }
                select.wait(&mut list, Some(Deadline::after(slice)))
            };
            match picked {
                Ok(j) | Err(SelectError::Ended { index: j, .. }) => {
                    // An end (a sender that left or died) is waited out: the channel is
                    // persistent; `pump` drains what is there.
                    let i = ready[j];
                    if picked.is_err() {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    self.exports[i].pump()?;
                }
                Err(_) => {}
            }
        }
        Ok(())
    }

    /// The counters of every route's channel, as its companion holds them.
    pub fn stats(&self) -> Vec<(String, BridgeStats)> {
        let mut v: Vec<(String, BridgeStats)> = self
            .exports
            .iter()
            .map(|e| (e.channel.clone(), e.stats.now))
            .collect();
        // Never the route's own lock: its callback may be waiting for room in a full channel.
        for (name, _, shown) in &self.imports {
            let s = *shown
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            v.push((name.clone(), s));
        }
        v
    }

    /// Makes the imports give up waiting for room (`block`: the message is dropped and
    /// counted): called when the bridge is asked to stop, before its counters are read.
    /// Returns once no import waits any more (within 100 ms: a waiting import looks at the
    /// flag that often), so the counters read next include the message it gave up. From then
    /// on the imports take nothing more (a message Zenoh still delivers is not admitted: the
    /// stream's next number stays, so the counters read next are the final ones and a
    /// restarted bridge counts that message as lost).
    pub fn stop(&self) {
        // ORDERING: Relaxed; a flag, read by the imports' waits every 100 ms.
        self.stop.store(true, Ordering::Relaxed);
        for (_, imp, _) in &self.imports {
            // Taken once the callback holding it (if any) returned.
            imp.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .closed = true;
        }
    }

    /// Stops the imports' blocking writes and closes the Zenoh session.
    pub fn close(self) -> Result<(), BridgeError> {
        self.stop.store(true, Ordering::Relaxed);
        // ORDERING: Relaxed above; a flag only.
        let Self {
            session,
            subscribers,
            ..
        } = self;
        drop(subscribers);
        session
            .close()
            .wait()
            .map_err(|e| BridgeError::Zenoh(e.to_string()))
    }
}
