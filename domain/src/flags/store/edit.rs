//! A change to one flag in one environment: on/off, the kill switch, strategies, variants,
//! impression data. The form every per-environment change takes, so that a scheduled or
//! approved change is stored as an [`EnvironmentEdit`] and applied here later, and a deployment
//! can apply flag settings inside its own transaction.

use serde_json::json;
use sqlx::PgConnection;

use super::rows::{check_segments, environment_state, find_flag, lock_environment};
use super::state::{build_state, record_snapshot};
use super::{Applied, EnvironmentId, FlagError, put_environment_state};
use crate::audit::{Actor, AuditRecord, Origin};
use crate::flags::definition::{EnvironmentEdit, FlagName};

/// Applies one edit to a flag in one environment, in the caller's transaction: locks the
/// environment, writes the row, takes a snapshot when what SDKs see changed, and audits it.
/// Nothing is written when the flag already is so.
pub async fn apply(
    conn: &mut PgConnection,
    environment: EnvironmentId,
    flag: &FlagName,
    edit: EnvironmentEdit,
    actor: Actor,
    origin: &Origin,
) -> Result<Applied, FlagError> {
    let env = lock_environment(conn, environment)
        .await?
        .ok_or(FlagError::UnknownEnvironment(environment))?;
    let found = find_flag(conn, &env.project_key, env.project_id, flag).await?;
    if let EnvironmentEdit::Strategies { strategies } = &edit {
        check_segments(conn, &env, strategies.segment_ids()).await?;
    }
    let before = environment_state(conn, found.id, env.id).await?;
    let after = before.apply(&edit);
    if after == before {
        return Ok(Applied::Unchanged);
    }
    let state_before = build_state(conn, &env).await?;
    put_environment_state(conn, found.id, env.id, &after, &actor.name).await?;
    let state_after = build_state(conn, &env).await?;
    let snapshots = if state_after == state_before {
        Vec::new()
    } else {
        let reason = edit.describe(flag);
        let snapshot =
            record_snapshot(conn, &env, &state_after, &actor.name, &reason, None, None).await?;
        vec![snapshot]
    };
    AuditRecord::new(actor, edit.action(), origin)
        .target(format!("{}/{}/{flag}", env.project_key, env.name))
        .details(json!({ "before": before, "after": after, "snapshots": snapshots }))
        .write(&mut *conn)
        .await?;
    Ok(Applied::Changed { snapshots })
}
