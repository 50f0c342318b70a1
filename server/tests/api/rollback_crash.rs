//! A rollback survives the death of the server at any recorded step. For each step k (flags,
//! site, jobs, database): two releases are shipped to prod (in-process), then a real
//! `flightdeck serve` process on the same database and artifact storage, started with
//! `FLIGHTDECK_TEST_CRASH_AFTER_STEP=k`, is asked for the rollback (REST or `flightdeck
//! rollback`) and aborts right after step k did its work, before it is recorded — as kill -9
//! would leave things. Two fresh replicas then start together and resume it: it ends succeeded,
//! the environment is all release 1 (site bytes, config.json, flags, schema, current release),
//! and each step's effect happened once (one more line from release 1's deploy job, one flag
//! restore, one safety dump holding the rows written after the deploy, one audit entry).
//!
//! The dead process's deployment lease (30 s on the system clock) is ended by the test rather
//! than waited for: what a moved clock does for the in-process replica test in deployments.rs.

use crate::deployments::until;
use crate::helpers::{PASSWORD, TestApp, fresh_database, url_of};
use crate::rollbacks::{
    assert_schema_of_release_1, deployment_state, env_db, flag_state_sha, rows_in_safety_dump,
    ship_two, wait_deployment, write_notes_and_tags,
};
use domain::clock::Clock;
use domain::run::artifacts::LocalDisk;
use reqwest::StatusCode;
use serde_json::json;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_flightdeck");
const CRASH_AFTER_STEP: &str = server::deployer::CRASH_AFTER_STEP;

/// A `flightdeck serve` process on the test's database, in a data directory of its own whose
/// `artifacts` is the store the shipping server wrote to. Killed when dropped, so a failing test
/// leaves no server behind.
pub struct Replica {
    child: Child,
    pub url: String,
}

impl Replica {
    pub async fn start(
        base: &Path,
        name: &str,
        database: &str,
        crash_after: Option<&str>,
    ) -> Replica {
        Self::start_binary(BIN, base, name, database, crash_after).await
    }

    /// [`Replica::start`] with another build of the binary (the benches take a release one).
    pub async fn start_binary(
        bin: &str,
        base: &Path,
        name: &str,
        database: &str,
        crash_after: Option<&str>,
    ) -> Replica {
        let dir = base.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::os::unix::fs::symlink(base.join("artifacts"), dir.join("artifacts")).unwrap();
        let mut command = Command::new(bin);
        command
            .args(["serve", "--addr", "127.0.0.1:0", "--data-dir"])
            .arg(&dir)
            .env("DATABASE_URL", database)
            .env("FLIGHTDECK_MAX_CONNECTIONS", "8")
            .env("FLIGHTDECK_LOG", "error")
            .env_remove(CRASH_AFTER_STEP)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        if let Some(step) = crash_after {
            command.env(CRASH_AFTER_STEP, step);
        }
        let mut child = command.spawn().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .expect("the server printed its address within 60 s")
            .unwrap()
            .unwrap_or_default();
        let url = first
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no URL in {first:?}"))
            .to_string();
        // Keep reading: a server whose stdout is closed fails at its next line.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Replica { child, url }
    }

    /// Waits for the process to end by itself.
    async fn died(&mut self) -> std::process::ExitStatus {
        tokio::time::timeout(Duration::from_secs(120), self.child.wait())
            .await
            .expect("the server stopped within 120 s")
            .unwrap()
    }

    pub async fn get(&self, path: &str) -> String {
        reqwest::get(format!("{}{path}", self.url))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

/// The rollback asked through REST by a release manager signed in on `replica`; the answer may
/// be lost when the process dies first (the test looks in the database either way).
pub async fn ask_over_rest(
    replica: &Replica,
    key: &str,
) -> Option<(StatusCode, serde_json::Value)> {
    let client = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap();
    let login = client
        .post(format!("{}/fn/login", replica.url))
        .form(&[("username", "rm1"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert!(login.status().is_success() || login.status().is_redirection());
    let response = client
        .post(format!(
            "{}/api/v1/projects/roll/environments/prod/rollbacks",
            replica.url
        ))
        .header("idempotency-key", key)
        .json(&json!({ "rolls_back": 2 }))
        .send()
        .await
        .ok()?;
    let status = response.status();
    Some((status, response.json().await.unwrap_or_default()))
}

/// The recorded steps of rollback #3, in order, with their states.
async fn steps(app: &TestApp) -> Vec<(String, String)> {
    sqlx::query_as(
        "select st.name, st.state from deployment_step st
         join deployment_stage s using (deployment_stage_id)
         join deployment d using (deployment_id)
         where d.number = 3 order by st.position",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap()
}

async fn scalar_i64(app: &TestApp, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(&app.pool).await.unwrap()
}

/// Ships two releases, kills the server right after step `step` of the rollback, restarts two
/// replicas together, and checks the outcome (see the module doc).
async fn crash_after(step: &str, over_rest: bool) {
    let base = tempfile::Builder::new()
        .prefix("flightdeck-rbcrash-")
        .tempdir()
        .unwrap();
    let store = LocalDisk::new(base.path().join("artifacts")).unwrap();
    let options = fresh_database().await;
    let database = url_of(&options);
    let mut shipped = ship_two(TestApp::spawn_storing(options, store.into()).await).await;
    // The shipping server stops; from here on only real processes drive the rollback.
    shipped.runner.cancel();
    shipped.app.shut_down().await;
    let app = &shipped.app;
    let (v1, v2) = (shipped.v1.as_str(), shipped.v2.as_str());
    let db = env_db(&shipped).await;
    write_notes_and_tags(&db).await;
    let v1_flags: i64 = scalar_i64(
        app,
        "select flag_snapshot_version from deployment where number = 1",
    )
    .await;
    let prod_snapshots = "select count(*) from flag_snapshot join environment e using (environment_id) where e.name = 'prod'";
    let snapshots_before = scalar_i64(app, prod_snapshots).await;

    // A server that stops dead right after `step`, asked for the rollback.
    let mut doomed = Replica::start(base.path(), "doomed", &database, Some(step)).await;
    let key = format!("tap-{step}");
    if over_rest {
        if let Some((status, body)) = ask_over_rest(&doomed, &key).await {
            assert_eq!(status, StatusCode::CREATED, "{body}");
            assert_eq!(body["number"], 3, "{body}");
        }
    } else {
        let out = Command::new(BIN)
            .args(["rollback", "--project", "roll", "--environment", "prod"])
            .env("DATABASE_URL", &database)
            .env_remove("FLIGHTDECK_LOG")
            .output()
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("Rollback #3 of prod"),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let status = doomed.died().await;
    assert_eq!(
        status.signal(),
        Some(6),
        "the server aborted after step {step}: {status:?}"
    );
    // It stopped after doing step k and before recording it as done.
    let order = ["flags", "site", "jobs", "database"];
    let at = order.iter().position(|s| *s == step).unwrap();
    let expected: Vec<(String, String)> = order[..=at]
        .iter()
        .map(|s| {
            let state = if *s == step { "started" } else { "done" };
            (s.to_string(), state.to_string())
        })
        .collect();
    assert_eq!(steps(app).await, expected, "the steps when the server died");

    // Its lease runs out (on the system clock it lasts 30 s; the test ends it), and two replicas
    // start at once.
    sqlx::query(
        "update deployment set lease_expires_at = now() - interval '1 second' where number = 3",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let (a, b) = tokio::join!(
        Replica::start(base.path(), "a", &database, None),
        Replica::start(base.path(), "b", &database, None),
    );
    until(
        &format!("rollback #3 ends after the crash at {step}"),
        || async {
            matches!(
                deployment_state(app, 3).await.0.as_str(),
                "succeeded" | "failed"
            )
        },
    )
    .await;
    let (state, reason) = deployment_state(app, 3).await;
    assert_eq!(state, "succeeded", "crash after {step}: {reason:?}");
    if over_rest {
        // A retry of the lost or answered request gets the same rollback.
        let (status, body) = ask_over_rest(&b, &key).await.expect("b answers");
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["number"], 3, "{body}");
    }

    // One rollback, each step recorded done once, one deploy run, one audit entry.
    assert_eq!(
        scalar_i64(
            app,
            "select count(*) from deployment where kind = 'rollback'"
        )
        .await,
        1
    );
    assert_eq!(
        steps(app).await,
        order
            .iter()
            .map(|s| (s.to_string(), "done".to_string()))
            .collect::<Vec<_>>(),
        "crash after {step}"
    );
    assert_eq!(
        scalar_i64(
            app,
            "select count(*) from run r join deployment_stage s using (deployment_stage_id)
             join deployment d using (deployment_id) where d.number = 3"
        )
        .await,
        1,
        "one run of the deploy job (crash after {step})"
    );
    assert_eq!(app.audit_count("deployment.rollback_requested").await, 1);
    assert_eq!(app.audit_count("deployment.rolled_back").await, 1);

    // The site: release 1's bytes and config.json, on both replicas.
    let config_v1: serde_json::Value =
        sqlx::query_scalar("select runtime_config from deployment where number = 1")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    for replica in [&a, &b] {
        until("the replica serves release 1's site", || async {
            replica.get("/env/roll/prod/").await == "<!doctype html><title>v1</title>"
        })
        .await;
        let config: serde_json::Value =
            serde_json::from_str(&replica.get("/env/roll/prod/config.json").await).unwrap();
        assert_eq!(config, config_v1, "crash after {step}");
        assert_eq!(config["release"], v1);
    }
    // The deploy: release 1's job ran again, once.
    let deployed = std::fs::read_to_string(&shipped.marker).unwrap();
    assert_eq!(
        deployed.lines().collect::<Vec<_>>(),
        [v1, v2, v1],
        "crash after {step}"
    );
    // The flags: release 1's snapshot, restored once.
    assert_eq!(
        flag_state_sha(app, None).await,
        flag_state_sha(app, Some(v1_flags)).await
    );
    assert_eq!(
        scalar_i64(app, prod_snapshots).await,
        snapshots_before + 1,
        "one restore snapshot (crash after {step})"
    );
    let restored_from: Option<i64> = sqlx::query_scalar(
        "select s.restored_from from flag_snapshot s join environment e using (environment_id)
         where e.name = 'prod' order by s.version desc limit 1",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(restored_from, Some(v1_flags));
    // The schema: release 1's, the notes kept.
    assert_schema_of_release_1(&db, &format!("crash after {step}")).await;
    // One safety dump, taken before the down scripts: it holds the tags written after the deploy.
    assert_eq!(
        scalar_i64(
            app,
            "select count(*) from database_backup b join deployment d using (deployment_id)
             where d.number = 3 and b.purpose = 'safety'"
        )
        .await,
        1
    );
    assert_eq!(rows_in_safety_dump(app, 3, "tag").await, 3);
    if step == "database" {
        let reused: Option<bool> = sqlx::query_scalar(
            "select (st.detail->>'safety_dump_reused')::boolean from deployment_step st
             join deployment_stage s using (deployment_stage_id)
             join deployment d using (deployment_id) where d.number = 3 and st.name = 'database'",
        )
        .fetch_one(&app.pool)
        .await
        .unwrap();
        assert_eq!(reused, Some(true), "the redone step reused the safety dump");
    }
    // The environment runs release 1, by the rollback.
    let (current, kind): (String, String) = sqlx::query_as(
        "select e.current_release, d.kind from environment e
         join deployment d on d.deployment_id = e.current_deployment_id where e.name = 'prod'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!((current.as_str(), kind.as_str()), (v1, "rollback"));
    db.close().await;
    drop((a, b));
    let _ = std::fs::remove_dir_all(shipped.marker.parent().unwrap());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rollback_killed_after_any_step_is_resumed_once_by_two_replicas_and_ends_consistent() {
    // The four crashes, each on its own database and storage, at once (each is mostly waiting).
    futures::future::join_all([
        crash_after("flags", true),
        crash_after("site", false),
        crash_after("jobs", true),
        crash_after("database", false),
    ])
    .await;
}

/// A step that outlasts the deployment's lease (30 s) keeps it: the replica renews its lease
/// while the step works, so no other replica takes the rollback over and does the step a second
/// time beside it (and the replica itself does not redo it after finding its lease gone). The
/// database step is held up by a lock on the table its safety dump must read, while the clocks
/// of both replicas move 40 s, 10 s at a time.
#[tokio::test(flavor = "multi_thread")]
async fn a_step_longer_than_the_lease_keeps_it_and_runs_once() {
    let shipped = ship_two(TestApp::spawn_empty().await).await;
    let a = &shipped.app;
    let b = TestApp::spawn_storing(a.options.clone(), a.artifacts.clone()).await;
    let db = env_db(&shipped).await;
    sqlx::query("insert into note (body) values ('a')")
        .execute(&db)
        .await
        .unwrap();
    // pg_dump waits for this lock: the database step goes on until the test lets it.
    let mut holder = db.begin().await.unwrap();
    sqlx::query("lock table tag in access exclusive mode")
        .execute(&mut *holder)
        .await
        .unwrap();
    let rm1 = a.sign_in("rm1").await;
    let (status, body) = a
        .api(
            &rm1,
            reqwest::Method::POST,
            "/api/v1/projects/roll/environments/prod/rollbacks",
            Some(json!({ "rolls_back": 2 })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    until("the database step starts", || async {
        steps(a).await.last() == Some(&("database".into(), "started".into()))
    })
    .await;
    let lease = || async {
        sqlx::query_as::<_, (uuid::Uuid, chrono::DateTime<chrono::Utc>)>(
            "select driver, lease_expires_at from deployment where number = 3",
        )
        .fetch_one(&a.pool)
        .await
        .unwrap()
    };
    let (driver, _) = lease().await;
    for _ in 0..4 {
        a.clock.advance(chrono::Duration::seconds(10));
        b.clock.advance(chrono::Duration::seconds(10));
        let now = a.clock.now().max(b.clock.now());
        until("the lease is renewed while the step works", || async {
            lease().await.1 > now + chrono::Duration::seconds(20)
        })
        .await;
        assert_eq!(
            lease().await.0,
            driver,
            "nobody else took the rollback over"
        );
        assert_eq!(
            steps(a).await.last(),
            Some(&("database".into(), "started".into()))
        );
    }
    holder.rollback().await.unwrap();
    wait_deployment(a, 3).await;
    let (reused, plan): (Option<bool>, Option<String>) = sqlx::query_as(
        "select (st.detail->>'safety_dump_reused')::boolean, st.detail->'plan'->>'action'
         from deployment_step st join deployment_stage s using (deployment_stage_id)
         join deployment d using (deployment_id) where d.number = 3 and st.name = 'database'",
    )
    .fetch_one(&a.pool)
    .await
    .unwrap();
    assert_eq!(
        (reused, plan.as_deref()),
        (Some(false), Some("down_scripts")),
        "the database step ran once"
    );
    assert_eq!(a.audit_count("deployment.rolled_back").await, 1);
    assert_eq!(rows_in_safety_dump(a, 3, "note").await, 1);
    db.close().await;
}
