//! Checks jobs: steps, `needs` within their stage (without cycles), runner labels, artifacts,
//! limits, environment variables and secrets.

use serde_saphyr::Spanned;

use super::diagnostic::did_you_mean;
use super::graph::cycles;
use super::model::{ArtifactSpec, Job, Step};
use super::names::{ArtifactName, JobName};
use super::raw::{Keyed, RawArtifact, RawJob, RawStep, Text};
use super::stages::{Edge, Index};
use super::validate::{Checker, all};
use crate::artifact::ArtifactKind;

impl Checker {
    pub(super) fn steps(&mut self, raw: &[Spanned<RawStep>]) -> Option<Vec<Step>> {
        all(raw
            .iter()
            .map(|step| {
                if step.value.run.trim().is_empty() {
                    self.error(&step.referenced, "this step's command is empty");
                    return None;
                }
                Some(Step {
                    name: step.value.name.clone(),
                    run: step.value.run.clone(),
                })
            })
            .collect())
    }

    pub(super) fn jobs(
        &mut self,
        key: &Text,
        raw: &Spanned<Keyed<RawJob>>,
        index: &Index<'_>,
    ) -> Option<Vec<Job>> {
        if raw.value.0.is_empty() {
            self.error(
                &raw.referenced,
                format!("stage `{}` has no jobs; give it at least one", key.value),
            );
            return None;
        }
        let siblings: Vec<&str> = raw.value.0.iter().map(|(k, _)| k.value.as_str()).collect();
        let jobs = all(raw
            .value
            .0
            .iter()
            .map(|(job_key, job)| {
                let name = self.name(job_key, JobName::parse);
                self.job(&key.value, job_key, name, job, Some(&siblings), index)
            })
            .collect());
        // Cycles among the jobs of this stage.
        let edges: Vec<Vec<Edge>> = raw
            .value
            .0
            .iter()
            .map(|(_, job)| {
                job.needs
                    .iter()
                    .flatten()
                    .filter_map(|n| {
                        let to = siblings.iter().position(|s| *s == n.value)?;
                        Some((to, Some(n.referenced)))
                    })
                    .collect()
            })
            .collect();
        let adjacency: Vec<Vec<usize>> = edges
            .iter()
            .map(|e| e.iter().map(|(to, _)| *to).collect())
            .collect();
        let found = cycles(&adjacency);
        for cycle in &found {
            let names: Vec<&str> = cycle.iter().map(|&i| siblings[i]).collect();
            let stage = &key.value;
            let many = format!("jobs in stage `{stage}`");
            let one = |n: &str| format!("job `{n}` in stage `{stage}`");
            self.report_cycle(cycle, &names, &edges, &one, &many);
        }
        jobs.filter(|_| found.is_empty())
    }

    /// A job of a jobs stage (with its sibling names) or of a deploy stage (`siblings` None).
    pub(super) fn job(
        &mut self,
        stage: &str,
        key: &Text,
        name: Option<JobName>,
        raw: &RawJob,
        siblings: Option<&[&str]>,
        index: &Index<'_>,
    ) -> Option<Job> {
        let subject = match siblings {
            Some(_) => format!("job `{}` in stage `{stage}`", key.value),
            None => format!("the job of stage `{stage}`"),
        };
        let steps = match &raw.steps {
            Some(steps) if steps.value.is_empty() => {
                self.error(
                    &steps.referenced,
                    format!("{subject} has no steps; give it at least one command to run"),
                );
                None
            }
            Some(steps) => self.steps(&steps.value),
            None => {
                self.error(
                    &key.referenced,
                    format!("{subject} has no `steps`; give it at least one command to run"),
                );
                None
            }
        };
        let needs = self.job_needs(&subject, stage, raw, siblings, index);
        let runs_on = all(raw
            .runs_on
            .iter()
            .flatten()
            .map(|label| {
                self.word(
                    label,
                    "runner label",
                    |c| c.is_ascii_alphanumeric() || "-_.".contains(c),
                    "use letters, digits, `-`, `_` and `.`",
                )
            })
            .collect());
        let artifacts = all(raw
            .artifacts
            .iter()
            .flatten()
            .map(|a| self.artifact(a))
            .collect());
        let timeout = match &raw.timeout {
            Some(t) => self.duration(t),
            None => Some(Job::DEFAULT_TIMEOUT),
        };
        let retries = match &raw.retries {
            Some(r) => self.integer(r, "retries", 0, i64::from(Job::MAX_RETRIES)),
            None => Some(0),
        };
        let env = all(raw
            .env
            .iter()
            .flat_map(|e| e.0.iter())
            .map(|(k, v)| {
                Some((
                    self.variable(k, "environment variable name")?,
                    v.value.clone(),
                ))
            })
            .collect());
        let secrets = all(raw
            .secrets
            .iter()
            .flatten()
            .map(|s| self.variable(s, "secret name"))
            .collect());
        Some(Job {
            name: name?,
            steps: steps?,
            needs: needs?,
            runs_on: runs_on?,
            artifacts: artifacts?,
            timeout: timeout?,
            retries: u8::try_from(retries?).ok()?,
            allow_failure: raw.allow_failure.unwrap_or(false),
            optional: raw.optional.unwrap_or(false),
            env: env?.into_iter().collect(),
            secrets: secrets?,
        })
    }

    fn job_needs(
        &mut self,
        subject: &str,
        stage: &str,
        raw: &RawJob,
        siblings: Option<&[&str]>,
        index: &Index<'_>,
    ) -> Option<Vec<JobName>> {
        let Some(list) = &raw.needs else {
            return Some(Vec::new());
        };
        let Some(siblings) = siblings else {
            if let Some(first) = list.first() {
                self.error(
                    &first.referenced,
                    format!("{subject} is the only job of its stage, so it cannot have `needs`"),
                );
                return None;
            }
            return Some(Vec::new());
        };
        all(list
            .iter()
            .map(|need| {
                if siblings.contains(&need.value.as_str()) {
                    return JobName::parse(&need.value).ok();
                }
                let hint = if index.by_name.contains_key(need.value.as_str()) {
                    format!(
                        "; jobs can only need jobs of their own stage, so to wait for stage `{}`, \
                         add it to the `needs` of stage `{stage}`",
                        need.value
                    )
                } else {
                    did_you_mean(&need.value, siblings.iter().copied())
                };
                self.error(
                    &need.referenced,
                    format!(
                        "{subject} needs `{}`, which is not a job in stage `{stage}`{hint}",
                        need.value
                    ),
                );
                None
            })
            .collect())
    }

    fn artifact(&mut self, raw: &RawArtifact) -> Option<ArtifactSpec> {
        let name = self.name(&raw.name, ArtifactName::parse);
        let path = raw.path.value.trim();
        let path_ok = !path.is_empty()
            && !path.starts_with('/')
            && !path.split(['/', '\\']).any(|part| part == "..");
        if !path_ok {
            self.error(
                &raw.path.referenced,
                format!(
                    "`{}` is not a usable artifact path: write a path relative to the job's \
                     working directory that stays inside it",
                    raw.path.value
                ),
            );
        }
        let kind = ArtifactKind::ALL
            .into_iter()
            .find(|k| k.as_str() == raw.kind.value);
        if kind.is_none() {
            let names = ArtifactKind::ALL.map(ArtifactKind::as_str);
            let hint = did_you_mean(&raw.kind.value, names);
            self.error(
                &raw.kind.referenced,
                format!(
                    "`{}` is not an artifact kind; the kinds are {}{hint}",
                    raw.kind.value,
                    names.join(", ")
                ),
            );
        }
        Some(ArtifactSpec {
            name: name?,
            path: path_ok.then(|| path.to_string())?,
            kind: kind?,
        })
    }
}
