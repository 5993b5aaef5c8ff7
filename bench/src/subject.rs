//! The pack a bench measures, made ready the way an author ships one:
//! sealed (its own manifest if it has one; else one made from what its
//! `describe` says), signed with a fresh key the bench trusts, and the
//! environment it runs in (its declared capabilities, and the settings and
//! grants given on the command line).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use envpack_host::{HostConfig, MemoryKv, Runtime, SignaturePolicy};
use envpack_model::{Capability, Grants};
use envpack_trust::{Manifest, PrivateKey};

use crate::{BenchError, fail};

/// The reference pack's name: its verbs are compared with native Rust.
pub const REFERENCE: &str = "envpack.deployer.ledger";

/// What the pack's environments get (in process, and `env create` flags).
#[derive(Clone, Debug, Default)]
pub struct BenchEnv {
    pub settings: BTreeMap<String, String>,
    pub grants: Grants,
    /// The same settings and grants as `env create` flags.
    pub args: Vec<String>,
}

/// A pack sealed and signed for the bench.
pub struct Subject {
    pub signed: Vec<u8>,
    pub manifest: Manifest,
    pub key: PrivateKey,
}

impl Subject {
    /// The pack's name without its version.
    pub fn name(&self) -> &str {
        self.manifest.descriptor.split('@').next().unwrap_or_default()
    }

    /// Whether this is the reference pack (native comparison, conformance must pass).
    pub fn is_reference(&self) -> bool {
        self.name() == REFERENCE
    }

    /// The capabilities it declares.
    pub fn capabilities(&self) -> &[Capability] {
        &self.manifest.capabilities
    }

    /// The `env create` arguments of an environment `id` bound to exactly this pack.
    pub fn env_create_args(&self, id: &str, env: &BenchEnv) -> Vec<String> {
        let mut args = vec![
            "env".to_string(),
            "create".into(),
            id.into(),
            "--deployer".into(),
            format!("{}@={}", self.name(), self.version()),
        ];
        if !self.capabilities().is_empty() {
            let names: Vec<&str> = self.capabilities().iter().map(|c| c.name()).collect();
            args.extend(["--capability".to_string(), names.join(",")]);
        }
        args.extend(env.args.iter().cloned());
        args
    }

    fn version(&self) -> &str {
        self.manifest.descriptor.split('@').nth(1).unwrap_or_default()
    }
}

/// Seals (if it is not sealed yet) and signs the pack at `path` with a fresh key.
pub async fn prepare(path: &Path) -> Result<Subject, BenchError> {
    let bytes = std::fs::read(path).map_err(|e| BenchError(format!("cannot read {}: {e}", path.display())))?;
    let manifest = match Manifest::read(&bytes).map_err(|e| fail("manifest")(e.to_string()))? {
        Some(manifest) => manifest,
        None => manifest_from_describe(path, &bytes).await?,
    };
    let sealed = manifest.seal(&bytes).map_err(|e| fail("seal")(e.to_string()))?;
    let key = PrivateKey::generate().map_err(|e| fail("keygen")(e.to_string()))?;
    let signed = envpack_trust::sign(&sealed, &key).map_err(|e| fail("sign")(e.to_string()))?;
    Ok(Subject { signed, manifest, key })
}

/// A manifest saying what an unsealed pack's `describe` says.
async fn manifest_from_describe(path: &Path, bytes: &[u8]) -> Result<Manifest, BenchError> {
    let runtime = Runtime::new(HostConfig::default(), Arc::new(MemoryKv::default()))
        .map_err(|e| fail("runtime")(e.to_string()))?;
    let loaded = runtime
        .load(path.display().to_string(), bytes.to_vec(), SignaturePolicy::Skip)
        .await
        .map_err(|e| fail("load")(e.to_string()))?;
    let info = loaded.pack.info();
    let capabilities: Vec<String> = info.capabilities.iter().map(|c| format!("{:?}", c.name())).collect();
    let toml = format!(
        "descriptor = {:?}\ncontract_version = {:?}\ncapabilities = [{}]\nauthor = \"envpack bench\"\n",
        info.descriptor,
        info.contract_version,
        capabilities.join(", ")
    );
    Manifest::from_toml(&toml).map_err(|e| fail("manifest from describe")(e.to_string()))
}
