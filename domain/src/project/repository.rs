//! Where a project's code is, and the token its push hook starts runs with.
//!
//! Pointing a project at a repository and issuing its hook's token are use cases, here, each
//! audited in the caller's transaction; making a repository on disk (git, copying the files, the
//! hook script) is the server's (`server/src/repository.rs`), which calls these.

use serde_json::json;
use sqlx::{PgConnection, PgPool};

use crate::audit::{Actor, AuditRecord, Origin};
use crate::auth::{Scope, TokenError, token};

#[derive(Debug, thiserror::Error)]
pub enum RepositoryError {
    #[error("there is no project `{0}`; load its flightdeck.yml first")]
    UnknownProject(String),
    #[error("give an absolute path or a git URL, not `{0}`")]
    BadLocation(String),
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Where a repository is: a git URL (`https://…`, `ssh://…`, `git@host:…`) or an absolute path on
/// the server's machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location(String);

impl Location {
    pub fn parse(text: &str) -> Result<Self, RepositoryError> {
        let text = text.trim();
        let is_url = text.contains("://") || text.starts_with("git@");
        if text.is_empty() || !(is_url || text.starts_with('/')) {
            return Err(RepositoryError::BadLocation(text.to_string()));
        }
        Ok(Location(text.to_string()))
    }

    /// A path on this machine (the server checks that it is a git repository).
    pub fn is_path(&self) -> bool {
        self.0.starts_with('/')
    }
}

impl AsRef<str> for Location {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// The name of a project's push-hook token.
pub fn push_token_name(project: &str) -> String {
    format!("push hook of {project}")
}

/// Points the project at `location` (`project.repository_set`, before and after), in the
/// caller's transaction.
pub async fn set(
    conn: &mut PgConnection,
    project: &str,
    location: &Location,
    actor: Actor,
    origin: &Origin,
) -> Result<(), RepositoryError> {
    let before = sqlx::query_scalar!(
        "select repository from project where project_key = $1 for update",
        project
    )
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| RepositoryError::UnknownProject(project.to_string()))?;
    sqlx::query!(
        "update project set repository = $2 where project_key = $1",
        project,
        location.as_ref()
    )
    .execute(&mut *conn)
    .await?;
    AuditRecord::new(actor, "project.repository_set", origin)
        .target(project)
        .details(json!({ "before": before, "after": location.as_ref() }))
        .write(&mut *conn)
        .await?;
    Ok(())
}

/// A fresh token for the project's push hook, in the caller's transaction: the earlier ones
/// revoked, a new `runs:write` one issued, each a security entry in the audit log. Returns its
/// secret, which is shown (written into the hook) only now.
pub async fn issue_push_token(
    conn: &mut PgConnection,
    project: &str,
    actor: Actor,
    origin: &Origin,
) -> Result<String, RepositoryError> {
    let name = push_token_name(project);
    let revoked = sqlx::query_scalar!(
        r#"update api_token set revoked_at = now()
           where name = $1 and revoked_at is null
           returning api_token_id"#,
        name
    )
    .fetch_all(&mut *conn)
    .await?;
    for id in revoked {
        AuditRecord::new(actor.clone(), "token.revoked", origin)
            .security()
            .target(id.to_string())
            .details(json!({ "name": name, "why": "replaced by a new push-hook token" }))
            .write(&mut *conn)
            .await?;
    }
    let scopes = [Scope::RunsWrite];
    let (id, secret) = token::issue(conn, &name, &scopes, None, None).await?;
    AuditRecord::new(actor, "token.created", origin)
        .security()
        .target(&name)
        .details(json!({ "id": id, "scopes": scopes.map(Scope::as_str) }))
        .write(&mut *conn)
        .await?;
    Ok(secret.expose().to_string())
}

/// The project builds from `location`, which its hook pushes to with a fresh token: both in one
/// transaction. Returns the token's secret for the hook.
pub async fn host(
    pool: &PgPool,
    project: &str,
    location: &Location,
    actor: Actor,
    origin: &Origin,
) -> Result<String, RepositoryError> {
    let mut tx = pool.begin().await?;
    let secret = issue_push_token(&mut tx, project, actor.clone(), origin).await?;
    set(&mut tx, project, location, actor, origin).await?;
    tx.commit().await?;
    Ok(secret)
}
