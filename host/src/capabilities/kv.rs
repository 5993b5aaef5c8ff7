//! Capability `kv`: pack-private state. Writes of one call are staged in a
//! [`KvSession`] and committed to the [`KvStore`] only when the host accepts
//! the call's result, so a trap or refused outcome leaves nothing behind.

use std::collections::BTreeMap;
use std::sync::Arc;

use envpack_model::{Capability, Outcome, VerbError};

use crate::capabilities::kv_store::{Change, KvError, KvStore};
use crate::capabilities::ledger::Ledger;
use crate::contract::bindings::envpack::deployer::kv::Host;

pub const MAX_KEY_BYTES: usize = 512;
pub const MAX_VALUE_BYTES: usize = 1 << 20;
/// Bytes one call may stage across all its writes.
pub const MAX_STAGED_BYTES: usize = 16 << 20;

/// Keys one (pack, environment) namespace may hold.
pub const MAX_KEYS: u64 = 100_000;
/// Bytes (keys and values) one (pack, environment) namespace may hold.
pub const MAX_NAMESPACE_BYTES: u64 = 256 << 20;

/// A limit of the kv capability was crossed; the call traps with this.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct KvLimit(pub String);

/// The kv writes of one call, on top of the durable store.
pub struct KvSession {
    store: Arc<dyn KvStore>,
    namespace: String,
    pending: BTreeMap<String, Option<Vec<u8>>>,
    staged_bytes: usize,
    /// (keys, bytes) of the namespace with the pending writes, once the
    /// call first writes.
    usage: Option<(u64, u64)>,
}

impl KvSession {
    pub fn new(store: Arc<dyn KvStore>, namespace: String) -> Self {
        KvSession {
            store,
            namespace,
            pending: BTreeMap::new(),
            staged_bytes: 0,
            usage: None,
        }
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        match self.pending.get(key) {
            Some(value) => Ok(value.clone()),
            None => self.store.get(&self.namespace, key),
        }
    }

    fn keys(&self, prefix: &str) -> Result<Vec<String>, KvError> {
        let mut keys: std::collections::BTreeSet<String> =
            self.store.keys(&self.namespace, prefix)?.into_iter().collect();
        for (key, value) in self.pending.range(prefix.to_string()..) {
            if !key.starts_with(prefix) {
                break;
            }
            match value {
                Some(_) => keys.insert(key.clone()),
                None => keys.remove(key),
            };
        }
        Ok(keys.into_iter().collect())
    }

    fn stage(&mut self, key: String, value: Option<Vec<u8>>) -> Result<(), KvLimit> {
        if key.len() > MAX_KEY_BYTES {
            return Err(KvLimit(format!(
                "kv key of {} bytes is over the {MAX_KEY_BYTES}-byte limit",
                key.len()
            )));
        }
        let size = key.len() + value.as_ref().map_or(0, Vec::len);
        if value.as_ref().is_some_and(|v| v.len() > MAX_VALUE_BYTES) {
            return Err(KvLimit(format!(
                "kv value of {} bytes is over the {MAX_VALUE_BYTES}-byte limit",
                size - key.len()
            )));
        }
        self.staged_bytes += size;
        if self.staged_bytes > MAX_STAGED_BYTES {
            return Err(KvLimit(format!(
                "one call wrote more than {MAX_STAGED_BYTES} bytes to kv"
            )));
        }
        self.check_quota(&key, value.as_deref())?;
        self.pending.insert(key, value);
        Ok(())
    }

    /// Keeps the namespace within [`MAX_KEYS`] and [`MAX_NAMESPACE_BYTES`]
    /// with this write; a delete is always allowed.
    fn check_quota(&mut self, key: &str, value: Option<&[u8]>) -> Result<(), KvLimit> {
        let store_failed = |e: KvError| KvLimit(format!("the host's kv store failed: {e}"));
        let (keys, bytes) = match self.usage {
            Some(usage) => usage,
            None => self.store.usage(&self.namespace).map_err(store_failed)?,
        };
        let old = self.get(key).map_err(store_failed)?;
        let size = |v: Option<usize>| v.map_or(0, |n| (key.len() + n) as u64);
        let keys = (keys + u64::from(value.is_some())).saturating_sub(u64::from(old.is_some()));
        let bytes = (bytes + size(value.map(<[u8]>::len))).saturating_sub(size(old.as_ref().map(Vec::len)));
        if value.is_some() && keys > MAX_KEYS {
            return Err(KvLimit(format!(
                "kv holds at most {MAX_KEYS} keys per pack and environment; this write would make {keys}"
            )));
        }
        if value.is_some() && bytes > MAX_NAMESPACE_BYTES {
            return Err(KvLimit(format!(
                "kv holds at most {MAX_NAMESPACE_BYTES} bytes per pack and environment; this write would make {bytes}"
            )));
        }
        self.usage = Some((keys, bytes));
        Ok(())
    }

    /// Makes the call's writes durable.
    pub fn commit(self) -> Result<(), KvError> {
        let changes: Vec<Change> = self.pending.into_iter().collect();
        self.store.commit(&self.namespace, changes)
    }

    /// Whether the call staged any write.
    pub fn is_dirty(&self) -> bool {
        !self.pending.is_empty()
    }
}

/// Commits the call's kv writes if the host accepted its result or the
/// pack reported a typed error; discards them otherwise. A store that
/// cannot save them is an error of the call, never a log line.
pub(crate) fn settle(result: &Result<Outcome, VerbError>, kv: KvSession) -> Result<bool, KvError> {
    let accepted = match result {
        Ok(_) => true,
        Err(e) => {
            e.is_pack_answer()
                && !e.is_precondition()
                && !matches!(
                    e,
                    VerbError::CrossDeploymentInterference { .. } | VerbError::OutcomeMismatch { .. }
                )
        }
    };
    if !accepted || !kv.is_dirty() {
        return Ok(false);
    }
    kv.commit().map(|()| true)
}

/// A key (or prefix) no stored key can match is refused on every kv call,
/// not only on writes: a pack looping huge keys through `get` makes the
/// host copy and record them.
fn check_key(what: &str, key: &str) -> wasmtime::Result<()> {
    if key.len() > MAX_KEY_BYTES {
        return Err(wasmtime::Error::new(KvLimit(format!(
            "kv {what} of {} bytes is over the {MAX_KEY_BYTES}-byte limit",
            key.len()
        ))));
    }
    Ok(())
}

fn store_error(e: KvError) -> wasmtime::Error {
    wasmtime::Error::new(KvLimit(format!("the host's kv store failed: {e}")))
}

/// What `kv` is linked with: the call's session and its ledger.
pub struct KvView<'a> {
    pub(crate) kv: &'a mut KvSession,
    pub(crate) ledger: &'a mut Ledger,
}

impl Host for KvView<'_> {
    fn get(&mut self, key: String) -> wasmtime::Result<Option<Vec<u8>>> {
        check_key("key", &key)?;
        self.ledger.call(Capability::Kv, "kv.get", key.clone())?;
        self.kv.get(&key).map_err(store_error)
    }

    fn set(&mut self, key: String, value: Vec<u8>) -> wasmtime::Result<()> {
        self.ledger.call(Capability::Kv, "kv.set", key.clone())?;
        self.kv.stage(key, Some(value)).map_err(wasmtime::Error::new)
    }

    fn delete(&mut self, key: String) -> wasmtime::Result<()> {
        self.ledger.call(Capability::Kv, "kv.delete", key.clone())?;
        self.kv.stage(key, None).map_err(wasmtime::Error::new)
    }

    fn list_keys(&mut self, prefix: String) -> wasmtime::Result<Vec<String>> {
        check_key("prefix", &prefix)?;
        self.ledger.call(Capability::Kv, "kv.list-keys", prefix.clone())?;
        self.kv.keys(&prefix).map_err(store_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capabilities::kv_store::MemoryKv;

    #[test]
    fn a_namespace_holds_at_most_max_keys_and_deletes_always_pass() {
        let store: Arc<dyn KvStore> = Arc::new(MemoryKv::default());
        let mut first = KvSession::new(store.clone(), "p/env".into());
        for i in 0..MAX_KEYS {
            first.stage(format!("k{i}"), Some(vec![1])).unwrap();
        }
        // Overwriting a key adds none.
        first.stage("k0".into(), Some(vec![2])).unwrap();
        first.commit().unwrap();
        // A later call sees the stored usage.
        let mut second = KvSession::new(store.clone(), "p/env".into());
        let refused = second.stage("one-more".into(), Some(vec![1])).unwrap_err();
        assert!(refused.0.contains("at most 100000 keys"), "{refused}");
        second.stage("k1".into(), None).unwrap();
        second.stage("one-more".into(), Some(vec![1])).unwrap();
        // Another namespace is not affected.
        let mut other = KvSession::new(store, "p/other".into());
        other.stage("k".into(), Some(vec![1])).unwrap();
    }
}
