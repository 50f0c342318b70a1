//! Live updates: a change made through one server reaches pages connected to another.

use crate::helpers::{SAMPLE, TestApp};
use domain::auth::Scope;
use std::time::{Duration, Instant};

/// Reads an SSE stream until an event named `event` arrives; returns how long it took.
pub async fn wait_for_event(
    response: &mut reqwest::Response,
    event: &str,
    limit: Duration,
) -> Duration {
    let started = Instant::now();
    let mut seen = String::new();
    while started.elapsed() < limit {
        match tokio::time::timeout(limit - started.elapsed(), response.chunk()).await {
            Ok(Ok(Some(chunk))) => {
                seen.push_str(&String::from_utf8_lossy(&chunk));
                if seen.contains(&format!("event: {event}\n")) {
                    return started.elapsed();
                }
            }
            _ => break,
        }
    }
    panic!("no `{event}` event within {limit:?}; the stream said: {seen:?}");
}

#[tokio::test]
async fn a_change_through_one_replica_reaches_pages_on_another_within_a_second() {
    let first = TestApp::spawn().await;
    let second = TestApp::spawn_on(first.options.clone()).await;
    let reader = second.token(&[Scope::Read]).await;
    let writer = first.token(&[Scope::DefinitionWrite]).await;
    let mut stream = second
        .anonymous()
        .get(second.url("/api/v1/events"))
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    wait_for_event(&mut stream, "ready", Duration::from_secs(5)).await;

    let changed = SAMPLE.replacen("name: StudyBuddy", "name: StudyBuddy Live", 1);
    let put = first
        .anonymous()
        .put(first.url("/api/v1/projects/studybuddy/definition"))
        .bearer_auth(&writer)
        .body(changed)
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201);
    let took = wait_for_event(&mut stream, "change", Duration::from_secs(1)).await;
    assert!(took < Duration::from_secs(1), "{took:?}");
}

#[tokio::test]
async fn a_change_made_directly_in_the_database_reaches_pages_too() {
    let app = TestApp::spawn().await;
    let reader = app.token(&[Scope::Read]).await;
    let mut stream = app
        .anonymous()
        .get(app.url("/api/v1/events"))
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap();
    wait_for_event(&mut stream, "ready", Duration::from_secs(5)).await;
    sqlx::query("update environment set current_release = 'v1.0.0', deployed_at = now() where name = 'staging'")
        .execute(&app.pool)
        .await
        .unwrap();
    wait_for_event(&mut stream, "change", Duration::from_secs(1)).await;
}
