//! `--exec-limited SPEC -- PROGRAM ARGS...`: the trampoline a confined program starts
//! through. In its own process it joins the session's control groups and sets its resource
//! limits and nice value, then execs the program, so no instruction of the program runs
//! unconfined (and none of that work, which reads files and allocates, runs between fork and
//! exec, where only async-signal-safe calls are allowed).
//!
//! `SPEC` is a [`SpawnLimits`] as JSON; `--login` instead of a program starts `$SHELL` as a
//! login shell (`-bash`), as `pty` does for a session without a command. On a failure
//! nothing is executed: the reason goes to the terminal and the exit code is 126.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::Command;

use crate::wire::SpawnLimits;

/// The flag that selects the trampoline.
pub const FLAG: &str = "--exec-limited";

/// Runs the trampoline on `args` (what follows [`FLAG`]); returns only on a failure, with
/// the exit code to end with.
pub fn exec(args: &[OsString]) -> u8 {
    match confine_and_exec(args) {
        Ok(never) => match never {},
        Err(message) => {
            eprintln!("pulsar: cannot start the session under its limits: {message}");
            126
        }
    }
}

enum Never {}

fn confine_and_exec(args: &[OsString]) -> Result<Never, String> {
    let (spec, rest) = args
        .split_first()
        .ok_or("no limits given (usage: --exec-limited SPEC -- PROGRAM ARGS... | --login)")?;
    let spec: SpawnLimits = serde_json::from_str(&spec.to_string_lossy())
        .map_err(|err| format!("the limits are not understood: {err}"))?;
    let mut command = match rest {
        [flag] if flag == "--login" => {
            let shell = std::env::var_os("SHELL").unwrap_or_else(|| "/bin/sh".into());
            let shown = shell.to_string_lossy().into_owned();
            let base = shown.rsplit('/').next().unwrap_or(&shown).to_owned();
            let mut command = Command::new(&shell);
            command.arg0(format!("-{base}"));
            command
        }
        [dashes, program, args @ ..] if dashes == "--" => {
            let mut command = Command::new(program);
            command.args(args);
            command
        }
        _ => return Err("expected `-- PROGRAM ARGS...` or `--login` after the limits".into()),
    };
    confine(&spec)?;
    let err = command.exec();
    Err(format!("cannot run the program: {err}"))
}

/// Applies `spec` to this process (and so to everything it execs and forks).
pub fn confine(spec: &SpawnLimits) -> Result<(), String> {
    for procs in &spec.cgroup_procs {
        // "0" is the writer itself.
        std::fs::write(procs, "0")
            .map_err(|err| format!("cannot join {}: {err}", procs.display()))?;
    }
    let limits = [
        (libc::RLIMIT_AS, spec.address_space, "RLIMIT_AS"),
        (libc::RLIMIT_NPROC, spec.processes, "RLIMIT_NPROC"),
        (libc::RLIMIT_NOFILE, spec.open_files, "RLIMIT_NOFILE"),
    ];
    for (resource, value, name) in limits {
        let Some(value) = value else { continue };
        let limit = libc::rlimit {
            rlim_cur: value as libc::rlim_t,
            rlim_max: value as libc::rlim_t,
        };
        // SAFETY: setrlimit reads a valid rlimit; the result is checked.
        if unsafe { libc::setrlimit(resource, &limit) } != 0 {
            return Err(format!(
                "cannot set {name} to {value}: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    if let Some(nice) = spec.nice {
        // SAFETY: setpriority on this process; the result is checked.
        if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) } != 0 {
            return Err(format!(
                "cannot set the nice value to {nice}: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    Ok(())
}

/// Removes the session groups whose `cgroup.procs` files are `procs` (what the program was
/// started into), killing whatever still runs in them first (a background job left by the
/// program) and retrying while the kernel lets go of the dead (a killed process leaves its
/// group a moment after it dies). Then removes the daemon's level above each group, and the
/// user's `pulsar-UID` level above that, where they are left empty, so nothing of Pulsar's
/// stays behind. Used by the daemon when a session ends and by the keeper when it ends
/// everything.
pub fn remove_groups(procs: &[std::path::PathBuf]) {
    use std::time::Duration;
    for file in procs {
        let Some(group) = file.parent() else { continue };
        let mut gone = !group.exists();
        for _ in 0..200 {
            if gone {
                break;
            }
            for pid in std::fs::read_to_string(file).unwrap_or_default().lines() {
                if let Ok(pid) = pid.trim().parse::<i32>() {
                    // SAFETY: kill sends a signal; a pid gone meanwhile is ESRCH, harmless.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
            match std::fs::remove_dir(group) {
                Ok(()) => gone = true,
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => gone = true,
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        if !gone {
            eprintln!(
                "pulsar: could not remove the control group {}",
                group.display()
            );
            continue;
        }
        // Fails, harmlessly, while another session's group is left in them.
        if let Some(base) = group.parent()
            && std::fs::remove_dir(base).is_ok()
            && let Some(user) = base.parent()
            && user
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("pulsar-"))
        {
            let _ = std::fs::remove_dir(user);
        }
    }
}
