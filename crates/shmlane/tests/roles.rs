//! Single roles (SPSC producer and consumer, byte receiver, broadcast publisher) are exclusive
//! per endpoint: a second claim is refused whether it comes from another process, another
//! handle of this process, a clone of the same handle, or the same handle again; a role
//! dropped cleanly is claimed again, and one left by a killed process is taken over.

use std::{
    io::{BufRead as _, BufReader},
    time::Duration,
};

use shmlane::{OpenError, UnlinkPolicy};
use shmlane_testkit::{Cleanup, child, child_role, unique};

/// The single roles: (label, how to build the channel, how to take the role).
macro_rules! for_each_role {
    ($m:ident) => {
        $m!(
            "producer",
            |n: &str| shmlane::spsc::<u64>(n)
                .when_peers_leave(shmlane::PeersLeave::Disconnect)
                .capacity(64),
            |c: &shmlane::Channel<u64>| c.producer()
        );
        $m!(
            "consumer",
            |n: &str| shmlane::spsc::<u64>(n)
                .when_peers_leave(shmlane::PeersLeave::Disconnect)
                .capacity(64),
            |c: &shmlane::Channel<u64>| c.consumer()
        );
        $m!(
            "byte receiver",
            |n: &str| shmlane::bytes(n)
                .when_peers_leave(shmlane::PeersLeave::Disconnect)
                .capacity(4096),
            |c: &shmlane::Channel<u8>| c.byte_receiver()
        );
        $m!(
            "publisher",
            |n: &str| shmlane::broadcast(n)
                .when_peers_leave(shmlane::PeersLeave::Disconnect)
                .capacity(16),
            |c: &shmlane::Channel<u8>| c.publisher()
        );
    };
}

#[test]
fn child_entry() {
    let Some((role, args)) = child_role() else {
        return;
    };
    // Takes the role named by `role` on channel `args[0]` and holds it until killed.
    macro_rules! hold {
        ($label:expr, $builder:expr, $take:expr) => {
            if role == $label {
                let ch = ($builder)(&args[0]).open().unwrap();
                let _held = ($take)(&ch).unwrap();
                println!("OUT:held");
                std::thread::sleep(Duration::from_secs(300));
            }
        };
    }
    for_each_role!(hold);
    std::process::exit(0);
}

fn assert_taken(r: Result<impl Sized, OpenError>, label: &str, how: &str) {
    match r {
        Err(e @ OpenError::RoleTaken { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains(label) && msg.contains("drop that endpoint first"),
                "{how}: {msg}"
            );
        }
        Err(e) => panic!("{label}, {how}: another error than RoleTaken: {e}"),
        Ok(_) => panic!("{label}, {how}: a second {label} was given out"),
    }
}

/// Within one process: the same handle twice, a clone, a clone on another thread, a second
/// `open()`: all refused while the first endpoint lives; once it is dropped, the role is
/// claimed again from any of them.
#[test]
fn a_single_role_is_refused_a_second_time_in_the_same_process() {
    macro_rules! check {
        ($label:expr, $builder:expr, $take:expr) => {{
            let label: &str = $label;
            let name = unique(&format!("roles-{}", label.replace(' ', "-")));
            let _c = Cleanup(name.clone());
            let ch = ($builder)(&name)
                .unlink(UnlinkPolicy::Never)
                .create()
                .unwrap();
            let first = ($take)(&ch).unwrap();
            assert_taken(($take)(&ch), label, "the same channel handle again");
            let clone = ch.clone();
            assert_taken(($take)(&clone), label, "a clone of the handle");
            std::thread::scope(|s| {
                let clone = ch.clone();
                s.spawn(move || assert_taken(($take)(&clone), label, "a clone on another thread"))
                    .join()
                    .unwrap();
            });
            let other = ($builder)(&name).open().unwrap();
            assert_taken(($take)(&other), label, "a second open() in this process");
            // Dropped cleanly, the role is free again: for another handle, then this one.
            drop(first);
            let again = ($take)(&other).expect("the role after the first endpoint was dropped");
            assert_taken(($take)(&ch), label, "while the re-claimed endpoint lives");
            drop(again);
            drop(($take)(&clone).expect("the role dropped a second time"));
        }};
    }
    for_each_role!(check);
}

/// Across processes: a child holds the role, the parent is refused; the child is killed, and
/// the parent takes the role over (its claim names a dead attachment).
#[test]
fn a_single_role_held_by_a_killed_process_is_taken_over() {
    macro_rules! check {
        ($label:expr, $builder:expr, $take:expr) => {{
            let label: &str = $label;
            let name = unique(&format!("roles-kill-{}", label.replace(' ', "-")));
            let _c = Cleanup(name.clone());
            let ch = ($builder)(&name).create().unwrap();
            let mut holder = child(label, &[&name]).spawn().unwrap();
            // The test harness prints its own lines first.
            let held = BufReader::new(holder.stdout.take().unwrap())
                .lines()
                .map_while(Result::ok)
                .any(|l| l == "OUT:held");
            assert!(held, "{label}: the child did not take the role");
            assert_taken(($take)(&ch), label, "held by a live child process");
            holder.kill().unwrap();
            holder.wait().unwrap();
            let _mine = ($take)(&ch).expect("the killed process's role is taken over");
            assert_taken(($take)(&ch), label, "after the takeover, a second time");
        }};
    }
    for_each_role!(check);
}

/// A child made by `fork` holds its parent's attachment: the parent's lock reads as free to it
/// (shared file description), so it would take the parent's live roles over and skip its
/// messages in flight. Every endpoint constructor refuses in the child (`Forked`); the parent's
/// role is untouched (found by the issue-15 review, F7).
#[test]
fn endpoints_are_refused_in_a_forked_child() {
    let name = unique("roles-fork");
    let _c = Cleanup(name.clone());
    let ch = shmlane::spsc::<u64>(&name)
        .when_peers_leave(shmlane::PeersLeave::Disconnect)
        .capacity(64)
        .unlink(UnlinkPolicy::LastDetach)
        .create()
        .unwrap();
    let held = ch.producer().unwrap();
    let bytes_name = unique("roles-fork-bytes");
    let _cb = Cleanup(bytes_name.clone());
    let bch = shmlane::broadcast(&bytes_name)
        .when_peers_leave(shmlane::PeersLeave::Disconnect)
        .capacity(16)
        .unlink(UnlinkPolicy::LastDetach)
        .create()
        .unwrap();
    // SAFETY: the child only calls endpoint constructors (no locks are held across the fork by
    // this test's threads: the test harness's other threads are parked) and leaves with
    // `_exit`, running no destructor of the parent's state.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let forked = |r: Result<(), OpenError>| matches!(r, Err(OpenError::Forked(_)));
        let all = forked(ch.producer().map(drop))
            && forked(ch.consumer().map(drop))
            && forked(bch.publisher().map(drop))
            && forked(bch.subscriber().map(drop));
        // SAFETY: leave the child at once, without unwinding or running destructors.
        unsafe { libc::_exit(i32::from(!all)) };
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(pid, &raw mut status, 0) };
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "a forked child was given an endpoint of its parent's channel handle (status {status})"
    );
    // The parent's producer is still the producer.
    assert!(matches!(
        ch.producer().map(drop),
        Err(OpenError::RoleTaken { .. })
    ));
    drop(held);
    ch.producer().unwrap();
}
