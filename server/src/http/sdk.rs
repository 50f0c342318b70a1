//! What the flag APIs for SDKs (Unleash and OFREP) share: the catalog with its CORS layer, the
//! caller's token, ETags and JSON answers.

use super::error::ApiError;
use super::routes::Routes;
use super::{ofrep, unleash};
use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use domain::auth::{Caller, Principal, SdkPrincipal};
use sha2::{Digest, Sha256};
use std::time::Duration;
use tower_http::cors::{AllowOrigin, CorsLayer};

/// Every SDK route. Apps call them from browsers on other origins, with a token rather than a
/// cookie, so any origin may (the token is the credential, and no cookie is ever sent).
pub fn routes() -> Routes {
    let mut routes = ofrep::routes(unleash::routes(Routes::new()));
    routes.router = routes.router.layer(cors());
    routes
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
