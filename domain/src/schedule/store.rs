//! Schedule ticks in the database: finding what is due, claiming it, acting, recording the
//! outcome (see the module above for the rules), and what the overview shows of them.

use super::{Due, LATE_AFTER, TickOutcome, due, idempotency_key};
use crate::audit::{Actor, AuditRecord, Origin, Outcome};
use crate::definition::{Definition, Schedule, ScheduleAction};
use crate::deployment::DeploymentError;
use crate::deployment::DeploymentTrigger;
use crate::deployment::store::{PromoteRequest, Promoted, ReleaseChoice, newest_eligible, promote};
use crate::environment::Acting;
use crate::overview::TickView;
use crate::portal::Portal;
use crate::run::store::Trigger;
use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::{PgConnection, PgPool};
use std::collections::{HashMap, HashSet};
use uuid::Uuid;

/// A tick this replica claimed (or recorded as missed) in one pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fired {
    pub project: String,
    pub schedule: String,
    pub due_at: DateTime<Utc>,
    pub outcome: TickOutcome,
    pub detail: Option<String>,
}

/// What one pass did, and when the next tick of any schedule is due.
#[derive(Debug, Default)]
pub struct Pass {
    pub fired: Vec<Fired>,
    pub next: Option<DateTime<Utc>>,
}

/// One scheduler pass at the portal's clock's `now`, as replica `replica`: every due tick of
/// every project's current definition is claimed (by one replica only), acted on and recorded.
pub async fn fire_due(portal: &Portal, replica: Uuid) -> Result<Pass, sqlx::Error> {
    let now = portal.clock.now();
    let projects = sqlx::query!(
        "select project_id, project_key from project where current_definition_version_id is not null"
    )
    .fetch_all(&portal.pool)
    .await?;
    let mut pass = Pass::default();
    for project in projects {
        let Some(definition) =
            crate::project::current_definition(&portal.pool, &project.project_key).await?
        else {
            continue;
        };
        let paused: HashMap<String, String> = sqlx::query!(
            "select schedule_name, paused_by from schedule_pause where project_id = $1",
            project.project_id
        )
        .fetch_all(&portal.pool)
        .await?
        .into_iter()
        .map(|p| (p.schedule_name, p.paused_by))
        .collect();
        for schedule in definition.schedules() {
            let after = after(&portal.pool, project.project_id, schedule, now).await?;
            let Due { fire, missed } = due(schedule, after, now);
            let project_ref = ProjectRef {
                id: project.project_id,
                key: &project.project_key,
                definition: &definition,
            };
            for due_at in &missed {
                if record_missed(&portal.pool, &project_ref, schedule, *due_at, now).await? {
                    pass.fired.push(Fired {
                        project: project.project_key.clone(),
                        schedule: schedule.name.to_string(),
                        due_at: *due_at,
                        outcome: TickOutcome::Missed,
                        detail: None,
                    });
                }
            }
            if let Some(due_at) = fire {
                let tick = Tick {
                    project: project_ref,
                    schedule,
                    due_at,
                    now,
                    replica,
                    missed: missed.len(),
                };
                if let Some(fired) = tick
                    .fire(portal, paused.get(schedule.name.as_str()))
                    .await?
                {
                    pass.fired.push(fired);
                }
            }
        }
        pass.next = [pass.next, super::next_instant(definition.schedules(), now)]
            .into_iter()
            .flatten()
            .min();
    }
    Ok(pass)
}

struct ProjectRef<'a> {
    id: Uuid,
    key: &'a str,
    definition: &'a Definition,
}

/// Ticks are due after this: the newest recorded tick, or when a scheduler first saw the
/// schedule (recorded now if none has).
async fn after(
    pool: &PgPool,
    project_id: Uuid,
    schedule: &Schedule,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, sqlx::Error> {
    sqlx::query!(
        "insert into schedule_since (project_id, schedule_name, since) values ($1, $2, $3)
         on conflict do nothing",
        project_id,
        schedule.name.as_str(),
        now
    )
    .execute(pool)
    .await?;
    sqlx::query_scalar!(
        r#"select coalesce(
             (select max(due_at) from schedule_tick where project_id = $1 and schedule_name = $2),
             (select since from schedule_since where project_id = $1 and schedule_name = $2)
           ) as "after!""#,
        project_id,
        schedule.name.as_str()
    )
    .fetch_one(pool)
    .await
}

/// Records a tick every server was down for; false when another replica recorded it first.
async fn record_missed(
    pool: &PgPool,
    project: &ProjectRef<'_>,
    schedule: &Schedule,
    due_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query!(
        "insert into schedule_tick (project_id, schedule_name, due_at, outcome, detail, fired_at, lateness_ms)
         values ($1, $2, $3, 'missed', 'every server was down; a later tick fired instead', $4, $5)
         on conflict do nothing",
        project.id,
        schedule.name.as_str(),
        due_at,
        now,
        (now - due_at).num_milliseconds()
    )
    .execute(pool)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

/// One tick to fire.
struct Tick<'a> {
    project: ProjectRef<'a>,
    schedule: &'a Schedule,
    due_at: DateTime<Utc>,
    now: DateTime<Utc>,
    replica: Uuid,
    /// Older ticks recorded as missed in the same pass.
    missed: usize,
}

/// What an action did, before it is saved.
struct Acted {
    outcome: TickOutcome,
    detail: String,
    number: Option<i64>,
}

impl Tick<'_> {
    fn lateness(&self) -> chrono::Duration {
        self.now - self.due_at
    }

    fn actor_name(&self) -> String {
        format!("schedule:{}", self.schedule.name)
    }

    /// Claims the tick; if this replica got it, acts and records the outcome.
    async fn fire(
        &self,
        portal: &Portal,
        paused_by: Option<&String>,
    ) -> Result<Option<Fired>, sqlx::Error> {
        let (outcome, detail) = match paused_by {
            Some(by) => (TickOutcome::SkippedPaused, Some(format!("paused by {by}"))),
            None => (TickOutcome::Claimed, None),
        };
        let claimed = sqlx::query_scalar!(
            "insert into schedule_tick (project_id, schedule_name, due_at, outcome, detail, fired_by, fired_at, lateness_ms)
             values ($1, $2, $3, $4, $5, $6, $7, $8)
             on conflict do nothing returning due_at",
            self.project.id,
            self.schedule.name.as_str(),
            self.due_at,
            outcome.as_str(),
            detail,
            self.replica,
            self.now,
            self.lateness().num_milliseconds()
        )
        .fetch_optional(&portal.pool)
        .await?;
        if claimed.is_none() {
            return Ok(None);
        }
        if outcome == TickOutcome::SkippedPaused {
            return Ok(Some(self.fired(outcome, detail)));
        }
        let result = match self.act(portal).await {
            Ok(result) => result,
            Err(error) => Acted {
                outcome: TickOutcome::Failed,
                detail: error,
                number: None,
            },
        };
        self.record(&portal.pool, &result).await?;
        Ok(Some(self.fired(result.outcome, Some(result.detail))))
    }

    fn fired(&self, outcome: TickOutcome, detail: Option<String>) -> Fired {
        Fired {
            project: self.project.key.to_string(),
            schedule: self.schedule.name.to_string(),
            due_at: self.due_at,
            outcome,
            detail,
        }
    }

    /// Starts the schedule's action. `Err` is a failure, in words.
    async fn act(&self, portal: &Portal) -> Result<Acted, String> {
        let name = self.actor_name();
        let actor = Actor {
            kind: "system",
            id: None,
            name: name.clone(),
        };
        let key = idempotency_key(self.schedule.name.as_str(), self.due_at);
        match &self.schedule.action {
            ScheduleAction::Promote { environment } => {
                let environment = environment.as_str();
                if let Some(version) = self
                    .already_current(&portal.pool, environment)
                    .await
                    .map_err(|e| e.to_string())?
                {
                    return Ok(nothing(format!("{version} already runs in {environment}")));
                }
                let request = PromoteRequest {
                    project: self.project.key.to_string(),
                    environment: environment.to_string(),
                    release: ReleaseChoice::NewestEligible,
                    acting: Acting::Operator { name },
                    actor,
                    trigger: DeploymentTrigger::Schedule,
                    idempotency_key: Some(key),
                };
                match promote(&portal.pool, &request, &Origin::default(), self.now).await {
                    Ok(Promoted::Started(created)) => Ok(Acted {
                        outcome: TickOutcome::Started,
                        detail: format!(
                            "deployment #{} of {} to {environment}",
                            created.number, created.version
                        ),
                        number: Some(created.number),
                    }),
                    Ok(Promoted::AlreadyCurrent { version }) => {
                        Ok(nothing(format!("{version} already runs in {environment}")))
                    }
                    Err(DeploymentError::NothingEligible { why, .. }) => {
                        Ok(nothing(format!("nothing eligible: {why}")))
                    }
                    Err(DeploymentError::Busy {
                        environment,
                        number,
                        version,
                    }) => Ok(nothing(format!(
                        "deployment #{number} of {version} is still under way in {environment}"
                    ))),
                    Err(error) => Err(error.to_string()),
                }
            }
            ScheduleAction::Run { branch } => portal
                .runs
                .start(
                    self.project.key,
                    branch,
                    None,
                    Trigger::Schedule,
                    actor,
                    &Origin::default(),
                    Some(&key),
                )
                .await
                .map(|created| Acted {
                    outcome: TickOutcome::Started,
                    detail: format!("run #{} of {branch}", created.number),
                    number: Some(created.number),
                })
                .map_err(|e| e.to_string()),
        }
    }

    /// The version running in `environment`, when it is the newest eligible one (then a
    /// promotion would deploy it again).
    async fn already_current(
        &self,
        pool: &PgPool,
        environment: &str,
    ) -> Result<Option<String>, sqlx::Error> {
        let mut conn = pool.acquire().await?;
        let Ok((release_id, version)) = newest_eligible(
            &mut conn,
            self.project.id,
            self.project.definition,
            environment,
        )
        .await?
        else {
            return Ok(None);
        };
        let current = sqlx::query_scalar!(
            "select current_release_id from environment where project_id = $1 and name = $2",
            self.project.id,
            environment
        )
        .fetch_optional(&mut *conn)
        .await?
        .flatten();
        Ok((current == Some(release_id)).then_some(version))
    }

    /// Saves the outcome, with the alert (an audit entry) in the same transaction when the tick
    /// was late or failed.
    async fn record(&self, pool: &PgPool, result: &Acted) -> Result<(), sqlx::Error> {
        let late = self.lateness() > LATE_AFTER;
        let failed = result.outcome == TickOutcome::Failed;
        let mut tx = pool.begin().await?;
        sqlx::query!(
            "update schedule_tick set outcome = $4, detail = $5, started_number = $6, alerted = $7
             where project_id = $1 and schedule_name = $2 and due_at = $3",
            self.project.id,
            self.schedule.name.as_str(),
            self.due_at,
            result.outcome.as_str(),
            result.detail,
            result.number,
            late || failed
        )
        .execute(&mut *tx)
        .await?;
        if late || failed {
            alert(&mut tx, self, result, failed).await?;
        }
        tx.commit().await
    }
}

fn nothing(detail: String) -> Acted {
    Acted {
        outcome: TickOutcome::NothingToDo,
        detail,
        number: None,
    }
}

async fn alert(
    conn: &mut PgConnection,
    tick: &Tick<'_>,
    result: &Acted,
    failed: bool,
) -> Result<(), sqlx::Error> {
    let actor = Actor {
        kind: "system",
        id: None,
        name: tick.actor_name(),
    };
    let action = if failed {
        "schedule.failed"
    } else {
        "schedule.late"
    };
    AuditRecord::new(actor, action, &Origin::default())
        .outcome(if failed { Outcome::Failed } else { Outcome::Ok })
        .target(format!("{}/{}", tick.project.key, tick.schedule.name))
        .details(json!({
            "due_at": tick.due_at,
            "fired_at": tick.now,
            "lateness_seconds": tick.lateness().num_seconds(),
            "missed_before": tick.missed,
            "outcome": result.outcome.as_str(),
            "detail": result.detail,
        }))
        .write(&mut *conn)
        .await
}

/// The newest tick of each of a project's schedules, as the overview shows it.
pub async fn last_ticks(
    pool: &PgPool,
    project_id: Uuid,
) -> Result<HashMap<String, TickView>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"select distinct on (schedule_name) schedule_name, due_at, outcome, detail, lateness_ms, alerted,
                  (select count(*) from schedule_tick m where m.project_id = t.project_id
                     and m.schedule_name = t.schedule_name and m.outcome = 'missed'
                     and m.fired_at = t.fired_at) as "missed_with!"
           from schedule_tick t where project_id = $1 and outcome <> 'missed'
           order by schedule_name, due_at desc"#,
        project_id
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            (
                r.schedule_name,
                TickView {
                    due_at: r.due_at,
                    outcome: r.outcome,
                    detail: r.detail,
                    lateness_seconds: r.lateness_ms / 1000,
                    alerted: r.alerted,
                    missed_before: r.missed_with,
                },
            )
        })
        .collect())
}

/// What each schedule would do if it fired now: "promotes 2026.12.03-4 to staging", "nothing
/// eligible: …", "starts a run of main".
pub async fn would_do(
    pool: &PgPool,
    project_id: Uuid,
    definition: &Definition,
    paused: &HashSet<String>,
) -> Result<HashMap<String, String>, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let mut out = HashMap::new();
    for schedule in definition.schedules() {
        let text = match &schedule.action {
            _ if paused.contains(schedule.name.as_str()) => {
                "nothing: the schedule is paused".into()
            }
            ScheduleAction::Run { branch } => format!("starts a run of {branch}"),
            ScheduleAction::Promote { environment } => {
                match newest_eligible(&mut conn, project_id, definition, environment.as_str())
                    .await?
                {
                    Ok((release_id, version)) => {
                        let current = sqlx::query_scalar!(
                            "select current_release_id from environment where project_id = $1 and name = $2",
                            project_id,
                            environment.as_str()
                        )
                        .fetch_optional(&mut *conn)
                        .await?
                        .flatten();
                        if current == Some(release_id) {
                            format!("nothing: {version} already runs in {environment}")
                        } else {
                            format!("promotes {version} to {environment}")
                        }
                    }
                    Err(why) => format!("nothing eligible: {why}"),
                }
            }
        };
        out.insert(schedule.name.to_string(), text);
    }
    Ok(out)
}
