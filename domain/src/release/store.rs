//! Releases in the database. Every function takes the caller's connection, so a use case commits
//! its rows and its audit entry together.
//!
//! Numbers (1, 2, 3… per project) are taken under a transaction-scoped advisory lock on the
//! project, so two runs finishing at once on two replicas get two numbers, never a conflict that
//! would fail the last job's result.

use super::{MAX_NOTES, ReleaseError, may_edit_notes, notes_from};
use crate::audit::{Actor, AuditRecord, Origin};
use crate::auth::Principal;
use crate::definition;
use crate::deployment::store::{NewDeployment, create_deployment};
use crate::deployment::{DeploymentTrigger, ReleaseId};
use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::PgConnection;
use uuid::Uuid;

/// The branch whose green runs make releases: the first push branch without a wildcard, else
/// `main`.
pub fn release_branch(definition: &definition::Definition) -> String {
    definition
        .triggers()
        .push_branches
        .iter()
        .find(|b| !b.contains('*'))
        .cloned()
        .unwrap_or_else(|| "main".to_string())
}

/// Makes the release of a run that just succeeded, when it is a CI run of the release branch,
/// and queues its deployment into the environment whose deploy stage ends the CI part (the
/// sample's `deploy-development`), unless a deployment is under way there (then a schedule or
/// a person promotes it later). Called by the run engine inside the transaction that saw the
/// run succeed.
pub async fn on_run_succeeded(
    conn: &mut PgConnection,
    run_id: Uuid,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let run = sqlx::query!(
        r#"select r.project_id, r.number, r.commit_sha, r.branch, r.commit_author, r.commit_message,
                  r.deployment_stage_id, d.source, p.project_key
           from run r join definition_version d using (definition_version_id)
           join project p on p.project_id = r.project_id
           where r.run_id = $1"#,
        run_id
    )
    .fetch_one(&mut *conn)
    .await?;
    if run.deployment_stage_id.is_some() {
        return Ok(());
    }
    let Ok(parsed) = definition::parse(&run.source) else {
        return Ok(());
    };
    if run.branch != release_branch(&parsed) {
        return Ok(());
    }
    lock_numbers(conn, run.project_id).await?;
    let previous = sqlx::query!(
        "select release_id from release where project_id = $1 order by number desc limit 1",
        run.project_id
    )
    .fetch_optional(&mut *conn)
    .await?;
    let number = sqlx::query_scalar!(
        r#"select coalesce(max(number), 0) + 1 as "n!" from release where project_id = $1"#,
        run.project_id
    )
    .fetch_one(&mut *conn)
    .await?;
    let version = format!("{}-{}", now.format("%Y.%m.%d"), run.number);
    let notes = notes_from(&[(run.commit_author.clone(), run.commit_message.clone())]);
    let release_id = sqlx::query_scalar!(
        r#"insert into release (project_id, run_id, number, version, commit_sha, branch, commit_author,
                                commit_message, previous_release_id, notes, created_at)
           values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
           on conflict (run_id) do nothing
           returning release_id"#,
        run.project_id,
        run_id,
        number,
        version,
        run.commit_sha,
        run.branch,
        run.commit_author,
        run.commit_message,
        previous.map(|p| p.release_id),
        notes,
        now,
    )
    .fetch_optional(&mut *conn)
    .await?;
    let Some(release_id) = release_id else {
        return Ok(());
    };
    sqlx::query!(
        "update artifact set pinned = true where run_id = $1",
        run_id
    )
    .execute(&mut *conn)
    .await?;
    AuditRecord::new(Actor::system(), "release.created", &Origin::default())
        .target(format!("{}@{version}", run.project_key))
        .details(json!({ "run": run.number, "commit": run.commit_sha, "version": version }))
        .write(&mut *conn)
        .await?;
    // The CI part ends with a deploy stage: its environment gets the release at once.
    let first = parsed.stages().find_map(|s| match &s.kind {
        definition::StageKind::Deploy(d) => Some(d.environment.to_string()),
        _ => None,
    });
    if let Some(environment) = first {
        let environment_id = sqlx::query_scalar!(
            "select environment_id from environment where project_id = $1 and name = $2",
            run.project_id,
            environment
        )
        .fetch_optional(&mut *conn)
        .await?;
        let busy = match environment_id {
            Some(id) => {
                sqlx::query_scalar!(
                    r#"select exists(select 1 from deployment where environment_id = $1
                     and state in ('queued', 'running', 'waiting')) as "busy!""#,
                    id
                )
                .fetch_one(&mut *conn)
                .await?
            }
            None => true,
        };
        if !busy {
            create_deployment(
                conn,
                NewDeployment {
                    project_id: run.project_id,
                    environment: &environment,
                    release: ReleaseId(release_id),
                    trigger: DeploymentTrigger::Pipeline,
                    triggered_by: &format!("run #{}", run.number),
                    idempotency_key: None,
                    definition: &parsed,
                    now,
                },
                &Actor::system(),
                &Origin::default(),
            )
            .await
            .map_err(|e| match e {
                crate::deployment::DeploymentError::Database(e) => e,
                other => sqlx::Error::Protocol(other.to_string()),
            })?;
        }
    }
    Ok(())
}

/// Serialises numbering within a project for the rest of the transaction.
pub(crate) async fn lock_numbers(
    conn: &mut PgConnection,
    project_id: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "select pg_advisory_xact_lock(hashtextextended('flightdeck:release:' || $1::text, 0))",
        project_id.to_string()
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A release whose commits and migrations the server has not read yet.
#[derive(Debug, Clone)]
pub struct Undescribed {
    pub release_id: Uuid,
    pub project: String,
    pub repository: Option<String>,
    pub commit_sha: String,
    pub previous_commit: Option<String>,
    pub notes_edited: bool,
    /// The storage key of its `db-schema` artifact, when it has one.
    pub schema_artifact: Option<String>,
}

/// Releases waiting to be described, oldest first.
pub async fn undescribed(
    conn: &mut PgConnection,
    limit: i64,
) -> Result<Vec<Undescribed>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"select r.release_id, p.project_key, p.repository, r.commit_sha,
                  prev.commit_sha as "previous_commit?", r.notes_edited_by is not null as "edited!",
                  (select a.storage_key from artifact a where a.run_id = r.run_id and a.kind = 'db-schema'
                   order by a.created_at limit 1) as schema_artifact
           from release r join project p using (project_id)
           left join release prev on prev.release_id = r.previous_release_id
           where r.described_at is null
           order by r.created_at limit $1"#,
        limit
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| Undescribed {
            release_id: r.release_id,
            project: r.project_key,
            repository: r.repository,
            commit_sha: r.commit_sha,
            previous_commit: r.previous_commit,
            notes_edited: r.edited,
            schema_artifact: r.schema_artifact,
        })
        .collect())
}

/// One commit a release brings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseCommit {
    pub sha: String,
    pub author: String,
    pub message: String,
    pub committed_at: Option<DateTime<Utc>>,
}

/// One migration of a release's `db-schema` artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseMigration {
    pub version: i32,
    pub name: String,
    pub sha256: String,
    pub has_down: bool,
}

/// Stores what the server read about a release: its commits (newest first; the notes are
/// regenerated from them unless someone edited them) and its migrations. `error` says what could
/// not be read; the release is described either way, once.
pub async fn describe(
    conn: &mut PgConnection,
    release_id: Uuid,
    commits: &[ReleaseCommit],
    migrations: &[ReleaseMigration],
    error: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let updated = sqlx::query!(
        "select release_id from release where release_id = $1 and described_at is null for update",
        release_id
    )
    .fetch_optional(&mut *conn)
    .await?;
    if updated.is_none() {
        return Ok(());
    }
    for (position, c) in commits.iter().enumerate() {
        sqlx::query!(
            "insert into release_commit (release_id, position, sha, author, message, committed_at)
             values ($1, $2, $3, $4, $5, $6) on conflict do nothing",
            release_id,
            position as i32,
            c.sha,
            c.author,
            c.message,
            c.committed_at
        )
        .execute(&mut *conn)
        .await?;
    }
    for m in migrations {
        sqlx::query!(
            "insert into release_migration (release_id, version, name, sha256, has_down)
             values ($1, $2, $3, $4, $5) on conflict do nothing",
            release_id,
            m.version,
            m.name,
            m.sha256,
            m.has_down
        )
        .execute(&mut *conn)
        .await?;
    }
    let notes = (!commits.is_empty()).then(|| {
        notes_from(
            &commits
                .iter()
                .map(|c| (c.author.clone(), c.message.clone()))
                .collect::<Vec<_>>(),
        )
    });
    sqlx::query!(
        "update release set described_at = $2, describe_error = $3,
                notes = case when notes_edited_by is null and $4::text is not null then $4 else notes end
         where release_id = $1",
        release_id,
        now,
        error,
        notes
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Replaces a release's notes (developers, product managers, release managers, admins), audited
/// with the text before and after.
pub async fn edit_notes(
    conn: &mut PgConnection,
    project: &str,
    version: &str,
    notes: &str,
    principal: &Principal,
    origin: &Origin,
) -> Result<(), ReleaseError> {
    let Principal::User(user) = principal else {
        return Err(ReleaseError::Refused(
            "API tokens may not edit release notes; sign in as a person".into(),
        ));
    };
    if !may_edit_notes(user.role) {
        return Err(ReleaseError::Refused(format!(
            "{} may not edit release notes: developers, product managers, release managers and admins do",
            user.username
        )));
    }
    let notes = notes.trim();
    let length = notes.chars().count();
    if length > MAX_NOTES {
        return Err(ReleaseError::NotesTooLong(length));
    }
    let row = sqlx::query!(
        r#"select r.release_id, r.notes from release r join project p using (project_id)
           where p.project_key = $1 and r.version = $2 for update of r"#,
        project,
        version
    )
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| ReleaseError::UnknownRelease {
        project: project.to_string(),
        version: version.to_string(),
    })?;
    if row.notes == notes {
        return Ok(());
    }
    sqlx::query!(
        "update release set notes = $2, notes_edited_by = $3, notes_edited_at = now() where release_id = $1",
        row.release_id,
        notes,
        user.username
    )
    .execute(&mut *conn)
    .await?;
    AuditRecord::new(Actor::of(Some(principal)), "release.notes_edited", origin)
        .target(format!("{project}@{version}"))
        .details(json!({ "changes": { "notes": { "before": row.notes, "after": notes } } }))
        .write(&mut *conn)
        .await?;
    Ok(())
}
