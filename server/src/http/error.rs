//! The REST API's errors, mapped to HTTP once. Internal causes are logged, never sent.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("sign in or send an API token (Authorization: Bearer <token>)")]
    Unauthenticated,
    #[error("this API token is unknown, revoked or expired")]
    InvalidToken,
    #[error("the webhook's signature is missing or wrong ({0})")]
    BadSignature(&'static str),
    /// A request that cannot be read (malformed JSON or query, bad values), said where.
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Forbidden(String),
    /// Refused, with what the refusal is about (e.g. the changes a definition would make).
    #[error("{message}")]
    ForbiddenWith {
        message: String,
        details: serde_json::Value,
    },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{message}")]
    Invalid {
        message: String,
        details: serde_json::Value,
    },
    #[error("{0}")]
    PayloadTooLarge(String),
    /// A body the extractors could not read, with the status that fits (400, 413, 415, 422).
    #[error("{message}")]
    Rejected { status: StatusCode, message: String },
    #[error("the database is unavailable; try again shortly")]
    Unavailable,
    #[error("something went wrong on the server; the error was logged")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    pub fn internal(cause: impl Into<anyhow::Error>) -> Self {
        ApiError::Internal(cause.into())
    }

    fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthenticated | ApiError::InvalidToken | ApiError::BadSignature(_) => {
                StatusCode::UNAUTHORIZED
            }
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Forbidden(_) | ApiError::ForbiddenWith { .. } => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Rejected { status, .. } => *status,
            ApiError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthenticated => "unauthenticated",
            ApiError::InvalidToken => "invalid_token",
            ApiError::BadSignature(_) => "bad_signature",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Forbidden(_) | ApiError::ForbiddenWith { .. } => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::Conflict(_) => "conflict",
            ApiError::Invalid { .. } => "invalid",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::Rejected { status, .. } => match *status {
                StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
                StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
                StatusCode::UNPROCESSABLE_ENTITY => "invalid",
                _ => "bad_request",
            },
            ApiError::Unavailable => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => ApiError::Unavailable,
            other => ApiError::internal(other),
        }
    }
}

impl From<domain::access::Denied> for ApiError {
    fn from(d: domain::access::Denied) -> Self {
        match d {
            domain::access::Denied::Unauthenticated => ApiError::Unauthenticated,
            domain::access::Denied::Forbidden(m) => ApiError::Forbidden(m),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        // Logged by class: the server's failures as errors, the caller's mistakes at debug (they
        // are answered, and refusals that matter are in the audit log).
        match &self {
            ApiError::Internal(cause) => tracing::error!(error = ?cause, "API request failed"),
            _ if status.is_server_error() => {
                tracing::warn!(code = self.code(), message = %self, "API request could not be served")
            }
            _ => tracing::debug!(code = self.code(), message = %self, "API request refused"),
        }
        let details = match &self {
            ApiError::Invalid { details, .. } | ApiError::ForbiddenWith { details, .. } => {
                details.clone()
            }
            _ => serde_json::Value::Null,
        };
        let mut body = json!({ "error": { "code": self.code(), "message": self.to_string() } });
        if !details.is_null() {
            body["error"]["details"] = details;
        }
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
