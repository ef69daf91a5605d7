// Machine detection: the built-in lists (read-only, with their sources) and the operator's own ranges,
// User-Agent patterns, honeypot link and burst window (GET/PUT /api/settings/machine-detection).

import { api } from "./api.js";
import { count, externalLink, failure, h, loading, table } from "./dom.js";
import { MACHINE_KINDS } from "./traffic.js";

const LISTS = {
  ranges: { field: "cidr", noun: "range", title: "Your network ranges", label: "CIDR", input: "CIDR of range", placeholder: "203.0.113.0/24", add: "Add a range" },
  user_agents: {
    field: "pattern",
    noun: "pattern",
    title: "Your User-Agent patterns",
    label: "Pattern (a case-insensitive part of the User-Agent)",
    input: "User-Agent pattern",
    placeholder: "AcmeLinkCheck",
    add: "Add a pattern",
  },
};
const PROBLEM_PLACE = /^(ranges|user_agents)(?:\[(\d+)\]|\.(\d+))/;

/** The API's 422 message, one problem a line: "ranges[0]: …; burst_seconds must be …". */
function problems(message) {
  return message
    .split("; ")
    .map((text) => text.trim())
    .filter(Boolean);
}

/** "ranges[1]: …" as the page numbers its rows, "Range 2: …" ("ranges.0.kind: …" → "Range 1, kind: …"). */
function readable(problem) {
  const place = problem.match(PROBLEM_PLACE);
  if (!place) return problem;
  const noun = LISTS[place[1]].noun;
  const rest = problem.slice(place[0].length).replace(/^\./, ", ");
  return `${noun[0].toUpperCase()}${noun.slice(1)} ${Number(place[2] ?? place[3]) + 1}${rest}`;
}

function kindSelect(kind, label) {
  return h(
    "select",
    { name: "kind", "aria-label": label },
    Object.entries(MACHINE_KINDS).map(([value, [name]]) => h("option", { value, selected: value === kind }, `${name} (${value})`)),
  );
}

/** One editable list (ranges or patterns): a row per entry with its kind, add and remove. */
function entryList(name, changed) {
  const spec = LISTS[name];
  const body = h("tbody");
  const empty = h("p", { class: "muted small" }, `No ${spec.noun}s of your own.`);
  const renumber = () => {
    [...body.children].forEach((row, index) => {
      const n = index + 1;
      row.querySelector("input").setAttribute("aria-label", `${spec.input} ${n}`);
      row.querySelector("select").setAttribute("aria-label", `Kind of ${spec.noun} ${n}`);
      row.querySelector("button").setAttribute("aria-label", `Remove ${spec.noun} ${n}`);
    });
    empty.hidden = body.children.length > 0;
  };
  const addRow = (entry = { [spec.field]: "", kind: "scanner" }) => {
    const input = h("input", { type: "text", name: spec.field, value: entry[spec.field], placeholder: spec.placeholder, spellcheck: "false", autocomplete: "off" });
    const remove = h("button", { type: "button", class: "quiet small", dataset: { action: "remove" } }, "Remove");
    const row = h("tr", { dataset: { list: name } }, h("td", {}, input), h("td", {}, kindSelect(entry.kind, "")), h("td", {}, remove));
    remove.addEventListener("click", () => {
      row.remove();
      renumber();
      changed();
    });
    body.append(row);
    renumber();
    return input;
  };
  const add = h("button", { type: "button", class: "quiet", dataset: { action: `add-${name}` } }, spec.add);
  add.addEventListener("click", () => {
    addRow().focus();
    changed();
  });
  const element = h(
    "fieldset",
    { class: "entries", dataset: { list: name } },
    h("legend", {}, spec.title),
    h("div", { class: "table-wrap" }, h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, spec.label), h("th", {}, "Kind"), h("th", {}, h("span", { class: "visually-hidden" }, "Remove")))), body)),
    empty,
    add,
  );
  return {
    element,
    show(entries) {
      body.replaceChildren();
      entries.forEach((entry) => addRow(entry));
      renumber();
    },
    // Blank rows are left out: an empty line is not an entry.
    read: () =>
      [...body.children]
        .map((row) => ({ [spec.field]: row.querySelector("input").value.trim(), kind: row.querySelector("select").value }))
        .filter((entry) => entry[spec.field]),
    rows: () => [...body.children].filter((row) => row.querySelector("input").value.trim()),
  };
}

function builtinLists(builtin) {
  return h(
    "section",
    { class: "panel builtin" },
    h("h2", {}, "Built-in lists"),
    h(
      "p",
      { class: "muted small" },
      `Shipped with msgtrack, updated ${builtin.updated}; read-only here (a deployment changes them). Your entries come first, and the narrowest network wins.`,
    ),
    h(
      "details",
      { dataset: { builtin: "ranges" } },
      h("summary", {}, `Network ranges (${count(builtin.ranges.length)})`),
      table(
        [{ title: "CIDR" }, { title: "Kind" }, { title: "Source", class: "url" }],
        builtin.ranges.map((range) => [h("span", { class: "mono" }, range.cidr), range.kind, externalLink(range.source)]),
      ),
    ),
    h(
      "details",
      { dataset: { builtin: "user_agents" } },
      h("summary", {}, `User-Agent patterns (${count(builtin.user_agents.length)})`),
      table(
        [{ title: "Pattern (a case-insensitive part of the User-Agent)" }, { title: "Kind" }],
        builtin.user_agents.map((agent) => [h("span", { class: "mono" }, agent.pattern), agent.kind]),
      ),
    ),
  );
}

export function machineDetectionView(view) {
  const honeypot = h("input", { type: "checkbox", name: "honeypot" });
  const burst = h("input", { type: "number", name: "burst_seconds", min: 1, max: 300, step: 1, inputmode: "numeric", "aria-describedby": "burst-help" });
  const unsaved = h("span", { class: "muted small", hidden: true, dataset: { state: "unsaved" } }, "Changes not saved yet");
  const changed = () => {
    unsaved.hidden = false;
  };
  const lists = { ranges: entryList("ranges", changed), user_agents: entryList("user_agents", changed) };
  const save = h("button", { type: "submit" }, "Save settings");
  const said = h("div", { role: "alert", class: "form-message", id: "machine-detection-message" });
  const form = h(
    "form",
    { class: "rules-form machine-form", "aria-label": "Machine detection settings", novalidate: true },
    h(
      "fieldset",
      {},
      h("legend", {}, "Honeypot link"),
      h("label", { class: "check" }, honeypot, "Add a honeypot link to each HTML message (hidden from people: a hit on it is a scanner)"),
      h("label", {}, "Burst window, seconds (1 to 300)", burst),
      h("p", { class: "muted small", id: "burst-help" }, "Every hit on the same message from the same address this long before or after a honeypot hit is a scanner's too."),
    ),
    lists.ranges.element,
    lists.user_agents.element,
    h("div", { class: "actions" }, save, unsaved),
    said,
  );
  form.addEventListener("input", changed);
  form.addEventListener("change", changed);
  const content = h("section", { class: "panel" }, loading("Loading the machine detection settings…"));
  const builtin = h("div");
  view.replaceChildren(
    h(
      "div",
      { class: "page-head" },
      h("h1", {}, "Machine detection"),
      h(
        "p",
        { class: "muted small" },
        "Which hits machines made: Apple's Mail Privacy Protection prefetches, link scanners, bots. Changes apply to hits recorded from now on (each tracking endpoint rereads them within a minute); hits already recorded keep their verdict.",
      ),
    ),
    content,
    builtin,
  );

  const invalid = () => [burst, ...form.querySelectorAll("tr[data-list] input, tr[data-list] select")];
  const markProblems = (found) => {
    for (const field of invalid()) {
      field.removeAttribute("aria-invalid");
      if (field !== burst) field.removeAttribute("aria-describedby");
    }
    for (const problem of found) {
      const place = problem.match(PROBLEM_PLACE);
      if (place) {
        const row = lists[place[1]].rows()[Number(place[2] ?? place[3])];
        for (const field of row?.querySelectorAll("input, select") ?? []) {
          field.setAttribute("aria-invalid", "true");
          field.setAttribute("aria-describedby", said.id);
        }
      } else if (problem.startsWith("burst_seconds")) {
        burst.setAttribute("aria-invalid", "true");
      }
    }
  };
  const show = (settings) => {
    honeypot.checked = settings.honeypot;
    burst.value = String(settings.burst_seconds);
    lists.ranges.show(settings.ranges);
    lists.user_agents.show(settings.user_agents);
    unsaved.hidden = true;
  };
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    save.disabled = true;
    said.replaceChildren();
    const typed = burst.value.trim();
    const body = {
      ranges: lists.ranges.read(),
      user_agents: lists.user_agents.read(),
      honeypot: honeypot.checked,
      // A number when it is one; anything else goes as typed, for the API to say what is wrong with it.
      burst_seconds: /^\d+$/.test(typed) ? Number(typed) : typed,
    };
    try {
      show(await api.saveMachineDetection(body));
      markProblems([]);
      said.replaceChildren(h("p", { class: "notice" }, "Saved: hits recorded from now on are classified with these settings."));
    } catch (error) {
      if (error.status === 422) {
        const found = problems(error.message);
        markProblems(found);
        said.replaceChildren(
          h("div", { class: "error" }, h("p", {}, "Not saved. Fix these and save again:"), h("ul", { class: "problems" }, found.map((problem) => h("li", {}, readable(problem))))),
        );
      } else {
        said.replaceChildren(failure(error));
      }
    } finally {
      save.disabled = false;
    }
  });
  api
    .machineDetection()
    .then((settings) => {
      show(settings);
      content.replaceChildren(h("h2", {}, "Your settings"), form);
      builtin.replaceChildren(builtinLists(settings.builtin));
    })
    .catch((error) => content.replaceChildren(failure(error)));
}
