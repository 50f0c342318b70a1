//! Artifacts in an S3-compatible bucket, for replicas on several machines that must all read
//! what any of them stored. Built on `object_store` (retries, multipart uploads, the standard
//! `AWS_*` credentials and endpoint variables).
//!
//! Staging writes `staging/<uuid>` — one PUT for a body under [`PART_BYTES`], a multipart upload
//! above it (aborted if the body breaks off, so nothing is left behind) — and promoting copies
//! it to the content key and deletes the staged object. Keys live under the bucket's optional
//! prefix (`s3://bucket/flightdeck` stores `flightdeck/sha256/ab/…`).

use super::storage::{ArtifactStorage, ByteStream, Staged};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload, WriteMultipart};
use std::io;
use std::sync::Arc;

pub use object_store::aws::AmazonS3Builder as S3Builder;

/// Bodies up to this size go up in one request; larger ones as parts of this size (S3's
/// smallest part but the last is 5 MiB).
pub const PART_BYTES: usize = 5 * 1024 * 1024;
/// Parts of one upload in flight at once: bounds the memory a large upload holds.
const PARTS_IN_FLIGHT: usize = 2;

/// An S3-compatible bucket holding artifacts.
#[derive(Debug, Clone)]
pub struct S3Store {
    store: Arc<AmazonS3>,
    prefix: String,
    url: String,
}

#[derive(Debug, thiserror::Error)]
pub enum S3ConfigError {
    #[error("`{0}` is not an S3 location; write s3://BUCKET or s3://BUCKET/PREFIX")]
    NotS3(String),
    #[error("cannot use {url}: {source}")]
    Client {
        url: String,
        source: object_store::Error,
    },
}

impl S3Store {
    /// The bucket in `url` (`s3://bucket` or `s3://bucket/prefix`), with the endpoint, region
    /// and credentials from the standard variables (`AWS_ENDPOINT_URL`, `AWS_REGION`,
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_ALLOW_HTTP`, …).
    pub fn from_env(url: &str) -> Result<Self, S3ConfigError> {
        Self::with_builder(url, AmazonS3Builder::from_env())
    }

    /// The bucket in `url`, on a client configured by `builder` (tests name their endpoint).
    pub fn with_builder(url: &str, builder: AmazonS3Builder) -> Result<Self, S3ConfigError> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| S3ConfigError::NotS3(url.to_string()))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let prefix = prefix.trim_matches('/');
        if bucket.is_empty() || Path::parse(prefix).is_err() {
            return Err(S3ConfigError::NotS3(url.to_string()));
        }
        let store =
            builder
                .with_bucket_name(bucket)
                .build()
                .map_err(|source| S3ConfigError::Client {
                    url: url.to_string(),
                    source,
                })?;
        Ok(S3Store {
            store: Arc::new(store),
            prefix: prefix.to_string(),
            url: url.to_string(),
        })
    }

    /// Where it stores, for logs (`s3://bucket/prefix`).
    pub fn url(&self) -> &str {
        &self.url
    }

    fn path(&self, key: &str) -> io::Result<Path> {
        if key
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == "..")
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad artifact key {key}"),
            ));
        }
        let full = if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.prefix)
        };
        Path::parse(&full).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
    }

    async fn upload_parts(
        &self,
        path: &Path,
        head: Vec<Bytes>,
        body: &mut ByteStream,
    ) -> io::Result<()> {
        let upload = self.store.put_multipart(path).await.map_err(io_error)?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
        let written: io::Result<()> = async {
            for chunk in head {
                writer.put(chunk);
            }
            while let Some(chunk) = body.next().await {
                let chunk = chunk?;
                writer
                    .wait_for_capacity(PARTS_IN_FLIGHT)
                    .await
                    .map_err(io_error)?;
                writer.put(chunk);
            }
            Ok(())
        }
        .await;
        match written {
            Ok(()) => writer.finish().await.map(|_| ()).map_err(io_error),
            Err(error) => {
                if let Err(abort) = writer.abort().await {
                    tracing::warn!(error = %abort, path = %path, "could not abort a broken upload");
                }
                Err(error)
            }
        }
    }
}

impl ArtifactStorage for S3Store {
    async fn stage(&self, mut body: ByteStream) -> io::Result<Staged> {
        let key = format!("staging/{}", uuid::Uuid::new_v4());
        let path = self.path(&key)?;
        // Small bodies (most artifacts) in one request; the first part's worth decides.
        let mut head = Vec::new();
        let mut buffered = 0usize;
        while buffered < PART_BYTES {
            match body.next().await {
                Some(chunk) => {
                    let chunk = chunk?;
                    buffered += chunk.len();
                    head.push(chunk);
                }
                None => {
                    self.store
                        .put(&path, PutPayload::from_iter(head))
                        .await
                        .map_err(io_error)?;
                    return Ok(Staged(key));
                }
            }
        }
        self.upload_parts(&path, head, &mut body).await?;
        Ok(Staged(key))
    }

    async fn promote(&self, staged: Staged, key: &str) -> io::Result<()> {
        let from = self.path(&staged.0)?;
        // Keys are content addresses: copying over an existing key writes the same bytes.
        self.store
            .copy(&from, &self.path(key)?)
            .await
            .map_err(io_error)?;
        if let Err(error) = self.store.delete(&from).await {
            tracing::warn!(%error, staged = %from, "could not delete a promoted staged object");
        }
        Ok(())
    }

    async fn discard(&self, staged: Staged) -> io::Result<()> {
        self.delete(&staged.0).await
    }

    async fn get(&self, key: &str) -> io::Result<ByteStream> {
        let found = self.store.get(&self.path(key)?).await.map_err(io_error)?;
        Ok(found.into_stream().map_err(io_error).boxed())
    }

    async fn delete(&self, key: &str) -> io::Result<()> {
        match self.store.delete(&self.path(key)?).await {
            Err(object_store::Error::NotFound { .. }) | Ok(()) => Ok(()),
            Err(other) => Err(io_error(other)),
        }
    }
}

fn io_error(error: object_store::Error) -> io::Error {
    match error {
        object_store::Error::NotFound { .. } => io::Error::new(io::ErrorKind::NotFound, error),
        other => io::Error::other(other),
    }
}
