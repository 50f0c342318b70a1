//! Environment databases on a real cluster: the sample's own migrations packed as its db-schema
//! artifact, applied as its own tool applies them (checked by running that tool), a failing
//! migration restored from its backup, and a tampered backup refused.

use crate::helpers::{SAMPLE, fresh_database, url_of};
use domain::audit::{Actor, Origin};
use domain::definition::DatabaseTarget;
use domain::envdb::{DatabaseBackup, Migration, backup as backups};
use domain::environment::{Acting, EnvironmentId};
use domain::run::artifacts::{ArtifactStorage, LocalDisk};
use futures::StreamExt;
use server::envdb::{
    DumpError, EnvDatabase, EnvironmentDatabases, Migrate, MigrateError, read_migrations,
};
use sqlx::{Connection, PgConnection, PgPool};
use std::path::{Path, PathBuf};
use std::process::Command;

const SAMPLE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/studybuddy");

/// A Flightdeck database with the sample loaded, an artifact store, and one environment
/// database (not yet created) named for this test.
pub(crate) struct Setup {
    pub(crate) pool: PgPool,
    pub(crate) storage_dir: PathBuf,
    pub(crate) dbs: EnvironmentDatabases<LocalDisk>,
    pub(crate) staging: EnvironmentId,
    pub(crate) db: EnvDatabase,
}

impl Setup {
    pub(crate) async fn new() -> Setup {
        let options = fresh_database().await;
        let pool = PgPool::connect_with(options.clone()).await.unwrap();
        domain::project::load_definition(
            &pool,
            domain::project::DefinitionUpload {
                source: SAMPLE,
                origin_label: "examples/studybuddy/flightdeck.yml",
                expected_project: None,
            },
            &Acting::Operator {
                name: "test".into(),
            },
            Actor::system(),
            &Origin::default(),
        )
        .await
        .expect("the sample loads");
        let mut conn = pool.acquire().await.unwrap();
        let staging = domain::environment::find(&mut conn, "studybuddy", "staging")
            .await
            .unwrap();
        assert_eq!(
            staging.database,
            Some(DatabaseTarget::Name("studybuddy_staging".into()))
        );
        let storage_dir = std::env::temp_dir().join(format!(
            "flightdeck-envdb-{}",
            uuid::Uuid::new_v4().simple()
        ));
        let dbs =
            EnvironmentDatabases::new(&url_of(&options), LocalDisk::new(&storage_dir).unwrap())
                .unwrap();
        // Tests share the cluster: each gets its own database rather than the sample's name.
        let name = format!(
            "studybuddy_t{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let db = dbs.resolve(&DatabaseTarget::Name(name)).unwrap();
        Setup {
            pool,
            storage_dir,
            dbs,
            staging: staging.id,
            db,
        }
    }

    pub(crate) fn step<'a>(&'a self, migrations: &'a [Migration]) -> Migrate<'a> {
        Migrate {
            environment: self.staging,
            deployment: None,
            db: &self.db,
            migrations,
            backup: true,
        }
    }

    pub(crate) async fn app(&self) -> PgConnection {
        self.db.url.connect().await.unwrap()
    }

    /// The libpq URL the app's own tool is given.
    fn app_url(&self) -> String {
        self.db.url.for_libpq().0
    }
}

/// `dir`'s files as a gzipped tar, as a runner packs a directory artifact.
pub(crate) fn pack(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut archive = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::default(),
    ));
    for (name, bytes) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        archive.append_data(&mut header, name, &bytes[..]).unwrap();
    }
    archive.into_inner().unwrap().finish().unwrap()
}

pub(crate) fn sample_files() -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(SAMPLE_DIR).join("db/migrations");
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().into_string().unwrap(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

/// The sample's tool, runnable: its own node_modules, or a copy installed once with `npm ci`.
fn studybuddy_dir() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let sample = PathBuf::from(SAMPLE_DIR);
        if sample.join("node_modules/pg").is_dir() {
            return sample;
        }
        let copy =
            std::env::temp_dir().join(format!("flightdeck-envdb-sample-{}", std::process::id()));
        std::fs::create_dir_all(copy.join("scripts")).unwrap();
        std::fs::create_dir_all(copy.join("src")).unwrap();
        for file in [
            "package.json",
            "package-lock.json",
            "scripts/migrate.mjs",
            "src/migrations.mjs",
        ] {
            std::fs::copy(sample.join(file), copy.join(file)).unwrap();
        }
        let npm = Command::new("npm")
            .args([
                "ci",
                "--omit=dev",
                "--prefer-offline",
                "--no-audit",
                "--no-fund",
                "--loglevel=error",
            ])
            .current_dir(&copy)
            .output()
            .expect("npm runs (the sample's tool needs its `pg` package)");
        assert!(
            npm.status.success(),
            "npm ci: {}",
            String::from_utf8_lossy(&npm.stderr)
        );
        copy
    })
    .clone()
}

/// Runs the sample's `scripts/migrate.mjs` with `args`; returns its stdout.
fn sample_tool(url: &str, dir: Option<&Path>, args: &[&str]) -> String {
    let tool = studybuddy_dir();
    let mut cmd = Command::new("node");
    cmd.arg(tool.join("scripts/migrate.mjs"))
        .args(["--database-url", url])
        .args(args)
        .current_dir(&tool);
    let sample = Path::new(SAMPLE_DIR).join("db/migrations");
    cmd.arg("--dir").arg(dir.unwrap_or(&sample));
    let out = cmd.output().expect("node runs");
    assert!(
        out.status.success(),
        "migrate.mjs {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub(crate) async fn schema_migration(
    conn: &mut PgConnection,
) -> Vec<(i32, String, String, chrono::DateTime<chrono::Utc>)> {
    sqlx::query_as(
        "select version, name, sha256, applied_at from schema_migration order by version",
    )
    .fetch_all(conn)
    .await
    .unwrap()
}

pub(crate) async fn stored_bytes(storage: &LocalDisk, key: &str) -> Vec<u8> {
    let mut body = storage.get(key).await.unwrap();
    let mut bytes = Vec::new();
    while let Some(chunk) = body.next().await {
        bytes.extend_from_slice(&chunk.unwrap());
    }
    bytes
}

pub(crate) async fn drop_database(setup: &Setup) {
    let mut admin = setup
        .db
        .url
        .with_database("postgres")
        .connect()
        .await
        .unwrap();
    sqlx::raw_sql(&format!(
        "drop database if exists {} with (force)",
        setup.db.name
    ))
    .execute(&mut admin)
    .await
    .unwrap();
    let _ = std::fs::remove_dir_all(&setup.storage_dir);
}

#[tokio::test]
async fn the_samples_migrations_apply_once_and_its_own_tool_agrees() {
    let setup = Setup::new().await;
    let migrations = read_migrations(&pack(&sample_files())).unwrap();
    assert_eq!(
        migrations
            .iter()
            .map(|m| m.file.as_str())
            .collect::<Vec<_>>(),
        [
            "0001_create_study_session.sql",
            "0002_add_session_reminder.sql",
            "0003_index_completed_session.sql"
        ]
    );

    let migrated = setup
        .dbs
        .migrate_with_backup(&setup.pool, setup.step(&migrations))
        .await
        .unwrap();
    assert_eq!(migrated.applied.len(), 3);
    let outcome = migrated.outcome();
    assert_eq!(
        outcome["applied"][0]["file"],
        "0001_create_study_session.sql"
    );
    let backup = migrated
        .backup
        .expect("a backup before the first migrations");
    assert_eq!(backup.schema_version, None, "the database was empty");

    let mut app = setup.app().await;
    let rows = schema_migration(&mut app).await;
    for (row, m) in rows.iter().zip(&migrations) {
        assert_eq!((row.0, &row.1, &row.2), (m.version, &m.name, &m.sha256));
    }
    sqlx::query("insert into study_session (subject, starts_at, duration_minutes, remind_minutes_before) values ('maths', now(), 30, 10)")
        .execute(&mut app)
        .await
        .expect("the tables the migrations make exist");

    // The app's own tool sees every migration applied, and has nothing to apply.
    let status = sample_tool(&setup.app_url(), None, &["--status"]);
    assert_eq!(
        status
            .lines()
            .filter(|l| l.starts_with("applied  "))
            .count(),
        3,
        "{status}"
    );
    assert!(!status.contains("pending"), "{status}");
    let again = sample_tool(&setup.app_url(), None, &[]);
    assert!(
        again.contains("nothing to apply; the database is at version 3"),
        "{again}"
    );

    // Migrating again applies nothing and takes no backup.
    let again = setup
        .dbs
        .migrate_with_backup(&setup.pool, setup.step(&migrations))
        .await
        .unwrap();
    assert!(again.applied.is_empty() && again.backup.is_none());
    assert_eq!(schema_migration(&mut app).await, rows);

    // A migration the app's tool applies (a newer release) is then not pending for Flightdeck.
    let mut files = sample_files();
    files.push((
        "0004_add_topic_index.sql".into(),
        b"create index study_session_topic on study_session (topic);\n".to_vec(),
    ));
    let dir = setup.storage_dir.join("release-2");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, bytes) in &files {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    let applied = sample_tool(&setup.app_url(), Some(&dir), &[]);
    assert!(applied.contains("applied 1 migration(s)"), "{applied}");
    let release_2 = read_migrations(&pack(&files)).unwrap();
    assert!(
        setup
            .dbs
            .pending(&setup.db, &release_2)
            .await
            .unwrap()
            .is_empty()
    );

    // An applied migration edited afterwards is refused, as the app's tool refuses it.
    let mut edited = sample_files();
    edited
        .iter_mut()
        .find(|(name, _)| name == "0002_add_session_reminder.sql")
        .unwrap()
        .1
        .extend_from_slice(b"-- edited\n");
    edited.push(files.last().unwrap().clone());
    let edited = read_migrations(&pack(&edited)).unwrap();
    let error = setup
        .dbs
        .pending(&setup.db, &edited)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("0002_add_session_reminder.sql was changed after it was applied"),
        "{error}"
    );
    app.close().await.unwrap();
    drop_database(&setup).await;
}

#[tokio::test]
async fn a_failing_migration_names_its_line_and_the_backup_is_restored() {
    let setup = Setup::new().await;
    let first = read_migrations(&pack(&sample_files())).unwrap();
    setup
        .dbs
        .migrate_with_backup(&setup.pool, setup.step(&first))
        .await
        .unwrap();
    let mut app = setup.app().await;
    for subject in ["maths", "physics", "history"] {
        sqlx::query("insert into study_session (subject, starts_at, duration_minutes) values ($1, now(), 45)")
            .bind(subject)
            .execute(&mut app)
            .await
            .unwrap();
    }
    let before = schema_migration(&mut app).await;

    let mut files = sample_files();
    files.push((
        "0004_add_streak_goal.sql".into(),
        b"-- A weekly goal for the streak.\nalter table study_session\n    add colum goal integer;\n".to_vec(),
    ));
    let release = read_migrations(&pack(&files)).unwrap();
    // As the deployer calls it: from a spawned task.
    let (dbs, pool, db, staging) = (
        setup.dbs.clone(),
        setup.pool.clone(),
        setup.db.clone(),
        setup.staging,
    );
    let error = tokio::spawn(async move {
        let step = Migrate {
            environment: staging,
            deployment: None,
            db: &db,
            migrations: &release,
            backup: true,
        };
        dbs.migrate_with_backup(&pool, step).await
    })
    .await
    .unwrap()
    .unwrap_err();
    let message = error.to_string();
    let MigrateError::Failed {
        failure,
        backup: Some(backup),
    } = error
    else {
        panic!("expected a restored failure, got {message}");
    };
    assert_eq!(failure.file, "0004_add_streak_goal.sql");
    assert_eq!(failure.line, Some(3), "{message}");
    assert!(failure.message.contains("syntax error"), "{message}");
    assert!(
        message.starts_with("migration 0004_add_streak_goal.sql, line 3: syntax error"),
        "{message}"
    );
    assert!(
        message.ends_with(&format!("restored from backup {}", &backup.sha256[..12])),
        "{message}"
    );

    // The backup is recorded, and its stored bytes are what the record says.
    let mut conn = setup.pool.acquire().await.unwrap();
    let recorded = backups::find(&mut conn, backup.id).await.unwrap().unwrap();
    assert_eq!(recorded, backup);
    assert_eq!(recorded.environment_id, setup.staging);
    assert_eq!(recorded.schema_version, Some(3));
    assert!(
        recorded
            .tables
            .iter()
            .any(|t| t.table == "public.study_session")
    );
    let storage = LocalDisk::new(&setup.storage_dir).unwrap();
    let bytes = stored_bytes(&storage, &recorded.storage_key).await;
    assert_eq!(
        domain::envdb::migration::sha256_hex(&bytes),
        recorded.sha256
    );
    assert_eq!(bytes.len() as i64, recorded.size_bytes);
    assert!(
        bytes.starts_with(b"PGDMP"),
        "a pg_dump custom-format archive"
    );

    // The rows written before are intact and schema_migration is unchanged. The restore
    // replaced the database, ending the app's connection.
    assert!(
        sqlx::query("select 1").execute(&mut app).await.is_err(),
        "the old connection was ended"
    );
    let mut app = setup.app().await;
    let subjects: Vec<String> =
        sqlx::query_scalar("select subject from study_session order by subject")
            .fetch_all(&mut app)
            .await
            .unwrap();
    assert_eq!(subjects, ["history", "maths", "physics"]);
    assert_eq!(schema_migration(&mut app).await, before);
    app.close().await.unwrap();
    drop_database(&setup).await;
}

#[tokio::test]
async fn a_restore_brings_back_exactly_the_backup_and_refuses_tampered_bytes() {
    let setup = Setup::new().await;
    let migrations = read_migrations(&pack(&sample_files())).unwrap();
    setup.dbs.ensure_exists(&setup.db).await.unwrap();
    setup.dbs.apply(&setup.db, &migrations).await.unwrap();
    let mut app = setup.app().await;
    sqlx::query("insert into study_session (subject, starts_at, duration_minutes) values ('maths', now(), 30)")
        .execute(&mut app)
        .await
        .unwrap();
    let taken = setup.dbs.backup(&setup.db).await.unwrap();
    let mut conn = setup.pool.acquire().await.unwrap();
    let backup: DatabaseBackup = backups::insert(&mut conn, setup.staging, None, &taken)
        .await
        .unwrap();

    // Afterwards: a new table, another row, and a connection left open.
    sqlx::raw_sql("create table later (id int); insert into study_session (subject, starts_at, duration_minutes) values ('art', now(), 30)")
        .execute(&mut app)
        .await
        .unwrap();

    // Tampered bytes are refused, and the database is left as it is.
    let path = setup.storage_dir.join(&backup.storage_key);
    let original = std::fs::read(&path).unwrap();
    let mut tampered = original.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 0xff;
    std::fs::write(&path, &tampered).unwrap();
    let error = setup.dbs.restore(&setup.db, &backup).await.unwrap_err();
    assert!(matches!(error, DumpError::Tampered { .. }), "{error}");
    assert!(
        error.to_string().contains("was changed after it was taken"),
        "{error}"
    );
    let count: i64 = sqlx::query_scalar("select count(*) from study_session")
        .fetch_one(&mut app)
        .await
        .unwrap();
    assert_eq!(count, 2, "nothing was restored");

    std::fs::write(&path, &original).unwrap();
    setup.dbs.restore(&setup.db, &backup).await.unwrap();
    let mut app = setup.app().await;
    let subjects: Vec<String> = sqlx::query_scalar("select subject from study_session")
        .fetch_all(&mut app)
        .await
        .unwrap();
    assert_eq!(subjects, ["maths"]);
    let later: Option<String> = sqlx::query_scalar("select to_regclass('later')::text")
        .fetch_one(&mut app)
        .await
        .unwrap();
    assert_eq!(later, None, "a table made after the backup is gone");
    // The restored database is a usable app database: the trigger from 0001 still works.
    sqlx::query("update study_session set notes = 'x'")
        .execute(&mut app)
        .await
        .unwrap();
    app.close().await.unwrap();
    drop_database(&setup).await;
}

#[tokio::test]
async fn applying_waits_for_the_apps_own_migration_lock() {
    let setup = Setup::new().await;
    let migrations = read_migrations(&pack(&sample_files())).unwrap();
    setup.dbs.ensure_exists(&setup.db).await.unwrap();
    // The app's tool holds its lock (as `migrate.mjs` does inside its transaction).
    let mut holder = setup.app().await;
    sqlx::query("select pg_advisory_lock(hashtext($1))")
        .bind(domain::envdb::tracking::LOCK_KEY)
        .execute(&mut holder)
        .await
        .unwrap();
    let dbs = setup.dbs.clone();
    let db = setup.db.clone();
    let applying = tokio::spawn(async move { dbs.apply(&db, &migrations).await });
    // Flightdeck's transaction shows up waiting on that advisory lock.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let waiting: bool = sqlx::query_scalar(
            "select exists(select 1 from pg_locks where locktype = 'advisory' and not granted)",
        )
        .fetch_one(&mut holder)
        .await
        .unwrap();
        if waiting {
            break;
        }
        assert!(
            !applying.is_finished(),
            "applied without waiting for the app's lock"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "never waited on the lock"
        );
        tokio::task::yield_now().await;
    }
    sqlx::query("select pg_advisory_unlock_all()")
        .execute(&mut holder)
        .await
        .unwrap();
    assert_eq!(applying.await.unwrap().unwrap().len(), 3);
    holder.close().await.unwrap();
    drop_database(&setup).await;
}
