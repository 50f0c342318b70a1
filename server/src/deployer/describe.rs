//! Describing new releases: the commits since the previous release, read from the project's
//! repository, and its migrations, read from its `db-schema` artifact — after the release was
//! made (the run's transaction cannot wait for git or the artifact store).

use domain::portal::Portal;
use domain::release::store::{self, ReleaseCommit, ReleaseMigration};

/// Most commits listed for one release.
const MAX_COMMITS: usize = 200;

/// Describes the releases nobody described yet. Safe on every replica at once: `describe`
/// writes a release once.
pub async fn describe_new_releases(portal: &Portal) -> anyhow::Result<()> {
    let mut conn = portal.pool.acquire().await?;
    let pending = store::undescribed(&mut conn, 8).await?;
    drop(conn);
    for release in pending {
        let (commits, error) = match &release.repository {
            None => (
                Vec::new(),
                Some("the project has no repository to read commits from".to_string()),
            ),
            Some(repository) => match domain::run::git::commits_between(
                repository,
                release.previous_commit.as_deref(),
                &release.commit_sha,
                MAX_COMMITS,
            )
            .await
            {
                Ok(commits) => (
                    commits
                        .into_iter()
                        .map(|(sha, author, message, committed_at)| ReleaseCommit {
                            sha,
                            author,
                            message,
                            committed_at,
                        })
                        .collect(),
                    None,
                ),
                Err(error) => (Vec::new(), Some(error.to_string())),
            },
        };
        let (migrations, schema_error) = match &release.schema_artifact {
            None => (Vec::new(), None),
            Some(key) => {
                match crate::envdb::archive::read_stored_migrations(&portal.artifacts, key).await {
                    Ok(found) => (
                        found
                            .into_iter()
                            .map(|m| ReleaseMigration {
                                version: m.version,
                                name: m.name,
                                sha256: m.sha256,
                                has_down: m.down.is_some(),
                            })
                            .collect(),
                        None,
                    ),
                    Err(error) => (Vec::new(), Some(format!("its db-schema artifact: {error}"))),
                }
            }
        };
        let error = match (error, schema_error) {
            (Some(a), Some(b)) => Some(format!("{a}; {b}")),
            (a, b) => a.or(b),
        };
        let mut tx = portal.pool.begin().await?;
        store::describe(
            &mut tx,
            release.release_id,
            &commits,
            &migrations,
            error.as_deref(),
            portal.clock.now(),
        )
        .await?;
        tx.commit().await?;
    }
    Ok(())
}
