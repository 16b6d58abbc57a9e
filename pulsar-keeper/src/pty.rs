//! Starting a program in a new pseudo-terminal, the one way both the keeper and a daemon
//! without one do it: a session of its own (`setsid`) whose controlling terminal is the new
//! PTY, signals at their defaults, the login shell when no command is given, the parent's
//! environment with the request's added.
//!
//! What a spawn costs does not grow with the descriptors the parent holds (a keeper holds
//! two a session): every descriptor here is opened close-on-exec, and the child marks any
//! other one it inherited close-on-exec with one `close_range` before it execs. portable-pty,
//! used here before, listed `/proc/self/fd` in the child and closed each descriptor: about
//! 10 µs a descriptor, 36-40 ms a spawn for a keeper holding 2000 sessions (2 ms at none).

use std::ffi::{CStr, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::wire::SpawnRequest;

/// The soft open-files limit this process started with, before [`raise_open_files_limit`]
/// raised its own; `u64::MAX` until then (nothing to restore).
static STARTED_WITH_OPEN_FILES: AtomicU64 = AtomicU64::new(u64::MAX);

/// Raises this process's soft open-files limit to its hard limit (a daemon or keeper holds
/// two or three descriptors a session, and the common soft limit of 1024 would cap it near
/// 300 sessions), remembering the limit it started with for the programs it starts
/// ([`restore_open_files_limit`]): a program in a session starts with the limit it would
/// have had in a terminal, not the daemon's. The new limit, if it was raised.
pub fn raise_open_files_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain getrlimit/setrlimit on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return None;
        }
        let _ = STARTED_WITH_OPEN_FILES.compare_exchange(
            u64::MAX,
            limit.rlim_cur,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
        if limit.rlim_cur >= limit.rlim_max {
            return None;
        }
        limit.rlim_cur = limit.rlim_max;
        (libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0).then_some(limit.rlim_max)
    }
}

/// Between fork and exec: puts the soft open-files limit back to what this process started
/// with, if [`raise_open_files_limit`] raised it. Async-signal-safe.
pub fn restore_open_files_limit() {
    let soft = STARTED_WITH_OPEN_FILES.load(Ordering::Relaxed);
    if soft == u64::MAX {
        return;
    }
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain getrlimit/setrlimit (system calls) on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur > soft {
            limit.rlim_cur = soft;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// Starts `request`'s program in a new PTY: a CLOEXEC copy of the master and the pid. The
/// caller reaps the child (waitpid on its pid, or its pidfd). The error is the bare reason
/// ("cannot open a pty: ...", "... is not executable", the exec failure); the caller names
/// the program.
pub fn spawn(request: &SpawnRequest) -> Result<(OwnedFd, u32), String> {
    let env = |key: &str| -> Option<OsString> {
        match request.env.iter().rev().find(|(k, _)| k == key) {
            Some((_, value)) => Some(value.into()),
            None => std::env::var_os(key),
        }
    };
    let dir = if request.cwd.is_dir() {
        request.cwd.clone()
    } else {
        home(env("HOME"))
    };
    let shell = login_shell(env("SHELL"));
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
            let mut cmd = Command::new(resolve(program, &dir, env("PATH"))?);
            cmd.arg0(program);
            cmd.args(before);
            cmd.args([crate::limited::FLAG, spec.as_str()]);
            match command {
                Some(argv) => {
                    cmd.arg("--");
                    cmd.args(argv);
                }
                None => {
                    cmd.arg("--login");
                }
            }
            cmd
        }
        // The login shell: `-bash` for /bin/bash.
        (None, None) => {
            let base = shell.rsplit('/').next().unwrap_or(&shell);
            let mut cmd = Command::new(&shell);
            cmd.arg0(format!("-{base}"));
            cmd
        }
        (Some(argv), None) => {
            let mut cmd = Command::new(resolve(&argv[0], &dir, env("PATH"))?);
            cmd.arg0(&argv[0]);
            cmd.args(&argv[1..]);
            cmd
        }
    };
    cmd.current_dir(&dir);
    cmd.env("SHELL", &shell);
    cmd.envs(request.env.iter().map(|(k, v)| (k, v)));
    let (master, slave) = open_pty(request.cols, request.rows)?;
    let slave_copy = |slave: &OwnedFd| {
        slave
            .try_clone()
            .map_err(|err| format!("cannot open a pty: {err}"))
    };
    cmd.stdin(Stdio::from(slave_copy(&slave)?));
    cmd.stdout(Stdio::from(slave_copy(&slave)?));
    cmd.stderr(Stdio::from(slave));
    // SAFETY: `in_child` makes only async-signal-safe calls and allocates nothing.
    unsafe { cmd.pre_exec(in_child) };
    // The parent's copies of the slave go with `cmd`: only the child may hold it, so that
    // the master sees EOF once the child's side closes.
    let child = cmd.spawn().map_err(|err| err.to_string())?;
    Ok((master, child.id()))
}

/// A new PTY of `cols`×`rows`: the master and the slave, both close-on-exec from the start
/// (no window in which another thread's spawn could inherit them).
fn open_pty(cols: u16, rows: u16) -> Result<(OwnedFd, OwnedFd), String> {
    let failed = |err: io::Error| match err.raw_os_error() {
        // The kernel's words for it ("No space left on device") name the wrong thing.
        Some(libc::ENOSPC) => "cannot open a pty: every pseudo-terminal is in use (the limit \
                               of kernel.pty.max, or of this devpts mount, is reached)"
            .to_owned(),
        _ => format!("cannot open a pty: {err}"),
    };
    // SAFETY: posix_openpt has no preconditions; the result is checked.
    let fd = unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(failed(io::Error::last_os_error()));
    }
    // SAFETY: posix_openpt just returned this descriptor, and nothing else holds it.
    let master = unsafe { OwnedFd::from_raw_fd(fd) };
    let m = master.as_raw_fd();
    // SAFETY: plain calls on a descriptor we hold; each result is checked.
    if unsafe { libc::grantpt(m) } != 0 || unsafe { libc::unlockpt(m) } != 0 {
        return Err(failed(io::Error::last_os_error()));
    }
    let slave = open_slave(m).map_err(failed)?;
    let size = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize that lives across the call.
    if unsafe { libc::ioctl(m, libc::TIOCSWINSZ, &size) } != 0 {
        return Err(failed(io::Error::last_os_error()));
    }
    Ok((master, slave))
}

/// The slave of master `m`: straight from the master (`TIOCGPTPEER`, no path to look up),
/// or by its name where the kernel is older than 4.13.
fn open_slave(m: libc::c_int) -> io::Result<OwnedFd> {
    let flags = libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC;
    // SAFETY: TIOCGPTPEER takes open flags and returns a new descriptor or -1.
    let fd = unsafe { libc::ioctl(m, libc::TIOCGPTPEER, flags) };
    if fd >= 0 {
        // SAFETY: the kernel just returned this descriptor to us.
        return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
    }
    let mut name = [0 as libc::c_char; 128];
    // SAFETY: ptsname_r writes at most `name.len()` bytes, NUL included.
    if unsafe { libc::ptsname_r(m, name.as_mut_ptr(), name.len()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the name is NUL-terminated (ptsname_r succeeded).
    let fd = unsafe { libc::open(name.as_ptr(), flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: open just returned this descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// In the child, between fork and exec (the slave is its standard input, output and error
/// by now): signals at their defaults and unblocked, a session of its own, the slave its
/// controlling terminal, every other descriptor close-on-exec, and the open-files limit the
/// parent started with.
fn in_child() -> io::Result<()> {
    restore_open_files_limit();
    // SAFETY: each of these is async-signal-safe and takes no pointer that outlives it.
    unsafe {
        for signal in [
            libc::SIGCHLD,
            libc::SIGHUP,
            libc::SIGINT,
            libc::SIGQUIT,
            libc::SIGTERM,
            libc::SIGALRM,
        ] {
            libc::signal(signal, libc::SIG_DFL);
        }
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
        if libc::setsid() == -1 {
            return Err(io::Error::last_os_error());
        }
        if libc::ioctl(0, libc::TIOCSCTTY, 0) == -1 {
            return Err(io::Error::last_os_error());
        }
        // Descriptors the parent was given without close-on-exec (by whatever started it)
        // must not reach the program. Before Linux 5.11 (or where a filter refuses the
        // call), those listed in /proc/self/fd, read without allocating.
        let (first, last): (libc::c_uint, libc::c_uint) = (3, libc::c_uint::MAX);
        if libc::syscall(
            libc::SYS_close_range,
            first,
            last,
            libc::CLOSE_RANGE_CLOEXEC,
        ) != 0
        {
            mark_listed_close_on_exec();
        }
    }
    Ok(())
}

/// Marks every descriptor from 3 on that `/proc/self/fd` lists close-on-exec: `open`,
/// `getdents64` into a buffer on the stack, `fcntl`; async-signal-safe (no allocation).
fn mark_listed_close_on_exec() {
    const DIR: &CStr = c"/proc/self/fd";
    // SAFETY: open/getdents64/fcntl/close are system calls on descriptors this function
    // holds or was handed by the kernel; the records are read within the bytes it wrote.
    unsafe {
        let dir = libc::open(
            DIR.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        );
        if dir < 0 {
            return;
        }
        let mut buf = [0u8; 4096];
        loop {
            let n = libc::syscall(libc::SYS_getdents64, dir, buf.as_mut_ptr(), buf.len());
            if n <= 0 {
                break;
            }
            let mut at = 0usize;
            while at + 19 < n as usize {
                // linux_dirent64: d_ino u64, d_off i64, d_reclen u16, d_type u8, d_name.
                let reclen = u16::from_ne_bytes([buf[at + 16], buf[at + 17]]) as usize;
                if reclen == 0 {
                    break;
                }
                let mut fd: libc::c_int = 0;
                let mut digits = 0;
                for &b in buf[at + 19..at + reclen].iter().take_while(|&&b| b != 0) {
                    if !b.is_ascii_digit() {
                        digits = 0;
                        break;
                    }
                    fd = fd
                        .saturating_mul(10)
                        .saturating_add(libc::c_int::from(b - b'0'));
                    digits += 1;
                }
                if digits > 0 && fd > 2 && fd != dir {
                    let flags = libc::fcntl(fd, libc::F_GETFD);
                    if flags >= 0 && flags & libc::FD_CLOEXEC == 0 {
                        libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
                    }
                }
                at += reclen;
            }
        }
        libc::close(dir);
    }
}

/// The program `name` names, as it will be run from `dir`: found in `path` if it has no
/// slash; otherwise relative to `dir`. Refused with the reason a person can act on.
fn resolve(name: &str, dir: &Path, path: Option<OsString>) -> Result<PathBuf, String> {
    if name.contains('/') {
        let candidate = dir.join(name);
        return match runnable(&candidate) {
            Ok(()) => Ok(candidate),
            Err(why) => Err(format!("{name} {why}")),
        };
    }
    // As execvp does without a PATH.
    let path = path.unwrap_or_else(|| "/bin:/usr/bin".into());
    let mut seen = Vec::new();
    for entry in std::env::split_paths(&path) {
        let candidate = dir.join(entry).join(name);
        match runnable(&candidate) {
            Ok(()) => return Ok(candidate),
            Err(Unrunnable::Missing) => {}
            Err(why) => seen.push(format!("{} {why}", candidate.display())),
        }
    }
    let mut message = format!(
        "{name} is not in PATH ({})",
        String::from_utf8_lossy(path.as_bytes())
    );
    for line in seen {
        message.push_str("; ");
        message.push_str(&line);
    }
    Err(message)
}

/// Why a path cannot be executed.
enum Unrunnable {
    Missing,
    Directory,
    NotExecutable,
}

impl std::fmt::Display for Unrunnable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Missing => "does not exist",
            Self::Directory => "is a directory",
            Self::NotExecutable => "is not executable",
        })
    }
}

fn runnable(path: &Path) -> Result<(), Unrunnable> {
    let meta = std::fs::metadata(path).map_err(|_| Unrunnable::Missing)?;
    if meta.is_dir() {
        return Err(Unrunnable::Directory);
    }
    if !executable(path) {
        return Err(Unrunnable::NotExecutable);
    }
    Ok(())
}

/// `access(X_OK)`: executable by this user.
fn executable(path: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c` is a NUL-terminated path that lives across the call.
    unsafe { libc::access(c.as_ptr(), libc::X_OK) == 0 }
}

/// The login shell: `$SHELL` if it can be run, else the password database's, else /bin/sh.
fn login_shell(from_env: Option<OsString>) -> String {
    if let Some(shell) = from_env.as_deref().and_then(OsStr::to_str)
        && executable(Path::new(shell))
    {
        return shell.to_owned();
    }
    passwd_field(|entry| entry.pw_shell)
        .filter(|shell| executable(Path::new(shell)))
        .unwrap_or_else(|| "/bin/sh".to_owned())
}

/// Where a program runs when the asked directory is gone: `$HOME`, else the password
/// database's home, else `/`.
fn home(from_env: Option<OsString>) -> PathBuf {
    from_env
        .map(PathBuf::from)
        .or_else(|| passwd_field(|entry| entry.pw_dir).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/"))
}

/// A field of this user's password database entry.
fn passwd_field(field: impl Fn(&libc::passwd) -> *mut libc::c_char) -> Option<String> {
    // SAFETY: a passwd is plain data (integers and pointers), for getpwuid_r to fill.
    let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 4096];
    let mut found = std::ptr::null_mut();
    // SAFETY: getpwuid_r writes into `entry` and `buf`, both live across the call, and
    // sets `found` to `&entry` or null.
    let rc = unsafe {
        libc::getpwuid_r(
            libc::getuid(),
            &mut entry,
            buf.as_mut_ptr(),
            buf.len(),
            &mut found,
        )
    };
    if rc != 0 || found.is_null() {
        return None;
    }
    let ptr = field(&entry);
    if ptr.is_null() {
        return None;
    }
    // SAFETY: the entry's strings point into `buf`, NUL-terminated, still alive here.
    let text = unsafe { CStr::from_ptr(ptr) };
    text.to_str().ok().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_close_range_every_listed_descriptor_is_marked_close_on_exec() {
        // Opened without close-on-exec, as a descriptor inherited from a careless parent is.
        // SAFETY: open returns a new descriptor or -1; it is closed below.
        let fd = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY) };
        assert!(fd > 2);
        // SAFETY: F_GETFD on the descriptor just opened.
        let before = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        assert_eq!(before & libc::FD_CLOEXEC, 0);
        mark_listed_close_on_exec();
        // SAFETY: as above; then closing the descriptor this test opened.
        let after = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        unsafe { libc::close(fd) };
        assert_eq!(after & libc::FD_CLOEXEC, libc::FD_CLOEXEC);
    }
}
