//! PostgreSQL for the tests: a private cluster started by `scripts/postgres`
//! (stopped and removed on drop), and the suite's choice of backend.
//!
//! With `ENVPACK_TEST_POSTGRES` set to a superuser URL (`scripts/test` sets
//! it for its PostgreSQL pass, on a cluster it started), every sandbox keeps
//! its records in a fresh database of that cluster instead of `state.db`.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// A private cluster; stopped and removed on drop.
pub struct Cluster {
    pub dir: String,
    pub url: String,
}

fn script() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/postgres")
}

impl Cluster {
    pub fn start() -> Cluster {
        Self::start_with(&[])
    }

    /// A cluster that also speaks TLS; its CA is `DIR/ca.crt`.
    pub fn start_tls() -> Cluster {
        Self::start_with(&["--tls"])
    }

    fn start_with(args: &[&str]) -> Cluster {
        let out = Command::new("bash")
            .arg(script())
            .arg("start")
            .args(args)
            .output()
            .expect("run scripts/postgres");
        assert!(
            out.status.success(),
            "scripts/postgres start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let (dir, url) = line.split_once(' ').expect("DIR URL");
        Cluster {
            dir: dir.to_string(),
            url: url.to_string(),
        }
    }

    /// A new, empty database on this cluster: its URL.
    pub fn database(&self) -> String {
        create_database(&self.url)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("bash").arg(script()).args(["stop", &self.dir]).output();
    }
}

/// Creates a database on the server of the superuser URL `admin`.
pub fn create_database(admin: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "t_{}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    );
    let mut client = postgres::Client::connect(admin, postgres::NoTls).expect("connect to the test cluster");
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .expect("create a test database");
    let (base, _) = admin.rsplit_once('/').expect("URL with a database");
    format!("{base}/{name}")
}

/// The database a new sandbox keeps its records in, when the suite runs
/// on PostgreSQL.
pub fn suite_database() -> Option<String> {
    std::env::var("ENVPACK_TEST_POSTGRES")
        .ok()
        .filter(|url| !url.is_empty())
        .map(|admin| create_database(&admin))
}
