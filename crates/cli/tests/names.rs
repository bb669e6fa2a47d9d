//! Names, every segment visible and removable, honest errors (issue 17): the `shmlane` command
//! against real segments.

use std::{
    ffi::{OsStr, OsString},
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
};

use shmlane_segment::{NAME_RULE, Segment};
use shmlane_testkit::{Cleanup, unique};

fn shmlane(args: &[&OsStr], stdin: &[u8]) -> Output {
    use std::io::Write;
    let mut c = Command::new(env!("CARGO_BIN_EXE_shmlane"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run shmlane");
    let _ = c.stdin.take().expect("stdin").write_all(stdin);
    c.wait_with_output().expect("wait for shmlane")
}

fn run(args: &[&str]) -> Output {
    let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    shmlane(&args, b"")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A directory of its own under /tmp, removed on drop.
struct TmpDir(PathBuf);

impl TmpDir {
    fn new(label: &str) -> Self {
        let p = std::env::temp_dir().join(unique(label));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("mkdir");
        Self(p)
    }
}

impl Drop for TmpDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `/dev/shm/<this>` is `path` (a name that climbs out of the shared-memory directory).
fn climbing(path: &Path) -> String {
    format!("../..{}", path.display())
}

/// Every subcommand that takes a NAME, with the arguments that would make it run at once.
fn commands(name: &OsStr) -> Vec<Vec<OsString>> {
    let with = |pre: &[&str], post: &[&str]| -> Vec<OsString> {
        pre.iter()
            .map(OsString::from)
            .chain(std::iter::once(name.to_owned()))
            .chain(post.iter().map(OsString::from))
            .collect()
    };
    vec![
        with(&["stat"], &[]),
        with(&["stat"], &["--json"]),
        with(&["stat", "--dir", "/tmp"], &[]),
        with(&["rm"], &[]),
        with(&["rm", "--force"], &[]),
        with(&["rm", "--dir", "/tmp"], &[]),
        with(&["create"], &[]),
        with(&["send"], &["--timeout", "1s"]),
        with(&["recv"], &["--timeout", "1s"]),
        with(&["recv"], &["--count", "1", "--timeout", "1s"]),
    ]
}

#[test]
fn every_subcommand_refuses_a_bad_name_with_exit_2_and_the_rule() {
    let dir = TmpDir::new("names-bad");
    let victim = dir.0.join("victim");
    std::fs::write(&victim, b"not yours\n").unwrap();
    let long = "n".repeat(300);
    let bad: Vec<OsString> = vec![
        "..".into(),
        ".".into(),
        "".into(),
        "../../x".into(),
        "a/b".into(),
        long.clone().into(),
        climbing(&victim).into(),
        OsStr::from_bytes(b"caf\xe9").to_owned(),
    ];
    for name in &bad {
        for args in commands(name) {
            let args: Vec<&OsStr> = args.iter().map(OsString::as_os_str).collect();
            let o = shmlane(&args, b"line\n");
            let err = text(&o.stderr);
            assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
            assert!(
                err.contains("invalid segment name") && err.contains(NAME_RULE),
                "{args:?}: {err}"
            );
            assert!(o.stdout.is_empty(), "{args:?}");
        }
    }
    // Nothing was created, opened for writing or removed anywhere.
    assert_eq!(std::fs::read(&victim).unwrap(), b"not yours\n");
    assert!(!Path::new("/dev/shm").join(&long).exists());
}

/// On main `stat ../../tmp/DIR/seg` printed a segment outside /dev/shm (exit 0).
#[test]
fn stat_does_not_read_a_segment_outside_the_directory() {
    let dir = TmpDir::new("names-outside");
    let path = dir.0.join("outside");
    let seg = Segment::file(&path).size(1 << 16).create().unwrap();
    let o = run(&["stat", &climbing(&path)]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(o.stdout.is_empty(), "{}", text(&o.stdout));
    // Named with --dir, it is found (the way to reach a segment elsewhere).
    let o = run(&["stat", "--dir", dir.0.to_str().unwrap(), "outside"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(
        text(&o.stdout).starts_with("segment   outside (file, "),
        "{}",
        text(&o.stdout)
    );
    drop(seg);
}

#[test]
fn stat_and_rm_take_dir() {
    let dir = TmpDir::new("names-dir");
    let d = dir.0.to_str().unwrap();
    let path = dir.0.join("seg");
    drop(Segment::file(&path).size(1 << 16).create().unwrap());
    let o = run(&["stat", "--json", "--dir", d, "seg"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["name"], "seg");
    assert_eq!(v["backend"], "file");
    // Not in /dev/shm: without --dir there is no such segment.
    let o = run(&["rm", "seg"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(path.exists());
    let o = run(&["rm", "--dir", d, "seg"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(!path.exists());
    // A POSIX segment of that name is untouched by `rm --dir`.
    let name = unique("names-dir-posix");
    let _c = Cleanup(name.clone());
    drop(Segment::posix(&name).size(1 << 16).create().unwrap());
    let o = run(&["rm", "--dir", d, &name]);
    assert_eq!(o.status.code(), Some(1));
    assert!(Path::new("/dev/shm").join(&name).exists());
}
