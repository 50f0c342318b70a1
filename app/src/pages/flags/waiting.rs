//! A flag change waiting for approvals or for its time. It offers only what the reader may do
//! (the server decided each button with the environment's rule and the change's state machine),
//! says how many approvals it has and whom it waits for, and where nobody else could approve,
//! what to do about it; admins get "Override with reason".

use super::open_details;
use crate::api::flags::{DecideFlagChange, OverrideFlagChange};
use crate::components::format_time;
use domain::flag_view::WaitingChange;
use leptos::prelude::*;

#[component]
pub(super) fn WaitingItem(
    change: WaitingChange,
    project: String,
    environment: String,
    decide: ServerAction<DecideFlagChange>,
    override_change: ServerAction<OverrideFlagChange>,
) -> impl IntoView {
    let WaitingChange {
        id,
        summary,
        requested_by,
        requested_at,
        apply_at,
        needs_approval,
        approved_by,
        required_approvals,
        waiting_for,
        stuck,
        overridden_by,
        can_approve,
        can_reject,
        can_cancel,
        can_override,
        ..
    } = change;
    let when = match (needs_approval, apply_at, overridden_by, approved_by.last()) {
        (true, Some(at), ..) => format!(" · then applies {}", format_time(at)),
        (true, None, ..) => String::new(),
        (false, Some(at), Some(by), _) => {
            format!(" · overridden by {by}; applies {}", format_time(at))
        }
        (false, Some(at), None, Some(by)) => {
            format!(" · approved by {by}; applies {}", format_time(at))
        }
        (false, Some(at), None, None) => format!(" · applies {}", format_time(at)),
        (false, None, ..) => " · being applied".to_string(),
    };
    let approvals = needs_approval.then(|| {
        let given = if approved_by.is_empty() {
            String::new()
        } else {
            format!(" ({})", approved_by.join(", "))
        };
        let count = format!("approvals {} of {required_approvals}{given}", approved_by.len());
        let waiting_for = waiting_for.unwrap_or_default();
        if stuck {
            view! {
                <p class="approvals small">{count}</p>
                <p class="notice notice-forbidden stuck" role="note">{capitalized(&waiting_for)}"."</p>
            }
            .into_any()
        } else {
            view! { <p class="approvals small">{format!("{count}, {waiting_for}")}</p> }.into_any()
        }
    });
    let hidden = {
        let (project, environment) = (project.clone(), environment.clone());
        move || {
            view! {
                <input type="hidden" name="project" value=project.clone() />
                <input type="hidden" name="environment" value=environment.clone() />
                <input type="hidden" name="id" value=id.to_string() />
            }
        }
    };
    let button = {
        let hidden = hidden.clone();
        move |decision: &'static str, label: &'static str, class: &'static str| {
            let hidden = hidden.clone();
            view! {
                <ActionForm action=decide attr:class="inline">
                    {hidden()}
                    <input type="hidden" name="decision" value=decision />
                    <button type="submit" class=class>{label}</button>
                </ActionForm>
            }
        }
    };
    let open = open_details();
    let key = format!("override:{id}");
    let (is_open, toggle) = (open.is(key.clone()), open.toggle(key));
    let expanded = is_open.clone();
    let override_button = can_override.then(|| view! {
        <button type="button" class="button danger small" aria-expanded=move || expanded().to_string() on:click=toggle>"Override with reason"</button>
    });
    let override_form = move || {
        let hidden = hidden.clone();
        (can_override && is_open()).then(move || view! {
            <ActionForm action=override_change attr:class="override-form confirm">
                {hidden()}
                <label>"Why can this change not wait for its approvals? (recorded as a security event)"
                    <textarea name="reason" rows="3" required></textarea>
                </label>
                <button type="submit" class="button danger">"Override and apply"</button>
            </ActionForm>
        })
    };
    view! {
        <li class=if stuck { "waiting-change stuck" } else { "waiting-change" } data-change=id.to_string()>
            <div class="waiting-text">
                <strong>{summary}</strong>
                <br /><span class="small muted">{format!("asked by {requested_by}, {}{when}", format_time(requested_at))}</span>
                {approvals}
            </div>
            <div class="actions">
                {can_approve.then(|| button("approve", "Approve", "button primary small"))}
                {can_reject.then(|| button("reject", "Reject", "button subtle small"))}
                {can_cancel.then(|| button("cancel", "Cancel", "button subtle small"))}
                {override_button}
            </div>
            {override_form}
        </li>
    }
}

fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}
