//! Flag changes that wait for approvals, for a time, or both.
//!
//! An environment whose protection requires approvals (production in the sample) gets flag
//! changes as requests: `required_approvals` people other than the one who asked, with the
//! environment's roles, approve (each once, each audited), and the change is applied when the
//! last of them approves (or at its time, when it was scheduled). Where too few such people
//! exist, an admin may override with a reason, audited as a security event. Any environment takes
//! scheduled changes. The kill switch never waits: it is the emergency stop.
//!
//! Who may ask, approve or override is [`crate::environment::decide`]; where a change is and what
//! an event does to it is [`ChangeRecord::apply`]; [`save`] is the one place a record is written.
//! A waiting change is an [`EnvironmentEdit`], applied through [`edit::apply`] like any other edit,
//! so it gets the same snapshot and audit entry, in the same transaction as the decision that let
//! it through. Every server runs [`FlagChanges::apply_due`] every second; a due change is locked
//! (`for update skip locked`) while it is applied, so one replica applies it, once.

use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::types::Json;
use sqlx::{Connection, PgConnection};

use super::definition::{EnvironmentEdit, FlagName};
use super::store::{
    Applied, EnvironmentId, FlagError, FlagStore, edit, find_environment, find_flag,
};
use crate::audit::{Actor, AuditRecord, Origin};
use crate::clock::SharedClock;
use crate::environment::{Acting, Action, Permit};
use crate::flag_view::ChangeOutcome;

pub use super::change_state::{
    ChangeEvent, ChangeRecord, ChangeRefusal, ChangeState, Decision, OverrideReason,
    OverrideReasonError,
};

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
    #[error("{0}")]
    NotOpen(ChangeRefusal),
    #[error(transparent)]
    Reason(#[from] OverrideReasonError),
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

impl From<ChangeRefusal> for ChangeError {
    fn from(refusal: ChangeRefusal) -> Self {
        match refusal {
            ChangeRefusal::OwnChange => ChangeError::OwnChange,
            other => ChangeError::NotOpen(other),
        }
    }
}

/// A change that waits, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Waiting {
    pub id: i64,
    pub environment: EnvironmentId,
    pub flag: String,
    pub edit: EnvironmentEdit,
    /// What it does, in words: "smart-reminders on".
    pub summary: String,
    pub requested_at: DateTime<Utc>,
    pub apply_at: Option<DateTime<Utc>>,
    pub record: ChangeRecord,
}

impl Waiting {
    fn due(&self, now: DateTime<Utc>) -> bool {
        self.record.state == ChangeState::Approved && self.apply_at.is_none_or(|at| at <= now)
    }
}

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
        authorize(&mut conn, environment, acting, action).await
    }

    /// Applies `edit` now, or stores it to wait for approvals (where the environment's rules
    /// ask for them) and/or its time (`apply_at`).
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
        let now = self.clock.now();
        if let Some(at) = apply_at
            && (at > now + chrono::Duration::days(MAX_SCHEDULE_DAYS)
                || at < now - chrono::Duration::minutes(5))
        {
            return Err(ChangeError::BadTime(at));
        }
        let mut tx = self.store.pool().begin().await?;
        let permit = authorize(&mut tx, environment, acting, Action::ChangeFlags).await?;
        let later = apply_at.is_some_and(|at| at > now);
        if matches!(edit, EnvironmentEdit::Kill) && later {
            return Err(ChangeError::KillWaits);
        }
        let needs_approval = permit.approvals > 0 && !matches!(edit, EnvironmentEdit::Kill);
        if !needs_approval && !later {
            let applied = edit::apply(&mut tx, environment, flag, edit, actor, origin).await?;
            tx.commit().await?;
            return Ok(ChangeOutcome::Applied {
                changed: applied.changed(),
            });
        }
        // The flag must exist now; the edit is checked again when applied.
        let env = find_environment(&mut tx, environment)
            .await?
            .ok_or(FlagError::UnknownEnvironment(environment))?;
        find_flag(&mut tx, &env.project_key, env.project_id, flag).await?;
        let required = if needs_approval { permit.approvals } else { 0 };
        let summary = edit.describe(flag);
        let id = sqlx::query_scalar!(
            r#"insert into flag_change (environment_id, flag_name, edit, summary, requested_by,
                                        apply_at, required_approvals, state)
               values ($1, $2, $3, $4, $5, $6, $7, $8)
               returning flag_change_id"#,
            environment.0,
            flag.as_str(),
            Json(&edit) as _,
            summary,
            actor.name,
            apply_at,
            i16::from(required),
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
                "required_approvals": required, "apply_at": apply_at,
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

    /// Approves, rejects or cancels a waiting change, audited. The approval that completes the
    /// required number applies the change at once (in the same transaction) when its time has
    /// come. Returns what became of it.
    pub async fn decide(
        &self,
        environment: EnvironmentId,
        id: i64,
        decision: Decision,
        acting: &Acting,
        actor: Actor,
        origin: &Origin,
    ) -> Result<&'static str, ChangeError> {
        let event = ChangeEvent::Decided {
            decision,
            by: actor.name.clone(),
        };
        let action = match decision {
            Decision::Approve => "flag.change_approved",
            Decision::Reject => "flag.change_rejected",
            Decision::Cancel => "flag.change_canceled",
        };
        let audit = AuditRecord::new(actor, action, origin);
        self.move_change(environment, id, acting, Action::Approve, event, audit)
            .await
    }

    /// Lets a pending change through without the approvals it waits for: an admin's, with a
    /// reason, audited as a security event (`flag.change_overridden`). Applied at once when its
    /// time has come.
    #[allow(clippy::too_many_arguments)]
    pub async fn override_approvals(
        &self,
        environment: EnvironmentId,
        id: i64,
        reason: &str,
        acting: &Acting,
        actor: Actor,
        origin: &Origin,
    ) -> Result<&'static str, ChangeError> {
        let reason = OverrideReason::parse(reason)?;
        let event = ChangeEvent::Overridden {
            by: actor.name.clone(),
            reason,
        };
        let audit = AuditRecord::new(actor, "flag.change_overridden", origin).security();
        self.move_change(
            environment,
            id,
            acting,
            Action::OverrideApprovals,
            event,
            audit,
        )
        .await
    }

    /// A person's event on a waiting change, in one transaction: the rule, the record's move,
    /// its audit entry, and applying it if that made it due.
    async fn move_change(
        &self,
        environment: EnvironmentId,
        id: i64,
        acting: &Acting,
        action: Action,
        event: ChangeEvent,
        audit: AuditRecord,
    ) -> Result<&'static str, ChangeError> {
        let now = self.clock.now();
        let mut tx = self.store.pool().begin().await?;
        authorize(&mut tx, environment, acting, action).await?;
        let change = load(&mut tx, id)
            .await?
            .filter(|c| c.environment == environment && c.record.state.is_open())
            .ok_or(ChangeError::NotFound(id))?;
        let next = change.record.apply(&event, now)?;
        if next == change.record {
            return Ok(next.state.as_str());
        }
        save(&mut tx, id, &next).await?;
        audit
            .target(format!("flag change {id}"))
            .details(json!({
                "before": change.record.state, "after": next.state, "summary": change.summary,
                "flag": change.flag, "environment": environment,
                "approvals": next.approved_by, "required_approvals": next.required_approvals,
                "reason": next.override_reason,
            }))
            .write(&mut *tx)
            .await?;
        let change = Waiting {
            record: next,
            ..change
        };
        let state = if change.due(now) {
            apply(&mut tx, &change, now).await?
        } else {
            change.record.state
        };
        tx.commit().await?;
        Ok(state.as_str())
    }

    /// The environment's waiting changes, oldest first.
    pub async fn waiting(&self, environment: EnvironmentId) -> Result<Vec<Waiting>, sqlx::Error> {
        let rows = sqlx::query_as!(
            Row,
            r#"select flag_change_id, environment_id, flag_name,
                      edit as "edit: Json<EnvironmentEdit>", summary, requested_at, apply_at,
                      state as "state: ChangeState", requested_by, required_approvals,
                      approved_by, decided_by, decided_at, applied_at, applied_version, problem,
                      overridden_by, override_reason
               from flag_change
               where environment_id = $1 and state in ('pending', 'approved')
               order by requested_at, flag_change_id"#,
            environment.0
        )
        .fetch_all(self.store.pool())
        .await?;
        Ok(rows.into_iter().map(Row::into_waiting).collect())
    }

    /// Applies every approved change whose time has come; returns how many were applied. Each
    /// is applied in the name of the person who asked for it.
    pub async fn apply_due(&self) -> Result<usize, sqlx::Error> {
        let mut applied = 0;
        let now = self.clock.now();
        loop {
            let mut tx = self.store.pool().begin().await?;
            let Some(id) = sqlx::query_scalar!(
                r#"select flag_change_id from flag_change
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
            let change = load(&mut tx, id)
                .await?
                .expect("the change was just locked");
            if apply(&mut tx, &change, now).await? == ChangeState::Applied {
                applied += 1;
            }
            tx.commit().await?;
        }
    }
}

async fn authorize(
    conn: &mut PgConnection,
    environment: EnvironmentId,
    acting: &Acting,
    action: Action,
) -> Result<Permit, ChangeError> {
    let environment = crate::environment::find_by_id(conn, environment).await?;
    Ok(environment.decide(acting, action)?)
}

/// Applies a due change in the caller's transaction, in the name of the person who asked, and
/// records the outcome: applied (with its snapshot), or failed when the edit no longer applies
/// (what the edit wrote on the way is taken back). Returns the change's new state.
async fn apply(
    conn: &mut PgConnection,
    change: &Waiting,
    now: DateTime<Utc>,
) -> Result<ChangeState, sqlx::Error> {
    let actor = Actor {
        kind: "user",
        id: None,
        name: change.record.requested_by.clone(),
    };
    let mut attempt = conn.begin().await?;
    let result = match FlagName::parse(&change.flag) {
        Ok(flag) => edit::apply(
            &mut attempt,
            change.environment,
            &flag,
            change.edit.clone(),
            actor,
            &Origin::default(),
        )
        .await
        .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let event = match result {
        Ok(done) => {
            attempt.commit().await?;
            ChangeEvent::Applied {
                version: match &done {
                    Applied::Changed { .. } => done.version_in(change.environment),
                    Applied::Unchanged => None,
                },
            }
        }
        Err(problem) => {
            attempt.rollback().await?;
            tracing::warn!(change = change.id, %problem, "a waiting flag change no longer applies");
            ChangeEvent::NoLongerApplies { problem }
        }
    };
    match change.record.apply(&event, now) {
        Ok(next) => {
            save(conn, change.id, &next).await?;
            Ok(next.state)
        }
        Err(refusal) => {
            tracing::error!(change = change.id, %refusal, "a due flag change moved on meanwhile");
            Ok(change.record.state)
        }
    }
}

/// A change as stored, one flat row.
struct Row {
    flag_change_id: i64,
    environment_id: uuid::Uuid,
    flag_name: String,
    edit: Json<EnvironmentEdit>,
    summary: String,
    requested_at: DateTime<Utc>,
    apply_at: Option<DateTime<Utc>>,
    state: ChangeState,
    requested_by: String,
    required_approvals: i16,
    approved_by: Vec<String>,
    decided_by: Option<String>,
    decided_at: Option<DateTime<Utc>>,
    applied_at: Option<DateTime<Utc>>,
    applied_version: Option<i64>,
    problem: Option<String>,
    overridden_by: Option<String>,
    override_reason: Option<String>,
}

impl Row {
    fn into_waiting(self) -> Waiting {
        Waiting {
            id: self.flag_change_id,
            environment: EnvironmentId(self.environment_id),
            flag: self.flag_name,
            edit: self.edit.0,
            summary: self.summary,
            requested_at: self.requested_at,
            apply_at: self.apply_at,
            record: ChangeRecord {
                state: self.state,
                requested_by: self.requested_by,
                required_approvals: self.required_approvals,
                approved_by: self.approved_by,
                decided_by: self.decided_by,
                decided_at: self.decided_at,
                applied_at: self.applied_at,
                applied_version: self.applied_version,
                problem: self.problem,
                overridden_by: self.overridden_by,
                override_reason: self.override_reason,
            },
        }
    }
}

/// A change, locked until the transaction ends.
async fn load(conn: &mut PgConnection, id: i64) -> Result<Option<Waiting>, sqlx::Error> {
    let row = sqlx::query_as!(
        Row,
        r#"select flag_change_id, environment_id, flag_name,
                  edit as "edit: Json<EnvironmentEdit>", summary, requested_at, apply_at,
                  state as "state: ChangeState", requested_by, required_approvals, approved_by,
                  decided_by, decided_at, applied_at, applied_version, problem,
                  overridden_by, override_reason
           from flag_change where flag_change_id = $1
           for update"#,
        id
    )
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(Row::into_waiting))
}

/// The one place a change's record is written.
async fn save(conn: &mut PgConnection, id: i64, record: &ChangeRecord) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"update flag_change set state = $2, decided_by = $3, decided_at = $4, applied_at = $5,
                  applied_version = $6, problem = $7, approved_by = $8, overridden_by = $9,
                  override_reason = $10
           where flag_change_id = $1"#,
        id,
        record.state as ChangeState,
        record.decided_by,
        record.decided_at,
        record.applied_at,
        record.applied_version,
        record.problem,
        &record.approved_by,
        record.overridden_by,
        record.override_reason,
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}
