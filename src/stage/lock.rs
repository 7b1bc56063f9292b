//! Output locks: two runs writing the same parts of one output folder at once (a task resubmitted
//! while the first still runs, a command started twice) must not race. A lock is a small file
//! naming its holder (host, pid, command); it is made visible complete (written under a temporary
//! name, then hard-linked into place, which is atomic on local disks and on NFS), kept fresh by a
//! heartbeat, and judged stale when its process is gone (same host: /proc, with the process's start
//! time against pid reuse) or, for a holder on another host, when its heartbeat stopped.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// How often a holder refreshes its lock file's modification time.
pub const HEARTBEAT: Duration = Duration::from_secs(15);
/// A lock of another host whose heartbeat is older than this is stale (generous: clocks of
/// cluster nodes differ a little, and a loaded file server may lag).
pub const STALE_AFTER: Duration = Duration::from_secs(120);

/// Who holds a lock: what the lock file says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub host: String,
    pub pid: u32,
    /// The holder's process start time (clock ticks since boot, /proc/PID/stat), against pid reuse.
    pub process_start: Option<u64>,
    /// This boot of the host (/proc/sys/kernel/random/boot_id): a pid of an earlier boot is gone.
    pub boot_id: Option<String>,
    /// Seconds since the epoch when the lock was taken.
    pub since: u64,
    /// What the holder runs ("crop shard 1/4", say), for the message a second run prints.
    pub what: String,
    /// The Slurm job of the holder, when it runs under Slurm.
    #[serde(default)]
    pub slurm_job: Option<String>,
}

impl Holder {
    fn this_process(what: &str) -> Self {
        let pid = std::process::id();
        let slurm_job = std::env::var("SLURM_ARRAY_JOB_ID")
            .ok()
            .zip(std::env::var("SLURM_ARRAY_TASK_ID").ok())
            .map(|(job, task)| format!("{job}_{task}"))
            .or_else(|| std::env::var("SLURM_JOB_ID").ok());
        Self {
            host: host_name(),
            pid,
            process_start: process_start(pid),
            boot_id: boot_id(),
            since: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
            what: what.to_owned(),
            slurm_job,
        }
    }

    /// One line for messages: "crop shard 1/4 (host n12, pid 4711, Slurm job 88_1, since 40 s)".
    pub fn describe(&self) -> String {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let job = self.slurm_job.as_deref().map(|j| format!(", Slurm job {j}")).unwrap_or_default();
        format!(
            "{} (host {}, pid {}{job}, started {} s ago)",
            self.what,
            self.host,
            self.pid,
            now.saturating_sub(self.since)
        )
    }
}

/// Why a lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("{path}: is held by another run: {holder}; wait for it to finish (if that run is gone, the lock is taken over once it is found stale, or remove the file)", path = .path.display())]
    Held { path: PathBuf, holder: String },
    #[error("{path}: {source}", path = .path.display())]
    Io { path: PathBuf, source: std::io::Error },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> LockError + '_ {
    move |source| LockError::Io { path: path.to_owned(), source }
}

/// A held lock; released (its file removed) on drop.
pub struct OutputLock {
    path: PathBuf,
    holder: Holder,
    stop: Arc<AtomicBool>,
    heartbeat: Option<JoinHandle<()>>,
}

/// What a lock file found on disk says about its holder.
#[derive(Debug)]
pub enum State {
    Live(Holder),
    Stale(Option<Holder>),
    /// Unreadable (being written by a process without hard links, say) and recent.
    Unknown,
}

impl OutputLock {
    /// Takes the lock at `path` for `what`; fails naming the holder when a live run has it. A
    /// stale lock is taken over (with a warning on stderr).
    pub fn acquire(path: &Path, what: &str) -> Result<Self, LockError> {
        let holder = Holder::this_process(what);
        let text = serde_json::to_vec_pretty(&holder).expect("a holder serialises");
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp = path.with_file_name(format!(".{name}.{}{}", holder.pid, crate::fsutil::TMP_SUFFIX));
        std::fs::write(&tmp, &text).map_err(io_error(&tmp))?;
        let result = (|| {
            for _attempt in 0..5 {
                match link_or_create(&tmp, path, &text) {
                    Ok(()) => return Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(io_error(path)(e)),
                }
                match inspect(path) {
                    State::Live(other) => {
                        return Err(LockError::Held { path: path.to_owned(), holder: other.describe() })
                    }
                    State::Unknown => {
                        return Err(LockError::Held {
                            path: path.to_owned(),
                            holder: "a run whose lock file is not readable yet".into(),
                        })
                    }
                    State::Stale(old) => take_over(path, old.as_ref(), &holder)?,
                }
            }
            Err(LockError::Held { path: path.to_owned(), holder: "runs that keep taking it over".into() })
        })();
        let _ = std::fs::remove_file(&tmp);
        result?;
        let stop = Arc::new(AtomicBool::new(false));
        let heartbeat = {
            let (stop, path) = (stop.clone(), path.to_owned());
            std::thread::Builder::new().name("lock-heartbeat".into()).spawn(move || heartbeat(&path, &stop)).ok()
        };
        Ok(Self { path: path.to_owned(), holder, stop, heartbeat })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for OutputLock {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(handle) = self.heartbeat.take() {
            handle.thread().unpark();
            let _ = handle.join();
        }
        // Only our own: a lock found stale and taken over meanwhile belongs to someone else now.
        if read_holder(&self.path).as_ref() == Some(&self.holder) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn heartbeat(path: &Path, stop: &AtomicBool) {
    let mut last = std::time::Instant::now();
    while !stop.load(Ordering::Relaxed) {
        std::thread::park_timeout(Duration::from_secs(1));
        if last.elapsed() >= HEARTBEAT && !stop.load(Ordering::Relaxed) {
            if let Ok(file) = std::fs::OpenOptions::new().append(true).open(path) {
                let _ = file.set_modified(SystemTime::now());
            }
            last = std::time::Instant::now();
        }
    }
}

/// Puts `tmp` (complete) in place as `path`; AlreadyExists when a lock is there.
fn link_or_create(tmp: &Path, path: &Path, text: &[u8]) -> std::io::Result<()> {
    match std::fs::hard_link(tmp, path) {
        Err(e) if e.kind() == std::io::ErrorKind::Unsupported || e.raw_os_error() == Some(1) => {
            // A file system without hard links (EPERM): exclusive creation, briefly empty.
            use std::io::Write;
            let mut file = std::fs::OpenOptions::new().write(true).create_new(true).open(path)?;
            file.write_all(text)?;
            file.sync_all()
        }
        other => other,
    }
}

/// Moves a stale lock aside and removes it, unless it turned out to be someone else's fresh one.
fn take_over(path: &Path, old: Option<&Holder>, us: &Holder) -> Result<(), LockError> {
    let aside = path.with_file_name(format!(
        ".{}.stale-{}{}",
        path.file_name().unwrap_or_default().to_string_lossy(),
        us.pid,
        crate::fsutil::TMP_SUFFIX
    ));
    match std::fs::rename(path, &aside) {
        Ok(()) => {}
        // Someone else moved it first.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_error(path)(e)),
    }
    let moved = read_holder(&aside);
    if moved.as_ref() != old {
        // A fresh lock replaced the stale one between our look and our move: put it back.
        let _ = std::fs::hard_link(&aside, path);
    } else {
        let who = old.map_or_else(|| "an unreadable lock".to_owned(), Holder::describe);
        eprintln!("warning: {}: taking over a stale lock of {who}", path.display());
    }
    let _ = std::fs::remove_file(&aside);
    Ok(())
}

fn read_holder(path: &Path) -> Option<Holder> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// What the lock file at `path` says: live, stale or unknown.
pub fn inspect(path: &Path) -> State {
    let age = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .unwrap_or_default();
    let Some(holder) = read_holder(path) else {
        return if age > STALE_AFTER || !path.exists() { State::Stale(None) } else { State::Unknown };
    };
    let alive = if holder.host == host_name() {
        let rebooted = holder.boot_id.is_some() && boot_id().is_some() && holder.boot_id != boot_id();
        match process_start(holder.pid) {
            _ if rebooted => false,
            // The pid runs: the same process unless its start time says it was reused.
            Some(start) => holder.process_start.is_none_or(|s| s == start),
            // No such process, or no /proc here: then only the heartbeat tells.
            None if Path::new("/proc/self/stat").exists() => false,
            None => age <= STALE_AFTER,
        }
    } else {
        age <= STALE_AFTER
    };
    if alive {
        State::Live(holder)
    } else {
        State::Stale(Some(holder))
    }
}

/// Every live lock in `dir` whose file name starts with `prefix`, with its file name.
pub fn live_locks(dir: &Path, prefix: &str) -> Vec<(String, Holder)> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut live: Vec<(String, Holder)> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix) && !n.starts_with('.'))
        .filter_map(|n| match inspect(&dir.join(&n)) {
            State::Live(h) => Some((n, h)),
            _ => None,
        })
        .collect();
    live.sort_by(|a, b| a.0.cmp(&b.0));
    live
}

/// This machine's name as the cluster knows it (the kernel's, like `hostname`).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown-host".into())
}

fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok().map(|s| s.trim().to_owned())
}

/// Field 22 of /proc/PID/stat (start time in clock ticks since boot); None when there is no such
/// process. The command name (field 2) may hold spaces and parentheses: parse after the last ')'.
fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    // After ')': field 3 (state) is the first; field 22 is the 20th.
    let start = rest.split_whitespace().nth(19)?.parse().ok();
    // A zombie has exited: it holds nothing.
    if rest.split_whitespace().next() == Some("Z") {
        return None;
    }
    start
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_taker_is_told_who_holds_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        let lock = OutputLock::acquire(&path, "crop shard 1/4").unwrap();
        let err = OutputLock::acquire(&path, "crop shard 1/4").err().expect("held");
        let text = err.to_string();
        assert!(text.contains("crop shard 1/4") && text.contains(&format!("pid {}", std::process::id())), "{text}");
        assert!(text.contains(&host_name()), "{text}");
        drop(lock);
        assert!(!path.exists(), "released on drop");
        OutputLock::acquire(&path, "again").expect("free after release");
    }

    #[test]
    fn a_lock_of_a_dead_process_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        // A process that has exited: its pid is free (or reused, with another start time).
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let mut dead = Holder::this_process("crop shard 0/2");
        dead.pid = pid;
        dead.process_start = Some(1);
        std::fs::write(&path, serde_json::to_vec(&dead).unwrap()).unwrap();
        assert!(matches!(inspect(&path), State::Stale(Some(_))));
        let lock = OutputLock::acquire(&path, "crop shard 0/2").unwrap();
        assert_eq!(read_holder(lock.path()).unwrap().pid, std::process::id());
    }

    #[test]
    fn another_hosts_lock_is_stale_only_without_heartbeat() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        let mut other = Holder::this_process("crop shard 0/2");
        other.host = "some-other-node".into();
        std::fs::write(&path, serde_json::to_vec(&other).unwrap()).unwrap();
        assert!(matches!(inspect(&path), State::Live(_)), "fresh heartbeat");
        let old = SystemTime::now() - STALE_AFTER - Duration::from_secs(5);
        std::fs::OpenOptions::new().append(true).open(&path).unwrap().set_modified(old).unwrap();
        assert!(matches!(inspect(&path), State::Stale(Some(_))), "heartbeat stopped");
    }
}
