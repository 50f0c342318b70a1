//! Where artifact bytes live, as a trait that streams in and out — never a local path — so an
//! S3-compatible store is a second implementation of the same four calls. Writing is two-step:
//! bytes are *staged* as they arrive (their content address is known only at the end), then
//! *promoted* under the content key or discarded.

use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use tokio::io::AsyncWriteExt;

/// Bytes on their way in or out.
pub type ByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

/// Bytes written but not yet under a key: the store's own handle.
#[derive(Debug)]
pub struct Staged(pub(super) String);

/// A store of artifact bytes under content keys (`sha256/ab/abcdef…`).
pub trait ArtifactStorage: Clone + Send + Sync + 'static {
    /// Writes `body` to a new staged object. A stream that fails fails the staging (and leaves
    /// nothing behind).
    fn stage(&self, body: ByteStream) -> impl Future<Output = io::Result<Staged>> + Send;
    /// Makes staged bytes the bytes under `key`. Keys are content addresses, so a key that
    /// exists already holds the same bytes and is kept.
    fn promote(&self, staged: Staged, key: &str) -> impl Future<Output = io::Result<()>> + Send;
    /// Forgets staged bytes.
    fn discard(&self, staged: Staged) -> impl Future<Output = io::Result<()>> + Send;
    /// The bytes under `key`.
    fn get(&self, key: &str) -> impl Future<Output = io::Result<ByteStream>> + Send;
    /// Forgets `key`; a missing key is not an error.
    fn delete(&self, key: &str) -> impl Future<Output = io::Result<()>> + Send;
}

/// Artifacts as files under `<data dir>/artifacts`; staged files in its `staging/`, on the same
/// filesystem, so promoting is a rename.
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

    /// The directory it stores under.
    pub fn root(&self) -> &std::path::Path {
        &self.root
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

    fn staged_path(&self, staged: &Staged) -> PathBuf {
        self.root.join("staging").join(&staged.0)
    }
}

impl ArtifactStorage for LocalDisk {
    async fn stage(&self, mut body: ByteStream) -> io::Result<Staged> {
        let staged = Staged(format!("{}.part", uuid::Uuid::new_v4()));
        let path = self.staged_path(&staged);
        let mut file = tokio::fs::File::create(&path).await?;
        let written = async {
            while let Some(chunk) = body.next().await {
                file.write_all(&chunk?).await?;
            }
            file.flush().await
        }
        .await;
        drop(file);
        if let Err(error) = written {
            let _ = tokio::fs::remove_file(&path).await;
            return Err(error);
        }
        Ok(staged)
    }

    async fn promote(&self, staged: Staged, key: &str) -> io::Result<()> {
        let target = self.path(key)?;
        if let Some(parent) = target.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        tokio::fs::rename(self.staged_path(&staged), target).await
    }

    async fn discard(&self, staged: Staged) -> io::Result<()> {
        match tokio::fs::remove_file(self.staged_path(&staged)).await {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    async fn get(&self, key: &str) -> io::Result<ByteStream> {
        let file = tokio::fs::File::open(self.path(key)?).await?;
        Ok(tokio_util::io::ReaderStream::new(file)
            .map_err(io::Error::other)
            .boxed())
    }

    async fn delete(&self, key: &str) -> io::Result<()> {
        match tokio::fs::remove_file(self.path(key)?).await {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(parts: &[&'static [u8]]) -> ByteStream {
        let parts: Vec<io::Result<Bytes>> =
            parts.iter().map(|p| Ok(Bytes::from_static(p))).collect();
        futures::stream::iter(parts).boxed()
    }

    async fn read(store: &LocalDisk, key: &str) -> Vec<u8> {
        let mut out = Vec::new();
        let mut body = store.get(key).await.unwrap();
        while let Some(chunk) = body.next().await {
            out.extend_from_slice(&chunk.unwrap());
        }
        out
    }

    #[tokio::test]
    async fn staged_bytes_appear_under_their_key_only_when_promoted() {
        let dir = std::env::temp_dir().join(format!("flightdeck-store-{}", uuid::Uuid::new_v4()));
        let store = LocalDisk::new(&dir).unwrap();
        let staged = store.stage(chunks(&[b"hello ", b"world"])).await.unwrap();
        assert!(store.get("sha256/ab/abc").await.is_err());
        store.promote(staged, "sha256/ab/abc").await.unwrap();
        assert_eq!(read(&store, "sha256/ab/abc").await, b"hello world");
        let discarded = store.stage(chunks(&[b"gone"])).await.unwrap();
        store.discard(discarded).await.unwrap();
        assert_eq!(std::fs::read_dir(dir.join("staging")).unwrap().count(), 0);
        store.delete("sha256/ab/abc").await.unwrap();
        store.delete("sha256/ab/abc").await.unwrap();
        assert!(
            store.get("../etc/passwd").await.is_err(),
            "keys stay inside"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn a_broken_stream_leaves_nothing_staged() {
        let dir = std::env::temp_dir().join(format!("flightdeck-store-{}", uuid::Uuid::new_v4()));
        let store = LocalDisk::new(&dir).unwrap();
        let broken = futures::stream::iter(vec![
            Ok(Bytes::from_static(b"part")),
            Err(io::Error::other("the upload broke off")),
        ])
        .boxed();
        assert!(store.stage(broken).await.is_err());
        assert_eq!(std::fs::read_dir(dir.join("staging")).unwrap().count(), 0);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
