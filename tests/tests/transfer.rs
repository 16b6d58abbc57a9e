//! File transfers over SFTP on an SSH session's own connection, against a real OpenSSH
//! server (`pulsar_e2e::sshd`, whose `Subsystem sftp` is `internal-sftp`): whole files with
//! their modes, no destination replaced unless asked, none left by a cancel, and transfers
//! resumed after a dropped connection and after a daemon restart, checked by SHA-256.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jsonrpsee::core::client::Subscription;
use pulsar_e2e::sshd::{Sshd, TEST_USER};
use pulsar_e2e::*;
use pulsar_protocol::error as code;
use pulsar_protocol::{PulsarApiClient as _, SessionEvent, TransferState};
use serde_json::{Value, json};

/// A session on `sshd` as the test user.
async fn ssh_session(line: &mut LineClient, sshd: &Sshd) -> Value {
    let ty = json!({
        "kind": "ssh",
        "host": "127.0.0.1",
        "port": sshd.port,
        "user": TEST_USER,
        "auth": {"agent": false, "key_files": [sshd.client_key]},
    });
    line.ok("create_session", json!({"type": ty})).await["session_id"].clone()
}

/// A directory both the daemon and the test user (the SFTP server's side) may write.
fn shared_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    dir
}

/// Writes `size` bytes (whole MiB) that are not all alike: a pseudo-random MiB, each copy
/// stamped with its number, so a block copied to the wrong place changes the hash.
fn write_file(path: &Path, size: usize, mode: u32) {
    use std::io::Write as _;
    let mut state = u64::from(std::process::id()) | 1;
    let block: Vec<u8> = (0..MB)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for n in 0..size / MB {
        file.write_all(&(n as u64).to_le_bytes()).unwrap();
        file.write_all(&block[8..]).unwrap();
    }
    file.flush().unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The file's SHA-256, by coreutils' `sha256sum`.
fn sha256(path: &Path) -> String {
    let out = std::process::Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    assert!(out.status.success(), "sha256sum {}", path.display());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// Starts a transfer; returns its info.
async fn start(
    line: &mut LineClient,
    session: &Value,
    direction: &str,
    local: &Path,
    remote: &Path,
    overwrite: bool,
) -> Value {
    line.ok(
        "start_transfer",
        json!({"session_id": session, "direction": direction, "local_path": local,
               "remote_path": remote, "overwrite": overwrite}),
    )
    .await
}

/// Waits for transfer `id` to be over; returns its info.
async fn finished(line: &mut LineClient, id: &Value) -> Value {
    let deadline = Deadline::start();
    loop {
        deadline.check("the transfer to end");
        let info = line.ok("get_transfer", json!({"transfer_id": id})).await;
        if info["state"] != "running" {
            return info;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until transfer `id` has copied more than `bytes` (and is still running).
async fn past(line: &mut LineClient, id: &Value, bytes: u64) -> Value {
    let deadline = Deadline::start();
    loop {
        deadline.check("the transfer to make progress");
        let info = line.ok("get_transfer", json!({"transfer_id": id})).await;
        assert_eq!(info["state"], "running", "{info}");
        if info["bytes"].as_u64().unwrap() > bytes {
            return info;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Entries of `dir` other than `keep`.
fn leftovers(dir: &Path, keep: &[&str]) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| !keep.contains(&name.as_str()))
        .collect()
}

const MB: usize = 1024 * 1024;

#[tokio::test]
#[cfg_attr(no_openssh, ignore = "needs OpenSSH (sshd, ssh-keygen)")]
async fn an_upload_arrives_whole_with_its_mode() {
    let sshd = Sshd::start();
    let daemon = Daemon::start().await;
    sshd.trust(daemon.dir.path());
    let mut line = daemon.line().await;
    let session = ssh_session(&mut line, &sshd).await;
    let (here, there) = (tempfile::tempdir().unwrap(), shared_dir());
    let source = here.path().join("data.bin");
    write_file(&source, 20 * MB, 0o751);
    let destination = there.path().join("data.bin");

    let started = start(&mut line, &session, "upload", &source, &destination, false).await;
    assert_eq!(started["state"], "running", "{started}");
    assert_eq!(started["total"], 20 * MB, "{started}");
    let info = finished(&mut line, &started["id"]).await;
    assert_eq!(info["state"], "done", "{info}");
    assert_eq!(info["bytes"], 20 * MB, "{info}");
    assert_eq!(sha256(&destination), sha256(&source));
    assert_eq!(mode(&destination), 0o751);
    assert!(leftovers(there.path(), &["data.bin"]).is_empty());
}

#[tokio::test]
#[cfg_attr(no_openssh, ignore = "needs OpenSSH (sshd, ssh-keygen)")]
async fn a_download_arrives_whole_with_its_mode() {
    let sshd = Sshd::start();
    let daemon = Daemon::start().await;
    sshd.trust(daemon.dir.path());
    let mut line = daemon.line().await;
    let session = ssh_session(&mut line, &sshd).await;
    let (here, there) = (tempfile::tempdir().unwrap(), shared_dir());
    let source = there.path().join("data.bin");
    // Readable by the test user (the SFTP server's side), unlike the umask's default.
    write_file(&source, 20 * MB, 0o654);
    let destination = here.path().join("copy.bin");

    let started = start(
        &mut line,
        &session,
        "download",
        &destination,
        &source,
        false,
    )
    .await;
    let info = finished(&mut line, &started["id"]).await;
    assert_eq!(info["state"], "done", "{info}");
    assert_eq!(sha256(&destination), sha256(&source));
    assert_eq!(mode(&destination), 0o654);
    assert!(leftovers(here.path(), &["copy.bin"]).is_empty());
}

#[tokio::test]
#[cfg_attr(no_openssh, ignore = "needs OpenSSH (sshd, ssh-keygen)")]
async fn an_existing_destination_is_replaced_only_with_overwrite() {
    let sshd = Sshd::start();
    let daemon = Daemon::start().await;
    sshd.trust(daemon.dir.path());
    let mut line = daemon.line().await;
    let session = ssh_session(&mut line, &sshd).await;
    let (here, there) = (tempfile::tempdir().unwrap(), shared_dir());
    let source = here.path().join("new.txt");
    std::fs::write(&source, "new").unwrap();
    let remote = there.path().join("old.txt");
    std::fs::write(&remote, "old").unwrap();
    std::fs::set_permissions(&remote, std::fs::Permissions::from_mode(0o666)).unwrap();
    let local = here.path().join("kept.txt");
    std::fs::write(&local, "kept").unwrap();

    for (direction, local, remote) in [("upload", &source, &remote), ("download", &local, &remote)]
    {
        let err = line
            .err(
                "start_transfer",
                json!({"session_id": session, "direction": direction,
                       "local_path": local, "remote_path": remote}),
            )
            .await;
        assert_eq!(err["code"], code::TRANSFER_DESTINATION_EXISTS, "{err}");
        assert_eq!(err["data"]["session_id"], session, "{err}");
    }
    assert_eq!(std::fs::read_to_string(&remote).unwrap(), "old");
    assert_eq!(std::fs::read_to_string(&local).unwrap(), "kept");
    assert!(
        line.ok("list_transfers", json!({})).await == json!([]),
        "a refused transfer is not listed"
    );

    let started = start(&mut line, &session, "upload", &source, &remote, true).await;
    assert_eq!(finished(&mut line, &started["id"]).await["state"], "done");
    assert_eq!(std::fs::read_to_string(&remote).unwrap(), "new");
}

#[tokio::test]
#[cfg_attr(no_openssh, ignore = "needs OpenSSH (sshd, ssh-keygen)")]
async fn a_cancelled_transfer_leaves_no_destination() {
    let sshd = Sshd::start();
    let daemon = Daemon::start().await;
    sshd.trust(daemon.dir.path());
    let mut line = daemon.line().await;
    let session = ssh_session(&mut line, &sshd).await;
    let (here, there) = (tempfile::tempdir().unwrap(), shared_dir());
    let source = here.path().join("big.bin");
    write_file(&source, 100 * MB, 0o644);
    let destination = there.path().join("big.bin");

    let started = start(&mut line, &session, "upload", &source, &destination, false).await;
    let info = line
        .ok("cancel_transfer", json!({"transfer_id": started["id"]}))
        .await;
    assert_eq!(info["state"], "cancelled", "{info}");
    assert!(
        leftovers(there.path(), &[]).is_empty(),
        "neither the destination nor its temporary file"
    );
    let listed = line
        .ok("list_transfers", json!({"session_id": session}))
        .await;
    assert_eq!(listed[0]["state"], "cancelled", "{listed}");
}

#[tokio::test]
async fn a_session_that_is_not_ssh_has_no_transfers() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    let session = line.create_cat().await["session_id"].clone();
    let here = tempfile::tempdir().unwrap();
    let err = line
        .err(
            "start_transfer",
            json!({"session_id": session, "direction": "download",
                   "local_path": here.path().join("x"), "remote_path": "x"}),
        )
        .await;
    assert_eq!(err["code"], code::TRANSFER_FAILED, "{err}");
    assert_eq!(err["data"]["kind"], "local", "{err}");
    let message = err["message"].as_str().unwrap();
    assert!(
        message.contains(session.as_str().unwrap()) && message.contains("SSH"),
        "{message}"
    );
}

#[tokio::test]
async fn an_unknown_transfer_is_1036() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    let id = "5f0c4f5e-1f43-4a4e-9d55-0d8e7e5b2c11";
    for method in ["get_transfer", "cancel_transfer"] {
        let err = line.err(method, json!({"transfer_id": id})).await;
        assert_eq!(err["code"], code::TRANSFER_NOT_FOUND, "{method}: {err}");
        assert_eq!(err["data"]["transfer_id"], id, "{err}");
    }
}

#[tokio::test]
#[cfg_attr(no_openssh, ignore = "needs OpenSSH (sshd, ssh-keygen)")]
async fn progress_and_the_end_come_as_events() {
    let sshd = Sshd::start();
    let daemon = Daemon::start().await;
    sshd.trust(daemon.dir.path());
    let mut line = daemon.line().await;
    let client = daemon.client().await;
    let mut events: Subscription<SessionEvent> = client.subscribe_events().await.unwrap();
    let session = ssh_session(&mut line, &sshd).await;
    let (here, there) = (tempfile::tempdir().unwrap(), shared_dir());
    let source = here.path().join("data.bin");
    write_file(&source, 20 * MB, 0o644);
    let started = start(
        &mut line,
        &session,
        "upload",
        &source,
        &there.path().join("data.bin"),
        false,
    )
    .await;
    let id: uuid::Uuid = serde_json::from_value(started["id"].clone()).unwrap();
    let (mut progress, deadline) = (Vec::new(), Deadline::start());
    let end = loop {
        deadline.check("the transfer's events");
        let event = tokio::time::timeout(DEADLINE, events.next())
            .await
            .expect("an event")
            .expect("open")
            .expect("valid");
        match event {
            SessionEvent::TransferProgress {
                transfer_id,
                bytes,
                total,
                ..
            } if transfer_id == id => progress.push((bytes, total)),
            SessionEvent::TransferFinished {
                transfer_id,
                state,
                error,
                ..
            } if transfer_id == id => break (state, error),
            _ => {}
        }
    };
    assert_eq!(end, (TransferState::Done, None));
    assert!(
        progress.windows(2).all(|w| w[0].0 < w[1].0),
        "progress only grows: {progress:?}"
    );
    assert!(progress.iter().all(|&(_, total)| total == 20 * MB as u64));
}

#[tokio::test]
#[cfg_attr(no_openssh, ignore = "needs OpenSSH (sshd, ssh-keygen)")]
async fn a_transfer_cut_by_a_dropped_connection_resumes_and_matches() {
    let mut sshd = Sshd::start();
    let daemon = Daemon::start_with_env(
        &[
            ("SSH_RECONNECT", "true"),
            ("SSH_RECONNECT_MAX_BACKOFF_MS", "100"),
        ],
        &[],
    )
    .await;
    sshd.trust(daemon.dir.path());
    let mut line = daemon.line().await;
    let session = ssh_session(&mut line, &sshd).await;
    let (here, there) = (tempfile::tempdir().unwrap(), shared_dir());
    let source = there.path().join("data.bin");
    write_file(&source, 40 * MB, 0o644);
    let destination = here.path().join("copy.bin");
    let started = start(
        &mut line,
        &session,
        "download",
        &destination,
        &source,
        false,
    )
    .await;
    let cut_at = past(&mut line, &started["id"], MB as u64).await;

    sshd.restart();
    let info = finished(&mut line, &started["id"]).await;
    assert_eq!(info["state"], "done", "{info}");
    assert!(
        cut_at["bytes"].as_u64().unwrap() < 40 * MB as u64,
        "cut mid-way: {cut_at}"
    );
    assert!(daemon.log().contains("resuming once reconnected"));
    assert_eq!(sha256(&destination), sha256(&source));
    assert!(leftovers(here.path(), &["copy.bin"]).is_empty());
}

#[tokio::test]
#[cfg_attr(no_openssh, ignore = "needs OpenSSH (sshd, ssh-keygen)")]
async fn a_transfer_cut_by_a_daemon_restart_resumes_and_matches() {
    let sshd = Sshd::start();
    let daemon = Daemon::start().await;
    sshd.trust(daemon.dir.path());
    let mut line = daemon.line().await;
    let session = ssh_session(&mut line, &sshd).await;
    let (here, there) = (tempfile::tempdir().unwrap(), shared_dir());
    let source = here.path().join("data.bin");
    write_file(&source, 64 * MB, 0o600);
    let destination: PathBuf = there.path().join("data.bin");
    let started = start(&mut line, &session, "upload", &source, &destination, false).await;
    past(&mut line, &started["id"], MB as u64).await;
    drop(line);

    let daemon = daemon.restart(&[]).await;
    let mut line = daemon.line().await;
    let info = finished(&mut line, &started["id"]).await;
    assert_eq!(info["state"], "done", "{info}");
    assert!(
        daemon
            .log()
            .contains("resuming a transfer the last daemon left running"),
        "cut by the restart, not finished before it"
    );
    assert_eq!(sha256(&destination), sha256(&source));
    assert_eq!(mode(&destination), 0o600);
    assert!(leftovers(there.path(), &["data.bin"]).is_empty());
}

/// Runs the `pulsar` command against `daemon`, without a terminal; returns (code, stdout,
/// stderr).
fn pulsar_cli(daemon: &Daemon, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(artifact("pulsar"))
        .arg("--socket")
        .arg(&daemon.socket)
        .args(args)
        .env("HOME", daemon.dir.path())
        .env_remove("PULSAR_SOCKET_PATH")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run pulsar");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
#[cfg_attr(no_openssh, ignore = "needs OpenSSH (sshd, ssh-keygen)")]
async fn pulsar_cp_copies_both_ways_refuses_to_overwrite_and_detaches() {
    let sshd = Sshd::start();
    let daemon = Daemon::start().await;
    sshd.trust(daemon.dir.path());
    let mut line = daemon.line().await;
    let ty = json!({
        "kind": "ssh", "host": "127.0.0.1", "port": sshd.port, "user": TEST_USER,
        "auth": {"agent": false, "key_files": [sshd.client_key]},
    });
    line.ok("create_session", json!({"name": "box", "type": ty}))
        .await;
    let (here, there) = (tempfile::tempdir().unwrap(), shared_dir());
    let source = here.path().join("notes.txt");
    std::fs::write(&source, "hello over sftp\n").unwrap();
    std::fs::set_permissions(&source, std::fs::Permissions::from_mode(0o644)).unwrap();
    let remote_dir = format!("box:{}/", there.path().display());

    let (code, stdout, stderr) =
        pulsar_cli(&daemon, &["cp", source.to_str().unwrap(), &remote_dir]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("bytes copied"), "{stdout}");
    assert!(
        !stderr.contains('\r'),
        "no progress bar without a terminal: {stderr:?}"
    );
    let uploaded = there.path().join("notes.txt");
    assert_eq!(
        std::fs::read_to_string(&uploaded).unwrap(),
        "hello over sftp\n"
    );

    let back = here.path().join("back");
    std::fs::create_dir(&back).unwrap();
    let remote_file = format!("box:{}", uploaded.display());
    let (code, stdout, stderr) = pulsar_cli(&daemon, &["cp", &remote_file, back.to_str().unwrap()]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(
        std::fs::read_to_string(back.join("notes.txt")).unwrap(),
        "hello over sftp\n"
    );

    let (code, _, stderr) = pulsar_cli(&daemon, &["cp", source.to_str().unwrap(), &remote_dir]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("exists"), "{stderr}");
    let (code, _, stderr) = pulsar_cli(&daemon, &["cp", "a", "b"]);
    assert_eq!(code, 2, "{stderr}");

    let detached = format!("box:{}/detached.txt", there.path().display());
    let (code, stdout, stderr) =
        pulsar_cli(&daemon, &["cp", "-d", source.to_str().unwrap(), &detached]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("left to the daemon"), "{stdout}");
    let deadline = Deadline::start();
    while !there.path().join("detached.txt").exists() {
        deadline.check("the detached copy to arrive");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Types `echo NAME-$((N + 1))` into session `id` and waits until the shell's answer
/// (`NAME-N+1`, which the typed line itself does not contain) has come back; returns how long.
async fn echo_time(
    line: &mut LineClient,
    id: &Value,
    name: &str,
    n: u64,
    since: &mut u64,
) -> Duration {
    let begun = std::time::Instant::now();
    line.ok(
        "send_input",
        json!({"session_id": id, "data": b64(format!("echo {name}-$(({n} + 1))\n").as_bytes())}),
    )
    .await;
    let text = format!("{name}-{}", n + 1);
    let text = text.as_str();
    let deadline = Deadline::start();
    let mut seen = Vec::new();
    loop {
        deadline.check(text);
        let out = line
            .ok(
                "receive_output",
                json!({"session_id": id, "since": *since, "timeout_ms": 500}),
            )
            .await;
        let data = unb64(out["data"].as_str().unwrap());
        *since = out["offset"].as_u64().unwrap() + data.len() as u64;
        seen.extend_from_slice(&data);
        if String::from_utf8_lossy(&seen).contains(text) {
            return begun.elapsed();
        }
    }
}

#[tokio::test]
#[cfg_attr(no_openssh, ignore = "needs OpenSSH (sshd, ssh-keygen)")]
async fn keystrokes_echo_promptly_during_a_large_transfer() {
    let sshd = Sshd::start();
    let daemon = Daemon::start().await;
    sshd.trust(daemon.dir.path());
    let mut line = daemon.line().await;
    let session = ssh_session(&mut line, &sshd).await;
    let (here, there) = (tempfile::tempdir().unwrap(), shared_dir());
    let source = here.path().join("data.bin");
    write_file(&source, 100 * MB, 0o644);
    let mut since = 0;
    let idle = echo_time(&mut line, &session, "idle", 1, &mut since).await;

    let started = start(
        &mut line,
        &session,
        "upload",
        &source,
        &there.path().join("data.bin"),
        false,
    )
    .await;
    let mut during = Vec::new();
    for n in 0.. {
        let info = line
            .ok("get_transfer", json!({"transfer_id": started["id"]}))
            .await;
        if info["state"] != "running" {
            assert_eq!(info["state"], "done", "{info}");
            break;
        }
        during.push(echo_time(&mut line, &session, "during", n, &mut since).await);
    }
    during.sort();
    let median = during[during.len() / 2];
    eprintln!(
        "echo idle {idle:?}; during the transfer: {} echoes, median {median:?}, worst {:?}",
        during.len(),
        during.last().unwrap()
    );
    assert!(!during.is_empty(), "measured while the transfer ran");
    let worst = *during.last().unwrap();
    assert!(
        worst < Duration::from_secs(1),
        "an echo took {worst:?} during the transfer (idle: {idle:?})"
    );
}

#[tokio::test]
#[cfg_attr(no_openssh, ignore = "needs OpenSSH (sshd, ssh-keygen)")]
async fn two_transfers_at_once_both_finish_whole_while_keystrokes_echo() {
    let sshd = Sshd::start();
    let daemon = Daemon::start().await;
    sshd.trust(daemon.dir.path());
    let mut line = daemon.line().await;
    let session = ssh_session(&mut line, &sshd).await;
    let (here, there) = (tempfile::tempdir().unwrap(), shared_dir());
    let (up_source, down_source) = (here.path().join("up.bin"), there.path().join("down.bin"));
    write_file(&up_source, 60 * MB, 0o644);
    write_file(&down_source, 60 * MB, 0o604);
    let (up_copy, down_copy) = (there.path().join("up.bin"), here.path().join("down.bin"));
    let mut since = 0;
    echo_time(&mut line, &session, "ready", 0, &mut since).await;

    let up = start(&mut line, &session, "upload", &up_source, &up_copy, false).await;
    let down = start(
        &mut line,
        &session,
        "download",
        &down_copy,
        &down_source,
        false,
    )
    .await;
    let (mut both_running, mut worst) = (0, Duration::ZERO);
    for n in 0.. {
        let mut running = 0;
        for id in [&up["id"], &down["id"]] {
            let info = line.ok("get_transfer", json!({"transfer_id": id})).await;
            match info["state"].as_str() {
                Some("running") => running += 1,
                Some("done") => {}
                _ => panic!("a transfer did not finish: {info}"),
            }
        }
        if running == 0 {
            break;
        }
        let took = echo_time(&mut line, &session, "during", n, &mut since).await;
        if running == 2 {
            both_running += 1;
            worst = worst.max(took);
        }
    }
    eprintln!("{both_running} echoes while both ran, worst {worst:?}");
    assert!(both_running > 0, "an echo measured while both ran");
    assert!(
        worst < Duration::from_secs(1),
        "an echo took {worst:?} while two transfers ran"
    );
    assert_eq!(sha256(&up_copy), sha256(&up_source));
    assert_eq!(sha256(&down_copy), sha256(&down_source));
    assert_eq!(mode(&down_copy), 0o604);
}

#[tokio::test]
#[cfg_attr(no_openssh, ignore = "needs OpenSSH (sshd, ssh-keygen)")]
async fn an_upload_cancelled_while_the_connection_is_down_leaves_no_part_once_it_is_back() {
    let mut sshd = Sshd::start();
    let daemon = Daemon::start_with_env(
        &[
            ("SSH_RECONNECT", "true"),
            ("SSH_RECONNECT_MAX_BACKOFF_MS", "100"),
        ],
        &[],
    )
    .await;
    sshd.trust(daemon.dir.path());
    let mut line = daemon.line().await;
    let session = ssh_session(&mut line, &sshd).await;
    let (here, there) = (tempfile::tempdir().unwrap(), shared_dir());
    let source = here.path().join("data.bin");
    write_file(&source, 60 * MB, 0o644);
    let started = start(
        &mut line,
        &session,
        "upload",
        &source,
        &there.path().join("data.bin"),
        false,
    )
    .await;
    past(&mut line, &started["id"], MB as u64).await;

    sshd.kill();
    let part = leftovers(there.path(), &["data.bin"]);
    assert_eq!(part.len(), 1, "the temporary file: {part:?}");
    assert!(part[0].ends_with(".part"), "{part:?}");
    let info = line
        .ok("cancel_transfer", json!({"transfer_id": started["id"]}))
        .await;
    assert_eq!(info["state"], "cancelled", "{info}");
    assert_eq!(
        leftovers(there.path(), &["data.bin"]),
        part,
        "the server is away"
    );

    sshd.restart();
    eventually("the temporary file removed", || async {
        leftovers(there.path(), &["data.bin"])
            .is_empty()
            .then_some(())
    })
    .await;
    assert!(!there.path().join("data.bin").exists(), "no destination");
}

/// The 200 MB figures of the issue: both ways, equal hashes, and the daemon's memory flat.
/// Run with `--run-ignored all` (about 10 s in a debug build; it prints the rates).
#[tokio::test]
#[ignore = "200 MB each way; run explicitly"]
async fn two_hundred_megabytes_each_way_keep_their_hash_in_bounded_memory() {
    let sshd = Sshd::start();
    let daemon = Daemon::start().await;
    sshd.trust(daemon.dir.path());
    let mut line = daemon.line().await;
    let session = ssh_session(&mut line, &sshd).await;
    let (here, there) = (tempfile::tempdir().unwrap(), shared_dir());
    let source = here.path().join("big.bin");
    write_file(&source, 200 * MB, 0o644);
    let remote = there.path().join("big.bin");
    let back = here.path().join("back.bin");
    let rss_before = daemon.rss_kib();
    let mut rss_max = rss_before;
    for (direction, local, remote) in [("upload", &source, &remote), ("download", &back, &remote)] {
        let begun = std::time::Instant::now();
        let started = start(&mut line, &session, direction, local, remote, false).await;
        loop {
            let info = line
                .ok("get_transfer", json!({"transfer_id": started["id"]}))
                .await;
            rss_max = rss_max.max(daemon.rss_kib());
            if info["state"] != "running" {
                assert_eq!(info["state"], "done", "{info}");
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let secs = begun.elapsed().as_secs_f64();
        eprintln!(
            "{direction}: 200 MB in {secs:.2} s ({:.0} MB/s)",
            200.0 / secs
        );
    }
    assert_eq!(sha256(&remote), sha256(&source));
    assert_eq!(sha256(&back), sha256(&source));
    eprintln!("daemon RSS {rss_before} KiB before, at most {rss_max} KiB during");
    assert!(
        rss_max < rss_before + 64 * 1024,
        "memory grew by {} KiB",
        rss_max - rss_before
    );
}
