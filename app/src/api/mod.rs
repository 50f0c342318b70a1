//! Server functions: thin. Each checks the caller against `crate::access`, validates its input,
//! calls the domain, and audits what it changed (the domain writes the audit entry in the same
//! transaction as the change).

pub mod admin;
pub mod audit;
pub mod flags;
pub mod overview;
pub mod releases;
pub mod runs;
pub mod session;

#[cfg(feature = "ssr")]
pub(crate) fn portal() -> Result<domain::portal::Portal, crate::error::AppError> {
    leptos::prelude::use_context::<domain::portal::Portal>()
        .ok_or_else(|| crate::error::AppError::internal("the portal context is missing"))
}
