//! The site's own files under `/pkg` (the wasm, its JS glue, the stylesheet): what a phone
//! downloads before a page comes alive, so they are sent as small as they can be.
//!
//! - A release build writes `.br` and `.gz` beside each file (`cargo leptos build --release
//!   --precompress`: brotli at its best level, too slow to do per request); the best one the
//!   browser accepts is sent.
//! - A file without them (a debug build) is compressed as it is sent, by the compression layer
//!   every dynamic answer goes through (HTML, JSON; event streams and images excepted).
//! - The build names the wasm, its JS and the stylesheet after their content
//!   (`flightdeck.<md5>.wasm`, cargo-leptos' `hash-files`) and writes the names to `hash.txt`
//!   beside the binary; those files are served `immutable` for a year, since a new build has new
//!   names. Anything else there is revalidated (`no-cache`).
//! - A binary refuses to start on a site that another build made (a debug site under a release
//!   binary, an old site beside a new binary): the page would name files the site lacks and
//!   never come alive, with nothing in the log to say why.

use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tower_http::compression::predicate::{DefaultPredicate, NotForContentType, Predicate};
use tower_http::compression::{CompressionLayer, CompressionLevel};
use tower_http::services::ServeDir;

/// The name the build gives the site's files (cargo-leptos' `output-name`).
const OUTPUT_NAME: &str = "flightdeck";
/// Where under the site root they are.
pub const PKG_DIR: &str = "pkg";

/// The built site a server serves, checked against the build of the binary serving it.
#[derive(Debug, Clone)]
pub struct Site {
    pub root: PathBuf,
    /// The content-hashed file names under `pkg/`, when the build hashed them.
    hashed: Option<Arc<HashSet<String>>>,
}

#[derive(Debug, thiserror::Error)]
pub enum SiteError {
    #[error(
        "there is no site at {root} (no {PKG_DIR}/ in it): pages will not come alive; build it \
         (`bash .ci/portal` builds the release one into target/site-release) or pass --site-root"
    )]
    Missing { root: String },
    #[error(
        "the site at {root} was not built with this binary: it has no {PKG_DIR}/{file}, which \
         {hash_file} names. Serve the site the same build wrote (`bash .ci/portal` builds the \
         release one into target/site-release, `cargo leptos build` a debug one into \
         target/site) and copy the binary, its hash.txt and that site together"
    )]
    OtherBuild {
        root: String,
        file: String,
        hash_file: String,
    },
    #[error(
        "the site at {root} has no {PKG_DIR}/{OUTPUT_NAME}.wasm and there is no hash.txt beside \
         the binary ({hash_file}) to name its hashed files: copy the hash.txt the build wrote \
         next to the binary along with it, or build the site (`cargo leptos build --release`)"
    )]
    NoHashFile { root: String, hash_file: String },
    #[error("cannot read {file}: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
}

impl Site {
    /// The site at `root`, checked against the `hash.txt` beside this binary (where Leptos reads
    /// the names it puts in pages).
    pub fn open(root: &Path) -> Result<Site, SiteError> {
        let hash_file = std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|dir| dir.join("hash.txt")))
            .unwrap_or_else(|| PathBuf::from("hash.txt"));
        Self::open_with(root, &hash_file)
    }

    /// The site at `root`, checked against the names in `hash_file`.
    pub fn open_with(root: &Path, hash_file: &Path) -> Result<Site, SiteError> {
        let shown = |p: &Path| p.display().to_string();
        if !root.join(PKG_DIR).is_dir() {
            return Err(SiteError::Missing { root: shown(root) });
        }
        let hashes = match std::fs::read_to_string(hash_file) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let plain = root.join(PKG_DIR).join(format!("{OUTPUT_NAME}.wasm"));
                if !plain.is_file() {
                    return Err(SiteError::NoHashFile {
                        root: shown(root),
                        hash_file: shown(hash_file),
                    });
                }
                return Ok(Site {
                    root: root.to_path_buf(),
                    hashed: None,
                });
            }
            Err(source) => {
                return Err(SiteError::Read {
                    file: shown(hash_file),
                    source,
                });
            }
        };
        let mut names = HashSet::new();
        for line in hashes.lines() {
            let Some((kind, hash)) = line.split_once(':') else {
                continue;
            };
            let (kind, hash) = (kind.trim(), hash.trim());
            if !matches!(kind, "js" | "wasm" | "css") || hash.is_empty() {
                continue;
            }
            let file = format!("{OUTPUT_NAME}.{hash}.{kind}");
            if !root.join(PKG_DIR).join(&file).is_file() {
                return Err(SiteError::OtherBuild {
                    root: shown(root),
                    file,
                    hash_file: shown(hash_file),
                });
            }
            names.insert(file);
        }
        Ok(Site {
            root: root.to_path_buf(),
            hashed: Some(Arc::new(names)),
        })
    }

    /// A site taken as it is: for a server without one (its API and flag SDKs work, its pages
    /// do not come alive) and for in-process tests that read pages' HTML and never load their
    /// wasm (a test binary has no `hash.txt` beside it).
    pub fn unchecked(root: &Path) -> Site {
        Site {
            root: root.to_path_buf(),
            hashed: None,
        }
    }

    /// Whether pages name the files by their content hash.
    pub fn hashes_names(&self) -> bool {
        self.hashed.is_some()
    }
}

/// `/pkg` from the site, precompressed where the build left `.br`/`.gz` files; files named by
/// their content are cached for a year, the rest revalidated.
pub fn pkg_service(site: &Site) -> axum::Router {
    let files = ServeDir::new(site.root.join(PKG_DIR))
        .precompressed_br()
        .precompressed_gzip();
    let hashed = site.hashed.clone().unwrap_or_default();
    axum::Router::new()
        .fallback_service(files)
        .layer(middleware::from_fn(move |request: Request, next: Next| {
            let immutable = request
                .uri()
                .path()
                .rsplit('/')
                .next()
                .is_some_and(|name| hashed.contains(name));
            async move {
                let mut response: Response = next.run(request).await;
                let policy = if immutable && response.status().is_success() {
                    "public, max-age=31536000, immutable"
                } else {
                    "no-cache"
                };
                response
                    .headers_mut()
                    .insert(header::CACHE_CONTROL, HeaderValue::from_static(policy));
                response
            }
        }))
}

/// Compression for every answer that is worth it and not compressed already. Brotli at level 4
/// and gzip at 6 are a fraction of a millisecond for a page and keep most of the saving. Event
/// streams and images are left alone (the default predicate), and so are archives and binaries
/// (artifact downloads: an APK or a tarball gains nothing and would lose its Content-Length).
pub fn compression() -> CompressionLayer<impl Predicate> {
    let predicate = DefaultPredicate::new()
        .and(NotForContentType::const_new("application/gzip"))
        .and(NotForContentType::const_new("application/zip"))
        .and(NotForContentType::const_new("application/octet-stream"))
        .and(NotForContentType::const_new(
            "application/vnd.android.package-archive",
        ));
    CompressionLayer::new()
        .br(true)
        .gzip(true)
        .quality(CompressionLevel::Precise(4))
        .compress_when(predicate)
}
