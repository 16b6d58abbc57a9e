//! `orbit-host`: a minimal stand-in for the Orbit daemon. Loads every extension its config
//! enables, starts them, and stops them all on SIGTERM or SIGINT.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use orbit_api_stub::config::HostConfig;
use orbit_api_stub::{ExtensionContext, LoadedExtension, load_extension};
use tokio::signal::unix::{SignalKind, signal};

/// Host Orbit extensions (a stand-in for the Orbit daemon).
#[derive(Debug, Parser)]
#[command(version, about, long_about = None, after_help = "\
Example:
  orbit-host --config config/orbit.toml

Each [extensions.NAME] with enabled = true is loaded from its `library` and started with its
[extensions.NAME.settings] table. SIGTERM or SIGINT stops them in reverse order.")]
struct Args {
    /// The Orbit config file.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ORBIT_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("orbit-host: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let config = HostConfig::load(&args.config)?;
    let dirs = config.dirs();
    let mut terminate = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;

    let mut started: Vec<LoadedExtension> = Vec::new();
    for (name, entry) in config.enabled() {
        let loaded = match load_extension(&entry.library) {
            Ok(loaded) => loaded,
            Err(err) => {
                stop_all(&mut started).await;
                return Err(err).with_context(|| format!("extension {name}"));
            }
        };
        let ctx = ExtensionContext::new(name, &entry.settings_json(), dirs.clone());
        if let Err(err) = loaded.extension().start(ctx).await {
            stop_all(&mut started).await;
            anyhow::bail!("extension {name} failed to start: {err}");
        }
        tracing::info!(
            extension = name,
            version = loaded.extension().version(),
            library = %loaded.path().display(),
            "extension started"
        );
        started.push(loaded);
    }
    if started.is_empty() {
        tracing::warn!(config = %args.config.display(), "no extension is enabled");
    }

    tokio::select! {
        _ = terminate.recv() => tracing::info!("SIGTERM: stopping"),
        _ = interrupt.recv() => tracing::info!("SIGINT: stopping"),
    }
    stop_all(&mut started).await;
    Ok(())
}

/// Stops extensions in reverse start order; a failure is logged and the rest still stop.
async fn stop_all(started: &mut Vec<LoadedExtension>) {
    while let Some(loaded) = started.pop() {
        let name = loaded.extension().name().to_owned();
        match loaded.extension().stop().await {
            Ok(()) => tracing::info!(extension = %name, "extension stopped"),
            Err(err) => tracing::error!(extension = %name, "extension failed to stop: {err}"),
        }
    }
}
