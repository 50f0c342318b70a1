//! A deployment's `flags` stage: the sample's production settings applied to StudyBuddy as one
//! audited change with one snapshot, idempotent, refused whole, and composed into a caller's
//! transaction.
#![cfg(feature = "server")]

mod support;

use std::collections::HashMap;

use domain::audit::{Actor, Origin};
use domain::audit_details::{FieldChange, readable};
use domain::definition::{FlagSetting, StageKind};
use domain::flags::definition::{EnvironmentEdit, FlagName, FlagType, Strategies};
use domain::flags::store::{
    EnvironmentId, FlagError, FlagStore, SettingProblem, SettingsApplied, apply_settings, edit,
};
use domain::flags::{Context, FeatureSet};
use serde_json::{Value, json};
use sqlx::PgPool;
use support::TestDb;

const SAMPLE: &str = include_str!("../../examples/studybuddy/flightdeck.yml");
const REASON: &str = "deployment #12 of 2026.12.03-4: feature-flags";

fn deployer() -> Actor {
    Actor {
        kind: "user",
        id: None,
        name: "dora".into(),
    }
}

/// The sample's `feature-flags` stage: its environment and settings.
fn sample_settings() -> (String, Vec<FlagSetting>) {
    let definition = domain::definition::parse(SAMPLE).expect("the sample parses");
    let stage = definition
        .stage("feature-flags")
        .expect("the sample's stage");
    match &stage.kind {
        StageKind::Flags(flags) => (flags.environment.to_string(), flags.set.clone()),
        other => panic!("feature-flags is {other:?}"),
    }
}

fn setting(flag: &str, enabled: bool, rollout: Option<u8>) -> FlagSetting {
    FlagSetting {
        flag: flag.into(),
        enabled,
        rollout,
    }
}

/// StudyBuddy as the portal loads it from the sample; the ids of its environments by name.
async fn studybuddy(pool: &PgPool) -> HashMap<String, EnvironmentId> {
    domain::project::load_definition(
        pool,
        domain::project::DefinitionUpload {
            source: SAMPLE,
            origin_label: "test",
            expected_project: None,
        },
        &domain::environment::Acting::Operator {
            name: "test".into(),
        },
        Actor::system(),
        &Origin::default(),
    )
    .await
    .expect("the sample loads");
    let rows: Vec<(uuid::Uuid, String)> = sqlx::query_as(
        "select e.environment_id, e.name from environment e join project p using (project_id)
         where p.project_key = 'studybuddy'",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    rows.into_iter()
        .map(|(id, name)| (name, EnvironmentId(id)))
        .collect()
}

async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

async fn snapshots_of(pool: &PgPool, environment: EnvironmentId) -> i64 {
    sqlx::query_scalar("select count(*) from flag_snapshot where environment_id = $1")
        .bind(environment.0)
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn audit(pool: &PgPool) -> Vec<(String, Value)> {
    sqlx::query_as(
        "select target, details from audit_event where action = 'flag.settings_applied'
         order by audit_event_id",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

async fn apply(
    pool: &PgPool,
    environment: EnvironmentId,
    settings: &[FlagSetting],
) -> Result<SettingsApplied, FlagError> {
    let mut tx = pool.begin().await.unwrap();
    let applied = apply_settings(
        &mut tx,
        environment,
        settings,
        deployer(),
        &Origin::default(),
        REASON,
    )
    .await?;
    tx.commit().await.unwrap();
    Ok(applied)
}

fn user(id: &str) -> Context {
    Context {
        user_id: Some(id.into()),
        ..Context::default()
    }
}

/// How many of 10 000 generated users get the flag.
fn users_with(flags: &FeatureSet, flag: &str) -> usize {
    (0..10_000)
        .filter(|i| flags.is_enabled(flag, &user(&format!("student-{i}"))))
        .count()
}

#[tokio::test]
async fn the_samples_production_settings_create_both_flags_in_one_snapshot_and_one_audit_entry() {
    let db = TestDb::new().await;
    let envs = studybuddy(&db.pool).await;
    let (environment, settings) = sample_settings();
    assert_eq!(environment, "production");
    let production = envs["production"];
    let store = FlagStore::new(db.pool.clone());

    let applied = apply(&db.pool, production, &settings).await.unwrap();
    assert!(applied.changed);
    assert_eq!(applied.version, 1);
    assert_eq!(applied.created, ["smart-reminders", "study-streaks"]);
    assert_eq!(snapshots_of(&db.pool, production).await, 1);
    // The new flags appear, off, everywhere else: one snapshot each there too.
    for (name, id) in &envs {
        assert_eq!(snapshots_of(&db.pool, *id).await, 1, "{name}");
        let other = store.current(*id).await.unwrap().state;
        let on: Vec<&str> = other
            .features
            .iter()
            .filter(|f| f.enabled)
            .map(|f| f.name.as_str())
            .collect();
        let expected: &[&str] = if *name == "production" {
            &["smart-reminders", "study-streaks"]
        } else {
            &[]
        };
        assert_eq!(on, expected, "{name}");
    }
    assert_eq!(applied.snapshots.len(), envs.len());
    let flags = store.flags(production).await.unwrap();
    assert!(flags.iter().all(|f| f.flag_type == FlagType::Release));
    assert!(flags.iter().all(|f| f.description.contains(REASON)));

    let entries = audit(&db.pool).await;
    assert_eq!(entries.len(), 1);
    let (target, details) = &entries[0];
    assert_eq!(target, "studybuddy/production");
    assert_eq!(details["reason"], REASON);
    assert_eq!(
        details["created"],
        json!(["smart-reminders", "study-streaks"])
    );
    let shown = readable(details, &HashMap::new());
    assert_eq!(
        shown.changes,
        [
            FieldChange {
                field: "smart-reminders".into(),
                before: "none".into(),
                after: "on for 10 % of users (by userId, else sessionId)".into(),
            },
            FieldChange {
                field: "study-streaks".into(),
                before: "none".into(),
                after: "on for everyone".into(),
            },
        ]
    );
    let reason: String =
        sqlx::query_scalar("select reason from flag_snapshot where environment_id = $1")
            .bind(production.0)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(reason, REASON);

    // What SDKs are served: about a tenth of the students get reminders, everyone streaks.
    let served = FeatureSet::from_client_features(store.current(production).await.unwrap().state);
    let reminded = users_with(&served, "smart-reminders");
    assert!((700..=1300).contains(&reminded), "{reminded} of 10 000");
    assert_eq!(users_with(&served, "study-streaks"), 10_000);

    // A deployer resumed after a crash applies them again: nothing changes.
    let again = apply(&db.pool, production, &settings).await.unwrap();
    assert_eq!(
        again,
        SettingsApplied {
            version: 1,
            changed: false,
            created: Vec::new(),
            snapshots: Vec::new(),
        }
    );
    assert_eq!(
        count(&db.pool, "select count(*) from flag_snapshot").await,
        envs.len() as i64
    );
    assert_eq!(audit(&db.pool).await.len(), 1);
}

#[tokio::test]
async fn settings_for_existing_flags_change_only_that_environment_and_keep_users_in_their_buckets()
{
    let db = TestDb::new().await;
    let envs = studybuddy(&db.pool).await;
    let (production, staging) = (envs["production"], envs["staging"]);
    apply(
        &db.pool,
        production,
        &[
            setting("smart-reminders", true, Some(10)),
            setting("study-streaks", false, None),
        ],
    )
    .await
    .unwrap();
    let staging_snapshots = snapshots_of(&db.pool, staging).await;
    // Someone targets study-streaks by hand meanwhile.
    let beta: Strategies = serde_json::from_value(json!([
        {"name": "userWithId", "parameters": {"userIds": "student-1,student-2"}}
    ]))
    .unwrap();
    let mut tx = db.pool.begin().await.unwrap();
    let name = FlagName::parse("study-streaks").unwrap();
    let edit = EnvironmentEdit::Strategies { strategies: beta };
    edit::apply(
        &mut tx,
        production,
        &name,
        edit,
        deployer(),
        &Origin::default(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let store = FlagStore::new(db.pool.clone());
    let before = FeatureSet::from_client_features(store.current(production).await.unwrap().state);
    let version_before = store.current(production).await.unwrap().version;

    // The next release: reminders to half, streaks off (its targeting kept for later).
    let applied = apply(
        &db.pool,
        production,
        &[
            setting("smart-reminders", true, Some(50)),
            setting("study-streaks", false, None),
        ],
    )
    .await
    .unwrap();
    assert!(applied.changed);
    assert!(applied.created.is_empty());
    assert_eq!(applied.version, version_before + 1);
    assert_eq!(applied.snapshots.len(), 1);
    assert_eq!(snapshots_of(&db.pool, staging).await, staging_snapshots);
    let after = FeatureSet::from_client_features(store.current(production).await.unwrap().state);
    let students: Vec<Context> = (0..10_000).map(|i| user(&format!("student-{i}"))).collect();
    let kept = students
        .iter()
        .filter(|s| before.is_enabled("smart-reminders", s))
        .all(|s| after.is_enabled("smart-reminders", s));
    assert!(
        kept,
        "a student who had reminders at 10 % keeps them at 50 %"
    );
    let half = users_with(&after, "smart-reminders");
    assert!((4500..=5500).contains(&half), "{half} of 10 000");
    let streaks = store.current(production).await.unwrap().state;
    let streaks = streaks
        .features
        .iter()
        .find(|f| f.name == "study-streaks")
        .unwrap();
    assert!(!streaks.enabled);
    assert_eq!(streaks.strategies[0].name, "userWithId");

    // On again for everyone: the hand-made targeting is replaced.
    apply(
        &db.pool,
        production,
        &[setting("study-streaks", true, None)],
    )
    .await
    .unwrap();
    let served = FeatureSet::from_client_features(store.current(production).await.unwrap().state);
    assert_eq!(users_with(&served, "study-streaks"), 10_000);
    let (_, details) = audit(&db.pool).await.pop().unwrap();
    let shown = readable(&details, &HashMap::new());
    assert_eq!(
        shown.changes,
        [FieldChange {
            field: "study-streaks".into(),
            before: "off (when on: users student-1, student-2)".into(),
            after: "on for everyone".into(),
        }]
    );
}

#[tokio::test]
async fn a_setting_that_cannot_be_applied_refuses_them_all_and_writes_nothing() {
    let db = TestDb::new().await;
    let production = studybuddy(&db.pool).await["production"];
    let snapshots = count(&db.pool, "select count(*) from flag_snapshot").await;
    let audited = count(&db.pool, "select count(*) from audit_event").await;

    let error = apply(
        &db.pool,
        production,
        &[
            setting("smart-reminders", true, Some(10)),
            setting("study streaks", true, None),
        ],
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            &error,
            FlagError::BadSetting { flag, problem: SettingProblem::BadName(_) }
                if flag == "study streaks"
        ),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains("`study streaks`"), "{message}");
    assert!(message.contains("not ' '"), "{message}");

    let too_much = apply(&db.pool, production, &[setting("a", true, Some(101))])
        .await
        .unwrap_err();
    assert_eq!(
        too_much.to_string(),
        "cannot set flag `a`: a rollout is 0 to 100 %, not 101 %"
    );
    let twice = apply(
        &db.pool,
        production,
        &[setting("a", true, None), setting("a", false, None)],
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            twice,
            FlagError::BadSetting {
                problem: SettingProblem::Duplicate,
                ..
            }
        ),
        "{twice:?}"
    );
    let nowhere = apply(
        &db.pool,
        EnvironmentId(uuid::Uuid::new_v4()),
        &[setting("a", true, None)],
    )
    .await
    .unwrap_err();
    assert!(
        matches!(nowhere, FlagError::UnknownEnvironment(_)),
        "{nowhere:?}"
    );

    assert_eq!(count(&db.pool, "select count(*) from flag").await, 0);
    assert_eq!(
        count(&db.pool, "select count(*) from flag_snapshot").await,
        snapshots
    );
    assert_eq!(
        count(&db.pool, "select count(*) from audit_event").await,
        audited
    );
}

#[tokio::test]
async fn an_archived_flag_is_refused_before_anything_is_written() {
    let db = TestDb::new().await;
    let production = studybuddy(&db.pool).await["production"];
    apply(&db.pool, production, &[setting("old-feature", true, None)])
        .await
        .unwrap();
    let store = FlagStore::new(db.pool.clone());
    let old = FlagName::parse("old-feature").unwrap();
    store
        .archive("studybuddy", &old, deployer(), &Origin::default())
        .await
        .unwrap();
    let snapshots = count(&db.pool, "select count(*) from flag_snapshot").await;

    let error = apply(
        &db.pool,
        production,
        &[
            setting("smart-reminders", true, None),
            setting("old-feature", true, None),
        ],
    )
    .await
    .unwrap_err();
    assert!(matches!(&error, FlagError::Archived(flag) if flag == "old-feature"));
    assert_eq!(count(&db.pool, "select count(*) from flag").await, 1);
    assert_eq!(
        count(&db.pool, "select count(*) from flag_snapshot").await,
        snapshots
    );
}

#[tokio::test]
async fn settings_applied_in_a_transaction_that_rolls_back_leave_nothing_behind() {
    let db = TestDb::new().await;
    let envs = studybuddy(&db.pool).await;
    let production = envs["production"];
    let (_, settings) = sample_settings();

    let mut tx = db.pool.begin().await.unwrap();
    // The deployment's own row first, then its flags stage, as the engine composes them.
    sqlx::query("update environment set current_release = 'v2' where environment_id = $1")
        .bind(production.0)
        .execute(&mut *tx)
        .await
        .unwrap();
    let applied = apply_settings(
        &mut tx,
        production,
        &settings,
        deployer(),
        &Origin::default(),
        REASON,
    )
    .await
    .unwrap();
    assert_eq!(applied.version, 1);
    let seen: i64 = sqlx::query_scalar("select count(*) from flag")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(seen, 2);
    tx.rollback().await.unwrap();

    assert_eq!(count(&db.pool, "select count(*) from flag").await, 0);
    assert_eq!(
        count(&db.pool, "select count(*) from flag_snapshot").await,
        0
    );
    assert!(audit(&db.pool).await.is_empty());
    let release: Option<String> =
        sqlx::query_scalar("select current_release from environment where environment_id = $1")
            .bind(production.0)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(release, None);

    // Committed the second time, the same call does the whole change.
    let applied = apply(&db.pool, production, &settings).await.unwrap();
    assert_eq!((applied.version, applied.changed), (1, true));
}
