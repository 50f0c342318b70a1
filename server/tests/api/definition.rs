//! The project's current definition: an explicit pointer that only a definition upload (or the
//! operator's CLI) moves. Runs keep the definition of their commit for themselves, earlier
//! versions can be made current again, and a change to who may deploy needs a release manager.

use crate::helpers::{TestApp, assert_status};
use crate::runs::TINY;
use domain::auth::Scope;
use domain::role::Role;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::process::Command;

/// TINY with a protected `dev`: two approvals, release managers only, and a manual rollback
/// policy for admins only.
fn guarded(text: &str) -> String {
    text.replace(
        "environments:\n  dev: {}",
        "environments:\n  dev:\n    protection:\n      required_approvals: 2\n      allowed_roles: [release-manager]\nrollback:\n  manual:\n    roles: [admin]",
    )
}

fn git(dir: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=Mallory",
            "-c",
            "user.email=mallory@example.com",
        ])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

async fn dev_protection(app: &TestApp) -> (u8, Vec<Role>) {
    let definition = domain::project::current_definition(&app.pool, "tiny")
        .await
        .unwrap()
        .expect("tiny has a definition");
    let dev = definition.environment("dev").unwrap();
    (
        dev.protection.required_approvals,
        dev.protection.allowed_roles.clone(),
    )
}

#[tokio::test]
async fn a_run_of_a_branch_with_another_definition_does_not_change_the_projects() {
    let app = TestApp::spawn().await;
    let (repo, _) = app.project(TINY).await;
    let before = dev_protection(&app).await;
    // A branch that loosens nothing visible but rewrites who may deploy.
    git(&repo, &["checkout", "-q", "-b", "sneaky"]);
    std::fs::write(repo.join("flightdeck.yml"), guarded(TINY)).unwrap();
    git(
        &repo,
        &["commit", "-q", "-am", "Who may deploy, changed on a branch"],
    );
    let developer = app.person(Role::Developer).await;
    let (status, body) = app
        .api(
            &developer,
            Method::POST,
            "/api/v1/projects/tiny/runs",
            Some(serde_json::json!({ "branch": "sneaky" })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        dev_protection(&app).await,
        before,
        "a run's definition is its own"
    );
    // The run itself uses the file at its commit.
    let run_definition: String = sqlx::query_scalar(
        "select d.source from run r join definition_version d using (definition_version_id) where r.number = 1",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!(run_definition.contains("required_approvals: 2"));
}

#[tokio::test]
async fn an_earlier_definition_that_a_run_used_can_be_loaded_again() {
    let app = TestApp::spawn().await;
    app.project(TINY).await;
    let developer = app.person(Role::Developer).await;
    let (status, _) = app
        .api(&developer, Method::POST, "/api/v1/projects/tiny/runs", None)
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let token = app.token(&[Scope::DefinitionWrite]).await;
    let put = |text: String| {
        let token = token.clone();
        let client = app.anonymous();
        let url = app.url("/api/v1/projects/tiny/definition");
        async move {
            let r = client
                .put(url)
                .bearer_auth(token)
                .body(text)
                .send()
                .await
                .unwrap();
            let status = r.status();
            (status, r.json::<Value>().await.unwrap())
        }
    };
    // The text loaded first, as the run used it.
    let first: String = sqlx::query_scalar(
        "select d.source from run r join definition_version d using (definition_version_id) where r.number = 1",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    let second = first.replace("title: Checks", "title: All the checks");
    let (status, body) = put(second.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = put(first).await;
    assert!(status.is_success(), "{status}: {body}");
    assert_eq!(body["changed"], true);
    let first_version: i64 =
        sqlx::query_scalar("select definition_version_id from run where number = 1")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(
        body["version"], first_version,
        "the pointer moved back to the stored version"
    );
    // Every version is still there, unchanged.
    let versions: i64 = sqlx::query_scalar("select count(*) from definition_version")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(versions >= 2);
    let current = domain::project::current_definition(&app.pool, "tiny")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(current.stages().next().unwrap().title, "Checks");
    // And forward again.
    let (status, body) = put(second).await;
    assert!(status.is_success(), "{status}: {body}");
}

#[tokio::test]
async fn who_may_deploy_is_changed_by_a_release_manager_after_seeing_the_difference() {
    let app = TestApp::spawn().await;
    app.project(TINY).await;
    let before = dev_protection(&app).await;
    let url = "/api/v1/projects/tiny/definition";
    let put = |client: reqwest::Client, query: &'static str| {
        let url = app.url(&format!("{url}{query}"));
        async move {
            let r = client.put(url).body(guarded(TINY)).send().await.unwrap();
            let status = r.status();
            (status, r.json::<Value>().await.unwrap())
        }
    };
    // A developer (who may load definitions) may not change protection or the rollback policy.
    let developer = app.person(Role::Developer).await;
    let (status, body) = put(developer, "").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("release manager"), "{message}");
    assert!(
        body["error"]["details"]["changes"]
            .as_array()
            .is_some_and(|c| c.len() >= 2),
        "{body}"
    );
    assert_eq!(dev_protection(&app).await, before, "nothing applied");
    // A token is nobody's role either.
    let token = app.token(&[Scope::DefinitionWrite]).await;
    let r = app
        .anonymous()
        .put(app.url(url))
        .bearer_auth(token)
        .body(guarded(TINY))
        .send()
        .await
        .unwrap();
    assert_status(&r, StatusCode::FORBIDDEN);
    // A release manager previews the difference, then applies it.
    let manager = app.person(Role::ReleaseManager).await;
    let (status, preview) = put(manager.clone(), "?preview=true").await;
    assert_eq!(status, StatusCode::OK, "{preview}");
    assert_eq!(preview["changed"], false);
    let changes = preview["changes"].as_array().unwrap();
    let described: Vec<&str> = changes
        .iter()
        .map(|c| c["what"].as_str().unwrap())
        .collect();
    assert!(
        described
            .iter()
            .any(|w| w.contains("dev") && w.contains("approvals")),
        "{described:?}"
    );
    assert!(
        described.iter().any(|w| w.contains("rollback")),
        "{described:?}"
    );
    assert_eq!(
        dev_protection(&app).await,
        before,
        "a preview applies nothing"
    );
    let (status, body) = put(manager, "").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(dev_protection(&app).await, (2, vec![Role::ReleaseManager]));
    let details: Value = sqlx::query_scalar(
        "select details from audit_event where action = 'definition.governance_changed' order by audit_event_id desc limit 1",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    let first = &details["changes"][0];
    assert!(
        !first["before"].is_null() && !first["after"].is_null(),
        "{details}"
    );
}

#[tokio::test]
async fn a_push_to_a_branch_the_definition_does_not_list_starts_no_run() {
    let app = TestApp::spawn().await;
    let listed = TINY.replace(
        "environments:",
        "triggers:\n  push:\n    branches: [main, release/*]\nenvironments:",
    );
    let (repo, _) = app.project(&listed).await;
    git(&repo, &["checkout", "-q", "-b", "experiment"]);
    let token = app.token(&[Scope::RunsWrite]).await;
    let push = |branch: &'static str| {
        let client = app.anonymous();
        let url = app.url("/api/v1/projects/tiny/runs");
        let token = token.clone();
        async move {
            let r = client
                .post(url)
                .bearer_auth(token)
                .json(&serde_json::json!({ "branch": branch, "trigger": "push" }))
                .send()
                .await
                .unwrap();
            let status = r.status();
            (status, r.json::<Value>().await.unwrap())
        }
    };
    let (status, body) = push("experiment").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["created"], false);
    assert!(
        body["reason"]
            .as_str()
            .unwrap()
            .contains("[main, release/*]"),
        "{body}"
    );
    let runs: i64 = sqlx::query_scalar("select count(*) from run")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(runs, 0);
    let (status, body) = push("main").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["number"], 1);
}
