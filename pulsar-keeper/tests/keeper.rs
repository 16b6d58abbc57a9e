//! The keeper end to end: the real binary on a real socket, real programs in real PTYs.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use pulsar_keeper::client::Client;
use pulsar_keeper::wire::{Exit, Reply, Request, SpawnRequest};

const DEADLINE: Duration = Duration::from_secs(20);

/// A keeper in a temp dir, killed (with everything it holds) when dropped.
struct Keeper {
    child: Child,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Keeper {
    fn start() -> Self {
        Self::start_with(Command::new(env!("CARGO_BIN_EXE_pulsar-keeper")))
    }

    /// Started by `command` (the keeper's binary, set up by the caller).
    fn start_with(mut command: Command) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("keeper.sock");
        let child = command.arg("--socket").arg(&socket).spawn().unwrap();
        let keeper = Self {
            child,
            socket,
            _dir: dir,
        };
        poll("the keeper to listen", || {
            Client::connect(&keeper.socket).ok()
        });
        keeper
    }

    fn client(&self) -> Client {
        Client::connect(&self.socket).unwrap()
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        if let Ok(client) = Client::connect(&self.socket) {
            let _ = client.call(&Request::TerminateAll, &[]);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn poll<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A spawn of `command` (the login shell if `None`) as session `id`, in `/`, 80×24, with
/// `env` added.
fn spawn_request(id: &str, command: Option<&[&str]>, env: &[(&str, &str)]) -> Request {
    Request::Spawn(SpawnRequest {
        id: id.to_owned(),
        meta: format!("meta of {id}"),
        command: command.map(|argv| argv.iter().map(|s| (*s).to_owned()).collect()),
        cwd: PathBuf::from("/"),
        env: env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        cols: 80,
        rows: 24,
        limits: None,
    })
}

fn spawn(client: &Client, id: &str, argv: &[&str]) -> (u32, OwnedFd) {
    let request = spawn_request(id, Some(argv), &[("PULSAR_TEST", "1")]);
    let (reply, mut fds) = client.call(&request, &[]).unwrap();
    let Reply::Spawned { pid, .. } = reply else {
        panic!("{reply:?}")
    };
    (pid, fds.pop().expect("the master"))
}

/// Reads the master until EIO (the program and its terminal are gone) or `needle` appears.
fn read_until(master: &OwnedFd, needle: &str) -> String {
    let mut seen = Vec::new();
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains(needle) {
        assert!(
            start.elapsed() < DEADLINE,
            "no {needle:?} in {:?}",
            String::from_utf8_lossy(&seen)
        );
        let mut fds = [nix::poll::PollFd::new(
            std::os::fd::AsFd::as_fd(master),
            nix::poll::PollFlags::POLLIN,
        )];
        nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(100u16)).unwrap();
        match nix::unistd::read(master.as_raw_fd(), &mut buf) {
            Ok(0) | Err(nix::errno::Errno::EIO) => break,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
            Err(nix::errno::Errno::EAGAIN) => {}
            Err(err) => panic!("read: {err}"),
        }
    }
    String::from_utf8_lossy(&seen).into_owned()
}

fn status(client: &Client, id: &str) -> Option<Exit> {
    match client
        .call(&Request::Status { id: id.into() }, &[])
        .unwrap()
        .0
    {
        Reply::Status { exit } => exit,
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_spawned_program_runs_in_a_pty_whose_master_the_daemon_gets() {
    let keeper = Keeper::start();
    let client = keeper.client();
    let (_, master) = spawn(
        &client,
        "a",
        &["sh", "-c", "tty; echo $PULSAR_TEST; read x; echo got $x"],
    );
    let out = read_until(&master, "1\r\n");
    assert!(out.contains("/dev/pts/"), "{out}");
    nix::unistd::write(&master, b"hello\n").unwrap();
    assert!(read_until(&master, "got hello").contains("got hello"));
}

#[test]
fn the_exit_code_is_kept_until_asked() {
    let keeper = Keeper::start();
    let client = keeper.client();
    let (_, master) = spawn(&client, "a", &["sh", "-c", "exit 42"]);
    drop(master);
    let exit = poll("the exit", || status(&client, "a"));
    assert_eq!(
        exit,
        Exit {
            code: Some(42),
            signal: None
        }
    );
}

#[test]
fn programs_that_exit_together_are_all_reaped_without_being_asked() {
    let keeper = Keeper::start();
    let client = keeper.client();
    // More exits at once than one wait of the keeper's loop takes in.
    let pids: Vec<u32> = (0..100)
        .map(|i| spawn(&client, &format!("s{i}"), &["sh", "-c", "exit 7"]).0)
        .collect();
    // Reaped by the keeper on its own (no status asked): no zombie is left.
    let zombie = |pid: &u32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            stat.rsplit_once(") ")
                .is_some_and(|(_, r)| r.starts_with('Z'))
        })
    };
    poll("every program to be reaped", || {
        (!pids.iter().any(zombie)).then_some(())
    });
    for i in 0..100 {
        assert_eq!(
            status(&client, &format!("s{i}")),
            Some(Exit {
                code: Some(7),
                signal: None
            }),
            "session s{i}"
        );
    }
}

#[test]
fn a_death_by_signal_is_reported_as_the_signal() {
    let keeper = Keeper::start();
    let client = keeper.client();
    let (pid, _master) = spawn(&client, "a", &["sleep", "100"]);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::SIGTERM,
    )
    .unwrap();
    let exit = poll("the exit", || status(&client, "a"));
    assert_eq!(
        exit,
        Exit {
            code: None,
            signal: Some(libc::SIGTERM)
        }
    );
}

#[test]
fn a_new_connection_lists_every_session_with_its_descriptor_and_meta() {
    let keeper = Keeper::start();
    let first = keeper.client();
    let (pid, _m) = spawn(&first, "x", &["sh", "-c", "read line; echo echo:$line"]);
    drop(first);
    // As a daemon that crashed and came back: a new connection, the same program.
    let listed = keeper.client().list().unwrap();
    assert_eq!(listed.len(), 1);
    let (held, master) = &listed[0];
    assert_eq!(
        (held.id.as_str(), held.meta.as_str(), held.pid),
        ("x", "meta of x", Some(pid))
    );
    nix::unistd::write(master, b"again\n").unwrap();
    assert!(read_until(master, "echo:again").contains("echo:again"));
}

#[test]
fn hundreds_of_sessions_are_listed_in_pages() {
    let keeper = Keeper::start();
    let client = keeper.client();
    for i in 0..450 {
        let (reply, _) = client
            .call(
                &Request::Hold {
                    id: format!("s{i}"),
                    meta: String::new(),
                },
                &[std::io::stdin().as_raw_fd()],
            )
            .unwrap();
        assert_eq!(reply, Reply::Done);
    }
    assert_eq!(client.list().unwrap().len(), 450);
}

#[test]
fn programs_inherit_no_other_sessions_descriptors() {
    let keeper = Keeper::start();
    let client = keeper.client();
    let (_, _first) = spawn(&client, "first", &["sleep", "100"]);
    // `ls` lists its own descriptors: 0, 1, 2 and the directory it reads, nothing else.
    let (_, second) = spawn(
        &client,
        "second",
        &["sh", "-c", "ls /proc/self/fd | tr '\\n' ' '; echo END"],
    );
    let out = read_until(&second, "END");
    let fds: Vec<&str> = out
        .split_whitespace()
        .filter(|w| w.parse::<u32>().is_ok())
        .collect();
    assert!(fds.len() <= 4, "inherited descriptors: {out:?}");
}

#[test]
fn a_descriptor_the_keeper_inherited_without_close_on_exec_does_not_reach_programs() {
    use std::os::unix::process::CommandExt;
    let mut command = Command::new(env!("CARGO_BIN_EXE_pulsar-keeper"));
    // SAFETY: dup2 is async-signal-safe; fd 2 is open in the child.
    unsafe {
        command.pre_exec(|| {
            if libc::dup2(2, 77) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let keeper = Keeper::start_with(command);
    let client = keeper.client();
    let (_, master) = spawn(
        &client,
        "a",
        &["sh", "-c", "ls /proc/self/fd | tr '\\n' ' '; echo END"],
    );
    let out = read_until(&master, "END");
    assert!(
        !out.split_whitespace().any(|w| w == "77"),
        "the program holds the keeper's fd 77: {out:?}"
    );
}

#[test]
fn the_keeper_runs_at_its_hard_open_files_limit() {
    use std::os::unix::process::CommandExt;
    let mut command = Command::new(env!("CARGO_BIN_EXE_pulsar-keeper"));
    // SAFETY: getrlimit/setrlimit are async-signal-safe and touch a local struct only.
    unsafe {
        command.pre_exec(|| {
            let mut limit = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            limit.rlim_cur = 1000.min(limit.rlim_max);
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let keeper = Keeper::start_with(command);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", keeper.child.id())).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fields[3], fields[4], "soft and hard: {line}");
}

fn spawn_error(client: &Client, argv: &[&str], env: &[(&str, &str)]) -> String {
    match client.call(&spawn_request("refused", Some(argv), env), &[]) {
        Err(err) => err.to_string(),
        Ok((reply, _)) => panic!("spawned: {reply:?}"),
    }
}

#[test]
fn a_program_not_in_path_is_refused_naming_the_path() {
    let keeper = Keeper::start();
    let message = spawn_error(
        &keeper.client(),
        &["no-such-program-here"],
        &[("PATH", "/nowhere:/bin")],
    );
    assert_eq!(
        message, "no-such-program-here is not in PATH (/nowhere:/bin)",
        "{message}"
    );
}

#[test]
fn a_file_that_is_not_executable_is_refused_as_such() {
    let keeper = Keeper::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("script");
    std::fs::write(&file, "echo hi\n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let path = file.to_str().unwrap();
    let message = spawn_error(&keeper.client(), &[path], &[]);
    assert_eq!(message, format!("{path} is not executable"));
}

#[test]
fn a_directory_is_refused_as_such() {
    let keeper = Keeper::start();
    let message = spawn_error(&keeper.client(), &["/tmp"], &[]);
    assert_eq!(message, "/tmp is a directory");
}

#[test]
fn without_a_command_the_login_shell_starts_as_a_login_shell() {
    let keeper = Keeper::start();
    let client = keeper.client();
    let request = spawn_request("login", None, &[("SHELL", "/bin/sh"), ("ENV", "")]);
    let (reply, mut fds) = client.call(&request, &[]).unwrap();
    assert!(matches!(reply, Reply::Spawned { .. }), "{reply:?}");
    let master = fds.pop().expect("the master");
    nix::unistd::write(&master, b"echo zero=$0 shell=$SHELL\n").unwrap();
    let out = read_until(&master, "shell=/bin/sh\r");
    assert!(out.contains("zero=-sh shell=/bin/sh"), "{out:?}");
}

#[test]
fn releasing_a_session_closes_the_keepers_copy_of_its_terminal() {
    let keeper = Keeper::start();
    let client = keeper.client();
    let (pid, master) = spawn(
        &client,
        "a",
        &[
            "sh",
            "-c",
            "trap 'exit 7' HUP; while :; do sleep 0.05; done",
        ],
    );
    drop(master);
    // The daemon's copy is gone; releasing the keeper's closes the last master: SIGHUP.
    client
        .call(&Request::Release { id: "a".into() }, &[])
        .unwrap();
    poll("the program to end", || {
        (!Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| s.contains(") Z ")))
        .then_some(())
    });
    assert!(client.list().unwrap().is_empty());
}

#[test]
fn the_socket_is_private_to_its_user() {
    let keeper = Keeper::start();
    let mode = std::fs::metadata(&keeper.socket)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn with_nothing_held_and_nobody_connected_the_keeper_exits() {
    let mut keeper = Keeper::start();
    let client = keeper.client();
    let (_, master) = spawn(&client, "a", &["true"]);
    drop(master);
    poll("the exit", || status(&client, "a"));
    client
        .call(&Request::Release { id: "a".into() }, &[])
        .unwrap();
    drop(client);
    let start = Instant::now();
    let status = poll("the keeper to exit", || keeper.child.try_wait().unwrap());
    assert!(status.success());
    assert!(start.elapsed() < DEADLINE);
    assert!(!keeper.socket.exists());
}

#[test]
fn a_second_keeper_on_the_same_socket_refuses_to_start() {
    let keeper = Keeper::start();
    let out = Command::new(env!("CARGO_BIN_EXE_pulsar-keeper"))
        .arg("--socket")
        .arg(&keeper.socket)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already serves"));
    // The first one still answers.
    keeper.client().hello().unwrap();
}

#[test]
fn terminate_all_ends_background_jobs_in_their_own_process_groups_too() {
    let keeper = Keeper::start();
    let client = keeper.client();
    // An interactive shell puts a background job in a process group of its own.
    let (_, master) = spawn(&client, "a", &["sh", "-i"]);
    nix::unistd::write(&master, b"sleep 1000 & echo bg:$!:$((6*7))\n").unwrap();
    let out = read_until(&master, ":42\r\n");
    let job: u32 = out
        .rsplit("bg:")
        .next()
        .and_then(|rest| rest.split(':').next())
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("{out:?}"));
    client.call(&Request::TerminateAll, &[]).unwrap();
    poll("the background job to end", || {
        std::fs::read_to_string(format!("/proc/{job}/stat"))
            .map_or(true, |s| s.contains(") Z "))
            .then_some(())
    });
}
