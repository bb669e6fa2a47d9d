//! Opens a segment whose bytes are arbitrary: validation must return an error (or a usable
//! segment), never crash, hang or read out of bounds. Also lists and inspects it.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

fn name() -> &'static str {
    static N: OnceLock<String> = OnceLock::new();
    N.get_or_init(|| format!("shmlane-fuzz-{}", std::process::id()))
}

fuzz_target!(|data: &[u8]| shmlane_segment::fuzzing::open_arbitrary(name(), data));
