//! Who is calling: resolves the session cookie or API token of every request into a [`Caller`]
//! that handlers and server functions read from the request's extensions.
//!
//! SDK tokens are found in memory (the [`FlagCache`](crate::flag_cache::FlagCache)), and a
//! personal token of a shape never issued is refused without a query, so an unknown token costs
//! no database write: its refusal is counted in [`Refusals`](super::refusals::Refusals) and
//! audited once a minute per address and path, not one row per request.

use super::AppState;
use super::error::ApiError;
use super::refusals::{Refusal, RefusalKind};
use app::api::session::SESSION_COOKIE;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use domain::audit::{Actor, AuditRecord, Origin};
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
    let ip = client_ip(&request);
    let identified = identify(&state, request.headers(), request.uri().path(), ip).await;
    match identified {
        Ok(Identified {
            caller,
            stale_session,
        }) => {
            if stale_session {
                request.extensions_mut().insert(StaleSession);
            }
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(refused) => refused,
    }
}

/// A request's caller, when its credentials are good or absent.
pub struct Identified {
    pub caller: Caller,
    /// A session cookie came that no longer works.
    pub stale_session: bool,
}

/// Resolves the request's credentials: an SDK token from memory, a personal token or session
/// from the database. Unknown tokens are refused (401), counted rather than written one by one.
pub async fn identify(
    state: &AppState,
    headers: &HeaderMap,
    path: &str,
    ip: Option<IpAddr>,
) -> Result<Identified, Response> {
    let identified = |principal: Option<Principal>, origin: Origin| Identified {
        caller: Caller { principal, origin },
        stale_session: false,
    };
    if let Some(token) = sdk_token(headers) {
        // A refusal needs no origin: it is found before one is made.
        let Some(entry) = state.flags.token(token) else {
            return Err(refuse_token(state, headers, path, ip, "unknown SDK token"));
        };
        let origin = origin_of(headers, ip);
        let principal = Principal::Sdk(entry.principal.clone());
        if entry.should_record_use() {
            record_sdk_token_use(state, principal.clone());
        }
        return Ok(identified(Some(principal), origin));
    }
    let origin = origin_of(headers, ip);
    if let Some(token) = bearer_token(headers) {
        let found = state
            .portal
            .tokens
            .authenticate(token, origin.ip.as_deref())
            .await
            .map_err(|error| ApiError::from(error).into_response())?;
        let Some(found) = found else {
            let reason = "unknown, revoked or expired token";
            return Err(refuse_token(state, headers, path, ip, reason));
        };
        let principal = Principal::Token(found.principal);
        // Routine use shows as the token's "last used"; a new address is worth a look.
        if let Some(new_address) = &found.new_address {
            let record =
                AuditRecord::new(Actor::of(Some(&principal)), "token.new_address", &origin)
                    .security()
                    .target(path.to_string())
                    .details(serde_json::json!({ "previous_address": new_address.previous }));
            if let Err(error) = record.write(&state.portal.pool).await {
                tracing::warn!(%error, "could not audit a token use");
            }
        }
        return Ok(identified(Some(principal), origin));
    }
    if let Some(cookie) = session_cookie(headers) {
        let user = state
            .portal
            .sessions
            .resolve(cookie)
            .await
            .map_err(|error| ApiError::internal(error).into_response())?;
        return Ok(match user {
            Some(user) => identified(Some(Principal::User(user)), origin),
            None => Identified {
                stale_session: true,
                ..identified(None, origin)
            },
        });
    }
    Ok(identified(None, origin))
}

/// Counts the refusal of an unknown token (written with others like it within a minute) and
/// answers it.
fn refuse_token(
    state: &AppState,
    headers: &HeaderMap,
    path: &str,
    ip: Option<IpAddr>,
    reason: &'static str,
) -> Response {
    state.refusals.count(Refusal {
        kind: RefusalKind::UnknownToken,
        reason,
        ip,
        path,
        user_agent: user_agent(headers),
    });
    ApiError::InvalidToken.into_response()
}

/// Writes an SDK token's last use, off the request's path. SDKs poll all day from every app
/// instance: their use is the token's "last used", not an audit entry each.
fn record_sdk_token_use(state: &AppState, principal: Principal) {
    let tokens = state.flags.sdk_tokens().clone();
    tokio::spawn(async move {
        if let Err(error) = tokens.record_use(principal.id()).await {
            tracing::warn!(%error, "could not record an SDK token's use");
        }
    });
}

/// An SDK token: `project:environment.secret` in `Authorization` (raw, as Unleash SDKs send it,
/// or after `Bearer`), or in `X-API-Key` (which OFREP names). Personal API tokens never contain
/// a colon.
pub fn sdk_token(headers: &HeaderMap) -> Option<&str> {
    let from_key = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim);
    from_key
        .or_else(|| bearer_token(headers))
        .filter(|token| token.contains(':'))
}

/// `Authorization: Bearer <token>`. A bare token (as Unleash SDKs send it) is accepted too.
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .unwrap_or(value)
        .trim();
    (!token.is_empty()).then_some(token)
}

fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, value)| *name == SESSION_COOKIE && !value.is_empty())
        .map(|(_, value)| value)
}

pub fn user_agent(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
}

/// The client's address. `X-Forwarded-For` is believed only from a proxy on this machine
/// (loopback), since anyone can send the header.
pub fn client_ip(request: &Request) -> Option<IpAddr> {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    match peer {
        Some(peer) if peer.is_loopback() => request
            .headers()
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next_back())
            .and_then(|v| v.trim().parse::<IpAddr>().ok())
            .or(Some(peer)),
        peer => peer,
    }
}

/// The client's address and user agent, as the audit log records them.
fn origin_of(headers: &HeaderMap, ip: Option<IpAddr>) -> Origin {
    Origin {
        ip: ip.map(|ip| ip.to_string()),
        user_agent: user_agent(headers).map(str::to_string),
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
        assert_eq!(session_cookie(&headers), Some("fds_x"));
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
        assert_eq!(bearer_token(&headers), Some("fdt_abc"));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("fdt_abc"));
        assert_eq!(bearer_token(&headers), Some("fdt_abc"));
    }
}
