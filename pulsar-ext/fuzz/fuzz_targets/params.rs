//! One call of any method (the first byte picks it) with arbitrary parameters (the rest, as
//! JSON text): decoded or refused with one response, never a panic.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [method, params @ ..] = data else {
        return;
    };
    let Ok(params) = std::str::from_utf8(params) else {
        return;
    };
    pulsar_ext::fuzzing::call(*method, params);
});
