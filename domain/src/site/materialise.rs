//! Turning a site version into files a replica serves: each artifact streamed from storage into
//! a download file while it is hashed, refused unless its sha256 is the one recorded, then
//! unpacked (regular files and directories only: no links, nothing outside) under
//! `<sites>/<version>.tmp/files`, indexed (each file's sha256, size and whether its name
//! carries its content hash), and renamed to `<sites>/<version>` in one step. A crash leaves at
//! most a `.tmp` directory, which the next attempt clears; a finished directory is never
//! written again, so requests reading it need no lock.
//!
//! ```text
//! <sites>/<version>/index.json     {"files": {"index.html": {"sha256": "…", "size": 812, "immutable": false}, …}}
//! <sites>/<version>/files/…        the site as served
//! ```

use super::{SiteError, SiteVersion};
use crate::run::artifacts::ArtifactStorage;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};
use tokio::io::AsyncWriteExt;

/// The index of a materialised version, next to its `files/`.
pub const INDEX_FILE: &str = "index.json";

/// One file of a site.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteFile {
    pub sha256: String,
    pub size: u64,
    /// Its name carries the first eight hex digits of its sha256 (`app.3f2a9c1b.js`, as the
    /// sample's build-web.mjs and bundle-assets.mjs name files), so it can be cached forever.
    pub immutable: bool,
}

/// Every file of a materialised version, by its path under the site (`assets/i18n/de.1a2b3c4d.json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteIndex {
    pub files: BTreeMap<String, SiteFile>,
}

/// Where a version's files are: `<sites_dir>/<version>/files`.
pub fn version_dir(sites_dir: &Path, version: super::SiteVersionId) -> PathBuf {
    sites_dir.join(version.to_string())
}

/// The index of a version materialised earlier, if it is complete on disk.
pub async fn load_index(
    sites_dir: &Path,
    version: super::SiteVersionId,
) -> Result<Option<SiteIndex>, SiteError> {
    let path = version_dir(sites_dir, version).join(INDEX_FILE);
    match tokio::fs::read(&path).await {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| disk(&path, e.into())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(disk(&path, e)),
    }
}

/// Makes `version` servable under `sites_dir` (see the module doc); returns its index. Does
/// nothing but read the index when it is there already. Callers run one materialisation of a
/// version at a time per `sites_dir`.
pub async fn materialise<S: ArtifactStorage>(
    storage: &S,
    version: &SiteVersion,
    sites_dir: &Path,
) -> Result<SiteIndex, SiteError> {
    if let Some(index) = load_index(sites_dir, version.id).await? {
        return Ok(index);
    }
    let target = version_dir(sites_dir, version.id);
    let tmp = sites_dir.join(format!("{}.tmp", version.id));
    match tokio::fs::remove_dir_all(&tmp).await {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(disk(&tmp, e)),
        _ => {}
    }
    tokio::fs::create_dir_all(tmp.join("files"))
        .await
        .map_err(|e| disk(&tmp, e))?;
    let result = fill(storage, version, &tmp).await;
    let index = match result {
        Ok(index) => index,
        Err(error) => {
            let _ = tokio::fs::remove_dir_all(&tmp).await;
            return Err(error);
        }
    };
    if let Err(error) = tokio::fs::rename(&tmp, &target).await {
        let _ = tokio::fs::remove_dir_all(&tmp).await;
        // Someone else finished it first: theirs is as good.
        if let Some(index) = load_index(sites_dir, version.id).await? {
            return Ok(index);
        }
        return Err(disk(&target, error));
    }
    Ok(index)
}

async fn fill<S: ArtifactStorage>(
    storage: &S,
    version: &SiteVersion,
    tmp: &Path,
) -> Result<SiteIndex, SiteError> {
    let mut downloads = Vec::new();
    for artifact in &version.artifacts {
        let download = tmp.join(format!("{}.download", downloads.len()));
        let storage_error = |source| SiteError::Storage {
            name: artifact.name.clone(),
            key: artifact.storage_key.clone(),
            source,
        };
        let mut body = storage
            .get(&artifact.storage_key)
            .await
            .map_err(storage_error)?;
        let mut file = tokio::fs::File::create(&download)
            .await
            .map_err(|e| disk(&download, e))?;
        let mut hasher = Sha256::new();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(storage_error)?;
            hasher.update(&chunk);
            file.write_all(&chunk)
                .await
                .map_err(|e| disk(&download, e))?;
        }
        file.flush().await.map_err(|e| disk(&download, e))?;
        let actual = hex::encode(hasher.finalize());
        if actual != artifact.sha256 {
            return Err(SiteError::Checksum {
                name: artifact.name.clone(),
                expected: artifact.sha256.clone(),
                actual,
            });
        }
        downloads.push((artifact.name.clone(), artifact.mount.clone(), download));
    }
    let tmp = tmp.to_path_buf();
    tokio::task::spawn_blocking(move || unpack_all(&tmp, &downloads))
        .await
        .map_err(|e| SiteError::Disk {
            path: "(unpacking)".into(),
            source: io::Error::other(e),
        })?
}

fn unpack_all(tmp: &Path, downloads: &[(String, String, PathBuf)]) -> Result<SiteIndex, SiteError> {
    let files = tmp.join("files");
    for (name, mount, download) in downloads {
        let into = files.join(mount.trim_end_matches('/'));
        std::fs::create_dir_all(&into).map_err(|e| disk(&into, e))?;
        unpack(download, &into).map_err(|source| SiteError::Unpack {
            name: name.clone(),
            source,
        })?;
        std::fs::remove_file(download).map_err(|e| disk(download, e))?;
    }
    let mut index = SiteIndex::default();
    walk(&files, "", &mut index).map_err(|e| disk(&files, e))?;
    let path = tmp.join(INDEX_FILE);
    let json = serde_json::to_vec_pretty(&index).expect("an index always serializes");
    std::fs::write(&path, json).map_err(|e| disk(&path, e))?;
    Ok(index)
}

/// Unpacks a .tar.gz into `into`: directories and regular files only, each inside `into`.
fn unpack(archive: &Path, into: &Path) -> io::Result<()> {
    let file = std::fs::File::open(archive)?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(io::BufReader::new(file)));
    for entry in tar.entries()? {
        let mut entry = entry?;
        let kind = entry.header().entry_type();
        if !(kind.is_file() || kind.is_dir()) {
            continue;
        }
        let path = entry.path()?.into_owned();
        if path
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("entry {} points outside the site", path.display()),
            ));
        }
        // unpack_in checks again that the entry lands inside `into`.
        entry.unpack_in(into)?;
    }
    Ok(())
}

fn walk(dir: &Path, prefix: &str, index: &mut SiteIndex) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let relative = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}/{name}")
        };
        let kind = entry.file_type()?;
        if kind.is_dir() {
            walk(&entry.path(), &relative, index)?;
        } else if kind.is_file() {
            let mut file = std::fs::File::open(entry.path())?;
            let mut hasher = Sha256::new();
            let mut buffer = vec![0u8; 64 * 1024];
            let mut size = 0u64;
            loop {
                let n = file.read(&mut buffer)?;
                if n == 0 {
                    break;
                }
                size += n as u64;
                hasher.update(&buffer[..n]);
            }
            let sha256 = hex::encode(hasher.finalize());
            let immutable = is_content_hashed(&name, &sha256);
            index.files.insert(
                relative,
                SiteFile {
                    sha256,
                    size,
                    immutable,
                },
            );
        }
    }
    Ok(())
}

/// Whether a file name carries the first eight hex digits of its content's sha256 before its
/// extension (`app.3f2a9c1b.js`, `logo.1a2b3c4d.svg`, or `LICENSE.1a2b3c4d` without one).
pub fn is_content_hashed(name: &str, sha256: &str) -> bool {
    let parts: Vec<&str> = name.split('.').collect();
    let candidate = match parts.len() {
        0 | 1 => return false,
        2 => parts[1],
        n => parts[n - 2],
    };
    !parts[0].is_empty() && candidate.len() == 8 && sha256.get(..8) == Some(candidate)
}

fn disk(path: &Path, source: io::Error) -> SiteError {
    SiteError::Disk {
        path: path.display().to_string(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_content_hashed_only_when_it_carries_its_own_hash() {
        let sha = "3f2a9c1b00000000000000000000000000000000000000000000000000000000";
        assert!(is_content_hashed("app.3f2a9c1b.js", sha));
        assert!(is_content_hashed("de.3f2a9c1b.json", sha));
        assert!(is_content_hashed("LICENSE.3f2a9c1b", sha));
        assert!(!is_content_hashed("app.deadbeef.js", sha), "another hash");
        assert!(!is_content_hashed("app.js", sha));
        assert!(!is_content_hashed("index.html", sha));
        assert!(!is_content_hashed(".3f2a9c1b.js", sha));
        assert!(!is_content_hashed("app.3F2A9C1B.js", sha));
    }
}
