//! Usage of a session without a control group: summed from `/proc` over its process tree
//! (the program and every descendant still running; reaped children count through their
//! parents' `cutime`/`cstime`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long one reading of `/proc` serves: `list_sessions` over a thousand sessions reads it
/// once, not once a session.
const SNAPSHOT_FOR: Duration = Duration::from_millis(250);

/// Every process as last read, and each one's children.
struct Table {
    procs: HashMap<i32, Proc>,
    children: HashMap<i32, Vec<i32>>,
}

static SNAPSHOT: Mutex<Option<(Instant, Arc<Table>)>> = Mutex::new(None);

/// One process's figures.
#[derive(Debug, Default, Clone, Copy)]
struct Proc {
    parent: i32,
    /// utime + stime + cutime + cstime, in clock ticks.
    ticks: u64,
    /// Resident pages.
    rss_pages: u64,
}

/// `(memory bytes, peak bytes, cpu ms, processes)` of the tree under `root`.
pub(super) fn tree_usage(root: u32) -> (u64, u64, u64, u32) {
    let table = snapshot();
    let (procs, children) = (&table.procs, &table.children);
    // SAFETY: sysconf only reads a system constant.
    let (page, tick) = unsafe {
        (
            libc::sysconf(libc::_SC_PAGESIZE).max(1) as u64,
            libc::sysconf(libc::_SC_CLK_TCK).max(1) as u64,
        )
    };
    let (mut memory, mut peak, mut ticks, mut count) = (0u64, 0u64, 0u64, 0u32);
    let mut todo = vec![root as i32];
    while let Some(pid) = todo.pop() {
        let Some(proc) = procs.get(&pid) else {
            continue;
        };
        count += 1;
        memory += proc.rss_pages * page;
        peak += high_water_mark(pid).unwrap_or(proc.rss_pages * page);
        ticks += proc.ticks;
        todo.extend(children.get(&pid).into_iter().flatten());
    }
    (memory, peak, ticks * 1000 / tick, count)
}

/// The processes read at most [`SNAPSHOT_FOR`] ago.
fn snapshot() -> Arc<Table> {
    let mut last = SNAPSHOT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((at, table)) = last.as_ref()
        && at.elapsed() < SNAPSHOT_FOR
    {
        return Arc::clone(table);
    }
    let procs = all_procs();
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    for (&pid, proc) in &procs {
        children.entry(proc.parent).or_default().push(pid);
    }
    let table = Arc::new(Table { procs, children });
    *last = Some((Instant::now(), Arc::clone(&table)));
    table
}

fn all_procs() -> HashMap<i32, Proc> {
    let mut procs = HashMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return procs;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        if let Some(proc) = read_stat(pid) {
            procs.insert(pid, proc);
        }
    }
    procs
}

/// `/proc/PID/stat`: the fields after the command name, which may itself hold spaces and
/// parentheses (so split after its last `)`).
fn read_stat(pid: i32) -> Option<Proc> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Field 3 (state) is rest[0]: ppid is field 4, utime..cstime 14..17, rss 24.
    let at = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<i64>().ok());
    let ticks = (14..=17).filter_map(at).map(|t| t.max(0) as u64).sum();
    Some(Proc {
        parent: at(4)? as i32,
        ticks,
        rss_pages: at(24).unwrap_or(0).max(0) as u64,
    })
}

/// `VmHWM` of `pid`, in bytes.
fn high_water_mark(pid: i32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_tree_is_counted() {
        let (memory, peak, _cpu, count) = tree_usage(std::process::id());
        assert!(count >= 1);
        assert!(memory > 0 && peak >= memory / 2, "{memory} {peak}");
    }
}
