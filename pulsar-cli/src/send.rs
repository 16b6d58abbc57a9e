//! `pulsar send`: types text into a session, as if at its keyboard, followed by Enter.
//!
//! The words are joined with spaces and sent as they are; `-e` interprets backslash escapes
//! (`\n`, `\t`, `\e`, `\x1b`, ...) the way `echo -e` does, for control keys. Enter is a
//! carriage return (what the Enter key sends; the session's terminal turns it into a newline
//! for line-reading programs); `-n` leaves it out. `--wait REGEX` then waits for the pattern
//! in what follows (the prompt, say), as `pulsar wait` does.

use pulsar_protocol::{Base64Data, PulsarApiClient as _};

use crate::daemon::Endpoint;
use crate::error::{Exit, Failure, Result};
use crate::resolve;
use crate::wait::Wait;

/// What `pulsar send` was asked to type.
#[derive(Debug, Clone, Default)]
pub struct Text {
    /// The words, joined with single spaces.
    pub words: Vec<String>,
    /// Interpret backslash escapes.
    pub escapes: bool,
    /// Do not press Enter afterwards.
    pub no_newline: bool,
}

impl Text {
    /// The bytes to send.
    pub fn bytes(&self) -> Result<Vec<u8>> {
        let joined = self.words.join(" ");
        let mut bytes = if self.escapes {
            unescape(&joined).map_err(Failure::usage)?
        } else {
            joined.into_bytes()
        };
        if !self.no_newline {
            bytes.push(b'\r');
        }
        Ok(bytes)
    }
}

/// `pulsar send TARGET TEXT...`; with `wait`, then waits for its pattern in the output that
/// follows the text (`send --wait`).
pub async fn run(
    endpoint: &Endpoint,
    target: &str,
    text: &Text,
    wait: Option<&Wait>,
) -> Result<Exit> {
    let bytes = text.bytes()?;
    if bytes.is_empty() && wait.is_none() {
        return Ok(Exit::Ok);
    }
    let client = endpoint.connect().await?;
    let session = resolve::session(&client, target).await?;
    // Output from here on counts, the echo of the text included.
    let since = session.output_offset;
    if !bytes.is_empty() {
        client
            .send_input(session.id, Base64Data::from(bytes), None)
            .await
            .map_err(|err| Failure::rpc(&format!("send to session {}", session.name), err))?;
    }
    match wait {
        Some(wait) => crate::wait::until(&client, &session, wait, Some(since)).await,
        None => Ok(Exit::Ok),
    }
}

/// Interprets `\\`, `\n`, `\r`, `\t`, `\e` (ESC), `\a`, `\b`, `\f`, `\v`, `\0` and `\xHH`.
pub fn unescape(text: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        let byte = match chars.next() {
            Some('\\') => b'\\',
            Some('n') => b'\n',
            Some('r') => b'\r',
            Some('t') => b'\t',
            Some('e' | 'E') => 0x1b,
            Some('a') => 0x07,
            Some('b') => 0x08,
            Some('f') => 0x0c,
            Some('v') => 0x0b,
            Some('0') => 0,
            Some('x') => {
                let hex: String = chars.clone().take(2).collect();
                let byte = (hex.len() == 2)
                    .then(|| u8::from_str_radix(&hex, 16).ok())
                    .flatten()
                    .ok_or_else(|| {
                        format!("\\x must be followed by two hex digits, got {hex:?}")
                    })?;
                chars.nth(1);
                byte
            }
            Some(other) => {
                return Err(format!(
                    "unknown escape \\{other} (known: \\\\ \\n \\r \\t \\e \\a \\b \\f \\v \\0 \\xHH)"
                ));
            }
            None => return Err("the text ends with a lone backslash".into()),
        };
        out.push(byte);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(words: &[&str], escapes: bool, no_newline: bool) -> Vec<u8> {
        Text {
            words: words.iter().map(|w| w.to_string()).collect(),
            escapes,
            no_newline,
        }
        .bytes()
        .unwrap()
    }

    #[test]
    fn words_are_joined_and_followed_by_enter() {
        assert_eq!(text(&["echo", "hi"], false, false), b"echo hi\r");
    }

    #[test]
    fn without_escapes_backslashes_are_sent_as_typed() {
        assert_eq!(text(&["printf 'a\\n'"], false, true), b"printf 'a\\n'");
    }

    #[test]
    fn escapes_are_interpreted_when_asked() {
        assert_eq!(
            text(&["a\\tb\\n\\e[A\\x03\\\\"], true, true),
            b"a\tb\n\x1b[A\x03\\"
        );
        assert_eq!(text(&["ä\\x41"], true, true), "äA".as_bytes());
    }

    #[test]
    fn bad_escapes_are_usage_errors_that_name_them() {
        assert!(unescape("\\q").unwrap_err().contains("\\q"));
        assert!(unescape("\\x4").unwrap_err().contains("hex"));
        assert!(unescape("\\xzz").unwrap_err().contains("hex"));
        assert!(unescape("end\\").unwrap_err().contains("backslash"));
    }
}
