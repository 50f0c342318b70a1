//! What the flag APIs serve from: every environment's newest flag snapshot and every live SDK
//! token, held in memory by each server process.
//!
//! Flag evaluation is the hot path of the shipped app, so no flag request touches the database.
//! The copies are loaded at start and kept current through the live-update listener: a new
//! snapshot (`topic: "flags"`) reloads that environment, a token created or revoked
//! (`"sdk_tokens"`) reloads the tokens, and a `resync` (the listener reconnected, or fell behind)
//! reloads everything. Postgres delivers the notification when the writing transaction commits,
//! so every replica has a change within milliseconds of it, whichever replica made it.
//!
//! Connected SDK streams subscribe to [`FlagCache::subscribe`] to hear that an environment
//! changed after its new snapshot is in place here.

use crate::live::{Change, LiveHub};
use bytes::Bytes;
use domain::auth::SdkPrincipal;
use domain::flags::store::EnvironmentId;
use domain::flags::{ClientFeatures, FeatureSet, FlagStore, SdkTokens, Versioned};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// How often a token's use is written to the database, at most, per server process.
const RECORD_USE_EVERY_SECS: i64 = 60;

/// One environment's flags, ready to serve.
pub struct EnvironmentFlags {
    /// The snapshot version (0: no flag was ever set here).
    pub version: i64,
    pub set: FeatureSet,
    /// The `/api/client/features` body.
    pub client_body: Bytes,
    /// The client body's ETag: its SHA-256, quoted.
    pub etag: String,
}

impl EnvironmentFlags {
    fn new(versioned: Versioned) -> Self {
        let client_body = Bytes::from(
            serde_json::to_vec(&versioned.state).expect("a ClientFeatures always serializes"),
        );
        EnvironmentFlags {
            version: versioned.version,
            etag: format!("\"{}\"", versioned.sha256),
            set: FeatureSet::from_client_features(versioned.state),
            client_body,
        }
    }

    fn empty() -> Self {
        let state = ClientFeatures {
            version: 2,
            features: Vec::new(),
            segments: Vec::new(),
            query: None,
            meta: None,
        };
        EnvironmentFlags::new(Versioned {
            version: 0,
            sha256: domain::flags::store::state_sha256(&state),
            state,
        })
    }
}

/// A live SDK token, found by the hash of its secret or by its stream ticket.
pub struct SdkTokenEntry {
    pub principal: SdkPrincipal,
    /// The ticket that opens the token's event stream (EventSource cannot send headers).
    pub ticket: String,
    last_recorded: AtomicI64,
}

impl SdkTokenEntry {
    /// True once a minute at most: the caller then writes the token's use.
    pub fn should_record_use(&self) -> bool {
        let now = chrono::Utc::now().timestamp();
        let last = self.last_recorded.load(Ordering::Relaxed);
        now - last >= RECORD_USE_EVERY_SECS
            && self
                .last_recorded
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

#[derive(Default)]
struct TokenIndex {
    by_id: HashMap<uuid::Uuid, Arc<SdkTokenEntry>>,
    by_hash: HashMap<Vec<u8>, Arc<SdkTokenEntry>>,
    by_ticket: HashMap<String, Arc<SdkTokenEntry>>,
}

/// An environment got a new snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnvironmentChanged {
    pub environment: EnvironmentId,
    pub version: i64,
}

#[derive(Clone)]
pub struct FlagCache {
    inner: Arc<Inner>,
}

struct Inner {
    store: FlagStore,
    sdk_tokens: SdkTokens,
    environments: RwLock<HashMap<EnvironmentId, Arc<EnvironmentFlags>>>,
    empty: Arc<EnvironmentFlags>,
    tokens: RwLock<Arc<TokenIndex>>,
    changed: broadcast::Sender<EnvironmentChanged>,
}

impl FlagCache {
    /// Loads every environment's flags and every live token, then keeps them current until
    /// `stop`. Subscribes to `live` first, so nothing that changes during the load is missed.
    pub async fn start(
        store: FlagStore,
        sdk_tokens: SdkTokens,
        live: &LiveHub,
        stop: CancellationToken,
    ) -> anyhow::Result<Self> {
        let changes = live.subscribe();
        let (changed, _) = broadcast::channel(256);
        let cache = FlagCache {
            inner: Arc::new(Inner {
                store,
                sdk_tokens,
                environments: RwLock::new(HashMap::new()),
                empty: Arc::new(EnvironmentFlags::empty()),
                tokens: RwLock::new(Arc::new(TokenIndex::default())),
                changed,
            }),
        };
        cache.reload_everything().await?;
        tokio::spawn(cache.clone().follow(changes, stop));
        Ok(cache)
    }

    /// The environment's flags (an empty set for one without any).
    pub fn environment(&self, id: EnvironmentId) -> Arc<EnvironmentFlags> {
        let environments = self.inner.environments.read().expect("not poisoned");
        environments
            .get(&id)
            .cloned()
            .unwrap_or_else(|| self.inner.empty.clone())
    }

    /// The live token with this secret (hashed as `domain::auth::Secret::hash` does, without
    /// copying the secret).
    pub fn token(&self, presented: &str) -> Option<Arc<SdkTokenEntry>> {
        let hash = Sha256::digest(presented.as_bytes());
        let tokens = self.inner.tokens.read().expect("not poisoned");
        tokens.by_hash.get(hash.as_slice()).cloned()
    }

    /// The live token whose stream ticket this is.
    pub fn token_by_ticket(&self, ticket: &str) -> Option<Arc<SdkTokenEntry>> {
        let tokens = self.inner.tokens.read().expect("not poisoned").clone();
        tokens.by_ticket.get(ticket).cloned()
    }

    /// The stream ticket of a live token.
    pub fn ticket_of(&self, token: uuid::Uuid) -> Option<String> {
        let tokens = self.inner.tokens.read().expect("not poisoned").clone();
        tokens.by_id.get(&token).map(|entry| entry.ticket.clone())
    }

    pub fn subscribe(&self) -> broadcast::Receiver<EnvironmentChanged> {
        self.inner.changed.subscribe()
    }

    pub fn sdk_tokens(&self) -> &SdkTokens {
        &self.inner.sdk_tokens
    }

    async fn follow(self, mut changes: broadcast::Receiver<Change>, stop: CancellationToken) {
        loop {
            let change = tokio::select! {
                _ = stop.cancelled() => return,
                change = changes.recv() => change,
            };
            let result = match change {
                Ok(change) if change.topic == "flags" => match change.environment_id() {
                    Some(environment) => self.reload_environment(environment).await,
                    None => self.reload_everything().await,
                },
                Ok(change) if change.topic == "sdk_tokens" => self.reload_tokens().await,
                Ok(change) if change.topic == "resync" => self.reload_everything().await,
                Ok(_) => Ok(()),
                Err(broadcast::error::RecvError::Lagged(_)) => self.reload_everything().await,
                Err(broadcast::error::RecvError::Closed) => return,
            };
            if let Err(error) = result {
                // The next resync (the listener reconnecting) loads everything again.
                tracing::warn!(%error, "could not refresh the in-memory flags");
            }
        }
    }

    async fn reload_everything(&self) -> anyhow::Result<()> {
        self.reload_tokens().await?;
        let all = self.inner.store.all_current().await?;
        let mut updated = Vec::new();
        for (environment, versioned) in all {
            if self.install(environment, versioned) {
                updated.push(environment);
            }
        }
        for environment in updated {
            self.announce(environment);
        }
        Ok(())
    }

    async fn reload_environment(&self, environment: EnvironmentId) -> anyhow::Result<()> {
        let versioned = match self.inner.store.current(environment).await {
            Ok(versioned) => versioned,
            // Deleted with its project: nothing to serve any more.
            Err(domain::flags::SnapshotError::UnknownEnvironment(_)) => {
                let mut environments = self.inner.environments.write().expect("not poisoned");
                environments.remove(&environment);
                return Ok(());
            }
            Err(other) => return Err(other.into()),
        };
        if self.install(environment, versioned) {
            self.announce(environment);
        }
        Ok(())
    }

    /// Puts a snapshot in place unless a newer one already is; true when it was.
    fn install(&self, environment: EnvironmentId, versioned: Versioned) -> bool {
        let current = self.environment(environment).version;
        if versioned.version <= current && current > 0 {
            return false;
        }
        let flags = Arc::new(EnvironmentFlags::new(versioned));
        let mut environments = self.inner.environments.write().expect("not poisoned");
        match environments.get(&environment) {
            Some(existing) if existing.version >= flags.version => false,
            _ => {
                environments.insert(environment, flags);
                true
            }
        }
    }

    fn announce(&self, environment: EnvironmentId) {
        let version = self.environment(environment).version;
        // Nobody listening is fine.
        let _ = self.inner.changed.send(EnvironmentChanged {
            environment,
            version,
        });
    }

    async fn reload_tokens(&self) -> anyhow::Result<()> {
        let live = self.inner.sdk_tokens.live().await?;
        let previous = self.inner.tokens.read().expect("not poisoned").clone();
        let last_recorded: HashMap<uuid::Uuid, i64> = previous
            .by_hash
            .values()
            .map(|e| (e.principal.id, e.last_recorded.load(Ordering::Relaxed)))
            .collect();
        let mut index = TokenIndex::default();
        for token in live {
            let entry = Arc::new(SdkTokenEntry {
                ticket: stream_ticket(&token.token_hash),
                last_recorded: AtomicI64::new(last_recorded.get(&token.id).copied().unwrap_or(0)),
                principal: SdkPrincipal {
                    id: token.id,
                    name: token.name,
                    kind: token.kind,
                    project_id: token.project_id,
                    project: token.project,
                    environment_id: token.environment_id.0,
                    environment: token.environment,
                },
            });
            index.by_ticket.insert(entry.ticket.clone(), entry.clone());
            index.by_id.insert(token.id, entry.clone());
            index.by_hash.insert(token.token_hash, entry);
        }
        *self.inner.tokens.write().expect("not poisoned") = Arc::new(index);
        Ok(())
    }
}

/// A token's stream ticket: derived from the stored hash, so it reveals nothing of the secret
/// and stops working when the token is revoked.
fn stream_ticket(token_hash: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"flightdeck flag stream ticket\0");
    hasher.update(token_hash);
    hex::encode(&hasher.finalize()[..20])
}
