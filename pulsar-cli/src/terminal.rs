//! The local terminal while attached: raw mode that is undone on every exit path (a guard's
//! `Drop`, and a panic hook for panics), its size, and resetting the modes a session's
//! program may have switched on (alternate screen, mouse, bracketed paste, ...).

use std::fs::File;
use std::io::{IsTerminal as _, Write as _};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, Once};

use pulsar_protocol::alternate::LEAVE_ALTERNATE_SCREEN;
use rustix::termios::{OptionalActions, Termios, tcgetattr, tcgetwinsize, tcsetattr};

/// What to put back, present while raw mode is on. A static so that the panic hook can
/// reach it; taken (not copied) by [`restore`] so restoring twice is harmless.
static SAVED: Mutex<Option<Saved>> = Mutex::new(None);

/// The terminal as it was, and where to reach it.
struct Saved {
    /// The terminal's settings before raw mode.
    termios: Termios,
    /// The terminal's input side (a duplicate of standard input).
    input: File,
    /// Where the mode resets are written (a duplicate of standard output).
    output: File,
}

/// Whether the session left the outer terminal on the alternate screen. Leaving it when it
/// is not in use would move the cursor (xterm restores a cursor that was never saved).
static ALTERNATE_SCREEN: AtomicBool = AtomicBool::new(false);

/// Puts back what full-screen programs change, except the alternate screen: normal cursor
/// keys and keypad, no bracketed paste, no mouse or focus reporting, default attributes,
/// charset and cursor style, autowrap on, a visible cursor, and the whole screen as the
/// scrolling region (inside save/restore cursor, since setting it homes the cursor).
const RESET_MODES: &[u8] = b"\x1b[?1l\x1b>\x1b[?2004l\x1b[?1000l\x1b[?1002l\x1b[?1003l\
\x1b[?1005l\x1b[?1006l\x1b[?1015l\x1b[?1004l\x1b[0m\x1b(B\x1b[0 q\x1b[?7h\x1b[?25h\x1b7\x1b[r\x1b8";

/// True when standard input is a terminal (attach needs one to read keystrokes from).
pub fn stdin_is_terminal() -> bool {
    std::io::stdin().is_terminal()
}

/// The terminal to hand to the daemon: standard input, when standard output is the same
/// terminal (output redirected elsewhere stays with this process, which relays it there).
pub fn handover() -> Option<std::os::fd::BorrowedFd<'static>> {
    let (input, output) = (rustix::stdio::stdin(), rustix::stdio::stdout());
    if !rustix::termios::isatty(input) || !rustix::termios::isatty(output) {
        return None;
    }
    let (a, b) = (
        rustix::fs::fstat(input).ok()?,
        rustix::fs::fstat(output).ok()?,
    );
    (a.st_rdev == b.st_rdev).then_some(input)
}

/// The terminal's size as (cols, rows), when standard input is a terminal that knows it.
pub fn size() -> Option<(u16, u16)> {
    let size = tcgetwinsize(std::io::stdin()).ok()?;
    let clamp = |n: u16| n.clamp(1, 1000);
    (size.ws_col > 0 && size.ws_row > 0).then(|| (clamp(size.ws_col), clamp(size.ws_row)))
}

/// Raw mode on the terminal, undone when dropped (and by a panic hook, before the panic
/// message is printed).
#[must_use = "raw mode ends when the guard is dropped"]
pub struct RawMode(());

impl RawMode {
    /// Switches the terminal on standard input to raw mode: no echo, no line editing, no
    /// signals from Ctrl-C/Ctrl-Z/Ctrl-\, no output processing; every byte goes to us.
    pub fn enter() -> std::io::Result<Self> {
        Self::enter_on(std::io::stdin(), std::io::stdout())
    }

    /// Raw mode on the terminal `input`, with resets written to `output` when it ends.
    fn enter_on(input: impl AsFd, output: impl AsFd) -> std::io::Result<Self> {
        let termios = tcgetattr(&input)?;
        let mut raw = termios.clone();
        raw.make_raw();
        let saved = Saved {
            termios,
            input: File::from(rustix::io::dup(&input)?),
            output: File::from(rustix::io::dup(&output)?),
        };
        install_panic_hook();
        ALTERNATE_SCREEN.store(false, Ordering::SeqCst);
        tcsetattr(&input, OptionalActions::Now, &raw)?;
        *lock_saved() = Some(saved);
        Ok(Self(()))
    }

    /// Records whether the session's program is on the alternate screen.
    pub fn set_alternate_screen(&self, on: bool) {
        ALTERNATE_SCREEN.store(on, Ordering::SeqCst);
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        restore();
    }
}

fn lock_saved() -> std::sync::MutexGuard<'static, Option<Saved>> {
    SAVED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Resets the terminal's modes and puts its saved settings back; does nothing when raw mode
/// is not on. Safe to call from any exit path, more than once.
pub fn restore() {
    let Some(mut saved) = lock_saved().take() else {
        return;
    };
    if ALTERNATE_SCREEN.swap(false, Ordering::SeqCst) {
        let _ = saved.output.write_all(LEAVE_ALTERNATE_SCREEN);
    }
    let _ = saved.output.write_all(RESET_MODES);
    // Drain: let the resets reach the terminal before the settings change back.
    let _ = tcsetattr(&saved.input, OptionalActions::Drain, &saved.termios);
}

/// Restores the terminal before the default hook prints a panic, so the message is
/// readable and the shell usable afterwards.
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;

    /// The settings raw mode changes, comparable.
    fn modes(termios: &Termios) -> String {
        format!(
            "{:?} {:?} {:?} {:?}",
            termios.input_modes, termios.output_modes, termios.control_modes, termios.local_modes
        )
    }

    /// Raw mode is process-wide state; these tests take turns.
    static SERIAL: Mutex<()> = Mutex::new(());

    #[test]
    fn a_panic_while_raw_puts_the_terminal_back() {
        let _turn = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        let pty = nix::pty::openpty(None, None).expect("openpty");
        let before = modes(&tcgetattr(&pty.slave).unwrap());
        let outcome = std::panic::catch_unwind(|| {
            let raw = RawMode::enter_on(&pty.slave, &pty.slave).unwrap();
            assert_ne!(
                modes(&tcgetattr(&pty.slave).unwrap()),
                before,
                "raw mode is on"
            );
            raw.set_alternate_screen(true);
            // Forgotten, so only the panic hook can restore the terminal.
            std::mem::forget(raw);
            panic!("a bug while attached");
        });
        assert!(outcome.is_err());
        assert_eq!(modes(&tcgetattr(&pty.slave).unwrap()), before);
        // The resets reached the terminal, leaving the alternate screen first.
        let mut master = File::from(pty.master);
        let mut seen = vec![0u8; 4096];
        let n = master.read(&mut seen).unwrap();
        assert!(
            seen[..n].starts_with(LEAVE_ALTERNATE_SCREEN),
            "{:?}",
            &seen[..n]
        );
    }

    #[test]
    fn restoring_twice_is_harmless() {
        let _turn = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        let pty = nix::pty::openpty(None, None).expect("openpty");
        let before = modes(&tcgetattr(&pty.slave).unwrap());
        let raw = RawMode::enter_on(&pty.slave, &pty.slave).unwrap();
        restore();
        drop(raw);
        assert_eq!(modes(&tcgetattr(&pty.slave).unwrap()), before);
    }
}
