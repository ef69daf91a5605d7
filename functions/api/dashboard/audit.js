// The audit trail: every change made through the API, who made it (the API token's name), newest first.

import { api } from "./api.js";
import { failure, h, isoFromInput, loading, table, when } from "./dom.js";

const ACTIONS = [
  ["", "Every action"],
  ["delivery_created", "Delivery created"],
  ["delivery_deleted", "Delivery deleted"],
  ["url_changed", "Link changed"],
  ["settings_changed", "Settings changed"],
  ["workflow_run_requested", "Workflow run requested"],
  ["erasure_requested", "Erasure requested"],
  ["failures_reported", "Failed sends reported"],
  ["tracking_test_requested", "Tracking tested"],
  ["site_created", "Web-tracking site created"],
  ["site_deleted", "Web-tracking site deleted"],
  ["webhook_created", "Webhook created"],
  ["webhook_deleted", "Webhook deleted"],
  ["export_requested", "Logs exported"],
];
const ACTION_NAMES = new Map(ACTIONS);
const PAGE_SIZE = 50;

function change(value) {
  if (value === null || value === undefined) return "–";
  return h("code", { class: "change" }, JSON.stringify(value));
}

export function auditView(view) {
  const action = h("select", { name: "action", "aria-label": "Action" }, ACTIONS.map(([value, label]) => h("option", { value }, label)));
  const since = h("input", { type: "datetime-local", name: "since", step: 1, "aria-label": "Since (UTC)" });
  const until = h("input", { type: "datetime-local", name: "until", step: 1, "aria-label": "Until (UTC)" });
  const form = h(
    "form",
    { class: "filters", "aria-label": "Audit filters" },
    h("label", {}, "Action", action),
    h("label", {}, "Since (UTC)", since),
    h("label", {}, "Until (UTC)", until),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Apply")),
  );
  const results = h("div", {}, loading("Loading the audit trail…"));
  const more = h("button", { type: "button", class: "quiet", hidden: true, dataset: { action: "more" } }, "Older changes");
  view.replaceChildren(
    h("div", { class: "page-head" }, h("h1", {}, "Audit trail"), h("p", { class: "muted small" }, "Every change made through the API: who (the API token's name), what, when, before and after.")),
    h("section", { class: "panel" }, form, results, more),
  );

  let rows = [];
  let cursor = null;
  const columns = [{ title: "When (UTC)", class: "when" }, { title: "Who" }, { title: "Action" }, { title: "Target" }, { title: "Before" }, { title: "After" }];
  const load = async (reset) => {
    if (reset) {
      rows = [];
      cursor = null;
      results.replaceChildren(loading("Loading the audit trail…"));
    }
    more.disabled = true;
    try {
      const page = await api.audit({
        action: action.value,
        since: isoFromInput(since.value),
        until: isoFromInput(until.value),
        limit: PAGE_SIZE,
        cursor,
      });
      rows = rows.concat(
        page.items.map((entry) => [when(entry.at), entry.actor, ACTION_NAMES.get(entry.action) ?? entry.action, h("span", { class: "mono" }, entry.target), change(entry.before), change(entry.after)]),
      );
      cursor = page.next_cursor;
      results.replaceChildren(table(columns, rows, { empty: "No change recorded yet." }));
      more.hidden = !cursor;
    } catch (error) {
      results.replaceChildren(failure(error));
    } finally {
      more.disabled = false;
    }
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    load(true);
  });
  more.addEventListener("click", () => load(false));
  load(true);
}
