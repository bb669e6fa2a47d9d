//! The commands' typed channels record their line limit as the element type's name: `stat`
//! shows it, and a typed channel made by another program (another element type) is refused
//! with its type named, never read as lines.

use std::process::Command;

use shmlane_testkit::{Cleanup, unique};

fn run(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_shmlane"))
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run shmlane")
}

#[test]
fn stat_shows_the_type_and_a_program_channel_is_not_taken_for_lines() {
    let name = unique("cli-types");
    let _c = Cleanup(name.clone());
    let o = run(&["create", &name, "--kind", "spsc", "--msg-size", "100"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let st = String::from_utf8_lossy(&run(&["stat", &name]).stdout).into_owned();
    assert!(
        st.contains("type      shmlane-cli line of up to 100 bytes (128 bytes, align 1)"),
        "{st}"
    );
    assert!(st.contains("messages up to 100 bytes"), "{st}");
    let name = unique("cli-types-u64");
    let _c = Cleanup(name.clone());
    let _ch = shmlane::spsc::<[u8; 64]>(&name)
        .capacity(64)
        .create()
        .unwrap();
    for args in [&["recv", &name, "--timeout", "1s"][..], &["send", &name]] {
        let cmd = args[0];
        let o = run(args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{cmd}: {err}");
        assert!(
            err.contains("holds [u8; 64] (64 bytes, align 1), not the lines"),
            "{cmd}: {err}"
        );
    }
}
