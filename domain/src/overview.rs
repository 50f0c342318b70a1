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
    /// What it would do if it fired now: "promotes 2026.12.03-4 to staging", "nothing
    /// eligible: …", "starts a run of main".
    #[serde(default)]
    pub would: String,
    /// Its newest tick, with its outcome and lateness.
    #[serde(default)]
    pub last_tick: Option<TickView>,
}

/// A schedule's tick as it happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TickView {
    /// The instant the cron expression named.
    pub due_at: DateTime<Utc>,
    /// claimed, started, nothing-to-do, skipped-paused or failed.
    pub outcome: String,
    /// What it started, why it did nothing, or the error.
    pub detail: Option<String>,
    /// How long after its instant it fired.
    pub lateness_seconds: i64,
    /// Late by more than a minute, or failed: an alert was raised.
    pub alerted: bool,
    /// Older ticks recorded as missed when this one fired (every server was down).
    pub missed_before: i64,
}

impl TickView {
    /// The tick in a sentence: "started: deployment #4 of 2026.12.03-4 to staging (fired 3 days
    /// late; 2 earlier ticks missed while every server was down)".
    pub fn describe(&self) -> String {
        let mut text = match &self.detail {
            Some(detail) => format!("{}: {detail}", self.outcome),
            None => self.outcome.clone(),
        };
        let mut notes = Vec::new();
        if self.lateness_seconds > 60 {
            notes.push(format!("fired {} late", late_words(self.lateness_seconds)));
        }
        if self.missed_before > 0 {
            notes.push(format!(
                "{} earlier tick{} missed while every server was down",
                self.missed_before,
                if self.missed_before == 1 { "" } else { "s" }
            ));
        }
        if !notes.is_empty() {
            text.push_str(&format!(" ({})", notes.join("; ")));
        }
        text
    }
}

/// "3 days", "2 h 5 min", "4 min".
fn late_words(seconds: i64) -> String {
    let (days, hours, minutes) = (
        seconds / 86_400,
        seconds % 86_400 / 3600,
        seconds % 3600 / 60,
    );
    match (days, hours, minutes) {
        (0, 0, m) => format!("{m} min"),
        (0, h, 0) => format!("{h} h"),
        (0, h, m) => format!("{h} h {m} min"),
        (1, 0, _) => "1 day".into(),
        (d, 0, _) => format!("{d} days"),
        (d, h, _) => format!("{d} day{} {h} h", if d == 1 { "" } else { "s" }),
    }
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
