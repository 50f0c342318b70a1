//! What a new definition changes in who may deploy: each environment's `protection` and
//! `deploy_window`, and the project's `rollback` policy. Such a change needs a release manager
//! (see [`super::rules`]), is shown as this list before it applies, and is audited with each
//! item's before and after.

use crate::definition::{Definition, DeployWindow, Protection, RollbackPolicy, format_duration};
use serde::Serialize;
use serde_json::{Value, json};

/// One rule that changes, in words and as values.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GovernanceChange {
    /// "production: required approvals and allowed roles", "the rollback policy".
    pub what: String,
    pub before: Value,
    pub after: Value,
}

/// Every governance rule that differs between the current definition and a new one. Rules of
/// environments the new definition adds are not changes (nothing was protected before); an
/// environment it drops loses its rules, which is one.
pub fn changes(before: &Definition, after: &Definition) -> Vec<GovernanceChange> {
    let mut changes = Vec::new();
    for old in before.environments() {
        let name = old.name.as_str();
        let new = after.environment(name);
        let new_protection = new.map(|e| protection(&e.protection));
        let old_protection = protection(&old.protection);
        if new_protection.as_ref() != Some(&old_protection) {
            changes.push(GovernanceChange {
                what: format!("{name}: protection (required approvals, allowed roles)"),
                before: old_protection,
                after: new_protection.unwrap_or(Value::Null),
            });
        }
        let old_window = window(old.deploy_window.as_ref());
        let new_window = new.map(|e| window(e.deploy_window.as_ref()));
        if new_window.as_ref().unwrap_or(&Value::Null) != &old_window {
            changes.push(GovernanceChange {
                what: format!("{name}: deploy window"),
                before: old_window,
                after: new_window.unwrap_or(Value::Null),
            });
        }
    }
    let (old_rollback, new_rollback) = (rollback(before.rollback()), rollback(after.rollback()));
    if old_rollback != new_rollback {
        changes.push(GovernanceChange {
            what: "the rollback policy".into(),
            before: old_rollback,
            after: new_rollback,
        });
    }
    changes
}

fn protection(protection: &Protection) -> Value {
    json!({
        "required_approvals": protection.required_approvals,
        "allowed_roles": protection.allowed_roles,
    })
}

fn window(window: Option<&DeployWindow>) -> Value {
    window.map_or(Value::Null, |w| {
        json!({
            "schedule": w.opens.as_str(),
            "duration": format_duration(w.duration),
            "timezone": w.timezone.name(),
        })
    })
}

fn rollback(policy: &RollbackPolicy) -> Value {
    json!({
        "automatic": policy.automatic.as_ref().map(|a| json!({
            "environments": a.environments.iter().map(|e| e.as_str()).collect::<Vec<_>>(),
            "window": format_duration(a.window),
            "crash_free_sessions_below": a.on.crash_free_sessions_below,
            "error_rate_above": a.on.error_rate_above,
            "p95_latency_above": a.on.p95_latency_above.map(format_duration),
            "min_sessions": a.on.min_sessions,
        })),
        "manual_roles": policy.manual_roles,
        "restore_database": policy.restore_database,
        "restore_flags": policy.restore_flags,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
project: { name: Gov, key: gov }
phases:
  ci:
    title: CI
    stages:
      checks:
        title: Checks
        jobs:
          hello:
            steps: [echo hi]
environments:
  staging: {}
  production:
    protection:
      required_approvals: 1
      allowed_roles: [release-manager]
"#;

    fn parse(text: &str) -> Definition {
        crate::definition::parse(text).expect("valid")
    }

    #[test]
    fn a_definition_that_keeps_the_rules_changes_nothing() {
        let renamed = BASE.replace("title: Checks", "title: All checks");
        assert!(changes(&parse(BASE), &parse(&renamed)).is_empty());
    }

    #[test]
    fn protection_windows_and_the_rollback_policy_are_each_a_change() {
        let looser = BASE
            .replace("required_approvals: 1", "required_approvals: 0")
            .replace(
                "  staging: {}",
                "  staging:\n    deploy_window:\n      schedule: \"0 18 * * *\"\n      duration: 1h\n      timezone: Europe/Berlin",
            )
            + "rollback:\n  manual:\n    roles: [developer]\n";
        let found = changes(&parse(BASE), &parse(&looser));
        let whats: Vec<&str> = found.iter().map(|c| c.what.as_str()).collect();
        assert_eq!(
            whats,
            [
                "staging: deploy window",
                "production: protection (required approvals, allowed roles)",
                "the rollback policy"
            ]
        );
        assert_eq!(found[1].before["required_approvals"], 1);
        assert_eq!(found[1].after["required_approvals"], 0);
        assert_eq!(found[0].before, Value::Null);
        assert_eq!(found[0].after["timezone"], "Europe/Berlin");
    }

    #[test]
    fn dropping_a_protected_environment_is_a_change() {
        let dropped = BASE.replace(
            "  production:\n    protection:\n      required_approvals: 1\n      allowed_roles: [release-manager]\n",
            "",
        );
        let found = changes(&parse(BASE), &parse(&dropped));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].after, Value::Null);
    }
}
