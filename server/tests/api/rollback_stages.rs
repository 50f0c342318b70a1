//! A rollback undoes what the deployment did wherever in its stages it did it: in the sample's
//! production, the site comes from a later `publish` stage (cdn-assets) and the migrations from a
//! later `migrate` stage (database-migration), not from the deploy stage. Rolling such a
//! deployment back must still bring back release 1's site and schema, after a safety dump. (And
//! the first deploy there must give its job a database that exists, before any migration.)

use crate::helpers::TestApp;
use crate::rollbacks::{
    ROLL, assert_schema_of_release_1, env_db, page, rows_in_safety_dump, ship_two_with,
    wait_deployment, write_notes_and_tags,
};
use reqwest::StatusCode;
use serde_json::json;

/// [`ROLL`], with the deploy stage only deploying, and publishing and migrating done by the
/// stages after it, as the sample's production does. The deploy job reaches the environment's
/// database, as the sample's API does when it starts (before the migrate stage made it).
fn production_like() -> String {
    let pipeline = ROLL
        .replace("          publish: [web]\n          migrate: db-schema\n", "")
        .replace(
            "              - echo \"$FLIGHTDECK_RELEASE\" >> MARKER\n",
            "              - echo \"$FLIGHTDECK_RELEASE\" >> MARKER\n              - psql \"$DATABASE_URL\" -Atc 'select 1'\n",
        )
        .replace(
            "      feature-flags:",
            "      cdn-assets:\n        publish:\n          environment: prod\n          artifacts: [web]\n      feature-flags:",
        );
    assert!(
        !pipeline.contains("migrate: db-schema")
            && !pipeline.contains("publish: [web]")
            && pipeline.contains("cdn-assets:")
            && pipeline.contains("psql"),
        "every replacement matched:\n{pipeline}"
    );
    format!(
        "{pipeline}      database-migration:\n        migrate:\n          environment: prod\n          artifact: db-schema\n          backup: true\n"
    )
}

#[tokio::test]
async fn a_rollback_undoes_the_site_and_migrations_of_later_publish_and_migrate_stages() {
    let shipped = ship_two_with(TestApp::spawn_empty().await, &production_like()).await;
    let app = &shipped.app;
    let db = env_db(&shipped).await;
    write_notes_and_tags(&db).await;
    assert_eq!(
        page(app, "/env/roll/prod/").await,
        "<!doctype html><title>v2</title>"
    );

    let rm1 = app.sign_in("rm1").await;
    let (status, body) = app
        .api(
            &rm1,
            reqwest::Method::POST,
            "/api/v1/projects/roll/environments/prod/rollbacks",
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["number"], 3);
    wait_deployment(app, 3).await;

    assert_eq!(
        page(app, "/env/roll/prod/").await,
        "<!doctype html><title>v1</title>"
    );
    assert_schema_of_release_1(&db, "after rolling back a migrate stage").await;
    assert_eq!(rows_in_safety_dump(app, 3, "tag").await, 3);
    db.close().await;
}
