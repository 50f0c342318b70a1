//! People: their accounts, sign-in with throttling, and the one-time setup link that creates
//! the first admin.

use super::password::{Password, PasswordError};
use super::secret::Secret;
use crate::audit::{Actor, AuditRecord, Origin, Outcome};
use crate::people::UserSummary;
use crate::role::Role;
use chrono::{Duration, Utc};
use serde_json::json;
use sqlx::PgPool;
use std::fmt;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UserId(pub Uuid);

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A login name: 2–63 characters, lower-case letters, digits, `.`, `_`, `-`, starting with a
/// letter or digit. Typed upper-case, it is lower-cased.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Username(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not a valid username: use 2 to 63 letters, digits, `.`, `_` or `-`, starting with a letter or digit"
)]
pub struct UsernameError(pub String);

impl Username {
    pub fn parse(value: &str) -> Result<Self, UsernameError> {
        let lower = value.trim().to_lowercase();
        let mut chars = lower.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
        let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if first_ok && rest_ok && (2..=63).contains(&lower.len()) {
            Ok(Username(lower))
        } else {
            Err(UsernameError(value.to_string()))
        }
    }
}

impl AsRef<str> for Username {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error(transparent)]
    Username(#[from] UsernameError),
    #[error(transparent)]
    Password(#[from] PasswordError),
    #[error("a display name needs 1 to 100 characters")]
    DisplayName,
    #[error("the username `{0}` is taken")]
    Taken(String),
    #[error("there is no user `{0}`")]
    NotFound(String),
    #[error("you cannot {0} your own account; ask another admin")]
    OwnAccount(&'static str),
    #[error("`{0}` is the last admin; make someone else an admin first")]
    LastAdmin(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("wrong username or password")]
    Invalid,
    #[error("too many failed sign-ins; try again in {retry_after_secs} seconds")]
    Throttled { retry_after_secs: u64 },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum SetupLinkError {
    #[error(
        "this setup link is invalid, used or expired; run `flightdeck user add` to create an admin"
    )]
    Invalid,
    #[error(transparent)]
    User(#[from] UserError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// How many failed sign-ins are allowed before the name or address must wait.
#[derive(Debug, Clone, Copy)]
pub struct LoginThrottle {
    pub per_username: i64,
    pub per_ip: i64,
    pub window: Duration,
}

impl Default for LoginThrottle {
    fn default() -> Self {
        LoginThrottle {
            per_username: 5,
            per_ip: 20,
            window: Duration::minutes(15),
        }
    }
}

/// A user that signed in.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub id: UserId,
    pub username: String,
}

/// A user account's new details.
#[derive(Debug, Clone)]
pub struct NewUser<'a> {
    pub username: &'a str,
    pub display_name: &'a str,
    pub role: Role,
    pub password: &'a str,
}

#[derive(Clone)]
pub struct Users {
    pool: PgPool,
    throttle: LoginThrottle,
}

/// A valid Argon2id hash of a random password, verified when the username is unknown so that a
/// wrong name takes as long as a wrong password.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$7UVtyZ9yBDNe6M1vhRDWyR1kRvJ4f5Q+VDpl1QaM6yA";

impl Users {
    pub fn new(pool: PgPool, throttle: LoginThrottle) -> Self {
        Users { pool, throttle }
    }

    pub async fn count(&self) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar!(r#"select count(*) as "n!" from app_user"#)
            .fetch_one(&self.pool)
            .await
    }

    /// Creates an account and audits it in one transaction.
    pub async fn create(
        &self,
        new: NewUser<'_>,
        actor: Actor,
        origin: &Origin,
    ) -> Result<UserId, UserError> {
        let username = Username::parse(new.username)?;
        let display_name = new.display_name.trim();
        let display_name = if display_name.is_empty() {
            username.as_ref()
        } else {
            display_name
        };
        if display_name.chars().count() > 100 {
            return Err(UserError::DisplayName);
        }
        let hash = Password::parse(new.password)?.hash().await;
        let mut tx = self.pool.begin().await?;
        let id = sqlx::query_scalar!(
            r#"insert into app_user (username, display_name, role, password_hash)
               values ($1, $2, $3, $4)
               on conflict (username) do nothing
               returning app_user_id"#,
            username.as_ref(),
            display_name,
            new.role.as_str(),
            hash,
        )
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| UserError::Taken(username.as_ref().to_string()))?;
        AuditRecord::new(actor, "user.created", origin)
            .target(username.as_ref())
            .details(json!({ "role": new.role, "display_name": display_name }))
            .write(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(UserId(id))
    }

    pub async fn list(&self) -> Result<Vec<UserSummary>, UserError> {
        let rows = sqlx::query!(
            r#"select u.username, u.display_name, u.role, u.disabled, u.created_at,
                      (select max(s.last_seen_at) from user_session s where s.app_user_id = u.app_user_id) as last_seen_at
               from app_user u order by u.username"#
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                Some(UserSummary {
                    role: r.role.parse().ok()?,
                    username: r.username,
                    display_name: r.display_name,
                    disabled: r.disabled,
                    created_at: r.created_at,
                    last_seen_at: r.last_seen_at,
                })
            })
            .collect())
    }

    /// Changes a role. Refuses to leave the portal without an enabled admin.
    pub async fn set_role(
        &self,
        username: &str,
        role: Role,
        actor: Actor,
        origin: &Origin,
    ) -> Result<(), UserError> {
        let mut tx = self.pool.begin().await?;
        let current = self.lock_user(&mut tx, username).await?;
        if current.role == Role::Admin.as_str() && role != Role::Admin {
            self.ensure_other_admin(&mut tx, username).await?;
        }
        sqlx::query!(
            "update app_user set role = $2, updated_at = now() where app_user_id = $1",
            current.app_user_id,
            role.as_str()
        )
        .execute(&mut *tx)
        .await?;
        AuditRecord::new(actor, "user.role_changed", origin)
            .security()
            .target(username)
            .details(json!({ "before": current.role, "after": role }))
            .write(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Disables or re-enables an account. Disabling ends its sessions at once.
    pub async fn set_disabled(
        &self,
        username: &str,
        disabled: bool,
        actor: Actor,
        origin: &Origin,
    ) -> Result<(), UserError> {
        if actor.name == username && disabled {
            return Err(UserError::OwnAccount("disable"));
        }
        let mut tx = self.pool.begin().await?;
        let current = self.lock_user(&mut tx, username).await?;
        if disabled && current.role == Role::Admin.as_str() {
            self.ensure_other_admin(&mut tx, username).await?;
        }
        sqlx::query!(
            "update app_user set disabled = $2, updated_at = now() where app_user_id = $1",
            current.app_user_id,
            disabled
        )
        .execute(&mut *tx)
        .await?;
        if disabled {
            sqlx::query!(
                "delete from user_session where app_user_id = $1",
                current.app_user_id
            )
            .execute(&mut *tx)
            .await?;
        }
        AuditRecord::new(actor, if disabled { "user.disabled" } else { "user.enabled" }, origin)
            .security()
            .target(username)
            .details(json!({ "before": { "disabled": current.disabled }, "after": { "disabled": disabled } }))
            .write(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Sets a new password and ends every session of that account.
    pub async fn reset_password(
        &self,
        username: &str,
        password: &str,
        actor: Actor,
        origin: &Origin,
    ) -> Result<(), UserError> {
        let hash = Password::parse(password)?.hash().await;
        let mut tx = self.pool.begin().await?;
        let current = self.lock_user(&mut tx, username).await?;
        sqlx::query!(
            "update app_user set password_hash = $2, updated_at = now() where app_user_id = $1",
            current.app_user_id,
            hash
        )
        .execute(&mut *tx)
        .await?;
        sqlx::query!(
            "delete from user_session where app_user_id = $1",
            current.app_user_id
        )
        .execute(&mut *tx)
        .await?;
        AuditRecord::new(actor, "user.password_reset", origin)
            .security()
            .target(username)
            .write(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Checks a username and password. Failures are audited (they drive the throttle), and too
    /// many recent failures for the name or the address refuse even a right password.
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        origin: &Origin,
    ) -> Result<SignedIn, LoginError> {
        let name = username.trim().to_lowercase();
        let since = Utc::now() - self.throttle.window;
        let recent = sqlx::query!(
            r#"select
                 count(*) filter (where target = $1) as "by_name!",
                 count(*) filter (where ip = $2) as "by_ip!",
                 min(occurred_at) filter (where target = $1 or ip = $2) as oldest
               from audit_event
               where action = 'session.login_failed' and occurred_at > $3 and (target = $1 or ip = $2)"#,
            name,
            origin.ip,
            since,
        )
        .fetch_one(&self.pool)
        .await?;
        if recent.by_name >= self.throttle.per_username || recent.by_ip >= self.throttle.per_ip {
            let retry_at = recent.oldest.unwrap_or_else(Utc::now) + self.throttle.window;
            let retry_after_secs = (retry_at - Utc::now()).num_seconds().max(1) as u64;
            AuditRecord::new(Actor::anonymous(), "session.login_throttled", origin)
                .outcome(Outcome::Denied)
                .security()
                .target(&name)
                .write(&self.pool)
                .await?;
            return Err(LoginError::Throttled { retry_after_secs });
        }
        let row = sqlx::query!(
            "select app_user_id, username, password_hash, disabled from app_user where username = $1",
            name
        )
        .fetch_optional(&self.pool)
        .await?;
        let stored = row
            .as_ref()
            .map(|r| r.password_hash.as_str())
            .unwrap_or(DUMMY_HASH);
        let password_ok = Password::verify(password, stored).await;
        match row {
            Some(r) if password_ok && !r.disabled => Ok(SignedIn {
                id: UserId(r.app_user_id),
                username: r.username,
            }),
            found => {
                let reason = match found {
                    None => "unknown user",
                    Some(r) if r.disabled => "account disabled",
                    Some(_) => "wrong password",
                };
                AuditRecord::new(Actor::anonymous(), "session.login_failed", origin)
                    .outcome(Outcome::Failed)
                    .security()
                    .target(&name)
                    .details(json!({ "reason": reason }))
                    .write(&self.pool)
                    .await?;
                Err(LoginError::Invalid)
            }
        }
    }

    /// Makes a one-time link for creating the first admin, valid for a day, but only while the
    /// portal has no users. Earlier unused links stop working.
    pub async fn create_setup_link(&self) -> Result<Option<Secret>, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        // Serialise replicas starting at once: only one prints a link.
        sqlx::query!("select pg_advisory_xact_lock(hashtext('flightdeck.setup_link'))")
            .execute(&mut *tx)
            .await?;
        let users = sqlx::query_scalar!(r#"select count(*) as "n!" from app_user"#)
            .fetch_one(&mut *tx)
            .await?;
        if users > 0 {
            return Ok(None);
        }
        sqlx::query!(
            "update setup_link set expires_at = now() where used_at is null and expires_at > now()"
        )
        .execute(&mut *tx)
        .await?;
        let secret = Secret::generate("fdl_");
        sqlx::query!(
            "insert into setup_link (token_hash, expires_at) values ($1, $2)",
            secret.hash(),
            Utc::now() + Duration::days(1)
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(secret))
    }

    /// Whether anyone has an account yet (a setup link is offered until someone does).
    pub async fn anyone_exists(&self) -> Result<bool, sqlx::Error> {
        sqlx::query_scalar!(r#"select exists(select 1 from app_user) as "exists!""#)
            .fetch_one(&self.pool)
            .await
    }

    /// Whether a setup link can still be used (for showing the form).
    pub async fn setup_link_is_valid(&self, link: &str) -> Result<bool, sqlx::Error> {
        let valid = sqlx::query_scalar!(
            r#"select exists(select 1 from setup_link where token_hash = $1 and used_at is null and expires_at > now()) as "ok!""#,
            Secret::from_client(link).hash()
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(valid)
    }

    /// Uses a setup link to create the first admin; the link works once.
    pub async fn complete_setup(
        &self,
        link: &str,
        new: NewUser<'_>,
        origin: &Origin,
    ) -> Result<UserId, SetupLinkError> {
        let username = Username::parse(new.username).map_err(UserError::from)?;
        let hash = Password::parse(new.password)
            .map_err(UserError::from)?
            .hash()
            .await;
        let mut tx = self.pool.begin().await?;
        let used = sqlx::query_scalar!(
            r#"update setup_link set used_at = now()
               where token_hash = $1 and used_at is null and expires_at > now()
               returning setup_link_id"#,
            Secret::from_client(link).hash()
        )
        .fetch_optional(&mut *tx)
        .await?;
        let users = sqlx::query_scalar!(r#"select count(*) as "n!" from app_user"#)
            .fetch_one(&mut *tx)
            .await?;
        if used.is_none() || users > 0 {
            return Err(SetupLinkError::Invalid);
        }
        let display_name = if new.display_name.trim().is_empty() {
            username.as_ref()
        } else {
            new.display_name.trim()
        };
        let id = sqlx::query_scalar!(
            r#"insert into app_user (username, display_name, role, password_hash)
               values ($1, $2, 'admin', $3) returning app_user_id"#,
            username.as_ref(),
            display_name,
            hash,
        )
        .fetch_one(&mut *tx)
        .await?;
        AuditRecord::new(Actor::anonymous(), "user.created", origin)
            .security()
            .target(username.as_ref())
            .details(json!({ "role": "admin", "via": "setup link" }))
            .write(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(UserId(id))
    }

    async fn lock_user(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
        username: &str,
    ) -> Result<LockedUser, UserError> {
        sqlx::query_as!(
            LockedUser,
            "select app_user_id, role, disabled from app_user where username = $1 for update",
            username.trim().to_lowercase()
        )
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| UserError::NotFound(username.to_string()))
    }

    async fn ensure_other_admin(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
        username: &str,
    ) -> Result<(), UserError> {
        let others = sqlx::query_scalar!(
            r#"select count(*) as "n!" from app_user where role = 'admin' and not disabled and username <> $1"#,
            username
        )
        .fetch_one(&mut **tx)
        .await?;
        if others == 0 {
            Err(UserError::LastAdmin(username.to_string()))
        } else {
            Ok(())
        }
    }
}

struct LockedUser {
    app_user_id: Uuid,
    role: String,
    disabled: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_lower_cased_and_checked() {
        assert_eq!(Username::parse(" Alice ").unwrap().as_ref(), "alice");
        assert!(Username::parse("a").is_err());
        assert!(Username::parse("-alice").is_err());
        assert!(Username::parse("al ice").is_err());
        assert!(Username::parse("release.manager_1").is_ok());
    }

    #[tokio::test]
    async fn the_dummy_hash_is_a_real_hash_that_matches_nothing_typed() {
        assert!(argon2::password_hash::PasswordHash::new(DUMMY_HASH).is_ok());
        assert!(!Password::verify("", DUMMY_HASH).await);
    }
}
