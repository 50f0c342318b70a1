//! Sites: each environment's web app, as every replica serves it at the environment's path.
//!
//! A **site version** is what one deployment publishes into one environment: artifacts of the
//! release's run — the `web` directory at the site's root, an `asset-bundle` under `assets/` —
//! and the runtime configuration served as `config.json` next to `index.html`. Versions are
//! immutable and kept (with their artifacts pinned), so a rollback switches back to bytes that
//! still exist, and that replicas still have unpacked on disk.
//!
//! What an environment serves now is a **pointer** row (`environment_site`). A deployment
//! 1. [`prepare`]s a version (its rows; replicas start fetching it when it commits),
//! 2. has its replica [`materialise`] it — fetch, verify each artifact's sha256, unpack — so a
//!    tampered artifact fails the deployment instead of going live,
//! 3. [`switch`]es the pointer in its own transaction, next to its audit entry.
//!
//! The pointer's trigger notifies `flightdeck_site` on commit; every replica then materialises
//! the version if it has not yet and swaps its in-memory pointer (`server/src/sites.rs`).
//!
//! [`paths`] says at which URL path each environment's site is served.

mod materialise;
mod paths;

pub use materialise::{
    INDEX_FILE, SiteFile, SiteIndex, is_content_hashed, load_index, materialise, version_dir,
};
pub use paths::{SITES_PREFIX, SitePath, SitePaths, path_for, paths};

use crate::environment::EnvironmentId;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{Connection, PgConnection};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

/// A site version's id (the `site_version` row).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, sqlx::Type,
)]
#[sqlx(transparent)]
pub struct SiteVersionId(pub Uuid);

impl fmt::Display for SiteVersionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for SiteVersionId {
    type Err = uuid::Error;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(text).map(SiteVersionId)
    }
}

/// Artifact kinds a site can serve, and where each appears under the site's path.
pub const MOUNTS: [(&str, &str); 2] = [("web", ""), ("asset-bundle", "assets/")];

/// One artifact a version serves, as it was when the version was prepared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteArtifact {
    pub artifact_id: Uuid,
    pub name: String,
    /// `web` or `asset-bundle`.
    pub kind: String,
    pub sha256: String,
    pub storage_key: String,
    /// Where its files appear under the site's path: `""` or `"assets/"`.
    pub mount: String,
}

/// A version of an environment's site.
#[derive(Debug, Clone, PartialEq)]
pub struct SiteVersion {
    pub id: SiteVersionId,
    pub environment_id: EnvironmentId,
    pub release_id: Uuid,
    pub deployment_id: Option<Uuid>,
    pub artifacts: Vec<SiteArtifact>,
    /// Served as `config.json`.
    pub runtime_config: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

/// What an environment serves now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SitePointer {
    pub environment_id: EnvironmentId,
    pub site_version_id: SiteVersionId,
    pub switched_at: DateTime<Utc>,
    pub switched_by: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SiteError {
    #[error("there is no release {0}")]
    UnknownRelease(Uuid),
    #[error("there is no environment {0}")]
    UnknownEnvironment(EnvironmentId),
    #[error("release {release} belongs to another project than environment {environment}")]
    OtherProject {
        release: Uuid,
        environment: EnvironmentId,
    },
    #[error("a site needs at least one artifact to publish (a `web` or an `asset-bundle`)")]
    NothingToPublish,
    #[error("the release's run has no artifact `{name}`; it has {available}")]
    MissingArtifact { name: String, available: String },
    #[error(
        "artifact `{name}` is a {kind}; a site publishes only `web` and `asset-bundle` artifacts"
    )]
    NotPublishable { name: String, kind: String },
    #[error("artifacts `{first}` and `{second}` would both be served under `/{mount}`")]
    SameMount {
        first: String,
        second: String,
        mount: String,
    },
    #[error("the runtime configuration must be a JSON object, not {0}")]
    ConfigNotAnObject(String),
    #[error("there is no site version {0}")]
    UnknownVersion(SiteVersionId),
    #[error("site version {version} belongs to another environment than {environment}")]
    OtherEnvironment {
        version: SiteVersionId,
        environment: EnvironmentId,
    },
    #[error("cannot read artifact `{name}` ({key}) from storage: {source}")]
    Storage {
        name: String,
        key: String,
        source: std::io::Error,
    },
    #[error(
        "artifact `{name}` does not match its checksum: recorded sha256 {expected}, stored bytes {actual}; the site version is not served"
    )]
    Checksum {
        name: String,
        expected: String,
        actual: String,
    },
    #[error("cannot unpack artifact `{name}`: {source}")]
    Unpack {
        name: String,
        source: std::io::Error,
    },
    #[error("cannot write the site under {path}: {source}")]
    Disk {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Makes a site version of `release` for `environment` from the release run's artifacts named
/// in `publish` (each a `web` or an `asset-bundle`), serving `runtime_config` as `config.json`.
/// Pins the artifacts, so retention keeps their bytes. Nothing is served until [`switch`].
pub async fn prepare(
    conn: &mut PgConnection,
    environment_id: EnvironmentId,
    release_id: Uuid,
    deployment_id: Option<Uuid>,
    publish: &[String],
    runtime_config: serde_json::Value,
) -> Result<SiteVersionId, SiteError> {
    if !runtime_config.is_object() {
        return Err(SiteError::ConfigNotAnObject(json_kind(&runtime_config)));
    }
    if publish.is_empty() {
        return Err(SiteError::NothingToPublish);
    }
    // The version and its artifacts appear together (replicas start fetching the version as
    // soon as its row commits), even when the caller holds no transaction.
    let mut conn = conn.begin().await?;
    let release = sqlx::query!(
        "select run_id, project_id from release where release_id = $1",
        release_id
    )
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(SiteError::UnknownRelease(release_id))?;
    let environment_project = sqlx::query_scalar!(
        "select project_id from environment where environment_id = $1",
        environment_id.0
    )
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(SiteError::UnknownEnvironment(environment_id))?;
    if environment_project != release.project_id {
        return Err(SiteError::OtherProject {
            release: release_id,
            environment: environment_id,
        });
    }
    let available = sqlx::query!(
        r#"select artifact_id, name, kind, sha256, storage_key from artifact
           where run_id = $1 order by name"#,
        release.run_id
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut chosen: Vec<SiteArtifact> = Vec::new();
    for name in publish {
        let Some(row) = available.iter().find(|a| &a.name == name) else {
            return Err(SiteError::MissingArtifact {
                name: name.clone(),
                available: if available.is_empty() {
                    "none".to_string()
                } else {
                    available
                        .iter()
                        .map(|a| format!("`{}` ({})", a.name, a.kind))
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            });
        };
        let Some((_, mount)) = MOUNTS.iter().find(|(kind, _)| *kind == row.kind) else {
            return Err(SiteError::NotPublishable {
                name: name.clone(),
                kind: row.kind.clone(),
            });
        };
        if chosen.iter().any(|c| c.name == row.name) {
            continue;
        }
        if let Some(other) = chosen.iter().find(|c| c.mount == *mount) {
            return Err(SiteError::SameMount {
                first: other.name.clone(),
                second: row.name.clone(),
                mount: mount.to_string(),
            });
        }
        chosen.push(SiteArtifact {
            artifact_id: row.artifact_id,
            name: row.name.clone(),
            kind: row.kind.clone(),
            sha256: row.sha256.clone(),
            storage_key: row.storage_key.clone(),
            mount: mount.to_string(),
        });
    }
    let id = sqlx::query_scalar!(
        r#"insert into site_version (environment_id, release_id, deployment_id, runtime_config)
           values ($1, $2, $3, $4) returning site_version_id as "id: SiteVersionId""#,
        environment_id.0,
        release_id,
        deployment_id,
        runtime_config,
    )
    .fetch_one(&mut *conn)
    .await?;
    for artifact in &chosen {
        sqlx::query!(
            r#"insert into site_version_artifact
                   (site_version_id, artifact_id, name, kind, sha256, storage_key, mount)
               values ($1, $2, $3, $4, $5, $6, $7)"#,
            id.0,
            artifact.artifact_id,
            artifact.name,
            artifact.kind,
            artifact.sha256,
            artifact.storage_key,
            artifact.mount,
        )
        .execute(&mut *conn)
        .await?;
    }
    pin(&mut conn, id).await?;
    conn.commit().await?;
    Ok(id)
}

/// Points `environment_id` at `site_version_id`, in the caller's transaction; returns the
/// version it served before (None: its first site). Every replica serves the new version once
/// the transaction commits (a trigger notifies `flightdeck_site`).
///
/// **The caller writes the audit entry** (who switched which environment from what to what) in
/// the same transaction: a deployment does so as one of its recorded steps, so the switch and
/// its record commit together or not at all.
///
/// Earlier versions and their artifacts stay (pinned, so retention never deletes the bytes a
/// rollback needs): switching back to one is this same call. Have the replica that switches
/// [`materialise`] the version first, so a checksum mismatch fails before anything goes live.
pub async fn switch(
    conn: &mut PgConnection,
    environment_id: EnvironmentId,
    site_version_id: SiteVersionId,
    by: &str,
) -> Result<Option<SiteVersionId>, SiteError> {
    // A savepoint inside the caller's transaction (or a transaction of its own without one).
    let mut conn = conn.begin().await?;
    let owner = sqlx::query_scalar!(
        r#"select environment_id as "id: EnvironmentId" from site_version where site_version_id = $1"#,
        site_version_id.0
    )
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(SiteError::UnknownVersion(site_version_id))?;
    if owner != environment_id {
        return Err(SiteError::OtherEnvironment {
            version: site_version_id,
            environment: environment_id,
        });
    }
    // Locks the pointer row (if any) so concurrent switches of one environment take turns and
    // each sees the version it replaces.
    let previous = sqlx::query_scalar!(
        r#"select site_version_id as "id: SiteVersionId" from environment_site
           where environment_id = $1 for update"#,
        environment_id.0
    )
    .fetch_optional(&mut *conn)
    .await?;
    sqlx::query!(
        r#"insert into environment_site (environment_id, site_version_id, switched_at, switched_by)
           values ($1, $2, now(), $3)
           on conflict (environment_id) do update
               set site_version_id = excluded.site_version_id, switched_at = excluded.switched_at,
                   switched_by = excluded.switched_by"#,
        environment_id.0,
        site_version_id.0,
        by,
    )
    .execute(&mut *conn)
    .await?;
    pin(&mut conn, site_version_id).await?;
    conn.commit().await?;
    Ok(previous)
}

/// Keeps the version's artifacts from retention (idempotent).
async fn pin(conn: &mut PgConnection, id: SiteVersionId) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"update artifact set pinned = true
           where not pinned
             and artifact_id in (select artifact_id from site_version_artifact where site_version_id = $1)"#,
        id.0
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// What `environment_id` serves now (None: nothing deployed there yet).
pub async fn current(
    conn: &mut PgConnection,
    environment_id: EnvironmentId,
) -> Result<Option<SitePointer>, sqlx::Error> {
    sqlx::query_as!(
        SitePointer,
        r#"select environment_id as "environment_id: EnvironmentId",
                  site_version_id as "site_version_id: SiteVersionId", switched_at, switched_by
           from environment_site where environment_id = $1"#,
        environment_id.0
    )
    .fetch_optional(conn)
    .await
}

/// Every environment's pointer (what a replica loads at start and after a reconnect).
pub async fn pointers(conn: &mut PgConnection) -> Result<Vec<SitePointer>, sqlx::Error> {
    sqlx::query_as!(
        SitePointer,
        r#"select environment_id as "environment_id: EnvironmentId",
                  site_version_id as "site_version_id: SiteVersionId", switched_at, switched_by
           from environment_site"#,
    )
    .fetch_all(conn)
    .await
}

/// One version with its artifacts.
pub async fn version(conn: &mut PgConnection, id: SiteVersionId) -> Result<SiteVersion, SiteError> {
    let row = sqlx::query!(
        r#"select environment_id as "environment_id: EnvironmentId", release_id, deployment_id,
                  runtime_config, created_at
           from site_version where site_version_id = $1"#,
        id.0
    )
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(SiteError::UnknownVersion(id))?;
    let artifacts = sqlx::query_as!(
        SiteArtifact,
        r#"select artifact_id, name, kind, sha256, storage_key, mount
           from site_version_artifact where site_version_id = $1 order by mount, name"#,
        id.0
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(SiteVersion {
        id,
        environment_id: row.environment_id,
        release_id: row.release_id,
        deployment_id: row.deployment_id,
        artifacts,
        runtime_config: row.runtime_config,
        created_at: row.created_at,
    })
}

/// The versions of an environment, newest first (what a rollback can go back to).
pub async fn versions(
    conn: &mut PgConnection,
    environment_id: EnvironmentId,
) -> Result<Vec<SiteVersionId>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"select site_version_id as "id: SiteVersionId" from site_version
           where environment_id = $1 order by created_at desc, site_version_id"#,
        environment_id.0
    )
    .fetch_all(conn)
    .await
}

fn json_kind(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
    .to_string()
}
