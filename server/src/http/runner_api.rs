//! The runner protocol's server side (see `domain::run::protocol`): registration, long-poll
//! claims, heartbeats, logs, artifact uploads and results, for tokens with the `runner` scope.

use super::AppState;
use super::error::ApiError;
use super::routes::Routes;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use domain::access::Access;
use domain::auth::{Caller, Principal, Scope};
use domain::role::RoleSet;
use domain::run::artifacts::{ArtifactStorage, Uploaded, key_for};
use domain::run::protocol::{
    CLAIM_WAIT_SECS, ClaimRequest, FinishRequest, HeartbeatRequest, HeartbeatResponse, LogBatch,
    RegisterRequest, RegisterResponse,
};
use domain::run::work::WorkError;
use futures::StreamExt;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use uuid::Uuid;

/// Runners are machines with a `runner` token; admins may call the endpoints to debug.
const RUNNERS: Access = Access::people_or_token(RoleSet::ADMINS, Scope::Runner);

/// The largest artifact accepted (an APK or IPA is well under this).
pub const MAX_ARTIFACT_BYTES: u64 = 2 * 1024 * 1024 * 1024;

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
            WorkError::LeaseLost => ApiError::Conflict(e.to_string()),
            WorkError::UnknownRunner => ApiError::NotFound(e.to_string()),
            WorkError::Run(e) => e.into(),
            WorkError::Database(e) => e.into(),
        }
    }
}

fn job_id(text: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(text).map_err(|_| ApiError::NotFound(format!("there is no job `{text}`")))
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
    Json(request): Json<ClaimRequest>,
) -> Result<Response, ApiError> {
    let deadline = Instant::now() + Duration::from_secs(CLAIM_WAIT_SECS);
    let mut changes = state.live.subscribe();
    loop {
        if let Some(job) = state.portal.work.claim(request.runner_id).await? {
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
    Path(job): Path<String>,
    Json(request): Json<HeartbeatRequest>,
) -> Result<Json<HeartbeatResponse>, ApiError> {
    let cancel = state
        .portal
        .work
        .heartbeat(job_id(&job)?, request.runner_id, request.attempt)
        .await?;
    Ok(Json(HeartbeatResponse { cancel }))
}

async fn logs(
    State(state): State<AppState>,
    Path(job): Path<String>,
    Json(batch): Json<LogBatch>,
) -> Result<StatusCode, ApiError> {
    if batch.lines.len() > 10_000 {
        return Err(ApiError::PayloadTooLarge(
            "send at most 10000 log lines per batch".into(),
        ));
    }
    state
        .portal
        .work
        .append_log(
            job_id(&job)?,
            batch.runner_id,
            batch.attempt,
            batch.first_line,
            &batch.lines,
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn finish(
    State(state): State<AppState>,
    Path(job): Path<String>,
    Json(request): Json<FinishRequest>,
) -> Result<StatusCode, ApiError> {
    state
        .portal
        .work
        .finish(
            job_id(&job)?,
            request.runner_id,
            request.attempt,
            request.outcome,
            request.exit_code,
            request.reason.as_deref(),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
struct UploadQuery {
    /// The runner holding the job; the job's current runner when left out.
    runner_id: Option<Uuid>,
    attempt: i32,
    /// The file name to offer on download (e.g. `web.tar.gz`); default the artifact name.
    file_name: Option<String>,
}

/// Streams the body to a staging file while hashing it, then stores it by content.
async fn upload_artifact(
    State(state): State<AppState>,
    Path((job, name)): Path<(String, String)>,
    Query(q): Query<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let job_id = job_id(&job)?;
    // Only the runner holding the job may upload for it.
    let runner_id = match q.runner_id {
        Some(id) => id,
        None => sqlx::query_scalar!("select runner_id from job where job_id = $1", job_id)
            .fetch_optional(&state.portal.pool)
            .await?
            .flatten()
            .ok_or_else(|| ApiError::Conflict("no runner holds this job".into()))?,
    };
    state
        .portal
        .work
        .heartbeat(job_id, runner_id, q.attempt)
        .await?;
    let staging = state
        .portal
        .artifacts
        .staging_dir()
        .join(format!("{}.part", Uuid::new_v4()));
    let mut file = tokio::fs::File::create(&staging)
        .await
        .map_err(ApiError::internal)?;
    let mut hasher = Sha256::new();
    let mut size: u64 = 0;
    let mut head: Vec<u8> = Vec::with_capacity(2);
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::Invalid {
            message: format!("the upload broke off: {e}"),
            details: serde_json::Value::Null,
        })?;
        size += chunk.len() as u64;
        if size > MAX_ARTIFACT_BYTES {
            let _ = tokio::fs::remove_file(&staging).await;
            return Err(ApiError::PayloadTooLarge(format!(
                "artifacts are limited to {MAX_ARTIFACT_BYTES} bytes"
            )));
        }
        hasher.update(&chunk);
        head.extend(chunk.iter().take(2 - head.len().min(2)));
        file.write_all(&chunk).await.map_err(ApiError::internal)?;
    }
    file.flush().await.map_err(ApiError::internal)?;
    drop(file);
    let sha256 = hex::encode(hasher.finalize());
    // A directory arrives as a gzipped tar: said so, or recognised by gzip's magic bytes.
    let gzip = headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/gzip"))
        || head == [0x1f_u8, 0x8b];
    let file_name = match q.file_name.filter(|f| !f.is_empty() && !f.contains('/')) {
        Some(name) => name,
        None => default_file_name(&state, job_id, &name, gzip).await?,
    };
    let content_type = if gzip {
        "application/gzip".to_string()
    } else {
        content_type_for(&file_name).to_string()
    };
    let uploaded = Uploaded {
        name: name.clone(),
        file_name,
        content_type,
        size_bytes: size as i64,
        sha256: sha256.clone(),
    };
    let Some(id) = domain::run::artifacts::record(&state.portal.pool, job_id, &uploaded).await?
    else {
        let _ = tokio::fs::remove_file(&staging).await;
        return Err(ApiError::NotFound(format!(
            "job {job} declares no artifact `{name}`"
        )));
    };
    state
        .portal
        .artifacts
        .put(&key_for(&sha256), &staging)
        .await
        .map_err(ApiError::internal)?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "id": id, "sha256": sha256, "size": size })),
    ))
}

/// A file keeps the name of its declared path; a directory (sent as gzip) becomes `<name>.tar.gz`.
async fn default_file_name(
    state: &AppState,
    job_id: Uuid,
    name: &str,
    gzip: bool,
) -> Result<String, ApiError> {
    let spec = sqlx::query_scalar!("select spec from job where job_id = $1", job_id)
        .fetch_one(&state.portal.pool)
        .await?;
    let declared: Option<domain::run::spec::JobSpec> = serde_json::from_value(spec).ok();
    let path = declared
        .and_then(|s| s.artifacts.into_iter().find(|a| a.name == name))
        .map(|a| a.path)
        .unwrap_or_default();
    let base = path
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .filter(|b| !b.is_empty())
        .unwrap_or(name)
        .to_string();
    Ok(
        if gzip && !base.ends_with(".gz") && !base.ends_with(".tgz") {
            format!("{base}.tar.gz")
        } else {
            base
        },
    )
}

/// The Content-Type a download gets, by file name.
pub fn content_type_for(file_name: &str) -> &'static str {
    let lower = file_name.to_ascii_lowercase();
    match lower.rsplit('.').next().unwrap_or_default() {
        "apk" => "application/vnd.android.package-archive",
        "ipa" => "application/octet-stream",
        "gz" | "tgz" => "application/gzip",
        "json" => "application/json",
        "yaml" | "yml" => "application/yaml",
        "xml" => "application/xml",
        "sql" => "application/sql",
        "html" => "text/html; charset=utf-8",
        "txt" | "log" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}
