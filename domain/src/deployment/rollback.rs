//! Rollbacks: one operation that takes an environment back from the deployment it rolls back to
//! an earlier release — its flags, its site and runtime configuration, its deploy job and its
//! database — as a deployment of kind `rollback` with one stage whose steps the deployer
//! records before and after each runs (so a crash resumes at the step it stopped in).
//!
//! ## The order of the steps, and why
//! 1. **flags**: the snapshot the target release ran with comes back first. It is one
//!    transaction and instant, and it switches off what the bad release's new code paths
//!    depend on while that code still runs.
//! 2. **site**: the environment's pointer moves back to the target's site version, with its
//!    `config.json` (every replica serves the old bytes on NOTIFY). What users see is now the
//!    target release; the old web build talks to the API, which is still the newer one (APIs
//!    stay compatible with the previous web build).
//! 3. **deploy job**: the target release's deploy job runs again (the API restarted on the old
//!    code). The old code runs on the newer schema, which migrations keep compatible (expand
//!    first, contract later).
//! 4. **database**, last, by `rollback.restore_database`: nothing when no migration came since
//!    the target; else a safety dump of the database as it is, then the down scripts in reverse
//!    in one transaction, or a restore of the backup taken before the deploy. Last, because the
//!    new code would break on the old schema, while the old code runs on either.
//!
//! ## Exactly once
//! The key is the environment and the deployment rolled back: [`roll_back`] locks the
//! environment's row, finds a rollback of that deployment that has not failed and returns it
//! (a double tap, two people, a retried request all get the first one's progress), and the
//! unique index `deployment_one_rollback` stands behind it. Rollbacks never wait for a deploy
//! window or approvals; who may comes from `rollback.manual.roles` through
//! [`crate::environment::decide`].

use super::store::Created;
use super::{DeploymentError, DeploymentId, DeploymentTrigger, StageSpec};
use crate::audit::{Actor, AuditRecord, Origin};
use crate::environment::{self, Acting, Action, Environment};
use crate::release_view::RollbackOffer;
use crate::run::plan::PlannedStage;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::{PgConnection, PgPool};
use std::future::Future;
use std::pin::Pin;
use uuid::Uuid;

/// Why a rollback happens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Cause {
    /// Someone asked (on a page, through REST or the command line).
    Person { name: String },
    /// An alert incident: its rule and the figures that broke it.
    Incident {
        rule: String,
        figures: serde_json::Value,
    },
}

impl Cause {
    pub fn describe(&self) -> String {
        match self {
            Cause::Person { name } => format!("asked for by {name}"),
            Cause::Incident { rule, .. } => format!("automatic: {rule}"),
        }
    }
}

/// What a rollback does, decided when it is asked for (stored as its stage's spec).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RollbackPlan {
    /// The release running when the rollback was asked for.
    pub from_version: String,
    pub to_version: String,
    /// The deployment rolled back, and the deployment of the target release whose flags,
    /// site and deploy job come back.
    pub rolls_back: i64,
    pub target_deployment: i64,
    /// The flag snapshot to restore (None: `restore_flags: false`, or none was recorded).
    pub flag_snapshot: Option<i64>,
    /// The site version (with its config.json) to switch back to.
    pub site_version: Option<Uuid>,
    /// The target release's deploy job.
    pub job: Option<PlannedStage>,
    pub database: DatabaseStep,
}

/// What the database step is to do; the details (down scripts or a restore, rows written since)
/// are worked out against the database itself when the step runs and on the confirm sheet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatabaseStep {
    /// `rollback.restore_database`.
    pub restore: bool,
    /// The `db-schema` artifact of the release rolled back (its down scripts), if it has one.
    pub artifact: Option<String>,
    /// The target release's `db-schema` artifact (the migrations it knows).
    pub target_artifact: Option<String>,
    /// The earliest backup taken before a deployment after the target's (what a restore uses).
    pub backup: Option<Uuid>,
}

impl RollbackPlan {
    /// The steps in order, with what each does, in words (the page and the confirm sheet).
    pub fn steps(&self) -> Vec<(&'static str, String)> {
        let mut steps = Vec::new();
        steps.push((
            STEP_FLAGS,
            match self.flag_snapshot {
                Some(v) => format!("flags back to snapshot #{v}"),
                None => "flags stay as they are (no snapshot to restore)".into(),
            },
        ));
        steps.push((
            STEP_SITE,
            match self.site_version {
                Some(_) => format!("site and config.json back to {}", self.to_version),
                None => "no site to switch".into(),
            },
        ));
        steps.push((
            STEP_JOB,
            match &self.job {
                Some(job) => format!(
                    "deploy job {} of {} runs again",
                    job.jobs
                        .iter()
                        .map(|j| j.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    self.to_version
                ),
                None => "no deploy job to run".into(),
            },
        ));
        steps.push((
            STEP_DATABASE,
            if !self.database.restore {
                "database left as it is (restore_database: false)".into()
            } else {
                "database: undone if migrations came since (a safety dump first)".into()
            },
        ));
        steps
    }
}

/// The recorded steps' names, in order.
pub const STEP_FLAGS: &str = "flags";
pub const STEP_SITE: &str = "site";
pub const STEP_JOB: &str = "jobs";
pub const STEP_DATABASE: &str = "database";

/// A rollback someone (or an incident) asks for.
#[derive(Debug, Clone)]
pub struct RollbackRequest {
    pub project: String,
    pub environment: String,
    /// The deployment to roll back, by number (what the page showed); None: the one whose
    /// release runs there now.
    pub rolls_back: Option<i64>,
    /// The release to go back to; None: the last good one.
    pub to: Option<String>,
    pub acting: Acting,
    pub actor: Actor,
    pub trigger: DeploymentTrigger,
    pub cause: Cause,
    /// The REST call's `Idempotency-Key`.
    pub idempotency_key: Option<String>,
}

/// What asking for a rollback gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolledBack {
    pub deployment: Created,
    pub from_version: String,
    pub to_version: String,
}

/// Where a rollback would go, for the confirm sheet (changes nothing).
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub environment_id: Uuid,
    pub rolls_back_id: Uuid,
    pub plan: RollbackPlan,
    /// An earlier rollback of the same deployment that has not failed: asking again gives it.
    pub existing: Option<(Uuid, i64)>,
}

/// Works out what a rollback of `environment` would do. Refuses a person who may not roll back.
pub async fn preview(
    conn: &mut PgConnection,
    project: &str,
    environment: &str,
    rolls_back: Option<i64>,
    to: Option<&str>,
    acting: &Acting,
) -> Result<Target, DeploymentError> {
    let env = environment::find(&mut *conn, project, environment).await?;
    env.decide(acting, Action::RollBack)?;
    target_for(conn, &env, rolls_back, to).await
}

/// Where a rollback of `env` would go and what it would do (no permission asked).
async fn target_for(
    conn: &mut PgConnection,
    env: &Environment,
    rolls_back: Option<i64>,
    to: Option<&str>,
) -> Result<Target, DeploymentError> {
    let (project, environment) = (env.project.as_str(), env.name.as_str());
    let rolled = match rolls_back {
        Some(number) => sqlx::query!(
            r#"select d.deployment_id, d.number, d.release_id, r.version
               from deployment d join release r using (release_id)
               where d.environment_id = $1 and d.number = $2"#,
            env.id.0,
            number
        )
        .fetch_optional(&mut *conn)
        .await?
        .map(|r| (r.deployment_id, r.number, r.release_id, r.version))
        .ok_or_else(|| DeploymentError::UnknownDeployment {
            project: project.to_string(),
            number,
        })?,
        None => sqlx::query!(
            r#"select d.deployment_id, d.number, d.release_id, r.version
               from environment e join deployment d on d.deployment_id = e.current_deployment_id
               join release r on r.release_id = d.release_id
               where e.environment_id = $1"#,
            env.id.0
        )
        .fetch_optional(&mut *conn)
        .await?
        .map(|r| (r.deployment_id, r.number, r.release_id, r.version))
        .ok_or_else(|| {
            DeploymentError::NotNow(format!(
                "nothing has been deployed to {environment} yet, so there is nothing to roll back"
            ))
        })?,
    };
    let (rolled_id, rolled_number, rolled_release, rolled_version) = rolled;
    let existing = sqlx::query!(
        "select deployment_id, number from deployment
         where rolls_back_id = $1 and kind = 'rollback' and state <> 'failed'",
        rolled_id
    )
    .fetch_optional(&mut *conn)
    .await?
    .map(|r| (r.deployment_id, r.number));
    // The target: a successful deploy of another release, before the one rolled back, that was
    // not itself rolled back; the newest such, or the newest of the release asked for.
    let target = sqlx::query!(
        r#"select d.deployment_id, d.number, d.flag_snapshot_version, d.release_id, r.version, r.run_id
           from deployment d join release r using (release_id)
           where d.environment_id = $1 and d.kind = 'deploy' and d.state = 'succeeded'
             and d.release_id <> $2 and d.number < $3
             and ($4::text is null or r.version = $4)
             and not exists (select 1 from deployment rb where rb.rolls_back_id = d.deployment_id
                             and rb.kind = 'rollback' and rb.state = 'succeeded')
           order by d.number desc limit 1"#,
        env.id.0,
        rolled_release,
        rolled_number,
        to
    )
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| {
        DeploymentError::NotNow(match to {
            Some(version) => format!(
                "{version} has no successful deployment to {environment} before #{rolled_number} to go back to"
            ),
            None => format!(
                "{environment} ran no other release successfully before {rolled_version}, so there is nothing to go back to"
            ),
        })
    })?;
    let site_version = sqlx::query_scalar!(
        "select site_version_id from site_version where deployment_id = $1
         order by created_at desc limit 1",
        target.deployment_id
    )
    .fetch_optional(&mut *conn)
    .await?;
    let (job, target_artifact) = deployed_with(&mut *conn, target.deployment_id).await?;
    let (_, rolled_artifact) = deployed_with(&mut *conn, rolled_id).await?;
    let backup = sqlx::query_scalar!(
        r#"select b.database_backup_id from database_backup b join deployment d on d.deployment_id = b.deployment_id
           where d.environment_id = $1 and d.number > $2 and d.kind = 'deploy' and b.purpose = 'pre-deploy'
           order by d.number, b.created_at desc limit 1"#,
        env.id.0,
        target.number
    )
    .fetch_optional(&mut *conn)
    .await?;
    let plan = RollbackPlan {
        from_version: rolled_version,
        to_version: target.version,
        rolls_back: rolled_number,
        target_deployment: target.number,
        flag_snapshot: if env.rollback.restore_flags {
            target.flag_snapshot_version
        } else {
            None
        },
        site_version,
        job,
        database: DatabaseStep {
            restore: env.rollback.restore_database,
            artifact: rolled_artifact,
            target_artifact,
            backup,
        },
    };
    Ok(Target {
        environment_id: env.id.0,
        rolls_back_id: rolled_id,
        plan,
        existing,
    })
}

/// The one use case behind the phone's button, REST, the CLI and (later) health incidents:
/// asks for a rollback, or returns the one already asked for (see the module's "Exactly once").
pub async fn roll_back(
    pool: &PgPool,
    request: &RollbackRequest,
    origin: &Origin,
    now: DateTime<Utc>,
) -> Result<RolledBack, DeploymentError> {
    let mut tx = pool.begin().await?;
    // Lock order: a deployment under way there first (the deployer holds deployment rows before
    // it updates the environment's), then the environment's row, which serialises rollbacks.
    let env_id = environment::find(&mut tx, &request.project, &request.environment)
        .await?
        .id
        .0;
    let active = sqlx::query!(
        r#"select deployment_id, number, kind, state from deployment
           where environment_id = $1 and state in ('queued', 'running', 'waiting')
           for update"#,
        env_id
    )
    .fetch_optional(&mut *tx)
    .await?;
    sqlx::query!(
        "select environment_id from environment where environment_id = $1 for update",
        env_id
    )
    .fetch_one(&mut *tx)
    .await?;
    if let Some(key) = &request.idempotency_key
        && let Some(found) = sqlx::query!(
            r#"select d.deployment_id, d.number, r.version,
                      (select r2.version from deployment x join release r2 using (release_id)
                       where x.deployment_id = d.rolls_back_id) as "from_version!"
               from deployment d join release r using (release_id)
               where d.environment_id = $1 and d.idempotency_key = $2 and d.kind = 'rollback'"#,
            env_id,
            key
        )
        .fetch_optional(&mut *tx)
        .await?
    {
        return Ok(RolledBack {
            deployment: Created {
                deployment_id: DeploymentId(found.deployment_id),
                number: found.number,
                version: found.version.clone(),
                created: false,
            },
            from_version: found.from_version,
            to_version: found.version,
        });
    }
    let target = preview(
        &mut tx,
        &request.project,
        &request.environment,
        request.rolls_back,
        request.to.as_deref(),
        &request.acting,
    )
    .await?;
    if let Some((id, number)) = target.existing {
        return Ok(RolledBack {
            deployment: Created {
                deployment_id: DeploymentId(id),
                number,
                version: target.plan.to_version.clone(),
                created: false,
            },
            from_version: target.plan.from_version,
            to_version: target.plan.to_version,
        });
    }
    if let Some(active) = active {
        if active.kind == "rollback" || active.state == "running" {
            return Err(DeploymentError::NotNow(format!(
                "deployment #{} is {} in {} now; roll back once it has finished",
                active.number,
                if active.kind == "rollback" {
                    "rolling back"
                } else {
                    "deploying"
                },
                request.environment
            )));
        }
        cancel_for_rollback(&mut tx, DeploymentId(active.deployment_id), now).await?;
    }
    let created = insert(&mut tx, request, &target, origin, now).await?;
    tx.commit().await?;
    Ok(RolledBack {
        deployment: created,
        from_version: target.plan.from_version,
        to_version: target.plan.to_version,
    })
}

/// What a deployment's stages did that a rollback takes back: its deploy stage's job, and the
/// `db-schema` artifact it migrated the database with last — the deploy stage's `migrate`, or a
/// later `migrate` stage's `artifact` (the sample's production migrates in its last stage).
async fn deployed_with(
    conn: &mut PgConnection,
    deployment_id: Uuid,
) -> Result<(Option<PlannedStage>, Option<String>), sqlx::Error> {
    let specs = sqlx::query_scalar!(
        "select spec from deployment_stage where deployment_id = $1 and kind in ('deploy', 'migrate')
         order by position",
        deployment_id
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut job = None;
    let mut artifact = None;
    for spec in specs
        .into_iter()
        .filter_map(|spec| serde_json::from_value::<StageSpec>(spec).ok())
    {
        match spec {
            StageSpec::Deploy {
                job: deploy_job,
                migrate,
                ..
            } => {
                job = deploy_job;
                artifact = migrate.or(artifact);
            }
            StageSpec::Migrate {
                artifact: migrated, ..
            } => artifact = Some(migrated),
            _ => {}
        }
    }
    Ok((job, artifact))
}

/// What the database step of a rollback would do, worked out against the environment's
/// database (the server's environment databases implement it); the confirm sheet shows it.
pub trait DatabasePreview: Send + Sync {
    /// In words: "nothing: no migration came since 2026.12.01-3", "down scripts 0004, 0003 run
    /// in reverse; since the deploy: 42 rows inserted in study_session (kept in a safety dump)".
    fn describe<'a>(
        &'a self,
        environment: &'a Environment,
        plan: &'a RollbackPlan,
    ) -> Pin<Box<dyn Future<Output = String> + Send + 'a>>;
}

/// What the environment page offers `acting`: the rollback a tap would ask for (or the one
/// already asked for), or why there is none.
pub async fn offer(
    pool: &PgPool,
    project: &str,
    environment: &str,
    acting: &Acting,
    database: Option<&dyn DatabasePreview>,
) -> Result<Result<RollbackOffer, String>, DeploymentError> {
    let mut conn = pool.acquire().await?;
    let env = environment::find(&mut conn, project, environment).await?;
    let refused = env
        .decide(acting, Action::RollBack)
        .err()
        .map(|refusal| refusal.to_string());
    let target = match target_for(&mut conn, &env, None, None).await {
        Ok(target) => target,
        Err(DeploymentError::NotNow(why)) => return Ok(Err(why)),
        Err(error) => return Err(error),
    };
    drop(conn);
    let words = match (target.plan.database.restore, database) {
        (false, _) => "left as it is: the rollback policy has restore_database: false".to_string(),
        (true, Some(preview)) => preview.describe(&env, &target.plan).await,
        (true, None) => {
            "undone if migrations came since the target release, after a safety dump".to_string()
        }
    };
    Ok(Ok(RollbackOffer {
        rolls_back: target.plan.rolls_back,
        from: target.plan.from_version.clone(),
        to: target.plan.to_version.clone(),
        steps: target
            .plan
            .steps()
            .into_iter()
            .map(|(name, what)| {
                if name == STEP_DATABASE {
                    format!("database: {words}")
                } else {
                    what
                }
            })
            .collect(),
        database: words,
        existing: target.existing.map(|(_, number)| number),
        refused,
    }))
}

/// A queued or waiting deployment (at a gate, outside its window) gives way to a rollback.
async fn cancel_for_rollback(
    conn: &mut PgConnection,
    deployment: DeploymentId,
    now: DateTime<Utc>,
) -> Result<(), DeploymentError> {
    sqlx::query!(
        "update deployment_stage set state = 'canceled', reason = 'canceled: the environment is being rolled back',
                finished_at = $2
         where deployment_id = $1 and state in ('queued', 'running', 'waiting')",
        deployment.0,
        now
    )
    .execute(&mut *conn)
    .await?;
    super::store::refresh(conn, deployment, now).await?;
    Ok(())
}

async fn insert(
    conn: &mut PgConnection,
    request: &RollbackRequest,
    target: &Target,
    origin: &Origin,
    now: DateTime<Utc>,
) -> Result<Created, DeploymentError> {
    let project_id = sqlx::query_scalar!(
        "select project_id from environment where environment_id = $1",
        target.environment_id
    )
    .fetch_one(&mut *conn)
    .await?;
    let to_release = sqlx::query_scalar!(
        "select release_id from release where project_id = $1 and version = $2",
        project_id,
        target.plan.to_version
    )
    .fetch_one(&mut *conn)
    .await?;
    let from_release = sqlx::query_scalar!(
        "select release_id from deployment where deployment_id = $1",
        target.rolls_back_id
    )
    .fetch_one(&mut *conn)
    .await?;
    crate::release::store::lock_numbers(conn, project_id).await?;
    let number = sqlx::query_scalar!(
        r#"select coalesce(max(number), 0) + 1 as "n!" from deployment where project_id = $1"#,
        project_id
    )
    .fetch_one(&mut *conn)
    .await?;
    let cause = serde_json::to_value(&request.cause).expect("a cause serializes");
    let deployment_id = sqlx::query_scalar!(
        r#"insert into deployment (project_id, environment_id, number, kind, release_id, from_release_id,
                                   rolls_back_id, cause, state, trigger, triggered_by, idempotency_key, created_at)
           values ($1, $2, $3, 'rollback', $4, $5, $6, $7, 'queued', $8, $9, $10, $11) returning deployment_id"#,
        project_id,
        target.environment_id,
        number,
        to_release,
        from_release,
        target.rolls_back_id,
        cause,
        request.trigger.as_str(),
        request.acting.name(),
        request.idempotency_key,
        now,
    )
    .fetch_one(&mut *conn)
    .await?;
    let spec = StageSpec::Rollback {
        plan: target.plan.clone(),
    };
    sqlx::query!(
        r#"insert into deployment_stage (deployment_id, name, title, kind, position, spec, state)
           values ($1, 'rollback', 'Roll back', 'rollback', 0, $2, 'queued')"#,
        deployment_id,
        serde_json::to_value(&spec).expect("a stage spec serializes"),
    )
    .execute(&mut *conn)
    .await?;
    AuditRecord::new(request.actor.clone(), "deployment.rollback_requested", origin)
        .target(format!(
            "{}/{}#{number}",
            request.project, request.environment
        ))
        .details(json!({
            "from": target.plan.from_version,
            "to": target.plan.to_version,
            "rolls_back": target.plan.rolls_back,
            "cause": cause,
            "steps": target.plan.steps().iter().map(|(name, what)| json!({"step": name, "does": what})).collect::<Vec<_>>(),
        }))
        .write(&mut *conn)
        .await?;
    Ok(Created {
        deployment_id: DeploymentId(deployment_id),
        number,
        version: target.plan.to_version.clone(),
        created: true,
    })
}
