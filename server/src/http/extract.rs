//! Extractors of our own for JSON bodies, path parameters and query strings, so that a request
//! that cannot be read — malformed JSON, a field of the wrong type, a run number that is not a
//! number — gets the same `{"error": {"code", "message"}}` answer as every other error, saying
//! what is wrong and where, instead of axum's plain-text rejection.

use super::error::ApiError;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, OptionalFromRequest, Request};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// A JSON body (`Content-Type: application/json`), or a JSON answer.
#[derive(Debug, Clone, Copy, Default, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Json<T>(pub T);

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// An optional body: none when the request has no `Content-Type`, else it must be JSON.
impl<T, S> OptionalFromRequest<S> for Json<T>
where
    axum::Json<T>: OptionalFromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Option<Self>, ApiError> {
        <axum::Json<T> as OptionalFromRequest<S>>::from_request(request, state)
            .await
            .map(|body| body.map(|axum::Json(value)| Json(value)))
            .map_err(ApiError::from)
    }
}

/// Path parameters.
#[derive(Debug, Clone, Copy, Default, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// A query string.
#[derive(Debug, Clone, Copy, Default, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        ApiError::Rejected {
            status: rejection.status(),
            message: match &rejection {
                JsonRejection::MissingJsonContentType(_) => {
                    "send the body as JSON with `Content-Type: application/json`".to_string()
                }
                JsonRejection::JsonSyntaxError(_) => {
                    format!("the body is not valid JSON: {}", rejection.body_text())
                }
                JsonRejection::JsonDataError(_) => {
                    format!(
                        "the body does not have the expected fields: {}",
                        rejection.body_text()
                    )
                }
                _ => rejection.body_text(),
            },
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        match rejection {
            // A path whose parameter cannot be read names nothing that exists.
            PathRejection::FailedToDeserializePathParams(error) => ApiError::NotFound(format!(
                "there is nothing at this path: {}",
                error.body_text()
            )),
            other => ApiError::internal(anyhow::anyhow!(other.body_text())),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::BadRequest(format!(
            "the query string cannot be read: {}",
            rejection.body_text()
        ))
    }
}
