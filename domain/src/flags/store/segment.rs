//! Changes to a project's segments: named constraint lists that strategies share. Each takes
//! the caller's connection and locks the whole project.

use serde_json::json;
use sqlx::PgConnection;
use sqlx::types::Json;

use super::rows::{check_segment, live_segment};
use super::state::{Change, finish, states};
use super::{Applied, FlagError, LockedProject, NewSegment, SegmentId, SegmentInfo, lock_project};
use crate::audit::{Actor, AuditRecord, Origin};

/// Creates a segment. No strategy uses it yet, so no environment changes.
pub async fn create(
    conn: &mut PgConnection,
    project: &str,
    segment: NewSegment,
    actor: Actor,
    origin: &Origin,
) -> Result<SegmentId, FlagError> {
    check_segment(&segment)?;
    let locked = lock_project(conn, project).await?;
    let id = insert(conn, &locked, &segment).await?;
    AuditRecord::new(actor, "segment.created", origin)
        .target(format!("{project}/segment/{id}"))
        .details(json!({ "before": null, "after": segment }))
        .write(&mut *conn)
        .await?;
    Ok(id)
}

/// Changes a segment's name, description and constraints; every environment whose flags use
/// it gets a new snapshot.
pub async fn update(
    conn: &mut PgConnection,
    project: &str,
    id: SegmentId,
    segment: NewSegment,
    actor: Actor,
    origin: &Origin,
) -> Result<Applied, FlagError> {
    check_segment(&segment)?;
    let locked = lock_project(conn, project).await?;
    let current = live_segment(conn, &locked, id).await?;
    let next = SegmentInfo {
        id,
        name: segment.name.clone(),
        description: segment.description.clone(),
        constraints: segment.constraints.as_slice().to_vec(),
        updated_at: current.updated_at,
    };
    if current == next {
        return Ok(Applied::Unchanged);
    }
    let taken = sqlx::query_scalar!(
        r#"select exists(select 1 from segment where project_id = $1 and name = $2
                         and deleted_at is null and segment_id <> $3) as "taken!""#,
        locked.id,
        segment.name,
        id.0
    )
    .fetch_one(&mut *conn)
    .await?;
    if taken {
        return Err(FlagError::SegmentExists {
            project: project.to_owned(),
            name: segment.name,
        });
    }
    let before = states(conn, &locked).await?;
    sqlx::query!(
        r#"update segment set name = $2, description = $3, constraints = $4, updated_at = now()
           where segment_id = $1"#,
        id.0,
        segment.name,
        segment.description,
        Json(segment.constraints.as_slice()) as _,
    )
    .execute(&mut *conn)
    .await?;
    let change = Change {
        reason: format!("segment {} changed", segment.name),
        target: format!("{project}/segment/{id}"),
        details: json!({ "before": current, "after": next }),
        action: "segment.updated",
        actor,
        origin,
    };
    Ok(finish(conn, &locked, &before, change).await?)
}

/// Deletes a segment no strategy uses (archived flags' included). It keeps its id, so that a
/// restored snapshot that used it brings it back.
pub async fn delete(
    conn: &mut PgConnection,
    project: &str,
    id: SegmentId,
    actor: Actor,
    origin: &Origin,
) -> Result<Applied, FlagError> {
    let locked = lock_project(conn, project).await?;
    let current = live_segment(conn, &locked, id).await?;
    let users = sqlx::query_scalar!(
        r#"select distinct f.name from flag_environment fe join flag f on f.flag_id = fe.flag_id
           where f.project_id = $1 and fe.strategies @> $2
           order by f.name"#,
        locked.id,
        json!([{ "segments": [id.0] }]),
    )
    .fetch_all(&mut *conn)
    .await?;
    if !users.is_empty() {
        return Err(FlagError::SegmentInUse {
            id: id.0,
            flags: users,
        });
    }
    sqlx::query!(
        "update segment set deleted_at = now() where segment_id = $1",
        id.0
    )
    .execute(&mut *conn)
    .await?;
    AuditRecord::new(actor, "segment.deleted", origin)
        .target(format!("{project}/segment/{id}"))
        .details(json!({ "before": current, "after": null }))
        .write(&mut *conn)
        .await?;
    Ok(Applied::Changed {
        snapshots: Vec::new(),
    })
}

/// Inserts a segment's row; `SegmentExists` (nothing written) when a live one has the name.
pub(crate) async fn insert(
    conn: &mut PgConnection,
    project: &LockedProject,
    segment: &NewSegment,
) -> Result<SegmentId, FlagError> {
    sqlx::query_scalar!(
        r#"insert into segment (project_id, name, description, constraints)
           values ($1, $2, $3, $4)
           on conflict (project_id, name) where deleted_at is null do nothing
           returning segment_id"#,
        project.id,
        segment.name,
        segment.description,
        Json(segment.constraints.as_slice()) as _,
    )
    .fetch_optional(&mut *conn)
    .await?
    .map(SegmentId)
    .ok_or_else(|| FlagError::SegmentExists {
        project: project.key.clone(),
        name: segment.name.clone(),
    })
}
