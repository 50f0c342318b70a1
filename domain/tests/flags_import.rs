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
