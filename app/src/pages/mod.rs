//! One module per page.

mod admin;
mod audit;
mod deployment;
pub mod environment;
mod flags;
mod inbox;
mod job;
mod login;
mod overview;
pub mod releases;
pub mod runs;

pub use admin::AdminPage;
pub use audit::AuditPage;
pub use deployment::DeploymentPage;
pub use environment::EnvironmentPage;
pub use flags::FlagsPage;
pub use inbox::InboxPage;
pub use job::JobPage;
pub use login::{LoginPage, SetupPage};
pub use overview::OverviewPage;
pub use releases::{ReleasePage, ReleasesPage};
pub use runs::{RunPage, RunsPage};

use leptos::prelude::*;
use leptos_meta::Title;

#[component]
pub fn NotFound() -> impl IntoView {
    #[cfg(feature = "ssr")]
    if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
        response.set_status(http::StatusCode::NOT_FOUND);
    }
    view! {
        <Title text="Not found" />
        <main class="page narrow">
            <h1>"Page not found"</h1>
            <p>"There is no page at this address. "<a href="/">"Go to the overview"</a>"."</p>
        </main>
    }
}
