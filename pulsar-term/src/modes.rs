//! Terminal modes a program sets and a client terminal must be told about on attach:
//! input modes (cursor keys, keypad, bracketed paste, mouse, focus) and cursor appearance.

/// Which mouse events the program asked for (DECSET 9, 1000, 1002, 1003).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Hash)]
pub enum MouseMode {
    /// No mouse reporting.
    #[default]
    None,
    /// X10 compatibility: presses only (9).
    Press,
    /// Presses and releases (1000).
    PressRelease,
    /// Plus motion while a button is down (1002).
    ButtonMotion,
    /// Plus all motion (1003).
    AnyMotion,
}

impl MouseMode {
    pub(crate) fn from_mode(n: u16) -> Option<MouseMode> {
        Some(match n {
            9 => MouseMode::Press,
            1000 => MouseMode::PressRelease,
            1002 => MouseMode::ButtonMotion,
            1003 => MouseMode::AnyMotion,
            _ => return None,
        })
    }

    pub(crate) fn mode(self) -> Option<u16> {
        Some(match self {
            MouseMode::None => return None,
            MouseMode::Press => 9,
            MouseMode::PressRelease => 1000,
            MouseMode::ButtonMotion => 1002,
            MouseMode::AnyMotion => 1003,
        })
    }
}

/// How mouse reports are encoded (DECSET 1005, 1006, 1015).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Hash)]
pub enum MouseEncoding {
    /// The original X10 bytes.
    #[default]
    Default,
    /// UTF-8 coordinates (1005).
    Utf8,
    /// SGR: `CSI < b ; x ; y M` (1006).
    Sgr,
    /// urxvt: `CSI b ; x ; y M` (1015).
    Urxvt,
}

impl MouseEncoding {
    pub(crate) fn from_mode(n: u16) -> Option<MouseEncoding> {
        Some(match n {
            1005 => MouseEncoding::Utf8,
            1006 => MouseEncoding::Sgr,
            1015 => MouseEncoding::Urxvt,
            _ => return None,
        })
    }

    pub(crate) fn mode(self) -> Option<u16> {
        Some(match self {
            MouseEncoding::Default => return None,
            MouseEncoding::Utf8 => 1005,
            MouseEncoding::Sgr => 1006,
            MouseEncoding::Urxvt => 1015,
        })
    }
}

/// The modes of a terminal, with xterm's defaults.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub struct Modes {
    /// DECOM: rows count from the top of the scroll region, and the cursor stays in it.
    pub origin: bool,
    /// DECAWM: printing past the last column wraps to the next line.
    pub autowrap: bool,
    /// IRM: printing inserts instead of replacing.
    pub insert: bool,
    /// DECCKM: cursor keys send application sequences (`ESC O A`).
    pub cursor_keys_application: bool,
    /// DECKPAM: the keypad sends application sequences.
    pub keypad_application: bool,
    /// 2004: pasted text is bracketed.
    pub bracketed_paste: bool,
    /// 1004: focus in/out is reported.
    pub focus_reporting: bool,
    /// DECTCEM (25): the cursor is shown.
    pub cursor_visible: bool,
    /// Mouse reporting.
    pub mouse: MouseMode,
    /// Mouse report encoding.
    pub mouse_encoding: MouseEncoding,
    /// DECSCUSR: 0 (the terminal's default) to 6.
    pub cursor_style: u8,
}

impl Default for Modes {
    fn default() -> Modes {
        Modes {
            origin: false,
            autowrap: true,
            insert: false,
            cursor_keys_application: false,
            keypad_application: false,
            bracketed_paste: false,
            focus_reporting: false,
            cursor_visible: true,
            mouse: MouseMode::None,
            mouse_encoding: MouseEncoding::Default,
            cursor_style: 0,
        }
    }
}

impl Modes {
    /// Appends the sequences that set the modes that do not move the cursor, from the
    /// defaults (origin mode is the serializer's business: setting it homes the cursor).
    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        let private = |out: &mut Vec<u8>, n: u16, on: bool| {
            out.extend_from_slice(b"\x1b[?");
            crate::style::push_num(out, n);
            out.push(if on { b'h' } else { b'l' });
        };
        if !self.autowrap {
            private(out, 7, false);
        }
        if self.cursor_keys_application {
            private(out, 1, true);
        }
        if self.bracketed_paste {
            private(out, 2004, true);
        }
        if self.focus_reporting {
            private(out, 1004, true);
        }
        if !self.cursor_visible {
            private(out, 25, false);
        }
        if let Some(n) = self.mouse.mode() {
            private(out, n, true);
        }
        if let Some(n) = self.mouse_encoding.mode() {
            private(out, n, true);
        }
        if self.insert {
            out.extend_from_slice(b"\x1b[4h");
        }
        if self.keypad_application {
            out.extend_from_slice(b"\x1b=");
        }
        if self.cursor_style != 0 {
            out.extend_from_slice(b"\x1b[");
            crate::style::push_num(out, u16::from(self.cursor_style));
            out.extend_from_slice(b" q");
        }
    }
}
