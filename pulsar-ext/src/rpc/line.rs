//! Newline-delimited JSON-RPC: one request (or batch) per line, one response per line.
//!
//! For `socat`, shell scripts, Python and the upstream desktop client. Requests without the
//! `"jsonrpc":"2.0"` member are accepted and answered as JSON-RPC 2.0; string ids are echoed
//! as strings. Subscriptions work too: their notifications follow the response on the same
//! stream. Requests are served concurrently, so a long poll does not hold up the next line.

use std::sync::Arc;

use jsonrpsee::Methods;
use serde_json::{Map, Value, json};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::UnixStream;
use tokio::sync::{Semaphore, mpsc, watch};

use super::upstream;
use crate::session::SessionManager;
use crate::shutdown::Shutdown;
use pulsar_protocol::error as code;

/// Requests of one connection in progress at once.
const MAX_IN_FLIGHT: usize = 64;
/// Lines queued for the writer; with the subscription buffer this bounds what a client that
/// stops reading can pin (about 32 events of ≤ 22 KiB).
const OUTGOING_BUFFER: usize = 16;
/// Notifications a subscription may queue before it waits for the writer.
const SUBSCRIPTION_BUFFER: usize = 16;

/// Serves one line-JSON connection until EOF or shutdown.
pub(crate) async fn serve(
    stream: UnixStream,
    methods: Methods,
    sessions: Arc<SessionManager>,
    max_line: usize,
    mut shutdown: Shutdown,
) {
    let (read_half, write_half) = stream.into_split();
    let (out_tx, mut out_rx) = mpsc::channel::<String>(OUTGOING_BUFFER);
    let writer = tokio::spawn(async move {
        let mut writer = BufWriter::new(write_half);
        while let Some(line) = out_rx.recv().await {
            let written = async {
                writer.write_all(line.as_bytes()).await?;
                writer.write_all(b"\n").await?;
                if out_rx.is_empty() {
                    writer.flush().await?;
                }
                std::io::Result::Ok(())
            };
            if written.await.is_err() {
                break;
            }
        }
    });
    // Dropped at the end: tells subscription forwarders the connection is gone.
    let (closed_tx, closed_rx) = watch::channel(());
    let methods = Arc::new(methods);
    let permits = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut reader = BufReader::new(read_half);
    let mut buf = Vec::new();
    loop {
        let line = tokio::select! {
            line = read_line(&mut reader, &mut buf, max_line) => line,
            _ = shutdown.wait() => break,
        };
        let request = match line {
            Ok(Line::Eof) | Err(_) => break,
            Ok(Line::TooLong) => {
                let _ = out_tx.send(too_long(max_line)).await;
                continue;
            }
            Ok(Line::Complete) => String::from_utf8_lossy(&buf).into_owned(),
        };
        if request.trim().is_empty() {
            continue;
        }
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            break;
        };
        let methods = Arc::clone(&methods);
        let sessions = Arc::clone(&sessions);
        let out_tx = out_tx.clone();
        let closed_rx = closed_rx.clone();
        // A request in flight holds the daemon's stop until it is answered (bounded by the
        // daemon's stop wait), so a create that completes meanwhile is saved, not lost.
        let in_flight = shutdown.clone();
        tokio::spawn(async move {
            handle_line(&request, &methods, &sessions, &out_tx, closed_rx).await;
            drop(permit);
            drop(in_flight);
        });
    }
    drop(closed_tx);
    drop(out_tx);
    let _ = writer.await;
}

enum Line {
    Complete,
    TooLong,
    Eof,
}

/// Reads one line into `buf` (without its newline), refusing to buffer more than `max`
/// bytes: an oversized line is skipped to its end and reported as [`Line::TooLong`].
async fn read_line(
    reader: &mut (impl AsyncBufRead + Unpin),
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Line> {
    buf.clear();
    let mut too_long = false;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(match (too_long, buf.is_empty()) {
                (true, _) => Line::TooLong,
                (false, true) => Line::Eof,
                (false, false) => Line::Complete, // a last line without its newline
            });
        }
        let (chunk, used, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (&available[..i], i + 1, true),
            None => (available, available.len(), false),
        };
        if !too_long {
            if buf.len() + chunk.len() > max {
                too_long = true;
                buf.clear();
            } else {
                buf.extend_from_slice(chunk);
            }
        }
        reader.consume(used);
        if done {
            return Ok(if too_long {
                Line::TooLong
            } else {
                Line::Complete
            });
        }
    }
}

/// Answers every line of `input` in turn as [`serve`] does (one at a time, not
/// concurrently), dispatching to `methods`: what the fuzz targets and the tests that replay
/// their corpus run. The reader's buffer holds `capacity` bytes, so lines arrive in cuts.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) async fn answer_all(
    input: &[u8],
    capacity: usize,
    max_line: usize,
    methods: &Methods,
    sessions: &SessionManager,
) -> Vec<String> {
    let (out_tx, mut out_rx) = mpsc::channel::<String>(OUTGOING_BUFFER);
    // Closed from the start: a subscription's forwarder ends at once.
    let closed_rx = watch::channel(()).1;
    let mut reader = BufReader::with_capacity(capacity.max(1), input);
    let mut buf = Vec::new();
    let mut answers = Vec::new();
    loop {
        let request = match read_line(&mut reader, &mut buf, max_line).await {
            Ok(Line::Eof) | Err(_) => break,
            Ok(Line::TooLong) => {
                answers.push(too_long(max_line));
                continue;
            }
            Ok(Line::Complete) => String::from_utf8_lossy(&buf).into_owned(),
        };
        if request.trim().is_empty() {
            continue;
        }
        handle_line(&request, methods, sessions, &out_tx, closed_rx.clone()).await;
        while let Ok(answer) = out_rx.try_recv() {
            answers.push(answer);
        }
    }
    answers
}

/// Answers one line: a request or a batch.
async fn handle_line(
    line: &str,
    methods: &Methods,
    sessions: &SessionManager,
    out: &mpsc::Sender<String>,
    closed: watch::Receiver<()>,
) {
    let value: Value = match serde_json::from_str(line) {
        Ok(value) => value,
        Err(err) => {
            let _ = out
                .send(error_response(
                    Value::Null,
                    code::PARSE_ERROR,
                    &format!("Parse error: {err}"),
                ))
                .await;
            return;
        }
    };
    let mut streams = Vec::new();
    let response = match value {
        Value::Array(calls) if calls.is_empty() => Some(error_response(
            Value::Null,
            code::INVALID_REQUEST,
            "Invalid request: empty batch",
        )),
        Value::Array(calls) => {
            let mut answers = Vec::new();
            for call in calls {
                let (answer, stream) = call_one(call, methods, sessions).await;
                answers.extend(answer);
                streams.extend(stream);
            }
            (!answers.is_empty()).then(|| format!("[{}]", answers.join(",")))
        }
        call => {
            let (answer, stream) = call_one(call, methods, sessions).await;
            streams.extend(stream);
            answer
        }
    };
    if let Some(response) = response
        && out.send(response).await.is_err()
    {
        return;
    }
    // Notifications of any subscription opened here follow its response.
    let forwards = streams
        .into_iter()
        .map(|rx| forward(rx, out.clone(), closed.clone()));
    futures_util::future::join_all(forwards).await;
}

type Notifications = mpsc::Receiver<Box<serde_json::value::RawValue>>;

/// Runs one call. Returns its response (none for a notification) and, for a subscription,
/// the stream of its notifications.
async fn call_one(
    call: Value,
    methods: &Methods,
    sessions: &SessionManager,
) -> (Option<String>, Option<Notifications>) {
    let Value::Object(mut call) = call else {
        return (
            Some(error_response(
                Value::Null,
                code::INVALID_REQUEST,
                "Invalid request: expected an object",
            )),
            None,
        );
    };
    let from_upstream = upstream::is_upstream(&call);
    normalise(&mut call);
    let is_notification = !call.contains_key("id");
    if is_notification {
        call.insert("id".to_owned(), Value::Null);
    }
    let id = call.get("id").cloned().unwrap_or(Value::Null);
    let method = call
        .get("method")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if from_upstream && method == pulsar_protocol::method::CREATE_SESSION {
        upstream::ssh_user_at_host(&mut call);
    }
    let wanted_name = (from_upstream && method == pulsar_protocol::method::CREATE_SESSION)
        .then(|| upstream::requested_name(&call))
        .flatten();
    let mut attempts = 0;
    let answer = loop {
        if let Some(base) = &wanted_name {
            upstream::set_name(&mut call, &upstream::free_name(sessions, base));
        }
        let text = Value::Object(call.clone()).to_string();
        let answer = methods.raw_json_request(&text, SUBSCRIPTION_BUFFER).await;
        attempts += 1;
        // Another create took the free name between the look and the call: look again.
        match &answer {
            Ok((response, _))
                if wanted_name.is_some()
                    && attempts < upstream::NAME_ATTEMPTS
                    && upstream::is_name_taken(response.get()) => {}
            _ => break answer,
        }
    };
    match answer {
        Ok(_) if is_notification => (None, None),
        Ok((response, notifications)) => {
            let response = response.get().to_owned();
            let response = if from_upstream {
                upstream::translate_response(&method, response)
            } else {
                response
            };
            (Some(response), Some(notifications))
        }
        Err(err) => (
            Some(error_response(
                id,
                code::INVALID_REQUEST,
                &format!("Invalid request: {err}"),
            )),
            None,
        ),
    }
}

/// Upstream requests omit `"jsonrpc"` and sometimes `params`; fill them in.
fn normalise(call: &mut Map<String, Value>) {
    call.entry("jsonrpc")
        .or_insert_with(|| Value::String("2.0".to_owned()));
    if call.get("params").is_some_and(Value::is_null) {
        call.remove("params");
    }
}

async fn forward(
    mut rx: Notifications,
    out: mpsc::Sender<String>,
    mut closed: watch::Receiver<()>,
) {
    loop {
        let notification = tokio::select! {
            n = rx.recv() => n,
            _ = closed.changed() => None,
        };
        let Some(notification) = notification else {
            break;
        };
        if out.send(notification.get().to_owned()).await.is_err() {
            break;
        }
    }
}

fn error_response(id: Value, code: i32, message: &str) -> String {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}}).to_string()
}

fn too_long(max: usize) -> String {
    json!({
        "jsonrpc": "2.0",
        "id": null,
        "error": {
            "code": code::OVERSIZED_REQUEST,
            "message": format!("Request is too big: the limit is {max} bytes"),
            "data": {"limit": max},
        }
    })
    .to_string()
}
