//! The services every request and background task shares, built once at start.

use crate::auth::{LoginThrottle, SessionPolicy, Sessions, Tokens, Users};
use crate::clock::SharedClock;
use crate::run::artifacts::ArtifactStore;
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
    /// Flags, segments and snapshots.
    pub flags: crate::flags::FlagStore,
    /// Artifact bytes: the local disk or an S3-compatible bucket.
    pub artifacts: ArtifactStore,
    /// Whether cookies get the `Secure` attribute (the portal is served over https).
    pub secure_cookies: bool,
    /// What time-driven work reads (the system's; tests move their own).
    pub clock: SharedClock,
}

impl Portal {
    pub fn new(
        pool: PgPool,
        secure_cookies: bool,
        artifacts: impl Into<ArtifactStore>,
        secrets: Secrets,
    ) -> Self {
        Portal {
            users: Users::new(pool.clone(), LoginThrottle::default()),
            sessions: Sessions::new(pool.clone(), SessionPolicy::default()),
            tokens: Tokens::new(pool.clone()),
            runs: Runs::new(pool.clone()),
            flags: crate::flags::FlagStore::new(pool.clone()),
            work: Work::new(pool.clone(), secrets, Duration::from_secs(LEASE_SECS)),
            artifacts: artifacts.into(),
            pool,
            secure_cookies,
            clock: crate::clock::system(),
        }
    }

    /// The same services on `clock` (tests move time instead of sleeping).
    pub fn with_clock(self, clock: SharedClock) -> Self {
        Portal {
            runs: self.runs.with_clock(clock.clone()),
            work: self.work.with_clock(clock.clone()),
            clock,
            ..self
        }
    }

    /// Flag changes that wait, on this portal's clock.
    pub fn flag_changes<'a>(
        &self,
        store: &'a crate::flags::FlagStore,
    ) -> crate::flags::change::FlagChanges<'a> {
        crate::flags::change::FlagChanges::new(store).with_clock(self.clock.clone())
    }
}
