//! A deployment's jobs (its deploy job, the tests after it) run through the same engine as CI:
//! a stage that has jobs gets a run of its own (`run.deployment_stage_id`), with the release's
//! commit and the definition that made the release, so runners claim them with the same leases,
//! stream the same logs and upload artifacts the same way. The run page shows them like any run.

use super::store::Locked;
use crate::run::plan::PlannedStage;
use crate::run::store::{Commit, NewRun, Trigger, advance, insert_run};
use crate::state::RunState;
use chrono::{DateTime, Utc};
use sqlx::{Postgres, Transaction};
use std::collections::BTreeMap;
use uuid::Uuid;

/// The run of a deployment stage, if it has one: its number and state.
pub async fn stage_run(
    tx: &mut Transaction<'_, Postgres>,
    stage: Uuid,
) -> Result<Option<(i64, RunState, Option<String>)>, sqlx::Error> {
    let row = sqlx::query!(
        r#"select r.number, r.state as "state: RunState",
                  (select string_agg(j.name || ': ' || coalesce(j.reason, j.state), '; ' order by j.position)
                   from job j where j.run_id = r.run_id and j.state in ('failed', 'canceled')) as failures
           from run r where r.deployment_stage_id = $1 order by r.number desc limit 1"#,
        stage
    )
    .fetch_optional(&mut **tx)
    .await?;
    Ok(row.map(|r| (r.number, r.state, r.failures)))
}

/// Starts the run of a deployment stage's jobs, with `env` added to each job's environment
/// (the deployed site's address, the environment's name, the release), and queues what can
/// start. Returns the run's number.
pub async fn start_stage_run(
    tx: &mut Transaction<'_, Postgres>,
    deployment: &Locked,
    stage: Uuid,
    plan: &PlannedStage,
    env: &BTreeMap<String, String>,
    now: DateTime<Utc>,
) -> Result<i64, sqlx::Error> {
    sqlx::query!(
        "select project_id from project where project_id = $1 for update",
        deployment.project_id
    )
    .fetch_one(&mut **tx)
    .await?;
    let release_run = sqlx::query!(
        "select definition_version_id, commit_sha, branch, commit_author, commit_message from run where run_id = $1",
        deployment.release_run_id
    )
    .fetch_one(&mut **tx)
    .await?;
    let mut plan = plan.clone();
    for job in &mut plan.jobs {
        for (name, value) in env {
            job.spec.env.insert(name.clone(), value.clone());
        }
    }
    let commit = Commit {
        sha: release_run.commit_sha,
        branch: release_run.branch,
        author: release_run.commit_author,
        message: release_run.commit_message,
    };
    let triggered_by = format!(
        "deployment #{} of {} to {}",
        deployment.number, deployment.version, deployment.environment
    );
    let (run_id, number) = insert_run(
        tx,
        NewRun {
            project_id: deployment.project_id,
            definition_version_id: release_run.definition_version_id,
            trigger: Trigger::Deployment,
            triggered_by: &triggered_by,
            commit: &commit,
            idempotency_key: None,
            deployment_stage_id: Some(stage),
        },
        std::slice::from_ref(&plan),
    )
    .await?;
    advance(tx, run_id, now).await.map_err(|e| match e {
        crate::run::store::RunError::Database(e) => e,
        other => sqlx::Error::Protocol(other.to_string()),
    })?;
    Ok(number)
}
