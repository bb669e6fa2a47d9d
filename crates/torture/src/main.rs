//! `shmlane-torture`: fault injection with real processes.
//!
//! Every scenario runs real processes (this binary re-executed with the hidden `child`
//! subcommand) against real segments in `/dev/shm`, checks every message (sequence numbers and
//! checksums), and adds to one summary: faults injected, messages sent / received / lost /
//! corrupt, and dead-peer detection latency. It exits 1 if any check failed. Timings are
//! reported, never asserted.
//!
//! Every channel kind (SPSC, MPMC, bytes, broadcast) has its file (`spsc.rs`, `mpmc.rs`,
//! `bytes.rs`, `broadcast.rs`) holding its scenarios and child roles; adding a kind to a
//! scenario is a function there and a line in `main`. The summary (`summary.rs`) keeps one
//! tally per kind with the same accounting: sent = received + losses the channel counted
//! (+ messages a killed receiver took with it, at most one per kill); missing, torn or
//! corrupt, and delivered twice must be 0.
//!
//! Scenarios (`--only` picks some):
//! - `kills` (`--kills` split over the kinds): byte-channel producers SIGKILLed at random and
//!   killing themselves after claim, mid-copy and after commit, next to a steady producer
//!   (dead claims skipped and counted), and byte receivers killed at random (each successor
//!   takes the role over); SPSC producers killed at random, mid-chunk and after a
//!   commit, each generation taking the role over (`PeerDied` after every death); MPMC senders
//!   and receivers killed at random, senders after a send and between winning a position and
//!   publishing, receivers between winning a position and releasing the slot (the crash
//!   window, through the channel's test hooks), next to a steady pair, every endpoint a process
//!   the parent kills if it hangs (a wedged ring is reported with the kill after which nothing
//!   arrived); the last MPMC sender (receiver) killed while this process receives (sends on a
//!   full ring): `PeerDied`; broadcast publishers killed at random and after a send, subscriber
//!   processes killed, `PeerDied` after every publisher death, received + reported laps =
//!   published.
//! - `consumers`: SPSC consumers SIGKILLed at random and killing themselves between processing a
//!   value and committing it; each successor takes the role over; the consumers commit after
//!   processing (at-least-once), so nothing may be lost, and each fixed-point kill makes one
//!   value processed twice.
//! - `futex`: a producer killed while parked in a futex wait on a full ring, and a consumer
//!   killed while parked on an empty one; the survivor must get `PeerDied` (latency recorded).
//! - `stop` (`--stop-secs`): an SPSC producer, an MPMC sender (next to a steady one), a byte
//!   sender frozen between claim and commit (skipped after the unblock timeout and counted, its
//!   late commit told `Timeout`), a broadcast publisher (never declared dead) and a broadcast
//!   subscriber (lapped, its loss reported exactly).
//! - `race`: `--race` processes racing `open_or_create` on one name, ten times: one creates.
//! - `wrap`: futex sequence words started 100 below `u32::MAX`, ping-pong across the wrap.
//! - `flips`: random bytes of a live segment's header and of its ring's metadata flipped while a
//!   stamped ring whose positions start just below `u64::MAX` carries a million checked
//!   messages; fresh opens and attaches meanwhile must fail cleanly.
//! - `soak` (`--soak-secs` per kind): two byte producer processes and a consumer; two MPMC
//!   sender and two receiver processes; an SPSC producer process; a broadcast publisher
//!   process sending unpaced, a subscriber process and this one (laps reported exactly).

// A test program: scenarios read top to bottom as one function each; figures are printed as
// floats.
#![allow(
    clippy::too_many_lines,
    clippy::similar_names,
    clippy::cast_precision_loss,
    clippy::single_match_else
)]

mod broadcast;
mod bytes;
mod flips;
mod mpmc;
mod msg;
mod proc;
mod race;
mod spsc;
mod stamped;
mod summary;
mod watchdog;

use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use shmlane::WaitStrategy;

use crate::{
    proc::{Rng, mono_ns},
    summary::{K, Summary, report},
};

#[derive(Parser)]
#[command(
    name = "shmlane-torture",
    about = "Fault injection with real processes: kills, frozen peers, creation races, counters at their wrap, byte flips, soak.",
    after_help = "CI runs the defaults (100 kills, about a minute). On demand: --kills 1000 --soak-secs 1800."
)]
struct Cli {
    #[command(subcommand)]
    child: Option<ChildCmd>,
    /// Processes to SIGKILL in total (split over the kinds' kills, consumers and futex).
    #[arg(long, default_value_t = 100)]
    kills: u64,
    /// Seconds a peer stays SIGSTOPped (per kind; above the byte channel's 1 s unblock
    /// timeout).
    #[arg(long, default_value_t = 3)]
    stop_secs: u64,
    /// Processes racing `open_or_create`.
    #[arg(long, default_value_t = 8)]
    race: u64,
    /// Seconds of byte flips in a live segment.
    #[arg(long, default_value_t = 3)]
    flip_secs: u64,
    /// Seconds of soak per kind.
    #[arg(long, default_value_t = 3)]
    soak_secs: u64,
    /// Run only these scenarios: kills, consumers, futex, stop, race, wrap, flips, soak.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Seed of the random timings (default: from the clock; printed).
    #[arg(long)]
    seed: Option<u64>,
    /// Seconds a scenario may run before the run fails as hung (with every process's stack).
    #[arg(long, default_value_t = 300)]
    budget_secs: u64,
}

#[derive(Subcommand)]
enum ChildCmd {
    /// Internal: a process of a scenario.
    #[command(hide = true)]
    Child { role: String, args: Vec<String> },
}

const SCENARIOS: [&str; 8] = [
    "kills",
    "consumers",
    "futex",
    "stop",
    "race",
    "wrap",
    "flips",
    "soak",
];

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if let Some(ChildCmd::Child { role, args }) = cli.child {
        child(&role, &args);
        return std::process::ExitCode::SUCCESS;
    }
    for s in &cli.only {
        if !SCENARIOS.contains(&s.as_str()) {
            eprintln!(
                "shmlane-torture: unknown scenario {s}; the scenarios are {}",
                SCENARIOS.join(", ")
            );
            return std::process::ExitCode::from(2);
        }
    }
    let seed = cli.seed.unwrap_or_else(|| mono_ns() | 1);
    let run = |s: &str| cli.only.is_empty() || cli.only.iter().any(|o| o == s);
    let tag = format!("shmlane-torture-{}", std::process::id());
    let mut sum = Summary::default();
    let mut rng = Rng(seed);
    let t0 = Instant::now();
    println!("shmlane-torture: seed {seed}");
    let dog = watchdog::Watchdog::start(Duration::from_secs(cli.budget_secs));
    // Kills split: bytes producers 20 % and receivers 5 %, SPSC producers 15 % and consumers
    // 10 %, MPMC senders and receivers 15 % and last peers 5 %, broadcast publishers and
    // subscribers 15 %, processes in futex waits 15 %.
    let part = |pct: u64| cli.kills * pct / 100;
    let (k_bytes, k_brx, k_spsc, k_cons, k_mpmc, k_mdeath, k_bcast) = (
        part(20),
        part(5),
        part(15),
        part(10),
        part(15),
        part(5),
        part(15),
    );
    let k_futex = cli.kills - k_bytes - k_brx - k_spsc - k_cons - k_mpmc - k_mdeath - k_bcast;
    if run("kills") {
        dog.enter("bytes::kills");
        bytes::kills(&tag, k_bytes, &mut rng, &mut sum);
        dog.enter("bytes::receivers");
        bytes::receivers(&tag, k_brx, &mut rng, &mut sum);
        dog.enter("spsc::producers");
        spsc::producers(&tag, k_spsc, &mut rng, &mut sum);
        dog.enter("mpmc::kills");
        mpmc::kills(&tag, k_mpmc, &mut rng, &mut sum);
        dog.enter("mpmc::deaths");
        mpmc::deaths(&tag, k_mdeath, &mut rng, &mut sum);
        dog.enter("broadcast::kills");
        broadcast::kills(&tag, k_bcast, &mut rng, &mut sum);
    }
    if run("consumers") {
        dog.enter("spsc::consumers");
        spsc::consumers(&tag, k_cons, &mut rng, &mut sum);
    }
    if run("futex") {
        dog.enter("spsc::futex");
        spsc::futex(&tag, k_futex, &mut sum);
    }
    if run("stop") {
        dog.enter("spsc::stop");
        spsc::stop(&tag, cli.stop_secs, &mut sum);
        dog.enter("mpmc::stop");
        mpmc::stop(&tag, cli.stop_secs, &mut sum);
        dog.enter("bytes::stop");
        bytes::stop(&tag, cli.stop_secs, &mut sum);
        dog.enter("broadcast::stop");
        broadcast::stop(&tag, cli.stop_secs, &mut sum);
    }
    if run("race") {
        dog.enter("race::race");
        race::race(&tag, cli.race, &mut sum);
    }
    if run("wrap") {
        dog.enter("spsc::wrap");
        spsc::wrap(&tag, &mut sum);
    }
    if run("flips") {
        dog.enter("stamped::flips");
        stamped::flips(&tag, cli.flip_secs, &mut rng, &mut sum);
        for k in [K::Spsc, K::Mpmc, K::Bytes, K::Broadcast] {
            dog.enter(&format!("flips::flips {k:?}"));
            flips::flips(&tag, k, cli.flip_secs, &mut rng, &mut sum);
        }
    }
    if run("soak") {
        dog.enter("bytes::soak");
        bytes::soak(&tag, cli.soak_secs, &mut sum);
        dog.enter("mpmc::soak");
        mpmc::soak(&tag, cli.soak_secs, &mut sum);
        dog.enter("spsc::soak");
        spsc::soak(&tag, cli.soak_secs, &mut sum);
        dog.enter("broadcast::soak");
        broadcast::soak(&tag, cli.soak_secs, &mut sum);
    }
    dog.enter("report");
    report(&sum, t0.elapsed());
    if sum.failures.is_empty() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}

// ---------------------------------------------------------------- children

fn child(role: &str, args: &[String]) {
    match role {
        "bytes-producer" => bytes::bytes_producer(args),
        "spsc-consumer" => spsc::spsc_consumer(args),
        "spsc-producer" => spsc::spsc_producer(args),
        "mpmc-sender" => mpmc::sender(args),
        "bytes-stopper" => bytes::stopper(args),
        "bytes-receiver" => bytes::receiver(args),
        "spsc-soak-producer" => spsc::soak_producer(args),
        "flip-producer" => flips::producer(args),
        "bcast-publisher" => broadcast::publisher(args),
        "bcast-subscriber" => broadcast::subscriber(args),
        "mpmc-receiver" => mpmc::receiver(args),
        "soak-producer" => bytes::soak_producer(args),
        "stamped-producer" => stamped::stamped_producer(args),
        "spsc-fill" => {
            let ch = shmlane::spsc::<u64>(&args[0])
                .when_peers_leave(shmlane::PeersLeave::Disconnect)
                .open()
                .expect("open");
            let mut tx = ch.producer().expect("producer");
            for v in 0..1000u64 {
                // Blocks (parked in a futex wait) once the 64 slots are full, until killed.
                if tx.send(v, None).is_err() {
                    return;
                }
            }
        }
        "spsc-wait" => {
            let ch = shmlane::spsc::<u64>(&args[0])
                .when_peers_leave(shmlane::PeersLeave::Disconnect)
                .open()
                .expect("open");
            let mut rx = ch.consumer().expect("consumer");
            println!("waiting");
            // Parked in a futex wait on the empty ring until killed.
            let _ = rx.recv(None);
        }
        "spsc-paced" => {
            let ch = shmlane::spsc::<u64>(&args[0])
                .when_peers_leave(shmlane::PeersLeave::Disconnect)
                .open()
                .expect("open");
            let mut tx = ch.producer().expect("producer");
            let n: u64 = args[1].parse().unwrap();
            for v in 0..n {
                tx.send(v, None).expect("send");
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        "race" => {
            let ch = shmlane::spsc::<u64>(&args[0])
                .when_peers_leave(shmlane::PeersLeave::Disconnect)
                .capacity(1024)
                .open_or_create()
                .expect("open_or_create");
            println!("{}", if ch.created() { "created" } else { "opened" });
            // Stay a moment, so that late racers open a live channel too.
            std::thread::sleep(Duration::from_millis(20));
        }
        "echo" => {
            let park = WaitStrategy::Park;
            let a = shmlane::spsc::<u64>(&args[0])
                .when_peers_leave(shmlane::PeersLeave::Disconnect)
                .wait(park)
                .open()
                .expect("a");
            let b = shmlane::spsc::<u64>(&args[1])
                .when_peers_leave(shmlane::PeersLeave::Disconnect)
                .wait(park)
                .open()
                .expect("b");
            let (mut rx, mut tx) = (
                a.consumer().expect("consumer"),
                b.producer().expect("producer"),
            );
            while let Ok(v) = rx.recv(None) {
                tx.send(v, None).expect("echo");
            }
        }
        other => panic!("unknown child role {other}"),
    }
}
