#![recursion_limit = "512"]
//! The browser entry point: hydrates the server-rendered page. Everything else lives in the `app` crate.

use wasm_bindgen::prelude::wasm_bindgen;

#[wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(app::App);
}
