//! Out of pseudo-terminals: the request that finds none is refused clearly, and the daemon
//! serves the rest.
//!
//! The global `/proc/sys/kernel/pty/max` is shared with every test running in parallel, so
//! the daemon (and so its keeper) runs in a mount namespace of its own with a private devpts
//! instance of [`PTYS`] terminals mounted on `/dev/pts`, its `ptmx` bound onto `/dev/ptmx`.
//! Root only (as CI runs it); as anyone else it fails saying so.

use std::ffi::CString;
use std::os::unix::process::CommandExt as _;

use pulsar_e2e::*;
use serde_json::json;

/// Terminals in the daemon's devpts instance.
const PTYS: usize = 4;

async fn daemon_with_few_ptys() -> Daemon {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test must run as root: it mounts a devpts instance in a mount namespace"
    );
    // Allocated before the fork: between fork and exec only system calls.
    let devpts = CString::new("devpts").unwrap();
    let pts = CString::new("/dev/pts").unwrap();
    let options = CString::new(format!("newinstance,max={PTYS},ptmxmode=0666")).unwrap();
    let root = CString::new("/").unwrap();
    let new_ptmx = CString::new("/dev/pts/ptmx").unwrap();
    let ptmx = CString::new("/dev/ptmx").unwrap();
    Daemon::start_configured(&[], move |command| {
        // SAFETY: only unshare and mount between fork and exec (async-signal-safe system
        // calls), on strings allocated before the fork; each result is checked.
        unsafe {
            command.pre_exec(move || {
                let check = |rc: libc::c_int| {
                    if rc == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                };
                let none = std::ptr::null();
                check(libc::unshare(libc::CLONE_NEWNS))?;
                // Nothing mounted here reaches the host's namespace.
                check(libc::mount(
                    none,
                    root.as_ptr(),
                    none,
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ))?;
                check(libc::mount(
                    devpts.as_ptr(),
                    pts.as_ptr(),
                    devpts.as_ptr(),
                    0,
                    options.as_ptr().cast(),
                ))?;
                check(libc::mount(
                    new_ptmx.as_ptr(),
                    ptmx.as_ptr(),
                    none,
                    libc::MS_BIND,
                    std::ptr::null(),
                ))
            })
        };
    })
    .await
}

#[tokio::test]
async fn out_of_ptys_a_new_session_fails_clearly_and_the_others_are_served() {
    let daemon = daemon_with_few_ptys().await;
    let mut line = daemon.line().await;
    let mut created = Vec::new();
    let refusal = loop {
        assert!(
            created.len() <= PTYS,
            "more sessions than terminals: {created:?}"
        );
        let answer = line
            .call(
                "create_session",
                json!({"type": {"kind": "local", "command": ["/bin/cat"]}}),
            )
            .await;
        match answer.get("error") {
            Some(error) => break error.clone(),
            None => created.push(answer["result"]["session_id"].clone()),
        }
    };
    eprintln!(
        "out of terminals after {} sessions: {refusal}",
        created.len()
    );
    assert_eq!(
        created.len(),
        PTYS,
        "every terminal of the instance is used"
    );
    assert_eq!(refusal["code"], 1005, "{refusal}");
    let message = refusal["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("every pseudo-terminal is in use") && message.contains("kernel.pty.max"),
        "{refusal}"
    );
    // Every session already made still echoes, and the daemon answers.
    for id in &created {
        line.ok(
            "send_input",
            json!({"session_id": id, "data": b64(b"still-here\n")}),
        )
        .await;
        line.read_output_until(id, "still-here").await;
    }
    line.ok("get_status", json!({})).await;
    // Ending one gives its terminal back: the next session gets it.
    line.ok("terminate_session", json!({"session_id": created[0]}))
        .await;
    let socket = daemon.socket.clone();
    eventually("a terminal to be free again", || {
        let socket = socket.clone();
        async move {
            let mut line = LineClient::connect(&socket).await;
            let answer = line
                .call(
                    "create_session",
                    json!({"type": {"kind": "local", "command": ["/bin/cat"]}}),
                )
                .await;
            answer.get("result").map(|_| ())
        }
    })
    .await;
}

/// How many of the daemon's descriptors are terminal masters.
fn pty_masters(daemon: &Daemon) -> usize {
    std::fs::read_dir(format!("/proc/{}/fd", daemon.child.id()))
        .expect("the daemon's descriptors")
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().contains("ptmx"))
        .count()
}

#[tokio::test]
async fn a_stopped_session_holds_no_terminal() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    let before = pty_masters(&daemon);
    let id = line.create_cat().await["session_id"].clone();
    assert!(
        pty_masters(&daemon) > before,
        "a running session holds its terminal"
    );
    line.ok("terminate_session", json!({"session_id": id}))
        .await;
    // Listed as stopped, with its history, but its terminal is closed (it was kept until
    // the retention period passed, a day by default, so stopped sessions used up PTYs).
    eventually("the stopped session's terminal to be closed", || async {
        (pty_masters(&daemon) == before).then_some(())
    })
    .await;
    let info = line.ok("get_session", json!({"session_id": id})).await;
    assert_eq!(info["state"], "stopped", "{info}");
}
