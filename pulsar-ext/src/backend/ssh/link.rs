//! The link task: one per SSH session, owning its connection. Output in (to the pump's
//! queue), resizes out (`window-change`), the remote exit, and reconnecting.

use std::str::FromStr as _;
use std::sync::Arc;
use std::time::Duration;

use russh::{ChannelMsg, Sig};
use tokio::sync::{mpsc, watch};

use super::connect::{Link, Target, connect, lock};
use super::forward::Forwards;
use super::sftp::Connection;
use super::{ConnectError, ExitStatus, LinkState, SshOptions, State};

/// The first pause before reconnecting a dropped connection; pauses double from here.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// After the remote program's exit status, how long to wait for the channel to close (and
/// the last output to arrive) before reporting the exit anyway.
const LINGER_AFTER_EXIT: Duration = Duration::from_secs(1);

/// How one connection ended.
enum LinkEnd {
    /// The remote program ended (exit status or signal); never reconnected.
    Exited(ExitStatus, Option<String>),
    /// The connection dropped, for this reason.
    Dropped(String),
    /// `terminate`, or the backend was dropped.
    Stopped,
}

/// What woke the link task.
enum Event {
    /// A channel message; `None` once the connection is gone.
    Channel(Option<ChannelMsg>),
    /// The terminal size changed (`false`: the backend is gone).
    Resized(bool),
    /// `terminate`, or the backend was dropped.
    Stop,
    /// The wait for the channel to close after the exit is over.
    Lingered,
}

/// The task that owns a session's SSH connection: output in, resizes out, and the end.
pub(super) struct LinkTask {
    pub(super) target: Target,
    pub(super) options: SshOptions,
    pub(super) state: Arc<watch::Sender<State>>,
    /// The connection's ups and downs, for the session's events.
    pub(super) link: watch::Sender<LinkState>,
    pub(super) output: mpsc::Sender<Vec<u8>>,
    pub(super) size: watch::Receiver<(u16, u16)>,
    pub(super) stop: watch::Receiver<bool>,
    /// The session's port forwards, told of every connection and its loss.
    pub(super) forwards: Arc<Forwards>,
    /// The connection as the session's transfers see it.
    pub(super) connection: watch::Sender<Connection>,
}

impl LinkTask {
    pub(super) async fn run(mut self, mut link: Link) {
        let (host, port) = (self.target.host.clone(), self.target.port);
        loop {
            match self.follow(&mut link).await {
                LinkEnd::Exited(status, reason) => {
                    tracing::info!(%host, port, code = ?status.code, signal = ?status.signal, "remote program ended");
                    close(link).await;
                    return self.finish(status, reason);
                }
                LinkEnd::Stopped => {
                    close(link).await;
                    return self.finish(unknown(), Some("terminated by request".to_owned()));
                }
                LinkEnd::Dropped(cause) => {
                    tracing::warn!(%host, port, %cause, "SSH connection lost");
                    // The jump hosts may still be up; a new chain gets connections of its own.
                    close_jumps(&mut link).await;
                    let Some(max) = self.options.reconnect else {
                        return self.finish(
                            unknown(),
                            Some(format!("connection to {host}:{port} lost: {cause}")),
                        );
                    };
                    self.state.send_replace(State::Reconnecting {
                        cause: cause.clone(),
                    });
                    self.link.send_replace(LinkState::Down {
                        cause: cause.clone(),
                    });
                    let notice = format!(
                        "\r\n--- connection to {host}:{port} lost ({cause}); reconnecting ---\r\n"
                    );
                    if !self.emit(notice.into_bytes()).await {
                        return self.finish(unknown(), Some("terminated by request".to_owned()));
                    }
                    match self.reconnect(max).await {
                        Ok(new_link) => {
                            link = new_link;
                            self.forwards.attach(&mut link);
                            self.connection
                                .send_replace(Connection::Up(Arc::clone(&link.handle)));
                            tracing::info!(%host, port, "SSH connection re-established");
                            self.state
                                .send_replace(State::Connected(Arc::clone(&link.write)));
                            self.link.send_replace(LinkState::Up);
                            let notice = format!("\r\n--- reconnected to {host}:{port} ---\r\n");
                            if !self.emit(notice.into_bytes()).await {
                                close(link).await;
                                return self
                                    .finish(unknown(), Some("terminated by request".to_owned()));
                            }
                        }
                        Err(reason) => return self.finish(unknown(), Some(reason)),
                    }
                }
            }
        }
    }

    /// Hands `chunk` to the reader; false if the session is being stopped or is gone.
    async fn emit(&mut self, chunk: Vec<u8>) -> bool {
        tokio::select! {
            sent = self.output.send(chunk) => sent.is_ok(),
            _ = self.stop.wait_for(|stop| *stop) => false,
        }
    }

    /// Follows one connection until it ends.
    async fn follow(&mut self, link: &mut Link) -> LinkEnd {
        for chunk in std::mem::take(&mut link.early) {
            if !self.emit(chunk).await {
                return LinkEnd::Stopped;
            }
        }
        let mut exit: Option<(ExitStatus, Option<String>)> = None;
        let linger = tokio::time::sleep(Duration::MAX);
        tokio::pin!(linger);
        loop {
            // The select only picks what happened; acting on it needs `self` whole.
            let event = tokio::select! {
                msg = link.read.wait() => Event::Channel(msg),
                changed = self.size.changed() => Event::Resized(changed.is_ok()),
                _ = self.stop.wait_for(|stop| *stop) => Event::Stop,
                _ = &mut linger, if exit.is_some() => Event::Lingered,
            };
            match event {
                Event::Channel(Some(ChannelMsg::Data { data }))
                | Event::Channel(Some(ChannelMsg::ExtendedData { data, .. })) => {
                    if !self.emit(data.to_vec()).await {
                        return LinkEnd::Stopped;
                    }
                }
                Event::Channel(Some(ChannelMsg::ExitStatus { exit_status })) => {
                    let code = i32::try_from(exit_status).unwrap_or(i32::MAX);
                    exit = Some((
                        ExitStatus {
                            code: Some(code),
                            signal: None,
                        },
                        None,
                    ));
                    linger
                        .as_mut()
                        .reset(tokio::time::Instant::now() + LINGER_AFTER_EXIT);
                }
                Event::Channel(Some(ChannelMsg::ExitSignal {
                    signal_name,
                    core_dumped,
                    error_message,
                    ..
                })) => {
                    exit = Some(exit_by_signal(&signal_name, core_dumped, &error_message));
                    linger
                        .as_mut()
                        .reset(tokio::time::Instant::now() + LINGER_AFTER_EXIT);
                }
                Event::Channel(Some(ChannelMsg::Close)) => {
                    return match exit {
                        Some((status, reason)) => LinkEnd::Exited(status, reason),
                        None => LinkEnd::Exited(
                            unknown(),
                            Some(format!(
                                "{}:{} closed the session without an exit status",
                                self.target.host, self.target.port
                            )),
                        ),
                    };
                }
                Event::Channel(Some(_)) => {}
                Event::Channel(None) => {
                    return match exit {
                        Some((status, reason)) => LinkEnd::Exited(status, reason),
                        None => {
                            self.forwards.detach();
                            self.connection.send_replace(Connection::Down);
                            LinkEnd::Dropped(drop_cause(link).await)
                        }
                    };
                }
                Event::Resized(false) | Event::Stop => return LinkEnd::Stopped,
                Event::Resized(true) => {
                    let (cols, rows) = *self.size.borrow_and_update();
                    if let Err(err) = link
                        .write
                        .window_change(cols.into(), rows.into(), 0, 0)
                        .await
                    {
                        tracing::debug!(host = %self.target.host, "window-change failed: {err}");
                    }
                }
                Event::Lingered => {
                    let (status, reason) = exit.take().expect("lingering after an exit");
                    return LinkEnd::Exited(status, reason);
                }
            }
        }
    }

    /// Reconnects with pauses doubling up to `max`, until it works, the session is stopped
    /// (`Err` with the reason), or the host's key no longer checks out.
    async fn reconnect(&mut self, max: Duration) -> Result<Link, String> {
        let stopped = || "terminated by request".to_owned();
        let mut pause = FIRST_BACKOFF.min(max);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = self.stop.wait_for(|stop| *stop) => return Err(stopped()),
            }
            let size = *self.size.borrow();
            let attempt = tokio::select! {
                attempt = connect(&self.target, size) => attempt,
                _ = self.stop.wait_for(|stop| *stop) => return Err(stopped()),
            };
            match attempt {
                Ok(link) => return Ok(link),
                Err(
                    err @ (ConnectError::HostKeyChanged { .. }
                    | ConnectError::HostKeyRevoked { .. }
                    | ConnectError::UnknownHostKey { .. }),
                ) => return Err(format!("reconnecting failed: {err}")),
                Err(err) => {
                    tracing::info!(host = %self.target.host, port = self.target.port, "reconnect attempt failed: {err}");
                    pause = (pause * 2).min(max);
                }
            }
        }
    }

    /// Ends the session: the output ends first (so the reader drains it), then the state.
    fn finish(self, status: ExitStatus, reason: Option<String>) {
        let LinkTask {
            output,
            state,
            forwards,
            connection,
            ..
        } = self;
        forwards.close();
        connection.send_replace(Connection::Ended);
        drop(output);
        state.send_replace(State::Ended { status, reason });
    }
}

/// Why a connection dropped, from russh's disconnect callback (which may come a moment after
/// the channel closes).
async fn drop_cause(link: &mut Link) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    // A forward or a transfer may hold the connection a moment more (its request failing with it); its
    // end can be awaited once the link holds it alone.
    while tokio::time::Instant::now() < deadline {
        if let Some(handle) = Arc::get_mut(&mut link.handle) {
            let _ = tokio::time::timeout_at(deadline, handle).await;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    lock(&link.disconnect)
        .take()
        .unwrap_or_else(|| "the connection closed".to_owned())
}

/// Closes the channel and the connection, then the jump hosts' connections (last hop first),
/// briefly: the far end may already be gone.
async fn close(mut link: Link) {
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = link.write.close().await;
        let _ = link
            .handle
            .disconnect(russh::Disconnect::ByApplication, "session ended", "en")
            .await;
    })
    .await;
    close_jumps(&mut link).await;
}

/// Closes a chain's jump connections, last hop first, briefly.
async fn close_jumps(link: &mut Link) {
    let jumps = std::mem::take(&mut link.jumps);
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        for jump in jumps.iter().rev() {
            let _ = jump
                .disconnect(russh::Disconnect::ByApplication, "session ended", "en")
                .await;
        }
    })
    .await;
}

fn unknown() -> ExitStatus {
    ExitStatus {
        code: None,
        signal: None,
    }
}

/// An `exit-signal` as an exit: the signal's number where this system knows the name,
/// otherwise a reason naming it.
fn exit_by_signal(signal: &Sig, core_dumped: bool, message: &str) -> (ExitStatus, Option<String>) {
    let name = match signal {
        Sig::ABRT => "ABRT",
        Sig::ALRM => "ALRM",
        Sig::FPE => "FPE",
        Sig::HUP => "HUP",
        Sig::ILL => "ILL",
        Sig::INT => "INT",
        Sig::KILL => "KILL",
        Sig::PIPE => "PIPE",
        Sig::QUIT => "QUIT",
        Sig::SEGV => "SEGV",
        Sig::TERM => "TERM",
        Sig::USR1 => "USR1",
        Sig::Custom(name) => name.as_str(),
    };
    let name = name.strip_prefix("SIG").unwrap_or(name);
    match nix::sys::signal::Signal::from_str(&format!("SIG{name}")) {
        Ok(signal) => (
            ExitStatus {
                code: None,
                signal: Some(signal as i32),
            },
            None,
        ),
        Err(_) => {
            let core = if core_dumped { " (core dumped)" } else { "" };
            let message = if message.is_empty() {
                String::new()
            } else {
                format!(": {message}")
            };
            (
                unknown(),
                Some(format!("killed by signal {name}{core}{message}")),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_signals_map_to_numbers_where_known() {
        assert_eq!(
            exit_by_signal(&Sig::KILL, false, "").0.signal,
            Some(libc::SIGKILL)
        );
        assert_eq!(
            exit_by_signal(&Sig::Custom("USR2".into()), false, "")
                .0
                .signal,
            Some(libc::SIGUSR2)
        );
        let (status, reason) = exit_by_signal(&Sig::Custom("FROB".into()), true, "boom");
        assert_eq!((status.code, status.signal), (None, None));
        assert_eq!(
            reason.as_deref(),
            Some("killed by signal FROB (core dumped): boom")
        );
    }
}
