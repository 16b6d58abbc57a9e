//! One behaviour per test, named after it: what each control function does to the screen.
//! The expected results are xterm's (ctlseqs), or tmux's where xterm's documents are silent.

use pulsar_term::{Color, MouseEncoding, MouseMode, Screen, Style};

fn screen(cols: u16, rows: u16, bytes: &[u8]) -> Screen {
    let mut s = Screen::new(cols, rows);
    s.feed(bytes);
    s
}

fn rows(s: &Screen) -> Vec<String> {
    s.render(false).rows
}

fn row(s: &Screen, y: usize) -> String {
    rows(s)[y].clone()
}

fn cursor(s: &Screen) -> (u16, u16) {
    s.cursor_position()
}

#[test]
fn text_is_written_at_the_cursor() {
    let s = screen(10, 3, b"hello");
    assert_eq!(row(&s, 0), "hello");
    assert_eq!(cursor(&s), (0, 5));
}

#[test]
fn cr_lf_starts_a_new_line() {
    let s = screen(10, 3, b"ab\r\ncd");
    assert_eq!(rows(&s), ["ab", "cd", ""]);
}

#[test]
fn lf_keeps_the_column() {
    let s = screen(10, 3, b"ab\ncd");
    assert_eq!(rows(&s), ["ab", "  cd", ""]);
}

#[test]
fn writing_the_last_column_leaves_a_pending_wrap() {
    let s = screen(5, 3, b"abcde");
    assert_eq!(cursor(&s), (0, 4));
    assert!(s.pending_wrap());
    let s = screen(5, 3, b"abcdef");
    assert_eq!(rows(&s), ["abcde", "f", ""]);
}

#[test]
fn carriage_return_cancels_a_pending_wrap() {
    let s = screen(5, 3, b"abcde\rX");
    assert_eq!(rows(&s), ["Xbcde", "", ""]);
}

#[test]
fn text_past_the_bottom_scrolls_the_screen() {
    let s = screen(3, 2, b"aaabbbccc");
    assert_eq!(rows(&s), ["bbb", "ccc"]);
}

#[test]
fn without_autowrap_the_last_column_is_overwritten() {
    let s = screen(5, 2, b"\x1b[?7labcdefgh");
    assert_eq!(rows(&s), ["abcdh", ""]);
    assert_eq!(cursor(&s), (0, 4));
}

#[test]
fn nel_moves_to_the_start_of_the_next_line() {
    let s = screen(10, 3, b"ab\x1bEcd");
    assert_eq!(rows(&s), ["ab", "cd", ""]);
}

#[test]
fn ind_moves_down_keeping_the_column() {
    let s = screen(10, 3, b"ab\x1bDcd");
    assert_eq!(rows(&s), ["ab", "  cd", ""]);
}

#[test]
fn ind_at_the_bottom_margin_scrolls_the_region() {
    let s = screen(5, 4, b"1\r\n2\r\n3\r\n4\x1b[2;3r\x1b[3;1H\x1bDx");
    assert_eq!(rows(&s), ["1", "3", "x", "4"]);
}

#[test]
fn ri_at_the_top_margin_scrolls_the_region_down() {
    let s = screen(5, 4, b"1\r\n2\r\n3\r\n4\x1b[2;3r\x1b[2;1H\x1bMx");
    assert_eq!(rows(&s), ["1", "x", "2", "4"]);
}

#[test]
fn ri_above_the_top_margin_moves_up() {
    let s = screen(5, 4, b"\x1b[3;4r\x1b[2;1H\x1bMx");
    assert_eq!(rows(&s), ["x", "", "", ""]);
}

#[test]
fn decstbm_homes_the_cursor() {
    let s = screen(10, 4, b"abc\x1b[2;3r");
    assert_eq!(cursor(&s), (0, 0));
}

#[test]
fn decstbm_with_an_empty_region_is_ignored() {
    let s = screen(10, 4, b"abc\x1b[3;3rX");
    assert_eq!(row(&s, 0), "abcX");
}

#[test]
fn origin_mode_counts_rows_from_the_top_margin() {
    let s = screen(10, 5, b"\x1b[2;4r\x1b[?6h\x1b[2;3HX");
    assert_eq!(rows(&s), ["", "", "  X", "", ""]);
}

#[test]
fn origin_mode_keeps_the_cursor_in_the_region() {
    let s = screen(10, 5, b"\x1b[2;3r\x1b[?6h\x1b[9;1HX");
    assert_eq!(rows(&s), ["", "", "X", "", ""]);
}

#[test]
fn cursor_up_stops_at_the_top_margin() {
    let s = screen(10, 5, b"\x1b[3;5r\x1b[5;1H\x1b[9AX");
    assert_eq!(cursor(&s), (2, 1));
}

#[test]
fn cup_and_hvp_are_one_based() {
    let s = screen(10, 5, b"\x1b[2;3HX\x1b[4;5fY");
    assert_eq!(rows(&s), ["", "  X", "", "    Y", ""]);
}

#[test]
fn relative_moves_clamp_at_the_edges() {
    let s = screen(10, 5, b"\x1b[99B\x1b[99C\x1b[2DX\x1b[99A\x1b[99DY");
    assert_eq!(rows(&s), ["Y", "", "", "", "       X"]);
}

#[test]
fn cnl_and_cpl_go_to_column_zero() {
    let s = screen(10, 5, b"abc\x1b[2EX\x1b[1FY");
    assert_eq!(rows(&s), ["abc", "Y", "X", "", ""]);
}

#[test]
fn cha_hpa_and_vpa_set_one_coordinate() {
    let s = screen(10, 5, b"\x1b[3;3H\x1b[6GX\x1b[2`Y\x1b[5dZ");
    assert_eq!(rows(&s), ["", "", " Y   X", "", "  Z"]);
}

#[test]
fn ed_0_erases_from_the_cursor_to_the_end() {
    let s = screen(5, 3, b"aaaaa\r\nbbbbb\r\nccccc\x1b[2;3H\x1b[J");
    assert_eq!(rows(&s), ["aaaaa", "bb", ""]);
}

#[test]
fn ed_1_erases_from_the_start_to_the_cursor() {
    let s = screen(5, 3, b"aaaaa\r\nbbbbb\r\nccccc\x1b[2;3H\x1b[1J");
    assert_eq!(rows(&s), ["", "   bb", "ccccc"]);
}

#[test]
fn ed_2_erases_everything_and_keeps_the_cursor() {
    let s = screen(5, 3, b"aaaaa\r\nbb\x1b[2J");
    assert_eq!(rows(&s), ["", "", ""]);
    assert_eq!(cursor(&s), (1, 2));
}

#[test]
fn ed_3_clears_the_scrollback() {
    let mut s = Screen::with_scrollback(5, 2, 10);
    s.feed(b"1\r\n2\r\n3\r\n");
    assert_eq!(s.scrollback_len(), 2);
    s.feed(b"\x1b[3J");
    assert_eq!(s.scrollback_len(), 0);
}

#[test]
fn el_erases_right_left_or_all_of_the_line() {
    assert_eq!(row(&screen(5, 1, b"abcde\x1b[3G\x1b[K"), 0), "ab");
    assert_eq!(row(&screen(5, 1, b"abcde\x1b[3G\x1b[1K"), 0), "   de");
    assert_eq!(row(&screen(5, 1, b"abcde\x1b[3G\x1b[2K"), 0), "");
}

#[test]
fn erase_fills_with_the_current_background() {
    let s = screen(5, 1, b"\x1b[41m\x1b[K");
    let ansi = s.render(true).rows[0].clone();
    assert_eq!(ansi, "\x1b[41m     \x1b[0m");
}

#[test]
fn ech_erases_without_moving_text() {
    let s = screen(6, 1, b"abcdef\x1b[2G\x1b[2X");
    assert_eq!(row(&s, 0), "a  def");
}

#[test]
fn ich_inserts_blanks_and_pushes_text_off_the_margin() {
    let s = screen(6, 1, b"abcdef\x1b[2G\x1b[2@");
    assert_eq!(row(&s, 0), "a  bcd");
}

#[test]
fn dch_deletes_and_pulls_text_left() {
    let s = screen(6, 1, b"abcdef\x1b[2G\x1b[2P");
    assert_eq!(row(&s, 0), "adef");
}

#[test]
fn il_inserts_lines_inside_the_region_only() {
    let s = screen(3, 4, b"1\r\n2\r\n3\r\n4\x1b[1;3r\x1b[2;1H\x1b[L");
    assert_eq!(rows(&s), ["1", "", "2", "4"]);
}

#[test]
fn dl_deletes_lines_inside_the_region_only() {
    let s = screen(3, 4, b"1\r\n2\r\n3\r\n4\x1b[1;3r\x1b[1;1H\x1b[M");
    assert_eq!(rows(&s), ["2", "3", "", "4"]);
}

#[test]
fn il_outside_the_region_does_nothing() {
    let s = screen(3, 4, b"1\r\n2\r\n3\r\n4\x1b[1;2r\x1b[4;1H\x1b[L");
    assert_eq!(rows(&s), ["1", "2", "3", "4"]);
}

#[test]
fn su_and_sd_scroll_the_region() {
    let s = screen(3, 3, b"1\r\n2\r\n3\x1b[S");
    assert_eq!(rows(&s), ["2", "3", ""]);
    let s = screen(3, 3, b"1\r\n2\r\n3\x1b[T");
    assert_eq!(rows(&s), ["", "1", "2"]);
}

#[test]
fn rep_repeats_the_last_character() {
    let s = screen(10, 1, b"ab\x1b[3b");
    assert_eq!(row(&s, 0), "abbbb");
}

#[test]
fn rep_after_a_control_repeats_nothing() {
    let s = screen(10, 1, b"ab\r\x1b[3b");
    assert_eq!(row(&s, 0), "ab");
}

#[test]
fn tabs_stop_every_eight_columns_by_default() {
    let s = screen(20, 1, b"a\tb\tc\td");
    assert_eq!(row(&s, 0), "a       b       c  d");
}

#[test]
fn hts_and_tbc_set_and_clear_stops() {
    let s = screen(20, 1, b"\x1b[3g\x1b[4G\x1bH\r\tX");
    assert_eq!(row(&s, 0), "   X");
    let s = screen(20, 1, b"\x1b[9G\x1b[g\r\tX");
    assert_eq!(row(&s, 0), "                X");
}

#[test]
fn cht_and_cbt_move_by_stops() {
    let s = screen(30, 1, b"\x1b[2IX\x1b[2ZY");
    assert_eq!(row(&s, 0), "        Y       X");
}

#[test]
fn dec_special_graphics_draws_lines() {
    let s = screen(10, 1, b"\x1b(0lqk\x1b(Bx");
    assert_eq!(row(&s, 0), "┌─┐x");
}

#[test]
fn shift_out_selects_g1() {
    let s = screen(10, 1, b"\x1b)0a\x0eq\x0fq");
    assert_eq!(row(&s, 0), "a─q");
}

#[test]
fn decsc_and_decrc_restore_position_pen_and_charsets() {
    let s = screen(
        10,
        2,
        b"\x1b[2;3H\x1b[31m\x1b(0\x1b7\x1b[m\x1b(B\x1b[H\x1b8q",
    );
    assert_eq!(row(&s, 1), "  ─");
    assert_eq!(s.render(true).rows[1], "  \x1b[31m─\x1b[0m");
}

#[test]
fn csi_s_and_u_save_and_restore_the_cursor() {
    let s = screen(10, 2, b"\x1b[2;3H\x1b[s\x1b[H\x1b[uX");
    assert_eq!(row(&s, 1), "  X");
}

#[test]
fn alternate_screen_1049_saves_the_cursor_and_restores_the_main_screen() {
    let mut s = screen(10, 3, b"main\x1b[?1049h\x1b[Hfull");
    assert!(s.alternate_screen());
    assert_eq!(row(&s, 0), "full");
    s.feed(b"\x1b[?1049l");
    assert!(!s.alternate_screen());
    assert_eq!(row(&s, 0), "main");
    assert_eq!(cursor(&s), (0, 4));
}

#[test]
fn alternate_screen_starts_blank() {
    let s = screen(10, 3, b"main\x1b[?47h");
    assert_eq!(rows(&s), ["", "", ""]);
    assert_eq!(cursor(&s), (0, 4));
}

#[test]
fn wide_characters_take_two_columns() {
    let s = screen(10, 1, "中a".as_bytes());
    assert_eq!(row(&s, 0), "中a");
    assert_eq!(cursor(&s), (0, 3));
}

#[test]
fn a_wide_character_at_the_right_margin_wraps_to_the_next_line() {
    let s = screen(5, 2, "abcd中".as_bytes());
    assert_eq!(rows(&s), ["abcd", "中"]);
    assert_eq!(cursor(&s), (1, 2));
}

#[test]
fn overwriting_half_a_wide_character_blanks_the_other_half() {
    let s = screen(5, 1, "中文\x1b[2Gx".as_bytes());
    assert_eq!(row(&s, 0), " x文");
}

#[test]
fn combining_marks_join_the_previous_character() {
    let s = screen(5, 1, "e\u{301}x".as_bytes());
    assert_eq!(row(&s, 0), "e\u{301}x");
    assert_eq!(cursor(&s), (0, 2));
}

#[test]
fn invalid_utf8_shows_a_replacement_character() {
    let s = screen(5, 1, b"a\xffb\xe4c");
    assert_eq!(row(&s, 0), "a\u{fffd}b\u{fffd}c");
}

#[test]
fn utf8_split_across_feeds_is_one_character() {
    let mut s = Screen::new(5, 1);
    s.feed(b"\xe4\xb8");
    s.feed(b"\xad!");
    assert_eq!(row(&s, 0), "中!");
}

#[test]
fn sgr_sets_attributes_and_colours() {
    let s = screen(
        10,
        1,
        b"\x1b[1;3;4;7;31;42ma\x1b[38;5;200;48;2;1;2;3mb\x1b[0mc",
    );
    let r = s.render(true).rows[0].clone();
    assert_eq!(
        r,
        "\x1b[1;3;4;7;31;42ma\x1b[0;1;3;4;7;38;5;200;48;2;1;2;3mb\x1b[0mc"
    );
}

#[test]
fn sgr_colon_forms_are_understood() {
    let mut a = screen(10, 1, b"\x1b[38:2::10:20:30mx");
    let b = screen(10, 1, b"\x1b[38;2;10;20;30mx");
    assert_eq!(a.render(true), b.render(true));
    a.feed(b"\x1b[4:0my");
    assert!(!a.render(true).rows[0].ends_with("\x1b[0;4my"));
    let _ = (Color::Default, Style::default());
}

#[test]
fn input_modes_are_tracked() {
    let s = screen(
        10,
        1,
        b"\x1b[?1h\x1b=\x1b[?2004h\x1b[?1002h\x1b[?1006h\x1b[?1004h\x1b[?25l\x1b[4 q",
    );
    let m = s.modes();
    assert!(m.cursor_keys_application && m.keypad_application && m.bracketed_paste);
    assert!(m.focus_reporting && !m.cursor_visible);
    assert_eq!(m.mouse, MouseMode::ButtonMotion);
    assert_eq!(m.mouse_encoding, MouseEncoding::Sgr);
    assert_eq!(m.cursor_style, 4);
    let s = screen(10, 1, b"\x1b[?1002h\x1b[?1000l\x1b>");
    assert_eq!(s.modes().mouse, MouseMode::None);
    assert!(!s.modes().keypad_application);
}

#[test]
fn osc_0_and_2_set_the_title_and_the_last_one_wins() {
    let s = screen(10, 1, b"\x1b]0;one\x07\x1b]2;two\x1b\\x");
    assert_eq!(s.title(), "two");
    assert_eq!(row(&s, 0), "x");
}

#[test]
fn ris_resets_everything_but_the_title() {
    let s = screen(10, 2, b"\x1b]2;t\x07abc\x1b[?1h\x1b[2;2r\x1bc");
    assert_eq!(rows(&s), ["", ""]);
    assert!(!s.modes().cursor_keys_application);
    assert_eq!(s.title(), "t");
}

#[test]
fn decstr_resets_modes_but_keeps_the_screen() {
    let s = screen(10, 2, b"abc\x1b[?6h\x1b[4h\x1b[?25l\x1b[!pX");
    assert_eq!(row(&s, 0), "Xbc");
    assert!(s.modes().cursor_visible);
}

#[test]
fn insert_mode_pushes_text_right() {
    let s = screen(6, 1, b"abc\r\x1b[4hXY");
    assert_eq!(row(&s, 0), "XYabc");
}

#[test]
fn decaln_fills_the_screen_with_e() {
    let s = screen(3, 2, b"\x1b#8");
    assert_eq!(rows(&s), ["EEE", "EEE"]);
}

#[test]
fn sequences_split_across_feeds_still_apply() {
    let mut s = Screen::new(10, 3);
    for b in b"\x1b[2;3Hx\x1b]2;ti\x07" {
        s.feed(&[*b]);
    }
    assert_eq!(row(&s, 1), "  x");
    assert_eq!(s.title(), "ti");
}

#[test]
fn can_aborts_a_sequence() {
    let s = screen(10, 1, b"\x1b[3\x18Cx");
    assert_eq!(row(&s, 0), "Cx");
}

#[test]
fn c0_controls_inside_a_csi_are_executed() {
    let s = screen(10, 2, b"ab\x1b[\r2Cx");
    assert_eq!(row(&s, 0), "abx");
}

#[test]
fn resize_keeps_content_without_reflow() {
    let mut s = screen(6, 3, b"abcdef\r\n12");
    s.resize(4, 3);
    assert_eq!(rows(&s), ["abcd", "12", ""]);
    s.resize(8, 4);
    assert_eq!(rows(&s), ["abcd", "12", "", ""]);
}

#[test]
fn shrinking_rows_drops_blank_rows_below_the_cursor_first() {
    let mut s = screen(4, 4, b"a\r\nb");
    s.resize(4, 2);
    assert_eq!(rows(&s), ["a", "b"]);
    let mut s = screen(4, 3, b"a\r\nb\r\nc");
    s.resize(4, 2);
    assert_eq!(rows(&s), ["b", "c"]);
    assert_eq!(cursor(&s), (1, 1));
}

#[test]
fn scrollback_keeps_rows_that_leave_the_top() {
    let mut s = Screen::with_scrollback(4, 2, 2);
    s.feed(b"1\r\n2\r\n3\r\n4");
    assert_eq!(s.scrollback_len(), 2);
    let h = String::from_utf8(s.history_formatted()).unwrap();
    assert_eq!(h, "\x1b[0m1\x1b[0m\r\n2\x1b[0m\r\n");
}

#[test]
fn history_returns_the_rows_that_scrolled_off_oldest_first() {
    let raw: Vec<u8> = (0..10)
        .flat_map(|i| format!("line{i}\r\n").into_bytes())
        .collect();
    let text = String::from_utf8(pulsar_term::history(&raw, 20, 3, 100)).unwrap();
    let plain: Vec<&str> = text
        .split("\r\n")
        .map(|l| l.trim_start_matches("\x1b[0m").trim_end_matches("\x1b[0m"))
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(
        plain,
        (0..8).map(|i| format!("line{i}")).collect::<Vec<_>>()
    );
}

#[test]
fn an_idle_shell_screen_costs_about_a_kilobyte() {
    let mut s = Screen::new(80, 24);
    s.feed(
        b"\x1b[H\x1b[2J\x1b]0;user@host: ~\x07\x1b[01;32muser@host\x1b[00m:\x1b[01;34m~\x1b[00m$ ",
    );
    assert!(s.heap_bytes() <= 1024, "{} bytes", s.heap_bytes());
}

#[test]
fn memory_stays_bounded_under_endless_non_ascii_rewrites() {
    let mut s = Screen::new(10, 2);
    for _ in 0..10_000 {
        s.feed("\r中é\u{301}\x1b[38;2;1;2;3mx\x1b[mab".as_bytes());
    }
    assert!(s.heap_bytes() < 4096, "{} bytes", s.heap_bytes());
}

#[test]
fn narrowing_a_screen_of_combining_marks_releases_their_cells() {
    let mut s = Screen::new(120, 39);
    // Every column an extended cell (a base with combining marks), every row.
    let row = "e\u{301}\u{302}".repeat(120);
    for _ in 0..39 {
        s.feed(format!("{row}\r\n").as_bytes());
    }
    s.resize(1, 39);
    assert!(
        s.heap_bytes() <= s.heap_bound(),
        "{} bytes over the 1x39 bound {}",
        s.heap_bytes(),
        s.heap_bound()
    );
}

#[test]
fn decrc_without_a_save_homes_the_cursor() {
    let s = screen(10, 3, b"ab\x1b[3;4H\x1b8X");
    assert_eq!(row(&s, 0), "Xb");
}

#[test]
fn leaving_1049_outside_the_alternate_screen_restores_the_cursor_as_decrc() {
    let s = screen(10, 3, b"ab\x1b[2;3H\x1b[?1049lX");
    assert_eq!(rows(&s), ["Xb", "", ""]);
}

#[test]
fn cub_from_a_pending_wrap_counts_from_the_last_column() {
    let s = screen(5, 2, b"abcde\x1b[2DX");
    assert_eq!(row(&s, 0), "abXde");
}

#[test]
fn bs_at_a_pending_wrap_moves_left_of_the_last_column() {
    let s = screen(5, 2, b"abcde\x08X");
    assert_eq!(row(&s, 0), "abcXe");
}

#[test]
fn lf_cancels_a_pending_wrap() {
    let s = screen(5, 3, b"abcde\nX");
    assert_eq!(rows(&s), ["abcde", "    X", ""]);
}

#[test]
fn el_at_a_pending_wrap_erases_the_last_column() {
    let s = screen(5, 2, b"abcde\x1b[K");
    assert_eq!(rows(&s), ["abcd", ""]);
    assert!(!s.pending_wrap());
}

#[test]
fn ich_at_a_pending_wrap_acts_on_the_last_column() {
    let s = screen(5, 2, b"abcde\x1b[@");
    assert_eq!(row(&s, 0), "abcd");
}

#[test]
fn ht_and_sgr_keep_a_pending_wrap() {
    let s = screen(5, 2, b"abcde\t\x1b[1mX");
    assert_eq!(rows(&s), ["abcde", "X"]);
}

#[test]
fn decsc_and_decrc_keep_a_pending_wrap() {
    let s = screen(5, 3, b"abcde\x1b7\r\n\x1b8X");
    assert_eq!(rows(&s), ["abcde", "X", ""]);
}

#[test]
fn a_second_1049_inside_the_alternate_screen_clears_it() {
    let s = screen(10, 2, b"\x1b[?1049hAAA\x1b[?1049hB");
    assert_eq!(row(&s, 0), "   B");
    let s = screen(10, 2, b"\x1b[?1049hAAA\x1b[?1047hB");
    assert_eq!(row(&s, 0), "AAAB");
}

#[test]
fn a_combining_mark_after_a_blank_goes_on_the_blank() {
    let s = screen(10, 1, "ab\x1b[5C\u{301}X".as_bytes());
    assert_eq!(row(&s, 0), "ab     \u{301}X");
}

#[test]
fn a_screen_can_move_between_threads() {
    fn send<T: Send + Sync>() {}
    send::<Screen>();
    send::<pulsar_term::Hibernated>();
}

#[test]
fn redraw_of_an_alternate_screen_gives_the_client_its_main_screen_back_on_exit() {
    let s = screen(10, 3, b"shell$ vim\r\n\x1b[?1049h\x1b[H~\r\n~\x1b[2;2H");
    let mut client = Screen::new(10, 3);
    client.feed(b"junk on the client");
    client.feed(&s.redraw());
    assert!(client.alternate_screen());
    assert_eq!(rows(&client), ["~", "~", ""]);
    assert_eq!(cursor(&client), (1, 1));
    client.feed(b"\x1b[?1049l");
    assert_eq!(rows(&client), ["shell$ vim", "", ""]);
    assert_eq!(cursor(&client), (1, 0));
}

#[test]
fn hibernated_size_is_small_for_an_idle_shell() {
    let s = screen(
        80,
        24,
        b"\x1b[01;32muser@host\x1b[00m:\x1b[01;34m~\x1b[00m$ ",
    );
    let sleeping = s.hibernate();
    assert!(sleeping.len() < 128, "{} bytes", sleeping.len());
    assert_eq!(sleeping.wake().render(false).rows[0], "user@host:~$");
}
