//! The API methods, implemented on the session core.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use jsonrpsee::core::{RpcResult, SubscriptionResult, async_trait};
use jsonrpsee::types::ErrorObjectOwned;
use jsonrpsee::{Extensions, PendingSubscriptionSink};
use pulsar_protocol::{
    AsciicastExport, AttachResult, Base64Data, ClientMode, CreateSessionResult, DatabaseStatus,
    ForwardId, ForwardInfo, ForwardKind, ForwardSpec, KeeperStatus, ListForwardsResult,
    ListSessionsResult, OutputEvent, PulsarApiServer, ReceiveOutputResult, RecordingStarted,
    ResizePolicy, ScreenContents, ScreenFormat, SendInputResult, SessionEvent, SessionId,
    SessionInfo, SessionLimits, SessionType, Status, Success, UpgradeResult, WaitOn, WaitResult,
};

use super::Peer;
use super::transfers::TransferHandlers;
use super::workspaces::WorkspaceHandlers;
use crate::audit::{AuditLog, AuditRecord};
use crate::config::Config;
use crate::daemon::Controls;
use crate::persist::export_asciicast;
use crate::persist::forward_row;
use crate::session::{
    CreateRequest, OutputReader, Pattern, SessionError, SessionManager, StreamEvent,
};
use crate::shutdown::StopSignal;
use crate::store::{SCHEMA_VERSION, Store};
use crate::supervisor::UpgradeRequest;
use crate::transfer::Transfers;
use crate::workspace::Workspaces;

/// Largest `receive_output` answer, and its default.
const MAX_READ: usize = 1024 * 1024;
const DEFAULT_READ: usize = 64 * 1024;
/// Longest `receive_output` wait.
const MAX_WAIT: Duration = Duration::from_secs(60);

/// The server side of [`PulsarApiServer`].
pub struct Handlers {
    sessions: Arc<SessionManager>,
    workspaces: Arc<Workspaces>,
    transfers: Arc<Transfers>,
    config: Arc<Config>,
    audit: Arc<dyn AuditLog>,
    /// For `get_status`'s database figures.
    store: Store,
    life: Lifecycle,
    started: Instant,
    started_at: DateTime<Utc>,
}

/// What the lifecycle methods (`get_status`, `shutdown`, `upgrade_daemon`) need of the daemon.
pub(crate) struct Lifecycle {
    /// The keeper, for `get_status`.
    pub keeper: Option<KeeperStatus>,
    /// Set by `shutdown {terminate_sessions: true}`: the daemon's stop ends every session.
    pub terminate_on_stop: Arc<AtomicBool>,
    /// Upgrades and their last error, through the supervisor.
    pub controls: Controls,
    /// The daemon's stop, which ends the waits of `wait_for_output` (they would hold it up).
    pub stopping: StopSignal,
}

impl Handlers {
    /// Handlers over `sessions`, auditing to `audit`, reporting `store`'s figures and the
    /// keeper; `shutdown` sets `terminate_on_stop` for the daemon's stop to read.
    pub fn new(
        sessions: Arc<SessionManager>,
        workspaces: Arc<Workspaces>,
        transfers: Arc<Transfers>,
        config: Arc<Config>,
        audit: Arc<dyn AuditLog>,
        store: Store,
        life: Lifecycle,
    ) -> Self {
        Self {
            sessions,
            workspaces,
            transfers,
            config,
            audit,
            store,
            life,
            started: Instant::now(),
            started_at: Utc::now(),
        }
    }

    /// Adds a forward to a session and saves it, to come back after a restart.
    async fn add_saved_forward(
        &self,
        session_id: SessionId,
        spec: &ForwardSpec,
    ) -> Result<ForwardInfo, ErrorObjectOwned> {
        let info = self
            .sessions
            .add_forward(session_id, uuid::Uuid::new_v4(), spec)
            .await?;
        self.store
            .upsert_forward(forward_row(&info, spec, Utc::now().timestamp_millis()));
        tracing::info!(session = %session_id, forward = %info.id, kind = info.kind.as_str(), listen = %info.listen, "add_forward");
        Ok(info)
    }

    /// The session table the handlers work on.
    pub fn sessions(&self) -> &Arc<SessionManager> {
        &self.sessions
    }

    /// Largest input a client may send at once.
    pub(super) fn max_input_bytes(&self) -> usize {
        self.config.max_input_bytes
    }

    /// The workspace methods, on the same session table.
    pub(super) fn workspace_handlers(&self) -> WorkspaceHandlers {
        WorkspaceHandlers {
            workspaces: Arc::clone(&self.workspaces),
            sessions: Arc::clone(&self.sessions),
            restore: self.config.restore,
            audit: Arc::clone(&self.audit),
            store: self.store.clone(),
        }
    }

    /// The transfer methods, on the daemon's transfers.
    pub(super) fn transfer_handlers(&self) -> TransferHandlers {
        TransferHandlers {
            transfers: Arc::clone(&self.transfers),
            audit: Arc::clone(&self.audit),
        }
    }

    /// Records who did `action` to `session_id`.
    fn audit(&self, action: &'static str, session_id: SessionId, caller: &Peer, detail: String) {
        self.audit.record(AuditRecord {
            action,
            session_id: Some(session_id),
            uid: Some(caller.uid),
            pid: caller.pid,
            detail,
        });
    }
}

impl Handlers {
    /// The database's figures for `get_status`.
    fn database_status(&self) -> DatabaseStatus {
        let stats = self.store.stats();
        DatabaseStatus {
            path: self.store.path().display().to_string(),
            schema_version: SCHEMA_VERSION,
            commits: stats.commits,
            writes: stats.writes,
            write_p50_us: stats.write_p50_us,
            write_p99_us: stats.write_p99_us,
            commit_p50_us: stats.commit_p50_us,
            commit_p99_us: stats.commit_p99_us,
            queued: stats.queued as u64,
            shed: stats.shed,
            deferred: stats.deferred,
            failed_commits: stats.failed_commits,
            last_error: stats.last_error,
        }
    }
}

/// The caller. Every connection's requests carry one; a missing one (in-process calls) is
/// the daemon itself.
pub(super) fn peer(ext: &Extensions) -> Peer {
    ext.get::<Peer>().cloned().unwrap_or(Peer {
        connection: 0,
        uid: nix::unistd::geteuid().as_raw(),
        pid: Some(std::process::id() as i32),
    })
}

fn invalid_param(field: &'static str, reason: String) -> ErrorObjectOwned {
    SessionError::InvalidParam { field, reason }.into()
}

/// Most history a snapshot may carry.
const MAX_HISTORY_LINES: usize = 100_000;

fn history_lines(asked: Option<usize>) -> Result<usize, SessionError> {
    match asked.unwrap_or(0) {
        lines if lines <= MAX_HISTORY_LINES => Ok(lines),
        lines => Err(SessionError::InvalidParam {
            field: "scrollback_lines",
            reason: format!("{lines} is more than {MAX_HISTORY_LINES}"),
        }),
    }
}

#[async_trait]
impl PulsarApiServer for Handlers {
    async fn get_status(&self) -> RpcResult<Status> {
        Ok(Status {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            uptime_seconds: self.started.elapsed().as_secs(),
            num_sessions: self.sessions.len(),
            num_clients: self.sessions.num_clients(),
            num_hibernated: self.sessions.num_hibernated(),
            num_parked: self.sessions.num_parked(),
            scrollback_released_bytes: self.sessions.released_scrollback_bytes(),
            pid: std::process::id(),
            database: Some(self.database_status()),
            started_at: Some(self.started_at),
            keeper: self.life.keeper.clone(),
            last_upgrade_error: self
                .life
                .controls
                .upgrade_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        })
    }

    async fn create_session(
        &self,
        ext: &Extensions,
        name: Option<String>,
        session_type: SessionType,
        cols: Option<u16>,
        rows: Option<u16>,
        resize_policy: Option<ResizePolicy>,
        limits: Option<SessionLimits>,
        forwards: Option<Vec<ForwardSpec>>,
    ) -> RpcResult<CreateSessionResult> {
        let session = self
            .sessions
            .create(CreateRequest {
                name,
                session_type,
                cols,
                rows,
                resize_policy,
                limits: limits.unwrap_or_default(),
            })
            .await?;
        for spec in forwards.unwrap_or_default() {
            if let Err(err) = self.add_saved_forward(session.id(), &spec).await {
                // All or nothing: a session without the forwards asked for is not what was
                // asked for.
                let _ = self.sessions.terminate(session.id()).await;
                return Err(err);
            }
        }
        // Durable before it is answered: a session the client was told about survives even
        // a crash right after (its program would otherwise be an orphan nobody knows).
        self.store.flush().await;
        let caller = peer(ext);
        tracing::info!(
            session = %session.id(),
            uid = caller.uid,
            pid = ?caller.pid,
            "create_session"
        );
        self.audit(
            "create",
            session.id(),
            &caller,
            format!(
                "name={} type={}",
                session.name(),
                session.session_type().kind()
            ),
        );
        Ok(CreateSessionResult {
            session_id: session.id(),
            session: session.info(),
        })
    }

    async fn add_forward(
        &self,
        session_id: SessionId,
        kind: ForwardKind,
        listen: String,
        target: Option<String>,
        allow_non_loopback: Option<bool>,
    ) -> RpcResult<ForwardInfo> {
        let spec = ForwardSpec {
            kind,
            listen,
            target,
            allow_non_loopback: allow_non_loopback.unwrap_or(false),
        };
        let info = self.add_saved_forward(session_id, &spec).await?;
        self.store.flush().await;
        Ok(info)
    }

    async fn list_forwards(&self, session_id: Option<SessionId>) -> RpcResult<ListForwardsResult> {
        Ok(ListForwardsResult {
            forwards: self.sessions.list_forwards(session_id)?,
        })
    }

    async fn remove_forward(&self, forward_id: ForwardId) -> RpcResult<Success> {
        let session_id = self.sessions.remove_forward(forward_id).await?;
        self.store.delete_forward(forward_id);
        self.store.flush().await;
        tracing::info!(session = %session_id, forward = %forward_id, "remove_forward");
        Ok(Success::OK)
    }

    async fn attach_session(
        &self,
        ext: &Extensions,
        session_id: SessionId,
        client_id: Option<String>,
        mode: Option<ClientMode>,
        scrollback_lines: Option<usize>,
    ) -> RpcResult<AttachResult> {
        let caller = peer(ext);
        let client_id = caller.client_id(client_id);
        let mode = mode.unwrap_or_default();
        let scrollback_lines = history_lines(scrollback_lines)?;
        let session = self
            .sessions
            .attach(session_id, &client_id, caller.connection, mode)?;
        tracing::debug!(session = %session_id, client = %client_id, ?mode, pid = ?caller.pid, "attached");
        self.audit(
            "attach",
            session_id,
            &caller,
            format!("client={client_id} mode={mode:?}"),
        );
        Ok(AttachResult {
            client_id,
            mode,
            snapshot: Some(session.snapshot(scrollback_lines)),
            session: session.info(),
        })
    }

    async fn detach_session(
        &self,
        ext: &Extensions,
        session_id: SessionId,
        client_id: Option<String>,
    ) -> RpcResult<Success> {
        let caller = peer(ext);
        let client_id = caller.client_id(client_id);
        self.sessions.get(session_id)?.detach(&client_id)?;
        tracing::debug!(session = %session_id, client = %client_id, "detached");
        self.audit("detach", session_id, &caller, format!("client={client_id}"));
        Ok(Success::OK)
    }

    async fn send_input(
        &self,
        ext: &Extensions,
        session_id: SessionId,
        data: Base64Data,
        client_id: Option<String>,
    ) -> RpcResult<SendInputResult> {
        let limit = self.config.max_input_bytes;
        if data.as_bytes().len() > limit {
            return Err(SessionError::LimitReached {
                op: "send input",
                limit: "max_input_bytes",
                max: limit,
            }
            .into());
        }
        let caller = peer(ext);
        let client_id = caller.client_id(client_id);
        let session = self.sessions.get(session_id)?;
        let bytes_written = session
            .send_input(&client_id, caller.connection, data.as_bytes())
            .await?;
        // Who typed, not what: input may carry passwords.
        tracing::trace!(session = %session_id, client = %client_id, uid = caller.uid, pid = ?caller.pid, bytes = bytes_written, "input");
        self.audit(
            "input",
            session_id,
            &caller,
            format!("client={client_id} bytes={bytes_written}"),
        );
        Ok(SendInputResult { bytes_written })
    }

    async fn receive_output(
        &self,
        ext: &Extensions,
        session_id: SessionId,
        since: Option<u64>,
        max_bytes: Option<usize>,
        timeout_ms: Option<u64>,
        client_id: Option<String>,
    ) -> RpcResult<ReceiveOutputResult> {
        let max_bytes = max_bytes.unwrap_or(DEFAULT_READ);
        if max_bytes == 0 || max_bytes > MAX_READ {
            return Err(invalid_param(
                "max_bytes",
                format!("{max_bytes} is outside 1..={MAX_READ}"),
            ));
        }
        let wait = Duration::from_millis(timeout_ms.unwrap_or(0)).min(MAX_WAIT);
        let cursor_key = peer(ext).client_id(client_id);
        let session = self.sessions.get(session_id)?;
        // A long poll answers with what there is when the daemon stops, instead of holding
        // the stop up for its whole timeout.
        let mut stopping = self.life.stopping.clone();
        let chunk = tokio::select! {
            chunk = session.read_output(since, max_bytes, wait, &cursor_key) => chunk?,
            _ = stopping.wait() => {
                session.read_output(since, max_bytes, Duration::ZERO, &cursor_key).await?
            }
        };
        Ok(ReceiveOutputResult {
            bytes_read: chunk.data.len(),
            offset: chunk.offset,
            next_offset: chunk.next_offset(),
            truncated: chunk.truncated,
            data: Base64Data(chunk.data),
        })
    }

    async fn subscribe_output(
        &self,
        pending: PendingSubscriptionSink,
        _ext: &Extensions,
        session_id: SessionId,
        since: Option<u64>,
        snapshot: Option<bool>,
        scrollback_lines: Option<usize>,
    ) -> SubscriptionResult {
        let start = history_lines(scrollback_lines).and_then(|lines| {
            let session = self.sessions.get(session_id)?;
            let snapshot = snapshot.unwrap_or(false).then(|| session.snapshot(lines));
            let since = snapshot.as_ref().map(|s| s.offset).or(since);
            Ok((OutputReader::new(session, since)?, snapshot))
        });
        let (mut reader, snapshot) = match start {
            Ok(start) => start,
            Err(err) => {
                pending.reject(ErrorObjectOwned::from(err)).await;
                return Ok(());
            }
        };
        let sink = pending.accept().await?;
        if let Some(snapshot) = snapshot {
            let first = OutputEvent::Snapshot {
                data: snapshot.data,
                offset: snapshot.offset,
                cols: snapshot.cols,
                rows: snapshot.rows,
            };
            if sink
                .send(serde_json::value::to_raw_value(&first)?)
                .await
                .is_err()
            {
                return Ok(());
            }
        }
        // This task is the subscriber: it waits on its own socket, never on the session.
        let relay = crate::relay::spawn(async move {
            loop {
                let event = tokio::select! {
                    event = reader.next() => event,
                    _ = sink.closed() => break,
                };
                let Some(event) = event else { break };
                let Ok(message) = serde_json::value::to_raw_value(&wire_event(event)) else {
                    break;
                };
                if sink.send(message).await.is_err() {
                    break;
                }
            }
        });
        let _ = relay.await;
        Ok(())
    }

    async fn subscribe_events(&self, pending: PendingSubscriptionSink) -> SubscriptionResult {
        // Subscribed before the answer, so no event after it is missed.
        let mut events = self.sessions.subscribe_events();
        let sink = pending.accept().await?;
        // This task is the subscriber: a slow socket makes it lag, never a session.
        loop {
            let event = tokio::select! {
                event = events.recv() => event,
                _ = sink.closed() => break,
            };
            let event = match event {
                Ok(event) => event,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                    SessionEvent::Lagged { missed }
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            };
            if sink
                .send(serde_json::value::to_raw_value(&event)?)
                .await
                .is_err()
            {
                break;
            }
        }
        Ok(())
    }

    async fn resize_terminal(
        &self,
        ext: &Extensions,
        session_id: SessionId,
        cols: u16,
        rows: u16,
        client_id: Option<String>,
    ) -> RpcResult<SessionInfo> {
        let caller = peer(ext);
        let client_id = caller.client_id(client_id);
        let session = self.sessions.get(session_id)?;
        session.request_size(&client_id, caller.connection, cols, rows)?;
        Ok(session.info())
    }

    async fn get_screen(
        &self,
        session_id: SessionId,
        format: Option<ScreenFormat>,
    ) -> RpcResult<ScreenContents> {
        let ansi = format.unwrap_or_default() == ScreenFormat::Ansi;
        Ok(self.sessions.get(session_id)?.screen(ansi))
    }

    async fn wait_for_output(
        &self,
        session_id: SessionId,
        pattern: String,
        since: Option<u64>,
        timeout_ms: u64,
        on: Option<WaitOn>,
    ) -> RpcResult<WaitResult> {
        let pattern = Pattern::new(&pattern)?;
        let session = self.sessions.get(session_id)?;
        let wait = session.wait_for_output(
            &pattern,
            since,
            on.unwrap_or_default(),
            Duration::from_millis(timeout_ms),
        );
        let mut stopping = self.life.stopping.clone();
        tokio::select! {
            found = wait => Ok(found?),
            _ = stopping.wait() => Err(SessionError::Stopping { op: "wait for output" }.into()),
        }
    }

    async fn list_sessions(&self) -> RpcResult<ListSessionsResult> {
        Ok(ListSessionsResult {
            sessions: self.sessions.list(),
        })
    }

    async fn start_recording(
        &self,
        session_id: SessionId,
        path: Option<std::path::PathBuf>,
        input: Option<bool>,
    ) -> RpcResult<RecordingStarted> {
        let session = self.sessions.get(session_id)?;
        let path = self
            .sessions
            .start_recording(&session, path, input.unwrap_or(false))?;
        Ok(RecordingStarted {
            path: path.display().to_string(),
        })
    }

    async fn stop_recording(&self, session_id: SessionId) -> RpcResult<Success> {
        self.sessions.get(session_id)?.stop_recording().await?;
        Ok(Success { success: true })
    }

    async fn export_asciicast(
        &self,
        session_id: SessionId,
        since: Option<u64>,
        until: Option<u64>,
    ) -> RpcResult<AsciicastExport> {
        let session = self.sessions.get(session_id)?;
        let cast = export_asciicast(&self.store, &session, since, until).await?;
        Ok(AsciicastExport { cast })
    }

    async fn get_session(&self, session_id: SessionId) -> RpcResult<SessionInfo> {
        Ok(self.sessions.get(session_id)?.info_with_usage())
    }

    async fn terminate_session(
        &self,
        ext: &Extensions,
        session_id: SessionId,
    ) -> RpcResult<Success> {
        let caller = peer(ext);
        tracing::info!(session = %session_id, uid = caller.uid, pid = ?caller.pid, "terminate_session");
        self.sessions.terminate(session_id).await?;
        self.audit("terminate", session_id, &caller, String::new());
        Ok(Success::OK)
    }

    async fn shutdown(
        &self,
        ext: &Extensions,
        terminate_sessions: Option<bool>,
    ) -> RpcResult<Success> {
        let caller = peer(ext);
        let terminate = terminate_sessions.unwrap_or(false);
        tracing::info!(uid = caller.uid, pid = ?caller.pid, terminate_sessions = terminate, "shutdown requested");
        self.audit.record(AuditRecord {
            action: "shutdown",
            session_id: None,
            uid: Some(caller.uid),
            pid: caller.pid,
            detail: format!("terminate_sessions={terminate}"),
        });
        if terminate {
            self.life.terminate_on_stop.store(true, Ordering::SeqCst);
        }
        // The host (pulsar-standalone, or the Orbit host) stops on SIGTERM; the stop waits
        // for this answer to go out.
        // SAFETY: raising a signal at our own process is always sound.
        unsafe { libc::raise(libc::SIGTERM) };
        Ok(Success::OK)
    }

    async fn upgrade_daemon(
        &self,
        ext: &Extensions,
        binary: Option<std::path::PathBuf>,
    ) -> RpcResult<UpgradeResult> {
        let caller = peer(ext);
        let failed = |message: String| {
            ErrorObjectOwned::owned(
                pulsar_protocol::error::UPGRADE_FAILED,
                format!("upgrade failed, the daemon serves on: {message}"),
                Some(serde_json::json!({"binary": binary})),
            )
        };
        let Some(upgrades) = &self.life.controls.upgrades else {
            return Err(failed(
                "upgrades in place need pulsar-standalone; inside an Orbit host, restart the \
                 host instead (the sessions survive it)"
                    .to_owned(),
            ));
        };
        tracing::info!(uid = caller.uid, pid = ?caller.pid, binary = ?binary, "upgrade requested");
        self.audit.record(AuditRecord {
            action: "upgrade",
            session_id: None,
            uid: Some(caller.uid),
            pid: caller.pid,
            detail: format!("binary={binary:?}"),
        });
        let (reply, answer) = tokio::sync::oneshot::channel();
        upgrades
            .send(UpgradeRequest {
                binary: binary.clone(),
                reply,
            })
            .await
            .map_err(|_| failed("the daemon is stopping".to_owned()))?;
        let started = answer
            .await
            .map_err(|_| failed("the daemon is stopping".to_owned()))?
            .map_err(&failed)?;
        Ok(UpgradeResult {
            from_pid: std::process::id(),
            to_pid: started.pid,
            binary: started.binary.display().to_string(),
        })
    }
}

fn wire_event(event: StreamEvent) -> OutputEvent {
    match event {
        StreamEvent::Output { offset, data } => OutputEvent::Output {
            data: Base64Data(data),
            offset,
        },
        StreamEvent::Resized { cols, rows } => OutputEvent::Resized { cols, rows },
        StreamEvent::Lagged {
            missed_from,
            resume_at,
        } => OutputEvent::Lagged {
            missed_from,
            resume_at,
        },
        StreamEvent::Exited(exit) => OutputEvent::Exited {
            code: exit.status.code,
            signal: exit.status.signal,
        },
    }
}
