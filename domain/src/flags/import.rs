//! Importing an Unleash export: one environment's `/api/client/features` body made into our
//! flags, so that a team can move from Unleash with its flags and buckets intact.
//!
//! Segments are project-wide here but numbered by Unleash, so each becomes a segment named
//! `imported-<id>` (reused by that name when imported before) and the strategies are renumbered
//! to it. Flags missing from the project are created; every flag is then made what the file says:
//! its type, description and stale mark (project-wide), its state, strategies, variants and
//! impression data (in this environment), and last the flags it depends on, once every parent
//! exists. Flags the file does not name are left alone.
//!
//! The whole import is one change: one transaction that locks the project's environments, writes
//! the rows, then takes one snapshot of each environment whose state changed and writes one audit
//! entry (`flag.imported`). So 350 flags import in a fraction of a second, a file that fails half
//! way changes nothing, and a second import of the same file changes nothing either.

use std::collections::HashMap;

use serde_json::json;
use sqlx::PgConnection;

use super::definition::{
    Constraints, EnvironmentState, FlagDetails, FlagName, FlagNameError, FlagType,
    InvalidDefinition, NewFlag, Strategies, UnknownFlagType, Variants,
};
use super::diff::diff;
use super::model::{ClientFeature, ClientFeatures, Dependency};
use super::store::flag::{self, Family};
use super::store::{
    Change, EnvironmentId, FlagError, FlagStore, FlagSummary, LockedProject, NewSegment,
    build_state, dependencies_of, finish, lock_project, put_environment_state, segment, states,
};
use crate::audit::{Actor, Origin};

/// What an import did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Imported {
    /// Flags that the project did not have.
    pub created: usize,
    /// Changes that were not already so: a flag's details, its strategies, variants, impression
    /// data, on/off and dependencies count one each.
    pub changed: usize,
}

/// Why an import stopped. Nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("flag {name:?}: {source}")]
    BadName { name: String, source: FlagNameError },
    #[error("flag {flag}: {source}")]
    BadType {
        flag: String,
        source: UnknownFlagType,
    },
    #[error("segment {id}: {source}")]
    BadSegment { id: i32, source: InvalidDefinition },
    #[error("flag {flag}: {source}")]
    BadDefinition {
        flag: String,
        source: InvalidDefinition,
    },
    #[error("flag {flag} uses segment {id}, which the file does not have")]
    MissingSegment { flag: String, id: i32 },
    #[error(transparent)]
    Store(#[from] FlagError),
}

impl From<sqlx::Error> for ImportError {
    fn from(error: sqlx::Error) -> Self {
        ImportError::Store(FlagError::Database(error))
    }
}

/// Makes one environment's flags what an Unleash export says, in a transaction of its own.
pub async fn import(
    store: &FlagStore,
    project: &str,
    env: EnvironmentId,
    features: ClientFeatures,
    actor: &Actor,
    origin: &Origin,
) -> Result<Imported, ImportError> {
    let mut tx = store.pool().begin().await?;
    let imported = import_in(&mut tx, project, env, features, actor, origin).await?;
    tx.commit().await?;
    Ok(imported)
}

/// Makes one environment's flags what an Unleash export says, in the caller's transaction: one
/// snapshot per environment it changed and one audit entry.
pub async fn import_in(
    conn: &mut PgConnection,
    project: &str,
    env: EnvironmentId,
    features: ClientFeatures,
    actor: &Actor,
    origin: &Origin,
) -> Result<Imported, ImportError> {
    let locked = lock_project(conn, project).await?;
    let Some(environment) = locked.environments.iter().find(|e| e.id == env).cloned() else {
        return Err(FlagError::UnknownEnvironment(env).into());
    };
    let before = states(conn, &locked).await?;
    let (segment_ids, new_segments) = import_segments(conn, &locked, &features).await?;
    let known: HashMap<String, FlagSummary> = super::store::flags(conn, env)
        .await?
        .into_iter()
        .map(|f| (f.name.clone(), f))
        .collect();
    let mut family = Family::read(conn, &locked).await?;
    let mut imported = Imported::default();
    let mut created = Vec::new();
    let mut dependencies = Vec::with_capacity(features.features.len());
    for mut feature in features.features {
        let name = FlagName::parse(&feature.name).map_err(|source| ImportError::BadName {
            name: feature.name.clone(),
            source,
        })?;
        let existing = known.get(name.as_str());
        let details = details(&feature, &name, existing)?;
        flag::check_details(&details)?;
        let (current, state) = match existing {
            Some(found) => {
                let current = FlagDetails {
                    flag_type: found.flag_type,
                    description: found.description.clone(),
                    owner: found.owner.clone(),
                    stale: found.stale,
                };
                (current, found.state.clone())
            }
            None => {
                let new = NewFlag {
                    name: name.clone(),
                    flag_type: details.flag_type,
                    description: details.description.clone(),
                    owner: None,
                };
                let id = flag::insert(conn, &locked, &new, &actor.name).await?;
                family.add(&name, id);
                imported.created += 1;
                created.push(name.to_string());
                let current = FlagDetails {
                    flag_type: new.flag_type,
                    description: new.description,
                    owner: None,
                    stale: false,
                };
                (current, EnvironmentState::default())
            }
        };
        let id = family
            .id(&name)
            .expect("every live flag of the project is in its family");
        if current != details {
            flag::write_details(conn, id, &details).await?;
            imported.changed += 1;
        }
        renumber_segments(&mut feature, &name, &segment_ids)?;
        let definition = |source| ImportError::BadDefinition {
            flag: name.to_string(),
            source,
        };
        let wanted = EnvironmentState {
            enabled: feature.enabled,
            strategies: Strategies::new(feature.strategies)
                .map_err(definition)?
                .as_slice()
                .to_vec(),
            variants: Variants::new(feature.variants)
                .map_err(definition)?
                .as_slice()
                .to_vec(),
            impression_data: feature.impression_data,
        };
        imported.changed += [
            state.strategies != wanted.strategies,
            state.variants != wanted.variants,
            state.impression_data != wanted.impression_data,
            state.enabled != wanted.enabled,
        ]
        .into_iter()
        .filter(|differs| *differs)
        .count();
        if state != wanted {
            put_environment_state(conn, id, env, &wanted, &actor.name).await?;
        }
        dependencies.push((name, feature.dependencies));
    }
    imported.changed += import_dependencies(conn, &locked, &mut family, dependencies).await?;
    if imported == Imported::default() && new_segments.is_empty() {
        return Ok(imported);
    }
    let position = locked
        .environments
        .iter()
        .position(|e| e.id == env)
        .expect("the environment is one of the project's");
    let after = build_state(conn, &environment).await?;
    let changes: Vec<String> = diff(&before[position], &after)
        .iter()
        .map(ToString::to_string)
        .collect();
    let change = Change {
        reason: format!(
            "imported an Unleash export: {} flags created, {} changes",
            imported.created, imported.changed
        ),
        target: format!("{project}/{}", environment.name),
        details: json!({
            "before": { "sha256": super::store::state_sha256(&before[position]) },
            "after": { "sha256": super::store::state_sha256(&after) },
            "created": created,
            "segments_created": new_segments,
            "changed": imported.changed,
            "changes": changes,
        }),
        action: "flag.imported",
        actor: actor.clone(),
        origin,
    };
    finish(conn, &locked, &before, change).await?;
    Ok(imported)
}

/// The flag's project-wide details as the file gives them; what it leaves out stays as it is
/// (a new flag is a release flag without a description).
fn details(
    feature: &ClientFeature,
    name: &FlagName,
    existing: Option<&FlagSummary>,
) -> Result<FlagDetails, ImportError> {
    let flag_type = match feature.feature_type.as_deref() {
        Some(text) => FlagType::parse(text).map_err(|source| ImportError::BadType {
            flag: name.to_string(),
            source,
        })?,
        None => existing.map_or(FlagType::Release, |f| f.flag_type),
    };
    let description = feature
        .description
        .clone()
        .or_else(|| existing.map(|f| f.description.clone()))
        .unwrap_or_default();
    Ok(FlagDetails {
        flag_type,
        description,
        owner: existing.and_then(|f| f.owner.clone()),
        stale: feature.stale,
    })
}

/// Points the flag's strategies at our ids for the file's segments.
fn renumber_segments(
    feature: &mut ClientFeature,
    name: &FlagName,
    segment_ids: &HashMap<i32, i32>,
) -> Result<(), ImportError> {
    for id in feature.strategies.iter_mut().flat_map(|s| &mut s.segments) {
        *id = *segment_ids
            .get(id)
            .ok_or_else(|| ImportError::MissingSegment {
                flag: name.to_string(),
                id: *id,
            })?;
    }
    Ok(())
}

/// Sets every flag's parents once all flags exist. Flags without parents go first, so that a
/// flag that the file makes a parent no longer has parents of its own when its children are
/// set (dependencies are one level deep). Returns how many flags' parents changed.
async fn import_dependencies(
    conn: &mut PgConnection,
    project: &LockedProject,
    family: &mut Family,
    mut dependencies: Vec<(FlagName, Vec<Dependency>)>,
) -> Result<usize, ImportError> {
    dependencies.sort_by_key(|(_, parents)| !parents.is_empty());
    let mut changed = 0;
    for (name, parents) in dependencies {
        if parents.is_empty() && !family.has_parents(&name) {
            continue;
        }
        let id = family
            .id(&name)
            .expect("every imported flag is in the family");
        let wanted = family.check(conn, &name, id, parents).await?;
        let current = dependencies_of(conn, id).await?;
        if wanted.iter().map(|(_, d)| d).ne(current.iter()) {
            family.write(conn, project, &name, id, &wanted).await?;
            changed += 1;
        }
    }
    Ok(changed)
}

/// Creates the file's segments that an earlier import did not; returns our id for each of its,
/// and the names of those it created.
async fn import_segments(
    conn: &mut PgConnection,
    project: &LockedProject,
    features: &ClientFeatures,
) -> Result<(HashMap<i32, i32>, Vec<String>), ImportError> {
    let existing = super::store::segments(conn, &project.key).await?;
    let mut ids = HashMap::new();
    let mut created = Vec::new();
    for imported in &features.segments {
        let name = format!("imported-{}", imported.id);
        let id = match existing.iter().find(|s| s.name == name) {
            Some(found) => found.id.0,
            None => {
                let constraints =
                    Constraints::new(imported.constraints.clone()).map_err(|source| {
                        ImportError::BadSegment {
                            id: imported.id,
                            source,
                        }
                    })?;
                let new = NewSegment {
                    name: name.clone(),
                    description: "imported from an Unleash export".into(),
                    constraints,
                };
                created.push(name);
                segment::insert(conn, project, &new).await?.0
            }
        };
        ids.insert(imported.id, id);
    }
    Ok((ids, created))
}
