//! The OpenFeature Remote Evaluation Protocol (OFREP), so OpenFeature providers work unchanged:
//! - `POST /ofrep/v1/evaluate/flags/{key}`: one flag for a context (server providers);
//! - `POST /ofrep/v1/evaluate/flags`: every flag, with an ETag and `304` when the answer has not
//!   changed (web and mobile providers), and an `eventStreams` entry pointing at
//! - `GET /ofrep/v1/events?ticket=…`: Server-Sent Events saying `refetchEvaluation` the moment
//!   the environment's flags change. EventSource cannot send headers, so the URL carries a
//!   ticket derived from the token (not the token itself).
//!
//! An Unleash flag maps onto OFREP so: the value is the variant's payload when the variant has
//! one (`json` → object, `number` → number, other kinds → string), otherwise whether the flag is
//! on; the variant is the variant's name, or `on`/`off`; the reason is the evaluator's.

use super::AppState;
use super::error::ApiError;
use super::flag_context::{self, ContextError};
use super::routes::Routes;
use super::sdk::{Admitted, client_ip, etag_of, json_with_etag, not_modified, sdk_caller};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use domain::access::{Access, SdkKinds};
use domain::auth::SdkPrincipal;
use domain::flags::store::EnvironmentId;
use domain::flags::{Evaluation, PayloadKind};
use futures::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::time::Duration;
use tokio_stream::wrappers::BroadcastStream;

/// How long a provider may see no event before it re-fetches on its own.
const INACTIVITY_DELAY_SECS: u64 = 120;
const KEEP_ALIVE: Duration = Duration::from_secs(15);

pub fn routes(routes: Routes) -> Routes {
    let any = Access::Sdk(SdkKinds::Any);
    routes
        .post("/ofrep/v1/evaluate/flags/{key}", any, evaluate_one)
        .post("/ofrep/v1/evaluate/flags", any, evaluate_all)
        // The ticket is the credential; the handler checks it.
        .get("/ofrep/v1/events", Access::Public, events)
}

async fn evaluate_one(
    State(state): State<AppState>,
    Admitted(caller): Admitted,
    Path(key): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let sdk = sdk_caller(&caller)?;
    let context = match flag_context::from_ofrep_body(&body, sdk, client_ip(&caller)) {
        Ok(context) => context,
        Err(error) => return context_error(error, Some(&key)),
    };
    let flags = state.flags.environment(EnvironmentId(sdk.environment_id));
    let Some(evaluation) = flags.set.evaluate(&key, &context) else {
        let body = json!({
            "key": key,
            "errorCode": "FLAG_NOT_FOUND",
            "errorDetails": format!("{}/{} has no flag `{key}`", sdk.project, sdk.environment),
        });
        return Ok((StatusCode::NOT_FOUND, axum::Json(body)).into_response());
    };
    Ok(axum::Json(item(&key, &evaluation)).into_response())
}

async fn evaluate_all(
    State(state): State<AppState>,
    Admitted(caller): Admitted,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let sdk = sdk_caller(&caller)?;
    let context = match flag_context::from_ofrep_body(&body, sdk, client_ip(&caller)) {
        Ok(context) => context,
        Err(error) => return context_error(error, None),
    };
    let flags = state.flags.environment(EnvironmentId(sdk.environment_id));
    let evaluations: Vec<_> = flags.set.evaluate_all(&context).collect();
    let ticket = state.flags.ticket_of(sdk.id).unwrap_or_default();
    let answer = Bulk {
        flags: evaluations
            .iter()
            .map(|(info, evaluation)| item(&info.name, evaluation))
            .collect(),
        metadata: BulkMetadata {
            project: &sdk.project,
            environment: &sdk.environment,
            version: flags.version,
        },
        event_streams: [EventStream {
            r#type: "sse",
            endpoint: Endpoint {
                request_uri: format!("/ofrep/v1/events?ticket={ticket}"),
            },
            inactivity_delay_sec: INACTIVITY_DELAY_SECS,
        }],
    };
    let body = serde_json::to_vec(&answer).expect("an OFREP answer always serializes");
    let etag = etag_of(&body);
    if not_modified(&headers, &etag) {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response());
    }
    Ok(json_with_etag(body, etag))
}

/// One flag's evaluation as an OFREP success item. Typed rather than built as a JSON value: a
/// bulk answer has one per flag, and this is most of its cost.
#[derive(Serialize)]
struct Item<'a> {
    key: &'a str,
    value: ItemValue<'a>,
    reason: &'static str,
    variant: &'a str,
    metadata: Empty,
}

#[derive(Serialize)]
struct Empty {}

/// The value, typed as the OFREP client infers it from the JSON.
#[derive(Serialize)]
#[serde(untagged)]
enum ItemValue<'a> {
    Bool(bool),
    Text(&'a str),
    Json(Value),
}

fn item<'a>(key: &'a str, evaluation: &'a Evaluation<'a>) -> Item<'a> {
    let variant = &evaluation.variant;
    let value = match variant.payload.as_deref().filter(|_| variant.enabled) {
        None => ItemValue::Bool(evaluation.enabled),
        Some(payload) => match payload.kind {
            PayloadKind::Json => serde_json::from_str(&payload.value)
                .map(ItemValue::Json)
                .unwrap_or(ItemValue::Text(&payload.value)),
            PayloadKind::Number => serde_json::from_str::<serde_json::Number>(payload.value.trim())
                .map(|n| ItemValue::Json(Value::Number(n)))
                .unwrap_or(ItemValue::Text(&payload.value)),
            _ => ItemValue::Text(&payload.value),
        },
    };
    let variant_name = if variant.enabled {
        variant.name.as_ref()
    } else if evaluation.enabled {
        "on"
    } else {
        "off"
    };
    Item {
        key,
        value,
        reason: evaluation.reason.as_str(),
        variant: variant_name,
        metadata: Empty {},
    }
}

#[derive(Serialize)]
struct Bulk<'a> {
    flags: Vec<Item<'a>>,
    metadata: BulkMetadata<'a>,
    #[serde(rename = "eventStreams")]
    event_streams: [EventStream; 1],
}

#[derive(Serialize)]
struct BulkMetadata<'a> {
    project: &'a str,
    environment: &'a str,
    version: i64,
}

#[derive(Serialize)]
struct EventStream {
    r#type: &'static str,
    endpoint: Endpoint,
    #[serde(rename = "inactivityDelaySec")]
    inactivity_delay_sec: u64,
}

#[derive(Serialize)]
struct Endpoint {
    #[serde(rename = "requestUri")]
    request_uri: String,
}

fn context_error(error: ContextError, key: Option<&str>) -> Result<Response, ApiError> {
    match error {
        ContextError::Invalid(details) => {
            let code = if details.starts_with("the body is not JSON") {
                "PARSE_ERROR"
            } else {
                "INVALID_CONTEXT"
            };
            let mut body = json!({ "errorCode": code, "errorDetails": details });
            if let Some(key) = key {
                body["key"] = json!(key);
            }
            Ok((StatusCode::BAD_REQUEST, axum::Json(body)).into_response())
        }
        other @ ContextError::OtherEnvironment { .. } => {
            Err(ApiError::Forbidden(other.to_string()))
        }
    }
}

#[derive(Deserialize)]
struct Ticket {
    ticket: Option<String>,
}

async fn events(
    State(state): State<AppState>,
    Query(query): Query<Ticket>,
) -> Result<Response, ApiError> {
    let entry = query
        .ticket
        .as_deref()
        .and_then(|ticket| state.flags.token_by_ticket(ticket))
        .ok_or(ApiError::InvalidToken)?;
    let sdk: SdkPrincipal = entry.principal.clone();
    let environment = EnvironmentId(sdk.environment_id);
    let flags = state.flags.clone();
    let changes = BroadcastStream::new(state.flags.subscribe()).filter_map(move |change| {
        let event = match change {
            Ok(change) if change.environment != environment => None,
            // Changed, or this stream fell behind and may have missed a change: fetch again.
            _ => Some(refetch(&flags.environment(environment).etag)),
        };
        futures::future::ready(event.map(Ok::<_, std::convert::Infallible>))
    });
    let shutdown = state.shutdown.clone();
    let stream = stream::empty()
        .chain(changes)
        .take_until(async move { shutdown.cancelled().await });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response())
}

fn refetch(etag: &str) -> Event {
    Event::default().data(json!({ "type": "refetchEvaluation", "etag": etag }).to_string())
}
