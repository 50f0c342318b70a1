//! What people decide on a deployment's stages: approve or reject (a gate, or a protected deploy
//! that waits for approvals), tick a checklist item, fail a manual stage with a note, pass or
//! fail a check that measured nothing, let a deploy start outside its window. Each is one
//! transaction — the deployment's row lock first — with its audit entry; who may is asked of
//! [`crate::environment::decide`]; the stage's record moves through its pure `apply`.

use super::record::StageEvent;
use super::store::{self, StageRow};
use super::{DeploymentError, DeploymentId, StageSpec};
use crate::audit::{Actor, AuditRecord, Origin, Outcome};
use crate::environment::{self, Acting, Action, Refusal};
use crate::role::Role;
use crate::state::RunState;
use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// A decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Approve {
        comment: Option<String>,
    },
    Reject {
        comment: String,
    },
    Tick {
        item: i32,
    },
    Untick {
        item: i32,
    },
    /// A manual stage that failed (with the note), or a check failed by hand (with the reason).
    Fail {
        comment: String,
    },
    /// A check that could not measure anything, passed by hand (with the reason).
    Pass {
        comment: String,
    },
    OverrideWindow {
        reason: String,
    },
}

impl Decision {
    fn kind(&self) -> &'static str {
        match self {
            Decision::Approve { .. } => "approve",
            Decision::Reject { .. } => "reject",
            Decision::Tick { .. } => "tick",
            Decision::Untick { .. } => "untick",
            Decision::Fail { .. } => "fail",
            Decision::Pass { .. } => "pass",
            Decision::OverrideWindow { .. } => "override-window",
        }
    }

    fn comment(&self) -> Option<&str> {
        match self {
            Decision::Approve { comment } => comment.as_deref(),
            Decision::Reject { comment }
            | Decision::Fail { comment }
            | Decision::Pass { comment } => Some(comment),
            Decision::OverrideWindow { reason } => Some(reason),
            Decision::Tick { .. } | Decision::Untick { .. } => None,
        }
    }
}

const MAX_COMMENT: usize = 2000;

/// Checks a decision's words before anything is read.
fn validate(decision: &Decision) -> Result<(), DeploymentError> {
    if let Some(comment) = decision.comment()
        && comment.chars().count() > MAX_COMMENT
    {
        return Err(DeploymentError::BadInput(format!(
            "the comment is {} characters long; the most is {MAX_COMMENT}",
            comment.chars().count()
        )));
    }
    let needs_words = match decision {
        Decision::Reject { comment } => Some(("rejecting", comment)),
        Decision::Fail { comment } => Some(("failing a stage", comment)),
        Decision::Pass { comment } => Some(("passing a check by hand", comment)),
        Decision::OverrideWindow { reason } => Some(("deploying outside the window", reason)),
        _ => None,
    };
    if let Some((what, words)) = needs_words
        && words.trim().is_empty()
    {
        return Err(DeploymentError::BadInput(format!(
            "{what} needs a comment that says why"
        )));
    }
    Ok(())
}

/// Records `decision` on `stage` of deployment `number` by `acting`, and moves the stage when
/// it completes it (the Nth approval, the last tick, a rejection).
#[allow(clippy::too_many_arguments)]
pub async fn decide(
    pool: &PgPool,
    project: &str,
    number: i64,
    stage: &str,
    decision: Decision,
    acting: &Acting,
    actor: &Actor,
    origin: &Origin,
    now: DateTime<Utc>,
) -> Result<(), DeploymentError> {
    validate(&decision)?;
    let mut tx = pool.begin().await?;
    let id = sqlx::query_scalar!(
        r#"select d.deployment_id from deployment d join project p using (project_id)
           where p.project_key = $1 and d.number = $2"#,
        project,
        number
    )
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| DeploymentError::UnknownDeployment {
        project: project.to_string(),
        number,
    })?;
    let deployment = store::lock(&mut tx, DeploymentId(id)).await?;
    let stages = store::load_stages(&mut tx, deployment.id).await?;
    let row = stages
        .iter()
        .find(|s| s.name == stage)
        .ok_or_else(|| DeploymentError::UnknownStage {
            number,
            stage: stage.to_string(),
        })?
        .clone();
    if row.record.state.is_finished() {
        return Err(DeploymentError::NotNow(format!(
            "{} is {} already",
            row.title,
            row.record.state.as_str()
        )));
    }
    if let Some(earlier) = stages
        .iter()
        .find(|s| s.position < row.position && !s.record.state.is_finished())
    {
        return Err(DeploymentError::NotNow(format!(
            "{} comes after {}, which is not finished",
            row.title, earlier.title
        )));
    }
    let env = environment::find(&mut tx, &deployment.project, &deployment.environment).await?;
    let action = match (&row.spec, &decision) {
        (StageSpec::Gate { role, .. }, Decision::Approve { .. } | Decision::Reject { .. }) => {
            Action::DecideGate(*role)
        }
        (StageSpec::Deploy { .. }, Decision::Approve { .. } | Decision::Reject { .. }) => {
            Action::Approve
        }
        (StageSpec::Deploy { .. }, Decision::OverrideWindow { .. }) => Action::OverrideWindow,
        (
            StageSpec::Manual { .. },
            Decision::Tick { .. } | Decision::Untick { .. } | Decision::Fail { .. },
        ) => Action::TickChecklist,
        (StageSpec::Check { .. }, Decision::Pass { .. } | Decision::Fail { .. }) => {
            Action::JudgeCheck
        }
        (spec, decision) => {
            return Err(DeploymentError::NotNow(format!(
                "a {} stage takes no `{}` decision",
                spec.kind(),
                decision.kind()
            )));
        }
    };
    env.decide(acting, action)?;
    // A decision at a gate by someone close to the release: refused, or (an admin where the
    // gate allows it) recorded as such and audited as security.
    let own_release = match &row.spec {
        StageSpec::Gate {
            admins_decide_own_releases,
            ..
        } => {
            let ownership = Ownership::of(
                &mut tx,
                deployment.release_id,
                &deployment.triggered_by,
                acting,
            )
            .await?;
            if let Some(reason) = ownership.refusal(acting, *admins_decide_own_releases) {
                // Separation of duties held: a security event, written outside the transaction
                // that the refusal rolls back.
                drop(tx);
                AuditRecord::new(actor.clone(), "deployment.decision_refused", origin)
                    .outcome(Outcome::Denied)
                    .security()
                    .target(format!(
                        "{}/{}#{}",
                        deployment.project, deployment.environment, deployment.number
                    ))
                    .details(json!({ "stage": row.name, "reason": reason }))
                    .write(pool)
                    .await?;
                return Err(DeploymentError::Refused(Refusal {
                    who: acting.name().to_string(),
                    what: "approve or reject at this gate",
                    environment: deployment.environment.clone(),
                    reason,
                    allowed: "someone who neither deployed nor wrote the release".into(),
                }));
            }
            ownership.owns()
        }
        _ => false,
    };
    let who = acting.name().to_string();
    let event = match (&row.spec, &decision) {
        (StageSpec::Gate { approvals, .. }, Decision::Approve { .. }) => {
            approve(&mut tx, &row, &who, &decision, now).await?;
            let given = approvals_of(&mut tx, &row).await?;
            (given.len() >= usize::from(*approvals))
                .then(|| StageEvent::Succeed(Some(format!("approved by {}", given.join(", ")))))
        }
        (StageSpec::Deploy { .. }, Decision::Approve { .. }) => {
            if row.record.state != RunState::Waiting {
                return Err(DeploymentError::NotNow(format!(
                    "{} is not waiting for approvals",
                    row.title
                )));
            }
            if who == deployment.triggered_by {
                return Err(DeploymentError::NotNow(format!(
                    "{who} asked for this deployment, so someone else approves it"
                )));
            }
            approve(&mut tx, &row, &who, &decision, now).await?;
            // The deployer sees the approvals and goes on.
            None
        }
        (_, Decision::Reject { comment }) => {
            record(&mut tx, &row, &who, &decision, now).await?;
            Some(StageEvent::Fail(format!("rejected by {who}: {comment}")))
        }
        (StageSpec::Manual { .. }, Decision::Tick { item } | Decision::Untick { item }) => {
            let items = row.outcome["items"].as_array().map_or(0, |a| a.len()) as i32;
            if *item < 1 || *item > items {
                return Err(DeploymentError::BadInput(format!(
                    "{} has items 1 to {items}; there is no item {item}",
                    row.title
                )));
            }
            record(&mut tx, &row, &who, &decision, now).await?;
            let ticked = ticked_items(&mut tx, &row).await?;
            (ticked.len() as i32 == items)
                .then(|| StageEvent::Succeed(Some(format!("all {items} items ticked"))))
        }
        (StageSpec::Manual { .. } | StageSpec::Check { .. }, Decision::Fail { comment }) => {
            record(&mut tx, &row, &who, &decision, now).await?;
            Some(StageEvent::Fail(format!("failed by {who}: {comment}")))
        }
        (StageSpec::Check { .. }, Decision::Pass { comment }) => {
            record(&mut tx, &row, &who, &decision, now).await?;
            Some(StageEvent::Succeed(Some(format!(
                "passed by hand by {who}: {comment}"
            ))))
        }
        (StageSpec::Deploy { .. }, Decision::OverrideWindow { reason }) => {
            record(&mut tx, &row, &who, &decision, now).await?;
            sqlx::query!(
                "update deployment set window_override_by = $2, window_override_reason = $3 where deployment_id = $1",
                deployment.id.0,
                who,
                reason
            )
            .execute(&mut *tx)
            .await?;
            None
        }
        _ => unreachable!("the action match above admits only these"),
    };
    if let Some(event) = event {
        let next = row.record.apply(&event, now)?;
        store::save_stage(&mut tx, deployment.id, row.id, &next, now).await?;
    }
    let mut audit = AuditRecord::new(actor.clone(), audit_action(&decision), origin)
        .target(format!(
            "{}/{}#{}",
            deployment.project, deployment.environment, deployment.number
        ))
        .details(json!({
            "release": deployment.version,
            "stage": row.name,
            "item": match decision { Decision::Tick { item } | Decision::Untick { item } => Some(item), _ => None },
            "comment": decision.comment(),
            "own_release": own_release.then_some(true),
        }));
    if matches!(decision, Decision::OverrideWindow { .. }) || own_release {
        audit = audit.security();
    }
    audit.write(&mut *tx).await?;
    tx.commit().await?;
    Ok(())
}

fn audit_action(decision: &Decision) -> &'static str {
    match decision {
        Decision::Approve { .. } => "deployment.approved",
        Decision::Reject { .. } => "deployment.rejected",
        Decision::Tick { .. } => "deployment.checklist_ticked",
        Decision::Untick { .. } => "deployment.checklist_unticked",
        Decision::Fail { .. } => "deployment.stage_failed",
        Decision::Pass { .. } => "deployment.check_passed",
        Decision::OverrideWindow { .. } => "deployment.window_overridden",
    }
}

/// How close a person is to a release: whether they deployed it, or wrote commits in it. Such
/// a person does not decide at its gates (separation of duties), unless they are an admin and
/// the gate says `admins_decide_own_releases: true`. The deployment page, the inbox and
/// [`decide`] all ask [`Ownership::refusal`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ownership {
    pub deployed: bool,
    pub wrote: bool,
}

impl Ownership {
    /// Reads it for `acting`. Only people own releases; tokens and operators never do.
    pub async fn of(
        conn: &mut PgConnection,
        release_id: Uuid,
        triggered_by: &str,
        acting: &Acting,
    ) -> Result<Ownership, sqlx::Error> {
        let Acting::Person { name, .. } = acting else {
            return Ok(Ownership::default());
        };
        let display = sqlx::query_scalar!(
            "select display_name from app_user where username = $1",
            name
        )
        .fetch_optional(&mut *conn)
        .await?
        .unwrap_or_default()
        .to_lowercase();
        let authors = sqlx::query_scalar!(
            r#"select author from release_commit where release_id = $1
               union select commit_author from release where release_id = $1"#,
            release_id
        )
        .fetch_all(&mut *conn)
        .await?;
        let wrote = authors.iter().flatten().any(|author| {
            let author = author.to_lowercase();
            let (author_name, email) = author
                .split_once(" <")
                .map(|(n, e)| (n.trim().to_string(), e.trim_end_matches('>').to_string()))
                .unwrap_or((author.clone(), String::new()));
            author_name == display
                || author_name == *name
                || email.split('@').next() == Some(name.as_str())
        });
        Ok(Ownership {
            deployed: name == triggered_by,
            wrote,
        })
    }

    /// The person deployed the release or wrote some of it.
    pub fn owns(self) -> bool {
        self.deployed || self.wrote
    }

    /// Why `acting` may not approve or reject at a gate of this release, if they may not.
    pub fn refusal(self, acting: &Acting, admins_decide_own_releases: bool) -> Option<String> {
        let Acting::Person { name, role } = acting else {
            return None;
        };
        if !self.owns() || (admins_decide_own_releases && *role == Role::Admin) {
            return None;
        }
        let what = if self.deployed {
            "deployed this release"
        } else {
            "wrote commits in this release"
        };
        let admins = if admins_decide_own_releases {
            ""
        } else {
            " (a gate with `admins_decide_own_releases: true` lets admins)"
        };
        Some(format!(
            "{name} {what}, so someone else decides at its gates{admins}"
        ))
    }
}

async fn record(
    conn: &mut PgConnection,
    row: &StageRow,
    who: &str,
    decision: &Decision,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let item = match decision {
        Decision::Tick { item } | Decision::Untick { item } => Some(*item),
        _ => None,
    };
    sqlx::query!(
        "insert into deployment_decision (deployment_stage_id, kind, item, decided_by, comment, decided_at)
         values ($1, $2, $3, $4, $5, $6)",
        row.id,
        decision.kind(),
        item,
        who,
        decision.comment(),
        now
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn approve(
    conn: &mut PgConnection,
    row: &StageRow,
    who: &str,
    decision: &Decision,
    now: DateTime<Utc>,
) -> Result<(), DeploymentError> {
    let already = approvals_of(conn, row).await?;
    if already.iter().any(|a| a == who) {
        return Err(DeploymentError::NotNow(format!(
            "{who} approved {} already; each person counts once",
            row.title
        )));
    }
    record(conn, row, who, decision, now).await?;
    Ok(())
}

/// Who approved a stage, in order.
pub async fn approvals_of(
    conn: &mut PgConnection,
    row: &StageRow,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar!(
        "select decided_by from deployment_decision where deployment_stage_id = $1 and kind = 'approve'
         order by decision_id",
        row.id
    )
    .fetch_all(&mut *conn)
    .await
}

/// The checklist items ticked now (the last tick or untick of each decides).
pub async fn ticked_items(
    conn: &mut PgConnection,
    row: &StageRow,
) -> Result<Vec<i32>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"select distinct on (item) item as "item!", kind from deployment_decision
           where deployment_stage_id = $1 and kind in ('tick', 'untick')
           order by item, decision_id desc"#,
        row.id
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .filter(|r| r.kind == "tick")
        .map(|r| r.item)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(role: Role) -> Acting {
        Acting::Person {
            name: "tess".into(),
            role,
        }
    }

    #[test]
    fn people_close_to_a_release_do_not_decide_at_its_gates_unless_admins_are_let() {
        let wrote = Ownership {
            deployed: false,
            wrote: true,
        };
        let deployed = Ownership {
            deployed: true,
            wrote: false,
        };
        let stranger = Ownership::default();
        for role in [Role::Qa, Role::Product, Role::ReleaseManager, Role::Admin] {
            assert_eq!(stranger.refusal(&person(role), false), None);
        }
        let why = wrote.refusal(&person(Role::Qa), false).unwrap();
        assert_eq!(
            why,
            "tess wrote commits in this release, so someone else decides at its gates \
             (a gate with `admins_decide_own_releases: true` lets admins)"
        );
        let why = deployed.refusal(&person(Role::Qa), true).unwrap();
        assert_eq!(
            why,
            "tess deployed this release, so someone else decides at its gates"
        );
        assert!(wrote.refusal(&person(Role::Admin), false).is_some());
        assert_eq!(wrote.refusal(&person(Role::Admin), true), None);
        assert_eq!(deployed.refusal(&person(Role::Admin), true), None);
        // Machines and the operator at the command line own nothing.
        let token = Acting::Token { name: "ci".into() };
        assert_eq!(deployed.refusal(&token, false), None);
    }
}
