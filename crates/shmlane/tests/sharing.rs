//! Every channel builder (spsc, mpmc, bytes, broadcast) takes the sharing options of the
//! segment layer: `mode` checked at creation, `group`, and `trust_owner` for a channel owned
//! by another user (issue 17).

use std::{fs, os::unix::fs::MetadataExt, path::PathBuf};

use shmlane::{Builder, OpenError};
use shmlane_segment::{CreateError, OpenError as SegOpenError};
use shmlane_testkit::{Cleanup, is_root, unique};

fn shm(name: &str) -> PathBuf {
    PathBuf::from(format!("/dev/shm/{name}"))
}

fn egid() -> u32 {
    // SAFETY: getegid cannot fail and has no preconditions.
    unsafe { libc::getegid() }
}

/// Runs `$check` with each kind's builder maker.
macro_rules! each_kind {
    ($check:ident) => {
        $check("spsc", |n| shmlane::spsc::<u64>(n).capacity(64));
        $check("mpmc", |n| shmlane::mpmc::<u64>(n).capacity(64));
        $check("bytes", |n| shmlane::bytes(n).capacity(4096));
        $check("broadcast", |n| shmlane::broadcast(n).capacity(64));
    };
}

fn refuses_world_writable<T: bytemuck::Pod + Send>(kind: &str, make: fn(&str) -> Builder<T>) {
    let name = unique(&format!("chmode-{kind}"));
    let _c = Cleanup(name.clone());
    for mode in [0o666, 0o602, 0o4660, 0] {
        let e = make(&name).mode(mode).create().err();
        assert!(
            matches!(&e, Some(OpenError::Create(CreateError::InvalidMode { mode: m, .. })) if *m == mode),
            "{kind} {mode:#o}: {e:?}"
        );
        assert!(!shm(&name).exists());
    }
}

#[test]
fn every_builder_refuses_modes_others_could_write() {
    each_kind!(refuses_world_writable);
}

fn group_and_trust<T: bytemuck::Pod + Send>(kind: &str, make: fn(&str) -> Builder<T>) {
    let name = unique(&format!("chgroup-{kind}"));
    let _c = Cleanup(name.clone());
    let gid = if is_root() { 65534 } else { egid() };
    drop(make(&name).mode(0o660).group(gid).create().unwrap());
    let m = fs::metadata(shm(&name)).unwrap();
    assert_eq!((m.gid(), m.mode() & 0o7777), (gid, 0o660), "{kind}");
    // Its creator opens it without trusting anybody.
    drop(make(&name).open().unwrap());
    if !is_root() {
        println!("{kind}: skipped the foreign-owner half: needs root to give a channel away");
        return;
    }
    std::os::unix::fs::chown(shm(&name), Some(65534), None).unwrap();
    for b in [make(&name), make(&name).trust_owner(1234)] {
        let e = b.open().err();
        assert!(
            matches!(
                &e,
                Some(OpenError::Open(SegOpenError::UntrustedOwner {
                    owner: 65534,
                    ..
                }))
            ),
            "{kind}: {e:?}"
        );
        let msg = e.unwrap().to_string();
        assert!(msg.contains("trust_owner(65534)"), "{kind}: {msg}");
    }
    let e = make(&name).open_or_create().err();
    assert!(
        matches!(
            &e,
            Some(OpenError::Open(SegOpenError::UntrustedOwner { .. }))
        ),
        "{kind}: open_or_create: {e:?}"
    );
    drop(make(&name).trust_owner(65534).open().unwrap());
    drop(make(&name).trust_owner(65534).open_or_create().unwrap());
}

#[test]
fn every_builder_gives_the_group_and_trusts_only_the_owner_named() {
    each_kind!(group_and_trust);
}
