//! The site's files: named by content and cached for a year, and a binary that refuses a site
//! another build made.

use crate::helpers::{TestApp, fresh_database};
use server::http::assets::{Site, SiteError};
use std::path::{Path, PathBuf};

/// A site as `cargo leptos build` with `hash-files` leaves it, and the hash.txt it writes.
fn built_site(hashes: [&str; 3]) -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("flightdeck-site-{}", uuid::Uuid::new_v4()));
    let pkg = dir.join("site/pkg");
    std::fs::create_dir_all(&pkg).unwrap();
    let [js, wasm, css] = hashes;
    std::fs::write(pkg.join(format!("flightdeck.{js}.js")), "export default 1;").unwrap();
    std::fs::write(pkg.join(format!("flightdeck.{wasm}.wasm")), b"\0asm").unwrap();
    std::fs::write(pkg.join(format!("flightdeck.{css}.css")), "body{}").unwrap();
    std::fs::write(pkg.join("notes.txt"), "not hashed").unwrap();
    let hash_file = dir.join("hash.txt");
    std::fs::write(&hash_file, format!("js: {js}\nwasm: {wasm}\ncss: {css}\n")).unwrap();
    (dir.join("site"), hash_file)
}

#[test]
fn a_site_that_another_build_made_is_refused_with_the_file_it_lacks() {
    let (site, _) = built_site(["jsA", "wasmA", "cssA"]);
    let (_, other_build) = built_site(["jsB", "wasmB", "cssB"]);
    let error = Site::open_with(&site, &other_build).unwrap_err();
    assert!(matches!(error, SiteError::OtherBuild { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("pkg/flightdeck.jsB.js"), "{message}");
    assert!(message.contains(&site.display().to_string()), "{message}");
    assert!(message.contains("target/site-release"), "{message}");

    let nowhere = Path::new("/nonexistent/hash.txt");
    let error = Site::open_with(&site, nowhere).unwrap_err();
    assert!(matches!(error, SiteError::NoHashFile { .. }), "{error:?}");
    assert!(error.to_string().contains("hash.txt"), "{error}");

    let error = Site::open_with(&site.join("nothing-here"), nowhere).unwrap_err();
    assert!(matches!(error, SiteError::Missing { .. }), "{error:?}");
    std::fs::remove_dir_all(site.parent().unwrap()).ok();
    std::fs::remove_dir_all(other_build.parent().unwrap()).ok();
}

#[tokio::test]
async fn files_named_by_their_content_are_cached_for_a_year_and_the_rest_revalidated() {
    let (root, hash_file) = built_site(["Jx9", "Wq1", "Cz7"]);
    let site = Site::open_with(&root, &hash_file).expect("the same build's site");
    assert!(site.hashes_names());
    let app = TestApp::spawn_serving(fresh_database().await, site).await;
    let client = app.anonymous();
    for file in [
        "flightdeck.Jx9.js",
        "flightdeck.Wq1.wasm",
        "flightdeck.Cz7.css",
    ] {
        let response = client
            .get(app.url(&format!("/pkg/{file}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{file}");
        assert_eq!(
            response.headers()["cache-control"],
            "public, max-age=31536000, immutable",
            "{file}"
        );
    }
    let plain = client.get(app.url("/pkg/notes.txt")).send().await.unwrap();
    assert_eq!(plain.status(), 200);
    assert_eq!(plain.headers()["cache-control"], "no-cache");
    let missing = client
        .get(app.url("/pkg/flightdeck.Old.wasm"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(missing.headers()["cache-control"], "no-cache");
    std::fs::remove_dir_all(root.parent().unwrap()).ok();
}
