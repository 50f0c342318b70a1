//! The runner against a fake protocol server: a small axum router on 127.0.0.1:0 that hands out
//! the jobs a test gives it and records every call, and a real git repository with two commits.
//! The jobs run real bash in real process groups; the tests look at /proc to see what is left.

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{post, put};
use domain::artifact::ArtifactKind;
use domain::run::protocol::{
    ClaimRequest, ClaimedJob, FinishRequest, HeartbeatRequest, HeartbeatResponse, LogBatch,
    LogLine, Outcome, RegisterRequest, RegisterResponse, Stream,
};
use domain::run::spec::{ArtifactWire, JobSpec, StepSpec};
use server::runner::{RunnerConfig, run};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const TOKEN: &str = "fdt_runner_test_token";
const RUNNER_ID: Uuid = Uuid::from_u128(0x5eed);

/// How the fake server treats a job's lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lease {
    Held,
    /// Heartbeats answer `cancel: true`.
    Canceled,
    /// Heartbeats (and finish) answer 409.
    LostOnHeartbeat,
    /// Log batches answer 409.
    LostOnLogs,
}

#[derive(Debug)]
struct Upload {
    job_id: Uuid,
    name: String,
    query: HashMap<String, String>,
    content_type: Option<String>,
    content_length: Option<u64>,
    bytes: Bytes,
}

#[derive(Default)]
struct Calls {
    /// What claims hand out, as JSON (so a test can hand out what no runner can read).
    queue: VecDeque<serde_json::Value>,
    /// Answer the next claim with 404, as a server that no longer knows the runner would.
    forget_runner: bool,
    registrations: Vec<RegisterRequest>,
    claims: usize,
    heartbeats: Vec<(Uuid, HeartbeatRequest)>,
    leases: HashMap<Uuid, Lease>,
    logs: Vec<(Uuid, LogBatch)>,
    uploads: Vec<Upload>,
    finishes: Vec<(Uuid, FinishRequest)>,
    refused: usize,
}

#[derive(Clone, Default)]
struct Fake(Arc<Mutex<Calls>>);

impl Fake {
    fn with<T>(&self, f: impl FnOnce(&mut Calls) -> T) -> T {
        f(&mut self.0.lock().unwrap())
    }

    fn push(&self, job: ClaimedJob) {
        self.with(|c| c.queue.push_back(serde_json::to_value(job).unwrap()));
    }

    fn set_lease(&self, job_id: Uuid, lease: Lease) {
        self.with(|c| c.leases.insert(job_id, lease));
    }

    fn lease(&self, job_id: Uuid) -> Lease {
        self.with(|c| c.leases.get(&job_id).copied().unwrap_or(Lease::Held))
    }

    fn finish_of(&self, job_id: Uuid) -> Option<FinishRequest> {
        self.with(|c| {
            c.finishes
                .iter()
                .find(|(id, _)| *id == job_id)
                .map(|(_, f)| f.clone())
        })
    }

    fn lines_of(&self, job_id: Uuid) -> Vec<LogLine> {
        self.with(|c| {
            c.logs
                .iter()
                .filter(|(id, _)| *id == job_id)
                .flat_map(|(_, b)| b.lines.clone())
                .collect()
        })
    }

    fn texts_of(&self, job_id: Uuid) -> Vec<String> {
        self.lines_of(job_id).into_iter().map(|l| l.text).collect()
    }

    fn router(&self) -> Router {
        Router::new()
            .route("/api/v1/runner/register", post(register))
            .route("/api/v1/runner/claim", post(claim))
            .route("/api/v1/runner/jobs/{id}/heartbeat", post(heartbeat))
            .route("/api/v1/runner/jobs/{id}/logs", post(logs))
            .route("/api/v1/runner/jobs/{id}/artifacts/{name}", put(artifact))
            .route("/api/v1/runner/jobs/{id}/finish", post(finish))
            .with_state(self.clone())
    }

    /// Whether the call carries the runner token; counts the ones that do not.
    fn authorized(&self, headers: &HeaderMap) -> bool {
        let expected = format!("Bearer {TOKEN}");
        if headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            == Some(&expected)
        {
            true
        } else {
            self.with(|c| c.refused += 1);
            false
        }
    }
}

async fn register(
    State(fake): State<Fake>,
    headers: HeaderMap,
    Json(request): Json<RegisterRequest>,
) -> Response {
    if !fake.authorized(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    fake.with(|c| c.registrations.push(request));
    Json(RegisterResponse {
        runner_id: RUNNER_ID,
    })
    .into_response()
}

async fn claim(
    State(fake): State<Fake>,
    headers: HeaderMap,
    Json(request): Json<ClaimRequest>,
) -> Response {
    if !fake.authorized(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    if request.runner_id != RUNNER_ID || fake.with(|c| std::mem::take(&mut c.forget_runner)) {
        return StatusCode::NOT_FOUND.into_response();
    }
    if let Some(job) = fake.with(|c| {
        c.claims += 1;
        c.queue.pop_front()
    }) {
        return Json(job).into_response();
    }
    // A short long poll, so a test's job is picked up quickly.
    tokio::time::sleep(Duration::from_millis(50)).await;
    StatusCode::NO_CONTENT.into_response()
}

async fn heartbeat(
    State(fake): State<Fake>,
    UrlPath(id): UrlPath<Uuid>,
    headers: HeaderMap,
    Json(request): Json<HeartbeatRequest>,
) -> Response {
    if !fake.authorized(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    fake.with(|c| c.heartbeats.push((id, request)));
    match fake.lease(id) {
        Lease::LostOnHeartbeat => StatusCode::CONFLICT.into_response(),
        lease => Json(HeartbeatResponse {
            cancel: lease == Lease::Canceled,
        })
        .into_response(),
    }
}

async fn logs(
    State(fake): State<Fake>,
    UrlPath(id): UrlPath<Uuid>,
    headers: HeaderMap,
    Json(batch): Json<LogBatch>,
) -> Response {
    if !fake.authorized(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    if fake.lease(id) == Lease::LostOnLogs {
        return StatusCode::CONFLICT.into_response();
    }
    fake.with(|c| c.logs.push((id, batch)));
    StatusCode::NO_CONTENT.into_response()
}

async fn artifact(
    State(fake): State<Fake>,
    UrlPath((id, name)): UrlPath<(Uuid, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Response {
    if !fake.authorized(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let header = |name| Some(headers.get(name)?.to_str().ok()?.to_string());
    fake.with(|c| {
        c.uploads.push(Upload {
            job_id: id,
            name,
            query,
            content_type: header(header::CONTENT_TYPE),
            content_length: header(header::CONTENT_LENGTH).and_then(|l| l.parse().ok()),
            bytes,
        })
    });
    StatusCode::CREATED.into_response()
}

async fn finish(
    State(fake): State<Fake>,
    UrlPath(id): UrlPath<Uuid>,
    headers: HeaderMap,
    Json(request): Json<FinishRequest>,
) -> Response {
    if !fake.authorized(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let lease = fake.lease(id);
    fake.with(|c| c.finishes.push((id, request)));
    if lease == Lease::LostOnHeartbeat {
        StatusCode::CONFLICT.into_response()
    } else {
        StatusCode::NO_CONTENT.into_response()
    }
}

async fn serve_fake(fake: &Fake, listener: tokio::net::TcpListener) {
    let router = fake.router();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
}

/// A fake server, a git repository with two commits, and a directory outside the workspace where
/// steps leave what the test checks (`$OUT`).
struct Harness {
    fake: Fake,
    url: String,
    repo: tempfile::TempDir,
    /// The first commit: `version.txt` says "one". HEAD is a second commit saying "two".
    first: String,
    head: String,
    out: tempfile::TempDir,
    work: tempfile::TempDir,
}

impl Harness {
    async fn new() -> Harness {
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .try_init();
        let fake = Fake::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        serve_fake(&fake, listener).await;
        let repo = tempfile::tempdir().unwrap();
        let git = |args: &[&str]| {
            let output = std::process::Command::new("git")
                .args(["-c", "user.name=Test", "-c", "user.email=test@example.com"])
                .args([
                    "-c",
                    "commit.gpgsign=false",
                    "-c",
                    "init.defaultBranch=main",
                ])
                .args(args)
                .current_dir(repo.path())
                .output()
                .unwrap();
            assert!(output.status.success(), "git {args:?}: {output:?}");
            String::from_utf8(output.stdout).unwrap().trim().to_string()
        };
        git(&["init", "--quiet"]);
        std::fs::write(repo.path().join("version.txt"), "one\n").unwrap();
        std::fs::write(repo.path().join("hello.sh"), "echo \"hello from $1\"\n").unwrap();
        git(&["add", "."]);
        git(&["commit", "--quiet", "-m", "one"]);
        let first = git(&["rev-parse", "HEAD"]);
        std::fs::write(repo.path().join("version.txt"), "two\n").unwrap();
        git(&["commit", "--quiet", "-am", "two"]);
        let head = git(&["rev-parse", "HEAD"]);
        Harness {
            fake,
            url,
            repo,
            first,
            head,
            out: tempfile::tempdir().unwrap(),
            work: tempfile::tempdir().unwrap(),
        }
    }

    /// A job of the first commit with these (name, script) steps, `$OUT` in its environment.
    fn job(&self, steps: &[(&str, &str)]) -> ClaimedJob {
        ClaimedJob {
            job_id: Uuid::new_v4(),
            attempt: 1,
            project: "studybuddy".into(),
            run_number: 7,
            job_name: "unit-tests".into(),
            repository: self.repo.path().display().to_string(),
            commit_sha: self.first.clone(),
            branch: "main".into(),
            spec: JobSpec {
                steps: steps
                    .iter()
                    .map(|(name, run)| StepSpec {
                        name: name.to_string(),
                        run: run.to_string(),
                    })
                    .collect(),
                env: BTreeMap::from([("OUT".to_string(), self.out.path().display().to_string())]),
                secrets: Vec::new(),
                timeout_secs: 60,
                artifacts: Vec::new(),
            },
            secrets: BTreeMap::new(),
        }
    }

    fn config(&self) -> RunnerConfig {
        let mut config = RunnerConfig::new(
            &self.url,
            TOKEN,
            "test-runner",
            vec!["linux".into(), "test".into()],
            self.work.path().join("runner"),
        );
        config.heartbeat_interval = Duration::from_millis(100);
        config.lease = Duration::from_secs(3);
        config.claim_wait = Duration::from_millis(50);
        config.log_flush_interval = Duration::from_millis(50);
        config.kill_grace = Duration::from_millis(500);
        config
    }

    fn start(&self, config: RunnerConfig) -> Running {
        let stop = CancellationToken::new();
        let abort = config.abort.clone();
        let task = tokio::spawn(run(config, stop.clone()));
        Running { stop, abort, task }
    }

    async fn finished(&self, job_id: Uuid) -> FinishRequest {
        eventually("the job's finish", || self.fake.finish_of(job_id)).await
    }

    /// The workspace directories left under the work dir.
    fn workspaces(&self) -> Vec<PathBuf> {
        match std::fs::read_dir(self.work.path().join("runner")) {
            Ok(entries) => entries.flatten().map(|e| e.path()).collect(),
            Err(_) => Vec::new(),
        }
    }

    /// The process group id a step wrote to `$OUT/<name>`, once it has.
    async fn pgid(&self, name: &str) -> i32 {
        let path = self.out.path().join(name);
        eventually("the step's process group", || {
            std::fs::read_to_string(&path).ok()?.trim().parse().ok()
        })
        .await
    }

    fn pids(&self, name: &str) -> Vec<i32> {
        std::fs::read_to_string(self.out.path().join(name))
            .unwrap_or_default()
            .split_whitespace()
            .map(|p| p.parse().unwrap())
            .collect()
    }
}

struct Running {
    stop: CancellationToken,
    abort: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(20), self.task)
            .await
            .expect("the runner stops")
            .unwrap()
            .unwrap();
    }
}

async fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// (state, process group) of a live process, from /proc.
fn stat(pid: &str) -> Option<(char, i32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
    let state = fields.next()?.chars().next()?;
    let pgrp = fields.nth(1)?.parse().ok()?;
    Some((state, pgrp))
}

fn running(state: char) -> bool {
    !matches!(state, 'Z' | 'X')
}

fn pid_alive(pid: i32) -> bool {
    stat(&pid.to_string()).is_some_and(|(state, _)| running(state))
}

/// The live (not zombie) processes in group `pgid`.
fn group_members(pgid: i32) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| name.bytes().all(|b| b.is_ascii_digit()))
        .filter(|pid| matches!(stat(pid), Some((state, group)) if group == pgid && running(state)))
        .collect()
}

fn position(texts: &[String], wanted: impl Fn(&str) -> bool) -> usize {
    texts
        .iter()
        .position(|t| wanted(t))
        .unwrap_or_else(|| panic!("no such line in {texts:#?}"))
}

#[tokio::test]
async fn steps_run_in_order_in_a_checkout_of_the_commit_with_batched_masked_output() {
    let h = Harness::new().await;
    let mut job = h.job(&[
        (
            "show commit",
            "cat version.txt; git rev-parse HEAD; bash hello.sh checkout\n\
             echo \"env: $CI $FLIGHTDECK $FLIGHTDECK_RUN $FLIGHTDECK_JOB $FLIGHTDECK_COMMIT $FLIGHTDECK_BRANCH $GREETING ${CARGO_PKG_NAME:-clean}\"",
        ),
        (
            "use secret",
            "echo \"token is $API_TOKEN.\"; echo \"pin $PIN\"; echo on-stderr >&2",
        ),
        ("many lines", "seq 1 1500"),
    ]);
    job.spec.env.insert("GREETING".into(), "hello".into());
    job.secrets = BTreeMap::from([
        ("API_TOKEN".to_string(), "tok-12345-secret".to_string()),
        ("PIN".to_string(), "123".to_string()),
    ]);
    let job_id = job.job_id;
    h.fake.push(job);
    let runner = h.start(h.config());

    let finish = h.finished(job_id).await;
    assert_eq!(finish.outcome, Outcome::Succeeded, "{finish:?}");
    assert_eq!(finish.exit_code, Some(0));
    assert_eq!(finish.runner_id, RUNNER_ID);
    assert_eq!(finish.attempt, 1);

    let lines = h.fake.lines_of(job_id);
    let texts: Vec<String> = lines.iter().map(|l| l.text.clone()).collect();
    let order = [
        position(&texts, |t| t == "▶ show commit"),
        position(&texts, |t| t == "one"),
        position(&texts, |t| t == h.first),
        position(&texts, |t| t == "hello from checkout"),
        position(&texts, |t| {
            t == format!("env: true true 7 unit-tests {} main hello clean", h.first)
        }),
        position(&texts, |t| {
            t.starts_with("✓ show commit (") && t.ends_with(" s)")
        }),
        position(&texts, |t| t == "▶ use secret"),
        position(&texts, |t| t == "token is ***."),
        position(&texts, |t| t == "▶ many lines"),
        position(&texts, |t| t == "1"),
        position(&texts, |t| t == "1500"),
        position(&texts, |t| t.starts_with("✓ many lines (")),
    ];
    assert!(order.is_sorted(), "out of order: {order:?} in {texts:#?}");
    assert!(texts.iter().all(|t| !t.contains("tok-12345-secret")));
    assert!(texts.contains(&"pin 123".to_string()), "short secrets stay");
    assert!(lines.contains(&LogLine {
        stream: Stream::Stderr,
        text: "on-stderr".into()
    }));
    assert!(
        !texts.iter().any(|t| t == &h.head),
        "HEAD is not checked out"
    );
    let numbers: Vec<&String> = texts.iter().filter(|t| t.parse::<u32>().is_ok()).collect();
    assert_eq!(numbers.len(), 1500);
    assert!(
        numbers
            .windows(2)
            .all(|w| w[0].parse::<u32>().unwrap() < w[1].parse().unwrap())
    );

    let batches: Vec<usize> = h.fake.with(|c| {
        c.logs
            .iter()
            .filter(|(id, _)| *id == job_id)
            .map(|(_, b)| b.lines.len())
            .collect()
    });
    assert!(
        batches.len() <= 20 && batches.iter().all(|&n| n <= 500),
        "{} lines in {} requests: {batches:?}",
        lines.len(),
        batches.len()
    );
    h.fake.with(|c| {
        assert!(
            c.logs
                .iter()
                .all(|(_, b)| b.runner_id == RUNNER_ID && b.attempt == 1)
        );
        assert_eq!(c.registrations.len(), 1);
        assert_eq!(c.registrations[0].name, "test-runner");
        assert_eq!(c.registrations[0].labels, ["linux", "test"]);
        assert_eq!(c.refused, 0);
    });

    // The log says where the workspace was; it is gone now.
    let workspace = texts
        .iter()
        .find_map(|t| t.strip_prefix("Workspace "))
        .and_then(|t| t.strip_suffix(" (removed when the job ends)"))
        .expect("the workspace is named in the log")
        .to_string();
    assert!(workspace.ends_with(&format!("{job_id}-1")), "{workspace}");
    eventually("the workspace's removal", || {
        (!Path::new(&workspace).exists()).then_some(())
    })
    .await;
    runner.stop().await;
    assert!(h.workspaces().is_empty(), "{:?}", h.workspaces());
}

#[tokio::test]
async fn a_failing_step_fails_the_job_with_its_name_and_code_and_later_steps_do_not_run() {
    let h = Harness::new().await;
    let job = h.job(&[
        ("first", "echo first"),
        ("fail here", "echo before; exit 3; echo after"),
        ("never", "echo never; touch \"$OUT/never\""),
    ]);
    let job_id = job.job_id;
    h.fake.push(job);
    let runner = h.start(h.config());

    let finish = h.finished(job_id).await;
    assert_eq!(finish.outcome, Outcome::Failed);
    assert_eq!(finish.exit_code, Some(3));
    assert_eq!(
        finish.reason.as_deref(),
        Some("step `fail here` exited with 3")
    );
    let texts = h.fake.texts_of(job_id);
    position(&texts, |t| t == "before");
    position(&texts, |t| t.starts_with("✗ fail here exited with 3 ("));
    assert!(
        !texts
            .iter()
            .any(|t| t == "after" || t == "never" || t == "▶ never")
    );
    assert!(!h.out.path().join("never").exists());
    runner.stop().await;
}

#[tokio::test]
async fn a_timeout_kills_the_whole_process_tree_and_says_so() {
    let h = Harness::new().await;
    let mut job = h.job(&[(
        "hang",
        "echo $$ > \"$OUT/pgid\"\n\
         sleep 1000 & echo $! >> \"$OUT/pids\"\n\
         bash -c 'trap \"\" TERM; sleep 1000; true' & echo $! >> \"$OUT/pids\"\n\
         (sleep 1000 & echo $! >> \"$OUT/pids\"; wait) &\n\
         wait",
    )]);
    job.spec.timeout_secs = 1;
    let job_id = job.job_id;
    h.fake.push(job);
    let runner = h.start(h.config());

    let pgid = h.pgid("pgid").await;
    let finish = h.finished(job_id).await;
    assert_eq!(finish.outcome, Outcome::Failed);
    assert_eq!(finish.reason.as_deref(), Some("timed out after 1s"));
    assert_eq!(finish.exit_code, None);
    assert_eq!(group_members(pgid), Vec::<String>::new());
    let pids = h.pids("pids");
    assert_eq!(pids.len(), 3);
    assert!(
        pids.iter().all(|&pid| !pid_alive(pid)),
        "{pids:?} still run"
    );
    position(&h.fake.texts_of(job_id), |t| {
        t.starts_with("✗ hang: timed out after 1s (")
    });
    runner.stop().await;
}

#[tokio::test]
async fn a_cancel_in_a_heartbeat_answer_kills_the_tree_and_finishes_canceled() {
    let h = Harness::new().await;
    let job = h.job(&[(
        "wait forever",
        "echo $$ > \"$OUT/pgid\"; sleep 1000 & (sleep 1000; true) & wait",
    )]);
    let job_id = job.job_id;
    h.fake.push(job);
    let runner = h.start(h.config());

    let pgid = h.pgid("pgid").await;
    assert!(!group_members(pgid).is_empty());
    h.fake.set_lease(job_id, Lease::Canceled);
    let finish = h.finished(job_id).await;
    assert_eq!(finish.outcome, Outcome::Canceled);
    assert_eq!(group_members(pgid), Vec::<String>::new());
    position(&h.fake.texts_of(job_id), |t| {
        t.starts_with("✗ wait forever: canceled (")
    });
    runner.stop().await;
}

#[tokio::test]
async fn a_409_on_a_heartbeat_stops_the_job_without_finishing_it_and_the_runner_goes_on() {
    let h = Harness::new().await;
    let job = h.job(&[("wait forever", "echo $$ > \"$OUT/pgid\"; sleep 1000 & wait")]);
    let job_id = job.job_id;
    h.fake.push(job);
    let runner = h.start(h.config());

    let pgid = h.pgid("pgid").await;
    h.fake.set_lease(job_id, Lease::LostOnHeartbeat);
    eventually("the process group's end", || {
        group_members(pgid).is_empty().then_some(())
    })
    .await;
    eventually("the workspace's removal", || {
        h.workspaces().is_empty().then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(h.fake.finish_of(job_id), None);

    let next = h.job(&[("quick", "true")]);
    let next_id = next.job_id;
    h.fake.push(next);
    assert_eq!(h.finished(next_id).await.outcome, Outcome::Succeeded);
    runner.stop().await;
}

#[tokio::test]
async fn a_409_on_a_log_batch_stops_the_job_too() {
    let h = Harness::new().await;
    let job = h.job(&[(
        "chatter",
        "echo $$ > \"$OUT/pgid\"; while true; do echo tick; sleep 0.02; done",
    )]);
    let job_id = job.job_id;
    h.fake.push(job);
    let runner = h.start(h.config());

    let pgid = h.pgid("pgid").await;
    h.fake.set_lease(job_id, Lease::LostOnLogs);
    eventually("the process group's end", || {
        group_members(pgid).is_empty().then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(h.fake.finish_of(job_id), None);
    runner.stop().await;
}

#[tokio::test]
async fn artifacts_upload_a_file_as_is_and_a_directory_as_a_tar_gz() {
    let h = Harness::new().await;
    let mut job = h.job(&[(
        "build",
        "mkdir -p dist/web/assets\n\
         echo '<h1>hi</h1>' > dist/web/index.html\n\
         printf 'console.log(1)' > dist/web/assets/app.js\n\
         seq 1 20000 > report.txt",
    )]);
    job.spec.artifacts = vec![
        ArtifactWire {
            name: "report".into(),
            path: "report.txt".into(),
            kind: ArtifactKind::Report,
        },
        ArtifactWire {
            name: "web".into(),
            path: "dist/web".into(),
            kind: ArtifactKind::Web,
        },
    ];
    let job_id = job.job_id;
    h.fake.push(job);
    let runner = h.start(h.config());

    let finish = h.finished(job_id).await;
    assert_eq!(finish.outcome, Outcome::Succeeded, "{finish:?}");
    let expected_report: String = (1..=20000).map(|n| format!("{n}\n")).collect();
    h.fake.with(|c| {
        assert_eq!(c.uploads.len(), 2);
        for upload in &c.uploads {
            assert_eq!(upload.job_id, job_id);
            assert_eq!(upload.query["attempt"], "1");
            assert_eq!(upload.query["runner_id"], RUNNER_ID.to_string());
            assert_eq!(upload.content_length, Some(upload.bytes.len() as u64));
        }
        let report = &c.uploads[0];
        assert_eq!(report.name, "report");
        assert_eq!(report.query["file_name"], "report.txt");
        assert_eq!(
            report.content_type.as_deref(),
            Some("application/octet-stream")
        );
        assert_eq!(report.bytes, expected_report.as_bytes());

        let web = &c.uploads[1];
        assert_eq!(web.name, "web");
        assert_eq!(web.query["file_name"], "web.tar.gz");
        assert_eq!(web.content_type.as_deref(), Some("application/gzip"));
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&web.bytes[..]));
        let mut files = BTreeMap::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().display().to_string();
            let mut content = String::new();
            std::io::Read::read_to_string(&mut entry, &mut content).unwrap();
            files.insert(path, content);
        }
        assert_eq!(
            files,
            BTreeMap::from([
                ("assets".to_string(), String::new()),
                ("assets/app.js".to_string(), "console.log(1)".to_string()),
                ("index.html".to_string(), "<h1>hi</h1>\n".to_string()),
            ])
        );
    });
    let texts = h.fake.texts_of(job_id);
    position(&texts, |t| {
        t.starts_with("↑ artifact `report`: report.txt (")
    });
    position(&texts, |t| {
        t.starts_with("↑ artifact `web`: dist/web (") && t.contains("as .tar.gz")
    });
    runner.stop().await;
}

#[tokio::test]
async fn a_missing_or_escaping_artifact_fails_the_job() {
    let h = Harness::new().await;
    let mut missing = h.job(&[("build", "mkdir -p dist")]);
    missing.spec.artifacts = vec![ArtifactWire {
        name: "web".into(),
        path: "dist/web".into(),
        kind: ArtifactKind::Web,
    }];
    let mut escaping = h.job(&[("build", "true")]);
    escaping.spec.artifacts = vec![ArtifactWire {
        name: "up".into(),
        path: "..".into(),
        kind: ArtifactKind::Report,
    }];
    let (missing_id, escaping_id) = (missing.job_id, escaping.job_id);
    h.fake.push(missing);
    h.fake.push(escaping);
    let runner = h.start(h.config());

    let finish = h.finished(missing_id).await;
    assert_eq!(finish.outcome, Outcome::Failed);
    assert_eq!(
        finish.reason.as_deref(),
        Some("artifact `web` not found at dist/web")
    );
    let finish = h.finished(escaping_id).await;
    assert_eq!(finish.outcome, Outcome::Failed);
    assert_eq!(
        finish.reason.as_deref(),
        Some("artifact `up` at ..: it is outside the workspace")
    );
    h.fake.with(|c| assert!(c.uploads.is_empty()));
    runner.stop().await;
}

#[tokio::test]
async fn stop_lets_the_running_job_finish_and_abort_stops_it_unfinished() {
    let h = Harness::new().await;
    let job = h.job(&[("slow", "echo $$ > \"$OUT/pgid\"; sleep 1; echo done")]);
    let job_id = job.job_id;
    h.fake.push(job);
    let runner = h.start(h.config());
    h.pgid("pgid").await;
    let claims = h.fake.with(|c| c.claims);
    runner.stop.cancel();
    tokio::time::timeout(Duration::from_secs(20), runner.task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        h.fake.finish_of(job_id).unwrap().outcome,
        Outcome::Succeeded
    );
    assert_eq!(h.fake.with(|c| c.claims), claims, "no claim after stop");

    let job = h.job(&[("forever", "echo $$ > \"$OUT/pgid2\"; sleep 1000 & wait")]);
    let job_id = job.job_id;
    h.fake.push(job);
    let runner = h.start(h.config());
    let pgid = h.pgid("pgid2").await;
    runner.abort.cancel();
    tokio::time::timeout(Duration::from_secs(20), runner.task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(group_members(pgid), Vec::<String>::new());
    assert_eq!(h.fake.finish_of(job_id), None);
    assert!(h.workspaces().is_empty());
    position(&h.fake.texts_of(job_id), |t| {
        t.starts_with("The runner is shutting down")
    });
}

#[tokio::test]
async fn with_a_concurrency_of_two_jobs_run_side_by_side() {
    let h = Harness::new().await;
    // The first job can only succeed while the second runs.
    let waiting = h.job(&[(
        "wait for the other",
        "for _ in $(seq 200); do [ -f \"$OUT/other\" ] && exit 0; sleep 0.05; done; exit 1",
    )]);
    let other = h.job(&[("other", "touch \"$OUT/other\"")]);
    let (waiting_id, other_id) = (waiting.job_id, other.job_id);
    h.fake.push(waiting);
    h.fake.push(other);
    let mut config = h.config();
    config.concurrency = 2;
    let runner = h.start(config);
    assert_eq!(h.finished(other_id).await.outcome, Outcome::Succeeded);
    assert_eq!(h.finished(waiting_id).await.outcome, Outcome::Succeeded);
    runner.stop().await;
}

#[tokio::test]
async fn the_runner_waits_for_a_server_that_is_not_up_yet() {
    let h = Harness::new().await;
    // A port where nothing answers yet: connections are accepted and dropped at once, and
    // counted, so the test waits for the runner's attempts rather than for a time.
    let early = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = early.local_addr().unwrap().port();
    let attempts = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let stop_early = CancellationToken::new();
    let acceptor = {
        let attempts = attempts.clone();
        let stop = stop_early.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    accepted = early.accept() => {
                        if let Ok((socket, _)) = accepted {
                            attempts.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            drop(socket);
                        }
                    }
                }
            }
            early
        })
    };
    let mut config = h.config();
    config.url = format!("http://127.0.0.1:{port}");
    let runner = h.start(config);
    eventually("the runner's second attempt", || {
        (attempts.load(std::sync::atomic::Ordering::SeqCst) >= 2).then_some(())
    })
    .await;
    assert!(!runner.task.is_finished(), "the runner keeps waiting");
    stop_early.cancel();
    // The same listening socket then serves: no second bind of the port to race anything.
    let listener = acceptor.await.unwrap();

    let late = Fake::default();
    serve_fake(&late, listener).await;
    let job = h.job(&[("hello", "echo hi")]);
    let job_id = job.job_id;
    late.push(job);
    let finish = eventually("the finish", || late.finish_of(job_id)).await;
    assert_eq!(finish.outcome, Outcome::Succeeded);
    runner.stop().await;
}

#[tokio::test]
async fn a_refused_token_ends_the_runner_with_an_error() {
    let h = Harness::new().await;
    let mut config = h.config();
    config.token = "fdt_wrong".into();
    let error = tokio::time::timeout(
        Duration::from_secs(20),
        run(config, CancellationToken::new()),
    )
    .await
    .expect("the runner gives up")
    .unwrap_err();
    assert!(
        format!("{error:#}").contains("refused the runner token"),
        "{error:#}"
    );
}

#[tokio::test]
async fn a_job_the_runner_cannot_read_is_failed_not_held() {
    let h = Harness::new().await;
    let job_id = Uuid::new_v4();
    h.fake.with(|c| {
        c.queue.push_back(serde_json::json!({
            "job_id": job_id,
            "attempt": 2,
            "spec": { "steps": "from a newer server" },
        }))
    });
    let runner = h.start(h.config());
    let finish = h.finished(job_id).await;
    assert_eq!(finish.outcome, Outcome::Failed);
    assert_eq!(finish.attempt, 2);
    let reason = finish.reason.unwrap();
    assert!(
        reason.starts_with("runner `test-runner` (version ")
            && reason.contains("cannot read this job"),
        "{reason}"
    );
    runner.stop().await;
}

#[tokio::test]
async fn a_runner_the_server_forgot_registers_again() {
    let h = Harness::new().await;
    h.fake.with(|c| c.forget_runner = true);
    let job = h.job(&[("hello", "echo hi")]);
    let job_id = job.job_id;
    h.fake.push(job);
    let runner = h.start(h.config());
    assert_eq!(h.finished(job_id).await.outcome, Outcome::Succeeded);
    assert_eq!(h.fake.with(|c| c.registrations.len()), 2);
    runner.stop().await;
}
