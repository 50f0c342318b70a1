//! Pieces every page uses: the frame with its navigation, error messages and time formatting.

use crate::MeResource;
use crate::api::overview::list_projects;
use crate::api::releases::inbox_count;
use crate::api::session::{Logout, current_user};
use crate::error::AppError;
use chrono::{DateTime, Utc};
use domain::role::Role;
use leptos::prelude::*;
use leptos_router::hooks::use_location;

/// Which part of the portal a path belongs to, for the navigation's highlight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    Overview,
    Runs,
    Releases,
    Flags,
    Inbox,
    Audit,
    People,
    Other,
}

impl Section {
    fn of(path: &str) -> Section {
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        match parts.as_slice() {
            [""] | ["projects", _] => Section::Overview,
            ["projects", _, "runs", ..] => Section::Runs,
            [
                "projects",
                _,
                "releases" | "deployments" | "environments",
                ..,
            ] => Section::Releases,
            ["inbox", ..] => Section::Inbox,
            ["projects", _, "flags", ..] => Section::Flags,
            ["audit", ..] => Section::Audit,
            ["admin", ..] => Section::People,
            _ => Section::Other,
        }
    }
}

/// The project a path is about (`/projects/<key>/…`), if any.
fn project_in(path: &str) -> Option<String> {
    path.strip_prefix("/projects/")
        .and_then(|rest| rest.split('/').next())
        .filter(|key| !key.is_empty())
        .map(str::to_string)
}

/// The frame of every signed-in page: header, navigation, sign-out.
#[component]
pub fn Layout(children: Children) -> impl IntoView {
    // Made anew on every page, so a sign-in or sign-out in between is always reflected.
    let me: MeResource = Resource::new_blocking(|| (), |_| current_user());
    provide_context(me);
    let projects = Resource::new_blocking(|| (), |_| list_projects());
    let logout = ServerAction::<Logout>::new();
    let changes = crate::live::use_live_changes();
    let path = use_location().pathname;
    let section = Memo::new(move |_| Section::of(&path.get()));
    let nav_link = move |href: String, label: &'static str, here: Section| {
        view! { <a href=href class="nav-link" aria-current=move || (section.get() == here).then_some("page")>{label}</a> }
    };
    // Runs and Flags are a project's: the one on screen, else the first (as the overview shows).
    let project_links = move || {
        Suspend::new(async move {
            let projects = projects.await.unwrap_or_default();
            let key = project_in(&path.get_untracked());
            let project = key
                .and_then(|key| projects.iter().find(|p| p.key == key).cloned())
                .or_else(|| projects.first().cloned());
            project.map(|p| {
                let flags = p.first_environment.map(|env| {
                    nav_link(
                        format!("/projects/{}/flags/{env}", p.key),
                        "Flags",
                        Section::Flags,
                    )
                });
                view! {
                    {nav_link(format!("/projects/{}/runs", p.key), "Runs", Section::Runs)}
                    {nav_link(format!("/projects/{}/releases", p.key), "Releases", Section::Releases)}
                    {flags}
                }
            })
        })
    };
    view! {
        <header class="topbar">
            <a href="/" class="brand" aria-label="Flightdeck home">
                <span class="brand-mark" aria-hidden="true">"◆"</span>
                <span>"Flightdeck"</span>
            </a>
            <nav class="nav" aria-label="Main">
                {nav_link("/".to_string(), "Overview", Section::Overview)}
                <Suspense>{project_links}</Suspense>
                <Suspense>
                    {move || Suspend::new(async move {
                        let role = me.await.ok().flatten().map(|m| m.role);
                        let inbox = matches!(role, Some(Role::Admin | Role::Product)).then(|| {
                            let count = Resource::new(move || changes.get(), |_| inbox_count());
                            view! {
                                <a href="/inbox" class="nav-link" aria-current=move || (section.get() == Section::Inbox).then_some("page")>
                                    "Inbox"
                                    <Transition>
                                        {move || Suspend::new(async move {
                                            count.await.ok().filter(|n| *n > 0).map(|n| view! {
                                                <span class="badge" aria-label=format!("{n} waiting")>{n}</span>
                                            })
                                        })}
                                    </Transition>
                                </a>
                            }
                        });
                        view! {
                            {inbox}
                            <Show when=move || matches!(role, Some(Role::Admin | Role::ReleaseManager))>
                                {nav_link("/audit".to_string(), "Audit", Section::Audit)}
                            </Show>
                            <Show when=move || role == Some(Role::Admin)>
                                {nav_link("/admin".to_string(), "People", Section::People)}
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
        AppError::SignInRefused => ("Could not sign in.", "notice notice-error"),
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
/// A file's size as people read it ("4.2 MiB").
pub fn format_size(bytes: i64) -> String {
    match bytes {
        b if b < 1024 => format!("{b} B"),
        b if b < 1024 * 1024 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0)),
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_page_highlights_its_own_section() {
        assert_eq!(Section::of("/"), Section::Overview);
        assert_eq!(Section::of("/projects/studybuddy"), Section::Overview);
        assert_eq!(Section::of("/projects/studybuddy/runs"), Section::Runs);
        assert_eq!(Section::of("/projects/studybuddy/runs/4"), Section::Runs);
        assert_eq!(
            Section::of("/projects/studybuddy/runs/4/jobs/build-web"),
            Section::Runs
        );
        assert_eq!(
            Section::of("/projects/studybuddy/flags/production"),
            Section::Flags
        );
        assert_eq!(Section::of("/audit"), Section::Audit);
        assert_eq!(Section::of("/admin"), Section::People);
        assert_eq!(Section::of("/nowhere/at/all"), Section::Other);
        assert_eq!(
            project_in("/projects/studybuddy/runs/4").as_deref(),
            Some("studybuddy")
        );
        assert_eq!(project_in("/audit"), None);
    }
}
