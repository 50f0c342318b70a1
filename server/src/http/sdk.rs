//! What the flag APIs for SDKs (Unleash and OFREP) share: their router with its own layers, the
//! caller's token, ETags and JSON answers.
//!
//! The SDK routes are the shipped app's hot path and public: any app, or anyone who copied a
//! frontend token out of one, calls them at any rate. They need no session, CSRF check or page
//! machinery, so they have a stack of their own, outermost first:
//!
//! | layer | why |
//! |---|---|
//! | tracing (debug level; failures at error) | a span per request only when asked for |
//! | `X-Content-Type-Options: nosniff` | answers are JSON, never to be sniffed as a page |
//! | CORS, any origin | apps call from browsers on other origins with a token, never a cookie; preflights are answered before authorization, and refusals (401, 413) reach the SDK readable |
//! | body limit ([`MAX_BODY_BYTES`](super::MAX_BODY_BYTES)) | as everywhere |
//! | [`admit`]: caller and access | the SDK token from memory; the route's declared access from the same [`AccessTable`](super::routes::AccessTable) every route is checked against, decided by [`domain::access::decide`] |
//!
//! Every refusal here is counted, not written one by one ([`Refusals`](super::refusals::Refusals)):
//! junk costs no database write. A person's session or a personal token (refused here, as
//! declared) is still resolved from the database so the answer is the declared one (403, not
//! 401); junk of neither shape never reaches it.

use super::AppState;
use super::caller::{self, Identified};
use super::error::ApiError;
use super::refusals::{Refusal, RefusalKind};
use super::routes::Routes;
use super::{ofrep, unleash};
use axum::Router;
use axum::body::Body;
use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, header};
use axum::middleware::{Next, from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use domain::access::decide;
use domain::auth::{Caller, Principal, SdkPrincipal};
use sha2::{Digest, Sha256};
use std::time::Duration;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::{DefaultMakeSpan, DefaultOnResponse, TraceLayer};
use tracing::Level;

/// Every SDK route.
pub fn routes() -> Routes {
    ofrep::routes(unleash::routes(Routes::new()))
}

/// The SDK routes with their lean stack (see the module doc).
pub fn router(state: AppState) -> Router {
    routes()
        .router
        .route_layer(from_fn_with_state(state.clone(), admit))
        .layer(from_fn(super::limit_body))
        .layer(cors())
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(DefaultMakeSpan::new().level(Level::DEBUG))
                .on_response(DefaultOnResponse::new().level(Level::DEBUG)),
        )
        .with_state(state)
}

/// Resolves the caller and checks the route's declared access; refusals are counted.
async fn admit(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let Some(access) = request
        .extensions()
        .get::<MatchedPath>()
        .and_then(|matched| state.access.get(request.method(), matched.as_str()))
        .map(|spec| spec.access)
    else {
        tracing::error!(method = %request.method(), path = request.uri().path(), "SDK route without an access declaration refused");
        return ApiError::Forbidden("this route declares no access, so nobody may use it".into())
            .into_response();
    };
    let ip = caller::client_ip(&request);
    let headers = request.headers();
    let path = request.uri().path();
    let caller = match caller::identify(&state, headers, path, ip).await {
        Ok(Identified { caller, .. }) => caller,
        Err(refused) => return refused,
    };
    if let Err(denied) = decide(access, caller.principal.as_ref()) {
        state.refusals.count(Refusal {
            kind: RefusalKind::Denied,
            reason: match &caller.principal {
                None => "no credentials",
                Some(Principal::Sdk(_)) => "an SDK token of another kind",
                Some(Principal::User(_)) => "a person's session, not an SDK token",
                Some(Principal::Token(_)) => "a personal API token, not an SDK token",
            },
            ip,
            path,
            user_agent: caller::user_agent(headers),
        });
        return ApiError::from(denied).into_response();
    }
    request.extensions_mut().insert(caller);
    next.run(request).await
}

fn cors() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::any())
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::IF_NONE_MATCH,
            HeaderName::from_static("x-api-key"),
            HeaderName::from_static("unleash-appname"),
            HeaderName::from_static("unleash-connection-id"),
            HeaderName::from_static("unleash-instanceid"),
            HeaderName::from_static("unleash-interval"),
            HeaderName::from_static("unleash-sdk"),
            HeaderName::from_static("unleash-client-spec"),
        ])
        .expose_headers([header::ETAG])
        .max_age(Duration::from_secs(3600))
}

/// The caller [`admit`] let in, taken out of the request rather than copied (as `Extension`
/// would: its names are strings).
pub struct Admitted(pub Caller);

impl<S: Send + Sync> FromRequestParts<S> for Admitted {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let caller = parts.extensions.remove::<Caller>();
        caller.map(Admitted).ok_or(ApiError::Unauthenticated)
    }
}

/// The SDK token's holder (the access layer has already refused every other caller).
pub fn sdk_caller(caller: &Caller) -> Result<&SdkPrincipal, ApiError> {
    match &caller.principal {
        Some(Principal::Sdk(sdk)) => Ok(sdk),
        Some(_) => Err(ApiError::Forbidden("this API takes an SDK token".into())),
        None => Err(ApiError::Unauthenticated),
    }
}

pub fn client_ip(caller: &Caller) -> Option<&str> {
    caller.origin.ip.as_deref()
}

/// A strong ETag for an answer: its SHA-256, so every replica gives the same tag for the same
/// answer.
pub fn etag_of(body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    format!("\"{}\"", hex::encode(&digest[..16]))
}

/// Whether `If-None-Match` names this tag (weak or strong, in a list, or `*`).
pub fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == etag || tag == "*")
}

pub fn json_with_etag(body: impl Into<Body>, etag: String) -> Response {
    let mut response = Response::new(body.into());
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(value) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, value);
    }
    response.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_finds_the_tag_in_lists_and_weak_forms() {
        let etag = etag_of(b"{}");
        let mut headers = HeaderMap::new();
        assert!(!not_modified(&headers, &etag));
        headers.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_str(&format!("\"x\", W/{etag}")).unwrap(),
        );
        assert!(not_modified(&headers, &etag));
        headers.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"other\""));
        assert!(!not_modified(&headers, &etag));
    }
}
