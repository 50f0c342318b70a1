//! The overview page's data and the actions on it.

use crate::error::AppError;
use domain::overview::{Overview, ProjectLink};
use leptos::prelude::*;

#[server(prefix = "/fn", endpoint = "get_overview")]
pub async fn get_overview(project: Option<String>) -> Result<Overview, AppError> {
    crate::access::authorize::<GetOverview>()?;
    let portal = super::portal()?;
    domain::project::overview(&portal.pool, project.as_deref())
        .await?
        .ok_or_else(|| {
            AppError::NotFound(format!(
                "there is no project `{}`",
                project.unwrap_or_default()
            ))
        })
}

/// The projects the navigation links to.
#[server(prefix = "/fn", endpoint = "list_projects")]
pub async fn list_projects() -> Result<Vec<ProjectLink>, AppError> {
    crate::access::authorize::<ListProjects>()?;
    let portal = super::portal()?;
    Ok(domain::project::links(&portal.pool).await?)
}

#[server(prefix = "/fn", endpoint = "set_schedule_paused")]
pub async fn set_schedule_paused(
    project: String,
    schedule: String,
    paused: bool,
) -> Result<bool, AppError> {
    use domain::audit::Actor;
    use domain::project::ScheduleError;
    let caller = crate::access::authorize::<SetSchedulePaused>()?;
    let portal = super::portal()?;
    let actor = Actor::of(caller.principal.as_ref());
    domain::project::set_schedule_paused(
        &portal.pool,
        &project,
        &schedule,
        paused,
        actor,
        &caller.origin,
    )
    .await
    .map_err(|e| match e {
        ScheduleError::UnknownProject(_) | ScheduleError::UnknownSchedule { .. } => {
            AppError::NotFound(e.to_string())
        }
        ScheduleError::Database(e) => AppError::internal(e),
    })
}
