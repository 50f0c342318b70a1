//! Flags in the database, and the numbered snapshots SDKs are served from.
//!
//! A flag belongs to a project: its name, type, description, owner, stale mark and the flags it
//! needs are the same everywhere. What varies per environment (on/off, strategies, the flag's
//! variants, impression data) is a row of `flag_environment`; no row means off, no strategies.
//! Segments belong to the project too.
//!
//! Every change ([`flag`], [`edit`], [`segment`], [`settings`], and restoring a snapshot) is a
//! function that takes the caller's connection — a transaction the caller owns — and
//! 1. locks the environment rows it can affect (`for no key update`, in id order: one row for a
//!    change in one environment, all of the project's for a change to the flag itself or to a
//!    segment), so that changes to one environment take turns;
//! 2. writes the rows, and does nothing at all when they already say that;
//! 3. builds each affected environment's `/api/client/features` body from the rows and, where it
//!    differs from before, stores it as the environment's next snapshot (version 1, 2, 3…), which
//!    notifies every server process (a trigger, see the migration);
//! 4. writes one audit entry with `details: {"before", "after", "snapshots"}`.
//!
//! So an environment's newest snapshot always equals what its rows say, and it is what the API
//! serves. A refusal (any error but a database error) comes before anything is written.
//!
//! **Composing.** A use case begins one transaction, calls as many of these as it needs and
//! commits once: an import writes all its rows and then one snapshot and one audit entry
//! ([`super::import`]), and a deployment can apply its flag settings ([`apply_settings`]) and
//! restore a snapshot inside its own transaction, together with its own rows. The [`FlagStore`]
//! methods are each one such transaction around one change.
//!
//! **Lock order.** Environments of a project are locked in id order. A change to one environment
//! locks that one only; a transaction that goes on to change several (or the project's flags or
//! segments) must take [`lock_project`] first, so that it never holds one environment while
//! waiting for a lower one.
//!
//! Reading, comparing and restoring snapshots is in `snapshot.rs`.
//!
//! Stale: `stale` is a mark a person sets and SDKs receive. Whether a flag is *potentially*
//! stale (older than its type's expected lifetime, as Unleash reckons it) is computed when the
//! flag list is read, so that a snapshot changes only when someone changes something.

pub mod edit;
pub mod flag;
mod read;
mod rows;
pub mod segment;
mod service;
pub mod settings;
mod state;

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::definition::{
    Constraints, EnvironmentState, FlagNameError, FlagType, InvalidDefinition,
};
use super::model::Constraint;

pub use read::{flags, segments};
pub use rows::{LockedProject, lock_project};
pub(crate) use rows::{
    dependencies_of, find_environment, find_flag, lock_project_environments, normalize_dependency,
    put_environment_state, revive_flag,
};
pub use settings::{SettingProblem, SettingsApplied, apply_settings};
pub use state::state_sha256;
pub(crate) use state::{Change, build_state, finish, record_snapshot, snapshot_changed, states};

/// The longest description of a flag or segment.
pub const MAX_DESCRIPTION: usize = 2000;
/// The longest owner of a flag.
pub const MAX_OWNER: usize = 200;
/// The longest segment name.
pub const MAX_SEGMENT_NAME: usize = 100;

/// Environments have their home in [`crate::environment`]; the flag store names them by id.
pub use crate::environment::EnvironmentId;

/// A segment's id: an integer, as Unleash's wire format numbers segments.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, sqlx::Type,
)]
#[sqlx(transparent)]
pub struct SegmentId(pub i32);

impl fmt::Display for SegmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// An environment of a project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Environment {
    pub id: EnvironmentId,
    pub project_id: Uuid,
    pub project_key: String,
    pub name: String,
}

/// A snapshot a change made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRef {
    pub environment_id: EnvironmentId,
    pub environment: String,
    pub version: i64,
}

/// What a change did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// It was already so: nothing was written, audited or snapshotted.
    Unchanged,
    /// Stored and audited, with a new snapshot for each environment whose state changed (none
    /// for a change SDKs do not see, such as a flag's owner).
    Changed { snapshots: Vec<SnapshotRef> },
}

impl Applied {
    pub fn changed(&self) -> bool {
        matches!(self, Applied::Changed { .. })
    }

    /// The snapshot the change made in `environment`, if it made one.
    pub fn version_in(&self, environment: EnvironmentId) -> Option<i64> {
        match self {
            Applied::Unchanged => None,
            Applied::Changed { snapshots } => snapshots
                .iter()
                .find(|s| s.environment_id == environment)
                .map(|s| s.version),
        }
    }
}

/// A segment to create, or what to make an existing one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewSegment {
    pub name: String,
    pub description: String,
    pub constraints: Constraints,
}

/// A segment as the segments page shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentInfo {
    pub id: SegmentId,
    pub name: String,
    pub description: String,
    pub constraints: Vec<Constraint>,
    pub updated_at: DateTime<Utc>,
}

/// A flag in one environment, as the flags page lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlagSummary {
    pub name: String,
    pub flag_type: FlagType,
    pub description: String,
    pub owner: Option<String>,
    /// Marked stale by a person.
    pub stale: bool,
    /// Older than its type's expected lifetime: time to remove it from the code?
    pub potentially_stale: bool,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub state: EnvironmentState,
    /// The last change to the flag here (its creation if it never changed here).
    pub changed_at: DateTime<Utc>,
    pub changed_by: String,
}

/// "; the projects are a, b" after a name that matched none of them (nothing when none exist).
fn listed(what: &str, known: &[String]) -> String {
    if known.is_empty() {
        String::new()
    } else {
        format!("; {what} {}", known.join(", "))
    }
}

/// The refusal of a project key that names no project, listing the ones there are.
pub(crate) async fn unknown_project(conn: &mut PgConnection, project: &str) -> FlagError {
    match sqlx::query_scalar!("select project_key from project order by project_key")
        .fetch_all(&mut *conn)
        .await
    {
        Ok(known) => FlagError::UnknownProject {
            project: project.to_owned(),
            known,
        },
        Err(error) => FlagError::Database(error),
    }
}

/// The refusal of an environment name that is not one of `project`'s (or of a project that does
/// not exist), listing what there is.
pub(crate) async fn unknown_environment(
    conn: &mut PgConnection,
    project: &str,
    environment: &str,
) -> FlagError {
    let known = sqlx::query_scalar!(
        r#"select e.name from environment e join project p using (project_id)
           where p.project_key = $1 order by e.position"#,
        project
    )
    .fetch_all(&mut *conn)
    .await;
    match known {
        Ok(known) if known.is_empty() => unknown_project(conn, project).await,
        Ok(known) => FlagError::NoSuchEnvironment {
            project: project.to_owned(),
            environment: environment.to_owned(),
            known,
        },
        Err(error) => FlagError::Database(error),
    }
}

/// Why a flag, segment or dependency change was refused. Nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum FlagError {
    #[error("there is no project `{project}`{}", listed("the projects are", known))]
    UnknownProject { project: String, known: Vec<String> },
    #[error(
        "project `{project}` has no environment `{environment}`{}",
        listed("its environments are", known)
    )]
    NoSuchEnvironment {
        project: String,
        environment: String,
        known: Vec<String>,
    },
    #[error("there is no environment {0}")]
    UnknownEnvironment(EnvironmentId),
    #[error("project `{project}` has no flag `{flag}`")]
    UnknownFlag { project: String, flag: String },
    #[error("project `{project}` already has a flag `{flag}`{}", if *.archived { " (archived: revive it instead)" } else { "" })]
    FlagExists {
        project: String,
        flag: String,
        archived: bool,
    },
    #[error("cannot set flag `{flag}`: {problem}")]
    BadSetting {
        flag: String,
        problem: SettingProblem,
    },
    #[error("flag `{0}` is archived; revive it to change it")]
    Archived(String),
    #[error("flag `{flag}` is needed by {}; change or archive those first", .children.join(", "))]
    HasChildren { flag: String, children: Vec<String> },
    #[error("flag `{flag}` cannot depend on `{parent}`: {problem}")]
    InvalidDependency {
        flag: String,
        parent: String,
        problem: DependencyProblem,
    },
    #[error("project `{project}` has no segment {id}")]
    UnknownSegment { project: String, id: i32 },
    #[error("project `{project}` already has a segment named `{name}`")]
    SegmentExists { project: String, name: String },
    #[error("segment {id} is used by {}; take it out of their strategies first", .flags.join(", "))]
    SegmentInUse { id: i32, flags: Vec<String> },
    #[error("a segment name has 1 to {MAX_SEGMENT_NAME} characters")]
    BadSegmentName,
    #[error("the {field} has {length} characters; at most {limit} are allowed")]
    TooLong {
        field: &'static str,
        length: usize,
        limit: usize,
    },
    #[error(transparent)]
    InvalidDefinition(#[from] InvalidDefinition),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Why a flag cannot need another. Unleash allows one level: a parent needs no flags itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DependencyProblem {
    #[error("that is not a flag name: {0}")]
    BadName(FlagNameError),
    #[error("the project has no such flag")]
    UnknownParent,
    #[error("that flag is archived")]
    ArchivedParent,
    #[error("a flag cannot need itself")]
    Itself,
    #[error("that flag needs other flags itself, and dependencies are one level deep")]
    ParentHasParents,
    #[error("other flags need this one, and dependencies are one level deep")]
    IsAParent,
    #[error("it is listed twice")]
    Duplicate,
    #[error("variants can only be required of a parent that is on")]
    VariantsOfDisabledParent,
}

/// The flag store: every read and change of flags, segments and snapshots, each in a
/// transaction of its own. Use cases that compose changes call the functions of [`flag`],
/// [`edit`] and [`segment`] with their own transaction instead.
#[derive(Debug, Clone)]
pub struct FlagStore {
    pub(super) pool: PgPool,
}
