//! Random operation sequences on each ring kind (SPSC, stamped SPSC, MPMC, record, broadcast)
//! from arbitrary first positions, checked against a model.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| shmlane_ring::fuzzing::ops_against_model(data));
