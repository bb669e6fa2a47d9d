//! Attaches every endpoint of a ring whose memory is arbitrary (a valid ring overwritten by the
//! input) and uses it: attach errors and `Corrupt`, never a crash or an out-of-bounds access.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| shmlane_ring::fuzzing::attach_arbitrary(data));
