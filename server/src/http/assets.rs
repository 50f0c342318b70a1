//! The site's own files under `/pkg` (the wasm, its JS glue, the stylesheet): what a phone
//! downloads before a page comes alive, so they are sent as small as they can be.
//!
//! - A release build writes `.br` and `.gz` beside each file (`cargo leptos build --release
//!   --precompress`: brotli at its best level, too slow to do per request); the best one the
//!   browser accepts is sent.
//! - A file without them (a debug build) is compressed as it is sent, by the compression layer
//!   every dynamic answer goes through (HTML, JSON; event streams and images excepted).
//! - The names carry no content hash (yet), so browsers revalidate (`no-cache`): an unchanged
//!   file costs a 304, a new build is picked up at once.

use axum::http::{HeaderValue, header};
use tower::Layer;
use tower_http::compression::predicate::{DefaultPredicate, NotForContentType, Predicate};
use tower_http::compression::{CompressionLayer, CompressionLevel};
use tower_http::services::ServeDir;
use tower_http::set_header::{SetResponseHeader, SetResponseHeaderLayer};

/// `/pkg` from `<site root>/<pkg dir>`, precompressed where the build left `.br`/`.gz` files.
pub fn pkg_service(site_root: &str, pkg_dir: &str) -> SetResponseHeader<ServeDir, HeaderValue> {
    let files = ServeDir::new(format!("{site_root}/{pkg_dir}"))
        .precompressed_br()
        .precompressed_gzip();
    SetResponseHeaderLayer::overriding(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"))
        .layer(files)
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
