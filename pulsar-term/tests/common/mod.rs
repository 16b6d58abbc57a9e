//! Shared by the property and reference tests: a small deterministic PRNG and a generator of
//! byte streams that mix text, UTF-8 and the control functions programs use.

#![allow(dead_code)]

/// SplitMix64: tiny, deterministic, good enough to pick test inputs.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// What a generated stream may contain.
#[derive(Clone, Copy)]
pub struct Mix {
    /// Sequences whose effect tmux and xterm disagree on, or tmux lacks (see the README):
    /// only for tests that do not compare with tmux.
    pub beyond_tmux: bool,
    /// Raw garbage bytes (arbitrary controls, broken UTF-8, unfinished sequences).
    pub garbage: bool,
}

/// A random stream of about `tokens` pieces for a `cols`×`rows` screen.
pub fn stream(rng: &mut Rng, tokens: usize, cols: u16, rows: u16, mix: Mix) -> Vec<u8> {
    let mut out = Vec::new();
    let num = |rng: &mut Rng, max: u16| 1 + rng.below(u64::from(max)) as u16;
    let alt_family = rng.chance(50);
    let mut alt_open = false;
    for _ in 0..tokens {
        let t = rng.below(100);
        let piece: Vec<u8> = match t {
            0..=24 => {
                let words = ["hello", "a", "wide", "x", "0123456789", "  ", "lorem ipsum"];
                let mut s = rng.pick(&words).as_bytes().to_vec();
                if rng.chance(30) {
                    s.extend(std::iter::repeat_n(
                        b'z',
                        rng.below(u64::from(cols) * 2) as usize,
                    ));
                }
                s
            }
            // tmux's grid keeps half a wide character that is overwritten or erased from
            // its right half (xterm blanks both halves): for tmux, wide characters only in
            // `wide_text_stream`, which never lands the cursor on a right half.
            25..=31 if !mix.beyond_tmux => rng
                .pick(&["é", "e\u{301}", "ñ", "α", "\u{301}", "ü"])
                .as_bytes()
                .to_vec(),
            25..=31 => rng
                .pick(&[
                    "中",
                    "文字",
                    "é",
                    "e\u{301}",
                    "ñ",
                    "日本語",
                    "α",
                    "🙂",
                    "\u{301}",
                ])
                .as_bytes()
                .to_vec(),
            // tmux's BS at column 0 goes back over a soft wrap (xterm only in mode 45): for
            // tmux, never at column 0 (CUF first).
            32..=37 if !mix.beyond_tmux => rng
                .pick(&[&b"\r\n"[..], b"\r", b"\n", b"\x1b[C\x08", b"\t"])
                .to_vec(),
            32..=37 => rng
                .pick(&[&b"\r\n"[..], b"\r", b"\n", b"\x08", b"\t"])
                .to_vec(),
            38..=45 => {
                let (r, c) = (num(rng, rows + 1), num(rng, cols + 1));
                match rng.below(8) {
                    0 => format!("\x1b[{r};{c}H"),
                    1 => format!("\x1b[{}A", num(rng, rows)),
                    2 => format!("\x1b[{}B", num(rng, rows)),
                    3 => format!("\x1b[{}C", num(rng, cols)),
                    4 => format!("\x1b[{}D", num(rng, cols)),
                    5 => format!("\x1b[{c}G"),
                    6 => format!("\x1b[{r}d"),
                    _ => format!("\x1b[{}E", num(rng, 3)),
                }
                .into_bytes()
            }
            46..=51 => match rng.below(6) {
                0 => format!("\x1b[{}J", rng.below(3)),
                1 => format!("\x1b[{}K", rng.below(3)),
                2 => format!("\x1b[{}X", num(rng, cols)),
                3 => "\x1b[J".to_string(),
                4 => "\x1b[K".to_string(),
                _ => format!("\x1b[{}P", num(rng, 4)),
            }
            .into_bytes(),
            52..=56 => {
                let top = num(rng, rows);
                let bottom = top + rng.below(u64::from(rows - top + 1)) as u16;
                if rng.chance(20) {
                    b"\x1b[r".to_vec()
                } else {
                    format!("\x1b[{top};{bottom}r").into_bytes()
                }
            }
            57..=62 => rng.pick(&[&b"\x1bD"[..], b"\x1bE", b"\x1bM"]).to_vec(),
            63..=68 => match rng.below(6) {
                0 => format!("\x1b[{}@", num(rng, 4)),
                // Outside the scroll region xterm ignores IL/DL; tmux applies them to the
                // whole screen. For tmux, set a region around the row first.
                1 | 2 if !mix.beyond_tmux => {
                    let (y, x) = (num(rng, rows), num(rng, cols));
                    let top = 1 + rng.below(u64::from(y)) as u16;
                    let bottom = y + rng.below(u64::from(rows - y + 1)) as u16;
                    let op = if rng.chance(50) { 'L' } else { 'M' };
                    // A one-row region is invalid (ignored): then the whole screen.
                    let region = if top < bottom {
                        format!("\x1b[{top};{bottom}r")
                    } else {
                        "\x1b[r".to_string()
                    };
                    format!("{region}\x1b[{y};{x}H\x1b[{}{op}", num(rng, 3))
                }
                1 => format!("\x1b[{}L", num(rng, 3)),
                2 => format!("\x1b[{}M", num(rng, 3)),
                3 => format!("\x1b[{}S", num(rng, 3)),
                4 => format!("\x1b[{}T", num(rng, 3)),
                // tmux repeats only ASCII (xterm any graphic character): after an ASCII one.
                // tmux repeats only ASCII and never past the end of the line (xterm repeats
                // any graphic character, wrapping as printing does).
                _ if !mix.beyond_tmux => format!("\x1b[{}T", num(rng, 3)),
                _ => format!("\x1b[{}b", num(rng, 5)),
            }
            .into_bytes(),
            69..=75 => {
                let sgr = [
                    "0",
                    "1",
                    "2",
                    "3",
                    "4",
                    "5",
                    "7",
                    "8",
                    "9",
                    "22",
                    "24",
                    "27",
                    "31",
                    "42",
                    "38;5;123",
                    "48;5;17",
                    "38;2;10;200;30",
                    "48;2;1;2;3",
                    "39",
                    "49",
                    "97",
                    "104",
                ];
                // tmux applies an erase's background only up to the end of a line's
                // content (xterm to every erased cell): no backgrounds for tmux.
                let sgr: Vec<&str> = if mix.beyond_tmux {
                    sgr.to_vec()
                } else {
                    sgr.into_iter()
                        .filter(|s| !s.starts_with('4') && *s != "104")
                        .collect()
                };
                format!("\x1b[{}m", rng.pick(&sgr)).into_bytes()
            }
            // tmux 3.3 has no CHT (`CSI I`).
            76..=79 if !mix.beyond_tmux => rng
                .pick(&[&b"\x1bH"[..], b"\x1b[g", b"\x1b[3g", b"\x1b[Z"])
                .to_vec(),
            76..=79 => rng
                .pick(&[&b"\x1bH"[..], b"\x1b[g", b"\x1b[3g", b"\x1b[2I", b"\x1b[Z"])
                .to_vec(),
            // tmux does not restore charsets with 1049's cursor (xterm does, as DECRC).
            80..=83 if !mix.beyond_tmux && alt_family => b"z".to_vec(),
            80..=83 => rng
                .pick(&[&b"\x1b(0"[..], b"\x1b(B", b"\x1b)0", b"\x0e", b"\x0f"])
                .to_vec(),
            84..=87 => {
                if mix.beyond_tmux {
                    rng.pick(&[
                        &b"\x1b[?1049h"[..],
                        b"\x1b[?1049l",
                        b"\x1b[?47h",
                        b"\x1b[?47l",
                        b"\x1b[?1047h",
                        b"\x1b[?1047l",
                        b"\x1b7",
                        b"\x1b8",
                        b"\x1b[s",
                        b"\x1b[u",
                    ])
                    .to_vec()
                } else if alt_family {
                    // tmux ignores 1049h inside the alternate screen and 1049l outside it
                    // (xterm clears, and restores the cursor): only well-nested visits.
                    alt_open = !alt_open;
                    if alt_open {
                        rng.pick(&[&b"\x1b[?1049h"[..], b"\x1b[?1049h\x1b[H"])
                            .to_vec()
                    } else {
                        b"\x1b[?1049l".to_vec()
                    }
                } else {
                    // xterm keeps DECSC per screen and 1049 uses it; tmux keeps them apart.
                    rng.pick(&[&b"\x1b7"[..], b"\x1b8"]).to_vec()
                }
            }
            88..=91 => {
                let modes: [&[u8]; 14] = [
                    b"\x1b[?6h",
                    b"\x1b[?6l",
                    b"\x1b[4h",
                    b"\x1b[4l",
                    b"\x1b[?25l",
                    b"\x1b[?25h",
                    b"\x1b[?1h",
                    b"\x1b=",
                    b"\x1b[?2004h",
                    b"\x1b[?1000h",
                    b"\x1b[?1006h",
                    b"\x1b[3 q",
                    b"\x1b]2;title\x07",
                    b"\x1b]0;other\x1b\\",
                ];
                // tmux homes DECSTBM to the screen's corner even in origin mode (xterm and DEC
                // to the region's), and in insert mode inserts before a pending wrap (xterm
                // after it): neither mode when comparing with tmux.
                let skip = if mix.beyond_tmux { 0 } else { 4 };
                rng.pick(&modes[skip..]).to_vec()
            }
            92..=93 => {
                if mix.beyond_tmux {
                    rng.pick(&[
                        &b"\x1b[?7l"[..],
                        b"\x1b[?7h",
                        b"\x1bc",
                        b"\x1b[!p",
                        b"\x1b#8",
                    ])
                    .to_vec()
                } else {
                    b"x".to_vec()
                }
            }
            _ => {
                if mix.garbage {
                    (0..1 + rng.below(6)).map(|_| rng.next() as u8).collect()
                } else {
                    b"y".to_vec()
                }
            }
        };
        if !mix.beyond_tmux && differs_at_a_pending_wrap(&piece) {
            // CUF cancels a pending wrap the same way in both.
            out.extend_from_slice(b"\x1b[C");
        }
        out.extend(piece);
    }
    out
}

/// At a pending wrap xterm (and we) cancel it and act on the last column for these; tmux
/// keeps it pending (and BS/CUB count from past the margin, DECSC drops it).
fn differs_at_a_pending_wrap(piece: &[u8]) -> bool {
    match piece {
        b"\n" | b"\x1bD" | b"\x1bM" | b"\x1b7" => true,
        // 1049h saves the cursor as DECSC does.
        _ if piece.starts_with(b"\x1b[?1049h") => true,
        [0x1b, b'[', .., last] => b"DJKXP@d".contains(last),
        _ => false,
    }
}

/// Panics with the lines where two state dumps differ (whole dumps are long).
pub fn assert_same_state(a: &str, b: &str, context: impl FnOnce() -> String) {
    if a == b {
        return;
    }
    let mut diff = String::new();
    let (la, lb): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    for i in 0..la.len().max(lb.len()) {
        let (x, y) = (
            la.get(i).copied().unwrap_or(""),
            lb.get(i).copied().unwrap_or(""),
        );
        if x != y {
            diff.push_str(&format!("- {x}\n+ {y}\n"));
        }
    }
    panic!("{}\n{diff}", context());
}

/// Text with wide and combining characters, written in order (CR, LF and whole-line erases
/// but no horizontal cursor motion), so the cursor never starts on a wide character's right
/// half; with SGR, scrolling and regions.
pub fn wide_text_stream(rng: &mut Rng, tokens: usize, rows: u16) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..tokens {
        let piece: Vec<u8> = match rng.below(20) {
            0..=5 => rng
                .pick(&[
                    &b"hello "[..],
                    b"a",
                    b"zzzzzzzzzzzzzzzzzzzzzzzzzzz",
                    b"0123456789",
                ])
                .to_vec(),
            6..=11 => rng
                .pick(&[
                    "中".as_bytes(),
                    "文字".as_bytes(),
                    "日本語のテキスト".as_bytes(),
                    "🙂".as_bytes(),
                    "e\u{301}".as_bytes(),
                    "ñ".as_bytes(),
                ])
                .to_vec(),
            12..=14 => rng.pick(&[&b"\r\n"[..], b"\r", b"\x1bE"]).to_vec(),
            // At a pending wrap xterm cancels it on EL and IND/RI, tmux does not: CR first.
            15 => rng
                .pick(&[&b"\r\x1b[2K"[..], b"\x1b[2J\x1b[H", b"\x1b[S", b"\x1b[T"])
                .to_vec(),
            16..=17 => rng
                .pick(&[&b"\x1b[1;31m"[..], b"\x1b[0m", b"\x1b[7m", b"\x1b[38;5;99m"])
                .to_vec(),
            18 => {
                out.extend_from_slice(
                    format!(
                        "\x1b[{};{}r\x1b[H",
                        1 + rng.below(2),
                        rows - rng.below(2) as u16
                    )
                    .as_bytes(),
                );
                continue;
            }
            _ => rng.pick(&[&b"\r\x1bD"[..], b"\r\x1bM"]).to_vec(),
        };
        out.extend_from_slice(&piece);
    }
    out
}
