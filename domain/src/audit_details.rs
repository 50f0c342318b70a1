//! An audit entry's details as a person reads them: what changed (before → after, field by
//! field), the other facts, and the JSON itself for whoever wants it. Ids that name an
//! environment are shown by its name.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// Longer values are cut (the JSON keeps them whole).
const MAX_VALUE_CHARS: usize = 160;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadableDetails {
    /// Fields whose value differs between `before` and `after`.
    pub changes: Vec<FieldChange>,
    /// Everything else, one line each.
    pub facts: Vec<Fact>,
    /// The details as stored, indented (ids named); empty when there are none.
    pub json: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldChange {
    /// A dotted path: `strategies.0.rollout`.
    pub field: String,
    /// "—" where the field was absent.
    pub before: String,
    pub after: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fact {
    pub name: String,
    pub value: String,
}

/// Reads stored details; `names` maps ids (as text) to what to call them.
pub fn readable(details: &serde_json::Value, names: &HashMap<String, String>) -> ReadableDetails {
    let details = rename(details, names);
    let serde_json::Value::Object(map) = &details else {
        return ReadableDetails {
            facts: vec![Fact {
                name: "details".into(),
                value: shown(&details),
            }],
            json: serde_json::to_string_pretty(&details).unwrap_or_default(),
            ..Default::default()
        };
    };
    if map.is_empty() {
        return ReadableDetails::default();
    }
    let mut changes = Vec::new();
    let diffed = map.contains_key("before") && map.contains_key("after");
    if let (Some(before), Some(after)) = (map.get("before"), map.get("after")) {
        let (mut old, mut new) = (BTreeMap::new(), BTreeMap::new());
        flatten("", before, &mut old);
        flatten("", after, &mut new);
        let fields: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).collect();
        for field in fields {
            let (b, a) = (old.get(field), new.get(field));
            if b != a {
                changes.push(FieldChange {
                    field: if field.is_empty() {
                        "value".to_string()
                    } else {
                        field.clone()
                    },
                    before: b.map_or_else(|| "—".to_string(), shown),
                    after: a.map_or_else(|| "—".to_string(), shown),
                });
            }
        }
    }
    let facts = map
        .iter()
        .filter(|(key, _)| !(is_diff_side(key) && diffed))
        .map(|(key, value)| Fact {
            name: key.replace('_', " "),
            value: shown(value),
        })
        .collect();
    ReadableDetails {
        changes,
        facts,
        json: serde_json::to_string_pretty(&details).unwrap_or_default(),
    }
}

fn is_diff_side(key: &str) -> bool {
    key == "before" || key == "after"
}

/// Leaves by dotted path; an empty object or list is a leaf of its own.
fn flatten(path: &str, value: &serde_json::Value, into: &mut BTreeMap<String, serde_json::Value>) {
    let join = |key: &str| {
        if path.is_empty() {
            key.to_string()
        } else {
            format!("{path}.{key}")
        }
    };
    match value {
        serde_json::Value::Object(map) if !map.is_empty() => {
            for (key, value) in map {
                flatten(&join(key), value, into);
            }
        }
        serde_json::Value::Array(items) if !items.is_empty() => {
            for (i, value) in items.iter().enumerate() {
                flatten(&join(&i.to_string()), value, into);
            }
        }
        leaf => {
            into.insert(path.to_string(), leaf.clone());
        }
    }
}

/// A value in a line: text without quotes, anything else as compact JSON, cut when long.
fn shown(value: &serde_json::Value) -> String {
    let text = match value {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "none".to_string(),
        other => other.to_string(),
    };
    if text.chars().count() > MAX_VALUE_CHARS {
        let cut: String = text.chars().take(MAX_VALUE_CHARS).collect();
        format!("{cut}…")
    } else {
        text
    }
}

/// The same value with every string that is a known id replaced by its name.
fn rename(value: &serde_json::Value, names: &HashMap<String, String>) -> serde_json::Value {
    match value {
        serde_json::Value::String(s) => match names.get(s) {
            Some(name) => serde_json::Value::String(name.clone()),
            None => value.clone(),
        },
        serde_json::Value::Array(items) => {
            serde_json::Value::Array(items.iter().map(|v| rename(v, names)).collect())
        }
        serde_json::Value::Object(map) => serde_json::Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), rename(v, names)))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn before_and_after_become_the_fields_that_changed() {
        let env = "5b3c9a1e-2f00-4c1a-9d7e-0a1b2c3d4e5f";
        let names = HashMap::from([(env.to_string(), "studybuddy/production".to_string())]);
        let details = json!({
            "before": { "enabled": false, "strategies": [{ "rollout": 10 }] },
            "after": { "enabled": true, "strategies": [{ "rollout": 25 }], "stale": true },
            "environment_id": env,
            "snapshots": [3, 4],
        });
        let readable = readable(&details, &names);
        assert_eq!(
            readable.changes,
            vec![
                FieldChange {
                    field: "enabled".into(),
                    before: "false".into(),
                    after: "true".into()
                },
                FieldChange {
                    field: "stale".into(),
                    before: "—".into(),
                    after: "true".into()
                },
                FieldChange {
                    field: "strategies.0.rollout".into(),
                    before: "10".into(),
                    after: "25".into()
                },
            ]
        );
        assert_eq!(
            readable.facts,
            vec![
                Fact {
                    name: "environment id".into(),
                    value: "studybuddy/production".into()
                },
                Fact {
                    name: "snapshots".into(),
                    value: "[3,4]".into()
                },
            ]
        );
        assert!(readable.json.contains("studybuddy/production"));
        assert!(!readable.json.contains(env));
    }

    #[test]
    fn no_details_read_as_nothing_and_long_values_are_cut() {
        assert_eq!(
            readable(&json!({}), &HashMap::new()),
            ReadableDetails::default()
        );
        let long = "x".repeat(500);
        let readable = readable(&json!({ "reason": long }), &HashMap::new());
        assert_eq!(readable.facts[0].value.chars().count(), MAX_VALUE_CHARS + 1);
        assert!(readable.json.contains(&"x".repeat(500)));
    }
}
