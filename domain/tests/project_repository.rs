//! A project's repository: pointing the project at it and issuing its push hook's token, in one
//! audited transaction.
#![cfg(feature = "server")]

mod support;

use domain::audit::{Actor, Origin};
use domain::project::repository::{self, Location, RepositoryError};
use sqlx::PgPool;
use support::{TestDb, project};

async fn audited(pool: &PgPool, action: &str) -> Vec<(bool, Option<String>)> {
    sqlx::query_as(
        "select security, target from audit_event where action = $1 order by audit_event_id",
    )
    .bind(action)
    .fetch_all(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn hosting_a_repository_points_the_project_at_it_with_one_live_push_token() {
    let db = TestDb::new().await;
    project(&db.pool, "shop", &["staging"]).await;
    let location = Location::parse("/var/lib/flightdeck/repos/shop.git").unwrap();
    let operator = Actor::cli("root@host");
    let origin = Origin::default();
    let first = repository::host(&db.pool, "shop", &location, operator.clone(), &origin)
        .await
        .unwrap();
    let second = repository::host(&db.pool, "shop", &location, operator, &origin)
        .await
        .unwrap();
    assert_ne!(first, second, "a new token each time");

    let live: Vec<String> = sqlx::query_scalar(
        "select name from api_token where name = 'push hook of shop' and revoked_at is null",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(live.len(), 1, "the earlier token is revoked");
    let stored: Option<String> =
        sqlx::query_scalar("select repository from project where project_key = 'shop'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(stored.as_deref(), Some(location.as_ref()));
    assert_eq!(audited(&db.pool, "project.repository_set").await.len(), 2);
    let created = audited(&db.pool, "token.created").await;
    assert_eq!(created.len(), 2);
    assert!(created.iter().all(|(security, _)| *security));
    assert_eq!(audited(&db.pool, "token.revoked").await.len(), 1);
}

#[tokio::test]
async fn a_relative_path_or_an_unknown_project_is_refused_and_nothing_is_written() {
    let db = TestDb::new().await;
    assert!(matches!(
        Location::parse("repos/shop.git"),
        Err(RepositoryError::BadLocation(_))
    ));
    assert!(Location::parse("git@github.com:team/shop.git").is_ok());
    let location = Location::parse("https://git.example.com/shop.git").unwrap();
    let refused = repository::host(
        &db.pool,
        "nowhere",
        &location,
        Actor::system(),
        &Origin::default(),
    )
    .await;
    assert!(
        matches!(refused, Err(RepositoryError::UnknownProject(_))),
        "{refused:?}"
    );
    let tokens: i64 = sqlx::query_scalar("select count(*) from api_token")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(tokens, 0, "the token issued on the way is rolled back");
}
