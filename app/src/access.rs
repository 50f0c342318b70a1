//! What each page and server function needs, in one table each. The server's authorization layer
//! reads these tables for every request (a route missing from them is refused), and server
//! functions read them again through [`authorize`], since during server-side rendering they are
//! called directly rather than over HTTP.

use crate::api::{admin, audit, flags, overview, releases, runs, session};
use crate::error::AppError;
use domain::access::{Access, decide};
use domain::auth::{Caller, Principal, Scope};
use domain::role::{Role, RoleSet};
use leptos::prelude::*;
use server_fn::ServerFn;

const ANYONE: Access = Access::people(RoleSet::ANYONE);
const ADMINS: Access = Access::people(RoleSet::ADMINS);
const AUDITORS: Access = Access::people(RoleSet::RELEASE_MANAGERS);
/// Everyone an environment's protection may let change flags; each function then checks the
/// environment's own roles.
const FLAG_CHANGERS: Access = Access::people(RoleSet::of(&[
    Role::Developer,
    Role::Qa,
    Role::Product,
    Role::ReleaseManager,
]));
/// Everyone an environment's protection, a gate or a checklist may let act on a deployment;
/// the domain then checks the environment's own rules (`environment::decide`).
const DEPLOYMENT_DECIDERS: Access = FLAG_CHANGERS;
const NOTE_EDITORS: Access = Access::people(RoleSet::of(&[
    Role::Developer,
    Role::Product,
    Role::ReleaseManager,
]));
const PRODUCT_MANAGERS: Access = Access::people(RoleSet::of(&[Role::Product]));
const RUN_STARTERS: Access = Access::people_or_token(RoleSet::RUN_STARTERS, Scope::RunsWrite);

/// Server functions by URL.
pub fn server_fns() -> Vec<(&'static str, Access)> {
    vec![
        (session::Login::PATH, Access::Public),
        (session::CompleteSetup::PATH, Access::Public),
        (session::CurrentUser::PATH, Access::Public),
        (session::Logout::PATH, ANYONE),
        (overview::GetOverview::PATH, ANYONE),
        (overview::ListProjects::PATH, ANYONE),
        (
            overview::SetSchedulePaused::PATH,
            Access::people_or_token(RoleSet::RELEASE_MANAGERS, Scope::SchedulesWrite),
        ),
        (admin::ListUsers::PATH, ADMINS),
        (admin::CreateUser::PATH, ADMINS),
        (admin::SetUserRole::PATH, ADMINS),
        (admin::SetUserDisabled::PATH, ADMINS),
        (admin::ResetUserPassword::PATH, ADMINS),
        (admin::ListTokens::PATH, ADMINS),
        (admin::CreateToken::PATH, ADMINS),
        (admin::RevokeToken::PATH, ADMINS),
        (audit::SearchAudit::PATH, AUDITORS),
        (flags::GetFlags::PATH, ANYONE),
        (flags::GetFlagHistory::PATH, ANYONE),
        (flags::SetFlagEnabled::PATH, FLAG_CHANGERS),
        (flags::SetFlagRollout::PATH, FLAG_CHANGERS),
        (flags::SetFlagDefinition::PATH, FLAG_CHANGERS),
        (flags::RestoreFlags::PATH, FLAG_CHANGERS),
        (flags::DecideFlagChange::PATH, FLAG_CHANGERS),
        (flags::OverrideFlagChange::PATH, ADMINS),
        (flags::CreateFlag::PATH, Access::people(RoleSet::DEVELOPERS)),
        (flags::UpdateFlag::PATH, Access::people(RoleSet::DEVELOPERS)),
        (
            flags::ArchiveFlag::PATH,
            Access::people(RoleSet::RELEASE_MANAGERS),
        ),
        (
            flags::ListSdkTokens::PATH,
            Access::people(RoleSet::DEVELOPERS),
        ),
        (
            flags::CreateSdkToken::PATH,
            Access::people(RoleSet::RELEASE_MANAGERS),
        ),
        (
            flags::RevokeSdkToken::PATH,
            Access::people(RoleSet::RELEASE_MANAGERS),
        ),
        (runs::ListRuns::PATH, ANYONE),
        (runs::GetRun::PATH, ANYONE),
        (runs::GetJob::PATH, ANYONE),
        (runs::StartRun::PATH, RUN_STARTERS),
        (runs::CancelRun::PATH, RUN_STARTERS),
        (runs::Rerun::PATH, RUN_STARTERS),
        (releases::ListReleases::PATH, ANYONE),
        (releases::GetRelease::PATH, ANYONE),
        (releases::EditReleaseNotes::PATH, NOTE_EDITORS),
        (releases::PromoteRelease::PATH, DEPLOYMENT_DECIDERS),
        (releases::GetDeployment::PATH, ANYONE),
        (releases::DecideStage::PATH, DEPLOYMENT_DECIDERS),
        (releases::GetEnvironment::PATH, ANYONE),
        // Who may roll back is the environment's rollback policy (`environment::decide`).
        (releases::RollBackEnvironment::PATH, ANYONE),
        (releases::GetInbox::PATH, PRODUCT_MANAGERS),
        (releases::InboxCount::PATH, PRODUCT_MANAGERS),
    ]
}

/// Pages by route pattern (as axum matches them).
pub fn pages() -> Vec<(&'static str, Access)> {
    vec![
        ("/login", Access::Public),
        ("/setup/{link}", Access::Public),
        ("/", ANYONE),
        ("/projects/{project}", ANYONE),
        ("/admin", ADMINS),
        ("/audit", AUDITORS),
        ("/projects/{project}/flags/{environment}", ANYONE),
        ("/projects/{project}/runs", ANYONE),
        ("/projects/{project}/runs/{number}", ANYONE),
        ("/projects/{project}/runs/{number}/jobs/{job}", ANYONE),
        ("/projects/{project}/releases", ANYONE),
        ("/projects/{project}/releases/{version}", ANYONE),
        ("/projects/{project}/deployments/{number}", ANYONE),
        ("/projects/{project}/environments/{environment}", ANYONE),
        ("/inbox", PRODUCT_MANAGERS),
    ]
}

/// The caller of the current request, as the server's HTTP layer attached it.
pub fn caller() -> Caller {
    use_context::<http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<Caller>().cloned())
        .unwrap_or_default()
}

/// Checks the caller against the server function's declared access and returns them.
pub fn authorize<F: ServerFn>() -> Result<Caller, AppError> {
    let path = F::PATH;
    let access = server_fns()
        .into_iter()
        .find(|(p, _)| *p == path)
        .map(|(_, access)| access)
        .ok_or_else(|| AppError::internal(format!("server function {path} declares no access")))?;
    let caller = caller();
    decide(access, caller.principal.as_ref())?;
    Ok(caller)
}

/// The signed-in person (not a token), for actions only people take.
pub fn person(caller: &Caller) -> Result<&domain::auth::UserPrincipal, AppError> {
    match &caller.principal {
        Some(Principal::User(user)) => Ok(user),
        Some(Principal::Token(_) | Principal::Sdk(_)) => {
            Err(AppError::Forbidden("API tokens cannot do this".into()))
        }
        None => Err(AppError::Unauthenticated),
    }
}
