//! Loading: the one way a pack becomes runnable — read (size-capped) →
//! verify its signature as the caller's [`SignaturePolicy`] says → compile
//! through the compiled-code cache → link against the contract → `describe`
//! (with every capability refused) → check the contract version and the
//! manifest against `describe`. The operator, `pack`, `inspect`, `verify`,
//! `conformance` and the bench all load through here.

use std::path::Path;
use std::sync::Arc;

use tracing::Instrument;
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::contract::bindings;
use envpack_model::{CONTRACT_VERSION, Gate, PackInfo, accepts_contract, sha256_hex};

use crate::contract::pack::{Pack, check_magic, read_pack_file};
use envpack_model::{ProviderCause, Verb, VerbError};

use crate::error::CompileError;
use crate::error::LoadError;
use crate::sandbox::cache::{CacheEvent, CompileCache};
use crate::sandbox::call_state::CallState;
use crate::sandbox::classify::classify;
use crate::sandbox::compile;
use crate::sandbox::engine::HostConfig;
use crate::sandbox::runtime::Runtime;
use envpack_model::{Environment, EnvironmentDoc};
use envpack_trust::{Keyring, Manifest, Verified, VerifyError};

/// What a load does about the pack's signatures.
pub enum SignaturePolicy<'a> {
    /// Refuse the pack unless a key of the keyring signed it (with the
    /// detached signature, if one is given, instead of the embedded ones).
    Require {
        keyring: &'a Keyring<'a>,
        detached: Option<&'a [u8; 64]>,
    },
    /// Check and report, but load whatever the answer (inspect, the bench).
    Report(&'a Keyring<'a>),
    /// The caller verified these very bytes already (the registry does).
    Verified(Verified),
    /// Do not look (`host call`: the author's own build).
    Skip,
}

/// What the signature check said.
#[derive(Debug)]
pub enum Signature {
    Trusted(Verified),
    Refused(VerifyError),
    NotChecked,
}

/// A loaded pack with its signature verdict.
pub struct Loaded {
    pub pack: Pack,
    pub signature: Signature,
}

/// Compiles `bytes` (shape first, then where the config says), through
/// the cache when there is one.
fn compile(
    engine: &Engine,
    cache: Option<&CompileCache>,
    config: &HostConfig,
    bytes: &[u8],
    digest: &str,
) -> Result<(Component, CacheEvent), CompileError> {
    let fresh = || compile::compile(engine, &config.compiler, &config.pack_limits, bytes);
    match cache {
        Some(cache) => cache.load(engine, digest, fresh),
        None => Ok((fresh()?, CacheEvent::Disabled)),
    }
}

impl Runtime {
    /// Loads a pack file or bytes the one way (see the module docs).
    pub async fn load(&self, source: String, bytes: Vec<u8>, policy: SignaturePolicy<'_>) -> Result<Loaded, LoadError> {
        // Not WebAssembly at all is a plain answer, before any signature talk.
        check_magic(&source, &bytes)?;
        let signature = match policy {
            SignaturePolicy::Require { keyring, detached } => match envpack_trust::verify(&bytes, keyring, detached) {
                Ok(verified) => Signature::Trusted(verified),
                Err(source_err) => {
                    return Err(LoadError::Untrusted {
                        path: source,
                        source: source_err,
                    });
                }
            },
            SignaturePolicy::Report(keyring) => match envpack_trust::verify(&bytes, keyring, None) {
                Ok(verified) => Signature::Trusted(verified),
                Err(e) => Signature::Refused(e),
            },
            SignaturePolicy::Verified(verified) => Signature::Trusted(verified),
            SignaturePolicy::Skip => Signature::NotChecked,
        };
        let pack = self.load_pack(source, bytes).await?;
        Ok(Loaded { pack, signature })
    }

    /// Reads a pack file (size-capped) and loads it the one way.
    pub async fn load_file(&self, path: &Path, policy: SignaturePolicy<'_>) -> Result<Loaded, LoadError> {
        let source = path.display().to_string();
        let bytes = read_pack_file(path).map_err(|e| LoadError::Read {
            path: source.clone(),
            source: e,
        })?;
        self.load(source, bytes, policy).await
    }

    /// Reads, compiles, links and describes a pack file.
    pub async fn load_pack_file(&self, path: &Path) -> Result<Pack, LoadError> {
        let source = path.display().to_string();
        let bytes = read_pack_file(path).map_err(|source_err| LoadError::Read {
            path: source.clone(),
            source: source_err,
        })?;
        self.load_pack(source, bytes).await
    }

    /// Compiles, links and describes pack bytes; `source` names them in errors.
    pub async fn load_pack(&self, source: String, bytes: Vec<u8>) -> Result<Pack, LoadError> {
        let span = tracing::info_span!("load", pack = %source, bytes = bytes.len());
        async move {
            let manifest = Manifest::read(&bytes).map_err(|e| LoadError::Manifest {
                path: source.clone(),
                source: e,
            })?;
            let engine = self.engine.clone();
            let cache = self.cache.clone();
            let config = self.config.clone();
            let compiled = tokio::task::spawn_blocking(move || {
                // The pack's digest, computed once: the cache key and `Pack::digest`.
                let digest = sha256_hex(&bytes);
                let component = compile(&engine, cache.as_deref(), &config, &bytes, &digest);
                (component, (digest, bytes.len()))
            })
            .await
            .map_err(|e| LoadError::NotAComponent {
                path: source.clone(),
                detail: format!("the compiler thread failed: {e}"),
            })?;
            crate::timing::mark("cache");
            let (component, identity) = compiled;
            let (component, cache_event) =
                component.map_err(|e| compile_error(&source, e, self.config.memory_budget))?;
            let contract = |e: wasmtime::Error| LoadError::Contract {
                path: source.clone(),
                detail: format!("{e:#}"),
            };
            let instance_pre = self.linker.instantiate_pre(&component).map_err(contract)?;
            let pre = bindings::PackPre::new(instance_pre).map_err(contract)?;
            crate::timing::mark("link");
            let info = self.describe(&pre).await.map_err(|e| match e {
                // With on-demand allocation nothing refuses an oversized
                // initial memory before the first instance does.
                VerbError::Provider {
                    cause:
                        ProviderCause::MemoryBudget {
                            requested,
                            budget,
                            at_start: true,
                        },
                    ..
                } => LoadError::OverBudget {
                    path: source.clone(),
                    budget,
                    detail: format!("its memories need {requested} bytes when an instance starts"),
                },
                e => LoadError::Describe {
                    path: source.clone(),
                    source: e,
                },
            })?;
            crate::timing::mark("describe");
            if !accepts_contract(&info.contract_version) {
                return Err(LoadError::ContractVersion {
                    path: source,
                    found: info.contract_version,
                    expected: CONTRACT_VERSION,
                });
            }
            if let Some(manifest) = &manifest {
                manifest.agrees_with(&info).map_err(|e| LoadError::Manifest {
                    path: source.clone(),
                    source: e,
                })?;
            }
            let mut pack = Pack::new(pre, info, source, identity, &self.engine, &component);
            pack.manifest = manifest;
            pack.cache_event = cache_event;
            Ok(pack)
        }
        .instrument(span)
        .await
    }

    pub(crate) async fn describe(&self, pre: &bindings::PackPre<CallState>) -> Result<PackInfo, VerbError> {
        let empty = Arc::new(
            Environment::from_doc(EnvironmentDoc {
                id: "describe".into(),
                capabilities: Vec::new(),
                grants: Default::default(),
                settings: Default::default(),
                deployments: Vec::new(),
            })
            .map_err(|e| VerbError::Provider {
                verb: Verb::Describe,
                cause: ProviderCause::Instantiate(e.to_string()),
            })?,
        );
        // describe must be pure: every capability call is refused as such.
        let state = self.new_state(Gate::describing(), self.kv.clone(), String::new());
        let (result, state) = self
            .in_instance(pre, state, &empty, async |guest, store, handle| {
                // describe takes no environment; the handle is lent and dropped unused.
                let _ = handle;
                guest.call_describe(store).await
            })
            .await;
        let info = result.map_err(|e| classify(Verb::Describe, &e, &state))?;
        describe_within_caps(&info)?;
        Ok(crate::contract::convert::pack_info_from_wit(info))
    }
}

/// The most `describe` may return, field by field: what it says is shown
/// by `inspect` and kept with every installed pack.
const DESCRIBE_CAPS: [(&str, usize); 3] = [("descriptor", 256), ("contract version", 64), ("description", 4096)];

fn describe_within_caps(info: &bindings::envpack::deployer::types::PackInfo) -> Result<(), VerbError> {
    let sizes = [
        info.descriptor.len(),
        info.contract_version.len(),
        info.description.len(),
    ];
    for ((what, cap), size) in DESCRIBE_CAPS.into_iter().zip(sizes) {
        if size > cap {
            return Err(VerbError::Provider {
                verb: Verb::Describe,
                cause: ProviderCause::ResultTooLarge { what, size, cap },
            });
        }
    }
    // Seven capabilities exist; a longer list is padding.
    if info.capabilities.len() > 64 {
        return Err(VerbError::Provider {
            verb: Verb::Describe,
            cause: ProviderCause::ResultTooLarge {
                what: "capability list",
                size: info.capabilities.len(),
                cap: 64,
            },
        });
    }
    Ok(())
}

/// Why compiling failed: past a limit of the shape walk or the compile
/// worker says which; a pack whose memories cannot fit the memory budget
/// says so (the engine refuses it at compile time); anything else is not a
/// component this host can run.
fn compile_error(source: &str, error: CompileError, budget: usize) -> LoadError {
    let detail = match error {
        CompileError::Refused(detail) => detail,
        bounded => {
            return LoadError::Compile {
                path: source.to_string(),
                source: bounded,
            };
        }
    };
    if detail.contains("pooling allocator") || detail.contains("exceeds the limit") {
        LoadError::OverBudget {
            path: source.to_string(),
            budget,
            detail,
        }
    } else {
        LoadError::NotAComponent {
            path: source.to_string(),
            detail,
        }
    }
}

#[cfg(test)]
mod describe_tests {
    use super::describe_within_caps;
    use crate::contract::bindings::envpack::deployer::types::PackInfo;

    fn info(description: String) -> PackInfo {
        PackInfo {
            descriptor: "acme.deployer.x@1.0.0".into(),
            contract_version: "1.1.0".into(),
            capabilities: Vec::new(),
            description,
        }
    }

    #[test]
    fn describe_is_capped_field_by_field() {
        assert!(describe_within_caps(&info("one line".into())).is_ok());
        let error = describe_within_caps(&info("x".repeat(48 << 20)))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("description of 50331648 bytes, over the cap of 4096 bytes"),
            "{error}"
        );
        let mut long = info(String::new());
        long.descriptor = "a".repeat(257);
        assert!(describe_within_caps(&long).is_err());
    }
}
