//! Runs in the database: creating them from a definition, moving them on, canceling and
//! re-running. Every change happens in a transaction holding the run's row lock, so replicas
//! that react to the same event at once apply it once.
//!
//! **Lock order** (every function here and in [`super::work`] follows it; anything new must):
//! the `run` row first, then its `job` rows (`for update`). Nothing that holds a job's lock
//! asks for its run's. A claim picks a candidate without locks, locks the run, then re-reads
//! the job; the lease reaper does the same per run. Calls that touch one job only (heartbeat,
//! log lines) lock that job alone and take no other lock.
//!
//! A job's record moves only through [`super::job::JobRecord::apply`] and is written only by
//! [`save_job`].

use super::job::{JobEvent, JobRecord};
use super::plan::{JobNode, PlannedStage, StageNode, plan_run, progress};
use super::transition::{Event, InvalidTransition, Member, aggregate};
use crate::audit::{Actor, AuditRecord, Origin};
use crate::clock::{SharedClock, system};
use crate::definition::{self, Diagnostic};
use crate::state::RunState;
use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::{PgConnection, PgPool, Postgres, Transaction};
use uuid::Uuid;

/// How a run started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// A push to the project's repository (its git hook).
    Push,
    /// GitHub's push webhook.
    Webhook,
    /// Someone pressed "Run pipeline".
    Manual,
    /// The REST API, with a token.
    Api,
    /// A schedule fired.
    Schedule,
    /// A deployment runs its jobs (its deploy job, the tests after it) as a run.
    Deployment,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Push => "push",
            Trigger::Webhook => "webhook",
            Trigger::Manual => "manual",
            Trigger::Api => "api",
            Trigger::Schedule => "schedule",
            Trigger::Deployment => "deployment",
        }
    }
}

/// The commit a run builds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    pub sha: String,
    pub branch: String,
    pub author: String,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("there is no project `{0}`")]
    UnknownProject(String),
    #[error("project `{0}` has no pipeline definition loaded")]
    NoDefinition(String),
    #[error("the commit's flightdeck.yml has {} problem(s)", .0.len())]
    InvalidDefinition(Vec<Diagnostic>),
    #[error("project `{0}` has no repository; set one with `flightdeck project set-repository`")]
    NoRepository(String),
    #[error(transparent)]
    Git(#[from] super::git::GitError),
    #[error("`{0}` is not a full 40-character commit id")]
    BadCommit(String),
    #[error("the pipeline has no jobs to run before its first deploy stage")]
    NothingToRun,
    #[error("there is no run #{number} in `{project}`")]
    UnknownRun { project: String, number: i64 },
    #[error("run #{number} has no job `{job}`")]
    UnknownJob { number: i64, job: String },
    #[error(transparent)]
    Transition(#[from] InvalidTransition),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// A run that exists now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    pub run_id: Uuid,
    pub number: i64,
    /// False when the idempotency key matched an earlier run, which is returned instead.
    pub created: bool,
}

#[derive(Clone)]
pub struct Runs {
    pool: PgPool,
    clock: SharedClock,
}

impl Runs {
    pub fn new(pool: PgPool) -> Self {
        Runs {
            pool,
            clock: system(),
        }
    }

    /// The same store reading time from `clock`.
    pub fn with_clock(self, clock: SharedClock) -> Self {
        Runs { clock, ..self }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Creates a run of `commit`, with the definition at that commit when given (else the
    /// project's current one), and queues what can start.
    #[allow(clippy::too_many_arguments)]
    pub async fn create(
        &self,
        project_key: &str,
        commit: &Commit,
        trigger: Trigger,
        actor: Actor,
        origin: &Origin,
        idempotency_key: Option<&str>,
        definition_at_commit: Option<&str>,
    ) -> Result<Created, RunError> {
        if commit.sha.len() != 40
            || !commit
                .sha
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        {
            return Err(RunError::BadCommit(commit.sha.clone()));
        }
        let mut tx = self.pool.begin().await?;
        let project = sqlx::query!(
            "select project_id from project where project_key = $1 for update",
            project_key
        )
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| RunError::UnknownProject(project_key.to_string()))?;
        if let Some(key) = idempotency_key {
            let existing = sqlx::query!(
                "select run_id, number from run where project_id = $1 and idempotency_key = $2",
                project.project_id,
                key
            )
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(run) = existing {
                return Ok(Created {
                    run_id: run.run_id,
                    number: run.number,
                    created: false,
                });
            }
        }
        let (definition_version_id, source) = match definition_at_commit {
            Some(source) => {
                definition::parse(source).map_err(RunError::InvalidDefinition)?;
                (
                    store_definition(&mut tx, project.project_id, source, &commit.sha).await?,
                    source.to_string(),
                )
            }
            None => {
                let row = sqlx::query!(
                    r#"select d.definition_version_id, d.source from project p
                       join definition_version d on d.definition_version_id = p.current_definition_version_id
                       where p.project_id = $1"#,
                    project.project_id
                )
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| RunError::NoDefinition(project_key.to_string()))?;
                (row.definition_version_id, row.source)
            }
        };
        let parsed = definition::parse(&source).map_err(RunError::InvalidDefinition)?;
        let plan = plan_run(&parsed);
        if plan.iter().all(|s| s.jobs.is_empty()) {
            return Err(RunError::NothingToRun);
        }
        let (run_id, number) = insert_run(
            &mut tx,
            NewRun {
                project_id: project.project_id,
                definition_version_id,
                trigger,
                triggered_by: &actor.name,
                commit,
                idempotency_key,
                deployment_stage_id: None,
            },
            &plan,
        )
        .await?;
        AuditRecord::new(actor, "run.created", origin)
            .target(format!("{project_key}#{number}"))
            .details(json!({ "trigger": trigger.as_str(), "commit": commit.sha, "branch": commit.branch }))
            .write(&mut *tx)
            .await?;
        advance(&mut tx, run_id, self.clock.now()).await?;
        tx.commit().await?;
        Ok(Created {
            run_id,
            number,
            created: true,
        })
    }

    /// Moves a run on after something changed outside a transaction of ours (a runner
    /// registering with new labels, for instance).
    pub async fn advance(&self, run_id: Uuid) -> Result<(), RunError> {
        let mut tx = self.pool.begin().await?;
        advance(&mut tx, run_id, self.clock.now()).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Cancels a run: jobs not started are canceled at once, running ones are told to stop
    /// (their runner kills the processes and reports back). Returns false when nothing was left
    /// to cancel.
    pub async fn cancel(
        &self,
        run_id: Uuid,
        actor: Actor,
        origin: &Origin,
    ) -> Result<bool, RunError> {
        let now = self.clock.now();
        let mut tx = self.pool.begin().await?;
        lock_run(&mut tx, run_id).await?;
        let mut changed = 0;
        for (job_id, record) in load_jobs(&mut tx, run_id).await? {
            if matches!(
                record.state,
                RunState::Waiting | RunState::Queued | RunState::Running
            ) {
                let next = record.apply(&JobEvent::Cancel, now)?;
                if next != record {
                    save_job(&mut tx, job_id, &next).await?;
                    changed += 1;
                }
            }
        }
        if changed > 0 {
            let target = run_label(&mut tx, run_id).await?;
            AuditRecord::new(actor, "run.canceled", origin)
                .target(target)
                .write(&mut *tx)
                .await?;
            advance(&mut tx, run_id, now).await?;
        }
        tx.commit().await?;
        Ok(changed > 0)
    }

    /// Runs a failed, canceled or skipped job again (with its full number of attempts), and the
    /// jobs that were skipped or canceled with it. With `job` = None, every job of the run that
    /// did not succeed. Returns how many jobs will run again.
    pub async fn rerun(
        &self,
        run_id: Uuid,
        job: Option<&str>,
        actor: Actor,
        origin: &Origin,
    ) -> Result<usize, RunError> {
        let now = self.clock.now();
        let mut tx = self.pool.begin().await?;
        lock_run(&mut tx, run_id).await?;
        let names = sqlx::query!("select job_id, name from job where run_id = $1", run_id)
            .fetch_all(&mut *tx)
            .await?;
        let jobs = load_jobs(&mut tx, run_id).await?;
        let name_of = |id: Uuid| {
            names
                .iter()
                .find(|n| n.job_id == id)
                .map(|n| n.name.as_str())
        };
        if let Some(name) = job {
            let Some((_, chosen)) = jobs.iter().find(|(id, _)| name_of(*id) == Some(name)) else {
                let number =
                    sqlx::query_scalar!("select number from run where run_id = $1", run_id)
                        .fetch_one(&mut *tx)
                        .await?;
                return Err(RunError::UnknownJob {
                    number,
                    job: name.to_string(),
                });
            };
            chosen.apply(&JobEvent::Rerun, now)?;
        }
        let mut again = 0;
        for (job_id, record) in &jobs {
            let chosen = job.is_some() && job == name_of(*job_id);
            let follows = matches!(record.state, RunState::Skipped | RunState::Canceled);
            let whole_run = job.is_none() && record.state != RunState::Succeeded;
            if chosen || follows || whole_run {
                save_job(&mut tx, *job_id, &record.apply(&JobEvent::Rerun, now)?).await?;
                again += 1;
            }
        }
        let target = run_label(&mut tx, run_id).await?;
        AuditRecord::new(actor, "run.rerun", origin)
            .target(target)
            .details(json!({ "job": job, "jobs_again": again }))
            .write(&mut *tx)
            .await?;
        sqlx::query!(
            "update run set finished_at = null where run_id = $1",
            run_id
        )
        .execute(&mut *tx)
        .await?;
        advance(&mut tx, run_id, now).await?;
        tx.commit().await?;
        Ok(again)
    }

    /// Starts a run of a branch's head (or `commit`) in the project's repository, with the
    /// flightdeck.yml at that commit. Shared by the API, the page's button and git hooks.
    #[allow(clippy::too_many_arguments)]
    pub async fn start(
        &self,
        project_key: &str,
        branch: &str,
        commit: Option<&str>,
        trigger: Trigger,
        actor: Actor,
        origin: &Origin,
        idempotency_key: Option<&str>,
    ) -> Result<Created, RunError> {
        let repository = sqlx::query_scalar!(
            "select repository from project where project_key = $1",
            project_key
        )
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| RunError::UnknownProject(project_key.to_string()))?
        .ok_or_else(|| RunError::NoRepository(project_key.to_string()))?;
        let commit = super::git::commit(&repository, commit.unwrap_or(branch), branch).await?;
        let definition = super::git::file_at(&repository, &commit.sha, "flightdeck.yml").await?;
        self.create(
            project_key,
            &commit,
            trigger,
            actor,
            origin,
            idempotency_key,
            definition.as_deref(),
        )
        .await
    }

    /// Starts a run of a pushed commit whose details came with a webhook's payload (GitHub's
    /// push event), once per delivery: the delivery id is the idempotency key. The commit's
    /// flightdeck.yml is used when the project's repository is on this machine, else the
    /// project's current definition.
    pub async fn start_from_push_payload(
        &self,
        project_key: &str,
        commit: &Commit,
        delivery: Option<&str>,
        origin: &Origin,
    ) -> Result<Created, RunError> {
        let repository = sqlx::query_scalar!(
            "select repository from project where project_key = $1",
            project_key
        )
        .fetch_optional(&self.pool)
        .await?
        .flatten();
        let definition = match repository.as_deref().filter(|r| super::git::is_local(r)) {
            Some(repository) => super::git::file_at(repository, &commit.sha, "flightdeck.yml")
                .await
                .ok()
                .flatten(),
            None => None,
        };
        let actor = Actor {
            kind: "system",
            id: None,
            name: "github-webhook".into(),
        };
        self.create(
            project_key,
            commit,
            Trigger::Webhook,
            actor,
            origin,
            delivery,
            definition.as_deref(),
        )
        .await
    }

    /// The run id for a project's run number.
    pub async fn find(&self, project_key: &str, number: i64) -> Result<Uuid, RunError> {
        sqlx::query_scalar!(
            "select r.run_id from run r join project p using (project_id) where p.project_key = $1 and r.number = $2",
            project_key,
            number
        )
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| RunError::UnknownRun { project: project_key.to_string(), number })
    }
}

/// Stores the definition found at a commit as a version of the project's definition (once per
/// text) for the run to use. It does not become the project's current one: only a definition
/// upload or the operator moves that pointer (see `crate::project::load_definition`).
async fn store_definition(
    tx: &mut Transaction<'_, Postgres>,
    project_id: Uuid,
    source: &str,
    commit: &str,
) -> Result<i64, sqlx::Error> {
    use sha2::{Digest, Sha256};
    let sha = hex::encode(Sha256::digest(source.as_bytes()));
    if let Some(id) = sqlx::query_scalar!(
        "select definition_version_id from definition_version where project_id = $1 and sha256 = $2",
        project_id,
        sha
    )
    .fetch_optional(&mut **tx)
    .await?
    {
        return Ok(id);
    }
    sqlx::query_scalar!(
        r#"insert into definition_version (project_id, source, sha256, origin, loaded_by)
           values ($1, $2, $3, $4, 'flightdeck') returning definition_version_id"#,
        project_id,
        source,
        sha,
        format!("commit {commit}"),
    )
    .fetch_one(&mut **tx)
    .await
}

pub(crate) async fn lock_run(
    tx: &mut Transaction<'_, Postgres>,
    run_id: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "select run_id from run where run_id = $1 for update",
        run_id
    )
    .fetch_one(&mut **tx)
    .await?;
    Ok(())
}

async fn run_label(
    tx: &mut Transaction<'_, Postgres>,
    run_id: Uuid,
) -> Result<String, sqlx::Error> {
    let row = sqlx::query!(
        "select p.project_key, r.number from run r join project p using (project_id) where r.run_id = $1",
        run_id
    )
    .fetch_one(&mut **tx)
    .await?;
    Ok(format!("{}#{}", row.project_key, row.number))
}

/// One job's record, locked until the transaction ends. The caller holds the run's lock (see
/// the lock order above) unless it touches this job alone.
pub(super) async fn load_job(
    tx: &mut Transaction<'_, Postgres>,
    job_id: Uuid,
) -> Result<Option<JobRecord>, sqlx::Error> {
    sqlx::query_as!(
        JobRecord,
        r#"select state as "state: RunState", reason, attempt, max_attempts, infrastructure_requeues,
                  runner_id, lease_expires_at, cancel_requested, exit_code, not_before,
                  queued_at, started_at, finished_at
           from job where job_id = $1 for update"#,
        job_id
    )
    .fetch_optional(&mut **tx)
    .await
}

/// Every job of a run with its record, in order, locked. The caller holds the run's lock.
pub(super) async fn load_jobs(
    tx: &mut Transaction<'_, Postgres>,
    run_id: Uuid,
) -> Result<Vec<(Uuid, JobRecord)>, sqlx::Error> {
    Ok(sqlx::query!(
        r#"select job_id, state as "state: RunState", reason, attempt, max_attempts, infrastructure_requeues,
                  runner_id, lease_expires_at, cancel_requested, exit_code, not_before,
                  queued_at, started_at, finished_at
           from job where run_id = $1 order by position for update"#,
        run_id
    )
    .fetch_all(&mut **tx)
    .await?
    .into_iter()
    .map(|r| {
        (
            r.job_id,
            JobRecord {
                state: r.state,
                reason: r.reason,
                attempt: r.attempt,
                max_attempts: r.max_attempts,
                infrastructure_requeues: r.infrastructure_requeues,
                runner_id: r.runner_id,
                lease_expires_at: r.lease_expires_at,
                cancel_requested: r.cancel_requested,
                exit_code: r.exit_code,
                not_before: r.not_before,
                queued_at: r.queued_at,
                started_at: r.started_at,
                finished_at: r.finished_at,
            },
        )
    })
    .collect())
}

/// A run to insert: the CI part of a commit, or a deployment stage's jobs.
pub struct NewRun<'a> {
    pub project_id: Uuid,
    pub definition_version_id: i64,
    pub trigger: Trigger,
    pub triggered_by: &'a str,
    pub commit: &'a Commit,
    pub idempotency_key: Option<&'a str>,
    pub deployment_stage_id: Option<Uuid>,
}

/// Inserts a run with its stages and jobs, all waiting, numbered next in its project. The caller
/// holds the project's row lock (numbers) and advances the run afterwards.
pub async fn insert_run(
    tx: &mut PgConnection,
    run: NewRun<'_>,
    plan: &[PlannedStage],
) -> Result<(Uuid, i64), sqlx::Error> {
    let number = sqlx::query_scalar!(
        r#"select coalesce(max(number), 0) + 1 as "n!" from run where project_id = $1"#,
        run.project_id
    )
    .fetch_one(&mut *tx)
    .await?;
    let run_id = sqlx::query_scalar!(
        r#"insert into run (project_id, number, state, definition_version_id, trigger, triggered_by,
                            commit_sha, branch, commit_author, commit_message, idempotency_key,
                            deployment_stage_id)
           values ($1, $2, 'waiting', $3, $4, $5, $6, $7, $8, $9, $10, $11) returning run_id"#,
        run.project_id,
        number,
        run.definition_version_id,
        run.trigger.as_str(),
        run.triggered_by,
        run.commit.sha,
        run.commit.branch,
        run.commit.author,
        run.commit.message,
        run.idempotency_key,
        run.deployment_stage_id,
    )
    .fetch_one(&mut *tx)
    .await?;
    for (stage_position, stage) in plan.iter().enumerate() {
        let stage_id = sqlx::query_scalar!(
            r#"insert into run_stage (run_id, name, title, position, needs, state)
               values ($1, $2, $3, $4, $5, 'waiting') returning run_stage_id"#,
            run_id,
            stage.name,
            stage.title,
            stage_position as i32,
            &stage.needs,
        )
        .fetch_one(&mut *tx)
        .await?;
        for (position, job) in stage.jobs.iter().enumerate() {
            sqlx::query!(
                r#"insert into job (run_id, run_stage_id, name, position, needs, runs_on, state, spec,
                                    max_attempts, allow_failure, optional)
                   values ($1, $2, $3, $4, $5, $6, 'waiting', $7, $8, $9, $10)"#,
                run_id,
                stage_id,
                job.name,
                (stage_position * 1000 + position) as i32,
                &job.needs,
                &job.runs_on,
                serde_json::to_value(&job.spec).expect("a job spec serializes"),
                job.max_attempts,
                job.allow_failure,
                job.optional,
            )
            .execute(&mut *tx)
            .await?;
        }
    }
    Ok((run_id, number))
}

/// The one place a job's record is written.
pub(super) async fn save_job(
    tx: &mut Transaction<'_, Postgres>,
    job_id: Uuid,
    job: &JobRecord,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "update job set state = $2, reason = $3, attempt = $4, infrastructure_requeues = $5,
                runner_id = $6, lease_expires_at = $7, cancel_requested = $8, exit_code = $9,
                not_before = $10, queued_at = $11, started_at = $12, finished_at = $13
         where job_id = $1",
        job_id,
        job.state as RunState,
        job.reason,
        job.attempt,
        job.infrastructure_requeues,
        job.runner_id,
        job.lease_expires_at,
        job.cancel_requested,
        job.exit_code,
        job.not_before,
        job.queued_at,
        job.started_at,
        job.finished_at,
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Queues what may start, skips what cannot, and brings stage and run states up to date. The
/// caller holds the transaction; this takes the run's row lock.
pub async fn advance(
    tx: &mut Transaction<'_, Postgres>,
    run_id: Uuid,
    now: DateTime<Utc>,
) -> Result<(), RunError> {
    lock_run(tx, run_id).await?;
    let stages = sqlx::query!(
        r#"select run_stage_id, name, needs, state as "state: RunState" from run_stage where run_id = $1 order by position"#,
        run_id
    )
    .fetch_all(&mut **tx)
    .await?;
    let shapes = sqlx::query!(
        r#"select j.job_id, s.name as stage, j.name, j.needs, j.runs_on, j.allow_failure, j.optional
           from job j join run_stage s using (run_stage_id) where j.run_id = $1 order by j.position"#,
        run_id
    )
    .fetch_all(&mut **tx)
    .await?;
    let mut records = load_jobs(tx, run_id).await?;
    let runner_labels: Vec<Vec<String>> = sqlx::query_scalar!(
        "select labels from runner where last_seen_at > now() - interval '60 seconds'"
    )
    .fetch_all(&mut **tx)
    .await?;
    let stage_nodes: Vec<StageNode> = stages
        .iter()
        .map(|s| StageNode {
            name: s.name.clone(),
            needs: s.needs.clone(),
        })
        .collect();
    let nodes: Vec<JobNode> = shapes
        .iter()
        .zip(&records)
        .map(|(j, (_, record))| JobNode {
            stage: j.stage.clone(),
            name: j.name.clone(),
            needs: j.needs.clone(),
            runs_on: j.runs_on.clone(),
            state: record.state,
            allow_failure: j.allow_failure,
            optional: j.optional,
            reason: record.reason.clone(),
        })
        .collect();
    for step in progress(&stage_nodes, &nodes, &runner_labels) {
        let (job_id, record) = &mut records[step.job];
        let event = match step.event {
            Some(Event::Ready) => JobEvent::Ready {
                reason: step.reason,
            },
            Some(Event::Skip) => JobEvent::Skip {
                reason: step.reason,
            },
            Some(other) => {
                return Err(RunError::Transition(InvalidTransition {
                    from: record.state,
                    event: other,
                }));
            }
            None => JobEvent::Explain {
                reason: step.reason,
            },
        };
        let next = record.apply(&event, now)?;
        if next != *record {
            save_job(tx, *job_id, &next).await?;
            *record = next;
        }
    }
    for stage in &stages {
        let members: Vec<Member> = shapes
            .iter()
            .zip(&records)
            .filter(|(j, _)| j.stage == stage.name)
            .map(|(j, (_, record))| Member {
                state: record.state,
                allow_failure: j.allow_failure,
            })
            .collect();
        let state = aggregate(&members);
        if state != stage.state {
            sqlx::query!(
                "update run_stage set state = $2,
                        started_at = coalesce(started_at, case when $2 in ('running', 'succeeded', 'failed') then now() end),
                        finished_at = case when $2 in ('succeeded', 'failed', 'canceled', 'skipped') then now() else null end
                 where run_stage_id = $1",
                stage.run_stage_id,
                state.as_str()
            )
            .execute(&mut **tx)
            .await?;
        }
    }
    let members: Vec<Member> = shapes
        .iter()
        .zip(&records)
        .map(|(j, (_, record))| Member {
            state: record.state,
            allow_failure: j.allow_failure,
        })
        .collect();
    let state = aggregate(&members);
    let changed = sqlx::query!(
        "update run set state = $2,
                started_at = coalesce(started_at, case when $2 in ('running', 'succeeded', 'failed') then now() end),
                finished_at = case when $2 in ('succeeded', 'failed', 'canceled', 'skipped') then coalesce(finished_at, now()) else null end
         where run_id = $1 and state is distinct from $2",
        run_id,
        state.as_str()
    )
    .execute(&mut **tx)
    .await?
    .rows_affected()
        == 1;
    if changed && state == RunState::Succeeded {
        // The transaction that sees the run succeed makes its release (once: one run, one
        // release), whichever replica finished the last job.
        crate::release::store::on_run_succeeded(tx, run_id, now).await?;
    }
    Ok(())
}
