//! Reading flags and segments in the caller's connection (the [`super::FlagStore`] methods of the
//! same names read them from the pool).

use chrono::Utc;
use sqlx::PgConnection;
use sqlx::types::Json;

use super::rows::{find_environment, parse_type};
use super::{EnvironmentId, FlagError, FlagSummary, SegmentId, SegmentInfo};
use crate::flags::definition::EnvironmentState;
use crate::flags::model::{Constraint, Strategy, Variant};

/// The project's segments, by name.
pub async fn segments(
    conn: &mut PgConnection,
    project: &str,
) -> Result<Vec<SegmentInfo>, FlagError> {
    let Some(project_id) = sqlx::query_scalar!(
        "select project_id from project where project_key = $1",
        project
    )
    .fetch_optional(&mut *conn)
    .await?
    else {
        return Err(super::unknown_project(conn, project).await);
    };
    let rows = sqlx::query!(
        r#"select segment_id, name, description,
                  constraints as "constraints: Json<Vec<Constraint>>", updated_at
           from segment where project_id = $1 and deleted_at is null order by name"#,
        project_id
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| SegmentInfo {
            id: SegmentId(r.segment_id),
            name: r.name,
            description: r.description,
            constraints: r.constraints.0,
            updated_at: r.updated_at,
        })
        .collect())
}

/// An environment's flags, by name, with their state there.
pub async fn flags(
    conn: &mut PgConnection,
    environment: EnvironmentId,
) -> Result<Vec<FlagSummary>, FlagError> {
    find_environment(conn, environment)
        .await?
        .ok_or(FlagError::UnknownEnvironment(environment))?;
    let rows = sqlx::query!(
        r#"select f.name, f.flag_type, f.description, f.owner, f.stale, f.created_at, f.created_by,
                  fe.enabled as "enabled?", fe.impression_data as "impression_data?",
                  fe.strategies as "strategies?: Json<Vec<Strategy>>",
                  fe.variants as "variants?: Json<Vec<Variant>>",
                  fe.updated_at as "updated_at?", fe.updated_by as "updated_by?"
           from environment e
           join flag f on f.project_id = e.project_id and f.archived_at is null
           left join flag_environment fe on fe.flag_id = f.flag_id and fe.environment_id = e.environment_id
           where e.environment_id = $1"#,
        environment.0
    )
    .fetch_all(&mut *conn)
    .await?;
    let now = Utc::now();
    let mut flags = Vec::with_capacity(rows.len());
    for r in rows {
        let flag_type = parse_type(&r.flag_type)?;
        flags.push(FlagSummary {
            potentially_stale: flag_type
                .expected_lifetime()
                .is_some_and(|lifetime| now - r.created_at > lifetime),
            name: r.name,
            flag_type,
            description: r.description,
            owner: r.owner,
            stale: r.stale,
            state: EnvironmentState {
                enabled: r.enabled.unwrap_or(false),
                strategies: r.strategies.map(|s| s.0).unwrap_or_default(),
                variants: r.variants.map(|v| v.0).unwrap_or_default(),
                impression_data: r.impression_data.unwrap_or(false),
            },
            changed_at: r.updated_at.unwrap_or(r.created_at),
            changed_by: r.updated_by.unwrap_or_else(|| r.created_by.clone()),
            created_at: r.created_at,
            created_by: r.created_by,
        });
    }
    flags.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(flags)
}
