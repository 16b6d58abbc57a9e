//! File transfers over SFTP on a session's own connection: a new channel with the `sftp`
//! subsystem per attempt, a few requests in flight, written under a temporary name and
//! renamed once complete; a dropped connection is waited out and the copy resumed.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{FuturesOrdered, StreamExt as _};
use pulsar_protocol::TransferDirection;
use russh::client::Handle;
use russh_sftp::client::RawSftpSession;
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::protocol::{FileAttributes, OpenFlags, StatusCode};
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _, AsyncWriteExt as _};
use tokio::sync::watch;

use super::connect::Callbacks;
use crate::backend::{TransferControl, TransferError, TransferJob};

/// Bytes asked for or sent per request: OpenSSH's sftp-server serves reads of this size whole.
const CHUNK: usize = 32 * 1024;
/// Requests in flight: OpenSSH's `sftp -R` default, enough to keep a link busy (16 gave 70 %
/// of `sftp`'s rate in `scripts/bench transfer`), few enough to bound memory (2 MiB) and
/// leave the connection to the shell's keystrokes between them.
const IN_FLIGHT: usize = 64;
/// Bytes asked for per read request of a download: fewer, larger requests than uploads
/// send (OpenSSH's sftp-server serves reads up to 255 KiB whole; a short read is completed),
/// as many bytes in flight (2 MiB).
const READ_CHUNK: usize = 128 * 1024;
const READS_IN_FLIGHT: usize = IN_FLIGHT * CHUNK / READ_CHUNK;
/// The local file is read or written this much at a time: each tokio file call is a trip to
/// a blocking thread, too dear per 32 KiB chunk.
const FILE_BUFFER: usize = 512 * 1024;
/// An upload resumes this far before the temporary file's end: writes in flight when the
/// connection dropped may have landed out of order.
const RESUME_BACKOFF: u64 = (CHUNK * IN_FLIGHT) as u64;
/// How long an upload cancelled while the connection was down waits for it to come back to
/// remove its temporary file.
const CLEANUP_WAIT: Duration = Duration::from_secs(600);
/// How long a failed attempt waits for the link to notice that the connection is gone
/// before the failure is taken as the transfer's own.
const NOTICE_DROP: Duration = Duration::from_secs(3);
/// The longest a cancelled attempt waits for the server to close (and remove) its file, so
/// that a cancel is answered promptly even over a connection that silently dropped.
const CANCEL_CLEANUP: Duration = Duration::from_secs(1);

/// A session's connection as its transfers see it; the link task keeps it current.
#[derive(Clone)]
pub(super) enum Connection {
    /// Up: new channels open on it.
    Up(Arc<Handle<Callbacks>>),
    /// Dropped; the link task is reconnecting.
    Down,
    /// The session is over.
    Ended,
}

/// How one attempt ended short of success.
enum Interrupted {
    /// The transfer's own failure, or its cancellation: not retried.
    Fatal(TransferError),
    /// SFTP failed, perhaps because the connection dropped: retried once it is back.
    Io(String),
}

impl From<TransferError> for Interrupted {
    fn from(err: TransferError) -> Self {
        Interrupted::Fatal(err)
    }
}

/// Copies `job`, over whichever connection `connection` has, until done, failed or cancelled.
pub(super) async fn run(
    job: &TransferJob,
    control: &TransferControl,
    mut connection: watch::Receiver<Connection>,
) -> Result<(), TransferError> {
    loop {
        let handle = tokio::select! {
            up = next_up(&mut connection) => up,
            _ = control.cancel.cancelled() => {
                match job.direction {
                    TransferDirection::Download => {
                        let _ = tokio::fs::remove_file(local_temporary(job)).await;
                    }
                    TransferDirection::Upload => {
                        let temp = job.temporary_name(&job.remote_path);
                        tokio::spawn(remove_once_back(temp, connection.clone()));
                    }
                }
                return Err(TransferError::Cancelled);
            }
        };
        let Some(handle) = handle else {
            return Err(TransferError::Failed("the session ended".to_owned()));
        };
        let attempt = match job.direction {
            TransferDirection::Upload => upload(&handle, job, control).await,
            TransferDirection::Download => download(&handle, job, control).await,
        };
        let reason = match attempt {
            Ok(()) => return Ok(()),
            Err(Interrupted::Fatal(TransferError::Cancelled))
                if job.direction == TransferDirection::Upload =>
            {
                // Removed already, unless the connection had silently dropped under the
                // attempt: then once it is back.
                let temp = job.temporary_name(&job.remote_path);
                tokio::spawn(remove_once_back(temp, connection.clone()));
                return Err(TransferError::Cancelled);
            }
            Err(Interrupted::Fatal(err)) => return Err(err),
            Err(Interrupted::Io(reason)) => reason,
        };
        // The connection's loss may reach the link a moment after SFTP saw it.
        // Compared by address only: the link must be free to let the connection go.
        let was = Arc::as_ptr(&handle) as usize;
        drop(handle);
        let same =
            |c: &Connection| matches!(c, Connection::Up(h) if Arc::as_ptr(h) as usize == was);
        let noticed = tokio::time::timeout(NOTICE_DROP, connection.wait_for(|c| !same(c))).await;
        if noticed.is_err() {
            control.started(Err(TransferError::Failed(reason.clone())));
            return Err(TransferError::Failed(reason));
        }
        tracing::info!(transfer = %job.id, "transfer interrupted ({reason}); resuming once reconnected");
    }
}

/// An upload cancelled while the connection was down: its remote temporary file `temp` is
/// removed once the connection is back (if within [`CLEANUP_WAIT`], and this daemon lives
/// that long).
async fn remove_once_back(temp: String, mut connection: watch::Receiver<Connection>) {
    let removed = tokio::time::timeout(CLEANUP_WAIT, async {
        loop {
            let handle = next_up(&mut connection).await?;
            let Ok(sftp) = open(&handle).await else {
                // The connection that was still current had dropped: wait for the next.
                drop(handle);
                connection.changed().await.ok()?;
                continue;
            };
            let result = sftp.remove(temp.as_str()).await;
            let _ = sftp.close_session();
            return Some(result);
        }
    })
    .await;
    match removed {
        Ok(Some(Ok(_))) => {
            tracing::info!(file = %temp, "removed a cancelled upload's temporary file")
        }
        Ok(Some(Err(err))) if is_missing(&err) => {}
        Ok(Some(Err(err))) => {
            tracing::warn!(file = %temp, "cannot remove a cancelled upload's temporary file: {err}")
        }
        Ok(None) | Err(_) => {
            tracing::warn!(file = %temp, "a cancelled upload's temporary file is left: the connection did not come back")
        }
    }
}

/// The connection once it is up; `None` once the session is over.
async fn next_up(connection: &mut watch::Receiver<Connection>) -> Option<Arc<Handle<Callbacks>>> {
    let up = connection
        .wait_for(|c| !matches!(c, Connection::Down))
        .await
        .ok()?;
    match &*up {
        Connection::Up(handle) => Some(Arc::clone(handle)),
        _ => None,
    }
}

/// Opens an SFTP session on a new channel of `handle`'s connection.
async fn open(handle: &Handle<Callbacks>) -> Result<RawSftpSession, Interrupted> {
    let io = |what: &str, err: &dyn std::fmt::Display| Interrupted::Io(format!("{what}: {err}"));
    let channel = handle
        .channel_open_session()
        .await
        .map_err(|e| io("opening an SFTP channel", &e))?;
    channel
        .request_subsystem(true, "sftp")
        .await
        .map_err(|e| io("requesting the sftp subsystem", &e))?;
    let sftp = RawSftpSession::new(channel.into_stream());
    sftp.set_timeout(30);
    sftp.init().await.map_err(|e| {
        Interrupted::Fatal(TransferError::Failed(format!(
            "the server offers no SFTP: {e}"
        )))
    })?;
    Ok(sftp)
}

/// An SFTP failure: the server's answer is the transfer's own; anything else may be the
/// connection.
fn sftp_error(what: &str, path: &str, err: SftpError) -> Interrupted {
    match err {
        SftpError::Status(status) if status.status_code != StatusCode::ConnectionLost => {
            Interrupted::Fatal(TransferError::Failed(format!(
                "{what} {path}: {}",
                if status.error_message.is_empty() {
                    status.status_code.to_string()
                } else {
                    status.error_message
                }
            )))
        }
        other => Interrupted::Io(format!("{what} {path}: {other}")),
    }
}

fn is_missing(err: &SftpError) -> bool {
    matches!(err, SftpError::Status(s) if s.status_code == StatusCode::NoSuchFile)
}

fn local_error(what: &str, path: &Path, err: std::io::Error) -> Interrupted {
    Interrupted::Fatal(TransferError::Failed(format!(
        "{what} {}: {err}",
        path.display()
    )))
}

fn local_temporary(job: &TransferJob) -> std::path::PathBuf {
    job.temporary_name(&job.local_path.to_string_lossy()).into()
}

/// One attempt at an upload, from where the remote temporary file ends.
async fn upload(
    handle: &Handle<Callbacks>,
    job: &TransferJob,
    control: &TransferControl,
) -> Result<(), Interrupted> {
    let local = &job.local_path;
    let mut file = tokio::fs::File::open(local)
        .await
        .map_err(|e| local_error("cannot read", local, e))?;
    let meta = file
        .metadata()
        .await
        .map_err(|e| local_error("cannot read", local, e))?;
    if !meta.is_file() {
        return Err(TransferError::Failed(format!("{} is not a file", local.display())).into());
    }
    let (total, mode) = (meta.len(), meta.permissions().mode() & 0o7777);
    control.set_total(total);
    let sftp = open(handle).await?;
    let remote = job.remote_path.as_str();
    let temp = job.temporary_name(remote);
    match sftp.stat(remote).await {
        Ok(_) if !job.overwrite => {
            return Err(TransferError::DestinationExists {
                path: remote.to_owned(),
            }
            .into());
        }
        Ok(_) => {}
        Err(err) if is_missing(&err) => {}
        Err(err) => return Err(sftp_error("cannot check", remote, err)),
    }
    let mut offset = match sftp.stat(&temp).await {
        Ok(attrs) => attrs
            .attrs
            .size
            .unwrap_or(0)
            .saturating_sub(RESUME_BACKOFF)
            .min(total),
        Err(_) => 0,
    };
    let mut flags = OpenFlags::WRITE | OpenFlags::CREATE;
    if offset == 0 {
        flags |= OpenFlags::TRUNCATE;
    }
    let attrs = FileAttributes {
        permissions: Some(0o600),
        ..FileAttributes::empty()
    };
    let remote_file = sftp
        .open(&temp, flags, attrs)
        .await
        .map_err(|e| sftp_error("cannot create", &temp, e))?
        .handle;
    control.started(Ok(()));
    control.set_bytes(offset);
    file.seek(std::io::SeekFrom::Start(offset))
        .await
        .map_err(|e| local_error("cannot read", local, e))?;
    let mut file = tokio::io::BufReader::with_capacity(FILE_BUFFER, file);
    let mut in_flight = FuturesOrdered::new();
    let mut sent = offset;
    loop {
        while in_flight.len() < IN_FLIGHT && sent < total {
            let mut chunk = vec![0; CHUNK.min((total - sent) as usize)];
            file.read_exact(&mut chunk)
                .await
                .map_err(|e| local_error("cannot read", local, e))?;
            let len = chunk.len() as u64;
            in_flight.push_back(sftp.write(remote_file.as_str(), sent, chunk));
            sent += len;
        }
        let next = tokio::select! {
            next = in_flight.next() => next,
            _ = control.cancel.cancelled() => {
                drop(in_flight);
                // Bounded: over a connection that silently dropped these would wait for
                // SFTP's own timeout; the caller then removes the file once it is back.
                let _ = tokio::time::timeout(CANCEL_CLEANUP, async {
                    let _ = sftp.close(remote_file.as_str()).await;
                    let _ = sftp.remove(temp.as_str()).await;
                })
                .await;
                return Err(TransferError::Cancelled.into());
            }
        };
        match next {
            None => break,
            Some(Ok(_)) => {
                offset = (offset + CHUNK as u64).min(total);
                control.set_bytes(offset);
            }
            Some(Err(err)) => return Err(sftp_error("cannot write", &temp, err)),
        }
    }
    drop(in_flight);
    sftp.close(remote_file.as_str())
        .await
        .map_err(|e| sftp_error("cannot close", &temp, e))?;
    let attrs = FileAttributes {
        permissions: Some(mode),
        ..FileAttributes::empty()
    };
    sftp.setstat(temp.as_str(), attrs)
        .await
        .map_err(|e| sftp_error("cannot set the mode of", &temp, e))?;
    if job.overwrite {
        // SFTPv3's rename never replaces; OpenSSH's extension does, atomically.
        let mut data = Vec::new();
        for path in [temp.as_str(), remote] {
            data.extend_from_slice(&(path.len() as u32).to_be_bytes());
            data.extend_from_slice(path.as_bytes());
        }
        sftp.extended("posix-rename@openssh.com", data)
            .await
            .map_err(|e| sftp_error("cannot rename into", remote, e))?;
    } else if let Err(err) = sftp.rename(temp.as_str(), remote).await {
        if sftp.stat(remote).await.is_ok() {
            let _ = sftp.remove(temp.as_str()).await;
            return Err(TransferError::DestinationExists {
                path: remote.to_owned(),
            }
            .into());
        }
        return Err(sftp_error("cannot rename into", remote, err));
    }
    Ok(())
}

/// One attempt at a download, from where the local temporary file ends.
async fn download(
    handle: &Handle<Callbacks>,
    job: &TransferJob,
    control: &TransferControl,
) -> Result<(), Interrupted> {
    let local = job.local_path.as_path();
    if !job.overwrite && tokio::fs::symlink_metadata(local).await.is_ok() {
        return Err(TransferError::DestinationExists {
            path: local.display().to_string(),
        }
        .into());
    }
    let sftp = open(handle).await?;
    let remote = job.remote_path.as_str();
    let attrs = sftp
        .stat(remote)
        .await
        .map_err(|e| sftp_error("cannot read", remote, e))?
        .attrs;
    if attrs.is_dir() {
        return Err(TransferError::Failed(format!("{remote} is a directory")).into());
    }
    let total = attrs.size.unwrap_or(0);
    let mode = attrs.permissions.unwrap_or(0o644) & 0o7777;
    control.set_total(total);
    let remote_file = sftp
        .open(remote, OpenFlags::READ, FileAttributes::empty())
        .await
        .map_err(|e| sftp_error("cannot read", remote, e))?
        .handle;
    let temp = local_temporary(job);
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&temp)
        .await
        .map_err(|e| local_error("cannot create", &temp, e))?;
    control.started(Ok(()));
    let mut offset = file
        .metadata()
        .await
        .map_err(|e| local_error("cannot read", &temp, e))?
        .len()
        .min(total);
    file.set_len(offset)
        .await
        .map_err(|e| local_error("cannot write", &temp, e))?;
    file.seek(std::io::SeekFrom::Start(offset))
        .await
        .map_err(|e| local_error("cannot write", &temp, e))?;
    control.set_bytes(offset);
    // Bytes still buffered when an attempt is cut are lost with it: the next resumes from
    // the temporary file's length, and asks for them again.
    let mut file = tokio::io::BufWriter::with_capacity(FILE_BUFFER, file);
    let mut in_flight = FuturesOrdered::new();
    let mut asked = offset;
    loop {
        while in_flight.len() < READS_IN_FLIGHT && asked < total {
            let len = READ_CHUNK.min((total - asked) as usize);
            let at = asked;
            let sftp = &sftp;
            let remote_file = remote_file.as_str();
            in_flight
                .push_back(async move { (at, len, sftp.read(remote_file, at, len as u32).await) });
            asked += len as u64;
        }
        let next = tokio::select! {
            next = in_flight.next() => next,
            _ = control.cancel.cancelled() => {
                drop(in_flight);
                drop(file);
                let _ = tokio::fs::remove_file(&temp).await;
                let _ = tokio::time::timeout(CANCEL_CLEANUP, sftp.close(remote_file.as_str())).await;
                return Err(TransferError::Cancelled.into());
            }
        };
        let Some((at, len, result)) = next else { break };
        let mut data = match result {
            Ok(data) => data.data,
            Err(SftpError::Status(s)) if s.status_code == StatusCode::Eof => {
                return Err(
                    TransferError::Failed(format!("{remote} shrank while being read")).into(),
                );
            }
            Err(err) => return Err(sftp_error("cannot read", remote, err)),
        };
        // A short read (allowed by the protocol) is completed before going on.
        while data.len() < len {
            let more = sftp
                .read(
                    remote_file.as_str(),
                    at + data.len() as u64,
                    (len - data.len()) as u32,
                )
                .await
                .map_err(|e| sftp_error("cannot read", remote, e))?;
            if more.data.is_empty() {
                return Err(
                    TransferError::Failed(format!("{remote} shrank while being read")).into(),
                );
            }
            data.extend_from_slice(&more.data);
        }
        file.write_all(&data[..len])
            .await
            .map_err(|e| local_error("cannot write", &temp, e))?;
        offset += len as u64;
        control.set_bytes(offset);
    }
    drop(in_flight);
    let _ = sftp.close(remote_file.as_str()).await;
    file.flush()
        .await
        .map_err(|e| local_error("cannot write", &temp, e))?;
    let file = file.into_inner();
    file.sync_all()
        .await
        .map_err(|e| local_error("cannot write", &temp, e))?;
    file.set_permissions(std::fs::Permissions::from_mode(mode))
        .await
        .map_err(|e| local_error("cannot set the mode of", &temp, e))?;
    drop(file);
    if job.overwrite {
        tokio::fs::rename(&temp, local)
            .await
            .map_err(|e| local_error("cannot rename into", local, e))?;
    } else {
        // A hard link never replaces: the destination appears whole, or not if it exists.
        match tokio::fs::hard_link(&temp, local).await {
            Ok(()) => {
                let _ = tokio::fs::remove_file(&temp).await;
            }
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
                let _ = tokio::fs::remove_file(&temp).await;
                return Err(TransferError::DestinationExists {
                    path: local.display().to_string(),
                }
                .into());
            }
            Err(err) => return Err(local_error("cannot rename into", local, err)),
        }
    }
    Ok(())
}
