//! One spawn, checked and confined: the request's text is refused before
//! anything is touched if it is malformed; the program must be granted and
//! its arguments must match one of its grants' patterns; every environment
//! variable must be granted and none may be one refused by name; the
//! working directory is opened beneath the work directory (never through a
//! link out of it). The program then runs confined (see `confine`), its
//! stdout and stderr in log files the host creates afresh beneath the work
//! directory (a link or a FIFO the pack left in their place is removed, not
//! followed), in a control group of its own (see `cgroup`).

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};

use cap_std::fs::Dir;
use envpack_model::command_grant::{path_args, refused_env_var};
use envpack_model::{GrantedCommand, Grants, WORK_DIR, is_executable};

use super::cgroup::{Cgroups, PIDS_PER_ENVIRONMENT, PIDS_PER_PROCESS};
use super::confine::{self, Confinement};
use super::table::{Record, Table, children, now_ms, pid_file, proc_start};
use super::{MAX_LIVE, info};
use crate::capabilities::Workspace;
use crate::contract::bindings::envpack::deployer::process::{ProcessError, ProcessInfo, SpawnRequest};

/// The most bytes of arguments and environment one spawn may pass.
const MAX_REQUEST_BYTES: usize = 64 << 10;
/// The most files a program's writable directory may hold when it is
/// handed to the environment's uid.
const MAX_HANDED_FILES: usize = 100_000;

/// What a spawn may use of its environment.
pub struct SpawnScope<'a> {
    pub env_id: &'a str,
    pub grants: &'a Grants,
    pub workspace: &'a Workspace,
}

fn bad(text: String) -> ProcessError {
    ProcessError::BadPath(text)
}

fn not_allowed(text: String) -> ProcessError {
    ProcessError::NotAllowed(text)
}

/// Refuses a request whose text no program should get.
fn check_request(request: &SpawnRequest) -> Result<(), ProcessError> {
    let size: usize = request.args.iter().map(String::len).sum::<usize>()
        + request.env.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
    if size > MAX_REQUEST_BYTES {
        return Err(ProcessError::Limit(format!(
            "the arguments and environment are {size} bytes; a spawn passes at most {MAX_REQUEST_BYTES}"
        )));
    }
    if let Some(arg) = request.args.iter().find(|a| a.contains('\0')) {
        return Err(not_allowed(format!("argument {arg:?} contains a NUL byte")));
    }
    for (name, value) in &request.env {
        let valid = !name.is_empty()
            && !name.as_bytes()[0].is_ascii_digit()
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !valid {
            return Err(not_allowed(format!(
                "{name:?} is not an environment variable name (letters, digits and `_`)"
            )));
        }
        if value.contains('\0') {
            return Err(not_allowed(format!("the value of {name} contains a NUL byte")));
        }
    }
    Ok(())
}

/// `relative`, checked to stay inside the work directory by its text: not
/// absolute, no `..`.
fn relative(text: &str) -> Result<PathBuf, ProcessError> {
    let path = Path::new(text);
    if path.is_absolute()
        || path
            .components()
            .any(|c| matches!(c, Component::ParentDir | Component::Prefix(_)))
    {
        return Err(bad(format!("{text:?} is not a path inside the work directory")));
    }
    Ok(path.components().filter(|c| *c != Component::CurDir).collect())
}

/// Refuses a path (relative to the work directory) that passes through a
/// symlink: a granted program must not be pointed outside by a link.
fn no_links(work: &Dir, path: &Path) -> Result<(), ProcessError> {
    let mut prefix = PathBuf::new();
    for part in path.components() {
        prefix.push(part);
        match work.symlink_metadata(&prefix) {
            Ok(meta) if meta.is_symlink() => {
                return Err(bad(format!(
                    "{} is a symbolic link; the host does not follow links for a spawned program",
                    prefix.display()
                )));
            }
            Ok(_) => {}
            // What does not exist yet cannot lead anywhere.
            Err(_) => return Ok(()),
        }
    }
    Ok(())
}

impl SpawnScope<'_> {
    /// The program a spawn request names and the grants that may allow it.
    fn program<'g>(&'g self, work: &Dir, command: &'g str) -> Result<(PathBuf, Vec<&'g GrantedCommand>), ProcessError> {
        let granted: Vec<&GrantedCommand> = self.grants.commands(command).collect();
        if let Some(first) = granted.first() {
            return Ok((first.path.clone(), granted));
        }
        if let Some(inside) = command.strip_prefix("./")
            && self.grants.work_dir_allowed()
        {
            let path = relative(inside)?;
            no_links(work, &path)?;
            let full = self.workspace.work_dir.join(&path);
            if !is_executable(&full) {
                return Err(ProcessError::Failed(format!("{command:?} is not an executable file")));
            }
            return Ok((full, self.grants.work_dir_grants().collect()));
        }
        let hint = if command.starts_with("./") {
            format!("programs in the work directory need --allow-run '{WORK_DIR} PATTERN...'")
        } else {
            "grant it with --allow-run 'PROGRAM PATTERN...'".to_string()
        };
        Err(not_allowed(format!(
            "command {command:?} is not granted to environment {:?} ({hint})",
            self.env_id
        )))
    }

    /// Checks the arguments against the program's grants and every `{path}`
    /// argument against the file system.
    fn check_args(
        &self,
        work: &Dir,
        cwd: &Path,
        request: &SpawnRequest,
        granted: &[&GrantedCommand],
    ) -> Result<(), ProcessError> {
        let mut reasons = Vec::new();
        for grant in granted {
            match grant.allows(&request.args) {
                Ok(()) => {
                    if let Some(patterns) = &grant.args {
                        for arg in path_args(patterns, &request.args) {
                            no_links(work, &cwd.join(relative(arg)?))?;
                        }
                    }
                    return Ok(());
                }
                Err(why) => reasons.push(format!("'{}': {why}", grant.shown())),
            }
        }
        Err(not_allowed(format!(
            "{} {:?} matches no grant of {} ({})",
            request.command,
            request.args,
            request.command,
            reasons.join("; ")
        )))
    }

    fn check_env(&self, request: &SpawnRequest) -> Result<(), ProcessError> {
        for (name, _) in &request.env {
            if let Some(why) = refused_env_var(name) {
                return Err(not_allowed(format!(
                    "environment variable {name} is refused by name: {why}"
                )));
            }
            if !self.grants.env_allowed(name) {
                return Err(not_allowed(format!(
                    "environment variable {name} is not granted to environment {:?} (grant it with --allow-env {name})",
                    self.env_id
                )));
            }
        }
        Ok(())
    }
}

fn open_work_dir(workspace: &Workspace) -> Result<Dir, ProcessError> {
    Dir::open_ambient_dir(&workspace.work_dir, cap_std::ambient_authority())
        .map_err(|e| ProcessError::Failed(format!("the work directory: {e}")))
}

/// A log file created afresh at `logs/<name>` beneath the work directory:
/// whatever the pack left there (a link, a FIFO, a file) is removed first,
/// and the name is created exclusively, so nothing is followed or opened
/// but a new regular file.
fn new_log(work: &Dir, name: &str) -> Result<std::fs::File, ProcessError> {
    let fail = |e: std::io::Error| ProcessError::Failed(format!("log file logs/{name}: {e}"));
    work.create_dir_all("logs").map_err(fail)?;
    let path = Path::new("logs").join(name);
    match work.symlink_metadata(&path) {
        Ok(meta) if meta.is_dir() => work.remove_dir_all(&path).map_err(fail)?,
        Ok(_) => work.remove_file(&path).map_err(fail)?,
        Err(_) => {}
    }
    let mut options = cap_std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    Ok(work.open_with(&path, &options).map_err(fail)?.into_std())
}

/// The revision directory (`revisions/<dir>`) a working directory is in.
fn revision_dir(cwd: &Path) -> Option<PathBuf> {
    let mut parts = cwd.components();
    match (parts.next(), parts.next()) {
        (Some(Component::Normal(first)), Some(Component::Normal(dir))) if first == "revisions" => {
            Some(Path::new("revisions").join(dir))
        }
        _ => None,
    }
}

/// Hands `dir` (an open directory) and everything beneath it to the
/// environment's uid, through descriptors only: a link swapped in while
/// this runs is changed itself, never what it points to.
fn hand_over(dir: OwnedFd, identity: confine::Identity, budget: &mut usize) -> Result<(), String> {
    use rustix::fs::{AtFlags, Mode, OFlags};
    let (uid, gid) = (
        Some(rustix::fs::Uid::from_raw(identity.uid)),
        Some(rustix::fs::Gid::from_raw(identity.gid)),
    );
    // cap-std's directory handles may be O_PATH: open the directory itself.
    let dir = rustix::fs::openat(
        &dir,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| e.to_string())?;
    rustix::fs::fchown(&dir, uid, gid).map_err(|e| e.to_string())?;
    let entries = rustix::fs::Dir::read_from(&dir).map_err(|e| e.to_string())?;
    for entry in entries {
        let entry = entry.map_err(|e| e.to_string())?;
        let name = entry.file_name();
        if name.to_bytes() == b"." || name.to_bytes() == b".." {
            continue;
        }
        *budget = budget
            .checked_sub(1)
            .ok_or_else(|| format!("the directory holds more than {MAX_HANDED_FILES} files"))?;
        if entry.file_type() == rustix::fs::FileType::Directory {
            let sub = rustix::fs::openat(
                &dir,
                name,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| e.to_string())?;
            hand_over(sub, identity, budget)?;
        } else {
            rustix::fs::chownat(&dir, name, uid, gid, AtFlags::SYMLINK_NOFOLLOW).map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

/// Spawns `request` for the environment `scope` describes.
pub fn spawn(scope: &SpawnScope<'_>, request: &SpawnRequest) -> Result<ProcessInfo, ProcessError> {
    check_request(request)?;
    let workspace = scope.workspace;
    let work = open_work_dir(workspace)?;
    let cwd = relative(&request.cwd)?;
    no_links(&work, &cwd)?;
    let cwd_dir = if cwd.as_os_str().is_empty() {
        work.try_clone()
            .map_err(|e| ProcessError::Failed(format!("the work directory: {e}")))?
    } else {
        work.open_dir(&cwd).map_err(|e| {
            bad(format!(
                "{:?} is not a directory inside the work directory: {e}",
                request.cwd
            ))
        })?
    };
    let (program, granted) = scope.program(&work, &request.command)?;
    scope.check_args(&work, &cwd, request, &granted)?;
    scope.check_env(request)?;
    // A program in a revision's directory writes only there; any other
    // writes only beneath its working directory.
    let revision = revision_dir(&cwd);
    let writable_rel = revision.clone().unwrap_or_else(|| cwd.clone());
    let writable: OwnedFd = if writable_rel == cwd {
        cwd_dir
            .try_clone()
            .map_err(|e| ProcessError::Failed(e.to_string()))?
            .into_std_file()
            .into()
    } else {
        work.open_dir(&writable_rel)
            .map_err(|e| ProcessError::Failed(format!("{}: {e}", writable_rel.display())))?
            .into_std_file()
            .into()
    };
    let ruleset = if confine::landlock_available() {
        Some(confine::ruleset(writable.as_fd(), &program, &scope.grants.port_ranges()).map_err(ProcessError::Failed)?)
    } else if confine::unconfined_allowed() {
        None
    } else {
        return Err(not_allowed(format!(
            "this kernel does not enforce Landlock, so a spawned program cannot be confined; the host refuses to run it \
             (an operator may set {}=1 to run programs unconfined)",
            confine::UNCONFINED_ENV
        )));
    };
    if let Some(identity) = workspace.identity {
        let mut budget = MAX_HANDED_FILES;
        let dup = writable.try_clone().map_err(|e| ProcessError::Failed(e.to_string()))?;
        hand_over(dup, identity, &mut budget)
            .map_err(|e| ProcessError::Failed(format!("handing {} to the environment: {e}", writable_rel.display())))?;
    }

    let mut table = Table::open(&workspace.process_table).map_err(ProcessError::Failed)?;
    table.refresh();
    let live = table.records.iter().filter(|r| r.exit.is_none()).count();
    if live >= MAX_LIVE {
        return Err(ProcessError::Limit(format!(
            "the environment already has {live} live processes (at most {MAX_LIVE})"
        )));
    }
    let id = table.next_id();
    let (stdout, stderr) = (format!("{id}.stdout"), format!("{id}.stderr"));
    let (out_file, err_file) = (new_log(&work, &stdout)?, new_log(&work, &stderr)?);
    // Recorded before it exists, without a pid: if this command dies
    // between the fork and the save below, the next one finds the child by
    // the pid it wrote instead of losing track of it.
    let mut record = Record {
        id: id.clone(),
        pid: 0,
        start_ticks: 0,
        command: request.command.clone(),
        args: request.args.clone(),
        started_at_ms: now_ms(),
        stdout: format!("logs/{stdout}"),
        stderr: format!("logs/{stderr}"),
        exit: None,
        revision_dir: revision.map(|r| r.display().to_string()),
    };
    table.records.push(record.clone());
    table.save().map_err(ProcessError::Failed)?;
    let cgroup_joins = match Cgroups::detect() {
        Some(cgroups) => {
            let env_group = cgroups.workspace(&workspace.key);
            let group = env_group.child(&id);
            env_group
                .create(PIDS_PER_ENVIRONMENT)
                .and_then(|()| group.create(PIDS_PER_PROCESS))
                .and_then(|()| group.join_files())
                .map_err(|e| ProcessError::Failed(format!("control group of {id}: {e}")))?
        }
        None => Vec::new(),
    };
    let pid_path = pid_file(&workspace.process_table, &id);
    let pid_out = std::fs::File::create(&pid_path).map_err(|e| ProcessError::Failed(format!("pid file: {e}")))?;
    let confinement = Confinement {
        identity: workspace.identity,
        ruleset,
        cgroup_joins,
        cwd: cwd_dir.into_std_file().into(),
        pid_file: pid_out,
    };
    let home = workspace.work_dir.join(&writable_rel);
    let mut command = Command::new(&program);
    command
        .args(&request.args)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", &home)
        .env("TMPDIR", &home)
        .env("ENVPACK_WORK_DIR", &workspace.work_dir)
        .envs(request.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::from(out_file))
        .stderr(Stdio::from(err_file));
    let raw = confinement.raw();
    // SAFETY: `apply` makes system calls only (see `confine`).
    unsafe {
        command.pre_exec(move || raw.apply());
    }
    let spawned = command.spawn();
    drop(confinement);
    let _ = std::fs::remove_file(&pid_path);
    let child = match spawned {
        Ok(child) => child,
        Err(e) => {
            table.records.retain(|r| r.id != id);
            table.save().map_err(ProcessError::Failed)?;
            if let Some(cgroups) = Cgroups::detect() {
                cgroups.workspace(&workspace.key).child(&id).remove();
            }
            return Err(ProcessError::Failed(format!("cannot start {}: {e}", program.display())));
        }
    };
    record.pid = child.id();
    record.start_ticks = proc_start(record.pid).map_or(0, |(start, _)| start);
    children().insert((workspace.process_table.clone(), id.clone()), child);
    if let Some(slot) = table.records.iter_mut().find(|r| r.id == id) {
        *slot = record.clone();
    }
    table.save().map_err(ProcessError::Failed)?;
    Ok(info(&record))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside_the_work_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("revisions/r1")).unwrap();
        std::os::unix::fs::symlink("/etc", dir.path().join("out")).unwrap();
        let work = Dir::open_ambient_dir(dir.path(), cap_std::ambient_authority()).unwrap();
        assert_eq!(relative("").unwrap(), PathBuf::new());
        assert_eq!(relative("./revisions/r1").unwrap(), Path::new("revisions/r1"));
        for bad in ["../", "revisions/../../x", "/etc"] {
            assert!(relative(bad).is_err(), "{bad}");
        }
        assert!(no_links(&work, Path::new("revisions/r1/app")).is_ok());
        let escaped = no_links(&work, Path::new("out/passwd")).unwrap_err();
        assert!(format!("{escaped:?}").contains("symbolic link"), "{escaped:?}");
        assert_eq!(
            revision_dir(Path::new("revisions/r1/app")),
            Some(PathBuf::from("revisions/r1"))
        );
        assert_eq!(revision_dir(Path::new("nginx")), None);
    }

    #[test]
    fn malformed_requests_are_refused_before_anything_runs() {
        let request = |args: Vec<&str>, env: Vec<(&str, &str)>| SpawnRequest {
            command: "true".into(),
            args: args.into_iter().map(String::from).collect(),
            env: env.into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            cwd: String::new(),
        };
        assert!(check_request(&request(vec!["a\0b"], vec![])).is_err());
        assert!(check_request(&request(vec![], vec![("A=B", "x")])).is_err());
        assert!(check_request(&request(vec![], vec![("", "x")])).is_err());
        assert!(check_request(&request(vec![], vec![("A", "x\0")])).is_err());
        let huge = "x".repeat(MAX_REQUEST_BYTES + 1);
        assert!(matches!(
            check_request(&request(vec![&huge], vec![])),
            Err(ProcessError::Limit(_))
        ));
        assert!(check_request(&request(vec!["ok"], vec![("PORT", "8080")])).is_ok());
    }
}
