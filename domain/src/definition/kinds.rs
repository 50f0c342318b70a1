//! Checks what each kind of stage says: gates, deploys, flags, health checks, publishing and
//! migrations, with the environments and artifacts they refer to.

use serde_saphyr::Spanned;

use super::diagnostic::did_you_mean;
use super::model::{
    Deploy, FlagChange, FlagSetting, Gate, GitHook, HealthCheck, HealthThresholds, ManualStage,
    Migrate, Publish, StageKind,
};
use super::names::{ArtifactName, EnvironmentName, JobName, StageName};
use super::raw::{
    RawCheck, RawDeploy, RawFlags, RawManualStage, RawMigrate, RawPublish, RawStage, Text,
};
use super::stages::Index;
use super::validate::{Checker, MAX_APPROVALS, all, optional};
use crate::artifact::ArtifactKind;

impl Checker {
    pub(super) fn stage_kind(
        &mut self,
        key: &Text,
        raw: &RawStage,
        name: Option<&StageName>,
        index: &Index<'_>,
    ) -> Option<StageKind> {
        let subject = format!("stage `{}`", key.value);
        if let Some(manual) = &raw.manual {
            return self.manual(manual.as_ref()).map(StageKind::Manual);
        }
        if let Some(jobs) = &raw.jobs {
            return self.jobs(key, jobs, index).map(StageKind::Jobs);
        }
        if let Some(gate) = &raw.gate {
            let role = self.role(&gate.role);
            let approvals = match &gate.approvals {
                Some(a) => self.integer(a, "approvals", 1, MAX_APPROVALS),
                None => Some(1),
            };
            return Some(StageKind::Gate(Gate {
                role: role?,
                approvals: u8::try_from(approvals?).ok()?,
                admins_decide_own_releases: gate.admins_decide_own_releases.unwrap_or(false),
            }));
        }
        if let Some(deploy) = &raw.deploy {
            return self.deploy(key, deploy, name, index).map(StageKind::Deploy);
        }
        if let Some(flags) = &raw.flags {
            return self.flags(&subject, flags).map(StageKind::Flags);
        }
        if let Some(check) = &raw.check {
            return self.check_stage(key, &subject, check).map(StageKind::Check);
        }
        if let Some(publish) = &raw.publish {
            return self
                .publish(&subject, publish, index)
                .map(StageKind::Publish);
        }
        if let Some(migrate) = &raw.migrate {
            return self
                .migrate(&subject, migrate, index)
                .map(StageKind::Migrate);
        }
        None
    }

    fn manual(&mut self, raw: Option<&RawManualStage>) -> Option<ManualStage> {
        let Some(raw) = raw else {
            return Some(ManualStage {
                hook: None,
                checklist: None,
                steps: Vec::new(),
            });
        };
        let hook = raw.hook.as_ref().map(|h| {
            let found = GitHook::ALL.into_iter().find(|g| g.as_str() == h.value);
            if found.is_none() {
                let names = GitHook::ALL.map(GitHook::as_str);
                let hint = did_you_mean(&h.value, names);
                self.error(
                    &h.referenced,
                    format!(
                        "`{}` is not a git hook we describe; use one of {}{hint}",
                        h.value,
                        names.join(", ")
                    ),
                );
            }
            found
        });
        let steps = self.steps(raw.steps.as_deref().unwrap_or_default());
        let checklist = raw.checklist.as_ref().map(|c| {
            let path = c.value.trim();
            if path.is_empty() || path.starts_with('/') || path.split('/').any(|p| p == "..") {
                self.error(
                    &c.referenced,
                    format!(
                        "checklist `{}` must be a path inside the repository, like docs/manual-tests.md",
                        c.value
                    ),
                );
            }
            path.to_string()
        });
        Some(ManualStage {
            hook: optional(hook)?,
            checklist,
            steps: steps?,
        })
    }

    fn deploy(
        &mut self,
        key: &Text,
        raw: &RawDeploy,
        name: Option<&StageName>,
        index: &Index<'_>,
    ) -> Option<Deploy> {
        let subject = &format!("stage `{}`", key.value);
        let environment = self.environment_ref(&raw.environment, subject);
        if environment.is_some() {
            let env = raw.environment.value.clone();
            match self.deployed.get(&env) {
                Some(other) => {
                    let message = format!(
                        "environment `{env}` is already deployed by {other}; an environment has \
                         one deploy stage, and later stages act on it with `flags`, `check`, \
                         `publish` or `migrate`"
                    );
                    self.error(&raw.environment.referenced, message);
                }
                None => {
                    self.deployed.insert(env, subject.to_string());
                }
            }
        }
        let publish = match &raw.publish {
            None => Some(Vec::new()),
            Some(list) => self.published(subject, list, index),
        };
        let migrate = match &raw.migrate {
            None => Some(None),
            Some(artifact) => self
                .migration(
                    subject,
                    &raw.environment,
                    environment.is_some(),
                    artifact,
                    index,
                )
                .map(Some),
        };
        let job = match &raw.job {
            None => Some(None),
            Some(job) => {
                // The job is named after its stage, and found where `job:` is.
                let job_name = name.and_then(|n| JobName::parse(n.as_str()).ok());
                let job_key = Spanned::new(key.value.clone(), job.referenced, job.defined);
                self.job(&key.value, &job_key, job_name, &job.value, None, index)
                    .map(Some)
            }
        };
        Some(Deploy {
            environment: environment?,
            publish: publish?,
            migrate: migrate?,
            job: job?,
        })
    }

    /// An environment reference from a stage that acts after that environment's deploy.
    fn deployed_environment(&mut self, subject: &str, text: &Text) -> Option<EnvironmentName> {
        let environment = self.environment_ref(text, subject)?;
        self.needs_deploy
            .push((text.value.clone(), text.referenced, subject.to_string()));
        Some(environment)
    }

    fn flags(&mut self, subject: &str, raw: &RawFlags) -> Option<FlagChange> {
        let environment = self.deployed_environment(subject, &raw.environment);
        if raw.set.value.0.is_empty() {
            self.error(
                &raw.set.referenced,
                format!("{subject} sets no flags; list them under `set`"),
            );
        }
        let set = all(raw
            .set
            .value
            .0
            .iter()
            .map(|(flag, setting)| {
                let name = self.word(
                    flag,
                    "flag name",
                    |c| c.is_ascii_alphanumeric() || "-_.:".contains(c),
                    "use letters, digits, `-`, `_`, `.` and `:`",
                );
                let rollout = match &setting.rollout {
                    Some(r) => self.integer(r, "rollout", 0, 100).map(Some),
                    None => Some(None),
                };
                Some(FlagSetting {
                    flag: name?,
                    enabled: setting.enabled,
                    rollout: rollout?.and_then(|r| u8::try_from(r).ok()),
                })
            })
            .collect());
        Some(FlagChange {
            environment: environment?,
            set: set.filter(|s| !s.is_empty())?,
        })
    }

    fn check_stage(&mut self, key: &Text, subject: &str, raw: &RawCheck) -> Option<HealthCheck> {
        let environment = self.deployed_environment(subject, &raw.environment);
        let window = self.duration(&raw.window);
        let fail_on = match &raw.fail_on {
            Some(t) => self.thresholds(t),
            None => Some(HealthThresholds::default()),
        };
        let events = all(raw
            .expect_events
            .iter()
            .flatten()
            .map(|e| {
                self.word(
                    e,
                    "event name",
                    |c| c.is_ascii_alphanumeric() || "-_.:".contains(c),
                    "use letters, digits, `-`, `_`, `.` and `:`",
                )
            })
            .collect());
        let checks_nothing = fail_on.as_ref().is_some_and(HealthThresholds::is_empty)
            && raw.expect_events.as_ref().is_none_or(Vec::is_empty);
        if checks_nothing {
            self.error(
                &key.referenced,
                format!(
                    "{subject} checks nothing: give it `fail_on` thresholds, `expect_events`, \
                     or both"
                ),
            );
            return None;
        }
        Some(HealthCheck {
            environment: environment?,
            window: window?,
            fail_on: fail_on?,
            expect_events: events?,
        })
    }

    /// A reference to a declared artifact of one of `kinds`.
    fn artifact_ref(
        &mut self,
        subject: &str,
        text: &Text,
        kinds: &[ArtifactKind],
        index: &Index<'_>,
    ) -> Option<ArtifactName> {
        let wanted: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
        match index.artifacts.get(text.value.as_str()) {
            None => {
                let hint = did_you_mean(&text.value, index.artifacts.keys().copied());
                self.error(
                    &text.referenced,
                    format!(
                        "{subject} uses the artifact `{}`, which no job declares{hint}",
                        text.value
                    ),
                );
                None
            }
            Some(kind) if !wanted.contains(kind) => {
                self.error(
                    &text.referenced,
                    format!(
                        "{subject} uses the artifact `{}`, of kind {kind}, but needs one of kind {}",
                        text.value,
                        wanted.join(" or ")
                    ),
                );
                None
            }
            Some(_) => ArtifactName::parse(&text.value).ok(),
        }
    }

    /// A non-empty list of artifacts to serve as a static site.
    fn published(
        &mut self,
        subject: &str,
        list: &Spanned<Vec<Text>>,
        index: &Index<'_>,
    ) -> Option<Vec<ArtifactName>> {
        if list.value.is_empty() {
            self.error(
                &list.referenced,
                format!("{subject} publishes nothing; name a web or asset-bundle artifact"),
            );
            return None;
        }
        let kinds = [ArtifactKind::Web, ArtifactKind::AssetBundle];
        all(list
            .value
            .iter()
            .map(|a| self.artifact_ref(subject, a, &kinds, index))
            .collect())
    }

    /// The db-schema artifact migrated into an environment, which must have a database.
    fn migration(
        &mut self,
        subject: &str,
        environment: &Text,
        declared: bool,
        artifact: &Text,
        index: &Index<'_>,
    ) -> Option<ArtifactName> {
        let artifact = self.artifact_ref(subject, artifact, &[ArtifactKind::DbSchema], index);
        if declared && !self.environment_has_database(&environment.value) {
            self.error(
                &environment.referenced,
                format!(
                    "{subject} migrates the database of environment `{}`, which has no \
                     `database`; declare one under the environment",
                    environment.value
                ),
            );
            return None;
        }
        artifact
    }

    fn publish(&mut self, subject: &str, raw: &RawPublish, index: &Index<'_>) -> Option<Publish> {
        let environment = self.deployed_environment(subject, &raw.environment);
        let artifacts = self.published(subject, &raw.artifacts, index);
        Some(Publish {
            environment: environment?,
            artifacts: artifacts?,
        })
    }

    fn migrate(&mut self, subject: &str, raw: &RawMigrate, index: &Index<'_>) -> Option<Migrate> {
        let environment = self.deployed_environment(subject, &raw.environment);
        let artifact = self.migration(
            subject,
            &raw.environment,
            environment.is_some(),
            &raw.artifact,
            index,
        );
        Some(Migrate {
            environment: environment?,
            artifact: artifact?,
            backup: raw.backup.unwrap_or(true),
        })
    }
}
