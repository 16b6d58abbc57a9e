//! Starting a program in a new pseudo-terminal (portable-pty: setsid, controlling terminal,
//! login-shell defaults), the one way both the keeper and a daemon without one do it.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use portable_pty::{CommandBuilder, PtySize, native_pty_system};

use crate::wire::SpawnRequest;

/// Starts `request`'s program in a new PTY: a CLOEXEC copy of the master and the pid. The
/// caller reaps the child (waitpid on its pid, or its pidfd). The error is the bare reason
/// ("cannot open a pty: ...", the exec failure); the caller names the program.
pub fn spawn(request: &SpawnRequest) -> Result<(OwnedFd, u32), String> {
    let mut cmd = match (&request.command, &request.limits) {
        (Some(argv), _) if argv.is_empty() || argv[0].is_empty() => {
            return Err("command is empty".to_owned());
        }
        // Confined: through the trampoline, which joins the groups, sets the limits and
        // execs the program (see `limited`).
        (command, Some(limits)) => {
            let Some((program, before)) = limits.trampoline.split_first() else {
                return Err("no program to apply the limits with".to_owned());
            };
            let spec = serde_json::to_string(limits).map_err(|err| err.to_string())?;
            let mut cmd = CommandBuilder::new(program);
            cmd.args(before);
            cmd.args([crate::limited::FLAG, spec.as_str()]);
            match command {
                Some(argv) => {
                    cmd.arg("--");
                    cmd.args(argv);
                }
                None => cmd.arg("--login"),
            }
            cmd
        }
        (None, None) => CommandBuilder::new_default_prog(),
        (Some(argv), None) => {
            let mut cmd = CommandBuilder::new(&argv[0]);
            cmd.args(&argv[1..]);
            cmd
        }
    };
    cmd.cwd(&request.cwd);
    for (key, value) in &request.env {
        cmd.env(key, value);
    }
    let pair = native_pty_system()
        .openpty(PtySize {
            rows: request.rows,
            cols: request.cols,
            pixel_width: 0,
            pixel_height: 0,
        })
        .map_err(|err| match why_no_pty() {
            // The kernel's words for it ("No space left on device") name the wrong thing.
            Some(libc::ENOSPC) => "cannot open a pty: every pseudo-terminal is in use (the \
                                   limit of kernel.pty.max, or of this devpts mount, is reached)"
                .to_owned(),
            _ => format!("cannot open a pty: {err}"),
        })?;
    let child = pair
        .slave
        .spawn_command(cmd)
        .map_err(|err| format!("{err:#}"))?;
    // Only the child may hold the slave: the master sees EOF once the child's side closes.
    drop(pair.slave);
    let pid = child
        .process_id()
        .ok_or_else(|| "no process id".to_owned())?;
    let master = pair
        .master
        .as_raw_fd()
        .ok_or_else(|| "pty master has no fd".to_owned())?;
    let kept = dup_cloexec(master).map_err(|err| format!("cannot keep the pty: {err}"))?;
    // portable-pty's handles close their copies; the caller keeps its own, and reaps the
    // child itself (dropping portable-pty's child handle neither waits nor kills).
    drop(pair.master);
    drop(child);
    Ok((kept, pid))
}

/// Why opening a pseudo-terminal fails now: the errno of one more try (portable-pty renders
/// its error as text), or `None` if that one succeeds.
fn why_no_pty() -> Option<libc::c_int> {
    // SAFETY: posix_openpt has no preconditions; a descriptor it returns is closed at once.
    let fd = unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) };
    if fd < 0 {
        return io::Error::last_os_error().raw_os_error();
    }
    // SAFETY: posix_openpt just returned this descriptor, and nothing else holds it.
    drop(unsafe { OwnedFd::from_raw_fd(fd) });
    None
}

fn dup_cloexec(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: fcntl on a descriptor we hold; the result is checked.
    let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if dup < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fcntl just returned this new descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(dup) })
}
