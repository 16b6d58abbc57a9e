//! Translation between the session core's terms (the protocol's types) and the store's own
//! rows. Secrets cannot cross: the stored kinds have no field for them.

use pulsar_protocol::{
    LocalSpec, ResizePolicy, SerialSpec, SessionLimits, SessionState, SessionType, SshAuth, SshSpec,
};

use crate::session::Session;
use crate::store::{
    RowState, SessionConfig, SessionRow, StoredKind, StoredLimits, StoredRecording,
    StoredResizePolicy, StoredSshAuth,
};

/// The row that describes `session` now.
pub(super) fn row_for(session: &Session) -> SessionRow {
    let info = session.info();
    SessionRow {
        id: info.id,
        name: info.name,
        config: SessionConfig {
            kind: stored_kind(&info.session_type),
            cols: info.cols,
            rows: info.rows,
            resize_policy: stored_policy(info.resize_policy),
            recording: session.recording_state().map(|r| StoredRecording {
                path: r.path,
                input: r.input,
                started_ms: r.started_ms,
            }),
            limits: stored_limits(session.limits()),
        },
        created_at: info.created_at.timestamp_millis(),
        last_active: info.last_active.timestamp_millis(),
        state: match info.state {
            SessionState::Running => RowState::Running,
            SessionState::Detached => RowState::Detached,
            SessionState::Stopped => RowState::Stopped,
        },
        exit_code: info.exit_code,
        exit_signal: info.exit_signal,
        exited_at: info.exited_at.map(|t| t.timestamp_millis()),
        reason: info.reason,
    }
}

fn stored_limits(limits: SessionLimits) -> StoredLimits {
    StoredLimits {
        memory_max: limits.memory_max,
        cpu_max: limits.cpu_max,
        pids_max: limits.pids_max,
        nofile_max: limits.nofile_max,
        output_bytes_per_sec: limits.output_bytes_per_sec,
    }
}

/// The limits a stored row starts again with.
pub(super) fn session_limits(limits: StoredLimits) -> SessionLimits {
    SessionLimits {
        memory_max: limits.memory_max,
        cpu_max: limits.cpu_max,
        pids_max: limits.pids_max,
        nofile_max: limits.nofile_max,
        output_bytes_per_sec: limits.output_bytes_per_sec,
    }
}

fn stored_kind(session_type: &SessionType) -> StoredKind {
    match session_type {
        SessionType::Local(spec) => StoredKind::Local {
            command: spec.command.clone(),
            cwd: spec.cwd.clone(),
            env: spec.env.clone(),
        },
        SessionType::Serial(spec) => StoredKind::Serial {
            device: spec.device.clone(),
            baud: spec.baud,
            data_bits: spec.data_bits,
            parity: spec.parity.clone(),
            stop_bits: spec.stop_bits,
            flow_control: spec.flow_control.clone(),
        },
        SessionType::Ssh(spec) => StoredKind::Ssh {
            host: spec.host.clone(),
            port: spec.port,
            user: spec.user.clone(),
            command: spec.command.clone(),
            auth: spec.auth.as_ref().map(|auth| StoredSshAuth {
                agent: auth.agent,
                key_files: auth.key_files.clone(),
            }),
            accept_new_host_key: spec.accept_new_host_key,
            known_hosts: spec.known_hosts.clone(),
        },
        #[allow(unreachable_patterns)] // SessionType is non-exhaustive across crates
        other => unreachable!("a session of kind {} cannot exist", other.kind()),
    }
}

/// The session type a stored row starts again.
pub(super) fn session_type(kind: &StoredKind) -> SessionType {
    match kind.clone() {
        StoredKind::Local { command, cwd, env } => {
            SessionType::Local(LocalSpec { command, cwd, env })
        }
        StoredKind::Serial {
            device,
            baud,
            data_bits,
            parity,
            stop_bits,
            flow_control,
        } => SessionType::Serial(SerialSpec {
            device,
            baud,
            data_bits,
            parity,
            stop_bits,
            flow_control,
        }),
        StoredKind::Ssh {
            host,
            port,
            user,
            command,
            auth,
            accept_new_host_key,
            known_hosts,
        } => SessionType::Ssh(Box::new(SshSpec {
            host,
            port,
            user,
            command,
            auth: auth.map(|auth| SshAuth {
                agent: auth.agent,
                key_files: auth.key_files,
                ..SshAuth::default()
            }),
            accept_new_host_key,
            known_hosts,
        })),
    }
}

fn stored_policy(policy: ResizePolicy) -> StoredResizePolicy {
    match policy {
        ResizePolicy::Latest => StoredResizePolicy::Latest,
        ResizePolicy::Smallest => StoredResizePolicy::Smallest,
        ResizePolicy::Largest => StoredResizePolicy::Largest,
    }
}

/// The resize policy of a stored row.
pub(super) fn resize_policy(policy: StoredResizePolicy) -> ResizePolicy {
    match policy {
        StoredResizePolicy::Latest => ResizePolicy::Latest,
        StoredResizePolicy::Smallest => ResizePolicy::Smallest,
        StoredResizePolicy::Largest => ResizePolicy::Largest,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_survives_the_trip_through_the_store() {
        let kinds = [
            r#"{"kind":"local","command":["sh","-c","x"],"cwd":"/tmp","env":{"A":"1"}}"#,
            r#"{"kind":"serial","device":"/dev/ttyS0","baud":9600,"parity":"even"}"#,
            r#"{"kind":"ssh","host":"h","port":2,"user":"u","command":"c",
                "auth":{"agent":false,"key_files":["/k"]},"accept_new_host_key":true,
                "known_hosts":"/kh"}"#,
        ];
        for text in kinds {
            let wire: SessionType = serde_json::from_str(text).unwrap();
            assert_eq!(session_type(&stored_kind(&wire)), wire, "{text}");
        }
    }

    #[test]
    fn secrets_are_dropped_on_the_way_into_the_store() {
        let wire: SessionType = serde_json::from_str(
            r#"{"kind":"ssh","host":"h","auth":{"password":"pw","passphrase":"pp"}}"#,
        )
        .unwrap();
        let stored = serde_json::to_string(&stored_kind(&wire)).unwrap();
        assert!(!stored.contains("pw") && !stored.contains("pp"), "{stored}");
    }
}
