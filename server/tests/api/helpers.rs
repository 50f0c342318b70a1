//! Starts the real server on a random port against a fresh database, with a typed client.
//!
//! Databases come from the cluster in `FLIGHTDECK_TEST_DATABASE_URL` (the test command starts
//! one) or, when that is unset, from a private cluster this test binary starts itself. Each test
//! gets `CREATE DATABASE … TEMPLATE` of a database migrated once.

use domain::audit::{Actor, Origin};
use domain::auth::{NewUser, Scope, Users};
use domain::clock::ManualClock;
use domain::flag_view::SdkTokenKind;
use domain::flags::SdkTokens;
use domain::portal::Portal;
use domain::role::Role;
use domain::run::artifacts::{ArtifactStore, LocalDisk};
use domain::run::work::Secrets;
use reqwest::StatusCode;
use server::http::assets::Site;
use server::instance::{Instance, InstanceConfig};
use server::sites::SiteCache;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use tokio::sync::OnceCell;

pub const PASSWORD: &str = "correct horse battery staple";
pub const WEBHOOK_SECRET: &str = "It's a Secret to Everybody";

/// A fresh artifact store for one test server.
pub fn artifacts() -> LocalDisk {
    let dir = std::env::temp_dir().join(format!(
        "flightdeck-test-artifacts-{}",
        uuid::Uuid::new_v4().simple()
    ));
    LocalDisk::new(dir).unwrap()
}
pub const SAMPLE: &str = include_str!("../../../examples/studybuddy/flightdeck.yml");

/// The cluster every test of this binary shares.
static CLUSTER: OnceCell<PgConnectOptions> = OnceCell::const_new();

async fn cluster() -> PgConnectOptions {
    CLUSTER
        .get_or_init(|| async {
            let options = match std::env::var("FLIGHTDECK_TEST_DATABASE_URL") {
                Ok(url) => {
                    PgConnectOptions::from_str(&url).expect("FLIGHTDECK_TEST_DATABASE_URL is a URL")
                }
                Err(_) => own_cluster().await,
            };
            create_template(&options).await;
            options
        })
        .await
        .clone()
}

/// A cluster for this test process, stopped by a watcher when the process exits.
#[expect(
    clippy::zombie_processes,
    reason = "the watcher must outlive this process"
)]
async fn own_cluster() -> PgConnectOptions {
    let dir = std::env::temp_dir().join(format!("flightdeck-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cluster = server::embedded_pg::EmbeddedPostgres::start(&dir)
        .await
        .expect("the test cluster starts");
    let options = cluster.connect_options();
    // The cluster must outlive every test of this binary; a watcher stops it when we exit.
    let data = dir.join("postgres/data");
    std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; \
             pg=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1); \
             if [ \"$(id -u)\" = 0 ]; then runuser -u postgres -- $pg/pg_ctl -D {data} -m immediate stop; \
             else $pg/pg_ctl -D {data} -m immediate stop; fi; rm -rf {dir}",
            pid = std::process::id(),
            data = data.display(),
            dir = dir.display()
        ))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::mem::forget(cluster);
    options
}

const TEMPLATE: &str = "flightdeck_test_template";

async fn create_template(cluster: &PgConnectOptions) {
    let admin = cluster
        .clone()
        .database("postgres")
        .connect()
        .await
        .expect("connects to the test cluster");
    let mut admin = admin;
    // Several test binaries run at once: one builds the template, the others wait for it.
    sqlx::query("select pg_advisory_lock(4242)")
        .execute(&mut admin)
        .await
        .unwrap();
    let exists: bool =
        sqlx::query_scalar("select exists(select 1 from pg_database where datname = $1)")
            .bind(TEMPLATE)
            .fetch_one(&mut admin)
            .await
            .unwrap();
    let fresh = !exists || {
        // A template from an older schema is rebuilt.
        let pool = PgPoolOptions::new()
            .connect_with(cluster.clone().database(TEMPLATE))
            .await
            .unwrap();
        let applied: i64 = sqlx::query_scalar("select count(*) from _sqlx_migrations")
            .fetch_one(&pool)
            .await
            .unwrap_or(0);
        pool.close().await;
        applied != domain::db::MIGRATOR.iter().count() as i64
    };
    if fresh {
        sqlx::query(&format!("drop database if exists {TEMPLATE} with (force)"))
            .execute(&mut admin)
            .await
            .unwrap();
        sqlx::query(&format!("create database {TEMPLATE}"))
            .execute(&mut admin)
            .await
            .unwrap();
        let pool = PgPoolOptions::new()
            .connect_with(cluster.clone().database(TEMPLATE))
            .await
            .unwrap();
        domain::db::migrate(&pool).await.unwrap();
        pool.close().await;
    }
    sqlx::query("select pg_advisory_unlock(4242)")
        .execute(&mut admin)
        .await
        .unwrap();
}

/// A fresh, migrated database; returns its connect options.
pub async fn fresh_database() -> PgConnectOptions {
    let cluster = cluster().await;
    let name = format!("test_{}", uuid::Uuid::new_v4().simple());
    let mut admin = cluster
        .clone()
        .database("postgres")
        .connect()
        .await
        .unwrap();
    sqlx::query(&format!("create database {name} template {TEMPLATE}"))
        .execute(&mut admin)
        .await
        .unwrap();
    cluster.database(&name)
}

/// A URL for a database, for spawning the real binary against it.
pub fn url_of(options: &PgConnectOptions) -> String {
    let db = options.get_database().unwrap_or("postgres");
    let user = options.get_username();
    match options.get_socket() {
        // sqlx wants the user in the query when the host is a socket directory.
        Some(dir) => format!(
            "postgres:///{db}?host={}&port={}&user={user}",
            dir.display(),
            options.get_port()
        ),
        None => format!(
            "postgres://{user}@{}:{}/{db}",
            options.get_host(),
            options.get_port()
        ),
    }
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub pool: PgPool,
    pub options: PgConnectOptions,
    /// The clock the server's time-driven work reads: tests move it instead of sleeping.
    pub clock: Arc<ManualClock>,
    /// Where this server's artifact bytes are.
    pub artifacts: ArtifactStore,
    /// The sites this server serves (its own data directory's `sites/`).
    pub sites: SiteCache,
    /// This server's data directory.
    pub data_dir: std::path::PathBuf,
    /// The server, built as `flightdeck serve` builds it (background services included).
    instance: Option<Instance>,
}

impl TestApp {
    /// A server on a fresh database with the StudyBuddy sample loaded.
    pub async fn spawn() -> TestApp {
        let app = Self::spawn_empty().await;
        app.load_sample().await;
        app
    }

    /// Loads the StudyBuddy sample (a second replica on the same database needs it once).
    pub async fn load_sample(&self) {
        domain::project::load_definition(
            &self.pool,
            domain::project::DefinitionUpload {
                source: SAMPLE,
                origin_label: "examples/studybuddy/flightdeck.yml",
                expected_project: None,
            },
            &domain::environment::Acting::Operator {
                name: "test".into(),
            },
            Actor::system(),
            &Origin::default(),
        )
        .await
        .expect("the sample loads");
    }

    /// A server on a fresh database with nothing in it.
    pub async fn spawn_empty() -> TestApp {
        Self::spawn_on(fresh_database().await).await
    }

    /// Another server process on the same database (as a second replica would be).
    pub async fn spawn_on(options: PgConnectOptions) -> TestApp {
        Self::spawn_serving(
            options,
            Site::unchecked(std::path::Path::new("target/site")),
        )
        .await
    }

    /// A server on `options` serving `site` under `/pkg`.
    pub async fn spawn_serving(options: PgConnectOptions, site: Site) -> TestApp {
        Self::spawn_full(options, site, artifacts().into()).await
    }

    /// A server on `options` storing artifacts in `store` (replicas share an S3 bucket).
    pub async fn spawn_storing(options: PgConnectOptions, store: ArtifactStore) -> TestApp {
        Self::spawn_full(
            options,
            Site::unchecked(std::path::Path::new("target/site")),
            store,
        )
        .await
    }

    async fn spawn_full(options: PgConnectOptions, site: Site, store: ArtifactStore) -> TestApp {
        let data_dir = std::env::temp_dir().join(format!(
            "flightdeck-test-data-{}",
            uuid::Uuid::new_v4().simple()
        ));
        let pool = PgPoolOptions::new()
            .max_connections(10)
            .connect_with(options.clone())
            .await
            .unwrap();
        let clock = ManualClock::new();
        let portal = Portal::new(
            pool.clone(),
            false,
            store.clone(),
            Secrets::default().with("TEST_SECRET", "hunter2-secret"),
        )
        .with_clock(clock.clone());
        let instance = Instance::start(InstanceConfig {
            listener: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
            public_url: None,
            site,
            portal,
            webhook_secret: Some(WEBHOOK_SECRET.into()),
            local_runner: None,
            world: server::deployer::world::World::default()
                .with_databases(&url_of(&options), store.clone(), data_dir.join("tmp"))
                .unwrap(),
            data_dir: data_dir.clone(),
        })
        .await
        .expect("the server starts");
        TestApp {
            addr: instance.addr,
            pool,
            options,
            clock,
            artifacts: store,
            sites: instance.sites.clone(),
            data_dir,
            instance: Some(instance),
        }
    }

    /// Stops the server as `serve` stops on SIGTERM, and waits until it has: what it keeps in
    /// memory for later is written by then.
    pub async fn shut_down(&mut self) {
        if let Some(instance) = self.instance.take() {
            instance.stop(std::time::Duration::from_secs(20)).await;
        }
    }

    /// Stops every part at once without draining or waiting — as close to `kill -9` as a server
    /// in the test's own process gets: its leases are left to run out.
    pub fn crash(&mut self) {
        if let Some(instance) = self.instance.take() {
            instance.stop_without_waiting();
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// A client with no session.
    pub fn anonymous(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    }

    pub async fn add_user(&self, username: &str, role: Role) {
        let users = Users::new(self.pool.clone(), Default::default());
        let new = NewUser {
            username,
            display_name: username,
            role,
            password: PASSWORD,
        };
        users
            .create(new, Actor::system(), &Origin::default())
            .await
            .expect("the user is created");
    }

    /// Signs in through the real login server function; the client keeps the session cookie.
    pub async fn sign_in(&self, username: &str) -> reqwest::Client {
        let client = self.anonymous();
        let response = client
            .post(self.url("/fn/login"))
            .form(&[("username", username), ("password", PASSWORD)])
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success() || response.status().is_redirection(),
            "sign-in failed: {}",
            response.status()
        );
        client
    }

    /// A user with `role`, signed in.
    pub async fn person(&self, role: Role) -> reqwest::Client {
        let name = format!(
            "{}-{}",
            role.as_str(),
            &uuid::Uuid::new_v4().simple().to_string()[..6]
        );
        self.add_user(&name, role).await;
        self.sign_in(&name).await
    }

    pub async fn token(&self, scopes: &[Scope]) -> String {
        domain::auth::Tokens::new(self.pool.clone())
            .create("test-token", scopes, None, None)
            .await
            .unwrap()
            .secret
    }

    /// An SDK token for the sample's environment, once this server knows it (the token index
    /// reloads when the database announces the new token).
    pub async fn sdk_token(&self, environment: &str, kind: SdkTokenKind) -> String {
        let secret = SdkTokens::new(self.pool.clone())
            .create(
                "studybuddy",
                environment,
                kind,
                &format!("{kind} test token"),
                Actor::system(),
                &Origin::default(),
            )
            .await
            .unwrap()
            .secret;
        self.wait_for_sdk_token(&secret).await;
        secret
    }

    /// Waits until this server accepts an SDK token.
    pub async fn wait_for_sdk_token(&self, secret: &str) {
        let client = self.anonymous();
        for _ in 0..200 {
            let response = client
                .post(self.url("/ofrep/v1/evaluate/flags"))
                .header("authorization", secret)
                .body("{}")
                .send()
                .await
                .unwrap();
            if response.status() != StatusCode::UNAUTHORIZED {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("the server never learnt of the SDK token");
    }

    /// The refusals audited under `action`, each entry counting as many as it says (refusals of
    /// strangers are counted and written once a minute, or when the server stops).
    pub async fn refusals_audited(&self, action: &str) -> i64 {
        sqlx::query_scalar(
            "select coalesce(sum(coalesce((details->>'count')::bigint, 1)), 0)::bigint
             from audit_event where action = $1",
        )
        .bind(action)
        .fetch_one(&self.pool)
        .await
        .unwrap()
    }

    pub async fn audit_count(&self, action: &str) -> i64 {
        sqlx::query_scalar("select count(*) from audit_event where action = $1")
            .bind(action)
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(instance) = &self.instance {
            instance.stop_without_waiting();
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

pub fn assert_status(response: &reqwest::Response, expected: StatusCode) {
    assert_eq!(
        response.status(),
        expected,
        "{} {}",
        response.url(),
        response.status()
    );
}
