//! Releases and deployments end to end on a real server: a green run makes a release that its
//! deploy stage takes into development; a promotion into staging runs every stage in order —
//! the deploy job and the tests as runs on a real runner, a checklist people tick, gates with
//! role and self-approval rules, a check that measured nothing and waits for a person — and a
//! production deploy waits for approvals and for its window, checked when it starts.

use crate::helpers::TestApp;
use crate::runs::repository;
use chrono::{Duration as Span, TimeZone, Utc};
use domain::audit::{Actor, Origin};
use domain::clock::Clock;
use domain::deployment::decide::{Decision, decide};
use domain::deployment::store::{PromoteRequest, Promoted, ReleaseChoice, promote};
use domain::deployment::{DeploymentError, DeploymentTrigger};
use domain::environment::Acting;
use domain::role::Role;
use domain::state::RunState;
use std::time::{Duration, Instant};

const SHIP: &str = r#"
project:
  name: Ship
  key: ship
triggers:
  push:
    branches: [main]
environments:
  dev: {}
  staging:
    protection:
      allowed_roles: [developer, qa, release-manager]
  production:
    protection:
      required_approvals: 1
      allowed_roles: [release-manager]
    deploy_window:
      schedule: "0 2 * * SUN"
      duration: 4h
      timezone: Europe/Berlin
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
          job:
            steps:
              - echo "deploying $FLIGHTDECK_RELEASE to $FLIGHTDECK_ENVIRONMENT at $BASE_URL"
  staging:
    title: Staging
    stages:
      deploy-staging:
        deploy:
          environment: staging
          job:
            steps:
              - echo "deploying to $FLIGHTDECK_ENVIRONMENT"
      smoke:
        jobs:
          smoke:
            steps:
              - test "$BASE_URL" != "" && echo "smoke against $BASE_URL"
      manual-testing:
        manual:
          checklist: checks.md
      qa-approval:
        gate:
          role: qa
      user-acceptance:
        gate:
          role: product
      monitoring:
        check:
          environment: staging
          window: 30m
          fail_on:
            error_rate_above: 2.0
  production:
    title: Production
    stages:
      deploy-production:
        deploy:
          environment: production
          job:
            steps:
              - echo "deploying to production"
      feature-flags:
        flags:
          environment: production
          set:
            smart-reminders:
              enabled: true
              rollout: 10
"#;

const CHECKS: &str = "# Checks\n\n## Basics\n\n1. The page opens.\n2. A session can be planned\n   with a reminder.\n";

/// A project whose repository holds SHIP and its checklist, a runner, and people.
async fn ship() -> TestApp {
    let app = TestApp::spawn_empty().await;
    let (dir, _) = repository(SHIP, &[("checks.md", CHECKS)]);
    app.load_project(SHIP, &dir).await;
    for (name, role) in [
        ("dev1", Role::Developer),
        ("qa1", Role::Qa),
        ("qa2", Role::Qa),
        ("pm1", Role::Product),
        ("rm1", Role::ReleaseManager),
        ("rm2", Role::ReleaseManager),
    ] {
        app.add_user(name, role).await;
    }
    app.runner("test-runner", &["linux"]).await;
    app
}

fn person(name: &str, role: Role) -> Acting {
    Acting::Person {
        name: name.into(),
        role,
    }
}

/// Waits (polling, with a generous deadline) until `check` holds, saying what was waited for.
pub async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn deployment_state(app: &TestApp, number: i64) -> (RunState, Option<String>) {
    let row: (String, Option<String>) =
        sqlx::query_as("select state, reason from deployment where number = $1")
            .bind(number)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    (row.0.parse().unwrap(), row.1)
}

async fn stage_state(app: &TestApp, number: i64, stage: &str) -> (RunState, Option<String>) {
    let row: (String, Option<String>) = sqlx::query_as(
        "select s.state, s.reason from deployment_stage s join deployment d using (deployment_id)
         where d.number = $1 and s.name = $2",
    )
    .bind(number)
    .bind(stage)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    (row.0.parse().unwrap(), row.1)
}

async fn wait_stage(app: &TestApp, number: i64, stage: &str, state: RunState) {
    until(
        &format!("deployment #{number}'s {stage} is {state:?}"),
        || async {
            let (now, reason) = stage_state(app, number, stage).await;
            assert!(
                !(now.is_finished() && now != state),
                "{stage} ended {now:?} ({reason:?}) instead of {state:?}"
            );
            now == state
        },
    )
    .await;
}

async fn current_release(app: &TestApp, environment: &str) -> Option<String> {
    sqlx::query_scalar("select current_release from environment where name = $1")
        .bind(environment)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

async fn start_green_run(app: &TestApp) -> String {
    let developer = app.person(Role::Developer).await;
    let (status, body) = app
        .api(
            &developer,
            reqwest::Method::POST,
            "/api/v1/projects/ship/runs",
            Some(serde_json::json!({ "branch": "main" })),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "{body}");
    let detail = app.finished_run("ship", 1, Duration::from_secs(120)).await;
    assert_eq!(detail.summary.state, RunState::Succeeded, "{detail:#?}");
    until("the run's release exists", || async {
        sqlx::query_scalar::<_, i64>("select count(*) from release")
            .fetch_one(&app.pool)
            .await
            .unwrap()
            == 1
    })
    .await;
    sqlx::query_scalar("select version from release")
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

async fn promote_as(
    app: &TestApp,
    acting: Acting,
    environment: &str,
    release: ReleaseChoice,
) -> Result<Promoted, DeploymentError> {
    promote(
        &app.pool,
        &PromoteRequest {
            project: "ship".into(),
            environment: environment.into(),
            release,
            actor: Actor::system(),
            acting,
            trigger: DeploymentTrigger::Manual,
            idempotency_key: None,
        },
        &Origin::default(),
        app.clock.now(),
    )
    .await
}

async fn decide_as(
    app: &TestApp,
    acting: Acting,
    number: i64,
    stage: &str,
    decision: Decision,
) -> Result<(), DeploymentError> {
    decide(
        &app.pool,
        "ship",
        number,
        stage,
        decision,
        &acting,
        &Actor::system(),
        &Origin::default(),
        app.clock.now(),
    )
    .await
}

#[tokio::test]
async fn a_green_run_makes_one_release_that_its_deploy_stage_takes_into_development() {
    let app = ship().await;
    let version = start_green_run(&app).await;
    let today = app.clock.now().format("%Y.%m.%d").to_string();
    assert_eq!(version, format!("{today}-1"));
    let pinned: bool = sqlx::query_scalar("select bool_and(pinned) from artifact")
        .fetch_one(&app.pool)
        .await
        .unwrap_or(true);
    assert!(pinned, "the release's artifacts are pinned");
    assert_eq!(app.audit_count("release.created").await, 1);

    // The CI part ends with deploy-dev: deployment #1, its job a run of the same engine.
    wait_stage(&app, 1, "deploy-dev", RunState::Succeeded).await;
    assert_eq!(deployment_state(&app, 1).await.0, RunState::Succeeded);
    assert_eq!(
        current_release(&app, "dev").await.as_deref(),
        Some(version.as_str())
    );
    let deploy_run = app.finished_run("ship", 2, Duration::from_secs(60)).await;
    assert_eq!(deploy_run.summary.state, RunState::Succeeded);
    let log: Vec<String> = sqlx::query_scalar(
        "select l.text from log_line l join job j using (job_id) join run r using (run_id)
         where r.number = 2 order by l.line_no",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert!(
        log.iter().any(
            |l| l.contains(&format!("deploying {version} to dev at http://"))
                && l.contains("/env/ship/dev/")
        ),
        "the deploy job knows its release, environment and site: {log:#?}"
    );
    // The release was described from the repository: the commit that made it.
    until("the release's commits are read", || async {
        sqlx::query_scalar::<_, i64>("select count(*) from release_commit")
            .fetch_one(&app.pool)
            .await
            .unwrap()
            == 1
    })
    .await;
    let notes: String = sqlx::query_scalar("select notes from release")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(notes, "- Add the pipeline (Tess Tester)");
    assert_eq!(app.audit_count("deployment.deployed").await, 1);
}

#[tokio::test]
async fn staging_runs_every_stage_in_order_with_people_deciding_at_its_gates() {
    let app = ship().await;
    let version = start_green_run(&app).await;
    wait_stage(&app, 1, "deploy-dev", RunState::Succeeded).await;

    // A product manager may not deploy to staging; QA may.
    let refused = promote_as(
        &app,
        person("pm1", Role::Product),
        "staging",
        ReleaseChoice::NewestEligible,
    )
    .await;
    assert!(
        matches!(refused, Err(DeploymentError::Refused(_))),
        "{refused:?}"
    );
    let Promoted::Started(created) = promote_as(
        &app,
        person("qa1", Role::Qa),
        "staging",
        ReleaseChoice::NewestEligible,
    )
    .await
    .unwrap() else {
        panic!("started");
    };
    assert_eq!(
        (created.number, created.version.as_str()),
        (2, version.as_str())
    );
    let again = promote_as(
        &app,
        person("qa2", Role::Qa),
        "staging",
        ReleaseChoice::NewestEligible,
    )
    .await;
    assert!(
        matches!(again, Err(DeploymentError::Busy { .. })),
        "{again:?}"
    );

    wait_stage(&app, 2, "deploy-staging", RunState::Succeeded).await;
    wait_stage(&app, 2, "smoke", RunState::Succeeded).await;
    assert_eq!(
        current_release(&app, "staging").await.as_deref(),
        Some(version.as_str())
    );
    wait_stage(&app, 2, "manual-testing", RunState::Waiting).await;
    assert_eq!(
        stage_state(&app, 2, "manual-testing").await.1.as_deref(),
        Some("0 of 2 checklist items ticked; QA, developers or release managers tick them")
    );
    // Ticking: a viewer-like product manager may not; an item out of range is refused.
    let refused = decide_as(
        &app,
        person("pm1", Role::Product),
        2,
        "manual-testing",
        Decision::Tick { item: 1 },
    )
    .await;
    assert!(
        matches!(refused, Err(DeploymentError::Refused(_))),
        "{refused:?}"
    );
    let out_of_range = decide_as(
        &app,
        person("qa2", Role::Qa),
        2,
        "manual-testing",
        Decision::Tick { item: 3 },
    )
    .await;
    assert!(
        matches!(out_of_range, Err(DeploymentError::BadInput(_))),
        "{out_of_range:?}"
    );
    // A gate later in the order cannot be decided yet.
    let early = decide_as(
        &app,
        person("qa2", Role::Qa),
        2,
        "qa-approval",
        Decision::Approve { comment: None },
    )
    .await;
    assert!(
        matches!(early, Err(DeploymentError::NotNow(_))),
        "{early:?}"
    );
    decide_as(
        &app,
        person("qa2", Role::Qa),
        2,
        "manual-testing",
        Decision::Tick { item: 1 },
    )
    .await
    .unwrap();
    decide_as(
        &app,
        person("dev1", Role::Developer),
        2,
        "manual-testing",
        Decision::Tick { item: 2 },
    )
    .await
    .unwrap();
    wait_stage(&app, 2, "qa-approval", RunState::Waiting).await;

    // QA: the person who deployed it may not approve; a developer has not the role; qa2 may.
    let own = decide_as(
        &app,
        person("qa1", Role::Qa),
        2,
        "qa-approval",
        Decision::Approve { comment: None },
    )
    .await;
    assert!(
        matches!(&own, Err(DeploymentError::Refused(r)) if r.reason.contains("deployed this release")),
        "{own:?}"
    );
    let wrong_role = decide_as(
        &app,
        person("dev1", Role::Developer),
        2,
        "qa-approval",
        Decision::Approve { comment: None },
    )
    .await;
    assert!(
        matches!(wrong_role, Err(DeploymentError::Refused(_))),
        "{wrong_role:?}"
    );
    decide_as(
        &app,
        person("qa2", Role::Qa),
        2,
        "qa-approval",
        Decision::Approve {
            comment: Some("tested on a Pixel 8".into()),
        },
    )
    .await
    .unwrap();
    wait_stage(&app, 2, "user-acceptance", RunState::Waiting).await;
    let no_comment = decide_as(
        &app,
        person("pm1", Role::Product),
        2,
        "user-acceptance",
        Decision::Reject {
            comment: " ".into(),
        },
    )
    .await;
    assert!(
        matches!(no_comment, Err(DeploymentError::BadInput(_))),
        "{no_comment:?}"
    );
    decide_as(
        &app,
        person("pm1", Role::Product),
        2,
        "user-acceptance",
        Decision::Approve { comment: None },
    )
    .await
    .unwrap();

    // The check has nothing to measure: it says so and waits for a release manager.
    wait_stage(&app, 2, "monitoring", RunState::Waiting).await;
    assert!(
        stage_state(&app, 2, "monitoring")
            .await
            .1
            .unwrap()
            .starts_with("inconclusive: no sessions yet")
    );
    assert_eq!(deployment_state(&app, 2).await.0, RunState::Waiting);
    let no_reason = decide_as(
        &app,
        person("rm1", Role::ReleaseManager),
        2,
        "monitoring",
        Decision::Pass { comment: "".into() },
    )
    .await;
    assert!(
        matches!(no_reason, Err(DeploymentError::BadInput(_))),
        "{no_reason:?}"
    );
    decide_as(
        &app,
        person("rm1", Role::ReleaseManager),
        2,
        "monitoring",
        Decision::Pass {
            comment: "watched the logs by hand".into(),
        },
    )
    .await
    .unwrap();
    until("deployment #2 succeeded", || async {
        deployment_state(&app, 2).await.0 == RunState::Succeeded
    })
    .await;
    for action in [
        "deployment.created",
        "deployment.checklist_ticked",
        "deployment.approved",
        "deployment.check_passed",
    ] {
        assert!(app.audit_count(action).await >= 1, "{action} audited");
    }
    assert_eq!(app.audit_count("deployment.checklist_ticked").await, 2);
}

#[tokio::test]
async fn a_rejection_stops_the_promotion_and_says_why() {
    let app = ship().await;
    start_green_run(&app).await;
    wait_stage(&app, 1, "deploy-dev", RunState::Succeeded).await;
    promote_as(
        &app,
        person("rm1", Role::ReleaseManager),
        "staging",
        ReleaseChoice::NewestEligible,
    )
    .await
    .unwrap();
    wait_stage(&app, 2, "manual-testing", RunState::Waiting).await;
    decide_as(
        &app,
        person("qa1", Role::Qa),
        2,
        "manual-testing",
        Decision::Fail {
            comment: "reminders never fire".into(),
        },
    )
    .await
    .unwrap();
    let (state, reason) = deployment_state(&app, 2).await;
    assert_eq!(state, RunState::Failed);
    assert_eq!(
        reason.as_deref(),
        Some("manual-testing failed: failed by qa1: reminders never fire")
    );
    for stage in ["qa-approval", "user-acceptance", "monitoring"] {
        assert_eq!(
            stage_state(&app, 2, stage).await.0,
            RunState::Skipped,
            "{stage}"
        );
    }
    // Nothing passed staging, so production has nothing to take.
    let none = promote_as(
        &app,
        person("rm1", Role::ReleaseManager),
        "production",
        ReleaseChoice::NewestEligible,
    )
    .await;
    assert!(
        matches!(&none, Err(DeploymentError::NothingEligible { why, .. }) if why.contains("staging")),
        "{none:?}"
    );
}

#[tokio::test]
async fn production_waits_for_another_persons_approval_then_for_its_window_checked_at_start() {
    let app = ship().await;
    let version = start_green_run(&app).await;
    wait_stage(&app, 1, "deploy-dev", RunState::Succeeded).await;
    // Inside the window (a Sunday, 03:00 in Berlin) when it is queued…
    let sunday = chrono_tz::Europe::Berlin
        .with_ymd_and_hms(2027, 1, 10, 3, 0, 0)
        .unwrap()
        .with_timezone(&Utc);
    app.clock.advance(sunday - app.clock.now());
    promote_as(
        &app,
        person("rm1", Role::ReleaseManager),
        "production",
        ReleaseChoice::Version(version.clone()),
    )
    .await
    .unwrap();
    wait_stage(&app, 2, "deploy-production", RunState::Waiting).await;
    let reason = stage_state(&app, 2, "deploy-production").await.1.unwrap();
    assert!(
        reason.contains("0 of 1 approval by someone other than rm1"),
        "{reason}"
    );
    assert!(reason.contains("rm2"), "says who can approve: {reason}");
    let own = decide_as(
        &app,
        person("rm1", Role::ReleaseManager),
        2,
        "deploy-production",
        Decision::Approve { comment: None },
    )
    .await;
    assert!(matches!(own, Err(DeploymentError::NotNow(_))), "{own:?}");
    // …approved an hour after the window closed: it starts outside, so it waits.
    app.clock.advance(Span::hours(4));
    decide_as(
        &app,
        person("rm2", Role::ReleaseManager),
        2,
        "deploy-production",
        Decision::Approve { comment: None },
    )
    .await
    .unwrap();
    until("the deploy waits for its window", || async {
        stage_state(&app, 2, "deploy-production")
            .await
            .1
            .is_some_and(|r| r.starts_with("outside the deploy window"))
    })
    .await;
    let reason = stage_state(&app, 2, "deploy-production").await.1.unwrap();
    assert!(reason.contains("Sun 17 Jan 02:00 CET"), "{reason}");
    assert_eq!(current_release(&app, "production").await, None);
    // A QA person may not override; a release manager may, with a reason, audited as security.
    let qa = decide_as(
        &app,
        person("qa1", Role::Qa),
        2,
        "deploy-production",
        Decision::OverrideWindow {
            reason: "hotfix".into(),
        },
    )
    .await;
    assert!(matches!(qa, Err(DeploymentError::Refused(_))), "{qa:?}");
    decide_as(
        &app,
        person("rm2", Role::ReleaseManager),
        2,
        "deploy-production",
        Decision::OverrideWindow {
            reason: "security fix".into(),
        },
    )
    .await
    .unwrap();
    wait_stage(&app, 2, "deploy-production", RunState::Succeeded).await;
    assert_eq!(
        current_release(&app, "production").await.as_deref(),
        Some(version.as_str())
    );
    let security: i64 = sqlx::query_scalar(
        "select count(*) from audit_event where action = 'deployment.window_overridden' and security",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(security, 1);
}

#[tokio::test]
async fn the_rest_api_promotes_once_per_idempotency_key_and_decides_with_the_same_rules() {
    let app = ship().await;
    start_green_run(&app).await;
    wait_stage(&app, 1, "deploy-dev", RunState::Succeeded).await;
    let qa = app.sign_in("qa1").await;
    let path = "/api/v1/projects/ship/environments/staging/deployments";
    let mut numbers = Vec::new();
    for _ in 0..3 {
        let response = qa
            .post(app.url(path))
            .header("idempotency-key", "nightly-42")
            .json(&serde_json::json!({}))
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body: serde_json::Value = response.json().await.unwrap();
        assert!(status.is_success(), "{status} {body}");
        numbers.push(body["number"].as_i64().unwrap());
    }
    assert_eq!(numbers, [2, 2, 2], "one deployment for one key");
    // A product manager may not deploy to staging: 403 with the reason.
    let pm = app.sign_in("pm1").await;
    let (status, body) = app
        .api(
            &pm,
            reqwest::Method::POST,
            path,
            Some(serde_json::json!({})),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::FORBIDDEN, "{body}");
    assert!(
        body.to_string().contains("pm1 may not deploy in staging"),
        "{body}"
    );
    // An API token holds no role.
    let token = app.token(&[domain::auth::Scope::RunsWrite]).await;
    let response = app
        .anonymous()
        .post(app.url("/api/v1/projects/ship/environments/dev/deployments"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::FORBIDDEN);
    // Decisions: a bad one says what is wrong; a good one is recorded.
    wait_stage(&app, 2, "manual-testing", RunState::Waiting).await;
    let decisions = "/api/v1/projects/ship/deployments/2/stages/manual-testing/decisions";
    let (status, body) = app
        .api(
            &qa,
            reqwest::Method::POST,
            decisions,
            Some(serde_json::json!({ "decision": "tick" })),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::BAD_REQUEST, "{body}");
    assert!(body.to_string().contains("needs `item`"), "{body}");
    let (status, body) = app
        .api(
            &qa,
            reqwest::Method::POST,
            decisions,
            Some(serde_json::json!({ "decision": "tick", "item": 1 })),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::OK, "{body}");
    let (status, body) = app
        .api(
            &qa,
            reqwest::Method::POST,
            "/api/v1/projects/ship/deployments/2/stages/qa-approval/decisions",
            Some(serde_json::json!({ "decision": "approve" })),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::CONFLICT, "{body}");
}

const SLOW_DEPLOY: &str = r#"
project:
  name: Ship
  key: ship
environments:
  dev: {}
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
          job:
            steps:
              - while [ ! -f MARKER ]; do sleep 0.2; done; echo "deployed"
"#;

#[tokio::test]
async fn a_deployment_whose_replica_dies_mid_deploy_is_resumed_once_by_another() {
    let mut first = TestApp::spawn_empty().await;
    let marker = std::env::temp_dir().join(format!(
        "flightdeck-deploy-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let definition = SLOW_DEPLOY.replace("MARKER", marker.to_str().unwrap());
    let (dir, _) = repository(&definition, &[]);
    first.load_project(&definition, &dir).await;
    let first_runner = first.runner("first-runner", &["linux"]).await;
    let developer = first.person(Role::Developer).await;
    let (status, body) = first
        .api(
            &developer,
            reqwest::Method::POST,
            "/api/v1/projects/ship/runs",
            Some(serde_json::json!({ "branch": "main" })),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "{body}");
    // The deploy job runs (and waits for the marker) on the first replica's runner.
    until("the deploy job runs", || async {
        sqlx::query_scalar::<_, i64>(
            "select count(*) from job j join run r using (run_id) where r.number = 2 and j.state = 'running'",
        )
        .fetch_one(&first.pool)
        .await
        .unwrap()
            == 1
    })
    .await;
    assert_eq!(
        stage_state(&first, 1, "deploy-dev").await.0,
        RunState::Running
    );
    // The replica and its runner die.
    first_runner.cancel();
    first.crash();

    // Another replica starts on the same database; once the leases run out it takes the
    // deployment over, the lost job goes back to the queue, and a new runner finishes it.
    let second = TestApp::spawn_on(first.options.clone()).await;
    let _second_runner = second.runner("second-runner", &["linux"]).await;
    std::fs::write(&marker, "go").unwrap();
    until("the deployment finishes on the second replica", || async {
        // Time moves past the leases (the deployment's and the job's) and the requeue backoff.
        second.clock.advance(Span::seconds(15));
        deployment_state(&second, 1).await.0.is_finished()
    })
    .await;
    assert_eq!(deployment_state(&second, 1).await.0, RunState::Succeeded);
    assert!(current_release(&second, "dev").await.is_some());
    // One deployment, one deploy run: resumed, not repeated.
    let (deployments, runs): (i64, i64) = sqlx::query_as(
        "select (select count(*) from deployment), (select count(*) from run where deployment_stage_id is not null)",
    )
    .fetch_one(&second.pool)
    .await
    .unwrap();
    assert_eq!((deployments, runs), (1, 1));
    let attempts: i32 = sqlx::query_scalar(
        "select j.attempt from job j join run r using (run_id) where r.number = 2",
    )
    .fetch_one(&second.pool)
    .await
    .unwrap();
    assert!(
        attempts >= 2,
        "the lost attempt was taken back and run again ({attempts})"
    );
    assert_eq!(second.audit_count("deployment.deployed").await, 1);
    let _ = std::fs::remove_file(marker);
}
