//! Deployments in the database: making one (a promotion), reading and saving its stages, the
//! deployer's lease, and the steps it records. Functions take the caller's connection.

use super::plan::stages_for;
use super::record::{StageRecord, summarize};
use super::{DeploymentError, DeploymentId, DeploymentTrigger, ReleaseId, StageSpec};
use crate::audit::{Actor, AuditRecord, Origin};
use crate::definition::{Definition, StageKind};
use crate::environment::{self, Acting, Action};
use crate::state::RunState;
use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// A deployment to make.
pub struct NewDeployment<'a> {
    pub project_id: Uuid,
    pub environment: &'a str,
    pub release: ReleaseId,
    pub trigger: DeploymentTrigger,
    pub triggered_by: &'a str,
    pub idempotency_key: Option<&'a str>,
    pub definition: &'a Definition,
    pub now: DateTime<Utc>,
}

/// A deployment that exists now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    pub deployment_id: DeploymentId,
    pub number: i64,
    pub version: String,
    /// False when the idempotency key matched an earlier deployment, which is returned instead.
    pub created: bool,
}

/// Inserts a deployment with its stages, all queued, and its audit entry. Refuses when one is
/// under way in the environment. The environment's row lock serialises promotions into it.
pub async fn create_deployment(
    conn: &mut PgConnection,
    new: NewDeployment<'_>,
    actor: &Actor,
    origin: &Origin,
) -> Result<Created, DeploymentError> {
    let env = sqlx::query!(
        "select environment_id, current_release_id from environment
         where project_id = $1 and name = $2 for update",
        new.project_id,
        new.environment
    )
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| DeploymentError::NoDeployStage(new.environment.to_string()))?;
    let version = sqlx::query_scalar!(
        "select version from release where release_id = $1",
        new.release.0
    )
    .fetch_one(&mut *conn)
    .await?;
    if let Some(key) = new.idempotency_key
        && let Some(existing) = sqlx::query!(
            r#"select d.deployment_id, d.number, r.version from deployment d join release r using (release_id)
               where d.environment_id = $1 and d.idempotency_key = $2"#,
            env.environment_id,
            key
        )
        .fetch_optional(&mut *conn)
        .await?
        {
            return Ok(Created {
                deployment_id: DeploymentId(existing.deployment_id),
                number: existing.number,
                version: existing.version,
                created: false,
            });
        }
    if let Some(busy) = sqlx::query!(
        r#"select d.number, r.version from deployment d join release r using (release_id)
           where d.environment_id = $1 and d.state in ('queued', 'running', 'waiting')"#,
        env.environment_id
    )
    .fetch_optional(&mut *conn)
    .await?
    {
        return Err(DeploymentError::Busy {
            environment: new.environment.to_string(),
            number: busy.number,
            version: busy.version,
        });
    }
    let stages = stages_for(new.definition, new.environment)?;
    crate::release::store::lock_numbers(conn, new.project_id).await?;
    let number = sqlx::query_scalar!(
        r#"select coalesce(max(number), 0) + 1 as "n!" from deployment where project_id = $1"#,
        new.project_id
    )
    .fetch_one(&mut *conn)
    .await?;
    let deployment_id = sqlx::query_scalar!(
        r#"insert into deployment (project_id, environment_id, number, kind, release_id, from_release_id,
                                   state, trigger, triggered_by, idempotency_key, created_at)
           values ($1, $2, $3, 'deploy', $4, $5, 'queued', $6, $7, $8, $9) returning deployment_id"#,
        new.project_id,
        env.environment_id,
        number,
        new.release.0,
        env.current_release_id,
        new.trigger.as_str(),
        new.triggered_by,
        new.idempotency_key,
        new.now,
    )
    .fetch_one(&mut *conn)
    .await?;
    for (position, stage) in stages.iter().enumerate() {
        sqlx::query!(
            r#"insert into deployment_stage (deployment_id, name, title, kind, position, spec, state)
               values ($1, $2, $3, $4, $5, $6, 'queued')"#,
            deployment_id,
            stage.name,
            stage.title,
            stage.spec.kind(),
            position as i32,
            serde_json::to_value(&stage.spec).expect("a stage spec serializes"),
        )
        .execute(&mut *conn)
        .await?;
    }
    let project = sqlx::query_scalar!(
        "select project_key from project where project_id = $1",
        new.project_id
    )
    .fetch_one(&mut *conn)
    .await?;
    AuditRecord::new(actor.clone(), "deployment.created", origin)
        .target(format!("{project}/{}#{number}", new.environment))
        .details(json!({
            "release": version,
            "environment": new.environment,
            "trigger": new.trigger.as_str(),
            "triggered_by": new.triggered_by,
            "stages": stages.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        }))
        .write(&mut *conn)
        .await?;
    Ok(Created {
        deployment_id: DeploymentId(deployment_id),
        number,
        version,
        created: true,
    })
}

/// Which release a promotion brings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReleaseChoice {
    /// The newest release that may go there (see [`newest_eligible`]).
    NewestEligible,
    Version(String),
}

/// A promotion someone (or a schedule) asks for.
#[derive(Debug, Clone)]
pub struct PromoteRequest {
    pub project: String,
    pub environment: String,
    pub release: ReleaseChoice,
    pub acting: Acting,
    pub actor: Actor,
    pub trigger: DeploymentTrigger,
    pub idempotency_key: Option<String>,
}

/// What a promotion did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Promoted {
    Started(Created),
    /// The release already runs there: nothing to do.
    AlreadyCurrent {
        version: String,
    },
}

/// Promotes a release into an environment: the one use case behind the page's button, REST, the
/// CLI and schedules. Who may comes from [`environment::decide`]; the approvals it needs are
/// waited for by the deploy stage.
pub async fn promote(
    pool: &PgPool,
    request: &PromoteRequest,
    origin: &Origin,
    now: DateTime<Utc>,
) -> Result<Promoted, DeploymentError> {
    let mut tx = pool.begin().await?;
    let env = environment::find(&mut tx, &request.project, &request.environment).await?;
    env.decide(&request.acting, Action::Deploy)?;
    let definition = crate::project::current_definition_in(&mut tx, &request.project)
        .await?
        .ok_or_else(|| DeploymentError::NoDefinition(request.project.clone()))?;
    if definition.deploy_stage(&request.environment).is_none() {
        return Err(DeploymentError::NoDeployStage(request.environment.clone()));
    }
    let (release_id, version) = match &request.release {
        ReleaseChoice::Version(version) => {
            let id = sqlx::query_scalar!(
                "select release_id from release where project_id = $1 and version = $2",
                env.project_id,
                version
            )
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| DeploymentError::UnknownRelease {
                project: request.project.clone(),
                version: version.clone(),
            })?;
            (id, version.clone())
        }
        ReleaseChoice::NewestEligible => {
            match newest_eligible(&mut tx, env.project_id, &definition, &request.environment)
                .await?
            {
                Ok(found) => found,
                Err(why) => {
                    return Err(DeploymentError::NothingEligible {
                        project: request.project.clone(),
                        environment: request.environment.clone(),
                        why,
                    });
                }
            }
        }
    };
    let current = sqlx::query_scalar!(
        "select current_release_id from environment where environment_id = $1",
        env.id.0
    )
    .fetch_one(&mut *tx)
    .await?;
    if current == Some(release_id) && request.idempotency_key.is_none() {
        return Ok(Promoted::AlreadyCurrent { version });
    }
    let created = create_deployment(
        &mut tx,
        NewDeployment {
            project_id: env.project_id,
            environment: &request.environment,
            release: ReleaseId(release_id),
            trigger: request.trigger,
            triggered_by: request.acting.name(),
            idempotency_key: request.idempotency_key.as_deref(),
            definition: &definition,
            now,
        },
        &request.actor,
        origin,
    )
    .await?;
    tx.commit().await?;
    Ok(Promoted::Started(created))
}

/// The environment whose deploy stage comes before `environment`'s in the pipeline, if any.
pub fn previous_environment(definition: &Definition, environment: &str) -> Option<String> {
    let deploys: Vec<String> = definition
        .stages()
        .filter_map(|s| match &s.kind {
            StageKind::Deploy(d) => Some(d.environment.to_string()),
            _ => None,
        })
        .collect();
    let at = deploys.iter().position(|e| e == environment)?;
    at.checked_sub(1).map(|i| deploys[i].clone())
}

/// The newest release that may go to `environment`: for the first environment, the newest
/// release; for a later one, the newest whose deployment into the environment before it
/// succeeded — every stage, gates included (production gets what QA and user acceptance passed
/// on staging). `Err` says why there is none, in words.
pub async fn newest_eligible(
    conn: &mut PgConnection,
    project_id: Uuid,
    definition: &Definition,
    environment: &str,
) -> Result<Result<(Uuid, String), String>, sqlx::Error> {
    match previous_environment(definition, environment) {
        None => {
            let row = sqlx::query!(
                "select release_id, version from release where project_id = $1 order by number desc limit 1",
                project_id
            )
            .fetch_optional(&mut *conn)
            .await?;
            Ok(row
                .map(|r| (r.release_id, r.version))
                .ok_or_else(|| "no run of the release branch has succeeded yet".to_string()))
        }
        Some(before) => {
            let row = sqlx::query!(
                r#"select r.release_id, r.version from release r
                   where r.project_id = $1 and exists (
                     select 1 from deployment d join environment e using (environment_id)
                     where d.release_id = r.release_id and e.name = $2 and d.kind = 'deploy'
                       and d.state = 'succeeded')
                   order by r.number desc limit 1"#,
                project_id,
                before
            )
            .fetch_optional(&mut *conn)
            .await?;
            Ok(row
                .map(|r| (r.release_id, r.version))
                .ok_or_else(|| format!("no release has passed every stage of {before} yet")))
        }
    }
}

/// A deployment's stage as the deployer and the decisions read it.
#[derive(Debug, Clone)]
pub struct StageRow {
    pub id: Uuid,
    pub name: String,
    pub title: String,
    pub position: i32,
    pub spec: StageSpec,
    pub record: StageRecord,
    pub outcome: serde_json::Value,
}

/// The deployment's stages in order, locked (`for update`): the caller holds the deployment's
/// row lock first.
pub async fn load_stages(
    conn: &mut PgConnection,
    deployment: DeploymentId,
) -> Result<Vec<StageRow>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"select deployment_stage_id, name, title, position, spec, state as "state: RunState",
                  reason, outcome, started_at, finished_at
           from deployment_stage where deployment_id = $1 order by position for update"#,
        deployment.0
    )
    .fetch_all(&mut *conn)
    .await?;
    rows.into_iter()
        .map(|r| {
            Ok(StageRow {
                id: r.deployment_stage_id,
                name: r.name,
                title: r.title,
                position: r.position,
                spec: serde_json::from_value(r.spec)
                    .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
                record: StageRecord {
                    state: r.state,
                    reason: r.reason,
                    started_at: r.started_at,
                    finished_at: r.finished_at,
                },
                outcome: r.outcome,
            })
        })
        .collect()
}

/// Locks a deployment's row (first in the lock order) and reads what the deployer needs.
pub async fn lock(
    conn: &mut PgConnection,
    deployment: DeploymentId,
) -> Result<Locked, sqlx::Error> {
    let r = sqlx::query!(
        r#"select d.deployment_id, d.project_id, d.environment_id, d.number, d.release_id, d.from_release_id,
                  d.state as "state: RunState", d.triggered_by, d.trigger, d.window_override_by,
                  p.project_key, e.name as environment, r.version, r.commit_sha, r.run_id as release_run_id
           from deployment d join project p using (project_id)
           join environment e on e.environment_id = d.environment_id
           join release r on r.release_id = d.release_id
           where d.deployment_id = $1 for update of d"#,
        deployment.0
    )
    .fetch_one(&mut *conn)
    .await?;
    Ok(Locked {
        id: DeploymentId(r.deployment_id),
        project_id: r.project_id,
        project: r.project_key,
        environment_id: r.environment_id,
        environment: r.environment,
        number: r.number,
        release_id: r.release_id,
        from_release_id: r.from_release_id,
        version: r.version,
        commit_sha: r.commit_sha,
        release_run_id: r.release_run_id,
        state: r.state,
        trigger: r.trigger,
        triggered_by: r.triggered_by,
        window_overridden_by: r.window_override_by,
    })
}

/// A deployment whose row the caller has locked.
#[derive(Debug, Clone)]
pub struct Locked {
    pub id: DeploymentId,
    pub project_id: Uuid,
    pub project: String,
    pub environment_id: Uuid,
    pub environment: String,
    pub number: i64,
    pub release_id: Uuid,
    pub from_release_id: Option<Uuid>,
    pub version: String,
    pub commit_sha: String,
    pub release_run_id: Uuid,
    pub state: RunState,
    pub trigger: String,
    pub triggered_by: String,
    pub window_overridden_by: Option<String>,
}

/// The one place a stage's record is written; the deployment's state follows from its stages
/// ([`summarize`]) in the same transaction, and a failed or canceled stage skips the ones after
/// it.
pub async fn save_stage(
    conn: &mut PgConnection,
    deployment: DeploymentId,
    stage: Uuid,
    record: &StageRecord,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "update deployment_stage set state = $2, reason = $3, started_at = $4, finished_at = $5
         where deployment_stage_id = $1",
        stage,
        record.state as RunState,
        record.reason,
        record.started_at,
        record.finished_at
    )
    .execute(&mut *conn)
    .await?;
    if matches!(record.state, RunState::Failed | RunState::Canceled) {
        let reason = format!(
            "not run: an earlier stage {}",
            if record.state == RunState::Failed {
                "failed"
            } else {
                "was canceled"
            }
        );
        sqlx::query!(
            "update deployment_stage set state = 'skipped', reason = $2, finished_at = $3
             where deployment_id = $1 and state = 'queued'",
            deployment.0,
            reason,
            now
        )
        .execute(&mut *conn)
        .await?;
    }
    refresh(conn, deployment, now).await
}

/// Brings the deployment's state and words up to date with its stages.
pub async fn refresh(
    conn: &mut PgConnection,
    deployment: DeploymentId,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let stages = sqlx::query!(
        r#"select name, state as "state: RunState", reason, started_at, finished_at
           from deployment_stage where deployment_id = $1 order by position"#,
        deployment.0
    )
    .fetch_all(&mut *conn)
    .await?;
    let records: Vec<(String, StageRecord)> = stages
        .into_iter()
        .map(|s| {
            (
                s.name,
                StageRecord {
                    state: s.state,
                    reason: s.reason,
                    started_at: s.started_at,
                    finished_at: s.finished_at,
                },
            )
        })
        .collect();
    let (state, reason) = summarize(&records);
    sqlx::query!(
        "update deployment set state = $2, reason = $3,
                started_at = coalesce(started_at, case when $2 <> 'queued' then $4::timestamptz end),
                finished_at = case when $2 in ('succeeded', 'failed', 'canceled') then coalesce(finished_at, $4) else null end,
                driver = case when $2 in ('succeeded', 'failed', 'canceled') then null else driver end,
                lease_expires_at = case when $2 in ('succeeded', 'failed', 'canceled') then null else lease_expires_at end
         where deployment_id = $1",
        deployment.0,
        state.as_str(),
        reason,
        now
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Claims up to `limit` unfinished deployments for `driver` (this replica) until `now + lease`:
/// those it drives already, those nobody drives, and those whose driver stopped renewing.
pub async fn claim(
    pool: &PgPool,
    driver: Uuid,
    lease: Duration,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<DeploymentId>, sqlx::Error> {
    let ids = sqlx::query_scalar!(
        r#"update deployment set driver = $1, lease_expires_at = $2
           where deployment_id in (
             select deployment_id from deployment
             where state in ('queued', 'running', 'waiting')
               and (driver = $1 or driver is null or lease_expires_at is null or lease_expires_at < $3)
             order by created_at limit $4 for update skip locked)
           returning deployment_id"#,
        driver,
        now + lease,
        now,
        limit
    )
    .fetch_all(pool)
    .await?;
    Ok(ids.into_iter().map(DeploymentId).collect())
}

/// Extends `driver`'s lease on the deployment to `until`, while it still is the driver: how a
/// replica keeps a deployment through a step that outlasts the lease (a big database's dump or
/// restore), since its deployer renews leases only between steps. Returns whether it still
/// drives it (another replica may have taken it over after the lease ran out).
pub async fn renew(
    conn: &mut PgConnection,
    deployment: DeploymentId,
    driver: Uuid,
    until: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let renewed = sqlx::query!(
        "update deployment set lease_expires_at = greatest(lease_expires_at, $3)
         where deployment_id = $1 and driver = $2",
        deployment.0,
        driver,
        until
    )
    .execute(&mut *conn)
    .await?;
    Ok(renewed.rows_affected() == 1)
}

/// Whether `driver` still holds the deployment's lease (checked with the row locked, before
/// each step that changes the world).
pub async fn holds(
    conn: &mut PgConnection,
    deployment: DeploymentId,
    driver: Uuid,
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(
        r#"select (driver = $2 and lease_expires_at > $3) as "held!" from deployment where deployment_id = $1"#,
        deployment.0,
        driver,
        now
    )
    .fetch_one(&mut *conn)
    .await
}

/// A recorded step's state.
#[derive(Debug, Clone, PartialEq)]
pub enum StepState {
    Started(serde_json::Value),
    Done(serde_json::Value),
    Failed(serde_json::Value),
}

/// The step `name` of a stage as recorded, if it was.
pub async fn step(
    conn: &mut PgConnection,
    stage: Uuid,
    name: &str,
) -> Result<Option<StepState>, sqlx::Error> {
    let row = sqlx::query!(
        "select state, detail from deployment_step where deployment_stage_id = $1 and name = $2",
        stage,
        name
    )
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(|r| match r.state.as_str() {
        "done" => StepState::Done(r.detail),
        "failed" => StepState::Failed(r.detail),
        _ => StepState::Started(r.detail),
    }))
}

/// Records that a step starts (before it touches anything).
pub async fn step_started(
    conn: &mut PgConnection,
    stage: Uuid,
    name: &str,
    detail: serde_json::Value,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"insert into deployment_step (deployment_stage_id, name, position, state, detail, started_at)
           values ($1, $2, (select count(*) from deployment_step where deployment_stage_id = $1), 'started', $3, $4)
           on conflict (deployment_stage_id, name) do update set state = 'started', detail = $3"#,
        stage,
        name,
        detail,
        now
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Records how a step ended.
pub async fn step_finished(
    conn: &mut PgConnection,
    stage: Uuid,
    name: &str,
    ok: bool,
    detail: serde_json::Value,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "update deployment_step set state = $3, detail = $4, finished_at = $5
         where deployment_stage_id = $1 and name = $2",
        stage,
        name,
        if ok { "done" } else { "failed" },
        detail,
        now
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Stores what a stage found or did (a checklist, check results, a site, a backup).
pub async fn set_outcome(
    conn: &mut PgConnection,
    stage: Uuid,
    outcome: &serde_json::Value,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "update deployment_stage set outcome = $2 where deployment_stage_id = $1",
        stage,
        outcome
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Marks the release as running in the environment (its deploy stage, or a rollback to it,
/// succeeded), recording on the deployment the flag snapshot the environment runs with now (what
/// a later rollback to this release restores). Returns that snapshot's version.
pub async fn make_current(
    conn: &mut PgConnection,
    deployment: &Locked,
    now: DateTime<Utc>,
) -> Result<Option<i64>, sqlx::Error> {
    let snapshot = sqlx::query_scalar!(
        "update deployment set flag_snapshot_version =
             (select max(version) from flag_snapshot where environment_id = $2)
         where deployment_id = $1 returning flag_snapshot_version",
        deployment.id.0,
        deployment.environment_id
    )
    .fetch_one(&mut *conn)
    .await?;
    sqlx::query!(
        "update environment set current_release_id = $2, current_release = $3, deployed_at = $4,
                current_deployment_id = $5
         where environment_id = $1",
        deployment.environment_id,
        deployment.release_id,
        deployment.version,
        now,
        deployment.id.0
    )
    .execute(&mut *conn)
    .await?;
    Ok(snapshot)
}
