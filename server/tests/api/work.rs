//! The runner side under stress and distrust: a token acts only for its own runner, numbers out
//! of range are refused, cancel races claims and the lease reaper without a deadlock, and a job
//! lost with its runner runs again on its own.

use crate::helpers::TestApp;
use crate::runs::TINY;
use domain::audit::{Actor, Origin};
use domain::auth::Scope;
use domain::clock::ManualClock;
use domain::role::Role;
use domain::run::protocol::Outcome;
use domain::run::store::{Commit, Runs, Trigger};
use domain::run::work::{Attempt, RunnerCaller, Secrets, Work};
use domain::state::RunState;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;

/// A runner talking the protocol by hand, with its own token.
struct ByHand {
    client: reqwest::Client,
    token: String,
    runner_id: String,
}

impl ByHand {
    async fn register(app: &TestApp, name: &str) -> ByHand {
        let token = app.token(&[Scope::Runner]).await;
        let client = app.anonymous();
        let (status, body) = call(
            app,
            &client,
            &token,
            Method::POST,
            "/api/v1/runner/register",
            json!({ "name": name, "labels": ["linux"], "version": "test" }),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        ByHand {
            client,
            token,
            runner_id: body["runner_id"].as_str().unwrap().to_string(),
        }
    }

    async fn post(&self, app: &TestApp, path: &str, body: Value) -> (StatusCode, Value) {
        call(app, &self.client, &self.token, Method::POST, path, body).await
    }
}

async fn call(
    app: &TestApp,
    client: &reqwest::Client,
    token: &str,
    method: Method,
    path: &str,
    body: Value,
) -> (StatusCode, Value) {
    let r = client
        .request(method, app.url(path))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn start_run(app: &TestApp, project: &str) {
    let developer = app.person(Role::Developer).await;
    let (status, body) = app
        .api(
            &developer,
            Method::POST,
            &format!("/api/v1/projects/{project}/runs"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[tokio::test]
async fn a_runner_token_acts_only_for_the_runner_it_registered() {
    let app = TestApp::spawn().await;
    app.project(TINY).await;
    let honest = ByHand::register(&app, "honest").await;
    let other = ByHand::register(&app, "other").await;
    start_run(&app, "tiny").await;
    let (status, job) = honest
        .post(
            &app,
            "/api/v1/runner/claim",
            json!({ "runner_id": honest.runner_id }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{job}");
    let job_path = format!("/api/v1/runner/jobs/{}", job["job_id"].as_str().unwrap());
    let attempt = job["attempt"].clone();
    // The other machine names the honest runner in every call: refused, each time.
    let as_honest = json!({ "runner_id": honest.runner_id, "attempt": attempt });
    for (path, body) in [
        (
            "/api/v1/runner/claim".to_string(),
            json!({ "runner_id": honest.runner_id }),
        ),
        (format!("{job_path}/heartbeat"), as_honest.clone()),
        (
            format!("{job_path}/logs"),
            json!({ "runner_id": honest.runner_id, "attempt": attempt, "lines": [{ "stream": "stdout", "text": "forged" }] }),
        ),
        (
            format!("{job_path}/finish"),
            json!({ "runner_id": honest.runner_id, "attempt": attempt, "outcome": "succeeded", "exit_code": 0 }),
        ),
    ] {
        let (status, body) = other.post(&app, &path, body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {body}");
    }
    // An upload that names no runner is the token's own runner's, which does not hold the job.
    let upload = other
        .client
        .put(app.url(&format!("{job_path}/artifacts/result?attempt={attempt}")))
        .bearer_auth(&other.token)
        .body("forged")
        .send()
        .await
        .unwrap();
    assert_eq!(upload.status(), StatusCode::CONFLICT);
    let upload = other
        .client
        .put(app.url(&format!(
            "{job_path}/artifacts/result?attempt={attempt}&runner_id={}",
            honest.runner_id
        )))
        .bearer_auth(&other.token)
        .body("forged")
        .send()
        .await
        .unwrap();
    assert_eq!(upload.status(), StatusCode::FORBIDDEN);
    // Registering under the honest runner's name does not take it over.
    let (status, body) = other
        .post(
            &app,
            "/api/v1/runner/register",
            json!({ "name": "honest", "labels": ["linux"], "version": "test" }),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        app.audit_count("runner.refused").await >= 5,
        "each refusal is audited"
    );
    // Nothing of the forgeries landed: the job still runs for the honest runner.
    let (status, body) = honest
        .post(&app, &format!("{job_path}/heartbeat"), as_honest)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let forged: i64 = sqlx::query_scalar("select count(*) from log_line where text = 'forged'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(forged, 0);
}

#[tokio::test]
async fn numbers_out_of_range_in_the_runner_protocol_and_log_queries_get_400() {
    let app = TestApp::spawn().await;
    app.project(TINY).await;
    let runner = ByHand::register(&app, "edge").await;
    start_run(&app, "tiny").await;
    let (_, job) = runner
        .post(
            &app,
            "/api/v1/runner/claim",
            json!({ "runner_id": runner.runner_id }),
        )
        .await;
    let job_path = format!("/api/v1/runner/jobs/{}", job["job_id"].as_str().unwrap());
    let line = json!([{ "stream": "stdout", "text": "x" }]);
    for (first_line, attempt) in [
        (json!(i32::MAX), job["attempt"].clone()),
        (json!(0), job["attempt"].clone()),
        (json!(-5), job["attempt"].clone()),
        (json!(1), json!(0)),
    ] {
        let (status, body) = runner
            .post(
                &app,
                &format!("{job_path}/logs"),
                json!({ "runner_id": runner.runner_id, "attempt": attempt, "first_line": first_line, "lines": line }),
            )
            .await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "first_line {first_line}, attempt {attempt}: {body}"
        );
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("out of range"),
            "{body}"
        );
    }
    let viewer = app.person(Role::Viewer).await;
    let name = job["job_name"].as_str().unwrap();
    for query in [
        "from=0",
        "from=9999999999999",
        "after=-1",
        "after=99999999999",
        "attempt=0",
    ] {
        let (status, body) = app
            .api(
                &viewer,
                Method::GET,
                &format!("/api/v1/projects/tiny/runs/1/jobs/{name}/log?{query}"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
    }
}

/// A run of `jobs` independent jobs in a fresh project, created on `runs`.
async fn run_with_jobs(app: &TestApp, key: &str, jobs: usize, runs: &Runs) -> uuid::Uuid {
    let list: String = (0..jobs)
        .map(|i| format!("          job{i}:\n            steps: [\"true\"]\n"))
        .collect();
    let definition = format!(
        "project: {{ name: {key}, key: {key} }}\nphases:\n  ci:\n    title: CI\n    stages:\n      all:\n        title: All\n        jobs:\n{list}"
    );
    let (_, sha) = app.project(&definition).await;
    let commit = Commit {
        sha,
        branch: "main".into(),
        author: "Tess".into(),
        message: "test".into(),
    };
    runs.create(
        key,
        &commit,
        Trigger::Api,
        Actor::system(),
        &Origin::default(),
        None,
        None,
    )
    .await
    .unwrap()
    .run_id
}

#[tokio::test]
async fn cancel_races_claims_and_the_lease_reaper_without_a_deadlock() {
    let app = TestApp::spawn_empty().await;
    let clock = ManualClock::new();
    let work = Work::new(
        app.pool.clone(),
        Secrets::default(),
        Duration::from_secs(30),
    )
    .with_clock(clock.clone());
    let runs = Runs::new(app.pool.clone()).with_clock(clock.clone());
    let labels = ["linux".to_string()];
    let mut runners = Vec::new();
    for name in ["race-a", "race-b", "race-c"] {
        let id = work.register(name, &labels, "test", None).await.unwrap();
        runners.push(
            work.bind(id, RunnerCaller::Admin, Actor::system(), &Origin::default())
                .await
                .unwrap(),
        );
    }
    for round in 0..12 {
        let run = run_with_jobs(&app, &format!("race{round}"), 6, &runs).await;
        // Half the jobs are claimed and their leases run out, so the reaper has work too.
        for runner in &runners[..2] {
            work.claim(*runner).await.unwrap();
        }
        clock.advance(chrono::Duration::seconds(31));
        let claims = runners.iter().map(|runner| {
            let work = work.clone();
            let runner = *runner;
            tokio::spawn(async move {
                for _ in 0..4 {
                    work.claim(runner).await?;
                }
                Ok::<_, domain::run::work::WorkError>(())
            })
        });
        let claims: Vec<_> = claims.collect();
        let reaper = {
            let work = work.clone();
            tokio::spawn(async move { work.reap_expired_leases().await.map(|_| ()) })
        };
        let cancel = {
            let runs = runs.clone();
            tokio::spawn(async move {
                runs.cancel(run, Actor::system(), &Origin::default())
                    .await
                    .map(|_| ())
            })
        };
        for claim in claims {
            claim
                .await
                .unwrap()
                .unwrap_or_else(|e| panic!("round {round}: a claim failed: {e}"));
        }
        reaper
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("round {round}: the reaper failed: {e}"));
        cancel
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("round {round}: the cancel failed: {e}"));
    }
}

#[tokio::test]
async fn a_job_lost_with_its_runner_runs_again_on_its_own_and_its_run_succeeds() {
    let app = TestApp::spawn_empty().await;
    // The server's own clock: its lease reaper, a background service, reads it.
    let clock = app.clock.clone();
    let work = Work::new(
        app.pool.clone(),
        Secrets::default(),
        Duration::from_secs(30),
    )
    .with_clock(clock.clone());
    let runs = Runs::new(app.pool.clone()).with_clock(clock.clone());
    let run = run_with_jobs(&app, "lost", 1, &runs).await;
    let labels = ["linux".to_string()];
    let bind = |id| {
        let work = work.clone();
        async move {
            work.bind(id, RunnerCaller::Admin, Actor::system(), &Origin::default())
                .await
                .unwrap()
        }
    };
    let crashed = bind(
        work.register("crashed", &labels, "test", None)
            .await
            .unwrap(),
    )
    .await;
    let first = work.claim(crashed).await.unwrap().expect("a job");
    assert_eq!(first.attempt, 1);
    // The server running it is killed: no heartbeat, no finish. The lease runs out.
    // The server's reaper (not the test) takes it back, as a running server would.
    clock.advance(chrono::Duration::seconds(31));
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let state = loop {
        let state = work.job_state(first.job_id).await.unwrap();
        if state != RunState::Running || std::time::Instant::now() > deadline {
            break state;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        state,
        RunState::Queued,
        "an infrastructure failure, not the job's"
    );
    let reason: String = sqlx::query_scalar("select reason from job where job_id = $1")
        .bind(first.job_id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(
        reason.starts_with("attempt 2: the runner of attempt 1 (crashed) stopped answering"),
        "{reason}"
    );
    let logged: String = sqlx::query_scalar(
        "select text from log_line where job_id = $1 and attempt = 1 order by line_no desc limit 1",
    )
    .bind(first.job_id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!(logged.contains("stopped answering"), "{logged}");
    // It waits out a backoff before anyone may claim it.
    let restarted = bind(
        work.register("restarted", &labels, "test", None)
            .await
            .unwrap(),
    )
    .await;
    assert!(
        work.claim(restarted).await.unwrap().is_none(),
        "backing off"
    );
    clock.advance(chrono::Duration::seconds(11));
    let second = work
        .claim(restarted)
        .await
        .unwrap()
        .expect("claimable again");
    assert_eq!(second.attempt, 2);
    work.finish(
        Attempt {
            job_id: second.job_id,
            runner: restarted,
            attempt: 2,
        },
        Outcome::Succeeded,
        Some(0),
        None,
    )
    .await
    .unwrap();
    let state: RunState = sqlx::query_scalar("select state from run where run_id = $1")
        .bind(run)
        .fetch_one(&app.pool)
        .await
        .map(|s: String| s.parse().unwrap())
        .unwrap();
    assert_eq!(state, RunState::Succeeded, "nothing in it failed");
}
