//! The database half of a rollback on a real cluster with real pg_dump/pg_restore: the sample's
//! migrations 1..3 applied, a backup, release N's migration 0004 (a new table) applied, rows
//! written, then rolled back — by down scripts (the safety dump holds the rows written since
//! the deploy), by restoring the pre-deploy backup, twice (a retry after the schema changed),
//! with the policy off, and with a broken down script (nothing changes). Here the helpers; the
//! tests in [`down_scripts`] and [`restore`].

mod down_scripts;
mod restore;

use crate::envdb::{Setup, pack, sample_files, schema_migration};
use domain::definition::DatabaseTarget;
use domain::envdb::backup::{self as backups, BackupPurpose};
use domain::envdb::{DatabaseBackup, Migration, SchemaRollbackPlan};
use domain::run::artifacts::LocalDisk;
use server::envdb::{
    EnvDatabase, Migrate, PgTools, PlanSchemaRollback, RollBackSchema, SchemaRollbackError,
    read_migrations,
};
use sqlx::{Connection, PgConnection, PgPool};
use uuid::Uuid;

/// Release N's migration: a new table.
pub(super) const GOAL: &str = "-- A weekly study goal.\ncreate table study_goal (\n    study_goal_id uuid primary key default gen_random_uuid(),\n    minutes_per_week integer not null check (minutes_per_week > 0)\n);\n";
pub(super) const GOAL_DOWN: &str = "-- Undoes 0004.\n\ndrop table study_goal;\n";

/// The sample's migrations plus `extra` files.
pub(super) fn release(extra: &[(&str, &str)]) -> Vec<Migration> {
    let mut files = sample_files();
    files.extend(
        extra
            .iter()
            .map(|(name, sql)| (name.to_string(), sql.as_bytes().to_vec())),
    );
    read_migrations(&pack(&files)).unwrap()
}

/// Runs `sql` on the app's database, then makes that connection's row counters visible to the
/// statistics views before it answers (PostgreSQL flushes them at most once a second otherwise).
pub(super) async fn write(app: &mut PgConnection, sql: &str) {
    sqlx::raw_sql(sql).execute(&mut *app).await.unwrap();
    sqlx::query("select pg_stat_force_next_flush()")
        .execute(&mut *app)
        .await
        .unwrap();
}

pub(super) async fn count(app: &mut PgConnection, table: &str) -> i64 {
    sqlx::query_scalar(&format!("select count(*) from {table}"))
        .fetch_one(app)
        .await
        .unwrap()
}

pub(super) async fn exists(app: &mut PgConnection, table: &str) -> bool {
    sqlx::query_scalar::<_, bool>("select to_regclass($1) is not null")
        .bind(table)
        .fetch_one(app)
        .await
        .unwrap()
}

pub(super) async fn versions(app: &mut PgConnection) -> Vec<i32> {
    schema_migration(app)
        .await
        .into_iter()
        .map(|r| r.0)
        .collect()
}

/// A rollback deployment row (the safety dump is recorded under it), rolling back a deploy.
pub(super) async fn rollback_deployment(setup: &Setup) -> Uuid {
    let rolled = deployment(setup, "deploy").await;
    insert_deployment(setup, "rollback", Some(rolled)).await
}

/// A deployment row of `kind`: a run, a release and a deployment in the sample's staging
/// environment.
pub(super) async fn deployment(setup: &Setup, kind: &str) -> Uuid {
    insert_deployment(setup, kind, None).await
}

async fn insert_deployment(setup: &Setup, kind: &str, rolls_back: Option<Uuid>) -> Uuid {
    sqlx::query_scalar(
        r#"with env as (select project_id from environment where environment_id = $1),
           r as (insert into run (project_id, number, state, definition_version_id, trigger,
                     triggered_by, commit_sha, branch, commit_author, commit_message)
                 select project_id,
                        (select coalesce(max(number), 0) + 1 from run where project_id = env.project_id),
                        'succeeded',
                        (select max(definition_version_id) from definition_version where project_id = env.project_id),
                        'manual', 'test', repeat('a', 40), 'main', 'test', 'test'
                 from env returning run_id, project_id, number),
           rel as (insert into release (project_id, run_id, number, version, commit_sha, branch,
                       commit_author, commit_message, created_at)
                   select project_id, run_id, number, 'v' || number, repeat('a', 40), 'main', 'test', 'test', now()
                   from r returning release_id, project_id, number)
           insert into deployment (project_id, environment_id, number, kind, release_id, state,
               trigger, triggered_by, created_at, rolls_back_id)
           select project_id, $1, number, $2, release_id, 'succeeded', 'manual', 'test', now(), $3
           from rel returning deployment_id"#,
    )
    .bind(setup.staging.0)
    .bind(kind)
    .bind(rolls_back)
    .fetch_one(&setup.pool)
    .await
    .unwrap()
}

/// An artifact of a run, 31 days old and unpinned, stored under `backup`'s key.
pub(super) async fn expired_artifact_sharing(setup: &Setup, backup: &DatabaseBackup) {
    sqlx::raw_sql(&format!(
        r#"with r as (select run_id, project_id from run order by number desc limit 1),
           s as (insert into run_stage (run_id, name, title, position, needs, state)
                 select run_id, 'build', 'Build', 0, '{{}}', 'succeeded' from r returning run_stage_id),
           j as (insert into job (run_id, run_stage_id, name, position, needs, runs_on, state, spec,
                     max_attempts, allow_failure, optional)
                 select r.run_id, s.run_stage_id, 'dump', 0, '{{}}', '{{}}', 'succeeded', '{{}}', 1, false, false
                 from r, s returning job_id)
           insert into artifact (job_id, run_id, project_id, name, kind, file_name, content_type,
               size_bytes, sha256, storage_key, created_at)
           select j.job_id, r.run_id, r.project_id, 'dump', 'report', 'dump.bin',
               'application/octet-stream', {size}, '{sha}', '{key}', now() - interval '31 days'
           from r, j"#,
        size = backup.size_bytes,
        sha = backup.sha256,
        key = backup.storage_key,
    ))
    .execute(&setup.pool)
    .await
    .unwrap();
}

/// Deploys release N-1 (the sample), writes 3 sessions, deploys `release_n` (backing up first)
/// and returns that pre-deploy backup, as the rollback finds it.
pub(super) async fn deploy_n(
    setup: &Setup,
    previous: &[Migration],
    release_n: &[Migration],
) -> DatabaseBackup {
    setup
        .dbs
        .migrate_with_backup(&setup.pool, setup.step(previous))
        .await
        .unwrap();
    let mut app = setup.app().await;
    write(
        &mut app,
        "insert into study_session (subject, starts_at, duration_minutes)
         select 'before ' || n, now(), 30 from generate_series(1, 3) n",
    )
    .await;
    app.close().await.unwrap();
    let deploy = deployment(setup, "deploy").await;
    let migrated = setup
        .dbs
        .migrate_with_backup(
            &setup.pool,
            Migrate {
                deployment: Some(deploy),
                ..setup.step(release_n)
            },
        )
        .await
        .unwrap();
    assert_eq!(migrated.applied.len(), release_n.len() - previous.len());
    let taken = migrated
        .backup
        .expect("a backup before release N's migrations");
    assert_eq!(taken.purpose, BackupPurpose::PreDeploy);
    let mut conn = setup.pool.acquire().await.unwrap();
    let found = backups::pre_deploy(&mut conn, deploy).await.unwrap();
    assert_eq!(found.as_ref(), Some(&taken));
    taken
}

/// After the deploy: 5 goals (the new table), 2 more sessions and 1 session updated.
pub(super) async fn write_after_deploy(setup: &Setup) {
    let mut app = setup.app().await;
    write(
        &mut app,
        "insert into study_goal (minutes_per_week) select 60 * n from generate_series(1, 5) n;
         insert into study_session (subject, starts_at, duration_minutes)
         select 'after ' || n, now(), 45 from generate_series(1, 2) n;
         update study_session set notes = 'revised' where subject = 'before 1'",
    )
    .await;
    app.close().await.unwrap();
}

pub(super) fn step<'a>(
    setup: &'a Setup,
    rollback: Uuid,
    target: &'a [Migration],
    current: &'a [Migration],
    backup: Option<&'a DatabaseBackup>,
) -> RollBackSchema<'a> {
    RollBackSchema {
        environment: setup.staging,
        rollback_deployment: rollback,
        db: &setup.db,
        target,
        current,
        backup,
        restore_database: true,
    }
}

/// Another database on the cluster, for restoring a dump into.
pub(super) async fn other_database(setup: &Setup) -> EnvDatabase {
    let name = format!("restored_{}", &Uuid::new_v4().simple().to_string()[..12]);
    let db = setup.dbs.resolve(&DatabaseTarget::Name(name)).unwrap();
    setup.dbs.ensure_exists(&db).await.unwrap();
    db
}

pub(super) async fn drop_other(db: &EnvDatabase) {
    let mut admin = db.url.with_database("postgres").connect().await.unwrap();
    sqlx::raw_sql(&format!("drop database if exists {} with (force)", db.name))
        .execute(&mut admin)
        .await
        .unwrap();
}

/// How many files the artifact storage holds.
pub(super) fn stored_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => stored_files(&e.path()),
            _ => 1,
        })
        .sum()
}

pub(super) async fn safety_dumps(pool: &PgPool) -> i64 {
    sqlx::query_scalar("select count(*) from database_backup where purpose = 'safety'")
        .fetch_one(pool)
        .await
        .unwrap()
}
