//! Both headers compile with `-Werror` (C: `-std=c99 -Wall -Wextra -Werror -pedantic`, C++:
//! `-std=c++17 ...`); the C++ wrapper's non-typed part runs against the library
//! (tests/cpp/header_use.cpp); its typed part compiles against the typed ABI; the examples
//! build with `examples/Makefile` (static and shared) and run.

mod common;
#[path = "cpp/support.rs"]
mod support;

use common::{Name, include_dir, lib_dir};
use shmlane_testkit::finish;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use support::{C_FLAGS, CXX_FLAGS, cxx, run_compiler, source};

fn syntax_only(compiler: &str, flags: &[&str], src: &Path, extra: &[&str]) {
    let mut cmd = Command::new(compiler);
    cmd.args(flags)
        .args(extra)
        .arg("-fsyntax-only")
        .arg("-I")
        .arg(include_dir())
        .arg(src);
    run_compiler(cmd, &format!("{compiler} {}", src.display()));
}

#[test]
fn c_header_compiles_with_werror_as_c99_and_as_cpp() {
    syntax_only("cc", C_FLAGS, &source("c_header.c"), &[]);
    // The C header included from C++ (extern "C" block), as C++ programs see it.
    syntax_only("c++", CXX_FLAGS, &source("c_header.c"), &["-x", "c++"]);
}

#[test]
fn cpp_header_compiles_with_werror_and_works() {
    let bin = cxx("header_use.cpp", "cpp-header-use", &[]);
    let prefix = Name::new("cpp-hdr");
    // Bounded: a wrapper that waits where it should not (e.g. a negative timeout taken as
    // "no limit") fails here instead of hanging the test run.
    let child = Command::new(&bin)
        .arg(&prefix.0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run header_use");
    let (code, lines) = finish(child, Duration::from_secs(60));
    for s in ["-b", "-c"] {
        let _ = std::fs::remove_file(format!("/dev/shm/{}{s}", prefix.0));
    }
    assert!(
        code == 0 && lines.iter().any(|l| l == "ok cpp header"),
        "header_use.cpp failed (exit {code}, printed {lines:?}; its stderr is above)"
    );
}

#[test]
fn cpp_typed_wrappers_compile_against_the_typed_abi() {
    // While include/shmlane.h lacks the typed calls, compile against the agreed declarations
    // (tests/cpp/typed_abi_spec.h); once it has them, against the real ones.
    let h = std::fs::read_to_string(include_dir().join("shmlane.h")).expect("read shmlane.h");
    let spec: &[&str] = if h.contains("shmlane_spsc_open") {
        &[]
    } else {
        &["-DSHMLANE_TEST_TYPED_SPEC"]
    };
    let mut extra = vec!["-I".to_owned(), source("").display().to_string()];
    extra.extend(spec.iter().map(|s| (*s).to_owned()));
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    syntax_only("c++", CXX_FLAGS, &source("typed.cpp"), &extra);
}

#[test]
fn cpp_typed_wrappers_refuse_a_type_that_is_not_trivially_copyable() {
    let src = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cpp-not-trivial.cpp");
    std::fs::write(
        &src,
        "#include \"shmlane.hpp\"\n#include <string>\nint main() { shmlane::Sender<std::string> s; (void)s; }\n",
    )
    .expect("write");
    let o = Command::new("c++")
        .args(CXX_FLAGS)
        .arg("-fsyntax-only")
        .arg("-I")
        .arg(include_dir())
        .arg(&src)
        .output()
        .expect("run c++");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("needs a trivially copyable T"),
        "Sender<std::string> was not refused by the static_assert:\n{err}"
    );
}

#[test]
fn examples_build_with_the_makefile_and_run() {
    let lib = lib_dir();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("examples");
    let mut make = Command::new("make");
    make.arg("-s")
        .arg("-B")
        .arg("-C")
        .arg(root.join("examples"))
        .arg(format!("LIBDIR={}", lib.display()))
        .arg(format!("OUT={}", out.display()))
        .arg("all");
    run_compiler(make, "make -C examples");
    for (bin, args, want) in [
        ("c_pingpong", &["2000"][..], "2000 round trips"),
        ("c_pingpong_shared", &["2000"], "2000 round trips"),
        ("cpp_pingpong", &["2000"], "2000 round trips"),
        ("cpp_pingpong_shared", &["2000"], "2000 round trips"),
        (
            "c_md_fanout",
            &["20000", "2"],
            "feed: 20000 quotes to 2 strategies",
        ),
        (
            "c_md_fanout_shared",
            &["20000", "2"],
            "feed: 20000 quotes to 2 strategies",
        ),
        (
            "cpp_md_fanout",
            &["20000", "2"],
            "feed: 20000 quotes to 2 strategies",
        ),
        (
            "cpp_md_fanout_shared",
            &["20000", "2"],
            "feed: 20000 quotes to 2 strategies",
        ),
    ] {
        let o = Command::new(out.join(bin))
            .args(args)
            .output()
            .expect("run example");
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success() && stdout.contains(want),
            "{bin} failed ({}):\n{stdout}{}",
            o.status,
            String::from_utf8_lossy(&o.stderr)
        );
        // Every strategy reports what it received and lost.
        if bin.contains("md_fanout") {
            assert_eq!(
                stdout.matches("quotes received").count(),
                2,
                "{bin}:\n{stdout}"
            );
        }
    }
}
