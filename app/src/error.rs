//! The one error type of every server function, with the HTTP status it answers with.
//! Domain errors are mapped here, once; internal causes are logged, never shown.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};
use server_fn::codec::JsonEncoding;
use server_fn::error::{FromServerFnError, ServerFnErrorErr};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum AppError {
    /// Nobody is signed in (401).
    #[error("sign in to continue")]
    Unauthenticated,
    /// Signed in without the role this needs (403). The message says which role.
    #[error("{0}")]
    Forbidden(String),
    /// An input is wrong (422): which one and why.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("{0}")]
    NotFound(String),
    /// The change conflicts with the current state (409).
    #[error("{0}")]
    Conflict(String),
    /// A sign-in with a wrong username or password (401); which of the two is not said.
    #[error("The username or the password is wrong. Check both and try again.")]
    SignInRefused,
    /// Too many attempts (429).
    #[error("{message}")]
    TooManyRequests {
        message: String,
        retry_after_secs: u64,
    },
    /// Something failed on the server; the cause is in the server log.
    #[error("something went wrong on the server; the error was logged")]
    Internal,
    /// The request never reached the function (network, encoding).
    #[error("{0}")]
    Transport(String),
}

impl AppError {
    pub fn invalid(field: &str, message: impl std::fmt::Display) -> Self {
        AppError::Invalid {
            field: field.to_string(),
            message: message.to_string(),
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            AppError::Unauthenticated | AppError::SignInRefused => 401,
            AppError::Forbidden(_) => 403,
            AppError::Invalid { .. } => 422,
            AppError::NotFound(_) => 404,
            AppError::Conflict(_) => 409,
            AppError::TooManyRequests { .. } => 429,
            AppError::Internal => 500,
            AppError::Transport(_) => 400,
        }
    }
}

impl FromServerFnError for AppError {
    type Encoder = JsonEncoding;

    fn from_server_fn_error(value: ServerFnErrorErr) -> Self {
        AppError::Transport(value.to_string())
    }
}

#[cfg(feature = "ssr")]
mod ssr {
    use super::AppError;
    use domain::access::Denied;
    use domain::auth::{LoginError, PasswordError, SetupLinkError, TokenError, UserError};

    impl AppError {
        /// Logs an unexpected failure and hides it behind `Internal`.
        pub fn internal(cause: impl std::fmt::Display) -> Self {
            tracing::error!(error = %cause, "server function failed");
            AppError::Internal
        }
    }

    impl From<sqlx::Error> for AppError {
        fn from(e: sqlx::Error) -> Self {
            AppError::internal(e)
        }
    }

    impl From<Denied> for AppError {
        fn from(d: Denied) -> Self {
            match d {
                Denied::Unauthenticated => AppError::Unauthenticated,
                Denied::Forbidden(m) => AppError::Forbidden(m),
            }
        }
    }

    impl From<UserError> for AppError {
        fn from(e: UserError) -> Self {
            match e {
                UserError::Username(e) => AppError::invalid("username", e),
                UserError::Password(e) => AppError::invalid("password", e),
                UserError::DisplayName => AppError::invalid("display_name", e),
                UserError::Taken(_) => AppError::Conflict(e.to_string()),
                UserError::NotFound(_) => AppError::NotFound(e.to_string()),
                UserError::OwnAccount(_) | UserError::LastAdmin(_) => {
                    AppError::Conflict(e.to_string())
                }
                UserError::Database(e) => AppError::internal(e),
            }
        }
    }

    impl From<PasswordError> for AppError {
        fn from(e: PasswordError) -> Self {
            AppError::invalid("password", e)
        }
    }

    impl From<LoginError> for AppError {
        fn from(e: LoginError) -> Self {
            match e {
                LoginError::Invalid => AppError::SignInRefused,
                LoginError::Throttled { retry_after_secs } => AppError::TooManyRequests {
                    message: e.to_string(),
                    retry_after_secs,
                },
                LoginError::Database(e) => AppError::internal(e),
            }
        }
    }

    impl From<SetupLinkError> for AppError {
        fn from(e: SetupLinkError) -> Self {
            match e {
                SetupLinkError::Invalid => AppError::Forbidden(e.to_string()),
                SetupLinkError::User(e) => e.into(),
                SetupLinkError::Database(e) => AppError::internal(e),
            }
        }
    }

    impl From<TokenError> for AppError {
        fn from(e: TokenError) -> Self {
            match e {
                TokenError::BadName => AppError::invalid("name", e),
                TokenError::NoScopes | TokenError::UnknownScope(_) => {
                    AppError::invalid("scopes", e)
                }
                TokenError::NotFound(_) => AppError::NotFound(e.to_string()),
                TokenError::Database(e) => AppError::internal(e),
            }
        }
    }

    impl From<domain::flags::store::FlagError> for AppError {
        fn from(e: domain::flags::store::FlagError) -> Self {
            use domain::flags::store::FlagError as E;
            match e {
                E::UnknownProject { .. }
                | E::NoSuchEnvironment { .. }
                | E::UnknownEnvironment(_)
                | E::UnknownFlag { .. }
                | E::UnknownSegment { .. } => AppError::NotFound(e.to_string()),
                E::FlagExists { .. }
                | E::Archived(_)
                | E::HasChildren { .. }
                | E::SegmentExists { .. }
                | E::SegmentInUse { .. } => AppError::Conflict(e.to_string()),
                E::InvalidDependency { .. } => AppError::invalid("dependencies", e),
                E::BadSegmentName => AppError::invalid("name", e),
                E::BadSetting { .. } => AppError::invalid("flags", e),
                E::TooLong { field, .. } => AppError::invalid(field, e),
                E::InvalidDefinition(issues) => AppError::invalid("definition", issues),
                E::Database(e) => AppError::internal(e),
            }
        }
    }

    impl From<domain::flags::SnapshotError> for AppError {
        fn from(e: domain::flags::SnapshotError) -> Self {
            use domain::flags::SnapshotError as E;
            match e {
                E::UnknownEnvironment(_) | E::UnknownSnapshot { .. } => {
                    AppError::NotFound(e.to_string())
                }
                E::Database(e) => AppError::internal(e),
                other => AppError::invalid("snapshot", other),
            }
        }
    }

    impl From<domain::flags::change::ChangeError> for AppError {
        fn from(e: domain::flags::change::ChangeError) -> Self {
            use domain::flags::change::ChangeError as E;
            match e {
                E::Flag(e) => e.into(),
                E::NotFound(_) => AppError::NotFound(e.to_string()),
                E::OwnChange => AppError::Forbidden(e.to_string()),
                E::NotOpen(_) => AppError::Conflict(e.to_string()),
                E::Reason(_) => AppError::invalid("reason", e),
                E::BadTime(_) => AppError::invalid("apply_at", e),
                E::KillWaits => AppError::invalid("apply_at", e),
                E::Refused(_) => AppError::Forbidden(e.to_string()),
                E::Environment(domain::environment::EnvironmentError::Database(e)) => {
                    AppError::internal(e)
                }
                E::Environment(e) => AppError::NotFound(e.to_string()),
                E::Database(e) => AppError::internal(e),
            }
        }
    }

    impl From<domain::flags::SdkTokenError> for AppError {
        fn from(e: domain::flags::SdkTokenError) -> Self {
            use domain::flags::SdkTokenError as E;
            match e {
                E::BadName => AppError::invalid("name", e),
                E::NoSuchEnvironment { .. } | E::NotFound(_) => AppError::NotFound(e.to_string()),
                E::Database(e) => AppError::internal(e),
            }
        }
    }
}
