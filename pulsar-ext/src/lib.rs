//! Pulsar, the terminal-session daemon, as an Orbit extension.
//!
//! [`PulsarExtension`] implements [`orbit_api_stub::OrbitExtension`]; the Orbit host loads it
//! from this crate's `cdylib`, and `pulsar-standalone` links it as an `rlib`. Inside, a
//! [`daemon::Daemon`] owns the [`session::SessionManager`], the [`store`] (through
//! [`persist`]) and the [`rpc`] server on the Unix socket. See `docs/architecture.md` for the code map and its invariants.

pub mod audit;
pub mod backend;
pub mod config;
pub mod daemon;
mod extension;
pub mod persist;
pub mod rpc;
pub mod session;
pub mod shutdown;
pub mod store;
pub mod terminal;

pub use config::Config;
pub use extension::PulsarExtension;

orbit_api_stub::declare_extension!(PulsarExtension, PulsarExtension::new);
