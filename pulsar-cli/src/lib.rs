//! The `pulsar` command: people's client for the Pulsar daemon. Each verb is a module of its
//! own (as in shpool); this file parses the command line, runs the verb and maps its outcome
//! to an exit code.
//!
//! The crate depends on `pulsar-protocol` only (no daemon code): the typed client for most
//! calls, raw JSON for those whose answers carry session kinds this build may not know
//! (`rpc.rs`).

pub mod attach;
pub mod cli;
pub mod cp;
pub mod daemon;
pub mod error;
pub mod events;
pub mod export;
pub mod forward;
pub mod keys;
pub mod kill;
pub mod list;
pub mod new;
pub mod record;
pub mod resolve;
pub mod rpc;
pub mod send;
pub mod shutdown;
pub mod status;
pub mod terminal;
pub mod top;
pub mod upgrade;
pub mod wait;
pub mod workspace;

use std::process::ExitCode;

use clap::{CommandFactory as _, Parser as _};

use crate::cli::{Cli, ForwardVerb, RecordVerb, Verb, WorkspaceVerb};
use crate::daemon::Endpoint;
use crate::error::{Exit, Failure};

/// Runs `pulsar` with the process's arguments and returns its exit code.
pub fn main() -> ExitCode {
    ignore_empty_variables();
    // Usage errors exit 2 here, help and version 0 (clap's codes, as documented).
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("pulsar: cannot start the async runtime: {err}");
            return Exit::Error.into();
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(exit) => exit.into(),
        Err(failure) => {
            eprintln!("pulsar: {failure}");
            failure.exit.into()
        }
    }
}

/// Treats `PULSAR_SOCKET_PATH=` and `PULSAR_DETACH_KEY=` (set but empty) as unset instead
/// of letting clap reject an empty value.
fn ignore_empty_variables() {
    for name in ["PULSAR_SOCKET_PATH", "PULSAR_DETACH_KEY"] {
        if std::env::var_os(name).is_some_and(|value| value.is_empty()) {
            // SAFETY: called first thing in `main`, before any other thread exists.
            unsafe { std::env::remove_var(name) };
        }
    }
}

/// Runs one verb.
pub async fn run(cli: Cli) -> Result<Exit, Failure> {
    let endpoint = Endpoint {
        socket: cli.socket.unwrap_or_else(daemon::default_socket_path),
        start: cli.start,
    };
    match cli.verb {
        Verb::New(args) => {
            let options = attach::Options {
                read_only: false,
                detach_key: args.detach_key.key,
                relay: args.relay.relay,
            };
            let request = new::Request {
                name: args.name,
                detached: args.detach,
                ssh: args.ssh,
                serial: args.serial,
                cwd: args.cwd,
                env: args.env,
                command: args.command,
                limits: args.limits,
            };
            new::run(&endpoint, request, options).await
        }
        Verb::Ls { json } => list::run(&endpoint, json).await,
        Verb::Top { once, interval } => {
            let interval = std::time::Duration::from_secs_f64(interval.clamp(0.1, 3600.0));
            top::run(&endpoint, once, interval).await
        }
        Verb::Attach {
            target,
            read_only,
            detach,
            relay,
        } => {
            let options = attach::Options {
                read_only,
                detach_key: detach.key,
                relay: relay.relay,
            };
            attach::run(&endpoint, &target, options).await
        }
        Verb::Kill { targets } => kill::run(&endpoint, &targets).await,
        Verb::Cp {
            source,
            destination,
            overwrite,
            detach,
        } => cp::run(&endpoint, &source, &destination, overwrite, detach).await,
        Verb::Shutdown { keep_sessions } => shutdown::run(&endpoint, keep_sessions).await,
        Verb::Upgrade { binary } => upgrade::run(&endpoint, binary).await,
        Verb::Send {
            escapes,
            no_newline,
            wait,
            timeout,
            target,
            text,
        } => {
            let text = send::Text {
                words: text,
                escapes,
                no_newline,
            };
            let wait = wait.map(|pattern| wait::Wait {
                pattern,
                timeout,
                screen: false,
            });
            send::run(&endpoint, &target, &text, wait.as_ref()).await
        }
        Verb::Wait {
            target,
            pattern,
            timeout,
            screen,
        } => {
            let wait = wait::Wait {
                pattern,
                timeout,
                screen,
            };
            wait::run(&endpoint, &target, &wait).await
        }
        Verb::Status { json } => status::run(&endpoint, json).await,
        Verb::Events { json } => events::run(&endpoint, json).await,
        Verb::Export {
            target,
            since,
            until,
        } => export::run(&endpoint, &target, since, until).await,
        Verb::Record(verb) => match verb {
            RecordVerb::Start {
                input,
                target,
                file,
            } => record::start(&endpoint, &target, file.as_deref(), input).await,
            RecordVerb::Stop { target } => record::stop(&endpoint, &target).await,
        },
        Verb::Forward(verb) => match verb {
            ForwardVerb::Add {
                target,
                forward,
                allow_non_loopback,
            } => forward::add(&endpoint, &target, forward.into_arg(), allow_non_loopback).await,
            ForwardVerb::Ls { target, json } => {
                forward::list(&endpoint, target.as_deref(), json).await
            }
            ForwardVerb::Rm { ids } => forward::remove(&endpoint, &ids).await,
        },
        Verb::Workspace(verb) => match verb {
            WorkspaceVerb::Ls { json } => workspace::list(&endpoint, json).await,
            WorkspaceVerb::Show { target, json } => workspace::show(&endpoint, &target, json).await,
            WorkspaceVerb::Rm { targets } => workspace::remove(&endpoint, &targets).await,
        },
        Verb::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "pulsar", &mut std::io::stdout());
            Ok(Exit::Ok)
        }
    }
}
