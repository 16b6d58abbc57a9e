//! One desktop connection served from bytes in memory (the `desktop_ws` fuzz target and the
//! tests that replay its corpus): [`stream::serve`], as the TCP listener calls it once the
//! peer's uid is checked, against a real session manager holding one real session.
//!
//! The session is `rpc::fixture`'s `cat` (id `5e551011-0000-4000-8000-00000000d35c`). If
//! an input ended it, the next input finds it started again.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::{DesktopContext, stream};
use crate::rpc::fixture::{Fixture, Unrecorded, keep_cat_running};

/// The in-memory pipe's buffer each way: what the daemon's socket buffer would be.
const PIPE_BYTES: usize = 64 * 1024;
/// Where an HTTP request's (and response's) head ends.
const END_OF_HEAD: &[u8] = b"\r\n\r\n";
/// Longest the connection may stay open once the input has ended.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

thread_local! {
    /// Made once per thread: what every desktop connection shares in the daemon.
    static FIXTURE: Fixture<DesktopContext> = Fixture::with_cat(|sessions, config| DesktopContext {
        sessions,
        audit: Arc::new(Unrecorded),
        origins: config.desktop_websocket_origins.clone(),
        max_input_bytes: config.max_input_bytes,
    });
}

/// Serves `input` as the bytes a desktop client sends on one connection (the HTTP upgrade
/// request up to its empty line; once it is answered, the rest: WebSocket frames), its
/// write side shut at the input's end, and returns what the daemon wrote back before it
/// closed the connection.
///
/// Panics if the connection is still open [`CLOSE_TIMEOUT`] after the input ended, or if
/// the answer is not an HTTP response (followed, after a `101`, by the frames the protocol
/// names: see [`check_answer`]).
pub(crate) fn answer_connection(input: &[u8]) -> Vec<u8> {
    FIXTURE.with(|fixture| {
        fixture.runtime.block_on(async {
            keep_cat_running(&fixture.context.sessions).await;
            let (client, server) = tokio::io::duplex(PIPE_BYTES);
            let peer = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
            let uid = nix::unistd::geteuid().as_raw();
            let served = tokio::spawn(stream::serve(
                server,
                peer,
                uid,
                Arc::clone(&fixture.context),
                fixture.shutdown.clone(),
            ));
            let (mut read, mut write) = tokio::io::split(client);
            // Told once the daemon's HTTP answer is complete (or the connection closed).
            let (answered_tx, answered) = tokio::sync::oneshot::channel::<()>();
            let reader = tokio::spawn(async move {
                let (mut answer, mut buf) = (Vec::new(), [0u8; 8192]);
                let mut answered_tx = Some(answered_tx);
                while let Ok(n @ 1..) = read.read(&mut buf).await {
                    answer.extend_from_slice(&buf[..n]);
                    if answered_tx.is_some() && answer.windows(4).any(|w| w == END_OF_HEAD) {
                        answered_tx.take().map(|tx| tx.send(()));
                    }
                }
                answer
            });
            // As RFC 6455 asks of a client, the frames wait for the handshake's answer (the
            // daemon drops bytes that come with the request).
            let (request, frames) = match input.windows(4).position(|w| w == END_OF_HEAD) {
                Some(end) => input.split_at(end + 4),
                None => (input, &[][..]),
            };
            // The daemon may close first (a refused handshake, a close frame).
            if write.write_all(request).await.is_ok() && !frames.is_empty() {
                match tokio::time::timeout(CLOSE_TIMEOUT, answered).await {
                    Ok(_) => {
                        let _ = write.write_all(frames).await;
                    }
                    Err(_) => panic!("a complete request was not answered within 5 s"),
                }
            }
            let _ = write.shutdown().await;
            let answer = match tokio::time::timeout(CLOSE_TIMEOUT, reader).await {
                Ok(answer) => answer.expect("the reader does not panic"),
                Err(_) => panic!("the desktop connection was still open 5 s after the input ended"),
            };
            served
                .await
                .expect("the desktop connection's task did not panic");
            check_answer(&answer);
            answer
        })
    })
}

/// Asserts that `answer` is what a desktop connection may write: an HTTP response, and after
/// a `101` only unmasked server frames: text frames of base64 (or an `Error: ...` message),
/// pongs and a close. The last frame may be cut short (the connection ended while it was
/// being written).
pub(crate) fn check_answer(answer: &[u8]) {
    if answer.is_empty() {
        // The handshake timed out, or the daemon stopped: nothing to say.
        return;
    }
    let text = String::from_utf8_lossy(answer);
    assert!(
        text.starts_with("HTTP/1.1 "),
        "not an HTTP response: {text:?}"
    );
    let Some(end) = answer.windows(4).position(|w| w == END_OF_HEAD) else {
        panic!("an HTTP response without its end: {text:?}");
    };
    let (head, mut frames) = (&answer[..end], &answer[end + 4..]);
    if !head.starts_with(b"HTTP/1.1 101 ") {
        assert!(frames.is_empty(), "a refusal with a body: {text:?}");
        return;
    }
    while let [first, second, rest @ ..] = frames {
        assert_eq!(first & 0x80, 0x80, "a fragmented server frame: {frames:?}");
        assert_eq!(second & 0x80, 0, "a masked server frame: {frames:?}");
        let (len, rest) = match second & 0x7f {
            126 if rest.len() >= 2 => (
                usize::from(u16::from_be_bytes([rest[0], rest[1]])),
                &rest[2..],
            ),
            127 if rest.len() >= 8 => {
                let len = u64::from_be_bytes(rest[..8].try_into().expect("8 bytes"));
                (
                    usize::try_from(len).expect("a length that fits"),
                    &rest[8..],
                )
            }
            126 | 127 => return,
            len => (usize::from(len), rest),
        };
        let Some(payload) = rest.get(..len) else {
            return;
        };
        match first & 0x0f {
            0x1 => assert!(
                payload.starts_with(b"Error: ") || STANDARD.decode(payload).is_ok(),
                "a text frame that is neither base64 nor an error: {:?}",
                String::from_utf8_lossy(payload)
            ),
            0x8 | 0xa => {}
            opcode => panic!("a server frame with opcode {opcode:#x}"),
        }
        frames = &rest[len..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    use crate::rpc::fixture::SESSION_ID;

    fn upgrade(path: &str, origin: Option<&str>) -> Vec<u8> {
        let origin = origin
            .map(|o| format!("Origin: {o}\r\n"))
            .unwrap_or_default();
        format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:3030\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n{origin}\r\n"
        )
        .into_bytes()
    }

    fn session_path() -> String {
        format!("/ws/{SESSION_ID}")
    }

    /// A client's masked frame, FIN set.
    fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
        assert!(payload.len() < 126);
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let mut frame = vec![0x80 | opcode, 0x80 | payload.len() as u8];
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        frame
    }

    /// The fixture session's screen, once it shows `text` (within 5 s).
    fn screen_showing(text: &str) -> String {
        FIXTURE.with(|fixture| {
            fixture.runtime.block_on(async {
                let session = fixture.context.sessions.get(SESSION_ID).unwrap();
                let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
                loop {
                    let screen =
                        String::from_utf8_lossy(session.snapshot(0).data.as_bytes()).into_owned();
                    if screen.contains(text) || tokio::time::Instant::now() > deadline {
                        return screen;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
        })
    }

    #[test]
    fn an_upgrade_to_the_session_is_accepted_and_sent_its_screen() {
        let answer = answer_connection(&upgrade(&session_path(), None));
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with("HTTP/1.1 101 "), "{text}");
        let end = answer.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        assert_eq!(answer.get(end + 4), Some(&0x81), "no text frame: {text}");
    }

    #[test]
    fn base64_and_binary_input_frames_reach_the_session() {
        let mut input = upgrade(&session_path(), Some("tauri://localhost"));
        input.extend(frame(0x1, STANDARD.encode("typed-as-text ").as_bytes()));
        input.extend(frame(0x2, b"typed-as-binary"));
        answer_connection(&input);
        // The snapshot draws the space as a cursor move.
        let screen = screen_showing("typed-as-binary");
        assert!(
            screen.contains("typed-as-text") && screen.contains("typed-as-binary"),
            "{screen:?}"
        );
    }

    #[test]
    fn an_origin_not_allowed_is_answered_403() {
        let mut input = upgrade(&session_path(), Some("https://evil.example"));
        input.extend(frame(0x2, b"never-typed"));
        let answer = answer_connection(&input);
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with("HTTP/1.1 403 "), "{text}");
    }

    #[test]
    fn an_unknown_session_is_told_so_and_closed() {
        let path = format!("/ws/{}", Uuid::nil());
        let answer = answer_connection(&upgrade(&path, None));
        let expected = STANDARD.encode("never");
        let text = String::from_utf8_lossy(&answer);
        assert!(text.contains("Error: Session not found"), "{text}");
        assert!(!text.contains(&expected));
        assert!(
            answer.ends_with(&[0x88, 0x02, 0x03, 0xe8]),
            "no close: {text}"
        );
    }

    #[test]
    fn input_that_ends_the_cat_leaves_a_session_for_the_next_input() {
        // In case ^D reached the cat before `stty raw`: the next connection starts it again.
        FIXTURE.with(|fixture| {
            fixture.runtime.block_on(async {
                fixture
                    .context
                    .sessions
                    .terminate(SESSION_ID)
                    .await
                    .unwrap();
            })
        });
        let answer = answer_connection(&upgrade(&session_path(), None));
        assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 101 "));
        FIXTURE.with(|fixture| {
            assert!(fixture.context.sessions.get(SESSION_ID).unwrap().is_alive());
        });
    }

    #[test]
    #[should_panic(expected = "a masked server frame")]
    fn a_masked_server_frame_is_caught() {
        let mut answer = b"HTTP/1.1 101 Switching Protocols\r\n\r\n".to_vec();
        answer.extend(frame(0x1, b"aGk="));
        check_answer(&answer);
    }

    #[test]
    #[should_panic(expected = "neither base64 nor an error")]
    fn a_text_frame_that_is_not_base64_is_caught() {
        let answer = b"HTTP/1.1 101 Switching Protocols\r\n\r\n\x81\x03a!b";
        check_answer(answer);
    }
}
