//! Port forwards on an SSH session's connection (`add_forward`, `list_forwards`,
//! `remove_forward`): what `ssh -L`, `-R` and `-D` do, kept by the daemon.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::SessionId;

/// A forward's id (a UUID), unique across sessions.
pub type ForwardId = Uuid;

/// Which way a forward carries connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ForwardKind {
    /// `ssh -L`: listen on the daemon's host; each connection is opened from the server to
    /// `target` (`direct-tcpip`).
    Local,
    /// `ssh -R`: the server listens (`tcpip-forward`); each connection comes back and is
    /// connected from the daemon's host to `target`.
    Remote,
    /// `ssh -D`: a SOCKS5 proxy on the daemon's host (CONNECT, no authentication); each
    /// connection goes from the server to the address the SOCKS client names.
    Dynamic,
}

impl ForwardKind {
    /// The wire name: `local`, `remote` or `dynamic`.
    pub fn as_str(self) -> &'static str {
        match self {
            ForwardKind::Local => "local",
            ForwardKind::Remote => "remote",
            ForwardKind::Dynamic => "dynamic",
        }
    }
}

/// A forward as asked for: an element of `create_session`'s `forwards`, or `add_forward`'s
/// parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardSpec {
    /// Which way.
    pub kind: ForwardKind,
    /// `[host:]port` to listen on: on the daemon's host for `local` and `dynamic`, on the
    /// server for `remote`. The host defaults to loopback (`127.0.0.1`); port 0 picks a free
    /// one (the info then shows which).
    pub listen: String,
    /// `host:port` connections go to; required for `local` and `remote`, absent for
    /// `dynamic`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Allows `listen` to name an address other than loopback (reachable from other
    /// machines). Without it such an address is refused.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_non_loopback: bool,
}

/// Where a forward stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ForwardState {
    /// Listening and carrying connections.
    Active,
    /// The SSH connection is down (reconnecting): re-established when it is back.
    Down,
    /// Could not be re-established (the server refused the listener again, the local port
    /// was taken); `last_error` says why. Remove it and add it anew.
    Failed,
}

/// What the daemon reports about a forward.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardInfo {
    /// The forward's id (for `remove_forward`).
    pub id: ForwardId,
    /// The session whose connection carries it.
    pub session_id: SessionId,
    /// Which way.
    pub kind: ForwardKind,
    /// The address listened on, as bound (`127.0.0.1:8080`; a port 0 asked for shows the
    /// port picked).
    pub listen: String,
    /// Where connections go (`local`, `remote`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Where it stands.
    pub state: ForwardState,
    /// Connections open now.
    pub connections: u64,
    /// Connections carried since the forward was added (in this daemon).
    pub total_connections: u64,
    /// Connections that could not reach their target (refused, unreachable, or the SSH
    /// connection down) and were closed; the forward stays up.
    #[serde(default)]
    pub failed_connections: u64,
    /// Bytes received through the SSH connection (towards whoever connected, for `local`
    /// and `dynamic`; towards `target`, for `remote`).
    pub bytes_in: u64,
    /// Bytes sent into the SSH connection.
    pub bytes_out: u64,
    /// The last connection's failure, if one failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// `list_forwards`' answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListForwardsResult {
    /// The forwards, by session, oldest first.
    pub forwards: Vec<ForwardInfo>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_reads_the_wire_shape_with_defaults() {
        let spec: ForwardSpec =
            serde_json::from_str(r#"{"kind":"dynamic","listen":"1080"}"#).unwrap();
        assert_eq!(spec.kind, ForwardKind::Dynamic);
        assert_eq!(spec.target, None);
        assert!(!spec.allow_non_loopback);
        let back = serde_json::to_value(&spec).unwrap();
        assert_eq!(
            back,
            serde_json::json!({"kind": "dynamic", "listen": "1080"})
        );
    }
}
