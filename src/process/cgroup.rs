//! One cgroup v2 per managed process, where the daemon may create them.
//!
//! At start the daemon looks at its own cgroup (the `0::` line of
//! `/proc/self/cgroup`, under the cgroup2 mount). When it can create a child
//! there (root, or a systemd unit with `Delegate=yes`), every managed process is
//! moved into a child cgroup of its own between `fork` and `exec`, so everything
//! it ever starts — whatever session or group it moves to — stays inside, and
//! the last step of a stop is `cgroup.kill`. Otherwise (no cgroup v2, no write
//! access, a systemd unit without delegation, or `ROLLBRIDGE_CGROUPS=off`)
//! processes are found by group, session and parent chain only (see
//! `sampler.rs`).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Disables per-process cgroups when set to `off`.
pub const CGROUPS_ENV: &str = "ROLLBRIDGE_CGROUPS";
const PREFIX: &str = "rollbridge-";

static ROOT: OnceLock<Option<CgroupRoot>> = OnceLock::new();

/// The daemon's own cgroup, under which it creates one child per process.
#[derive(Debug)]
pub struct CgroupRoot {
    dir: PathBuf,
    sequence: AtomicU64,
}

/// Decides once, at daemon start, whether processes get cgroups of their own.
/// `Ok(dir)` names the parent cgroup; `Err` says why not (for the start event).
pub fn enable() -> Result<PathBuf, String> {
    let root = ROOT.get_or_init(|| detect().ok());
    match root {
        Some(root) => Ok(root.dir.clone()),
        None => Err(detect().err().unwrap_or_else(|| "not available".into())),
    }
}

/// The cgroup parent when [`enable`] found one.
pub fn active() -> Option<&'static CgroupRoot> {
    ROOT.get().and_then(Option::as_ref)
}

fn detect() -> Result<CgroupRoot, String> {
    if std::env::var_os(CGROUPS_ENV).is_some_and(|v| v == "off") {
        return Err(format!("{CGROUPS_ENV}=off"));
    }
    let own = fs::read_to_string("/proc/self/cgroup").map_err(|e| e.to_string())?;
    let relative = own
        .lines()
        .find_map(|line| line.strip_prefix("0::"))
        .ok_or("no cgroup v2 hierarchy")?
        .trim()
        .to_string();
    let mount = cgroup2_mount().ok_or("cgroup2 is not mounted")?;
    let dir = mount.join(relative.trim_start_matches('/'));
    let unit = relative.ends_with(".service") || relative.ends_with(".scope");
    if unit && !delegated(&dir) {
        return Err(format!(
            "{} belongs to systemd and is not delegated (Delegate=yes)",
            dir.display()
        ));
    }
    let me = std::process::id();
    remove_stale(&dir);
    let probe = dir.join(format!("{PREFIX}{me}-probe"));
    fs::create_dir(&probe).map_err(|e| format!("cannot create {}: {e}", probe.display()))?;
    let killable = probe.join("cgroup.kill").exists();
    let _ = fs::remove_dir(&probe);
    if !killable {
        return Err("the kernel has no cgroup.kill (Linux 5.14 or later)".into());
    }
    Ok(CgroupRoot {
        dir,
        sequence: AtomicU64::new(0),
    })
}

fn cgroup2_mount() -> Option<PathBuf> {
    let mounts = fs::read_to_string("/proc/self/mountinfo").ok()?;
    mounts.lines().find_map(|line| {
        let (before, after) = line.split_once(" - ")?;
        let mount_point = before.split_whitespace().nth(4)?;
        (after.split_whitespace().next()? == "cgroup2").then(|| PathBuf::from(mount_point))
    })
}

/// systemd marks the cgroup of a unit with `Delegate=yes` with this attribute.
fn delegated(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    ["trusted.delegate", "user.delegate"].iter().any(|name| {
        let name = std::ffi::CString::new(*name).unwrap();
        let mut value = [0u8; 8];
        // SAFETY: both strings are NUL-terminated and the buffer length is passed.
        let len = unsafe {
            libc::getxattr(
                path.as_ptr(),
                name.as_ptr(),
                value.as_mut_ptr().cast(),
                value.len(),
            )
        };
        len > 0 && value[0] == b'1'
    })
}

/// Removes the empty cgroups of daemons that no longer run.
fn remove_stale(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(owner) = name
            .to_str()
            .and_then(|n| n.strip_prefix(PREFIX))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<i32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{owner}")).exists() {
            let _ = fs::remove_dir(entry.path());
        }
    }
}

impl CgroupRoot {
    /// Creates the cgroup of the next process, with its `cgroup.procs` opened for
    /// the child to join between `fork` and `exec`.
    pub fn create(&self) -> io::Result<(ProcessCgroup, File)> {
        // After a live upgrade (same pid, counter back at 0) the numbers of the
        // processes handed over are taken: skip them.
        let dir = loop {
            let number = self.sequence.fetch_add(1, Ordering::Relaxed);
            let dir = self
                .dir
                .join(format!("{PREFIX}{}-{number}", std::process::id()));
            match fs::create_dir(&dir) {
                Ok(()) => break dir,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        };
        match OpenOptions::new()
            .write(true)
            .open(dir.join("cgroup.procs"))
        {
            Ok(procs) => Ok((ProcessCgroup { dir }, procs)),
            Err(e) => {
                let _ = fs::remove_dir(&dir);
                Err(e)
            }
        }
    }
}

/// Moves the calling process into the cgroup whose `cgroup.procs` is `procs`.
/// Async-signal-safe (one `write`), for use between `fork` and `exec`; a failure
/// leaves the process where it is (it is still found by its parent chain).
pub fn join_in_child(procs: RawFd) {
    // SAFETY: write(2) on an open descriptor with a 1-byte static buffer.
    unsafe {
        libc::write(procs, b"0".as_ptr().cast(), 1);
    }
}

/// The cgroup of one managed process.
#[derive(Debug)]
pub struct ProcessCgroup {
    dir: PathBuf,
}

impl ProcessCgroup {
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Whether any process is still inside (`populated 1` in `cgroup.events`).
    pub fn populated(&self) -> bool {
        fs::read_to_string(self.dir.join("cgroup.events"))
            .map(|events| events.lines().any(|l| l.trim() == "populated 1"))
            .unwrap_or(false)
    }

    /// SIGKILLs every process inside, in one write.
    pub fn kill(&self) -> io::Result<()> {
        fs::OpenOptions::new()
            .write(true)
            .open(self.dir.join("cgroup.kill"))?
            .write_all(b"1")
    }

    /// Kills what is left inside (if anything), waits up to `bound` for it to
    /// empty and removes the cgroup. Returns false when it did not empty.
    pub async fn kill_and_remove(&self, bound: Duration) -> bool {
        if self.populated() {
            let _ = self.kill();
        }
        let deadline = tokio::time::Instant::now() + bound;
        while self.populated() {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let _ = fs::remove_dir(&self.dir);
        true
    }
}

impl ProcessCgroup {
    /// The rollbridge cgroup `pid` runs in, if it runs in one (a process left by
    /// a daemon that is gone, found again by `recover`).
    pub fn of_process(pid: i32) -> Option<ProcessCgroup> {
        let membership = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        let relative = membership
            .lines()
            .find_map(|l| l.strip_prefix("0::"))?
            .trim();
        let name = Path::new(relative).file_name()?.to_str()?;
        if !name.starts_with(PREFIX) {
            return None;
        }
        let dir = cgroup2_mount()?.join(relative.trim_start_matches('/'));
        dir.join("cgroup.kill")
            .exists()
            .then_some(ProcessCgroup { dir })
    }
}

impl Drop for ProcessCgroup {
    /// An empty cgroup is removed with its process; one that still holds
    /// processes stays (the kernel refuses) until a later daemon finds it gone.
    fn drop(&mut self) {
        let _ = fs::remove_dir(&self.dir);
    }
}
