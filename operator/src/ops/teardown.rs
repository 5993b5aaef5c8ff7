//! `host env remove ENV --teardown`: an environment torn down through its
//! pack, so that nothing the pack made for it is left: every deployment is
//! retired through the pack ([`super::retire`]: traffic withdrawn, every
//! revision that is not archived drained and archived, the deployment's own
//! resources released), then the environment is removed as `env remove`
//! does. Every step is recorded as it happens, so a teardown the pack stops
//! half-way leaves an accurate record, and running it again goes on from
//! there.

use serde_json::json;

use super::retire::{RetireCommand, Retirement, Teardown};
use crate::error::StoreError;
use crate::ops::Operator;
use crate::store;

const COMMAND: &str = "env teardown";

impl Operator<'_> {
    /// Tears `env` down through its pack, then removes it.
    pub async fn teardown_env(&mut self, env: &str) -> Result<Teardown, StoreError> {
        let _lock = self.lock(env)?;
        let mut args = json!({ "env": env, "teardown": true });
        if let Err(e) = self
            .may_remove(env, COMMAND, &mut args)
            .and_then(|()| self.no_rollout(env))
        {
            return self.failed(COMMAND, &args, e);
        }
        let bound = match self.bound(env).await {
            Ok(bound) => bound,
            Err(e) => return self.failed(COMMAND, &args, e),
        };
        let retire = RetireCommand {
            command: COMMAND,
            what: "the teardown",
            again: format!("host env remove {env} --teardown"),
            instead: format!("host env remove {env} --force"),
            authorized_by: args.get("authorized_by").cloned(),
        };
        self.commit(COMMAND, &args, |_| Ok(()))?;
        let mut done = Teardown::default();
        for deployment in store::deployments(&self.conn, env)? {
            self.retire_locked(
                &retire,
                env,
                Some(&bound),
                &deployment,
                &Retirement::ThroughPack,
                &mut done,
            )
            .await?;
        }
        self.remove_locked(env, false, &args)?;
        Ok(done)
    }

    /// A rollout moving one of the environment's deployments would fight
    /// the teardown: abort it first.
    pub(crate) fn no_rollout(&self, env: &str) -> Result<(), StoreError> {
        for deployment in store::deployments(&self.conn, env)? {
            self.no_rollout_on(env, &deployment)?;
        }
        Ok(())
    }
}
