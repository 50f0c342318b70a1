//! Deployments as pages read them: summaries for histories and cards, a deployment's stages with
//! what the viewer may do on each now, an environment's page, and the product managers' inbox.
//!
//! The actions offered come from [`crate::environment::decide`], the function the use cases in
//! [`super::decide`] ask, so a page offers only what will be accepted (the use case still
//! checks, and refuses the rest with its reason).

use super::checklist::Item;
use super::decide::Ownership;
use super::record::StageRecord;
use super::store::previous_environment;
use super::{DeploymentError, StageSpec};
use crate::definition::{Definition, StageKind};
use crate::environment::{self, Acting, Action, Environment};
use crate::release_view::{
    ChecklistItem, CommitView, DecisionView, DeploymentDetail, DeploymentStageView,
    DeploymentSummary, EnvironmentView, FlagInvolved, InboxItem, StageAction, StepView,
};
use crate::role::Role;
use crate::state::RunState;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use std::collections::HashMap;
use uuid::Uuid;

/// Which deployments [`summaries`] reads.
#[derive(Debug, Clone, Copy, Default)]
pub struct Filter {
    pub release: Option<Uuid>,
    pub environment: Option<Uuid>,
    pub number: Option<i64>,
    /// Only those under way (queued, running, waiting).
    pub active: bool,
}

/// A project's deployments, newest first.
pub async fn summaries(
    conn: &mut PgConnection,
    project_id: Uuid,
    filter: Filter,
    limit: i64,
) -> Result<Vec<DeploymentSummary>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"select d.number, d.kind, e.name as environment, r.version, fr.version as "from_version?",
                  d.state as "state: RunState", d.reason, d.trigger, d.triggered_by,
                  d.created_at, d.started_at, d.finished_at, d.cause,
                  (select s.title from deployment_stage s
                   where s.deployment_id = d.deployment_id and s.state not in ('succeeded', 'skipped')
                   order by s.position limit 1) as current_stage
           from deployment d
           join environment e on e.environment_id = d.environment_id
           join release r on r.release_id = d.release_id
           left join release fr on fr.release_id = d.from_release_id
           where d.project_id = $1
             and ($2::uuid is null or d.release_id = $2)
             and ($3::uuid is null or d.environment_id = $3)
             and ($4::bigint is null or d.number = $4)
             and (not $5 or d.state in ('queued', 'running', 'waiting'))
           order by d.number desc limit $6"#,
        project_id,
        filter.release,
        filter.environment,
        filter.number,
        filter.active,
        limit
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| DeploymentSummary {
            number: r.number,
            kind: r.kind,
            environment: r.environment,
            version: r.version,
            from_version: r.from_version,
            state: r.state,
            reason: r.reason,
            trigger: r.trigger,
            triggered_by: r.triggered_by,
            created_at: r.created_at,
            started_at: r.started_at,
            finished_at: r.finished_at,
            current_stage: r.current_stage,
            cause: r
                .cause
                .and_then(|c| serde_json::from_value::<super::rollback::Cause>(c).ok())
                .map(|c| c.describe()),
        })
        .collect())
}

/// The deployments under way in a project (one per environment at most).
pub async fn active(
    pool: &PgPool,
    project_id: Uuid,
) -> Result<Vec<DeploymentSummary>, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    summaries(
        &mut conn,
        project_id,
        Filter {
            active: true,
            ..Filter::default()
        },
        50,
    )
    .await
}

/// A stage as read for a page (no lock taken).
struct StageFacts {
    id: Uuid,
    name: String,
    title: String,
    spec: StageSpec,
    record: StageRecord,
    outcome: serde_json::Value,
}

/// The deployment page: its stages in order with their steps, decisions, runs and checklist,
/// and what `acting` may do on each now.
pub async fn detail(
    pool: &PgPool,
    project: &str,
    number: i64,
    acting: &Acting,
    now: DateTime<Utc>,
) -> Result<DeploymentDetail, DeploymentError> {
    let mut conn = pool.acquire().await?;
    let row = sqlx::query!(
        r#"select d.deployment_id, d.project_id, d.release_id, e.name as environment, d.triggered_by,
                  d.window_override_by, d.flag_snapshot_version, d.runtime_config
           from deployment d join project p using (project_id)
           join environment e on e.environment_id = d.environment_id
           where p.project_key = $1 and d.number = $2"#,
        project,
        number
    )
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| DeploymentError::UnknownDeployment {
        project: project.to_string(),
        number,
    })?;
    let summary = summaries(
        &mut conn,
        row.project_id,
        Filter {
            number: Some(number),
            ..Filter::default()
        },
        1,
    )
    .await?
    .pop()
    .ok_or_else(|| DeploymentError::UnknownDeployment {
        project: project.to_string(),
        number,
    })?;
    let env = environment::find(&mut conn, project, &row.environment).await?;
    let ownership = Ownership::of(&mut conn, row.release_id, &row.triggered_by, acting).await?;
    let stages = stages_of(&mut conn, row.deployment_id).await?;
    let ids: Vec<Uuid> = stages.iter().map(|s| s.id).collect();
    let mut decisions = decisions_of(&mut conn, &ids).await?;
    let mut steps: HashMap<Uuid, Vec<StepView>> = HashMap::new();
    for s in sqlx::query!(
        r#"select deployment_stage_id, name, state, detail, started_at, finished_at
           from deployment_step where deployment_stage_id = any($1) order by position"#,
        &ids
    )
    .fetch_all(&mut *conn)
    .await?
    {
        steps
            .entry(s.deployment_stage_id)
            .or_default()
            .push(StepView {
                name: s.name,
                state: s.state,
                what: None,
                detail: step_detail(&s.detail),
                started_at: Some(s.started_at),
                finished_at: s.finished_at,
            });
    }
    let runs: HashMap<Uuid, i64> = sqlx::query!(
        r#"select distinct on (deployment_stage_id) deployment_stage_id as "stage!", number
           from run where deployment_stage_id = any($1)
           order by deployment_stage_id, number desc"#,
        &ids
    )
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .map(|r| (r.stage, r.number))
    .collect();
    let mut views = Vec::with_capacity(stages.len());
    let mut earlier_finished = true;
    for stage in stages {
        let stage_decisions = decisions.remove(&stage.id).unwrap_or_default();
        let next = earlier_finished && !stage.record.state.is_finished();
        earlier_finished &= stage.record.state.is_finished();
        let context = ActionContext {
            env: &env,
            acting,
            next,
            triggered_by: &row.triggered_by,
            ownership,
            window_overridden: row.window_override_by.is_some(),
            now,
        };
        let actions = actions(&context, &stage.spec, &stage.record, &stage_decisions);
        // A gate the viewer has the role for but is too close to: say so, not just no buttons.
        let why_not = match &stage.spec {
            StageSpec::Gate {
                role,
                admins_decide_own_releases,
                ..
            } if next && env.decide(acting, Action::DecideGate(*role)).is_ok() => {
                ownership.refusal(acting, *admins_decide_own_releases)
            }
            _ => None,
        };
        views.push(DeploymentStageView {
            why_not,
            checklist: checklist(&stage.outcome, &stage_decisions),
            summary: stage.spec.summary(),
            kind: stage.spec.kind().to_string(),
            name: stage.name,
            title: stage.title,
            state: stage.record.state,
            reason: stage.record.reason,
            started_at: stage.record.started_at,
            finished_at: stage.record.finished_at,
            run_number: runs.get(&stage.id).copied(),
            steps: match &stage.spec {
                StageSpec::Rollback { plan } => {
                    rollback_steps(plan, steps.remove(&stage.id).unwrap_or_default())
                }
                _ => steps.remove(&stage.id).unwrap_or_default(),
            },
            decisions: stage_decisions,
            actions,
        });
    }
    let backups =
        super::backups::views(&mut conn, project, row.deployment_id, &env, acting).await?;
    Ok(DeploymentDetail {
        project: project.to_string(),
        summary,
        stages: views,
        site_url: env.url.clone(),
        flag_snapshot_version: row.flag_snapshot_version,
        runtime_config: row.runtime_config,
        can_cancel: false,
        backups,
    })
}

async fn stages_of(
    conn: &mut PgConnection,
    deployment_id: Uuid,
) -> Result<Vec<StageFacts>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"select deployment_stage_id, name, title, spec, state as "state: RunState",
                  reason, outcome, started_at, finished_at
           from deployment_stage where deployment_id = $1 order by position"#,
        deployment_id
    )
    .fetch_all(&mut *conn)
    .await?;
    rows.into_iter()
        .map(|r| {
            Ok(StageFacts {
                id: r.deployment_stage_id,
                name: r.name,
                title: r.title,
                spec: serde_json::from_value(r.spec)
                    .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
                record: StageRecord {
                    state: r.state,
                    reason: r.reason,
                    started_at: r.started_at,
                    finished_at: r.finished_at,
                },
                outcome: r.outcome,
            })
        })
        .collect()
}

/// The decisions on these stages, oldest first, by stage.
async fn decisions_of(
    conn: &mut PgConnection,
    stages: &[Uuid],
) -> Result<HashMap<Uuid, Vec<DecisionView>>, sqlx::Error> {
    let mut by_stage: HashMap<Uuid, Vec<DecisionView>> = HashMap::new();
    for d in sqlx::query!(
        "select deployment_stage_id, kind, item, decided_by, comment, decided_at
         from deployment_decision where deployment_stage_id = any($1) order by decision_id",
        stages
    )
    .fetch_all(&mut *conn)
    .await?
    {
        by_stage
            .entry(d.deployment_stage_id)
            .or_default()
            .push(DecisionView {
                kind: d.kind,
                item: d.item,
                by: d.decided_by,
                comment: d.comment,
                at: d.decided_at,
            });
    }
    Ok(by_stage)
}

/// A step's detail in words: its `message`, `error` or the whole JSON.
/// A rollback's steps in their order, each with what it does and how far it got (a step its
/// plan does not need is `not-needed`; one not begun yet is `pending`).
fn rollback_steps(plan: &super::rollback::RollbackPlan, recorded: Vec<StepView>) -> Vec<StepView> {
    let mut recorded: HashMap<String, StepView> =
        recorded.into_iter().map(|s| (s.name.clone(), s)).collect();
    plan.steps()
        .into_iter()
        .map(|(name, what)| {
            let needed = match name {
                super::rollback::STEP_FLAGS => plan.flag_snapshot.is_some(),
                super::rollback::STEP_SITE => plan.site_version.is_some(),
                super::rollback::STEP_JOB => plan.job.is_some(),
                _ => true,
            };
            match recorded.remove(name) {
                Some(step) => StepView {
                    what: Some(what),
                    ..step
                },
                None => StepView {
                    name: name.to_string(),
                    state: if needed { "pending" } else { "not-needed" }.to_string(),
                    what: Some(what),
                    detail: String::new(),
                    started_at: None,
                    finished_at: None,
                },
            }
        })
        .collect()
}

fn step_detail(detail: &serde_json::Value) -> String {
    for key in ["message", "error", "summary"] {
        if let Some(text) = detail.get(key).and_then(|v| v.as_str()) {
            return text.to_string();
        }
    }
    if let Some(run) = detail.get("run").and_then(|v| v.as_i64()) {
        return format!("run #{run}");
    }
    match detail {
        serde_json::Value::Object(map) if map.is_empty() => String::new(),
        other => other.to_string(),
    }
}

/// A manual stage's checklist with who ticked each item (the last tick or untick decides).
fn checklist(outcome: &serde_json::Value, decisions: &[DecisionView]) -> Vec<ChecklistItem> {
    let items: Vec<Item> = outcome
        .get("items")
        .and_then(|items| serde_json::from_value(items.clone()).ok())
        .unwrap_or_default();
    items
        .into_iter()
        .map(|item| {
            let last = decisions
                .iter()
                .rev()
                .find(|d| d.item == Some(item.number) && (d.kind == "tick" || d.kind == "untick"))
                .filter(|d| d.kind == "tick");
            ChecklistItem {
                number: item.number,
                text: item.text,
                section: item.section,
                ticked_by: last.map(|d| d.by.clone()),
                ticked_at: last.map(|d| d.at),
            }
        })
        .collect()
}

struct ActionContext<'a> {
    env: &'a Environment,
    acting: &'a Acting,
    /// The stage is unfinished and every stage before it finished: decisions reach it.
    next: bool,
    triggered_by: &'a str,
    /// How close the person asking is to the release (gates refuse its deployer and authors).
    ownership: Ownership,
    window_overridden: bool,
    now: DateTime<Utc>,
}

/// What `acting` may do on a stage now: the same questions [`super::decide::decide`] asks.
fn actions(
    c: &ActionContext<'_>,
    spec: &StageSpec,
    record: &StageRecord,
    decisions: &[DecisionView],
) -> Vec<StageAction> {
    if !c.next {
        return Vec::new();
    }
    let may = |action| c.env.decide(c.acting, action).is_ok();
    let me = c.acting.name();
    let approved_already = decisions.iter().any(|d| d.kind == "approve" && d.by == me);
    let mut offered = Vec::new();
    match spec {
        StageSpec::Gate {
            role,
            admins_decide_own_releases,
            ..
        } if may(Action::DecideGate(*role))
            && c.ownership
                .refusal(c.acting, *admins_decide_own_releases)
                .is_none()
            && !approved_already =>
        {
            offered.extend([StageAction::Approve, StageAction::Reject]);
        }
        StageSpec::Deploy { .. } if record.state == RunState::Waiting => {
            let needed = usize::from(c.env.protection.required_approvals);
            let given = decisions.iter().filter(|d| d.kind == "approve").count();
            if given < needed && may(Action::Approve) && me != c.triggered_by && !approved_already {
                offered.extend([StageAction::Approve, StageAction::Reject]);
            }
            let closed = c
                .env
                .deploy_window
                .as_ref()
                .is_some_and(|w| !w.is_open(c.now));
            if closed && !c.window_overridden && may(Action::OverrideWindow) {
                offered.push(StageAction::OverrideWindow);
            }
        }
        StageSpec::Manual { .. } if may(Action::TickChecklist) => {
            offered.extend([StageAction::Tick, StageAction::Fail]);
        }
        StageSpec::Check { .. } if record.state == RunState::Waiting && may(Action::JudgeCheck) => {
            offered.extend([StageAction::Pass, StageAction::Fail]);
        }
        _ => {}
    }
    offered
}

/// An environment's page: what runs there, what is under way, its history and rules.
pub async fn environment_view(
    pool: &PgPool,
    project: &str,
    name: &str,
    acting: &Acting,
    database_preview: Option<&dyn super::rollback::DatabasePreview>,
) -> Result<EnvironmentView, DeploymentError> {
    let rollback = super::rollback::offer(pool, project, name, acting, database_preview).await?;
    let mut conn = pool.acquire().await?;
    let env = environment::find(&mut conn, project, name).await?;
    let history = summaries(
        &mut conn,
        env.project_id,
        Filter {
            environment: Some(env.id.0),
            ..Filter::default()
        },
        30,
    )
    .await?;
    let in_progress = history.iter().find(|d| !d.state.is_finished()).cloned();
    let definition = crate::project::current_definition_in(&mut conn, project)
        .await?
        .ok_or_else(|| DeploymentError::NoDefinition(project.to_string()))?;
    let next_eligible = if definition.deploy_stage(name).is_some() {
        match super::store::newest_eligible(&mut conn, env.project_id, &definition, name).await? {
            Ok((_, version)) if Some(&version) == env.current_release.as_ref() => {
                Some(format!("{version}, which runs here already"))
            }
            Ok((_, version)) => Some(version),
            Err(why) => Some(format!("none: {why}")),
        }
    } else {
        None
    };
    Ok(EnvironmentView {
        project: project.to_string(),
        name: env.name.clone(),
        url: env.url.clone(),
        current_version: env.current_release.clone(),
        deployed_at: env.deployed_at,
        in_progress,
        history: history
            .into_iter()
            .filter(|d| d.state.is_finished())
            .collect(),
        next_eligible,
        window: env
            .deploy_window
            .as_ref()
            .map(crate::project::view::window_text),
        protection: crate::project::view::protection_text(&env.protection),
        rollback,
    })
}

/// Releases waiting at a product manager's gate (user acceptance), oldest first, with what a
/// product manager needs to decide.
pub async fn inbox(pool: &PgPool, acting: &Acting) -> Result<Vec<InboxItem>, DeploymentError> {
    let mut conn = pool.acquire().await?;
    let waiting = waiting_product_gates(&mut conn).await?;
    let mut items = Vec::new();
    let mut definitions: HashMap<String, std::sync::Arc<Definition>> = HashMap::new();
    for gate in waiting {
        let Ok(StageSpec::Gate {
            role,
            approvals,
            admins_decide_own_releases,
        }) = serde_json::from_value(gate.spec.clone())
        else {
            continue;
        };
        let definition = match definitions.get(&gate.project) {
            Some(d) => d.clone(),
            None => {
                let Some(d) =
                    crate::project::current_definition_in(&mut conn, &gate.project).await?
                else {
                    continue;
                };
                definitions.insert(gate.project.clone(), d.clone());
                d
            }
        };
        let env = environment::find(&mut conn, &gate.project, &gate.environment).await?;
        let stage_ids = sqlx::query!(
            "select deployment_stage_id, spec from deployment_stage where deployment_id = $1 and kind = 'gate'",
            gate.deployment_id
        )
        .fetch_all(&mut *conn)
        .await?;
        let qa_stages: Vec<Uuid> = stage_ids
            .iter()
            .filter(|s| {
                matches!(
                    serde_json::from_value(s.spec.clone()),
                    Ok(StageSpec::Gate { role: Role::Qa, .. })
                )
            })
            .map(|s| s.deployment_stage_id)
            .collect();
        let mut all = decisions_of(&mut conn, &[gate.stage_id]).await?;
        let here = all.remove(&gate.stage_id).unwrap_or_default();
        let qa = decisions_of(&mut conn, &qa_stages)
            .await?
            .into_values()
            .flatten()
            .filter(|d| d.kind == "approve" || d.kind == "reject")
            .collect();
        let approvals_given: Vec<String> = here
            .iter()
            .filter(|d| d.kind == "approve")
            .map(|d| d.by.clone())
            .collect();
        let me = acting.name();
        let ownership =
            Ownership::of(&mut conn, gate.release_id, &gate.triggered_by, acting).await?;
        let why_not = match env.decide(acting, Action::DecideGate(role)) {
            Err(refusal) => Some(refusal.to_string()),
            Ok(_) => ownership
                .refusal(acting, admins_decide_own_releases)
                .or_else(|| {
                    approvals_given
                        .iter()
                        .any(|a| a == me)
                        .then(|| format!("{me} approved it already; each person counts once"))
                }),
        };
        let mut commits: Vec<CommitView> = sqlx::query_as!(
            CommitView,
            "select sha, author, message from release_commit where release_id = $1 order by position",
            gate.release_id
        )
        .fetch_all(&mut *conn)
        .await?;
        if commits.is_empty() {
            commits.push(CommitView {
                sha: gate.commit_sha.clone(),
                author: gate.commit_author.clone(),
                message: gate.commit_message.clone(),
            });
        }
        let flags = flags_involved(&mut conn, &definition, &env).await?;
        items.push(InboxItem {
            project: gate.project,
            deployment: gate.number,
            environment: gate.environment,
            stage: gate.stage,
            stage_title: gate.stage_title,
            version: gate.version,
            commit_sha: gate.commit_sha,
            commits,
            notes: gate.notes,
            try_url: env.url.clone(),
            flags,
            qa,
            waiting_since: gate.started_at,
            approvals: approvals_given,
            approvals_needed: approvals,
            why_not,
        });
    }
    Ok(items)
}

/// How many releases wait at a product manager's gate (the header's badge).
pub async fn inbox_count(pool: &PgPool) -> Result<usize, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    Ok(waiting_product_gates(&mut conn).await?.len())
}

struct WaitingGate {
    deployment_id: Uuid,
    number: i64,
    project: String,
    environment: String,
    triggered_by: String,
    stage_id: Uuid,
    stage: String,
    stage_title: String,
    spec: serde_json::Value,
    started_at: Option<DateTime<Utc>>,
    release_id: Uuid,
    version: String,
    commit_sha: String,
    commit_author: String,
    commit_message: String,
    notes: String,
}

/// Gates for the product role that decisions reach now: unfinished, in a deployment under way,
/// with every stage before them finished.
async fn waiting_product_gates(conn: &mut PgConnection) -> Result<Vec<WaitingGate>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"select d.deployment_id, d.number, p.project_key, e.name as environment, d.triggered_by,
                  s.deployment_stage_id, s.name as stage, s.title as stage_title, s.spec, s.started_at,
                  r.release_id, r.version, r.commit_sha, r.commit_author, r.commit_message, r.notes
           from deployment_stage s
           join deployment d using (deployment_id)
           join project p on p.project_id = d.project_id
           join environment e on e.environment_id = d.environment_id
           join release r on r.release_id = d.release_id
           where s.kind = 'gate' and s.spec ->> 'role' = 'product'
             and s.state in ('queued', 'running', 'waiting')
             and d.state in ('queued', 'running', 'waiting')
             and not exists (select 1 from deployment_stage b
                             where b.deployment_id = s.deployment_id and b.position < s.position
                               and b.state not in ('succeeded', 'skipped'))
           order by coalesce(s.started_at, d.created_at)"#
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| WaitingGate {
            deployment_id: r.deployment_id,
            number: r.number,
            project: r.project_key,
            environment: r.environment,
            triggered_by: r.triggered_by,
            stage_id: r.deployment_stage_id,
            stage: r.stage,
            stage_title: r.stage_title,
            spec: r.spec,
            started_at: r.started_at,
            release_id: r.release_id,
            version: r.version,
            commit_sha: r.commit_sha,
            commit_author: r.commit_author,
            commit_message: r.commit_message,
            notes: r.notes,
        })
        .collect())
}

/// The flags a release waiting in `env` involves: those the pipeline's `flags` stages set, and
/// those whose state differs between `env` and the environment after it.
async fn flags_involved(
    conn: &mut PgConnection,
    definition: &Definition,
    env: &Environment,
) -> Result<Vec<FlagInvolved>, sqlx::Error> {
    let mut involved: Vec<FlagInvolved> = Vec::new();
    for stage in definition.stages() {
        if let StageKind::Flags(change) = &stage.kind {
            for setting in &change.set {
                let what = match (setting.enabled, setting.rollout) {
                    (true, Some(r)) => format!("on for {r} %"),
                    (true, None) => "on".to_string(),
                    (false, _) => "off".to_string(),
                };
                involved.push(FlagInvolved {
                    flag: setting.flag.clone(),
                    why: format!(
                        "{} ({}) sets it {what} in {}",
                        stage.title,
                        stage.name,
                        change.environment.as_str()
                    ),
                });
            }
        }
    }
    let after = definition
        .environments()
        .iter()
        .map(|e| e.name.to_string())
        .find(|e| previous_environment(definition, e).as_deref() == Some(env.name.as_str()));
    if let Some(after) = after {
        let differing = sqlx::query!(
            r#"select f.name, coalesce(a.enabled, false) as "here!", coalesce(b.enabled, false) as "there!"
               from flag f
               left join flag_environment a on a.flag_id = f.flag_id
                 and a.environment_id = $2
               left join flag_environment b on b.flag_id = f.flag_id
                 and b.environment_id = (select environment_id from environment where project_id = $1 and name = $3)
               where f.project_id = $1 and f.archived_at is null
                 and (coalesce(a.enabled, false) <> coalesce(b.enabled, false)
                      or coalesce(a.strategies, '[]') <> coalesce(b.strategies, '[]')
                      or coalesce(a.variants, '[]') <> coalesce(b.variants, '[]'))
               order by f.name"#,
            env.project_id,
            env.id.0,
            after
        )
        .fetch_all(&mut *conn)
        .await?;
        let word = |on: bool| if on { "on" } else { "off" };
        for f in differing {
            let why = if f.here == f.there {
                format!(
                    "its rollout or variants differ between {} and {after}",
                    env.name
                )
            } else {
                format!(
                    "{} in {}, {} in {after}",
                    word(f.here),
                    env.name,
                    word(f.there)
                )
            };
            involved.push(FlagInvolved { flag: f.name, why });
        }
    }
    Ok(involved)
}
