//! `shmlane`: inspect and clean up shared-memory segments (channels, send/recv and the
//! benchmark arrive with the channel and benchmark crates).

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use shmlane_segment::{
    Location, RemoveOutcome, SegmentInfo, SegmentState, list_dir, list_posix, remove,
    remove_if_stale,
};

#[derive(Parser)]
#[command(
    name = "shmlane",
    version,
    about = "Shared-memory channels between processes: inspect, clean up, benchmark.",
    after_help = "Examples:\n  shmlane ls                 list segments in /dev/shm\n  shmlane ls --dir /mnt/huge list segments in another directory\n  shmlane rm --stale         remove segments whose users died\n  shmlane rm quotes          remove one segment (refused while in use)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// List shmlane segments with their state (live, idle, stale) and attached processes.
    Ls {
        /// Directory to scan instead of /dev/shm (a custom tmpfs or hugetlbfs mount).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Remove a segment (refused while a live process has it, unless --force), or every
    /// stale one.
    Rm {
        /// Segment name (under /dev/shm).
        name: Option<String>,
        /// Remove only segments whose users died, and print what was removed.
        #[arg(long, conflicts_with = "name")]
        stale: bool,
        /// Remove even if live or idle.
        #[arg(long)]
        force: bool,
    },
    /// Compare shmlane with pipes and Unix sockets (side-by-side table).
    Bench {
        /// Arguments for the benchmark.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn print_table(list: &[SegmentInfo]) {
    println!(
        "{:<32} {:<6} {:>10} {:>6} {:>5} {:<6} ATTACHED",
        "NAME", "BACKEND", "SIZE", "UID", "MODE", "STATE"
    );
    for s in list {
        let attached: Vec<String> = s
            .attached
            .iter()
            .map(|a| {
                format!(
                    "{}(role {}, {})",
                    a.pid,
                    a.role,
                    if a.alive { "alive" } else { "dead" }
                )
            })
            .collect();
        println!(
            "{:<32} {:<7} {:>10} {:>6} {:>5o} {:<6} {}",
            s.name,
            s.backend.as_str(),
            s.size,
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

fn run(cli: Cli) -> Result<(), String> {
    match cli.cmd {
        Cmd::Ls { dir } => {
            let list = match &dir {
                Some(d) => list_dir(d),
                None => list_posix(),
            }
            .map_err(|e| e.to_string())?;
            print_table(&list);
            Ok(())
        }
        Cmd::Rm { name, stale, force } => {
            if stale {
                for s in list_posix().map_err(|e| e.to_string())? {
                    if s.state != SegmentState::Stale {
                        continue;
                    }
                    if let Ok(RemoveOutcome::Removed) =
                        remove_if_stale(&Location::File(s.path.clone()))
                    {
                        println!("removed {}", s.name);
                    }
                }
                return Ok(());
            }
            let name = name.ok_or("give a segment name, or --stale")?;
            let loc = Location::Posix(name.clone());
            if force {
                return remove(&loc).map_err(|e| e.to_string());
            }
            match remove_if_stale(&loc).map_err(|e| e.to_string())? {
                RemoveOutcome::Removed | RemoveOutcome::NotStale(SegmentState::Idle) => {
                    remove(&loc).or_else(|e| match e {
                        shmlane_segment::RemoveError::NotFound { .. } => Ok(()),
                        e => Err(e.to_string()),
                    })
                }
                RemoveOutcome::NotStale(state) => Err(format!(
                    "segment {name} is {state}: a live process has it attached; stop it first, or use --force"
                )),
            }
        }
        Cmd::Bench { .. } => {
            println!(
                "shmlane bench: the cross-process benchmark is not built yet (it lands with the ring and benchmark crates)."
            );
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shmlane: {e}");
            ExitCode::from(1)
        }
    }
}
