//! Sessions on the wire: what a client asks to create, and what the daemon reports.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use uuid::Uuid;

use crate::{AppliedLimits, Base64Data, SessionUsage};

/// Sessions are addressed by a v4 UUID, written in its hyphenated form.
pub type SessionId = Uuid;

/// What kind of session to run, and how. Serialised with a `kind` tag:
/// `{"kind":"local","command":["bash","-l"],"cwd":"/tmp","env":{"A":"1"}}`.
///
/// For the upstream desktop client, deserialisation also accepts the bare string `"Local"` and
/// the externally tagged `{"Local":{...}}` (and likewise `{"Serial":{"device":"/dev/ttyUSB0"}}`
/// and `{"Ssh":{"host":"example.org","port":22}}`).
///
/// An SSH type may carry secrets (a password, a key passphrase): report and store only
/// [`SessionType::redacted`] copies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum SessionType {
    /// A local program in a pseudo-terminal.
    Local(LocalSpec),
    /// A serial port: `{"kind":"serial","device":"/dev/ttyUSB0","baud":9600}`.
    Serial(SerialSpec),
    /// An SSH shell (or command) on another host, owned by the daemon:
    /// `{"kind":"ssh","host":"build.example.org","user":"ci"}`.
    ///
    /// Boxed: an SSH spec is 184 bytes, a local one 72, and a daemon keeps one type per
    /// session, most of them local.
    Ssh(Box<SshSpec>),
}

/// How to start a local session.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalSpec {
    /// Program and arguments; default: the user's login shell (`$SHELL`, else the passwd
    /// entry, else `/bin/sh`), started as a login shell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Working directory; default: the user's home directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<PathBuf>,
    /// Variables added to (or overriding) the daemon's environment. `TERM` defaults to
    /// `xterm-256color`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
}

/// How to open a serial session. Settings left out take the usual defaults: 115200 baud,
/// 8 data bits, no parity, 1 stop bit, no flow control (115200 8N1).
///
/// The settings are plain numbers and strings on the wire, checked by the daemon when it opens
/// the device, so that a bad value is answered with an invalid-params error naming the field
/// (`type.baud`, `type.parity`, ...). `None` means "the default" and is not serialised, so a
/// session's `type` reads back as it was given.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SerialSpec {
    /// The device to open, e.g. `/dev/ttyUSB0` or a stable `/dev/serial/by-id/...` link. It is
    /// opened for exclusive use: another program (or session) cannot open it meanwhile.
    pub device: PathBuf,
    /// Line speed in bits per second, 50..=12000000; default 115200.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baud: Option<u32>,
    /// Bits per character: 5, 6, 7 or 8; default 8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_bits: Option<u8>,
    /// `"none"`, `"odd"` or `"even"`; default `"none"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parity: Option<String>,
    /// 1 or 2; default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_bits: Option<u8>,
    /// `"none"`, `"software"` (XON/XOFF) or `"hardware"` (RTS/CTS); default `"none"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow_control: Option<String>,
}

/// How to open an SSH session. Everything but `host` has a default.
///
/// Host keys are checked against `known_hosts` (OpenSSH's format, hashed entries included): an
/// unknown host is refused unless `accept_new_host_key` (or the daemon's config) allows it, and
/// a changed key is always refused.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SshSpec {
    /// Host name or address to connect to.
    pub host: String,
    /// TCP port; default 22.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Remote user; default: the name of the user the daemon runs as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Command line run by the remote user's shell (an SSH `exec` request); default: an
    /// interactive login shell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// How to authenticate; default: the agent, then the usual key files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<SshAuth>,
    /// Accept (and append to `known_hosts`) the key of a host not yet known, as OpenSSH's
    /// `StrictHostKeyChecking=accept-new`. Default: the daemon's `ssh_accept_new_host_keys`
    /// (false). A *changed* key is refused whatever this says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accept_new_host_key: Option<bool>,
    /// The known-hosts file to check host keys against (and append new ones to); default:
    /// the daemon's `ssh_known_hosts` (`~/.ssh/known_hosts`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known_hosts: Option<PathBuf>,
}

/// How an SSH session authenticates. Methods are tried in this order, each only when it
/// applies: the SSH agent (`SSH_AUTH_SOCK`), the key files, the password.
///
/// `password` and `passphrase` are secrets: the daemon keeps them in memory only, never logs
/// or stores them, and reports sessions with them removed ([`SessionType::redacted`]). Their
/// `Debug` output is masked too.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SshAuth {
    /// Whether to ask the SSH agent at `SSH_AUTH_SOCK` (the daemon's environment); default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<bool>,
    /// Private key files to try, in order; default: the daemon's `ssh_key_files`, else
    /// `~/.ssh/id_ed25519`, `~/.ssh/id_ecdsa`, `~/.ssh/id_rsa` (those that exist).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key_files: Vec<PathBuf>,
    /// Secret: decrypts encrypted key files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passphrase: Option<String>,
    /// Secret: the password, tried after the keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

impl std::fmt::Debug for SshAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let masked = |secret: &Option<String>| secret.as_ref().map(|_| "<redacted>");
        f.debug_struct("SshAuth")
            .field("agent", &self.agent)
            .field("key_files", &self.key_files)
            .field("passphrase", &masked(&self.passphrase))
            .field("password", &masked(&self.password))
            .finish()
    }
}

/// How the daemon resolved an SSH session's destination, OpenSSH's configuration
/// (`~/.ssh/config`) applied under the request's own fields: where it connects, as whom, with
/// which key files, through which jump hosts, and what in the file it did not apply. Never a
/// secret.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SshResolved {
    /// The host connected to (the configuration's `HostName`, else `type.host`).
    pub host: String,
    /// The port connected to.
    pub port: u16,
    /// The remote user.
    pub user: String,
    /// The key files tried after the agent, in order.
    #[serde(default)]
    pub identity_files: Vec<PathBuf>,
    /// The jump hosts, first hop first, each as `user@host:port`; empty for a direct
    /// connection.
    #[serde(default)]
    pub proxy_jump: Vec<String>,
    /// The OpenSSH configuration file read, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_file: Option<PathBuf>,
    /// Options present for this host (or a jump host) in the configuration that the daemon
    /// did not apply, each named.
    #[serde(default)]
    pub warnings: Vec<String>,
}

impl SshAuth {
    /// True when a password or passphrase is present.
    pub fn has_secrets(&self) -> bool {
        self.password.is_some() || self.passphrase.is_some()
    }
}

impl SessionType {
    /// The `kind` tag: `local`, `serial` or `ssh`.
    pub fn kind(&self) -> &'static str {
        match self {
            SessionType::Local(_) => "local",
            SessionType::Serial(_) => "serial",
            SessionType::Ssh(_) => "ssh",
        }
    }

    /// A copy without secrets: an SSH type's `auth.password` and `auth.passphrase` are
    /// removed (an `auth` left empty is removed too). This is the only form of a type that may
    /// leave the daemon's memory: `list_sessions`/`get_session` answers, logs, the store.
    pub fn redacted(&self) -> SessionType {
        match self {
            SessionType::Ssh(spec) => {
                let auth = spec.auth.as_ref().map(|auth| SshAuth {
                    passphrase: None,
                    password: None,
                    ..auth.clone()
                });
                SessionType::Ssh(Box::new(SshSpec {
                    auth: auth.filter(|a| *a != SshAuth::default()),
                    ..(**spec).clone()
                }))
            }
            other => other.clone(),
        }
    }
}

/// The fields each kind knows, for refusing misspelt ones in requests.
const LOCAL_FIELDS: &[&str] = &["command", "cwd", "env"];
const SERIAL_FIELDS: &[&str] = &[
    "device",
    "baud",
    "data_bits",
    "parity",
    "stop_bits",
    "flow_control",
];
const SSH_FIELDS: &[&str] = &[
    "host",
    "port",
    "user",
    "command",
    "auth",
    "accept_new_host_key",
    "known_hosts",
];
const SSH_AUTH_FIELDS: &[&str] = &["agent", "key_files", "passphrase", "password"];

/// The first key of `body` not in `known`, as serde words it.
fn unknown_field(body: &serde_json::Value, known: &[&str]) -> Option<String> {
    let map = body.as_object()?;
    let unknown = map.keys().find(|key| !known.contains(&key.as_str()))?;
    let expected: Vec<String> = known.iter().map(|k| format!("`{k}`")).collect();
    Some(format!(
        "unknown field `{unknown}`, expected one of {}",
        expected.join(", ")
    ))
}

/// Refuses a field the kind does not know: a request with a misspelt field must fail, naming
/// it, instead of silently taking a default.
fn check_fields(kind: &str, body: &serde_json::Value) -> Result<(), String> {
    let known = match kind {
        "local" => LOCAL_FIELDS,
        "serial" => SERIAL_FIELDS,
        "ssh" => SSH_FIELDS,
        _ => return Ok(()),
    };
    if let Some(err) = unknown_field(body, known) {
        return Err(err);
    }
    if kind == "ssh"
        && let Some(auth) = body.get("auth")
        && let Some(err) = unknown_field(auth, SSH_AUTH_FIELDS)
    {
        return Err(format!("auth: {err}"));
    }
    Ok(())
}

impl SessionType {
    /// Reads a type the way a client reading the daemon's answers should: fields this
    /// version does not know (added by a newer daemon) are ignored, not an error. Requests
    /// are read strictly ([`Deserialize`]), so a misspelt field is refused by name.
    pub fn deserialize_lenient<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Self, D::Error> {
        Self::deserialize_with(deserializer, false)
    }

    fn deserialize_with<'de, D: Deserializer<'de>>(
        deserializer: D,
        strict: bool,
    ) -> Result<Self, D::Error> {
        use serde::de::Error;
        use serde_json::Value;

        let value = Value::deserialize(deserializer)?;
        let (kind, body) = match value {
            Value::String(kind) => (kind, Value::Object(Default::default())),
            Value::Object(mut map) => match map.remove("kind") {
                Some(Value::String(kind)) => (kind, Value::Object(map)),
                Some(other) => {
                    return Err(D::Error::custom(format!(
                        "type.kind must be a string, got {other}"
                    )));
                }
                // The upstream, externally tagged shape: {"Local": {...}}.
                None if map.len() == 1 => {
                    let (kind, body) = map.into_iter().next().expect("one entry");
                    let body = if body.is_null() {
                        Value::Object(Default::default())
                    } else {
                        body
                    };
                    (kind, body)
                }
                None => return Err(D::Error::custom("type needs a `kind` (e.g. \"local\")")),
            },
            other => {
                return Err(D::Error::custom(format!(
                    "type must be an object like {{\"kind\":\"local\"}}, got {other}"
                )));
            }
        };
        let kind_lower = kind.to_ascii_lowercase();
        if strict && let Err(err) = check_fields(&kind_lower, &body) {
            return Err(D::Error::custom(format!("type ({kind_lower}): {err}")));
        }
        match kind_lower.as_str() {
            "local" => serde_json::from_value(body)
                .map(SessionType::Local)
                .map_err(|err| D::Error::custom(format!("type (local): {err}"))),
            "serial" => serde_json::from_value(body)
                .map(SessionType::Serial)
                .map_err(|err| D::Error::custom(format!("type (serial): {err}"))),
            "ssh" => serde_json::from_value(body)
                .map(|spec| SessionType::Ssh(Box::new(spec)))
                .map_err(|err| D::Error::custom(format!("type (ssh): {err}"))),
            _ => Err(D::Error::custom(format!(
                "unknown session type `{kind}`; expected `local`, `serial` or `ssh`"
            ))),
        }
    }
}

impl<'de> Deserialize<'de> for SessionType {
    /// Strict: a field the kind does not know is an error naming it (requests).
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Self::deserialize_with(deserializer, true)
    }
}

/// A session's life, as clients see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    /// The process is alive and at least one client is attached.
    Running,
    /// The process is alive and no client is attached.
    Detached,
    /// The process has exited; `exit_code`/`exit_signal` say how. History stays readable.
    Stopped,
}

/// How an attached client may use the session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ClientMode {
    /// May read, type and resize.
    #[default]
    Interactive,
    /// May only read: `send_input` and `resize_terminal` are refused with code 1007, and the
    /// client never affects the terminal size.
    ReadOnly,
}

/// How the terminal size follows several interactive clients' sizes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResizePolicy {
    /// The most recent `resize_terminal` wins (as tmux does).
    #[default]
    Latest,
    /// The smallest width and height any attached interactive client asked for.
    Smallest,
    /// The largest width and height any attached interactive client asked for.
    Largest,
}

/// Bytes that redraw a session's current screen on a blank terminal of the same size:
/// contents, colours and attributes, cursor position and visibility, the alternate screen and
/// the input modes full-screen programs rely on (application cursor keys, bracketed paste,
/// mouse reporting). The live stream continues at `offset` with no gap and no duplicate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The redraw bytes (base64), preceded by `scrollback_lines` of history when asked.
    pub data: Base64Data,
    /// The output offset the snapshot corresponds to.
    pub offset: u64,
    /// Width the snapshot was drawn for.
    pub cols: u16,
    /// Height the snapshot was drawn for.
    pub rows: u16,
}

/// How `get_screen` renders rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScreenFormat {
    /// Plain text, trailing blanks trimmed.
    #[default]
    Text,
    /// Text with SGR escape sequences for colours and attributes.
    Ansi,
}

/// Where the cursor is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// Zero-based row.
    pub row: u16,
    /// Zero-based column.
    pub col: u16,
    /// False when the program hid it.
    pub visible: bool,
}

/// `get_screen`'s answer: the current screen, for tools and agents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScreenContents {
    /// One string per screen row, top to bottom.
    pub rows: Vec<String>,
    /// The cursor.
    pub cursor: Cursor,
    /// Screen width.
    pub cols: u16,
    /// True while a full-screen program uses the alternate screen.
    pub alternate_screen: bool,
    /// The output offset this screen corresponds to.
    pub offset: u64,
}

/// What the daemon reports about a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// The session's id.
    pub id: SessionId,
    /// Its unique name.
    pub name: String,
    /// What runs in it. Read leniently: a newer daemon may report fields this version
    /// does not know.
    #[serde(rename = "type", deserialize_with = "SessionType::deserialize_lenient")]
    pub session_type: SessionType,
    /// Derived from the process and the attached clients.
    pub state: SessionState,
    /// Clients attached now.
    pub num_clients: usize,
    /// Terminal width.
    pub cols: u16,
    /// Terminal height.
    pub rows: u16,
    /// How the size follows several clients.
    #[serde(default)]
    pub resize_policy: ResizePolicy,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// The last input, output, attach or resize.
    pub last_active: DateTime<Utc>,
    /// The process id while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// Exit code once stopped by a normal exit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Signal number once stopped by a signal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_signal: Option<i32>,
    /// When the process ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exited_at: Option<DateTime<Utc>>,
    /// Once stopped, why, when the exit code and signal do not say: e.g. a serial session's
    /// `"device vanished: ..."`. Absent for a process that exited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Absolute offset one past the last output byte.
    pub output_offset: u64,
    /// An SSH session's resolved destination (host, port, user, keys, jump hosts, the
    /// OpenSSH configuration file and its warnings); absent for other kinds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh: Option<SshResolved>,
    /// The recording in progress, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording: Option<RecordingInfo>,
    /// The limits it runs under, each with the mechanism holding it; absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<AppliedLimits>,
    /// What it uses now, while a local program runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<SessionUsage>,
    /// Port forwards on the session's connection (SSH sessions; see `list_forwards`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub forwards: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// A recording in progress (`get_session`'s `recording`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordingInfo {
    /// The asciicast v2 file.
    pub path: String,
    /// Bytes written to it so far.
    pub bytes: u64,
    /// Whether input is recorded too (`"i"` events).
    pub input: bool,
}

/// `export_asciicast`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AsciicastExport {
    /// The asciicast v2 text: a header line, then one event a line.
    pub cast: String,
}

/// `start_recording`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordingStarted {
    /// The file being written.
    pub path: String,
}

/// `create_session`'s answer: the new id, and the session's info alongside.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateSessionResult {
    /// The new session's id (also `id` below, kept for the upstream client).
    pub session_id: SessionId,
    /// The session.
    #[serde(flatten)]
    pub session: SessionInfo,
}

/// `attach_session`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachResult {
    /// The id this client is registered under; pass it back to `detach_session`.
    pub client_id: String,
    /// The mode granted.
    pub mode: ClientMode,
    /// The current screen, to draw before applying the stream from `snapshot.offset`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<Snapshot>,
    /// The session.
    #[serde(flatten)]
    pub session: SessionInfo,
}

/// `list_sessions`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListSessionsResult {
    /// Every session, oldest first.
    pub sessions: Vec<SessionInfo>,
}

/// `send_input`'s answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendInputResult {
    /// Bytes written to the session (all of them, or an error is returned).
    pub bytes_written: usize,
}

/// `receive_output`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiveOutputResult {
    /// The bytes (base64).
    pub data: Base64Data,
    /// `data`'s length.
    pub bytes_read: usize,
    /// Absolute offset of `data[0]`.
    pub offset: u64,
    /// Where the next read continues (`offset + bytes_read`).
    pub next_offset: u64,
    /// True when bytes before `offset` that were asked for had already left the ring.
    pub truncated: bool,
}

/// The answer of methods with nothing else to say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Success {
    /// Always true; failures are JSON-RPC errors.
    pub success: bool,
}

impl Success {
    /// `{"success": true}`.
    pub const OK: Success = Success { success: true };
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kind_tagged_local_type_round_trips() {
        let ty = SessionType::Local(LocalSpec {
            command: Some(vec!["sh".into()]),
            cwd: Some("/tmp".into()),
            env: [("A".to_owned(), "1".to_owned())].into(),
        });
        let json = serde_json::to_value(&ty).unwrap();
        assert_eq!(json["kind"], "local");
        assert_eq!(serde_json::from_value::<SessionType>(json).unwrap(), ty);
    }

    #[test]
    fn upstream_bare_string_local_is_accepted() {
        let ty: SessionType = serde_json::from_value(json!("Local")).unwrap();
        assert_eq!(ty, SessionType::Local(LocalSpec::default()));
    }

    #[test]
    fn upstream_externally_tagged_local_is_accepted() {
        let ty: SessionType = serde_json::from_value(json!({"Local": {"cwd": "/"}})).unwrap();
        assert_eq!(
            ty,
            SessionType::Local(LocalSpec {
                cwd: Some("/".into()),
                ..Default::default()
            })
        );
    }

    #[test]
    fn misspelt_local_field_is_rejected_by_name() {
        let err = serde_json::from_value::<SessionType>(json!({"kind":"local","commnd":["x"]}))
            .unwrap_err();
        assert!(err.to_string().contains("commnd"), "{err}");
    }

    #[test]
    fn kind_tagged_serial_type_round_trips() {
        let ty = SessionType::Serial(SerialSpec {
            device: "/dev/ttyUSB0".into(),
            baud: Some(9600),
            data_bits: Some(7),
            parity: Some("even".into()),
            stop_bits: Some(2),
            flow_control: Some("hardware".into()),
        });
        let json = serde_json::to_value(&ty).unwrap();
        assert_eq!(
            json,
            json!({"kind": "serial", "device": "/dev/ttyUSB0", "baud": 9600, "data_bits": 7,
                   "parity": "even", "stop_bits": 2, "flow_control": "hardware"})
        );
        assert_eq!(serde_json::from_value::<SessionType>(json).unwrap(), ty);
    }

    #[test]
    fn serial_settings_left_out_are_not_serialised() {
        let ty: SessionType =
            serde_json::from_value(json!({"kind": "serial", "device": "/dev/ttyS0"})).unwrap();
        assert_eq!(
            ty,
            SessionType::Serial(SerialSpec {
                device: "/dev/ttyS0".into(),
                ..Default::default()
            })
        );
        assert_eq!(
            serde_json::to_value(&ty).unwrap(),
            json!({"kind": "serial", "device": "/dev/ttyS0"})
        );
    }

    #[test]
    fn upstream_externally_tagged_serial_is_accepted() {
        let ty: SessionType =
            serde_json::from_value(json!({"Serial": {"device": "/dev/ttyACM0"}})).unwrap();
        assert_eq!(
            ty,
            SessionType::Serial(SerialSpec {
                device: "/dev/ttyACM0".into(),
                ..Default::default()
            })
        );
    }

    #[test]
    fn serial_without_a_device_is_rejected_naming_it() {
        let err = serde_json::from_value::<SessionType>(json!("Serial")).unwrap_err();
        assert!(err.to_string().contains("device"), "{err}");
    }

    #[test]
    fn misspelt_serial_field_is_rejected_by_name() {
        let err = serde_json::from_value::<SessionType>(
            json!({"kind": "serial", "device": "/dev/ttyS0", "baudrate": 9600}),
        )
        .unwrap_err();
        assert!(err.to_string().contains("baudrate"), "{err}");
    }

    #[test]
    fn an_older_client_reads_answers_carrying_fields_it_does_not_know() {
        let newer = json!({
            "id": Uuid::nil(), "name": "n", "state": "detached", "num_clients": 0,
            "cols": 80, "rows": 24, "resize_policy": "latest",
            "created_at": "2026-01-01T00:00:00Z", "last_active": "2026-01-01T00:00:00Z",
            "output_offset": 0,
            "type": {"kind": "ssh", "host": "h", "resolved": {"proxy_jump": "j"},
                     "auth": {"agent": true, "certificate": "/c"}},
            "usage": {"memory_bytes": 1},
        });
        let info: SessionInfo = serde_json::from_value(newer).unwrap();
        assert_eq!(info.session_type.kind(), "ssh");
        let status: crate::Status = serde_json::from_value(json!({
            "version": "9", "uptime_seconds": 1, "num_sessions": 0, "num_clients": 0,
            "pid": 1, "supervisor": {"pid": 2},
            "database": {"path": "p", "schema_version": 9, "commits": 0, "writes": 0,
                         "write_p50_us": 0, "write_p99_us": 0, "commit_p50_us": 0,
                         "commit_p99_us": 0, "new_figure": 3}
        }))
        .unwrap();
        assert_eq!(status.pid, 1);
    }

    #[test]
    fn requests_stay_strict_about_unknown_type_fields() {
        let err =
            serde_json::from_value::<SessionType>(json!({"kind": "ssh", "host": "h", "hots": 1}))
                .unwrap_err();
        assert!(err.to_string().contains("hots"), "{err}");
    }

    #[test]
    fn session_info_reason_is_left_out_when_absent() {
        let info = SessionInfo {
            id: Uuid::nil(),
            name: "n".into(),
            session_type: SessionType::Local(LocalSpec::default()),
            state: SessionState::Stopped,
            num_clients: 0,
            cols: 80,
            rows: 24,
            resize_policy: ResizePolicy::Latest,
            created_at: DateTime::UNIX_EPOCH,
            last_active: DateTime::UNIX_EPOCH,
            pid: None,
            exit_code: None,
            exit_signal: None,
            exited_at: None,
            reason: None,
            output_offset: 0,
            ssh: None,
            recording: None,
            limits: None,
            usage: None,
            forwards: 0,
        };
        let json = serde_json::to_value(&info).unwrap();
        assert!(json.get("reason").is_none(), "{json}");
        let with_reason = SessionInfo {
            reason: Some("device vanished: /dev/ttyS0 (hang-up)".into()),
            ..info
        };
        let json = serde_json::to_value(&with_reason).unwrap();
        assert_eq!(json["reason"], "device vanished: /dev/ttyS0 (hang-up)");
        assert_eq!(
            serde_json::from_value::<SessionInfo>(json).unwrap(),
            with_reason
        );
    }

    #[test]
    fn kind_tagged_ssh_type_round_trips() {
        let json = json!({"kind": "ssh", "host": "example.org", "port": 2222, "user": "ci",
                          "command": "make test", "accept_new_host_key": true,
                          "known_hosts": "/tmp/kh", "auth": {"agent": false,
                          "key_files": ["/k"], "passphrase": "pp", "password": "pw"}});
        let ty: SessionType = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(ty.kind(), "ssh");
        assert_eq!(serde_json::to_value(&ty).unwrap(), json);
    }

    #[test]
    fn upstream_externally_tagged_ssh_takes_the_defaults() {
        let ty: SessionType =
            serde_json::from_value(json!({"Ssh": {"host": "h", "port": 22}})).unwrap();
        assert_eq!(
            ty,
            SessionType::Ssh(Box::new(SshSpec {
                host: "h".into(),
                port: Some(22),
                ..Default::default()
            }))
        );
    }

    #[test]
    fn misspelt_ssh_auth_field_is_rejected_by_name() {
        let err = serde_json::from_value::<SessionType>(
            json!({"kind": "ssh", "host": "h", "auth": {"pasword": "x"}}),
        )
        .unwrap_err();
        assert!(err.to_string().contains("pasword"), "{err}");
    }

    #[test]
    fn redacted_ssh_type_has_no_secrets_and_keeps_the_rest() {
        let ty: SessionType = serde_json::from_value(json!({"kind": "ssh", "host": "h",
            "auth": {"key_files": ["/k"], "passphrase": "hunter2", "password": "sw0rdfish"}}))
        .unwrap();
        let shown = serde_json::to_string(&ty.redacted()).unwrap();
        assert!(
            !shown.contains("hunter2") && !shown.contains("sw0rdfish"),
            "{shown}"
        );
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&shown).unwrap(),
            json!({"kind": "ssh", "host": "h", "auth": {"key_files": ["/k"]}})
        );
        let only_secrets: SessionType = serde_json::from_value(
            json!({"kind": "ssh", "host": "h", "auth": {"password": "sw0rdfish"}}),
        )
        .unwrap();
        assert_eq!(
            serde_json::to_value(only_secrets.redacted()).unwrap(),
            json!({"kind": "ssh", "host": "h"})
        );
        let debug = format!("{ty:?}");
        assert!(
            !debug.contains("hunter2") && !debug.contains("sw0rdfish"),
            "{debug}"
        );
    }

    #[test]
    fn redacting_other_types_changes_nothing() {
        let ty = SessionType::Local(LocalSpec::default());
        assert_eq!(ty.redacted(), ty);
    }

    #[test]
    fn unknown_kind_is_rejected_by_name() {
        let err = serde_json::from_value::<SessionType>(json!({"kind":"telnet"})).unwrap_err();
        assert!(err.to_string().contains("telnet"), "{err}");
    }
}
