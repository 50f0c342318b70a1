//! Who is calling: resolves the session cookie or API token of every request into a [`Caller`]
//! that handlers and server functions read from the request's extensions.

use super::AppState;
use super::error::ApiError;
use app::api::session::SESSION_COOKIE;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use domain::audit::{Actor, AuditRecord, Origin, Outcome};
use domain::auth::{Caller, Principal};
use std::net::{IpAddr, SocketAddr};

/// Set when the request carried a session cookie that no longer works, so pages can say the
/// session ended rather than just asking to sign in.
#[derive(Debug, Clone, Copy)]
pub struct StaleSession;

pub async fn resolve_caller(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let origin = origin_of(&request);
    let headers = request.headers();
    let mut caller = Caller {
        principal: None,
        origin: origin.clone(),
    };
    if let Some(token) = sdk_token(headers) {
        match state.flags.token(&token) {
            Some(entry) => {
                if entry.should_record_use() {
                    record_sdk_token_use(&state, Principal::Sdk(entry.principal.clone()), &request);
                }
                caller.principal = Some(Principal::Sdk(entry.principal.clone()));
            }
            None => {
                reject_token(&state, &origin, request.uri().path().to_string()).await;
                return ApiError::InvalidToken.into_response();
            }
        }
    } else if let Some(token) = bearer_token(headers) {
        match state
            .portal
            .tokens
            .authenticate(&token, origin.ip.as_deref())
            .await
        {
            Ok(Some(found)) => {
                if found.recorded_use {
                    let principal = Principal::Token(found.principal.clone());
                    let record =
                        AuditRecord::new(Actor::of(Some(&principal)), "token.used", &origin)
                            .security()
                            .target(request.uri().path().to_string());
                    if let Err(error) = record.write(&state.portal.pool).await {
                        tracing::warn!(%error, "could not audit a token use");
                    }
                }
                caller.principal = Some(Principal::Token(found.principal));
            }
            Ok(None) => {
                reject_token(&state, &origin, request.uri().path().to_string()).await;
                return ApiError::InvalidToken.into_response();
            }
            Err(error) => return ApiError::from(error).into_response(),
        }
    } else if let Some(cookie) = session_cookie(headers) {
        match state.portal.sessions.resolve(&cookie).await {
            Ok(Some(user)) => caller.principal = Some(Principal::User(user)),
            Ok(None) => {
                request.extensions_mut().insert(StaleSession);
            }
            Err(error) => return ApiError::internal(error).into_response(),
        }
    }
    request.extensions_mut().insert(caller);
    next.run(request).await
}

async fn reject_token(state: &AppState, origin: &Origin, path: String) {
    let record = AuditRecord::new(Actor::anonymous(), "token.rejected", origin)
        .outcome(Outcome::Denied)
        .security()
        .target(path)
        .details(serde_json::json!({ "reason": "unknown, revoked or expired token" }));
    if let Err(error) = record.write(&state.portal.pool).await {
        tracing::warn!(%error, "could not audit a rejected token");
    }
}

/// Writes an SDK token's last use and audits it, off the request's path.
fn record_sdk_token_use(state: &AppState, principal: Principal, request: &Request) {
    let pool = state.portal.pool.clone();
    let tokens = state.flags.sdk_tokens().clone();
    let origin = origin_of(request);
    let target = request.uri().path().to_string();
    tokio::spawn(async move {
        let record = AuditRecord::new(Actor::of(Some(&principal)), "token.used", &origin)
            .security()
            .target(target);
        if let Err(error) = tokens.record_use(principal.id()).await {
            tracing::warn!(%error, "could not record an SDK token's use");
        }
        if let Err(error) = record.write(&pool).await {
            tracing::warn!(%error, "could not audit an SDK token's use");
        }
    });
}

/// An SDK token: `project:environment.secret` in `Authorization` (raw, as Unleash SDKs send it,
/// or after `Bearer`), or in `X-API-Key` (which OFREP names). Personal API tokens never contain
/// a colon.
fn sdk_token(headers: &HeaderMap) -> Option<String> {
    let from_key = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_string());
    from_key
        .or_else(|| bearer_token(headers))
        .filter(|token| token.contains(':'))
}

/// `Authorization: Bearer <token>`. A bare token (as Unleash SDKs send it) is accepted too.
fn bearer_token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .unwrap_or(value);
    (!token.is_empty()).then(|| token.trim().to_string())
}

fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, value)| *name == SESSION_COOKIE && !value.is_empty())
        .map(|(_, value)| value.to_string())
}

/// The client's address and user agent. `X-Forwarded-For` is believed only from a proxy on this
/// machine (loopback), since anyone can send the header.
fn origin_of(request: &Request) -> Origin {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let forwarded = request
        .headers()
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next_back())
        .and_then(|v| v.trim().parse::<IpAddr>().ok());
    let ip = match (peer, forwarded) {
        (Some(peer), Some(forwarded)) if peer.is_loopback() => Some(forwarded),
        (peer, _) => peer,
    };
    Origin {
        ip: ip.map(|ip| ip.to_string()),
        user_agent: request
            .headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; flightdeck_session=fds_x; b=2"),
        );
        assert_eq!(session_cookie(&headers).as_deref(), Some("fds_x"));
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("flightdeck_session="),
        );
        assert_eq!(session_cookie(&headers), None);
    }

    #[test]
    fn bearer_and_bare_tokens_are_read() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer fdt_abc"),
        );
        assert_eq!(bearer_token(&headers).as_deref(), Some("fdt_abc"));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("fdt_abc"));
        assert_eq!(bearer_token(&headers).as_deref(), Some("fdt_abc"));
    }
}
