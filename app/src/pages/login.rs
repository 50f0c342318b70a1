//! Sign-in, and the one-time setup of the first admin.

use crate::api::session::{CompleteSetup, Login};
use crate::components::action_error;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::{use_params_map, use_query_map};

#[component]
pub fn LoginPage() -> impl IntoView {
    let login = ServerAction::<Login>::new();
    let query = use_query_map();
    let next = move || query.read().get("next").unwrap_or_else(|| "/".to_string());
    let created = move || query.read().get("created").is_some();
    let expired = move || query.read().get("expired").is_some();
    view! {
        <Title text="Sign in" />
        <main class="auth-page">
            <div class="auth-card">
                <div class="brand large"><span class="brand-mark" aria-hidden="true">"◆"</span>" Flightdeck"</div>
                <h1>"Sign in"</h1>
                <Show when=created>
                    <p class="notice notice-ok">"Your admin account is ready. Sign in with it."</p>
                </Show>
                <Show when=expired>
                    <p class="notice">"Your session ended. Sign in again to continue."</p>
                </Show>
                <ActionForm action=login>
                    <input type="hidden" name="next" value=next />
                    <label for="username">"Username"</label>
                    <input id="username" name="username" autocomplete="username" required autofocus />
                    <label for="password">"Password"</label>
                    <input id="password" name="password" type="password" autocomplete="current-password" required />
                    {action_error(login.value())}
                    <button type="submit" class="button primary wide" disabled=move || login.pending().get()>
                        {move || if login.pending().get() { "Signing in…" } else { "Sign in" }}
                    </button>
                </ActionForm>
                <p class="hint">"No account? Ask an admin to add you with the role you need."</p>
            </div>
        </main>
    }
}

#[component]
pub fn SetupPage() -> impl IntoView {
    let setup = ServerAction::<CompleteSetup>::new();
    let params = use_params_map();
    let link = move || params.read().get("link").unwrap_or_default();
    view! {
        <Title text="Set up Flightdeck" />
        <main class="auth-page">
            <div class="auth-card">
                <div class="brand large"><span class="brand-mark" aria-hidden="true">"◆"</span>" Flightdeck"</div>
                <h1>"Create the first admin"</h1>
                <p class="hint">"This link works once. The admin can then add everyone else."</p>
                <ActionForm action=setup>
                    <input type="hidden" name="link" value=link />
                    <label for="username">"Username"</label>
                    <input id="username" name="username" autocomplete="username" required />
                    <label for="display_name">"Your name"</label>
                    <input id="display_name" name="display_name" autocomplete="name" />
                    <label for="password">"Password (at least 10 characters)"</label>
                    <input id="password" name="password" type="password" autocomplete="new-password" required minlength="10" />
                    <label for="confirm">"Password again"</label>
                    <input id="confirm" name="confirm" type="password" autocomplete="new-password" required minlength="10" />
                    {action_error(setup.value())}
                    <button type="submit" class="button primary wide">"Create admin"</button>
                </ActionForm>
            </div>
        </main>
    }
}
