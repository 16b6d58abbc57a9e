//! Error codes the daemon answers with, beyond JSON-RPC's own.
//!
//! Every error's `data`, when present, is an object naming what it concerns
//! (`session_id`, `field`, `limit`, ...). `docs/protocol.md` has the table.

/// JSON-RPC: the request was not valid JSON.
pub const PARSE_ERROR: i32 = -32700;
/// JSON-RPC: the JSON was not a valid request object.
pub const INVALID_REQUEST: i32 = -32600;
/// JSON-RPC: no such method.
pub const METHOD_NOT_FOUND: i32 = -32601;
/// JSON-RPC: a parameter is missing or invalid; `data.field` names it when known.
pub const INVALID_PARAMS: i32 = -32602;
/// JSON-RPC: the daemon failed internally.
pub const INTERNAL_ERROR: i32 = -32603;
/// The request was larger than the daemon accepts.
pub const OVERSIZED_REQUEST: i32 = -32007;

/// No session with that id (the upstream client's code).
pub const SESSION_NOT_FOUND: i32 = 1001;
/// A session with that name already exists (the upstream client's code).
pub const SESSION_EXISTS: i32 = 1002;
/// The session is in a state that does not allow the request (e.g. input to a stopped one).
pub const INVALID_STATE: i32 = 1003;
/// A configured limit was reached; `data.limit` names it.
pub const LIMIT_REACHED: i32 = 1004;
/// The session's backend (PTY, process) failed; the message has the cause.
pub const BACKEND_ERROR: i32 = 1005;
/// No client with that id is attached to the session.
pub const CLIENT_NOT_ATTACHED: i32 = 1006;
/// The client is attached read-only and may not type or resize.
pub const READ_ONLY: i32 = 1007;
/// The serial device named in `create_session` does not exist; `data.device` names it.
pub const DEVICE_NOT_FOUND: i32 = 1008;
/// The daemon's user may not open the serial device; `data.device` names it. Usually fixed by
/// adding the user to the device's group (`dialout`, `uucp`) or a udev rule.
pub const DEVICE_PERMISSION_DENIED: i32 = 1009;
/// SSH: the host refused the TCP connection (nothing listens on the port); `data` has `host`,
/// `port` and `name`.
pub const SSH_CONNECTION_REFUSED: i32 = 1010;
/// SSH: connecting (TCP, key exchange, authentication and opening the shell) took longer than
/// the daemon's `ssh_connect_timeout_ms`.
pub const SSH_TIMEOUT: i32 = 1011;
/// SSH: the host name could not be resolved.
pub const SSH_HOST_NOT_FOUND: i32 = 1012;
/// SSH: every authentication method was refused; `data.tried` lists the methods tried (never
/// a secret).
pub const SSH_AUTH_FAILED: i32 = 1013;
/// SSH: the host's key is not in `known_hosts`; `data` has `fingerprint` (`SHA256:...`),
/// `key_type` and `known_hosts`. Retry with `accept_new_host_key: true` once the fingerprint is
/// verified.
pub const SSH_UNKNOWN_HOST_KEY: i32 = 1014;
/// SSH: the host's key differs from the one in `known_hosts` (possible man-in-the-middle);
/// always refused. `data` has both fingerprints and the `known_hosts` file and line.
pub const SSH_HOST_KEY_CHANGED: i32 = 1015;
/// SSH: the connection failed otherwise (network unreachable, reset, protocol error, or the
/// server refused the terminal or the shell); the message has the cause.
pub const SSH_CONNECTION_FAILED: i32 = 1016;
/// SSH: the OpenSSH client configuration (`ssh_config`, `~/.ssh/config`) cannot be read or
/// has a bad line (a bad value, a bad `ProxyJump` hop); `data` has `config_file`, the message
/// the cause. As ssh(1), the daemon does not connect with a configuration it cannot read.
pub const SSH_CONFIG_INVALID: i32 = 1033;
/// No workspace with that id (`workspace_save_snapshot`, `workspace_list_snapshots`); `data`
/// has `workspace_id`.
pub const WORKSPACE_NOT_FOUND: i32 = 1021;
/// The daemon is stopping: it takes no new sessions. Retry against the next daemon.
pub const DAEMON_STOPPING: i32 = 1020;
/// `upgrade_daemon` could not replace the daemon (the binary is missing, not executable,
/// exited, timed out or speaks another hand-over version; or upgrades are not available
/// inside an Orbit host); the message says why, and the daemon serves on.
pub const UPGRADE_FAILED: i32 = 1022;
/// `wait_for_output`: the pattern did not match within `timeout_ms`; `data` has
/// `session_id`, `timeout_ms` and `offset` (how far the output was read).
pub const WAIT_TIMEOUT: i32 = 1023;
/// `start_recording`: the session is recording already; `data` has `session_id` and `path`.
pub const RECORDING_ACTIVE: i32 = 1030;
/// `stop_recording`: the session is not recording; `data` has `session_id`.
pub const NOT_RECORDING: i32 = 1031;
/// `start_recording`: the recording file could not be created (it exists, its directory is
/// missing or not writable, the path is not absolute); `data` has `session_id` and `path`.
pub const RECORDING_FILE_FAILED: i32 = 1032;
/// `create_session`: a limit the session's kind cannot take (an SSH or serial session takes
/// only `output_bytes_per_sec`: the far end is out of the daemon's reach); `data` has `field`
/// and `kind`.
pub const LIMIT_NOT_APPLICABLE: i32 = 1028;
/// `create_session`: no mechanism on this machine can hold a limit asked for (no writable
/// control group for it, and no resource limit or nice value that would do), or setting it
/// up failed; `data` has `field` and the message says what was tried.
pub const LIMIT_UNAVAILABLE: i32 = 1029;
/// A forward's listening address is already in use (`add_forward`, `create_session`'s
/// `forwards`); `data` has `session_id` and `listen`.
pub const FORWARD_ADDRESS_IN_USE: i32 = 1024;
/// The SSH server refused to listen for a remote forward (`tcpip-forward`: forwarding
/// disabled, a privileged port, the port taken on the server); `data` has `session_id` and
/// `listen`.
pub const FORWARD_REFUSED: i32 = 1025;
/// The session cannot carry port forwards: it is not an SSH session; `data` has `session_id`.
pub const FORWARD_NOT_SUPPORTED: i32 = 1026;
/// No forward with that id; `data` has `forward_id`.
pub const FORWARD_NOT_FOUND: i32 = 1027;
/// No transfer with that id (`get_transfer`, `cancel_transfer`); `data` has `transfer_id`.
pub const TRANSFER_NOT_FOUND: i32 = 1036;
/// `start_transfer`: the destination exists and `overwrite` was not asked for; `data` has
/// `session_id` and `path`.
pub const TRANSFER_DESTINATION_EXISTS: i32 = 1037;
/// `start_transfer` could not start: the session is not SSH (`data.session_id`, `data.kind`),
/// its connection has no SFTP, or the source cannot be read (the message names the session
/// and the cause).
pub const TRANSFER_FAILED: i32 = 1038;
