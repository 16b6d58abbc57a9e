//! Resource limits of local sessions: which mechanism holds each limit on this machine, the
//! session's own control groups, and what the session uses.
//!
//! One [`Confiner`] per daemon knows where it may make groups (cgroup v2 in a delegated
//! subtree, else cgroup v1 controllers, see `cgroup.rs`); for each session it picks a
//! mechanism per limit (a group, else an rlimit or the nice value), makes the groups with
//! their limits written, and hands the program's spawn what the trampoline
//! (`pulsar-keeper --exec-limited`) must do before the program's first instruction. A limit
//! no mechanism can hold is an error, never ignored. The output rate is the pump's
//! (`session/rate.rs`), not the backend's: it is only checked and reported here.

mod cgroup;
mod procfs;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use pulsar_keeper::wire::SpawnLimits;
use pulsar_protocol::{AppliedLimits, HeldLimit, LimitMechanism, SessionLimits, SessionUsage};

use super::BackendError;
use cgroup::Hierarchies;

/// The CFS period Pulsar writes with a CPU quota, in microseconds.
const CPU_PERIOD_US: u64 = 100_000;

/// Where and how this daemon confines its sessions.
#[derive(Debug, Default)]
pub struct Confiner {
    hierarchies: Hierarchies,
    /// How to start a program through the trampoline; `None`: no `pulsar-keeper` found, so
    /// only the output rate can be held.
    trampoline: Option<Vec<String>>,
}

impl Confiner {
    /// Finds the groups daemon `key` may use (`cgroups` false: rlimits and nice only; a
    /// non-empty `v2_root`: the delegated cgroup v2 directory to use) and how to start
    /// programs under limits (`trampoline`).
    pub fn new(cgroups: bool, v2_root: &Path, key: &str, trampoline: Option<Vec<String>>) -> Self {
        let hierarchies = if cgroups {
            Hierarchies::discover(v2_root, key)
        } else {
            Hierarchies::default()
        };
        tracing::info!(
            v2 = ?hierarchies.v2.as_ref().map(|(base, enabled)| (base.display().to_string(), enabled.join(","))),
            v1 = ?hierarchies.v1.iter().map(|(c, _)| c.as_str()).collect::<Vec<_>>(),
            "resource limits: control groups found"
        );
        Self {
            hierarchies,
            trampoline,
        }
    }

    /// Removes the groups of sessions not in `alive` (their programs are gone, or nobody
    /// knows them), as at a daemon's start once its sessions are restored; returns how many.
    pub fn sweep(&self, alive: &std::collections::HashSet<String>) -> usize {
        self.hierarchies.sweep(|name| alive.contains(name))
    }

    /// At the daemon's stop: removes this daemon's bases if nothing is left in them (a
    /// session held by the keeper keeps its group for the next daemon).
    pub fn close(&self) {
        self.hierarchies.sweep(|_| true);
    }

    /// Checks `limits` for a session of `kind` that is not a local program: only the output
    /// rate applies to it.
    pub fn check_remote(kind: &'static str, limits: &SessionLimits) -> Result<(), BackendError> {
        let held = [
            ("memory_max", limits.memory_max.is_some()),
            ("cpu_max", limits.cpu_max.is_some()),
            ("pids_max", limits.pids_max.is_some()),
            ("nofile_max", limits.nofile_max.is_some()),
        ];
        match held.into_iter().find(|(_, set)| *set) {
            Some((field, _)) => Err(BackendError::LimitNotApplicable { field, kind }),
            None => Ok(()),
        }
    }

    /// Makes session `session`'s groups with `limits` written and says how its program must
    /// start; `None` when it has no limit the backend holds.
    pub fn confine(
        &self,
        session: &str,
        limits: &SessionLimits,
    ) -> Result<Option<Confinement>, BackendError> {
        self.build(session, limits, true)
    }

    /// The confinement a running program (started by an earlier daemon) is in already.
    pub fn reattach(&self, session: &str, limits: &SessionLimits) -> Option<Confinement> {
        self.build(session, limits, false).ok().flatten()
    }

    fn build(
        &self,
        session: &str,
        limits: &SessionLimits,
        create: bool,
    ) -> Result<Option<Confinement>, BackendError> {
        for (field, value) in [
            ("memory_max", limits.memory_max),
            ("cpu_max", limits.cpu_max.map(u64::from)),
            ("pids_max", limits.pids_max),
            ("nofile_max", limits.nofile_max),
            ("output_bytes_per_sec", limits.output_bytes_per_sec),
        ] {
            if value == Some(0) {
                return Err(BackendError::InvalidSetting {
                    field: limit_field(field),
                    reason: "must be at least 1 (leave it out for no limit)".to_owned(),
                });
            }
        }
        let local = SessionLimits {
            output_bytes_per_sec: None,
            ..*limits
        };
        if local.is_empty() {
            return Ok(None);
        }
        let Some(trampoline) = self.trampoline.clone() else {
            return Err(BackendError::LimitUnavailable {
                field: first_set(&local),
                reason: "no pulsar-keeper program was found to start the program under its \
                         limits (set keeper_binary)"
                    .to_owned(),
            });
        };
        let pick = |controller: &str| {
            if self.hierarchies.v2_has(controller) {
                Some(LimitMechanism::Cgroup2)
            } else if self.hierarchies.v1(controller).is_some() {
                Some(LimitMechanism::Cgroup1)
            } else {
                None
            }
        };
        let mut applied = AppliedLimits::default();
        let mut spawn = SpawnLimits {
            trampoline,
            ..SpawnLimits::default()
        };
        if let Some(value) = local.memory_max {
            let mechanism = pick("memory").unwrap_or(LimitMechanism::Rlimit);
            if mechanism == LimitMechanism::Rlimit {
                spawn.address_space = Some(value);
            }
            applied.memory_max = Some(HeldLimit { value, mechanism });
        }
        if let Some(value) = local.pids_max {
            // SAFETY: geteuid cannot fail.
            let root = unsafe { libc::geteuid() } == 0;
            let mechanism = match pick("pids") {
                Some(mechanism) => mechanism,
                None if !root => {
                    spawn.processes = Some(value);
                    LimitMechanism::Rlimit
                }
                None => {
                    return Err(BackendError::LimitUnavailable {
                        field: "pids_max",
                        reason: "no pids controller is available to this daemon (cgroup v2 \
                                 or v1), and RLIMIT_NPROC does not bind root"
                            .to_owned(),
                    });
                }
            };
            applied.pids_max = Some(HeldLimit { value, mechanism });
        }
        if let Some(value) = local.cpu_max {
            let mechanism = pick("cpu").unwrap_or(LimitMechanism::Nice);
            if mechanism == LimitMechanism::Nice {
                // Less than one CPU: a proportionally higher nice value (a share, not a cap).
                let share = u64::from(value.min(100));
                spawn.nice = Some(((100 - share) * 19 / 100) as i32);
            }
            applied.cpu_max = Some(HeldLimit {
                value: u64::from(value),
                mechanism,
            });
        }
        if let Some(value) = local.nofile_max {
            spawn.open_files = Some(value);
            applied.nofile_max = Some(HeldLimit {
                value,
                mechanism: LimitMechanism::Rlimit,
            });
        }
        let mut confinement = Confinement {
            applied,
            spawn,
            groups: Vec::new(),
            memory: None,
            cpu: None,
            pids: None,
            sample: Mutex::new((Instant::now(), 0)),
            oom: OnceLock::new(),
        };
        let uses = |mechanism| {
            [applied.memory_max, applied.pids_max, applied.cpu_max]
                .iter()
                .flatten()
                .any(|held| held.mechanism == mechanism)
        };
        let fail = |confinement: &Confinement, field: &'static str, reason: String| {
            confinement.remove();
            BackendError::LimitUnavailable { field, reason }
        };
        if uses(LimitMechanism::Cgroup2)
            && let Some((base, _)) = &self.hierarchies.v2
        {
            let group = base.join(session);
            if create {
                cgroup::make_v2(base, &group, &self.hierarchies.v2_enabled()).map_err(|err| {
                    fail(
                        &confinement,
                        first_set(&local),
                        format!("cannot make {}: {err}", group.display()),
                    )
                })?;
            }
            confinement.groups.push(group.clone());
            let v2 = |held: Option<HeldLimit>| {
                held.is_some_and(|h| h.mechanism == LimitMechanism::Cgroup2)
            };
            let mut writes: Vec<(&'static str, &str, String)> = Vec::new();
            if v2(applied.memory_max) {
                let value = applied.memory_max.map(|h| h.value).unwrap_or_default();
                writes.push(("memory_max", "memory.max", value.to_string()));
                writes.push(("memory_max", "memory.swap.max", "0".to_owned()));
            }
            if v2(applied.pids_max) {
                let value = applied.pids_max.map(|h| h.value).unwrap_or_default();
                writes.push(("pids_max", "pids.max", value.to_string()));
            }
            if v2(applied.cpu_max) {
                let value = applied.cpu_max.map(|h| h.value).unwrap_or_default();
                writes.push((
                    "cpu_max",
                    "cpu.max",
                    format!("{} {CPU_PERIOD_US}", value * 1000),
                ));
            }
            if create {
                for (field, file, value) in writes {
                    // No swap controller is no error: there is then no swap to escape to.
                    if let Err(reason) = cgroup::write(&group, file, &value)
                        && file != "memory.swap.max"
                    {
                        return Err(fail(&confinement, field, reason));
                    }
                }
            }
            let has = |c: &str| self.hierarchies.v2_has(c);
            confinement.memory = has("memory").then(|| (true, group.clone()));
            confinement.cpu = has("cpu").then(|| (true, group.clone()));
            confinement.pids = has("pids").then(|| (true, group.clone()));
            confinement
                .spawn
                .cgroup_procs
                .push(group.join("cgroup.procs"));
        }
        if uses(LimitMechanism::Cgroup1) {
            // A group in every v1 controller Pulsar knows, so usage comes from the kernel
            // even for a controller no limit is written to.
            for controller in cgroup::CONTROLLERS {
                let Some(base) = self.hierarchies.v1(controller) else {
                    continue;
                };
                let group = base.join(session);
                if confinement.groups.contains(&group) {
                    continue;
                }
                if create {
                    cgroup::make(&group).map_err(|err| {
                        fail(
                            &confinement,
                            first_set(&local),
                            format!("cannot make {}: {err}", group.display()),
                        )
                    })?;
                }
                confinement.groups.push(group.clone());
                confinement
                    .spawn
                    .cgroup_procs
                    .push(group.join("cgroup.procs"));
            }
            let v1 = |held: Option<HeldLimit>| {
                held.filter(|h| h.mechanism == LimitMechanism::Cgroup1)
                    .map(|h| h.value)
            };
            let group_of =
                |controller: &str| self.hierarchies.v1(controller).map(|b| b.join(session));
            let mut writes: Vec<(&'static str, PathBuf, &str, String)> = Vec::new();
            if let (Some(value), Some(group)) = (v1(applied.memory_max), group_of("memory")) {
                writes.push((
                    "memory_max",
                    group.clone(),
                    "memory.limit_in_bytes",
                    value.to_string(),
                ));
                writes.push((
                    "memory_max",
                    group,
                    "memory.memsw.limit_in_bytes",
                    value.to_string(),
                ));
            }
            if let (Some(value), Some(group)) = (v1(applied.pids_max), group_of("pids")) {
                writes.push(("pids_max", group, "pids.max", value.to_string()));
            }
            if let (Some(value), Some(group)) = (v1(applied.cpu_max), group_of("cpu")) {
                writes.push((
                    "cpu_max",
                    group.clone(),
                    "cpu.cfs_period_us",
                    CPU_PERIOD_US.to_string(),
                ));
                writes.push((
                    "cpu_max",
                    group,
                    "cpu.cfs_quota_us",
                    (value * 1000).to_string(),
                ));
            }
            if create {
                for (field, group, file, value) in writes {
                    // memsw exists only with swap accounting: without it there is no swap
                    // to escape to, and the memory limit alone holds.
                    if let Err(reason) = cgroup::write(&group, file, &value)
                        && file != "memory.memsw.limit_in_bytes"
                    {
                        return Err(fail(&confinement, field, reason));
                    }
                }
            }
            if confinement.memory.is_none() {
                confinement.memory = group_of("memory").map(|g| (false, g));
            }
            if confinement.cpu.is_none() {
                confinement.cpu = group_of("cpuacct").map(|g| (false, g));
            }
            if confinement.pids.is_none() {
                confinement.pids = group_of("pids").map(|g| (false, g));
            }
        }
        Ok(Some(confinement))
    }
}

/// The wire name of a limit's field.
fn limit_field(field: &'static str) -> &'static str {
    match field {
        "memory_max" => "limits.memory_max",
        "cpu_max" => "limits.cpu_max",
        "pids_max" => "limits.pids_max",
        "nofile_max" => "limits.nofile_max",
        _ => "limits.output_bytes_per_sec",
    }
}

/// The first limit set in `limits`, to name in an error that concerns them all.
fn first_set(limits: &SessionLimits) -> &'static str {
    if limits.memory_max.is_some() {
        "memory_max"
    } else if limits.pids_max.is_some() {
        "pids_max"
    } else if limits.cpu_max.is_some() {
        "cpu_max"
    } else {
        "nofile_max"
    }
}

/// One session's confinement: its limits and mechanisms, its groups, and how its program
/// starts.
#[derive(Debug)]
pub struct Confinement {
    applied: AppliedLimits,
    spawn: SpawnLimits,
    /// Every group made for the session, removed with it.
    groups: Vec<PathBuf>,
    /// The groups usage is read from: (is v2, directory).
    memory: Option<(bool, PathBuf)>,
    cpu: Option<(bool, PathBuf)>,
    pids: Option<(bool, PathBuf)>,
    /// The previous CPU reading (when, ms), for `cpu_percent`.
    sample: Mutex<(Instant, u64)>,
    /// Set once the program has ended killed by its memory limit.
    oom: OnceLock<String>,
}

impl Confinement {
    /// The limits in force and what holds each (the output rate aside).
    pub fn applied(&self) -> AppliedLimits {
        self.applied
    }

    /// What the program's spawn must apply.
    pub fn spawn_limits(&self) -> SpawnLimits {
        self.spawn.clone()
    }

    /// The session's usage now; `pid` is its program, for the `/proc` fallback.
    pub fn usage(&self, pid: u32) -> SessionUsage {
        let (memory_bytes, peak, cpu_ms, processes) = procfs::tree_usage(pid);
        let mut usage = SessionUsage {
            memory_bytes,
            memory_peak_bytes: Some(peak),
            cpu_ms,
            cpu_percent: 0,
            processes,
        };
        if let Some((v2, group)) = &self.memory {
            let (current, peak) = if *v2 {
                ("memory.current", "memory.peak")
            } else {
                ("memory.usage_in_bytes", "memory.max_usage_in_bytes")
            };
            if let Some(bytes) = cgroup::read_number(group, current, None) {
                usage.memory_bytes = bytes;
                usage.memory_peak_bytes = cgroup::read_number(group, peak, None);
            }
        }
        if let Some((v2, group)) = &self.cpu {
            let ms = if *v2 {
                cgroup::read_number(group, "cpu.stat", Some("usage_usec")).map(|us| us / 1000)
            } else {
                cgroup::read_number(group, "cpuacct.usage", None).map(|ns| ns / 1_000_000)
            };
            if let Some(ms) = ms {
                usage.cpu_ms = ms;
            }
        }
        usage.cpu_percent = percent(&self.sample, usage.cpu_ms);
        if let Some((_, group)) = &self.pids {
            usage.processes = cgroup::procs(group).len() as u32;
        }
        usage
    }

    /// Called once the program has ended: notes whether its memory limit killed it, then
    /// removes the groups (killing whatever was left in them).
    pub fn finish(&self) {
        if let (Some((v2, group)), Some(limit)) = (&self.memory, self.applied.memory_max) {
            let kills = if *v2 {
                cgroup::read_number(group, "memory.events", Some("oom_kill"))
            } else {
                cgroup::read_number(group, "memory.oom_control", Some("oom_kill"))
            };
            if kills.unwrap_or(0) > 0 {
                let _ = self
                    .oom
                    .set(format!("memory limit ({} bytes)", limit.value));
            }
        }
        self.remove();
    }

    /// "memory limit (N bytes)" when the memory limit killed the program.
    pub fn end_reason(&self) -> Option<String> {
        self.oom.get().cloned()
    }

    fn remove(&self) {
        let procs: Vec<PathBuf> = self.groups.iter().map(|g| g.join("cgroup.procs")).collect();
        pulsar_keeper::limited::remove_groups(&procs);
    }
}

/// Usage of a program without a group of its own (or the parts its groups do not say).
pub fn usage_from_proc(pid: u32, sample: &Mutex<(Instant, u64)>) -> SessionUsage {
    let (memory, peak, cpu_ms, processes) = procfs::tree_usage(pid);
    SessionUsage {
        memory_bytes: memory,
        memory_peak_bytes: Some(peak),
        cpu_ms,
        cpu_percent: percent(sample, cpu_ms),
        processes,
    }
}

/// CPU percent since the previous reading in `sample`, which becomes `cpu_ms` now.
fn percent(sample: &Mutex<(Instant, u64)>, cpu_ms: u64) -> u32 {
    let mut last = sample.lock().unwrap_or_else(|e| e.into_inner());
    let now = Instant::now();
    let wall = now.duration_since(last.0).as_millis() as u64;
    let used = cpu_ms.saturating_sub(last.1);
    if wall == 0 {
        return 0;
    }
    *last = (now, cpu_ms);
    (used * 100 / wall) as u32
}
