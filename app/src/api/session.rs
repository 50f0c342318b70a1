//! Signing in and out, and the one-time setup of the first admin.

use crate::error::AppError;
use domain::people::Me;
use leptos::prelude::*;

/// The cookie that carries a browser session.
pub const SESSION_COOKIE: &str = "flightdeck_session";

#[server(prefix = "/fn", endpoint = "current_user")]
pub async fn current_user() -> Result<Option<Me>, AppError> {
    use domain::auth::Principal;
    let caller = crate::access::authorize::<CurrentUser>()?;
    Ok(match caller.principal {
        Some(Principal::User(user)) => Some(Me {
            username: user.username,
            display_name: user.display_name,
            role: user.role,
        }),
        _ => None,
    })
}

#[server(prefix = "/fn", endpoint = "login")]
pub async fn login(
    username: String,
    password: String,
    next: Option<String>,
) -> Result<(), AppError> {
    use domain::audit::{Actor, AuditRecord};
    let caller = crate::access::authorize::<Login>()?;
    let portal = super::portal()?;
    if username.trim().is_empty() {
        return Err(AppError::invalid("username", "enter your username"));
    }
    let signed_in = portal
        .users
        .login(&username, &password, &caller.origin)
        .await?;
    let secret = portal
        .sessions
        .start(signed_in.id, &caller.origin)
        .await
        .map_err(AppError::internal)?;
    AuditRecord::new(
        Actor {
            kind: "user",
            id: Some(signed_in.id.0),
            name: signed_in.username.clone(),
        },
        "session.login",
        &caller.origin,
    )
    .security()
    .target(&signed_in.username)
    .write(&portal.pool)
    .await?;
    let max_age = portal.sessions.policy().absolute.num_seconds();
    set_cookie(
        &format!("{SESSION_COOKIE}={}; Max-Age={max_age}", secret.expose()),
        portal.secure_cookies,
    );
    leptos_axum::redirect(&safe_next(next.as_deref()));
    Ok(())
}

#[server(prefix = "/fn", endpoint = "logout")]
pub async fn logout() -> Result<(), AppError> {
    use domain::audit::{Actor, AuditRecord};
    let caller = crate::access::authorize::<Logout>()?;
    let user = crate::access::person(&caller)?;
    let portal = super::portal()?;
    portal
        .sessions
        .end(user.session_id)
        .await
        .map_err(AppError::internal)?;
    AuditRecord::new(
        Actor::of(caller.principal.as_ref()),
        "session.logout",
        &caller.origin,
    )
    .security()
    .write(&portal.pool)
    .await?;
    set_cookie(
        &format!("{SESSION_COOKIE}=; Max-Age=0"),
        portal.secure_cookies,
    );
    leptos_axum::redirect("/login");
    Ok(())
}

#[server(prefix = "/fn", endpoint = "complete_setup")]
pub async fn complete_setup(
    link: String,
    username: String,
    display_name: String,
    password: String,
    confirm: String,
) -> Result<(), AppError> {
    use domain::auth::NewUser;
    use domain::role::Role;
    let caller = crate::access::authorize::<CompleteSetup>()?;
    if password != confirm {
        return Err(AppError::invalid("confirm", "the two passwords differ"));
    }
    let portal = super::portal()?;
    let new = NewUser {
        username: &username,
        display_name: &display_name,
        role: Role::Admin,
        password: &password,
    };
    portal
        .users
        .complete_setup(&link, new, &caller.origin)
        .await?;
    leptos_axum::redirect("/login?created=1");
    Ok(())
}

/// Only same-site paths are followed after sign-in, so a crafted link cannot send a person
/// elsewhere.
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(path) if path.starts_with('/') && !path.starts_with("//") && !path.contains('\\') => {
            path.to_string()
        }
        _ => "/".to_string(),
    }
}

#[cfg(feature = "ssr")]
fn set_cookie(value: &str, secure: bool) {
    use http::header::{HeaderValue, SET_COOKIE};
    let secure = if secure { "; Secure" } else { "" };
    let cookie = format!("{value}; Path=/; HttpOnly; SameSite=Lax{secure}");
    if let (Some(options), Ok(header)) = (
        use_context::<leptos_axum::ResponseOptions>(),
        HeaderValue::from_str(&cookie),
    ) {
        options.append_header(SET_COOKIE, header);
    }
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn only_local_paths_are_followed_after_sign_in() {
        assert_eq!(safe_next(Some("/admin")), "/admin");
        assert_eq!(safe_next(Some("//evil.example")), "/");
        assert_eq!(safe_next(Some("https://evil.example")), "/");
        assert_eq!(safe_next(None), "/");
    }
}
