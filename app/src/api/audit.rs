//! Reading the audit log.

use crate::error::AppError;
use domain::audit::{AuditFilter, AuditPage};
use leptos::prelude::*;

/// Entries per page of the audit log.
pub const PAGE_SIZE: i64 = 50;

#[server(prefix = "/fn", endpoint = "search_audit")]
pub async fn search_audit(#[server(default)] filter: AuditFilter) -> Result<AuditPage, AppError> {
    crate::access::authorize::<SearchAudit>()?;
    if filter
        .since
        .zip(filter.until)
        .is_some_and(|(since, until)| since > until)
    {
        return Err(AppError::invalid(
            "until",
            "the end of the time range is before its start",
        ));
    }
    Ok(domain::audit::search(&super::portal()?.pool, &filter, PAGE_SIZE).await?)
}
