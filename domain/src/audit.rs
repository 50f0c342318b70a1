//! The audit log: who did what, when, from where, and what changed.
//!
//! Every state change, sign-in, failed sign-in, denial and token use is one row. Security events
//! (sign-ins, denials, bad signatures) carry `security = true` so they can be reviewed alone.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One audit entry as the audit page shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub id: i64,
    pub occurred_at: DateTime<Utc>,
    pub actor_kind: String,
    pub actor_name: String,
    pub action: String,
    pub outcome: String,
    pub security: bool,
    pub target: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// As stored; [`crate::audit_details::readable`] turns it into lines for people.
    pub details: serde_json::Value,
}

/// What the audit page filters on. Empty fields do not filter.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditFilter {
    /// The actor's name, exact.
    pub actor: Option<String>,
    /// An action, or an action prefix ending in `.` (e.g. `session.`).
    pub action: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub security_only: bool,
    /// Show entries older than this id (keyset paging).
    pub before_id: Option<i64>,
}

/// A page of audit entries, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    /// Pass as `before_id` to read the next page; `None` on the last page.
    pub next_before_id: Option<i64>,
    /// What to call the ids details mention (environment ids → `project/environment`).
    #[serde(default)]
    pub names: std::collections::HashMap<String, String>,
}

#[cfg(feature = "server")]
pub use store::*;

#[cfg(feature = "server")]
mod store {
    use super::*;
    use crate::auth::Principal;
    use sqlx::PgExecutor;
    use uuid::Uuid;

    /// Where a request came from.
    #[derive(Debug, Clone, Default, PartialEq, Eq)]
    pub struct Origin {
        pub ip: Option<String>,
        pub user_agent: Option<String>,
    }

    /// Who acted.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Actor {
        pub kind: &'static str,
        pub id: Option<Uuid>,
        pub name: String,
    }

    impl Actor {
        pub fn anonymous() -> Self {
            Actor {
                kind: "anonymous",
                id: None,
                name: "anonymous".into(),
            }
        }
        pub fn system() -> Self {
            Actor {
                kind: "system",
                id: None,
                name: "flightdeck".into(),
            }
        }
        /// A person at the command line, named by their OS login.
        pub fn cli(os_user: &str) -> Self {
            Actor {
                kind: "system",
                id: None,
                name: format!("cli:{os_user}"),
            }
        }
        pub fn of(principal: Option<&Principal>) -> Self {
            match principal {
                Some(p) => Actor {
                    kind: p.actor_kind(),
                    id: Some(p.id()),
                    name: p.name().to_string(),
                },
                None => Actor::anonymous(),
            }
        }
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Outcome {
        Ok,
        Denied,
        Failed,
    }

    impl Outcome {
        fn as_str(self) -> &'static str {
            match self {
                Outcome::Ok => "ok",
                Outcome::Denied => "denied",
                Outcome::Failed => "failed",
            }
        }
    }

    /// One thing to write to the log.
    #[derive(Debug, Clone)]
    pub struct AuditRecord {
        pub actor: Actor,
        pub action: &'static str,
        pub outcome: Outcome,
        pub security: bool,
        pub target: Option<String>,
        pub origin: Origin,
        pub details: serde_json::Value,
    }

    impl AuditRecord {
        pub fn new(actor: Actor, action: &'static str, origin: &Origin) -> Self {
            AuditRecord {
                actor,
                action,
                outcome: Outcome::Ok,
                security: false,
                target: None,
                origin: origin.clone(),
                details: serde_json::Value::Object(Default::default()),
            }
        }
        pub fn outcome(mut self, outcome: Outcome) -> Self {
            self.outcome = outcome;
            self
        }
        pub fn security(mut self) -> Self {
            self.security = true;
            self
        }
        pub fn target(mut self, target: impl Into<String>) -> Self {
            self.target = Some(target.into());
            self
        }
        pub fn details(mut self, details: serde_json::Value) -> Self {
            self.details = details;
            self
        }

        /// Writes the entry. Pass the transaction of the change it describes, so the change and
        /// its audit entry are stored together or not at all.
        pub async fn write(self, db: impl PgExecutor<'_>) -> Result<(), sqlx::Error> {
            sqlx::query!(
                r#"insert into audit_event
                     (actor_kind, actor_id, actor_name, action, outcome, security, target, ip, user_agent, details)
                   values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"#,
                self.actor.kind,
                self.actor.id,
                self.actor.name,
                self.action,
                self.outcome.as_str(),
                self.security,
                self.target,
                self.origin.ip,
                self.origin.user_agent.map(|ua| ua.chars().take(400).collect::<String>()),
                self.details,
            )
            .execute(db)
            .await?;
            Ok(())
        }
    }

    /// Reads a page of the log, newest first, through the indexes on time, actor and action.
    pub async fn search(
        pool: &sqlx::PgPool,
        filter: &AuditFilter,
        limit: i64,
    ) -> Result<AuditPage, sqlx::Error> {
        let action_prefix = filter
            .action
            .as_deref()
            .filter(|a| a.ends_with('.'))
            .map(|a| format!("{a}%"));
        let action_exact = filter.action.as_deref().filter(|a| !a.ends_with('.'));
        let rows = sqlx::query!(
            r#"select audit_event_id, occurred_at, actor_kind, actor_name, action, outcome, security,
                      target, ip, user_agent, details
               from audit_event
               where ($1::text is null or actor_name = $1)
                 and ($2::text is null or action = $2)
                 and ($3::text is null or action like $3)
                 and ($4::timestamptz is null or occurred_at >= $4)
                 and ($5::timestamptz is null or occurred_at < $5)
                 and (not $6 or security)
                 and ($7::bigint is null or audit_event_id < $7)
               order by audit_event_id desc
               limit $8"#,
            filter.actor.as_deref().filter(|a| !a.is_empty()),
            action_exact.filter(|a| !a.is_empty()),
            action_prefix,
            filter.since,
            filter.until,
            filter.security_only,
            filter.before_id,
            limit + 1,
        )
        .fetch_all(pool)
        .await?;
        let has_more = rows.len() as i64 > limit;
        // Environments are written by id; people read them by name.
        let names: std::collections::HashMap<String, String> = sqlx::query!(
            r#"select e.environment_id::text as "id!", p.project_key || '/' || e.name as "name!"
               from environment e join project p using (project_id)"#
        )
        .fetch_all(pool)
        .await?
        .into_iter()
        .map(|r| (r.id, r.name))
        .collect();
        let entries: Vec<AuditEntry> = rows
            .into_iter()
            .take(limit as usize)
            .map(|r| AuditEntry {
                id: r.audit_event_id,
                occurred_at: r.occurred_at,
                actor_kind: r.actor_kind,
                actor_name: r.actor_name,
                action: r.action,
                outcome: r.outcome,
                security: r.security,
                target: r.target,
                ip: r.ip,
                user_agent: r.user_agent,
                details: r.details,
            })
            .collect();
        let next_before_id = if has_more {
            entries.last().map(|e| e.id)
        } else {
            None
        };
        Ok(AuditPage {
            entries,
            next_before_id,
            names,
        })
    }
}
