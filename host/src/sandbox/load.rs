//! Loading: the one way a pack becomes runnable — read (size-capped) →
//! verify its signature as the caller's [`SignaturePolicy`] says → compile
//! through the compiled-code cache → link against the contract → `describe`
//! (with every capability refused) → check the contract version and the
//! manifest against `describe`. The operator, `pack`, `inspect`, `verify`,
//! `conformance` and the bench all load through here.
//!
//! An installed pack ([`Runtime::load_installed`]) starts from what the
//! registry checked (digest, signer, manifest: see `Registry::check`): its
//! compiled code comes from the cache by digest, mapped, with `describe`'s
//! answer from the entry's record, so that neither the pack file nor the
//! code is read; the file is read, and its digest checked, only when the
//! cache has no entry for it.

use std::path::{Path, PathBuf};
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
use crate::sandbox::cache::{CacheEvent, Cached, Described};
use crate::sandbox::call_state::CallState;
use crate::sandbox::classify::classify;
use crate::sandbox::compile;
use crate::sandbox::engine::HostConfig;
use crate::sandbox::runtime::Runtime;
use envpack_model::{Environment, EnvironmentDoc};
use envpack_trust::{Checked, InstalledPack, Keyring, Manifest, Registry, Verified, VerifyError};

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

/// Where a load starts from: pack bytes in memory, or an installed pack
/// the registry checked, whose file is read only if its compiled code is
/// not in the cache.
pub struct LoadSource {
    /// Names the pack in errors.
    pub name: String,
    /// Hex sha256 of the pack file, when known (the registry knows it).
    pub digest: Option<String>,
    pub bytes: Option<Vec<u8>>,
    /// The file to read on a cache miss when `bytes` is `None`; its
    /// digest must be `digest`.
    pub path: Option<PathBuf>,
    /// The pack file's size in bytes, when `bytes` is `None`.
    pub size: usize,
    /// The sealed manifest, when the caller read it already; else it is
    /// read from `bytes`.
    pub manifest: Option<Manifest>,
}

impl LoadSource {
    /// An installed pack the registry just checked: its file, recorded
    /// digest and size, and what the check read; with the signatures'
    /// verdict to hand to [`Runtime::load_installed`].
    pub fn installed(registry: &Registry, installed: &InstalledPack, checked: Checked) -> (Self, Verified) {
        let source = LoadSource {
            name: installed.descriptor.clone(),
            digest: Some(installed.digest.clone()),
            path: Some(registry.path(installed)),
            size: installed.size,
            manifest: Some(checked.manifest),
            bytes: checked.bytes,
        };
        (source, checked.verified)
    }

    fn of_bytes(name: String, bytes: Vec<u8>) -> Self {
        LoadSource {
            name,
            digest: None,
            size: bytes.len(),
            bytes: Some(bytes),
            path: None,
            manifest: None,
        }
    }
}

/// A compiled (or cached) component, before it is linked.
struct Compiled {
    component: Component,
    described: Option<Described>,
    mapping: Option<std::fs::File>,
    event: CacheEvent,
    digest: String,
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
        self.load_source(LoadSource::of_bytes(source, bytes)).await
    }

    /// Loads an installed pack the registry checked: its compiled code
    /// from the cache, `describe` from the cache's record, and its file
    /// read (and its digest checked) only on a cache miss.
    pub async fn load_installed(&self, source: LoadSource, verified: Verified) -> Result<Loaded, LoadError> {
        let pack = self.load_source(source).await?;
        Ok(Loaded {
            pack,
            signature: Signature::Trusted(verified),
        })
    }

    /// The one load path (see the module docs).
    pub async fn load_source(&self, source: LoadSource) -> Result<Pack, LoadError> {
        let span = tracing::info_span!("load", pack = %source.name, bytes = source.size);
        async move {
            let name = source.name.clone();
            let manifest = match (&source.manifest, &source.bytes) {
                (Some(manifest), _) => Some(manifest.clone()),
                (None, Some(bytes)) => Manifest::read(bytes).map_err(|e| LoadError::Manifest {
                    path: name.clone(),
                    source: e,
                })?,
                (None, None) => None,
            };
            let size = source.bytes.as_ref().map_or(source.size, Vec::len);
            // An installed pack's code mapped from the cache is a few system
            // calls: done here. Anything slower (hashing the file, reading
            // an entry whole, compiling) goes to a blocking thread, which a
            // one-shot command would otherwise start only for this.
            let mapped = match (&self.cache, &source.digest) {
                (Some(cache), Some(digest)) => cache.lookup_mapped(&self.engine, digest).map(|cached| Compiled {
                    component: cached.component,
                    described: cached.described,
                    mapping: cached.mapping,
                    event: CacheEvent::Hit,
                    digest: digest.clone(),
                }),
                _ => None,
            };
            let compiled = match mapped {
                Some(compiled) => compiled,
                None => {
                    let engine = self.engine.clone();
                    let cache = self.cache.clone();
                    let config = self.config.clone();
                    tokio::task::spawn_blocking(move || compile_or_map(&engine, cache.as_deref(), &config, source))
                        .await
                        .map_err(|e| LoadError::NotAComponent {
                            path: name.clone(),
                            detail: format!("the compiler thread failed: {e}"),
                        })??
                }
            };
            crate::timing::mark("cache");
            let contract = |e: wasmtime::Error| LoadError::Contract {
                path: name.clone(),
                detail: format!("{e:#}"),
            };
            let instance_pre = self
                .linker
                .get()?
                .instantiate_pre(&compiled.component)
                .map_err(contract)?;
            let pre = bindings::PackPre::new(instance_pre).map_err(contract)?;
            crate::timing::mark("link");
            let cached_info = compiled
                .described
                .as_ref()
                .filter(|d| d.peak_memory <= self.config.memory_budget)
                .map(|d| d.info.clone());
            let info = match cached_info {
                Some(info) => info,
                None => {
                    let described = self
                        .describe_measured(&pre)
                        .await
                        .map_err(|e| describe_error(&name, e))?;
                    if let Some(cache) = &self.cache {
                        let (cache, engine, digest) = (cache.clone(), self.engine.clone(), compiled.digest.clone());
                        let remembered = described.clone();
                        let _ = tokio::task::spawn_blocking(move || {
                            cache.remember_described(&engine, &digest, &remembered);
                        })
                        .await;
                    }
                    described.info
                }
            };
            crate::timing::mark("describe");
            if !accepts_contract(&info.contract_version) {
                return Err(LoadError::ContractVersion {
                    path: name,
                    found: info.contract_version,
                    expected: CONTRACT_VERSION,
                });
            }
            if let Some(manifest) = &manifest {
                manifest.agrees_with(&info).map_err(|e| LoadError::Manifest {
                    path: name.clone(),
                    source: e,
                })?;
            }
            let mut pack = Pack::new(
                pre,
                info,
                name,
                (compiled.digest, size),
                &self.engine,
                &compiled.component,
            );
            pack.manifest = manifest;
            pack.cache_event = compiled.event;
            pack.mapping = compiled.mapping;
            Ok(pack)
        }
        .instrument(span)
        .await
    }

    /// `describe`, with the most memory its instance held.
    async fn describe_measured(&self, pre: &bindings::PackPre<CallState>) -> Result<Described, VerbError> {
        let (info, state) = self.describe_call(pre).await;
        let peak_memory = state.budget.peak();
        Ok(Described {
            info: info?,
            peak_memory,
        })
    }

    /// `describe` with every capability refused, and the call's state.
    async fn describe_call(&self, pre: &bindings::PackPre<CallState>) -> (Result<PackInfo, VerbError>, CallState) {
        let empty = Environment::from_doc(EnvironmentDoc {
            id: "describe".into(),
            capabilities: Vec::new(),
            grants: Default::default(),
            settings: Default::default(),
            deployments: Vec::new(),
        });
        let empty = match empty {
            Ok(env) => Arc::new(env),
            Err(e) => {
                let state = self.new_state(Gate::describing(), self.kv.clone(), String::new());
                let error = VerbError::Provider {
                    verb: Verb::Describe,
                    cause: ProviderCause::Instantiate(e.to_string()),
                };
                return (Err(error), state);
            }
        };
        // describe must be pure: every capability call is refused as such.
        let state = self.new_state(Gate::describing(), self.kv.clone(), String::new());
        let (result, state) = self
            .in_instance(pre, state, &empty, async |guest, store, handle| {
                // describe takes no environment; the handle is lent and dropped unused.
                let _ = handle;
                guest.verbs.call_describe(store).await
            })
            .await;
        let info = result
            .map_err(|e| classify(Verb::Describe, &e, &state))
            .and_then(|info| {
                describe_within_caps(&info)?;
                Ok(crate::contract::convert::pack_info_from_wit(info))
            });
        (info, state)
    }
}

/// A failed `describe` at load, as a load error.
fn describe_error(source: &str, error: VerbError) -> LoadError {
    match error {
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
            path: source.to_string(),
            budget,
            detail: format!("its memories need {requested} bytes when an instance starts"),
        },
        e => LoadError::Describe {
            path: source.to_string(),
            source: e,
        },
    }
}

/// The compiled component of `source`: from the cache when it holds a
/// verified entry, else compiled (shape first, then where the config
/// says) from the bytes — read from the file, and checked against the
/// digest the caller vouched for, when the caller gave none.
fn compile_or_map(
    engine: &Engine,
    cache: Option<&crate::sandbox::cache::CompileCache>,
    config: &HostConfig,
    source: LoadSource,
) -> Result<Compiled, LoadError> {
    let name = source.name;
    let (bytes, digest) = match (source.bytes, source.digest) {
        (Some(bytes), Some(digest)) => (Some(bytes), digest),
        (Some(bytes), None) => {
            // The pack's digest, computed once: the cache key and `Pack::digest`.
            let digest = sha256_hex(&bytes);
            (Some(bytes), digest)
        }
        (None, Some(digest)) => (None, digest),
        (None, None) => {
            return Err(LoadError::NotAComponent {
                path: name,
                detail: "neither its bytes nor its digest were given".into(),
            });
        }
    };
    let reason = match cache.map(|cache| cache.lookup(engine, &digest)) {
        Some(Ok(Cached {
            component,
            described,
            mapping,
        })) => {
            return Ok(Compiled {
                component,
                described,
                mapping,
                event: CacheEvent::Hit,
                digest,
            });
        }
        Some(Err(reason)) => reason,
        None => None,
    };
    let bytes = match bytes {
        Some(bytes) => bytes,
        None => {
            let path = source.path.ok_or_else(|| LoadError::NotAComponent {
                path: name.clone(),
                detail: "its compiled code is not cached and no file was given".into(),
            })?;
            let bytes = read_pack_file(&path).map_err(|e| LoadError::Read {
                path: name.clone(),
                source: e,
            })?;
            if sha256_hex(&bytes) != digest {
                return Err(LoadError::Changed { path: name, digest });
            }
            bytes
        }
    };
    let compile::Output { component, serialized } =
        compile::compile(engine, &config.compiler, &config.pack_limits, &bytes)
            .map_err(|e| compile_error(&name, e, config.memory_budget))?;
    let event = match (cache, reason) {
        (None, _) => CacheEvent::Disabled,
        (Some(_), None) => CacheEvent::Miss,
        (Some(_), Some(reason)) => {
            tracing::warn!(pack = %name, %reason, "rebuilding compiled-code cache entry");
            CacheEvent::Rebuilt(reason)
        }
    };
    if let Some(cache) = cache {
        // Stored now, whatever `describe` says next; its answer is added
        // to the entry's record once known.
        cache.store(engine, &digest, &component, serialized.as_deref(), None);
    }
    Ok(Compiled {
        component,
        described: None,
        mapping: None,
        event,
        digest,
    })
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
