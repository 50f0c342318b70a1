//! An environment's page, phone first (on-call opens it): what runs there and since when, the
//! deployment under way and its stage, the deploy history, its protection and window. Live.

use crate::api::releases::{RollBackEnvironment, get_environment};
use crate::components::{ErrorNotice, StatePill, format_duration, format_time};
use crate::live::use_live_changes;
use crate::pages::releases::param;
use domain::release_view::{DeploymentSummary, EnvironmentView, RollbackOffer};
use leptos::prelude::*;
use leptos_meta::Title;

#[component]
pub fn EnvironmentPage() -> impl IntoView {
    let project = param("project");
    let environment = param("environment");
    let changes = use_live_changes();
    let view_data = Resource::new_blocking(
        move || (project(), environment(), changes.get()),
        |(p, e, _)| get_environment(p, e),
    );
    view! {
        <Title text=move || environment() />
        <Transition fallback=|| view! { <p class="loading">"Loading the environment…"</p> }>
            {move || Suspend::new(async move {
                match view_data.await {
                    Ok(env) => view! { <EnvironmentBody env /> }.into_any(),
                    Err(error) => view! { <ErrorNotice error /> }.into_any(),
                }
            })}
        </Transition>
    }
}

#[component]
fn EnvironmentBody(env: EnvironmentView) -> impl IntoView {
    let EnvironmentView {
        project,
        name,
        url,
        current_version,
        deployed_at,
        in_progress,
        history,
        next_eligible,
        window,
        protection,
        rollback,
    } = env;
    let age = deployed_at.map(|at| format_duration((chrono::Utc::now() - at).num_seconds()));
    view! {
        <section class="env-head">
            <p class="crumbs"><a href=format!("/projects/{project}")>"Overview"</a>" / "{name.clone()}</p>
            <h1>{name.clone()}</h1>
            {url.map(|u| view! { <p><a href=u.clone() rel="noopener">{u.clone()}</a></p> })}
            <div class="card env-current">
                {match current_version {
                    Some(v) => view! {
                        <p class="release">"Runs "<a href=format!("/projects/{project}/releases/{v}")><strong>{v.clone()}</strong></a></p>
                        {deployed_at.map(|at| view! { <p class="muted small">"deployed "{format_time(at)}{age.map(|a| format!(" ({a} ago)"))}</p> })}
                    }.into_any(),
                    None => view! { <p class="muted">"No release deployed here yet."</p> }.into_any(),
                }}
            </div>
        </section>
        <RollbackSection project=project.clone() environment=name.clone() rollback />
        <section aria-labelledby="progress-title">
            <h2 id="progress-title" class="section-title">"Under way"</h2>
            {match in_progress {
                Some(d) => view! { <DeploymentList deployments=vec![d] project=project.clone() empty="" /> }.into_any(),
                None => view! { <p class="muted">"No deployment under way."</p> }.into_any(),
            }}
            {next_eligible.map(|n| view! { <p class="small muted next-eligible">"Next to promote: "{n}</p> })}
        </section>
        <section aria-labelledby="rules-title">
            <h2 id="rules-title" class="section-title">"Rules"</h2>
            <dl class="facts">
                <dt>"Protection"</dt><dd>{protection}</dd>
                <dt>"Deploy window"</dt><dd>{window.unwrap_or_else(|| "any time".to_string())}</dd>
            </dl>
        </section>
        <section aria-labelledby="history-title">
            <h2 id="history-title" class="section-title">"History"</h2>
            <DeploymentList deployments=history project=project.clone() empty="No finished deployments here yet." />
        </section>
    }
}

/// **Roll back**: one tap opens the confirm sheet (a `<details>`, so it opens before the page
/// has hydrated and with JavaScript off), which says what comes back; **Confirm** is a plain
/// form post that lands on the rollback's progress page. The tap carries the deployment it rolls
/// back, so a double tap, or two people at once, make one rollback.
#[component]
fn RollbackSection(
    project: String,
    environment: String,
    rollback: Result<RollbackOffer, String>,
) -> impl IntoView {
    let offer = match rollback {
        Ok(offer) => offer,
        Err(why) => {
            return view! {
                <section class="rollback" aria-labelledby="rollback-title">
                    <h2 id="rollback-title" class="section-title">"Roll back"</h2>
                    <p class="muted small">{why}</p>
                </section>
            }
            .into_any();
        }
    };
    if let Some(number) = offer.existing {
        return view! {
            <section class="rollback" aria-labelledby="rollback-title">
                <h2 id="rollback-title" class="section-title">"Roll back"</h2>
                <p>
                    <a class="button" href=format!("/projects/{project}/deployments/{number}")>
                        "Rollback #"{number}" of "{offer.from.clone()}" → "{offer.to.clone()}
                    </a>
                </p>
            </section>
        }
        .into_any();
    }
    if let Some(why) = offer.refused {
        return view! {
            <section class="rollback" aria-labelledby="rollback-title">
                <h2 id="rollback-title" class="section-title">"Roll back"</h2>
                <p class="muted small">"Back to "{offer.to.clone()}" is possible; "{why}</p>
            </section>
        }
        .into_any();
    }
    let roll_back = ServerAction::<RollBackEnvironment>::new();
    view! {
        <section class="rollback" aria-labelledby="rollback-title">
            <h2 id="rollback-title" class="section-title">"Roll back"</h2>
            <details class="rollback-sheet">
                <summary class="button danger">"Roll back to "{offer.to.clone()}</summary>
                <div class="sheet">
                    <p class="sheet-title"><strong>{offer.from.clone()}</strong>" → "<strong>{offer.to.clone()}</strong></p>
                    <ol class="rollback-steps">
                        {offer.steps.into_iter().map(|step| view! { <li>{step}</li> }).collect_view()}
                    </ol>
                    <ActionForm action=roll_back>
                        <input type="hidden" name="project" value=project.clone() />
                        <input type="hidden" name="environment" value=environment.clone() />
                        <input type="hidden" name="rolls_back" value=offer.rolls_back.to_string() />
                        <button type="submit" class="button danger big" disabled=move || roll_back.pending().get()>
                            {move || if roll_back.pending().get() { "Rolling back…" } else { "Confirm rollback" }}
                        </button>
                    </ActionForm>
                    {move || roll_back.value().get().and_then(Result::err).map(|error| view! { <ErrorNotice error /> })}
                </div>
            </details>
        </section>
    }
    .into_any()
}

/// Deployments as a list: from → to, who or what started it, when, how long, outcome.
#[component]
pub fn DeploymentList(
    deployments: Vec<DeploymentSummary>,
    project: String,
    empty: &'static str,
) -> impl IntoView {
    if deployments.is_empty() {
        return view! { <p class="muted">{empty}</p> }.into_any();
    }
    view! {
        <ul class="deployment-list">
            {deployments.into_iter().map(|d| {
                let took = d.started_at.map(|s| format_duration((d.finished_at.unwrap_or_else(chrono::Utc::now) - s).num_seconds()));
                let by = match d.trigger.as_str() {
                    "schedule" => format!("schedule {}", d.triggered_by),
                    "pipeline" => format!("the pipeline ({})", d.triggered_by),
                    _ => d.triggered_by.clone(),
                };
                view! {
                    <li class="deployment-row" data-deployment=d.number data-state=d.state.as_str()>
                        <a href=format!("/projects/{project}/deployments/{}", d.number) class="run-link">
                            <StatePill state=d.state />
                            <span class="run-number">"#"{d.number}</span>
                            <span>{d.environment.clone()}": "{d.from_version.clone().unwrap_or_else(|| "nothing".into())}" → "<strong>{d.version.clone()}</strong></span>
                        </a>
                        <span class="run-meta">
                            {if d.kind == "rollback" { "rollback, " } else { "by " }}
                            {d.cause.clone().unwrap_or(by)}" · "{format_time(d.created_at)}
                            {took.map(|t| view! { " · "{t} })}
                            {d.current_stage.clone().filter(|_| !d.state.is_finished()).map(|s| view! { " · at "<strong>{s}</strong> })}
                        </span>
                        {d.reason.clone().map(|r| view! { <span class="small reason">{r}</span> })}
                    </li>
                }
            }).collect_view()}
        </ul>
    }
    .into_any()
}
