//! A loaded pack: the compiled component, pre-linked once into an
//! `InstancePre` so that every verb call only instantiates, plus what the pack
//! says about itself (`describe`) and its WIT imports and exports.

use std::path::Path;

use envpack_model::PackInfo;
use envpack_trust::Manifest;
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::contract::bindings;
use crate::sandbox::cache::CacheEvent;
use crate::sandbox::call_state::CallState;

/// Largest pack file the host reads.
pub const MAX_PACK_BYTES: u64 = 64 << 20;
/// Refuses bytes that are not WebAssembly at all, before any signature or
/// compiler gets to say something less plain about them.
pub fn check_magic(source: &str, bytes: &[u8]) -> Result<(), crate::LoadError> {
    if bytes.starts_with(b"\0asm") {
        Ok(())
    } else {
        Err(crate::LoadError::NotAComponent {
            path: source.to_string(),
            detail: "the file does not start with the WebAssembly magic bytes (\\0asm)".into(),
        })
    }
}

/// A pack ready to run.
pub struct Pack {
    pub(crate) pre: bindings::PackPre<CallState>,
    pub(crate) info: PackInfo,
    source: String,
    digest: String,
    size: usize,
    imports: Vec<String>,
    exports: Vec<String>,
    pub(crate) manifest: Option<Manifest>,
    pub(crate) cache_event: CacheEvent,
    /// The cache entry the code runs from, open and read-leased (see
    /// `sandbox::lease`): declared last, so that it is closed only after
    /// the component above is dropped.
    pub(crate) mapping: Option<std::fs::File>,
}

impl Pack {
    pub(crate) fn new(
        pre: bindings::PackPre<CallState>,
        info: PackInfo,
        source: String,
        (digest, size): (String, usize),
        engine: &Engine,
        component: &Component,
    ) -> Self {
        let ty = component.component_type();
        Pack {
            pre,
            info,
            source,
            digest,
            size,
            imports: ty.imports(engine).map(|(name, _)| name.to_string()).collect(),
            exports: ty.exports(engine).map(|(name, _)| name.to_string()).collect(),
            manifest: None,
            cache_event: CacheEvent::Disabled,
            mapping: None,
        }
    }

    pub fn info(&self) -> &PackInfo {
        &self.info
    }

    /// The pack's private kv namespace in environment `env_id`: one per
    /// (pack name, environment), so upgrades keep their state.
    /// The pack's state namespace in `env_id`: named by its sealed
    /// manifest (what its signature covers and a scoped key vouches for),
    /// not by what the code says of itself in `describe`.
    pub fn kv_namespace(&self, env_id: &str) -> String {
        let name = match &self.manifest {
            Some(manifest) => manifest.descriptor.split('@').next().unwrap_or_default(),
            None => self.info.name(),
        };
        format!("{name}/{env_id}")
    }

    /// Where the pack was loaded from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Hex sha256 of the pack file.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    pub fn size(&self) -> usize {
        self.size
    }

    /// The component's WIT imports (instance names, such as `envpack:deployer/kv@1.0.0`).
    pub fn imports(&self) -> &[String] {
        &self.imports
    }

    pub fn exports(&self) -> &[String] {
        &self.exports
    }

    /// The contract version the component was built against, read from the
    /// version of the `envpack:deployer/deployer` interface it exports
    /// (what `describe`'s `contract-version` must say).
    pub fn built_against(&self) -> Option<&str> {
        self.exports
            .iter()
            .find_map(|name| name.strip_prefix("envpack:deployer/deployer@"))
    }

    /// The embedded manifest, if the pack is sealed (it then agrees with `describe`).
    pub fn manifest(&self) -> Option<&Manifest> {
        self.manifest.as_ref()
    }

    /// Whether this load compiled the pack or took it from the cache.
    pub fn cache_event(&self) -> &CacheEvent {
        &self.cache_event
    }

    /// Whether its code runs mapped from the cache entry's file (under a
    /// read lease) rather than from a copy in memory.
    pub fn is_mapped(&self) -> bool {
        self.mapping.is_some()
    }
}

/// Reads a pack file, refusing anything over [`MAX_PACK_BYTES`].
pub fn read_pack_file(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let file = std::fs::File::open(path)?;
    let too_large = || std::io::Error::other(format!("the file is larger than {MAX_PACK_BYTES} bytes"));
    // Refused from its size before a byte is read; the bounded read below
    // still holds for a file that grows, or a pipe.
    if file.metadata()?.len() > MAX_PACK_BYTES {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    file.take(MAX_PACK_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_PACK_BYTES {
        return Err(too_large());
    }
    Ok(bytes)
}
