//! The settings a pack declares (`[settings]` in its `pack.toml`) and the
//! rules that check an environment's settings against them, as data.
//!
//! A declared name is either fixed (`ports`) or a pattern: a fixed prefix
//! and one trailing placeholder (`listen.<deployment>`), which stands for
//! any id (see [`crate::validate_id`]). Each declaration has a type (one of
//! [`SettingType`]), whether it is required, an optional default (the pack
//! applies it; the host never stores it) and a line of documentation.
//!
//! [`Declared::check`] refuses a setting the pack does not declare (naming
//! the closest declared name), a value that does not fit its type, and a
//! required setting left out.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

/// The type of a setting's value, as `pack.toml` spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum SettingType {
    /// Any text, empty included.
    String,
    /// A whole number, optionally negative (`-5`, `42`).
    Integer,
    /// `true` or `false`.
    Boolean,
    /// A TCP port, 1 to 65535.
    Port,
    /// Two ports `FIRST-LAST`, FIRST at most LAST (`20000-20999`).
    PortRange,
    /// A non-negative whole number of milliseconds.
    DurationMs,
    /// An `http://` or `https://` URL with a host.
    Url,
}

impl SettingType {
    pub const ALL: [SettingType; 7] = [
        SettingType::String,
        SettingType::Integer,
        SettingType::Boolean,
        SettingType::Port,
        SettingType::PortRange,
        SettingType::DurationMs,
        SettingType::Url,
    ];

    /// The name `pack.toml` uses.
    pub fn name(self) -> &'static str {
        match self {
            SettingType::String => "string",
            SettingType::Integer => "integer",
            SettingType::Boolean => "boolean",
            SettingType::Port => "port",
            SettingType::PortRange => "port-range",
            SettingType::DurationMs => "duration-ms",
            SettingType::Url => "url",
        }
    }

    /// Checks `value` against this type; the error says what was expected.
    pub fn check(self, value: &str) -> Result<(), &'static str> {
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        let port = |s: &str| digits(s) && s.parse::<u16>().is_ok_and(|p| p > 0);
        let fits = match self {
            SettingType::String => true,
            SettingType::Integer => digits(value.strip_prefix('-').unwrap_or(value)) && value.parse::<i64>().is_ok(),
            SettingType::Boolean => value == "true" || value == "false",
            SettingType::Port => port(value),
            SettingType::PortRange => value
                .split_once('-')
                .is_some_and(|(a, b)| port(a) && port(b) && a.parse::<u16>().ok() <= b.parse::<u16>().ok()),
            SettingType::DurationMs => digits(value) && value.parse::<u64>().is_ok(),
            SettingType::Url => ["http://", "https://"].iter().any(|scheme| {
                value.strip_prefix(scheme).is_some_and(|rest| {
                    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
                    !host.is_empty() && !rest.chars().any(|c| c.is_whitespace() || c.is_control())
                })
            }),
        };
        if fits { Ok(()) } else { Err(self.expected()) }
    }

    /// What a value of this type looks like.
    pub fn expected(self) -> &'static str {
        match self {
            SettingType::String => "any text",
            SettingType::Integer => "a whole number, e.g. 42 or -1",
            SettingType::Boolean => "true or false",
            SettingType::Port => "a port from 1 to 65535, e.g. 8080",
            SettingType::PortRange => "two ports FIRST-LAST with FIRST at most LAST, e.g. 20000-20999",
            SettingType::DurationMs => "a whole number of milliseconds, e.g. 5000",
            SettingType::Url => "an http:// or https:// URL with a host, e.g. http://127.0.0.1:5000",
        }
    }
}

impl fmt::Display for SettingType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl From<SettingType> for String {
    fn from(kind: SettingType) -> String {
        kind.name().to_string()
    }
}

impl TryFrom<String> for SettingType {
    type Error = String;

    fn try_from(name: String) -> Result<Self, String> {
        if let Some(kind) = SettingType::ALL.into_iter().find(|k| k.name() == name) {
            return Ok(kind);
        }
        let names: Vec<&str> = SettingType::ALL.iter().map(|k| k.name()).collect();
        let hint = closest(&name, names.iter().copied())
            .map(|n| format!(" (did you mean {n:?}?)"))
            .unwrap_or_default();
        Err(format!(
            "unknown setting type {name:?}{hint}; the types are: {}",
            names.join(", ")
        ))
    }
}

/// One declared setting.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingSpec {
    #[serde(rename = "type")]
    pub kind: SettingType,
    #[serde(default)]
    pub required: bool,
    /// What the pack uses when the setting is not given (text; TOML
    /// integers and booleans are accepted and kept as their text).
    #[serde(default, deserialize_with = "scalar", skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub doc: String,
}

/// A default written as a TOML string, integer or boolean, as text.
fn scalar<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scalar {
        Text(String),
        Integer(i64),
        Boolean(bool),
    }
    Ok(Some(match Scalar::deserialize(deserializer)? {
        Scalar::Text(text) => text,
        Scalar::Integer(n) => n.to_string(),
        Scalar::Boolean(b) => b.to_string(),
    }))
}

/// A declaration or a setting that the rules refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    #[error("setting name {name:?} {reason}")]
    BadName { name: String, reason: String },
    #[error("setting {name:?}: its default {default:?} is not a {kind}: expected {expected}")]
    BadDefault {
        name: String,
        default: String,
        kind: SettingType,
        expected: &'static str,
    },
    #[error("setting {name:?} is required and has a default; a required setting has none (drop one of them)")]
    RequiredWithDefault { name: String },
    #[error(
        "setting pattern {name:?} cannot be required or have a default: it stands for any number of settings (drop `required`/`default`)"
    )]
    PatternRequiredOrDefault { name: String },
    #[error("unknown setting {key:?} for {pack}{hint}", hint = unknown_hint(suggestion.as_deref(), declared))]
    Unknown {
        key: String,
        pack: String,
        suggestion: Option<String>,
        declared: Vec<String>,
    },
    #[error("setting {key}={value:?} for {pack} is not a {kind}: expected {expected}")]
    IllTyped {
        key: String,
        value: String,
        pack: String,
        kind: SettingType,
        expected: &'static str,
    },
    #[error("{pack} requires {} (give {} with --setting KEY=VALUE)", quoted_list(names), if names.len() == 1 { "it" } else { "them" })]
    Missing { pack: String, names: Vec<String> },
}

fn unknown_hint(suggestion: Option<&str>, declared: &[String]) -> String {
    match suggestion {
        Some(name) => format!(" (did you mean {name:?}?)"),
        None if declared.is_empty() => "; it declares no settings".to_string(),
        None => format!("; it declares: {}", declared.join(", ")),
    }
}

fn quoted_list(names: &[String]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("setting {n:?}")).collect();
    quoted.join(", ")
}

/// A pack's declared settings, by name (fixed or pattern).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Declared(pub BTreeMap<String, SettingSpec>);

/// A declared name, taken apart.
enum Name<'a> {
    Fixed(&'a str),
    /// The fixed prefix before the placeholder.
    Pattern(&'a str),
}

/// Splits a declared name into fixed or pattern, or says what is wrong.
fn parse_name(name: &str) -> Result<Name<'_>, String> {
    let plain = |s: &str| s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if name.is_empty() {
        return Err("is empty".into());
    }
    let Some(open) = name.find('<') else {
        if name.contains('>') {
            return Err("has a `>` without `<`; a placeholder is written `<name>`".into());
        }
        return if plain(name) {
            Ok(Name::Fixed(name))
        } else {
            Err("may hold only letters, digits, `.`, `_` and `-`, and one trailing `<name>` placeholder".into())
        };
    };
    let (prefix, placeholder) = name.split_at(open);
    let inner = placeholder
        .strip_prefix('<')
        .and_then(|p| p.strip_suffix('>'))
        .filter(|inner| !inner.is_empty() && inner.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-".contains(&b)));
    if inner.is_none() {
        return Err(
            "is not a pattern: a pattern is a fixed prefix and exactly one placeholder at its end, e.g. `listen.<deployment>`"
                .into(),
        );
    }
    if prefix.is_empty() || !plain(prefix) {
        return Err("needs a fixed prefix of letters, digits, `.`, `_` or `-` before its `<name>` placeholder".into());
    }
    Ok(Name::Pattern(prefix))
}

impl Declared {
    /// Checks the declarations themselves: names, defaults, `required`.
    pub fn validate(&self) -> Result<(), SettingsError> {
        for (name, spec) in &self.0 {
            let parsed = parse_name(name).map_err(|reason| SettingsError::BadName {
                name: name.clone(),
                reason,
            })?;
            if let Name::Pattern(_) = parsed
                && (spec.required || spec.default.is_some())
            {
                return Err(SettingsError::PatternRequiredOrDefault { name: name.clone() });
            }
            if let Some(default) = &spec.default {
                if spec.required {
                    return Err(SettingsError::RequiredWithDefault { name: name.clone() });
                }
                spec.kind.check(default).map_err(|expected| SettingsError::BadDefault {
                    name: name.clone(),
                    default: default.clone(),
                    kind: spec.kind,
                    expected,
                })?;
            }
        }
        Ok(())
    }

    /// The declaration `key` falls under, with its declared name: a fixed
    /// name exactly, else the pattern with the longest prefix whose
    /// placeholder the rest of `key` fills with a valid id.
    pub fn lookup(&self, key: &str) -> Option<(&str, &SettingSpec)> {
        if let Some((name, spec)) = self.0.get_key_value(key)
            && matches!(parse_name(name), Ok(Name::Fixed(_)))
        {
            return Some((name.as_str(), spec));
        }
        self.0
            .iter()
            .filter_map(|(name, spec)| match parse_name(name) {
                Ok(Name::Pattern(prefix)) => key
                    .strip_prefix(prefix)
                    .filter(|rest| crate::validate_id("id", rest).is_ok() && !rest.contains(['<', '>']))
                    .map(|_| (prefix.len(), name.as_str(), spec)),
                _ => None,
            })
            .max_by_key(|(len, _, _)| *len)
            .map(|(_, name, spec)| (name, spec))
    }

    /// The declared name closest to `key` (a pattern suggested filled in
    /// with the rest of `key`), if one is close enough to be a typo.
    pub fn closest(&self, key: &str) -> Option<String> {
        let mut candidates = Vec::new();
        for name in self.0.keys() {
            match parse_name(name) {
                Ok(Name::Fixed(fixed)) => candidates.push(fixed.to_string()),
                Ok(Name::Pattern(prefix)) => {
                    // The split of `key` whose head is closest to the prefix.
                    let best = key
                        .char_indices()
                        .map(|(i, _)| i)
                        .skip(1)
                        .map(|i| (distance(&key[..i], prefix), i))
                        .min();
                    if let Some((_, i)) = best {
                        candidates.push(format!("{prefix}{}", &key[i..]));
                    }
                }
                Err(_) => {}
            }
        }
        closest(key, candidates.iter().map(String::as_str)).map(str::to_string)
    }

    /// Checks an environment's settings for `pack`: every key declared,
    /// every value of its type, every required setting given. Defaults are
    /// not filled in: the pack applies its own.
    pub fn check(&self, pack: &str, settings: &BTreeMap<String, String>) -> Result<(), SettingsError> {
        for (key, value) in settings {
            let Some((_, spec)) = self.lookup(key) else {
                return Err(SettingsError::Unknown {
                    key: key.clone(),
                    pack: pack.to_string(),
                    suggestion: self.closest(key),
                    declared: self.0.keys().cloned().collect(),
                });
            };
            spec.kind.check(value).map_err(|expected| SettingsError::IllTyped {
                key: key.clone(),
                value: value.clone(),
                pack: pack.to_string(),
                kind: spec.kind,
                expected,
            })?;
        }
        let missing: Vec<String> = self
            .0
            .iter()
            .filter(|(name, spec)| spec.required && !settings.contains_key(*name))
            .map(|(name, _)| name.clone())
            .collect();
        if !missing.is_empty() {
            return Err(SettingsError::Missing {
                pack: pack.to_string(),
                names: missing,
            });
        }
        Ok(())
    }
}

/// The candidate closest to `word` by edit distance (a swap of two
/// neighbours counts one), if it is close enough to be a typo: at most 2
/// edits, or a third of the word's length.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(2);
    candidates
        .into_iter()
        .map(|c| (distance(word, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Optimal-string-alignment distance: insertions, deletions,
/// substitutions and swaps of two neighbouring characters.
pub fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut rows = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in rows.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in rows[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (rows[i - 1][j] + 1)
                .min(rows[i][j - 1] + 1)
                .min(rows[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = d;
        }
    }
    rows[a.len()][b.len()]
}

#[cfg(test)]
mod tests;
