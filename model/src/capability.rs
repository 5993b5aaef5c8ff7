//! Capabilities: what a pack may ask of the host. A pack declares them in
//! `describe`, the operator grants them per environment, and a call is allowed
//! only when the capability is both declared and granted (denied by default).

use std::fmt;

use serde::{Deserialize, Serialize};

/// One capability of the contract (`envpack:deployer/types.capability`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Capability {
    Log,
    Kv,
    Clock,
    Process,
    Probe,
    Http,
    Secrets,
}

impl Capability {
    pub const ALL: [Capability; 7] = [
        Capability::Log,
        Capability::Kv,
        Capability::Clock,
        Capability::Process,
        Capability::Probe,
        Capability::Http,
        Capability::Secrets,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Capability::Log => "log",
            Capability::Kv => "kv",
            Capability::Clock => "clock",
            Capability::Process => "process",
            Capability::Probe => "probe",
            Capability::Http => "http",
            Capability::Secrets => "secrets",
        }
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a capability call was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("the pack called `{operation}` but does not declare capability `{capability}` in describe")]
    NotDeclared {
        capability: Capability,
        operation: &'static str,
    },
    #[error("the pack called `{operation}` but capability `{capability}` is not granted to this environment")]
    NotGranted {
        capability: Capability,
        operation: &'static str,
    },
    #[error("the pack called `{operation}` during describe, which the contract makes pure: no capability calls")]
    InDescribe { operation: &'static str },
}

/// The capabilities one call may use: declared by the pack and granted by the operator.
#[derive(Clone, Debug, Default)]
pub struct Gate {
    declared: Vec<Capability>,
    granted: Vec<Capability>,
    /// Record-only for undeclared capabilities (the conformance bench): the
    /// call goes through if granted, and is recorded as undeclared.
    audit: bool,
    /// The gate of `describe`, which may call nothing at all.
    describing: bool,
}

impl Gate {
    pub fn new(declared: &[Capability], granted: &[Capability]) -> Self {
        Gate {
            declared: declared.to_vec(),
            granted: granted.to_vec(),
            audit: false,
            describing: false,
        }
    }

    /// The gate of `describe`: every call is refused as such.
    pub fn describing() -> Self {
        Gate {
            describing: true,
            ..Gate::default()
        }
    }

    /// A gate that lets undeclared (but granted) calls through, for auditing.
    pub fn audit(mut self) -> Self {
        self.audit = true;
        self
    }

    /// Whether the pack declared `capability`.
    pub fn declared(&self, capability: Capability) -> bool {
        self.declared.contains(&capability)
    }

    /// Allows or refuses one call to `operation` of `capability`.
    pub fn check(&self, capability: Capability, operation: &'static str) -> Result<(), Denied> {
        let audited = self.audit && self.granted.contains(&capability);
        if self.describing {
            Err(Denied::InDescribe { operation })
        } else if !(self.declared.contains(&capability) || audited) {
            Err(Denied::NotDeclared { capability, operation })
        } else if !self.granted.contains(&capability) {
            Err(Denied::NotGranted { capability, operation })
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needs_both_declared_and_granted() {
        let gate = Gate::new(
            &[Capability::Kv, Capability::Log],
            &[Capability::Log, Capability::Clock],
        );
        assert!(gate.check(Capability::Log, "log.log").is_ok());
        assert!(matches!(
            gate.check(Capability::Kv, "kv.set"),
            Err(Denied::NotGranted { .. })
        ));
        assert!(matches!(
            gate.check(Capability::Clock, "clock.now-ms"),
            Err(Denied::NotDeclared { .. })
        ));
        assert!(Gate::default().check(Capability::Log, "log.log").is_err());
        let describing = Gate::describing().check(Capability::Log, "log.log").unwrap_err();
        assert!(describing.to_string().contains("during describe"), "{describing}");
    }
}
