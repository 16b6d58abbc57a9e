//! One packet on a real `SOCK_SEQPACKET` pair, read as the keeper reads a daemon's request
//! (first byte even) or as the daemon reads the keeper's reply (odd): refused or decoded,
//! never a panic; and what decodes is sent again and decodes to the same message.

#![no_main]

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixDatagram;

use libfuzzer_sys::fuzz_target;
use pulsar_keeper::wire::{self, Reply, Request};
use serde::Serialize;
use serde::de::DeserializeOwned;

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(packet: &[u8]) {
    let (a, b) = wire::seqpacket_pair().expect("a socket pair");
    let sender = UnixDatagram::from(OwnedFd::from(a));
    if sender.send(packet).is_err() {
        return; // longer than the socket takes
    }
    let Ok(Some((message, fds))) = wire::recv::<T>(b.as_raw_fd()) else {
        return;
    };
    assert!(fds.is_empty(), "descriptors out of nowhere");
    wire::send(sender.as_raw_fd(), &message, &[]).expect("a decoded message is sent again");
    let (again, _) = wire::recv::<T>(b.as_raw_fd())
        .expect("the message sent again is read")
        .expect("not EOF");
    assert_eq!(message, again, "the message changed on the way");
}

fuzz_target!(|data: &[u8]| {
    let [which, packet @ ..] = data else {
        return;
    };
    if which % 2 == 0 {
        round_trip::<Request>(packet);
    } else {
        round_trip::<Reply>(packet);
    }
});
