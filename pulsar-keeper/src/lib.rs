//! Pulsar's keeper: a small per-user process that is the parent of every session program and
//! holds their descriptors (PTY masters, serial devices), so that daemons can come and go
//! (upgrade, crash, an Orbit host restart) without a single session program noticing.
//!
//! A daemon talks to it over a private `SOCK_SEQPACKET` socket ([`wire`]: versioned JSON
//! messages, descriptors by `SCM_RIGHTS`) through a [`client::Client`]. The daemon still reads
//! and writes every terminal itself, through its own copy of the descriptor: the keeper is
//! never on the output path and costs a descriptor and a few hundred bytes per session.

pub mod client;
pub mod limited;
pub mod pty;
mod server;
pub mod wire;

pub use server::{default_socket, run};
