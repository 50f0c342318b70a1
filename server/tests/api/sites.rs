//! Environments' sites: a release's `web` and `assets` artifacts, published as a site version,
//! switched in, and served by every replica at the environment's path with the right caching;
//! a tampered artifact never served; a switch back serving the old bytes again.
//!
//! Releases are made here in SQL (the release engine is built beside this); the artifacts are
//! real: gzipped tarballs taken in through `ingest`, as a runner's upload is.

use crate::helpers::{TestApp, fresh_database};
use crate::storage::test_bucket;
use domain::audit::{Actor, Origin};
use domain::environment::EnvironmentId;
use domain::run::artifacts::{ArtifactStore, Upload, ingest, key_for};
use domain::run::store::{Commit, Trigger};
use domain::site::{self, SiteError, SiteVersionId};
use futures::StreamExt;
use reqwest::StatusCode;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const WAIT: Duration = Duration::from_secs(30);

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// `name.ext` → `name.<8 hex of its sha256>.ext`, as the sample's build scripts name files.
fn hashed(name: &str, content: &[u8]) -> String {
    let (stem, ext) = name.rsplit_once('.').unwrap();
    format!("{stem}.{}.{ext}", &sha256(content)[..8])
}

/// A built web app and asset bundle whose contents say `label`.
struct Build {
    /// Path under the site → bytes.
    files: BTreeMap<String, Vec<u8>>,
    web: Vec<u8>,
    assets: Vec<u8>,
    /// The hashed names of the app's script and of the German translation.
    script: String,
    translation: String,
}

fn build(label: &str) -> Build {
    let script_body = format!("console.log('studybuddy {label}');\n").into_bytes();
    let script = hashed("app.js", &script_body);
    let index =
        format!("<!doctype html><title>{label}</title><script src=\"{script}\"></script>\n")
            .into_bytes();
    let styles = format!("body {{ content: '{label}'; }}\n").into_bytes();
    let manifest =
        format!("{{\"name\": \"studybuddy-web\", \"label\": \"{label}\"}}\n").into_bytes();
    let web_files = vec![
        ("index.html".to_string(), index),
        (script.clone(), script_body),
        ("styles.css".to_string(), styles),
        ("manifest.json".to_string(), manifest),
    ];
    let german = format!("{{\"hello\":\"Hallo {label}\"}}").into_bytes();
    let translation = hashed("de.json", &german);
    let asset_files = vec![(format!("i18n/{translation}"), german)];
    let mut files = BTreeMap::new();
    for (name, bytes) in &web_files {
        files.insert(name.clone(), bytes.clone());
    }
    for (name, bytes) in &asset_files {
        files.insert(format!("assets/{name}"), bytes.clone());
    }
    Build {
        web: tar_gz(&web_files),
        assets: tar_gz(&asset_files),
        files,
        script,
        translation: format!("assets/i18n/{translation}"),
    }
}

fn tar_gz(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut archive = tar::Builder::new(gzip);
    for (name, bytes) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        archive
            .append_data(&mut header, name, bytes.as_slice())
            .unwrap();
    }
    archive.into_inner().unwrap().finish().unwrap()
}

/// A release of the sample whose run's `web` job uploaded `build`'s artifacts.
async fn release(app: &TestApp, build: &Build) -> Uuid {
    let sha = sha256(Uuid::new_v4().as_bytes())[..40].to_string();
    let created = domain::run::store::Runs::new(app.pool.clone())
        .create(
            "studybuddy",
            &Commit {
                sha: sha.clone(),
                branch: "main".into(),
                author: "ana".into(),
                message: "a release".into(),
            },
            Trigger::Manual,
            Actor::system(),
            &Origin::default(),
            None,
            None,
        )
        .await
        .unwrap();
    let job_id: Uuid =
        sqlx::query_scalar("select job_id from job where run_id = $1 and name = 'web'")
            .bind(created.run_id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    for (name, bytes) in [("web", &build.web), ("assets", &build.assets)] {
        let body = futures::stream::iter(vec![Ok(bytes::Bytes::from(bytes.clone()))]).boxed();
        let upload = Upload {
            job_id,
            name,
            file_name: None,
            gzip: true,
        };
        ingest(&app.pool, &app.artifacts, upload, body)
            .await
            .unwrap();
    }
    sqlx::query_scalar(
        "insert into release (project_id, run_id, number, version, commit_sha, branch, commit_author,
                              commit_message, created_at)
         select project_id, run_id, number, '1.0.' || number, commit_sha, branch, commit_author,
                commit_message, now()
         from run where run_id = $1
         returning release_id",
    )
    .bind(created.run_id)
    .fetch_one(&app.pool)
    .await
    .unwrap()
}

async fn environment(app: &TestApp, name: &str) -> EnvironmentId {
    let id: Uuid = sqlx::query_scalar("select environment_id from environment where name = $1")
        .bind(name)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    EnvironmentId(id)
}

async fn prepare(app: &TestApp, environment: EnvironmentId, release: Uuid) -> SiteVersionId {
    let mut conn = app.pool.acquire().await.unwrap();
    site::prepare(
        &mut conn,
        environment,
        release,
        None,
        &["web".to_string(), "assets".to_string()],
        serde_json::json!({"api_base": "https://api.example.org/", "release": release.to_string()}),
    )
    .await
    .unwrap()
}

/// Switches in one transaction, as a deployment does; returns the version served before.
async fn switch(
    app: &TestApp,
    environment: EnvironmentId,
    version: SiteVersionId,
) -> Option<SiteVersionId> {
    let mut tx = app.pool.begin().await.unwrap();
    let previous = site::switch(&mut tx, environment, version, "test")
        .await
        .unwrap();
    tx.commit().await.unwrap();
    previous
}

/// Checks that `app` serves exactly `build` at `base` with the caching each file should have.
async fn assert_serves(app: &TestApp, base: &str, build: &Build) {
    let client = app.anonymous();
    for (path, bytes) in &build.files {
        let response = client
            .get(app.url(&format!("{base}{path}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let headers = response.headers().clone();
        let body = response.bytes().await.unwrap();
        assert_eq!(sha256(&body), sha256(bytes), "{path} is served as built");
        assert_eq!(
            headers["etag"].to_str().unwrap(),
            format!("\"{}\"", sha256(bytes))
        );
        let hashed = path == &build.script || path == &build.translation;
        assert_eq!(
            headers["cache-control"].to_str().unwrap(),
            if hashed { IMMUTABLE } else { "no-cache" },
            "{path}"
        );
    }
    let root = client.get(app.url(base)).send().await.unwrap();
    assert_eq!(root.headers()["cache-control"], "no-cache");
    assert_eq!(
        sha256(&root.bytes().await.unwrap()),
        sha256(&build.files["index.html"])
    );
}

#[tokio::test]
async fn a_site_is_served_once_switched_in_with_each_file_cached_as_it_should_be() {
    let app = TestApp::spawn().await;
    let client = app.anonymous();
    // The sample was loaded after the server started: its paths arrive with the notification.
    let deadline = Instant::now() + WAIT;
    loop {
        let before = client.get(app.url("/env/staging/")).send().await.unwrap();
        assert_eq!(before.status(), StatusCode::NOT_FOUND);
        if before
            .text()
            .await
            .unwrap()
            .contains("Nothing deployed to staging yet")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "/env/staging/ never became the site's path"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let staging = environment(&app, "staging").await;
    let build = build("one");
    let release = release(&app, &build).await;
    let version = prepare(&app, staging, release).await;
    assert_eq!(switch(&app, staging, version).await, None);
    assert!(app.sites.wait_for(staging, version, WAIT).await);
    assert_serves(&app, "/env/staging/", &build).await;

    let script = client
        .get(app.url(&format!("/env/staging/{}", build.script)))
        .send()
        .await
        .unwrap();
    assert_eq!(script.headers()["content-type"], "text/javascript");
    let etag = script.headers()["etag"].clone();
    let again = client
        .get(app.url(&format!("/env/staging/{}", build.script)))
        .header("if-none-match", etag.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(again.headers()["etag"], etag);
    assert!(again.bytes().await.unwrap().is_empty());
    let head = client
        .head(app.url("/env/staging/styles.css"))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(head.headers()["content-type"], "text/css");

    let config = client
        .get(app.url("/env/staging/config.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(config.headers()["cache-control"], "no-cache");
    let config: serde_json::Value = config.json().await.unwrap();
    assert_eq!(config["api_base"], "https://api.example.org/");
    assert_eq!(config["release"], release.to_string());

    let redirect = client.get(app.url("/env/staging")).send().await.unwrap();
    assert_eq!(redirect.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(redirect.headers()["location"], "/env/staging/");
    let missing = client
        .get(app.url("/env/staging/nope.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let other = client
        .get(app.url("/env/production/"))
        .send()
        .await
        .unwrap();
    assert!(
        other
            .text()
            .await
            .unwrap()
            .contains("Nothing deployed to production yet"),
        "each environment has its own site"
    );

    let pinned: bool = sqlx::query_scalar(
        "select bool_and(pinned) from artifact where artifact_id in
             (select artifact_id from site_version_artifact where site_version_id = $1)",
    )
    .bind(version.0)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!(pinned, "retention never deletes a site's bytes");
}

#[tokio::test]
async fn switching_back_serves_the_older_version_again() {
    let app = TestApp::spawn().await;
    let production = environment(&app, "production").await;
    let (one, two) = (build("one"), build("two"));
    let first = prepare(&app, production, release(&app, &one).await).await;
    let second = prepare(&app, production, release(&app, &two).await).await;
    switch(&app, production, first).await;
    assert!(app.sites.wait_for(production, first, WAIT).await);
    assert_eq!(switch(&app, production, second).await, Some(first));
    assert!(app.sites.wait_for(production, second, WAIT).await);
    assert_serves(&app, "/env/production/", &two).await;

    assert_eq!(switch(&app, production, first).await, Some(second));
    assert!(app.sites.wait_for(production, first, WAIT).await);
    assert_serves(&app, "/env/production/", &one).await;
    let mut conn = app.pool.acquire().await.unwrap();
    let current = site::current(&mut conn, production).await.unwrap().unwrap();
    assert_eq!(current.site_version_id, first);
    assert_eq!(current.switched_by, "test");
}

#[tokio::test]
async fn a_tampered_artifact_is_never_served() {
    let app = TestApp::spawn().await;
    let staging = environment(&app, "staging").await;
    let (good, bad, later) = (build("good"), build("bad"), build("later"));
    let served = prepare(&app, staging, release(&app, &good).await).await;
    switch(&app, staging, served).await;
    assert!(app.sites.wait_for(staging, served, WAIT).await);

    // Someone changes the stored bytes of the next release's web build.
    let tampered_release = release(&app, &bad).await;
    let ArtifactStore::Local(disk) = &app.artifacts else {
        panic!("the test server stores on disk");
    };
    let stored = disk.root().join(key_for(&sha256(&bad.web)));
    let mut bytes = std::fs::read(&stored).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&stored, bytes).unwrap();
    // Prepared after the change, so the replica's prefetch cannot have unpacked it before.
    let tampered = prepare(&app, staging, tampered_release).await;

    let refused = app.sites.materialise(tampered).await.unwrap_err();
    assert!(
        matches!(&refused, SiteError::Checksum { name, .. } if name == "web"),
        "{refused}"
    );
    assert!(refused.to_string().contains("does not match its checksum"));

    // A deployer that switched anyway: every replica refuses it and keeps the site it had,
    // and goes on to the next good one.
    switch(&app, staging, tampered).await;
    let next = prepare(&app, staging, release(&app, &later).await).await;
    switch(&app, staging, next).await;
    let client = app.anonymous();
    let deadline = Instant::now() + WAIT;
    loop {
        let page = client
            .get(app.url("/env/staging/"))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_ne!(sha256(&page), sha256(&bad.files["index.html"]));
        if app.sites.serving(staging) == Some(next) {
            break;
        }
        assert_eq!(app.sites.serving(staging), Some(served));
        assert!(Instant::now() < deadline, "the next version never came");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_serves(&app, "/env/staging/", &later).await;
    assert!(
        !app.data_dir.join(format!("sites/{tampered}")).exists()
            && !app.data_dir.join(format!("sites/{tampered}.tmp")).exists(),
        "nothing of the tampered version is left on disk"
    );
}

#[tokio::test]
async fn paths_that_would_leave_the_site_are_refused() {
    let app = TestApp::spawn().await;
    let staging = environment(&app, "staging").await;
    let build = build("one");
    let version = prepare(&app, staging, release(&app, &build).await).await;
    switch(&app, staging, version).await;
    assert!(app.sites.wait_for(staging, version, WAIT).await);
    for path in [
        "/env/staging/../../../../etc/passwd",
        "/env/staging/%2e%2e/%2e%2e/etc/passwd",
        "/env/staging/..%2f..%2fetc%2fpasswd",
        "/env/staging//etc/passwd",
        "/env/staging/.%2Findex.html",
    ] {
        assert_eq!(raw_get(&app, path).await, 400, "{path}");
    }
    assert_eq!(raw_get(&app, "/env/staging/index.html").await, 200);
}

/// The status of a GET sent as written (an HTTP client would normalise the dots away).
async fn raw_get(app: &TestApp, path: &str) -> u16 {
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn preparing_names_what_is_missing_and_what_cannot_be_a_site() {
    let app = TestApp::spawn().await;
    let staging = environment(&app, "staging").await;
    let release = release(&app, &build("one")).await;
    let mut conn = app.pool.acquire().await.unwrap();
    let missing = site::prepare(
        &mut conn,
        staging,
        release,
        None,
        &["web".into(), "webapp".into()],
        serde_json::json!({}),
    )
    .await
    .unwrap_err();
    assert_eq!(
        missing.to_string(),
        "the release's run has no artifact `webapp`; it has `assets` (asset-bundle), `web` (web)"
    );
    let not_an_object = site::prepare(
        &mut conn,
        staging,
        release,
        None,
        &["web".into()],
        serde_json::json!([1]),
    )
    .await
    .unwrap_err();
    assert!(matches!(not_an_object, SiteError::ConfigNotAnObject(_)));
    let none = site::prepare(
        &mut conn,
        staging,
        release,
        None,
        &[],
        serde_json::json!({}),
    )
    .await
    .unwrap_err();
    assert!(matches!(none, SiteError::NothingToPublish));
    let versions: i64 = sqlx::query_scalar("select count(*) from site_version")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(versions, 0, "a refused preparation writes nothing");
}

#[tokio::test]
async fn two_replicas_serve_the_same_site_from_one_bucket() {
    let Some(bucket) = test_bucket().await else {
        return;
    };
    let options = fresh_database().await;
    let a = TestApp::spawn_storing(options.clone(), bucket.clone().into()).await;
    a.load_sample().await;
    let b = TestApp::spawn_storing(options, bucket.into()).await;
    let staging = environment(&a, "staging").await;

    // Published through replica A's storage; replica B has never seen the bytes.
    let one = build("one");
    let first = prepare(&a, staging, release(&a, &one).await).await;
    a.sites.materialise(first).await.unwrap();
    let switched = Instant::now();
    switch(&a, staging, first).await;
    assert!(a.sites.wait_for(staging, first, WAIT).await);
    assert!(b.sites.wait_for(staging, first, WAIT).await);
    println!(
        "site switch: served on the second replica {:.1} ms after the commit (first version)",
        switched.elapsed().as_secs_f64() * 1000.0
    );
    assert_serves(&a, "/env/staging/", &one).await;
    assert_serves(&b, "/env/staging/", &one).await;

    let two = build("two");
    let second = prepare(&a, staging, release(&a, &two).await).await;
    a.sites.materialise(second).await.unwrap();
    // Replica B unpacks the version when it is prepared, so the switch is only a swap there.
    let deadline = Instant::now() + WAIT;
    while !b
        .data_dir
        .join(format!("sites/{second}/index.json"))
        .exists()
    {
        assert!(
            Instant::now() < deadline,
            "replica B never fetched the version"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let switched = Instant::now();
    switch(&a, staging, second).await;
    assert!(b.sites.wait_for(staging, second, WAIT).await);
    println!(
        "site switch: served on the second replica {:.1} ms after the commit (prepared version)",
        switched.elapsed().as_secs_f64() * 1000.0
    );
    assert!(a.sites.wait_for(staging, second, WAIT).await);
    assert_serves(&a, "/env/staging/", &two).await;
    assert_serves(&b, "/env/staging/", &two).await;
}
