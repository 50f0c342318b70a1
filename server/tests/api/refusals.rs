//! Refusing strangers costs no database write per request: unknown tokens are counted in memory
//! and written as one audit entry per minute, address and path.

use crate::helpers::{TestApp, assert_status};
use reqwest::StatusCode;

/// The `token.rejected` entries for a path: how many rows, and the refusals they count.
async fn rejected_on(app: &TestApp, path: &str) -> (i64, i64) {
    sqlx::query_as(
        "select count(*), coalesce(sum((details->>'count')::bigint), 0)::bigint
         from audit_event where action = 'token.rejected' and target = $1 and ip = '127.0.0.1'",
    )
    .bind(path)
    .fetch_one(&app.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn unknown_tokens_are_audited_as_one_counted_entry_rather_than_a_row_each() {
    let mut app = TestApp::spawn().await;
    let client = app.anonymous();
    const N: i64 = 60;
    for i in 0..N {
        // An SDK-shaped token no environment has, and junk of no known shape.
        let sdk_shaped = format!("studybuddy:staging.{i:0>40}");
        for token in [sdk_shaped.as_str(), &format!("junk-{i}")] {
            let response = client
                .get(app.url("/api/frontend?userId=u1"))
                .header("authorization", token)
                .send()
                .await
                .unwrap();
            assert_status(&response, StatusCode::UNAUTHORIZED);
        }
        // A personal token that was never issued, on the REST API.
        let response = client
            .get(app.url("/api/v1/projects"))
            .bearer_auth(format!("fdt_{i:0>43}"))
            .send()
            .await
            .unwrap();
        assert_status(&response, StatusCode::UNAUTHORIZED);
    }

    // Written at the latest when the server stops (and once a minute while it runs).
    app.shut_down().await;
    let (rows, refusals) = rejected_on(&app, "/api/frontend").await;
    // One entry per minute: two if the requests straddled a minute's end.
    assert!(
        (1..=2).contains(&rows),
        "{rows} audit rows for {} refusals",
        2 * N
    );
    assert_eq!(refusals, 2 * N, "every refusal is counted");
    let (rows, refusals) = rejected_on(&app, "/api/v1/projects").await;
    assert!(
        (1..=2).contains(&rows),
        "{rows} audit rows for {N} refusals"
    );
    assert_eq!(refusals, N);
}
