//! Deployments: one release going into one environment, through the stages of the pipeline that
//! belong to that environment — its deploy stage and every stage after it up to the next deploy
//! stage (the sample's staging phase: deploy-staging → ui-tests → manual-testing → qa-approval →
//! user-acceptance → performance-tests). [`plan::stages_for`] says which, from the definition.
//!
//! - A stage's record moves only through [`record::StageRecord::apply`]; the deployment's state
//!   is [`record::summarize`] of its stages; `store::save_stage` is the one place that writes
//!   either.
//! - People's decisions (approve, reject, tick, pass, fail, override a window) are use cases in
//!   [`decide`], each one transaction with its audit entry, each asking
//!   [`crate::environment::decide`] who may.
//! - The deployer service in `server/` drives deployments: it claims one with a lease (like a
//!   runner claims a job, so one replica drives it), and does what its current stage needs —
//!   the deploy job and tests as runs of the same engine as CI (`run.deployment_stage_id`), the
//!   database and site steps itself, each recorded before and after in `deployment_step`.
//!
//! **Lock order**: the `deployment` row, then its `deployment_stage` rows, then a run's locks
//! (the run engine's order). The run engine never locks a deployment.

pub mod backups;
pub mod checklist;
pub mod decide;
pub mod jobs;
pub mod plan;
pub mod query;
pub mod record;
pub mod rollback;
pub mod store;

use crate::role::Role;
use serde::{Deserialize, Serialize};
use std::fmt;
use uuid::Uuid;

/// A release's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
#[sqlx(transparent)]
pub struct ReleaseId(pub Uuid);

/// A deployment's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
#[sqlx(transparent)]
pub struct DeploymentId(pub Uuid);

impl fmt::Display for DeploymentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What started a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeploymentTrigger {
    /// A person on a page or at the command line.
    Manual,
    /// The REST API.
    Api,
    /// A schedule fired.
    Schedule,
    /// A green run reached the deploy stage that ends the CI part.
    Pipeline,
}

impl DeploymentTrigger {
    pub fn as_str(self) -> &'static str {
        match self {
            DeploymentTrigger::Manual => "manual",
            DeploymentTrigger::Api => "api",
            DeploymentTrigger::Schedule => "schedule",
            DeploymentTrigger::Pipeline => "pipeline",
        }
    }
}

/// One flag setting a `flags` stage applies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlagSettingSpec {
    pub flag: String,
    pub enabled: bool,
    pub rollout: Option<u8>,
}

/// A stage as a deployment runs it: a copy of what the definition said when the deployment was
/// made (stored as `deployment_stage.spec`), so a later edit of the file does not change a
/// deployment under way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum StageSpec {
    Deploy {
        publish: Vec<String>,
        migrate: Option<String>,
        job: Option<crate::run::plan::PlannedStage>,
    },
    Jobs {
        jobs: crate::run::plan::PlannedStage,
    },
    Manual {
        checklist: Option<String>,
    },
    Gate {
        role: Role,
        approvals: u8,
        /// Admins may decide on a release they deployed or wrote (see [`decide::Ownership`]).
        #[serde(default)]
        admins_decide_own_releases: bool,
    },
    Flags {
        environment: String,
        set: Vec<FlagSettingSpec>,
    },
    Check {
        window_secs: u64,
        /// The thresholds in words ("crash-free sessions below 99 %").
        thresholds: Vec<String>,
        expect_events: Vec<String>,
        min_sessions: Option<u32>,
    },
    Publish {
        artifacts: Vec<String>,
    },
    Migrate {
        artifact: String,
        backup: bool,
    },
    /// A rollback's one stage: its steps are in the plan.
    Rollback {
        plan: rollback::RollbackPlan,
    },
}

impl StageSpec {
    pub fn kind(&self) -> &'static str {
        match self {
            StageSpec::Deploy { .. } => "deploy",
            StageSpec::Jobs { .. } => "jobs",
            StageSpec::Manual { .. } => "manual",
            StageSpec::Gate { .. } => "gate",
            StageSpec::Flags { .. } => "flags",
            StageSpec::Check { .. } => "check",
            StageSpec::Publish { .. } => "publish",
            StageSpec::Migrate { .. } => "migrate",
            StageSpec::Rollback { .. } => "rollback",
        }
    }

    /// What the stage does, in words.
    pub fn summary(&self) -> String {
        match self {
            StageSpec::Deploy {
                publish,
                migrate,
                job,
            } => {
                let mut parts = Vec::new();
                if let Some(artifact) = migrate {
                    parts.push(format!(
                        "migrates the database ({artifact}, after a backup)"
                    ));
                }
                if let Some(job) = job {
                    let names: Vec<_> = job.jobs.iter().map(|j| j.name.as_str()).collect();
                    parts.push(format!("runs the deploy job {}", names.join(", ")));
                }
                if !publish.is_empty() {
                    parts.push(format!("publishes {}", publish.join(", ")));
                }
                parts.push("records the configuration and the flag snapshot".into());
                parts.join("; ")
            }
            StageSpec::Jobs { jobs } => {
                let names: Vec<_> = jobs.jobs.iter().map(|j| j.name.as_str()).collect();
                format!("runs {} against the deployed site", names.join(", "))
            }
            StageSpec::Manual {
                checklist: Some(path),
            } => {
                format!("people tick the checklist in {path}")
            }
            StageSpec::Manual { checklist: None } => "a person marks it done".into(),
            StageSpec::Gate {
                role, approvals, ..
            } => match approvals {
                1 => format!("one {} approves", role.label()),
                n => format!("{n} different {}s approve", role.label()),
            },
            StageSpec::Flags { set, .. } => {
                let parts: Vec<String> = set
                    .iter()
                    .map(|s| match (s.enabled, s.rollout) {
                        (true, Some(r)) => format!("{} on for {r} %", s.flag),
                        (true, None) => format!("{} on", s.flag),
                        (false, _) => format!("{} off", s.flag),
                    })
                    .collect();
                format!("sets {}", parts.join(", "))
            }
            StageSpec::Check {
                window_secs,
                thresholds,
                expect_events,
                ..
            } => {
                let mut parts = thresholds.clone();
                if !expect_events.is_empty() {
                    parts.push(format!("expects {}", expect_events.join(", ")));
                }
                format!(
                    "watches health for {} min: {}",
                    window_secs / 60,
                    parts.join("; ")
                )
            }
            StageSpec::Publish { artifacts } => format!("publishes {}", artifacts.join(", ")),
            StageSpec::Migrate { artifact, backup } => format!(
                "migrates the database with {artifact}{}",
                if *backup { " after a backup" } else { "" }
            ),
            StageSpec::Rollback { plan } => format!(
                "takes {} back to {}: {}",
                plan.from_version,
                plan.to_version,
                plan.steps()
                    .into_iter()
                    .map(|(_, what)| what)
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DeploymentError {
    #[error("there is no project `{0}`")]
    UnknownProject(String),
    #[error(transparent)]
    Environment(#[from] crate::environment::EnvironmentError),
    #[error("project `{project}` has no release `{version}`")]
    UnknownRelease { project: String, version: String },
    #[error("no release of `{project}` may go to {environment} yet: {why}")]
    NothingEligible {
        project: String,
        environment: String,
        why: String,
    },
    #[error("the pipeline has no deploy stage for {0}, so nothing can be deployed there")]
    NoDeployStage(String),
    #[error(
        "{environment} already has deployment #{number} under way ({version}); wait for it or cancel it"
    )]
    Busy {
        environment: String,
        number: i64,
        version: String,
    },
    #[error("there is no deployment #{number} in `{project}`")]
    UnknownDeployment { project: String, number: i64 },
    #[error("project `{project}` has no database backup `{id}`")]
    UnknownBackup { project: String, id: String },
    #[error("deployment #{number} has no stage `{stage}`")]
    UnknownStage { number: i64, stage: String },
    #[error(transparent)]
    Refused(#[from] crate::environment::Refusal),
    /// A decision that does not fit the stage now (what the stage is waiting for, in words).
    #[error("{0}")]
    NotNow(String),
    #[error("{0}")]
    BadInput(String),
    #[error(transparent)]
    Transition(#[from] record::InvalidStageTransition),
    #[error("project `{0}` has no pipeline definition loaded")]
    NoDefinition(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}
