//! Cross-site request forgery protection for every state change.
//!
//! Browsers say where a request comes from: `Sec-Fetch-Site` (all current browsers) or, failing
//! that, `Origin`. An unsafe request (POST, PUT, PATCH, DELETE) from another site is refused.
//! Requests with an `Authorization` header carry no ambient credentials and pass, as do requests
//! with neither header (not from a browser). This is the check Go's `CrossOriginProtection` and
//! OWASP's "verify origin with standard headers" describe; with SameSite=Lax cookies it needs no
//! token in every form.

use super::AppState;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use domain::audit::{Actor, AuditRecord, Outcome};
use domain::auth::Caller;

pub async fn refuse_cross_site(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if let Err(reason) = check(request.method(), request.headers()) {
        let caller = request
            .extensions()
            .get::<Caller>()
            .cloned()
            .unwrap_or_default();
        let record = AuditRecord::new(
            Actor::of(caller.principal.as_ref()),
            "csrf.refused",
            &caller.origin,
        )
        .outcome(Outcome::Denied)
        .security()
        .target(request.uri().path().to_string())
        .details(serde_json::json!({ "reason": reason }));
        if let Err(error) = record.write(&state.portal.pool).await {
            tracing::warn!(%error, "could not audit a cross-site refusal");
        }
        let message = format!("cross-site request refused: {reason}");
        return (StatusCode::FORBIDDEN, message).into_response();
    }
    next.run(request).await
}

fn check(method: &Method, headers: &HeaderMap) -> Result<(), String> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
        || headers.contains_key(header::AUTHORIZATION)
    {
        return Ok(());
    }
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return match site {
            "same-origin" | "none" => Ok(()),
            other => Err(format!("the browser reports this request as {other}")),
        };
    }
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return Ok(());
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let origin_host = origin
        .split_once("://")
        .map(|(_, rest)| rest)
        .unwrap_or(origin);
    if origin_host.eq_ignore_ascii_case(host) {
        Ok(())
    } else {
        Err(format!("it comes from {origin}, not from this site"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn reads_and_same_origin_changes_pass() {
        assert!(check(&Method::GET, &headers(&[("sec-fetch-site", "cross-site")])).is_ok());
        assert!(
            check(
                &Method::POST,
                &headers(&[("sec-fetch-site", "same-origin")])
            )
            .is_ok()
        );
        assert!(
            check(
                &Method::POST,
                &headers(&[("origin", "http://a.test:3000"), ("host", "a.test:3000")])
            )
            .is_ok()
        );
        assert!(check(&Method::POST, &headers(&[])).is_ok());
    }

    #[test]
    fn cross_site_changes_are_refused_unless_a_token_is_sent() {
        assert!(check(&Method::POST, &headers(&[("sec-fetch-site", "cross-site")])).is_err());
        assert!(
            check(
                &Method::PUT,
                &headers(&[("origin", "https://evil.test"), ("host", "a.test")])
            )
            .is_err()
        );
        assert!(
            check(
                &Method::POST,
                &headers(&[("origin", "null"), ("host", "a.test")])
            )
            .is_err()
        );
        assert!(
            check(
                &Method::POST,
                &headers(&[
                    ("sec-fetch-site", "cross-site"),
                    ("authorization", "Bearer x")
                ])
            )
            .is_ok()
        );
    }
}
