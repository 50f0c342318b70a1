//! Who is calling: people with passwords and sessions, and API tokens for machines.
//!
//! A request carries either a session cookie (a person in a browser) or an API token in the
//! `Authorization` header (CI, runners, SDKs). Both resolve to a [`Principal`]; what it may do is
//! decided in [`crate::access`].

mod password;
mod principal;
mod secret;
mod session;
pub(crate) mod token;
mod user;

pub use crate::scope::{Scope, UnknownScope};
pub use password::{Password, PasswordError};
pub use principal::{Caller, Principal, SdkPrincipal, TokenPrincipal, UserPrincipal};
pub use secret::Secret;
pub use session::{SessionError, SessionPolicy, Sessions};
pub use token::{AuthenticatedToken, TokenError, Tokens};
pub use user::{
    LoginError, LoginThrottle, NewUser, SetupLinkError, SignedIn, UserError, UserId, Username,
    UsernameError, Users,
};
