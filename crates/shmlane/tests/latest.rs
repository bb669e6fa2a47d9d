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

fn secs(n: u64) -> Option<Deadline> {
    Some(Deadline::after(Duration::from_secs(n)))
}

/// Updates the cross-process test makes: 10 M in release builds; fewer in debug builds, where
/// each write and read is an order of magnitude slower.
const UPDATES: u64 = if cfg!(debug_assertions) {
    300_000
} else {
    10_000_000
};

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
