//! Compiling the C++ test programs and the examples against this run's library (found and
//! built by `common::lib_dir`, shared with the C tests).
#![allow(dead_code, reason = "each test file uses a part")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::{include_dir, lib_dir};

/// The strict flags every header must pass.
pub const C_FLAGS: &[&str] = &["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"];
pub const CXX_FLAGS: &[&str] = &["-std=c++17", "-Wall", "-Wextra", "-Werror", "-pedantic"];

/// `tests/cpp/<file>`.
pub fn source(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/cpp")
        .join(file)
}

/// Runs a compiler command, failing the test with its output if it fails.
pub fn run_compiler(mut cmd: Command, what: &str) {
    let o: Output = cmd.output().expect("run the compiler");
    assert!(
        o.status.success(),
        "{what} failed ({}):\n{}{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Compiles and links the C++ program `tests/cpp/<src>` (plus `extra` flags) with the strict
/// flags into `<out>` in cargo's test temporary directory, linked with the shared library.
pub fn cxx(src: &str, out: &str, extra: &[&str]) -> PathBuf {
    let lib = lib_dir();
    let bin = Path::new(env!("CARGO_TARGET_TMPDIR")).join(out);
    let mut cmd = Command::new("c++");
    cmd.args(CXX_FLAGS)
        .args(["-O1", "-g"])
        .args(extra)
        .arg("-I")
        .arg(include_dir())
        .arg(source(src))
        .arg("-o")
        .arg(&bin)
        .arg("-L")
        .arg(&lib)
        .arg("-lshmlane")
        .arg(format!("-Wl,-rpath,{}", lib.display()));
    run_compiler(cmd, &format!("c++ {src}"));
    bin
}
