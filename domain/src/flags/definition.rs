//! What a flag is made of as people edit it: its name, type and details, and the strategies,
//! variants and constraints of its state in one environment, each checked when it is built.
//!
//! Strategies and constraints are checked by the evaluator itself: they are compiled into a
//! `FeatureSet`, and whatever it would have to skip at evaluation time (an unknown operator, a
//! regex that does not compile, a custom strategy) is refused here, so a stored flag evaluates
//! as written. On top of that come the rules of Unleash's admin API: rollout percentages are
//! whole numbers from 0 to 100, and a list of variants shares a total weight of 1000.
//!
//! Variant weights work as in Unleash: a variant with `"weightType": "fix"` keeps its weight,
//! and the others (`"variable"`, the default) share what is left of the 1000 evenly, the first
//! ones getting one more when it does not divide. So "blue 700, green the rest" is
//! `[{"name":"blue","weight":700,"weightType":"fix"},{"name":"green"}]`.

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::str::FromStr;

use chrono::Duration;
use serde::{Deserialize, Serialize};

use super::model::{
    ClientFeature, ClientFeatures, Constraint, Payload, PayloadKind, Segment, Strategy, Variant,
};
use super::set::{DefinitionProblem, FeatureSet};

/// The longest flag name Unleash accepts.
pub const MAX_FLAG_NAME: usize = 100;
/// Unleash's default limit of strategies per flag and environment.
pub const MAX_STRATEGIES: usize = 30;
/// More variants than any experiment needs; each one is a share of 1000.
pub const MAX_VARIANTS: usize = 100;
/// The largest strategy, variant or constraint list accepted, as JSON. Every change copies the
/// environment's whole state into a snapshot that every server process holds in memory, so one
/// flag must not be able to make that large.
pub const MAX_DEFINITION_BYTES: usize = 128 * 1024;
/// The weight all variants of one list add up to.
pub const TOTAL_WEIGHT: i32 = 1000;

/// The strategies Flightdeck can evaluate (Unleash's built-in ones). Custom strategies are
/// refused: the frontend API and OFREP evaluate here, and would have no code to run for them.
pub const STRATEGY_NAMES: [&str; 8] = [
    "default",
    "userWithId",
    "flexibleRollout",
    "gradualRolloutUserId",
    "gradualRolloutSessionId",
    "gradualRolloutRandom",
    "remoteAddress",
    "applicationHostname",
];

/// A flag name as Unleash allows it: 1 to 100 characters that `encodeURIComponent` leaves as
/// they are (letters, digits and `- _ . ! ~ * ' ( )`), so that it is safe in a URL path. `.`
/// and `..` are refused too, since they are path steps.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct FlagName(String);

/// Why a text is not a flag name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlagNameError {
    #[error("a flag name cannot be empty")]
    Empty,
    #[error("a flag name has at most {MAX_FLAG_NAME} characters; this one has {0}")]
    TooLong(usize),
    #[error("a flag name holds letters, digits and - _ . ! ~ * ' ( ) only, not {0:?}")]
    Character(char),
    #[error("a flag name cannot be `.` or `..`")]
    DotSegment,
}

impl FlagName {
    pub fn parse(name: &str) -> Result<Self, FlagNameError> {
        if name.is_empty() {
            return Err(FlagNameError::Empty);
        }
        let length = name.chars().count();
        if length > MAX_FLAG_NAME {
            return Err(FlagNameError::TooLong(length));
        }
        let url_safe = |c: char| {
            c.is_ascii_alphanumeric()
                || matches!(c, '-' | '_' | '.' | '!' | '~' | '*' | '\'' | '(' | ')')
        };
        if let Some(bad) = name.chars().find(|c| !url_safe(*c)) {
            return Err(FlagNameError::Character(bad));
        }
        if name == "." || name == ".." {
            return Err(FlagNameError::DotSegment);
        }
        Ok(FlagName(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for FlagName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FlagName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for FlagName {
    type Err = FlagNameError;
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        FlagName::parse(name)
    }
}

impl TryFrom<String> for FlagName {
    type Error = FlagNameError;
    fn try_from(name: String) -> Result<Self, Self::Error> {
        FlagName::parse(&name)
    }
}

impl From<FlagName> for String {
    fn from(name: FlagName) -> Self {
        name.0
    }
}

/// What a flag is for, as Unleash classifies flags. The type sets how long a flag is expected
/// to live before someone should remove it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FlagType {
    /// Ships unfinished code switched off, then rolls it out; expected to live 40 days.
    Release,
    /// An A/B or multivariate test; expected to live 40 days.
    Experiment,
    /// Controls how the system runs, e.g. during a migration; expected to live 7 days.
    Operational,
    /// Turns a feature off when something goes wrong; kept for good.
    KillSwitch,
    /// Gives some users a feature, e.g. by plan; kept for good.
    Permission,
}

/// A text that names no flag type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a flag type (release, experiment, operational, kill-switch, permission)")]
pub struct UnknownFlagType(pub String);

impl FlagType {
    pub const ALL: [FlagType; 5] = [
        FlagType::Release,
        FlagType::Experiment,
        FlagType::Operational,
        FlagType::KillSwitch,
        FlagType::Permission,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FlagType::Release => "release",
            FlagType::Experiment => "experiment",
            FlagType::Operational => "operational",
            FlagType::KillSwitch => "kill-switch",
            FlagType::Permission => "permission",
        }
    }

    pub fn parse(text: &str) -> Result<Self, UnknownFlagType> {
        FlagType::ALL
            .into_iter()
            .find(|t| t.as_str() == text)
            .ok_or_else(|| UnknownFlagType(text.to_owned()))
    }

    /// How long after its creation a flag of this type is "potentially stale" (Unleash's
    /// figures); `None` for types meant to stay.
    pub fn expected_lifetime(self) -> Option<Duration> {
        match self {
            FlagType::Release | FlagType::Experiment => Some(Duration::days(40)),
            FlagType::Operational => Some(Duration::days(7)),
            FlagType::KillSwitch | FlagType::Permission => None,
        }
    }
}

impl fmt::Display for FlagType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A flag to create. It starts off, with no strategies, in every environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewFlag {
    pub name: FlagName,
    pub flag_type: FlagType,
    pub description: String,
    pub owner: Option<String>,
}

/// The parts of a flag that are the same in every environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlagDetails {
    pub flag_type: FlagType,
    pub description: String,
    pub owner: Option<String>,
    /// Marked stale by a person; SDKs receive it as `stale`.
    pub stale: bool,
}

/// A flag's state in one environment: exactly what varies between environments.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentState {
    pub enabled: bool,
    /// In evaluation order; empty means on for everyone when enabled.
    pub strategies: Vec<Strategy>,
    pub variants: Vec<Variant>,
    pub impression_data: bool,
}

/// One change to a flag in one environment. Stored as JSON, it can wait to be applied later
/// (a scheduled change, or one waiting for approval); its lists are checked again when read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EnvironmentEdit {
    /// Turns the flag on or off.
    Enable { enabled: bool },
    /// Turns the flag off as an emergency stop: the same state as `Enable { enabled: false }`,
    /// audited as `flag.killed`.
    Kill,
    /// Replaces the strategies.
    Strategies { strategies: Strategies },
    /// Replaces the flag's own variants.
    Variants { variants: Variants },
    /// Turns impression events on or off.
    ImpressionData { enabled: bool },
}

impl EnvironmentEdit {
    /// The audit action that records this edit.
    pub fn action(&self) -> &'static str {
        match self {
            EnvironmentEdit::Enable { enabled: true } => "flag.enabled",
            EnvironmentEdit::Enable { enabled: false } => "flag.disabled",
            EnvironmentEdit::Kill => "flag.killed",
            EnvironmentEdit::Strategies { .. } => "flag.strategies_changed",
            EnvironmentEdit::Variants { .. } => "flag.variants_changed",
            EnvironmentEdit::ImpressionData { .. } => "flag.impression_data_changed",
        }
    }

    /// What the edit did, for a snapshot's reason: "smart-reminders on".
    pub fn describe(&self, flag: &FlagName) -> String {
        match self {
            EnvironmentEdit::Enable { enabled: true } => format!("{flag} on"),
            EnvironmentEdit::Enable { enabled: false } => format!("{flag} off"),
            EnvironmentEdit::Kill => format!("{flag} killed"),
            EnvironmentEdit::Strategies { .. } => format!("{flag} strategies changed"),
            EnvironmentEdit::Variants { .. } => format!("{flag} variants changed"),
            EnvironmentEdit::ImpressionData { enabled } => {
                format!(
                    "{flag} impression data {}",
                    if *enabled { "on" } else { "off" }
                )
            }
        }
    }
}

impl EnvironmentState {
    /// The state after `edit`; the caller stores it (and nothing when it equals `self`).
    pub fn apply(&self, edit: &EnvironmentEdit) -> EnvironmentState {
        let mut next = self.clone();
        match edit {
            EnvironmentEdit::Enable { enabled } => next.enabled = *enabled,
            EnvironmentEdit::Kill => next.enabled = false,
            EnvironmentEdit::Strategies { strategies } => {
                next.strategies = strategies.as_slice().to_vec()
            }
            EnvironmentEdit::Variants { variants } => next.variants = variants.as_slice().to_vec(),
            EnvironmentEdit::ImpressionData { enabled } => next.impression_data = *enabled,
        }
        next
    }
}

/// A checked strategy list, variant weights settled.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Vec<Strategy>", into = "Vec<Strategy>")]
pub struct Strategies(Vec<Strategy>);

/// A checked variant list whose weights add up to 1000 (or an empty one).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Vec<Variant>", into = "Vec<Variant>")]
pub struct Variants(Vec<Variant>);

/// A checked constraint list, as a segment holds it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Vec<Constraint>", into = "Vec<Constraint>")]
pub struct Constraints(Vec<Constraint>);

/// Why a strategy, variant or constraint list was refused: every issue found, so a form can
/// show them all at once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", join(.issues))]
pub struct InvalidDefinition {
    pub issues: Vec<DefinitionIssue>,
}

fn join(issues: &[DefinitionIssue]) -> String {
    issues
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// One thing wrong in a definition. Positions count from 1, as a person counts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DefinitionIssue {
    /// The JSON does not have Unleash's shape.
    #[error("the {what} are not in Unleash's format: {message}")]
    Malformed { what: &'static str, message: String },
    #[error("there are {count} {what}; at most {limit} are allowed")]
    TooMany {
        what: &'static str,
        count: usize,
        limit: usize,
    },
    #[error("the {what} take {bytes} bytes as JSON; at most {limit} are allowed")]
    TooLarge {
        what: &'static str,
        bytes: usize,
        limit: usize,
    },
    /// Something the evaluator could not use, or a percentage that is not a whole 0–100.
    #[error("strategy {position} ({name}): {problem}")]
    Strategy {
        position: usize,
        name: String,
        problem: DefinitionProblem,
    },
    /// A constraint of a segment.
    #[error("constraint {position}: {problem}")]
    Constraint {
        position: usize,
        problem: DefinitionProblem,
    },
    #[error("{}variant {variant:?}: {problem}", within(*.strategy))]
    Variant {
        /// The strategy whose variants these are; `None` for the flag's own.
        strategy: Option<usize>,
        variant: String,
        problem: VariantProblem,
    },
    #[error("{}variants: {problem}", within(*.strategy))]
    Weights {
        strategy: Option<usize>,
        problem: WeightProblem,
    },
}

fn within(strategy: Option<usize>) -> String {
    strategy.map_or_else(String::new, |p| format!("strategy {p}, "))
}

/// What is wrong with one variant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VariantProblem {
    #[error("a variant needs a name")]
    EmptyName,
    #[error("another variant has the same name")]
    DuplicateName,
    #[error("weight type {0:?} is neither \"fix\" nor \"variable\"")]
    UnknownWeightType(String),
    #[error("a fixed weight is between 0 and {TOTAL_WEIGHT}, not {0}")]
    Weight(i32),
    #[error("payload type {0:?} is not string, json, csv or number")]
    UnknownPayloadKind(String),
    #[error("the {kind} payload does not parse: {reason}")]
    Payload { kind: &'static str, reason: String },
    #[error("an override needs a context field name")]
    OverrideWithoutField,
}

/// Why weights cannot add up to 1000.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WeightProblem {
    #[error("the fixed weights add up to {0}, more than {TOTAL_WEIGHT}")]
    FixedOverTotal(i32),
    #[error("every weight is fixed and they add up to {0}, not {TOTAL_WEIGHT}")]
    FixedNotTotal(i32),
}

impl Strategies {
    /// Checks the strategies and settles their variants' weights.
    pub fn new(strategies: Vec<Strategy>) -> Result<Self, InvalidDefinition> {
        let mut issues = Vec::new();
        if strategies.len() > MAX_STRATEGIES {
            issues.push(DefinitionIssue::TooMany {
                what: "strategies",
                count: strategies.len(),
                limit: MAX_STRATEGIES,
            });
        }
        check_size("strategies", &strategies, &mut issues);
        let mut checked = Vec::with_capacity(strategies.len());
        for (index, mut strategy) in strategies.into_iter().enumerate() {
            let position = index + 1;
            for problem in strategy_problems(&strategy) {
                push_new(
                    &mut issues,
                    DefinitionIssue::Strategy {
                        position,
                        name: strategy.name.clone(),
                        problem,
                    },
                );
            }
            match settle_variants(std::mem::take(&mut strategy.variants), Some(position)) {
                Ok(variants) => strategy.variants = variants,
                Err(found) => issues.extend(found),
            }
            checked.push(strategy);
        }
        if issues.is_empty() {
            Ok(Strategies(checked))
        } else {
            Err(InvalidDefinition { issues })
        }
    }

    /// Reads and checks a JSON array of Unleash strategy objects, as a form or an API sends it.
    pub fn from_json(json: serde_json::Value) -> Result<Self, InvalidDefinition> {
        Strategies::new(from_json("strategies", json)?)
    }

    pub fn as_slice(&self) -> &[Strategy] {
        &self.0
    }

    /// The segments the strategies use; the store checks that the project has them.
    pub fn segment_ids(&self) -> BTreeSet<i32> {
        self.0
            .iter()
            .flat_map(|s| s.segments.iter().copied())
            .collect()
    }
}

impl TryFrom<Vec<Strategy>> for Strategies {
    type Error = InvalidDefinition;
    fn try_from(strategies: Vec<Strategy>) -> Result<Self, Self::Error> {
        Strategies::new(strategies)
    }
}

impl From<Strategies> for Vec<Strategy> {
    fn from(strategies: Strategies) -> Self {
        strategies.0
    }
}

impl Variants {
    /// Checks the variants and settles their weights so that they add up to 1000.
    pub fn new(variants: Vec<Variant>) -> Result<Self, InvalidDefinition> {
        let mut issues = Vec::new();
        check_size("variants", &variants, &mut issues);
        match settle_variants(variants, None) {
            Ok(variants) if issues.is_empty() => Ok(Variants(variants)),
            Ok(_) => Err(InvalidDefinition { issues }),
            Err(found) => {
                issues.extend(found);
                Err(InvalidDefinition { issues })
            }
        }
    }

    /// Reads and checks a JSON array of Unleash variant objects.
    pub fn from_json(json: serde_json::Value) -> Result<Self, InvalidDefinition> {
        Variants::new(from_json("variants", json)?)
    }

    pub fn as_slice(&self) -> &[Variant] {
        &self.0
    }
}

impl TryFrom<Vec<Variant>> for Variants {
    type Error = InvalidDefinition;
    fn try_from(variants: Vec<Variant>) -> Result<Self, Self::Error> {
        Variants::new(variants)
    }
}

impl From<Variants> for Vec<Variant> {
    fn from(variants: Variants) -> Self {
        variants.0
    }
}

impl Constraints {
    pub fn new(constraints: Vec<Constraint>) -> Result<Self, InvalidDefinition> {
        let mut issues = Vec::new();
        check_size("constraints", &constraints, &mut issues);
        for (index, constraint) in constraints.iter().enumerate() {
            let strategy = Strategy {
                name: "default".to_owned(),
                sort_order: None,
                parameters: Default::default(),
                constraints: vec![constraint.clone()],
                segments: Vec::new(),
                variants: Vec::new(),
            };
            for problem in compile_problems(strategy) {
                issues.push(DefinitionIssue::Constraint {
                    position: index + 1,
                    problem,
                });
            }
        }
        if issues.is_empty() {
            Ok(Constraints(constraints))
        } else {
            Err(InvalidDefinition { issues })
        }
    }

    /// Reads and checks a JSON array of Unleash constraint objects.
    pub fn from_json(json: serde_json::Value) -> Result<Self, InvalidDefinition> {
        Constraints::new(from_json("constraints", json)?)
    }

    pub fn as_slice(&self) -> &[Constraint] {
        &self.0
    }
}

impl TryFrom<Vec<Constraint>> for Constraints {
    type Error = InvalidDefinition;
    fn try_from(constraints: Vec<Constraint>) -> Result<Self, Self::Error> {
        Constraints::new(constraints)
    }
}

impl From<Constraints> for Vec<Constraint> {
    fn from(constraints: Constraints) -> Self {
        constraints.0
    }
}

fn from_json<T: serde::de::DeserializeOwned>(
    what: &'static str,
    json: serde_json::Value,
) -> Result<T, InvalidDefinition> {
    serde_json::from_value(json).map_err(|e| InvalidDefinition {
        issues: vec![DefinitionIssue::Malformed {
            what,
            message: e.to_string(),
        }],
    })
}

fn check_size<T: Serialize>(what: &'static str, value: &T, issues: &mut Vec<DefinitionIssue>) {
    let bytes = serde_json::to_vec(value).map_or(0, |json| json.len());
    if bytes > MAX_DEFINITION_BYTES {
        issues.push(DefinitionIssue::TooLarge {
            what,
            bytes,
            limit: MAX_DEFINITION_BYTES,
        });
    }
}

fn push_new(issues: &mut Vec<DefinitionIssue>, issue: DefinitionIssue) {
    if !issues.contains(&issue) {
        issues.push(issue);
    }
}

/// Everything wrong with one strategy (its variants aside).
fn strategy_problems(strategy: &Strategy) -> Vec<DefinitionProblem> {
    let mut problems = Vec::new();
    let percent_parameter = match strategy.name.as_str() {
        "flexibleRollout" => Some("rollout"),
        "gradualRolloutUserId" | "gradualRolloutSessionId" | "gradualRolloutRandom" => {
            Some("percentage")
        }
        _ => None,
    };
    if let Some(parameter) = percent_parameter {
        let value = strategy.parameters.get(parameter);
        let whole = value.and_then(|v| v.trim().parse::<u8>().ok());
        if whole.is_none_or(|p| p > 100) {
            problems.push(DefinitionProblem::BadParameter {
                strategy: strategy.name.clone(),
                parameter: parameter.to_owned(),
                value: value.cloned().unwrap_or_default(),
            });
        }
    }
    let mut without_variants = strategy.clone();
    without_variants.variants.clear();
    for problem in compile_problems(without_variants) {
        if !problems.contains(&problem) {
            problems.push(problem);
        }
    }
    problems
}

/// What the evaluator reports when it compiles `strategy` alone. The segments it names are
/// given no constraints here: whether they exist is the store's question.
fn compile_problems(strategy: Strategy) -> Vec<DefinitionProblem> {
    let segments = strategy
        .segments
        .iter()
        .map(|&id| Segment {
            id,
            name: None,
            constraints: Vec::new(),
        })
        .collect();
    let payload = ClientFeatures {
        version: 2,
        features: vec![ClientFeature {
            name: "definition-check".to_owned(),
            feature_type: None,
            description: None,
            enabled: true,
            stale: false,
            impression_data: false,
            project: None,
            strategies: vec![strategy],
            variants: Vec::new(),
            dependencies: Vec::new(),
        }],
        segments,
        query: None,
        meta: None,
    };
    FeatureSet::from_client_features(payload)
        .warnings()
        .iter()
        .map(|w| w.problem.clone())
        .collect()
}

/// Checks a variant list and gives every variable variant its share of the weight.
fn settle_variants(
    mut variants: Vec<Variant>,
    strategy: Option<usize>,
) -> Result<Vec<Variant>, Vec<DefinitionIssue>> {
    let mut issues = Vec::new();
    if variants.is_empty() {
        return Ok(variants);
    }
    if variants.len() > MAX_VARIANTS {
        issues.push(DefinitionIssue::TooMany {
            what: "variants",
            count: variants.len(),
            limit: MAX_VARIANTS,
        });
    }
    let mut names = HashSet::new();
    for variant in &mut variants {
        let mut problems = Vec::new();
        if variant.name.trim().is_empty() {
            problems.push(VariantProblem::EmptyName);
        } else if !names.insert(variant.name.clone()) {
            problems.push(VariantProblem::DuplicateName);
        }
        match variant.weight_type.as_deref() {
            None | Some("variable") => variant.weight_type = Some("variable".to_owned()),
            Some("fix") if !(0..=TOTAL_WEIGHT).contains(&variant.weight) => {
                problems.push(VariantProblem::Weight(variant.weight))
            }
            Some("fix") => {}
            Some(other) => problems.push(VariantProblem::UnknownWeightType(other.to_owned())),
        }
        if let Some(problem) = variant.payload.as_ref().and_then(payload_problem) {
            problems.push(problem);
        }
        if variant
            .overrides
            .iter()
            .any(|o| o.context_name.trim().is_empty())
        {
            problems.push(VariantProblem::OverrideWithoutField);
        }
        issues.extend(
            problems
                .into_iter()
                .map(|problem| DefinitionIssue::Variant {
                    strategy,
                    variant: variant.name.clone(),
                    problem,
                }),
        );
    }
    if !issues.is_empty() {
        return Err(issues);
    }
    let is_fixed = |v: &Variant| v.weight_type.as_deref() == Some("fix");
    let fixed: i32 = variants
        .iter()
        .filter(|v| is_fixed(v))
        .map(|v| v.weight)
        .sum();
    let variable = variants.iter().filter(|v| !is_fixed(v)).count() as i32;
    if fixed > TOTAL_WEIGHT {
        return Err(vec![DefinitionIssue::Weights {
            strategy,
            problem: WeightProblem::FixedOverTotal(fixed),
        }]);
    }
    if variable == 0 {
        if fixed != TOTAL_WEIGHT {
            return Err(vec![DefinitionIssue::Weights {
                strategy,
                problem: WeightProblem::FixedNotTotal(fixed),
            }]);
        }
        return Ok(variants);
    }
    let share = (TOTAL_WEIGHT - fixed) / variable;
    let mut remainder = (TOTAL_WEIGHT - fixed) % variable;
    for variant in variants.iter_mut().filter(|v| !is_fixed(v)) {
        variant.weight = share + i32::from(remainder > 0);
        remainder -= 1;
    }
    Ok(variants)
}

fn payload_problem(payload: &Payload) -> Option<VariantProblem> {
    match &payload.kind {
        PayloadKind::Json => serde_json::from_str::<serde_json::Value>(&payload.value)
            .err()
            .map(|e| VariantProblem::Payload {
                kind: "json",
                reason: e.to_string(),
            }),
        PayloadKind::Number => {
            payload
                .value
                .trim()
                .parse::<f64>()
                .err()
                .map(|e| VariantProblem::Payload {
                    kind: "number",
                    reason: e.to_string(),
                })
        }
        PayloadKind::String | PayloadKind::Csv => None,
        PayloadKind::Other(kind) => Some(VariantProblem::UnknownPayloadKind(kind.clone())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn flag_names_follow_unleash_url_rules() {
        assert!(FlagName::parse("smart-reminders").is_ok());
        assert!(FlagName::parse("app.name_v2(beta)!").is_ok());
        assert_eq!(FlagName::parse(""), Err(FlagNameError::Empty));
        assert_eq!(
            FlagName::parse("has space"),
            Err(FlagNameError::Character(' '))
        );
        assert_eq!(FlagName::parse("a/b"), Err(FlagNameError::Character('/')));
        assert_eq!(FlagName::parse(".."), Err(FlagNameError::DotSegment));
        assert_eq!(
            FlagName::parse(&"x".repeat(101)),
            Err(FlagNameError::TooLong(101))
        );
    }

    #[test]
    fn variable_variants_share_what_fixed_ones_leave() {
        let variants = Variants::from_json(json!([
            {"name": "blue", "weight": 700, "weightType": "fix"},
            {"name": "green"},
            {"name": "red", "weight": 5},
        ]))
        .unwrap();
        let weights: Vec<i32> = variants.as_slice().iter().map(|v| v.weight).collect();
        assert_eq!(weights, [700, 150, 150]);
        let thirds =
            Variants::from_json(json!([{"name": "a"}, {"name": "b"}, {"name": "c"}])).unwrap();
        let weights: Vec<i32> = thirds.as_slice().iter().map(|v| v.weight).collect();
        assert_eq!(weights, [334, 333, 333]);
    }

    #[test]
    fn fixed_weights_must_leave_room_or_add_up() {
        let over = Variants::from_json(json!([
            {"name": "a", "weight": 800, "weightType": "fix"},
            {"name": "b", "weight": 300, "weightType": "fix"},
            {"name": "c"},
        ]))
        .unwrap_err();
        assert!(matches!(
            over.issues[..],
            [DefinitionIssue::Weights {
                problem: WeightProblem::FixedOverTotal(1100),
                ..
            }]
        ));
        let short = Variants::from_json(json!([{"name": "a", "weight": 500, "weightType": "fix"}]))
            .unwrap_err();
        assert!(matches!(
            short.issues[..],
            [DefinitionIssue::Weights {
                problem: WeightProblem::FixedNotTotal(500),
                ..
            }]
        ));
    }

    #[test]
    fn strategies_the_evaluator_cannot_use_are_refused_with_their_position() {
        let invalid = Strategies::from_json(json!([
            {"name": "default"},
            {"name": "flexibleRollout", "parameters": {"rollout": "150"}},
            {"name": "myCustomStrategy"},
            {"name": "default", "constraints": [{"contextName": "x", "operator": "LIKE", "values": []}]},
            {"name": "default", "constraints": [{"contextName": "v", "operator": "SEMVER_GT", "value": "v1"}]},
        ]))
        .unwrap_err();
        let positions: Vec<usize> = invalid
            .issues
            .iter()
            .map(|issue| match issue {
                DefinitionIssue::Strategy { position, .. } => *position,
                other => panic!("unexpected {other}"),
            })
            .collect();
        assert_eq!(positions, [2, 3, 4, 5], "{invalid}");
    }

    #[test]
    fn malformed_json_is_an_issue_not_a_panic() {
        let invalid = Strategies::from_json(json!({"name": "default"})).unwrap_err();
        assert!(matches!(
            invalid.issues[..],
            [DefinitionIssue::Malformed {
                what: "strategies",
                ..
            }]
        ));
    }

    #[test]
    fn edits_are_pure_transitions() {
        let off = EnvironmentState::default();
        let on = off.apply(&EnvironmentEdit::Enable { enabled: true });
        assert!(on.enabled);
        assert_eq!(on.apply(&EnvironmentEdit::Kill), off);
    }
}
