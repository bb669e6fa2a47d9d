//! The `shmlane` command line: its grammar (clap), shared by the binary and the `cli_args`
//! fuzz target.
#![allow(missing_docs)]

use std::{path::PathBuf, time::Duration};

use clap::{Parser, Subcommand, ValueEnum};

/// Channel kinds on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum KindArg {
    /// One sender, one receiver.
    Spsc,
    /// Any number of senders and receivers.
    Mpmc,
    /// Lines of any length up to the largest record (an eighth of the ring, which is
    /// --capacity bytes here); any number of senders, one receiver.
    Bytes,
    /// Fan-out: one sender, any number of receivers, each sees every line unless it falls a
    /// whole ring behind (then it reports the loss on stderr and goes on).
    Broadcast,
    /// One value (up to --msg-size bytes), replaced by each line sent: any number of senders
    /// and receivers; a receiver prints the current value, then each change it sees (it sees
    /// the newest: values replaced in between are skipped). --capacity is its slots.
    Latest,
}

#[derive(Parser, Debug)]
#[command(
    name = "shmlane",
    version,
    about = "Shared-memory channels between processes: list, inspect, create, send, receive, clean up, benchmark.",
    after_help = "Examples:
  seq 1000000 | shmlane send q        send each line as a message (creates q if needed)
  shmlane recv q > out                print messages until the senders leave
  shmlane recv q --count 10 --timeout 5s
  shmlane recv ticks --follow         keep receiving across publisher restarts
  shmlane create feed --kind mpmc --capacity 4096 --msg-size 128
  shmlane create ticks --kind broadcast --capacity 65536 --msg-size 64
  shmlane create price --kind latest --msg-size 64   one value: send replaces it, recv
                                      prints it and each change (--count 1: the current one)
  shmlane create jobs --mode 0660 --group staff   for group staff (they pass --trust-owner YOU)
  shmlane create orders --kind bytes --capacity 1048576   lines up to 131064 bytes
  shmlane ls --json                   every channel, with state and attached processes
  shmlane stat feed                   header, regions, positions, statistics
  shmlane stat --json                 every segment's statistics (docs/operations.md)
  shmlane record ticks --out t.rec    every message with its time (Ctrl-C stops)
  shmlane replay t.rec --into ticks2 --speed max
  shmlane metrics --listen 127.0.0.1:9464   Prometheus scrapes http://.../metrics
  shmlane rm --stale                  remove segments whose users died
  cargo run --release -- bench        shmlane against pipes and Unix sockets
  shmlane send img --raw < a.iso      any bytes, byte for byte (recv img --raw > b.iso)
  shmlane send m --framed < frames    4-byte little-endian length + bytes per message
  find . -print0 | shmlane send f -0  NUL-terminated lines

Exit codes: 0 ok, 1 error, 2 usage (a bad argument or name), 3 a peer process died, 4 timeout, 5 the channel holds unread
messages of a session in which a process died (`shmlane rm NAME`, or --resume), 6 (recv) the
sender failed (unreadable input, a frame cut short, a line too long: the output is
incomplete); send and recv: 130, 143, 129
on SIGINT, SIGTERM, SIGHUP (they leave the channel cleanly first), 141 when recv's output
pipe closes (quiet, like other Unix tools)."
)]
pub struct Cli {
    /// The subcommand.
    #[command(subcommand)]
    pub cmd: Cmd,
}

/// The shape of a channel the command creates; on an existing channel, each flag given must
/// match it (an error otherwise).
#[derive(clap::Args, Clone, Copy, Debug)]
pub struct ShapeArgs {
    /// Channel kind [default: spsc].
    #[arg(long, value_enum)]
    pub kind: Option<KindArg>,
    /// Ring capacity in messages, a power of two [default: 2048, a 1 MiB ring with 256-byte
    /// lines]; bytes: the ring's size in bytes, grown to hold eight records of --msg-size
    /// [default: 1048576]; latest: the value's slots, a power of two from 2 to 65536 (writers
    /// mid-write each hold one) [default: 4].
    #[arg(long)]
    pub capacity: Option<u64>,
    /// Largest message in bytes [default: 256]; latest: the largest value (1 to 1048576).
    #[arg(long = "msg-size")]
    pub msg_size: Option<u64>,
    /// Create a channel that reserves more than 1 GiB of shared memory (refused without it,
    /// saying how much it would take).
    #[arg(long)]
    pub yes: bool,
}

/// How `send` reads its input and `recv` writes its output (the mode is the channel's: both
/// must use the same, `recv` refuses another naming both).
#[derive(clap::Args, Clone, Copy, Debug, Default)]
pub struct StreamArgs {
    /// Move a byte stream byte for byte (any bytes, no line splitting; message boundaries
    /// are not kept): stdin is read in chunks of up to 64 KiB into an spsc channel of 64 such
    /// chunks (4 MiB). Sets the channel's kind, capacity and message size itself.
    #[arg(long, conflicts_with_all = ["framed", "null", "kind", "capacity", "msg_size"])]
    pub raw: bool,
    /// Messages as frames: each is a 4-byte little-endian length followed by that many bytes
    /// (empty ones too), on stdin and stdout alike; a frame cut short at the end of the input
    /// is an error (the frames before it are delivered). spsc or mpmc channels.
    #[arg(long, conflicts_with = "null")]
    pub framed: bool,
    /// Lines end with NUL instead of newline (like `find -print0`, `xargs -0`).
    #[arg(short = '0', long)]
    pub null: bool,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// List shmlane segments: backend, size, kind, capacity, occupancy, owner, state (live,
    /// idle, stale, corrupt: its header is damaged, unreadable: another user's) and attached
    /// processes. A latest-value channel shows its slots as CAPACITY, its value size as MSG
    /// and its current version as LEN (`v0`: never written).
    Ls {
        /// Directory to scan instead of /dev/shm (a custom tmpfs or hugetlbfs mount).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Print a JSON array of objects (name, backend, path, size, kind, capacity, msg_size,
        /// len, version: a latest-value channel's, else null, uid, mode, state, problem,
        /// attached, bridged_by: the pid of a running bridge serving it, else null).
        #[arg(long)]
        json: bool,
    },
    /// Show one segment: header, regions, ring positions and channel statistics.
    ///
    /// Each side's "payload bytes" (JSON `payload_bytes`) are the bytes its messages carried,
    /// counted the same way for every kind: a line's bytes (without its delimiter), a frame's,
    /// a raw chunk's. On an spsc or mpmc channel a message counts its payload when its
    /// endpoint says it (shmlane's send and recv do, for every message; a Rust program calls
    /// `count_payload` after each send or receive), and otherwise its whole element
    /// (messages × element size).
    Stat {
        /// Segment name (under /dev/shm, or --dir). Without it, `--json` prints every segment
        /// `ls` lists, as an array.
        #[arg(value_parser = crate::names::NameParser, required_unless_present = "json")]
        name: Option<String>,
        /// Directory that holds the segment instead of /dev/shm (as for `ls --dir`).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Print JSON (schema 1, docs/operations.md): `schema`, the fields of `ls --json`, and
        /// regions, write_position, read_position,
        /// senders, receivers, dead_attachments, and for a channel `sent` and `received`, each
        /// {messages, payload_bytes, stalls, sleeps, wakeups, lost}, and `bridge`: the counters
        /// of a bridge that served the channel ({pid, running, exported, lapped, imported,
        /// lost, duplicates, dropped_full, dropped_too_large, looped, malformed}), else null.
        #[arg(long)]
        json: bool,
        /// Accepted as on send and recv, for scripts that pass it to every command; changes
        /// nothing here: stat only reads (every value checked) and attaches nothing to the
        /// segment (a bridge's counters are read from its companion channel, NAME.bridge, by a
        /// latest-value reader attached for the read).
        #[arg(long = "trust-owner", value_name = "USER", value_parser = crate::share::parse_user)]
        trust_owner: Option<u32>,
    },
    /// Every segment's statistics in the Prometheus text format (docs/operations.md):
    /// printed once, or served over HTTP at `--listen` (each scrape reads the segments anew;
    /// Ctrl-C stops). Reads only, like `stat`.
    Metrics {
        /// Directory to scan instead of /dev/shm (as for `ls --dir`).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Serve `GET /metrics` on this address (e.g. 127.0.0.1:9464; port 0: any free port,
        /// printed) instead of printing once.
        #[arg(long, value_name = "ADDR")]
        listen: Option<std::net::SocketAddr>,
    },
    /// Record a channel's messages with their times into a file (docs/operations.md, "Record
    /// and replay"): a broadcast channel through a subscriber of its own (no other is
    /// disturbed; messages it is lapped on are counted lost), a bytes channel with --take as
    /// its receiver. Until --count, --duration or Ctrl-C (the file is complete either way).
    Record {
        /// The channel (it must exist).
        #[arg(value_parser = crate::names::NameParser)]
        name: String,
        /// The recording file (created or replaced).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Record a bytes channel as its receiver: the messages are taken (run the recorder
        /// instead of the receiver).
        #[arg(long)]
        take: bool,
        /// Stop after this many messages.
        #[arg(long)]
        count: Option<u64>,
        /// Stop after this long (e.g. 30s, 5m).
        #[arg(long, value_parser = parse_duration)]
        duration: Option<Duration>,
    },
    /// Send a recording's messages into a broadcast or bytes channel (created with the
    /// recording's kind and message size if missing), with the recorded pacing (--speed 1x,
    /// the default; 2x twice as fast) or as fast as the channel takes them (--speed max). A
    /// damaged or cut-short file: everything before the bad record is sent, then an error
    /// naming its byte offset (exit 1).
    Replay {
        /// The recording.
        file: PathBuf,
        /// The channel to send into.
        #[arg(long, value_parser = crate::names::NameParser)]
        into: String,
        /// max, or a factor of the recorded pace (1x, 2x, 0.5x).
        #[arg(long, default_value = "1x", value_parser = crate::recfile::parse_speed)]
        speed: crate::recfile::Speed,
    },
    /// Create a channel that persists until removed.
    Create {
        /// Channel name.
        #[arg(value_parser = crate::names::NameParser)]
        name: String,
        #[command(flatten)]
        shape: ShapeArgs,
        #[command(flatten)]
        perms: crate::share::PermArgs,
        /// A channel for `send --raw` / `recv --raw` (a byte stream: its own kind, capacity
        /// and message size), kept for a later receiver like any created channel.
        #[arg(long, conflicts_with_all = ["framed", "kind", "capacity", "msg_size"])]
        raw: bool,
        /// A channel for `send --framed` / `recv --framed` (length-prefixed messages).
        #[arg(long)]
        framed: bool,
    },
    /// Send each stdin line (without its newline) as one message (--raw: the bytes as they
    /// come; --framed: length-prefixed messages); creates the channel if needed (then removed
    /// when its last user leaves cleanly). At the end of the input it waits until a receiver
    /// has taken every line. If its input fails (unreadable, a frame cut short, a line too
    /// long) it tells the receiver (which exits 6) and exits 1. SIGINT, SIGTERM and SIGHUP end
    /// it cleanly (exit 128 + the signal).
    ///
    /// On a latest-value channel (--kind latest) each line (or frame) replaces the value, at
    /// once: send never waits for a receiver and ends with its input. A line longer than the
    /// value size (--msg-size) ends it with an error naming that size (exit 1): the lines
    /// before it were published and the value stays the last of them. No failure is marked
    /// for the receiver (a value has no order to cut). --raw does not apply.
    Send {
        /// Channel name.
        #[arg(value_parser = crate::names::NameParser)]
        name: String,
        /// Give up (exit 4) when one wait for the channel lasts this long: for room in the
        /// ring, or at the end for a receiver to take the last lines (e.g. 500ms, 5s, 2m).
        #[arg(long, value_parser = parse_duration)]
        timeout: Option<Duration>,
        /// Open a channel left with unread messages by a session in which a process died
        /// (refused otherwise, exit 5), and add to them.
        #[arg(long)]
        resume: bool,
        #[command(flatten)]
        shape: ShapeArgs,
        #[command(flatten)]
        trust: crate::share::TrustArgs,
        #[command(flatten)]
        stream: StreamArgs,
    },
    /// Print each message as a line (a last line sent without a newline comes out without
    /// one; --raw: the byte stream; --framed: length-prefixed messages); exits 0 when the
    /// senders have left and the channel is drained (with --follow: waits for new senders), 3
    /// if a sender died, 4 on timeout, 5 if the channel is stale (see --resume), 6 if the
    /// sender failed (what came before is written), 128 + the signal on SIGINT, SIGTERM or
    /// SIGHUP, 141 when its output pipe is closed (`recv | head -1`), quietly.
    ///
    /// On a latest-value channel (--kind latest) it prints the current value if one was ever
    /// written, then each new value it sees, each as a line (--framed: a frame); a never-written
    /// channel is waited on for its first value. It sees the newest value: values replaced
    /// while it was printing or waking up are skipped, never queued. --count N stops after N
    /// values (--count 1: the current value); otherwise only --timeout (exit 4) or a signal
    /// ends it: writers leaving or dying leave the value in place. --raw does not apply.
    ///
    /// Several channels (`recv A B C`) are received by one thread as their messages come,
    /// interleaved fairly, each line prefixed with its channel's name with --prefix; it exits 0
    /// when every channel has ended, 3 when a sender of any died (--follow: reported, goes on).
    /// Line and framed channels of the queue kinds only (not --raw, not latest-value).
    Recv {
        /// Channel name, or several.
        #[arg(value_parser = crate::names::NameParser, required = true, num_args = 1..)]
        names: Vec<String>,
        /// Start each line with the name of its channel and ": " (for several channels).
        #[arg(long)]
        prefix: bool,
        /// Stop after this many messages.
        #[arg(long)]
        count: Option<u64>,
        /// Give up after this long without finishing (e.g. 500ms, 5s, 2m), also while
        /// messages keep coming or its output is not being read. Until then it waits for a
        /// sender to come, even on a channel whose earlier senders have left.
        #[arg(long, value_parser = parse_duration)]
        timeout: Option<Duration>,
        /// Keep receiving across sender restarts: when the senders leave, wait for new ones
        /// (until --timeout, --count or a signal) instead of exiting 0; a sender that dies is
        /// reported on stderr and waited for too (instead of exit 3).
        #[arg(long)]
        follow: bool,
        /// Deliver the unread messages left by a session in which a process died (without
        /// it such a channel is refused with exit 5, naming the dead process).
        #[arg(long)]
        resume: bool,
        #[command(flatten)]
        shape: ShapeArgs,
        #[command(flatten)]
        trust: crate::share::TrustArgs,
        #[command(flatten)]
        stream: StreamArgs,
    },
    /// Remove a segment (idle, stale or corrupt; refused while a live process has it, unless
    /// --force), or every stale or corrupt one.
    Rm {
        /// Segment name (under /dev/shm, or --dir).
        #[arg(value_parser = crate::names::NameParser)]
        name: Option<String>,
        /// Directory that holds the segments instead of /dev/shm (as for `ls --dir`).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Remove only segments whose users died, and print what was removed.
        #[arg(long, conflicts_with = "name")]
        stale: bool,
        /// Remove segments whose header is damaged (`ls` shows them as corrupt), and print
        /// what was removed; with --stale, both kinds.
        #[arg(long, conflicts_with = "name")]
        corrupt: bool,
        /// Remove even if live or idle.
        #[arg(long)]
        force: bool,
    },
    /// Carry channels between hosts over Zenoh: runs `shmlane-bridge` (installed next to
    /// `shmlane`) with these arguments; `shmlane bridge --help` lists them (docs/bridge.md).
    #[command(disable_help_flag = true)]
    Bridge {
        /// The arguments of `shmlane-bridge` (--export CHANNEL=KEY, --import KEY=CHANNEL,
        /// --listen, --connect, --policy block|drop, --config FILE, ...).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Compare shmlane with pipes, Unix sockets, eventfd and the hardware limit between two
    /// processes: round trips and streaming, 8 B to 64 KiB, in one run (about a minute).
    Bench {
        /// Under 20 s: every transport, metric and size, one round with fewer samples (a
        /// smoke test: figures not for comparison).
        #[arg(long, conflicts_with = "full")]
        quick: bool,
        /// More rounds and samples (several minutes).
        #[arg(long)]
        full: bool,
        /// Run both processes on core 0 (default: cores 0 and 1).
        #[arg(long = "same-core")]
        same_core: bool,
        /// Also write the records as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Also write SVG plots (rtt.svg, throughput.svg) into this directory.
        #[arg(long)]
        plot: Option<PathBuf>,
        /// Only these transports (comma-separated, e.g. `shmlane-spsc-spin,pipe`).
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
        /// Only these message sizes in bytes (comma-separated, from 8, 64, 1024, 65536).
        #[arg(long = "size", value_delimiter = ',')]
        sizes: Vec<usize>,
        /// Also iceoryx2 (publish-subscribe, events) and the in-process anchors rtrb and
        /// crossbeam's ArrayQueue, each row with its version (needs a build with the `peers`
        /// feature: `cargo run --release -p shmlane-cli --features peers -- bench --peers`).
        #[arg(long)]
        peers: bool,
    },
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map_or((s, "s"), |i| s.split_at(i));
    let v: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration: use e.g. 500ms, 5s, 2m"))?;
    let secs = match unit {
        "ms" => v / 1000.0,
        "s" | "" => v,
        "m" => v * 60.0,
        "us" => v / 1e6,
        _ => return Err(format!("unknown unit {unit:?} in {s:?}: use ms, s or m")),
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("{s:?}: {e}"))
}
