//! `pulsar-bench`: Pulsar's benchmarks, each against a baseline measured in the same run
//! (this machine is shared and noisy, so only same-run ratios mean much).
//!
//! Run with `scripts/bench` (release build). Prints a Markdown table; docs/benchmarks.md
//! quotes it.

use std::io::{Read as _, Write as _};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use portable_pty::{CommandBuilder, PtySize, native_pty_system};
use pulsar_e2e::sshd::{Sshd, TEST_USER, sshd_available};
use pulsar_e2e::{Daemon, artifact, command, read_until, start_program};
use pulsar_protocol::{
    Base64Data, OutputEvent, PulsarApiClient as _, PulsarClient, SessionId, TransferApiClient as _,
};

/// Latency statistics of a sample, in microseconds.
struct Stats {
    p50: f64,
    p99: f64,
}

fn stats(mut samples: Vec<Duration>) -> Stats {
    samples.sort();
    let at = |q: f64| {
        let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples[i].as_secs_f64() * 1e6
    };
    Stats {
        p50: at(0.50),
        p99: at(0.99),
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

struct Report(Vec<String>);

impl Report {
    fn row(&mut self, what: &str, pulsar: String, baseline: String, ratio: String) {
        let line = format!("| {what} | {pulsar} | {baseline} | {ratio} |");
        println!("{line}");
        self.0.push(line);
    }
}

/// Keystroke echo samples in pairs: each key through a bare PTY, then right after through
/// Pulsar, so the difference of a pair is what Pulsar adds to that key.
#[derive(Default)]
struct EchoPairs {
    bare: Vec<Duration>,
    ours: Vec<Duration>,
    added: Vec<f64>,
}

impl EchoPairs {
    fn push(&mut self, bare: Duration, ours: Duration) {
        self.bare.push(bare);
        self.ours.push(ours);
        self.added.push(ours.as_secs_f64() - bare.as_secs_f64());
    }

    /// Two rows: both distributions side by side (`what`), and the per-key difference
    /// (`added`; its p99 is not the difference of the two p99s). With `pooled` (every bare
    /// key of the run's interleaved rows, `pooled_keys` of them), the ratio against that
    /// common baseline too: each row's own bare keys differ from row to row in a way not
    /// explained (docs/benchmarks.md, 2026-12-04), and the pool is the same for all rows.
    fn report(
        mut self,
        report: &mut Report,
        what: &str,
        added: &str,
        pooled: Option<(&Stats, usize)>,
    ) {
        let (bare, ours) = (stats(self.bare), stats(self.ours));
        self.added.sort_by(f64::total_cmp);
        let n = self.added.len();
        let added_at = |q: f64| self.added[((n as f64 - 1.0) * q).round() as usize] * 1e6;
        let mut ratio = format!("{:.1}× / {:.1}×", ours.p50 / bare.p50, ours.p99 / bare.p99);
        if let Some((pool, keys)) = pooled {
            ratio += &format!(
                " ({:.1}× / {:.1}× of all {keys} bare keys, {:.0} / {:.0} µs)",
                ours.p50 / pool.p50,
                ours.p99 / pool.p99,
                pool.p50,
                pool.p99
            );
        }
        report.row(
            what,
            format!("{:.0} / {:.0} µs", ours.p50, ours.p99),
            format!("bare PTY {:.0} / {:.0} µs", bare.p50, bare.p99),
            ratio,
        );
        report.row(
            added,
            format!("{:.0} / {:.0} µs", added_at(0.50), added_at(0.99)),
            "-".to_owned(),
            "-".to_owned(),
        );
    }
}

/// A session running `argv` in an 80×24 terminal.
async fn create_80x24(client: &PulsarClient, argv: &[&str]) -> SessionId {
    client
        .create_session(None, command(argv), Some(80), Some(24), None, None, None)
        .await
        .unwrap()
        .session_id
}

/// `pulsar attach ID` (with `flags`: `--relay`, or none) running in a bare 80×24 PTY, once
/// its snapshot has shown the session's "R" (the session printed it): attached.
fn attach_in_pty(
    socket: &Path,
    id: SessionId,
    flags: &str,
) -> (
    Box<dyn portable_pty::Child + Send + Sync>,
    Box<dyn std::io::Read + Send>,
    Box<dyn std::io::Write + Send>,
) {
    let (child, mut reader, writer) = bare_pty(&format!(
        "exec '{}' --socket '{}' attach {flags} {}",
        artifact("pulsar").display(),
        socket.display(),
        id
    ));
    read_to_mark(&mut reader, b"R");
    (child, reader, writer)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let only: Vec<String> = std::env::args().skip(1).collect();
    let wanted = |name: &str| only.is_empty() || only.iter().any(|o| name.contains(o.as_str()));
    println!(
        "pulsar-bench on {} cores, {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        artifact("pulsar-standalone").display()
    );
    println!();
    println!("| measure | Pulsar | baseline (same run) | ratio |");
    println!("| --- | --- | --- | --- |");
    let mut report = Report(Vec::new());
    if wanted("status") {
        get_status(&mut report).await;
    }
    if wanted("create") {
        session_create(&mut report).await;
    }
    if wanted("throughput") {
        throughput(&mut report).await;
    }
    if wanted("echo") {
        echo_latency(&mut report).await;
    }
    if wanted("busy") {
        status_while_streaming(&mut report).await;
    }
    if wanted("reattach") {
        reattach(&mut report).await;
    }
    if wanted("memory") {
        memory(&mut report).await;
    }
    if wanted("hibernate") {
        hibernate(&mut report).await;
    }
    if wanted("db") {
        database_writes(&mut report).await;
    }
    if wanted("restore") {
        restore_time(&mut report).await;
    }
    if wanted("upgrade") {
        upgrade(&mut report).await;
    }
    if wanted("attachpty") {
        attach_throughput(&mut report).await;
    }
    if wanted("typing") {
        attach_echo(&mut report).await;
    }
    if wanted("crashloss") {
        crash_loss(&mut report).await;
    }
    if wanted("ssh") {
        ssh(&mut report, false).await;
    } else if wanted("forward") {
        // Only the forward throughput of the ssh phase.
        ssh(&mut report, true).await;
    }
    if wanted("transfer") {
        transfer(&mut report).await;
    }
    if wanted("keeper") {
        keeper_at_scale(&mut report);
    }
}

/// A keeper alone (its binary on a socket of its own, this bench its only client), holding
/// 0, 500, 1000 and 2000 programs (`sleep`) in PTYs: what a spawn and a status request cost
/// with that many held, beside the same with none held; then ending everything it holds.
fn keeper_at_scale(report: &mut Report) {
    use pulsar_keeper::client::Client;
    use pulsar_keeper::wire::{Reply, Request, SpawnRequest};

    struct Kept {
        child: std::process::Child,
        client: Client,
        _dir: tempfile::TempDir,
    }
    impl Drop for Kept {
        fn drop(&mut self) {
            let _ = self.client.call(&Request::TerminateAll, &[]);
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
    let start = || {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("keeper.sock");
        let child = Command::new(artifact("pulsar-keeper"))
            .arg("--socket")
            .arg(&socket)
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let client = loop {
            if let Ok(client) = Client::connect(&socket) {
                break client;
            }
            assert!(Instant::now() < deadline, "the keeper never listened");
            std::thread::sleep(Duration::from_millis(10));
        };
        Kept {
            child,
            client,
            _dir: dir,
        }
    };
    let spawn = |client: &Client, id: String, argv: &[&str]| {
        let request = Request::Spawn(SpawnRequest {
            id,
            meta: String::new(),
            command: Some(argv.iter().map(|a| (*a).to_owned()).collect()),
            cwd: "/".into(),
            env: Vec::new(),
            cols: 80,
            rows: 24,
            limits: None,
        });
        let started = Instant::now();
        let (reply, _master) = client.call(&request, &[]).unwrap();
        assert!(matches!(reply, Reply::Spawned { .. }), "{reply:?}");
        started.elapsed()
    };
    let hold = |kept: &Kept, from: usize, to: usize| {
        for i in from..to {
            spawn(&kept.client, format!("held-{i}"), &["sleep", "1000"]);
        }
    };
    let measure = |kept: &Kept, tag: usize| {
        let spawns: Vec<Duration> = (0..30)
            .map(|i| spawn(&kept.client, format!("probe-{tag}-{i}"), &["true"]))
            .collect();
        let status = Request::Status {
            id: format!("probe-{tag}-0"),
        };
        let statuses: Vec<Duration> = (0..300)
            .map(|_| {
                let started = Instant::now();
                kept.client.call(&status, &[]).unwrap();
                started.elapsed()
            })
            .collect();
        (stats(spawns), stats(statuses))
    };
    let kept = start();
    let (spawn0, status0) = measure(&kept, 0);
    let mut held = 0;
    for target in [500usize, 1000, 2000] {
        hold(&kept, held, target);
        held = target;
        let (spawn, status) = measure(&kept, target);
        report.row(
            &format!("keeper alone: a spawn p50 / p99 with {target} programs held"),
            format!("{:.2} / {:.2} ms", spawn.p50 / 1000.0, spawn.p99 / 1000.0),
            format!(
                "none held {:.2} / {:.2} ms",
                spawn0.p50 / 1000.0,
                spawn0.p99 / 1000.0
            ),
            format!("{:.2}×", spawn.p50 / spawn0.p50),
        );
        report.row(
            &format!("keeper alone: a status request p50 / p99 with {target} programs held"),
            format!("{:.0} / {:.0} µs", status.p50, status.p99),
            format!("none held {:.0} / {:.0} µs", status0.p50, status0.p99),
            format!("{:.2}×", status.p50 / status0.p50),
        );
    }
    // Ending everything: a keeper holding 200, then this one holding 2000.
    let small = start();
    hold(&small, 0, 200);
    let timed_end = |kept: &Kept| {
        let started = Instant::now();
        // An error is the client's own timeout: no answer in time.
        match kept.client.call(&Request::TerminateAll, &[]) {
            Ok(_) => format!("{:.0} ms", started.elapsed().as_secs_f64() * 1000.0),
            Err(err) => format!(
                "no answer after {:.0} s ({err})",
                started.elapsed().as_secs_f64()
            ),
        }
    };
    let end_small = timed_end(&small);
    drop(small);
    let end_all = timed_end(&kept);
    drop(kept);
    report.row(
        &format!("keeper alone: ending everything (terminate_all) with {held} programs held"),
        end_all,
        format!("200 held {end_small}"),
        "-".to_owned(),
    );
}

/// The pause an attached client sees while the daemon is replaced (`upgrade_daemon`), with 1,
/// 100 and 1000 sessions, beside the gaps between the same output lines with no upgrade; and
/// the keeper's memory per held session.
async fn upgrade(report: &mut Report) {
    for (sessions, upgrades) in [(1usize, 20usize), (100, 20), (1000, 5)] {
        let daemon = Daemon::start_with(&[("LOG_LEVEL", "warn"), ("MAX_SESSIONS", "2000")]).await;
        let client = daemon.client().await;
        let keeper_pid = client
            .get_status()
            .await
            .unwrap()
            .keeper
            .expect("a keeper")
            .pid;
        let keeper_before = private_kib(keeper_pid);
        // One session prints a line every ~2 ms; the rest are idle cats.
        let ticker = client
            .create_session(
                None,
                command(&["/bin/sh", "-c", "while :; do echo tick; sleep 0.002; done"]),
                None,
                None,
                None,
                None,
                None,
            )
            .await
            .unwrap()
            .session_id;
        for _ in 1..sessions {
            client
                .create_session(None, command(&["/bin/cat"]), None, None, None, None, None)
                .await
                .unwrap();
        }
        let keeper_per =
            (private_kib(keeper_pid).saturating_sub(keeper_before)) as f64 / sessions as f64;
        drop(client);
        // Baseline: the gaps between output events with nothing happening.
        let mut follower = Follower::start(&daemon.socket, ticker).await;
        let mut quiet = Vec::new();
        for _ in 0..500 {
            quiet.push(follower.next_gap().await);
        }
        let mut pauses = Vec::new();
        for _ in 0..upgrades {
            let to = {
                let client = pulsar_protocol::connect(&daemon.socket).await.unwrap();
                client.upgrade_daemon(None).await.expect("upgrade").to_pid
            };
            // The longest gap the follower sees until it reads from the new daemon.
            let mut longest = Duration::ZERO;
            loop {
                longest = longest.max(follower.next_gap().await);
                if follower.served_by == Some(to) {
                    break;
                }
            }
            pauses.push(longest);
        }
        let (pause, quiet) = (stats(pauses), stats(quiet));
        report.row(
            &format!("pause an attached client sees during an upgrade, {sessions} sessions ({upgrades} upgrades)"),
            format!("p50 {:.1} / p99 {:.1} ms", pause.p50 / 1e3, pause.p99 / 1e3),
            format!("gaps with no upgrade p50 {:.1} / p99 {:.1} ms", quiet.p50 / 1e3, quiet.p99 / 1e3),
            format!("{:.0}× / {:.0}×", pause.p50 / quiet.p50.max(1.0), pause.p99 / quiet.p99.max(1.0)),
        );
        report.row(
            &format!("keeper private memory per held session, {sessions} sessions"),
            format!("{keeper_per:.1} KiB"),
            format!("keeper before {keeper_before} KiB"),
            "-".to_owned(),
        );
        drop(follower);
        drop(daemon);
    }
}

/// Throughput as a person sees it: `pulsar attach` in a real PTY (80x24) showing a session
/// whose program floods, beside the same program straight in a PTY, in turns; an endless line
/// and 64-byte lines. Bytes counted at the outer terminal until the program's end mark.
async fn attach_throughput(report: &mut Report) {
    const BYTES: usize = 64 * 1024 * 1024;
    const RUNS: usize = 5;
    let endless = format!("head -c {BYTES} /dev/zero | tr '\\0' a");
    let lines = format!("yes {} | head -c {BYTES}", "a".repeat(63));
    let daemon = Daemon::start_with(&[("LOG_LEVEL", "warn")]).await;
    for (what, producer) in [
        ("one endless line of `a`", endless),
        ("64-byte lines", lines),
    ] {
        let mut bare = Vec::new();
        let mut ours = Vec::new();
        let mut relayed = Vec::new();
        let mut dtach = Vec::new();
        let mut script = Vec::new();
        for _ in 0..RUNS {
            bare.push(bare_until_mark(&producer));
            script.push(script_relay_until_mark(&producer));
            ours.push(attached_until_mark(&daemon, &producer, "").await);
            relayed.push(attached_until_mark(&daemon, &producer, "--relay").await);
            if let Some(master) = Dtach::start(&script_until_mark(&producer)) {
                dtach.push(master.until_mark());
            }
        }
        let (bare, ours, relayed, script) =
            (median(bare), median(ours), median(relayed), median(script));
        report.row(
            &format!("through `pulsar attach` in a PTY, {what} (median of {RUNS} × 64 MiB)"),
            format!("{:.1} MB/s", ours / 1e6),
            format!("bare PTY {:.1} MB/s", bare / 1e6),
            format!("{:.0} %", 100.0 * ours / bare),
        );
        report.row(
            &format!(
                "the same through `pulsar attach --relay` (the client carries the bytes), {what}"
            ),
            format!("{:.1} MB/s", relayed / 1e6),
            format!("bare PTY {:.1} MB/s", bare / 1e6),
            format!(
                "{:.0} % (hand-over {:.0} % of relay)",
                100.0 * relayed / bare,
                100.0 * ours / relayed
            ),
        );
        // Another relay's row: its rate, its share of bare, and Pulsar's share of it.
        let mut baseline = |how: &str, name: &str, rate: f64| {
            report.row(
                &format!("the same through {how}, {what}"),
                format!("{name} {:.1} MB/s", rate / 1e6),
                format!("bare PTY {:.1} MB/s", bare / 1e6),
                format!(
                    "{:.0} % (Pulsar {:.0} % of {name})",
                    100.0 * rate / bare,
                    100.0 * ours / rate
                ),
            );
        };
        baseline(
            "`script -q -c … /dev/null` in a PTY (one process relaying two PTYs, no screen model)",
            "script",
            script,
        );
        if !dtach.is_empty() {
            baseline(
                "`dtach -a` in a PTY (one relay hop, no screen model)",
                "dtach",
                median(dtach),
            );
        }
    }
    daemon.stop();
}

/// Keystroke echo as a person sees it: a key typed into the terminal `pulsar attach` runs
/// in, to a session running a raw `cat`, until the echo is back on that terminal; each key
/// right after one through a bare PTY's raw `cat`.
async fn attach_echo(report: &mut Report) {
    const N: usize = 1000;
    const WARM_UP: usize = 50;
    // Keys typed after a quiet long enough for the session's pump to park.
    const AFTER_PARK: usize = 30;
    let bare_echo = BarePtyEcho::start();
    // Parking soon, so that the keys after a park are quick to sample (the keys of the main
    // run come well inside it); `PULSAR_BENCH_PARK_AFTER_MS=0`: parking off, the same keys
    // each after 600 ms of quiet, for the cost of the quiet alone.
    let park_after = std::env::var("PULSAR_BENCH_PARK_AFTER_MS").unwrap_or_else(|_| "300".into());
    let parks = park_after != "0";
    let daemon = Daemon::start_with(&[("LOG_LEVEL", "warn"), ("PARK_AFTER_MS", &park_after)]).await;
    let client = daemon.client().await;
    let status_client = daemon.client().await;
    let runtime = tokio::runtime::Handle::current();
    let id = create_80x24(
        &client,
        &["/bin/sh", "-c", "stty raw -echo; echo R; exec cat"],
    )
    .await;
    pulsar_e2e::read_until(&client, id, "R").await;
    // The daemon's share alone: a session of its own (an echo reaches every client of a
    // session), typed into from this process.
    let raw_id = create_80x24(
        &client,
        &["/bin/sh", "-c", "stty raw -echo; echo R; exec cat"],
    )
    .await;
    pulsar_e2e::read_until(&client, raw_id, "R").await;
    // `pulsar attach --relay` on a session of its own too.
    let relay_id = create_80x24(
        &client,
        &["/bin/sh", "-c", "stty raw -echo; echo R; exec cat"],
    )
    .await;
    pulsar_e2e::read_until(&client, relay_id, "R").await;
    let socket = daemon.socket.clone();
    let (pairs, relay_pairs, dtach_pairs, raw_pairs, dtach_raw_pairs, parked_pairs) =
        tokio::task::spawn_blocking(move || {
            let (mut child, mut reader, mut writer) = attach_in_pty(&socket, id, "");
            let (mut relay_child, mut relay_reader, mut relay_writer) =
                attach_in_pty(&socket, relay_id, "--relay");
            let dtach = Dtach::start_after("stty raw -echo;", "exec cat");
            let mut dtach_client = dtach.as_ref().map(Dtach::attach_for_echo);
            let mut raw = RawEcho::pulsar(&socket, raw_id);
            let dtach_raw_master = Dtach::start_after("stty raw -echo;", "exec cat");
            let mut dtach_raw = dtach_raw_master.as_ref().map(Dtach::raw_for_echo);
            for _ in 0..WARM_UP {
                echo_once("pulsar attach", &mut reader, &mut writer);
                echo_once(
                    "pulsar attach --relay",
                    &mut relay_reader,
                    &mut relay_writer,
                );
                if let Some((_, reader, writer)) = &mut dtach_client {
                    echo_once("dtach -a", reader, writer);
                }
                raw.echo_once();
                if let Some(dtach_raw) = &mut dtach_raw {
                    dtach_raw.echo_once();
                }
            }
            let mut pairs = EchoPairs::default();
            let mut relay_pairs = EchoPairs::default();
            let mut dtach_pairs = EchoPairs::default();
            let mut raw_pairs = EchoPairs::default();
            let mut dtach_raw_pairs = EchoPairs::default();
            for _ in 0..N {
                let baseline = bare_echo.sample();
                pairs.push(
                    baseline,
                    echo_once("pulsar attach", &mut reader, &mut writer),
                );
                let baseline = bare_echo.sample();
                relay_pairs.push(
                    baseline,
                    echo_once(
                        "pulsar attach --relay",
                        &mut relay_reader,
                        &mut relay_writer,
                    ),
                );
                if let Some((_, reader, writer)) = &mut dtach_client {
                    let baseline = bare_echo.sample();
                    dtach_pairs.push(baseline, echo_once("dtach -a", reader, writer));
                }
                let baseline = bare_echo.sample();
                raw_pairs.push(baseline, raw.echo_once());
                if let Some(dtach_raw) = &mut dtach_raw {
                    let baseline = bare_echo.sample();
                    dtach_raw_pairs.push(baseline, dtach_raw.echo_once());
                }
            }
            drop(raw);
            drop(dtach_raw);
            let _ = relay_child.kill();
            let _ = relay_child.wait();
            for (child, _, _) in dtach_client.iter_mut() {
                let _ = child.kill();
                let _ = child.wait();
            }
            let mut parked_pairs = EchoPairs::default();
            for _ in 0..AFTER_PARK {
                let deadline = Instant::now() + Duration::from_secs(10);
                while parks
                    && runtime
                        .block_on(status_client.get_status())
                        .unwrap()
                        .num_parked
                        == 0
                {
                    assert!(Instant::now() < deadline, "the typing session never parked");
                    std::thread::sleep(Duration::from_millis(20));
                }
                if !parks {
                    std::thread::sleep(Duration::from_millis(600));
                }
                let baseline = bare_echo.sample();
                parked_pairs.push(
                    baseline,
                    echo_once("pulsar attach", &mut reader, &mut writer),
                );
            }
            let _ = child.kill();
            let _ = child.wait();
            (
                pairs,
                relay_pairs,
                dtach_pairs,
                raw_pairs,
                dtach_raw_pairs,
                parked_pairs,
            )
        })
        .await
        .unwrap();
    // The common baseline: every bare key typed between the rows' keys.
    let pool: Vec<Duration> = [
        &pairs,
        &relay_pairs,
        &dtach_pairs,
        &raw_pairs,
        &dtach_raw_pairs,
    ]
    .iter()
    .flat_map(|row| row.bare.iter().copied())
    .collect();
    let pooled_keys = pool.len();
    let pool = stats(pool);
    let pooled = Some((&pool, pooled_keys));
    pairs.report(
        report,
        &format!(
            "keystroke echo through `pulsar attach` in a PTY, p50 / p99 ({N} keys, each also through a bare PTY right before)"
        ),
        &format!("added echo latency through `pulsar attach` p50 / p99, per key ({N} pairs)"),
        pooled,
    );
    relay_pairs.report(
        report,
        &format!(
            "the same through `pulsar attach --relay` (the client carries the bytes), p50 / p99 ({N} keys, interleaved)"
        ),
        &format!(
            "added echo latency through `pulsar attach --relay` p50 / p99, per key ({N} pairs)"
        ),
        pooled,
    );
    if !dtach_pairs.ours.is_empty() {
        dtach_pairs.report(
            report,
            &format!(
                "the same through `dtach -a` in a PTY (one relay hop, no screen model), p50 / p99 ({N} keys, interleaved with Pulsar's)"
            ),
            &format!("added echo latency through `dtach -a` p50 / p99, per key ({N} pairs)"),
            pooled,
        );
    }
    raw_pairs.report(
        report,
        &format!(
            "the daemon's share: a key as an input frame on an attach stream from the bench (no client program, no outer PTY) to its output frame, p50 / p99 ({N} keys, interleaved)"
        ),
        &format!("added echo latency of the daemon alone p50 / p99, per key ({N} pairs)"),
        pooled,
    );
    if !dtach_raw_pairs.ours.is_empty() {
        dtach_raw_pairs.report(
            report,
            &format!(
                "the same for dtach's master: a key as a packet on its socket from the bench to its echo, p50 / p99 ({N} keys, interleaved)"
            ),
            &format!("added echo latency of dtach's master alone p50 / p99, per key ({N} pairs)"),
            pooled,
        );
    }
    let after = if parks {
        "the session's pump parked (quiet for `park_after_ms`)"
    } else {
        "600 ms of quiet, parking off"
    };
    parked_pairs.report(
        report,
        &format!(
            "keystroke echo through `pulsar attach`, the first key after {after}, p50 / p99 ({AFTER_PARK} keys, each after a bare PTY key)"
        ),
        &format!(
            "added echo latency of the first key after {after} p50 / p99, per key ({AFTER_PARK} pairs)"
        ),
        None,
    );
    daemon.stop();
}

/// One key typed into a client's terminal, timed until its echo is back there (whatever
/// else the client writes first, such as the rest of a redraw, is skipped). Panics on two
/// echoes at once: the client and the measure would be out of step, every later sample an
/// earlier key's echo.
fn echo_once(
    what: &str,
    reader: &mut dyn std::io::Read,
    writer: &mut dyn std::io::Write,
) -> Duration {
    let mut buf = [0u8; 4096];
    let start = Instant::now();
    writer.write_all(b"k").unwrap();
    loop {
        let n = reader.read(&mut buf).unwrap();
        assert!(n > 0, "the attached client ended");
        match buf[..n].iter().filter(|&&b| b == b'k').count() {
            0 => {}
            1 => return start.elapsed(),
            echoes => panic!(
                "{what}: {echoes} echoes of one key, the measure is out of step: {:?}",
                String::from_utf8_lossy(&buf[..n])
            ),
        }
    }
}

/// A key's echo timed from this process's own end of a socket, without a client program or
/// an outer terminal: what the daemon (or dtach's master) adds on its own.
struct RawEcho {
    stream: StdUnixStream,
    /// The key as the server takes it.
    key: Vec<u8>,
    /// Pulsar's attach stream frames its output; dtach's master sends it as it is.
    framed: bool,
    /// Bytes read and not yet looked at (framed: a frame's start).
    read: Vec<u8>,
}

impl RawEcho {
    /// An attach stream to `id`, read once its first key has echoed (its screen skipped).
    fn pulsar(socket: &Path, id: SessionId) -> Self {
        use pulsar_protocol::stream::{MAGIC, StreamHello, header, kind};
        let mut stream = StdUnixStream::connect(socket).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let hello = StreamHello {
            session_id: id,
            client_id: None,
            mode: None,
            cols: Some(80),
            rows: Some(24),
            since: None,
            terminal: None,
        };
        let mut line = vec![MAGIC];
        serde_json::to_writer(&mut line, &hello).unwrap();
        line.push(b'\n');
        stream.write_all(&line).unwrap();
        let mut key = header(kind::INPUT, 1).to_vec();
        key.push(b'k');
        let mut echo = Self {
            stream,
            key,
            framed: true,
            read: Vec::new(),
        };
        // The answer line, then whatever comes before the first key's echo.
        while !echo.read.contains(&b'\n') {
            echo.fill();
        }
        let end = echo.read.iter().position(|&b| b == b'\n').unwrap() + 1;
        let answer = String::from_utf8_lossy(&echo.read[..end]).into_owned();
        assert!(answer.contains("\"result\""), "attach refused: {answer}");
        echo.read.drain(..end);
        echo.first_key();
        echo
    }

    /// A client of dtach's master on its socket, as `dtach -a` is (an attach packet), read
    /// once its first key has echoed.
    fn dtach(socket: &Path) -> Self {
        // dtach's packet: its type, the length used, and 8 bytes (a `struct winsize`).
        const PACKET: usize = 10;
        const MSG_PUSH: u8 = 0;
        const MSG_ATTACH: u8 = 1;
        let mut stream = StdUnixStream::connect(socket).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut attach = [0u8; PACKET];
        attach[0] = MSG_ATTACH;
        stream.write_all(&attach).unwrap();
        let mut key = vec![0u8; PACKET];
        key[0] = MSG_PUSH;
        key[1] = 1;
        key[2] = b'k';
        let mut echo = Self {
            stream,
            key,
            framed: false,
            read: Vec::new(),
        };
        echo.first_key();
        echo
    }

    /// Reads once more into `read`.
    fn fill(&mut self) {
        let mut buf = [0u8; 4096];
        let n = self.stream.read(&mut buf).unwrap();
        assert!(n > 0, "the echo's server closed the connection");
        self.read.extend_from_slice(&buf[..n]);
    }

    /// Types one key and skips everything until its echo (the first output may be a screen).
    fn first_key(&mut self) {
        self.stream.write_all(&self.key).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.output_ks() == 0 {
            assert!(Instant::now() < deadline, "the first key never echoed");
            self.fill();
        }
    }

    /// How many echoed keys the output read so far holds, taking it (framed: whole frames
    /// only; a screen frame's bytes are not output and are not counted).
    fn output_ks(&mut self) -> usize {
        use pulsar_protocol::stream::{HEADER_LEN, kind};
        if !self.framed {
            let ks = self.read.iter().filter(|&&b| b == b'k').count();
            self.read.clear();
            return ks;
        }
        let mut ks = 0;
        while self.read.len() >= HEADER_LEN {
            let len = u32::from_le_bytes(self.read[1..HEADER_LEN].try_into().unwrap()) as usize;
            if self.read.len() < HEADER_LEN + len {
                break;
            }
            if self.read[0] == kind::OUTPUT {
                let payload = &self.read[HEADER_LEN..HEADER_LEN + len];
                ks += payload.iter().filter(|&&b| b == b'k').count();
            }
            self.read.drain(..HEADER_LEN + len);
        }
        ks
    }

    /// One key, timed until its echo is back.
    fn echo_once(&mut self) -> Duration {
        let start = Instant::now();
        self.stream.write_all(&self.key).unwrap();
        loop {
            self.fill();
            match self.output_ks() {
                0 => {}
                1 => return start.elapsed(),
                echoes => panic!("{echoes} echoes of one key on a raw stream"),
            }
        }
    }
}

/// A program under a dtach master (`dtach -n`), the baseline of one relay hop without a
/// screen model; `None` when dtach is not installed. Dropping it ends the program, and with
/// it the master.
struct Dtach {
    dir: tempfile::TempDir,
}

impl Dtach {
    /// `script` under a dtach master, started once its shell is (its process id written).
    fn start(script: &str) -> Option<Self> {
        Self::start_after("", script)
    }

    /// `script` under a dtach master, started once `setup` has run (its process id written
    /// after it): keys typed before a `stty raw -echo` took effect would be echoed twice.
    fn start_after(setup: &str, script: &str) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        let started = std::process::Command::new("dtach")
            .arg("-n")
            .arg(dir.path().join("sock"))
            .args(["-z", "/bin/sh", "-c"])
            .arg(format!(
                "{setup} echo $$ > '{}'; {script}",
                pid_file.display()
            ))
            .status();
        if !started.is_ok_and(|status| status.success()) {
            return None;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::read_to_string(&pid_file).map_or(true, |pid| !pid.ends_with('\n')) {
            assert!(Instant::now() < deadline, "dtach's program did not start");
            std::thread::sleep(Duration::from_millis(5));
        }
        Some(Self { dir })
    }

    /// `dtach -a` in a bare 80×24 PTY (no redraw, no detach or suspend key).
    fn attach_in_pty(
        &self,
    ) -> (
        Box<dyn portable_pty::Child + Send + Sync>,
        Box<dyn std::io::Read + Send>,
        Box<dyn std::io::Write + Send>,
    ) {
        bare_pty(&format!(
            "exec dtach -a '{}' -E -z -r none",
            self.dir.path().join("sock").display()
        ))
    }

    /// [`Self::attach_in_pty`] for an echo: once a first key's echo is back from the program,
    /// so that keys typed before the client had connected (sent all at once when it does)
    /// cannot answer later ones.
    fn attach_for_echo(
        &self,
    ) -> (
        Box<dyn portable_pty::Child + Send + Sync>,
        Box<dyn std::io::Read + Send>,
        Box<dyn std::io::Write + Send>,
    ) {
        let (child, mut reader, mut writer) = self.attach_in_pty();
        // dtach clears the screen once it has attached, its terminal raw.
        read_to_mark(&mut reader, b"\x1b[J");
        writer.write_all(b"S").unwrap();
        read_to_mark(&mut reader, b"S");
        (child, reader, writer)
    }

    /// [`RawEcho::dtach`] on this master's socket.
    fn raw_for_echo(&self) -> RawEcho {
        RawEcho::dtach(&self.dir.path().join("sock"))
    }

    /// Bytes per second of its program (a [`script_until_mark`]), shown by `dtach -a`,
    /// timed from the keystroke that starts it to its mark.
    fn until_mark(self) -> f64 {
        let (mut child, mut reader, mut writer) = self.attach_in_pty();
        let start = Instant::now();
        writer.write_all(b"\n").unwrap();
        let total = read_to_mark(&mut reader, b"END-42-MARK");
        let rate = total as f64 / start.elapsed().as_secs_f64();
        let _ = child.kill();
        let _ = child.wait();
        rate
    }
}

impl Drop for Dtach {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.dir.path().join("pid"))
            && let Ok(pid) = pid.trim().parse::<i32>()
        {
            // Its terminal's session leader: the whole group goes (the pipeline, `sleep`).
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// A script that waits for a line, runs `producer`, then prints a mark and waits.
fn script_until_mark(producer: &str) -> String {
    format!("stty -echo; echo R; read go; {producer}; echo; echo END-$((6*7))-MARK; sleep 30")
}

/// Reads `reader` until `mark` has been seen; returns the bytes read.
fn read_to_mark(reader: &mut dyn std::io::Read, mark: &[u8]) -> usize {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0usize;
    let mut tail: Vec<u8> = Vec::new();
    loop {
        match reader.read(&mut buf) {
            Ok(0) | Err(_) => return total,
            Ok(n) => {
                total += n;
                tail.extend_from_slice(&buf[..n]);
                if tail.windows(mark.len()).any(|w| w == mark) {
                    return total;
                }
                let keep = tail.len().saturating_sub(mark.len());
                tail.drain(..keep);
            }
        }
    }
}

/// Bytes per second of `producer` straight in a PTY, timed from the keystroke to its mark.
fn bare_until_mark(producer: &str) -> f64 {
    pty_until_mark(&script_until_mark(producer))
}

/// The same through `script(1)` (util-linux) in the PTY: one process relaying between that
/// terminal and a PTY of its own, with blocking writes and no screen model; the hand-over's
/// shape (one relaying process, two PTYs) without a daemon.
fn script_relay_until_mark(producer: &str) -> f64 {
    let quoted = script_until_mark(producer).replace('\'', r"'\''");
    pty_until_mark(&format!("exec script -q -c '{quoted}' /dev/null"))
}

/// Bytes per second of the shell command `script` in a PTY, timed from the keystroke its
/// "R" waits for to its mark.
fn pty_until_mark(script: &str) -> f64 {
    let (mut child, mut reader, mut writer) = bare_pty(script);
    read_to_mark(&mut reader, b"R");
    let start = Instant::now();
    writer.write_all(b"\n").unwrap();
    let total = read_to_mark(&mut reader, b"END-42-MARK");
    let rate = total as f64 / start.elapsed().as_secs_f64();
    let _ = child.kill();
    let _ = child.wait();
    rate
}

/// Bytes per second of `producer` in a session, shown by `pulsar attach` running in a PTY.
async fn attached_until_mark(daemon: &Daemon, producer: &str, flags: &'static str) -> f64 {
    let client = daemon.client().await;
    let script = script_until_mark(producer);
    let id = create_80x24(&client, &["/bin/sh", "-c", &script]).await;
    pulsar_e2e::read_until(&client, id, "R").await;
    let socket = daemon.socket.clone();
    let rate = tokio::task::spawn_blocking(move || {
        let (mut child, mut reader, mut writer) = attach_in_pty(&socket, id, flags);
        let start = Instant::now();
        writer.write_all(b"\n").unwrap();
        let total = read_to_mark(&mut reader, b"END-42-MARK");
        let rate = total as f64 / start.elapsed().as_secs_f64();
        let _ = child.kill();
        let _ = child.wait();
        rate
    })
    .await
    .unwrap();
    let _ = client.terminate_session(id).await;
    rate
}

/// What a `kill -9` of the daemon loses of a running program's output: the program (held by
/// the keeper) counts on, and the lines between the last saved one and the first one the next
/// daemon reads are the loss, here in milliseconds of that program's output. The bound by
/// design is `persist_interval_ms` (2000 by default).
async fn crash_loss(report: &mut Report) {
    let mut daemon = Daemon::start_with(&[("LOG_LEVEL", "warn")]).await;
    let client = daemon.client().await;
    let id = client
        .create_session(
            None,
            command(&[
                "/bin/sh",
                "-c",
                "i=0; while :; do i=$((i+1)); echo n$i; sleep 0.001; done",
            ]),
            None,
            None,
            None,
            None,
            None,
        )
        .await
        .unwrap()
        .session_id;
    let started = Instant::now();
    drop(client);
    let mut losses_ms = Vec::new();
    let mut lost_lines = Vec::new();
    // Kill at different points of the save interval.
    for wait_ms in [700u64, 1300, 2100, 2900, 3500, 1700, 900, 2500] {
        tokio::time::sleep(Duration::from_millis(wait_ms)).await;
        daemon = daemon.crash_and_restart(&[]).await;
        let client = daemon.client().await;
        // Let the new daemon read on for a moment, then look at the whole output.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let start = client
            .get_session(id)
            .await
            .unwrap()
            .output_offset
            .saturating_sub(200_000);
        let out = client
            .receive_output(id, Some(start), Some(1024 * 1024), None, None)
            .await
            .unwrap();
        let text = String::from_utf8_lossy(out.data.as_bytes()).into_owned();
        let numbers: Vec<u64> = text
            .split("\r\n")
            .filter_map(|l| l.strip_prefix('n')?.parse().ok())
            .collect();
        // The latest jump is this crash's (earlier ones are further back in the output).
        let (Some(gap), Some(&last)) = (
            numbers
                .windows(2)
                .map(|w| w[1].saturating_sub(w[0]).saturating_sub(1))
                .rfind(|gap| *gap > 0)
                .or(Some(0)),
            numbers.last(),
        ) else {
            continue;
        };
        // The counter's own pace: its value over the time it has run.
        let rate_per_ms = last as f64 / started.elapsed().as_millis() as f64;
        lost_lines.push(gap as f64);
        losses_ms.push(gap as f64 / rate_per_ms.max(0.001));
    }
    let worst = losses_ms.iter().cloned().fold(0.0, f64::max);
    report.row(
        &format!(
            "output lost by a kill -9 of the daemon ({} kills, program held by the keeper)",
            losses_ms.len()
        ),
        format!(
            "median {:.0} ms, worst {:.0} ms of output ({:.0} / {:.0} lines)",
            median(losses_ms.clone()),
            worst,
            median(lost_lines.clone()),
            lost_lines.iter().cloned().fold(0.0, f64::max)
        ),
        "persist_interval_ms 2000 (the bound by design)".to_owned(),
        format!("{:.2}×", worst / 2000.0),
    );
    drop(daemon);
}

/// A client following one session's output across daemons, as `pulsar attach` does:
/// reconnecting and continuing from its offset when the daemon goes away.
struct Follower {
    socket: std::path::PathBuf,
    session: SessionId,
    stream: jsonrpsee::core::client::Subscription<OutputEvent>,
    next: u64,
    last: Instant,
    /// The pid of the daemon the current stream comes from.
    served_by: Option<u32>,
}

impl Follower {
    async fn start(socket: &std::path::Path, session: SessionId) -> Self {
        let (stream, served_by) = Self::subscribe(socket, session, None).await;
        Self {
            socket: socket.to_owned(),
            session,
            stream,
            next: 0,
            last: Instant::now(),
            served_by: Some(served_by),
        }
    }

    async fn subscribe(
        socket: &std::path::Path,
        session: SessionId,
        since: Option<u64>,
    ) -> (jsonrpsee::core::client::Subscription<OutputEvent>, u32) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(client) = pulsar_protocol::connect(socket).await
                && let Ok(status) = client.get_status().await
                && let Ok(stream) = client.subscribe_output(session, since, None, None).await
            {
                // The subscription keeps the client's connection alive.
                std::mem::forget(client);
                return (stream, status.pid);
            }
            assert!(Instant::now() < deadline, "the daemon never came back");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Waits for the next output event and returns the time since the one before.
    async fn next_gap(&mut self) -> Duration {
        loop {
            match self.stream.next().await {
                Some(Ok(OutputEvent::Output { offset, data })) => {
                    self.next = offset + data.as_bytes().len() as u64;
                    let now = Instant::now();
                    let gap = now - self.last;
                    self.last = now;
                    return gap;
                }
                Some(_) => {}
                None => {
                    let (stream, pid) =
                        Self::subscribe(&self.socket, self.session, Some(self.next)).await;
                    self.stream = stream;
                    self.served_by = Some(pid);
                }
            }
        }
    }
}

/// Proportional set size (`smaps_rollup` Pss) of `pid`, in KiB: shared pages count shared.
fn pss_kib(pid: u32) -> u64 {
    smaps_rollup_kib(pid, &["Pss:"])
}

/// A process's private memory (clean + dirty, shared with no other process), in KiB, from
/// `/proc/PID/smaps_rollup`: what it costs by itself.
fn private_kib(pid: u32) -> u64 {
    smaps_rollup_kib(pid, &["Private_Clean:", "Private_Dirty:"])
}

/// The sum of `keys`' figures in `/proc/PID/smaps_rollup`, in KiB (0 once it is gone).
fn smaps_rollup_kib(pid: u32, keys: &[&str]) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    keys.iter()
        .filter_map(|key| {
            text.lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .sum()
}

async fn database_writes(report: &mut Report) {
    const SESSIONS: usize = 100;
    let daemon = Daemon::start_with(&[("LOG_LEVEL", "warn"), ("PERSIST_INTERVAL_MS", "500")]).await;
    let client = daemon.client().await;
    // A quiet baseline: a few state changes on an idle daemon.
    for _ in 0..20 {
        client
            .create_session(None, command(&["/bin/cat"]), None, None, None, None, None)
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let idle = client.get_status().await.unwrap().database.unwrap();
    // 100 sessions each printing a 100-byte line every 10 ms, with one subscriber each.
    let script = "$|=1; while (1) { print \"x\" x 99, \"\\n\"; select(undef, undef, undef, 0.01) }";
    let mut subs = Vec::new();
    for _ in 0..SESSIONS {
        let id = client
            .create_session(
                None,
                command(&["perl", "-e", script]),
                None,
                None,
                None,
                None,
                None,
            )
            .await
            .unwrap()
            .session_id;
        subs.push(client.subscribe_output(id, None, None, None).await.unwrap());
    }
    let stop = Arc::new(AtomicBool::new(false));
    let drains: Vec<_> = subs
        .into_iter()
        .map(|mut sub| {
            let stop = Arc::clone(&stop);
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let _ = tokio::time::timeout(Duration::from_millis(100), sub.next()).await;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let busy = client.get_status().await.unwrap().database.unwrap();
    stop.store(true, Ordering::Relaxed);
    for drain in drains {
        let _ = drain.await;
    }
    report.row(
        &format!("DB write p50 / p99 (queued → committed) under {SESSIONS} streaming sessions"),
        format!(
            "{} / {} µs (commits p99 {} µs; {} writes)",
            busy.write_p50_us, busy.write_p99_us, busy.commit_p99_us, busy.writes
        ),
        format!(
            "idle daemon {} / {} µs",
            idle.write_p50_us, idle.write_p99_us
        ),
        format!(
            "{:.1}× / {:.1}×",
            busy.write_p50_us as f64 / idle.write_p50_us.max(1) as f64,
            busy.write_p99_us as f64 / idle.write_p99_us.max(1) as f64
        ),
    );
    daemon.stop();
}

async fn restore_time(report: &mut Report) {
    const SESSIONS: usize = 1000;
    let started_answering = |daemon: &Daemon| {
        let socket = daemon.socket.clone();
        async move {
            let start = Instant::now();
            loop {
                if let Ok(client) = pulsar_protocol::connect(&socket).await
                    && client.get_status().await.is_ok()
                {
                    return (start.elapsed(), client);
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    };
    let settings = [("LOG_LEVEL", "warn"), ("MAX_SESSIONS", "2000")];
    let daemon = Daemon::start_with(&settings).await;
    let empty = {
        let daemon = daemon.restart_signal_only().await;
        let (took, _) = started_answering(&daemon).await;
        (took, daemon)
    };
    let (empty_took, daemon) = empty;
    let client = daemon.client().await;
    for _ in 0..SESSIONS {
        client
            .create_session(None, command(&["/bin/sh"]), None, None, None, None, None)
            .await
            .unwrap();
    }
    drop(client);
    let daemon = daemon.restart_signal_only().await;
    // From the new daemon's spawn, as `took` is.
    let restarted = Instant::now();
    let (took, client) = started_answering(&daemon).await;
    // "Respawned" is checked, not assumed: every session is back with a live process.
    let respawned = |sessions: &[pulsar_protocol::SessionInfo]| {
        sessions
            .iter()
            .filter(|s| s.pid.is_some() && s.state != pulsar_protocol::SessionState::Stopped)
            .count()
    };
    let all_back = loop {
        let restored = client.list_sessions().await.unwrap().sessions;
        assert_eq!(restored.len(), SESSIONS);
        if respawned(&restored) == SESSIONS {
            break restarted.elapsed();
        }
        assert!(
            restarted.elapsed() < Duration::from_secs(300),
            "only {} of {SESSIONS} sessions respawned",
            respawned(&restored)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    report.row(
        &format!(
            "start with {SESSIONS} sessions to restore until get_status answers; until all {SESSIONS} are respawned (checked)"
        ),
        format!(
            "{:.0} ms; {:.0} ms",
            took.as_secs_f64() * 1e3,
            all_back.as_secs_f64() * 1e3
        ),
        format!("empty database {:.0} ms", empty_took.as_secs_f64() * 1e3),
        format!("{:.1}×", took.as_secs_f64() / empty_took.as_secs_f64()),
    );
    daemon.stop();
}

/// A raw Unix-socket ping-pong (an echo thread on a socket pair): the floor under any
/// request over the socket, sampled one round trip at a time so that it can be interleaved
/// with the requests it is the floor of.
struct SocketFloor {
    socket: StdUnixStream,
    echo: Option<std::thread::JoinHandle<()>>,
}

impl SocketFloor {
    fn start() -> Self {
        let (socket, mut b) = StdUnixStream::pair().unwrap();
        let echo = std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            while let Ok(n) = b.read(&mut buf) {
                if n == 0 || b.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        });
        Self {
            socket,
            echo: Some(echo),
        }
    }

    fn sample(&mut self) -> Duration {
        let mut buf = [0u8; 4];
        let start = Instant::now();
        self.socket.write_all(b"ping").unwrap();
        self.socket.read_exact(&mut buf).unwrap();
        start.elapsed()
    }
}

impl Drop for SocketFloor {
    fn drop(&mut self) {
        let _ = self.socket.shutdown(std::net::Shutdown::Both);
        if let Some(echo) = self.echo.take() {
            let _ = echo.join();
        }
    }
}

async fn get_status(report: &mut Report) {
    const CALLS: usize = 10_000;
    let daemon = Daemon::start_with(&[("LOG_LEVEL", "warn")]).await;
    let client = daemon.client().await;
    let mut line = std::io::BufReader::new(StdUnixStream::connect(&daemon.socket).unwrap());
    let mut floor = SocketFloor::start();
    // Interleaved, one of each per round, so that machine noise hits all three alike.
    let (mut floors, mut ws, mut lj) = (Vec::new(), Vec::new(), Vec::new());
    let mut answer = String::new();
    for i in 0..CALLS {
        floors.push(floor.sample());

        let start = Instant::now();
        client.get_status().await.unwrap();
        ws.push(start.elapsed());

        let start = Instant::now();
        writeln!(
            line.get_mut(),
            "{{\"jsonrpc\":\"2.0\",\"id\":{i},\"method\":\"get_status\"}}"
        )
        .unwrap();
        answer.clear();
        std::io::BufRead::read_line(&mut line, &mut answer).unwrap();
        lj.push(start.elapsed());
    }
    let (floor, ws, lj) = (stats(floors), stats(ws), stats(lj));
    for (path, s) in [("WebSocket", &ws), ("line JSON", &lj)] {
        report.row(
            &format!("get_status p50 / p99, {path} ({CALLS} calls, interleaved with the floor)"),
            format!("{:.0} / {:.0} µs", s.p50, s.p99),
            format!("socket ping-pong {:.0} / {:.0} µs", floor.p50, floor.p99),
            format!("{:.1}× / {:.1}×", s.p50 / floor.p50, s.p99 / floor.p99),
        );
    }
    daemon.stop();
}

/// A tmux server in a temp dir, driven two ways: a `tmux` process per command, and one
/// persistent control-mode client (`tmux -C`) that takes commands on its stdin.
struct TmuxServer {
    socket: std::path::PathBuf,
    control: std::process::Child,
    replies: std::io::BufReader<std::process::ChildStdout>,
    _dir: tempfile::TempDir,
}

impl TmuxServer {
    /// Starts a server with a session `warm` and attaches a control-mode client to it;
    /// `None` without tmux.
    fn start() -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("tmux.sock");
        let ok = Self::command(
            &socket,
            &[
                "-f",
                "/dev/null",
                "new-session",
                "-d",
                "-s",
                "warm",
                "/bin/sh",
            ],
        )
        .status()
        .is_ok_and(|s| s.success());
        if !ok {
            return None;
        }
        let mut control = Self::command(&socket, &["-C", "attach-session", "-t", "warm"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .ok()?;
        let replies = std::io::BufReader::new(control.stdout.take()?);
        let mut server = Self {
            socket,
            control,
            replies,
            _dir: dir,
        };
        server.wait_reply(); // the attach's own %begin/%end
        Some(server)
    }

    fn command(socket: &std::path::Path, args: &[&str]) -> Command {
        let mut command = Command::new("tmux");
        command
            .arg("-S")
            .arg(socket)
            .args(args)
            .env("SHELL", "/bin/sh");
        command
    }

    /// `tmux new-session -d -s NAME /bin/sh` as a process of its own, run to completion.
    fn new_session_process(&self, name: &str) -> Duration {
        let start = Instant::now();
        let status = Self::command(&self.socket, &["new-session", "-d", "-s", name, "/bin/sh"])
            .status()
            .unwrap();
        assert!(status.success(), "tmux new-session failed");
        start.elapsed()
    }

    /// The same command through the persistent control-mode client, until its `%end`.
    fn new_session_control(&mut self, name: &str) -> Duration {
        let start = Instant::now();
        let stdin = self.control.stdin.as_mut().unwrap();
        writeln!(stdin, "new-session -d -s {name} /bin/sh").unwrap();
        stdin.flush().unwrap();
        self.wait_reply();
        start.elapsed()
    }

    /// Reads control-mode lines until a command's `%end` (or panics on `%error`).
    fn wait_reply(&mut self) {
        let mut reply = String::new();
        loop {
            reply.clear();
            let n = std::io::BufRead::read_line(&mut self.replies, &mut reply).unwrap();
            assert!(n > 0, "tmux -C ended");
            assert!(!reply.starts_with("%error"), "tmux -C: {reply}");
            if reply.starts_with("%end") {
                return;
            }
        }
    }
}

impl Drop for TmuxServer {
    fn drop(&mut self) {
        let _ = Self::command(&self.socket, &["kill-server"]).status();
        let _ = self.control.kill();
        let _ = self.control.wait();
    }
}

async fn session_create(report: &mut Report) {
    const N: usize = 200;
    let daemon = Daemon::start_with(&[("LOG_LEVEL", "warn"), ("MAX_SESSIONS", "3000")]).await;
    let client = daemon.client().await;
    let Some(mut tmux) = TmuxServer::start() else {
        report.row(
            "session create",
            "tmux not installed".to_owned(),
            "-".to_owned(),
            "-".to_owned(),
        );
        return;
    };
    let pulsar_cli = artifact("pulsar");
    // Like with like, interleaved sample by sample: a client process per session
    // (`pulsar new -d` against `tmux new-session -d`), and a request on a connection that
    // stays open (`create_session` against a `tmux -C` control-mode client).
    let (mut cli, mut tmux_cli, mut rpc, mut tmux_control) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..N {
        let start = Instant::now();
        let status = Command::new(&pulsar_cli)
            .arg("--socket")
            .arg(&daemon.socket)
            .args(["new", "-d", &format!("cli{i}"), "--", "/bin/sh"])
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "pulsar new -d failed");
        cli.push(start.elapsed());
        tmux_cli.push(tmux.new_session_process(&format!("cli{i}")));

        let start = Instant::now();
        client
            .create_session(None, command(&["/bin/sh"]), None, None, None, None, None)
            .await
            .unwrap();
        rpc.push(start.elapsed());
        tmux_control.push(tmux.new_session_control(&format!("ctl{i}")));
    }
    let sessions = client.list_sessions().await.unwrap().sessions;
    assert_eq!(sessions.len(), 2 * N, "every create made a session");
    let (cli, tmux_cli, rpc, tmux_control) =
        (stats(cli), stats(tmux_cli), stats(rpc), stats(tmux_control));
    report.row(
        &format!("session create p50 / p99, a client process each: `pulsar new -d` ({N} sessions of /bin/sh)"),
        format!("{:.0} / {:.0} µs", cli.p50, cli.p99),
        format!("tmux new-session -d {:.0} / {:.0} µs", tmux_cli.p50, tmux_cli.p99),
        format!("{:.2}× / {:.2}×", cli.p50 / tmux_cli.p50, cli.p99 / tmux_cli.p99),
    );
    // `create_session` beside `new-session -d` typed into the `tmux -C` client.
    let control_row = |report: &mut Report, label: String, rpc: Stats, tmux: Stats, at: &str| {
        report.row(
            &label,
            format!("{:.0} / {:.0} µs", rpc.p50, rpc.p99),
            format!(
                "tmux -C control client, {at} {:.0} / {:.0} µs",
                tmux.p50, tmux.p99
            ),
            format!("{:.2}× / {:.2}×", rpc.p50 / tmux.p50, rpc.p99 / tmux.p99),
        );
    };
    control_row(
        report,
        format!("session create p50 / p99, on an open connection: create_session ({N} sessions)"),
        rpc,
        tmux_control,
        "new-session -d",
    );
    // The same once each holds thousands: a spawn's cost must not grow with the sessions
    // (the programs' terminals and pidfds) that the daemon and its keeper hold.
    const HELD: usize = 1200;
    for i in 2 * N..HELD {
        start_program(&client, &["/bin/sh"]).await;
        tmux.new_session_control(&format!("fill{i}"));
    }
    let (mut rpc, mut tmux_control) = (Vec::new(), Vec::new());
    for i in 0..50 {
        let start = Instant::now();
        start_program(&client, &["/bin/sh"]).await;
        rpc.push(start.elapsed());
        tmux_control.push(tmux.new_session_control(&format!("more{i}")));
    }
    control_row(
        report,
        format!("session create p50 / p99, on an open connection, {HELD} sessions held (50 more)"),
        stats(rpc),
        stats(tmux_control),
        &format!("{HELD} sessions held"),
    );
    daemon.stop();
}

/// Runs `sh -c 'read go; <producer>'` in a bare PTY and reads the master until EOF.
/// Returns bytes per second.
/// `sh -c script` in a bare 80×24 PTY: the child, a reader and a writer of the master.
fn bare_pty(
    script: &str,
) -> (
    Box<dyn portable_pty::Child + Send + Sync>,
    Box<dyn std::io::Read + Send>,
    Box<dyn std::io::Write + Send>,
) {
    let pair = native_pty_system()
        .openpty(PtySize {
            rows: 24,
            cols: 80,
            pixel_width: 0,
            pixel_height: 0,
        })
        .unwrap();
    let mut cmd = CommandBuilder::new("/bin/sh");
    cmd.args(["-c", script]);
    let child = pair.slave.spawn_command(cmd).unwrap();
    drop(pair.slave);
    let reader = pair.master.try_clone_reader().unwrap();
    let writer = pair.master.take_writer().unwrap();
    (child, reader, writer)
}

fn bare_pty_throughput(producer: &str) -> (f64, usize) {
    let (mut child, mut reader, mut writer) =
        bare_pty(&format!("stty raw -echo; echo R; read go; {producer}"));
    let mut buf = vec![0u8; 64 * 1024];
    // Wait for the prompt byte so timing starts with the shell ready.
    let mut seen = Vec::new();
    while !seen.contains(&b'R') {
        let n = reader.read(&mut buf).unwrap();
        seen.extend_from_slice(&buf[..n]);
    }
    let start = Instant::now();
    writer.write_all(b"\n").unwrap();
    let mut total = 0usize;
    loop {
        match reader.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => total += n,
        }
    }
    let elapsed = start.elapsed();
    let _ = child.wait();
    (total as f64 / elapsed.as_secs_f64(), total)
}

/// Bytes per second delivered to one subscriber, bytes delivered, and bytes skipped because
/// the subscriber lagged behind the ring (the session never waits for a client).
async fn pulsar_throughput(client: &PulsarClient, producer: &str) -> (f64, usize, u64) {
    let id = client
        .create_session(
            None,
            command(&[
                "/bin/sh",
                "-c",
                &format!("stty raw -echo; echo R; read go; {producer}"),
            ]),
            None,
            None,
            None,
            None,
            None,
        )
        .await
        .unwrap()
        .session_id;
    pulsar_e2e::read_until(client, id, "R").await;
    let head = client.get_session(id).await.unwrap().output_offset;
    let mut sub = client
        .subscribe_output(id, Some(head), None, None)
        .await
        .unwrap();
    let start = Instant::now();
    client
        .send_input(id, Base64Data::from("\n"), None)
        .await
        .unwrap();
    let mut total = 0usize;
    let mut skipped = 0u64;
    while let Some(event) = sub.next().await {
        match event.unwrap() {
            OutputEvent::Output { data, .. } => total += data.as_bytes().len(),
            OutputEvent::Exited { .. } => break,
            OutputEvent::Lagged {
                missed_from,
                resume_at,
            } => skipped += resume_at - missed_from,
            _ => {}
        }
    }
    (total as f64 / start.elapsed().as_secs_f64(), total, skipped)
}

/// The output every throughput run produces, local or SSH, Pulsar or baseline: `bytes`
/// printable characters (NUL bytes would be mostly skipped by a terminal emulator).
fn printable_output(bytes: usize) -> String {
    format!("head -c {bytes} /dev/zero | tr '\\0' 'x'")
}

async fn throughput(report: &mut Report) {
    const BYTES: usize = 256 * 1024 * 1024;
    const RUNS: usize = 5;
    let producer = printable_output(BYTES);
    let daemon = Daemon::start_with(&[("LOG_LEVEL", "warn")]).await;
    let client = daemon.client().await;
    let mut bare = Vec::new();
    let mut ours = Vec::new();
    let mut delivered = Vec::new();
    // Alternate the two so that machine noise hits both alike.
    for _ in 0..RUNS {
        let bare_producer = producer.clone();
        let (rate, n) = tokio::task::spawn_blocking(move || bare_pty_throughput(&bare_producer))
            .await
            .unwrap();
        assert!(n >= BYTES);
        bare.push(rate);
        let (rate, n, skipped) = pulsar_throughput(&client, &producer).await;
        assert!(
            n as u64 + skipped >= BYTES as u64,
            "got {n} + {skipped} bytes"
        );
        ours.push(rate);
        delivered.push(100.0 * n as f64 / (n as f64 + skipped as f64));
    }
    let (bare, ours, delivered) = (median(bare), median(ours), median(delivered));
    let mib = |r: f64| r / (1024.0 * 1024.0);
    report.row(
        &format!("output throughput to one subscriber (median of {RUNS} × 256 MiB)"),
        format!(
            "{:.0} MiB/s delivered ({delivered:.0} % of the bytes; the rest skipped as `lagged`)",
            mib(ours)
        ),
        format!("bare PTY {:.0} MiB/s", mib(bare)),
        format!("{:.0} %", 100.0 * ours / bare),
    );
    daemon.stop();
}

/// A raw `cat` in a bare PTY on a thread of its own, echoing one key per request: the
/// baseline of the echo benchmark, sampled in turn with Pulsar.
struct BarePtyEcho {
    ask: std::sync::mpsc::Sender<()>,
    answer: std::sync::mpsc::Receiver<Duration>,
}

impl BarePtyEcho {
    fn start() -> Self {
        let (ask, asked) = std::sync::mpsc::channel::<()>();
        let (answered, answer) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let (mut child, mut reader, mut writer) = bare_pty("stty raw -echo; echo R; exec cat");
            let mut buf = [0u8; 256];
            // Wait for the whole "R\n" line so that no stray byte answers the first key.
            let mut seen = Vec::new();
            while !seen.ends_with(b"R\n") {
                let n = reader.read(&mut buf).unwrap();
                seen.extend_from_slice(&buf[..n]);
            }
            while asked.recv().is_ok() {
                let start = Instant::now();
                writer.write_all(b"k").unwrap();
                let n = reader.read(&mut buf).unwrap();
                assert_eq!(&buf[..n], b"k");
                if answered.send(start.elapsed()).is_err() {
                    break;
                }
            }
            let _ = child.kill();
            let _ = child.wait();
        });
        Self { ask, answer }
    }

    fn sample(&self) -> Duration {
        self.ask.send(()).unwrap();
        self.answer.recv().unwrap()
    }
}

async fn echo_latency(report: &mut Report) {
    const N: usize = 2000;
    let bare_pty = BarePtyEcho::start();
    let daemon = Daemon::start_with(&[("LOG_LEVEL", "warn")]).await;
    let client = daemon.client().await;
    let id = client
        .create_session(
            None,
            command(&["/bin/sh", "-c", "stty raw -echo; echo R; exec cat"]),
            None,
            None,
            None,
            None,
            None,
        )
        .await
        .unwrap()
        .session_id;
    pulsar_e2e::read_until(&client, id, "R\n").await;
    let head = client.get_session(id).await.unwrap().output_offset;
    let mut sub = client
        .subscribe_output(id, Some(head), None, None)
        .await
        .unwrap();
    // Paired samples: each key goes through a bare PTY and through Pulsar, one right after
    // the other, so that the difference of a pair is the latency Pulsar adds to that key.
    let mut pairs = EchoPairs::default();
    for _ in 0..N {
        let baseline = tokio::task::block_in_place(|| bare_pty.sample());
        let start = Instant::now();
        client
            .send_input(id, Base64Data::from("k"), None)
            .await
            .unwrap();
        loop {
            if let OutputEvent::Output { data, .. } = sub.next().await.unwrap().unwrap() {
                assert_eq!(data.as_bytes(), b"k");
                break;
            }
        }
        pairs.push(baseline, start.elapsed());
    }
    pairs.report(
        report,
        &format!("keystroke echo p50 / p99 ({N} keys, each also through a bare PTY right before)"),
        &format!("added echo latency p50 / p99: Pulsar − bare PTY, per key ({N} pairs)"),
        None,
    );
    daemon.stop();
}

async fn status_while_streaming(report: &mut Report) {
    const CALLS: usize = 3000;
    const STREAMS: usize = 10;
    let daemon = Daemon::start_with(&[("LOG_LEVEL", "warn")]).await;
    let client = daemon.client().await;
    // The probe is a client of its own (as `pulsar status` would be): its own thread and
    // runtime, so its answers never queue behind the ten subscribers' decoding in this
    // process.
    let socket = daemon.socket.clone();
    let measure = move || {
        let socket = socket.clone();
        tokio::task::spawn_blocking(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let client = pulsar_protocol::connect(&socket).await.unwrap();
                let mut samples = Vec::with_capacity(CALLS);
                for _ in 0..CALLS {
                    let start = Instant::now();
                    client.get_status().await.unwrap();
                    samples.push(start.elapsed());
                }
                stats(samples)
            })
        })
    };
    let idle = measure().await.unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let mut drains = Vec::new();
    for _ in 0..STREAMS {
        let id = client
            .create_session(
                None,
                command(&["/usr/bin/yes", "pulsar benchmark output line"]),
                None,
                None,
                None,
                None,
                None,
            )
            .await
            .unwrap()
            .session_id;
        let watcher = daemon.client().await;
        let stop = Arc::clone(&stop);
        drains.push(tokio::spawn(async move {
            let mut sub = watcher
                .subscribe_output(id, None, None, None)
                .await
                .unwrap();
            let mut bytes = 0usize;
            while !stop.load(Ordering::Relaxed) {
                match tokio::time::timeout(Duration::from_millis(200), sub.next()).await {
                    Ok(Some(Ok(OutputEvent::Output { data, .. }))) => {
                        bytes += data.as_bytes().len()
                    }
                    Ok(Some(Ok(_))) | Err(_) => {}
                    Ok(_) => break,
                }
            }
            bytes
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await; // let the streams get going
    let busy = measure().await.unwrap();
    stop.store(true, Ordering::Relaxed);
    let mut streamed = 0;
    for drain in drains {
        streamed += drain.await.unwrap();
    }
    assert!(streamed > 0);
    report.row(
        &format!("get_status p50 / p99 while {STREAMS} sessions stream to subscribers"),
        format!("{:.0} / {:.0} µs", busy.p50, busy.p99),
        format!("idle daemon {:.0} / {:.0} µs", idle.p50, idle.p99),
        format!("{:.1}× / {:.1}×", busy.p50 / idle.p50, busy.p99 / idle.p99),
    );
    daemon.stop();
}

async fn reattach(report: &mut Report) {
    const N: usize = 300;
    let daemon = Daemon::start_with(&[("LOG_LEVEL", "warn")]).await;
    let client = daemon.client().await;
    // 10k lines of history, then a busy, colourful full screen.
    let script = "i=0; while [ $i -lt 10000 ]; do echo \"history line $i with some text\"; i=$((i+1)); done; \
                  r=0; while [ $r -lt 24 ]; do printf '\\033[3%dm%-79s\\033[0m\\n' $((r % 8)) \"row $r $(date)\"; r=$((r+1)); done; \
                  printf 'READY'; exec cat";
    let id = client
        .create_session(
            None,
            command(&["/bin/sh", "-c", script]),
            None,
            None,
            None,
            None,
            None,
        )
        .await
        .unwrap()
        .session_id;
    pulsar_e2e::read_until(&client, id, "READY").await;
    let time_attach = |lines: Option<usize>| {
        let client = &client;
        async move {
            let mut samples = Vec::with_capacity(N);
            for _ in 0..N {
                let start = Instant::now();
                let attached = client
                    .attach_session(id, Some("bench".into()), None, lines)
                    .await
                    .unwrap();
                samples.push(start.elapsed());
                assert!(attached.snapshot.is_some());
            }
            stats(samples)
        }
    };
    let plain = time_attach(None).await;
    let history = time_attach(Some(1000)).await;
    let baseline = {
        let mut samples = Vec::with_capacity(N);
        for _ in 0..N {
            let start = Instant::now();
            client.get_session(id).await.unwrap();
            samples.push(start.elapsed());
        }
        stats(samples)
    };
    report.row(
        "reattach (attach_session → snapshot delivered) p50 / p99, 10k-line history, busy 80×24 screen",
        format!("{:.0} / {:.0} µs", plain.p50, plain.p99),
        format!("get_session {:.0} / {:.0} µs", baseline.p50, baseline.p99),
        format!("{:.1}× / {:.1}×", plain.p50 / baseline.p50, plain.p99 / baseline.p99),
    );
    report.row(
        "reattach with scrollback_lines = 1000 p50 / p99",
        format!("{:.0} / {:.0} µs", history.p50, history.p99),
        format!("get_session {:.0} / {:.0} µs", baseline.p50, baseline.p99),
        format!(
            "{:.1}× / {:.1}×",
            history.p50 / baseline.p50,
            history.p99 / baseline.p99
        ),
    );
    daemon.stop();
}

async fn memory(report: &mut Report) {
    let daemon = Daemon::start_with(&[
        ("LOG_LEVEL", "warn"),
        ("MAX_SESSIONS", "2000"),
        // Screens hibernate after 5 s idle, checked every second: measured awake first.
        ("HIBERNATE_AFTER_SECS", "5"),
        ("CLEANUP_INTERVAL_SECS", "1"),
    ])
    .await;
    let client = daemon.client().await;
    // Let the runtime settle, then measure the empty daemon.
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The issue's measure: the daemon's PSS and its helper's (the keeper holding the
    // programs), from no session up.
    let status = client.get_status().await.unwrap();
    let (daemon_pid, keeper_pid) = (status.pid, status.keeper.expect("a keeper").pid);
    let pss = || pss_kib(daemon_pid) + pss_kib(keeper_pid);
    let pss_cold = pss();
    // One session made and ended first: the code pages and the database's first pages that
    // any first session touches are a fixed cost, not a per-session one (and a tmux server,
    // measured the same way, has served a session before it can be measured at all).
    let first = create_80x24(&client, &["/bin/sh"]).await;
    wait_for_prompt(&client, first).await;
    client.terminate_session(first).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.get_session(first).await.unwrap().state != pulsar_protocol::SessionState::Stopped {
        assert!(Instant::now() < deadline, "the first shell never ended");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let pss_base = pss();
    let keeper_base = pss_kib(keeper_pid);
    // Beside PSS, whose share of the libraries (libc, the loader) falls as more shells map
    // them: the pages the daemon and its keeper hold alone.
    let private = || private_kib(daemon_pid) + private_kib(keeper_pid);
    let private_base = private();
    let base = daemon.rss_kib();
    let mut created: Vec<SessionId> = Vec::new();
    for target in [100usize, 500, 1000] {
        while created.len() < target {
            created.push(create_80x24(&client, &["/bin/sh"]).await);
        }
        // Every shell has drawn its prompt (so its screen rows exist) before measuring.
        for id in &created {
            wait_for_prompt(&client, *id).await;
        }
        per_session_rows(
            report,
            ["daemon RSS", "daemon + keeper PSS"]
                .map(|of| format!("{of} per idle 80×24 shell session, {target} sessions (one session made and ended first)")),
            target,
            (base, daemon.rss_kib()),
            (pss_base, pss()),
        );
        pss_row(
            report,
            &format!(
                "daemon + keeper PSS per idle 80×24 shell session, {target} sessions, from a cold daemon (no session ever)"
            ),
            target,
            (pss_cold, pss()),
            "cold daemon",
        );
        pss_row(
            report,
            &format!(
                "daemon + keeper private memory (no page shared) per idle 80×24 shell session, {target} sessions (one session made and ended first)"
            ),
            target,
            (private_base, private()),
            "no session",
        );
        pss_row(
            report,
            &format!(
                "of which the keeper's PSS per idle 80×24 shell session, {target} sessions (one session made and ended first)"
            ),
            target,
            (keeper_base, pss_kib(keeper_pid)),
            "no session",
        );
    }
    // Then with every screen hibernated and every pump parked.
    let n = created.len();
    let parked = all_asleep(&client, n).await;
    per_session_rows(
        report,
        ["daemon RSS", "daemon + keeper PSS"].map(|of| {
            format!(
                "{of} per idle session, {n} sessions, screens hibernated, {parked} pumps parked"
            )
        }),
        n,
        (base, daemon.rss_kib()),
        (pss_base, pss()),
    );
    // What one more idle session costs a daemon that has lived on: 500 more, once the first
    // ones sleep. What sleeping freed (pump tasks, awake screens) lies in holes between
    // the sessions' long-lived pieces, which the allocator cannot give back; new sessions
    // reuse them.
    const MORE: usize = 500;
    let pss_before = pss();
    while created.len() < n + MORE {
        created.push(create_80x24(&client, &["/bin/sh"]).await);
    }
    for id in &created[n..] {
        wait_for_prompt(&client, *id).await;
    }
    let parked = all_asleep(&client, created.len()).await;
    pss_row(
        report,
        &format!(
            "daemon + keeper PSS per idle session, sessions {}-{} (made once the first {n} slept; {parked} pumps parked)",
            n + 1,
            n + MORE
        ),
        MORE,
        (pss_before, pss()),
        &format!("{n} asleep"),
    );
    daemon.stop();
}

/// Waits until every one of `n` sessions' screens has hibernated, and then (for at most
/// 10 s more, a daemon before parking never does) until their pumps have parked; how many
/// have.
async fn all_asleep(client: &PulsarClient, n: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(60);
    while client.get_status().await.unwrap().num_hibernated < n {
        assert!(Instant::now() < deadline, "the screens never hibernated");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let parked = client.get_status().await.unwrap().num_parked;
        if parked >= n || Instant::now() >= deadline {
            // Let the last pumps' tasks and registrations be freed.
            tokio::time::sleep(Duration::from_millis(200)).await;
            return parked;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Two rows, `labels` in order: the daemon's RSS growth from `rss` (empty, now) and the
/// daemon and keeper's PSS growth from `pss` (no session, now), each divided by `sessions`.
fn per_session_rows(
    report: &mut Report,
    labels: [String; 2],
    sessions: usize,
    (base, rss): (u64, u64),
    (pss_base, pss): (u64, u64),
) {
    let [rss_label, pss_label] = labels;
    report.row(
        &rss_label,
        format!("{:.1} KiB", (rss - base) as f64 / sessions as f64),
        format!("empty daemon {base} KiB; now {rss} KiB"),
        "-".to_owned(),
    );
    pss_row(report, &pss_label, sessions, (pss_base, pss), "no session");
}

/// A row of the PSS growth from `base` (named `base_name`) to `now`, divided by `sessions`.
fn pss_row(
    report: &mut Report,
    label: &str,
    sessions: usize,
    (base, now): (u64, u64),
    base_name: &str,
) {
    report.row(
        label,
        format!(
            "{:.1} KiB",
            now.saturating_sub(base) as f64 / sessions as f64
        ),
        format!("{base_name} {base} KiB; now {now} KiB"),
        "-".to_owned(),
    );
}

/// Waits until session `id` (a shell) has printed its prompt.
async fn wait_for_prompt(client: &PulsarClient, id: SessionId) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.get_session(id).await.unwrap().output_offset == 0 {
        assert!(
            Instant::now() < deadline,
            "a shell never printed its prompt"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Sessions that each wrote ~200 KB and went idle: the daemon's memory while they are awake
/// and once their scrollback is released to the database, and what reading it back costs.
async fn hibernate(report: &mut Report) {
    const SESSIONS: usize = 100;
    let daemon = Daemon::start_with(&[
        ("LOG_LEVEL", "warn"),
        ("HIBERNATE_AFTER_SECS", "10"),
        ("CLEANUP_INTERVAL_SECS", "1"),
        ("PERSIST_INTERVAL_MS", "200"),
    ])
    .await;
    let client = daemon.client().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let status = client.get_status().await.unwrap();
    let (daemon_pid, keeper_pid) = (status.pid, status.keeper.expect("a keeper").pid);
    let pss = || pss_kib(daemon_pid) + pss_kib(keeper_pid);
    let (rss_base, pss_base) = (daemon.rss_kib(), pss());
    let mut ids = Vec::new();
    for _ in 0..SESSIONS {
        ids.push(
            create_80x24(
                &client,
                &["/bin/sh", "-c", "seq 1 30000; echo end-of-seq; read x"],
            )
            .await,
        );
    }
    let mut written = 0u64;
    for id in &ids {
        read_until(&client, *id, "end-of-seq").await;
        written += client.get_session(*id).await.unwrap().output_offset;
    }
    let per = |now: u64, base: u64| (now.saturating_sub(base)) as f64 / SESSIONS as f64;
    let (rss_awake, pss_awake) = (daemon.rss_kib(), pss());
    let deadline = Instant::now() + Duration::from_secs(60);
    while client.get_status().await.unwrap().scrollback_released_bytes < written {
        assert!(
            Instant::now() < deadline,
            "the scrollback was never released"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (rss_asleep, pss_asleep) = (daemon.rss_kib(), pss());
    report.row(
        &format!(
            "daemon + keeper PSS per idle session holding {:.0} KiB of scrollback ({SESSIONS} sessions): awake → hibernated, scrollback released",
            written as f64 / 1024.0 / SESSIONS as f64
        ),
        format!(
            "{:.1} → {:.1} KiB",
            per(pss_awake, pss_base),
            per(pss_asleep, pss_base)
        ),
        format!(
            "no session {pss_base} KiB; awake {pss_awake} KiB; released {pss_asleep} KiB (daemon RSS {rss_base} / {rss_awake} / {rss_asleep} KiB)"
        ),
        format!(
            "{:.1} %",
            per(pss_asleep, pss_base) / per(pss_awake, pss_base).max(0.1) * 100.0
        ),
    );
    // Reading a released scrollback back (from the database) against reading it resident.
    let mut cold = Vec::new();
    let mut warm = Vec::new();
    for id in ids.iter().take(50) {
        for times in [&mut cold, &mut warm] {
            let started = Instant::now();
            let out = client
                .receive_output(*id, Some(0), Some(1 << 20), None, None)
                .await
                .unwrap();
            times.push(started.elapsed().as_secs_f64() * 1e3);
            assert!(out.data.as_bytes().len() > 190_000 && !out.truncated);
        }
    }
    report.row(
        "receive_output of a whole ~200 KB scrollback, released (read back from the database) p50 (50 sessions)",
        format!("{:.2} ms", median(cold.clone())),
        format!("resident, right after: {:.2} ms", median(warm.clone())),
        format!("{:.1}×", median(cold) / median(warm)),
    );
    daemon.stop();
}

/// SSH sessions against a local OpenSSH server (loopback, key auth), each beside the same
/// work done by OpenSSH's own client in the same run.
async fn ssh(report: &mut Report, only_forward: bool) {
    if !sshd_available() {
        report.row(
            "SSH session create / throughput",
            "sshd not installed".to_owned(),
            "-".to_owned(),
            "-".to_owned(),
        );
        return;
    }
    let sshd = Sshd::start();
    // SSH output can arrive faster than one WebSocket subscriber takes it; a ring that holds
    // a whole run keeps the subscriber from lagging, so every byte is counted as delivered.
    let daemon = Daemon::start_with_env(
        &[("LOG_LEVEL", "warn"), ("SCROLLBACK_BYTES", "268435456")],
        &[],
    )
    .await;
    sshd.trust(daemon.dir.path());
    let client = daemon.client().await;
    if !only_forward {
        ssh_create(report, &sshd, &client).await;
        ssh_throughput(report, &sshd, &client).await;
    }
    ssh_forward_throughput(report, &sshd, &client).await;
    daemon.stop();
}

fn ssh_type(sshd: &Sshd, command: Option<&str>) -> pulsar_protocol::SessionType {
    let mut ty = serde_json::json!({
        "kind": "ssh", "host": "127.0.0.1", "port": sshd.port, "user": TEST_USER,
        "auth": {"agent": false, "key_files": [sshd.client_key]},
    });
    if let Some(command) = command {
        ty["command"] = command.into();
    }
    serde_json::from_value(ty).unwrap()
}

/// OpenSSH's client pointed at the test server with the same key and the same host-key
/// checking as the daemon.
#[derive(Clone)]
struct OpenSsh {
    port: u16,
    key: std::path::PathBuf,
    known_hosts: std::path::PathBuf,
    /// `Some`: the key exchange to use, else OpenSSH's default (sntrup761x25519 on 9.x,
    /// which costs this box ~130 ms a connection that russh's curve25519 does not).
    kex: Option<&'static str>,
}

impl OpenSsh {
    fn new(sshd: &Sshd) -> Self {
        let known_hosts = sshd.dir.path().join("bench_known_hosts");
        std::fs::write(&known_hosts, sshd.known_hosts_line()).unwrap();
        Self {
            port: sshd.port,
            key: sshd.client_key.clone(),
            known_hosts,
            // The key exchange russh negotiates with OpenSSH 9.x, for a like-for-like baseline.
            kex: Some("curve25519-sha256"),
        }
    }

    /// `ssh -tt` running `command` (a login shell if empty); stdin and stdout are pipes.
    fn spawn(&self, command: &str) -> std::process::Child {
        let mut ssh = self.command(&["-tt"]);
        if !command.is_empty() {
            ssh.arg(command);
        }
        ssh.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("run ssh")
    }

    /// `ssh -N -L listen:127.0.0.1:target`, a forward and nothing else.
    fn forward(&self, listen: u16, target: u16) -> std::process::Child {
        let spec = format!("127.0.0.1:{listen}:127.0.0.1:{target}");
        self.command(&["-N", "-o", "ExitOnForwardFailure=yes", "-L", &spec])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("run ssh -L")
    }

    /// `ssh FIRST... [options] user@127.0.0.1`, with this server's key, port and kex.
    fn command(&self, first: &[&str]) -> Command {
        let mut ssh = Command::new("ssh");
        ssh.args(first);
        self.options(&mut ssh);
        ssh.args(["-p", &self.port.to_string()]);
        ssh.arg(format!("{TEST_USER}@127.0.0.1"));
        ssh
    }

    /// `program` (`sftp` or `scp`) with this server's key, kex and the cipher russh picks
    /// (chacha20-poly1305, first in both clients' lists), and its port as `-P`; the caller
    /// adds the files.
    fn file_command(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        self.options(&mut command);
        command
            .args(["-c", "chacha20-poly1305@openssh.com"])
            .args(["-P", &self.port.to_string()])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        command
    }

    /// The options every OpenSSH client here gets: no config file, no agent, this server's
    /// key and known host, the kex.
    fn options(&self, ssh: &mut Command) {
        ssh.args([
            "-F",
            "/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
        ])
        .args([
            "-o",
            "IdentityAgent=none",
            "-o",
            "StrictHostKeyChecking=yes",
        ])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", self.known_hosts.display()))
        .arg("-i")
        .arg(&self.key);
        if let Some(kex) = self.kex {
            ssh.arg("-o").arg(format!("KexAlgorithms={kex}"));
        }
    }
}

/// A loopback TCP sink: each connection is read to its end, then answered with the byte
/// count (8 bytes, big-endian) and closed. Returns its port.
fn byte_sink() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 256 * 1024];
                let mut total = 0u64;
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    total += n as u64;
                }
                let _ = stream.write_all(&total.to_be_bytes());
            });
        }
    });
    port
}

/// Sends `bytes` through `addr` to the sink behind it; the rate, once the sink has counted
/// them all.
fn push_through(addr: std::net::SocketAddr, bytes: usize) -> f64 {
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to the forward");
    let chunk = vec![b'x'; 256 * 1024];
    let start = Instant::now();
    let mut sent = 0;
    while sent < bytes {
        stream.write_all(&chunk).expect("write through the forward");
        sent += chunk.len();
    }
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    let mut count = [0u8; 8];
    stream.read_exact(&mut count).expect("the sink's count");
    let elapsed = start.elapsed();
    assert_eq!(u64::from_be_bytes(count), sent as u64, "every byte arrived");
    sent as f64 / elapsed.as_secs_f64()
}

/// `-L` throughput: bytes pushed through a Pulsar local forward and through `ssh -L` (same
/// server, same key exchange) to the same sink.
async fn ssh_forward_throughput(report: &mut Report, sshd: &Sshd, client: &PulsarClient) {
    const BYTES: usize = 256 * 1024 * 1024;
    const RUNS: usize = 3;
    let sink = byte_sink();
    let openssh = OpenSsh::new(sshd);
    let id = client
        .create_session(
            None,
            ssh_type(sshd, Some("exec cat")),
            None,
            None,
            None,
            None,
            None,
        )
        .await
        .unwrap()
        .session_id;
    let forward = client
        .add_forward(
            id,
            pulsar_protocol::ForwardKind::Local,
            "0".to_owned(),
            Some(format!("127.0.0.1:{sink}")),
            None,
        )
        .await
        .unwrap();
    let ours_addr: std::net::SocketAddr = forward.listen.parse().unwrap();
    let mut theirs = Vec::new();
    let mut ours = Vec::new();
    for _ in 0..RUNS {
        let listen = pulsar_e2e::sshd::free_port();
        let mut child = openssh.forward(listen, sink);
        let theirs_addr: std::net::SocketAddr = format!("127.0.0.1:{listen}").parse().unwrap();
        let rate = tokio::task::spawn_blocking(move || {
            let start = Instant::now();
            while std::net::TcpStream::connect(theirs_addr).is_err() {
                assert!(
                    start.elapsed() < Duration::from_secs(10),
                    "ssh -L never listened"
                );
                std::thread::sleep(Duration::from_millis(10));
            }
            let rate = push_through(theirs_addr, BYTES);
            let _ = child.kill();
            let _ = child.wait();
            rate
        })
        .await
        .unwrap();
        theirs.push(rate);
        let rate = tokio::task::spawn_blocking(move || push_through(ours_addr, BYTES))
            .await
            .unwrap();
        ours.push(rate);
    }
    let _ = client.terminate_session(id).await;
    let (theirs, ours) = (median(theirs), median(ours));
    let mib = |r: f64| r / (1024.0 * 1024.0);
    report.row(
        &format!("SSH -L forward throughput, loopback (median of {RUNS} × 256 MiB to a sink)"),
        format!("{:.0} MiB/s", mib(ours)),
        format!("ssh -N -L (same kex) {:.0} MiB/s", mib(theirs)),
        format!("{:.0} %", 100.0 * ours / theirs),
    );
}

/// SFTP transfer throughput: one file uploaded and downloaded by Pulsar (`start_transfer` on
/// an SSH session, timed from the call to `done`) against OpenSSH's `sftp -b` and `scp` (9.x:
/// the SFTP protocol) to the same server in the same run, same key exchange and cipher,
/// alternating; medians of [`RUNS`]. Each OpenSSH run starts a process and a connection, so
/// its connection setup (the median of runs copying an empty file) is subtracted from its
/// time: the rates compare the copying alone.
async fn transfer(report: &mut Report) {
    const BYTES: usize = 256 * 1024 * 1024;
    const RUNS: usize = 3;
    if !sshd_available() {
        report.row(
            "SFTP transfer throughput",
            "sshd not installed".to_owned(),
            "-".to_owned(),
            "-".to_owned(),
        );
        return;
    }
    let sshd = Sshd::start();
    let daemon = Daemon::start_with_env(&[("LOG_LEVEL", "warn")], &[]).await;
    sshd.trust(daemon.dir.path());
    let client = daemon.client().await;
    let openssh = OpenSsh::new(&sshd);
    let id = client
        .create_session(
            None,
            ssh_type(&sshd, Some("exec cat")),
            None,
            None,
            None,
            None,
            None,
        )
        .await
        .unwrap()
        .session_id;
    // Both sides write here: the daemon (this user) and the SFTP server (the test user).
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let source = dir.path().join("source.bin");
    let empty = dir.path().join("empty.bin");
    write_payload(&source, BYTES);
    std::fs::write(&empty, b"").unwrap();
    std::fs::set_permissions(&empty, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let batch = dir.path().join("batch");
    let mut n = 0;
    let mut fresh = |what: &str| {
        n += 1;
        dir.path().join(format!("{what}-{n}.bin"))
    };
    // OpenSSH's connection setup, for sftp and for scp.
    let (mut sftp_setup, mut scp_setup) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        let to = fresh("empty");
        std::fs::write(
            &batch,
            format!("put {} {}\n", empty.display(), to.display()),
        )
        .unwrap();
        sftp_setup.push(run_timed(
            openssh
                .file_command("sftp")
                .arg("-b")
                .arg(&batch)
                .arg(format!("{TEST_USER}@127.0.0.1")),
        ));
        let to = fresh("empty");
        scp_setup.push(run_timed(
            openssh
                .file_command("scp")
                .arg(&empty)
                .arg(format!("{TEST_USER}@127.0.0.1:{}", to.display())),
        ));
    }
    let (sftp_setup, scp_setup) = (median(sftp_setup), median(scp_setup));
    let rate = |secs: f64| BYTES as f64 / secs;
    for direction in [
        pulsar_protocol::TransferDirection::Upload,
        pulsar_protocol::TransferDirection::Download,
    ] {
        let upload = direction == pulsar_protocol::TransferDirection::Upload;
        let (mut ours, mut sftp, mut scp) = (Vec::new(), Vec::new(), Vec::new());
        // A download by Pulsar ends with an fsync of the file before its rename (a crash never
        // leaves a complete-looking, incomplete file); sftp does not sync. This baseline is
        // sftp's download followed by that fsync: the same durability.
        let mut sftp_synced = Vec::new();
        for _ in 0..RUNS {
            // Pulsar.
            let to = fresh("pulsar");
            let (local, remote) = if upload {
                (source.clone(), to.clone())
            } else {
                (to.clone(), source.clone())
            };
            let start = Instant::now();
            let info = client
                .start_transfer(
                    id,
                    direction,
                    local.display().to_string(),
                    remote.display().to_string(),
                    None,
                )
                .await
                .unwrap();
            loop {
                let now = client.get_transfer(info.id).await.unwrap();
                if now.state != pulsar_protocol::TransferState::Running {
                    assert_eq!(
                        now.state,
                        pulsar_protocol::TransferState::Done,
                        "the transfer failed: {now:?}"
                    );
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            ours.push(rate(start.elapsed().as_secs_f64()));
            assert_copied(&to, BYTES);
            // sftp -b.
            let to = fresh("sftp");
            let line = if upload {
                format!("put {} {}\n", source.display(), to.display())
            } else {
                format!("get {} {}\n", source.display(), to.display())
            };
            std::fs::write(&batch, line).unwrap();
            let secs = run_timed(
                openssh
                    .file_command("sftp")
                    .arg("-b")
                    .arg(&batch)
                    .arg(format!("{TEST_USER}@127.0.0.1")),
            );
            sftp.push(rate(secs - sftp_setup));
            if !upload {
                let synced = Instant::now();
                std::fs::File::open(&to).unwrap().sync_all().unwrap();
                sftp_synced.push(rate(secs - sftp_setup + synced.elapsed().as_secs_f64()));
            }
            assert_copied(&to, BYTES);
            // scp.
            let to = fresh("scp");
            let mut command = openssh.file_command("scp");
            if upload {
                command
                    .arg(&source)
                    .arg(format!("{TEST_USER}@127.0.0.1:{}", to.display()));
            } else {
                command
                    .arg(format!("{TEST_USER}@127.0.0.1:{}", source.display()))
                    .arg(&to);
            }
            let secs = run_timed(&mut command);
            scp.push(rate(secs - scp_setup));
            assert_copied(&to, BYTES);
        }
        let (ours, sftp, scp) = (median(ours), median(sftp), median(scp));
        let mib = |r: f64| r / (1024.0 * 1024.0);
        let what = if upload { "upload" } else { "download" };
        report.row(
            &format!("SFTP {what}, loopback (median of {RUNS} × 256 MiB)"),
            format!("{:.0} MiB/s", mib(ours)),
            format!(
                "sftp -b {:.0} MiB/s (setup {:.0} ms subtracted)",
                mib(sftp),
                sftp_setup * 1e3
            ),
            format!("{:.0} %", 100.0 * ours / sftp),
        );
        report.row(
            &format!("SFTP {what} vs scp (same runs)"),
            format!("{:.0} MiB/s", mib(ours)),
            format!(
                "scp {:.0} MiB/s (setup {:.0} ms subtracted)",
                mib(scp),
                scp_setup * 1e3
            ),
            format!("{:.0} %", 100.0 * ours / scp),
        );
        if !upload {
            let synced = median(sftp_synced);
            report.row(
                "SFTP download vs sftp -b + fsync (same durability, same runs)",
                format!("{:.0} MiB/s", mib(ours)),
                format!("sftp -b then fsync {:.0} MiB/s", mib(synced)),
                format!("{:.0} %", 100.0 * ours / synced),
            );
        }
    }
    let _ = client.terminate_session(id).await;
    daemon.stop();
}

/// Writes `bytes` (whole MiB) of a pseudo-random MiB repeated, readable by the test user.
fn write_payload(path: &std::path::Path, bytes: usize) {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let block: Vec<u8> = (0..1024 * 1024)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for _ in 0..bytes / block.len() {
        file.write_all(&block).unwrap();
    }
    file.flush().unwrap();
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
}

/// Runs an OpenSSH file copy to its end; its wall time in seconds. Panics with its stderr if
/// it fails.
fn run_timed(command: &mut Command) -> f64 {
    let start = Instant::now();
    let out = command.output().expect("run sftp/scp");
    let secs = start.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    secs
}

/// Checks that `path` has all `bytes`, then removes it (the disk holds one copy at a time).
fn assert_copied(path: &std::path::Path, bytes: usize) {
    let len = std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .len();
    assert_eq!(len, bytes as u64, "{} is whole", path.display());
    std::fs::remove_file(path).unwrap();
}

async fn ssh_create(report: &mut Report, sshd: &Sshd, client: &PulsarClient) {
    const N: usize = 50;
    // OpenSSH's client: process start to the prompt's first byte.
    let same_kex = OpenSsh::new(sshd);
    let default_kex = OpenSsh {
        kex: None,
        ..same_kex.clone()
    };
    let first_prompt_byte = |openssh: &OpenSsh| {
        tokio::task::block_in_place(|| {
            let start = Instant::now();
            let mut child = openssh.spawn("");
            let mut byte = [0u8; 1];
            child
                .stdout
                .as_mut()
                .unwrap()
                .read_exact(&mut byte)
                .unwrap();
            let took = start.elapsed();
            let _ = child.kill();
            let _ = child.wait();
            took
        })
    };
    // Interleaved, one of each per round. Pulsar: create_session returns once the remote
    // shell runs; then its first byte.
    let (mut created, mut first_byte) = (Vec::with_capacity(N), Vec::with_capacity(N));
    let (mut baseline, mut default_baseline) = (Vec::with_capacity(N), Vec::with_capacity(N));
    for _ in 0..N {
        let start = Instant::now();
        let id = client
            .create_session(None, ssh_type(sshd, None), None, None, None, None, None)
            .await
            .unwrap()
            .session_id;
        created.push(start.elapsed());
        let out = client
            .receive_output(id, Some(0), Some(1), Some(10_000), None)
            .await
            .unwrap();
        assert!(out.bytes_read > 0, "no prompt within 10 s");
        first_byte.push(start.elapsed());
        baseline.push(first_prompt_byte(&same_kex));
        default_baseline.push(first_prompt_byte(&default_kex));
    }
    let (created, first_byte) = (stats(created), stats(first_byte));
    let (baseline, default_baseline) = (stats(baseline), stats(default_baseline));
    report.row(
        &format!("SSH session create p50 / p99, loopback, key auth ({N} sessions): create_session returned; first prompt byte"),
        format!(
            "{:.1} / {:.1} ms; {:.1} / {:.1} ms",
            created.p50 / 1e3,
            created.p99 / 1e3,
            first_byte.p50 / 1e3,
            first_byte.p99 / 1e3
        ),
        format!(
            "ssh -tt (same kex, curve25519) to first prompt byte {:.1} / {:.1} ms; \
             with OpenSSH's default kex (sntrup761x25519) {:.1} / {:.1} ms",
            baseline.p50 / 1e3,
            baseline.p99 / 1e3,
            default_baseline.p50 / 1e3,
            default_baseline.p99 / 1e3
        ),
        format!(
            "{:.2}× / {:.2}× (first byte, same kex)",
            first_byte.p50 / baseline.p50,
            first_byte.p99 / baseline.p99
        ),
    );
}

async fn ssh_throughput(report: &mut Report, sshd: &Sshd, client: &PulsarClient) {
    const BYTES: usize = 128 * 1024 * 1024;
    const RUNS: usize = 3;
    let producer = format!(
        "stty raw -echo; echo R; read go; {}",
        printable_output(BYTES)
    );
    let openssh = OpenSsh::new(sshd);
    let mut theirs = Vec::new();
    let mut ours = Vec::new();
    for _ in 0..RUNS {
        // OpenSSH: the same remote command; the client's output is read and thrown away.
        let mut child = openssh.spawn(&producer);
        let rate = tokio::task::spawn_blocking(move || {
            let mut out = child.stdout.take().unwrap();
            let mut buf = vec![0u8; 64 * 1024];
            let mut seen = Vec::new();
            while !seen.contains(&b'R') {
                let n = out.read(&mut buf).unwrap();
                assert!(n > 0, "ssh ended before the command was ready");
                seen.extend_from_slice(&buf[..n]);
            }
            let start = Instant::now();
            child.stdin.as_mut().unwrap().write_all(b"\n").unwrap();
            let mut total = 0usize;
            loop {
                match out.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => total += n,
                }
            }
            let elapsed = start.elapsed();
            let _ = child.wait();
            assert!(total >= BYTES, "ssh delivered {total} bytes");
            total as f64 / elapsed.as_secs_f64()
        })
        .await
        .unwrap();
        theirs.push(rate);

        let id = client
            .create_session(
                None,
                ssh_type(sshd, Some(&producer)),
                None,
                None,
                None,
                None,
                None,
            )
            .await
            .unwrap()
            .session_id;
        pulsar_e2e::read_until(client, id, "R").await;
        let head = client.get_session(id).await.unwrap().output_offset;
        let mut sub = client
            .subscribe_output(id, Some(head), None, None)
            .await
            .unwrap();
        let start = Instant::now();
        client
            .send_input(id, Base64Data::from("\n"), None)
            .await
            .unwrap();
        let mut total = 0usize;
        while let Some(event) = sub.next().await {
            match event.unwrap() {
                OutputEvent::Output { data, .. } => total += data.as_bytes().len(),
                OutputEvent::Exited { .. } => break,
                OutputEvent::Lagged { .. } => panic!("the only subscriber lagged"),
                _ => {}
            }
        }
        assert!(total >= BYTES, "Pulsar delivered {total} bytes");
        ours.push(total as f64 / start.elapsed().as_secs_f64());
    }
    let (theirs, ours) = (median(theirs), median(ours));
    let mib = |r: f64| r / (1024.0 * 1024.0);
    report.row(
        &format!("SSH output throughput to one subscriber, loopback (median of {RUNS} × 128 MiB)"),
        format!("{:.0} MiB/s", mib(ours)),
        format!(
            "ssh -tt, the same command ({} bytes of `x`) {:.0} MiB/s",
            BYTES,
            mib(theirs)
        ),
        format!("{:.0} %", 100.0 * ours / theirs),
    );
}
