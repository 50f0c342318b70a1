//! A job's page: where it stands, and its log, live, with colours, line numbers, links to lines,
//! follow, paging through huge logs, and the raw download.

use crate::ansi::spans;
use crate::api::runs::{Rerun, get_job};
use crate::components::{ErrorNotice, StatePill, action_error, format_duration, format_time};
use crate::pages::runs::ArtifactTable;
use domain::run_view::{JobDetail, LogLineView};
use domain::state::RunState;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::{use_location, use_params_map, use_query_map};

#[component]
pub fn JobPage() -> impl IntoView {
    let params = use_params_map();
    let query = use_query_map();
    let key = move || {
        let p = params.read();
        let q = query.read();
        (
            p.get("project").unwrap_or_default(),
            p.get("number")
                .and_then(|n| n.parse::<i64>().ok())
                .unwrap_or_default(),
            p.get("job").unwrap_or_default(),
            q.get("attempt").and_then(|a| a.parse::<i32>().ok()),
            q.get("from").and_then(|f| f.parse::<i64>().ok()),
        )
    };
    let (ended, set_ended) = signal(0u32);
    let rerun = ServerAction::<Rerun>::new();
    let detail = Resource::new(
        move || (key(), ended.get(), rerun.version().get()),
        |((project, number, job, attempt, from), _, _)| {
            get_job(project, number, job, attempt, from)
        },
    );
    view! {
        <Title text=move || format!("{} · run #{}", key().2, key().1) />
        {action_error(rerun.value())}
        <Transition fallback=|| view! { <p class="loading">"Loading the job…"</p> }>
            {move || Suspend::new(async move {
                match detail.await {
                    Ok(detail) => view! { <JobBody detail rerun on_end=move || set_ended.update(|n| *n += 1) /> }.into_any(),
                    Err(error) => view! { <ErrorNotice error /> }.into_any(),
                }
            })}
        </Transition>
    }
}

#[component]
fn JobBody(
    detail: JobDetail,
    rerun: ServerAction<Rerun>,
    on_end: impl Fn() + Clone + Send + Sync + 'static,
) -> impl IntoView {
    let JobDetail {
        run,
        stage,
        job,
        steps,
        artifacts,
        log,
        ..
    } = detail;
    let project = run.project.clone();
    let number = run.number;
    let base = format!("/api/v1/projects/{project}/runs/{number}/jobs/{}", job.name);
    let download = format!("{base}/log.txt?attempt={}", log.attempt);
    let latest_page = log.first_line + log.lines.len() as i64 > log.total_lines;
    let live = !job.state.is_finished() && latest_page;
    let last_line = log.lines.last().map(|l| l.no).unwrap_or(log.first_line - 1);
    let (extra, set_extra) = signal(Vec::<LogLineView>::new());
    let (follow, set_follow) = signal(live);
    #[cfg(feature = "hydrate")]
    if live {
        let url = format!(
            "{base}/log/stream?attempt={}&after={last_line}",
            log.attempt
        );
        start_log_stream(url, set_extra, follow, on_end.clone());
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = (&on_end, last_line, set_extra);
    let earlier = (log.first_line > 1).then(|| {
        format!(
            "/projects/{project}/runs/{number}/jobs/{}?attempt={}&from={}",
            job.name,
            log.attempt,
            (log.first_line - 1000).max(1)
        )
    });
    let later = (!latest_page).then(|| {
        format!(
            "/projects/{project}/runs/{number}/jobs/{}?attempt={}",
            job.name, log.attempt
        )
    });
    let elapsed = job.started_at.map(|s| {
        format_duration((job.finished_at.unwrap_or_else(chrono::Utc::now) - s).num_seconds())
    });
    // A skipped job never ran (an earlier stage failed): re-running the run, not it, is the way.
    let can_rerun = matches!(job.state, RunState::Failed | RunState::Canceled);
    let skipped = job.state == RunState::Skipped;
    // Lines shown so far: the page's, then each streamed batch's.
    let shown_total = log.total_lines;
    let line_count = move || {
        let streamed = extra.with(|lines| lines.last().map(|l| l.no).unwrap_or(0));
        let total = shown_total.max(streamed);
        if total == 1 {
            "1 line".to_string()
        } else {
            format!("{total} lines")
        }
    };
    let attempts: Vec<i32> = (1..=job.attempt.max(1)).collect();
    // The line a `#L60` link points at, highlighted however it was reached (a link followed,
    // the address typed, or the router moving between them).
    // Read in the browser only: the server never sees the part after `#`.
    let hash = use_location().hash;
    let (target, set_target) = signal(None::<i64>);
    Effect::new(move |_| {
        set_target.set(
            hash.get()
                .strip_prefix("#L")
                .and_then(|n| n.parse::<i64>().ok()),
        )
    });
    let job_name = job.name.clone();
    view! {
        <section class="run-head">
            <div>
                <p class="crumbs">
                    <a href=format!("/projects/{}/runs", run.project)>"Runs"</a>" / "
                    <a href=format!("/projects/{}/runs/{number}", run.project)>"#"{number}</a>" / "{stage}
                </p>
                <h1><StatePill state=job.state />" "{job.name.clone()}</h1>
                <p class="muted small">
                    {run.commit_message.clone()}" · "<code>{run.commit_sha[..7.min(run.commit_sha.len())].to_string()}</code>
                    {job.started_at.map(|s| view! { " · started "{format_time(s)} })}
                    {elapsed.map(|e| view! { " · "{e} })}
                    {(job.max_attempts > 1).then(|| view! { " · attempt "{job.attempt}" of "{job.max_attempts} })}
                </p>
                {job.reason.clone().map(|r| view! { <p class="job-reason">{r}</p> })}
            </div>
            <div class="actions">
                {can_rerun.then(|| view! {
                    <ActionForm action=rerun attr:class="inline">
                        <input type="hidden" name="project" value=project.clone() />
                        <input type="hidden" name="number" value=number />
                        <input type="hidden" name="job" value=job_name.clone() />
                        <button type="submit" class="button">"Re-run job"</button>
                    </ActionForm>
                })}
                <a class="button subtle" href=download download="">"Download log"</a>
            </div>
        </section>
        <details class="steps">
            <summary>{format!("{} steps", steps.len())}</summary>
            <ol>{steps.into_iter().map(|s| view! { <li>{s}</li> }).collect_view()}</ol>
        </details>
        {(attempts.len() > 1).then(|| view! {
            <nav class="attempts" aria-label="Attempts">
                {attempts.into_iter().map(|a| view! {
                    <a href=format!("?attempt={a}") aria-current=(a == log.attempt).then_some("page")>{format!("attempt {a}")}</a>
                }).collect_view()}
            </nav>
        })}
        <div class="log-toolbar">
            <span class="muted small log-count">{line_count}</span>
            {earlier.map(|href| view! { <a class="button subtle small" href=href>"Earlier lines"</a> })}
            {later.map(|href| view! { <a class="button subtle small" href=href>"Latest lines"</a> })}
            {live.then(|| view! {
                <label class="check small">
                    <input type="checkbox" prop:checked=follow on:change=move |ev| set_follow.set(event_target_checked(&ev)) />
                    " Follow"
                </label>
            })}
        </div>
        <div class="log" role="log" aria-live="polite">
            {log.lines.into_iter().map(|line| view! { <LogLine line target /> }).collect_view()}
            <For each=move || extra.get() key=|line| line.no let:line>
                <LogLine line target />
            </For>
            {(log.total_lines == 0 && !live).then(|| view! {
                <p class="log-empty">{if skipped { "Skipped: this job did not run, because an earlier stage did not succeed." } else { "This job printed nothing." }}</p>
            })}
        </div>
        {(!artifacts.is_empty()).then(|| view! {
            <h2 class="section-title">"Artifacts"</h2>
            <ArtifactTable artifacts />
        })}
    }
}

#[component]
fn LogLine(line: LogLineView, target: ReadSignal<Option<i64>>) -> impl IntoView {
    let anchor = format!("L{}", line.no);
    let no = line.no;
    view! {
        <div class=format!("log-line log-{}", line.stream) class:selected=move || target.get() == Some(no) id=anchor.clone()>
            <a class="log-no" href=format!("#{anchor}")>{line.no}</a>
            <span class="log-text">
                {spans(&line.text).into_iter().map(|s| view! { <span class=s.class>{s.text}</span> }).collect_view()}
            </span>
        </div>
    }
}

/// Appends streamed lines; scrolls to the end while following; reloads the job when it ends.
#[cfg(feature = "hydrate")]
fn start_log_stream(
    url: String,
    lines: WriteSignal<Vec<LogLineView>>,
    follow: ReadSignal<bool>,
    on_end: impl Fn() + Clone + Send + Sync + 'static,
) {
    use futures::StreamExt;
    use gloo_net::eventsource::futures::EventSource;
    Effect::new(move |_| {
        let Ok(mut source) = EventSource::new(&url) else {
            return;
        };
        let (Ok(batches), Ok(end)) = (source.subscribe("lines"), source.subscribe("end")) else {
            return;
        };
        let on_end = on_end.clone();
        let mut events = futures::stream::select(batches.map(Some), end.map(|_| None));
        leptos::task::spawn_local(async move {
            while let Some(event) = events.next().await {
                let Some(Ok((_, message))) = event else {
                    on_end();
                    break;
                };
                let Some(data) = message.data().as_string() else {
                    continue;
                };
                let Ok(batch) = serde_json::from_str::<Vec<LogLineView>>(&data) else {
                    continue;
                };
                lines.update(|all| all.extend(batch));
                if follow.get_untracked()
                    && let Some(window) = web_sys::window()
                {
                    let height = window
                        .document()
                        .and_then(|d| d.body())
                        .map(|b| b.scroll_height())
                        .unwrap_or(0);
                    window.scroll_to_with_x_and_y(0.0, height as f64);
                }
            }
        });
        let source = send_wrapper::SendWrapper::new(source);
        on_cleanup(move || source.take().close());
    });
}
