//! Flightdeck's user interface: pages, components and the server functions behind them.
//!
//! Pages render on the server and hydrate in the browser. Server functions live in [`api`]; what
//! each needs is declared in `access` (server only).

#[cfg(feature = "ssr")]
pub mod access;
pub mod ansi;
pub mod api;
pub mod components;
pub mod error;
pub mod live;
pub mod pages;

use crate::components::Layout;
use domain::people::Me;
use leptos::prelude::*;
use leptos_meta::{HashedStylesheet, MetaTags, Title, provide_meta_context};
use leptos_router::SsrMode;
use leptos_router::components::{Route, Router, Routes};
use leptos_router::path;

/// The HTML document around every page.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8" />
                <meta name="viewport" content="width=device-width, initial-scale=1" />
                <meta name="color-scheme" content="light dark" />
                <link rel="icon" href="/favicon.svg" type="image/svg+xml" />
                <HashedStylesheet id="leptos" options=options.clone() />
                <HydrationScripts options />
                <MetaTags />
            </head>
            <body>
                <App />
            </body>
        </html>
    }
}

/// The signed-in person, loaded by the page frame and shared with the page inside it.
pub type MeResource = Resource<Result<Option<Me>, error::AppError>>;

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    view! {
        <Title formatter=|page: String| if page.is_empty() { "Flightdeck".to_string() } else { format!("{page} · Flightdeck") } />
        <Router>
            <Routes fallback=pages::NotFound>
                <Route path=path!("/login") view=pages::LoginPage />
                <Route path=path!("/setup/:link") view=pages::SetupPage />
                <Route path=path!("/") view=|| view! { <Layout><pages::OverviewPage /></Layout> } />
                <Route path=path!("/projects/:project") view=|| view! { <Layout><pages::OverviewPage /></Layout> } />
                <Route path=path!("/admin") view=|| view! { <Layout><pages::AdminPage /></Layout> } />
                <Route path=path!("/audit") view=|| view! { <Layout><pages::AuditPage /></Layout> } />
                <Route path=path!("/projects/:project/flags/:environment") view=|| view! { <Layout><pages::FlagsPage /></Layout> } />
                <Route path=path!("/projects/:project/runs") view=|| view! { <Layout><pages::RunsPage /></Layout> } />
                <Route path=path!("/projects/:project/runs/:number") view=|| view! { <Layout><pages::RunPage /></Layout> } />
                <Route path=path!("/projects/:project/runs/:number/jobs/:job") view=|| view! { <Layout><pages::JobPage /></Layout> } />
                <Route path=path!("/projects/:project/releases") view=|| view! { <Layout><pages::ReleasesPage /></Layout> } />
                <Route path=path!("/projects/:project/releases/:version") view=|| view! { <Layout><pages::ReleasePage /></Layout> } />
                // On-call's pages: rendered whole on the server (their data blocks the stream), so a
                // phone can roll back and follow it before the wasm arrives, or without JavaScript.
                <Route path=path!("/projects/:project/deployments/:number") view=|| view! { <Layout><pages::DeploymentPage /></Layout> } ssr=SsrMode::PartiallyBlocked />
                <Route path=path!("/projects/:project/environments/:environment") view=|| view! { <Layout><pages::EnvironmentPage /></Layout> } ssr=SsrMode::PartiallyBlocked />
                <Route path=path!("/inbox") view=|| view! { <Layout><pages::InboxPage /></Layout> } />
            </Routes>
        </Router>
    }
}
