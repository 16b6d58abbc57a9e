//! Resource limits per session, real programs under real limits on this machine: a memory
//! hog killed alone and reported, a fork bomb held to `pids_max`, a CPU hog held to its
//! share, the output rate measured, usage checked against `/proc`, groups removed.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use pulsar_e2e::*;
use pulsar_protocol::{PulsarApiClient as _, SessionEvent, error as code};
use serde_json::{Value, json};

const MIB: u64 = 1024 * 1024;

/// Creates a local session of `argv` under `limits`; its `create_session` result.
async fn create(line: &mut LineClient, argv: &[&str], limits: Value) -> Value {
    line.ok(
        "create_session",
        json!({"type": {"kind": "local", "command": argv}, "limits": limits}),
    )
    .await
}

async fn info(line: &mut LineClient, id: &Value) -> Value {
    line.ok("get_session", json!({"session_id": id})).await
}

/// Polls `get_session` until `done` accepts the session; returns it.
async fn info_until(line: &mut LineClient, id: &Value, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Deadline::start();
    loop {
        let session = info(line, id).await;
        if done(&session) {
            return session;
        }
        deadline.check("the session to change");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The directory of `pid`'s group in the v1 `controller` hierarchy (or the v2 one), if the
/// process is in one made by Pulsar.
fn group_of(pid: u64, controller: &str) -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    for line in own.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, names, path) = (parts.next()?, parts.next()?, parts.next()?);
        if !path.contains("/pulsar-") {
            continue;
        }
        let mount = mounts.lines().find_map(|m| {
            let f: Vec<&str> = m.split_whitespace().collect();
            let fits = if names.is_empty() {
                f[2] == "cgroup2"
            } else {
                f[2] == "cgroup" && f[3].split(',').any(|o| o == controller)
            };
            (fits && (names.is_empty() || names.split(',').any(|n| n == controller)))
                .then(|| PathBuf::from(f[1]))
        });
        if let Some(mount) = mount {
            return Some(mount.join(path.trim_start_matches('/')));
        }
    }
    None
}

fn pid_of(session: &Value) -> u64 {
    session["pid"]
        .as_u64()
        .expect("a running session has a pid")
}

/// `name`'s soft limit in `/proc/PID/limits`.
fn proc_limit(pid: u64, name: &str) -> String {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits.lines().find(|l| l.starts_with(name)).unwrap();
    line[name.len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

/// Waits until the trampoline has exec'd the program (its command line no longer the
/// keeper's `--exec-limited`).
async fn program_started(pid: u64, program: &str) {
    eventually("the program to start under its limits", || async {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        String::from_utf8_lossy(&cmdline)
            .contains(program)
            .then_some(())
            .filter(|_| !String::from_utf8_lossy(&cmdline).contains("--exec-limited"))
    })
    .await;
}

#[tokio::test]
async fn a_memory_hog_is_killed_alone_and_reported_stopped_with_its_memory_limit() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let mut events = client.subscribe_events().await.unwrap();
    let mut line = daemon.line().await;
    let bystander = line.create_cat().await["session_id"].clone();
    // `tail` keeps the last line of an endless one: its memory grows without bound.
    let hog = create(
        &mut line,
        &["tail", "/dev/zero"],
        json!({"memory_max": 64 * MIB}),
    )
    .await;
    let hog_id = hog["session_id"].clone();
    let stopped = info_until(&mut line, &hog_id, |s| s["state"] == "stopped").await;
    let expected = format!("memory limit ({} bytes)", 64 * MIB);
    assert_eq!(stopped["reason"], expected.as_str(), "{stopped}");
    assert_eq!(stopped["exit_signal"], 9, "{stopped}");
    let deadline = Deadline::start();
    loop {
        deadline.check("the exit event");
        let event = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let SessionEvent::SessionExited {
            session_id, reason, ..
        } = event
            && session_id.to_string() == hog_id.as_str().unwrap()
        {
            assert_eq!(reason.as_deref(), Some(expected.as_str()));
            break;
        }
    }
    // The daemon and the other session carry on.
    assert_eq!(info(&mut line, &bystander).await["state"], "detached");
}

#[tokio::test]
async fn get_session_reports_each_limit_with_the_mechanism_holding_it() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    let limits = json!({
        "memory_max": 256 * MIB,
        "cpu_max": 50,
        "pids_max": 64,
        "nofile_max": 77,
        "output_bytes_per_sec": 100_000,
    });
    let created = create(&mut line, &["sleep", "30"], limits).await;
    let applied = &created["limits"];
    for (field, value) in [
        ("memory_max", 256 * MIB),
        ("cpu_max", 50),
        ("pids_max", 64),
        ("nofile_max", 77),
        ("output_bytes_per_sec", 100_000),
    ] {
        assert_eq!(applied[field]["value"], value, "{field}: {applied}");
    }
    for field in ["memory_max", "cpu_max", "pids_max"] {
        let mechanism = applied[field]["mechanism"].as_str().unwrap();
        assert!(
            ["cgroup1", "cgroup2"].contains(&mechanism),
            "{field}: {applied}"
        );
    }
    assert_eq!(applied["nofile_max"]["mechanism"], "rlimit");
    assert_eq!(applied["output_bytes_per_sec"]["mechanism"], "pump");
    let pid = pid_of(&created);
    program_started(pid, "sleep").await;
    assert_eq!(proc_limit(pid, "Max open files"), "77");
    let memory = group_of(pid, "memory").expect("the program is in its memory group");
    let limit = std::fs::read_to_string(memory.join("memory.limit_in_bytes"))
        .or_else(|_| std::fs::read_to_string(memory.join("memory.max")))
        .unwrap();
    assert_eq!(limit.trim(), (256 * MIB).to_string());
}

#[tokio::test]
async fn a_fork_bomb_is_held_to_pids_max() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    // Bounded: each child sleeps 3 s and exits; the loop would otherwise spawn hundreds.
    // bash, which retries a fork refused (dash exits at the first).
    let bomb = create(
        &mut line,
        &["bash", "-c", "while :; do sleep 3 & done"],
        json!({"pids_max": 20}),
    )
    .await;
    let id = bomb["session_id"].clone();
    let pid = pid_of(&bomb);
    program_started(pid, "while").await;
    let group = group_of(pid, "pids").expect("the bomb is in its pids group");
    let started = Instant::now();
    let mut most = 0;
    while started.elapsed() < Duration::from_millis(1500) {
        let count = std::fs::read_to_string(group.join("pids.current"))
            .unwrap()
            .trim()
            .parse::<u64>()
            .unwrap();
        most = most.max(count);
        assert!(count <= 20, "{count} processes under pids_max 20");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        most >= 15,
        "the bomb did fork up to the limit (most seen: {most})"
    );
    let usage = &info(&mut line, &id).await["usage"];
    assert!(usage["processes"].as_u64().unwrap() <= 20, "{usage}");
    // The daemon answers, and the session ends with all its processes.
    line.ok("terminate_session", json!({"session_id": id}))
        .await;
    eventually("the bomb's group to go", || async {
        (!group.exists()).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_cpu_hog_is_held_to_its_share() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    let hog = create(
        &mut line,
        &["/bin/sh", "-c", "while :; do :; done"],
        json!({"cpu_max": 20}),
    )
    .await;
    let id = hog["session_id"].clone();
    program_started(pid_of(&hog), "while").await;
    let first = info(&mut line, &id).await["usage"]["cpu_ms"]
        .as_u64()
        .unwrap();
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let usage = info(&mut line, &id).await["usage"].clone();
    let used = usage["cpu_ms"].as_u64().unwrap() - first;
    let wall = started.elapsed().as_millis() as u64;
    let share = used * 100 / wall;
    eprintln!("cpu hog under cpu_max 20: {used} ms of CPU in {wall} ms ({share}%), {usage}");
    assert!(used > 0, "the hog ran");
    // 20% of one CPU, with slack for the period boundaries.
    assert!(share <= 26, "{share}% of a CPU under cpu_max 20");
    assert!(usage["cpu_percent"].as_u64().unwrap() <= 30, "{usage}");
}

#[tokio::test]
async fn the_output_rate_limit_slows_reading_and_drops_nothing() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    let rate = 20_000u64;
    let total = 60_000u64;
    let created = create(
        &mut line,
        &[
            "/bin/sh",
            "-c",
            "stty -opost; head -c 60000 /dev/zero | tr '\\0' y; echo; echo END; sleep 30",
        ],
        json!({"output_bytes_per_sec": rate}),
    )
    .await;
    let id = created["session_id"].clone();
    let started = Instant::now();
    let output = line.read_output_until(&id, "END").await;
    let secs = started.elapsed().as_secs_f64();
    let ys = output.bytes().filter(|b| *b == b'y').count() as u64;
    assert_eq!(ys, total, "every byte arrives");
    let measured = total as f64 / secs;
    eprintln!("{total} bytes at output_bytes_per_sec {rate}: {secs:.2} s, {measured:.0} B/s");
    // A tenth of a second's burst; the rest at the rate.
    assert!(
        measured <= rate as f64 * 1.15,
        "{measured} B/s over a {rate} B/s limit"
    );
    assert!(secs < 9.0, "{secs} s");
}

#[tokio::test]
async fn usage_of_a_session_without_a_group_is_its_process_tree_from_proc() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    let created = create(
        &mut line,
        &["/bin/sh", "-c", "sleep 30 & sleep 30 & wait"],
        json!({}),
    )
    .await;
    let id = created["session_id"].clone();
    let pid = pid_of(&created);
    // Both children exec'd (a child still a copy of the shell has another size).
    let children = eventually("both children to be sleep", || async {
        let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap();
        let sleeping = children
            .split_whitespace()
            .filter(|c| {
                std::fs::read_to_string(format!("/proc/{c}/comm")).unwrap_or_default() == "sleep\n"
            })
            .count();
        (sleeping == 2).then_some(children)
    })
    .await;
    let usage = info_until(&mut line, &id, |s| s["usage"]["processes"] == 3).await["usage"].clone();
    // The same figures from /proc, read here: the resident sets of the three processes.
    let mut rss = 0;
    for p in std::iter::once(pid.to_string()).chain(children.split_whitespace().map(str::to_owned))
    {
        let status = std::fs::read_to_string(format!("/proc/{p}/status")).unwrap();
        let kib: u64 = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap()
            .parse()
            .unwrap();
        rss += kib * 1024;
    }
    let reported = usage["memory_bytes"].as_u64().unwrap();
    assert!(
        reported * 10 >= rss * 8 && reported * 10 <= rss * 12,
        "usage says {reported} bytes, /proc {rss}: {usage}"
    );
    assert!(
        usage["memory_peak_bytes"].as_u64().unwrap() >= reported / 2,
        "{usage}"
    );
    assert!(usage["cpu_ms"].as_u64().is_some(), "{usage}");
    // `list_sessions` carries it too.
    let listed = line.ok("list_sessions", json!({})).await;
    assert_eq!(listed["sessions"][0]["usage"]["processes"], 3, "{listed}");
}

#[tokio::test]
async fn usage_of_a_session_in_a_group_counts_what_the_group_holds() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    let created = create(
        &mut line,
        &["/bin/sh", "-c", "sleep 30 & sleep 30 & wait"],
        json!({"memory_max": 128 * MIB, "pids_max": 50}),
    )
    .await;
    let id = created["session_id"].clone();
    let pid = pid_of(&created);
    let usage = info_until(&mut line, &id, |s| s["usage"]["processes"] == 3).await["usage"].clone();
    let memory = group_of(pid, "memory").unwrap();
    let charged: u64 = std::fs::read_to_string(memory.join("memory.usage_in_bytes"))
        .or_else(|_| std::fs::read_to_string(memory.join("memory.current")))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let reported = usage["memory_bytes"].as_u64().unwrap();
    assert!(reported > 0 && reported <= 128 * MIB, "{usage}");
    assert!(
        reported.abs_diff(charged) < 4 * MIB,
        "{reported} vs the group's {charged}"
    );
}

#[tokio::test]
async fn a_session_s_groups_are_removed_when_it_ends() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    let created = create(
        &mut line,
        &["/bin/cat"],
        json!({"memory_max": 64 * MIB, "pids_max": 10}),
    )
    .await;
    let pid = pid_of(&created);
    program_started(pid, "cat").await;
    let groups: Vec<PathBuf> = ["memory", "pids"]
        .iter()
        .filter_map(|c| group_of(pid, c))
        .collect();
    assert!(!groups.is_empty());
    line.ok(
        "terminate_session",
        json!({"session_id": created["session_id"]}),
    )
    .await;
    eventually("the groups to go", || async {
        groups.iter().all(|g| !g.exists()).then_some(())
    })
    .await;
}

#[tokio::test]
async fn leftover_groups_are_removed_at_daemon_start_and_live_ones_kept() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    let created = create(&mut line, &["/bin/cat"], json!({"memory_max": 64 * MIB})).await;
    let id = created["session_id"].clone();
    let pid = pid_of(&created);
    program_started(pid, "cat").await;
    let group = group_of(pid, "memory").unwrap();
    // A group whose session is gone, as a crash between exit and removal leaves it.
    let leftover = group.with_file_name("00000000-0000-4000-8000-000000000000");
    std::fs::create_dir(&leftover).unwrap();
    drop(line);
    let daemon = daemon.restart(&[]).await;
    // Answered only once the daemon serves, which is after its sweep.
    let mut line = daemon.line().await;
    let session = info(&mut line, &id).await;
    assert!(!leftover.exists(), "the leftover group is removed at start");
    assert!(
        group.exists(),
        "the group of the session still running is kept"
    );
    // The restored session keeps its limits, and its group goes with it.
    assert_eq!(
        session["limits"]["memory_max"]["value"],
        64 * MIB,
        "{session}"
    );
    assert_eq!(session["pid"], pid, "the same program, taken over");
    line.ok("terminate_session", json!({"session_id": id}))
        .await;
    eventually("the group to go", || async {
        (!group.exists()).then_some(())
    })
    .await;
}

#[tokio::test]
async fn ssh_and_serial_sessions_refuse_limits_other_than_the_output_rate() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    let err = line
        .err(
            "create_session",
            json!({
                "type": {"kind": "ssh", "host": "127.0.0.1", "port": 1},
                "limits": {"memory_max": 1024 * 1024 * 64},
            }),
        )
        .await;
    assert_eq!(err["code"], code::LIMIT_NOT_APPLICABLE, "{err}");
    assert_eq!(err["data"]["field"], "limits.memory_max", "{err}");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("out of this daemon's reach"),
        "{err}"
    );
    let err = line
        .err(
            "create_session",
            json!({
                "type": {"kind": "serial", "device": "/dev/null"},
                "limits": {"pids_max": 5},
            }),
        )
        .await;
    assert_eq!(err["code"], 1028, "{err}");
}

#[tokio::test]
async fn a_limit_no_mechanism_can_hold_is_refused_at_create() {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: only root has no fallback for pids_max (RLIMIT_NPROC binds others)");
        return;
    }
    let daemon = Daemon::start_with(&[("LIMITS_CGROUPS", "false")]).await;
    let mut line = daemon.line().await;
    let err = line
        .err(
            "create_session",
            json!({"type": {"kind": "local", "command": ["/bin/cat"]}, "limits": {"pids_max": 5}}),
        )
        .await;
    assert_eq!(err["code"], code::LIMIT_UNAVAILABLE, "{err}");
    assert_eq!(err["data"]["field"], "limits.pids_max", "{err}");
    assert!(
        err["message"].as_str().unwrap().contains("RLIMIT_NPROC"),
        "{err}"
    );
    let listed = line.ok("list_sessions", json!({})).await;
    assert_eq!(listed["sessions"], json!([]), "nothing started");
}

#[tokio::test]
async fn without_control_groups_memory_and_cpu_fall_back_to_rlimit_and_nice() {
    let daemon = Daemon::start_with(&[("LIMITS_CGROUPS", "false")]).await;
    let mut line = daemon.line().await;
    let created = create(
        &mut line,
        &["sleep", "30"],
        json!({"memory_max": 512 * MIB, "cpu_max": 50}),
    )
    .await;
    let applied = &created["limits"];
    assert_eq!(applied["memory_max"]["mechanism"], "rlimit", "{applied}");
    assert_eq!(applied["cpu_max"]["mechanism"], "nice", "{applied}");
    let pid = pid_of(&created);
    program_started(pid, "sleep").await;
    assert_eq!(
        proc_limit(pid, "Max address space"),
        (512 * MIB).to_string()
    );
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let nice: i64 = stat[stat.rfind(')').unwrap() + 2..]
        .split_whitespace()
        .nth(16)
        .unwrap()
        .parse()
        .unwrap();
    assert!(nice > 0, "nice {nice}");
}

#[tokio::test]
async fn default_limits_come_from_the_config() {
    let daemon = Daemon::start_with(&[("LIMITS_NOFILE_MAX", "99")]).await;
    let mut line = daemon.line().await;
    let created = create(&mut line, &["sleep", "30"], json!({})).await;
    assert_eq!(created["limits"]["nofile_max"]["value"], 99);
    let pid = pid_of(&created);
    program_started(pid, "sleep").await;
    assert_eq!(proc_limit(pid, "Max open files"), "99");
    // A request's own limit wins.
    let created = create(&mut line, &["sleep", "30"], json!({"nofile_max": 55})).await;
    assert_eq!(created["limits"]["nofile_max"]["value"], 55);
}

#[tokio::test]
async fn limits_hold_in_a_daemon_without_a_keeper_too() {
    let daemon = Daemon::start_with(&[("KEEPER", "false")]).await;
    let mut line = daemon.line().await;
    let created = create(
        &mut line,
        &["sleep", "30"],
        json!({"memory_max": 96 * MIB, "nofile_max": 33}),
    )
    .await;
    let pid = pid_of(&created);
    program_started(pid, "sleep").await;
    assert_eq!(proc_limit(pid, "Max open files"), "33");
    let memory = group_of(pid, "memory").expect("the program is in its memory group");
    line.ok(
        "terminate_session",
        json!({"session_id": created["session_id"]}),
    )
    .await;
    eventually("the group to go", || async {
        (!memory.exists()).then_some(())
    })
    .await;
}

/// A daemon started with a soft open-files limit of 1000 (its hard limit left as it is).
async fn daemon_started_with_1000_open_files(settings: &[(&str, &str)]) -> Daemon {
    Daemon::start_configured(settings, |command| {
        use std::os::unix::process::CommandExt as _;
        // SAFETY: getrlimit/setrlimit are async-signal-safe and touch a local struct only.
        unsafe {
            command.pre_exec(|| {
                let mut limit = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                limit.rlim_cur = 1000.min(limit.rlim_max);
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    })
    .await
}

/// The soft and hard open-files limits of `pid`, from `/proc/PID/limits`.
fn open_files_limits(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("an open-files line");
    let fields: Vec<&str> = line.split_whitespace().collect();
    (fields[3].to_owned(), fields[4].to_owned())
}

/// The session program's `ulimit -n`, from its output.
async fn programs_open_files(settings: &[(&str, &str)]) -> (String, (String, String)) {
    let daemon = daemon_started_with_1000_open_files(settings).await;
    let client = daemon.client().await;
    let id = start_program(&client, &["sh", "-c", "echo files=$(ulimit -n)=; read x"]).await;
    let out = read_until(&client, id, "=\r\n").await;
    let shown = out
        .split("files=")
        .nth(1)
        .and_then(|rest| rest.split('=').next())
        .unwrap_or_default()
        .to_owned();
    let pid = client.get_status().await.unwrap().pid;
    (shown, open_files_limits(pid))
}

#[tokio::test]
async fn a_kept_program_starts_with_the_open_files_limit_the_daemon_started_with() {
    let (program, (daemon_soft, daemon_hard)) = programs_open_files(&[]).await;
    assert_eq!(program, "1000");
    // The daemon itself raised its own, where it could.
    assert_eq!(daemon_soft, daemon_hard);
}

#[tokio::test]
async fn without_a_keeper_a_program_starts_with_the_open_files_limit_the_daemon_started_with() {
    let (program, (daemon_soft, daemon_hard)) = programs_open_files(&[("KEEPER", "false")]).await;
    assert_eq!(program, "1000");
    assert_eq!(daemon_soft, daemon_hard);
}
