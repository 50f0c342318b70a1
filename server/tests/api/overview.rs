//! The overview and the definition API, with good and bad input.

use crate::helpers::{SAMPLE, TestApp, assert_status};
use domain::auth::Scope;
use domain::role::Role;
use reqwest::StatusCode;

#[tokio::test]
async fn the_overview_shows_all_four_phases_their_stages_schedules_and_environments() {
    let app = TestApp::spawn().await;
    let viewer = app.person(Role::Viewer).await;
    let html = viewer
        .get(app.url("/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for phase in ["Development", "CI/CD", "Staging", "Production"] {
        assert!(html.contains(phase), "phase {phase} is on the page");
    }
    for stage in [
        "QA approval",
        "User acceptance",
        "Security scan",
        "Database migration",
    ] {
        assert!(
            html.to_lowercase().contains(&stage.to_lowercase()),
            "stage {stage} is on the page"
        );
    }
    assert!(html.contains("No release deployed here yet."));

    let overview: serde_json::Value = viewer
        .get(app.url("/api/v1/projects/studybuddy/overview"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let project = &overview["project"];
    assert_eq!(project["phases"].as_array().unwrap().len(), 4);
    let schedules = project["schedules"].as_array().unwrap();
    assert_eq!(
        schedules.len(),
        4,
        "development, staging, production and nightly"
    );
    for schedule in schedules {
        assert_eq!(
            schedule["next_fires"].as_array().unwrap().len(),
            5,
            "{schedule}"
        );
    }
    let kinds: Vec<&str> = project["phases"][1]["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["kind"].as_str().unwrap())
        .collect();
    for kind in ["apk", "ipa", "web", "asset-bundle", "db-schema", "api-spec"] {
        assert!(kinds.contains(&kind), "CI/CD builds a {kind}: {kinds:?}");
    }
    let environments: Vec<&str> = project["environments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(environments, ["development", "staging", "production"]);
}

#[tokio::test]
async fn an_empty_portal_says_how_to_load_a_project() {
    let app = TestApp::spawn_empty().await;
    let viewer = app.person(Role::Viewer).await;
    let html = viewer
        .get(app.url("/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("No project yet"));
    assert!(html.contains("flightdeck serve --project"));
}

#[tokio::test]
async fn a_new_definition_through_the_api_is_stored_once_and_audited() {
    let app = TestApp::spawn().await;
    let token = app.token(&[Scope::DefinitionWrite]).await;
    let client = app.anonymous();
    let changed = SAMPLE.replacen("name: StudyBuddy", "name: StudyBuddy Next", 1);
    let r = client
        .put(app.url("/api/v1/projects/studybuddy/definition"))
        .bearer_auth(&token)
        .body(changed.clone())
        .send()
        .await
        .unwrap();
    assert_status(&r, StatusCode::CREATED);
    let again = client
        .put(app.url("/api/v1/projects/studybuddy/definition"))
        .bearer_auth(&token)
        .body(changed)
        .send()
        .await
        .unwrap();
    assert_status(&again, StatusCode::OK);
    let body: serde_json::Value = again.json().await.unwrap();
    assert_eq!(body["changed"], false);
    assert_eq!(
        app.audit_count("definition.loaded").await,
        2,
        "the sample load and this one"
    );
    let name: String = sqlx::query_scalar("select name from project")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(name, "StudyBuddy Next");
}

#[tokio::test]
async fn a_malformed_definition_is_refused_with_line_and_column_and_nothing_is_written() {
    let app = TestApp::spawn().await;
    let token = app.token(&[Scope::DefinitionWrite]).await;
    let broken = SAMPLE.replacen(
        "phases:",
        "phases:\n  bogus_key: 1\nunknown_top_level: true\nphases_again:",
        1,
    );
    let r = app
        .anonymous()
        .put(app.url("/api/v1/projects/studybuddy/definition"))
        .bearer_auth(&token)
        .body(broken)
        .send()
        .await
        .unwrap();
    assert_status(&r, StatusCode::UNPROCESSABLE_ENTITY);
    let body: serde_json::Value = r.json().await.unwrap();
    let first = &body["error"]["details"]["diagnostics"][0];
    assert!(
        first["line"].as_u64().unwrap() > 1 && first["column"].as_u64().unwrap() >= 1,
        "{body}"
    );
    assert!(!first["message"].as_str().unwrap().is_empty());
    assert!(
        body["error"]["details"]["rendered"]
            .as_str()
            .unwrap()
            .contains("flightdeck.yml:")
    );
    let versions: i64 = sqlx::query_scalar("select count(*) from definition_version")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(versions, 1, "nothing was written");
}

#[tokio::test]
async fn a_definition_for_another_project_or_not_utf8_is_refused() {
    let app = TestApp::spawn().await;
    let token = app.token(&[Scope::DefinitionWrite]).await;
    let client = app.anonymous();
    let r = client
        .put(app.url("/api/v1/projects/other/definition"))
        .bearer_auth(&token)
        .body(SAMPLE)
        .send()
        .await
        .unwrap();
    assert_status(&r, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text().await.unwrap().contains("not `other`"));
    let r = client
        .put(app.url("/api/v1/projects/studybuddy/definition"))
        .bearer_auth(&token)
        .body(vec![0xff, 0xfe, 0x00])
        .send()
        .await
        .unwrap();
    assert_status(&r, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text().await.unwrap().contains("not UTF-8"));
}

#[tokio::test]
async fn an_oversized_body_gets_413_and_nothing_is_written() {
    let app = TestApp::spawn().await;
    let token = app.token(&[Scope::DefinitionWrite]).await;
    let huge = format!("{SAMPLE}\n# {}\n", "x".repeat(2 * 1024 * 1024));
    let r = app
        .anonymous()
        .put(app.url("/api/v1/projects/studybuddy/definition"))
        .bearer_auth(&token)
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_status(&r, StatusCode::PAYLOAD_TOO_LARGE);
    let big = format!("{SAMPLE}\n# {}\n", "x".repeat(600 * 1024));
    let r = app
        .anonymous()
        .put(app.url("/api/v1/projects/studybuddy/definition"))
        .bearer_auth(&token)
        .body(big)
        .send()
        .await
        .unwrap();
    assert_status(&r, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(r.text().await.unwrap().contains("the limit is"));
    let versions: i64 = sqlx::query_scalar("select count(*) from definition_version")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(versions, 1);
}

#[tokio::test]
async fn unknown_pages_and_api_routes_answer_404() {
    let app = TestApp::spawn().await;
    let viewer = app.person(Role::Viewer).await;
    let page = viewer.get(app.url("/no/such/page")).send().await.unwrap();
    assert_status(&page, StatusCode::NOT_FOUND);
    assert!(page.text().await.unwrap().contains("Page not found"));
    let project = viewer
        .get(app.url("/api/v1/projects/nope/overview"))
        .send()
        .await
        .unwrap();
    assert_status(&project, StatusCode::NOT_FOUND);
    let body: serde_json::Value = project.json().await.unwrap();
    assert_eq!(body["error"]["message"], "there is no project `nope`");
}

#[tokio::test]
async fn pausing_a_schedule_twice_changes_it_once() {
    let app = TestApp::spawn().await;
    let token = app.token(&[Scope::SchedulesWrite]).await;
    let client = app.anonymous();
    for expected in [true, false] {
        let r = client
            .post(app.url("/api/v1/projects/studybuddy/schedules/staging/pause"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["changed"], expected);
    }
    assert_eq!(app.audit_count("schedule.paused").await, 1);
    let r = client
        .post(app.url("/api/v1/projects/studybuddy/schedules/hourly/pause"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_status(&r, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn health_and_readiness_answer_without_signing_in() {
    let app = TestApp::spawn().await;
    let health = app
        .anonymous()
        .get(app.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_status(&health, StatusCode::OK);
    let ready: serde_json::Value = app
        .anonymous()
        .get(app.url("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["ready"], true, "{ready}");
}
