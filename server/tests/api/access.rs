//! Every route and server function, called as every role, anonymous and as tokens, answers as
//! its declaration says. Routes join this test by being registered: the walk reads the same
//! table the server enforces.

use crate::helpers::{SAMPLE, TestApp};
use domain::access::{Access, Denied, decide};
use domain::auth::{Principal, Scope, SdkPrincipal, TokenPrincipal, UserId, UserPrincipal};
use domain::flag_view::SdkTokenKind;
use domain::role::Role;
use reqwest::{Method, StatusCode};
use server::http::routes::{RouteKind, RouteSpec};
use uuid::Uuid;

struct Client {
    label: String,
    principal: Option<Principal>,
    http: reqwest::Client,
    token: Option<String>,
}

fn person(role: Role) -> Principal {
    Principal::User(UserPrincipal {
        id: UserId(Uuid::nil()),
        username: "x".into(),
        display_name: "x".into(),
        role,
        session_id: Uuid::nil(),
    })
}

/// The event-stream ticket an OFREP bulk answer gives an SDK token.
async fn stream_ticket(app: &TestApp, token: &str) -> String {
    let answer: serde_json::Value = app
        .anonymous()
        .post(app.url("/ofrep/v1/evaluate/flags"))
        .header("authorization", token)
        .body("{}")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let uri = answer["eventStreams"][0]["endpoint"]["requestUri"]
        .as_str()
        .unwrap();
    uri.split_once("ticket=").unwrap().1.to_string()
}

fn concrete(path: &str) -> String {
    path.replace("{project}", "studybuddy")
        .replace("{name}", "new-checkout")
        .replace("{key}", "new-checkout")
        .replace("{schedule}", "staging")
        .replace("{link}", "fdl_not-a-real-link")
}

fn request(app: &TestApp, client: &Client, spec: &RouteSpec) -> reqwest::RequestBuilder {
    let method = Method::from_bytes(spec.method.as_str().as_bytes()).unwrap();
    let mut builder = client.http.request(method, app.url(&concrete(&spec.path)));
    if let Some(token) = &client.token {
        builder = builder.bearer_auth(token);
    }
    if spec.path.ends_with("/definition") {
        builder = builder.body(SAMPLE);
    }
    if spec.path.contains("/webhooks/github/") {
        // Public, but the signature is the credential: a signed ping is let through.
        use hmac::Mac;
        let body = r#"{"zen":"Design for failure."}"#;
        let mut mac =
            hmac::Hmac::<sha2::Sha256>::new_from_slice(crate::helpers::WEBHOOK_SECRET.as_bytes())
                .unwrap();
        mac.update(body.as_bytes());
        builder = builder
            .header("x-github-event", "ping")
            .header(
                "x-hub-signature-256",
                format!("sha256={}", hex::encode(mac.finalize().into_bytes())),
            )
            .body(body);
    }
    builder
}

#[tokio::test]
async fn every_route_answers_every_caller_as_declared() {
    let app = TestApp::spawn().await;
    let mut clients = vec![Client {
        label: "anonymous".into(),
        principal: None,
        http: app.anonymous(),
        token: None,
    }];
    for role in Role::ALL {
        clients.push(Client {
            label: role.to_string(),
            principal: Some(person(role)),
            http: app.person(role).await,
            token: None,
        });
    }
    for scopes in [Scope::ALL.to_vec(), vec![Scope::Read]] {
        let secret = app.token(&scopes).await;
        let principal = Principal::Token(TokenPrincipal {
            id: Uuid::nil(),
            name: "t".into(),
            scopes: scopes.clone(),
        });
        clients.push(Client {
            label: format!("token {scopes:?}"),
            principal: Some(principal),
            http: app.anonymous(),
            token: Some(secret),
        });
    }

    for (environment, kind) in [
        ("staging", SdkTokenKind::Frontend),
        ("production", SdkTokenKind::Client),
    ] {
        let secret = app.sdk_token(environment, kind).await;
        let principal = Principal::Sdk(SdkPrincipal {
            id: Uuid::nil(),
            name: "sdk".into(),
            kind,
            project_id: Uuid::nil(),
            project: "studybuddy".into(),
            environment_id: Uuid::nil(),
            environment: environment.into(),
        });
        clients.push(Client {
            label: format!("{kind} SDK token for {environment}"),
            principal: Some(principal),
            http: app.anonymous(),
            token: Some(secret),
        });
    }
    let ticket = stream_ticket(&app, clients.last().unwrap().token.as_ref().unwrap()).await;

    let table = server::http::access_table().unwrap();
    let mut specs: Vec<&RouteSpec> = table.specs().collect();
    // Signing out ends the session the other calls need: walk it last.
    specs.sort_by_key(|s| (s.path.ends_with("/logout"), s.path.clone()));
    assert!(
        specs.len() >= 25,
        "the walk found only {} routes",
        specs.len()
    );
    let mut checked = 0;
    for spec in specs {
        for client in &clients {
            let mut builder = request(&app, client, spec);
            if spec.path == "/ofrep/v1/events" {
                // Public, but the ticket is the credential.
                builder = builder.query(&[("ticket", &ticket)]);
            }
            let response = builder.send().await.unwrap();
            let status = response.status();
            let expected = decide(spec.access, client.principal.as_ref());
            let context = format!(
                "{} {} as {}: got {status}",
                spec.method, spec.path, client.label
            );
            match expected {
                Ok(()) => assert!(
                    status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
                    "{context}, expected to be let through"
                ),
                Err(Denied::Unauthenticated) if spec.kind == RouteKind::Page => {
                    assert_eq!(
                        status,
                        StatusCode::SEE_OTHER,
                        "{context}, expected a redirect to sign in"
                    );
                    let location = response.headers()["location"].to_str().unwrap();
                    assert!(
                        location.starts_with("/login?next="),
                        "{context}: {location}"
                    );
                }
                Err(Denied::Unauthenticated) => {
                    assert_eq!(status, StatusCode::UNAUTHORIZED, "{context}")
                }
                Err(Denied::Forbidden(_)) => assert_eq!(status, StatusCode::FORBIDDEN, "{context}"),
            }
            checked += 1;
        }
    }
    assert!(checked > 200);
    // Refusals are security events in the audit log.
    assert!(app.audit_count("access.denied").await > 20);
}

#[tokio::test]
async fn a_route_without_a_declaration_stops_the_server_from_starting() {
    let undeclared = server::http::routes::AccessTable::build(
        &[],
        &[("/secret".into(), vec![axum::http::Method::GET])],
        &[],
    );
    let error = undeclared.unwrap_err().to_string();
    assert!(error.contains("page /secret"), "{error}");
}

#[tokio::test]
async fn a_viewer_is_refused_pausing_a_schedule_with_the_role_it_needs() {
    let app = TestApp::spawn().await;
    let viewer = app.person(Role::Viewer).await;
    let response = viewer
        .post(app.url("/fn/set_schedule_paused"))
        .form(&[
            ("project", "studybuddy"),
            ("schedule", "staging"),
            ("paused", "true"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let body = response.text().await.unwrap();
    assert!(body.contains("release manager or admin"), "{body}");
    let paused: i64 = sqlx::query_scalar("select count(*) from schedule_pause")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(paused, 0, "nothing was written");
}

#[tokio::test]
async fn cross_site_form_posts_are_refused_and_audited() {
    let app = TestApp::spawn().await;
    let manager = app.person(Role::ReleaseManager).await;
    let response = manager
        .post(app.url("/fn/set_schedule_paused"))
        .header("origin", "https://evil.example")
        .form(&[
            ("project", "studybuddy"),
            ("schedule", "staging"),
            ("paused", "true"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.audit_count("csrf.refused").await, 1);
    let same_site = manager
        .post(app.url("/fn/set_schedule_paused"))
        .header("sec-fetch-site", "same-origin")
        .form(&[
            ("project", "studybuddy"),
            ("schedule", "staging"),
            ("paused", "true"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(same_site.status(), StatusCode::OK);
    assert_eq!(app.audit_count("schedule.paused").await, 1);
}

#[test]
fn declared_access_is_never_public_for_state_changes_except_sign_in() {
    let public: Vec<&str> = app::access::server_fns()
        .into_iter()
        .filter(|(_, access)| *access == Access::Public)
        .map(|(path, _)| path)
        .collect();
    assert_eq!(
        public,
        vec!["/fn/login", "/fn/complete_setup", "/fn/current_user"]
    );
}
