//! The flags page's data and actions. Who may change flags in an environment is its protection's
//! roles (admins always); the store writes the change, its snapshot and its audit entry in one
//! transaction.

use crate::error::AppError;
use domain::flag_view::{
    ChangeOutcome, FlagsPage, HistoryEntry, NewSdkToken, RestoreOutcome, SdkTokenSummary,
};
use leptos::prelude::*;

/// How many snapshots the history shows.
pub const HISTORY_LENGTH: i64 = 30;

#[server(prefix = "/fn", endpoint = "get_flags")]
pub async fn get_flags(project: String, environment: String) -> Result<FlagsPage, AppError> {
    let caller = crate::access::authorize::<GetFlags>()?;
    let acting = acting(&caller)?;
    let portal = super::portal()?;
    let store = &portal.flags;
    Ok(domain::flags::page::flags_page(store, &project, &environment, &acting).await?)
}

#[server(prefix = "/fn", endpoint = "get_flag_history")]
pub async fn get_flag_history(
    project: String,
    environment: String,
) -> Result<Vec<HistoryEntry>, AppError> {
    crate::access::authorize::<GetFlagHistory>()?;
    let portal = super::portal()?;
    let store = &portal.flags;
    let env = store.environment(&project, &environment).await?;
    Ok(domain::flags::page::history(store, env.id, HISTORY_LENGTH).await?)
}

/// Turns a flag on or off. `kill` is the kill switch: off, audited as an emergency stop.
#[server(prefix = "/fn", endpoint = "set_flag_enabled")]
pub async fn set_flag_enabled(
    project: String,
    environment: String,
    flag: String,
    enabled: bool,
    #[server(default)] kill: bool,
    #[server(default)] apply_at: String,
) -> Result<ChangeOutcome, AppError> {
    use domain::flags::definition::EnvironmentEdit;
    let caller = crate::access::authorize::<SetFlagEnabled>()?;
    let edit = match (enabled, kill) {
        (false, true) => EnvironmentEdit::Kill,
        (true, true) => {
            return Err(AppError::invalid(
                "kill",
                "the kill switch only turns flags off",
            ));
        }
        (enabled, false) => EnvironmentEdit::Enable { enabled },
    };
    change(&caller, &project, &environment, &flag, edit, &apply_at).await
}

/// Sets a flag's gradual rollout: one strategy, `rollout` % of users by `stickiness`.
#[server(prefix = "/fn", endpoint = "set_flag_rollout")]
pub async fn set_flag_rollout(
    project: String,
    environment: String,
    flag: String,
    rollout: u8,
    stickiness: String,
    #[server(default)] apply_at: String,
) -> Result<ChangeOutcome, AppError> {
    use domain::flags::definition::{EnvironmentEdit, Strategies};
    let caller = crate::access::authorize::<SetFlagRollout>()?;
    if rollout > 100 {
        return Err(AppError::invalid("rollout", "a rollout is 0 to 100 %"));
    }
    if !["default", "userId", "sessionId", "random"].contains(&stickiness.as_str()) {
        return Err(AppError::invalid(
            "stickiness",
            "stickiness is default, userId, sessionId or random",
        ));
    }
    let strategy = serde_json::json!([{
        "name": "flexibleRollout",
        "parameters": {"rollout": rollout.to_string(), "stickiness": stickiness, "groupId": flag},
    }]);
    let strategies: Strategies =
        serde_json::from_value(strategy).map_err(|e| AppError::invalid("rollout", e))?;
    let edit = EnvironmentEdit::Strategies { strategies };
    change(&caller, &project, &environment, &flag, edit, &apply_at).await
}

/// Replaces a flag's strategies and variants with Unleash JSON (the advanced editor). Every
/// problem in either list is reported at once, and nothing changes unless both are valid.
#[server(prefix = "/fn", endpoint = "set_flag_definition")]
pub async fn set_flag_definition(
    project: String,
    environment: String,
    flag: String,
    strategies: String,
    variants: String,
    #[server(default)] apply_at: String,
) -> Result<ChangeOutcome, AppError> {
    use domain::flags::definition::{EnvironmentEdit, Strategies, Variants};
    let caller = crate::access::authorize::<SetFlagDefinition>()?;
    let strategies: Strategies = serde_json::from_str(&strategies).map_err(|e| {
        AppError::invalid(
            "strategies",
            format!("line {}, column {}: {e}", e.line(), e.column()),
        )
    })?;
    let variants: Variants = serde_json::from_str(&variants).map_err(|e| {
        AppError::invalid(
            "variants",
            format!("line {}, column {}: {e}", e.line(), e.column()),
        )
    })?;
    let edit = EnvironmentEdit::Strategies { strategies };
    let first = change(&caller, &project, &environment, &flag, edit, &apply_at).await?;
    let edit = EnvironmentEdit::Variants { variants };
    let second = change(&caller, &project, &environment, &flag, edit, &apply_at).await?;
    Ok(match (first, second) {
        (ChangeOutcome::Applied { changed: a }, ChangeOutcome::Applied { changed: b }) => {
            ChangeOutcome::Applied { changed: a || b }
        }
        (waiting @ ChangeOutcome::Waiting { .. }, _) | (_, waiting) => waiting,
    })
}

/// Approves, rejects or cancels a waiting change (`decision`: approve, reject, cancel). The
/// approval that completes the required number applies it.
#[server(prefix = "/fn", endpoint = "decide_flag_change")]
pub async fn decide_flag_change(
    project: String,
    environment: String,
    id: i64,
    decision: String,
) -> Result<String, AppError> {
    use domain::audit::Actor;
    use domain::flags::change::Decision;
    let caller = crate::access::authorize::<DecideFlagChange>()?;
    let decision = match decision.as_str() {
        "approve" => Decision::Approve,
        "reject" => Decision::Reject,
        "cancel" => Decision::Cancel,
        _ => return Err(AppError::invalid("decision", "approve, reject or cancel")),
    };
    let portal = super::portal()?;
    let store = &portal.flags;
    let env = store.environment(&project, &environment).await?;
    let acting = acting(&caller)?;
    let actor = Actor::of(caller.principal.as_ref());
    let state = portal
        .flag_changes(store)
        .decide(env.id, id, decision, &acting, actor, &caller.origin)
        .await?;
    Ok(state.to_string())
}

/// Lets a waiting change through without the approvals it waits for: an admin's, with a reason,
/// audited as a security event. The environment's rule decides who may (admins).
#[server(prefix = "/fn", endpoint = "override_flag_change")]
pub async fn override_flag_change(
    project: String,
    environment: String,
    id: i64,
    reason: String,
) -> Result<String, AppError> {
    use domain::audit::Actor;
    let caller = crate::access::authorize::<OverrideFlagChange>()?;
    let portal = super::portal()?;
    let store = &portal.flags;
    let env = store.environment(&project, &environment).await?;
    let acting = acting(&caller)?;
    let actor = Actor::of(caller.principal.as_ref());
    let state = portal
        .flag_changes(store)
        .override_approvals(env.id, id, &reason, &acting, actor, &caller.origin)
        .await?;
    Ok(state.to_string())
}

#[server(prefix = "/fn", endpoint = "create_flag")]
pub async fn create_flag(
    project: String,
    name: String,
    flag_type: String,
    #[server(default)] description: String,
    #[server(default)] owner: String,
) -> Result<(), AppError> {
    use domain::audit::Actor;
    use domain::flags::definition::{FlagName, FlagType, NewFlag};
    let caller = crate::access::authorize::<CreateFlag>()?;
    let name = FlagName::parse(name.trim()).map_err(|e| AppError::invalid("name", e))?;
    let flag_type = FlagType::parse(&flag_type).map_err(|e| AppError::invalid("type", e))?;
    let owner = Some(owner.trim().to_string()).filter(|o| !o.is_empty());
    let portal = super::portal()?;
    let store = &portal.flags;
    let flag = NewFlag {
        name,
        flag_type,
        description: description.trim().to_string(),
        owner,
    };
    store
        .create(
            &project,
            flag,
            Actor::of(caller.principal.as_ref()),
            &caller.origin,
        )
        .await?;
    Ok(())
}

/// Changes what a flag is in every environment: type, description, owner, the stale mark.
#[server(prefix = "/fn", endpoint = "update_flag")]
pub async fn update_flag(
    project: String,
    flag: String,
    flag_type: String,
    #[server(default)] description: String,
    #[server(default)] owner: String,
    #[server(default)] stale: bool,
) -> Result<bool, AppError> {
    use domain::audit::Actor;
    use domain::flags::definition::{FlagDetails, FlagName, FlagType};
    let caller = crate::access::authorize::<UpdateFlag>()?;
    let flag = FlagName::parse(&flag).map_err(|e| AppError::invalid("flag", e))?;
    let details = FlagDetails {
        flag_type: FlagType::parse(&flag_type).map_err(|e| AppError::invalid("type", e))?,
        description: description.trim().to_string(),
        owner: Some(owner.trim().to_string()).filter(|o| !o.is_empty()),
        stale,
    };
    let portal = super::portal()?;
    let store = &portal.flags;
    let applied = store
        .update(
            &project,
            &flag,
            details,
            Actor::of(caller.principal.as_ref()),
            &caller.origin,
        )
        .await?;
    Ok(applied.changed())
}

/// Archives a flag: it leaves every environment (SDKs stop seeing it); its name stays taken and
/// restoring a snapshot that had it brings it back.
#[server(prefix = "/fn", endpoint = "archive_flag")]
pub async fn archive_flag(project: String, flag: String) -> Result<bool, AppError> {
    use domain::audit::Actor;
    use domain::flags::definition::FlagName;
    let caller = crate::access::authorize::<ArchiveFlag>()?;
    let flag = FlagName::parse(&flag).map_err(|e| AppError::invalid("flag", e))?;
    let portal = super::portal()?;
    let store = &portal.flags;
    let applied = store
        .archive(
            &project,
            &flag,
            Actor::of(caller.principal.as_ref()),
            &caller.origin,
        )
        .await?;
    Ok(applied.changed())
}

/// Puts the environment's flags back to snapshot `version`. Restoring it again changes nothing.
#[server(prefix = "/fn", endpoint = "restore_flags")]
pub async fn restore_flags(
    project: String,
    environment: String,
    version: i64,
) -> Result<RestoreOutcome, AppError> {
    use domain::audit::Actor;
    use domain::flags::Restored;
    let caller = crate::access::authorize::<RestoreFlags>()?;
    let portal = super::portal()?;
    let store = &portal.flags;
    let env = store.environment(&project, &environment).await?.id;
    portal
        .flag_changes(store)
        .authorize(
            env,
            &acting(&caller)?,
            domain::environment::Action::ChangeFlags,
        )
        .await?;
    let actor = Actor::of(caller.principal.as_ref());
    Ok(
        match store
            .restore(env, version, actor, &caller.origin, None)
            .await?
        {
            Restored::Restored {
                version, changes, ..
            } => RestoreOutcome {
                version,
                changed: true,
                changes: changes.iter().map(ToString::to_string).collect(),
            },
            Restored::AlreadyCurrent { version, .. } | Restored::Replayed { version } => {
                RestoreOutcome {
                    version,
                    changed: false,
                    changes: Vec::new(),
                }
            }
        },
    )
}

#[server(prefix = "/fn", endpoint = "list_sdk_tokens")]
pub async fn list_sdk_tokens(project: String) -> Result<Vec<SdkTokenSummary>, AppError> {
    crate::access::authorize::<ListSdkTokens>()?;
    let portal = super::portal()?;
    Ok(domain::flags::SdkTokens::new(portal.pool.clone())
        .list(&project)
        .await?)
}

#[server(prefix = "/fn", endpoint = "create_sdk_token")]
pub async fn create_sdk_token(
    project: String,
    environment: String,
    kind: String,
    name: String,
) -> Result<NewSdkToken, AppError> {
    use domain::audit::Actor;
    let caller = crate::access::authorize::<CreateSdkToken>()?;
    let kind = kind.parse().map_err(|e| AppError::invalid("kind", e))?;
    let portal = super::portal()?;
    Ok(domain::flags::SdkTokens::new(portal.pool.clone())
        .create(
            &project,
            &environment,
            kind,
            &name,
            Actor::of(caller.principal.as_ref()),
            &caller.origin,
        )
        .await?)
}

#[server(prefix = "/fn", endpoint = "revoke_sdk_token")]
pub async fn revoke_sdk_token(project: String, id: String) -> Result<bool, AppError> {
    use domain::audit::Actor;
    let caller = crate::access::authorize::<RevokeSdkToken>()?;
    let id = id
        .parse()
        .map_err(|_| AppError::invalid("id", "not a token id"))?;
    let portal = super::portal()?;
    Ok(domain::flags::SdkTokens::new(portal.pool.clone())
        .revoke(
            &project,
            id,
            Actor::of(caller.principal.as_ref()),
            &caller.origin,
        )
        .await?)
}

/// The person acting, for the environment rules (people only: tokens hold no role).
#[cfg(feature = "ssr")]
fn acting(caller: &domain::auth::Caller) -> Result<domain::environment::Acting, AppError> {
    let person = crate::access::person(caller)?;
    Ok(domain::environment::Acting::Person {
        name: person.username.clone(),
        role: person.role,
    })
}

/// Reads the optional "apply at" time of a form: RFC 3339, or the browser's
/// `datetime-local` (`2026-11-29T18:00`), taken as UTC as the page says.
#[cfg(feature = "ssr")]
fn parse_apply_at(text: &str) -> Result<Option<chrono::DateTime<chrono::Utc>>, AppError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    if let Ok(at) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(Some(at.with_timezone(&chrono::Utc)));
    }
    ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"]
        .iter()
        .find_map(|format| chrono::NaiveDateTime::parse_from_str(text, format).ok())
        .map(|at| Some(at.and_utc()))
        .ok_or_else(|| {
            AppError::invalid(
                "apply_at",
                format!("{text:?} is not a time like 2026-11-29T18:00 (UTC)"),
            )
        })
}

/// Applies one edit in one environment now, or stores it to wait for an approval (where the
/// environment requires one) or for its time.
#[cfg(feature = "ssr")]
async fn change(
    caller: &domain::auth::Caller,
    project: &str,
    environment: &str,
    flag: &str,
    edit: domain::flags::definition::EnvironmentEdit,
    apply_at: &str,
) -> Result<ChangeOutcome, AppError> {
    use domain::audit::Actor;
    use domain::flags::definition::FlagName;
    let apply_at = parse_apply_at(apply_at)?;
    let portal = super::portal()?;
    let store = &portal.flags;
    let env = store.environment(project, environment).await?.id;
    let flag = FlagName::parse(flag).map_err(|e| AppError::invalid("flag", e))?;
    let actor = Actor::of(caller.principal.as_ref());
    Ok(portal
        .flag_changes(store)
        .request(
            env,
            &flag,
            edit,
            &acting(caller)?,
            apply_at,
            actor,
            &caller.origin,
        )
        .await?)
}
