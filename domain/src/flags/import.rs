//! Importing an Unleash export: one environment's `/api/client/features` body made into our
//! flags, so that a team can move from Unleash with its flags and buckets intact.
//!
//! Segments are project-wide here but numbered by Unleash, so each becomes a segment named
//! `imported-<id>` (reused by that name when imported before) and the strategies are renumbered
//! to it. Flags missing from the project are created; every flag is then made what the file says:
//! its type, description and stale mark (project-wide), its state, strategies, variants and
//! impression data (in this environment), and last the flags it depends on, once every parent
//! exists. Flags the file does not name are left alone. Each step is an ordinary audited store
//! change, so a second import of the same file changes nothing.

use std::collections::HashMap;

use super::definition::{
    Constraints, FlagDetails, FlagName, FlagNameError, FlagType, InvalidDefinition, NewFlag,
    Strategies, UnknownFlagType, Variants,
};
use super::model::{ClientFeature, ClientFeatures, Dependency};
use super::store::{Applied, EnvironmentId, FlagError, FlagStore, FlagSummary, NewSegment};
use crate::audit::{Actor, Origin};

/// What an import did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Imported {
    /// Flags that the project did not have.
    pub created: usize,
    /// Changes that were not already so.
    pub changed: usize,
}

/// Why an import stopped. The changes made before it stay.
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

/// Makes one environment's flags what an Unleash export says.
pub async fn import(
    store: &FlagStore,
    project: &str,
    env: EnvironmentId,
    features: ClientFeatures,
    actor: &Actor,
    origin: &Origin,
) -> Result<Imported, ImportError> {
    let segment_ids = import_segments(store, project, &features, actor, origin).await?;
    let known: HashMap<String, FlagSummary> = store
        .flags(env)
        .await?
        .into_iter()
        .map(|f| (f.name.clone(), f))
        .collect();
    let mut imported = Imported::default();
    let mut dependencies = Vec::with_capacity(features.features.len());
    for mut feature in features.features {
        let name = FlagName::parse(&feature.name).map_err(|source| ImportError::BadName {
            name: feature.name.clone(),
            source,
        })?;
        let existing = known.get(name.as_str());
        let details = details(&feature, &name, existing)?;
        if existing.is_none() {
            let new = NewFlag {
                name: name.clone(),
                flag_type: details.flag_type,
                description: details.description.clone(),
                owner: None,
            };
            store.create(project, new, actor.clone(), origin).await?;
            imported.created += 1;
        }
        renumber_segments(&mut feature, &name, &segment_ids)?;
        let definition = |source| ImportError::BadDefinition {
            flag: name.to_string(),
            source,
        };
        let strategies = Strategies::new(feature.strategies).map_err(definition)?;
        let variants = Variants::new(feature.variants).map_err(definition)?;
        let results = [
            store
                .update(project, &name, details, actor.clone(), origin)
                .await?,
            store
                .set_strategies(env, &name, strategies, actor.clone(), origin)
                .await?,
            store
                .set_variants(env, &name, variants, actor.clone(), origin)
                .await?,
            store
                .set_impression_data(env, &name, feature.impression_data, actor.clone(), origin)
                .await?,
            store
                .toggle(env, &name, feature.enabled, actor.clone(), origin)
                .await?,
        ];
        imported.changed += count_changed(&results);
        dependencies.push((name, feature.dependencies));
    }
    imported.changed += import_dependencies(store, project, dependencies, actor, origin).await?;
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
/// set (dependencies are one level deep).
async fn import_dependencies(
    store: &FlagStore,
    project: &str,
    mut dependencies: Vec<(FlagName, Vec<Dependency>)>,
    actor: &Actor,
    origin: &Origin,
) -> Result<usize, ImportError> {
    dependencies.sort_by_key(|(_, parents)| !parents.is_empty());
    let mut results = Vec::with_capacity(dependencies.len());
    for (name, parents) in dependencies {
        results.push(
            store
                .set_dependencies(project, &name, parents, actor.clone(), origin)
                .await?,
        );
    }
    Ok(count_changed(&results))
}

fn count_changed(results: &[Applied]) -> usize {
    results.iter().filter(|r| r.changed()).count()
}

/// Creates the file's segments that an earlier import did not; returns our id for each of its.
async fn import_segments(
    store: &FlagStore,
    project: &str,
    features: &ClientFeatures,
    actor: &Actor,
    origin: &Origin,
) -> Result<HashMap<i32, i32>, ImportError> {
    let existing = store.segments(project).await?;
    let mut ids = HashMap::new();
    for segment in &features.segments {
        let name = format!("imported-{}", segment.id);
        let id = match existing.iter().find(|s| s.name == name) {
            Some(found) => found.id.0,
            None => {
                let constraints =
                    Constraints::new(segment.constraints.clone()).map_err(|source| {
                        ImportError::BadSegment {
                            id: segment.id,
                            source,
                        }
                    })?;
                let new = NewSegment {
                    name,
                    description: "imported from an Unleash export".into(),
                    constraints,
                };
                store
                    .create_segment(project, new, actor.clone(), origin)
                    .await?
                    .0
            }
        };
        ids.insert(segment.id, id);
    }
    Ok(ids)
}
