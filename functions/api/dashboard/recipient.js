// A recipient's Tracking tab: every link they clicked (and what else they did), across deliveries.

import { api } from "./api.js";
import { externalLink, h, when } from "./dom.js";
import { AMOUNT_COLUMN, LOG_TYPES, MACHINE_COLUMN, logBrowser } from "./logtable.js";

export function recipientView(view, recipientId) {
  const input = h("input", { type: "search", name: "recipient", placeholder: "recipient id, e.g. r0001", value: recipientId ?? "", required: true, "aria-label": "Recipient id" });
  const search = h(
    "form",
    { class: "filters", role: "search" },
    h("label", {}, "Recipient", input),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Show tracking")),
  );
  search.addEventListener("submit", (event) => {
    event.preventDefault();
    const wanted = input.value.trim();
    if (wanted) location.hash = `#/recipients/${encodeURIComponent(wanted)}`;
  });
  const content = h("div");
  view.replaceChildren(
    h("div", { class: "page-head" }, h("h1", {}, recipientId ? `Recipient ${recipientId}` : "Recipients"), h("p", { class: "muted" }, "Every link a recipient clicked, with its date and delivery, across all deliveries.")),
    h("section", { class: "panel" }, search),
    content,
  );
  if (!recipientId) {
    input.focus();
    return;
  }
  const deliveryFilter = h("select", { name: "delivery_id" }, h("option", { value: "" }, "Any delivery"));
  api
    .deliveries({ limit: 100 })
    .then((page) => deliveryFilter.append(...page.items.map((delivery) => h("option", { value: delivery.id }, delivery.label))))
    .catch(() => {}); // the filter is a convenience: the tab works without it
  const browser = logBrowser({
    fileName: `tracking-logs-recipient-${recipientId}`,
    filters: [
      { name: "type", label: "Type", kind: "select", options: LOG_TYPES, value: "click" },
      { name: "since", label: "Since (UTC)", kind: "datetime" },
      { name: "until", label: "Until (UTC)", kind: "datetime" },
    ],
    columns: [
      { title: "When", cell: (log) => when(log.at), class: "when", sortsBy: true },
      { title: "Delivery", cell: (log) => h("a", { href: `#/deliveries/${encodeURIComponent(log.delivery_id)}`, class: "delivery-link" }, log.delivery_label) },
      { title: "Type", cell: (log) => h("span", { class: `badge ${log.type}` }, log.type.replace("_", "-")) },
      { title: "Link", cell: (log) => log.label ?? "–" },
      { title: "Target", cell: (log) => (log.url ? externalLink(log.url) : "–"), class: "url" },
      AMOUNT_COLUMN,
      { title: "Browser", cell: (log) => log.browser ?? "–" },
      { title: "Device", cell: (log) => log.device ?? "–" },
      MACHINE_COLUMN,
    ],
    fetchPage: (params) => api.recipientLogs(recipientId, { ...params, delivery_id: deliveryFilter.value }),
    fetchCsv: (params) => api.recipientLogsCsv(recipientId, { ...params, delivery_id: deliveryFilter.value }),
    traffic: true,
  });
  // The delivery filter joins the log browser's own filters, before its buttons.
  const filters = browser.querySelector("form");
  filters.insertBefore(h("label", {}, "Delivery", deliveryFilter), filters.children[1]);
  deliveryFilter.addEventListener("change", () => filters.requestSubmit());
  content.replaceChildren(h("section", { class: "panel" }, h("h2", {}, "Tracking"), browser));
}
