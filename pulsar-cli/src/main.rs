//! `pulsar`: create, list, attach to, type into and end Pulsar terminal sessions.
//! Everything lives in the library; see `lib.rs`.

fn main() -> std::process::ExitCode {
    pulsar_cli::main()
}
