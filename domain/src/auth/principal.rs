//! The caller of a request once its cookie or token has been checked.

use super::user::UserId;
use crate::flag_view::SdkTokenKind;
use crate::role::Role;
use crate::scope::Scope;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A person signed in through the browser.
    User(UserPrincipal),
    /// A machine holding an API token.
    Token(TokenPrincipal),
    /// A feature-flag SDK holding an SDK token for one environment.
    Sdk(SdkPrincipal),
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

/// An SDK token's holder: which environment of which project it may read flags of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdkPrincipal {
    pub id: Uuid,
    pub name: String,
    pub kind: SdkTokenKind,
    pub project_id: Uuid,
    pub project: String,
    pub environment_id: Uuid,
    pub environment: String,
}

impl Principal {
    /// The name the audit log records.
    pub fn name(&self) -> &str {
        match self {
            Principal::User(user) => &user.username,
            Principal::Token(token) => &token.name,
            Principal::Sdk(sdk) => &sdk.name,
        }
    }

    pub fn actor_kind(&self) -> &'static str {
        match self {
            Principal::User(_) => "user",
            Principal::Token(_) => "token",
            // An SDK token is a token to the audit log; its name says which.
            Principal::Sdk(_) => "token",
        }
    }

    pub fn id(&self) -> Uuid {
        match self {
            Principal::User(user) => user.id.0,
            Principal::Token(token) => token.id,
            Principal::Sdk(sdk) => sdk.id,
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
