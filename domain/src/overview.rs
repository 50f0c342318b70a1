//! The overview: every phase, stage, artifact, schedule and environment of a project at a glance.
//! These are the view types the home page renders; `project::overview` fills them.

use crate::artifact::ArtifactKind;
use crate::state::RunState;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The home page: the projects, and the chosen one in full.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Overview {
    pub projects: Vec<ProjectLink>,
    /// `None` while no project has been loaded.
    pub project: Option<ProjectOverview>,
}

/// A project as menus list it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectLink {
    pub key: String,
    pub name: String,
    /// The environment its flags page opens on: the first one the pipeline reaches.
    pub first_environment: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProjectOverview {
    pub key: String,
    pub name: String,
    pub description: Option<String>,
    pub definition: DefinitionInfo,
    pub phases: Vec<PhaseView>,
    pub schedules: Vec<ScheduleView>,
    pub environments: Vec<EnvironmentView>,
}

/// Which version of flightdeck.yml the page shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DefinitionInfo {
    pub version: i64,
    pub sha256: String,
    pub origin: String,
    pub loaded_by: String,
    pub loaded_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhaseView {
    pub name: String,
    pub title: String,
    pub stages: Vec<StageView>,
    /// What the phase's jobs build.
    pub artifacts: Vec<ArtifactView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageView {
    pub name: String,
    pub title: String,
    /// manual, jobs, gate, deploy, flags, check, publish or migrate.
    pub kind: String,
    /// What the stage does, in a sentence fragment: "3 jobs: lint, fmt, audit",
    /// "Approval by QA", "Deploys to production".
    pub detail: String,
    /// The state in the latest run; `None` when no run has reached this stage yet.
    pub state: Option<RunState>,
    pub last_run: Option<LastRun>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastRun {
    pub number: i64,
    pub finished_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactView {
    pub name: String,
    pub kind: ArtifactKind,
    pub job: String,
    /// The newest run that built it; `None` while it is only declared in flightdeck.yml.
    pub built: Option<LastRun>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleView {
    pub name: String,
    pub description: String,
    pub cron: String,
    pub timezone: String,
    /// The next five times it fires, already written in its own time zone.
    pub next_fires: Vec<String>,
    pub paused: Option<PauseInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PauseInfo {
    pub by: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnvironmentView {
    pub name: String,
    pub url: Option<String>,
    /// `None` until a release is deployed there.
    pub current_release: Option<String>,
    pub deployed_at: Option<DateTime<Utc>>,
    /// "1 approval by release manager", or "unprotected".
    pub protection: String,
    /// "opens 0 2 * * SUN for 4h (Europe/Berlin)", when deploys are restricted to a window.
    pub deploy_window: Option<String>,
    /// The deployment under way there, with the stage it is at.
    pub in_progress: Option<crate::release_view::DeploymentSummary>,
}
