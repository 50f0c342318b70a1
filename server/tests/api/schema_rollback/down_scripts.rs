//! Rolling back by down scripts: release N undone, the safety dump keeping what was written
//! since; a retry; a broken script; and the sample's own down scripts, schema for schema.

use super::*;
use crate::envdb::{drop_database, stored_bytes};
use domain::run::artifacts::{Retention, sweep};

#[tokio::test]
async fn down_scripts_undo_release_n_and_the_safety_dump_keeps_what_was_written_since() {
    let setup = Setup::new().await;
    let previous = release(&[]);
    let release_n = release(&[
        ("0004_create_study_goal.sql", GOAL),
        ("0004_create_study_goal.down.sql", GOAL_DOWN),
    ]);
    let backup = deploy_n(&setup, &previous, &release_n).await;
    write_after_deploy(&setup).await;

    // The confirm sheet: down scripts, and what was written since the deploy.
    let preview = setup
        .dbs
        .plan_schema_rollback(PlanSchemaRollback {
            db: &setup.db,
            target: &previous,
            current: &release_n,
            backup: Some(&backup),
            restore_database: true,
        })
        .await
        .unwrap();
    assert_eq!(
        preview.plan,
        SchemaRollbackPlan::DownScripts { versions: vec![4] }
    );
    assert_eq!(
        preview.written_since_deploy(),
        "since the deploy: 5 rows inserted in study_goal (a new table); \
         2 rows inserted, 1 row updated in study_session"
    );
    assert!(
        preview.describe().ends_with(
            "; first a safety dump keeps the database as it is (30 days, downloadable from the rollback's page)"
        ),
        "{}",
        preview.describe()
    );
    let mut app = setup.app().await;
    assert_eq!(
        versions(&mut app).await,
        [1, 2, 3, 4],
        "the preview changes nothing"
    );
    app.close().await.unwrap();

    let rollback = rollback_deployment(&setup).await;
    let done = setup
        .dbs
        .roll_back_schema(
            &setup.pool,
            step(&setup, rollback, &previous, &release_n, Some(&backup)),
        )
        .await
        .unwrap();
    assert_eq!(done.plan, preview.plan);
    assert_eq!(done.undone.len(), 1);
    assert_eq!(done.undone[0].file, "0004_create_study_goal.down.sql");
    assert_eq!(
        (done.schema_version_before, done.schema_version_after),
        (Some(4), Some(3))
    );
    assert_eq!(done.written_since_deploy(), preview.written_since_deploy());
    assert!(!done.safety_dump_reused);
    let safety = done.safety_dump.clone().expect("a safety dump");
    assert_eq!(safety.purpose, BackupPurpose::Safety);
    assert_eq!(safety.deployment_id, Some(rollback));
    assert!(safety.kept_until().unwrap() >= safety.created_at + chrono::Duration::days(30));
    let outcome = done.outcome();
    assert_eq!(outcome["safety_dump"]["sha256"], safety.sha256);
    assert_eq!(outcome["plan"]["action"], "down_scripts");

    // Release N-1's schema, its rows kept: 0004's table is gone, the sessions are all there.
    let mut app = setup.app().await;
    assert_eq!(versions(&mut app).await, [1, 2, 3]);
    assert!(!exists(&mut app, "study_goal").await);
    assert_eq!(count(&mut app, "study_session").await, 5);

    // The safety dump is recorded, its bytes are what the record says, and no sweep deletes them.
    let mut conn = setup.pool.acquire().await.unwrap();
    assert_eq!(
        backups::safety_dump(&mut conn, rollback).await.unwrap(),
        Some(safety.clone())
    );
    drop(conn);
    // An artifact past its retention that happens to share the dump's bytes goes; they stay.
    let storage = LocalDisk::new(&setup.storage_dir).unwrap();
    expired_artifact_sharing(&setup, &safety).await;
    let swept = sweep(&setup.pool, &storage, Retention::default())
        .await
        .unwrap();
    assert_eq!(swept, 1);
    let bytes = stored_bytes(&storage, &safety.storage_key).await;
    assert_eq!(domain::envdb::migration::sha256_hex(&bytes), safety.sha256);

    // Restored elsewhere, it holds the rows written after the deploy.
    let elsewhere = other_database(&setup).await;
    setup.dbs.restore(&elsewhere, &safety).await.unwrap();
    let mut kept = elsewhere.url.connect().await.unwrap();
    assert_eq!(count(&mut kept, "study_goal").await, 5);
    assert_eq!(
        count(&mut kept, "study_session where subject like 'after %'").await,
        2
    );
    assert_eq!(versions(&mut kept).await, [1, 2, 3, 4]);
    kept.close().await.unwrap();
    drop_other(&elsewhere).await;

    // A retry (the stage was not recorded before a crash): nothing left to undo, the same
    // safety dump, no second dump, no error.
    let files_before = stored_files(&setup.storage_dir);
    let again = setup
        .dbs
        .roll_back_schema(
            &setup.pool,
            step(&setup, rollback, &previous, &release_n, Some(&backup)),
        )
        .await
        .unwrap();
    assert!(
        matches!(&again.plan, SchemaRollbackPlan::LeaveAlone { .. }),
        "{:?}",
        again.plan
    );
    assert!(again.safety_dump_reused && again.undone.is_empty());
    assert_eq!(again.safety_dump, Some(safety));
    assert_eq!(
        (again.schema_version_before, again.schema_version_after),
        (Some(4), Some(3))
    );
    assert_eq!(again.written_since_deploy(), preview.written_since_deploy());
    assert_eq!(safety_dumps(&setup.pool).await, 1);
    assert_eq!(stored_files(&setup.storage_dir), files_before);
    assert_eq!(versions(&mut app).await, [1, 2, 3]);
    app.close().await.unwrap();
    drop_database(&setup).await;
}

#[tokio::test]
async fn a_broken_down_script_names_its_file_and_line_and_changes_nothing() {
    let setup = Setup::new().await;
    let previous = release(&[]);
    // 0005's down script runs first and works; 0004's fails on line 4, after dropping the table.
    let release_n = release(&[
        ("0004_create_study_goal.sql", GOAL),
        (
            "0004_create_study_goal.down.sql",
            "-- Undoes 0004.\ndrop table study_goal;\n\nalter tabel study_session drop column topic;\n",
        ),
        (
            "0005_add_session_mood.sql",
            "alter table study_session add column mood text;\n",
        ),
        (
            "0005_add_session_mood.down.sql",
            "alter table study_session drop column mood;\n",
        ),
    ]);
    let backup = deploy_n(&setup, &previous, &release_n).await;
    write_after_deploy(&setup).await;
    let rollback = rollback_deployment(&setup).await;
    let error = setup
        .dbs
        .roll_back_schema(
            &setup.pool,
            step(&setup, rollback, &previous, &release_n, Some(&backup)),
        )
        .await
        .unwrap_err();
    let message = error.to_string();
    let SchemaRollbackError::DownScript {
        failure,
        safety_dump,
    } = error
    else {
        panic!("expected a down script failure, got {message}");
    };
    assert_eq!(failure.file, "0004_create_study_goal.down.sql");
    assert_eq!(failure.line, Some(4), "{message}");
    assert!(
        message.starts_with("down script 0004_create_study_goal.down.sql, line 4: syntax error"),
        "{message}"
    );
    assert!(
        message.contains("nothing was undone (the transaction rolled back)"),
        "{message}"
    );
    assert_eq!(safety_dump.deployment_id, Some(rollback));

    // The transaction rolled back: 0005's column and 0004's table are still there.
    let mut app = setup.app().await;
    assert_eq!(versions(&mut app).await, [1, 2, 3, 4, 5]);
    assert_eq!(count(&mut app, "study_goal").await, 5);
    let mood: bool = sqlx::query_scalar(
        "select exists(select 1 from information_schema.columns
                       where table_name = 'study_session' and column_name = 'mood')",
    )
    .fetch_one(&mut app)
    .await
    .unwrap();
    assert!(mood);

    // Resumed once the script is mended: the schema was never changed, so the database is
    // dumped again into the same record (a goal written meanwhile is kept too), the first
    // dump's bytes go, and the scripts run.
    write(
        &mut app,
        "insert into study_goal (minutes_per_week) values (999)",
    )
    .await;
    let files_before = stored_files(&setup.storage_dir);
    let mended = release(&[
        ("0004_create_study_goal.sql", GOAL),
        ("0004_create_study_goal.down.sql", GOAL_DOWN),
        (
            "0005_add_session_mood.sql",
            "alter table study_session add column mood text;\n",
        ),
        (
            "0005_add_session_mood.down.sql",
            "alter table study_session drop column mood;\n",
        ),
    ]);
    let done = setup
        .dbs
        .roll_back_schema(
            &setup.pool,
            step(&setup, rollback, &previous, &mended, Some(&backup)),
        )
        .await
        .unwrap();
    assert_eq!(
        done.undone.iter().map(|u| u.version).collect::<Vec<_>>(),
        [5, 4]
    );
    let retaken = done.safety_dump.clone().unwrap();
    assert_eq!(retaken.id, safety_dump.id);
    assert_ne!(retaken.sha256, safety_dump.sha256);
    assert!(!done.safety_dump_reused);
    assert_eq!(safety_dumps(&setup.pool).await, 1);
    assert_eq!(stored_files(&setup.storage_dir), files_before);
    assert_eq!(
        done.written_since_deploy(),
        "since the deploy: 6 rows inserted in study_goal (a new table); \
         2 rows inserted, 1 row updated in study_session"
    );
    assert_eq!(versions(&mut app).await, [1, 2, 3]);
    app.close().await.unwrap();
    let elsewhere = other_database(&setup).await;
    setup.dbs.restore(&elsewhere, &retaken).await.unwrap();
    let mut kept = elsewhere.url.connect().await.unwrap();
    assert_eq!(count(&mut kept, "study_goal").await, 6);
    kept.close().await.unwrap();
    drop_other(&elsewhere).await;
    drop_database(&setup).await;
}

/// The schema, as `pg_dump --schema-only` prints it (without the random key of its
/// `\restrict` lines).
async fn schema_of(db: &EnvDatabase) -> String {
    let mut conn = db.url.connect().await.unwrap();
    let num: String = sqlx::query_scalar("select current_setting('server_version_num')")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    let tools = PgTools::locate(num.parse::<u32>().unwrap() / 10_000)
        .await
        .unwrap();
    let out = tokio::process::Command::new(&tools.pg_dump)
        .args(["--schema-only", "--no-owner", "--no-password"])
        .arg(format!("--dbname={}", db.url.for_libpq().0))
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn the_samples_down_scripts_bring_back_each_earlier_schema_exactly() {
    let setup = Setup::new().await;
    let all = release(&[]);
    assert!(
        all.iter().all(|m| m.down.is_some()),
        "every sample migration has its undo"
    );
    setup.dbs.ensure_exists(&setup.db).await.unwrap();
    for keep in (0..all.len()).rev() {
        // The database at the newest version, rolled back to `keep` migrations …
        setup.dbs.apply(&setup.db, &all).await.unwrap();
        let target = &all[..keep];
        let done = setup
            .dbs
            .roll_back_schema(
                &setup.pool,
                step(
                    &setup,
                    rollback_deployment(&setup).await,
                    target,
                    &all,
                    None,
                ),
            )
            .await
            .unwrap();
        assert_eq!(done.undone.len(), all.len() - keep);
        // … is the schema a database that only ever had those has.
        let fresh = other_database(&setup).await;
        setup.dbs.apply(&fresh, target).await.unwrap();
        assert_eq!(
            schema_of(&setup.db).await,
            schema_of(&fresh).await,
            "rolled back to {keep} migrations"
        );
        drop_other(&fresh).await;
    }
    drop_database(&setup).await;
}
