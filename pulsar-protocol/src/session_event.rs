//! Events of the daemon-wide stream (`subscribe_events`), sent as `event` notifications:
//! what a desktop needs to say "build finished with code 0" or "session 3 rang the bell".

use serde::{Deserialize, Serialize};

use crate::{SessionId, TransferId, TransferState};

/// One event of the daemon-wide stream. Serialised with a `type` tag:
/// `{"type":"bell","session_id":"..."}`. Kinds only ever get added: a kind this build does
/// not know reads as [`SessionEvent::Unknown`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SessionEvent {
    /// A session was created (`create_session`).
    SessionCreated {
        /// The session.
        session_id: SessionId,
        /// Its name.
        name: String,
    },
    /// A client attached (or re-attached) to a session.
    SessionAttached {
        /// The session.
        session_id: SessionId,
        /// The client.
        client_id: String,
        /// Attached read-only.
        read_only: bool,
    },
    /// A client detached (or its connection closed).
    SessionDetached {
        /// The session.
        session_id: SessionId,
        /// The client.
        client_id: String,
        /// It was attached read-only.
        read_only: bool,
    },
    /// A session's terminal size changed.
    SessionResized {
        /// The session.
        session_id: SessionId,
        /// New width.
        cols: u16,
        /// New height.
        rows: u16,
    },
    /// A session's program ended (after its last output).
    SessionExited {
        /// The session.
        session_id: SessionId,
        /// Exit code, when it exited normally.
        code: Option<i32>,
        /// Signal number, when a signal killed it.
        signal: Option<i32>,
        /// Why, when the code and signal cannot say (a vanished device, a lost connection).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// A session rang the bell (BEL) while no client was attached.
    Bell {
        /// The session.
        session_id: SessionId,
    },
    /// A session's program set the window title (OSC 0 or 2) to something new.
    Title {
        /// The session.
        session_id: SessionId,
        /// The title.
        title: String,
    },
    /// A command finished, as marked by shell integration (OSC 133 `C` then `D;exit`).
    CommandFinished {
        /// The session.
        session_id: SessionId,
        /// The command line as typed (the text between the `B` and `C` marks), when marked.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        command_line: Option<String>,
        /// Its exit code, when the `D` mark carried one.
        exit_code: Option<i32>,
        /// From `C` (the command started) to `D` (it finished), in milliseconds.
        duration_ms: u64,
    },
    /// An SSH session's connection dropped and is being re-established (`ssh_reconnect`);
    /// the session goes on. Without `ssh_reconnect` a drop ends the session instead.
    SshDisconnected {
        /// The session.
        session_id: SessionId,
        /// Why it dropped.
        cause: String,
    },
    /// An SSH session's dropped connection is back.
    SshReconnected {
        /// The session.
        session_id: SessionId,
    },
    /// A serial session's device vanished (unplugged, hung up) and, with `serial_reopen`,
    /// is waited for; the session goes on.
    SerialVanished {
        /// The session.
        session_id: SessionId,
        /// How it vanished.
        cause: String,
    },
    /// A serial session's vanished device is back and open again.
    SerialReopened {
        /// The session.
        session_id: SessionId,
    },
    /// A session began recording to an asciicast file (`start_recording`, `record_sessions`).
    RecordingStarted {
        /// The session.
        session_id: SessionId,
        /// The file.
        path: String,
    },
    /// A session's recording ended: asked for, the session ended, the size cap was reached,
    /// the disk could not keep up, or writing failed; `reason` says which.
    RecordingStopped {
        /// The session.
        session_id: SessionId,
        /// The file.
        path: String,
        /// Why, in words.
        reason: String,
    },
    /// A transfer's progress, at most about four times a second while bytes move.
    TransferProgress {
        /// The session whose connection carries it.
        session_id: SessionId,
        /// The transfer.
        transfer_id: TransferId,
        /// Bytes copied so far.
        bytes: u64,
        /// The source's size.
        total: u64,
        /// Bytes per second over the last interval.
        rate: u64,
    },
    /// A transfer ended: `done`, `failed` (with `error`) or `cancelled`.
    TransferFinished {
        /// The session whose connection carried it.
        session_id: SessionId,
        /// The transfer.
        transfer_id: TransferId,
        /// How it ended.
        state: TransferState,
        /// Why it failed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// This subscriber fell behind and `missed` events were dropped for it; the stream goes
    /// on with the newest.
    Lagged {
        /// How many events it did not get.
        missed: u64,
    },
    /// An event kind this build does not know (sent by a newer daemon).
    #[serde(other)]
    Unknown,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_kinds_and_fields_from_a_newer_daemon_still_read() {
        let unknown: SessionEvent =
            serde_json::from_str(r#"{"type":"printer_on_fire","session_id":"x"}"#).unwrap();
        assert_eq!(unknown, SessionEvent::Unknown);
        let bell: SessionEvent = serde_json::from_str(
            r#"{"type":"bell","session_id":"5f0c4f5e-1f43-4a4e-9d55-0d8e7e5b2c11","extra":1}"#,
        )
        .unwrap();
        assert!(matches!(bell, SessionEvent::Bell { .. }));
    }
}
