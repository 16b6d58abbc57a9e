//! A terminal handed over on the attach stream (`StreamHello::terminal`, its descriptor sent
//! with the hello): the daemon draws the screen on it, writes the output to it and reads the
//! keys from it itself, until it hands it back with a `returned` frame that says where the
//! output stopped. Each test hands over the terminal side of a real PTY pair and plays the
//! terminal emulator on its other side.

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::Duration;

use pulsar_e2e::*;
use pulsar_protocol::stream::{
    AttachStream, CLEAR_SCREEN, ServerFrame, StreamHello, TerminalHandover, TerminalReturned,
};
use serde_json::{Value, json};

/// Ctrl-\, the detach key here.
const DETACH: u8 = 0x1c;

/// A PTY pair: `terminal` is what a client hands over (in raw mode, as `pulsar attach`
/// leaves it), `emulator` the side a terminal emulator reads the screen from and types into.
struct Pty {
    terminal: OwnedFd,
    emulator: File,
    /// What the emulator has read so far.
    shown: Vec<u8>,
}

impl Pty {
    fn open() -> Self {
        let pty = nix::pty::openpty(None, None).expect("openpty");
        let mut raw = nix::sys::termios::tcgetattr(&pty.slave).unwrap();
        nix::sys::termios::cfmakeraw(&mut raw);
        nix::sys::termios::tcsetattr(&pty.slave, nix::sys::termios::SetArg::TCSANOW, &raw).unwrap();
        let flags = nix::fcntl::OFlag::O_NONBLOCK;
        nix::fcntl::fcntl(pty.master.as_raw_fd(), nix::fcntl::FcntlArg::F_SETFL(flags)).unwrap();
        Self {
            terminal: pty.slave,
            emulator: File::from(pty.master),
            shown: Vec::new(),
        }
    }

    /// The terminal's path (`/dev/pts/N`).
    fn path(&self) -> String {
        std::fs::read_link(format!("/proc/self/fd/{}", self.terminal.as_raw_fd()))
            .unwrap()
            .display()
            .to_string()
    }

    /// Reads what the terminal shows now, without waiting for more.
    fn drain(&mut self) {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = self.emulator.read(&mut buf) {
            self.shown.extend_from_slice(&buf[..n]);
        }
    }

    fn type_keys(&mut self, keys: &[u8]) {
        self.emulator.write_all(keys).unwrap();
    }

    /// Reads what the terminal shows until it holds `needle` (since the start); returns all
    /// of it.
    async fn shows(&mut self, needle: &str) -> String {
        let deadline = Deadline::start();
        loop {
            let mut buf = [0u8; 4096];
            match self.emulator.read(&mut buf) {
                Ok(n) => self.shown.extend_from_slice(&buf[..n]),
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err(err) => panic!("the emulator's side failed: {err}"),
            }
            let shown = String::from_utf8_lossy(&self.shown).into_owned();
            if shown.contains(needle) {
                return shown;
            }
            deadline.check(&format!(
                "{needle:?} on the terminal, which shows {shown:?}"
            ));
        }
    }
}

fn handing_over(id: &Value) -> StreamHello {
    StreamHello {
        session_id: id.as_str().unwrap().parse().unwrap(),
        client_id: None,
        mode: None,
        cols: Some(80),
        rows: Some(24),
        since: None,
        terminal: Some(TerminalHandover {
            detach_key: DETACH,
            alternate_screen: false,
        }),
    }
}

/// The next frame, which must hand the terminal back.
async fn returned(stream: &mut AttachStream) -> TerminalReturned {
    match next_frame(stream).await {
        Some(ServerFrame::Returned(returned)) => returned,
        other => panic!("expected the terminal back, got {other:?}"),
    }
}

/// Opens a stream handing `pty`'s terminal over; asserts the daemon took it.
async fn open(daemon: &Daemon, hello: &StreamHello, pty: &Pty) -> AttachStream {
    let (accepted, stream) =
        AttachStream::open_handing_over(&daemon.socket, hello, pty.terminal.as_fd())
            .await
            .unwrap();
    assert!(accepted.terminal, "the daemon took the terminal");
    stream
}

/// A daemon, a session running `cat`, and a stream to it with a PTY's terminal handed over.
async fn cat_on_a_handed_terminal() -> (Daemon, LineClient, Value, Pty, AttachStream) {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    let id = line.create_cat().await["session_id"].clone();
    let pty = Pty::open();
    let stream = open(&daemon, &handing_over(&id), &pty).await;
    (daemon, line, id, pty, stream)
}

/// The terminals the daemon holds open (`/dev/pts/N` paths among its descriptors).
async fn daemon_terminals(line: &mut LineClient) -> Vec<String> {
    let pid = line.ok("get_status", json!({})).await["pid"]
        .as_u64()
        .unwrap();
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .map(|target| target.display().to_string())
        .filter(|target| target.starts_with("/dev/pts/"))
        .collect()
}

#[tokio::test]
async fn a_handed_terminal_shows_the_screen_then_the_output_and_its_keys_reach_the_session() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    let id = line.create_cat().await["session_id"].clone();
    line.ok(
        "send_input",
        json!({"session_id": id, "data": b64(b"before\n")}),
    )
    .await;
    line.read_output_until(&id, "before\r\nbefore").await;
    let mut pty = Pty::open();
    let mut stream = open(&daemon, &handing_over(&id), &pty).await;

    let shown = pty.shows("before").await;
    assert!(
        shown.starts_with(std::str::from_utf8(CLEAR_SCREEN).unwrap()),
        "the screen is drawn on a cleared terminal: {shown:?}"
    );
    pty.type_keys(b"typed\r");
    line.read_output_until(&id, "typed\r\ntyped").await;
    pty.shows("typed\r\ntyped").await;
    assert!(
        stream.try_next().unwrap().is_none(),
        "nothing comes in frames while the daemon has the terminal"
    );
}

#[tokio::test]
async fn the_detach_key_returns_the_terminal_where_its_output_stopped() {
    let (_daemon, mut line, id, mut pty, mut stream) = cat_on_a_handed_terminal().await;
    pty.type_keys(b"kept\r");
    pty.shows("kept\r\nkept").await;
    pty.type_keys(&[b'x', DETACH, b'y']);

    let back = returned(&mut stream).await;
    assert!(back.detached, "{back:?}");
    assert!(!back.alternate_screen);
    assert_eq!(
        next_frame(&mut stream).await,
        None,
        "the stream ends after it"
    );
    let deadline = Deadline::start();
    while line.ok("get_session", json!({"session_id": id})).await["num_clients"] != 0 {
        deadline.check("the client to be detached");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // What came before the detach key was typed, what followed it was not.
    line.ok("send_input", json!({"session_id": id, "data": b64(b"\n")}))
        .await;
    line.read_output_until(&id, "x\r\nx\r\n").await;
    let out = line
        .ok(
            "receive_output",
            json!({"session_id": id, "since": 0, "max_bytes": 65536}),
        )
        .await;
    let all = unb64(out["data"].as_str().unwrap());
    let text = String::from_utf8_lossy(&all);
    assert!(
        text.contains("x\r\nx\r\n") && !text.contains('y'),
        "{text:?}"
    );
    // The terminal shows the output up to the offset it was handed back at, and nothing
    // after: the session's output from there is what a next stream continues with.
    let next = back.next.expect("the output stopped at an offset") as usize;
    pty.drain();
    assert!(
        pty.shown.ends_with(&all[..next]),
        "shown {:?}, output up to {next}: {:?}",
        String::from_utf8_lossy(&pty.shown),
        String::from_utf8_lossy(&all[..next])
    );
}

#[tokio::test]
async fn a_session_exit_returns_the_terminal_before_the_exit_frame() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    let id = line.create_sh("read x; echo last-words; exit 3").await["session_id"].clone();
    let mut pty = Pty::open();
    let mut stream = open(&daemon, &handing_over(&id), &pty).await;
    pty.type_keys(b"\r");
    pty.shows("last-words").await;
    let back = returned(&mut stream).await;
    assert!(!back.detached, "{back:?}");
    match next_frame(&mut stream).await {
        Some(ServerFrame::Exited(exit)) => assert_eq!((exit.code, exit.signal), (Some(3), None)),
        other => panic!("expected the exit, got {other:?}"),
    }
    assert_eq!(
        next_frame(&mut stream).await,
        None,
        "nothing follows the exit"
    );
}

#[tokio::test]
async fn closing_the_stream_returns_the_terminal_and_the_daemon_lets_go_of_it() {
    let (_daemon, mut line, _id, mut pty, stream) = cat_on_a_handed_terminal().await;
    pty.type_keys(b"seen\r");
    pty.shows("seen\r\nseen").await;
    let path = pty.path();
    assert!(daemon_terminals(&mut line).await.contains(&path));

    let back = stream
        .close(Duration::from_secs(10))
        .await
        .expect("the terminal handed back on the way out");
    assert!(!back.detached, "{back:?}");
    assert!(back.next.is_some());
    assert!(
        !daemon_terminals(&mut line).await.contains(&path),
        "the daemon closed the terminal before it said so"
    );
}

#[tokio::test]
async fn a_program_left_on_the_alternate_screen_is_said_so_at_the_hand_back() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    let id = line
        .create_sh("printf '\\033[?1049hfull-screen'; read x")
        .await["session_id"]
        .clone();
    let mut pty = Pty::open();
    let stream = open(&daemon, &handing_over(&id), &pty).await;
    pty.shows("full-screen").await;
    let back = stream.close(Duration::from_secs(10)).await.unwrap();
    assert!(back.alternate_screen, "{back:?}");
}

#[tokio::test]
async fn a_descriptor_that_is_not_a_terminal_is_not_taken_and_frames_carry_the_bytes() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    let id = line.create_cat().await["session_id"].clone();
    let (_read, write) = nix::unistd::pipe().unwrap();
    let (accepted, mut stream) =
        AttachStream::open_handing_over(&daemon.socket, &handing_over(&id), write.as_fd())
            .await
            .unwrap();
    assert!(!accepted.terminal);
    assert!(matches!(
        next_frame(&mut stream).await,
        Some(ServerFrame::Screen { .. })
    ));
    stream.send_input(b"framed\n").await.unwrap();
    line.read_output_until(&id, "framed\r\nframed").await;
}

#[tokio::test]
async fn a_hand_over_asked_for_without_a_descriptor_gets_frames() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    let id = line.create_cat().await["session_id"].clone();
    let (accepted, mut stream) = AttachStream::open(&daemon.socket, &handing_over(&id))
        .await
        .unwrap();
    assert!(!accepted.terminal);
    assert!(matches!(
        next_frame(&mut stream).await,
        Some(ServerFrame::Screen { .. })
    ));
}

#[tokio::test]
async fn an_upgrade_returns_the_terminal_and_the_next_daemon_continues_on_it_without_a_redraw() {
    let (daemon, mut line, id, mut pty, mut stream) = cat_on_a_handed_terminal().await;
    pty.type_keys(b"one\r");
    pty.shows("one\r\none").await;

    line.ok("upgrade_daemon", json!({})).await;
    let back = returned(&mut stream).await;
    assert!(!back.detached, "{back:?}");
    assert_eq!(next_frame(&mut stream).await, None, "the old daemon closes");
    let since = back.next.expect("stopped at an offset");
    // The next daemon may take a moment to serve.
    let hello = StreamHello {
        since: Some(since),
        ..handing_over(&id)
    };
    let before = pty.shown.len();
    let stream = eventually("the next daemon to take the terminal", || {
        let (daemon, hello, pty) = (&daemon, &hello, &pty);
        async move {
            AttachStream::open_handing_over(&daemon.socket, hello, pty.terminal.as_fd())
                .await
                .ok()
                .filter(|(accepted, _)| accepted.terminal)
                .map(|(_, stream)| stream)
        }
    })
    .await;
    pty.type_keys(b"two\r");
    let shown = pty.shows("two\r\ntwo").await;
    assert_eq!(
        &shown.as_bytes()[before..],
        b"two\r\ntwo\r\n",
        "the output goes on where it stopped: no redraw, nothing twice"
    );
    drop(stream);
}
