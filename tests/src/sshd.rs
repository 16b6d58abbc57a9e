//! A real OpenSSH server for the SSH tests and benchmarks: `sshd -D -e` on 127.0.0.1 and a
//! free port, with a throwaway host key, a throwaway authorized client key and a private
//! config, all in a temp dir; killed (with every connection it forked) when dropped.
//!
//! It lets in one local user, [`TEST_USER`], whose password is [`TEST_PASSWORD`]; the user is
//! created on first use (tests run as root) and kept, with a lock file and a "password set"
//! marker in /tmp, so later runs find it ready. Nothing else on the system is changed.

use std::io::Read as _;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::DEADLINE;

/// The OpenSSH server binary.
pub const SSHD: &str = "/usr/sbin/sshd";
/// The local user the test server lets in.
pub const TEST_USER: &str = "pulsar-sshtest";
/// That user's password (a throwaway; the account only ever accepts loopback logins from the
/// test servers, which allow no other user).
pub const TEST_PASSWORD: &str = "Pulsar-test-pw-7f3a91";

/// True when OpenSSH's server and `ssh-keygen` are installed.
pub fn sshd_available() -> bool {
    Path::new(SSHD).exists() && which("ssh-keygen")
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// Runs `program args` to completion, panicking with its stderr if it fails.
pub fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|err| panic!("cannot run {program}: {err}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Generates an ed25519 key pair at `path` (and `path.pub`), with `passphrase` ("" for none).
pub fn keygen(path: &Path, passphrase: &str) {
    let _ = std::fs::remove_file(path);
    let _ = std::fs::remove_file(path.with_extension("pub"));
    run(
        "ssh-keygen",
        &[
            "-q",
            "-t",
            "ed25519",
            "-N",
            passphrase,
            "-C",
            "pulsar-test",
            "-f",
            path.to_str().expect("UTF-8 path"),
        ],
    );
}

/// Creates [`TEST_USER`] with [`TEST_PASSWORD`] if needed. Test processes run in parallel, so
/// the check and the change happen under an exclusive lock.
fn ensure_test_user() {
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open("/tmp/pulsar-sshtest-user.lock")
        .expect("user lock file");
    // SAFETY: flock on a descriptor we own; released when `lock` is closed.
    let rc = unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) };
    assert_eq!(rc, 0, "flock: {}", std::io::Error::last_os_error());
    let exists = Command::new("id")
        .args(["-u", TEST_USER])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !exists {
        run(
            "useradd",
            &["--create-home", "--shell", "/bin/sh", TEST_USER],
        );
    }
    let marker = Path::new("/tmp/pulsar-sshtest-user.password-set");
    if !exists || !marker.exists() {
        let mut chpasswd = Command::new("chpasswd")
            .stdin(Stdio::piped())
            .spawn()
            .expect("run chpasswd");
        std::io::Write::write_all(
            chpasswd.stdin.as_mut().expect("stdin"),
            format!("{TEST_USER}:{TEST_PASSWORD}\n").as_bytes(),
        )
        .expect("write to chpasswd");
        drop(chpasswd.stdin.take());
        assert!(
            chpasswd.wait().expect("chpasswd").success(),
            "chpasswd failed"
        );
        std::fs::write(marker, b"").expect("marker");
    }
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free port")
        .port()
}

/// A running OpenSSH server.
pub struct Sshd {
    /// Host key, config, authorized keys, client keys, log.
    pub dir: tempfile::TempDir,
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    /// The unencrypted client key it authorizes.
    pub client_key: PathBuf,
    config: PathBuf,
    /// `LogLevel` of its log (`VERBOSE`; `DEBUG` shows each `direct-tcpip` it opens).
    log_level: &'static str,
    child: Option<Child>,
}

impl Sshd {
    /// Starts a server on a free port; waits until it answers.
    pub fn start() -> Self {
        Self::start_logging("VERBOSE")
    }

    /// Starts a server whose log is at `LogLevel DEBUG`: among much else it names the
    /// target of every `direct-tcpip` channel it opens (as a jump host does).
    pub fn start_debug() -> Self {
        Self::start_logging("DEBUG")
    }

    fn start_logging(log_level: &'static str) -> Self {
        assert!(
            sshd_available(),
            "{SSHD} or ssh-keygen is missing: install openssh-server and openssh-client \
             (scripts/test does; without them the tests that need OpenSSH are ignored)"
        );
        ensure_test_user();
        std::fs::create_dir_all("/run/sshd").expect("sshd's privilege separation dir");
        let dir = tempfile::tempdir().expect("temp dir");
        // sshd reads the authorized keys as the test user: let it into the dir.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod the sshd dir");
        let host_key = dir.path().join("host_ed25519");
        keygen(&host_key, "");
        let client_key = dir.path().join("id_ed25519");
        keygen(&client_key, "");
        let authorized = dir.path().join("authorized_keys");
        std::fs::copy(client_key.with_extension("pub"), &authorized).expect("authorize the key");
        std::fs::set_permissions(&authorized, std::fs::Permissions::from_mode(0o644))
            .expect("chmod authorized_keys");
        let config = dir.path().join("sshd_config");
        let mut sshd = Self {
            dir,
            port: 0,
            client_key,
            config,
            log_level,
            child: None,
        };
        // Another test may take the free port between our look and sshd's bind: try again
        // on another one.
        for _ in 0..5 {
            sshd.port = free_port();
            sshd.write_config();
            if sshd.launch() {
                return sshd;
            }
        }
        panic!("sshd could not bind a free port: {}", sshd.log());
    }

    fn write_config(&self) {
        let d = self.dir.path().display();
        std::fs::write(
            &self.config,
            format!(
                "Port {}\nListenAddress 127.0.0.1\nHostKey {d}/host_ed25519\n\
                 PidFile {d}/sshd.pid\nAuthorizedKeysFile {d}/authorized_keys\n\
                 StrictModes no\nUsePAM no\nPasswordAuthentication yes\n\
                 KbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
                 PermitRootLogin no\nAllowUsers {TEST_USER}\nPrintMotd no\nPrintLastLog no\n\
                 UseDNS no\nMaxStartups 200\nMaxSessions 64\nLogLevel {}\n\
                 Subsystem sftp internal-sftp\n",
                self.port, self.log_level
            ),
        )
        .expect("write sshd_config");
    }

    /// Starts sshd and waits until it answers; false if it could not bind its port.
    fn launch(&mut self) -> bool {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("sshd.log"))
            .expect("sshd log");
        let child = Command::new(SSHD)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn sshd");
        self.child = Some(child);
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> bool {
        let start = Instant::now();
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                if self.log().contains("Address already in use") {
                    return false;
                }
                panic!("sshd exited ({status}): {}", self.log());
            }
            if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                let mut banner = [0u8; 8];
                if stream.read_exact(&mut banner).is_ok() && banner.starts_with(b"SSH-2.0") {
                    return true;
                }
            }
            assert!(
                start.elapsed() < DEADLINE,
                "sshd never answered: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    /// The host key as a known_hosts line for this server (`[127.0.0.1]:port ssh-ed25519 ...`).
    pub fn known_hosts_line(&self) -> String {
        let public = std::fs::read_to_string(self.dir.path().join("host_ed25519.pub"))
            .expect("host public key");
        let mut fields = public.split_whitespace();
        let (kind, key) = (fields.next().unwrap(), fields.next().unwrap());
        format!("[127.0.0.1]:{} {kind} {key}\n", self.port)
    }

    /// The host key's SHA256 fingerprint, as `ssh-keygen -l` prints it.
    pub fn fingerprint(&self) -> String {
        let path = self.dir.path().join("host_ed25519.pub");
        let out = run("ssh-keygen", &["-l", "-f", path.to_str().unwrap()]);
        out.split_whitespace()
            .nth(1)
            .expect("fingerprint")
            .to_owned()
    }

    /// Writes this server's host key into `home/.ssh/known_hosts`, as a user who had
    /// connected before would have it.
    pub fn trust(&self, home: &Path) {
        let ssh = home.join(".ssh");
        std::fs::create_dir_all(&ssh).expect("~/.ssh");
        std::fs::write(ssh.join("known_hosts"), self.known_hosts_line()).expect("known_hosts");
    }

    /// Adds an encrypted key (with `passphrase`) to the authorized keys; returns its path.
    pub fn add_encrypted_key(&self, passphrase: &str) -> PathBuf {
        let key = self.dir.path().join("id_encrypted");
        keygen(&key, passphrase);
        let public = std::fs::read_to_string(key.with_extension("pub")).expect("public key");
        let authorized = self.dir.path().join("authorized_keys");
        let mut keys = std::fs::read_to_string(&authorized).expect("authorized_keys");
        keys.push_str(&public);
        std::fs::write(&authorized, keys).expect("authorize the key");
        key
    }

    /// Kills the server and every connection it forked (their shells lose their terminal),
    /// as a crash or a reboot of the host would.
    pub fn kill(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let mut doomed = descendants(child.id());
        doomed.push(child.id());
        for pid in doomed {
            // SAFETY: plain kill(2) on pids we just found under our own child.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        }
        let _ = child.wait();
    }

    /// Stops (SIGSTOP) every connection the server forked, so they hold their sockets open
    /// and say nothing: a hung host, or a network that silently drops everything. `kill`
    /// (and so drop) still ends them.
    pub fn freeze_connections(&self) {
        let Some(child) = &self.child else {
            return;
        };
        for pid in descendants(child.id()) {
            // SAFETY: plain kill(2) on pids we just found under our own child.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGSTOP) };
        }
    }

    /// Starts the server again on the same port with the same keys.
    pub fn restart(&mut self) {
        self.kill();
        assert!(self.launch(), "sshd could not bind its port again");
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Every process below `root`, from /proc.
fn descendants(root: u32) -> Vec<u32> {
    let mut parents = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // The command name is in parentheses and may hold spaces: parse after the last ')'.
            let Some(ppid) = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok())
            else {
                continue;
            };
            parents.push((pid, ppid));
        }
    }
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            parents
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    found.remove(0);
    found
}

/// A real `ssh-agent` holding `keys`, on a socket in its own temp dir; killed when dropped.
pub struct Agent {
    /// The agent's socket: the daemon's `SSH_AUTH_SOCK`.
    pub socket: PathBuf,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Agent {
    /// Starts an agent and adds `keys` to it.
    pub fn start(keys: &[&Path]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = dir.path().join("agent.sock");
        let child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn ssh-agent");
        let agent = Self {
            socket,
            child,
            _dir: dir,
        };
        let start = Instant::now();
        while !agent.socket.exists() {
            assert!(
                start.elapsed() < DEADLINE,
                "ssh-agent never made its socket"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        for key in keys {
            let out = Command::new("ssh-add")
                .arg(key)
                .env("SSH_AUTH_SOCK", &agent.socket)
                .stdin(Stdio::null())
                .output()
                .expect("run ssh-add");
            assert!(
                out.status.success(),
                "ssh-add failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        agent
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
