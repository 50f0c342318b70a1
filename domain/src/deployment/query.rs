//! Deployments as pages read them (see `crate::release_view`).
