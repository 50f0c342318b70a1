//! Reading a release's migrations from its `db-schema` artifact: the job's `db/migrations`
//! directory packed as a gzipped tar, its files at the top (`0001_create_study_session.sql`,
//! as `runner::execute::pack_directory` writes them). The files are checked by
//! `domain::envdb::migration::check`, the same rules as the app's own tool.

use domain::envdb::{Migration, MigrationsError};
use domain::run::artifacts::ArtifactStorage;
use futures::TryStreamExt;
use std::io::{self, Read};
use std::path::Component;

/// The most a migrations directory may hold, unpacked (a bound on a gzip bomb, far above any
/// real schema's SQL).
pub const MAX_UNPACKED_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ReadMigrationsError {
    #[error("the db-schema artifact is not a readable .tar.gz: {0}")]
    NotAnArchive(io::Error),
    #[error("the db-schema artifact unpacks to more than {MAX_UNPACKED_BYTES} bytes")]
    TooLarge,
    #[error("cannot read the db-schema artifact from storage: {0}")]
    Storage(io::Error),
    #[error(transparent)]
    Invalid(#[from] MigrationsError),
}

/// The migrations in a gzipped tar of a migrations directory, checked, in version order.
pub fn read_migrations(tar_gz: &[u8]) -> Result<Vec<Migration>, ReadMigrationsError> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(tar_gz));
    let mut files = Vec::new();
    let mut problems = Vec::new();
    let mut total = 0u64;
    for entry in archive
        .entries()
        .map_err(ReadMigrationsError::NotAnArchive)?
    {
        let mut entry = entry.map_err(ReadMigrationsError::NotAnArchive)?;
        let path = entry
            .path()
            .map_err(ReadMigrationsError::NotAnArchive)?
            .into_owned();
        let parts: Vec<String> = path
            .components()
            .filter_map(|c| match c {
                Component::Normal(part) => Some(part.to_string_lossy().into_owned()),
                _ => None,
            })
            .collect();
        let kind = entry.header().entry_type();
        match parts.as_slice() {
            [] => continue,
            [name] if kind.is_file() => {
                total += entry.size();
                if total > MAX_UNPACKED_BYTES {
                    return Err(ReadMigrationsError::TooLarge);
                }
                let mut bytes = Vec::with_capacity(entry.size() as usize);
                entry
                    .read_to_end(&mut bytes)
                    .map_err(ReadMigrationsError::NotAnArchive)?;
                files.push((name.clone(), bytes));
            }
            [name] if name.starts_with('.') => continue,
            [name] if kind.is_dir() => problems.push(format!(
                "{name}/: a directory; migrations are files at the top of the directory"
            )),
            [name] => problems.push(format!("{name}: not a regular file")),
            // Inside a directory already reported.
            _ => continue,
        }
    }
    match domain::envdb::migration::check(files) {
        Ok(migrations) if problems.is_empty() => Ok(migrations),
        Ok(_) => Err(MigrationsError { problems }.into()),
        Err(mut error) => {
            problems.append(&mut error.problems);
            Err(MigrationsError { problems }.into())
        }
    }
}

/// Reads the artifact under `storage_key` and its migrations.
pub async fn read_stored_migrations<S: ArtifactStorage>(
    storage: &S,
    storage_key: &str,
) -> Result<Vec<Migration>, ReadMigrationsError> {
    let mut body = storage
        .get(storage_key)
        .await
        .map_err(ReadMigrationsError::Storage)?;
    let mut bytes = Vec::new();
    while let Some(chunk) = body
        .try_next()
        .await
        .map_err(ReadMigrationsError::Storage)?
    {
        bytes.extend_from_slice(&chunk);
        if bytes.len() as u64 > MAX_UNPACKED_BYTES {
            return Err(ReadMigrationsError::TooLarge);
        }
    }
    read_migrations(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pack(entries: &[(&str, &str)], dirs: &[&str]) -> Vec<u8> {
        let mut archive = tar::Builder::new(flate2::write::GzEncoder::new(
            Vec::new(),
            flate2::Compression::default(),
        ));
        for dir in dirs {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(tar::EntryType::Directory);
            header.set_size(0);
            header.set_mode(0o755);
            archive.append_data(&mut header, dir, io::empty()).unwrap();
        }
        for (name, body) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_size(body.len() as u64);
            header.set_mode(0o644);
            archive
                .append_data(&mut header, name, body.as_bytes())
                .unwrap();
        }
        archive.into_inner().unwrap().finish().unwrap()
    }

    #[test]
    fn files_at_the_top_become_migrations() {
        let bytes = pack(
            &[
                ("./0002_b.sql", "create table b (id int);"),
                ("0001_a.sql", "create table a (id int);"),
                ("0001_a.down.sql", "drop table a;"),
            ],
            &["./"],
        );
        let migrations = read_migrations(&bytes).unwrap();
        assert_eq!(migrations.len(), 2);
        assert_eq!(migrations[0].file, "0001_a.sql");
        assert!(migrations[0].down.is_some());
    }

    #[test]
    fn a_directory_inside_and_a_bad_name_are_both_reported() {
        let bytes = pack(
            &[
                ("0001_a.sql", "select 1;"),
                ("old/0001_x.sql", "select 1;"),
                ("0002_B.sql", "x"),
            ],
            &["old"],
        );
        let error = read_migrations(&bytes).unwrap_err().to_string();
        assert!(error.contains("old/: a directory"), "{error}");
        assert!(
            error.contains("0002_B.sql: not a migration name"),
            "{error}"
        );
    }

    #[test]
    fn bytes_that_are_no_archive_say_so() {
        let error = read_migrations(b"hello").unwrap_err();
        assert!(
            matches!(error, ReadMigrationsError::NotAnArchive(_)),
            "{error}"
        );
    }
}
