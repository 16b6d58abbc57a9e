//! The keeper's wire format: one JSON message per `SOCK_SEQPACKET` packet, descriptors
//! attached with `SCM_RIGHTS`. Versioned: every message carries `v`, and a peer speaking a
//! version it does not know is refused with a message that names both.
//!
//! Pitfalls handled here: a packet is read whole or refused (`MSG_TRUNC`); descriptors are
//! received `CLOEXEC` (`MSG_CMSG_CLOEXEC`), so no session program ever inherits another's
//! terminal; a truncated control message (`MSG_CTRUNC`: the receiver's descriptor limit, or
//! too many) is an error, never a silent loss; at most [`MAX_FDS`] descriptors travel in one
//! packet (the kernel's limit is 253), so lists are sent in pages.

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

/// The hand-over format this build speaks.
pub const VERSION: u32 = 1;
/// Largest packet.
pub const MAX_MESSAGE: usize = 256 * 1024;
/// Most descriptors in one packet.
pub const MAX_FDS: usize = 200;

/// What a daemon asks of the keeper.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Who are you? Answered with [`Reply::Hello`].
    Hello,
    /// Start a program in a new PTY and hold it; the master comes back attached.
    Spawn(SpawnRequest),
    /// Hold the attached descriptor (a serial device) for session `id`.
    Hold {
        /// The session.
        id: String,
        /// Opaque to the keeper; given back by [`Request::List`].
        meta: String,
    },
    /// Every session held, with its descriptor attached, in pages.
    List,
    /// How session `id`'s program ended, if it has (reaping it if it just did).
    Status {
        /// The session.
        id: String,
    },
    /// The daemon is done with session `id`: close the keeper's copies.
    Release {
        /// The session.
        id: String,
    },
    /// SIGKILL every held session's process group, close everything and exit.
    TerminateAll,
}

/// A program to start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpawnRequest {
    /// The session id.
    pub id: String,
    /// Opaque to the keeper; given back by [`Request::List`].
    pub meta: String,
    /// Program and arguments; `None`: the login shell.
    pub command: Option<Vec<String>>,
    /// Working directory.
    pub cwd: PathBuf,
    /// Environment added to the keeper's own, in order.
    pub env: Vec<(String, String)>,
    /// Terminal width.
    pub cols: u16,
    /// Terminal height.
    pub rows: u16,
    /// Limits to apply before the program's first instruction; `None`: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<SpawnLimits>,
}

/// How to confine a program: the program is started through `trampoline --exec-limited`,
/// which joins the groups and sets the limits in its own process, then execs the program, so
/// no instruction of it runs unconfined. The groups exist already (the daemon made them).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpawnLimits {
    /// The program that understands `--exec-limited` (`pulsar-keeper`, or
    /// `pulsar-standalone`), and any arguments before that flag.
    pub trampoline: Vec<String>,
    /// `cgroup.procs` files to write the program's pid to (one per cgroup v1 controller, or
    /// the one cgroup v2 group).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cgroup_procs: Vec<PathBuf>,
    /// `RLIMIT_AS`, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address_space: Option<u64>,
    /// `RLIMIT_NPROC` (per user, as the kernel counts it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processes: Option<u64>,
    /// `RLIMIT_NOFILE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_files: Option<u64>,
    /// The nice value to start at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nice: Option<i32>,
}

/// How a program ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exit {
    /// Exit code of a normal exit.
    pub code: Option<i32>,
    /// Signal that killed it.
    pub signal: Option<i32>,
}

/// One held session, as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    /// The session id.
    pub id: String,
    /// What the daemon gave at spawn or hold.
    pub meta: String,
    /// The program's pid (`None` for a held device).
    pub pid: Option<u32>,
    /// Set once the program has ended (its output may still be readable).
    pub exit: Option<Exit>,
}

/// The keeper's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    /// To [`Request::Hello`].
    Hello {
        /// The keeper's pid.
        pid: u32,
        /// Its build version.
        version: String,
    },
    /// To [`Request::Spawn`]; the PTY master is attached.
    Spawned {
        /// The program's pid.
        pid: u32,
        /// The request's limits were applied (through the trampoline). A keeper from before
        /// limits existed leaves it out: the daemon then refuses the session instead of
        /// running it unconfined.
        #[serde(default)]
        limited: bool,
    },
    /// Done (hold, release, terminate).
    Done,
    /// A page of [`Request::List`]; each session's descriptor attached in order.
    Sessions {
        /// This page.
        sessions: Vec<Held>,
        /// More pages follow.
        more: bool,
    },
    /// To [`Request::Status`].
    Status {
        /// `None` while it runs.
        exit: Option<Exit>,
    },
    /// The request failed.
    Error {
        /// Why, in words.
        message: String,
    },
}

#[derive(Serialize, Deserialize)]
struct Envelope<T> {
    v: u32,
    #[serde(flatten)]
    body: T,
}

/// Sends `message` with `fds` attached as one packet.
pub fn send<T: Serialize>(socket: RawFd, message: &T, fds: &[RawFd]) -> io::Result<()> {
    if fds.len() > MAX_FDS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} descriptors in one packet (at most {MAX_FDS})",
                fds.len()
            ),
        ));
    }
    let text = serde_json::to_vec(&Envelope {
        v: VERSION,
        body: message,
    })
    .map_err(io::Error::other)?;
    if text.len() > MAX_MESSAGE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("a {}-byte message (at most {MAX_MESSAGE})", text.len()),
        ));
    }
    let iov = [IoSlice::new(&text)];
    let rights = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage<'_>] = if fds.is_empty() { &[] } else { &rights };
    loop {
        match sendmsg::<()>(socket, &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None) {
            Ok(_) => return Ok(()),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(err) => return Err(err.into()),
        }
    }
}

/// Receives one packet: the message and its descriptors (CLOEXEC). `Ok(None)` at EOF.
pub fn recv<T: DeserializeOwned>(socket: RawFd) -> io::Result<Option<(T, Vec<OwnedFd>)>> {
    // The packet's length first (peeked: nothing is taken, and with no room for control
    // data no descriptor is installed), so the buffer is that long, not MAX_MESSAGE: a
    // quarter-megabyte zeroed for every call left that much touched memory behind in the
    // allocator of each thread that made one. Longer than MAX_MESSAGE: refused below.
    let len = loop {
        match nix::sys::socket::recv(socket, &mut [], MsgFlags::MSG_PEEK | MsgFlags::MSG_TRUNC) {
            Ok(len) => break len,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(err) => return Err(err.into()),
        }
    };
    let mut buf = vec![0u8; len.min(MAX_MESSAGE)];
    let mut space = nix::cmsg_space!([RawFd; MAX_FDS]);
    let (len, fds, flags) = loop {
        let mut iov = [IoSliceMut::new(&mut buf)];
        match recvmsg::<()>(
            socket,
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(msg) => {
                let mut fds = Vec::new();
                for cmsg in msg.cmsgs() {
                    if let ControlMessageOwned::ScmRights(received) = cmsg {
                        // SAFETY: the kernel just installed these descriptors for us.
                        fds.extend(
                            received
                                .into_iter()
                                .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                        );
                    }
                }
                break (msg.bytes, fds, msg.flags);
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(err) => return Err(err.into()),
        }
    };
    if flags.contains(MsgFlags::MSG_CTRUNC) {
        return Err(io::Error::other(
            "descriptors were lost in transit (control message truncated: too many, or the \
             open-files limit was reached)",
        ));
    }
    if flags.contains(MsgFlags::MSG_TRUNC) {
        return Err(io::Error::other(format!(
            "a message longer than {MAX_MESSAGE} bytes"
        )));
    }
    if len == 0 && fds.is_empty() {
        return Ok(None);
    }
    let value: serde_json::Value = serde_json::from_slice(&buf[..len])
        .map_err(|err| io::Error::new(io::ErrorKind::InvalidData, format!("not JSON: {err}")))?;
    let version = value.get("v").and_then(serde_json::Value::as_u64);
    if version != Some(u64::from(VERSION)) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "unsupported hand-over version {} (this build speaks {VERSION})",
                version.map_or_else(|| "none".to_owned(), |v| v.to_string())
            ),
        ));
    }
    let envelope: Envelope<T> = serde_json::from_value(value)
        .map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err.to_string()))?;
    Ok(Some((envelope.body, fds)))
}

/// A connected `SOCK_SEQPACKET` pair (for tests and hand-overs).
pub fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?;
    Ok((a, b))
}

/// The raw descriptors of `fds`, to attach.
pub fn raw(fds: &[OwnedFd]) -> Vec<RawFd> {
    fds.iter().map(AsRawFd::as_raw_fd).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_and_its_descriptors_arrive_together() {
        let (a, b) = seqpacket_pair().unwrap();
        let (r, w) = nix::unistd::pipe().unwrap();
        send(
            a.as_raw_fd(),
            &Request::Status { id: "x".into() },
            &[r.as_raw_fd()],
        )
        .unwrap();
        let (request, fds) = recv::<Request>(b.as_raw_fd()).unwrap().unwrap();
        assert_eq!(request, Request::Status { id: "x".into() });
        assert_eq!(fds.len(), 1);
        // The received descriptor is the pipe's read end, and it is close-on-exec.
        nix::unistd::write(&w, b"!").unwrap();
        let mut byte = [0u8; 1];
        assert_eq!(nix::unistd::read(fds[0].as_raw_fd(), &mut byte).unwrap(), 1);
        let flags = nix::fcntl::fcntl(fds[0].as_raw_fd(), nix::fcntl::FcntlArg::F_GETFD).unwrap();
        assert!(flags & libc::FD_CLOEXEC != 0);
    }

    #[test]
    fn an_unknown_version_is_refused_naming_both() {
        let (a, b) = seqpacket_pair().unwrap();
        nix::sys::socket::send(
            a.as_raw_fd(),
            br#"{"v":99,"op":"hello"}"#,
            MsgFlags::empty(),
        )
        .unwrap();
        let err = recv::<Request>(b.as_raw_fd()).unwrap_err();
        assert!(
            err.to_string().contains("99") && err.to_string().contains("speaks 1"),
            "{err}"
        );
    }

    #[test]
    fn more_descriptors_than_a_packet_takes_are_refused_before_sending() {
        let (a, _b) = seqpacket_pair().unwrap();
        let fds = vec![a.as_raw_fd(); MAX_FDS + 1];
        assert!(send(a.as_raw_fd(), &Request::List, &fds).is_err());
    }

    #[test]
    fn end_of_stream_is_none() {
        let (a, b) = seqpacket_pair().unwrap();
        drop(a);
        assert!(recv::<Request>(b.as_raw_fd()).unwrap().is_none());
    }
}
