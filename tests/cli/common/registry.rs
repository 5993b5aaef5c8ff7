//! A real OCI registry for the `pack push|pull|install oci://` tests:
//! Debian's `docker-registry` (the CNCF distribution registry) that
//! `scripts/setup-system` installs, started per test on a free loopback port
//! with its own config and storage in the sandbox (optionally behind an
//! htpasswd file made with `htpasswd -B`), and killed when the test ends.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn binary(name: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/sbin", "/usr/local/bin"] {
        let path = Path::new(dir).join(name);
        if path.exists() {
            return path;
        }
    }
    panic!("{name} is not installed: run scripts/setup-system (scripts/test does)")
}

/// One registry; killed on drop.
pub struct Registry {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub address: String,
    /// Its storage directory (filesystem driver).
    pub storage: PathBuf,
}

impl Registry {
    /// A registry without authentication.
    pub fn start(dir: &Path) -> Registry {
        Self::start_with(dir, None)
    }

    /// A registry that wants HTTP basic auth as `user`/`password`.
    pub fn start_with_auth(dir: &Path, user: &str, password: &str) -> Registry {
        Self::start_with(dir, Some((user, password)))
    }

    fn start_with(dir: &Path, auth: Option<(&str, &str)>) -> Registry {
        let root = dir.join("registry");
        let storage = root.join("storage");
        std::fs::create_dir_all(&storage).unwrap();
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n\
             http:\n  addr: 127.0.0.1:{port}\n  secret: envpack-test-secret\n",
            storage.display()
        );
        if let Some((user, password)) = auth {
            let htpasswd = root.join("htpasswd");
            let out = Command::new(binary("htpasswd"))
                .args(["-Bbn", user, password])
                .output()
                .expect("run htpasswd");
            assert!(
                out.status.success(),
                "htpasswd: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::fs::write(&htpasswd, &out.stdout).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: envpack-test\n    path: {}\n",
                htpasswd.display()
            ));
        }
        let config_path = root.join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::File::create(root.join("registry.log")).unwrap();
        let child = Command::new(binary("docker-registry"))
            .arg("serve")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        let registry = Registry {
            child,
            address: format!("127.0.0.1:{port}"),
            storage,
        };
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "docker-registry did not listen on {port} within 30 s: {}",
                std::fs::read_to_string(root.join("registry.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        registry
    }

    /// `oci://ADDRESS/PATH`.
    pub fn oci(&self, path: &str) -> String {
        format!("oci://{}/{path}", self.address)
    }

    /// The file the registry serves blob `digest` (`sha256:HEX`) from.
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        self.storage
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback address where nothing listens (bound, then released).
pub fn dead_address() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    drop(listener);
    address
}
