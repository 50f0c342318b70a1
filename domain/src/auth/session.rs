//! Browser sessions, stored server-side in Postgres so any replica can serve any request.
//!
//! The cookie holds a random secret; the table holds its hash. A session ends at its absolute
//! expiry, after the idle timeout, at sign-out, or when the person is disabled or their
//! password is reset.

use super::principal::UserPrincipal;
use super::secret::Secret;
use super::user::UserId;
use crate::audit::Origin;
use chrono::{Duration, Utc};
use sqlx::PgPool;
use uuid::Uuid;

/// How long sessions last.
#[derive(Debug, Clone, Copy)]
pub struct SessionPolicy {
    /// From sign-in to forced sign-out, however active the person is.
    pub absolute: Duration,
    /// Without a request for this long, the session ends.
    pub idle: Duration,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        SessionPolicy {
            absolute: Duration::days(7),
            idle: Duration::hours(12),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

#[derive(Clone)]
pub struct Sessions {
    pool: PgPool,
    policy: SessionPolicy,
}

impl Sessions {
    pub fn new(pool: PgPool, policy: SessionPolicy) -> Self {
        Sessions { pool, policy }
    }

    pub fn policy(&self) -> SessionPolicy {
        self.policy
    }

    /// Starts a session and returns the secret for the cookie.
    pub async fn start(&self, user: UserId, origin: &Origin) -> Result<Secret, SessionError> {
        let secret = Secret::generate("fds_");
        sqlx::query!(
            r#"insert into user_session (token_hash, app_user_id, expires_at, ip, user_agent)
               values ($1, $2, $3, $4, $5)"#,
            secret.hash(),
            user.0,
            Utc::now() + self.policy.absolute,
            origin.ip,
            origin.user_agent,
        )
        .execute(&self.pool)
        .await?;
        Ok(secret)
    }

    /// The person behind a cookie, if the session is live and the account enabled. Activity is
    /// written at most once a minute.
    pub async fn resolve(&self, cookie: &str) -> Result<Option<UserPrincipal>, SessionError> {
        let idle_seconds = self.policy.idle.num_seconds() as f64;
        let row = sqlx::query!(
            r#"select s.user_session_id, s.last_seen_at < now() - interval '1 minute' as "stale!",
                      u.app_user_id, u.username, u.display_name, u.role
               from user_session s join app_user u using (app_user_id)
               where s.token_hash = $1 and s.expires_at > now()
                 and s.last_seen_at > now() - make_interval(secs => $2)
                 and not u.disabled"#,
            Secret::from_client(cookie).hash(),
            idle_seconds,
        )
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        if row.stale {
            sqlx::query!(
                "update user_session set last_seen_at = now() where user_session_id = $1",
                row.user_session_id
            )
            .execute(&self.pool)
            .await?;
        }
        let Ok(role) = row.role.parse() else {
            return Ok(None);
        };
        Ok(Some(UserPrincipal {
            id: UserId(row.app_user_id),
            username: row.username,
            display_name: row.display_name,
            role,
            session_id: row.user_session_id,
        }))
    }

    pub async fn end(&self, session_id: Uuid) -> Result<(), SessionError> {
        sqlx::query!(
            "delete from user_session where user_session_id = $1",
            session_id
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Deletes sessions past their expiry or idle timeout; returns how many.
    pub async fn purge_expired(&self) -> Result<u64, SessionError> {
        let idle_seconds = self.policy.idle.num_seconds() as f64;
        let done = sqlx::query!(
            "delete from user_session where expires_at <= now() or last_seen_at <= now() - make_interval(secs => $1)",
            idle_seconds
        )
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }
}
