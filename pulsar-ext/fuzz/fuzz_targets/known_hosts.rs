//! A `known_hosts` file and a host presenting a key (the input's first three lines: the key
//! in base64, the host, the port): a verdict, never a panic, its line number in the file.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Some((key, host, port, file)) = pulsar_ext::fuzzing::split_known_hosts_input(&text) {
        pulsar_ext::fuzzing::known_hosts(file, host, port, key);
    }
});
