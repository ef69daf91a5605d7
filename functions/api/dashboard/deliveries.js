// The deliveries, newest first, each with its key indicators.

import { api } from "./api.js";
import { count, failure, h, loading, percent, when } from "./dom.js";

const PAGE_SIZE = 20;
const COLUMNS = [
  { title: "Delivery" },
  { title: "Created" },
  { title: "Sent", numeric: true, indicator: "sent", show: count },
  { title: "Delivered", numeric: true, indicator: "delivered", show: count },
  { title: "Opens", numeric: true, indicator: "opens", show: count },
  { title: "Open rate", numeric: true, indicator: "open_rate", show: percent },
  { title: "Clicks", numeric: true, indicator: "clicks", show: count },
  { title: "Click rate", numeric: true, indicator: "click_rate", show: percent },
  { title: "Reactivity", numeric: true, indicator: "reactivity", show: percent },
  { title: "Opt-outs", numeric: true, indicator: "opt_outs", show: count },
];

function row(delivery) {
  const cells = COLUMNS.filter((column) => column.indicator).map((column) =>
    h("td", { class: "num", dataset: { indicator: column.indicator } }, "…"),
  );
  const tr = h(
    "tr",
    { dataset: { deliveryId: delivery.id } },
    h("td", {}, h("a", { href: `#/deliveries/${encodeURIComponent(delivery.id)}`, class: "delivery-link" }, delivery.label), h("div", { class: "muted small mono" }, delivery.id)),
    h("td", { class: "when" }, when(delivery.created_at)),
    cells,
  );
  api
    .statistics(delivery.id)
    .then((stats) => {
      COLUMNS.filter((column) => column.indicator).forEach((column, index) => {
        cells[index].textContent = column.show(stats[column.indicator]);
      });
    })
    .catch((error) => {
      const note = error.code === "tracking_not_activated" ? "tracking off" : "unavailable";
      cells.forEach((cell) => {
        cell.textContent = "–";
        cell.title = note;
      });
    });
  return tr;
}

export function deliveriesView(view) {
  const body = h("tbody");
  const more = h("button", { type: "button", class: "quiet", hidden: true }, "Show older deliveries");
  const status = h("div", {}, loading("Loading deliveries…"));
  view.replaceChildren(
    h("div", { class: "page-head" }, h("h1", {}, "Deliveries"), h("p", { class: "muted" }, "Newest first, with their key tracking indicators.")),
    h(
      "section",
      { class: "panel" },
      h(
        "div",
        { class: "table-wrap" },
        h("table", { class: "deliveries" }, h("thead", {}, h("tr", {}, COLUMNS.map((c) => h("th", { class: c.numeric ? "num" : null }, c.title)))), body),
      ),
      status,
      h("div", { class: "pager" }, more),
    ),
  );

  let cursor = null;
  async function load() {
    more.disabled = true;
    try {
      const page = await api.deliveries({ limit: PAGE_SIZE, cursor });
      body.append(...page.items.map(row));
      status.replaceChildren(page.items.length || body.children.length ? "" : h("p", { class: "empty" }, "No deliveries yet: register one with POST /api/deliveries."));
      cursor = page.next_cursor;
      more.hidden = !cursor;
    } catch (error) {
      status.replaceChildren(failure(error));
    } finally {
      more.disabled = false;
    }
  }
  more.addEventListener("click", load);
  load();
}
