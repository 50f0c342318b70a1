//! `FeatureSet`: the flags of one environment, compiled once for fast evaluation.
//!
//! Building never fails. A definition part Flightdeck cannot use (an unknown operator, a regex
//! that does not compile, a missing segment, a custom strategy) evaluates as "no match" and is
//! listed in `warnings()` so that people can be told.

use std::collections::HashMap;

use super::hash::GroupKey;
use super::model::{ClientFeature, ClientFeatures, Dependency};
use super::strategy::{CompiledSegment, Segments, Strategy};
use super::variant::VariantSet;

/// Compiled flags, indexed by name. Cheap to share (`Arc<FeatureSet>`) and read from many threads.
#[derive(Debug, Clone)]
pub struct FeatureSet {
    pub(super) flags: Vec<Flag>,
    index: HashMap<Box<str>, usize>,
    warnings: Vec<FlagWarning>,
}

/// What a caller may want to know about a flag besides its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagInfo {
    pub name: String,
    pub project: Option<String>,
    /// Unleash's flag type (`release`, `experiment`, `operational`, …).
    pub feature_type: Option<String>,
    /// Whether SDKs should emit impression events for this flag.
    pub impression_data: bool,
}

/// A part of a flag's definition that cannot be used as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DefinitionProblem {
    /// A constraint operator this evaluator does not know.
    #[error("operator {operator} is unknown, so its constraint never matches")]
    UnknownOperator { operator: String },
    /// A single-value operator (NUM_*, DATE_*, SEMVER_*, REGEX) without `value`.
    #[error("the {operator} constraint on {context_name} has no value, so it never matches")]
    MissingOperand {
        context_name: String,
        operator: String,
    },
    /// An operand that does not parse as what the operator compares.
    #[error(
        "the {operator} constraint on {context_name} cannot use {value:?} ({reason}), so it never matches"
    )]
    BadOperand {
        context_name: String,
        operator: String,
        value: String,
        reason: String,
    },
    /// A strategy names a segment the payload does not define.
    #[error("segment {id} does not exist, so the strategy using it never matches")]
    MissingSegment { id: i32 },
    /// A strategy other than Unleash's built-in ones.
    #[error(
        "strategy {name} is a custom strategy, which Flightdeck cannot run, so it never matches"
    )]
    CustomStrategy { name: String },
    /// A percentage that is not a number from 0, or an entry of `IPs` that is no address.
    #[error("strategy {strategy} has an unusable {parameter} parameter: {value:?}")]
    BadParameter {
        strategy: String,
        parameter: String,
        /// Empty when the parameter is missing.
        value: String,
    },
    /// A dependency on a flag the payload does not define.
    #[error("parent flag {parent} does not exist, so this flag is always off")]
    MissingParent { parent: String },
    /// A dependency on a flag that has dependencies itself (Unleash allows one level).
    #[error("parent flag {parent} has parents of its own, so this flag is always off")]
    NestedParent { parent: String },
}

/// A definition problem, and the flag it is in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("flag {flag}: {problem}")]
pub struct FlagWarning {
    pub flag: String,
    pub problem: DefinitionProblem,
}

#[derive(Debug, Clone)]
pub(super) struct Flag {
    pub(super) info: FlagInfo,
    /// The flag's name as a hashing group, for rollouts without a `groupId`.
    pub(super) group: GroupKey,
    pub(super) enabled: bool,
    /// Empty means on for everyone (when enabled).
    pub(super) strategies: Box<[Strategy]>,
    pub(super) variants: VariantSet,
    pub(super) requirements: Box<[Requirement]>,
}

/// A dependency on a parent flag, resolved to the parent's position.
#[derive(Debug, Clone)]
pub(super) struct Requirement {
    /// `None` when the parent does not exist or has parents itself: never satisfied.
    pub(super) parent: Option<usize>,
    /// The parent state needed.
    pub(super) enabled: bool,
    /// When non-empty (and `enabled`), the parent's variant must be one of these.
    pub(super) variants: Box<[Box<str>]>,
}

impl FeatureSet {
    /// Compiles a `/api/client/features` payload. A later flag replaces an earlier one of the
    /// same name.
    pub fn from_client_features(payload: ClientFeatures) -> Self {
        let segments: Segments = payload
            .segments
            .iter()
            .map(|segment| (segment.id, CompiledSegment::compile(segment)))
            .collect();
        let mut set = FeatureSet {
            flags: Vec::with_capacity(payload.features.len()),
            index: HashMap::with_capacity(payload.features.len()),
            warnings: Vec::new(),
        };
        // Parents are resolved once every flag has its position.
        let mut dependencies: Vec<Vec<Dependency>> = Vec::with_capacity(payload.features.len());
        for mut raw in payload.features {
            let raw_dependencies = std::mem::take(&mut raw.dependencies);
            let mut problems = Vec::new();
            let flag = Flag::compile(raw, &segments, &mut problems);
            let name = flag.info.name.clone();
            match set.index.get(name.as_str()) {
                Some(&position) => {
                    set.warnings.retain(|w| w.flag != name);
                    set.flags[position] = flag;
                    dependencies[position] = raw_dependencies;
                }
                None => {
                    set.index
                        .insert(flag.info.name.as_str().into(), set.flags.len());
                    set.flags.push(flag);
                    dependencies.push(raw_dependencies);
                }
            }
            set.warn(&name, problems);
        }
        for (position, raw) in dependencies.iter().enumerate() {
            let mut problems = Vec::new();
            let requirements = raw
                .iter()
                .map(|dependency| set.requirement(dependency, &dependencies, &mut problems))
                .collect();
            set.flags[position].requirements = requirements;
            let name = set.flags[position].info.name.clone();
            set.warn(&name, problems);
        }
        set
    }

    /// Resolves a dependency to its parent's position; `dependencies` holds every flag's own,
    /// by position, to spot parents that have parents.
    fn requirement(
        &self,
        dependency: &Dependency,
        dependencies: &[Vec<Dependency>],
        problems: &mut Vec<DefinitionProblem>,
    ) -> Requirement {
        let parent = dependency.feature.clone();
        let position = match self.position(&parent) {
            None => {
                problems.push(DefinitionProblem::MissingParent { parent });
                None
            }
            Some(p) if !dependencies[p].is_empty() => {
                problems.push(DefinitionProblem::NestedParent { parent });
                None
            }
            Some(p) => Some(p),
        };
        Requirement {
            parent: position,
            enabled: dependency.enabled.unwrap_or(true),
            variants: dependency
                .variants
                .iter()
                .flatten()
                .map(|v| v.as_str().into())
                .collect(),
        }
    }

    fn warn(&mut self, flag: &str, problems: Vec<DefinitionProblem>) {
        self.warnings
            .extend(problems.into_iter().map(|problem| FlagWarning {
                flag: flag.to_owned(),
                problem,
            }));
    }

    /// The flag's name, project, type and impression setting.
    pub fn info(&self, name: &str) -> Option<&FlagInfo> {
        self.position(name).map(|p| &self.flags[p].info)
    }

    /// Every flag, in payload order.
    pub fn flags(&self) -> impl Iterator<Item = &FlagInfo> {
        self.flags.iter().map(|f| &f.info)
    }

    pub fn len(&self) -> usize {
        self.flags.len()
    }

    pub fn is_empty(&self) -> bool {
        self.flags.is_empty()
    }

    /// The parts of the definitions that cannot be used as written.
    pub fn warnings(&self) -> &[FlagWarning] {
        &self.warnings
    }

    pub(super) fn position(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }
}

impl Flag {
    fn compile(
        raw: ClientFeature,
        segments: &Segments,
        problems: &mut Vec<DefinitionProblem>,
    ) -> Self {
        let name = raw.name;
        let strategies = raw
            .strategies
            .into_iter()
            .map(|s| Strategy::compile(s, &name, segments, problems))
            .collect();
        Flag {
            group: GroupKey::new(&name),
            variants: VariantSet::for_flag(raw.variants, &name),
            strategies,
            enabled: raw.enabled,
            requirements: Box::new([]),
            info: FlagInfo {
                name,
                project: raw.project,
                feature_type: raw.feature_type,
                impression_data: raw.impression_data,
            },
        }
    }
}
