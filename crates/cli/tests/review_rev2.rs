//! Review rev2 (issue 15, finding 14/15): a channel header overwritten with an impossible
//! message size makes `shmlane send`/`recv` report an error, never panic.

use std::{os::unix::fs::FileExt as _, process::Command};

use shmlane_testkit::{Cleanup, unique};

#[test]
fn an_impossible_message_size_in_the_header_is_an_error_not_a_panic() {
    for size in [u64::MAX - 1, 1 << 63, u64::MAX / 8] {
        let name = unique("cli-rev2-msgsize");
        let _c = Cleanup(name.clone());
        let ch = shmlane::spsc::<[u8; 64]>(&name)
            .capacity(64)
            .type_name(&shmlane_cli::line::line_type(60))
            .create()
            .unwrap();
        drop(ch);
        // The channel header's msg_size word (word 4 of region "chan").
        let info = shmlane_segment::inspect(std::path::Path::new(&format!("/dev/shm/{name}")))
            .unwrap()
            .unwrap();
        let chan = info.regions.iter().find(|r| r.name == "chan").unwrap();
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(format!("/dev/shm/{name}"))
            .unwrap();
        f.write_all_at(&size.to_le_bytes(), chan.offset + 4 * 8)
            .unwrap();
        for cmd in ["recv", "send"] {
            let o = Command::new(env!("CARGO_BIN_EXE_shmlane"))
                .args([cmd, &name, "--count", "1", "--timeout", "1s"])
                .stdin(std::process::Stdio::null())
                .output()
                .expect("run shmlane");
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(
                !err.contains("panicked"),
                "{cmd} with msg_size {size}: {err}"
            );
            assert_ne!(
                o.status.code(),
                Some(0),
                "{cmd} with msg_size {size}: {err}"
            );
        }
    }
}
