//! Artifact files: stored by content (the SHA-256 of the bytes) behind [`ArtifactStorage`], so
//! the local disk used on one machine can give way to S3-compatible storage on several; taken
//! in from runners by [`ingest`]; kept per a retention rule.

pub mod ingest;
mod s3;
mod storage;
mod store;

pub use ingest::{IngestError, Ingested, Upload, content_type_for, ingest};
pub use s3::{PART_BYTES, S3Builder, S3ConfigError, S3Store};
pub use storage::{ArtifactStorage, ByteStream, LocalDisk, Staged};
pub use store::{ArtifactStore, ArtifactStoreError};

use sqlx::PgPool;
use uuid::Uuid;

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
/// in their project, unless pinned; removes the bytes no remaining artifact shares and no
/// database backup uses (backups share the content-keyed storage and are never swept: a
/// rollback's safety dump must outlive its rollback). Returns how many artifacts went.
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
    let mut conn = pool.acquire().await?;
    for row in &gone {
        let shared = crate::envdb::backup::bytes_in_use(&mut conn, &row.storage_key).await?;
        if !shared && let Err(error) = storage.delete(&row.storage_key).await {
            tracing::warn!(%error, key = %row.storage_key, "could not delete an artifact's bytes");
        }
    }
    Ok(gone.len())
}
