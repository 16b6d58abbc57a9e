//! `pulsar-keeper --socket PATH`: the keeper process a Pulsar daemon starts (see the crate
//! docs). Not meant to be run by hand, but harmless if it is. `pulsar-keeper --exec-limited
//! SPEC -- PROGRAM...` is the trampoline a confined session program starts through.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    // `--keeper` first is accepted, so every keeper is started the same way.
    let mut args = std::env::args_os().skip(1).peekable();
    if args
        .peek()
        .is_some_and(|first| first == pulsar_keeper::limited::FLAG)
    {
        let rest: Vec<_> = args.skip(1).collect();
        return ExitCode::from(pulsar_keeper::limited::exec(&rest));
    }
    if args.peek().is_some_and(|first| first == "--keeper") {
        args.next();
    }
    let socket = match (args.next(), args.next(), args.next()) {
        (Some(flag), Some(path), None) if flag == "--socket" => PathBuf::from(path),
        _ => {
            eprintln!(
                "usage: pulsar-keeper [--keeper] --socket PATH\n\nHolds Pulsar's session programs and their \
                 terminals while daemons come and go; started by the daemon."
            );
            return ExitCode::from(2);
        }
    };
    match pulsar_keeper::run(&socket) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("pulsar-keeper: {err}");
            ExitCode::FAILURE
        }
    }
}
