//! Session and workspace errors as JSON-RPC error objects, with the codes from `pulsar_protocol::error`.

use jsonrpsee::types::ErrorObjectOwned;
use pulsar_protocol::error as code;
use serde_json::json;

use crate::backend::{BackendError, ConnectError, ForwardError};
use crate::session::SessionError;
use crate::workspace::WorkspaceError;

impl From<WorkspaceError> for ErrorObjectOwned {
    fn from(err: WorkspaceError) -> Self {
        let message = err.to_string();
        let (code, data) = match &err {
            WorkspaceError::NotFound { field, id } => {
                (code::WORKSPACE_NOT_FOUND, json!({*field: id}))
            }
            WorkspaceError::Invalid { field, .. } => {
                (code::INVALID_PARAMS, json!({"field": field}))
            }
            WorkspaceError::Limit { limit, max } => {
                (code::LIMIT_REACHED, json!({"limit": limit, "max": max}))
            }
        };
        ErrorObjectOwned::owned(code, message, Some(data))
    }
}

impl From<SessionError> for ErrorObjectOwned {
    fn from(err: SessionError) -> Self {
        let message = err.to_string();
        let (code, data) = match &err {
            SessionError::NotFound(id) => (code::SESSION_NOT_FOUND, json!({"session_id": id})),
            SessionError::NameExists { name, id } => (
                code::SESSION_EXISTS,
                json!({"name": name, "session_id": id}),
            ),
            SessionError::InvalidState { id, state, .. } => (
                code::INVALID_STATE,
                json!({"session_id": id, "state": state}),
            ),
            SessionError::LimitReached { limit, max, .. } => {
                (code::LIMIT_REACHED, json!({"limit": limit, "max": max}))
            }
            SessionError::InvalidParam { field, .. } => {
                (code::INVALID_PARAMS, json!({"field": field}))
            }
            SessionError::ReadOnly { id, client_id, .. } => (
                code::READ_ONLY,
                json!({"session_id": id, "client_id": client_id}),
            ),
            SessionError::NotAttached { id, client_id } => (
                code::CLIENT_NOT_ATTACHED,
                json!({"session_id": id, "client_id": client_id}),
            ),
            SessionError::Backend { name, source } => backend_error(name, source),
            SessionError::Stopping { .. } => (code::DAEMON_STOPPING, json!({})),
            SessionError::Io { id, .. } => (code::BACKEND_ERROR, json!({"session_id": id})),
            SessionError::RecordingActive { id, path } => (
                code::RECORDING_ACTIVE,
                json!({"session_id": id, "path": path}),
            ),
            SessionError::NotRecording { id } => (code::NOT_RECORDING, json!({"session_id": id})),
            SessionError::RecordingFile { id, path, .. } => (
                code::RECORDING_FILE_FAILED,
                json!({"session_id": id, "path": path}),
            ),
            SessionError::WaitTimeout {
                id,
                timeout_ms,
                offset,
            } => (
                code::WAIT_TIMEOUT,
                json!({"session_id": id, "timeout_ms": timeout_ms, "offset": offset}),
            ),
            SessionError::Forward { id, source } => forward_error(*id, source),
            SessionError::ForwardNotFound(forward_id) => {
                (code::FORWARD_NOT_FOUND, json!({"forward_id": forward_id}))
            }
        };
        ErrorObjectOwned::owned(code, message, Some(data))
    }
}

/// A port forward refused: its code, and `data` naming the session and the address.
fn forward_error(
    id: pulsar_protocol::SessionId,
    source: &ForwardError,
) -> (i32, serde_json::Value) {
    match source {
        ForwardError::NotSupported => (code::FORWARD_NOT_SUPPORTED, json!({"session_id": id})),
        // Gone between the lookup and the removal: answered as any unknown forward is.
        ForwardError::NotFound(forward_id) => {
            (code::FORWARD_NOT_FOUND, json!({"forward_id": forward_id}))
        }
        ForwardError::Invalid { field, .. } => (
            code::INVALID_PARAMS,
            json!({"session_id": id, "field": field}),
        ),
        ForwardError::AddressInUse { listen } => (
            code::FORWARD_ADDRESS_IN_USE,
            json!({"session_id": id, "listen": listen}),
        ),
        ForwardError::Refused { listen, .. } => (
            code::FORWARD_REFUSED,
            json!({"session_id": id, "listen": listen}),
        ),
        ForwardError::Failed { listen, .. } => (
            code::BACKEND_ERROR,
            json!({"session_id": id, "listen": listen}),
        ),
    }
}

/// A backend that could not be opened: its code, and `data` naming the session and, where
/// there is one, the device or host.
fn backend_error(name: &str, source: &BackendError) -> (i32, serde_json::Value) {
    match source {
        BackendError::InvalidSetting { field, .. } => {
            (code::INVALID_PARAMS, json!({"field": field, "name": name}))
        }
        BackendError::DeviceNotFound(device) => (
            code::DEVICE_NOT_FOUND,
            json!({"device": device, "name": name}),
        ),
        BackendError::DevicePermissionDenied(device) => (
            code::DEVICE_PERMISSION_DENIED,
            json!({"device": device, "name": name}),
        ),
        BackendError::Connect(source) => ssh_error(name, source),
        BackendError::LimitNotApplicable { field, kind } => (
            code::LIMIT_NOT_APPLICABLE,
            json!({"field": format!("limits.{field}"), "kind": kind, "name": name}),
        ),
        BackendError::LimitUnavailable { field, .. } => (
            code::LIMIT_UNAVAILABLE,
            json!({"field": format!("limits.{field}"), "name": name}),
        ),
        BackendError::Failed {
            device: Some(device),
            ..
        } => (code::BACKEND_ERROR, json!({"name": name, "device": device})),
        BackendError::Failed { device: None, .. } => (code::BACKEND_ERROR, json!({"name": name})),
    }
}

/// An SSH connection failure: its code, and `data` naming the session, host and port plus what
/// a client needs to act (the methods tried, the fingerprints). Never a secret.
fn ssh_error(name: &str, source: &ConnectError) -> (i32, serde_json::Value) {
    let mut data = json!({"name": name});
    if let Some((host, port)) = source.endpoint() {
        data["host"] = json!(host);
        data["port"] = json!(port);
    }
    let code = match source {
        ConnectError::InvalidSetting { field, .. } => {
            data["field"] = json!(field);
            code::INVALID_PARAMS
        }
        ConnectError::Refused { .. } => code::SSH_CONNECTION_REFUSED,
        ConnectError::Timeout { after, .. } => {
            data["timeout_ms"] = json!(after.as_millis() as u64);
            code::SSH_TIMEOUT
        }
        ConnectError::HostNotFound { .. } => code::SSH_HOST_NOT_FOUND,
        ConnectError::AuthFailed {
            user, tried, notes, ..
        } => {
            data["user"] = json!(user);
            data["tried"] = json!(tried);
            data["notes"] = json!(notes);
            code::SSH_AUTH_FAILED
        }
        ConnectError::UnknownHostKey {
            key_type,
            fingerprint,
            known_hosts,
            ..
        } => {
            data["key_type"] = json!(key_type);
            data["fingerprint"] = json!(fingerprint);
            data["known_hosts"] = json!(known_hosts);
            code::SSH_UNKNOWN_HOST_KEY
        }
        ConnectError::HostKeyChanged {
            known_hosts,
            line,
            expected_fingerprint,
            actual_fingerprint,
            ..
        } => {
            data["known_hosts"] = json!(known_hosts);
            data["line"] = json!(line);
            data["expected_fingerprint"] = json!(expected_fingerprint);
            data["fingerprint"] = json!(actual_fingerprint);
            code::SSH_HOST_KEY_CHANGED
        }
        ConnectError::HostKeyRevoked {
            key_type,
            fingerprint,
            known_hosts,
            line,
            ..
        } => {
            data["key_type"] = json!(key_type);
            data["fingerprint"] = json!(fingerprint);
            data["known_hosts"] = json!(known_hosts);
            data["line"] = json!(line);
            data["revoked"] = json!(true);
            code::SSH_HOST_KEY_CHANGED
        }
        ConnectError::Config { path, .. } => {
            data["config_file"] = json!(path);
            code::SSH_CONFIG_INVALID
        }
        ConnectError::Failed { .. } => code::SSH_CONNECTION_FAILED,
    };
    (code, data)
}
