//! Deploy keys: an environment may name Ed25519 public keys whose holders
//! alone may move its traffic (`traffic set|rollback`, `rollout
//! start|promote|abort`) or rebind it. Such a command is signed with the
//! holder's private key: the signature over the environment, the command
//! and its arguments goes into the audit row with the key's name, so the
//! log names who acted and anyone can check the signature against the key
//! later. A rollout's own steps, and `rollout pause|resume`, carry out what
//! an authorized command started and need no key.

use envpack_trust::{PrivateKey, PublicKey};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::StoreError;

/// A key an environment trusts to move its traffic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployKey {
    pub name: String,
    /// Hex sha256 of the public key's raw bytes.
    pub key_id: String,
    /// SPKI PEM.
    pub public_key: String,
}

impl DeployKey {
    pub fn from_pem(name: &str, pem: &str) -> Result<DeployKey, StoreError> {
        if name.trim().is_empty() {
            return Err(StoreError::Invalid("a deploy key needs a name (NAME=KEY.pub)".into()));
        }
        let public = PublicKey::from_pem(pem).map_err(|e| StoreError::Invalid(format!("deploy key {name}: {e}")))?;
        Ok(DeployKey {
            name: name.to_string(),
            key_id: public.key_id(),
            public_key: pem.trim().to_string(),
        })
    }
}

/// The text a deploy key signs for one command.
pub fn message(env: &str, command: &str, args: &Value) -> String {
    format!("envpack deploy authorization\n{env}\n{command}\n{args}")
}

/// Nothing if the environment trusts no deploy key; otherwise the signer's
/// signature of the command, as the audit row's `authorized_by`, or an
/// error saying which key is needed.
pub fn authorize(
    keys: &[DeployKey],
    signer: Option<&PrivateKey>,
    env: &str,
    command: &str,
    args: &Value,
) -> Result<Option<Value>, StoreError> {
    if keys.is_empty() {
        return Ok(None);
    }
    let names = keys.iter().map(|k| k.name.as_str()).collect::<Vec<_>>().join(", ");
    let refuse = |detail: String| StoreError::Unauthorized {
        env: env.to_string(),
        command: command.to_string(),
        detail,
    };
    let signer = signer.ok_or_else(|| {
        refuse(format!(
            "it trusts deploy keys [{names}]; sign the command with one: --deploy-key KEY (or ENVPACK_DEPLOY_KEY)"
        ))
    })?;
    let key_id = signer.public().key_id();
    let key = keys.iter().find(|k| k.key_id == key_id).ok_or_else(|| {
        refuse(format!(
            "the key given (id {}…) is not one of its deploy keys [{names}]",
            &key_id[..16]
        ))
    })?;
    let signature = signer.sign(message(env, command, args).as_bytes());
    Ok(Some(json!({
        "key": key.name,
        "key_id": key_id,
        "signature": hex::encode(signature),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_trusted_key_signs_and_its_signature_checks_out() {
        let holder = PrivateKey::generate().unwrap();
        let stranger = PrivateKey::generate().unwrap();
        let key = DeployKey::from_pem("ops", &holder.public().to_pem().unwrap()).unwrap();
        let args = json!({ "deployment": "web" });
        assert_eq!(authorize(&[], None, "prod", "traffic set", &args).unwrap(), None);
        let keys = [key];
        let none = authorize(&keys, None, "prod", "traffic set", &args).unwrap_err();
        assert!(none.to_string().contains("--deploy-key"), "{none}");
        let wrong = authorize(&keys, Some(&stranger), "prod", "traffic set", &args).unwrap_err();
        assert!(
            wrong.to_string().contains("not one of its deploy keys [ops]"),
            "{wrong}"
        );
        let signed = authorize(&keys, Some(&holder), "prod", "traffic set", &args)
            .unwrap()
            .unwrap();
        assert_eq!(signed["key"], "ops");
        let signature: [u8; 64] = hex::decode(signed["signature"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        let public = PublicKey::from_pem(&keys[0].public_key).unwrap();
        assert!(public.verifies(message("prod", "traffic set", &args).as_bytes(), &signature));
        assert!(!public.verifies(message("prod", "traffic rollback", &args).as_bytes(), &signature));
    }

    #[test]
    fn a_deploy_key_needs_a_name_and_a_public_key() {
        assert!(DeployKey::from_pem("", "x").is_err());
        let bad = DeployKey::from_pem("ops", "not a key").unwrap_err();
        assert!(bad.to_string().contains("deploy key ops"), "{bad}");
    }
}
