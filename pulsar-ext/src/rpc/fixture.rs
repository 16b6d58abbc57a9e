//! What the fuzz targets that reach a real session share (fuzzing and tests only): a session
//! manager holding one `cat` behind `stty raw -echo` (so that input bytes such as `^C` or
//! `^D` stay bytes), with the fixed id [`SESSION_ID`] so that seeds can name it, and an audit
//! log that records nothing.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use pulsar_protocol::{LocalSpec, SessionType};
use uuid::Uuid;

use crate::audit::{AuditLog, AuditRecord};
use crate::session::{RestoreMode, RestoreRequest, SessionManager};
use crate::shutdown::{Shutdown, ShutdownTrigger};

/// The one session's id: a seed's `GET /ws/5e551011-0000-4000-8000-00000000d35c`, or its
/// attach stream hello's `session_id`.
pub(crate) const SESSION_ID: Uuid = Uuid::from_u128(0x5e551011_0000_4000_8000_00000000d35c);
/// What the fixture's program prints once its terminal is raw.
const READY: &str = "fuzz-cat-ready";
/// Longest the fixture's program may take to start.
const START_TIMEOUT: Duration = Duration::from_secs(5);

/// The audit log of the fixtures: records go nowhere.
pub(crate) struct Unrecorded;

impl AuditLog for Unrecorded {
    fn record(&self, _: AuditRecord) {}
}

/// Made once per thread by a fuzz target's entry point: a current-thread runtime, the
/// context its connections share (holding the `cat`'s session manager), and the shutdown
/// they hold.
pub(crate) struct Fixture<C> {
    pub runtime: tokio::runtime::Runtime,
    pub context: Arc<C>,
    pub shutdown: Shutdown,
    /// Held: dropping it would stop the connections.
    _trigger: ShutdownTrigger,
}

impl<C> Fixture<C> {
    /// Starts the `cat` and makes the context from its session manager and the config.
    pub fn with_cat(make: impl FnOnce(Arc<SessionManager>, &crate::Config) -> C) -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread runtime");
        let sessions = cat_session(&runtime);
        let (trigger, shutdown) = crate::shutdown::channel();
        let context = Arc::new(make(sessions, &crate::rpc::fuzzing_config()));
        Self {
            runtime,
            context,
            shutdown,
            _trigger: trigger,
        }
    }
}

/// A session manager on `runtime` holding the running `cat` [`SESSION_ID`], its terminal
/// raw.
fn cat_session(runtime: &tokio::runtime::Runtime) -> Arc<SessionManager> {
    let config = crate::rpc::fuzzing_config();
    let sessions = Arc::new(SessionManager::new(Arc::clone(&config)));
    let command = [
        "sh",
        "-c",
        "stty raw -echo; printf '%s' \"$READY\"; exec cat",
    ]
    .map(str::to_owned);
    let session = runtime.block_on(sessions.restore(RestoreRequest {
        id: SESSION_ID,
        name: "fuzz-cat".into(),
        session_type: SessionType::Local(LocalSpec {
            command: Some(command.to_vec()),
            env: [("READY".to_owned(), READY.to_owned())].into(),
            ..LocalSpec::default()
        }),
        created_at: Utc::now(),
        size: (80, 24),
        resize_policy: config.resize_policy,
        limits: config.default_limits(),
        history: None,
        mode: RestoreMode::Respawn,
        recording: None,
        was_alive: false,
    }));
    assert!(session.is_alive(), "the fixture's cat did not start");
    // Input before `stty raw` would be cooked: wait for the sign that it is done.
    runtime.block_on(async {
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        while !String::from_utf8_lossy(session.snapshot(0).data.as_bytes()).contains(READY) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the fixture's cat did not start within 5 s"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    sessions
}

/// Starts the fixture's `cat` again if an input ended it.
pub(crate) async fn keep_cat_running(sessions: &SessionManager) {
    if !sessions.get(SESSION_ID).is_ok_and(|s| s.is_alive()) {
        let revived = sessions.revive(SESSION_ID).await;
        assert!(
            revived.is_ok_and(|s| s.is_alive()),
            "the fixture's cat did not start again"
        );
    }
}
