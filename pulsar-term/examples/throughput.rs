//! Measures `Screen::feed` throughput (MB/s) on plain text, 64-byte lines and coloured text,
//! beside vt100 0.18 in the same run, and the memory of an idle 80x24 shell screen.
//!
//! `cargo run --release -p pulsar-term --example throughput [runs]`

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Instant;

use pulsar_term::Screen;

/// Counts live heap bytes, so that vt100's memory can be measured the same way as ours.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; the counter is only
// arithmetic on the sizes passed in.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract for `alloc` is passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: as above, for `dealloc`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: as above, for `realloc`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const CHUNK: usize = 16 * 1024;
const TOTAL: usize = 64 * 1024 * 1024;

fn endless_line() -> Vec<u8> {
    vec![b'a'; TOTAL]
}

fn lines_of_64() -> Vec<u8> {
    let words = [
        "lorem",
        "ipsum",
        "dolor",
        "sit",
        "amet",
        "consectetur",
        "adipiscing",
    ];
    let mut out = Vec::with_capacity(TOTAL);
    let mut i = 0;
    while out.len() < TOTAL {
        let start = out.len();
        while out.len() - start < 62 {
            let w = words[i % words.len()].as_bytes();
            i += 1;
            let room = 62 - (out.len() - start);
            out.extend_from_slice(&w[..w.len().min(room)]);
            if out.len() - start < 62 {
                out.push(b' ');
            }
        }
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn coloured() -> Vec<u8> {
    let mut out = Vec::with_capacity(TOTAL);
    let mut i = 0u32;
    while out.len() < TOTAL {
        let line = format!(
            "\x1b[1;3{}mdrwxr-xr-x\x1b[0m  2 user \x1b[38;5;{}mstaff\x1b[0m  4096 \
             \x1b[48;2;{};40;60mDec  1\x1b[m \x1b[01;34mdirectory-{i}\x1b[0m\r\n",
            i % 8,
            i % 256,
            i % 256
        );
        out.extend_from_slice(line.as_bytes());
        i += 1;
    }
    out
}

fn utf8_lines() -> Vec<u8> {
    let line = "日本語のテキスト, ünïcödé text with accents é and ñ, 中文字符 and emoji 🙂\r\n";
    line.as_bytes()
        .iter()
        .copied()
        .cycle()
        .take(TOTAL)
        .collect()
}

fn mbps(bytes: usize, secs: f64) -> f64 {
    bytes as f64 / secs / 1e6
}

fn ours(data: &[u8]) -> f64 {
    let mut s = Screen::new(80, 24);
    let start = Instant::now();
    for chunk in data.chunks(CHUNK) {
        s.feed(chunk);
    }
    let secs = start.elapsed().as_secs_f64();
    std::hint::black_box(s.cursor_position());
    mbps(data.len(), secs)
}

fn vt100(data: &[u8]) -> f64 {
    let mut p = vt100::Parser::new(nz(24), nz(80), 0);
    let start = Instant::now();
    for chunk in data.chunks(CHUNK) {
        p.process(chunk);
    }
    let secs = start.elapsed().as_secs_f64();
    std::hint::black_box(p.screen().cursor_position());
    mbps(data.len(), secs)
}

fn nz(n: u16) -> std::num::NonZeroU16 {
    std::num::NonZeroU16::new(n).expect("non-zero")
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// What a shell leaves on an 80x24 screen after `clear` and a coloured prompt.
const PROMPT: &[u8] =
    b"\x1b[H\x1b[2J\x1b]0;user@host: ~\x07\x1b[01;32muser@host\x1b[00m:\x1b[01;34m~\x1b[00m$ ";

/// The same after a few commands: `ls` output and prompts on 12 of the 24 rows.
fn busy_shell() -> Vec<u8> {
    let mut out = PROMPT.to_vec();
    for i in 0..3 {
        out.extend_from_slice(b"ls\r\n");
        out.extend_from_slice(
            b"\x1b[0m\x1b[01;34mbin\x1b[0m  Cargo.lock  Cargo.toml  \x1b[01;34mdocs\x1b[0m  README.md  \x1b[01;34msrc\x1b[0m\r\n",
        );
        out.extend_from_slice(format!("notes-{i}.txt  todo.md\r\n").as_bytes());
        out.extend_from_slice(
            b"\x1b]0;user@host: ~\x07\x1b[01;32muser@host\x1b[00m:\x1b[01;34m~\x1b[00m$ ",
        );
    }
    out
}

/// How long a full, coloured 80x24 screen takes to redraw, serialize, hibernate and wake.
fn redraw_cost(bytes: &[u8]) {
    let mut s = Screen::new(80, 24);
    s.feed(bytes);
    let n = 1000;
    let start = Instant::now();
    let mut len = 0;
    for _ in 0..n {
        len = std::hint::black_box(s.redraw()).len();
    }
    let redraw = start.elapsed() / n;
    let sleeping = Screen::new(80, 24);
    let mut sleeping = {
        let mut t = sleeping;
        t.feed(bytes);
        t.hibernate()
    };
    let start = Instant::now();
    for _ in 0..n {
        let woken = std::hint::black_box(sleeping.wake());
        sleeping = woken.hibernate();
    }
    let cycle = start.elapsed() / n;
    println!(
        "full coloured 80x24 screen: redraw {len} B in {redraw:?}; wake + hibernate {cycle:?} \
         ({} B asleep)",
        sleeping.len()
    );
}

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

fn memory(name: &str, bytes: &[u8]) {
    let before = live();
    let mut s = Screen::new(80, 24);
    s.feed(bytes);
    let counted = live() - before;
    let own = s.heap_bytes();
    let before_vt = live();
    let mut p = vt100::Parser::new(nz(24), nz(80), 0);
    p.process(bytes);
    let vt = live() - before_vt;
    let sleeping = s.hibernate();
    println!(
        "{name}: pulsar-term heap {own} B (allocator says {counted} B), vt100 {vt} B, \
         hibernated {} B",
        sleeping.len()
    );
    drop(p);
}

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(5);
    println!(
        "{} MB per workload, {CHUNK}-byte feeds, 80x24, median of {runs} runs",
        TOTAL / 1_000_000
    );
    for (name, data) in [
        ("endless line of 'a'", endless_line()),
        ("64-byte lines", lines_of_64()),
        ("SGR-coloured lines", coloured()),
        ("UTF-8 (CJK, accents)", utf8_lines()),
    ] {
        // For profiling one workload alone: THROUGHPUT_ONLY=<part of its name>.
        if let Ok(only) = std::env::var("THROUGHPUT_ONLY")
            && !name.contains(only.as_str())
        {
            continue;
        }
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            a.push(ours(&data));
            b.push(vt100(&data));
        }
        let (a, b) = (median(a), median(b));
        println!(
            "{name:>22}: pulsar-term {a:8.1} MB/s   vt100 {b:6.1} MB/s   ratio {:5.1}x",
            a / b
        );
    }
    redraw_cost(&coloured()[..1 << 20]);
    memory("idle shell (prompt after clear)", PROMPT);
    memory("shell after 3 ls", &busy_shell());
}
