//! One running server: its HTTP surface, live updates, the flag cache, the refusal writer, the
//! background services and (when asked) the built-in runner, started and stopped in one order.
//! `flightdeck serve` and the tests build it through the same [`Instance::start`], so what the
//! tests exercise is what runs, background services included.
//!
//! Stopping: new requests stop and streams end first; requests in flight get a drain period;
//! then the built-in runner's unfinished jobs are abandoned (their leases run out and they go
//! back to the queue); then the listeners stop, and the refusal writer writes what it counted.

use crate::flag_cache::FlagCache;
use crate::http::assets::{PKG_DIR, Site};
use crate::http::refusals::Refusals;
use crate::http::{self, AppState, AppStateParts};
use crate::live::LiveHub;
use crate::sites::SiteCache;
use anyhow::Context;
use axum::serve::ListenerExt;
use domain::auth::Scope;
use domain::flags::SdkTokens;
use domain::portal::Portal;
use leptos::prelude::LeptosOptions;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// What a server is made of; everything else is derived.
pub struct InstanceConfig {
    /// Bound already, so the caller knows the address (port 0 in tests) before anything starts.
    pub listener: TcpListener,
    /// The address people use (behind a proxy); defaults to the listener's.
    pub public_url: Option<String>,
    /// The built site (the wasm, its JS, the stylesheet), checked against this binary's build.
    pub site: Site,
    /// The domain services, on the clock time-driven work reads.
    pub portal: Portal,
    /// The secret GitHub signs webhook deliveries with; webhooks are off without one.
    pub webhook_secret: Option<String>,
    /// The runner built into the server, if on.
    pub local_runner: Option<LocalRunner>,
    /// What deployments change outside Flightdeck: environments' databases, sites and flags.
    pub world: crate::deployer::world::World,
    /// This replica's own files: the environments' sites unpacked under `sites/`.
    pub data_dir: PathBuf,
}

/// The built-in runner's settings.
pub struct LocalRunner {
    pub labels: Vec<String>,
    /// Its workspaces live under `<data_dir>/runner`.
    pub data_dir: PathBuf,
}

/// A server that is running.
pub struct Instance {
    pub addr: SocketAddr,
    pub public_url: String,
    pub portal: Portal,
    /// Every environment's site as this replica serves it (the deployer materialises a version
    /// here before it switches).
    pub sites: SiteCache,
    /// Cancelled when stopping starts: streams end, readiness turns false, services stop.
    shutdown: CancellationToken,
    /// Cancelled last: live updates, the flag cache's listener and the refusal writer.
    stop_listeners: CancellationToken,
    runner_stop: CancellationToken,
    runner_abort: CancellationToken,
    server: JoinHandle<std::io::Result<()>>,
    services: Vec<JoinHandle<()>>,
    local_runner: Option<JoinHandle<()>>,
    refusal_writer: JoinHandle<()>,
}

impl Instance {
    /// Starts everything and returns once the server answers and hears live updates.
    pub async fn start(config: InstanceConfig) -> anyhow::Result<Instance> {
        let portal = config.portal;
        let pool = portal.pool.clone();
        let addr = config.listener.local_addr()?;
        let public_url = config
            .public_url
            .unwrap_or_else(|| format!("http://{addr}"));

        let shutdown = CancellationToken::new();
        let stop_listeners = CancellationToken::new();
        let live = LiveHub::start(pool.clone(), stop_listeners.clone());
        let flags = FlagCache::start(
            portal.flags.clone(),
            SdkTokens::new(pool.clone()),
            &live,
            stop_listeners.clone(),
        )
        .await
        .context("cannot load the feature flags")?;
        let sites = SiteCache::start(
            pool.clone(),
            portal.artifacts.clone(),
            &config.data_dir,
            &live,
            stop_listeners.clone(),
        )
        .await
        .context("cannot load the environments' sites")?;
        let (refusals, refusal_writer) = Refusals::start(pool.clone(), stop_listeners.clone());
        let leptos_options = LeptosOptions::builder()
            .output_name("flightdeck")
            .site_root(config.site.root.to_string_lossy().to_string())
            .site_pkg_dir(PKG_DIR)
            .hash_files(config.site.hashes_names())
            .site_addr(addr)
            .build();
        let world = crate::deployer::world::World {
            sites: Some(sites.clone()),
            ..config.world
        };
        let state = AppState::new(AppStateParts {
            database_preview: world.databases.as_ref().map(|_| {
                Arc::new(crate::deployer::RollbackDatabasePreview {
                    portal: portal.clone(),
                    world: world.clone(),
                }) as Arc<dyn domain::deployment::rollback::DatabasePreview>
            }),
            leptos_options,
            site: config.site,
            portal: portal.clone(),
            live: live.clone(),
            flags,
            sites: sites.clone(),
            refusals,
            access: Arc::new(http::access_table()?),
            shutdown: shutdown.clone(),
            webhook_secret: config.webhook_secret.as_deref().map(Arc::from),
        });
        let mut services = crate::engine::start(portal.clone(), shutdown.clone());
        services.push(
            crate::deployer::Deployer {
                portal: portal.clone(),
                driver: uuid::Uuid::new_v4(),
                public_url: public_url.clone(),
                world,
            }
            .start(&live, shutdown.clone()),
        );

        // Pages stream in several writes; without TCP_NODELAY each waits out the client's
        // delayed ACK.
        let listener = config.listener.tap_io(|tcp| {
            if let Err(error) = tcp.set_nodelay(true) {
                tracing::debug!(%error, "could not set TCP_NODELAY");
            }
        });
        let app = http::router(state);
        let server = tokio::spawn({
            let shutdown = shutdown.clone();
            async move {
                axum::serve(
                    listener,
                    app.into_make_service_with_connect_info::<SocketAddr>(),
                )
                .with_graceful_shutdown(async move { shutdown.cancelled().await })
                .await
            }
        });

        let runner_stop = CancellationToken::new();
        let runner_abort = CancellationToken::new();
        let local_runner = match config.local_runner {
            Some(runner) => Some(
                start_local_runner(
                    &portal,
                    &addr,
                    runner,
                    runner_stop.clone(),
                    runner_abort.clone(),
                )
                .await?,
            ),
            None => None,
        };

        // Ready means hearing live updates too: a change made right after start is not missed.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !live.is_listening() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }

        Ok(Instance {
            addr,
            public_url,
            portal,
            sites,
            shutdown,
            stop_listeners,
            runner_stop,
            runner_abort,
            server,
            services,
            local_runner,
            refusal_writer,
        })
    }

    /// Waits until the HTTP server ends on its own (it only does on an error).
    pub async fn failed(&mut self) -> anyhow::Error {
        match (&mut self.server).await {
            Ok(Ok(())) => anyhow::anyhow!("the HTTP server stopped"),
            Ok(Err(error)) => anyhow::Error::new(error).context("the HTTP server failed"),
            Err(error) => anyhow::Error::new(error).context("the HTTP server panicked"),
        }
    }

    /// Tells every part to stop and returns at once (for a test that drops its server; what the
    /// refusal writer still counts may be lost).
    pub fn stop_without_waiting(&self) {
        self.runner_stop.cancel();
        self.shutdown.cancel();
        self.runner_abort.cancel();
        self.stop_listeners.cancel();
    }

    /// Stops in order (see the module doc), giving requests in flight `drain` to finish.
    pub async fn stop(self, drain: Duration) {
        // The built-in runner takes no new jobs from here on.
        self.runner_stop.cancel();
        self.shutdown.cancel();
        if !self.server.is_finished() {
            match tokio::time::timeout(drain, self.server).await {
                Ok(Ok(Err(error))) => tracing::warn!(%error, "the HTTP server failed"),
                Ok(_) => {}
                Err(_) => tracing::warn!("requests still running after {drain:?}; stopping anyway"),
            }
        }
        for service in self.services {
            let _ = service.await;
        }
        // Jobs the built-in runner still runs are stopped unfinished; their leases run out and
        // they go back to the queue for the next server or runner.
        self.runner_abort.cancel();
        if let Some(runner) = self.local_runner {
            let _ = tokio::time::timeout(Duration::from_secs(10), runner).await;
        }
        self.stop_listeners.cancel();
        if let Err(error) = self.refusal_writer.await {
            tracing::warn!(%error, "the refusal writer failed");
        }
    }
}

/// The runner built into the server: the same code as `flightdeck runner`, talking to this
/// server over HTTP with a token made for it at each start. Each server process has its own
/// identity (host and port), so a second replica on the same host neither revokes this one's
/// token nor takes over its runner; a restart of the same server revokes its own old token.
async fn start_local_runner(
    portal: &Portal,
    addr: &SocketAddr,
    runner: LocalRunner,
    stop: CancellationToken,
    abort: CancellationToken,
) -> anyhow::Result<JoinHandle<()>> {
    let host = host_name();
    let token_name = format!("built-in runner on {host}:{}", addr.port());
    for old in portal.tokens.list().await? {
        if old.name == token_name && old.revoked_at.is_none() {
            portal
                .tokens
                .revoke(uuid::Uuid::parse_str(&old.id)?)
                .await?;
        }
    }
    let token = portal
        .tokens
        .create(&token_name, &[Scope::Runner], None, None)
        .await?;
    let url = if addr.ip().is_unspecified() {
        format!("http://127.0.0.1:{}", addr.port())
    } else {
        format!("http://{addr}")
    };
    let mut config = crate::runner::RunnerConfig::new(
        url,
        token.secret,
        format!("{host}-local-{}", addr.port()),
        runner.labels,
        runner.data_dir.join("runner"),
    );
    config.abort = abort;
    Ok(tokio::spawn(async move {
        if let Err(error) = crate::runner::run(config, stop).await {
            tracing::error!(error = %format!("{error:#}"), "the built-in runner stopped");
        }
    }))
}

/// This machine's name, as runners call themselves by default.
pub fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .unwrap_or_else(|| "localhost".to_string())
}
