//! What the flag APIs for SDKs (Unleash and OFREP) share: the catalog with its CORS layer, the
//! caller's token, ETags and JSON answers.

use super::error::ApiError;
use super::routes::Routes;
use super::{ofrep, unleash};
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use domain::auth::{Caller, Principal, SdkPrincipal};
use sha2::{Digest, Sha256};
use std::time::Duration;
use tower::{Layer, ServiceExt};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// Every SDK route.
pub fn routes() -> Routes {
    ofrep::routes(unleash::routes(Routes::new()))
}

/// The paths SDK routes live under.
fn is_sdk_path(path: &str) -> bool {
    ["/api/frontend", "/api/client/", "/ofrep/"]
        .iter()
        .any(|prefix| path.starts_with(prefix))
}

/// Cross-origin access for the SDK routes. Apps call them from browsers on other origins, with a
/// token rather than a cookie, so any origin may (the token is the credential; no cookie is ever
/// sent). This runs outside every other layer, so preflights are answered before authorization
/// (they carry no credentials) and refusals (401, 413) reach the SDK readable rather than as a
/// network error.
pub async fn cors_for_sdks(request: Request, next: Next) -> Response {
    if is_sdk_path(request.uri().path()) {
        match cors().layer(next).oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        }
    } else {
        next.run(request).await
    }
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
