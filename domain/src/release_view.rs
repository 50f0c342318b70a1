//! Releases and deployments as pages show them: plain serde types the browser shares with the
//! server. The server builds them in `release::query` and `deployment::query`.

use crate::state::RunState;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A release in a list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReleaseSummary {
    pub version: String,
    pub number: i64,
    pub run_number: i64,
    pub commit_sha: String,
    pub commit_message: String,
    pub commit_author: String,
    pub created_at: DateTime<Utc>,
    /// Where it stands in each environment, in the definition's order.
    pub environments: Vec<EnvironmentStatus>,
}

/// What a release is to one environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnvironmentStatus {
    pub environment: String,
    pub status: ReleaseStatus,
    /// In words: "runs there since 3 Dec 18:04", "waiting for QA approval", "rejected by ana: …".
    pub detail: Option<String>,
    /// The deployment this is about, when there is one.
    pub deployment: Option<i64>,
}

/// A release's standing in one environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReleaseStatus {
    /// Never deployed there.
    None,
    /// A deployment of it is under way.
    InProgress,
    /// A deployment of it waits for people (a gate, a checklist, approvals, a window).
    Waiting,
    /// It runs there now.
    Current,
    /// It ran there before.
    Ran,
    /// Someone rejected it there.
    Rejected,
    /// Its deployment there failed.
    Failed,
}

impl ReleaseStatus {
    pub fn label(self) -> &'static str {
        match self {
            ReleaseStatus::None => "not deployed",
            ReleaseStatus::InProgress => "deploying",
            ReleaseStatus::Waiting => "waiting",
            ReleaseStatus::Current => "runs here",
            ReleaseStatus::Ran => "ran here",
            ReleaseStatus::Rejected => "rejected",
            ReleaseStatus::Failed => "failed",
        }
    }
}

/// One commit a release brings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitView {
    pub sha: String,
    pub author: String,
    pub message: String,
}

/// An artifact of a release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseArtifact {
    pub name: String,
    pub kind: String,
    pub size_bytes: i64,
    pub sha256: String,
    /// Where to download it.
    pub href: String,
}

/// A database migration a release carries, and the environments where it would be new.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationView {
    pub version: i32,
    pub name: String,
    pub has_down: bool,
    /// Environments whose current release does not have it yet.
    pub new_in: Vec<String>,
}

/// The release page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReleaseDetail {
    pub project: String,
    pub summary: ReleaseSummary,
    pub branch: String,
    pub previous: Option<String>,
    pub notes: String,
    pub notes_edited_by: Option<String>,
    pub notes_edited_at: Option<DateTime<Utc>>,
    /// None until the server has read the commits; then the commits since the previous release.
    pub commits: Option<Vec<CommitView>>,
    pub describe_error: Option<String>,
    pub artifacts: Vec<ReleaseArtifact>,
    pub migrations: Vec<MigrationView>,
    pub deployments: Vec<DeploymentSummary>,
    /// Whether the viewer may edit the notes.
    pub can_edit_notes: bool,
    /// Environments the viewer may promote this release into now.
    pub can_promote_to: Vec<String>,
}

/// A deployment in a history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploymentSummary {
    pub number: i64,
    pub kind: String,
    pub environment: String,
    pub version: String,
    pub from_version: Option<String>,
    pub state: RunState,
    pub reason: Option<String>,
    pub trigger: String,
    pub triggered_by: String,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// The stage it is at now (or stopped at), with its state.
    pub current_stage: Option<String>,
    /// A rollback's cause in words ("asked for by ana", "automatic: error rate above 5 %").
    pub cause: Option<String>,
}

/// A stage of a deployment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploymentStageView {
    pub name: String,
    pub title: String,
    pub kind: String,
    pub state: RunState,
    pub reason: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// The run that executes its jobs, when it has any.
    pub run_number: Option<i64>,
    /// What it does, in words ("publishes web, assets; migrates db-schema").
    pub summary: String,
    /// The checklist of a manual stage.
    pub checklist: Vec<ChecklistItem>,
    /// Steps the server recorded (backup, migrations, site switch), in order.
    pub steps: Vec<StepView>,
    /// Decisions people made here, oldest first.
    pub decisions: Vec<DecisionView>,
    /// What the viewer may do here now.
    pub actions: Vec<StageAction>,
    /// Why the viewer, who has the role, may not decide here (a gate on their own release).
    pub why_not: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChecklistItem {
    pub number: i32,
    pub text: String,
    pub section: Option<String>,
    pub ticked_by: Option<String>,
    pub ticked_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepView {
    pub name: String,
    /// started, done, failed; or pending (planned, not begun) and not-needed.
    pub state: String,
    /// What the step does, in words (a rollback's planned steps).
    pub what: Option<String>,
    pub detail: String,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionView {
    pub kind: String,
    pub item: Option<i32>,
    pub by: String,
    pub comment: Option<String>,
    pub at: DateTime<Utc>,
}

/// Something a person may do to a stage now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StageAction {
    Approve,
    Reject,
    Tick,
    Fail,
    Pass,
    OverrideWindow,
}

/// The deployment page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploymentDetail {
    pub project: String,
    pub summary: DeploymentSummary,
    pub stages: Vec<DeploymentStageView>,
    pub site_url: Option<String>,
    pub flag_snapshot_version: Option<i64>,
    pub runtime_config: Option<serde_json::Value>,
    /// Whether the viewer may cancel it now.
    pub can_cancel: bool,
    /// The database backups it took (before its migrations; a rollback's safety dump).
    pub backups: Vec<BackupView>,
}

/// A database backup as a deployment's page lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupView {
    /// Why it was taken, in words.
    pub purpose: String,
    pub file_name: String,
    pub database: String,
    pub size_bytes: i64,
    pub sha256: String,
    pub created_at: DateTime<Utc>,
    /// A safety dump is kept at least until then.
    pub kept_until: Option<DateTime<Utc>>,
    /// Each table and its rows when it was taken ("study_session: 45 rows").
    pub tables: Vec<String>,
    /// Where to download it; none when the viewer may not.
    pub download: Option<String>,
}

/// An environment as its page shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnvironmentView {
    pub project: String,
    pub name: String,
    pub url: Option<String>,
    pub current_version: Option<String>,
    pub deployed_at: Option<DateTime<Utc>>,
    pub in_progress: Option<DeploymentSummary>,
    pub history: Vec<DeploymentSummary>,
    /// The next release a promotion would bring, and why none when there is none.
    pub next_eligible: Option<String>,
    pub window: Option<String>,
    pub protection: String,
    /// What a rollback would do now, or why there is none to offer.
    pub rollback: Result<RollbackOffer, String>,
}

/// What the environment page's **Roll back** offers, and its confirm sheet says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RollbackOffer {
    /// The deployment it rolls back (sent back with the tap, so a double tap is one rollback).
    pub rolls_back: i64,
    pub from: String,
    pub to: String,
    /// Each step in order, in words.
    pub steps: Vec<String>,
    /// What happens to the database and what was written since the deploy, in words.
    pub database: String,
    /// A rollback of this deployment already asked for: tapping shows its progress.
    pub existing: Option<i64>,
    /// Why the person looking may not roll back (None: they may).
    pub refused: Option<String>,
}

/// A release waiting for user acceptance, as the product managers' inbox shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InboxItem {
    pub project: String,
    pub deployment: i64,
    pub environment: String,
    /// The gate's name and title.
    pub stage: String,
    pub stage_title: String,
    pub version: String,
    pub commit_sha: String,
    /// The commits it brings (its own commit while they are being read).
    pub commits: Vec<CommitView>,
    pub notes: String,
    /// Where to try it: the environment's site.
    pub try_url: Option<String>,
    pub flags: Vec<FlagInvolved>,
    /// What QA decided on the release's QA gates (approve or reject, with the comment).
    pub qa: Vec<DecisionView>,
    pub waiting_since: Option<DateTime<Utc>>,
    /// Who approved already, and how many approvals the gate needs.
    pub approvals: Vec<String>,
    pub approvals_needed: u8,
    /// Why the viewer may not accept or reject it; none when they may.
    pub why_not: Option<String>,
}

/// A feature flag a release involves, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlagInvolved {
    pub flag: String,
    /// "production's feature-flags stage turns it on for 10 %", "on in staging, off in production".
    pub why: String,
}
