// URL rules: the account-wide patterns of links never tracked and always tracked, applied when a
// delivery is registered (GET/PUT /api/settings/url-tracking).

import { api } from "./api.js";
import { count, failure, h, loading } from "./dom.js";

const LISTS = [
  ["never_track", "Never tracked", "https://intranet.example/*"],
  ["always_track", "Always tracked (wins over never tracked)", "https://shop.example/*"],
];

/** One pattern per line; blank lines and the spaces around a pattern left out. */
function patterns(text) {
  return text
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter(Boolean);
}

function savedState(rules) {
  const line = (name, title) => h("li", { dataset: { saved: name } }, `${title}: ${count(rules[name].length)} ${rules[name].length === 1 ? "pattern" : "patterns"}`);
  return h("ul", { class: "saved-state small" }, line("never_track", "Never tracked"), line("always_track", "Always tracked"));
}

const same = (a, b) => a.length === b.length && a.every((value, index) => value === b[index]);

export function urlRulesView(view) {
  const areas = Object.fromEntries(
    LISTS.map(([name, title, example]) => [name, h("textarea", { name, rows: 8, spellcheck: "false", placeholder: example, "aria-label": title })]),
  );
  const save = h("button", { type: "submit" }, "Save rules");
  const said = h("div", { role: "alert", class: "form-message" });
  const saved = h("div", { class: "saved" });
  const unsaved = h("span", { class: "muted small", hidden: true, dataset: { state: "unsaved" } }, "Changes not saved yet");
  let current = null;
  const form = h(
    "form",
    { class: "rules-form", "aria-label": "URL rules" },
    h(
      "div",
      { class: "grid-2" },
      LISTS.map(([name, title]) => h("label", {}, `${title}, one pattern per line`, areas[name])),
    ),
    h("div", { class: "actions" }, save, unsaved),
    said,
  );
  const content = h("section", { class: "panel" }, loading("Loading the URL rules…"));
  view.replaceChildren(
    h(
      "div",
      { class: "page-head" },
      h("h1", {}, "URL rules"),
      h(
        "p",
        { class: "muted small" },
        "Patterns match a link's full URL: * any characters, ? one character, [abc] one of those characters. They apply to deliveries registered from now on; those registered before keep their links as they are. A link's own data-track=\"none\" wins over both lists.",
      ),
    ),
    content,
  );

  const typed = () => Object.fromEntries(LISTS.map(([name]) => [name, patterns(areas[name].value)]));
  const show = (rules) => {
    current = rules;
    for (const [name] of LISTS) areas[name].value = rules[name].join("\n");
    saved.replaceChildren(h("h3", {}, "Saved"), savedState(rules));
    unsaved.hidden = true;
  };
  form.addEventListener("input", () => {
    const now = typed();
    unsaved.hidden = LISTS.every(([name]) => same(now[name], current[name]));
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    save.disabled = true;
    said.replaceChildren();
    try {
      const rules = await api.saveUrlTrackingRules(typed());
      show(rules);
      said.replaceChildren(h("p", { class: "notice" }, "Saved: deliveries registered from now on follow these rules."));
    } catch (error) {
      said.replaceChildren(failure(error));
    } finally {
      save.disabled = false;
    }
  });
  api
    .urlTrackingRules()
    .then((rules) => {
      show(rules);
      content.replaceChildren(h("h2", {}, "Patterns"), form, saved);
    })
    .catch((error) => content.replaceChildren(failure(error)));
}
