//! Session rows as the database could hold them (see `pulsar_ext::fuzzing::stored_rows` for
//! the layout), written to a real SQLite database and loaded back with the daemon's code.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = pulsar_ext::fuzzing::stored_rows(&String::from_utf8_lossy(data));
});
