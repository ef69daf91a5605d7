// People or all traffic: the switch the delivery's reports share, and what the machines did.
//
// A machine hit (Apple's Mail Privacy Protection prefetch, a link scanner, a bot) still counts in the
// all-traffic figures; the human ones leave it out. The switch's choice is kept for this browser tab,
// so every tab of every delivery counts the same traffic until it is switched back.

import { count, h, percent, shareCell, table } from "./dom.js";

const KEY = "msgtrack.traffic";
const CHOICES = [
  ["human", "People", "Only the hits no machine made"],
  ["all", "All traffic", "Every hit, machines included"],
];
export const MACHINE_KINDS = {
  apple_mpp: ["Apple Mail Privacy Protection", "pixels prefetched by Apple's proxies when a message reaches the device"],
  scanner: ["Link scanners", "security gateways following links at delivery, the honeypot link and its burst"],
  bot: ["Bots", "HTTP libraries, crawlers, monitors, headless browsers"],
};

/** "human" (the default) or "all". */
export function currentTraffic() {
  return sessionStorage.getItem(KEY) === "all" ? "all" : "human";
}

/** A two-button switch, People | All traffic; onChange(traffic) after the choice is kept. */
export function trafficSwitch(onChange) {
  const group = h("div", { class: "toggle traffic-switch", role: "group", "aria-label": "Traffic counted" });
  const draw = () => {
    for (const button of group.children) {
      const on = button.dataset.traffic === currentTraffic();
      button.classList.toggle("active", on);
      button.setAttribute("aria-pressed", String(on));
    }
  };
  for (const [value, label, title] of CHOICES) {
    const button = h("button", { type: "button", title, dataset: { traffic: value } }, label);
    button.addEventListener("click", () => {
      if (value === currentTraffic()) return;
      sessionStorage.setItem(KEY, value);
      draw();
      onChange(value);
    });
    group.append(button);
  }
  draw();
  return group;
}

/** The switch with a line saying what it changes: "Counting: [People | All traffic] what". */
export function trafficBar(what, onChange) {
  return h("div", { class: "traffic-bar" }, h("span", { class: "small muted" }, "Counting"), trafficSwitch(onChange), h("span", { class: "small muted" }, what));
}

/** What the machines did: their share of opens and clicks, and their logged hits per kind. */
export function machinePanel(stats) {
  const machine = stats.machine ?? { total_opens: 0, total_clicks: 0, by_kind: {} };
  const kinds = Object.entries(machine.by_kind ?? {}).sort(([a, x], [b, y]) => y - x || a.localeCompare(b));
  const hits = kinds.reduce((sum, [, n]) => sum + n, 0);
  const share = (part, whole) => (whole ? Math.round((part * 10_000) / whole) / 100 : 0);
  const fact = (name, title, part, whole, noun) =>
    h(
      "div",
      { dataset: { machine: name } },
      h("dt", {}, title),
      h("dd", {}, `${percent(share(part, whole))}`, h("span", { class: "muted small" }, ` · ${count(part)} of ${count(whole)} ${noun}`)),
    );
  return h(
    "section",
    { class: "panel machine-traffic", "aria-labelledby": "machine-traffic-title" },
    h(
      "div",
      { class: "panel-head" },
      h("h2", { id: "machine-traffic-title" }, "Machine traffic"),
      h("a", { href: "#/machine-detection", class: "small" }, "Machine detection settings"),
    ),
    h("p", { class: "muted small" }, "Hits no person made. They count in the all-traffic figures and are left out of the people figures."),
    h(
      "dl",
      { class: "facts" },
      fact("opens", "Machine share of open-pixel loads", machine.total_opens, stats.total_opens, "loads"),
      fact("clicks", "Machine share of clicks on links", machine.total_clicks, stats.total_clicks, "clicks"),
    ),
    h("h3", {}, "Per kind (logged hits, the honeypot link's included)"),
    table(
      [{ title: "Kind" }, { title: "What it is" }, { title: "Hits", numeric: true }, { title: "Share of machine hits", numeric: true }],
      kinds.map(([kind, n]) => [
        h("span", { class: "machine-kind", dataset: { kind } }, MACHINE_KINDS[kind]?.[0] ?? kind),
        h("span", { class: "muted small" }, MACHINE_KINDS[kind]?.[1] ?? ""),
        count(n),
        shareCell(share(n, hits)),
      ]),
      { empty: "No machine hits so far." },
    ),
  );
}
