//! Arbitrary bytes at an arbitrary size: never a panic, the serialization rebuilds the same
//! state at an arbitrary cut, and the heap stays within a bound set by the screen's size.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pulsar_term::Screen;

fuzz_target!(|data: &[u8]| {
    if data.len() < 5 {
        return;
    }
    let cols = 1 + u16::from(data[0] % 120);
    let rows = 1 + u16::from(data[1] % 40);
    let scrollback = usize::from(data[2] % 8);
    let cut = usize::from(data[3]) * (data.len() - 5) / 255;
    let resize = data[4];
    let bytes = &data[5..];

    let mut a = Screen::with_scrollback(cols, rows, scrollback);
    a.feed(&bytes[..cut]);
    if resize & 1 != 0 {
        a.resize(1 + u16::from(resize >> 1) % 100, rows);
    }
    let (cols, rows) = a.size();
    let mut b = Screen::with_scrollback(cols, rows, scrollback);
    b.feed(&a.serialize());
    assert_eq!(a.dump(), b.dump(), "state differs right after rebuilding");
    a.feed(&bytes[cut..]);
    b.feed(&bytes[cut..]);
    assert_eq!(a.dump(), b.dump(), "state differs after the rest");

    assert!(
        a.heap_bytes() <= a.heap_bound(),
        "heap {} over the bound {} for {cols}x{rows}",
        a.heap_bytes(),
        a.heap_bound()
    );
    let _ = a.render(true);
    let _ = a.redraw();
    let woken = a.hibernate().wake();
    assert_eq!(woken.dump(), b.dump(), "hibernation changed the state");
});
