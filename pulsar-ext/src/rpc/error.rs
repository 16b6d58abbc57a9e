//! Session errors as JSON-RPC error objects, with the codes from `pulsar_protocol::error`.

use jsonrpsee::types::ErrorObjectOwned;
use pulsar_protocol::error as code;
use serde_json::json;

use crate::session::SessionError;

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
            SessionError::Spawn { name, .. } => (code::BACKEND_ERROR, json!({"name": name})),
            SessionError::DeviceNotFound { name, device } => (
                code::DEVICE_NOT_FOUND,
                json!({"device": device, "name": name}),
            ),
            SessionError::DevicePermissionDenied { name, device } => (
                code::DEVICE_PERMISSION_DENIED,
                json!({"device": device, "name": name}),
            ),
            SessionError::Device { name, source } => (
                code::BACKEND_ERROR,
                json!({"name": name, "device": source.device()}),
            ),
            SessionError::Io { id, .. } => (code::BACKEND_ERROR, json!({"session_id": id})),
        };
        ErrorObjectOwned::owned(code, message, Some(data))
    }
}
