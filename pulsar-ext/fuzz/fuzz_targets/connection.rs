//! Bytes as a client would write them to the daemon's socket, on a real Unix socket pair:
//! the first-byte sniffer, then line-JSON, or HTTP, jsonrpsee's WebSocket upgrade and its
//! frames (the WebSocket path). The daemon must close the connection once the input ends.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    pulsar_ext::fuzzing::connection(data);
});
