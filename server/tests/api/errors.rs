//! One error shape at the REST boundary: requests that cannot be read get `{"error": …}` with
//! what is wrong and where, like every other error.

use crate::helpers::TestApp;
use domain::auth::Scope;
use domain::role::Role;
use reqwest::StatusCode;
use serde_json::Value;

async fn error_of(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = response.text().await.unwrap();
    let body: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("not our JSON error shape ({e}): {text}"));
    assert!(body["error"]["code"].is_string(), "{body}");
    (status, body["error"].clone())
}

#[tokio::test]
async fn unreadable_bodies_paths_and_queries_get_the_json_error_shape() {
    let app = TestApp::spawn().await;
    let token = app.token(&[Scope::RunsWrite, Scope::Read]).await;
    let client = app.anonymous();
    let post = |body: &'static str, content_type: &'static str| {
        client
            .post(app.url("/api/v1/projects/studybuddy/runs"))
            .bearer_auth(&token)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let (status, error) = error_of(post("{\"branch\": ", "application/json").await.unwrap()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("not valid JSON"),
        "{error}"
    );
    let (status, error) =
        error_of(post("{\"branch\": 7}", "application/json").await.unwrap()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        error["message"].as_str().unwrap().contains("branch"),
        "says which field: {error}"
    );
    let (status, _) = error_of(post("branch=main", "text/plain").await.unwrap()).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let viewer = app.person(Role::Viewer).await;
    let (status, error) = error_of(
        viewer
            .get(app.url("/api/v1/projects/studybuddy/runs/seven"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        error["message"].as_str().unwrap().contains("seven")
            || error["message"].as_str().unwrap().contains("number"),
        "{error}"
    );
    let (status, _) = error_of(
        viewer
            .get(app.url("/api/v1/projects/studybuddy/runs?before=lots"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}
