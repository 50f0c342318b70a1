//! Runs as pages show them: the runs list, a run with its stages and jobs, a job with its log.

use crate::artifact::ArtifactKind;
use crate::state::RunState;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One row of the runs list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunSummary {
    pub project: String,
    pub number: i64,
    pub state: RunState,
    pub trigger: String,
    pub triggered_by: String,
    pub commit_sha: String,
    pub branch: String,
    pub commit_author: String,
    pub commit_message: String,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// What the runs list filters on. Empty fields do not filter.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunFilter {
    pub branch: Option<String>,
    pub state: Option<RunState>,
    pub trigger: Option<String>,
    /// Runs numbered below this (keyset paging).
    pub before: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunPage {
    pub runs: Vec<RunSummary>,
    pub next_before: Option<i64>,
}

/// A run with everything its page shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunDetail {
    pub summary: RunSummary,
    pub stages: Vec<StageRun>,
    pub artifacts: Vec<ArtifactInfo>,
    /// When the page was made, so durations of running jobs are consistent.
    pub now: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageRun {
    pub name: String,
    pub title: String,
    pub needs: Vec<String>,
    pub state: RunState,
    pub jobs: Vec<JobSummary>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSummary {
    pub name: String,
    pub state: RunState,
    pub reason: Option<String>,
    pub needs: Vec<String>,
    pub runs_on: Vec<String>,
    pub attempt: i32,
    pub max_attempts: i32,
    pub allow_failure: bool,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub timeout_secs: u64,
    /// How long the last successful run of this job took, for the progress bar.
    pub typical_secs: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactInfo {
    pub id: String,
    pub job: String,
    pub name: String,
    pub kind: ArtifactKind,
    pub file_name: String,
    pub size_bytes: i64,
    pub sha256: String,
}

/// A job's page: its place in the run and its log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobDetail {
    pub run: RunSummary,
    pub stage: String,
    pub job: JobSummary,
    pub job_id: String,
    pub steps: Vec<String>,
    pub artifacts: Vec<ArtifactInfo>,
    pub log: LogPage,
}

/// A window of a job's log. Lines are numbered from 1 per attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogPage {
    pub attempt: i32,
    pub first_line: i64,
    pub lines: Vec<LogLineView>,
    pub total_lines: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLineView {
    pub no: i64,
    pub stream: String,
    pub text: String,
}
