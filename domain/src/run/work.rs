//! The runner side of the store: registering runners, claiming jobs exactly once, leases,
//! logs and results. Claims use `FOR UPDATE SKIP LOCKED`, so any number of server replicas and
//! runners can ask at once and each job goes to one of them.

use super::protocol::{ClaimedJob, LogLine, Outcome};
use super::spec::JobSpec;
use super::store::{RunError, advance, lock_run, parse_state, set_state};
use super::transition::{Event, transition};
use crate::state::RunState;
use sqlx::PgPool;
use std::collections::BTreeMap;
use std::time::Duration;
use uuid::Uuid;

/// Why a runner's call about a job was refused: the job is no longer its to work on.
#[derive(Debug, thiserror::Error)]
pub enum WorkError {
    #[error(
        "this runner no longer holds the job (its lease ran out, or it was canceled and finished)"
    )]
    LeaseLost,
    #[error("there is no runner with that id; register again")]
    UnknownRunner,
    #[error(transparent)]
    Run(#[from] RunError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl From<super::transition::InvalidTransition> for WorkError {
    fn from(e: super::transition::InvalidTransition) -> Self {
        WorkError::Run(RunError::Transition(e))
    }
}

/// Where secrets come from: the server's environment, `FLIGHTDECK_SECRET_<NAME>=value`.
#[derive(Debug, Clone, Default)]
pub struct Secrets(BTreeMap<String, String>);

impl Secrets {
    pub fn from_env() -> Self {
        Secrets(
            std::env::vars()
                .filter_map(|(k, v)| {
                    k.strip_prefix("FLIGHTDECK_SECRET_")
                        .map(|name| (name.to_string(), v))
                })
                .collect(),
        )
    }

    pub fn with(mut self, name: &str, value: &str) -> Self {
        self.0.insert(name.to_string(), value.to_string());
        self
    }
}

#[derive(Clone)]
pub struct Work {
    pool: PgPool,
    secrets: Secrets,
    lease: Duration,
}

impl Work {
    pub fn new(pool: PgPool, secrets: Secrets, lease: Duration) -> Self {
        Work {
            pool,
            secrets,
            lease,
        }
    }

    /// Registers a runner (or updates one of the same name) and moves on runs whose jobs may
    /// now have a runner.
    pub async fn register(
        &self,
        name: &str,
        labels: &[String],
        version: &str,
        token: Option<Uuid>,
    ) -> Result<Uuid, WorkError> {
        let id = sqlx::query_scalar!(
            r#"insert into runner (name, labels, version, api_token_id) values ($1, $2, $3, $4)
               on conflict (name) do update set labels = excluded.labels, version = excluded.version,
                   api_token_id = excluded.api_token_id, last_seen_at = now()
               returning runner_id"#,
            name,
            labels,
            version,
            token,
        )
        .fetch_one(&self.pool)
        .await?;
        let waiting = sqlx::query_scalar!(
            "select distinct run_id from job where state in ('waiting', 'queued')"
        )
        .fetch_all(&self.pool)
        .await?;
        for run in waiting {
            let mut tx = self.pool.begin().await?;
            super::store::advance(&mut tx, run).await?;
            tx.commit().await?;
        }
        Ok(id)
    }

    /// Claims the oldest queued job this runner has the labels for, or None.
    pub async fn claim(&self, runner_id: Uuid) -> Result<Option<ClaimedJob>, WorkError> {
        let labels = sqlx::query_scalar!(
            "update runner set last_seen_at = now() where runner_id = $1 returning labels",
            runner_id
        )
        .fetch_optional(&self.pool)
        .await?
        .ok_or(WorkError::UnknownRunner)?;
        let mut tx = self.pool.begin().await?;
        let Some(job) = sqlx::query!(
            r#"select job_id, run_id, state, attempt, name, spec from job
               where state = 'queued' and runs_on <@ $1 and not cancel_requested
               order by queued_at, position
               limit 1 for update skip locked"#,
            &labels
        )
        .fetch_optional(&mut *tx)
        .await?
        else {
            return Ok(None);
        };
        let running = transition(parse_state(&job.state), Event::Start)?;
        let attempt = job.attempt + 1;
        sqlx::query!(
            "update job set state = $2, attempt = $3, runner_id = $4, reason = null, exit_code = null,
                    lease_expires_at = now() + make_interval(secs => $5), started_at = now(), finished_at = null
             where job_id = $1",
            job.job_id,
            running.as_str(),
            attempt,
            runner_id,
            self.lease.as_secs_f64(),
        )
        .execute(&mut *tx)
        .await?;
        advance(&mut tx, job.run_id).await?;
        let run = sqlx::query!(
            r#"select p.project_key, p.repository, r.number, r.commit_sha, r.branch
               from run r join project p using (project_id) where r.run_id = $1"#,
            job.run_id
        )
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        let spec: JobSpec =
            serde_json::from_value(job.spec).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
        let mut secrets = BTreeMap::new();
        let mut missing = Vec::new();
        for name in &spec.secrets {
            match self.secrets.0.get(name) {
                Some(value) => {
                    secrets.insert(name.clone(), value.clone());
                }
                None => missing.push(name.clone()),
            }
        }
        if !missing.is_empty() {
            let reason = format!(
                "secret {} is not set on the server (set FLIGHTDECK_SECRET_{} in its environment)",
                missing.join(", "),
                missing[0]
            );
            self.finish(
                job.job_id,
                runner_id,
                attempt,
                Outcome::Failed,
                None,
                Some(&reason),
            )
            .await?;
            return Box::pin(self.claim(runner_id)).await;
        }
        let Some(repository) = run.repository else {
            let reason = "the project has no repository to check out; set one with `flightdeck project set-repository`";
            self.finish(
                job.job_id,
                runner_id,
                attempt,
                Outcome::Failed,
                None,
                Some(reason),
            )
            .await?;
            return Box::pin(self.claim(runner_id)).await;
        };
        Ok(Some(ClaimedJob {
            job_id: job.job_id,
            attempt,
            project: run.project_key,
            run_number: run.number,
            job_name: job.name,
            repository,
            commit_sha: run.commit_sha,
            branch: run.branch,
            spec,
            secrets,
        }))
    }

    /// Renews a lease; says whether the job was canceled.
    pub async fn heartbeat(
        &self,
        job_id: Uuid,
        runner_id: Uuid,
        attempt: i32,
    ) -> Result<bool, WorkError> {
        sqlx::query!(
            "update runner set last_seen_at = now() where runner_id = $1",
            runner_id
        )
        .execute(&self.pool)
        .await?;
        sqlx::query_scalar!(
            "update job set lease_expires_at = now() + make_interval(secs => $4)
             where job_id = $1 and runner_id = $2 and attempt = $3 and state = 'running'
             returning cancel_requested",
            job_id,
            runner_id,
            attempt,
            self.lease.as_secs_f64(),
        )
        .fetch_optional(&self.pool)
        .await?
        .ok_or(WorkError::LeaseLost)
    }

    /// Stores a batch of log lines, numbered from `first_line` (a batch sent twice lands once)
    /// or after the ones already stored, and tells the pages.
    pub async fn append_log(
        &self,
        job_id: Uuid,
        runner_id: Uuid,
        attempt: i32,
        first_line: Option<i32>,
        lines: &[LogLine],
    ) -> Result<(), WorkError> {
        let mut tx = self.pool.begin().await?;
        let holds = sqlx::query_scalar!(
            "select job_id from job where job_id = $1 and runner_id = $2 and attempt = $3 and state = 'running' for update",
            job_id,
            runner_id,
            attempt
        )
        .fetch_optional(&mut *tx)
        .await?;
        if holds.is_none() {
            return Err(WorkError::LeaseLost);
        }
        let last = match first_line {
            Some(first) => first - 1,
            None => {
                sqlx::query_scalar!(
                    r#"select coalesce(max(line_no), 0) as "n!" from log_line where job_id = $1 and attempt = $2"#,
                    job_id,
                    attempt
                )
                .fetch_one(&mut *tx)
                .await?
            }
        };
        let numbers: Vec<i32> = (1..=lines.len() as i32).map(|i| last + i).collect();
        let streams: Vec<String> = lines
            .iter()
            .map(|l| l.stream.as_str().to_string())
            .collect();
        // Postgres text cannot hold NUL.
        let texts: Vec<String> = lines
            .iter()
            .map(|l| l.text.replace('\0', "\u{FFFD}"))
            .collect();
        sqlx::query!(
            "insert into log_line (job_id, attempt, line_no, stream, text)
             select $1, $2, * from unnest($3::int[], $4::text[], $5::text[])
             on conflict (job_id, attempt, line_no) do nothing",
            job_id,
            attempt,
            &numbers,
            &streams,
            &texts,
        )
        .execute(&mut *tx)
        .await?;
        let payload = serde_json::json!({ "topic": "log", "job_id": job_id, "attempt": attempt, "last_line": last + lines.len() as i32 });
        sqlx::query!(
            "select pg_notify('flightdeck_log', $1)",
            payload.to_string()
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records how an attempt ended: success, failure (retried while attempts remain) or
    /// cancellation.
    pub async fn finish(
        &self,
        job_id: Uuid,
        runner_id: Uuid,
        attempt: i32,
        outcome: Outcome,
        exit_code: Option<i32>,
        reason: Option<&str>,
    ) -> Result<(), WorkError> {
        let mut tx = self.pool.begin().await?;
        let run_id = sqlx::query_scalar!("select run_id from job where job_id = $1", job_id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(WorkError::LeaseLost)?;
        lock_run(&mut tx, run_id).await?;
        let Some(job) = sqlx::query!(
            "select state, max_attempts, cancel_requested from job
             where job_id = $1 and runner_id = $2 and attempt = $3 and state = 'running' for update",
            job_id,
            runner_id,
            attempt
        )
        .fetch_optional(&mut *tx)
        .await?
        else {
            // A finish sent again after its answer was lost finds its own result already stored.
            return if already_finished(&mut tx, job_id, runner_id, attempt, outcome).await? {
                Ok(())
            } else {
                Err(WorkError::LeaseLost)
            };
        };
        let from = parse_state(&job.state);
        let (event, reason) = match outcome {
            Outcome::Succeeded => (Event::Succeed, None),
            Outcome::Canceled => (Event::Cancel, Some("canceled".to_string())),
            Outcome::Failed if job.cancel_requested => {
                (Event::Cancel, Some("canceled".to_string()))
            }
            Outcome::Failed if attempt < job.max_attempts => (
                Event::Requeue,
                Some(format!(
                    "retrying (attempt {} of {}): {}",
                    attempt + 1,
                    job.max_attempts,
                    reason.unwrap_or("failed")
                )),
            ),
            Outcome::Failed => (Event::Fail, reason.map(str::to_string)),
        };
        let state = transition(from, event)?;
        set_state(&mut tx, job_id, state, reason.as_deref()).await?;
        sqlx::query!(
            "update job set exit_code = $2 where job_id = $1",
            job_id,
            exit_code
        )
        .execute(&mut *tx)
        .await?;
        advance(&mut tx, run_id).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Takes back jobs whose runner stopped renewing its lease: requeued while attempts remain,
    /// failed otherwise, canceled if a cancel was asked for. Returns how many.
    pub async fn reap_expired_leases(&self) -> Result<usize, WorkError> {
        let mut tx = self.pool.begin().await?;
        let expired = sqlx::query!(
            r#"select j.job_id, j.run_id, j.state, j.attempt, j.max_attempts, j.cancel_requested, r.name as "runner?"
               from job j left join runner r using (runner_id)
               where j.state = 'running' and j.lease_expires_at < now()
               for update of j skip locked"#
        )
        .fetch_all(&mut *tx)
        .await?;
        for job in &expired {
            let runner = job.runner.as_deref().unwrap_or("its runner");
            let (event, reason) = if job.cancel_requested {
                (
                    Event::Cancel,
                    format!("canceled ({runner} stopped answering)"),
                )
            } else if job.attempt < job.max_attempts {
                (
                    Event::Requeue,
                    format!(
                        "retrying: {runner} stopped answering (attempt {} of {})",
                        job.attempt + 1,
                        job.max_attempts
                    ),
                )
            } else {
                (
                    Event::Fail,
                    format!("{runner} stopped answering and no attempts remain"),
                )
            };
            let state = transition(parse_state(&job.state), event)?;
            set_state(&mut tx, job.job_id, state, Some(&reason)).await?;
        }
        let mut runs: Vec<Uuid> = expired.iter().map(|j| j.run_id).collect();
        runs.dedup();
        for run in runs {
            advance(&mut tx, run).await?;
        }
        tx.commit().await?;
        Ok(expired.len())
    }

    /// The state of a job, for tests and the API.
    pub async fn job_state(&self, job_id: Uuid) -> Result<RunState, WorkError> {
        let state = sqlx::query_scalar!("select state from job where job_id = $1", job_id)
            .fetch_one(&self.pool)
            .await?;
        Ok(parse_state(&state))
    }
}

/// Whether this runner's attempt already ended the way `outcome` says (a repeated finish).
async fn already_finished(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    job_id: Uuid,
    runner_id: Uuid,
    attempt: i32,
    outcome: Outcome,
) -> Result<bool, sqlx::Error> {
    let state = sqlx::query_scalar!(
        "select state from job where job_id = $1 and runner_id = $2 and attempt = $3",
        job_id,
        runner_id,
        attempt
    )
    .fetch_optional(&mut **tx)
    .await?;
    Ok(matches!(
        (state.as_deref().map(parse_state), outcome),
        (Some(RunState::Succeeded), Outcome::Succeeded)
            | (
                Some(RunState::Canceled),
                Outcome::Canceled | Outcome::Failed
            )
            | (Some(RunState::Failed | RunState::Queued), Outcome::Failed)
    ))
}
