//! The deployments API: promote a release into an environment, decide on a deployment's stages
//! (approve, reject, tick, fail, pass, override the window), roll back, and download the
//! database backups deployments took. Thin: the rules are the
//! domain's ([`domain::environment::decide`] through the use cases), the same as the pages' and
//! the CLI's. People act with their role; API tokens hold no role, so the use cases refuse
//! them with the reason.

use super::AppState;
use super::error::ApiError;
use super::extract::{Json, Path};
use super::routes::Routes;
use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use domain::access::Access;
use domain::audit::Actor;
use domain::auth::{Caller, Principal, Scope};
use domain::deployment::backups;
use domain::deployment::decide::{Decision, decide};
use domain::deployment::rollback::{Cause, RollbackRequest, roll_back};
use domain::deployment::store::{PromoteRequest, Promoted, ReleaseChoice, promote};
use domain::deployment::{DeploymentError, DeploymentTrigger};
use domain::environment::Acting;
use domain::role::RoleSet;
use serde::Deserialize;
use serde_json::json;

/// Signed-in people (and tokens, which the rules then refuse with the reason): who may do what
/// to an environment is decided by the use case, not here.
const DEPLOYERS: Access = Access::people_or_token(RoleSet::ANYONE, Scope::RunsWrite);

pub fn routes(routes: Routes) -> Routes {
    routes
        .post(
            "/api/v1/projects/{project}/environments/{environment}/deployments",
            DEPLOYERS,
            start_deployment,
        )
        .post(
            "/api/v1/projects/{project}/deployments/{number}/stages/{stage}/decisions",
            DEPLOYERS,
            decide_stage,
        )
        .post(
            "/api/v1/projects/{project}/environments/{environment}/rollbacks",
            DEPLOYERS,
            start_rollback,
        )
        .get(
            "/api/v1/projects/{project}/backups/{backup}",
            DEPLOYERS,
            download_backup,
        )
}

impl From<DeploymentError> for ApiError {
    fn from(e: DeploymentError) -> Self {
        match e {
            DeploymentError::UnknownProject(_)
            | DeploymentError::UnknownBackup { .. }
            | DeploymentError::UnknownRelease { .. }
            | DeploymentError::UnknownDeployment { .. }
            | DeploymentError::UnknownStage { .. } => ApiError::NotFound(e.to_string()),
            DeploymentError::Environment(
                domain::environment::EnvironmentError::UnknownProject(_)
                | domain::environment::EnvironmentError::UnknownEnvironment { .. },
            ) => ApiError::NotFound(e.to_string()),
            DeploymentError::Refused(_) => ApiError::Forbidden(e.to_string()),
            DeploymentError::Busy { .. } | DeploymentError::NotNow(_) => {
                ApiError::Conflict(e.to_string())
            }
            DeploymentError::NothingEligible { .. }
            | DeploymentError::NoDeployStage(_)
            | DeploymentError::NoDefinition(_)
            | DeploymentError::BadInput(_)
            | DeploymentError::Transition(_) => ApiError::Invalid {
                message: e.to_string(),
                details: serde_json::Value::Null,
            },
            DeploymentError::Environment(domain::environment::EnvironmentError::Database(e))
            | DeploymentError::Database(e) => ApiError::from(e),
            DeploymentError::Environment(other) => ApiError::internal(other),
        }
    }
}

/// The `Idempotency-Key` header, checked.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let key = headers
        .get("idempotency-key")
        .map(|v| {
            v.to_str().map(str::to_string).map_err(|_| {
                ApiError::BadRequest("the Idempotency-Key header must be plain text".into())
            })
        })
        .transpose()?;
    if let Some(key) = &key
        && (key.is_empty() || key.len() > 200)
    {
        return Err(ApiError::BadRequest(
            "the Idempotency-Key header must be 1 to 200 characters".into(),
        ));
    }
    Ok(key)
}

fn acting(caller: &Caller) -> Result<Acting, ApiError> {
    match caller.principal.as_ref() {
        Some(principal @ (Principal::User(_) | Principal::Token(_) | Principal::Sdk(_))) => {
            Ok(Acting::of(principal))
        }
        None => Err(ApiError::Unauthenticated),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartDeployment {
    /// The release's version; default the newest that may go there.
    release: Option<String>,
}

/// Promotes a release into an environment. An `Idempotency-Key` header makes a retried request
/// return the deployment the first one made.
async fn start_deployment(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((project, environment)): Path<(String, String)>,
    headers: HeaderMap,
    body: Option<Json<StartDeployment>>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let request = body.map(|Json(b)| b).unwrap_or_default();
    let key = idempotency_key(&headers)?;
    let promoted = promote(
        &state.portal.pool,
        &PromoteRequest {
            project: project.clone(),
            environment: environment.clone(),
            release: match request.release {
                Some(version) => ReleaseChoice::Version(version),
                None => ReleaseChoice::NewestEligible,
            },
            acting: acting(&caller)?,
            actor: Actor::of(caller.principal.as_ref()),
            trigger: DeploymentTrigger::Api,
            idempotency_key: key,
        },
        &caller.origin,
        state.portal.clock.now(),
    )
    .await?;
    Ok(match promoted {
        Promoted::Started(created) => (
            if created.created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            },
            Json(json!({
                "project": project,
                "environment": environment,
                "number": created.number,
                "release": created.version,
                "created": created.created,
            })),
        ),
        Promoted::AlreadyCurrent { version } => (
            StatusCode::OK,
            Json(json!({
                "project": project,
                "environment": environment,
                "release": version,
                "created": false,
                "reason": format!("{version} already runs in {environment}"),
            })),
        ),
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartRollback {
    /// The deployment to roll back (its number); default the one running there now.
    rolls_back: Option<i64>,
    /// The release to go back to; default the last good one.
    to: Option<String>,
}

/// Rolls an environment back. Exactly once: a second request for the same deployment (with or
/// without the same `Idempotency-Key`) answers 200 with the first one's progress.
async fn start_rollback(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((project, environment)): Path<(String, String)>,
    headers: HeaderMap,
    body: Option<Json<StartRollback>>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let request = body.map(|Json(b)| b).unwrap_or_default();
    let acting = acting(&caller)?;
    let rolled = roll_back(
        &state.portal.pool,
        &RollbackRequest {
            project: project.clone(),
            environment: environment.clone(),
            rolls_back: request.rolls_back,
            to: request.to,
            cause: Cause::Person {
                name: acting.name().to_string(),
            },
            acting,
            actor: Actor::of(caller.principal.as_ref()),
            trigger: DeploymentTrigger::Api,
            idempotency_key: idempotency_key(&headers)?,
        },
        &caller.origin,
        state.portal.clock.now(),
    )
    .await?;
    let number = rolled.deployment.number;
    Ok((
        if rolled.deployment.created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        Json(json!({
            "project": project,
            "environment": environment,
            "number": number,
            "from": rolled.from_version,
            "to": rolled.to_version,
            "created": rolled.deployment.created,
            "progress": format!("/projects/{project}/deployments/{number}"),
        })),
    ))
}

/// Streams a database backup (a `pg_dump` custom-format file: `pg_restore` opens it) to someone
/// who may roll the environment back, with its checksum; the use case audits it.
async fn download_backup(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((project, backup)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let download = backups::download(
        &state.portal.pool,
        &project,
        &backup,
        &acting(&caller)?,
        &Actor::of(caller.principal.as_ref()),
        &caller.origin,
    )
    .await?;
    let stored = &download.backup;
    let body = super::runs::stored_body(&state, &stored.storage_key).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_LENGTH, stored.size_bytes.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{}\"", download.file_name),
            ),
            (
                header::HeaderName::from_static("x-checksum-sha256"),
                stored.sha256.clone(),
            ),
            // It holds the environment's data: no cache keeps a copy.
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
        body,
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageDecision {
    /// approve, reject, tick, untick, fail, pass or override-window.
    decision: String,
    comment: Option<String>,
    /// The checklist item (tick, untick).
    item: Option<i32>,
}

async fn decide_stage(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((project, number, stage)): Path<(String, i64, String)>,
    Json(body): Json<StageDecision>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let decision = parse_decision(&body)?;
    decide(
        &state.portal.pool,
        &project,
        number,
        &stage,
        decision,
        &acting(&caller)?,
        &Actor::of(caller.principal.as_ref()),
        &caller.origin,
        state.portal.clock.now(),
    )
    .await?;
    Ok(Json(
        json!({ "project": project, "number": number, "stage": stage, "decision": body.decision }),
    ))
}

/// Reads a decision from its wire form, saying what is missing.
pub fn parse_decision(body: &StageDecision) -> Result<Decision, ApiError> {
    let comment = || body.comment.clone().unwrap_or_default();
    let item = || {
        body.item.ok_or_else(|| {
            ApiError::BadRequest(format!(
                "`{}` needs `item`: the checklist item's number",
                body.decision
            ))
        })
    };
    Ok(match body.decision.as_str() {
        "approve" => Decision::Approve {
            comment: body.comment.clone().filter(|c| !c.trim().is_empty()),
        },
        "reject" => Decision::Reject { comment: comment() },
        "tick" => Decision::Tick { item: item()? },
        "untick" => Decision::Untick { item: item()? },
        "fail" => Decision::Fail { comment: comment() },
        "pass" => Decision::Pass { comment: comment() },
        "override-window" => Decision::OverrideWindow { reason: comment() },
        other => {
            return Err(ApiError::BadRequest(format!(
                "`{other}` is not a decision; use approve, reject, tick, untick, fail, pass or override-window"
            )));
        }
    })
}
