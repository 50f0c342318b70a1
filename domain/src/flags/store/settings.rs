//! A release's flag settings applied to one environment: what a deployment's `flags` stage does
//! (the definition's [`FlagSetting`]s, e.g. `smart-reminders: { enabled: true, rollout: 10 }`).
//!
//! The whole list is one change, in the caller's transaction: flags the project lacks are
//! created (release flags), every setting is written, and then the environment gets one snapshot
//! and the log one audit entry (`flag.settings_applied`) listing each flag before and after. A
//! created flag appears (off) in the project's other environments too, so they get a snapshot of
//! their own as every flag creation gives them; nothing else changes there.
//!
//! What a setting means:
//! - `enabled` turns the flag on or off here;
//! - `rollout: Some(p)` makes its strategies one gradual rollout to `p` % of users, sticky on
//!   the user (else the session) and grouped by the flag's name, as the flags page sets one;
//! - `rollout: None` with `enabled: true` means on for everyone: no strategies (an enabled flag
//!   without strategies is on for every context, as in Unleash);
//! - `rollout: None` with `enabled: false` only turns the flag off; its strategies stay, so that
//!   turning it on again gives the same people the flag.
//!
//! Applying the same settings again finds everything so and writes nothing (no snapshot, no
//! audit entry), so a deployer resumed after a crash may simply call it again. A refusal (a bad
//! flag name, a rollout over 100 %, a flag listed twice, an archived flag) comes before anything
//! is written.

use std::collections::BTreeSet;

use serde_json::json;
use sqlx::PgConnection;
use uuid::Uuid;

use super::flag::insert;
use super::rows::{environment_state, find_flag};
use super::state::{Change, finish, states};
use super::{
    Applied, EnvironmentId, FlagError, MAX_DESCRIPTION, SnapshotRef, find_environment,
    lock_project, put_environment_state,
};
use crate::audit::{Actor, Origin};
use crate::definition::FlagSetting;
use crate::flags::definition::{
    EnvironmentState, FlagName, FlagNameError, FlagType, NewFlag, Strategies,
};
use crate::flags::model::Strategy;
use crate::flags::page::describe_strategy;

/// What [`apply_settings`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsApplied {
    /// The environment's snapshot version now, changed or not: what a deployment records as
    /// the flags it ran with (0 while the environment has never had a snapshot).
    pub version: i64,
    /// Whether anything was written. False when every flag already was as the settings say.
    pub changed: bool,
    /// The flags the settings created, in the order listed.
    pub created: Vec<String>,
    /// Every snapshot taken: the environment's, and those of the project's other environments
    /// where a created flag appeared (off).
    pub snapshots: Vec<SnapshotRef>,
}

/// Why one flag setting was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingProblem {
    #[error("{0}")]
    BadName(FlagNameError),
    #[error("a rollout is 0 to 100 %, not {0} %")]
    Rollout(u8),
    #[error("the flag is listed twice")]
    Duplicate,
}

/// One setting, checked: the flag's name, what it sets, and the flag when the project has it.
struct Planned {
    name: FlagName,
    enabled: bool,
    /// The strategies that replace the flag's: one gradual rollout.
    rollout: Option<Vec<Strategy>>,
    /// The flag, when the project has it; `None` means it is created.
    existing: Option<Uuid>,
}

/// Applies flag settings to one environment as one audited change with (at most) one snapshot
/// there, in the caller's transaction; `reason` is the snapshot's and the audit entry's reason
/// ("deployment #12 of 2026.12.03-4: feature-flags"). Locks the environment's project first
/// ([`lock_project`]), so a caller must not already hold one of the project's environments
/// unless it took them with `lock_project` too.
pub async fn apply_settings(
    conn: &mut PgConnection,
    environment: EnvironmentId,
    settings: &[FlagSetting],
    actor: Actor,
    origin: &Origin,
    reason: &str,
) -> Result<SettingsApplied, FlagError> {
    let names = check(settings)?;
    let found = find_environment(conn, environment)
        .await?
        .ok_or(FlagError::UnknownEnvironment(environment))?;
    let locked = lock_project(conn, &found.project_key).await?;
    let Some(env) = locked
        .environments
        .iter()
        .find(|e| e.id == environment)
        .cloned()
    else {
        return Err(FlagError::UnknownEnvironment(environment));
    };

    // Everything that can refuse comes before the first write.
    let mut planned = Vec::with_capacity(settings.len());
    for (name, setting) in names.into_iter().zip(settings) {
        let existing = match find_flag(conn, &locked.key, locked.id, &name).await {
            Ok(flag) => Some(flag.id),
            Err(FlagError::UnknownFlag { .. }) => None,
            Err(other) => return Err(other),
        };
        let rollout = match setting.rollout {
            Some(percent) => Some(gradual_rollout(&name, percent)?),
            None => None,
        };
        planned.push(Planned {
            name,
            enabled: setting.enabled,
            rollout,
            existing,
        });
    }

    let before_states = states(conn, &locked).await?;
    let mut created = Vec::new();
    let mut written = false;
    let (mut before, mut after) = (serde_json::Map::new(), serde_json::Map::new());
    for plan in &planned {
        let (id, current) = match plan.existing {
            Some(id) => {
                let current = environment_state(conn, id, env.id).await?;
                before.insert(plan.name.to_string(), json!(described(&current)));
                (id, current)
            }
            None => {
                let description = format!("Created by a deployment's flags stage: {reason}")
                    .chars()
                    .take(MAX_DESCRIPTION)
                    .collect();
                let new = NewFlag {
                    name: plan.name.clone(),
                    flag_type: FlagType::Release,
                    description,
                    owner: None,
                };
                created.push(plan.name.to_string());
                before.insert(plan.name.to_string(), serde_json::Value::Null);
                let id = insert(conn, &locked, &new, &actor.name).await?;
                (id, EnvironmentState::default())
            }
        };
        let wanted = plan.applied_to(&current);
        if wanted != current {
            put_environment_state(conn, id, env.id, &wanted, &actor.name).await?;
            written = true;
        }
        after.insert(plan.name.to_string(), json!(described(&wanted)));
    }

    if !written && created.is_empty() {
        return Ok(SettingsApplied {
            version: newest_version(conn, environment).await?,
            changed: false,
            created,
            snapshots: Vec::new(),
        });
    }
    let settings: Vec<serde_json::Value> = settings
        .iter()
        .map(|s| json!({ "flag": s.flag, "enabled": s.enabled, "rollout": s.rollout }))
        .collect();
    let change = Change {
        reason: reason.to_owned(),
        target: format!("{}/{}", env.project_key, env.name),
        details: json!({
            "reason": reason,
            "settings": settings,
            "created": created,
            "before": before,
            "after": after,
        }),
        action: "flag.settings_applied",
        actor,
        origin,
    };
    let snapshots = match finish(conn, &locked, &before_states, change).await? {
        Applied::Changed { snapshots } => snapshots,
        Applied::Unchanged => Vec::new(),
    };
    Ok(SettingsApplied {
        version: newest_version(conn, environment).await?,
        changed: true,
        created,
        snapshots,
    })
}

/// The settings' flag names, or the first setting that cannot be applied.
fn check(settings: &[FlagSetting]) -> Result<Vec<FlagName>, FlagError> {
    let mut seen = BTreeSet::new();
    let mut names = Vec::with_capacity(settings.len());
    for setting in settings {
        let refuse = |problem| FlagError::BadSetting {
            flag: setting.flag.clone(),
            problem,
        };
        let name =
            FlagName::parse(&setting.flag).map_err(|e| refuse(SettingProblem::BadName(e)))?;
        if let Some(rollout) = setting.rollout.filter(|p| *p > 100) {
            return Err(refuse(SettingProblem::Rollout(rollout)));
        }
        if !seen.insert(name.clone()) {
            return Err(refuse(SettingProblem::Duplicate));
        }
        names.push(name);
    }
    Ok(names)
}

impl Planned {
    /// The flag's state here once the setting is applied to `current` (see the module
    /// documentation).
    fn applied_to(&self, current: &EnvironmentState) -> EnvironmentState {
        let mut next = current.clone();
        next.enabled = self.enabled;
        match &self.rollout {
            Some(rollout) => next.strategies = rollout.clone(),
            None if self.enabled => next.strategies = Vec::new(),
            None => {}
        }
        next
    }
}

/// One gradual rollout to `percent` % of users, as the flags page sets it: Unleash's
/// `flexibleRollout`, sticky on the user id (else the session id), grouped by the flag's name so
/// that a user keeps their bucket when the percentage changes.
fn gradual_rollout(flag: &FlagName, percent: u8) -> Result<Vec<Strategy>, FlagError> {
    let strategy = Strategy {
        name: "flexibleRollout".into(),
        sort_order: None,
        parameters: [
            ("rollout", percent.to_string()),
            ("stickiness", "default".to_owned()),
            ("groupId", flag.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect(),
        constraints: Vec::new(),
        segments: Vec::new(),
        variants: Vec::new(),
    };
    Ok(Strategies::new(vec![strategy])?.as_slice().to_vec())
}

/// A flag's state here in a line, as the audit page shows it before → after: "on for 10 % of
/// users (by userId, else sessionId)", "off".
fn described(state: &EnvironmentState) -> String {
    let who = if state.strategies.is_empty() {
        "everyone".to_owned()
    } else {
        let who: Vec<String> = state.strategies.iter().map(describe_strategy).collect();
        who.join(" or ")
    };
    match (state.enabled, state.strategies.is_empty()) {
        (true, _) => format!("on for {who}"),
        (false, true) => "off".to_owned(),
        (false, false) => format!("off (when on: {who})"),
    }
}

async fn newest_version(
    conn: &mut PgConnection,
    environment: EnvironmentId,
) -> Result<i64, sqlx::Error> {
    let version = sqlx::query_scalar!(
        "select max(version) from flag_snapshot where environment_id = $1",
        environment.0
    )
    .fetch_one(&mut *conn)
    .await?;
    Ok(version.unwrap_or(0))
}
