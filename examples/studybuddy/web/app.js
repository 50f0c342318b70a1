// StudyBuddy's web app: plan sessions, see what is coming up, mark sessions done, keep a streak.

import { api, ApiError } from "./api.js";
import { assetUrl, currentLocale, loadMessages, t, translatePage } from "./i18n.js";

const $ = (selector) => document.querySelector(selector);
const timeZone = Intl.DateTimeFormat().resolvedOptions().timeZone;

function showStatus(message) {
  const banner = $("#status");
  banner.textContent = message ?? "";
  banner.hidden = !message;
}

function formatWhen(session) {
  const format = new Intl.DateTimeFormat(currentLocale(), { dateStyle: "medium", timeStyle: "short" });
  return t("session.when", {
    when: format.format(new Date(session.starts_at)),
    minutes: session.duration_minutes,
  });
}

function sessionItem(session) {
  const item = document.createElement("li");
  item.dataset.id = session.id;
  item.classList.toggle("completed", session.completed);

  const what = document.createElement("div");
  what.className = "what";
  const subject = document.createElement("strong");
  subject.className = "subject";
  subject.textContent = session.topic ? `${session.subject}: ${session.topic}` : session.subject;
  const when = document.createElement("span");
  when.className = "when";
  when.textContent = formatWhen(session);
  what.append(subject, when);

  const toggle = document.createElement("button");
  toggle.type = "button";
  toggle.className = "secondary";
  toggle.dataset.action = "toggle";
  toggle.textContent = session.completed ? t("action.undo") : t("action.done");
  toggle.addEventListener("click", () =>
    act(() => api.updateSession(session.id, { completed: !session.completed })),
  );

  const remove = document.createElement("button");
  remove.type = "button";
  remove.className = "secondary danger";
  remove.dataset.action = "delete";
  remove.textContent = t("action.delete");
  remove.addEventListener("click", () => {
    if (window.confirm(t("confirm.delete", { subject: session.subject }))) {
      act(() => api.deleteSession(session.id));
    }
  });

  item.append(what, toggle, remove);
  return item;
}

function renderList(listId, emptyId, sessions) {
  $(listId).replaceChildren(...sessions.map(sessionItem));
  $(emptyId).hidden = sessions.length > 0;
}

async function refresh() {
  const [planned, done, streak, reminders] = await Promise.all([
    api.listSessions("planned"),
    api.listSessions("completed"),
    api.streak(timeZone),
    api.reminders(60),
  ]);
  renderList("#planned", "#planned-empty", planned.sessions);
  renderList("#done", "#done-empty", done.sessions.slice().reverse());
  $("#reminders").replaceChildren(...reminders.reminders.map(sessionItem));
  $("#reminders-card").hidden = reminders.reminders.length === 0;
  const badge = $("#streak");
  badge.dataset.state = streak.current > 0 ? "alive" : "none";
  badge.dataset.current = String(streak.current);
  $("#streak-text").textContent =
    streak.current > 0 ? t("streak.days", { count: streak.current }) : t("streak.none");
  showStatus(null);
}

async function act(action) {
  try {
    await action();
    await refresh();
  } catch (error) {
    showStatus(error instanceof ApiError ? error.message : t("error.offline"));
  }
}

function readForm(form) {
  const data = new FormData(form);
  const startsAt = data.get("starts_at");
  const reminder = data.get("remind_minutes_before");
  return {
    subject: data.get("subject"),
    topic: data.get("topic") || null,
    starts_at: startsAt ? new Date(startsAt).toISOString() : "",
    duration_minutes: Number(data.get("duration_minutes")),
    remind_minutes_before: reminder === "" ? null : Number(reminder),
    notes: data.get("notes") || null,
  };
}

function setUpForm() {
  const form = $("#plan-form");
  const start = new Date(Date.now() + 60 * 60 * 1000);
  start.setMinutes(0, 0, 0);
  const local = new Date(start.getTime() - start.getTimezoneOffset() * 60_000);
  form.elements.starts_at.value = local.toISOString().slice(0, 16);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const errors = $("#form-errors");
    errors.textContent = "";
    try {
      await api.createSession(readForm(form));
      form.elements.subject.value = "";
      form.elements.topic.value = "";
      form.elements.notes.value = "";
      await refresh();
    } catch (error) {
      if (error instanceof ApiError && error.status === 422) {
        errors.textContent = Object.entries(error.fields)
          .map(
            ([field, problem]) =>
              `${t(`field.${field === "duration_minutes" ? "duration" : field}`)}: ${problem}`,
          )
          .join(" · ");
      } else {
        showStatus(error instanceof ApiError ? error.message : t("error.offline"));
      }
    }
  });
}

async function start() {
  try {
    await loadMessages();
    translatePage();
  } catch {
    showStatus("Translations could not be loaded.");
  }
  const icon = $("#streak-icon");
  icon.src = await assetUrl("images/streak.svg");
  icon.hidden = false;
  setUpForm();
  document.body.dataset.ready = "true";
  try {
    await refresh();
  } catch {
    showStatus(t("error.offline"));
  }
}

start();
