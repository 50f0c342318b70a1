//! The runner protocol's server side (see `domain::run::protocol`): registration, long-poll
//! claims, heartbeats, logs, artifact uploads and results, for tokens with the `runner` scope.
//! Every call naming a runner is bound to it first (`Work::bind`): a token acts only for the
//! runner it registered (403 and a security audit entry otherwise).

use super::AppState;
use super::error::ApiError;
use super::extract::{Json, Path, Query};
use super::routes::Routes;
use axum::Extension;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use domain::access::Access;
use domain::audit::Actor;
use domain::auth::{Caller, Principal, Scope};
use domain::role::{Role, RoleSet};
use domain::run::artifacts::{IngestError, Upload, ingest};
use domain::run::protocol::{
    CLAIM_WAIT_SECS, ClaimRequest, FinishRequest, HeartbeatRequest, HeartbeatResponse, LogBatch,
    RegisterRequest, RegisterResponse,
};
use domain::run::work::{Attempt, BoundRunner, RunnerCaller, WorkError};
use futures::{StreamExt, TryStreamExt};
use serde::Deserialize;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Runners are machines with a `runner` token; admins may call the endpoints to debug.
const RUNNERS: Access = Access::people_or_token(RoleSet::ADMINS, Scope::Runner);

pub use domain::run::artifacts::ingest::MAX_ARTIFACT_BYTES;

pub fn routes(routes: Routes) -> Routes {
    routes
        .post("/api/v1/runner/register", RUNNERS, register)
        .post("/api/v1/runner/claim", RUNNERS, claim)
        .post("/api/v1/runner/jobs/{job}/heartbeat", RUNNERS, heartbeat)
        .post("/api/v1/runner/jobs/{job}/logs", RUNNERS, logs)
        .put(
            "/api/v1/runner/jobs/{job}/artifacts/{name}",
            RUNNERS,
            upload_artifact,
        )
        .post("/api/v1/runner/jobs/{job}/finish", RUNNERS, finish)
}

impl From<WorkError> for ApiError {
    fn from(e: WorkError) -> Self {
        match e {
            WorkError::LeaseLost | WorkError::NameTaken(_) => ApiError::Conflict(e.to_string()),
            WorkError::UnknownRunner => ApiError::NotFound(e.to_string()),
            WorkError::NotYourRunner => ApiError::Forbidden(e.to_string()),
            WorkError::BadRequest(message) => ApiError::BadRequest(message),
            WorkError::Run(e) => e.into(),
            WorkError::Database(e) => e.into(),
        }
    }
}

fn job_id(text: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(text).map_err(|_| ApiError::NotFound(format!("there is no job `{text}`")))
}

/// The runner `runner_id`, once the caller is known to act for it.
async fn bound(
    state: &AppState,
    caller: &Caller,
    runner_id: Uuid,
) -> Result<BoundRunner, ApiError> {
    let as_whom = match &caller.principal {
        Some(Principal::Token(token)) => RunnerCaller::Token(token.id),
        Some(Principal::User(user)) if user.role == Role::Admin => RunnerCaller::Admin,
        Some(_) => {
            return Err(ApiError::Forbidden(
                "runner calls take a runner token".into(),
            ));
        }
        None => return Err(ApiError::Unauthenticated),
    };
    Ok(state
        .portal
        .work
        .bind(
            runner_id,
            as_whom,
            Actor::of(caller.principal.as_ref()),
            &caller.origin,
        )
        .await?)
}

/// One attempt of a job, held by a runner the caller acts for.
async fn attempt(
    state: &AppState,
    caller: &Caller,
    job: &str,
    runner_id: Uuid,
    attempt: i32,
) -> Result<Attempt, ApiError> {
    if attempt < 1 {
        return Err(ApiError::BadRequest(format!(
            "attempt {attempt} is out of range: attempts are numbered from 1"
        )));
    }
    Ok(Attempt {
        job_id: job_id(job)?,
        runner: bound(state, caller, runner_id).await?,
        attempt,
    })
}

async fn register(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Json(request): Json<RegisterRequest>,
) -> Result<Json<RegisterResponse>, ApiError> {
    let name = request.name.trim();
    if name.is_empty() || name.len() > 100 {
        return Err(ApiError::Invalid {
            message: "a runner needs a name of 1 to 100 characters".into(),
            details: serde_json::Value::Null,
        });
    }
    if request
        .labels
        .iter()
        .any(|l| l.is_empty() || l.len() > 50 || l.contains(char::is_whitespace))
    {
        return Err(ApiError::Invalid {
            message: "labels are non-empty words of at most 50 characters".into(),
            details: serde_json::Value::Null,
        });
    }
    let token = match caller.principal {
        Some(Principal::Token(token)) => Some(token.id),
        _ => None,
    };
    let runner_id = state
        .portal
        .work
        .register(name, &request.labels, &request.version, token)
        .await?;
    tracing::info!(runner = name, labels = ?request.labels, "runner registered");
    Ok(Json(RegisterResponse { runner_id }))
}

/// Waits up to CLAIM_WAIT_SECS for a job, waking when a run changes anywhere.
async fn claim(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Json(request): Json<ClaimRequest>,
) -> Result<Response, ApiError> {
    let runner = bound(&state, &caller, request.runner_id).await?;
    let deadline = Instant::now() + Duration::from_secs(CLAIM_WAIT_SECS);
    let mut changes = state.live.subscribe();
    loop {
        if let Some(job) = state.portal.work.claim(runner).await? {
            return Ok(Json(job).into_response());
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || state.shutdown.is_cancelled() {
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
        // Any run change may have queued a job; a tick covers missed notifications.
        let wait = left.min(Duration::from_secs(2));
        tokio::select! {
            _ = changes.recv() => {}
            _ = tokio::time::sleep(wait) => {}
            _ = state.shutdown.cancelled() => {}
        }
    }
}

async fn heartbeat(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(job): Path<String>,
    Json(request): Json<HeartbeatRequest>,
) -> Result<Json<HeartbeatResponse>, ApiError> {
    let held = attempt(&state, &caller, &job, request.runner_id, request.attempt).await?;
    let cancel = state.portal.work.heartbeat(held).await?;
    Ok(Json(HeartbeatResponse { cancel }))
}

async fn logs(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(job): Path<String>,
    Json(batch): Json<LogBatch>,
) -> Result<StatusCode, ApiError> {
    if batch.lines.len() > 10_000 {
        return Err(ApiError::PayloadTooLarge(
            "send at most 10000 log lines per batch".into(),
        ));
    }
    let held = attempt(&state, &caller, &job, batch.runner_id, batch.attempt).await?;
    state
        .portal
        .work
        .append_log(held, batch.first_line, &batch.lines)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn finish(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(job): Path<String>,
    Json(request): Json<FinishRequest>,
) -> Result<StatusCode, ApiError> {
    let held = attempt(&state, &caller, &job, request.runner_id, request.attempt).await?;
    state
        .portal
        .work
        .finish(
            held,
            request.outcome,
            request.exit_code,
            request.reason.as_deref(),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
struct UploadQuery {
    /// The runner holding the job; the runner the caller's token registered when left out.
    runner_id: Option<Uuid>,
    attempt: i32,
    /// The file name to offer on download (e.g. `web.tar.gz`); default the artifact name.
    file_name: Option<String>,
}

/// Hands the body to the domain's ingestion once the caller is known to hold the job.
async fn upload_artifact(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((job, name)): Path<(String, String)>,
    Query(q): Query<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    // Only the runner holding the job may upload for it, and only for itself.
    let runner_id = match (q.runner_id, &caller.principal) {
        (Some(id), _) => id,
        (None, Some(Principal::Token(token))) => state
            .portal
            .work
            .runner_of_token(token.id)
            .await?
            .ok_or_else(|| {
                ApiError::BadRequest(
                    "say which runner uploads (runner_id): this token registered none or several"
                        .into(),
                )
            })?,
        (None, _) => return Err(ApiError::BadRequest("runner_id is required".into())),
    };
    let held = attempt(&state, &caller, &job, runner_id, q.attempt).await?;
    state.portal.work.heartbeat(held).await?;
    let upload = Upload {
        job_id: held.job_id,
        name: &name,
        file_name: q.file_name.as_deref(),
        gzip: headers
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/gzip")),
    };
    let body = body
        .into_data_stream()
        .map_err(std::io::Error::other)
        .boxed();
    let ingested = ingest(&state.portal.pool, &state.portal.artifacts, upload, body).await?;
    Ok((
        StatusCode::CREATED,
        Json(
            serde_json::json!({ "id": ingested.id, "sha256": ingested.sha256, "size": ingested.size }),
        ),
    ))
}

impl From<IngestError> for ApiError {
    fn from(e: IngestError) -> Self {
        match e {
            IngestError::Undeclared(_) => ApiError::NotFound(e.to_string()),
            IngestError::TooLarge => ApiError::PayloadTooLarge(e.to_string()),
            IngestError::Broken(_) => ApiError::BadRequest(e.to_string()),
            IngestError::Storage(error) => ApiError::internal(error),
            IngestError::Database(error) => error.into(),
        }
    }
}
