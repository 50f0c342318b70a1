//! Runs end to end: a real git repository, the real server, the real runner executing shell
//! commands; timeouts, cancellation, retries, re-runs, webhooks and exactly-once claims.

use crate::helpers::{TestApp, WEBHOOK_SECRET};
use domain::audit::{Actor, Origin};
use domain::auth::Scope;
use domain::role::Role;
use domain::state::RunState;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

pub const TINY: &str = r#"
project:
  name: Tiny
  key: tiny
phases:
  ci:
    title: CI
    stages:
      checks:
        title: Checks
        jobs:
          hello:
            steps:
              - echo "hello from $FLIGHTDECK_BRANCH at $(git rev-parse --short HEAD)"
              - printf '\033[31mred\033[0m and plain\n'
              - echo "the secret is $TEST_SECRET"
            secrets: [TEST_SECRET]
          build:
            needs: [hello]
            steps:
              - mkdir -p out/site && echo built > out/result.txt && echo '<h1>hi</h1>' > out/site/index.html
            artifacts:
              - { name: result, path: out/result.txt, kind: report }
              - { name: site, path: out/site, kind: web }
      flaky:
        title: Flaky
        jobs:
          once:
            steps:
              - test -f MARKER || { touch MARKER; echo first try fails; exit 3; }
            retries: 1
          mobile:
            runs_on: [android]
            optional: true
            steps: [./gradlew assembleRelease]
      deploy:
        title: Deploy
        deploy:
          environment: dev
environments:
  dev: {}
"#;

/// A git repository holding `flightdeck.yml` and `files`, committed on `main`.
pub fn repository(definition: &str, files: &[(&str, &str)]) -> (PathBuf, String) {
    let dir = tempfile::Builder::new()
        .prefix("flightdeck-repo-")
        .tempdir()
        .unwrap()
        .keep();
    std::fs::write(dir.join("flightdeck.yml"), definition).unwrap();
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .arg("-C")
            .arg(&dir)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    git(&["init", "-q", "--initial-branch=main"]);
    git(&["add", "-A"]);
    git(&[
        "-c",
        "user.name=Tess Tester",
        "-c",
        "user.email=tess@example.com",
        "commit",
        "-q",
        "-m",
        "Add the pipeline",
    ]);
    let sha = git(&["rev-parse", "HEAD"]);
    (dir, sha)
}

impl TestApp {
    /// Loads `definition` as a project whose repository is a fresh git repo holding it.
    pub async fn project(&self, definition: &str) -> (PathBuf, String) {
        // A file only this test's jobs touch, for steps that must remember an earlier attempt.
        let marker = std::env::temp_dir().join(format!(
            "flightdeck-marker-{}",
            uuid::Uuid::new_v4().simple()
        ));
        let definition = &definition.replace("MARKER", marker.to_str().unwrap());
        let (dir, sha) = repository(definition, &[]);
        self.load_project(definition, &dir).await;
        (dir, sha)
    }

    /// Loads `definition` as a project whose repository is `dir` (a git repository).
    pub async fn load_project(&self, definition: &str, dir: &std::path::Path) {
        domain::project::load_definition(
            &self.pool,
            domain::project::DefinitionUpload {
                source: definition,
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
        .unwrap();
        sqlx::query("update project set repository = $1")
            .bind(dir.to_str().unwrap())
            .execute(&self.pool)
            .await
            .unwrap();
    }

    /// A runner in this process, talking HTTP to the server like a remote one.
    pub async fn runner(&self, name: &str, labels: &[&str]) -> CancellationToken {
        let token = self.token(&[Scope::Runner]).await;
        let work = tempfile::Builder::new()
            .prefix("flightdeck-runner-")
            .tempdir()
            .unwrap()
            .keep();
        let mut config = server::runner::RunnerConfig::new(
            self.url(""),
            token,
            name,
            labels.iter().map(|l| l.to_string()).collect(),
            work,
        );
        config.heartbeat_interval = Duration::from_millis(500);
        config.log_flush_interval = Duration::from_millis(50);
        config.kill_grace = Duration::from_millis(500);
        let stop = CancellationToken::new();
        let runner_stop = stop.clone();
        tokio::spawn(async move { server::runner::run(config, runner_stop).await.unwrap() });
        // Registered means its labels count when runs move on.
        for _ in 0..100 {
            let n: i64 = sqlx::query_scalar("select count(*) from runner where name = $1")
                .bind(name)
                .fetch_one(&self.pool)
                .await
                .unwrap();
            if n == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        stop
    }

    pub async fn api(
        &self,
        client: &reqwest::Client,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = client.request(method, self.url(path));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Waits until run `number` is finished (or `limit` passes) and returns its detail.
    pub async fn finished_run(
        &self,
        project: &str,
        number: i64,
        limit: Duration,
    ) -> domain::run_view::RunDetail {
        let started = Instant::now();
        loop {
            let detail = domain::run::query::detail(&self.pool, project, number)
                .await
                .unwrap();
            if detail.summary.state.is_finished() || started.elapsed() > limit {
                return detail;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn job_state(&self, project: &str, number: i64, job: &str) -> RunState {
        domain::run::query::job(&self.pool, project, number, job, None, None)
            .await
            .unwrap()
            .job
            .state
    }
}

fn job<'a>(
    detail: &'a domain::run_view::RunDetail,
    name: &str,
) -> &'a domain::run_view::JobSummary {
    detail
        .stages
        .iter()
        .flat_map(|s| &s.jobs)
        .find(|j| j.name == name)
        .unwrap()
}

#[tokio::test]
async fn a_run_executes_real_commands_in_a_checkout_streams_logs_and_keeps_artifacts() {
    let app = TestApp::spawn().await;
    let (_repo, sha) = app.project(TINY).await;
    let _runner = app.runner("test-runner", &["linux", "local"]).await;
    let developer = app.person(Role::Developer).await;
    let (status, body) = app
        .api(
            &developer,
            reqwest::Method::POST,
            "/api/v1/projects/tiny/runs",
            Some(json!({ "branch": "main" })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let detail = app.finished_run("tiny", 1, Duration::from_secs(60)).await;
    assert_eq!(detail.summary.state, RunState::Succeeded, "{detail:#?}");
    assert_eq!(detail.summary.commit_sha, sha);
    assert_eq!(
        detail.summary.commit_author,
        "Tess Tester <tess@example.com>"
    );
    assert_eq!(detail.summary.commit_message, "Add the pipeline");
    assert_eq!(
        detail
            .stages
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>(),
        ["checks", "flaky"],
        "a run stops before the first deploy"
    );
    let mobile = job(&detail, "mobile");
    assert_eq!(mobile.state, RunState::Skipped);
    assert_eq!(
        mobile.reason.as_deref(),
        Some("skipped: no runner with label android")
    );
    let once = job(&detail, "once");
    assert_eq!(
        (once.state, once.attempt),
        (RunState::Succeeded, 2),
        "the first failure was retried"
    );

    let hello = domain::run::query::job(&app.pool, "tiny", 1, "hello", None, None)
        .await
        .unwrap();
    let text: Vec<&str> = hello.log.lines.iter().map(|l| l.text.as_str()).collect();
    assert!(
        text.iter()
            .any(|l| l.starts_with(&format!("hello from main at {}", &sha[..7]))),
        "{text:?}"
    );
    assert!(
        text.contains(&"\u{1b}[31mred\u{1b}[0m and plain"),
        "colours are kept for the page: {text:?}"
    );
    assert!(
        text.contains(&"the secret is ***"),
        "secrets are masked: {text:?}"
    );
    assert!(!text.iter().any(|l| l.contains("hunter2-secret")));

    assert_eq!(detail.artifacts.len(), 2);
    let result = detail
        .artifacts
        .iter()
        .find(|a| a.name == "result")
        .unwrap();
    let download = developer
        .get(app.url(&format!("/api/v1/artifacts/{}", result.id)))
        .send()
        .await
        .unwrap();
    assert_eq!(download.status(), StatusCode::OK);
    assert_eq!(
        download.headers()["x-checksum-sha256"],
        result.sha256.as_str()
    );
    assert!(
        download.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains("result.txt")
    );
    assert_eq!(download.text().await.unwrap(), "built\n");
    let site = detail.artifacts.iter().find(|a| a.name == "site").unwrap();
    assert_eq!(site.file_name, "site.tar.gz");
    let raw = developer
        .get(app.url("/api/v1/projects/tiny/runs/1/jobs/hello/log.txt"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(raw.contains("the secret is ***"));
    let overview: Value = developer
        .get(app.url("/api/v1/projects/tiny/overview"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        overview["project"]["phases"][0]["stages"][0]["state"], "succeeded",
        "the overview shows the latest run"
    );
}

#[tokio::test]
async fn a_job_that_runs_too_long_is_killed_with_its_whole_process_tree() {
    let app = TestApp::spawn().await;
    let pipeline = r#"
project: { name: Slow, key: slow }
phases:
  ci:
    title: CI
    stages:
      work:
        title: Work
        jobs:
          forever:
            steps: ["(sleep 1000 & echo $! > $HOME/slow-child.pid; sleep 1000) & sleep 1000"]
            timeout: 2s
"#;
    app.project(pipeline).await;
    let _runner = app.runner("slow-runner", &["linux"]).await;
    let token = app.token(&[Scope::RunsWrite]).await;
    let (status, _) = app
        .api(
            &app.anonymous(),
            reqwest::Method::POST,
            &format!("/api/v1/projects/slow/runs?t={token}"),
            None,
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a token in the URL is not a credential"
    );
    let client = reqwest::Client::builder()
        .default_headers(auth(&token))
        .build()
        .unwrap();
    let (status, _) = app
        .api(
            &client,
            reqwest::Method::POST,
            "/api/v1/projects/slow/runs",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let detail = app.finished_run("slow", 1, Duration::from_secs(30)).await;
    let forever = job(&detail, "forever");
    assert_eq!(forever.state, RunState::Failed);
    assert!(
        forever
            .reason
            .as_deref()
            .unwrap_or_default()
            .contains("timed out after 2s"),
        "{:?}",
        forever.reason
    );
    let pid_file = std::env::var("HOME").unwrap() + "/slow-child.pid";
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    std::fs::remove_file(&pid_file).unwrap();
    let gone = Instant::now();
    while Path::new(&format!("/proc/{pid}")).exists() {
        assert!(
            gone.elapsed() < Duration::from_secs(3),
            "the grandchild {pid} outlived the job"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn auth(token: &str) -> reqwest::header::HeaderMap {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("authorization", format!("Bearer {token}").parse().unwrap());
    headers
}

#[tokio::test]
async fn canceling_a_run_mid_job_stops_its_processes_and_rerunning_a_job_runs_it_again() {
    let app = TestApp::spawn().await;
    let pipeline = r#"
project: { name: Cancel, key: cancel }
phases:
  ci:
    title: CI
    stages:
      work:
        title: Work
        jobs:
          long:
            steps: ["echo $$ > STEP_GROUP; echo started; sleep 600"]
          after:
            needs: [long]
            steps: [echo after]
"#;
    // The step writes its process group's id: the test checks that group, not processes by name.
    let step_group = std::env::temp_dir().join(format!(
        "flightdeck-step-{}.pgid",
        uuid::Uuid::new_v4().simple()
    ));
    let pipeline = pipeline.replace("STEP_GROUP", step_group.to_str().unwrap());
    app.project(&pipeline).await;
    let _runner = app.runner("cancel-runner", &["linux"]).await;
    let developer = app.person(Role::Developer).await;
    app.api(
        &developer,
        reqwest::Method::POST,
        "/api/v1/projects/cancel/runs",
        None,
    )
    .await;
    let started = Instant::now();
    while app.job_state("cancel", 1, "long").await != RunState::Running {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the job never started"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    while std::fs::read_to_string(&step_group).map_or(true, |g| g.trim().is_empty()) {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the step never started"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let group = std::fs::read_to_string(&step_group).unwrap();
    let (status, _) = app
        .api(
            &developer,
            reqwest::Method::POST,
            "/api/v1/projects/cancel/runs/1/cancel",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let detail = app.finished_run("cancel", 1, Duration::from_secs(20)).await;
    assert_eq!(detail.summary.state, RunState::Canceled);
    assert_eq!(job(&detail, "long").state, RunState::Canceled);
    assert_eq!(job(&detail, "after").state, RunState::Canceled);
    // The run is finished only after the runner reaped the step's process group.
    let alive = Command::new("kill")
        .args(["-0", "--", &format!("-{}", group.trim())])
        .output()
        .unwrap();
    assert!(
        !alive.status.success(),
        "the step's process group (and its `sleep 600`) is gone"
    );
    let _ = std::fs::remove_file(&step_group);
    assert_eq!(app.audit_count("run.canceled").await, 1);

    let viewer = app.person(Role::Viewer).await;
    let (status, _) = app
        .api(
            &viewer,
            reqwest::Method::POST,
            "/api/v1/projects/cancel/runs/1/rerun",
            Some(json!({ "job": "after" })),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "viewers do not re-run");
    let (status, body) = app
        .api(
            &developer,
            reqwest::Method::POST,
            "/api/v1/projects/cancel/runs/1/rerun",
            Some(json!({ "job": "nope" })),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = app
        .api(
            &developer,
            reqwest::Method::POST,
            "/api/v1/projects/cancel/runs/1/rerun",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["jobs_again"], 2);
    assert!(
        !app.job_state("cancel", 1, "long").await.is_finished(),
        "the job runs again"
    );
}

#[tokio::test]
async fn two_servers_and_one_runner_run_every_job_exactly_once() {
    let first = TestApp::spawn().await;
    let second = TestApp::spawn_on(first.options.clone()).await;
    let marker = tempfile::Builder::new()
        .prefix("flightdeck-once-")
        .tempdir()
        .unwrap()
        .keep();
    let jobs: String = (0..12)
        .map(|i| format!("          job{i}:\n            steps: [\"echo $FLIGHTDECK_RUN-job{i} >> {}/ran\"]\n", marker.display()))
        .collect();
    let pipeline = format!(
        "project: {{ name: Many, key: many }}\nphases:\n  ci:\n    title: CI\n    stages:\n      all:\n        title: All\n        jobs:\n{jobs}"
    );
    first.project(&pipeline).await;
    // One runner claims through each server, with two jobs at a time.
    let _a = first.runner("runner-a", &["linux"]).await;
    let _b = second.runner("runner-b", &["linux"]).await;
    let developer = first.person(Role::Developer).await;
    for _ in 0..3 {
        first
            .api(
                &developer,
                reqwest::Method::POST,
                "/api/v1/projects/many/runs",
                None,
            )
            .await;
    }
    for number in 1..=3 {
        let detail = first
            .finished_run("many", number, Duration::from_secs(90))
            .await;
        assert_eq!(detail.summary.state, RunState::Succeeded);
    }
    let ran = std::fs::read_to_string(marker.join("ran")).unwrap();
    let mut lines: Vec<&str> = ran.lines().collect();
    assert_eq!(lines.len(), 36, "{ran}");
    lines.sort();
    lines.dedup();
    assert_eq!(lines.len(), 36, "no job ran twice");
}

#[tokio::test]
async fn github_push_webhooks_start_runs_once_and_bad_signatures_are_refused() {
    let app = TestApp::spawn().await;
    let (_repo, sha) = app.project(TINY).await;
    let payload = json!({
        "ref": "refs/heads/main", "before": "0".repeat(40), "after": sha, "created": false, "deleted": false,
        "forced": false, "base_ref": null, "compare": "https://github.com/o/tiny/compare/x",
        "commits": [], "pusher": { "name": "octo", "email": "octo@example.com" }, "sender": { "login": "octo", "id": 1 },
        "repository": { "id": 1, "name": "tiny", "full_name": "o/tiny", "clone_url": "https://github.com/o/tiny.git",
                        "html_url": "https://github.com/o/tiny", "default_branch": "main" },
        "head_commit": { "id": sha, "tree_id": sha, "distinct": true, "message": "Ship it\n\nDetails", "timestamp": "2026-11-25T01:00:00Z",
                         "url": "https://github.com/o/tiny/commit/x", "author": { "name": "Octo Cat", "email": "octo@example.com", "username": "octo" },
                         "committer": { "name": "Octo Cat", "email": "octo@example.com" }, "added": [], "removed": [], "modified": [] }
    })
    .to_string();
    let sign = |body: &str| {
        use hmac::Mac;
        let mut mac =
            hmac::Hmac::<sha2::Sha256>::new_from_slice(WEBHOOK_SECRET.as_bytes()).unwrap();
        mac.update(body.as_bytes());
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    };
    let client = app.anonymous();
    let send = |event: &'static str, body: String, signature: Option<String>| {
        let mut request = client
            .post(app.url("/api/v1/webhooks/github/tiny"))
            .header("x-github-event", event)
            .header("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958")
            .header("content-type", "application/json")
            .header("user-agent", "GitHub-Hookshot/044aadd")
            .body(body);
        if let Some(signature) = signature {
            request = request.header("x-hub-signature-256", signature);
        }
        request.send()
    };
    let ping = r#"{"zen":"Keep it logically awesome.","hook_id":1,"hook":{"type":"Repository"}}"#
        .to_string();
    assert_eq!(
        send("ping", ping.clone(), Some(sign(&ping)))
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        send("push", payload.clone(), None).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send("push", payload.clone(), Some(sign("tampered")))
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(app.audit_count("webhook.bad_signature").await, 2);
    let runs: i64 = sqlx::query_scalar("select count(*) from run")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(runs, 0, "nothing ran on a bad signature");

    let first = send("push", payload.clone(), Some(sign(&payload)))
        .await
        .unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    let again = send("push", payload.clone(), Some(sign(&payload)))
        .await
        .unwrap();
    assert_eq!(
        again.status(),
        StatusCode::OK,
        "a redelivery starts no second run"
    );
    let run = domain::run::query::detail(&app.pool, "tiny", 1)
        .await
        .unwrap();
    assert_eq!(run.summary.trigger, "webhook");
    assert_eq!(run.summary.commit_message, "Ship it");
    assert_eq!(run.summary.commit_author, "Octo Cat <octo@example.com>");
    let tag = payload.replace("refs/heads/main", "refs/tags/v1");
    assert_eq!(
        send("push", tag.clone(), Some(sign(&tag)))
            .await
            .unwrap()
            .status(),
        StatusCode::ACCEPTED
    );
}

/// Copies the StudyBuddy sample (without installed packages or build output) into a new git
/// repository, as `flightdeck project create-repository` does for the demo.
fn sample_repository() -> PathBuf {
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/studybuddy");
    let dir = tempfile::Builder::new()
        .prefix("studybuddy-")
        .tempdir()
        .unwrap()
        .keep();
    let copy = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "cd {} && git ls-files --cached --others --exclude-standard -z | xargs -0 -I{{}} cp --parents {{}} {}",
            sample.display(),
            dir.display()
        ))
        .status()
        .unwrap();
    assert!(copy.success());
    let git = |args: &[&str]| {
        assert!(
            Command::new("git")
                .arg("-C")
                .arg(&dir)
                .args(args)
                .status()
                .unwrap()
                .success()
        )
    };
    git(&["init", "-q", "--initial-branch=main"]);
    git(&["add", "-A"]);
    git(&[
        "-c",
        "user.name=Sam Sample",
        "-c",
        "user.email=sam@example.com",
        "commit",
        "-q",
        "-m",
        "StudyBuddy",
    ]);
    dir
}

#[tokio::test]
async fn the_studybuddy_pipeline_really_builds_on_the_local_runner() {
    let app = TestApp::spawn().await;
    let repo = sample_repository();
    sqlx::query("update project set repository = $1 where project_key = 'studybuddy'")
        .bind(repo.to_str().unwrap())
        .execute(&app.pool)
        .await
        .unwrap();
    let _runner = app.runner("sample-runner", &["linux", "local"]).await;
    let developer = app.person(Role::Developer).await;
    let (status, body) = app
        .api(
            &developer,
            reqwest::Method::POST,
            "/api/v1/projects/studybuddy/runs",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let detail = app
        .finished_run("studybuddy", 1, Duration::from_secs(600))
        .await;
    let states: Vec<(String, RunState, Option<String>)> = detail
        .stages
        .iter()
        .flat_map(|s| &s.jobs)
        .map(|j| (j.name.clone(), j.state, j.reason.clone()))
        .collect();
    assert_eq!(detail.summary.state, RunState::Succeeded, "{states:#?}");
    for (name, state, reason) in &states {
        match name.as_str() {
            "apk" => assert_eq!(
                reason.as_deref(),
                Some("skipped: no runner with label android")
            ),
            "ipa" => assert_eq!(
                reason.as_deref(),
                Some("skipped: no runner with label macos")
            ),
            _ => assert_eq!(*state, RunState::Succeeded, "{name}: {reason:?}"),
        }
    }
    let kinds: Vec<&str> = detail.artifacts.iter().map(|a| a.kind.as_str()).collect();
    for kind in ["web", "asset-bundle", "db-schema", "api-spec", "report"] {
        assert!(
            kinds.contains(&kind),
            "the run made a {kind} artifact: {kinds:?}"
        );
    }
    assert!(
        !kinds.contains(&"apk") && !kinds.contains(&"ipa"),
        "nothing pretends to have built an app it could not"
    );
}

#[tokio::test]
async fn a_log_batch_or_a_finish_sent_twice_after_a_lost_answer_is_stored_once() {
    use domain::run::protocol::{LogLine, Stream};
    use domain::run::work::{Attempt, RunnerCaller, Secrets, Work};
    let app = TestApp::spawn().await;
    app.project("project: { name: Once, key: once }\nphases:\n  ci:\n    title: CI\n    stages:\n      s:\n        title: S\n        jobs:\n          j:\n            steps: [echo hi]\n").await;
    let work = Work::new(
        app.pool.clone(),
        Secrets::default(),
        Duration::from_secs(30),
    );
    let runner = work
        .register("manual", &["linux".to_string()], "test", None)
        .await
        .unwrap();
    let developer = app.person(Role::Developer).await;
    app.api(
        &developer,
        reqwest::Method::POST,
        "/api/v1/projects/once/runs",
        None,
    )
    .await;
    let runner = work
        .bind(
            runner,
            RunnerCaller::Admin,
            Actor::system(),
            &Origin::default(),
        )
        .await
        .unwrap();
    let job = work.claim(runner).await.unwrap().expect("a job to claim");
    let held = Attempt {
        job_id: job.job_id,
        runner,
        attempt: job.attempt,
    };
    let batch = vec![
        LogLine {
            stream: Stream::Stdout,
            text: "one".into(),
        },
        LogLine {
            stream: Stream::Stdout,
            text: "two".into(),
        },
    ];
    work.append_log(held, Some(1), &batch).await.unwrap();
    work.append_log(held, Some(1), &batch).await.unwrap();
    work.append_log(held, Some(3), &batch[..1]).await.unwrap();
    let page = domain::run::query::log_page(&app.pool, job.job_id, job.attempt, None, 100)
        .await
        .unwrap();
    let text: Vec<&str> = page.lines.iter().map(|l| l.text.as_str()).collect();
    assert_eq!(text, ["one", "two", "one"]);
}
