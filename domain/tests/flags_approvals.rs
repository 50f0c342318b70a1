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
    let env = support::project_with_approvals(pool, "shop", &["production"], approvals).await[0];
    with_checkout(FlagStore::new(pool.clone()), env).await
}

/// Creates the flag `checkout` (off) in project `shop`.
async fn with_checkout(store: FlagStore, env: EnvironmentId) -> (FlagStore, EnvironmentId) {
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

/// Accounts with roles (the people who could approve); they never sign in here.
async fn people(pool: &PgPool, people: &[(&str, Role)]) {
    for (name, role) in people {
        sqlx::query(
            "insert into app_user (username, display_name, role, password_hash) values ($1, $1, $2, 'unused')",
        )
        .bind(name)
        .bind(role.as_str())
        .execute(pool)
        .await
        .unwrap();
    }
}

/// The waiting change as `who` sees it on the flags page.
async fn seen_by(store: &FlagStore, who: &(Acting, Actor)) -> domain::flag_view::WaitingChange {
    let page = domain::flags::page::flags_page(store, "shop", "production", &who.0)
        .await
        .unwrap();
    assert_eq!(page.waiting.len(), 1, "{:?}", page.waiting);
    page.waiting.into_iter().next().unwrap()
}

#[tokio::test]
async fn the_person_who_asked_cannot_approve_and_a_second_approval_by_the_same_person_counts_once()
{
    let db = TestDb::new().await;
    let (store, env) = production_needing(&db.pool, 2).await;
    let changes = FlagChanges::new(&store);
    let id = ask(&changes, env, &manager("alice")).await;

    let own = approve(&changes, env, id, &manager("alice")).await;
    assert!(matches!(own, Err(ChangeError::OwnChange)), "{own:?}");
    assert_eq!(
        approve(&changes, env, id, &manager("bob")).await.unwrap(),
        "pending"
    );
    assert_eq!(
        approve(&changes, env, id, &manager("bob")).await.unwrap(),
        "pending"
    );
    assert!(!checkout_is_on(&store, env).await);
    assert_eq!(
        audit(&db.pool, "flag.change_approved").await.len(),
        1,
        "counted once"
    );
    let waiting = changes.waiting(env).await.unwrap();
    assert_eq!(waiting[0].record.approved_by, ["bob"]);
}

#[tokio::test]
async fn the_flags_page_offers_approve_only_to_people_the_rule_admits_and_says_who_is_awaited() {
    let db = TestDb::new().await;
    let (store, env) = production_needing(&db.pool, 2).await;
    people(
        &db.pool,
        &[
            ("alice", Role::ReleaseManager),
            ("bob", Role::ReleaseManager),
            ("carol", Role::ReleaseManager),
            ("dave", Role::Developer),
        ],
    )
    .await;
    let changes = FlagChanges::new(&store);
    let id = ask(&changes, env, &manager("alice")).await;

    let asker = seen_by(&store, &manager("alice")).await;
    assert!(!asker.can_approve, "never to the person who asked");
    assert!(asker.can_cancel && !asker.can_reject && !asker.can_override);
    assert_eq!(asker.required_approvals, 2);
    assert_eq!(
        asker.waiting_for.as_deref(),
        Some("waiting for 2 of bob or carol")
    );
    assert!(!asker.stuck);
    let developer = seen_by(&store, &person("dave", Role::Developer)).await;
    assert!(!developer.can_approve && !developer.can_reject && !developer.can_cancel);
    assert!(seen_by(&store, &manager("bob")).await.can_approve);

    approve(&changes, env, id, &manager("bob")).await.unwrap();
    let bob = seen_by(&store, &manager("bob")).await;
    assert!(!bob.can_approve, "bob's approval counts once");
    assert_eq!(bob.approved_by, ["bob"]);
    assert_eq!(bob.waiting_for.as_deref(), Some("waiting for carol"));
    assert!(seen_by(&store, &manager("carol")).await.can_approve);
}

#[tokio::test]
async fn a_lone_admin_overrides_with_a_reason_audited_as_a_security_event_and_shown_in_history() {
    let db = TestDb::new().await;
    // The shared fixture's production needs one release manager's approval.
    let env = support::project(&db.pool, "shop", &["production"]).await[0];
    let (store, env) = with_checkout(FlagStore::new(db.pool.clone()), env).await;
    people(&db.pool, &[("ann", Role::Admin), ("dave", Role::Developer)]).await;
    let changes = FlagChanges::new(&store);
    let ann = person("ann", Role::Admin);
    let id = ask(&changes, env, &ann).await;

    let seen = seen_by(&store, &ann).await;
    assert!(!seen.can_approve, "not her own change");
    assert!(seen.stuck);
    assert_eq!(
        seen.waiting_for.as_deref(),
        Some(
            "no other release manager or admin exists: add one under People, or an admin may override with a reason"
        )
    );
    assert!(seen.can_override);
    assert!(!seen_by(&store, &manager("rob")).await.can_override);

    let overriding = |who: (Acting, Actor), reason: &'static str| {
        let changes = &changes;
        async move {
            changes
                .override_approvals(env, id, reason, &who.0, who.1, &Origin::default())
                .await
        }
    };
    let refused = overriding(manager("rob"), "it is urgent").await;
    assert!(
        matches!(refused, Err(ChangeError::Refused(_))),
        "{refused:?}"
    );
    let empty = overriding(ann.clone(), "  ").await;
    assert!(matches!(empty, Err(ChangeError::Reason(_))), "{empty:?}");
    assert!(
        !checkout_is_on(&store, env).await,
        "refusals change nothing"
    );
    assert!(audit(&db.pool, "flag.change_overridden").await.is_empty());

    let reason = "checkout is down for everyone; nobody else is on call";
    assert_eq!(overriding(ann.clone(), reason).await.unwrap(), "applied");
    assert!(checkout_is_on(&store, env).await);
    let overrides = audit(&db.pool, "flag.change_overridden").await;
    assert_eq!(overrides.len(), 1);
    let (who, security, details) = &overrides[0];
    assert_eq!((who.as_str(), *security), ("ann", true), "a security event");
    assert_eq!(details["reason"], reason);
    assert_eq!(details["after"], "approved");

    let history = domain::flags::page::history(&store, env, 5).await.unwrap();
    let overridden = history[0]
        .overridden
        .as_ref()
        .expect("the newest snapshot is the override's");
    assert_eq!(
        (overridden.by.as_str(), overridden.reason.as_str()),
        ("ann", reason)
    );
    assert_eq!((overridden.approvals, overridden.required), (0, 1));
    assert!(history.iter().skip(1).all(|e| e.overridden.is_none()));
}

#[tokio::test]
async fn a_change_that_no_longer_applies_when_approved_fails_and_keeps_its_approval() {
    let db = TestDb::new().await;
    let (store, env) = production_needing(&db.pool, 1).await;
    let changes = FlagChanges::new(&store);
    let id = ask(&changes, env, &manager("alice")).await;
    store
        .archive("shop", &checkout(), Actor::system(), &Origin::default())
        .await
        .unwrap();

    assert_eq!(
        approve(&changes, env, id, &manager("bob")).await.unwrap(),
        "failed"
    );
    assert_eq!(audit(&db.pool, "flag.change_approved").await.len(), 1);
    assert!(
        audit(&db.pool, "flag.enabled").await.is_empty(),
        "nothing applied"
    );
    let problem: Option<String> =
        sqlx::query_scalar("select problem from flag_change where flag_change_id = $1")
            .bind(id)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert!(problem.unwrap().contains("archived"));
    assert!(changes.waiting(env).await.unwrap().is_empty());
}
