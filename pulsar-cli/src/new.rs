//! `pulsar new`: creates a session (local, SSH or serial) and attaches to it, or prints its id
//! with `-d`.
//!
//! The request is built as plain JSON rather than through `pulsar_protocol::SessionType`, so
//! that `--ssh` and `--serial` send the documented `type` objects even before this build's
//! protocol types know those kinds; the daemon's answer (today: not available) is shown as
//! it comes.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use pulsar_protocol::method;
use serde_json::{Value, json};

use crate::attach::{self, Options};
use crate::daemon::Endpoint;
use crate::error::{Exit, Failure, Result};
use crate::rpc::{self, Params, Session};
use crate::terminal;

/// Default speed of `--serial`.
const SERIAL_BAUD: u32 = 115_200;

/// What `pulsar new` was asked for.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// The session's name (the daemon picks one when absent).
    pub name: Option<String>,
    /// Print the id instead of attaching.
    pub detached: bool,
    /// An SSH session instead of a local one.
    pub ssh: Option<SshTarget>,
    /// A serial-port session instead of a local one.
    pub serial: Option<SerialTarget>,
    /// Working directory of a local session (default: the current directory).
    pub cwd: Option<PathBuf>,
    /// Environment additions of a local session.
    pub env: Vec<EnvVar>,
    /// Program and arguments of a local session (default: the login shell).
    pub command: Vec<String>,
    /// Resource limits (`create_session`'s `limits`).
    pub limits: Vec<LimitArg>,
}

/// `pulsar new`.
pub async fn run(endpoint: &Endpoint, request: Request, options: Options) -> Result<Exit> {
    if !request.detached {
        attach::require_terminal()?;
    }
    let params = params(&request)?;
    let client = endpoint.connect().await?;
    let doing = match &request.name {
        Some(name) => format!("create session {name}"),
        None => "create a session".to_owned(),
    };
    let result = rpc::call(&client, method::CREATE_SESSION, params, &doing).await?;
    let session: Session = serde_json::from_value(result.clone()).map_err(|err| {
        Failure::error(format!(
            "{doing}: cannot read the daemon's answer ({err}): {result}"
        ))
    })?;
    if request.detached {
        println!("{}", session.id);
        return Ok(Exit::Ok);
    }
    attach::attach(&endpoint.socket, client, session, options).await
}

/// `create_session`'s parameters.
fn params(request: &Request) -> Result<Params> {
    let session_type = match (&request.ssh, &request.serial) {
        (Some(ssh), None) => {
            // Only what was given: the daemon fills the rest from ~/.ssh/config, as ssh does.
            let mut ty = json!({"kind": "ssh", "host": ssh.host});
            if let Some(port) = ssh.port {
                ty["port"] = port.into();
            }
            if let Some(user) = &ssh.user {
                ty["user"] = user.clone().into();
            }
            ty
        }
        (None, Some(serial)) => json!({
            "kind": "serial",
            "device": serial.device,
            "baud": serial.baud,
        }),
        (None, None) => local_type(request)?,
        (Some(_), Some(_)) => return Err(Failure::usage("--ssh and --serial exclude each other")),
    };
    let mut params = Params::new();
    if let Some(name) = &request.name {
        params.insert("name".into(), name.clone().into());
    }
    params.insert("type".into(), session_type);
    if !request.limits.is_empty() {
        let limits: serde_json::Map<String, Value> = request
            .limits
            .iter()
            .map(|l| (l.name.to_owned(), l.value.into()))
            .collect();
        params.insert("limits".into(), Value::Object(limits));
    }
    if let Some((cols, rows)) = terminal::size() {
        params.insert("cols".into(), cols.into());
        params.insert("rows".into(), rows.into());
    }
    Ok(params)
}

/// `{"kind":"local", ...}`, starting in the current directory unless told otherwise (as tmux
/// does; the daemon's own default would be the home directory).
fn local_type(request: &Request) -> Result<Value> {
    let mut local = json!({"kind": "local"});
    if !request.command.is_empty() {
        local["command"] = json!(request.command);
    }
    let cwd = match &request.cwd {
        Some(dir) => Some(
            std::path::absolute(dir)
                .map_err(|err| Failure::usage(format!("--cwd {}: {err}", dir.display())))?,
        ),
        None => std::env::current_dir().ok(),
    };
    if let Some(cwd) = cwd {
        local["cwd"] = json!(cwd);
    }
    if !request.env.is_empty() {
        let env: serde_json::Map<String, Value> = request
            .env
            .iter()
            .map(|var| (var.key.clone(), Value::from(var.value.clone())))
            .collect();
        local["env"] = Value::Object(env);
    }
    Ok(local)
}

/// `--ssh [USER@]HOST[:PORT]`; an IPv6 host with a port goes in brackets (`[::1]:2222`).
/// HOST may be an alias of `~/.ssh/config`: it goes to the daemon as given, and what is not
/// given here (user, port) is left for the daemon to resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshTarget {
    /// The remote user, when given (else the configuration's, else the daemon user's).
    pub user: Option<String>,
    /// Host name, address or alias.
    pub host: String,
    /// TCP port, when given (else the configuration's, else 22).
    pub port: Option<u16>,
}

impl FromStr for SshTarget {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (user, rest) = match text.rsplit_once('@') {
            Some((user, rest)) if !user.is_empty() => (Some(user.to_owned()), rest),
            Some(_) => return Err(format!("{text:?}: the user before @ is empty")),
            None => (None, text),
        };
        let (host, port) = if let Some(bracketed) = rest.strip_prefix('[') {
            let (host, after) = bracketed
                .split_once(']')
                .ok_or_else(|| format!("{text:?}: missing ] after the IPv6 address"))?;
            match after {
                "" => (host, None),
                _ => match after.strip_prefix(':') {
                    Some(port) => (host, Some(port)),
                    None => return Err(format!("{text:?}: expected :PORT after ]")),
                },
            }
        } else {
            match rest.split_once(':') {
                // More than one colon and no brackets: a bare IPv6 address.
                Some((_, port)) if port.contains(':') => (rest, None),
                Some((host, port)) => (host, Some(port)),
                None => (rest, None),
            }
        };
        if host.is_empty() {
            return Err(format!(
                "{text:?}: the host is empty (expected [USER@]HOST[:PORT])"
            ));
        }
        let port = port
            .map(|port| {
                port.parse::<u16>()
                    .ok()
                    .filter(|&p| p > 0)
                    .ok_or_else(|| format!("{text:?}: port {port:?} is not a number in 1..=65535"))
            })
            .transpose()?;
        Ok(Self {
            user,
            host: host.to_owned(),
            port,
        })
    }
}

/// `--serial DEVICE[@BAUD]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SerialTarget {
    /// The device path, e.g. `/dev/ttyUSB0`.
    pub device: String,
    /// Line speed (default 115200).
    pub baud: u32,
}

impl FromStr for SerialTarget {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (device, baud) = match text.rsplit_once('@') {
            Some((device, baud)) => {
                let baud = baud.parse::<u32>().ok().filter(|&b| b > 0).ok_or_else(|| {
                    format!("{text:?}: baud rate {baud:?} is not a positive number")
                })?;
                (device, baud)
            }
            None => (text, SERIAL_BAUD),
        };
        if device.is_empty() {
            return Err(format!(
                "{text:?}: the device is empty (expected DEVICE[@BAUD])"
            ));
        }
        Ok(Self {
            device: device.to_owned(),
            baud,
        })
    }
}

/// `--limit NAME=VALUE`: `memory_max=2G`, `cpu_max=50`, `pids_max=200`, `nofile_max=1024`,
/// `output_bytes_per_sec=1M` (byte counts take K, M and G, powers of 1024).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitArg {
    /// The limit's field in `create_session`'s `limits`.
    pub name: &'static str,
    /// Its value.
    pub value: u64,
}

impl FromStr for LimitArg {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        const NAMES: [&str; 5] = [
            "memory_max",
            "cpu_max",
            "pids_max",
            "nofile_max",
            "output_bytes_per_sec",
        ];
        let (name, value) = text
            .split_once('=')
            .ok_or_else(|| format!("{text:?}: expected NAME=VALUE, e.g. memory_max=2G"))?;
        let name = NAMES
            .into_iter()
            .find(|n| *n == name)
            .ok_or_else(|| format!("{name:?}: not a limit (one of {})", NAMES.join(", ")))?;
        let (digits, scale) = match value.as_bytes().last() {
            Some(b'K' | b'k') => (&value[..value.len() - 1], 1u64 << 10),
            Some(b'M' | b'm') => (&value[..value.len() - 1], 1 << 20),
            Some(b'G' | b'g') => (&value[..value.len() - 1], 1 << 30),
            _ => (value, 1),
        };
        let value = digits
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(scale))
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("{text:?}: expected a positive number (K, M, G allowed)"))?;
        Ok(Self { name, value })
    }
}

/// `--env KEY=VALUE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvVar {
    /// The variable's name.
    pub key: String,
    /// Its value (may be empty).
    pub value: String,
}

impl FromStr for EnvVar {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.split_once('=') {
            Some((key, value)) if !key.is_empty() => Ok(Self {
                key: key.to_owned(),
                value: value.to_owned(),
            }),
            _ => Err(format!("{text:?}: expected KEY=VALUE")),
        }
    }
}

impl fmt::Display for EnvVar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.key, self.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_target_with_user_and_port() {
        let target: SshTarget = "ada@build.example:2222".parse().unwrap();
        assert_eq!(target.user.as_deref(), Some("ada"));
        assert_eq!(target.host, "build.example");
        assert_eq!(target.port, Some(2222));
    }

    #[test]
    fn ssh_target_leaves_what_is_not_given_to_the_daemon() {
        let target: SshTarget = "myhost".parse().unwrap();
        assert_eq!(
            (target.user, target.host.as_str(), target.port),
            (None, "myhost", None)
        );
    }

    #[test]
    fn ssh_target_accepts_ipv6_addresses() {
        let target: SshTarget = "ada@[::1]:2200".parse().unwrap();
        assert_eq!((target.host.as_str(), target.port), ("::1", Some(2200)));
        let bare: SshTarget = "ada@fe80::1".parse().unwrap();
        assert_eq!((bare.host.as_str(), bare.port), ("fe80::1", None));
    }

    #[test]
    fn ssh_target_errors_name_the_problem() {
        assert!(
            "ada@host:http"
                .parse::<SshTarget>()
                .unwrap_err()
                .contains("port")
        );
        assert!(
            "ada@host:0"
                .parse::<SshTarget>()
                .unwrap_err()
                .contains("port")
        );
        assert!("ada@".parse::<SshTarget>().unwrap_err().contains("host"));
        assert!("@host".parse::<SshTarget>().unwrap_err().contains("user"));
    }

    #[test]
    fn serial_target_with_and_without_baud() {
        let target: SerialTarget = "/dev/ttyUSB0@9600".parse().unwrap();
        assert_eq!(
            (target.device.as_str(), target.baud),
            ("/dev/ttyUSB0", 9600)
        );
        let target: SerialTarget = "/dev/ttyS1".parse().unwrap();
        assert_eq!(target.baud, 115_200);
        assert!(
            "/dev/ttyS1@fast"
                .parse::<SerialTarget>()
                .unwrap_err()
                .contains("baud")
        );
    }

    #[test]
    fn ssh_request_builds_the_documented_type() {
        let request = Request {
            ssh: Some("ada@host:2222".parse().unwrap()),
            ..Default::default()
        };
        let params = params(&request).unwrap();
        assert_eq!(
            params["type"],
            json!({"kind": "ssh", "host": "host", "port": 2222, "user": "ada"})
        );
        let alias = Request {
            ssh: Some("myhost".parse().unwrap()),
            ..Default::default()
        };
        assert_eq!(
            super::params(&alias).unwrap()["type"],
            json!({"kind": "ssh", "host": "myhost"}),
            "an alias reaches the daemon unresolved"
        );
    }

    #[test]
    fn serial_request_builds_the_documented_type() {
        let request = Request {
            serial: Some("/dev/ttyACM0@57600".parse().unwrap()),
            ..Default::default()
        };
        let params = params(&request).unwrap();
        assert_eq!(
            params["type"],
            json!({"kind": "serial", "device": "/dev/ttyACM0", "baud": 57600})
        );
    }

    #[test]
    fn local_request_carries_command_cwd_and_env() {
        let request = Request {
            name: Some("build".into()),
            cwd: Some("/tmp".into()),
            env: vec!["A=1".parse().unwrap()],
            command: vec!["make".into(), "-j2".into()],
            ..Default::default()
        };
        let params = params(&request).unwrap();
        assert_eq!(params["name"], "build");
        assert_eq!(
            params["type"],
            json!({"kind": "local", "command": ["make", "-j2"], "cwd": "/tmp", "env": {"A": "1"}})
        );
    }

    #[test]
    fn limits_are_named_fields_with_binary_suffixes() {
        let limit: LimitArg = "memory_max=2G".parse().unwrap();
        assert_eq!((limit.name, limit.value), ("memory_max", 2 << 30));
        let limit: LimitArg = "cpu_max=50".parse().unwrap();
        assert_eq!((limit.name, limit.value), ("cpu_max", 50));
        assert!(
            "memory=1G"
                .parse::<LimitArg>()
                .unwrap_err()
                .contains("not a limit")
        );
        assert!("pids_max=0".parse::<LimitArg>().is_err());
        assert!("pids_max".parse::<LimitArg>().is_err());
    }
}
