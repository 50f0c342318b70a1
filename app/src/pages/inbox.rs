//! The product managers' inbox (a tablet first, a phone too): releases waiting for user
//! acceptance, each with what it changes, its notes, where to try it, the flags involved and
//! QA's verdict; accept or reject with a comment. Live.

use crate::api::releases::{DecideStage, get_inbox};
use crate::components::{ErrorNotice, action_error, format_time};
use crate::live::use_live_changes;
use domain::release_view::InboxItem;
use leptos::prelude::*;
use leptos_meta::Title;

#[component]
pub fn InboxPage() -> impl IntoView {
    let changes = use_live_changes();
    let decide = ServerAction::<DecideStage>::new();
    let inbox = Resource::new(
        move || (changes.get(), decide.version().get()),
        |_| get_inbox(),
    );
    view! {
        <Title text="Inbox" />
        <div class="page-head"><h1>"Waiting for your acceptance"</h1></div>
        {action_error(decide.value())}
        <Transition fallback=|| view! { <p class="loading">"Loading the inbox…"</p> }>
            {move || Suspend::new(async move {
                match inbox.await {
                    Ok(items) if items.is_empty() => view! {
                        <section class="empty"><h2>"Nothing waits for you"</h2>
                        <p>"Releases show up here when they reach user acceptance on staging."</p></section>
                    }.into_any(),
                    Ok(items) => view! {
                        <div class="inbox">
                            {items.into_iter().map(|item| view! { <InboxCard item decide /> }).collect_view()}
                        </div>
                    }.into_any(),
                    Err(error) => view! { <ErrorNotice error /> }.into_any(),
                }
            })}
        </Transition>
    }
}

#[component]
fn InboxCard(item: InboxItem, decide: ServerAction<DecideStage>) -> impl IntoView {
    let InboxItem {
        project,
        deployment,
        environment,
        stage,
        stage_title,
        version,
        commits,
        notes,
        try_url,
        flags,
        qa,
        waiting_since,
        approvals,
        approvals_needed,
        why_not,
        ..
    } = item;
    let form = {
        let (project, stage) = (project.clone(), stage.clone());
        move |decision: &'static str, label: &'static str, required: bool, class: &'static str| {
            let id = format!("inbox-{deployment}-{decision}");
            let (project, stage) = (project.clone(), stage.clone());
            view! {
                <ActionForm action=decide attr:class="decision-form" attr:data-decision=decision>
                    <input type="hidden" name="project" value=project />
                    <input type="hidden" name="number" value=deployment />
                    <input type="hidden" name="stage" value=stage />
                    <input type="hidden" name="decision" value=decision />
                    <label for=id.clone() class="small">{if required { "Why not? (required)" } else { "Comment (optional)" }}</label>
                    <textarea id=id name="comment" rows="2" required=required></textarea>
                    <button type="submit" class=format!("button {class}") disabled=move || decide.pending().get()>{label}</button>
                </ActionForm>
            }
        }
    };
    view! {
        <article class="card inbox-item" data-release=version.clone()>
            <header class="card-head">
                <h2><a href=format!("/projects/{project}/releases/{version}")>{version.clone()}</a></h2>
                <a class="small" href=format!("/projects/{project}/deployments/{deployment}")>{stage_title}" in "{environment.clone()}</a>
            </header>
            {waiting_since.map(|at| view! { <p class="muted small">"waiting since "{format_time(at)}</p> })}
            {try_url.map(|u| view! { <p><a class="button try-link" href=u.clone() rel="noopener">"Try it on "{environment.clone()}</a></p> })}
            <h3 class="section-title">"QA"</h3>
            {if qa.is_empty() {
                view! { <p class="muted small">"No QA verdict recorded."</p> }.into_any()
            } else {
                view! {
                    <ul class="decisions small">
                        {qa.into_iter().map(|d| view! {
                            <li class="qa-verdict" data-kind=d.kind.clone()>
                                <strong>{d.by.clone()}</strong>{if d.kind == "approve" { " approved" } else { " rejected" }}
                                {d.comment.clone().map(|c| view! { ": "<q>{c}</q> })}
                            </li>
                        }).collect_view()}
                    </ul>
                }.into_any()
            }}
            <h3 class="section-title">"Release notes"</h3>
            <pre class="notes">{notes}</pre>
            <h3 class="section-title">"Changes"</h3>
            <ul class="commit-list small">
                {commits.into_iter().map(|c| view! {
                    <li><code>{c.sha[..7.min(c.sha.len())].to_string()}</code>" "{c.message.lines().next().unwrap_or_default().to_string()}
                        <span class="muted">" · "{c.author.split(" <").next().unwrap_or_default().to_string()}</span></li>
                }).collect_view()}
            </ul>
            <h3 class="section-title">"Flags involved"</h3>
            {if flags.is_empty() {
                view! { <p class="muted small">"No flags."</p> }.into_any()
            } else {
                view! {
                    <ul class="flag-list small">
                        {flags.into_iter().map(|f| view! { <li><code>{f.flag}</code>" "{f.why}</li> }).collect_view()}
                    </ul>
                }.into_any()
            }}
            {(approvals_needed > 1).then(|| view! {
                <p class="small muted">{approvals.len()}" of "{approvals_needed}" approvals"</p>
            })}
            {match why_not {
                None => view! {
                    <div class="inbox-actions">
                        {form("approve", "Accept", false, "primary")}
                        {form("reject", "Reject", true, "danger")}
                    </div>
                }.into_any(),
                Some(why) => view! { <p class="small muted why-not">"You cannot decide this one: "{why}"."</p> }.into_any(),
            }}
        </article>
    }
}
