//! A blocking client of the keeper: what a daemon (and the tests' harness) uses. One request
//! at a time, each answered before the next; a daemon serialises its calls and runs them off
//! its async workers.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::time::Duration;

use nix::sys::socket::{
    AddressFamily, SockFlag, SockType, UnixAddr, connect, setsockopt, socket, sockopt,
};

use crate::wire::{self, Held, Reply, Request};

/// Longest a keeper may take to answer one request.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection to a keeper.
#[derive(Debug)]
pub struct Client {
    socket: OwnedFd,
}

impl Client {
    /// Connects to the keeper at `path`.
    pub fn connect(path: &Path) -> io::Result<Self> {
        let socket = socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_CLOEXEC,
            None,
        )?;
        connect(socket.as_raw_fd(), &UnixAddr::new(path)?)?;
        let timeout = nix::sys::time::TimeVal::new(ANSWER_TIMEOUT.as_secs() as i64, 0);
        setsockopt(&socket, sockopt::ReceiveTimeout, &timeout)?;
        setsockopt(&socket, sockopt::SendTimeout, &timeout)?;
        Ok(Self { socket })
    }

    /// Sends `request` with `fds` and reads one answer; a keeper's error becomes `Err`.
    pub fn call(&self, request: &Request, fds: &[RawFd]) -> io::Result<(Reply, Vec<OwnedFd>)> {
        wire::send(self.socket.as_raw_fd(), request, fds)?;
        self.answer()
    }

    fn answer(&self) -> io::Result<(Reply, Vec<OwnedFd>)> {
        match wire::recv::<Reply>(self.socket.as_raw_fd())? {
            Some((Reply::Error { message }, _)) => Err(io::Error::other(message)),
            Some(answer) => Ok(answer),
            None => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the keeper closed the connection",
            )),
        }
    }

    /// The keeper's pid and version.
    pub fn hello(&self) -> io::Result<(u32, String)> {
        match self.call(&Request::Hello, &[])?.0 {
            Reply::Hello { pid, version } => Ok((pid, version)),
            other => Err(unexpected(&other)),
        }
    }

    /// Every session held, each with a copy of its descriptor.
    pub fn list(&self) -> io::Result<Vec<(Held, OwnedFd)>> {
        wire::send(self.socket.as_raw_fd(), &Request::List, &[])?;
        let mut all = Vec::new();
        loop {
            let (reply, fds) = self.answer()?;
            let Reply::Sessions { sessions, more } = reply else {
                return Err(unexpected(&reply));
            };
            if sessions.len() != fds.len() {
                return Err(io::Error::other(format!(
                    "{} sessions listed with {} descriptors",
                    sessions.len(),
                    fds.len()
                )));
            }
            all.extend(sessions.into_iter().zip(fds));
            if !more {
                return Ok(all);
            }
        }
    }
}

fn unexpected(reply: &Reply) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("unexpected answer from the keeper: {reply:?}"),
    )
}
