//! Flags in the database, and the numbered snapshots SDKs are served from.
//!
//! A flag belongs to a project: its name, type, description, owner, stale mark and the flags it
//! needs are the same everywhere. What varies per environment (on/off, strategies, the flag's
//! variants, impression data) is a row of `flag_environment`; no row means off, no strategies.
//! Segments belong to the project too.
//!
//! Every change is one transaction that
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
//! serves. Reading, comparing and restoring snapshots is in `snapshot.rs`.
//!
//! Stale: `stale` is a mark a person sets and SDKs receive. Whether a flag is *potentially*
//! stale (older than its type's expected lifetime, as Unleash reckons it) is computed when the
//! flag list is read, so that a snapshot changes only when someone changes something.

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::definition::{
    Constraints, EnvironmentEdit, EnvironmentState, FlagDetails, FlagName, FlagNameError, FlagType,
    InvalidDefinition, NewFlag, Strategies, Variants,
};
use super::model::{
    ClientFeature, ClientFeatures, Constraint, Dependency, Segment, Strategy, Variant,
};
use crate::audit::{Actor, AuditRecord, Origin};

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

/// Why a flag, segment or dependency change was refused. Nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum FlagError {
    #[error("there is no project `{0}`")]
    UnknownProject(String),
    #[error("project `{project}` has no environment `{environment}`")]
    NoSuchEnvironment {
        project: String,
        environment: String,
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

/// The flag store: every read and change of flags, segments and snapshots.
#[derive(Debug, Clone)]
pub struct FlagStore {
    pub(super) pool: PgPool,
}

impl FlagStore {
    pub fn new(pool: PgPool) -> Self {
        FlagStore { pool }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Finds a project's environment by the names people and API tokens use.
    pub async fn environment(
        &self,
        project: &str,
        environment: &str,
    ) -> Result<Environment, FlagError> {
        let row = sqlx::query!(
            r#"select e.environment_id, e.project_id, e.name, p.project_key
               from environment e join project p on p.project_id = e.project_id
               where p.project_key = $1 and e.name = $2"#,
            project,
            environment
        )
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| FlagError::NoSuchEnvironment {
            project: project.to_owned(),
            environment: environment.to_owned(),
        })?;
        Ok(Environment {
            id: EnvironmentId(row.environment_id),
            project_id: row.project_id,
            project_key: row.project_key,
            name: row.name,
        })
    }

    /// Checks that the environment has the flag (and that it is not archived).
    pub async fn environment_flag_exists(
        &self,
        environment: EnvironmentId,
        flag: &FlagName,
    ) -> Result<(), FlagError> {
        let mut conn = self.pool.acquire().await?;
        let env = find_environment(&mut conn, environment)
            .await?
            .ok_or(FlagError::UnknownEnvironment(environment))?;
        find_flag(&mut conn, &env.project_key, env.project_id, flag).await?;
        Ok(())
    }

    /// Creates a flag, off and without strategies in every environment.
    pub async fn create(
        &self,
        project: &str,
        flag: NewFlag,
        actor: Actor,
        origin: &Origin,
    ) -> Result<Applied, FlagError> {
        check_length("description", &flag.description, MAX_DESCRIPTION)?;
        check_length("owner", flag.owner.as_deref().unwrap_or(""), MAX_OWNER)?;
        let mut tx = self.pool.begin().await?;
        let locked = lock_project(&mut tx, project).await?;
        let before = states(&mut tx, &locked).await?;
        let created = sqlx::query_scalar!(
            r#"insert into flag (project_id, name, description, owner, flag_type, created_by)
               values ($1, $2, $3, $4, $5, $6)
               on conflict (project_id, name) do nothing
               returning flag_id"#,
            locked.id,
            flag.name.as_str(),
            flag.description,
            flag.owner,
            flag.flag_type.as_str(),
            actor.name,
        )
        .fetch_optional(&mut *tx)
        .await?;
        if created.is_none() {
            let archived = sqlx::query_scalar!(
                r#"select archived_at is not null as "archived!" from flag
                   where project_id = $1 and name = $2"#,
                locked.id,
                flag.name.as_str()
            )
            .fetch_one(&mut *tx)
            .await?;
            return Err(FlagError::FlagExists {
                project: project.to_owned(),
                flag: flag.name.to_string(),
                archived,
            });
        }
        let reason = format!("{} created", flag.name);
        let snapshots = snapshot_changed(&mut tx, &locked, &before, &actor.name, &reason).await?;
        AuditRecord::new(actor, "flag.created", origin)
            .target(format!("{project}/{}", flag.name))
            .details(json!({
                "before": null,
                "after": {
                    "type": flag.flag_type,
                    "description": flag.description,
                    "owner": flag.owner,
                },
                "snapshots": snapshots,
            }))
            .write(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Applied::Changed { snapshots })
    }

    /// Changes what a flag is the same in every environment: type, description, owner, stale.
    pub async fn update(
        &self,
        project: &str,
        flag: &FlagName,
        details: FlagDetails,
        actor: Actor,
        origin: &Origin,
    ) -> Result<Applied, FlagError> {
        check_length("description", &details.description, MAX_DESCRIPTION)?;
        check_length("owner", details.owner.as_deref().unwrap_or(""), MAX_OWNER)?;
        let mut tx = self.pool.begin().await?;
        let locked = lock_project(&mut tx, project).await?;
        let found = find_flag(&mut tx, &locked.key, locked.id, flag).await?;
        let row = sqlx::query!(
            "select flag_type, description, owner, stale from flag where flag_id = $1",
            found.id
        )
        .fetch_one(&mut *tx)
        .await?;
        let current = FlagDetails {
            flag_type: parse_type(&row.flag_type)?,
            description: row.description,
            owner: row.owner,
            stale: row.stale,
        };
        if current == details {
            return Ok(Applied::Unchanged);
        }
        let before = states(&mut tx, &locked).await?;
        sqlx::query!(
            r#"update flag set flag_type = $2, description = $3, owner = $4, stale = $5
               where flag_id = $1"#,
            found.id,
            details.flag_type.as_str(),
            details.description,
            details.owner,
            details.stale,
        )
        .execute(&mut *tx)
        .await?;
        let reason = format!("{flag} details changed");
        let snapshots = snapshot_changed(&mut tx, &locked, &before, &actor.name, &reason).await?;
        AuditRecord::new(actor, "flag.updated", origin)
            .target(format!("{project}/{flag}"))
            .details(json!({ "before": current, "after": details, "snapshots": snapshots }))
            .write(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Applied::Changed { snapshots })
    }

    /// Sets the flags this flag needs (Unleash's feature dependencies), replacing the old list.
    pub async fn set_dependencies(
        &self,
        project: &str,
        flag: &FlagName,
        dependencies: Vec<Dependency>,
        actor: Actor,
        origin: &Origin,
    ) -> Result<Applied, FlagError> {
        let mut tx = self.pool.begin().await?;
        let locked = lock_project(&mut tx, project).await?;
        let found = find_flag(&mut tx, &locked.key, locked.id, flag).await?;
        let invalid = |parent: &str, problem| FlagError::InvalidDependency {
            flag: flag.to_string(),
            parent: parent.to_owned(),
            problem,
        };
        let flags: HashMap<String, (Uuid, bool, bool)> = sqlx::query!(
            r#"select f.flag_id, f.name, f.archived_at is not null as "archived!",
                      exists(select 1 from flag_dependency d where d.flag_id = f.flag_id) as "has_parents!"
               from flag f where f.project_id = $1"#,
            locked.id
        )
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .map(|r| (r.name, (r.flag_id, r.archived, r.has_parents)))
        .collect();
        if let Some(first) = dependencies.first() {
            let children = live_children(&mut tx, found.id).await?;
            if !children.is_empty() {
                return Err(invalid(&first.feature, DependencyProblem::IsAParent));
            }
        }
        let mut wanted: Vec<(Uuid, Dependency)> = Vec::with_capacity(dependencies.len());
        for dependency in dependencies {
            let parent = &dependency.feature;
            FlagName::parse(parent).map_err(|e| invalid(parent, DependencyProblem::BadName(e)))?;
            let Some(&(parent_id, archived, has_parents)) = flags.get(parent) else {
                return Err(invalid(parent, DependencyProblem::UnknownParent));
            };
            let problem = if parent_id == found.id {
                Some(DependencyProblem::Itself)
            } else if archived {
                Some(DependencyProblem::ArchivedParent)
            } else if has_parents {
                Some(DependencyProblem::ParentHasParents)
            } else if wanted.iter().any(|(id, _)| *id == parent_id) {
                Some(DependencyProblem::Duplicate)
            } else if dependency.enabled == Some(false)
                && dependency.variants.as_ref().is_some_and(|v| !v.is_empty())
            {
                Some(DependencyProblem::VariantsOfDisabledParent)
            } else {
                None
            };
            if let Some(problem) = problem {
                return Err(invalid(parent, problem));
            }
            wanted.push((parent_id, normalize_dependency(dependency)));
        }
        wanted.sort_by(|a, b| a.1.feature.cmp(&b.1.feature));
        let current = dependencies_of(&mut tx, found.id).await?;
        let after: Vec<Dependency> = wanted.iter().map(|(_, d)| d.clone()).collect();
        if current == after {
            return Ok(Applied::Unchanged);
        }
        let before = states(&mut tx, &locked).await?;
        sqlx::query!("delete from flag_dependency where flag_id = $1", found.id)
            .execute(&mut *tx)
            .await?;
        for (parent_id, dependency) in &wanted {
            sqlx::query!(
                r#"insert into flag_dependency (project_id, flag_id, parent_flag_id, enabled, variants)
                   values ($1, $2, $3, $4, $5)"#,
                locked.id,
                found.id,
                parent_id,
                dependency.enabled != Some(false),
                dependency.variants.as_deref().unwrap_or_default(),
            )
            .execute(&mut *tx)
            .await?;
        }
        let reason = format!("{flag} dependencies changed");
        let snapshots = snapshot_changed(&mut tx, &locked, &before, &actor.name, &reason).await?;
        AuditRecord::new(actor, "flag.dependencies_changed", origin)
            .target(format!("{project}/{flag}"))
            .details(json!({ "before": current, "after": after, "snapshots": snapshots }))
            .write(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Applied::Changed { snapshots })
    }

    /// Archives a flag: SDKs no longer see it anywhere. Refused while other live flags need it.
    pub async fn archive(
        &self,
        project: &str,
        flag: &FlagName,
        actor: Actor,
        origin: &Origin,
    ) -> Result<Applied, FlagError> {
        let mut tx = self.pool.begin().await?;
        let locked = lock_project(&mut tx, project).await?;
        let found = match find_flag(&mut tx, &locked.key, locked.id, flag).await {
            Err(FlagError::Archived(_)) => return Ok(Applied::Unchanged),
            other => other?,
        };
        let children = live_children(&mut tx, found.id).await?;
        if !children.is_empty() {
            return Err(FlagError::HasChildren {
                flag: flag.to_string(),
                children,
            });
        }
        let before = states(&mut tx, &locked).await?;
        sqlx::query!(
            "update flag set archived_at = now() where flag_id = $1",
            found.id
        )
        .execute(&mut *tx)
        .await?;
        let reason = format!("{flag} archived");
        let snapshots = snapshot_changed(&mut tx, &locked, &before, &actor.name, &reason).await?;
        AuditRecord::new(actor, "flag.archived", origin)
            .target(format!("{project}/{flag}"))
            .details(json!({
                "before": { "archived": false },
                "after": { "archived": true },
                "snapshots": snapshots,
            }))
            .write(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Applied::Changed { snapshots })
    }

    /// Brings an archived flag back, off in every environment (as Unleash revives flags); its
    /// strategies and variants are as they were.
    pub async fn revive(
        &self,
        project: &str,
        flag: &FlagName,
        actor: Actor,
        origin: &Origin,
    ) -> Result<Applied, FlagError> {
        let mut tx = self.pool.begin().await?;
        let locked = lock_project(&mut tx, project).await?;
        let id = match find_flag(&mut tx, &locked.key, locked.id, flag).await {
            Err(FlagError::Archived(_)) => flag_id(&mut tx, locked.id, flag).await?,
            Ok(_) => return Ok(Applied::Unchanged),
            Err(other) => return Err(other),
        };
        let before = states(&mut tx, &locked).await?;
        revive_flag(&mut tx, id, None, &actor.name).await?;
        let reason = format!("{flag} revived");
        let snapshots = snapshot_changed(&mut tx, &locked, &before, &actor.name, &reason).await?;
        AuditRecord::new(actor, "flag.revived", origin)
            .target(format!("{project}/{flag}"))
            .details(json!({
                "before": { "archived": true },
                "after": { "archived": false },
                "snapshots": snapshots,
            }))
            .write(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Applied::Changed { snapshots })
    }

    /// Turns a flag on or off in one environment.
    pub async fn toggle(
        &self,
        environment: EnvironmentId,
        flag: &FlagName,
        enabled: bool,
        actor: Actor,
        origin: &Origin,
    ) -> Result<Applied, FlagError> {
        let edit = EnvironmentEdit::Enable { enabled };
        self.apply(environment, flag, edit, actor, origin).await
    }

    /// The kill switch: turns a flag off in one environment, audited as `flag.killed`.
    pub async fn kill(
        &self,
        environment: EnvironmentId,
        flag: &FlagName,
        actor: Actor,
        origin: &Origin,
    ) -> Result<Applied, FlagError> {
        self.apply(environment, flag, EnvironmentEdit::Kill, actor, origin)
            .await
    }

    /// Replaces a flag's strategies in one environment. Every segment they name must be one of
    /// the project's.
    pub async fn set_strategies(
        &self,
        environment: EnvironmentId,
        flag: &FlagName,
        strategies: Strategies,
        actor: Actor,
        origin: &Origin,
    ) -> Result<Applied, FlagError> {
        let edit = EnvironmentEdit::Strategies { strategies };
        self.apply(environment, flag, edit, actor, origin).await
    }

    /// Replaces a flag's own variants in one environment.
    pub async fn set_variants(
        &self,
        environment: EnvironmentId,
        flag: &FlagName,
        variants: Variants,
        actor: Actor,
        origin: &Origin,
    ) -> Result<Applied, FlagError> {
        let edit = EnvironmentEdit::Variants { variants };
        self.apply(environment, flag, edit, actor, origin).await
    }

    /// Turns a flag's impression events on or off in one environment.
    pub async fn set_impression_data(
        &self,
        environment: EnvironmentId,
        flag: &FlagName,
        enabled: bool,
        actor: Actor,
        origin: &Origin,
    ) -> Result<Applied, FlagError> {
        let edit = EnvironmentEdit::ImpressionData { enabled };
        self.apply(environment, flag, edit, actor, origin).await
    }

    /// Applies one edit to a flag in one environment: the form every per-environment change
    /// takes, so that a scheduled or approved change can be stored as an `EnvironmentEdit` and
    /// applied here later.
    pub async fn apply(
        &self,
        environment: EnvironmentId,
        flag: &FlagName,
        edit: EnvironmentEdit,
        actor: Actor,
        origin: &Origin,
    ) -> Result<Applied, FlagError> {
        let mut tx = self.pool.begin().await?;
        let env = lock_environment(&mut tx, environment)
            .await?
            .ok_or(FlagError::UnknownEnvironment(environment))?;
        let found = find_flag(&mut tx, &env.project_key, env.project_id, flag).await?;
        if let EnvironmentEdit::Strategies { strategies } = &edit {
            check_segments(&mut tx, &env, strategies.segment_ids()).await?;
        }
        let before = environment_state(&mut tx, found.id, env.id).await?;
        let after = before.apply(&edit);
        if after == before {
            return Ok(Applied::Unchanged);
        }
        let state_before = build_state(&mut tx, &env).await?;
        put_environment_state(&mut tx, found.id, env.id, &after, &actor.name).await?;
        let state_after = build_state(&mut tx, &env).await?;
        let snapshots = if state_after == state_before {
            Vec::new()
        } else {
            let reason = edit.describe(flag);
            let snapshot = record_snapshot(
                &mut tx,
                &env,
                &state_after,
                &actor.name,
                &reason,
                None,
                None,
            )
            .await?;
            vec![snapshot]
        };
        AuditRecord::new(actor, edit.action(), origin)
            .target(format!("{}/{}/{flag}", env.project_key, env.name))
            .details(json!({ "before": before, "after": after, "snapshots": snapshots }))
            .write(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Applied::Changed { snapshots })
    }

    /// Creates a segment. No strategy uses it yet, so no environment changes.
    pub async fn create_segment(
        &self,
        project: &str,
        segment: NewSegment,
        actor: Actor,
        origin: &Origin,
    ) -> Result<SegmentId, FlagError> {
        check_segment(&segment)?;
        let mut tx = self.pool.begin().await?;
        let locked = lock_project(&mut tx, project).await?;
        let id = sqlx::query_scalar!(
            r#"insert into segment (project_id, name, description, constraints)
               values ($1, $2, $3, $4)
               on conflict (project_id, name) where deleted_at is null do nothing
               returning segment_id"#,
            locked.id,
            segment.name,
            segment.description,
            Json(segment.constraints.as_slice()) as _,
        )
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| FlagError::SegmentExists {
            project: project.to_owned(),
            name: segment.name.clone(),
        })?;
        AuditRecord::new(actor, "segment.created", origin)
            .target(format!("{project}/segment/{id}"))
            .details(json!({ "before": null, "after": segment }))
            .write(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(SegmentId(id))
    }

    /// Changes a segment's name, description and constraints; every environment whose flags use
    /// it gets a new snapshot.
    pub async fn update_segment(
        &self,
        project: &str,
        id: SegmentId,
        segment: NewSegment,
        actor: Actor,
        origin: &Origin,
    ) -> Result<Applied, FlagError> {
        check_segment(&segment)?;
        let mut tx = self.pool.begin().await?;
        let locked = lock_project(&mut tx, project).await?;
        let current = live_segment(&mut tx, &locked, id).await?;
        let next = SegmentInfo {
            id,
            name: segment.name.clone(),
            description: segment.description.clone(),
            constraints: segment.constraints.as_slice().to_vec(),
            updated_at: current.updated_at,
        };
        if current == next {
            return Ok(Applied::Unchanged);
        }
        let taken = sqlx::query_scalar!(
            r#"select exists(select 1 from segment where project_id = $1 and name = $2
                             and deleted_at is null and segment_id <> $3) as "taken!""#,
            locked.id,
            segment.name,
            id.0
        )
        .fetch_one(&mut *tx)
        .await?;
        if taken {
            return Err(FlagError::SegmentExists {
                project: project.to_owned(),
                name: segment.name,
            });
        }
        let before = states(&mut tx, &locked).await?;
        sqlx::query!(
            r#"update segment set name = $2, description = $3, constraints = $4, updated_at = now()
               where segment_id = $1"#,
            id.0,
            segment.name,
            segment.description,
            Json(segment.constraints.as_slice()) as _,
        )
        .execute(&mut *tx)
        .await?;
        let reason = format!("segment {} changed", segment.name);
        let snapshots = snapshot_changed(&mut tx, &locked, &before, &actor.name, &reason).await?;
        AuditRecord::new(actor, "segment.updated", origin)
            .target(format!("{project}/segment/{id}"))
            .details(json!({ "before": current, "after": next, "snapshots": snapshots }))
            .write(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Applied::Changed { snapshots })
    }

    /// Deletes a segment no strategy uses (archived flags' included). It keeps its id, so that a
    /// restored snapshot that used it brings it back.
    pub async fn delete_segment(
        &self,
        project: &str,
        id: SegmentId,
        actor: Actor,
        origin: &Origin,
    ) -> Result<Applied, FlagError> {
        let mut tx = self.pool.begin().await?;
        let locked = lock_project(&mut tx, project).await?;
        let current = live_segment(&mut tx, &locked, id).await?;
        let users = sqlx::query_scalar!(
            r#"select distinct f.name from flag_environment fe join flag f on f.flag_id = fe.flag_id
               where f.project_id = $1 and fe.strategies @> $2
               order by f.name"#,
            locked.id,
            json!([{ "segments": [id.0] }]),
        )
        .fetch_all(&mut *tx)
        .await?;
        if !users.is_empty() {
            return Err(FlagError::SegmentInUse {
                id: id.0,
                flags: users,
            });
        }
        sqlx::query!(
            "update segment set deleted_at = now() where segment_id = $1",
            id.0
        )
        .execute(&mut *tx)
        .await?;
        AuditRecord::new(actor, "segment.deleted", origin)
            .target(format!("{project}/segment/{id}"))
            .details(json!({ "before": current, "after": null }))
            .write(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Applied::Changed {
            snapshots: Vec::new(),
        })
    }

    /// The project's segments, by name.
    pub async fn segments(&self, project: &str) -> Result<Vec<SegmentInfo>, FlagError> {
        let project_id = sqlx::query_scalar!(
            "select project_id from project where project_key = $1",
            project
        )
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| FlagError::UnknownProject(project.to_owned()))?;
        let rows = sqlx::query!(
            r#"select segment_id, name, description,
                      constraints as "constraints: Json<Vec<Constraint>>", updated_at
               from segment where project_id = $1 and deleted_at is null order by name"#,
            project_id
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| SegmentInfo {
                id: SegmentId(r.segment_id),
                name: r.name,
                description: r.description,
                constraints: r.constraints.0,
                updated_at: r.updated_at,
            })
            .collect())
    }

    /// An environment's flags, by name, with their state there.
    pub async fn flags(&self, environment: EnvironmentId) -> Result<Vec<FlagSummary>, FlagError> {
        let mut conn = self.pool.acquire().await?;
        find_environment(&mut conn, environment)
            .await?
            .ok_or(FlagError::UnknownEnvironment(environment))?;
        let rows = sqlx::query!(
            r#"select f.name, f.flag_type, f.description, f.owner, f.stale, f.created_at, f.created_by,
                      fe.enabled as "enabled?", fe.impression_data as "impression_data?",
                      fe.strategies as "strategies?: Json<Vec<Strategy>>",
                      fe.variants as "variants?: Json<Vec<Variant>>",
                      fe.updated_at as "updated_at?", fe.updated_by as "updated_by?"
               from environment e
               join flag f on f.project_id = e.project_id and f.archived_at is null
               left join flag_environment fe on fe.flag_id = f.flag_id and fe.environment_id = e.environment_id
               where e.environment_id = $1"#,
            environment.0
        )
        .fetch_all(&mut *conn)
        .await?;
        let now = Utc::now();
        let mut flags = Vec::with_capacity(rows.len());
        for r in rows {
            let flag_type = parse_type(&r.flag_type)?;
            flags.push(FlagSummary {
                potentially_stale: flag_type
                    .expected_lifetime()
                    .is_some_and(|lifetime| now - r.created_at > lifetime),
                name: r.name,
                flag_type,
                description: r.description,
                owner: r.owner,
                stale: r.stale,
                state: EnvironmentState {
                    enabled: r.enabled.unwrap_or(false),
                    strategies: r.strategies.map(|s| s.0).unwrap_or_default(),
                    variants: r.variants.map(|v| v.0).unwrap_or_default(),
                    impression_data: r.impression_data.unwrap_or(false),
                },
                changed_at: r.updated_at.unwrap_or(r.created_at),
                changed_by: r.updated_by.unwrap_or_else(|| r.created_by.clone()),
                created_at: r.created_at,
                created_by: r.created_by,
            });
        }
        flags.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(flags)
    }

    /// The environment's `/api/client/features` body, built from the rows as they are now. The
    /// API serves the newest snapshot instead (`current`), which equals this after every change.
    pub async fn client_features(
        &self,
        environment: EnvironmentId,
    ) -> Result<ClientFeatures, FlagError> {
        let mut conn = self.pool.acquire().await?;
        let env = find_environment(&mut conn, environment)
            .await?
            .ok_or(FlagError::UnknownEnvironment(environment))?;
        Ok(build_state(&mut conn, &env).await?)
    }
}

fn check_length(field: &'static str, text: &str, limit: usize) -> Result<(), FlagError> {
    let length = text.chars().count();
    if length > limit {
        return Err(FlagError::TooLong {
            field,
            length,
            limit,
        });
    }
    Ok(())
}

fn check_segment(segment: &NewSegment) -> Result<(), FlagError> {
    let length = segment.name.chars().count();
    if segment.name.trim().is_empty() || length > MAX_SEGMENT_NAME {
        return Err(FlagError::BadSegmentName);
    }
    check_length("description", &segment.description, MAX_DESCRIPTION)
}

fn parse_type(text: &str) -> Result<FlagType, sqlx::Error> {
    FlagType::parse(text).map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

/// A dependency as stored and served: `enabled` only when false, `variants` only when some.
fn normalize_dependency(dependency: Dependency) -> Dependency {
    Dependency {
        feature: dependency.feature,
        enabled: (dependency.enabled == Some(false)).then_some(false),
        variants: dependency.variants.filter(|v| !v.is_empty()),
    }
}

/// A project whose environment rows this transaction holds.
#[derive(Debug)]
pub(super) struct LockedProject {
    pub(super) id: Uuid,
    pub(super) key: String,
    /// In id order, the order every multi-environment writer locks them in.
    pub(super) environments: Vec<Environment>,
}

/// Locks one environment's row. Every writer of the environment's flags holds this lock until
/// it commits, so versions are handed out one at a time and a change sees the one before it.
pub(super) async fn lock_environment(
    conn: &mut PgConnection,
    id: EnvironmentId,
) -> Result<Option<Environment>, sqlx::Error> {
    // `no key update` rather than `update`: it excludes the other writers just the same, but
    // lets other tables insert rows that reference the environment meanwhile.
    let row = sqlx::query!(
        r#"select e.environment_id, e.project_id, e.name, p.project_key
           from environment e join project p on p.project_id = e.project_id
           where e.environment_id = $1
           for no key update of e"#,
        id.0
    )
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(|r| Environment {
        id: EnvironmentId(r.environment_id),
        project_id: r.project_id,
        project_key: r.project_key,
        name: r.name,
    }))
}

pub(super) async fn find_environment(
    conn: &mut PgConnection,
    id: EnvironmentId,
) -> Result<Option<Environment>, sqlx::Error> {
    let row = sqlx::query!(
        r#"select e.environment_id, e.project_id, e.name, p.project_key
           from environment e join project p on p.project_id = e.project_id
           where e.environment_id = $1"#,
        id.0
    )
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(|r| Environment {
        id: EnvironmentId(r.environment_id),
        project_id: r.project_id,
        project_key: r.project_key,
        name: r.name,
    }))
}

async fn lock_project(conn: &mut PgConnection, key: &str) -> Result<LockedProject, FlagError> {
    let id = sqlx::query_scalar!("select project_id from project where project_key = $1", key)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| FlagError::UnknownProject(key.to_owned()))?;
    Ok(lock_project_environments(conn, id, key).await?)
}

/// Locks all of a project's environments, in id order so that two writers never wait on each
/// other. A writer of one environment holds just that one, which cannot deadlock with this.
pub(super) async fn lock_project_environments(
    conn: &mut PgConnection,
    project_id: Uuid,
    project_key: &str,
) -> Result<LockedProject, sqlx::Error> {
    let environments = sqlx::query!(
        r#"select environment_id, name from environment where project_id = $1
           order by environment_id
           for no key update"#,
        project_id
    )
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .map(|r| Environment {
        id: EnvironmentId(r.environment_id),
        project_id,
        project_key: project_key.to_owned(),
        name: r.name,
    })
    .collect();
    Ok(LockedProject {
        id: project_id,
        key: project_key.to_owned(),
        environments,
    })
}

struct FoundFlag {
    id: Uuid,
}

/// A live flag of the project: `UnknownFlag` if there is none, `Archived` if it is archived.
async fn find_flag(
    conn: &mut PgConnection,
    project_key: &str,
    project_id: Uuid,
    name: &FlagName,
) -> Result<FoundFlag, FlagError> {
    let row = sqlx::query!(
        r#"select flag_id, archived_at is not null as "archived!" from flag
           where project_id = $1 and name = $2"#,
        project_id,
        name.as_str()
    )
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| FlagError::UnknownFlag {
        project: project_key.to_owned(),
        flag: name.to_string(),
    })?;
    if row.archived {
        return Err(FlagError::Archived(name.to_string()));
    }
    Ok(FoundFlag { id: row.flag_id })
}

async fn flag_id(
    conn: &mut PgConnection,
    project_id: Uuid,
    name: &FlagName,
) -> Result<Uuid, sqlx::Error> {
    sqlx::query_scalar!(
        "select flag_id from flag where project_id = $1 and name = $2",
        project_id,
        name.as_str()
    )
    .fetch_one(&mut *conn)
    .await
}

/// Un-archives a flag and turns it off in every environment but `except`.
pub(super) async fn revive_flag(
    conn: &mut PgConnection,
    flag_id: Uuid,
    except: Option<EnvironmentId>,
    by: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "update flag set archived_at = null where flag_id = $1",
        flag_id
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!(
        r#"update flag_environment set enabled = false, updated_at = now(), updated_by = $3
           where flag_id = $1 and enabled and ($2::uuid is null or environment_id <> $2)"#,
        flag_id,
        except.map(|e| e.0),
        by
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The live flags that need this one.
async fn live_children(conn: &mut PgConnection, flag_id: Uuid) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"select c.name from flag_dependency d join flag c on c.flag_id = d.flag_id
           where d.parent_flag_id = $1 and c.archived_at is null
           order by c.name"#,
        flag_id
    )
    .fetch_all(&mut *conn)
    .await
}

async fn dependencies_of(
    conn: &mut PgConnection,
    flag_id: Uuid,
) -> Result<Vec<Dependency>, sqlx::Error> {
    let mut dependencies: Vec<Dependency> = sqlx::query!(
        r#"select p.name, d.enabled, d.variants
           from flag_dependency d join flag p on p.flag_id = d.parent_flag_id
           where d.flag_id = $1"#,
        flag_id
    )
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .map(|r| {
        normalize_dependency(Dependency {
            feature: r.name,
            enabled: Some(r.enabled),
            variants: Some(r.variants),
        })
    })
    .collect();
    dependencies.sort_by(|a, b| a.feature.cmp(&b.feature));
    Ok(dependencies)
}

async fn check_segments(
    conn: &mut PgConnection,
    env: &Environment,
    ids: BTreeSet<i32>,
) -> Result<(), FlagError> {
    if ids.is_empty() {
        return Ok(());
    }
    let ids: Vec<i32> = ids.into_iter().collect();
    let known: BTreeSet<i32> = sqlx::query_scalar!(
        r#"select segment_id from segment
           where project_id = $1 and deleted_at is null and segment_id = any($2)"#,
        env.project_id,
        &ids
    )
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .collect();
    match ids.into_iter().find(|id| !known.contains(id)) {
        Some(id) => Err(FlagError::UnknownSegment {
            project: env.project_key.clone(),
            id,
        }),
        None => Ok(()),
    }
}

async fn live_segment(
    conn: &mut PgConnection,
    project: &LockedProject,
    id: SegmentId,
) -> Result<SegmentInfo, FlagError> {
    let row = sqlx::query!(
        r#"select segment_id, name, description,
                  constraints as "constraints: Json<Vec<Constraint>>", updated_at
           from segment where segment_id = $1 and project_id = $2 and deleted_at is null"#,
        id.0,
        project.id
    )
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| FlagError::UnknownSegment {
        project: project.key.clone(),
        id: id.0,
    })?;
    Ok(SegmentInfo {
        id: SegmentId(row.segment_id),
        name: row.name,
        description: row.description,
        constraints: row.constraints.0,
        updated_at: row.updated_at,
    })
}

/// A flag's state in one environment; off with nothing set when it has no row there.
async fn environment_state(
    conn: &mut PgConnection,
    flag_id: Uuid,
    environment: EnvironmentId,
) -> Result<EnvironmentState, sqlx::Error> {
    let row = sqlx::query!(
        r#"select enabled, impression_data,
                  strategies as "strategies: Json<Vec<Strategy>>",
                  variants as "variants: Json<Vec<Variant>>"
           from flag_environment where flag_id = $1 and environment_id = $2"#,
        flag_id,
        environment.0
    )
    .fetch_optional(&mut *conn)
    .await?;
    Ok(
        row.map_or_else(EnvironmentState::default, |r| EnvironmentState {
            enabled: r.enabled,
            strategies: r.strategies.0,
            variants: r.variants.0,
            impression_data: r.impression_data,
        }),
    )
}

/// Stores a flag's state in one environment; a row that already says so is left untouched.
pub(super) async fn put_environment_state(
    conn: &mut PgConnection,
    flag_id: Uuid,
    environment: EnvironmentId,
    state: &EnvironmentState,
    by: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"insert into flag_environment
             (flag_id, environment_id, enabled, strategies, variants, impression_data, updated_by)
           values ($1, $2, $3, $4, $5, $6, $7)
           on conflict (flag_id, environment_id) do update
             set enabled = excluded.enabled, strategies = excluded.strategies,
                 variants = excluded.variants, impression_data = excluded.impression_data,
                 updated_at = now(), updated_by = excluded.updated_by
             where (flag_environment.enabled, flag_environment.strategies,
                    flag_environment.variants, flag_environment.impression_data)
                   is distinct from
                   (excluded.enabled, excluded.strategies, excluded.variants, excluded.impression_data)"#,
        flag_id,
        environment.0,
        state.enabled,
        Json(&state.strategies) as _,
        Json(&state.variants) as _,
        state.impression_data,
        by,
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The environment's `/api/client/features` body as the rows say: live flags by name (byte
/// order, not the database's collation, so the bytes and their SHA-256 do not depend on how the
/// database was set up), each with its state here, and the segments their strategies use.
pub(super) async fn build_state(
    conn: &mut PgConnection,
    env: &Environment,
) -> Result<ClientFeatures, sqlx::Error> {
    let rows = sqlx::query!(
        r#"select f.flag_id, f.name, f.description, f.flag_type, f.stale,
                  fe.enabled as "enabled?", fe.impression_data as "impression_data?",
                  fe.strategies as "strategies?: Json<Vec<Strategy>>",
                  fe.variants as "variants?: Json<Vec<Variant>>"
           from flag f
           left join flag_environment fe on fe.flag_id = f.flag_id and fe.environment_id = $2
           where f.project_id = $1 and f.archived_at is null"#,
        env.project_id,
        env.id.0
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut needs: HashMap<Uuid, Vec<Dependency>> = HashMap::new();
    for r in sqlx::query!(
        r#"select d.flag_id, p.name, d.enabled, d.variants
           from flag_dependency d join flag p on p.flag_id = d.parent_flag_id
           where d.project_id = $1"#,
        env.project_id
    )
    .fetch_all(&mut *conn)
    .await?
    {
        needs
            .entry(r.flag_id)
            .or_default()
            .push(normalize_dependency(Dependency {
                feature: r.name,
                enabled: Some(r.enabled),
                variants: Some(r.variants),
            }));
    }
    let mut features: Vec<ClientFeature> = rows
        .into_iter()
        .map(|r| {
            let mut dependencies = needs.remove(&r.flag_id).unwrap_or_default();
            dependencies.sort_by(|a, b| a.feature.cmp(&b.feature));
            ClientFeature {
                name: r.name,
                feature_type: Some(r.flag_type),
                description: Some(r.description).filter(|d| !d.is_empty()),
                enabled: r.enabled.unwrap_or(false),
                stale: r.stale,
                impression_data: r.impression_data.unwrap_or(false),
                project: Some(env.project_key.clone()),
                strategies: r.strategies.map(|s| s.0).unwrap_or_default(),
                variants: r.variants.map(|v| v.0).unwrap_or_default(),
                dependencies,
            }
        })
        .collect();
    features.sort_by(|a, b| a.name.cmp(&b.name));
    let used: BTreeSet<i32> = features
        .iter()
        .flat_map(|f| f.strategies.iter())
        .flat_map(|s| s.segments.iter().copied())
        .collect();
    let segments = if used.is_empty() {
        Vec::new()
    } else {
        let ids: Vec<i32> = used.into_iter().collect();
        let mut segments: Vec<Segment> = sqlx::query!(
            r#"select segment_id, name, constraints as "constraints: Json<Vec<Constraint>>"
               from segment
               where project_id = $1 and deleted_at is null and segment_id = any($2)"#,
            env.project_id,
            &ids
        )
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .map(|r| Segment {
            id: r.segment_id,
            name: Some(r.name),
            constraints: r.constraints.0,
        })
        .collect();
        segments.sort_by_key(|s| s.id);
        segments
    };
    Ok(ClientFeatures {
        version: 2,
        features,
        segments,
        query: None,
        meta: None,
    })
}

/// The SHA-256 of a state as Flightdeck serializes it: the same state always gives the same
/// bytes (struct fields in order, parameters in a sorted map), whatever jsonb did to the keys.
pub fn state_sha256(state: &ClientFeatures) -> String {
    let bytes = serde_json::to_vec(state).expect("a ClientFeatures always serializes");
    hex::encode(Sha256::digest(&bytes))
}

/// Every environment's state, before a change to the project.
pub(super) async fn states(
    conn: &mut PgConnection,
    project: &LockedProject,
) -> Result<Vec<ClientFeatures>, sqlx::Error> {
    let mut states = Vec::with_capacity(project.environments.len());
    for env in &project.environments {
        states.push(build_state(conn, env).await?);
    }
    Ok(states)
}

/// After a change to the project: a snapshot of each environment whose state differs from
/// `before` (taken by `states`).
pub(super) async fn snapshot_changed(
    conn: &mut PgConnection,
    project: &LockedProject,
    before: &[ClientFeatures],
    by: &str,
    reason: &str,
) -> Result<Vec<SnapshotRef>, sqlx::Error> {
    let mut snapshots = Vec::new();
    for (env, before) in project.environments.iter().zip(before) {
        let after = build_state(conn, env).await?;
        if after != *before {
            snapshots.push(record_snapshot(conn, env, &after, by, reason, None, None).await?);
        }
    }
    Ok(snapshots)
}

/// Stores `state` as the environment's next snapshot. The caller holds the environment's lock,
/// so `max(version) + 1` cannot be taken twice (the unique key would refuse it anyway).
pub(super) async fn record_snapshot(
    conn: &mut PgConnection,
    env: &Environment,
    state: &ClientFeatures,
    by: &str,
    reason: &str,
    restored_from: Option<i64>,
    idempotency_key: Option<&str>,
) -> Result<SnapshotRef, sqlx::Error> {
    let version = sqlx::query_scalar!(
        r#"insert into flag_snapshot
             (environment_id, version, state, sha256, created_by, reason, restored_from, idempotency_key)
           select $1, coalesce(max(version), 0) + 1, $2, $3, $4, $5, $6, $7
           from flag_snapshot where environment_id = $1
           returning version"#,
        env.id.0,
        Json(state) as _,
        state_sha256(state),
        by,
        reason,
        restored_from,
        idempotency_key,
    )
    .fetch_one(&mut *conn)
    .await?;
    Ok(SnapshotRef {
        environment_id: env.id,
        environment: env.name.clone(),
        version,
    })
}
