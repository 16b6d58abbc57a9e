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
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("keeper.sock");
        let child = Command::new(env!("CARGO_BIN_EXE_pulsar-keeper"))
            .arg("--socket")
            .arg(&socket)
            .spawn()
            .unwrap();
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

fn spawn(client: &Client, id: &str, argv: &[&str]) -> (u32, OwnedFd) {
    let request = Request::Spawn(SpawnRequest {
        id: id.to_owned(),
        meta: format!("meta of {id}"),
        command: Some(argv.iter().map(|s| (*s).to_owned()).collect()),
        cwd: PathBuf::from("/"),
        env: vec![("PULSAR_TEST".into(), "1".into())],
        cols: 80,
        rows: 24,
        limits: None,
    });
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
