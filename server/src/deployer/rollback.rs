//! Driving a rollback's stage: flags, site, deploy job, database — in that order (the domain's
//! `deployment::rollback` says why), each a recorded step done once, then the environment is
//! marked as running the target release. A rollback never waits for a window or approvals.

use super::Next;
use super::stages::StageCtx;
use domain::audit::{Actor, AuditRecord, Origin};
use domain::deployment::rollback::{RollbackPlan, STEP_DATABASE, STEP_FLAGS, STEP_SITE};
use domain::deployment::store;
use domain::environment::EnvironmentId;
use domain::site::SiteVersionId;
use serde_json::json;
use sqlx::{Postgres, Transaction};

type Tx = Transaction<'static, Postgres>;

impl StageCtx<'_> {
    pub(super) async fn rollback(&self, tx: Tx, plan: &RollbackPlan) -> anyhow::Result<Next> {
        let Some(mut tx) = self.started(tx).await? else {
            return Ok(Next::Again);
        };
        let d = self.deployment.clone();
        let portal = self.deployer.portal.clone();
        let world = self.deployer.world.clone();
        if let Some(version) = plan.flag_snapshot {
            let (portal, d) = (portal.clone(), d.clone());
            tx = match self
                .world_step(tx, STEP_FLAGS, move || async move {
                    restore_flags(&portal, &d, version).await
                })
                .await?
            {
                Some(tx) => tx,
                None => return Ok(Next::Again),
            };
        }
        if let Some(site) = plan.site_version {
            let (portal, d, world) = (portal.clone(), d.clone(), world.clone());
            tx = match self
                .world_step(tx, STEP_SITE, move || async move {
                    world.switch_site(&portal, &d, SiteVersionId(site)).await
                })
                .await?
            {
                Some(tx) => tx,
                None => return Ok(Next::Again),
            };
        }
        if let Some(job) = &plan.job {
            tx = match self.job_step(tx, job).await? {
                Ok(tx) => tx,
                Err(next) => return Ok(next),
            };
        }
        let database = plan.database.clone();
        let (portal2, d2, world2) = (portal.clone(), d.clone(), world.clone());
        tx = match self
            .world_step(tx, STEP_DATABASE, move || async move {
                world2.roll_back_database(&portal2, &d2, &database).await
            })
            .await?
        {
            Some(tx) => tx,
            None => return Ok(Next::Again),
        };
        self.finish(tx, plan).await
    }

    /// The environment runs the target release again: recorded with the configuration and the
    /// flag snapshot it runs with, and audited with what each step did.
    async fn finish(&self, mut tx: Tx, plan: &RollbackPlan) -> anyhow::Result<Next> {
        let d = &self.deployment;
        let now = self.now();
        let config = match plan.site_version {
            Some(site) => {
                sqlx::query_scalar!(
                    "select runtime_config from site_version where site_version_id = $1",
                    site
                )
                .fetch_optional(&mut *tx)
                .await?
            }
            None => None,
        };
        sqlx::query!(
            "update deployment set runtime_config = $2 where deployment_id = $1",
            d.id.0,
            config
        )
        .execute(&mut *tx)
        .await?;
        let steps = sqlx::query!(
            "select name, state, detail from deployment_step where deployment_stage_id = $1 order by position",
            self.stage.id
        )
        .fetch_all(&mut *tx)
        .await?;
        let snapshot = store::make_current(&mut tx, d, now).await?;
        AuditRecord::new(Actor::system(), "deployment.rolled_back", &Origin::default())
            .target(format!("{}/{}#{}", d.project, d.environment, d.number))
            .details(json!({
                "from": plan.from_version,
                "to": plan.to_version,
                "rolls_back": plan.rolls_back,
                "flag_snapshot": snapshot,
                "steps": steps.iter().map(|s| json!({"step": s.name, "state": s.state, "detail": s.detail})).collect::<Vec<_>>(),
            }))
            .write(&mut *tx)
            .await?;
        self.succeed(
            tx,
            Some(format!(
                "{} runs in {} again (rolled back from {})",
                plan.to_version, d.environment, plan.from_version
            )),
        )
        .await
    }
}

/// Restores the flag snapshot, keyed by the rollback: a retry after a crash changes nothing twice.
async fn restore_flags(
    portal: &domain::portal::Portal,
    d: &store::Locked,
    version: i64,
) -> anyhow::Result<serde_json::Value> {
    let key = format!("rollback:{}", d.id);
    let actor = Actor {
        kind: "system",
        id: None,
        name: format!("rollback #{}", d.number),
    };
    let mut tx = portal.pool.begin().await?;
    let restored = domain::flags::snapshot::restore(
        &mut tx,
        EnvironmentId(d.environment_id),
        version,
        actor,
        &Origin::default(),
        Some(&key),
    )
    .await?;
    tx.commit().await?;
    Ok(match restored {
        domain::flags::snapshot::Restored::Restored {
            version: made,
            changes,
            ..
        } => json!({
            "restored": version, "snapshot": made, "changes": changes.len(),
            "summary": format!("snapshot #{version} restored as #{made} ({} {})", changes.len(),
                if changes.len() == 1 { "change" } else { "changes" }),
        }),
        domain::flags::snapshot::Restored::AlreadyCurrent { version: made, .. } => json!({
            "restored": version, "snapshot": made, "changes": 0,
            "summary": format!("the flags were already as in snapshot #{version}"),
        }),
        domain::flags::snapshot::Restored::Replayed { version: made } => json!({
            "restored": version, "snapshot": made, "replayed": true,
            "summary": format!("snapshot #{version} restored as #{made}"),
        }),
    })
}

/// What a rollback would do to an environment's database, worked out against it (the confirm
/// sheet's words): the plan (nothing, down scripts, a restore) and what was written since the
/// deploy, which the safety dump keeps.
#[derive(Clone)]
pub struct RollbackDatabasePreview {
    pub portal: domain::portal::Portal,
    pub world: super::world::World,
}

impl domain::deployment::rollback::DatabasePreview for RollbackDatabasePreview {
    fn describe<'a>(
        &'a self,
        environment: &'a domain::environment::Environment,
        plan: &'a RollbackPlan,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = String> + Send + 'a>> {
        Box::pin(async move {
            match self
                .world
                .preview_database(&self.portal, environment, plan)
                .await
            {
                Ok(words) => words,
                Err(error) => format!("could not look at the database: {error:#}"),
            }
        })
    }
}
