//! The artifact store a portal uses, chosen by configuration: the local disk (one machine) or
//! an S3-compatible bucket (replicas on several machines). The storage trait's calls return
//! `impl Future`, so the choice is an enum that delegates rather than a trait object.

use super::s3::{S3ConfigError, S3Store};
use super::storage::{ArtifactStorage, ByteStream, LocalDisk, Staged};
use std::io;
use std::path::Path;

#[derive(Debug, Clone)]
pub enum ArtifactStore {
    /// Files under the data directory.
    Local(LocalDisk),
    /// Objects in an S3-compatible bucket.
    S3(S3Store),
}

impl ArtifactStore {
    /// `s3://bucket[/prefix]` (endpoint and credentials from the `AWS_*` variables), or the
    /// local directory `local_dir` when `location` is None.
    pub fn open(location: Option<&str>, local_dir: &Path) -> Result<Self, ArtifactStoreError> {
        match location {
            Some(url) => Ok(ArtifactStore::S3(S3Store::from_env(url)?)),
            None => LocalDisk::new(local_dir)
                .map(ArtifactStore::Local)
                .map_err(|source| ArtifactStoreError::Local {
                    path: local_dir.display().to_string(),
                    source,
                }),
        }
    }

    /// Where the bytes go, for the log.
    pub fn describe(&self) -> String {
        match self {
            ArtifactStore::Local(disk) => disk.root().display().to_string(),
            ArtifactStore::S3(s3) => s3.url().to_string(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ArtifactStoreError {
    #[error("cannot store artifacts under {path}: {source}")]
    Local { path: String, source: io::Error },
    #[error(transparent)]
    S3(#[from] S3ConfigError),
}

impl From<LocalDisk> for ArtifactStore {
    fn from(disk: LocalDisk) -> Self {
        ArtifactStore::Local(disk)
    }
}

impl From<S3Store> for ArtifactStore {
    fn from(s3: S3Store) -> Self {
        ArtifactStore::S3(s3)
    }
}

impl ArtifactStorage for ArtifactStore {
    async fn stage(&self, body: ByteStream) -> io::Result<Staged> {
        match self {
            ArtifactStore::Local(s) => s.stage(body).await,
            ArtifactStore::S3(s) => s.stage(body).await,
        }
    }

    async fn promote(&self, staged: Staged, key: &str) -> io::Result<()> {
        match self {
            ArtifactStore::Local(s) => s.promote(staged, key).await,
            ArtifactStore::S3(s) => s.promote(staged, key).await,
        }
    }

    async fn discard(&self, staged: Staged) -> io::Result<()> {
        match self {
            ArtifactStore::Local(s) => s.discard(staged).await,
            ArtifactStore::S3(s) => s.discard(staged).await,
        }
    }

    async fn get(&self, key: &str) -> io::Result<ByteStream> {
        match self {
            ArtifactStore::Local(s) => s.get(key).await,
            ArtifactStore::S3(s) => s.get(key).await,
        }
    }

    async fn delete(&self, key: &str) -> io::Result<()> {
        match self {
            ArtifactStore::Local(s) => s.delete(key).await,
            ArtifactStore::S3(s) => s.delete(key).await,
        }
    }
}
