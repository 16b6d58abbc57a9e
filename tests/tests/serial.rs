//! Serial sessions end to end, with real pseudo-terminal pairs standing in for the cable: the
//! daemon opens the pty's slave as its serial device (through a symlink where the device must
//! come and go), and the test plays the far end on the master.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::fcntl::OFlag;
use nix::sys::termios::{SetArg, cfmakeraw, tcgetattr, tcsetattr};
use pulsar_e2e::*;
use pulsar_protocol::{
    Base64Data, OutputEvent, PulsarApiClient as _, PulsarClient, SessionEvent, SessionId,
    SessionState, SessionType, error as code,
};
use serde_json::json;
use tokio::io::unix::AsyncFd;

/// The far end of a serial line: the master of a pty whose slave is the daemon's "device".
/// Dropping it hangs the line up, as unplugging a USB adapter does.
struct Wire {
    master: AsyncFd<OwnedFd>,
    /// The slave, e.g. `/dev/pts/7`.
    path: PathBuf,
}

impl Wire {
    fn new() -> Self {
        // CLOEXEC from the start: a daemon another test spawns meanwhile must not inherit the
        // master, or this line would never hang up.
        let master = nix::pty::posix_openpt(
            OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK,
        )
        .expect("open a pty master");
        nix::pty::grantpt(&master).expect("grantpt");
        nix::pty::unlockpt(&master).expect("unlockpt");
        let path = PathBuf::from(nix::pty::ptsname_r(&master).expect("ptsname"));
        // SAFETY: `into_raw_fd` hands over sole ownership of the descriptor.
        let master = unsafe { OwnedFd::from_raw_fd(master.into_raw_fd()) };
        // Termios calls on a master act on its slave: a raw line, as a serial port idles.
        let mut termios = tcgetattr(&master).expect("tcgetattr");
        cfmakeraw(&mut termios);
        tcsetattr(&master, SetArg::TCSANOW, &termios).expect("tcsetattr");
        // SAFETY: the descriptor is owned by the AsyncFd alone, which deregisters it before
        // closing it.
        let master = unsafe { AsyncFd::register(master) }.expect("register the master");
        Self { master, path }
    }

    /// Sends `data` down the line to the daemon.
    async fn write_all(&self, mut data: &[u8]) {
        let deadline = Deadline::start();
        while !data.is_empty() {
            deadline.check("the line to take the bytes");
            let mut guard = tokio::time::timeout(DEADLINE, self.master.writable())
                .await
                .expect("the line becomes writable")
                .expect("poll the master");
            if let Ok(written) = guard.try_io(|fd| {
                // SAFETY: `data` is valid for `data.len()` bytes of reads.
                let n = unsafe { libc::write(fd.as_raw_fd(), data.as_ptr().cast(), data.len()) };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            }) {
                data = &data[written.expect("write to the master")..];
            }
        }
    }

    /// Reads what the daemon sent until `done` says it is enough.
    async fn read_until(&self, what: &str, done: impl Fn(&[u8]) -> bool) -> Vec<u8> {
        let deadline = Deadline::start();
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while !done(&seen) {
            deadline.check(what);
            let Ok(ready) =
                tokio::time::timeout(Duration::from_millis(200), self.master.readable()).await
            else {
                continue;
            };
            let mut guard = ready.expect("poll the master");
            if let Ok(read) = guard.try_io(|fd| {
                // SAFETY: `buf` is valid for `buf.len()` bytes of writes.
                let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            }) {
                let n = read.unwrap_or_else(|err| panic!("reading the line for {what}: {err}"));
                seen.extend_from_slice(&buf[..n]);
            }
        }
        seen
    }

    /// The line's settings as the device has them (`TCGETS2` on the master reads the slave).
    fn settings(&self) -> libc::termios2 {
        // SAFETY: TCGETS2 fills a termios2; the descriptor is a live pty master.
        unsafe {
            let mut settings: libc::termios2 = std::mem::zeroed();
            let rc = libc::ioctl(
                self.master.get_ref().as_raw_fd(),
                libc::TCGETS2 as _,
                &mut settings,
            );
            assert_eq!(rc, 0, "TCGETS2: {}", io::Error::last_os_error());
            settings
        }
    }
}

/// A symlink the daemon opens as its device, so the device can vanish and come back at the
/// same path (as `/dev/serial/by-id/...` links do when an adapter is replugged).
struct Link {
    path: PathBuf,
}

impl Link {
    fn new(dir: &Path) -> Self {
        Self {
            path: dir.join("ttyLINK"),
        }
    }

    /// Points the link at `wire`'s device (atomically, by renaming a fresh link over it).
    fn point_at(&self, wire: &Wire) {
        let fresh = self.path.with_extension("new");
        std::os::unix::fs::symlink(&wire.path, &fresh).expect("make the link");
        std::fs::rename(&fresh, &self.path).expect("install the link");
    }

    /// Takes the link away, so nothing at its path can be opened.
    fn remove(&self) {
        std::fs::remove_file(&self.path).expect("remove the link");
    }
}

fn serial(device: &Path) -> SessionType {
    serde_json::from_value(json!({"kind": "serial", "device": device})).expect("session type")
}

async fn create(client: &PulsarClient, device: &Path) -> SessionId {
    client
        .create_session(None, serial(device), None, None, None, None, None)
        .await
        .expect("create a serial session")
        .session_id
}

/// Reads the session's output from `since` until `done` says it is enough.
async fn output_until(
    client: &PulsarClient,
    id: SessionId,
    since: u64,
    what: &str,
    done: impl Fn(&[u8]) -> bool,
) -> Vec<u8> {
    let deadline = Deadline::start();
    let mut seen = Vec::new();
    let mut next = since;
    while !done(&seen) {
        deadline.check(what);
        let out = client
            .receive_output(id, Some(next), None, Some(200), None)
            .await
            .expect("receive_output");
        assert_eq!(out.offset, next, "output offsets are contiguous");
        seen.extend_from_slice(out.data.as_bytes());
        next = out.next_offset;
    }
    seen
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn rpc_error(err: &jsonrpsee::core::client::Error) -> &jsonrpsee::types::ErrorObjectOwned {
    match err {
        jsonrpsee::core::client::Error::Call(obj) => obj,
        other => panic!("expected a JSON-RPC error, got {other}"),
    }
}

fn every_byte_value() -> Vec<u8> {
    (0..=255).collect()
}

#[tokio::test]
async fn bytes_typed_into_a_serial_session_reach_the_device() {
    let wire = Wire::new();
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let id = create(&client, &wire.path).await;
    let written = client
        .send_input(id, Base64Data::from("AT+GMR\r"), None)
        .await
        .unwrap();
    assert_eq!(written.bytes_written, 7);
    let got = wire
        .read_until("the command on the line", |b| b.len() >= 7)
        .await;
    assert_eq!(got, b"AT+GMR\r");
}

#[tokio::test]
async fn bytes_from_the_device_appear_in_the_session_output() {
    let wire = Wire::new();
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let id = create(&client, &wire.path).await;
    wire.write_all(b"U-Boot 2024.01\r\n=> ").await;
    let out = output_until(&client, id, 0, "the boot banner", |b| contains(b, b"=> ")).await;
    assert_eq!(out, b"U-Boot 2024.01\r\n=> ");
}

#[tokio::test]
async fn every_byte_value_reaches_the_device_unchanged() {
    let wire = Wire::new();
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let id = create(&client, &wire.path).await;
    client
        .send_input(id, Base64Data(every_byte_value()), None)
        .await
        .unwrap();
    let got = wire
        .read_until("256 bytes on the line", |b| b.len() >= 256)
        .await;
    assert_eq!(got, every_byte_value());
}

#[tokio::test]
async fn every_byte_value_from_the_device_reaches_the_client_unchanged() {
    let wire = Wire::new();
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let id = create(&client, &wire.path).await;
    wire.write_all(&every_byte_value()).await;
    let out = output_until(&client, id, 0, "256 bytes of output", |b| b.len() >= 256).await;
    assert_eq!(out, every_byte_value());
}

#[tokio::test]
async fn serial_session_reports_its_type_and_no_process() {
    let wire = Wire::new();
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    let created = line
        .ok(
            "create_session",
            json!({"name": "console", "type": {"kind": "serial", "device": wire.path, "baud": 9600}}),
        )
        .await;
    assert_eq!(
        created["type"],
        json!({"kind": "serial", "device": wire.path, "baud": 9600})
    );
    assert_eq!(created["state"], "detached");
    assert!(created.get("pid").is_none(), "no process: {created}");
    assert!(created.get("reason").is_none(), "{created}");
}

#[tokio::test]
async fn upstream_serial_shape_opens_the_device_at_115200_8n1() {
    let wire = Wire::new();
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    let created = line
        .request(json!({"id": "1", "method": "create_session",
                        "params": {"type": {"Serial": {"device": wire.path}}}}))
        .await;
    assert_eq!(created["result"]["type"]["kind"], "serial", "{created}");
    let settings = wire.settings();
    assert_eq!(settings.c_ospeed, 115_200);
    assert_eq!(settings.c_cflag & libc::CSIZE, libc::CS8);
    assert_eq!(settings.c_cflag & (libc::PARENB | libc::CSTOPB), 0, "N1");
    assert_eq!(
        settings.c_cflag & libc::CRTSCTS,
        0,
        "no hardware flow control"
    );
    assert_eq!(
        settings.c_iflag & (libc::IXON | libc::IXOFF),
        0,
        "no software flow control"
    );
}

#[tokio::test]
async fn given_line_settings_reach_the_device() {
    let wire = Wire::new();
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    line.ok(
        "create_session",
        json!({"type": {"kind": "serial", "device": wire.path, "baud": 9600,
                        "stop_bits": 2, "flow_control": "hardware"}}),
    )
    .await;
    let settings = wire.settings();
    assert_eq!(settings.c_ospeed, 9600);
    assert_ne!(settings.c_cflag & libc::CSTOPB, 0, "two stop bits");
    assert_ne!(settings.c_cflag & libc::CRTSCTS, 0, "RTS/CTS");
}

#[tokio::test]
async fn error_missing_device_is_1008_naming_it() {
    let daemon = Daemon::start().await;
    let device = daemon.dir.path().join("ttyNOSUCH");
    let mut line = daemon.line().await;
    let err = line
        .err(
            "create_session",
            json!({"name": "console", "type": {"kind": "serial", "device": device}}),
        )
        .await;
    assert_eq!(err["code"], code::DEVICE_NOT_FOUND, "{err}");
    assert_eq!(
        err["data"],
        json!({"device": device, "name": "console"}),
        "{err}"
    );
    assert!(
        err["message"].as_str().unwrap().contains("ttyNOSUCH"),
        "{err}"
    );
}

#[tokio::test]
async fn error_device_the_daemon_may_not_open_is_1009_naming_it() {
    let wire = Wire::new();
    std::fs::set_permissions(&wire.path, std::fs::Permissions::from_mode(0o000))
        .expect("chmod 000 the device");
    let daemon = Daemon::start_without_permission_override(&[]).await;
    let mut line = daemon.line().await;
    let err = line
        .err(
            "create_session",
            json!({"name": "console", "type": {"kind": "serial", "device": wire.path}}),
        )
        .await;
    assert_eq!(err["code"], code::DEVICE_PERMISSION_DENIED, "{err}");
    assert_eq!(
        err["data"],
        json!({"device": wire.path, "name": "console"}),
        "{err}"
    );
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains(&*wire.path.to_string_lossy()),
        "{err}"
    );
}

#[tokio::test]
async fn error_bad_line_settings_are_invalid_params_naming_the_field() {
    let wire = Wire::new();
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    for (setting, value, field) in [
        ("baud", json!(0), "type.baud"),
        ("parity", json!("mark"), "type.parity"),
        ("data_bits", json!(9), "type.data_bits"),
        ("stop_bits", json!(3), "type.stop_bits"),
        ("flow_control", json!("xonxoff"), "type.flow_control"),
    ] {
        let err = line
            .err(
                "create_session",
                json!({"type": {"kind": "serial", "device": wire.path, setting: value}}),
            )
            .await;
        assert_eq!(err["code"], code::INVALID_PARAMS, "{err}");
        assert_eq!(err["data"]["field"], field, "{err}");
    }
    assert!(
        line.ok("list_sessions", json!({})).await["sessions"]
            .as_array()
            .unwrap()
            .is_empty(),
        "no session was created"
    );
}

#[tokio::test]
async fn a_device_in_use_by_one_session_is_refused_to_another() {
    let wire = Wire::new();
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    create(&client, &wire.path).await;
    let err = client
        .create_session(None, serial(&wire.path), None, None, None, None, None)
        .await
        .unwrap_err();
    let err = rpc_error(&err);
    assert_eq!(err.code(), code::BACKEND_ERROR);
    assert!(err.message().contains("in use"), "{}", err.message());
    assert!(
        err.message().contains(&*wire.path.to_string_lossy()),
        "{}",
        err.message()
    );
}

#[tokio::test]
async fn terminate_releases_the_device_and_stops_the_session() {
    let wire = Wire::new();
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let id = create(&client, &wire.path).await;
    client.terminate_session(id).await.unwrap();
    let info = client.get_session(id).await.unwrap();
    assert_eq!(info.state, SessionState::Stopped);
    assert_eq!((info.exit_code, info.exit_signal), (None, None));
    assert_eq!(info.reason.as_deref(), Some("terminated by request"));
    let again = create(&client, &wire.path).await;
    assert_eq!(
        client.get_session(again).await.unwrap().state,
        SessionState::Detached,
        "the device was free to open again"
    );
}

#[tokio::test]
async fn resize_of_a_serial_session_changes_only_its_model() {
    let wire = Wire::new();
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let id = create(&client, &wire.path).await;
    let mut sub = client.subscribe_output(id, None, None, None).await.unwrap();
    let info = client.resize_terminal(id, 132, 43, None).await.unwrap();
    assert_eq!((info.cols, info.rows), (132, 43));
    let event = tokio::time::timeout(DEADLINE, sub.next())
        .await
        .expect("an event in time")
        .expect("the stream continues")
        .expect("a valid event");
    assert_eq!(
        event,
        OutputEvent::Resized {
            cols: 132,
            rows: 43
        }
    );
    // Nothing was sent down the line: the next bytes there are the ones typed after.
    client
        .send_input(id, Base64Data::from("after"), None)
        .await
        .unwrap();
    let got = wire.read_until("the typed bytes", |b| b.len() >= 5).await;
    assert_eq!(got, b"after");
}

#[tokio::test]
async fn far_end_hanging_up_stops_the_session_with_a_reason() {
    let wire = Wire::new();
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let id = create(&client, &wire.path).await;
    let mut sub = client
        .subscribe_output(id, Some(0), None, None)
        .await
        .unwrap();
    wire.write_all(b"last words\r\n").await;
    output_until(&client, id, 0, "the last words", |b| {
        contains(b, b"last words")
    })
    .await;
    let device = wire.path.clone();
    drop(wire);

    let info = eventually("the session to stop", || async {
        let info = client.get_session(id).await.unwrap();
        (info.state == SessionState::Stopped).then_some(info)
    })
    .await;
    let reason = info.reason.expect("a stopped serial session says why");
    assert!(reason.starts_with("device vanished: "), "{reason}");
    assert!(reason.contains(&*device.to_string_lossy()), "{reason}");
    assert_eq!((info.exit_code, info.exit_signal), (None, None));
    let deadline = Deadline::start();
    loop {
        deadline.check("the exited event");
        let event = tokio::time::timeout(DEADLINE, sub.next())
            .await
            .expect("an event in time")
            .expect("the stream continues")
            .expect("a valid event");
        match event {
            OutputEvent::Exited { code, signal } => {
                assert_eq!((code, signal), (None, None));
                break;
            }
            OutputEvent::Output { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    let err = client
        .send_input(id, Base64Data::from("x"), None)
        .await
        .unwrap_err();
    assert_eq!(rpc_error(&err).code(), code::INVALID_STATE);
}

#[tokio::test]
async fn with_reopen_a_returning_device_resumes_after_a_divider() {
    let daemon = Daemon::start_with(&[
        ("SERIAL_REOPEN", "true"),
        ("SERIAL_REOPEN_MAX_BACKOFF_MS", "100"),
    ])
    .await;
    let client = daemon.client().await;
    let link = Link::new(daemon.dir.path());
    let first = Wire::new();
    link.point_at(&first);
    let id = create(&client, &link.path).await;
    first.write_all(b"before\r\n").await;
    output_until(&client, id, 0, "output before", |b| contains(b, b"before")).await;

    // Unplug: the link goes first, so no reopen attempt can reach the old pty's number.
    link.remove();
    drop(first);
    output_until(&client, id, 0, "the vanished notice", |b| {
        contains(b, b"vanished")
    })
    .await;
    let info = client.get_session(id).await.unwrap();
    assert_eq!(
        info.state,
        SessionState::Detached,
        "still alive while reopening"
    );
    let err = client
        .send_input(id, Base64Data::from("lost"), None)
        .await
        .unwrap_err();
    let err = rpc_error(&err);
    assert_eq!(err.code(), code::BACKEND_ERROR);
    assert!(err.message().contains("come back"), "{}", err.message());

    // Plug it back in at the same path.
    let second = Wire::new();
    link.point_at(&second);
    let divider = format!("\r\n--- device {} reopened ---\r\n", link.path.display());
    output_until(&client, id, 0, "the reopened divider", |b| {
        contains(b, divider.as_bytes())
    })
    .await;
    second.write_all(b"after\r\n").await;
    let all = output_until(&client, id, 0, "output after", |b| contains(b, b"after")).await;
    let text = String::from_utf8_lossy(&all);
    let (before, rest) = text.split_once("before\r\n").expect("before comes first");
    assert_eq!(before, "");
    let (between, after) = rest.split_once(&divider).expect("then the divider");
    assert!(
        between.contains("vanished") && !between.contains("after"),
        "{between:?}"
    );
    assert_eq!(after, "after\r\n");
    assert_eq!(
        client.get_session(id).await.unwrap().output_offset,
        all.len() as u64,
        "one continuous stream"
    );

    client
        .send_input(id, Base64Data::from("typed"), None)
        .await
        .unwrap();
    let got = second
        .read_until("input after the reopen", |b| b.len() >= 5)
        .await;
    assert_eq!(got, b"typed");
}

#[tokio::test]
async fn with_reopen_a_vanished_and_reopened_device_is_two_events() {
    let daemon = Daemon::start_with(&[
        ("SERIAL_REOPEN", "true"),
        ("SERIAL_REOPEN_MAX_BACKOFF_MS", "100"),
    ])
    .await;
    let client = daemon.client().await;
    let mut events = client.subscribe_events().await.unwrap();
    let link = Link::new(daemon.dir.path());
    let first = Wire::new();
    link.point_at(&first);
    let id = create(&client, &link.path).await;
    let mut next_serial_event = async || {
        let deadline = Deadline::start();
        loop {
            deadline.check("a serial event");
            let event = tokio::time::timeout(DEADLINE, events.next())
                .await
                .expect("an event in time")
                .expect("the stream is open")
                .expect("a valid event");
            if matches!(
                event,
                SessionEvent::SerialVanished { .. } | SessionEvent::SerialReopened { .. }
            ) {
                return event;
            }
        }
    };

    link.remove();
    drop(first);
    let SessionEvent::SerialVanished {
        session_id: gone,
        cause,
    } = next_serial_event().await
    else {
        panic!("the vanishing comes first");
    };
    assert_eq!(gone, id);
    assert!(!cause.is_empty());
    let second = Wire::new();
    link.point_at(&second);
    assert_eq!(
        next_serial_event().await,
        SessionEvent::SerialReopened { session_id: id }
    );
}

#[tokio::test]
async fn with_reopen_terminate_while_the_device_is_gone_stops_the_session() {
    let daemon = Daemon::start_with(&[("SERIAL_REOPEN", "true")]).await;
    let client = daemon.client().await;
    let link = Link::new(daemon.dir.path());
    let wire = Wire::new();
    link.point_at(&wire);
    let id = create(&client, &link.path).await;
    link.remove();
    drop(wire);
    output_until(&client, id, 0, "the vanished notice", |b| {
        contains(b, b"vanished")
    })
    .await;
    client.terminate_session(id).await.unwrap();
    let info = client.get_session(id).await.unwrap();
    assert_eq!(info.state, SessionState::Stopped);
    assert_eq!(info.reason.as_deref(), Some("terminated by request"));
}

#[tokio::test]
async fn after_a_reboot_the_device_is_reopened_and_history_kept() {
    let wire = Wire::new();
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let id = create(&client, &wire.path).await;
    wire.write_all(b"before restart\r\n").await;
    output_until(&client, id, 0, "the first line", |b| {
        contains(b, b"before restart")
    })
    .await;
    drop(client);

    // A reboot: the keeper, and its copy of the device, are gone too.
    let daemon = daemon.reboot(&[]).await;
    let client = daemon.client().await;
    let info = client
        .get_session(id)
        .await
        .expect("the serial session is back");
    assert_eq!(
        info.state,
        SessionState::Detached,
        "the device was reopened"
    );
    wire.write_all(b"after restart\r\n").await;
    let out = output_until(&client, id, 0, "the line after the restart", |b| {
        contains(b, b"after restart")
    })
    .await;
    let text = String::from_utf8_lossy(&out);
    let before = text.find("before restart").expect("history kept");
    let divider = text.find("pulsar restarted").expect("a divider");
    assert!(before < divider && divider < text.find("after restart").unwrap());
    client
        .send_input(id, Base64Data::from("AT\r"), None)
        .await
        .unwrap();
    let got = wire
        .read_until("input after the restart", |b| b.ends_with(b"AT\r"))
        .await;
    assert!(got.ends_with(b"AT\r"));
}

/// True when another program can take the device's exclusive lock right now.
fn lock_is_free(device: &Path) -> bool {
    let Ok(file) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK)
        .open(device)
    else {
        return false;
    };
    // SAFETY: flock on a descriptor we own; LOCK_NB never blocks.
    unsafe {
        libc::flock(
            std::os::fd::AsRawFd::as_raw_fd(&file),
            libc::LOCK_EX | libc::LOCK_NB,
        ) == 0
    }
}

#[tokio::test]
async fn a_serial_session_outlives_the_daemon_with_its_device_lock_and_settings() {
    let wire = Wire::new();
    let mut daemon = Daemon::start().await;
    let client = daemon.client().await;
    let ty = serde_json::from_value(json!({"kind": "serial", "device": wire.path, "baud": 9600,
                                           "stop_bits": 2}))
    .unwrap();
    let id = client
        .create_session(None, ty, None, None, None, None, None)
        .await
        .unwrap()
        .session_id;
    wire.write_all(b"before\r\n").await;
    output_until(&client, id, 0, "the first line", |b| contains(b, b"before")).await;
    drop(client);

    daemon.crash();
    // No daemon runs: the keeper still holds the device open and locked.
    assert!(
        !lock_is_free(&wire.path),
        "the device stays locked while no daemon runs"
    );
    wire.write_all(b"meanwhile\r\n").await;

    let daemon = daemon.start_again(&[]).await;
    let client = daemon.client().await;
    let out = output_until(&client, id, 0, "the line written meanwhile", |b| {
        contains(b, b"meanwhile")
    })
    .await;
    assert!(
        !contains(&out, b"pulsar restarted"),
        "the same open device, no divider"
    );
    let settings = wire.settings();
    assert_eq!(settings.c_ospeed, 9600, "the line settings stay");
    assert_ne!(settings.c_cflag & libc::CSTOPB, 0, "two stop bits stay");
    client
        .send_input(id, Base64Data::from("AT\r"), None)
        .await
        .unwrap();
    wire.read_until("input after the restart", |b| b.ends_with(b"AT\r"))
        .await;
    // Terminating lets go of it, the keeper's copy included.
    client.terminate_session(id).await.unwrap();
    eventually("the device to be free", || async {
        lock_is_free(&wire.path).then_some(())
    })
    .await;
}
