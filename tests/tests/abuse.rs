//! The daemon under abuse: killed over and over while it works, its database's disk full or
//! made read-only under it, another user knocking at its doors. Figures in docs/reliability.md.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pulsar_e2e::*;
use serde_json::{Value, json};

/// A program that prints `n<count> <unix ms>` every 20 ms: the count shows lost lines, the
/// time how much output they were.
const COUNTER: &str = "import time\ni = 0\nwhile True:\n    i += 1\n    \
print(f'n{i} {time.time_ns() // 1000000}', flush=True)\n    time.sleep(0.02)\n";

/// A setting from the environment, for the long runs docs/reliability.md describes.
fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64
}

/// The `(count, ms)` of every whole counter line in `text`.
fn counter_lines(text: &str) -> Vec<(u64, u64)> {
    text.split("\r\n")
        .filter_map(|line| {
            let (n, ms) = line.strip_prefix('n')?.split_once(' ')?;
            Some((n.parse().ok()?, ms.parse().ok()?))
        })
        .collect()
}

/// The session rows in the database at `path`, by id, after checking that it passes
/// `PRAGMA integrity_check`. Read-only: the next daemon finds the file as the crash left it.
fn stored_sessions(path: &std::path::Path) -> BTreeMap<String, String> {
    let db =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("the database opens after a kill -9");
    let integrity: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity_check runs");
    assert_eq!(integrity, "ok", "integrity_check after a kill -9");
    let mut rows = db.prepare("SELECT id, name FROM sessions").unwrap();
    rows.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

/// Attaches to and detaches from every session in turn, on fresh connections, until `stop`;
/// a daemon that is gone is simply tried again. Returns how many attaches succeeded.
fn churn_clients(
    socket: std::path::PathBuf,
    ids: Vec<Value>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut attached = 0;
        while !stop.load(Ordering::Relaxed) {
            for id in &ids {
                let client = json!({"session_id": id, "client_id": "churn", "mode": "read_only"});
                if try_call(&socket, "attach_session", client.clone()).is_some() {
                    attached += 1;
                }
                let _ = try_call(&socket, "detach_session", client);
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        attached
    })
}

#[tokio::test]
async fn kill_9_in_a_loop_keeps_the_database_intact_every_session_and_all_but_one_interval_of_output()
 {
    let kills = env_or("PULSAR_CRASH_LOOPS", 20);
    let streams = env_or("PULSAR_CRASH_SESSIONS", 20);
    let interval_ms: u64 = 500;
    let mut daemon = Daemon::start_with(&[
        ("PERSIST_INTERVAL_MS", &interval_ms.to_string()),
        ("LOG_LEVEL", "info"),
    ])
    .await;
    let mut line = daemon.line().await;
    let mut expected = BTreeMap::new();
    let mut counters = Vec::new();
    for i in 0..streams {
        let name = format!("stream-{i}");
        let created = line
            .ok(
                "create_session",
                json!({"name": name, "type": {"kind": "local",
                       "command": ["/usr/bin/env", "python3", "-c", COUNTER]}}),
            )
            .await;
        let id = created["session_id"].as_str().expect("an id").to_owned();
        counters.push((id.clone(), created["pid"].as_u64().expect("a pid")));
        expected.insert(id, name);
    }
    drop(line);
    let stop = Arc::new(AtomicBool::new(false));
    let churn = churn_clients(
        daemon.socket.clone(),
        counters.iter().map(|(id, _)| json!(id)).collect(),
        Arc::clone(&stop),
    );

    let worst_ms = AtomicU64::new(0);
    let mut losses = Vec::new();
    let mut per_session = Vec::new();
    let mut prev_kill_ms = 0;
    for kill in 0..kills {
        // Every daemon has saved each session at least once; the extra spreads the kills
        // over the phases of the save interval.
        let phase = (kill as u64 * 7 % 10) * interval_ms / 10;
        tokio::time::sleep(Duration::from_millis(interval_ms + 200 + phase)).await;
        // Answered, so durable: it must survive the kill that follows at once.
        let mut line = daemon.line().await;
        let name = format!("created-before-kill-{kill}");
        let created = line
            .ok(
                "create_session",
                json!({"name": name, "type": {"kind": "local", "command": ["/bin/cat"]}}),
            )
            .await;
        expected.insert(created["session_id"].as_str().unwrap().to_owned(), name);
        drop(line);

        let kill_ms = now_ms();
        daemon.crash();
        let stored = stored_sessions(&daemon.database());
        assert_eq!(stored, expected, "session rows after kill {kill}");
        daemon = daemon.start_again(&[]).await;

        let mut line = daemon.line().await;
        let listed = line.ok("list_sessions", json!({})).await;
        let listed = listed["sessions"].as_array().expect("sessions").len();
        assert_eq!(listed, expected.len(), "sessions served after kill {kill}");
        let mut loss_ms = 0;
        for (id, pid) in &counters {
            let info = line.ok("get_session", json!({"session_id": id})).await;
            assert_eq!(info["pid"].as_u64(), Some(*pid), "{id} taken over: {info}");
            assert_ne!(info["state"], "stopped", "{id} after kill {kill}: {info}");
            // Read until the new daemon has read output printed after the kill.
            let deadline = Deadline::start();
            let lines = loop {
                deadline.check("output printed after the kill");
                let head = line.ok("get_session", json!({"session_id": id})).await;
                let since = head["output_offset"]
                    .as_u64()
                    .unwrap()
                    .saturating_sub(128 * 1024);
                let out = line
                    .ok(
                        "receive_output",
                        json!({"session_id": id, "since": since, "max_bytes": 1024 * 1024}),
                    )
                    .await;
                let lines = counter_lines(&String::from_utf8_lossy(&unb64(
                    out["data"].as_str().expect("data"),
                )));
                if lines.last().is_some_and(|(_, ms)| *ms > kill_ms) {
                    break lines;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            for pair in lines.windows(2) {
                assert!(
                    pair[1].0 > pair[0].0,
                    "{id}: output repeated or reordered after kill {kill}: {pair:?}"
                );
            }
            // This kill's loss is the one jump in the count since the previous kill.
            let jumps: Vec<_> = lines
                .windows(2)
                .filter(|p| p[1].0 != p[0].0 + 1 && p[0].1 >= prev_kill_ms)
                .collect();
            assert!(jumps.len() <= 1, "{id}: more than one gap: {jumps:?}");
            let gap = jumps.first().map_or(0, |pair| pair[1].1 - pair[0].1);
            per_session.push(gap);
            loss_ms = loss_ms.max(gap);
        }
        worst_ms.fetch_max(loss_ms, Ordering::Relaxed);
        losses.push(loss_ms);
        prev_kill_ms = kill_ms;
    }
    stop.store(true, Ordering::Relaxed);
    let attached = churn.join().expect("the churn thread");
    assert!(attached > 0, "clients attached during the loop");
    losses.sort();
    per_session.sort();
    let worst = worst_ms.load(Ordering::Relaxed);
    eprintln!(
        "crash loop: {kills} kills, {streams} streaming sessions, {attached} attaches; output \
         lost per kill (persist_interval_ms {interval_ms}), the worst session's: median {} ms, \
         worst {worst} ms; any one session's: median {} ms",
        losses[losses.len() / 2],
        per_session[per_session.len() / 2]
    );
    // The bound is one save interval; the rest is the pump's and the writer's latency on a
    // busy machine (a gap is measured between the printed times of the lines around it).
    assert!(
        worst <= 2 * interval_ms,
        "lost {worst} ms of output in a kill, with persist_interval_ms {interval_ms}: {losses:?}"
    );
}

/// A program that floods its terminal (about 200 KB/s), to make the database grow.
const FLOOD: &str =
    "import time\nwhile True:\n    print('x' * 1000, flush=True)\n    time.sleep(0.005)\n";

/// Panics, visibly, unless the test runs as root (as CI does).
fn require_root(why: &str) {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test must run as root: {why}"
    );
}

/// A size-limited tmpfs mounted at `dir` for the test's life, unmounted on drop.
struct SmallFilesystem {
    dir: std::path::PathBuf,
}

impl SmallFilesystem {
    fn mount(dir: &std::path::Path, size: &str) -> Self {
        std::fs::create_dir_all(dir).expect("the mount point");
        let status = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .status()
            .expect("run mount");
        assert!(status.success(), "mount a tmpfs at {}", dir.display());
        Self {
            dir: dir.to_owned(),
        }
    }

    /// Fills what space is left with a file of its own; returns the file.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write as _;
        let path = self.dir.join("filler");
        let mut file = std::fs::File::create(&path).expect("the filler");
        let chunk = vec![0u8; 4096];
        loop {
            if let Err(err) = file.write_all(&chunk) {
                assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "filling up: {err}");
                return path;
            }
        }
    }
}

impl Drop for SmallFilesystem {
    fn drop(&mut self) {
        let unmounted = std::process::Command::new("umount")
            .arg(&self.dir)
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            // Something still holds a file there: detach it now, freed when released.
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.dir)
                .status();
        }
    }
}

/// Files marked immutable (`chattr +i`) for the guard's life: on ext4 even a descriptor
/// already open for writing is refused, so the daemon's database is read-only under it.
struct Immutable {
    files: Vec<std::path::PathBuf>,
}

impl Immutable {
    fn set(files: &[std::path::PathBuf]) -> Self {
        for file in files {
            let status = std::process::Command::new("chattr")
                .arg("+i")
                .arg(file)
                .status()
                .expect("run chattr");
            assert!(status.success(), "chattr +i {}", file.display());
        }
        Self {
            files: files.to_vec(),
        }
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        for file in &self.files {
            let _ = std::process::Command::new("chattr")
                .arg("-i")
                .arg(file)
                .status();
        }
    }
}

/// `get_status`'s `database`, on a fresh connection.
fn database_status(socket: &std::path::Path) -> Option<Value> {
    try_call(socket, "get_status", json!({})).map(|status| status["database"].clone())
}

/// Creates a session named `name` running `python3 -c program`; returns its id.
async fn python(line: &mut LineClient, name: &str, program: &str) -> Value {
    line.ok(
        "create_session",
        json!({"name": name, "type": {"kind": "local",
               "command": ["/usr/bin/env", "python3", "-c", program]}}),
    )
    .await["session_id"]
        .clone()
}

/// Waits until the store says it is failing; returns its reason.
async fn store_failing(daemon: &Daemon) -> String {
    eventually("get_status to report the store failing", || async {
        database_status(&daemon.socket)?["last_error"]
            .as_str()
            .map(str::to_owned)
    })
    .await
}

/// Waits until the store has committed everything and fails no more; returns its status.
async fn store_caught_up(daemon: &Daemon) -> Value {
    eventually("the store to catch up", || async {
        let status = database_status(&daemon.socket)?;
        (status.get("last_error").is_none() && status["queued"] == 0).then_some(status)
    })
    .await
}

/// Shows the daemon serving while its store fails: a new session answers, is attached and
/// echoes what is typed. Returns its id.
async fn serves_while_failing(line: &mut LineClient, name: &str) -> Value {
    let id = line
        .ok(
            "create_session",
            json!({"name": name, "type": {"kind": "local", "command": ["/bin/cat"]}}),
        )
        .await["session_id"]
        .clone();
    line.ok("attach_session", json!({"session_id": id})).await;
    line.ok(
        "send_input",
        json!({"session_id": id, "data": b64(b"typed-while-failing\n")}),
    )
    .await;
    line.read_output_until(&id, "typed-while-failing").await;
    id
}

/// After a graceful restart (everything the daemon read is saved), checks that `names` are
/// all stored and served, and that the counter session's history has no gap at all.
async fn nothing_lost(daemon: &Daemon, names: &[&str], counter: &Value) {
    let mut line = daemon.line().await;
    let listed = line.ok("list_sessions", json!({})).await;
    let listed: Vec<&str> = listed["sessions"]
        .as_array()
        .expect("sessions")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    for name in names {
        assert!(listed.contains(name), "{name} lost: {listed:?}");
    }
    let out = line
        .ok(
            "receive_output",
            json!({"session_id": counter, "since": 0, "max_bytes": 1024 * 1024}),
        )
        .await;
    let lines = counter_lines(&String::from_utf8_lossy(&unb64(
        out["data"].as_str().expect("data"),
    )));
    assert_eq!(
        lines.first().map(|l| l.0),
        Some(1),
        "the history starts at n1"
    );
    for pair in lines.windows(2) {
        assert_eq!(
            pair[1].0,
            pair[0].0 + 1,
            "a gap in the saved output: {pair:?}"
        );
    }
}

#[tokio::test]
async fn a_full_disk_under_the_database_loses_nothing_and_the_store_catches_up_when_space_returns()
{
    require_root("it mounts a size-limited tmpfs for the database");
    let place = tempfile::tempdir().expect("temp dir");
    let small = SmallFilesystem::mount(&place.path().join("db"), "2m");
    let database = small.dir.join("pulsar.db");
    let daemon = Daemon::start_with(&[
        ("DATABASE_PATH", database.to_str().expect("a UTF-8 path")),
        ("PERSIST_INTERVAL_MS", "200"),
        ("PERSIST_SCROLLBACK_BYTES", "65536"),
    ])
    .await;
    let mut line = daemon.line().await;
    let counter = python(&mut line, "steady", COUNTER).await;
    line.read_output_until(&counter, "n3 ").await;

    let filler = small.fill();
    // Sessions that need room the disk no longer has: each answers all the same.
    let mut floods = Vec::new();
    for i in 0..3 {
        floods.push(python(&mut line, &format!("flood-{i}"), FLOOD).await);
    }
    let reason = store_failing(&daemon).await;
    assert!(reason.contains("full"), "{reason}");
    serves_while_failing(&mut line, "created-while-full").await;
    for flood in &floods {
        line.ok("terminate_session", json!({"session_id": flood}))
            .await;
    }
    assert!(
        daemon.log().contains("database write failed"),
        "{}",
        daemon.log()
    );

    std::fs::remove_file(filler).expect("free the space");
    let status = store_caught_up(&daemon).await;
    assert!(status["failed_commits"].as_u64() > Some(0), "{status}");
    eprintln!("disk full: {reason:?}; caught up after {status}");
    assert!(
        daemon.log().contains("the store has caught up"),
        "{}",
        daemon.log()
    );

    let daemon = daemon.restart(&[]).await;
    nothing_lost(
        &daemon,
        &[
            "steady",
            "flood-0",
            "flood-1",
            "flood-2",
            "created-while-full",
        ],
        &counter,
    )
    .await;
    drop(daemon);
    drop(small);
}

#[tokio::test]
async fn a_database_made_read_only_under_the_daemon_loses_nothing_once_writable_again() {
    require_root("it marks the database immutable with chattr");
    let daemon = Daemon::start_with(&[("PERSIST_INTERVAL_MS", "200")]).await;
    let mut line = daemon.line().await;
    let counter = python(&mut line, "steady", COUNTER).await;
    line.read_output_until(&counter, "n3 ").await;

    let database = daemon.database();
    let wal = database.with_file_name("pulsar.db-wal");
    let read_only = Immutable::set(&[database, wal]);
    serves_while_failing(&mut line, "created-while-read-only").await;
    let reason = store_failing(&daemon).await;
    assert!(!reason.is_empty());
    assert!(
        daemon.log().contains("database write failed"),
        "{}",
        daemon.log()
    );

    drop(read_only);
    let status = store_caught_up(&daemon).await;
    eprintln!("read-only: {reason:?}; caught up after {status}");
    let daemon = daemon.restart(&[]).await;
    nothing_lost(&daemon, &["steady", "created-while-read-only"], &counter).await;
}

/// The uid and gid of `pulsar-other`, a throwaway system user, created if absent.
fn other_user() -> (u32, u32) {
    const NAME: &str = "pulsar-other";
    let lookup = || nix::unistd::User::from_name(NAME).ok().flatten();
    if lookup().is_none() {
        // Another test may be creating it at the same moment: only the lookup decides.
        let _ = std::process::Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                NAME,
            ])
            .stderr(std::process::Stdio::null())
            .status();
    }
    let user = lookup().expect("useradd created pulsar-other");
    assert_ne!(user.uid.as_raw(), 0);
    (user.uid.as_raw(), user.gid.as_raw())
}

/// What another user's attempt came to.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// Connected, sent a request, and the other end closed without a byte.
    ClosedWithoutReply,
    /// Connected and got an answer.
    Replied,
    /// Could not connect at all.
    CouldNotConnect,
    /// Opened the file for reading.
    Opened,
    /// Could not open it.
    OpenRefused,
}

/// What another user tries.
enum Attempt<'a> {
    /// Connect to a Unix socket of `kind` (`SOCK_STREAM`, `SOCK_SEQPACKET`) and send `request`.
    Connect {
        socket: &'a std::path::Path,
        kind: libc::c_int,
        request: &'a [u8],
    },
    /// Open a file for reading.
    Read(&'a std::path::Path),
}

/// Forks a child that becomes `uid`/`gid` (no supplementary groups) and makes `attempt`.
/// Everything the child needs is prepared before the fork; it then makes only raw syscalls.
fn as_user((uid, gid): (u32, u32), attempt: Attempt<'_>) -> Outcome {
    use std::os::unix::ffi::OsStrExt;
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let (kind, request, file) = match &attempt {
        Attempt::Connect {
            socket,
            kind,
            request,
        } => {
            let path = socket.as_os_str().as_bytes();
            assert!(path.len() < addr.sun_path.len());
            for (dst, src) in addr.sun_path.iter_mut().zip(path) {
                *dst = *src as libc::c_char;
            }
            (*kind, *request, None)
        }
        Attempt::Read(path) => (
            0,
            &[][..],
            Some(std::ffi::CString::new(path.as_os_str().as_bytes()).expect("no NUL")),
        ),
    };
    // SAFETY: the child only makes raw syscalls on memory prepared before the fork, then
    // _exits; the parent waits for it.
    unsafe {
        let pid = libc::fork();
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(gid) != 0
                || libc::setuid(uid) != 0
            {
                libc::_exit(10);
            }
            if let Some(file) = &file {
                let fd = libc::open(file.as_ptr(), libc::O_RDONLY);
                libc::_exit(if fd >= 0 { 3 } else { 4 });
            }
            let fd = libc::socket(libc::AF_UNIX, kind, 0);
            let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
            if libc::connect(fd, (&addr as *const libc::sockaddr_un).cast(), len) != 0 {
                libc::_exit(2);
            }
            libc::write(fd, request.as_ptr().cast(), request.len());
            let mut poll = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            libc::poll(&mut poll, 1, 10_000);
            let mut byte = [0u8; 4096];
            let n = libc::read(fd, byte.as_mut_ptr().cast(), byte.len());
            libc::_exit(if n > 0 { 1 } else { 0 });
        }
        let mut status = 0;
        libc::waitpid(pid, &mut status, 0);
        match libc::WEXITSTATUS(status) {
            0 => Outcome::ClosedWithoutReply,
            1 => Outcome::Replied,
            2 => Outcome::CouldNotConnect,
            3 => Outcome::Opened,
            4 => Outcome::OpenRefused,
            code => panic!("the child failed to become uid {uid} (exit {code})"),
        }
    }
}

/// Opens the daemon's directories (not its files) to everyone, so that only the check under
/// test stands in another user's way.
fn open_directories(daemon: &Daemon) {
    use std::os::unix::fs::PermissionsExt as _;
    for dir in [
        daemon.dir.path(),
        daemon.socket.parent().expect("a run dir"),
    ] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

/// `Hello` as the keeper's wire carries it.
fn keeper_hello() -> Vec<u8> {
    let mut hello = serde_json::to_value(pulsar_keeper::wire::Request::Hello).unwrap();
    hello["v"] = json!(pulsar_keeper::wire::VERSION);
    serde_json::to_vec(&hello).unwrap()
}

#[tokio::test]
async fn a_second_user_is_refused_on_the_daemon_socket_even_when_it_is_open_to_all() {
    require_root("it connects as another user");
    use std::os::unix::fs::PermissionsExt as _;
    let other = other_user();
    let daemon = Daemon::start().await;
    open_directories(&daemon);
    std::fs::set_permissions(&daemon.socket, std::fs::Permissions::from_mode(0o777)).unwrap();
    let request = b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"list_sessions\"}\n";
    let attempt = || Attempt::Connect {
        socket: &daemon.socket,
        kind: libc::SOCK_STREAM,
        request,
    };
    assert_eq!(as_user(other, attempt()), Outcome::ClosedWithoutReply);
    assert_eq!(
        as_user((0, 0), attempt()),
        Outcome::Replied,
        "the owner is served"
    );
    let log = eventually("the refusal in the log", || {
        let log = daemon.log();
        async move {
            log.contains("refused a connection from another user")
                .then_some(log)
        }
    })
    .await;
    assert!(log.contains(&format!("uid={}", other.0)), "{log}");
}

#[tokio::test]
async fn a_second_user_is_refused_on_the_keeper_socket_even_when_it_is_open_to_all() {
    require_root("it connects as another user");
    use std::os::unix::fs::PermissionsExt as _;
    let other = other_user();
    let daemon = Daemon::start().await;
    // A session, so that the keeper runs.
    daemon.line().await.create_cat().await;
    let keeper = daemon.keeper_socket();
    open_directories(&daemon);
    std::fs::set_permissions(&keeper, std::fs::Permissions::from_mode(0o777)).unwrap();
    let hello = keeper_hello();
    let attempt = || Attempt::Connect {
        socket: &keeper,
        kind: libc::SOCK_SEQPACKET,
        request: &hello,
    };
    assert_eq!(as_user(other, attempt()), Outcome::ClosedWithoutReply);
    assert_eq!(
        as_user((0, 0), attempt()),
        Outcome::Replied,
        "the owner is served"
    );
    let log_path = keeper.with_file_name("pulsar-keeper.log");
    let log = eventually("the refusal in the keeper's log", || {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        async move { log.contains("refused a connection").then_some(log) }
    })
    .await;
    assert!(log.contains(&format!("uid {}", other.0)), "{log}");
}

#[tokio::test]
async fn files_the_daemon_creates_are_unreadable_by_a_second_user() {
    require_root("it reads as another user");
    use std::os::unix::fs::PermissionsExt as _;
    let other = other_user();
    let daemon = Daemon::start().await;
    daemon.line().await.create_cat().await;
    let database = daemon.database();
    let run = daemon.socket.parent().expect("a run dir").to_owned();
    let files = [
        database.clone(),
        database.with_file_name("pulsar.db-wal"),
        database.with_file_name("pulsar.db-shm"),
        run.join("pulsar-keeper.log"),
        daemon.socket.clone(),
        daemon.keeper_socket(),
    ];
    for file in &files {
        let mode = std::fs::metadata(file)
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()))
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{} is {:o}", file.display(), mode & 0o777);
    }
    let dir_mode = std::fs::metadata(&run).unwrap().permissions().mode() & 0o777;
    assert_eq!(dir_mode, 0o700, "{}", run.display());
    // With the directories opened, the files' own modes still keep the other user out.
    open_directories(&daemon);
    for file in files.iter().take(4) {
        assert_eq!(
            as_user(other, Attempt::Read(file)),
            Outcome::OpenRefused,
            "{} readable by another user",
            file.display()
        );
    }
}

/// Most descriptors the daemon (and so its keeper and programs) may hold in the test below.
const FEW_DESCRIPTORS: u64 = 48;

/// A daemon (and so its keeper and programs) limited to [`FEW_DESCRIPTORS`].
async fn daemon_with_few_descriptors() -> Daemon {
    use std::os::unix::process::CommandExt as _;
    Daemon::start_configured(&[], |command| {
        // SAFETY: only setrlimit between fork and exec, which is async-signal-safe.
        unsafe {
            command.pre_exec(|| {
                let limit = libc::rlimit {
                    rlim_cur: FEW_DESCRIPTORS,
                    rlim_max: FEW_DESCRIPTORS,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            })
        };
    })
    .await
}

#[tokio::test]
async fn out_of_descriptors_a_new_session_fails_clearly_and_the_others_are_served() {
    let daemon = daemon_with_few_descriptors().await;
    let mut line = daemon.line().await;
    let mut created = Vec::new();
    let refusal = loop {
        assert!(created.len() < FEW_DESCRIPTORS as usize, "never ran out");
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
        "out of descriptors after {} sessions: {refusal}",
        created.len()
    );
    assert!(!created.is_empty());
    assert_eq!(refusal["code"], 1005, "{refusal}");
    assert!(
        refusal["message"]
            .as_str()
            .is_some_and(|m| m.contains("open-files limit")),
        "{refusal}"
    );
    // The program the keeper started for the refused session does not linger there.
    let keeper = pulsar_keeper::client::Client::connect(&daemon.keeper_socket()).unwrap();
    eventually("the keeper to let the refused session go", || async {
        let held = keeper.list().expect("the keeper's list");
        (held.len() == created.len()).then_some(())
    })
    .await;
    // Every session already made still echoes.
    for id in &created {
        line.ok(
            "send_input",
            json!({"session_id": id, "data": b64(b"still-here\n")}),
        )
        .await;
        line.read_output_until(id, "still-here").await;
    }
    line.ok("get_status", json!({})).await;
}

#[tokio::test]
async fn at_max_sessions_a_new_session_is_refused_and_the_others_are_served() {
    let daemon = Daemon::start_with(&[("MAX_SESSIONS", "2")]).await;
    let mut line = daemon.line().await;
    let first = line.create_cat().await["session_id"].clone();
    let second = line.create_cat().await["session_id"].clone();
    let refusal = line
        .err(
            "create_session",
            json!({"type": {"kind": "local", "command": ["/bin/cat"]}}),
        )
        .await;
    assert_eq!(refusal["code"], 1004, "{refusal}");
    assert_eq!(refusal["data"], json!({"limit": "max_sessions", "max": 2}));
    for id in [&first, &second] {
        line.ok(
            "send_input",
            json!({"session_id": id, "data": b64(b"still-here\n")}),
        )
        .await;
        line.read_output_until(id, "still-here").await;
    }
    // A session ended makes room again.
    line.ok("terminate_session", json!({"session_id": first}))
        .await;
    eventually("room for a new session", || {
        let socket = daemon.socket.clone();
        async move {
            try_call(
                &socket,
                "create_session",
                json!({"type": {"kind": "local", "command": ["/bin/cat"]}}),
            )
        }
    })
    .await;
}

/// One `get_status` on `stream`, answered within 2 s.
fn answered(stream: &std::os::unix::net::UnixStream) -> bool {
    use std::io::{BufRead as _, Write as _};
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"get_status\"}\n";
    let mut writer = stream;
    if writer.write_all(request).is_err() {
        return false;
    }
    let mut answer = String::new();
    std::io::BufReader::new(stream)
        .read_line(&mut answer)
        .is_ok_and(|n| n > 0)
}

#[tokio::test]
async fn out_of_descriptors_new_connections_wait_and_are_served_once_others_close() {
    let daemon = daemon_with_few_descriptors().await;
    let mut open = Vec::new();
    let socket = daemon.socket.clone();
    let held = tokio::task::spawn_blocking(move || {
        loop {
            assert!(open.len() < 2 * FEW_DESCRIPTORS as usize, "never ran out");
            let stream = std::os::unix::net::UnixStream::connect(&socket).expect("connect");
            if !answered(&stream) {
                return open;
            }
            open.push(stream);
        }
    })
    .await
    .expect("the connecting thread");
    eprintln!("out of descriptors after {} connections", held.len());
    assert!(
        daemon.log().contains("accept failed"),
        "the log says why: {}",
        daemon.log()
    );
    drop(held);
    // The accept loop backs off and goes on: the queued connection and new ones are served.
    let socket = daemon.socket.clone();
    eventually("a connection served again", || {
        let socket = socket.clone();
        async move { try_call(&socket, "get_status", json!({})) }
    })
    .await;
}
