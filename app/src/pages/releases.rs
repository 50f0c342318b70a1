//! The releases list and a release's page: where it stands in every environment, what it
//! brings, its notes (editable), its deployments, and where the viewer may promote it. Live.

use crate::api::releases::{EditReleaseNotes, PromoteRelease, get_release, list_releases};
use crate::components::{ErrorNotice, action_error, format_time};
use crate::live::use_live_changes;
use domain::release_view::{EnvironmentStatus, ReleaseDetail, ReleaseSummary};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;

pub(crate) fn param(name: &'static str) -> impl Fn() -> String + Copy + Send + Sync + 'static {
    let params = use_params_map();
    move || params.read().get(name).unwrap_or_default()
}

/// A release's standing in one environment, as a chip.
#[component]
pub fn StatusChip(status: EnvironmentStatus, project: String) -> impl IntoView {
    let label = format!("{}: {}", status.environment, status.status.label());
    let class = format!(
        "chip release-status status-{}",
        serde_json::to_value(status.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    );
    let title = status.detail.clone().unwrap_or_default();
    match status.deployment {
        Some(n) => view! {
            <a class=class href=format!("/projects/{project}/deployments/{n}") title=title data-environment=status.environment>{label}</a>
        }
        .into_any(),
        None => view! { <span class=class title=title data-environment=status.environment>{label}</span> }.into_any(),
    }
}

#[component]
pub fn ReleasesPage() -> impl IntoView {
    let project = param("project");
    let changes = use_live_changes();
    let releases = Resource::new(
        move || (project(), changes.get()),
        |(p, _)| list_releases(p, None),
    );
    view! {
        <Title text="Releases" />
        <div class="page-head"><h1>"Releases"</h1></div>
        <Transition fallback=|| view! { <p class="loading">"Loading releases…"</p> }>
            {move || Suspend::new(async move {
                match releases.await {
                    Ok(list) if list.is_empty() => view! {
                        <section class="empty">
                            <h2>"No releases yet"</h2>
                            <p>"A run of the release branch that goes green makes one."</p>
                        </section>
                    }.into_any(),
                    Ok(list) => view! {
                        <ul class="release-list">
                            {list.into_iter().map(|release| view! { <ReleaseRow release project=project() /> }).collect_view()}
                        </ul>
                    }.into_any(),
                    Err(error) => view! { <ErrorNotice error /> }.into_any(),
                }
            })}
        </Transition>
    }
}

#[component]
fn ReleaseRow(release: ReleaseSummary, project: String) -> impl IntoView {
    let href = format!("/projects/{project}/releases/{}", release.version);
    view! {
        <li class="release-row" data-release=release.version.clone()>
            <a href=href class="release-link">
                <strong class="release-version">{release.version.clone()}</strong>
                <span class="run-message">{release.commit_message.lines().next().unwrap_or_default().to_string()}</span>
            </a>
            <span class="run-meta">
                <code>{release.commit_sha[..7.min(release.commit_sha.len())].to_string()}</code>
                " by "{release.commit_author.split(" <").next().unwrap_or_default().to_string()}
                " · run #"{release.run_number}" · "{format_time(release.created_at)}
            </span>
            <span class="chips">
                {release.environments.into_iter().map(|status| view! { <StatusChip status project=project.clone() /> }).collect_view()}
            </span>
        </li>
    }
}

#[component]
pub fn ReleasePage() -> impl IntoView {
    let project = param("project");
    let version = param("version");
    let changes = use_live_changes();
    let edit = ServerAction::<EditReleaseNotes>::new();
    let promote = ServerAction::<PromoteRelease>::new();
    let release = Resource::new(
        move || {
            (
                project(),
                version(),
                changes.get(),
                edit.version().get(),
                promote.version().get(),
            )
        },
        |(p, v, _, _, _)| get_release(p, v),
    );
    view! {
        <Title text=move || format!("Release {}", version()) />
        {action_error(edit.value())}
        {action_error(promote.value())}
        <Transition fallback=|| view! { <p class="loading">"Loading the release…"</p> }>
            {move || Suspend::new(async move {
                match release.await {
                    Ok(detail) => view! { <ReleaseBody detail edit promote /> }.into_any(),
                    Err(error) => view! { <ErrorNotice error /> }.into_any(),
                }
            })}
        </Transition>
    }
}

#[component]
fn ReleaseBody(
    detail: ReleaseDetail,
    edit: ServerAction<EditReleaseNotes>,
    promote: ServerAction<PromoteRelease>,
) -> impl IntoView {
    let ReleaseDetail {
        project,
        summary,
        branch,
        previous,
        notes,
        notes_edited_by,
        notes_edited_at,
        commits,
        describe_error,
        artifacts,
        migrations,
        deployments,
        can_edit_notes,
        can_promote_to,
    } = detail;
    let version = summary.version.clone();
    let (editing, set_editing) = signal(false);
    Effect::new(move |_| {
        if edit.value().get().is_some_and(|r| r.is_ok()) {
            set_editing.set(false);
        }
    });
    let notes_view = {
        let (project, version, notes) = (project.clone(), version.clone(), notes.clone());
        move || {
            if editing.get() {
                let (project, version, notes) = (project.clone(), version.clone(), notes.clone());
                view! {
                    <ActionForm action=edit attr:class="notes-form">
                        <input type="hidden" name="project" value=project />
                        <input type="hidden" name="version" value=version />
                        <label for="release-notes" class="sr-only">"Release notes"</label>
                        <textarea id="release-notes" name="notes" rows="8">{notes}</textarea>
                        <div class="actions">
                            <button type="submit" class="button primary">"Save notes"</button>
                            <button type="button" class="button subtle" on:click=move |_| set_editing.set(false)>"Cancel"</button>
                        </div>
                    </ActionForm>
                }
                .into_any()
            } else {
                view! { <pre class="notes">{if notes.is_empty() { "No notes yet.".to_string() } else { notes.clone() }}</pre> }.into_any()
            }
        }
    };
    view! {
        <section class="run-head">
            <div>
                <p class="crumbs"><a href=format!("/projects/{project}/releases")>"Releases"</a>" / "{version.clone()}</p>
                <h1>"Release "{version.clone()}</h1>
                <p class="muted">
                    <code>{summary.commit_sha.clone()}</code>" on "<strong>{branch}</strong>" by "{summary.commit_author.clone()}
                </p>
                <p class="muted small">
                    "From run "<a href=format!("/projects/{project}/runs/{}", summary.run_number)>"#"{summary.run_number}</a>
                    " · "{format_time(summary.created_at)}
                    {previous.map(|p| view! { " · after "<a href=format!("/projects/{project}/releases/{p}")>{p.clone()}</a> })}
                </p>
            </div>
        </section>
        <section aria-labelledby="where-title">
            <h2 id="where-title" class="section-title">"Environments"</h2>
            <ul class="env-status-list">
                {summary.environments.into_iter().map(|status| {
                    let env = status.environment.clone();
                    let may = can_promote_to.contains(&env);
                    let detail = status.detail.clone();
                    let (project, version) = (project.clone(), version.clone());
                    let (env_attr, env_label) = (env.clone(), env.clone());
                    view! {
                        <li class="env-status" data-environment=env_attr>
                            <StatusChip status project=project.clone() />
                            {detail.map(|d| view! { <span class="small reason">{d}</span> })}
                            {may.then(move || view! {
                                <ActionForm action=promote attr:class="inline">
                                    <input type="hidden" name="project" value=project.clone() />
                                    <input type="hidden" name="version" value=version.clone() />
                                    <input type="hidden" name="environment" value=env.clone() />
                                    <button type="submit" class="button" disabled=move || promote.pending().get()>"Promote to "{env_label}</button>
                                </ActionForm>
                            })}
                        </li>
                    }
                }).collect_view()}
            </ul>
        </section>
        <section aria-labelledby="notes-title">
            <div class="section-head">
                <h2 id="notes-title" class="section-title">"Release notes"</h2>
                {can_edit_notes.then(|| view! {
                    <Show when=move || !editing.get()>
                        <button type="button" class="button small" on:click=move |_| set_editing.set(true)>"Edit notes"</button>
                    </Show>
                })}
            </div>
            {notes_view}
            {notes_edited_by.map(|by| view! {
                <p class="muted small notes-edited">"Edited by "{by}{notes_edited_at.map(|at| format!(" · {}", format_time(at)))}</p>
            })}
        </section>
        <section aria-labelledby="commits-title">
            <h2 id="commits-title" class="section-title">"Changes"</h2>
            {match commits {
                None => view! { <p class="muted">"Reading commits…"</p> }.into_any(),
                Some(list) if list.is_empty() => view! { <p class="muted">"No commits since the previous release."</p> }.into_any(),
                Some(list) => view! {
                    <ul class="commit-list">
                        {list.into_iter().map(|c| view! {
                            <li><code>{c.sha[..7.min(c.sha.len())].to_string()}</code>" "{c.message.lines().next().unwrap_or_default().to_string()}
                                <span class="muted small">" · "{c.author.split(" <").next().unwrap_or_default().to_string()}</span></li>
                        }).collect_view()}
                    </ul>
                }.into_any(),
            }}
            {describe_error.map(|e| view! { <p class="notice notice-error small">"Could not read everything: "{e}</p> })}
        </section>
        <section aria-labelledby="artifacts-title">
            <h2 id="artifacts-title" class="section-title">"Artifacts"</h2>
            {if artifacts.is_empty() {
                view! { <p class="muted">"This release has no artifacts."</p> }.into_any()
            } else {
                view! {
                    <ul class="artifact-list">
                        {artifacts.into_iter().map(|a| view! {
                            <li data-artifact=a.name.clone()>
                                <a href=a.href.clone() download="">{a.name.clone()}</a>
                                <span class="chip">{a.kind.clone()}</span>
                                <code class="muted small" title=a.sha256.clone()>{a.sha256[..12.min(a.sha256.len())].to_string()}"…"</code>
                            </li>
                        }).collect_view()}
                    </ul>
                }.into_any()
            }}
        </section>
        <section aria-labelledby="migrations-title">
            <h2 id="migrations-title" class="section-title">"Database migrations"</h2>
            {if migrations.is_empty() {
                view! { <p class="muted">"No migrations."</p> }.into_any()
            } else {
                view! {
                    <ul class="migration-list">
                        {migrations.into_iter().map(|m| view! {
                            <li data-migration=m.version>
                                <strong>{m.version}" "{m.name.clone()}</strong>
                                <span class="small muted">
                                    {if m.new_in.is_empty() { "applied everywhere".to_string() } else { format!("new in {}", m.new_in.join(", ")) }}
                                </span>
                            </li>
                        }).collect_view()}
                    </ul>
                }.into_any()
            }}
        </section>
        <section aria-labelledby="deployments-title">
            <h2 id="deployments-title" class="section-title">"Deployments"</h2>
            <crate::pages::environment::DeploymentList deployments project=project.clone() empty="Not deployed anywhere yet." />
        </section>
    }
}
