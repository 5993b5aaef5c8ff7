//! Grants: the scope an operator gives each capability of an environment,
//! deny by default — which commands `process` may spawn, which `host:port`
//! addresses `probe` may reach, which `scheme://host:port` origins outbound
//! HTTP (and artifact fetches) may call, which secret names `secrets` may
//! read. Granting a scope grants its capability.
//!
//! Commands are resolved when granted: an absolute path must name an
//! executable file; a bare name is looked up on `PATH` then and stored with
//! the path it resolved to, so a later change of `PATH` changes nothing.
//! The special grant [`WORK_DIR`] lets a pack run programs inside the
//! environment's own work directory (a revision's unpacked artifact), named
//! `./path` relative to it — the work directory is the pack's to write, so
//! this grant trusts the pack as much as granting a shell would.
//!
//! A probe scope is `host:port` or a port range `host:first-last` (a pack
//! that starts processes on ports it picks needs a range).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::capability::Capability;
use crate::command_grant::{ArgPattern, Shown, env_granted, match_args, parse_ports, split_grant, validate_env_grant};

/// The process grant for programs inside the environment's work directory.
pub const WORK_DIR: &str = "@work-dir";

/// One command `process` may spawn: what the operator wrote, where it is,
/// and the arguments it may take (see [`crate::command_grant`]). In a
/// document it may also be written as a string, `PROGRAM PATTERN...`,
/// resolved by [`Grants::resolve`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "CommandDoc")]
pub struct GrantedCommand {
    /// As granted: a bare name or an absolute path.
    pub name: String,
    /// The absolute path it resolved to when granted.
    pub path: PathBuf,
    /// The argument patterns; `None` for a grant recorded before grants
    /// had patterns, which allows no spawn until it is granted again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<ArgPattern>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum CommandDoc {
    Unresolved(String),
    Resolved {
        name: String,
        path: PathBuf,
        #[serde(default)]
        args: Option<Vec<ArgPattern>>,
    },
}

impl From<CommandDoc> for GrantedCommand {
    fn from(doc: CommandDoc) -> Self {
        match doc {
            // Resolved (and its patterns checked) by `Grants::resolve`.
            CommandDoc::Unresolved(text) => GrantedCommand {
                name: text,
                path: PathBuf::new(),
                args: None,
            },
            CommandDoc::Resolved { name, path, args } => GrantedCommand { name, path, args },
        }
    }
}

impl GrantedCommand {
    /// Whether `args` fit this grant's patterns; why not, when they do not.
    pub fn allows(&self, args: &[String]) -> Result<(), String> {
        match &self.args {
            Some(patterns) => match_args(patterns, args),
            None => Err(format!(
                "{} was granted before grants named their arguments; grant it again as --allow-run '{} PATTERN...'",
                self.name, self.name
            )),
        }
    }

    /// The grant as an operator writes it: `PROGRAM PATTERN...`.
    pub fn shown(&self) -> String {
        match &self.args {
            Some(patterns) if !patterns.is_empty() => format!("{} {}", self.name, Shown(patterns)),
            Some(_) => self.name.clone(),
            None => format!("{} (no patterns)", self.name),
        }
    }
}

/// Every scope of an environment.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grants {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub process: Vec<GrantedCommand>,
    /// `host:port` pairs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub probe: Vec<String>,
    /// `scheme://host:port` origins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http: Vec<String>,
    /// Secret names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
    /// Environment variables spawned programs may be given: names, or
    /// prefixes ending in `*` (never one refused by name).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    /// TCP ports spawned programs may bind or connect to: `PORT` or
    /// `FIRST-LAST`; none granted, none reachable.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<String>,
}

/// A scope that cannot be granted, named with the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    #[error("cannot grant command {0:?}: no executable file by that name on PATH")]
    CommandNotFound(String),
    #[error("cannot grant command {0:?}: it is not an executable file")]
    NotExecutable(String),
    #[error(
        "cannot grant probe address {0:?}: expected host:port or host:first-last (e.g. 127.0.0.1:8080, 127.0.0.1:20000-20999)"
    )]
    BadAddress(String),
    #[error(
        "cannot grant HTTP origin {0:?}: expected scheme://host:port with scheme http or https and nothing after the port"
    )]
    BadOrigin(String),
    #[error("cannot grant secret {0:?}: names are 1-128 characters of A-Z, a-z, 0-9, '_', '-', '.'")]
    BadSecretName(String),
    #[error("cannot grant command {grant:?}: {detail}")]
    BadPattern { grant: String, detail: String },
    /// An environment-variable or port grant that cannot be given (the
    /// message names it and why).
    #[error("{0}")]
    Refused(String),
}

impl Grants {
    /// Whether any scope of `capability` is granted.
    pub fn grants(&self, capability: Capability) -> bool {
        match capability {
            Capability::Process => !self.process.is_empty(),
            Capability::Probe => !self.probe.is_empty(),
            Capability::Http => !self.http.is_empty(),
            Capability::Secrets => !self.secrets.is_empty(),
            _ => false,
        }
    }

    /// The capabilities these scopes grant.
    pub fn capabilities(&self) -> Vec<Capability> {
        Capability::ALL.into_iter().filter(|c| self.grants(*c)).collect()
    }

    /// Only the scope of `capability`: what that capability's own part of
    /// a call keeps.
    pub fn only(&self, capability: Capability) -> Grants {
        let mut only = Grants::default();
        match capability {
            Capability::Process => {
                only.process = self.process.clone();
                only.env = self.env.clone();
                only.ports = self.ports.clone();
            }
            Capability::Probe => only.probe = self.probe.clone(),
            Capability::Http => only.http = self.http.clone(),
            Capability::Secrets => only.secrets = self.secrets.clone(),
            _ => {}
        }
        only
    }

    /// Adds the scopes of `other`, without duplicates.
    pub fn merge(&mut self, other: Grants) {
        fn add<T: PartialEq>(into: &mut Vec<T>, from: Vec<T>) {
            for item in from {
                if !into.contains(&item) {
                    into.push(item);
                }
            }
        }
        add(&mut self.process, other.process);
        add(&mut self.probe, other.probe);
        add(&mut self.http, other.http);
        add(&mut self.secrets, other.secrets);
        add(&mut self.env, other.env);
        add(&mut self.ports, other.ports);
    }

    /// Resolves commands written as strings (`PROGRAM PATTERN...`);
    /// checks every scope's form.
    pub fn resolve(mut self) -> Result<Self, GrantError> {
        for command in &mut self.process {
            if command.path.as_os_str().is_empty() && command.args.is_none() {
                *command = resolve_command(&command.name)?;
            }
        }
        self.validate()?;
        Ok(self)
    }

    /// Checks every scope's form (commands are checked where they were resolved).
    pub fn validate(&self) -> Result<(), GrantError> {
        for address in &self.probe {
            parse_probe_scope(address)?;
        }
        for origin in &self.http {
            parse_origin(origin)?;
        }
        for name in &self.secrets {
            validate_secret_name(name)?;
        }
        for name in &self.env {
            validate_env_grant(name).map_err(GrantError::Refused)?;
        }
        for ports in &self.ports {
            parse_ports(ports).map_err(GrantError::Refused)?;
        }
        Ok(())
    }

    /// The grants of the program a spawn request names (by name or by
    /// path); a program may be granted several times with other patterns.
    pub fn commands<'a>(&'a self, requested: &'a str) -> impl Iterator<Item = &'a GrantedCommand> + 'a {
        self.process
            .iter()
            .filter(|c| c.name != WORK_DIR)
            .filter(move |c| c.name == requested || c.path.as_os_str() == requested)
    }

    /// The `@work-dir` grants: programs inside the work directory (`./path`).
    pub fn work_dir_grants(&self) -> impl Iterator<Item = &GrantedCommand> {
        self.process.iter().filter(|c| c.name == WORK_DIR)
    }

    /// Whether programs inside the work directory (`./path`) may be spawned.
    pub fn work_dir_allowed(&self) -> bool {
        self.work_dir_grants().next().is_some()
    }

    /// Whether spawned programs may be given environment variable `name`.
    pub fn env_allowed(&self, name: &str) -> bool {
        env_granted(&self.env, name)
    }

    /// The TCP port ranges spawned programs may bind or connect to.
    pub fn port_ranges(&self) -> Vec<(u16, u16)> {
        self.ports.iter().filter_map(|p| parse_ports(p).ok()).collect()
    }

    /// Whether `host:port` may be probed.
    pub fn probe_allowed(&self, address: &str) -> bool {
        let Ok((host, port)) = parse_address(address) else {
            return false;
        };
        self.probe.iter().any(|scope| {
            parse_probe_scope(scope)
                .is_ok_and(|(h, first, last)| h.eq_ignore_ascii_case(host) && (first..=last).contains(&port))
        })
    }

    /// Whether `origin` (`scheme://host:port`) may be called.
    pub fn origin_allowed(&self, origin: &str) -> bool {
        self.http.iter().any(|o| o.eq_ignore_ascii_case(origin))
    }

    pub fn secret_allowed(&self, name: &str) -> bool {
        self.secrets.iter().any(|s| s == name)
    }
}

/// Resolves a command to grant, `PROGRAM PATTERN...`: the program is an
/// absolute path to an executable file, a bare name found on `PATH`, or
/// [`WORK_DIR`]; the patterns say which arguments it may take.
pub fn resolve_command(grant: &str) -> Result<GrantedCommand, GrantError> {
    let (name, args) = split_grant(grant).map_err(|detail| GrantError::BadPattern {
        grant: grant.to_string(),
        detail,
    })?;
    let name = name.as_str();
    if name == WORK_DIR {
        return Ok(GrantedCommand {
            name: name.to_string(),
            path: PathBuf::new(),
            args: Some(args),
        });
    }
    let path = if Path::new(name).is_absolute() {
        let path = PathBuf::from(name);
        if !is_executable(&path) {
            return Err(GrantError::NotExecutable(name.to_string()));
        }
        path
    } else if name.contains('/') || name.is_empty() {
        return Err(GrantError::NotExecutable(name.to_string()));
    } else {
        let path_var = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path_var)
            .map(|dir| dir.join(name))
            .find(|candidate| is_executable(candidate))
            .ok_or_else(|| GrantError::CommandNotFound(name.to_string()))?
    };
    Ok(GrantedCommand {
        name: name.to_string(),
        path,
        args: Some(args),
    })
}

pub fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// `host:port` with a non-empty host and a port number.
pub fn parse_address(address: &str) -> Result<(&str, u16), GrantError> {
    let bad = || GrantError::BadAddress(address.to_string());
    let (host, port) = address.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || port == 0 || host.contains(['/', ' ', '@']) {
        return Err(bad());
    }
    Ok((host, port))
}

/// A probe scope: `host:port` or `host:first-last`; (host, first, last).
pub fn parse_probe_scope(scope: &str) -> Result<(&str, u16, u16), GrantError> {
    let bad = || GrantError::BadAddress(scope.to_string());
    let (host, ports) = scope.rsplit_once(':').ok_or_else(bad)?;
    let Some((first, last)) = ports.split_once('-') else {
        let (host, port) = parse_address(scope)?;
        return Ok((host, port, port));
    };
    let (host, first) = parse_address(&scope[..host.len() + 1 + first.len()]).map_err(|_| bad())?;
    let last: u16 = last.parse().map_err(|_| bad())?;
    if last < first {
        return Err(bad());
    }
    Ok((host, first, last))
}

/// `scheme://host:port`, scheme http or https, nothing after the port.
pub fn parse_origin(origin: &str) -> Result<(&str, &str, u16), GrantError> {
    let bad = || GrantError::BadOrigin(origin.to_string());
    let (scheme, rest) = origin.split_once("://").ok_or_else(bad)?;
    if scheme != "http" && scheme != "https" {
        return Err(bad());
    }
    let (host, port) = parse_address(rest).map_err(|_| bad())?;
    Ok((scheme, host, port))
}

pub fn validate_secret_name(name: &str) -> Result<(), GrantError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(GrantError::BadSecretName(name.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_resolve_when_granted() {
        let sh = resolve_command("sh").unwrap();
        assert!(sh.path.is_absolute(), "{sh:?}");
        assert_eq!(resolve_command(sh.path.to_str().unwrap()).unwrap().path, sh.path);
        assert!(matches!(
            resolve_command("no-such-command-envpack"),
            Err(GrantError::CommandNotFound(_))
        ));
        assert!(matches!(
            resolve_command("/etc/passwd"),
            Err(GrantError::NotExecutable(_))
        ));
        assert!(matches!(resolve_command("bin/sh"), Err(GrantError::NotExecutable(_))));
        let grants = Grants {
            process: vec![sh.clone()],
            ..Grants::default()
        };
        assert!(grants.commands("sh").next().is_some());
        assert!(grants.commands(sh.path.to_str().unwrap()).next().is_some());
        // A grant carries its argument patterns; a bare program, none.
        assert_eq!(sh.allows(&[]), Ok(()));
        assert!(sh.allows(&["-c".into(), "id".into()]).is_err());
        let tar = resolve_command("tar -xzf {path} -C {path}").unwrap();
        assert_eq!(tar.shown(), "tar -xzf {path} -C {path}");
        assert!(matches!(
            resolve_command("tar {pth}"),
            Err(GrantError::BadPattern { .. })
        ));
        // A grant recorded before patterns existed allows nothing, and says why.
        let old: GrantedCommand = serde_json::from_str(r#"{"name":"tar","path":"/usr/bin/tar"}"#).unwrap();
        assert!(
            old.allows(&[]).unwrap_err().contains("grant it again"),
            "{:?}",
            old.allows(&[])
        );
        assert!(grants.commands("bash").next().is_none());
        let work_dir = Grants {
            process: vec![resolve_command(WORK_DIR).unwrap()],
            ..Grants::default()
        }
        .resolve()
        .unwrap();
        assert!(work_dir.work_dir_allowed() && work_dir.commands(WORK_DIR).next().is_none());
        assert!(!grants.work_dir_allowed());
    }

    #[test]
    fn scopes_are_checked_for_form() {
        assert_eq!(parse_address("127.0.0.1:8080").unwrap(), ("127.0.0.1", 8080));
        assert_eq!(parse_address("[::1]:80").unwrap(), ("::1", 80));
        for bad in ["127.0.0.1", ":80", "host:0", "host:99999", "a/b:80"] {
            assert!(parse_address(bad).is_err(), "{bad}");
        }
        assert!(parse_origin("http://127.0.0.1:9000").is_ok());
        for bad in ["127.0.0.1:9000", "ftp://h:1", "http://h:1/path", "http://h"] {
            assert!(parse_origin(bad).is_err(), "{bad}");
        }
        assert!(validate_secret_name("AWS_SECRET_ACCESS_KEY").is_ok());
        assert!(validate_secret_name("a b").is_err());
        let grants = Grants {
            probe: vec!["127.0.0.1:80".into()],
            secrets: vec!["TOKEN".into()],
            ..Grants::default()
        };
        assert_eq!(grants.capabilities(), vec![Capability::Probe, Capability::Secrets]);
        assert!(grants.probe_allowed("127.0.0.1:80"));
        assert!(!grants.probe_allowed("127.0.0.1:81"));
        assert_eq!(
            parse_probe_scope("127.0.0.1:20000-20009").unwrap(),
            ("127.0.0.1", 20000, 20009)
        );
        for bad in [
            "127.0.0.1:9-8",
            "127.0.0.1:-8",
            "127.0.0.1:1-",
            "127.0.0.1:0-5",
            "h:1-70000",
        ] {
            assert!(parse_probe_scope(bad).is_err(), "{bad}");
        }
        let ranged = Grants {
            probe: vec!["127.0.0.1:20000-20009".into()],
            ..Grants::default()
        };
        assert!(ranged.validate().is_ok());
        assert!(ranged.probe_allowed("127.0.0.1:20000") && ranged.probe_allowed("127.0.0.1:20009"));
        assert!(!ranged.probe_allowed("127.0.0.1:20010") && !ranged.probe_allowed("localhost:20001"));
        assert!(!ranged.probe_allowed("127.0.0.1:20000-20009"));
    }
}
