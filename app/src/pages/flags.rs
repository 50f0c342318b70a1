//! The flags page: an environment's flags with their state and who gets them; switch one on or
//! off, change its rollout, edit its strategies and variants; the kill switch (one big tap and a
//! confirmation, made for phones); the history of snapshots with what each changed, and restore;
//! the environment's SDK tokens. Editors and confirmations open in place, and stay open while
//! the page reloads its data.

mod history;
mod tokens;
mod waiting;

use crate::api::flags::{
    ArchiveFlag, CreateFlag, DecideFlagChange, OverrideFlagChange, RestoreFlags, SetFlagDefinition,
    SetFlagEnabled, SetFlagRollout, UpdateFlag, get_flag_history, get_flags,
};
use crate::components::{ErrorNotice, action_error, format_time};
use crate::live::use_live_changes;
use domain::flag_view::{ChangeOutcome, FlagRow, FlagsPage};
use history::HistoryItem;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;
use tokens::SdkTokens;
use waiting::WaitingItem;

/// The actions every part of the page uses; any of them finishing reloads the page's data.
#[derive(Clone, Copy)]
struct Actions {
    enable: ServerAction<SetFlagEnabled>,
    rollout: ServerAction<SetFlagRollout>,
    definition: ServerAction<SetFlagDefinition>,
    create: ServerAction<CreateFlag>,
    restore: ServerAction<RestoreFlags>,
    decide: ServerAction<DecideFlagChange>,
    override_change: ServerAction<OverrideFlagChange>,
    update: ServerAction<UpdateFlag>,
    archive: ServerAction<ArchiveFlag>,
}

impl Actions {
    fn versions(&self) -> [usize; 9] {
        [
            self.enable.version().get(),
            self.rollout.version().get(),
            self.definition.version().get(),
            self.create.version().get(),
            self.restore.version().get(),
            self.decide.version().get(),
            self.override_change.version().get(),
            self.update.version().get(),
            self.archive.version().get(),
        ]
    }
}

/// Which editors and confirmations are open, by key, so that the page reloading its data (after
/// any change, anyone's) does not fold one a person has open. Finishing an action folds them all.
#[derive(Clone, Copy)]
struct OpenDetails(RwSignal<std::collections::HashSet<String>>);

impl OpenDetails {
    fn is(self, key: String) -> impl Fn() -> bool + Clone + Send + Sync + 'static {
        move || self.0.with(|open| open.contains(&key))
    }

    fn toggle(self, key: String) -> impl Fn(leptos::ev::MouseEvent) + 'static {
        move |_| {
            self.0.update(|open| {
                if !open.remove(&key) {
                    open.insert(key.clone());
                }
            })
        }
    }
}

fn open_details() -> OpenDetails {
    use_context::<OpenDetails>().expect("the flags page provides OpenDetails")
}

#[component]
pub fn FlagsPage() -> impl IntoView {
    let params = use_params_map();
    let project = move || params.read().get("project").unwrap_or_default();
    let environment = move || params.read().get("environment").unwrap_or_default();
    let changes = use_live_changes();
    let actions = Actions {
        enable: ServerAction::new(),
        rollout: ServerAction::new(),
        definition: ServerAction::new(),
        create: ServerAction::new(),
        restore: ServerAction::new(),
        decide: ServerAction::new(),
        override_change: ServerAction::new(),
        update: ServerAction::new(),
        archive: ServerAction::new(),
    };
    let open = OpenDetails(RwSignal::new(Default::default()));
    provide_context(open);
    Effect::new(move |_| {
        actions.versions();
        open.0.update(|o| o.clear());
    });
    // A decision on a waiting change makes an "Asked for" notice out of date.
    Effect::new(move |_| {
        if actions.decide.version().get() + actions.override_change.version().get() > 0 {
            actions.enable.value().set(None);
            actions.rollout.value().set(None);
            actions.definition.value().set(None);
        }
    });
    let page = Resource::new(
        move || (project(), environment(), changes.get(), actions.versions()),
        |(p, e, _, _)| get_flags(p, e),
    );
    let history = Resource::new(
        move || (project(), environment(), changes.get(), actions.versions()),
        |(p, e, _, _)| get_flag_history(p, e),
    );
    view! {
        <Title text=move || format!("Flags · {}", environment()) />
        <Transition fallback=|| view! { <p class="loading">"Loading flags…"</p> }>
            {move || Suspend::new(async move {
                match page.await {
                    Ok(page) => view! { <Flags page actions /> }.into_any(),
                    Err(error) => view! { <ErrorNotice error /> }.into_any(),
                }
            })}
        </Transition>
        <section class="panel" aria-labelledby="history-title">
            <h2 id="history-title">"History"</h2>
            {action_error(actions.restore.value())}
            {move || actions.restore.value().get().and_then(|r| r.ok()).map(|outcome| {
                let text = if outcome.changed {
                    format!("Restored: the flags are now snapshot {}.", outcome.version)
                } else {
                    format!("Nothing to restore: the flags already are that snapshot (now {}).", outcome.version)
                };
                view! { <p class="notice notice-ok" role="status">{text}</p> }
            })}
            <Transition fallback=|| view! { <p class="loading">"Loading history…"</p> }>
                {move || { let (project, environment) = (project(), environment()); Suspend::new(async move {
                    match history.await {
                        Ok(entries) if entries.is_empty() => view! {
                            <p class="muted">"No flag has been changed here yet."</p>
                        }.into_any(),
                        Ok(entries) => view! {
                            <ol class="history">
                                {entries.into_iter().enumerate().map(|(i, entry)| view! {
                                    <HistoryItem entry newest=i == 0 project=project.clone() environment=environment.clone() restore=actions.restore />
                                }).collect_view()}
                            </ol>
                        }.into_any(),
                        Err(error) => view! { <ErrorNotice error /> }.into_any(),
                    }
                })}}
            </Transition>
        </section>
        // Built again when the tabs switch environments.
        {move || view! { <SdkTokens project=project() environment=environment() /> }}
    }
}

#[component]
fn Flags(page: FlagsPage, actions: Actions) -> impl IntoView {
    let FlagsPage {
        project,
        environment,
        environments,
        version,
        can_change,
        who_may_change,
        required_approvals,
        waiting,
        flags,
    } = page;
    let tabs = environments
        .into_iter()
        .map(|name| {
            let href = format!("/projects/{project}/flags/{name}");
            let current = (name == environment).then_some("page");
            view! { <a class="tab" href=href aria-current=current>{name}</a> }
        })
        .collect_view();
    let notice = (!can_change).then(|| view! {
        <p class="notice">{format!("You can look. Flags in {environment} are changed by the {who_may_change} role.")}</p>
    });
    let empty = flags.is_empty().then(|| view! {
        <section class="empty">
            <h2>"No flags yet"</h2>
            <p>"Create one below; it starts off everywhere. Apps read flags through Unleash or OpenFeature SDKs with a token from "<a href="#sdk-tokens">"SDK tokens"</a>"."</p>
        </section>
    });
    let approval_note = (can_change && required_approvals > 0).then(|| {
        let whose = match required_approvals {
            1 => "another person's approval".to_string(),
            n => format!("the approval of {n} other people"),
        };
        view! {
            <p class="hint">{format!("Changes in {environment} wait for {whose}, or for the time you set. The kill switch and restoring a snapshot act at once.")}</p>
        }
    });
    let (p, e) = (project.clone(), environment.clone());
    let waiting_panel = (!waiting.is_empty()).then(|| {
        let (p, e) = (project.clone(), environment.clone());
        view! {
            <section class="panel waiting" aria-labelledby="waiting-title">
                <h2 id="waiting-title">"Waiting changes"</h2>
                {action_error(actions.decide.value())}
                {action_error(actions.override_change.value())}
                <ul class="waiting-list">
                    {waiting.into_iter().map(|change| view! {
                        <WaitingItem change project=p.clone() environment=e.clone() decide=actions.decide override_change=actions.override_change />
                    }).collect_view()}
                </ul>
            </section>
        }
    });
    view! {
        <div class="page-head">
            <h1>"Feature flags"</h1>
            <span class="muted small">{format!("{project} · snapshot {version}")}</span>
        </div>
        <nav class="tabs" aria-label="Environments">{tabs}</nav>
        {notice}
        {approval_note}
        {outcome(actions.enable.value(), required_approvals)}
        {outcome(actions.rollout.value(), required_approvals)}
        {outcome(actions.definition.value(), required_approvals)}
        {move || actions.override_change.value().get().and_then(|r| r.ok()).map(|state| {
            let text = if state == "applied" {
                "Overridden and applied. The history marks it in red; the audit log has your reason."
            } else {
                "Overridden: it applies at its time. The audit log has your reason."
            };
            view! { <p class="notice notice-ok" role="status">{text}</p> }
        })}
        {action_error(actions.enable.value())}
        {action_error(actions.rollout.value())}
        {action_error(actions.definition.value())}
        {action_error(actions.update.value())}
        {action_error(actions.archive.value())}
        {waiting_panel}
        {empty}
        <ul class="flag-list">
            {flags.into_iter().map(|flag| view! {
                <FlagCard flag project=p.clone() environment=e.clone() can_change actions />
            }).collect_view()}
        </ul>
        {can_change.then(|| view! { <CreateFlag project=project.clone() create=actions.create /> })}
    }
}

/// Says when a change did not happen at once: it waits for approvals or for its time.
fn outcome<S>(value: S, required_approvals: u8) -> impl IntoView
where
    S: Get<Value = Option<Result<ChangeOutcome, crate::error::AppError>>> + Send + Sync + 'static,
{
    move || match value.get() {
        Some(Ok(ChangeOutcome::Waiting {
            needs_approval,
            apply_at,
            ..
        })) => {
            let text = match (needs_approval, apply_at) {
                (true, Some(at)) => format!(
                    "Asked for: the change waits for an approval, then for {}.",
                    format_time(at)
                ),
                (true, None) if required_approvals > 1 => format!(
                    "Asked for: the change waits for the approval of {required_approvals} other people."
                ),
                (true, None) => {
                    "Asked for: the change waits for another person's approval.".to_string()
                }
                (false, Some(at)) => format!("Scheduled for {}.", format_time(at)),
                (false, None) => "Asked for.".to_string(),
            };
            Some(view! { <p class="notice notice-ok" role="status">{text}</p> })
        }
        _ => None,
    }
}

#[component]
fn FlagCard(
    flag: FlagRow,
    project: String,
    environment: String,
    can_change: bool,
    actions: Actions,
) -> impl IntoView {
    let FlagRow {
        name,
        flag_type,
        description,
        owner,
        stale,
        potentially_stale,
        enabled,
        rollout,
        targeting,
        variants,
        strategies_json,
        variants_json,
        changed_at,
        changed_by,
    } = flag;
    let who = if !enabled {
        "Off for everyone".to_string()
    } else if targeting.is_empty() {
        "On for everyone".to_string()
    } else {
        format!("On for {}", targeting.join("; or "))
    };
    let switch_label = format!("{name}: turn {}", if enabled { "off" } else { "on" });
    let hidden = {
        let (project, environment, name) = (project.clone(), environment.clone(), name.clone());
        move || {
            view! {
                <input type="hidden" name="project" value=project.clone() />
                <input type="hidden" name="environment" value=environment.clone() />
                <input type="hidden" name="flag" value=name.clone() />
            }
        }
    };
    let kill = (enabled && can_change).then(|| {
        let hidden = hidden.clone();
        let question = format!("Turn {name} off in {environment} for everyone, now?");
        let open = open_details();
        let key = format!("kill:{name}");
        let (is_open, toggle) = (open.is(key.clone()), open.toggle(key));
        let expanded = is_open.clone();
        let confirm = move || {
            let (hidden, question) = (hidden.clone(), question.clone());
            is_open().then(move || view! {
                <div class="confirm" role="alertdialog" aria-label="Confirm the kill switch">
                    <p><strong>{question}</strong></p>
                    <ActionForm action=actions.enable attr:class="confirm-actions">
                        {hidden()}
                        <input type="hidden" name="enabled" value="false" />
                        <input type="hidden" name="kill" value="true" />
                        <button type="submit" class="button danger big">"Yes, turn it off"</button>
                    </ActionForm>
                </div>
            }.into_any())
        };
        view! {
            <div class="kill">
                <button type="button" class="button danger big" aria-expanded=move || expanded().to_string() on:click=toggle>"Kill switch"</button>
                {confirm}
            </div>
        }
        .into_any()
    });
    let editor = can_change.then(|| {
        let hidden = hidden.clone();
        let open = open_details();
        let key = format!("edit:{name}");
        let (is_open, toggle) = (open.is(key.clone()), open.toggle(key));
        let expanded = is_open.clone();
        let details = (
            project.clone(),
            name.clone(),
            flag_type.clone(),
            description.clone(),
            owner.clone().unwrap_or_default(),
        );
        let form = move || {
            let (hidden, strategies_json, variants_json) =
                (hidden.clone(), strategies_json.clone(), variants_json.clone());
            let (project, name, flag_type, description, owner) = details.clone();
            let (archive_project, archive_name) = (project.clone(), name.clone());
            let for_rollout = hidden.clone();
            let for_schedule = hidden.clone();
            is_open().then(move || view! {
                <RolloutForm hidden=for_rollout rollout action=actions.rollout />
                <ActionForm action=actions.enable attr:class="form-grid schedule-form">
                    {for_schedule()}
                    <label>"Turn"
                        <select name="enabled">
                            <option value="true">"on"</option>
                            <option value="false">"off"</option>
                        </select>
                    </label>
                    <label>"at (UTC)"<input type="datetime-local" name="apply_at" step="1" required /></label>
                    <button type="submit" class="button">"Schedule"</button>
                </ActionForm>
                <ActionForm action=actions.definition attr:class="form-grid json-form">
                    {hidden()}
                    <label>"Strategies (Unleash JSON)"<textarea name="strategies" rows="8" spellcheck="false">{strategies_json}</textarea></label>
                    <label>"Variants (Unleash JSON; weights add up to 1000)"<textarea name="variants" rows="6" spellcheck="false">{variants_json}</textarea></label>
                    <button type="submit" class="button">"Save strategies and variants"</button>
                </ActionForm>
                <ActionForm action=actions.update attr:class="form-grid details-form">
                    <input type="hidden" name="project" value=project />
                    <input type="hidden" name="flag" value=name />
                    <label>"Type"<TypeSelect selected=flag_type /></label>
                    <label>"Description"<input name="description" value=description autocomplete="off" /></label>
                    <label>"Owner"<input name="owner" value=owner autocomplete="off" /></label>
                    <label class="check"><input type="checkbox" name="stale" value="true" checked=stale />" Stale: time to take it out of the code"</label>
                    <button type="submit" class="button">"Save details (every environment)"</button>
                </ActionForm>
                <ActionForm action=actions.archive attr:class="inline">
                    <input type="hidden" name="project" value=archive_project />
                    <input type="hidden" name="flag" value=archive_name />
                    <button type="submit" class="button subtle small">"Archive this flag in every environment"</button>
                </ActionForm>
            }.into_any())
        };
        view! {
            <div class="flag-edit">
                <button type="button" class="link-button" aria-expanded=move || expanded().to_string() on:click=toggle>"Change rollout, strategies or variants"</button>
                {form}
            </div>
        }
        .into_any()
    });
    view! {
        <li class=if enabled { "flag-card on" } else { "flag-card" } data-flag=name.clone()>
            <div class="flag-head">
                <div class="flag-title">
                    <h2 class="flag-name">{name.clone()}</h2>
                    <span class="chip">{flag_type}</span>
                    {stale.then(|| view! { <span class="chip chip-warn">"stale"</span> })}
                    {(potentially_stale && !stale).then(|| view! { <span class="chip chip-warn" title="Older than its type's expected lifetime">"potentially stale"</span> })}
                </div>
                <ActionForm action=actions.enable attr:class="switch-form">
                    {hidden()}
                    <input type="hidden" name="enabled" value=if enabled { "false" } else { "true" } />
                    <button type="submit" class="switch" role="switch" aria-checked=if enabled { "true" } else { "false" }
                        aria-label=switch_label disabled=!can_change>
                        <span class="switch-knob"></span>
                        <span class="switch-text">{if enabled { "On" } else { "Off" }}</span>
                    </button>
                </ActionForm>
            </div>
            {(!description.is_empty()).then(|| view! { <p class="flag-description">{description}</p> })}
            <p class="targeting">{who}</p>
            {(!variants.is_empty()).then(|| view! { <p class="small">"Variants: "{variants.join(", ")}</p> })}
            <p class="small muted">
                {format!("Changed by {changed_by}, {}", format_time(changed_at))}
                {owner.map(|o| format!(" · owner {o}"))}
            </p>
            {kill}
            {editor}
        </li>
    }
}

#[component]
fn RolloutForm<H, V>(
    hidden: H,
    rollout: Option<u8>,
    action: ServerAction<SetFlagRollout>,
) -> impl IntoView
where
    H: Fn() -> V + Send + Sync + 'static,
    V: IntoView + 'static,
{
    let percent = RwSignal::new(rollout.unwrap_or(100));
    let note = rollout.is_none().then(|| view! {
        <p class="hint">"This flag has other strategies; saving a rollout replaces them with one gradual rollout."</p>
    });
    view! {
        <ActionForm action=action attr:class="rollout-form">
            {hidden()}
            {note}
            <label class="rollout">
                <span>"Gradual rollout: "<output>{move || format!("{} %", percent.get())}</output></span>
                <input type="range" name="rollout" min="0" max="100" step="1" value=percent.get_untracked()
                    on:input=move |ev| percent.set(event_target_value(&ev).parse().unwrap_or(0)) />
            </label>
            <label>"Keep each user in their bucket by"
                <select name="stickiness">
                    <option value="default">"user, else session"</option>
                    <option value="userId">"user id"</option>
                    <option value="sessionId">"session id"</option>
                    <option value="random">"nothing (random each time)"</option>
                </select>
            </label>
            <label>"Apply at (UTC; empty: now)"<input type="datetime-local" name="apply_at" step="1" /></label>
            <button type="submit" class="button primary">"Save rollout"</button>
        </ActionForm>
    }
}

#[component]
fn CreateFlag(project: String, create: ServerAction<CreateFlag>) -> impl IntoView {
    // Once the flag exists the form closes empty, ready for the next one; on a refusal it stays
    // open with what was typed, beside the reason.
    let details = NodeRef::<leptos::html::Details>::new();
    let form = NodeRef::<leptos::html::Form>::new();
    Effect::new(move |_| {
        if matches!(create.value().get(), Some(Ok(_))) {
            if let Some(form) = form.get_untracked() {
                form.reset();
            }
            if let Some(details) = details.get_untracked() {
                details.set_open(false);
            }
        }
    });
    view! {
        <details class="add-form" node_ref=details>
            <summary class="button">"Create a flag"</summary>
            <ActionForm action=create node_ref=form attr:class="form-grid">
                <input type="hidden" name="project" value=project />
                <label>"Flag name"<input name="name" required placeholder="e.g. new-checkout" autocomplete="off" /></label>
                <label>"Type"
                    <TypeSelect selected="release".to_string() />
                </label>
                <label>"Description"<input name="description" autocomplete="off" /></label>
                <label>"Owner"<input name="owner" placeholder="person or team" autocomplete="off" /></label>
                <button type="submit" class="button primary">"Create flag"</button>
            </ActionForm>
            {action_error(create.value())}
        </details>
    }
}

/// The flag types, with what each is for.
#[component]
fn TypeSelect(selected: String) -> impl IntoView {
    const TYPES: [(&str, &str); 5] = [
        ("release", "release: ship a feature gradually"),
        ("experiment", "experiment: compare variants"),
        ("operational", "operational: change how the app runs"),
        ("kill-switch", "kill switch: turn a feature off fast"),
        ("permission", "permission: who may use a feature"),
    ];
    view! {
        <select name="flag_type">
            {TYPES.into_iter().map(|(value, label)| view! {
                <option value=value selected=value == selected>{label}</option>
            }).collect_view()}
        </select>
    }
}
