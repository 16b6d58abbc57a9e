//! What clients see of a session: its info, a snapshot that redraws it, its screen as text.
//! Builders of the protocol's views, kept apart from the session's mechanics.

use chrono::DateTime;
use pulsar_protocol::{
    AppliedLimits, Cursor, HeldLimit, LimitMechanism, RecordingInfo, ScreenContents, SessionInfo,
    Snapshot,
};

use super::Session;

impl Session {
    /// The wire view of this session.
    pub fn info(&self) -> SessionInfo {
        let clients = self.clients();
        let exit = self.exit();
        let (cols, rows) = clients.size();
        // One backend for the whole view: a stopped session's is swapped for a stand-in.
        let backend = self.backend();
        SessionInfo {
            id: self.id(),
            name: self.name().to_owned(),
            // Secrets (SSH passwords, passphrases) never leave the daemon's memory.
            session_type: self.session_type().redacted(),
            state: self.state_with(&clients),
            num_clients: clients.len(),
            cols,
            rows,
            resize_policy: clients.policy(),
            created_at: self.created_at(),
            last_active: DateTime::from_timestamp_millis(self.last_active_ms())
                .unwrap_or(self.created_at()),
            pid: exit.is_none().then(|| backend.pid()).flatten(),
            exit_code: exit.and_then(|e| e.status.code),
            exit_signal: exit.and_then(|e| e.status.signal),
            exited_at: exit.map(|e| e.at),
            reason: exit.and_then(|_| backend.end_reason()),
            output_offset: self.output_offset(),
            ssh: backend.ssh_resolved(),
            recording: self.recording_state().map(|r| RecordingInfo {
                path: r.path.display().to_string(),
                bytes: r.bytes,
                input: r.input,
            }),
            limits: self.applied_limits(backend.limits()),
            usage: None,
            forwards: backend.forward_count(),
        }
    }

    /// The wire view with what the session uses now (reads its group or `/proc`: for
    /// answers, not for every saved row).
    pub fn info_with_usage(&self) -> SessionInfo {
        let mut info = self.info();
        if info.state != pulsar_protocol::SessionState::Stopped {
            info.usage = self.backend().usage();
        }
        info
    }

    /// The limits in force and what holds each: the backend's (`held`), and the pump's
    /// output rate.
    fn applied_limits(&self, held: Option<AppliedLimits>) -> Option<AppliedLimits> {
        let mut applied = held.unwrap_or_default();
        applied.output_bytes_per_sec = self.limits().output_bytes_per_sec.map(|value| HeldLimit {
            value,
            mechanism: LimitMechanism::Pump,
        });
        (applied != AppliedLimits::default()).then_some(applied)
    }

    /// The bytes that redraw the current screen, with `scrollback_lines` of history first,
    /// and the offset the live stream continues from.
    pub fn snapshot(&self, scrollback_lines: usize) -> Snapshot {
        let size = self.clients().size();
        let redraw = self.output().redraw(size, scrollback_lines);
        Snapshot {
            data: redraw.data.into(),
            offset: redraw.offset,
            cols: size.0,
            rows: size.1,
        }
    }

    /// The current screen for `get_screen`.
    pub fn screen(&self, ansi: bool) -> ScreenContents {
        let cols = self.clients().size().0;
        let (offset, rendered) = self.output().render(ansi);
        ScreenContents {
            rows: rendered.rows,
            cursor: Cursor {
                row: rendered.cursor.0,
                col: rendered.cursor.1,
                visible: rendered.cursor_visible,
            },
            cols,
            alternate_screen: rendered.alternate_screen,
            offset,
        }
    }
}
