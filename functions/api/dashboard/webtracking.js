// Web tracking: the sites whose pages report visits and transactions after a click, and their snippets.

import { api } from "./api.js";
import { confirmedAction, failure, h, loading, when } from "./dom.js";

/** Domains as typed: comma, space or newline separated, blanks left out (the API validates each). */
function domainList(text) {
  return text
    .split(/[\s,]+/)
    .map((domain) => domain.trim())
    .filter(Boolean);
}

/** A value as it must be written inside a double-quoted HTML attribute. */
function attribute(value) {
  return value.replaceAll("&", "&amp;").replaceAll('"', "&quot;").replaceAll("<", "&lt;").replaceAll(">", "&gt;");
}

function withQuery(url, query) {
  return `${url}${url.includes("?") ? "&" : "?"}${query}`;
}

/** The code a site owner pastes into their pages: [name, title, code, hint]. */
function snippets(site) {
  return [
    ["pixel", "Image tag (page views, no script)", `<img src="${attribute(withQuery(site.pixel_url, "type=page"))}" width="1" height="1" alt="">`, "Put it in the page body of every page to count."],
    ["script", "Script tag (page views)", `<script src="${attribute(site.script_url)}" async></script>`, "Or this one, in the head of every page: it counts the page it runs on."],
    ["transaction", "Transaction (with the script tag)", 'msgtrack.transaction(49.90, "EUR")', "Call it on the order confirmation page, once the script has loaded, with the order's amount and currency."],
  ];
}

function snippetBlock([name, title, code, hint]) {
  const copy = h("button", { type: "button", class: "quiet small", dataset: { action: "copy" } }, "Copy");
  copy.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(code);
      copy.textContent = "Copied";
    } catch {
      copy.textContent = "Select and copy";
    }
  });
  return h(
    "div",
    { class: "snippet", dataset: { snippet: name } },
    h("div", { class: "panel-head" }, h("h3", {}, title), copy),
    h("pre", {}, h("code", {}, code)),
    h("p", { class: "muted small" }, hint),
  );
}

function deleteSiteControl(site, onDeleted) {
  return confirmedAction({
    label: "Delete site…",
    question: `Delete ${site.name}? Its tags stop counting at once; what they counted stays in the reports.`,
    actions: { ask: "delete-site", confirm: "confirm-delete-site", keep: "keep-site" },
    perform: async () => {
      await api.deleteSite(site.id);
      onDeleted();
    },
  });
}

function siteCard(site, onDeleted) {
  return h(
    "article",
    { class: "panel site", dataset: { siteId: site.id } },
    h(
      "div",
      { class: "panel-head" },
      h("h2", { class: "site-name" }, site.name),
      h("span", { class: "muted small" }, `created ${when(site.created_at)}`, site.created_by ? ` by ${site.created_by}` : ""),
    ),
    h(
      "dl",
      { class: "facts" },
      h("div", { dataset: { fact: "domains" } }, h("dt", {}, "Domains (and their subdomains)"), h("dd", {}, site.domains.join(", "))),
      h("div", { dataset: { fact: "pixel-url" } }, h("dt", {}, "Pixel URL"), h("dd", {}, h("code", { class: "change" }, site.pixel_url))),
    ),
    snippets(site).map(snippetBlock),
    deleteSiteControl(site, onDeleted),
  );
}

export function webTrackingView(view) {
  const name = h("input", { type: "text", name: "name", required: true, maxlength: 200, placeholder: "Shop", "aria-label": "Site name" });
  const domains = h("textarea", { name: "domains", rows: 3, required: true, placeholder: "shop.example.com, example.com", "aria-label": "Domains" });
  const submit = h("button", { type: "submit" }, "Create site");
  const said = h("div", { role: "alert", class: "form-message" });
  const form = h(
    "form",
    { class: "site-form", "aria-label": "New site" },
    h("label", {}, "Name", name),
    h("label", {}, "Domains (comma or newline separated)", domains),
    h("div", { class: "actions" }, submit),
    said,
  );
  const list = h("div", { class: "sites" }, loading("Loading the sites…"));
  view.replaceChildren(
    h(
      "div",
      { class: "page-head" },
      h("h1", {}, "Web tracking"),
      h(
        "p",
        { class: "muted small" },
        "A tag on your site counts the pages visited and the transactions made after a click in a message, credited to that recipient and delivery. Only pages of a site's own domains count.",
      ),
    ),
    h("section", { class: "panel" }, h("h2", {}, "New site"), form),
    list,
  );

  const load = async (created) => {
    try {
      const answer = await api.sites();
      const cards = answer.items.map((site) => siteCard(site, () => load()));
      list.replaceChildren(...(cards.length ? cards : [h("p", { class: "panel empty" }, "No site yet: create one above to get its tag.")]));
      if (created) list.querySelector(`[data-site-id="${CSS.escape(created)}"]`)?.scrollIntoView({ block: "nearest" });
    } catch (error) {
      list.replaceChildren(failure(error));
    }
  };
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    submit.disabled = true;
    said.replaceChildren();
    try {
      const site = await api.createSite({ name: name.value.trim(), domains: domainList(domains.value) });
      form.reset();
      said.replaceChildren(h("p", { class: "notice" }, `Site ${site.name} created: paste its tag below into its pages.`));
      await load(site.id);
    } catch (error) {
      said.replaceChildren(failure(error));
    } finally {
      submit.disabled = false;
    }
  });
  load();
}
