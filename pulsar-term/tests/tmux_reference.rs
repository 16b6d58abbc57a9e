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

use common::{Mix, Rng, stream, wide_text_stream};
use pulsar_term::Screen;

const MIX: Mix = Mix {
    beyond_tmux: false,
    garbage: false,
};

/// A private tmux server, killed on drop (and its socket file removed).
struct Tmux {
    socket: String,
    file: PathBuf,
    socket_path: std::cell::OnceCell<PathBuf>,
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
        Tmux {
            socket,
            file,
            socket_path: std::cell::OnceCell::new(),
        }
    }

    fn cmd(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("running tmux")
    }

    /// Called once a server runs: remembers its socket to remove it afterwards.
    fn started(&self) {
        let path = self.query("#{socket_path}");
        let _ = self.socket_path.set(PathBuf::from(path));
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
        self.started();
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.query("#{pane_title}") != marker {
            assert!(
                Instant::now() < deadline,
                "tmux did not show the stream in time"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let screen = self.screen(cols, rows);
        self.cmd(&["kill-server"]);
        screen
    }

    /// The pane's screen now (styled rows, replayed through our model) and cursor (x, y).
    fn screen(&self, cols: u16, rows: u16) -> (Vec<String>, (usize, usize)) {
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
        (rows_text, (x.parse().unwrap(), y.parse().unwrap()))
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]);
        let _ = std::fs::remove_file(&self.file);
        if let Some(path) = self.socket_path.get() {
            let _ = std::fs::remove_file(path);
        }
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
    // Where tmux and xterm agree. (LF, IND, RI, BS, CUB, EL, ECH, ICH, DCH, VPA and DECSC
    // at a pending wrap: xterm cancels it and acts on the last column, tmux keeps it
    // pending; we follow xterm, see behaviour.rs.)
    for (name, bytes) in [
        ("pw-tab", &b"abcde\tX"[..]),
        ("pw-sgr", b"abcde\x1b[1mX"),
        ("pw-cuf", b"abcde\x1b[CX"),
        ("pw-cr", b"abcde\rX"),
        ("pw-cup", b"abcde\x1b[2;2HX"),
        ("pw-su", b"abcde\x1b[SX"),
        ("pw-wide", "abcde中".as_bytes()),
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

#[test]
fn random_wide_text_streams_match_tmux() {
    let mut failures = Vec::new();
    let seeds = std::env::var("TMUX_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(24);
    for seed in 0..seeds {
        let mut rng = Rng::new(30_000 + seed);
        let cols = 3 + rng.below(30) as u16;
        let rows = 2 + rng.below(10) as u16;
        let bytes = wide_text_stream(&mut rng, 80, rows);
        if let Err(report) = compare(&format!("wide{seed}"), cols, rows, &bytes) {
            failures.push(report);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {seeds} wide-text streams differ from tmux:\n{}",
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
    // TMUX_BISECT_WIDE: a seed of the wide-text streams instead.
    let (cols, rows, bytes) = if std::env::var_os("TMUX_BISECT_WIDE").is_some() {
        let mut rng = Rng::new(30_000 + seed);
        let cols = 3 + rng.below(30) as u16;
        let rows = 2 + rng.below(10) as u16;
        (cols, rows, wide_text_stream(&mut rng, 80, rows))
    } else {
        let mut rng = Rng::new(20_000 + seed);
        let cols = 5 + rng.below(40) as u16;
        let rows = 2 + rng.below(12) as u16;
        (cols, rows, stream(&mut rng, 60, cols, rows, MIX))
    };
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

/// A real program in a tmux pane, its output recorded byte for byte (pipe-pane).
struct Program {
    tmux: Tmux,
    log: PathBuf,
    cols: u16,
    rows: u16,
    /// The size it started with.
    first_size: (u16, u16),
    /// Where resizes happened in the log, to replay them at the same byte.
    resizes: Vec<(usize, u16, u16)>,
}

impl Program {
    /// Starts `command` in a `cols`×`rows` pane; it runs once the recording is on.
    fn start(test: &str, cols: u16, rows: u16, command: &str) -> Program {
        let tmux = Tmux::new(test);
        let log = std::env::temp_dir().join(format!("{}.log", tmux.socket));
        let script = format!(
            "stty -echo; read go; stty echo; {command}; echo program-exited; exec sleep 600"
        );
        let out = tmux.cmd(&[
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-x",
            &cols.to_string(),
            "-y",
            &rows.to_string(),
            &script,
        ]);
        assert!(out.status.success(), "tmux new-session: {out:?}");
        tmux.started();
        let pipe = format!("cat >> '{}'", log.display());
        let out = tmux.cmd(&["pipe-pane", "-o", &pipe]);
        assert!(out.status.success(), "tmux pipe-pane: {out:?}");
        let program = Program {
            tmux,
            log,
            cols,
            rows,
            first_size: (cols, rows),
            resizes: Vec::new(),
        };
        program.keys(&["Enter"]);
        program
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys"];
        args.extend_from_slice(keys);
        let out = self.tmux.cmd(&args);
        assert!(out.status.success(), "tmux send-keys: {out:?}");
    }

    fn recorded(&self) -> Vec<u8> {
        std::fs::read(&self.log).unwrap_or_default()
    }

    /// Resizes the pane once the program's output has settled on what we expect.
    fn resize(&mut self, cols: u16, rows: u16, what: &str, needle: &str) {
        self.expect_same(what, needle);
        let at = self.recorded().len();
        let out = self.tmux.cmd(&[
            "resize-window",
            "-x",
            &cols.to_string(),
            "-y",
            &rows.to_string(),
        ]);
        assert!(out.status.success(), "tmux resize-window: {out:?}");
        self.resizes.push((at, cols, rows));
        (self.cols, self.rows) = (cols, rows);
    }

    fn ours(&self) -> (Vec<String>, (usize, usize)) {
        let bytes = self.recorded();
        let mut s = Screen::new(self.first_size.0, self.first_size.1);
        let mut from = 0;
        for &(at, cols, rows) in &self.resizes {
            s.feed(&bytes[from..at]);
            s.resize(cols, rows);
            from = at;
        }
        s.feed(&bytes[from..]);
        let (y, x) = s.cursor_position();
        let x = if s.pending_wrap() { s.size().0 } else { x };
        let rows = s.render(true).rows.iter().map(|r| trim_styled(r)).collect();
        (rows, (usize::from(x), usize::from(y)))
    }

    /// Polls until tmux's screen shows `needle` (the program has drawn) and ours agrees (the
    /// recording has caught up), failing with both screens at the deadline.
    fn expect_same(&self, what: &str, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let theirs = self.tmux.screen(self.cols, self.rows);
            let mine = self.ours();
            let drawn = theirs.0.iter().any(|row| row.contains(needle));
            if drawn && theirs == mine {
                return;
            }
            if Instant::now() > deadline {
                let mut report = format!("{what}: tmux and ours differ (or no {needle:?})\n");
                for (i, (t, m)) in theirs.0.iter().zip(&mine.0).enumerate() {
                    let mark = if t == m { ' ' } else { '!' };
                    report.push_str(&format!("{mark} {i:2} tmux {t:?}\n{mark}    ours {m:?}\n"));
                }
                report.push_str(&format!("cursor: tmux {:?} ours {:?}\n", theirs.1, mine.1));
                panic!("{report}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Program {
    /// The serializer's round trip on this real recording, cut at `cuts` points (before any
    /// resize): rebuilt at the cut and fed the rest, the states must be equal.
    fn round_trip_at_cuts(&self, cuts: usize) {
        let bytes = self.recorded();
        let end = self.resizes.first().map_or(bytes.len(), |r| r.0);
        let bytes = &bytes[..end];
        let (cols, rows) = self.first_size;
        let mut rng = Rng::new(bytes.len() as u64);
        for _ in 0..cuts {
            let cut = rng.below(bytes.len() as u64 + 1) as usize;
            let mut a = Screen::new(cols, rows);
            a.feed(&bytes[..cut]);
            let mut b = Screen::new(cols, rows);
            b.feed(&a.serialize());
            a.feed(&bytes[cut..]);
            b.feed(&bytes[cut..]);
            assert!(
                a.dump() == b.dump(),
                "round trip differs at cut {cut} of {}",
                bytes.len()
            );
        }
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.log);
    }
}

fn with_file(name: &str, text: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("pulsar-term-{}-{name}", std::process::id()));
    std::fs::write(&path, text).expect("writing a test file");
    path
}

fn source_text() -> String {
    (0..60)
        .map(|i| format!("fn f{i}(x: u32) -> u32 {{ x * {i} + 1 }} // line {i} with some text\n"))
        .collect()
}

#[test]
fn vim_matches_tmux_while_editing_resizing_and_after_quitting() {
    let file = with_file("vim.rs", &source_text());
    let command = format!(
        "vim -u NONE -N -i NONE -c 'syntax on' -c 'set number' '{}'",
        file.display()
    );
    let mut vim = Program::start("vim", 80, 24, &command);
    vim.expect_same("vim started", "line 0 with");
    vim.keys(&["j", "j", "j", "i", "inserted 中文 text ", "Escape"]);
    vim.expect_same("vim after inserting", "inserted");
    vim.keys(&["4", "0", "G", "d", "d", "o", "a new line", "Escape"]);
    vim.expect_same("vim after deleting and opening a line", "a new line");
    vim.resize(60, 15, "vim before the resize", "a new line");
    vim.expect_same("vim after shrinking", "a new line");
    vim.resize(100, 30, "vim before growing", "a new line");
    vim.expect_same("vim after growing", "a new line");
    vim.keys(&[":q!", "Enter"]);
    vim.expect_same("the shell after vim", "program-exited");
    vim.round_trip_at_cuts(200);
    let _ = std::fs::remove_file(file);
}

#[test]
fn less_matches_tmux_while_paging() {
    let file = with_file("less.txt", &source_text());
    let command = format!("less '{}'", file.display());
    let less = Program::start("less", 80, 24, &command);
    less.expect_same("less started", "line 0 with");
    less.keys(&["Space"]);
    less.expect_same("less after a page", "line 30 with");
    less.keys(&["/", "line 5", "Enter"]);
    less.expect_same("less after a search", "x * 50 +");
    less.keys(&["G"]);
    less.expect_same("less at the end", "(END)");
    less.keys(&["q"]);
    less.expect_same("the shell after less", "program-exited");
    less.round_trip_at_cuts(200);
    let _ = std::fs::remove_file(file);
}

#[test]
fn a_shell_with_colours_matches_tmux() {
    let shell = Program::start(
        "shell",
        80,
        24,
        "PS1='\\[\\e[01;32m\\]user@host\\[\\e[00m\\]:\\[\\e[01;34m\\]~\\[\\e[00m\\]$ ' bash --norc -i",
    );
    shell.expect_same("the prompt", "user@host");
    shell.keys(&["ls --color=always -la /usr", "Enter"]);
    shell.expect_same("after ls", "share");
    shell.keys(&[
        "printf '\\e[41m%s\\e[K\\e[m\\n' red; printf 'wide 日本語 e\\u0301 done\\n'",
        "Enter",
    ]);
    shell.expect_same("after printf", "done");
    shell.keys(&["seq 1 100", "Enter"]);
    shell.expect_same("after seq scrolled", "100");
    shell.round_trip_at_cuts(200);
}
