//! The screen model: Pulsar's own emulator (`pulsar-term`) fed every output byte, so that
//! attaching redraws the current screen exactly (as tmux and shpool do) instead of replaying
//! raw history. Lines are allocated as they are written (an idle shell's screen is a few
//! hundred bytes), runs of text are written whole, and the redraw rebuilds both screens, the
//! modes and the pen on a blank terminal.

pub use pulsar_term::{Rendered, Screen, history};

#[cfg(test)]
mod tests {
    use super::*;

    /// Switches a terminal to the alternate screen (xterm's mode 1049).
    const ENTER_ALTERNATE_SCREEN: &str = "\x1b[?1049h";

    #[test]
    fn redraw_reproduces_text_and_cursor_in_a_fresh_model() {
        let mut screen = Screen::new(20, 5);
        screen.feed(b"hello\r\n\x1b[31mred\x1b[0m world\x1b[2;3H");
        let mut copy = Screen::new(20, 5);
        copy.feed(&screen.redraw());
        assert_eq!(copy.render(true), screen.render(true));
        assert_eq!(screen.render(false).rows[0], "hello");
        assert_eq!(screen.render(false).cursor, (1, 2));
    }

    #[test]
    fn redraw_enters_the_alternate_screen_when_the_program_did() {
        let mut screen = Screen::new(10, 3);
        screen.feed(b"\x1b[?1049h\x1b[Hfull");
        let redraw = String::from_utf8(screen.redraw()).unwrap();
        assert!(redraw.contains(ENTER_ALTERNATE_SCREEN), "{redraw:?}");
        assert!(screen.render(false).alternate_screen);
    }

    #[test]
    fn history_returns_the_rows_that_scrolled_off_oldest_first() {
        let raw: Vec<u8> = (0..10)
            .flat_map(|i| format!("line{i}\r\n").into_bytes())
            .collect();
        let text = String::from_utf8(history(&raw, 20, 3, 100)).unwrap();
        let plain: Vec<&str> = text
            .split("\r\n")
            .map(|l| l.trim_start_matches("\x1b[0m").trim_end_matches("\x1b[0m"))
            .filter(|l| !l.is_empty())
            .map(str::trim_end)
            .collect();
        // 10 lines plus the cursor's empty line on a 3-row screen: 8 scrolled off.
        assert_eq!(
            plain,
            (0..8).map(|i| format!("line{i}")).collect::<Vec<_>>()
        );
    }

    #[test]
    fn history_is_capped_at_the_lines_asked_for() {
        let raw: Vec<u8> = (0..50)
            .flat_map(|i| format!("l{i}\r\n").into_bytes())
            .collect();
        let text = String::from_utf8(history(&raw, 10, 2, 5)).unwrap();
        assert_eq!(text.matches("\r\n").count(), 5);
        assert!(text.contains("l48") || text.contains("l47"), "{text:?}");
    }
}
