//! Flag changes in protected environments: `required_approvals: N` means N people other than
//! the one asking, each approval audited, the change applied when the Nth arrives; an admin may
//! override with a reason, audited as a security event.
#![cfg(feature = "server")]

mod support;

use domain::audit::{Actor, Origin};
use domain::environment::Acting;
use domain::flag_view::ChangeOutcome;
use domain::flags::FlagStore;
use domain::flags::change::{ChangeError, Decision, FlagChanges};
use domain::flags::definition::{EnvironmentEdit, FlagName, FlagType, NewFlag};
use domain::flags::store::EnvironmentId;
use domain::role::Role;
use serde_json::Value;
use sqlx::PgPool;
use support::TestDb;

fn person(name: &str, role: Role) -> (Acting, Actor) {
    let acting = Acting::Person {
        name: name.into(),
        role,
    };
    let actor = Actor {
        kind: "user",
        id: None,
        name: name.into(),
    };
    (acting, actor)
}

fn manager(name: &str) -> (Acting, Actor) {
    person(name, Role::ReleaseManager)
}

fn checkout() -> FlagName {
    FlagName::parse("checkout").unwrap()
}

/// Project `shop` whose production needs `approvals` release managers' approvals, with the flag
/// `checkout` (off).
async fn production_needing(pool: &PgPool, approvals: u8) -> (FlagStore, EnvironmentId) {
    let source = format!(
        "project: {{ name: shop, key: shop }}\nphases:\n  ci:\n    title: CI\n    stages:\n      checks:\n        title: Checks\n        jobs:\n          hello:\n            steps: [echo hi]\nenvironments:\n  production:\n    protection:\n      required_approvals: {approvals}\n      allowed_roles: [release-manager]\n"
    );
    domain::project::load_definition(
        pool,
        domain::project::DefinitionUpload {
            source: &source,
            origin_label: "test",
            expected_project: None,
        },
        &Acting::Operator {
            name: "test".into(),
        },
        Actor::system(),
        &Origin::default(),
    )
    .await
    .expect("the definition loads");
    let store = FlagStore::new(pool.clone());
    let env = store.environment("shop", "production").await.unwrap().id;
    let flag = NewFlag {
        name: checkout(),
        flag_type: FlagType::Release,
        description: String::new(),
        owner: None,
    };
    store
        .create("shop", flag, Actor::system(), &Origin::default())
        .await
        .unwrap();
    (store, env)
}

async fn checkout_is_on(store: &FlagStore, env: EnvironmentId) -> bool {
    let state = store.current(env).await.unwrap().state;
    state
        .features
        .iter()
        .any(|f| f.name == "checkout" && f.enabled)
}

/// The audit entries with this action, oldest first: (actor, security, details).
async fn audit(pool: &PgPool, action: &str) -> Vec<(String, bool, Value)> {
    sqlx::query_as(
        "select actor_name, security, details from audit_event where action = $1 order by audit_event_id",
    )
    .bind(action)
    .fetch_all(pool)
    .await
    .unwrap()
}

/// Asks for `checkout` on in production as `who`; returns the waiting change's id.
async fn ask(changes: &FlagChanges<'_>, env: EnvironmentId, who: &(Acting, Actor)) -> i64 {
    let on = EnvironmentEdit::Enable { enabled: true };
    let outcome = changes
        .request(
            env,
            &checkout(),
            on,
            &who.0,
            None,
            who.1.clone(),
            &Origin::default(),
        )
        .await
        .unwrap();
    match outcome {
        ChangeOutcome::Waiting { id, .. } => id,
        other => panic!("expected a waiting change, got {other:?}"),
    }
}

async fn approve(
    changes: &FlagChanges<'_>,
    env: EnvironmentId,
    id: i64,
    who: &(Acting, Actor),
) -> Result<&'static str, ChangeError> {
    changes
        .decide(
            env,
            id,
            Decision::Approve,
            &who.0,
            who.1.clone(),
            &Origin::default(),
        )
        .await
}

#[tokio::test]
async fn two_required_approvals_mean_two_other_people_and_the_second_applies_the_change() {
    let db = TestDb::new().await;
    let (store, env) = production_needing(&db.pool, 2).await;
    let changes = FlagChanges::new(&store);
    let id = ask(&changes, env, &manager("alice")).await;

    assert_eq!(
        approve(&changes, env, id, &manager("bob")).await.unwrap(),
        "pending"
    );
    assert!(!checkout_is_on(&store, env).await, "one approval of two");
    assert_eq!(changes.apply_due().await.unwrap(), 0);

    assert_eq!(
        approve(&changes, env, id, &manager("carol")).await.unwrap(),
        "applied"
    );
    assert!(
        checkout_is_on(&store, env).await,
        "the second approval applied it"
    );
    let approvals = audit(&db.pool, "flag.change_approved").await;
    let approvers: Vec<&str> = approvals.iter().map(|(who, ..)| who.as_str()).collect();
    assert_eq!(approvers, ["bob", "carol"], "each approval is audited");
    assert_eq!(
        approvals[1].2["approvals"],
        serde_json::json!(["bob", "carol"])
    );
    let applied = audit(&db.pool, "flag.enabled").await;
    assert_eq!(applied.len(), 1);
    assert_eq!(
        applied[0].0, "alice",
        "applied in the name of the person who asked"
    );
}
