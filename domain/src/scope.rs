//! Scopes of API tokens. Shared with the browser, which lists them on the token form.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// What a token may do. Every route that accepts tokens names the one scope it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Scope {
    /// Read pipelines, runs, environments and the audit-free parts of the API.
    Read,
    /// Load a new pipeline definition.
    DefinitionWrite,
    /// Pause and resume schedules.
    SchedulesWrite,
    /// Start, cancel and re-run runs (CI systems, git hooks).
    RunsWrite,
    /// Be a runner: claim jobs, send logs, artifacts and results.
    Runner,
}

impl Scope {
    pub const ALL: [Scope; 5] = [
        Scope::Read,
        Scope::DefinitionWrite,
        Scope::SchedulesWrite,
        Scope::RunsWrite,
        Scope::Runner,
    ];

    /// What the scope allows, for the token form.
    pub fn about(self) -> &'static str {
        match self {
            Scope::Read => "read pipelines, environments and the overview",
            Scope::DefinitionWrite => "load a new flightdeck.yml",
            Scope::SchedulesWrite => "pause and resume schedules",
            Scope::RunsWrite => "start, cancel and re-run runs",
            Scope::Runner => "run jobs as a runner",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::DefinitionWrite => "definition:write",
            Scope::SchedulesWrite => "schedules:write",
            Scope::RunsWrite => "runs:write",
            Scope::Runner => "runner",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown scope `{0}`; the scopes are read, definition:write, schedules:write, runs:write, runner"
)]
pub struct UnknownScope(pub String);

impl FromStr for Scope {
    type Err = UnknownScope;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == s)
            .ok_or_else(|| UnknownScope(s.to_string()))
    }
}
