//! The runs API: start, list, read, cancel and re-run runs; jobs, their logs (paged, raw, live)
//! and artifact downloads.

use super::AppState;
use super::error::ApiError;
use super::extract::{Json, Path, Query};
use super::routes::Routes;
use axum::Extension;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use domain::access::Access;
use domain::audit::Actor;
use domain::auth::{Caller, Scope};
use domain::role::RoleSet;
use domain::run::git;
use domain::run::query;
use domain::run::store::{RunError, Trigger};
use domain::run_view::RunFilter;
use futures::stream::{self, Stream, StreamExt};
use serde::Deserialize;
use serde_json::json;
use std::convert::Infallible;
use std::time::Duration;
use tokio_stream::wrappers::BroadcastStream;
use uuid::Uuid;

const READERS: Access = Access::people_or_token(RoleSet::ANYONE, Scope::Read);
const RUNNERS_OF_RUNS: Access = Access::people_or_token(RoleSet::DEVELOPERS, Scope::RunsWrite);

pub fn routes(routes: Routes) -> Routes {
    routes
        .post(
            "/api/v1/projects/{project}/runs",
            RUNNERS_OF_RUNS,
            start_run,
        )
        .get("/api/v1/projects/{project}/runs", READERS, list_runs)
        .get(
            "/api/v1/projects/{project}/runs/{number}",
            READERS,
            run_detail,
        )
        .post(
            "/api/v1/projects/{project}/runs/{number}/cancel",
            RUNNERS_OF_RUNS,
            cancel_run,
        )
        .post(
            "/api/v1/projects/{project}/runs/{number}/rerun",
            RUNNERS_OF_RUNS,
            rerun,
        )
        .get(
            "/api/v1/projects/{project}/runs/{number}/jobs/{job}",
            READERS,
            job_detail,
        )
        .get(
            "/api/v1/projects/{project}/runs/{number}/jobs/{job}/log",
            READERS,
            log_page,
        )
        .get(
            "/api/v1/projects/{project}/runs/{number}/jobs/{job}/log.txt",
            READERS,
            log_download,
        )
        .get(
            "/api/v1/projects/{project}/runs/{number}/jobs/{job}/log/stream",
            READERS,
            log_stream,
        )
        .get("/api/v1/artifacts/{id}", READERS, download_artifact)
}

impl From<RunError> for ApiError {
    fn from(e: RunError) -> Self {
        match e {
            RunError::UnknownProject(_)
            | RunError::UnknownRun { .. }
            | RunError::UnknownJob { .. } => ApiError::NotFound(e.to_string()),
            RunError::InvalidDefinition(ref diagnostics) => ApiError::Invalid {
                message: e.to_string(),
                details: json!({ "diagnostics": diagnostics.iter().map(|d| json!({ "line": d.line, "column": d.column, "message": d.message })).collect::<Vec<_>>() }),
            },
            RunError::NoDefinition(_)
            | RunError::NoRepository(_)
            | RunError::BadCommit(_)
            | RunError::NothingToRun
            | RunError::Transition(_) => ApiError::Invalid {
                message: e.to_string(),
                details: serde_json::Value::Null,
            },
            RunError::Git(e) => e.into(),
            RunError::Database(e) => ApiError::from(e),
        }
    }
}

impl From<git::GitError> for ApiError {
    fn from(e: git::GitError) -> Self {
        match e {
            git::GitError::UnknownRevision { .. } => ApiError::Invalid {
                message: e.to_string(),
                details: serde_json::Value::Null,
            },
            other => ApiError::internal(other),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartRun {
    /// The branch to build; default `main`.
    branch: Option<String>,
    /// A commit on it; default its head.
    commit: Option<String>,
    /// `push` from a git hook, else `api`.
    trigger: Option<String>,
}

/// Starts a run of a branch's head (or a given commit). An `Idempotency-Key` header makes a
/// retried request return the run the first one made.
async fn start_run(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(project): Path<String>,
    headers: HeaderMap,
    body: Option<Json<StartRun>>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let request = body.map(|Json(b)| b).unwrap_or_default();
    let trigger = match request.trigger.as_deref() {
        None | Some("api") => Trigger::Api,
        Some("push") => Trigger::Push,
        Some(other) => {
            return Err(ApiError::Invalid {
                message: format!("trigger `{other}` is not one of push, api"),
                details: serde_json::Value::Null,
            });
        }
    };
    let branch = request.branch.unwrap_or_else(|| "main".to_string());
    // A push builds only the branches the definition lists, as GitHub's webhook does.
    if trigger == Trigger::Push {
        let decision = domain::project::push_starts_run(&state.portal.pool, &project, &branch)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("there is no project `{project}`")))?;
        if !decision.starts {
            return Ok((
                StatusCode::OK,
                Json(
                    json!({ "project": project, "created": false, "reason": decision.reason(&branch) }),
                ),
            ));
        }
    }
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let actor = Actor::of(caller.principal.as_ref());
    let created = state
        .portal
        .runs
        .start(
            &project,
            &branch,
            request.commit.as_deref(),
            trigger,
            actor,
            &caller.origin,
            key.as_deref(),
        )
        .await?;
    let status = if created.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(json!({ "project": project, "number": created.number, "created": created.created })),
    ))
}

async fn list_runs(
    State(state): State<AppState>,
    Path(project): Path<String>,
    Query(filter): Query<RunFilter>,
) -> Result<Json<domain::run_view::RunPage>, ApiError> {
    Ok(Json(
        query::list(&state.portal.pool, &project, &filter, 50).await?,
    ))
}

async fn run_detail(
    State(state): State<AppState>,
    Path((project, number)): Path<(String, i64)>,
) -> Result<Json<domain::run_view::RunDetail>, ApiError> {
    Ok(Json(
        query::detail(&state.portal.pool, &project, number).await?,
    ))
}

async fn cancel_run(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((project, number)): Path<(String, i64)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let run = state.portal.runs.find(&project, number).await?;
    let changed = state
        .portal
        .runs
        .cancel(run, Actor::of(caller.principal.as_ref()), &caller.origin)
        .await?;
    Ok(Json(
        json!({ "project": project, "number": number, "changed": changed }),
    ))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Rerun {
    job: Option<String>,
}

async fn rerun(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((project, number)): Path<(String, i64)>,
    body: Option<Json<Rerun>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let job = body.and_then(|Json(b)| b.job);
    let run = state.portal.runs.find(&project, number).await?;
    let again = state
        .portal
        .runs
        .rerun(
            run,
            job.as_deref(),
            Actor::of(caller.principal.as_ref()),
            &caller.origin,
        )
        .await?;
    Ok(Json(
        json!({ "project": project, "number": number, "jobs_again": again }),
    ))
}

#[derive(Debug, Default, Deserialize)]
struct LogQuery {
    attempt: Option<i32>,
    from: Option<i64>,
    after: Option<i64>,
}

impl LogQuery {
    /// The query with every number in range (lines are numbered 1 to 2³¹−1, attempts from 1),
    /// or a 400 that says which is not.
    fn checked(self) -> Result<Self, ApiError> {
        let max = i64::from(i32::MAX);
        if let Some(attempt) = self.attempt.filter(|a| *a < 1) {
            return Err(ApiError::BadRequest(format!(
                "attempt={attempt} is out of range: attempts are numbered from 1"
            )));
        }
        if let Some(from) = self.from.filter(|f| !(1..=max).contains(f)) {
            return Err(ApiError::BadRequest(format!(
                "from={from} is out of range: lines are numbered from 1 to {max}"
            )));
        }
        if let Some(after) = self.after.filter(|a| !(0..=max).contains(a)) {
            return Err(ApiError::BadRequest(format!(
                "after={after} is out of range: 0 to {max}"
            )));
        }
        Ok(self)
    }
}

async fn job_detail(
    State(state): State<AppState>,
    Path((project, number, job)): Path<(String, i64, String)>,
    Query(q): Query<LogQuery>,
) -> Result<Json<domain::run_view::JobDetail>, ApiError> {
    let q = q.checked()?;
    Ok(Json(
        query::job(
            &state.portal.pool,
            &project,
            number,
            &job,
            q.attempt,
            q.from,
        )
        .await?,
    ))
}

async fn log_page(
    State(state): State<AppState>,
    Path((project, number, job)): Path<(String, i64, String)>,
    Query(q): Query<LogQuery>,
) -> Result<Json<domain::run_view::LogPage>, ApiError> {
    let q = q.checked()?;
    let (job_id, attempt) = query::job_id(&state.portal.pool, &project, number, &job).await?;
    let page = query::log_page(
        &state.portal.pool,
        job_id,
        q.attempt.unwrap_or(attempt),
        q.from,
        query::LOG_PAGE_LINES,
    )
    .await?;
    Ok(Json(page))
}

/// The raw log of one attempt as plain text, streamed page by page from the database.
async fn log_download(
    State(state): State<AppState>,
    Path((project, number, job)): Path<(String, i64, String)>,
    Query(q): Query<LogQuery>,
) -> Result<Response, ApiError> {
    let q = q.checked()?;
    let (job_id, attempt) = query::job_id(&state.portal.pool, &project, number, &job).await?;
    let attempt = q.attempt.unwrap_or(attempt);
    let pool = state.portal.pool.clone();
    let pages = stream::unfold(Some(1i64), move |from| {
        let pool = pool.clone();
        async move {
            let from = from?;
            match query::log_page(&pool, job_id, attempt, Some(from), 10_000).await {
                Ok(page) if page.lines.is_empty() => None,
                Ok(page) => {
                    let next = page.lines.last().map(|l| l.no + 1);
                    let text: String = page.lines.iter().map(|l| format!("{}\n", l.text)).collect();
                    Some((Ok::<_, std::io::Error>(text), next))
                }
                Err(error) => Some((Err(std::io::Error::other(error)), None)),
            }
        }
    });
    let file_name = format!("{project}-{number}-{job}-attempt{attempt}.log");
    Ok((
        [
            (
                header::CONTENT_TYPE,
                "text/plain; charset=utf-8".to_string(),
            ),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{file_name}\""),
            ),
        ],
        Body::from_stream(pages),
    )
        .into_response())
}

/// New log lines as they arrive: `lines` events with JSON arrays, then `end` when the job is
/// finished. Starts after line `after` (default: from the start).
async fn log_stream(
    State(state): State<AppState>,
    Path((project, number, job)): Path<(String, i64, String)>,
    Query(q): Query<LogQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let q = q.checked()?;
    let (job_id, attempt) = query::job_id(&state.portal.pool, &project, number, &job).await?;
    let attempt = q.attempt.unwrap_or(attempt);
    let pool = state.portal.pool.clone();
    let work = state.portal.work.clone();
    let wake = BroadcastStream::new(state.live.subscribe());
    let shutdown = state.shutdown.clone();
    // Wake on this job's log notifications, on any job change, and every few seconds anyway.
    let job_text = job_id.to_string();
    let ticks =
        tokio_stream::wrappers::IntervalStream::new(tokio::time::interval(Duration::from_secs(3)))
            .map(|_| ());
    let wakes = wake
        .filter(move |item| {
            let relevant = match item {
                Ok(change) => {
                    change.job_id.as_deref() == Some(job_text.as_str())
                        || change.topic == "run"
                        || change.topic == "resync"
                }
                Err(_) => true,
            };
            futures::future::ready(relevant)
        })
        .map(|_| ());
    let signals = stream::select(ticks, wakes);
    let events = stream::unfold(
        (signals, q.after.unwrap_or(0), false),
        move |(mut signals, mut last, done)| {
            let pool = pool.clone();
            let work = work.clone();
            async move {
                if done {
                    return None;
                }
                loop {
                    signals.next().await?;
                    let finished = work
                        .job_state(job_id)
                        .await
                        .map(|s| s.is_finished())
                        .unwrap_or(true);
                    let page = query::log_page(&pool, job_id, attempt, Some(last + 1), 2000)
                        .await
                        .ok()?;
                    if let Some(line) = page.lines.last() {
                        last = line.no;
                        let event = Event::default()
                            .event("lines")
                            .json_data(&page.lines)
                            .ok()?;
                        return Some((vec![event], (signals, last, false)));
                    }
                    if finished {
                        return Some((
                            vec![Event::default().event("end").data("{}")],
                            (signals, last, true),
                        ));
                    }
                }
            }
        },
    )
    .flat_map(|events| stream::iter(events.into_iter().map(Ok)))
    .take_until(async move { shutdown.cancelled().await });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// The bytes stored under `key` in the artifact storage, streamed as a response body.
pub(super) async fn stored_body(state: &AppState, key: &str) -> Result<Body, ApiError> {
    use domain::run::artifacts::ArtifactStorage;
    let stream = state
        .portal
        .artifacts
        .get(key)
        .await
        .map_err(ApiError::internal)?;
    Ok(Body::from_stream(stream))
}

async fn download_artifact(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = Uuid::parse_str(&id)
        .map_err(|_| ApiError::NotFound(format!("there is no artifact `{id}`")))?;
    let stored = domain::run::artifacts::find(&state.portal.pool, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("there is no artifact `{id}`")))?;
    let body = stored_body(&state, &stored.storage_key).await?;
    let digest = {
        use base64::Engine;
        let bytes = hex::decode(&stored.sha256).unwrap_or_default();
        base64::engine::general_purpose::STANDARD.encode(bytes)
    };
    Ok((
        [
            (header::CONTENT_TYPE, stored.content_type),
            (header::CONTENT_LENGTH, stored.size_bytes.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!(
                    "attachment; filename=\"{}\"",
                    stored.file_name.replace('"', "")
                ),
            ),
            (
                header::HeaderName::from_static("x-checksum-sha256"),
                stored.sha256.clone(),
            ),
            (
                header::HeaderName::from_static("digest"),
                format!("sha-256={digest}"),
            ),
            (
                header::CACHE_CONTROL,
                "private, max-age=31536000, immutable".to_string(),
            ),
        ],
        body,
    )
        .into_response())
}
