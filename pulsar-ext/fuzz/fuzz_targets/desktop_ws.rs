//! Bytes as the desktop would write them to its WebSocket port once the listener has checked
//! the peer's uid: the HTTP upgrade (path, `Origin`, headers), then WebSocket frames (input
//! as base64 text or raw binary, pings, closes, fragments, any lengths), against a real
//! session. The daemon must close the connection once the input ends, and write only HTTP
//! and the frames the protocol names.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    pulsar_ext::fuzzing::desktop_ws(data);
});
