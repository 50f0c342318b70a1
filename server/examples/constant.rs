//! The machine's ceiling for the benchmark (`.ci/bench`): a bare axum server answering `GET /`
//! with a small constant JSON, on the same multi-threaded tokio runtime and with the same
//! TCP_NODELAY as `flightdeck serve`, but without any of its layers.
//!
//! Usage: `constant PORT` (listens on 127.0.0.1:PORT until killed).

use axum::Router;
use axum::http::header;
use axum::routing::get;
use axum::serve::ListenerExt;
use tokio::net::TcpListener;

const BODY: &str = r#"{"toggles":[{"name":"constant","enabled":true}]}"#;

fn main() -> std::io::Result<()> {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| {
            eprintln!("usage: constant PORT");
            std::process::exit(2)
        });
    // What `flightdeck` uses: `Runtime::new()`, one worker thread per core.
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let app = Router::new().route(
            "/",
            get(|| async { ([(header::CONTENT_TYPE, "application/json")], BODY) }),
        );
        let listener = TcpListener::bind(("127.0.0.1", port)).await?.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        axum::serve(listener, app).await
    })
}
