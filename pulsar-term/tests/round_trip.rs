//! The serializer is exact: a screen rebuilt from `serialize()` at any cut point of any
//! stream (even inside an escape sequence or a UTF-8 character) behaves like the original.

mod common;

use common::{Mix, Rng, assert_same_state, stream};
use pulsar_term::Screen;

const MIX: Mix = Mix {
    beyond_tmux: true,
    garbage: true,
};

/// Cuts `bytes` at `cut`, rebuilds, checks both now and after the rest.
fn check(cols: u16, rows: u16, scrollback: usize, bytes: &[u8], cut: usize, what: &str) {
    let mut a = Screen::with_scrollback(cols, rows, scrollback);
    a.feed(&bytes[..cut]);
    let serialized = a.serialize();
    let mut b = Screen::with_scrollback(cols, rows, scrollback);
    b.feed(&serialized);
    assert_same_state(&a.dump(), &b.dump(), || {
        format!(
            "{what}: state differs right after rebuilding at cut {cut}\nprefix {:?}\nserialized {:?}",
            String::from_utf8_lossy(&bytes[..cut]),
            String::from_utf8_lossy(&serialized)
        )
    });
    a.feed(&bytes[cut..]);
    b.feed(&bytes[cut..]);
    assert_same_state(&a.dump(), &b.dump(), || {
        format!(
            "{what}: state differs after the rest, cut {cut}\nprefix {:?}\nrest {:?}",
            String::from_utf8_lossy(&bytes[..cut]),
            String::from_utf8_lossy(&bytes[cut..])
        )
    });
}

#[test]
fn serialize_round_trips_at_random_cuts_of_random_streams() {
    for seed in 0..300 {
        let mut rng = Rng::new(seed);
        let cols = 2 + rng.below(30) as u16;
        let rows = 1 + rng.below(12) as u16;
        let bytes = stream(&mut rng, 120, cols, rows, MIX);
        for _ in 0..6 {
            let cut = rng.below(bytes.len() as u64 + 1) as usize;
            check(
                cols,
                rows,
                0,
                &bytes,
                cut,
                &format!("seed {seed} {cols}x{rows}"),
            );
        }
    }
}

#[test]
fn serialize_round_trips_with_scrollback() {
    for seed in 0..100 {
        let mut rng = Rng::new(1000 + seed);
        let cols = 2 + rng.below(20) as u16;
        let rows = 1 + rng.below(8) as u16;
        let bytes = stream(&mut rng, 150, cols, rows, MIX);
        let cut = rng.below(bytes.len() as u64 + 1) as usize;
        check(
            cols,
            rows,
            1 + rng.below(20) as usize,
            &bytes,
            cut,
            &format!("seed {seed}"),
        );
    }
}

#[test]
fn serialize_round_trips_at_every_cut_of_a_sequence_rich_stream() {
    let bytes = "ab\x1b[2;3r\x1b[?6h\x1b[31;48;2;1;2;3mx中\u{301}\x1b]2;tï\x07\x1b(0q\x1b7\
                 \x1b[?1049h\x1b[5;5Hyy\x1b[4h\x1b[3g\x1bH\x1b[?1002;1006h\x1b[2b"
        .as_bytes();
    for cut in 0..=bytes.len() {
        check(12, 6, 0, bytes, cut, "fixed stream");
    }
}

#[test]
fn serialize_round_trips_a_pending_wrap_in_every_screen() {
    let bytes = b"abcde\x1b7\x1b[?1049hvwxyz\x1b7\x1b[Hq\x1b8";
    for cut in 0..=bytes.len() {
        check(5, 3, 0, bytes, cut, "pending wraps");
    }
}

#[test]
fn serialize_round_trips_after_a_resize() {
    for seed in 0..60 {
        let mut rng = Rng::new(5000 + seed);
        let bytes = stream(&mut rng, 80, 20, 8, MIX);
        let mut a = Screen::new(20, 8);
        a.feed(&bytes[..bytes.len() / 2]);
        let (cols, rows) = (1 + rng.below(30) as u16, 1 + rng.below(12) as u16);
        a.resize(cols, rows);
        let mut b = Screen::new(cols, rows);
        b.feed(&a.serialize());
        assert_same_state(&a.dump(), &b.dump(), || format!("seed {seed}"));
        a.feed(&bytes[bytes.len() / 2..]);
        b.feed(&bytes[bytes.len() / 2..]);
        assert_same_state(&a.dump(), &b.dump(), || {
            format!("seed {seed} after the rest")
        });
    }
}

#[test]
fn hibernated_screens_wake_up_the_same() {
    for seed in 0..60 {
        let mut rng = Rng::new(7000 + seed);
        let bytes = stream(&mut rng, 100, 30, 10, MIX);
        let mut a = Screen::with_scrollback(30, 10, 5);
        a.feed(&bytes);
        let dump = a.dump();
        let sleeping = a.hibernate();
        assert!(sleeping.len() < 30 * 15 * 40, "{} bytes", sleeping.len());
        let bytes = String::from_utf8_lossy(sleeping.as_bytes()).into_owned();
        assert_same_state(&dump, &sleeping.wake().dump(), || {
            format!("seed {seed} {bytes:?}")
        });
    }
}

#[test]
fn feeding_in_any_chunks_gives_the_same_state() {
    for seed in 0..100 {
        let mut rng = Rng::new(9000 + seed);
        let bytes = stream(&mut rng, 100, 15, 6, MIX);
        let mut whole = Screen::new(15, 6);
        whole.feed(&bytes);
        let mut pieces = Screen::new(15, 6);
        let mut i = 0;
        while i < bytes.len() {
            let n = (1 + rng.below(7) as usize).min(bytes.len() - i);
            pieces.feed(&bytes[i..i + n]);
            i += n;
        }
        assert_same_state(&whole.dump(), &pieces.dump(), || format!("seed {seed}"));
    }
}

#[test]
fn redraw_reproduces_the_visible_screen() {
    for seed in 0..100 {
        let mut rng = Rng::new(11000 + seed);
        let bytes = stream(&mut rng, 100, 20, 8, MIX);
        let mut a = Screen::new(20, 8);
        a.feed(&bytes);
        let mut b = Screen::new(20, 8);
        b.feed(b"some\x1b[31mthing else\x1b[?6h\x1b[2;3r");
        b.feed(&a.redraw());
        assert_eq!(a.render(true), b.render(true), "seed {seed}");
        assert_eq!(a.modes(), b.modes(), "seed {seed}");
    }
}
