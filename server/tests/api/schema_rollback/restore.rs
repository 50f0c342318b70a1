//! Rolling back without down scripts (the pre-deploy backup restored, or impossible) and with
//! `restore_database: false`.

use super::*;
use crate::envdb::drop_database;

#[tokio::test]
async fn without_a_down_script_the_pre_deploy_backup_comes_back() {
    let setup = Setup::new().await;
    let previous = release(&[]);
    let release_n = release(&[("0004_create_study_goal.sql", GOAL)]);
    let backup = deploy_n(&setup, &previous, &release_n).await;
    write_after_deploy(&setup).await;

    let inputs = PlanSchemaRollback {
        db: &setup.db,
        target: &previous,
        current: &release_n,
        backup: Some(&backup),
        restore_database: true,
    };
    let preview = setup.dbs.plan_schema_rollback(inputs).await.unwrap();
    assert_eq!(
        preview.plan,
        SchemaRollbackPlan::RestoreBackup {
            backup: backup.clone()
        }
    );
    // Without a backup it cannot be done, and says why before anything changes.
    let without = setup
        .dbs
        .plan_schema_rollback(PlanSchemaRollback {
            backup: None,
            ..inputs
        })
        .await
        .unwrap();
    let SchemaRollbackPlan::Impossible { why } = &without.plan else {
        panic!("impossible expected, got {:?}", without.plan);
    };
    assert!(
        why.starts_with("0004_create_study_goal.sql has no down script"),
        "{why}"
    );
    let rollback = rollback_deployment(&setup).await;
    let error = setup
        .dbs
        .roll_back_schema(
            &setup.pool,
            step(&setup, rollback, &previous, &release_n, None),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(error, SchemaRollbackError::Impossible { .. }),
        "{error}"
    );
    assert_eq!(safety_dumps(&setup.pool).await, 0, "nothing was dumped");

    let done = setup
        .dbs
        .roll_back_schema(
            &setup.pool,
            step(&setup, rollback, &previous, &release_n, Some(&backup)),
        )
        .await
        .unwrap();
    assert!(done.undone.is_empty());
    assert_eq!(done.plan, preview.plan);
    // The backup's schema and data: release N-1's tables, the 3 sessions from before the deploy.
    let mut app = setup.app().await;
    assert_eq!(versions(&mut app).await, [1, 2, 3]);
    assert!(!exists(&mut app, "study_goal").await);
    let subjects: Vec<String> =
        sqlx::query_scalar("select subject from study_session order by subject")
            .fetch_all(&mut app)
            .await
            .unwrap();
    assert_eq!(subjects, ["before 1", "before 2", "before 3"]);
    let notes: Option<String> =
        sqlx::query_scalar("select notes from study_session where subject = 'before 1'")
            .fetch_one(&mut app)
            .await
            .unwrap();
    assert_eq!(notes, None, "the update after the deploy is undone");
    app.close().await.unwrap();

    // What was written since is in the safety dump, and counted in the outcome.
    assert_eq!(
        done.written_since_deploy(),
        "since the deploy: 5 rows inserted in study_goal (a new table); \
         2 rows inserted, 1 row updated in study_session"
    );
    let safety = done.safety_dump.expect("a safety dump");
    let elsewhere = other_database(&setup).await;
    setup.dbs.restore(&elsewhere, &safety).await.unwrap();
    let mut kept = elsewhere.url.connect().await.unwrap();
    assert_eq!(count(&mut kept, "study_goal").await, 5);
    assert_eq!(count(&mut kept, "study_session").await, 5);
    kept.close().await.unwrap();
    drop_other(&elsewhere).await;

    // Again: the restore is not repeated (the rows written after it stay).
    let mut app = setup.app().await;
    write(&mut app, "insert into study_session (subject, starts_at, duration_minutes) values ('later', now(), 30)").await;
    let again = setup
        .dbs
        .roll_back_schema(
            &setup.pool,
            step(&setup, rollback, &previous, &release_n, Some(&backup)),
        )
        .await
        .unwrap();
    assert!(matches!(again.plan, SchemaRollbackPlan::LeaveAlone { .. }));
    assert!(again.safety_dump_reused);
    assert_eq!(count(&mut app, "study_session").await, 4);
    assert_eq!(safety_dumps(&setup.pool).await, 1);
    app.close().await.unwrap();
    drop_database(&setup).await;
}

#[tokio::test]
async fn with_restore_database_false_nothing_changes() {
    let setup = Setup::new().await;
    let previous = release(&[]);
    let release_n = release(&[
        ("0004_create_study_goal.sql", GOAL),
        ("0004_create_study_goal.down.sql", GOAL_DOWN),
    ]);
    let backup = deploy_n(&setup, &previous, &release_n).await;
    write_after_deploy(&setup).await;
    let rollback = rollback_deployment(&setup).await;
    let done = setup
        .dbs
        .roll_back_schema(
            &setup.pool,
            RollBackSchema {
                restore_database: false,
                ..step(&setup, rollback, &previous, &release_n, Some(&backup))
            },
        )
        .await
        .unwrap();
    assert_eq!(
        done.plan,
        SchemaRollbackPlan::LeaveAlone {
            why: "restore_database: false leaves the schema as it is".into()
        }
    );
    assert_eq!(
        done.plan.describe(),
        "the database is left as it is: restore_database: false leaves the schema as it is"
    );
    assert!(done.safety_dump.is_none() && done.undone.is_empty());
    assert_eq!(
        (done.schema_version_before, done.schema_version_after),
        (Some(4), Some(4))
    );
    let mut app = setup.app().await;
    assert_eq!(versions(&mut app).await, [1, 2, 3, 4]);
    assert_eq!(count(&mut app, "study_goal").await, 5);
    assert_eq!(safety_dumps(&setup.pool).await, 0);
    app.close().await.unwrap();
    drop_database(&setup).await;
}
