//! OpenSSH `known_hosts` files: is this host key the one on record, and remembering new ones.
//!
//! Understands what OpenSSH writes and reads: plain and hashed (`|1|salt|hmac`) host names,
//! `[host]:port` for ports other than 22, comma-separated patterns with `*`/`?` wildcards and
//! `!` negation, `@revoked` lines, comments and blank lines. `@cert-authority` lines are
//! skipped (host certificates are not supported).

use std::fs::OpenOptions;
use std::io::{self, Read as _, Seek as _, SeekFrom, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use russh::keys::ssh_key::PublicKey;
use russh::keys::{HashAlg, parse_public_key_base64};

/// What the file says about a host's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A line for this host records this very key.
    Known,
    /// No line for this host records a key of this type.
    Unknown,
    /// A line for this host records a different key of the same type.
    Changed {
        /// 1-based line number of that entry.
        line: usize,
        /// The recorded key's SHA256 fingerprint.
        expected_fingerprint: String,
    },
    /// The key is marked `@revoked` (on this line).
    Revoked {
        /// 1-based line number.
        line: usize,
    },
}

/// The name a host is recorded under: `host` on port 22, `[host]:port` elsewhere.
pub fn host_entry_name(host: &str, port: u16) -> String {
    let host = host.to_ascii_lowercase();
    if port == 22 {
        host
    } else {
        format!("[{host}]:{port}")
    }
}

/// The key's fingerprint as OpenSSH shows it: `SHA256:<base64, unpadded>`.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// Checks `key` for `host`:`port` against the file at `path`; a missing file knows no host.
pub fn check(path: &Path, host: &str, port: u16, key: &PublicKey) -> io::Result<Verdict> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Verdict::Unknown),
        Err(err) => return Err(err),
    };
    Ok(check_text(&text, host, port, key))
}

fn check_text(text: &str, host: &str, port: u16, key: &PublicKey) -> Verdict {
    let name = host_entry_name(host, port);
    let mut changed = None;
    let mut known = false;
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let mut fields = line.split_ascii_whitespace();
        let Some(mut first) = fields.next() else {
            continue;
        };
        if first.starts_with('#') {
            continue;
        }
        let marker = first.strip_prefix('@');
        if marker.is_some() {
            match fields.next() {
                Some(next) => first = next,
                None => continue,
            }
        }
        let (Some(_key_type), Some(encoded)) = (fields.next(), fields.next()) else {
            continue;
        };
        if !patterns_match(first, &name) {
            continue;
        }
        let Ok(recorded) = parse_public_key_base64(encoded) else {
            tracing::debug!(line = number, "unreadable key in known_hosts; skipped");
            continue;
        };
        let same = recorded.key_data() == key.key_data();
        match marker {
            Some("revoked") if same => return Verdict::Revoked { line: number },
            Some(_) => {}
            None if same => known = true,
            None if recorded.algorithm() == key.algorithm() && changed.is_none() => {
                changed = Some(Verdict::Changed {
                    line: number,
                    expected_fingerprint: fingerprint(&recorded),
                });
            }
            None => {}
        }
    }
    if known {
        Verdict::Known
    } else {
        changed.unwrap_or(Verdict::Unknown)
    }
}

/// What `text` (a `known_hosts` file) says about `host`:`port` presenting the key
/// `key_base64` (as a file records it), or `None` when that key does not parse: the fuzz
/// targets' entry.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn check_text_for(
    text: &str,
    host: &str,
    port: u16,
    key_base64: &str,
) -> Option<Verdict> {
    let key = parse_public_key_base64(key_base64).ok()?;
    let verdict = check_text(text, host, port, &key);
    if let Verdict::Changed { line, .. } | Verdict::Revoked { line } = verdict {
        assert!(
            (1..=text.lines().count()).contains(&line),
            "{verdict:?} is past the end"
        );
    }
    Some(verdict)
}

/// True when the comma-separated `patterns` match `name`: some pattern matches and no
/// negated (`!`) one does.
fn patterns_match(patterns: &str, name: &str) -> bool {
    let mut matched = false;
    for pattern in patterns.split(',') {
        if let Some(negated) = pattern.strip_prefix('!') {
            if glob(negated, name) {
                return false;
            }
        } else if pattern.starts_with("|1|") {
            matched |= hashed_match(pattern, name);
        } else {
            matched |= glob(&pattern.to_ascii_lowercase(), name);
        }
    }
    matched
}

/// `|1|base64(salt)|base64(HMAC-SHA1(salt, name))`, as `HashKnownHosts yes` writes.
fn hashed_match(pattern: &str, name: &str) -> bool {
    let mut parts = pattern["|1|".len()..].split('|');
    let (Some(salt), Some(hash)) = (parts.next(), parts.next()) else {
        return false;
    };
    let (Ok(salt), Ok(hash)) = (STANDARD.decode(salt), STANDARD.decode(hash)) else {
        return false;
    };
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &salt);
    ring::hmac::verify(&key, name.as_bytes(), &hash).is_ok()
}

/// OpenSSH's wildcard match: `*` any run, `?` any one character.
fn glob(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni) = (0, 0);
    let (mut star, mut resume) = (None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            resume = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            resume += 1;
            ni = resume;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Appends `key` for `host`:`port` to the file at `path` (created 0600, its directory 0700,
/// when missing), as OpenSSH's `accept-new` does.
pub fn append(path: &Path, host: &str, port: u16, key: &PublicKey) -> io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)?;
    let mut line = String::new();
    if file.seek(SeekFrom::End(-1)).is_ok() {
        let mut last = [0u8; 1];
        file.read_exact(&mut last)?;
        if last[0] != b'\n' {
            line.push('\n');
        }
    }
    let openssh = key.to_openssh().map_err(io::Error::other)?;
    // `to_openssh` ends with the key's comment, if any: keep the type and the key only.
    let mut fields = openssh.split_ascii_whitespace();
    let (key_type, encoded) = (fields.next().unwrap_or(""), fields.next().unwrap_or(""));
    line.push_str(&format!(
        "{} {key_type} {encoded}\n",
        host_entry_name(host, port)
    ));
    // One write of the whole line, so concurrent appends do not interleave.
    file.write_all(line.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ";
    const KEY_B: &str = "AAAAC3NzaC1lZDI1NTE5AAAAILIG2T/B0l0gaqj3puu510tu9N1OkQ4znY3LYuEm5zCF";

    fn key(encoded: &str) -> PublicKey {
        parse_public_key_base64(encoded).unwrap()
    }

    #[test]
    fn plain_entry_on_port_22_is_known() {
        let text = format!("example.org ssh-ed25519 {KEY_A}\n");
        assert_eq!(
            check_text(&text, "example.org", 22, &key(KEY_A)),
            Verdict::Known
        );
    }

    #[test]
    fn other_ports_are_recorded_in_brackets() {
        let text = format!("[127.0.0.1]:2222 ssh-ed25519 {KEY_A}\n");
        assert_eq!(
            check_text(&text, "127.0.0.1", 2222, &key(KEY_A)),
            Verdict::Known
        );
        assert_eq!(
            check_text(&text, "127.0.0.1", 22, &key(KEY_A)),
            Verdict::Unknown
        );
    }

    #[test]
    fn hashed_entry_is_matched() {
        // From russh's own tests: HMAC-SHA1 of "example.com".
        let text = format!(
            "|1|O33ESRMWPVkMYIwJ1Uw+n877jTo=|nuuC5vEqXlEZ/8BXQR7m619W6Ak= ssh-ed25519 {KEY_B}\n"
        );
        assert_eq!(
            check_text(&text, "example.com", 22, &key(KEY_B)),
            Verdict::Known
        );
        assert_eq!(
            check_text(&text, "example.net", 22, &key(KEY_B)),
            Verdict::Unknown
        );
    }

    #[test]
    fn a_different_key_of_the_same_type_is_changed_with_its_line() {
        let text = format!("# comment\n\nother ssh-ed25519 {KEY_B}\nhost ssh-ed25519 {KEY_B}\n");
        assert_eq!(
            check_text(&text, "host", 22, &key(KEY_A)),
            Verdict::Changed {
                line: 4,
                expected_fingerprint: fingerprint(&key(KEY_B)),
            }
        );
    }

    #[test]
    fn wildcards_negation_and_lists_follow_openssh() {
        let text = format!("*.example.org,!bad.example.org ssh-ed25519 {KEY_A}\n");
        assert_eq!(
            check_text(&text, "a.example.org", 22, &key(KEY_A)),
            Verdict::Known
        );
        assert_eq!(
            check_text(&text, "bad.example.org", 22, &key(KEY_A)),
            Verdict::Unknown
        );
    }

    #[test]
    fn revoked_key_is_refused() {
        let text = format!("@revoked * ssh-ed25519 {KEY_A}\nhost ssh-ed25519 {KEY_A}\n");
        assert_eq!(
            check_text(&text, "host", 22, &key(KEY_A)),
            Verdict::Revoked { line: 1 }
        );
    }

    #[test]
    fn appended_entry_is_known_afterwards() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ssh/known_hosts");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, format!("other ssh-ed25519 {KEY_B}")).unwrap();
        append(&path, "Host.Example", 2222, &key(KEY_A)).unwrap();
        assert_eq!(
            check(&path, "host.example", 2222, &key(KEY_A)).unwrap(),
            Verdict::Known
        );
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text.lines().nth(1).unwrap(),
            format!("[host.example]:2222 ssh-ed25519 {KEY_A}")
        );
    }

    #[test]
    fn fingerprint_looks_like_openssh() {
        let fp = fingerprint(&key(KEY_A));
        assert!(fp.starts_with("SHA256:"), "{fp}");
        assert!(!fp.ends_with('='), "{fp}");
    }
}
