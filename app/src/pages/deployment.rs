//! A deployment's page: its stages in order with state and reason, the runs, steps and
//! decisions of each, and the decisions the viewer may take now (which the domain computed with
//! the same rules its use case applies). Live.

use crate::api::releases::{DecideStage, get_deployment};
use crate::components::{
    ErrorNotice, StatePill, action_error, format_duration, format_size, format_time,
};
use crate::live::use_live_changes;
use crate::pages::releases::param;
use domain::release_view::{BackupView, DeploymentDetail, DeploymentStageView, StageAction};
use leptos::prelude::*;
use leptos_meta::Title;

#[component]
pub fn DeploymentPage() -> impl IntoView {
    let project = param("project");
    let number = param("number");
    let changes = use_live_changes();
    let decide = ServerAction::<DecideStage>::new();
    let deployment = Resource::new_blocking(
        move || (project(), number(), changes.get(), decide.version().get()),
        |(p, n, _, _)| get_deployment(p, n.parse().unwrap_or_default()),
    );
    view! {
        <Title text=move || format!("Deployment #{}", number()) />
        {action_error(decide.value())}
        <Transition fallback=|| view! { <p class="loading">"Loading the deployment…"</p> }>
            {move || Suspend::new(async move {
                match deployment.await {
                    Ok(detail) => view! { <DeploymentBody detail decide /> }.into_any(),
                    Err(error) => view! { <ErrorNotice error /> }.into_any(),
                }
            })}
        </Transition>
    }
}

#[component]
fn DeploymentBody(detail: DeploymentDetail, decide: ServerAction<DecideStage>) -> impl IntoView {
    let DeploymentDetail {
        project,
        summary,
        stages,
        site_url,
        flag_snapshot_version,
        backups,
        ..
    } = detail;
    let number = summary.number;
    // Without JavaScript the page cannot follow along live: it reloads itself until the end
    // (a phone that tapped Roll back before the wasm arrived still sees each step).
    let reload = (!summary.state.is_finished()).then(
        || view! { <noscript inner_html=r#"<meta http-equiv="refresh" content="2">"#></noscript> },
    );
    view! {
        {reload}
        <section class="run-head">
            <div>
                <p class="crumbs">
                    <a href=format!("/projects/{project}/environments/{}", summary.environment)>{summary.environment.clone()}</a>
                    " / deployment #"{number}
                </p>
                <h1>
                    <StatePill state=summary.state />" "
                    {if summary.kind == "rollback" {
                        format!("Rollback of {} to {}", summary.environment, summary.version)
                    } else {
                        format!("{} to {}", summary.version, summary.environment)
                    }}
                </h1>
                <p class="muted">
                    {summary.from_version.clone().map(|f| format!("from {f} · ")).unwrap_or_default()}
                    "release "<a href=format!("/projects/{project}/releases/{}", summary.version)>{summary.version.clone()}</a>
                    " · "{summary.cause.clone().unwrap_or_else(|| format!("{} by {}", summary.trigger, summary.triggered_by))}
                    " · "{format_time(summary.created_at)}
                </p>
                {summary.reason.clone().map(|r| view! { <p class="deployment-reason">{r}</p> })}
                {site_url.map(|u| view! { <p class="small"><a href=u.clone() rel="noopener">"Open "{summary.environment.clone()}</a></p> })}
                {flag_snapshot_version.map(|v| view! { <p class="small muted">"Flag snapshot v"{v}</p> })}
            </div>
        </section>
        <ol class="deployment-stages">
            {stages.into_iter().map(|stage| view! { <StageCard stage project=project.clone() number decide /> }).collect_view()}
        </ol>
        {(!backups.is_empty()).then(|| view! { <Backups backups /> })}
    }
}

/// The database backups the deployment took, each downloadable by those who may roll back.
#[component]
fn Backups(backups: Vec<BackupView>) -> impl IntoView {
    view! {
        <section class="backups">
            <h2 class="section-title">"Database backups"</h2>
            <ul class="backup-list">
                {backups.into_iter().map(|b| view! {
                    <li class="backup">
                        <p><strong>{b.database.clone()}</strong>" · "{b.purpose.clone()}</p>
                        <p class="small muted">
                            {format_size(b.size_bytes)}" · "{format_time(b.created_at)}
                            " · sha256 "<code title=b.sha256.clone()>{b.sha256[..12.min(b.sha256.len())].to_string()}</code>
                            {b.kept_until.map(|k| format!(" · kept at least until {}", format_time(k)))}
                        </p>
                        {(!b.tables.is_empty()).then(|| view! {
                            <p class="small">"Holds "{b.tables.join(", ")}</p>
                        })}
                        {match b.download.clone() {
                            Some(href) => view! {
                                <p class="backup-download">
                                    <a class="button subtle small" href=href download=b.file_name.clone() rel="external">"Download "{b.file_name.clone()}</a>
                                </p>
                                <p class="small muted">"Open it with "<code>"pg_restore --list "{b.file_name.clone()}</code>", or restore it into a scratch database with "<code>"pg_restore -d scratch "{b.file_name.clone()}</code>"."</p>
                            }.into_any(),
                            None => view! { <p class="small muted">"Those who may roll back this environment can download it."</p> }.into_any(),
                        }}
                    </li>
                }).collect_view()}
            </ul>
        </section>
    }
}

#[component]
fn StageCard(
    stage: DeploymentStageView,
    project: String,
    number: i64,
    decide: ServerAction<DecideStage>,
) -> impl IntoView {
    let DeploymentStageView {
        name,
        title,
        kind,
        state,
        reason,
        started_at,
        finished_at,
        run_number,
        summary,
        checklist,
        steps,
        decisions,
        actions,
        why_not,
    } = stage;
    let took = started_at
        .map(|s| format_duration((finished_at.unwrap_or_else(chrono::Utc::now) - s).num_seconds()));
    let may_tick = actions.contains(&StageAction::Tick);
    let form = {
        let (project, name) = (project.clone(), name.clone());
        move |decision: &'static str,
              label: &'static str,
              needs_words: Option<&'static str>,
              class: &'static str| {
            let (project, name) = (project.clone(), name.clone());
            let id = format!("{name}-{decision}-comment");
            view! {
                <ActionForm action=decide attr:class="decision-form" attr:data-decision=decision>
                    <input type="hidden" name="project" value=project />
                    <input type="hidden" name="number" value=number />
                    <input type="hidden" name="stage" value=name />
                    <input type="hidden" name="decision" value=decision />
                    {needs_words.map(|placeholder| view! {
                        <label class="sr-only" for=id.clone()>{label}" comment"</label>
                        <textarea id=id.clone() name="comment" rows="2" placeholder=placeholder required=true></textarea>
                    })}
                    <button type="submit" class=format!("button {class}") disabled=move || decide.pending().get()>{label}</button>
                </ActionForm>
            }
        }
    };
    let action_forms = actions
        .iter()
        .filter_map(|action| match (action, kind.as_str()) {
            (StageAction::Approve, _) => Some(form("approve", "Approve", None, "primary")),
            (StageAction::Reject, _) => {
                Some(form("reject", "Reject", Some("Why? (required)"), "danger"))
            }
            (StageAction::Fail, "manual") => Some(form(
                "fail",
                "Fail with a note",
                Some("What failed? (required)"),
                "danger",
            )),
            (StageAction::Fail, _) => Some(form("fail", "Fail", Some("Why? (required)"), "danger")),
            (StageAction::Pass, _) => Some(form(
                "pass",
                "Pass",
                Some("Why is it fine? (required)"),
                "primary",
            )),
            (StageAction::OverrideWindow, _) => Some(form(
                "override-window",
                "Override the window",
                Some("Why deploy now? (required)"),
                "danger",
            )),
            (StageAction::Tick, _) => None,
        })
        .collect_view();
    view! {
        <li class="deployment-stage card" data-stage=name.clone() data-state=state.as_str()>
            <header class="card-head">
                <h3>{title}</h3>
                <StatePill state />
            </header>
            // A rollback's steps below say what it does, one by one.
            <p class="small muted">
                {if kind == "rollback" { kind.clone() } else { format!("{kind}: {summary}") }}
                {took.map(|t| format!(" · {t}"))}
            </p>
            {reason.map(|r| view! { <p class="stage-reason">{r}</p> })}
            {run_number.map(|n| view! { <p class="small"><a href=format!("/projects/{project}/runs/{n}")>"Run #"{n}</a></p> })}
            {(!checklist.is_empty()).then(|| {
                let (project, stage) = (project.clone(), name.clone());
                view! {
                    <ul class="checklist">
                        {checklist.into_iter().map(|item| {
                            let ticked = item.ticked_by.is_some();
                            let (project, stage) = (project.clone(), stage.clone());
                            let id = format!("{stage}-item-{}", item.number);
                            view! {
                                <li class="checklist-item" data-item=item.number>
                                    <input type="checkbox" id=id.clone() checked=ticked disabled=!may_tick
                                        on:change=move |_| {
                                            decide.dispatch(DecideStage {
                                                project: project.clone(),
                                                number,
                                                stage: stage.clone(),
                                                decision: if ticked { "untick".into() } else { "tick".into() },
                                                item: Some(item.number),
                                                comment: String::new(),
                                            });
                                        } />
                                    <label for=id>
                                        {item.section.map(|s| view! { <span class="muted small">{s}": "</span> })}
                                        {item.text}
                                        {item.ticked_by.map(|by| view! {
                                            <span class="muted small ticked-by">" ✓ "{by}{item.ticked_at.map(|at| format!(" · {}", format_time(at)))}</span>
                                        })}
                                    </label>
                                </li>
                            }
                        }).collect_view()}
                    </ul>
                }
            })}
            {(!steps.is_empty()).then(|| view! {
                <ul class="steps small">
                    {steps.into_iter().map(|s| view! {
                        <li class="step" data-step=s.name.clone() data-state=s.state.clone()>
                            <span class="step-mark" aria-hidden="true">{step_mark(&s.state)}</span>
                            <div class="step-body">
                                <strong>{s.what.clone().unwrap_or_else(|| s.name.clone())}</strong>
                                " "<span class="step-state">{step_word(&s.state)}</span>
                                {(!s.detail.is_empty()).then(|| view! { <div class="step-detail">{s.detail.clone()}</div> })}
                                {s.started_at.map(|at| view! { <div class="muted step-time">{format_time(at)}</div> })}
                            </div>
                        </li>
                    }).collect_view()}
                </ul>
            })}
            {(!decisions.is_empty()).then(|| view! {
                <ul class="decisions small">
                    {decisions.into_iter().filter(|d| d.kind != "tick" && d.kind != "untick").map(|d| view! {
                        <li class="decision" data-kind=d.kind.clone()>
                            <strong>{d.by.clone()}</strong>" "{decision_word(&d.kind)}" · "{format_time(d.at)}
                            {d.comment.clone().map(|c| view! { <q>{c}</q> })}
                        </li>
                    }).collect_view()}
                </ul>
            })}
            {why_not.map(|why| view! { <p class="small muted why-not">"You cannot decide here: "{why}"."</p> })}
            <div class="stage-actions">{action_forms}</div>
        </li>
    }
}

fn step_mark(state: &str) -> &'static str {
    match state {
        "done" => "✓",
        "failed" => "✗",
        "started" => "…",
        "not-needed" => "–",
        _ => "○",
    }
}

fn step_word(state: &str) -> &'static str {
    match state {
        "done" => "done",
        "failed" => "failed",
        "started" => "under way",
        "not-needed" => "not needed",
        _ => "waiting",
    }
}

fn decision_word(kind: &str) -> &'static str {
    match kind {
        "approve" => "approved",
        "reject" => "rejected",
        "pass" => "passed it by hand",
        "fail" => "failed it",
        "override-window" => "overrode the deploy window",
        _ => "decided",
    }
}
