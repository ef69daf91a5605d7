// A table of tracking logs with filters, cursor paging and CSV export: the delivery's logs and the
// recipient's Tracking tab both use it.

import { amountWithCurrency, count, failure, h, isoFromInput, loading, tableRow } from "./dom.js";
import { currentTraffic, trafficSwitch } from "./traffic.js";

const MAX_EXPORT_PAGES = 50; // 50 pages of 200 logs: a bigger export belongs to the API, not a browser
const EXPORT_FORMATS = ["csv", "jsonl"];
const EXPORT_POLL_MS = 1000;

export const LOG_TYPES = [
  ["", "Any type"],
  ["open", "Opens"],
  ["click", "Clicks"],
  ["opt_out", "Opt-outs"],
  ["mirror", "Mirror page views"],
  ["page", "Page views"],
  ["transaction", "Transactions"],
];

/** A transaction log's amount, "49.90 EUR"; empty for every other type. */
export const AMOUNT_COLUMN = { title: "Amount", numeric: true, cell: (log) => amountWithCurrency(log.amount, log.currency) };
// Who made the hit: "person", or the machine's kind with the signal that gave it away.
export const MACHINE_COLUMN = {
  title: "Machine",
  class: "machine",
  cell: (log) =>
    log.machine
      ? h("span", {}, h("span", { class: "machine-kind" }, log.machine), " ", h("span", { class: "machine-reason" }, log.machine_reason ?? ""))
      : h("span", { class: "machine-kind person" }, "person"),
};

function control(filter) {
  const props = { name: filter.name, "aria-label": filter.label };
  let input;
  if (filter.kind === "select") {
    input = h(
      "select",
      props,
      filter.options.map(([value, text]) => h("option", { value, selected: value === (filter.value ?? "") }, text)),
    );
  } else if (filter.kind === "datetime") {
    input = h("input", { ...props, type: "datetime-local", step: 1, value: filter.value ?? "" });
  } else {
    input = h("input", { ...props, type: "text", placeholder: filter.placeholder ?? "", value: filter.value ?? "" });
  }
  return h("label", {}, filter.label, input);
}

/**
 * columns: [{title, cell(item), numeric?, class?, sortsBy?}]; fetchPage(params) -> {items, next_cursor};
 * fetchCsv(params) -> Response; filters: [{name, label, kind: "select"|"text"|"datetime", options?, value?}];
 * traffic: offer the People | All traffic switch (the API's traffic=human leaves machine hits out).
 * With startExport(body) -> {id} and exportStatus(id) -> {status, rows, url, error}, the export buttons
 * (CSV, JSONL) have the export API write every matching log to a file, follow it and link to it.
 */
export function logBrowser({ columns, fetchPage, fetchCsv, startExport, exportStatus, filters, fileName, pageSize = 25, traffic = false }) {
  const form = h("form", { class: "filters", "aria-label": "Filter the tracking logs" }, filters.map(control));
  const sizes = h(
    "select",
    { name: "limit", "aria-label": "Logs per page" },
    [10, 25, 50, 100, 200].map((n) => h("option", { value: n, selected: n === pageSize }, `${n} per page`)),
  );
  const order = h(
    "select",
    { name: "order", "aria-label": "Order" },
    h("option", { value: "desc" }, "Newest first"),
    h("option", { value: "asc" }, "Oldest first"),
  );
  const apply = h("button", { type: "submit" }, "Apply");
  const exportButton = h("button", { type: "button", class: "quiet", onclick: () => exportCsv() }, "Export CSV");
  const exportButtons = startExport
    ? EXPORT_FORMATS.map((format) =>
        h("button", { type: "button", class: "quiet", dataset: { exportFormat: format }, onclick: () => exportFile(format) }, `Export ${format.toUpperCase()}`),
      )
    : [exportButton];
  const exported = h("div", { class: "export-status", role: "status", "aria-live": "polite" });
  if (traffic) form.append(h("div", { class: "field" }, h("span", { "aria-hidden": "true" }, "Traffic"), trafficSwitch(() => restart())));
  form.append(h("label", {}, "Order", order), h("label", {}, "Page size", sizes), h("div", { class: "actions" }, apply, ...exportButtons));

  const body = h("tbody");
  const head = h(
    "tr",
    {},
    columns.map((column) =>
      column.sortsBy
        ? h(
            "th",
            { class: "sortable", title: "Sort by date", onclick: () => toggleOrder(), "aria-sort": "descending" },
            column.title,
            h("span", { class: "sort-mark" }, " ↓"),
          )
        : h("th", { class: column.numeric ? "num" : null }, column.title),
    ),
  );
  const status = h("div", { class: "status" });
  const previous = h("button", { type: "button", class: "quiet", onclick: () => go(-1) }, "← Previous");
  const next = h("button", { type: "button", class: "quiet", onclick: () => go(1) }, "Next →");
  const position = h("span", { class: "muted small page-number" });
  const pager = h("div", { class: "pager" }, previous, position, next);
  const root = h("div", { class: "log-browser" }, form, exported, status, h("div", { class: "table-wrap" }, h("table", { class: "logs" }, h("thead", {}, head), body)), pager);

  let cursors = [null]; // cursors[n]: the cursor of page n (page 0 has none)
  let page = 0;
  let nextCursor = null;
  let generation = 0;

  function params() {
    const values = {};
    for (const filter of filters) {
      const value = form.elements[filter.name].value.trim();
      values[filter.name] = filter.kind === "datetime" ? isoFromInput(value) : value;
    }
    values.order = order.value;
    values.limit = sizes.value;
    if (traffic) values.traffic = currentTraffic();
    return values;
  }

  function toggleOrder() {
    order.value = order.value === "desc" ? "asc" : "desc";
    restart();
  }

  async function load() {
    const mine = ++generation;
    status.replaceChildren(loading("Loading tracking logs…"));
    previous.disabled = next.disabled = true;
    try {
      const asked = params();
      const answer = await fetchPage({ ...asked, cursor: cursors[page] ?? "" });
      if (mine !== generation) return;
      body.replaceChildren(
        ...answer.items.map((item) => tableRow(columns, columns.map((column) => column.cell(item)), { dataset: { eventId: item.event_id } })),
      );
      root.dataset.traffic = asked.traffic ?? "all";
      if (!answer.items.length) body.append(h("tr", {}, h("td", { class: "empty", colspan: columns.length }, "No tracking logs match.")));
      nextCursor = answer.next_cursor;
      status.replaceChildren();
      previous.disabled = page === 0;
      next.disabled = !nextCursor;
      position.textContent = `Page ${page + 1}`;
      const mark = head.querySelector(".sort-mark");
      if (mark) mark.textContent = order.value === "desc" ? " ↓" : " ↑";
    } catch (error) {
      if (mine === generation) status.replaceChildren(failure(error));
    }
  }

  function go(direction) {
    if (direction > 0 && nextCursor) {
      cursors = [...cursors.slice(0, page + 1), nextCursor];
      page += 1;
    } else if (direction < 0 && page > 0) {
      page -= 1;
    }
    load();
  }

  function restart() {
    cursors = [null];
    page = 0;
    load();
  }

  async function exportCsv() {
    exportButton.disabled = true;
    const original = exportButton.textContent;
    exportButton.textContent = "Exporting…";
    try {
      const parts = [];
      let cursor = "";
      for (let n = 0; n < MAX_EXPORT_PAGES; n += 1) {
        const response = await fetchCsv({ ...params(), limit: 200, cursor });
        const text = await response.text();
        parts.push(n === 0 ? text : text.slice(text.indexOf("\r\n") + 2)); // one header row
        cursor = response.headers.get("X-Next-Cursor") ?? "";
        if (!cursor) break;
      }
      const link = h("a", { href: URL.createObjectURL(new Blob(parts, { type: "text/csv" })), download: `${fileName}.csv` });
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
    } catch (error) {
      status.replaceChildren(failure(error));
    } finally {
      exportButton.disabled = false;
      exportButton.textContent = original;
    }
  }

  // Every matching log, however many: the export API writes the file in the background; this follows
  // it and links to the download (a presigned link, valid for an hour; the file is kept 7 days).
  async function exportFile(format) {
    for (const button of exportButtons) button.disabled = true;
    const kind = format.toUpperCase();
    exported.replaceChildren(loading(`Exporting every matching log as ${kind}…`));
    try {
      const body = { format };
      for (const [name, value] of Object.entries(params())) if (name !== "limit" && value) body[name] = value;
      const { id } = await startExport(body);
      let answer = await exportStatus(id);
      while (answer.status === "running") {
        exported.replaceChildren(loading(`Exporting as ${kind}… ${count(answer.rows)} logs so far`));
        await new Promise((resolve) => setTimeout(resolve, EXPORT_POLL_MS));
        answer = await exportStatus(id);
      }
      if (answer.status !== "succeeded") throw new Error(answer.error ?? "The export failed.");
      exported.replaceChildren(
        h("a", { href: answer.url, class: "export-download", dataset: { rows: answer.rows } }, `Download ${kind} (${count(answer.rows)} logs)`),
        " ",
        h("span", { class: "muted small" }, "The link works for an hour; the file is kept for 7 days."),
      );
    } catch (error) {
      exported.replaceChildren(failure(error));
    } finally {
      for (const button of exportButtons) button.disabled = false;
    }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    restart();
  });
  order.addEventListener("change", restart);
  sizes.addEventListener("change", restart);
  load();
  return root;
}
