//! The programs the local-process pack's admission starts and waits for,
//! each timed alone (no host, no pack): the app until it answers its health
//! check and from `SIGTERM` until it exits, `tar` unpacking the app,
//! `nginx -t`, and an nginx reload until the old worker stops accepting. An admission run waits for them one after
//! another, so their counts (from its report) times these times are a floor
//! under `pack install` that no host work can go below.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::stats::{Figure, latency};

/// How many times each program is timed.
const RUNS: usize = 5;
/// How long one program may take before its floor is left unmeasured.
const PATIENCE: Duration = Duration::from_secs(10);

/// `floor.app-start`, `floor.app-stop`, `floor.tar`, `floor.nginx-test`
/// and `floor.nginx-reload`; each left out when it could not be measured (the
/// figure is a floor: better none than a wrong one).
pub fn floors(python: &Path, app: &Path, tarball: &Path, dir: &Path) -> Vec<Figure> {
    let mut figures: Vec<Figure> = Vec::new();
    figures.extend(self::app(python, app));
    figures.extend(tar(tarball, &dir.join("tar-floor")));
    let nginx = dir.join("nginx-floor");
    if nginx_prefix(&nginx).is_some() {
        figures.extend(nginx_test(&nginx));
        figures.extend(nginx_reload(&nginx));
    }
    figures
}

/// A loopback port nobody listens on now.
fn free_port() -> Option<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").ok()?;
    Some(listener.local_addr().ok()?.port())
}

/// `floor.app-start`: the app the admission deploys, started alone until it
/// answers its health check: what each warm of a revision waits for at
/// least; and `floor.app-stop`: the same app sent `SIGTERM` then, until it
/// exits: what each drain of a revision waits for.
fn app(python: &Path, app: &Path) -> Vec<Figure> {
    let mut starts = Vec::new();
    let mut stops = Vec::new();
    for _ in 0..RUNS {
        let Some(port) = free_port() else { break };
        let started = Instant::now();
        let Ok(child) = Command::new(python)
            .arg(app)
            .env("PORT", port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        else {
            break;
        };
        let mut child = Reaped(child);
        let answered = loop {
            if healthy(port) {
                break Some(started.elapsed());
            }
            if started.elapsed() > PATIENCE || child.0.try_wait().ok().flatten().is_some() {
                break None;
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        let Some(answered) = answered else { break };
        starts.push(answered);
        let Ok(pid) = libc::pid_t::try_from(child.0.id()) else {
            break;
        };
        let stopping = Instant::now();
        // SAFETY: kill(2) with the pid of our own child, still unreaped.
        if unsafe { libc::kill(pid, libc::SIGTERM) } != 0 || child.0.wait().is_err() {
            break;
        }
        stops.push(stopping.elapsed());
    }
    // Only whole sets: a floor of fewer runs than asked is no floor.
    let mut figures = Vec::new();
    if starts.len() == RUNS {
        figures.push(latency("floor.app-start", starts));
    }
    if stops.len() == RUNS {
        figures.push(latency("floor.app-stop", stops));
    }
    figures
}

/// Whether `GET /healthz` on 127.0.0.1:`port` answers 200.
fn healthy(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    if stream
        .write_all(b"GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") && &head[9..12] == b"200"
}

/// Runs a program to its end; its time when it exits 0.
fn timed(command: &mut Command) -> Option<Duration> {
    let started = Instant::now();
    let status = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()?;
    status.success().then(|| started.elapsed())
}

/// `floor.tar`: the app's tarball unpacked, as `stage-revision` unpacks it.
fn tar(tarball: &Path, into: &Path) -> Option<Figure> {
    let mut samples = Vec::new();
    for run in 0..RUNS {
        let dir = into.join(run.to_string());
        std::fs::create_dir_all(&dir).ok()?;
        samples.push(timed(
            Command::new("tar")
                .arg("-xzf")
                .arg(tarball)
                .arg("-C")
                .arg(&dir)
                .arg("--no-same-owner"),
        )?);
    }
    Some(latency("floor.tar", samples))
}

/// Writes an nginx prefix like the pack's: one server on a free port,
/// notices logged to `error.log`.
fn nginx_prefix(prefix: &Path) -> Option<()> {
    std::fs::create_dir_all(prefix.join("tmp")).ok()?;
    let port = free_port()?;
    let config = format!(
        "worker_processes 1;\npid nginx.pid;\nerror_log error.log notice;\n\
         events {{ worker_connections 1024; }}\nhttp {{\n  access_log off;\n\
         \x20 client_body_temp_path tmp/client_body;\n  proxy_temp_path tmp/proxy;\n\
         \x20 fastcgi_temp_path tmp/fastcgi;\n  uwsgi_temp_path tmp/uwsgi;\n  scgi_temp_path tmp/scgi;\n\
         \x20 server {{\n    listen 127.0.0.1:{port};\n    location / {{ return 200; }}\n  }}\n}}\n"
    );
    std::fs::write(prefix.join("nginx.conf"), config).ok()
}

/// `floor.nginx-test`: `nginx -t` of that config, as every split's change runs it.
fn nginx_test(prefix: &Path) -> Option<Figure> {
    let mut samples = Vec::new();
    for _ in 0..RUNS {
        samples.push(timed(
            Command::new("nginx")
                .args(["-t", "-q", "-p"])
                .arg(prefix)
                .args(["-c", "nginx.conf", "-e", "stderr"]),
        )?);
    }
    Some(latency("floor.nginx-test", samples))
}

/// `floor.nginx-reload`: nginx started on that config, then sent `SIGHUP`,
/// timed until its old worker says it is shutting down (it stops accepting),
/// what the pack waits for before a new split counts as routed. nginx's
/// master waits 100 ms for the new workers to start before it retires the
/// old ones, so a reload is never faster than that.
fn nginx_reload(prefix: &Path) -> Option<Figure> {
    let log = prefix.join("error.log");
    let child = Command::new("nginx")
        .arg("-p")
        .arg(prefix)
        .args(["-c", "nginx.conf", "-e", "error.log", "-g", "daemon off;"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let nginx = Reaped(child);
    let pid = libc::pid_t::try_from(nginx.0.id()).ok()?;
    logged(&log, 0, "start worker process")?;
    let mut samples = Vec::new();
    for _ in 0..RUNS {
        let offset = std::fs::metadata(&log).ok()?.len();
        let started = Instant::now();
        // SAFETY: kill(2) with the pid of our own child, still unreaped.
        if unsafe { libc::kill(pid, libc::SIGHUP) } != 0 {
            return None;
        }
        logged(&log, offset, "gracefully shutting down")?;
        samples.push(started.elapsed());
    }
    Some(latency("floor.nginx-reload", samples))
}

/// Waits (1 ms looks) until `marker` is in `log` past `offset`.
fn logged(log: &Path, offset: u64, marker: &str) -> Option<()> {
    let started = Instant::now();
    while started.elapsed() < PATIENCE {
        if let Ok(text) = std::fs::read(log)
            && text
                .get(usize::try_from(offset).unwrap_or(usize::MAX)..)
                .is_some_and(|tail| String::from_utf8_lossy(tail).contains(marker))
        {
            return Some(());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    None
}

/// A child stopped and reaped when dropped: nothing a floor starts
/// outlives it. `SIGTERM` first (nginx's master takes its workers with it,
/// which a `SIGKILL` would leave running), `SIGKILL` after a second.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        // Never a pid already reaped: it may be another process's now.
        if !matches!(self.0.try_wait(), Ok(None)) {
            return;
        }
        if let Ok(pid) = libc::pid_t::try_from(self.0.id()) {
            // SAFETY: kill(2) with the pid of our own child, still unreaped.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            let until = Instant::now() + Duration::from_secs(1);
            while Instant::now() < until && matches!(self.0.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
