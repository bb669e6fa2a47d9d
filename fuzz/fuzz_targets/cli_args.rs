//! The `shmlane` command line: arbitrary arguments (NUL-separated) parsed exactly as the binary
//! parses them, every argument also as a duration: an error or a command, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| shmlane_cli::fuzz_args(data));
