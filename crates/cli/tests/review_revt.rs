//! Review of issue 16's CLI line type (reviewer "revt"): a typed channel whose type name reads
//! like the commands' line type but whose record is not one the commands make (another number
//! spelling, element size or alignment, a zero limit) is refused as "not the lines", never
//! opened as lines and never reported as a channel that "kept changing shape"; a program that
//! makes exactly the commands' line type shares the channel with them.

use std::{
    io::Write,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use shmlane::UnlinkPolicy;
use shmlane_testkit::{Cleanup, unique};

fn run(args: &[&str], stdin: &[u8]) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_shmlane"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run shmlane");
    // A command that fails at once does not read it (broken pipe): fine.
    let _ = child.stdin.take().unwrap().write_all(stdin);
    // A command that opened the channel as lines may wait for a peer: bounded.
    let t0 = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t0.elapsed() > Duration::from_secs(20) {
            child.kill().unwrap();
            let o = child.wait_with_output().unwrap();
            panic!(
                "shmlane {args:?} still running after 20 s: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// Makes channel `name` of `T` recorded as `type_name`, then runs `recv` and `send` on it.
fn refused<T: bytemuck::Pod + Send>(type_name: &str, unlink: UnlinkPolicy) {
    let name = unique("revt-cli-forged");
    let _c = Cleanup(name.clone());
    let _ch = shmlane::spsc::<T>(&name)
        .type_name(type_name)
        .capacity(64)
        .unlink(unlink)
        .create()
        .unwrap();
    for args in [&["recv", &name, "--timeout", "1s"][..], &["send", &name]] {
        let o = run(args, b"hi\n");
        let err = String::from_utf8_lossy(&o.stderr);
        let what = format!("{type_name:?} {unlink:?} {}", args[0]);
        assert_eq!(o.status.code(), Some(1), "{what}: {err}");
        assert!(
            err.contains("not the lines shmlane's commands send"),
            "{what}: {err}"
        );
    }
}

#[test]
fn a_forged_line_type_is_not_taken_for_lines() {
    for unlink in [UnlinkPolicy::Never, UnlinkPolicy::LastDetach] {
        // Another spelling of 60.
        refused::<[u8; 64]>("shmlane-cli line of up to +60 bytes", unlink);
        refused::<[u8; 64]>("shmlane-cli line of up to 060 bytes", unlink);
        // A limit whose element is not this one (the commands use 64 bytes for 10).
        refused::<[u8; 128]>("shmlane-cli line of up to 10 bytes", unlink);
        // The commands' size and name, another alignment.
        refused::<[u64; 8]>("shmlane-cli line of up to 60 bytes", unlink);
        // No line fits.
        refused::<[u8; 64]>("shmlane-cli line of up to 0 bytes", unlink);
    }
}

#[test]
fn a_program_making_the_commands_line_type_shares_the_channel() {
    let name = unique("revt-cli-line");
    let _c = Cleanup(name.clone());
    let ch = shmlane::spsc::<[u8; 64]>(&name)
        .type_name(&shmlane_cli::line::line_type(60))
        .capacity(64)
        .create()
        .unwrap();
    // The program receives a line the command sent (a little-endian u32 length, the bytes).
    let mut rx = ch.consumer().unwrap();
    // The command waits until its line is taken: receive it meanwhile.
    let got = std::thread::scope(|s| {
        let h = s.spawn(|| rx.recv(Some(shmlane::Deadline::after(Duration::from_secs(15)))));
        let o = run(&["send", &name], b"hello\n");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        h.join().unwrap().unwrap()
    });
    assert_eq!(got[..4], 5u32.to_le_bytes());
    assert_eq!(&got[4..9], b"hello");
    drop(rx);
    // And the command receives the program's.
    let mut tx = ch.producer().unwrap();
    let mut elem = [0u8; 64];
    elem[..4].copy_from_slice(&3u32.to_le_bytes());
    elem[4..7].copy_from_slice(b"abc");
    tx.try_send(elem).unwrap();
    let o = run(&["recv", &name, "--count", "1", "--timeout", "5s"], b"");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "abc\n");
}
