//! Read leases on mapped compiled code. The host runs a cached component
//! straight from its file (`mmap`): no copy, no hash of 35 MB per command.
//! wasmtime's contract for that is that the file is never changed while
//! mapped — a changed code page would run as it is. So before mapping an
//! entry the host takes a **read lease** on it (`F_SETLEASE`, `F_RDLCK`):
//! the kernel refuses the lease while anyone has the file open for writing,
//! and while the lease is held, any `open` for writing or `truncate` of the
//! file blocks and the kernel signals the holder (`SIGIO`). This process
//! answers that signal by exiting at once (exit 5, a message on stderr),
//! which releases the lease: the writer proceeds only once no code of the
//! file can run any more. The next command finds the entry's identity
//! changed and verifies it whole (or rebuilds it).
//!
//! Where a lease cannot be had (a file system without leases, a file that
//! is open for writing somewhere), the caller falls back to reading the
//! entry into memory and checking its keyed tag over every byte.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::Once;

/// The exit status of a process whose mapped code was opened for writing.
pub const LEASE_BROKEN_EXIT: i32 = 5;

const MESSAGE: &[u8] = b"host: a compiled-code cache entry this command runs was opened for writing; stopped before its code could change (exit 5)\n";

extern "C" fn lease_broken(_signal: libc::c_int) {
    // SAFETY: write(2) and _exit(2) are async-signal-safe.
    unsafe {
        libc::write(2, MESSAGE.as_ptr().cast(), MESSAGE.len());
        libc::_exit(LEASE_BROKEN_EXIT);
    }
}

static HANDLER: Once = Once::new();

/// Installs the `SIGIO` handler (once) and unblocks `SIGIO` in the calling
/// thread. The `host` binary calls it first thing in `main`, before any
/// thread starts, so that every thread inherits the unblocked mask.
pub fn prepare() {
    HANDLER.call_once(|| {
        // SAFETY: a plain handler that only calls async-signal-safe functions.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = lease_broken as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(libc::SIGIO, &action, std::ptr::null_mut());
        }
    });
    // SAFETY: changes only this thread's signal mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGIO);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
    }
}

/// Takes a read lease on `file` (opened read-only), held as long as the
/// file stays open. Fails if the file system has no leases, if this
/// process may not lease the file (not its owner), or if the file is open
/// for writing anywhere.
pub fn take(file: &File) -> std::io::Result<()> {
    prepare();
    // SAFETY: fcntl on a descriptor this `File` owns.
    let result = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLEASE, libc::F_RDLCK) };
    if result < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
