//! Signing in and out, sessions, tokens and the setup link, including every way they fail.

use crate::helpers::{PASSWORD, TestApp, assert_status};
use domain::auth::Scope;
use domain::role::Role;
use reqwest::StatusCode;

#[tokio::test]
async fn signing_in_sets_an_http_only_same_site_cookie_and_reaches_the_overview() {
    let app = TestApp::spawn().await;
    app.add_user("alice", Role::Developer).await;
    let client = app.anonymous();
    let response = client
        .post(app.url("/fn/login"))
        .form(&[
            ("username", "Alice"),
            ("password", PASSWORD),
            ("next", "/audit"),
        ])
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success() || response.status().is_redirection());
    let cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(cookie.starts_with("flightdeck_session=fds_"), "{cookie}");
    assert!(
        cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Lax")
            && !cookie.contains("Secure"),
        "{cookie}"
    );
    let page = client.get(app.url("/")).send().await.unwrap();
    assert_status(&page, StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("StudyBuddy"),
        "the overview shows the sample project"
    );
    assert_eq!(app.audit_count("session.login").await, 1);
}

#[tokio::test]
async fn a_wrong_password_is_refused_with_a_clear_message_and_audited() {
    let app = TestApp::spawn().await;
    app.add_user("alice", Role::Developer).await;
    let response = app
        .anonymous()
        .post(app.url("/fn/login"))
        .form(&[("username", "alice"), ("password", "not the password")])
        .send()
        .await
        .unwrap();
    assert_status(&response, StatusCode::UNAUTHORIZED);
    assert!(response.headers().get("set-cookie").is_none());
    let body = response.text().await.unwrap();
    assert_eq!(
        serde_json::from_str::<app::error::AppError>(&body).unwrap(),
        app::error::AppError::SignInRefused,
        "{body}"
    );
    assert!(
        app::error::AppError::SignInRefused
            .to_string()
            .contains("The username or the password is wrong")
    );
    assert_eq!(app.audit_count("session.login_failed").await, 1);
    let sessions: i64 = sqlx::query_scalar("select count(*) from user_session")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(sessions, 0);
}

#[tokio::test]
async fn repeated_failures_throttle_sign_in_even_with_the_right_password() {
    let app = TestApp::spawn().await;
    app.add_user("alice", Role::Developer).await;
    let client = app.anonymous();
    for _ in 0..5 {
        let r = client
            .post(app.url("/fn/login"))
            .form(&[("username", "alice"), ("password", "guess guess guess")])
            .send()
            .await
            .unwrap();
        assert_status(&r, StatusCode::UNAUTHORIZED);
    }
    let r = client
        .post(app.url("/fn/login"))
        .form(&[("username", "alice"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_status(&r, StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=900).contains(&retry_after), "{retry_after}");
    assert!(r.text().await.unwrap().contains("too many failed sign-ins"));
    assert_eq!(app.audit_count("session.login_throttled").await, 1);
}

#[tokio::test]
async fn an_expired_session_sends_the_person_to_sign_in_again() {
    let app = TestApp::spawn().await;
    let client = app.person(Role::Viewer).await;
    assert_status(
        &client.get(app.url("/")).send().await.unwrap(),
        StatusCode::OK,
    );
    sqlx::query("update user_session set expires_at = now() - interval '1 second'")
        .execute(&app.pool)
        .await
        .unwrap();
    let response = client.get(app.url("/audit?actor=x")).send().await.unwrap();
    assert_status(&response, StatusCode::SEE_OTHER);
    assert_eq!(
        response.headers()["location"],
        "/login?next=/audit%3Factor%3Dx&expired=1"
    );
    let api = client.get(app.url("/api/v1/whoami")).send().await.unwrap();
    assert_status(&api, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn signing_out_ends_the_session_on_the_server() {
    let app = TestApp::spawn().await;
    let client = app.person(Role::Viewer).await;
    let r = client.post(app.url("/fn/logout")).send().await.unwrap();
    assert!(r.status().is_success() || r.status().is_redirection());
    let sessions: i64 = sqlx::query_scalar("select count(*) from user_session")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(sessions, 0);
    assert_status(
        &client.get(app.url("/api/v1/whoami")).send().await.unwrap(),
        StatusCode::UNAUTHORIZED,
    );
}

#[tokio::test]
async fn the_setup_link_creates_the_first_admin_once() {
    let app = TestApp::spawn_empty().await;
    let users = domain::auth::Users::new(app.pool.clone(), Default::default());
    let link = users
        .create_setup_link()
        .await
        .unwrap()
        .expect("no users yet, so a link");
    let form = [
        ("link", link.expose()),
        ("username", "root-admin"),
        ("display_name", "Ada"),
        ("password", PASSWORD),
        ("confirm", PASSWORD),
    ];
    let first = app
        .anonymous()
        .post(app.url("/fn/complete_setup"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert!(
        first.status().is_success() || first.status().is_redirection(),
        "{}",
        first.status()
    );
    let again = app
        .anonymous()
        .post(app.url("/fn/complete_setup"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_status(&again, StatusCode::FORBIDDEN);
    assert!(
        users.create_setup_link().await.unwrap().is_none(),
        "no new link once someone exists"
    );
    let admin = app.sign_in("root-admin").await;
    let me: serde_json::Value = admin
        .get(app.url("/api/v1/whoami"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["role"], "admin");
}

#[tokio::test]
async fn unknown_and_revoked_tokens_get_401_and_are_audited() {
    let mut app = TestApp::spawn().await;
    let client = app.anonymous();
    let r = client
        .get(app.url("/api/v1/projects"))
        .bearer_auth("fdt_nonsense")
        .send()
        .await
        .unwrap();
    assert_status(&r, StatusCode::UNAUTHORIZED);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_token");

    let secret = app.token(&[Scope::Read]).await;
    let r = client
        .get(app.url("/api/v1/projects"))
        .bearer_auth(&secret)
        .send()
        .await
        .unwrap();
    assert_status(&r, StatusCode::OK);
    // Its first use is audited (a new address); routine use after it only moves "last used".
    assert_eq!(app.audit_count("token.new_address").await, 1);
    for _ in 0..3 {
        let again = client
            .get(app.url("/api/v1/projects"))
            .bearer_auth(&secret)
            .send()
            .await
            .unwrap();
        assert_status(&again, StatusCode::OK);
    }
    assert_eq!(app.audit_count("token.new_address").await, 1);
    assert_eq!(app.audit_count("token.used").await, 0);
    let last_used: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("select last_used_at from api_token")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert!(last_used.is_some());

    let id: uuid::Uuid = sqlx::query_scalar("select api_token_id from api_token")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    domain::auth::Tokens::new(app.pool.clone())
        .revoke(id)
        .await
        .unwrap();
    let r = client
        .get(app.url("/api/v1/projects"))
        .bearer_auth(&secret)
        .send()
        .await
        .unwrap();
    assert_status(&r, StatusCode::UNAUTHORIZED);
    // Counted in memory, written when the minute ends or the server stops.
    app.shut_down().await;
    assert_eq!(app.refusals_audited("token.rejected").await, 2);
}

#[tokio::test]
async fn admins_manage_people_and_every_change_is_audited_with_before_and_after() {
    let app = TestApp::spawn().await;
    let admin = app.person(Role::Admin).await;
    let create = admin
        .post(app.url("/fn/create_user"))
        .form(&[
            ("username", "qa-quinn"),
            ("display_name", "Quinn"),
            ("role", "qa"),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_status(&create, StatusCode::OK);
    let role = admin
        .post(app.url("/fn/set_user_role"))
        .form(&[("username", "qa-quinn"), ("role", "product")])
        .send()
        .await
        .unwrap();
    assert_status(&role, StatusCode::OK);
    let details: serde_json::Value =
        sqlx::query_scalar("select details from audit_event where action = 'user.role_changed'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(
        details,
        serde_json::json!({ "before": "qa", "after": "product" })
    );
    let bad_role = admin
        .post(app.url("/fn/set_user_role"))
        .form(&[("username", "qa-quinn"), ("role", "root")])
        .send()
        .await
        .unwrap();
    assert_status(&bad_role, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        bad_role
            .text()
            .await
            .unwrap()
            .contains("unknown role `root`")
    );
    let short = admin
        .post(app.url("/fn/create_user"))
        .form(&[
            ("username", "sam"),
            ("display_name", ""),
            ("role", "viewer"),
            ("password", "short"),
        ])
        .send()
        .await
        .unwrap();
    assert_status(&short, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        short
            .text()
            .await
            .unwrap()
            .contains("at least 10 characters")
    );
    let users: i64 = sqlx::query_scalar("select count(*) from app_user where username = 'sam'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(users, 0, "nothing was written");
}
