//! Provider names, derived from (environment, revision or deployment) so
//! that every verb can look its resources up before creating them: a verb
//! re-run after a crash between two API calls finds what the first run
//! made instead of making a second one. AWS's name rules are strict
//! (target groups: 32 characters of `[A-Za-z0-9-]`), ids are not (256
//! bytes, any unicode), so names carry a readable slug and a hash.

use sha2::{Digest, Sha256};

/// The hex sha256 of what identifies a resource.
pub fn key(env: &str, kind: &str, id: &str) -> String {
    let mut hash = Sha256::new();
    for part in [env, kind, id] {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part.as_bytes());
    }
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// `[A-Za-z0-9_-]` of `id`, others as `-`, at most `max` characters.
fn slug(id: &str, max: usize) -> String {
    id.chars()
        .take(max)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// The task definition family of a revision (one family per revision).
pub fn family(env: &str, revision: &str) -> String {
    format!(
        "envpack-{}-{}-{}",
        slug(env, 40),
        slug(revision, 60),
        &key(env, "revision", revision)[..16]
    )
}

/// The target group of a revision: `ep-` and 29 hex digits.
pub fn target_group(env: &str, revision: &str) -> String {
    format!("ep-{}", &key(env, "revision", revision)[..29])
}

/// The ECS service of a deployment.
pub fn service(env: &str, deployment: &str) -> String {
    format!(
        "envpack-{}-{}-{}",
        slug(env, 40),
        slug(deployment, 60),
        &key(env, "deployment", deployment)[..16]
    )
}

/// The task set's `externalId` (and the tag that finds a listener):
/// identifies the revision (deployment) within the account.
pub fn external_id(env: &str, revision: &str) -> String {
    key(env, "revision", revision)
}

/// A tag value as AWS allows it: the id itself when it only has letters,
/// digits and `+-=._:/@` and fits, else `sha256:<hex>` of it.
pub fn tag_value(id: &str) -> String {
    let plain = id.len() <= 256
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == ' ' || "+-=._:/@".contains(c));
    if plain {
        id.to_string()
    } else {
        let hex: String = Sha256::digest(id.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("sha256:{hex}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(name: &str, max: usize, extra: &str) -> bool {
        name.len() <= max && name.chars().all(|c| c.is_ascii_alphanumeric() || extra.contains(c))
    }

    #[test]
    fn names_keep_aws_rules_for_any_id() {
        let long = "é".repeat(128);
        for id in ["01JBW0000000000000000000A1", long.as_str(), "a/b c", ""] {
            let tg = target_group("prod", id);
            assert_eq!(tg.len(), 32, "{tg}");
            assert!(allowed(&tg, 32, "-") && !tg.ends_with('-'), "{tg}");
            assert!(allowed(&family("prod", id), 255, "-_"));
            assert!(allowed(&service("prod", id), 255, "-_"));
            assert!(allowed(&tag_value(id), 256, " +-=._:/@"));
        }
    }

    #[test]
    fn names_differ_by_environment_and_id() {
        assert_ne!(target_group("a", "r"), target_group("b", "r"));
        assert_ne!(target_group("a", "r1"), target_group("a", "r2"));
        // The length prefix keeps ("ab", "c") and ("a", "bc") apart.
        assert_ne!(key("ab", "revision", "c"), key("a", "revision", "bc"));
        assert_ne!(service("a", "x"), family("a", "x"));
    }
}
