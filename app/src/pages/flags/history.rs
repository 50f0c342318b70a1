//! One entry of an environment's flag history: a snapshot, what it changed, and Restore. A
//! snapshot that a change let through by an admin's override is marked in red with the reason.

use super::open_details;
use crate::api::flags::RestoreFlags;
use crate::components::format_time;
use domain::flag_view::{HistoryEntry, Overridden};
use leptos::prelude::*;

#[component]
pub(super) fn HistoryItem(
    entry: HistoryEntry,
    newest: bool,
    project: String,
    environment: String,
    restore: ServerAction<RestoreFlags>,
) -> impl IntoView {
    let HistoryEntry {
        version,
        created_at,
        created_by,
        reason,
        restored_from,
        changes,
        overridden,
    } = entry;
    let open = open_details();
    let key = format!("restore:{version}");
    let (is_open, toggle) = (open.is(key.clone()), open.toggle(key));
    let expanded = is_open.clone();
    let confirm = move || {
        let (project, environment) = (project.clone(), environment.clone());
        is_open().then(move || view! {
            <div class="confirm">
                <p>{format!("Put every flag in {environment} back to snapshot {version}? This is recorded as a new snapshot.")}</p>
                <ActionForm action=restore attr:class="confirm-actions">
                    <input type="hidden" name="project" value=project />
                    <input type="hidden" name="environment" value=environment.clone() />
                    <input type="hidden" name="version" value=version.to_string() />
                    <button type="submit" class="button primary">"Yes, restore"</button>
                </ActionForm>
            </div>
        })
    };
    let restore_form = (!newest).then(move || view! {
        <div class="restore">
            <button type="button" class="button subtle small" aria-expanded=move || expanded().to_string() on:click=toggle>{format!("Restore snapshot {version}")}</button>
            {confirm}
        </div>
    });
    let class = if overridden.is_some() {
        "history-entry overridden"
    } else {
        "history-entry"
    };
    let override_note = overridden.map(
        |Overridden {
             by,
             reason,
             approvals,
             required,
         }| {
            view! {
                <p class="override-note" role="note">
                    <strong>{format!("Approvals overridden by {by}")}</strong>
                    {format!(" ({approvals} of {required} given): {reason}")}
                </p>
            }
        },
    );
    view! {
        <li class=class data-version=version.to_string()>
            <div class="history-head">
                <strong>{format!("#{version}")}</strong>
                " "<span>{reason}</span>
                {restored_from.map(|from| view! { <span class="chip">{format!("restored from #{from}")}</span> })}
            </div>
            <p class="small muted">{format!("{created_by}, {}", format_time(created_at))}</p>
            {override_note}
            <ul class="changes">
                {changes.into_iter().map(|c| view! { <li>{c}</li> }).collect_view()}
            </ul>
            {restore_form}
        </li>
    }
}
