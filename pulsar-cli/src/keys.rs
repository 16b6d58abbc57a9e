//! The detach key: one control character, written `^\`, `^]`, `C-a`, `ctrl-]` or `Ctrl+Q`.

use std::fmt;
use std::str::FromStr;

/// A control character that ends an attach instead of reaching the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DetachKey(u8);

impl DetachKey {
    /// `Ctrl-\`: rarely needed inside a session (it sends SIGQUIT), and what shpool and dtach
    /// use.
    pub const DEFAULT: DetachKey = DetachKey(0x1c);

    /// The byte the terminal sends for this key.
    pub fn byte(self) -> u8 {
        self.0
    }
}

impl Default for DetachKey {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl fmt::Display for DetachKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            0x7f => f.write_str("^?"),
            byte => write!(f, "^{}", char::from(byte + 0x40)),
        }
    }
}

impl FromStr for DetachKey {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || {
            format!(
                "invalid detach key {text:?}: use a control key such as ^\\, ^] or C-a \
                 (caret notation, C-x or ctrl-x)"
            )
        };
        // A literal control character (e.g. typed with Ctrl-V in a shell).
        if let [byte @ (0x00..=0x1f | 0x7f)] = text.as_bytes() {
            return Ok(Self(*byte));
        }
        let lower = text.to_ascii_lowercase();
        let key = ["^", "c-", "ctrl-", "ctrl+", "control-"]
            .iter()
            .find_map(|prefix| lower.strip_prefix(prefix))
            .ok_or_else(invalid)?;
        match key.as_bytes() {
            [b'?'] => Ok(Self(0x7f)),
            [c @ b'a'..=b'z'] => Ok(Self(c - b'a' + 1)),
            [c @ (b'@' | b'[' | b'\\' | b']' | b'^' | b'_')] => Ok(Self(c - 0x40)),
            [b' ' | b'2'] => Ok(Self(0)),
            _ => Err(invalid()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caret_notation_is_parsed() {
        assert_eq!("^\\".parse::<DetachKey>().unwrap().byte(), 0x1c);
        assert_eq!("^]".parse::<DetachKey>().unwrap().byte(), 0x1d);
        assert_eq!("^A".parse::<DetachKey>().unwrap().byte(), 0x01);
        assert_eq!("^?".parse::<DetachKey>().unwrap().byte(), 0x7f);
    }

    #[test]
    fn ctrl_prefixes_are_parsed() {
        assert_eq!("C-a".parse::<DetachKey>().unwrap().byte(), 0x01);
        assert_eq!("ctrl-]".parse::<DetachKey>().unwrap().byte(), 0x1d);
        assert_eq!("Ctrl+Q".parse::<DetachKey>().unwrap().byte(), 0x11);
    }

    #[test]
    fn a_literal_control_character_is_accepted() {
        assert_eq!("\x1d".parse::<DetachKey>().unwrap().byte(), 0x1d);
    }

    #[test]
    fn printable_keys_are_refused() {
        for text in ["a", "^", "^1", "ctrl-ab", "", "alt-x"] {
            let err = text.parse::<DetachKey>().unwrap_err();
            assert!(err.contains("detach key"), "{text:?}: {err}");
        }
    }

    #[test]
    fn keys_display_in_caret_notation() {
        assert_eq!(DetachKey::DEFAULT.to_string(), "^\\");
        assert_eq!("c-]".parse::<DetachKey>().unwrap().to_string(), "^]");
    }
}
