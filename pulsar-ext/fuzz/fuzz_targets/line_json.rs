//! Bytes as a line-JSON connection would read them: framing (cut at an arbitrary buffer
//! size, under an arbitrary size limit), JSON, batches, notifications, both id kinds, the
//! upstream dialect and every method's parameters. Every answer must be a JSON-RPC response.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    pulsar_ext::fuzzing::line_json(data);
});
