// The report API, called with the bearer token the user entered once (kept for this browser tab only).

const TOKEN_KEY = "msgtrack.token";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export const token = {
  get: () => sessionStorage.getItem(TOKEN_KEY),
  set: (value) => sessionStorage.setItem(TOKEN_KEY, value),
  clear: () => sessionStorage.removeItem(TOKEN_KEY),
};

let unauthorized = () => {};

/** What to do when the API refuses the stored token (it was changed, or mistyped). */
export function onUnauthorized(handler) {
  unauthorized = handler;
}

function search(params) {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(params ?? {})) {
    if (value !== undefined && value !== null && value !== "") query.set(name, String(value));
  }
  const text = query.toString();
  return text ? `?${text}` : "";
}

const id = (value) => encodeURIComponent(value);

async function send(path, { method = "GET", params, bearer, body } = {}) {
  const headers = { Authorization: `Bearer ${bearer ?? token.get() ?? ""}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path + search(params), {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store",
  });
  if (!response.ok) {
    let code = "error";
    let message = `The API answered ${response.status}.`;
    try {
      const body = await response.json();
      code = body.error ?? code;
      message = body.message ?? message;
    } catch {
      // not a JSON error: keep the status line
    }
    if (response.status === 401 && bearer === undefined) unauthorized();
    throw new ApiError(response.status, code, message);
  }
  return response;
}

const json = async (path, options) => (await send(path, options)).json();
const tab = (deliveryId, part) => `/api/deliveries/${id(deliveryId)}/tracking/${part}`;

export const api = {
  /** Checks a token without storing it: resolves when the API accepts it. */
  check: (bearer) => json("/api/workflows/tracking", { params: { limit: 1 }, bearer }),
  deliveries: (params) => json("/api/deliveries", { params }),
  delivery: (deliveryId) => json(`/api/deliveries/${id(deliveryId)}`),
  statistics: (deliveryId, params) => json(tab(deliveryId, "statistics"), { params }),
  urls: (deliveryId, params) => json(tab(deliveryId, "urls"), { params }),
  clickStreams: (deliveryId, params) => json(tab(deliveryId, "click-streams"), { params }),
  hotClicks: (deliveryId, params) => json(tab(deliveryId, "hot-clicks"), { params }),
  logs: (deliveryId, params) => json(tab(deliveryId, "logs"), { params }),
  logsCsv: (deliveryId, params) => send(tab(deliveryId, "logs"), { params: { ...params, format: "csv" } }),
  startExport: (deliveryId, body) => json(tab(deliveryId, "exports"), { method: "POST", body }),
  exportStatus: (exportId) => json(`/api/exports/${id(exportId)}`),
  recipientLogs: (recipientId, params) => json(`/api/recipients/${id(recipientId)}/tracking`, { params }),
  recipientLogsCsv: (recipientId, params) =>
    send(`/api/recipients/${id(recipientId)}/tracking`, { params: { ...params, format: "csv" } }),
  workflow: (params) => json("/api/workflows/tracking", { params }),
  startRun: () => json("/api/workflows/tracking/runs", { method: "POST" }),
  testTracking: (deliveryId) => json(tab(deliveryId, "test"), { method: "POST" }),
  changeUrl: (deliveryId, urlId, changes) =>
    json(`/api/deliveries/${id(deliveryId)}/urls/${id(urlId)}`, { method: "PATCH", body: changes }),
  deleteDelivery: (deliveryId) => send(`/api/deliveries/${id(deliveryId)}`, { method: "DELETE" }),
  audit: (params) => json("/api/audit", { params }),
  sites: () => json("/api/web-tracking/sites"),
  createSite: (site) => json("/api/web-tracking/sites", { method: "POST", body: site }),
  deleteSite: (siteId) => send(`/api/web-tracking/sites/${id(siteId)}`, { method: "DELETE" }),
  urlTrackingRules: () => json("/api/settings/url-tracking"),
  saveUrlTrackingRules: (rules) => json("/api/settings/url-tracking", { method: "PUT", body: rules }),
  machineDetection: () => json("/api/settings/machine-detection"),
  saveMachineDetection: (settings) => json("/api/settings/machine-detection", { method: "PUT", body: settings }),
};
