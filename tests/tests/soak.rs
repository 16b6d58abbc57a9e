//! The soak: many sessions printing, many clients attached and streaming, `get_status`
//! polled throughout; the daemon's memory, descriptors and threads must stay flat and its
//! answers quick. Figures in docs/reliability.md.
//!
//! The default run is short (200 sessions, 20 clients, 10 s: about 15 s with its setup);
//! `scripts/soak SECONDS` runs the long one (1,000 sessions, 100 clients).
//! `PULSAR_SOAK_SESSIONS`, `PULSAR_SOAK_CLIENTS` and `PULSAR_SOAK_SECONDS` set each;
//! `PULSAR_SOAK_SCROLLBACK_BYTES` sets the daemon's `scrollback_bytes` (at 4096, every ring is
//! full after about 400 s of ticks, and from then on the history no longer grows: what RSS
//! does after that is the daemon's own). RSS is printed at every tenth of the run.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pulsar_e2e::*;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

/// A line a second, without a fork: bash's `read -t` times out on the silent terminal.
const TICKER: &str = r#"i=0; while :; do echo "tick $i"; i=$((i+1)); read -r -t 1 _; done"#;

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The daemon's resident memory (KiB), open descriptors and threads.
#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    rss_kib: u64,
    fds: u64,
    threads: u64,
}

fn sample(daemon: &Daemon) -> Sample {
    let pid = daemon.child.id();
    let count = |dir: String| std::fs::read_dir(dir).map_or(0, |d| d.count() as u64);
    Sample {
        rss_kib: daemon.rss_kib(),
        fds: count(format!("/proc/{pid}/fd")),
        threads: count(format!("/proc/{pid}/task")),
    }
}

/// A client attached to `session` and subscribed to its output, counting what arrives.
async fn attached_client(socket: &std::path::Path, session: &Value, received: Arc<AtomicU64>) {
    let stream = UnixStream::connect(socket).await.expect("connect");
    let (read, mut write) = stream.into_split();
    for (id, method, params) in [
        (
            1,
            "attach_session",
            json!({"session_id": session, "mode": "read_only"}),
        ),
        (2, "subscribe_output", json!({"session_id": session})),
    ] {
        let request = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        write
            .write_all(format!("{request}\n").as_bytes())
            .await
            .expect("write");
    }
    tokio::spawn(async move {
        let _write = write; // the connection stays open while the reader reads
        let mut lines = BufReader::new(read).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            received.fetch_add(line.len() as u64, Ordering::Relaxed);
        }
    });
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_printing_to_attached_clients_keep_memory_descriptors_and_threads_flat() {
    let sessions = setting("PULSAR_SOAK_SESSIONS", 200) as usize;
    let clients = setting("PULSAR_SOAK_CLIENTS", 20) as usize;
    let seconds = setting("PULSAR_SOAK_SECONDS", 10);
    let scrollback = std::env::var("PULSAR_SOAK_SCROLLBACK_BYTES").ok();
    let daemon = match &scrollback {
        Some(bytes) => Daemon::start_with(&[("SCROLLBACK_BYTES", bytes)]).await,
        None => Daemon::start().await,
    };

    let setup_started = Instant::now();
    let mut ids = Vec::new();
    let creators = 4;
    let mut tasks = Vec::new();
    for c in 0..creators {
        let socket = daemon.socket.clone();
        let count = sessions / creators + usize::from(c < sessions % creators);
        tasks.push(tokio::spawn(async move {
            let mut line = LineClient::connect(&socket).await;
            let mut ids = Vec::new();
            for _ in 0..count {
                let created = line
                    .ok(
                        "create_session",
                        json!({"type": {"kind": "local", "command": ["/bin/bash", "-c", TICKER]}}),
                    )
                    .await;
                ids.push(created["session_id"].clone());
            }
            ids
        }));
    }
    for task in tasks {
        ids.extend(task.await.unwrap());
    }
    let received = Arc::new(AtomicU64::new(0));
    for session in ids.iter().cycle().take(clients) {
        attached_client(&daemon.socket, session, Arc::clone(&received)).await;
    }
    let mut status = daemon.line().await;
    let listed = status.ok("get_status", json!({})).await;
    assert_eq!(listed["num_sessions"], sessions, "{listed}");
    eventually("every client attached", || async {
        let now = LineClient::connect(&daemon.socket)
            .await
            .ok("get_status", json!({}))
            .await;
        (now["num_clients"] == clients).then_some(())
    })
    .await;
    let setup = setup_started.elapsed();
    // One tick of every session has gone by: what is allocated per session is there.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let start = sample(&daemon);
    let mut peak = start;
    let mut latencies = Vec::new();
    let mut next_sample = Instant::now();
    let soak_started = Instant::now();
    // RSS at every tenth of the run: (seconds in, KiB).
    let mut curve: Vec<(u64, u64)> = Vec::new();
    while soak_started.elapsed() < Duration::from_secs(seconds) {
        let asked = Instant::now();
        status.ok("get_status", json!({})).await;
        latencies.push(asked.elapsed());
        if Instant::now() >= next_sample {
            let now = sample(&daemon);
            peak.rss_kib = peak.rss_kib.max(now.rss_kib);
            peak.fds = peak.fds.max(now.fds);
            peak.threads = peak.threads.max(now.threads);
            let elapsed = soak_started.elapsed().as_secs();
            if curve
                .last()
                .is_none_or(|(at, _)| elapsed >= at + seconds.div_ceil(10))
            {
                curve.push((elapsed, now.rss_kib));
            }
            next_sample += Duration::from_secs(1);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let end = sample(&daemon);
    curve.push((soak_started.elapsed().as_secs(), end.rss_kib));
    let curve: Vec<String> = curve
        .iter()
        .map(|(at, kib)| format!("{at}s {kib}"))
        .collect();
    eprintln!("soak: RSS (KiB) along the run: {}", curve.join(", "));
    latencies.sort();
    let received = received.load(Ordering::Relaxed);
    eprintln!(
        "soak: {sessions} sessions, {clients} clients, {seconds}s (setup {:.1}s): RSS \
         start/peak/end {}/{}/{} KiB, descriptors {}/{}/{}, threads {}/{}/{}; {} get_status \
         calls, p50 {:?}, p99 {:?}, max {:?}; {received} bytes streamed to the clients",
        setup.as_secs_f64(),
        start.rss_kib,
        peak.rss_kib.max(end.rss_kib),
        end.rss_kib,
        start.fds,
        peak.fds.max(end.fds),
        end.fds,
        start.threads,
        peak.threads.max(end.threads),
        end.threads,
        latencies.len(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().unwrap(),
    );
    // Output a second per session grows the scrollback by a few KiB a minute: allow that.
    let allowed_kib = 32 * 1024 + start.rss_kib / 4 + sessions as u64 * seconds / 8;
    assert!(
        end.rss_kib <= start.rss_kib + allowed_kib,
        "RSS grew from {} to {} KiB",
        start.rss_kib,
        end.rss_kib
    );
    assert!(
        end.fds <= start.fds + 4,
        "descriptors {} → {}",
        start.fds,
        end.fds
    );
    // Tokio's blocking pool comes and goes (store writes, checkpoints): a few either way.
    assert!(
        end.threads <= start.threads + 8,
        "threads {} → {}",
        start.threads,
        end.threads
    );
    assert!(received > 0, "the clients received no output");
    assert!(
        percentile(&latencies, 0.99) < Duration::from_secs(1),
        "get_status p99 {:?}",
        percentile(&latencies, 0.99)
    );
    // Every session is still there and running.
    let listed = status.ok("list_sessions", json!({})).await;
    let running = listed["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["state"] != "stopped")
        .count();
    assert_eq!(running, sessions, "sessions ended during the soak");
}
