//! A deploy stage that really deploys: the release's database migrations applied to the
//! environment's own database after a backup, its web build published as the environment's site
//! (exact bytes, hashed files immutable, the runtime configuration beside it) — and a release
//! whose migration fails restores the backup, says which file and line, and leaves the site and
//! the current release as they were.

use crate::deployments::until;
use crate::helpers::TestApp;
use crate::rollbacks::git;
use crate::runs::repository;
use domain::role::Role;
use domain::state::RunState;
use sha2::{Digest, Sha256};
use std::time::Duration;

const SITE: &str = r#"
project:
  name: Site
  key: site
triggers:
  push:
    branches: [main]
environments:
  dev:
    database:
      name: DBNAME
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
              - { name: db-schema, path: db, kind: db-schema }
      deploy-dev:
        deploy:
          environment: dev
          publish: [web]
          migrate: db-schema
          job:
            steps:
              - echo "deploying the API to $FLIGHTDECK_ENVIRONMENT"
              # The environment's database reaches the deploy job (the API runs on it).
              - psql "$DATABASE_URL" -Atc "select count(*) from schema_migration"
"#;

const SCRIPT: &str = "console.log('v1');\n";

/// The script's content-hashed name, as a build names it (`app.<first 8 of its sha256>.js`).
fn script_name() -> String {
    format!("app.{}.js", &hex::encode(Sha256::digest(SCRIPT))[..8])
}

fn index_html() -> String {
    format!(
        "<!doctype html><title>Site</title><script src=\"{}\"></script>",
        script_name()
    )
}

async fn deployment(app: &TestApp, number: i64) -> (String, Option<String>) {
    sqlx::query_as("select state, reason from deployment where number = $1")
        .bind(number)
        .fetch_optional(&app.pool)
        .await
        .unwrap()
        .unwrap_or(("none".into(), None))
}

async fn run_main(app: &TestApp, number: i64) {
    let developer = app.person(Role::Developer).await;
    let (status, body) = app
        .api(
            &developer,
            reqwest::Method::POST,
            "/api/v1/projects/site/runs",
            Some(serde_json::json!({ "branch": "main" })),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "{body}");
    let run = app
        .finished_run("site", number, Duration::from_secs(120))
        .await;
    assert_eq!(run.summary.state, RunState::Succeeded, "{run:#?}");
}

#[tokio::test]
async fn a_deploy_migrates_the_environments_database_and_publishes_its_site_or_restores_and_says_why()
 {
    let app = TestApp::spawn_empty().await;
    let dbname = format!("site_dev_{}", uuid::Uuid::new_v4().simple());
    let definition = SITE.replace("DBNAME", &dbname);
    let (dir, _) = repository(&definition, &[]);
    std::fs::create_dir_all(dir.join("web")).unwrap();
    std::fs::write(dir.join("web/index.html"), index_html()).unwrap();
    std::fs::write(dir.join("web").join(script_name()), SCRIPT).unwrap();
    std::fs::create_dir_all(dir.join("db")).unwrap();
    std::fs::write(
        dir.join("db/0001_create_note.sql"),
        "create table note (id serial primary key, body text not null);\n",
    )
    .unwrap();
    git(&dir, &["add", "-A"]);
    git(
        &dir,
        &[
            "-c",
            "user.name=Tess Tester",
            "-c",
            "user.email=tess@example.com",
            "commit",
            "-q",
            "-m",
            "Notes",
        ],
    );
    app.load_project(&definition, &dir).await;
    app.runner("test-runner", &["linux"]).await;

    // Release 1: the migration lands in dev's own database, the site goes live.
    run_main(&app, 1).await;
    until("deployment #1 ends", || async {
        matches!(deployment(&app, 1).await.0.as_str(), "succeeded" | "failed")
    })
    .await;
    assert_eq!(deployment(&app, 1).await, ("succeeded".into(), None));
    let mut options = app.options.clone();
    options = options.database(&dbname);
    let env_db = sqlx::PgPool::connect_with(options).await.unwrap();
    sqlx::query("insert into note (body) values ('kept')")
        .execute(&env_db)
        .await
        .unwrap();
    let applied: i64 = sqlx::query_scalar("select count(*) from schema_migration")
        .fetch_one(&env_db)
        .await
        .unwrap();
    assert_eq!(applied, 1);
    let client = reqwest::Client::new();
    let index = client.get(app.url("/env/site/dev/")).send().await.unwrap();
    assert_eq!(index.status(), 200);
    assert_eq!(index.headers()["cache-control"], "no-cache");
    assert_eq!(index.text().await.unwrap(), index_html());
    let script = client
        .get(app.url(&format!("/env/site/dev/{}", script_name())))
        .send()
        .await
        .unwrap();
    assert_eq!(
        script.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    let body = script.bytes().await.unwrap();
    assert_eq!(
        hex::encode(Sha256::digest(&body)),
        hex::encode(Sha256::digest(SCRIPT))
    );
    let config: serde_json::Value = client
        .get(app.url("/env/site/dev/config.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(config["environment"], "dev");
    assert_eq!(config["release"], deployment_version(&app, 1).await);
    // The release knows its migrations.
    until("release 1 lists its migration", || async {
        sqlx::query_scalar::<_, i64>("select count(*) from release_migration")
            .fetch_one(&app.pool)
            .await
            .unwrap()
            == 1
    })
    .await;

    // Release 2: a broken migration on line 2. Restored, the site and the release stay.
    std::fs::write(
        dir.join("db/0002_broken.sql"),
        "alter table note add column seen boolean;\nalter tabel note add column x int;\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("web/index.html"),
        "<!doctype html><title>v2</title>",
    )
    .unwrap();
    git(&dir, &["add", "-A"]);
    git(
        &dir,
        &[
            "-c",
            "user.name=Tess Tester",
            "-c",
            "user.email=tess@example.com",
            "commit",
            "-q",
            "-m",
            "Broken",
        ],
    );
    run_main(&app, 3).await;
    until("deployment #2 ends", || async {
        matches!(deployment(&app, 2).await.0.as_str(), "succeeded" | "failed")
    })
    .await;
    let (state, reason) = deployment(&app, 2).await;
    assert_eq!(state, "failed");
    let reason = reason.unwrap();
    assert!(reason.contains("0002_broken.sql"), "{reason}");
    assert!(reason.contains("line 2"), "{reason}");
    assert!(reason.contains("restored from backup"), "{reason}");
    let kept: Vec<String> = sqlx::query_scalar("select body from note")
        .fetch_all(&env_db)
        .await
        .unwrap();
    assert_eq!(kept, ["kept"]);
    let seen: Option<String> = sqlx::query_scalar(
        "select column_name::text from information_schema.columns where table_name = 'note' and column_name = 'seen'",
    )
    .fetch_optional(&env_db)
    .await
    .unwrap();
    assert_eq!(seen, None, "the half-applied migration is gone");
    let index = client.get(app.url("/env/site/dev/")).send().await.unwrap();
    assert_eq!(
        index.text().await.unwrap(),
        index_html(),
        "the site did not switch"
    );
    let current: String =
        sqlx::query_scalar("select current_release from environment where name = 'dev'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(current, deployment_version(&app, 1).await);
    env_db.close().await;
}

async fn deployment_version(app: &TestApp, number: i64) -> String {
    sqlx::query_scalar(
        "select r.version from deployment d join release r using (release_id) where d.number = $1",
    )
    .bind(number)
    .fetch_one(&app.pool)
    .await
    .unwrap()
}
