//! People and API tokens, for admins.

use crate::api::admin::{
    CreateToken, CreateUser, ResetUserPassword, RevokeToken, SetUserDisabled, SetUserRole,
    list_tokens, list_users,
};
use crate::components::{ErrorNotice, action_error, format_time};
use domain::people::{TokenSummary, UserSummary};
use domain::role::Role;
use domain::scope::Scope;
use leptos::prelude::*;
use leptos_meta::Title;

#[component]
pub fn AdminPage() -> impl IntoView {
    view! {
        <Title text="People & tokens" />
        <h1>"People & tokens"</h1>
        <People />
        <Tokens />
    }
}

#[component]
fn People() -> impl IntoView {
    let create = ServerAction::<CreateUser>::new();
    let set_role = ServerAction::<SetUserRole>::new();
    let set_disabled = ServerAction::<SetUserDisabled>::new();
    let reset = ServerAction::<ResetUserPassword>::new();
    let users = Resource::new(
        move || {
            (
                create.version().get(),
                set_role.version().get(),
                set_disabled.version().get(),
            )
        },
        |_| list_users(),
    );
    view! {
        <section class="panel" aria-labelledby="people-title">
            <h2 id="people-title">"People"</h2>
            {action_error(set_role.value())}
            {action_error(set_disabled.value())}
            {action_error(reset.value())}
            {move || reset.value().get().and_then(|r| r.ok()).map(|_| view! {
                <p class="notice notice-ok" role="status">"Password changed; that person's sessions were ended."</p>
            })}
            <Transition fallback=|| view! { <p class="loading">"Loading people…"</p> }>
                {move || Suspend::new(async move {
                    match users.await {
                        Ok(users) => view! {
                            <div class="table-wrap">
                                <table class="table">
                                    <thead><tr><th>"Person"</th><th>"Role"</th><th>"Last seen"</th><th>"Status"</th><th>"Password"</th></tr></thead>
                                    <tbody>
                                        {users.into_iter().map(|user| view! { <UserRow user set_role set_disabled reset /> }).collect_view()}
                                    </tbody>
                                </table>
                            </div>
                        }.into_any(),
                        Err(error) => view! { <ErrorNotice error /> }.into_any(),
                    }
                })}
            </Transition>
            <details class="add-form">
                <summary class="button">"Add a person"</summary>
                <ActionForm action=create attr:class="form-grid">
                    <label>"Username"<input name="username" required autocomplete="off" /></label>
                    <label>"Name"<input name="display_name" autocomplete="off" /></label>
                    <label>"Role"<RoleSelect name="role" selected=Role::Viewer /></label>
                    <label>"First password"<input name="password" type="password" required minlength="10" autocomplete="new-password" /></label>
                    <button type="submit" class="button primary">"Add"</button>
                </ActionForm>
                {action_error(create.value())}
            </details>
        </section>
    }
}

#[component]
fn UserRow(
    user: UserSummary,
    set_role: ServerAction<SetUserRole>,
    set_disabled: ServerAction<SetUserDisabled>,
    reset: ServerAction<ResetUserPassword>,
) -> impl IntoView {
    let UserSummary {
        username,
        display_name,
        role,
        disabled,
        last_seen_at,
        ..
    } = user;
    let password_label = format!("New password for {username}");
    let for_row = username.clone();
    let (for_role, for_status, for_password) =
        (username.clone(), username.clone(), username.clone());
    view! {
        <tr data-user=for_row>
            <td data-label="Person"><strong>{display_name}</strong><br /><span class="muted small">{username}</span></td>
            <td data-label="Role">
                <ActionForm action=set_role attr:class="inline">
                    <input type="hidden" name="username" value=for_role />
                    <RoleSelect name="role" selected=role />
                    <button type="submit" class="button subtle small">"Change"</button>
                </ActionForm>
            </td>
            <td data-label="Last seen" class="small">{last_seen_at.map(format_time).unwrap_or_else(|| "never".into())}</td>
            <td data-label="Status">
                <ActionForm action=set_disabled attr:class="inline">
                    <input type="hidden" name="username" value=for_status />
                    <input type="hidden" name="disabled" value=if disabled { "false" } else { "true" } />
                    <span class=if disabled { "state state-failed" } else { "state state-succeeded" }>
                        {if disabled { "disabled" } else { "active" }}
                    </span>
                    " "
                    <button type="submit" class="button subtle small">{if disabled { "Enable" } else { "Disable" }}</button>
                </ActionForm>
            </td>
            <td data-label="Password">
                <ActionForm action=reset attr:class="inline">
                    <input type="hidden" name="username" value=for_password />
                    <input name="password" type="password" placeholder="new password" minlength="10" required autocomplete="new-password" aria-label=password_label />
                    <button type="submit" class="button subtle small">"Set"</button>
                </ActionForm>
            </td>
        </tr>
    }
}

#[component]
fn RoleSelect(name: &'static str, selected: Role) -> impl IntoView {
    view! {
        <select name=name>
            {Role::ALL.into_iter().map(|r| view! {
                <option value=r.as_str() selected=r == selected>{r.label()}</option>
            }).collect_view()}
        </select>
    }
}

#[component]
fn Tokens() -> impl IntoView {
    let create = ServerAction::<CreateToken>::new();
    let revoke = ServerAction::<RevokeToken>::new();
    let tokens = Resource::new(
        move || (create.version().get(), revoke.version().get()),
        |_| list_tokens(),
    );
    view! {
        <section class="panel" aria-labelledby="tokens-title">
            <h2 id="tokens-title">"API tokens"</h2>
            <p class="hint">"For CI, runners and SDKs. Send one as "<code>"Authorization: Bearer <token>"</code>"."</p>
            {move || create.value().get().and_then(|r| r.ok()).map(|token| view! {
                <div class="notice notice-ok" role="status">
                    <p>"Token "<strong>{token.summary.name}</strong>" created. Copy it now; it is not shown again:"</p>
                    <pre class="secret"><code>{token.secret}</code></pre>
                </div>
            })}
            {action_error(revoke.value())}
            <Transition fallback=|| view! { <p class="loading">"Loading tokens…"</p> }>
                {move || Suspend::new(async move {
                    match tokens.await {
                        Ok(tokens) if tokens.is_empty() => view! { <p class="muted">"No tokens yet."</p> }.into_any(),
                        Ok(tokens) => view! {
                            <div class="table-wrap">
                                <table class="table">
                                    <thead><tr><th>"Name"</th><th>"Scopes"</th><th>"Last used"</th><th>"Expires"</th><th></th></tr></thead>
                                    <tbody>
                                        {tokens.into_iter().map(|token| view! { <TokenRow token revoke /> }).collect_view()}
                                    </tbody>
                                </table>
                            </div>
                        }.into_any(),
                        Err(error) => view! { <ErrorNotice error /> }.into_any(),
                    }
                })}
            </Transition>
            <details class="add-form">
                <summary class="button">"Create a token"</summary>
                <ActionForm action=create attr:class="form-grid">
                    <label>"Name"<input name="name" required placeholder="e.g. github-actions" /></label>
                    <fieldset>
                        <legend>"Scopes"</legend>
                        {Scope::ALL.into_iter().enumerate().map(|(i, scope)| view! {
                            <label class="check"><input type="checkbox" name=format!("scopes[{i}]") value=scope.as_str() />" "<code>{scope.as_str()}</code>" "<span class="muted small">{scope.about()}</span></label>
                        }).collect_view()}
                    </fieldset>
                    <label>"Expires after (days, empty = never)"<input name="expires_in_days" type="number" min="1" max="3650" /></label>
                    <button type="submit" class="button primary">"Create token"</button>
                </ActionForm>
                {action_error(create.value())}
            </details>
        </section>
    }
}

#[component]
fn TokenRow(token: TokenSummary, revoke: ServerAction<RevokeToken>) -> impl IntoView {
    let TokenSummary {
        id,
        name,
        prefix,
        scopes,
        created_by,
        created_at,
        expires_at,
        last_used_at,
        revoked_at,
    } = token;
    let row_name = name.clone();
    let revoked = revoked_at.is_some();
    view! {
        <tr data-token=row_name class:revoked=revoked>
            <td data-label="Token">
                <strong>{name}</strong><br />
                <span class="muted small"><code>{prefix}"…"</code>" · by "{created_by.unwrap_or_else(|| "cli".into())}" · "{format_time(created_at)}</span>
            </td>
            <td data-label="Scopes">{scopes.into_iter().map(|s| view! { <code class="scope">{s}</code>" " }).collect_view()}</td>
            <td data-label="Last used" class="small">{last_used_at.map(format_time).unwrap_or_else(|| "never".into())}</td>
            <td data-label="Expires" class="small">{expires_at.map(format_time).unwrap_or_else(|| "never".into())}</td>
            <td class="row-actions">
                {match revoked_at {
                    Some(at) => view! { <span class="muted small">"revoked " {format_time(at)}</span> }.into_any(),
                    None => view! {
                        <ActionForm action=revoke attr:class="inline">
                            <input type="hidden" name="id" value=id />
                            <button type="submit" class="button danger small">"Revoke"</button>
                        </ActionForm>
                    }.into_any(),
                }}
            </td>
        </tr>
    }
}
