//! What changed between two states of an environment's flags, in lines a person reads:
//!
//! ```text
//! smart-reminders: off → on
//! smart-reminders: rollout 10% → 50%
//! checkout-v2: variant blue weight 500 → 700
//! dark-mode: added (off)
//! segment beta-users: constraint plan IN [pro] added
//! ```
//!
//! Strategies have no identity in Unleash's format, so the n-th strategy of one kind in the
//! first state is compared with the n-th of that kind in the second; a strategy is named by its
//! kind, and by its number among its kind when a flag has several ("user IDs #2").

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use super::model::{
    ClientFeature, ClientFeatures, Constraint, Dependency, Segment, Strategy, Variant,
};

/// One difference between two states.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlagDiff {
    pub subject: Subject,
    pub change: Change,
}

/// What changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Subject {
    Flag { name: String },
    Segment { id: i32, name: Option<String> },
}

/// How it changed. `strategy` names a strategy as the flag's page does ("gradual rollout",
/// "user IDs #2"); `None` there means the flag itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    /// The flag is new.
    Added {
        enabled: bool,
    },
    /// The flag is gone (archived).
    Removed,
    Enabled {
        from: bool,
        to: bool,
    },
    /// A rollout percentage.
    Rollout {
        strategy: String,
        from: String,
        to: String,
    },
    /// Any other strategy parameter (stickiness, groupId, userIds, IPs, hostNames).
    Parameter {
        strategy: String,
        parameter: String,
        from: Option<String>,
        to: Option<String>,
    },
    StrategyAdded {
        strategy: String,
    },
    StrategyRemoved {
        strategy: String,
    },
    /// The same strategies in another order (which decides whose variants a user gets).
    StrategiesReordered,
    ConstraintAdded {
        strategy: Option<String>,
        constraint: String,
    },
    ConstraintRemoved {
        strategy: Option<String>,
        constraint: String,
    },
    /// The segments a strategy requires.
    Segments {
        strategy: String,
        from: Vec<String>,
        to: Vec<String>,
    },
    VariantAdded {
        strategy: Option<String>,
        variant: String,
        weight: i32,
    },
    VariantRemoved {
        strategy: Option<String>,
        variant: String,
    },
    VariantWeight {
        strategy: Option<String>,
        variant: String,
        from: i32,
        to: i32,
    },
    VariantPayload {
        strategy: Option<String>,
        variant: String,
        from: Option<String>,
        to: Option<String>,
    },
    /// Stickiness or overrides of a variant.
    VariantSettings {
        strategy: Option<String>,
        variant: String,
    },
    Description {
        from: String,
        to: String,
    },
    FlagType {
        from: String,
        to: String,
    },
    Stale {
        from: bool,
        to: bool,
    },
    ImpressionData {
        from: bool,
        to: bool,
    },
    /// The flags this flag needs.
    Dependencies {
        from: Vec<String>,
        to: Vec<String>,
    },
    /// A segment's name.
    Renamed {
        from: String,
        to: String,
    },
}

impl fmt::Display for FlagDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.subject {
            Subject::Flag { name } => write!(f, "{name}: {}", self.change),
            Subject::Segment {
                id,
                name: Some(name),
            } => {
                write!(f, "segment {name} ({id}): {}", self.change)
            }
            Subject::Segment { id, name: None } => write!(f, "segment {id}: {}", self.change),
        }
    }
}

fn on_off(on: bool) -> &'static str {
    if on { "on" } else { "off" }
}

fn or_none(value: &Option<String>) -> &str {
    value.as_deref().unwrap_or("none")
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}

/// "variant blue", or "gradual rollout: variant blue" for a strategy's variant.
struct VariantName<'a>(&'a Option<String>, &'a str);

impl fmt::Display for VariantName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(strategy) => write!(f, "{strategy}: variant {}", self.1),
            None => write!(f, "variant {}", self.1),
        }
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Added { enabled } => write!(f, "added ({})", on_off(*enabled)),
            Change::Removed => f.write_str("removed"),
            Change::Enabled { from, to } => write!(f, "{} → {}", on_off(*from), on_off(*to)),
            Change::Rollout { strategy, from, to } if strategy.contains('#') => {
                write!(f, "{strategy}: rollout {from}% → {to}%")
            }
            Change::Rollout { from, to, .. } => write!(f, "rollout {from}% → {to}%"),
            Change::Parameter {
                strategy,
                parameter,
                from,
                to,
            } => write!(
                f,
                "{strategy}: {parameter} {} → {}",
                or_none(from),
                or_none(to)
            ),
            Change::StrategyAdded { strategy } => write!(f, "strategy {strategy} added"),
            Change::StrategyRemoved { strategy } => write!(f, "strategy {strategy} removed"),
            Change::StrategiesReordered => f.write_str("strategies reordered"),
            Change::ConstraintAdded {
                strategy: Some(strategy),
                constraint,
            } => write!(f, "{strategy}: constraint {constraint} added"),
            Change::ConstraintAdded { constraint, .. } => {
                write!(f, "constraint {constraint} added")
            }
            Change::ConstraintRemoved {
                strategy: Some(strategy),
                constraint,
            } => write!(f, "{strategy}: constraint {constraint} removed"),
            Change::ConstraintRemoved { constraint, .. } => {
                write!(f, "constraint {constraint} removed")
            }
            Change::Segments { strategy, from, to } => {
                write!(f, "{strategy}: segments {} → {}", list(from), list(to))
            }
            Change::VariantAdded {
                strategy,
                variant,
                weight,
            } => write!(
                f,
                "{} added (weight {weight})",
                VariantName(strategy, variant)
            ),
            Change::VariantRemoved { strategy, variant } => {
                write!(f, "{} removed", VariantName(strategy, variant))
            }
            Change::VariantWeight {
                strategy,
                variant,
                from,
                to,
            } => write!(f, "{} weight {from} → {to}", VariantName(strategy, variant)),
            Change::VariantPayload {
                strategy,
                variant,
                from,
                to,
            } => write!(
                f,
                "{} payload {} → {}",
                VariantName(strategy, variant),
                or_none(from),
                or_none(to)
            ),
            Change::VariantSettings { strategy, variant } => write!(
                f,
                "{} stickiness or overrides changed",
                VariantName(strategy, variant)
            ),
            Change::Description { from, to } => write!(f, "description {from:?} → {to:?}"),
            Change::FlagType { from, to } => write!(f, "type {from} → {to}"),
            Change::Stale { to: true, .. } => f.write_str("marked stale"),
            Change::Stale { .. } => f.write_str("no longer stale"),
            Change::ImpressionData { from, to } => {
                write!(f, "impression data {} → {}", on_off(*from), on_off(*to))
            }
            Change::Dependencies { from, to } => {
                write!(f, "needs {} → {}", list(from), list(to))
            }
            Change::Renamed { from, to } => write!(f, "renamed {from} → {to}"),
        }
    }
}

/// Every difference from `before` to `after`: flags in name order, then segments by id.
pub fn diff(before: &ClientFeatures, after: &ClientFeatures) -> Vec<FlagDiff> {
    let mut out = Vec::new();
    let old: BTreeMap<&str, &ClientFeature> = before
        .features
        .iter()
        .map(|f| (f.name.as_str(), f))
        .collect();
    let new: BTreeMap<&str, &ClientFeature> = after
        .features
        .iter()
        .map(|f| (f.name.as_str(), f))
        .collect();
    let names: BTreeSet<&str> = old.keys().chain(new.keys()).copied().collect();
    let old_segments = segment_names(&before.segments);
    let new_segments = segment_names(&after.segments);
    for name in names {
        let mut changes = Vec::new();
        match (old.get(name), new.get(name)) {
            (None, Some(flag)) => changes.push(Change::Added {
                enabled: flag.enabled,
            }),
            (Some(_), None) => changes.push(Change::Removed),
            (Some(a), Some(b)) => flag_changes(a, b, (&old_segments, &new_segments), &mut changes),
            (None, None) => {}
        }
        out.extend(changes.into_iter().map(|change| FlagDiff {
            subject: Subject::Flag {
                name: name.to_owned(),
            },
            change,
        }));
    }
    let old_by_id: BTreeMap<i32, &Segment> = before.segments.iter().map(|s| (s.id, s)).collect();
    for segment in &after.segments {
        let Some(previous) = old_by_id.get(&segment.id) else {
            continue;
        };
        let mut changes = Vec::new();
        if let (Some(from), Some(to)) = (&previous.name, &segment.name)
            && from != to
        {
            changes.push(Change::Renamed {
                from: from.clone(),
                to: to.clone(),
            });
        }
        constraint_changes(
            &previous.constraints,
            &segment.constraints,
            None,
            &mut changes,
        );
        out.extend(changes.into_iter().map(|change| FlagDiff {
            subject: Subject::Segment {
                id: segment.id,
                name: segment.name.clone(),
            },
            change,
        }));
    }
    out
}

type SegmentNames = BTreeMap<i32, String>;

fn segment_names(segments: &[Segment]) -> SegmentNames {
    segments
        .iter()
        .map(|s| (s.id, s.name.clone().unwrap_or_else(|| s.id.to_string())))
        .collect()
}

fn flag_changes(
    a: &ClientFeature,
    b: &ClientFeature,
    segments: (&SegmentNames, &SegmentNames),
    out: &mut Vec<Change>,
) {
    if a.enabled != b.enabled {
        out.push(Change::Enabled {
            from: a.enabled,
            to: b.enabled,
        });
    }
    strategy_changes(&a.strategies, &b.strategies, segments, out);
    variant_changes(&a.variants, &b.variants, None, out);
    if a.impression_data != b.impression_data {
        out.push(Change::ImpressionData {
            from: a.impression_data,
            to: b.impression_data,
        });
    }
    let (from, to) = (dependencies(&a.dependencies), dependencies(&b.dependencies));
    if from != to {
        out.push(Change::Dependencies { from, to });
    }
    if a.description != b.description {
        out.push(Change::Description {
            from: a.description.clone().unwrap_or_default(),
            to: b.description.clone().unwrap_or_default(),
        });
    }
    if a.feature_type != b.feature_type {
        out.push(Change::FlagType {
            from: a.feature_type.clone().unwrap_or_default(),
            to: b.feature_type.clone().unwrap_or_default(),
        });
    }
    if a.stale != b.stale {
        out.push(Change::Stale {
            from: a.stale,
            to: b.stale,
        });
    }
}

fn dependencies(dependencies: &[Dependency]) -> Vec<String> {
    dependencies
        .iter()
        .map(|d| match (d.enabled, d.variants.as_deref()) {
            (Some(false), _) => format!("{} off", d.feature),
            (_, Some(variants)) if !variants.is_empty() => {
                format!("{} variant {}", d.feature, variants.join("|"))
            }
            _ => d.feature.clone(),
        })
        .collect()
}

/// How a person names a strategy kind.
fn kind_label(name: &str) -> &str {
    match name {
        "default" => "standard",
        "flexibleRollout" => "gradual rollout",
        "userWithId" => "user IDs",
        "gradualRolloutUserId" => "rollout by user id",
        "gradualRolloutSessionId" => "rollout by session",
        "gradualRolloutRandom" => "random rollout",
        "remoteAddress" => "IP addresses",
        "applicationHostname" => "hostnames",
        custom => custom,
    }
}

/// Each strategy's key (its kind and its number among that kind) and label.
fn keyed(strategies: &[Strategy]) -> Vec<((&str, usize), &Strategy)> {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    strategies
        .iter()
        .map(|s| {
            let n = seen.entry(s.name.as_str()).or_default();
            *n += 1;
            ((s.name.as_str(), *n), s)
        })
        .collect()
}

fn label(key: (&str, usize), several: bool) -> String {
    if several {
        format!("{} #{}", kind_label(key.0), key.1)
    } else {
        kind_label(key.0).to_owned()
    }
}

fn strategy_changes(
    a: &[Strategy],
    b: &[Strategy],
    (old_segments, new_segments): (&SegmentNames, &SegmentNames),
    out: &mut Vec<Change>,
) {
    let old = keyed(a);
    let new = keyed(b);
    let count = |list: &[((&str, usize), &Strategy)], kind: &str| {
        list.iter().filter(|((k, _), _)| *k == kind).count()
    };
    let several = |kind: &str| count(&old, kind).max(count(&new, kind)) > 1;
    let old_map: BTreeMap<(&str, usize), &Strategy> = old.iter().copied().collect();
    let new_map: BTreeMap<(&str, usize), &Strategy> = new.iter().copied().collect();
    for (key, before) in &old {
        if !new_map.contains_key(key) {
            out.push(Change::StrategyRemoved {
                strategy: label(*key, several(key.0)),
            });
            continue;
        }
        let after = new_map[key];
        let name = label(*key, several(key.0));
        let keys: BTreeSet<&String> = before
            .parameters
            .keys()
            .chain(after.parameters.keys())
            .collect();
        for parameter in keys {
            let (from, to) = (
                before.parameters.get(parameter),
                after.parameters.get(parameter),
            );
            if from == to {
                continue;
            }
            let is_percent = matches!(parameter.as_str(), "rollout" | "percentage");
            match (from, to) {
                (Some(from), Some(to)) if is_percent => out.push(Change::Rollout {
                    strategy: name.clone(),
                    from: from.clone(),
                    to: to.clone(),
                }),
                _ => out.push(Change::Parameter {
                    strategy: name.clone(),
                    parameter: parameter.clone(),
                    from: from.cloned(),
                    to: to.cloned(),
                }),
            }
        }
        constraint_changes(&before.constraints, &after.constraints, Some(&name), out);
        if before.segments != after.segments {
            let names = |ids: &[i32], names: &SegmentNames| {
                ids.iter()
                    .map(|id| names.get(id).cloned().unwrap_or_else(|| id.to_string()))
                    .collect()
            };
            out.push(Change::Segments {
                strategy: name.clone(),
                from: names(&before.segments, old_segments),
                to: names(&after.segments, new_segments),
            });
        }
        variant_changes(&before.variants, &after.variants, Some(&name), out);
    }
    for (key, _) in &new {
        if !old_map.contains_key(key) {
            out.push(Change::StrategyAdded {
                strategy: label(*key, several(key.0)),
            });
        }
    }
    if common_order(&old, &new_map) != common_order(&new, &old_map) {
        out.push(Change::StrategiesReordered);
    }
}

/// The keys of `list` that `other` has too, in `list`'s order.
fn common_order<'a>(
    list: &[((&'a str, usize), &Strategy)],
    other: &BTreeMap<(&str, usize), &Strategy>,
) -> Vec<(&'a str, usize)> {
    list.iter()
        .map(|(key, _)| *key)
        .filter(|key| other.contains_key(key))
        .collect()
}

/// A constraint as one line: `NOT country IN [NO, SE]`, `appVersion SEMVER_GT 2.0.0`.
pub fn describe_constraint(constraint: &Constraint) -> String {
    let operand = if constraint.values.is_empty() {
        constraint.value.clone().unwrap_or_default()
    } else {
        format!("[{}]", constraint.values.join(", "))
    };
    format!(
        "{}{} {} {}{}",
        if constraint.inverted { "NOT " } else { "" },
        constraint.context_name,
        constraint.operator,
        operand,
        if constraint.case_insensitive {
            " (any case)"
        } else {
            ""
        }
    )
}

fn constraint_changes(
    a: &[Constraint],
    b: &[Constraint],
    strategy: Option<&String>,
    out: &mut Vec<Change>,
) {
    let old: Vec<String> = a.iter().map(describe_constraint).collect();
    let new: Vec<String> = b.iter().map(describe_constraint).collect();
    let mut unmatched = new.clone();
    for constraint in &old {
        match unmatched.iter().position(|c| c == constraint) {
            Some(found) => {
                unmatched.remove(found);
            }
            None => out.push(Change::ConstraintRemoved {
                strategy: strategy.cloned(),
                constraint: constraint.clone(),
            }),
        }
    }
    out.extend(
        unmatched
            .into_iter()
            .map(|constraint| Change::ConstraintAdded {
                strategy: strategy.cloned(),
                constraint,
            }),
    );
}

fn variant_changes(a: &[Variant], b: &[Variant], strategy: Option<&String>, out: &mut Vec<Change>) {
    let strategy = strategy.cloned();
    let new: BTreeMap<&str, &Variant> = b.iter().map(|v| (v.name.as_str(), v)).collect();
    let old: BTreeMap<&str, &Variant> = a.iter().map(|v| (v.name.as_str(), v)).collect();
    for before in a {
        let Some(after) = new.get(before.name.as_str()) else {
            out.push(Change::VariantRemoved {
                strategy: strategy.clone(),
                variant: before.name.clone(),
            });
            continue;
        };
        if before.weight != after.weight {
            out.push(Change::VariantWeight {
                strategy: strategy.clone(),
                variant: before.name.clone(),
                from: before.weight,
                to: after.weight,
            });
        }
        if before.payload != after.payload {
            out.push(Change::VariantPayload {
                strategy: strategy.clone(),
                variant: before.name.clone(),
                from: before.payload.as_ref().map(|p| p.value.clone()),
                to: after.payload.as_ref().map(|p| p.value.clone()),
            });
        }
        // The weight type only says how the weight was set; the weight itself is compared above.
        if before.stickiness != after.stickiness || before.overrides != after.overrides {
            out.push(Change::VariantSettings {
                strategy: strategy.clone(),
                variant: before.name.clone(),
            });
        }
    }
    for after in b {
        if !old.contains_key(after.name.as_str()) {
            out.push(Change::VariantAdded {
                strategy: strategy.clone(),
                variant: after.name.clone(),
                weight: after.weight,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn state(value: serde_json::Value) -> ClientFeatures {
        serde_json::from_value(value).unwrap()
    }

    fn lines(a: &ClientFeatures, b: &ClientFeatures) -> Vec<String> {
        diff(a, b).iter().map(ToString::to_string).collect()
    }

    #[test]
    fn the_same_state_has_no_differences() {
        let a = state(json!({"features": [{"name": "a", "enabled": true,
            "strategies": [{"name": "flexibleRollout", "parameters": {"rollout": "10"}}]}]}));
        assert!(diff(&a, &a).is_empty());
    }

    #[test]
    fn toggles_rollouts_and_weights_read_as_sentences() {
        let a = state(json!({"features": [
            {"name": "smart-reminders", "enabled": false,
             "strategies": [{"name": "flexibleRollout", "parameters": {"rollout": "10", "stickiness": "default"}}],
             "variants": [{"name": "blue", "weight": 500}, {"name": "green", "weight": 500}]},
            {"name": "old", "enabled": true}]}));
        let b = state(json!({"features": [
            {"name": "smart-reminders", "enabled": true,
             "strategies": [{"name": "flexibleRollout", "parameters": {"rollout": "50", "stickiness": "userId"},
                             "constraints": [{"contextName": "plan", "operator": "IN", "values": ["pro"]}]}],
             "variants": [{"name": "blue", "weight": 700}, {"name": "green", "weight": 300}]},
            {"name": "new", "enabled": false}]}));
        assert_eq!(
            lines(&a, &b),
            [
                "new: added (off)",
                "old: removed",
                "smart-reminders: off → on",
                "smart-reminders: rollout 10% → 50%",
                "smart-reminders: gradual rollout: stickiness default → userId",
                "smart-reminders: gradual rollout: constraint plan IN [pro] added",
                "smart-reminders: variant blue weight 500 → 700",
                "smart-reminders: variant green weight 500 → 300",
            ]
        );
    }

    #[test]
    fn several_strategies_of_one_kind_are_numbered() {
        let a = state(
            json!({"features": [{"name": "f", "enabled": true, "strategies": [
            {"name": "userWithId", "parameters": {"userIds": "a"}},
            {"name": "userWithId", "parameters": {"userIds": "b"}}]}]}),
        );
        let b = state(
            json!({"features": [{"name": "f", "enabled": true, "strategies": [
            {"name": "userWithId", "parameters": {"userIds": "a"}}]}]}),
        );
        assert_eq!(lines(&a, &b), ["f: strategy user IDs #2 removed"]);
    }

    #[test]
    fn segment_constraints_are_compared_by_id() {
        let a = state(
            json!({"features": [], "segments": [{"id": 1, "name": "beta", "constraints": [
            {"contextName": "plan", "operator": "IN", "values": ["pro"]}]}]}),
        );
        let b = state(
            json!({"features": [], "segments": [{"id": 1, "name": "beta", "constraints": [
            {"contextName": "plan", "operator": "IN", "values": ["pro", "team"]}]}]}),
        );
        assert_eq!(
            lines(&a, &b),
            [
                "segment beta (1): constraint plan IN [pro] removed",
                "segment beta (1): constraint plan IN [pro, team] added",
            ]
        );
    }
}
