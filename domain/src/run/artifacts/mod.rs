//! Artifact files: stored by content (the SHA-256 of the bytes) behind [`ArtifactStorage`], so
//! the local disk used on one machine can give way to S3-compatible storage on several, and
//! kept per a retention rule.

use sqlx::PgPool;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use uuid::Uuid;

/// Where artifact bytes live. Keys are content addresses (`sha256/ab/abcdef…`).
pub trait ArtifactStorage: Clone + Send + Sync + 'static {
    /// Moves a finished temporary file into storage under `key`.
    fn put(&self, key: &str, file: &Path) -> impl Future<Output = io::Result<()>> + Send;
    /// Opens the bytes under `key` for reading.
    fn open(&self, key: &str) -> impl Future<Output = io::Result<tokio::fs::File>> + Send;
    /// Forgets `key`; a missing key is not an error.
    fn delete(&self, key: &str) -> impl Future<Output = io::Result<()>> + Send;
    /// A directory for uploads in progress, on the same filesystem as the store.
    fn staging_dir(&self) -> PathBuf;
}

/// Artifacts as files under `<data dir>/artifacts`.
#[derive(Debug, Clone)]
pub struct LocalDisk {
    root: PathBuf,
}

impl LocalDisk {
    pub fn new(root: impl Into<PathBuf>) -> io::Result<Self> {
        let root = root.into();
        std::fs::create_dir_all(root.join("staging"))?;
        Ok(LocalDisk { root })
    }

    fn path(&self, key: &str) -> io::Result<PathBuf> {
        // Keys are ours, but a key must never leave the store.
        if key
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == "..")
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad artifact key {key}"),
            ));
        }
        Ok(self.root.join(key))
    }
}

impl ArtifactStorage for LocalDisk {
    async fn put(&self, key: &str, file: &Path) -> io::Result<()> {
        let target = self.path(key)?;
        if let Some(parent) = target.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        tokio::fs::rename(file, target).await
    }

    async fn open(&self, key: &str) -> io::Result<tokio::fs::File> {
        tokio::fs::File::open(self.path(key)?).await
    }

    async fn delete(&self, key: &str) -> io::Result<()> {
        match tokio::fs::remove_file(self.path(key)?).await {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    fn staging_dir(&self) -> PathBuf {
        self.root.join("staging")
    }
}

/// The content address of some bytes.
pub fn key_for(sha256: &str) -> String {
    format!("sha256/{}/{sha256}", &sha256[..2])
}

/// An artifact a runner uploaded, recorded against its job.
#[derive(Debug, Clone)]
pub struct Uploaded {
    pub name: String,
    pub file_name: String,
    pub content_type: String,
    pub size_bytes: i64,
    pub sha256: String,
}

/// Records an upload for a job the runner holds; a retry's upload replaces the earlier one.
/// Returns the artifact id, or None when the job has no artifact of that name.
pub async fn record(
    pool: &PgPool,
    job_id: Uuid,
    uploaded: &Uploaded,
) -> Result<Option<Uuid>, sqlx::Error> {
    let job = sqlx::query!(
        r#"select j.run_id, r.project_id, j.spec from job j join run r using (run_id) where j.job_id = $1"#,
        job_id
    )
    .fetch_one(pool)
    .await?;
    let spec: Option<super::spec::JobSpec> = serde_json::from_value(job.spec).ok();
    let Some(declared) =
        spec.and_then(|s| s.artifacts.into_iter().find(|a| a.name == uploaded.name))
    else {
        return Ok(None);
    };
    let id = sqlx::query_scalar!(
        r#"insert into artifact (job_id, run_id, project_id, name, kind, file_name, content_type, size_bytes, sha256, storage_key)
           values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
           on conflict (job_id, name) do update set file_name = excluded.file_name, content_type = excluded.content_type,
               size_bytes = excluded.size_bytes, sha256 = excluded.sha256, storage_key = excluded.storage_key,
               created_at = now()
           returning artifact_id"#,
        job_id,
        job.run_id,
        job.project_id,
        uploaded.name,
        declared.kind.as_str(),
        uploaded.file_name,
        uploaded.content_type,
        uploaded.size_bytes,
        uploaded.sha256,
        key_for(&uploaded.sha256),
    )
    .fetch_one(pool)
    .await?;
    Ok(Some(id))
}

/// What a download needs.
#[derive(Debug, Clone)]
pub struct Stored {
    pub file_name: String,
    pub content_type: String,
    pub size_bytes: i64,
    pub sha256: String,
    pub storage_key: String,
}

pub async fn find(pool: &PgPool, id: Uuid) -> Result<Option<Stored>, sqlx::Error> {
    sqlx::query_as!(
        Stored,
        "select file_name, content_type, size_bytes, sha256, storage_key from artifact where artifact_id = $1",
        id
    )
    .fetch_optional(pool)
    .await
}

/// How long and how many artifacts are kept. Artifacts of a release (pinned) are always kept.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub max_age: chrono::Duration,
    pub keep_per_kind: i64,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            max_age: chrono::Duration::days(30),
            keep_per_kind: 50,
        }
    }
}

/// Deletes artifacts older than the age limit or beyond the newest `keep_per_kind` of their kind
/// in their project, unless pinned; removes the bytes no remaining artifact shares. Returns how
/// many artifacts went.
pub async fn sweep<S: ArtifactStorage>(
    pool: &PgPool,
    storage: &S,
    retention: Retention,
) -> Result<usize, sqlx::Error> {
    let gone = sqlx::query!(
        r#"with ranked as (
               select artifact_id, created_at,
                      row_number() over (partition by project_id, kind order by created_at desc) as rank
               from artifact where not pinned)
           delete from artifact a using ranked
           where a.artifact_id = ranked.artifact_id
             and (ranked.rank > $1 or ranked.created_at < now() - make_interval(secs => $2))
           returning a.storage_key"#,
        retention.keep_per_kind,
        retention.max_age.num_seconds() as f64,
    )
    .fetch_all(pool)
    .await?;
    for row in &gone {
        let shared = sqlx::query_scalar!(
            r#"select exists(select 1 from artifact where storage_key = $1) as "shared!""#,
            row.storage_key
        )
        .fetch_one(pool)
        .await?;
        if !shared && let Err(error) = storage.delete(&row.storage_key).await {
            tracing::warn!(%error, key = %row.storage_key, "could not delete an artifact's bytes");
        }
    }
    Ok(gone.len())
}
