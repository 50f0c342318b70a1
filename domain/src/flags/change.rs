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

use crate::clock::SharedClock;
use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::types::Json;

use super::definition::{EnvironmentEdit, FlagName};
use super::store::{Applied, EnvironmentId, FlagError, FlagStore};
use crate::audit::{Actor, AuditRecord, Origin};
use crate::environment::{Acting, Action, Permit};
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
    #[error("{0}")]
    Refused(#[from] crate::environment::Refusal),
    #[error(transparent)]
    Environment(#[from] crate::environment::EnvironmentError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

pub use super::change_state::{ChangeEvent, ChangeRecord, ChangeRefusal, ChangeState, Decision};

pub struct FlagChanges<'a> {
    store: &'a FlagStore,
    clock: SharedClock,
}

impl<'a> FlagChanges<'a> {
    pub fn new(store: &'a FlagStore) -> Self {
        FlagChanges {
            store,
            clock: crate::clock::system(),
        }
    }

    /// The same service reading time from `clock` (when a scheduled change is due).
    pub fn with_clock(self, clock: SharedClock) -> Self {
        FlagChanges { clock, ..self }
    }

    /// Whether `acting` may do `action` to this environment's flags, by the environment's rules
    /// in the current definition ([`crate::environment::decide`]): every adapter comes here.
    pub async fn authorize(
        &self,
        environment: EnvironmentId,
        acting: &Acting,
        action: Action,
    ) -> Result<Permit, ChangeError> {
        let mut conn = self.store.pool().acquire().await?;
        let environment = crate::environment::find_by_id(&mut conn, environment).await?;
        Ok(environment.decide(acting, action)?)
    }

    /// Applies `edit` now, or stores it to wait for an approval (where the environment's rules
    /// ask for one) and/or its time (`apply_at`).
    #[allow(clippy::too_many_arguments)]
    pub async fn request(
        &self,
        environment: EnvironmentId,
        flag: &FlagName,
        edit: EnvironmentEdit,
        acting: &Acting,
        apply_at: Option<DateTime<Utc>>,
        actor: Actor,
        origin: &Origin,
    ) -> Result<ChangeOutcome, ChangeError> {
        let permit = self
            .authorize(environment, acting, Action::ChangeFlags)
            .await?;
        let needs_approval = permit.approvals > 0;
        let now = self.clock.now();
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
                ChangeState::Pending
            } else {
                ChangeState::Approved
            } as ChangeState,
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
        acting: &Acting,
        actor: Actor,
        origin: &Origin,
    ) -> Result<&'static str, ChangeError> {
        self.authorize(environment, acting, Action::Approve).await?;
        let now = self.clock.now();
        let mut tx = self.store.pool().begin().await?;
        let row = sqlx::query!(
            r#"select summary, apply_at from flag_change
               where flag_change_id = $1 and environment_id = $2"#,
            id,
            environment.0
        )
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(ChangeError::NotFound(id))?;
        let record = load(&mut tx, id).await?;
        if !record.state.is_open() {
            return Err(ChangeError::NotFound(id));
        }
        let next = record
            .apply(
                &ChangeEvent::Decided {
                    decision,
                    by: actor.name.clone(),
                },
                now,
            )
            .map_err(|refusal| match refusal {
                ChangeRefusal::OwnChange => ChangeError::OwnChange,
                ChangeRefusal::NotOpen(..) => ChangeError::NotFound(id),
            })?;
        save(&mut tx, id, &next).await?;
        let action = match decision {
            Decision::Approve => "flag.change_approved",
            Decision::Reject => "flag.change_rejected",
            Decision::Cancel => "flag.change_canceled",
        };
        AuditRecord::new(actor, action, origin)
            .target(format!("flag change {id}"))
            .details(json!({ "before": record.state, "after": next.state, "summary": row.summary }))
            .write(&mut *tx)
            .await?;
        tx.commit().await?;
        if next.state == ChangeState::Approved && row.apply_at.is_none_or(|at| at <= now) {
            self.apply_due().await?;
        }
        Ok(next.state.as_str())
    }

    /// The environment's waiting changes, oldest first.
    pub async fn waiting(
        &self,
        environment: EnvironmentId,
    ) -> Result<Vec<WaitingChange>, sqlx::Error> {
        let rows = sqlx::query!(
            r#"select flag_change_id, flag_name, summary, requested_by, requested_at, apply_at,
                      state as "state: ChangeState", decided_by
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
                needs_approval: r.state == ChangeState::Pending,
                approved_by: r.decided_by,
            })
            .collect())
    }

    /// Applies every approved change whose time has come; returns how many were applied. Each
    /// is applied in the name of the person who asked for it.
    pub async fn apply_due(&self) -> Result<usize, sqlx::Error> {
        let mut applied = 0;
        let now = self.clock.now();
        loop {
            let mut tx = self.store.pool().begin().await?;
            let Some(row) = sqlx::query!(
                r#"select flag_change_id, environment_id, flag_name, requested_by,
                          edit as "edit: Json<EnvironmentEdit>"
                   from flag_change
                   where state = 'approved' and (apply_at is null or apply_at <= $1)
                   order by apply_at nulls first, flag_change_id
                   limit 1
                   for update skip locked"#,
                now
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
            let record = load(&mut tx, row.flag_change_id).await?;
            let event = match result {
                Ok(done) => {
                    applied += 1;
                    ChangeEvent::Applied {
                        version: match &done {
                            Applied::Changed { .. } => done.version_in(environment),
                            Applied::Unchanged => None,
                        },
                    }
                }
                Err(problem) => {
                    tracing::warn!(change = row.flag_change_id, %problem, "a waiting flag change no longer applies");
                    ChangeEvent::NoLongerApplies { problem }
                }
            };
            match record.apply(&event, now) {
                Ok(next) => save(&mut tx, row.flag_change_id, &next).await?,
                Err(refusal) => {
                    tracing::error!(change = row.flag_change_id, %refusal, "a due flag change moved on meanwhile")
                }
            }
            tx.commit().await?;
        }
    }
}

/// A change's record, locked until the transaction ends.
async fn load(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    id: i64,
) -> Result<ChangeRecord, sqlx::Error> {
    sqlx::query_as!(
        ChangeRecord,
        r#"select state as "state: ChangeState", requested_by, decided_by, decided_at, applied_at,
                  applied_version, problem
           from flag_change where flag_change_id = $1 for update"#,
        id
    )
    .fetch_one(&mut **tx)
    .await
}

/// The one place a change's record is written.
async fn save(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    id: i64,
    record: &ChangeRecord,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"update flag_change set state = $2, decided_by = $3, decided_at = $4, applied_at = $5,
                  applied_version = $6, problem = $7
           where flag_change_id = $1"#,
        id,
        record.state as ChangeState,
        record.decided_by,
        record.decided_at,
        record.applied_at,
        record.applied_version,
        record.problem,
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}
