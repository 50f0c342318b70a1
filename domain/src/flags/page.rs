//! The flags page's data: an environment's flags in words, who may change them, and the
//! environment's history with what each snapshot changed.

use std::collections::HashMap;

use sqlx::PgPool;
use sqlx::types::Json;

use super::diff::{describe_constraint, diff};
use super::model::{ClientFeatures, Strategy};
use super::snapshot::{SnapshotError, SnapshotQuery};
use super::store::{EnvironmentId, FlagError, FlagStore};
use crate::environment::{Acting, Action};
use crate::flag_view::{FlagRow, FlagsPage, HistoryEntry};
use crate::role::Role;

/// Who may change flags in an environment, and whether changes there wait for an approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permission {
    /// Whether this person may change flags (or approve changes) here.
    pub allowed: bool,
    /// The roles that may, in words.
    pub who: String,
    /// Whether a change waits for another person's approval (the kill switch never does).
    pub needs_approval: bool,
}

/// Who may change flags in an environment, by its rules ([`crate::environment::decide`]): the
/// roles its protection lets deploy (admins always); where its protection requires approvals,
/// flag changes wait for one.
pub async fn permission(
    pool: &PgPool,
    project: &str,
    environment: &str,
    role: Role,
) -> Result<Permission, FlagError> {
    let mut conn = pool.acquire().await?;
    let environment = crate::environment::find(&mut conn, project, environment)
        .await
        .map_err(|e| match e {
            crate::environment::EnvironmentError::Database(e) => FlagError::Database(e),
            _ => FlagError::NoSuchEnvironment {
                project: project.to_owned(),
                environment: environment.to_owned(),
            },
        })?;
    let acting = Acting::Person {
        name: String::new(),
        role,
    };
    let decision = environment.decide(&acting, Action::ChangeFlags);
    Ok(Permission {
        allowed: decision.is_ok(),
        who: crate::environment::rules::who_may(&environment.protection.allowed_roles),
        needs_approval: environment.protection.required_approvals > 0,
    })
}

/// The flags page for one environment, as a person with `role` sees it.
pub async fn flags_page(
    store: &FlagStore,
    project: &str,
    environment: &str,
    role: Role,
) -> Result<FlagsPage, FlagError> {
    let env = store.environment(project, environment).await?;
    let environments = sqlx::query_scalar!(
        "select name from environment where project_id = $1 order by position",
        env.project_id
    )
    .fetch_all(store.pool())
    .await?;
    let permission = permission(store.pool(), project, environment, role).await?;
    let waiting = super::change::FlagChanges::new(store)
        .waiting(env.id)
        .await?;
    let version = sqlx::query_scalar!(
        r#"select coalesce(max(version), 0) as "version!" from flag_snapshot where environment_id = $1"#,
        env.id.0
    )
    .fetch_one(store.pool())
    .await?;
    let flags = store
        .flags(env.id)
        .await?
        .into_iter()
        .map(|flag| {
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
                variants_json: serde_json::to_string_pretty(&flag.state.variants)
                    .unwrap_or_default(),
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
        })
        .collect();
    Ok(FlagsPage {
        project: env.project_key,
        environment: env.name,
        environments,
        version,
        can_change: permission.allowed,
        who_may_change: permission.who,
        needs_approval: permission.needs_approval,
        waiting,
        flags,
    })
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
