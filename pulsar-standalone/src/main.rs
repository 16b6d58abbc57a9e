//! `pulsar-standalone`: runs the Pulsar daemon without Orbit by hosting the very same
//! extension in-process. Stops gracefully on SIGTERM or SIGINT (the sessions keep running in
//! the keeper). `pulsar-standalone --keeper --socket PATH` is the keeper itself, for when no
//! `pulsar-keeper` binary is installed beside it: the daemon starts it so.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use orbit_api_stub::{ExtensionContext, HostDirs, OrbitExtension};
use pulsar_ext::PulsarExtension;
use tokio::signal::unix::{SignalKind, signal};

/// Run the Pulsar terminal-session daemon without Orbit.
#[derive(Debug, Parser)]
#[command(
    version,
    about,
    after_help = "\
Settings are layered: built-in defaults < config file < PULSAR_* environment < these flags.
Defaults: socket ~/.config/orbit/pulsar.sock, database ~/.config/orbit/pulsar.db, config file
~/.config/orbit/pulsar.toml (read if present). See config/pulsar.toml for every key.

Examples:
  pulsar-standalone
  pulsar-standalone --socket /tmp/pulsar.sock --log-level debug"
)]
struct Args {
    /// Config file (TOML); must exist when given.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Unix socket to listen on.
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// SQLite database file.
    #[arg(long, value_name = "PATH")]
    database: Option<PathBuf>,
    /// Log filter: error, warn, info, debug, trace, or a tracing directive.
    #[arg(long, value_name = "LEVEL")]
    log_level: Option<String>,
}

fn main() -> ExitCode {
    // The keeper mode: no async runtime, nothing of the daemon (see pulsar-keeper).
    let mut raw = std::env::args_os().skip(1);
    if raw.next().is_some_and(|first| first == "--keeper") {
        let rest: Vec<_> = raw.collect();
        // `--keeper --exec-limited ...`: the trampoline a confined session program starts
        // through, when this binary stands in for pulsar-keeper.
        if rest
            .first()
            .is_some_and(|flag| flag == pulsar_keeper::limited::FLAG)
        {
            return ExitCode::from(pulsar_keeper::limited::exec(&rest[1..]));
        }
        let mut raw = rest.into_iter();
        return match (raw.next(), raw.next(), raw.next()) {
            (Some(flag), Some(path), None) if flag == "--socket" => {
                match pulsar_keeper::run(std::path::Path::new(&path)) {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(err) => {
                        eprintln!("pulsar-standalone --keeper: {err}");
                        ExitCode::FAILURE
                    }
                }
            }
            _ => {
                eprintln!("usage: pulsar-standalone --keeper --socket PATH");
                ExitCode::from(2)
            }
        };
    }
    few_malloc_arenas();
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(daemon()),
        Err(err) => {
            eprintln!("pulsar-standalone: cannot start a runtime: {err}");
            ExitCode::FAILURE
        }
    }
}

/// At most two malloc arenas, unless `MALLOC_ARENA_MAX` says otherwise. glibc gives threads
/// up to eight arenas per core; the daemon's threads (requests, the relay, the store, and
/// the blocking pool that starts sessions) each kept pages of their own partly used, for
/// about 0.4 KiB per idle session (`pulsar-bench memory`, daemon + keeper PSS at 1000 idle
/// shells: 6.0 → 5.6 KiB), with no change beyond the noise in throughput or in `get_status`
/// under a flood (`pulsar-bench busy throughput`, two runs each way). Before any thread.
fn few_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets an allocator parameter; called before any other thread.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

async fn daemon() -> ExitCode {
    let args = Args::parse();
    let mut settings = serde_json::Map::new();
    let mut set = |key: &str, value: Option<String>| {
        if let Some(value) = value {
            settings.insert(key.to_owned(), value.into());
        }
    };
    let path = |p: Option<PathBuf>| p.map(|p| p.to_string_lossy().into_owned());
    set("config_file", path(args.config));
    set("socket_path", path(args.socket));
    set("database_path", path(args.database));
    set("log_level", args.log_level);
    // The keeper, when no pulsar-keeper binary is installed beside this one: this binary.
    if let Ok(exe) = std::env::current_exe() {
        settings.insert(
            "keeper_fallback".to_owned(),
            exe.to_string_lossy().into_owned().into(),
        );
    }
    // How to start this daemon again, for `pulsar upgrade`: the same flags.
    settings.insert(
        "upgrade_argv".to_owned(),
        std::env::args().collect::<Vec<_>>().into(),
    );
    // Started by an upgrade: the channel to the daemon being replaced. Taken out of the
    // environment so no program started later inherits the name.
    if let Some(fd) = std::env::var_os("PULSAR_HANDOVER_FD") {
        if let Some(fd) = fd.to_str().and_then(|fd| fd.parse::<i32>().ok()) {
            settings.insert("handover_fd".to_owned(), fd.into());
        }
        // SAFETY: still single-threaded here (a current-thread runtime, nothing spawned yet).
        unsafe { std::env::remove_var("PULSAR_HANDOVER_FD") };
    }

    let (Ok(mut terminate), Ok(mut interrupt)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        eprintln!("pulsar-standalone: cannot install signal handlers");
        return ExitCode::FAILURE;
    };
    let extension = PulsarExtension::new();
    let ctx = ExtensionContext::new("pulsar", &settings.into(), HostDirs::for_current_user());
    if let Err(err) = extension.start(ctx).await {
        eprintln!("pulsar-standalone: {err}");
        return ExitCode::FAILURE;
    }
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
    match extension.stop().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("pulsar-standalone: {err}");
            ExitCode::FAILURE
        }
    }
}
