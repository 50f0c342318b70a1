//! The services every request and background task shares, built once at start.

use crate::auth::{LoginThrottle, SessionPolicy, Sessions, Tokens, Users};
use crate::run::artifacts::LocalDisk;
use crate::run::protocol::LEASE_SECS;
use crate::run::store::Runs;
use crate::run::work::{Secrets, Work};
use sqlx::PgPool;
use std::time::Duration;

#[derive(Clone)]
pub struct Portal {
    pub pool: PgPool,
    pub users: Users,
    pub sessions: Sessions,
    pub tokens: Tokens,
    pub runs: Runs,
    pub work: Work,
    pub artifacts: LocalDisk,
    /// Whether cookies get the `Secure` attribute (the portal is served over https).
    pub secure_cookies: bool,
}

impl Portal {
    pub fn new(pool: PgPool, secure_cookies: bool, artifacts: LocalDisk, secrets: Secrets) -> Self {
        Portal {
            users: Users::new(pool.clone(), LoginThrottle::default()),
            sessions: Sessions::new(pool.clone(), SessionPolicy::default()),
            tokens: Tokens::new(pool.clone()),
            runs: Runs::new(pool.clone()),
            work: Work::new(pool.clone(), secrets, Duration::from_secs(LEASE_SECS)),
            artifacts,
            pool,
            secure_cookies,
        }
    }
}
