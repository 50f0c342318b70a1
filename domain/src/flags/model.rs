//! The `/api/client/features` payload (Unleash client API v2) and its delta events, as serde types.
//!
//! These types mirror the wire format field by field so that a payload read from Unleash, or from
//! the client-specification suite, serializes back to the same shape. Lists that Unleash may send
//! as `null` read as empty. Strategy parameters are strings on the wire; old servers sometimes sent
//! numbers or booleans there, so those are read as their text.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

/// A `/api/client/features` body: every flag of one environment, and the segments they use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientFeatures {
    /// The payload version; Unleash sends 2 (segments are sent apart from strategies).
    #[serde(default = "default_version")]
    pub version: u32,
    pub features: Vec<ClientFeature>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub segments: Vec<Segment>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<serde_json::Value>,
}

fn default_version() -> u32 {
    2
}

/// One flag, with everything an SDK needs to evaluate it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientFeature {
    pub name: String,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub feature_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub enabled: bool,
    #[serde(default, deserialize_with = "null_as_default")]
    pub stale: bool,
    #[serde(default, deserialize_with = "null_as_default")]
    pub impression_data: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// Empty means "on for everyone" when the flag is enabled.
    #[serde(default, deserialize_with = "null_as_default")]
    pub strategies: Vec<Strategy>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub variants: Vec<Variant>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub dependencies: Vec<Dependency>,
}

/// One activation strategy of a flag; the flag is on when any of its strategies matches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Strategy {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sort_order: Option<i32>,
    #[serde(default, deserialize_with = "parameters")]
    pub parameters: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub constraints: Vec<Constraint>,
    /// Ids of segments whose constraints must all hold too.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub segments: Vec<i32>,
    /// Variants that win over the flag's own when this strategy is the one that matched.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub variants: Vec<Variant>,
}

/// A named, reusable list of constraints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    pub id: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub constraints: Vec<Constraint>,
}

/// A condition on one context field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Constraint {
    pub context_name: String,
    pub operator: Operator,
    /// The operands of list operators (IN, NOT_IN, STR_*, IN_CIDR).
    #[serde(default, deserialize_with = "null_as_default")]
    pub values: Vec<String>,
    /// The operand of single-value operators (NUM_*, DATE_*, SEMVER_*, REGEX).
    #[serde(
        default,
        deserialize_with = "lenient_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub value: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub inverted: bool,
    #[serde(default, deserialize_with = "null_as_default")]
    pub case_insensitive: bool,
}

/// A constraint operator, as Unleash names it on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum Operator {
    /// The field's value is one of `values`.
    In,
    /// The field is missing, or its value is none of `values`.
    NotIn,
    /// The field starts with one of `values`.
    StrStartsWith,
    /// The field ends with one of `values`.
    StrEndsWith,
    /// The field contains one of `values`.
    StrContains,
    /// The field, read as a number, equals `value`.
    NumEq,
    /// The field, read as a number, is greater than `value`.
    NumGt,
    /// The field, read as a number, is greater than or equal to `value`.
    NumGte,
    /// The field, read as a number, is less than `value`.
    NumLt,
    /// The field, read as a number, is less than or equal to `value`.
    NumLte,
    /// The field, read as an RFC 3339 time, is after `value`.
    DateAfter,
    /// The field, read as an RFC 3339 time, is before `value`.
    DateBefore,
    /// The field, read as a strict semantic version, equals `value`.
    SemverEq,
    /// The field, read as a strict semantic version, is greater than `value`.
    SemverGt,
    /// The field, read as a strict semantic version, is greater than or equal to `value`.
    SemverGte,
    /// The field, read as a strict semantic version, is less than `value`.
    SemverLt,
    /// The field, read as a strict semantic version, is less than or equal to `value`.
    SemverLte,
    /// The field matches the regular expression in `value`.
    Regex,
    /// The field is an IP address inside one of the addresses or CIDR ranges in `values`.
    InCidr,
    /// An operator this evaluator does not know (kept for re-serialization); it never matches.
    Other(String),
}

impl Operator {
    pub fn as_str(&self) -> &str {
        match self {
            Operator::In => "IN",
            Operator::NotIn => "NOT_IN",
            Operator::StrStartsWith => "STR_STARTS_WITH",
            Operator::StrEndsWith => "STR_ENDS_WITH",
            Operator::StrContains => "STR_CONTAINS",
            Operator::NumEq => "NUM_EQ",
            Operator::NumGt => "NUM_GT",
            Operator::NumGte => "NUM_GTE",
            Operator::NumLt => "NUM_LT",
            Operator::NumLte => "NUM_LTE",
            Operator::DateAfter => "DATE_AFTER",
            Operator::DateBefore => "DATE_BEFORE",
            Operator::SemverEq => "SEMVER_EQ",
            Operator::SemverGt => "SEMVER_GT",
            Operator::SemverGte => "SEMVER_GTE",
            Operator::SemverLt => "SEMVER_LT",
            Operator::SemverLte => "SEMVER_LTE",
            Operator::Regex => "REGEX",
            Operator::InCidr => "IN_CIDR",
            Operator::Other(name) => name,
        }
    }
}

impl From<String> for Operator {
    fn from(name: String) -> Self {
        match name.as_str() {
            "IN" => Operator::In,
            "NOT_IN" => Operator::NotIn,
            "STR_STARTS_WITH" => Operator::StrStartsWith,
            "STR_ENDS_WITH" => Operator::StrEndsWith,
            "STR_CONTAINS" => Operator::StrContains,
            "NUM_EQ" => Operator::NumEq,
            "NUM_GT" => Operator::NumGt,
            "NUM_GTE" => Operator::NumGte,
            "NUM_LT" => Operator::NumLt,
            "NUM_LTE" => Operator::NumLte,
            "DATE_AFTER" => Operator::DateAfter,
            "DATE_BEFORE" => Operator::DateBefore,
            "SEMVER_EQ" => Operator::SemverEq,
            "SEMVER_GT" => Operator::SemverGt,
            "SEMVER_GTE" => Operator::SemverGte,
            "SEMVER_LT" => Operator::SemverLt,
            "SEMVER_LTE" => Operator::SemverLte,
            "REGEX" => Operator::Regex,
            "IN_CIDR" => Operator::InCidr,
            _ => Operator::Other(name),
        }
    }
}

impl From<Operator> for String {
    fn from(operator: Operator) -> Self {
        match operator {
            Operator::Other(name) => name,
            known => known.as_str().to_owned(),
        }
    }
}

impl fmt::Display for Operator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One variant of a flag or of a strategy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Variant {
    pub name: String,
    /// Share of the total weight (Unleash makes the weights of a flag add up to 1000).
    #[serde(default)]
    pub weight: i32,
    /// `variable` or `fix`: how the Unleash UI spreads weight; evaluation ignores it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight_type: Option<String>,
    /// The context field that keeps a user on the same variant; see `Stickiness`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stickiness: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Payload>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub overrides: Vec<Override>,
}

/// Pins the variant for contexts whose `context_name` field is one of `values`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Override {
    pub context_name: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub values: Vec<String>,
}

/// The data a variant carries to the application.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payload {
    #[serde(rename = "type")]
    pub kind: PayloadKind,
    /// Always text on the wire, whatever the kind.
    pub value: String,
}

/// How the application should read a payload's text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum PayloadKind {
    /// Plain text.
    String,
    /// A JSON document.
    Json,
    /// Comma-separated values.
    Csv,
    /// A number written as text.
    Number,
    /// A kind this evaluator does not know; passed through untouched.
    Other(String),
}

impl From<String> for PayloadKind {
    fn from(kind: String) -> Self {
        match kind.as_str() {
            "string" => PayloadKind::String,
            "json" => PayloadKind::Json,
            "csv" => PayloadKind::Csv,
            "number" => PayloadKind::Number,
            _ => PayloadKind::Other(kind),
        }
    }
}

impl From<PayloadKind> for String {
    fn from(kind: PayloadKind) -> Self {
        match kind {
            PayloadKind::String => "string".to_owned(),
            PayloadKind::Json => "json".to_owned(),
            PayloadKind::Csv => "csv".to_owned(),
            PayloadKind::Number => "number".to_owned(),
            PayloadKind::Other(kind) => kind,
        }
    }
}

/// A parent flag this flag needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dependency {
    pub feature: String,
    /// The parent state needed; absent means on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// When non-empty, the parent's variant must be one of these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variants: Option<Vec<String>>,
}

/// A `/api/client/delta` body: changes to apply, in order, to a `ClientFeatures`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientFeaturesDelta {
    pub events: Vec<DeltaEvent>,
}

/// One change in a delta.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum DeltaEvent {
    /// The whole state: replaces every flag and segment.
    #[serde(rename_all = "camelCase")]
    Hydration {
        event_id: u64,
        features: Vec<ClientFeature>,
        #[serde(default, deserialize_with = "null_as_default")]
        segments: Vec<Segment>,
    },
    /// A flag was created or changed.
    #[serde(rename_all = "camelCase")]
    FeatureUpdated {
        event_id: u64,
        feature: ClientFeature,
    },
    /// A flag was deleted or archived.
    #[serde(rename_all = "camelCase")]
    FeatureRemoved {
        event_id: u64,
        feature_name: String,
        project: String,
    },
    /// A segment was created or changed.
    #[serde(rename_all = "camelCase")]
    SegmentUpdated { event_id: u64, segment: Segment },
    /// A segment was deleted.
    #[serde(rename_all = "camelCase")]
    SegmentRemoved { event_id: u64, segment_id: i32 },
}

impl ClientFeatures {
    /// The state a delta stream describes, starting from nothing.
    pub fn from_delta(delta: ClientFeaturesDelta) -> Self {
        let mut state = ClientFeatures {
            version: default_version(),
            features: Vec::new(),
            segments: Vec::new(),
            query: None,
            meta: None,
        };
        for event in delta.events {
            state.apply(event);
        }
        state
    }

    /// Applies one delta event; an update replaces the flag or segment of the same name or id.
    pub fn apply(&mut self, event: DeltaEvent) {
        match event {
            DeltaEvent::Hydration {
                features, segments, ..
            } => {
                self.features = features;
                self.segments = segments;
            }
            DeltaEvent::FeatureUpdated { feature, .. } => {
                match self.features.iter_mut().find(|f| f.name == feature.name) {
                    Some(existing) => *existing = feature,
                    None => self.features.push(feature),
                }
            }
            DeltaEvent::FeatureRemoved { feature_name, .. } => {
                self.features.retain(|f| f.name != feature_name);
            }
            DeltaEvent::SegmentUpdated { segment, .. } => {
                match self.segments.iter_mut().find(|s| s.id == segment.id) {
                    Some(existing) => *existing = segment,
                    None => self.segments.push(segment),
                }
            }
            DeltaEvent::SegmentRemoved { segment_id, .. } => {
                self.segments.retain(|s| s.id != segment_id);
            }
        }
    }
}

fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// A scalar read as its text: strings as they are, numbers and booleans as JSON writes them.
#[derive(Deserialize)]
#[serde(untagged)]
enum Scalar {
    Text(String),
    Number(serde_json::Number),
    Flag(bool),
}

impl Scalar {
    fn into_text(self) -> String {
        match self {
            Scalar::Text(text) => text,
            Scalar::Number(number) => number.to_string(),
            Scalar::Flag(flag) => flag.to_string(),
        }
    }
}

fn lenient_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<Scalar>::deserialize(deserializer)?.map(Scalar::into_text))
}

/// Strategy parameters; a `null` parameter is left out.
fn parameters<'de, D>(deserializer: D) -> Result<BTreeMap<String, String>, D::Error>
where
    D: Deserializer<'de>,
{
    let raw = Option::<BTreeMap<String, Option<Scalar>>>::deserialize(deserializer)?;
    Ok(raw
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(name, value)| value.map(|v| (name, v.into_text())))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_operators_survive_a_round_trip() {
        let json = r#"{"contextName":"x","operator":"NOT_A_VALID_OPERATOR","values":[],"inverted":false,"caseInsensitive":false}"#;
        let constraint: Constraint = serde_json::from_str(json).unwrap();
        assert_eq!(
            constraint.operator,
            Operator::Other("NOT_A_VALID_OPERATOR".into())
        );
        assert_eq!(serde_json::to_string(&constraint).unwrap(), json);
    }

    #[test]
    fn numeric_parameters_and_null_lists_are_tolerated() {
        let strategy: Strategy = serde_json::from_str(
            r#"{"name":"flexibleRollout","parameters":{"rollout":50,"groupId":null},"constraints":null}"#,
        )
        .unwrap();
        assert_eq!(
            strategy.parameters.get("rollout").map(String::as_str),
            Some("50")
        );
        assert!(!strategy.parameters.contains_key("groupId"));
        assert!(strategy.constraints.is_empty());
    }

    #[test]
    fn delta_events_update_and_remove_flags_and_segments() {
        let delta: ClientFeaturesDelta = serde_json::from_str(
            r#"{"events":[
              {"eventId":1,"type":"hydration","features":[{"name":"a","enabled":true}],"segments":[{"id":1,"constraints":[]}]},
              {"eventId":2,"type":"feature-updated","feature":{"name":"a","enabled":false}},
              {"eventId":3,"type":"feature-updated","feature":{"name":"b","enabled":true}},
              {"eventId":4,"type":"feature-removed","featureName":"b","project":"default"},
              {"eventId":5,"type":"segment-removed","segmentId":1}
            ]}"#,
        )
        .unwrap();
        let state = ClientFeatures::from_delta(delta);
        assert_eq!(state.features.len(), 1);
        assert!(!state.features[0].enabled);
        assert!(state.segments.is_empty());
    }
}
