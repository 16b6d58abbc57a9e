//! Serial ports (tokio-serial): a device opened for exclusive use, bytes in and out, no process.
//!
//! A serial session ends when its device vanishes (unplugged, or the far end hangs up), or,
//! with reopening on, waits for the device to come back and carries on. Reopening lives here,
//! inside [`Backend::read`], so the session core never learns that a device came and went: it
//! sees a notice line in the output, like any other output, and offsets stay continuous.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pulsar_protocol::SerialSpec;
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{Mutex as AsyncMutex, watch};
use tokio_serial::{DataBits, FlowControl, Parity, SerialStream, StopBits};

use super::keeper::Keeper;
use super::{Backend, ExitStatus, LinkState};

/// Line speeds accepted: termios' slowest standard rate up to the fastest common USB UARTs
/// (FTDI's high-speed parts reach 12 Mbaud). Linux sets any rate in between (BOTHER).
const BAUD_RANGE: std::ops::RangeInclusive<u32> = 50..=12_000_000;
/// 115200 8N1 without flow control: what nearly every board's console speaks.
const DEFAULT_BAUD: u32 = 115_200;
/// The first pause before reopening a vanished device; pauses double from here.
const FIRST_BACKOFF: Duration = Duration::from_millis(50);

/// Why a serial session could not start.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// A setting in the session's `type` is invalid.
    #[error("invalid {field}: {reason}")]
    InvalidSetting {
        /// The field as named on the wire (`type.baud`, `type.parity`, ...).
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// Nothing exists at the device path.
    #[error("serial device {} does not exist", .0.display())]
    NotFound(PathBuf),
    /// The daemon's user may not open the device.
    #[error("permission denied opening serial device {}", .0.display())]
    PermissionDenied(PathBuf),
    /// Another program (or session) holds the device exclusively.
    #[error("serial device {} is in use by another program", .0.display())]
    Busy(PathBuf),
    /// The device exists but could not be opened or configured (not a terminal, settings the
    /// driver refused, ...).
    #[error("cannot open serial device {}: {reason}", device.display())]
    Open {
        /// The device.
        device: PathBuf,
        /// What failed.
        reason: String,
    },
}

impl OpenError {
    /// The device the error concerns, if it got as far as one.
    pub fn device(&self) -> Option<&Path> {
        match self {
            OpenError::InvalidSetting { .. } => None,
            OpenError::NotFound(device)
            | OpenError::PermissionDenied(device)
            | OpenError::Busy(device)
            | OpenError::Open { device, .. } => Some(device),
        }
    }
}

/// The line settings, checked: what the device is opened (and reopened) with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LineSettings {
    baud: u32,
    data_bits: DataBits,
    parity: Parity,
    stop_bits: StopBits,
    flow_control: FlowControl,
}

impl LineSettings {
    /// Checks `spec`'s settings and fills in the defaults (115200 8N1, no flow control).
    fn from_spec(spec: &SerialSpec) -> Result<Self, OpenError> {
        let invalid = |field, reason: String| OpenError::InvalidSetting { field, reason };
        let baud = spec.baud.unwrap_or(DEFAULT_BAUD);
        if !BAUD_RANGE.contains(&baud) {
            return Err(invalid(
                "type.baud",
                format!(
                    "{baud} is outside {}..={}",
                    BAUD_RANGE.start(),
                    BAUD_RANGE.end()
                ),
            ));
        }
        let data_bits = match spec.data_bits.unwrap_or(8) {
            5 => DataBits::Five,
            6 => DataBits::Six,
            7 => DataBits::Seven,
            8 => DataBits::Eight,
            other => {
                return Err(invalid(
                    "type.data_bits",
                    format!("{other} is not 5, 6, 7 or 8"),
                ));
            }
        };
        let parity = match spec.parity.as_deref() {
            None => Parity::None,
            Some(p) if p.eq_ignore_ascii_case("none") => Parity::None,
            Some(p) if p.eq_ignore_ascii_case("odd") => Parity::Odd,
            Some(p) if p.eq_ignore_ascii_case("even") => Parity::Even,
            Some(other) => {
                return Err(invalid(
                    "type.parity",
                    format!("{other:?} is not \"none\", \"odd\" or \"even\""),
                ));
            }
        };
        let stop_bits = match spec.stop_bits.unwrap_or(1) {
            1 => StopBits::One,
            2 => StopBits::Two,
            other => return Err(invalid("type.stop_bits", format!("{other} is not 1 or 2"))),
        };
        let flow_control = match spec.flow_control.as_deref() {
            None => FlowControl::None,
            Some(f) if f.eq_ignore_ascii_case("none") => FlowControl::None,
            Some(f) if f.eq_ignore_ascii_case("software") => FlowControl::Software,
            Some(f) if f.eq_ignore_ascii_case("hardware") => FlowControl::Hardware,
            Some(other) => {
                return Err(invalid(
                    "type.flow_control",
                    format!("{other:?} is not \"none\", \"software\" or \"hardware\""),
                ));
            }
        };
        Ok(Self {
            baud,
            data_bits,
            parity,
            stop_bits,
            flow_control,
        })
    }
}

/// Where the device stands. Writers and the reader watch it, so a writer stuck behind flow
/// control is released when the device vanishes or the session is terminated.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Link {
    /// The device is open.
    Open,
    /// The device vanished and is being reopened.
    Reopening {
        /// How it vanished.
        cause: String,
    },
    /// The session is over; the device is (being) closed.
    Ended {
        /// Why, for the stopped session's `reason`.
        reason: String,
    },
}

/// What only the reader (the session's pump) touches.
struct ReadSide {
    /// The device's reading half; `None` once it vanished or the session ended.
    port: Option<ReadHalf<SerialStream>>,
    /// Notice lines (vanished, reopened) still to hand out, before any further device bytes.
    notice: Vec<u8>,
    /// The pause before the next reopen attempt.
    backoff: Duration,
}

/// A serial device this daemon holds open exclusively.
pub struct SerialBackend {
    device: PathBuf,
    settings: LineSettings,
    /// Longest pause between reopen attempts; `None`: a vanished device ends the session.
    reopen: Option<Duration>,
    /// Only the pump reads, so this lock is never contended; it makes `read` `&self`.
    reader: AsyncMutex<ReadSide>,
    /// The device's writing half (`None` while the device is gone). The lock also keeps one
    /// `write_all` from interleaving with another.
    writer: AsyncMutex<Option<WriteHalf<SerialStream>>>,
    link: watch::Sender<Link>,
    /// The device going and coming back, for the session's events.
    link_state: watch::Sender<LinkState>,
    /// The keeper holding a copy of the open device for session `id`, so that the device,
    /// its lock and its settings outlive this daemon.
    kept: std::sync::OnceLock<(Arc<Keeper>, String)>,
}

impl SerialBackend {
    /// Opens `spec.device` with `spec`'s settings, for exclusive use (TIOCEXCL and an
    /// exclusive `flock`). With `reopen` (the longest pause between attempts), a device that
    /// vanishes is waited for instead of ending the session. Must run inside the runtime:
    /// the device is registered with its reactor.
    /// Also returns a duplicate of the open device, for the keeper to hold.
    pub(crate) fn open(
        spec: &SerialSpec,
        reopen: Option<Duration>,
    ) -> Result<(Self, io::Result<OwnedFd>), OpenError> {
        if spec.device.as_os_str().is_empty() {
            return Err(OpenError::InvalidSetting {
                field: "type.device",
                reason: "must name a device".to_owned(),
            });
        }
        let settings = LineSettings::from_spec(spec)?;
        let port = open_port(&spec.device, &settings)?;
        tracing::debug!(device = %spec.device.display(), ?settings, "serial device opened");
        let copy = Self::device_fd(&port);
        Ok((Self::with_port(spec, settings, reopen, port), copy))
    }

    /// Marks the device as held by `keeper` for session `id` (adopted from it).
    pub(crate) fn kept_by(&self, keeper: &Arc<Keeper>, id: String) {
        let _ = self.kept.set((Arc::clone(keeper), id));
    }

    /// Takes over the device an earlier daemon left open with the keeper (`fd`): the same
    /// open file, so its exclusive lock and line settings carry on untouched.
    pub(crate) fn adopt(
        spec: &SerialSpec,
        reopen: Option<Duration>,
        fd: OwnedFd,
    ) -> Result<Self, OpenError> {
        let settings = LineSettings::from_spec(spec)?;
        // SAFETY: `fd` is an open serial device handed to us alone; TTYPort takes ownership.
        let tty = unsafe { serialport::TTYPort::from_raw_fd(fd.into_raw_fd()) };
        let port = SerialStream::try_from(tty).map_err(|err| OpenError::Open {
            device: spec.device.clone(),
            reason: err.to_string(),
        })?;
        Ok(Self::with_port(spec, settings, reopen, port))
    }

    /// A duplicate of the open device, for the keeper to hold.
    pub(crate) fn device_fd(port: &SerialStream) -> io::Result<OwnedFd> {
        // SAFETY: the port's descriptor is open for as long as `port` is borrowed.
        unsafe { BorrowedFd::borrow_raw(port.as_raw_fd()) }.try_clone_to_owned()
    }

    /// From now on the keeper holds a copy of the device for session `id` (and is told when
    /// the device is reopened or the session ends).
    pub(crate) async fn hold_with(&self, keeper: &Arc<Keeper>, id: String, fd: OwnedFd) {
        if let Err(err) = keeper.hold(&id, fd).await {
            tracing::warn!(session = %id, "the keeper cannot hold the serial device ({err}); it will be reopened by the next daemon");
            return;
        }
        let _ = self.kept.set((Arc::clone(keeper), id));
    }

    fn with_port(
        spec: &SerialSpec,
        settings: LineSettings,
        reopen: Option<Duration>,
        port: SerialStream,
    ) -> Self {
        let (reader, writer) = tokio::io::split(port);
        Self {
            device: spec.device.clone(),
            settings,
            reopen,
            reader: AsyncMutex::new(ReadSide {
                port: Some(reader),
                notice: Vec::new(),
                backoff: FIRST_BACKOFF,
            }),
            writer: AsyncMutex::new(Some(writer)),
            link: watch::channel(Link::Open).0,
            link_state: watch::channel(LinkState::Up).0,
            kept: std::sync::OnceLock::new(),
        }
    }

    /// Moves the link to `Ended` unless it is already there; true if this call ended it.
    fn end(&self, reason: String) -> bool {
        self.link.send_if_modified(|link| {
            if matches!(link, Link::Ended { .. }) {
                return false;
            }
            *link = Link::Ended { reason };
            true
        })
    }

    /// The device stopped answering: wait for it to come back, or end the session.
    fn lost(&self, side: &mut ReadSide, cause: String) {
        side.port = None;
        let device = self.device.display();
        match self.reopen {
            Some(max) => {
                let reopening = self.link.send_if_modified(|link| {
                    if *link != Link::Open {
                        return false;
                    }
                    *link = Link::Reopening {
                        cause: cause.clone(),
                    };
                    true
                });
                if reopening {
                    tracing::warn!(%device, %cause, "serial device vanished; reopening");
                    self.link_state.send_replace(LinkState::Down {
                        cause: cause.clone(),
                    });
                    side.backoff = FIRST_BACKOFF.min(max);
                    side.notice.extend_from_slice(
                        format!("\r\n--- device {device} vanished ({cause}); reopening ---\r\n")
                            .as_bytes(),
                    );
                }
            }
            None => {
                if self.end(format!("device vanished: {device} ({cause})")) {
                    tracing::info!(%device, %cause, "serial device vanished");
                }
            }
        }
    }

    /// One attempt to reopen the vanished device.
    async fn try_reopen(&self, side: &mut ReadSide) {
        let mut writer = self.writer.lock().await;
        // The old port's last handle: closing it releases the device (and its lock); the
        // keeper's copy too.
        writer.take();
        if let Some((keeper, id)) = self.kept.get() {
            keeper.release(id).await;
        }
        let port = match open_port(&self.device, &self.settings) {
            Ok(port) => port,
            Err(err) => {
                tracing::debug!(device = %self.device.display(), "reopen failed: {err}");
                return;
            }
        };
        if let Some((keeper, id)) = self.kept.get()
            && let Ok(fd) = Self::device_fd(&port)
            && let Err(err) = keeper.hold(id, fd).await
        {
            tracing::warn!(session = %id, "the keeper cannot hold the reopened device: {err}");
        }
        let (reader, new_writer) = tokio::io::split(port);
        // Only a link still reopening comes back; a terminate meanwhile wins.
        let reopened = self.link.send_if_modified(|link| {
            if !matches!(link, Link::Reopening { .. }) {
                return false;
            }
            *link = Link::Open;
            true
        });
        if reopened {
            *writer = Some(new_writer);
            side.port = Some(reader);
            let device = self.device.display();
            side.notice
                .extend_from_slice(format!("\r\n--- device {device} reopened ---\r\n").as_bytes());
            tracing::info!(%device, "serial device reopened");
            self.link_state.send_replace(LinkState::Up);
        }
    }
}

#[async_trait]
impl Backend for SerialBackend {
    async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let mut side = self.reader.lock().await;
        let mut link = self.link.subscribe();
        // Every await below is cancel-safe: the pump may drop this future at any of them and
        // the next call carries on from the state kept in `side` and `link`.
        loop {
            if !side.notice.is_empty() {
                let n = side.notice.len().min(buf.len());
                buf[..n].copy_from_slice(&side.notice[..n]);
                side.notice.drain(..n);
                return Ok(n);
            }
            let state = link.borrow_and_update().clone();
            match state {
                Link::Ended { .. } => {
                    side.port = None;
                    self.writer.lock().await.take();
                    return Ok(0);
                }
                Link::Open => {
                    let Some(port) = side.port.as_mut() else {
                        // Cannot happen (an open link always has a port); treat it as a loss.
                        self.lost(&mut side, "no port".to_owned());
                        continue;
                    };
                    let read = tokio::select! {
                        read = port.read(buf) => read,
                        _ = link.changed() => continue,
                    };
                    match read {
                        Ok(0) => self.lost(&mut side, "hang-up".to_owned()),
                        Ok(n) => return Ok(n),
                        Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                        Err(err) => self.lost(&mut side, err.to_string()),
                    }
                }
                Link::Reopening { .. } => {
                    let pause = side.backoff;
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = link.changed() => continue,
                    }
                    let max = self.reopen.unwrap_or(pause);
                    side.backoff = (pause * 2).min(max);
                    self.try_reopen(&mut side).await;
                }
            }
        }
    }

    async fn write_all(&self, data: &[u8]) -> io::Result<()> {
        let mut writer = self.writer.lock().await;
        let mut link = self.link.subscribe();
        let state = link.borrow_and_update().clone();
        let device = self.device.display();
        let not_connected = |why: String| io::Error::new(io::ErrorKind::NotConnected, why);
        match state {
            Link::Open => {}
            Link::Reopening { cause } => {
                return Err(not_connected(format!(
                    "serial device {device} is gone ({cause}); waiting for it to come back"
                )));
            }
            Link::Ended { reason } => {
                return Err(io::Error::new(io::ErrorKind::BrokenPipe, reason));
            }
        }
        let Some(port) = writer.as_mut() else {
            return Err(not_connected(format!("serial device {device} is not open")));
        };
        tokio::select! {
            written = port.write_all(data) => written,
            _ = link.changed() => Err(not_connected(format!(
                "serial device {device} went away while writing"
            ))),
        }
    }

    /// A serial line has no notion of a terminal size: only the session's model changes.
    fn resize(&self, _cols: u16, _rows: u16) -> io::Result<()> {
        Ok(())
    }

    async fn wait(&self) -> ExitStatus {
        let mut link = self.link.subscribe();
        // `self` holds the sender, so this only returns once the link has ended.
        let _ = link.wait_for(|l| matches!(l, Link::Ended { .. })).await;
        ExitStatus {
            code: None,
            signal: None,
        }
    }

    async fn terminate(&self, _grace: Duration) {
        if self.end("terminated by request".to_owned()) {
            tracing::info!(device = %self.device.display(), "closing serial device");
        }
        // The reader drops its half when it sees the end; this drops the other.
        self.writer.lock().await.take();
    }

    fn pid(&self) -> Option<u32> {
        None
    }

    fn link_state(&self) -> Option<watch::Receiver<LinkState>> {
        Some(self.link_state.subscribe())
    }

    fn end_reason(&self) -> Option<String> {
        match &*self.link.borrow() {
            Link::Ended { reason } => Some(reason.clone()),
            _ => None,
        }
    }

    fn outlives_daemon(&self) -> bool {
        self.kept.get().is_some()
    }

    async fn finished(&self) {
        // Before the session reads as stopped: the device must be free to open again then.
        if let Some((keeper, id)) = self.kept.get() {
            keeper.release(id).await;
        }
    }
}

/// Opens and configures `device` for exclusive use, classifying failures.
fn open_port(device: &Path, settings: &LineSettings) -> Result<SerialStream, OpenError> {
    let Some(path) = device.to_str() else {
        return Err(OpenError::InvalidSetting {
            field: "type.device",
            reason: "must be valid UTF-8".to_owned(),
        });
    };
    let builder = tokio_serial::new(path, settings.baud)
        .data_bits(settings.data_bits)
        .parity(settings.parity)
        .stop_bits(settings.stop_bits)
        .flow_control(settings.flow_control)
        .exclusive(true);
    SerialStream::open(&builder).map_err(|err| classify(device, err))
}

/// serialport reports ENOENT and EACCES as I/O kinds, and EBUSY (TIOCEXCL) or a held `flock`
/// as `NoDevice`.
fn classify(device: &Path, err: tokio_serial::Error) -> OpenError {
    use tokio_serial::ErrorKind;
    let device = device.to_owned();
    match err.kind() {
        ErrorKind::Io(io::ErrorKind::NotFound) => OpenError::NotFound(device),
        ErrorKind::Io(io::ErrorKind::PermissionDenied) => OpenError::PermissionDenied(device),
        ErrorKind::NoDevice => OpenError::Busy(device),
        _ => OpenError::Open {
            device,
            reason: err.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> SerialSpec {
        SerialSpec {
            device: "/dev/null".into(),
            ..Default::default()
        }
    }

    fn invalid_field(spec: &SerialSpec) -> &'static str {
        match LineSettings::from_spec(spec) {
            Err(OpenError::InvalidSetting { field, .. }) => field,
            other => panic!("expected an invalid setting, got {other:?}"),
        }
    }

    #[test]
    fn settings_left_out_are_115200_8n1_without_flow_control() {
        assert_eq!(
            LineSettings::from_spec(&spec()).unwrap(),
            LineSettings {
                baud: 115_200,
                data_bits: DataBits::Eight,
                parity: Parity::None,
                stop_bits: StopBits::One,
                flow_control: FlowControl::None,
            }
        );
    }

    #[test]
    fn named_settings_are_taken_case_insensitively() {
        let settings = LineSettings::from_spec(&SerialSpec {
            baud: Some(9600),
            data_bits: Some(7),
            parity: Some("Even".into()),
            stop_bits: Some(2),
            flow_control: Some("HARDWARE".into()),
            ..spec()
        })
        .unwrap();
        assert_eq!(
            settings,
            LineSettings {
                baud: 9600,
                data_bits: DataBits::Seven,
                parity: Parity::Even,
                stop_bits: StopBits::Two,
                flow_control: FlowControl::Hardware,
            }
        );
    }

    #[test]
    fn each_bad_setting_is_named_by_its_wire_field() {
        let cases = [
            (
                SerialSpec {
                    baud: Some(0),
                    ..spec()
                },
                "type.baud",
            ),
            (
                SerialSpec {
                    baud: Some(20_000_000),
                    ..spec()
                },
                "type.baud",
            ),
            (
                SerialSpec {
                    data_bits: Some(9),
                    ..spec()
                },
                "type.data_bits",
            ),
            (
                SerialSpec {
                    parity: Some("mark".into()),
                    ..spec()
                },
                "type.parity",
            ),
            (
                SerialSpec {
                    stop_bits: Some(3),
                    ..spec()
                },
                "type.stop_bits",
            ),
            (
                SerialSpec {
                    flow_control: Some("rts".into()),
                    ..spec()
                },
                "type.flow_control",
            ),
        ];
        for (spec, field) in cases {
            assert_eq!(invalid_field(&spec), field, "{spec:?}");
        }
    }

    #[tokio::test]
    async fn missing_device_is_not_found_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let device = dir.path().join("ttyGONE");
        let err = SerialBackend::open(
            &SerialSpec {
                device: device.clone(),
                ..Default::default()
            },
            None,
        )
        .err()
        .expect("opening a missing device fails");
        assert!(
            matches!(&err, OpenError::NotFound(d) if *d == device),
            "{err:?}"
        );
        assert!(err.to_string().contains("ttyGONE"), "{err}");
    }

    #[tokio::test]
    async fn a_file_that_is_not_a_terminal_is_refused_naming_it() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let err = SerialBackend::open(
            &SerialSpec {
                device: file.path().to_owned(),
                ..Default::default()
            },
            None,
        )
        .err()
        .expect("a regular file is no serial port");
        assert!(matches!(err, OpenError::Open { .. }), "{err:?}");
        assert_eq!(err.device(), Some(file.path()));
    }
}
