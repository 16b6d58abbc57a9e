//! Differential tests against tmux, which follows xterm: a stream is shown in a tmux pane of
//! the exact size, and tmux's screen (capture-pane, text with attributes and colours) and
//! cursor must equal ours.
//!
//! Each test runs its own tmux server on a private socket (`-L`), killed by a guard; tmux is
//! polled with a deadline (the stream ends with a title marker, and tmux handles bytes in
//! order, so once the pane has that title it has seen everything). Without tmux these tests
//! fail: install it (`apt-get install tmux`).

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{Mix, Rng, stream};
use pulsar_term::Screen;

const MIX: Mix = Mix {
    beyond_tmux: false,
    garbage: false,
};

/// A private tmux server, killed on drop.
struct Tmux {
    socket: String,
    file: PathBuf,
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

fn tmux_available() {
    match Command::new("tmux").arg("-V").output() {
        Ok(out) if out.status.success() => {}
        _ => panic!(
            "tmux is needed as the reference for these tests and was not found: \
             install it (apt-get install tmux)"
        ),
    }
}

impl Tmux {
    fn new(test: &str) -> Tmux {
        tmux_available();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let socket = format!("pulsar-term-{}-{test}-{n}", std::process::id());
        let file = std::env::temp_dir().join(format!("{socket}.bin"));
        Tmux { socket, file }
    }

    fn cmd(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("running tmux")
    }

    fn query(&self, format: &str) -> String {
        let out = self.cmd(&["display-message", "-p", format]);
        String::from_utf8_lossy(&out.stdout).trim_end().to_owned()
    }

    /// Shows `bytes` in a fresh `cols`×`rows` pane; returns tmux's rows and cursor (x, y),
    /// x being `cols` for a pending wrap.
    fn show(&self, cols: u16, rows: u16, bytes: &[u8]) -> (Vec<String>, (usize, usize)) {
        let marker = format!("done-{}", self.socket);
        let mut data = bytes.to_vec();
        data.extend_from_slice(format!("\x1b]2;{marker}\x07").as_bytes());
        std::fs::write(&self.file, &data).expect("writing the stream");
        let command = format!(
            "stty raw -echo -opost; cat '{}'; exec sleep 600",
            self.file.display()
        );
        let out = self.cmd(&[
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-x",
            &cols.to_string(),
            "-y",
            &rows.to_string(),
            &command,
        ]);
        assert!(out.status.success(), "tmux new-session: {out:?}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.query("#{pane_title}") != marker {
            assert!(
                Instant::now() < deadline,
                "tmux did not show the stream in time"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let size = self.query("#{pane_width}x#{pane_height}");
        assert_eq!(size, format!("{cols}x{rows}"), "tmux pane size");
        let capture = self.cmd(&["capture-pane", "-p", "-e"]);
        let text = String::from_utf8_lossy(&capture.stdout).into_owned();
        let rows_text = plain(&text, cols, rows);
        if std::env::var_os("TMUX_RAW").is_some() {
            eprintln!("raw capture: {text:?}");
        }
        let cursor = self.query("#{cursor_x} #{cursor_y}");
        let (x, y) = cursor.split_once(' ').expect("cursor x y");
        self.cmd(&["kill-server"]);
        (rows_text, (x.parse().unwrap(), y.parse().unwrap()))
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]);
        let _ = std::fs::remove_file(&self.file);
    }
}

/// A capture as plain rows. tmux marks DEC special graphics with SO/SI around the ASCII
/// byte (the shift state carries over lines) and styles with SGR: replayed into our model,
/// with G1 set to DEC graphics.
fn plain(capture: &str, cols: u16, rows: u16) -> Vec<String> {
    let mut s = Screen::new(cols, rows);
    s.feed(b"\x1b)0");
    for (i, line) in capture.lines().enumerate() {
        if i > 0 {
            s.feed(b"\r\n");
        }
        s.feed(line.as_bytes());
    }
    s.render(true).rows.iter().map(|r| trim_styled(r)).collect()
}

/// A styled row without its trailing spaces (whatever their style: capture-pane drops them)
/// and the SGR sequences around them.
fn trim_styled(row: &str) -> String {
    let mut s = row.to_owned();
    loop {
        if s.ends_with(' ') {
            s.pop();
        } else if s.ends_with('m')
            && let Some(i) = s.rfind("\x1b[")
            && s[i + 2..s.len() - 1]
                .bytes()
                .all(|b| b.is_ascii_digit() || b == b';')
        {
            s.truncate(i);
        } else {
            break;
        }
    }
    s
}

/// Our rows and cursor for the same stream.
fn ours(cols: u16, rows: u16, bytes: &[u8]) -> (Vec<String>, (usize, usize)) {
    let mut s = Screen::new(cols, rows);
    s.feed(bytes);
    let (y, x) = s.cursor_position();
    let x = if s.pending_wrap() { cols } else { x };
    let rows = s.render(true).rows.iter().map(|r| trim_styled(r)).collect();
    (rows, (usize::from(x), usize::from(y)))
}

fn compare(test: &str, cols: u16, rows: u16, bytes: &[u8]) -> Result<(), String> {
    let tmux = Tmux::new(test);
    let theirs = tmux.show(cols, rows, bytes);
    let mine = ours(cols, rows, bytes);
    if theirs == mine {
        return Ok(());
    }
    let mut report = format!(
        "{test}: {cols}x{rows} stream {:?}\n",
        String::from_utf8_lossy(bytes)
    );
    for (i, (t, m)) in theirs.0.iter().zip(&mine.0).enumerate() {
        let mark = if t == m { ' ' } else { '!' };
        report.push_str(&format!("{mark} {i:2} tmux {t:?}\n{mark}    ours {m:?}\n"));
    }
    report.push_str(&format!(
        "cursor (x, y): tmux {:?} ours {:?}\n",
        theirs.1, mine.1
    ));
    Err(report)
}

fn assert_like_tmux(test: &str, cols: u16, rows: u16, bytes: &[u8]) {
    if let Err(report) = compare(test, cols, rows, bytes) {
        panic!("{report}");
    }
}

#[test]
fn ind_nel_and_ri_match_tmux() {
    assert_like_tmux("ind", 10, 4, b"ab\x1bDcd\x1bEef\x1bMgh\x1bM\x1bMij");
    assert_like_tmux("ind-bottom", 6, 3, b"1\r\n2\r\n3\x1bD4\x1bE5\x1b[H\x1bM6");
}

#[test]
fn decstbm_cases_match_tmux() {
    assert_like_tmux("stbm-home", 10, 5, b"abc\r\ndef\x1b[2;4rX");
    assert_like_tmux(
        "stbm-scroll",
        8,
        6,
        b"1\r\n2\r\n3\r\n4\r\n5\r\n6\x1b[2;5r\x1b[5;1H\n\n\x1bD7\x1b[2;1H\x1bM\x1bM8",
    );
    assert_like_tmux(
        "stbm-origin",
        8,
        6,
        b"\x1b[3;5r\x1b[?6h\x1b[9;9HA\x1b[HB\x1b[?6lC",
    );
    assert_like_tmux("stbm-invalid", 8, 4, b"ab\x1b[3;2rX\x1b[4;4rY");
    assert_like_tmux(
        "stbm-il-dl",
        6,
        6,
        b"1\r\n2\r\n3\r\n4\r\n5\r\n6\x1b[2;5r\x1b[3;1H\x1b[2L\x1b[5;1H\x1b[M\x1b[2;1H\x1b[L",
    );
    // (IL/DL outside the region: xterm ignores them, tmux shifts the whole screen; we follow
    // xterm, see behaviour.rs.)
}

#[test]
fn a_wide_character_at_the_margin_matches_tmux() {
    assert_like_tmux("wide-margin", 5, 3, "abcd中e".as_bytes());
    assert_like_tmux("wide-margin-full", 5, 3, "zzzzz\rabcd中".as_bytes());
    // Overwriting the right half of a wide character: tmux keeps the left half in its
    // grid (its capture shows it, misaligned); xterm blanks it, as we do (see behaviour.rs).
    assert_like_tmux(
        "wide-overwrite-left",
        6,
        2,
        "中文字\x1b[1;1Hx\x1b[1;3Hy".as_bytes(),
    );
    // (ICH pushing a wide character over the margin: tmux's grid shows a stray half.)
}

#[test]
fn pending_wrap_cases_match_tmux() {
    for (name, bytes) in [
        ("pw-lf", &b"abcde\nX"[..]),
        ("pw-bs", b"abcde\x08X"),
        ("pw-tab", b"abcde\tX"),
        ("pw-el", b"abcde\x1b[KX"),
        ("pw-sgr", b"abcde\x1b[1mX"),
        ("pw-cuf", b"abcde\x1b[CX"),
        ("pw-scrc", b"abcde\x1b7\r\n\x1b8X"),
        ("pw-ri", b"\r\nabcde\x1bMX"),
        ("pw-vpa", b"abcde\x1b[2dX"),
    ] {
        assert_like_tmux(name, 5, 3, bytes);
    }
}

#[test]
fn erase_backgrounds_match_tmux_on_written_cells() {
    assert_like_tmux(
        "bce-el",
        10,
        3,
        b"0123456789\x1b[44m\x1b[1;4H\x1b[K\x1b[0mx",
    );
    assert_like_tmux(
        "bce-ech",
        10,
        3,
        b"0123456789\x1b[41m\x1b[1;2H\x1b[3X\x1b[mx",
    );
    assert_like_tmux(
        "bce-dch",
        10,
        3,
        b"0123456789\x1b[42m\x1b[1;1H\x1b[2P\x1b[m",
    );
    assert_like_tmux(
        "bce-ich",
        10,
        3,
        b"0123456789\x1b[43m\x1b[1;3H\x1b[2@\x1b[m",
    );
    assert_like_tmux(
        "bce-scroll",
        10,
        3,
        b"\x1b[44m\x1b[2S\x1b[3;1H\n\x1b[0m\tx\x1b[1;1H\tx",
    );
    assert_like_tmux("bce-il", 10, 3, b"a\r\nb\x1b[45m\x1b[1;1H\x1b[L\x1b[0m\tx");
    // (An erase past the end of a line's content: tmux leaves those cells default; xterm
    // and we fill them. See behaviour.rs.)
}

#[test]
fn charsets_and_tabs_match_tmux() {
    assert_like_tmux("acs", 12, 2, b"\x1b(0lqqk\x1b(B x\x1b)0\x0ejm\x0fq");
    assert_like_tmux("tabs", 30, 2, b"a\tb\x1b[3g\x1b[5G\x1bH\r\tc\t\td\x1b[Ze");
}

#[test]
fn random_streams_match_tmux() {
    let mut failures = Vec::new();
    // More with TMUX_SEEDS=n.
    let seeds = std::env::var("TMUX_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(48);
    for seed in 0..seeds {
        let mut rng = Rng::new(20_000 + seed);
        let cols = 5 + rng.below(40) as u16;
        let rows = 2 + rng.below(12) as u16;
        let bytes = stream(&mut rng, 60, cols, rows, MIX);
        if let Some(dir) = std::env::var_os("TMUX_DUMP") {
            std::fs::write(
                std::path::Path::new(&dir).join(format!("seed{seed}-{cols}x{rows}")),
                &bytes,
            )
            .unwrap();
        }
        if let Err(report) = compare(&format!("seed{seed}"), cols, rows, &bytes) {
            failures.push(report);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {seeds} random streams differ from tmux:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// A debugging aid, not a check: `TMUX_BISECT=seed cargo test --test tmux_reference bisect`
/// finds a short prefix of that random stream where we first differ from tmux.
#[test]
fn bisect() {
    let Some(seed) = std::env::var("TMUX_BISECT")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    else {
        return;
    };
    let mut rng = Rng::new(20_000 + seed);
    let cols = 5 + rng.below(40) as u16;
    let rows = 2 + rng.below(12) as u16;
    let bytes = stream(&mut rng, 60, cols, rows, MIX);
    let (mut good, mut bad) = (0, bytes.len());
    assert!(
        compare("bisect", cols, rows, &bytes).is_err(),
        "seed {seed} matches tmux"
    );
    while bad - good > 1 {
        let mid = (good + bad) / 2;
        if compare("bisect", cols, rows, &bytes[..mid]).is_ok() {
            good = mid;
        } else {
            bad = mid;
        }
    }
    let report = compare("bisect", cols, rows, &bytes[..bad]).unwrap_err();
    let before = compare("bisect", cols, rows, &bytes[..bad - 1])
        .err()
        .unwrap_or_default();
    let (theirs, _) = Tmux::new("bisect").show(cols, rows, &bytes[..bad - 1]);
    panic!(
        "first difference after byte {bad}; the last bytes: {:?}\n{report}\nbefore: {before}{theirs:#?}",
        String::from_utf8_lossy(&bytes[bad.saturating_sub(60)..bad])
    );
}
