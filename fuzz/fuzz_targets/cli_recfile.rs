//! A recording file (`shmlane replay`'s input: anyone may have written it) read record by
//! record: an error naming an offset or the records, never a panic, a hang or an allocation
//! beyond the file's own bytes and the header's (checked) largest message.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| shmlane_cli::recfile::fuzz_read(data));
