//! The one error type the session core sees from any backend, whatever its kind.
//!
//! Each backend keeps its own detailed error inside its module; at the door they become a
//! [`BackendError`], whose variants are what a client can act on (a bad field, a missing or
//! forbidden device, an SSH connection refused for a reason with its own code, anything else).

use std::path::PathBuf;

use super::local::SpawnError;
use super::serial::OpenError;
use super::ssh::ConnectError;

/// Why a backend could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// A field of the session's `type` (or the size) is invalid: the caller's to fix.
    #[error("invalid {field}: {reason}")]
    InvalidSetting {
        /// The field as named on the wire (`type.cwd`, `type.baud`, `type.host`, ...).
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// Nothing exists at the serial device path.
    #[error("serial device {} does not exist", .0.display())]
    DeviceNotFound(PathBuf),
    /// The daemon's user may not open the serial device.
    #[error("permission denied opening serial device {}", .0.display())]
    DevicePermissionDenied(PathBuf),
    /// An SSH connection failed in one of the ways that have codes of their own (refused,
    /// timed out, unknown host, authentication, host key). Boxed: host-key details are large.
    #[error(transparent)]
    Connect(Box<ConnectError>),
    /// A limit asked for a session whose program runs out of the daemon's reach.
    #[error(
        "limits.{field} cannot apply to a {kind} session: its program runs at the far end \
         (an SSH server or a device), out of this daemon's reach; only \
         limits.output_bytes_per_sec applies"
    )]
    LimitNotApplicable {
        /// The limit, as named in `limits`.
        field: &'static str,
        /// The session's kind.
        kind: &'static str,
    },
    /// No mechanism on this machine can hold a limit, or setting it up failed.
    #[error("limits.{field} cannot be held: {reason}")]
    LimitUnavailable {
        /// The limit, as named in `limits`.
        field: &'static str,
        /// What was tried, and why it failed.
        reason: String,
    },
    /// Anything else: the program could not start, the device could not be configured.
    #[error("{reason}")]
    Failed {
        /// What failed, in words naming the program or device.
        reason: String,
        /// The device concerned, for a serial session.
        device: Option<PathBuf>,
    },
}

impl BackendError {
    /// True when the far end refused the credentials: after a daemon restart this means a
    /// password or passphrase that was (rightly) never stored.
    pub fn needs_credentials(&self) -> bool {
        matches!(self, BackendError::Connect(err) if matches!(**err, ConnectError::AuthFailed { .. }))
    }
}

impl From<SpawnError> for BackendError {
    fn from(err: SpawnError) -> Self {
        match err {
            SpawnError::NoSuchCwd(dir) => BackendError::InvalidSetting {
                field: "type.cwd",
                reason: format!("{} does not exist or is not a directory", dir.display()),
            },
            SpawnError::EmptyCommand => BackendError::InvalidSetting {
                field: "type.command",
                reason: "must name a program".to_owned(),
            },
            err @ SpawnError::Spawn { .. } => BackendError::Failed {
                reason: err.to_string(),
                device: None,
            },
        }
    }
}

impl From<OpenError> for BackendError {
    fn from(err: OpenError) -> Self {
        match err {
            OpenError::InvalidSetting { field, reason } => {
                BackendError::InvalidSetting { field, reason }
            }
            OpenError::NotFound(device) => BackendError::DeviceNotFound(device),
            OpenError::PermissionDenied(device) => BackendError::DevicePermissionDenied(device),
            err @ (OpenError::Busy(_) | OpenError::Open { .. }) => BackendError::Failed {
                device: err.device().map(ToOwned::to_owned),
                reason: err.to_string(),
            },
        }
    }
}

impl From<ConnectError> for BackendError {
    fn from(err: ConnectError) -> Self {
        match err {
            ConnectError::InvalidSetting { field, reason } => {
                BackendError::InvalidSetting { field, reason }
            }
            err => BackendError::Connect(Box::new(err)),
        }
    }
}

/// Why a port forward could not be added or removed. Messages name the address and the cause;
/// the session core adds the session.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// This kind of session has no connection to forward over.
    #[error("it is not an SSH session: only SSH sessions carry port forwards")]
    NotSupported,
    /// No forward has that id.
    #[error("forward {0} not found")]
    NotFound(uuid::Uuid),
    /// A field of the request is invalid.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The field as named on the wire (`listen`, `target`).
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// Something else listens on the address already.
    #[error("cannot listen on {listen}: the address is already in use")]
    AddressInUse {
        /// The address asked for.
        listen: String,
    },
    /// The SSH server would not listen for a remote forward.
    #[error("the server refused to listen on {listen} (tcpip-forward): {reason}")]
    Refused {
        /// The address asked for, on the server.
        listen: String,
        /// What russh or the server said.
        reason: String,
    },
    /// Any other failure (binding a privileged port, the connection lost mid-request).
    #[error("forward on {listen}: {reason}")]
    Failed {
        /// The address asked for.
        listen: String,
        /// What failed.
        reason: String,
    },
}
