//! Separation of duties at gates: nobody decides on a release they deployed or whose commits
//! they wrote, and a gate's `admins_decide_own_releases: true` lets admins (only them) do so,
//! audited as security. The deployment page, the inbox and the decision agree.

use crate::deployments::until;
use crate::helpers::TestApp;
use crate::runs::repository;
use domain::audit::{Actor, Origin};
use domain::clock::Clock;
use domain::deployment::DeploymentError;
use domain::deployment::DeploymentTrigger;
use domain::deployment::decide::{Decision, decide};
use domain::deployment::query::{detail, inbox};
use domain::deployment::store::{PromoteRequest, ReleaseChoice, promote};
use domain::environment::Acting;
use domain::release_view::StageAction;
use domain::role::Role;
use std::time::Duration;

const GATED: &str = r#"
project:
  name: Gated
  key: gated
triggers:
  push:
    branches: [main]
environments:
  dev: {}
  staging: {}
phases:
  ci:
    title: CI
    stages:
      checks:
        jobs:
          check:
            steps:
              - echo checked
      deploy-dev:
        deploy:
          environment: dev
  staging:
    title: Staging
    stages:
      deploy-staging:
        deploy:
          environment: staging
      qa-approval:
        gate:
          role: qa
          admins_decide_own_releases: true
      user-acceptance:
        gate:
          role: product
"#;

fn person(name: &str, role: Role) -> Acting {
    Acting::Person {
        name: name.into(),
        role,
    }
}

async fn decide_as(app: &TestApp, acting: &Acting, stage: &str) -> Result<(), DeploymentError> {
    decide(
        &app.pool,
        "gated",
        2,
        stage,
        Decision::Approve { comment: None },
        acting,
        &Actor::system(),
        &Origin::default(),
        app.clock.now(),
    )
    .await
}

async fn stage_state(app: &TestApp, stage: &str) -> String {
    sqlx::query_scalar(
        "select s.state from deployment_stage s join deployment d using (deployment_id)
         where d.number = 2 and s.name = $1",
    )
    .bind(stage)
    .fetch_one(&app.pool)
    .await
    .unwrap()
}

/// The approve and reject actions the deployment page offers `acting` on `stage`.
async fn offered(app: &TestApp, acting: &Acting, stage: &str) -> bool {
    let page = detail(&app.pool, "gated", 2, acting, app.clock.now())
        .await
        .unwrap();
    let stage = page.stages.iter().find(|s| s.name == stage).unwrap();
    stage.actions.contains(&StageAction::Approve)
}

#[tokio::test]
async fn only_admins_decide_on_their_own_release_and_only_where_the_gate_lets_them() {
    let app = TestApp::spawn_empty().await;
    // The repository's commit is by Tess Tester <tess@example.com>: tess wrote this release.
    let (dir, _) = repository(GATED, &[]);
    app.load_project(GATED, &dir).await;
    for (name, role) in [
        ("tess", Role::Admin),
        ("ada", Role::Admin),
        ("qa1", Role::Qa),
        ("pm1", Role::Product),
        ("rm1", Role::ReleaseManager),
    ] {
        app.add_user(name, role).await;
    }
    app.runner("test-runner", &["linux"]).await;
    let developer = app.person(Role::Developer).await;
    let (status, body) = app
        .api(
            &developer,
            reqwest::Method::POST,
            "/api/v1/projects/gated/runs",
            Some(serde_json::json!({ "branch": "main" })),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "{body}");
    app.finished_run("gated", 1, Duration::from_secs(120)).await;
    until("the release reached dev", || async {
        sqlx::query_scalar::<_, Option<String>>(
            "select current_release from environment where name = 'dev'",
        )
        .fetch_one(&app.pool)
        .await
        .unwrap()
        .is_some()
    })
    .await;
    promote(
        &app.pool,
        &PromoteRequest {
            project: "gated".into(),
            environment: "staging".into(),
            release: ReleaseChoice::NewestEligible,
            actor: Actor::system(),
            acting: person("rm1", Role::ReleaseManager),
            trigger: DeploymentTrigger::Manual,
            idempotency_key: None,
        },
        &Origin::default(),
        app.clock.now(),
    )
    .await
    .unwrap();
    until("qa-approval waits", || async {
        stage_state(&app, "qa-approval").await == "waiting"
    })
    .await;

    let tess = person("tess", Role::Admin);
    // The QA gate lets admins decide on their own release: the page offers it, and it counts.
    assert!(offered(&app, &tess, "qa-approval").await);
    decide_as(&app, &tess, "qa-approval").await.unwrap();
    until("user-acceptance waits", || async {
        stage_state(&app, "user-acceptance").await == "waiting"
    })
    .await;
    let (security, details): (bool, serde_json::Value) = sqlx::query_as(
        "select security, details from audit_event where action = 'deployment.approved'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!(
        security,
        "an admin deciding on their own release is a security event"
    );
    assert_eq!(details["own_release"], true, "{details}");

    // User acceptance keeps the default: tess wrote it, so neither the page, the inbox nor
    // the decision lets her, and each says why.
    assert!(!offered(&app, &tess, "user-acceptance").await);
    let page = detail(&app.pool, "gated", 2, &tess, app.clock.now())
        .await
        .unwrap();
    let stage = page
        .stages
        .iter()
        .find(|s| s.name == "user-acceptance")
        .unwrap();
    assert!(
        stage
            .why_not
            .as_deref()
            .is_some_and(|w| w.contains("tess wrote commits")),
        "{stage:?}"
    );
    let refused = decide_as(&app, &tess, "user-acceptance").await;
    assert!(
        matches!(&refused, Err(DeploymentError::Refused(r))
            if r.reason.contains("tess wrote commits in this release")
            && r.reason.contains("admins_decide_own_releases")),
        "{refused:?}"
    );
    let (outcome, security): (String, bool) = sqlx::query_as(
        "select outcome, security from audit_event where action = 'deployment.decision_refused'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!((outcome.as_str(), security), ("denied", true));
    let items = inbox(&app.pool, &tess).await.unwrap();
    let why_not = items[0].why_not.as_deref().unwrap_or_default();
    assert!(why_not.contains("wrote commits"), "{why_not}");
    // The deployer, rm1, is no product manager; an admin who neither wrote nor deployed it
    // decides; so would the product manager.
    assert_eq!(
        inbox(&app.pool, &person("pm1", Role::Product))
            .await
            .unwrap()[0]
            .why_not,
        None
    );
    let ada = person("ada", Role::Admin);
    assert!(offered(&app, &ada, "user-acceptance").await);
    decide_as(&app, &ada, "user-acceptance").await.unwrap();
    assert_eq!(stage_state(&app, "user-acceptance").await, "succeeded");
    let (security,): (bool,) = sqlx::query_as(
        "select security from audit_event where action = 'deployment.approved' order by audit_event_id desc limit 1",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!(!security, "an ordinary approval is not a security event");
}
