//! What the database tests share: a new, migrated database per test on the cluster in
//! `FLIGHTDECK_TEST_DATABASE_URL` (the test command starts one and sets it), dropped when the
//! test ends, and a project with environments loaded from a definition as the portal does.

use std::str::FromStr;

use domain::audit::{Actor, Origin};
use domain::flags::store::EnvironmentId;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};
use uuid::Uuid;

/// A database of its own for one test, dropped when the test ends (or panics).
pub struct TestDb {
    pub pool: PgPool,
    admin: PgConnectOptions,
    name: String,
}

impl TestDb {
    pub async fn new() -> Self {
        let url = std::env::var("FLIGHTDECK_TEST_DATABASE_URL").expect(
            "FLIGHTDECK_TEST_DATABASE_URL names a PostgreSQL cluster for these tests \
             (the test command, bash .ci/test, starts one and sets it)",
        );
        let admin = PgConnectOptions::from_str(&url)
            .expect("the test database URL parses")
            .database("postgres");
        let name = format!("flightdeck_test_{}", Uuid::new_v4().simple());
        let mut conn = admin.connect().await.expect("connects to the test cluster");
        sqlx::query(&format!("create database {name}"))
            .execute(&mut conn)
            .await
            .unwrap();
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .connect_with(admin.clone().database(&name))
            .await
            .unwrap();
        domain::db::MIGRATOR.run(&pool).await.unwrap();
        TestDb { pool, admin, name }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // Drop runs inside the test's runtime, which cannot be blocked on; a thread with its
        // own runtime can.
        let dropped = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async move {
                    let mut conn = admin.connect().await?;
                    sqlx::query(&format!("drop database if exists {name} with (force)"))
                        .execute(&mut conn)
                        .await
                        .map(|_| ())
                })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test database {}", self.name);
        }
    }
}

/// A project with the given environments, loaded from a definition as the portal does.
/// `production` requires one approval and release managers, as in the sample.
#[allow(dead_code)] // not every test binary that shares this module uses it
pub async fn project(pool: &PgPool, key: &str, environments: &[&str]) -> Vec<EnvironmentId> {
    project_with_approvals(pool, key, environments, 1).await
}

/// Like [`project`], with `production` requiring `approvals` release managers' approvals.
#[allow(dead_code)] // not every test binary that shares this module uses it
pub async fn project_with_approvals(
    pool: &PgPool,
    key: &str,
    environments: &[&str],
    approvals: u8,
) -> Vec<EnvironmentId> {
    let declared: String = environments
        .iter()
        .map(|name| match *name {
            "production" => format!(
                "  {name}:\n    protection:\n      required_approvals: {approvals}\n      allowed_roles: [release-manager]\n"
            ),
            _ => format!("  {name}: {{}}\n"),
        })
        .collect();
    let source = format!(
        "project: {{ name: {key}, key: {key} }}\nphases:\n  ci:\n    title: CI\n    stages:\n      checks:\n        title: Checks\n        jobs:\n          hello:\n            steps: [echo hi]\nenvironments:\n{declared}"
    );
    domain::project::load_definition(
        pool,
        domain::project::DefinitionUpload {
            source: &source,
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
    .expect("the definition loads");
    let mut ids = Vec::new();
    for name in environments {
        let id: Uuid = sqlx::query_scalar(
            "select e.environment_id from environment e join project p using (project_id) where p.project_key = $1 and e.name = $2",
        )
        .bind(key)
        .bind(name)
        .fetch_one(pool)
        .await
        .unwrap();
        ids.push(EnvironmentId(id));
    }
    ids
}
