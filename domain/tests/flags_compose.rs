//! Flag changes compose: a use case (here, a deployment step) applies flag settings and restores
//! a snapshot inside its own transaction, together with its own rows, and they are committed or
//! rolled back as one.
#![cfg(feature = "server")]

mod support;

use domain::audit::{Actor, Origin};
use domain::flags::definition::{EnvironmentEdit, FlagName, FlagType, NewFlag};
use domain::flags::store::{EnvironmentId, FlagStore, edit, lock_project};
use domain::flags::{Restored, snapshot};
use sqlx::PgPool;
use support::{TestDb, project};

fn deployer() -> Actor {
    Actor {
        kind: "user",
        id: None,
        name: "dora".into(),
    }
}

fn name(text: &str) -> FlagName {
    FlagName::parse(text).unwrap()
}

async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

async fn release(pool: &PgPool, environment: EnvironmentId) -> Option<String> {
    sqlx::query_scalar("select current_release from environment where environment_id = $1")
        .bind(environment.0)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// What a deployment step does in its own transaction: its own row, the flags of the release
/// it deploys (snapshot `version`, then one setting on top), all or nothing.
async fn deploy(
    tx: &mut sqlx::PgConnection,
    environment: EnvironmentId,
    version: i64,
) -> (Restored, bool) {
    lock_project(tx, "shop").await.unwrap();
    sqlx::query("update environment set current_release = 'v2' where environment_id = $1")
        .bind(environment.0)
        .execute(&mut *tx)
        .await
        .unwrap();
    let restored = snapshot::restore(
        tx,
        environment,
        version,
        deployer(),
        &Origin::default(),
        Some("deployment-7"),
    )
    .await
    .unwrap();
    // The release's snapshot had `search` off; this release wants it on.
    let on = EnvironmentEdit::Enable { enabled: true };
    let applied = edit::apply(
        tx,
        environment,
        &name("search"),
        on,
        deployer(),
        &Origin::default(),
    )
    .await
    .unwrap();
    (restored, applied.changed())
}

#[tokio::test]
async fn a_deployment_restores_a_snapshot_and_applies_flag_settings_in_its_own_transaction() {
    let db = TestDb::new().await;
    let envs = project(&db.pool, "shop", &["staging", "production"]).await;
    let production = envs[1];
    let store = FlagStore::new(db.pool.clone());
    let origin = Origin::default();
    for flag in ["checkout", "search"] {
        let new = NewFlag {
            name: name(flag),
            flag_type: FlagType::Release,
            description: String::new(),
            owner: None,
        };
        store
            .create("shop", new, deployer(), &origin)
            .await
            .unwrap();
    }
    let (checkout, search) = (name("checkout"), name("search"));
    let on = |flag| store.toggle(production, flag, true, deployer(), &origin);
    let release_snapshot = on(&checkout).await.unwrap().version_in(production);
    let release_snapshot = release_snapshot.expect("turning a flag on makes a snapshot");
    store
        .toggle(production, &checkout, false, deployer(), &origin)
        .await
        .unwrap();
    on(&search).await.unwrap();
    let before = store.current(production).await.unwrap();
    let audited = "select count(*) from audit_event where actor_name = 'dora'";
    let entries = count(&db.pool, audited).await;

    // Rolled back: the deployment's row, the restore, the setting and their audit entries go.
    let mut tx = db.pool.begin().await.unwrap();
    let (restored, changed) = deploy(&mut tx, production, release_snapshot).await;
    assert!(
        matches!(restored, Restored::Restored { .. }),
        "{restored:?}"
    );
    assert!(changed);
    assert_eq!(
        store.current(production).await.unwrap().version,
        before.version,
        "nothing shows before the deployment commits"
    );
    tx.rollback().await.unwrap();
    assert_eq!(store.current(production).await.unwrap(), before);
    assert_eq!(release(&db.pool, production).await, None);
    assert_eq!(count(&db.pool, audited).await, entries);

    // Committed: all of it, once.
    let mut tx = db.pool.begin().await.unwrap();
    deploy(&mut tx, production, release_snapshot).await;
    tx.commit().await.unwrap();
    assert_eq!(release(&db.pool, production).await.as_deref(), Some("v2"));
    let now = store.current(production).await.unwrap();
    assert_eq!(
        now.version,
        before.version + 2,
        "the restore's and the setting's"
    );
    let enabled = |flag: &str| {
        now.state
            .features
            .iter()
            .find(|f| f.name == flag)
            .unwrap()
            .enabled
    };
    assert!(enabled("checkout"), "as in the release's snapshot");
    assert!(enabled("search"), "the setting on top");
    assert_eq!(count(&db.pool, audited).await, entries + 2);

    // The deployment retried with its key restores nothing again.
    let mut conn = db.pool.acquire().await.unwrap();
    let again = snapshot::restore(
        &mut conn,
        production,
        release_snapshot,
        deployer(),
        &origin,
        Some("deployment-7"),
    )
    .await
    .unwrap();
    assert_eq!(
        again,
        Restored::Replayed {
            version: before.version + 1
        }
    );
}

#[tokio::test]
async fn a_restore_that_finds_nothing_to_change_leaves_the_callers_transaction_as_it_was() {
    let db = TestDb::new().await;
    let production = project(&db.pool, "shop", &["production"]).await[0];
    let store = FlagStore::new(db.pool.clone());
    let origin = Origin::default();
    let new = NewFlag {
        name: name("checkout"),
        flag_type: FlagType::Release,
        description: String::new(),
        owner: None,
    };
    store
        .create("shop", new, deployer(), &origin)
        .await
        .unwrap();
    let version = store
        .toggle(production, &name("checkout"), true, deployer(), &origin)
        .await
        .unwrap()
        .version_in(production)
        .unwrap();

    let mut tx = db.pool.begin().await.unwrap();
    let restored = snapshot::restore(&mut tx, production, version, deployer(), &origin, None)
        .await
        .unwrap();
    assert!(matches!(restored, Restored::AlreadyCurrent { .. }));
    // The caller's transaction goes on after it.
    sqlx::query("update environment set current_release = 'v1' where environment_id = $1")
        .bind(production.0)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(release(&db.pool, production).await.as_deref(), Some("v1"));
    assert_eq!(store.current(production).await.unwrap().version, version);
}
