//! Audio-style block transfer, real-time side made real: a host process renders 256-frame
//! stereo blocks into an SPSC channel; the engine's callback thread runs on a fixed period
//! (256 frames at 48 kHz, 5.333 ms) and reads one block per callback with `read_chunk`.
//!
//! The callback's consumer is `Wakes::Never` (the real-time default here): freeing a block
//! never issues a futex wake, even while the host sleeps in `send` on a full ring; the host
//! then parks at most `NEVER_WAKE_POLL` (1 ms) at a time and looks again. The callback runs
//! under a no-allocation guard: this example's counting `#[global_allocator]` with a per-thread
//! forbid flag set for the callback's duration; an allocation inside it is counted and fails
//! the run (exit status 2).
//!
//! Parameters come from a latest-value channel (`shmlane::latest::<Params>`): the host writes a
//! new `Params` (gain, pan) every `PARAM_EVERY` blocks; each callback takes the newest with
//! `read_if_changed` (a few loads when unchanged; never waits, never a system call) and
//! applies it to the block.
//!
//! Reported: xruns (callbacks that started more than one period late, and underruns: no block
//! ready), the callback's own duration (p50, p99, p99.9, max), and the futex wakes the consumer
//! issued (its side's `wakeups` statistic: 0 with `Wakes::Never`).
//!
//! `cargo run --release -p shmlane --example audio_blocks -- [SECONDS] [--busy] [--peers] [--rt]`
//! - `SECONDS`: how long to run (default 2).
//! - `--busy`: the host keeps the ring full with blocking `send`s, so it sleeps on a full ring
//!   whenever the callback has not yet freed a block (the case where a waking consumer makes a
//!   futex call per callback).
//! - `--peers`: the consumer wakes its peer (`Wakes::Peers`), for comparison.
//! - `--rt`: ask for `SCHED_FIFO` (priority 80) for the callback thread and lock memory
//!   (reported whether granted).

#![allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "example arithmetic on counts and durations"
)]

use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::Cell,
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use shmlane::{Deadline, LatestReader, SendError, UnlinkPolicy, WaitStrategy, Wakes};

const FRAMES: usize = 256;
const CHANNELS: usize = 2;
const BLOCK: usize = FRAMES * CHANNELS;
/// 256 frames at 48 kHz.
const PERIOD: Duration = Duration::from_nanos(5_333_333);

/// The host writes new parameters every this many blocks.
const PARAM_EVERY: u64 = 16;

/// The engine's parameters, as the host publishes them on the latest-value channel.
#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
struct Params {
    /// Linear gain applied to both channels.
    gain: f32,
    /// -1 (left) ..= 1 (right).
    pan: f32,
    /// The block the host had rendered when it wrote these.
    block: u64,
}

/// The no-allocation guard: the system allocator, counting allocations made by a thread while
/// its forbid flag is set.
struct Guarded;

thread_local! {
    /// Set by the callback thread around each callback. A const-initialised `Cell<bool>`:
    /// reading it never allocates (no lazy initialisation, no destructor).
    static FORBID: Cell<bool> = const { Cell::new(false) };
}

/// Allocations (and reallocations) made inside a callback.
static FORBIDDEN_ALLOCS: AtomicU64 = AtomicU64::new(0);

fn note_alloc() {
    if FORBID.with(Cell::get) {
        // ORDERING: Relaxed; a counter read after the callback thread is joined.
        FORBIDDEN_ALLOCS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: forwards every call to `System` unchanged; the counting touches no allocation.
unsafe impl GlobalAlloc for Guarded {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_alloc();
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_alloc();
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_alloc();
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Guarded = Guarded;

struct Opts {
    seconds: f64,
    busy: bool,
    peers: bool,
    rt: bool,
}

fn parse(args: &[String]) -> Opts {
    let mut o = Opts {
        seconds: 2.0,
        busy: false,
        peers: false,
        rt: false,
    };
    for a in args {
        match a.as_str() {
            "--busy" => o.busy = true,
            "--peers" => o.peers = true,
            "--rt" => o.rt = true,
            s => o.seconds = s.parse().unwrap_or(o.seconds),
        }
    }
    o
}

/// What the callback thread measured.
struct Report {
    callbacks: usize,
    late: usize,
    underruns: usize,
    /// Each callback's duration in nanoseconds, sorted at the end.
    durations: Vec<u64>,
    worst_lateness: Duration,
    /// Sum of the squared samples played (0 if every callback underran).
    energy: f64,
    /// Parameter changes the callbacks took (`read_if_changed` returned a value).
    param_changes: u64,
    /// `read_if_changed` calls that raced writes past their retry limit (`Busy`): the
    /// callback kept its previous parameters.
    param_busy: u64,
    /// The last parameters applied.
    params: Params,
    rt: bool,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("host") {
        return host(&args[1], &parse(&args[2..]));
    }
    let o = parse(&args);
    let name = format!("audio-{}", std::process::id());
    let wakes = if o.peers { Wakes::Peers } else { Wakes::Never };
    let ch = shmlane::spsc::<f32>(&name)
        .capacity((BLOCK * 8) as u64)
        .unlink(UnlinkPolicy::LastDetach)
        .keep_unread(false)
        .populate(true)
        .wakes(wakes)
        .create()?;
    let params = shmlane::latest::<Params>(&format!("{name}-params"))
        .unlink(UnlinkPolicy::LastDetach)
        .keep_unread(false)
        .populate(true)
        .create()?;
    let mut rx = ch.consumer()?;
    let mut pr = params.reader()?;
    let mut host_args = vec!["host".to_owned(), name.clone(), o.seconds.to_string()];
    if o.busy {
        host_args.push("--busy".into());
    }
    let mut host = std::process::Command::new(std::env::current_exe()?)
        .args(&host_args)
        .spawn()?;
    // Let the host pre-fill a few blocks, as a real host primes its buffers.
    rx.wait_for_peer(Some(Deadline::after(Duration::from_secs(5))))?;
    std::thread::sleep(PERIOD * 4);
    let periods = (o.seconds / PERIOD.as_secs_f64()).ceil() as usize;
    let want_rt = o.rt;
    let cb = std::thread::spawn(move || {
        let rt = want_rt && make_realtime();
        let r = run_callbacks(&mut rx, &mut pr, periods, rt);
        (r, rx.stats().wakeups)
    });
    let (mut r, wakeups) = cb.join().map_err(|_| "the callback thread panicked")?;
    drop((ch, params));
    let status = host.wait()?;
    let allocs = FORBIDDEN_ALLOCS.load(Ordering::Relaxed);
    print_report(&o, wakes, &mut r, wakeups, allocs);
    println!("host: {status}");
    if allocs != 0 {
        eprintln!("the callback allocated: the no-allocation guard failed");
        std::process::exit(2);
    }
    Ok(())
}

/// The callback thread's loop: one callback per period, timed, under the allocation guard.
fn run_callbacks(
    rx: &mut shmlane::Consumer<f32>,
    pr: &mut LatestReader<Params>,
    periods: usize,
    rt: bool,
) -> Report {
    // Everything the callback touches is allocated here, before the first callback.
    let mut out = vec![0.0f32; BLOCK]; // the device buffer (interleaved stereo)
    let mut r = Report {
        callbacks: 0,
        late: 0,
        underruns: 0,
        durations: Vec::with_capacity(periods),
        worst_lateness: Duration::ZERO,
        energy: 0.0,
        param_changes: 0,
        param_busy: 0,
        params: Params {
            gain: 1.0,
            pan: 0.0,
            block: 0,
        },
        rt,
    };
    let mut next = Instant::now();
    for _ in 0..periods {
        let started = Instant::now();
        let lateness = started.saturating_duration_since(next);
        r.worst_lateness = r.worst_lateness.max(lateness);
        if lateness > PERIOD {
            r.late += 1;
        }
        FORBID.with(|f| f.set(true));
        // --- the real-time callback: no blocking, no allocation, no syscall ---
        let underrun = callback(rx, pr, &mut out, &mut r);
        // --- end of callback ---
        FORBID.with(|f| f.set(false));
        r.durations.push(started.elapsed().as_nanos() as u64);
        r.underruns += usize::from(underrun);
        r.energy += out.iter().map(|&x| f64::from(x * x)).sum::<f64>();
        r.callbacks += 1;
        next += PERIOD;
        if lateness > PERIOD {
            // A late callback does not make the next ones late too: the device's clock moves
            // on (the lost periods are the xrun).
            next = Instant::now() + PERIOD;
        }
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    r
}

fn print_report(o: &Opts, wakes: Wakes, r: &mut Report, wakeups: u64, allocs: u64) {
    r.durations.sort_unstable();
    let pct = |p: f64| {
        let i = ((r.durations.len() as f64 * p).ceil() as usize).clamp(1, r.durations.len());
        Duration::from_nanos(r.durations[i - 1])
    };
    println!(
        "engine: {} callbacks of {FRAMES} frames every {PERIOD:?} ({:.1} s), consumer {wakes:?}, \
         host {}, SCHED_FIFO {}",
        r.callbacks,
        r.callbacks as f64 * PERIOD.as_secs_f64(),
        if o.busy {
            "busy (blocks in send)"
        } else {
            "paced"
        },
        if r.rt { "yes" } else { "no" },
    );
    println!(
        "xruns: {} late callbacks (started > 1 period late; worst {:?}), {} underruns",
        r.late, r.worst_lateness, r.underruns
    );
    println!(
        "callback duration: p50 {:?}  p99 {:?}  p99.9 {:?}  max {:?}",
        pct(0.50),
        pct(0.99),
        pct(0.999),
        pct(1.0)
    );
    println!(
        "parameters: {} changes taken, {} reads busy, last {:?}",
        r.param_changes, r.param_busy, r.params
    );
    println!(
        "consumer futex wakes: {wakeups}; allocations inside callbacks: {allocs} (signal energy \
         {:.1})",
        r.energy
    );
}

/// One callback: the newest parameters if they changed, then the next block out of the ring
/// (or silence on an underrun), with the gain and pan applied. Returns whether it underran.
#[inline(never)]
fn callback(
    rx: &mut shmlane::Consumer<f32>,
    pr: &mut LatestReader<Params>,
    out: &mut [f32],
    r: &mut Report,
) -> bool {
    match pr.read_if_changed() {
        Ok(Some((p, _version))) => {
            r.params = p;
            r.param_changes += 1;
        }
        Ok(None) => {}
        // A write raced every retry (or a damaged value): keep the previous parameters.
        Err(_) => r.param_busy += 1,
    }
    let Ok(chunk) = rx.read_chunk(BLOCK) else {
        out.fill(0.0);
        return true;
    };
    // A copy (safe whatever the host does to the segment; `as_slices` reads in place but is
    // `unsafe`: it is sound only if the host cooperates).
    chunk.copy_to_slice(out);
    chunk.commit_all();
    // `Wakes::Never`: statistics only, no fence, no futex call.
    rx.notify(BLOCK);
    let p = r.params;
    let (left, right) = (p.gain * (1.0 - p.pan) * 0.5, p.gain * (1.0 + p.pan) * 0.5);
    for frame in out.chunks_exact_mut(CHANNELS) {
        frame[0] *= left;
        frame[1] *= right;
    }
    false
}

/// `SCHED_FIFO` at priority 80 for the calling thread and `mlockall`; whether both were granted.
fn make_realtime() -> bool {
    let param = libc::sched_param { sched_priority: 80 };
    // SAFETY: plain system calls on the calling thread / process with valid arguments.
    unsafe {
        libc::sched_setscheduler(0, libc::SCHED_FIFO, &raw const param) == 0
            && libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE) == 0
    }
}

fn host(name: &str, o: &Opts) -> Result<(), Box<dyn std::error::Error>> {
    let ch = shmlane::spsc::<f32>(name)
        .wait(WaitStrategy::Park)
        .unlink(UnlinkPolicy::LastDetach)
        .keep_unread(false)
        .open()?;
    let mut tx = ch.producer()?;
    let params = shmlane::latest::<Params>(&format!("{name}-params"))
        .unlink(UnlinkPolicy::LastDetach)
        .keep_unread(false)
        .open()?;
    let mut pw = params.writer()?;
    let mut phase = 0.0f32;
    let mut block = vec![0.0f32; BLOCK];
    let mut blocks = 0u64;
    let started = Instant::now();
    // The engine stops after `seconds`; the host renders until it has left.
    'render: loop {
        if blocks % PARAM_EVERY == 0 {
            // A slow sweep of gain and pan, as a user turning knobs.
            let t = blocks as f32 / 200.0;
            pw.write(&Params {
                gain: 0.5 + 0.5 * t.sin().abs(),
                pan: (t * 0.7).sin(),
                block: blocks,
            })?;
        }
        for s in &mut block {
            *s = phase.sin() * 0.25;
            phase += 0.0287;
        }
        if o.busy {
            // Keep the ring full: copy in what fits, then block in `send` for the rest (the
            // host sleeps on the full ring until the callback frees a block).
            let mut off = 0;
            while off < BLOCK {
                off += tx.try_send_slice(&block[off..]).unwrap_or(0);
                if off < BLOCK {
                    match tx.send(block[off], Some(Deadline::after(Duration::from_secs(2)))) {
                        Ok(()) => off += 1,
                        Err(SendError::Timeout(_)) => {}
                        Err(_) => break 'render,
                    }
                }
            }
        } else {
            // Paced: wait (sleeping, off the real-time thread) until a whole block fits.
            let mut polls = 0u32;
            while tx.free() < BLOCK {
                polls += 1;
                // Every 100 ms: has the engine left?
                if polls % 200 == 0
                    && tx
                        .wait_for_peer(Some(Deadline::after(Duration::ZERO)))
                        .is_err()
                {
                    break 'render;
                }
                std::thread::sleep(Duration::from_micros(500));
            }
            let mut chunk = tx.write_chunk(BLOCK)?;
            chunk.copy_from_slice(&block);
            chunk.commit_all();
            tx.notify(BLOCK);
        }
        blocks += 1;
        if started.elapsed().as_secs_f64() > o.seconds * 2.0 + 10.0 {
            break; // a backstop: the engine should have left long ago
        }
    }
    let st = tx.stats();
    println!(
        "host: {blocks} blocks rendered, {} waits (sleeps on a full ring), {} wake-ups issued",
        st.sleeps, st.wakeups
    );
    Ok(())
}
