// Building the page from data without ever parsing data as HTML.
//
// Every string handed to h() or svg() ends up as a text node or an attribute value set through the
// DOM, so a link label such as <img src=x onerror=alert(1)> is shown as those characters. Event
// handlers are functions attached with addEventListener; an "on..." attribute given as text is refused.

const SVG_NS = "http://www.w3.org/2000/svg";

function setProps(element, props) {
  for (const [key, value] of Object.entries(props ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) {
      if (typeof value !== "function") throw new TypeError(`refusing the attribute ${key}`);
      element.addEventListener(key.slice(2), value);
    } else if (key === "class") {
      element.setAttribute("class", value);
    } else if (key === "dataset") {
      for (const [name, data] of Object.entries(value)) element.dataset[name] = String(data);
    } else {
      element.setAttribute(key, value === true ? "" : String(value));
    }
  }
}

function appendChildren(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** An HTML element: h("td", {class: "num"}, "12"). */
export function h(tag, props, ...children) {
  const element = document.createElement(tag);
  setProps(element, props);
  appendChildren(element, children);
  return element;
}

/** An SVG element: svg("circle", {cx: 1, cy: 2, r: 3}). */
export function svg(tag, props, ...children) {
  const element = document.createElementNS(SVG_NS, tag);
  setProps(element, props);
  appendChildren(element, children);
  return element;
}

/**
 * A link to a tracked URL's target or a visited page, only when it is an http(s) URL that goes where
 * it reads: a URL whose browser reading differs from its text (a backslash, user info, tabs or
 * newlines, another scheme such as javascript: or data:) is shown as text, its real address as its title.
 */
export function externalLink(url, text = url) {
  let parsed = null;
  try {
    parsed = new URL(url);
  } catch {
    parsed = null;
  }
  const written = String(url);
  const readsAsItGoes =
    parsed &&
    ["http:", "https:"].includes(parsed.protocol) &&
    /^https?:\/\//i.test(written) &&
    !/[\\\s\u0000-\u001f\u007f]/.test(written) &&
    !parsed.username &&
    !parsed.password;
  if (!readsAsItGoes) return h("span", { class: "unlinked", title: parsed ? parsed.href : written }, text);
  return h("a", { href: parsed.href, target: "_blank", rel: "noopener noreferrer", title: url }, text);
}

/** A table with a header row; rows are arrays of cells (a cell is a node, a string or [props, ...children]). */
export function table(columns, rows, { empty = "Nothing to show yet.", caption } = {}) {
  const head = h("tr", {}, columns.map((column) => h("th", { class: column.numeric ? "num" : null }, column.title)));
  const body = h("tbody");
  for (const row of rows) body.append(tableRow(columns, row));
  if (!rows.length) body.append(h("tr", {}, h("td", { class: "empty", colspan: columns.length }, empty)));
  return h("div", { class: "table-wrap" }, h("table", {}, caption ? h("caption", {}, caption) : null, h("thead", {}, head), body));
}

export function tableRow(columns, cells, props = {}) {
  return h(
    "tr",
    props,
    cells.map((cell, index) => {
      const column = columns[index] ?? {};
      const classes = [column.numeric ? "num" : null, column.class].filter(Boolean).join(" ") || null;
      return h("td", { class: classes }, cell);
    }),
  );
}

export function loading(what = "Loading…") {
  return h("p", { class: "muted" }, what);
}

export function failure(error) {
  return h("p", { class: "error", role: "alert" }, error?.message ?? String(error));
}

// --- formatting ------------------------------------------------------------------------------------

const integers = new Intl.NumberFormat("en-US");
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

export function count(value) {
  return value === null || value === undefined ? "–" : integers.format(value);
}

/** A sum of money in its currency, "€62.40"; an unknown currency code as "62.4 XYZ". */
export function money(amount, currency) {
  try {
    return new Intl.NumberFormat("en-US", { style: "currency", currency }).format(amount);
  } catch {
    return `${amount} ${currency}`;
  }
}

/** A transaction's amount as logged, "49.90 EUR" (the API sends the decimal as written, or a number). */
export function amountWithCurrency(amount, currency) {
  if (amount === null || amount === undefined || amount === "") return "";
  const value = typeof amount === "number" ? amount.toFixed(2) : String(amount);
  return currency ? `${value} ${currency}` : value;
}

/** A percentage as the API rounds it: 2 decimals. */
export function percent(value) {
  return value === null || value === undefined ? "–" : `${Number(value).toFixed(2)}%`;
}

/** An ISO time as "2026-11-23 09:00:16 UTC": the API's times are UTC, so is the dashboard. */
export function when(iso) {
  if (!iso) return "–";
  return `${iso.slice(0, 10)} ${iso.slice(11, 19)} UTC`;
}

/** An ISO time in few characters, "23 Nov 09:13:01", the whole time as its tooltip. */
export function compactWhen(iso) {
  if (!iso) return "–";
  const date = new Date(iso);
  return h("span", { title: when(iso) }, `${date.getUTCDate()} ${MONTHS[date.getUTCMonth()]} ${iso.slice(11, 19)}`);
}

export function hours(value) {
  if (value === null || value === undefined) return "–";
  return value === 1 ? "1 hour" : `${integers.format(value)} hours`;
}

export function shortHour(time) {
  const date = new Date(time);
  return `${date.getUTCDate()} ${MONTHS[date.getUTCMonth()]} ${String(date.getUTCHours()).padStart(2, "0")}:00`;
}

export function shortDay(time) {
  const date = new Date(time);
  return `${date.getUTCDate()} ${MONTHS[date.getUTCMonth()]}`;
}

/** A datetime-local input's value (read as UTC) as the API's ISO time, or "" when empty. */
export function isoFromInput(value) {
  return value ? `${value.length === 16 ? `${value}:00` : value}Z` : "";
}

/** An ISO time as a datetime-local input's value (UTC). */
export function inputFromIso(iso) {
  return iso ? iso.slice(0, 16) : "";
}

/** A share bar and its percentage. */
export function shareCell(value) {
  const fill = h("span");
  fill.style.width = `${Math.max(0, Math.min(100, Number(value) || 0))}%`;
  return h("div", { class: "share" }, h("span", { class: "bar", "aria-hidden": "true" }, fill), h("span", { class: "pct" }, percent(value)));
}

// A destructive action confirmed in the page, not with window.confirm (the dashboard opens no dialog):
// a button asks, a question offers "Delete it" and "Keep it", and a failure is said beside it.
export function confirmedAction({ label, question, actions, perform }) {
  const ask = h("button", { type: "button", class: "quiet danger", dataset: { action: actions.ask } }, label);
  const confirm = h("button", { type: "button", class: "danger", dataset: { action: actions.confirm } }, "Delete it");
  const cancel = h("button", { type: "button", class: "quiet", dataset: actions.keep ? { action: actions.keep } : {} }, "Keep it");
  const said = h("div", { role: "alert" });
  const asked = h("div", { class: "confirm", hidden: true }, h("p", {}, question), confirm, cancel);
  ask.addEventListener("click", () => {
    asked.hidden = false;
    ask.hidden = true;
  });
  cancel.addEventListener("click", () => {
    asked.hidden = true;
    ask.hidden = false;
  });
  confirm.addEventListener("click", async () => {
    confirm.disabled = true;
    try {
      await perform();
    } catch (error) {
      said.replaceChildren(failure(error));
      confirm.disabled = false;
    }
  });
  return h("div", { class: "delete-delivery" }, ask, asked, said);
}
