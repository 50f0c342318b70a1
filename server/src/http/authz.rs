//! The authorization layer: before any route runs, its declared access is checked against the
//! caller. Refusals are audited and answered in the route's own style: a known caller's one by
//! one, a stranger's (no credentials) counted with others like it (see
//! [`Refusals`](super::refusals::Refusals)), so anonymous traffic costs no write per request.

use super::AppState;
use super::caller::StaleSession;
use super::error::ApiError;
use super::refusals::{Refusal, RefusalKind};
use super::routes::RouteKind;
use app::error::AppError;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use domain::access::{Denied, decide};
use domain::audit::{Actor, AuditRecord, Outcome};
use domain::auth::Caller;

pub async fn enforce_access(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let Some(matched) = request.extensions().get::<MatchedPath>() else {
        return next.run(request).await;
    };
    let Some(spec) = state.access.get(request.method(), matched.as_str()) else {
        let path = matched.as_str();
        tracing::error!(method = %request.method(), %path, "route without an access declaration refused");
        return ApiError::Forbidden("this route declares no access, so nobody may use it".into())
            .into_response();
    };
    let principal = request
        .extensions()
        .get::<Caller>()
        .and_then(|caller| caller.principal.as_ref());
    let Err(denied) = decide(spec.access, principal) else {
        return next.run(request).await;
    };
    let caller = request
        .extensions()
        .get::<Caller>()
        .cloned()
        .unwrap_or_default();
    let is_page_redirect = spec.kind == RouteKind::Page && denied == Denied::Unauthenticated;
    if caller.principal.is_none() {
        if !is_page_redirect {
            state.refusals.count(Refusal {
                kind: RefusalKind::Denied,
                reason: "no credentials",
                ip: caller.origin.ip.as_deref().and_then(|ip| ip.parse().ok()),
                path: request.uri().path(),
                user_agent: caller.origin.user_agent.as_deref(),
            });
        }
    } else {
        let record = AuditRecord::new(
            Actor::of(caller.principal.as_ref()),
            "access.denied",
            &caller.origin,
        )
        .outcome(Outcome::Denied)
        .security()
        .target(format!("{} {}", request.method(), request.uri().path()))
        .details(serde_json::json!({ "reason": denied.to_string() }));
        if let Err(error) = record.write(&state.portal.pool).await {
            tracing::warn!(%error, "could not audit a refusal");
        }
    }
    match spec.kind {
        RouteKind::Api => ApiError::from(denied).into_response(),
        RouteKind::ServerFn => {
            let error = AppError::from(denied);
            let status = StatusCode::from_u16(error.status()).unwrap_or(StatusCode::FORBIDDEN);
            let body = serde_json::to_string(&error).unwrap_or_default();
            (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
        }
        RouteKind::Page => match denied {
            Denied::Unauthenticated => {
                let next = request
                    .uri()
                    .path_and_query()
                    .map(|p| p.as_str())
                    .unwrap_or("/");
                let expired = if request.extensions().get::<StaleSession>().is_some() {
                    "&expired=1"
                } else {
                    ""
                };
                Redirect::to(&format!("/login?next={}{expired}", urlencode(next))).into_response()
            }
            Denied::Forbidden(message) => {
                (StatusCode::FORBIDDEN, Html(forbidden_page(&message))).into_response()
            }
        },
    }
}

fn forbidden_page(message: &str) -> String {
    let message = message
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    format!(
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Not allowed · Flightdeck</title><link rel="stylesheet" href="/pkg/flightdeck.css"></head>
<body><main class="page narrow"><h1>Not allowed</h1><p class="notice notice-forbidden">{message}</p>
<p><a href="/">Back to the overview</a></p></main></body></html>"#
    )
}

fn urlencode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Server functions answer errors with 500 and the error in the body; this gives each error its
/// own status (422, 403, 429 with Retry-After, …) so clients and logs see what happened.
pub async fn server_fn_status(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    if response.status() != StatusCode::INTERNAL_SERVER_ERROR
        || !response.headers().contains_key("serverfnerror")
    {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 64 * 1024).await else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    if let Ok(error) = serde_json::from_slice::<AppError>(&bytes) {
        parts.status =
            StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if let AppError::TooManyRequests {
            retry_after_secs, ..
        } = error
        {
            parts
                .headers
                .insert(header::RETRY_AFTER, retry_after_secs.into());
        }
    }
    Response::from_parts(parts, axum::body::Body::from(bytes))
}
