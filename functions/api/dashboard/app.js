// The msgtrack dashboard: signs in with the API token once, then routes between its pages.

import { api, onUnauthorized, token } from "./api.js";
import { auditView } from "./audit.js";
import { deliveriesView } from "./deliveries.js";
import { deliveryView } from "./delivery.js";
import { h } from "./dom.js";
import { machineDetectionView } from "./machinedetection.js";
import { recipientView } from "./recipient.js";
import { urlRulesView } from "./urlrules.js";
import { webTrackingView } from "./webtracking.js";
import { workflowView } from "./workflow.js";

const main = document.getElementById("view");
const sections = document.getElementById("sections");
const signOut = document.getElementById("sign-out");

const ROUTES = [
  [/^#\/deliveries\/?$/, "deliveries", (view) => deliveriesView(view)],
  [/^#\/deliveries\/([^/]+)(?:\/([a-z-]+))?$/, "deliveries", (view, match) => deliveryView(view, decode(match[1]), match[2])],
  [/^#\/recipients\/?$/, "recipients", (view) => recipientView(view, null)],
  [/^#\/recipients\/(.+)$/, "recipients", (view, match) => recipientView(view, decode(match[1]))],
  [/^#\/workflow\/?$/, "workflow", (view) => workflowView(view)],
  [/^#\/web-tracking\/?$/, "web-tracking", (view) => webTrackingView(view)],
  [/^#\/url-rules\/?$/, "url-rules", (view) => urlRulesView(view)],
  [/^#\/machine-detection\/?$/, "machine-detection", (view) => machineDetectionView(view)],
  [/^#\/audit\/?$/, "audit", (view) => auditView(view)],
];

function decode(part) {
  try {
    return decodeURIComponent(part);
  } catch {
    return part;
  }
}

function signInView(reason) {
  const input = h("input", { type: "password", name: "token", autocomplete: "current-password", required: true, "aria-label": "API token" });
  const problem = h("div", { role: "alert" }, reason ? h("p", { class: "error" }, reason) : null);
  const submit = h("button", { type: "submit" }, "Sign in");
  const form = h(
    "form",
    { class: "sign-in-form" },
    h("label", {}, "API token", input),
    h("p", { class: "muted small" }, "The bearer token of the report API (msgtrack serve prints it). It is kept for this browser tab only."),
    submit,
    problem,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    submit.disabled = true;
    const candidate = input.value.trim();
    try {
      await api.check(candidate);
      token.set(candidate);
      route();
    } catch (error) {
      const said = error.status === 401 ? "That API token was not accepted." : error.message;
      problem.replaceChildren(h("p", { class: "error" }, said));
      submit.disabled = false;
    }
  });
  sections.hidden = true;
  signOut.hidden = true;
  main.replaceChildren(h("section", { class: "panel sign-in" }, h("h1", {}, "Sign in"), form));
  input.focus();
}

function route() {
  if (!token.get()) {
    signInView();
    return;
  }
  sections.hidden = false;
  signOut.hidden = false;
  const hash = location.hash || "#/deliveries";
  const found = ROUTES.map(([pattern, section, show]) => [hash.match(pattern), section, show]).find(([match]) => match);
  for (const link of sections.querySelectorAll("a")) link.classList.toggle("active", link.dataset.section === found?.[1]);
  const view = h("div", { class: "view" });
  main.replaceChildren(view);
  if (!found) {
    view.append(h("p", { class: "error" }, "There is no such page."), h("a", { href: "#/deliveries" }, "Go to the deliveries"));
    return;
  }
  const [match, , show] = found;
  show(view, match);
  window.scrollTo(0, 0);
}

onUnauthorized(() => {
  token.clear();
  signInView("The API token is no longer accepted: sign in again.");
});
signOut.addEventListener("click", () => {
  token.clear();
  signInView();
});
window.addEventListener("hashchange", route);
route();
