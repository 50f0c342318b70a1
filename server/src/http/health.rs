//! `/healthz` (the process is alive) and `/readyz` (it can serve: database and live updates up).

use super::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let database = sqlx::query_scalar!("select 1 as \"one!\"")
        .fetch_one(&state.portal.pool)
        .await
        .is_ok();
    let live = state.live.is_listening();
    let draining = state.shutdown.is_cancelled();
    let ready = database && live && !draining;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(
            json!({ "ready": ready, "database": database, "live_updates": live, "draining": draining }),
        ),
    )
}
