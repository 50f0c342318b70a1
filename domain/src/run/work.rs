//! The runner side of the store: registering runners, claiming jobs exactly once, leases,
//! logs and results. Any number of server replicas and runners can ask at once: a claim takes
//! the run's lock and then the job's (the lock order in [`super::store`]), so each job goes to
//! one runner, and every job change goes through [`JobRecord::apply`].
//!
//! Every call is bound to a runner ([`Work::bind`]): a runner token acts only for the runner it
//! registered, never for another, so one machine's token cannot renew, finish or upload for a
//! job another machine holds.

use super::job::{JobEvent, JobRecord};
use super::protocol::{ClaimedJob, LogLine, Outcome};
use super::spec::JobSpec;
use super::store::{RunError, advance, load_job, lock_run, save_job};
use crate::audit::{Actor, AuditRecord, Origin, Outcome as AuditOutcome};
use crate::clock::{SharedClock, system};
use crate::state::RunState;
use serde_json::json;
use sqlx::PgPool;
use std::collections::BTreeMap;
use std::time::Duration;
use uuid::Uuid;

/// Why a runner's call was refused.
#[derive(Debug, thiserror::Error)]
pub enum WorkError {
    #[error(
        "this runner no longer holds the job (its lease ran out, or it was canceled and finished)"
    )]
    LeaseLost,
    #[error("there is no runner with that id; register again")]
    UnknownRunner,
    #[error(
        "this token belongs to another runner; a runner acts only with the token it registered with"
    )]
    NotYourRunner,
    #[error(
        "runner name `{0}` is taken by a runner with another token; choose another name or revoke that token"
    )]
    NameTaken(String),
    /// A value out of range (a line number, an attempt), said where.
    #[error("{0}")]
    BadRequest(String),
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
    clock: SharedClock,
}

/// Who is making a runner call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunnerCaller {
    /// A machine with a `runner` token: it acts only for the runner it registered.
    Token(Uuid),
    /// An admin, debugging: may act for any runner.
    Admin,
}

/// A runner the caller was checked to act for ([`Work::bind`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoundRunner {
    pub runner_id: Uuid,
}

/// A runner's hold on one attempt of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    pub job_id: Uuid,
    pub runner: BoundRunner,
    pub attempt: i32,
}

impl Work {
    pub fn new(pool: PgPool, secrets: Secrets, lease: Duration) -> Self {
        Work {
            pool,
            secrets,
            lease,
            clock: system(),
        }
    }

    /// The same service reading time from `clock` (leases and backoffs are on it).
    pub fn with_clock(self, clock: SharedClock) -> Self {
        Work { clock, ..self }
    }

    fn lease(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.lease).unwrap_or(chrono::Duration::seconds(30))
    }

    /// Registers a runner (or updates one of the same name) and moves on runs whose jobs may
    /// now have a runner. A name held by a runner whose token is still valid and not the
    /// caller's is refused: registering is no way to take over another machine's runner.
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
                   api_token_id = coalesce(excluded.api_token_id, runner.api_token_id), last_seen_at = now()
               where excluded.api_token_id is null
                  or runner.api_token_id is null
                  or runner.api_token_id = excluded.api_token_id
                  or not exists (select 1 from api_token t where t.api_token_id = runner.api_token_id
                                 and t.revoked_at is null and (t.expires_at is null or t.expires_at > now()))
               returning runner_id"#,
            name,
            labels,
            version,
            token,
        )
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| WorkError::NameTaken(name.to_string()))?;
        let waiting = sqlx::query_scalar!(
            "select distinct run_id from job where state in ('waiting', 'queued')"
        )
        .fetch_all(&self.pool)
        .await?;
        for run in waiting {
            let mut tx = self.pool.begin().await?;
            advance(&mut tx, run, self.clock.now()).await?;
            tx.commit().await?;
        }
        Ok(id)
    }

    /// Checks that `caller` may act for runner `runner_id`: a token only for the runner it
    /// registered. A refusal is audited as a security event.
    pub async fn bind(
        &self,
        runner_id: Uuid,
        caller: RunnerCaller,
        actor: Actor,
        origin: &Origin,
    ) -> Result<BoundRunner, WorkError> {
        let owner = sqlx::query_scalar!(
            "select api_token_id from runner where runner_id = $1",
            runner_id
        )
        .fetch_optional(&self.pool)
        .await?
        .ok_or(WorkError::UnknownRunner)?;
        match caller {
            RunnerCaller::Admin => Ok(BoundRunner { runner_id }),
            RunnerCaller::Token(token) if owner == Some(token) => Ok(BoundRunner { runner_id }),
            RunnerCaller::Token(_) => {
                AuditRecord::new(actor, "runner.refused", origin)
                    .outcome(AuditOutcome::Denied)
                    .security()
                    .target(format!("runner {runner_id}"))
                    .details(json!({ "reason": "the token belongs to another runner" }))
                    .write(&self.pool)
                    .await?;
                Err(WorkError::NotYourRunner)
            }
        }
    }

    /// The runner a token registered, when it registered exactly one.
    pub async fn runner_of_token(&self, token: Uuid) -> Result<Option<Uuid>, WorkError> {
        let ids = sqlx::query_scalar!(
            "select runner_id from runner where api_token_id = $1 limit 2",
            token
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(if ids.len() == 1 { Some(ids[0]) } else { None })
    }

    /// Claims the oldest queued job this runner has the labels for, or None.
    pub async fn claim(&self, runner: BoundRunner) -> Result<Option<ClaimedJob>, WorkError> {
        let runner_id = runner.runner_id;
        let labels = sqlx::query_scalar!(
            "update runner set last_seen_at = now() where runner_id = $1 returning labels",
            runner_id
        )
        .fetch_optional(&self.pool)
        .await?
        .ok_or(WorkError::UnknownRunner)?;
        // Lock order: the run, then its job. Pick a candidate without locks, lock its run, and
        // take the run's first claimable job (another runner may have taken the candidate).
        let now = self.clock.now();
        for _ in 0..16 {
            let Some(candidate) = sqlx::query_scalar!(
                r#"select run_id from job
                   where state = 'queued' and runs_on <@ $1 and not cancel_requested
                     and (not_before is null or not_before <= $2)
                   order by queued_at, position limit 1"#,
                &labels,
                now
            )
            .fetch_optional(&self.pool)
            .await?
            else {
                return Ok(None);
            };
            let mut tx = self.pool.begin().await?;
            lock_run(&mut tx, candidate).await?;
            let Some(job) = sqlx::query!(
                r#"select job_id, name, spec from job
                   where run_id = $1 and state = 'queued' and runs_on <@ $2 and not cancel_requested
                     and (not_before is null or not_before <= $3)
                   order by queued_at, position limit 1 for update"#,
                candidate,
                &labels,
                now
            )
            .fetch_optional(&mut *tx)
            .await?
            else {
                continue;
            };
            let record = load_job(&mut tx, job.job_id)
                .await?
                .ok_or(WorkError::LeaseLost)?;
            let running = record.apply(
                &JobEvent::Claim {
                    runner: runner_id,
                    lease: self.lease(),
                },
                now,
            )?;
            save_job(&mut tx, job.job_id, &running).await?;
            advance(&mut tx, candidate, now).await?;
            let run = sqlx::query!(
                r#"select p.project_key, p.repository, r.number, r.commit_sha, r.branch
                   from run r join project p using (project_id) where r.run_id = $1"#,
                candidate
            )
            .fetch_one(&mut *tx)
            .await?;
            tx.commit().await?;
            let attempt = Attempt {
                job_id: job.job_id,
                runner,
                attempt: running.attempt,
            };
            return self
                .hand_over(
                    attempt,
                    job.name,
                    job.spec,
                    run.project_key,
                    run.repository,
                    run.number,
                    run.commit_sha,
                    run.branch,
                )
                .await;
        }
        Ok(None)
    }

    /// What the runner gets for a claimed job, or — when the server cannot give it what the job
    /// needs (a secret, a repository) — the job failed with the reason and the next claim.
    #[allow(clippy::too_many_arguments)]
    async fn hand_over(
        &self,
        attempt: Attempt,
        job_name: String,
        spec: serde_json::Value,
        project: String,
        repository: Option<String>,
        run_number: i64,
        commit_sha: String,
        branch: String,
    ) -> Result<Option<ClaimedJob>, WorkError> {
        let spec: JobSpec =
            serde_json::from_value(spec).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
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
            self.finish(attempt, Outcome::Failed, None, Some(&reason))
                .await?;
            return Box::pin(self.claim(attempt.runner)).await;
        }
        let Some(repository) = repository else {
            let reason = "the project has no repository to check out; set one with `flightdeck project set-repository`";
            self.finish(attempt, Outcome::Failed, None, Some(reason))
                .await?;
            return Box::pin(self.claim(attempt.runner)).await;
        };
        Ok(Some(ClaimedJob {
            job_id: attempt.job_id,
            attempt: attempt.attempt,
            project,
            run_number,
            job_name,
            repository,
            commit_sha,
            branch,
            spec,
            secrets,
        }))
    }

    /// Renews a lease; says whether the job was canceled.
    pub async fn heartbeat(&self, attempt: Attempt) -> Result<bool, WorkError> {
        sqlx::query!(
            "update runner set last_seen_at = now() where runner_id = $1",
            attempt.runner.runner_id
        )
        .execute(&self.pool)
        .await?;
        // One job only: its lock alone (see the lock order).
        let mut tx = self.pool.begin().await?;
        let record = held(&mut tx, attempt).await?;
        let renewed = record.apply(
            &JobEvent::Renew {
                lease: self.lease(),
            },
            self.clock.now(),
        )?;
        save_job(&mut tx, attempt.job_id, &renewed).await?;
        tx.commit().await?;
        Ok(renewed.cancel_requested)
    }

    /// Stores a batch of log lines, numbered from `first_line` (a batch sent twice lands once)
    /// or after the ones already stored, and tells the pages.
    pub async fn append_log(
        &self,
        attempt: Attempt,
        first_line: Option<i32>,
        lines: &[LogLine],
    ) -> Result<(), WorkError> {
        let count = i32::try_from(lines.len())
            .map_err(|_| WorkError::BadRequest("too many lines in one batch".into()))?;
        if let Some(first) = first_line
            && (first < 1 || first.checked_add(count).is_none())
        {
            return Err(WorkError::BadRequest(format!(
                "first_line {first} is out of range: lines are numbered from 1 to {}",
                i32::MAX - count
            )));
        }
        let job_id = attempt.job_id;
        let mut tx = self.pool.begin().await?;
        held(&mut tx, attempt).await?;
        let last = match first_line {
            Some(first) => first - 1,
            None => {
                sqlx::query_scalar!(
                    r#"select coalesce(max(line_no), 0) as "n!" from log_line where job_id = $1 and attempt = $2"#,
                    job_id,
                    attempt.attempt
                )
                .fetch_one(&mut *tx)
                .await?
            }
        };
        if last.checked_add(count).is_none() {
            return Err(WorkError::BadRequest(
                "this log has as many lines as it can hold".into(),
            ));
        }
        insert_lines(&mut tx, job_id, attempt.attempt, last, lines).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records how an attempt ended: success, failure (retried while attempts remain) or
    /// cancellation.
    pub async fn finish(
        &self,
        attempt: Attempt,
        outcome: Outcome,
        exit_code: Option<i32>,
        reason: Option<&str>,
    ) -> Result<(), WorkError> {
        let now = self.clock.now();
        let mut tx = self.pool.begin().await?;
        let run_id =
            sqlx::query_scalar!("select run_id from job where job_id = $1", attempt.job_id)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or(WorkError::LeaseLost)?;
        lock_run(&mut tx, run_id).await?;
        let record = load_job(&mut tx, attempt.job_id)
            .await?
            .ok_or(WorkError::LeaseLost)?;
        if !holds(&record, attempt) {
            // A finish sent again after its answer was lost finds its own result already stored.
            return if already_finished(&record, attempt, outcome) {
                Ok(())
            } else {
                Err(WorkError::LeaseLost)
            };
        }
        let next = record.apply(
            &JobEvent::Finish {
                outcome,
                exit_code,
                reason: reason.map(str::to_string),
            },
            now,
        )?;
        save_job(&mut tx, attempt.job_id, &next).await?;
        advance(&mut tx, run_id, now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Takes back jobs whose runner stopped renewing its lease (see [`JobEvent::LeaseExpired`]:
    /// requeued on their own while infrastructure requeues remain, then by their retries, else
    /// failed; canceled if a cancel was asked for), each run in its own transaction, run lock
    /// first. Says so in the lost attempt's log. Returns how many.
    pub async fn reap_expired_leases(&self) -> Result<usize, WorkError> {
        let now = self.clock.now();
        let runs = sqlx::query_scalar!(
            "select distinct run_id from job where state = 'running' and lease_expires_at < $1",
            now
        )
        .fetch_all(&self.pool)
        .await?;
        let mut reaped = 0;
        for run_id in runs {
            let mut tx = self.pool.begin().await?;
            lock_run(&mut tx, run_id).await?;
            let expired = sqlx::query!(
                r#"select j.job_id, r.name as "runner?" from job j left join runner r using (runner_id)
                   where j.run_id = $1 and j.state = 'running' and j.lease_expires_at < $2
                   order by j.position"#,
                run_id,
                now
            )
            .fetch_all(&mut *tx)
            .await?;
            for job in &expired {
                let Some(record) = load_job(&mut tx, job.job_id).await? else {
                    continue;
                };
                let runner = job.runner.clone().unwrap_or_else(|| "its runner".into());
                let next = record.apply(&JobEvent::LeaseExpired { runner }, now)?;
                if let Some(reason) = &next.reason {
                    let last = sqlx::query_scalar!(
                        r#"select coalesce(max(line_no), 0) as "n!" from log_line where job_id = $1 and attempt = $2"#,
                        job.job_id,
                        record.attempt
                    )
                    .fetch_one(&mut *tx)
                    .await?;
                    let line = LogLine {
                        stream: super::protocol::Stream::System,
                        text: format!("flightdeck: this attempt was lost: {reason}"),
                    };
                    insert_lines(&mut tx, job.job_id, record.attempt, last, &[line]).await?;
                }
                save_job(&mut tx, job.job_id, &next).await?;
                reaped += 1;
            }
            if !expired.is_empty() {
                advance(&mut tx, run_id, now).await?;
            }
            tx.commit().await?;
        }
        Ok(reaped)
    }

    /// The state of a job, for tests and the API.
    pub async fn job_state(&self, job_id: Uuid) -> Result<RunState, WorkError> {
        let state = sqlx::query_scalar!(
            r#"select state as "state: RunState" from job where job_id = $1"#,
            job_id
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(state)
    }
}

/// The job's record if `attempt` still holds it (locked), else [`WorkError::LeaseLost`].
async fn held(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    attempt: Attempt,
) -> Result<JobRecord, WorkError> {
    load_job(tx, attempt.job_id)
        .await?
        .filter(|record| holds(record, attempt))
        .ok_or(WorkError::LeaseLost)
}

fn holds(record: &JobRecord, attempt: Attempt) -> bool {
    record.state == RunState::Running
        && record.runner_id == Some(attempt.runner.runner_id)
        && record.attempt == attempt.attempt
}

/// Stores lines numbered after `last` (a line already stored under its number stays) and tells
/// the pages.
async fn insert_lines(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    job_id: Uuid,
    attempt: i32,
    last: i32,
    lines: &[LogLine],
) -> Result<(), sqlx::Error> {
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
    .execute(&mut **tx)
    .await?;
    let payload = json!({ "topic": "log", "job_id": job_id, "attempt": attempt, "last_line": last + lines.len() as i32 });
    sqlx::query!(
        "select pg_notify('flightdeck_log', $1)",
        payload.to_string()
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Whether this runner's attempt already ended the way `outcome` says (a repeated finish).
fn already_finished(record: &JobRecord, attempt: Attempt, outcome: Outcome) -> bool {
    // A failure with retries left is queued again; its attempt number moves on at the next claim.
    let same_attempt =
        record.attempt == attempt.attempt && record.runner_id == Some(attempt.runner.runner_id);
    same_attempt
        && matches!(
            (record.state, outcome),
            (RunState::Succeeded, Outcome::Succeeded)
                | (RunState::Canceled, Outcome::Canceled | Outcome::Failed)
                | (RunState::Failed | RunState::Queued, Outcome::Failed)
        )
}
