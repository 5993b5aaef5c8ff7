//! Confinement of a spawned program, prepared by the host and applied by
//! the child between fork and exec, where only system calls are made (no
//! allocation, no lock):
//!
//! 1. it writes its pid where the host records it, and joins its control
//!    groups (`cgroup`), before it can fork;
//! 2. it leads a new session;
//! 3. rlimits: file size, open files, address space, no core dumps, and —
//!    under its own identity — a process count;
//! 4. it moves into its working directory through a descriptor the host
//!    opened beneath the work directory;
//! 5. when the host runs as root, it drops every group and becomes the
//!    environment's own unprivileged uid and gid;
//! 6. no new privileges (setuid binaries do not raise it);
//! 7. Landlock: it may write only beneath its writable directory, read and
//!    execute only that, the system's program and library directories and
//!    its program; TCP bind and connect only to granted ports; and it may
//!    not signal, nor reach abstract sockets of, anything outside its own
//!    Landlock domain;
//! 8. every descriptor above 2 is closed on exec.
//!
//! Where Landlock (filesystem and TCP rules) is missing, the spawn is
//! refused, unless the operator set [`UNCONFINED_ENV`] to run programs
//! unconfined on such a kernel.

use std::fs::File;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::Path;

use landlock::{
    ABI, Access, AccessFs, AccessNet, BitFlags, CompatLevel, Compatible, NetPort, PathBeneath, PathFd, Ruleset,
    RulesetAttr, RulesetCreatedAttr, Scope,
};

/// Set to `1` to let packs spawn programs on a kernel without Landlock
/// (unconfined; the operator's explicit choice).
pub const UNCONFINED_ENV: &str = "ENVPACK_UNCONFINED_PROCESSES";

/// Largest file a spawned program may write (its logs included).
pub const MAX_OUTPUT_BYTES: u64 = 64 << 20;
/// Descriptors a spawned program may hold open.
pub const MAX_OPEN_FILES: u64 = 1024;
/// Address space of a spawned program.
pub const MAX_ADDRESS_SPACE: u64 = 4 << 30;
/// Processes an environment's own uid may hold (when the host drops to it).
pub const MAX_PROCESSES_PER_UID: u64 = 512;

/// Directories every program may read and execute from.
const SYSTEM_DIRS: [&str; 9] = [
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt",
];
/// Devices every program may read and write.
const DEVICES: [&str; 5] = ["/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom"];

/// The uid and gid an environment's programs run as.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
}

/// Everything the child applies to itself; see the module docs.
pub struct Confinement {
    pub identity: Option<Identity>,
    /// `None` only when the operator allowed unconfined programs.
    pub ruleset: Option<OwnedFd>,
    pub cgroup_joins: Vec<File>,
    pub cwd: OwnedFd,
    pub pid_file: File,
}

/// Writes the calling process's pid to `fd`: async-signal-safe (no
/// allocation, one write), for use between fork and exec.
pub fn write_own_pid(fd: RawFd) {
    // SAFETY: getpid and write are async-signal-safe; `buf` is a local array.
    unsafe {
        let mut value = libc::getpid() as u32;
        let mut buf = [0u8; 10];
        let mut at = buf.len();
        loop {
            at -= 1;
            buf[at] = b'0' + (value % 10) as u8;
            value /= 10;
            if value == 0 {
                break;
            }
        }
        libc::write(fd, buf[at..].as_ptr().cast(), buf.len() - at);
    }
}

fn check(result: libc::c_int) -> std::io::Result<()> {
    if result < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn limit(resource: libc::__rlimit_resource_t, value: u64) -> std::io::Result<()> {
    let limit = libc::rlimit {
        rlim_cur: value,
        rlim_max: value,
    };
    // SAFETY: setrlimit(2) with a local struct.
    check(unsafe { libc::setrlimit(resource, &limit) })
}

impl Confinement {
    /// The descriptors the child needs, as raw numbers, for the closure
    /// that runs between fork and exec.
    pub fn raw(&self) -> RawConfinement {
        let mut joins = [-1; 2];
        for (slot, file) in joins.iter_mut().zip(&self.cgroup_joins) {
            *slot = file.as_raw_fd();
        }
        RawConfinement {
            identity: self.identity,
            ruleset: self.ruleset.as_ref().map(AsRawFd::as_raw_fd),
            joins,
            cwd: self.cwd.as_raw_fd(),
            pid_file: self.pid_file.as_raw_fd(),
        }
    }
}

/// [`Confinement`] as plain numbers, `Copy`, for the pre-exec closure.
#[derive(Clone, Copy)]
pub struct RawConfinement {
    identity: Option<Identity>,
    ruleset: Option<RawFd>,
    joins: [RawFd; 2],
    cwd: RawFd,
    pid_file: RawFd,
}

impl RawConfinement {
    /// Applies the confinement to the calling (forked) process. Only
    /// system calls: safe between fork and exec.
    pub fn apply(&self) -> std::io::Result<()> {
        write_own_pid(self.pid_file);
        for fd in self.joins.iter().filter(|fd| **fd >= 0) {
            write_own_pid(*fd);
        }
        // SAFETY: each call below is a plain system call on values owned
        // by this (forked, single-threaded) process.
        unsafe {
            check(libc::setsid())?;
            limit(libc::RLIMIT_FSIZE, MAX_OUTPUT_BYTES)?;
            limit(libc::RLIMIT_NOFILE, MAX_OPEN_FILES)?;
            limit(libc::RLIMIT_AS, MAX_ADDRESS_SPACE)?;
            limit(libc::RLIMIT_CORE, 0)?;
            check(libc::fchdir(self.cwd))?;
            if let Some(id) = self.identity {
                limit(libc::RLIMIT_NPROC, MAX_PROCESSES_PER_UID)?;
                check(libc::setgroups(0, std::ptr::null()))?;
                check(libc::setgid(id.gid))?;
                check(libc::setuid(id.uid))?;
            }
            check(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))?;
            if let Some(fd) = self.ruleset {
                check(libc::syscall(libc::SYS_landlock_restrict_self, fd, 0u32) as libc::c_int)?;
            }
            // Closed on exec: descriptors the host inherited (a CI step's
            // pipes) never reach the program. (std's own exec-error pipe
            // is close-on-exec already and keeps working.)
            check(libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) as libc::c_int)?;
        }
        Ok(())
    }
}

/// Whether the operator allowed unconfined programs on a kernel without Landlock.
pub fn unconfined_allowed() -> bool {
    std::env::var(UNCONFINED_ENV).is_ok_and(|v| v == "1")
}

/// The Landlock ruleset of one program: `writable` (an open directory) read-write, the system
/// directories and `program` read and execute, TCP only to `ports`.
pub fn ruleset(writable: BorrowedFd<'_>, program: &Path, ports: &[(u16, u16)]) -> Result<OwnedFd, String> {
    let fail = |e: landlock::RulesetError| format!("cannot confine the program with Landlock: {e}");
    let read_exec = AccessFs::Execute | AccessFs::ReadFile | AccessFs::ReadDir;
    let all_fs = AccessFs::from_all(ABI::V5);
    let mut ruleset = Ruleset::default()
        // Filesystem and TCP rules are required: without them, no program runs.
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(AccessFs::from_all(ABI::V3))
        .map_err(fail)?
        .handle_access(AccessNet::BindTcp | AccessNet::ConnectTcp)
        .map_err(fail)?
        // Device ioctls, signal and abstract-socket scoping where the
        // kernel has them (ABI 5 and 6).
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(all_fs)
        .map_err(fail)?
        .scope(Scope::Signal | Scope::AbstractUnixSocket)
        .map_err(fail)?
        .create()
        .map_err(fail)?;
    let rule = |path: &Path, access: BitFlags<AccessFs>| -> Result<Option<PathBeneath<PathFd>>, String> {
        match PathFd::new(path) {
            Ok(fd) => Ok(Some(PathBeneath::new(fd, access))),
            Err(_) if !path.exists() => Ok(None),
            Err(e) => Err(format!("cannot confine the program: {}: {e}", path.display())),
        }
    };
    for dir in SYSTEM_DIRS {
        if let Some(r) = rule(Path::new(dir), read_exec)? {
            ruleset = ruleset.add_rule(r).map_err(fail)?;
        }
    }
    for device in DEVICES {
        if let Some(r) = rule(Path::new(device), AccessFs::ReadFile | AccessFs::WriteFile)? {
            ruleset = ruleset.add_rule(r).map_err(fail)?;
        }
    }
    if let Some(r) = rule(program, AccessFs::Execute | AccessFs::ReadFile)? {
        ruleset = ruleset.add_rule(r).map_err(fail)?;
    }
    ruleset = ruleset.add_rule(PathBeneath::new(writable, all_fs)).map_err(fail)?;
    for &(first, last) in ports {
        for port in first..=last {
            ruleset = ruleset
                .add_rule(NetPort::new(port, AccessNet::BindTcp | AccessNet::ConnectTcp))
                .map_err(fail)?;
        }
    }
    Option::<OwnedFd>::from(ruleset).ok_or_else(|| "this kernel has no Landlock".to_string())
}

/// Whether this kernel enforces Landlock's filesystem and TCP rules.
pub fn landlock_available() -> bool {
    // SAFETY: landlock_create_ruleset(NULL, 0, VERSION) only reports the ABI.
    let abi = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            1u32, /* LANDLOCK_CREATE_RULESET_VERSION */
        )
    };
    abi >= 4
}
