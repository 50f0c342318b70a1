//! The runs list and a run's page: stages and jobs as a graph, live.

use crate::MeResource;
use crate::api::runs::{CancelRun, Rerun, StartRun, get_run, list_runs};
use crate::components::{
    ErrorNotice, StatePill, action_error, format_duration, format_size, format_time, urlencode,
};
use crate::live::use_live_changes;
use domain::role::RoleSet;
use domain::run_view::{ArtifactInfo, JobSummary, RunDetail, RunFilter, RunSummary, StageRun};
use domain::state::RunState;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::{use_params_map, use_query_map};

fn project_param() -> impl Fn() -> String + Copy + Send + Sync + 'static {
    let params = use_params_map();
    move || params.read().get("project").unwrap_or_default()
}

#[component]
pub fn RunsPage() -> impl IntoView {
    let project = project_param();
    let query = use_query_map();
    let changes = use_live_changes();
    let start = ServerAction::<StartRun>::new();
    let me = expect_context::<MeResource>();
    let filter = move || {
        let q = query.read();
        RunFilter {
            branch: q.get("branch").filter(|s| !s.is_empty()),
            state: q
                .get("state")
                .and_then(|s| serde_json::from_value(serde_json::Value::String(s)).ok()),
            trigger: q.get("trigger").filter(|s| !s.is_empty()),
            before: q.get("before").and_then(|s| s.parse().ok()),
        }
    };
    let runs = Resource::new(
        move || (project(), filter(), changes.get()),
        |(p, f, _)| list_runs(p, f),
    );
    let value = move |key: &'static str| move || query.read().get(key).unwrap_or_default();
    view! {
        <Title text="Runs" />
        <div class="page-head">
            <h1>"Runs"</h1>
            <Suspense>
                {move || Suspend::new(async move {
                    let role = me.await.ok().flatten().map(|m| m.role);
                    if role.is_some_and(|r| RoleSet::RUN_STARTERS.allows(r)) {
                        view! {
                            <ActionForm action=start attr:class="inline start-run">
                                <input type="hidden" name="project" value=project />
                                <label class="inline-label" for="start-branch">"Branch"</label>
                                <input id="start-branch" name="branch" placeholder="main" size="10" />
                                <button type="submit" class="button primary" disabled=move || start.pending().get()>
                                    {move || if start.pending().get() { "Starting…" } else { "Run pipeline" }}
                                </button>
                            </ActionForm>
                        }.into_any()
                    } else {
                        view! {
                            <p class="hint start-run-hint">"Starting a run needs the " {RoleSet::RUN_STARTERS.describe()} " role."</p>
                        }.into_any()
                    }
                })}
            </Suspense>
        </div>
        {action_error(start.value())}
        <form method="get" class="filters" role="search">
            <label>"Branch"<input name="branch" placeholder="any" prop:value=value("branch") /></label>
            <label>"State"
                <select name="state" prop:value=value("state")>
                    <option value="">"any"</option>
                    {["queued", "running", "waiting", "succeeded", "failed", "canceled", "skipped"].into_iter()
                        .map(|s| view! { <option value=s>{s}</option> }).collect_view()}
                </select>
            </label>
            <label>"Trigger"
                <select name="trigger" prop:value=value("trigger")>
                    <option value="">"any"</option>
                    {["push", "webhook", "manual", "api", "schedule"].into_iter()
                        .map(|s| view! { <option value=s>{s}</option> }).collect_view()}
                </select>
            </label>
            <button type="submit" class="button">"Filter"</button>
            <a class="button subtle" href=move || format!("/projects/{}/runs", project())>"Clear"</a>
        </form>
        <Transition fallback=|| view! { <p class="loading">"Loading runs…"</p> }>
            {move || Suspend::new(async move {
                match runs.await {
                    Ok(page) if page.runs.is_empty() => view! {
                        <section class="empty">
                            <h2>"No runs here yet"</h2>
                            <p>"Push to the project's repository, press "<strong>"Run pipeline"</strong>", or start one with the API:"</p>
                            <pre><code>{format!("curl -X POST -H \"Authorization: Bearer $TOKEN\" http://HOST/api/v1/projects/{}/runs", project())}</code></pre>
                        </section>
                    }.into_any(),
                    Ok(page) => {
                        let older = page.next_before.map(|n| {
                            let mut q: Vec<String> = query.get_untracked().into_iter()
                                .filter(|(k, _)| k != "before").map(|(k, v)| format!("{k}={}", urlencode(&v))).collect();
                            q.push(format!("before={n}"));
                            format!("/projects/{}/runs?{}", project(), q.join("&"))
                        });
                        view! {
                            <ul class="run-list">
                                {page.runs.into_iter().map(|run| view! { <RunRow run /> }).collect_view()}
                            </ul>
                            {older.map(|href| view! { <p><a class="button" href=href>"Older runs"</a></p> })}
                        }.into_any()
                    }
                    Err(error) => view! { <ErrorNotice error /> }.into_any(),
                }
            })}
        </Transition>
    }
}

#[component]
fn RunRow(run: RunSummary) -> impl IntoView {
    let href = format!("/projects/{}/runs/{}", run.project, run.number);
    let duration = run.started_at.map(|s| {
        format_duration((run.finished_at.unwrap_or_else(chrono::Utc::now) - s).num_seconds())
    });
    view! {
        <li class="run-row" data-run=run.number>
            <a href=href class="run-link">
                <StatePill state=run.state />
                <span class="run-number">"#"{run.number}</span>
                <span class="run-message">{run.commit_message}</span>
            </a>
            <span class="run-meta">
                <code>{run.commit_sha[..7.min(run.commit_sha.len())].to_string()}</code>" on "<strong>{run.branch}</strong>
                " · "{run.trigger}" by "{run.triggered_by}" · "{format_time(run.created_at)}
                {duration.map(|d| view! { " · " {d} })}
            </span>
        </li>
    }
}

#[component]
pub fn RunPage() -> impl IntoView {
    let params = use_params_map();
    let project = project_param();
    let number = move || {
        params
            .read()
            .get("number")
            .and_then(|n| n.parse::<i64>().ok())
            .unwrap_or_default()
    };
    let changes = use_live_changes();
    let cancel = ServerAction::<CancelRun>::new();
    let rerun = ServerAction::<Rerun>::new();
    let run = Resource::new(
        move || {
            (
                project(),
                number(),
                changes.get(),
                cancel.version().get(),
                rerun.version().get(),
            )
        },
        |(p, n, _, _, _)| get_run(p, n),
    );
    view! {
        <Title text=move || format!("Run #{}", number()) />
        {action_error(cancel.value())}
        {action_error(rerun.value())}
        <Transition fallback=|| view! { <p class="loading">"Loading the run…"</p> }>
            {move || Suspend::new(async move {
                match run.await {
                    Ok(detail) => view! { <RunBody detail cancel rerun /> }.into_any(),
                    Err(error) => view! { <ErrorNotice error /> }.into_any(),
                }
            })}
        </Transition>
    }
}

#[component]
fn RunBody(
    detail: RunDetail,
    cancel: ServerAction<CancelRun>,
    rerun: ServerAction<Rerun>,
) -> impl IntoView {
    let RunDetail {
        summary,
        stages,
        artifacts,
        now,
    } = detail;
    let project = summary.project.clone();
    let (cancel_project, rerun_project) = (project.clone(), project.clone());
    let number = summary.number;
    let active = !summary.state.is_finished();
    let failed = matches!(summary.state, RunState::Failed | RunState::Canceled);
    view! {
        <section class="run-head">
            <div>
                <p class="crumbs"><a href=format!("/projects/{project}/runs")>"Runs"</a>" / #"{number}</p>
                <h1><StatePill state=summary.state />" "{summary.commit_message.clone()}</h1>
                <p class="muted">
                    <code>{summary.commit_sha.clone()}</code>" on "<strong>{summary.branch.clone()}</strong>" by "{summary.commit_author.clone()}
                </p>
                <p class="muted small">
                    "Triggered by "{summary.trigger.clone()}" ("{summary.triggered_by.clone()}") · "{format_time(summary.created_at)}
                    {summary.started_at.map(|s| view! { " · ran for "{format_duration((summary.finished_at.unwrap_or(now) - s).num_seconds())} })}
                </p>
            </div>
            <div class="actions">
                {active.then(|| view! {
                    <ActionForm action=cancel attr:class="inline">
                        <input type="hidden" name="project" value=cancel_project.clone() />
                        <input type="hidden" name="number" value=number />
                        <button type="submit" class="button danger">"Cancel run"</button>
                    </ActionForm>
                })}
                {failed.then(|| view! {
                    <ActionForm action=rerun attr:class="inline">
                        <input type="hidden" name="project" value=rerun_project.clone() />
                        <input type="hidden" name="number" value=number />
                        <button type="submit" class="button">"Re-run failed jobs"</button>
                    </ActionForm>
                })}
            </div>
        </section>
        <section class="graph" aria-label="Stages and jobs">
            {stages.into_iter().map(|stage| view! { <StageColumn stage project=project.clone() number now /> }).collect_view()}
        </section>
        <section aria-labelledby="artifacts-title">
            <h2 id="artifacts-title" class="section-title">"Artifacts"</h2>
            {if artifacts.is_empty() {
                view! { <p class="muted">"No artifacts yet. Jobs upload theirs when they succeed."</p> }.into_any()
            } else {
                view! { <ArtifactTable artifacts /> }.into_any()
            }}
        </section>
    }
}

#[component]
fn StageColumn(
    stage: StageRun,
    project: String,
    number: i64,
    now: chrono::DateTime<chrono::Utc>,
) -> impl IntoView {
    let StageRun {
        name,
        title,
        needs,
        state,
        jobs,
    } = stage;
    view! {
        <article class="stage-column" data-stage=name>
            <header>
                <h3>{title}</h3>
                <StatePill state />
            </header>
            {(!needs.is_empty()).then(|| view! { <p class="muted small">"after "{needs.join(", ")}</p> })}
            <ul class="jobs">
                {jobs.into_iter().map(|job| view! { <JobCard job project=project.clone() number now /> }).collect_view()}
            </ul>
        </article>
    }
}

#[component]
fn JobCard(
    job: JobSummary,
    project: String,
    number: i64,
    now: chrono::DateTime<chrono::Utc>,
) -> impl IntoView {
    let href = format!("/projects/{project}/runs/{number}/jobs/{}", job.name);
    let elapsed = job
        .started_at
        .map(|s| (job.finished_at.unwrap_or(now) - s).num_seconds());
    // A running job's bar fills over its last successful duration, else its timeout.
    let progress = (job.state == RunState::Running).then(|| {
        let expected = job
            .typical_secs
            .filter(|t| *t > 0)
            .unwrap_or(job.timeout_secs as i64)
            .max(1);
        (elapsed.unwrap_or(0) * 100 / expected).clamp(2, 98)
    });
    let attempts = (job.max_attempts > 1 && job.attempt > 1)
        .then(|| format!("attempt {} of {}", job.attempt, job.max_attempts));
    view! {
        <li class="job-card" data-job=job.name.clone() data-state=job.state.as_str()>
            <a href=href>
                <span class="job-name">{job.name.clone()}</span>
                <StatePill state=job.state />
            </a>
            {progress.map(|p| view! {
                <div class="progress" role="progressbar" aria-valuemin="0" aria-valuemax="100" aria-valuenow=p>
                    <div class="progress-fill" style=format!("width: {p}%")></div>
                </div>
            })}
            <p class="job-meta small">
                {elapsed.map(format_duration)}
                {attempts.map(|a| view! { " · "{a} })}
                {(!job.runs_on.is_empty()).then(|| view! { " · on "{job.runs_on.join(", ")} })}
            </p>
            {job.reason.map(|r| view! { <p class="job-reason small">{r}</p> })}
        </li>
    }
}

#[component]
pub fn ArtifactTable(artifacts: Vec<ArtifactInfo>) -> impl IntoView {
    view! {
        <div class="table-wrap">
            <table class="table">
                <thead><tr><th>"Artifact"</th><th>"Kind"</th><th>"Job"</th><th>"Size"</th><th>"SHA-256"</th></tr></thead>
                <tbody>
                    {artifacts.into_iter().map(|a| view! {
                        <tr data-artifact=a.name.clone()>
                            <td data-label="Artifact"><a href=format!("/api/v1/artifacts/{}", a.id) download=a.file_name.clone()>{a.name.clone()}</a><br/><span class="muted small">{a.file_name.clone()}</span></td>
                            <td data-label="Kind"><span class="chip" data-kind=a.kind.as_str()>{a.kind.label()}</span></td>
                            <td data-label="Job">{a.job.clone()}</td>
                            <td data-label="Size" class="nowrap">{format_size(a.size_bytes)}</td>
                            <td data-label="SHA-256"><code title=a.sha256.clone()>{a.sha256[..12.min(a.sha256.len())].to_string()}"…"</code></td>
                        </tr>
                    }).collect_view()}
                </tbody>
            </table>
        </div>
    }
}
