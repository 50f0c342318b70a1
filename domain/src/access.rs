//! Authorization in one place: what each route and server function needs, and the one function
//! that decides whether a caller has it.
//!
//! Every route and server function declares an [`Access`]. The HTTP layer looks it up before the
//! handler runs and refuses with 401 (nobody signed in) or 403 (signed in, not allowed); the
//! routes test walks every declared route as every role and as anonymous.

use crate::auth::{Principal, Scope};
use crate::flag_view::SdkTokenKind;
use crate::role::RoleSet;

/// What a caller needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, signed in or not (sign-in page, health checks, webhooks that verify their own
    /// signatures).
    Public,
    /// A person with one of these roles; or an API token with `token_scope`, when that is set.
    Signed {
        roles: RoleSet,
        token_scope: Option<Scope>,
    },
    /// A feature-flag SDK with an SDK token of one of these kinds (people and API tokens are
    /// refused). The token names the environment; handlers serve that environment only.
    Sdk(SdkKinds),
}

/// The SDK token kinds a flag API accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SdkKinds {
    /// The Unleash Frontend API: evaluated results for apps.
    Frontend,
    /// The Unleash client API: the rules, for server SDKs.
    Client,
    /// OFREP: both (web and mobile providers use frontend tokens, server providers client ones).
    Any,
}

impl SdkKinds {
    pub fn allows(self, kind: SdkTokenKind) -> bool {
        matches!(
            (self, kind),
            (SdkKinds::Any, _)
                | (SdkKinds::Frontend, SdkTokenKind::Frontend)
                | (SdkKinds::Client, SdkTokenKind::Client)
        )
    }
}

impl Access {
    /// People with one of these roles; tokens are refused.
    pub const fn people(roles: RoleSet) -> Self {
        Access::Signed {
            roles,
            token_scope: None,
        }
    }

    /// People with one of these roles, or tokens with this scope.
    pub const fn people_or_token(roles: RoleSet, scope: Scope) -> Self {
        Access::Signed {
            roles,
            token_scope: Some(scope),
        }
    }
}

/// Why a caller was refused. The message is shown to the person.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("Sign in to continue.")]
    Unauthenticated,
    #[error("{0}")]
    Forbidden(String),
}

/// The decision, as a pure function of the declaration and the caller.
pub fn decide(access: Access, caller: Option<&Principal>) -> Result<(), Denied> {
    let (roles, token_scope) = match access {
        Access::Public => return Ok(()),
        Access::Sdk(kinds) => return decide_sdk(kinds, caller),
        Access::Signed { roles, token_scope } => (roles, token_scope),
    };
    match caller {
        None => Err(Denied::Unauthenticated),
        Some(Principal::User(user)) if roles.allows(user.role) => Ok(()),
        Some(Principal::User(user)) => Err(Denied::Forbidden(format!(
            "This needs the {} role; you are signed in as {} ({}).",
            roles.describe(),
            user.username,
            user.role.label()
        ))),
        Some(Principal::Token(token)) => match token_scope {
            Some(scope) if token.scopes.contains(&scope) => Ok(()),
            Some(scope) => Err(Denied::Forbidden(format!(
                "The token `{}` lacks the `{scope}` scope this needs.",
                token.name
            ))),
            None => Err(Denied::Forbidden(format!(
                "API tokens cannot do this; sign in as a person with the {} role.",
                roles.describe()
            ))),
        },
        Some(Principal::Sdk(sdk)) => Err(Denied::Forbidden(format!(
            "The SDK token `{}` only reads feature flags.",
            sdk.name
        ))),
    }
}

fn decide_sdk(kinds: SdkKinds, caller: Option<&Principal>) -> Result<(), Denied> {
    match caller {
        None => Err(Denied::Unauthenticated),
        Some(Principal::Sdk(sdk)) if kinds.allows(sdk.kind) => Ok(()),
        Some(Principal::Sdk(sdk)) => Err(Denied::Forbidden(format!(
            "The SDK token `{}` is a {} token; this API takes {} tokens.",
            sdk.name,
            sdk.kind,
            match kinds {
                SdkKinds::Frontend => "frontend",
                SdkKinds::Client => "client",
                SdkKinds::Any => "SDK",
            }
        ))),
        Some(_) => Err(Denied::Forbidden(
            "This API takes an SDK token (`project:environment.secret`) in the Authorization header."
                .into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{TokenPrincipal, UserId, UserPrincipal};
    use crate::role::Role;
    use uuid::Uuid;

    fn person(role: Role) -> Principal {
        Principal::User(UserPrincipal {
            id: UserId(Uuid::nil()),
            username: "sam".into(),
            display_name: "Sam".into(),
            role,
            session_id: Uuid::nil(),
        })
    }

    fn token(scopes: &[Scope]) -> Principal {
        Principal::Token(TokenPrincipal {
            id: Uuid::nil(),
            name: "ci".into(),
            scopes: scopes.to_vec(),
        })
    }

    #[test]
    fn public_access_needs_nobody() {
        assert_eq!(decide(Access::Public, None), Ok(()));
    }

    #[test]
    fn anonymous_callers_must_sign_in() {
        assert_eq!(
            decide(Access::people(RoleSet::ANYONE), None),
            Err(Denied::Unauthenticated)
        );
    }

    #[test]
    fn a_viewer_is_refused_a_release_managers_action_with_the_reason() {
        let refused = decide(
            Access::people(RoleSet::RELEASE_MANAGERS),
            Some(&person(Role::Viewer)),
        );
        assert_eq!(
            refused,
            Err(Denied::Forbidden(
                "This needs the release manager or admin role; you are signed in as sam (viewer)."
                    .into()
            ))
        );
        assert_eq!(
            decide(
                Access::people(RoleSet::RELEASE_MANAGERS),
                Some(&person(Role::Admin))
            ),
            Ok(())
        );
    }

    #[test]
    fn tokens_need_the_declared_scope_and_are_refused_where_none_is_declared() {
        let access = Access::people_or_token(RoleSet::DEVELOPERS, Scope::DefinitionWrite);
        assert_eq!(
            decide(access, Some(&token(&[Scope::DefinitionWrite]))),
            Ok(())
        );
        assert!(decide(access, Some(&token(&[Scope::Read]))).is_err());
        assert!(
            decide(
                Access::people(RoleSet::ANYONE),
                Some(&token(&[Scope::Read]))
            )
            .is_err()
        );
    }
}
