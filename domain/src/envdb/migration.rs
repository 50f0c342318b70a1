//! A release's migrations, as the app's own tool reads them (StudyBuddy's `src/migrations.mjs`):
//! files `NNNN_name.sql` numbered from 0001 without gaps, each with SQL that can run inside the
//! one transaction all pending migrations share. `NNNN_name.down.sql` beside a migration is its
//! undo, run by a rollback (newest first, all in one transaction, so held to the same rules; the
//! app's tool checks them but never runs them).
//!
//! The checksum is the SHA-256 of the file's bytes in lower-case hex — what the app's tool
//! stores in `schema_migration.sha256` — so either tool sees the other's records as its own.

use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::LazyLock;

/// One migration of a release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    pub version: i32,
    /// The words after the number: `create_study_session`.
    pub name: String,
    /// The file it came from: `0001_create_study_session.sql`.
    pub file: String,
    pub sql: String,
    /// SHA-256 of the file's bytes, lower-case hex.
    pub sha256: String,
    /// The SQL of `NNNN_name.down.sql`, when the release has one.
    pub down: Option<String>,
}

impl Migration {
    /// The file of its undo: `0001_create_study_session.down.sql`.
    pub fn down_file(&self) -> String {
        format!("{:04}_{}.down.sql", self.version, self.name)
    }
}

/// What is wrong with a set of migration files: every problem found, each naming its file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the migrations are not usable:\n{}", .problems.join("\n"))]
pub struct MigrationsError {
    pub problems: Vec<String>,
}

/// `0001_create_study_session.sql`, `0001_create_study_session.down.sql`.
static FILE: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(r"^(\d{4})_([a-z0-9]+(?:_[a-z0-9]+)*)(\.down)?\.sql$").expect("valid")
});

/// Statements that cannot run inside the transaction the migrations share (the app's list).
static NOT_IN_A_TRANSACTION: LazyLock<[(regex::Regex, &'static str); 3]> = LazyLock::new(|| {
    let re = |pattern: &str| regex::Regex::new(pattern).expect("valid");
    [
        (
            re(r"(?im)^\s*(begin|start\s+transaction|commit|end|rollback|savepoint|release)\b"),
            "controls the transaction itself",
        ),
        (
            re(r"(?i)\bconcurrently\b"),
            "uses CONCURRENTLY, which cannot run inside a transaction",
        ),
        (
            re(r"(?im)^\s*(vacuum|create\s+database|drop\s+database|alter\s+system)\b"),
            "cannot run inside a transaction",
        ),
    ]
});

/// SHA-256 of `bytes`, lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Checks the files of a migrations directory (`(file name, bytes)`, names relative to the
/// directory; names starting with `.` are ignored) and returns the migrations in version order,
/// or every problem found.
pub fn check(files: Vec<(String, Vec<u8>)>) -> Result<Vec<Migration>, MigrationsError> {
    let mut problems = Vec::new();
    let mut ups: BTreeMap<i32, Migration> = BTreeMap::new();
    let mut downs: Vec<(i32, String, String)> = Vec::new();
    let mut files = files;
    files.sort_by(|a, b| a.0.cmp(&b.0));
    for (file, bytes) in files {
        if file.starts_with('.') {
            continue;
        }
        let Some(found) = FILE.captures(&file) else {
            problems.push(format!(
                "{file}: not a migration name; use NNNN_words.sql (four digits, then lower-case \
                 words joined by _), or NNNN_words.down.sql for its undo"
            ));
            continue;
        };
        let version: i32 = found[1].parse().expect("four digits");
        let name = found[2].to_string();
        let is_down = found.get(3).is_some();
        let sql = match String::from_utf8(bytes) {
            Ok(sql) => sql,
            Err(_) => {
                problems.push(format!("{file}: is not UTF-8 text"));
                continue;
            }
        };
        check_sql(&file, &sql, &mut problems);
        if is_down {
            downs.push((version, name, sql));
            continue;
        }
        if let Some(other) = ups.get(&version) {
            problems.push(format!(
                "{file}: version {:04} is also used by {}",
                version, other.file
            ));
            continue;
        }
        ups.insert(
            version,
            Migration {
                version,
                name,
                sha256: sha256_hex(sql.as_bytes()),
                file,
                sql,
                down: None,
            },
        );
    }
    for (index, migration) in ups.values().enumerate() {
        let expected = index as i32 + 1;
        if migration.version != expected {
            problems.push(format!(
                "{}: expected version {expected:04} here; versions start at 0001 with no gaps",
                migration.file
            ));
        }
    }
    for (version, name, sql) in downs {
        match ups.get_mut(&version) {
            Some(up) if up.name == name => up.down = Some(sql),
            _ => problems.push(format!(
                "{version:04}_{name}.down.sql: undoes a migration the release does not have \
                 ({version:04}_{name}.sql)"
            )),
        }
    }
    let mut seen = std::collections::HashSet::new();
    problems.retain(|p| seen.insert(p.clone()));
    if problems.is_empty() {
        Ok(ups.into_values().collect())
    } else {
        Err(MigrationsError { problems })
    }
}

/// Empty files and statements that cannot share the one transaction.
fn check_sql(file: &str, sql: &str, problems: &mut Vec<String>) {
    let statements = statements_only(sql);
    if statements.trim().is_empty() {
        problems.push(format!("{file}: has no SQL"));
    }
    for (pattern, why) in NOT_IN_A_TRANSACTION.iter() {
        if pattern.is_match(&statements) {
            problems.push(format!("{file}: {why}"));
        }
    }
}

/// SQL without comments, string literals and dollar-quoted bodies (a plpgsql `begin … end` is
/// not a transaction), so the checks above see only statements.
fn statements_only(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some(c) = rest.chars().next() {
        if let Some(after) = rest.strip_prefix("/*") {
            rest = after.find("*/").map_or("", |end| &after[end + 2..]);
            out.push(' ');
        } else if let Some(after) = rest.strip_prefix("--") {
            rest = after.find('\n').map_or("", |end| &after[end..]);
        } else if c == '\'' {
            let mut end = 1;
            loop {
                match rest[end..].find('\'') {
                    Some(i) if rest[end + i + 1..].starts_with('\'') => end += i + 2,
                    Some(i) => break end += i + 1,
                    None => break end = rest.len(),
                }
            }
            rest = &rest[end..];
            out.push_str("''");
        } else if let Some(tag) = dollar_tag(rest) {
            let body = &rest[tag.len()..];
            rest = body.find(tag).map_or("", |end| &body[end + tag.len()..]);
            out.push_str("''");
        } else {
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

/// The `$tag$` (or `$$`) that opens a dollar-quoted string at the start of `sql`.
fn dollar_tag(sql: &str) -> Option<&str> {
    let inner = sql.strip_prefix('$')?;
    let end = inner.find('$')?;
    let tag = &inner[..end];
    let valid = tag
        .chars()
        .enumerate()
        .all(|(i, c)| c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit()));
    valid.then(|| &sql[..end + 2])
}

/// The line (from 1) of a 1-based character position in `sql`, as PostgreSQL reports where an
/// error is (positions count characters, not bytes).
pub fn line_of(sql: &str, position: usize) -> usize {
    1 + sql
        .chars()
        .take(position.saturating_sub(1))
        .filter(|&c| c == '\n')
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(list: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
        list.iter()
            .map(|(f, s)| (f.to_string(), s.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn migrations_come_back_in_order_with_their_undo_and_checksum() {
        let found = check(files(&[
            ("0002_add_b.sql", "alter table a add column b int;"),
            ("0001_create_a.sql", "create table a (id int);"),
            ("0001_create_a.down.sql", "drop table a;"),
            (".keep", ""),
        ]))
        .unwrap();
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].file, "0001_create_a.sql");
        assert_eq!(found[0].down.as_deref(), Some("drop table a;"));
        assert_eq!(found[0].down_file(), "0001_create_a.down.sql");
        assert_eq!(found[1].version, 2);
        assert_eq!(found[1].name, "add_b");
        assert_eq!(found[0].sha256, sha256_hex(b"create table a (id int);"));
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn every_problem_is_reported_with_its_file() {
        let error = check(files(&[
            ("0001_a.sql", "create table a (id int);"),
            ("0001_b.sql", "create table b (id int);"),
            ("0003_c.sql", "-- only a comment\n"),
            ("0004_d.sql", "create index concurrently d on a (id);"),
            ("0005_e.sql", "begin;\ncreate table e (id int);\ncommit;"),
            ("0006_f.down.sql", "drop table f;"),
            ("0001_a.down.sql", "drop table a;\ncommit;"),
            ("Notes.md", "hello"),
        ]))
        .unwrap_err();
        let text = error.problems.join("\n");
        for expected in [
            "0001_b.sql: version 0001 is also used by 0001_a.sql",
            "0003_c.sql: has no SQL",
            "0003_c.sql: expected version 0002 here",
            "0004_d.sql: uses CONCURRENTLY",
            "0005_e.sql: controls the transaction itself",
            "0006_f.down.sql: undoes a migration the release does not have",
            "0001_a.down.sql: controls the transaction itself",
            "Notes.md: not a migration name",
        ] {
            assert!(text.contains(expected), "{expected} missing from:\n{text}");
        }
    }

    #[test]
    fn a_plpgsql_body_and_strings_are_not_statements() {
        let sql = "create function f() returns trigger language plpgsql as $$\nbegin\n  return new;\nend;\n$$;\n\
                   insert into t values ('begin;'); -- commit\n/* rollback */";
        let only = statements_only(sql);
        assert!(!only.contains("begin"), "{only}");
        assert!(!only.contains("commit"), "{only}");
        assert!(!only.contains("rollback"), "{only}");
        assert!(check(files(&[("0001_f.sql", sql)])).is_ok());
        assert_eq!(
            statements_only("select $body$ x $body$, 'it''s', $1"),
            "select '', '', $1"
        );
    }

    #[test]
    fn an_error_position_becomes_the_line_in_the_file() {
        let sql = "-- one\ncreate table x (\n  id int,,\n);";
        let position = sql.chars().position(|c| c == ',').unwrap() + 2;
        assert_eq!(line_of(sql, position), 3);
        assert_eq!(line_of("é\nselect", 3), 2, "positions count characters");
        assert_eq!(line_of(sql, 1), 1);
    }
}
