//! Bytes as a client writes them on an attach stream (`pulsar attach`'s connection): the zero
//! byte, the hello line (any session id, mode, size, offset), then input and size frames of
//! any kind and length, against a real session. The daemon must close the connection once
//! the input ends, and write only a handshake answer and the frames the protocol names.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    pulsar_ext::fuzzing::attach_stream(data);
});
