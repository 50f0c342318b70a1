//! Releases, deployments, environments and the product managers' inbox for the pages: thin
//! calls into `domain::release` and `domain::deployment`, which decide who may.

use crate::error::AppError;
use domain::release_view::{
    DeploymentDetail, EnvironmentView, InboxItem, ReleaseDetail, ReleaseSummary,
};
use leptos::prelude::*;

/// Releases per page of the list.
pub const RELEASES_PER_PAGE: i64 = 30;

#[cfg(feature = "ssr")]
impl From<domain::release::ReleaseError> for AppError {
    fn from(e: domain::release::ReleaseError) -> Self {
        use domain::release::ReleaseError as E;
        match e {
            E::UnknownProject(_) | E::UnknownRelease { .. } => AppError::NotFound(e.to_string()),
            E::Refused(_) => AppError::Forbidden(e.to_string()),
            E::NotesTooLong(_) => AppError::invalid("notes", e),
            E::Database(e) => AppError::internal(e),
        }
    }
}

#[cfg(feature = "ssr")]
impl From<domain::deployment::DeploymentError> for AppError {
    fn from(e: domain::deployment::DeploymentError) -> Self {
        use domain::deployment::DeploymentError as E;
        use domain::environment::EnvironmentError;
        match e {
            E::UnknownProject(_)
            | E::UnknownBackup { .. }
            | E::UnknownRelease { .. }
            | E::UnknownDeployment { .. }
            | E::UnknownStage { .. } => AppError::NotFound(e.to_string()),
            E::Environment(EnvironmentError::Database(e)) | E::Database(e) => AppError::internal(e),
            E::Environment(_) => AppError::NotFound(e.to_string()),
            E::Refused(_) => AppError::Forbidden(e.to_string()),
            E::BadInput(_) => AppError::invalid("comment", e),
            E::Busy { .. } | E::NotNow(_) | E::Transition(_) | E::NothingEligible { .. } => {
                AppError::Conflict(e.to_string())
            }
            E::NoDeployStage(_) | E::NoDefinition(_) => AppError::Conflict(e.to_string()),
        }
    }
}

/// The caller as the environment rules see them.
#[cfg(feature = "ssr")]
fn acting(caller: &domain::auth::Caller) -> Result<domain::environment::Acting, AppError> {
    caller
        .principal
        .as_ref()
        .map(domain::environment::Acting::of)
        .ok_or(AppError::Unauthenticated)
}

#[server(prefix = "/fn", endpoint = "list_releases")]
pub async fn list_releases(
    project: String,
    #[server(default)] before: Option<i64>,
) -> Result<Vec<ReleaseSummary>, AppError> {
    crate::access::authorize::<ListReleases>()?;
    Ok(
        domain::release::query::list(&super::portal()?.pool, &project, before, RELEASES_PER_PAGE)
            .await?,
    )
}

#[server(prefix = "/fn", endpoint = "get_release")]
pub async fn get_release(project: String, version: String) -> Result<ReleaseDetail, AppError> {
    let caller = crate::access::authorize::<GetRelease>()?;
    Ok(domain::release::query::detail(
        &super::portal()?.pool,
        &project,
        &version,
        &acting(&caller)?,
    )
    .await?)
}

#[server(prefix = "/fn", endpoint = "edit_release_notes")]
pub async fn edit_release_notes(
    project: String,
    version: String,
    notes: String,
) -> Result<(), AppError> {
    use domain::auth::Principal;
    let caller = crate::access::authorize::<EditReleaseNotes>()?;
    let principal: &Principal = caller.principal.as_ref().ok_or(AppError::Unauthenticated)?;
    let mut tx = super::portal()?.pool.begin().await?;
    domain::release::store::edit_notes(
        &mut tx,
        &project,
        &version,
        &notes,
        principal,
        &caller.origin,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Promotes a release into an environment; returns the new deployment's number (or the
/// current one's, when it runs there already: 0).
#[server(prefix = "/fn", endpoint = "promote_release")]
pub async fn promote_release(
    project: String,
    version: String,
    environment: String,
) -> Result<i64, AppError> {
    use domain::audit::Actor;
    use domain::deployment::DeploymentTrigger;
    use domain::deployment::store::{PromoteRequest, Promoted, ReleaseChoice, promote};
    let caller = crate::access::authorize::<PromoteRelease>()?;
    let portal = super::portal()?;
    let request = PromoteRequest {
        project: project.clone(),
        environment,
        release: ReleaseChoice::Version(version),
        acting: acting(&caller)?,
        actor: Actor::of(caller.principal.as_ref()),
        trigger: DeploymentTrigger::Manual,
        idempotency_key: None,
    };
    match promote(&portal.pool, &request, &caller.origin, portal.clock.now()).await? {
        Promoted::Started(created) => {
            leptos_axum::redirect(&format!(
                "/projects/{project}/deployments/{}",
                created.number
            ));
            Ok(created.number)
        }
        Promoted::AlreadyCurrent { version } => Err(AppError::Conflict(format!(
            "{version} runs in {} already",
            request.environment
        ))),
    }
}

/// Rolls an environment back from deployment `rolls_back` (what the page showed) to its last
/// good release, and lands on the rollback's progress page. A plain form post works without
/// JavaScript; asking again for the same deployment gives the same rollback.
#[server(prefix = "/fn", endpoint = "roll_back_environment")]
pub async fn roll_back_environment(
    project: String,
    environment: String,
    rolls_back: i64,
) -> Result<i64, AppError> {
    use domain::audit::Actor;
    use domain::deployment::DeploymentTrigger;
    use domain::deployment::rollback::{Cause, RollbackRequest, roll_back};
    let caller = crate::access::authorize::<RollBackEnvironment>()?;
    let portal = super::portal()?;
    let acting = acting(&caller)?;
    let request = RollbackRequest {
        project: project.clone(),
        environment,
        rolls_back: Some(rolls_back),
        to: None,
        cause: Cause::Person {
            name: acting.name().to_string(),
        },
        acting,
        actor: Actor::of(caller.principal.as_ref()),
        trigger: DeploymentTrigger::Manual,
        idempotency_key: None,
    };
    let rolled = roll_back(&portal.pool, &request, &caller.origin, portal.clock.now()).await?;
    let number = rolled.deployment.number;
    leptos_axum::redirect(&format!("/projects/{project}/deployments/{number}"));
    Ok(number)
}

#[server(prefix = "/fn", endpoint = "get_deployment")]
pub async fn get_deployment(project: String, number: i64) -> Result<DeploymentDetail, AppError> {
    let caller = crate::access::authorize::<GetDeployment>()?;
    let portal = super::portal()?;
    Ok(domain::deployment::query::detail(
        &portal.pool,
        &project,
        number,
        &acting(&caller)?,
        portal.clock.now(),
    )
    .await?)
}

/// A person's decision on a stage: `approve`, `reject`, `tick`, `untick`, `fail`, `pass` or
/// `override-window`, with its comment (or the checklist item).
#[server(prefix = "/fn", endpoint = "decide_stage")]
pub async fn decide_stage(
    project: String,
    number: i64,
    stage: String,
    decision: String,
    #[server(default)] item: Option<i32>,
    #[server(default)] comment: String,
) -> Result<(), AppError> {
    use domain::audit::Actor;
    use domain::deployment::decide::{Decision, decide};
    let caller = crate::access::authorize::<DecideStage>()?;
    let portal = super::portal()?;
    let comment = comment.trim().to_string();
    let item = || item.ok_or_else(|| AppError::invalid("item", "which checklist item?"));
    let decision = match decision.as_str() {
        "approve" => Decision::Approve {
            comment: (!comment.is_empty()).then_some(comment),
        },
        "reject" => Decision::Reject { comment },
        "tick" => Decision::Tick { item: item()? },
        "untick" => Decision::Untick { item: item()? },
        "fail" => Decision::Fail { comment },
        "pass" => Decision::Pass { comment },
        "override-window" => Decision::OverrideWindow { reason: comment },
        other => {
            return Err(AppError::invalid(
                "decision",
                format!("`{other}` is not a decision"),
            ));
        }
    };
    decide(
        &portal.pool,
        &project,
        number,
        &stage,
        decision,
        &acting(&caller)?,
        &Actor::of(caller.principal.as_ref()),
        &caller.origin,
        portal.clock.now(),
    )
    .await?;
    Ok(())
}

#[server(prefix = "/fn", endpoint = "get_environment")]
pub async fn get_environment(
    project: String,
    environment: String,
) -> Result<EnvironmentView, AppError> {
    let caller = crate::access::authorize::<GetEnvironment>()?;
    // The server's environment databases say what a rollback would do to the database.
    let database = leptos::prelude::use_context::<
        std::sync::Arc<dyn domain::deployment::rollback::DatabasePreview>,
    >();
    Ok(domain::deployment::query::environment_view(
        &super::portal()?.pool,
        &project,
        &environment,
        &acting(&caller)?,
        database.as_deref(),
    )
    .await?)
}

#[server(prefix = "/fn", endpoint = "get_inbox")]
pub async fn get_inbox() -> Result<Vec<InboxItem>, AppError> {
    let caller = crate::access::authorize::<GetInbox>()?;
    Ok(domain::deployment::query::inbox(&super::portal()?.pool, &acting(&caller)?).await?)
}

/// How many releases wait for user acceptance (the header's badge).
#[server(prefix = "/fn", endpoint = "inbox_count")]
pub async fn inbox_count() -> Result<usize, AppError> {
    crate::access::authorize::<InboxCount>()?;
    Ok(domain::deployment::query::inbox_count(&super::portal()?.pool).await?)
}
