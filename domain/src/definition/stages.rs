//! Checks phases and stages: stage names unique across the pipeline, `needs` that resolve and
//! do not loop. What each kind of stage says is checked in [`super::kinds`], jobs in
//! [`super::jobs`].

use std::collections::HashMap;

use serde_saphyr::{Location, Spanned};

use super::diagnostic::did_you_mean;
use super::graph::cycles;
use super::model::{Phase, Stage};
use super::names::{PhaseName, StageName};
use super::raw::{Keyed, RawArtifact, RawPhase, RawStage, Text};
use super::validate::{Checker, all};

/// What is known about every stage and artifact before any stage is checked, so `needs` and
/// artifact references can point forwards as well as backwards.
pub(super) struct Index<'a> {
    /// Stages in pipeline order; a duplicate name keeps only its first stage.
    pub stages: Vec<IndexedStage<'a>>,
    pub by_name: HashMap<&'a str, usize>,
    /// Artifact names with the kind written for them.
    pub artifacts: HashMap<&'a str, &'a str>,
}

pub(super) struct IndexedStage<'a> {
    pub name: &'a str,
    pub manual: bool,
    /// Where its key is, to tell it from a later stage of the same name.
    at: (u64, u64),
}

/// A `needs` edge: the stage needed, and where the file says so (none when implicit).
pub(super) type Edge = (usize, Option<Location>);

impl Checker {
    pub(super) fn phases(&mut self, raw: &Spanned<Keyed<RawPhase>>) -> Option<Vec<Phase>> {
        if raw.value.0.is_empty() {
            self.error(
                &raw.referenced,
                "the pipeline has no phases; declare at least one",
            );
            return None;
        }
        let index = self.index(&raw.value);
        let mut edges: Vec<Vec<Edge>> = vec![Vec::new(); index.stages.len()];
        let phases = raw
            .value
            .0
            .iter()
            .map(|(key, phase)| self.phase(key, phase, &index, &mut edges))
            .collect();
        self.stage_cycles(&index, &edges);
        all(phases)
    }

    /// Indexes stages and artifacts, reporting names used twice.
    fn index<'a>(&mut self, phases: &'a Keyed<RawPhase>) -> Index<'a> {
        let mut index = Index {
            stages: Vec::new(),
            by_name: HashMap::new(),
            artifacts: HashMap::new(),
        };
        let mut first_seen: HashMap<&str, (&str, usize)> = HashMap::new();
        let mut artifact_seen: HashMap<&str, usize> = HashMap::new();
        for (phase_key, phase) in &phases.0 {
            for (key, stage) in &phase.stages.value.0 {
                let name = key.value.as_str();
                if let Some((phase_name, line)) = first_seen.get(name) {
                    let message = format!(
                        "there is already a stage named `{name}` (in phase `{phase_name}`, line \
                         {line}); stage names must be unique across the pipeline"
                    );
                    self.error(&key.referenced, message);
                    continue;
                }
                first_seen.insert(name, (&phase_key.value, key.referenced.line() as usize));
                index.by_name.insert(name, index.stages.len());
                index.stages.push(IndexedStage {
                    name,
                    manual: stage.manual.is_some(),
                    at: (key.referenced.line(), key.referenced.column()),
                });
                for artifact in stage_artifacts(stage) {
                    let name = artifact.name.value.as_str();
                    if let Some(line) = artifact_seen.get(name) {
                        let message = format!(
                            "there is already an artifact named `{name}` (line {line}); artifact \
                             names must be unique across the pipeline"
                        );
                        self.error(&artifact.name.referenced, message);
                        continue;
                    }
                    artifact_seen.insert(name, artifact.name.referenced.line() as usize);
                    index.artifacts.insert(name, &artifact.kind.value);
                }
            }
        }
        index
    }

    fn phase(
        &mut self,
        key: &Text,
        raw: &RawPhase,
        index: &Index<'_>,
        edges: &mut [Vec<Edge>],
    ) -> Option<Phase> {
        let name = self.name(key, PhaseName::parse);
        if raw.stages.value.0.is_empty() {
            self.error(
                &raw.stages.referenced,
                format!("phase `{}` has no stages; give it at least one", key.value),
            );
        }
        let stages = all(raw
            .stages
            .value
            .0
            .iter()
            .map(|(stage_key, stage)| self.stage(stage_key, stage, index, edges))
            .collect());
        Some(Phase {
            name: name?,
            title: raw.title.clone().unwrap_or_else(|| humanize(&key.value)),
            description: raw.description.clone(),
            stages: stages.filter(|s| !s.is_empty())?,
        })
    }

    fn stage(
        &mut self,
        key: &Text,
        raw: &RawStage,
        index: &Index<'_>,
        edges: &mut [Vec<Edge>],
    ) -> Option<Stage> {
        let name = self.name(key, StageName::parse);
        let subject = format!("stage `{}`", key.value);
        // A duplicate stage was reported by the index and has no node in the graph.
        let position =
            index.by_name.get(key.value.as_str()).copied().filter(|&i| {
                index.stages[i].at == (key.referenced.line(), key.referenced.column())
            });
        let needs = self.stage_needs(key, raw, index, position, edges);
        let kind = match raw.kinds().as_slice() {
            [_] => self.stage_kind(key, raw, name.as_ref(), index),
            [] => {
                self.error(
                    &key.referenced,
                    format!(
                        "{subject} does nothing: give it one of `manual`, `jobs`, `gate`, \
                         `deploy`, `flags`, `check`, `publish` or `migrate`"
                    ),
                );
                None
            }
            [many @ .., last] => {
                let many: Vec<String> = many.iter().map(|k| format!("`{k}`")).collect();
                self.error(
                    &key.referenced,
                    format!(
                        "{subject} has {} and `{last}`; a stage does one thing, so split it into \
                         one stage for each",
                        many.join(", ")
                    ),
                );
                None
            }
        };
        Some(Stage {
            name: name?,
            title: raw.title.clone().unwrap_or_else(|| humanize(&key.value)),
            description: raw.description.clone(),
            needs: needs?,
            kind: kind?,
        })
    }

    /// The stages this one needs, recording the graph's edges for the cycle check.
    fn stage_needs(
        &mut self,
        key: &Text,
        raw: &RawStage,
        index: &Index<'_>,
        position: Option<usize>,
        edges: &mut [Vec<Edge>],
    ) -> Option<Vec<StageName>> {
        let subject = format!("stage `{}`", key.value);
        if raw.manual.is_some() {
            if let Some(first) = raw.needs.as_ref().and_then(|n| n.first()) {
                self.error(
                    &first.referenced,
                    format!(
                        "{subject} is manual: people do it outside Flightdeck, so it cannot \
                         need other stages"
                    ),
                );
                return None;
            }
            return Some(Vec::new());
        }
        let Some(list) = &raw.needs else {
            // Without `needs`, a stage follows the executed stage before it.
            let previous = position.and_then(|p| (0..p).rev().find(|&i| !index.stages[i].manual));
            if let (Some(p), Some(previous)) = (position, previous) {
                edges[p].push((previous, None));
            }
            return Some(
                previous
                    .and_then(|i| StageName::parse(index.stages[i].name).ok())
                    .into_iter()
                    .collect(),
            );
        };
        let mut needs = Vec::new();
        let mut ok = true;
        for need in list {
            match index.by_name.get(need.value.as_str()) {
                None => {
                    let executed = index.stages.iter().filter(|s| !s.manual).map(|s| s.name);
                    let hint = did_you_mean(&need.value, executed);
                    self.error(
                        &need.referenced,
                        format!(
                            "{subject} needs `{}`, which is not a stage in this pipeline{hint}",
                            need.value
                        ),
                    );
                    ok = false;
                }
                Some(&i) if index.stages[i].manual => {
                    self.error(
                        &need.referenced,
                        format!(
                            "{subject} needs `{}`, which is a manual stage that the server never \
                             runs; need the first stage after it instead",
                            need.value
                        ),
                    );
                    ok = false;
                }
                Some(&i) => {
                    if let Some(p) = position {
                        edges[p].push((i, Some(need.referenced)));
                    }
                    match StageName::parse(&need.value) {
                        Ok(name) if !needs.contains(&name) => needs.push(name),
                        Ok(_) => {}
                        Err(_) => ok = false,
                    }
                }
            }
        }
        ok.then_some(needs)
    }

    fn stage_cycles(&mut self, index: &Index<'_>, edges: &[Vec<Edge>]) {
        let adjacency: Vec<Vec<usize>> = edges
            .iter()
            .map(|e| e.iter().map(|(to, _)| *to).collect())
            .collect();
        for cycle in cycles(&adjacency) {
            let names: Vec<&str> = cycle.iter().map(|&i| index.stages[i].name).collect();
            self.report_cycle(&cycle, &names, edges, &|n| format!("stage `{n}`"), "stages");
        }
    }

    /// Reports a cycle at the first edge of it that the file wrote down.
    /// `one` names a node ("stage `build`"), `many` the group ("stages").
    pub(super) fn report_cycle(
        &mut self,
        cycle: &[usize],
        names: &[&str],
        edges: &[Vec<Edge>],
        one: &dyn Fn(&str) -> String,
        many: &str,
    ) {
        // The place of each edge of the cycle; `None` for an implicit one.
        let places: Vec<Option<Location>> = cycle
            .iter()
            .enumerate()
            .map(|(i, &from)| {
                let to = cycle[(i + 1) % cycle.len()];
                let mut written = edges[from].iter().filter(|(target, _)| *target == to);
                written.find_map(|(_, at)| *at)
            })
            .collect();
        let mut path: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
        path.push(format!("`{}`", names[0]));
        let note = if places.iter().any(Option::is_none) {
            " (a stage without `needs` needs the stage before it)"
        } else {
            ""
        };
        // A cycle always has a written edge: implicit ones only point backwards.
        let message = match names {
            [name] => format!("{} needs itself, so it can never start", one(name)),
            _ => format!(
                "{many} need each other in a cycle, so none of them can start: {}{note}",
                path.join(" → ")
            ),
        };
        if let Some(at) = places.into_iter().flatten().next() {
            self.error(&at, message);
        }
    }
}

/// The artifacts a stage's jobs declare, the deploy job's included.
fn stage_artifacts(stage: &RawStage) -> impl Iterator<Item = &RawArtifact> {
    let jobs = stage
        .jobs
        .iter()
        .flat_map(|j| j.value.0.iter().map(|(_, job)| job));
    let deploy_job = stage
        .deploy
        .iter()
        .filter_map(|d| d.job.as_ref().map(|j| &j.value));
    jobs.chain(deploy_job)
        .flat_map(|job| job.artifacts.iter().flatten())
}

/// A title made from a name: `unit-tests` becomes "Unit tests".
fn humanize(name: &str) -> String {
    let words = name.replace('-', " ");
    let mut chars = words.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}
