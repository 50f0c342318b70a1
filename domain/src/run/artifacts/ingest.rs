//! Taking in an artifact a runner uploads: the declared name is checked before a byte is read,
//! the bytes stream into storage while they are hashed and counted (never all in memory), land
//! under their content address, and are recorded against the job. The HTTP handler only checks
//! that the runner holds the job and hands the body over.

use super::storage::{ArtifactStorage, ByteStream};
use super::{Uploaded, key_for, record};
use futures::StreamExt;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use std::io;
use std::sync::{Arc, Mutex};
use uuid::Uuid;

/// The largest artifact accepted (an APK or IPA is well under this).
pub const MAX_ARTIFACT_BYTES: u64 = 2 * 1024 * 1024 * 1024;

/// An upload for one job's declared artifact.
#[derive(Debug, Clone, Copy)]
pub struct Upload<'a> {
    pub job_id: Uuid,
    /// The artifact's name in the job's `artifacts`.
    pub name: &'a str,
    /// The file name to offer on download; default the declared path's last part.
    pub file_name: Option<&'a str>,
    /// The runner said the body is a gzipped tar of a directory.
    pub gzip: bool,
}

/// What was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ingested {
    pub id: Uuid,
    pub sha256: String,
    pub size: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("the job declares no artifact `{0}`")]
    Undeclared(String),
    #[error("artifacts are limited to {MAX_ARTIFACT_BYTES} bytes")]
    TooLarge,
    #[error("the upload broke off: {0}")]
    Broken(io::Error),
    #[error("the artifact could not be stored: {0}")]
    Storage(io::Error),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// The hash, size and first bytes of a body as it passes.
#[derive(Default)]
struct Meter {
    hasher: Sha256,
    size: u64,
    head: Vec<u8>,
    too_large: bool,
}

/// Streams `body` into `storage` under its content address and records it for the job.
pub async fn ingest<S: ArtifactStorage>(
    pool: &PgPool,
    storage: &S,
    upload: Upload<'_>,
    body: ByteStream,
) -> Result<Ingested, IngestError> {
    let declared_path = declared_path(pool, upload.job_id, upload.name)
        .await?
        .ok_or_else(|| IngestError::Undeclared(upload.name.to_string()))?;
    let meter = Arc::new(Mutex::new(Meter::default()));
    let metered = {
        let meter = meter.clone();
        body.map(move |chunk| {
            let chunk = chunk?;
            let mut m = meter.lock().unwrap_or_else(|p| p.into_inner());
            m.size += chunk.len() as u64;
            if m.size > MAX_ARTIFACT_BYTES {
                m.too_large = true;
                return Err(io::Error::other("too large"));
            }
            m.hasher.update(&chunk);
            let wanted = 2usize.saturating_sub(m.head.len());
            m.head.extend(chunk.iter().take(wanted));
            Ok(chunk)
        })
        .boxed()
    };
    let staged = storage.stage(metered).await;
    let meter = std::mem::take(&mut *meter.lock().unwrap_or_else(|p| p.into_inner()));
    let staged = match staged {
        Ok(staged) => staged,
        Err(_) if meter.too_large => return Err(IngestError::TooLarge),
        Err(error) => return Err(IngestError::Broken(error)),
    };
    let sha256 = hex::encode(meter.hasher.finalize());
    // A directory arrives as a gzipped tar: said so, or recognised by gzip's magic bytes.
    let gzip = upload.gzip || meter.head == [0x1f_u8, 0x8b];
    let file_name = match upload
        .file_name
        .filter(|f| !f.is_empty() && !f.contains('/'))
    {
        Some(name) => name.to_string(),
        None => default_file_name(&declared_path, upload.name, gzip),
    };
    let content_type = if gzip {
        "application/gzip"
    } else {
        content_type_for(&file_name)
    };
    if let Err(error) = storage.promote(staged, &key_for(&sha256)).await {
        return Err(IngestError::Storage(error));
    }
    let uploaded = Uploaded {
        name: upload.name.to_string(),
        file_name,
        content_type: content_type.to_string(),
        size_bytes: meter.size as i64,
        sha256: sha256.clone(),
    };
    let id = record(pool, upload.job_id, &uploaded)
        .await?
        .ok_or_else(|| IngestError::Undeclared(upload.name.to_string()))?;
    Ok(Ingested {
        id,
        sha256,
        size: meter.size,
    })
}

/// The path the job's spec declares for artifact `name`, or None when it declares none.
async fn declared_path(
    pool: &PgPool,
    job_id: Uuid,
    name: &str,
) -> Result<Option<String>, sqlx::Error> {
    let spec = sqlx::query_scalar!("select spec from job where job_id = $1", job_id)
        .fetch_optional(pool)
        .await?;
    let declared: Option<crate::run::spec::JobSpec> =
        spec.and_then(|spec| serde_json::from_value(spec).ok());
    Ok(declared
        .and_then(|s| s.artifacts.into_iter().find(|a| a.name == name))
        .map(|a| a.path))
}

/// A file keeps the name of its declared path; a directory (sent as gzip) becomes `<name>.tar.gz`.
fn default_file_name(path: &str, name: &str, gzip: bool) -> String {
    let base = path
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .filter(|b| !b.is_empty())
        .unwrap_or(name)
        .to_string();
    if gzip && !base.ends_with(".gz") && !base.ends_with(".tgz") {
        format!("{base}.tar.gz")
    } else {
        base
    }
}

/// The Content-Type a download gets, by file name.
pub fn content_type_for(file_name: &str) -> &'static str {
    let lower = file_name.to_ascii_lowercase();
    match lower.rsplit('.').next().unwrap_or_default() {
        "apk" => "application/vnd.android.package-archive",
        "ipa" => "application/octet-stream",
        "gz" | "tgz" => "application/gzip",
        "json" => "application/json",
        "yaml" | "yml" => "application/yaml",
        "xml" => "application/xml",
        "sql" => "application/sql",
        "html" => "text/html; charset=utf-8",
        "txt" | "log" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_upload_is_named_after_its_path_as_a_tarball() {
        assert_eq!(default_file_name("out/site/", "site", true), "site.tar.gz");
        assert_eq!(default_file_name("build/app.apk", "apk", false), "app.apk");
        assert_eq!(default_file_name("", "report", false), "report");
        assert_eq!(default_file_name("x/bundle.tgz", "b", true), "bundle.tgz");
    }

    #[test]
    fn downloads_get_a_content_type_by_extension() {
        assert_eq!(
            content_type_for("App.APK"),
            "application/vnd.android.package-archive"
        );
        assert_eq!(content_type_for("unit.xml"), "application/xml");
        assert_eq!(content_type_for("noext"), "application/octet-stream");
    }
}
