//! The HTTP protocol between the server and its runners (the built-in local runner and remote
//! `flightdeck runner` processes are the same code). All bodies are JSON; every call carries the
//! runner's API token (`Authorization: Bearer fdt_…`, scope `runner`).
//!
//! ```text
//! POST /api/v1/runner/register            RegisterRequest      -> RegisterResponse
//! POST /api/v1/runner/claim               ClaimRequest         -> 200 ClaimedJob | 204 (nothing to do after waiting)
//! POST /api/v1/runner/jobs/{id}/heartbeat HeartbeatRequest     -> HeartbeatResponse | 409 (lease lost: stop the job)
//! POST /api/v1/runner/jobs/{id}/logs      LogBatch             -> 204 | 409
//! PUT  /api/v1/runner/jobs/{id}/artifacts/{name}?attempt=N[&runner_id=…][&file_name=…]
//!                                         raw bytes (a file, or a .tar.gz of a directory sent as
//!                                         Content-Type application/gzip)   -> 201 | 409
//! POST /api/v1/runner/jobs/{id}/finish    FinishRequest        -> 204 | 409
//! ```
//!
//! A claim holds a lease of [`LEASE_SECS`]; the runner renews it every [`HEARTBEAT_SECS`]. When a
//! lease runs out (the runner died), the server requeues the job if attempts remain, else fails
//! it — never leaves it running.

use super::spec::JobSpec;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use uuid::Uuid;

/// How long a claim lasts without a heartbeat.
pub const LEASE_SECS: u64 = 30;
/// How often a runner renews its lease (a third of the lease: two may be lost in a row).
pub const HEARTBEAT_SECS: u64 = 10;
/// How long a claim request waits for work before answering 204.
pub const CLAIM_WAIT_SECS: u64 = 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterRequest {
    /// Unique per machine, e.g. the host name; registering again under it updates the labels.
    pub name: String,
    pub labels: Vec<String>,
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterResponse {
    pub runner_id: Uuid,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimRequest {
    pub runner_id: Uuid,
}

/// A job for the runner: what to check out and what to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimedJob {
    pub job_id: Uuid,
    /// 1 for the first try, 2 for the first retry, …; sent back with logs and artifacts.
    pub attempt: i32,
    pub project: String,
    pub run_number: i64,
    pub job_name: String,
    /// A git URL or a path on the runner's machine.
    pub repository: String,
    pub commit_sha: String,
    pub branch: String,
    pub spec: JobSpec,
    /// Secret values by name, to put in the environment and mask in logs.
    pub secrets: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatRequest {
    pub runner_id: Uuid,
    pub attempt: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatResponse {
    /// A person canceled the job: kill its processes and finish it as canceled.
    pub cancel: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
    /// Lines the runner itself writes: step headers, timings, why it stopped.
    System,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
            Stream::System => "system",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    pub stream: Stream,
    /// One line without its newline, secrets already masked.
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogBatch {
    pub runner_id: Uuid,
    pub attempt: i32,
    /// The number of the batch's first line in this attempt's log (from 1). With it, a batch
    /// sent again after a lost answer is stored once; without it, lines go after the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_line: Option<i32>,
    pub lines: Vec<LogLine>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Succeeded,
    Failed,
    Canceled,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinishRequest {
    pub runner_id: Uuid,
    pub attempt: i32,
    pub outcome: Outcome,
    pub exit_code: Option<i32>,
    /// Why, in words: "step `Unit tests` exited with 1", "timed out after 10m".
    pub reason: Option<String>,
}
