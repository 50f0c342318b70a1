//! Feature flags as the flags page shows them. Shared with the browser.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Which SDKs a token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SdkTokenKind {
    /// Shipped inside the app (browsers, phones): gets evaluated results only, from the Unleash
    /// Frontend API and OFREP.
    Frontend,
    /// Server SDKs: download the rules from the Unleash client API, or evaluate through OFREP.
    Client,
}

impl SdkTokenKind {
    pub const ALL: [SdkTokenKind; 2] = [SdkTokenKind::Frontend, SdkTokenKind::Client];

    pub fn as_str(self) -> &'static str {
        match self {
            SdkTokenKind::Frontend => "frontend",
            SdkTokenKind::Client => "client",
        }
    }

    /// What the token is for, for the token form.
    pub fn about(self) -> &'static str {
        match self {
            SdkTokenKind::Frontend => {
                "for the shipped app: Unleash frontend SDKs and OpenFeature web/mobile providers"
            }
            SdkTokenKind::Client => {
                "for servers: Unleash server SDKs and OpenFeature server providers"
            }
        }
    }
}

impl fmt::Display for SdkTokenKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown SDK token kind `{0}`; the kinds are frontend and client")]
pub struct UnknownSdkTokenKind(pub String);

impl FromStr for SdkTokenKind {
    type Err = UnknownSdkTokenKind;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SdkTokenKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == s)
            .ok_or_else(|| UnknownSdkTokenKind(s.to_string()))
    }
}

/// One SDK token, as lists show it. The secret is shown once, at creation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SdkTokenSummary {
    pub id: String,
    pub name: String,
    pub kind: SdkTokenKind,
    pub project: String,
    pub environment: String,
    pub prefix: String,
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// An SDK token just created: the only moment its secret is visible.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewSdkToken {
    pub summary: SdkTokenSummary,
    pub secret: String,
}

/// An environment's flags, as the flags page shows them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlagsPage {
    pub project: String,
    pub environment: String,
    /// Every environment of the project, in pipeline order, for the tabs.
    pub environments: Vec<String>,
    /// The environment's newest snapshot (0: no flag was ever set here).
    pub version: i64,
    /// Whether the person may change flags here (the environment's protection says who may).
    pub can_change: bool,
    /// Who may, in words, for the notice shown to the others.
    pub who_may_change: String,
    /// How many other people approve a change here before it applies (the kill switch never
    /// waits); 0: changes apply at once.
    pub required_approvals: u8,
    /// Changes waiting for approvals or their time, oldest first.
    pub waiting: Vec<WaitingChange>,
    pub flags: Vec<FlagRow>,
}

/// One flag in one environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlagRow {
    pub name: String,
    pub flag_type: String,
    pub description: String,
    pub owner: Option<String>,
    pub stale: bool,
    pub potentially_stale: bool,
    pub enabled: bool,
    /// The percentage, when the flag's strategies are one gradual rollout (the slider edits it).
    pub rollout: Option<u8>,
    /// Who the flag is on for, a line per strategy: "25 % of users (by userId) where plan IN [pro]".
    pub targeting: Vec<String>,
    /// Variant names with their share: "blue 50 %".
    pub variants: Vec<String>,
    /// The strategies and variants as Unleash JSON, for the advanced editor.
    pub strategies_json: String,
    pub variants_json: String,
    pub changed_at: DateTime<Utc>,
    pub changed_by: String,
}

/// One entry of an environment's flag history: a snapshot and what it changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub reason: String,
    pub restored_from: Option<i64>,
    /// What changed from the snapshot before, a sentence each.
    pub changes: Vec<String>,
    /// Made by a change an admin let through without its approvals: a security event.
    pub overridden: Option<Overridden>,
}

/// An admin's override of the approvals a change waited for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overridden {
    pub by: String,
    pub reason: String,
    /// Approvals it had, and needed.
    pub approvals: usize,
    pub required: u8,
}

/// A restore as the person who asked sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreOutcome {
    /// The snapshot the environment has now.
    pub version: i64,
    /// False when it already had those flags: nothing was written.
    pub changed: bool,
    pub changes: Vec<String>,
}

/// A flag change waiting for approvals or for its time, as one person sees it: what they may do
/// to it was decided by the environment's rule and the change's state machine, so the page
/// offers nothing that would be refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitingChange {
    pub id: i64,
    pub flag: String,
    pub summary: String,
    pub requested_by: String,
    pub requested_at: DateTime<Utc>,
    pub apply_at: Option<DateTime<Utc>>,
    /// True while it waits for approvals; false once approved (it waits for its time).
    pub needs_approval: bool,
    /// Who approved so far, each once.
    pub approved_by: Vec<String>,
    pub required_approvals: u8,
    /// Who it waits for ("waiting for rob or sam"), or why nobody can approve it and what to do.
    pub waiting_for: Option<String>,
    /// Too few people could approve it: `waiting_for` says what to do.
    pub stuck: bool,
    pub overridden_by: Option<String>,
    pub can_approve: bool,
    pub can_reject: bool,
    pub can_cancel: bool,
    /// An admin may let it through without its approvals, with a reason.
    pub can_override: bool,
}

/// What asking for a flag change did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChangeOutcome {
    /// Applied now; false when the flag already was so.
    Applied { changed: bool },
    /// Waiting for an approval, for its time, or both.
    Waiting {
        id: i64,
        needs_approval: bool,
        apply_at: Option<DateTime<Utc>>,
    },
}
