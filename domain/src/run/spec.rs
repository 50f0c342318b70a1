//! What a runner is told to do for one job: frozen into the job when the run is created, so a
//! later change of the definition does not change a run already under way.

use crate::artifact::ArtifactKind;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpec {
    pub steps: Vec<StepSpec>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Names of secrets; their values are sent to the runner at claim time, never stored here.
    #[serde(default)]
    pub secrets: Vec<String>,
    pub timeout_secs: u64,
    #[serde(default)]
    pub artifacts: Vec<ArtifactWire>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepSpec {
    pub name: String,
    pub run: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactWire {
    pub name: String,
    /// Relative to the workspace; a directory is uploaded as a .tar.gz of it.
    pub path: String,
    pub kind: ArtifactKind,
}
