//! The JSON-RPC server on the Unix socket: the only module that knows JSON-RPC.
//!
//! `listener` binds the socket safely and accepts connections (refusing other uids);
//! `connection` sniffs each connection's first byte and serves it either as a WebSocket
//! (jsonrpsee) or as newline-delimited JSON (`line`); `handlers` implements the API on the
//! session core (`workspaces` the workspace methods, `transfers` the transfer methods; `upstream` translates the upstream
//! desktop's dialect on the line framing); `error` maps session errors to JSON-RPC error objects. [`serve`] puts them
//! together: the daemon hands it a bound listener and gets back the task that serves it.

mod connection;
#[cfg(any(test, feature = "fuzzing"))]
mod decode_only;
mod desktop;
mod error;
#[cfg(any(test, feature = "fuzzing"))]
mod fixture;
mod handlers;
mod line;
mod listener;
mod peer;
mod stream;
mod transfers;
mod tty;
mod upstream;
mod workspaces;

#[cfg(test)]
pub(crate) use decode_only::DECODED;
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) use desktop::answer_connection as answer_desktop;
pub use desktop::{DesktopBindError, DesktopListener};
pub(crate) use handlers::{Handlers, Lifecycle};
pub use listener::{BindError, SocketListener};
pub(crate) use peer::Peer;
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) use stream::answer_connection as answer_attach_stream;

use std::sync::Arc;

use jsonrpsee::server::{Server, stop_channel};
use pulsar_protocol::{PulsarApiServer as _, TransferApiServer as _, WorkspaceApiServer as _};
use tokio::task::JoinHandle;

use crate::audit::AuditLog;
use crate::shutdown::Shutdown;
use connection::ConnectionContext;

/// Serves the API on `listener` (and the desktop's output WebSocket on `desktop`, when
/// configured) until `shutdown`: accepts (refusing other uids), frames each
/// connection, and dispatches to `handlers`. When the signal comes the accept loop ends
/// (removing the socket file), WebSocket connections finish their calls in flight and close,
/// and line-JSON connections stop reading; each connection and request in flight holds a
/// clone of `shutdown`, so the daemon's stop can wait for them.
pub(crate) fn serve(
    listener: SocketListener,
    desktop: Option<DesktopListener>,
    handlers: Handlers,
    audit: Arc<dyn AuditLog>,
    max_request_bytes: u32,
    shutdown: Shutdown,
) -> JoinHandle<SocketListener> {
    let sessions = Arc::clone(handlers.sessions());
    let attach = Arc::new(stream::StreamContext {
        sessions: Arc::clone(&sessions),
        audit: Arc::clone(&audit),
        max_input_bytes: handlers.max_input_bytes(),
    });
    let desktop = desktop.map(|desktop| {
        desktop::serve(
            desktop,
            Arc::clone(&sessions),
            Arc::clone(&audit),
            handlers.max_input_bytes(),
            shutdown.clone(),
        )
    });
    let (stop_handle, server) = stop_channel();
    let mut methods = handlers.workspace_handlers().into_rpc();
    methods
        .merge(handlers.transfer_handlers().into_rpc())
        .expect("the workspace and transfer methods have distinct names");
    methods
        .merge(handlers.into_rpc())
        .expect("the workspace and session methods have distinct names");
    let context = Arc::new(ConnectionContext {
        methods: methods.into(),
        service_builder: Server::builder()
            .set_config(ConnectionContext::server_config(max_request_bytes))
            .to_service_builder(),
        stop_handle,
        sessions,
        max_request_bytes,
        attach,
        audit,
    });
    tokio::spawn(async move {
        let listener = listener.run(context, shutdown).await;
        // Tells jsonrpsee's connections to finish what is in flight and close.
        let _ = server.stop();
        // The desktop listener ends on the same shutdown, which counts it; its socket is not
        // handed over (the next daemon binds the port again once this one has let it go).
        drop(desktop);
        listener
    })
}

/// Answers every line of `input` as a line-JSON connection would, each call's parameters
/// decoded for its method and then answered with [`decode_only::DECODED`] instead of being
/// served (the fuzz targets; the tests that replay their corpus). `capacity` is the read
/// buffer's size, `max_line` the request size limit.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn answer_decoded(input: &[u8], capacity: usize, max_line: usize) -> Vec<String> {
    use std::sync::OnceLock;

    use crate::session::SessionManager;

    static METHODS: OnceLock<(jsonrpsee::Methods, SessionManager)> = OnceLock::new();
    let (methods, sessions) = METHODS.get_or_init(|| {
        (
            decode_only::methods(),
            SessionManager::new(fuzzing_config()),
        )
    });
    thread_local! {
        static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread runtime");
    }
    RUNTIME.with(|runtime| {
        runtime.block_on(line::answer_all(
            input, capacity, max_line, methods, sessions,
        ))
    })
}

/// The daemon's defaults, with every directory a scratch one under the temp dir: what the
/// fuzz fixtures (and the tests that replay their corpus) run with.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn fuzzing_config() -> Arc<crate::Config> {
    let scratch = std::env::temp_dir().join("pulsar-fuzzing");
    let dirs = orbit_api_stub::HostDirs {
        config_dir: scratch.clone(),
        data_dir: scratch.clone(),
        runtime_dir: scratch,
    };
    Arc::new(crate::Config::defaults(&dirs))
}

/// Serves `input` as the bytes of one connection to the daemon's socket and returns what the
/// daemon wrote back before it closed the connection: the first-byte sniffer, then either the
/// line-JSON framing or HTTP and jsonrpsee's WebSocket upgrade and frames (the fuzz targets;
/// the tests that replay their corpus). The connection is one end of a real Unix socket pair,
/// served by [`connection::serve`] with the decode-only methods (see [`answer_decoded`]);
/// the input is written, then the write side shut, and the answer read to its end.
///
/// Panics if the daemon does not close the connection within 5 s of the input's end (a
/// hang), or if it wrote a line-JSON answer that is not a JSON object.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn answer_connection(input: &[u8]) -> Vec<u8> {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use crate::session::SessionManager;
    use crate::shutdown::{Shutdown, ShutdownTrigger};

    use fixture::Unrecorded;
    /// Made once per thread: what every connection shares in the daemon.
    struct Fixture {
        runtime: tokio::runtime::Runtime,
        context: Arc<ConnectionContext>,
        shutdown: Shutdown,
        // Held: dropping either would stop the connections.
        _trigger: ShutdownTrigger,
        _server: jsonrpsee::server::ServerHandle,
    }
    thread_local! {
        static FIXTURE: Fixture = {
            let config = fuzzing_config();
            let max_request_bytes = config.max_request_bytes;
            let (stop_handle, server) = stop_channel();
            let (trigger, shutdown) = crate::shutdown::channel();
            let sessions = Arc::new(SessionManager::new(Arc::clone(&config)));
            let context = Arc::new(ConnectionContext {
                methods: decode_only::methods(),
                service_builder: Server::builder()
                    .set_config(ConnectionContext::server_config(max_request_bytes))
                    .to_service_builder(),
                stop_handle,
                attach: Arc::new(stream::StreamContext {
                    sessions: Arc::clone(&sessions),
                    audit: Arc::new(Unrecorded),
                    max_input_bytes: config.max_input_bytes,
                }),
                sessions,
                max_request_bytes,
                audit: Arc::new(Unrecorded),
            });
            Fixture {
                runtime: tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a current-thread runtime"),
                context,
                shutdown,
                _trigger: trigger,
                _server: server,
            }
        };
    }
    FIXTURE.with(|fixture| {
        fixture.runtime.block_on(async {
            let (client, server) = tokio::net::UnixStream::pair().expect("a Unix socket pair");
            let peer = Peer {
                connection: peer::next_connection(),
                uid: nix::unistd::getuid().as_raw(),
                pid: Some(std::process::id() as i32),
            };
            let served = tokio::spawn(connection::serve(
                server,
                peer,
                Arc::clone(&fixture.context),
                fixture.shutdown.clone(),
            ));
            let (mut read, mut write) = client.into_split();
            let line_json = input.first().copied().is_some_and(connection::is_line_json);
            let received = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let reader = tokio::spawn({
                let received = Arc::clone(&received);
                async move {
                    let (mut answer, mut buf) = (Vec::new(), [0u8; 8192]);
                    while let Ok(n @ 1..) = read.read(&mut buf).await {
                        answer.extend_from_slice(&buf[..n]);
                        received.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                    }
                    answer
                }
            });
            // The daemon may close first (an HTTP error, a closed WebSocket).
            let _ = write.write_all(input).await;
            if !line_json {
                // A WebSocket that ends drops the answers still in flight (as RFC 6455
                // allows): let them out first. Everything runs on this one thread and the
                // socket pair is in-kernel, so a yield lets every other task (and the I/O
                // driver) run: once 32 yields in a row bring nothing, nothing is in flight.
                // (A 1 ms sleep here left the target idle three quarters of its time.)
                let mut quiet = 0;
                for _ in 0..10_000 {
                    let before = received.load(std::sync::atomic::Ordering::Relaxed);
                    tokio::task::yield_now().await;
                    if received.load(std::sync::atomic::Ordering::Relaxed) == before {
                        quiet += 1;
                        if quiet == 32 {
                            break;
                        }
                    } else {
                        quiet = 0;
                    }
                }
            }
            let _ = write.shutdown().await;
            let answer = match tokio::time::timeout(Duration::from_secs(5), reader).await {
                Ok(answer) => answer.expect("the reader does not panic"),
                Err(_) => panic!("the connection was not closed 5 s after the input ended"),
            };
            served.await.expect("the connection's task did not panic");
            if line_json {
                for line in answer.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                    let value = serde_json::from_slice::<serde_json::Value>(line);
                    assert!(
                        value.as_ref().is_ok_and(|v| v.is_object() || v.is_array()),
                        "not a JSON answer: {}",
                        String::from_utf8_lossy(line)
                    );
                }
            }
            answer
        })
    })
}

/// Every method's name, as clients call it, sorted. Built once: building the methods for each
/// fuzz input was half of the `params` target's cost.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn method_names() -> &'static [&'static str] {
    use std::sync::OnceLock;

    static NAMES: OnceLock<Vec<&'static str>> = OnceLock::new();
    NAMES.get_or_init(|| {
        let mut names: Vec<_> = decode_only::methods().method_names().collect();
        names.sort_unstable();
        names
    })
}

/// Whether `answer` (one line the daemon wrote) is a well-formed JSON-RPC response or batch
/// of them: an object with `"jsonrpc":"2.0"`, an `id`, and exactly one of `result`/`error`.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn is_response(answer: &str) -> bool {
    fn one(value: &serde_json::Value) -> bool {
        value.get("jsonrpc").and_then(serde_json::Value::as_str) == Some("2.0")
            && value.get("id").is_some()
            && (value.get("result").is_some() != value.get("error").is_some())
    }
    match serde_json::from_str::<serde_json::Value>(answer) {
        Ok(serde_json::Value::Array(answers)) => !answers.is_empty() && answers.iter().all(one),
        Ok(value) => one(&value),
        Err(_) => false,
    }
}
