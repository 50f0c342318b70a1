//! The REST API under `/api/v1`: for CI, scripts and anything that is not a browser page.

use super::AppState;
use super::error::ApiError;
use super::extract::{Json, Path, Query};
use super::routes::Routes;
use axum::Extension;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use domain::access::Access;
use domain::audit::{Actor, AuditFilter, AuditPage};
use domain::auth::{Caller, Principal, Scope};
use domain::environment::Acting;
use domain::overview::{Overview, ProjectLink};
use domain::project::{DefinitionUpload, LoadDefinitionError, Loaded, ScheduleError};
use domain::role::RoleSet;
use serde::{Deserialize, Serialize};
use serde_json::json;

const READERS: Access = Access::people_or_token(RoleSet::ANYONE, Scope::Read);

pub fn routes(routes: Routes) -> Routes {
    routes
        .get("/api/v1/whoami", READERS, whoami)
        .get("/api/v1/projects", READERS, list_projects)
        .get(
            "/api/v1/projects/{project}/overview",
            READERS,
            project_overview,
        )
        .put(
            "/api/v1/projects/{project}/definition",
            Access::people_or_token(RoleSet::DEVELOPERS, Scope::DefinitionWrite),
            load_definition,
        )
        .post(
            "/api/v1/projects/{project}/schedules/{schedule}/pause",
            Access::people_or_token(RoleSet::RELEASE_MANAGERS, Scope::SchedulesWrite),
            pause_schedule,
        )
        .post(
            "/api/v1/projects/{project}/schedules/{schedule}/resume",
            Access::people_or_token(RoleSet::RELEASE_MANAGERS, Scope::SchedulesWrite),
            resume_schedule,
        )
        .get(
            "/api/v1/audit",
            Access::people(RoleSet::RELEASE_MANAGERS),
            audit,
        )
}

#[derive(Serialize)]
struct WhoAmI {
    kind: &'static str,
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    scopes: Vec<String>,
}

async fn whoami(Extension(caller): Extension<Caller>) -> Result<Json<WhoAmI>, ApiError> {
    match caller.principal {
        Some(Principal::User(user)) => Ok(Json(WhoAmI {
            kind: "user",
            name: user.username,
            role: Some(user.role.to_string()),
            scopes: vec![],
        })),
        Some(Principal::Token(token)) => Ok(Json(WhoAmI {
            kind: "token",
            name: token.name,
            role: None,
            scopes: token.scopes.iter().map(|s| s.to_string()).collect(),
        })),
        Some(Principal::Sdk(sdk)) => Ok(Json(WhoAmI {
            kind: "sdk_token",
            name: sdk.name,
            role: None,
            scopes: vec![format!(
                "flags:{}:{}/{}",
                sdk.kind, sdk.project, sdk.environment
            )],
        })),
        None => Err(ApiError::Unauthenticated),
    }
}

async fn list_projects(State(state): State<AppState>) -> Result<Json<Vec<ProjectLink>>, ApiError> {
    let overview = domain::project::overview(&state.portal.pool, None).await?;
    Ok(Json(overview.map(|o| o.projects).unwrap_or_default()))
}

async fn project_overview(
    State(state): State<AppState>,
    Path(project): Path<String>,
) -> Result<Json<Overview>, ApiError> {
    domain::project::overview(&state.portal.pool, Some(&project))
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("there is no project `{project}`")))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoadQuery {
    /// Say what loading would change (in who may deploy, too) and change nothing.
    #[serde(default)]
    preview: bool,
}

/// Loads a new flightdeck.yml (the raw YAML is the body) as the project's current definition.
/// 201 with the version, 200 when the text is already current, 422 with every problem and its
/// line and column, 403 with the list of changes when it changes who may deploy and the caller is
/// no release manager. `?preview=true` answers what it would change and changes nothing.
async fn load_definition(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(project): Path<String>,
    Query(query): Query<LoadQuery>,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let source = std::str::from_utf8(&body).map_err(|e| ApiError::Invalid {
        message: format!(
            "the definition is not UTF-8 text (invalid byte at offset {})",
            e.valid_up_to()
        ),
        details: serde_json::Value::Null,
    })?;
    let upload = DefinitionUpload {
        source,
        origin_label: "api",
        expected_project: Some(&project),
    };
    let to_api = |e: LoadDefinitionError| match e {
        LoadDefinitionError::TooLarge(_) => ApiError::PayloadTooLarge(e.to_string()),
        LoadDefinitionError::Invalid(ref diagnostics) => ApiError::Invalid {
            message: format!("flightdeck.yml has {} problem(s)", diagnostics.len()),
            details: json!({
                "diagnostics": diagnostics.iter().map(|d| json!({ "line": d.line, "column": d.column, "message": d.message })).collect::<Vec<_>>(),
                "rendered": domain::definition::render(diagnostics, "flightdeck.yml", source),
            }),
        },
        LoadDefinitionError::WrongProject { .. } => ApiError::Invalid {
            message: e.to_string(),
            details: serde_json::Value::Null,
        },
        LoadDefinitionError::Refused { refusal, changes } => ApiError::ForbiddenWith {
            message: refusal.to_string(),
            details: json!({ "changes": changes }),
        },
        LoadDefinitionError::Database(e) => ApiError::from(e),
    };
    if query.preview {
        let preview = domain::project::preview_definition(&state.portal.pool, upload)
            .await
            .map_err(to_api)?;
        return Ok((
            StatusCode::OK,
            Json(json!({
                "project": preview.project_key,
                "changed": false,
                "would_change": preview.changes_definition,
                "changes": preview.governance,
            })),
        ));
    }
    let actor = Actor::of(caller.principal.as_ref());
    let acting = caller
        .principal
        .as_ref()
        .map(Acting::of)
        .ok_or(ApiError::Unauthenticated)?;
    let loaded = domain::project::load_definition(
        &state.portal.pool,
        upload,
        &acting,
        actor,
        &caller.origin,
    )
    .await
    .map_err(to_api)?;
    Ok(match loaded {
        Loaded::NewVersion {
            project_key,
            version,
            governance,
        } => (
            StatusCode::CREATED,
            Json(
                json!({ "project": project_key, "version": version, "changed": true, "changes": governance }),
            ),
        ),
        Loaded::Unchanged {
            project_key,
            version,
        } => (
            StatusCode::OK,
            Json(
                json!({ "project": project_key, "version": version, "changed": false, "changes": [] }),
            ),
        ),
    })
}

async fn pause_schedule(
    state: State<AppState>,
    caller: Extension<Caller>,
    path: Path<(String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    set_paused(state, caller, path, true).await
}

async fn resume_schedule(
    state: State<AppState>,
    caller: Extension<Caller>,
    path: Path<(String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    set_paused(state, caller, path, false).await
}

async fn set_paused(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((project, schedule)): Path<(String, String)>,
    paused: bool,
) -> Result<Json<serde_json::Value>, ApiError> {
    let actor = Actor::of(caller.principal.as_ref());
    let changed = domain::project::set_schedule_paused(
        &state.portal.pool,
        &project,
        &schedule,
        paused,
        actor,
        &caller.origin,
    )
    .await
    .map_err(|e| match e {
        ScheduleError::UnknownProject(_) | ScheduleError::UnknownSchedule { .. } => {
            ApiError::NotFound(e.to_string())
        }
        ScheduleError::Database(e) => ApiError::from(e),
    })?;
    Ok(Json(
        json!({ "project": project, "schedule": schedule, "paused": paused, "changed": changed }),
    ))
}

async fn audit(
    State(state): State<AppState>,
    Query(filter): Query<AuditFilter>,
) -> Result<Json<AuditPage>, ApiError> {
    Ok(Json(
        domain::audit::search(&state.portal.pool, &filter, 200).await?,
    ))
}
