//! The rows every change reads first: locks, the flag or segment it is about, a flag's state in
//! one environment; and the small checks they share.

use std::collections::BTreeSet;

use sqlx::PgConnection;
use sqlx::types::Json;
use uuid::Uuid;

use super::{
    Environment, EnvironmentId, FlagError, MAX_DESCRIPTION, MAX_SEGMENT_NAME, NewSegment,
    SegmentId, SegmentInfo,
};
use crate::flags::definition::{EnvironmentState, FlagName, FlagType};
use crate::flags::model::{Constraint, Dependency, Strategy, Variant};

pub(crate) fn check_length(field: &'static str, text: &str, limit: usize) -> Result<(), FlagError> {
    let length = text.chars().count();
    if length > limit {
        return Err(FlagError::TooLong {
            field,
            length,
            limit,
        });
    }
    Ok(())
}

pub(crate) fn check_segment(segment: &NewSegment) -> Result<(), FlagError> {
    let length = segment.name.chars().count();
    if segment.name.trim().is_empty() || length > MAX_SEGMENT_NAME {
        return Err(FlagError::BadSegmentName);
    }
    check_length("description", &segment.description, MAX_DESCRIPTION)
}

pub(crate) fn parse_type(text: &str) -> Result<FlagType, sqlx::Error> {
    FlagType::parse(text).map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

/// A dependency as stored and served: `enabled` only when false, `variants` only when some.
pub(crate) fn normalize_dependency(dependency: Dependency) -> Dependency {
    Dependency {
        feature: dependency.feature,
        enabled: (dependency.enabled == Some(false)).then_some(false),
        variants: dependency.variants.filter(|v| !v.is_empty()),
    }
}

/// A project whose environment rows this transaction holds.
#[derive(Debug)]
pub struct LockedProject {
    pub(crate) id: Uuid,
    pub(crate) key: String,
    /// In id order, the order every multi-environment writer locks them in.
    pub(crate) environments: Vec<Environment>,
}

/// Locks one environment's row. Every writer of the environment's flags holds this lock until
/// it commits, so versions are handed out one at a time and a change sees the one before it.
pub(crate) async fn lock_environment(
    conn: &mut PgConnection,
    id: EnvironmentId,
) -> Result<Option<Environment>, sqlx::Error> {
    // `no key update` rather than `update`: it excludes the other writers just the same, but
    // lets other tables insert rows that reference the environment meanwhile.
    let row = sqlx::query!(
        r#"select e.environment_id, e.project_id, e.name, p.project_key
           from environment e join project p on p.project_id = e.project_id
           where e.environment_id = $1
           for no key update of e"#,
        id.0
    )
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(|r| Environment {
        id: EnvironmentId(r.environment_id),
        project_id: r.project_id,
        project_key: r.project_key,
        name: r.name,
    }))
}

pub(crate) async fn find_environment(
    conn: &mut PgConnection,
    id: EnvironmentId,
) -> Result<Option<Environment>, sqlx::Error> {
    let row = sqlx::query!(
        r#"select e.environment_id, e.project_id, e.name, p.project_key
           from environment e join project p on p.project_id = e.project_id
           where e.environment_id = $1"#,
        id.0
    )
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(|r| Environment {
        id: EnvironmentId(r.environment_id),
        project_id: r.project_id,
        project_key: r.project_key,
        name: r.name,
    }))
}

/// Locks every environment of the project `key`: what a transaction that changes the project's
/// flags or segments, or several of its environments, takes first (see the lock order).
pub async fn lock_project(conn: &mut PgConnection, key: &str) -> Result<LockedProject, FlagError> {
    let Some(id) =
        sqlx::query_scalar!("select project_id from project where project_key = $1", key)
            .fetch_optional(&mut *conn)
            .await?
    else {
        return Err(super::unknown_project(conn, key).await);
    };
    Ok(lock_project_environments(conn, id, key).await?)
}

/// Locks all of a project's environments, in id order so that two writers never wait on each
/// other. A writer of one environment holds just that one, which cannot deadlock with this.
pub(crate) async fn lock_project_environments(
    conn: &mut PgConnection,
    project_id: Uuid,
    project_key: &str,
) -> Result<LockedProject, sqlx::Error> {
    let environments = sqlx::query!(
        r#"select environment_id, name from environment where project_id = $1
           order by environment_id
           for no key update"#,
        project_id
    )
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .map(|r| Environment {
        id: EnvironmentId(r.environment_id),
        project_id,
        project_key: project_key.to_owned(),
        name: r.name,
    })
    .collect();
    Ok(LockedProject {
        id: project_id,
        key: project_key.to_owned(),
        environments,
    })
}

pub(crate) struct FoundFlag {
    pub(crate) id: Uuid,
}

/// A live flag of the project: `UnknownFlag` if there is none, `Archived` if it is archived.
pub(crate) async fn find_flag(
    conn: &mut PgConnection,
    project_key: &str,
    project_id: Uuid,
    name: &FlagName,
) -> Result<FoundFlag, FlagError> {
    let row = sqlx::query!(
        r#"select flag_id, archived_at is not null as "archived!" from flag
           where project_id = $1 and name = $2"#,
        project_id,
        name.as_str()
    )
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| FlagError::UnknownFlag {
        project: project_key.to_owned(),
        flag: name.to_string(),
    })?;
    if row.archived {
        return Err(FlagError::Archived(name.to_string()));
    }
    Ok(FoundFlag { id: row.flag_id })
}

pub(crate) async fn flag_id(
    conn: &mut PgConnection,
    project_id: Uuid,
    name: &FlagName,
) -> Result<Uuid, sqlx::Error> {
    sqlx::query_scalar!(
        "select flag_id from flag where project_id = $1 and name = $2",
        project_id,
        name.as_str()
    )
    .fetch_one(&mut *conn)
    .await
}

/// Un-archives a flag and turns it off in every environment but `except`.
pub(crate) async fn revive_flag(
    conn: &mut PgConnection,
    flag_id: Uuid,
    except: Option<EnvironmentId>,
    by: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "update flag set archived_at = null where flag_id = $1",
        flag_id
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!(
        r#"update flag_environment set enabled = false, updated_at = now(), updated_by = $3
           where flag_id = $1 and enabled and ($2::uuid is null or environment_id <> $2)"#,
        flag_id,
        except.map(|e| e.0),
        by
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The live flags that need this one.
pub(crate) async fn live_children(
    conn: &mut PgConnection,
    flag_id: Uuid,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"select c.name from flag_dependency d join flag c on c.flag_id = d.flag_id
           where d.parent_flag_id = $1 and c.archived_at is null
           order by c.name"#,
        flag_id
    )
    .fetch_all(&mut *conn)
    .await
}

pub(crate) async fn dependencies_of(
    conn: &mut PgConnection,
    flag_id: Uuid,
) -> Result<Vec<Dependency>, sqlx::Error> {
    let mut dependencies: Vec<Dependency> = sqlx::query!(
        r#"select p.name, d.enabled, d.variants
           from flag_dependency d join flag p on p.flag_id = d.parent_flag_id
           where d.flag_id = $1"#,
        flag_id
    )
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .map(|r| {
        normalize_dependency(Dependency {
            feature: r.name,
            enabled: Some(r.enabled),
            variants: Some(r.variants),
        })
    })
    .collect();
    dependencies.sort_by(|a, b| a.feature.cmp(&b.feature));
    Ok(dependencies)
}

pub(crate) async fn check_segments(
    conn: &mut PgConnection,
    env: &Environment,
    ids: BTreeSet<i32>,
) -> Result<(), FlagError> {
    if ids.is_empty() {
        return Ok(());
    }
    let ids: Vec<i32> = ids.into_iter().collect();
    let known: BTreeSet<i32> = sqlx::query_scalar!(
        r#"select segment_id from segment
           where project_id = $1 and deleted_at is null and segment_id = any($2)"#,
        env.project_id,
        &ids
    )
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .collect();
    match ids.into_iter().find(|id| !known.contains(id)) {
        Some(id) => Err(FlagError::UnknownSegment {
            project: env.project_key.clone(),
            id,
        }),
        None => Ok(()),
    }
}

pub(crate) async fn live_segment(
    conn: &mut PgConnection,
    project: &LockedProject,
    id: SegmentId,
) -> Result<SegmentInfo, FlagError> {
    let row = sqlx::query!(
        r#"select segment_id, name, description,
                  constraints as "constraints: Json<Vec<Constraint>>", updated_at
           from segment where segment_id = $1 and project_id = $2 and deleted_at is null"#,
        id.0,
        project.id
    )
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| FlagError::UnknownSegment {
        project: project.key.clone(),
        id: id.0,
    })?;
    Ok(SegmentInfo {
        id: SegmentId(row.segment_id),
        name: row.name,
        description: row.description,
        constraints: row.constraints.0,
        updated_at: row.updated_at,
    })
}

/// A flag's state in one environment; off with nothing set when it has no row there.
pub(crate) async fn environment_state(
    conn: &mut PgConnection,
    flag_id: Uuid,
    environment: EnvironmentId,
) -> Result<EnvironmentState, sqlx::Error> {
    let row = sqlx::query!(
        r#"select enabled, impression_data,
                  strategies as "strategies: Json<Vec<Strategy>>",
                  variants as "variants: Json<Vec<Variant>>"
           from flag_environment where flag_id = $1 and environment_id = $2"#,
        flag_id,
        environment.0
    )
    .fetch_optional(&mut *conn)
    .await?;
    Ok(
        row.map_or_else(EnvironmentState::default, |r| EnvironmentState {
            enabled: r.enabled,
            strategies: r.strategies.0,
            variants: r.variants.0,
            impression_data: r.impression_data,
        }),
    )
}

/// Stores a flag's state in one environment; a row that already says so is left untouched.
pub(crate) async fn put_environment_state(
    conn: &mut PgConnection,
    flag_id: Uuid,
    environment: EnvironmentId,
    state: &EnvironmentState,
    by: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"insert into flag_environment
             (flag_id, environment_id, enabled, strategies, variants, impression_data, updated_by)
           values ($1, $2, $3, $4, $5, $6, $7)
           on conflict (flag_id, environment_id) do update
             set enabled = excluded.enabled, strategies = excluded.strategies,
                 variants = excluded.variants, impression_data = excluded.impression_data,
                 updated_at = now(), updated_by = excluded.updated_by
             where (flag_environment.enabled, flag_environment.strategies,
                    flag_environment.variants, flag_environment.impression_data)
                   is distinct from
                   (excluded.enabled, excluded.strategies, excluded.variants, excluded.impression_data)"#,
        flag_id,
        environment.0,
        state.enabled,
        Json(&state.strategies) as _,
        Json(&state.variants) as _,
        state.impression_data,
        by,
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}
