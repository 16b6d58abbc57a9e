//! The black-box socket fuzzer: mutated real requests, interleaved at random on many
//! connections and cut mid-line, against a running daemon; then it must still serve, not
//! have crashed, and its memory must not have grown past a bound.
//!
//! The requests are `pulsar-ext/fuzz/requests.jsonl` (the fuzz targets' seeds), their
//! placeholder session id replaced by real ones. Seeded: the seed is printed, and
//! `PULSAR_SOCKET_FUZZ_SEED=N` replays a run; `PULSAR_SOCKET_FUZZ_FRAMES=N` sets its length
//! (the long run in docs/reliability.md is 10,000,000).

use std::time::{Duration, Instant};

use pulsar_e2e::{Daemon, b64, eventually};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::OwnedWriteHalf;
use tokio::task::JoinHandle;

const REQUESTS: &str = include_str!("../../pulsar-ext/fuzz/requests.jsonl");
/// The seeds' session id, replaced by a real one in most frames.
const PLACEHOLDER: &str = "8d3f2c1e-5b6a-4c7d-9e8f-0a1b2c3d4e5f";
const CONNECTIONS: usize = 16;
/// A write that takes longer is a connection the daemon stopped reading (its requests in
/// flight are long waits the mutations asked for): the fuzzer drops it and opens another.
const WRITE_STALL: Duration = Duration::from_secs(2);

/// SplitMix64: a small, seedable generator (no dependency for a test's dice).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// Bytes that mean something to JSON and to the framing.
const INTERESTING: &[&[u8]] = &[
    b"\n",
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b",",
    b":",
    b"null",
    b"-1",
    b"1e999",
    b"0",
    b"18446744073709551616",
    b"\\u0000",
    b"\\ud800",
    b"\xff",
    b"\"id\":",
    b"\"params\":",
    b"\"jsonrpc\":\"2.0\",",
    b"true",
];

/// One mutation of `frame` (the libFuzzer kinds: flip, insert, delete, duplicate, splice).
fn mutate(rng: &mut Rng, frame: &mut Vec<u8>, other: &[u8]) {
    let at = |rng: &mut Rng, len: usize| rng.below(len + 1);
    match rng.below(7) {
        0 if !frame.is_empty() => {
            let i = rng.below(frame.len());
            frame[i] ^= 1 << rng.below(8);
        }
        1 => {
            let i = at(rng, frame.len());
            let token = INTERESTING[rng.below(INTERESTING.len())];
            frame.splice(i..i, token.iter().copied());
        }
        2 if !frame.is_empty() => {
            let i = rng.below(frame.len());
            let n = 1 + rng.below((frame.len() - i).min(16));
            frame.drain(i..i + n);
        }
        3 if !frame.is_empty() => {
            let i = rng.below(frame.len());
            let n = 1 + rng.below((frame.len() - i).min(32));
            let copy: Vec<u8> = frame[i..i + n].to_vec();
            let j = at(rng, frame.len());
            frame.splice(j..j, copy);
        }
        4 => {
            let (i, j) = (at(rng, frame.len()), at(rng, other.len()));
            frame.truncate(i);
            frame.extend_from_slice(&other[j..]);
        }
        5 => {
            let i = at(rng, frame.len());
            frame.insert(i, rng.next() as u8);
        }
        _ => {
            let i = at(rng, frame.len());
            frame.truncate(i);
        }
    }
}

/// What a mutated frame may not ask for: a network or a device (an SSH host mutated off
/// loopback, a serial path), a program (a mutated command), a file of its choosing (a
/// recording's or a transfer's mutated path), or the daemon's own stop.
fn is_safe(frame: &[u8]) -> bool {
    let text = String::from_utf8_lossy(frame).to_ascii_lowercase();
    [
        "ssh", "serial", "@", "create", "shutdown", "upgrade", "restore", "path",
    ]
    .iter()
    .all(|word| !text.contains(word))
}

/// What an unmutated request may not ask for: SSH, a serial device, the daemon's stop.
fn is_safe_unmutated(frame: &[u8]) -> bool {
    let text = String::from_utf8_lossy(frame).to_ascii_lowercase();
    ["ssh", "serial", "@", "shutdown", "upgrade"]
        .iter()
        .all(|word| !text.contains(word))
}

/// A connection's reader: counts the lines the daemon writes, each of which must be JSON,
/// unless the connection's first byte made it HTTP (the WebSocket path: connections are
/// sniffed), whose one answer is a status line. The error names the line that was not.
fn drain(read: tokio::net::unix::OwnedReadHalf) -> JoinHandle<Result<u64, String>> {
    tokio::spawn(async move {
        let mut reader = BufReader::new(read);
        let mut line = Vec::new();
        let mut lines = 0;
        let mut http = false;
        while let Ok(n) = reader.read_until(b'\n', &mut line).await {
            if n == 0 {
                break;
            }
            if lines == 0 && line.starts_with(b"HTTP/1.1 ") {
                http = true;
            }
            if !http {
                match serde_json::from_slice::<Value>(&line) {
                    Ok(value) if value.is_object() || value.is_array() => {}
                    other => {
                        return Err(format!(
                            "the daemon wrote a line that is not a JSON object ({other:?}): {}",
                            String::from_utf8_lossy(&line)
                        ));
                    }
                }
            }
            lines += 1;
            line.clear();
        }
        Ok(lines)
    })
}

struct Connection {
    writer: OwnedWriteHalf,
    reader: JoinHandle<Result<u64, String>>,
}

async fn connect(daemon: &Daemon) -> Connection {
    let stream = UnixStream::connect(&daemon.socket).await.expect("connect");
    let (read, writer) = stream.into_split();
    Connection {
        writer,
        reader: drain(read),
    }
}

fn frames_wanted() -> u64 {
    std::env::var("PULSAR_SOCKET_FUZZ_FRAMES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(25_000)
}

fn seed() -> u64 {
    std::env::var("PULSAR_SOCKET_FUZZ_SEED")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutated_requests_on_many_cut_connections_leave_the_daemon_serving_with_flat_memory() {
    let seed = seed();
    let frames = frames_wanted();
    eprintln!("socket fuzz: seed {seed} (PULSAR_SOCKET_FUZZ_SEED={seed} replays), {frames} frames");
    let mut rng = Rng(seed);
    let daemon = Daemon::start_with(&[("MAX_SESSIONS", "24")]).await;
    let mut setup = daemon.line().await;
    // The fuzzed frames name these two; the witness is never named, so it must be intact.
    let mut targets = Vec::new();
    for _ in 0..2 {
        let created = setup.create_cat().await;
        targets.push(created["session_id"].as_str().unwrap().to_owned());
    }
    let witness = setup.create_cat().await["session_id"].clone();
    let requests: Vec<Vec<u8>> = REQUESTS
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.as_bytes().to_vec())
        .collect();

    let mut connections = Vec::new();
    for _ in 0..CONNECTIONS {
        connections.push(connect(&daemon).await);
    }
    let started = Instant::now();
    let (mut sent, mut cuts, mut stalls, mut skipped) = (0u64, 0u64, 0u64, 0u64);
    let mut rss_after_warmup = None;
    let mut rss_peak = 0;
    let mut lines_read = 0;
    let mut closed = Vec::new();
    while sent < frames {
        if sent == frames / 10 {
            rss_after_warmup = Some(daemon.rss_kib());
        }
        if sent % 1000 == 0 {
            rss_peak = rss_peak.max(daemon.rss_kib());
        }
        if sent > 0 && sent % 1_000_000 == 0 {
            eprintln!(
                "socket fuzz: {sent} frames in {:.0}s, RSS {} KiB",
                started.elapsed().as_secs_f64(),
                daemon.rss_kib()
            );
        }
        let pick = &requests[rng.below(requests.len())];
        let text =
            String::from_utf8_lossy(pick).replace(PLACEHOLDER, &targets[rng.below(targets.len())]);
        let mut frame = text.into_bytes();
        if rng.chance(85) {
            let other = &requests[rng.below(requests.len())];
            for _ in 0..1 + rng.below(4) {
                mutate(&mut rng, &mut frame, other);
            }
            if !is_safe(&frame) {
                skipped += 1;
                continue;
            }
        } else if !is_safe_unmutated(&frame) {
            skipped += 1;
            continue;
        }
        frame.push(b'\n');
        let c = rng.below(CONNECTIONS);
        // Cut mid-line now and then: part of the frame, then the connection is gone.
        let cut = rng.chance(2);
        let bytes = if cut {
            &frame[..rng.below(frame.len())]
        } else {
            &frame[..]
        };
        // In a few pieces, as a slow client writes.
        let mut written = true;
        for piece in bytes.chunks(1 + rng.below(bytes.len().max(1))) {
            let write = connections[c].writer.write_all(piece);
            if !matches!(tokio::time::timeout(WRITE_STALL, write).await, Ok(Ok(()))) {
                written = false;
                break;
            }
        }
        if cut || !written {
            if cut {
                cuts += 1;
            } else {
                stalls += 1;
            }
            let old = std::mem::replace(&mut connections[c], connect(&daemon).await);
            drop(old.writer);
            closed.push(old.reader);
        }
        sent += 1;
    }
    let elapsed = started.elapsed();
    closed.extend(connections.into_iter().map(|c| {
        drop(c.writer);
        c.reader
    }));
    // A connection whose requests still wait (a mutated timeout) stays open: not counted.
    let mut still_open = 0;
    for reader in closed {
        match tokio::time::timeout(Duration::from_secs(1), reader).await {
            Ok(Ok(Ok(lines))) => lines_read += lines,
            Ok(Ok(Err(bad))) => panic!("seed {seed}: {bad}"),
            Ok(Err(panic)) => std::panic::resume_unwind(panic.into_panic()),
            Err(_) => still_open += 1,
        }
    }

    assert!(
        daemon_alive(&daemon),
        "the daemon died (seed {seed}); its log:\n{}",
        daemon.log()
    );
    let mut after = daemon.line().await;
    after.ok("get_status", json!({})).await;
    after.ok("list_sessions", json!({})).await;
    after
        .ok(
            "send_input",
            json!({"session_id": witness, "data": b64(b"still-here\n")}),
        )
        .await;
    after.read_output_until(&witness, "still-here").await;
    let rss_end = eventually("the daemon's memory to settle", || async {
        let rss = daemon.rss_kib();
        // Bounded: sessions' scrollback and SQLite's cache, not the frames sent.
        (rss < rss_after_warmup.unwrap_or(rss) + 96 * 1024).then_some(rss)
    })
    .await;
    assert!(
        !daemon.log().contains("panicked"),
        "a panic in the log (seed {seed})"
    );
    eprintln!(
        "socket fuzz: seed {seed}: {sent} frames ({skipped} unsafe skipped) on {CONNECTIONS} \
         connections, {cuts} cut mid-line, {stalls} stalled and replaced, {lines_read} lines \
         answered ({still_open} connections still waiting at the end), in {:.1}s ({:.0} frames/s); RSS after warm-up \
         {} KiB, peak {} KiB, end {rss_end} KiB",
        elapsed.as_secs_f64(),
        sent as f64 / elapsed.as_secs_f64(),
        rss_after_warmup.unwrap_or(0),
        rss_peak.max(rss_end),
    );
}

fn daemon_alive(daemon: &Daemon) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(daemon.child.id() as i32), None).is_ok()
        && !std::fs::read_to_string(format!("/proc/{}/stat", daemon.child.id()))
            .is_ok_and(|s| s.contains(") Z "))
}
