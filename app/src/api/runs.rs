//! Runs for the pages: list, detail, job with log; start, cancel, re-run.

use crate::error::AppError;
use domain::run_view::{JobDetail, RunDetail, RunFilter, RunPage};
use leptos::prelude::*;

/// Runs per page of the list.
pub const RUNS_PER_PAGE: i64 = 25;

#[cfg(feature = "ssr")]
impl From<domain::run::store::RunError> for AppError {
    fn from(e: domain::run::store::RunError) -> Self {
        use domain::run::store::RunError;
        match e {
            RunError::UnknownProject(_)
            | RunError::UnknownRun { .. }
            | RunError::UnknownJob { .. } => AppError::NotFound(e.to_string()),
            RunError::Transition(_) => AppError::Conflict(e.to_string()),
            RunError::Database(e) => AppError::internal(e),
            other => AppError::invalid("run", other),
        }
    }
}

#[server(prefix = "/fn", endpoint = "list_runs")]
pub async fn list_runs(
    project: String,
    #[server(default)] filter: RunFilter,
) -> Result<RunPage, AppError> {
    crate::access::authorize::<ListRuns>()?;
    Ok(domain::run::query::list(&super::portal()?.pool, &project, &filter, RUNS_PER_PAGE).await?)
}

#[server(prefix = "/fn", endpoint = "get_run")]
pub async fn get_run(project: String, number: i64) -> Result<RunDetail, AppError> {
    crate::access::authorize::<GetRun>()?;
    Ok(domain::run::query::detail(&super::portal()?.pool, &project, number).await?)
}

#[server(prefix = "/fn", endpoint = "get_job")]
pub async fn get_job(
    project: String,
    number: i64,
    job: String,
    attempt: Option<i32>,
    from: Option<i64>,
) -> Result<JobDetail, AppError> {
    crate::access::authorize::<GetJob>()?;
    Ok(domain::run::query::job(
        &super::portal()?.pool,
        &project,
        number,
        &job,
        attempt,
        from,
    )
    .await?)
}

/// Starts a run of a branch's head and opens its page.
#[server(prefix = "/fn", endpoint = "start_run")]
pub async fn start_run(project: String, branch: String) -> Result<i64, AppError> {
    use domain::audit::Actor;
    use domain::run::store::Trigger;
    let caller = crate::access::authorize::<StartRun>()?;
    let branch = if branch.trim().is_empty() {
        "main".to_string()
    } else {
        branch.trim().to_string()
    };
    let runs = &super::portal()?.runs;
    let created = runs
        .start(
            &project,
            &branch,
            None,
            Trigger::Manual,
            Actor::of(caller.principal.as_ref()),
            &caller.origin,
            None,
        )
        .await?;
    leptos_axum::redirect(&format!("/projects/{project}/runs/{}", created.number));
    Ok(created.number)
}

#[server(prefix = "/fn", endpoint = "cancel_run")]
pub async fn cancel_run(project: String, number: i64) -> Result<bool, AppError> {
    use domain::audit::Actor;
    let caller = crate::access::authorize::<CancelRun>()?;
    let runs = &super::portal()?.runs;
    let run = runs.find(&project, number).await?;
    Ok(runs
        .cancel(run, Actor::of(caller.principal.as_ref()), &caller.origin)
        .await?)
}

/// Re-runs one job (and what was skipped with it), or every job that did not succeed.
#[server(prefix = "/fn", endpoint = "rerun")]
pub async fn rerun(
    project: String,
    number: i64,
    #[server(default)] job: Option<String>,
) -> Result<usize, AppError> {
    use domain::audit::Actor;
    let caller = crate::access::authorize::<Rerun>()?;
    let runs = &super::portal()?.runs;
    let run = runs.find(&project, number).await?;
    let job = job.filter(|j| !j.is_empty());
    Ok(runs
        .rerun(
            run,
            job.as_deref(),
            Actor::of(caller.principal.as_ref()),
            &caller.origin,
        )
        .await?)
}
