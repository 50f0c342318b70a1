//! People and tokens, for admins.

use crate::error::AppError;
use domain::people::{NewToken, TokenSummary, UserSummary};
use leptos::prelude::*;

#[server(prefix = "/fn", endpoint = "list_users")]
pub async fn list_users() -> Result<Vec<UserSummary>, AppError> {
    crate::access::authorize::<ListUsers>()?;
    Ok(super::portal()?.users.list().await?)
}

#[server(prefix = "/fn", endpoint = "create_user")]
pub async fn create_user(
    username: String,
    display_name: String,
    role: String,
    password: String,
) -> Result<(), AppError> {
    use domain::audit::Actor;
    use domain::auth::NewUser;
    let caller = crate::access::authorize::<CreateUser>()?;
    let role = role.parse().map_err(|e| AppError::invalid("role", e))?;
    let new = NewUser {
        username: &username,
        display_name: &display_name,
        role,
        password: &password,
    };
    super::portal()?
        .users
        .create(new, Actor::of(caller.principal.as_ref()), &caller.origin)
        .await?;
    Ok(())
}

#[server(prefix = "/fn", endpoint = "set_user_role")]
pub async fn set_user_role(username: String, role: String) -> Result<(), AppError> {
    use domain::audit::Actor;
    let caller = crate::access::authorize::<SetUserRole>()?;
    let role = role.parse().map_err(|e| AppError::invalid("role", e))?;
    let actor = Actor::of(caller.principal.as_ref());
    if actor.name == username.trim().to_lowercase() {
        return Err(AppError::Conflict(
            "you cannot change your own role; ask another admin".into(),
        ));
    }
    super::portal()?
        .users
        .set_role(&username, role, actor, &caller.origin)
        .await?;
    Ok(())
}

#[server(prefix = "/fn", endpoint = "set_user_disabled")]
pub async fn set_user_disabled(username: String, disabled: bool) -> Result<(), AppError> {
    use domain::audit::Actor;
    let caller = crate::access::authorize::<SetUserDisabled>()?;
    let actor = Actor::of(caller.principal.as_ref());
    super::portal()?
        .users
        .set_disabled(&username, disabled, actor, &caller.origin)
        .await?;
    Ok(())
}

#[server(prefix = "/fn", endpoint = "reset_user_password")]
pub async fn reset_user_password(username: String, password: String) -> Result<(), AppError> {
    use domain::audit::Actor;
    let caller = crate::access::authorize::<ResetUserPassword>()?;
    let actor = Actor::of(caller.principal.as_ref());
    super::portal()?
        .users
        .reset_password(&username, &password, actor, &caller.origin)
        .await?;
    Ok(())
}

#[server(prefix = "/fn", endpoint = "list_tokens")]
pub async fn list_tokens() -> Result<Vec<TokenSummary>, AppError> {
    crate::access::authorize::<ListTokens>()?;
    Ok(super::portal()?.tokens.list().await?)
}

#[server(prefix = "/fn", endpoint = "create_token")]
pub async fn create_token(
    name: String,
    #[server(default)] scopes: Vec<String>,
    #[server(default)] expires_in_days: Option<u32>,
) -> Result<NewToken, AppError> {
    use domain::audit::{Actor, AuditRecord};
    use domain::auth::Scope;
    let caller = crate::access::authorize::<CreateToken>()?;
    let scopes = scopes
        .iter()
        .map(|s| s.parse::<Scope>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| AppError::invalid("scopes", e))?;
    if expires_in_days.is_some_and(|d| d == 0 || d > 3650) {
        return Err(AppError::invalid(
            "expires_in_days",
            "choose between 1 and 3650 days, or never",
        ));
    }
    let expires_at = expires_in_days.map(|d| chrono::Utc::now() + chrono::Duration::days(d.into()));
    let portal = super::portal()?;
    let creator = caller.principal.as_ref().map(|p| p.id());
    let token = portal
        .tokens
        .create(&name, &scopes, creator, expires_at)
        .await?;
    AuditRecord::new(Actor::of(caller.principal.as_ref()), "token.created", &caller.origin)
        .security()
        .target(&token.summary.name)
        .details(serde_json::json!({ "id": token.summary.id, "scopes": token.summary.scopes, "expires_at": expires_at }))
        .write(&portal.pool)
        .await?;
    Ok(token)
}

#[server(prefix = "/fn", endpoint = "revoke_token")]
pub async fn revoke_token(id: String) -> Result<(), AppError> {
    use domain::audit::{Actor, AuditRecord};
    let caller = crate::access::authorize::<RevokeToken>()?;
    let id = uuid::Uuid::parse_str(&id).map_err(|e| AppError::invalid("id", e))?;
    let portal = super::portal()?;
    if portal.tokens.revoke(id).await? {
        AuditRecord::new(
            Actor::of(caller.principal.as_ref()),
            "token.revoked",
            &caller.origin,
        )
        .security()
        .target(id.to_string())
        .write(&portal.pool)
        .await?;
    }
    Ok(())
}
