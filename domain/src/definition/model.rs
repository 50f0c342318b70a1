//! The checked pipeline definition. Every name here resolves, every number is in range and the
//! `needs` graphs have no cycles: [`super::parse`] is the only way to get a [`Definition`].

use std::collections::BTreeMap;
use std::time::Duration;

use chrono_tz::Tz;

use super::names::{
    ArtifactName, EnvironmentName, JobName, PhaseName, ProjectKey, ScheduleName, StageName,
};
use super::schedule::CronExpr;
use crate::artifact::ArtifactKind;
use crate::role::Role;

/// A whole `flightdeck.yml`.
#[derive(Debug, Clone, PartialEq)]
pub struct Definition {
    pub(super) project: Project,
    pub(super) triggers: Triggers,
    pub(super) environments: Vec<Environment>,
    pub(super) phases: Vec<Phase>,
    pub(super) schedules: Vec<Schedule>,
    pub(super) rollback: RollbackPolicy,
}

impl Definition {
    pub fn project(&self) -> &Project {
        &self.project
    }

    pub fn triggers(&self) -> &Triggers {
        &self.triggers
    }

    /// Environments in the order the file declares them.
    pub fn environments(&self) -> &[Environment] {
        &self.environments
    }

    pub fn environment(&self, name: &str) -> Option<&Environment> {
        self.environments.iter().find(|e| e.name.as_str() == name)
    }

    /// Phases in pipeline order, each with its stages in order.
    pub fn phases(&self) -> &[Phase] {
        &self.phases
    }

    /// Every stage of every phase, in pipeline order.
    pub fn stages(&self) -> impl Iterator<Item = &Stage> {
        self.phases.iter().flat_map(|p| p.stages.iter())
    }

    pub fn stage(&self, name: &str) -> Option<&Stage> {
        self.stages().find(|s| s.name.as_str() == name)
    }

    /// The phase a stage belongs to.
    pub fn phase_of(&self, stage: &str) -> Option<&Phase> {
        self.phases
            .iter()
            .find(|p| p.stages.iter().any(|s| s.name.as_str() == stage))
    }

    /// The stage that deploys releases to an environment (there is at most one).
    pub fn deploy_stage(&self, environment: &str) -> Option<&Stage> {
        self.stages().find(
            |s| matches!(&s.kind, StageKind::Deploy(d) if d.environment.as_str() == environment),
        )
    }

    /// Every artifact the pipeline declares, in pipeline order.
    pub fn artifacts(&self) -> impl Iterator<Item = &ArtifactSpec> {
        self.phases.iter().flat_map(Phase::artifacts)
    }

    /// Schedules in the order the file declares them.
    pub fn schedules(&self) -> &[Schedule] {
        &self.schedules
    }

    pub fn rollback(&self) -> &RollbackPolicy {
        &self.rollback
    }
}

/// The app this pipeline ships.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Project {
    pub name: String,
    pub key: ProjectKey,
    pub description: Option<String>,
}

/// What starts a run besides schedules, people and the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Triggers {
    /// Branches whose pushes start a run; `*` at the end of a pattern matches any rest
    /// (`release/*`). Empty: pushes start nothing.
    pub push_branches: Vec<String>,
}

impl Triggers {
    /// Whether a push to `branch` starts a run.
    pub fn push_starts_run(&self, branch: &str) -> bool {
        self.push_branches
            .iter()
            .any(|pattern| match pattern.strip_suffix('*') {
                Some(prefix) => branch.starts_with(prefix),
                None => branch == pattern,
            })
    }
}

/// A place a release runs: development, staging, production.
#[derive(Debug, Clone, PartialEq)]
pub struct Environment {
    pub name: EnvironmentName,
    /// Where people reach it: an absolute URL or a path on this portal (`/env/staging/`).
    pub url: Option<String>,
    pub protection: Protection,
    /// Deploys outside the window wait for it, unless a release manager overrides.
    pub deploy_window: Option<DeployWindow>,
    /// The database the release's migrations are applied to.
    pub database: Option<DatabaseTarget>,
}

/// Who may deploy to an environment, and how many must approve first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Protection {
    /// Approvals needed before a deploy starts; 0 means none.
    pub required_approvals: u8,
    /// Roles that may deploy, promote and approve (admins always may).
    pub allowed_roles: Vec<Role>,
}

impl Default for Protection {
    fn default() -> Self {
        Protection {
            required_approvals: 0,
            allowed_roles: vec![Role::Developer, Role::ReleaseManager],
        }
    }
}

/// A recurring span of time in which deploys may start: it opens at every firing of `opens`
/// and stays open for `duration`.
#[derive(Debug, Clone, PartialEq)]
pub struct DeployWindow {
    pub opens: CronExpr,
    pub duration: Duration,
    pub timezone: Tz,
}

/// Where an environment's database is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseTarget {
    /// The URL is in this environment variable of the server (a secret, so never in the file).
    UrlEnv(String),
    /// A database of this name on Flightdeck's own PostgreSQL server.
    Name(String),
}

/// A group of stages shown together: development, CI/CD, staging, production.
#[derive(Debug, Clone, PartialEq)]
pub struct Phase {
    pub name: PhaseName,
    pub title: String,
    pub description: Option<String>,
    pub stages: Vec<Stage>,
}

impl Phase {
    /// The artifacts this phase's jobs declare, in order.
    pub fn artifacts(&self) -> impl Iterator<Item = &ArtifactSpec> {
        self.stages
            .iter()
            .flat_map(Stage::jobs)
            .flat_map(|j| j.artifacts.iter())
    }
}

/// One step of the pipeline as the overview shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    pub name: StageName,
    pub title: String,
    pub description: Option<String>,
    /// Stages that must succeed before this one starts, with the implicit "previous stage"
    /// already filled in. Always empty for manual stages.
    pub needs: Vec<StageName>,
    pub kind: StageKind,
}

impl Stage {
    /// The jobs runners execute for this stage: a jobs stage's jobs, or a deploy's job.
    pub fn jobs(&self) -> &[Job] {
        match &self.kind {
            StageKind::Jobs(jobs) => jobs,
            StageKind::Deploy(Deploy { job: Some(job), .. }) => std::slice::from_ref(job),
            _ => &[],
        }
    }

    /// Whether the server runs this stage (everything but manual stages).
    pub fn is_executed(&self) -> bool {
        !matches!(self.kind, StageKind::Manual(_))
    }

    /// The environment this stage acts on, if any.
    pub fn environment(&self) -> Option<&EnvironmentName> {
        match &self.kind {
            StageKind::Deploy(d) => Some(&d.environment),
            StageKind::Flags(f) => Some(&f.environment),
            StageKind::Check(c) => Some(&c.environment),
            StageKind::Publish(p) => Some(&p.environment),
            StageKind::Migrate(m) => Some(&m.environment),
            StageKind::Manual(_) | StageKind::Jobs(_) | StageKind::Gate(_) => None,
        }
    }
}

/// What a stage does.
#[derive(Debug, Clone, PartialEq)]
pub enum StageKind {
    /// Done by people outside Flightdeck (on a laptop, on a phone); shown, never run.
    Manual(ManualStage),
    /// Jobs that runners execute, in parallel unless their `needs` say otherwise.
    Jobs(Vec<Job>),
    /// Waits for people with a role to approve.
    Gate(Gate),
    /// Deploys the release to an environment: the deployment that later stages build on and
    /// that a rollback reverses. One per environment.
    Deploy(Deploy),
    /// Sets feature flags in an environment; the states are recorded with the release.
    Flags(FlagChange),
    /// Watches the release's health in an environment for a while.
    Check(HealthCheck),
    /// Publishes web or asset artifacts to the environment's static site (the CDN origin).
    Publish(Publish),
    /// Applies the release's database migrations, after a backup.
    Migrate(Migrate),
}

impl StageKind {
    /// The key that selects this kind in YAML.
    pub fn as_str(&self) -> &'static str {
        match self {
            StageKind::Manual(_) => "manual",
            StageKind::Jobs(_) => "jobs",
            StageKind::Gate(_) => "gate",
            StageKind::Deploy(_) => "deploy",
            StageKind::Flags(_) => "flags",
            StageKind::Check(_) => "check",
            StageKind::Publish(_) => "publish",
            StageKind::Migrate(_) => "migrate",
        }
    }
}

/// Work people do outside Flightdeck, such as writing code or testing by hand. A stage on a
/// developer's machine can name the git hook that runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManualStage {
    pub hook: Option<GitHook>,
    /// A markdown file in the repository (at the release's commit) whose numbered items people
    /// tick when a deployment reaches this stage.
    pub checklist: Option<String>,
    /// The commands the hook runs, shown so everyone runs the same ones.
    pub steps: Vec<Step>,
}

/// The git hooks a manual stage can describe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GitHook {
    PreCommit,
    CommitMsg,
    PrePush,
}

impl GitHook {
    pub const ALL: [GitHook; 3] = [GitHook::PreCommit, GitHook::CommitMsg, GitHook::PrePush];

    pub fn as_str(self) -> &'static str {
        match self {
            GitHook::PreCommit => "pre-commit",
            GitHook::CommitMsg => "commit-msg",
            GitHook::PrePush => "pre-push",
        }
    }
}

/// Work a runner does: shell steps in one working copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub name: JobName,
    pub steps: Vec<Step>,
    /// Jobs of the same stage that must succeed first.
    pub needs: Vec<JobName>,
    /// Labels a runner must have to claim the job; empty means any runner.
    pub runs_on: Vec<String>,
    pub artifacts: Vec<ArtifactSpec>,
    pub timeout: Duration,
    /// How many times a failed attempt is tried again (0 to 5).
    pub retries: u8,
    /// A failure is shown but does not fail the stage.
    pub allow_failure: bool,
    /// Skipped, with the reason shown, when no runner has its labels.
    pub optional: bool,
    pub env: BTreeMap<String, String>,
    /// Names of secrets passed to the job as environment variables.
    pub secrets: Vec<String>,
}

impl Job {
    /// The timeout of a job that sets none.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);
    /// The most retries a job may ask for.
    pub const MAX_RETRIES: u8 = 5;
}

/// A shell command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub name: Option<String>,
    pub run: String,
}

impl Step {
    /// What the step is called in logs: its name, or its command.
    pub fn label(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.run)
    }
}

/// A file or directory a job leaves behind, kept as an artifact of the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactSpec {
    pub name: ArtifactName,
    /// Relative to the job's working directory.
    pub path: String,
    pub kind: ArtifactKind,
}

/// Approval by people with a role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gate {
    pub role: Role,
    /// Distinct people who must approve (at least 1).
    pub approvals: u8,
    /// Admins may approve or reject a release they deployed or whose commits they wrote (a
    /// one-admin team's escape hatch, audited as security). Nobody else ever may.
    pub admins_decide_own_releases: bool,
}

/// A deployment of the release to an environment: the server publishes artifacts and
/// migrates the database (after a backup), then a runner runs the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deploy {
    pub environment: EnvironmentName,
    /// `web` or `asset-bundle` artifacts to serve as the environment's static site.
    pub publish: Vec<ArtifactName>,
    /// A `db-schema` artifact whose migrations are applied, after a backup.
    pub migrate: Option<ArtifactName>,
    /// What a runner does to deploy, with the release's artifacts at hand. Named after the stage.
    pub job: Option<Job>,
}

/// Feature flag states to set in an environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagChange {
    pub environment: EnvironmentName,
    pub set: Vec<FlagSetting>,
}

/// One flag's new state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagSetting {
    pub flag: String,
    pub enabled: bool,
    /// Percentage of users (by stickiness key) who get the flag; none means everyone.
    pub rollout: Option<u8>,
}

/// Watches an environment's health for `window`; fails on a breached threshold or on an
/// expected analytics event that never arrived.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheck {
    pub environment: EnvironmentName,
    pub window: Duration,
    pub fail_on: HealthThresholds,
    pub expect_events: Vec<String>,
}

/// Limits on a release's health in an environment. A limit that is `None` is not checked.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HealthThresholds {
    /// Percentage of sessions that did not crash.
    pub crash_free_sessions_below: Option<f64>,
    /// Percentage of sessions with an error.
    pub error_rate_above: Option<f64>,
    pub p95_latency_above: Option<Duration>,
    /// Judge nothing until this many sessions were seen.
    pub min_sessions: Option<u32>,
}

impl HealthThresholds {
    /// Whether at least one limit is set.
    pub fn is_empty(&self) -> bool {
        self.crash_free_sessions_below.is_none()
            && self.error_rate_above.is_none()
            && self.p95_latency_above.is_none()
    }
}

/// Publishes `web` or `asset-bundle` artifacts as the environment's static site, with
/// content-hashed assets, switched atomically.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    pub environment: EnvironmentName,
    pub artifacts: Vec<ArtifactName>,
}

/// Applies the migrations in a `db-schema` artifact to the environment's database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migrate {
    pub environment: EnvironmentName,
    pub artifact: ArtifactName,
    /// Back up the database first, so a rollback can restore it.
    pub backup: bool,
}

/// Something that happens at fixed times.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub name: ScheduleName,
    pub cron: CronExpr,
    pub timezone: Tz,
    pub action: ScheduleAction,
    pub description: Option<String>,
}

/// What a schedule does when it fires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScheduleAction {
    /// Starts a run of the pipeline on the head of a branch.
    Run { branch: String },
    /// Promotes the newest release that passed everything before the environment's deploy
    /// stage into that environment.
    Promote { environment: EnvironmentName },
}

/// How a release is taken back.
#[derive(Debug, Clone, PartialEq)]
pub struct RollbackPolicy {
    /// Rolls back without asking when a threshold is breached after a deploy.
    pub automatic: Option<AutomaticRollback>,
    /// Roles that may roll back by hand (admins always may).
    pub manual_roles: Vec<Role>,
    /// Restore the database backup taken before the release's migrations.
    pub restore_database: bool,
    /// Restore the flag states the previous release ran with.
    pub restore_flags: bool,
}

impl Default for RollbackPolicy {
    fn default() -> Self {
        RollbackPolicy {
            automatic: None,
            manual_roles: vec![Role::ReleaseManager],
            restore_database: true,
            restore_flags: true,
        }
    }
}

/// When a rollback happens on its own.
#[derive(Debug, Clone, PartialEq)]
pub struct AutomaticRollback {
    /// Environments watched; the file's default is every environment.
    pub environments: Vec<EnvironmentName>,
    /// How long after a deploy the release is watched.
    pub window: Duration,
    pub on: HealthThresholds,
}
