//! The environment's SDK tokens: the list, creating one (its secret shown once) and revoking.

use crate::api::flags::{CreateSdkToken, RevokeSdkToken, list_sdk_tokens};
use crate::components::{ErrorNotice, action_error, format_time};
use domain::flag_view::{SdkTokenKind, SdkTokenSummary};
use leptos::prelude::*;

#[component]
pub(super) fn SdkTokens(project: String, environment: String) -> impl IntoView {
    let create = ServerAction::<CreateSdkToken>::new();
    let revoke = ServerAction::<RevokeSdkToken>::new();
    let for_list = project.clone();
    let tokens = Resource::new(
        move || (create.version().get(), revoke.version().get()),
        move |_| list_sdk_tokens(for_list.clone()),
    );
    let env = environment.clone();
    let (p, p2) = (project.clone(), project.clone());
    view! {
        <section class="panel" id="sdk-tokens" aria-labelledby="sdk-tokens-title">
            <h2 id="sdk-tokens-title">{format!("SDK tokens for {environment}")}</h2>
            <p class="hint">"Apps send one in "<code>"Authorization"</code>": the Unleash SDKs to "<code>"/api/frontend"</code>" or "<code>"/api"</code>", OpenFeature OFREP providers to this portal's address."</p>
            {move || create.value().get().and_then(|r| r.ok()).map(|token| view! {
                <div class="notice notice-ok" role="status">
                    <p>"Token "<strong>{token.summary.name}</strong>" created. Copy it now; it is not shown again:"</p>
                    <pre class="secret"><code>{token.secret}</code></pre>
                </div>
            })}
            {action_error(create.value())}
            {action_error(revoke.value())}
            <Transition fallback=|| view! { <p class="loading">"Loading tokens…"</p> }>
                {move || {
                    let env = env.clone();
                    let p = p.clone();
                    Suspend::new(async move {
                        match tokens.await {
                            Ok(tokens) => {
                                let here: Vec<SdkTokenSummary> = tokens.into_iter().filter(|t| t.environment == env).collect();
                                if here.is_empty() {
                                    view! { <p class="muted">"No SDK tokens for this environment yet."</p> }.into_any()
                                } else {
                                    view! {
                                        <ul class="token-list">
                                            {here.into_iter().map(|t| view! { <SdkTokenItem token=t project=p.clone() revoke /> }).collect_view()}
                                        </ul>
                                    }.into_any()
                                }
                            }
                            Err(error) => view! { <ErrorNotice error /> }.into_any(),
                        }
                    })
                }}
            </Transition>
            <details class="add-form">
                <summary class="button">"Create an SDK token"</summary>
                <ActionForm action=create attr:class="form-grid">
                    <input type="hidden" name="project" value=p2 />
                    <input type="hidden" name="environment" value=environment.clone() />
                    <label>"Token name"<input name="name" required placeholder="e.g. web-app" autocomplete="off" /></label>
                    <fieldset>
                        <legend>"Kind"</legend>
                        {SdkTokenKind::ALL.into_iter().map(|kind| view! {
                            <label class="check"><input type="radio" name="kind" value=kind.as_str() checked=kind == SdkTokenKind::Frontend />" "<strong>{kind.as_str()}</strong>" "<span class="muted small">{kind.about()}</span></label>
                        }).collect_view()}
                    </fieldset>
                    <button type="submit" class="button primary">"Create token"</button>
                </ActionForm>
            </details>
        </section>
    }
}

#[component]
fn SdkTokenItem(
    token: SdkTokenSummary,
    project: String,
    revoke: ServerAction<RevokeSdkToken>,
) -> impl IntoView {
    let used = token
        .last_used_at
        .map(|at| format!("last used {}", format_time(at)))
        .unwrap_or_else(|| "never used".into());
    let revoked = token.revoked_at.is_some();
    view! {
        <li class="token" data-token=token.name.clone()>
            <div>
                <strong>{token.name.clone()}</strong>" "<span class="chip">{token.kind.as_str()}</span>
                <br /><code class="small">{format!("{}…", token.prefix)}</code>
                <span class="small muted">{format!(" · {used}")}</span>
            </div>
            {if revoked {
                view! { <span class="state state-failed">"revoked"</span> }.into_any()
            } else {
                view! {
                    <ActionForm action=revoke attr:class="inline">
                        <input type="hidden" name="project" value=project />
                        <input type="hidden" name="id" value=token.id.clone() />
                        <button type="submit" class="button subtle small">"Revoke"</button>
                    </ActionForm>
                }.into_any()
            }}
        </li>
    }
}
