//! GitHub's push webhook: `POST /api/v1/webhooks/github/{project}`.
//!
//! The body is verified against `X-Hub-Signature-256` (HMAC-SHA256 of the raw bytes with the
//! configured secret, compared in constant time) before anything reads it. `ping` is answered,
//! pushes to trigger branches start a run (the delivery id makes a redelivery start none), and
//! everything else is acknowledged and ignored. A missing or wrong signature is a 401 and a
//! security event in the audit log.

use super::AppState;
use super::error::ApiError;
use super::extract::{Json, Path};
use super::routes::Routes;
use axum::Extension;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use domain::access::Access;
use domain::audit::{Actor, AuditRecord, Outcome};
use domain::auth::Caller;
use domain::run::store::Commit;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::json;
use sha2::Sha256;

pub fn routes(routes: Routes) -> Routes {
    // Public: GitHub holds no token; the signature is the authentication.
    routes.post("/api/v1/webhooks/github/{project}", Access::Public, github)
}

/// Whether `signature` (`sha256=<hex>`) is the HMAC-SHA256 of `body` under `secret`.
pub fn signature_is_valid(secret: &[u8], body: &[u8], signature: &str) -> bool {
    let Some(hex_digest) = signature.strip_prefix("sha256=") else {
        return false;
    };
    let Ok(expected) = hex::decode(hex_digest) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

#[derive(Debug, Deserialize)]
struct Push {
    #[serde(rename = "ref")]
    git_ref: String,
    after: String,
    #[serde(default)]
    deleted: bool,
    head_commit: Option<HeadCommit>,
}

#[derive(Debug, Deserialize)]
struct HeadCommit {
    id: String,
    message: String,
    author: Person,
}

#[derive(Debug, Deserialize)]
struct Person {
    name: String,
    #[serde(default)]
    email: Option<String>,
}

async fn github(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(project): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let Some(secret) = state.webhook_secret.as_deref() else {
        return Err(ApiError::NotFound(
            "GitHub webhooks are not configured (set FLIGHTDECK_GITHUB_WEBHOOK_SECRET)".into(),
        ));
    };
    let signature = headers
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok());
    let event = headers
        .get("x-github-event")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let delivery = headers
        .get("x-github-delivery")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if !signature.is_some_and(|s| signature_is_valid(secret.as_bytes(), &body, s)) {
        let reason = if signature.is_some() {
            "wrong signature"
        } else {
            "no signature"
        };
        AuditRecord::new(Actor::anonymous(), "webhook.bad_signature", &caller.origin)
            .outcome(Outcome::Denied)
            .security()
            .target(format!("github/{project}"))
            .details(json!({ "reason": reason, "event": event, "delivery": delivery }))
            .write(&state.portal.pool)
            .await?;
        return Err(ApiError::BadSignature(reason));
    }
    match event.as_str() {
        "ping" => Ok((
            StatusCode::OK,
            Json(json!({ "ok": true, "zen": "received" })),
        )),
        "push" => {
            let json = payload_json(&headers, &body)?;
            let push: Push = serde_json::from_slice(&json).map_err(|e| ApiError::Invalid {
                message: format!("the push payload is not valid: {e}"),
                details: serde_json::Value::Null,
            })?;
            let Some(branch) = push.git_ref.strip_prefix("refs/heads/") else {
                return Ok(ignored("not a branch push"));
            };
            if push.deleted || push.after.bytes().all(|b| b == b'0') {
                return Ok(ignored("the branch was deleted"));
            }
            let Some(head) = push.head_commit else {
                return Ok(ignored("the push has no head commit"));
            };
            if !branch_triggers(&state, &project, branch).await? {
                return Ok(ignored("pushes to this branch do not start runs"));
            }
            let commit = Commit {
                sha: head.id,
                branch: branch.to_string(),
                author: match head.author.email {
                    Some(email) => format!("{} <{email}>", head.author.name),
                    None => head.author.name,
                },
                message: head.message.lines().next().unwrap_or_default().to_string(),
            };
            let created = state
                .portal
                .runs
                .start_from_push_payload(&project, &commit, delivery.as_deref(), &caller.origin)
                .await?;
            let status = if created.created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            Ok((
                status,
                Json(
                    json!({ "project": project, "number": created.number, "created": created.created }),
                ),
            ))
        }
        _ => Ok(ignored("only push and ping events are used")),
    }
}

fn ignored(why: &str) -> (StatusCode, Json<serde_json::Value>) {
    (StatusCode::ACCEPTED, Json(json!({ "ignored": why })))
}

/// The JSON document: the body itself, or the `payload` field of a form-encoded body.
fn payload_json(headers: &HeaderMap, body: &[u8]) -> Result<Vec<u8>, ApiError> {
    let form = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
    if !form {
        return Ok(body.to_vec());
    }
    form_urlencoded_payload(body).ok_or_else(|| ApiError::Invalid {
        message: "the form-encoded webhook has no `payload` field".into(),
        details: serde_json::Value::Null,
    })
}

fn form_urlencoded_payload(body: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(body).ok()?;
    let encoded = text
        .split('&')
        .find_map(|pair| pair.strip_prefix("payload="))?;
    let plus = encoded.replace('+', " ");
    let mut out = Vec::with_capacity(plus.len());
    let bytes = plus.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

/// Whether the project's current definition starts runs on pushes to `branch`.
async fn branch_triggers(state: &AppState, project: &str, branch: &str) -> Result<bool, ApiError> {
    domain::project::push_starts_run(&state.portal.pool, project, branch)
        .await?
        .map(|decision| decision.starts)
        .ok_or_else(|| ApiError::NotFound(format!("there is no project `{project}`")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn githubs_documented_test_vector_verifies() {
        let signature = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert!(signature_is_valid(
            b"It's a Secret to Everybody",
            b"Hello, World!",
            signature
        ));
        assert!(!signature_is_valid(
            b"another secret",
            b"Hello, World!",
            signature
        ));
        assert!(!signature_is_valid(
            b"It's a Secret to Everybody",
            b"Hello, World?",
            signature
        ));
        assert!(!signature_is_valid(
            b"It's a Secret to Everybody",
            b"Hello, World!",
            "sha1=abc"
        ));
    }

    #[test]
    fn form_encoded_payloads_are_decoded() {
        assert_eq!(
            form_urlencoded_payload(b"payload=%7B%22a%22%3A1%7D").unwrap(),
            br#"{"a":1}"#
        );
    }
}
