//! One rollback takes back the site, the deploy, the database and the flags together, exactly
//! once: release 2 (a new table, a flag switched on, a new page) is deployed over release 1,
//! people write rows, then twenty requests at once roll production back — one rollback, whose
//! steps bring back release 1's exact bytes, its deploy job, its schema (down scripts) and its
//! flag snapshot, with the rows written in between kept in a safety dump.

use crate::deployments::until;
use crate::helpers::TestApp;
use crate::runs::repository;
use domain::role::Role;
use domain::state::RunState;
use reqwest::StatusCode;
use serde_json::json;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

pub const ROLL: &str = r#"
project:
  name: Roll
  key: roll
triggers:
  push:
    branches: [main]
environments:
  prod:
    database:
      name: DBNAME
rollback:
  manual:
    roles: [release-manager]
  restore_database: true
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
              - { name: db-schema, path: db, kind: db-schema }
      deploy-prod:
        deploy:
          environment: prod
          publish: [web]
          migrate: db-schema
          job:
            steps:
              - echo "$FLIGHTDECK_RELEASE" >> MARKER
      feature-flags:
        flags:
          environment: prod
          set:
            new-ui:
              enabled: NEW_UI
"#;

pub fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn commit(dir: &Path, message: &str) {
    git(dir, &["add", "-A"]);
    git(
        dir,
        &[
            "-c",
            "user.name=Tess Tester",
            "-c",
            "user.email=tess@example.com",
            "commit",
            "-q",
            "-m",
            message,
        ],
    );
}

/// A project with two releases deployed to prod, one after the other (see the module doc).
pub struct Shipped {
    pub app: TestApp,
    pub dbname: String,
    pub marker: std::path::PathBuf,
    pub v1: String,
    pub v2: String,
    /// The in-process runner that ran the builds and deploys (cancel it to stop it polling).
    pub runner: tokio_util::sync::CancellationToken,
}

pub async fn deployment_state(app: &TestApp, number: i64) -> (String, Option<String>) {
    sqlx::query_as("select state, reason from deployment where number = $1")
        .bind(number)
        .fetch_optional(&app.pool)
        .await
        .unwrap()
        .unwrap_or(("none".into(), None))
}

pub async fn run_main(app: &TestApp) {
    let developer = app.person(Role::Developer).await;
    let (status, body) = app
        .api(
            &developer,
            reqwest::Method::POST,
            "/api/v1/projects/roll/runs",
            Some(json!({ "branch": "main" })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let number = body["number"].as_i64().unwrap();
    let run = app
        .finished_run("roll", number, Duration::from_secs(180))
        .await;
    assert_eq!(run.summary.state, RunState::Succeeded, "{run:#?}");
}

pub async fn wait_deployment(app: &TestApp, number: i64) {
    until(&format!("deployment #{number} ends"), || async {
        matches!(
            deployment_state(app, number).await.0.as_str(),
            "succeeded" | "failed"
        )
    })
    .await;
    let (state, reason) = deployment_state(app, number).await;
    assert_eq!(state, "succeeded", "deployment #{number}: {reason:?}");
}

pub async fn version_of(app: &TestApp, number: i64) -> String {
    sqlx::query_scalar(
        "select r.version from deployment d join release r using (release_id) where d.number = $1",
    )
    .bind(number)
    .fetch_one(&app.pool)
    .await
    .unwrap()
}

/// Releases 1 and 2 deployed to prod (deployments #1 and #2), with rows written after #2.
pub async fn ship_two(app: TestApp) -> Shipped {
    ship_two_with(app, ROLL).await
}

/// [`ship_two`] with another pipeline: `template` is [`ROLL`] changed (its DBNAME, MARKER and
/// NEW_UI placeholders are filled in).
pub async fn ship_two_with(app: TestApp, template: &str) -> Shipped {
    let dbname = format!("roll_prod_{}", uuid::Uuid::new_v4().simple());
    let marker = tempfile::Builder::new()
        .prefix("flightdeck-marker-")
        .tempdir()
        .unwrap()
        .keep()
        .join("deployed");
    let definition = |new_ui: bool| {
        template
            .replace("DBNAME", &dbname)
            .replace("MARKER", marker.to_str().unwrap())
            .replace("NEW_UI", &new_ui.to_string())
    };
    let (dir, _) = repository(&definition(false), &[]);
    std::fs::create_dir_all(dir.join("web")).unwrap();
    std::fs::write(
        dir.join("web/index.html"),
        "<!doctype html><title>v1</title>",
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("db")).unwrap();
    std::fs::write(
        dir.join("db/0001_create_note.sql"),
        "create table note (id serial primary key, body text not null);\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("db/0001_create_note.down.sql"),
        "drop table note;\n",
    )
    .unwrap();
    commit(&dir, "Notes");
    app.load_project(&definition(false), &dir).await;
    let runner = app.runner("test-runner", &["linux"]).await;
    app.add_user("rm1", Role::ReleaseManager).await;
    app.add_user("rm2", Role::ReleaseManager).await;
    run_main(&app).await;
    wait_deployment(&app, 1).await;

    // Release 2: a table, a flag switched on, a new page.
    std::fs::write(
        dir.join("web/index.html"),
        "<!doctype html><title>v2</title>",
    )
    .unwrap();
    std::fs::write(
        dir.join("db/0002_create_tag.sql"),
        "create table tag (id serial primary key, note_id int references note, name text not null);\n",
    )
    .unwrap();
    std::fs::write(dir.join("db/0002_create_tag.down.sql"), "drop table tag;\n").unwrap();
    std::fs::write(dir.join("flightdeck.yml"), definition(true)).unwrap();
    commit(&dir, "Tags");
    app.load_project(&definition(true), &dir).await;
    run_main(&app).await;
    wait_deployment(&app, 2).await;
    let v1 = version_of(&app, 1).await;
    let v2 = version_of(&app, 2).await;
    Shipped {
        app,
        dbname,
        marker,
        v1,
        v2,
        runner,
    }
}

/// What people write on release 2: two notes, and three tags (`tag` came with release 2).
pub async fn write_notes_and_tags(db: &sqlx::PgPool) {
    sqlx::query("insert into note (body) values ('a'), ('b')")
        .execute(db)
        .await
        .unwrap();
    sqlx::query("insert into tag (note_id, name) values (1, 'x'), (1, 'y'), (2, 'z')")
        .execute(db)
        .await
        .unwrap();
}

pub async fn env_db(shipped: &Shipped) -> sqlx::PgPool {
    let options = shipped.app.options.clone().database(&shipped.dbname);
    sqlx::PgPool::connect_with(options).await.unwrap()
}

pub async fn page(app: &TestApp, path: &str) -> String {
    reqwest::get(app.url(path))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

pub async fn flag_state_sha(app: &TestApp, version: Option<i64>) -> String {
    sqlx::query_scalar(
        "select s.sha256 from flag_snapshot s join environment e using (environment_id)
         where e.name = 'prod' and ($1::bigint is null or s.version = $1)
         order by s.version desc limit 1",
    )
    .bind(version)
    .fetch_one(&app.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn one_rollback_brings_back_the_site_the_deploy_the_schema_and_the_flags_exactly_once() {
    let shipped = ship_two(TestApp::spawn_empty().await).await;
    let app = &shipped.app;
    let db = env_db(&shipped).await;
    write_notes_and_tags(&db).await;
    assert_eq!(
        page(app, "/env/roll/prod/").await,
        "<!doctype html><title>v2</title>"
    );
    let v1_flags: i64 =
        sqlx::query_scalar("select flag_snapshot_version from deployment where number = 1")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_ne!(
        flag_state_sha(app, None).await,
        flag_state_sha(app, Some(v1_flags)).await,
        "release 2 switched a flag on"
    );

    // Who may: a developer may not roll production back.
    let developer = app.person(Role::Developer).await;
    let path = "/api/v1/projects/roll/environments/prod/rollbacks";
    let (status, body) = app
        .api(&developer, reqwest::Method::POST, path, Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");

    // Twenty requests at once, from two release managers, half with one Idempotency-Key.
    let rm1 = app.sign_in("rm1").await;
    let rm2 = app.sign_in("rm2").await;
    let calls = (0..20).map(|i| {
        let client = if i % 2 == 0 { rm1.clone() } else { rm2.clone() };
        let url = app.url(path);
        async move {
            let mut request = client.post(url).json(&json!({ "rolls_back": 2 }));
            if i < 10 {
                request = request.header("idempotency-key", "phone-tap-1");
            }
            let response = request.send().await.unwrap();
            let status = response.status();
            let body: serde_json::Value = response.json().await.unwrap();
            (status, body)
        }
    });
    let answers = futures::future::join_all(calls).await;
    let created = answers
        .iter()
        .filter(|(s, _)| *s == StatusCode::CREATED)
        .count();
    assert_eq!(created, 1, "{answers:#?}");
    for (status, body) in &answers {
        assert!(status.is_success(), "{status}: {body}");
        assert_eq!(body["number"], 3, "{body}");
        assert_eq!(body["from"], shipped.v2.as_str());
        assert_eq!(body["to"], shipped.v1.as_str());
    }
    let rollbacks: i64 =
        sqlx::query_scalar("select count(*) from deployment where kind = 'rollback'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(rollbacks, 1);
    assert_eq!(app.audit_count("deployment.rollback_requested").await, 1);

    wait_deployment(app, 3).await;

    // The site: release 1's exact bytes and configuration.
    assert_eq!(
        page(app, "/env/roll/prod/").await,
        "<!doctype html><title>v1</title>"
    );
    let config: serde_json::Value =
        serde_json::from_str(&page(app, "/env/roll/prod/config.json").await).unwrap();
    assert_eq!(config["release"], shipped.v1.as_str());
    // The deploy: release 1's job ran again.
    let deployed = std::fs::read_to_string(&shipped.marker).unwrap();
    assert_eq!(
        deployed.lines().collect::<Vec<_>>(),
        [
            shipped.v1.as_str(),
            shipped.v2.as_str(),
            shipped.v1.as_str()
        ]
    );
    // The flags: release 1's snapshot.
    assert_eq!(
        flag_state_sha(app, None).await,
        flag_state_sha(app, Some(v1_flags)).await
    );
    // The schema: release 1's (the down script ran), its rows kept.
    assert_schema_of_release_1(&db, "after the rollback").await;
    // The environment runs release 1, and says it was a rollback.
    let (current, kind): (String, String) = sqlx::query_as(
        "select e.current_release, d.kind from environment e
         join deployment d on d.deployment_id = e.current_deployment_id where e.name = 'prod'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        (current.as_str(), kind.as_str()),
        (shipped.v1.as_str(), "rollback")
    );
    assert_eq!(app.audit_count("deployment.rolled_back").await, 1);

    // The rows written between the deploy and the rollback are in the safety dump.
    let dump_rows = rows_in_safety_dump(app, 3, "tag").await;
    assert_eq!(dump_rows, 3);
    download_the_safety_dump(app, &rm1, &developer).await;

    // Asking again, after it is done, gives the same rollback.
    let (status, body) = app
        .api(
            &rm1,
            reqwest::Method::POST,
            path,
            Some(json!({ "rolls_back": 2 })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["number"], 3);
    db.close().await;
}

/// The rollback's page lists its safety dump with a link for those who may roll back: the
/// bytes recorded, a file `pg_restore` opens (its data holds the `tag` rows); a developer is
/// refused, and both are audited.
async fn download_the_safety_dump(
    app: &TestApp,
    rm: &reqwest::Client,
    developer: &reqwest::Client,
) {
    use domain::clock::Clock;
    use sha2::Digest;
    let page_as = |name: &str, role| {
        let acting = domain::environment::Acting::Person {
            name: name.into(),
            role,
        };
        let pool = app.pool.clone();
        let now = app.clock.now();
        async move {
            domain::deployment::query::detail(&pool, "roll", 3, &acting, now)
                .await
                .unwrap()
        }
    };
    let page = page_as("rm1", Role::ReleaseManager).await;
    let [safety] = page.backups.as_slice() else {
        panic!("one safety dump: {:#?}", page.backups);
    };
    assert!(safety.purpose.starts_with("safety dump"), "{safety:?}");
    assert!(safety.kept_until.is_some());
    assert!(safety.file_name.ends_with("-safety.dump"), "{safety:?}");
    let link = safety
        .download
        .clone()
        .expect("a release manager may download it");
    let as_developer = page_as("dev", Role::Developer).await;
    assert_eq!(as_developer.backups[0].download, None);

    let refused = developer.get(app.url(&link)).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let response = rm.get(app.url(&link)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let disposition = response.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(disposition.contains(&safety.file_name), "{disposition}");
    assert_eq!(response.headers()["cache-control"], "no-store");
    let bytes = response.bytes().await.unwrap();
    assert_eq!(hex::encode(sha2::Sha256::digest(&bytes)), safety.sha256);
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &bytes).unwrap();
    let tools = server::envdb::PgTools::locate(15).await.unwrap();
    let listed = std::process::Command::new(&tools.pg_restore)
        .arg("--list")
        .arg(file.path())
        .output()
        .unwrap();
    assert!(listed.status.success(), "{listed:?}");
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.contains("TABLE DATA public tag"), "{listed}");
    for missing in [
        "/api/v1/projects/roll/backups/not-a-backup".to_string(),
        format!("/api/v1/projects/roll/backups/{}", uuid::Uuid::new_v4()),
        link.replace("/projects/roll/", "/projects/other/"),
    ] {
        let answer = rm.get(app.url(&missing)).send().await.unwrap();
        assert_eq!(answer.status(), StatusCode::NOT_FOUND, "{missing}");
    }

    let outcomes: Vec<(String, bool)> = sqlx::query_as(
        "select outcome, security from audit_event where action = 'database_backup.downloaded'
         order by audit_event_id",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        outcomes,
        [("denied".to_string(), true), ("ok".to_string(), true)]
    );
}

/// Restores rollback `number`'s safety dump into a database of its own and counts `table`'s rows.
pub async fn rows_in_safety_dump(app: &TestApp, number: i64, table: &str) -> i64 {
    let mut conn = app.pool.acquire().await.unwrap();
    let rollback: uuid::Uuid =
        sqlx::query_scalar("select deployment_id from deployment where number = $1")
            .bind(number)
            .fetch_one(&mut *conn)
            .await
            .unwrap();
    let safety = domain::envdb::backup::safety_dump(&mut conn, rollback)
        .await
        .unwrap()
        .expect("the rollback kept a safety dump");
    let dbs = server::envdb::EnvironmentDatabases::new(
        &crate::helpers::url_of(&app.options),
        app.artifacts.clone(),
    )
    .unwrap();
    let name = format!("kept_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let elsewhere = dbs
        .resolve(&domain::definition::DatabaseTarget::Name(name.clone()))
        .unwrap();
    dbs.ensure_exists(&elsewhere).await.unwrap();
    dbs.restore(&elsewhere, &safety).await.unwrap();
    let mut kept = elsewhere.url.connect().await.unwrap();
    let rows: i64 = sqlx::query_scalar(&format!("select count(*) from {table}"))
        .fetch_one(&mut kept)
        .await
        .unwrap();
    sqlx::Connection::close(kept).await.unwrap();
    let mut admin = elsewhere
        .url
        .with_database("postgres")
        .connect()
        .await
        .unwrap();
    sqlx::raw_sql(&format!("drop database if exists {name} with (force)"))
        .execute(&mut admin)
        .await
        .unwrap();
    rows
}

/// Release 1's schema (release 2's `tag` table undone by its down script), with the two notes
/// written after the deploy kept.
pub async fn assert_schema_of_release_1(db: &sqlx::PgPool, context: &str) {
    let versions: Vec<i32> =
        sqlx::query_scalar("select version from schema_migration order by version")
            .fetch_all(db)
            .await
            .unwrap();
    assert_eq!(versions, [1], "{context}");
    let tag: Option<String> = sqlx::query_scalar("select to_regclass('tag')::text")
        .fetch_one(db)
        .await
        .unwrap();
    assert_eq!(tag, None, "{context}");
    let notes: i64 = sqlx::query_scalar("select count(*) from note")
        .fetch_one(db)
        .await
        .unwrap();
    assert_eq!(notes, 2, "{context}");
}
