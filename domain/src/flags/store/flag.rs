//! Changes to a flag itself, the same in every environment: creating it, its details, the flags
//! it needs, archiving and reviving it. Each takes the caller's connection and locks the whole
//! project (a flag appears in every environment); the row writers below them are what an import
//! composes into one change.

use std::collections::HashMap;

use serde_json::json;
use sqlx::PgConnection;
use uuid::Uuid;

use super::rows::{check_length, find_flag, flag_id, live_children, parse_type, revive_flag};
use super::state::{Change, finish, states};
use super::{
    Applied, DependencyProblem, FlagError, LockedProject, MAX_DESCRIPTION, MAX_OWNER,
    dependencies_of, lock_project, normalize_dependency,
};
use crate::audit::{Actor, Origin};
use crate::flags::definition::{FlagDetails, FlagName, NewFlag};
use crate::flags::model::Dependency;

/// Creates a flag, off and without strategies in every environment.
pub async fn create(
    conn: &mut PgConnection,
    project: &str,
    flag: NewFlag,
    actor: Actor,
    origin: &Origin,
) -> Result<Applied, FlagError> {
    check_new(&flag)?;
    let locked = lock_project(conn, project).await?;
    let before = states(conn, &locked).await?;
    insert(conn, &locked, &flag, &actor.name).await?;
    let change = Change {
        reason: format!("{} created", flag.name),
        target: format!("{project}/{}", flag.name),
        details: json!({
            "before": null,
            "after": {
                "type": flag.flag_type,
                "description": flag.description,
                "owner": flag.owner,
            },
        }),
        action: "flag.created",
        actor,
        origin,
    };
    Ok(finish(conn, &locked, &before, change).await?)
}

/// Changes what a flag is the same in every environment: type, description, owner, stale.
pub async fn update(
    conn: &mut PgConnection,
    project: &str,
    flag: &FlagName,
    details: FlagDetails,
    actor: Actor,
    origin: &Origin,
) -> Result<Applied, FlagError> {
    check_details(&details)?;
    let locked = lock_project(conn, project).await?;
    let found = find_flag(conn, &locked.key, locked.id, flag).await?;
    let current = read_details(conn, found.id).await?;
    if current == details {
        return Ok(Applied::Unchanged);
    }
    let before = states(conn, &locked).await?;
    write_details(conn, found.id, &details).await?;
    let change = Change {
        reason: format!("{flag} details changed"),
        target: format!("{project}/{flag}"),
        details: json!({ "before": current, "after": details }),
        action: "flag.updated",
        actor,
        origin,
    };
    Ok(finish(conn, &locked, &before, change).await?)
}

/// Sets the flags this flag needs (Unleash's feature dependencies), replacing the old list.
pub async fn set_dependencies(
    conn: &mut PgConnection,
    project: &str,
    flag: &FlagName,
    dependencies: Vec<Dependency>,
    actor: Actor,
    origin: &Origin,
) -> Result<Applied, FlagError> {
    let locked = lock_project(conn, project).await?;
    let found = find_flag(conn, &locked.key, locked.id, flag).await?;
    let mut family = Family::read(conn, &locked).await?;
    let wanted = family.check(conn, flag, found.id, dependencies).await?;
    let current = dependencies_of(conn, found.id).await?;
    let after: Vec<Dependency> = wanted.iter().map(|(_, d)| d.clone()).collect();
    if current == after {
        return Ok(Applied::Unchanged);
    }
    let before = states(conn, &locked).await?;
    family.write(conn, &locked, flag, found.id, &wanted).await?;
    let change = Change {
        reason: format!("{flag} dependencies changed"),
        target: format!("{project}/{flag}"),
        details: json!({ "before": current, "after": after }),
        action: "flag.dependencies_changed",
        actor,
        origin,
    };
    Ok(finish(conn, &locked, &before, change).await?)
}

/// Archives a flag: SDKs no longer see it anywhere. Refused while other live flags need it.
pub async fn archive(
    conn: &mut PgConnection,
    project: &str,
    flag: &FlagName,
    actor: Actor,
    origin: &Origin,
) -> Result<Applied, FlagError> {
    let locked = lock_project(conn, project).await?;
    let found = match find_flag(conn, &locked.key, locked.id, flag).await {
        Err(FlagError::Archived(_)) => return Ok(Applied::Unchanged),
        other => other?,
    };
    let children = live_children(conn, found.id).await?;
    if !children.is_empty() {
        return Err(FlagError::HasChildren {
            flag: flag.to_string(),
            children,
        });
    }
    let before = states(conn, &locked).await?;
    sqlx::query!(
        "update flag set archived_at = now() where flag_id = $1",
        found.id
    )
    .execute(&mut *conn)
    .await?;
    let change = Change {
        reason: format!("{flag} archived"),
        target: format!("{project}/{flag}"),
        details: json!({ "before": { "archived": false }, "after": { "archived": true } }),
        action: "flag.archived",
        actor,
        origin,
    };
    Ok(finish(conn, &locked, &before, change).await?)
}

/// Brings an archived flag back, off in every environment (as Unleash revives flags); its
/// strategies and variants are as they were.
pub async fn revive(
    conn: &mut PgConnection,
    project: &str,
    flag: &FlagName,
    actor: Actor,
    origin: &Origin,
) -> Result<Applied, FlagError> {
    let locked = lock_project(conn, project).await?;
    let id = match find_flag(conn, &locked.key, locked.id, flag).await {
        Err(FlagError::Archived(_)) => flag_id(conn, locked.id, flag).await?,
        Ok(_) => return Ok(Applied::Unchanged),
        Err(other) => return Err(other),
    };
    let before = states(conn, &locked).await?;
    revive_flag(conn, id, None, &actor.name).await?;
    let change = Change {
        reason: format!("{flag} revived"),
        target: format!("{project}/{flag}"),
        details: json!({ "before": { "archived": true }, "after": { "archived": false } }),
        action: "flag.revived",
        actor,
        origin,
    };
    Ok(finish(conn, &locked, &before, change).await?)
}

pub(crate) fn check_new(flag: &NewFlag) -> Result<(), FlagError> {
    check_length("description", &flag.description, MAX_DESCRIPTION)?;
    check_length("owner", flag.owner.as_deref().unwrap_or(""), MAX_OWNER)
}

pub(crate) fn check_details(details: &FlagDetails) -> Result<(), FlagError> {
    check_length("description", &details.description, MAX_DESCRIPTION)?;
    check_length("owner", details.owner.as_deref().unwrap_or(""), MAX_OWNER)
}

/// Inserts a new flag's row; `FlagExists` (nothing written) when the project has the name.
pub(crate) async fn insert(
    conn: &mut PgConnection,
    project: &LockedProject,
    flag: &NewFlag,
    by: &str,
) -> Result<Uuid, FlagError> {
    let created = sqlx::query_scalar!(
        r#"insert into flag (project_id, name, description, owner, flag_type, created_by)
           values ($1, $2, $3, $4, $5, $6)
           on conflict (project_id, name) do nothing
           returning flag_id"#,
        project.id,
        flag.name.as_str(),
        flag.description,
        flag.owner,
        flag.flag_type.as_str(),
        by,
    )
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(id) = created {
        return Ok(id);
    }
    let archived = sqlx::query_scalar!(
        r#"select archived_at is not null as "archived!" from flag
           where project_id = $1 and name = $2"#,
        project.id,
        flag.name.as_str()
    )
    .fetch_one(&mut *conn)
    .await?;
    Err(FlagError::FlagExists {
        project: project.key.clone(),
        flag: flag.name.to_string(),
        archived,
    })
}

pub(crate) async fn read_details(
    conn: &mut PgConnection,
    flag_id: Uuid,
) -> Result<FlagDetails, sqlx::Error> {
    let row = sqlx::query!(
        "select flag_type, description, owner, stale from flag where flag_id = $1",
        flag_id
    )
    .fetch_one(&mut *conn)
    .await?;
    Ok(FlagDetails {
        flag_type: parse_type(&row.flag_type)?,
        description: row.description,
        owner: row.owner,
        stale: row.stale,
    })
}

pub(crate) async fn write_details(
    conn: &mut PgConnection,
    flag_id: Uuid,
    details: &FlagDetails,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"update flag set flag_type = $2, description = $3, owner = $4, stale = $5
           where flag_id = $1"#,
        flag_id,
        details.flag_type.as_str(),
        details.description,
        details.owner,
        details.stale,
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A flag's relatives as the dependency rules see them.
#[derive(Debug, Clone, Copy)]
struct Kin {
    id: Uuid,
    archived: bool,
    /// It needs other flags (so it cannot be a parent: dependencies are one level deep).
    has_parents: bool,
}

/// The project's flags by name, read once and kept current as dependencies are written, so that
/// an import checks hundreds of flags against one read.
pub(crate) struct Family(HashMap<String, Kin>);

impl Family {
    pub(crate) async fn read(
        conn: &mut PgConnection,
        project: &LockedProject,
    ) -> Result<Family, sqlx::Error> {
        let rows = sqlx::query!(
            r#"select f.flag_id, f.name, f.archived_at is not null as "archived!",
                      exists(select 1 from flag_dependency d where d.flag_id = f.flag_id) as "has_parents!"
               from flag f where f.project_id = $1"#,
            project.id
        )
        .fetch_all(&mut *conn)
        .await?;
        Ok(Family(
            rows.into_iter()
                .map(|r| {
                    let kin = Kin {
                        id: r.flag_id,
                        archived: r.archived,
                        has_parents: r.has_parents,
                    };
                    (r.name, kin)
                })
                .collect(),
        ))
    }

    /// A flag just created: live, needing nothing.
    pub(crate) fn add(&mut self, flag: &FlagName, id: Uuid) {
        let kin = Kin {
            id,
            archived: false,
            has_parents: false,
        };
        self.0.insert(flag.to_string(), kin);
    }

    /// The flag's id, when the project has it.
    pub(crate) fn id(&self, flag: &FlagName) -> Option<Uuid> {
        self.0.get(flag.as_str()).map(|k| k.id)
    }

    /// Whether the flag needs other flags now.
    pub(crate) fn has_parents(&self, flag: &FlagName) -> bool {
        self.0.get(flag.as_str()).is_some_and(|k| k.has_parents)
    }

    /// The parents `flag` may need, checked and normalized, by name; or why not.
    pub(crate) async fn check(
        &self,
        conn: &mut PgConnection,
        flag: &FlagName,
        flag_id: Uuid,
        dependencies: Vec<Dependency>,
    ) -> Result<Vec<(Uuid, Dependency)>, FlagError> {
        let invalid = |parent: &str, problem| FlagError::InvalidDependency {
            flag: flag.to_string(),
            parent: parent.to_owned(),
            problem,
        };
        if let Some(first) = dependencies.first() {
            let children = live_children(conn, flag_id).await?;
            if !children.is_empty() {
                return Err(invalid(&first.feature, DependencyProblem::IsAParent));
            }
        }
        let mut wanted: Vec<(Uuid, Dependency)> = Vec::with_capacity(dependencies.len());
        for dependency in dependencies {
            let parent = &dependency.feature;
            FlagName::parse(parent).map_err(|e| invalid(parent, DependencyProblem::BadName(e)))?;
            let Some(kin) = self.0.get(parent) else {
                return Err(invalid(parent, DependencyProblem::UnknownParent));
            };
            let problem = if kin.id == flag_id {
                Some(DependencyProblem::Itself)
            } else if kin.archived {
                Some(DependencyProblem::ArchivedParent)
            } else if kin.has_parents {
                Some(DependencyProblem::ParentHasParents)
            } else if wanted.iter().any(|(id, _)| *id == kin.id) {
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
            wanted.push((kin.id, normalize_dependency(dependency)));
        }
        wanted.sort_by(|a, b| a.1.feature.cmp(&b.1.feature));
        Ok(wanted)
    }

    /// Replaces the flag's parents with `wanted` (from [`Family::check`]).
    pub(crate) async fn write(
        &mut self,
        conn: &mut PgConnection,
        project: &LockedProject,
        flag: &FlagName,
        flag_id: Uuid,
        wanted: &[(Uuid, Dependency)],
    ) -> Result<(), sqlx::Error> {
        sqlx::query!("delete from flag_dependency where flag_id = $1", flag_id)
            .execute(&mut *conn)
            .await?;
        for (parent_id, dependency) in wanted {
            sqlx::query!(
                r#"insert into flag_dependency (project_id, flag_id, parent_flag_id, enabled, variants)
                   values ($1, $2, $3, $4, $5)"#,
                project.id,
                flag_id,
                parent_id,
                dependency.enabled != Some(false),
                dependency.variants.as_deref().unwrap_or_default(),
            )
            .execute(&mut *conn)
            .await?;
        }
        if let Some(kin) = self.0.get_mut(flag.as_str()) {
            kin.has_parents = !wanted.is_empty();
        }
        Ok(())
    }
}
