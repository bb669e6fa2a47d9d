//! Latest-value channels (issue 20): round trips, wrong type and kind, `wait_changed` and its
//! deadline, and real processes: one writer, three readers, millions of updates, every value
//! self-checking (a torn one is seen), versions monotonic per reader, the writer killed
//! mid-stream (SIGKILL) and the readers still reading its last complete value.

use std::{
    io::{BufRead, BufReader},
    time::{Duration, Instant},
};

use bytemuck::{Pod, Zeroable};
use shmlane::{Deadline, Kind, LatestError, OpenError};
use shmlane_testkit::{Cleanup, child, child_role, finish, unique};

/// A value whose every word is derived from one number: a torn copy (words of two writes)
/// fails `check`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
struct Snap {
    words: [u64; 8],
}

impl Snap {
    fn of(k: u64) -> Self {
        Self {
            words: core::array::from_fn(|i| k.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (i as u64)),
        }
    }
    /// The number it was made from, if it is whole.
    fn check(&self) -> Option<u64> {
        let k = self.words[0].wrapping_mul(0xF1DE_83E1_9937_733D); // inverse of the multiplier
        (*self == Self::of(k)).then_some(k)
    }
}

fn info(name: &str) -> shmlane_segment::SegmentInfo {
    shmlane_segment::inspect(std::path::Path::new(&format!("/dev/shm/{name}")))
        .unwrap()
        .unwrap()
}

#[allow(clippy::unnecessary_wraps)]
fn secs(n: u64) -> Option<Deadline> {
    Some(Deadline::after(Duration::from_secs(n)))
}

/// Updates the cross-process test makes: 10 M (about 13 s in a debug build on this project's
/// machine, 300 k updates took 0.39 s; faster in release).
const UPDATES: u64 = 10_000_000;

#[test]
fn child_entry() {
    let Some((role, args)) = child_role() else {
        return;
    };
    let name = args[0].as_str();
    match role.as_str() {
        // Writes Snap::of(k) for k in 1..=n, then (if asked) announces and hangs until killed.
        "writer" => {
            let n: u64 = args[1].parse().unwrap();
            let hang = args[2] == "hang";
            let ch = shmlane::latest::<Snap>(name).open().unwrap();
            let mut w = ch.writer().unwrap();
            println!("OUT:ready");
            let mut last = 0;
            for k in 1..=n {
                last = w.write(&Snap::of(k)).unwrap();
            }
            println!("OUT:wrote {last}");
            if hang {
                // Keep writing the same value mid-stream until killed: a kill lands anywhere,
                // between or inside writes.
                loop {
                    w.write(&Snap::of(n)).unwrap();
                }
            }
        }
        // Reads until it has seen version `n` (or a stop file), checking every value; prints
        // the reads, the distinct versions seen, and the last value.
        "reader" => {
            let n: u64 = args[1].parse().unwrap();
            let ch = shmlane::latest::<Snap>(name).open().unwrap();
            let mut r = ch.reader().unwrap();
            println!("OUT:ready");
            let (mut reads, mut changes, mut last_v, mut busy) = (0u64, 0u64, 0u64, 0u64);
            let mut last_k = 0;
            let deadline = Instant::now() + Duration::from_secs(120);
            while last_k < n && Instant::now() < deadline {
                match r.read() {
                    Ok(Some((snap, v))) => {
                        let k = snap
                            .check()
                            .unwrap_or_else(|| panic!("torn value {snap:?}"));
                        assert!(v >= last_v, "version went from {last_v} to {v}");
                        assert!(k >= last_k, "value went back from {last_k} to {k}");
                        changes += u64::from(v != last_v);
                        (last_v, last_k) = (v, k);
                        reads += 1;
                    }
                    Ok(None) => {}
                    Err(LatestError::Busy) => busy += 1,
                    Err(e) => panic!("{e}"),
                }
            }
            println!("OUT:done {reads} {changes} {last_k} {busy}");
        }
        // Waits (wait_changed) for a change, prints the value's number.
        "waiter" => {
            let ch = shmlane::latest::<Snap>(name).open().unwrap();
            let mut r = ch.reader().unwrap();
            // Catch up first: the waiter waits for the change after what is there now.
            let _ = r.read_if_changed().unwrap();
            println!("OUT:ready");
            let t = Instant::now();
            let (snap, v) = r.wait_changed(secs(20)).unwrap();
            println!(
                "OUT:woke {} {v} {}",
                snap.check().unwrap(),
                t.elapsed().as_millis()
            );
        }
        // Completes Snap::of(k) in a two-slot channel but stops before publishing it (as a
        // SIGKILL between the done store and the `fetch_max` would), announces the version it
        // would have had, and hangs until killed.
        "dies-unpublished" => {
            let k: u64 = args[1].parse().unwrap();
            let ch = shmlane::latest::<Snap>(name).capacity(2).open().unwrap();
            let mut w = ch.writer().unwrap();
            let v = w.write_and_die_unpublished(&Snap::of(k)).unwrap();
            println!("OUT:died {v}");
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn a_typed_round_trip() {
    let name = unique("latest-rt");
    let _c = Cleanup(name.clone());
    let ch = shmlane::latest::<Snap>(&name).create().unwrap();
    assert_eq!(ch.kind(), Kind::Latest);
    let mut w = ch.writer().unwrap();
    let mut r = ch.reader().unwrap();
    assert_eq!(r.read(), Ok(None));
    assert_eq!(r.version(), 0);
    for k in 1..=100 {
        let v = w.write(&Snap::of(k)).unwrap();
        assert_eq!(v, k);
        assert_eq!(r.version(), v);
        assert_eq!(r.read(), Ok(Some((Snap::of(k), v))));
        assert_eq!(r.read_if_changed(), Ok(None));
    }
    // A second reader and writer, opened by name.
    let ch2 = shmlane::latest::<Snap>(&name).open().unwrap();
    let mut r2 = ch2.reader().unwrap();
    assert_eq!(r2.read_if_changed(), Ok(Some((Snap::of(100), 100))));
    ch2.writer().unwrap().write(&Snap::of(7)).unwrap();
    assert_eq!(r.read_if_changed(), Ok(Some((Snap::of(7), 101))));
    // Stats: writers count as senders, readers as receivers.
    let st = shmlane::inspect(&info(&name)).unwrap();
    assert_eq!(st.kind, Kind::Latest);
    assert_eq!((st.len, st.capacity, st.msg_size), (1, 4, 64));
    // The second writer was dropped: one writer, two readers attached.
    assert_eq!(st.endpoints, (1, 2));
    assert_eq!(st.positions, (101, 101));
}

#[test]
fn a_byte_round_trip_checks_lengths() {
    let name = unique("latest-raw");
    let _c = Cleanup(name.clone());
    let ch = shmlane::raw_latest(&name, 64).capacity(8).create().unwrap();
    assert_eq!(ch.value_size(), 64);
    let mut w = ch.writer().unwrap();
    let mut r = ch.reader().unwrap();
    let mut buf = [0u8; 64];
    assert_eq!(r.read(&mut buf), Ok(None));
    assert_eq!(w.write(b"limit=42"), Ok(1));
    assert_eq!(r.read(&mut buf), Ok(Some((8, 1))));
    assert_eq!(&buf[..8], b"limit=42");
    assert_eq!(
        w.write(&[1; 65]),
        Err(LatestError::TooLong { len: 65, max: 64 })
    );
    assert_eq!(w.write(&[2; 64]), Ok(2));
    let mut small = [0u8; 10];
    assert_eq!(
        r.read(&mut small),
        Err(LatestError::BufferTooSmall {
            needed: 64,
            got: 10
        })
    );
    assert_eq!(r.read_if_changed(&mut buf), Ok(Some((64, 2))));
    assert_eq!(buf, [2; 64]);
    // Another value size, or the typed form, or another kind: refused at open.
    assert!(matches!(
        shmlane::raw_latest(&name, 32).open(),
        Err(OpenError::Mismatch { .. })
    ));
    assert!(matches!(
        shmlane::latest::<[u8; 64]>(&name).open(),
        Err(OpenError::WrongType { .. })
    ));
    assert!(matches!(
        shmlane::broadcast(&name).open(),
        Err(OpenError::Mismatch { .. })
    ));
}

fn spawn(role: &str, args: &[&str]) -> std::process::Child {
    child(role, args).spawn().expect("spawn child")
}

/// Reads the child's lines until one starts with `prefix` (within `limit`).
fn wait_line(c: &mut std::process::Child, prefix: &str, limit: Duration) -> String {
    let out = c.stdout.as_mut().expect("piped stdout");
    let mut r = BufReader::new(out);
    let deadline = Instant::now() + limit;
    let mut line = String::new();
    loop {
        assert!(Instant::now() < deadline, "no {prefix} line from the child");
        line.clear();
        assert!(
            r.read_line(&mut line).unwrap() != 0,
            "child ended before {prefix}"
        );
        if let Some(rest) = line.trim_end().strip_prefix("OUT:") {
            if rest.starts_with(prefix) {
                return rest.to_owned();
            }
        }
    }
}

/// One writer process, three reader processes, `UPDATES` writes (10 M in release builds): no
/// reader ever sees a torn value (every word is checked against the value's number), versions
/// and values never go back per reader, and each reader ends on the last value.
#[test]
fn one_writer_three_reader_processes_never_see_a_torn_value() {
    let name = unique("latest-procs");
    let _c = Cleanup(name.clone());
    let ch = shmlane::latest::<Snap>(&name).create().unwrap();
    let n = UPDATES.to_string();
    let mut readers: Vec<_> = (0..3).map(|_| spawn("reader", &[&name, &n])).collect();
    for r in &mut readers {
        wait_line(r, "ready", Duration::from_secs(30));
    }
    let t = Instant::now();
    let mut w = spawn("writer", &[&name, &n, "stop"]);
    let (code, out) = finish_taken(&mut w, Duration::from_secs(300));
    assert_eq!(code, 0, "writer failed: {out:?}");
    for r in readers {
        let (code, out) = finish(r, Duration::from_secs(300));
        assert_eq!(code, 0, "reader failed (torn value or version going back?)");
        let done = out
            .iter()
            .find(|l| l.starts_with("done"))
            .expect("done line");
        let f: Vec<u64> = done
            .split(' ')
            .skip(1)
            .map(|x| x.parse().unwrap())
            .collect();
        let (reads, changes, last_k) = (f[0], f[1], f[2]);
        assert_eq!(last_k, UPDATES, "reader did not reach the last value");
        assert!(reads > 0 && changes > 0, "{done}");
        eprintln!(
            "reader: {reads} reads, {changes} versions seen, {} busy",
            f[3]
        );
    }
    eprintln!("{UPDATES} updates in {:?}", t.elapsed());
    drop(ch);
}

/// `finish` for a child whose stdout a `wait_line` may have read from already.
fn finish_taken(c: &mut std::process::Child, limit: Duration) -> (i32, Vec<String>) {
    let deadline = Instant::now() + limit;
    let mut lines = Vec::new();
    if let Some(out) = c.stdout.take() {
        for l in BufReader::new(out).lines() {
            let l = l.unwrap();
            if let Some(rest) = l.strip_prefix("OUT:") {
                lines.push(rest.to_owned());
            }
            assert!(Instant::now() < deadline, "child too slow");
        }
    }
    let status = c.wait().unwrap();
    (status.code().unwrap_or(-1), lines)
}

/// The writer is SIGKILLed mid-stream (while writing as fast as it can), five times, a new
/// writer process each time: the last complete value stays readable, whole, by a reader in
/// this process, and writers go on (the slots killed writers held are reclaimed).
#[test]
fn a_writer_killed_mid_stream_leaves_its_last_complete_value() {
    let name = unique("latest-kill");
    let _c = Cleanup(name.clone());
    let ch = shmlane::latest::<Snap>(&name).create().unwrap();
    let mut r = ch.reader().unwrap();
    for round in 0..5 {
        let mut w = spawn("writer", &[&name, "1000", "hang"]);
        wait_line(&mut w, "wrote", Duration::from_secs(30));
        // Let it write a while, then kill it wherever it is.
        std::thread::sleep(Duration::from_millis(5 + round * 3));
        w.kill().unwrap();
        w.wait().unwrap();
        let v = r.version();
        let (snap, got) = r
            .read()
            .unwrap_or_else(|e| panic!("round {round}: {e}"))
            .expect("a value");
        assert_eq!(got, v, "the newest version is readable");
        assert_eq!(
            snap.check(),
            Some(1000),
            "round {round}: torn or wrong value"
        );
    }
    // After five kills (each may have landed mid-write, leaving its slot held by a dead
    // process), writers still write: a dead writer's slot is reclaimed.
    let mut w = ch.writer().unwrap();
    for k in 0..20 {
        let v = w.write(&Snap::of(k)).unwrap();
        assert_eq!(r.read(), Ok(Some((Snap::of(k), v))));
    }
}

/// Two slots, a writer process killed after completing a value but before publishing it:
/// its slot holds a value newer than the published one, the other slot the published one, so
/// neither could be claimed and every later write reported `Busy` for good. Now the next
/// writer finds the dead process's slot, publishes its value for it and writes into the other
/// slot: writes go on, every value read whole.
#[test]
fn a_writer_killed_before_publishing_does_not_stop_later_writes() {
    let name = unique("latest-unpub");
    let _c = Cleanup(name.clone());
    let ch = shmlane::latest::<Snap>(&name).capacity(2).create().unwrap();
    let (mut w, mut r) = (ch.writer().unwrap(), ch.reader().unwrap());
    assert_eq!(w.write(&Snap::of(1)), Ok(1));
    let mut c = spawn("dies-unpublished", &[&name, "2"]);
    assert_eq!(wait_line(&mut c, "died", Duration::from_secs(30)), "died 2");
    // Alive (stalled) it keeps its slot, and the other holds the newest value: Busy.
    assert_eq!(w.write(&Snap::of(3)), Err(LatestError::Busy));
    assert_eq!(r.read(), Ok(Some((Snap::of(1), 1))));
    c.kill().unwrap();
    c.wait().unwrap();
    for k in 4..24 {
        let v = w
            .write(&Snap::of(k))
            .unwrap_or_else(|e| panic!("write {k} after the death: {e}"));
        assert!(v > 2, "version {v}");
        assert_eq!(r.read(), Ok(Some((Snap::of(k), v))));
    }
}

/// `wait_changed` across processes: a reader process sleeps (futex) until this process
/// writes, and wakes promptly; with no write, `wait_changed` returns `Timeout` at its deadline.
#[test]
fn wait_changed_wakes_across_processes_and_honours_its_deadline() {
    let name = unique("latest-wait");
    let _c = Cleanup(name.clone());
    let ch = shmlane::latest::<Snap>(&name).create().unwrap();
    let mut w = ch.writer().unwrap();
    w.write(&Snap::of(1)).unwrap();
    let mut waiter = spawn("waiter", &[&name]);
    wait_line(&mut waiter, "ready", Duration::from_secs(30));
    // Let it reach its sleep, then write.
    std::thread::sleep(Duration::from_millis(200));
    w.write(&Snap::of(2)).unwrap();
    let (code, out) = finish_taken(&mut waiter, Duration::from_secs(30));
    assert_eq!(code, 0);
    let woke = out
        .iter()
        .find(|l| l.starts_with("woke"))
        .expect("woke line");
    let f: Vec<u64> = woke
        .split(' ')
        .skip(1)
        .map(|x| x.parse().unwrap())
        .collect();
    assert_eq!((f[0], f[1]), (2, 2), "{woke}");
    assert!(f[2] >= 150, "woke before the write: {woke}");
    // The deadline: no write, Timeout after about 100 ms, not before.
    let mut r = ch.reader().unwrap();
    assert_eq!(r.read_if_changed().unwrap().map(|x| x.1), Some(2));
    let t = Instant::now();
    assert_eq!(
        r.wait_changed(Some(Deadline::after(Duration::from_millis(100)))),
        Err(LatestError::Timeout)
    );
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(100) && took < Duration::from_secs(2),
        "{took:?}"
    );
    // A deadline already past with a change waiting: the value, not Timeout.
    w.write(&Snap::of(3)).unwrap();
    assert_eq!(
        r.wait_changed(Some(Deadline::after(Duration::ZERO))),
        Ok((Snap::of(3), 3))
    );
}

/// Opening with another type is `WrongType`; another kind's endpoints are `WrongKind`, and a
/// latest channel's endpoints on another kind too.
#[test]
fn wrong_type_and_wrong_kind() {
    let name = unique("latest-kinds");
    let _c = Cleanup(name.clone());
    let ch = shmlane::latest::<Snap>(&name).create().unwrap();
    match shmlane::latest::<[u64; 4]>(&name).open() {
        Err(e @ OpenError::WrongType { .. }) => assert!(e.to_string().contains("type"), "{e}"),
        other => panic!("{other:?}"),
    }
    match shmlane::spsc::<Snap>(&name).open() {
        Err(OpenError::Mismatch { found, .. }) => assert!(found.contains("latest"), "{found}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(ch.producer(), Err(OpenError::WrongKind { .. })));
    assert!(matches!(ch.sender(), Err(OpenError::WrongKind { .. })));
    let other = unique("latest-kinds-spsc");
    let _c2 = Cleanup(other.clone());
    let sp = shmlane::spsc::<Snap>(&other).create().unwrap();
    match sp.writer() {
        Err(e @ OpenError::WrongKind { .. }) => {
            assert!(e.to_string().contains("producer"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(sp.reader(), Err(OpenError::WrongKind { .. })));
    // Settings that do not apply are refused.
    assert!(
        shmlane::latest::<Snap>("x")
            .checksum(true)
            .create()
            .is_err()
    );
    assert!(shmlane::latest::<Snap>("x").msg_size(8).create().is_err());
    assert!(shmlane::latest::<Snap>("x").capacity(3).create().is_err());
    assert!(shmlane::latest::<Snap>("x").capacity(1).create().is_err());
    assert!(shmlane::raw_latest("x", 0).create().is_err());
    assert!(shmlane::raw_latest("x", (1 << 20) + 1).create().is_err());
}
