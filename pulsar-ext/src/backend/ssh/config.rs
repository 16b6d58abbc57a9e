//! OpenSSH's client configuration (`~/.ssh/config`): what the file says for one host alias,
//! read through the `ssh2-config` parser, with every option we do not apply named in a warning.
//!
//! The parser handles `Host` patterns (wildcards, negation), `Include`, quoting and the
//! first-value-wins rule; it has no `Match`, so a pre-pass over the main file turns `Match all`
//! and `Match host|originalhost PATTERNS` into `Host` blocks and shuts out every other `Match`
//! block with a warning. Options the parser parses but does not model (`IdentitiesOnly`,
//! `ServerAliveCountMax`, `UserKnownHostsFile`, `StrictHostKeyChecking`) come back raw and are
//! read here.

use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::time::Duration;

use std::collections::HashMap;

use ssh2_config::{DefaultAlgorithms, Host, HostClause, HostParams, ParseRule, SshConfig};

/// How unknown host keys are treated (`StrictHostKeyChecking`), mapped onto what the daemon has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StrictHostKeys {
    /// `yes` or `ask` (nobody to ask): unknown keys are refused.
    Refuse,
    /// `accept-new` (and `no`, with a warning): unknown keys are added; changed ones refused.
    AcceptNew,
}

/// What the configuration says for one host alias. `None`/empty: the file says nothing.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct HostConfig {
    /// `HostName` (with `%h` expanded).
    pub(super) host_name: Option<String>,
    /// `User`.
    pub(super) user: Option<String>,
    /// `Port`.
    pub(super) port: Option<u16>,
    /// `IdentityFile`s, in order (`~` expanded).
    pub(super) identity_files: Vec<PathBuf>,
    /// `IdentitiesOnly`.
    pub(super) identities_only: Option<bool>,
    /// `ProxyJump` hops as written (`[user@]host[:port]`); `Some(empty)` for `none`.
    pub(super) proxy_jump: Option<Vec<String>>,
    /// `ServerAliveInterval`; `Some(ZERO)` turns keepalives off.
    pub(super) server_alive_interval: Option<Duration>,
    /// `ServerAliveCountMax`.
    pub(super) server_alive_count_max: Option<usize>,
    /// The first `UserKnownHostsFile`.
    pub(super) known_hosts: Option<PathBuf>,
    /// `StrictHostKeyChecking`.
    pub(super) strict_host_keys: Option<StrictHostKeys>,
    /// `ConnectTimeout`.
    pub(super) connect_timeout: Option<Duration>,
    /// Options present in the matched blocks that are not applied, each named.
    pub(super) warnings: Vec<String>,
}

/// Why the configuration file could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{}: {reason}", path.display())]
pub(super) struct ConfigFileError {
    /// The file.
    pub(super) path: PathBuf,
    /// What is wrong with it.
    pub(super) reason: String,
}

/// The options this module applies (lower-case, as the parser names them).
const APPLIED: &[&str] = &[
    "host",
    "hostname",
    "user",
    "port",
    "identityfile",
    "identitiesonly",
    "proxyjump",
    "serveraliveinterval",
    "serveralivecountmax",
    "userknownhostsfile",
    "stricthostkeychecking",
    "connecttimeout",
    "include",
    "ignoreunknown",
];

/// A configuration file's text, read once per connection and looked up for each host of the
/// chain.
#[derive(Debug, Clone)]
pub(super) struct ConfigFile {
    /// Where it was read from.
    pub(super) path: PathBuf,
    text: String,
}

impl ConfigFile {
    /// Reads `path`; `None` when there is no such file. Disk work: call it on the blocking pool.
    pub(super) fn load(path: &Path) -> Result<Option<Self>, ConfigFileError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Ok(Some(Self {
                path: path.to_owned(),
                text,
            })),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(ConfigFileError {
                path: path.to_owned(),
                reason: err.to_string(),
            }),
        }
    }

    /// A file with `text`, as if read from `path`.
    #[cfg(test)]
    pub(super) fn from_text(path: &str, text: &str) -> Self {
        Self {
            path: path.into(),
            text: text.to_owned(),
        }
    }

    /// What the file says for `alias`. Reads included files: call it on the blocking pool.
    pub(super) fn lookup(&self, home: &Path, alias: &str) -> Result<HostConfig, ConfigFileError> {
        resolve(&self.text, home, alias).map_err(|reason| ConfigFileError {
            path: self.path.clone(),
            reason,
        })
    }
}

/// Resolves `alias` in the configuration `text` (`~` and relative `Include`s against `home`).
pub(super) fn resolve(text: &str, home: &Path, alias: &str) -> Result<HostConfig, String> {
    // ssh(1) matches patterns against the host name in lower case.
    let alias = alias.to_lowercase();
    let (mut params, mut warnings) = query(text, home, &alias, None)?;
    // `Match host` is about the host name once `HostName` has replaced the alias: if it did,
    // resolve again with those blocks decided against the real name.
    if let Some(name) = params
        .host_name
        .as_deref()
        .map(|n| expand_tokens(n, &alias))
        && name.to_lowercase() != alias
    {
        (params, warnings) = query(text, home, &alias, Some(&name.to_lowercase()))?;
    }
    let spelling = spellings(text);
    let mut resolved = HostConfig {
        host_name: params
            .host_name
            .as_deref()
            .map(|name| expand_tokens(name, &alias)),
        user: params.user.clone(),
        port: params.port,
        identity_files: params.identity_file.clone().unwrap_or_default(),
        proxy_jump: params.proxy_jump.as_ref().map(|hops| {
            if hops.len() == 1 && hops[0].eq_ignore_ascii_case("none") {
                Vec::new()
            } else {
                hops.clone()
            }
        }),
        server_alive_interval: params.server_alive_interval,
        connect_timeout: params.connect_timeout,
        ..Default::default()
    };
    let raw = |name: &str| params.unsupported_fields.get(name);
    if let Some(args) = raw("identitiesonly") {
        resolved.identities_only = Some(yes_no("IdentitiesOnly", args)?);
    }
    if let Some(args) = raw("serveralivecountmax") {
        let count = args
            .first()
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| format!("ServerAliveCountMax {args:?} is not a number"))?;
        resolved.server_alive_count_max = Some(count);
    }
    if let Some(args) = raw("userknownhostsfile") {
        let first = args
            .first()
            .ok_or("UserKnownHostsFile needs a file")?
            .trim_matches('"');
        resolved.known_hosts = Some(expand(first, home));
        if args.len() > 1 {
            warnings.push(format!(
                "UserKnownHostsFile: only the first file ({first}) is used, not {}",
                args[1..].join(" ")
            ));
        }
    }
    if let Some(args) = raw("stricthostkeychecking") {
        let value = args
            .first()
            .map(|v| v.to_ascii_lowercase())
            .unwrap_or_default();
        resolved.strict_host_keys = Some(match value.as_str() {
            "yes" | "ask" => StrictHostKeys::Refuse,
            "accept-new" => StrictHostKeys::AcceptNew,
            "no" | "off" => {
                warnings.push(
                    "StrictHostKeyChecking no is taken as accept-new: a changed host key is \
                     still refused"
                        .to_owned(),
                );
                StrictHostKeys::AcceptNew
            }
            _ => {
                return Err(format!(
                    "StrictHostKeyChecking {value:?} is not yes, ask, accept-new or no"
                ));
            }
        });
    }
    warnings.extend(not_applied(&params, &spelling));
    resolved.warnings = warnings;
    Ok(resolved)
}

/// Parses `text` (its `Match` blocks rewritten, `Match host` decided against `host_name`
/// when known) and queries `alias`.
fn query(
    text: &str,
    home: &Path,
    alias: &str,
    host_name: Option<&str>,
) -> Result<(HostParams, Vec<String>), String> {
    let (text, warnings) = rewrite_match(text, host_name);
    let config = SshConfig::default()
        .home_dir(home)
        .parse(
            &mut BufReader::new(text.as_bytes()),
            ParseRule::ALLOW_UNKNOWN_FIELDS | ParseRule::ALLOW_UNSUPPORTED_FIELDS,
        )
        .map_err(|err| err.to_string())?;
    Ok((config.query(alias), warnings))
}

/// The keywords of `text` as its author spelt them (`ControlMaster`), by their lower-case
/// form, so that warnings name options as the file does.
fn spellings(text: &str) -> HashMap<String, String> {
    let mut spelt = HashMap::new();
    for line in text.lines() {
        let line = line.trim_start();
        let keyword = line
            .split(|c: char| c.is_whitespace() || c == '=')
            .next()
            .unwrap_or("");
        if !keyword.is_empty() && !keyword.starts_with('#') {
            spelt
                .entry(keyword.to_ascii_lowercase())
                .or_insert_with(|| keyword.to_owned());
        }
    }
    spelt
}

/// `yes`/`no` (and `true`/`false`).
fn yes_no(option: &str, args: &[String]) -> Result<bool, String> {
    match args.first().map(|v| v.to_ascii_lowercase()).as_deref() {
        Some("yes" | "true") => Ok(true),
        Some("no" | "false") => Ok(false),
        _ => Err(format!("{option} {args:?} is not yes or no")),
    }
}

/// `%h` (the alias as given) and `%%` in a `HostName`.
fn expand_tokens(value: &str, alias: &str) -> String {
    value
        .replace("%%", "\u{0}")
        .replace("%h", alias)
        .replace('\u{0}', "%")
}

fn expand(path: &str, home: &Path) -> PathBuf {
    match path.strip_prefix("~/") {
        Some(rest) => home.join(rest),
        None if path == "~" => home.to_owned(),
        None => PathBuf::from(path),
    }
}

/// Every option in the matched blocks that the daemon does not apply, named (not its value:
/// a value may be something private, e.g. a `SetEnv`).
fn not_applied(params: &HostParams, spelling: &HashMap<String, String>) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let mut note = |present: bool, name: &str| {
        if present {
            names.push(name.to_owned());
        }
    };
    note(params.add_keys_to_agent.is_some(), "AddKeysToAgent");
    note(params.bind_address.is_some(), "BindAddress");
    note(params.bind_interface.is_some(), "BindInterface");
    note(params.certificate_file.is_some(), "CertificateFile");
    note(params.compression.is_some(), "Compression");
    note(params.connection_attempts.is_some(), "ConnectionAttempts");
    note(params.forward_agent.is_some(), "ForwardAgent");
    note(
        params.pubkey_authentication.is_some(),
        "PubkeyAuthentication",
    );
    note(!params.remote_forward.is_empty(), "RemoteForward");
    note(params.tcp_keep_alive.is_some(), "TCPKeepAlive");
    note(
        !params.ca_signature_algorithms.is_default(),
        "CASignatureAlgorithms",
    );
    note(!params.ciphers.is_default(), "Ciphers");
    note(
        !params.host_key_algorithms.is_default(),
        "HostKeyAlgorithms",
    );
    note(!params.kex_algorithms.is_default(), "KexAlgorithms");
    note(!params.mac.is_default(), "MACs");
    note(
        !params.pubkey_accepted_algorithms.is_default(),
        "PubkeyAcceptedAlgorithms",
    );
    let mut warnings: Vec<String> = names
        .into_iter()
        .map(|name| format!("{name} is not supported and was ignored"))
        .collect();
    let mut raw: Vec<&String> = params
        .unsupported_fields
        .keys()
        .chain(params.ignored_fields.keys())
        .filter(|name| !APPLIED.contains(&name.to_ascii_lowercase().as_str()))
        .collect();
    raw.sort();
    for name in raw {
        let lower = name.to_ascii_lowercase();
        let name = spelling.get(&lower).unwrap_or(name);
        if lower == "match" {
            warnings.push(
                "Match in an included file is not supported: the options after it were read \
                 as part of the block before it"
                    .to_owned(),
            );
        } else {
            warnings.push(format!("{name} is not supported and was ignored"));
        }
    }
    warnings
}

/// Turns the main file's `Match` blocks into `Host` blocks the parser understands: `Match
/// all` into `Host *`, `Match originalhost PATTERNS` into `Host PATTERNS`, `Match host
/// PATTERNS` likewise, or, once the real `host_name` is known, into a block that matches
/// every alias or none as the name matches; any other `Match` into a block that matches
/// nothing, with a warning (naming the criterion, not its arguments).
fn rewrite_match(text: &str, host_name: Option<&str>) -> (String, Vec<String>) {
    let mut out = String::with_capacity(text.len());
    let mut warnings = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        let keyword_end = trimmed
            .find(|c: char| c.is_whitespace() || c == '=')
            .unwrap_or(trimmed.len());
        if !trimmed[..keyword_end].eq_ignore_ascii_case("match") {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        let criteria = trimmed[keyword_end..]
            .trim_start_matches(|c: char| c.is_whitespace() || c == '=')
            .split('#')
            .next()
            .unwrap_or("")
            .trim();
        let words: Vec<&str> = criteria.split_whitespace().collect();
        let kind = words
            .first()
            .map(|w| w.to_ascii_lowercase())
            .unwrap_or_default();
        let host = match (kind.as_str(), words.as_slice()) {
            ("all", [_]) => Some("*".to_owned()),
            ("originalhost", [_, patterns]) => Some(patterns.replace(',', " ")),
            ("host", [_, patterns]) => match host_name {
                None => Some(patterns.replace(',', " ")),
                Some(name) if list_matches(patterns, name) => Some("*".to_owned()),
                Some(_) => Some("!*".to_owned()),
            },
            _ => None,
        };
        match host {
            Some(patterns) => out.push_str(&format!("Host {patterns}\n")),
            None => {
                let what = if words.len() > 2 && kind != "exec" {
                    format!("{kind} ... (several criteria)")
                } else {
                    kind
                };
                warnings.push(format!(
                    "Match {what} (line {}) is not supported: its options were not applied",
                    number + 1
                ));
                out.push_str("Host !*\n");
            }
        }
    }
    (out, warnings)
}

/// Whether `name` matches an OpenSSH pattern list (`a*,!b`), as `Host` lines match.
fn list_matches(patterns: &str, name: &str) -> bool {
    let clauses = patterns
        .split(',')
        .filter(|p| !p.is_empty())
        .map(|p| match p.strip_prefix('!') {
            Some(p) => HostClause::new(p.to_owned(), true),
            None => HostClause::new(p.to_owned(), false),
        })
        .collect();
    Host::new(clauses, HostParams::new(&DefaultAlgorithms::default())).intersects(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn home() -> &'static Path {
        Path::new("/home/ada")
    }

    fn resolved(text: &str, alias: &str) -> HostConfig {
        resolve(text, home(), alias).unwrap()
    }

    #[test]
    fn an_alias_resolves_host_name_user_port_and_identity_files() {
        let config = resolved(
            "Host build\n  HostName build.example.org\n  User ci\n  Port 2222\n  \
             IdentityFile ~/.ssh/build_key\n",
            "build",
        );
        assert_eq!(config.host_name.as_deref(), Some("build.example.org"));
        assert_eq!(config.user.as_deref(), Some("ci"));
        assert_eq!(config.port, Some(2222));
        assert_eq!(
            config.identity_files,
            [PathBuf::from("/home/ada/.ssh/build_key")]
        );
        assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    }

    #[test]
    fn an_unmatched_alias_gets_nothing() {
        let config = resolved("Host build\n  Port 2222\n", "other");
        assert_eq!(config, HostConfig::default());
    }

    #[test]
    fn the_first_value_wins_and_identity_files_accumulate() {
        let config = resolved(
            "Host web*\n  User first\n  IdentityFile ~/a\nHost *\n  User second\n  Port 2200\n  \
             IdentityFile ~/b\n",
            "web1",
        );
        assert_eq!(config.user.as_deref(), Some("first"));
        assert_eq!(config.port, Some(2200));
        assert_eq!(
            config.identity_files,
            [PathBuf::from("/home/ada/a"), PathBuf::from("/home/ada/b")]
        );
    }

    #[test]
    fn negated_patterns_exclude_a_host() {
        let text = "Host *.example.org !secret.example.org\n  User ops\n";
        assert_eq!(
            resolved(text, "www.example.org").user.as_deref(),
            Some("ops")
        );
        assert_eq!(resolved(text, "secret.example.org").user, None);
    }

    #[test]
    fn patterns_match_the_alias_in_lower_case() {
        assert_eq!(resolved("Host build\n  Port 2\n", "BUILD").port, Some(2));
    }

    #[test]
    fn host_name_expands_percent_h() {
        let config = resolved("Host *\n  HostName %h.internal\n", "db");
        assert_eq!(config.host_name.as_deref(), Some("db.internal"));
    }

    #[test]
    fn the_options_the_parser_does_not_model_are_read_raw() {
        let config = resolved(
            "Host h\n  IdentitiesOnly yes\n  ServerAliveInterval 15\n  ServerAliveCountMax 5\n  \
             UserKnownHostsFile ~/.ssh/kh_work\n  StrictHostKeyChecking accept-new\n  \
             ConnectTimeout 7\n  ProxyJump jump1,ada@jump2:2022\n",
            "h",
        );
        assert_eq!(config.identities_only, Some(true));
        assert_eq!(config.server_alive_interval, Some(Duration::from_secs(15)));
        assert_eq!(config.server_alive_count_max, Some(5));
        assert_eq!(
            config.known_hosts,
            Some(PathBuf::from("/home/ada/.ssh/kh_work"))
        );
        assert_eq!(config.strict_host_keys, Some(StrictHostKeys::AcceptNew));
        assert_eq!(config.connect_timeout, Some(Duration::from_secs(7)));
        assert_eq!(
            config.proxy_jump,
            Some(vec!["jump1".to_owned(), "ada@jump2:2022".to_owned()])
        );
        assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    }

    #[test]
    fn proxy_jump_none_means_no_jump() {
        let config = resolved("Host h\n  ProxyJump none\nHost *\n  ProxyJump j\n", "h");
        assert_eq!(config.proxy_jump, Some(Vec::new()));
    }

    #[test]
    fn strict_host_key_checking_maps_onto_refuse_or_accept_new() {
        let strict = |value: &str| {
            let config = resolved(&format!("StrictHostKeyChecking {value}\n"), "h");
            (config.strict_host_keys, config.warnings.len())
        };
        assert_eq!(strict("yes"), (Some(StrictHostKeys::Refuse), 0));
        assert_eq!(strict("ask"), (Some(StrictHostKeys::Refuse), 0));
        assert_eq!(strict("accept-new"), (Some(StrictHostKeys::AcceptNew), 0));
        assert_eq!(strict("no"), (Some(StrictHostKeys::AcceptNew), 1));
        assert!(resolve("StrictHostKeyChecking maybe\n", home(), "h").is_err());
    }

    #[test]
    fn unsupported_options_in_matched_blocks_are_named_in_warnings() {
        let config = resolved(
            "Host h\n  ForwardAgent yes\n  LocalForward 8080 localhost:80\n  Frobnicate 1\n\
             Host other\n  ControlMaster auto\n",
            "h",
        );
        let all = config.warnings.join("\n");
        assert!(all.contains("ForwardAgent"), "{all}");
        assert!(all.contains("LocalForward is not supported"), "{all}");
        assert!(all.contains("Frobnicate is not supported"), "{all}");
        assert!(!all.contains("8080"), "values are not repeated: {all}");
        assert!(!all.to_lowercase().contains("controlmaster"), "{all}");
    }

    #[test]
    fn match_all_and_match_host_become_host_blocks() {
        let text = "Match host db,web*\n  User ops\nMatch all\n  Port 2200\n";
        let config = resolved(text, "web2");
        assert_eq!(
            (config.user.as_deref(), config.port),
            (Some("ops"), Some(2200))
        );
        assert_eq!(resolved(text, "mail").user, None);
        assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    }

    #[test]
    fn match_host_is_decided_against_the_host_name() {
        let text = "Host web\n  HostName web.example.org\nMatch host *.example.org,!db*\n  \
                    User ops\n";
        assert_eq!(resolved(text, "web").user.as_deref(), Some("ops"));
        assert_eq!(resolved(text, "db.example.org").user, None);
        assert_eq!(resolved(text, "mail").user, None);
        let original = "Host web\n  HostName web.example.org\nMatch originalhost web\n  Port 2\n";
        assert_eq!(resolved(original, "web").port, Some(2));
    }

    #[test]
    fn other_match_blocks_are_not_applied_and_named() {
        let config = resolved("Match exec \"true\"\n  User never\nHost *\n  Port 2\n", "h");
        assert_eq!(config.user, None);
        assert_eq!(config.port, Some(2));
        assert!(
            config
                .warnings
                .iter()
                .any(|w| w.starts_with("Match exec") && w.contains("line 1")),
            "{:?}",
            config.warnings
        );
    }

    #[test]
    fn includes_are_read_relative_to_dot_ssh() {
        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(home.path().join(".ssh/conf.d")).unwrap();
        std::fs::write(
            home.path().join(".ssh/conf.d/work.conf"),
            "Host work\n  HostName work.example.org\n",
        )
        .unwrap();
        let config = resolve("Include conf.d/*.conf\n", home.path(), "work").unwrap();
        assert_eq!(config.host_name.as_deref(), Some("work.example.org"));
    }

    #[test]
    fn a_bad_value_is_an_error_naming_it() {
        let err = resolve("Host h\n  Port many\n", home(), "h").unwrap_err();
        assert!(
            err.to_lowercase().contains("port") || err.contains("many"),
            "{err}"
        );
    }

    #[test]
    fn a_missing_file_says_nothing() {
        let got = ConfigFile::load(Path::new("/nonexistent/ssh_config")).unwrap();
        assert!(got.is_none());
    }
}
