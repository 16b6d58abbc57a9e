//! Keeps the store in step with the session table, and brings sessions back at start.
//!
//! The glue between the session core (which only reports changes through
//! `SessionObserver`) and the store (which only knows SQL), one role a file: `observer`
//! writes a row on every state change, `audit` records who did what, `checkpoint` saves new
//! output and activity on an interval, `export` replays saved output as asciicast, `restore`
//! applies the restore policy at start, `rows` translates between the session's terms and the
//! store's own row types, `workspaces` does both for workspaces, `forwards` for SSH
//! sessions' port forwards, and `transfers` for file transfers.

mod audit;
mod checkpoint;
mod export;
mod forwards;
mod observer;
mod restore;
mod rows;
mod transfers;
mod workspaces;

pub(crate) use audit::StoreAudit;
pub(crate) use checkpoint::Checkpointer;
pub(crate) use export::export_asciicast;
pub(crate) use forwards::{forward_row, restore_forwards, revive_forwards};
pub(crate) use observer::StoreObserver;
pub(crate) use restore::restore_all;
pub(crate) use transfers::{StoreTransfers, load_transfers};
pub(crate) use workspaces::{StoreWorkspaces, load_workspaces};
