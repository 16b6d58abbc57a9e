//! Calls whose answers describe sessions, read into a lenient view.
//!
//! `pulsar_protocol::SessionInfo` only knows the session kinds this build of the protocol
//! knows; a daemon that learned `ssh` or `serial` would make the typed calls fail to parse.
//! So the calls that return session info (`create_session`, `list_sessions`,
//! `attach_session`, `resize_terminal`) go through [`ClientT::request`](jsonrpsee::core::client::ClientT::request) with a JSON object of
//! parameters and keep `type` as plain JSON; everything else uses the typed client.

use chrono::{DateTime, Utc};
use jsonrpsee::core::client::ClientT as _;
use pulsar_protocol::{PulsarClient, SessionId, method};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::{Failure, Result};

/// What the CLI needs to know about a session, whatever its kind.
#[derive(Debug, Clone, Deserialize)]
pub struct Session {
    /// The session's id.
    pub id: SessionId,
    /// Its name.
    pub name: String,
    /// `{"kind": ..., ...}` as the daemon reports it.
    #[serde(rename = "type", default)]
    pub session_type: Value,
    /// `running`, `detached` or `stopped` (kept as text so new states still list).
    pub state: String,
    /// Clients attached now.
    #[serde(default)]
    pub num_clients: usize,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// Exit code once stopped by a normal exit.
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// Signal number once stopped by a signal.
    #[serde(default)]
    pub exit_signal: Option<i32>,
    /// One past its last output byte (where output that follows starts).
    #[serde(default)]
    pub output_offset: u64,
    /// The program's pid while it runs.
    #[serde(default)]
    pub pid: Option<u32>,
    /// What it uses now (a running local session).
    #[serde(default)]
    pub usage: Option<Usage>,
    /// Its limits, as the daemon reports them (`{field: {value, mechanism}}`).
    #[serde(default)]
    pub limits: Option<serde_json::Map<String, Value>>,
    /// Port forwards on its connection (SSH sessions).
    #[serde(default)]
    pub forwards: usize,
}

/// A session's usage, as `ls` and `top` show it.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub struct Usage {
    /// Memory in use, in bytes.
    #[serde(default)]
    pub memory_bytes: u64,
    /// The most memory in use at once, in bytes.
    #[serde(default)]
    pub memory_peak_bytes: Option<u64>,
    /// CPU time so far, in milliseconds.
    #[serde(default)]
    pub cpu_ms: u64,
    /// CPU since the previous reading, in percent of one CPU.
    #[serde(default)]
    pub cpu_percent: u32,
    /// Processes now.
    #[serde(default)]
    pub processes: u32,
}

impl Session {
    /// True while its process runs.
    pub fn is_live(&self) -> bool {
        self.state != "stopped"
    }

    /// The type's `kind` (`local`, `ssh`, `serial`, ...).
    pub fn kind(&self) -> &str {
        self.session_type
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or("?")
    }

    /// The first eight characters of the id, as `ls` shows it.
    pub fn short_id(&self) -> String {
        self.id.simple().to_string()[..8].to_owned()
    }
}

/// A JSON object of parameters.
pub type Params = Map<String, Value>;

/// Calls `method` with `params` and returns the raw JSON result; a failure says it happened
/// `doing` (e.g. `create session build`).
pub async fn call(
    client: &PulsarClient,
    method: &str,
    params: Params,
    doing: &str,
) -> Result<Value> {
    client
        .request::<Value, _>(method, params)
        .await
        .map_err(|err| Failure::rpc(doing, err))
}

/// Every session, oldest first, as raw JSON objects (for `ls --json`) and parsed.
pub async fn list_sessions(client: &PulsarClient) -> Result<Vec<(Value, Session)>> {
    let result = client
        .request::<Value, _>(method::LIST_SESSIONS, Params::new())
        .await
        .map_err(|err| Failure::rpc("list sessions", err))?;
    let sessions = match result.get("sessions") {
        Some(Value::Array(sessions)) => sessions.clone(),
        _ => {
            return Err(Failure::error(format!(
                "list sessions: unexpected answer from the daemon: {result}"
            )));
        }
    };
    sessions
        .into_iter()
        .map(|raw| {
            let parsed = serde_json::from_value(raw.clone()).map_err(|err| {
                Failure::error(format!(
                    "list sessions: cannot read the daemon's answer ({err}): {raw}"
                ))
            })?;
            Ok((raw, parsed))
        })
        .collect()
}
