//! What the deployer changes outside Flightdeck's own tables: environments' databases, their
//! sites, their flags. Each call is idempotent, so a deployer that resumes after a crash may
//! repeat the step it was in.

use domain::deployment::store::Locked;
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Clone, Default)]
pub struct World {
    /// Where each environment's API answers (`project/environment` → URL), for the runtime
    /// configuration; none means the site's own origin.
    pub api_bases: Arc<HashMap<String, String>>,
}

impl World {
    pub fn api_base(&self, project: &str, environment: &str) -> Option<String> {
        self.api_bases
            .get(&format!("{project}/{environment}"))
            .cloned()
    }

    /// Backs up the environment's database (when `backup`) and applies the release's pending
    /// migrations from its `artifact`; a failure restores the backup.
    pub async fn migrate(
        &self,
        deployment: &Locked,
        artifact: &str,
        backup: bool,
    ) -> anyhow::Result<serde_json::Value> {
        let _ = (deployment, artifact, backup);
        anyhow::bail!("database migrations are not wired into this build yet")
    }

    /// Publishes the release's `artifacts` as the environment's site with `config` beside it.
    pub async fn publish(
        &self,
        deployment: &Locked,
        artifacts: &[String],
        config: serde_json::Value,
    ) -> anyhow::Result<serde_json::Value> {
        let _ = (deployment, artifacts, config);
        anyhow::bail!("publishing sites is not wired into this build yet")
    }
}
