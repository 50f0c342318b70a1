//! The caller of a request once its cookie or token has been checked.

use super::user::UserId;
use crate::role::Role;
use crate::scope::Scope;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A person signed in through the browser.
    User(UserPrincipal),
    /// A machine holding an API token.
    Token(TokenPrincipal),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserPrincipal {
    pub id: UserId,
    pub username: String,
    pub display_name: String,
    pub role: Role,
    pub session_id: Uuid,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenPrincipal {
    pub id: Uuid,
    pub name: String,
    pub scopes: Vec<Scope>,
}

impl Principal {
    /// The name the audit log records.
    pub fn name(&self) -> &str {
        match self {
            Principal::User(user) => &user.username,
            Principal::Token(token) => &token.name,
        }
    }

    pub fn actor_kind(&self) -> &'static str {
        match self {
            Principal::User(_) => "user",
            Principal::Token(_) => "token",
        }
    }

    pub fn id(&self) -> Uuid {
        match self {
            Principal::User(user) => user.id.0,
            Principal::Token(token) => token.id,
        }
    }
}

/// The caller of one request and where it came from, attached to the request by the HTTP layer
/// and read by handlers and server functions.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    pub principal: Option<Principal>,
    pub origin: crate::audit::Origin,
}
