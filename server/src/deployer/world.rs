//! What the deployer changes outside Flightdeck's own tables: environments' databases and their
//! sites. Each call is idempotent, so a deployer that resumes after a crash may repeat the step
//! it was in: migrations are tracked in the app's own table (applied once), and publishing makes
//! a site version from verified bytes and moves the pointer to it.

use crate::envdb::{EnvironmentDatabases, Migrate};
use crate::sites::SiteCache;
use anyhow::Context;
use domain::audit::{Actor, AuditRecord, Origin};
use domain::deployment::store::Locked;
use domain::environment::{self, EnvironmentId};
use domain::portal::Portal;
use domain::run::artifacts::ArtifactStore;
use domain::site;
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Default)]
pub struct World {
    /// Where each environment's API answers (`project/environment` → URL), for the runtime
    /// configuration; none means the site's own origin.
    pub api_bases: Arc<HashMap<String, String>>,
    /// The environments' databases (on Flightdeck's own PostgreSQL server, or URLs from the
    /// server's environment); none: migrate steps fail and say so.
    pub databases: Option<EnvironmentDatabases<ArtifactStore>>,
    /// This replica's sites; set by the instance that serves them.
    pub sites: Option<SiteCache>,
}

impl World {
    /// The environments' databases live next to Flightdeck's own (`admin_url`), their backups in
    /// `store`, restores staged under `scratch`.
    pub fn with_databases(
        mut self,
        admin_url: &str,
        store: ArtifactStore,
        scratch: std::path::PathBuf,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&scratch)
            .with_context(|| format!("cannot create {}", scratch.display()))?;
        self.databases =
            Some(EnvironmentDatabases::new(admin_url, store)?.with_scratch_dir(scratch));
        Ok(self)
    }

    pub fn api_base(&self, project: &str, environment: &str) -> Option<String> {
        self.api_bases
            .get(&format!("{project}/{environment}"))
            .cloned()
    }

    /// Backs up the environment's database (when `backup`) and applies the release's pending
    /// migrations from its `artifact`; a failure restores the backup and says which migration
    /// failed, with PostgreSQL's message and the line.
    pub async fn migrate(
        &self,
        portal: &Portal,
        deployment: &Locked,
        artifact: &str,
        backup: bool,
    ) -> anyhow::Result<serde_json::Value> {
        let databases = self
            .databases
            .as_ref()
            .context("this server has no PostgreSQL server for environment databases")?;
        let mut conn = portal.pool.acquire().await?;
        let env =
            environment::find(&mut conn, &deployment.project, &deployment.environment).await?;
        let target = env.database.clone().with_context(|| {
            format!(
                "{} declares no `database` in flightdeck.yml, so its migrations have nowhere to go",
                deployment.environment
            )
        })?;
        let key = sqlx::query_scalar!(
            "select storage_key from artifact where run_id = $1 and name = $2",
            deployment.release_run_id,
            artifact
        )
        .fetch_optional(&mut *conn)
        .await?
        .with_context(|| {
            format!(
                "release {} has no artifact `{artifact}`",
                deployment.version
            )
        })?;
        drop(conn);
        let db = databases.resolve(&target)?;
        databases.ensure_exists(&db).await?;
        let migrations = databases.read_release_migrations(&key).await?;
        let migrated = databases
            .migrate_with_backup(
                &portal.pool,
                Migrate {
                    environment: env.id,
                    deployment: Some(deployment.id.0),
                    db: &db,
                    migrations: &migrations,
                    backup,
                },
            )
            .await?;
        Ok(migrated.outcome())
    }

    /// Publishes the release's `artifacts` as the environment's site with `config` beside it
    /// (`config.json`): a site version from the artifacts' verified bytes, unpacked on this
    /// replica, then the pointer switched (every replica follows on NOTIFY).
    pub async fn publish(
        &self,
        portal: &Portal,
        deployment: &Locked,
        artifacts: &[String],
        config: serde_json::Value,
    ) -> anyhow::Result<serde_json::Value> {
        let sites = self
            .sites
            .as_ref()
            .context("this server does not serve environments' sites")?;
        let environment = EnvironmentId(deployment.environment_id);
        let mut tx = portal.pool.begin().await?;
        let version = site::prepare(
            &mut tx,
            environment,
            deployment.release_id,
            Some(deployment.id.0),
            artifacts,
            config,
        )
        .await?;
        tx.commit().await?;
        // The bytes are checked against their sha256 before anything goes live.
        sites.materialise(version).await?;
        let by = format!("deployment #{}", deployment.number);
        let mut tx = portal.pool.begin().await?;
        let previous = site::switch(&mut tx, environment, version, &by).await?;
        AuditRecord::new(Actor::system(), "site.switched", &Origin::default())
            .target(format!("{}/{}", deployment.project, deployment.environment))
            .details(json!({
                "release": deployment.version,
                "deployment": deployment.number,
                "changes": { "site_version": { "before": previous.map(|p| p.to_string()), "after": version.to_string() } },
                "artifacts": artifacts,
            }))
            .write(&mut *tx)
            .await?;
        tx.commit().await?;
        if !sites
            .wait_for(environment, version, Duration::from_secs(10))
            .await
        {
            tracing::warn!(%version, "this replica did not switch to the new site within 10 s");
        }
        Ok(json!({
            "site_version": version.to_string(),
            "previous": previous.map(|p| p.to_string()),
            "artifacts": artifacts,
        }))
    }
}
