//! Entry points for the fuzz targets in `pulsar-ext/fuzz/` (the `fuzzing` feature): each takes
//! outside bytes where the daemon takes them and goes as far as answering, never further.
//!
//! Not API: hidden, and compiled only for the fuzz targets and this crate's tests (which
//! replay every target's committed corpus, so a crash found once stays fixed). Each entry
//! point asserts what must hold of its answer, so a wrong answer is a crash too.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::store::RawSession;

/// Answers every line of `data` as a line-JSON connection would (framing, JSON, batches,
/// notifications, both id kinds, the upstream dialect, each call's parameters decoded for
/// its method), each call answered "decoded; not served" instead of acting. The first two
/// bytes choose the read buffer's size (so lines arrive in cuts) and the request size limit.
/// Panics if an answer is not a JSON-RPC response.
pub fn line_json(data: &[u8]) -> Vec<String> {
    let [capacity, limit, input @ ..] = data else {
        return Vec::new();
    };
    let capacity = 1 + usize::from(*capacity);
    let max_line = 16 + 64 * usize::from(*limit);
    let answers = crate::rpc::answer_decoded(input, capacity, max_line);
    for answer in &answers {
        assert!(crate::rpc::is_response(answer), "not a response: {answer}");
    }
    answers
}

/// Serves `data` as one connection to the daemon's socket (a real Unix socket pair): the
/// first-byte sniffer, then the line-JSON framing, or HTTP, jsonrpsee's WebSocket upgrade and
/// its frames, each call decoded for its method and answered "decoded; not served". Returns
/// what the daemon wrote before it closed the connection. Panics if it does not close it
/// within 5 s of the input's end, or if a line-JSON answer is not JSON.
pub fn connection(data: &[u8]) -> Vec<u8> {
    crate::rpc::answer_connection(data)
}

/// Serves `data` as one connection to the desktop's WebSocket port, as it goes on once the
/// listener has checked the peer's uid: the HTTP upgrade (path, `Origin`), then WebSocket
/// frames, input to a real session (a `cat`, id `5e551011-0000-4000-8000-00000000d35c`),
/// its screen and output back. The stream is an in-memory pipe (64 KiB each way), its
/// write side shut at the input's end. Returns what the daemon wrote before it closed the
/// connection. Panics if it does not close it within 5 s of the input's end, or if what it
/// wrote is not an HTTP response followed (after a `101`) by unmasked text frames of base64
/// (or `Error: ...`), pongs and a close.
pub fn desktop_ws(data: &[u8]) -> Vec<u8> {
    crate::rpc::answer_desktop(data)
}

/// Serves `data` as one attach stream connection to the daemon's socket (a real Unix socket
/// pair): the first byte, the hello line, then input and size frames, to a real session (a
/// `cat`, id `5e551011-0000-4000-8000-00000000d35c`), its screen and output back. Returns
/// what the daemon wrote before it closed the connection. Panics if it does not close it
/// within 5 s of the input's end, or if what it wrote is not one handshake answer followed
/// (after a `result`) by well-formed frames of the kinds the protocol names.
pub fn attach_stream(data: &[u8]) -> Vec<u8> {
    crate::rpc::answer_attach_stream(data)
}

/// Every method's name, sorted: what [`call`] picks from.
pub fn methods() -> &'static [&'static str] {
    crate::rpc::method_names()
}

/// Calls the method `methods()[method % len]` with `params` (any JSON text on one line) and
/// answers as [`line_json`] does: one response, decoded or refused, never a panic. `None`
/// for parameters with a newline, which the framing splits into two requests (that is
/// [`line_json`]'s to fuzz).
pub fn call(method: u8, params: &str) -> Option<String> {
    if params.contains('\n') {
        return None;
    }
    let names = methods();
    let name = names[usize::from(method) % names.len()];
    let request = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{name}","params":{params}}}"#);
    let mut answers = crate::rpc::answer_decoded(request.as_bytes(), 8192, usize::MAX);
    assert!(answers.len() <= 1, "one request, {} answers", answers.len());
    let answer = answers.pop().expect("every request with an id is answered");
    assert!(crate::rpc::is_response(&answer), "not a response: {answer}");
    Some(answer)
}

/// Decodes `text` as the daemon decodes base64 from a client: `send_input`'s `data` (the
/// protocol's `Base64Data`) and the desktop WebSocket's text frames. Panics if the two
/// disagree or if what decodes does not encode back to the same text.
pub fn base64(text: &str) -> Option<Vec<u8>> {
    let json = serde_json::Value::String(text.to_owned());
    let data = serde_json::from_value::<pulsar_protocol::Base64Data>(json).ok();
    let desktop = STANDARD.decode(text.trim_ascii()).ok();
    if text.trim_ascii() == text {
        assert_eq!(
            data.as_ref().map(|d| d.as_bytes()),
            desktop.as_deref(),
            "the two decoders disagree on {text:?}"
        );
    }
    let bytes = data?.into_bytes();
    assert_eq!(STANDARD.encode(&bytes), text, "decoded, but not canonical");
    Some(bytes)
}

/// What a `known_hosts` file of `text` says about `host`:`port` presenting `key_base64`
/// (`None` when that key does not parse), as the SSH backend decides when it connects.
pub fn known_hosts(text: &str, host: &str, port: u16, key_base64: &str) -> Option<String> {
    crate::backend::known_hosts_check(text, host, port, key_base64).map(|v| format!("{v:?}"))
}

/// Writes the sessions `text` describes into a database of the current schema and loads them
/// back as the daemon does at start: the number it would restore, or the error that would
/// stop the store opening. `text` holds sessions separated by `--` lines, each a line per
/// field: id, name, config (JSON), state, created_at, last_active, exit_code, exit_signal,
/// exited_at, then optionally the `session_state` row's offset, scrollback and screen, and
/// then output chunks, one `offset data` line each (an unreadable number is NULL, or 0).
pub fn stored_rows(text: &str) -> Result<usize, String> {
    let sessions: Vec<RawSession> = text.split("\n--\n").map(raw_session).collect();
    let loaded = crate::store::decode_rows(&sessions)?;
    assert!(
        loaded.len() <= sessions.len(),
        "more sessions loaded than stored"
    );
    for stored in &loaded {
        if let Some(output) = &stored.output {
            assert_eq!(
                output.session_id, stored.row.id,
                "output of another session"
            );
        }
    }
    Ok(loaded.len())
}

fn raw_session(text: &str) -> RawSession {
    let mut lines = text.split('\n');
    let mut field = || lines.next().unwrap_or_default().to_owned();
    let number = |text: String| text.trim().parse::<i64>().ok();
    let (id, name, config, state) = (field(), field(), field(), field());
    let times = (number(field()).unwrap_or(0), number(field()).unwrap_or(0));
    let ended = (number(field()), number(field()), number(field()));
    let state_row = number(field()).map(|offset| {
        let blob = |text: String| (!text.is_empty()).then(|| text.into_bytes());
        (offset, blob(field()), blob(field()))
    });
    let chunks = std::iter::from_fn(|| {
        let line = lines.next()?;
        let (offset, data) = line.split_once(' ').unwrap_or((line, ""));
        Some((offset.parse().unwrap_or(0), data.as_bytes().to_vec()))
    })
    .collect();
    RawSession {
        id,
        name,
        config,
        state,
        times,
        ended,
        state_row,
        chunks,
    }
}

/// The known-hosts target's input: a key, the host, the port and the file, one after the
/// other, split at the first three newlines; shared with the fuzz target and its seeds.
pub fn split_known_hosts_input(data: &str) -> Option<(&str, &str, u16, &str)> {
    let mut parts = data.splitn(4, '\n');
    let key = parts.next()?;
    let host = parts.next()?;
    let port = parts.next()?.parse().ok()?;
    Some((key, host, port, parts.next().unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    //! Every committed input of every target, replayed: the crashes found stay fixed.

    use std::path::PathBuf;

    use super::*;

    fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/corpus")
            .join(target);
        let mut inputs: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| entry.unwrap().path())
            .map(|path| {
                let bytes = std::fs::read(&path).unwrap();
                (path, bytes)
            })
            .collect();
        inputs.sort();
        assert!(!inputs.is_empty(), "{}: no seeds", dir.display());
        inputs
    }

    #[test]
    fn the_line_json_corpus_is_answered_without_a_panic() {
        for (path, input) in corpus("line_json") {
            let answers = line_json(&input);
            eprintln!("{}: {} answers", path.display(), answers.len());
        }
    }

    #[test]
    fn every_seed_request_reaches_its_method_decoded() {
        // The seeds are real requests with valid parameters: each gets past decoding.
        for (path, input) in corpus("line_json") {
            for answer in line_json(&input) {
                assert!(
                    answer.contains(crate::rpc::DECODED)
                        || !answer.contains(&format!(
                            "\"code\":{}",
                            pulsar_protocol::error::INVALID_PARAMS
                        )),
                    "{}: {answer}",
                    path.display()
                );
            }
        }
    }

    #[test]
    fn the_connection_corpus_is_answered_without_a_panic() {
        for (path, input) in corpus("connection") {
            let answer = connection(&input);
            eprintln!("{}: {} bytes back", path.display(), answer.len());
        }
    }

    #[test]
    fn a_websocket_seed_is_upgraded_and_its_call_answered() {
        let input = std::fs::read(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/connection/websocket"),
        )
        .unwrap();
        let answer = String::from_utf8_lossy(&connection(&input)).into_owned();
        assert!(answer.starts_with("HTTP/1.1 101"), "{answer}");
        assert!(answer.contains(crate::rpc::DECODED), "{answer}");
    }

    #[test]
    fn the_desktop_ws_corpus_is_answered_without_a_panic() {
        for (path, input) in corpus("desktop_ws") {
            let answer = desktop_ws(&input);
            eprintln!("{}: {} bytes back", path.display(), answer.len());
        }
    }

    #[test]
    fn every_desktop_ws_seed_upgrade_is_answered_as_its_name_says() {
        for (path, input) in corpus("desktop_ws") {
            let file = path.file_name().unwrap().to_string_lossy().into_owned();
            let answer = String::from_utf8_lossy(&desktop_ws(&input)).into_owned();
            let status = match file.as_str() {
                "refused-origin" => "HTTP/1.1 403 ",
                "refused-path" => "HTTP/1.1 404 ",
                "half-handshake" => "HTTP/1.1 400 ",
                _ => "HTTP/1.1 101 ",
            };
            assert!(answer.starts_with(status), "{file}: {answer:?}");
        }
    }

    #[test]
    fn the_attach_stream_corpus_is_answered_without_a_panic() {
        for (path, input) in corpus("attach_stream") {
            let answer = attach_stream(&input);
            eprintln!("{}: {} bytes back", path.display(), answer.len());
        }
    }

    #[test]
    fn an_attach_stream_seed_is_attached_and_anything_after_the_answer_starts_with_a_screen() {
        let input = std::fs::read(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/attach_stream/typing"),
        )
        .unwrap();
        let answer = attach_stream(&input);
        let text = String::from_utf8_lossy(&answer);
        assert!(
            text.starts_with("{\"result\":{\"client_id\":\"conn-"),
            "{text}"
        );
        // The seed's write side closes right behind its frames, and a closed client is
        // detached at once: the screen may or may not have been written by then.
        let frames = &answer[answer.iter().position(|&b| b == b'\n').unwrap() + 1..];
        if let Some(first) = frames.first() {
            assert_eq!(*first, b's', "{text}");
        }
    }

    #[test]
    fn the_params_corpus_is_answered_without_a_panic() {
        for (_, input) in corpus("params") {
            if let [method, params @ ..] = input.as_slice() {
                call(*method, &String::from_utf8_lossy(params));
            }
        }
    }

    #[test]
    fn every_params_seed_calls_the_method_it_is_named_after() {
        // `make-seeds` writes METHOD-LINE with METHOD's index; a method added since shifts
        // the indices, and the seeds must be made again.
        let names = methods();
        for (path, input) in corpus("params") {
            let file = path.file_name().unwrap().to_string_lossy().into_owned();
            let Some((method, _)) = file.rsplit_once('-').filter(|(m, _)| names.contains(m)) else {
                continue;
            };
            let picked = names[usize::from(input[0]) % names.len()];
            assert_eq!(
                picked,
                method,
                "{}: run pulsar-ext/fuzz/make-seeds",
                path.display()
            );
        }
    }

    #[test]
    fn parameters_with_a_newline_are_not_called_as_one_request() {
        // The params target's first crash (a harness bug: the framing made it two lines).
        assert_eq!(call(6, "nu\nn"), None);
        assert!(call(6, "null").is_some_and(|a| a.contains("\"id\":1")));
    }

    #[test]
    fn the_base64_corpus_decodes_without_a_panic() {
        for (_, input) in corpus("base64") {
            base64(&String::from_utf8_lossy(&input));
        }
    }

    #[test]
    fn the_known_hosts_corpus_is_read_without_a_panic() {
        for (path, input) in corpus("known_hosts") {
            let text = String::from_utf8_lossy(&input);
            let (key, host, port, file) = split_known_hosts_input(&text)
                .unwrap_or_else(|| panic!("{}: not key, host, port, file", path.display()));
            known_hosts(file, host, port, key);
        }
    }

    #[test]
    fn the_stored_rows_corpus_loads_without_a_panic() {
        for (path, input) in corpus("stored_rows") {
            let loaded = stored_rows(&String::from_utf8_lossy(&input));
            eprintln!("{}: {loaded:?}", path.display());
        }
    }

    #[test]
    fn a_seed_session_row_is_restored() {
        let config = r#"{"type":{"kind":"local","command":["cat"]},"cols":80,"rows":24}"#;
        let text = format!(
            "8d3f2c1e-5b6a-4c7d-9e8f-0a1b2c3d4e5f\nseed\n{config}\ndetached\n1\n2\n\n\n\n0\nhello\n\n0 hel\n3 lo"
        );
        assert_eq!(stored_rows(&text), Ok(1));
    }

    #[test]
    fn every_method_is_reachable_by_name() {
        let names = methods();
        for name in [
            "create_session",
            "send_input",
            "workspace_create",
            "subscribe_output",
        ] {
            assert!(names.contains(&name), "{name} missing from {names:?}");
        }
    }
}
