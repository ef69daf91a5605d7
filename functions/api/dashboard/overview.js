// A delivery's Overview: indicator cards (the people's figures first, all traffic's beside them), what
// the machines did, the tracking test, and the chart, time to reach and breakdowns of the traffic chosen.

import { api } from "./api.js";
import { timelineChart } from "./chart.js";
import { count, failure, h, hours, money, percent, table, when } from "./dom.js";
import { trackingTestPanel } from "./trackingtest.js";
import { currentTraffic, machinePanel, trafficBar } from "./traffic.js";

const HEADLINE = [
  ["sent", "Sent", count],
  ["delivered", "Delivered", count],
  ["open_rate", "Open rate", percent],
  ["click_rate", "Click rate", percent],
  ["reactivity", "Reactivity", percent],
];
const DETAILS = [
  ["opens", "Opens", count, "recipients who opened"],
  ["total_opens", "Total opens", count, "open-pixel loads"],
  ["clicks", "Clicks", count, "recipients who clicked"],
  ["total_clicks", "Total clicks", count, "clicks on links"],
  ["person_clicks", "Person clicks", count, "browsers that clicked"],
  ["estimated_forwards", "Estimated forwards", count, "more persons than recipients"],
  ["opt_outs", "Opt-outs", count, "recipients who opted out"],
  ["mirror_page_views", "Mirror page views", count, "views in a browser"],
  ["page_views", "Page views", count, "site pages seen after a click"],
  ["transactions", "Transactions", count, "purchases after a click"],
  ["transaction_amount", "Transaction amount", amounts, "per currency"],
];
const HOURLY_UP_TO = 72; // hours of activity shown per hour; longer ones per day

/** The transaction amount per currency, one line each in currency-code order: {"EUR": 62.4}. */
function amounts(perCurrency) {
  const entries = Object.entries(perCurrency ?? {}).sort(([a], [b]) => a.localeCompare(b));
  if (!entries.length) return "–";
  return entries.map(([currency, amount]) => h("div", { class: "amount", dataset: { currency } }, money(amount, currency)));
}

// An indicator that has a human counterpart shows the people's figure, all traffic's beside it.
function card([field, title, show, note], stats) {
  const human = stats.human && field in stats.human;
  return h(
    "div",
    { class: "card", dataset: { indicator: field, traffic: human ? "human" : "all" } },
    h("div", { class: "card-label" }, title, human ? h("span", { class: "card-tag" }, " people") : null),
    h("div", { class: "card-value" }, show(human ? stats.human[field] : stats[field])),
    human ? h("div", { class: "card-all" }, "All traffic ", h("span", { class: "card-all-value" }, show(stats[field]))) : null,
    note ? h("div", { class: "card-note" }, note) : null,
  );
}

export async function overview(content, deliveryId) {
  const stats = await api.statistics(deliveryId, { traffic: currentTraffic() });
  const counted = h("div", { class: "counted" });
  let generation = 0;
  const recount = async (traffic) => {
    const mine = ++generation;
    counted.setAttribute("aria-busy", "true");
    try {
      const figures = await api.statistics(deliveryId, { traffic });
      if (mine === generation) counted.replaceChildren(...overTime(figures));
    } catch (error) {
      if (mine === generation) counted.replaceChildren(failure(error));
    }
    if (mine === generation) counted.dataset.traffic = traffic;
    counted.removeAttribute("aria-busy");
  };
  counted.replaceChildren(...overTime(stats));
  counted.dataset.traffic = stats.traffic ?? "all";
  content.replaceChildren(
    h("div", { class: "cards headline" }, HEADLINE.map((field) => card(field, stats))),
    h("div", { class: "cards" }, DETAILS.map((field) => card(field, stats))),
    machinePanel(stats),
    trackingTestPanel(deliveryId),
    trafficBar("in the chart, the time to reach and the breakdowns", recount),
    counted,
  );
}

/** The sections that count the traffic the switch chose: the chart, the time to reach, the breakdowns. */
function overTime(stats) {
  const chartHolder = h("div", { class: "chart-holder" });
  const spanHours = stats.timeline.length
    ? (Date.parse(stats.timeline.at(-1).at) - Date.parse(stats.timeline[0].at)) / 3_600_000 + 1
    : 0;
  let interval = spanHours > HOURLY_UP_TO ? "day" : "hour";
  const toggle = h("div", { class: "toggle", role: "group", "aria-label": "Interval" });
  const drawChart = () => {
    const points = interval === "day" ? stats.timeline_daily : stats.timeline;
    const chart = timelineChart(points, interval);
    chartHolder.replaceChildren(chart ?? h("p", { class: "empty" }, "No opens or clicks yet."));
    for (const button of toggle.children) button.classList.toggle("active", button.dataset.interval === interval);
  };
  for (const [value, label] of [
    ["hour", "Per hour"],
    ["day", "Per day"],
  ]) {
    toggle.append(
      h(
        "button",
        {
          type: "button",
          dataset: { interval: value },
          onclick: () => {
            interval = value;
            drawChart();
          },
        },
        label,
      ),
    );
  }
  drawChart();

  const reach = stats.time_to_reach;
  return [
    h(
      "section",
      { class: "panel" },
      h(
        "div",
        { class: "panel-head" },
        h("h2", {}, "Opens and clicks over time"),
        h("div", { class: "legend" }, h("span", {}, h("span", { class: "swatch opens" }), "Opens (pixel loads)"), h("span", {}, h("span", { class: "swatch clicks" }), "Clicks")),
        toggle,
      ),
      chartHolder,
    ),
    h(
      "section",
      { class: "panel" },
      h("h2", {}, "How fast opens and clicks came in"),
      h("p", { class: "muted small" }, reach.since ? `Counted in whole hours from ${when(reach.since)}, the first hour with an open or a click.` : "No opens or clicks yet."),
      table(
        [{ title: "" }, { title: "Half of them within", numeric: true }, { title: "90 % of them within", numeric: true }],
        [
          ["Opens", hours(reach.opens.hours_to_50_percent), hours(reach.opens.hours_to_90_percent)],
          ["Clicks", hours(reach.clicks.hours_to_50_percent), hours(reach.clicks.hours_to_90_percent)],
        ],
      ),
    ),
    h(
      "section",
      { class: "panel" },
      h("h2", {}, "Breakdowns"),
      h(
        "div",
        { class: "grid-4" },
        breakdown("Browser", stats.breakdowns.browser, "events"),
        breakdown("Operating system", stats.breakdowns.os, "events"),
        breakdown("Device", stats.breakdowns.device, "events"),
      ),
      h("h3", {}, "Email domain (recipients, rated against messages sent to the domain)"),
      table(
        [
          { title: "Domain" },
          { title: "Sent", numeric: true },
          { title: "Opens", numeric: true },
          { title: "Open rate", numeric: true },
          { title: "Clicks", numeric: true },
          { title: "Click rate", numeric: true },
        ],
        stats.breakdowns.domain.map((row) => [row.name, count(row.sent), count(row.opens), percent(row.open_rate), count(row.clicks), percent(row.click_rate)]),
      ),
    ),
  ];
}

function breakdown(title, rows, unit) {
  return h(
    "div",
    { class: "breakdown" },
    h("h3", {}, title),
    table(
      [{ title: "Name" }, { title: `Opens (${unit})`, numeric: true }, { title: `Clicks (${unit})`, numeric: true }],
      rows.map((row) => [row.name, count(row.opens), count(row.clicks)]),
    ),
  );
}
