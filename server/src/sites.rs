//! Every environment's site, served by every replica at the environment's path (`/env/staging/`)
//! from memory and local disk: these routes are public, so answering one costs no database
//! query, and refusing one costs nothing.
//!
//! [`SiteCache`] loads every environment's pointer at start and follows the `site` changes the
//! live-update listener hears (its reconnect `resync` reloads everything, as the flag cache
//! does):
//! - a version is *prepared* (`site_version` inserted): it is fetched and unpacked in the
//!   background, so its switch later is only a pointer swap;
//! - a pointer *switches* (`environment_site`): the version is materialised if it is not yet
//!   (fetched, verified against its sha256, unpacked into `<data_dir>/sites/<version>` through a
//!   `.tmp` directory — see `domain::site`), then the environment's entry in memory is swapped.
//!   Requests in flight finish on the files of the version they started with; old versions stay
//!   on disk, so a rollback is a swap too. A version that fails verification is never served:
//!   the environment keeps what it served and the error is logged.
//! - a project or its definition changes: the path table is read again.
//!
//! What a response says:
//!
//! | file | Cache-Control | ETag |
//! |---|---|---|
//! | `index.html`, the directory itself | `no-cache` | the file's sha256 |
//! | a name carrying its content hash (`app.3f2a9c1b.js`) | `public, max-age=31536000, immutable` | the file's sha256 |
//! | any other file | `no-cache` | the file's sha256 |
//! | `config.json` (the version's runtime configuration) | `no-cache` | its sha256 |
//!
//! `If-None-Match` with the ETag answers 304. A path without its trailing slash
//! (`/env/staging`) redirects to it; an environment with nothing deployed answers a small 404
//! page that says so; `..`, `.` and empty segments are refused before any lookup, and only
//! files in the version's index are ever opened.

use crate::http::AppState;
use crate::http::routes::Routes;
use crate::live::{Change, LiveHub};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use bytes::Bytes;
use domain::access::Access;
use domain::environment::EnvironmentId;
use domain::run::artifacts::ArtifactStore;
use domain::site::{self, SiteError, SiteIndex, SiteVersionId};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tower_http::services::ServeFile;

const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const NO_CACHE: &str = "no-cache";

/// One environment's site as this replica serves it now.
pub struct LiveSite {
    pub version: SiteVersionId,
    /// The unpacked files.
    root: PathBuf,
    index: SiteIndex,
    config: Bytes,
    config_etag: String,
}

/// Where an environment's site is served.
#[derive(Debug, Clone)]
struct Route {
    /// `/env/staging/`.
    path: String,
    environment_id: EnvironmentId,
    environment: String,
}

#[derive(Clone)]
pub struct SiteCache {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    storage: ArtifactStore,
    sites_dir: PathBuf,
    /// Longest path first, so `/env/a/b/` wins over `/env/a/`.
    routes: RwLock<Arc<Vec<Route>>>,
    live: RwLock<HashMap<EnvironmentId, Arc<LiveSite>>>,
    /// Bumped whenever an environment starts serving another version.
    served: watch::Sender<u64>,
    /// One materialisation per version at a time.
    materialising: Mutex<HashMap<SiteVersionId, Arc<tokio::sync::Mutex<()>>>>,
}

impl SiteCache {
    /// Loads the path table and every environment's current site (materialising what is not on
    /// disk yet), then follows changes until `stop`. Subscribes to `live` first, so nothing that
    /// changes during the load is missed. A site that cannot be materialised is logged and left
    /// unserved; it does not stop the server.
    pub async fn start(
        pool: PgPool,
        storage: ArtifactStore,
        data_dir: &std::path::Path,
        live: &LiveHub,
        stop: CancellationToken,
    ) -> anyhow::Result<Self> {
        let changes = live.subscribe();
        let sites_dir = data_dir.join("sites");
        tokio::fs::create_dir_all(&sites_dir).await?;
        let cache = SiteCache {
            inner: Arc::new(Inner {
                pool,
                storage,
                sites_dir,
                routes: RwLock::new(Arc::new(Vec::new())),
                live: RwLock::new(HashMap::new()),
                served: watch::channel(0).0,
                materialising: Mutex::new(HashMap::new()),
            }),
        };
        cache.reload_everything().await?;
        tokio::spawn(cache.clone().follow(changes, stop));
        Ok(cache)
    }

    /// Fetches, verifies and unpacks `version` on this replica unless it is already. The
    /// deployer calls it before `domain::site::switch`, so a checksum mismatch fails the
    /// deployment instead of going live.
    pub async fn materialise(&self, version: SiteVersionId) -> Result<SiteIndex, SiteError> {
        self.on_disk(version).await.map(|(_, index)| index)
    }

    /// The version's row and its files' index, materialised one at a time per version.
    async fn on_disk(
        &self,
        version: SiteVersionId,
    ) -> Result<(site::SiteVersion, SiteIndex), SiteError> {
        let lock = {
            let mut locks = self.inner.materialising.lock().expect("not poisoned");
            locks.entry(version).or_default().clone()
        };
        let held = lock.lock().await;
        let result = async {
            let loaded = {
                let mut conn = self.inner.pool.acquire().await?;
                site::version(&mut conn, version).await?
            };
            let index =
                site::materialise(&self.inner.storage, &loaded, &self.inner.sites_dir).await?;
            Ok((loaded, index))
        }
        .await;
        drop(held);
        self.inner
            .materialising
            .lock()
            .expect("not poisoned")
            .remove(&version);
        result
    }

    /// The version this replica serves for `environment` now.
    pub fn serving(&self, environment: EnvironmentId) -> Option<SiteVersionId> {
        self.site(environment).map(|site| site.version)
    }

    /// Waits until this replica serves `version` for `environment`; false if `timeout` passed
    /// first.
    pub async fn wait_for(
        &self,
        environment: EnvironmentId,
        version: SiteVersionId,
        timeout: Duration,
    ) -> bool {
        let mut served = self.inner.served.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.serving(environment) == Some(version) {
                return true;
            }
            match tokio::time::timeout_at(deadline, served.changed()).await {
                Ok(Ok(())) => continue,
                _ => return self.serving(environment) == Some(version),
            }
        }
    }

    fn site(&self, environment: EnvironmentId) -> Option<Arc<LiveSite>> {
        let live = self.inner.live.read().expect("not poisoned");
        live.get(&environment).cloned()
    }

    async fn follow(self, mut changes: broadcast::Receiver<Change>, stop: CancellationToken) {
        loop {
            let change = tokio::select! {
                _ = stop.cancelled() => return,
                change = changes.recv() => change,
            };
            let heard = Instant::now();
            let result = match change {
                Ok(change) if change.topic == "site" => {
                    let environment = change.environment_id();
                    let version = change
                        .site_version_id
                        .as_deref()
                        .and_then(|v| v.parse::<SiteVersionId>().ok());
                    match (change.table.as_deref(), environment, version) {
                        (Some("site_version"), _, Some(version)) => {
                            self.prefetch(version);
                            Ok(())
                        }
                        (Some("environment_site"), Some(environment), _) => {
                            self.reload_environment(environment, heard).await
                        }
                        _ => self.reload_everything().await,
                    }
                }
                Ok(change) if change.topic == "project" => self.reload_routes().await,
                Ok(change) if change.topic == "resync" => self.reload_everything().await,
                Ok(_) => Ok(()),
                Err(broadcast::error::RecvError::Lagged(_)) => self.reload_everything().await,
                Err(broadcast::error::RecvError::Closed) => return,
            };
            if let Err(error) = result {
                // The next resync (the listener reconnecting) loads everything again.
                tracing::warn!(%error, "could not refresh the sites");
            }
        }
    }

    /// Starts fetching a newly prepared version, so its switch finds it on disk.
    fn prefetch(&self, version: SiteVersionId) {
        let cache = self.clone();
        tokio::spawn(async move {
            if let Err(error) = cache.materialise(version).await {
                tracing::error!(%version, error = %error, "cannot prepare a site version");
            }
        });
    }

    async fn reload_everything(&self) -> anyhow::Result<()> {
        self.reload_routes().await?;
        let pointers = {
            let mut conn = self.inner.pool.acquire().await?;
            site::pointers(&mut conn).await?
        };
        let pointed: Vec<EnvironmentId> = pointers.iter().map(|p| p.environment_id).collect();
        self.inner
            .live
            .write()
            .expect("not poisoned")
            .retain(|environment, _| pointed.contains(environment));
        let heard = Instant::now();
        for pointer in pointers {
            self.install(pointer.environment_id, pointer.site_version_id, heard)
                .await;
        }
        Ok(())
    }

    async fn reload_environment(
        &self,
        environment: EnvironmentId,
        heard: Instant,
    ) -> anyhow::Result<()> {
        let pointer = {
            let mut conn = self.inner.pool.acquire().await?;
            site::current(&mut conn, environment).await?
        };
        match pointer {
            Some(pointer) => {
                self.install(environment, pointer.site_version_id, heard)
                    .await
            }
            None => {
                self.inner
                    .live
                    .write()
                    .expect("not poisoned")
                    .remove(&environment);
            }
        }
        Ok(())
    }

    async fn reload_routes(&self) -> anyhow::Result<()> {
        let paths = {
            let mut conn = self.inner.pool.acquire().await?;
            site::paths(&mut conn).await?
        };
        for conflict in &paths.conflicts {
            tracing::warn!("{conflict}");
        }
        let mut routes: Vec<Route> = paths
            .paths
            .into_iter()
            .map(|p| Route {
                path: p.path,
                environment_id: p.environment_id,
                environment: p.environment,
            })
            .collect();
        routes.sort_by_key(|route| std::cmp::Reverse(route.path.len()));
        *self.inner.routes.write().expect("not poisoned") = Arc::new(routes);
        Ok(())
    }

    /// Serves `version` for `environment` once it is on disk and verified; logs and keeps the
    /// old one when it cannot be.
    async fn install(&self, environment: EnvironmentId, version: SiteVersionId, heard: Instant) {
        if self.serving(environment) == Some(version) {
            return;
        }
        let (loaded, index) = match self.on_disk(version).await {
            Ok(found) => found,
            Err(error) => {
                tracing::error!(%environment, %version, error = %error, "site version not served");
                return;
            }
        };
        let config = loaded.runtime_config;
        let config = Bytes::from(serde_json::to_vec_pretty(&config).expect("JSON serializes"));
        let site = Arc::new(LiveSite {
            version,
            root: site::version_dir(&self.inner.sites_dir, version).join("files"),
            index,
            config_etag: format!("\"{}\"", hex::encode(Sha256::digest(&config))),
            config,
        });
        let previous = self
            .inner
            .live
            .write()
            .expect("not poisoned")
            .insert(environment, site);
        self.inner.served.send_modify(|n| *n += 1);
        tracing::info!(
            %environment,
            %version,
            previous = ?previous.map(|p| p.version),
            after_ms = format!("{:.1}", heard.elapsed().as_secs_f64() * 1000.0),
            "serving site version"
        );
    }

    fn route(&self, path: &str) -> Option<(Route, Option<String>)> {
        let routes = self.inner.routes.read().expect("not poisoned").clone();
        for route in routes.iter() {
            if let Some(rest) = path.strip_prefix(route.path.as_str()) {
                return Some((route.clone(), Some(rest.to_string())));
            }
            if route.path.strip_suffix('/') == Some(path) {
                return Some((route.clone(), None));
            }
        }
        None
    }
}

/// The site routes: public, on a lean stack of their own (no session, no database).
pub fn routes() -> Routes {
    Routes::new().get("/env/{*path}", Access::Public, serve)
}

pub fn router(state: AppState) -> axum::Router {
    routes()
        .router
        .layer(
            tower_http::set_header::SetResponseHeaderLayer::if_not_present(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        )
        .with_state(state)
}

async fn serve(State(state): State<AppState>, request: Request) -> Response {
    let cache = &state.sites;
    let path = request.uri().path().to_string();
    let Some((route, rest)) = cache.route(&path) else {
        return plain(StatusCode::NOT_FOUND, "There is no site at this address.");
    };
    let Some(rest) = rest else {
        let mut to = route.path.clone();
        if let Some(query) = request.uri().query() {
            to = format!("{to}?{query}");
        }
        return Redirect::permanent(&to).into_response();
    };
    let Some(relative) = file_path(&rest) else {
        return plain(StatusCode::BAD_REQUEST, "That path is not allowed.");
    };
    let Some(site) = cache.site(route.environment_id) else {
        return nothing_deployed(&route.environment);
    };
    if relative == "config.json" {
        if matches(request.headers(), &site.config_etag) {
            return not_modified(&site.config_etag, NO_CACHE);
        }
        return (
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                ),
                (header::CACHE_CONTROL, HeaderValue::from_static(NO_CACHE)),
                (header::ETAG, header_value(&site.config_etag)),
            ],
            site.config.clone(),
        )
            .into_response();
    }
    let Some(file) = site.index.files.get(&relative) else {
        return plain(StatusCode::NOT_FOUND, "There is no such file in this site.");
    };
    let etag = format!("\"{}\"", file.sha256);
    let policy = if file.immutable { IMMUTABLE } else { NO_CACHE };
    if matches(request.headers(), &etag) {
        return not_modified(&etag, policy);
    }
    let path = site.root.join(&relative);
    let served = match ServeFile::new(&path).oneshot(request).await {
        Ok(served) => served.map(Body::new),
        Err(never) => match never {},
    };
    let mut response = served;
    if response.status().is_success() || response.status() == StatusCode::NOT_MODIFIED {
        let headers = response.headers_mut();
        headers.insert(header::ETAG, header_value(&etag));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(policy));
    }
    response
}

/// The file a request's path below the site names: percent-decoded, `index.html` for a
/// directory, None for anything that could leave the site.
fn file_path(rest: &str) -> Option<String> {
    let decoded = percent_encoding::percent_decode_str(rest)
        .decode_utf8()
        .ok()?
        .into_owned();
    let mut relative = decoded.clone();
    if relative.is_empty() || relative.ends_with('/') {
        relative.push_str("index.html");
    }
    let fine = relative.split('/').all(|segment| {
        !segment.is_empty() && segment != "." && segment != ".." && !segment.contains(['\\', '\0'])
    });
    fine.then_some(relative)
}

fn matches(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().trim_start_matches("W/"))
        .any(|v| v == etag || v == "*")
}

fn not_modified(etag: &str, policy: &'static str) -> Response {
    let mut response = StatusCode::NOT_MODIFIED.into_response();
    response
        .headers_mut()
        .insert(header::ETAG, header_value(etag));
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static(policy));
    response
}

fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("\"\""))
}

fn plain(status: StatusCode, text: &'static str) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, NO_CACHE),
        ],
        text,
    )
        .into_response()
}

fn nothing_deployed(environment: &str) -> Response {
    let name = escape(environment);
    let page = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Nothing deployed to {name} yet</title></head>\
         <body style=\"font-family: system-ui, sans-serif; margin: 3rem auto; max-width: 34rem; padding: 0 1rem\">\
         <h1>Nothing deployed to {name} yet</h1>\
         <p>This is where the {name} environment's web app appears once a release is deployed there.</p>\
         </body></html>\n"
    );
    (
        StatusCode::NOT_FOUND,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, NO_CACHE),
        ],
        page,
    )
        .into_response()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_that_could_leave_the_site_are_refused() {
        assert_eq!(file_path("").as_deref(), Some("index.html"));
        assert_eq!(file_path("a/").as_deref(), Some("a/index.html"));
        assert_eq!(
            file_path("app.3f2a9c1b.js").as_deref(),
            Some("app.3f2a9c1b.js")
        );
        assert_eq!(
            file_path("i18n/de%20x.json").as_deref(),
            Some("i18n/de x.json")
        );
        assert_eq!(file_path("../secret"), None);
        assert_eq!(file_path("a/../../secret"), None);
        assert_eq!(file_path("%2e%2e/secret"), None);
        assert_eq!(file_path("a//b"), None);
        assert_eq!(file_path("./a"), None);
        assert_eq!(file_path("a%5C..%5Cb"), None);
        assert_eq!(file_path("a%00"), None);
    }

    #[test]
    fn an_etag_matches_in_a_list_or_weakly() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_static("\"x\", W/\"abc\""),
        );
        assert!(matches(&headers, "\"abc\""));
        assert!(!matches(&headers, "\"abd\""));
    }
}
