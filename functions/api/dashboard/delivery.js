// A delivery's Tracking tab: its tabs (the Overview lives in overview.js), URLs and click streams, link
// settings, hot clicks, tracking logs.

import { api } from "./api.js";
import { compactWhen, confirmedAction, count, externalLink, failure, h, inputFromIso, isoFromInput, loading, shareCell, table, when } from "./dom.js";
import { AMOUNT_COLUMN, LOG_TYPES, MACHINE_COLUMN, logBrowser } from "./logtable.js";
import { overview } from "./overview.js";
import { currentTraffic, trafficBar } from "./traffic.js";

const TABS = [
  ["overview", "Overview"],
  ["urls", "URLs & click streams"],
  ["links", "Link settings"],
  ["hot-clicks", "Hot clicks"],
  ["logs", "Tracking logs"],
];
const TOP_MOVES = 20;
const TOP_PAGES = 20;
const CATEGORY = { click: "Click", opt_out: "Opt-out", mirror: "Mirror page" };

export function deliveryView(view, deliveryId, tabName) {
  const current = TABS.some(([name]) => name === tabName) ? tabName : "overview";
  const base = `#/deliveries/${encodeURIComponent(deliveryId)}`;
  const title = h("h1", {}, "Delivery");
  const subtitle = h("p", { class: "muted small" }, h("span", { class: "mono" }, deliveryId));
  const content = h("div", {}, loading());
  view.replaceChildren(
    h(
      "div",
      { class: "page-head" },
      h("p", { class: "small" }, h("a", { href: "#/deliveries" }, "← Deliveries")),
      title,
      subtitle,
      deleteControl(deliveryId),
    ),
    h(
      "nav",
      { class: "tabs", "aria-label": "Tracking tab" },
      TABS.map(([name, label]) => h("a", { href: `${base}/${name}`, class: name === current ? "active" : null, dataset: { tab: name } }, label)),
    ),
    content,
  );
  const delivery = api.delivery(deliveryId);
  delivery
    .then((found) => {
      title.textContent = found.label;
      subtitle.replaceChildren(
        h("span", { class: "mono" }, found.id),
        ` · created ${when(found.created_at)} · ${found.urls.length} links · `,
        found.track_opens ? "opens tracked" : "opens not tracked",
        ", ",
        found.track_clicks ? "clicks tracked" : "clicks not tracked",
      );
    })
    .catch((error) => content.replaceChildren(failure(error)));
  const render = { overview, urls: urlsTab, links: linkSettings, "hot-clicks": hotClicks, logs }[current];
  render(content, deliveryId, delivery).catch((error) => content.replaceChildren(failure(error)));
}

// --- URLs and click streams ------------------------------------------------------------------------

async function urlsTab(content, deliveryId) {
  const groupBy = h(
    "select",
    { name: "group_by", "aria-label": "Group by" },
    [
      ["", "No grouping"],
      ["url", "Target URL"],
      ["label", "Label"],
      ["category", "Category"],
    ].map(([value, label]) => h("option", { value }, label)),
  );
  const since = h("input", { type: "datetime-local", name: "since", step: 1, "aria-label": "Since (UTC)" });
  const until = h("input", { type: "datetime-local", name: "until", step: 1, "aria-label": "Until (UTC)" });
  const firstHours = h("button", { type: "button", class: "quiet" }, "First 6 hours");
  const clear = h("button", { type: "button", class: "quiet" }, "Whole delivery");
  const form = h(
    "form",
    { class: "filters", "aria-label": "URL report options" },
    h("label", {}, "Group by", groupBy),
    h("label", {}, "Since (UTC)", since),
    h("label", {}, "Until (UTC)", until),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Apply"), firstHours, clear),
  );
  const report = h("div", {}, loading("Loading the URL report…"));
  const streams = h("div", {}, loading("Loading click streams…"));
  content.replaceChildren(
    trafficBar("in the URL table and the click streams", () => Promise.all([showReport(), showStreams()])),
    h("section", { class: "panel" }, h("h2", {}, "Tracked URLs"), form, report),
    h("section", { class: "panel" }, h("h2", {}, "Click streams"), h("p", { class: "muted small" }, "The order in which recipients clicked the links: a link clicked again straight away counts once."), streams),
  );

  let labels = new Map();
  let reports = 0;
  const showReport = async () => {
    const mine = ++reports;
    const traffic = currentTraffic();
    report.replaceChildren(loading("Loading the URL report…"));
    try {
      const answer = await api.urls(deliveryId, { group_by: groupBy.value, since: isoFromInput(since.value), until: isoFromInput(until.value) });
      labels = new Map(answer.urls.map((url) => [url.id, url.label]));
      if (mine === reports) report.replaceChildren(urlTables(answer, traffic));
    } catch (error) {
      if (mine === reports) report.replaceChildren(failure(error));
    }
    return labels;
  };
  let streamReads = 0;
  const showStreams = async () => {
    const mine = ++streamReads;
    const traffic = currentTraffic();
    try {
      const paths = await api.clickStreams(deliveryId, { limit: 20, traffic });
      const known = labels.size ? labels : await showReport();
      if (mine === streamReads) streams.replaceChildren(clickStreams(paths, known, traffic));
    } catch (error) {
      if (mine === streamReads) streams.replaceChildren(failure(error));
    }
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    showReport();
  });
  clear.addEventListener("click", () => {
    since.value = until.value = "";
    groupBy.value = "";
    showReport();
  });
  firstHours.addEventListener("click", async () => {
    const stats = await api.statistics(deliveryId).catch(() => null);
    const start = stats?.time_to_reach?.since;
    if (!start) return;
    since.value = inputFromIso(start);
    until.value = inputFromIso(new Date(Date.parse(start) + 6 * 3_600_000).toISOString());
    showReport();
  });

  await showReport();
  await showStreams();
}

// What a URL row (or group) counts for the traffic chosen: people's clicks, or every click.
const URL_FIGURES = {
  human: { clicks: "human_clicks", distinct: "human_distinct_clicks", share: "human_share" },
  all: { clicks: "clicks", distinct: "distinct_clicks", share: "share" },
};

function urlTables(answer, traffic) {
  const figures = URL_FIGURES[traffic];
  const rows = [...answer.urls].sort((a, b) => b[figures.clicks] - a[figures.clicks] || a.label.localeCompare(b.label));
  const parts = [];
  if (answer.since || answer.until) {
    parts.push(h("p", { class: "muted small" }, `Counted from ${when(answer.since)} until ${when(answer.until)}.`));
  }
  if (traffic === "human") {
    parts.push(h("p", { class: "muted small" }, "People's clicks only; the first and last click are of all traffic."));
  }
  parts.push(
    table(
      [
        { title: "Link" },
        { title: "Target", class: "url" },
        { title: "Category" },
        { title: "Clicks", numeric: true },
        { title: "Distinct", numeric: true },
        { title: "Share", numeric: true },
        { title: "First click (UTC)", class: "when" },
        { title: "Last click (UTC)", class: "when" },
      ],
      rows.map((url) => [
        h("span", { class: "url-label" }, url.label, url.tracked ? null : h("span", { class: "badge" }, " not tracked")),
        externalLink(url.url),
        CATEGORY[url.category] ?? url.category,
        count(url[figures.clicks]),
        count(url[figures.distinct]),
        shareCell(url[figures.share]),
        compactWhen(url.first_click),
        compactWhen(url.last_click),
      ]),
      { empty: "This delivery has no tracked URLs." },
    ),
  );
  if (answer.groups) {
    const names = new Map(answer.urls.map((url) => [url.id, url.label]));
    parts.push(
      h("h3", {}, "Groups"),
      table(
        [{ title: "Group" }, { title: "Links" }, { title: "Clicks", numeric: true }, { title: "Share", numeric: true }],
        [...answer.groups].sort((a, b) => b[figures.clicks] - a[figures.clicks] || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0)).map((group) => [
          CATEGORY[group.key] ?? group.key,
          group.url_ids.map((id) => names.get(id) ?? id).join(", "),
          count(group[figures.clicks]),
          shareCell(group[figures.share]),
        ]),
      ),
    );
  }
  return h("div", { class: "url-report", dataset: { traffic } }, parts);
}

function step(labels, urlId) {
  return h("span", { class: "step", title: `link ${urlId}` }, labels.get(urlId) ?? `link ${urlId}`);
}

function clickStreams(answer, labels, traffic) {
  const pathRows = answer.paths.map((path) => [
    h(
      "div",
      { class: "path" },
      path.url_ids.flatMap((urlId, index) => (index ? [h("span", { class: "arrow" }, "→"), step(labels, urlId)] : [step(labels, urlId)])),
      path.cut_short ? h("span", { class: "arrow" }, "→ …") : null,
    ),
    count(path.recipients),
    shareCell(path.share),
  ]);
  const moves = answer.transitions.map((move) => [step(labels, move.from_url_id), step(labels, move.to_url_id), count(move.count)]);
  const pages = (answer.pages ?? []).map((visit) => [step(labels, visit.after_url_id), externalLink(visit.url), count(visit.views)]);
  const pageColumns = [{ title: "After a click on" }, { title: "Page", class: "page-url" }, { title: "Views", numeric: true }];
  return h(
    "div",
    { class: "click-streams", dataset: { traffic } },
    h(
      "div",
      { class: "grid-2" },
      h(
        "div",
        { class: "paths" },
        h("h3", {}, `Top paths · ${count(answer.recipients)} ${answer.recipients === 1 ? "recipient" : "recipients"} clicked`),
        table([{ title: "Path" }, { title: "Recipients", numeric: true }, { title: "Share", numeric: true }], pathRows, { empty: "Nobody has clicked yet." }),
        answer.other_recipients
          ? h("p", { class: "muted small" }, `${count(answer.other_recipients)} more ${answer.other_recipients === 1 ? "recipient" : "recipients"} followed other paths.`)
          : null,
      ),
      h(
        "div",
        { class: "transitions" },
        h("h3", {}, "Link to link"),
        topRows([{ title: "From" }, { title: "Then" }, { title: "Times", numeric: true }], moves, TOP_MOVES, "moves", "Nobody has clicked a second link yet."),
      ),
    ),
    h(
      "div",
      { class: "pages-after" },
      h("h3", {}, "Pages visited after each link (web tracking)"),
      topRows(pageColumns, pages, TOP_PAGES, "pages", "No page of a tracked site has been visited after a click yet."),
      answer.other_pages
        ? h("p", { class: "muted small" }, `${count(answer.other_pages)} more ${answer.other_pages === 1 ? "page view" : "page views"} on pages not listed.`)
        : null,
    ),
  );
}

/** The first rows of a table, and a button that shows them all. */
function topRows(columns, rows, top, noun, empty) {
  const shown = h("div", {}, table(columns, rows.slice(0, top), { empty }));
  const showAll = h("button", { type: "button", class: "quiet", hidden: rows.length <= top }, `Show all ${count(rows.length)} ${noun}`);
  showAll.addEventListener("click", () => {
    shown.replaceChildren(table(columns, rows));
    showAll.hidden = true;
  });
  return h("div", {}, shown, h("div", { class: "pager" }, showAll));
}

// --- hot clicks ------------------------------------------------------------------------------------

async function hotClicks(content, deliveryId) {
  const shown = h("div", {}, loading());
  let generation = 0;
  const show = async (traffic) => {
    const mine = ++generation;
    try {
      const answer = await api.hotClicks(deliveryId, { traffic });
      if (mine === generation) shown.replaceChildren(hotClicksOf(answer, traffic));
    } catch (error) {
      if (mine === generation) shown.replaceChildren(failure(error));
    }
  };
  content.replaceChildren(trafficBar("in the shares of clicks", show), shown);
  await show(currentTraffic());
}

function hotClicksOf(answer, traffic) {
  const whose = traffic === "human" ? "people's clicks" : "all clicks";
  const frame = h("iframe", { class: "preview", sandbox: "", referrerpolicy: "no-referrer", title: `The message, each link marked with its share of ${whose}` });
  frame.srcdoc = answer.html; // sandbox="" first: the message runs no script and has no origin
  return h(
    "div",
    { class: "hot", dataset: { traffic } },
    h(
      "section",
      { class: "panel" },
      h("h2", {}, traffic === "human" ? "Share of people's clicks per link" : "Share of clicks per link"),
      table(
        [{ title: "Link" }, { title: "Clicks", numeric: true }, { title: "Share", numeric: true }],
        answer.links.map((link) => [
          h("div", {}, h("span", { class: "url-label" }, link.label), h("span", { class: "target", title: link.url }, link.url)),
          count(link.clicks),
          shareCell(link.percent),
        ]),
        { empty: "This delivery has no click links." },
      ),
    ),
    h("section", { class: "panel" }, h("h2", {}, "The message"), h("p", { class: "muted small" }, `Each click link is preceded by its share of ${whose}.`), frame),
  );
}

// --- tracking logs ---------------------------------------------------------------------------------

async function logs(content, deliveryId, delivery) {
  const found = await delivery;
  const urlOptions = [["", "Any link"], ...found.urls.map((url) => [url.id, `${url.label} (${CATEGORY[url.category] ?? url.category})`])];
  content.replaceChildren(
    h(
      "section",
      { class: "panel" },
      h("h2", {}, "Tracking logs"),
      logBrowser({
        fileName: `tracking-logs-${deliveryId}`,
        filters: [
          { name: "type", label: "Type", kind: "select", options: LOG_TYPES },
          { name: "recipient_id", label: "Recipient", kind: "text", placeholder: "recipient id" },
          { name: "url_id", label: "Link", kind: "select", options: urlOptions },
          { name: "since", label: "Since (UTC)", kind: "datetime" },
          { name: "until", label: "Until (UTC)", kind: "datetime" },
        ],
        columns: [
          { title: "When", cell: (log) => when(log.at), class: "when", sortsBy: true },
          { title: "Type", cell: (log) => h("span", { class: `badge ${log.type}` }, log.type.replace("_", "-")) },
          { title: "Recipient", cell: (log) => h("a", { href: `#/recipients/${encodeURIComponent(log.recipient_id)}` }, log.recipient_id) },
          { title: "Link", cell: (log) => log.label ?? "–" },
          { title: "Target", cell: (log) => (log.url ? externalLink(log.url) : "–"), class: "url" },
          AMOUNT_COLUMN,
          { title: "Browser", cell: (log) => log.browser ?? "–" },
          { title: "OS", cell: (log) => log.os ?? "–" },
          { title: "Device", cell: (log) => log.device ?? "–" },
          { title: "Proof", cell: (log) => (log.proof ? "proof" : "") },
          MACHINE_COLUMN,
        ],
        fetchPage: (params) => api.logs(deliveryId, params),
        fetchCsv: (params) => api.logsCsv(deliveryId, params),
        startExport: (body) => api.startExport(deliveryId, body),
        exportStatus: (exportId) => api.exportStatus(exportId),
        traffic: true,
      }),
    ),
  );
}

// --- deleting the delivery -------------------------------------------------------------------------

function deleteControl(deliveryId) {
  return confirmedAction({
    label: "Delete delivery…",
    question: "Delete this delivery? Its reports go away, and links already sent will show a neutral page.",
    actions: { ask: "delete", confirm: "confirm-delete" },
    perform: async () => {
      await api.deleteDelivery(deliveryId);
      location.hash = "#/deliveries";
    },
  });
}

// --- link settings: tracked, label, category of each URL ---------------------------------------------

async function linkSettings(content, deliveryId, delivery) {
  const found = await delivery;
  const columns = [{ title: "#" }, { title: "Target", class: "url" }, { title: "Label" }, { title: "Category" }, { title: "Tracked" }, { title: "" }];
  const rows = found.urls.map((url) => linkRow(deliveryId, url));
  content.replaceChildren(
    h(
      "section",
      { class: "panel" },
      h("h2", {}, "Link settings"),
      h(
        "p",
        { class: "muted small" },
        "A link turned off keeps redirecting in messages already sent, but its later clicks are not counted. Labels and categories show in the reports.",
      ),
      table(columns, rows, { empty: "This delivery has no links." }),
    ),
  );
}

function linkRow(deliveryId, url) {
  const label = h("input", { type: "text", name: "label", value: url.label, maxlength: 500, "aria-label": `Label of link ${url.id}` });
  const category = h(
    "select",
    { name: "category", "aria-label": `Category of link ${url.id}` },
    Object.entries(CATEGORY).map(([value, text]) => h("option", { value, selected: value === url.category }, text)),
  );
  const tracked = h("input", { type: "checkbox", name: "tracked", checked: url.tracked, "aria-label": `Track link ${url.id}` });
  const save = h("button", { type: "button", dataset: { action: "save-link" } }, "Save");
  const status = h("span", { class: "small", role: "status" });
  save.addEventListener("click", async () => {
    save.disabled = true;
    status.replaceChildren();
    try {
      const saved = await api.changeUrl(deliveryId, url.id, { label: label.value.trim(), category: category.value, tracked: tracked.checked });
      label.value = saved.label;
      category.value = saved.category;
      tracked.checked = saved.tracked;
      status.textContent = "Saved";
    } catch (error) {
      status.replaceChildren(failure(error));
    } finally {
      save.disabled = false;
    }
  });
  return [h("span", { class: "mono" }, url.id), externalLink(url.url), label, category, tracked, h("span", {}, save, " ", status)];
}
