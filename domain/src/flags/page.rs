//! The flags page's data: an environment's flags in words, who may change them, the changes
//! waiting and what the reader may do to each, and the environment's history with what each
//! snapshot changed (and which were let through by an override).

use std::collections::HashMap;

use sqlx::types::Json;

use super::change::{ChangeEvent, ChangeState, Decision, Waiting};
use super::diff::{describe_constraint, diff};
use super::model::{ClientFeatures, Strategy};
use super::snapshot::{SnapshotError, SnapshotQuery};
use super::store::{EnvironmentId, FlagError, FlagStore};
use crate::environment::rules::who_may;
use crate::environment::{Acting, Action, Member, Rules, approvers, decide};
use crate::flag_view::{FlagRow, FlagsPage, HistoryEntry, Overridden, WaitingChange};

/// The flags page for one environment, as `acting` (the person reading it) sees it: what they
/// may change, and for each waiting change what they may do to it, decided by the environment's
/// rule ([`crate::environment::decide`]) and the change's state machine
/// ([`super::change_state::ChangeRecord::apply`]), the same two the actions ask.
pub async fn flags_page(
    store: &FlagStore,
    project: &str,
    environment: &str,
    acting: &Acting,
) -> Result<FlagsPage, FlagError> {
    let env = store.environment(project, environment).await?;
    let mut conn = store.pool().acquire().await?;
    let environments = sqlx::query_scalar!(
        "select name from environment where project_id = $1 order by position",
        env.project_id
    )
    .fetch_all(&mut *conn)
    .await?;
    let rules = crate::environment::find(&mut conn, project, environment)
        .await
        .map_err(|e| match e {
            crate::environment::EnvironmentError::Database(e) => FlagError::Database(e),
            _ => FlagError::NoSuchEnvironment {
                project: project.to_owned(),
                environment: environment.to_owned(),
                known: environments.clone(),
            },
        })?
        .rules();
    let members = crate::environment::members(&mut conn).await?;
    let waiting = super::change::FlagChanges::new(store)
        .waiting(env.id)
        .await?
        .into_iter()
        .map(|change| waiting_change(&rules, acting, &members, change))
        .collect();
    let version = sqlx::query_scalar!(
        r#"select coalesce(max(version), 0) as "version!" from flag_snapshot where environment_id = $1"#,
        env.id.0
    )
    .fetch_one(&mut *conn)
    .await?;
    drop(conn);
    let flags = store
        .flags(env.id)
        .await?
        .into_iter()
        .map(flag_row)
        .collect();
    Ok(FlagsPage {
        project: env.project_key,
        environment: env.name,
        environments,
        version,
        can_change: decide(&rules, acting, Action::ChangeFlags).is_ok(),
        who_may_change: who_may(&rules.protection.allowed_roles),
        required_approvals: rules.protection.required_approvals,
        waiting,
        flags,
    })
}

fn flag_row(flag: super::store::FlagSummary) -> FlagRow {
    let strategies = &flag.state.strategies;
    FlagRow {
        rollout: single_rollout(strategies),
        targeting: strategies.iter().map(describe_strategy).collect(),
        variants: flag
            .state
            .variants
            .iter()
            .map(|v| format!("{} {} %", v.name, f64::from(v.weight) / 10.0))
            .collect(),
        strategies_json: serde_json::to_string_pretty(strategies).unwrap_or_default(),
        variants_json: serde_json::to_string_pretty(&flag.state.variants).unwrap_or_default(),
        enabled: flag.state.enabled,
        name: flag.name,
        flag_type: flag.flag_type.as_str().to_string(),
        description: flag.description,
        owner: flag.owner,
        stale: flag.stale,
        potentially_stale: flag.potentially_stale,
        changed_at: flag.changed_at,
        changed_by: flag.changed_by,
    }
}

/// A waiting change as `acting` sees it: Approve only when the rule admits them and the state
/// machine would count their approval (not the requester's, not a second one), who else could
/// approve, and the override for admins.
fn waiting_change(
    rules: &Rules,
    acting: &Acting,
    members: &[Member],
    change: Waiting,
) -> WaitingChange {
    let record = &change.record;
    let pending = record.state == ChangeState::Pending;
    let me = acting.name();
    let may_decide = decide(rules, acting, Action::Approve).is_ok();
    let approve = ChangeEvent::Decided {
        decision: Decision::Approve,
        by: me.to_string(),
    };
    let counts = record
        .apply(&approve, change.requested_at)
        .is_ok_and(|next| next != *record);
    let required = u8::try_from(record.required_approvals).unwrap_or(u8::MAX);
    let approvers = pending.then(|| {
        approvers(
            rules,
            &record.requested_by,
            &record.approved_by,
            required,
            members,
        )
    });
    WaitingChange {
        id: change.id,
        flag: change.flag,
        summary: change.summary,
        requested_at: change.requested_at,
        apply_at: change.apply_at,
        needs_approval: pending,
        required_approvals: required,
        waiting_for: approvers.as_ref().map(|a| a.describe()),
        stuck: approvers.as_ref().is_some_and(|a| !a.enough()),
        overridden_by: record.overridden_by.clone(),
        can_approve: pending && may_decide && counts,
        can_reject: may_decide && me != record.requested_by,
        can_cancel: may_decide,
        can_override: pending && decide(rules, acting, Action::OverrideApprovals).is_ok(),
        approved_by: record.approved_by.clone(),
        requested_by: record.requested_by.clone(),
    }
}

/// The newest snapshots of an environment, each with what it changed. The states are read in
/// one query (the page's snapshots and the one before the oldest) and compared in memory.
pub async fn history(
    store: &FlagStore,
    environment: EnvironmentId,
    limit: i64,
) -> Result<Vec<HistoryEntry>, SnapshotError> {
    let page = store
        .list_snapshots(
            environment,
            SnapshotQuery {
                before_version: None,
                limit,
            },
        )
        .await?;
    let (Some(newest), Some(oldest)) = (page.snapshots.first(), page.snapshots.last()) else {
        return Ok(Vec::new());
    };
    let states: HashMap<i64, ClientFeatures> = sqlx::query!(
        r#"select version, state as "state: Json<ClientFeatures>" from flag_snapshot
           where environment_id = $1 and version between $2 and $3"#,
        environment.0,
        oldest.version - 1,
        newest.version
    )
    .fetch_all(store.pool())
    .await?
    .into_iter()
    .map(|r| (r.version, r.state.0))
    .collect();
    let mut overrides: HashMap<i64, Overridden> = sqlx::query!(
        r#"select applied_version as "version!", overridden_by as "by!", override_reason as "reason!",
                  cardinality(approved_by) as "approvals!", required_approvals
           from flag_change
           where environment_id = $1 and applied_version between $2 and $3
             and overridden_by is not null"#,
        environment.0,
        oldest.version,
        newest.version
    )
    .fetch_all(store.pool())
    .await?
    .into_iter()
    .map(|r| {
        let overridden = Overridden {
            by: r.by,
            reason: r.reason,
            approvals: usize::try_from(r.approvals).unwrap_or(0),
            required: u8::try_from(r.required_approvals).unwrap_or(u8::MAX),
        };
        (r.version, overridden)
    })
    .collect();
    Ok(page
        .snapshots
        .into_iter()
        .map(|snapshot| {
            let after = states.get(&snapshot.version);
            let changes = match (states.get(&(snapshot.version - 1)), after) {
                (Some(before), Some(after)) => diff(before, after)
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
                (None, Some(after)) => after
                    .features
                    .iter()
                    .map(|f| {
                        format!(
                            "{}: created, {}",
                            f.name,
                            if f.enabled { "on" } else { "off" }
                        )
                    })
                    .collect(),
                _ => Vec::new(),
            };
            HistoryEntry {
                version: snapshot.version,
                created_at: snapshot.created_at,
                created_by: snapshot.created_by,
                reason: snapshot.reason,
                restored_from: snapshot.restored_from,
                changes,
                overridden: overrides.remove(&snapshot.version),
            }
        })
        .collect())
}

/// The rollout percentage when the strategies are exactly one unconstrained gradual rollout.
pub fn single_rollout(strategies: &[Strategy]) -> Option<u8> {
    match strategies {
        [] => Some(100),
        [only]
            if only.name == "flexibleRollout"
                && only.constraints.is_empty()
                && only.segments.is_empty() =>
        {
            only.parameters
                .get("rollout")?
                .parse()
                .ok()
                .filter(|p| *p <= 100)
        }
        _ => None,
    }
}

/// A strategy in words: who it turns the flag on for.
pub fn describe_strategy(strategy: &Strategy) -> String {
    let parameter = |name: &str| {
        strategy
            .parameters
            .get(name)
            .map(String::as_str)
            .unwrap_or("")
    };
    let list = |name: &str| {
        parameter(name)
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut text = match strategy.name.as_str() {
        "default" => "everyone".to_string(),
        "flexibleRollout"
        | "gradualRolloutUserId"
        | "gradualRolloutSessionId"
        | "gradualRolloutRandom" => {
            let percent = if parameter("rollout").is_empty() {
                parameter("percentage")
            } else {
                parameter("rollout")
            };
            let stickiness = match (strategy.name.as_str(), parameter("stickiness")) {
                ("gradualRolloutUserId", _) => "userId",
                ("gradualRolloutSessionId", _) => "sessionId",
                ("gradualRolloutRandom", _) | (_, "random") => "random",
                (_, "" | "default") => "userId, else sessionId",
                (_, other) => other,
            };
            format!("{percent} % of users (by {stickiness})")
        }
        "userWithId" => format!("users {}", list("userIds")),
        "remoteAddress" => format!("addresses {}", list("IPs")),
        "applicationHostname" => format!("hosts {}", list("hostNames")),
        other => format!("custom strategy {other} (Flightdeck treats it as off)"),
    };
    let mut conditions: Vec<String> = strategy
        .constraints
        .iter()
        .map(describe_constraint)
        .collect();
    conditions.extend(
        strategy
            .segments
            .iter()
            .map(|id| format!("in segment {id}")),
    );
    if !conditions.is_empty() {
        text.push_str(" where ");
        text.push_str(&conditions.join(" and "));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn strategy(value: serde_json::Value) -> Strategy {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn strategies_read_as_who_gets_the_flag() {
        let rollout = strategy(json!({"name": "flexibleRollout",
            "parameters": {"rollout": "25", "stickiness": "default", "groupId": "x"},
            "constraints": [{"contextName": "plan", "operator": "IN", "values": ["pro"]}]}));
        assert_eq!(
            describe_strategy(&rollout),
            "25 % of users (by userId, else sessionId) where plan IN [pro]"
        );
        let users =
            strategy(json!({"name": "userWithId", "parameters": {"userIds": "ada, grace"}}));
        assert_eq!(describe_strategy(&users), "users ada, grace");
        assert_eq!(
            single_rollout(&[rollout]),
            None,
            "a constrained rollout is not the slider's"
        );
        let plain = strategy(json!({"name": "flexibleRollout", "parameters": {"rollout": "40"}}));
        assert_eq!(single_rollout(&[plain]), Some(40));
        assert_eq!(single_rollout(&[]), Some(100));
    }
}
