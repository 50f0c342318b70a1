//! The home page: the whole pipeline at a glance, live.

use crate::api::overview::{SetSchedulePaused, get_overview};
use crate::components::{ErrorNotice, action_error, format_time};
use crate::live::use_live_changes;
use domain::overview::{
    EnvironmentView, Overview, PhaseView, ProjectOverview, ScheduleView, StageView,
};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;

#[component]
pub fn OverviewPage() -> impl IntoView {
    let params = use_params_map();
    let changes = use_live_changes();
    let pause = ServerAction::<SetSchedulePaused>::new();
    let overview = Resource::new(
        move || {
            (
                params.read().get("project"),
                changes.get(),
                pause.version().get(),
            )
        },
        |(project, _, _)| get_overview(project),
    );
    view! {
        <Title text="Overview" />
        <Transition fallback=|| view! { <p class="loading">"Loading the pipeline…"</p> }>
            {move || Suspend::new(async move {
                match overview.await {
                    Ok(overview) => view! { <OverviewBody overview pause /> }.into_any(),
                    Err(error) => view! { <ErrorNotice error /> }.into_any(),
                }
            })}
        </Transition>
    }
}

#[component]
fn OverviewBody(overview: Overview, pause: ServerAction<SetSchedulePaused>) -> impl IntoView {
    let Overview { projects, project } = overview;
    let Some(project) = project else {
        return view! { <EmptyPortal /> }.into_any();
    };
    let switcher = (projects.len() > 1).then(|| {
        let current = project.key.clone();
        view! {
            <nav class="project-switcher" aria-label="Projects">
                {projects.into_iter().map(|p| {
                    let here = p.key == current;
                    view! { <a href=format!("/projects/{}", p.key) aria-current=here.then_some("page")>{p.name}</a> }
                }).collect_view()}
            </nav>
        }
    });
    let ProjectOverview {
        key,
        name,
        description,
        definition,
        phases,
        schedules,
        environments,
    } = project;
    view! {
        {switcher}
        <section class="project-head">
            <div class="project-title">
                <h1>{name}</h1>
                {description.map(|d| view! { <p class="lede">{d}</p> })}
                <p class="definition-info" title=format!("sha256 {}", definition.sha256)>
                    "flightdeck.yml v" {definition.version} " · loaded " {format_time(definition.loaded_at)}
                    " by " {definition.loaded_by} " from " <code>{definition.origin}</code>
                </p>
            </div>
            <nav class="project-actions" aria-label="Project">
                <a class="button" href=format!("/projects/{key}/runs")>"Runs"</a>
            </nav>
        </section>
        <section aria-labelledby="pipeline-title">
            <h2 id="pipeline-title" class="section-title">"Pipeline"</h2>
            <div class="phases">
                {phases.into_iter().enumerate().map(|(i, phase)| view! { <Phase phase index=i + 1 /> }).collect_view()}
            </div>
        </section>
        <div class="lower">
            <section aria-labelledby="env-title">
                <h2 id="env-title" class="section-title">"Environments"</h2>
                <div class="cards">
                    {environments.into_iter().map(|environment| view! { <Environment environment project=key.clone() /> }).collect_view()}
                </div>
            </section>
            <section aria-labelledby="schedule-title">
                <h2 id="schedule-title" class="section-title">"Schedules"</h2>
                {action_error(pause.value())}
                <div class="cards">
                    {schedules.into_iter().map(|schedule| view! { <Schedule schedule project=key.clone() pause /> }).collect_view()}
                </div>
            </section>
        </div>
    }
    .into_any()
}

#[component]
fn EmptyPortal() -> impl IntoView {
    view! {
        <section class="empty">
            <h1>"No project yet"</h1>
            <p>"Flightdeck shows a project once its pipeline definition is loaded. Either start the server with it:"</p>
            <pre><code>"flightdeck serve --project path/to/flightdeck.yml"</code></pre>
            <p>"or upload it with an API token that has the "<code>"definition:write"</code>" scope:"</p>
            <pre><code>"curl -X PUT -H \"Authorization: Bearer $TOKEN\" --data-binary @flightdeck.yml \\\n  http://HOST/api/v1/projects/KEY/definition"</code></pre>
            <p>"Check a file first with "<code>"flightdeck check-definition flightdeck.yml"</code>"."</p>
        </section>
    }
}

#[component]
fn Phase(phase: PhaseView, index: usize) -> impl IntoView {
    let PhaseView {
        name,
        title,
        stages,
        artifacts,
    } = phase;
    view! {
        <article class="phase" data-phase=name>
            <header class="phase-head">
                <span class="phase-index">{index}</span>
                <h3>{title}</h3>
            </header>
            <ol class="stages">
                {stages.into_iter().map(|stage| view! { <Stage stage /> }).collect_view()}
            </ol>
            <footer class="artifacts">
                {if artifacts.is_empty() {
                    view! { <p class="muted small">"Builds no artifacts"</p> }.into_any()
                } else {
                    view! {
                        <h4>"Artifacts"</h4>
                        {artifacts_note(&artifacts).map(|note| view! { <p class="muted small artifacts-note">{note}</p> })}
                        <ul class="chips">
                            {artifacts.into_iter().map(|a| {
                                let (state, title) = match &a.built {
                                    Some(run) => ("built", format!("{} from job {}, last built by run #{}", a.kind.label(), a.job, run.number)),
                                    None => ("declared", format!("{} from job {}: declared, not built yet", a.kind.label(), a.job)),
                                };
                                view! {
                                    <li class="chip" data-kind=a.kind.as_str() data-built=state title=title>
                                        {a.name}
                                        {a.built.map(|run| view! { <span class="chip-run">"#" {run.number}</span> })}
                                    </li>
                                }
                            }).collect_view()}
                        </ul>
                    }.into_any()
                }}
            </footer>
        </article>
    }
}

/// Says which chips stand for files no run has built (drawn dashed).
fn artifacts_note(artifacts: &[domain::overview::ArtifactView]) -> Option<&'static str> {
    let declared = artifacts.iter().filter(|a| a.built.is_none()).count();
    match declared {
        0 => None,
        n if n == artifacts.len() => Some("Declared in flightdeck.yml; no run has built them yet."),
        _ => Some("Dashed: declared, not built by any run yet."),
    }
}

#[component]
fn Stage(stage: StageView) -> impl IntoView {
    let StageView {
        name,
        title,
        kind,
        detail,
        state,
        last_run,
    } = stage;
    let (state_class, state_label) = match state {
        Some(state) => (
            format!("state state-{}", state.as_str()),
            state.as_str().to_string(),
        ),
        None if kind == "manual" => (
            "state state-none".to_string(),
            "on your machine".to_string(),
        ),
        None => ("state state-none".to_string(), "not run yet".to_string()),
    };
    let last = last_run.map(|run| match run.finished_at {
        Some(at) => format!("run #{} · {}", run.number, format_time(at)),
        None => format!("run #{} · in progress", run.number),
    });
    view! {
        <li class="stage" data-stage=name data-kind=kind>
            <div class="stage-line">
                <span class="stage-title">{title}</span>
                <span class=state_class>{state_label}</span>
            </div>
            <p class="stage-detail">{detail}</p>
            {last.map(|l| view! { <p class="stage-last">{l}</p> })}
        </li>
    }
}

#[component]
fn Environment(environment: EnvironmentView, project: String) -> impl IntoView {
    let EnvironmentView {
        name,
        url,
        current_release,
        deployed_at,
        protection,
        deploy_window,
        in_progress,
    } = environment;
    let key = name.clone();
    let flag_env = name.clone();
    let flags = format!("/projects/{project}/flags/{name}");
    view! {
        <article class="card environment" data-environment=key>
            <header class="card-head">
                <h3>{name}</h3>
                {url.map(|u| { let href = u.clone(); view! { <a class="small" href=href rel="noopener">{u}</a> } })}
            </header>
            {match current_release {
                Some(release) => view! {
                    <p class="release">
                        <a href=format!("/projects/{project}/releases/{release}")><strong>{release.clone()}</strong></a>
                        {deployed_at.map(|at| view! { <span class="muted small">" deployed " {format_time(at)}</span> })}
                    </p>
                }.into_any(),
                None => view! {
                    <p class="muted">"No release deployed here yet."</p>
                }.into_any(),
            }}
            {in_progress.map(|d| view! {
                <p class="in-progress small">
                    <a href=format!("/projects/{project}/deployments/{}", d.number)>"Deploying "{d.version.clone()}</a>
                    {d.current_stage.clone().map(|s| view! { " · at "<strong>{s}</strong> })}
                    {d.reason.clone().map(|r| view! { <span class="muted">" · "{r}</span> })}
                </p>
            })}
            <dl class="facts">
                <dt>"Protection"</dt><dd>{protection}</dd>
                {deploy_window.map(|w| view! { <dt>"Deploy window"</dt><dd>{w}</dd> })}
            </dl>
            <a class="button small" href=flags>"Flags in " {flag_env.clone()}</a>
            <a class="button small subtle" href=format!("/projects/{project}/environments/{flag_env}")>"History"</a>
        </article>
    }
}

#[component]
fn Schedule(
    schedule: ScheduleView,
    project: String,
    pause: ServerAction<SetSchedulePaused>,
) -> impl IntoView {
    let ScheduleView {
        name,
        description,
        cron,
        timezone,
        next_fires,
        paused,
        would,
        last_tick,
    } = schedule;
    let last = last_tick.map(|tick| {
        let alerted = tick.alerted;
        let text = last_tick_text(&tick);
        view! { <p class="last-tick small" class:alert=alerted role=if alerted { "alert" } else { "status" }>{text}</p> }
    });
    let is_paused = paused.is_some();
    let (key, field) = (name.clone(), name.clone());
    let fires_label = format!("Next times {name} fires");
    view! {
        <article class="card schedule" data-schedule=key class:paused=is_paused>
            <header class="card-head">
                <h3>{name}</h3>
                <ActionForm action=pause attr:class="inline">
                    <input type="hidden" name="project" value=project />
                    <input type="hidden" name="schedule" value=field />
                    <input type="hidden" name="paused" value=if is_paused { "false" } else { "true" } />
                    <button type="submit" class="button subtle small">{if is_paused { "Resume" } else { "Pause" }}</button>
                </ActionForm>
            </header>
            <p>{description}</p>
            <p class="muted small"><code>{cron}</code>" · "{timezone}</p>
            {last}
            {match paused {
                Some(p) => view! { <p class="paused-note">"Paused by " {p.by} " on " {format_time(p.at)}</p> }.into_any(),
                None => view! {
                    <ol class="fires" aria-label=fires_label>
                        {next_fires.into_iter().map(|f| view! { <li>{f}</li> }).collect_view()}
                    </ol>
                    <p class="muted small">"If it fired now: "{would}</p>
                }.into_any(),
            }}
        </article>
    }
}

/// A schedule's newest tick in words: "Last tick Mon 22 Mar 17:00 UTC — started: deployment #4 …".
fn last_tick_text(tick: &domain::overview::TickView) -> String {
    format!(
        "Last tick {}: {}",
        tick.due_at.format("%a %d %b %H:%M UTC"),
        tick.describe()
    )
}

#[cfg(test)]
mod schedule_tests {
    use super::last_tick_text;
    use chrono::TimeZone;
    use domain::overview::TickView;

    #[test]
    fn a_late_tick_says_how_late_and_how_many_were_missed() {
        let tick = TickView {
            due_at: chrono::Utc.with_ymd_and_hms(2027, 3, 24, 17, 0, 0).unwrap(),
            outcome: "started".into(),
            detail: Some("deployment #4 of 2027.03.22-2 to staging".into()),
            lateness_seconds: 3 * 86_400 + 2 * 3600,
            alerted: true,
            missed_before: 2,
        };
        assert_eq!(
            last_tick_text(&tick),
            "Last tick Wed 24 Mar 17:00 UTC: started: deployment #4 of 2027.03.22-2 to staging \
             (fired 3 days 2 h late; 2 earlier ticks missed while every server was down)"
        );
        let on_time = TickView {
            lateness_seconds: 0,
            alerted: false,
            missed_before: 0,
            outcome: "nothing-to-do".into(),
            detail: Some("2027.03.22-2 already runs in staging".into()),
            ..tick
        };
        assert_eq!(
            last_tick_text(&on_time),
            "Last tick Wed 24 Mar 17:00 UTC: nothing-to-do: 2027.03.22-2 already runs in staging"
        );
    }
}
