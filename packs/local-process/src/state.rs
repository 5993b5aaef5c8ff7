//! What the pack did, kept in files of the environment's work directory
//! (which the pack sees as `/`). Files, not kv: kv writes become durable
//! only when the host accepts a call, but a spawned process or a reloaded
//! nginx exists whether or not the call that made it succeeds — so the
//! record of it is written the moment it happens (temp file, then rename),
//! and a verb re-run after a crash finds it again.
//!
//! - `revisions/<id>/run.json`: the revision's process ([`Run`]);
//! - `revisions/<id>/intent.json`: written just before a spawn, so a crash
//!   between the spawn and `run.json` still lets the next warm adopt it;
//! - `routes/<n>.json`: what nginx routes for one deployment ([`Route`]),
//!   written only after nginx accepted the config that contains it;
//! - `nginx/`: nginx's prefix (config, pid, temp files);
//! - `prometheus-targets.json`: the running revisions' scrape targets
//!   (`targets.rs`), rewritten from the `run.json` records.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// A revision's process.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Run {
    /// The host's process id (`process.spawn`).
    pub process: String,
    pub pid: u32,
    pub port: u16,
    /// Set by a drain that returned before the process exited: when a later
    /// verb of this revision (drain again, archive) must KILL it.
    #[serde(default)]
    pub kill_at_ms: Option<u64>,
    /// The revision's id and deployment, for its scrape target's labels
    /// (empty in a record written before they were kept).
    #[serde(default)]
    pub revision: String,
    #[serde(default)]
    pub deployment: String,
}

/// A spawn about to happen.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Intent {
    pub at_ms: u64,
    pub port: u16,
    pub command: String,
    pub args: Vec<String>,
}

/// One upstream of a deployment's route.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Upstream {
    pub revision: String,
    pub weight_bps: u32,
    /// The revision's port; `None` for a 0-weight entry (not routed).
    pub port: Option<u16>,
}

/// What nginx routes for one deployment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Route {
    pub deployment: String,
    pub listen: String,
    pub generation: u64,
    /// The recorded split's entries in its order, 0-weight ones included.
    pub upstreams: Vec<Upstream>,
}

pub fn revision_dir(revision: &str) -> String {
    format!("/revisions/{}", file_name(revision))
}

pub fn run_path(revision: &str) -> String {
    format!("{}/run.json", revision_dir(revision))
}

pub fn intent_path(revision: &str) -> String {
    format!("{}/intent.json", revision_dir(revision))
}

/// A revision or deployment id as one safe file name, by the contract's
/// rule for revision directories (see `process.fetch-artifact`): bytes
/// outside `[A-Za-z0-9_-]` as `%xx`; longer than 128 bytes, the first 64,
/// `~`, and 32 hex digits of the id's sha256.
pub fn file_name(id: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut out = String::new();
    for byte in id.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_' {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02x}"));
        }
    }
    if out.len() <= 128 {
        return out;
    }
    let digest: String = Sha256::digest(id.as_bytes())
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{}~{digest}", &out[..64])
}

/// The id a [`file_name`] stands for; `None` for a shortened one.
pub fn id_of(name: &str) -> Option<String> {
    let bytes = name.as_bytes();
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        match bytes[at] {
            b'%' => {
                let hex = name.get(at + 1..at + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                at += 3;
            }
            b'~' => return None,
            byte => {
                out.push(byte);
                at += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

pub fn read<T: DeserializeOwned>(path: &str) -> Result<Option<T>, String> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| format!("{path} is damaged ({e}); remove it to start over")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{path}: {e}")),
    }
}

pub fn write<T: Serialize>(path: &str, value: &T) -> Result<(), String> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| e.to_string())?;
    write_bytes(path, &bytes)
}

/// Writes a file whole: a temp file beside it, then a rename.
pub fn write_bytes(path: &str, bytes: &[u8]) -> Result<(), String> {
    if let Some((dir, _)) = path.rsplit_once('/') {
        std::fs::create_dir_all(dir).map_err(|e| format!("{dir}: {e}"))?;
    }
    let tmp = format!("{path}.tmp");
    std::fs::write(&tmp, bytes).map_err(|e| format!("{tmp}: {e}"))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{path}: {e}"))
}

pub fn remove(path: &str) -> Result<(), String> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(format!("{path}: {e}")),
        _ => Ok(()),
    }
}

pub fn remove_dir(path: &str) -> Result<(), String> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(format!("{path}: {e}")),
        _ => Ok(()),
    }
}

/// Every revision with a directory in the work directory (escaped names).
pub fn revision_dirs() -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/revisions") else {
        return Vec::new();
    };
    entries.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect()
}

/// Every run record, by escaped revision name.
pub fn runs() -> Vec<(String, Run)> {
    revision_dirs()
        .into_iter()
        .filter_map(|name| {
            let run: Run = read(&format!("/revisions/{name}/run.json")).ok()??;
            Some((name, run))
        })
        .collect()
}

pub fn route_path(deployment: &str) -> String {
    format!("/routes/{}.json", file_name(deployment))
}

/// Every route nginx has accepted.
pub fn routes() -> Result<Vec<Route>, String> {
    let Ok(entries) = std::fs::read_dir("/routes") else {
        return Ok(Vec::new());
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    let mut routes = Vec::new();
    for name in names {
        if let Some(route) = read(&format!("/routes/{name}"))? {
            routes.push(route);
        }
    }
    Ok(routes)
}

/// The last `lines` lines of a log file (at most 2 KiB), for error messages.
pub fn tail(path: &str, lines: usize) -> String {
    let Ok(bytes) = std::fs::read(path) else {
        return String::new();
    };
    let start = bytes.len().saturating_sub(2048);
    let text = String::from_utf8_lossy(&bytes[start..]);
    let all: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    all[all.len().saturating_sub(lines)..].join(" | ")
}

/// Bytes of a file from `offset` on (for following nginx's log).
pub fn read_from(path: &str, offset: u64) -> String {
    let Ok(bytes) = std::fs::read(path) else {
        return String::new();
    };
    let start = usize::try_from(offset).unwrap_or(usize::MAX).min(bytes.len());
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

pub fn file_len(path: &str) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}
