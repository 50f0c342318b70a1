//! Flag changes that wait for an approval, for a time, or both.
//!
//! An environment whose protection requires approvals (production in the sample) gets flag
//! changes as requests: another person with the environment's roles approves, and the change
//! is applied then (or at its time, when it was scheduled). Any environment takes scheduled
//! changes. The kill switch never waits: it is the emergency stop.
//!
//! A waiting change is an [`EnvironmentEdit`], applied through [`FlagStore::apply`] like any
//! other edit, so it gets the same snapshot and audit entry. Every server runs
//! [`FlagChanges::apply_due`] every second; a due change is locked (`for update skip locked`)
//! while it is applied, so one replica applies it, once.

use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::types::Json;

use super::definition::{EnvironmentEdit, FlagName};
use super::store::{Applied, EnvironmentId, FlagError, FlagStore};
use crate::audit::{Actor, AuditRecord, Origin};
use crate::flag_view::{ChangeOutcome, WaitingChange};

/// How far ahead a change can be scheduled.
const MAX_SCHEDULE_DAYS: i64 = 366;

#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error(transparent)]
    Flag(#[from] FlagError),
    #[error("there is no waiting flag change {0} here")]
    NotFound(i64),
    #[error("you asked for this change; another person approves it")]
    OwnChange,
    #[error("a change is scheduled for a time in the coming {MAX_SCHEDULE_DAYS} days, not {0}")]
    BadTime(DateTime<Utc>),
    #[error("the kill switch never waits; use it to turn a flag off now")]
    KillWaits,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// A decision on a waiting change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Approve,
    Reject,
    /// Withdrawn by the person who asked (or anyone allowed to decide).
    Cancel,
}

pub struct FlagChanges<'a> {
    store: &'a FlagStore,
}

impl<'a> FlagChanges<'a> {
    pub fn new(store: &'a FlagStore) -> Self {
        FlagChanges { store }
    }

    /// Applies `edit` now, or stores it to wait for an approval (`needs_approval`) and/or its
    /// time (`apply_at`).
    #[allow(clippy::too_many_arguments)]
    pub async fn request(
        &self,
        environment: EnvironmentId,
        flag: &FlagName,
        edit: EnvironmentEdit,
        needs_approval: bool,
        apply_at: Option<DateTime<Utc>>,
        actor: Actor,
        origin: &Origin,
    ) -> Result<ChangeOutcome, ChangeError> {
        let now = Utc::now();
        if let Some(at) = apply_at
            && (at > now + chrono::Duration::days(MAX_SCHEDULE_DAYS)
                || at < now - chrono::Duration::minutes(5))
        {
            return Err(ChangeError::BadTime(at));
        }
        let waits = needs_approval || apply_at.is_some_and(|at| at > now);
        if matches!(edit, EnvironmentEdit::Kill) {
            if apply_at.is_some_and(|at| at > now) {
                return Err(ChangeError::KillWaits);
            }
            let applied = self
                .store
                .apply(environment, flag, edit, actor, origin)
                .await?;
            return Ok(ChangeOutcome::Applied {
                changed: applied.changed(),
            });
        }
        if !waits {
            let applied = self
                .store
                .apply(environment, flag, edit, actor, origin)
                .await?;
            return Ok(ChangeOutcome::Applied {
                changed: applied.changed(),
            });
        }
        // The flag must exist now; the edit is checked again when applied.
        self.store
            .environment_flag_exists(environment, flag)
            .await?;
        let summary = edit.describe(flag);
        let mut tx = self.store.pool().begin().await?;
        let id = sqlx::query_scalar!(
            r#"insert into flag_change (environment_id, flag_name, edit, summary, requested_by,
                                        apply_at, needs_approval, state)
               values ($1, $2, $3, $4, $5, $6, $7, $8)
               returning flag_change_id"#,
            environment.0,
            flag.as_str(),
            Json(&edit) as _,
            summary,
            actor.name,
            apply_at,
            needs_approval,
            if needs_approval {
                "pending"
            } else {
                "approved"
            },
        )
        .fetch_one(&mut *tx)
        .await?;
        AuditRecord::new(actor, "flag.change_requested", origin)
            .target(format!("{flag}"))
            .details(json!({
                "change": id, "environment": environment, "summary": summary,
                "needs_approval": needs_approval, "apply_at": apply_at,
            }))
            .write(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(ChangeOutcome::Waiting {
            id,
            needs_approval,
            apply_at,
        })
    }

    /// Approves, rejects or cancels a waiting change. An approved change whose time has come is
    /// applied at once. Returns what became of it.
    pub async fn decide(
        &self,
        environment: EnvironmentId,
        id: i64,
        decision: Decision,
        actor: Actor,
        origin: &Origin,
    ) -> Result<&'static str, ChangeError> {
        let mut tx = self.store.pool().begin().await?;
        let row = sqlx::query!(
            r#"select state, requested_by, summary, needs_approval, apply_at
               from flag_change where flag_change_id = $1 and environment_id = $2
                 and state in ('pending', 'approved')
               for update"#,
            id,
            environment.0
        )
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(ChangeError::NotFound(id))?;
        let (state, action) = match decision {
            Decision::Approve if row.state != "pending" => return Err(ChangeError::NotFound(id)),
            Decision::Approve if row.requested_by == actor.name => {
                return Err(ChangeError::OwnChange);
            }
            Decision::Approve => ("approved", "flag.change_approved"),
            Decision::Reject => ("rejected", "flag.change_rejected"),
            Decision::Cancel => ("canceled", "flag.change_canceled"),
        };
        sqlx::query!(
            r#"update flag_change set state = $2, decided_by = $3, decided_at = now()
               where flag_change_id = $1"#,
            id,
            state,
            actor.name
        )
        .execute(&mut *tx)
        .await?;
        AuditRecord::new(actor, action, origin)
            .target(format!("flag change {id}"))
            .details(json!({ "before": row.state, "after": state, "summary": row.summary }))
            .write(&mut *tx)
            .await?;
        tx.commit().await?;
        if state == "approved" && row.apply_at.is_none_or(|at| at <= Utc::now()) {
            self.apply_due().await?;
        }
        Ok(state)
    }

    /// The environment's waiting changes, oldest first.
    pub async fn waiting(
        &self,
        environment: EnvironmentId,
    ) -> Result<Vec<WaitingChange>, sqlx::Error> {
        let rows = sqlx::query!(
            r#"select flag_change_id, flag_name, summary, requested_by, requested_at, apply_at,
                      state, decided_by
               from flag_change
               where environment_id = $1 and state in ('pending', 'approved')
               order by requested_at"#,
            environment.0
        )
        .fetch_all(self.store.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| WaitingChange {
                id: r.flag_change_id,
                flag: r.flag_name,
                summary: r.summary,
                requested_by: r.requested_by,
                requested_at: r.requested_at,
                apply_at: r.apply_at,
                needs_approval: r.state == "pending",
                approved_by: r.decided_by,
            })
            .collect())
    }

    /// Applies every approved change whose time has come; returns how many were applied. Each
    /// is applied in the name of the person who asked for it.
    pub async fn apply_due(&self) -> Result<usize, sqlx::Error> {
        let mut applied = 0;
        loop {
            let mut tx = self.store.pool().begin().await?;
            let Some(row) = sqlx::query!(
                r#"select flag_change_id, environment_id, flag_name, requested_by,
                          edit as "edit: Json<EnvironmentEdit>"
                   from flag_change
                   where state = 'approved' and (apply_at is null or apply_at <= now())
                   order by apply_at nulls first, flag_change_id
                   limit 1
                   for update skip locked"#
            )
            .fetch_optional(&mut *tx)
            .await?
            else {
                return Ok(applied);
            };
            let environment = EnvironmentId(row.environment_id);
            let actor = Actor {
                kind: "user",
                id: None,
                name: row.requested_by.clone(),
            };
            let origin = Origin::default();
            let result = match FlagName::parse(&row.flag_name) {
                Ok(flag) => self
                    .store
                    .apply(environment, &flag, row.edit.0, actor, &origin)
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match result {
                Ok(done) => {
                    let version = match &done {
                        Applied::Changed { .. } => done.version_in(environment),
                        Applied::Unchanged => None,
                    };
                    sqlx::query!(
                        r#"update flag_change set state = 'applied', applied_at = now(), applied_version = $2
                           where flag_change_id = $1"#,
                        row.flag_change_id,
                        version
                    )
                    .execute(&mut *tx)
                    .await?;
                    applied += 1;
                }
                Err(problem) => {
                    tracing::warn!(change = row.flag_change_id, %problem, "a waiting flag change no longer applies");
                    sqlx::query!(
                        "update flag_change set state = 'failed', problem = $2 where flag_change_id = $1",
                        row.flag_change_id,
                        problem
                    )
                    .execute(&mut *tx)
                    .await?;
                }
            }
            tx.commit().await?;
        }
    }
}
