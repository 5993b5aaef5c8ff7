//! Where the `kv` capability keeps pack state: one namespace per (pack name,
//! environment), behind the [`KvStore`] trait. [`MemoryKv`] serves tests and
//! benches; the operator keeps pack state in its database (see
//! `envpack-operator`'s `packstate`). [`FileKv`] is the JSON file of older
//! hosts, kept so that their state can be read and imported.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// One pending change: `Some(value)` sets, `None` deletes.
pub type Change = (String, Option<Vec<u8>>);

/// Why the kv store failed.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    #[error("kv store {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("kv store {path} is corrupt: {detail}")]
    Corrupt { path: String, detail: String },
}

/// Durable pack state, read by key and written in whole-call batches.
pub trait KvStore: Send + Sync {
    fn get(&self, namespace: &str, key: &str) -> Result<Option<Vec<u8>>, KvError>;
    /// Keys of `namespace` starting with `prefix`, sorted.
    fn keys(&self, namespace: &str, prefix: &str) -> Result<Vec<String>, KvError>;
    /// Applies every change of one call at once.
    fn commit(&self, namespace: &str, changes: Vec<Change>) -> Result<(), KvError>;
    /// The whole namespace, for inspection and tests.
    fn dump(&self, namespace: &str) -> Result<BTreeMap<String, Vec<u8>>, KvError>;
    /// How many keys the namespace holds, and their bytes (keys and values).
    fn usage(&self, namespace: &str) -> Result<(u64, u64), KvError> {
        let all = self.dump(namespace)?;
        let bytes = all.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum();
        Ok((all.len() as u64, bytes))
    }
}

type Namespaces = HashMap<String, BTreeMap<String, Vec<u8>>>;

fn apply(map: &mut Namespaces, namespace: &str, changes: Vec<Change>) {
    let ns = map.entry(namespace.to_string()).or_default();
    for (key, value) in changes {
        match value {
            Some(v) => ns.insert(key, v),
            None => ns.remove(&key),
        };
    }
}

fn prefixed(map: &Namespaces, namespace: &str, prefix: &str) -> Vec<String> {
    map.get(namespace)
        .map(|ns| {
            ns.range(prefix.to_string()..)
                .take_while(|(k, _)| k.starts_with(prefix))
                .map(|(k, _)| k.clone())
                .collect()
        })
        .unwrap_or_default()
}

/// State in memory, lost when the process ends.
#[derive(Default)]
pub struct MemoryKv {
    map: Mutex<Namespaces>,
}

impl MemoryKv {
    fn lock(&self) -> std::sync::MutexGuard<'_, Namespaces> {
        self.map.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl KvStore for MemoryKv {
    fn get(&self, namespace: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        Ok(self.lock().get(namespace).and_then(|ns| ns.get(key).cloned()))
    }

    fn keys(&self, namespace: &str, prefix: &str) -> Result<Vec<String>, KvError> {
        Ok(prefixed(&self.lock(), namespace, prefix))
    }

    fn commit(&self, namespace: &str, changes: Vec<Change>) -> Result<(), KvError> {
        apply(&mut self.lock(), namespace, changes);
        Ok(())
    }

    fn dump(&self, namespace: &str) -> Result<BTreeMap<String, Vec<u8>>, KvError> {
        Ok(self.lock().get(namespace).cloned().unwrap_or_default())
    }
}

/// State in one JSON file (values as strings when UTF-8, else byte arrays),
/// served from memory and rewritten whole on every commit.
pub struct FileKv {
    path: PathBuf,
    memory: MemoryKv,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
enum Value {
    Text(String),
    Bytes(Vec<u8>),
}

impl FileKv {
    /// Opens (or starts) the store at `path`.
    pub fn open(path: &Path) -> Result<Self, KvError> {
        let io = |source| KvError::Io {
            path: path.display().to_string(),
            source,
        };
        let map = match std::fs::read(path) {
            Ok(bytes) => Self::decode(path, &bytes)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Namespaces::new(),
            Err(e) => return Err(io(e)),
        };
        Ok(FileKv {
            path: path.to_path_buf(),
            memory: MemoryKv { map: Mutex::new(map) },
        })
    }

    /// Every namespace and its keys: what a migration imports.
    pub fn namespaces(&self) -> BTreeMap<String, BTreeMap<String, Vec<u8>>> {
        self.memory.lock().iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    fn decode(path: &Path, bytes: &[u8]) -> Result<Namespaces, KvError> {
        let raw: HashMap<String, BTreeMap<String, Value>> =
            serde_json::from_slice(bytes).map_err(|e| KvError::Corrupt {
                path: path.display().to_string(),
                detail: e.to_string(),
            })?;
        Ok(raw
            .into_iter()
            .map(|(ns, kv)| {
                let kv = kv
                    .into_iter()
                    .map(|(k, v)| match v {
                        Value::Text(t) => (k, t.into_bytes()),
                        Value::Bytes(b) => (k, b),
                    })
                    .collect();
                (ns, kv)
            })
            .collect())
    }

    fn write(&self, map: &Namespaces) -> Result<(), KvError> {
        let io = |source| KvError::Io {
            path: self.path.display().to_string(),
            source,
        };
        let raw: BTreeMap<&String, BTreeMap<&String, Value>> = map
            .iter()
            .map(|(ns, kv)| {
                let kv = kv
                    .iter()
                    .map(|(k, v)| match String::from_utf8(v.clone()) {
                        Ok(t) => (k, Value::Text(t)),
                        Err(e) => (k, Value::Bytes(e.into_bytes())),
                    })
                    .collect();
                (ns, kv)
            })
            .collect();
        let bytes = serde_json::to_vec_pretty(&raw).map_err(|e| io(std::io::Error::other(e)))?;
        envpack_model::files::write_atomic(&self.path, &bytes, 0o600).map_err(io)
    }
}

impl KvStore for FileKv {
    fn get(&self, namespace: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.memory.get(namespace, key)
    }

    fn keys(&self, namespace: &str, prefix: &str) -> Result<Vec<String>, KvError> {
        self.memory.keys(namespace, prefix)
    }

    /// Writes the file first and updates memory only if that worked.
    fn commit(&self, namespace: &str, changes: Vec<Change>) -> Result<(), KvError> {
        if changes.is_empty() {
            return Ok(());
        }
        let mut map = self.memory.lock();
        let mut next = map.clone();
        apply(&mut next, namespace, changes);
        self.write(&next)?;
        *map = next;
        Ok(())
    }

    fn dump(&self, namespace: &str) -> Result<BTreeMap<String, Vec<u8>>, KvError> {
        self.memory.dump(namespace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_kv_round_trips_and_survives_reopen() {
        let dir = std::env::temp_dir().join(format!("envpack-kv-{}", std::process::id()));
        let path = dir.join("kv.json");
        let _ = std::fs::remove_file(&path);
        let kv = FileKv::open(&path).unwrap();
        kv.commit(
            "p/dev",
            vec![("a".into(), Some(b"1".to_vec())), ("b".into(), Some(vec![0xff]))],
        )
        .unwrap();
        kv.commit("p/dev", vec![("a".into(), None)]).unwrap();
        let again = FileKv::open(&path).unwrap();
        assert_eq!(again.get("p/dev", "a").unwrap(), None);
        assert_eq!(again.get("p/dev", "b").unwrap(), Some(vec![0xff]));
        assert_eq!(again.keys("p/dev", "").unwrap(), vec!["b".to_string()]);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn corrupt_file_is_an_error_not_a_reset() {
        let path = std::env::temp_dir().join(format!("envpack-kv-bad-{}.json", std::process::id()));
        std::fs::write(&path, b"{not json").unwrap();
        assert!(matches!(FileKv::open(&path), Err(KvError::Corrupt { .. })));
        let _ = std::fs::remove_file(path);
    }
}
