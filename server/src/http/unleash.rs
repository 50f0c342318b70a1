//! The Unleash APIs, so Unleash SDKs work unchanged against Flightdeck:
//! - the Frontend API (`/api/frontend`) for apps: flags evaluated here for the context sent,
//!   only the enabled ones (or all of them, `/all`), with an ETag of the answer;
//! - the client API (`/api/client/features`) for server SDKs, which evaluate themselves: the
//!   environment's snapshot as stored, with its SHA-256 as ETag;
//! - the register and metrics endpoints both SDK families call, accepted with 202.
//!
//! Everything is served from the in-memory [`FlagCache`](crate::flag_cache::FlagCache).

use super::AppState;
use super::error::ApiError;
use super::flag_context::{self, ContextError};
use super::routes::Routes;
use super::sdk::{Admitted, client_ip, etag_of, json_with_etag, not_modified, sdk_caller};
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use domain::access::{Access, SdkKinds};
use domain::flags::store::EnvironmentId;
use domain::flags::{Context, FeatureSet, VariantResult};
use serde::Serialize;

pub fn routes(routes: Routes) -> Routes {
    let frontend = Access::Sdk(SdkKinds::Frontend);
    let client = Access::Sdk(SdkKinds::Client);
    routes
        .get("/api/frontend", frontend, toggles_for_query::<ENABLED>)
        .post("/api/frontend", frontend, toggles_for_body::<ENABLED>)
        .get("/api/frontend/all", frontend, toggles_for_query::<ALL>)
        .post("/api/frontend/all", frontend, toggles_for_body::<ALL>)
        .get("/api/frontend/features/{name}", frontend, frontend_feature)
        .post("/api/frontend/client/metrics", frontend, accept_report)
        .post("/api/frontend/client/register", frontend, accept_report)
        .get("/api/client/features", client, client_features)
        .post("/api/client/metrics", client, accept_report)
        .post("/api/client/register", client, accept_report)
}

/// One evaluated flag, as the Frontend API answers it.
#[derive(Serialize)]
struct Toggle<'a> {
    name: &'a str,
    enabled: bool,
    variant: VariantResult<'a>,
    #[serde(rename = "impressionData")]
    impression_data: bool,
}

#[derive(Serialize)]
struct Toggles<'a> {
    toggles: Vec<Toggle<'a>>,
}

/// Whether an answer lists every flag (`/all`) or only those on for the context.
const ALL: bool = true;
const ENABLED: bool = false;

/// `GET /api/frontend` (`LIST_ALL` false) and `/api/frontend/all` (true): the context is in the
/// query string.
async fn toggles_for_query<const LIST_ALL: bool>(
    State(state): State<AppState>,
    Admitted(caller): Admitted,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let sdk = sdk_caller(&caller)?;
    let context = flag_context::from_query(query.as_deref(), sdk, client_ip(&caller))
        .map_err(context_error)?;
    let environment = EnvironmentId(sdk.environment_id);
    Ok(evaluate(&state, environment, &context, LIST_ALL, &headers))
}

/// `POST /api/frontend` and `/api/frontend/all`: the context is the body's `context`.
async fn toggles_for_body<const LIST_ALL: bool>(
    State(state): State<AppState>,
    Admitted(caller): Admitted,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let sdk = sdk_caller(&caller)?;
    let context =
        flag_context::from_unleash_body(&body, sdk, client_ip(&caller)).map_err(context_error)?;
    let environment = EnvironmentId(sdk.environment_id);
    Ok(evaluate(&state, environment, &context, LIST_ALL, &headers))
}

/// One flag, when it is on for the context (as Unleash answers: 404 when it is off or unknown).
async fn frontend_feature(
    State(state): State<AppState>,
    Admitted(caller): Admitted,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let sdk = sdk_caller(&caller)?;
    let context = flag_context::from_query(query.as_deref(), sdk, client_ip(&caller))
        .map_err(context_error)?;
    let flags = state.flags.environment(EnvironmentId(sdk.environment_id));
    let toggle = flags
        .set
        .evaluate(&name, &context)
        .filter(|evaluation| evaluation.enabled)
        .map(|evaluation| Toggle {
            name: &name,
            enabled: true,
            impression_data: flags.set.info(&name).is_some_and(|i| i.impression_data),
            variant: evaluation.variant,
        })
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "flag `{name}` is not on for this context in {}/{}",
                sdk.project, sdk.environment
            ))
        })?;
    Ok(axum::Json(toggle).into_response())
}

fn evaluate(
    state: &AppState,
    environment: EnvironmentId,
    context: &Context,
    list_all: bool,
    headers: &HeaderMap,
) -> Response {
    let flags = state.flags.environment(environment);
    let body = toggles_body(&flags.set, context, list_all);
    let etag = etag_of(&body);
    if not_modified(headers, &etag) {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
    }
    json_with_etag(body, etag)
}

fn toggles_body(set: &FeatureSet, context: &Context, list_all: bool) -> Vec<u8> {
    let toggles = set
        .evaluate_all(context)
        .filter(|(_, evaluation)| list_all || evaluation.enabled)
        .map(|(info, evaluation)| Toggle {
            name: &info.name,
            enabled: evaluation.enabled,
            variant: evaluation.variant,
            impression_data: info.impression_data,
        })
        .collect();
    serde_json::to_vec(&Toggles { toggles }).expect("toggles always serialize")
}

async fn client_features(
    State(state): State<AppState>,
    Admitted(caller): Admitted,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let sdk = sdk_caller(&caller)?;
    let flags = state.flags.environment(EnvironmentId(sdk.environment_id));
    if not_modified(&headers, &flags.etag) {
        return Ok((
            StatusCode::NOT_MODIFIED,
            [(header::ETAG, flags.etag.clone())],
        )
            .into_response());
    }
    Ok(json_with_etag(
        flags.client_body.clone(),
        flags.etag.clone(),
    ))
}

/// Registration and usage reports from SDKs: checked to be what an SDK sends, then accepted.
async fn accept_report(Admitted(caller): Admitted, body: Bytes) -> Result<StatusCode, ApiError> {
    sdk_caller(&caller)?;
    let value: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("the body is not JSON: {e}")))?;
    match value.get("appName") {
        Some(serde_json::Value::String(_)) | None if value.is_object() => Ok(StatusCode::ACCEPTED),
        _ => Err(ApiError::BadRequest(
            "the body must be a JSON object whose appName is a string".into(),
        )),
    }
}

fn context_error(error: ContextError) -> ApiError {
    match error {
        ContextError::Invalid(message) => ApiError::BadRequest(message),
        other @ ContextError::OtherEnvironment { .. } => ApiError::Forbidden(other.to_string()),
    }
}
