//! `host revision endpoint`: where one revision is reached on its own, as
//! its pack says through contract 1.2's optional `endpoints` export; what
//! an HTTP gate aimed at the canary (`http={{canary}}/path`) asks before
//! each of its requests. Read-only: what the pack writes to its kv while
//! answering is not kept.

use envpack_model::{Outcome, Request};

use crate::error::StoreError;
use crate::ops::Operator;

/// The export a pack says where its revisions are reached through.
const ENDPOINTS: &str = "envpack:deployer/endpoints@";

impl Operator<'_> {
    /// The revision's own base URL, or `None` when it has none now.
    /// Refused when the environment's pack does not export `endpoints`.
    pub async fn revision_endpoint(&mut self, env: &str, revision: &str) -> Result<Option<String>, StoreError> {
        // An id the environment does not have is the operator's mistake (exit 2), not the pack's.
        crate::store::require_env(&self.conn, env)?;
        crate::store::revision(&self.conn, env, revision)?;
        match self
            .read_only_verb(env, &Request::Endpoint(revision.to_string()))
            .await?
        {
            (Outcome::Endpoint { supported: false, .. }, binding) => Err(no_endpoints(&binding.descriptor)),
            (Outcome::Endpoint { url, .. }, _) => Ok(url),
            (other, _) => Err(StoreError::Invalid(format!("revision-endpoint answered {other:?}"))),
        }
    }

    /// Refuses, naming the pack, when `env`'s pack cannot say where a
    /// revision is reached.
    pub(crate) async fn require_endpoints(&mut self, env: &str) -> Result<(), StoreError> {
        let bound = self.bound(env).await?;
        if bound.pack.exports().iter().any(|e| e.starts_with(ENDPOINTS)) {
            Ok(())
        } else {
            Err(no_endpoints(&bound.binding.descriptor))
        }
    }
}

fn no_endpoints(descriptor: &str) -> StoreError {
    StoreError::Invalid(format!(
        "{descriptor} does not say where a revision is reached on its own: it exports no `endpoints` \
         (contract 1.2, world pack-with-endpoints); aim the gate at a fixed URL instead"
    ))
}
