//! Reading, comparing and restoring an environment's numbered flag snapshots.
//!
//! A snapshot is the whole `/api/client/features` body of one environment after a change, with
//! its SHA-256 (the ETag). Deployments record the version they ran with; a rollback restores it.
//!
//! Restoring makes the environment's rows say what the snapshot says, as one audited change
//! with a new snapshot ("restored snapshot 12"), and is idempotent: when the result would equal
//! the current state (same SHA-256) nothing is written, so restoring the same snapshot twice, or
//! twice at once, changes things once. What a restore does to each part:
//!
//! - per-environment state (on/off, strategies, variants, impression data): set as in the
//!   snapshot; flags the snapshot does not have are turned off here;
//! - a flag archived since: revived, since code that a rollback brings back may ask for it. It
//!   comes back off in the other environments (as a revived flag does), which get snapshots too;
//! - a segment deleted since: brought back as the snapshot has it (nothing else uses it);
//! - what the project shares between environments (segments still in use, dependencies,
//!   descriptions, types, stale marks) is left as it is, since rewinding it would change other
//!   environments. What remains different from the snapshot is returned as `not_restored`, for
//!   the page (and the rollback's log) to show.
//!
//! With an idempotency key (a rollback passes its own), a second call with the same key does
//! nothing even if flags changed in between: it must not undo those. A key is remembered with the
//! snapshot its restore made; a first call that found nothing to change leaves no trace, and a
//! retry compares states again.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::types::Json;
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

use super::definition::{EnvironmentState, FlagName, FlagType};
use super::diff::{FlagDiff, diff};
use super::model::ClientFeatures;
use super::store::{
    Environment, EnvironmentId, FlagStore, LockedProject, SnapshotRef, build_state,
    find_environment, lock_project_environments, put_environment_state, record_snapshot,
    revive_flag, snapshot_changed, state_sha256, states,
};
use crate::audit::{Actor, AuditRecord, Origin};

/// The most snapshots one page lists.
pub const MAX_PAGE: i64 = 200;
/// The longest idempotency key.
pub const MAX_IDEMPOTENCY_KEY: usize = 200;

/// An environment's state now: what SDKs are served, and its ETag.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned {
    /// The newest snapshot; 0 when the environment's flags never changed (the state is then
    /// built from the rows: every flag off).
    pub version: i64,
    pub sha256: String,
    pub state: ClientFeatures,
}

/// A snapshot without its state, as the history lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotInfo {
    /// The row's id, for deployments to reference.
    pub id: i64,
    pub version: i64,
    pub sha256: String,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub reason: String,
    /// The version a restore copied.
    pub restored_from: Option<i64>,
}

/// A snapshot with its state.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub info: SnapshotInfo,
    pub state: ClientFeatures,
}

/// Which page of the history to read: newest first, `limit` entries (at most `MAX_PAGE`) older
/// than `before_version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotQuery {
    pub before_version: Option<i64>,
    pub limit: i64,
}

impl Default for SnapshotQuery {
    fn default() -> Self {
        SnapshotQuery {
            before_version: None,
            limit: 50,
        }
    }
}

/// A page of the history, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotPage {
    pub snapshots: Vec<SnapshotInfo>,
    /// Pass as `before_version` for the next page; `None` on the last one.
    pub next_before_version: Option<i64>,
}

/// What a restore did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Restored {
    /// The environment now has the snapshot's state as snapshot `version`.
    Restored {
        version: i64,
        /// What changed, from the state before to the state now.
        changes: Vec<FlagDiff>,
        /// What still differs from the snapshot: shared parts a restore leaves alone.
        not_restored: Vec<FlagDiff>,
        /// Snapshots of other environments, where a flag came back from the archive (off).
        other_snapshots: Vec<SnapshotRef>,
    },
    /// The environment was already in that state: nothing was written.
    AlreadyCurrent {
        version: i64,
        not_restored: Vec<FlagDiff>,
    },
    /// A restore with this idempotency key was done before and made snapshot `version`:
    /// nothing was written.
    Replayed { version: i64 },
}

/// Why a snapshot could not be read or restored. Nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("there is no environment {0}")]
    UnknownEnvironment(EnvironmentId),
    #[error("environment {environment} has no snapshot {version}")]
    UnknownSnapshot {
        environment: EnvironmentId,
        version: i64,
    },
    #[error("an idempotency key has 1 to {MAX_IDEMPOTENCY_KEY} characters")]
    BadIdempotencyKey,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl FlagStore {
    /// The environment's newest snapshot: what the API serves.
    pub async fn current(&self, environment: EnvironmentId) -> Result<Versioned, SnapshotError> {
        let mut conn = self.pool.acquire().await?;
        if let Some(newest) = newest(&mut conn, environment).await? {
            return Ok(newest);
        }
        let env = find_environment(&mut conn, environment)
            .await?
            .ok_or(SnapshotError::UnknownEnvironment(environment))?;
        let state = build_state(&mut conn, &env).await?;
        Ok(Versioned {
            version: 0,
            sha256: state_sha256(&state),
            state,
        })
    }

    /// Every environment's newest snapshot, for a server's in-memory copy at start.
    /// Environments without flags have none, and serve an empty set.
    pub async fn all_current(&self) -> Result<Vec<(EnvironmentId, Versioned)>, SnapshotError> {
        let rows = sqlx::query!(
            r#"select distinct on (environment_id) environment_id, version, sha256,
                      state as "state: Json<ClientFeatures>"
               from flag_snapshot
               order by environment_id, version desc"#
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let versioned = Versioned {
                    version: r.version,
                    sha256: r.sha256,
                    state: r.state.0,
                };
                (EnvironmentId(r.environment_id), versioned)
            })
            .collect())
    }

    /// One snapshot of an environment.
    pub async fn snapshot(
        &self,
        environment: EnvironmentId,
        version: i64,
    ) -> Result<Snapshot, SnapshotError> {
        let mut conn = self.pool.acquire().await?;
        load(&mut conn, environment, version).await
    }

    /// The environment's history, newest first.
    pub async fn list_snapshots(
        &self,
        environment: EnvironmentId,
        query: SnapshotQuery,
    ) -> Result<SnapshotPage, SnapshotError> {
        let mut conn = self.pool.acquire().await?;
        find_environment(&mut conn, environment)
            .await?
            .ok_or(SnapshotError::UnknownEnvironment(environment))?;
        let limit = query.limit.clamp(1, MAX_PAGE);
        let rows = sqlx::query!(
            r#"select flag_snapshot_id, version, sha256, created_at, created_by, reason, restored_from
               from flag_snapshot
               where environment_id = $1 and ($2::bigint is null or version < $2)
               order by version desc
               limit $3"#,
            environment.0,
            query.before_version,
            limit + 1,
        )
        .fetch_all(&mut *conn)
        .await?;
        let more = rows.len() as i64 > limit;
        let snapshots: Vec<SnapshotInfo> = rows
            .into_iter()
            .take(limit as usize)
            .map(|r| SnapshotInfo {
                id: r.flag_snapshot_id,
                version: r.version,
                sha256: r.sha256,
                created_at: r.created_at,
                created_by: r.created_by,
                reason: r.reason,
                restored_from: r.restored_from,
            })
            .collect();
        let next_before_version = if more {
            snapshots.last().map(|s| s.version)
        } else {
            None
        };
        Ok(SnapshotPage {
            snapshots,
            next_before_version,
        })
    }

    /// What changed from snapshot `from` to snapshot `to` of one environment.
    pub async fn diff(
        &self,
        environment: EnvironmentId,
        from: i64,
        to: i64,
    ) -> Result<Vec<FlagDiff>, SnapshotError> {
        let mut conn = self.pool.acquire().await?;
        let before = load(&mut conn, environment, from).await?;
        let after = load(&mut conn, environment, to).await?;
        Ok(diff(&before.state, &after.state))
    }

    /// Makes the environment's flags what snapshot `version` says ([`restore`] in a transaction
    /// of its own).
    pub async fn restore(
        &self,
        environment: EnvironmentId,
        version: i64,
        actor: Actor,
        origin: &Origin,
        idempotency_key: Option<&str>,
    ) -> Result<Restored, SnapshotError> {
        let mut tx = self.pool.begin().await?;
        let restored = restore(
            &mut tx,
            environment,
            version,
            actor,
            origin,
            idempotency_key,
        )
        .await?;
        tx.commit().await?;
        Ok(restored)
    }
}

/// Makes the environment's flags what snapshot `version` says, as one audited change with a new
/// snapshot, in the caller's transaction (a rollback restores its deployment's snapshot together
/// with its own rows); see the module documentation for what is restored and how it is
/// idempotent. A restore that finds nothing to change takes back what it wrote on the way.
pub async fn restore(
    conn: &mut PgConnection,
    environment: EnvironmentId,
    version: i64,
    actor: Actor,
    origin: &Origin,
    idempotency_key: Option<&str>,
) -> Result<Restored, SnapshotError> {
    if idempotency_key.is_some_and(|k| k.is_empty() || k.chars().count() > MAX_IDEMPOTENCY_KEY) {
        return Err(SnapshotError::BadIdempotencyKey);
    }
    // A savepoint inside the caller's transaction (or a transaction of its own).
    let mut tx = conn.begin().await?;
    let found = find_environment(&mut tx, environment)
        .await?
        .ok_or(SnapshotError::UnknownEnvironment(environment))?;
    // A revived flag changes the other environments too, so all of the project's are
    // locked, in the order every writer uses. Concurrent restores wait here for each other.
    let project = lock_project_environments(&mut tx, found.project_id, &found.project_key).await?;
    let Some(env) = project
        .environments
        .iter()
        .find(|e| e.id == environment)
        .cloned()
    else {
        return Err(SnapshotError::UnknownEnvironment(environment));
    };
    if let Some(key) = idempotency_key
        && let Some(done) = sqlx::query_scalar!(
            "select version from flag_snapshot where environment_id = $1 and idempotency_key = $2",
            environment.0,
            key
        )
        .fetch_optional(&mut *tx)
        .await?
    {
        return Ok(Restored::Replayed { version: done });
    }
    let target = load(&mut tx, environment, version).await?;
    let before = states(&mut tx, &project).await?;
    let position = project
        .environments
        .iter()
        .position(|e| e.id == environment)
        .expect("the environment is one of its project's");
    let revived = put_state(&mut tx, &project, &env, &target.state, &actor.name).await?;
    let after = build_state(&mut tx, &env).await?;
    let not_restored = diff(&target.state, &after);
    if state_sha256(&after) == state_sha256(&before[position]) {
        let current = newest(&mut tx, environment).await?.map_or(0, |v| v.version);
        tx.rollback().await?;
        return Ok(Restored::AlreadyCurrent {
            version: current,
            not_restored,
        });
    }
    let reason = format!("restored snapshot {version}");
    let snapshot = record_snapshot(
        &mut tx,
        &env,
        &after,
        &actor.name,
        &reason,
        Some(version),
        idempotency_key,
    )
    .await?;
    let others = LockedProject {
        id: project.id,
        key: project.key.clone(),
        environments: project
            .environments
            .iter()
            .filter(|e| e.id != environment)
            .cloned()
            .collect(),
    };
    let others_before: Vec<ClientFeatures> = before
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != position)
        .map(|(_, s)| s.clone())
        .collect();
    let other_reason = format!(
        "{} revived by restoring {} to snapshot {version}",
        revived.join(", "),
        env.name
    );
    let other_snapshots =
        snapshot_changed(&mut tx, &others, &others_before, &actor.name, &other_reason).await?;
    let changes = diff(&before[position], &after);
    let before_version = newest_before(&mut tx, environment, snapshot.version).await?;
    AuditRecord::new(actor, "flag.snapshot_restored", origin)
        .target(format!("{}/{}", env.project_key, env.name))
        .details(json!({
            "before": { "version": before_version, "sha256": state_sha256(&before[position]) },
            "after": { "version": snapshot.version, "sha256": state_sha256(&after) },
            "restored": version,
            "changes": lines(&changes),
            "not_restored": lines(&not_restored),
            "revived": revived,
            "idempotency_key": idempotency_key,
            "snapshots": std::iter::once(&snapshot).chain(&other_snapshots).collect::<Vec<_>>(),
        }))
        .write(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Restored::Restored {
        version: snapshot.version,
        changes,
        not_restored,
        other_snapshots,
    })
}

fn lines(diffs: &[FlagDiff]) -> Vec<String> {
    diffs.iter().map(ToString::to_string).collect()
}

async fn newest(
    conn: &mut PgConnection,
    environment: EnvironmentId,
) -> Result<Option<Versioned>, sqlx::Error> {
    let row = sqlx::query!(
        r#"select version, sha256, state as "state: Json<ClientFeatures>"
           from flag_snapshot where environment_id = $1
           order by version desc limit 1"#,
        environment.0
    )
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(|r| Versioned {
        version: r.version,
        sha256: r.sha256,
        state: r.state.0,
    }))
}

/// The version before `version` (0 when there is none).
async fn newest_before(
    conn: &mut PgConnection,
    environment: EnvironmentId,
    version: i64,
) -> Result<i64, sqlx::Error> {
    let found = sqlx::query_scalar!(
        r#"select coalesce(max(version), 0) as "version!" from flag_snapshot
           where environment_id = $1 and version < $2"#,
        environment.0,
        version
    )
    .fetch_one(&mut *conn)
    .await?;
    Ok(found)
}

async fn load(
    conn: &mut PgConnection,
    environment: EnvironmentId,
    version: i64,
) -> Result<Snapshot, SnapshotError> {
    let row = sqlx::query!(
        r#"select flag_snapshot_id, version, sha256, created_at, created_by, reason, restored_from,
                  state as "state: Json<ClientFeatures>"
           from flag_snapshot where environment_id = $1 and version = $2"#,
        environment.0,
        version
    )
    .fetch_optional(&mut *conn)
    .await?;
    let Some(r) = row else {
        if find_environment(conn, environment).await?.is_none() {
            return Err(SnapshotError::UnknownEnvironment(environment));
        }
        return Err(SnapshotError::UnknownSnapshot {
            environment,
            version,
        });
    };
    Ok(Snapshot {
        info: SnapshotInfo {
            id: r.flag_snapshot_id,
            version: r.version,
            sha256: r.sha256,
            created_at: r.created_at,
            created_by: r.created_by,
            reason: r.reason,
            restored_from: r.restored_from,
        },
        state: r.state.0,
    })
}

/// Writes the rows so that `env` has `target`'s per-environment state; returns the flags it
/// brought back from the archive (or recreated).
async fn put_state(
    conn: &mut PgConnection,
    project: &LockedProject,
    env: &Environment,
    target: &ClientFeatures,
    by: &str,
) -> Result<Vec<String>, sqlx::Error> {
    let flags: HashMap<String, (Uuid, bool)> = sqlx::query!(
        r#"select flag_id, name, archived_at is not null as "archived!" from flag where project_id = $1"#,
        project.id
    )
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .map(|r| (r.name, (r.flag_id, r.archived)))
    .collect();
    let mut revived = Vec::new();
    let mut kept = HashSet::new();
    for feature in &target.features {
        let id = match flags.get(&feature.name) {
            Some(&(id, false)) => id,
            Some(&(id, true)) => {
                revive_flag(conn, id, Some(env.id), by).await?;
                revived.push(feature.name.clone());
                id
            }
            None => {
                // Only a flag deleted from the database by hand can be missing; a snapshot's
                // names were valid when it was taken.
                let Ok(name) = FlagName::parse(&feature.name) else {
                    continue;
                };
                let flag_type = feature
                    .feature_type
                    .as_deref()
                    .and_then(|t| FlagType::parse(t).ok())
                    .unwrap_or(FlagType::Release);
                let id = sqlx::query_scalar!(
                    r#"insert into flag (project_id, name, description, flag_type, stale, created_by)
                       values ($1, $2, $3, $4, $5, $6) returning flag_id"#,
                    project.id,
                    name.as_str(),
                    feature.description.clone().unwrap_or_default(),
                    flag_type.as_str(),
                    feature.stale,
                    by
                )
                .fetch_one(&mut *conn)
                .await?;
                revived.push(feature.name.clone());
                id
            }
        };
        kept.insert(id);
        let state = EnvironmentState {
            enabled: feature.enabled,
            strategies: feature.strategies.clone(),
            variants: feature.variants.clone(),
            impression_data: feature.impression_data,
        };
        put_environment_state(conn, id, env.id, &state, by).await?;
    }
    let absent: Vec<Uuid> = flags
        .values()
        .filter(|(id, archived)| !archived && !kept.contains(id))
        .map(|(id, _)| *id)
        .collect();
    sqlx::query!(
        r#"update flag_environment set enabled = false, updated_at = now(), updated_by = $3
           where environment_id = $1 and flag_id = any($2) and enabled"#,
        env.id.0,
        &absent,
        by
    )
    .execute(&mut *conn)
    .await?;
    for segment in &target.segments {
        sqlx::query!(
            r#"update segment s
               set deleted_at = null, constraints = $3, name = coalesce($4, s.name), updated_at = now()
               where s.segment_id = $1 and s.project_id = $2 and s.deleted_at is not null
                 and not exists (select 1 from segment t
                                 where t.project_id = s.project_id and t.deleted_at is null
                                   and t.name = coalesce($4, s.name))"#,
            segment.id,
            project.id,
            Json(&segment.constraints) as _,
            segment.name,
        )
        .execute(&mut *conn)
        .await?;
    }
    Ok(revived)
}
