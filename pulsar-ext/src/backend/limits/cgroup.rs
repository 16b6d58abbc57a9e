//! Control groups, v2 and v1: finding where this daemon may make groups, making one per
//! session with its limits written, reading its usage, and removing it.
//!
//! Every group lives under a base of this daemon's own, `…/pulsar-<uid>/<daemon key>/`, so
//! that two daemons (two users, two test runs) never touch each other's groups.

use std::io;
use std::path::{Path, PathBuf};

/// The controllers Pulsar uses.
pub(super) const CONTROLLERS: [&str; 4] = ["memory", "pids", "cpu", "cpuacct"];

/// Where this daemon makes its groups.
#[derive(Debug, Clone, Default)]
pub(super) struct Hierarchies {
    /// The cgroup v2 base and the controllers enabled for its children.
    pub v2: Option<(PathBuf, Vec<String>)>,
    /// Each cgroup v1 controller's base (a controller mounted with others shares one).
    pub v1: Vec<(String, PathBuf)>,
}

impl Hierarchies {
    /// Finds the bases for daemon `key`: a cgroup v2 one in `v2_root` (a delegated
    /// directory) when given, else at the cgroup2 mount's root when it offers controllers;
    /// and a v1 one beside this process's own group in each writable v1 controller. A base
    /// is created here (and so proven writable) or left out.
    pub fn discover(v2_root: &Path, key: &str) -> Self {
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        // SAFETY: getuid cannot fail.
        let uid = unsafe { libc::getuid() };
        let mut found = Hierarchies::default();
        let v2_root = if v2_root.as_os_str().is_empty() {
            mounts
                .lines()
                .filter_map(|line| mount_of(line, "cgroup2"))
                .next()
                // Nothing is made at a root that offers none of the controllers (this
                // build machine's v2 mount has only hugetlb).
                .filter(|(dir, _)| !available(dir).is_empty())
                .map(|(dir, _)| dir.join(format!("pulsar-{uid}")))
        } else {
            Some(v2_root.to_owned())
        };
        if let Some(root) = v2_root {
            found.v2 = v2_base(&root, key);
        }
        for line in mounts.lines() {
            let Some((dir, options)) = mount_of(line, "cgroup") else {
                continue;
            };
            let controllers: Vec<&str> = options
                .split(',')
                .filter(|o| CONTROLLERS.contains(o))
                .collect();
            if controllers.is_empty() {
                continue;
            }
            // This process's group in that hierarchy: `N:cpu,cpuacct:/path`.
            let inside = own
                .lines()
                .filter_map(|l| {
                    let mut parts = l.splitn(3, ':');
                    parts.next()?;
                    Some((parts.next()?, parts.next()?))
                })
                .find(|(names, _)| names.split(',').any(|n| controllers.contains(&n)))
                .map(|(_, path)| path.trim_start_matches('/').to_owned())
                .unwrap_or_default();
            let base = dir.join(inside).join(format!("pulsar-{uid}")).join(key);
            // Proven writable by making it, and left only while a session's group is in it
            // (made again with the first group): a daemon without limits leaves nothing.
            let existed = base.exists();
            if std::fs::create_dir_all(&base).is_ok() && base.join("cgroup.procs").exists() {
                for name in controllers {
                    found.v1.push((name.to_owned(), base.clone()));
                }
                if !existed && std::fs::remove_dir(&base).is_ok() {
                    let _ = std::fs::remove_dir(base.parent().unwrap_or(&base));
                }
            }
        }
        found
    }

    /// The v1 base of `controller`, if this daemon has one.
    pub fn v1(&self, controller: &str) -> Option<&Path> {
        self.v1
            .iter()
            .find(|(name, _)| name == controller)
            .map(|(_, base)| base.as_path())
    }

    /// The controllers the v2 base enables for its groups.
    pub fn v2_enabled(&self) -> Vec<String> {
        self.v2.as_ref().map(|(_, e)| e.clone()).unwrap_or_default()
    }

    /// True when the v2 base has `controller` for its groups.
    pub fn v2_has(&self, controller: &str) -> bool {
        self.v2
            .as_ref()
            .is_some_and(|(_, enabled)| enabled.iter().any(|c| c == controller))
    }

    /// Every distinct base (v2 first).
    pub fn bases(&self) -> Vec<PathBuf> {
        let mut bases: Vec<PathBuf> = self.v2.iter().map(|(b, _)| b.clone()).collect();
        for (_, base) in &self.v1 {
            if !bases.contains(base) {
                bases.push(base.clone());
            }
        }
        bases
    }

    /// Removes every group under this daemon's bases whose name `keep` refuses (a session
    /// no longer alive: ended while no daemon watched, or unknown), killing what still runs
    /// in it; the bases go too where left empty. Returns how many groups went.
    pub fn sweep(&self, keep: impl Fn(&str) -> bool) -> usize {
        let mut removed = 0;
        for base in self.bases() {
            let Ok(entries) = std::fs::read_dir(&base) else {
                continue;
            };
            let mut leftovers = Vec::new();
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let procs = entry.path().join("cgroup.procs");
                if procs.exists() && !keep(&name) {
                    leftovers.push(procs);
                }
            }
            removed += leftovers.len();
            pulsar_keeper::limited::remove_groups(&leftovers);
            // Fails, harmlessly, while a group is left; the user's level likewise.
            if std::fs::remove_dir(&base).is_ok()
                && let Some(parent) = base.parent()
            {
                let _ = std::fs::remove_dir(parent);
            }
        }
        removed
    }
}

/// `(mount point, options)` of a `/proc/mounts` line of filesystem type `fstype`.
fn mount_of<'a>(line: &'a str, fstype: &str) -> Option<(PathBuf, &'a str)> {
    let mut fields = line.split_whitespace();
    let (_, dir, kind, options) = (
        fields.next()?,
        fields.next()?,
        fields.next()?,
        fields.next()?,
    );
    (kind == fstype).then(|| (PathBuf::from(dir), options))
}

/// Makes `root/key` a v2 base whose children get memory, pids and cpu where `root` offers
/// them. `root` (and, for the automatic root, its parent) must hold no process itself: the
/// v2 rule that only leaves hold processes.
fn v2_base(root: &Path, key: &str) -> Option<(PathBuf, Vec<String>)> {
    let parent = root.parent()?;
    if !root.exists() {
        std::fs::create_dir(root).ok()?;
        enable(parent, &available(parent));
    }
    let offered = available(root);
    enable(root, &offered);
    let base = root.join(key);
    if !base.exists() {
        std::fs::create_dir(&base).ok()?;
    }
    enable(&base, &offered);
    let enabled = std::fs::read_to_string(base.join("cgroup.subtree_control")).ok()?;
    let enabled: Vec<String> = enabled
        .split_whitespace()
        .filter(|c| CONTROLLERS.contains(c))
        .map(str::to_owned)
        .collect();
    Some((base, enabled))
}

/// The controllers of `dir` Pulsar uses.
fn available(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("cgroup.controllers"))
        .unwrap_or_default()
        .split_whitespace()
        .filter(|c| CONTROLLERS.contains(c))
        .map(str::to_owned)
        .collect()
}

/// Enables `controllers` for `dir`'s children, each on its own (one refused must not keep
/// the others off).
fn enable(dir: &Path, controllers: &[String]) {
    for controller in controllers {
        let _ = std::fs::write(dir.join("cgroup.subtree_control"), format!("+{controller}"));
    }
}

/// The pids in `group`.
pub(super) fn procs(group: &Path) -> Vec<i32> {
    std::fs::read_to_string(group.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Makes `group` (a session's group in a v1 hierarchy) and the levels above it, which the
/// last session's end may have removed; tried again if one goes meanwhile.
pub(super) fn make(group: &Path) -> io::Result<()> {
    let mut tries = 0;
    loop {
        match std::fs::create_dir_all(group) {
            Err(err) if err.kind() == io::ErrorKind::NotFound && tries < 5 => tries += 1,
            other => return other,
        }
    }
}

/// Makes `group` in the v2 `base`, enabling `controllers` in the base again if it had to be
/// made anew (the v2 rule: a group's controllers are its parent's `subtree_control`).
pub(super) fn make_v2(base: &Path, group: &Path, controllers: &[String]) -> io::Result<()> {
    make(group)?;
    enable(base, controllers);
    Ok(())
}

/// Writes `value` to `file` of `dir`, saying which on a failure.
pub(super) fn write(dir: &Path, file: &str, value: &str) -> Result<(), String> {
    std::fs::write(dir.join(file), value).map_err(|err| {
        format!(
            "cannot write {value} to {}: {err}",
            dir.join(file).display()
        )
    })
}

/// A number read from `file` of `dir` (the first one, or the one after `key` in a
/// `key value` table).
pub(super) fn read_number(dir: &Path, file: &str, key: Option<&str>) -> Option<u64> {
    let text = std::fs::read_to_string(dir.join(file)).ok()?;
    match key {
        None => text.split_whitespace().next()?.parse().ok(),
        Some(key) => text.lines().find_map(|line| {
            let (name, value) = line.split_once(' ')?;
            (name == key).then(|| value.trim().parse().ok()).flatten()
        }),
    }
}
