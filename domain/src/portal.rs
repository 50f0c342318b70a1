//! The services every request and background task shares, built once at start.

use crate::auth::{LoginThrottle, SessionPolicy, Sessions, Tokens, Users};
use sqlx::PgPool;

#[derive(Clone)]
pub struct Portal {
    pub pool: PgPool,
    pub users: Users,
    pub sessions: Sessions,
    pub tokens: Tokens,
    /// Whether cookies get the `Secure` attribute (the portal is served over https).
    pub secure_cookies: bool,
}

impl Portal {
    pub fn new(pool: PgPool, secure_cookies: bool) -> Self {
        Portal {
            users: Users::new(pool.clone(), LoginThrottle::default()),
            sessions: Sessions::new(pool.clone(), SessionPolicy::default()),
            tokens: Tokens::new(pool.clone()),
            pool,
            secure_cookies,
        }
    }
}
