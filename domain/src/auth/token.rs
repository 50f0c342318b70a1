//! API tokens for CI, runners and SDKs: scoped, hashed at rest, revocable, with last-used time.

use super::principal::TokenPrincipal;
use super::secret::Secret;
use crate::people::{NewToken, TokenSummary};
use crate::scope::{Scope, UnknownScope};
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// What every API token starts with, so a leaked one is recognisable (and junk is not looked up).
pub const TOKEN_PREFIX: &str = "fdt_";

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("a token needs a name of 1 to 100 characters")]
    BadName,
    #[error("a token needs at least one scope")]
    NoScopes,
    #[error(transparent)]
    UnknownScope(#[from] UnknownScope),
    #[error("no token with id {0}")]
    NotFound(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Issues a token in the caller's transaction: its id and its secret, which is never stored.
pub async fn issue(
    conn: &mut PgConnection,
    name: &str,
    scopes: &[Scope],
    created_by: Option<Uuid>,
    expires_at: Option<DateTime<Utc>>,
) -> Result<(Uuid, Secret), TokenError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(TokenError::BadName);
    }
    if scopes.is_empty() {
        return Err(TokenError::NoScopes);
    }
    let secret = Secret::generate(TOKEN_PREFIX);
    let prefix: String = secret.expose().chars().take(10).collect();
    let scope_names: Vec<String> = scopes.iter().map(|s| s.as_str().to_string()).collect();
    let id = sqlx::query_scalar!(
        r#"insert into api_token (name, token_hash, token_prefix, scopes, created_by, expires_at)
           values ($1, $2, $3, $4, $5, $6)
           returning api_token_id"#,
        name,
        secret.hash(),
        prefix,
        &scope_names,
        created_by,
        expires_at,
    )
    .fetch_one(&mut *conn)
    .await?;
    Ok((id, secret))
}

/// The token store.
#[derive(Clone)]
pub struct Tokens {
    pool: PgPool,
}

impl Tokens {
    pub fn new(pool: PgPool) -> Self {
        Tokens { pool }
    }

    pub async fn create(
        &self,
        name: &str,
        scopes: &[Scope],
        created_by: Option<Uuid>,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<NewToken, TokenError> {
        let mut conn = self.pool.acquire().await?;
        let (id, secret) = issue(&mut conn, name, scopes, created_by, expires_at).await?;
        drop(conn);
        let summary = self
            .list()
            .await?
            .into_iter()
            .find(|t| t.id == id.to_string())
            .ok_or_else(|| TokenError::NotFound(id.to_string()))?;
        Ok(NewToken {
            summary,
            secret: secret.expose().to_string(),
        })
    }

    pub async fn list(&self) -> Result<Vec<TokenSummary>, TokenError> {
        let rows = sqlx::query!(
            r#"select t.api_token_id, t.name, t.token_prefix, t.scopes, u.username as "created_by?",
                      t.created_at, t.expires_at, t.last_used_at, t.revoked_at
               from api_token t left join app_user u on u.app_user_id = t.created_by
               order by t.revoked_at is not null, t.created_at desc"#
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| TokenSummary {
                id: r.api_token_id.to_string(),
                name: r.name,
                prefix: r.token_prefix,
                scopes: r.scopes,
                created_by: r.created_by,
                created_at: r.created_at,
                expires_at: r.expires_at,
                last_used_at: r.last_used_at,
                revoked_at: r.revoked_at,
            })
            .collect())
    }

    /// Revokes a token. Revoking one already revoked changes nothing and returns false.
    pub async fn revoke(&self, id: Uuid) -> Result<bool, TokenError> {
        let exists = sqlx::query_scalar!(
            "select revoked_at is null from api_token where api_token_id = $1",
            id
        )
        .fetch_optional(&self.pool)
        .await?;
        match exists {
            None => Err(TokenError::NotFound(id.to_string())),
            Some(_) => {
                let result = sqlx::query!(
                    "update api_token set revoked_at = now() where api_token_id = $1 and revoked_at is null",
                    id
                )
                .execute(&self.pool)
                .await?;
                Ok(result.rows_affected() == 1)
            }
        }
    }

    /// Finds the live token for a secret; one that could never have been issued (see
    /// [`Secret::could_have_been_issued`]) is unknown without a query. Its last-used time (and
    /// address) is written at most once a minute, so a busy runner or CI job does not turn every
    /// call into a write, and at once when the token comes from another address than last time:
    /// `new_address` says so, and only that is worth an audit entry (routine use shows as the
    /// token's "last used").
    pub async fn authenticate(
        &self,
        presented: &str,
        ip: Option<&str>,
    ) -> Result<Option<AuthenticatedToken>, sqlx::Error> {
        if !Secret::could_have_been_issued(TOKEN_PREFIX, presented) {
            return Ok(None);
        }
        let hash = Secret::from_client(presented).hash();
        let Some(row) = sqlx::query!(
            r#"select api_token_id, name, scopes, last_used_ip,
                      coalesce(last_used_at < now() - interval '1 minute', true) as "stale_use!",
                      last_used_ip is distinct from $2 as "new_address!"
               from api_token
               where token_hash = $1 and revoked_at is null
                 and (expires_at is null or expires_at > now())"#,
            hash,
            ip,
        )
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        if row.stale_use || row.new_address {
            sqlx::query!(
                "update api_token set last_used_at = now(), last_used_ip = $2 where api_token_id = $1",
                row.api_token_id,
                ip,
            )
            .execute(&self.pool)
            .await?;
        }
        Ok(Some(AuthenticatedToken {
            principal: TokenPrincipal {
                id: row.api_token_id,
                name: row.name,
                // Scopes were validated when stored; one removed in a later version is dropped.
                scopes: row.scopes.iter().filter_map(|s| s.parse().ok()).collect(),
            },
            new_address: row.new_address.then_some(NewAddress {
                previous: row.last_used_ip,
            }),
        }))
    }
}

/// A token that matched, and whether it came from another address than last time.
#[derive(Debug, Clone)]
pub struct AuthenticatedToken {
    pub principal: TokenPrincipal,
    pub new_address: Option<NewAddress>,
}

/// A token's first use, or its first use from this address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAddress {
    /// Where it was last used from; `None` on its first use.
    pub previous: Option<String>,
}
