//! Packs through an OCI registry: `host pack push PACK oci://REGISTRY/REPO:TAG`,
//! `host pack pull` and `host pack install oci://...`.
//!
//! A signed pack is stored as the ecosystem stores WebAssembly components
//! (wasm-pkg-tools, wasmCloud, Spin): an OCI image manifest whose config is
//! `application/vnd.wasm.config.v0+json` and whose one layer is the pack's
//! bytes, `application/wasm`. The layer's digest is therefore the pack's
//! sha256, the digest an environment pins. A pull checks the manifest's
//! digest against a `@sha256:` reference, the layer's against the manifest,
//! its size against the host's limit, and then the pack's signatures and the
//! signer's scope exactly as for a file; `install` adds conformance.
//!
//! Credentials never come from the command line: `ENVPACK_REGISTRY_USERNAME`
//! and `ENVPACK_REGISTRY_PASSWORD`, else the registry's entry in a Docker
//! `config.json` (`ENVPACK_REGISTRY_AUTH_FILE`, else `$DOCKER_CONFIG/config.json`,
//! else `~/.docker/config.json`), else anonymous. Loopback registries
//! (127.0.0.0/8, `localhost`, `[::1]`) are spoken to over plain HTTP, every
//! other one over HTTPS.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Once;

use base64::Engine;
use envpack_conformance::RunConfig;
use envpack_host::{MAX_PACK_BYTES, Runtime, StateDir};
use envpack_model::sha256_hex;
use envpack_trust::{Manifest, TrustStore, Verified};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::manifest::{OCI_IMAGE_MEDIA_TYPE, OciDescriptor, OciImageManifest};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use super::install::{Admission, AdmissionError, install};

/// The media types wasm-pkg-tools writes and reads.
pub const WASM_CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";
pub const WASM_LAYER_MEDIA_TYPE: &str = "application/wasm";

/// `oci://REGISTRY/REPOSITORY:TAG` or `oci://REGISTRY/REPOSITORY@sha256:HEX`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OciRef {
    pub registry: String,
    pub repository: String,
    pub tag: Option<String>,
    /// `sha256:<64 hex>` of the image manifest.
    pub digest: Option<String>,
}

impl OciRef {
    /// True for a pack argument that names a registry rather than a file.
    pub fn is_oci(text: &str) -> bool {
        text.starts_with("oci://")
    }

    pub fn parse(text: &str) -> Result<Self, DistributionError> {
        let bad = |reason: &str| DistributionError::Reference {
            reference: text.to_string(),
            reason: reason.to_string(),
        };
        let rest = text
            .strip_prefix("oci://")
            .ok_or_else(|| bad("it must start with oci://"))?;
        let (registry, path) = rest
            .split_once('/')
            .ok_or_else(|| bad("expected oci://REGISTRY/REPOSITORY:TAG or @sha256:DIGEST"))?;
        if registry.is_empty() {
            return Err(bad("the registry is missing"));
        }
        let (path, digest) = match path.split_once('@') {
            Some((path, digest)) => {
                let hex = digest
                    .strip_prefix("sha256:")
                    .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
                    .ok_or_else(|| bad("a digest is sha256: and 64 lowercase hex digits"))?;
                (path, Some(format!("sha256:{hex}")))
            }
            None => (path, None),
        };
        // A tag follows the last `:` after the last `/` (a port is in the registry part).
        let last = path.rsplit('/').next().unwrap_or(path);
        let (repository, tag) = match last.rsplit_once(':') {
            Some((_, tag)) => (&path[..path.len() - tag.len() - 1], Some(tag.to_string())),
            None => (path, None),
        };
        let repo_ok = !repository.is_empty()
            && repository.split('/').all(|part| {
                !part.is_empty()
                    && part
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
            });
        if !repo_ok {
            return Err(bad(
                "the repository is lowercase letters, digits, `.`, `_`, `-` and `/`",
            ));
        }
        if let Some(tag) = &tag {
            let tag_ok = !tag.is_empty()
                && tag.len() <= 128
                && tag.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
            if !tag_ok {
                return Err(bad("a tag is at most 128 letters, digits, `.`, `_` and `-`"));
            }
        }
        if tag.is_none() && digest.is_none() {
            return Err(bad("name a tag (:TAG) or a digest (@sha256:...)"));
        }
        Ok(OciRef {
            registry: registry.to_string(),
            repository: repository.to_string(),
            tag,
            digest,
        })
    }

    fn reference(&self) -> Reference {
        match (&self.digest, &self.tag) {
            (Some(digest), _) => Reference::with_digest(self.registry.clone(), self.repository.clone(), digest.clone()),
            (None, Some(tag)) => Reference::with_tag(self.registry.clone(), self.repository.clone(), tag.clone()),
            (None, None) => unreachable!("parse requires a tag or a digest"),
        }
    }

    /// The same repository, pinned to a manifest digest.
    pub fn pinned(&self, digest: &str) -> OciRef {
        OciRef {
            tag: None,
            digest: Some(digest.to_string()),
            ..self.clone()
        }
    }

    fn is_loopback(&self) -> bool {
        let host = match self.registry.strip_prefix('[') {
            Some(rest) => rest.split(']').next().unwrap_or(rest),
            None => self.registry.split(':').next().unwrap_or(&self.registry),
        };
        host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }
}

impl std::fmt::Display for OciRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "oci://{}/{}", self.registry, self.repository)?;
        match (&self.digest, &self.tag) {
            (Some(digest), _) => write!(f, "@{digest}"),
            (None, Some(tag)) => write!(f, ":{tag}"),
            (None, None) => Ok(()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DistributionError {
    #[error("{reference:?} is not a registry reference: {reason}")]
    Reference { reference: String, reason: String },
    #[error("cannot read the registry credentials in {}: {message}", path.display())]
    Credentials { path: PathBuf, message: String },
    #[error("cannot reach the registry {registry}: {message}")]
    Unreachable { registry: String, message: String },
    #[error("the registry {registry} refused the credentials (or needs some): {message}")]
    Unauthorized { registry: String, message: String },
    #[error("{reference} is not in the registry")]
    NotFound { reference: String },
    #[error("{reference} is not a pack: {reason}")]
    NotAPack { reference: String, reason: String },
    #[error("{reference}: the {what} the registry served has digest {actual}, not {expected}: it was changed")]
    DigestMismatch {
        reference: String,
        what: &'static str,
        expected: String,
        actual: String,
    },
    #[error("{reference}: the pack is {size} bytes, more than the host loads ({MAX_PACK_BYTES})")]
    TooLarge { reference: String, size: i64 },
    #[error("the registry {registry} failed: {message}")]
    Registry { registry: String, message: String },
    #[error("{0}: only sealed and signed packs are pushed (`host pack seal`, then `host sign`)")]
    NotSigned(String),
    #[error("{path} is not a pack: {message}")]
    BadPack { path: String, message: String },
}

impl DistributionError {
    /// A next step, where there is an obvious one.
    pub fn hint(&self) -> Option<String> {
        match self {
            DistributionError::Unreachable { .. } => {
                Some("check the registry's address and that it is running; nothing was installed".into())
            }
            DistributionError::Unauthorized { .. } => Some(
                "set ENVPACK_REGISTRY_USERNAME and ENVPACK_REGISTRY_PASSWORD, or ENVPACK_REGISTRY_AUTH_FILE \
                 (a Docker config.json)"
                    .into(),
            ),
            DistributionError::DigestMismatch { .. } => {
                Some("nothing was installed; tell the registry's operator, and pull by a digest you trust".into())
            }
            _ => None,
        }
    }
}

/// The credentials for `registry`, from the environment or a Docker config file.
pub fn credentials(registry: &str) -> Result<RegistryAuth, DistributionError> {
    let var = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
    if let (Some(user), Some(password)) = (var("ENVPACK_REGISTRY_USERNAME"), var("ENVPACK_REGISTRY_PASSWORD")) {
        return Ok(RegistryAuth::Basic(user, password));
    }
    let explicit = var("ENVPACK_REGISTRY_AUTH_FILE").map(PathBuf::from);
    let file = explicit.clone().or_else(|| {
        var("DOCKER_CONFIG")
            .map(|dir| Path::new(&dir).join("config.json"))
            .or_else(|| var("HOME").map(|home| Path::new(&home).join(".docker/config.json")))
    });
    let Some(path) = file else {
        return Ok(RegistryAuth::Anonymous);
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        // Only a file named on purpose must exist.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && explicit.is_none() => {
            return Ok(RegistryAuth::Anonymous);
        }
        Err(e) => {
            return Err(DistributionError::Credentials {
                path,
                message: e.to_string(),
            });
        }
    };
    from_docker_config(&text, registry).map_err(|message| DistributionError::Credentials { path, message })
}

fn from_docker_config(text: &str, registry: &str) -> Result<RegistryAuth, String> {
    let config: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let auths = &config["auths"];
    let entry = [
        registry.to_string(),
        format!("https://{registry}"),
        format!("http://{registry}"),
    ]
    .iter()
    .find_map(|key| auths.get(key))
    .or_else(|| {
        auths.as_object()?.iter().find_map(|(key, value)| {
            let host = key.trim_start_matches("https://").trim_start_matches("http://");
            (host.split('/').next() == Some(registry)).then_some(value)
        })
    });
    let Some(entry) = entry else {
        return Ok(RegistryAuth::Anonymous);
    };
    if let (Some(user), Some(password)) = (entry["username"].as_str(), entry["password"].as_str()) {
        return Ok(RegistryAuth::Basic(user.to_string(), password.to_string()));
    }
    let Some(auth) = entry["auth"].as_str() else {
        return Ok(RegistryAuth::Anonymous);
    };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(auth.trim())
        .map_err(|_| format!("the `auth` of {registry} is not base64"))?;
    let decoded = String::from_utf8(decoded).map_err(|_| format!("the `auth` of {registry} is not UTF-8"))?;
    let (user, password) = decoded
        .split_once(':')
        .ok_or_else(|| format!("the `auth` of {registry} is not USER:PASSWORD"))?;
    Ok(RegistryAuth::Basic(user.to_string(), password.to_string()))
}

fn client(target: &OciRef) -> Client {
    static PROVIDER: Once = Once::new();
    PROVIDER.call_once(|| {
        // Another part of the process may have installed one already: fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    let protocol = if target.is_loopback() {
        ClientProtocol::Http
    } else {
        ClientProtocol::Https
    };
    Client::new(ClientConfig {
        protocol,
        // A pack is one layer: uploaded whole.
        use_monolithic_push: true,
        ..ClientConfig::default()
    })
}

fn registry_error(target: &OciRef, what: &'static str, error: OciDistributionError) -> DistributionError {
    let registry = target.registry.clone();
    match error {
        OciDistributionError::RequestError(e) if e.is_connect() || e.is_timeout() => DistributionError::Unreachable {
            registry,
            message: chain(&e),
        },
        OciDistributionError::UnauthorizedError { url } => DistributionError::Unauthorized {
            registry,
            message: format!("401 from {url}"),
        },
        OciDistributionError::ServerError {
            code: 401 | 403, url, ..
        } => DistributionError::Unauthorized {
            registry,
            message: format!("refused at {url}"),
        },
        OciDistributionError::AuthenticationFailure(message) => DistributionError::Unauthorized { registry, message },
        OciDistributionError::ImageManifestNotFoundError(_) => DistributionError::NotFound {
            reference: target.to_string(),
        },
        OciDistributionError::RegistryError { envelope, url } => {
            let codes: Vec<String> = envelope.errors.iter().map(|e| format!("{:?}", e.code)).collect();
            let message = format!("{envelope} ({url})");
            if codes.iter().any(|c| c == "Unauthorized" || c == "Denied") {
                DistributionError::Unauthorized { registry, message }
            } else if codes.iter().any(|c| c.ends_with("Unknown") || c == "NotFound") {
                DistributionError::NotFound {
                    reference: target.to_string(),
                }
            } else {
                DistributionError::Registry { registry, message }
            }
        }
        OciDistributionError::DigestError(e) => {
            // "Invalid digest. Expected X, got Y" (the type's fields are not public).
            let text = e.to_string();
            let (expected, actual) = text
                .split_once("Expected ")
                .and_then(|(_, rest)| rest.split_once(", got "))
                .map_or((String::new(), text.clone()), |(x, y)| (x.to_string(), y.to_string()));
            DistributionError::DigestMismatch {
                reference: target.to_string(),
                what,
                expected,
                actual,
            }
        }
        other => DistributionError::Registry {
            registry,
            message: chain(&other),
        },
    }
}

/// An error with its sources, on one line (reqwest's own message omits the cause).
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// What a push stored.
#[derive(Debug)]
pub struct Pushed {
    /// `sha256:` of the image manifest: `oci://REGISTRY/REPO@<this>` pins it.
    pub manifest_digest: String,
    /// The pack's sha256 (hex), which is its layer's digest.
    pub pack_digest: String,
    pub descriptor: String,
    pub pinned: OciRef,
}

/// Pushes a sealed, signed pack to `target` (which names a tag).
#[tracing::instrument(name = "pack push", skip_all, fields(target = %target))]
pub async fn push(path: &Path, bytes: &[u8], target: &OciRef) -> Result<Pushed, DistributionError> {
    let bad = |message: String| DistributionError::BadPack {
        path: path.display().to_string(),
        message,
    };
    let manifest = Manifest::read(bytes)
        .map_err(|e| bad(e.to_string()))?
        .ok_or_else(|| DistributionError::NotSigned(path.display().to_string()))?;
    let signatures = envpack_trust::records(bytes).map_err(|e| bad(e.to_string()))?;
    if signatures.is_empty() {
        return Err(DistributionError::NotSigned(path.display().to_string()));
    }
    let (imports, exports) = envpack_trust::sections::component_world(bytes).map_err(|e| bad(e.to_string()))?;
    let pack_digest = format!("sha256:{}", sha256_hex(bytes));
    let config = serde_json::json!({
        "created": jiff::Timestamp::now().to_string(),
        "author": manifest.author,
        "architecture": "wasm",
        "os": "wasip2",
        "layerDigests": [pack_digest],
        "component": { "exports": exports, "imports": imports },
    });
    let config = serde_json::to_vec(&config).expect("a JSON value serializes");
    let config_digest = format!("sha256:{}", sha256_hex(&config));
    let version = manifest.descriptor.rsplit_once('@').map_or("", |(_, v)| v);
    let annotations = BTreeMap::from([
        (
            "org.opencontainers.image.title".to_string(),
            manifest.descriptor.clone(),
        ),
        ("org.opencontainers.image.version".to_string(), version.to_string()),
        (
            "org.opencontainers.image.description".to_string(),
            manifest.description.clone(),
        ),
        ("org.opencontainers.image.authors".to_string(), manifest.author.clone()),
        (
            "dev.envpack.contract-version".to_string(),
            manifest.contract_version.clone(),
        ),
    ]);
    let image = OciImageManifest {
        schema_version: 2,
        media_type: Some(OCI_IMAGE_MEDIA_TYPE.to_string()),
        config: OciDescriptor {
            media_type: WASM_CONFIG_MEDIA_TYPE.to_string(),
            digest: config_digest.clone(),
            size: config.len() as i64,
            ..OciDescriptor::default()
        },
        layers: vec![OciDescriptor {
            media_type: WASM_LAYER_MEDIA_TYPE.to_string(),
            digest: pack_digest.clone(),
            size: bytes.len() as i64,
            ..OciDescriptor::default()
        }],
        artifact_type: None,
        annotations: Some(annotations),
        subject: None,
    };
    let body = serde_json::to_vec(&image).expect("a manifest serializes");
    let manifest_digest = format!("sha256:{}", sha256_hex(&body));

    let client = client(target);
    let reference = target.reference();
    let auth = credentials(&target.registry)?;
    let fail = |e| registry_error(target, "blob", e);
    client
        .auth(&reference, &auth, oci_client::RegistryOperation::Push)
        .await
        .map_err(fail)?;
    client
        .push_blob(&reference, bytes.to_vec(), &pack_digest)
        .await
        .map_err(fail)?;
    client
        .push_blob(&reference, config, &config_digest)
        .await
        .map_err(fail)?;
    client
        .push_manifest_raw(&reference, body, http::HeaderValue::from_static(OCI_IMAGE_MEDIA_TYPE))
        .await
        .map_err(fail)?;
    Ok(Pushed {
        pinned: target.pinned(&manifest_digest),
        manifest_digest,
        pack_digest: pack_digest["sha256:".len()..].to_string(),
        descriptor: manifest.descriptor,
    })
}

/// A pack fetched from a registry, its digests checked.
#[derive(Debug)]
pub struct Pulled {
    pub bytes: Vec<u8>,
    pub manifest_digest: String,
    pub pinned: OciRef,
}

/// Fetches the pack `source` names and checks every digest on the way:
/// the manifest against a `@sha256:` reference, the layer against the
/// manifest. Signatures are the caller's next step ([`verify_pulled`], or
/// `install`, which verifies them as for a file).
#[tracing::instrument(name = "pack pull", skip_all, fields(source = %source))]
pub async fn pull(source: &OciRef) -> Result<Pulled, DistributionError> {
    let client = client(source);
    let reference = source.reference();
    let auth = credentials(&source.registry)?;
    let fail = |e| registry_error(source, "pack layer", e);
    let (body, _) = client
        .pull_manifest_raw(&reference, &auth, &[OCI_IMAGE_MEDIA_TYPE])
        .await
        .map_err(|e| registry_error(source, "manifest", e))?;
    let manifest_digest = format!("sha256:{}", sha256_hex(&body));
    if let Some(expected) = &source.digest
        && *expected != manifest_digest
    {
        return Err(DistributionError::DigestMismatch {
            reference: source.to_string(),
            what: "manifest",
            expected: expected.clone(),
            actual: manifest_digest,
        });
    }
    let not_a_pack = |reason: String| DistributionError::NotAPack {
        reference: source.to_string(),
        reason,
    };
    let image: OciImageManifest = serde_json::from_slice(&body)
        .map_err(|e| not_a_pack(format!("its manifest is not an OCI image manifest: {e}")))?;
    if image.config.media_type != WASM_CONFIG_MEDIA_TYPE {
        return Err(not_a_pack(format!(
            "its config is {:?}, not {WASM_CONFIG_MEDIA_TYPE}",
            image.config.media_type
        )));
    }
    let [layer] = image.layers.as_slice() else {
        return Err(not_a_pack(format!("it has {} layers, not one", image.layers.len())));
    };
    if layer.media_type != WASM_LAYER_MEDIA_TYPE {
        return Err(not_a_pack(format!(
            "its layer is {:?}, not {WASM_LAYER_MEDIA_TYPE}",
            layer.media_type
        )));
    }
    if layer.size < 0 || layer.size as u64 > MAX_PACK_BYTES {
        return Err(DistributionError::TooLarge {
            reference: source.to_string(),
            size: layer.size,
        });
    }
    let mut bytes = Vec::with_capacity(layer.size as usize);
    // Bounded: the registry cannot make the host hold more than the size it declared.
    let mut sink = tokio::io::BufWriter::new(Bounded {
        inner: &mut bytes,
        left: layer.size as u64,
    });
    let pulled = client.pull_blob(&reference, layer, &mut sink).await;
    drop(sink);
    match pulled {
        Ok(()) => {}
        Err(OciDistributionError::DigestError(_)) | Err(OciDistributionError::IoError(_)) => {
            return Err(DistributionError::DigestMismatch {
                reference: source.to_string(),
                what: "pack layer",
                expected: layer.digest.clone(),
                actual: format!("sha256:{}", sha256_hex(&bytes)),
            });
        }
        Err(e) => return Err(fail(e)),
    }
    let actual = format!("sha256:{}", sha256_hex(&bytes));
    if actual != layer.digest {
        return Err(DistributionError::DigestMismatch {
            reference: source.to_string(),
            what: "pack layer",
            expected: layer.digest.clone(),
            actual,
        });
    }
    Ok(Pulled {
        bytes,
        pinned: source.pinned(&manifest_digest),
        manifest_digest,
    })
}

/// Checks a pulled pack's signatures and its signer's scope against the
/// trust store, as every load of a file does.
pub fn verify_pulled(pulled: &Pulled, trust: &TrustStore) -> Result<Verified, envpack_trust::VerifyError> {
    envpack_trust::verify(&pulled.bytes, &envpack_trust::Keyring::of(trust), None)
}

/// `host pack install oci://...`: pulls the pack (digests checked), then
/// admits it exactly as a file: signature and scope required, sealed
/// manifest, conformance. Nothing is installed when any step fails.
pub async fn install_oci(
    runtime: &Runtime,
    judge: &Runtime,
    state: &StateDir,
    source: &OciRef,
    force: bool,
    config: &RunConfig,
) -> Result<(Pulled, Admission), OciInstallError> {
    let pulled = pull(source).await?;
    let dir = state.incoming();
    let io = |e: std::io::Error| OciInstallError::Io(format!("{}: {e}", dir.display()));
    std::fs::create_dir_all(&dir).map_err(io)?;
    let name = format!("{}.wasm", sha256_hex(&pulled.bytes));
    let path = dir.join(name);
    envpack_model::files::write_atomic(&path, &pulled.bytes, 0o600).map_err(io)?;
    let admitted = install(runtime, judge, state, &path, force, config).await;
    let _ = std::fs::remove_file(&path);
    Ok((pulled, admitted?))
}

/// Why `pack install oci://...` installed nothing.
#[derive(Debug, thiserror::Error)]
pub enum OciInstallError {
    #[error(transparent)]
    Pull(#[from] DistributionError),
    #[error(transparent)]
    Admission(#[from] AdmissionError),
    #[error("cannot keep the pulled pack: {0}")]
    Io(String),
}

/// A writer that refuses more than `left` bytes.
struct Bounded<'a> {
    inner: &'a mut Vec<u8>,
    left: u64,
}

impl tokio::io::AsyncWrite for Bounded<'_> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        if buf.len() as u64 > self.left {
            return std::task::Poll::Ready(Err(std::io::Error::other(
                "the registry sent more bytes than the manifest declares",
            )));
        }
        self.left -= buf.len() as u64;
        self.inner.extend_from_slice(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tags_digests_and_ports() {
        let r = OciRef::parse("oci://127.0.0.1:5000/packs/ledger:1.0.0").unwrap();
        assert_eq!(
            (
                r.registry.as_str(),
                r.repository.as_str(),
                r.tag.as_deref(),
                r.digest.as_deref()
            ),
            ("127.0.0.1:5000", "packs/ledger", Some("1.0.0"), None)
        );
        assert!(r.is_loopback());
        assert_eq!(r.to_string(), "oci://127.0.0.1:5000/packs/ledger:1.0.0");
        let hex = "ab".repeat(32);
        let r = OciRef::parse(&format!("oci://ghcr.io/acme/web@sha256:{hex}")).unwrap();
        assert_eq!(r.digest.as_deref(), Some(format!("sha256:{hex}").as_str()));
        assert_eq!(r.tag, None);
        assert!(!r.is_loopback());
        assert!(OciRef::parse("oci://localhost/x:1").unwrap().is_loopback());
        assert!(OciRef::parse("oci://[::1]:5000/x:1").unwrap().is_loopback());
        for bad in [
            "ghcr.io/acme/web:1",
            "oci://ghcr.io/acme/web",
            "oci://ghcr.io/Acme/web:1",
            "oci://ghcr.io/acme/web@sha256:abc",
            "oci:///web:1",
            "oci://ghcr.io/acme/web:bad tag",
        ] {
            assert!(OciRef::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn reads_docker_config_entries() {
        let auth = base64::engine::general_purpose::STANDARD.encode("alice:s3cret");
        let text = format!(r#"{{"auths": {{"https://reg.example:5000": {{"auth": "{auth}"}}}}}}"#);
        match from_docker_config(&text, "reg.example:5000").unwrap() {
            RegistryAuth::Basic(user, password) => assert_eq!((user.as_str(), password.as_str()), ("alice", "s3cret")),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            from_docker_config(&text, "other.example").unwrap(),
            RegistryAuth::Anonymous
        ));
        assert!(from_docker_config("{", "x").is_err());
    }
}
