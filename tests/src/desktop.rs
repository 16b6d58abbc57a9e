//! The desktop's side of Pulsar: its output WebSocket read the way the upstream desktop reads
//! it, and a client for the line socket with the desktop's own strict shapes.

use std::net::SocketAddr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpStream, UnixStream};
use tokio_util::compat::{Compat, TokioAsyncReadCompatExt};

use crate::DEADLINE;

/// A TCP port for a daemon's `desktop_websocket` (free when asked).
pub fn desktop_port() -> u16 {
    crate::sshd::free_port()
}

/// Connects to `port` once the daemon listens there.
pub async fn connect_tcp(port: u16) -> TcpStream {
    crate::eventually("the desktop port", || async move {
        TcpStream::connect(("127.0.0.1", port)).await.ok()
    })
    .await
}

/// One frame from the server.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A text frame.
    Text(String),
    /// The server closed the connection.
    Closed,
}

/// The desktop output WebSocket, as `PulsarTerminal.tsx` uses it.
pub struct DesktopSocket {
    sender: soketto::Sender<Compat<TcpStream>>,
    receiver: soketto::Receiver<Compat<TcpStream>>,
}

/// Opens `ws://127.0.0.1:{port}{path}` with `origin` (none: a native client). `Err` is the
/// HTTP status of a refused handshake.
pub async fn open(port: u16, path: &str, origin: Option<&str>) -> Result<DesktopSocket, u16> {
    handshake(connect_tcp(port).await, port, path, origin).await
}

/// Like [`open`] (no Origin), with a receive buffer of a few KiB, for a reader that falls
/// behind as soon as it stops reading.
pub async fn open_slow(port: u16, path: &str) -> Result<DesktopSocket, u16> {
    let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let stream = socket
        .connect(SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .expect("connect");
    handshake(stream, port, path, None).await
}

async fn handshake(
    stream: TcpStream,
    port: u16,
    path: &str,
    origin: Option<&str>,
) -> Result<DesktopSocket, u16> {
    let host = format!("127.0.0.1:{port}");
    let headers: Vec<soketto::handshake::client::Header> = origin
        .map(|value| soketto::handshake::client::Header {
            name: "Origin",
            value: value.as_bytes(),
        })
        .into_iter()
        .collect();
    let mut client = soketto::handshake::Client::new(stream.compat(), &host, path);
    client.set_headers(&headers);
    let response = tokio::time::timeout(DEADLINE, client.handshake())
        .await
        .expect("the handshake in time");
    match response {
        Ok(soketto::handshake::ServerResponse::Accepted { .. }) => {}
        Ok(soketto::handshake::ServerResponse::Rejected { status_code }) => {
            return Err(status_code);
        }
        Ok(other) => panic!("unexpected handshake answer: {other:?}"),
        // Closed before any answer.
        Err(_) => return Err(0),
    }
    let (sender, receiver) = client.into_builder().finish();
    Ok(DesktopSocket { sender, receiver })
}

/// The path of session `id`'s stream.
pub fn session_path(id: &str) -> String {
    format!("/ws/{id}")
}

impl DesktopSocket {
    /// The next frame, within the deadline.
    pub async fn next(&mut self) -> Frame {
        let mut message = Vec::new();
        let received = tokio::time::timeout(DEADLINE, self.receiver.receive_data(&mut message))
            .await
            .expect("a frame in time");
        match received {
            Ok(soketto::Data::Text(_)) => Frame::Text(String::from_utf8(message).expect("UTF-8")),
            Ok(soketto::Data::Binary(_)) => panic!("the desktop expects text frames only"),
            Err(_) => Frame::Closed,
        }
    }

    /// The next frame's bytes, base64-decoded as the desktop's `atob` does.
    pub async fn next_bytes(&mut self) -> Option<Vec<u8>> {
        match self.next().await {
            Frame::Text(text) => Some(STANDARD.decode(text).expect("frames are base64")),
            Frame::Closed => None,
        }
    }

    /// Decoded frames until their text contains `needle`; returns all of it.
    pub async fn read_until(&mut self, needle: &str) -> String {
        let deadline = crate::Deadline::start();
        let mut seen = Vec::new();
        while !String::from_utf8_lossy(&seen).contains(needle) {
            deadline.check(needle);
            match self.next_bytes().await {
                Some(bytes) => seen.extend(bytes),
                None => panic!(
                    "closed before {needle:?}: {:?}",
                    String::from_utf8_lossy(&seen)
                ),
            }
        }
        String::from_utf8_lossy(&seen).into_owned()
    }

    /// Types `bytes` as a base64 text frame.
    pub async fn send_text_input(&mut self, bytes: &[u8]) {
        self.sender.send_text(STANDARD.encode(bytes)).await.unwrap();
        self.sender.flush().await.unwrap();
    }

    /// Types `bytes` as a binary frame.
    pub async fn send_binary_input(&mut self, bytes: &[u8]) {
        self.sender.send_binary(bytes).await.unwrap();
        self.sender.flush().await.unwrap();
    }

    /// Closes as the desktop does on unmount.
    pub async fn close(mut self) {
        let _ = self.sender.close().await;
    }
}

/// The desktop's daemon client: newline JSON, string ids, no `jsonrpc`, and answers read
/// into the desktop's own types (an error if they do not fit).
pub struct DesktopClient {
    reader: BufReader<tokio::net::unix::OwnedReadHalf>,
    writer: tokio::net::unix::OwnedWriteHalf,
    next_id: u64,
}

/// A failed call: the daemon's code and message.
#[derive(Debug)]
pub struct DaemonError {
    /// The error code.
    pub code: i32,
    /// The message.
    pub message: String,
}

impl DesktopClient {
    /// Connects to the daemon's socket.
    pub async fn connect(socket: &std::path::Path) -> Self {
        let (read, writer) = UnixStream::connect(socket)
            .await
            .expect("connect")
            .into_split();
        Self {
            reader: BufReader::new(read),
            writer,
            next_id: 0,
        }
    }

    /// One call, its `result` read strictly into `T`, as the desktop's `send_request` and
    /// `serde_json::from_value` do.
    pub async fn call<T: DeserializeOwned>(
        &mut self,
        method: &str,
        params: Value,
    ) -> Result<T, DaemonError> {
        let result = self.raw(method, params).await?;
        Ok(serde_json::from_value(result.clone())
            .unwrap_or_else(|e| panic!("{method}: the desktop cannot read {result}: {e}")))
    }

    /// One call; its `result` as JSON.
    pub async fn raw(&mut self, method: &str, params: Value) -> Result<Value, DaemonError> {
        self.next_id += 1;
        let id = self.next_id.to_string();
        let mut line = json!({"id": id, "method": method, "params": params}).to_string();
        line.push('\n');
        self.writer.write_all(line.as_bytes()).await.unwrap();
        self.writer.flush().await.unwrap();
        let mut response = String::new();
        tokio::time::timeout(DEADLINE, self.reader.read_line(&mut response))
            .await
            .expect("an answer in time")
            .expect("read");
        let response: Value = serde_json::from_str(&response).expect("JSON");
        // The desktop's Response: `id` a string equal to the request's.
        assert_eq!(response["id"].as_str(), Some(id.as_str()), "{response}");
        if let Some(error) = response.get("error") {
            return Err(DaemonError {
                code: error["code"].as_i64().expect("code") as i32,
                message: error["message"].as_str().expect("message").to_owned(),
            });
        }
        Ok(response.get("result").cloned().expect("a result"))
    }
}
