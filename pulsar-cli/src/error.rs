//! What can go wrong in a verb, and the exit code each failure maps to. Every message names
//! the session (when there is one) and the cause; `main` prints it after `pulsar: `.

use std::fmt;
use std::process::ExitCode;

use jsonrpsee::core::client::Error as RpcError;
use pulsar_protocol::error as code;

/// The documented exit codes (`docs/cli.md`, `pulsar --help`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Everything worked (also: detached, or the attached session exited).
    Ok = 0,
    /// The daemon refused the request, or something else failed.
    Error = 1,
    /// Bad command line (clap's own usage errors use 2 as well).
    Usage = 2,
    /// No daemon answers on the socket, or the connection to it was lost.
    NoDaemon = 3,
    /// No session has that name or id prefix, or the prefix matches several.
    NotFound = 4,
    /// `wait` (or `send --wait`): the pattern did not match in time.
    TimedOut = 5,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit as u8)
    }
}

/// A failed verb: the message for the user and the exit code.
#[derive(Debug)]
pub struct Failure {
    /// How the process exits.
    pub exit: Exit,
    /// One or more lines, without the `pulsar: ` prefix.
    pub message: String,
}

impl Failure {
    /// A failure with exit code `exit`.
    pub fn new(exit: Exit, message: impl Into<String>) -> Self {
        Self {
            exit,
            message: message.into(),
        }
    }

    /// A general error (exit 1).
    pub fn error(message: impl Into<String>) -> Self {
        Self::new(Exit::Error, message)
    }

    /// A usage error (exit 2).
    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(Exit::Usage, message)
    }

    /// A failed call to the daemon, described as `doing` (e.g. `kill demo`). JSON-RPC errors
    /// keep the daemon's message; "no such session" exits 4, a lost connection 3.
    pub fn rpc(doing: &str, err: RpcError) -> Self {
        match err {
            RpcError::Call(obj) => {
                let exit = if obj.code() == code::SESSION_NOT_FOUND {
                    Exit::NotFound
                } else {
                    Exit::Error
                };
                Self::new(exit, format!("{doing}: {}", describe_call_error(&obj)))
            }
            RpcError::RestartNeeded(_) | RpcError::Transport(_) => Self::new(
                Exit::NoDaemon,
                format!("{doing}: lost connection to the daemon"),
            ),
            RpcError::RequestTimeout => {
                Self::error(format!("{doing}: the daemon did not answer in time"))
            }
            other => Self::error(format!("{doing}: {other}")),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// The daemon's message, with `data` when that is a text saying more (as parameter errors
/// carry the parser's explanation, e.g. "session type `ssh` is not available ...").
fn describe_call_error(obj: &jsonrpsee::types::ErrorObjectOwned) -> String {
    let detail = obj
        .data()
        .and_then(|raw| serde_json::from_str::<String>(raw.get()).ok())
        .map(|text| strip_parser_position(&text).to_owned());
    match detail {
        Some(detail) if !detail.is_empty() => format!("{}: {detail}", obj.message()),
        _ => obj.message().to_owned(),
    }
}

/// `"... at line 1 column 55"` without the position, which means nothing to a user.
fn strip_parser_position(text: &str) -> &str {
    match text.rfind(" at line ") {
        Some(at)
            if text[at + 9..]
                .split_once(" column ")
                .is_some_and(|(line, col)| {
                    line.chars().all(|c| c.is_ascii_digit())
                        && col.chars().all(|c| c.is_ascii_digit())
                }) =>
        {
            &text[..at]
        }
        _ => text,
    }
}

/// The JSON-RPC error code of `err`, when the daemon answered with one.
pub fn rpc_code(err: &RpcError) -> Option<i32> {
    match err {
        RpcError::Call(obj) => Some(obj.code()),
        _ => None,
    }
}

/// True when `err` means the connection to the daemon is gone.
pub fn is_lost_connection(err: &RpcError) -> bool {
    matches!(err, RpcError::RestartNeeded(_) | RpcError::Transport(_))
}

/// What verbs return.
pub type Result<T, E = Failure> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use jsonrpsee::types::ErrorObject;

    #[test]
    fn a_text_detail_of_the_daemon_is_shown_without_the_parser_position() {
        let obj = ErrorObject::owned(
            code::INVALID_PARAMS,
            "Invalid params",
            Some(
                "session type `ssh` is not available in this version of Pulsar at line 1 column 55",
            ),
        );
        let failure = Failure::rpc("create session x", RpcError::Call(obj));
        assert_eq!(failure.exit, Exit::Error);
        assert_eq!(
            failure.message,
            "create session x: Invalid params: session type `ssh` is not available in this version of Pulsar"
        );
    }

    #[test]
    fn an_unknown_session_exits_4() {
        let obj = ErrorObject::owned(code::SESSION_NOT_FOUND, "session not found", None::<()>);
        assert_eq!(
            Failure::rpc("kill x", RpcError::Call(obj)).exit,
            Exit::NotFound
        );
    }
}
