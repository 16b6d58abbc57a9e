//! Text as a client's base64 (`send_input`'s data, the desktop's text frames): both decoders
//! agree, and what decodes encodes back to the same text.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        pulsar_ext::fuzzing::base64(text);
    }
});
