//! What the daemon's `terminal/screen.rs` relies on, as its own tests state it today with
//! vt100: the same tests against this crate, so that the swap is a one-file change.

use pulsar_term::{Screen, history};

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
    // Not first any more: the main screen is drawn before it (see the README).
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

#[test]
fn the_snapshot_sequence_history_newlines_redraw_shows_the_screen() {
    // What Session::snapshot sends a client: history, `rows` newlines, then the redraw.
    let raw: Vec<u8> = (0..30)
        .flat_map(|i| format!("l{i}\r\n").into_bytes())
        .collect();
    let mut screen = Screen::new(10, 4);
    screen.feed(&raw);
    let mut data = history(&raw, 10, 4, 100);
    data.extend(std::iter::repeat_n(b'\n', 4));
    data.extend(screen.redraw());
    let mut client = Screen::with_scrollback(10, 4, 100);
    client.feed(b"$ pulsar attach\r\n");
    client.feed(&data);
    assert_eq!(client.render(false), screen.render(false));
    assert!(client.scrollback_len() >= 27, "{}", client.scrollback_len());
}

#[test]
fn ansi_rows_use_the_sgr_form_programs_write() {
    // tests/tests/screen.rs looks for `ESC [33m` in get_screen's ANSI rows.
    let mut screen = Screen::new(20, 4);
    screen.feed(b"top line\r\n\x1b[33myellow\x1b[0m");
    let ansi = screen.render(true);
    assert!(ansi.rows[1].contains("\x1b[33m"), "{:?}", ansi.rows[1]);
    assert_eq!(screen.render(false).rows[..2], ["top line", "yellow"]);
}

#[test]
fn a_redraw_clears_the_alternate_screen_for_clients_without_one() {
    let mut screen = Screen::new(10, 3);
    screen.feed(b"main\x1b[?1049h\x1b[Halt");
    let redraw = String::from_utf8(screen.redraw()).unwrap();
    let alt = redraw.find("\x1b[?1049h").unwrap();
    assert!(
        redraw[alt..].starts_with("\x1b[?1049h\x1b[H\x1b[2J"),
        "{redraw:?}"
    );
}
