//! Pieces every page uses: the frame with its navigation, error messages and time formatting.

use crate::MeResource;
use crate::api::session::{Logout, current_user};
use crate::error::AppError;
use chrono::{DateTime, Utc};
use domain::role::Role;
use leptos::prelude::*;
use leptos_router::hooks::use_location;

/// The frame of every signed-in page: header, navigation, sign-out.
#[component]
pub fn Layout(children: Children) -> impl IntoView {
    // Made anew on every page, so a sign-in or sign-out in between is always reflected.
    let me: MeResource = Resource::new_blocking(|| (), |_| current_user());
    provide_context(me);
    let logout = ServerAction::<Logout>::new();
    let path = use_location().pathname;
    let nav_link = move |href: &'static str, label: &'static str| {
        let current = move || {
            let p = path.get();
            if href == "/" {
                p == "/" || p.starts_with("/projects/")
            } else {
                p.starts_with(href)
            }
        };
        view! { <a href=href class="nav-link" aria-current=move || current().then_some("page")>{label}</a> }
    };
    view! {
        <header class="topbar">
            <a href="/" class="brand" aria-label="Flightdeck home">
                <span class="brand-mark" aria-hidden="true">"◆"</span>
                <span>"Flightdeck"</span>
            </a>
            <nav class="nav" aria-label="Main">
                {nav_link("/", "Overview")}
                <Suspense>
                    {move || Suspend::new(async move {
                        let role = me.await.ok().flatten().map(|m| m.role);
                        view! {
                            <Show when=move || matches!(role, Some(Role::Admin | Role::ReleaseManager))>
                                {nav_link("/audit", "Audit")}
                            </Show>
                            <Show when=move || role == Some(Role::Admin)>
                                {nav_link("/admin", "People & tokens")}
                            </Show>
                        }
                    })}
                </Suspense>
            </nav>
            <div class="user">
                <Suspense>
                    {move || Suspend::new(async move {
                        me.await.ok().flatten().map(|me| view! {
                            <span class="user-name" title=me.username.clone()>
                                {me.display_name.clone()}
                                <span class="role-badge">{me.role.label()}</span>
                            </span>
                            <ActionForm action=logout attr:class="inline">
                                <button type="submit" class="button subtle">"Sign out"</button>
                            </ActionForm>
                        })
                    })}
                </Suspense>
            </div>
        </header>
        <main class="page">{children()}</main>
    }
}

/// A refusal or failure, in words a person reads.
#[component]
pub fn ErrorNotice(error: AppError) -> impl IntoView {
    let (title, class) = match &error {
        AppError::Forbidden(_) => ("Not allowed", "notice notice-forbidden"),
        AppError::Unauthenticated => ("Signed out", "notice notice-error"),
        AppError::Invalid { .. } => ("Please check", "notice notice-error"),
        _ => ("Could not do that", "notice notice-error"),
    };
    view! {
        <div class=class role="alert">
            <strong>{title}</strong>
            " "
            <span>{error.to_string()}</span>
        </div>
    }
}

/// Shows the latest result of an action when it failed.
pub fn action_error<T, S>(value: S) -> impl IntoView
where
    T: Clone + Send + Sync + 'static,
    S: Get<Value = Option<Result<T, AppError>>> + Send + Sync + 'static,
{
    move || match value.get() {
        Some(Err(error)) => Some(view! { <ErrorNotice error /> }),
        _ => None,
    }
}

/// A time as every page writes it: in UTC, the same on the server and in the browser.
pub fn format_time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// "45 s", "3 min 12 s", "1 h 4 min".
pub fn format_duration(seconds: i64) -> String {
    let seconds = seconds.max(0);
    match (seconds / 3600, (seconds % 3600) / 60, seconds % 60) {
        (0, 0, s) => format!("{s} s"),
        (0, m, s) => format!("{m} min {s} s"),
        (h, m, _) => format!("{h} h {m} min"),
    }
}

/// A state as a coloured pill.
#[component]
pub fn StatePill(state: domain::state::RunState) -> impl IntoView {
    view! { <span class=format!("state state-{}", state.as_str())>{state.as_str()}</span> }
}

/// Percent-encodes a query-string value (everything but unreserved characters).
pub fn urlencode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
