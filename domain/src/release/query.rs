//! Releases as pages read them: the list with where each release stands in every environment,
//! and a release's page (commits, artifacts, migrations and where each is new, notes, its
//! deployments, and where the viewer may promote it).

use super::ReleaseError;
use crate::deployment::query::{Filter, summaries};
use crate::environment::{self, Acting, Action};
use crate::release_view::{
    CommitView, EnvironmentStatus, MigrationView, ReleaseArtifact, ReleaseDetail, ReleaseStatus,
    ReleaseSummary,
};
use crate::state::RunState;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use std::collections::HashMap;
use uuid::Uuid;

/// The newest deployment of a release into an environment, as [`status`] reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct LatestDeployment {
    pub number: i64,
    pub state: RunState,
    pub reason: Option<String>,
    /// Whether any deployment of the release there ever succeeded.
    pub ever_succeeded: bool,
}

/// Where a release stands in one environment, with the words a page shows. Pure.
pub fn status(
    environment: &str,
    current_since: Option<Option<DateTime<Utc>>>,
    latest: Option<&LatestDeployment>,
) -> EnvironmentStatus {
    let (status, detail) = match (current_since, latest) {
        (Some(since), _) => (
            ReleaseStatus::Current,
            Some(match since {
                Some(at) => format!("runs there since {}", at.format("%Y-%m-%d %H:%M UTC")),
                None => "runs there".to_string(),
            }),
        ),
        (None, Some(d)) => match d.state {
            RunState::Waiting => (ReleaseStatus::Waiting, d.reason.clone()),
            RunState::Queued | RunState::Running => (
                ReleaseStatus::InProgress,
                Some(d.reason.clone().unwrap_or_else(|| "queued".to_string())),
            ),
            RunState::Failed
                if d.reason
                    .as_deref()
                    .is_some_and(|r| r.contains("rejected by")) =>
            {
                (ReleaseStatus::Rejected, d.reason.clone())
            }
            _ if d.ever_succeeded => (ReleaseStatus::Ran, None),
            RunState::Failed => (ReleaseStatus::Failed, d.reason.clone()),
            _ => (ReleaseStatus::None, d.reason.clone()),
        },
        (None, None) => (ReleaseStatus::None, None),
    };
    EnvironmentStatus {
        environment: environment.to_string(),
        status,
        detail,
        deployment: latest.map(|d| d.number),
    }
}

struct ReleaseRow {
    release_id: Uuid,
    summary: ReleaseSummary,
}

/// A project's environments in pipeline order: name, id, current release, since when.
async fn environments(
    conn: &mut PgConnection,
    project_id: Uuid,
) -> Result<Vec<(String, Uuid, Option<Uuid>, Option<DateTime<Utc>>)>, sqlx::Error> {
    Ok(sqlx::query!(
        "select name, environment_id, current_release_id, deployed_at from environment
         where project_id = $1 order by position",
        project_id
    )
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .map(|e| {
        (
            e.name,
            e.environment_id,
            e.current_release_id,
            e.deployed_at,
        )
    })
    .collect())
}

/// Fills each release's per-environment standing.
async fn fill_statuses(
    conn: &mut PgConnection,
    project_id: Uuid,
    releases: &mut [ReleaseRow],
) -> Result<(), sqlx::Error> {
    let envs = environments(conn, project_id).await?;
    let ids: Vec<Uuid> = releases.iter().map(|r| r.release_id).collect();
    let latest: HashMap<(Uuid, Uuid), LatestDeployment> = sqlx::query!(
        r#"select distinct on (d.release_id, d.environment_id) d.release_id, d.environment_id, d.number,
                  d.state as "state: RunState", d.reason,
                  exists (select 1 from deployment x where x.release_id = d.release_id
                          and x.environment_id = d.environment_id and x.state = 'succeeded') as "ran!"
           from deployment d where d.release_id = any($1) and d.kind = 'deploy'
           order by d.release_id, d.environment_id, d.number desc"#,
        &ids
    )
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .map(|d| {
        (
            (d.release_id, d.environment_id),
            LatestDeployment {
                number: d.number,
                state: d.state,
                reason: d.reason,
                ever_succeeded: d.ran,
            },
        )
    })
    .collect();
    for release in releases {
        release.summary.environments = envs
            .iter()
            .map(|(name, env_id, current, since)| {
                let current_since = (*current == Some(release.release_id)).then_some(*since);
                status(
                    name,
                    current_since,
                    latest.get(&(release.release_id, *env_id)),
                )
            })
            .collect();
    }
    Ok(())
}

async fn project_id(conn: &mut PgConnection, project: &str) -> Result<Uuid, ReleaseError> {
    sqlx::query_scalar!(
        "select project_id from project where project_key = $1",
        project
    )
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| ReleaseError::UnknownProject(project.to_string()))
}

/// A project's releases, newest first (at most `limit`; `before` pages by release number).
pub async fn list(
    pool: &PgPool,
    project: &str,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<ReleaseSummary>, ReleaseError> {
    let mut conn = pool.acquire().await?;
    let project_id = project_id(&mut conn, project).await?;
    let mut rows: Vec<ReleaseRow> = sqlx::query!(
        r#"select r.release_id, r.version, r.number, run.number as run_number, r.commit_sha,
                  r.commit_message, r.commit_author, r.created_at
           from release r join run using (run_id)
           where r.project_id = $1 and ($2::bigint is null or r.number < $2)
           order by r.number desc limit $3"#,
        project_id,
        before,
        limit
    )
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .map(|r| ReleaseRow {
        release_id: r.release_id,
        summary: ReleaseSummary {
            version: r.version,
            number: r.number,
            run_number: r.run_number,
            commit_sha: r.commit_sha,
            commit_message: r.commit_message,
            commit_author: r.commit_author,
            created_at: r.created_at,
            environments: Vec::new(),
        },
    })
    .collect();
    fill_statuses(&mut conn, project_id, &mut rows).await?;
    Ok(rows.into_iter().map(|r| r.summary).collect())
}

/// A release's page, for `acting` (what they may edit and where they may promote it).
pub async fn detail(
    pool: &PgPool,
    project: &str,
    version: &str,
    acting: &Acting,
) -> Result<ReleaseDetail, ReleaseError> {
    let mut conn = pool.acquire().await?;
    let project_id = project_id(&mut conn, project).await?;
    let r = sqlx::query!(
        r#"select r.release_id, r.run_id, r.version, r.number, run.number as run_number, r.commit_sha,
                  r.commit_message, r.commit_author, r.created_at, r.branch, prev.version as "previous?",
                  r.notes, r.notes_edited_by, r.notes_edited_at, r.described_at, r.describe_error
           from release r join run using (run_id)
           left join release prev on prev.release_id = r.previous_release_id
           where r.project_id = $1 and r.version = $2"#,
        project_id,
        version
    )
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| ReleaseError::UnknownRelease {
        project: project.to_string(),
        version: version.to_string(),
    })?;
    let mut rows = [ReleaseRow {
        release_id: r.release_id,
        summary: ReleaseSummary {
            version: r.version.clone(),
            number: r.number,
            run_number: r.run_number,
            commit_sha: r.commit_sha,
            commit_message: r.commit_message,
            commit_author: r.commit_author,
            created_at: r.created_at,
            environments: Vec::new(),
        },
    }];
    fill_statuses(&mut conn, project_id, &mut rows).await?;
    let [ReleaseRow { summary, .. }] = rows;
    let commits = match r.described_at {
        None => None,
        Some(_) => Some(
            sqlx::query_as!(
                CommitView,
                "select sha, author, message from release_commit where release_id = $1 order by position",
                r.release_id
            )
            .fetch_all(&mut *conn)
            .await?,
        ),
    };
    let artifacts = sqlx::query!(
        "select artifact_id, name, kind, size_bytes, sha256 from artifact where run_id = $1 order by created_at, name",
        r.run_id
    )
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .map(|a| ReleaseArtifact {
        href: format!("/api/v1/artifacts/{}", a.artifact_id),
        name: a.name,
        kind: a.kind,
        size_bytes: a.size_bytes,
        sha256: a.sha256,
    })
    .collect();
    // A migration is new in an environment whose current release does not carry it.
    let migrations = sqlx::query!(
        r#"select m.version, m.name, m.has_down,
                  array(select e.name from environment e
                        where e.project_id = $2
                          and not exists (select 1 from release_migration c
                                          where c.release_id = e.current_release_id and c.version = m.version)
                        order by e.position) as "new_in!"
           from release_migration m where m.release_id = $1 order by m.version"#,
        r.release_id,
        project_id
    )
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .map(|m| MigrationView {
        version: m.version,
        name: m.name,
        has_down: m.has_down,
        new_in: m.new_in,
    })
    .collect();
    let deployments = summaries(
        &mut conn,
        project_id,
        Filter {
            release: Some(r.release_id),
            ..Filter::default()
        },
        100,
    )
    .await?;
    let can_edit_notes =
        matches!(acting, Acting::Person { role, .. } if super::may_edit_notes(*role));
    let mut can_promote_to = Vec::new();
    if let Some(definition) = crate::project::current_definition_in(&mut conn, project).await? {
        for declared in definition.environments() {
            let name = declared.name.as_str();
            if definition.deploy_stage(name).is_none() {
                continue;
            }
            let Ok(env) = environment::find(&mut conn, project, name).await else {
                continue;
            };
            let runs_there = env.current_release.as_deref() == Some(version);
            if !runs_there && env.decide(acting, Action::Deploy).is_ok() {
                can_promote_to.push(name.to_string());
            }
        }
    }
    Ok(ReleaseDetail {
        project: project.to_string(),
        summary,
        branch: r.branch,
        previous: r.previous,
        notes: r.notes,
        notes_edited_by: r.notes_edited_by,
        notes_edited_at: r.notes_edited_at,
        commits,
        describe_error: r.describe_error,
        artifacts,
        migrations,
        deployments,
        can_edit_notes,
        can_promote_to,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn latest(state: RunState, reason: Option<&str>, ever: bool) -> LatestDeployment {
        LatestDeployment {
            number: 7,
            state,
            reason: reason.map(str::to_string),
            ever_succeeded: ever,
        }
    }

    #[test]
    fn a_release_reads_as_current_waiting_rejected_failed_or_ran() {
        let current = status("staging", Some(None), None);
        assert_eq!(current.status, ReleaseStatus::Current);
        let waiting = latest(
            RunState::Waiting,
            Some("qa-approval: waiting for QA"),
            false,
        );
        let s = status("staging", None, Some(&waiting));
        assert_eq!(
            (s.status, s.detail.as_deref(), s.deployment),
            (
                ReleaseStatus::Waiting,
                Some("qa-approval: waiting for QA"),
                Some(7)
            )
        );
        let rejected = latest(
            RunState::Failed,
            Some("qa-approval failed: rejected by ana: login broken"),
            true,
        );
        assert_eq!(
            status("staging", None, Some(&rejected)).status,
            ReleaseStatus::Rejected
        );
        let failed = latest(RunState::Failed, Some("deploy failed: exit 1"), false);
        assert_eq!(
            status("staging", None, Some(&failed)).status,
            ReleaseStatus::Failed
        );
        let ran = latest(RunState::Succeeded, None, true);
        assert_eq!(
            status("staging", None, Some(&ran)).status,
            ReleaseStatus::Ran
        );
        assert_eq!(status("staging", None, None).status, ReleaseStatus::None);
    }
}
