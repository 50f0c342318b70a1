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
use domain::site::{self, SiteVersionId};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Default)]
pub struct World {
    /// Variables every deployment job gets (`{project}` and `{environment}` replaced).
    pub deploy_env: Arc<Vec<(String, String)>>,
    /// Environments' APIs listen on this machine at this port plus the environment's position.
    pub port_base: Option<u16>,
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

    /// The port of an environment's API on this machine (position counts from 0).
    pub fn api_port(&self, position: i32) -> Option<u16> {
        let base = self.port_base?;
        base.checked_add(u16::try_from(position + 1).ok()?)
    }

    /// Where the environment's API answers, for its runtime configuration; none means the
    /// site's own origin.
    pub fn api_base(&self, position: i32) -> Option<String> {
        self.api_port(position)
            .map(|port| format!("http://127.0.0.1:{port}/"))
    }

    /// What a deployment's jobs get besides the release and the site: the configured variables,
    /// the API's port, and the environment database's URL — made first on Flightdeck's own
    /// server when it does not exist yet (an environment that migrates only in a later stage
    /// still starts its API on it).
    pub async fn job_env(
        &self,
        portal: &Portal,
        deployment: &Locked,
    ) -> anyhow::Result<Vec<(String, String)>> {
        let mut env: Vec<(String, String)> = self
            .deploy_env
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.replace("{project}", &deployment.project)
                        .replace("{environment}", &deployment.environment),
                )
            })
            .collect();
        let mut conn = portal.pool.acquire().await?;
        let position = environment_position(&mut conn, deployment).await?;
        if let Some(port) = self.api_port(position) {
            env.push(("PORT".into(), port.to_string()));
        }
        let found =
            environment::find(&mut conn, &deployment.project, &deployment.environment).await?;
        if let (Some(target), Some(databases)) = (found.database, &self.databases) {
            let db = databases.resolve(&target)?;
            // One on another server (`url_env`) is its operator's to make, and the server may
            // not even reach it: only the runners' jobs must.
            if matches!(target, domain::definition::DatabaseTarget::Name(_)) {
                databases.ensure_exists(&db).await?;
            }
            env.push(("DATABASE_URL".into(), db.url.expose().to_string()));
        }
        Ok(env)
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
        self.sites
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
        let mut switched = self.switch_site(portal, deployment, version).await?;
        switched["artifacts"] = json!(artifacts);
        Ok(switched)
    }

    /// Points the environment at site `version` (with its config.json): its bytes are checked
    /// against their sha256 on this replica first, then the pointer moves with its audit entry
    /// in one transaction, and every replica follows on NOTIFY. Idempotent: switching to what
    /// is served already moves nothing.
    pub async fn switch_site(
        &self,
        portal: &Portal,
        deployment: &Locked,
        version: SiteVersionId,
    ) -> anyhow::Result<serde_json::Value> {
        let sites = self
            .sites
            .as_ref()
            .context("this server does not serve environments' sites")?;
        let environment = EnvironmentId(deployment.environment_id);
        sites.materialise(version).await?;
        let by = format!("deployment #{}", deployment.number);
        let mut tx = portal.pool.begin().await?;
        let previous = site::switch(&mut tx, environment, version, &by).await?;
        if previous != Some(version) {
            AuditRecord::new(Actor::system(), "site.switched", &Origin::default())
                .target(format!("{}/{}", deployment.project, deployment.environment))
                .details(json!({
                    "release": deployment.version,
                    "deployment": deployment.number,
                    "changes": { "site_version": { "before": previous.map(|p| p.to_string()), "after": version.to_string() } },
                }))
                .write(&mut *tx)
                .await?;
        }
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
            "summary": format!("{} serves {}", deployment.environment, deployment.version),
        }))
    }
}

impl World {
    /// The migrations of the run's `artifact` (a `db-schema`); none when there is no artifact.
    async fn release_migrations(
        &self,
        portal: &Portal,
        databases: &EnvironmentDatabases<ArtifactStore>,
        release_id: uuid::Uuid,
        artifact: Option<&str>,
    ) -> anyhow::Result<Vec<domain::envdb::Migration>> {
        let Some(artifact) = artifact else {
            return Ok(Vec::new());
        };
        let key = sqlx::query_scalar!(
            "select a.storage_key from artifact a join release r on r.run_id = a.run_id
             where r.release_id = $1 and a.name = $2",
            release_id,
            artifact
        )
        .fetch_optional(&portal.pool)
        .await?;
        match key {
            Some(key) => Ok(databases.read_release_migrations(&key).await?),
            None => Ok(Vec::new()),
        }
    }

    /// What [`World::roll_back_database`] would do for `plan` now, in words, with what was
    /// written since the deploy (changes nothing).
    pub async fn preview_database(
        &self,
        portal: &Portal,
        env: &environment::Environment,
        plan: &domain::deployment::rollback::RollbackPlan,
    ) -> anyhow::Result<String> {
        let step = &plan.database;
        let Some(target) = env.database.clone() else {
            return Ok("nothing: the environment declares no database".into());
        };
        let databases = self
            .databases
            .as_ref()
            .context("this server has no PostgreSQL server for environment databases")?;
        let mut conn = portal.pool.acquire().await?;
        let backup = match step.backup {
            Some(id) => domain::envdb::backup::find(&mut conn, domain::envdb::BackupId(id)).await?,
            None => None,
        };
        let releases = sqlx::query!(
            "select (select release_id from release where project_id = e.project_id and version = $2) as from_release,
                    (select release_id from release where project_id = e.project_id and version = $3) as to_release
             from environment e where e.environment_id = $1",
            env.id.0,
            plan.from_version,
            plan.to_version
        )
        .fetch_one(&mut *conn)
        .await?;
        drop(conn);
        let (Some(from), Some(to)) = (releases.from_release, releases.to_release) else {
            anyhow::bail!("the releases of the rollback are gone");
        };
        let current = self
            .release_migrations(portal, databases, from, step.artifact.as_deref())
            .await?;
        let wanted = self
            .release_migrations(portal, databases, to, step.target_artifact.as_deref())
            .await?;
        let db = databases.resolve(&target)?;
        let preview = databases
            .plan_schema_rollback(crate::envdb::PlanSchemaRollback {
                db: &db,
                target: &wanted,
                current: &current,
                backup: backup.as_ref(),
                restore_database: step.restore,
            })
            .await?;
        Ok(preview.describe())
    }

    /// A rollback's database step: by `rollback.restore_database`, nothing (no migration came
    /// since the target release), or a safety dump then the down scripts or the backup taken
    /// before the deploy (`crate::envdb::rollback`). Idempotent: a retry reuses the safety dump
    /// and finds nothing left to undo.
    pub async fn roll_back_database(
        &self,
        portal: &Portal,
        rollback: &Locked,
        step: &domain::deployment::rollback::DatabaseStep,
    ) -> anyhow::Result<serde_json::Value> {
        let mut conn = portal.pool.acquire().await?;
        let env = environment::find(&mut conn, &rollback.project, &rollback.environment).await?;
        let Some(target) = env.database.clone() else {
            return Ok(json!({ "summary": "nothing: the environment declares no database" }));
        };
        let databases = self
            .databases
            .as_ref()
            .context("this server has no PostgreSQL server for environment databases")?;
        let backup = match step.backup {
            Some(id) => domain::envdb::backup::find(&mut conn, domain::envdb::BackupId(id)).await?,
            None => None,
        };
        drop(conn);
        let from_release = rollback
            .from_release_id
            .context("a rollback records the release it rolls back")?;
        let current = self
            .release_migrations(portal, databases, from_release, step.artifact.as_deref())
            .await?;
        let wanted = self
            .release_migrations(
                portal,
                databases,
                rollback.release_id,
                step.target_artifact.as_deref(),
            )
            .await?;
        let db = databases.resolve(&target)?;
        databases.ensure_exists(&db).await?;
        let done = databases
            .roll_back_schema(
                &portal.pool,
                crate::envdb::RollBackSchema {
                    environment: env.id,
                    rollback_deployment: rollback.id.0,
                    db: &db,
                    target: &wanted,
                    current: &current,
                    backup: backup.as_ref(),
                    restore_database: step.restore,
                },
            )
            .await?;
        let mut outcome = serde_json::to_value(&done)?;
        let kept = done
            .safety_dump
            .as_ref()
            .map(|dump| format!("; safety dump {} keeps it", dump.short_sha()))
            .unwrap_or_default();
        outcome["summary"] = json!(format!(
            "{}; {}{kept}",
            done.plan.describe(),
            done.written_since_deploy()
        ));
        Ok(outcome)
    }
}

/// The environment's position in its project (0, 1, 2…).
pub async fn environment_position(
    conn: &mut sqlx::PgConnection,
    deployment: &Locked,
) -> Result<i32, sqlx::Error> {
    sqlx::query_scalar!(
        "select position from environment where environment_id = $1",
        deployment.environment_id
    )
    .fetch_one(&mut *conn)
    .await
}

/// Reads `--deploy-env` entries (`KEY=VALUE`), saying which one is wrong.
pub fn parse_deploy_env(entries: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    entries
        .iter()
        .filter(|e| !e.trim().is_empty())
        .map(|entry| {
            let (key, value) = entry
                .split_once('=')
                .with_context(|| format!("--deploy-env `{entry}` is not KEY=VALUE"))?;
            let key = key.trim();
            if key.is_empty()
                || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                || key.as_bytes()[0].is_ascii_digit()
            {
                anyhow::bail!(
                    "--deploy-env `{entry}`: `{key}` is not a variable name (letters, digits, _)"
                );
            }
            Ok((key.to_string(), value.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deploy_env_entries_are_key_value_with_names_checked() {
        let parsed = parse_deploy_env(&[
            "STUDYBUDDY_DEPLOY_DIR=/srv/{project}".into(),
            "X=a=b".into(),
            " ".into(),
        ])
        .unwrap();
        assert_eq!(
            parsed,
            [
                (
                    "STUDYBUDDY_DEPLOY_DIR".to_string(),
                    "/srv/{project}".to_string()
                ),
                ("X".to_string(), "a=b".to_string())
            ]
        );
        assert!(parse_deploy_env(&["NOEQUALS".into()]).is_err());
        assert!(parse_deploy_env(&["1X=y".into()]).is_err());
        assert!(parse_deploy_env(&["A-B=y".into()]).is_err());
    }

    #[test]
    fn an_environments_api_port_follows_its_position() {
        let world = World {
            port_base: Some(4100),
            ..World::default()
        };
        assert_eq!(world.api_port(0), Some(4101));
        assert_eq!(world.api_base(2).as_deref(), Some("http://127.0.0.1:4103/"));
        assert_eq!(World::default().api_base(0), None);
    }
}
