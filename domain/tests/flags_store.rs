//! The flag store against a real PostgreSQL: changes, their audit entries and snapshots,
//! diffs, restores (also twice, and twice at once), what SDKs would evaluate, and refusals.
//!
//! Each test gets a new database, migrated, on the cluster in `FLIGHTDECK_TEST_DATABASE_URL`
//! (the test command sets it) or else the dev cluster; it is dropped when the test ends.
#![cfg(feature = "server")]

mod support;

use std::time::Duration;

use domain::audit::{Actor, Origin};
use domain::clock::Clock;
use domain::flags::definition::{
    Constraints, FlagDetails, FlagName, FlagNameError, FlagType, InvalidDefinition, NewFlag,
    Strategies, Variants,
};
use domain::flags::model::Dependency;
use domain::flags::store::{
    Applied, DependencyProblem, EnvironmentId, FlagError, FlagStore, NewSegment, state_sha256,
};
use domain::flags::{ClientFeatures, Context, FeatureSet, Restored, SnapshotError, SnapshotQuery};
use serde_json::{Value, json};
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use support::{TestDb, project};
use uuid::Uuid;

/// People acting, for the environment rules.
fn person(name: &str, role: domain::role::Role) -> domain::environment::Acting {
    domain::environment::Acting::Person {
        name: name.into(),
        role,
    }
}

fn manager(name: &str) -> domain::environment::Acting {
    person(name, domain::role::Role::ReleaseManager)
}

fn alice() -> Actor {
    Actor {
        kind: "user",
        id: None,
        name: "alice".into(),
    }
}

fn origin() -> Origin {
    Origin::default()
}

fn name(text: &str) -> FlagName {
    FlagName::parse(text).unwrap()
}

fn release(flag: &str) -> NewFlag {
    NewFlag {
        name: name(flag),
        flag_type: FlagType::Release,
        description: format!("{flag} for everyone"),
        owner: Some("growth".into()),
    }
}

fn strategies(json: Value) -> Strategies {
    Strategies::from_json(json).unwrap()
}

fn variants(json: Value) -> Variants {
    Variants::from_json(json).unwrap()
}

async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

/// The audit entries with this action, oldest first, as (target, details).
async fn audit(pool: &PgPool, action: &str) -> Vec<(String, Value)> {
    sqlx::query_as(
        "select target, details from audit_event where action = $1 order by audit_event_id",
    )
    .bind(action)
    .fetch_all(pool)
    .await
    .unwrap()
}

async fn versions(store: &FlagStore, environment: EnvironmentId) -> Vec<i64> {
    let page = store
        .list_snapshots(environment, SnapshotQuery::default())
        .await
        .unwrap();
    let mut versions: Vec<i64> = page.snapshots.iter().map(|s| s.version).collect();
    versions.reverse();
    versions
}

fn user(id: &str) -> Context {
    Context {
        user_id: Some(id.into()),
        ..Context::default()
    }
}

#[tokio::test]
async fn creating_and_toggling_a_flag_writes_audit_before_after_and_a_new_snapshot_each_time() {
    let db = TestDb::new().await;
    let [staging, production] =
        project(&db.pool, "studybuddy", &["staging", "production"]).await[..]
    else {
        unreachable!()
    };
    let store = FlagStore::new(db.pool.clone());

    let created = store
        .create("studybuddy", release("smart-reminders"), alice(), &origin())
        .await
        .unwrap();
    assert_eq!(created.version_in(staging), Some(1));
    assert_eq!(created.version_in(production), Some(1));
    let entries = audit(&db.pool, "flag.created").await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].0, "studybuddy/smart-reminders");
    assert_eq!(entries[0].1["before"], Value::Null);
    assert_eq!(entries[0].1["after"]["type"], "release");

    let flag = name("smart-reminders");
    let on = store
        .toggle(production, &flag, true, alice(), &origin())
        .await
        .unwrap();
    assert_eq!(on.version_in(production), Some(2));
    assert_eq!(on.version_in(staging), None, "staging did not change");
    let entries = audit(&db.pool, "flag.enabled").await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].0, "studybuddy/production/smart-reminders");
    assert_eq!(entries[0].1["before"]["enabled"], false);
    assert_eq!(entries[0].1["after"]["enabled"], true);
    assert_eq!(entries[0].1["snapshots"][0]["version"], 2);

    let again = store
        .toggle(production, &flag, true, alice(), &origin())
        .await
        .unwrap();
    assert_eq!(again, Applied::Unchanged);
    assert_eq!(audit(&db.pool, "flag.enabled").await.len(), 1);

    let killed = store
        .kill(production, &flag, alice(), &origin())
        .await
        .unwrap();
    assert_eq!(killed.version_in(production), Some(3));
    let entries = audit(&db.pool, "flag.killed").await;
    assert_eq!(entries[0].1["before"]["enabled"], true);
    assert_eq!(entries[0].1["after"]["enabled"], false);

    assert_eq!(versions(&store, production).await, [1, 2, 3]);
    assert_eq!(versions(&store, staging).await, [1]);
    let current = store.current(production).await.unwrap();
    assert_eq!(current.version, 3);
    assert!(!current.state.features[0].enabled);
    assert_eq!(
        current.sha256,
        state_sha256(&current.state),
        "the stored hash is the state's"
    );
    let second = store.snapshot(production, 2).await.unwrap();
    assert!(second.state.features[0].enabled);
    assert_eq!(second.info.reason, "smart-reminders on");
    assert_eq!(second.info.created_by, "alice");
    assert_eq!(
        store.client_features(production).await.unwrap(),
        current.state,
        "the newest snapshot is what the rows say"
    );
}

#[tokio::test]
async fn snapshot_versions_increase_per_environment_independently() {
    let db = TestDb::new().await;
    let [staging, production] =
        project(&db.pool, "studybuddy", &["staging", "production"]).await[..]
    else {
        unreachable!()
    };
    let other = project(&db.pool, "other", &["staging"]).await[0];
    let store = FlagStore::new(db.pool.clone());
    store
        .create("studybuddy", release("a"), alice(), &origin())
        .await
        .unwrap();
    let flag = name("a");
    for enabled in [true, false, true] {
        store
            .toggle(staging, &flag, enabled, alice(), &origin())
            .await
            .unwrap();
    }
    store
        .toggle(production, &flag, true, alice(), &origin())
        .await
        .unwrap();
    store
        .create("other", release("a"), alice(), &origin())
        .await
        .unwrap();

    assert_eq!(versions(&store, staging).await, [1, 2, 3, 4]);
    assert_eq!(versions(&store, production).await, [1, 2]);
    assert_eq!(versions(&store, other).await, [1]);

    let first = store
        .list_snapshots(
            staging,
            SnapshotQuery {
                before_version: None,
                limit: 3,
            },
        )
        .await
        .unwrap();
    let listed: Vec<i64> = first.snapshots.iter().map(|s| s.version).collect();
    assert_eq!(listed, [4, 3, 2]);
    assert_eq!(first.next_before_version, Some(2));
    let rest = store
        .list_snapshots(
            staging,
            SnapshotQuery {
                before_version: first.next_before_version,
                limit: 3,
            },
        )
        .await
        .unwrap();
    assert_eq!(rest.snapshots.len(), 1);
    assert_eq!(rest.next_before_version, None);
}

#[tokio::test]
async fn a_diff_between_snapshots_reads_as_sentences() {
    let db = TestDb::new().await;
    let production = project(&db.pool, "studybuddy", &["production"]).await[0];
    let store = FlagStore::new(db.pool.clone());
    let flag = name("smart-reminders");
    store
        .create("studybuddy", release("smart-reminders"), alice(), &origin())
        .await
        .unwrap();
    store
        .set_strategies(
            production,
            &flag,
            strategies(json!([{"name": "flexibleRollout",
                "parameters": {"rollout": "10", "stickiness": "default", "groupId": "smart-reminders"}}])),
            alice(),
            &origin(),
        )
        .await
        .unwrap();
    let before = store
        .set_variants(
            production,
            &flag,
            variants(json!([{"name": "blue"}, {"name": "green"}])),
            alice(),
            &origin(),
        )
        .await
        .unwrap()
        .version_in(production)
        .unwrap();

    store
        .toggle(production, &flag, true, alice(), &origin())
        .await
        .unwrap();
    store
        .set_strategies(
            production,
            &flag,
            strategies(json!([{"name": "flexibleRollout",
                "parameters": {"rollout": "50", "stickiness": "default", "groupId": "smart-reminders"}}])),
            alice(),
            &origin(),
        )
        .await
        .unwrap();
    store
        .set_variants(
            production,
            &flag,
            variants(
                json!([{"name": "blue", "weight": 700, "weightType": "fix"}, {"name": "green"}]),
            ),
            alice(),
            &origin(),
        )
        .await
        .unwrap();
    let after = store
        .create("studybuddy", release("dark-mode"), alice(), &origin())
        .await
        .unwrap()
        .version_in(production)
        .unwrap();

    let lines: Vec<String> = store
        .diff(production, before, after)
        .await
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        lines,
        [
            "dark-mode: added (off)",
            "smart-reminders: off → on",
            "smart-reminders: rollout 10% → 50%",
            "smart-reminders: variant blue weight 500 → 700",
            "smart-reminders: variant green weight 500 → 300",
        ]
    );
    let back: Vec<String> = store
        .diff(production, after, before)
        .await
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(back[0], "dark-mode: removed");
    assert_eq!(back[1], "smart-reminders: on → off");
}

#[tokio::test]
async fn restoring_a_snapshot_puts_the_old_state_back_as_one_new_snapshot() {
    let db = TestDb::new().await;
    let [staging, production] =
        project(&db.pool, "studybuddy", &["staging", "production"]).await[..]
    else {
        unreachable!()
    };
    let store = FlagStore::new(db.pool.clone());
    for flag in ["checkout-v2", "smart-reminders"] {
        store
            .create("studybuddy", release(flag), alice(), &origin())
            .await
            .unwrap();
    }
    let (checkout, reminders) = (name("checkout-v2"), name("smart-reminders"));
    store
        .toggle(production, &checkout, true, alice(), &origin())
        .await
        .unwrap();
    store
        .toggle(staging, &checkout, true, alice(), &origin())
        .await
        .unwrap();
    let good = store
        .set_strategies(
            production,
            &reminders,
            strategies(json!([{"name": "userWithId", "parameters": {"userIds": "ann, bob"}}])),
            alice(),
            &origin(),
        )
        .await
        .unwrap()
        .version_in(production)
        .unwrap();
    let deployed = store.snapshot(production, good).await.unwrap().state;

    // What happened after the deployment recorded snapshot `good`.
    store
        .toggle(production, &reminders, true, alice(), &origin())
        .await
        .unwrap();
    store
        .set_strategies(
            production,
            &reminders,
            Strategies::default(),
            alice(),
            &origin(),
        )
        .await
        .unwrap();
    store
        .toggle(production, &checkout, false, alice(), &origin())
        .await
        .unwrap();
    store
        .archive("studybuddy", &checkout, alice(), &origin())
        .await
        .unwrap();
    store
        .create("studybuddy", release("later"), alice(), &origin())
        .await
        .unwrap();
    store
        .toggle(production, &name("later"), true, alice(), &origin())
        .await
        .unwrap();
    let newest = store.current(production).await.unwrap().version;
    let staging_before = store.current(staging).await.unwrap().version;

    let restored = store
        .restore(production, good, alice(), &origin(), None)
        .await
        .unwrap();
    let Restored::Restored {
        version,
        changes,
        not_restored,
        other_snapshots,
    } = restored
    else {
        panic!("expected a restore, got {restored:?}")
    };
    assert_eq!(version, newest + 1, "one new snapshot");
    assert_eq!(versions(&store, production).await.last(), Some(&version));
    let change_lines: Vec<String> = changes.iter().map(ToString::to_string).collect();
    assert!(
        change_lines.contains(&"checkout-v2: added (on)".to_string()),
        "{change_lines:?}"
    );
    assert!(
        change_lines.contains(&"later: on → off".to_string()),
        "{change_lines:?}"
    );
    let left: Vec<String> = not_restored.iter().map(ToString::to_string).collect();
    assert_eq!(left, ["later: added (off)"], "a flag made later stays, off");

    let now = store.current(production).await.unwrap();
    assert_eq!(now.version, version);
    let snapshot = store.snapshot(production, version).await.unwrap();
    assert_eq!(snapshot.info.reason, format!("restored snapshot {good}"));
    assert_eq!(snapshot.info.restored_from, Some(good));
    let (old, restored) = (
        FeatureSet::from_client_features(deployed.clone()),
        FeatureSet::from_client_features(now.state.clone()),
    );
    for id in ["ann", "bob", "carol"] {
        for flag in ["checkout-v2", "smart-reminders", "later"] {
            assert_eq!(
                restored.is_enabled(flag, &user(id)),
                old.is_enabled(flag, &user(id)),
                "{flag} for {id}"
            );
        }
    }
    for flag in &deployed.features {
        let now = now
            .state
            .features
            .iter()
            .find(|f| f.name == flag.name)
            .unwrap();
        assert_eq!(now, flag, "{} is back as it was", flag.name);
    }

    // checkout-v2 came back from the archive: off in staging, which got a snapshot for it.
    assert_eq!(other_snapshots.len(), 1);
    assert_eq!(other_snapshots[0].environment_id, staging);
    assert_eq!(other_snapshots[0].version, staging_before + 1);
    let staging_now = store.current(staging).await.unwrap().state;
    let revived = staging_now
        .features
        .iter()
        .find(|f| f.name == "checkout-v2")
        .unwrap();
    assert!(!revived.enabled);

    let entries = audit(&db.pool, "flag.snapshot_restored").await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].0, "studybuddy/production");
    assert_eq!(entries[0].1["restored"], good);
    assert_eq!(entries[0].1["before"]["version"], newest);
    assert_eq!(entries[0].1["after"]["version"], version);
    assert_eq!(entries[0].1["revived"], json!(["checkout-v2"]));
}

#[tokio::test]
async fn restoring_the_same_snapshot_twice_is_one_change_in_the_audit_log_and_one_new_snapshot() {
    let db = TestDb::new().await;
    let production = project(&db.pool, "studybuddy", &["production"]).await[0];
    let store = FlagStore::new(db.pool.clone());
    let flag = name("smart-reminders");
    let first = store
        .create("studybuddy", release("smart-reminders"), alice(), &origin())
        .await
        .unwrap()
        .version_in(production)
        .unwrap();
    store
        .toggle(production, &flag, true, alice(), &origin())
        .await
        .unwrap();

    let once = store
        .restore(production, first, alice(), &origin(), None)
        .await
        .unwrap();
    assert!(
        matches!(once, Restored::Restored { version: 3, .. }),
        "{once:?}"
    );
    let twice = store
        .restore(production, first, alice(), &origin(), None)
        .await
        .unwrap();
    assert_eq!(
        twice,
        Restored::AlreadyCurrent {
            version: 3,
            not_restored: Vec::new()
        }
    );
    assert_eq!(audit(&db.pool, "flag.snapshot_restored").await.len(), 1);
    assert_eq!(versions(&store, production).await, [1, 2, 3]);

    // With a key, a retried rollback does not undo what happened after the first call.
    let keyed = store
        .restore(production, 2, alice(), &origin(), Some("rollback-42"))
        .await
        .unwrap();
    assert!(
        matches!(keyed, Restored::Restored { version: 4, .. }),
        "{keyed:?}"
    );
    store
        .kill(production, &flag, alice(), &origin())
        .await
        .unwrap();
    let retried = store
        .restore(production, 2, alice(), &origin(), Some("rollback-42"))
        .await
        .unwrap();
    assert_eq!(retried, Restored::Replayed { version: 4 });
    let current = store.current(production).await.unwrap();
    assert_eq!(current.version, 5);
    assert!(!current.state.features[0].enabled, "the kill switch stays");
    assert_eq!(audit(&db.pool, "flag.snapshot_restored").await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_concurrent_restores_of_the_same_snapshot_make_exactly_one_change() {
    let db = TestDb::new().await;
    let [staging, production] =
        project(&db.pool, "studybuddy", &["staging", "production"]).await[..]
    else {
        unreachable!()
    };
    let store = FlagStore::new(db.pool.clone());
    for flag in ["a", "b", "c"] {
        store
            .create("studybuddy", release(flag), alice(), &origin())
            .await
            .unwrap();
    }
    let target = store.current(production).await.unwrap().version;
    for flag in ["a", "b", "c"] {
        store
            .toggle(production, &name(flag), true, alice(), &origin())
            .await
            .unwrap();
        store
            .toggle(staging, &name(flag), true, alice(), &origin())
            .await
            .unwrap();
    }
    let newest = store.current(production).await.unwrap().version;

    for round in 0..5 {
        let restores = (0..2).map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .restore(production, target, alice(), &origin(), None)
                    .await
                    .unwrap()
            })
        });
        let results: Vec<Restored> = futures::future::join_all(restores)
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        let made = results
            .iter()
            .filter(|r| matches!(r, Restored::Restored { .. }))
            .count();
        let skipped = results
            .iter()
            .filter(|r| matches!(r, Restored::AlreadyCurrent { .. }))
            .count();
        assert_eq!((made, skipped), (1, 1), "round {round}: {results:?}");
        // Change things again so the next round has something to restore.
        store
            .toggle(production, &name("a"), true, alice(), &origin())
            .await
            .unwrap();
    }
    assert_eq!(audit(&db.pool, "flag.snapshot_restored").await.len(), 5);
    // Each round: one restore, one toggle.
    assert_eq!(
        store.current(production).await.unwrap().version,
        newest + 10
    );
    assert_eq!(
        count(
            &db.pool,
            "select count(distinct (environment_id, version)) from flag_snapshot"
        )
        .await,
        count(&db.pool, "select count(*) from flag_snapshot").await,
    );
}

#[tokio::test]
async fn client_features_built_from_storage_evaluate_through_feature_set_like_the_same_json() {
    let db = TestDb::new().await;
    let production = project(&db.pool, "studybuddy", &["production"]).await[0];
    let store = FlagStore::new(db.pool.clone());
    let pro = store
        .create_segment(
            "studybuddy",
            NewSegment {
                name: "pro-users".into(),
                description: String::new(),
                constraints: Constraints::from_json(
                    json!([{"contextName": "plan", "operator": "IN", "values": ["pro"]}]),
                )
                .unwrap(),
            },
            alice(),
            &origin(),
        )
        .await
        .unwrap();
    let flag = name("smart-reminders");
    store
        .create("studybuddy", release("smart-reminders"), alice(), &origin())
        .await
        .unwrap();
    store
        .create("studybuddy", release("pro-dashboard"), alice(), &origin())
        .await
        .unwrap();
    let rollout = json!([{"name": "flexibleRollout",
        "parameters": {"rollout": "50", "stickiness": "default", "groupId": "reminders-rollout"}}]);
    store
        .set_strategies(
            production,
            &flag,
            strategies(rollout.clone()),
            alice(),
            &origin(),
        )
        .await
        .unwrap();
    store
        .set_variants(
            production,
            &flag,
            variants(json!([{"name": "blue", "stickiness": "default"}, {"name": "green"}])),
            alice(),
            &origin(),
        )
        .await
        .unwrap();
    store
        .toggle(production, &flag, true, alice(), &origin())
        .await
        .unwrap();
    let dashboard = name("pro-dashboard");
    store
        .set_strategies(
            production,
            &dashboard,
            strategies(json!([{"name": "default", "segments": [pro.0]}])),
            alice(),
            &origin(),
        )
        .await
        .unwrap();
    store
        .toggle(production, &dashboard, true, alice(), &origin())
        .await
        .unwrap();

    let stored = store.client_features(production).await.unwrap();
    assert_eq!(store.current(production).await.unwrap().state, stored);
    assert_eq!(
        stored.segments.len(),
        1,
        "the segment a strategy uses is sent"
    );
    let from_storage = FeatureSet::from_client_features(stored);
    assert!(
        from_storage.warnings().is_empty(),
        "{:?}",
        from_storage.warnings()
    );
    let by_hand: ClientFeatures = serde_json::from_value(json!({
        "version": 2,
        "features": [{"name": "smart-reminders", "enabled": true, "strategies": rollout,
                      "variants": [{"name": "blue", "weight": 500, "stickiness": "default"},
                                   {"name": "green", "weight": 500}]}]
    }))
    .unwrap();
    let expected = FeatureSet::from_client_features(by_hand);
    let mut on = 0;
    for i in 0..1000 {
        let context = user(&format!("user-{i}"));
        let enabled = from_storage.is_enabled("smart-reminders", &context);
        assert_eq!(
            enabled,
            expected.is_enabled("smart-reminders", &context),
            "user-{i}"
        );
        assert_eq!(
            from_storage.get_variant("smart-reminders", &context),
            expected.get_variant("smart-reminders", &context),
            "user-{i}"
        );
        on += usize::from(enabled);
    }
    assert!(
        (400..=600).contains(&on),
        "about half are in the rollout: {on}"
    );

    let mut pro_user = user("p");
    pro_user.properties.insert("plan".into(), "pro".into());
    assert!(from_storage.is_enabled("pro-dashboard", &pro_user));
    assert!(!from_storage.is_enabled("pro-dashboard", &user("f")));
}

#[tokio::test]
async fn dependencies_and_segments_are_served_and_guarded() {
    let db = TestDb::new().await;
    let production = project(&db.pool, "studybuddy", &["production"]).await[0];
    let store = FlagStore::new(db.pool.clone());
    for flag in ["payments-v2", "checkout-v2", "receipts"] {
        store
            .create("studybuddy", release(flag), alice(), &origin())
            .await
            .unwrap();
    }
    let (payments, checkout) = (name("payments-v2"), name("checkout-v2"));
    store
        .set_dependencies(
            "studybuddy",
            &checkout,
            vec![Dependency {
                feature: "payments-v2".into(),
                enabled: None,
                variants: None,
            }],
            alice(),
            &origin(),
        )
        .await
        .unwrap();
    for flag in [&payments, &checkout] {
        store
            .toggle(production, flag, true, alice(), &origin())
            .await
            .unwrap();
    }
    let flags = FeatureSet::from_client_features(store.client_features(production).await.unwrap());
    assert!(flags.is_enabled("checkout-v2", &user("u")));
    store
        .kill(production, &payments, alice(), &origin())
        .await
        .unwrap();
    let flags = FeatureSet::from_client_features(store.client_features(production).await.unwrap());
    assert!(
        !flags.is_enabled("checkout-v2", &user("u")),
        "its parent is off"
    );

    // One level deep only, and a parent cannot be archived from under its children.
    let nested = store
        .set_dependencies(
            "studybuddy",
            &name("receipts"),
            vec![Dependency {
                feature: "checkout-v2".into(),
                enabled: None,
                variants: None,
            }],
            alice(),
            &origin(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            nested,
            FlagError::InvalidDependency {
                problem: DependencyProblem::ParentHasParents,
                ..
            }
        ),
        "{nested}"
    );
    let archive = store
        .archive("studybuddy", &payments, alice(), &origin())
        .await
        .unwrap_err();
    assert!(
        matches!(archive, FlagError::HasChildren { .. }),
        "{archive}"
    );

    // A segment in use cannot be deleted; once unused it can.
    let segment = store
        .create_segment(
            "studybuddy",
            NewSegment {
                name: "beta".into(),
                description: String::new(),
                constraints: Constraints::default(),
            },
            alice(),
            &origin(),
        )
        .await
        .unwrap();
    store
        .set_strategies(
            production,
            &name("receipts"),
            strategies(json!([{"name": "default", "segments": [segment.0]}])),
            alice(),
            &origin(),
        )
        .await
        .unwrap();
    let in_use = store
        .delete_segment("studybuddy", segment, alice(), &origin())
        .await
        .unwrap_err();
    assert!(matches!(in_use, FlagError::SegmentInUse { .. }), "{in_use}");
    // Changing a segment that a flag uses makes a snapshot of the environment.
    let changed = store
        .update_segment(
            "studybuddy",
            segment,
            NewSegment {
                name: "beta".into(),
                description: String::new(),
                constraints: Constraints::from_json(
                    json!([{"contextName": "plan", "operator": "IN", "values": ["beta"]}]),
                )
                .unwrap(),
            },
            alice(),
            &origin(),
        )
        .await
        .unwrap();
    assert!(changed.version_in(production).is_some());
    let details = FlagDetails {
        flag_type: FlagType::Experiment,
        description: "A/B of the receipt page".into(),
        owner: Some("growth".into()),
        stale: true,
    };
    store
        .update(
            "studybuddy",
            &name("receipts"),
            details.clone(),
            alice(),
            &origin(),
        )
        .await
        .unwrap();
    let summary = store.flags(production).await.unwrap();
    let receipts = summary.iter().find(|f| f.name == "receipts").unwrap();
    assert_eq!(receipts.flag_type, FlagType::Experiment);
    assert!(receipts.stale);
    assert!(!receipts.potentially_stale, "it was created just now");
}

#[tokio::test]
async fn every_snapshot_is_announced_on_the_change_channel() {
    let db = TestDb::new().await;
    let production = project(&db.pool, "studybuddy", &["production"]).await[0];
    let store = FlagStore::new(db.pool.clone());
    let mut listener = PgListener::connect_with(&db.pool).await.unwrap();
    listener.listen("flightdeck_change").await.unwrap();
    store
        .create("studybuddy", release("a"), alice(), &origin())
        .await
        .unwrap();
    store
        .toggle(production, &name("a"), true, alice(), &origin())
        .await
        .unwrap();
    let mut announced = Vec::new();
    while announced.len() < 2 {
        let notification = tokio::time::timeout(Duration::from_secs(5), listener.recv())
            .await
            .expect("a notification within 5 s")
            .unwrap();
        let change: Value = serde_json::from_str(notification.payload()).unwrap();
        if change["topic"] == "flags" {
            announced.push(change);
        }
    }
    assert_eq!(announced[1]["environment_id"], production.to_string());
    assert_eq!(announced[1]["version"], 2);
    assert!(announced[1]["project_id"].is_string());
}

#[tokio::test]
async fn bad_input_gives_typed_errors_and_writes_nothing() {
    let db = TestDb::new().await;
    let production = project(&db.pool, "studybuddy", &["production"]).await[0];
    let store = FlagStore::new(db.pool.clone());
    let flag = name("smart-reminders");
    store
        .create("studybuddy", release("smart-reminders"), alice(), &origin())
        .await
        .unwrap();
    let written = || async {
        let mut counts = Vec::new();
        for table in [
            "audit_event",
            "flag",
            "flag_environment",
            "flag_snapshot",
            "segment",
            "flag_dependency",
        ] {
            counts.push(count(&db.pool, &format!("select count(*) from {table}")).await);
        }
        counts
    };
    let before = written().await;

    let nowhere = EnvironmentId(Uuid::new_v4());
    let error = store
        .toggle(nowhere, &flag, true, alice(), &origin())
        .await
        .unwrap_err();
    assert!(
        matches!(error, FlagError::UnknownEnvironment(id) if id == nowhere),
        "{error}"
    );
    let error = store.environment("studybuddy", "moon").await.unwrap_err();
    assert!(
        matches!(error, FlagError::NoSuchEnvironment { .. }),
        "{error}"
    );
    let error = store
        .restore(nowhere, 1, alice(), &origin(), None)
        .await
        .unwrap_err();
    assert!(
        matches!(error, SnapshotError::UnknownEnvironment(_)),
        "{error}"
    );
    let error = store
        .restore(production, 99, alice(), &origin(), None)
        .await
        .unwrap_err();
    assert!(
        matches!(error, SnapshotError::UnknownSnapshot { version: 99, .. }),
        "{error}"
    );
    let error = store
        .restore(production, 1, alice(), &origin(), Some(""))
        .await
        .unwrap_err();
    assert!(matches!(error, SnapshotError::BadIdempotencyKey), "{error}");

    assert_eq!(
        FlagName::parse("smart reminders"),
        Err(FlagNameError::Character(' '))
    );
    assert_eq!(FlagName::parse("a/b"), Err(FlagNameError::Character('/')));
    let error = store
        .toggle(production, &name("nope"), true, alice(), &origin())
        .await
        .unwrap_err();
    assert!(matches!(error, FlagError::UnknownFlag { .. }), "{error}");
    let error = store
        .create("studybuddy", release("smart-reminders"), alice(), &origin())
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            FlagError::FlagExists {
                archived: false,
                ..
            }
        ),
        "{error}"
    );
    let error = store
        .create("nope", release("x"), alice(), &origin())
        .await
        .unwrap_err();
    assert!(matches!(error, FlagError::UnknownProject { .. }), "{error}");
    assert_eq!(
        error.to_string(),
        "there is no project `nope`; the projects are studybuddy"
    );
    let error = store.environment("studybuddy", "prod").await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "project `studybuddy` has no environment `prod`; its environments are production"
    );
    let error = store.environment("nope", "production").await.unwrap_err();
    assert!(matches!(error, FlagError::UnknownProject { .. }), "{error}");
    let error = store
        .create(
            "studybuddy",
            NewFlag {
                description: "x".repeat(2001),
                ..release("verbose")
            },
            alice(),
            &origin(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            FlagError::TooLong {
                field: "description",
                ..
            }
        ),
        "{error}"
    );

    let malformed: InvalidDefinition =
        Strategies::from_json(json!([{"name": 7, "parameters": "rollout"}])).unwrap_err();
    assert!(
        malformed.to_string().contains("not in Unleash's format"),
        "{malformed}"
    );
    let unusable = Strategies::from_json(json!([
        {"name": "flexibleRollout", "parameters": {"rollout": "150"}},
        {"name": "default", "constraints": [{"contextName": "v", "operator": "REGEX", "value": "("}]},
    ]))
    .unwrap_err();
    assert_eq!(unusable.issues.len(), 2, "{unusable}");
    let error =
        Variants::from_json(json!([{"name": "a", "payload": {"type": "json", "value": "{"}}]))
            .unwrap_err();
    assert!(error.to_string().contains("json payload"), "{error}");
    let error = store
        .set_strategies(
            production,
            &flag,
            strategies(json!([{"name": "default", "segments": [999]}])),
            alice(),
            &origin(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(error, FlagError::UnknownSegment { id: 999, .. }),
        "{error}"
    );
    let error = store
        .set_dependencies(
            "studybuddy",
            &flag,
            vec![Dependency {
                feature: "ghost".into(),
                enabled: None,
                variants: None,
            }],
            alice(),
            &origin(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            FlagError::InvalidDependency {
                problem: DependencyProblem::UnknownParent,
                ..
            }
        ),
        "{error}"
    );
    let error = store
        .create_segment(
            "studybuddy",
            NewSegment {
                name: " ".into(),
                description: String::new(),
                constraints: Constraints::default(),
            },
            alice(),
            &origin(),
        )
        .await
        .unwrap_err();
    assert!(matches!(error, FlagError::BadSegmentName), "{error}");

    assert_eq!(written().await, before, "nothing was written");
}

fn bob() -> Actor {
    Actor {
        kind: "user",
        id: None,
        name: "bob".into(),
    }
}

#[tokio::test]
async fn a_change_that_needs_an_approval_waits_for_another_person_and_is_applied_once() {
    use domain::flag_view::ChangeOutcome;
    use domain::flags::change::{ChangeError, Decision, FlagChanges};
    use domain::flags::definition::EnvironmentEdit;
    let db = TestDb::new().await;
    let env = project(&db.pool, "shop", &["production"]).await[0];
    let store = FlagStore::new(db.pool.clone());
    store
        .create("shop", release("checkout"), alice(), &origin())
        .await
        .unwrap();
    let changes = FlagChanges::new(&store);
    let before = versions(&store, env).await;

    let on = EnvironmentEdit::Enable { enabled: true };
    let outcome = changes
        .request(
            env,
            &name("checkout"),
            on,
            &manager("alice"),
            None,
            alice(),
            &origin(),
        )
        .await
        .unwrap();
    let ChangeOutcome::Waiting {
        id,
        needs_approval: true,
        ..
    } = outcome
    else {
        panic!("expected a waiting change, got {outcome:?}");
    };
    assert_eq!(versions(&store, env).await, before, "nothing changed yet");
    assert_eq!(changes.apply_due().await.unwrap(), 0, "not approved yet");
    let own = changes
        .decide(
            env,
            id,
            Decision::Approve,
            &manager("alice"),
            alice(),
            &origin(),
        )
        .await;
    assert!(matches!(own, Err(ChangeError::OwnChange)), "{own:?}");

    // The approval applies it in its own transaction; two replicas racing to apply it
    // afterwards find nothing to do: one change, one snapshot.
    assert_eq!(
        changes
            .decide(
                env,
                id,
                Decision::Approve,
                &manager("bob"),
                bob(),
                &origin()
            )
            .await
            .unwrap(),
        "applied"
    );
    let (a, b) = tokio::join!(changes.apply_due(), changes.apply_due());
    assert_eq!(
        a.unwrap() + b.unwrap(),
        0,
        "the approval applied it at once"
    );
    assert_eq!(versions(&store, env).await.len(), before.len() + 1);
    let state = store.current(env).await.unwrap().state;
    assert!(state.features[0].enabled);
    assert_eq!(audit(&db.pool, "flag.change_approved").await.len(), 1);
    let applied: Vec<String> =
        sqlx::query_scalar("select actor_name from audit_event where action = 'flag.enabled'")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(
        applied,
        ["alice"],
        "applied once, in the name of the person who asked"
    );
    assert!(changes.waiting(env).await.unwrap().is_empty());

    // The kill switch never waits, even here.
    let killed = changes
        .request(
            env,
            &name("checkout"),
            EnvironmentEdit::Kill,
            &manager("bob"),
            None,
            bob(),
            &origin(),
        )
        .await
        .unwrap();
    assert_eq!(killed, ChangeOutcome::Applied { changed: true });
}

#[tokio::test]
async fn a_scheduled_change_is_applied_when_its_time_comes_and_a_rejected_one_never() {
    use domain::flag_view::ChangeOutcome;
    use domain::flags::change::{Decision, FlagChanges};
    use domain::flags::definition::EnvironmentEdit;
    let db = TestDb::new().await;
    let envs = project(&db.pool, "shop", &["staging", "production"]).await;
    let (env, production) = (envs[0], envs[1]);
    let store = FlagStore::new(db.pool.clone());
    store
        .create("shop", release("checkout"), alice(), &origin())
        .await
        .unwrap();
    let clock = domain::clock::ManualClock::new();
    let changes = FlagChanges::new(&store).with_clock(clock.clone());
    let soon = clock.now() + chrono::Duration::minutes(10);
    let on = EnvironmentEdit::Enable { enabled: true };
    let outcome = changes
        .request(
            env,
            &name("checkout"),
            on,
            &person("alice", domain::role::Role::Developer),
            Some(soon),
            alice(),
            &origin(),
        )
        .await
        .unwrap();
    assert!(matches!(
        outcome,
        ChangeOutcome::Waiting {
            needs_approval: false,
            ..
        }
    ));
    assert_eq!(changes.apply_due().await.unwrap(), 0, "not yet");
    clock.advance(chrono::Duration::minutes(11));
    assert_eq!(changes.apply_due().await.unwrap(), 1);
    assert_eq!(changes.apply_due().await.unwrap(), 0, "once");
    assert!(store.current(env).await.unwrap().state.features[0].enabled);

    let on = EnvironmentEdit::Enable { enabled: true };
    let ChangeOutcome::Waiting { id, .. } = changes
        .request(
            production,
            &name("checkout"),
            on,
            &manager("alice"),
            None,
            alice(),
            &origin(),
        )
        .await
        .unwrap()
    else {
        panic!("expected a waiting change");
    };
    changes
        .decide(
            production,
            id,
            Decision::Reject,
            &manager("bob"),
            bob(),
            &origin(),
        )
        .await
        .unwrap();
    assert_eq!(changes.apply_due().await.unwrap(), 0);
    assert!(
        !store.current(production).await.unwrap().state.features[0].enabled,
        "still off"
    );
    assert_eq!(audit(&db.pool, "flag.change_rejected").await.len(), 1);
    let past = clock.now() - chrono::Duration::days(2);
    let on = EnvironmentEdit::Enable { enabled: true };
    assert!(
        changes
            .request(
                env,
                &name("checkout"),
                on,
                &person("alice", domain::role::Role::Developer),
                Some(past),
                alice(),
                &origin()
            )
            .await
            .is_err(),
        "a time in the past is refused"
    );
}
