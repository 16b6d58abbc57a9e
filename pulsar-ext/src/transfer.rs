//! The daemon's file transfers: started, listed and cancelled here, each run by a task of its
//! own through its session's backend (`Backend::transfer`), whether or not a client watches.
//!
//! Progress and the end go to the daemon-wide event stream; every change of state goes to a
//! [`TransferSink`] (the store), and transfers the last daemon left running are started again
//! by [`Transfers::resume`], continuing from their temporary files.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use pulsar_protocol::{
    SessionEvent, SessionId, TransferDirection, TransferId, TransferInfo, TransferState,
};
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::backend::{TransferControl, TransferError, TransferJob};
use crate::session::{Events, SessionError, SessionManager};
use crate::shutdown::StopSignal;

/// Shortest interval between two progress events of one transfer.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);
/// How long a resumed transfer waits for its session to be back before giving up.
const RESUME_WAIT: Duration = Duration::from_secs(60);
/// Longest `start_transfer` waits for the checks (a session that is reconnecting cannot make
/// them): then it answers `running`, and the transfer starts once the connection is back.
const START_WAIT: Duration = Duration::from_secs(20);
/// Ended transfers kept for `list_transfers` and `get_transfer`; the oldest go first.
const KEEP_ENDED: usize = 1000;

/// Where transfers are kept across restarts (the store).
pub(crate) trait TransferSink: Send + Sync {
    /// `info` (with whether it may replace its destination) was started, or has ended (then
    /// nothing is left to resume: the sink may forget it).
    fn saved(&self, info: &TransferInfo, overwrite: bool);
}

/// Why a transfer request was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TransferRequestError {
    /// No transfer with that id.
    #[error("no transfer {0}")]
    NotFound(TransferId),
    /// The session is unknown, or a parameter is bad.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// The destination exists and `overwrite` was not asked for.
    #[error("session {session_id}: {path} exists (set overwrite to replace it)")]
    DestinationExists {
        /// The session.
        session_id: SessionId,
        /// The destination.
        path: String,
    },
    /// The transfer could not start.
    #[error("session {session_id}: cannot transfer: {reason}")]
    Failed {
        /// The session.
        session_id: SessionId,
        /// Its kind, when it is the reason (`local`, `serial`).
        kind: Option<&'static str>,
        /// Why.
        reason: String,
    },
}

/// One transfer: what it is, where it stands, and its control.
struct Entry {
    info: Mutex<TransferInfo>,
    overwrite: bool,
    control: Arc<TransferControl>,
}

impl Entry {
    fn info(&self) -> TransferInfo {
        let mut info = lock(&self.info).clone();
        if info.state == TransferState::Running {
            info.bytes = self.control.bytes();
            info.total = self.control.total().max(info.total);
        }
        info
    }
}

/// Every transfer this daemon runs or ran, oldest first.
pub(crate) struct Transfers {
    sessions: Arc<SessionManager>,
    events: Events,
    sink: Option<Arc<dyn TransferSink>>,
    table: Mutex<Vec<Arc<Entry>>>,
    /// The daemon's stop: a transfer cut by it stays `running` in the store, to resume.
    stopping: StopSignal,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// What `start_transfer` asks for.
pub(crate) struct StartRequest {
    pub session_id: SessionId,
    pub direction: TransferDirection,
    pub local_path: String,
    pub remote_path: String,
    pub overwrite: bool,
}

impl Transfers {
    /// No transfers yet; they run on `sessions`' sessions and are saved to `sink`.
    pub fn new(
        sessions: Arc<SessionManager>,
        sink: Option<Arc<dyn TransferSink>>,
        stopping: StopSignal,
    ) -> Self {
        Self {
            events: sessions.events(),
            sessions,
            sink,
            table: Mutex::new(Vec::new()),
            stopping,
        }
    }

    /// Starts a transfer; answers once its source and destination are checked.
    pub async fn start(
        self: &Arc<Self>,
        request: StartRequest,
    ) -> Result<TransferInfo, TransferRequestError> {
        let invalid = |field: &'static str, reason: &str| {
            TransferRequestError::Session(SessionError::InvalidParam {
                field,
                reason: reason.to_owned(),
            })
        };
        if !PathBuf::from(&request.local_path).is_absolute() {
            return Err(invalid("local_path", "must be an absolute path"));
        }
        if request.remote_path.is_empty() || request.remote_path.ends_with('/') {
            return Err(invalid("remote_path", "must name a file"));
        }
        let session = self.sessions.get(request.session_id)?;
        if !session.is_alive() {
            return Err(TransferRequestError::Failed {
                session_id: request.session_id,
                kind: None,
                reason: "the session has ended".to_owned(),
            });
        }
        let info = TransferInfo {
            id: Uuid::new_v4(),
            session_id: request.session_id,
            direction: request.direction,
            local_path: request.local_path,
            remote_path: request.remote_path,
            bytes: 0,
            total: 0,
            state: TransferState::Running,
            error: None,
        };
        let (started, answer) = oneshot::channel();
        let entry = self.run(info, request.overwrite, Some(started));
        let kind = session.session_type().kind();
        let Ok(outcome) = tokio::time::timeout(START_WAIT, answer).await else {
            return Ok(entry.info());
        };
        match outcome {
            Ok(Ok(())) => Ok(entry.info()),
            outcome => {
                lock(&self.table).retain(|e| !Arc::ptr_eq(e, &entry));
                let err = match outcome {
                    Ok(Err(err)) => err,
                    _ => TransferError::Failed("the transfer ended before it began".to_owned()),
                };
                let session_id = entry.info().session_id;
                Err(match err {
                    TransferError::DestinationExists { path } => {
                        TransferRequestError::DestinationExists { session_id, path }
                    }
                    TransferError::NotSupported => TransferRequestError::Failed {
                        session_id,
                        kind: Some(kind),
                        reason: format!("it is a {kind} session; {}", TransferError::NotSupported),
                    },
                    other => TransferRequestError::Failed {
                        session_id,
                        kind: None,
                        reason: other.to_string(),
                    },
                })
            }
        }
    }

    /// Starts again a transfer the last daemon left running, once its session is back.
    pub fn resume(self: &Arc<Self>, info: TransferInfo, overwrite: bool) {
        tracing::info!(transfer = %info.id, session = %info.session_id, bytes = info.bytes, "resuming a transfer the last daemon left running");
        self.run(info, overwrite, None);
    }

    /// Enters `info` in the table and spawns its task.
    fn run(
        self: &Arc<Self>,
        info: TransferInfo,
        overwrite: bool,
        started: Option<oneshot::Sender<Result<(), TransferError>>>,
    ) -> Arc<Entry> {
        let resumed = started.is_none();
        let control = Arc::new(match started {
            Some(started) => TransferControl::new(started),
            None => TransferControl::default(),
        });
        control.set_bytes(info.bytes);
        control.set_total(info.total);
        let entry = Arc::new(Entry {
            info: Mutex::new(info),
            overwrite,
            control,
        });
        {
            let mut table = lock(&self.table);
            table.push(Arc::clone(&entry));
            let ended = table
                .iter()
                .filter(|e| lock(&e.info).state != TransferState::Running)
                .count();
            if ended > KEEP_ENDED {
                let mut extra = ended - KEEP_ENDED;
                table.retain(|e| {
                    let drop = extra > 0 && lock(&e.info).state != TransferState::Running;
                    extra -= usize::from(drop);
                    !drop
                });
            }
        }
        let transfers = Arc::clone(self);
        let task_entry = Arc::clone(&entry);
        tokio::spawn(async move { transfers.drive(task_entry, resumed).await });
        entry
    }

    /// Runs one transfer to its end, with progress events on the way.
    async fn drive(self: Arc<Self>, entry: Arc<Entry>, resumed: bool) {
        let info = entry.info();
        let (id, session_id) = (info.id, info.session_id);
        let job = TransferJob {
            id,
            direction: info.direction,
            local_path: info.local_path.clone().into(),
            remote_path: info.remote_path.clone(),
            overwrite: entry.overwrite,
        };
        let result = match self.backend_of(session_id, resumed).await {
            Ok(backend) => {
                if let Some(sink) = &self.sink {
                    sink.saved(&info, entry.overwrite);
                }
                let copy = backend.transfer(&job, &entry.control);
                tokio::pin!(copy);
                let mut ticker = tokio::time::interval(PROGRESS_EVERY);
                ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let (mut last_bytes, mut last_at) = (entry.control.bytes(), Instant::now());
                loop {
                    tokio::select! {
                        result = &mut copy => break result,
                        _ = ticker.tick() => {
                            let bytes = entry.control.bytes();
                            if bytes != last_bytes {
                                let elapsed = last_at.elapsed().as_secs_f64().max(0.001);
                                let rate = ((bytes.saturating_sub(last_bytes)) as f64 / elapsed) as u64;
                                (last_bytes, last_at) = (bytes, Instant::now());
                                self.events.emit(SessionEvent::TransferProgress {
                                    session_id,
                                    transfer_id: id,
                                    bytes,
                                    total: entry.control.total(),
                                    rate,
                                });
                            }
                        }
                    }
                }
            }
            Err(err) => Err(err),
        };
        if let Err(err) = &result {
            // Heard only if the copy never got as far as starting.
            entry.control.started(Err(err.clone()));
            if self.stopping.is_set() && !matches!(err, TransferError::Cancelled) {
                tracing::info!(transfer = %id, session = %session_id, "transfer cut by the daemon's stop; it resumes at the next start");
                return;
            }
        }
        let (state, error) = match &result {
            Ok(()) => (TransferState::Done, None),
            Err(TransferError::Cancelled) => (TransferState::Cancelled, None),
            Err(err) => (TransferState::Failed, Some(err.to_string())),
        };
        let info = {
            let mut info = lock(&entry.info);
            info.bytes = entry.control.bytes();
            info.total = entry.control.total();
            info.state = state;
            info.error = error.clone();
            info.clone()
        };
        match &error {
            Some(reason) => {
                tracing::warn!(transfer = %id, session = %session_id, "transfer failed: {reason}")
            }
            None => {
                tracing::info!(transfer = %id, session = %session_id, ?state, bytes = info.bytes, "transfer ended")
            }
        }
        if let Some(sink) = &self.sink {
            sink.saved(&info, entry.overwrite);
        }
        self.events.emit(SessionEvent::TransferFinished {
            session_id,
            transfer_id: id,
            state,
            error,
        });
    }

    /// The session's backend; a resumed transfer waits a while for its session to be back.
    async fn backend_of(
        &self,
        session_id: SessionId,
        wait: bool,
    ) -> Result<Arc<dyn crate::backend::Backend>, TransferError> {
        let deadline = Instant::now() + if wait { RESUME_WAIT } else { Duration::ZERO };
        loop {
            match self.sessions.get(session_id) {
                Ok(session) if session.is_alive() => return Ok(session.backend()),
                _ if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(200)).await
                }
                Ok(_) => return Err(TransferError::Failed("the session has ended".to_owned())),
                Err(_) => return Err(TransferError::Failed("the session is gone".to_owned())),
            }
        }
    }

    /// Every transfer (of `session_id`, when given), oldest first.
    pub fn list(&self, session_id: Option<SessionId>) -> Vec<TransferInfo> {
        lock(&self.table)
            .iter()
            .map(|e| e.info())
            .filter(|info| session_id.is_none_or(|id| info.session_id == id))
            .collect()
    }

    fn entry(&self, id: TransferId) -> Result<Arc<Entry>, TransferRequestError> {
        lock(&self.table)
            .iter()
            .find(|e| lock(&e.info).id == id)
            .cloned()
            .ok_or(TransferRequestError::NotFound(id))
    }

    /// One transfer.
    pub fn get(&self, id: TransferId) -> Result<TransferInfo, TransferRequestError> {
        Ok(self.entry(id)?.info())
    }

    /// Cancels a running transfer and waits (briefly) for it to end; answers its info.
    pub async fn cancel(&self, id: TransferId) -> Result<TransferInfo, TransferRequestError> {
        let entry = self.entry(id)?;
        entry.control.cancel.cancel();
        let deadline = Instant::now() + Duration::from_secs(5);
        while entry.info().state == TransferState::Running && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(entry.info())
    }
}
