//! Pulsar, the terminal-session daemon, as an Orbit extension.
//!
//! [`PulsarExtension`] implements [`orbit_api_stub::OrbitExtension`]; the Orbit host loads it
//! from this crate's `cdylib`, and `pulsar-standalone` links it as an `rlib`. Inside, a
//! `Daemon` owns the session table, the store (through `persist`) and the RPC server on the
//! Unix socket. Nothing else is API: see `docs/architecture.md` for the code map and its
//! invariants.

mod audit;
mod backend;
pub mod config;
mod daemon;
mod extension;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
mod handover;
mod persist;
mod relay;
mod rpc;
mod session;
mod shutdown;
mod signal;
mod store;
mod supervisor;
mod terminal;
mod transfer;
mod workspace;

pub use config::Config;
pub use extension::PulsarExtension;

orbit_api_stub::declare_extension!(PulsarExtension, PulsarExtension::new);
