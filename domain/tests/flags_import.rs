//! `flags import` against a real PostgreSQL: an Unleash export, imported and exported again,
//! comes back field for field, and importing it a second time changes nothing.
#![cfg(feature = "server")]

mod support;

use domain::audit::{Actor, Origin};
use domain::flags::import::{Imported, import};
use domain::flags::{ClientFeatures, FlagStore};
use serde_json::json;
use support::{TestDb, project};

fn operator() -> Actor {
    Actor {
        kind: "user",
        id: None,
        name: "operator".into(),
    }
}

/// An export with every field Unleash sends: types, descriptions, stale marks, impression
/// data, strategies with constraints (inverted, case-insensitive, single- and multi-value),
/// segments, strategy variants, flag variants with overrides and payloads, and dependencies
/// (plain, on a parent being off, on a parent's variants).
fn unleash_export() -> ClientFeatures {
    let constraint = |context: &str, operator: &str, values: &[&str], value: Option<&str>| {
        json!({"contextName": context, "operator": operator, "values": values,
               "value": value, "inverted": false, "caseInsensitive": false})
    };
    let mut inverted = constraint("email", "STR_ENDS_WITH", &["@EXAMPLE.COM"], None);
    inverted["inverted"] = json!(true);
    inverted["caseInsensitive"] = json!(true);
    let variant = |name: &str, weight: i32, payload: serde_json::Value| {
        json!({"name": name, "weight": weight, "weightType": "variable",
               "stickiness": "userId", "payload": payload})
    };
    let mut pinned = variant(
        "blue",
        500,
        json!({"type": "json", "value": "{\"hue\":240}"}),
    );
    pinned["overrides"] = json!([{"contextName": "userId", "values": ["42", "7"]}]);
    serde_json::from_value(json!({
        "version": 2,
        "segments": [
            {"id": 7, "name": "beta", "constraints": [constraint("plan", "IN", &["pro", "team"], None)]},
            {"id": 9, "name": "adults", "constraints": [constraint("age", "NUM_GTE", &[], Some("18"))]}
        ],
        "features": [
            {"name": "checkout", "type": "experiment", "description": "The new checkout",
             "enabled": true, "stale": true, "impressionData": true, "project": "shop",
             "strategies": [
                 {"name": "flexibleRollout", "sortOrder": 0,
                  "parameters": {"rollout": "25", "stickiness": "userId", "groupId": "checkout"},
                  "constraints": [inverted, constraint("appVersion", "SEMVER_GTE", &[], Some("2.1.0"))],
                  "segments": [7, 9],
                  "variants": [variant("fast", 1000, json!({"type": "number", "value": "3"}))]},
                 {"name": "userWithId", "sortOrder": 1, "parameters": {"userIds": "1, 2, 3"}}
             ],
             "variants": [pinned, variant("green", 500, json!({"type": "csv", "value": "a,b"}))],
             "dependencies": [{"feature": "payments"}, {"feature": "theme", "variants": ["dark"]}]},
            {"name": "legacy-cart", "type": "kill-switch", "description": "Old cart",
             "enabled": false, "stale": false, "impressionData": false, "project": "shop",
             "strategies": [], "variants": [],
             "dependencies": [{"feature": "payments", "enabled": false}]},
            {"name": "payments", "type": "release", "enabled": true, "stale": false,
             "impressionData": false, "project": "shop", "strategies": [], "variants": []},
            {"name": "theme", "type": "permission", "description": "Dark mode", "enabled": true,
             "stale": false, "impressionData": true, "project": "shop",
             "strategies": [{"name": "default", "parameters": {}}],
             "variants": [variant("dark", 500, json!({"type": "string", "value": "d"})),
                          variant("light", 500, json!({"type": "string", "value": "l"}))]}
        ]
    }))
    .expect("the export is a client features body")
}

#[tokio::test]
async fn an_imported_unleash_export_exports_again_field_for_field() {
    let db = TestDb::new().await;
    let env = project(&db.pool, "shop", &["production"]).await[0];
    let store = FlagStore::new(db.pool.clone());
    let export = unleash_export();
    import(
        &store,
        "shop",
        env,
        export.clone(),
        &operator(),
        &Origin::default(),
    )
    .await
    .expect("the export imports");

    let exported = store.client_features(env).await.unwrap();
    // Segments are renumbered and named after the file's ids; everything else is as it was.
    let ours = |id: i32| {
        let name = format!("imported-{id}");
        let found = exported
            .segments
            .iter()
            .find(|s| s.name.as_deref() == Some(&name));
        found
            .unwrap_or_else(|| panic!("segment {name} is exported"))
            .id
    };
    let mut expected = export.clone();
    for segment in &mut expected.segments {
        segment.name = Some(format!("imported-{}", segment.id));
        segment.id = ours(segment.id);
    }
    for strategy in expected.features.iter_mut().flat_map(|f| &mut f.strategies) {
        for id in &mut strategy.segments {
            *id = ours(*id);
        }
    }
    for (ours, theirs) in exported.features.iter().zip(&expected.features) {
        assert_eq!(
            ours, theirs,
            "flag {} comes back as it went in",
            theirs.name
        );
    }
    assert_eq!(exported.features.len(), expected.features.len());
    assert_eq!(exported.segments, expected.segments);
}

#[tokio::test]
async fn importing_the_same_export_twice_changes_nothing_the_second_time() {
    let db = TestDb::new().await;
    let env = project(&db.pool, "shop", &["production"]).await[0];
    let store = FlagStore::new(db.pool.clone());
    let first = import(
        &store,
        "shop",
        env,
        unleash_export(),
        &operator(),
        &Origin::default(),
    )
    .await
    .unwrap();
    assert_eq!(first.created, 4);
    let version = store.current(env).await.unwrap().version;
    let second = import(
        &store,
        "shop",
        env,
        unleash_export(),
        &operator(),
        &Origin::default(),
    )
    .await
    .unwrap();
    assert_eq!(second, Imported::default());
    assert_eq!(store.current(env).await.unwrap().version, version);
}

/// A generated export the size of a product team's flag list: `count` flags, most of them
/// rollouts (some constrained, some behind a segment), some with variants, some off, every
/// tenth needing the first.
fn generated_export(count: usize) -> ClientFeatures {
    let features: Vec<serde_json::Value> = (0..count)
        .map(|i| {
            let name = format!("area-{}-feature-{i}", i % 16);
            let mut strategy = json!({"name": "flexibleRollout",
                "parameters": {"rollout": (i % 101).to_string(), "stickiness": "userId", "groupId": name}});
            if i % 3 == 0 {
                strategy["constraints"] = json!([{"contextName": "plan", "operator": "IN",
                                                  "values": ["pro", "team"]}]);
            }
            if i % 5 == 0 {
                strategy["segments"] = json!([1 + (i % 2)]);
            }
            let variants = if i % 4 == 0 {
                json!([{"name": "a", "weight": 500, "weightType": "variable", "stickiness": "userId",
                        "payload": {"type": "string", "value": "a"}},
                       {"name": "b", "weight": 500, "weightType": "variable", "stickiness": "userId"}])
            } else {
                json!([])
            };
            let dependencies = if i > 0 && i % 10 == 0 {
                json!([{"feature": "area-0-feature-0"}])
            } else {
                json!([])
            };
            let flag_type = ["release", "experiment", "operational"][i % 3];
            json!({"name": name, "type": flag_type,
                   "description": format!("generated flag {i}"), "enabled": i % 7 != 0,
                   "stale": false, "impressionData": i % 11 == 0, "project": "shop",
                   "strategies": [strategy], "variants": variants, "dependencies": dependencies})
        })
        .collect();
    serde_json::from_value(json!({
        "version": 2,
        "segments": [
            {"id": 1, "constraints": [{"contextName": "country", "operator": "IN", "values": ["DE", "FR"]}]},
            {"id": 2, "constraints": [{"contextName": "email", "operator": "STR_ENDS_WITH", "values": [".edu"]}]}
        ],
        "features": features
    }))
    .expect("the generated export is a client features body")
}

#[tokio::test]
async fn importing_350_flags_is_one_change_with_one_snapshot_and_one_audit_entry() {
    let db = TestDb::new().await;
    let envs = project(&db.pool, "shop", &["staging", "production"]).await;
    let (staging, production) = (envs[0], envs[1]);
    let store = FlagStore::new(db.pool.clone());
    let started = std::time::Instant::now();
    let imported = import(
        &store,
        "shop",
        production,
        generated_export(350),
        &operator(),
        &Origin::default(),
    )
    .await
    .expect("the export imports");
    eprintln!("imported 350 flags in {:?}", started.elapsed());
    assert_eq!(imported.created, 350);

    let snapshots = |env: domain::flags::store::EnvironmentId| {
        let pool = db.pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "select count(*) from flag_snapshot where environment_id = $1",
            )
            .bind(env.0)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    assert_eq!(
        snapshots(production).await,
        1,
        "one snapshot for the import"
    );
    assert_eq!(
        snapshots(staging).await,
        1,
        "the new flags appear, off, in the other environment: one snapshot there too"
    );
    let entries: Vec<(String, serde_json::Value)> = sqlx::query_as(
        "select action, details from audit_event where actor_name = 'operator' order by audit_event_id",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(entries.len(), 1, "one audit entry: {entries:?}");
    assert_eq!(entries[0].0, "flag.imported");
    assert_eq!(entries[0].1["created"].as_array().map(Vec::len), Some(350));

    let served = store.current(production).await.unwrap();
    assert_eq!(served.version, 1);
    assert_eq!(served.state.features.len(), 350);
    let enabled = served.state.features.iter().filter(|f| f.enabled).count();
    assert_eq!(enabled, (0..350).filter(|i| i % 7 != 0).count());
    let needing = served.state.features.iter();
    assert_eq!(
        needing.filter(|f| !f.dependencies.is_empty()).count(),
        34,
        "every tenth flag needs the first"
    );
}
