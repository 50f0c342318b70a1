//! SDK tokens: what the app's flag SDKs present, each scoped to one environment of one project.
//!
//! The secret has Unleash's form `project:environment.random`, the form Unleash SDKs, Edge and
//! people expect to see; only its SHA-256 is stored. Flag requests are the hot path, so servers do
//! not look tokens up per request: they load every live token (`live`) into memory and reload
//! when the table's trigger says a token was created or revoked.

use sqlx::PgPool;
use uuid::Uuid;

use super::store::EnvironmentId;
use crate::audit::{Actor, AuditRecord, Origin};
use crate::auth::Secret;
use crate::flag_view::{NewSdkToken, SdkTokenKind, SdkTokenSummary};

#[derive(Debug, thiserror::Error)]
pub enum SdkTokenError {
    #[error("a token needs a name of 1 to 100 characters")]
    BadName,
    #[error("project `{project}` has no environment `{environment}`")]
    NoSuchEnvironment {
        project: String,
        environment: String,
    },
    #[error("no SDK token with id {0}")]
    NotFound(Uuid),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// A live token as the servers' in-memory index holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveSdkToken {
    pub id: Uuid,
    pub name: String,
    pub kind: SdkTokenKind,
    pub token_hash: Vec<u8>,
    pub project_id: Uuid,
    pub project: String,
    pub environment_id: EnvironmentId,
    pub environment: String,
}

#[derive(Clone)]
pub struct SdkTokens {
    pool: PgPool,
}

impl SdkTokens {
    pub fn new(pool: PgPool) -> Self {
        SdkTokens { pool }
    }

    /// Creates a token for one environment and returns its secret, the only time it is shown.
    pub async fn create(
        &self,
        project: &str,
        environment: &str,
        kind: SdkTokenKind,
        name: &str,
        actor: Actor,
        origin: &Origin,
    ) -> Result<NewSdkToken, SdkTokenError> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(SdkTokenError::BadName);
        }
        let mut tx = self.pool.begin().await?;
        let environment_id = sqlx::query_scalar!(
            r#"select e.environment_id from environment e join project p using (project_id)
               where p.project_key = $1 and e.name = $2"#,
            project,
            environment
        )
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| SdkTokenError::NoSuchEnvironment {
            project: project.to_owned(),
            environment: environment.to_owned(),
        })?;
        let secret = Secret::generate(&format!("{project}:{environment}."));
        let prefix: String = secret
            .expose()
            .chars()
            .take(project.chars().count() + environment.chars().count() + 6)
            .collect();
        let id = sqlx::query_scalar!(
            r#"insert into sdk_token (environment_id, kind, name, token_hash, token_prefix, created_by)
               values ($1, $2, $3, $4, $5, $6)
               returning sdk_token_id"#,
            environment_id,
            kind.as_str(),
            name,
            secret.hash(),
            prefix,
            (actor.kind == "user").then_some(actor.id).flatten(),
        )
        .fetch_one(&mut *tx)
        .await?;
        AuditRecord::new(actor, "sdk_token.created", origin)
            .security()
            .target(format!("{project}/{environment}"))
            .details(serde_json::json!({
                "before": null,
                "after": { "id": id, "name": name, "kind": kind, "prefix": prefix },
            }))
            .write(&mut *tx)
            .await?;
        tx.commit().await?;
        let summary = self
            .list(project)
            .await?
            .into_iter()
            .find(|t| t.id == id.to_string())
            .ok_or(SdkTokenError::NotFound(id))?;
        Ok(NewSdkToken {
            summary,
            secret: secret.expose().to_owned(),
        })
    }

    /// A project's SDK tokens, live ones first, newest first.
    pub async fn list(&self, project: &str) -> Result<Vec<SdkTokenSummary>, SdkTokenError> {
        let rows = sqlx::query!(
            r#"select t.sdk_token_id, t.name, t.kind, t.token_prefix, p.project_key, e.name as environment,
                      u.username as "created_by?", t.created_at, t.last_used_at, t.revoked_at
               from sdk_token t
               join environment e using (environment_id)
               join project p on p.project_id = e.project_id
               left join app_user u on u.app_user_id = t.created_by
               where p.project_key = $1
               order by t.revoked_at is not null, t.created_at desc"#,
            project
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| SdkTokenSummary {
                id: r.sdk_token_id.to_string(),
                name: r.name,
                // The column's check allows only the two kinds.
                kind: r.kind.parse().unwrap_or(SdkTokenKind::Frontend),
                project: r.project_key,
                environment: r.environment,
                prefix: r.token_prefix,
                created_by: r.created_by,
                created_at: r.created_at,
                last_used_at: r.last_used_at,
                revoked_at: r.revoked_at,
            })
            .collect())
    }

    /// Revokes a token of the project. Revoking one already revoked changes nothing and returns
    /// false.
    pub async fn revoke(
        &self,
        project: &str,
        id: Uuid,
        actor: Actor,
        origin: &Origin,
    ) -> Result<bool, SdkTokenError> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query!(
            r#"select t.name, t.kind, e.name as environment, t.revoked_at is not null as "revoked!"
               from sdk_token t join environment e using (environment_id)
               join project p on p.project_id = e.project_id
               where t.sdk_token_id = $1 and p.project_key = $2
               for update of t"#,
            id,
            project
        )
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(SdkTokenError::NotFound(id))?;
        if row.revoked {
            return Ok(false);
        }
        sqlx::query!(
            "update sdk_token set revoked_at = now() where sdk_token_id = $1",
            id
        )
        .execute(&mut *tx)
        .await?;
        AuditRecord::new(actor, "sdk_token.revoked", origin)
            .security()
            .target(format!("{project}/{}", row.environment))
            .details(serde_json::json!({
                "before": { "id": id, "name": row.name, "kind": row.kind, "revoked": false },
                "after": { "id": id, "name": row.name, "kind": row.kind, "revoked": true },
            }))
            .write(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Every live token, for the in-memory index.
    pub async fn live(&self) -> Result<Vec<LiveSdkToken>, sqlx::Error> {
        let rows = sqlx::query!(
            r#"select t.sdk_token_id, t.name, t.kind, t.token_hash, e.project_id, p.project_key,
                      e.environment_id, e.name as environment
               from sdk_token t
               join environment e using (environment_id)
               join project p on p.project_id = e.project_id
               where t.revoked_at is null"#
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                Some(LiveSdkToken {
                    id: r.sdk_token_id,
                    name: r.name,
                    kind: r.kind.parse().ok()?,
                    token_hash: r.token_hash,
                    project_id: r.project_id,
                    project: r.project_key,
                    environment_id: EnvironmentId(r.environment_id),
                    environment: r.environment,
                })
            })
            .collect())
    }

    /// Records that a token was used (callers do this at most once a minute per token).
    pub async fn record_use(&self, id: Uuid) -> Result<(), sqlx::Error> {
        sqlx::query!(
            "update sdk_token set last_used_at = now() where sdk_token_id = $1",
            id
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
