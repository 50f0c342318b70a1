//! The flags page's data and actions. Who may change flags in an environment is its protection's
//! roles (admins always); the store writes the change, its snapshot and its audit entry in one
//! transaction.

use crate::error::AppError;
use domain::flag_view::{FlagsPage, HistoryEntry, NewSdkToken, RestoreOutcome, SdkTokenSummary};
use leptos::prelude::*;

/// How many snapshots the history shows.
pub const HISTORY_LENGTH: i64 = 30;

#[server(prefix = "/fn", endpoint = "get_flags")]
pub async fn get_flags(project: String, environment: String) -> Result<FlagsPage, AppError> {
    let caller = crate::access::authorize::<GetFlags>()?;
    let person = crate::access::person(&caller)?;
    let portal = super::portal()?;
    let store = domain::flags::FlagStore::new(portal.pool.clone());
    Ok(domain::flags::page::flags_page(&store, &project, &environment, person.role).await?)
}

#[server(prefix = "/fn", endpoint = "get_flag_history")]
pub async fn get_flag_history(
    project: String,
    environment: String,
) -> Result<Vec<HistoryEntry>, AppError> {
    crate::access::authorize::<GetFlagHistory>()?;
    let portal = super::portal()?;
    let store = domain::flags::FlagStore::new(portal.pool.clone());
    let env = store.environment(&project, &environment).await?;
    Ok(domain::flags::page::history(&store, env.id, HISTORY_LENGTH).await?)
}

/// Turns a flag on or off. `kill` is the kill switch: off, audited as an emergency stop.
#[server(prefix = "/fn", endpoint = "set_flag_enabled")]
pub async fn set_flag_enabled(
    project: String,
    environment: String,
    flag: String,
    enabled: bool,
    #[server(default)] kill: bool,
) -> Result<bool, AppError> {
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
    change(&caller, &project, &environment, &flag, edit).await
}

/// Sets a flag's gradual rollout: one strategy, `rollout` % of users by `stickiness`.
#[server(prefix = "/fn", endpoint = "set_flag_rollout")]
pub async fn set_flag_rollout(
    project: String,
    environment: String,
    flag: String,
    rollout: u8,
    stickiness: String,
) -> Result<bool, AppError> {
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
    change(
        &caller,
        &project,
        &environment,
        &flag,
        EnvironmentEdit::Strategies { strategies },
    )
    .await
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
) -> Result<bool, AppError> {
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
    let first = change(
        &caller,
        &project,
        &environment,
        &flag,
        EnvironmentEdit::Strategies { strategies },
    )
    .await?;
    let second = change(
        &caller,
        &project,
        &environment,
        &flag,
        EnvironmentEdit::Variants { variants },
    )
    .await?;
    Ok(first || second)
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
    let store = domain::flags::FlagStore::new(portal.pool.clone());
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
    let store = domain::flags::FlagStore::new(portal.pool.clone());
    let env = check_may_change(&caller, &store, &project, &environment).await?;
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

/// Checks that the person may change flags in this environment; returns its id.
#[cfg(feature = "ssr")]
async fn check_may_change(
    caller: &domain::auth::Caller,
    store: &domain::flags::FlagStore,
    project: &str,
    environment: &str,
) -> Result<domain::flags::store::EnvironmentId, AppError> {
    let person = crate::access::person(caller)?;
    let env = store.environment(project, environment).await?;
    let (allowed, who) =
        domain::flags::page::may_change(store.pool(), project, environment, person.role).await?;
    if !allowed {
        return Err(AppError::Forbidden(format!(
            "Flags in {environment} are changed by the {who} role; you are signed in as {} ({}).",
            person.username,
            person.role.label()
        )));
    }
    Ok(env.id)
}

/// Applies one edit in one environment; true when something changed.
#[cfg(feature = "ssr")]
async fn change(
    caller: &domain::auth::Caller,
    project: &str,
    environment: &str,
    flag: &str,
    edit: domain::flags::definition::EnvironmentEdit,
) -> Result<bool, AppError> {
    use domain::audit::Actor;
    use domain::flags::definition::FlagName;
    let portal = super::portal()?;
    let store = domain::flags::FlagStore::new(portal.pool.clone());
    let env = check_may_change(caller, &store, project, environment).await?;
    let flag = FlagName::parse(flag).map_err(|e| AppError::invalid("flag", e))?;
    let applied = store
        .apply(
            env,
            &flag,
            edit,
            Actor::of(caller.principal.as_ref()),
            &caller.origin,
        )
        .await?;
    Ok(applied.changed())
}
