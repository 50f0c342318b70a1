//! Times an environment database's backup and restore as a deployment takes them
//! (`server::envdb`): the sample's migrations applied, the database filled to a size, then
//! pg_dump streamed into the artifact storage (hashed on the way) and the rebuild-and-swap
//! restore (bytes checked first). A bare `pg_dump > /dev/null` is timed too: the floor.
//! Run by `.ci/bench-envdb`.
//!
//!   envdb_bench <admin URL> <database name> <migrations dir> <target MB> <artifact dir>

use domain::definition::DatabaseTarget;
use domain::envdb::{BackupId, DatabaseBackup};
use domain::environment::EnvironmentId;
use domain::run::artifacts::LocalDisk;
use server::envdb::{EnvironmentDatabases, PgTools};
use std::time::Instant;

/// Rows per insert while filling: big enough to be quick, small enough to stop near the target.
const BATCH: i64 = 50_000;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, admin, name, dir, target_mb, artifacts] = args.as_slice() else {
        anyhow::bail!(
            "usage: envdb_bench <admin URL> <database> <migrations dir> <target MB> <artifact dir>"
        );
    };
    let target_bytes: i64 = target_mb.parse::<i64>()? * 1024 * 1024;
    let dbs = EnvironmentDatabases::new(admin, LocalDisk::new(artifacts)?)?;
    let db = dbs.resolve(&DatabaseTarget::Name(name.clone()))?;
    dbs.ensure_exists(&db).await?;

    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        files.push((
            entry.file_name().to_string_lossy().into_owned(),
            std::fs::read(entry.path())?,
        ));
    }
    let migrations = domain::envdb::migration::check(files)?;
    dbs.apply(&db, &migrations).await?;

    let mut conn = db.url.connect().await?;
    let started = Instant::now();
    let mut next = 0i64;
    loop {
        let size: i64 = sqlx::query_scalar("select pg_database_size(current_database())")
            .fetch_one(&mut conn)
            .await?;
        if size >= target_bytes {
            break;
        }
        sqlx::query(
            "insert into study_session (subject, topic, starts_at, duration_minutes, notes, completed_at, remind_minutes_before)
             select 'subject ' || (i % 40), 'topic ' || md5(i::text),
                    timestamptz '2026-01-01' + i * interval '7 minutes', 5 + i % 120,
                    md5(i::text) || ' ' || md5((i * 7)::text) || ' ' || md5((i * 13)::text),
                    case when i % 3 = 0 then timestamptz '2026-01-01' + i * interval '7 minutes' end,
                    case when i % 4 = 0 then 15 end
             from generate_series($1::bigint, $1::bigint + $2::bigint - 1) as i",
        )
        .bind(next)
        .bind(BATCH)
        .execute(&mut conn)
        .await?;
        next += BATCH;
    }
    sqlx::raw_sql("vacuum analyze study_session")
        .execute(&mut conn)
        .await?;
    let size: i64 = sqlx::query_scalar("select pg_database_size(current_database())")
        .fetch_one(&mut conn)
        .await?;
    let rows: i64 = sqlx::query_scalar("select count(*) from study_session")
        .fetch_one(&mut conn)
        .await?;
    let major: String = sqlx::query_scalar("select current_setting('server_version_num')")
        .fetch_one(&mut conn)
        .await?;
    drop(conn);
    let mb = |bytes: i64| bytes as f64 / 1024.0 / 1024.0;
    println!(
        "database      {:.1} MB, {rows} rows in study_session (filled in {:.1} s)",
        mb(size),
        started.elapsed().as_secs_f64()
    );

    let tools = PgTools::locate(major.parse::<u32>()? / 10_000).await?;
    let (uri, _) = db.url.for_libpq();
    let bare = Instant::now();
    let status = std::process::Command::new(&tools.pg_dump)
        .args([
            "--format=custom",
            "--no-password",
            &format!("--dbname={uri}"),
        ])
        .stdout(std::process::Stdio::null())
        .status()?;
    anyhow::ensure!(status.success(), "bare pg_dump failed");
    let bare = bare.elapsed().as_secs_f64();

    let backup_started = Instant::now();
    let taken = dbs.backup(&db).await?;
    let backup_s = backup_started.elapsed().as_secs_f64();
    println!(
        "pg_dump bare  {bare:.2} s (custom format to /dev/null; {})",
        tools.version
    );
    println!(
        "backup        {backup_s:.2} s → {:.1} MB stored, sha256 {}… ({:.0} MB/s of database)",
        mb(taken.size_bytes),
        &taken.sha256[..12],
        mb(size) / backup_s
    );

    let backup = DatabaseBackup {
        id: BackupId(uuid::Uuid::new_v4()),
        environment_id: EnvironmentId(uuid::Uuid::nil()),
        deployment_id: None,
        purpose: taken.purpose,
        database_name: taken.database_name.clone(),
        storage_key: taken.storage_key.clone(),
        sha256: taken.sha256.clone(),
        size_bytes: taken.size_bytes,
        schema_version: taken.schema_version,
        tables: taken.tables.clone(),
        pg_dump_version: taken.pg_dump_version.clone(),
        created_at: chrono::Utc::now(),
    };
    let restore_started = Instant::now();
    dbs.restore(&db, &backup).await?;
    let restore_s = restore_started.elapsed().as_secs_f64();
    let mut conn = db.url.connect().await?;
    let restored: i64 = sqlx::query_scalar("select count(*) from study_session")
        .fetch_one(&mut conn)
        .await?;
    anyhow::ensure!(
        restored == rows,
        "restored {restored} rows, expected {rows}"
    );
    println!(
        "restore       {restore_s:.2} s (sha256 check, pg_restore into a new database, swap; {restored} rows back)"
    );
    Ok(())
}
