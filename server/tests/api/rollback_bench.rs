//! Rollback benches, run by hand (ignored): the rollbacks run in a real `flightdeck serve`
//! process on the system clock; what it rolls back is shipped by an in-process server first.
//!
//! ```text
//! cargo test -p flightdeck --test api rollback_bench -- --ignored --nocapture --test-threads=1
//! ```
//!
//! With `FLIGHTDECK_BIN=$CARGO_TARGET_DIR/server-release/flightdeck` the measured process is a
//! release build (`LEPTOS_OUTPUT_NAME=flightdeck cargo build -p flightdeck --bin flightdeck
//! --no-default-features --profile server-release`); without it, the debug build of the tests.

use crate::deployments::until;
use crate::helpers::{PASSWORD, TestApp, fresh_database, url_of};
use crate::rollback_crash::Replica;
use crate::rollbacks::{
    ROLL, commit, deployment_state, flag_state_sha, run_main, version_of, wait_deployment,
};
use crate::runs::repository;
use domain::role::Role;
use domain::run::artifacts::LocalDisk;
use reqwest::StatusCode;
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};

/// A release with no migration and no deploy job: a site and a flag.
const SITE_AND_FLAGS: &str = r#"
project:
  name: Roll
  key: roll
triggers:
  push:
    branches: [main]
environments:
  prod: {}
rollback:
  manual:
    roles: [release-manager]
  restore_flags: true
phases:
  ci:
    title: CI
    stages:
      build:
        jobs:
          web:
            steps:
              - mkdir -p dist/web && cp web/* dist/web/
            artifacts:
              - { name: web, path: dist/web, kind: web }
      deploy-prod:
        deploy:
          environment: prod
          publish: [web]
      feature-flags:
        flags:
          environment: prod
          set:
            new-ui:
              enabled: NEW_UI
"#;

fn binary() -> String {
    std::env::var("FLIGHTDECK_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_flightdeck").into())
}

/// Commits `files` (and the definition), loads it, runs main and waits for deployment `number`.
async fn release(app: &TestApp, dir: &Path, definition: &str, files: &[(&str, &str)], number: i64) {
    for (path, text) in files {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    std::fs::write(dir.join("flightdeck.yml"), definition).unwrap();
    commit(dir, &format!("release {number}"));
    app.load_project(definition, dir).await;
    run_main(app).await;
    wait_deployment(app, number).await;
}

async fn signed_in(replica: &Replica, who: &str) -> reqwest::Client {
    let client = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap();
    let login = client
        .post(format!("{}/fn/login", replica.url))
        .form(&[("username", who), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert!(login.status().is_success() || login.status().is_redirection());
    client
}

/// Taps Roll back (REST) and returns the rollback's number.
async fn tap(client: &reqwest::Client, replica: &Replica) -> i64 {
    let response = client
        .post(format!(
            "{}/api/v1/projects/roll/environments/prod/rollbacks",
            replica.url
        ))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["number"].as_i64().unwrap()
}

async fn wait_succeeded(app: &TestApp, number: i64) {
    until(&format!("deployment #{number} ends"), || async {
        matches!(
            deployment_state(app, number).await.0.as_str(),
            "succeeded" | "failed"
        )
    })
    .await;
    let (state, reason) = deployment_state(app, number).await;
    assert_eq!(state, "succeeded", "#{number}: {reason:?}");
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn summary(what: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let p50 = samples[samples.len() / 2];
    let max = samples[samples.len() - 1];
    println!(
        "{what}: p50 {:.0} ms, max {:.0} ms, min {:.0} ms over {} rollbacks",
        millis(p50),
        millis(max),
        millis(samples[0]),
        samples.len()
    );
}

/// Tap → site switched and flags restored: 20 rollbacks of a release with no migration and no
/// deploy job (the same release promoted again between them). From the REST call's start until
/// the server serves release 1's bytes and the environment's flags are release 1's snapshot
/// (polled every 2 ms); tap → done (the rollback recorded succeeded) beside it. Goal ≤ 1 s.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "a bench: run by hand"]
async fn rollback_site_and_flags_bench() {
    let base = tempfile::Builder::new()
        .prefix("flightdeck-rbbench-")
        .tempdir()
        .unwrap();
    let store = LocalDisk::new(base.path().join("artifacts")).unwrap();
    let options = fresh_database().await;
    let database = url_of(&options);
    let mut app = TestApp::spawn_storing(options, store.into()).await;
    let definition = |new_ui: bool| SITE_AND_FLAGS.replace("NEW_UI", &new_ui.to_string());
    let (dir, _) = repository(&definition(false), &[]);
    app.load_project(&definition(false), &dir).await;
    let runner = app.runner("bench-runner", &["linux"]).await;
    app.add_user("rm1", Role::ReleaseManager).await;
    release(
        &app,
        &dir,
        &definition(false),
        &[("web/index.html", "<!doctype html><title>v1</title>")],
        1,
    )
    .await;
    release(
        &app,
        &dir,
        &definition(true),
        &[("web/index.html", "<!doctype html><title>v2</title>")],
        2,
    )
    .await;
    let v2 = version_of(&app, 2).await;
    let v1_flags: i64 =
        sqlx::query_scalar("select flag_snapshot_version from deployment where number = 1")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    let v1_sha = flag_state_sha(&app, Some(v1_flags)).await;
    runner.cancel();
    app.shut_down().await;

    let bin = binary();
    println!("measuring {bin}");
    let replica = Replica::start_binary(&bin, base.path(), "bench", &database, None).await;
    let client = signed_in(&replica, "rm1").await;
    let (mut switched, mut done) = (Vec::new(), Vec::new());
    for _ in 0..20 {
        assert_ne!(
            flag_state_sha(&app, None).await,
            v1_sha,
            "release 2's flags"
        );
        let tapped = Instant::now();
        let number = tap(&client, &replica).await;
        loop {
            if replica.get("/env/roll/prod/").await == "<!doctype html><title>v1</title>"
                && flag_state_sha(&app, None).await == v1_sha
            {
                break;
            }
            assert!(tapped.elapsed() < Duration::from_secs(60), "never switched");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        switched.push(tapped.elapsed());
        while deployment_state(&app, number).await.0 == "running" {
            assert!(tapped.elapsed() < Duration::from_secs(60), "never done");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        done.push(tapped.elapsed());
        wait_succeeded(&app, number).await;
        // Release 2 again, for the next rollback.
        let out = tokio::process::Command::new(&bin)
            .args(["promote", "--project", "roll", "--environment", "prod"])
            .args(["--release", &v2])
            .env("DATABASE_URL", &database)
            .env_remove("FLIGHTDECK_LOG")
            .output()
            .await
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        wait_succeeded(&app, number + 1).await;
    }
    summary("tap → site switched and flags restored", switched);
    summary("tap → rollback done (no database declared)", done);
    drop(replica);
}

/// Tap → done for a rollback that restores a ~100 MB database (no down scripts: the pre-deploy
/// backup is restored, after a safety dump of the same size). Release 1 makes a table that is
/// filled to the size; release 2 (its deploy takes the backup) adds a table.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "a bench: run by hand"]
async fn rollback_database_restore_bench() {
    let megabytes: i64 = std::env::var("ROLLBACK_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let base = tempfile::Builder::new()
        .prefix("flightdeck-rbbench-")
        .tempdir()
        .unwrap();
    let store = LocalDisk::new(base.path().join("artifacts")).unwrap();
    let options = fresh_database().await;
    let database = url_of(&options);
    let mut app = TestApp::spawn_storing(options.clone(), store.into()).await;
    let dbname = format!("roll_bench_{}", uuid::Uuid::new_v4().simple());
    let marker = base.path().join("deployed");
    let definition = |new_ui: bool| {
        ROLL.replace("DBNAME", &dbname)
            .replace("MARKER", marker.to_str().unwrap())
            .replace("NEW_UI", &new_ui.to_string())
    };
    let (dir, _) = repository(&definition(false), &[]);
    app.load_project(&definition(false), &dir).await;
    let runner = app.runner("bench-runner", &["linux"]).await;
    app.add_user("rm1", Role::ReleaseManager).await;
    release(
        &app,
        &dir,
        &definition(false),
        &[
            ("web/index.html", "<!doctype html><title>v1</title>"),
            (
                "db/0001_create_note.sql",
                "create table note (id bigserial primary key, body text not null);\n",
            ),
        ],
        1,
    )
    .await;
    let db = sqlx::PgPool::connect_with(options.clone().database(&dbname))
        .await
        .unwrap();
    let filling = Instant::now();
    loop {
        let size: i64 = sqlx::query_scalar("select pg_database_size(current_database())")
            .fetch_one(&db)
            .await
            .unwrap();
        if size >= megabytes * 1_000_000 {
            println!(
                "database {:.1} MB (filled in {:.1} s)",
                size as f64 / 1e6,
                filling.elapsed().as_secs_f64()
            );
            break;
        }
        sqlx::query(
            // Random text (hex digits): it compresses about as much as real rows do.
            "insert into note (body) select md5(random()::text) || md5(random()::text)
                 || md5(random()::text) || md5(random()::text) || md5(random()::text)
                 || md5(random()::text) || md5(random()::text) || md5(random()::text)
             from generate_series(1, 50000)",
        )
        .execute(&db)
        .await
        .unwrap();
    }
    db.close().await;
    release(
        &app,
        &dir,
        &definition(true),
        &[
            ("web/index.html", "<!doctype html><title>v2</title>"),
            (
                "db/0002_create_tag.sql",
                "create table tag (id serial primary key, name text not null);\n",
            ),
        ],
        2,
    )
    .await;
    runner.cancel();
    app.shut_down().await;

    let bin = binary();
    println!("measuring {bin}");
    let replica = Replica::start_binary(&bin, base.path(), "bench", &database, None).await;
    let client = signed_in(&replica, "rm1").await;
    let tapped = Instant::now();
    let number = tap(&client, &replica).await;
    wait_succeeded(&app, number).await;
    let elapsed = tapped.elapsed();
    let steps: Vec<(String, f64, serde_json::Value)> = sqlx::query_as(
        "select st.name, extract(epoch from st.finished_at - st.started_at)::float8, st.detail
         from deployment_step st join deployment_stage s using (deployment_stage_id)
         join deployment d using (deployment_id) where d.number = $1 order by st.position",
    )
    .bind(number)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    for (name, seconds, detail) in &steps {
        let what = match name.as_str() {
            "database" => format!(
                "({}; reused an earlier safety dump: {})",
                detail["plan"]["action"], detail["safety_dump_reused"]
            ),
            _ => String::new(),
        };
        println!("  step {name}: {:.0} ms {what}", seconds * 1000.0);
    }
    let dumps: Vec<(String, i64)> = sqlx::query_as(
        "select purpose, size_bytes from database_backup
         where database_name = $1 order by created_at",
    )
    .bind(&dbname)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    for (purpose, size) in &dumps {
        println!("  {purpose} dump: {:.1} MB compressed", *size as f64 / 1e6);
    }
    assert_eq!(dumps.iter().filter(|(p, _)| p == "safety").count(), 1);
    println!(
        "tap → done, restoring a {megabytes} MB database: {:.1} s",
        elapsed.as_secs_f64()
    );
    drop(replica);
}
