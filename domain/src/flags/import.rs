//! Importing an Unleash export: one environment's `/api/client/features` body made into our
//! flags, so that a team can move from Unleash with its flags and buckets intact.
//!
//! Segments are project-wide here but numbered by Unleash, so each becomes a segment named
//! `imported-<id>` (reused by that name when imported before) and the strategies are renumbered
//! to it. Flags missing from the project are created; every flag is then made what the file says
//! in this environment. Flags the file does not name are left alone. Each step is an ordinary
//! audited store change, so a second import of the same file changes nothing.

use std::collections::{HashMap, HashSet};

use super::definition::{
    Constraints, FlagName, FlagNameError, FlagType, InvalidDefinition, NewFlag, Strategies,
    UnknownFlagType, Variants,
};
use super::model::ClientFeatures;
use super::store::{EnvironmentId, FlagError, FlagStore, NewSegment};
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
    let known: HashSet<String> = store
        .flags(env)
        .await?
        .into_iter()
        .map(|f| f.name)
        .collect();
    let mut imported = Imported::default();
    for mut feature in features.features {
        let name = FlagName::parse(&feature.name).map_err(|source| ImportError::BadName {
            name: feature.name.clone(),
            source,
        })?;
        let definition = |source| ImportError::BadDefinition {
            flag: name.to_string(),
            source,
        };
        if !known.contains(name.as_str()) {
            let flag_type = feature
                .feature_type
                .as_deref()
                .map(FlagType::parse)
                .transpose()
                .map_err(|source| ImportError::BadType {
                    flag: name.to_string(),
                    source,
                })?
                .unwrap_or(FlagType::Release);
            let new = NewFlag {
                name: name.clone(),
                flag_type,
                description: feature.description.clone().unwrap_or_default(),
                owner: None,
            };
            store.create(project, new, actor.clone(), origin).await?;
            imported.created += 1;
        }
        for strategy in &mut feature.strategies {
            for id in &mut strategy.segments {
                *id = *segment_ids
                    .get(id)
                    .ok_or_else(|| ImportError::MissingSegment {
                        flag: name.to_string(),
                        id: *id,
                    })?;
            }
        }
        let strategies = Strategies::new(feature.strategies).map_err(definition)?;
        let variants = Variants::new(feature.variants).map_err(definition)?;
        let results = [
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
        imported.changed += results.iter().filter(|r| r.changed()).count();
    }
    Ok(imported)
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
