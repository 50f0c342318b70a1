//! An environment's state as the rows say, its snapshots, and the end every change shares:
//! a snapshot of each environment it changed, and its audit entry.

use std::collections::{BTreeSet, HashMap};

use serde_json::json;
use sha2::{Digest, Sha256};
use sqlx::PgConnection;
use sqlx::types::Json;
use uuid::Uuid;

use super::rows::normalize_dependency;
use super::{Applied, Environment, LockedProject, SnapshotRef};
use crate::audit::{Actor, AuditRecord, Origin};
use crate::flags::model::{
    ClientFeature, ClientFeatures, Constraint, Dependency, Segment, Strategy, Variant,
};

/// What a change to a project did, for its snapshots and its audit entry.
pub(crate) struct Change<'a> {
    pub actor: Actor,
    pub action: &'static str,
    pub origin: &'a Origin,
    /// What the audit entry names: `shop/checkout`, `shop/segment/3`.
    pub target: String,
    /// The snapshots' reason: "checkout archived".
    pub reason: String,
    /// The audit entry's details (`before`, `after`, …); `snapshots` is added.
    pub details: serde_json::Value,
}

/// Ends a change to a locked project whose states were `before` ([`states`]): a snapshot of each
/// environment whose state now differs, and the audit entry.
pub(crate) async fn finish(
    conn: &mut PgConnection,
    project: &LockedProject,
    before: &[ClientFeatures],
    change: Change<'_>,
) -> Result<Applied, sqlx::Error> {
    let snapshots =
        snapshot_changed(conn, project, before, &change.actor.name, &change.reason).await?;
    let mut details = change.details;
    details["snapshots"] = json!(snapshots);
    AuditRecord::new(change.actor, change.action, change.origin)
        .target(change.target)
        .details(details)
        .write(&mut *conn)
        .await?;
    Ok(Applied::Changed { snapshots })
}

/// The environment's `/api/client/features` body as the rows say: live flags by name (byte
/// order, not the database's collation, so the bytes and their SHA-256 do not depend on how the
/// database was set up), each with its state here, and the segments their strategies use.
pub(crate) async fn build_state(
    conn: &mut PgConnection,
    env: &Environment,
) -> Result<ClientFeatures, sqlx::Error> {
    let rows = sqlx::query!(
        r#"select f.flag_id, f.name, f.description, f.flag_type, f.stale,
                  fe.enabled as "enabled?", fe.impression_data as "impression_data?",
                  fe.strategies as "strategies?: Json<Vec<Strategy>>",
                  fe.variants as "variants?: Json<Vec<Variant>>"
           from flag f
           left join flag_environment fe on fe.flag_id = f.flag_id and fe.environment_id = $2
           where f.project_id = $1 and f.archived_at is null"#,
        env.project_id,
        env.id.0
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut needs: HashMap<Uuid, Vec<Dependency>> = HashMap::new();
    for r in sqlx::query!(
        r#"select d.flag_id, p.name, d.enabled, d.variants
           from flag_dependency d join flag p on p.flag_id = d.parent_flag_id
           where d.project_id = $1"#,
        env.project_id
    )
    .fetch_all(&mut *conn)
    .await?
    {
        needs
            .entry(r.flag_id)
            .or_default()
            .push(normalize_dependency(Dependency {
                feature: r.name,
                enabled: Some(r.enabled),
                variants: Some(r.variants),
            }));
    }
    let mut features: Vec<ClientFeature> = rows
        .into_iter()
        .map(|r| {
            let mut dependencies = needs.remove(&r.flag_id).unwrap_or_default();
            dependencies.sort_by(|a, b| a.feature.cmp(&b.feature));
            ClientFeature {
                name: r.name,
                feature_type: Some(r.flag_type),
                description: Some(r.description).filter(|d| !d.is_empty()),
                enabled: r.enabled.unwrap_or(false),
                stale: r.stale,
                impression_data: r.impression_data.unwrap_or(false),
                project: Some(env.project_key.clone()),
                strategies: r.strategies.map(|s| s.0).unwrap_or_default(),
                variants: r.variants.map(|v| v.0).unwrap_or_default(),
                dependencies,
            }
        })
        .collect();
    features.sort_by(|a, b| a.name.cmp(&b.name));
    let used: BTreeSet<i32> = features
        .iter()
        .flat_map(|f| f.strategies.iter())
        .flat_map(|s| s.segments.iter().copied())
        .collect();
    let segments = if used.is_empty() {
        Vec::new()
    } else {
        let ids: Vec<i32> = used.into_iter().collect();
        let mut segments: Vec<Segment> = sqlx::query!(
            r#"select segment_id, name, constraints as "constraints: Json<Vec<Constraint>>"
               from segment
               where project_id = $1 and deleted_at is null and segment_id = any($2)"#,
            env.project_id,
            &ids
        )
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .map(|r| Segment {
            id: r.segment_id,
            name: Some(r.name),
            constraints: r.constraints.0,
        })
        .collect();
        segments.sort_by_key(|s| s.id);
        segments
    };
    Ok(ClientFeatures {
        version: 2,
        features,
        segments,
        query: None,
        meta: None,
    })
}

/// The SHA-256 of a state as Flightdeck serializes it: the same state always gives the same
/// bytes (struct fields in order, parameters in a sorted map), whatever jsonb did to the keys.
pub fn state_sha256(state: &ClientFeatures) -> String {
    let bytes = serde_json::to_vec(state).expect("a ClientFeatures always serializes");
    hex::encode(Sha256::digest(&bytes))
}

/// Every environment's state, before a change to the project.
pub(crate) async fn states(
    conn: &mut PgConnection,
    project: &LockedProject,
) -> Result<Vec<ClientFeatures>, sqlx::Error> {
    let mut states = Vec::with_capacity(project.environments.len());
    for env in &project.environments {
        states.push(build_state(conn, env).await?);
    }
    Ok(states)
}

/// After a change to the project: a snapshot of each environment whose state differs from
/// `before` (taken by `states`).
pub(crate) async fn snapshot_changed(
    conn: &mut PgConnection,
    project: &LockedProject,
    before: &[ClientFeatures],
    by: &str,
    reason: &str,
) -> Result<Vec<SnapshotRef>, sqlx::Error> {
    let mut snapshots = Vec::new();
    for (env, before) in project.environments.iter().zip(before) {
        let after = build_state(conn, env).await?;
        if after != *before {
            snapshots.push(record_snapshot(conn, env, &after, by, reason, None, None).await?);
        }
    }
    Ok(snapshots)
}

/// Stores `state` as the environment's next snapshot. The caller holds the environment's lock,
/// so `max(version) + 1` cannot be taken twice (the unique key would refuse it anyway).
pub(crate) async fn record_snapshot(
    conn: &mut PgConnection,
    env: &Environment,
    state: &ClientFeatures,
    by: &str,
    reason: &str,
    restored_from: Option<i64>,
    idempotency_key: Option<&str>,
) -> Result<SnapshotRef, sqlx::Error> {
    let version = sqlx::query_scalar!(
        r#"insert into flag_snapshot
             (environment_id, version, state, sha256, created_by, reason, restored_from, idempotency_key)
           select $1, coalesce(max(version), 0) + 1, $2, $3, $4, $5, $6, $7
           from flag_snapshot where environment_id = $1
           returning version"#,
        env.id.0,
        Json(state) as _,
        state_sha256(state),
        by,
        reason,
        restored_from,
        idempotency_key,
    )
    .fetch_one(&mut *conn)
    .await?;
    Ok(SnapshotRef {
        environment_id: env.id,
        environment: env.name.clone(),
        version,
    })
}
