//! Waiting for a process to end without polling its state: Linux's pidfd
//! (`pidfd_open(2)`, 5.3+) becomes readable the moment the process ends, so
//! `process.wait` answers when a short program (tar, a config test) exits
//! instead of at the next poll. Where pidfds are not available (an older
//! kernel, no I/O driver in the runtime) the caller polls as before.

use std::os::fd::{FromRawFd, OwnedFd};
use std::time::Duration;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// A watch on one process's end.
pub struct ExitWatch(AsyncFd<OwnedFd>);

impl ExitWatch {
    /// Opens a watch on `pid`. The caller must check afterwards that `pid`
    /// is still the process it means (its start time): a pid reused between
    /// the caller's last look and this open would be watched instead.
    pub fn open(pid: u32) -> Option<ExitWatch> {
        let pid = libc::pid_t::try_from(pid).ok().filter(|pid| *pid > 0)?;
        // SAFETY: pidfd_open(2) with a pid and no flags returns a new
        // descriptor this function then owns, or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        let fd = i32::try_from(fd).ok().filter(|fd| *fd >= 0)?;
        // SAFETY: `fd` was just returned by the kernel and is owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: the `OwnedFd` is moved into the `AsyncFd`, which keeps it
        // open, unchanged, until it is dropped. (A runtime without an I/O
        // driver refuses the registration: the caller polls.)
        unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
            .ok()
            .map(ExitWatch)
    }

    /// Waits until the process ends or `timeout` passes; true if it ended.
    pub async fn ended_within(&self, timeout: Duration) -> bool {
        matches!(tokio::time::timeout(timeout, self.0.readable()).await, Ok(Ok(_)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_watch_wakes_when_its_process_ends_and_not_before() {
        let mut child = std::process::Command::new("sleep").arg("0.3").spawn().unwrap();
        let watch = ExitWatch::open(child.id()).expect("pidfds on this kernel");
        assert!(!watch.ended_within(Duration::from_millis(50)).await, "still running");
        let started = std::time::Instant::now();
        assert!(watch.ended_within(Duration::from_secs(10)).await);
        assert!(started.elapsed() < Duration::from_secs(5));
        child.wait().unwrap();
    }

    #[test]
    fn no_watch_on_a_pid_that_cannot_be_one() {
        assert!(ExitWatch::open(0).is_none());
        assert!(ExitWatch::open(u32::MAX).is_none());
    }
}
