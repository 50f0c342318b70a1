//! The audit log with filters by who, what and when. Filters live in the URL, so a filtered view
//! can be shared and works before the page hydrates.

use crate::api::audit::search_audit;
use crate::components::{ErrorNotice, format_time, urlencode};
use crate::live::use_live_changes;
use chrono::{NaiveDate, TimeZone, Utc};
use domain::audit::{AuditEntry, AuditFilter};
use domain::audit_details::{ReadableDetails, readable};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

#[component]
pub fn AuditPage() -> impl IntoView {
    let query = use_query_map();
    let changes = use_live_changes();
    let filter = move || {
        let q = query.read();
        let day = |key: &str| {
            q.get(key)
                .and_then(|d| NaiveDate::parse_from_str(&d, "%Y-%m-%d").ok())
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|d| Utc.from_utc_datetime(&d))
        };
        AuditFilter {
            actor: q.get("actor").filter(|s| !s.is_empty()),
            action: q.get("action").filter(|s| !s.is_empty()),
            since: day("since"),
            // "until" is inclusive of the whole day chosen.
            until: day("until").map(|d| d + chrono::Duration::days(1)),
            security_only: q.get("security").is_some_and(|v| v == "on"),
            before_id: q.get("before").and_then(|v| v.parse().ok()),
        }
    };
    let entries = Resource::new(
        move || (filter(), changes.get()),
        |(filter, _)| search_audit(filter),
    );
    let value = move |key: &'static str| move || query.read().get(key).unwrap_or_default();
    view! {
        <Title text="Audit log" />
        <h1>"Audit log"</h1>
        <form method="get" class="filters" role="search">
            <label>"Who"<input name="actor" placeholder="username or token" prop:value=value("actor") /></label>
            <label>"What"
                <select name="action" prop:value=value("action")>
                    <option value="">"everything"</option>
                    <option value="session.">"sign-ins and sign-outs"</option>
                    <option value="session.login_failed">"failed sign-ins"</option>
                    <option value="access.denied">"refusals"</option>
                    <option value="user.">"people"</option>
                    <option value="token.">"tokens"</option>
                    <option value="definition.">"pipeline definitions"</option>
                    <option value="schedule.">"schedules"</option>
                </select>
            </label>
            <label>"From"<input type="date" name="since" prop:value=value("since") /></label>
            <label>"To"<input type="date" name="until" prop:value=value("until") /></label>
            <label class="check"><input type="checkbox" name="security" prop:checked=move || query.read().get("security").is_some() />" security events only"</label>
            <button type="submit" class="button">"Filter"</button>
            <a class="button subtle" href="/audit">"Clear"</a>
        </form>
        <Transition fallback=|| view! { <p class="loading">"Loading the log…"</p> }>
            {move || Suspend::new(async move {
                match entries.await {
                    Ok(page) if page.entries.is_empty() => view! { <p class="empty">"Nothing matches these filters."</p> }.into_any(),
                    Ok(page) => {
                        let next = page.next_before_id.map(|id| {
                            let mut params: Vec<(String, String)> = query.get_untracked().into_iter()
                                .filter(|(k, _)| k != "before").map(|(k, v)| (k.to_string(), v.to_string())).collect();
                            params.push(("before".into(), id.to_string()));
                            let qs = params.iter().map(|(k, v)| format!("{k}={}", urlencode(v))).collect::<Vec<_>>().join("&");
                            format!("/audit?{qs}")
                        });
                        view! {
                            <div class="table-wrap">
                                <table class="table audit">
                                    <thead><tr><th>"When"</th><th>"Who"</th><th>"What"</th><th>"Target"</th><th>"From"</th><th>"Details"</th></tr></thead>
                                    <tbody>{page.entries.into_iter().map(|entry| { let details = readable(&entry.details, &page.names); view! { <AuditRow entry details /> } }).collect_view()}</tbody>
                                </table>
                            </div>
                            {next.map(|href| view! { <p><a class="button" href=href>"Older entries"</a></p> })}
                        }.into_any()
                    }
                    Err(error) => view! { <ErrorNotice error /> }.into_any(),
                }
            })}
        </Transition>
    }
}

#[component]
fn AuditRow(entry: AuditEntry, details: ReadableDetails) -> impl IntoView {
    let AuditEntry {
        occurred_at,
        actor_kind,
        actor_name,
        action,
        outcome,
        security,
        target,
        ip,
        user_agent,
        ..
    } = entry;
    view! {
        <tr class=format!("outcome-{outcome}") class:security=security>
            <td data-label="When" class="small nowrap">{format_time(occurred_at)}</td>
            <td data-label="Who"><strong>{actor_name}</strong><br /><span class="muted small">{actor_kind}</span></td>
            <td data-label="What"><code>{action}</code>{(outcome != "ok").then(|| view! { " " <span class=format!("state state-{}", if outcome == "denied" { "failed" } else { "waiting" })>{outcome.clone()}</span> })}</td>
            <td data-label="Target">{target.unwrap_or_default()}</td>
            <td data-label="From" class="small" title=user_agent.unwrap_or_default()>{ip.unwrap_or_default()}</td>
            <td data-label="Details" class="details"><Details details /></td>
        </tr>
    }
}

/// What changed, before → after; the other facts; the JSON behind a disclosure.
#[component]
fn Details(details: ReadableDetails) -> impl IntoView {
    let ReadableDetails {
        changes,
        facts,
        json,
    } = details;
    (!json.is_empty()).then(|| {
        view! {
            <div class="audit-details">
                {(!changes.is_empty()).then(|| view! {
                    <ul class="audit-changes">
                        {changes.into_iter().map(|c| view! {
                            <li>
                                <span class="field">{c.field}</span>": "
                                <del>{c.before}</del>" → "<ins>{c.after}</ins>
                            </li>
                        }).collect_view()}
                    </ul>
                })}
                {(!facts.is_empty()).then(|| view! {
                    <dl class="audit-facts">
                        {facts.into_iter().map(|f| view! { <dt>{f.name}</dt><dd>{f.value}</dd> }).collect_view()}
                    </dl>
                })}
                <details class="audit-json">
                    <summary>"JSON"</summary>
                    <pre>{json}</pre>
                </details>
            </div>
        }
    })
}
