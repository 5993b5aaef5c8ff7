//! A real Prometheus for the tests: the `prometheus` binary (Debian's
//! package, installed by `scripts/setup-system`), started on a free
//! loopback port with a config and a storage directory of its own in a
//! test's directory, scraping `/metrics` every second of whatever a
//! file-based service discovery file lists (the local-process pack's
//! `prometheus-targets.json`). It logs to `prometheus.log` in that
//! directory, and is killed when the test ends.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long Prometheus may take to answer `/-/ready`.
const READY_WITHIN: Duration = Duration::from_secs(30);
/// How long [`Prometheus::wait_for_vector`] waits for a query to return something.
const QUERY_WITHIN: Duration = Duration::from_secs(60);

fn binary() -> PathBuf {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join("prometheus"))
        .find(|path| path.is_file())
        .expect("prometheus is not installed: run scripts/setup-system (scripts/test does)")
}

/// One Prometheus server; killed on drop.
pub struct Prometheus {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

impl Prometheus {
    /// Starts Prometheus with its config, data and log in `dir` (created),
    /// job `revisions` discovering its targets from `targets` (which need
    /// not exist yet), and waits until it is ready.
    pub fn start(dir: &Path, targets: &Path) -> Prometheus {
        std::fs::create_dir_all(dir).unwrap();
        let config = dir.join("prometheus.yml");
        // A JSON string is a YAML string: any path quoted safely.
        let files = serde_json::to_string(&targets.display().to_string()).unwrap();
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: revisions\n    metrics_path: /metrics\n\
                 \x20   file_sd_configs:\n      - files: [{files}]\n        refresh_interval: 1s\n"
            ),
        )
        .unwrap();
        // The port is free when picked, not necessarily when Prometheus binds it.
        for _attempt in 0..3 {
            let port = super::free_port();
            let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
            let child = Command::new(binary())
                .arg(format!("--config.file={}", config.display()))
                .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .current_dir(dir)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("start prometheus");
            let mut prometheus = Prometheus {
                child: Some(child),
                port,
                dir: dir.to_path_buf(),
            };
            if prometheus.wait_ready() {
                return prometheus;
            }
            let log = prometheus.log();
            assert!(
                log.contains("address already in use"),
                "prometheus exited before it was ready: {log}"
            );
        }
        panic!(
            "prometheus found no free port in 3 attempts: {}",
            std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default()
        );
    }

    /// Polls `/-/ready` until it answers 200 (true) or the process exits
    /// (false); panics after [`READY_WITHIN`].
    fn wait_ready(&mut self) -> bool {
        let started = Instant::now();
        loop {
            if let Some(child) = self.child.as_mut()
                && child.try_wait().unwrap().is_some()
            {
                self.child = None;
                return false;
            }
            if self.get("/-/ready").is_some_and(|(status, _)| status == 200) {
                return true;
            }
            assert!(
                started.elapsed() < READY_WITHIN,
                "prometheus was not ready within {READY_WITHIN:?}: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// What Prometheus logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    /// `GET path` (HTTP/1.0): (status, body), or `None` when nothing answers.
    fn get(&self, path: &str) -> Option<(u16, String)> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
        write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        let status = response.split_whitespace().nth(1)?.parse().ok()?;
        let body = response.split_once("\r\n\r\n").map_or("", |(_, body)| body).to_string();
        Some((status, body))
    }

    /// The answer of the instant query `promql` (`/api/v1/query`), whole:
    /// `{"status": ..., "data": {"resultType": ..., "result": [...]}}`.
    pub fn query(&self, promql: &str) -> Value {
        let path = format!("/api/v1/query?query={}", url_encode(promql));
        let (status, body) = self
            .get(&path)
            .unwrap_or_else(|| panic!("prometheus on {} did not answer {promql:?}", self.url()));
        serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("query {promql:?} answered {status} without JSON ({e}): {body}"))
    }

    /// The result of `promql`, asserting it is a vector: one
    /// `{"metric": {...}, "value": [time, "value"]}` per series.
    pub fn vector(&self, promql: &str) -> Vec<Value> {
        let answer = self.query(promql);
        assert_eq!(answer["status"], "success", "query {promql:?}: {answer}");
        assert_eq!(answer["data"]["resultType"], "vector", "query {promql:?}: {answer}");
        answer["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    /// Waits (at most 60 s) until `promql` returns a vector for which
    /// `ready` holds; returns it. Panics naming `what`.
    pub fn wait_until(&self, what: &str, promql: &str, mut ready: impl FnMut(&[Value]) -> bool) -> Vec<Value> {
        let started = Instant::now();
        loop {
            let result = self.vector(promql);
            if ready(&result) {
                return result;
            }
            assert!(
                started.elapsed() < QUERY_WITHIN,
                "timed out waiting for {what}: {promql} returns {result:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits (at most 60 s) until `promql` returns a non-empty vector.
    pub fn wait_for_vector(&self, promql: &str) -> Vec<Value> {
        self.wait_until("a non-empty vector", promql, |result| !result.is_empty())
    }

    /// SIGTERM, then waits for it to exit (KILL after 20 s): Prometheus is
    /// down from here on.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SAFETY: kill(2) on the pid of our own child, not yet reaped.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let until = Instant::now() + Duration::from_secs(20);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() >= until {
                let _ = child.kill();
                let _ = child.wait();
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A value of a sample: `value[1]`, a string like `"42"`.
pub fn sample(series: &Value) -> f64 {
    series["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no sample value in {series}"))
}

/// `text` for a URL's query: every byte outside the unreserved set as `%XX`.
fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
