//! From a pipeline definition to the stages and jobs of a run, and from the states of a run's
//! jobs to what happens next. Both are pure; the store applies what they return.
//!
//! A run executes the `jobs` stages that come before the pipeline's first `deploy` stage: the CI
//! part, which makes a release. Everything from the first deploy on belongs to releases and
//! deployments. Local (`manual`) stages happen on developers' machines and are not run.

use super::spec::{ArtifactWire, JobSpec, StepSpec};
use super::transition::{Event, Member, aggregate};
use crate::definition::{Definition, Stage, StageKind};
use crate::state::RunState;
use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PlannedStage {
    pub name: String,
    pub title: String,
    pub needs: Vec<String>,
    pub jobs: Vec<PlannedJob>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PlannedJob {
    pub name: String,
    pub needs: Vec<String>,
    pub runs_on: Vec<String>,
    pub spec: JobSpec,
    pub max_attempts: i32,
    pub allow_failure: bool,
    pub optional: bool,
}

/// The stages a run of this definition executes, in order.
pub fn plan_run(definition: &Definition) -> Vec<PlannedStage> {
    let in_run: Vec<_> = definition
        .stages()
        .take_while(|s| !matches!(s.kind, StageKind::Deploy(_)))
        .filter(|s| matches!(s.kind, StageKind::Jobs(_)))
        .collect();
    let names: Vec<&str> = in_run.iter().map(|s| s.name.as_str()).collect();
    in_run
        .iter()
        .map(|stage| plan_stage(stage, &names))
        .collect()
}

/// One stage's jobs as a run executes them (a jobs stage's jobs, or a deploy stage's job); of
/// its `needs`, only the stages in `in_run` are kept.
pub fn plan_stage(stage: &Stage, in_run: &[&str]) -> PlannedStage {
    PlannedStage {
        name: stage.name.to_string(),
        title: stage.title.clone(),
        needs: stage
            .needs
            .iter()
            .map(|n| n.to_string())
            .filter(|n| in_run.contains(&n.as_str()))
            .collect(),
        jobs: stage
            .jobs()
            .iter()
            .map(|job| PlannedJob {
                name: job.name.to_string(),
                needs: job.needs.iter().map(|n| n.to_string()).collect(),
                runs_on: job.runs_on.clone(),
                spec: JobSpec {
                    steps: job
                        .steps
                        .iter()
                        .map(|s| StepSpec {
                            name: s.label().to_string(),
                            run: s.run.clone(),
                        })
                        .collect(),
                    env: job.env.clone(),
                    secrets: job.secrets.clone(),
                    timeout_secs: job.timeout.as_secs(),
                    artifacts: job
                        .artifacts
                        .iter()
                        .map(|a| ArtifactWire {
                            name: a.name.to_string(),
                            path: a.path.clone(),
                            kind: a.kind,
                        })
                        .collect(),
                },
                max_attempts: i32::from(job.retries) + 1,
                allow_failure: job.allow_failure,
                optional: job.optional,
            })
            .collect(),
    }
}

/// A job as progress sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobNode {
    pub stage: String,
    pub name: String,
    pub needs: Vec<String>,
    pub runs_on: Vec<String>,
    pub state: RunState,
    pub allow_failure: bool,
    pub optional: bool,
    /// The words the page shows now, so an unchanged reason is not written again.
    pub reason: Option<String>,
}

/// A stage as progress sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct StageNode {
    pub name: String,
    pub needs: Vec<String>,
}

/// What to do to one job (by its index in the input), and the words the page shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub job: usize,
    pub event: Option<Event>,
    pub reason: Option<String>,
}

/// Works out which waiting jobs may be queued and which must be skipped, given the label sets
/// of the runners that are alive. Skips cascade: a job skipped here can skip others.
pub fn progress(
    stages: &[StageNode],
    jobs: &[JobNode],
    runner_labels: &[Vec<String>],
) -> Vec<Step> {
    let mut states: Vec<RunState> = jobs.iter().map(|j| j.state).collect();
    let mut steps: HashMap<usize, Step> = HashMap::new();
    loop {
        let mut changed = false;
        let stage_state = |name: &str, states: &[RunState]| {
            let members: Vec<Member> = jobs
                .iter()
                .zip(states)
                .filter(|(j, _)| j.stage == name)
                .map(|(j, s)| Member {
                    state: *s,
                    allow_failure: j.allow_failure,
                })
                .collect();
            aggregate(&members)
        };
        for (index, job) in jobs.iter().enumerate() {
            if states[index] != RunState::Waiting {
                continue;
            }
            let stage_needs = stages
                .iter()
                .find(|s| s.name == job.stage)
                .map(|s| s.needs.as_slice())
                .unwrap_or(&[]);
            let mut waiting_for = Vec::new();
            let mut skip_because = None;
            for needed in stage_needs {
                let state = stage_state(needed, &states);
                if !state.is_finished() {
                    waiting_for.push(needed.clone());
                } else if state != RunState::Succeeded {
                    skip_because = Some(format!("skipped: {needed} {}", state.as_str()));
                }
            }
            for needed in &job.needs {
                let Some(other) = jobs
                    .iter()
                    .position(|j| j.stage == job.stage && &j.name == needed)
                else {
                    continue;
                };
                let state = states[other];
                let ok = state == RunState::Succeeded
                    || (state == RunState::Failed && jobs[other].allow_failure);
                if !state.is_finished() {
                    waiting_for.push(needed.clone());
                } else if !ok {
                    skip_because = Some(format!("skipped: {needed} {}", state.as_str()));
                }
            }
            let step = if let Some(reason) = skip_because {
                Some((Event::Skip, reason))
            } else if !waiting_for.is_empty() {
                let reason = format!("waiting for {}", waiting_for.join(", "));
                if job.reason.as_deref() != Some(reason.as_str()) {
                    steps.insert(
                        index,
                        Step {
                            job: index,
                            event: None,
                            reason: Some(reason),
                        },
                    );
                }
                None
            } else if !has_runner(&job.runs_on, runner_labels) {
                let labels = job.runs_on.join(", ");
                if job.optional {
                    Some((
                        Event::Skip,
                        format!("skipped: no runner with label {labels}"),
                    ))
                } else {
                    Some((
                        Event::Ready,
                        format!("waiting for a runner with label {labels}"),
                    ))
                }
            } else {
                Some((Event::Ready, String::new()))
            };
            if let Some((event, reason)) = step {
                states[index] = if event == Event::Skip {
                    RunState::Skipped
                } else {
                    RunState::Queued
                };
                let reason = (!reason.is_empty()).then_some(reason);
                steps.insert(
                    index,
                    Step {
                        job: index,
                        event: Some(event),
                        reason,
                    },
                );
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let mut steps: Vec<Step> = steps.into_values().collect();
    steps.sort_by_key(|s| s.job);
    steps
}

/// Whether some live runner has every label the job asks for.
pub fn has_runner(runs_on: &[String], runner_labels: &[Vec<String>]) -> bool {
    runner_labels
        .iter()
        .any(|labels| runs_on.iter().all(|wanted| labels.contains(wanted)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use RunState::*;

    fn job(stage: &str, name: &str, needs: &[&str], state: RunState) -> JobNode {
        JobNode {
            stage: stage.into(),
            name: name.into(),
            needs: needs.iter().map(|s| s.to_string()).collect(),
            runs_on: vec![],
            state,
            allow_failure: false,
            optional: false,
            reason: None,
        }
    }

    fn stages() -> Vec<StageNode> {
        vec![
            StageNode {
                name: "quality".into(),
                needs: vec![],
            },
            StageNode {
                name: "build".into(),
                needs: vec!["quality".into()],
            },
        ]
    }

    fn local() -> Vec<Vec<String>> {
        vec![vec!["linux".into(), "local".into()]]
    }

    #[test]
    fn first_stage_jobs_are_queued_and_later_ones_wait_with_a_reason() {
        let jobs = [
            job("quality", "lint", &[], Waiting),
            job("build", "web", &[], Waiting),
        ];
        let steps = progress(&stages(), &jobs, &local());
        assert_eq!(
            steps[0],
            Step {
                job: 0,
                event: Some(Event::Ready),
                reason: None
            }
        );
        assert_eq!(
            steps[1],
            Step {
                job: 1,
                event: None,
                reason: Some("waiting for quality".into())
            }
        );
    }

    #[test]
    fn a_failed_stage_skips_what_needs_it_and_the_skip_cascades() {
        let stages = vec![
            StageNode {
                name: "quality".into(),
                needs: vec![],
            },
            StageNode {
                name: "build".into(),
                needs: vec!["quality".into()],
            },
            StageNode {
                name: "test".into(),
                needs: vec!["build".into()],
            },
        ];
        let jobs = [
            job("quality", "lint", &[], Failed),
            job("build", "web", &[], Waiting),
            job("test", "it", &[], Waiting),
        ];
        let steps = progress(&stages, &jobs, &local());
        assert_eq!(steps[0].event, Some(Event::Skip));
        assert_eq!(steps[0].reason.as_deref(), Some("skipped: quality failed"));
        assert_eq!(steps[1].reason.as_deref(), Some("skipped: build skipped"));
    }

    #[test]
    fn jobs_in_a_stage_wait_for_the_jobs_they_need() {
        let jobs = [
            job("quality", "lint", &[], Running),
            job("quality", "fmt", &["lint"], Waiting),
        ];
        let steps = progress(&stages()[..1], &jobs, &local());
        assert_eq!(
            steps,
            vec![Step {
                job: 1,
                event: None,
                reason: Some("waiting for lint".into())
            }]
        );
        let done = [
            job("quality", "lint", &[], Succeeded),
            job("quality", "fmt", &["lint"], Waiting),
        ];
        assert_eq!(
            progress(&stages()[..1], &done, &local())[0].event,
            Some(Event::Ready)
        );
    }

    #[test]
    fn an_allowed_failure_does_not_block() {
        let mut lint = job("quality", "lint", &[], Failed);
        lint.allow_failure = true;
        let jobs = [lint, job("build", "web", &[], Waiting)];
        assert_eq!(
            progress(&stages(), &jobs, &local())[0].event,
            Some(Event::Ready)
        );
    }

    #[test]
    fn without_a_runner_optional_jobs_are_skipped_and_others_wait_saying_why() {
        let mut apk = job("quality", "apk", &[], Waiting);
        apk.runs_on = vec!["android".into()];
        apk.optional = true;
        let mut ipa = job("quality", "ipa", &[], Waiting);
        ipa.runs_on = vec!["macos".into()];
        let steps = progress(&stages()[..1], &[apk, ipa], &local());
        assert_eq!(steps[0].event, Some(Event::Skip));
        assert_eq!(
            steps[0].reason.as_deref(),
            Some("skipped: no runner with label android")
        );
        assert_eq!(steps[1].event, Some(Event::Ready));
        assert_eq!(
            steps[1].reason.as_deref(),
            Some("waiting for a runner with label macos")
        );
    }

    #[test]
    fn the_sample_run_covers_ci_up_to_the_first_deploy() {
        let definition =
            crate::definition::parse(include_str!("../../../examples/studybuddy/flightdeck.yml"))
                .unwrap();
        let planned: Vec<String> = plan_run(&definition).into_iter().map(|s| s.name).collect();
        assert_eq!(
            planned,
            [
                "code-quality",
                "unit-tests",
                "security-scan",
                "build",
                "integration-tests"
            ]
        );
    }
}
