//! The hydrate entry: the server renders every page; this makes it interactive in the browser.

// The pages' view types nest deeply; the release build's type-layout queries need more room than
// the default 128.
#![recursion_limit = "256"]

#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(app::App);
    // Lets browser tests (and curious people) tell when the page has become interactive.
    if let Some(window) = web_sys::window() {
        let _ = js_sys::Reflect::set(&window, &"__flightdeck_hydrated".into(), &true.into());
    }
}
