//! Pack descriptors (`namespace.name@semver`, e.g.
//! `envpack.deployer.local-process@1.0.0`) and descriptor requirements
//! (`envpack.deployer.local-process@^1`), with their grammar checked.

use std::fmt;
use std::str::FromStr;

use semver::{Version, VersionReq};

/// A grammar error, naming the offending text.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a valid {what}: {reason}")]
pub struct DescriptorError {
    pub what: &'static str,
    pub text: String,
    pub reason: String,
}

/// A pack's identity: a dotted name of at least two segments and a version.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Descriptor {
    pub name: String,
    pub version: Version,
}

/// What an environment asks for: a name and a semver requirement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    pub name: String,
    pub req: VersionReq,
}

fn error(what: &'static str, text: &str, reason: impl Into<String>) -> DescriptorError {
    DescriptorError {
        what,
        text: text.to_string(),
        reason: reason.into(),
    }
}

/// Segments are `[a-z0-9][a-z0-9-]*`, at least two, joined by dots.
fn check_name(what: &'static str, text: &str, name: &str) -> Result<(), DescriptorError> {
    let segments: Vec<&str> = name.split('.').collect();
    if segments.len() < 2 {
        return Err(error(what, text, "the name needs a namespace: `namespace.name`"));
    }
    for segment in segments {
        let mut chars = segment.chars();
        let first_ok = chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !first_ok || !rest_ok {
            return Err(error(
                what,
                text,
                format!("name segment {segment:?} must be lowercase letters, digits and '-', not starting with '-'"),
            ));
        }
    }
    Ok(())
}

fn split<'a>(what: &'static str, text: &'a str) -> Result<(&'a str, &'a str), DescriptorError> {
    text.split_once('@')
        .ok_or_else(|| error(what, text, "expected `namespace.name@version`"))
}

impl FromStr for Descriptor {
    type Err = DescriptorError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let what = "pack descriptor";
        let (name, version) = split(what, text)?;
        check_name(what, text, name)?;
        let version = Version::parse(version).map_err(|e| error(what, text, format!("bad version: {e}")))?;
        Ok(Descriptor {
            name: name.to_string(),
            version,
        })
    }
}

impl FromStr for Requirement {
    type Err = DescriptorError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let what = "descriptor requirement";
        let (name, req) = split(what, text)?;
        check_name(what, text, name)?;
        let req = VersionReq::parse(req).map_err(|e| error(what, text, format!("bad version requirement: {e}")))?;
        Ok(Requirement {
            name: name.to_string(),
            req,
        })
    }
}

impl fmt::Display for Descriptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.version)
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_descriptors() {
        let d: Descriptor = "envpack.deployer.local-process@1.2.3".parse().unwrap();
        assert_eq!(d.name, "envpack.deployer.local-process");
        assert_eq!(d.version, Version::new(1, 2, 3));
        assert_eq!(d.to_string(), "envpack.deployer.local-process@1.2.3");
    }

    #[test]
    fn refuses_bad_descriptors() {
        for bad in [
            "ledger@1.0.0",
            "envpack.Ledger@1.0.0",
            "envpack.-x@1.0.0",
            "envpack.ledger",
            "envpack.ledger@1",
            "a..b@1.0.0",
        ] {
            assert!(bad.parse::<Descriptor>().is_err(), "{bad}");
        }
    }

    #[test]
    fn requirements_match_versions() {
        let r: Requirement = "envpack.deployer.ledger@^1.2".parse().unwrap();
        assert!(r.req.matches(&Version::new(1, 4, 0)));
        assert!(!r.req.matches(&Version::new(2, 0, 0)));
        assert!("envpack.deployer.ledger@>=x".parse::<Requirement>().is_err());
    }
}
