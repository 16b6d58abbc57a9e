//! The Orbit host contract, as Orbit's daemon defines it and as this stub stands in for it.
//!
//! An extension is a `cdylib` that implements [`OrbitExtension`] and exports it with
//! [`declare_extension!`]; a host loads it with [`loader::load_extension`], checks its ABI
//! declaration, hands it an [`ExtensionContext`] and later stops it. The `orbit-host` binary in
//! this crate is a minimal host that does exactly that from an Orbit config file.
//!
//! This crate is an API boundary: it changes additively only, and it depends on nothing else in
//! the workspace.

pub mod abi;
pub mod config;
mod context;
mod extension;
pub mod loader;

pub use abi::{ABI_SYMBOL, API_VERSION, ExtensionDeclaration, RUSTC_VERSION, STUB_VERSION};
pub use async_trait::async_trait;
pub use context::{ExtensionContext, HostDirs};
pub use extension::{ExtensionError, ExtensionState, ExtensionStatus, OrbitExtension};
pub use loader::{LoadError, LoadedExtension, load_extension};
