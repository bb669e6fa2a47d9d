//! `shmlane send`'s input framing: arbitrary bytes split into line messages under a limit; the
//! lines must give back the input and respect the limit (see `shmlane_cli::input::fuzz_lines`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| shmlane_cli::input::fuzz_lines(data));
