//! Reading runs for pages and the API. Every query walks an index (run by project and number,
//! by state, branch or trigger; jobs by run; log lines by job and line), so pages stay as fast
//! with a million runs as with ten.

use super::spec::JobSpec;
use super::store::RunError;
use crate::run_view::{
    ArtifactInfo, JobDetail, JobSummary, LogLineView, LogPage, RunDetail, RunFilter, RunPage,
    RunSummary, StageRun,
};
use crate::state::RunState;
use chrono::Utc;
use sqlx::PgPool;
use uuid::Uuid;

/// Lines per page of a job's log.
pub const LOG_PAGE_LINES: i64 = 1000;

struct RunRow {
    run_id: Uuid,
    project_key: String,
    number: i64,
    state: RunState,
    trigger: String,
    triggered_by: String,
    commit_sha: String,
    branch: String,
    commit_author: String,
    commit_message: String,
    created_at: chrono::DateTime<Utc>,
    started_at: Option<chrono::DateTime<Utc>>,
    finished_at: Option<chrono::DateTime<Utc>>,
}

impl RunRow {
    fn summary(self) -> RunSummary {
        RunSummary {
            project: self.project_key,
            number: self.number,
            state: self.state,
            trigger: self.trigger,
            triggered_by: self.triggered_by,
            commit_sha: self.commit_sha,
            branch: self.branch,
            commit_author: self.commit_author,
            commit_message: self.commit_message,
            created_at: self.created_at,
            started_at: self.started_at,
            finished_at: self.finished_at,
        }
    }
}

/// A page of a project's runs, newest first.
pub async fn list(
    pool: &PgPool,
    project: &str,
    filter: &RunFilter,
    limit: i64,
) -> Result<RunPage, RunError> {
    let project_id = sqlx::query_scalar!(
        "select project_id from project where project_key = $1",
        project
    )
    .fetch_optional(pool)
    .await?
    .ok_or_else(|| RunError::UnknownProject(project.to_string()))?;
    let rows = sqlx::query_as!(
        RunRow,
        r#"select r.run_id, $1::text as "project_key!", r.number, r.state as "state: RunState", r.trigger, r.triggered_by, r.commit_sha,
                  r.branch, r.commit_author, r.commit_message, r.created_at, r.started_at, r.finished_at
           from run r
           where r.project_id = $2
             and ($3::text is null or r.branch = $3)
             and ($4::text is null or r.state = $4)
             and ($5::text is null or r.trigger = $5)
             and ($6::bigint is null or r.number < $6)
           order by r.number desc
           limit $7"#,
        project,
        project_id,
        filter.branch.as_deref().filter(|b| !b.is_empty()),
        filter.state.map(|s| s.as_str()),
        filter.trigger.as_deref().filter(|t| !t.is_empty()),
        filter.before,
        limit + 1,
    )
    .fetch_all(pool)
    .await?;
    let more = rows.len() as i64 > limit;
    let runs: Vec<RunSummary> = rows
        .into_iter()
        .take(limit as usize)
        .map(RunRow::summary)
        .collect();
    let next_before = if more {
        runs.last().map(|r| r.number)
    } else {
        None
    };
    Ok(RunPage { runs, next_before })
}

async fn run_row(pool: &PgPool, project: &str, number: i64) -> Result<RunRow, RunError> {
    sqlx::query_as!(
        RunRow,
        r#"select r.run_id, p.project_key, r.number, r.state as "state: RunState", r.trigger, r.triggered_by, r.commit_sha,
                  r.branch, r.commit_author, r.commit_message, r.created_at, r.started_at, r.finished_at
           from run r join project p using (project_id)
           where p.project_key = $1 and r.number = $2"#,
        project,
        number
    )
    .fetch_optional(pool)
    .await?
    .ok_or_else(|| RunError::UnknownRun { project: project.to_string(), number })
}

struct JobRow {
    job_id: Uuid,
    stage: String,
    name: String,
    state: RunState,
    reason: Option<String>,
    needs: Vec<String>,
    runs_on: Vec<String>,
    attempt: i32,
    max_attempts: i32,
    allow_failure: bool,
    started_at: Option<chrono::DateTime<Utc>>,
    finished_at: Option<chrono::DateTime<Utc>>,
    spec: serde_json::Value,
    typical_secs: Option<i64>,
}

impl JobRow {
    fn summary(&self) -> JobSummary {
        let spec: Option<JobSpec> = serde_json::from_value(self.spec.clone()).ok();
        JobSummary {
            name: self.name.clone(),
            state: self.state,
            reason: self.reason.clone(),
            needs: self.needs.clone(),
            runs_on: self.runs_on.clone(),
            attempt: self.attempt,
            max_attempts: self.max_attempts,
            allow_failure: self.allow_failure,
            started_at: self.started_at,
            finished_at: self.finished_at,
            timeout_secs: spec.map(|s| s.timeout_secs).unwrap_or_default(),
            typical_secs: self.typical_secs,
        }
    }
}

async fn jobs(pool: &PgPool, run_id: Uuid) -> Result<Vec<JobRow>, sqlx::Error> {
    // The typical duration is the previous successful run of the same job in the same project,
    // found through run_by_project and job_by_run.
    sqlx::query_as!(
        JobRow,
        r#"select j.job_id, s.name as stage, j.name, j.state as "state: RunState", j.reason, j.needs, j.runs_on, j.attempt,
                  j.max_attempts, j.allow_failure, j.started_at, j.finished_at, j.spec,
                  (select extract(epoch from (pj.finished_at - pj.started_at))::bigint
                     from run pr join job pj on pj.run_id = pr.run_id
                    where pr.project_id = r.project_id and pr.number < r.number and pj.name = j.name
                      and pj.state = 'succeeded'
                    order by pr.number desc limit 1) as typical_secs
           from job j join run_stage s using (run_stage_id) join run r on r.run_id = j.run_id
           where j.run_id = $1
           order by j.position"#,
        run_id
    )
    .fetch_all(pool)
    .await
}

async fn artifacts(pool: &PgPool, run_id: Uuid) -> Result<Vec<ArtifactInfo>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"select a.artifact_id, j.name as job, a.name, a.kind, a.file_name, a.size_bytes, a.sha256
           from artifact a join job j using (job_id) where a.run_id = $1 order by j.position, a.name"#,
        run_id
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|a| {
            Some(ArtifactInfo {
                id: a.artifact_id.to_string(),
                job: a.job,
                name: a.name,
                kind: serde_json::from_value(serde_json::Value::String(a.kind)).ok()?,
                file_name: a.file_name,
                size_bytes: a.size_bytes,
                sha256: a.sha256,
            })
        })
        .collect())
}

/// A run with its stages, jobs and artifacts.
pub async fn detail(pool: &PgPool, project: &str, number: i64) -> Result<RunDetail, RunError> {
    let run = run_row(pool, project, number).await?;
    let run_id = run.run_id;
    let stage_rows = sqlx::query!(
        r#"select name, title, needs, state as "state: RunState" from run_stage where run_id = $1 order by position"#,
        run_id
    )
    .fetch_all(pool)
    .await?;
    let job_rows = jobs(pool, run_id).await?;
    let stages = stage_rows
        .into_iter()
        .map(|s| StageRun {
            jobs: job_rows
                .iter()
                .filter(|j| j.stage == s.name)
                .map(JobRow::summary)
                .collect(),
            name: s.name,
            title: s.title,
            needs: s.needs,
            state: s.state,
        })
        .collect();
    Ok(RunDetail {
        summary: run.summary(),
        stages,
        artifacts: artifacts(pool, run_id).await?,
        now: Utc::now(),
    })
}

/// A job with a page of its log: `from_line` (1-based) or, when None, the last page.
pub async fn job(
    pool: &PgPool,
    project: &str,
    number: i64,
    job: &str,
    attempt: Option<i32>,
    from_line: Option<i64>,
) -> Result<JobDetail, RunError> {
    let run = run_row(pool, project, number).await?;
    let rows = jobs(pool, run.run_id).await?;
    let row = rows
        .iter()
        .find(|j| j.name == job)
        .ok_or_else(|| RunError::UnknownJob {
            number,
            job: job.to_string(),
        })?;
    let attempt = attempt.unwrap_or(row.attempt.max(1));
    let log = log_page(pool, row.job_id, attempt, from_line, LOG_PAGE_LINES).await?;
    let spec: Option<JobSpec> = serde_json::from_value(row.spec.clone()).ok();
    let artifacts = artifacts(pool, run.run_id)
        .await?
        .into_iter()
        .filter(|a| a.job == job)
        .collect();
    Ok(JobDetail {
        stage: row.stage.clone(),
        job: row.summary(),
        job_id: row.job_id.to_string(),
        steps: spec
            .map(|s| s.steps.into_iter().map(|s| s.name).collect())
            .unwrap_or_default(),
        artifacts,
        log,
        run: run.summary(),
    })
}

/// A window of a job's log through the (job, attempt, line) primary key.
pub async fn log_page(
    pool: &PgPool,
    job_id: Uuid,
    attempt: i32,
    from_line: Option<i64>,
    limit: i64,
) -> Result<LogPage, sqlx::Error> {
    let total = sqlx::query_scalar!(
        r#"select coalesce(max(line_no), 0)::bigint as "n!" from log_line where job_id = $1 and attempt = $2"#,
        job_id,
        attempt
    )
    .fetch_one(pool)
    .await?;
    // Line numbers are `int` in the database: anything past that range starts past the end.
    let first = from_line
        .unwrap_or((total - limit + 1).max(1))
        .clamp(1, i64::from(i32::MAX));
    let lines = sqlx::query!(
        "select line_no, stream, text from log_line
         where job_id = $1 and attempt = $2 and line_no >= $3 order by line_no limit $4",
        job_id,
        attempt,
        first as i32,
        limit
    )
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(|l| LogLineView {
        no: l.line_no.into(),
        stream: l.stream,
        text: l.text,
    })
    .collect();
    Ok(LogPage {
        attempt,
        first_line: first,
        lines,
        total_lines: total,
    })
}

/// The whole log of one attempt, for download, in order, streamed in pages.
pub async fn job_id(
    pool: &PgPool,
    project: &str,
    number: i64,
    job: &str,
) -> Result<(Uuid, i32), RunError> {
    let row = sqlx::query!(
        "select j.job_id, j.attempt from job j join run r using (run_id) join project p using (project_id)
         where p.project_key = $1 and r.number = $2 and j.name = $3",
        project,
        number,
        job
    )
    .fetch_optional(pool)
    .await?
    .ok_or_else(|| RunError::UnknownJob { number, job: job.to_string() })?;
    Ok((row.job_id, row.attempt.max(1)))
}
