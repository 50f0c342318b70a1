//! The flag APIs through the real server: Unleash Frontend and client APIs, OFREP and its event
//! stream, the errors SDKs rely on, and two replicas agreeing within a second of a change.

use crate::helpers::TestApp;
use domain::audit::{Actor, Origin};
use domain::flag_view::SdkTokenKind;
use domain::flags::FlagStore;
use domain::flags::definition::{FlagName, FlagType, NewFlag, Strategies, Variants};
use domain::flags::store::EnvironmentId;
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

async fn staging(store: &FlagStore) -> EnvironmentId {
    store.environment("studybuddy", "staging").await.unwrap().id
}

/// Two flags in staging: `new-checkout` on for 50 % of users with two variants, `dark-mode` off.
async fn seed(app: &TestApp) -> (FlagStore, EnvironmentId) {
    let store = FlagStore::new(app.pool.clone());
    let env = staging(&store).await;
    for (name, flag_type) in [
        ("new-checkout", FlagType::Release),
        ("dark-mode", FlagType::Experiment),
    ] {
        let flag = NewFlag {
            name: FlagName::parse(name).unwrap(),
            flag_type,
            description: String::new(),
            owner: None,
        };
        store
            .create("studybuddy", flag, Actor::system(), &Origin::default())
            .await
            .unwrap();
    }
    let name = FlagName::parse("new-checkout").unwrap();
    let strategies: Strategies = serde_json::from_value(json!([{
        "name": "flexibleRollout",
        "parameters": {"rollout": "50", "stickiness": "userId", "groupId": "new-checkout"},
    }]))
    .unwrap();
    let variants: Variants = serde_json::from_value(json!([
        {"name": "blue", "weight": 500, "weightType": "variable", "stickiness": "userId",
         "payload": {"type": "json", "value": "{\"color\":\"#00f\"}"}},
        {"name": "green", "weight": 500, "weightType": "variable", "stickiness": "userId"},
    ]))
    .unwrap();
    store
        .set_strategies(env, &name, strategies, Actor::system(), &Origin::default())
        .await
        .unwrap();
    store
        .set_variants(env, &name, variants, Actor::system(), &Origin::default())
        .await
        .unwrap();
    store
        .toggle(env, &name, true, Actor::system(), &Origin::default())
        .await
        .unwrap();
    (store, env)
}

/// Waits until the server serves snapshot `version` of staging to this client token.
async fn wait_for_version(app: &TestApp, token: &str, version: i64) -> Duration {
    let started = Instant::now();
    loop {
        let answer: Value = app
            .anonymous()
            .post(app.url("/ofrep/v1/evaluate/flags"))
            .header("authorization", token)
            .json(&json!({}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if answer["metadata"]["version"].as_i64() >= Some(version) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "never saw version {version}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn newest_version(store: &FlagStore, env: EnvironmentId) -> i64 {
    store.current(env).await.unwrap().version
}

#[tokio::test]
async fn the_frontend_api_evaluates_for_the_context_with_etags() {
    let app = TestApp::spawn().await;
    let (store, env) = seed(&app).await;
    let token = app.sdk_token("staging", SdkTokenKind::Frontend).await;
    wait_for_version(&app, &token, newest_version(&store, env).await).await;
    let http = app.anonymous();

    // Users land in the rollout by hash: of 200 users about half get the flag.
    let mut on = 0;
    for user in 0..200 {
        let answer: Value = http
            .get(app.url(&format!("/api/frontend?userId=user-{user}&appName=web")))
            .header("authorization", &token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let toggles = answer["toggles"].as_array().unwrap();
        assert!(
            toggles.iter().all(|t| t["name"] != "dark-mode"),
            "off flags are left out"
        );
        if let Some(toggle) = toggles.iter().find(|t| t["name"] == "new-checkout") {
            on += 1;
            assert_eq!(toggle["enabled"], true);
            let variant = toggle["variant"]["name"].as_str().unwrap();
            assert!(["blue", "green"].contains(&variant), "{toggle}");
        }
    }
    assert!(
        (70..=130).contains(&on),
        "{on} of 200 users got a 50 % rollout"
    );

    // POST and GET agree; the ETag answers 304 when nothing changed.
    let get = http
        .get(app.url("/api/frontend?userId=user-1"))
        .header("authorization", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(get.headers()["content-type"], "application/json");
    let etag = get.headers()["etag"].to_str().unwrap().to_string();
    let get_body: Value = get.json().await.unwrap();
    let post: Value = http
        .post(app.url("/api/frontend"))
        .header("authorization", &token)
        .json(&json!({"context": {"userId": "user-1", "properties": {"plan": "pro"}}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(get_body, post);
    let cached = http
        .get(app.url("/api/frontend?userId=user-1"))
        .header("authorization", &token)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(cached.status(), StatusCode::NOT_MODIFIED);

    // /all lists the off flag too.
    let all: Value = http
        .get(app.url("/api/frontend/all?userId=user-1"))
        .header("authorization", &token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let dark = all["toggles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "dark-mode")
        .unwrap();
    assert_eq!(dark["enabled"], false);
    assert_eq!(
        dark["variant"],
        json!({"name": "disabled", "enabled": false, "feature_enabled": false})
    );
    let missing = http
        .get(app.url("/api/frontend/features/dark-mode"))
        .header("authorization", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);

    // Reports are accepted.
    for path in [
        "/api/frontend/client/metrics",
        "/api/frontend/client/register",
    ] {
        let response = http
            .post(app.url(path))
            .header("authorization", &token)
            .json(&json!({"appName": "web", "instanceId": "i1", "bucket": {"start": "2026-11-25T00:00:00Z", "stop": "2026-11-25T00:01:00Z", "toggles": {}}}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED, "{path}");
    }
}

#[tokio::test]
async fn the_client_api_serves_the_snapshot_and_ofrep_evaluates_with_reasons() {
    let app = TestApp::spawn().await;
    let (store, env) = seed(&app).await;
    let client_token = app.sdk_token("staging", SdkTokenKind::Client).await;
    let version = newest_version(&store, env).await;
    wait_for_version(&app, &client_token, version).await;
    let http = app.anonymous();

    let features = http
        .get(app.url("/api/client/features"))
        .header("authorization", &client_token)
        .send()
        .await
        .unwrap();
    assert_eq!(features.status(), StatusCode::OK);
    let etag = features.headers()["etag"].to_str().unwrap().to_string();
    let snapshot = store.current(env).await.unwrap();
    assert_eq!(etag, format!("\"{}\"", snapshot.sha256));
    let body: Value = features.json().await.unwrap();
    assert_eq!(body["version"], 2);
    assert_eq!(body["features"].as_array().unwrap().len(), 2);
    let unchanged = http
        .get(app.url("/api/client/features"))
        .header("authorization", &client_token)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(unchanged.status(), StatusCode::NOT_MODIFIED);

    // OFREP, one flag: a variant with a JSON payload gives an object; the reason is SPLIT.
    let mut seen_payload = false;
    for user in 0..40 {
        let item: Value = http
            .post(app.url("/ofrep/v1/evaluate/flags/new-checkout"))
            .header("authorization", format!("Bearer {client_token}"))
            .json(&json!({"context": {"targetingKey": format!("user-{user}")}}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(item["key"], "new-checkout");
        match item["variant"].as_str().unwrap() {
            "blue" => {
                assert_eq!(item["value"], json!({"color": "#00f"}));
                seen_payload = true;
            }
            "green" => assert_eq!(item["value"], true),
            "off" => assert_eq!(item["value"], false),
            other => panic!("unexpected variant {other}"),
        }
        assert!(
            ["SPLIT", "DISABLED"].contains(&item["reason"].as_str().unwrap()),
            "{item}"
        );
    }
    assert!(seen_payload);
    let off: Value = http
        .post(app.url("/ofrep/v1/evaluate/flags/dark-mode"))
        .header("x-api-key", &client_token)
        .json(&json!({"context": {"targetingKey": "u1"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(off["value"], false);
    assert_eq!(off["reason"], "DISABLED");
    assert_eq!(off["variant"], "off");

    let unknown = http
        .post(app.url("/ofrep/v1/evaluate/flags/no-such-flag"))
        .header("authorization", &client_token)
        .json(&json!({"context": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    let error: Value = unknown.json().await.unwrap();
    assert_eq!(error["errorCode"], "FLAG_NOT_FOUND");
    assert_eq!(error["key"], "no-such-flag");

    // Bulk, with an ETag.
    let bulk = http
        .post(app.url("/ofrep/v1/evaluate/flags"))
        .header("authorization", &client_token)
        .json(&json!({"context": {"targetingKey": "u1"}}))
        .send()
        .await
        .unwrap();
    let etag = bulk.headers()["etag"].to_str().unwrap().to_string();
    let answer: Value = bulk.json().await.unwrap();
    assert_eq!(answer["flags"].as_array().unwrap().len(), 2);
    let again = http
        .post(app.url("/ofrep/v1/evaluate/flags"))
        .header("authorization", &client_token)
        .header("if-none-match", &etag)
        .json(&json!({"context": {"targetingKey": "u1"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
}

#[tokio::test]
async fn bad_tokens_contexts_and_bodies_are_refused_and_change_nothing() {
    let mut app = TestApp::spawn().await;
    let (store, env) = seed(&app).await;
    let frontend = app.sdk_token("staging", SdkTokenKind::Frontend).await;
    let production = app.sdk_token("production", SdkTokenKind::Frontend).await;
    let before = newest_version(&store, env).await;
    let http = app.anonymous();

    let unknown = http
        .get(app.url("/api/frontend"))
        .header("authorization", "studybuddy:staging.not-a-real-token")
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        unknown.headers()["access-control-allow-origin"],
        "*",
        "a browser SDK can read the refusal"
    );
    let preflight = http
        .request(
            reqwest::Method::OPTIONS,
            app.url("/ofrep/v1/evaluate/flags"),
        )
        .header("origin", "https://app.studybuddy.example")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type,if-none-match",
        )
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success(), "{}", preflight.status());
    let allowed = preflight.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap();
    assert!(
        allowed.contains("authorization") && allowed.contains("if-none-match"),
        "{allowed}"
    );
    let none = http.get(app.url("/api/frontend")).send().await.unwrap();
    assert_eq!(none.status(), StatusCode::UNAUTHORIZED);

    // A production token asking for staging, and a frontend token on the client API.
    let other = http
        .get(app.url("/api/frontend?environment=staging"))
        .header("authorization", &production)
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::FORBIDDEN);
    let message = other.text().await.unwrap();
    assert!(message.contains("studybuddy/production"), "{message}");
    let wrong_kind = http
        .get(app.url("/api/client/features"))
        .header("authorization", &frontend)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_kind.status(), StatusCode::FORBIDDEN);

    // Malformed contexts: 400 with what is wrong, in each API's own shape.
    let bad = http
        .post(app.url("/api/frontend"))
        .header("authorization", &frontend)
        .header("content-type", "application/json")
        .body(r#"{"context": {"properties": {"plan": ["pro"]}}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let error: Value = bad.json().await.unwrap();
    assert_eq!(
        error["error"]["message"],
        "context.properties.plan must be a string, number or boolean, not an array"
    );
    let bad = http
        .post(app.url("/ofrep/v1/evaluate/flags/new-checkout"))
        .header("authorization", &frontend)
        .body(r#"{"context": "#)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let error: Value = bad.json().await.unwrap();
    assert_eq!(error["errorCode"], "PARSE_ERROR");
    assert_eq!(error["key"], "new-checkout");
    let bad = http
        .post(app.url("/ofrep/v1/evaluate/flags"))
        .header("authorization", &frontend)
        .json(&json!({"context": {"targetingKey": 7}}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let error: Value = bad.json().await.unwrap();
    assert_eq!(error["errorCode"], "INVALID_CONTEXT");
    let bad = http
        .get(app.url("/api/frontend?currentTime=tomorrow"))
        .header("authorization", &frontend)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);

    // 2 MiB of context.
    let huge = format!(
        r#"{{"context": {{"userId": "{}"}}}}"#,
        "x".repeat(2 * 1024 * 1024)
    );
    let too_large = http
        .post(app.url("/api/frontend"))
        .header("authorization", &frontend)
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(too_large.status(), StatusCode::PAYLOAD_TOO_LARGE);

    // A revoked token stops working as soon as the server hears of it.
    let tokens = domain::flags::SdkTokens::new(app.pool.clone());
    let listed = tokens.list("studybuddy").await.unwrap();
    let id = listed
        .iter()
        .find(|t| t.environment == "staging")
        .unwrap()
        .id
        .parse()
        .unwrap();
    assert!(
        tokens
            .revoke("studybuddy", id, Actor::system(), &Origin::default())
            .await
            .unwrap()
    );
    let started = Instant::now();
    loop {
        let status = http
            .get(app.url("/api/frontend"))
            .header("authorization", &frontend)
            .send()
            .await
            .unwrap()
            .status();
        if status == StatusCode::UNAUTHORIZED {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "the revoked token still works"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    assert_eq!(newest_version(&store, env).await, before, "nothing changed");
    app.shut_down().await;
    assert!(app.refusals_audited("token.rejected").await >= 2);
}

#[tokio::test]
async fn two_replicas_agree_within_a_second_and_the_ofrep_stream_says_refetch() {
    let first = TestApp::spawn().await;
    let (store, env) = seed(&first).await;
    let second = TestApp::spawn_on(first.options.clone()).await;
    let token = first.sdk_token("staging", SdkTokenKind::Frontend).await;
    second.wait_for_sdk_token(&token).await;
    let version = newest_version(&store, env).await;
    wait_for_version(&first, &token, version).await;
    wait_for_version(&second, &token, version).await;

    // Connect to the stream the bulk answer names, on the second replica.
    let answer: Value = second
        .anonymous()
        .post(second.url("/ofrep/v1/evaluate/flags"))
        .header("authorization", &token)
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let uri = answer["eventStreams"][0]["endpoint"]["requestUri"]
        .as_str()
        .unwrap();
    let mut stream = second
        .anonymous()
        .get(second.url(uri))
        .send()
        .await
        .unwrap()
        .bytes_stream();

    // Change the flag through the first replica's database connection.
    let changed_at = Instant::now();
    store
        .kill(
            env,
            &FlagName::parse("new-checkout").unwrap(),
            Actor::system(),
            &Origin::default(),
        )
        .await
        .unwrap();
    let event = tokio::time::timeout(Duration::from_secs(1), stream.next())
        .await
        .expect("an event within a second")
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&event);
    assert!(text.contains("refetchEvaluation"), "{text}");
    let seen_first = wait_for_version(&first, &token, version + 1).await;
    let seen_second = wait_for_version(&second, &token, version + 1).await;
    assert!(
        changed_at.elapsed() < Duration::from_secs(1),
        "{seen_first:?} {seen_second:?}"
    );
    let item: Value = second
        .anonymous()
        .post(second.url("/ofrep/v1/evaluate/flags/new-checkout"))
        .header("authorization", &token)
        .json(&json!({"context": {"targetingKey": "u1"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(item["value"], false);
    assert_eq!(item["reason"], "DISABLED");
}
