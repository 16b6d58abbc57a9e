//! The upstream desktop client's dialect, translated at the edge of the line-JSON framing.
//!
//! A request without a `"jsonrpc"` member comes from the upstream desktop (or a script written
//! for it). Its answers carry session info in the upstream shape as well as ours: serde's
//! externally tagged `session_type` (`"Local"`, `{"Ssh":{"host","port"}}`,
//! `{"Serial":{"device"}}`) and a capitalised `state`; and its `create_session` never fails
//! on a taken name but takes the first free `name (N)`. Nothing outside `rpc/` knows this
//! dialect exists.

use serde_json::{Map, Value, json};

use crate::session::SessionManager;
use pulsar_protocol::error as code;

/// True for a request in the upstream shape: no `jsonrpc` member.
pub(super) fn is_upstream(call: &Map<String, Value>) -> bool {
    !call.contains_key("jsonrpc")
}

/// Where a method's answer carries session info.
enum InfoAt {
    /// The result is one session's info.
    Result,
    /// The result is `{"sessions": [info...]}`.
    Sessions,
}

fn info_location(method: &str) -> Option<InfoAt> {
    match method {
        "list_sessions" => Some(InfoAt::Sessions),
        "create_session" | "get_session" | "attach_session" | "resize_terminal" => {
            Some(InfoAt::Result)
        }
        _ => None,
    }
}

/// Rewrites a response to an upstream request of `method` so that every session info in it
/// also reads as the upstream desktop's `SessionInfo`. Anything unexpected is left as it is.
pub(super) fn translate_response(method: &str, response: String) -> String {
    let Some(at) = info_location(method) else {
        return response;
    };
    let Ok(mut value) = serde_json::from_str::<Value>(&response) else {
        return response;
    };
    let Some(result) = value.get_mut("result") else {
        return response; // an error: nothing to translate
    };
    match at {
        InfoAt::Result => add_upstream_fields(result),
        InfoAt::Sessions => {
            if let Some(sessions) = result.get_mut("sessions").and_then(Value::as_array_mut) {
                sessions.iter_mut().for_each(add_upstream_fields);
            }
        }
    }
    value.to_string()
}

/// Adds `session_type` and capitalises `state` in one session info. Our other fields stay:
/// they do not collide with the upstream ones, and serde ignores them there.
fn add_upstream_fields(info: &mut Value) {
    let Some(info) = info.as_object_mut() else {
        return;
    };
    if let Some(kind) = info.get("type").and_then(upstream_session_type) {
        info.insert("session_type".to_owned(), kind);
    }
    if let Some(state) = info.get("state").and_then(Value::as_str) {
        let upstream = match state {
            "running" => "Running",
            "detached" => "Detached",
            _ => "Stopped",
        };
        info.insert("state".to_owned(), Value::String(upstream.to_owned()));
    }
}

/// Our `kind`-tagged type as the upstream enum (serde's default, externally tagged).
fn upstream_session_type(ours: &Value) -> Option<Value> {
    let kind = ours.get("kind")?.as_str()?;
    Some(match kind {
        "local" => json!("Local"),
        "ssh" => json!({"Ssh": {
            "host": ours.get("host").cloned().unwrap_or(Value::Null),
            "port": ours.get("port").and_then(Value::as_u64).unwrap_or(22),
        }}),
        "serial" => json!({"Serial": {
            "device": ours.get("device").cloned().unwrap_or(Value::Null),
        }}),
        // A kind the upstream enum lacks: the nearest it can read.
        _ => json!("Local"),
    })
}

/// An upstream SSH type names no user; `{"Ssh":{"host":"user@host"}}` says it the way an SSH
/// client would, so it becomes our `{"kind":"ssh","host":..,"user":..,"port":..}`.
pub(super) fn ssh_user_at_host(call: &mut Map<String, Value>) {
    let Some(Value::Object(params)) = call.get_mut("params") else {
        return;
    };
    let Some(ssh) = params
        .get("type")
        .and_then(|t| t.get("Ssh"))
        .and_then(Value::as_object)
    else {
        return;
    };
    let Some((user, host)) = ssh
        .get("host")
        .and_then(Value::as_str)
        .and_then(|h| h.rsplit_once('@'))
    else {
        return;
    };
    let mut ours = json!({"kind": "ssh", "host": host, "user": user});
    if let Some(port) = ssh.get("port") {
        ours["port"] = port.clone();
    }
    params.insert("type".to_owned(), ours);
}

/// Longest a session name may be (as the session core checks).
const MAX_NAME_CHARS: usize = 64;
/// Creates retried when a concurrent create takes the name picked.
pub(super) const NAME_ATTEMPTS: usize = 8;

/// The name an upstream `create_session` asked for, if it asked for one.
pub(super) fn requested_name(call: &Map<String, Value>) -> Option<String> {
    match call.get("params")? {
        Value::Object(params) => params.get("name")?.as_str().map(str::to_owned),
        _ => None,
    }
}

/// Sets the name an upstream `create_session` will use.
pub(super) fn set_name(call: &mut Map<String, Value>, name: &str) {
    if let Some(Value::Object(params)) = call.get_mut("params") {
        params.insert("name".to_owned(), Value::String(name.to_owned()));
    }
}

/// `base` if no live session holds it, else the first free of `base (2)`, `base (3)`, ...:
/// deterministic, so the desktop's second auto-started `Local Terminal` is always
/// `Local Terminal (2)`.
pub(super) fn free_name(sessions: &SessionManager, base: &str) -> String {
    let taken: std::collections::HashSet<String> = sessions
        .all()
        .iter()
        .filter(|s| s.is_alive())
        .map(|s| s.name().to_owned())
        .collect();
    if !taken.contains(base) {
        return base.to_owned();
    }
    // Bounded: among n taken names at most n suffixes can be taken.
    (2..=taken.len() + 2)
        .map(|n| suffixed(base, n))
        .find(|name| !taken.contains(name))
        .unwrap_or_else(|| base.to_owned())
}

/// `base (n)`, shortening `base` so the whole stays within the name limit.
fn suffixed(base: &str, n: usize) -> String {
    let suffix = format!(" ({n})");
    let room = MAX_NAME_CHARS.saturating_sub(suffix.chars().count());
    let stem: String = base.chars().take(room).collect();
    format!("{stem}{suffix}")
}

/// True when `response` is the name-exists error (another create took the name meanwhile).
pub(super) fn is_name_taken(response: &str) -> bool {
    serde_json::from_str::<Value>(response)
        .ok()
        .and_then(|v| v.get("error")?.get("code")?.as_i64())
        == Some(i64::from(code::SESSION_EXISTS))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_info_gains_the_upstream_type_and_state() {
        let response = json!({"jsonrpc": "2.0", "id": "1", "result": {"sessions": [
            {"id": "x", "type": {"kind": "local"}, "state": "detached"},
            {"id": "y", "type": {"kind": "ssh", "host": "h"}, "state": "running"},
            {"id": "z", "type": {"kind": "serial", "device": "/dev/ttyS0"}, "state": "stopped"},
        ]}})
        .to_string();
        let out: Value =
            serde_json::from_str(&translate_response("list_sessions", response)).unwrap();
        let sessions = &out["result"]["sessions"];
        assert_eq!(sessions[0]["session_type"], "Local");
        assert_eq!(sessions[0]["state"], "Detached");
        assert_eq!(sessions[0]["type"]["kind"], "local");
        assert_eq!(
            sessions[1]["session_type"],
            json!({"Ssh": {"host": "h", "port": 22}})
        );
        assert_eq!(sessions[1]["state"], "Running");
        assert_eq!(
            sessions[2]["session_type"],
            json!({"Serial": {"device": "/dev/ttyS0"}})
        );
        assert_eq!(sessions[2]["state"], "Stopped");
    }

    #[test]
    fn errors_and_other_methods_pass_unchanged() {
        let error = json!({"jsonrpc": "2.0", "id": "1", "error": {"code": 1001}}).to_string();
        assert_eq!(translate_response("get_session", error.clone()), error);
        let status = json!({"jsonrpc": "2.0", "id": "1", "result": {"state": "x"}}).to_string();
        assert_eq!(translate_response("get_status", status.clone()), status);
    }

    #[test]
    fn an_upstream_ssh_host_may_name_its_user() {
        let mut call = json!({"method": "create_session", "params": {"type": {"Ssh":
            {"host": "ci@build.example", "port": 2222}}}});
        ssh_user_at_host(call.as_object_mut().unwrap());
        assert_eq!(
            call["params"]["type"],
            json!({"kind": "ssh", "host": "build.example", "user": "ci", "port": 2222})
        );
    }

    #[test]
    fn suffixes_keep_names_within_the_limit() {
        assert_eq!(suffixed("Local Terminal", 2), "Local Terminal (2)");
        let long = "x".repeat(64);
        let name = suffixed(&long, 12);
        assert_eq!(name.chars().count(), 64);
        assert!(name.ends_with(" (12)"));
    }
}
