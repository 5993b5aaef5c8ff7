//! Control groups: how the host finds and stops a spawned program's whole
//! process tree, and caps how many processes it may have.
//!
//! Each environment gets a group, and each process the environment spawns
//! gets a group of its own inside it, `envpack/<workspace>/<process id>`.
//! A child joins its group between fork and exec, before it can fork, so
//! everything it ever starts — forks, `setsid` daemons, double forks — is
//! in the group whatever its parent is. Killing a group freezes it (no fork
//! can race the kill), sends SIGKILL to every member and thaws it, until it
//! is empty. `pids.max` caps the processes of a group and of the whole
//! environment.
//!
//! Both layouts are handled: cgroup v2 (one hierarchy; `cgroup.kill` and
//! `cgroup.freeze`) and cgroup v1 (the `pids` hierarchy, and `freezer` when
//! mounted). Groups need root, or a delegated subtree: where none can be
//! made, [`Cgroups::detect`] says so and the host falls back to the process
//! group (see `docs/security.md` for what that does not cover).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The most processes one spawned program's tree may hold at once.
pub const PIDS_PER_PROCESS: u32 = 128;
/// The most processes an environment's programs may hold at once.
pub const PIDS_PER_ENVIRONMENT: u32 = 512;

const ROOT: &str = "/sys/fs/cgroup";

/// The cgroup hierarchies the host can use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cgroups {
    /// cgroup v2, mounted at the root.
    V2 { root: PathBuf },
    /// cgroup v1: the `pids` hierarchy, and `freezer` when mounted.
    V1 { pids: PathBuf, freezer: Option<PathBuf> },
}

/// One group, in every hierarchy the host uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    kind: Cgroups,
    /// Relative to each hierarchy's root: `envpack/<workspace>[/<process>]`.
    rel: PathBuf,
}

fn writable(dir: &Path) -> bool {
    // SAFETY: access(2) with a NUL-terminated path.
    std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
        .is_ok_and(|c| unsafe { libc::access(c.as_ptr(), libc::W_OK) } == 0)
}

impl Cgroups {
    /// The hierarchies this process may make groups in, if any.
    pub fn detect() -> Option<Cgroups> {
        let root = Path::new(ROOT);
        if root.join("cgroup.controllers").is_file() {
            let controllers = std::fs::read_to_string(root.join("cgroup.controllers")).ok()?;
            return (controllers.split_whitespace().any(|c| c == "pids") && writable(root)).then(|| Cgroups::V2 {
                root: root.to_path_buf(),
            });
        }
        let pids = root.join("pids");
        if !pids.join("cgroup.procs").is_file() || !writable(&pids) {
            return None;
        }
        let freezer = root.join("freezer");
        let freezer = (freezer.join("cgroup.procs").is_file() && writable(&freezer)).then_some(freezer);
        Some(Cgroups::V1 { pids, freezer })
    }

    /// The group of the workspace named `workspace` (unique per state
    /// directory and environment).
    pub fn workspace(&self, workspace: &str) -> Group {
        Group {
            kind: self.clone(),
            rel: Path::new("envpack").join(workspace),
        }
    }

    fn roots(&self) -> Vec<&Path> {
        match self {
            Cgroups::V2 { root } => vec![root],
            Cgroups::V1 { pids, freezer } => {
                let mut roots = vec![pids.as_path()];
                roots.extend(freezer.as_deref());
                roots
            }
        }
    }
}

/// Whether `pid` is a zombie (or gone).
fn zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
        stat.rfind(')')
            .is_some_and(|at| stat[at + 1..].trim_start().starts_with('Z'))
    })
}

fn write(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)?
        .write_all(text.as_bytes())
}

impl Group {
    /// The group of process `id` inside this one.
    pub fn child(&self, id: &str) -> Group {
        Group {
            kind: self.kind.clone(),
            rel: self.rel.join(id),
        }
    }

    fn dirs(&self) -> Vec<PathBuf> {
        self.kind.roots().into_iter().map(|r| r.join(&self.rel)).collect()
    }

    /// The directory in the `pids` (or unified) hierarchy.
    fn main_dir(&self) -> PathBuf {
        self.dirs().remove(0)
    }

    /// Creates the group (and its parents) capped at `pids_max` processes.
    pub fn create(&self, pids_max: u32) -> std::io::Result<()> {
        if let Cgroups::V2 { root } = &self.kind {
            // Each level must hand the pids controller down to the next.
            let mut dir = root.clone();
            for part in self.rel.components() {
                let _ = write(&dir.join("cgroup.subtree_control"), "+pids");
                dir.push(part);
                match std::fs::create_dir(&dir) {
                    Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(e),
                    _ => {}
                }
            }
        } else {
            for dir in self.dirs() {
                std::fs::create_dir_all(&dir)?;
            }
        }
        write(&self.main_dir().join("pids.max"), &pids_max.to_string())
    }

    /// The files a child writes its pid to, between fork and exec, to join
    /// the group in every hierarchy.
    pub fn join_files(&self) -> std::io::Result<Vec<File>> {
        self.dirs()
            .iter()
            .map(|d| std::fs::OpenOptions::new().write(true).open(d.join("cgroup.procs")))
            .collect()
    }

    /// Every process in the group and the groups inside it.
    pub fn members(&self) -> Vec<u32> {
        fn walk(dir: &Path, out: &mut Vec<u32>) {
            if let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) {
                out.extend(text.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
            }
            if let Ok(entries) = std::fs::read_dir(dir) {
                for entry in entries.flatten() {
                    if entry.file_type().is_ok_and(|t| t.is_dir()) {
                        walk(&entry.path(), out);
                    }
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.main_dir(), &mut out);
        out.sort_unstable();
        out.dedup();
        out
    }

    fn set_frozen(&self, frozen: bool) {
        match &self.kind {
            Cgroups::V2 { .. } => {
                let _ = write(&self.main_dir().join("cgroup.freeze"), if frozen { "1" } else { "0" });
            }
            Cgroups::V1 {
                freezer: Some(freezer), ..
            } => {
                let state = if frozen { "FROZEN" } else { "THAWED" };
                let _ = write(&freezer.join(&self.rel).join("freezer.state"), state);
            }
            Cgroups::V1 { freezer: None, .. } => {}
        }
    }

    /// Kills every process of the group and the groups inside it, then
    /// removes them. Returns how many processes were killed.
    pub fn kill(&self) -> usize {
        if !self.main_dir().is_dir() {
            return 0;
        }
        let mut killed = std::collections::BTreeSet::new();
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            // A zombie is dead already: it only waits for its parent.
            let members: Vec<u32> = self.members().into_iter().filter(|pid| !zombie(*pid)).collect();
            if members.is_empty() || Instant::now() > until {
                break;
            }
            if let Cgroups::V2 { .. } = self.kind
                && write(&self.main_dir().join("cgroup.kill"), "1").is_ok()
            {
                killed.extend(members);
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            // Frozen, no member can fork while the others are killed.
            self.set_frozen(true);
            for pid in &members {
                // SAFETY: kill(2); a pid that just exited gets ESRCH.
                unsafe { libc::kill(*pid as libc::pid_t, libc::SIGKILL) };
            }
            self.set_frozen(false);
            killed.extend(members);
            std::thread::sleep(Duration::from_millis(5));
        }
        // Reap the ones this process started (the others' parents will).
        for pid in &killed {
            // SAFETY: waitpid(2) without blocking; ECHILD for others' children.
            unsafe { libc::waitpid(*pid as libc::pid_t, std::ptr::null_mut(), libc::WNOHANG) };
        }
        self.remove();
        killed.len()
    }

    /// Removes the group's (empty) directories, innermost first.
    pub fn remove(&self) {
        fn remove_tree(dir: &Path) {
            if let Ok(entries) = std::fs::read_dir(dir) {
                for entry in entries.flatten() {
                    if entry.file_type().is_ok_and(|t| t.is_dir()) {
                        remove_tree(&entry.path());
                    }
                }
            }
            let _ = std::fs::remove_dir(dir);
        }
        for dir in self.dirs() {
            remove_tree(&dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_holds_a_setsid_daemon_and_kills_it() {
        let Some(cgroups) = Cgroups::detect() else {
            eprintln!("no writable cgroup hierarchy here (not root): nothing to test");
            return;
        };
        let group = cgroups.workspace(&format!("test-{}", std::process::id())).child("p1");
        group.create(16).unwrap();
        let joins = group.join_files().unwrap();
        let fds: Vec<i32> = joins.iter().map(std::os::fd::AsRawFd::as_raw_fd).collect();
        // A shell that leaves a double-forked, setsid daemon behind.
        let mut command = std::process::Command::new("sh");
        command.args(["-c", "setsid sh -c 'sleep 60 & sleep 60' & sleep 60"]);
        // SAFETY: only write(2) between fork and exec.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut command, move || {
                for fd in &fds {
                    let pid = std::process::id().to_string();
                    libc::write(*fd, pid.as_ptr().cast(), pid.len());
                }
                Ok(())
            });
        }
        let mut child = command.spawn().unwrap();
        let until = Instant::now() + Duration::from_secs(10);
        while group.members().len() < 4 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        let members = group.members();
        assert!(
            members.len() >= 4,
            "the daemon and its sleeps are in the group: {members:?}"
        );
        assert!(group.kill() >= 4);
        let _ = child.wait();
        for pid in members {
            let alive = Path::new(&format!("/proc/{pid}")).exists()
                && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "));
            assert!(!alive, "process {pid} survived the kill");
        }
        assert!(!group.main_dir().exists(), "the group is removed");
        cgroups.workspace(&format!("test-{}", std::process::id())).remove();
    }
}
