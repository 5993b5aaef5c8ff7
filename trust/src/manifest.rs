//! The pack manifest: who made the pack and what it needs, embedded in the
//! `envpack-manifest` custom section. Authors write it as `pack.toml`; `seal`
//! embeds it, and the host checks that it agrees with `describe`.

use serde::{Deserialize, Serialize};

use crate::descriptor::{Descriptor, DescriptorError};
use crate::sections::{self, MANIFEST, Malformed, SIGNATURE};
use envpack_model::{CONTRACT_VERSION, Capability, Declared, PackInfo, accepts_contract};

/// What a pack says about itself, signed along with its code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// `namespace.name@semver`.
    pub descriptor: String,
    pub contract_version: String,
    pub capabilities: Vec<Capability>,
    pub author: String,
    #[serde(default)]
    pub description: String,
    /// What the pack expects each verb to need, in milliseconds
    /// (`warm-revision = 30000`); the operator caps it.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub deadlines: std::collections::BTreeMap<String, u64>,
    /// The environment settings the pack reads (`[settings]`), checked by
    /// `env create|bind`. `None`: the pack declares none, and settings are
    /// passed unchecked; left out of the serialized form then, so that a
    /// manifest without them seals (and signs) exactly as before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<Declared>,
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("the manifest is not valid TOML for a pack manifest: {0}")]
    Toml(String),
    #[error("the embedded manifest is corrupt: {0}")]
    Json(String),
    #[error(transparent)]
    Descriptor(#[from] DescriptorError),
    #[error("the manifest names contract version {0:?}; this host speaks {CONTRACT_VERSION}")]
    Contract(String),
    #[error("the manifest has no author")]
    NoAuthor,
    #[error("the manifest's [deadlines]: {0}")]
    Deadline(#[from] envpack_model::DeadlineError),
    #[error("the manifest's [settings]: {0}")]
    Settings(Box<envpack_model::SettingsError>),
    #[error("the pack carries {0} manifest sections; exactly one is allowed")]
    Several(usize),
    #[error(transparent)]
    Malformed(#[from] Malformed),
    #[error("the manifest and describe disagree on {field}: the manifest says {manifest}, describe says {describe}")]
    Mismatch {
        field: &'static str,
        manifest: String,
        describe: String,
    },
}

impl Manifest {
    /// Parses and validates `pack.toml`.
    pub fn from_toml(text: &str) -> Result<Self, ManifestError> {
        let mut manifest: Manifest = toml::from_str(text).map_err(|e| ManifestError::Toml(e.to_string()))?;
        manifest.normalize();
        manifest.validate()?;
        Ok(manifest)
    }

    fn normalize(&mut self) {
        self.capabilities.sort();
        self.capabilities.dedup();
    }

    pub fn validate(&self) -> Result<(), ManifestError> {
        self.descriptor.parse::<Descriptor>()?;
        if !accepts_contract(&self.contract_version) {
            return Err(ManifestError::Contract(self.contract_version.clone()));
        }
        if self.author.trim().is_empty() {
            return Err(ManifestError::NoAuthor);
        }
        envpack_model::DeadlinePolicy::validate_verbs(&self.deadlines)?;
        if let Some(settings) = &self.settings {
            settings.validate().map_err(|e| ManifestError::Settings(Box::new(e)))?;
        }
        Ok(())
    }

    /// The parsed descriptor (validated on construction).
    pub fn parsed_descriptor(&self) -> Result<Descriptor, DescriptorError> {
        self.descriptor.parse()
    }

    /// Reads the embedded manifest, `None` if the pack has none.
    pub fn read(pack: &[u8]) -> Result<Option<Self>, ManifestError> {
        let found = sections::custom(pack, MANIFEST)?;
        match found.as_slice() {
            [] => Ok(None),
            [data] => {
                let mut manifest: Manifest =
                    serde_json::from_slice(data).map_err(|e| ManifestError::Json(e.to_string()))?;
                manifest.normalize();
                manifest.validate()?;
                Ok(Some(manifest))
            }
            more => Err(ManifestError::Several(more.len())),
        }
    }

    /// The component with this manifest embedded, replacing any previous
    /// manifest and dropping signatures (they would no longer hold).
    pub fn seal(&self, component: &[u8]) -> Result<Vec<u8>, ManifestError> {
        let mut out = sections::strip(component, &[MANIFEST, SIGNATURE])?;
        let json = serde_json::to_vec(self).map_err(|e| ManifestError::Json(e.to_string()))?;
        sections::append(&mut out, MANIFEST, &json);
        Ok(out)
    }

    /// Checks that `describe` says what the manifest says.
    pub fn agrees_with(&self, info: &PackInfo) -> Result<(), ManifestError> {
        let mismatch = |field, manifest: String, describe: String| {
            Err(ManifestError::Mismatch {
                field,
                manifest,
                describe,
            })
        };
        if self.descriptor != info.descriptor {
            return mismatch("descriptor", self.descriptor.clone(), info.descriptor.clone());
        }
        if self.contract_version != info.contract_version {
            return mismatch(
                "contract version",
                self.contract_version.clone(),
                info.contract_version.clone(),
            );
        }
        if self.capabilities != info.capabilities {
            let names = |c: &[Capability]| c.iter().map(|c| c.name()).collect::<Vec<_>>().join(", ");
            return mismatch("capabilities", names(&self.capabilities), names(&info.capabilities));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOML: &str = r#"
descriptor = "envpack.deployer.ledger@1.0.0"
contract_version = "1.0.0"
capabilities = ["kv", "log"]
author = "envpack authors"
description = "reference"
"#;

    #[test]
    fn parses_and_seals() {
        let m = Manifest::from_toml(TOML).unwrap();
        assert_eq!(m.capabilities, vec![Capability::Log, Capability::Kv]);
        let sealed = m.seal(b"\0asm\x0d\0\x01\0").unwrap();
        assert_eq!(Manifest::read(&sealed).unwrap(), Some(m.clone()));
        let resealed = m.seal(&sealed).unwrap();
        assert_eq!(resealed, sealed, "sealing twice must not stack manifests");
    }

    #[test]
    fn refuses_bad_fields() {
        let bad = TOML.replace("envpack.deployer.ledger@1.0.0", "ledger");
        assert!(matches!(Manifest::from_toml(&bad), Err(ManifestError::Descriptor(_))));
        let bad = TOML.replace("contract_version = \"1.0.0\"", "contract_version = \"2.0.0\"");
        assert!(matches!(Manifest::from_toml(&bad), Err(ManifestError::Contract(_))));
        let bad = TOML.replace("author = \"envpack authors\"", "author = \" \"");
        assert!(matches!(Manifest::from_toml(&bad), Err(ManifestError::NoAuthor)));
        let bad = format!("{TOML}\nhomepage = \"x\"");
        assert!(matches!(Manifest::from_toml(&bad), Err(ManifestError::Toml(_))));
    }

    const SETTINGS: &str = r#"
[settings.ports]
type = "port-range"
default = "20000-20999"
doc = "TCP ports revisions listen on"

[settings.health-timeout-ms]
type = "duration-ms"
default = 20000

[settings."listen.<deployment>"]
type = "string"
doc = "host:port nginx listens on for that deployment"

[settings.region]
type = "string"
required = true
"#;

    #[test]
    fn settings_parse_and_survive_sealing() {
        let m = Manifest::from_toml(&format!("{TOML}{SETTINGS}")).unwrap();
        let declared = m.settings.as_ref().expect("declared");
        assert_eq!(declared.0.len(), 4);
        assert_eq!(declared.0["health-timeout-ms"].default.as_deref(), Some("20000"));
        assert!(declared.0["region"].required);
        let sealed = m.seal(b"\0asm\x0d\0\x01\0").unwrap();
        assert_eq!(Manifest::read(&sealed).unwrap(), Some(m));
    }

    #[test]
    fn manifests_without_settings_serialize_as_before() {
        let m = Manifest::from_toml(TOML).unwrap();
        assert_eq!(m.settings, None);
        let json = serde_json::to_string(&m).unwrap();
        assert!(!json.contains("settings"), "{json}");
        // An empty table declares that the pack takes no settings at all.
        let empty = Manifest::from_toml(&format!("{TOML}\n[settings]\n")).unwrap();
        assert_eq!(empty.settings, Some(Declared::default()));
    }

    #[test]
    fn refuses_bad_settings() {
        let bad_type = format!("{TOML}\n[settings.ports]\ntype = \"prot-range\"\n");
        let error = Manifest::from_toml(&bad_type).unwrap_err();
        assert!(matches!(error, ManifestError::Toml(_)), "{error}");
        assert!(error.to_string().contains("did you mean \"port-range\""), "{error}");
        let bad_default = format!("{TOML}\n[settings.ports]\ntype = \"port-range\"\ndefault = \"x\"\n");
        let error = Manifest::from_toml(&bad_default).unwrap_err();
        assert!(matches!(error, ManifestError::Settings(_)), "{error}");
        assert!(error.to_string().contains("is not a port-range"), "{error}");
        let bad_pattern = format!("{TOML}\n[settings.\"<a>.<b>\"]\ntype = \"string\"\n");
        assert!(matches!(
            Manifest::from_toml(&bad_pattern),
            Err(ManifestError::Settings(_))
        ));
        let unknown_field = format!("{TOML}\n[settings.ports]\ntype = \"port\"\nhelp = \"x\"\n");
        assert!(matches!(
            Manifest::from_toml(&unknown_field),
            Err(ManifestError::Toml(_))
        ));
    }
}
