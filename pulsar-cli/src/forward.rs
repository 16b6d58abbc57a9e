//! `pulsar forward add|ls|rm`: port forwards on SSH sessions (`ssh -L`, `-R`, `-D`), kept by
//! the daemon whether or not anything is attached.

use pulsar_protocol::{ForwardInfo, ForwardKind, PulsarApiClient as _};

use crate::daemon::Endpoint;
use crate::error::{Exit, Failure, Result};
use crate::resolve;

/// A forward as given on the command line: `-L`/`-R` `[host:]port:host:port`, `-D`
/// `[host:]port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardArg {
    /// Which way.
    pub kind: ForwardKind,
    /// `[host:]port` to listen on.
    pub listen: String,
    /// `host:port` to connect to (not for `-D`).
    pub target: Option<String>,
}

impl ForwardArg {
    /// `[host:]port:host:port` for `-L` and `-R`: the target is the last `host:port` (an
    /// IPv6 host in brackets), the listening address what comes before.
    pub fn parse_with_target(kind: ForwardKind, text: &str) -> std::result::Result<Self, String> {
        let (rest, port) = text
            .rsplit_once(':')
            .ok_or_else(|| format!("{text:?}: expected [HOST:]PORT:HOST:PORT"))?;
        let (listen, host) = if let Some(before) = rest.strip_suffix(']') {
            let open = before
                .rfind('[')
                .ok_or_else(|| format!("{text:?}: an unclosed ["))?;
            let listen = before[..open]
                .strip_suffix(':')
                .ok_or_else(|| format!("{text:?}: expected [HOST:]PORT:HOST:PORT"))?;
            (listen, &rest[open..])
        } else {
            rest.rsplit_once(':')
                .ok_or_else(|| format!("{text:?}: expected [HOST:]PORT:HOST:PORT"))?
        };
        if listen.is_empty() || host.is_empty() || port.is_empty() {
            return Err(format!("{text:?}: expected [HOST:]PORT:HOST:PORT"));
        }
        Ok(Self {
            kind,
            listen: listen.to_owned(),
            target: Some(format!("{host}:{port}")),
        })
    }
}

/// `-L`'s value parser.
pub fn parse_local(text: &str) -> std::result::Result<ForwardArg, String> {
    ForwardArg::parse_with_target(ForwardKind::Local, text)
}

/// `-R`'s value parser.
pub fn parse_remote(text: &str) -> std::result::Result<ForwardArg, String> {
    ForwardArg::parse_with_target(ForwardKind::Remote, text)
}

/// `-D`'s value parser.
pub fn parse_dynamic(text: &str) -> std::result::Result<ForwardArg, String> {
    if text.is_empty() {
        return Err("expected [HOST:]PORT".to_owned());
    }
    Ok(ForwardArg {
        kind: ForwardKind::Dynamic,
        listen: text.to_owned(),
        target: None,
    })
}

/// `pulsar forward add SESSION -L|-R|-D ...`.
pub async fn add(
    endpoint: &Endpoint,
    target: &str,
    forward: ForwardArg,
    allow_non_loopback: bool,
) -> Result<Exit> {
    let client = endpoint.connect().await?;
    let session = resolve::session(&client, target).await?;
    let info = client
        .add_forward(
            session.id,
            forward.kind,
            forward.listen.clone(),
            forward.target.clone(),
            allow_non_loopback.then_some(true),
        )
        .await
        .map_err(|err| Failure::rpc(&format!("add a forward to {}", session.name), err))?;
    println!(
        "forward {} on {}: {}",
        short(&info),
        session.name,
        describe(&info)
    );
    Ok(Exit::Ok)
}

/// `pulsar forward ls [SESSION] [--json]`.
pub async fn list(endpoint: &Endpoint, target: Option<&str>, json: bool) -> Result<Exit> {
    let client = endpoint.connect().await?;
    let sessions = crate::rpc::list_sessions(&client).await?;
    let session_id = match target {
        Some(target) => Some(resolve::session(&client, target).await?.id),
        None => None,
    };
    let forwards = client
        .list_forwards(session_id)
        .await
        .map_err(|err| Failure::rpc("list forwards", err))?
        .forwards;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&forwards).expect("forwards serialise")
        );
        return Ok(Exit::Ok);
    }
    if forwards.is_empty() {
        println!("no forwards (add one with `pulsar forward add`)");
        return Ok(Exit::Ok);
    }
    let name_of = |id| {
        sessions
            .iter()
            .find(|(_, s)| s.id == id)
            .map(|(_, s)| s.name.clone())
            .unwrap_or_else(|| "?".to_owned())
    };
    let header = [
        "ID",
        "SESSION",
        "FORWARD",
        "STATE",
        "CONNS",
        "IN",
        "OUT",
        "LAST ERROR",
    ];
    let mut rows = vec![header.map(String::from)];
    for f in &forwards {
        rows.push([
            short(f),
            name_of(f.session_id),
            describe(f),
            format!("{:?}", f.state).to_lowercase(),
            format!("{}/{}", f.connections, f.total_connections),
            f.bytes_in.to_string(),
            f.bytes_out.to_string(),
            f.last_error.clone().unwrap_or_else(|| "-".to_owned()),
        ]);
    }
    print!("{}", crate::list::pad(&rows));
    Ok(Exit::Ok)
}

/// `pulsar forward rm ID...`: ids or unique prefixes, as `forward ls` shows them.
pub async fn remove(endpoint: &Endpoint, ids: &[String]) -> Result<Exit> {
    let client = endpoint.connect().await?;
    let forwards = client
        .list_forwards(None)
        .await
        .map_err(|err| Failure::rpc("list forwards", err))?
        .forwards;
    for id in ids {
        let wanted = id.to_lowercase().replace('-', "");
        let matching: Vec<&ForwardInfo> = forwards
            .iter()
            .filter(|f| f.id.simple().to_string().starts_with(&wanted))
            .collect();
        let forward = match matching.as_slice() {
            [one] => *one,
            [] => {
                return Err(Failure::new(
                    Exit::NotFound,
                    format!("no forward has an id starting with {id}"),
                ));
            }
            _ => {
                return Err(Failure::new(
                    Exit::NotFound,
                    format!("{id} matches several forwards: give more of the id"),
                ));
            }
        };
        client
            .remove_forward(forward.id)
            .await
            .map_err(|err| Failure::rpc(&format!("remove forward {id}"), err))?;
        println!("removed forward {}: {}", short(forward), describe(forward));
    }
    Ok(Exit::Ok)
}

fn short(forward: &ForwardInfo) -> String {
    forward.id.simple().to_string()[..8].to_owned()
}

/// `-L 127.0.0.1:8080 -> db:5432`, as `ssh` spells it.
fn describe(forward: &ForwardInfo) -> String {
    let flag = match forward.kind {
        ForwardKind::Local => "-L",
        ForwardKind::Remote => "-R",
        ForwardKind::Dynamic => "-D",
    };
    match &forward.target {
        Some(target) => format!("{flag} {} -> {target}", forward.listen),
        None => format!("{flag} {} (SOCKS5)", forward.listen),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(text: &str) -> (String, String) {
        let arg = parse_local(text).unwrap();
        (arg.listen, arg.target.unwrap())
    }

    #[test]
    fn local_and_remote_specs_read_like_ssh() {
        assert_eq!(local("8080:db:5432"), ("8080".into(), "db:5432".into()));
        assert_eq!(
            local("0.0.0.0:8080:db:5432"),
            ("0.0.0.0:8080".into(), "db:5432".into())
        );
        assert_eq!(
            local("[::1]:8080:[::1]:22"),
            ("[::1]:8080".into(), "[::1]:22".into())
        );
        assert!(parse_remote("8080").is_err());
        assert!(parse_remote("db:5432").is_err());
        assert_eq!(parse_dynamic("1080").unwrap().target, None);
    }
}
