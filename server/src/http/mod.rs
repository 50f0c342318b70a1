//! The HTTP surface: pages and server functions (Leptos), the REST API, live events and health
//! checks, behind one stack of layers (tracing, security headers, body limit, caller, CSRF,
//! authorization); and the feature-flag SDK routes, behind a lean stack of their own (see
//! [`sdk`]). Both check the same [`AccessTable`].

pub mod api;
pub mod assets;
pub mod authz;
pub mod caller;
pub mod csrf;
pub mod deployments;
pub mod error;
pub mod events;
pub mod extract;
pub mod flag_context;
pub mod health;
pub mod ofrep;
pub mod refusals;
pub mod routes;
pub mod runner_api;
pub mod runs;
pub mod sdk;
pub mod unleash;
pub mod webhook;

use crate::flag_cache::FlagCache;
use crate::live::LiveHub;
use app::{App, shell};
use axum::Router;
use axum::extract::FromRef;
use axum::http::Method;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::{from_fn, from_fn_with_state};
use domain::access::Access;
use domain::auth::Scope;
use domain::portal::Portal;
use domain::role::RoleSet;
use leptos::prelude::*;
use leptos_axum::{LeptosRoutes, generate_route_list};
use routes::{AccessTable, Routes, UndeclaredRoutes};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::{DefaultMakeSpan, DefaultOnResponse, TraceLayer};
use tracing::Level;

/// The largest request body accepted anywhere (a definition is at most 512 KiB).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// What every handler and layer can reach. The layers clone it for every request, so it is one
/// `Arc`: cloning it is one reference count, not one per field.
#[derive(Clone)]
pub struct AppState(Arc<AppStateParts>);

pub struct AppStateParts {
    pub leptos_options: LeptosOptions,
    /// The built site `/pkg` serves.
    pub site: assets::Site,
    pub portal: Portal,
    pub live: LiveHub,
    /// Every environment's flags and every SDK token, in memory (the flag APIs' only source).
    pub flags: FlagCache,
    /// Every environment's site, in memory (the `/env/…` routes' only source).
    pub sites: crate::sites::SiteCache,
    pub access: Arc<AccessTable>,
    /// Refusals of strangers and SDKs, counted and audited once a minute.
    pub refusals: refusals::Refusals,
    /// Cancelled when the server starts shutting down: streams end, readiness turns false.
    pub shutdown: CancellationToken,
    /// The secret GitHub signs webhook deliveries with; webhooks are off without one.
    pub webhook_secret: Option<Arc<str>>,
    /// What a rollback would do to an environment's database (the environment page's confirm
    /// sheet); none when this server reaches no environment databases.
    pub database_preview: Option<Arc<dyn domain::deployment::rollback::DatabasePreview>>,
}

impl AppState {
    pub fn new(parts: AppStateParts) -> Self {
        AppState(Arc::new(parts))
    }
}

impl std::ops::Deref for AppState {
    type Target = AppStateParts;
    fn deref(&self) -> &AppStateParts {
        &self.0
    }
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos_options.clone()
    }
}

/// Every REST route (health, events, the `/api/v1` API and webhooks); the SDK routes are
/// [`sdk::routes`].
pub fn api_routes() -> Routes {
    let routes = Routes::new()
        .get("/healthz", Access::Public, health::healthz)
        .get("/readyz", Access::Public, health::readyz)
        .get(
            "/api/v1/events",
            Access::people_or_token(RoleSet::ANYONE, Scope::Read),
            events::events,
        );
    let routes = api::routes(routes);
    let routes = runs::routes(routes);
    let routes = deployments::routes(routes);
    let routes = runner_api::routes(routes);
    webhook::routes(routes)
}

/// The access table for everything the router serves.
pub fn access_table() -> Result<AccessTable, UndeclaredRoutes> {
    let pages: Vec<(String, Vec<Method>)> = generate_route_list(App)
        .iter()
        .map(|listing| {
            (
                listing.path().to_string(),
                listing.methods().map(http_method).collect(),
            )
        })
        .collect();
    let server_fns: Vec<(String, Method)> = leptos::server_fn::axum::server_fn_paths()
        .map(|(path, method)| (path.to_string(), method))
        .collect();
    let mut specs = api_routes().specs;
    specs.extend(sdk::routes().specs);
    specs.extend(crate::sites::routes().specs);
    AccessTable::build(&specs, &pages, &server_fns)
}

fn http_method(method: leptos_router::Method) -> Method {
    match method {
        leptos_router::Method::Get => Method::GET,
        leptos_router::Method::Post => Method::POST,
        leptos_router::Method::Put => Method::PUT,
        leptos_router::Method::Delete => Method::DELETE,
        leptos_router::Method::Patch => Method::PATCH,
    }
}

/// Everything the server answers: the SDK routes with their own stack, the rest with the full one.
pub fn router(state: AppState) -> Router {
    let sdk_routes = sdk::router(state.clone());
    let site_routes = crate::sites::router(state.clone());
    let portal = state.portal.clone();
    let database_preview = state.database_preview.clone();
    let context = move || {
        provide_context(portal.clone());
        if let Some(preview) = &database_preview {
            provide_context(preview.clone());
        }
    };
    let options = state.leptos_options.clone();
    let app_shell = move || shell(options.clone());
    api_routes()
        .router
        .leptos_routes_with_context(
            &state,
            generate_route_list(App),
            context.clone(),
            app_shell.clone(),
        )
        .route_layer(from_fn_with_state(state.clone(), authz::enforce_access))
        .nest_service(
            &format!("/{}", state.leptos_options.site_pkg_dir),
            assets::pkg_service(&state.site),
        )
        .fallback(leptos_axum::file_and_error_handler_with_context::<
            AppState,
            _,
        >(context, shell))
        .layer(from_fn(authz::server_fn_status))
        .layer(from_fn_with_state(state.clone(), csrf::refuse_cross_site))
        .layer(from_fn_with_state(state.clone(), caller::resolve_caller))
        .layer(from_fn(limit_body))
        .layer(security_header("x-content-type-options", "nosniff"))
        .layer(security_header("x-frame-options", "DENY"))
        .layer(security_header("referrer-policy", "same-origin"))
        .layer(
            TraceLayer::new_for_http()
                // Routine: at debug (`-v`), so runners' polls do not bury what matters.
                .make_span_with(DefaultMakeSpan::new().level(Level::DEBUG))
                .on_response(DefaultOnResponse::new().level(Level::DEBUG)),
        )
        .layer(assets::compression())
        .with_state(state)
        .merge(sdk_routes)
        .merge(site_routes)
}

/// Bounds request bodies: 1 MiB everywhere except artifact uploads, which stream to disk under
/// their own limit. A declared length over the limit is refused before the body is read.
async fn limit_body(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let is_upload = request.method() == axum::http::Method::PUT
        && request.uri().path().starts_with("/api/v1/runner/jobs/")
        && request.uri().path().contains("/artifacts/");
    let limit = if is_upload {
        runner_api::MAX_ARTIFACT_BYTES as usize
    } else {
        MAX_BODY_BYTES
    };
    let declared = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        let mut response = error::ApiError::PayloadTooLarge(format!(
            "request bodies are limited to {limit} bytes here"
        ))
        .into_response();
        // The body is not read, so the connection cannot carry another request: say so, or a
        // client reusing it fails its next request.
        response.headers_mut().insert(
            axum::http::header::CONNECTION,
            HeaderValue::from_static("close"),
        );
        return response;
    }
    let (parts, body) = request.into_parts();
    let body = axum::body::Body::new(http_body_util::Limited::new(body, limit));
    next.run(axum::extract::Request::from_parts(parts, body))
        .await
}

/// A header every response carries unless the handler set it.
fn security_header(name: &'static str, value: &'static str) -> SetResponseHeaderLayer<HeaderValue> {
    SetResponseHeaderLayer::if_not_present(
        HeaderName::from_static(name),
        HeaderValue::from_static(value),
    )
}
