// The tracking workflow: its schedule, its last execution, its recent runs, and a run on demand.

import { api } from "./api.js";
import { count, failure, h, loading, table, when } from "./dom.js";

const POLL_MS = 1000;
const GIVE_UP_MS = 15 * 60 * 1000; // the workflow's own time limit
const FINISHED = new Set(["succeeded", "failed", "skipped"]);

function duration(run) {
  if (!run.finished_at) return "–";
  const seconds = (Date.parse(run.finished_at) - Date.parse(run.started_at)) / 1000;
  return seconds < 60 ? `${seconds.toFixed(1)} s` : `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
}

function badge(status) {
  return h("span", { class: `badge ${status}` }, status);
}

function facts(status) {
  const last = status.last_run;
  const fact = (name, title, ...value) => h("div", { dataset: { fact: name } }, h("dt", {}, title), h("dd", {}, ...value));
  return h(
    "dl",
    { class: "facts" },
    fact("schedule", "Schedule", h("code", {}, status.schedule)),
    fact("last-execution", "Last execution", last ? when(last.finished_at ?? last.started_at) : "never"),
    fact("last-status", "Its status", last ? badge(last.status) : "–"),
    fact("last-success", "Last success", when(status.last_success_at)),
  );
}

function runs(status) {
  return table(
    [
      { title: "Run" },
      { title: "Status" },
      { title: "Trigger" },
      { title: "Started" },
      { title: "Finished" },
      { title: "Took", numeric: true },
      { title: "Events", numeric: true },
      { title: "Errors" },
    ],
    status.runs.map((run) => [
      h("span", { class: "mono" }, run.id),
      badge(run.status),
      run.trigger ?? "–",
      when(run.started_at),
      when(run.finished_at),
      duration(run),
      count(run.events_processed),
      run.errors.length ? h("ul", { class: "errors" }, run.errors.map((error) => h("li", {}, error))) : "",
    ]),
    { empty: "The tracking workflow has not run yet." },
  );
}

export function workflowView(view) {
  const summary = h("div", {}, loading("Loading the tracking workflow…"));
  const history = h("div");
  const message = h("div", { class: "run-message", "aria-live": "polite" });
  const runNow = h("button", { type: "button", id: "run-now" }, "Run now");
  view.replaceChildren(
    h("div", { class: "page-head" }, h("h1", {}, "Tracking workflow"), h("p", { class: "muted" }, "Turns recorded opens and clicks into tracking logs and indicators, on its schedule or on demand.")),
    h("section", { class: "panel" }, h("div", { class: "panel-head" }, h("h2", {}, "Status"), runNow), summary, message),
    h("section", { class: "panel" }, h("h2", {}, "Recent runs"), history),
  );

  async function refresh() {
    const status = await api.workflow({ limit: 20 });
    summary.replaceChildren(facts(status));
    history.replaceChildren(runs(status));
    return status;
  }

  async function start() {
    runNow.disabled = true;
    try {
      const { id } = await api.startRun();
      message.replaceChildren(h("p", { class: "muted" }, `Run ${id} started…`));
      const deadline = Date.now() + GIVE_UP_MS;
      for (;;) {
        const status = await refresh();
        const run = status.runs.find((candidate) => candidate.id === id);
        if (run && FINISHED.has(run.status)) {
          const ok = run.status === "succeeded";
          const said = ok ? `Run ${id} succeeded: ${count(run.events_processed)} events processed.` : `Run ${id} ${run.status}: ${run.errors.join("; ") || "no error recorded"}`;
          message.replaceChildren(h("p", { class: ok ? "notice" : "error" }, said));
          return;
        }
        if (Date.now() > deadline) {
          message.replaceChildren(h("p", { class: "error" }, `Run ${id} has not finished yet; refresh later.`));
          return;
        }
        await new Promise((resolve) => setTimeout(resolve, POLL_MS));
      }
    } catch (error) {
      message.replaceChildren(failure(error));
    } finally {
      runNow.disabled = false;
    }
  }

  runNow.addEventListener("click", start);
  refresh().catch((error) => summary.replaceChildren(failure(error)));
}
