//! Cross-process behaviour of segments, with real separate processes.

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader},
    os::unix::net::UnixListener,
    sync::atomic::{AtomicU32, AtomicU64, Ordering},
    time::{Duration, Instant},
};

use shmlane_segment::{
    Location, OpenError, RemoveOutcome, Segment, SegmentState, UnlinkPolicy, inspect,
    remove_if_stale,
};
use shmlane_testkit::{Cleanup, child, child_role, finish, is_root, unique};

const LIMIT: Duration = Duration::from_secs(120);

/// The value the creator leaves in region "marker" before publishing.
const MARK: u64 = 0x5eed_cafe_f00d_0001;

fn atomic_u64(seg: &Segment, region: &str) -> &'static AtomicU64 {
    let r = seg.find_region(region).expect("region");
    assert!(r.len() >= 8);
    // SAFETY: the region is in bounds, 128-byte aligned and outlives every use in these tests
    // (each process keeps its Segment until it exits); it is only used atomically.
    unsafe { AtomicU64::from_ptr(r.as_ptr().cast()) }
}

fn atomic_u32(seg: &Segment, region: &str) -> &'static AtomicU32 {
    let r = seg.find_region(region).expect("region");
    // SAFETY: as in `atomic_u64`.
    unsafe { AtomicU32::from_ptr(r.as_ptr().cast()) }
}

/// Entry point of every child process; does nothing in the parent's test run.
#[test]
fn child_entry() {
    let Some((role, args)) = child_role() else {
        return;
    };
    let code = match role.as_str() {
        "open-and-check" => {
            let seg = Segment::posix(&args[0]).role(2).open().expect("child open");
            let v = atomic_u64(&seg, "marker");
            assert_eq!(v.load(Ordering::Acquire), MARK);
            v.store(MARK + 1, Ordering::Release);
            println!("OUT:pid={}", std::process::id());
            0
        }
        "race" => race_child(&args),
        "attach-and-sleep" => {
            let _seg = Segment::posix(&args[0]).role(7).open().expect("child open");
            println!("OUT:attached");
            std::thread::sleep(Duration::from_secs(300));
            0
        }
        "memfd-recv" => {
            let sock = std::os::unix::net::UnixStream::connect(&args[0]).expect("connect");
            let fd = shmlane_segment::recv_fd(&sock).expect("recv fd");
            let seg = Segment::from_memfd(fd, 3).expect("open memfd");
            let v = atomic_u64(&seg, "marker");
            assert_eq!(v.load(Ordering::Acquire), MARK);
            v.store(MARK + 2, Ordering::Release);
            0
        }
        "sysv-open" => {
            let key: i32 = args[0].parse().expect("key");
            let seg = Segment::sysv(key).open().expect("open sysv");
            let v = atomic_u64(&seg, "marker");
            assert_eq!(v.load(Ordering::Acquire), MARK);
            v.store(MARK + 3, Ordering::Release);
            0
        }
        "fork-anonymous" => fork_anonymous_child(),
        "fork-prefault" => fork_prefault_child(),
        "after-fork-full" => after_fork_full_child(&args[0]),
        "pidns-holder" => pidns_holder_child(),
        "anon-fill" => anon_fill_child(),
        "sysv-hold" => {
            let key: i32 = args[0].parse().expect("key");
            let seg = Segment::sysv(key).role(4).open().expect("open sysv");
            println!("OUT:{}", seg.slot());
            std::thread::sleep(Duration::from_secs(300));
            0
        }
        "sysv-die-in-init" => {
            let key: i32 = args[0].parse().expect("key");
            let _ = Segment::sysv(key)
                .size(4096)
                .create_with(|_| -> Result<(), std::io::Error> { std::process::exit(0) });
            unreachable!("the initialiser exits")
        }
        "sysv-die-attached" => {
            let key: i32 = args[0].parse().expect("key");
            let seg = Segment::sysv(key).open().expect("open sysv");
            // Exit without detaching cleanly: the slot stays attached under a dead pid.
            std::mem::forget(seg);
            0
        }
        other => panic!("unknown child role {other}"),
    };
    std::process::exit(code);
}

fn create_marked(name: &str) -> Segment {
    Segment::posix(name)
        .size(64 * 1024)
        .create_with(|s| {
            let r = s.region("marker", 128, 1)?;
            // SAFETY: fresh in-bounds aligned region, used atomically.
            unsafe { AtomicU64::from_ptr(r.as_ptr().cast()) }.store(MARK, Ordering::Relaxed);
            Ok::<_, shmlane_segment::RegionError>(())
        })
        .expect("create")
}

#[test]
fn create_in_one_process_open_in_another() {
    let name = unique("xproc");
    let _c = Cleanup(name.clone());
    let seg = create_marked(&name);
    let (code, out) = finish(child("open-and-check", &[&name]).spawn().unwrap(), LIMIT);
    assert_eq!(code, 0, "child failed");
    assert_eq!(out.len(), 1);
    assert_eq!(atomic_u64(&seg, "marker").load(Ordering::Acquire), MARK + 1);
    // The child left cleanly: its slot is free again; ours remains.
    let att = seg.attachments();
    assert_eq!(att.len(), 1);
    assert_eq!(att[0].pid, std::process::id());
}

const RACERS: usize = 8;
const ROUNDS: usize = 200;

fn race_child(args: &[String]) -> i32 {
    let (coord, prefix) = (&args[0], &args[1]);
    let coord = Segment::posix(coord)
        .open()
        .expect("open coordination segment");
    let barrier = atomic_u32(&coord, "barrier");
    for round in 0..ROUNDS {
        // Everyone starts the round together, so the creations really race.
        barrier.fetch_add(1, Ordering::AcqRel);
        let target = ((round + 1) * RACERS) as u32;
        let t0 = Instant::now();
        while barrier.load(Ordering::Acquire) < target {
            assert!(t0.elapsed() < Duration::from_secs(30), "barrier timed out");
            std::hint::spin_loop();
            std::thread::yield_now();
        }
        let seg = Segment::posix(format!("{prefix}-{round}"))
            .size(16 * 1024)
            .open_or_create_with(|s| {
                let r = s.region("marker", 128, 1)?;
                // SAFETY: fresh in-bounds aligned region, used atomically.
                unsafe { AtomicU64::from_ptr(r.as_ptr().cast()) }.store(MARK, Ordering::Relaxed);
                Ok::<_, shmlane_segment::RegionError>(())
            })
            .expect("open_or_create");
        // Nobody may attach before the creator's initialisation is complete.
        let ok = seg
            .find_region("marker")
            .is_ok_and(|_| atomic_u64(&seg, "marker").load(Ordering::Acquire) == MARK);
        let what = match (seg.created(), ok) {
            (_, false) => "BAD",
            (true, true) => "C",
            (false, true) => "O",
        };
        println!("OUT:{round} {what}");
    }
    0
}

#[test]
fn open_or_create_race_has_exactly_one_creator_per_round() {
    let coord_name = unique("race-coord");
    let prefix = unique("race");
    let _c = Cleanup(coord_name.clone());
    let coord = Segment::posix(&coord_name)
        .size(4096)
        .create_with(|s| s.region("barrier", 128, 1).map(drop))
        .unwrap();
    let children: Vec<_> = (0..RACERS)
        .map(|_| child("race", &[&coord_name, &prefix]).spawn().unwrap())
        .collect();
    let mut per_round: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for c in children {
        let (code, lines) = finish(c, LIMIT);
        assert_eq!(code, 0);
        for l in lines {
            let (r, what) = l.split_once(' ').unwrap();
            per_round
                .entry(r.parse().unwrap())
                .or_default()
                .push(what.to_owned());
        }
    }
    for round in 0..ROUNDS {
        let _ = std::fs::remove_file(format!("/dev/shm/{prefix}-{round}"));
    }
    drop(coord);
    assert_eq!(per_round.len(), ROUNDS);
    for (round, outcomes) in per_round {
        assert_eq!(outcomes.len(), RACERS, "round {round}");
        assert!(
            !outcomes.iter().any(|o| o == "BAD"),
            "round {round}: attached before init"
        );
        let creators = outcomes.iter().filter(|o| *o == "C").count();
        assert_eq!(creators, 1, "round {round}: {outcomes:?}");
    }
}

#[test]
fn sigkilled_process_leaves_segment_stale_and_remove_if_stale_removes_it() {
    let name = unique("stale");
    let _c = Cleanup(name.clone());
    let path = std::path::PathBuf::from(format!("/dev/shm/{name}"));
    let loc = Location::Posix(name.clone());
    drop(Segment::posix(&name).size(4096).create().unwrap());
    // Another test thread spawning a child at this moment shares our (close-on-exec) open
    // file description between its fork and its exec, and with it the OFD locks: the
    // segment can look live for that instant. It must settle to idle.
    let t0 = Instant::now();
    while inspect(&path).unwrap().unwrap().state != SegmentState::Idle
        && t0.elapsed() < Duration::from_secs(5)
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(inspect(&path).unwrap().unwrap().state, SegmentState::Idle);
    // An idle segment is not stale: it stays.
    assert_eq!(
        remove_if_stale(&loc).unwrap(),
        RemoveOutcome::NotStale(SegmentState::Idle)
    );

    let mut c = child("attach-and-sleep", &[&name]).spawn().unwrap();
    let mut lines = BufReader::new(c.stdout.take().unwrap()).lines();
    loop {
        let l = lines.next().expect("child output").unwrap();
        if l == "OUT:attached" {
            break;
        }
    }
    let info = inspect(&path).unwrap().unwrap();
    assert_eq!(info.state, SegmentState::Live);
    assert_eq!(info.attached.len(), 1);
    assert!(info.attached[0].alive);
    assert_eq!(info.attached[0].role, 7);
    assert_eq!(info.attached[0].pid, c.id());
    // A live one is refused.
    assert_eq!(
        remove_if_stale(&loc).unwrap(),
        RemoveOutcome::NotStale(SegmentState::Live)
    );
    assert!(path.exists());

    c.kill().unwrap();
    c.wait().unwrap();
    let info = inspect(&path).unwrap().unwrap();
    assert_eq!(info.state, SegmentState::Stale);
    assert!(!info.attached[0].alive);
    assert_eq!(remove_if_stale(&loc).unwrap(), RemoveOutcome::Removed);
    assert!(!path.exists());
}

#[test]
fn memfd_is_sealed_and_passes_to_another_process() {
    let dir = std::env::temp_dir().join(unique("memfd-sock"));
    let _ = std::fs::remove_file(&dir);
    let listener = UnixListener::bind(&dir).unwrap();
    let seg = Segment::memfd("audio")
        .size(64 * 1024)
        .create_with(|s| {
            let r = s.region("marker", 128, 1)?;
            // SAFETY: fresh in-bounds aligned region, used atomically.
            unsafe { AtomicU64::from_ptr(r.as_ptr().cast()) }.store(MARK, Ordering::Relaxed);
            Ok::<_, shmlane_segment::RegionError>(())
        })
        .unwrap();
    let c = child("memfd-recv", &[dir.to_str().unwrap()])
        .spawn()
        .unwrap();
    let (sock, _) = listener.accept().unwrap();
    shmlane_segment::send_fd(&sock, seg.fd().unwrap()).unwrap();
    let (code, _) = finish(c, LIMIT);
    let _ = std::fs::remove_file(&dir);
    assert_eq!(code, 0);
    assert_eq!(atomic_u64(&seg, "marker").load(Ordering::Acquire), MARK + 2);
    // Sealed: nobody can shrink it under a peer.
    let f = std::fs::File::from(seg.fd().unwrap().try_clone_to_owned().unwrap());
    assert!(
        f.set_len(4096).is_err(),
        "memfd must be sealed against shrinking"
    );
}

#[test]
fn sysv_segment_across_processes_and_ipc_rmid() {
    let key = 0x5100_0000 | (std::process::id() as i32 & 0xffff);
    let seg = Segment::sysv(key)
        .size(64 * 1024)
        .unlink(UnlinkPolicy::CreatorDrop)
        .create_with(|s| {
            let r = s.region("marker", 128, 1)?;
            // SAFETY: fresh in-bounds aligned region, used atomically.
            unsafe { AtomicU64::from_ptr(r.as_ptr().cast()) }.store(MARK, Ordering::Relaxed);
            Ok::<_, shmlane_segment::RegionError>(())
        })
        .unwrap();
    let (code, _) = finish(
        child("sysv-open", &[&key.to_string()]).spawn().unwrap(),
        LIMIT,
    );
    assert_eq!(code, 0);
    assert_eq!(atomic_u64(&seg, "marker").load(Ordering::Acquire), MARK + 3);
    assert!(matches!(
        Segment::sysv(key).size(1).create(),
        Err(shmlane_segment::CreateError::AlreadyExists { .. })
    ));
    drop(seg);
    assert!(matches!(
        Segment::sysv(key).open(),
        Err(OpenError::NotFound { .. })
    ));
}

fn fork_anonymous_child() -> i32 {
    let seg = Segment::anonymous()
        .size(4096)
        .create_with(|s| s.region("counter", 128, 1).map(drop))
        .unwrap();
    let counter = atomic_u64(&seg, "counter");
    // SAFETY: this child process runs a single test thread; the forked child only touches
    // atomics and calls `_exit`, both async-signal-safe.
    match unsafe { nix::unistd::fork() }.unwrap() {
        nix::unistd::ForkResult::Child => {
            for _ in 0..1000 {
                counter.fetch_add(1, Ordering::Relaxed);
            }
            // SAFETY: _exit is always safe to call.
            unsafe { libc::_exit(0) };
        }
        nix::unistd::ForkResult::Parent { child } => {
            nix::sys::wait::waitpid(child, None).unwrap();
        }
    }
    assert_eq!(counter.load(Ordering::Acquire), 1000);
    0
}

#[test]
fn anonymous_segment_is_shared_across_fork() {
    let (code, _) = finish(child("fork-anonymous", &[]).spawn().unwrap(), LIMIT);
    assert_eq!(code, 0);
}

fn minor_faults() -> i64 {
    // SAFETY: rusage is plain integers, valid all-zero.
    let mut ru: libc::rusage = unsafe { core::mem::zeroed() };
    // SAFETY: a valid pointer to a rusage for getrusage to fill.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &raw mut ru) };
    assert_eq!(rc, 0);
    ru.ru_minflt
}

/// Faults taken by a forked child touching every page of a populated 8 MiB segment, without
/// and with `prefault` first; the pattern written before the fork must be intact.
fn fork_prefault_child() -> i32 {
    const PAGES: usize = 2048;
    let seg = Segment::anonymous()
        .size((PAGES * 4096) as u64)
        .populate(true)
        .create()
        .unwrap();
    let base = seg.as_ptr();
    for i in (0..seg.len()).step_by(4096) {
        // SAFETY: in bounds of our own mapping; nobody else runs yet.
        unsafe { base.add(i).write_volatile((i / 4096) as u8) };
    }
    let touch = || {
        let mut sum = 0u64;
        for i in (0..seg.len()).step_by(4096) {
            // SAFETY: in bounds; a read.
            sum += u64::from(unsafe { base.add(i).read_volatile() });
        }
        sum
    };
    let want = touch();
    for prefault in [false, true] {
        // SAFETY: single-threaded test process; the child only reads memory, calls
        // getrusage and madvise, prints and `_exit`s.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                if prefault {
                    seg.prefault();
                }
                let before = minor_faults();
                let got = touch();
                let faults = minor_faults() - before;
                println!("OUT:{prefault} {faults} {}", got == want);
                // SAFETY: _exit is always safe to call.
                unsafe { libc::_exit(0) };
            }
            nix::unistd::ForkResult::Parent { child } => {
                nix::sys::wait::waitpid(child, None).unwrap();
            }
        }
    }
    0
}

#[test]
fn prefault_maps_a_forked_childs_pages_without_changing_them() {
    let (code, out) = finish(child("fork-prefault", &[]).spawn().unwrap(), LIMIT);
    assert_eq!(code, 0);
    let rows: BTreeMap<bool, (i64, bool)> = out
        .iter()
        .map(|l| {
            let v: Vec<&str> = l.split(' ').collect();
            (v[0] == "true", (v[1].parse().unwrap(), v[2] == "true"))
        })
        .collect();
    // Without it the child faults once per 16 pages (the kernel's 64 KiB fault-around for
    // reads; writes fault on every page): what makes the test able to fail.
    assert!(rows[&false].0 >= 100, "{rows:?}");
    assert!(rows[&true].0 < 20, "{rows:?}");
    assert!(
        rows[&false].1 && rows[&true].1,
        "contents changed: {rows:?}"
    );
}

/// Runs in its own (single-threaded) test process: a segment with one attachment slot, held
/// by this process; a forked child's `after_fork` finds no free slot and fails. The child's
/// handle must then hold no slot, and its drop must leave ours attached.
fn after_fork_full_child(backend: &str) -> i32 {
    let b = match backend {
        "anonymous" => Segment::anonymous(),
        "memfd" => Segment::memfd("after-fork-full"),
        other => panic!("unknown backend {other}"),
    };
    let mut seg = b.size(4096).max_attachments(1).create().unwrap();
    let mine = seg.slot();
    // SAFETY: this test process runs a single thread, so the child may allocate; it ends with
    // `_exit`, running no destructor it inherited except the segment's, which is the test.
    match unsafe { nix::unistd::fork() }.unwrap() {
        nix::unistd::ForkResult::Child => {
            let failed = seg.after_fork(9).is_err();
            let detached = seg.slot() == u32::MAX && seg.owner_tag() == 0;
            let refused = matches!(
                seg.region("child", 128, 1),
                Err(shmlane_segment::RegionError::NotAttached)
            );
            // The drop is what released the parent's slot.
            drop(seg);
            let code = i32::from(!failed) | i32::from(!detached) << 1 | i32::from(!refused) << 2;
            // SAFETY: _exit is always safe to call.
            unsafe { libc::_exit(code) };
        }
        nix::unistd::ForkResult::Parent { child } => {
            let status = nix::sys::wait::waitpid(child, None).unwrap();
            let att = seg.attachments();
            assert_eq!(att.len(), 1, "our slot was released by the child: {att:?}");
            assert_eq!(
                status,
                nix::sys::wait::WaitStatus::Exited(child, 0),
                "the child's after_fork must fail (bit 0) and leave it without a slot (bit 1) \
                 that could create regions (bit 2)"
            );
        }
    }
    let att = seg.attachments();
    assert_eq!(att.len(), 1);
    assert_eq!(att[0].slot, mine);
    assert_eq!(att[0].pid, std::process::id());
    assert!(att[0].alive);
    assert!(seg.tag_alive(seg.owner_tag()));
    // Still ours: nobody else can take it (a second handle finds the table full).
    if backend == "memfd" {
        let fd = seg.fd().unwrap().try_clone_to_owned().unwrap();
        assert!(matches!(
            Segment::from_memfd(fd, 1),
            Err(OpenError::TooManyAttachments { max: 1, .. })
        ));
    }
    0
}

/// A failed `after_fork` (issue 15, finding 6) used to leave the child's handle with the
/// parent's slot, and the child's drop then released it: the parent looked detached.
#[test]
fn a_failed_after_fork_leaves_the_parents_slot_attached() {
    for backend in ["anonymous", "memfd"] {
        let (code, _) = finish(child("after-fork-full", &[backend]).spawn().unwrap(), LIMIT);
        assert_eq!(code, 0, "{backend}");
    }
}

fn sysv_key(tag: i32) -> i32 {
    (tag << 24) | (std::process::id() as i32 & 0xffff)
}

/// A SysV segment whose creator is still initialising it is attached (by the creator), so it
/// is live, not stale (issue 15, finding 7): it used to be removed, the creator got `Ok` and
/// every later open failed `NotFound`.
#[test]
fn a_sysv_segment_being_created_is_not_stale() {
    let key = sysv_key(0x52);
    let loc = Location::SysV(key);
    let (in_init, wait_in_init) = std::sync::mpsc::channel();
    let (finish_init, init_may_finish) = std::sync::mpsc::channel::<()>();
    let (outcome, seg) = std::thread::scope(|s| {
        let creator = s.spawn(move || {
            Segment::sysv(key)
                .size(4096)
                .unlink(UnlinkPolicy::CreatorDrop)
                .create_with(|_| {
                    in_init.send(()).unwrap();
                    init_may_finish.recv()
                })
        });
        wait_in_init.recv().unwrap();
        let outcome = remove_if_stale(&loc);
        finish_init.send(()).unwrap();
        (outcome, creator.join().unwrap())
    });
    let seg = seg.expect("create");
    assert_eq!(
        outcome.expect("remove_if_stale"),
        RemoveOutcome::NotStale(SegmentState::Live)
    );
    let opened = Segment::sysv(key).open();
    assert!(opened.is_ok(), "the finished segment is gone: {opened:?}");
    // Attached and initialised: live too.
    drop(opened);
    assert_eq!(
        remove_if_stale(&loc).unwrap(),
        RemoveOutcome::NotStale(SegmentState::Live)
    );
    drop(seg);
}

/// The SysV cases that are stale, and the one that is idle: a creator that died during
/// initialisation (nobody attached, creator gone), a process that died attached; a segment
/// everybody left cleanly stays.
#[test]
fn sysv_remove_if_stale_removes_only_what_is_dead() {
    let key = sysv_key(0x53);
    let loc = Location::SysV(key);
    let (code, _) = finish(
        child("sysv-die-in-init", &[&key.to_string()])
            .spawn()
            .unwrap(),
        LIMIT,
    );
    assert_eq!(code, 0);
    assert!(matches!(
        Segment::sysv(key).open_timeout(Duration::ZERO).open(),
        Err(OpenError::NotInitialized { .. })
    ));
    assert_eq!(remove_if_stale(&loc).unwrap(), RemoveOutcome::Removed);
    assert!(matches!(
        Segment::sysv(key).open(),
        Err(OpenError::NotFound { .. })
    ));

    drop(Segment::sysv(key).size(4096).create().unwrap());
    assert_eq!(
        remove_if_stale(&loc).unwrap(),
        RemoveOutcome::NotStale(SegmentState::Idle)
    );
    let (code, _) = finish(
        child("sysv-die-attached", &[&key.to_string()])
            .spawn()
            .unwrap(),
        LIMIT,
    );
    assert_eq!(code, 0);
    assert_eq!(remove_if_stale(&loc).unwrap(), RemoveOutcome::Removed);
    assert!(matches!(
        Segment::sysv(key).open(),
        Err(OpenError::NotFound { .. })
    ));
}

/// Nobody attached, not initialised, but its creator lives: it is between `shmget` and
/// `shmat` (simulated here by a bare `shmget` of this process), so the segment is left to it.
#[test]
fn a_sysv_segment_whose_creator_lives_is_not_stale_before_it_attaches() {
    let key = sysv_key(0x54);
    // SAFETY: plain syscall.
    let id = unsafe { libc::shmget(key, 64 * 1024, libc::IPC_CREAT | libc::IPC_EXCL | 0o600) };
    assert!(id >= 0, "shmget: {}", std::io::Error::last_os_error());
    let outcome = remove_if_stale(&Location::SysV(key));
    // SAFETY: IPC_RMID takes no buffer.
    let still_there = unsafe { libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()) } == 0;
    assert_eq!(
        outcome.unwrap(),
        RemoveOutcome::NotStale(SegmentState::Live)
    );
    assert!(still_there);
}

/// An attached segment is live even when its slot table says its holder is dead (the slot's
/// pid is not ours as /proc sees it: another pid namespace, a hidden /proc, or a hostile
/// write): the kernel's attachment count is the truth.
#[test]
fn an_attached_sysv_segment_is_live_whatever_its_slots_say() {
    let key = sysv_key(0x55);
    let loc = Location::SysV(key);
    let seg = Segment::sysv(key)
        .size(4096)
        .unlink(UnlinkPolicy::CreatorDrop)
        .create()
        .unwrap();
    let slot = shmlane_segment::layout::SLOTS_OFFSET
        + seg.slot() as usize * shmlane_segment::layout::SLOT_SIZE;
    // SAFETY: the slot's pid word (offset 4 of the slot) lies in our mapping, 4-byte aligned;
    // written atomically.
    let pid = unsafe { AtomicU32::from_ptr(seg.as_ptr().add(slot + 4).cast()) };
    // A pid that does not exist (above the largest pid_max).
    pid.store(1 << 23, Ordering::Relaxed);
    let other = Segment::sysv(key).open().unwrap();
    assert!(
        other
            .attachments()
            .iter()
            .any(|a| a.slot == seg.slot() && !a.alive),
        "the slot looks dead"
    );
    drop(other);
    assert_eq!(
        remove_if_stale(&loc).unwrap(),
        RemoveOutcome::NotStale(SegmentState::Live)
    );
    assert!(Segment::sysv(key).open().is_ok());
    pid.store(std::process::id(), Ordering::Relaxed);
    drop(seg);
}

/// Waits up to 30 s for `word` to reach `want`.
fn wait_for(word: &AtomicU32, want: u32) -> bool {
    let t0 = Instant::now();
    while word.load(Ordering::Acquire) != want {
        if t0.elapsed() > Duration::from_secs(30) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    true
}

/// Runs in its own single-threaded test process P. An anonymous segment with two slots: P holds
/// one; a grandchild G in a new pid namespace with its own /proc (as in a container) holds the
/// other, recording pid 1, which in P's /proc is another process. Then another child C of P
/// tries to attach: the table is full, and G, alive, must keep its slot.
fn pidns_holder_child() -> i32 {
    let mut seg = Segment::anonymous()
        .size(4096)
        .max_attachments(2)
        .create_with(|s| s.region("ctl", 128, 1).map(drop))
        .unwrap();
    let ctl = seg.find_region("ctl").unwrap().as_ptr();
    // SAFETY: two u32 words at the start of a 128-byte aligned region of our mapping, used
    // only atomically, by this process and its forked children, until they exit.
    let (attached, release) = unsafe {
        (
            AtomicU32::from_ptr(ctl.cast()),
            AtomicU32::from_ptr(ctl.add(4).cast()),
        )
    };
    // SAFETY: single-threaded test process; the children end with `_exit`.
    match unsafe { nix::unistd::fork() }.unwrap() {
        nix::unistd::ForkResult::Child => {
            // I: every child it forks from here is in a new pid namespace, in a private copy
            // of the mount table.
            let flags = nix::sched::CloneFlags::CLONE_NEWPID | nix::sched::CloneFlags::CLONE_NEWNS;
            // SAFETY: plain syscalls; the strings are NUL-terminated literals.
            let code = unsafe {
                if nix::sched::unshare(flags).is_err() {
                    10
                } else if libc::mount(
                    std::ptr::null(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ) != 0
                {
                    11
                } else {
                    match nix::unistd::fork().unwrap() {
                        nix::unistd::ForkResult::Child => {
                            // G, pid 1 of the new namespace, with that namespace's /proc.
                            let code = if libc::mount(
                                c"proc".as_ptr(),
                                c"/proc".as_ptr(),
                                c"proc".as_ptr(),
                                0,
                                std::ptr::null(),
                            ) != 0
                            {
                                12
                            } else if seg.after_fork(5).is_err() {
                                13
                            } else {
                                attached.store(seg.slot() + 1, Ordering::Release);
                                if wait_for(release, 1) { 0 } else { 14 }
                            };
                            libc::_exit(code)
                        }
                        nix::unistd::ForkResult::Parent { child } => {
                            match nix::sys::wait::waitpid(child, None) {
                                Ok(nix::sys::wait::WaitStatus::Exited(_, c)) => c,
                                _ => 15,
                            }
                        }
                    }
                }
            };
            // SAFETY: _exit is always safe to call.
            unsafe { libc::_exit(code) };
        }
        nix::unistd::ForkResult::Parent { child: middle } => {
            let g_attached = wait_for(attached, 2);
            let g_alive = seg
                .attachments()
                .iter()
                .any(|a| a.slot == 1 && a.pid == 1 && a.alive);
            // SAFETY: as above; C only calls after_fork, reads its slot and `_exit`s.
            let c_attached = match unsafe { nix::unistd::fork() }.unwrap() {
                nix::unistd::ForkResult::Child => {
                    let code = i32::from(seg.after_fork(6).is_ok());
                    // SAFETY: _exit is always safe to call.
                    unsafe { libc::_exit(code) };
                }
                nix::unistd::ForkResult::Parent { child } => {
                    nix::sys::wait::waitpid(child, None).unwrap()
                        != nix::sys::wait::WaitStatus::Exited(child, 0)
                }
            };
            release.store(1, Ordering::Release);
            let middle = nix::sys::wait::waitpid(middle, None).unwrap();
            println!("OUT:{g_attached} {g_alive} {c_attached} {middle:?}");
        }
    }
    0
}

/// A holder in another pid namespace (issue 15, finding 13) records a pid that our /proc gives
/// to another process: it must not be declared dead, nor its slot taken by a further attach.
#[test]
fn a_holder_in_another_pid_namespace_keeps_its_slot() {
    if !is_root() {
        println!("skipped: needs root to unshare a pid namespace and mount its /proc");
        return;
    }
    let (code, out) = finish(child("pidns-holder", &[]).spawn().unwrap(), LIMIT);
    assert_eq!(code, 0);
    assert_eq!(out.len(), 1, "{out:?}");
    let v: Vec<&str> = out[0].splitn(4, ' ').collect();
    assert!(
        v[3].contains("Exited") && v[3].ends_with(", 0)"),
        "the namespace side failed: {out:?}"
    );
    assert_eq!(v[0], "true", "G never attached: {out:?}");
    assert_eq!(v[1], "true", "G (alive) was reported dead: {out:?}");
    assert_eq!(v[2], "false", "a further attach took G's slot: {out:?}");
}

/// Forks a child that attaches to `seg` in its own name, counts itself in `attached` and
/// stays alive until `release` is 1.
fn fork_holder(seg: &mut Segment, role: u32, attached: &AtomicU32, release: &AtomicU32) -> i32 {
    // SAFETY: single-threaded test process; the child ends with `_exit`.
    match unsafe { nix::unistd::fork() }.unwrap() {
        nix::unistd::ForkResult::Child => {
            let code = if seg.after_fork(role).is_ok() {
                attached.fetch_add(1, Ordering::AcqRel);
                if wait_for(release, 1) { 0 } else { 2 }
            } else {
                1
            };
            // SAFETY: _exit is always safe to call.
            unsafe { libc::_exit(code) };
        }
        nix::unistd::ForkResult::Parent { child } => child.as_raw(),
    }
}

/// Forks a child that tries to attach and exits: 0 if it got `want` (a slot index, or
/// `u32::MAX` for "refused with a message naming the full slot table"), else 1.
fn fork_attach_and_exit(seg: &mut Segment, want: u32) -> bool {
    // SAFETY: single-threaded test process; the child ends with `_exit`.
    match unsafe { nix::unistd::fork() }.unwrap() {
        nix::unistd::ForkResult::Child => {
            let ok = match seg.after_fork(9) {
                Ok(()) => seg.slot() == want,
                Err(e) => {
                    want == u32::MAX && e.to_string().contains("all 3 attachment slots in use")
                }
            };
            // SAFETY: _exit is always safe to call.
            unsafe { libc::_exit(i32::from(!ok)) };
        }
        nix::unistd::ForkResult::Parent { child } => {
            nix::sys::wait::waitpid(child, None).unwrap()
                == nix::sys::wait::WaitStatus::Exited(child, 0)
        }
    }
}

/// Runs in its own single-threaded test process: an anonymous segment of 3 slots filled by
/// this process and two live forked children. A further child is refused and takes nothing;
/// once a holder is SIGKILLed, the next child takes over exactly its slot.
fn anon_fill_child() -> i32 {
    let mut seg = Segment::anonymous()
        .size(4096)
        .max_attachments(3)
        .create_with(|s| s.region("ctl", 128, 1).map(drop))
        .unwrap();
    let ctl = seg.find_region("ctl").unwrap().as_ptr();
    // SAFETY: two u32 words at the start of a 128-byte aligned region of our mapping, used
    // only atomically by this process and its forked children.
    let (attached, release) = unsafe {
        (
            AtomicU32::from_ptr(ctl.cast()),
            AtomicU32::from_ptr(ctl.add(4).cast()),
        )
    };
    let h1 = fork_holder(&mut seg, 1, attached, release);
    let h2 = fork_holder(&mut seg, 2, attached, release);
    assert!(wait_for(attached, 2), "the holders did not attach");
    let before = seg.attachments();
    assert_eq!(before.len(), 3, "{before:?}");
    assert!(before.iter().all(|a| a.alive), "{before:?}");
    assert!(
        fork_attach_and_exit(&mut seg, u32::MAX),
        "a fourth attach was not refused with a clear message"
    );
    assert_eq!(
        seg.attachments(),
        before,
        "the refused attach changed the table"
    );
    assert_eq!(seg.unclean_detaches(), 0);
    // h1 dies without detaching: its slot, and only it, is taken over by the next attach.
    let dead_slot = before.iter().find(|a| a.pid == h1 as u32).unwrap().slot;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(h1), nix::sys::signal::SIGKILL).unwrap();
    nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(h1), None).unwrap();
    assert!(
        !seg.attachments()
            .iter()
            .find(|a| a.slot == dead_slot)
            .unwrap()
            .alive
    );
    assert!(
        fork_attach_and_exit(&mut seg, dead_slot),
        "the dead holder's slot was not taken over"
    );
    assert_eq!(seg.unclean_detaches(), 1);
    release.store(1, Ordering::Release);
    let h2 = nix::unistd::Pid::from_raw(h2);
    assert_eq!(
        nix::sys::wait::waitpid(h2, None).unwrap(),
        nix::sys::wait::WaitStatus::Exited(h2, 0)
    );
    println!("OUT:ok");
    0
}

/// No test used to fill an anonymous or SysV slot table (issue 15): taking over a live
/// holder's slot passed everything. Anonymous: live forked holders.
#[test]
fn a_full_anonymous_slot_table_refuses_a_further_attach_and_reuses_only_a_dead_slot() {
    let (code, out) = finish(child("anon-fill", &[]).spawn().unwrap(), LIMIT);
    assert_eq!(code, 0);
    assert_eq!(out, ["ok"]);
}

/// Kills a child process on drop, whatever happened.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// As above for SysV: two handles of this process and a live child process fill 3 slots.
#[test]
fn a_full_sysv_slot_table_refuses_a_further_attach_and_reuses_only_a_dead_slot() {
    let key = sysv_key(0x56);
    let seg = Segment::sysv(key)
        .size(4096)
        .max_attachments(3)
        .unlink(UnlinkPolicy::CreatorDrop)
        .create()
        .unwrap();
    let second = Segment::sysv(key).open().unwrap();
    let mut holder = KillOnDrop(child("sysv-hold", &[&key.to_string()]).spawn().unwrap());
    let line = BufReader::new(holder.0.stdout.take().unwrap())
        .lines()
        .map(Result::unwrap)
        .find_map(|l| l.strip_prefix("OUT:").map(str::to_owned))
        .expect("the holder's slot");
    let held: u32 = line.parse().unwrap();
    let before = seg.attachments();
    assert_eq!(before.len(), 3, "{before:?}");
    assert!(before.iter().all(|a| a.alive), "{before:?}");
    let err = Segment::sysv(key).open().expect_err("a fourth attach");
    assert!(
        matches!(err, OpenError::TooManyAttachments { max: 3, .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("all 3 attachment slots in use"),
        "{err}"
    );
    assert_eq!(
        seg.attachments(),
        before,
        "the refused attach changed the table"
    );
    assert_eq!(seg.unclean_detaches(), 0);
    // The holder dies without detaching: its slot, and only it, is taken over.
    holder.0.kill().unwrap();
    holder.0.wait().unwrap();
    let third = Segment::sysv(key)
        .open()
        .expect("attach after the holder died");
    assert_eq!(third.slot(), held);
    assert_eq!(seg.unclean_detaches(), 1);
    assert!(seg.attachments().iter().all(|a| a.alive));
    drop((third, second, seg));
}
